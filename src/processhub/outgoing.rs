//! Children leaving this node for a member that joined (HotSwap, as a
//! ProcessHub host does it, started by the host):
//!
//! 1. a handler process sends the target's coordinator
//!    `{:migration_add_event, {[child + migration_add, reply_to], opts}}`
//!    and waits for `{:collect_start_results, ...}`;
//! 2. each old child sends `{:process_hub, :handover, cid, {state, opts}}`
//!    to its new pid, then forwards its queue and what arrives during
//!    retention (ProcessHub forwards nothing);
//! 3. the coordinator broadcasts the unregistration from this node.
//!
//! Where ProcessHub loses the move for good (the target's handlers are not
//! in the `migration_add_event` group yet: the join race), the handler
//! waits for them, up to `HubConfig::visibility_timeout`, then reports the
//! move failed; the child keeps running here.

use super::child::ChildCtl;
use super::member::{Internal, Member};
use super::messages::{ChildStart, HubEvent, HubMessage, Keyword, StartOutcome};
use super::registry::key;
use super::Dialect;
use crate::pg::PgScope;
use crate::process::Mailbox;
use crate::term::{Atom, Pid, Term};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// One child to move, with the control channel of its current process.
struct Leaver {
    start: ChildStart,
    ctl: mpsc::UnboundedSender<ChildCtl>,
}

struct Handler {
    mb: Mailbox,
    scope: PgScope,
    dialect: Dialect,
    hub: Atom,
    target: Atom,
    migration_timeout: Duration,
    visibility_timeout: Duration,
    retention: Duration,
}

impl Member {
    /// The local children the ring now gives to `n` move there. `true`
    /// when the moves go on in a handler task (HotSwap), which reports
    /// with [`Internal::Moved`]; `false` when they are done (ColdSwap
    /// stops and unregisters at once) or there were none.
    pub fn rebalance_to(&mut self, n: &Atom) -> bool {
        let ring = self.ring(None);
        let mut leavers = Vec::new();
        for (k, c) in &self.local {
            if self.moving.contains(k) || ring.owner(&c.cid).as_ref() != Some(n) {
                continue;
            }
            let start = ChildStart {
                child_id: c.cid.clone(),
                child_spec: c.spec.clone(),
                hub_id: self.hub.clone(),
                metadata: c.meta.clone(),
                nodes: vec![n.clone()],
                migration_add: Some(true),
                reply_to: None,
                extra: vec![],
            };
            leavers.push((k.clone(), Leaver { start, ctl: c.ctl.clone() }));
        }
        if leavers.is_empty() {
            return false;
        }
        tracing::info!(hub = %self.hub, target = %n, children = leavers.len(), "moving children to a new member");
        let leavers: Vec<Leaver> = leavers
            .into_iter()
            .map(|(k, l)| {
                self.moving.insert(k);
                l
            })
            .collect();
        if !self.cfg.handover {
            self.cold_move(n, leavers);
            return false;
        }
        let h = Handler {
            mb: self.node.spawn_mailbox(),
            scope: self.scope.clone(),
            dialect: self.dialect,
            hub: self.hub.clone(),
            target: n.clone(),
            migration_timeout: self.cfg.migration_timeout,
            visibility_timeout: self.cfg.visibility_timeout,
            retention: self.cfg.retention,
        };
        let tx = self.internal_tx.clone();
        tokio::spawn(async move {
            let target = h.target.clone();
            let (moved, failed) = h.run(leavers).await;
            let _ = tx.send(Internal::Moved { target, moved, failed });
        });
        true
    }

    /// ColdSwap, as ProcessHub 0.4.1 does it: stop here and unregister
    /// first, then ask the target to start the children (no `reply_to`,
    /// no state). The request waits for the target's handler to be
    /// visible, where ProcessHub loses the children.
    fn cold_move(&mut self, n: &Atom, leavers: Vec<Leaver>) {
        let mut gone = vec![];
        let mut children = vec![];
        for l in leavers {
            let k = key(&l.start.child_id);
            if let Some(c) = self.local.remove(&k) {
                self.mb.demonitor(&c.monitor);
            }
            self.moving.remove(&k);
            let _ = l.ctl.send(ChildCtl::Stop);
            self.view.write().unwrap().registry.remove_on(&l.start.child_id, &self.me);
            gone.push(l.start.child_id.clone());
            children.push(l.start);
        }
        self.publish_local();
        self.unregistered(gone.clone(), Keyword::new());
        self.notify(super::HubNotice::ChildrenMigrated { target: n.clone(), children: gone.clone() });
        let mut opts = Keyword::new();
        opts.push("migration_add", Term::atom("true"));
        let Some(request) = self.build(&HubMessage::MigrationAdd { children, opts }) else { return };
        let (scope, target, mb, wait) = (self.scope.clone(), n.clone(), self.node.spawn_mailbox(), self.cfg.visibility_timeout);
        let hub = self.hub.clone();
        tokio::spawn(async move {
            match visible_handlers(&scope, &target, wait).await {
                Some(hs) => hs.iter().for_each(|h| mb.send(h, request.clone())),
                None => tracing::error!(%hub, %target, children = ?gone, "the target's handler never became visible: these children were stopped and not started anywhere"),
            }
        });
    }

    /// A handler's report: moved children are gone from here.
    pub fn moved(&mut self, target: Atom, moved: Vec<(Term, Pid)>, failed: Vec<(Term, Term)>) {
        let mut gone = Vec::with_capacity(moved.len());
        for (cid, new_pid) in moved {
            let k = key(&cid);
            self.moving.remove(&k);
            if let Some(c) = self.local.remove(&k) {
                self.mb.demonitor(&c.monitor);
            }
            // The target's registration broadcast brings the new entry.
            self.view.write().unwrap().registry.remove_on(&cid, &self.me);
            tracing::debug!(hub = %self.hub, ?cid, %new_pid, "child moved");
            gone.push(cid);
        }
        for (cid, reason) in &failed {
            self.moving.remove(&key(cid));
            tracing::error!(hub = %self.hub, %target, ?cid, ?reason, "child migration failed; it keeps running here");
        }
        self.publish_local();
        tracing::info!(hub = %self.hub, %target, moved = gone.len(), failed = failed.len(), "migration to a new member done");
        if !gone.is_empty() {
            self.notify(super::HubNotice::ChildrenMigrated { target: target.clone(), children: gone.clone() });
        }
        if !failed.is_empty() {
            self.notify(super::HubNotice::MigrationFailed { target: target.clone(), children: failed });
        }
        self.unregistered(gone, Keyword::new());
        // The joiner's list of what stays here, after the unregistration
        // (node_up says why).
        if self.sync_after_moves.remove(&target) {
            self.sync_children_to(&target);
        }
    }
}

/// The target's coordinators in the `migration_add_event` group, once
/// there are any (`None` after `wait`): ProcessHub sends to nobody when
/// the joiner's handler is not visible yet and loses the move.
async fn visible_handlers(scope: &PgScope, target: &Atom, wait: Duration) -> Option<Vec<Pid>> {
    let group = Term::atom(HubEvent::MigrationAdd.atom_name());
    let t0 = tokio::time::Instant::now();
    loop {
        let hs: Vec<Pid> = scope.get_members(&group).into_iter().filter(|p| &p.node == target).collect();
        if !hs.is_empty() {
            if t0.elapsed() > Duration::from_millis(1) {
                tracing::info!(target_node = %target, waited = ?t0.elapsed(), "the target's migration handler became visible; migrating (ProcessHub would have lost this move)");
            }
            return Some(hs);
        }
        if t0.elapsed() >= wait {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

impl Handler {
    async fn run(mut self, leavers: Vec<Leaver>) -> (Vec<(Term, Pid)>, Vec<(Term, Term)>) {
        let me = self.mb.pid().clone();
        let reply_to = Term::list([Term::Pid(me.clone())]);
        let children: Vec<ChildStart> = leavers
            .iter()
            .map(|l| ChildStart { reply_to: Some(vec![me.clone()]), ..l.start.clone() })
            .collect();
        let mut opts = Keyword::new();
        opts.push("migration_add", Term::atom("true"));
        opts.push("reply_to", reply_to);
        let fail_all = |reason: Term| (vec![], leavers.iter().map(|l| (l.start.child_id.clone(), reason.clone())).collect());
        let Ok(request) = self.dialect.build(&HubMessage::MigrationAdd { children, opts }) else {
            return fail_all(Term::atom("not_in_dialect"));
        };
        // Better than ProcessHub: wait until the target's handler is visible.
        let Some(handlers) = visible_handlers(&self.scope, &self.target, self.visibility_timeout).await else {
            return fail_all(Term::atom("target_not_visible"));
        };
        for h in &handlers {
            self.mb.send(h, request.clone());
        }
        let (dialect, target) = (self.dialect, self.target.clone());
        let results = self
            .mb
            .recv_match(self.migration_timeout, |m| match dialect.parse(m) {
                Ok(HubMessage::CollectStartResults { results, node }) if node == target => Some(results),
                _ => None,
            })
            .await;
        let Ok(results) = results else { return fail_all(Term::atom("node_receive_timeout")) };
        let (mut moved, mut failed) = (vec![], vec![]);
        for l in leavers {
            let cid = l.start.child_id.clone();
            let new_pid = results.iter().find(|(c, _)| *c == cid).and_then(|(_, r)| match r {
                StartOutcome::Ok(p) => Some(p.clone()),
                StartOutcome::Error(e) => match e.as_tuple() {
                    Some([tag, Term::Pid(p)]) if tag.is_atom("already_started") => Some(p.clone()),
                    _ => None,
                },
                StartOutcome::Other(_) => None,
            });
            let Some(new_pid) = new_pid else {
                failed.push((cid, Term::atom("target_did_not_start_it")));
                continue;
            };
            match self.hand_over(&l, &me, &new_pid).await {
                Ok(()) => moved.push((cid, new_pid)),
                Err(reason) => {
                    self.stop_remote(&cid);
                    failed.push((cid, reason));
                }
            }
        }
        (moved, failed)
    }

    /// Step 2: the old child sends its state and forwards its messages.
    async fn hand_over(&self, l: &Leaver, me: &Pid, new_pid: &Pid) -> Result<(), Term> {
        let mut opts = Keyword::new();
        opts.push("retention_receiver", Term::Pid(me.clone()));
        opts.push("confirmation_receiver", Term::atom("nil"));
        opts.push("confirm_handover", Term::atom("false"));
        opts.push("hub_id", Term::Atom(self.hub.clone()));
        let (tx, rx) = oneshot::channel();
        l.ctl
            .send(ChildCtl::HandOver { to: new_pid.clone(), opts, retention: self.retention, reply: tx })
            .map_err(|_| Term::atom("child_gone"))?;
        match tokio::time::timeout(self.migration_timeout, rx).await {
            Ok(Ok(r)) => r,
            _ => Err(Term::atom("child_gone")),
        }
    }

    /// The state did not leave: the copy started on the target goes, so
    /// that the child does not run twice.
    fn stop_remote(&self, cid: &Term) {
        let stop = HubMessage::StopChildren {
            children: vec![super::messages::ChildStop { child_id: cid.clone(), nodes: vec![self.target.clone()], extra: vec![] }],
            opts: Keyword::new(),
        };
        if let Ok(t) = self.dialect.build(&stop) {
            self.mb.send_to(&crate::process::Dest::local(self.hub.as_str(), self.target.as_str()), t);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Node;

    async fn node() -> Node {
        Node::builder(format!("phvis{}@127.0.0.1", std::process::id()))
            .cookie("c")
            .publish(false)
            .embedded_epmd(false)
            .listen(([127, 0, 0, 1], 0).into())
            .start()
            .await
            .unwrap()
    }

    /// The join race: a move waits for the target's handler to join the
    /// `migration_add_event` group, and gives up after the wait.
    #[tokio::test]
    async fn a_move_waits_for_the_targets_handler_then_gives_up() {
        let node = node().await;
        let scope = node.pg_scope("hub.vis.event_queue_pg").unwrap();
        let me = node.name().clone();
        assert_eq!(visible_handlers(&scope, &me, Duration::from_millis(200)).await, None, "nobody joined: gives up");
        let handler = node.spawn(|mut mb| async move {
            while mb.recv().await.is_some() {}
            Term::atom("normal")
        });
        let (s, h) = (scope.clone(), handler.clone());
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(300)).await;
            s.join(Term::atom("migration_add_event"), &h).await.unwrap();
        });
        let t0 = tokio::time::Instant::now();
        assert_eq!(visible_handlers(&scope, &me, Duration::from_secs(10)).await, Some(vec![handler]), "found once it joins");
        assert!(t0.elapsed() >= Duration::from_millis(300), "it waited for the join");
        node.shutdown().await;
    }
}
