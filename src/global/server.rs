//! `global_name_server`: the process peers' globals talk to.
//!
//! One task owns all of global's state (global.erl's `#state{}` and its
//! process dictionary, see `sync.rs`) and the monitors behind every name
//! and lock. Its inputs, handled one at a time:
//!
//! - node events (nodeup starts a sync session, nodedown ends one and
//!   cleans up); taken first, and on a nodedown every message already in
//!   the mailbox is handled before it, so that, as on the BEAM, all
//!   traffic of a link is seen before its nodedown;
//! - internal messages from its helpers (the locker's `lock_is_set`, a
//!   resolver's `exchange_ops`, API requests);
//! - its mailbox: calls, casts and plain messages from peers and from the
//!   locker/registrar, and DOWNs of monitored pids.
//!
//! Every call is answered; anything malformed is logged and dropped.

use super::locker::LockerMsg;
use super::messages::{self, Call, Cast, Incoming, Info, NameInfo, Op, VSN};
use super::multicall::GNS;
use super::sync::Session;
use super::{LockId, Shared};
use crate::process::{Dest, Mailbox};
use crate::term::{Atom, Pid, Reference, Term};
use crate::{Node, NodeEvent};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender};
use tokio::sync::{broadcast, oneshot};

/// Messages from the server's own helpers and API.
pub(crate) enum Internal {
    /// From the locker: both sides of the sync with `node` are locked.
    LockIsSet { node: Atom, tag: Term, lock_id: Term },
    /// From a resolver: the result of comparing `node`'s names with ours.
    ExchangeOps { node: Atom, tag: Term, ops: Vec<Op>, resolved: Vec<Op> },
    /// A node learnt in a sync could not be reached.
    ExtraNodedown(Atom),
    /// Handle this message as if it had just arrived (init_connect kept
    /// from before nodeup, a whereis retried after the lock is gone).
    Again(Term),
    /// The API's `sync`: answer once synced with these nodes.
    Sync { nodes: Vec<Atom>, reply: oneshot::Sender<()> },
}

/// Who made a name-table change: a registering pid (`{register, ...}`
/// calls) or the node a sync's operations came from.
pub(crate) enum Origin {
    Pid(Pid),
    Node(Atom),
}

pub(crate) enum SyncReply {
    Call(Term),
    Api(oneshot::Sender<()>),
}

pub(crate) struct Syncer {
    pub waiting: HashSet<Atom>,
    pub reply: Option<SyncReply>,
}

/// A sync session's resolver (global.erl spawns one per session; here it
/// is a task started when both name lists are in).
pub(crate) struct Resolver {
    pub tag: Term,
    pub task: Option<tokio::task::AbortHandle>,
}

pub(crate) struct LostInfo {
    pub xcreation: Term,
    pub op_id: Term,
    pub at: tokio::time::Instant,
}

pub(crate) struct Server {
    pub node: Node,
    pub me: Atom,
    pub mb: Mailbox,
    pub shared: Arc<Shared>,
    pub locker: Pid,
    pub registrar: Pid,
    pub to_locker: UnboundedSender<LockerMsg>,
    pub internal: UnboundedSender<Internal>,
    /// Nodes synced with, and their protocol versions (0: unknown).
    pub known: BTreeMap<Atom, u32>,
    /// Nodes in a sync session that sent init_connect: their versions.
    pub pending: HashMap<Atom, u32>,
    /// Nodes we asked to disconnect: their nodedown is not a lost
    /// connection to report.
    pub removing: HashSet<Atom>,
    /// Visible peers with a live link.
    pub up: HashSet<Atom>,
    pub synced: Vec<Atom>,
    pub resolvers: HashMap<Atom, Resolver>,
    pub sessions: HashMap<Atom, Session>,
    pub syncers: Vec<Syncer>,
    pub lost: HashMap<(Atom, Atom), LostInfo>,
    /// Monitors set on pids of a node with no link at the time: if the
    /// dial fails and the node connects to us instead, the monitor
    /// request was lost with the dial, so it is made again at nodeup.
    pub unconfirmed: HashMap<Reference, Atom>,
    /// The last `global` lock went away through a DOWN, not a del_lock:
    /// a registration arriving now is a leftover of a dead registrar.
    pub global_lock_down: bool,
    /// connect_all and prevent_overlapping_partitions (both on, as OTP 25
    /// defaults them), until `prepare_shutdown`.
    pub pop: bool,
    /// Tells this incarnation's lost_connection reports from an earlier
    /// one's.
    pub xcreation: Term,
    next_tag: i64,
    next_op_id: i64,
}

impl Server {
    pub fn new(
        mb: Mailbox,
        shared: Arc<Shared>,
        (locker, registrar): (Pid, Pid),
        to_locker: UnboundedSender<LockerMsg>,
        internal: UnboundedSender<Internal>,
    ) -> Server {
        // As global.erl: a peer that links to the server and dies must not
        // take it down; its helpers dying must.
        mb.trap_exit(true);
        let node = mb.node();
        let xcreation = Term::Int(((rand::random::<u32>() as i64 & 0x3fff_ffff) << 32) | node.creation() as i64);
        Server {
            me: node.name().clone(),
            node,
            mb,
            shared,
            locker,
            registrar,
            to_locker,
            internal,
            known: BTreeMap::new(),
            pending: HashMap::new(),
            removing: HashSet::new(),
            up: HashSet::new(),
            synced: Vec::new(),
            resolvers: HashMap::new(),
            sessions: HashMap::new(),
            syncers: Vec::new(),
            lost: HashMap::new(),
            unconfirmed: HashMap::new(),
            global_lock_down: false,
            pop: true,
            xcreation,
            // Tags only need to be unique per incarnation; a random
            // start keeps a restarted node's tags apart from stale ones.
            next_tag: (rand::random::<u32>() as i64) << 16,
            next_op_id: 1,
        }
    }

    pub fn new_tag(&mut self) -> Term {
        self.next_tag += 1;
        Term::Int(self.next_tag)
    }

    pub fn new_op_id(&mut self) -> Term {
        self.next_op_id += 1;
        Term::Int(self.next_op_id)
    }

    pub async fn run(mut self, mut internal_rx: UnboundedReceiver<Internal>, mut events: broadcast::Receiver<NodeEvent>) -> Term {
        enum Next {
            Event(Result<NodeEvent, RecvError>),
            Internal(Option<Internal>),
            Msg(Option<Term>),
        }
        loop {
            let next = tokio::select! {
                biased;
                e = events.recv() => Next::Event(e),
                i = internal_rx.recv() => Next::Internal(i),
                m = self.mb.recv() => Next::Msg(m),
            };
            match next {
                Next::Event(Ok(NodeEvent::Up(n))) => self.nodeup(n),
                Next::Event(Ok(NodeEvent::Down { node, .. })) => {
                    self.drain_mailbox();
                    self.nodedown(node);
                }
                Next::Event(Err(RecvError::Lagged(k))) => {
                    tracing::warn!(missed = k, "global: node events lagged; resynchronising with the connection table");
                    self.drain_mailbox();
                    self.resync_connections();
                }
                Next::Event(Err(RecvError::Closed)) | Next::Internal(None) => return Term::atom("normal"),
                Next::Internal(Some(i)) => self.internal(i),
                Next::Msg(Some(m)) => {
                    if let Some(reason) = self.helper_exit(&m) {
                        return reason;
                    }
                    self.handle(m)
                }
                Next::Msg(None) => return Term::atom("killed"),
            }
        }
    }

    /// The locker or the registrar ended: global cannot work without
    /// them (global.erl stops, and with it the BEAM node).
    fn helper_exit(&self, m: &Term) -> Option<Term> {
        match m.as_tuple() {
            Some([tag, Term::Pid(p), reason]) if tag.is_atom("EXIT") && (*p == self.locker || *p == self.registrar) => {
                tracing::error!(pid = %p, ?reason, "global: a helper process died; global_name_server stops");
                Some(Term::tuple([Term::atom("helper_died"), reason.clone()]))
            }
            _ => None,
        }
    }

    /// Handles everything already in the mailbox, without waiting.
    fn drain_mailbox(&mut self) {
        for m in self.mb.drain() {
            self.handle(m);
        }
    }

    fn nodeup(&mut self, n: Atom) {
        if n == self.me || self.up.contains(&n) {
            return;
        }
        // Like the BEAM's global, only visible nodes take part.
        if self.node.peer_flags(&n).is_some_and(|f| f & crate::handshake::flags::PUBLISHED == 0) {
            return;
        }
        self.up.insert(n.clone());
        self.reconfirm_monitors(&n);
        self.handle_nodeup(n);
    }

    fn reconfirm_monitors(&mut self, n: &Atom) {
        let refs: Vec<Reference> = self.unconfirmed.iter().filter(|(_, node)| *node == n).map(|(r, _)| r.clone()).collect();
        for old in refs {
            self.unconfirmed.remove(&old);
            let entry = {
                let names = self.shared.names.read().unwrap();
                names.name_of_ref(&old).and_then(|name| names.get(&name).map(|e| (name, e.info.pid.clone())))
            };
            let Some((name, pid)) = entry else { continue };
            let new = self.mb.monitor(&pid);
            if self.shared.names.write().unwrap().replace_mref(&name, &old, new.clone()) {
                self.mb.demonitor(&old);
            } else {
                self.mb.demonitor(&new);
            }
        }
    }

    fn nodedown(&mut self, n: Atom) {
        if !self.up.remove(&n) {
            return;
        }
        self.syncers_nodedown(&n);
        self.unconfirmed.retain(|_, node| *node != n);
        self.handle_nodedown(n, super::sync::Down::Disconnected);
    }

    fn resync_connections(&mut self) {
        let connected: HashSet<Atom> = self.node.connected_nodes().into_iter().collect();
        let gone: Vec<Atom> = self.up.iter().filter(|n| !connected.contains(*n)).cloned().collect();
        for n in gone {
            self.nodedown(n);
        }
        for n in connected {
            self.nodeup(n);
        }
    }

    fn internal(&mut self, i: Internal) {
        match i {
            Internal::LockIsSet { node, tag, lock_id } => self.lock_is_set(node, tag, lock_id),
            Internal::ExchangeOps { node, tag, ops, resolved } => self.exchange_ops(node, tag, ops, resolved),
            Internal::ExtraNodedown(n) => {
                self.syncers_nodedown(&n);
                self.up.remove(&n);
                self.handle_nodedown(n, super::sync::Down::Disconnected);
            }
            Internal::Again(m) => self.handle(m),
            Internal::Sync { nodes, reply } => self.start_sync(nodes, SyncReply::Api(reply)),
        }
    }

    fn handle(&mut self, msg: Term) {
        match messages::parse(&msg) {
            Ok(Incoming::Call { from, caller, call }) => self.call(from, caller, call),
            Ok(Incoming::Cast(c)) => self.cast(c),
            Ok(Incoming::Info(i)) => self.info(i, msg),
            Err(e) => tracing::warn!(reason = %e.0, "global_name_server: malformed message dropped"),
        }
    }

    fn call(&mut self, from: Term, caller: Pid, call: Call) {
        let reply = match call {
            Call::Register(info) => {
                self.ins_name(info, None, Origin::Pid(caller), &Term::nil());
                Term::atom("yes")
            }
            Call::Unregister(name) => {
                self.delete_global_name(&name);
                Term::atom("ok")
            }
            Call::RegisterExt { info, reg_node } => {
                self.ins_name(info, Some(reg_node), Origin::Pid(caller), &Term::nil());
                Term::atom("yes")
            }
            Call::SetLock { res, req } => Term::atom(if self.set_lock(res, req, caller) { "true" } else { "false" }),
            Call::DelLock { res, req } => {
                self.del_lock(&res, &req, &caller);
                Term::atom("true")
            }
            Call::GetKnown => messages::atoms_term(&self.known.keys().cloned().collect::<Vec<_>>()),
            Call::GetSynced => messages::atoms_term(&self.synced),
            Call::Sync(nodes) => {
                self.start_sync(nodes, SyncReply::Call(from));
                return;
            }
            Call::GetProtocolVersion => Term::Int(VSN as i64),
            Call::GetNamesExt => messages::ext_term(&self.shared.names.read().unwrap().ext_list()),
            Call::Malformed { what, reply } => {
                tracing::warn!(%caller, what, "global_name_server: malformed call answered");
                reply
            }
            Call::Unknown(req) => {
                tracing::warn!(%caller, request = ?req, "global_name_server: unsupported call answered with an error");
                Term::tuple([Term::atom("error"), Term::atom("unsupported")])
            }
        };
        self.node.reply(&from, reply);
    }

    fn cast(&mut self, c: Cast) {
        match c {
            Cast::InitConnect { his_vsn, vsn, his_tag, node, his_locker } => self.init_connect(vsn, node, his_locker, his_tag, his_vsn),
            Cast::Exchange { node, names, tag } => self.exchange_cast(node, names, tag),
            Cast::Resolved { node, ops, known, names_ext, tag } => self.resolved_cast(node, ops, known, names_ext, tag),
            Cast::NewNodes { node, ops, names_ext, nodes, extra } => self.new_nodes(node, ops, names_ext, nodes, extra),
            Cast::InSync { node } => self.in_sync(node),
            Cast::LockSet { pid, set, tag } => {
                // The 5-tuple goes to the locker only for the current
                // session; the old form always does.
                let current = match &tag {
                    Some(t) => self.get_my(&pid.node) == *t,
                    None => true,
                };
                if current {
                    let _ = self.to_locker.send(LockerMsg::LockSet { pid, set, tag });
                }
            }
            Cast::Obsolete => {}
        }
    }

    fn info(&mut self, i: Info, raw: Term) {
        match i {
            Info::Whereis { name, from } => {
                if self.shared.global_lock_set() {
                    // Names may be changing: ask again later, as
                    // global.erl's send_again does.
                    let tx = self.internal.clone();
                    tokio::spawn(async move {
                        super::lockops::random_sleep(5).await;
                        let _ = tx.send(Internal::Again(raw));
                    });
                } else {
                    let pid = super::where_(&self.node, &self.shared, &name);
                    self.node.reply(&from, pid.map(Term::Pid).unwrap_or_else(|| Term::atom("undefined")));
                }
            }
            Info::LostConnection { node_a, xcreation, op_id, node_b } => self.lost_connection(node_a, xcreation, op_id, node_b),
            Info::RemoveConnection { node } => self.remove_connection(node),
            Info::CancelConnect { node, tag } => self.cancel_connect(node, tag),
            Info::InitConnectAck { node, his_my_tag, his_his_tag } => self.init_connect_ack(node, his_my_tag, his_his_tag),
            Info::PrepareShutdown { from, tag } => {
                self.pop = false;
                self.node.send(&from, Term::tuple([tag, Term::atom("ok")]));
            }
            Info::Down { reference } => self.down(&reference),
            Info::Exit { pid, reason } => tracing::debug!(%pid, ?reason, "global_name_server: exit of a linked process ignored"),
        }
    }

    // -----------------------------------------------------------------
    // Names and locks.

    /// Inserts or replaces a name and monitors its pid; drops it again if
    /// whoever sent it no longer holds the `global` lock here.
    pub fn ins_name(&mut self, info: NameInfo, reg_node: Option<Atom>, origin: Origin, extra: &Term) {
        let mref = self.mb.monitor(&info.pid);
        if info.pid.node != self.me && !self.up.contains(&info.pid.node) {
            self.unconfirmed.insert(mref.clone(), info.pid.node.clone());
        }
        let name = info.name.clone();
        let ext = reg_node.map(|reg_node| messages::ExtName { name: info.name.clone(), pid: info.pid.clone(), reg_node });
        let old = {
            let mut names = self.shared.names.write().unwrap();
            let old = names.insert(info, mref);
            if let Some(e) = ext {
                names.set_ext(e);
            }
            old
        };
        if let Some(old) = old {
            self.mb.demonitor(&old.mref);
        }
        if !self.lock_still_set(&origin, extra) {
            tracing::debug!(?name, "global: registration from a lock holder that is gone; dropped");
            self.delete_global_name(&name);
        }
    }

    fn lock_still_set(&self, origin: &Origin, extra: &Term) -> bool {
        let locks = self.shared.locks.read().unwrap();
        match (locks.get(&Term::atom("global")), origin) {
            (Some(l), Origin::Pid(p)) => l.holders.iter().any(|(h, _)| h == p),
            (Some(l), Origin::Node(_)) => extra_lock_req(extra).is_some_and(|req| req == l.req),
            (None, _) => !self.global_lock_down,
        }
    }

    pub fn delete_global_name(&mut self, name: &Term) {
        let e = self.shared.names.write().unwrap().remove(name);
        if let Some(e) = e {
            self.unconfirmed.remove(&e.mref);
            self.mb.demonitor(&e.mref);
        }
    }

    fn set_lock(&mut self, res: Term, req: Term, pid: Pid) -> bool {
        let id = LockId { res, req };
        match self.shared.locks.read().unwrap().can_set(&id.res, &id.req, Some(&pid)) {
            super::locks::Grant::No => return false,
            super::locks::Grant::Yes { already: true } => return true,
            super::locks::Grant::Yes { already: false } => {}
        }
        let mref = self.mb.monitor(&pid);
        self.shared.locks.write().unwrap().add_holder(id.res, id.req, pid, mref);
        true
    }

    fn del_lock(&mut self, res: &Term, req: &Term, pid: &Pid) {
        let released = self.shared.locks.write().unwrap().del(res, req, pid);
        if let Some(r) = released {
            self.mb.demonitor(&r.mref);
            if r.whole && r.res.is_atom("global") {
                self.global_lock_down = false;
            }
        }
    }

    fn down(&mut self, reference: &Reference) {
        let released = self.shared.locks.write().unwrap().release_ref(reference);
        if let Some(r) = released {
            if r.whole && r.res.is_atom("global") {
                self.global_lock_down = true;
            }
        }
        let mut names = self.shared.names.write().unwrap();
        if let Some(name) = names.name_of_ref(reference) {
            names.remove(&name);
        }
    }

    // -----------------------------------------------------------------
    // Sending.

    /// `gen_server:cast({global_name_server, Node}, Msg)` (`msg` is
    /// already `{'$gen_cast', _}`): connects if needed.
    pub fn cast_to(&self, node: &Atom, msg: Term) {
        self.mb.send_to(&Dest::Name { name: Atom::new(GNS), node: node.clone() }, msg);
    }

    /// A plain message that must not bring a link up (global.erl's
    /// `gns_volatile_send`): dropped if `node` is not connected.
    pub fn volatile_send(&self, node: &Atom, msg: Term) {
        if self.node.peer_flags(node).is_some() {
            self.mb.send_to(&Dest::Name { name: Atom::new(GNS), node: node.clone() }, msg);
        }
    }

    // -----------------------------------------------------------------
    // sync/0.

    pub fn start_sync(&mut self, nodes: Vec<Atom>, reply: SyncReply) {
        // A link made just now may not have reached this server as a
        // nodeup yet (node events arrive through a broadcast channel), and
        // a node not yet up would be skipped, so sync would answer before
        // the exchange with it: names registered meanwhile would reach
        // only this node. OTP's global:sync/0 works from nodes(), not from
        // its own nodeups; so take such nodes up now (the event, when it
        // comes, finds them up).
        let connected: HashSet<Atom> = self.node.connected_nodes().into_iter().collect();
        for n in nodes.iter().filter(|n| connected.contains(*n)) {
            self.nodeup(n.clone());
        }
        let waiting: HashSet<Atom> =
            nodes.into_iter().filter(|n| *n != self.me && !self.synced.contains(n) && self.up.contains(n)).collect();
        let mut s = Syncer { waiting, reply: Some(reply) };
        if s.waiting.is_empty() {
            self.answer_sync(&mut s);
        } else {
            self.syncers.push(s);
        }
    }

    fn answer_sync(&self, s: &mut Syncer) {
        match s.reply.take() {
            Some(SyncReply::Call(from)) => self.node.reply(&from, Term::atom("ok")),
            Some(SyncReply::Api(tx)) => {
                let _ = tx.send(());
            }
            None => {}
        }
    }

    pub fn syncers_synced(&mut self, n: &Atom) {
        self.syncers_remove(n);
    }

    fn syncers_nodedown(&mut self, n: &Atom) {
        self.syncers_remove(n);
    }

    fn syncers_remove(&mut self, n: &Atom) {
        let mut syncers = std::mem::take(&mut self.syncers);
        for s in syncers.iter_mut() {
            s.waiting.remove(n);
            if s.waiting.is_empty() {
                self.answer_sync(s);
            }
        }
        syncers.retain(|s| s.reply.is_some());
        self.syncers = syncers;
    }
}

/// The lock requester id in a new_nodes/resolved ExtraInfo
/// `[{vsn, V}, {lock, {global, LockReqId}}]`.
fn extra_lock_req(extra: &Term) -> Option<Term> {
    let Term::List(items) = extra else { return None };
    items.iter().find_map(|i| match i.as_tuple() {
        Some([k, v]) if k.is_atom("lock") => match v.as_tuple() {
            Some([g, req]) if g.is_atom("global") => Some(req.clone()),
            _ => None,
        },
        _ => None,
    })
}
