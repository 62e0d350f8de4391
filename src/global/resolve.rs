//! Name conflicts: global.erl's `exchange_names`, `resolve_it` and the
//! three standard resolve methods.
//!
//! When two partitions meet, only the node whose name sorts lower
//! resolves; for each name both sides hold under different pids it asks
//! the node of *its own* pid to run that registration's method
//! (`rpc:call(Node2, global, resolve_it, [Method2, Name, Pid, Pid2])`).
//! When that node is erlnode, the method is run here; erlnode cannot run
//! an Erlang fun, so it recognises the standard methods and falls back to
//! `random_exit_name` (logged) for any other. When it is a BEAM node, the
//! method runs there through `rex`, so a user's own fun keeps its
//! semantics.

use super::messages::{NameInfo, Op};
use super::Shared;
use crate::process::Dest;
use crate::term::{Atom, OpaqueFun, Pid, Term};
use crate::Node;
use std::time::Duration;

/// How long to wait for a peer to run a resolve method. global.erl waits
/// forever; a node that never answers counts as `badrpc`, which keeps
/// the newcomer's registration, as global does for `badrpc`.
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(30);

/// The standard resolve methods of `global:register_name/3`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resolve {
    /// Keep the pid on the node whose name sorts lower, `exit(Other,
    /// kill)` (the default).
    RandomExit,
    /// Keep the same pid; send the other `{global_name_conflict, Name}`.
    RandomNotify,
    /// Unregister the name; send both `{global_name_conflict, Name,
    /// OtherPid}`.
    NotifyAll,
    /// erlnode's merge (docs/replicas.md, "Netsplit merges"): the pid
    /// `RandomExit` would keep wins and is sent `{'$erlnode_replica', 1,
    /// merge_from, Loser}`; it takes the loser's state into its type's
    /// `merge_conflict` and then ends the loser. The method is
    /// `fun 'Elixir.Erlnode.Replica.Merge':resolve/3`, which the
    /// `erlnode_ex` library runs the same way on a BEAM node.
    Merge,
}

const MERGE_MODULE: &str = "Elixir.Erlnode.Replica.Merge";

impl Resolve {
    fn function(self) -> &'static str {
        match self {
            Resolve::RandomExit => "random_exit_name",
            Resolve::RandomNotify => "random_notify_name",
            Resolve::NotifyAll => "notify_all_name",
            Resolve::Merge => "resolve",
        }
    }

    fn module(self) -> &'static str {
        match self {
            Resolve::Merge => MERGE_MODULE,
            _ => "global",
        }
    }

    /// `fun global:F/3` as an export fun: valid on every node, BEAM or
    /// erlnode.
    pub fn method(self) -> Term {
        Term::Fun(OpaqueFun::export(&Atom::new(self.module()), &Atom::new(self.function()), 3))
    }

    /// Which standard method a received method term is, if any.
    fn recognise(method: &Term) -> Option<Resolve> {
        let Term::Fun(f) = method else { return None };
        if let Some((m, fname, 3)) = f.as_export() {
            return [Resolve::RandomExit, Resolve::RandomNotify, Resolve::NotifyAll, Resolve::Merge]
                .into_iter()
                .find(|r| r.module() == m.as_str() && r.function() == fname.as_str());
        }
        // `register_name/2` on a BEAM node passes the local fun
        // `fun random_exit_name/3` of module global (NEW_FUN_EXT).
        (new_fun_module(f.as_bytes()).as_deref() == Some("global")).then_some(Resolve::RandomExit)
    }
}

/// The module of a NEW_FUN_EXT: after tag, Size(4), Arity(1), Uniq(16),
/// Index(4) and NumFree(4) comes the module atom.
fn new_fun_module(b: &[u8]) -> Option<String> {
    if b.first() != Some(&112) {
        return None;
    }
    let at = 1 + 4 + 1 + 16 + 4 + 4;
    let tag = *b.get(at)?;
    let (len, start) = match tag {
        100 | 118 => (u16::from_be_bytes([*b.get(at + 1)?, *b.get(at + 2)?]) as usize, at + 3),
        115 | 119 => (*b.get(at + 1)? as usize, at + 2),
        _ => return None,
    };
    let bytes = b.get(start..start + len)?;
    Some(if tag == 100 || tag == 115 { bytes.iter().map(|&c| c as char).collect() } else { String::from_utf8_lossy(bytes).into_owned() })
}

/// `global:resolve_it(Method, Name, Pid1, Pid2)` run on this node.
pub(crate) fn resolve_it(node: &Node, method: &Term, name: &Term, p1: &Pid, p2: &Pid) -> Term {
    let how = Resolve::recognise(method).unwrap_or_else(|| {
        tracing::warn!(?name, ?method, "global: cannot run this Erlang resolve fun here; resolving with random_exit_name");
        Resolve::RandomExit
    });
    // minmax/2: by node name; the pid on the higher node loses.
    let (min, max) = if p1.node.as_str() < p2.node.as_str() { (p1, p2) } else { (p2, p1) };
    match how {
        Resolve::RandomExit => {
            tracing::info!(?name, loser = %max, "global: name conflict, terminating the registration on the higher node");
            node.exit(max, Term::atom("kill"));
            Term::Pid(min.clone())
        }
        Resolve::RandomNotify => {
            node.send(max, Term::tuple([Term::atom("global_name_conflict"), name.clone()]));
            Term::Pid(min.clone())
        }
        Resolve::Merge => {
            tracing::info!(?name, winner = %min, loser = %max, "global: name conflict, the winner merges the loser's state");
            node.send(min, crate::migration::replica::messages::Msg::MergeFrom { loser: max.clone() }.to_term());
            Term::Pid(min.clone())
        }
        Resolve::NotifyAll => {
            node.send(p1, Term::tuple([Term::atom("global_name_conflict"), name.clone(), Term::Pid(p2.clone())]));
            node.send(p2, Term::tuple([Term::atom("global_name_conflict"), name.clone(), Term::Pid(p1.clone())]));
            Term::atom("none")
        }
    }
}

/// The erpc allow-list entry peers reach with
/// `rpc:call(Rust, global, resolve_it, [Method, Name, Pid1, Pid2])`.
pub(crate) fn resolve_it_erpc(node: &Node, args: &[Term]) -> Result<Term, Term> {
    match args {
        [method, name, Term::Pid(p1), Term::Pid(p2)] => Ok(resolve_it(node, method, name, p1, p2)),
        _ => Err(Term::atom("badarg")),
    }
}

/// Runs `resolve_it` on `target`, through its `rex` server.
async fn resolve_remote(node: &Node, target: &Atom, method: &Term, name: &Term, p1: &Pid, p2: &Pid) -> Term {
    let mut mb = node.spawn_mailbox();
    let args = Term::list([method.clone(), name.clone(), Term::Pid(p1.clone()), Term::Pid(p2.clone())]);
    let req = Term::tuple([Term::atom("call"), Term::atom("global"), Term::atom("resolve_it"), args, Term::atom("user")]);
    match mb.call(Dest::Name { name: Atom::new("rex"), node: target.clone() }, req, RESOLVE_TIMEOUT).await {
        Ok(v) => v,
        Err(e) => {
            tracing::info!(%target, ?name, error = %e, "global: resolve_it on the owning node failed");
            Term::tuple([Term::atom("badrpc"), Term::atom("nodedown")])
        }
    }
}

/// `exchange_names/4`: compares the peer's names with ours. Returns
/// `(Ops, Resolved)`: what to apply here, and what the peer must apply
/// (sent back in `resolved`).
pub(crate) async fn exchange_names(node: &Node, shared: &Shared, names: Vec<NameInfo>, peer: &Atom) -> (Vec<Op>, Vec<Op>) {
    let me = node.name().clone();
    let mut ops = Vec::new();
    let mut res = Vec::new();
    for his in names {
        let ours = shared.names.read().unwrap().get(&his.name).map(|e| e.info.clone());
        match ours {
            None => ops.push(Op::Insert(his)),
            Some(o) if o.pid == his.pid => {}
            // The node with the lower name resolves; the peer does it.
            Some(_) if me.as_str() > peer.as_str() => {}
            Some(o) => {
                let owner = o.pid.node.clone();
                let verdict = if owner == me {
                    resolve_it(node, &o.method, &his.name, &his.pid, &o.pid)
                } else {
                    resolve_remote(node, &owner, &o.method, &his.name, &his.pid, &o.pid).await
                };
                match verdict {
                    Term::Pid(p) if p == his.pid => ops.push(Op::Insert(his)),
                    Term::Pid(p) if p == o.pid => res.push(Op::Insert(o)),
                    v if v.is_atom("none") => {
                        ops.push(Op::Delete(his.name.clone()));
                        res.push(Op::Delete(his.name));
                    }
                    Term::Tuple(t) if t.len() == 2 && t[0].is_atom("badrpc") => {
                        tracing::info!(name = ?his.name, badrpc = ?t[1], "global: badrpc while resolving a conflicting name");
                        ops.push(Op::Insert(his));
                    }
                    other => {
                        tracing::info!(name = ?his.name, result = ?other, "global: resolve method returned neither pid; unregistering the name");
                        ops.push(Op::Delete(his.name.clone()));
                        res.push(Op::Delete(his.name));
                    }
                }
            }
        }
    }
    (ops, res)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_standard_methods() {
        assert_eq!(Resolve::recognise(&Resolve::RandomExit.method()), Some(Resolve::RandomExit));
        assert_eq!(Resolve::recognise(&Resolve::NotifyAll.method()), Some(Resolve::NotifyAll));
        assert_eq!(Resolve::recognise(&Resolve::Merge.method()), Some(Resolve::Merge));
        let other = Term::Fun(OpaqueFun::export(&Atom::new("mymod"), &Atom::new("random_exit_name"), 3));
        assert_eq!(Resolve::recognise(&other), None);
        assert_eq!(Resolve::recognise(&Term::atom("x")), None);
    }

    #[test]
    fn reads_the_module_of_a_local_fun() {
        // fun global:random_exit_name/3 as OTP 25 sends it from
        // register_name/2 (NEW_FUN_EXT, head only; the rest is not read).
        let mut b = vec![112, 0, 0, 0, 60, 3];
        b.extend([0u8; 16]);
        b.extend([0, 0, 0, 5, 0, 0, 0, 0]);
        b.extend([100, 0, 6]);
        b.extend(b"global");
        assert_eq!(new_fun_module(&b).as_deref(), Some("global"));
        assert_eq!(Resolve::recognise(&Term::Fun(OpaqueFun(b.into()))), Some(Resolve::RandomExit));
        assert_eq!(new_fun_module(&[112, 1]), None);
    }
}
