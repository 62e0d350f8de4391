//! Reassembly of fragmented messages (DFLAG_FRAGMENTS). The BEAM splits a
//! large message into 64 KiB pieces numbered downwards to 1; pieces of
//! different messages may interleave, so partial messages are keyed by
//! sequence id.
//!
//! Each message is assembled in one buffer reserved at its first
//! fragment for the size that fragment announces (its length times the
//! number of fragments, within `max_message`); the link reads a large
//! first fragment whole into it ([`Reassembler::first_in_place`]) and
//! each continuation's body from the socket straight into it
//! ([`Reassembler::cont_buffer`]): the kernel's copy is the only one, as
//! on the BEAM, and no second buffer joins pieces (issue 16, large
//! messages). The reservation is address space only until bytes arrive
//! (the allocator maps large blocks lazily) and is made with
//! `try_reserve`, so an announcement the system cannot back is refused,
//! never an abort; with huge pages on (the default), the buffer of a
//! message of 4 MiB or more is advised to use them ([`super::huge_pages`]:
//! the page faults of a fresh buffer were the receiving side's largest
//! cost after the copy), and a buffer of 256 KiB or more comes from, and
//! goes back to, the node's [`super::buffer_cache`] (mapped memory, no
//! faults at all). [`Reassembler::buffered`] counts the bytes received
//! and the bookkeeping, as memory holds them; the link charges it to its
//! memory budget.

use super::buffer_cache::BufferCache;
use super::FrameError;
use crate::term::Atom;
use bytes::Bytes;
use std::collections::HashMap;
use std::sync::Arc;

/// What each fragment costs beyond its bytes: the frame header of a
/// continuation and the bookkeeping. Counting it keeps a flood of empty
/// fragments from being free.
pub const PIECE_OVERHEAD: usize = 64;

struct Partial {
    atoms: Vec<Atom>,
    next_id: u64,
    /// The message so far from `start` on (before it, the first
    /// fragment's frame header when that frame was read into this
    /// buffer), with room reserved for the rest.
    buf: Vec<u8>,
    start: usize,
    /// What this partial message costs (its share of `buffered`).
    cost: usize,
}

pub struct Reassembler {
    partial: HashMap<u64, Partial>,
    buffered: usize,
    max_message: usize,
    max_sequences: usize,
    /// Advise huge pages for large message buffers ([`super::huge_pages`]).
    huge_pages: bool,
    /// Where large message buffers come from and go back to
    /// ([`super::buffer_cache`]; one that keeps nothing unless given).
    cache: Arc<BufferCache>,
}

impl Reassembler {
    pub fn new(max_message: usize, max_sequences: usize) -> Self {
        Reassembler { partial: HashMap::new(), buffered: 0, max_message, max_sequences, huge_pages: false, cache: BufferCache::new(0) }
    }

    /// Takes large message buffers from `cache` and gives them back to it.
    pub fn buffer_cache(mut self, cache: Arc<BufferCache>) -> Self {
        self.cache = cache;
        self
    }

    /// Whether buffers of 4 MiB or more are advised to use transparent
    /// huge pages (the link turns it on unless configured off).
    pub fn huge_pages(mut self, on: bool) -> Self {
        self.huge_pages = on;
        self
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
        self.check_first(seq, body.len())?;
        let mut buf = self.message_buffer(body.len(), fragment_id, body.len())?;
        buf.extend_from_slice(&body);
        Ok(self.start(seq, fragment_id, atoms, buf, 0))
    }

    /// Starts a message whose first fragment was read whole into `frame`
    /// (from [`Reassembler::message_buffer`]), its body from `start` on:
    /// the message is assembled in that buffer, so the first fragment's
    /// body is not copied again (issue 16: that copy was a tenth of a
    /// 64 KB message's receiving cost).
    pub fn first_in_place(&mut self, seq: u64, fragment_id: u64, atoms: Vec<Atom>, frame: Vec<u8>, start: usize) -> Result<Option<(Vec<Atom>, Bytes)>, FrameError> {
        if fragment_id == 1 {
            return Ok(Some((atoms, self.cache.bytes(frame).slice(start..))));
        }
        self.check_first(seq, frame.len() - start)?;
        Ok(self.start(seq, fragment_id, atoms, frame, start))
    }

    /// A buffer for a message whose first fragment is `first_len` bytes
    /// (its frame, when the frame is to be read into it) and announces
    /// `fragment_id` fragments, with room for `at_least` bytes: the BEAM
    /// cuts a message into equal fragments (the last one shorter), so the
    /// first one's length times their number covers it, within
    /// `max_message` and the first fragment (a frame read in place keeps
    /// its header before the body). Refused by the system: one of
    /// `at_least`, grown as fragments come.
    pub fn message_buffer(&self, first_len: usize, fragment_id: u64, at_least: usize) -> Result<Vec<u8>, FrameError> {
        let cap = (self.max_message as u64).saturating_add(first_len as u64);
        let announced = (first_len as u64).saturating_mul(fragment_id).min(cap) as usize;
        match self.cache.receive_buffer(announced.max(at_least), self.huge_pages) {
            Some(b) => Ok(b),
            None => self.cache.receive_buffer(at_least, self.huge_pages).ok_or_else(|| FrameError::Limit(format!("cannot allocate {at_least} bytes"))),
        }
    }

    /// Whether sequence `seq` may start now with a body of `body_len`
    /// bytes: not started already, not one sequence too many, not over
    /// `max_message`.
    pub fn check_first(&self, seq: u64, body_len: usize) -> Result<(), FrameError> {
        if self.partial.contains_key(&seq) {
            return Err(FrameError::Malformed(format!("fragment sequence {seq} started twice")));
        }
        if self.partial.len() >= self.max_sequences {
            return Err(FrameError::Limit(format!("more than {} fragmented messages in flight", self.max_sequences)));
        }
        if body_len > self.max_message {
            return Err(FrameError::Limit(format!("fragmented message larger than {} bytes", self.max_message)));
        }
        Ok(())
    }

    fn start(&mut self, seq: u64, fragment_id: u64, atoms: Vec<Atom>, buf: Vec<u8>, start: usize) -> Option<(Vec<Atom>, Bytes)> {
        let cost = buf.len() + PIECE_OVERHEAD + atoms.len() * std::mem::size_of::<Atom>() + std::mem::size_of::<Partial>();
        self.buffered += cost;
        self.partial.insert(seq, Partial { atoms, next_id: fragment_id - 1, buf, start, cost });
        None
    }

    /// The buffer the body of continuation `fragment_id` of `seq`, `len`
    /// bytes, is to be appended to (room for it reserved, and charged to
    /// [`Reassembler::buffered`]); then call
    /// [`Reassembler::cont_appended`]. Errors for an unknown sequence, a
    /// fragment out of order or a message over `max_message`.
    pub fn cont_buffer(&mut self, seq: u64, fragment_id: u64, len: usize) -> Result<&mut Vec<u8>, FrameError> {
        let Some(p) = self.partial.get_mut(&seq) else {
            return Err(FrameError::Malformed(format!("continuation of unknown fragment sequence {seq}")));
        };
        if fragment_id != p.next_id {
            return Err(FrameError::Malformed(format!("fragment {fragment_id} of sequence {seq} out of order (expected {})", p.next_id)));
        }
        if p.buf.len() - p.start + len > self.max_message {
            return Err(FrameError::Limit(format!("fragmented message larger than {} bytes", self.max_message)));
        }
        if p.buf.capacity() - p.buf.len() < len {
            // The first fragment announced too little (or its reservation
            // was refused): grow, amortised.
            tracing::debug!(seq, announced = p.buf.capacity(), "fragmented message longer than its first fragment announced");
            p.buf.try_reserve(len).map_err(|_| FrameError::Limit(format!("cannot allocate {} more bytes", len)))?;
            if self.huge_pages {
                super::huge_pages::advise(&mut p.buf);
            }
        }
        p.cost += len + PIECE_OVERHEAD;
        self.buffered += len + PIECE_OVERHEAD;
        Ok(&mut p.buf)
    }

    /// After the body of `fragment_id` was appended to
    /// [`Reassembler::cont_buffer`]'s buffer: the message when it was the
    /// last fragment.
    pub fn cont_appended(&mut self, seq: u64, fragment_id: u64) -> Option<(Vec<Atom>, Bytes)> {
        let p = self.partial.get_mut(&seq)?;
        if fragment_id > 1 {
            p.next_id -= 1;
            return None;
        }
        let p = self.partial.remove(&seq).expect("present above");
        self.buffered -= p.cost;
        // Bytes takes the Vec's allocation over: no copy.
        Some((p.atoms, self.cache.bytes(p.buf).slice(p.start..)))
    }

    /// Adds a continuation already read; returns the message when it is
    /// complete.
    pub fn cont(&mut self, seq: u64, fragment_id: u64, body: Bytes) -> Result<Option<(Vec<Atom>, Bytes)>, FrameError> {
        self.cont_buffer(seq, fragment_id, body.len())?.extend_from_slice(&body);
        Ok(self.cont_appended(seq, fragment_id))
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
        assert_eq!(&m[..1000], &[1u8; 1000][..]);
        assert_eq!(r.buffered(), 0);
    }

    #[test]
    fn a_first_fragment_read_in_place_is_not_copied() {
        // The frame (a 3-byte stand-in header, then the body) read into
        // the buffer message_buffer gave: the message is assembled behind
        // the header in that same buffer and handed over from there.
        let mut r = Reassembler::new(1 << 20, 16);
        let mut frame = r.message_buffer(1003, 3, 1003).unwrap();
        assert!(frame.capacity() >= 3009, "room for the three fragments: {}", frame.capacity());
        frame.extend_from_slice(b"hdr");
        frame.extend_from_slice(&[1u8; 1000]);
        let body_at = frame[3..].as_ptr();
        assert!(r.first_in_place(5, 3, vec![Atom::new("a")], frame, 3).unwrap().is_none());
        assert!(r.buffered() >= 1003 + PIECE_OVERHEAD);
        r.cont(5, 2, Bytes::from(vec![2u8; 1000])).unwrap();
        let (atoms, m) = r.cont(5, 1, Bytes::from(vec![3u8; 7])).unwrap().unwrap();
        assert_eq!(atoms, vec![Atom::new("a")]);
        assert_eq!(m.len(), 2007);
        assert_eq!(m.as_ptr(), body_at, "assembled where the first fragment was read");
        assert_eq!((&m[..1000], &m[1000..2000], &m[2000..]), (&[1u8; 1000][..], &[2u8; 1000][..], &[3u8; 7][..]));
        assert_eq!(r.buffered(), 0);
        // A single fragment is the message at once, past its header.
        let mut frame = r.message_buffer(5, 1, 5).unwrap();
        frame.extend_from_slice(b"hdrxy");
        let (_, m) = r.first_in_place(6, 1, vec![], frame, 3).unwrap().unwrap();
        assert_eq!(&m[..], b"xy");
        // max_message counts the body, not the header before it.
        let mut r = Reassembler::new(10, 16);
        let mut frame = r.message_buffer(8, 2, 8).unwrap();
        frame.extend_from_slice(b"hdrabcde");
        r.first_in_place(1, 2, vec![], frame, 3).unwrap();
        assert!(r.cont(1, 1, Bytes::from_static(b"fghij")).unwrap().is_some());
        let mut frame = r.message_buffer(8, 2, 8).unwrap();
        frame.extend_from_slice(b"hdrabcde");
        r.first_in_place(2, 2, vec![], frame, 3).unwrap();
        assert!(r.cont(2, 1, Bytes::from_static(b"fghijk")).is_err(), "11 bytes are over 10");
        // Refused like first(): a sequence started twice, one sequence too
        // many, a first body over max_message; nothing stays counted.
        let mut r = Reassembler::new(10, 1);
        let frame = |body: &[u8]| {
            let mut f = Vec::with_capacity(body.len() + 3);
            f.extend_from_slice(b"hdr");
            f.extend_from_slice(body);
            f
        };
        r.first_in_place(1, 2, vec![], frame(b"ab"), 3).unwrap();
        let held = r.buffered();
        assert!(r.check_first(1, 0).is_err() && r.first_in_place(1, 2, vec![], frame(b"ab"), 3).is_err(), "started twice");
        assert!(r.first_in_place(2, 2, vec![], frame(b"ab"), 3).is_err(), "a second sequence over max_sequences 1");
        let mut r2 = Reassembler::new(4, 4);
        assert!(r2.first_in_place(3, 2, vec![], frame(b"abcde"), 3).is_err(), "a first body of 5 over max_message 4");
        assert_eq!((r.buffered(), r2.buffered()), (held, 0));
        // The reservation a frame read in place gets: its announced size
        // within max_message plus the frame, so the header fits beside a
        // body of max_message.
        let r = Reassembler::new(1000, 4);
        assert!(r.message_buffer(100, 1 << 40, 100).unwrap().capacity() >= 1100);
    }

    #[test]
    fn the_announced_size_is_reserved_capped_and_a_short_one_grows() {
        // Room for the three fragments the first announces: appending the
        // rest does not move the buffer.
        let mut r = Reassembler::new(1 << 20, 16);
        r.first(1, 3, vec![], Bytes::from(vec![1u8; 1000])).unwrap();
        let at = r.cont_buffer(1, 2, 1000).unwrap();
        assert!(at.capacity() >= 3000, "{}", at.capacity());
        let start = at.as_ptr();
        at.extend_from_slice(&[2u8; 1000]);
        assert!(r.cont_appended(1, 2).is_none());
        r.cont_buffer(1, 1, 900).unwrap().extend_from_slice(&[3u8; 900]);
        let (_, m) = r.cont_appended(1, 1).unwrap();
        assert_eq!((m.len(), m.as_ptr()), (2900, start), "assembled in place, handed over without a copy");
        // A first fragment claiming 2^40 fragments reserves max_message
        // at most, and only the bytes received count.
        let mut r = Reassembler::new(1 << 16, 16);
        r.first(7, 1 << 40, vec![], Bytes::from(vec![0u8; 100])).unwrap();
        assert!(r.buffered() < 1024, "{}", r.buffered());
        // A first fragment smaller than the rest: the buffer grows.
        let mut r = Reassembler::new(1 << 20, 16);
        r.first(1, 2, vec![], Bytes::from(vec![1u8; 10])).unwrap();
        let (_, m) = r.cont(1, 1, Bytes::from(vec![2u8; 5000])).unwrap().unwrap();
        assert_eq!(m.len(), 5010);
        assert_eq!(r.buffered(), 0);
    }
}
