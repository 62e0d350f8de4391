//! Building `Term::Map` with unique keys.
//!
//! `Term::Map` promises unique keys, and the BEAM rejects or misreads maps
//! that break the promise. serde can produce duplicates (two
//! `#[serde(flatten)]` members with the same field, a hand-written
//! `Serialize`, two Rust keys that render the same), so every map goes
//! through here; the last value wins, as with Elixir's `Map.new/1`.
//! Small maps are scanned; larger ones index their atom, binary and integer
//! keys (the overwhelmingly common kinds) so building stays linear.

use crate::term::{Atom, Term};
use bytes::Bytes;
use std::collections::HashMap;

const SCAN_LIMIT: usize = 16;

#[derive(Hash, PartialEq, Eq)]
enum FastKey {
    Atom(Atom),
    Bin(Bytes),
    Int(i64),
}

impl FastKey {
    fn of(term: &Term) -> Option<FastKey> {
        match term {
            Term::Atom(a) => Some(FastKey::Atom(a.clone())),
            Term::Binary(b) => Some(FastKey::Bin(b.clone())),
            Term::Int(i) => Some(FastKey::Int(*i)),
            _ => None,
        }
    }
}

#[derive(Default)]
pub(crate) struct MapBuilder {
    entries: Vec<(Term, Term)>,
    /// Built once the map outgrows `SCAN_LIMIT`.
    index: Option<Index>,
}

#[derive(Default)]
struct Index {
    fast: HashMap<FastKey, usize>,
    /// Positions of keys that are not `FastKey`s; a fast key can never equal
    /// one of them, so the two groups are searched separately.
    slow: Vec<usize>,
}

impl MapBuilder {
    pub(crate) fn with_capacity(n: usize) -> MapBuilder {
        // A length hint comes from the data; don't trust it for allocation.
        MapBuilder { entries: Vec::with_capacity(n.min(4096)), index: None }
    }

    pub(crate) fn insert(&mut self, key: Term, value: Term) {
        if let Some(pos) = self.position(&key) {
            self.entries[pos].1 = value;
            return;
        }
        let pos = self.entries.len();
        if let Some(index) = &mut self.index {
            match FastKey::of(&key) {
                Some(fk) => {
                    index.fast.insert(fk, pos);
                }
                None => index.slow.push(pos),
            }
        }
        self.entries.push((key, value));
        if self.index.is_none() && self.entries.len() > SCAN_LIMIT {
            self.build_index();
        }
    }

    fn position(&self, key: &Term) -> Option<usize> {
        match &self.index {
            None => self.entries.iter().position(|(k, _)| k == key),
            Some(index) => match FastKey::of(key) {
                Some(fk) => index.fast.get(&fk).copied(),
                None => index.slow.iter().copied().find(|&i| self.entries[i].0 == *key),
            },
        }
    }

    fn build_index(&mut self) {
        let mut index = Index::default();
        for (i, (k, _)) in self.entries.iter().enumerate() {
            match FastKey::of(k) {
                Some(fk) => {
                    index.fast.insert(fk, i);
                }
                None => index.slow.push(i),
            }
        }
        self.index = Some(index);
    }

    pub(crate) fn finish(self) -> Term {
        Term::Map(self.entries)
    }
}
