//! Graceful leave of the Rust member (`Hub::leave`, SIGTERM to
//! `erlnode run --processhub`), in ProcessHub's order so that its members
//! restart the children with their states:
//!
//! 1. each local child answers its prepared state and freezes: from now
//!    on it keeps the messages it gets instead of handling them;
//! 2. `{:exec_cast, {HotSwap, :handle_storage_update, [[{cid, {state,
//!    []}}]]}}` to each new owner (the ring without this node), which hands
//!    the state to the child when it starts there;
//! 3. `{:cluster_leave_event, me}` to the other members: they start the
//!    children the new ring gives them and broadcast the registrations;
//! 4. better than ProcessHub: on each registration of one of its children
//!    (this coordinator is still a member, so it gets them), the frozen
//!    child forwards what it kept, and what arrives during retention, to
//!    the new pid, in order; children nobody restarted in time stop;
//! 5. the coordinator leaves the pg groups and its name.

use super::child::ChildCtl;
use super::member::Member;
use super::messages::{ExecCast, HubEvent, HubMessage, PostStartData, StoredState};
use super::registry::key;
use super::LeaveReport;
use crate::term::{Atom, Term};
use std::collections::HashMap;
use std::time::Duration;
use tokio::sync::oneshot;

impl Member {
    pub async fn leave(&mut self) -> LeaveReport {
        self.leaving = true;
        // Every visible member counts for the new owners, even one whose
        // release answer is still pending.
        let connected = self.node.connected_nodes();
        for p in self.scope.get_members(&Term::atom(HubEvent::ClusterJoin.atom_name())) {
            if p.node != self.me && connected.contains(&p.node) {
                self.pending.remove(&p.node);
                self.node_up(p.node.clone());
            }
        }
        let mut report = LeaveReport::default();
        let ring = self.ring(Some(&self.me.clone()));
        let mut by_owner: HashMap<Atom, Vec<StoredState>> = HashMap::new();
        let keys: Vec<Vec<u8>> = self.local.keys().filter(|k| !self.moving.contains(*k)).cloned().collect();
        for k in keys {
            let c = &self.local[&k];
            // Without handover (ColdSwap) nothing is sent: the new owner
            // restarts the child from its spec.
            let owner = ring.owner(&c.cid).filter(|o| *o != self.me && self.cfg.handover);
            let state = match owner {
                None => None,
                Some(_) => {
                    let (tx, rx) = oneshot::channel();
                    let _ = c.ctl.send(ChildCtl::Freeze { reply: tx });
                    match tokio::time::timeout(Duration::from_secs(3), rx).await {
                        Ok(Ok(Ok(s))) => Some(s),
                        other => {
                            tracing::error!(hub = %self.hub, cid = ?c.cid, outcome = ?other.map(|r| r.map(|x| x.err())), "no handover state; the child restarts fresh elsewhere");
                            None
                        }
                    }
                }
            };
            match (owner, state) {
                (Some(o), Some(state)) => {
                    by_owner.entry(o).or_default().push(StoredState { child_id: c.cid.clone(), state, opts: Default::default() });
                    self.handing.insert(k, c.ctl.clone());
                    report.handed_over += 1;
                }
                _ => {
                    let _ = c.ctl.send(ChildCtl::Stop);
                    report.stopped += 1;
                }
            }
        }
        for (n, states) in by_owner {
            if let Some(t) = self.build(&HubMessage::ExecCast(ExecCast::HotSwapStorageUpdate { states })) {
                self.mb.send_to(&crate::process::Dest::local(self.hub.as_str(), n.as_str()), t);
            }
        }
        self.send_external(HubEvent::ClusterLeave, &HubMessage::ClusterLeave { node: self.me.clone() });
        let deadline = tokio::time::Instant::now() + self.cfg.leave_timeout;
        while !self.handing.is_empty() {
            match tokio::time::timeout_at(deadline, self.mb.recv()).await {
                Ok(Some(m)) => self.handle_wire(m).await,
                _ => break,
            }
        }
        report.forwarded = report.handed_over - self.handing.len();
        for (_, ctl) in self.handing.drain() {
            let _ = ctl.send(ChildCtl::Stop);
        }
        // The forwarding children end after retention.
        let deadline = tokio::time::Instant::now() + self.cfg.retention + Duration::from_secs(1);
        while !self.local.is_empty() {
            match tokio::time::timeout_at(deadline, self.mb.recv()).await {
                Ok(Some(m)) => self.handle_wire(m).await,
                _ => break,
            }
        }
        let me = self.mb.pid().clone();
        for ev in self.dialect.groups() {
            let _ = self.scope.leave(Term::atom(ev.atom_name()), &me).await;
        }
        if self.node.whereis(self.hub.as_str()).as_ref() == Some(&me) {
            self.node.unregister(self.hub.as_str());
        }
        tracing::info!(hub = %self.hub, handed_over = report.handed_over, forwarded = report.forwarded, stopped = report.stopped, "left the hub");
        self.notify(super::HubNotice::Left(report.clone()));
        report
    }

    /// Registrations seen while leaving: the frozen child forwards to its
    /// new pid.
    pub fn forward_leavers(&mut self, children: &[PostStartData]) {
        for c in children {
            let Some(to) = c.child_nodes.iter().find(|(n, _)| *n != self.me).map(|(_, p)| p.clone()) else { continue };
            if let Some(ctl) = self.handing.remove(&key(&c.cid)) {
                let _ = ctl.send(ChildCtl::Forward { to, retention: self.cfg.retention });
            }
        }
    }
}
