//! The registrar: global.erl's `the_registrar`, which makes every
//! registration and unregistration of this node's API, one at a time.
//!
//! Each is one `trans_all_known`: lock `{global, RegistrarPid}` on the
//! boss (the greatest node name) and then on every other known node, make
//! the change on all of them with `gen_server:multi_call` and release all
//! but the boss in the same round, then release the boss. Unlike
//! global.erl, changes queued together share one lock round (see
//! [`run`]): peers see the same messages, several under one lock. The lock,
//! the change and the release all come from this one process: a BEAM
//! node keeps a registration only if the pid that sent `{register, ...}`
//! holds the `global` lock there.

use super::lockops::{del_lock, lock_req, random_sleep, set_lock_on_nodes, subtract};
use super::messages::NameInfo;
use super::multicall::multi_call_where;
use super::names::Key;
use super::order::the_boss;
use super::{LockId, Shared};
use crate::process::Mailbox;
use crate::term::{Atom, Pid, Term};
use std::collections::HashSet;
use std::sync::Arc;
use tokio::sync::mpsc::UnboundedReceiver;
use tokio::sync::oneshot;

pub(crate) enum Request {
    /// `register_name` (`check_free`) or `re_register_name`.
    Register { info: NameInfo, check_free: bool, reply: oneshot::Sender<bool> },
    Unregister { name: Term, reply: oneshot::Sender<()> },
}

/// At most this many changes share one lock: each BEAM registrar that
/// wants the lock meanwhile backs off (global's random sleep), so the
/// lock is never held for long.
const MAX_BATCH: usize = 64;

pub(crate) async fn run(mut mb: Mailbox, mut rx: UnboundedReceiver<Request>, shared: Arc<Shared>) -> Term {
    let mut held_over: Option<Request> = None;
    loop {
        let first = match held_over.take() {
            Some(r) => r,
            None => match rx.recv().await {
                Some(r) => r,
                None => break,
            },
        };
        // Requests already queued share the lock (one lock round and one
        // pipelined multi_call for the lot, where global.erl takes the
        // lock once per change): what a rebalance or a failover of many
        // processes needs. A request for a name or pid already in the
        // batch waits for the next one, so each change is decided on the
        // table as the ones before it left it.
        let mut touched = Touched::default();
        touched.admit(&first);
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(r) if touched.admit(&r) => batch.push(r),
                Ok(r) => {
                    held_over = Some(r);
                    break;
                }
                Err(_) => break,
            }
        }
        // Late replies to calls that timed out are of no use now.
        mb.drain();
        let id = LockId::global(Term::Pid(mb.pid().clone()));
        let nodes = set_lock_known(&mut mb, &shared, &id).await;
        let mut calls = Vec::with_capacity(batch.len());
        let mut done: Vec<Done> = Vec::with_capacity(batch.len());
        for req in batch {
            match req {
                Request::Register { info, check_free, reply } => {
                    let ok = !check_free || (super::where_(&mb.node(), &shared, &info.name).is_none() && !dup_name(&shared, &info));
                    if ok {
                        calls.push(Term::tuple([Term::atom("register"), info.name.clone(), Term::Pid(info.pid.clone()), info.method.clone()]));
                    }
                    done.push(Done::Register(reply, ok));
                }
                Request::Unregister { name, reply } => {
                    calls.push(Term::tuple([Term::atom("unregister"), name]));
                    done.push(Done::Unregister(reply));
                }
            }
        }
        // The change and the release on every node but the boss go in one
        // round: each node's global server takes `del_lock` after the
        // changes (one connection, in order), so no node is released
        // before it has them. The boss, released last as in global.erl
        // (while it is held no competitor gets far), only once every
        // other node has answered. The callers are answered after that,
        // as global.erl does: answering them first made a caller's next
        // registration, from another node, meet the lock still held, and
        // two interop tests failed under load on OTP 27.
        //
        // When the boss is another node and this node is the only other
        // one (two known nodes), the boss is released in that round too:
        // this node's release is served here, long before the boss's
        // crosses the link, so the boss still goes last in practice (at
        // worst a competitor meets our lock here once and backs off), and
        // a two-node switch takes two round trips from either side.
        let boss = the_boss(&nodes).expect("not empty");
        let me = mb.node().name().clone();
        let boss_too = boss != me && nodes.iter().all(|n| *n == boss || *n == me);
        let unlock = calls.len();
        calls.push(lock_req("del_lock", &id));
        multi_call_where(&mut mb, &nodes, &calls, |i, n| i < unlock || *n != boss || boss_too).await;
        if !boss_too {
            del_lock(&mut mb, &id, std::slice::from_ref(&boss)).await;
        }
        for d in done {
            let _ = match d {
                Done::Register(reply, ok) => reply.send(ok).is_ok(),
                Done::Unregister(reply) => reply.send(()).is_ok(),
            };
        }
    }
    Term::atom("normal")
}

/// A reply owed once the change is made and the lock released.
enum Done {
    Register(oneshot::Sender<bool>, bool),
    Unregister(oneshot::Sender<()>),
}

/// The names and the registering pids a batch touches, each name
/// encoded once as it joins.
#[derive(Default)]
struct Touched {
    names: HashSet<Key>,
    pids: HashSet<Pid>,
}

impl Touched {
    /// Takes `r` into the batch if it touches no name (and, registering,
    /// no pid) that a request already in it touches.
    fn admit(&mut self, r: &Request) -> bool {
        let (name, pid) = match r {
            Request::Register { info, .. } => (Key::of(&info.name), Some(&info.pid)),
            Request::Unregister { name, .. } => (Key::of(name), None),
        };
        if self.names.contains(&name) || pid.is_some_and(|p| self.pids.contains(p)) {
            return false;
        }
        self.names.insert(name);
        if let Some(p) = pid {
            self.pids.insert(p.clone());
        }
        true
    }
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
            // The boss is ours already (same lock id): the rest only, where
            // global.erl asks the boss again (a round trip when the boss is
            // another node, and a no-op there).
            let rest: Vec<Atom> = nodes.iter().filter(|n| **n != boss).cloned().collect();
            if set_lock_on_nodes(mb, shared, id, &rest).await && subtract(&shared.known(), &known).is_empty() {
                return nodes;
            }
            del_lock(mb, id, &[boss]).await;
        }
        random_sleep(times).await;
        times += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pid(id: u32) -> Pid {
        Pid { node: Atom::new("n@h"), id, serial: 0, creation: 1 }
    }

    fn register(name: &str, p: u32) -> Request {
        let info = NameInfo { name: Term::atom(name), pid: pid(p), method: Term::atom("m") };
        Request::Register { info, check_free: true, reply: oneshot::channel().0 }
    }

    fn unregister(name: &str) -> Request {
        Request::Unregister { name: Term::atom(name), reply: oneshot::channel().0 }
    }

    /// A batch takes no second request for a name, nor a second
    /// registration of a pid; an unregistration (no pid) blocks no pid.
    #[test]
    fn a_batch_touches_each_name_and_registering_pid_once() {
        let mut t = Touched::default();
        assert!(t.admit(&register("a", 1)));
        assert!(!t.admit(&register("a", 2)), "same name");
        assert!(!t.admit(&unregister("a")), "same name, unregistered");
        assert!(!t.admit(&register("b", 1)), "same pid");
        assert!(t.admit(&unregister("c")));
        assert!(!t.admit(&register("c", 3)), "a name unregistered in the batch");
        assert!(t.admit(&register("d", 3)));
    }
}
