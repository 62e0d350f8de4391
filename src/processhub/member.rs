//! The Rust member's coordinator: the process registered as the hub id
//! and joined to the hub's pg groups, as ProcessHub's Coordinator is on
//! an Elixir member. It owns the member's state (hub nodes, registry,
//! local children) and handles, one at a time: the wire (events, casts),
//! the pg view of the hub's coordinators, node downs, its own migration
//! handlers' reports and the Rust API.
//!
//! Membership is all or nothing: the coordinator only becomes visible
//! (joins `cluster_join_event`, the group ProcessHub counts members by)
//! after it has joined every group it serves, so no Elixir member can
//! count it before it answers `migration_add_event` and the casts.
//!
//! Start and stop requests are in `requests.rs`, moves away from this
//! node in `outgoing.rs`, graceful leave in `leave.rs`.

use super::child::ChildCtl;
use super::messages::{ExecCast, HubEvent, HubMessage, Keyword, StoredState};
use super::registry::{key, Registry};
use super::types::{ChildTypes, StartOpts};
use crate::migration::replica::placed::{self, Fetched};
use crate::migration::replica::placement::ReplicaCtx;
use super::{Dialect, HubConfig, ParseError};
use crate::migration::ring::{Ring, RingEncoding};
use crate::pg::{PgAction, PgScope, PgSubscription};
use crate::process::Mailbox;
use crate::term::{Atom, Pid, Reference, Term};
use crate::{Node, NodeEvent};
use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::{Arc, RwLock};
use tokio::sync::{broadcast, mpsc, oneshot};

/// A child hosted here.
pub(crate) struct LocalChild {
    pub cid: Term,
    pub spec: Term,
    pub meta: Term,
    pub pid: Pid,
    pub ctl: mpsc::UnboundedSender<ChildCtl>,
    pub monitor: Reference,
}

/// What the API reads without asking the coordinator.
#[derive(Default)]
pub(crate) struct View {
    /// Other nodes counted as hub members.
    pub nodes: BTreeSet<Atom>,
    pub registry: Registry,
    /// Child id -> pid, for children hosted here.
    pub local: Vec<(Term, Pid)>,
}

/// Inputs other than the mailbox.
pub(crate) enum Internal {
    /// A peer's OTP release answered (or not): the ring encoding it hashes with.
    Release { node: Atom, encoding: Option<RingEncoding> },
    /// A migration handler finished.
    Moved { target: Atom, moved: Vec<(Term, Pid)>, failed: Vec<(Term, Term)> },
    /// The API asks for a graceful leave.
    Leave { reply: oneshot::Sender<super::LeaveReport> },
}

pub(crate) struct Member {
    pub node: Node,
    pub me: Atom,
    pub hub: Atom,
    pub dialect: Dialect,
    pub cfg: HubConfig,
    pub types: ChildTypes,
    pub scope: PgScope,
    pub mb: Mailbox,
    pub view: Arc<RwLock<View>>,
    pub local: HashMap<Vec<u8>, LocalChild>,
    /// Handover states received for children that will start here
    /// (`HotSwap.handle_storage_update`), by child id.
    pub stored: HashMap<Vec<u8>, StoredState>,
    /// Children being moved away (not moved again, not restarted).
    pub moving: HashSet<Vec<u8>>,
    pub encodings: HashMap<Atom, RingEncoding>,
    /// Nodes seen, waiting for their release before being counted.
    pub pending: HashSet<Atom>,
    /// Members that joined and get this node's children list once the
    /// moves to them are done (see [`Member::node_up`]).
    pub sync_after_moves: HashSet<Atom>,
    pub internal_tx: mpsc::UnboundedSender<Internal>,
    pub leaving: bool,
    /// While leaving: frozen children waiting for their new pid.
    pub handing: HashMap<Vec<u8>, mpsc::UnboundedSender<ChildCtl>>,
    pub notices: broadcast::Sender<super::HubNotice>,
    /// Replicas of the children's states (types with replicas), when
    /// the member was given a migration service.
    pub replicas: Option<Arc<ReplicaCtx>>,
    /// Replicas fetched for a dead member's children that start here
    /// next, by child id.
    pub restored: HashMap<Vec<u8>, Fetched>,
}

impl Member {
    pub fn nodes(&self) -> BTreeSet<Atom> {
        self.view.read().unwrap().nodes.clone()
    }

    /// The encoding rings hash with: the configured one; else the
    /// oldest the Elixir members run (OTP 26 changed `term_to_binary`'s
    /// atoms); OTP 26's when no peer has answered yet.
    pub fn encoding(&self) -> RingEncoding {
        self.cfg.ring_encoding.unwrap_or_else(|| self.encodings.values().copied().min().unwrap_or(RingEncoding::Otp26))
    }

    /// The hub's ring: every counted node and this one, minus `without`.
    pub fn ring(&self, without: Option<&Atom>) -> Ring {
        let mut nodes = self.nodes();
        nodes.insert(self.me.clone());
        Ring::new(nodes.into_iter().filter(|n| Some(n) != without), self.encoding())
    }

    /// The coordinators in group `ev` on `node`.
    pub fn members_on(&self, ev: HubEvent, node: &Atom) -> Vec<Pid> {
        self.scope.get_members(&Term::atom(ev.atom_name())).into_iter().filter(|p| &p.node == node).collect()
    }

    /// Sends `msg` to the coordinators in group `ev` on every other node.
    pub fn send_external(&self, ev: HubEvent, msg: &HubMessage) {
        let Some(t) = self.build(msg) else { return };
        for p in self.scope.get_members(&Term::atom(ev.atom_name())) {
            if p.node != self.me {
                self.mb.send(&p, t.clone());
            }
        }
    }

    /// Sends `msg` to the coordinators in group `ev` on `node`.
    pub fn send_to_node(&self, ev: HubEvent, node: &Atom, msg: &HubMessage) {
        let Some(t) = self.build(msg) else { return };
        for p in self.members_on(ev, node) {
            self.mb.send(&p, t.clone());
        }
    }

    pub fn build(&self, msg: &HubMessage) -> Option<Term> {
        match self.dialect.build(msg) {
            Ok(t) => Some(t),
            Err(e) => {
                tracing::error!(error = %e, "message not expressible in this dialect");
                None
            }
        }
    }

    /// How a child starts: with its replica name when it replicates.
    pub fn start_opts(&self, cid: &Term) -> StartOpts {
        let replica = self.replicas.as_ref().and_then(|ctx| Some((ctx.clone(), placed::processhub_name(&self.hub, cid)?)));
        StartOpts { replica, initial: None }
    }

    /// Tells the subscribers (none is fine).
    pub fn notify(&self, n: super::HubNotice) {
        let _ = self.notices.send(n);
    }

    pub fn publish_local(&self) {
        let local: Vec<(Term, Pid)> = self.local.values().map(|c| (c.cid.clone(), c.pid.clone())).collect();
        self.view.write().unwrap().local = local;
    }

    /// Joins the groups (the join group last: visibility comes once
    /// everything is served), announces the hub, and runs until left.
    pub async fn run(
        mut self,
        mut internal: mpsc::UnboundedReceiver<Internal>,
        ready: oneshot::Sender<Result<(), crate::pg::PgError>>,
    ) -> Term {
        let join_group = Term::atom(HubEvent::ClusterJoin.atom_name());
        let (initial, mut sub) = match self.scope.monitor(join_group.clone()).await {
            Ok(x) => x,
            Err(e) => {
                let _ = ready.send(Err(e));
                return Term::atom("normal");
            }
        };
        // Before anything is visible, so no nodedown falls in between.
        let mut events = self.node.subscribe();
        let me_pid = self.mb.pid().clone();
        let mut order: Vec<HubEvent> = self.dialect.groups().iter().copied().filter(|e| *e != HubEvent::ClusterJoin).collect();
        order.push(HubEvent::ClusterJoin);
        for ev in order {
            if let Err(e) = self.scope.join(Term::atom(ev.atom_name()), &me_pid).await {
                let _ = ready.send(Err(e));
                return Term::atom("normal");
            }
        }
        self.announce();
        for p in initial {
            self.seen(&p.node);
        }
        let _ = ready.send(Ok(()));
        let mut tick = tokio::time::interval(self.cfg.discover_interval);
        tick.tick().await;
        loop {
            tokio::select! {
                m = self.mb.recv() => match m {
                    Some(m) => self.handle_wire(m).await,
                    None => return Term::atom("killed"),
                },
                i = internal.recv() => match i {
                    Some(Internal::Leave { reply }) => {
                        let report = self.leave().await;
                        let _ = reply.send(report);
                        return Term::atom("normal");
                    }
                    Some(i) => self.handle_internal(i).await,
                    // Never: the member holds a sender itself.
                    None => return Term::atom("normal"),
                },
                c = recv_change(&mut sub) => match c {
                    Some((action, pids)) => for p in pids {
                        if p.node == self.me {
                            continue;
                        }
                        match action {
                            PgAction::Join => self.seen(&p.node),
                            PgAction::Leave => self.node_gone(&p.node, "its coordinator left the hub").await,
                        }
                    },
                    // The scope stopped: the node is shutting down.
                    None => return Term::atom("shutdown"),
                },
                e = events.recv() => match e {
                    Ok(NodeEvent::Down { node, .. }) => self.node_gone(&node, "nodedown").await,
                    Ok(NodeEvent::Up(_)) => {}
                    Err(broadcast::error::RecvError::Lagged(_)) => {}
                    Err(broadcast::error::RecvError::Closed) => return Term::atom("normal"),
                },
                _ = tick.tick() => self.announce(),
            }
        }
    }

    /// `{:cluster_join_event, me}` to every other member (at start and
    /// every `discover_interval`, as ProcessHub's coordinators do).
    fn announce(&self) {
        self.send_external(HubEvent::ClusterJoin, &HubMessage::ClusterJoin { node: self.me.clone() });
    }

    /// A coordinator of the hub exists on `n` (pg join or its
    /// `cluster_join_event`): count `n` once its ring encoding is known.
    fn seen(&mut self, n: &Atom) {
        if *n == self.me || self.nodes().contains(n) || self.pending.contains(n) {
            return;
        }
        if self.members_on(HubEvent::ClusterJoin, n).is_empty() || !self.node.connected_nodes().contains(n) {
            return;
        }
        if self.cfg.ring_encoding.is_some() || self.encodings.contains_key(n) {
            self.node_up(n.clone());
            return;
        }
        let (node, peer, tx, gl) = (self.node.clone(), n.clone(), self.internal_tx.clone(), self.mb.pid().clone());
        tokio::spawn(async move {
            let encoding = super::release::ring_encoding_of(&node, &peer, &gl).await;
            let _ = tx.send(Internal::Release { node: peer, encoding });
        });
        if self.encodings.is_empty() {
            // No release known yet: the ring's encoding depends on this
            // answer, so the node counts once it comes.
            self.pending.insert(n.clone());
        } else {
            // The encoding is known (the cluster's Elixir members share a
            // release): count now; the answer only records the peer's
            // release (a Rust member does not answer, and need not).
            self.node_up(n.clone());
        }
    }

    async fn handle_internal(&mut self, i: Internal) {
        match i {
            Internal::Release { node, encoding } => {
                let waited = self.pending.remove(&node);
                match encoding {
                    Some(e) => {
                        let before = self.encoding();
                        self.encodings.insert(node.clone(), e);
                        if self.encoding() != before && !waited {
                            tracing::warn!(%node, release_encoding = %e, "a hub member hashes the ring differently (mixed OTP releases): placement follows the oldest; pin one encoding (docs/otp-releases.md)");
                        }
                    }
                    None if waited => tracing::info!(%node, "no OTP release from this member (an erlnode node, or rex busy); hashing the ring as {}", self.encoding()),
                    None => {}
                }
                // Once an encoding is known, nobody needs to wait for theirs.
                let mut ready = vec![node];
                if !self.encodings.is_empty() {
                    ready.extend(self.pending.drain());
                }
                for n in ready {
                    if self.node.connected_nodes().contains(&n) && !self.members_on(HubEvent::ClusterJoin, &n).is_empty() {
                        self.node_up(n);
                    }
                }
            }
            Internal::Moved { target, moved, failed } => self.moved(target, moved, failed),
            Internal::Leave { .. } => unreachable!("handled in run"),
        }
    }

    /// `n` joined the hub: ring, the local children the ring now gives to
    /// `n` move there, then `n` gets the list of the children that stay.
    ///
    /// In that order, as a ProcessHub member does it (its node-up handler
    /// waits for the moves before it propagates its children). The joiner
    /// applies `sync_remote_children_event` in a task of its own, not in
    /// order with the other events, and merges the entries into its
    /// registry: a list sent first, naming children about to move, could
    /// be applied after their unregistration and leave the joiner
    /// pointing at this node's old pids for good (the opt-in ColdSwap
    /// test caught it 3 times in 17 runs).
    pub(crate) fn node_up(&mut self, n: Atom) {
        if !self.view.write().unwrap().nodes.insert(n.clone()) {
            return;
        }
        tracing::info!(hub = %self.hub, node = %n, "hub member joined");
        self.notify(super::HubNotice::NodeJoined(n.clone()));
        if !self.leaving && self.rebalance_to(&n) {
            // HotSwap moves run in a handler task: the list goes when it
            // reports (`moved`).
            self.sync_after_moves.insert(n);
            return;
        }
        self.sync_children_to(&n);
    }

    /// `{:sync_remote_children_event, ...}` to `n`: the children hosted here.
    pub(crate) fn sync_children_to(&self, n: &Atom) {
        let children = self
            .local
            .values()
            .map(|c| super::messages::SyncedChild { child_spec: c.spec.clone(), pid: c.pid.clone(), metadata: c.meta.clone() })
            .collect();
        self.send_to_node(HubEvent::SyncRemoteChildren, n, &HubMessage::SyncRemoteChildren { children, from_node: self.me.clone() });
    }

    /// `n` left the hub (leave event, its coordinator's pg leave, or
    /// nodedown): its registry entries go, and the children the new ring
    /// gives this node start here (with a stored state if one came).
    pub async fn node_gone(&mut self, n: &Atom, why: &str) {
        self.pending.remove(n);
        self.sync_after_moves.remove(n);
        let was = self.view.write().unwrap().nodes.remove(n);
        let orphans = self.view.write().unwrap().registry.drop_node(n);
        self.encodings.remove(n);
        if was {
            tracing::info!(hub = %self.hub, node = %n, reason = why, orphans = orphans.len(), "hub member left");
            self.notify(super::HubNotice::NodeLeft(n.clone()));
        }
        if self.leaving || orphans.is_empty() {
            return;
        }
        let ring = self.ring(None);
        let mine: Vec<_> = orphans
            .into_iter()
            .filter(|c| ring.owner(&c.child_id).as_ref() == Some(&self.me) && !self.local.contains_key(&key(&c.child_id)))
            .map(|c| super::messages::ChildStart {
                child_id: c.child_id,
                child_spec: c.child_spec,
                hub_id: self.hub.clone(),
                metadata: c.metadata,
                nodes: vec![self.me.clone()],
                migration_add: Some(true),
                reply_to: None,
                extra: vec![],
            })
            .collect();
        if !mine.is_empty() {
            self.fetch_replicas(&mine).await;
            let mut opts = Keyword::new();
            opts.push("migration_add", Term::atom("true"));
            self.start_children(mine, opts).await;
        }
    }

    /// The latest replicas of a dead member's children that start here,
    /// asked of every store at once (a member may take hundreds).
    /// Entries whose owner's node is up are not counted: such a child's
    /// state comes by ProcessHub's handover, if at all.
    async fn fetch_replicas(&mut self, children: &[super::messages::ChildStart]) {
        if self.replicas.is_none() {
            return;
        }
        let nodes: Vec<Atom> = std::iter::once(self.me.clone()).chain(self.node.connected_nodes()).collect();
        let asks = children.iter().map(|c| {
            let (node, nodes, name) = (&self.node, &nodes, placed::processhub_name(&self.hub, &c.child_id));
            async move { placed::fetch_of_dead_owner(node, nodes, &name?).await }
        });
        let found = futures_util::future::join_all(asks).await;
        for (c, f) in children.iter().zip(found) {
            if let Some(f) = f {
                self.restored.insert(key(&c.child_id), f);
            }
        }
    }

    pub(crate) async fn handle_wire(&mut self, msg: Term) {
        if let Some((reference, pid)) = down_of(&msg) {
            self.child_down(reference, pid, &msg).await;
            return;
        }
        let parsed = match self.dialect.parse(&msg) {
            Ok(m) => m,
            Err(ParseError::Unknown { shape, .. }) => {
                tracing::debug!(hub = %self.hub, %shape, "message for no ProcessHub handler dropped");
                return;
            }
            Err(e) => {
                tracing::warn!(hub = %self.hub, error = %e, "malformed ProcessHub message dropped");
                return;
            }
        };
        match parsed {
            HubMessage::ClusterJoin { node } => self.seen(&node),
            HubMessage::ClusterLeave { node } => self.node_gone(&node, "cluster_leave_event").await,
            HubMessage::SyncRemoteChildren { children, from_node } => self.view.write().unwrap().registry.sync(&children, &from_node),
            HubMessage::ChildrenRegistration { children, .. } => {
                self.view.write().unwrap().registry.register(&children);
                if self.leaving {
                    self.forward_leavers(&children);
                }
            }
            HubMessage::ChildrenUnregistration { children, .. } => self.view.write().unwrap().registry.unregister(&children),
            HubMessage::ChildPidUpdate { child_id, node, pid } => self.view.write().unwrap().registry.update_pid(&child_id, &node, &pid),
            HubMessage::StartChildren { children, opts } | HubMessage::MigrationAdd { children, opts } => {
                self.start_children(children, opts).await
            }
            HubMessage::StopChildren { children, opts } => self.stop_children(children, opts),
            HubMessage::ExecCast(ExecCast::HotSwapStorageUpdate { states }) => self.store_states(states),
            HubMessage::ExecCast(ExecCast::Other { module, function, args }) => tracing::warn!(
                hub = %self.hub, mfa = %format!("{module}:{function}/{}", args.len() + 1),
                "exec_cast refused: a Rust member runs only the named handover callbacks"
            ),
            other => tracing::debug!(hub = %self.hub, kind = other.kind(), "ProcessHub message not meant for a coordinator dropped"),
        }
    }

    /// `HotSwap.handle_storage_update`: states for children that start
    /// here (now or soon). A child already here gets its state at once.
    fn store_states(&mut self, states: Vec<StoredState>) {
        for s in states {
            let k = key(&s.child_id);
            match self.local.get(&k) {
                Some(c) => self.deliver(&c.pid, s),
                None => {
                    self.stored.insert(k, s);
                }
            }
        }
    }

    /// Hands a stored state to a child that started here, as
    /// ProcessHub's `handle_process_startups` does.
    pub fn deliver(&self, pid: &Pid, s: StoredState) {
        let msg = HubMessage::Handover { child_id: s.child_id, state: s.state, opts: s.opts };
        if let Some(t) = self.build(&msg) {
            self.mb.send(pid, t);
        }
    }

    /// A hosted child exited. Moved and stopped children were removed
    /// first; any other exit is a crash: restart it (a ProcessHub child
    /// is a permanent child of its hub's supervisor) and tell the hub.
    async fn child_down(&mut self, reference: Reference, pid: Pid, msg: &Term) {
        let Some((k, _)) = self.local.iter().find(|(_, c)| c.monitor == reference && c.pid == pid) else { return };
        let k = k.clone();
        let c = self.local.remove(&k).expect("found above");
        self.publish_local();
        if self.moving.contains(&k) || self.leaving {
            return;
        }
        tracing::warn!(hub = %self.hub, cid = ?c.cid, exit = ?msg, "hub child exited; restarting it");
        // Fresh, as ProcessHub restarts it (its replicas went with the
        // crashed process), but replicating again.
        let opts = self.start_opts(&c.cid);
        match self.types.start_with(&self.node, &c.cid, &c.spec, self.dialect, opts).await {
            Ok(s) => {
                let monitor = self.mb.monitor(&s.pid);
                let update = HubMessage::ChildPidUpdate { child_id: c.cid.clone(), node: self.me.clone(), pid: s.pid.clone() };
                self.view.write().unwrap().registry.update_pid(&c.cid, &self.me, &s.pid);
                self.local.insert(k, LocalChild { pid: s.pid, ctl: s.ctl, monitor, ..c });
                self.publish_local();
                self.send_external(HubEvent::ChildProcessPidUpdate, &update);
            }
            Err(reason) => {
                tracing::error!(hub = %self.hub, cid = ?c.cid, ?reason, "restart failed; the child is unregistered");
                self.view.write().unwrap().registry.remove_on(&c.cid, &self.me);
                self.unregistered(vec![c.cid], Keyword::new());
            }
        }
    }
}

async fn recv_change(sub: &mut PgSubscription) -> Option<(PgAction, Vec<Pid>)> {
    let c = sub.recv().await?;
    Some((c.action, c.pids))
}

/// `{'DOWN', Ref, process, Pid, Reason}`.
fn down_of(msg: &Term) -> Option<(Reference, Pid)> {
    match msg.as_tuple()? {
        [tag, Term::Ref(r), kind, Term::Pid(p), _] if tag.is_atom("DOWN") && kind.is_atom("process") => Some((r.clone(), p.clone())),
        _ => None,
    }
}
