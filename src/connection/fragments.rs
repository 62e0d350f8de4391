//! Reassembly of fragmented messages (DFLAG_FRAGMENTS). The BEAM splits a
//! large message into 64 KiB pieces numbered downwards to 1; pieces of
//! different messages may interleave, so partial messages are keyed by
//! sequence id.

use super::FrameError;
use crate::term::Atom;
use bytes::{Bytes, BytesMut};
use std::collections::HashMap;

struct Partial {
    atoms: Vec<Atom>,
    next_id: u64,
    buf: BytesMut,
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
        self.account(body.len())?;
        let mut buf = BytesMut::with_capacity(body.len().saturating_mul(2).min(self.max_message));
        buf.extend_from_slice(&body);
        self.partial.insert(seq, Partial { atoms, next_id: fragment_id - 1, buf });
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
        if p.buf.len() + len > self.max_message {
            return Err(FrameError::Limit(format!("fragmented message larger than {} bytes", self.max_message)));
        }
        self.account(len)?;
        let p = self.partial.get_mut(&seq).unwrap();
        p.buf.extend_from_slice(&body);
        if fragment_id == 1 {
            let p = self.partial.remove(&seq).unwrap();
            self.buffered -= p.buf.len();
            return Ok(Some((p.atoms, p.buf.freeze())));
        }
        p.next_id -= 1;
        Ok(None)
    }

    fn account(&mut self, n: usize) -> Result<(), FrameError> {
        self.buffered += n;
        if self.buffered > self.max_message.saturating_mul(2) {
            return Err(FrameError::Limit("too many bytes buffered in partial fragmented messages".into()));
        }
        Ok(())
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
}
