//! One distribution link to one peer: a reader task that turns frames
//! into control messages, a writer task that batches queued frames and
//! keeps the link alive with ticks.
//!
//! Flow in: socket -> 4-byte length -> [`header::parse_frame`] (atom cache,
//! fragments; a continuation fragment's body is read from the socket
//! straight into its message, [`fragments`]) -> ETF decode of control +
//! payload -> [`Control`] ->
//! [`Inbound::deliver`] (the node routes it to a mailbox or service).
//! Flow out: [`Connection::send`] encodes into the [`outbox::Outbox`] buffer
//! -> writer task -> one `write_all` for everything queued (a vectored
//! write when a fragmented message's headers go between its chunks).

pub mod atom_cache;
pub mod budget;
pub mod buffer_cache;
pub mod fragments;
pub mod header;
pub mod huge_pages;
pub mod outbox;

use crate::control::Control;
use crate::term::decode::DecodeLimits;
use crate::term::{decode_bytes_with_cache, Atom, DecodeError, Term};
use bytes::Bytes;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufRead, AsyncReadExt, AsyncWriteExt, BufReader};

/// Frames at least this large are read past the BufReader (and the
/// length of the frame after one).
const DIRECT_READ: usize = 16 * 1024;

pub use budget::{BudgetError, InputBudget};
pub use outbox::{Busy, Closed, Unencodable};

/// Why a link was closed by us (logged, and reported as the nodedown reason).
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("truncated frame")]
    Truncated,
    #[error("malformed frame: {0}")]
    Malformed(String),
    #[error("limit exceeded: {0}")]
    Limit(String),
    #[error("undecodable term: {0}")]
    Term(#[from] DecodeError),
    #[error("{0}")]
    Budget(#[from] BudgetError),
}

/// Per-link limits and timers.
///
/// The receive-side atom cache needs no limit of its own: the distribution
/// header addresses it with a 3-bit segment and an 8-bit index, so a link
/// holds at most [`atom_cache::CACHE_SIZE`] (2048) entries of at most 255
/// characters each, allocated once; a reference to an empty slot closes
/// the link (tested in `interop-tests/hostile.rs`).
#[derive(Debug, Clone)]
pub struct LinkConfig {
    /// Largest single frame accepted (the BEAM fragments at 64 KiB when
    /// FRAGMENTS is negotiated, so only misbehaving peers come near this).
    pub max_frame: usize,
    /// Largest reassembled fragmented message (default 128 MiB).
    pub max_message: usize,
    /// The most unfinished input one link may hold: pieces of fragmented
    /// messages plus the frame being read (see [`budget`]). Must leave
    /// room for `max_message` for such messages to pass.
    pub input_share: usize,
    /// Fragmented messages that may be in flight at once.
    pub max_fragment_sequences: usize,
    /// Bytes queued for the socket at which the link counts as busy:
    /// senders with backpressure wait (like the BEAM's
    /// `dist_buf_busy_limit`, default 1 MiB).
    pub busy_limit: usize,
    /// Send atoms as references to the peer's atom cache when it
    /// negotiated DIST_HDR_ATOM_CACHE (default on; docs/design.md).
    pub send_atom_cache: bool,
    /// Advise transparent huge pages for the buffers messages of 4 MiB or
    /// more are received into (default on; [`huge_pages`]).
    pub huge_pages: bool,
    /// Where the buffers of messages of 256 KiB or more come from and go
    /// back to when their bytes are dropped ([`buffer_cache`]); one per
    /// node, shared by its links.
    pub buffer_cache: Arc<buffer_cache::BufferCache>,
    /// While large messages arrive, how long the link's reader polls an
    /// empty socket again before it sleeps (default 20 us, measured best;
    /// at most [`MAX_BUSY_POLL`], 1 ms; zero: never). It was off by
    /// default for a while: with it on, a Horde registry test stalled,
    /// which turned out to be a Horde member's loop starving its own tick
    /// and link writer when the poll's quicker delivery kept its CRDT's
    /// mailbox full (fixed; docs/horde.md).
    /// The BEAM's schedulers busy-wait like this before sleeping (`+sbwt`).
    /// A BEAM sending 64 KB messages to a reader that slept between them
    /// spent 28 us of CPU per message instead of 18 to a BEAM receiver,
    /// and the polling reader doubled the rate (docs/benchmarks.md; the
    /// likely cause is the reading CPU going idle between frames, which
    /// the sender's kernel path then has to wake). Small messages are
    /// read without it: see docs/benchmarks.md for what polling for them
    /// cost.
    pub busy_poll: Duration,
    /// Like `-kernel net_ticktime`: a peer silent this long is down; we
    /// send a tick after a quarter of it without traffic.
    pub net_ticktime: Duration,
    pub decode: DecodeLimits,
}

impl Default for LinkConfig {
    fn default() -> Self {
        LinkConfig {
            max_frame: 128 * 1024 * 1024,
            max_message: 128 * 1024 * 1024,
            input_share: budget::DEFAULT_INPUT_SHARE,
            busy_limit: outbox::DEFAULT_BUSY_LIMIT,
            send_atom_cache: true,
            huge_pages: true,
            buffer_cache: buffer_cache::BufferCache::new(buffer_cache::DEFAULT_BYTES),
            max_fragment_sequences: 1024,
            busy_poll: Duration::from_micros(20),
            net_ticktime: Duration::from_secs(60),
            decode: DecodeLimits::default(),
        }
    }
}

/// The node side of a link: where decoded messages go.
pub trait Inbound: Send + Sync + 'static {
    fn deliver(&self, peer: &Atom, msg: Control);
    /// Called exactly once when the link ends, whichever side ended it.
    fn link_closed(&self, conn: &Arc<Connection>, reason: String);
}

/// A live link. Cheap to share. [`send`](Self::send) never blocks;
/// [`send_terms_wait`](Self::send_terms_wait) waits while the link is busy.
pub struct Connection {
    pub peer: Atom,
    /// Flags both sides agreed on.
    pub flags: u64,
    pub peer_creation: u32,
    outbox: outbox::Outbox,
    reported: AtomicBool,
    reader_abort: std::sync::Mutex<Option<tokio::task::AbortHandle>>,
    /// A writer blocked on a peer that stopped reading must not outlive
    /// the link.
    writer_abort: std::sync::Mutex<Option<tokio::task::AbortHandle>>,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Connection({})", self.peer)
    }
}

impl Connection {
    /// Starts the reader and writer tasks for a socket that has finished
    /// its handshake. The link's unfinished input is charged to `budget`,
    /// shared by all the node's links.
    pub fn spawn(
        stream: crate::tls::DistStream,
        peer: Atom,
        flags: u64,
        peer_creation: u32,
        cfg: LinkConfig,
        budget: Arc<InputBudget>,
        inbound: Arc<dyn Inbound>,
    ) -> Arc<Connection> {
        let fragments = flags & crate::handshake::flags::FRAGMENTS != 0;
        let conn = Arc::new(Connection {
            peer,
            flags,
            peer_creation,
            outbox: outbox::Outbox::new(
                fragments,
                cfg.busy_limit,
                cfg.send_atom_cache && flags & crate::handshake::flags::DIST_HDR_ATOM_CACHE != 0,
                flags & crate::handshake::flags::NATIVE_RECORDS != 0,
            ),
            reported: AtomicBool::new(false),
            reader_abort: std::sync::Mutex::new(None),
            writer_abort: std::sync::Mutex::new(None),
        });
        let (rd, wr): (Reader, Writer) = match stream {
            crate::tls::DistStream::Tcp(tcp) => {
                let _ = tcp.set_nodelay(true);
                let (rd, wr) = tcp.into_split();
                (Box::new(rd), Box::new(wr))
            }
            crate::tls::DistStream::Tls(tls) => {
                let (rd, wr) = tokio::io::split(tls);
                (Box::new(rd), Box::new(wr))
            }
        };
        let budget = budget::LinkBudget::new(budget, cfg.input_share);
        let reader = tokio::spawn(read_loop(conn.clone(), rd, cfg.clone(), budget, inbound.clone()));
        *conn.reader_abort.lock().unwrap() = Some(reader.abort_handle());
        let writer = tokio::spawn(write_loop(conn.clone(), wr, cfg.net_ticktime / 4, inbound));
        *conn.writer_abort.lock().unwrap() = Some(writer.abort_handle());
        conn
    }

    /// Queues a control message.
    pub fn send(&self, msg: &Control) -> Result<(), Closed> {
        let (ctl, payload) = msg.to_terms();
        self.outbox.push(&ctl, payload.as_ref())
    }

    /// Queues a control tuple and payload without building a [`Control`]
    /// (the message hot path: no clone of the payload).
    pub fn send_terms(&self, ctl: &Term, payload: Option<&Term>) -> Result<(), Closed> {
        self.outbox.push(ctl, payload)
    }

    /// Queues a control tuple and payload, first waiting while the link
    /// is busy (`busy_limit` bytes queued). Fails only if the link closes.
    pub async fn send_terms_wait(&self, ctl: &Term, payload: Option<&Term>) -> Result<(), Closed> {
        self.outbox.push_wait(ctl, payload).await
    }

    /// Queues a control tuple and payload unless the link is busy.
    pub fn try_send_terms(&self, ctl: &Term, payload: Option<&Term>) -> Result<(), Busy> {
        self.outbox.try_push(ctl, payload)
    }

    /// Bytes queued for the socket right now.
    pub fn queued(&self) -> usize {
        self.outbox.queued()
    }

    pub fn is_closed(&self) -> bool {
        self.outbox.is_closed()
    }

    /// Closes the link; queued frames are flushed first when possible.
    pub fn close(&self) {
        self.outbox.close();
    }

    fn finish(self: &Arc<Self>, inbound: &Arc<dyn Inbound>, reason: String) {
        self.outbox.close();
        if let Some(h) = self.reader_abort.lock().unwrap().take() {
            h.abort();
        }
        if let Some(h) = self.writer_abort.lock().unwrap().take() {
            h.abort();
        }
        if !self.reported.swap(true, Ordering::AcqRel) {
            inbound.link_closed(self, reason);
        }
    }
}

type Reader = Box<dyn tokio::io::AsyncRead + Unpin + Send>;
type Writer = Box<dyn tokio::io::AsyncWrite + Unpin + Send>;

async fn read_loop(conn: Arc<Connection>, rd: Reader, cfg: LinkConfig, mut budget: budget::LinkBudget, inbound: Arc<dyn Inbound>) {
    let reason = match read_frames(&conn, rd, &cfg, &mut budget, &inbound).await {
        Ok(()) => "connection closed by peer".to_string(),
        Err(e) => e,
    };
    conn.finish(&inbound, reason);
}

async fn read_frames(
    conn: &Arc<Connection>,
    rd: Reader,
    cfg: &LinkConfig,
    budget: &mut budget::LinkBudget,
    inbound: &Arc<dyn Inbound>,
) -> Result<(), String> {
    let mut rd = BufReader::with_capacity(128 * 1024, SocketReader { inner: rd, cap: usize::MAX, busy_poll: cfg.busy_poll.min(MAX_BUSY_POLL), polling: false });
    let mut cache = atom_cache::AtomCache::default();
    let mut reasm = fragments::Reassembler::new(cfg.max_message, cfg.max_fragment_sequences)
        .huge_pages(cfg.huge_pages)
        .buffer_cache(cfg.buffer_cache.clone());
    let tick = cfg.net_ticktime;
    // After a large frame, and after the frame that follows one, the
    // BufReader refills at most LOOKAHEAD bytes: a whole refill would
    // pull most of the next large frame's body into it, a 64 KiB copy
    // more, and reading each length, header and short frame on its own
    // costs a system call each (7.4 per 64 KB message from the BEAM
    // instead of 2.9). A large message comes as 64 KiB fragments and a
    // short last one (from the BEAM and from erlnode), so the frame
    // before the next message's first fragment is a short one that
    // follows a large one. (Not "while a message is unfinished": a peer
    // that never finishes one would keep the link polling.)
    let (mut near_large, mut last_large) = (false, false);
    loop {
        let socket = rd.get_mut();
        socket.cap = if near_large { LOOKAHEAD } else { usize::MAX };
        socket.polling = near_large;
        let len = match read_len(&mut rd, tick).await? {
            None => return Ok(()),
            Some(n) => n,
        };
        if len == 0 {
            continue; // tick
        }
        if len > cfg.max_frame {
            return Err(format!("frame of {len} bytes exceeds max_frame {}", cfg.max_frame));
        }
        // Charged before the frame's buffer exists: what the link holds
        // plus, at most, what this frame can add to it.
        if let Err(e) = budget.hold(reasm.buffered() + len + fragments::PIECE_OVERHEAD) {
            tracing::warn!(peer = %conn.peer, frame = len, held = budget.held(), error = %e, "closing the link: over its memory budget");
            return Err(e.to_string());
        }
        let large = len >= DIRECT_READ;
        rd.get_mut().polling |= large;
        let whole = if large {
            // A large frame is read straight from the socket (after what
            // the BufReader holds); a continuation's body goes straight
            // into its message's buffer (issue 16, large messages).
            let mut head = Vec::with_capacity(header::CONT_HEAD);
            read_direct(&mut rd, &mut head, len.min(header::CONT_HEAD), tick).await?;
            match header::continuation(&head) {
                Some((seq, fragment_id)) => {
                    let body = len - header::CONT_HEAD;
                    let dst = reasm.cont_buffer(seq, fragment_id, body).map_err(|e| e.to_string())?;
                    read_direct(&mut rd, dst, body, tick).await?;
                    reasm.cont_appended(seq, fragment_id)
                }
                None => {
                    // A first fragment is read into the buffer its message
                    // is assembled in (fragments::Reassembler::first_in_place),
                    // reserved once what these bytes say has been checked.
                    let first = header::first_fragment(&head);
                    let mut buf = match first {
                        Some((seq, fragment_id)) => {
                            reasm.check_first(seq, 0).map_err(|e| e.to_string())?;
                            reasm.message_buffer(len, fragment_id, len).map_err(|e| e.to_string())?
                        }
                        None => cfg.buffer_cache.receive_buffer(len, cfg.huge_pages).ok_or_else(|| format!("cannot allocate a {len}-byte frame"))?,
                    };
                    buf.extend_from_slice(&head);
                    read_direct(&mut rd, &mut buf, len - head.len(), tick).await?;
                    if first.is_some() {
                        let (seq, fragment_id, atoms, start) = header::parse_first_fragment(&buf, &mut cache).map_err(|e| e.to_string())?;
                        reasm.first_in_place(seq, fragment_id, atoms, buf, start).map_err(|e| e.to_string())?
                    } else {
                        reassemble(cfg.buffer_cache.bytes(buf), &mut cache, &mut reasm)?
                    }
                }
            }
        } else {
            let mut buf = Vec::with_capacity(len);
            fill(&mut rd, &mut buf, len, tick).await?;
            reassemble(Bytes::from(buf), &mut cache, &mut reasm)?
        };
        if let Some((atoms, body)) = whole {
            let (ctl, payload) = decode_message(&body, &atoms, &cfg.decode).map_err(|e| format!("{e}"))?;
            match Control::from_terms(ctl, payload) {
                Ok(msg) => inbound.deliver(&conn.peer, msg),
                Err(e) => tracing::warn!(peer = %conn.peer, error = %e, "dropping unknown or malformed control message"),
            }
        }
        // What the frame added was charged above, bookkeeping aside (a
        // first fragment's entry counts a little more): the result is
        // ignored, and the next frame's charge counts it.
        let _ = budget.hold(reasm.buffered());
        near_large = large || last_large;
        last_large = large;
    }
}

/// The next frame's length; `None` when the peer closed the link between
/// frames.
async fn read_len(rd: &mut BufReader<SocketReader>, tick: Duration) -> Result<Option<usize>, String> {
    match tokio::time::timeout(tick, rd.read_u32()).await {
        Err(_) => Err(format!("net_tick_timeout: nothing received for {tick:?}")),
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => Ok(None),
        Ok(Err(e)) => Err(format!("read error: {e}")),
        Ok(Ok(n)) => Ok(Some(n as usize)),
    }
}

/// Appends exactly `n` more bytes of the frame to `dst`: what the
/// BufReader holds first, then straight from the socket, so a large body
/// is copied once, by the kernel.
async fn read_direct(rd: &mut BufReader<SocketReader>, dst: &mut Vec<u8>, n: usize, tick: Duration) -> Result<(), String> {
    let held = rd.buffer();
    let k = held.len().min(n);
    dst.extend_from_slice(&held[..k]);
    std::pin::Pin::new(&mut *rd).consume(k);
    let inner = rd.get_mut();
    inner.cap = usize::MAX;
    fill(inner, dst, n - k, tick).await
}

/// Appends exactly `n` more bytes of the frame from `r` to `dst`.
async fn fill<R: tokio::io::AsyncRead + Unpin>(r: &mut R, dst: &mut Vec<u8>, n: usize, tick: Duration) -> Result<(), String> {
    let end = dst.len() + n;
    dst.reserve(n);
    while dst.len() < end {
        let want = end - dst.len();
        match tokio::time::timeout(tick, (&mut *r).take(want as u64).read_buf(dst)).await {
            Err(_) => return Err("net_tick_timeout in the middle of a frame".into()),
            Ok(Ok(0)) => return Err("peer closed the connection in the middle of a frame".into()),
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return Err(format!("read error: {e}")),
        }
    }
    Ok(())
}

/// The longest busy poll taken from [`LinkConfig::busy_poll`]: a poll
/// holds a runtime worker.
pub const MAX_BUSY_POLL: Duration = Duration::from_millis(1);

/// At most this much is read ahead of a frame's length near large frames
/// (see `read_frames`): the length, the short frame that ends a large
/// message, and the next length and header fit, and copying the rest of
/// what came with them is cheap.
const LOOKAHEAD: usize = 4 * 1024;

/// The link's socket as `read_frames` reads it: each read asks for at
/// most `cap` bytes (the BufReader's refills are capped near large
/// frames), and while `polling`, a read that finds nothing tries again
/// for up to `busy_poll` before it leaves the task to sleep
/// ([`LinkConfig::busy_poll`]).
struct SocketReader {
    inner: Reader,
    cap: usize,
    busy_poll: Duration,
    polling: bool,
}

impl SocketReader {
    fn poll_capped(&mut self, cx: &mut std::task::Context<'_>, buf: &mut tokio::io::ReadBuf<'_>) -> std::task::Poll<std::io::Result<()>> {
        if buf.remaining() <= self.cap {
            return tokio::io::AsyncRead::poll_read(std::pin::Pin::new(&mut self.inner), cx, buf);
        }
        let mut part = buf.take(self.cap);
        let front = part.filled().as_ptr();
        let res = tokio::io::AsyncRead::poll_read(std::pin::Pin::new(&mut self.inner), cx, &mut part);
        assert_eq!(part.filled().as_ptr(), front, "the reader replaced the buffer it was given");
        let n = part.filled().len();
        // SAFETY: `part` is the front of `buf`'s unfilled part, and the
        // reader filled (so initialised) its first `n` bytes.
        unsafe { buf.assume_init(n) };
        buf.advance(n);
        res
    }
}

impl tokio::io::AsyncRead for SocketReader {
    fn poll_read(self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>, buf: &mut tokio::io::ReadBuf<'_>) -> std::task::Poll<std::io::Result<()>> {
        let me = self.get_mut();
        let first = me.poll_capped(cx, buf);
        // Out of the runtime's cooperative budget, every read is pending
        // until the task yields: polling would only burn the limit.
        if first.is_ready() || !me.polling || me.busy_poll.is_zero() || !tokio::task::coop::has_budget_remaining() {
            return first;
        }
        let since = Instant::now();
        loop {
            std::hint::spin_loop();
            let again = me.poll_capped(cx, buf);
            if again.is_ready() || since.elapsed() >= me.busy_poll {
                return again;
            }
        }
    }
}

/// A whole frame's header, then the message it completes, if any.
fn reassemble(frame: Bytes, cache: &mut atom_cache::AtomCache, reasm: &mut fragments::Reassembler) -> Result<Option<(Vec<Atom>, Bytes)>, String> {
    Ok(match header::parse_frame(frame, cache).map_err(|e| e.to_string())? {
        header::FramePart::Whole { atoms, body } => Some((atoms, body)),
        header::FramePart::First { seq, fragment_id, atoms, body } => reasm.first(seq, fragment_id, atoms, body).map_err(|e| e.to_string())?,
        header::FramePart::Cont { seq, fragment_id, body } => reasm.cont(seq, fragment_id, body).map_err(|e| e.to_string())?,
    })
}

/// Writes every piece, in order, with as few `writev`s as the kernel
/// takes (the standard library caps each at IOV_MAX slices).
async fn write_pieces(wr: &mut Writer, pieces: &[&[u8]]) -> std::io::Result<()> {
    let mut slices: Vec<std::io::IoSlice<'_>> = pieces.iter().filter(|p| !p.is_empty()).map(|p| std::io::IoSlice::new(p)).collect();
    let mut rest = &mut slices[..];
    while !rest.is_empty() {
        let n = wr.write_vectored(rest).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        std::io::IoSlice::advance_slices(&mut rest, n);
    }
    Ok(())
}

/// Decodes the control term and, when present, the payload term.
pub fn decode_message(body: &Bytes, atoms: &[Atom], limits: &DecodeLimits) -> Result<(Term, Option<Term>), FrameError> {
    let (ctl, used) = decode_bytes_with_cache(body, atoms, limits)?;
    if used >= body.len() {
        return Ok((ctl, None));
    }
    let (payload, used2) = decode_bytes_with_cache(&body.slice(used..), atoms, limits)?;
    if used + used2 != body.len() {
        return Err(FrameError::Malformed(format!("{} trailing bytes after the payload", body.len() - used - used2)));
    }
    Ok((ctl, Some(payload)))
}

async fn write_loop(conn: Arc<Connection>, mut wr: Writer, tick_every: Duration, inbound: Arc<dyn Inbound>) {
    let mut taken = outbox::Taken::default();
    taken.bytes.reserve(64 * 1024);
    // For writers without vectored writes (TLS): the pieces in one buffer.
    let mut flat = Vec::new();
    let vectored = wr.is_write_vectored();
    let mut last_write = Instant::now();
    let result: Result<(), String> = async {
        loop {
            if !conn.outbox.is_closed() {
                tokio::select! {
                    _ = conn.outbox.notify.notified() => {}
                    _ = tokio::time::sleep(tick_every) => {}
                }
            }
            conn.outbox.take(&mut taken);
            if !taken.is_empty() {
                if taken.is_plain() {
                    wr.write_all(&taken.bytes).await.map_err(|e| format!("write error: {e}"))?;
                } else if vectored {
                    write_pieces(&mut wr, &taken.pieces()).await.map_err(|e| format!("write error: {e}"))?;
                } else {
                    wr.write_all(taken.flatten_into(&mut flat)).await.map_err(|e| format!("write error: {e}"))?;
                }
                // TLS holds records until flushed; a no-op over TCP.
                wr.flush().await.map_err(|e| format!("write error: {e}"))?;
                last_write = Instant::now();
                // Sent: the senders' large binaries are theirs again.
                taken.release_large();
                // Don't pin a huge buffer after a burst of large messages,
                // but keep it during one: the next large message then
                // reuses its pages instead of faulting in fresh ones
                // (measured: most of a 64 MB send's time).
                if taken.bytes.capacity() > 4 * 1024 * 1024 && taken.bytes.len() < taken.bytes.capacity() / 8 {
                    taken = outbox::Taken::default();
                    taken.bytes.reserve(64 * 1024);
                }
                if flat.capacity() > 4 * 1024 * 1024 {
                    flat = Vec::new();
                }
            } else if conn.outbox.is_closed() {
                let _ = wr.shutdown().await;
                return Err("closed locally".into());
            } else if last_write.elapsed() >= tick_every {
                wr.write_all(&[0, 0, 0, 0]).await.map_err(|e| format!("write error (tick): {e}"))?;
                wr.flush().await.map_err(|e| format!("write error (tick): {e}"))?;
                last_write = Instant::now();
            }
        }
    }
    .await;
    if let Err(reason) = result {
        conn.finish(&inbound, reason);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::pin::Pin;
    use std::task::{Context, Poll};

    /// A writer that takes at most 7 bytes per call, from any slices.
    struct Trickle(Arc<std::sync::Mutex<Vec<u8>>>);

    impl tokio::io::AsyncWrite for Trickle {
        fn poll_write(self: Pin<&mut Self>, _: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
            let n = buf.len().min(7);
            self.0.lock().unwrap().extend_from_slice(&buf[..n]);
            Poll::Ready(Ok(n))
        }
        fn poll_write_vectored(self: Pin<&mut Self>, _: &mut Context<'_>, bufs: &[std::io::IoSlice<'_>]) -> Poll<std::io::Result<usize>> {
            let mut left = 7;
            let mut out = self.0.lock().unwrap();
            for b in bufs {
                let n = b.len().min(left);
                out.extend_from_slice(&b[..n]);
                left -= n;
                if left == 0 {
                    break;
                }
            }
            Poll::Ready(Ok(7 - left))
        }
        fn is_write_vectored(&self) -> bool {
            true
        }
        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
            Poll::Ready(Ok(()))
        }
        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    #[tokio::test]
    async fn vectored_writes_send_every_piece_in_order_across_partial_writes() {
        // A small message, a fragmented one, a small one: what a writer
        // taking 7 bytes at a time gets is exactly the flattened queue,
        // and the fragments' chunks were never copied: they are the
        // binary's own bytes (issue 16, large binaries).
        let o = outbox::Outbox::new(true, outbox::DEFAULT_BUSY_LIMIT, false, true);
        o.push(&Term::Int(1), None).unwrap();
        let big = Term::Binary(Bytes::from((0..outbox::FRAGMENT_SIZE * 2 + 99).map(|i| (i % 253) as u8).collect::<Vec<u8>>()));
        o.push(&Term::atom("ctl"), Some(&big)).unwrap();
        o.push(&Term::Int(2), None).unwrap();
        let mut t = outbox::Taken::default();
        o.take(&mut t);
        let pieces = t.pieces();
        let Term::Binary(own) = &big else { unreachable!() };
        let inside = |p: &[u8]| own.as_ptr_range().contains(&p.as_ptr());
        assert_eq!(pieces.iter().filter(|p| p.len() >= outbox::FRAGMENT_SIZE - 64 && inside(p)).count(), 2, "the full chunks are the binary's own bytes");
        assert!(t.bytes.len() < 1024, "nothing large was copied into the queue");
        let mut flat = Vec::new();
        let want = t.flatten_into(&mut flat).to_vec();
        let got = Arc::new(std::sync::Mutex::new(Vec::new()));
        let mut wr: Writer = Box::new(Trickle(got.clone()));
        write_pieces(&mut wr, &pieces).await.unwrap();
        assert_eq!(*got.lock().unwrap(), want);
        // 1 small frame, 3 fragments, 1 small frame.
        let mut frames = 0;
        let mut b = &want[..];
        while !b.is_empty() {
            let len = u32::from_be_bytes(b[..4].try_into().unwrap()) as usize;
            b = &b[4 + len..];
            frames += 1;
        }
        assert_eq!(frames, 5);
    }

    fn socket(inner: Reader, cap: usize, busy_poll: Duration, polling: bool) -> SocketReader {
        SocketReader { inner, cap, busy_poll, polling }
    }

    #[tokio::test]
    async fn a_capped_read_takes_at_most_cap_bytes_and_an_uncapped_one_all() {
        let (mut tx, rx) = tokio::io::duplex(1 << 16);
        tx.write_all(&(0..20_000u32).map(|i| i as u8).collect::<Vec<u8>>()).await.unwrap();
        let mut r = socket(Box::new(rx), 100, Duration::ZERO, false);
        let mut buf = vec![0u8; 8192];
        assert_eq!(r.read(&mut buf).await.unwrap(), 100, "capped at 100");
        assert_eq!(&buf[..3], &[0, 1, 2]);
        r.cap = usize::MAX;
        assert_eq!(r.read(&mut buf).await.unwrap(), 8192, "uncapped: as much as fits");
        assert_eq!(buf[0], 100, "the bytes follow on");
        // Through a BufReader, as read_frames uses it: a refill asks for
        // at most `cap` bytes.
        let mut rd = BufReader::with_capacity(128 * 1024, r);
        rd.get_mut().cap = LOOKAHEAD;
        let held = tokio::io::AsyncBufReadExt::fill_buf(&mut rd).await.unwrap();
        assert_eq!(held.len(), LOOKAHEAD, "11,708 bytes wait; the refill took {LOOKAHEAD}");
        assert_eq!(held[0], ((100 + 8192) % 256) as u8);
    }

    #[tokio::test]
    async fn a_busy_poll_gives_up_after_its_limit_and_the_read_then_waits_for_data() {
        let (mut tx, rx) = tokio::io::duplex(64);
        let mut r = socket(Box::new(rx), usize::MAX, Duration::from_micros(200), true);
        let mut buf = [0u8; 8];
        let mut cx = Context::from_waker(std::task::Waker::noop());
        let t0 = Instant::now();
        let mut rb = tokio::io::ReadBuf::new(&mut buf);
        assert!(tokio::io::AsyncRead::poll_read(Pin::new(&mut r), &mut cx, &mut rb).is_pending(), "nothing to read: pending after the poll");
        assert!(t0.elapsed() >= Duration::from_micros(200), "it polled for its limit first");
        tx.write_all(b"late").await.unwrap();
        assert_eq!(r.read(&mut buf).await.unwrap(), 4, "data that comes later still wakes the read");
        assert_eq!(&buf[..4], b"late");
    }
}
