//! `erlnode_echo`: a diagnostic process for smoke tests and the demo.
//! `GenServer.call({:erlnode_echo, node}, msg)` replies `{:echo, msg}`;
//! `send({:erlnode_echo, node}, {pid, msg})` sends `msg` back to `pid`.

use crate::node::gen_call_parts;
use crate::term::Term;
use crate::{Node, NodeError};

/// Starts the echo process registered under `name`.
pub fn spawn(node: &Node, name: &str) -> Result<crate::term::Pid, NodeError> {
    let mb = node.spawn_mailbox();
    node.register(name, mb.pid())?;
    Ok(run(node, mb))
}

/// Starts an echo process with no local name (`erlnode run
/// --register-echo` gives it a global one).
pub fn spawn_unregistered(node: &Node) -> crate::term::Pid {
    run(node, node.spawn_mailbox())
}

fn run(node: &Node, mut mb: crate::Mailbox) -> crate::term::Pid {
    let pid = mb.pid().clone();
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
    pid
}
