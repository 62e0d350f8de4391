//! The registrar: global.erl's `the_registrar`, which makes every
//! registration and unregistration of this node's API, one at a time.
//!
//! Each is one `trans_all_known`: lock `{global, RegistrarPid}` on the
//! boss (the greatest node name) and then on every known node, make the
//! change on all of them with `gen_server:multi_call`, release. The lock,
//! the change and the release all come from this one process: a BEAM
//! node keeps a registration only if the pid that sent `{register, ...}`
//! holds the `global` lock there.

use super::lockops::{del_lock, delete_global_lock, random_sleep, set_lock_on_nodes, subtract};
use super::messages::NameInfo;
use super::multicall::multi_call;
use super::order::the_boss;
use super::{LockId, Shared};
use crate::process::Mailbox;
use crate::term::{Atom, Term};
use std::sync::Arc;
use tokio::sync::mpsc::UnboundedReceiver;
use tokio::sync::oneshot;

pub(crate) enum Request {
    /// `register_name` (`check_free`) or `re_register_name`.
    Register { info: NameInfo, check_free: bool, reply: oneshot::Sender<bool> },
    Unregister { name: Term, reply: oneshot::Sender<()> },
}

pub(crate) async fn run(mut mb: Mailbox, mut rx: UnboundedReceiver<Request>, shared: Arc<Shared>) -> Term {
    while let Some(req) = rx.recv().await {
        // Late replies to calls that timed out are of no use now.
        mb.drain();
        let id = LockId::global(Term::Pid(mb.pid().clone()));
        let nodes = set_lock_known(&mut mb, &shared, &id).await;
        match req {
            Request::Register { info, check_free, reply } => {
                let ok = !check_free || (super::where_(&mb.node(), &shared, &info.name).is_none() && !dup_name(&shared, &info));
                if ok {
                    let r = Term::tuple([Term::atom("register"), info.name.clone(), Term::Pid(info.pid.clone()), info.method.clone()]);
                    multi_call(&mut mb, &nodes, &r).await;
                }
                delete_global_lock(&mut mb, &id, &nodes).await;
                let _ = reply.send(ok);
            }
            Request::Unregister { name, reply } => {
                multi_call(&mut mb, &nodes, &Term::tuple([Term::atom("unregister"), name])).await;
                delete_global_lock(&mut mb, &id, &nodes).await;
                let _ = reply.send(());
            }
        }
    }
    Term::atom("normal")
}

/// A process may hold one global name (global.erl's `check_dupname`).
fn dup_name(shared: &Shared, info: &NameInfo) -> bool {
    let dup = shared.names.read().unwrap().pid_has_name(&info.pid);
    if dup {
        tracing::error!(pid = %info.pid, name = ?info.name, "global: a process may have only one global name");
    }
    dup
}

/// Locks `id` on this node and every known one, retrying with global's
/// randomised back-off; returns the nodes locked. Starts over if a node
/// became known meanwhile, so no node misses the change.
async fn set_lock_known(mb: &mut Mailbox, shared: &Shared, id: &LockId) -> Vec<Atom> {
    let me = mb.node().name().clone();
    let mut times = 0;
    loop {
        let known = shared.known();
        let mut nodes = vec![me.clone()];
        nodes.extend(known.iter().cloned());
        let boss = the_boss(&nodes).expect("not empty");
        if set_lock_on_nodes(mb, shared, id, std::slice::from_ref(&boss)).await {
            if set_lock_on_nodes(mb, shared, id, &nodes).await && subtract(&shared.known(), &known).is_empty() {
                return nodes;
            }
            del_lock(mb, id, &[boss]).await;
        }
        random_sleep(times).await;
        times += 1;
    }
}
