//! The connection algorithm: how two partitions agree on one name table.
//!
//! Per peer node N a session goes (tags keep sessions apart; a message
//! with a stale tag cancels nothing but itself):
//!
//! 1. nodeup: a fresh `my` tag, `init_connect` to N, a resolver slot.
//! 2. N's `init_connect` (kept until our nodeup if it came first):
//!    remember `his` tag and N's version, hand N's locker to our locker,
//!    acknowledge with `init_connect_ack` (version 8), N is pending.
//! 3. The lockers lock both partitions (locker.rs); ours reports
//!    `lock_is_set`: send N our names (`exchange`).
//! 4. With our lock set *and* N's `exchange` in, the resolver compares
//!    the names (resolve.rs) and reports `exchange_ops`: send N
//!    `resolved` with our known nodes and N's share of the resolutions.
//! 5. With our ops *and* N's `resolved` in: apply both, learn N and the
//!    nodes N knows, tell those `in_sync` (connecting to them), have the
//!    locker cast `new_nodes` to the nodes we knew before releasing the
//!    lock, and end the session.
//!
//! Steps 3-4 and 4-5 may meet in either order (`wait_lock`, `save_ops`).
//! A nodedown cancels the session; with prevent_overlapping_partitions a
//! lost link is reported (`lost_connection`) so that the cluster drops
//! the nodes that can no longer see each other (`remove_connection`).

use super::locker::LockerMsg;
use super::messages::{self, ExtName, KnownNode, NameInfo, Op, POP_VSN, VERIFY_CONNECT_VSN, VSN};
use super::server::{Internal, LostInfo, Origin, Resolver, Server};
use crate::term::{Atom, Pid, Term};
use std::time::Duration;

/// How long lost_connection reports are remembered (global.erl: 1 h).
const LOST_CONN_TTL: Duration = Duration::from_secs(3600);

/// How long a node learnt in a sync may take to connect to us after our
/// own attempt failed (the BEAM's default net_setuptime).
const PASSIVE_CONNECT_WAIT: Duration = Duration::from_secs(7);

/// Waits for a nodeup of `n`.
async fn wait_up(events: &mut tokio::sync::broadcast::Receiver<crate::NodeEvent>, n: &Atom, within: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, events.recv()).await {
            Ok(Ok(crate::NodeEvent::Up(up))) if up == *n => return true,
            Ok(Ok(_)) | Ok(Err(tokio::sync::broadcast::error::RecvError::Lagged(_))) => {}
            Ok(Err(_)) | Err(_) => return false,
        }
    }
}

/// global.erl's per-node process-dictionary entries.
#[derive(Default)]
pub(crate) struct Session {
    pub my_tag: Option<Term>,
    pub his_tag: Option<Term>,
    pub prot_vsn: Option<u32>,
    pub wait_lock: Option<WaitLock>,
    pub save_ops: Option<SaveOps>,
    pub pre_connect: Option<PreConnect>,
    pub lock_id: Option<Term>,
}

pub(crate) enum WaitLock {
    LockIsSet,
    Exchange(Vec<NameInfo>),
}

pub(crate) enum SaveOps {
    Ops(Vec<Op>),
    Resolved { his_known: Vec<KnownNode>, names_ext: Vec<ExtName>, his_resolved: Vec<Op> },
}

/// An init_connect that arrived before our nodeup.
pub(crate) struct PreConnect {
    vsn: u32,
    his_locker: Pid,
    his_tag: Term,
}

/// Why a node leaves global's view.
#[derive(Clone, Copy, PartialEq, Debug)]
pub(crate) enum Down {
    /// The link went down: report it (prevent_overlapping_partitions).
    Disconnected,
    /// We asked it to disconnect: its coming nodedown is no news.
    RemoveConnection,
}

fn undefined() -> Term {
    Term::atom("undefined")
}

impl Server {
    /// `get({sync_tag_my, N})`, `undefined` when unset, as Erlang
    /// compares it.
    pub fn get_my(&self, n: &Atom) -> Term {
        self.sessions.get(n).and_then(|s| s.my_tag.clone()).unwrap_or_else(undefined)
    }

    fn get_his(&self, n: &Atom) -> Term {
        self.sessions.get(n).and_then(|s| s.his_tag.clone()).unwrap_or_else(undefined)
    }

    fn session(&mut self, n: &Atom) -> &mut Session {
        self.sessions.entry(n.clone()).or_default()
    }

    fn reset_node_state(&mut self, n: &Atom) {
        self.sessions.remove(n);
    }

    /// The version a node speaks: ours for us, 0 if unknown.
    fn node_vsn(&self, n: &Atom) -> u32 {
        if *n == self.me {
            return VSN;
        }
        self.known.get(n).or_else(|| self.pending.get(n)).copied().unwrap_or(0)
    }

    fn mk_known_list(&self, vsn: u32) -> Term {
        let k: Vec<KnownNode> = self.known.iter().map(|(n, v)| KnownNode { node: n.clone(), vsn: *v }).collect();
        messages::known_term(&k, vsn >= POP_VSN)
    }

    pub fn publish_known(&self) {
        *self.shared.known.write().unwrap() = self.known.keys().cloned().collect();
    }

    // -----------------------------------------------------------------
    // Session start.

    pub fn handle_nodeup(&mut self, n: Atom) {
        if self.known.contains_key(&n) || self.resolvers.contains_key(&n) {
            return;
        }
        self.resend_pre_connect(&n);
        let tag = self.new_tag();
        self.session(&n).my_tag = Some(tag.clone());
        self.cast_to(&n, messages::init_connect(&tag, &self.me, &self.locker));
        self.resolvers.insert(n, Resolver { tag, task: None });
    }

    fn resend_pre_connect(&mut self, n: &Atom) {
        let Some(pc) = self.sessions.get_mut(n).and_then(|s| s.pre_connect.take()) else { return };
        let again = messages::cast(Term::tuple([
            Term::atom("init_connect"),
            Term::tuple([Term::Int(pc.vsn as i64), pc.his_tag]),
            Term::Atom(n.clone()),
            Term::tuple([Term::atom("locker"), Term::atom("no_longer_a_pid"), Term::nil(), Term::Pid(pc.his_locker)]),
        ]));
        let _ = self.internal.send(Internal::Again(again));
    }

    pub fn init_connect(&mut self, vsn: u32, n: Atom, his_locker: Pid, his_tag: Term, his_vsn: u32) {
        if self.pending.contains_key(&n) {
            // A second attempt while one is under way (possible with
            // global groups): start both sides over.
            if his_vsn < VERIFY_CONNECT_VSN {
                tracing::error!(node = %n, his_vsn, "global: out of sync connection attempt from an old node; disconnecting it");
                self.node.disconnect(n.as_str());
                return;
            }
            self.send_cancel_connect_message(&n, &his_tag);
            let old = self.get_my(&n);
            self.restart_connect(&n, old);
        }
        let s = self.session(&n);
        s.prot_vsn = Some(vsn);
        s.his_tag = Some(his_tag.clone());
        match self.resolvers.get(&n).map(|r| r.tag.clone()) {
            Some(my_tag) => {
                let _ = self.to_locker.send(LockerMsg::HisTheLocker { locker: his_locker, vsn, his_tag: his_tag.clone(), my_tag: my_tag.clone() });
                if his_vsn >= VERIFY_CONNECT_VSN {
                    self.volatile_send(&n, messages::init_connect_ack(&self.me, &his_tag, &my_tag));
                }
                self.pending.insert(n, his_vsn);
            }
            // Before our nodeup: kept for it. A real one comes over the
            // link from that node, so nothing is kept for nodes with no
            // link (a forged name would otherwise stay forever).
            None if self.node.peer_flags(&n).is_some() => self.session(&n).pre_connect = Some(PreConnect { vsn, his_locker, his_tag }),
            None => {
                tracing::warn!(node = %n, "global: init_connect naming a node with no link; dropped");
                self.reset_node_state(&n);
            }
        }
    }

    pub fn init_connect_ack(&mut self, n: Atom, his_my: Term, his_his: Term) {
        let my = self.get_my(&n);
        if my == his_my && self.get_his(&n) == his_his {
            return;
        }
        // The two sides disagree on which session is running.
        self.send_cancel_connect_message(&n, &his_his);
        self.restart_connect(&n, my);
    }

    pub fn cancel_connect(&mut self, n: Atom, tag: Term) {
        if self.get_my(&n) != tag {
            return;
        }
        self.cancel_locker(&n, tag.clone(), None);
        self.reset_node_state(&n);
        self.pending.remove(&n);
        self.restart_connect(&n, tag);
    }

    fn restart_connect(&mut self, n: &Atom, my_tag: Term) {
        self.cancel_locker(n, my_tag.clone(), None);
        self.reset_node_state(n);
        self.pending.remove(n);
        if matches!(my_tag, Term::Int(_) | Term::Big(_)) {
            self.handle_nodeup(n.clone());
        }
    }

    fn send_cancel_connect_message(&self, n: &Atom, his_tag: &Term) {
        self.volatile_send(n, messages::cancel_connect(&self.me, his_tag));
    }

    /// Ends our side of session `tag` with `n`: the locker forgets it (or
    /// releases its lock after sending `then`), N is told if it is
    /// waiting on us, the resolver stops.
    pub fn cancel_locker(&mut self, n: &Atom, tag: Term, then: Option<Vec<(Atom, Term)>>) {
        let _ = self.to_locker.send(LockerMsg::Cancel { node: n.clone(), tag: tag.clone(), then });
        if self.pending.get(n).is_some_and(|v| *v >= VERIFY_CONNECT_VSN) && self.get_my(n) == tag {
            self.send_cancel_connect_message(n, &self.get_his(n));
        }
        if self.resolvers.get(n).is_some_and(|r| r.tag == tag) {
            if let Some(r) = self.resolvers.remove(n) {
                if let Some(t) = r.task {
                    t.abort();
                }
            }
        }
    }

    // -----------------------------------------------------------------
    // Locked: names go out, resolution, results.

    pub fn lock_is_set(&mut self, n: Atom, tag: Term, lock_id: Term) {
        if self.get_my(&n) != tag {
            self.cancel_locker(&n, tag, None);
            return;
        }
        let names = self.shared.names.read().unwrap().wire_list();
        self.cast_to(&n, messages::exchange(&self.me, names, &self.get_his(&n)));
        let s = self.session(&n);
        s.lock_id = Some(lock_id);
        if let Some(WaitLock::Exchange(list)) = s.wait_lock.replace(WaitLock::LockIsSet) {
            self.exchange(n, list);
        }
    }

    pub fn exchange_cast(&mut self, n: Atom, names: Vec<NameInfo>, tag: Term) {
        if self.get_my(&n) == tag {
            self.exchange(n, names);
        } else {
            self.cancel_locker(&n, tag, None);
        }
    }

    fn exchange(&mut self, n: Atom, names: Vec<NameInfo>) {
        let s = self.session(&n);
        match s.wait_lock.take() {
            Some(WaitLock::LockIsSet) => self.start_resolver(n, names),
            _ => s.wait_lock = Some(WaitLock::Exchange(names)),
        }
    }

    fn start_resolver(&mut self, n: Atom, names: Vec<NameInfo>) {
        let Some(r) = self.resolvers.get_mut(&n) else {
            tracing::warn!(node = %n, "global: names to resolve for a session without a resolver; dropped");
            return;
        };
        let (node, shared, tx, tag) = (self.node.clone(), self.shared.clone(), self.internal.clone(), r.tag.clone());
        let task = tokio::spawn(async move {
            let (ops, resolved) = super::resolve::exchange_names(&node, &shared, names, &n).await;
            let _ = tx.send(Internal::ExchangeOps { node: n, tag, ops, resolved });
        });
        r.task = Some(task.abort_handle());
    }

    pub fn exchange_ops(&mut self, n: Atom, tag: Term, ops: Vec<Op>, resolved: Vec<Op>) {
        if self.get_my(&n) != tag {
            self.cancel_locker(&n, tag, None);
            return;
        }
        let known = self.mk_known_list(self.node_vsn(&n));
        let ext = self.shared.names.read().unwrap().ext_list();
        self.cast_to(&n, messages::resolved(&self.me, &resolved, known, &ext, &self.get_his(&n)));
        let s = self.session(&n);
        if let Some(SaveOps::Resolved { his_known, names_ext, his_resolved }) = s.save_ops.replace(SaveOps::Ops(ops)) {
            self.resolved(n, his_resolved, his_known, names_ext);
        }
    }

    pub fn resolved_cast(&mut self, n: Atom, his_resolved: Vec<Op>, his_known: Vec<KnownNode>, names_ext: Vec<ExtName>, tag: Term) {
        if self.get_my(&n) != tag {
            self.cancel_locker(&n, tag, None);
            return;
        }
        let s = self.session(&n);
        if matches!(s.save_ops, Some(SaveOps::Ops(_))) {
            self.resolved(n, his_resolved, his_known, names_ext);
        } else {
            s.save_ops = Some(SaveOps::Resolved { his_known, names_ext, his_resolved });
        }
    }

    /// Both sides' results are in: the session's end.
    fn resolved(&mut self, n: Atom, his_resolved: Vec<Op>, his_known: Vec<KnownNode>, names_ext: Vec<ExtName>) {
        let s = self.session(&n);
        let mut ops = match s.save_ops.take() {
            Some(SaveOps::Ops(o)) => o,
            _ => Vec::new(),
        };
        let prot_vsn = s.prot_vsn;
        let lock_id = s.lock_id.clone();
        ops.extend(his_resolved);
        let known_before: Vec<(Atom, u32)> = self.known.iter().map(|(k, v)| (k.clone(), *v)).collect();
        let mut new_nodes = vec![KnownNode { node: n.clone(), vsn: self.node_vsn(&n) }];
        for k in &his_known {
            let vsn = if k.vsn == 0 { self.node_vsn(&k.node) } else { k.vsn };
            new_nodes.push(KnownNode { node: k.node.clone(), vsn });
        }
        let his_known_nodes: Vec<Atom> = his_known.iter().map(|k| k.node.clone()).collect();
        self.sync_others(his_known_nodes.clone());
        let extra = Term::list([
            Term::tuple([Term::atom("vsn"), prot_vsn.map(|v| Term::Int(v as i64)).unwrap_or_else(undefined)]),
            Term::tuple([Term::atom("lock"), lock_id.unwrap_or_else(undefined)]),
        ]);
        self.do_ops(&ops, Origin::Node(self.me.clone()), &names_ext, &extra);
        for c in &his_known_nodes {
            self.cancel_resolved_locker(c, None);
        }
        // The nodes of our partition learn the new ones from us; the
        // locker sends this before it releases the lock it names.
        let nodes_all = messages::known_term(&new_nodes, true);
        let nodes_old = messages::known_term(&new_nodes, false);
        let then: Vec<(Atom, Term)> = known_before
            .into_iter()
            .map(|(k, v)| {
                let nodes = if v >= POP_VSN { nodes_all.clone() } else { nodes_old.clone() };
                (k, messages::new_nodes(&self.me, &ops, &names_ext, nodes, extra.clone()))
            })
            .collect();
        self.cancel_resolved_locker(&n, Some(then));
        let added = self.add_to_known(&new_nodes);
        let _ = self.to_locker.send(LockerMsg::AddToKnown(added));
        self.synced.push(n.clone());
        self.publish_known();
        // Last, so a sync answered now sees the node known.
        self.syncers_synced(&n);
    }

    fn cancel_resolved_locker(&mut self, n: &Atom, then: Option<Vec<(Atom, Term)>>) {
        let tag = self.get_my(n);
        self.pending.remove(n);
        self.cancel_locker(n, tag, then);
        self.reset_node_state(n);
    }

    /// Applies a sync's operations. Inserts from a sync are kept only if
    /// the `global` lock here is still the sync's (`extra` names it).
    fn do_ops(&mut self, ops: &[Op], origin: Origin, names_ext: &[ExtName], extra: &Term) {
        let origin_of = |o: &Origin| match o {
            Origin::Pid(p) => Origin::Pid(p.clone()),
            Origin::Node(n) => Origin::Node(n.clone()),
        };
        let mut ext_names = Vec::new();
        for op in ops {
            if let Op::Insert(i) = op {
                if let Some(x) = names_ext.iter().find(|x| x.name == i.name && x.pid == i.pid) {
                    ext_names.push(i.name.clone());
                    self.ins_name(i.clone(), Some(x.reg_node.clone()), origin_of(&origin), extra);
                }
            }
        }
        for op in ops {
            if let Op::Insert(i) = op {
                if !ext_names.contains(&i.name) {
                    self.ins_name(i.clone(), None, origin_of(&origin), extra);
                }
            }
        }
        for op in ops {
            if let Op::Delete(name) = op {
                self.delete_global_name(name);
            }
        }
    }

    /// Adds nodes to known; returns those that were new.
    fn add_to_known(&mut self, nodes: &[KnownNode]) -> Vec<Atom> {
        let mut added = Vec::new();
        for k in nodes {
            if k.node == self.me || self.known.contains_key(&k.node) {
                continue;
            }
            self.known.insert(k.node.clone(), k.vsn);
            added.push(k.node.clone());
        }
        added
    }

    /// Nodes learnt from a peer: connect and tell each we are in sync
    /// (that is what lets their `global:sync()` return).
    ///
    /// Those nodes learn of us at the same moment and connect too. If our
    /// attempt loses that race, their connection still counts (the BEAM's
    /// `allow_passive_connect`): only a node that stays unreachable is
    /// treated as lost.
    fn sync_others(&self, nodes: Vec<Atom>) {
        for n in nodes {
            if n == self.me {
                continue;
            }
            let (node, tx, from) = (self.node.clone(), self.internal.clone(), self.mb.pid().clone());
            let mut events = node.subscribe();
            tokio::spawn(async move {
                let connected = match node.connect(n.as_str()).await {
                    Ok(()) => true,
                    Err(e) => {
                        tracing::debug!(node = %n, error = %e, "global: connecting to a node learnt in a sync failed; waiting for its own connection");
                        node.peer_flags(&n).is_some() || wait_up(&mut events, &n, PASSIVE_CONNECT_WAIT).await
                    }
                };
                if connected {
                    node.send_named(&from, super::multicall::GNS, n.as_str(), messages::in_sync(node.name()));
                } else {
                    tracing::warn!(node = %n, "global: cannot reach a node learnt in a sync");
                    let _ = tx.send(Internal::ExtraNodedown(n));
                }
            });
        }
    }

    pub fn new_nodes(&mut self, n: Atom, ops: Vec<Op>, names_ext: Vec<ExtName>, nodes: Vec<KnownNode>, extra: Term) {
        let added = self.add_to_known(&nodes);
        self.sync_others(added.clone());
        self.do_ops(&ops, Origin::Node(n), &names_ext, &extra);
        let _ = self.to_locker.send(LockerMsg::AddToKnown(added));
        self.publish_known();
    }

    pub fn in_sync(&mut self, n: Atom) {
        self.syncers_synced(&n);
        if !self.synced.contains(&n) {
            self.synced.push(n.clone());
        }
        self.pending.remove(&n);
        let tag = self.get_my(&n);
        self.cancel_locker(&n, tag, None);
        self.reset_node_state(&n);
    }

    // -----------------------------------------------------------------
    // Losing nodes.

    pub fn handle_nodedown(&mut self, n: Atom, what: Down) {
        let tag = self.get_my(&n);
        self.cancel_locker(&n, tag, None);
        let _ = self.to_locker.send(LockerMsg::RemoveFromKnown(n.clone()));
        self.reset_node_state(&n);
        match what {
            Down::RemoveConnection => {
                self.removing.insert(n.clone());
            }
            Down::Disconnected => {
                if !self.removing.remove(&n) {
                    self.inform_connection_loss(&n);
                }
            }
        }
        self.pending.remove(&n);
        self.known.remove(&n);
        self.synced.retain(|s| *s != n);
        self.publish_known();
    }

    fn inform_connection_loss(&mut self, lost: &Atom) {
        if !self.pop {
            return;
        }
        tracing::debug!(node = %lost, known = ?self.known, "global: reporting a lost connection");
        let op_id = self.new_op_id();
        let msg = messages::lost_connection(&self.me, &self.xcreation, &op_id, lost);
        self.multicast(&msg, lost);
    }

    /// To every known and pending node of version 7 or later but
    /// `except`, without bringing links up.
    fn multicast(&self, msg: &Term, except: &Atom) {
        let targets = self.known.iter().chain(self.pending.iter()).filter(|(n, v)| *n != except && **v >= POP_VSN);
        for (n, _) in targets {
            self.volatile_send(n, msg.clone());
        }
    }

    /// Node A lost its link to node B. Whoever still sees both would make
    /// partitions overlap: we drop B (or A, if we are B) and have it drop
    /// us too.
    pub fn lost_connection(&mut self, node_a: Atom, xcreation: Term, op_id: Term, node_b: Atom) {
        if !self.pop {
            return;
        }
        tracing::debug!(%node_a, %node_b, ?op_id, "global: lost_connection report");
        let now = tokio::time::Instant::now();
        self.lost.retain(|_, l| now.duration_since(l.at) < LOST_CONN_TTL);
        let key = (node_a.clone(), node_b.clone());
        if let Some(l) = self.lost.get(&key) {
            if l.xcreation == xcreation && super::order::int_cmp(&op_id, &l.op_id).is_some_and(|o| o.is_le()) {
                return; // seen already
            }
        }
        // Pass it on, so that every node of the cluster hears of it even
        // if some lose their link to A meanwhile.
        self.multicast(&messages::lost_connection(&node_a, &xcreation, &op_id, &node_b), &node_a);
        self.lost.insert(key, LostInfo { xcreation, op_id, at: now });
        let rm = if self.me == node_b { node_a } else { node_b };
        if !(self.known.contains_key(&rm) || self.pending.contains_key(&rm)) {
            tracing::debug!(node = %rm, "global: lost_connection about a node not known here");
            return;
        }
        let what = if self.node_vsn(&rm) < POP_VSN {
            self.node.disconnect(rm.as_str());
            "disconnected old"
        } else {
            self.volatile_send(&rm, messages::remove_connection(&self.me));
            "requested disconnect from"
        };
        tracing::warn!(node = %rm, "'global' at {} {what} node {rm} in order to prevent overlapping partitions", self.me);
        self.handle_nodedown(rm, Down::RemoveConnection);
    }

    pub fn remove_connection(&mut self, n: Atom) {
        if !(self.known.contains_key(&n) || self.pending.contains_key(&n)) {
            return;
        }
        self.node.disconnect(n.as_str());
        self.handle_nodedown(n.clone(), Down::RemoveConnection);
        tracing::warn!(node = %n, "'global' at {} disconnected node {n} in order to prevent overlapping partitions", self.me);
    }
}
