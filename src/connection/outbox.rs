//! The send side of a connection: senders encode frames straight into a
//! shared buffer and the writer task hands the whole buffer to the socket
//! in one write. Under load many messages leave in one syscall; idle, a
//! message leaves at once. No per-message allocation on the hot path.

use super::header::{DIST_FRAG_CONT, DIST_FRAG_HEADER, DIST_HEADER, VERSION_MAGIC};
use crate::term::{encode_into, Term};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use tokio::sync::Notify;

/// The BEAM's own fragment size.
pub const FRAGMENT_SIZE: usize = 64 * 1024;

pub struct Outbox {
    buf: Mutex<Vec<u8>>,
    pub(super) notify: Notify,
    closed: AtomicBool,
    next_seq: AtomicU64,
    fragments: bool,
}

#[derive(Debug, thiserror::Error)]
#[error("connection closed")]
pub struct Closed;

impl Outbox {
    pub fn new(fragments: bool) -> Self {
        Outbox {
            buf: Mutex::new(Vec::with_capacity(64 * 1024)),
            notify: Notify::new(),
            closed: AtomicBool::new(false),
            next_seq: AtomicU64::new(1),
            fragments,
        }
    }

    /// Queues one message: control term plus optional payload.
    pub fn push(&self, control: &Term, payload: Option<&Term>) -> Result<(), Closed> {
        if self.closed.load(Ordering::Acquire) {
            return Err(Closed);
        }
        {
            let mut buf = self.buf.lock().unwrap_or_else(|e| e.into_inner());
            let start = buf.len();
            buf.extend_from_slice(&[0, 0, 0, 0, VERSION_MAGIC, DIST_HEADER, 0]);
            encode_into(control, &mut buf);
            if let Some(p) = payload {
                encode_into(p, &mut buf);
            }
            let len = buf.len() - start - 4;
            if self.fragments && len > FRAGMENT_SIZE {
                let seq = self.next_seq.fetch_add(1, Ordering::Relaxed);
                fragment_in_place(&mut buf, start, seq);
            } else {
                buf[start..start + 4].copy_from_slice(&(len as u32).to_be_bytes());
            }
        }
        self.notify.notify_one();
        Ok(())
    }

    /// Takes everything queued, leaving `spare` (emptied) in its place so
    /// its capacity is reused.
    pub(super) fn take(&self, spare: &mut Vec<u8>) {
        spare.clear();
        let mut buf = self.buf.lock().unwrap_or_else(|e| e.into_inner());
        std::mem::swap(&mut *buf, spare);
    }

    pub fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.notify.notify_one();
    }

    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }
}

/// Rewrites the single frame at `buf[start..]` (length prefix not yet
/// filled, then `131 68 0` and the message) as DIST_FRAG_HEADER and
/// DIST_FRAG_CONT frames of at most FRAGMENT_SIZE message bytes each.
fn fragment_in_place(buf: &mut Vec<u8>, start: usize, seq: u64) {
    let body: Vec<u8> = buf[start + 7..].to_vec();
    buf.truncate(start);
    let chunks: Vec<&[u8]> = body.chunks(FRAGMENT_SIZE).collect();
    let total = chunks.len() as u64;
    buf.reserve(body.len() + chunks.len() * 24);
    for (i, chunk) in chunks.iter().enumerate() {
        let fragment_id = total - i as u64;
        let header_len = if i == 0 { 2 + 16 + 1 } else { 2 + 16 };
        let len = (header_len + chunk.len()) as u32;
        buf.extend_from_slice(&len.to_be_bytes());
        buf.push(VERSION_MAGIC);
        buf.push(if i == 0 { DIST_FRAG_HEADER } else { DIST_FRAG_CONT });
        buf.extend_from_slice(&seq.to_be_bytes());
        buf.extend_from_slice(&fragment_id.to_be_bytes());
        if i == 0 {
            buf.push(0); // no atom cache references
        }
        buf.extend_from_slice(chunk);
    }
}

#[cfg(test)]
mod tests {
    use super::super::atom_cache::AtomCache;
    use super::super::fragments::Reassembler;
    use super::super::header::{parse_frame, FramePart};
    use super::*;
    use bytes::Bytes;

    fn split_frames(mut b: &[u8]) -> Vec<Bytes> {
        let mut out = vec![];
        while !b.is_empty() {
            let len = u32::from_be_bytes(b[..4].try_into().unwrap()) as usize;
            out.push(Bytes::copy_from_slice(&b[4..4 + len]));
            b = &b[4 + len..];
        }
        out
    }

    #[test]
    fn large_message_fragments_and_reassembles() {
        let o = Outbox::new(true);
        let big = Term::Binary(Bytes::from(vec![7u8; FRAGMENT_SIZE * 3 + 5]));
        o.push(&Term::atom("ctl"), Some(&big)).unwrap();
        let mut out = Vec::new();
        o.take(&mut out);
        let frames = split_frames(&out);
        assert_eq!(frames.len(), 4);
        let mut cache = AtomCache::default();
        let mut r = Reassembler::new(1 << 24, 4);
        let mut done = None;
        for f in frames {
            let got = match parse_frame(f, &mut cache).unwrap() {
                FramePart::First { seq, fragment_id, atoms, body } => r.first(seq, fragment_id, atoms, body).unwrap(),
                FramePart::Cont { seq, fragment_id, body } => r.cont(seq, fragment_id, body).unwrap(),
                FramePart::Whole { .. } => panic!("expected fragments"),
            };
            if got.is_some() {
                done = got;
            }
        }
        let (_, body) = done.expect("message completed");
        let mut expect = Vec::new();
        encode_into(&Term::atom("ctl"), &mut expect);
        encode_into(&big, &mut expect);
        assert_eq!(&body[..], &expect[..]);
    }

    #[test]
    fn small_messages_batch_into_one_buffer() {
        let o = Outbox::new(true);
        for i in 0..10 {
            o.push(&Term::Int(i), None).unwrap();
        }
        let mut out = Vec::new();
        o.take(&mut out);
        assert_eq!(split_frames(&out).len(), 10);
        o.close();
        assert!(o.push(&Term::Int(1), None).is_err());
    }
}
