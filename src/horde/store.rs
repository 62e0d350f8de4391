//! One CRDT replica's state: DeltaCrdt's `crdt_state` (an AWLWWMap) and
//! its `merkle_map`, indexed for hundreds of thousands of keys.
//!
//! Every mutation, local (`put`, `delete`) or a peer's delta (`join`),
//! goes through DeltaCrdt's `update_state_with_delta`: join per touched
//! key, refile the keys whose raw entries changed in the Merkle tree, and
//! report the keys whose *read* value changed ([`Change`], what
//! DeltaCrdt's `on_diffs` callback gets and Horde's registry acts on).

use super::awlww::{entries_eq, entries_term_shaped, join_entries, mapset_shape_of, read_entries, AwLwwMap, Dot, Entries, MapSetShape};
use super::merkle::MerkleTree;
use super::term_key::{term_eq, TermKey};
use crate::term::{Atom, Term};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::OnceLock;
use std::time::Instant;

/// A read value that changed (DeltaCrdt's `{:add, k, v}` / `{:remove, k}`).
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    Add(Term, Term),
    Remove(Term),
}

/// Where ERTS's monotonic clock starts (`erlang:system_info(start_time)`
/// on OTP 25/27 is -2^59 ns rounded): DeltaCrdt timestamps are
/// `System.monotonic_time(:nanosecond)`, so a foreign writer must count
/// from there, or its writes would win or lose every conflict.
const ERTS_MONOTONIC_START: i64 = -576_460_752_000_000_000;

/// This process's `System.monotonic_time(:nanosecond)`, on ERTS's scale.
pub fn monotonic_ns() -> i64 {
    static START: OnceLock<Instant> = OnceLock::new();
    let start = START.get_or_init(Instant::now);
    ERTS_MONOTONIC_START + start.elapsed().as_nanos() as i64
}

#[derive(Debug, Clone, Default)]
pub struct Store {
    pub node_id: u64,
    /// The causal context, compressed: max counter per node id.
    pub dots: BTreeMap<u64, u64>,
    value: HashMap<TermKey, Entries>,
    tree: MerkleTree,
    /// How the cluster's Elixir spells `MapSet` (leaf hashes depend on it).
    shape: MapSetShape,
}

impl Store {
    pub fn new(node_id: u64) -> Store {
        Store { node_id, ..Store::default() }
    }

    /// A replica holding `state` (an `%AWLWWMap{}` term), as a DeltaCrdt
    /// would after reading it from storage.
    pub fn from_term(node_id: u64, state: &Term) -> Option<Store> {
        let m = AwLwwMap::from_term(state)?;
        let mut s = Store::new(node_id);
        s.shape = mapset_shape_of(state).unwrap_or_default();
        s.dots = m.dots;
        for (k, e) in m.value {
            s.tree.put(k.clone(), entries_term_shaped(&e, s.shape));
            s.value.insert(TermKey(k), e);
        }
        Some(s)
    }

    pub fn shape(&self) -> MapSetShape {
        self.shape
    }

    /// Adopts the `MapSet` shape the peers use (seen in their data),
    /// refiling every key under the hashes they compute.
    pub fn set_shape(&mut self, shape: MapSetShape) {
        if shape == self.shape {
            return;
        }
        tracing::info!(?shape, keys = self.value.len(), "horde crdt: peers spell MapSet differently; refiling the Merkle tree");
        self.shape = shape;
        self.tree = MerkleTree::new();
        for (k, e) in &self.value {
            self.tree.put(k.0.clone(), entries_term_shaped(e, shape));
        }
    }

    pub fn len(&self) -> usize {
        self.value.len()
    }

    pub fn is_empty(&self) -> bool {
        self.value.is_empty()
    }

    /// `read(crdt, [key])`.
    pub fn read(&self, key: &Term) -> Option<&Term> {
        self.value.get(&TermKey(key.clone())).and_then(read_entries)
    }

    /// A key's raw entries as the BEAM holds them (`%{{Val, Ts} =>
    /// MapSet of dots}`), for diagnostics: which dots a replica has for it.
    pub fn entries_term(&self, key: &Term) -> Option<Term> {
        self.value.get(&TermKey(key.clone())).map(|e| entries_term_shaped(e, self.shape))
    }

    /// Every key and its read value.
    pub fn read_all(&self) -> impl Iterator<Item = (&Term, &Term)> {
        self.value.iter().filter_map(|(k, e)| read_entries(e).map(|v| (&k.0, v)))
    }

    /// The Merkle tree, hashes up to date (`MerkleMap.update_hashes/1`).
    pub fn tree(&mut self) -> &MerkleTree {
        self.tree.update_hashes();
        &self.tree
    }

    /// `AWLWWMap.add/4` then the join: the key's old dots are replaced by
    /// one new dot of this replica, stamped now, and never earlier than
    /// the values it replaces.
    ///
    /// Why not just now: DeltaCrdt ships a key's current entries with the
    /// context its sync *started* with, so a replica can hold an entry
    /// whose dot its context does not cover; after it overwrites that
    /// entry, the same dot arriving again from another peer is taken as
    /// new and the key holds both values, read by the larger timestamp.
    /// Timestamps are each node's monotonic clock, which counts from that
    /// node's start, so the older value of a node up for longer would win
    /// over this newer write (seen: a Horde child relinquished by an
    /// Elixir member and started by a just-joined Rust member read back as
    /// relinquished, and was started by nobody). Stamping past every value
    /// it replaces keeps a write that saw a value after it, as it is.
    pub fn put(&mut self, key: Term, value: Term) -> Vec<Change> {
        let ctr = self.dots.get(&self.node_id).copied().unwrap_or(0) + 1;
        let dot = (self.node_id, ctr);
        let old = self.value.remove(&TermKey(key.clone()));
        let seen = old.iter().flatten().map(|((_, ts), _)| *ts).max();
        let ts = seen.map_or(monotonic_ns(), |s| monotonic_ns().max(s.saturating_add(1)));
        let entries = vec![((value, ts), BTreeSet::from([dot]))];
        self.store_key(&key, entries, old.as_ref());
        self.dots.insert(self.node_id, ctr);
        self.report(&key, old.as_ref())
    }

    /// `AWLWWMap.remove/3` then the join: all the key's dots go.
    pub fn delete(&mut self, key: &Term) -> Vec<Change> {
        let Some(old) = self.value.remove(&TermKey(key.clone())) else { return vec![] };
        self.tree.delete(key);
        self.report(key, Some(&old))
    }

    /// `update_state_with_delta(state, delta, keys)` for a peer's delta.
    pub fn join(&mut self, delta: &AwLwwMap, keys: &[Term]) -> Vec<Change> {
        let mut changes = Vec::new();
        let empty = Entries::new();
        let before = self.dots.clone();
        let theirs_by_key: HashMap<TermKey, &Entries> = delta.value.iter().map(|(k, e)| (TermKey(k.clone()), e)).collect();
        let mut done = std::collections::HashSet::new();
        let mut restamp = Vec::new();
        for key in keys {
            // A diff's keys may repeat; join each once.
            if !done.insert(TermKey(key.clone())) {
                continue;
            }
            let theirs = theirs_by_key.get(&TermKey(key.clone())).copied().unwrap_or(&empty);
            if self.stale_claim(theirs, self.value.get(&TermKey(key.clone())), &before, &delta.dots) {
                restamp.push(key.clone());
                continue;
            }
            let old = self.value.remove(&TermKey(key.clone()));
            let joined = join_entries(old.as_ref().unwrap_or(&empty), &before, theirs, &delta.dots);
            self.store_key(key, joined, old.as_ref());
            changes.extend(self.report(key, old.as_ref()));
        }
        for (&n, &c) in &delta.dots {
            let e = self.dots.entry(n).or_insert(c);
            *e = (*e).max(c);
        }
        for key in restamp {
            changes.extend(self.restamp(&key));
        }
        changes
    }

    /// The key's current value again, with its timestamp, under a new dot
    /// of this replica: past anything a peer's context covers, so the peer
    /// takes it and drops its stale entry. The timestamp stays, so which
    /// of two concurrent writes wins does not change.
    fn restamp(&mut self, key: &Term) -> Vec<Change> {
        let Some(old) = self.value.remove(&TermKey(key.clone())) else { return vec![] };
        let Some(best) = old.iter().map(|(el, _)| el).max_by_key(|(_, ts)| *ts).cloned() else { return vec![] };
        let ctr = self.dots.get(&self.node_id).copied().unwrap_or(0) + 1;
        self.store_key(key, vec![(best, BTreeSet::from([(self.node_id, ctr)]))], Some(&old));
        self.dots.insert(self.node_id, ctr);
        self.report(key, Some(&old))
    }

    /// Whether a peer's entries for a key are stale and its context
    /// covers a live write of this replica's to it, which the peer does
    /// not hold: then the peer learned of that write through a context
    /// alone, and a plain join would drop it here.
    ///
    /// Why: DeltaCrdt cuts each step of a sync at `max_sync_size` (Horde:
    /// 200) keys or subtrees, but sends the originator's whole context
    /// with the data, one counter per node. A member whose walk was cut
    /// covers writes it was not sent and still holds what they replaced.
    /// Its join then refuses those writes (their dots look seen), and
    /// when it sends its stale entries with that context, a plain join
    /// here drops this replica's newer entry with the stale one: the key
    /// is gone from every member after the next round (seen: a leaving
    /// Rust member's relinquished children, 4 to 10 of 300 under load).
    /// Stale means every entry the peer sent is one this replica has
    /// replaced (its dot in this context, not in these entries); a peer
    /// that deleted the key sends none, and one that wrote it sends a dot
    /// this replica has not seen, so both still join as before. Such a key
    /// is kept and written again under a new dot ([`Store::join`]), which
    /// the peer will take.
    fn stale_claim(&self, theirs: &Entries, ours: Option<&Entries>, our_ctx: &BTreeMap<u64, u64>, their_ctx: &BTreeMap<u64, u64>) -> bool {
        let Some(ours) = ours else { return false };
        let covered = |ctx: &BTreeMap<u64, u64>, d: &Dot| ctx.get(&d.0).is_some_and(|max| d.1 <= *max);
        let ours_has = |d: &Dot| ours.iter().any(|(_, ds)| ds.contains(d));
        let stale = !theirs.is_empty() && theirs.iter().flat_map(|(_, ds)| ds.iter()).all(|d| covered(our_ctx, d) && !ours_has(d));
        let hidden_own = ours.iter().flat_map(|(_, ds)| ds.iter()).any(|d| d.0 == self.node_id && covered(their_ctx, d));
        stale && hidden_own
    }

    /// The keys whose entries hold a dot of this replica with a counter
    /// in `counters` (one pass over the store).
    pub fn keys_with_own_writes(&self, counters: std::ops::RangeInclusive<u64>) -> Vec<Term> {
        let me = self.node_id;
        self.value
            .iter()
            .filter(|(_, e)| e.iter().any(|(_, dots)| dots.iter().any(|(n, c)| *n == me && counters.contains(c))))
            .map(|(k, _)| k.0.clone())
            .collect()
    }

    /// Files the key's new entries, refiling the tree if they changed.
    fn store_key(&mut self, key: &Term, joined: Entries, old: Option<&Entries>) {
        let changed = !old.is_some_and(|o| entries_eq(o, &joined)) && !(old.is_none() && joined.is_empty());
        if changed {
            if joined.is_empty() {
                self.tree.delete(key);
            } else {
                self.tree.put(key.clone(), entries_term_shaped(&joined, self.shape));
            }
        }
        if !joined.is_empty() {
            self.value.insert(TermKey(key.clone()), joined);
        }
    }

    /// The read change of `key` against its entries before the mutation.
    fn report(&self, key: &Term, old: Option<&Entries>) -> Vec<Change> {
        let mut out = Vec::new();
        let before = old.and_then(read_entries);
        let after = self.read(key);
        match (before, after) {
            (Some(b), Some(a)) if term_eq(a, b) => {}
            (None, None) => {}
            (_, None) => out.push(Change::Remove(key.clone())),
            (_, Some(a)) => out.push(Change::Add(key.clone(), a.clone())),
        }
        out
    }

    /// What a diff's data message carries: `%AWLWWMap{dots: ctx, value:
    /// Map.take(value, keys)}`, `ctx` being the diff's (the originator's).
    pub fn take_term(&self, keys: &[Term], ctx: &Term) -> Term {
        // A diff's keys may repeat (MerkleMap appends each round's finds).
        let mut seen = std::collections::HashSet::new();
        let value = keys
            .iter()
            .filter_map(|k| self.value.get_key_value(&TermKey(k.clone())))
            .filter(|(k, _)| seen.insert(*k))
            .map(|(k, e)| (k.0.clone(), entries_term_shaped(e, self.shape)))
            .collect();
        Term::Map(vec![
            (Term::atom("__struct__"), Term::Atom(Atom::new("Elixir.DeltaCrdt.AWLWWMap"))),
            (Term::atom("dots"), ctx.clone()),
            (Term::atom("value"), Term::Map(value)),
        ])
    }

    /// The context as the BEAM holds it: `%{NodeId => MaxCounter}`.
    pub fn dots_term(&self) -> Term {
        Term::Map(self.dots.iter().map(|(&n, &c)| (Term::Int(n as i64), Term::Int(c as i64))).collect())
    }

    /// Reads a context a peer sent (a compressed `%{N => C}` map).
    pub fn dots_from_term(t: &Term) -> Option<BTreeMap<u64, u64>> {
        let Term::Map(m) = t else { return None };
        m.iter().map(|(n, c)| Some((u64::try_from(n.as_int()?).ok()?, u64::try_from(c.as_int()?).ok()?))).collect()
    }

    /// The whole state as an `%AWLWWMap{}` term.
    pub fn to_term(&self) -> Term {
        AwLwwMap { dots: self.dots.clone(), value: self.value.iter().map(|(k, e)| (k.0.clone(), e.clone())).collect() }.to_term_shaped(self.shape)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A peer's context covers a write of `a` it was never sent (a cut
    /// DeltaCrdt sync), and it still holds the entry that write replaced.
    /// Its stale entry, sent back with that context, must not remove the
    /// write at `a`; `a` writes the value again under a new dot, which the
    /// peer then takes.
    #[test]
    fn a_stale_entry_sent_with_a_context_covering_a_newer_own_write_does_not_remove_it() {
        let k = Term::atom("k");
        let ks = std::slice::from_ref(&k);
        let mut a = Store::new(1);
        a.put(k.clone(), Term::atom("old"));
        let mut b = Store::new(2);
        b.join(&AwLwwMap::from_term(&a.take_term(ks, &a.dots_term())).unwrap(), ks);
        a.put(k.clone(), Term::atom("new"));
        // The cut: b gets a's context, not the key.
        b.join(&AwLwwMap::from_term(&a.take_term(&[], &a.dots_term())).unwrap(), &[]);
        // b's refusal, DeltaCrdt's as well: the write's dot looks seen.
        let mut b2 = Store::new(2);
        b2.join(&AwLwwMap::from_term(&b.take_term(ks, &b.dots_term())).unwrap(), ks);
        b2.join(&AwLwwMap::from_term(&b.take_term(&[], &b.dots_term())).unwrap(), &[]);
        b2.join(&AwLwwMap::from_term(&a.take_term(ks, &a.dots_term())).unwrap(), ks);
        assert_eq!(b2.read(&k), None, "a peer covering the write refuses it, and drops its stale entry");
        // b sends its stale entry back with its context.
        let ts = |s: &Store| s.value[&TermKey(k.clone())].iter().map(|((_, t), _)| *t).max();
        let stamped = ts(&a);
        let back = AwLwwMap::from_term(&b.take_term(ks, &b.dots_term())).unwrap();
        assert_eq!(a.join(&back, ks), vec![], "no read change at a");
        assert_eq!(a.read(&k), Some(&Term::atom("new")));
        assert_eq!(ts(&a), stamped, "written again with its timestamp");
        // Written again under a new dot: b takes it.
        b.join(&AwLwwMap::from_term(&a.take_term(ks, &a.dots_term())).unwrap(), ks);
        assert_eq!(b.read(&k), Some(&Term::atom("new")));
        // A real delete by b (no entries) still removes it at a.
        b.delete(&k);
        let del = AwLwwMap::from_term(&b.take_term(ks, &b.dots_term())).unwrap();
        assert_eq!(a.join(&del, ks), vec![Change::Remove(k.clone())]);
    }

    #[test]
    fn put_delete_and_join_report_read_changes() {
        let mut a = Store::new(1);
        let k = Term::atom("k");
        assert_eq!(a.put(k.clone(), Term::Int(1)), vec![Change::Add(k.clone(), Term::Int(1))]);
        assert_eq!(a.put(k.clone(), Term::Int(1)), vec![], "same value: read unchanged");
        assert_eq!(a.dots.get(&1), Some(&2));
        let mut b = Store::new(2);
        let delta = AwLwwMap::from_term(&a.take_term(&[k.clone()], &a.dots_term())).unwrap();
        assert_eq!(b.join(&delta, &[k.clone()]), vec![Change::Add(k.clone(), Term::Int(1))]);
        assert_eq!(b.tree().root_hash(), a.tree().root_hash());
        // A later write elsewhere wins.
        assert_eq!(b.put(k.clone(), Term::Int(2)), vec![Change::Add(k.clone(), Term::Int(2))]);
        let delta = AwLwwMap::from_term(&b.take_term(&[k.clone()], &b.dots_term())).unwrap();
        assert_eq!(a.join(&delta, &[k.clone()]), vec![Change::Add(k.clone(), Term::Int(2))]);
        // A delete seen by the other side removes the key there.
        assert_eq!(a.delete(&k), vec![Change::Remove(k.clone())]);
        let delta = AwLwwMap::from_term(&a.take_term(&[k.clone()], &a.dots_term())).unwrap();
        assert_eq!(b.join(&delta, &[k.clone()]), vec![Change::Remove(k.clone())]);
        assert!(b.is_empty() && a.is_empty());
        assert_eq!(a.tree().root_hash(), None);
    }

    #[test]
    fn timestamps_are_on_the_erts_scale() {
        let t = monotonic_ns();
        assert!(t > ERTS_MONOTONIC_START && t < ERTS_MONOTONIC_START + 10_i64.pow(15));
    }
}
