//! Giving the runtime worker back between two turns of a process's loop.
//!
//! Why: a tokio task gives its worker back only when it has nothing to do
//! or has spent tokio's cooperative budget, and that budget counts
//! operations (128 receives), not time. A process whose messages each
//! take milliseconds and whose mailbox never empties (a peer streaming to
//! it, callers queueing up) would hold its worker for 128 of them. The
//! task it woke last, typically the link writer carrying its replies,
//! waits meanwhile in the worker's LIFO slot, which the other workers do
//! not steal from: the process keeps working and sends nothing
//! (tests/busy_process_sends.rs). The BEAM preempts a process by
//! reductions; this is the same idea by time, at one clock read per turn.
//!
//! The yield belongs between two turns of a loop (after a turn, or before
//! its `select!`), never inside a receive that sits in a `select!`: a receive that yields is
//! pending once, and a biased select then lets a later branch overtake
//! messages already queued (tried on 2026-12-05 inside `Mailbox::wait`:
//! `make test-horde` lost a flush's deletes and a leaving member's
//! children under load).

use super::Mailbox;
use std::time::{Duration, Instant};

/// How long a loop may keep its worker while work is waiting.
pub const HOLD_AT_MOST: Duration = Duration::from_millis(2);

/// Yields the worker once a loop has held it for [`HOLD_AT_MOST`]. Call
/// one of its methods between two turns of the loop. A run is timed from
/// the end of its first turn (the start of that turn is not seen), so a
/// loop whose turns are each longer than the limit yields after every
/// second turn.
///
/// ```no_run
/// # async fn serve(mut mb: erlnode::Mailbox) {
/// let mut yielder = erlnode::process::Yielder::new();
/// while let Some(msg) = mb.recv().await {
///     // ... handle `msg`, perhaps for milliseconds ...
///     # let _ = msg;
///     yielder.after_message(&mb).await;
/// }
/// # }
/// ```
#[derive(Debug)]
pub struct Yielder {
    /// When the current run of back-to-back turns started; `None` after
    /// a turn that left nothing waiting.
    since: Option<Instant>,
}

impl Default for Yielder {
    fn default() -> Yielder {
        Yielder::new()
    }
}

impl Yielder {
    pub fn new() -> Yielder {
        Yielder { since: None }
    }

    /// For a loop over one mailbox: yields when messages are still
    /// waiting and the loop has taken them back to back for
    /// [`HOLD_AT_MOST`]. A turn that leaves the mailbox empty ends the
    /// run: the next receive waits, which gives the worker back anyway.
    pub async fn after_message(&mut self, mb: &Mailbox) {
        if mb.pending() == 0 {
            self.since = None;
            return;
        }
        self.after_busy_turn().await;
    }

    /// For a loop over several sources (a `select!`), which cannot tell
    /// cheaply whether more work waits: yields once [`HOLD_AT_MOST`] has
    /// passed since the last yield, time spent waiting included (which
    /// costs one yield after an idle spell).
    pub async fn after_turn(&mut self) {
        let since = *self.since.get_or_insert_with(Instant::now);
        if since.elapsed() >= HOLD_AT_MOST {
            tokio::task::yield_now().await;
            self.since = Some(Instant::now());
        }
    }

    async fn after_busy_turn(&mut self) {
        match self.since {
            None => self.since = Some(Instant::now()),
            Some(t) if t.elapsed() >= HOLD_AT_MOST => {
                tokio::task::yield_now().await;
                self.since = None;
            }
            Some(_) => {}
        }
    }
}
