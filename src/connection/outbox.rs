//! The send side of a connection: senders encode frames straight into a
//! shared buffer and the writer task hands the whole buffer to the socket
//! in one write. Under load many messages leave in one syscall; idle, a
//! message leaves at once. No per-message allocation on the hot path.
//!
//! Backpressure, as the BEAM's busy distribution port: once `busy_limit`
//! bytes wait for the writer, [`Outbox::try_push`] answers [`Busy`] and
//! [`Outbox::push_wait`] waits until the writer has taken the queue.
//! [`Outbox::push`] never waits: system traffic (global, replies, link
//! and monitor signals) and the fire-and-forget `send` use it.

use super::header::{DIST_FRAG_CONT, DIST_FRAG_HEADER, DIST_HEADER, VERSION_MAGIC};
use crate::term::{encode_into, Term};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use tokio::sync::Notify;

/// The BEAM's own fragment size.
pub const FRAGMENT_SIZE: usize = 64 * 1024;

/// The BEAM's default `dist_buf_busy_limit` (`+zdbbl 1024`): 1 MiB.
pub const DEFAULT_BUSY_LIMIT: usize = 1024 * 1024;

pub struct Outbox {
    buf: Mutex<Vec<u8>>,
    /// Wakes the writer.
    pub(super) notify: Notify,
    /// Wakes senders waiting for the queue to drop below `busy_limit`.
    space: Notify,
    closed: AtomicBool,
    next_seq: AtomicU64,
    fragments: bool,
    busy_limit: usize,
}

#[derive(Debug, thiserror::Error)]
#[error("connection closed")]
pub struct Closed;

/// Why [`Outbox::try_push`] did not queue a message.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum Busy {
    #[error("the link is busy: {queued} bytes queued, busy limit {limit}")]
    Busy { queued: usize, limit: usize },
    #[error("connection closed")]
    Closed,
}

impl Outbox {
    pub fn new(fragments: bool, busy_limit: usize) -> Self {
        Outbox {
            buf: Mutex::new(Vec::with_capacity(64 * 1024)),
            notify: Notify::new(),
            space: Notify::new(),
            closed: AtomicBool::new(false),
            next_seq: AtomicU64::new(1),
            fragments,
            busy_limit,
        }
    }

    /// Queues one message (control term plus optional payload) whatever
    /// the queue holds.
    pub fn push(&self, control: &Term, payload: Option<&Term>) -> Result<(), Closed> {
        if self.closed.load(Ordering::Acquire) {
            return Err(Closed);
        }
        {
            let mut buf = self.buf.lock().unwrap_or_else(|e| e.into_inner());
            self.encode(&mut buf, control, payload);
        }
        self.notify.notify_one();
        Ok(())
    }

    /// Queues one message unless `busy_limit` bytes or more are queued.
    pub fn try_push(&self, control: &Term, payload: Option<&Term>) -> Result<(), Busy> {
        if self.closed.load(Ordering::Acquire) {
            return Err(Busy::Closed);
        }
        {
            let mut buf = self.buf.lock().unwrap_or_else(|e| e.into_inner());
            if buf.len() >= self.busy_limit {
                return Err(Busy::Busy { queued: buf.len(), limit: self.busy_limit });
            }
            self.encode(&mut buf, control, payload);
        }
        self.notify.notify_one();
        Ok(())
    }

    /// Queues one message, first waiting while `busy_limit` bytes or more
    /// are queued. Fails only when the link closes.
    pub async fn push_wait(&self, control: &Term, payload: Option<&Term>) -> Result<(), Closed> {
        loop {
            // Registered before the check, so a take() between the check
            // and the wait is not missed.
            let space = self.space.notified();
            tokio::pin!(space);
            space.as_mut().enable();
            match self.try_push(control, payload) {
                Ok(()) => return Ok(()),
                Err(Busy::Closed) => return Err(Closed),
                Err(Busy::Busy { .. }) => space.await,
            }
        }
    }

    /// Bytes queued for the writer right now.
    pub fn queued(&self) -> usize {
        self.buf.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    fn encode(&self, buf: &mut Vec<u8>, control: &Term, payload: Option<&Term>) {
        {
            let start = buf.len();
            buf.extend_from_slice(&[0, 0, 0, 0, VERSION_MAGIC, DIST_HEADER, 0]);
            encode_into(control, buf);
            if let Some(p) = payload {
                encode_into(p, buf);
            }
            let len = buf.len() - start - 4;
            if self.fragments && len > FRAGMENT_SIZE {
                let seq = self.next_seq.fetch_add(1, Ordering::Relaxed);
                fragment_in_place(buf, start, seq);
            } else {
                buf[start..start + 4].copy_from_slice(&(len as u32).to_be_bytes());
            }
        }
    }

    /// Takes everything queued, leaving `spare` (emptied) in its place so
    /// its capacity is reused.
    pub(super) fn take(&self, spare: &mut Vec<u8>) {
        spare.clear();
        let mut buf = self.buf.lock().unwrap_or_else(|e| e.into_inner());
        std::mem::swap(&mut *buf, spare);
        drop(buf);
        // Senders wait only while the queue is at the limit, and the queue
        // only grows until taken: a smaller take has no one to wake.
        if spare.len() >= self.busy_limit {
            self.space.notify_waiters();
        }
    }

    pub fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.notify.notify_one();
        self.space.notify_waiters();
    }

    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }
}

/// Bytes of a fragment's frame before its share of the message: length
/// prefix, `131`, the tag, sequence id and fragment id, and for the first
/// one the empty atom-cache header.
const fn fragment_header_len(first: bool) -> usize {
    4 + 2 + 16 + if first { 1 } else { 0 }
}

/// Rewrites the single frame at `buf[start..]` (length prefix not yet
/// filled, then `131 68 0` and the message) as DIST_FRAG_HEADER and
/// DIST_FRAG_CONT frames of at most FRAGMENT_SIZE message bytes each, in
/// place: the buffer grows by the headers' bytes and the chunks move
/// towards its end, last chunk first, so that none is overwritten before
/// it has moved (each chunk's new place starts after its old one, and
/// its header ends before it). One `memmove` of the message, no second
/// buffer: a 64 MB message used to cost a copy into a fresh vector, with
/// its page faults, and a copy back.
fn fragment_in_place(buf: &mut Vec<u8>, start: usize, seq: u64) {
    let body_start = start + 7;
    let body_len = buf.len() - body_start;
    let total = body_len.div_ceil(FRAGMENT_SIZE);
    let new_len = start + body_len + fragment_header_len(true) + (total - 1) * fragment_header_len(false);
    buf.resize(new_len, 0);
    for i in (0..total).rev() {
        let from = body_start + i * FRAGMENT_SIZE;
        let len = FRAGMENT_SIZE.min(body_len - i * FRAGMENT_SIZE);
        // Headers of chunks 0..=i precede chunk i's new place.
        let to = start + i * FRAGMENT_SIZE + fragment_header_len(true) + i * fragment_header_len(false);
        buf.copy_within(from..from + len, to);
        let first = i == 0;
        let header_len = fragment_header_len(first);
        let fragment_id = (total - i) as u64;
        let h = &mut buf[to - header_len..to];
        h[..4].copy_from_slice(&((header_len - 4 + len) as u32).to_be_bytes());
        h[4] = VERSION_MAGIC;
        h[5] = if first { DIST_FRAG_HEADER } else { DIST_FRAG_CONT };
        h[6..14].copy_from_slice(&seq.to_be_bytes());
        h[14..22].copy_from_slice(&fragment_id.to_be_bytes());
        if first {
            h[22] = 0; // no atom cache references
        }
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
        let o = Outbox::new(true, DEFAULT_BUSY_LIMIT);
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
    fn fragments_after_other_frames_keep_every_byte() {
        // Not at the start of the buffer, a last chunk of odd size, and a
        // body whose bytes differ along its length (a misplaced chunk shows).
        let o = Outbox::new(true, DEFAULT_BUSY_LIMIT);
        o.push(&Term::Int(1), None).unwrap();
        let big = Term::Binary(Bytes::from((0..FRAGMENT_SIZE * 2 + 777).map(|i| (i % 251) as u8).collect::<Vec<u8>>()));
        o.push(&Term::atom("ctl"), Some(&big)).unwrap();
        o.push(&Term::Int(2), None).unwrap();
        let mut out = Vec::new();
        o.take(&mut out);
        let frames = split_frames(&out);
        assert_eq!(frames.len(), 5, "one small, three fragments, one small");
        let mut cache = AtomCache::default();
        let mut r = Reassembler::new(1 << 24, 4);
        let mut whole = vec![];
        let mut done = None;
        for f in frames {
            match parse_frame(f, &mut cache).unwrap() {
                FramePart::Whole { .. } => whole.push(()),
                FramePart::First { seq, fragment_id, atoms, body } => {
                    assert_eq!(fragment_id, 3);
                    done = done.or(r.first(seq, fragment_id, atoms, body).unwrap());
                }
                FramePart::Cont { seq, fragment_id, body } => done = done.or(r.cont(seq, fragment_id, body).unwrap()),
            }
        }
        assert_eq!(whole.len(), 2);
        let mut expect = Vec::new();
        encode_into(&Term::atom("ctl"), &mut expect);
        encode_into(&big, &mut expect);
        assert_eq!(&done.expect("message completed").1[..], &expect[..]);
    }

    #[test]
    fn small_messages_batch_into_one_buffer() {
        let o = Outbox::new(true, DEFAULT_BUSY_LIMIT);
        for i in 0..10 {
            o.push(&Term::Int(i), None).unwrap();
        }
        let mut out = Vec::new();
        o.take(&mut out);
        assert_eq!(split_frames(&out).len(), 10);
        o.close();
        assert!(o.push(&Term::Int(1), None).is_err());
    }

    #[tokio::test]
    async fn a_full_queue_is_busy_until_the_writer_takes_it() {
        let o = std::sync::Arc::new(Outbox::new(true, 100));
        let msg = Term::binary(vec![1u8; 60]);
        o.try_push(&Term::Int(1), Some(&msg)).unwrap();
        o.try_push(&Term::Int(2), Some(&msg)).unwrap();
        assert!(matches!(o.try_push(&Term::Int(3), Some(&msg)), Err(Busy::Busy { limit: 100, .. })));
        // System traffic still goes in.
        o.push(&Term::Int(4), None).unwrap();
        let o2 = o.clone();
        let waiter = tokio::spawn(async move { o2.push_wait(&Term::Int(5), None).await });
        tokio::task::yield_now().await;
        let mut out = Vec::new();
        o.take(&mut out);
        assert_eq!(split_frames(&out).len(), 3);
        waiter.await.unwrap().unwrap();
        o.take(&mut out);
        assert_eq!(split_frames(&out).len(), 1, "the waiting sender queued after the take");
    }

    #[tokio::test]
    async fn waiting_senders_get_an_error_when_the_link_closes() {
        let o = std::sync::Arc::new(Outbox::new(true, 10));
        o.push(&Term::binary(vec![0u8; 20]), None).unwrap();
        let o2 = o.clone();
        let waiter = tokio::spawn(async move { o2.push_wait(&Term::Int(1), None).await });
        tokio::task::yield_now().await;
        o.close();
        assert!(waiter.await.unwrap().is_err());
        assert_eq!(o.try_push(&Term::Int(1), None), Err(Busy::Closed));
    }
}
