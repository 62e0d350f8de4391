//! A DeltaCrdt peer as a process: the pure [`Crdt`] state machine plus
//! its mailbox (registered as `X.Crdt`), the monitors DeltaCrdt keeps on
//! its neighbours and the sends its effects ask for.
//!
//! Horde runs one DeltaCrdt under each Registry and each
//! DynamicSupervisor; erlnode's registry ([`super::registry`]) and
//! supervisor ([`super::supervisor`]) each own one of these and get back
//! only the read changes (`{:add, k, v}` / `{:remove, k}`, what DeltaCrdt
//! hands Horde through `on_diffs`), which they apply to their own tables.

use super::crdt::{Crdt, Effects};
use super::merkle_diff::field;
use super::store::{Change, Store};
use super::term_key::term_eq;
use crate::process::{Dest, Mailbox};
use crate::term::{Atom, Reference, Term};
use crate::node::NodeEvent;
use std::collections::HashMap;
use tokio::sync::broadcast;

pub(crate) struct CrdtPeer {
    pub crdt: Crdt,
    pub mb: Mailbox,
    /// The Horde name it serves (`Reg`, `Sup`), for logs.
    owner: Atom,
    monitors: HashMap<Reference, Term>,
    monitored: Vec<Term>,
}

/// The kind and payload of a Horde CRDT key (`{:key, k}`, `{:member,
/// m}`, `{:process, id}`, ...).
pub(crate) fn key_kind(t: &Term) -> Option<(&str, &Term)> {
    match t.as_tuple()? {
        [Term::Atom(a), rest] => Some((a.as_str(), rest)),
        _ => None,
    }
}

/// `X.Crdt`, the name Horde gives the CRDT of `X`.
pub(crate) fn crdt_name(name: &Atom) -> String {
    format!("{}.Crdt", name.as_str())
}

impl CrdtPeer {
    /// A fresh replica with DeltaCrdt's random node id
    /// (`:rand.uniform(1_000_000_000)`).
    pub fn new(owner: Atom, mb: Mailbox, max_items: usize) -> CrdtPeer {
        let node_id = rand::random::<u64>() % 1_000_000_000 + 1;
        let crdt = Crdt::new(Store::new(node_id), Term::Pid(mb.pid().clone())).with_max_items(max_items);
        CrdtPeer { crdt, mb, owner, monitors: HashMap::new(), monitored: vec![] }
    }

    /// DeltaCrdt's `monitor_neighbours/1`: one monitor per neighbour,
    /// renewed after its DOWN.
    pub fn monitor_neighbours(&mut self) {
        for n in self.crdt.neighbours().to_vec() {
            if self.monitored.iter().any(|m| term_eq(m, &n)) {
                continue;
            }
            let r = match n.as_tuple() {
                Some([Term::Atom(name), Term::Atom(node)]) => self.mb.monitor_name(name.as_str(), node.as_str()),
                _ => match &n {
                    Term::Pid(p) => self.mb.monitor(p),
                    _ => continue,
                },
            };
            self.monitors.insert(r, n.clone());
            self.monitored.push(n);
        }
    }

    /// A tick of `sync_interval`: renew monitors, offer syncs.
    pub fn tick(&mut self) -> Vec<Change> {
        self.monitor_neighbours();
        let fx = self.crdt.sync();
        self.send(fx)
    }

    /// [`Self::tick`] with [`Crdt::sync_forced`].
    pub fn tick_forced(&mut self) -> Vec<Change> {
        self.monitor_neighbours();
        let fx = self.crdt.sync_forced();
        self.send(fx)
    }

    /// `set_neighbours`: a no-op when the set is unchanged (DeltaCrdt
    /// would start a sync round with everyone).
    pub fn set_neighbours(&mut self, n: Vec<Term>) -> Vec<Change> {
        let cur = self.crdt.neighbours();
        if n.len() == cur.len() && n.iter().all(|x| cur.iter().any(|y| term_eq(x, y))) {
            return vec![];
        }
        let gone: Vec<Reference> = self.monitors.iter().filter(|(_, m)| !n.iter().any(|x| term_eq(x, m))).map(|(r, _)| r.clone()).collect();
        for r in gone {
            self.monitors.remove(&r);
            self.mb.demonitor(&r);
        }
        self.monitored.retain(|m| n.iter().any(|x| term_eq(x, m)));
        let fx = self.crdt.set_neighbours(n);
        self.monitor_neighbours();
        self.send(fx)
    }

    pub fn put(&mut self, key: Term, value: Term) -> Vec<Change> {
        self.crdt.put(key, value)
    }

    pub fn delete(&mut self, key: &Term) -> Vec<Change> {
        self.crdt.delete(key)
    }

    /// Handles `first` and everything else already queued, fresh syncs
    /// superseded by newer ones skipped (see [`coalesce`]).
    pub fn on_messages(&mut self, first: Term) -> Vec<Change> {
        let mut batch = vec![first];
        batch.extend(self.mb.drain());
        let mut changes = vec![];
        for m in coalesce(batch) {
            changes.extend(self.on_message(m));
        }
        changes
    }

    fn on_message(&mut self, m: Term) -> Vec<Change> {
        let t0 = std::time::Instant::now();
        if let Some([t, Term::Ref(r), _, _, _]) = m.as_tuple() {
            if t.is_atom("DOWN") {
                if let Some(n) = self.monitors.remove(r) {
                    self.monitored.retain(|x| !term_eq(x, &n));
                    self.crdt.down(&n);
                }
                return vec![];
            }
        }
        if let Some((from, req)) = crate::node::gen_call_parts(&m) {
            self.read_call(from, req);
            return vec![];
        }
        let changes = match self.crdt.handle(&m) {
            Ok(fx) => self.send(fx),
            Err(e) => {
                tracing::warn!(owner = %self.owner, error = %e, shape = %short(&m), "horde crdt: message dropped");
                vec![]
            }
        };
        tracing::trace!(owner = %self.owner, took = ?t0.elapsed(), kind = %short(&m), "crdt message handled");
        changes
    }

    /// DeltaCrdt's read calls (`DeltaCrdt.to_map/2`, `DeltaCrdt.get/3`,
    /// `DeltaCrdt.read/3`: `:read` and `{:read, Keys}`), which erlnode's
    /// Elixir library makes of a peer's replica to learn whether a write
    /// has reached it. Writes by call are not served: only the owner
    /// writes its replica. Any other call is dropped with a warning (the
    /// caller times out), as a BEAM CRDT would crash on it.
    fn read_call(&mut self, from: &Term, req: &Term) {
        let store = &self.crdt.store;
        let pairs: Vec<(Term, Term)> = match req {
            r if r.is_atom("read") => store.read_all().map(|(k, v)| (k.clone(), v.clone())).collect(),
            r => match r.as_tuple() {
                Some([t, keys]) if t.is_atom("read") => match keys {
                    Term::List(keys) => keys.iter().filter_map(|k| store.read(k).map(|v| (k.clone(), v.clone()))).collect(),
                    _ => {
                        tracing::warn!(owner = %self.owner, request = %short(req), "horde crdt: read call whose keys are not a list dropped");
                        return;
                    }
                },
                _ => {
                    tracing::warn!(owner = %self.owner, request = %short(req), "horde crdt: call not served (only reads are)");
                    return;
                }
            },
        };
        self.mb.reply(from, Term::Map(pairs));
    }

    /// Sends what the CRDT produced; returns its read changes.
    fn send(&mut self, fx: Effects) -> Vec<Change> {
        for (to, msg) in fx.sends {
            match (&to, to.as_tuple()) {
                (Term::Pid(p), _) => self.mb.send(p, msg),
                (_, Some([Term::Atom(name), Term::Atom(node)])) => self.mb.send_to(&Dest::local(name.as_str(), node.as_str()), msg),
                _ => tracing::warn!(to = %short(&to), "horde crdt: no address to send to"),
            }
        }
        fx.changes
    }
}

/// The CRDT names of the members other than `me` (`{Name.Crdt, node}`
/// for each `{Name, node}`, each member's own name: a member may be named
/// unlike this one, `{SupA, node}` in `SupB`'s members), as Horde's
/// `set_crdt_neighbours` and `crdt_names` make them.
pub(crate) fn crdt_neighbours(me: &Term, members: &[Term]) -> Vec<Term> {
    members
        .iter()
        .filter(|m| !term_eq(m, me))
        .filter_map(|m| match m.as_tuple() {
            Some([Term::Atom(name), node @ Term::Atom(_)]) => Some(Term::tuple([Term::atom(&crdt_name(name)), node.clone()])),
            _ => None,
        })
        .collect()
}

/// `members: :auto`. Horde's NodeListener sets the members to the
/// visible nodes on every nodeup and nodedown; that also drops members
/// learned from the CRDT whose node this one has not connected to yet (a
/// joining node hears of every member before its links to them are up),
/// and the drop deletes their entries for everyone. Here a member goes
/// only when its own node went down; a member that left while this node
/// was not connected to it is removed by the members that saw it go,
/// through the CRDT. The nodes seen going down are remembered (until they
/// come back) and pruned again on every tick: DeltaCrdt can bring a
/// deleted `{:member, _}` back (see `Store::put`).
#[derive(Default)]
pub(crate) struct AutoMembers {
    gone: std::collections::HashSet<Atom>,
}

impl AutoMembers {
    /// The members after a node event.
    pub fn on_event(&mut self, current: &[Term], event: &Result<NodeEvent, broadcast::error::RecvError>, visible: Vec<Term>, member_of: impl Fn(&Atom) -> Term) -> Vec<Term> {
        match event {
            Ok(NodeEvent::Down { node, .. }) => {
                self.gone.insert(node.clone());
                let gone = member_of(node);
                current.iter().filter(|m| !term_eq(m, &gone)).cloned().collect()
            }
            other => {
                if let Ok(NodeEvent::Up(n)) = other {
                    self.gone.remove(n);
                }
                let mut m = current.to_vec();
                for v in visible {
                    if !m.iter().any(|x| term_eq(x, &v)) {
                        m.push(v);
                    }
                }
                m
            }
        }
    }

    /// The members without those whose node went down, if any came back.
    pub fn prune(&self, current: &[Term]) -> Option<Vec<Term>> {
        let down = |m: &Term| matches!(m.as_tuple(), Some([_, Term::Atom(n)]) if self.gone.contains(n));
        current.iter().any(down).then(|| current.iter().filter(|m| !down(m)).cloned().collect())
    }
}

/// The members a registry or supervisor `name` starts with: the visible
/// nodes (`members: :auto`), or the given nodes with this one first.
pub(crate) fn initial_members(node: &crate::Node, name: &Atom, auto: bool, given: &[Atom]) -> Vec<Term> {
    let member_of = |n: &Atom| Term::tuple([Term::Atom(name.clone()), Term::Atom(n.clone())]);
    if auto {
        return visible_nodes(node).iter().map(member_of).collect();
    }
    let me = member_of(node.name());
    let mut m: Vec<Term> = given.iter().map(member_of).collect();
    if !m.iter().any(|x| term_eq(x, &me)) {
        m.insert(0, me);
    }
    m
}

/// DeltaCrdt's sync tick; a late tick is not made up for.
pub(crate) fn sync_ticker(every: std::time::Duration) -> tokio::time::Interval {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick
}

/// `Node.list([:visible, :this])`: the nodes Horde's NodeListener makes
/// members with `members: :auto` (hidden nodes are not).
pub(crate) fn visible_nodes(node: &crate::Node) -> Vec<Atom> {
    let mut nodes = vec![node.name().clone()];
    for n in node.connected_nodes() {
        let hidden = node.peer_flags(&n).is_some_and(|f| f & crate::handshake::flags::PUBLISHED == 0);
        if !hidden && !nodes.contains(&n) {
            nodes.push(n);
        }
    }
    nodes
}

/// Drops the fresh syncs (`{diff, Diff}` at the root, no keys yet) a
/// peer started while older ones from the same originator wait in the
/// queue: each restarts the whole comparison, and DeltaCrdt starts one
/// per tick whether or not the last one finished, so a peer slower than
/// the tick would fall further behind. The newest one per originator is
/// kept; everything else keeps its order.
pub(crate) fn coalesce(batch: Vec<Term>) -> Vec<Term> {
    if batch.len() < 2 {
        return batch;
    }
    let fresh_from = |m: &Term| -> Option<Term> {
        let [t, d] = m.as_tuple()? else { return None };
        if !t.is_atom("diff") {
            return None;
        }
        let c = field(d, "continuation")?;
        let fresh = matches!(field(c, "keys"), Some(Term::List(k)) if k.is_empty())
            && matches!(field(c, "trees"), Some(Term::List(t)) if t.len() == 1 && matches!(t[0].as_tuple(), Some([Term::Binary(l), _]) if l.is_empty()));
        let from = field(d, "from")?;
        let originator = field(d, "originator")?;
        (fresh && term_eq(from, originator)).then(|| originator.clone())
    };
    let origins: Vec<Option<Term>> = batch.iter().map(fresh_from).collect();
    let mut out = Vec::with_capacity(batch.len());
    for (i, m) in batch.into_iter().enumerate() {
        let superseded = origins[i].as_ref().is_some_and(|o| origins[i + 1..].iter().any(|x| x.as_ref().is_some_and(|x| term_eq(x, o))));
        if superseded {
            tracing::debug!("horde crdt: a fresh sync superseded by a newer one from the same peer skipped");
        } else {
            out.push(m);
        }
    }
    out
}

/// A short description of a term's outer shape, for logs (never the
/// whole term: diffs are big, and formatting one costs more than it).
pub(crate) fn short(t: &Term) -> String {
    crate::processhub::shape(t)
}
