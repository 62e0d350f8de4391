//! DeltaCrdt's `CausalCrdt` sync as a pure state machine: a message in,
//! the messages to send and the read changes out. The process around it
//! ([`super::peer`]) adds the mailbox, the timer and the monitors; the
//! conformance test replays recorded traces through this directly.
//!
//! The protocol (delta_crdt 0.6.4, `causal_crdt.ex`):
//!
//! 1. Each tick (Horde: 300 ms) and on `set_neighbours`, a CRDT sends
//!    every neighbour `{diff, Diff}`: its Merkle tree cut 8 levels down,
//!    its context as `dots`, itself as `originator` and `from`.
//! 2. A receiver reverses `from`/`to` and compares the continuation with
//!    its own tree. Unfinished: it sends the next continuation back.
//!    Finished with different keys: if the other side is the originator it
//!    asks it for the data (`{get_diff, Diff, Keys}`), else (it is the
//!    originator) it sends its entries for the keys, `{diff, Delta, Keys}`
//!    with the diff's `dots` as context. Either way it sends the
//!    originator `{ack_diff, Neighbour}`.
//! 3. Data only flows from the originator: each side pushes its own keys
//!    by originating its own syncs.
//!
//! Unlike DeltaCrdt (whose outstanding-sync filter keeps nothing, so it
//! sends a diff every tick however slow the peer), this peer starts a new
//! sync with a neighbour only when the last one was acked, ended by a
//! DOWN or is older than [`STALE_SYNC`]; and at rest (its tree unchanged
//! since the neighbour acked a sync of it) only every [`RESYNC_AT_REST`].
//! The BEAM side sees the same messages, fewer of them: a sync only
//! pushes the originator's keys, so one of an unchanged tree to a
//! neighbour that already took it carries nothing.

use super::merkle_diff::{continue_partial_diff, prepare_partial_diff, Step};
use super::messages::{self, ack_message, data_message, diff_message, get_diff_message, CrdtMessage, CrdtParseError, SyncDiff};
use super::store::{Change, Store};
use super::term_key::{term_eq, TermKey};
use crate::term::Term;
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// A sync not acked after this long no longer holds back the next one.
pub const STALE_SYNC: Duration = Duration::from_secs(5);
/// An unchanged tree is offered again this often (a neighbour that lost
/// state without a DOWN, e.g. restarted between two ticks, gets it back).
pub const RESYNC_AT_REST: Duration = Duration::from_secs(3);
/// Keys plus trees one message may carry before it is dropped unread.
pub const DEFAULT_MAX_ITEMS: usize = 1 << 21;

/// A neighbour, how long ago the sync in flight with it started, and the
/// root hash it last acked and how long ago ([`Crdt::sync_states`]).
pub type SyncState = (Term, Option<Duration>, Option<(Option<u32>, Duration)>);

/// What handling a message produced.
#[derive(Debug, Default, PartialEq)]
pub struct Effects {
    /// `(destination, message)`: destination is a pid or `{Name, Node}`.
    pub sends: Vec<(Term, Term)>,
    pub changes: Vec<Change>,
}

#[derive(Debug)]
pub struct Crdt {
    pub store: Store,
    /// This process's pid, as `originator`/`from` of its syncs.
    me: Term,
    neighbours: Vec<Term>,
    /// Syncs in flight: when started, and the root hash they offered.
    outstanding: HashMap<TermKey, (Instant, Option<u32>)>,
    /// The root hash each neighbour last acked a sync of, and when.
    acked: HashMap<TermKey, (Option<u32>, Instant)>,
    /// When the last sync each neighbour acked had started.
    acked_started: HashMap<TermKey, Instant>,
    max_items: usize,
    /// Diagnostics: when [`Crdt::sync`] last ran, and how many messages
    /// [`Crdt::handle`] took.
    last_round: Option<Instant>,
    handled: u64,
}

impl Crdt {
    pub fn new(store: Store, me: Term) -> Crdt {
        Crdt { store, me, neighbours: vec![], outstanding: HashMap::new(), acked: HashMap::new(), acked_started: HashMap::new(), max_items: DEFAULT_MAX_ITEMS, last_round: None, handled: 0 }
    }

    pub fn with_max_items(mut self, n: usize) -> Crdt {
        self.max_items = n;
        self
    }

    pub fn neighbours(&self) -> &[Term] {
        &self.neighbours
    }

    /// Handles one message. An error means it was not a (well-formed)
    /// DeltaCrdt message: nothing changed, nothing to send.
    pub fn handle(&mut self, msg: &Term) -> Result<Effects, CrdtParseError> {
        self.handled += 1;
        Ok(match messages::parse(msg, self.max_items)? {
            CrdtMessage::Diff(d) => self.on_diff(d.reversed()),
            CrdtMessage::Data { delta, keys, shape } => {
                if let Some(shape) = shape {
                    self.store.set_shape(shape);
                }
                Effects { sends: vec![], changes: self.store.join(&delta, &keys) }
            }
            CrdtMessage::GetDiff { diff, keys } => {
                let d = diff.reversed();
                let mut fx = Effects::default();
                fx.sends.push((d.to.clone(), data_message(self.store.take_term(&keys, &d.dots), &keys)));
                self.ack(&d, &mut fx);
                fx
            }
            CrdtMessage::Ack(to) => {
                let k = TermKey(to);
                if let Some((started, root)) = self.outstanding.remove(&k) {
                    self.acked_started.insert(k.clone(), started);
                    self.acked.insert(k, (root, Instant::now()));
                }
                Effects::default()
            }
            CrdtMessage::SetNeighbours(n) => self.set_neighbours(n),
            // Monitors belong to the process around this; it calls `down`.
            CrdtMessage::Down(_) | CrdtMessage::ExitNormal => Effects::default(),
            CrdtMessage::Sync => self.sync(),
        })
    }

    /// `handle_info({:diff, diff}, ...)`, `d` already reversed.
    fn on_diff(&mut self, d: SyncDiff) -> Effects {
        let mut fx = Effects::default();
        let step = match continue_partial_diff(self.store.tree(), &d.continuation) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "horde crdt: diff against a malformed tree dropped");
                return fx;
            }
        };
        match step {
            Step::Continue(c) => {
                let next = SyncDiff { continuation: c, ..d };
                fx.sends.push((next.to.clone(), diff_message(&next)));
            }
            Step::Done(keys) if keys.is_empty() => self.ack(&d, &mut fx),
            Step::Done(keys) => {
                if term_eq(&d.originator, &d.to) {
                    fx.sends.push((d.to.clone(), get_diff_message(&d, &keys)));
                } else {
                    fx.sends.push((d.to.clone(), data_message(self.store.take_term(&keys, &d.dots), &keys)));
                }
                self.ack(&d, &mut fx);
            }
        }
        fx
    }

    /// DeltaCrdt's `ack_diff/1`: tells the originator, who is one end of
    /// the diff; a diff naming a third party as originator is not acked
    /// (DeltaCrdt would crash on it).
    fn ack(&self, d: &SyncDiff, fx: &mut Effects) {
        if term_eq(&d.originator, &d.from) {
            fx.sends.push((d.originator.clone(), ack_message(&d.to)));
        } else if term_eq(&d.originator, &d.to) {
            fx.sends.push((d.originator.clone(), ack_message(&d.from)));
        } else {
            tracing::warn!("horde crdt: diff whose originator is neither end; no ack sent");
        }
    }

    /// `set_neighbours`: the new list, then a sync round with all of them.
    pub fn set_neighbours(&mut self, n: Vec<Term>) -> Effects {
        self.outstanding.retain(|k, _| n.iter().any(|x| term_eq(x, &k.0)));
        self.acked.retain(|k, _| n.iter().any(|x| term_eq(x, &k.0)));
        self.acked_started.retain(|k, _| n.iter().any(|x| term_eq(x, &k.0)));
        self.neighbours = n;
        self.sync()
    }

    /// Whether every neighbour acked a sync of the current tree: a
    /// member that leaves waits for this, so its last writes are not lost
    /// with it.
    pub fn synced_with_all(&mut self) -> bool {
        let root = self.store.tree().root_hash();
        self.neighbours.iter().all(|n| self.acked.get(&TermKey(n.clone())).is_some_and(|(r, _)| *r == root))
    }

    /// Whether every neighbour acked a sync that started at or after `t`:
    /// it has then been offered every key as it was at `t`. DeltaCrdt's
    /// rounds walk the tree as it is at each round, so two writes made
    /// while a sync is under way can reach a neighbour in either order; a
    /// write that must arrive after another waits for this.
    pub fn all_acked_since(&self, t: Instant) -> bool {
        self.neighbours.iter().all(|n| self.acked_started.get(&TermKey(n.clone())).is_some_and(|s| *s >= t))
    }

    /// Each neighbour's sync state, for diagnostics: how long ago the
    /// sync in flight with it started, and how long ago it acked which
    /// root hash.
    pub fn sync_states(&self) -> Vec<SyncState> {
        let now = Instant::now();
        self.neighbours
            .iter()
            .map(|n| {
                let k = TermKey(n.clone());
                let out = self.outstanding.get(&k).map(|(t, _)| now.duration_since(*t));
                let acked = self.acked.get(&k).map(|(r, t)| (*r, now.duration_since(*t)));
                (n.clone(), out, acked)
            })
            .collect()
    }

    /// How long ago [`Crdt::sync`] last ran, and how many messages this
    /// CRDT has handled (diagnostics: a peer too busy to offer its own
    /// keys shows a late round and a fast-growing count).
    pub fn activity(&self) -> (Option<Duration>, u64) {
        (self.last_round.map(|t| t.elapsed()), self.handled)
    }

    /// A neighbour's monitor fired: its sync is over.
    pub fn down(&mut self, neighbour: &Term) {
        self.outstanding.remove(&TermKey(neighbour.clone()));
        self.acked.remove(&TermKey(neighbour.clone()));
    }

    /// One tick: a diff to every neighbour without a sync in flight.
    pub fn sync(&mut self) -> Effects {
        self.sync_with(false)
    }

    /// [`Crdt::sync`], offering the tree also to neighbours that acked it
    /// unchanged a moment ago (a flush that must see a round end).
    pub fn sync_forced(&mut self) -> Effects {
        self.sync_with(true)
    }

    fn sync_with(&mut self, force: bool) -> Effects {
        let mut fx = Effects::default();
        let now = Instant::now();
        self.last_round = Some(now);
        let root = self.store.tree().root_hash();
        let first = SyncDiff {
            continuation: prepare_partial_diff(self.store.tree()),
            dots: self.store.dots_term(),
            originator: self.me.clone(),
            from: self.me.clone(),
            to: Term::nil(),
        };
        for n in &self.neighbours {
            if term_eq(n, &self.me) {
                continue;
            }
            let key = TermKey(n.clone());
            if self.outstanding.get(&key).is_some_and(|(t, _)| now.duration_since(*t) < STALE_SYNC) {
                continue;
            }
            if !force && self.acked.get(&key).is_some_and(|(r, t)| *r == root && now.duration_since(*t) < RESYNC_AT_REST) {
                continue;
            }
            self.outstanding.insert(key, (now, root));
            let d = SyncDiff { to: n.clone(), ..first.clone() };
            fx.sends.push((n.clone(), diff_message(&d)));
        }
        fx
    }

    /// A local write (`DeltaCrdt.put`).
    pub fn put(&mut self, key: Term, value: Term) -> Vec<Change> {
        self.store.put(key, value)
    }

    /// A local delete (`DeltaCrdt.delete` / `drop`).
    pub fn delete(&mut self, key: &Term) -> Vec<Change> {
        self.store.delete(key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::term::{Atom, Pid};

    fn pid(id: u32) -> Term {
        Term::Pid(Pid { node: Atom::new("t@h"), id, serial: 0, creation: 1 })
    }

    /// Delivers every send to the peer it names until nothing is left.
    fn run(a: &mut Crdt, b: &mut Crdt, first: Effects) -> usize {
        let mut queue: Vec<(Term, Term)> = first.sends;
        let mut n = 0;
        while let Some((to, msg)) = (!queue.is_empty()).then(|| queue.remove(0)) {
            n += 1;
            let target = if term_eq(&to, &a.me) { &mut *a } else { &mut *b };
            queue.extend(target.handle(&msg).expect("well-formed").sends);
        }
        n
    }

    #[test]
    fn two_peers_converge_both_ways() {
        let mut a = Crdt::new(Store::new(1), pid(1));
        let mut b = Crdt::new(Store::new(2), pid(2));
        for i in 0..2000 {
            a.put(Term::Int(i), Term::atom("a"));
        }
        for i in 1500..2500 {
            b.put(Term::Int(i), Term::atom("b"));
        }
        let fx = a.set_neighbours(vec![pid(2)]);
        run(&mut a, &mut b, fx);
        let fx = b.set_neighbours(vec![pid(1)]);
        run(&mut a, &mut b, fx);
        assert_eq!(a.store.len(), 2500);
        assert_eq!(b.store.len(), 2500);
        assert_eq!(a.store.tree().root_hash(), b.store.tree().root_hash());
        // a's tree changed when b's keys arrived: offered once more...
        let fx = a.sync();
        assert_eq!(run(&mut a, &mut b, fx), 2);
        // ...then, at rest, nothing to offer until the tree changes...
        assert_eq!(a.sync(), Effects::default());
        // ...or RESYNC_AT_REST passes: then one round, diff and ack.
        a.acked.clear();
        let fx = a.sync();
        assert_eq!(run(&mut a, &mut b, fx), 2);
        a.put(Term::Int(-1), Term::atom("new"));
        let fx = a.sync();
        run(&mut a, &mut b, fx);
        assert_eq!(b.store.read(&Term::Int(-1)), Some(&Term::atom("new")));
    }

    #[test]
    fn unknown_and_malformed_messages_are_errors_not_effects() {
        let mut a = Crdt::new(Store::new(1), pid(1)).with_max_items(10);
        assert_eq!(a.handle(&Term::atom("hello")), Err(CrdtParseError::Unknown));
        let huge = Term::tuple([Term::atom("diff"), Term::Map(vec![]), Term::List((0..11).map(Term::Int).collect())]);
        assert!(matches!(a.handle(&huge), Err(CrdtParseError::Malformed { .. })));
        let bad_tree = SyncDiff {
            continuation: Default::default(),
            dots: Term::Map(vec![]),
            originator: pid(2),
            from: pid(2),
            to: pid(1),
        }
        .to_term();
        let Term::Map(mut fields) = bad_tree else { panic!() };
        for (k, v) in fields.iter_mut() {
            if k.is_atom("continuation") {
                *v = Term::atom("nope");
            }
        }
        assert!(a.handle(&Term::tuple([Term::atom("diff"), Term::Map(fields)])).is_err());
        assert_eq!(a.handle(&Term::atom("sync")), Ok(Effects::default()), "no neighbours, nothing sent");
    }
}
