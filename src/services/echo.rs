//! `erlnode_echo`: a diagnostic process for smoke tests and the demo.
//! `GenServer.call({:erlnode_echo, node}, msg)` replies `{:echo, msg}`;
//! `send({:erlnode_echo, node}, {pid, msg})` sends `msg` back to `pid`.

use crate::node::gen_call_parts;
use crate::term::Term;
use crate::{Node, NodeError};

/// Starts the echo process registered under `name`.
pub fn spawn(node: &Node, name: &str) -> Result<crate::term::Pid, NodeError> {
    let mut mb = node.spawn_mailbox();
    let pid = mb.pid().clone();
    node.register(name, &pid)?;
    let node = node.clone();
    tokio::spawn(async move {
        while let Some(msg) = mb.recv().await {
            if let Some((from, request)) = gen_call_parts(&msg) {
                node.reply(from, Term::tuple([Term::atom("echo"), request.clone()]));
                continue;
            }
            match msg {
                Term::Tuple(mut t) if t.len() == 2 && matches!(t[0], Term::Pid(_)) => {
                    let body = t.pop().unwrap();
                    let Some(Term::Pid(to)) = t.pop() else { unreachable!() };
                    node.send_from(mb.pid(), &to, body);
                }
                other => tracing::debug!(msg = ?other, "erlnode_echo: unexpected message dropped"),
            }
        }
    });
    Ok(pid)
}
