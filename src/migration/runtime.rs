//! The life of a migratable process: serving, handing itself over as the
//! source, and taking over as the target. Each step is the one in
//! docs/handoff.md; the comments name the guarantee each step keeps.

use super::messages::{Op, Request, HANDED_OVER};
use super::{HandoffConfig, NameRegistry, Phase};
use crate::gen_server::{dispatch, Flow};
use crate::process::signals::down_reason;
use crate::process::{Mailbox, RecvError};
use crate::term::{Atom, Pid, Reference, Term};
use std::sync::Arc;


use super::replica::owner::{Intercepted, Replicator};
use super::replica::placement::ReplicaCtx;
use super::replica::ReplicaConfig;
use super::Migratable;

/// Messages a replicated process handles before it flushes to its
/// replicas (group commit: one round trip for a burst of calls).
const REPLICA_BATCH: usize = 64;

/// What a process needs to hand itself over.
pub(crate) struct Meta {
    pub type_name: &'static str,
    /// The start arguments, in term form, for the target's `init_state`.
    pub args: Term,
    pub name: Atom,
    pub registry: Arc<dyn NameRegistry>,
    pub cfg: HandoffConfig,
    pub hosted: Arc<super::hosted::Hosted>,
    /// Fields of the handed-over state this type does not know, handed
    /// on with the state at the next move.
    pub carried: Vec<(Term, Term)>,
    /// Replicas of this process: the configuration, the node's replica
    /// context, and the sequence number to continue from (a restored
    /// process continues its replica's).
    pub replication: Option<(ReplicaConfig, Arc<ReplicaCtx>, u64)>,
    /// The process's own replica setting (given at its start, or carried
    /// by a failover or a migration), which travels with it to the next
    /// node; `None`: the type's setting on each node applies.
    pub own_replicas: Option<ReplicaConfig>,
    /// Set at a completed handoff: the target, to which this process
    /// forwards what still arrives during retention, after it has let go
    /// of its state ([`serve_with`]).
    pub moved_to: std::sync::Mutex<Option<Pid>>,
}

enum Outcome {
    Migrated(Pid),
    Resumed,
    Stopped(Term),
}

/// A process started fresh: `init_state(args)`, then serve.
pub(crate) async fn run_fresh<M: Migratable>(mb: Mailbox, meta: Meta, args: M::Args) -> Term {
    init_and_serve(mb, meta, M::init_state(args)).await
}

/// `init` on a built state, then serve; a process that never gets to
/// serve leaves the hosted table.
async fn init_and_serve<M: Migratable>(mut mb: Mailbox, meta: Meta, st: Result<M, Term>) -> Term {
    let mut st = match st {
        Ok(s) => s,
        Err(reason) => {
            meta.hosted.remove(&meta.name, mb.pid());
            return reason;
        }
    };
    if let Err(reason) = st.init(&mut mb).await {
        meta.hosted.remove(&meta.name, mb.pid());
        return reason;
    }
    serve(st, &mut mb, meta).await
}

/// A failover: wait until the failover holds the global name for us
/// (an unregistered copy that lost the race is killed before it serves),
/// then start from the replica's state as a target starts from a
/// handover, and serve.
pub(crate) async fn run_restored<M: Migratable>(mut mb: Mailbox, meta: Meta, args: M::Args, state: Term) -> Term {
    let go = mb
        .recv_match(std::time::Duration::from_secs(30), |m| {
            matches!(super::replica::messages::Msg::parse(m), Some(Ok(super::replica::messages::Msg::Go))).then_some(())
        })
        .await;
    if let Err(e) = go {
        meta.hosted.remove(&meta.name, mb.pid());
        tracing::warn!(name = %meta.name, error = %e, "restored process never got the name; stopping");
        return shutdown("not_restored");
    }
    // The name is ours: be the hosted entry. A second restore of the same
    // name on this node (a failover noticed twice) overwrote our entry
    // with its pid, and its exit (killed, it lost) then removed it,
    // leaving this live owner out of the table that placement, drains
    // and replica upkeep read.
    meta.hosted.insert(meta.name.clone(), meta.type_name, mb.pid().clone());
    let restored = M::init_state(args).and_then(|fresh| fresh.alter_handover_state(accept_state::<M>(state)?));
    if let Err(reason) = &restored {
        tracing::error!(name = %meta.name, ?reason, "replica state refused; the process stays down");
    }
    init_and_serve(mb, meta, restored).await
}

/// A target: initialise, wait for the handover, apply it and the queued
/// messages, confirm, then take forwarded messages until the source says
/// the name has switched.
pub(crate) async fn run_target<M: Migratable>(mut mb: Mailbox, mut meta: Meta, args: M::Args, reference: Reference, source: Pid) -> Term {
    let fresh = match M::init_state(args) {
        Ok(s) => s,
        Err(reason) => {
            mb.send(&source, Op::Rejected { reference, reason: reason.clone() }.to_term());
            return reason;
        }
    };
    let handover = mb
        .recv_match(meta.cfg.accept_timeout, |m| match Op::parse(m) {
            Some(Ok(Op::Handover { reference: r, state, queue, .. })) if r == reference => Some((state, queue)),
            _ => None,
        })
        .await;
    let (state, queue) = match handover {
        Ok(h) => h,
        Err(e) => {
            tracing::warn!(name = %meta.name, error = %e, "no handover arrived; target gives up");
            return shutdown("handover_timeout");
        }
    };
    let state = match accept_state::<M>(state) {
        Ok(s) => s,
        Err(reason) => {
            tracing::warn!(name = %meta.name, ?reason, "handover state refused");
            mb.send(&source, Op::Rejected { reference, reason: reason.clone() }.to_term());
            return Term::tuple([Term::atom("shutdown"), Term::tuple([Term::atom("rejected"), reason])]);
        }
    };
    let received = state.clone();
    let mut st = match fresh.alter_handover_state(state) {
        Ok(s) => s,
        Err(reason) => {
            tracing::warn!(name = %meta.name, ?reason, "handover state rejected");
            mb.send(&source, Op::Rejected { reference, reason: reason.clone() }.to_term());
            return Term::tuple([Term::atom("shutdown"), Term::tuple([Term::atom("rejected"), reason])]);
        }
    };
    // Refusing unknown fields must happen before we accept; carrying them
    // (the default) is worked out once `accepted` is on its way, while
    // the source moves the name: it serializes the whole state once more
    // (0.2 ms and more for a 1 MB state).
    if meta.cfg.unknown_fields == super::UnknownFields::Reject {
        let extra = unknown_fields(&st, &received);
        if !extra.is_empty() {
            let keys = Term::List(extra.into_iter().map(|(k, _)| k).collect());
            let reason = Term::tuple([Term::atom("unknown_fields"), keys]);
            tracing::warn!(name = %meta.name, ?reason, "handover state has fields this type does not know; rejected");
            mb.send(&source, Op::Rejected { reference, reason: reason.clone() }.to_term());
            return Term::tuple([Term::atom("shutdown"), Term::tuple([Term::atom("rejected"), reason])]);
        }
    }
    if let Err(reason) = st.init(&mut mb).await {
        mb.send(&source, Op::Rejected { reference, reason: reason.clone() }.to_term());
        return reason;
    }
    // The source's queue comes before anything that reached us directly.
    let me = mb.pid().clone();
    // With Sync replicas, the replies to what we handle before serving
    // (the queue, the forwards) are held: a reply is an acknowledgement,
    // and until the first flush to the replicas (when serving starts,
    // after `switched`) the deposit lives only here, the source's
    // replicas holding the state from before the handoff. The held
    // replies come back to us as messages; the same replicator releases
    // them once the state with them is replicated.
    let mut rep = replicator(&meta);
    let mut stop = None;
    for m in queue {
        if let Flow::Stop(r) = dispatch_held(&mut st, m, &mut mb, rep.as_mut(), &me).await {
            stop = Some(r);
            break;
        }
    }
    // Hosted from the accept on: the source may point the name here and
    // answer the requester before we see `switched`, and a table that
    // lags the name would hide the process from this node's plans and
    // its `hosted` answer. If we die from here on, on_exit removes it.
    meta.hosted.insert(meta.name.clone(), meta.type_name, me.clone());
    mb.send(&source, Op::Accepted { reference: reference.clone(), target: me.clone() }.to_term());
    if meta.cfg.unknown_fields == super::UnknownFields::Carry {
        meta.carried = unknown_fields(&st, &received);
        if !meta.carried.is_empty() {
            tracing::debug!(name = %meta.name, fields = meta.carried.len(), "carrying fields this type does not know");
        }
    }
    drop(received);
    if let Some(r) = stop {
        st.terminate(&r, &mut mb).await;
        return r;
    }
    // Until `switched`, only the source's forwards are applied; messages
    // sent to us directly stay queued (selective receive), which keeps
    // per-sender order across the switch.
    let watch = mb.monitor(&source);
    // Whether the source went away without switching the name to us.
    let orphaned = loop {
        let next = mb
            .recv_match(meta.cfg.switch_timeout, |m| match Op::parse(m) {
                Some(Ok(Op::Fwd { reference: r, msgs })) if r == reference => Some(Ok(msgs)),
                Some(Ok(Op::Switched { reference: r })) if r == reference => Some(Err(None)),
                _ => down_reason(m, &watch).map(|reason| Err(Some(reason.clone()))),
            })
            .await;
        match next {
            Ok(Ok(msgs)) => {
                for m in msgs {
                    if let Flow::Stop(r) = dispatch_held(&mut st, m, &mut mb, rep.as_mut(), &me).await {
                        st.terminate(&r, &mut mb).await;
                        return r;
                    }
                }
            }
            Ok(Err(None)) => {
                mb.demonitor(&watch);
                break false;
            }
            Ok(Err(Some(reason))) => {
                // The source died after we accepted: we own the process.
                tracing::warn!(name = %meta.name, ?reason, "source died before the switch; target takes the name");
                break true;
            }
            Err(RecvError::Timeout) => {
                tracing::warn!(name = %meta.name, "no switch from the source in time; target takes the name");
                mb.demonitor(&watch);
                break true;
            }
            Err(RecvError::Exited(r)) => return r,
        }
    };
    if orphaned {
        if let Err(r) = claim_name(&meta, &mb, &me).await {
            st.terminate(&r, &mut mb).await;
            return r;
        }
    }
    serve_with(st, &mut mb, meta, rep).await
}

/// The replicator of a process with replicas (`None` without).
fn replicator(meta: &Meta) -> Option<Replicator> {
    let (cfg, ctx, seq) = meta.replication.as_ref()?;
    Some(Replicator::new(ctx.clone(), *cfg, meta.type_name, meta.name.clone(), meta.args.clone(), *seq))
}

/// [`dispatch`] through `rep` when there is one: a call's reply held in
/// Sync mode, replica business consumed, as `serve_replicated` does.
async fn dispatch_held<M: Migratable>(st: &mut M, m: Term, mb: &mut Mailbox, rep: Option<&mut Replicator>, me: &Pid) -> Flow {
    let Some(rep) = rep else { return dispatch(st, m, mb).await };
    match rep.intercept(m, me) {
        Intercepted::Consumed => Flow::Continue,
        Intercepted::AckedCast { from, cast } => acked_cast(st, from, cast, mb).await,
        Intercepted::Pass(m) => dispatch(st, m, mb).await,
    }
}

/// An acked cast (`replica::acked_cast`): applied, then answered `ok`
/// (through `from`, which holds the answer in Sync mode).
async fn acked_cast<M: Migratable>(st: &mut M, from: Term, cast: Term, mb: &mut Mailbox) -> Flow {
    let flow = dispatch(st, cast, mb).await;
    if matches!(flow, Flow::Continue) {
        mb.reply(&from, Term::atom("ok"));
    }
    flow
}

/// Takes the name for a target whose source is gone or silent after it
/// accepted. A holder on a node this node cannot reach is stale (its node
/// died, or it is across a partition): the target re-registers over it,
/// and if both sides of a partition do, `global`'s conflict resolution
/// keeps one at the heal. A holder this node can reach is live (the source
/// resumed and took the name back, or the partition healed first): the
/// target gives way and stops (`{shutdown, {name_conflict, Name, Holder}}`,
/// as an Elixir target does), so the process stays single. A refused
/// registration (`global` not done cleaning up, or a holder that appeared
/// meanwhile) is retried for a few seconds.
async fn claim_name(meta: &Meta, mb: &Mailbox, me: &Pid) -> Result<(), Term> {
    const ATTEMPTS: usize = 25;
    let node = mb.node();
    let mut last = String::new();
    for _ in 0..ATTEMPTS {
        let r = match meta.registry.whereis(meta.name.as_str()) {
            Some(p) if &p == me => {
                // This node names us already, but the switch's registration
                // may have been cut short by a partition and reached only
                // some nodes of our side (`global` sends it to each node in
                // turn, and a heal does not repair a disagreement inside one
                // side): registering again tells every node we reach.
                if let Err(e) = meta.registry.re_register(meta.name.as_str(), me).await {
                    tracing::warn!(name = %meta.name, error = %e, "target holds the name here; re-asserting it to the other nodes failed");
                }
                return Ok(());
            }
            Some(p) if p.node == *node.name() || node.connected_nodes().contains(&p.node) => {
                tracing::warn!(name = %meta.name, holder = %p, "a live process holds the name; the target gives way and stops");
                return Err(Term::tuple([Term::atom("shutdown"), Term::tuple([Term::atom("name_conflict"), Term::Atom(meta.name.clone()), Term::Pid(p)])]));
            }
            Some(_) => meta.registry.re_register(meta.name.as_str(), me).await,
            None => meta.registry.register(meta.name.as_str(), me).await,
        };
        match r {
            Ok(()) => return Ok(()),
            Err(e) => last = e,
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    tracing::error!(name = %meta.name, error = %last, "target could not take the name; it stops");
    Err(Term::tuple([Term::atom("shutdown"), Term::tuple([Term::atom("name_unavailable"), Term::Atom(meta.name.clone())])]))
}

fn shutdown(why: &str) -> Term {
    Term::tuple([Term::atom("shutdown"), Term::atom(why)])
}

/// The serving loop, with migration requests handled in place. The
/// process is already in the hosted table: a fresh one from its spawn
/// (the manager's factory), a target from its accept.
async fn serve<M: Migratable>(st: M, mb: &mut Mailbox, meta: Meta) -> Term {
    let rep = replicator(&meta);
    serve_with(st, mb, meta, rep).await
}

/// [`serve`] with the process's replicator (a target's already holds the
/// replies it must release).
async fn serve_with<M: Migratable>(mut st: M, mb: &mut Mailbox, meta: Meta, rep: Option<Replicator>) -> Term {
    let me = mb.pid().clone();
    let reason = match rep {
        None => serve_loop(&mut st, mb, &meta).await,
        Some(mut rep) => {
            let reason = serve_replicated(&mut st, mb, &meta, &mut rep).await;
            rep.finish(mb, is_migrated(&reason));
            reason
        }
    };
    meta.hosted.remove(&meta.name, &me);
    st.terminate(&reason, mb).await;
    // Moved away: the state is the target's now. Dropped before the
    // retention, not after it (5 s by default), so a node that hands off
    // many processes does not hold every state twice meanwhile, and a
    // large state's buffer goes back to the node's receive cache
    // (connection::buffer_cache) for the next one that arrives.
    drop(st);
    let moved_to = meta.moved_to.lock().unwrap().take();
    if let Some(target) = moved_to {
        retain(mb, &meta, &target).await;
    }
    reason
}

async fn serve_loop<M: Migratable>(st: &mut M, mb: &mut Mailbox, meta: &Meta) -> Term {
    // Long turns with messages queued must not keep the replies in the
    // worker's LIFO slot (see `Yielder`).
    let mut yielder = crate::process::Yielder::new();
    loop {
        let Some(msg) = mb.recv().await else { break Term::atom("killed") };
        if let Some(reason) = handle_one(st, mb, meta, msg).await {
            break reason;
        }
        yielder.after_message(mb).await;
    }
}

fn is_migrated(reason: &Term) -> bool {
    matches!(reason.as_tuple(), Some([s, m]) if s.is_atom("shutdown") && matches!(m.as_tuple(), Some([t, _]) if t.is_atom("migrated")))
}

/// The serving loop of a process with replicas: a batch of messages,
/// then a flush to the replicas (which releases the batch's held
/// replies); an idle process flushes on each upkeep tick, which is how
/// its replicas follow joins, leaves and dead replica nodes.
async fn serve_replicated<M: Migratable>(st: &mut M, mb: &mut Mailbox, meta: &Meta, rep: &mut Replicator) -> Term {
    let me = mb.pid().clone();
    if let Err(r) = rep.flush(mb, handover_state(st, meta)).await {
        return r;
    }
    let mut yielder = crate::process::Yielder::new();
    loop {
        // Between batches, once the flush has released their replies.
        yielder.after_message(mb).await;
        let mut next = match mb.recv_timeout(rep.tick()).await {
            Ok(m) => Some(m),
            Err(RecvError::Timeout) => None,
            Err(RecvError::Exited(r)) => return r,
        };
        let mut handled = 0;
        while let Some(msg) = next.take() {
            let stop = match rep.intercept(msg, &me) {
                Intercepted::Consumed => None,
                Intercepted::AckedCast { from, cast } => match acked_cast(st, from, cast, mb).await {
                    Flow::Stop(r) => Some(r),
                    Flow::Continue => None,
                },
                Intercepted::Pass(msg) => {
                    if matches!(Op::parse(&msg), Some(Ok(Op::Begin { .. }))) {
                        // A handoff: replicas current and replies out first.
                        if let Err(r) = rep.flush(mb, handover_state(st, meta)).await {
                            return r;
                        }
                        rep.before_handoff(mb);
                    }
                    handle_one(st, mb, meta, msg).await
                }
            };
            if let Some(r) = stop {
                return r;
            }
            handled += 1;
            // Within a batch too: it can be 64 long turns.
            yielder.after_message(mb).await;
            if handled < REPLICA_BATCH {
                next = mb.recv_timeout(std::time::Duration::ZERO).await.ok();
            }
        }
        if let Err(r) = rep.flush(mb, handover_state(st, meta)).await {
            return r;
        }
    }
}

/// One message of a serving process; `Some(reason)`: it stops.
async fn handle_one<M: Migratable>(st: &mut M, mb: &mut Mailbox, meta: &Meta, msg: Term) -> Option<Term> {
    if let Some(step) = super::replica::merge::step(&msg) {
        return super::replica::merge::run(st, mb, meta, step).await;
    }
    {
        match Op::parse(&msg) {
            None => {
                // `:sys` sees the state's serde form, the same map that
                // travels in a handover.
                let flow = match system_parts(&msg) {
                    Some((from, req)) => crate::sys::handle(&from, req, mb, &mut SerdeSys(&mut *st)).await,
                    None => dispatch(st, msg, mb).await,
                };
                if let Flow::Stop(r) = flow {
                    return Some(r);
                }
            }
            // HotSwap and ColdSwap differ only in the order of a BEAM
            // source's steps; a Rust source does the same for both (see
            // `hand_over`).
            Some(Ok(Op::Begin { reference, target, mode: _, reply_to })) => {
                match hand_over(st, mb, meta, reference, target, reply_to).await {
                    Outcome::Migrated(t) => {
                        return Some(Term::tuple([
                            Term::atom("shutdown"),
                            Term::tuple([Term::atom("migrated"), Term::Atom(t.node.clone())]),
                        ]))
                    }
                    Outcome::Resumed => {}
                    Outcome::Stopped(r) => return Some(r),
                }
            }
            Some(Ok(other)) => tracing::debug!(name = %meta.name, op = ?other, "stale migration message dropped"),
            Some(Err(text)) => tracing::warn!(name = %meta.name, msg = %text, "malformed migration message dropped"),
        }
    }
    None
}

async fn hand_over<M: Migratable>(
    st: &mut M,
    mb: &mut Mailbox,
    meta: &Meta,
    reference: Reference,
    target_node: Atom,
    reply_to: Option<Pid>,
) -> Outcome {
    let report = |mb: &Mailbox, result: Result<Pid, Term>| {
        if let Some(p) = &reply_to {
            mb.send(p, Op::Result { reference: reference.clone(), result }.to_term());
        }
    };
    let me = mb.pid().clone();
    if target_node == me.node {
        report(mb, Err(Term::atom("same_node")));
        return Outcome::Resumed;
    }
    let started = std::time::Instant::now();
    // The state is captured and the queue drained before the target is
    // asked for (the source is paused from `begin` on either way: a Rust
    // source serves nothing while it waits for the start). A small
    // handover then rides with the start request, one round trip less
    // (docs/handoff.md); a large one, or one to a manager that does not
    // take it along, follows as its own message with what queued
    // meanwhile.
    let hs = match handover_state(st, meta) {
        Ok(h) => h,
        Err(e) => {
            report(mb, Err(e));
            return Outcome::Resumed;
        }
    };
    // Protocol messages (a second `begin`) never travel inside Q: they are
    // held and passed on after the switch, or back to us on rollback.
    let (mut queue, mut held) = split_protocol(mb.drain());
    let inline = fits_inline(&hs, &queue).then(|| (hs.clone(), queue.clone()));
    let (target, handed_over) = match start_target(mb, meta, &target_node, &reference, inline).await {
        Ok(t) => t,
        Err(e) => {
            report(mb, Err(e));
            requeue(mb, held);
            return replay(st, mb, queue).await;
        }
    };
    let watch = mb.monitor(&target);
    phase(meta, Phase::TargetStarted).await;
    if !handed_over {
        let (more, more_protocol) = split_protocol(mb.drain());
        queue.extend(more);
        held.extend(more_protocol);
        mb.send(&target, Op::Handover { reference: reference.clone(), state: hs, queue: queue.clone(), source: me.clone() }.to_term());
    }
    phase(meta, Phase::HandoverSent).await;
    let verdict = mb
        .recv_match(meta.cfg.accept_timeout, |m| match Op::parse(m) {
            Some(Ok(Op::Accepted { reference: r, .. })) if r == reference => Some(Ok(())),
            Some(Ok(Op::Rejected { reference: r, reason })) if r == reference => Some(Err(Term::tuple([Term::atom("rejected"), reason]))),
            _ => down_reason(m, &watch).map(|reason| Err(Term::tuple([Term::atom("target_down"), reason.clone()]))),
        })
        .await;
    let failure = match verdict {
        Ok(Ok(())) => {
            phase(meta, Phase::Accepted).await;
            // The target may have died right after confirming: then its
            // work died with it and we resume (docs/handoff.md, failures).
            target_died(mb, &watch).await.map(|r| Term::tuple([Term::atom("target_down"), r]))
        }
        Ok(Err(reason)) => Some(reason),
        Err(RecvError::Timeout) => {
            mb.exit(&target, Term::atom("kill"));
            Some(Term::atom("timeout"))
        }
        Err(RecvError::Exited(r)) => return Outcome::Stopped(r),
    };
    if let Some(reason) = failure {
        mb.demonitor(&watch);
        tracing::warn!(name = %meta.name, target = %target_node, ?reason, "handoff failed; resuming here");
        report(mb, Err(reason));
        requeue(mb, held);
        return replay(st, mb, queue).await;
    }
    // The name moves atomically; when this returns, every message any
    // node addressed to us by name is already in our mailbox.
    if let Err(e) = meta.registry.re_register(meta.name.as_str(), &target).await {
        tracing::warn!(name = %meta.name, error = %e, "could not move the name; resuming here");
        mb.demonitor(&watch);
        mb.exit(&target, Term::atom("kill"));
        report(mb, Err(Term::tuple([Term::atom("register_failed"), Term::from(e.as_str())])));
        requeue(mb, held);
        return replay(st, mb, queue).await;
    }
    if let Some(r) = target_died(mb, &watch).await {
        // It died while the name moved: take the name back and resume.
        tracing::warn!(name = %meta.name, reason = ?r, "target died during the switch; resuming here");
        if let Err(e) = meta.registry.re_register(meta.name.as_str(), &me).await {
            tracing::error!(name = %meta.name, error = %e, "could not take the name back");
        }
        report(mb, Err(Term::tuple([Term::atom("target_down"), r])));
        requeue(mb, held);
        return replay(st, mb, queue).await;
    }
    // Senders that looked the name up just before the switch may still be
    // on their way (a BEAM sender can be suspended between lookup and send
    // while its distribution port is busy): when traffic arrived during the
    // handoff, give them a moment before the final drain (docs/handoff.md).
    if mb.pending() > 0 {
        tokio::time::sleep(meta.cfg.settle).await;
    }
    let (late, late_protocol) = split_protocol(mb.drain());
    held.extend(late_protocol);
    mb.send(&target, Op::Fwd { reference: reference.clone(), msgs: late }.to_term());
    mb.send(&target, Op::Switched { reference: reference.clone() }.to_term());
    for m in held {
        mb.send(&target, m);
    }
    mb.demonitor(&watch);
    tracing::info!(name = %meta.name, to = %target_node, queued = queue.len(), elapsed_us = started.elapsed().as_micros() as u64, "handoff complete");
    meta.hosted.remove(&meta.name, &me);
    report(mb, Ok(target.clone()));
    phase(meta, Phase::Switched).await;
    // Retention follows once the state is dropped (serve_with).
    *meta.moved_to.lock().unwrap() = Some(target.clone());
    Outcome::Migrated(target)
}

/// Retention: late arrivals addressed to our pid go on to the target
/// unchanged (calls keep their From, so the target answers them). A call
/// forwarded just before we exit would race the target's reply against
/// our DOWN at the caller: while forwards keep coming, retention is
/// extended in short steps, up to twice its length.
async fn retain(mb: &mut Mailbox, meta: &Meta, target: &Pid) {
    let start = tokio::time::Instant::now();
    let mut deadline = start + meta.cfg.retention;
    let hard = start + meta.cfg.retention * 2;
    let mut last_forward = None;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        if left.is_zero() {
            let recent = last_forward.map(|t: tokio::time::Instant| t.elapsed() < RETENTION_STEP).unwrap_or(false);
            if recent && deadline < hard {
                deadline += RETENTION_STEP;
                continue;
            }
            break;
        }
        match mb.recv_timeout(left).await {
            Ok(m) => {
                mb.send(target, m);
                last_forward = Some(tokio::time::Instant::now());
            }
            Err(RecvError::Timeout) => {}
            Err(RecvError::Exited(_)) => break,
        }
    }
}

async fn phase(meta: &Meta, p: Phase) {
    if let Some(h) = &meta.cfg.hook {
        (h.0)(p).await;
    }
}

/// True if the target's DOWN is already queued (without waiting).
async fn target_died(mb: &mut Mailbox, watch: &Reference) -> Option<Term> {
    mb.recv_match(std::time::Duration::ZERO, |m| down_reason(m, watch).cloned()).await.ok()
}

const RETENTION_STEP: std::time::Duration = std::time::Duration::from_millis(50);

/// Splits protocol messages worth keeping (`begin`) off a drained queue;
/// stale ones (answers meant for an earlier handoff) are dropped.
fn split_protocol(msgs: Vec<Term>) -> (Vec<Term>, Vec<Term>) {
    let mut user = Vec::with_capacity(msgs.len());
    let mut protocol = vec![];
    for m in msgs {
        if super::replica::owner::is_replica_business(&m) {
            continue;
        }
        match Op::parse(&m) {
            None => user.push(m),
            Some(Ok(Op::Begin { .. })) => protocol.push(m),
            Some(_) => tracing::debug!(msg = ?m, "stale migration message dropped"),
        }
    }
    (user, protocol)
}

/// Held protocol messages go back to our own mailbox after a rollback.
fn requeue(mb: &Mailbox, held: Vec<Term>) {
    let me = mb.pid().clone();
    for m in held {
        mb.send(&me, m);
    }
}

/// Rollback: the queue we handed over is applied here after all, before
/// anything that arrived later (which is still in the mailbox).
async fn replay<M: Migratable>(st: &mut M, mb: &mut Mailbox, queue: Vec<Term>) -> Outcome {
    for m in queue {
        if let Flow::Stop(r) = dispatch(st, m, mb).await {
            return Outcome::Stopped(r);
        }
    }
    Outcome::Resumed
}

/// Handovers go with the start request when what is copied on the way
/// (everything but large binaries, estimated as encoded) is at most this
/// size. A manager of an earlier release ignores one, and the source
/// sends it again: a bounded cost, once per move to such a node.
const INLINE_HANDOVER: usize = 64 * 1024;

/// Large binaries (64 KiB and more) are shared, not copied, on the way
/// (term clones share their bytes; the link sends them from their own
/// buffers), so they count apart, up to this much in all: a 1 MB state
/// held as a `term::Binary` goes with the start request, and travels
/// while the target starts (1 MB handoff p50 0.60-0.66 -> 0.48-0.61 ms).
const INLINE_SHARED: usize = 16 * 1024 * 1024;

/// And at most this many queued messages: the request is copied a few
/// times on its way (a long queue goes in its own message, as before).
const INLINE_QUEUE: usize = 64;

fn fits_inline(state: &Term, queue: &[Term]) -> bool {
    if queue.len() > INLINE_QUEUE {
        return false;
    }
    let (mut copied, mut shared) = (INLINE_HANDOVER, INLINE_SHARED);
    std::iter::once(state).chain(queue).all(|t| t.fits_within_sharing(&mut copied, &mut shared, crate::term::LARGE_BINARY))
}

/// Asks `node`'s manager for a target; `Ok((pid, true))` when it also
/// handed `inline` to the target.
async fn start_target(mb: &mut Mailbox, meta: &Meta, node: &Atom, reference: &Reference, inline: Option<(Term, Vec<Term>)>) -> Result<(Pid, bool), Term> {
    let extra = meta.own_replicas.is_some() || inline.is_some();
    let req = Request::Start {
        type_name: meta.type_name.to_string(),
        args: meta.args.clone(),
        name: meta.name.clone(),
        reference: reference.clone(),
        source: mb.pid().clone(),
        replicas: meta.own_replicas,
        handover: inline,
    };
    let failed = |e: crate::process::CallError| Term::tuple([Term::atom("start_failed"), Term::from(e.to_string().as_str())]);
    let mut reply = mb.call(("erlnode_migration", node.as_str()), req.to_term(), meta.cfg.start_timeout).await.map_err(failed)?;
    // A manager of a release before the eighth element (the process's own
    // replica setting, an inline handover) refuses the request: ask it
    // the old way, so a rolling upgrade can still move such processes
    // (they then take that node's type setting, as they did before).
    if extra && matches!(reply.as_tuple(), Some([e, r]) if e.is_atom("error") && r.is_atom("unknown_request")) {
        let Request::Start { type_name, args, name, reference, source, .. } = req else { unreachable!() };
        let old = Request::Start { type_name, args, name, reference, source, replicas: None, handover: None };
        reply = mb.call(("erlnode_migration", node.as_str()), old.to_term(), meta.cfg.start_timeout).await.map_err(failed)?;
    }
    match reply.as_tuple() {
        Some([ok, Term::Pid(t)]) if ok.is_atom("ok") => Ok((t.clone(), false)),
        Some([ok, Term::Pid(t), h]) if ok.is_atom("ok") && h.is_atom(HANDED_OVER) => Ok((t.clone(), true)),
        Some([e, reason]) if e.is_atom("error") => Err(reason.clone()),
        _ => Err(Term::tuple([Term::atom("bad_start_reply"), reply])),
    }
}

/// `{system, From, Request}`, split.
fn system_parts(msg: &Term) -> Option<(Term, Term)> {
    match msg.as_tuple() {
        Some([tag, from, req]) if tag.is_atom("system") => Some((from.clone(), req.clone())),
        _ => None,
    }
}

/// `:sys` on a migratable process: its state through serde.
struct SerdeSys<'a, M>(&'a mut M);

impl<M: Migratable> crate::sys::SysState for SerdeSys<'_, M> {
    fn sys_get(&self) -> Option<Term> {
        crate::term::serde::to_term(&*self.0).ok()
    }
    fn sys_replace(&mut self, state: Term) -> Result<(), Term> {
        *self.0 = crate::term::serde::from_term::<M>(state).map_err(|e| Term::from(e.to_string().as_str()))?;
        Ok(())
    }
}

/// A received state as this version decodes it: unwrapped, and upgraded
/// when it comes from another version of the type.
pub(crate) fn accept_state<M: Migratable>(t: Term) -> Result<Term, Term> {
    let (version, state) = super::versioned::unwrap(t);
    if version == M::VERSION {
        return Ok(state);
    }
    M::upgrade_state(version, state).map_err(|r| Term::tuple([Term::atom("upgrade_state"), Term::Int(version as i64), r]))
}

/// Fields of `received` that `st` would not hand on.
fn unknown_fields<M: Migratable>(st: &M, received: &Term) -> Vec<(Term, Term)> {
    match st.prepare_handover_state() {
        Ok(known) => super::versioned::unknown_entries(received, &known),
        Err(_) => vec![],
    }
}

/// What the source hands over: the type's handover state with the
/// carried fields put back, tagged with the type's version.
pub(crate) fn handover_state<M: Migratable>(st: &M, meta: &Meta) -> Result<Term, Term> {
    let hs = st.prepare_handover_state()?;
    Ok(super::versioned::wrap(M::VERSION, super::versioned::with_carried(hs, &meta.carried)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(data: Term, extra: Term) -> Term {
        Term::Map(vec![(Term::atom("data"), data), (Term::atom("extra"), extra)])
    }

    /// What is copied on the way is bounded at 64 KiB; large binaries,
    /// shared on the way, at 16 MiB apart; the queue at 64 messages.
    #[test]
    fn a_handover_goes_inline_when_its_copied_part_is_small() {
        let small_list = Term::List((0..100).map(Term::Int).collect());
        assert!(fits_inline(&state(Term::binary(vec![1; 1 << 20]), small_list.clone()), &[]), "1 MiB shared binary");
        assert!(fits_inline(&state(Term::binary(vec![1; 8 << 20]), Term::binary(vec![2; 8 << 20])), &[]), "16 MiB shared in all");
        assert!(!fits_inline(&state(Term::binary(vec![1; 8 << 20]), Term::binary(vec![2; (8 << 20) + 1])), &[]), "over 16 MiB shared");
        // Copied: small binaries and structure.
        assert!(fits_inline(&state(Term::binary(vec![1; 60_000]), Term::nil()), &[]));
        let many_small = Term::List((0..20).map(|_| Term::binary(vec![1; 4000])).collect());
        assert!(!fits_inline(&state(Term::nil(), many_small), &[]), "80 KB of small binaries are copied");
        let long_list = Term::List((0..20_000).map(Term::Int).collect());
        assert!(!fits_inline(&state(Term::nil(), long_list), &[]), "20,000 integers");
        // The queue counts too.
        let q: Vec<Term> = (0..65).map(|_| Term::atom("x")).collect();
        assert!(!fits_inline(&Term::nil(), &q), "65 queued messages");
        assert!(fits_inline(&Term::nil(), &q[..64]));
        let big_q = vec![Term::binary(vec![0; 70_000]); 3];
        assert!(fits_inline(&Term::nil(), &big_q), "queued large binaries are shared too");
        // Deep nesting is walked without recursion.
        let mut deep = Term::nil();
        for _ in 0..100_000 {
            deep = Term::tuple([deep]);
        }
        assert!(!fits_inline(&deep, &[]));
        while let Term::Tuple(mut items) = deep {
            deep = items.pop().unwrap();
        }
    }
}
