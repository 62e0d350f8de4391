//! Client side of global's locks: `set_lock_on_nodes`, `del_lock` and
//! `delete_global_lock` from global.erl, made by the calling process.

use super::LockId;
use super::multicall::multi_call;
use super::order::the_boss;
use super::Shared;
use crate::process::Mailbox;
use crate::term::{Atom, Term};
use rand::Rng;
use std::time::Duration;

pub(crate) fn lock_req(tag: &str, id: &LockId) -> Term {
    Term::tuple([Term::atom(tag), Term::tuple([id.res.clone(), id.req.clone()])])
}

/// Sets the lock on every node in `nodes`, or on none: on a refusal the
/// nodes that granted it are released. Nodes that are down do not count.
pub(crate) async fn set_lock_on_nodes(mb: &mut Mailbox, shared: &Shared, id: &LockId, nodes: &[Atom]) -> bool {
    if nodes.is_empty() {
        return true;
    }
    let me = mb.node().name().clone();
    // Probing our own table first saves a round of calls when we would
    // be refused here anyway.
    if nodes.len() > 1 && nodes.contains(&me) && !shared.can_set_lock(id) {
        return false;
    }
    let replies = multi_call(mb, nodes, &lock_req("set_lock", id)).await;
    if replies.iter().all(|(_, r)| r.is_atom("true")) {
        return true;
    }
    if replies.len() > 1 {
        let granted: Vec<Atom> = replies.iter().filter(|(_, r)| r.is_atom("true")).map(|(n, _)| n.clone()).collect();
        if !granted.is_empty() {
            del_lock(mb, id, &granted).await;
        }
    }
    false
}

pub(crate) async fn del_lock(mb: &mut Mailbox, id: &LockId, nodes: &[Atom]) {
    if !nodes.is_empty() {
        multi_call(mb, nodes, &lock_req("del_lock", id)).await;
    }
}

/// Releases on every node but the boss first, then on the boss: while the
/// boss is held, no competitor gets far, so it goes last.
pub(crate) async fn delete_global_lock(mb: &mut Mailbox, id: &LockId, nodes: &[Atom]) {
    let Some(boss) = the_boss(nodes) else { return };
    let mut others = nodes.to_vec();
    if let Some(i) = others.iter().position(|n| *n == boss) {
        others.remove(i);
    }
    del_lock(mb, id, &others).await;
    del_lock(mb, id, &[boss]).await;
}

/// global.erl's `random_sleep/1`: up to 1/4 s the first time, doubling
/// to at most 8 s.
pub(crate) async fn random_sleep(times: u32) {
    let tmax: u64 = if times > 5 { 8000 } else { ((1u64 << times) * 1000) / 8 };
    let t = rand::thread_rng().gen_range(1..=tmax.max(1));
    tokio::time::sleep(Duration::from_millis(t)).await;
}

/// `A -- B` for node lists: removes the first occurrence of each of `b`.
pub(crate) fn subtract(a: &[Atom], b: &[Atom]) -> Vec<Atom> {
    let mut out = a.to_vec();
    for x in b {
        if let Some(i) = out.iter().position(|n| n == x) {
            out.remove(i);
        }
    }
    out
}
