//! A hub child that is a Rust state machine: the process the Rust member
//! starts for `%{id: cid, start: {MyApp.Counter, :start_link, [args]}}`.
//!
//! It serves the [`Migratable`] type as a GenServer (calls, casts, sends
//! and `:sys` from any node) and speaks the child's side of ProcessHub's
//! HotSwap handover, as `use ProcessHub.Strategy.Migration.HotSwap` does
//! on Elixir children:
//!
//! - `{:process_hub, :handover, cid, {state, opts}}`: adopt a state
//!   (`alter_handover_state`); a state that does not decode is logged and
//!   the child keeps its own (it never crashes on it). A
//!   `confirm_handover` that names the child itself is not sent (ProcessHub
//!   0.4.1 makes such children crash on their own confirmation).
//! - `{:process_hub, :send_handover_state, to, cid, opts}`: send the
//!   prepared state to `to`, then `retention_handled` to the
//!   `retention_receiver`, and keep serving (an Elixir handler asked).
//!
//! The member drives moves away from this node through a private control
//! channel ([`ChildCtl`]), never through the wire: that is where the Rust
//! side does better than ProcessHub. The child itself sends the handover
//! and then forwards, in order, every message still queued and every
//! message that arrives during retention to the new process, so nothing
//! sent to the old pid is lost (ProcessHub forwards none).

use super::messages::{HubMessage, Keyword};
use super::Dialect;
use crate::gen_server::{dispatch, Flow};
use crate::migration::replica::owner::{Intercepted, Replicator};
use crate::migration::Migratable;
use crate::process::Mailbox;
use crate::term::serde::{from_term, to_term};
use crate::term::{Pid, Term};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// What the member asks of one of its children.
pub(crate) enum ChildCtl {
    /// Hand over to `to` now: send it `{:process_hub, :handover, cid,
    /// {state, opts}}`, then forward (see [`ChildCtl::Forward`]). Answers
    /// `Err` (and keeps serving) when the state cannot be prepared.
    HandOver { to: Pid, opts: Keyword, retention: Duration, reply: oneshot::Sender<Result<(), Term>> },
    /// Graceful leave, step one: answer the prepared state and stop
    /// handling messages (they are kept, in order, for the new process).
    Freeze { reply: oneshot::Sender<Result<Term, Term>> },
    /// Graceful leave, step two: the new process is `to`; forward the
    /// kept and later messages to it for `retention`, then exit.
    Forward { to: Pid, retention: Duration },
    /// Stop (`stop_children`, or the node leaves with nowhere to go).
    Stop,
    /// Adopt a state handed over outside ProcessHub's messages (a Horde
    /// supervisor's handoff), written by a node running `from_version`
    /// of the type; before any message is handled.
    Adopt { from_version: u32, state: Term },
}

/// Everything a child needs besides its state.
pub(crate) struct ChildEnv {
    pub cid: Term,
    pub dialect: Dialect,
    pub ctl: mpsc::UnboundedReceiver<ChildCtl>,
    /// Replicas of its state (a Horde child of a replicated type,
    /// docs/replicas.md "Processes Horde or ProcessHub places").
    pub replica: Option<Replicator>,
}

/// The exit reason of a child that moved away (the member ignores its
/// DOWN; any other exit of a hosted child is a crash it restarts).
pub(crate) fn migrated_reason() -> Term {
    Term::tuple([Term::atom("shutdown"), Term::atom("process_hub_migrated")])
}

/// Runs a child: `init`, then serve until stopped, crashed or moved.
pub(crate) async fn run<M: Migratable>(mut mb: Mailbox, mut st: M, mut env: ChildEnv, started: oneshot::Sender<Result<(), Term>>) -> Term {
    if let Err(reason) = st.init(&mut mb).await {
        let _ = started.send(Err(reason.clone()));
        return reason;
    }
    // A state the starter had before the child existed (a replica's,
    // fetched after its node died) is its state before any message and
    // before its replicas first hear of it.
    while let Ok(ChildCtl::Adopt { from_version, state }) = env.ctl.try_recv() {
        adopt_versioned(&mut st, &mb, &env, from_version, state);
    }
    let _ = started.send(Ok(()));
    let mut rep = env.replica.take();
    let me = mb.pid().clone();
    if let Some(r) = rep.as_mut() {
        if let Err(reason) = r.flush(&mut mb, replica_state(&st)).await {
            return reason;
        }
    }
    // At the top of the loop, not inside the select (see `Yielder`).
    let mut yielder = crate::process::Yielder::new();
    let reason = loop {
        yielder.after_message(&mb).await;
        tokio::select! {
            biased;
            c = env.ctl.recv() => match c {
                None | Some(ChildCtl::Stop) => break Term::atom("shutdown"),
                Some(ChildCtl::HandOver { to, opts, retention, reply }) => match prepared::<M>(&st) {
                    Ok(state) => {
                        if rep.is_some() {
                            let last = replica_state(&st);
                            if let Err(r) = leave_replicas(&mut rep, &mut mb, last).await {
                                break r;
                            }
                        }
                        let h = HubMessage::Handover { child_id: env.cid.clone(), state, opts };
                        send_built(&mb, &to, env.dialect, &h);
                        let _ = reply.send(Ok(()));
                        forward(&mut mb, &to, retention, Vec::new()).await;
                        break migrated_reason();
                    }
                    Err(e) => {
                        tracing::error!(cid = ?env.cid, error = ?e, "prepare_handover_state failed: the child stays here");
                        let _ = reply.send(Err(e));
                    }
                },
                Some(ChildCtl::Freeze { reply }) => {
                    let state = prepared::<M>(&st);
                    let ok = state.is_ok();
                    if ok && rep.is_some() {
                        let last = replica_state(&st);
                        if let Err(r) = leave_replicas(&mut rep, &mut mb, last).await {
                            break r;
                        }
                    }
                    let _ = reply.send(state);
                    if ok {
                        match frozen(&mut mb, &mut env).await {
                            Some((to, retention, kept)) => {
                                forward(&mut mb, &to, retention, kept).await;
                                break migrated_reason();
                            }
                            None => break Term::atom("shutdown"),
                        }
                    }
                }
                Some(ChildCtl::Forward { .. }) => tracing::warn!(cid = ?env.cid, "forward without freeze ignored"),
                Some(ChildCtl::Adopt { from_version, state }) => {
                    adopt_versioned(&mut st, &mb, &env, from_version, state);
                    if let Some(r) = rep.as_mut() {
                        if let Err(reason) = r.flush(&mut mb, replica_state(&st)).await {
                            break reason;
                        }
                    }
                }
            },
            _ = tick(&rep) => {
                let r = rep.as_mut().expect("ticks only with replicas");
                if let Err(reason) = r.flush(&mut mb, replica_state(&st)).await {
                    break reason;
                }
            }
            m = mb.recv() => {
                let Some(msg) = m else { break Term::atom("killed") };
                let msg = match rep.as_mut() {
                    None => msg,
                    Some(r) => match r.intercept(msg, &me) {
                        Intercepted::Consumed => continue,
                        Intercepted::Pass(msg) => msg,
                        Intercepted::AckedCast { from, cast } => {
                            if let Flow::Stop(reason) = dispatch(&mut st, cast, &mut mb).await {
                                break reason;
                            }
                            mb.reply(&from, Term::atom("ok"));
                            if let Err(reason) = r.flush(&mut mb, replica_state(&st)).await {
                                break reason;
                            }
                            continue;
                        }
                    },
                };
                match env.dialect.parse(&msg) {
                    Ok(HubMessage::Handover { state, opts, .. }) => adopt(&mut st, &mb, &env, state, &opts),
                    Ok(HubMessage::SendHandoverState { receiver, child_id, opts }) => match prepared::<M>(&st) {
                        Ok(state) => {
                            let retention = opts.get("retention_receiver").and_then(|t| t.as_pid()).cloned();
                            send_built(&mb, &receiver, env.dialect, &HubMessage::Handover { child_id: child_id.clone(), state, opts });
                            if let Some(r) = retention {
                                send_built(&mb, &r, env.dialect, &HubMessage::RetentionHandled { child_id });
                            }
                        }
                        Err(e) => tracing::error!(cid = ?env.cid, error = ?e, "prepare_handover_state failed; no state sent"),
                    },
                    Ok(HubMessage::HandoverConfirmed { .. }) => {}
                    _ => {
                        if let Flow::Stop(r) = dispatch(&mut st, msg, &mut mb).await {
                            break r;
                        }
                    }
                }
                if let Some(r) = rep.as_mut() {
                    if let Err(reason) = r.flush(&mut mb, replica_state(&st)).await {
                        break reason;
                    }
                }
            }
        }
    };
    if let Some(mut r) = rep {
        // Replies still held go out; the replicas of a child that ends
        // here are forgotten (a moved child's replacement replicates).
        r.finish(&mut mb, false);
    }
    st.terminate(&reason, &mut mb).await;
    reason
}

/// The state a child's replicas keep: what a handover carries, with
/// its version.
fn replica_state<M: Migratable>(st: &M) -> Result<Term, Term> {
    Ok(crate::migration::versioned::wrap(
        M::VERSION,
        st.prepare_handover_state()?,
    ))
}

/// The upkeep tick of a child with replicas; never, without.
async fn tick(rep: &Option<Replicator>) {
    match rep {
        Some(r) => tokio::time::sleep(r.tick()).await,
        None => std::future::pending().await,
    }
}

/// Before the child moves away: held replies out (the replicas hold
/// what they saw), then the replicas are forgotten; the replacement
/// gets the state by the handover and replicates it itself.
async fn leave_replicas(
    rep: &mut Option<Replicator>,
    mb: &mut Mailbox,
    state: Result<Term, Term>,
) -> Result<(), Term> {
    if let Some(mut r) = rep.take() {
        r.flush(mb, state).await?;
        r.finish(mb, false);
    }
    Ok(())
}

/// Adopts a state written by `from_version` of the type (a Horde
/// handoff, or a replica), upgrading it first.
fn adopt_versioned<M: Migratable>(
    st: &mut M,
    mb: &Mailbox,
    env: &ChildEnv,
    from_version: u32,
    state: Term,
) {
    let upgraded = if from_version == M::VERSION {
        Ok(state)
    } else {
        M::upgrade_state(from_version, state)
    };
    match upgraded {
        Ok(state) => adopt(st, mb, env, state, &Keyword::new()),
        Err(reason) => {
            tracing::error!(cid = ?env.cid, type_name = M::TYPE, from_version, reason = ?reason,
            "handed-over state of another version not upgraded: the child keeps its own state")
        }
    }
}

/// `prepare_handover_state`, as the term that crosses.
fn prepared<M: Migratable>(st: &M) -> Result<Term, Term> {
    st.prepare_handover_state()
}

/// Applies a handed-over state. `alter_handover_state` consumes the
/// state, so the current one is kept in its serde form and restored when
/// the handed-over one is rejected.
fn adopt<M: Migratable>(st: &mut M, mb: &Mailbox, env: &ChildEnv, handover: Term, opts: &Keyword) {
    let Ok(saved) = to_term(&*st) else {
        tracing::error!(cid = ?env.cid, "the current state does not serialize; handover rejected");
        return;
    };
    let current = match from_term::<M>(saved.clone()) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(cid = ?env.cid, error = %e, "the current state does not round-trip; handover rejected");
            return;
        }
    };
    match current.alter_handover_state(handover) {
        Ok(new) => {
            *st = new;
            tracing::debug!(cid = ?env.cid, "handed-over state adopted");
            if opts.flag("confirm_handover") {
                match opts.get("confirmation_receiver").and_then(|t| t.as_pid()) {
                    Some(r) if r != mb.pid() => send_built(mb, r, env.dialect, &HubMessage::HandoverConfirmed { child_id: env.cid.clone() }),
                    _ => {}
                }
            }
        }
        Err(reason) => {
            tracing::error!(cid = ?env.cid, type_name = M::TYPE, reason = ?reason,
                "handed-over state rejected (does not decode into the Rust type): the child keeps running here with its own state");
            if let Ok(restored) = from_term::<M>(saved) {
                *st = restored;
            }
        }
    }
}

/// Frozen after a snapshot: keep every message until told where to.
async fn frozen(mb: &mut Mailbox, env: &mut ChildEnv) -> Option<(Pid, Duration, Vec<Term>)> {
    let mut kept = Vec::new();
    loop {
        tokio::select! {
            biased;
            c = env.ctl.recv() => match c {
                Some(ChildCtl::Forward { to, retention }) => return Some((to, retention, kept)),
                Some(ChildCtl::HandOver { reply, .. }) => { let _ = reply.send(Err(Term::atom("frozen"))); }
                Some(ChildCtl::Freeze { reply }) => { let _ = reply.send(Err(Term::atom("frozen"))); }
                Some(ChildCtl::Adopt { .. }) => tracing::warn!(cid = ?env.cid, "adopt while frozen ignored"),
                None | Some(ChildCtl::Stop) => return None,
            },
            m = mb.recv() => match m {
                Some(m) => kept.push(m),
                None => return None,
            },
        }
    }
}

/// Forwards `kept`, then the queue, then whatever arrives within
/// `retention`, to `to`, in order, from this pid.
async fn forward(mb: &mut Mailbox, to: &Pid, retention: Duration, kept: Vec<Term>) {
    let mut n = kept.len();
    for m in kept {
        mb.send(to, m);
    }
    for m in mb.drain() {
        n += 1;
        mb.send(to, m);
    }
    let deadline = tokio::time::Instant::now() + retention;
    while let Ok(Some(m)) = tokio::time::timeout_at(deadline, mb.recv()).await {
        n += 1;
        mb.send(to, m);
    }
    tracing::debug!(%to, forwarded = n, "retention over");
}

fn send_built(mb: &Mailbox, to: &Pid, dialect: Dialect, msg: &HubMessage) {
    match dialect.build(msg) {
        Ok(t) => mb.send(to, t),
        Err(e) => tracing::error!(error = %e, "cannot express a handover message in this dialect"),
    }
}
