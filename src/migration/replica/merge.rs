//! Netsplit merges (docs/replicas.md, "Netsplit merges"). When `global`
//! finds a name registered on both sides of a healed partition and the
//! registration carries the merge method, the pid OTP's default rule
//! would keep is told `merge_from(Loser)`: it calls the loser for its
//! state (`merge_state`: the loser answers and stops), runs its type's
//! `merge_conflict(mine, theirs)` and then makes sure the loser is gone.

use super::messages::Msg;
use crate::migration::runtime::{accept_state, handover_state, Meta};
use crate::migration::Migratable;
use crate::process::Mailbox;
use crate::term::serde::from_term;
use crate::term::{Pid, Term};
use std::time::Duration;

/// How long the winner waits for the loser's state.
const STATE_TIMEOUT: Duration = Duration::from_secs(5);

pub(crate) enum Step {
    /// We won: merge `loser` in.
    Absorb(Pid),
    /// We lost: answer `from` with our state and stop.
    Surrender(Term),
}

/// Whether `msg` is a step of a merge.
pub(crate) fn step(msg: &Term) -> Option<Step> {
    if let Some(Ok(Msg::MergeFrom { loser })) = Msg::parse(msg) {
        return Some(Step::Absorb(loser));
    }
    match msg.as_tuple()? {
        [g, from, req] if g.is_atom("$gen_call") && matches!(Msg::parse(req), Some(Ok(Msg::MergeState))) => Some(Step::Surrender(from.clone())),
        _ => None,
    }
}

/// Runs a merge step; `Some(reason)`: the process stops.
pub(crate) async fn run<M: Migratable>(st: &mut M, mb: &mut Mailbox, meta: &Meta, step: Step) -> Option<Term> {
    match step {
        Step::Surrender(from) => {
            let state = handover_state(st, meta).unwrap_or_else(|e| Term::tuple([Term::atom("error"), e]));
            mb.reply(&from, state);
            tracing::info!(name = %meta.name, "lost a name conflict: state handed to the winner");
            Some(Term::tuple([Term::atom("shutdown"), Term::atom("merged")]))
        }
        Step::Absorb(loser) => {
            if M::MERGES {
                match theirs::<M>(mb, meta, &loser).await {
                    Ok(t) => {
                        st.merge_conflict(t);
                        tracing::info!(name = %meta.name, %loser, "name conflict: merged the other side's state");
                    }
                    Err(e) => tracing::warn!(name = %meta.name, %loser, reason = ?e, "name conflict: the other side's state could not be merged; keeping mine"),
                }
            }
            mb.exit(&loser, Term::atom("kill"));
            None
        }
    }
}

async fn theirs<M: Migratable>(mb: &mut Mailbox, meta: &Meta, loser: &Pid) -> Result<M, Term> {
    let t = mb.call(loser, Msg::MergeState.to_term(), STATE_TIMEOUT).await.map_err(|e| Term::from(e.to_string().as_str()))?;
    let args: M::Args = from_term(meta.args.clone()).map_err(|e| Term::from(e.to_string().as_str()))?;
    M::init_state(args)?.alter_handover_state(accept_state::<M>(t)?)
}
