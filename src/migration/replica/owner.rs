//! The owner's side: after each batch of messages a replicated process
//! sends its state to its replica nodes and, in `Sync` mode, holds the
//! replies of the batch's calls until every replica has acknowledged a
//! state that includes them.
//!
//! Replies are held without touching the GenServer machinery: a call's
//! `From` is rewritten to `{Self, {'$erlnode_held', From}}`, so the
//! reply the callback sends (at once or later, deferred) comes back to
//! this process, which passes it on to the real caller after the flush.

use super::config::{ReplicaConfig, ReplicaMode, ACK_TIMEOUT, UPKEEP_TICK};
use super::messages::Msg;
use super::placement::ReplicaCtx;
use super::STORE_NAME;
use crate::process::{Mailbox, RecvError};
use crate::term::{Atom, Pid, Reference, Term};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

const HELD: &str = "$erlnode_held";
/// A replica node whose store did not answer is tried again after this.
const RETRY_MISSING: Duration = Duration::from_secs(2);
/// A node whose store refused a delta (no base, or it cannot apply the
/// type's deltas) gets whole states for this long, so a store that can
/// never apply them does not cost every change an extra exchange.
const WHOLE_AFTER_REFUSAL: Duration = Duration::from_secs(30);
/// The same after a delta went unanswered (a store of a release before
/// deltas drops them): whole states for this long.
const WHOLE_AFTER_SILENCE: Duration = Duration::from_secs(60);

struct Holder {
    mon: Reference,
    sent: u64,
    acked: u64,
    /// Its store asked for the whole state (a delta found no base).
    whole: bool,
    /// The last message it was sent was a delta.
    delta_sent: bool,
}

/// What [`Replicator::intercept`] made of a message.
pub(crate) enum Intercepted {
    /// Replica business (an ack, a replica store's DOWN, a held reply).
    Consumed,
    /// An acknowledged cast: dispatch `cast` as a cast, then answer
    /// `from` with `ok` through the held path.
    AckedCast { from: Term, cast: Term },
    /// A user message.
    Pass(Term),
}

pub(crate) struct Replicator {
    ctx: Arc<ReplicaCtx>,
    cfg: ReplicaConfig,
    type_name: &'static str,
    name: Atom,
    args: Term,
    seq: u64,
    last: Option<Term>,
    holders: BTreeMap<Atom, Holder>,
    missing: HashMap<Atom, Instant>,
    /// Nodes sent whole states only, until the time given.
    no_delta: HashMap<Atom, Instant>,
    held: Vec<(Term, Term)>,
}

impl Replicator {
    pub fn new(ctx: Arc<ReplicaCtx>, cfg: ReplicaConfig, type_name: &'static str, name: Atom, args: Term, seq: u64) -> Replicator {
        Replicator { ctx, cfg, type_name, name, args, seq, last: None, holders: BTreeMap::new(), missing: HashMap::new(), no_delta: HashMap::new(), held: vec![] }
    }

    pub fn tick(&self) -> Duration {
        UPKEEP_TICK
    }

    /// Sorts an incoming message; a call's `From` is rewritten so its
    /// reply is held (Sync mode).
    pub fn intercept(&mut self, msg: Term, me: &Pid) -> Intercepted {
        if let Some((from, reply)) = held_reply(&msg) {
            self.held.push((from, reply));
            return Intercepted::Consumed;
        }
        match Msg::parse(&msg) {
            Some(Ok(Msg::Ack { node, seq })) => {
                if let Some(h) = self.holders.get_mut(&node) {
                    h.acked = h.acked.max(seq);
                }
                return Intercepted::Consumed;
            }
            Some(Ok(Msg::NeedWhole { node, .. })) => {
                // Sent whole at the next flush (an upkeep tick at most).
                if let Some(h) = self.holders.get_mut(&node) {
                    h.whole = true;
                    h.sent = h.acked;
                }
                self.no_delta.insert(node, Instant::now() + WHOLE_AFTER_REFUSAL);
                return Intercepted::Consumed;
            }
            Some(Ok(Msg::MergeFrom { .. })) => return Intercepted::Pass(msg),
            Some(other) => {
                tracing::warn!(name = %self.name, msg = ?other, "replica message an owner does not take; dropped");
                return Intercepted::Consumed;
            }
            None => {}
        }
        if let Some(node) = self.down_node(&msg) {
            tracing::info!(name = %self.name, %node, "a replica store went down");
            self.holders.remove(&node);
            self.missing.insert(node, Instant::now());
            return Intercepted::Consumed;
        }
        match msg.as_tuple() {
            // The loser of a merge answers and stops: nothing to hold.
            Some([g, _, req]) if g.is_atom("$gen_call") && matches!(Msg::parse(req), Some(Ok(Msg::MergeState))) => Intercepted::Pass(msg),
            Some([g, from, req]) if g.is_atom("$gen_call") => {
                let from = self.hold_from(from, me);
                match acked_cast(req) {
                    Some(cast) => Intercepted::AckedCast { from, cast },
                    None => Intercepted::Pass(Term::tuple([g.clone(), from, req.clone()])),
                }
            }
            _ => Intercepted::Pass(msg),
        }
    }

    fn hold_from(&self, from: &Term, me: &Pid) -> Term {
        match self.cfg.mode {
            ReplicaMode::Sync => Term::tuple([Term::Pid(me.clone()), Term::tuple([Term::atom(HELD), from.clone()])]),
            ReplicaMode::Async => from.clone(),
        }
    }

    fn down_node(&self, msg: &Term) -> Option<Atom> {
        match msg.as_tuple()? {
            [d, Term::Ref(r), _, _, _] if d.is_atom("DOWN") => self.holders.iter().find(|(_, h)| &h.mon == r).map(|(n, _)| n.clone()),
            _ => None,
        }
    }

    /// Sends `state` to the replica nodes (all of them when it changed,
    /// else only to nodes that lack it), waits as the mode says, then
    /// releases the held replies. `Err(reason)`: the process was killed
    /// while waiting.
    pub async fn flush(&mut self, mb: &mut Mailbox, state: Result<Term, Term>) -> Result<(), Term> {
        while let Ok((from, reply)) = mb.recv_match(Duration::ZERO, held_reply).await {
            self.held.push((from, reply));
        }
        let state = match state {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(name = %self.name, reason = ?e, "state cannot be prepared for the replicas; not replicated");
                self.release(mb);
                return Ok(());
            }
        };
        let me = mb.pid().clone();
        let targets = self.ctx.replica_nodes(self.type_name, &self.name, &me.node, self.cfg.replicas);
        let ready: Vec<Atom> = targets.iter().filter(|n| !self.missing.get(*n).is_some_and(|t| t.elapsed() < RETRY_MISSING)).cloned().collect();
        // The state the replicas were last sent, while this flush may
        // send them only the change from it.
        let prev = if self.last.as_ref() != Some(&state) {
            self.seq += 1;
            self.last.replace(state)
        } else {
            None
        };
        let delta_fns = prev.as_ref().and_then(|_| self.ctx.delta_for(self.type_name));
        let mut delta: Option<Option<Term>> = None;
        // Make before break: current holders keep getting the state until
        // the ring's targets hold it, so a move of the replica (a join, a
        // restarted node) never leaves the process without one.
        let mut write = ready.clone();
        write.extend(self.holders.keys().filter(|h| !ready.contains(h)).cloned());
        for n in write {
            let h = self.holders.entry(n.clone()).or_insert_with(|| Holder { mon: mb.monitor_name(STORE_NAME, n.as_str()), sent: 0, acked: 0, whole: false, delta_sent: false });
            if h.sent >= self.seq {
                continue;
            }
            // A holder sent the previous state gets the change from it,
            // when the type makes one (computed once per flush).
            let deltas_ok = !self.no_delta.get(&n).is_some_and(|until| *until > Instant::now());
            let d = match (&delta_fns, &prev) {
                (Some(f), Some(p)) if h.sent + 1 == self.seq && !h.whole && deltas_ok => {
                    delta.get_or_insert_with(|| f.make(p, self.last.as_ref().expect("set above"))).clone()
                }
                _ => None,
            };
            h.sent = self.seq;
            h.whole = false;
            h.delta_sent = d.is_some();
            let msg = match d {
                Some(delta) => Msg::Delta { name: self.name.clone(), base: self.seq - 1, seq: self.seq, delta, owner: me.clone(), ack_to: Some(me.clone()) },
                None => self.put(&me),
            };
            mb.send_to(&crate::process::Dest::local(STORE_NAME, n.as_str()), msg.to_term());
        }
        let r = self.await_acks(mb).await;
        let placed = !ready.is_empty() && ready.iter().all(|n| self.holders.get(n).is_some_and(|h| h.acked >= self.seq));
        if placed || targets.is_empty() {
            self.forget_except(mb, &ready, &me);
        }
        self.release(mb);
        r
    }

    /// The whole latest state, for a store that lacks a base for deltas.
    fn put(&self, me: &Pid) -> Msg {
        Msg::Put {
            name: self.name.clone(),
            type_name: self.type_name.to_string(),
            args: self.args.clone(),
            seq: self.seq,
            state: self.last.clone().unwrap_or_else(Term::nil),
            owner: me.clone(),
            cfg: self.cfg,
            ack_to: Some(me.clone()),
        }
    }

    /// Waits until no replica lags more than the mode allows; a replica
    /// that does not answer in time is dropped (and sent the whole state
    /// again later).
    async fn await_acks(&mut self, mb: &mut Mailbox) -> Result<(), Term> {
        let lag = self.cfg.mode.max_lag();
        let deadline = tokio::time::Instant::now() + ACK_TIMEOUT;
        loop {
            let behind: Vec<Atom> = self.holders.iter().filter(|(_, h)| self.seq - h.acked.min(self.seq) > lag).map(|(n, _)| n.clone()).collect();
            if behind.is_empty() {
                return Ok(());
            }
            let mons: HashMap<Reference, Atom> = self.holders.iter().map(|(n, h)| (h.mon.clone(), n.clone())).collect();
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let got = mb
                .recv_match(left.max(Duration::from_millis(1)), |m| match Msg::parse(m) {
                    Some(Ok(Msg::Ack { node, seq })) => Some((node, Got::Ack(seq))),
                    Some(Ok(Msg::NeedWhole { node, .. })) => Some((node, Got::NeedWhole)),
                    _ => match m.as_tuple() {
                        Some([d, Term::Ref(r), _, _, _]) if d.is_atom("DOWN") => mons.get(r).map(|n| (n.clone(), Got::Down)),
                        _ => None,
                    },
                })
                .await;
            match got {
                Ok((node, Got::Ack(seq))) => {
                    if let Some(h) = self.holders.get_mut(&node) {
                        h.acked = h.acked.max(seq);
                    }
                }
                Ok((node, Got::NeedWhole)) => {
                    if let Some(h) = self.holders.get_mut(&node) {
                        h.delta_sent = false;
                        let me = mb.pid().clone();
                        mb.send_to(&crate::process::Dest::local(STORE_NAME, node.as_str()), self.put(&me).to_term());
                    }
                    self.no_delta.insert(node, Instant::now() + WHOLE_AFTER_REFUSAL);
                }
                Ok((node, Got::Down)) => {
                    tracing::info!(name = %self.name, %node, "replica store down while waiting for its ack");
                    self.holders.remove(&node);
                    self.missing.insert(node, Instant::now());
                }
                Err(RecvError::Timeout) => {
                    for n in behind {
                        tracing::warn!(name = %self.name, node = %n, "no ack from the replica in time; it gets the whole state later");
                        if let Some(h) = self.holders.remove(&n) {
                            mb.demonitor(&h.mon);
                            if h.delta_sent {
                                self.no_delta.insert(n.clone(), Instant::now() + WHOLE_AFTER_SILENCE);
                            }
                        }
                        self.missing.insert(n, Instant::now());
                    }
                    return Ok(());
                }
                Err(RecvError::Exited(r)) => return Err(r),
            }
        }
    }

    fn release(&mut self, mb: &Mailbox) {
        for (from, reply) in self.held.drain(..) {
            mb.reply(&from, reply);
        }
    }

    /// Replica nodes no longer in `keep` forget this process.
    fn forget_except(&mut self, mb: &mut Mailbox, keep: &[Atom], me: &Pid) {
        let gone: Vec<Atom> = self.holders.keys().filter(|n| !keep.contains(n)).cloned().collect();
        for n in gone {
            if let Some(h) = self.holders.remove(&n) {
                mb.demonitor(&h.mon);
                let drop = Msg::Drop { name: self.name.clone(), owner: me.clone() };
                mb.send_to(&crate::process::Dest::local(STORE_NAME, n.as_str()), drop.to_term());
            }
        }
    }

    /// The process ends: replies still held go out (the state they saw
    /// is the last one), monitors stop, and unless it moved to another
    /// node (whose owner takes over the replicas) the replicas forget it.
    pub fn finish(&mut self, mb: &mut Mailbox, migrated: bool) {
        self.release(mb);
        let me = mb.pid().clone();
        if migrated {
            for (_, h) in std::mem::take(&mut self.holders) {
                mb.demonitor(&h.mon);
            }
        } else {
            self.forget_except(mb, &[], &me);
        }
    }

    /// Before a handoff: nothing of ours may travel in the handed-over
    /// queue, and replies wait no longer.
    pub fn before_handoff(&mut self, mb: &mut Mailbox) {
        self.finish(mb, true);
    }
}

/// What a store answered while the owner waits for acks.
enum Got {
    Ack(u64),
    NeedWhole,
    Down,
}

/// `{{'$erlnode_held', From}, Reply}` -> `(From, Reply)`.
fn held_reply(m: &Term) -> Option<(Term, Term)> {
    match m.as_tuple()? {
        [tag, reply] => match tag.as_tuple()? {
            [h, from] if h.is_atom(HELD) => Some((from.clone(), reply.clone())),
            _ => None,
        },
        _ => None,
    }
}

/// The request of an acknowledged cast, `{'$erlnode_replica', 1, cast, Msg}`.
fn acked_cast(req: &Term) -> Option<Term> {
    match req.as_tuple()? {
        [t, Term::Int(1), op, msg] if t.is_atom(super::messages::TAG) && op.is_atom("cast") => Some(Term::tuple([Term::atom("$gen_cast"), msg.clone()])),
        _ => None,
    }
}

/// Whether a message drained for a handoff is replica business that
/// must not travel to the target.
pub(crate) fn is_replica_business(m: &Term) -> bool {
    held_reply(m).is_some() || Msg::parse(m).is_some()
}
