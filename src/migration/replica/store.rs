//! The replica store, `erlnode_replica`: one process per node holding
//! the latest state each owner sent it. It never runs a process; when an
//! owner's node goes down it hands the affected entries to
//! [`super::failover`], and it forgets entries whose name moved on to
//! an owner that no longer replicates here.

use super::config::ReplicaConfig;
use super::messages::Msg;
use super::placed::{fetched_reply, is_placed_by_library};
use super::STORE_NAME;
use crate::migration::manager::Shared;
use crate::node::gen_call_parts;
use crate::term::{Atom, Pid, Term};
use crate::{Node, NodeEvent};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How often the store looks for stale entries and orphans.
const SWEEP: Duration = Duration::from_secs(2);
/// An entry this long without an update is checked against `global`.
const STALE_AFTER: Duration = Duration::from_secs(4);
/// An entry of a process a library places whose owner's node is gone
/// and that nobody fetched is forgotten after this (the library did not
/// restart the process, or restarted it without replicas).
const PLACED_ORPHAN_TTL: Duration = Duration::from_secs(600);

/// One replicated process as the store holds it.
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    pub type_name: String,
    pub args: Term,
    pub seq: u64,
    pub state: Term,
    pub owner: Pid,
    pub cfg: ReplicaConfig,
    pub updated: Instant,
}

/// What the store took so far ([`Msg::Stats`]).
#[derive(Default)]
struct Stats {
    puts: u64,
    deltas: u64,
    need_whole: u64,
}

/// Starts the store on `node`, registered as `erlnode_replica`.
pub(crate) fn start(node: &Node, shared: Arc<Shared>) -> Result<Pid, crate::NodeError> {
    let events = node.subscribe();
    let n2 = node.clone();
    let pid = node.spawn(move |mb| store_loop(n2, shared, mb, events));
    node.register(STORE_NAME, &pid)?;
    Ok(pid)
}

async fn store_loop(node: Node, shared: Arc<Shared>, mut mb: crate::process::Mailbox, mut events: tokio::sync::broadcast::Receiver<NodeEvent>) -> Term {
    let mut entries: HashMap<Atom, Entry> = HashMap::new();
    let mut placed = PlacedOwners::default();
    let mut stats = Stats::default();
    let mut sweep = tokio::time::interval(SWEEP);
    loop {
        tokio::select! {
            m = mb.recv() => {
                let Some(m) = m else { break };
                if placed.owner_down(&m, &mut entries) {
                    continue;
                }
                handle(&shared, &mut entries, &mut placed, &mut stats, &mut mb, m);
            }
            ev = events.recv() => match ev {
                Ok(NodeEvent::Down { node: dead, .. }) => {
                    // Processes a library places are restarted by it; they
                    // fetch their state (placed.rs).
                    let orphans: Vec<(Atom, Entry)> = entries
                        .iter()
                        .filter(|(n, e)| e.owner.node == dead && !is_placed_by_library(n))
                        .map(|(n, e)| (n.clone(), e.clone()))
                        .collect();
                    if !orphans.is_empty() {
                        tracing::warn!(node = %dead, count = orphans.len(), "owner node down: failing over its replicated processes");
                        super::failover::run(node.clone(), shared.clone(), dead, orphans);
                    }
                }
                Ok(_) => {}
                Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => tracing::warn!(missed = n, "replica store missed node events"),
                Err(tokio::sync::broadcast::error::RecvError::Closed) => {}
            },
            _ = sweep.tick() => sweep_stale(&node, &shared, &mut entries),
        }
    }
    Term::atom("normal")
}

fn handle(shared: &Shared, entries: &mut HashMap<Atom, Entry>, placed: &mut PlacedOwners, stats: &mut Stats, mb: &mut crate::process::Mailbox, m: Term) {
    if let Some((from, req)) = gen_call_parts(&m) {
        let reply = match Msg::parse(req) {
            Some(Ok(Msg::List)) => list(entries),
            Some(Ok(Msg::Fetch { name })) => {
                fetched_reply(entries.get(&name).map(|e| (e.seq, &e.owner, &e.state)))
            }
            Some(Ok(Msg::Stats)) => Term::Map(vec![
                (Term::atom("puts"), Term::Int(stats.puts as i64)),
                (Term::atom("deltas"), Term::Int(stats.deltas as i64)),
                (Term::atom("need_whole"), Term::Int(stats.need_whole as i64)),
            ]),
            _ => {
                tracing::warn!(request = ?req, "replica store: unknown call");
                Term::tuple([Term::atom("error"), Term::atom("unknown_request")])
            }
        };
        mb.reply(from, reply);
        return;
    }
    match Msg::parse(&m) {
        Some(Ok(Msg::Put { name, type_name, args, seq, state, owner, cfg, ack_to })) => {
            let fresh = match entries.get(&name) {
                Some(e) => e.owner != owner || seq > e.seq,
                None => true,
            };
            stats.puts += 1;
            if fresh {
                if is_placed_by_library(&name) {
                    placed.watch(mb, &owner);
                }
                entries.insert(name, Entry { type_name, args, seq, state, owner, cfg, updated: Instant::now() });
            }
            if let Some(to) = ack_to {
                mb.send(&to, Msg::Ack { node: mb.pid().node.clone(), seq }.to_term());
            }
        }
        Some(Ok(Msg::Delta { name, base, seq, delta, owner, ack_to })) => {
            let held = match entries.get_mut(&name) {
                Some(e) if e.owner == owner && e.seq >= seq => true,
                Some(e) if e.owner == owner && e.seq == base => match shared.replica.delta_for(&e.type_name) {
                    Some(f) => match f.apply(&e.state, &delta) {
                        Ok(state) => {
                            (e.state, e.seq, e.updated) = (state, seq, Instant::now());
                            stats.deltas += 1;
                            true
                        }
                        Err(reason) => {
                            tracing::warn!(%name, ?reason, "replica delta did not apply; asking for the whole state");
                            false
                        }
                    },
                    None => false,
                },
                _ => false,
            };
            let me = mb.pid().node.clone();
            match (held, ack_to) {
                (true, Some(to)) => mb.send(&to, Msg::Ack { node: me, seq }.to_term()),
                (true, None) => {}
                (false, _) => {
                    stats.need_whole += 1;
                    mb.send(&owner, Msg::NeedWhole { node: me, name }.to_term())
                }
            }
        }
        Some(Ok(Msg::Drop { name, owner })) => {
            if entries.get(&name).is_some_and(|e| e.owner == owner) {
                entries.remove(&name);
            }
        }
        Some(Ok(other)) => tracing::warn!(msg = ?other, "replica store: message for an owner dropped"),
        Some(Err(text)) => tracing::warn!(msg = %text, "replica store: malformed or unknown-version replica message dropped"),
        None => tracing::warn!(msg = ?m, "replica store: foreign message dropped"),
    }
}

/// The owners of entries a library places, monitored: such an entry
/// lives as long as its owner, except when the owner's node went down
/// (`noconnection`): then it waits for the process the library restarts
/// elsewhere to fetch it.
#[derive(Default)]
struct PlacedOwners {
    by_ref: HashMap<crate::term::Reference, Pid>,
    watched: std::collections::HashSet<Pid>,
}

impl PlacedOwners {
    fn watch(&mut self, mb: &crate::process::Mailbox, owner: &Pid) {
        if self.watched.insert(owner.clone()) {
            self.by_ref.insert(mb.monitor(owner), owner.clone());
        }
    }

    /// A watched owner's DOWN: its entries go unless its node went down.
    fn owner_down(&mut self, m: &Term, entries: &mut HashMap<Atom, Entry>) -> bool {
        let Some([d, Term::Ref(r), _, _, reason]) = m.as_tuple() else {
            return false;
        };
        if !d.is_atom("DOWN") {
            return false;
        }
        let Some(owner) = self.by_ref.remove(r) else {
            return false;
        };
        self.watched.remove(&owner);
        if !reason.is_atom("noconnection") {
            entries.retain(|n, e| !(e.owner == owner && is_placed_by_library(n)));
        }
        true
    }
}

/// `[{Name, Seq, Owner, StateBytes}]`, the bytes being the external
/// size of the held state: the store's memory is these plus a fixed
/// per-entry overhead (docs/replicas.md, "Cost").
fn list(entries: &HashMap<Atom, Entry>) -> Term {
    let mut v: Vec<_> = entries.iter().collect();
    v.sort_by(|a, b| a.0.cmp(b.0));
    Term::List(
        v.into_iter()
            .map(|(n, e)| {
                let bytes = crate::term::encode_otp26(&e.state).len() as i64;
                Term::tuple([Term::Atom(n.clone()), Term::Int(e.seq as i64), Term::Pid(e.owner.clone()), Term::Int(bytes)])
            })
            .collect(),
    )
}

/// Entries whose name now points at another live owner that has not
/// replicated here for a while are stale (the owner moved and its new
/// replica nodes are others): forgotten. Entries whose name is gone
/// while their owner's node is disconnected get another failover try.
fn sweep_stale(node: &Node, shared: &Arc<Shared>, entries: &mut HashMap<Atom, Entry>) {
    let connected = node.connected_nodes();
    let mut orphans: HashMap<Atom, Vec<(Atom, Entry)>> = HashMap::new();
    entries.retain(|name, e| {
        if e.updated.elapsed() < STALE_AFTER {
            return true;
        }
        if is_placed_by_library(name) {
            // Not in `global`; kept while the owner lives (its DOWN drops
            // it) or its node is gone, until fetched or too old.
            return connected.contains(&e.owner.node)
                || &e.owner.node == node.name()
                || e.updated.elapsed() < PLACED_ORPHAN_TTL;
        }
        match shared.registry.whereis(name.as_str()) {
            Some(p) if p != e.owner => false,
            None if &e.owner.node != node.name() && !connected.contains(&e.owner.node) => {
                orphans.entry(e.owner.node.clone()).or_default().push((name.clone(), e.clone()));
                true
            }
            _ => true,
        }
    });
    for (dead, list) in orphans {
        super::failover::run(node.clone(), shared.clone(), dead, list);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The store's per-process overhead besides the state itself
    /// (docs/replicas.md, "Cost").
    #[test]
    fn entry_overhead_is_bounded() {
        let size = std::mem::size_of::<Entry>();
        eprintln!("size_of::<Entry>() = {size}");
        assert!(size <= 256, "{size}");
    }
}
