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

use super::atom_cache::{LinkAtoms, SendCache};
use super::header::{DIST_FRAG_CONT, DIST_FRAG_HEADER, DIST_HEADER, VERSION_MAGIC};
use crate::term::{encode_with_atom_refs, AtomRefs, Term};
use bytes::Bytes;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use tokio::sync::Notify;

/// The BEAM's own fragment size.
pub const FRAGMENT_SIZE: usize = 64 * 1024;

/// The BEAM's default `dist_buf_busy_limit` (`+zdbbl 1024`): 1 MiB.
pub const DEFAULT_BUSY_LIMIT: usize = 1024 * 1024;

pub struct Outbox {
    buf: Mutex<Queue>,
    /// Wakes the writer.
    pub(super) notify: Notify,
    /// Wakes senders waiting for the queue to drop below `busy_limit`.
    space: Notify,
    closed: AtomicBool,
    next_seq: AtomicU64,
    fragments: bool,
    busy_limit: usize,
}

/// What the lock guards: the bytes for the writer and, when the peer
/// takes atom cache references (DIST_HDR_ATOM_CACHE), what its cache
/// holds, which must change in the order frames are queued.
struct Queue {
    bytes: Vec<u8>,
    /// How `bytes` goes out once a fragmented message is in it (else
    /// empty: `bytes` as it is).
    frames: Frames,
    cache: Option<SendCache>,
    /// Without the atom cache: atoms as text, and whether the peer takes
    /// native records.
    text: LinkAtoms,
    /// Scratch for one message's atom cache header.
    header: Vec<u8>,
    /// Scratch: this message's large binaries, which go out from their
    /// own buffers (where in `bytes` each goes, and the bytes).
    large: Vec<(usize, Bytes)>,
}

/// Encodes the message's terms into `buf`, its large binaries into
/// `large`; returns their bytes (the message's length beyond `buf`).
fn encode_terms(buf: &mut Vec<u8>, control: &Term, payload: Option<&Term>, refs: &mut impl AtomRefs, large: &mut Vec<(usize, Bytes)>) -> usize {
    let mut refs = TakeLarge { refs, large };
    encode_with_atom_refs(control, buf, &mut refs);
    if let Some(p) = payload {
        encode_with_atom_refs(p, buf, &mut refs);
    }
    large.iter().map(|(_, b)| b.len()).sum()
}

/// The link's atom references, and large binaries left where they are:
/// the writer sends them from the message's own buffers (no copy into the
/// queue; a 64 MB binary was copied once more here than the BEAM does).
struct TakeLarge<'a, R> {
    refs: &'a mut R,
    large: &'a mut Vec<(usize, Bytes)>,
}

impl<R: AtomRefs> AtomRefs for TakeLarge<'_, R> {
    #[inline(always)]
    fn reference(&mut self, a: &crate::term::Atom) -> Option<u8> {
        self.refs.reference(a)
    }
    #[inline(always)]
    fn record(&mut self) -> bool {
        self.refs.record()
    }
    fn large_binary(&mut self, b: &Bytes, at: usize) -> bool {
        self.large.push((at, b.clone()));
        true
    }
}

/// Why [`Outbox::push`] or [`Outbox::push_wait`] did not queue a message.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum Closed {
    #[error("connection closed")]
    Closed,
    #[error(transparent)]
    Unencodable(#[from] Unencodable),
}

/// A message the peer could not decode, refused before it was queued
/// (the link and everything else on it are unaffected).
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("the message holds a native record and the peer does not take them (it did not advertise DFLAG_NATIVE_RECORDS: OTP 28 or older, which drop the whole link on one)")]
pub struct Unencodable;

/// Why [`Outbox::try_push`] did not queue a message.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum Busy {
    #[error("the link is busy: {queued} bytes queued, busy limit {limit}")]
    Busy { queued: usize, limit: usize },
    #[error("connection closed")]
    Closed,
    #[error(transparent)]
    Unencodable(#[from] Unencodable),
}

impl Queue {
    /// Bytes queued, large binaries included.
    fn len(&self) -> usize {
        self.bytes.len() + self.frames.large_bytes
    }
}

impl Outbox {
    /// `atom_cache`: the peer negotiated DIST_HDR_ATOM_CACHE, so atoms
    /// go as references to its cache (text once per link and cache slot).
    /// `records`: the peer decodes native records (RECORD_EXT).
    pub fn new(fragments: bool, busy_limit: usize, atom_cache: bool, records: bool) -> Self {
        Outbox {
            buf: Mutex::new(Queue {
                bytes: Vec::with_capacity(64 * 1024),
                frames: Frames::default(),
                cache: atom_cache.then(|| SendCache::new(records)),
                text: LinkAtoms::new(records),
                header: Vec::new(),
                large: Vec::new(),
            }),
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
            return Err(Closed::Closed);
        }
        {
            let mut q = self.buf.lock().unwrap_or_else(|e| e.into_inner());
            self.encode(&mut q, control, payload)?;
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
            let mut q = self.buf.lock().unwrap_or_else(|e| e.into_inner());
            if q.len() >= self.busy_limit {
                return Err(Busy::Busy { queued: q.len(), limit: self.busy_limit });
            }
            self.encode(&mut q, control, payload)?;
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
                Err(Busy::Closed) => return Err(Closed::Closed),
                Err(Busy::Unencodable(e)) => return Err(e.into()),
                Err(Busy::Busy { .. }) => space.await,
            }
        }
    }

    /// Bytes queued for the writer right now.
    pub fn queued(&self) -> usize {
        self.buf.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    fn encode(&self, q: &mut Queue, control: &Term, payload: Option<&Term>) -> Result<(), Unencodable> {
        let Queue { bytes: buf, frames, cache, text, header, large } = q;
        let start = buf.len();
        large.clear();
        buf.extend_from_slice(&[0, 0, 0, 0, VERSION_MAGIC, DIST_HEADER]);
        header.clear();
        // Whether the message goes as fragments, decided once on its size
        // with its atom cache header: the header is written in place only
        // for a whole frame (fragmenting writes it into the first
        // fragment), so the two decisions must agree. They once did not:
        // a message whose body fitted a frame but not with its header went
        // out as a whole frame with no header, which the BEAM rejects as a
        // corrupted distribution header and drops the link.
        let (fragment, large_len) = match cache {
            None => {
                buf.push(0); // no atom cache references
                text.refused = false;
                let large_len = encode_terms(buf, control, payload, text, large);
                if text.refused {
                    buf.truncate(start);
                    return Err(Unencodable);
                }
                (self.fragments && buf.len() - start - 4 + large_len > FRAGMENT_SIZE, large_len)
            }
            Some(c) => {
                // Which atoms the header lists is known only once the
                // terms are written: they go first, then move up to make
                // room for the header (a memmove of the message, or part
                // of the one fragmenting does anyway).
                c.begin();
                let body_start = buf.len();
                let large_len = encode_terms(buf, control, payload, c, large);
                if c.records.refused {
                    c.abort();
                    buf.truncate(start);
                    return Err(Unencodable);
                }
                c.write_header(header);
                let fragment = self.fragments && 2 + header.len() + buf.len() - body_start + large_len > FRAGMENT_SIZE;
                if !fragment {
                    let (h, end) = (header.len(), buf.len());
                    buf.resize(end + h, 0);
                    buf.copy_within(body_start..end, body_start + h);
                    buf[body_start..body_start + h].copy_from_slice(header);
                    for (at, _) in large.iter_mut() {
                        *at += h;
                    }
                }
                (fragment, large_len)
            }
        };
        let len = buf.len() - start - 4 + large_len;
        if fragment {
            let seq = self.next_seq.fetch_add(1, Ordering::Relaxed);
            // The message bytes start after the atom cache header, which
            // without the cache is the `0` already in place.
            let body_start = if header.is_empty() {
                header.push(0);
                start + 7
            } else {
                start + 6
            };
            frames.fragment(buf, start, body_start, seq, header, large);
        } else {
            buf[start..start + 4].copy_from_slice(&(len as u32).to_be_bytes());
            if !large.is_empty() {
                frames.whole(buf, start, large);
            }
        }
        Ok(())
    }

    /// Takes everything queued, leaving `spare` (emptied) in its place so
    /// its capacity is reused.
    pub(super) fn take(&self, spare: &mut Taken) {
        spare.bytes.clear();
        spare.frames.clear();
        let mut q = self.buf.lock().unwrap_or_else(|e| e.into_inner());
        std::mem::swap(&mut q.bytes, &mut spare.bytes);
        std::mem::swap(&mut q.frames, &mut spare.frames);
        drop(q);
        // Senders wait only while the queue is at the limit, and the queue
        // only grows until taken: a smaller take has no one to wake.
        if spare.bytes.len() + spare.frames.large_bytes >= self.busy_limit {
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

/// What the writer got from [`Outbox::take`]: the queued bytes and, when
/// a fragmented message is among them, how they go out.
#[derive(Default)]
pub struct Taken {
    pub bytes: Vec<u8>,
    frames: Frames,
}

impl Taken {
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// Bytes taken, large binaries included.
    pub fn len(&self) -> usize {
        self.bytes.len() + self.frames.large_bytes
    }

    /// Drops the references to large binaries once they are written (the
    /// next take would, but a link that goes quiet would hold them).
    pub fn release_large(&mut self) {
        self.frames.clear();
    }

    /// No fragmented message among the bytes: they go out as they are.
    pub fn is_plain(&self) -> bool {
        self.frames.pieces.is_empty()
    }

    /// The pieces to write, in order: all of `bytes` as one piece when no
    /// message was fragmented.
    pub fn pieces(&self) -> Vec<&[u8]> {
        if self.frames.pieces.is_empty() {
            return vec![&self.bytes];
        }
        let mut v: Vec<&[u8]> = self.frames.pieces.iter().map(|p| p.of(&self.bytes, &self.frames)).collect();
        if self.frames.covered < self.bytes.len() {
            v.push(&self.bytes[self.frames.covered..]);
        }
        v
    }

    /// Everything in one buffer, for writers that take no vectored writes
    /// (TLS) and for tests.
    pub fn flatten_into<'a>(&'a self, scratch: &'a mut Vec<u8>) -> &'a [u8] {
        if self.frames.pieces.is_empty() {
            return &self.bytes;
        }
        scratch.clear();
        for p in self.pieces() {
            scratch.extend_from_slice(p);
        }
        scratch
    }
}

/// A fragmented message is not rewritten in the queue: its chunks stay
/// where they were encoded, and the fragment headers go in between at
/// write time (vectored), so sending it costs no copy beyond encoding
/// (issue 16: a 64 MB message used to be moved up in place to make room
/// for its headers, a `memmove` of the whole message). Large binaries are
/// not even copied into the queue: the pieces name them where they were.
#[derive(Default)]
struct Frames {
    /// Runs of the queue's bytes, headers and large binaries, in wire
    /// order, up to `covered`; what follows `covered` goes as it is.
    pieces: Vec<Piece>,
    headers: Vec<u8>,
    covered: usize,
    /// The large binaries the pieces send from.
    large: Vec<Bytes>,
    large_bytes: usize,
}

enum Piece {
    Queued(std::ops::Range<usize>),
    Header(std::ops::Range<usize>),
    Large(usize, std::ops::Range<usize>),
}

impl Piece {
    fn of<'a>(&self, bytes: &'a [u8], frames: &'a Frames) -> &'a [u8] {
        match self {
            Piece::Queued(r) => &bytes[r.clone()],
            Piece::Header(r) => &frames.headers[r.clone()],
            Piece::Large(i, r) => &frames.large[*i][r.clone()],
        }
    }
}

impl Piece {
    fn len(&self) -> usize {
        match self {
            Piece::Queued(r) | Piece::Header(r) | Piece::Large(_, r) => r.len(),
        }
    }

    /// The first `n` bytes as a piece of their own; `self` keeps the rest.
    fn split(&mut self, n: usize) -> Piece {
        let (Piece::Queued(r) | Piece::Header(r) | Piece::Large(_, r)) = self;
        let head = r.start..r.start + n;
        r.start += n;
        match self {
            Piece::Queued(_) => Piece::Queued(head),
            Piece::Header(_) => Piece::Header(head),
            Piece::Large(i, _) => Piece::Large(*i, head),
        }
    }
}

impl Frames {
    fn clear(&mut self) {
        self.pieces.clear();
        self.headers.clear();
        self.covered = 0;
        self.large.clear();
        self.large_bytes = 0;
    }

    /// `buf[from..]` with `large` (positions in `buf`, ascending, each
    /// binary going before the byte at its position) in between: the
    /// message's bytes in wire order, as queued and large pieces.
    fn spans(&mut self, buf: &[u8], from: usize, large: &mut Vec<(usize, Bytes)>) -> Vec<Piece> {
        let mut spans = Vec::with_capacity(2 * large.len() + 1);
        let mut at = from;
        for (pos, b) in large.drain(..) {
            if at < pos {
                spans.push(Piece::Queued(at..pos));
            }
            self.large_bytes += b.len();
            spans.push(Piece::Large(self.large.len(), 0..b.len()));
            self.large.push(b);
            at = pos;
        }
        if at < buf.len() {
            spans.push(Piece::Queued(at..buf.len()));
        }
        spans
    }

    /// The whole frame at `buf[start..]` (length prefix filled), with its
    /// large binaries in between.
    fn whole(&mut self, buf: &[u8], start: usize, large: &mut Vec<(usize, Bytes)>) {
        if self.covered < start {
            self.pieces.push(Piece::Queued(self.covered..start));
        }
        let spans = self.spans(buf, start, large);
        self.pieces.extend(spans);
        self.covered = buf.len();
    }

    /// The single frame at `buf[start..]` (length prefix not filled,
    /// `131 68`, then up to `body_start` what is not message bytes, then
    /// the message, to the end of `buf`, with `large` in between) goes out
    /// as one DIST_FRAG_HEADER frame carrying `cache_header` and
    /// DIST_FRAG_CONT frames, each with at most FRAGMENT_SIZE message
    /// bytes; `buf[start..body_start]` is skipped.
    fn fragment(&mut self, buf: &[u8], start: usize, body_start: usize, seq: u64, cache_header: &[u8], large: &mut Vec<(usize, Bytes)>) {
        if self.covered < start {
            self.pieces.push(Piece::Queued(self.covered..start));
        }
        let spans = self.spans(buf, body_start, large);
        let body_len: usize = spans.iter().map(Piece::len).sum();
        let mut spans = spans.into_iter();
        let total = body_len.div_ceil(FRAGMENT_SIZE);
        let mut current = spans.next();
        for i in 0..total {
            let len = FRAGMENT_SIZE.min(body_len - i * FRAGMENT_SIZE);
            let first = i == 0;
            let h0 = self.headers.len();
            let header_len = 2 + 16 + if first { cache_header.len() } else { 0 };
            self.headers.extend_from_slice(&((header_len + len) as u32).to_be_bytes());
            self.headers.push(VERSION_MAGIC);
            self.headers.push(if first { DIST_FRAG_HEADER } else { DIST_FRAG_CONT });
            self.headers.extend_from_slice(&seq.to_be_bytes());
            self.headers.extend_from_slice(&((total - i) as u64).to_be_bytes());
            if first {
                self.headers.extend_from_slice(cache_header);
            }
            self.pieces.push(Piece::Header(h0..self.headers.len()));
            // This fragment's `len` message bytes, across spans.
            let mut left = len;
            while left > 0 {
                let span = current.as_mut().expect("spans cover the body");
                let n = span.len().min(left);
                self.pieces.push(span.split(n));
                left -= n;
                if span.len() == 0 {
                    current = spans.next();
                }
            }
        }
        self.covered = buf.len();
    }
}

#[cfg(test)]
mod tests {
    use super::super::atom_cache::AtomCache;
    use super::super::fragments::Reassembler;
    use super::super::header::{parse_frame, FramePart};
    use super::*;
    use crate::term::{encode_into, Atom};
    use bytes::Bytes;

    /// What the writer would send, in one buffer.
    fn take_flat(o: &Outbox) -> Vec<u8> {
        let mut t = Taken::default();
        o.take(&mut t);
        let mut scratch = Vec::new();
        t.flatten_into(&mut scratch).to_vec()
    }

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
        let o = Outbox::new(true, DEFAULT_BUSY_LIMIT, false, true);
        let big = Term::Binary(Bytes::from(vec![7u8; FRAGMENT_SIZE * 3 + 5]));
        o.push(&Term::atom("ctl"), Some(&big)).unwrap();
        let out = take_flat(&o);
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
        let o = Outbox::new(true, DEFAULT_BUSY_LIMIT, false, true);
        o.push(&Term::Int(1), None).unwrap();
        let big = Term::Binary(Bytes::from((0..FRAGMENT_SIZE * 2 + 777).map(|i| (i % 251) as u8).collect::<Vec<u8>>()));
        o.push(&Term::atom("ctl"), Some(&big)).unwrap();
        o.push(&Term::Int(2), None).unwrap();
        let out = take_flat(&o);
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

    /// Every message `o` queued, decoded as the peer's reader does.
    fn decode_all(o: &Outbox, cache: &mut AtomCache) -> Vec<(Term, Option<Term>)> {
        let out = take_flat(o);
        let mut r = Reassembler::new(1 << 26, 4);
        let mut msgs = vec![];
        for f in split_frames(&out) {
            let whole = match parse_frame(f, cache).unwrap() {
                FramePart::Whole { atoms, body } => Some((atoms, body)),
                FramePart::First { seq, fragment_id, atoms, body } => r.first(seq, fragment_id, atoms, body).unwrap(),
                FramePart::Cont { seq, fragment_id, body } => r.cont(seq, fragment_id, body).unwrap(),
            };
            if let Some((atoms, body)) = whole {
                msgs.push(super::super::decode_message(&body, &atoms, &crate::term::DecodeLimits::default()).unwrap());
            }
        }
        msgs
    }

    fn occurrences(frames: &[u8], text: &str) -> usize {
        frames.windows(text.len()).filter(|w| *w == text.as_bytes()).count()
    }

    #[test]
    fn atoms_go_once_per_link_through_the_cache() {
        let o = Outbox::new(true, DEFAULT_BUSY_LIMIT, true, true);
        let pid = crate::term::Pid { node: Atom::new("peer@host"), id: 1, serial: 0, creation: 7 };
        let ctl = Term::tuple([Term::Int(6), Term::Pid(pid.clone()), Term::atom(""), Term::atom("bench_sink")]);
        let msg = Term::tuple([Term::atom("msg"), Term::atom("msg"), Term::Pid(pid), Term::atom("caf\u{e9}")]);
        let mut cache = AtomCache::default();
        for round in 0..3 {
            o.push(&ctl, Some(&msg)).unwrap();
            // What goes on the wire: each atom's text in the first frame only.
            let peek = o.buf.lock().unwrap().bytes.clone();
            let expect = if round == 0 { 1 } else { 0 };
            assert_eq!(occurrences(&peek, "bench_sink"), expect, "round {round}");
            assert_eq!(occurrences(&peek, "peer@host"), expect, "round {round}");
            assert_eq!(decode_all(&o, &mut cache), vec![(ctl.clone(), Some(msg.clone()))], "round {round}");
        }
    }

    #[test]
    fn cache_collisions_many_atoms_and_fragments_round_trip() {
        use super::super::atom_cache::tests_index_of as index_of;
        let o = Outbox::new(true, DEFAULT_BUSY_LIMIT, true, true);
        // Two atoms on one cache index, in one message and across messages.
        let a = Atom::new("a0");
        let b = (1..).map(|i| Atom::new(&format!("a{i}"))).find(|x| index_of(x) == index_of(&a)).unwrap();
        let pair = Term::tuple([Term::Atom(a.clone()), Term::Atom(b.clone()), Term::Atom(a.clone())]);
        // More distinct atoms than one header can list, and one of 400
        // bytes (200 characters), which goes as text.
        let many = Term::List((0..400).map(|i| Term::atom(&format!("atom_{i}"))).chain([Term::atom(&"\u{e9}".repeat(200))]).collect());
        // A fragmented message whose atoms go through the cache.
        let big = Term::tuple([Term::atom("big"), Term::Atom(b.clone()), Term::binary(vec![5u8; FRAGMENT_SIZE * 3 + 11])]);
        let mut cache = AtomCache::default();
        let msgs = [pair.clone(), many.clone(), big.clone(), pair.clone(), big.clone(), many.clone()];
        for m in &msgs {
            o.push(&Term::Int(2), Some(m)).unwrap();
        }
        let got = decode_all(&o, &mut cache);
        assert_eq!(got, msgs.iter().map(|m| (Term::Int(2), Some(m.clone()))).collect::<Vec<_>>());
    }

    /// Large binaries go out from their own buffers (never copied into the
    /// queue), wherever they sit in a message: alone, several in one
    /// message, at and across fragment boundaries, between small messages,
    /// with and without the atom cache, fragmenting or not. What the peer
    /// reassembles and decodes is every message as sent.
    #[test]
    fn large_binaries_are_sent_from_their_own_buffers_and_arrive_intact() {
        let big = |n: usize, fill: u8| Term::binary((0..n).map(|i| fill.wrapping_add(i as u8)).collect::<Vec<u8>>());
        let msgs = [
            big(crate::term::LARGE_BINARY, 1),
            Term::tuple([Term::atom("two"), big(FRAGMENT_SIZE - 3, 2), Term::Int(7), big(FRAGMENT_SIZE * 2 + 17, 3), Term::atom("end")]),
            Term::atom("small in between"),
            Term::List(vec![big(FRAGMENT_SIZE * 3, 4), big(crate::term::LARGE_BINARY + 1, 5)]),
            Term::Map(vec![(Term::atom("data"), big(1 << 20, 6)), (Term::atom("applied"), Term::Int(3))]),
            Term::binary(vec![9u8; 100]),
        ];
        for (cache, fragments) in [(false, true), (true, true), (false, false), (true, false)] {
            let o = Outbox::new(fragments, usize::MAX, cache, true);
            for m in &msgs {
                o.push(&Term::atom("ctl"), Some(m)).unwrap();
            }
            let queued = o.queued();
            assert!(queued > (1 << 20) + FRAGMENT_SIZE * 5, "large binaries count as queued: {queued}");
            let mut t = Taken::default();
            o.take(&mut t);
            assert_eq!(t.len(), queued);
            // The large binaries were not copied: the queue holds the one
            // binary below LARGE_BINARY (65,533 bytes) and little else.
            assert!(t.bytes.len() < FRAGMENT_SIZE + 1024, "cache {cache}, fragments {fragments}: {} bytes queued", t.bytes.len());
            let mut scratch = Vec::new();
            let out = t.flatten_into(&mut scratch).to_vec();
            let mut peer = AtomCache::default();
            let mut r = Reassembler::new(1 << 26, 4);
            let mut got = vec![];
            for f in split_frames(&out) {
                let whole = match parse_frame(f, &mut peer).unwrap() {
                    FramePart::Whole { atoms, body } => Some((atoms, body)),
                    FramePart::First { seq, fragment_id, atoms, body } => r.first(seq, fragment_id, atoms, body).unwrap(),
                    FramePart::Cont { seq, fragment_id, body } => r.cont(seq, fragment_id, body).unwrap(),
                };
                if let Some((atoms, body)) = whole {
                    got.push(super::super::decode_message(&body, &atoms, &crate::term::DecodeLimits::default()).unwrap());
                }
            }
            let want: Vec<_> = msgs.iter().map(|m| (Term::atom("ctl"), Some(m.clone()))).collect();
            assert!(got == want, "cache {cache}, fragments {fragments}: messages differ");
        }
    }

    /// Messages around the fragment size, each bringing new atoms (so its
    /// atom cache header is tens of bytes): those whose body fits a frame
    /// but not with the header used to go out whole without the header,
    /// which the BEAM rejects ("corrupted distribution header").
    #[test]
    fn messages_at_the_fragment_boundary_keep_their_cache_header() {
        let o = Outbox::new(true, DEFAULT_BUSY_LIMIT, true, true);
        let mut cache = AtomCache::default();
        for off in 0..160 {
            let n = FRAGMENT_SIZE - 120 + off;
            let m = Term::tuple([Term::atom(&format!("edge_{off}_first")), Term::atom(&format!("edge_{off}_second")), Term::binary(vec![3u8; n])]);
            o.push(&Term::Int(2), Some(&m)).unwrap();
            assert_eq!(decode_all(&o, &mut cache), vec![(Term::Int(2), Some(m))], "binary of {n} bytes");
        }
    }

    /// A record for a peer that does not take them (OTP 28 or older drop
    /// the link on one) is refused, leaving no byte queued and the atom
    /// cache as it was: the messages before and after it, which share
    /// its atoms, decode, and a record-taking link sends it.
    #[test]
    fn a_record_is_refused_for_a_peer_without_native_records() {
        use crate::term::NativeRecord;
        let rec: Term = NativeRecord::new(Atom::new("mymod"), Atom::new("pt"), true, vec![(Atom::new("x"), Term::Int(1))]).unwrap().into();
        for atom_cache in [true, false] {
            let o = Outbox::new(true, DEFAULT_BUSY_LIMIT, atom_cache, false);
            let mut cache = AtomCache::default();
            let before = Term::tuple([Term::atom("mymod"), Term::atom("before")]);
            o.push(&Term::Int(2), Some(&before)).unwrap();
            let queued = o.queued();
            // The record's atoms are new to the cache (pt, x) or held (mymod).
            let with_record = Term::tuple([Term::atom("pt"), Term::List(vec![Term::atom("x"), rec.clone()]), Term::atom("mymod")]);
            assert_eq!(o.push(&Term::Int(2), Some(&with_record)), Err(Closed::Unencodable(Unencodable)));
            assert_eq!(o.try_push(&Term::Int(2), Some(&with_record)), Err(Busy::Unencodable(Unencodable)));
            assert_eq!(o.queued(), queued, "atom cache {atom_cache}: bytes of a refused message stayed queued");
            let after = Term::tuple([Term::atom("pt"), Term::atom("x"), Term::atom("mymod")]);
            o.push(&Term::Int(2), Some(&after)).unwrap();
            let got = decode_all(&o, &mut cache);
            assert_eq!(got, vec![(Term::Int(2), Some(before)), (Term::Int(2), Some(after))], "atom cache {atom_cache}");

            let takes = Outbox::new(true, DEFAULT_BUSY_LIMIT, atom_cache, true);
            takes.push(&Term::Int(2), Some(&with_record)).unwrap();
            assert_eq!(decode_all(&takes, &mut AtomCache::default()), vec![(Term::Int(2), Some(with_record))]);
        }
    }

    #[test]
    fn small_messages_batch_into_one_buffer() {
        let o = Outbox::new(true, DEFAULT_BUSY_LIMIT, false, true);
        for i in 0..10 {
            o.push(&Term::Int(i), None).unwrap();
        }
        let out = take_flat(&o);
        assert_eq!(split_frames(&out).len(), 10);
        o.close();
        assert!(o.push(&Term::Int(1), None).is_err());
    }

    #[tokio::test]
    async fn a_full_queue_is_busy_until_the_writer_takes_it() {
        let o = std::sync::Arc::new(Outbox::new(true, 100, false, true));
        let msg = Term::binary(vec![1u8; 60]);
        o.try_push(&Term::Int(1), Some(&msg)).unwrap();
        o.try_push(&Term::Int(2), Some(&msg)).unwrap();
        assert!(matches!(o.try_push(&Term::Int(3), Some(&msg)), Err(Busy::Busy { limit: 100, .. })));
        // System traffic still goes in.
        o.push(&Term::Int(4), None).unwrap();
        let o2 = o.clone();
        let waiter = tokio::spawn(async move { o2.push_wait(&Term::Int(5), None).await });
        tokio::task::yield_now().await;
        let out = take_flat(&o);
        assert_eq!(split_frames(&out).len(), 3);
        waiter.await.unwrap().unwrap();
        let out = take_flat(&o);
        assert_eq!(split_frames(&out).len(), 1, "the waiting sender queued after the take");
    }

    #[tokio::test]
    async fn waiting_senders_get_an_error_when_the_link_closes() {
        let o = std::sync::Arc::new(Outbox::new(true, 10, false, true));
        o.push(&Term::binary(vec![0u8; 20]), None).unwrap();
        let o2 = o.clone();
        let waiter = tokio::spawn(async move { o2.push_wait(&Term::Int(1), None).await });
        tokio::task::yield_now().await;
        o.close();
        assert!(waiter.await.unwrap().is_err());
        assert_eq!(o.try_push(&Term::Int(1), None), Err(Busy::Closed));
    }
}
