//! Subscriptions to membership changes: pg.erl's `scope_monitors`
//! (`monitor_scope/1`) and `group_monitors` (`monitor/2`), OTP 25.1+.
//!
//! A subscriber is either a Rust channel (the [`super::PgSubscription`]
//! API) or a pid that called the scope with `monitor`/`{monitor, Group}`
//! and receives `{Ref, join | leave, Group, Pids}` as on the BEAM. Pid
//! subscribers are monitored and dropped with their DOWN; channel
//! subscribers are dropped when their receiver is.

use super::messages;
use super::table::{key, GroupKey};
use crate::process::Mailbox;
use crate::term::{Pid, Reference, Term};
use std::collections::HashMap;
use tokio::sync::mpsc::UnboundedSender;

/// One membership change, as a monitor sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct PgChange {
    pub action: PgAction,
    pub group: Term,
    pub pids: Vec<Pid>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PgAction {
    Join,
    Leave,
}

pub(crate) enum Sink {
    Chan(UnboundedSender<PgChange>),
    /// A process subscribed by a `$gen_call`; the reference is both its
    /// monitor and the tag of its notifications.
    Pid(Pid),
}

struct Watcher {
    sink: Sink,
    /// `None`: the whole scope.
    group: Option<GroupKey>,
}

#[derive(Default)]
pub(crate) struct Watchers {
    by_ref: HashMap<Reference, Watcher>,
}

impl Watchers {
    pub fn add(&mut self, r: Reference, sink: Sink, group: Option<&Term>) {
        self.by_ref.insert(r, Watcher { sink, group: group.map(key) });
    }

    /// True if `r` was a subscription.
    pub fn remove(&mut self, r: &Reference) -> bool {
        self.by_ref.remove(r).is_some()
    }

    pub fn is_pid_watcher(&self, r: &Reference) -> bool {
        matches!(self.by_ref.get(r), Some(Watcher { sink: Sink::Pid(_), .. }))
    }

    /// `notify_group`: tells every scope subscriber and every subscriber
    /// of `group`. Channels whose receiver is gone are dropped here.
    pub fn notify(&mut self, mb: &Mailbox, join: bool, group: &Term, pids: &[Pid]) {
        if self.by_ref.is_empty() || pids.is_empty() {
            return;
        }
        let k = key(group);
        let action = if join { PgAction::Join } else { PgAction::Leave };
        self.by_ref.retain(|r, w| {
            if w.group.as_ref().is_some_and(|g| *g != k) {
                return true;
            }
            match &w.sink {
                Sink::Chan(tx) => tx.send(PgChange { action, group: group.clone(), pids: pids.to_vec() }).is_ok(),
                Sink::Pid(p) => {
                    mb.send(p, messages::notification(r, join, group, pids));
                    true
                }
            }
        });
    }
}
