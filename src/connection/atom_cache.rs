//! The receive side of the distribution header's atom cache.
//!
//! A BEAM peer that negotiated DIST_HDR_ATOM_CACHE sends each atom's text
//! once per connection; later messages refer to it by cache index. The
//! cache lives as long as the connection, is written only by the reader
//! task, and is consulted per message through the header's reference list.

use crate::term::Atom;

/// ERTS_ATOM_CACHE_SIZE: 8 segments of 256 entries.
pub const CACHE_SIZE: usize = 2048;

pub struct AtomCache {
    entries: Vec<Option<Atom>>,
}

impl Default for AtomCache {
    fn default() -> Self {
        AtomCache { entries: vec![None; CACHE_SIZE] }
    }
}

impl AtomCache {
    pub fn insert(&mut self, index: usize, atom: Atom) {
        self.entries[index] = Some(atom);
    }
    pub fn get(&self, index: usize) -> Option<&Atom> {
        self.entries.get(index).and_then(|a| a.as_ref())
    }
}
