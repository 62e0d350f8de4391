//! Reassembly of fragmented messages (DFLAG_FRAGMENTS). The BEAM splits a
//! large message into 64 KiB pieces numbered downwards to 1; pieces of
//! different messages may interleave, so partial messages are keyed by
//! sequence id.
//!
//! Pieces are kept as received (no growing buffer that would hold up to
//! twice its contents) and joined into one buffer of the exact size when
//! the last one arrives. [`Reassembler::buffered`] is what the pieces
//! cost, bookkeeping included; the link charges it to its memory budget.

use super::FrameError;
use crate::term::Atom;
use bytes::{Bytes, BytesMut};
use std::collections::HashMap;

/// What holding one piece costs beyond its bytes: the frame header of a
/// continuation, the `Bytes` handle and its slot in the list. Counting it
/// keeps a flood of empty fragments from being free.
pub const PIECE_OVERHEAD: usize = 64;

struct Partial {
    atoms: Vec<Atom>,
    next_id: u64,
    pieces: Vec<Bytes>,
    /// Message bytes in `pieces`.
    len: usize,
    /// What this partial message costs (its share of `buffered`).
    cost: usize,
}

pub struct Reassembler {
    partial: HashMap<u64, Partial>,
    buffered: usize,
    max_message: usize,
    max_sequences: usize,
}

impl Reassembler {
    pub fn new(max_message: usize, max_sequences: usize) -> Self {
        Reassembler { partial: HashMap::new(), buffered: 0, max_message, max_sequences }
    }

    /// Bytes held in unfinished messages, bookkeeping included.
    pub fn buffered(&self) -> usize {
        self.buffered
    }

    /// Starts a message; returns it at once if it has a single fragment.
    pub fn first(&mut self, seq: u64, fragment_id: u64, atoms: Vec<Atom>, body: Bytes) -> Result<Option<(Vec<Atom>, Bytes)>, FrameError> {
        if fragment_id == 1 {
            return Ok(Some((atoms, body)));
        }
        if self.partial.contains_key(&seq) {
            return Err(FrameError::Malformed(format!("fragment sequence {seq} started twice")));
        }
        if self.partial.len() >= self.max_sequences {
            return Err(FrameError::Limit(format!("more than {} fragmented messages in flight", self.max_sequences)));
        }
        if body.len() > self.max_message {
            return Err(FrameError::Limit(format!("fragmented message larger than {} bytes", self.max_message)));
        }
        // A copy, so the frame (whose header may carry up to 64 KiB of
        // atom-cache text) is not kept alive by a slice of it.
        let body = Bytes::copy_from_slice(&body);
        let cost = body.len() + PIECE_OVERHEAD + atoms.len() * std::mem::size_of::<Atom>() + std::mem::size_of::<Partial>();
        self.buffered += cost;
        self.partial.insert(seq, Partial { atoms, next_id: fragment_id - 1, len: body.len(), pieces: vec![body], cost });
        Ok(None)
    }

    /// Adds a continuation; returns the message when it is complete.
    pub fn cont(&mut self, seq: u64, fragment_id: u64, body: Bytes) -> Result<Option<(Vec<Atom>, Bytes)>, FrameError> {
        let Some(p) = self.partial.get_mut(&seq) else {
            return Err(FrameError::Malformed(format!("continuation of unknown fragment sequence {seq}")));
        };
        if fragment_id != p.next_id {
            return Err(FrameError::Malformed(format!("fragment {fragment_id} of sequence {seq} out of order (expected {})", p.next_id)));
        }
        let len = body.len();
        if p.len + len > self.max_message {
            return Err(FrameError::Limit(format!("fragmented message larger than {} bytes", self.max_message)));
        }
        p.len += len;
        p.cost += len + PIECE_OVERHEAD;
        self.buffered += len + PIECE_OVERHEAD;
        p.pieces.push(body);
        if fragment_id > 1 {
            p.next_id -= 1;
            return Ok(None);
        }
        let p = self.partial.remove(&seq).expect("present above");
        self.buffered -= p.cost;
        // Each piece is freed as soon as it is copied: the peak is the
        // message plus one piece, not twice the message.
        let mut whole = BytesMut::with_capacity(p.len);
        for piece in p.pieces {
            whole.extend_from_slice(&piece);
        }
        Ok(Some((p.atoms, whole.freeze())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interleaved_sequences_reassemble() {
        let mut r = Reassembler::new(1 << 20, 16);
        assert!(r.first(1, 3, vec![], Bytes::from_static(b"ab")).unwrap().is_none());
        assert!(r.first(2, 2, vec![], Bytes::from_static(b"xy")).unwrap().is_none());
        assert!(r.cont(1, 2, Bytes::from_static(b"cd")).unwrap().is_none());
        let (_, m2) = r.cont(2, 1, Bytes::from_static(b"z")).unwrap().unwrap();
        assert_eq!(&m2[..], b"xyz");
        let (_, m1) = r.cont(1, 1, Bytes::from_static(b"e")).unwrap().unwrap();
        assert_eq!(&m1[..], b"abcde");
    }

    #[test]
    fn out_of_order_and_unknown_and_oversize_fail() {
        let mut r = Reassembler::new(4, 16);
        assert!(r.cont(9, 1, Bytes::new()).is_err());
        r.first(1, 3, vec![], Bytes::from_static(b"ab")).unwrap();
        assert!(r.cont(1, 1, Bytes::from_static(b"c")).is_err());
        let mut r = Reassembler::new(4, 16);
        r.first(1, 3, vec![], Bytes::from_static(b"ab")).unwrap();
        assert!(r.cont(1, 2, Bytes::from_static(b"cde")).is_err());
    }

    #[test]
    fn buffered_counts_every_piece_and_returns_to_zero() {
        let mut r = Reassembler::new(1 << 20, 16);
        r.first(1, 3, vec![], Bytes::from(vec![1u8; 1000])).unwrap();
        let after_first = r.buffered();
        assert!(after_first >= 1000 + PIECE_OVERHEAD, "{after_first}");
        // Empty continuations are not free.
        r.cont(1, 2, Bytes::new()).unwrap();
        assert_eq!(r.buffered(), after_first + PIECE_OVERHEAD);
        let (_, m) = r.cont(1, 1, Bytes::from(vec![2u8; 10])).unwrap().unwrap();
        assert_eq!(m.len(), 1010);
        assert_eq!(r.buffered(), 0);
    }
}
