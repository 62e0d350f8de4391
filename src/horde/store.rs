//! One CRDT replica's state: DeltaCrdt's `crdt_state` (an AWLWWMap) and
//! its `merkle_map`, indexed for hundreds of thousands of keys.
//!
//! Every mutation, local (`put`, `delete`) or a peer's delta (`join`),
//! goes through DeltaCrdt's `update_state_with_delta`: join per touched
//! key, refile the keys whose raw entries changed in the Merkle tree, and
//! report the keys whose *read* value changed ([`Change`], what
//! DeltaCrdt's `on_diffs` callback gets and Horde's registry acts on).

use super::awlww::{covered, entries_eq, entries_term_shaped, join_entries, mapset_shape_of, read_entries, AwLwwMap, Dot, Entries, MapSetShape};
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
    /// For a key whose entries include a write of this replica: the dots
    /// that write replaced (what the key held when it was written, and
    /// what those had replaced, newest first, at most [`REPLACED_KEPT`]).
    /// What [`Store::stale_claim`] may call stale.
    replaced: HashMap<TermKey, Vec<Dot>>,
    tree: MerkleTree,
    /// How the cluster's Elixir spells `MapSet` (leaf hashes depend on it).
    shape: MapSetShape,
}

/// How many replaced dots a key remembers ([`Store::stale_claim`]).
const REPLACED_KEPT: usize = 16;

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
        let mut replaced: Vec<Dot> = old.iter().flatten().flat_map(|(_, ds)| ds.iter().copied()).collect();
        replaced.extend(self.replaced.remove(&TermKey(key.clone())).unwrap_or_default());
        replaced.truncate(REPLACED_KEPT);
        self.store_key(&key, entries, old.as_ref());
        self.replaced.insert(TermKey(key.clone()), replaced);
        self.dots.insert(self.node_id, ctr);
        self.report(&key, old.as_ref())
    }

    /// `AWLWWMap.remove/3` then the join: all the key's dots go.
    pub fn delete(&mut self, key: &Term) -> Vec<Change> {
        let Some(old) = self.value.remove(&TermKey(key.clone())) else { return vec![] };
        self.replaced.remove(&TermKey(key.clone()));
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
            if self.stale_claim(key, theirs, &delta.dots) {
                restamp.push(key.clone());
                continue;
            }
            let old = self.value.remove(&TermKey(key.clone()));
            let joined = join_entries(old.as_ref().unwrap_or(&empty), &before, theirs, &delta.dots);
            if !joined.iter().any(|(_, ds)| ds.iter().any(|d| d.0 == self.node_id)) {
                self.replaced.remove(&TermKey(key.clone()));
            }
            self.store_key(key, joined, old.as_ref());
            changes.extend(self.report(key, old.as_ref()));
        }
        for (&n, &c) in &delta.dots {
            let e = self.dots.entry(n).or_insert(c);
            *e = (*e).max(c);
        }
        for key in restamp {
            changes.extend(self.restamp(&key, &delta.dots));
        }
        changes
    }

    /// Each entry of this replica's whose dot `their_ctx` covers gets a
    /// new dot, value and timestamp unchanged: past anything the peer's
    /// context covers, so the peer takes it and drops its stale entry.
    /// Other entries stay as they are, so nothing changes which value
    /// reads, or what a later delete of theirs removes.
    fn restamp(&mut self, key: &Term, their_ctx: &BTreeMap<u64, u64>) -> Vec<Change> {
        let k = TermKey(key.clone());
        let Some(old) = self.value.remove(&k) else { return vec![] };
        let me = self.node_id;
        let mut ctr = self.dots.get(&me).copied().unwrap_or(0);
        let mut moved = Vec::new();
        let entries: Entries = old
            .iter()
            .map(|(el, ds)| {
                let hidden: Vec<Dot> = ds.iter().copied().filter(|d| d.0 == me && covered(their_ctx, d)).collect();
                if hidden.is_empty() {
                    return (el.clone(), ds.clone());
                }
                ctr += 1;
                moved.extend(hidden.iter().copied());
                let mut nd: BTreeSet<Dot> = ds.iter().copied().filter(|d| !hidden.contains(d)).collect();
                nd.insert((me, ctr));
                (el.clone(), nd)
            })
            .collect();
        let replaced = self.replaced.entry(k).or_default();
        moved.append(replaced);
        moved.truncate(REPLACED_KEPT);
        *replaced = moved;
        self.store_key(key, entries, Some(&old));
        self.dots.insert(me, ctr);
        self.report(key, Some(&old))
    }

    /// Whether a peer's entries for a key are all ones this replica's own
    /// write to it replaced, while the peer's context covers that write,
    /// which the peer does not hold: then the peer learned of the write
    /// through a context alone, and a plain join would drop it here.
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
    /// Only dots this replica's write replaced count as stale, so a peer
    /// that deleted the key after seeing that write, or holds an entry
    /// written concurrently with it, joins as before; so does one that
    /// sends no entry at all. Such a key is kept and its covered entries
    /// written again under new dots ([`Store::restamp`]).
    fn stale_claim(&self, key: &Term, theirs: &Entries, their_ctx: &BTreeMap<u64, u64>) -> bool {
        let k = TermKey(key.clone());
        let (Some(ours), Some(replaced)) = (self.value.get(&k), self.replaced.get(&k)) else { return false };
        let stale = !theirs.is_empty() && theirs.iter().flat_map(|(_, ds)| ds.iter()).all(|d| replaced.contains(d));
        let hidden_own = ours.iter().flat_map(|(_, ds)| ds.iter()).any(|d| d.0 == self.node_id && covered(their_ctx, d));
        stale && hidden_own
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

    fn send(from: &Store, keys: &[Term]) -> AwLwwMap {
        AwLwwMap::from_term(&from.take_term(keys, &from.dots_term())).unwrap()
    }

    /// Not stale: a third member deleted this store's write after seeing
    /// it, and still holds a write made concurrently with it. Its entry
    /// is no dot this store's write replaced, so the delete applies.
    #[test]
    fn a_delete_by_a_member_holding_a_concurrent_entry_still_applies() {
        let k = Term::atom("k");
        let ks = std::slice::from_ref(&k);
        let (mut a, mut q, mut p) = (Store::new(1), Store::new(2), Store::new(3));
        a.put(k.clone(), Term::atom("va"));
        q.put(k.clone(), Term::atom("vq"));
        p.join(&send(&a, ks), ks);
        p.delete(&k);
        p.join(&send(&q, ks), ks);
        assert_eq!(p.read(&k), Some(&Term::atom("vq")));
        q.delete(&k);
        a.join(&send(&q, ks), ks);
        assert_eq!(a.read(&k), Some(&Term::atom("va")));
        // p sends vq with a context covering a's write, which it deleted.
        assert_eq!(a.join(&send(&p, ks), ks), vec![Change::Remove(k.clone())]);
        assert_eq!(a.read(&k), None);
    }

    /// A stale claim on a key that also holds another member's concurrent
    /// entry: only this store's covered entry gets a new dot, and that
    /// member's later delete of its own entry still removes it.
    #[test]
    fn a_restamp_leaves_other_members_entries_alone() {
        let k = Term::atom("k");
        let ks = std::slice::from_ref(&k);
        let (mut a, mut b, mut r) = (Store::new(1), Store::new(2), Store::new(3));
        a.put(k.clone(), Term::atom("old"));
        b.join(&send(&a, ks), ks);
        a.put(k.clone(), Term::atom("new"));
        r.put(k.clone(), Term::atom("vr"));
        a.join(&send(&r, ks), ks);
        let entries = |s: &Store| s.value[&TermKey(k.clone())].len();
        assert_eq!(entries(&a), 2, "a holds its write and r's concurrent one");
        let read_before = a.read(&k).cloned();
        // b's view is cut: a's context, not its write; b sends "old" back.
        b.join(&send(&a, &[]), &[]);
        assert_eq!(a.join(&send(&b, ks), ks), vec![], "read unchanged");
        assert_eq!(a.read(&k).cloned(), read_before);
        assert_eq!(entries(&a), 2, "r's entry is still there");
        // r deletes its own value: a is left with its write.
        r.delete(&k);
        a.join(&send(&r, ks), ks);
        assert_eq!(a.read(&k), Some(&Term::atom("new")));
        // and b, which refused "new" under its old dot, takes the new one.
        b.join(&send(&a, ks), ks);
        assert_eq!(b.read(&k), Some(&Term::atom("new")));
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
