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

/// The send side: which atom the peer holds at each cache index (what
/// this link told it, in frame order), and the references of the message
/// being encoded. Encoding happens under the outbox's lock, so frames
/// reach the peer in the order their headers updated this table, as the
/// peer's reader applies them.
///
/// An atom's index is a hash of its text (as the BEAM picks it; any
/// index is valid, the receiver stores what the header says). A message
/// refers to at most 255 atoms through the cache; atoms beyond that, and
/// atoms longer than 255 bytes (they would need the long-atoms header
/// flag), go as text.
pub struct SendCache {
    held: Vec<Option<Atom>>,
    /// This message's references: the atom, its cache index, and whether
    /// the header must carry its text (a new entry).
    refs: Vec<(Atom, u16, bool)>,
    /// What this message's new entries replaced, to put back if the
    /// message is discarded ([`abort`](Self::abort)).
    replaced: Vec<(u16, Option<Atom>)>,
    /// Native records (RECORD_EXT) for this link: see [`LinkAtoms`].
    pub records: LinkAtoms,
}

impl SendCache {
    pub fn new(records: bool) -> Self {
        SendCache { held: vec![None; CACHE_SIZE], refs: Vec::new(), replaced: Vec::new(), records: LinkAtoms::new(records) }
    }
}

/// The encoder's view of a link that sends atoms as text, and the part of
/// every link's state that says whether the peer decodes native records
/// (it advertised DFLAG_NATIVE_RECORDS). OTP 25 to 28 cannot: a record in
/// a message makes them log "corrupted external term" and **drop the
/// link** (measured on 25.2.3), losing whatever else was in flight. So a
/// message holding one is refused for such a peer, and only that message.
pub struct LinkAtoms {
    takes_records: bool,
    /// This message held a record the peer cannot decode.
    pub refused: bool,
}

impl LinkAtoms {
    pub fn new(takes_records: bool) -> Self {
        LinkAtoms { takes_records, refused: false }
    }
}

impl crate::term::AtomRefs for LinkAtoms {
    #[inline(always)]
    fn reference(&mut self, _: &Atom) -> Option<u8> {
        None
    }
    #[inline]
    fn record(&mut self) -> bool {
        self.refused |= !self.takes_records;
        self.takes_records
    }
}

/// Most references one message's header can carry.
const MAX_REFS: usize = 255;

fn index_of(a: &Atom) -> u16 {
    // FNV-1a over the text.
    let mut h: u32 = 0x811c_9dc5;
    for b in a.as_str().bytes() {
        h = (h ^ u32::from(b)).wrapping_mul(0x0100_0193);
    }
    (h as usize % CACHE_SIZE) as u16
}

impl SendCache {
    /// Starts a message.
    pub fn begin(&mut self) {
        self.refs.clear();
        self.replaced.clear();
        self.records.refused = false;
    }

    /// Forgets the message just encoded: the entries it added go back to
    /// what they held, as if it had never been written.
    pub fn abort(&mut self) {
        for (index, old) in self.replaced.drain(..).rev() {
            self.held[index as usize] = old;
        }
        self.refs.clear();
    }

    /// Appends the atom cache part of the distribution header (from
    /// NumberOfAtomCacheRefs on) for the message just encoded.
    pub fn write_header(&self, out: &mut Vec<u8>) {
        let n = self.refs.len();
        out.push(n as u8);
        if n == 0 {
            return;
        }
        // Four flag bits per reference (new entry, segment index), two to
        // a byte, low half first; the half after the last holds the
        // long-atoms flag (0: one-byte lengths).
        let flags_at = out.len();
        out.resize(flags_at + n / 2 + 1, 0);
        for (i, (_, index, new)) in self.refs.iter().enumerate() {
            let nibble = (if *new { 8 } else { 0 }) | ((index >> 8) as u8 & 7);
            out[flags_at + i / 2] |= if i % 2 == 0 { nibble } else { nibble << 4 };
        }
        for (atom, index, new) in &self.refs {
            out.push(*index as u8);
            if *new {
                let text = atom.as_str().as_bytes();
                out.push(text.len() as u8);
                out.extend_from_slice(text);
            }
        }
    }
}

impl crate::term::AtomRefs for SendCache {
    fn reference(&mut self, a: &Atom) -> Option<u8> {
        if let Some(i) = self.refs.iter().position(|(x, _, _)| x == a) {
            return Some(i as u8);
        }
        if self.refs.len() >= MAX_REFS || a.as_str().len() > 255 {
            return None;
        }
        let index = index_of(a);
        let slot = &mut self.held[index as usize];
        let new = slot.as_ref() != Some(a);
        if new {
            self.replaced.push((index, slot.replace(a.clone())));
        }
        self.refs.push((a.clone(), index, new));
        Some((self.refs.len() - 1) as u8)
    }
    #[inline]
    fn record(&mut self) -> bool {
        self.records.record()
    }
}

#[cfg(test)]
pub(super) fn tests_index_of(a: &Atom) -> u16 {
    index_of(a)
}
