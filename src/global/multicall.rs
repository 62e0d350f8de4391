//! `gen_server:multi_call(Nodes, global_name_server, Request)` from a
//! Rust process, as the locker and the registrar make it.
//!
//! The calls go out from the caller's own pid: a peer's global grants a
//! lock to the `From` pid and later keeps a registration only if that
//! same pid holds the lock (the "same-pid rule"), so a helper process
//! making the calls on someone's behalf would register nothing.
//!
//! Like the BEAM's multi_call, a node that is down or has no
//! global_name_server is a "bad node": it is left out of the replies,
//! never waited for.

use crate::process::{Dest, Mailbox};
use crate::term::{Atom, Reference, Term};
use std::collections::HashMap;
use std::time::Duration;

/// Global answers lock and registration calls at once; this bound only
/// keeps a wedged peer from blocking the caller forever.
const CALL_TIMEOUT: Duration = Duration::from_secs(60);

pub(crate) const GNS: &str = "global_name_server";

/// Calls every node's global_name_server in parallel; the replies of the
/// nodes that answered, in no particular order.
pub(crate) async fn multi_call(mb: &mut Mailbox, nodes: &[Atom], req: &Term) -> Vec<(Atom, Term)> {
    multi_call_each(mb, nodes, std::slice::from_ref(req)).await.pop().unwrap_or_default()
}

/// [`multi_call`] for several requests at once, all sent before any reply
/// is awaited (one round trip for the lot, not one each). Each node's
/// global server handles them in the order given: they travel on one
/// connection. The replies per request, in the order of `reqs`.
pub(crate) async fn multi_call_each(mb: &mut Mailbox, nodes: &[Atom], reqs: &[Term]) -> Vec<Vec<(Atom, Term)>> {
    multi_call_where(mb, nodes, reqs, |_, _| true).await
}

/// [`multi_call_each`] where request `i` goes only to the nodes `n` for
/// which `to(i, n)` holds (the registrar releases its lock on all nodes
/// but the boss in the round that makes the change).
pub(crate) async fn multi_call_where(mb: &mut Mailbox, nodes: &[Atom], reqs: &[Term], to: impl Fn(usize, &Atom) -> bool) -> Vec<Vec<(Atom, Term)>> {
    let node = mb.node();
    let me = node.name().clone();
    let connected = node.connected_nodes();
    let unconnected: Vec<Atom> = nodes.iter().filter(|n| **n != me && !connected.contains(n)).cloned().collect();
    let mut unreachable = Vec::new();
    if !unconnected.is_empty() {
        let attempts = unconnected.iter().map(|n| {
            let node = node.clone();
            async move { (n.clone(), node.connect(n.as_str()).await.is_ok()) }
        });
        for (n, ok) in futures_util::future::join_all(attempts).await {
            if !ok {
                unreachable.push(n);
            }
        }
    }
    let mut targets: Vec<&Atom> = Vec::with_capacity(nodes.len());
    for n in nodes {
        if !unreachable.contains(n) && !targets.contains(&n) {
            targets.push(n);
        }
    }
    let mut pending: HashMap<Reference, (usize, Atom)> = HashMap::new();
    for (i, req) in reqs.iter().enumerate() {
        for n in targets.iter().filter(|n| to(i, n)) {
            let mref = mb.monitor_name(GNS, n.as_str());
            let msg = super::messages::gen_call(mb.pid(), Term::Ref(mref.clone()), req.clone());
            mb.send_to(&Dest::Name { name: Atom::new(GNS), node: (*n).clone() }, msg);
            pending.insert(mref, (i, (*n).clone()));
        }
    }
    let mut replies: Vec<Vec<(Atom, Term)>> = vec![Vec::with_capacity(targets.len()); reqs.len()];
    let deadline = tokio::time::Instant::now() + CALL_TIMEOUT;
    while !pending.is_empty() {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let got = mb
            .recv_match(left, |m| match m.as_tuple() {
                Some([Term::Ref(r), reply]) if pending.contains_key(r) => Some((r.clone(), Some(reply.clone()))),
                Some([d, Term::Ref(r), _, _, _]) if d.is_atom("DOWN") && pending.contains_key(r) => Some((r.clone(), None)),
                _ => None,
            })
            .await;
        match got {
            Ok((r, Some(reply))) => {
                mb.demonitor(&r);
                let (i, n) = pending.remove(&r).expect("pending");
                replies[i].push((n, reply));
            }
            Ok((r, None)) => {
                let (_, n) = pending.remove(&r).expect("pending");
                tracing::debug!(node = %n, "global multi_call: no global_name_server there (bad node)");
            }
            Err(e) => {
                for (r, (i, n)) in pending.drain() {
                    mb.demonitor(&r);
                    tracing::warn!(node = %n, request = ?reqs[i], error = %e, "global multi_call: no answer; counting the node as bad");
                }
            }
        }
    }
    replies
}
