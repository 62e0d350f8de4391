//! The supervisor member as one task with three mailboxes, the three
//! processes Horde's calls reach on a member:
//!
//! - `Sup`: Horde's `DynamicSupervisorImpl` (start_child, proxied
//!   operations, terminate_child, members, quorum, which/count_children);
//!   Elixir members monitor it to learn that this member died.
//! - `Sup.ProcessesSupervisor`: what other members ask of this node's
//!   children (`which_children`, `count_children`,
//!   `terminate_child_by_id`, `send_exit_signal`).
//! - `Sup.Crdt`: the DeltaCrdt peer ([`CrdtPeer`]).
//!
//! The CRDT holds `{:member, {Sup, node}} => 1`, `{:member_node_info,
//! {Sup, node}} => %Member{}` and `{:process, id} => {{Sup, node}, spec,
//! pid}` (running) or `{nil, spec}` (relinquished: the member the ring
//! chooses starts it). Every read change, local or a peer's, goes through
//! [`Supervisor::flush`], which is `DynamicSupervisorImpl`'s
//! `{:crdt_update, diffs}` clause.
//!
//! Children are Rust state machines ([`ChildTypes`]), monitored from the
//! `ProcessesSupervisor` mailbox and restarted per their spec's `restart`
//! (`:permanent` default, `:transient`, `:temporary`) within
//! `max_restarts` in `max_seconds`.

use super::members::{Distribution, Member, Status};
use super::{ChildInfo, LeaveReport, Redistribution};
use crate::horde::merkle_diff::field;
use crate::horde::peer::{crdt_name, crdt_neighbours, key_kind, short, visible_nodes, AutoMembers, CrdtPeer};
use crate::horde::store::Change;
use crate::horde::term_key::{term_eq, TermKey};
use crate::horde::HordeRegistry;
use crate::migration::replica::placed;
use crate::migration::replica::placement::ReplicaCtx;
use crate::node::{gen_call_parts, NodeEvent};
use crate::process::{Dest, Mailbox};
use crate::processhub::child::ChildCtl;
use crate::processhub::types::{ChildTypes, StartOpts};
use crate::processhub::Dialect;
use crate::term::{Atom, Pid, Reference, Term};
use crate::Node;
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{broadcast, mpsc, oneshot};

/// Where a start from the Rust API went: started (or refused) here, or
/// to be asked of another member's `Sup` (by the caller, so a slow
/// member never holds this one up).
pub(crate) enum Route {
    Done(Term),
    Ask(Dest, Term),
}

/// Requests from the Rust API.
pub(crate) enum Request {
    StartChild { spec: Term, reply: oneshot::Sender<Route> },
    Children { reply: oneshot::Sender<Vec<ChildInfo>> },
    Members { reply: oneshot::Sender<Vec<Member>> },
    Leave { timeout: Duration, reply: oneshot::Sender<LeaveReport> },
}

pub(crate) struct Config {
    pub name: Atom,
    pub auto: bool,
    pub members: Vec<Atom>,
    pub distribution: Distribution,
    pub redistribution: Redistribution,
    pub sync_interval: Duration,
    pub max_items: usize,
    pub max_restarts: usize,
    pub max_seconds: Duration,
    pub types: ChildTypes,
    /// Children whose start arguments hold this field are registered
    /// under its value in this registry.
    pub via: Option<(HordeRegistry, Atom)>,
    /// State handoff: children whose start arguments hold this field
    /// hand their state, under its value, to the process that replaces
    /// them when they move (docs/horde.md).
    pub handoff: Option<Atom>,
    /// Replicas of the children's states (types with replicas), keyed by
    /// the handoff or registry key; the children this member takes over
    /// from a dead member start from them (docs/replicas.md, "Processes
    /// Horde places").
    pub replicas: Option<Arc<ReplicaCtx>>,
}

/// How long a frozen child waits for its replacement's pid before it
/// stops (its kept messages are then dropped, and logged).
const FORWARD_WAIT: Duration = Duration::from_secs(30);
/// How long a moved child keeps forwarding what still reaches it.
const RETENTION: Duration = Duration::from_secs(5);

#[derive(Clone, Copy, PartialEq, Debug)]
enum Restart {
    Permanent,
    Transient,
    Temporary,
}

/// What happens when a local child's DOWN arrives.
#[derive(Clone, Copy, PartialEq, Debug)]
enum Ending {
    /// Not asked to stop: a crash or its own exit; restart per spec.
    Own,
    /// Stopped to run elsewhere: relinquish it to the cluster.
    Relinquish,
    /// Stopped for good (terminate_child): already forgotten.
    Forget,
}

struct Local {
    id: Term,
    spec: Term,
    /// The handoff key (the value of the handoff field), if any.
    key: Option<Term>,
    restart: Restart,
    ctl: mpsc::UnboundedSender<ChildCtl>,
    ending: Ending,
}

/// A child anywhere in the cluster, as `processes_by_id` holds it.
#[derive(Clone)]
struct Placed {
    member: Term,
    spec: Term,
    pid: Pid,
}

/// A child that handed its state over and keeps its messages until the
/// pid of its replacement is known.
struct Forwarding {
    ctl: mpsc::UnboundedSender<ChildCtl>,
    until: Instant,
}

struct HeldRelinquish {
    id: Term,
    spec: Term,
    written: Instant,
    until: Instant,
}

/// How long a relinquish waits for every neighbour to be offered the
/// state first (a neighbour that never acks does not hold it longer).
const RELINQUISH_WAIT: Duration = Duration::from_secs(2);
/// How often local children's registry names are checked
/// (`recheck_names`).
const NAME_CHECK: Duration = Duration::from_secs(5);
/// How long a relinquished child with a handoff key waits for its state
/// before it starts fresh.
const STATE_WAIT: Duration = Duration::from_secs(1);

struct Leaving {
    deadline: Instant,
    relinquished: usize,
    reply: oneshot::Sender<LeaveReport>,
}

pub(crate) struct Supervisor {
    cfg: Config,
    node: Node,
    sup: Mailbox,
    procs: Mailbox,
    peer: CrdtPeer,
    /// `state.members` (names) and `state.members_info`.
    members: Vec<Term>,
    info: HashMap<TermKey, Member>,
    processes: HashMap<TermKey, Placed>,
    local: HashMap<Pid, Local>,
    forwarding: HashMap<TermKey, Forwarding>,
    restarts: VecDeque<Instant>,
    sup_monitors: HashMap<Reference, Term>,
    waiting_for_quorum: Vec<Term>,
    shutting_down: bool,
    leaving: Option<Leaving>,
    quorum_lost: bool,
    auto: AutoMembers,
    /// Relinquishes held until every neighbour has been offered the
    /// handed-over state written before them (see `release_relinquishes`).
    relinquish_after: Vec<HeldRelinquish>,
    /// Relinquished children this member starts once their handed-over
    /// state has arrived, or after `STATE_WAIT`.
    awaiting_state: HashMap<TermKey, (Term, Instant)>,
    pending: VecDeque<Change>,
    /// When the local children's registry names were last checked.
    names_checked: Instant,
}

fn restart_of(spec: &Term) -> Restart {
    match field(spec, "restart") {
        Some(t) if t.is_atom("transient") => Restart::Transient,
        Some(t) if t.is_atom("temporary") => Restart::Temporary,
        _ => Restart::Permanent,
    }
}

fn module_of(spec: &Term) -> Term {
    match field(spec, "start").and_then(|s| s.as_tuple()) {
        Some([m, _, _]) => m.clone(),
        _ => Term::atom("undefined"),
    }
}

/// The value of `key` in the map that is the spec's first start
/// argument (`start: {M, F, [%{name: n}]}`).
fn arg_field(spec: &Term, key: &Atom) -> Option<Term> {
    match field(spec, "start").and_then(|s| s.as_tuple()) {
        Some([_, _, Term::List(args)]) => args.first().and_then(|a| field(a, key.as_str())).cloned(),
        _ => None,
    }
}

fn handoff_key(key: &Term) -> Term {
    Term::tuple([Term::atom("erlnode_handoff"), key.clone()])
}

fn process_key(id: &Term) -> Term {
    Term::tuple([Term::atom("process"), id.clone()])
}

fn with_id(spec: &Term, id: Term) -> Term {
    let Term::Map(m) = spec else { return spec.clone() };
    let mut m: Vec<(Term, Term)> = m.iter().filter(|(k, _)| !k.is_atom("id")).cloned().collect();
    m.push((Term::atom("id"), id));
    Term::Map(m)
}

/// Horde's `randomize_child_id/1`: `:rand.uniform(2^128)`.
fn random_id() -> Term {
    let v: u128 = rand::random::<u128>().max(1);
    Term::Big(v.into())
}

fn is_shutdown(reason: &Term) -> bool {
    reason.is_atom("normal") || reason.is_atom("shutdown") || matches!(reason.as_tuple(), Some([t, _]) if t.is_atom("shutdown"))
}

fn error(reason: Term) -> Term {
    Term::tuple([Term::atom("error"), reason])
}

/// Horde's `proxy_to_node/4` reply when the member to proxy to is not
/// `:alive`.
fn not_alive() -> Term {
    error(Term::tuple([
        Term::atom("node_dead_or_shutting_down"),
        Term::binary(&b"the node responsible for this process is shutting down or dead, try again soon"[..]),
    ]))
}

impl Supervisor {
    fn me(&self) -> Term {
        self.member_of(self.node.name())
    }

    fn member_of(&self, node: &Atom) -> Term {
        Term::tuple([Term::Atom(self.cfg.name.clone()), Term::Atom(node.clone())])
    }

    /// Whether `member` is `:alive` (the only status Horde proxies to).
    fn is_alive(&self, member: &Term) -> bool {
        self.info.get(&TermKey(member.clone())).is_some_and(|m| m.status == Status::Alive)
    }

    fn status(&self) -> Status {
        if self.shutting_down {
            Status::ShuttingDown
        } else {
            Status::Alive
        }
    }

    /// `members(state)`: the infos of the current members (an unknown
    /// one is `:uninitialized`).
    fn member_infos(&self) -> Vec<Member> {
        self.members.iter().map(|m| self.info.get(&TermKey(m.clone())).cloned().unwrap_or_else(|| Member::new(m.clone(), Status::Uninitialized))).collect()
    }

    fn choose(&self, spec: &Term) -> Result<Term, Term> {
        self.cfg.distribution.choose(spec, &self.member_infos()).map_err(|e| e.to_term())
    }

    fn put(&mut self, k: Term, v: Term) {
        let ch = self.peer.put(k, v);
        self.pending.extend(ch);
    }

    fn delete(&mut self, k: Term) {
        let ch = self.peer.delete(&k);
        self.pending.extend(ch);
    }

    /// `{:process, id} => {this member, spec, pid}`, in the CRDT and the
    /// table.
    fn record_running(&mut self, id: Term, spec: Term, pid: Pid) {
        let me = self.me();
        self.put(process_key(&id), Term::tuple([me.clone(), spec.clone(), Term::Pid(pid.clone())]));
        self.processes.insert(TermKey(id), Placed { member: me, spec, pid });
    }

    /// `{:process, id} => {nil, spec}`: the member the ring chooses
    /// starts it.
    fn relinquish(&mut self, id: Term, spec: Term) {
        self.put(process_key(&id), Term::tuple([Term::atom("nil"), spec]));
        self.processes.remove(&TermKey(id));
    }

    /// The child is gone for good: out of the CRDT and the table.
    fn disown(&mut self, id: &Term) {
        self.delete(process_key(id));
        self.processes.remove(&TermKey(id.clone()));
    }

    pub async fn run(mut self, mut requests: mpsc::UnboundedReceiver<Request>, mut events: broadcast::Receiver<NodeEvent>) -> Term {
        self.set_own_node_status(true);
        let initial = crate::horde::peer::initial_members(&self.node, &self.cfg.name, self.cfg.auto, &self.cfg.members);
        self.set_members(initial);
        self.flush().await;
        let mut tick = crate::horde::peer::sync_ticker(self.cfg.sync_interval);
        // Gives the worker back now and then (see `Yielder`).
        let mut yielder = crate::process::Yielder::new();
        loop {
            tokio::select! {
                biased;
                r = requests.recv() => match r {
                    Some(r) => self.request(r).await,
                    None => return Term::atom("normal"),
                },
                m = self.sup.recv() => match m {
                    Some(m) => self.sup_message(m).await,
                    None => return Term::atom("normal"),
                },
                m = self.procs.recv() => match m {
                    Some(m) => self.procs_message(m).await,
                    None => return Term::atom("normal"),
                },
                e = events.recv(), if self.cfg.auto => {
                    if matches!(e, Err(broadcast::error::RecvError::Closed)) {
                        return Term::atom("normal");
                    }
                    let visible = visible_nodes(&self.node).iter().map(|n| self.member_of(n)).collect();
                    let name = self.cfg.name.clone();
                    let m = self.auto.on_event(&self.members, &e, visible, |n| Term::tuple([Term::Atom(name.clone()), Term::Atom(n.clone())]));
                    self.set_members(m);
                }
                // Before the CRDT's mailbox, which the peers' syncs can keep
                // from ever being empty: see the registry's loop.
                _ = tick.tick() => {
                    if let Some(m) = self.auto.prune(&self.members) {
                        self.set_members(m);
                    }
                    self.expire_forwarding();
                    if self.names_checked.elapsed() >= NAME_CHECK {
                        self.names_checked = Instant::now();
                        self.recheck_names().await;
                    }
                    let ch = self.peer.tick();
                    self.pending.extend(ch);
                }
                m = self.peer.mb.recv() => match m {
                    Some(m) => {
                        let ch = self.peer.on_messages(m);
                        self.pending.extend(ch);
                    }
                    None => return Term::atom("normal"),
                },
            }
            self.release_relinquishes();
            self.start_awaiting().await;
            self.flush().await;
            if self.check_leave() {
                return Term::atom("shutdown");
            }
            yielder.after_turn().await;
        }
    }

    /// `handle_info({:crdt_update, diffs})`, for every change queued.
    async fn flush(&mut self) {
        while !self.pending.is_empty() {
            let diffs: Vec<Change> = self.pending.drain(..).collect();
            let mut membership = false;
            for d in &diffs {
                membership |= self.update_member(d);
            }
            for d in &diffs {
                self.update_process(d).await;
            }
            if membership {
                self.monitor_supervisors();
                self.set_own_node_status(false);
                self.handle_quorum_change();
                self.set_crdt_neighbours();
                self.handoff_processes().await;
            }
            if std::mem::take(&mut self.quorum_lost) {
                let pids: Vec<Pid> = self.local.keys().cloned().collect();
                for pid in pids {
                    self.move_away(&pid).await;
                }
            }
        }
    }

    /// Returns whether the change is a membership change.
    fn update_member(&mut self, d: &Change) -> bool {
        let (key, value) = match d {
            Change::Add(k, v) => (k, Some(v)),
            Change::Remove(k) => (k, None),
        };
        let Some((kind, name)) = key_kind(key) else { return false };
        match (kind, value) {
            ("member", Some(_)) => {
                if !self.members.iter().any(|m| term_eq(m, name)) {
                    self.members.push(name.clone());
                }
                self.info.entry(TermKey(name.clone())).or_insert_with(|| Member::new(name.clone(), Status::Uninitialized));
                true
            }
            ("member", None) => {
                self.members.retain(|m| !term_eq(m, name));
                true
            }
            ("member_node_info", Some(v)) => {
                match Member::from_term(v) {
                    Some(m) => {
                        self.info.insert(TermKey(name.clone()), m);
                    }
                    None => tracing::warn!(supervisor = %self.cfg.name, value = %short(v), "horde supervisor: member info is not a Member struct; ignored"),
                }
                true
            }
            ("member_node_info", None) => {
                self.info.remove(&TermKey(name.clone()));
                true
            }
            _ => false,
        }
    }

    async fn update_process(&mut self, d: &Change) {
        match d {
            Change::Add(k, v) => {
                let Some(("process", id)) = key_kind(k) else { return };
                match v.as_tuple() {
                    Some([nil, spec]) if nil.is_atom("nil") => {
                        let running = self.local.iter().find(|(_, l)| term_eq(&l.id, id)).map(|(p, l)| (p.clone(), l.spec.clone()));
                        if let Some((pid, spec)) = running {
                            // The entry read back as relinquished although
                            // this member runs the child (an older write
                            // resurfaced, see `Store::put`): say so again.
                            tracing::debug!(supervisor = %self.cfg.name, child = ?id, "horde supervisor: relinquished child already runs here; its entry is written again");
                            self.record_running(id.clone(), spec, pid);
                        } else if self.choose(spec).is_ok_and(|n| term_eq(&n, &self.me())) && !self.shutting_down {
                            let key = self.cfg.handoff.as_ref().and_then(|f| arg_field(spec, f));
                            let state_here = key.as_ref().is_some_and(|k| self.peer.crdt.store.read(&handoff_key(k)).is_some_and(|v| !v.is_atom("erlnode_handoff_taken")));
                            if key.is_some() && !state_here {
                                // Its state may still be on its way: two
                                // writes made during one sync can arrive
                                // in either order.
                                self.awaiting_state.insert(TermKey(id.clone()), (spec.clone(), Instant::now() + STATE_WAIT));
                            } else {
                                let _ = self.add_child(spec.clone()).await;
                            }
                        }
                    }
                    Some([member, spec, Term::Pid(pid)]) => {
                        self.awaiting_state.remove(&TermKey(id.clone()));
                        if !term_eq(member, &self.me()) {
                            if let Some(f) = self.forwarding.remove(&TermKey(id.clone())) {
                                let _ = f.ctl.send(ChildCtl::Forward { to: pid.clone(), retention: RETENTION });
                            }
                        }
                        self.processes.insert(TermKey(id.clone()), Placed { member: member.clone(), spec: spec.clone(), pid: pid.clone() });
                    }
                    _ => tracing::warn!(supervisor = %self.cfg.name, value = %short(v), "horde supervisor: process entry of an unknown shape; ignored"),
                }
            }
            Change::Remove(k) => {
                if let Some(("process", id)) = key_kind(k) {
                    self.awaiting_state.remove(&TermKey(id.clone()));
                    self.processes.remove(&TermKey(id.clone()));
                }
            }
        }
    }

    /// Writes this member's status if it changed (`set_own_node_status`).
    fn set_own_node_status(&mut self, force: bool) {
        let me = Member::new(self.me(), self.status());
        if !force && self.info.get(&TermKey(me.name.clone())) == Some(&me) {
            return;
        }
        self.info.insert(TermKey(me.name.clone()), me.clone());
        self.put(Term::tuple([Term::atom("member_node_info"), me.name.clone()]), me.to_term());
    }

    /// `set_members/2`.
    fn set_members(&mut self, new: Vec<Term>) {
        let removed: Vec<Term> = self.members.iter().filter(|m| !new.iter().any(|n| term_eq(n, m))).cloned().collect();
        let added: Vec<Term> = new.iter().filter(|n| !self.members.iter().any(|m| term_eq(n, m))).cloned().collect();
        for m in &removed {
            self.delete(Term::tuple([Term::atom("member"), m.clone()]));
            self.delete(Term::tuple([Term::atom("member_node_info"), m.clone()]));
        }
        for m in &added {
            self.put(Term::tuple([Term::atom("member"), m.clone()]), Term::Int(1));
        }
        for m in &new {
            self.info.entry(TermKey(m.clone())).or_insert_with(|| Member::new(m.clone(), Status::Uninitialized));
        }
        self.members = new;
        self.monitor_supervisors();
        self.handle_quorum_change();
        self.set_crdt_neighbours();
    }

    /// `monitor_supervisors/1`: a monitor on each alive member's `Sup`.
    fn monitor_supervisors(&mut self) {
        let me = self.me();
        for m in self.member_infos() {
            if m.status != Status::Alive || term_eq(&m.name, &me) || self.sup_monitors.values().any(|n| term_eq(n, &m.name)) {
                continue;
            }
            if let Some([Term::Atom(name), Term::Atom(node)]) = m.name.as_tuple() {
                let r = self.sup.monitor_name(name.as_str(), node.as_str());
                self.sup_monitors.insert(r, m.name.clone());
            }
        }
    }

    /// `handle_quorum_change/1`. Without quorum Horde stops its
    /// ProcessesSupervisor (and with it the member's whole tree); here the
    /// local children stop and are relinquished, so the side that has
    /// quorum starts them once it hears of it.
    fn handle_quorum_change(&mut self) {
        if self.cfg.distribution.has_quorum(&self.member_infos()) {
            for from in std::mem::take(&mut self.waiting_for_quorum) {
                self.sup.reply(&from, Term::atom("ok"));
            }
        } else if !self.local.is_empty() {
            tracing::warn!(supervisor = %self.cfg.name, children = self.local.len(), "horde supervisor: quorum lost; stopping this member's children");
            self.quorum_lost = true;
        }
    }

    fn set_crdt_neighbours(&mut self) {
        let n = crdt_neighbours(&self.me(), &self.members);
        let ch = self.peer.set_neighbours(n);
        self.pending.extend(ch);
    }

    /// `handoff_processes/1`, on every membership change.
    async fn handoff_processes(&mut self) {
        let me = self.me();
        let all: Vec<(Term, Placed)> = self.processes.iter().map(|(k, p)| (k.0.clone(), p.clone())).collect();
        let mut taken_over = vec![];
        for (id, p) in all {
            let Ok(chosen) = self.choose(&p.spec) else { continue };
            if term_eq(&chosen, &p.member) {
                continue;
            }
            if term_eq(&p.member, &me) {
                if self.cfg.redistribution == Redistribution::Active && self.local.contains_key(&p.pid) {
                    tracing::debug!(supervisor = %self.cfg.name, child = %short(&id), to = %short(&chosen), "horde supervisor: redistributing");
                    self.move_away(&p.pid).await;
                }
            } else if term_eq(&chosen, &me) {
                let dead = self.info.get(&TermKey(p.member.clone())).is_some_and(|m| m.status == Status::Dead);
                if dead && !self.shutting_down {
                    self.disown(&id);
                    taken_over.push(with_id(&p.spec, random_id()));
                }
            }
        }
        // A dead member's children, from their replicas where they have
        // them (asked for all at once: a member may take hundreds).
        let nodes: Vec<Atom> = std::iter::once(self.node.name().clone()).chain(self.node.connected_nodes()).collect();
        let fetches = taken_over.iter().map(|spec| {
            let (node, nodes, name) = (&self.node, &nodes, self.replica_name(spec));
            async move { placed::fetch(node, nodes, &name?).await }
        });
        let fetched = futures_util::future::join_all(fetches).await;
        for (spec, f) in taken_over.into_iter().zip(fetched) {
            let _ = self.add_child_from(spec, f).await;
        }
    }

    /// The replica name of `spec`'s child, when this member replicates
    /// and the child has a key of a kind a name can be made of.
    fn replica_name(&self, spec: &Term) -> Option<Atom> {
        self.cfg.replicas.as_ref()?;
        let field = self.cfg.handoff.as_ref().or(self.cfg.via.as_ref().map(|(_, f)| f))?;
        placed::horde_name(&self.cfg.name, &arg_field(spec, field)?)
    }

    /// Starts `spec` here (`add_child/2`); the reply Horde gives.
    async fn add_child(&mut self, spec: Term) -> Term {
        self.add_child_from(spec, None).await
    }

    /// [`Self::add_child`], starting from a replica's state when given.
    async fn add_child_from(&mut self, spec: Term, replica: Option<placed::Fetched>) -> Term {
        let id = field(&spec, "id").cloned().unwrap_or(Term::atom("undefined"));
        match self.start_local_from(&id, &spec, replica).await {
            Ok(pid) => {
                self.record_running(id, spec, pid.clone());
                Term::tuple([Term::atom("ok"), Term::Pid(pid)])
            }
            Err(reason) => {
                tracing::warn!(supervisor = %self.cfg.name, module = %short(&module_of(&spec)), reason = %short(&reason), "horde supervisor: child not started");
                error(reason)
            }
        }
    }

    /// Starts the Rust type of `spec`'s module, monitored from the
    /// ProcessesSupervisor mailbox, and registers it when asked to.
    async fn start_local(&mut self, id: &Term, spec: &Term) -> Result<Pid, Term> {
        self.start_local_from(id, spec, None).await
    }

    /// [`Self::start_local`]; the state the child starts from is the one
    /// handed over in the CRDT, else `replica`'s (a dead member's child).
    async fn start_local_from(&mut self, id: &Term, spec: &Term, replica: Option<placed::Fetched>) -> Result<Pid, Term> {
        let key = self.cfg.handoff.as_ref().and_then(|f| arg_field(spec, f));
        let handed = key.as_ref().and_then(|k| self.take_handed_state(spec, k));
        let name = self.replica_name(spec);
        let mut opts = StartOpts { replica: None, initial: handed.map(|(v, s)| (v, s, 0)) };
        if let (Some(ctx), Some(n)) = (&self.cfg.replicas, &name) {
            opts.replica = Some((ctx.clone(), n.clone()));
        }
        // A handed-over state is newer than any replica: it wins.
        let restored = replica.filter(|f| opts.restore(f)).zip(name);
        let started = self.cfg.types.start_with(&self.node, id, spec, Dialect::V0_4_1, opts).await?;
        let pid = started.pid;
        tracing::debug!(supervisor = %self.cfg.name, child = ?id, %pid, args = ?field(spec, "start"), "horde supervisor: child started");
        if let Some((f, name)) = &restored {
            tracing::info!(supervisor = %self.cfg.name, %name, %pid, seq = f.seq, dead_owner = %f.owner, "horde supervisor: child of a dead member started from its replica");
            placed::drop_dead_owner(&self.procs, name, f);
        }
        self.procs.monitor(&pid);
        self.local.insert(pid.clone(), Local { id: id.clone(), spec: spec.clone(), key, restart: restart_of(spec), ctl: started.ctl, ending: Ending::Own });
        if let Some((reg, key_field)) = &self.cfg.via {
            if let Some(name) = arg_field(spec, key_field) {
                if let Err(e) = reg.register_name(name.clone(), Term::atom("nil"), &pid).await {
                    tracing::warn!(supervisor = %self.cfg.name, key = %short(&name), error = %e, "horde supervisor: child not registered");
                }
            }
        }
        Ok(pid)
    }

    /// Local children whose registry name nobody holds take it again.
    /// A Horde member fills its registry table from its CRDT's diffs, after
    /// the write, so one that processes a dead member's removal in between
    /// drops a key just registered anew for that member's restarted child
    /// (Horde.RegistryImpl); without this the child would run unnamed for
    /// good. A name held by another pid is left to Horde's conflict rule.
    async fn recheck_names(&mut self) {
        let Some((reg, key_field)) = self.cfg.via.clone() else { return };
        let owned: Vec<(Pid, Term)> = self
            .local
            .iter()
            .filter(|(_, l)| l.ending == Ending::Own)
            .filter_map(|(p, l)| Some((p.clone(), arg_field(&l.spec, &key_field)?)))
            .collect();
        for (pid, name) in owned {
            if reg.lookup(&name).is_none() {
                tracing::warn!(supervisor = %self.cfg.name, key = %short(&name), %pid, "horde supervisor: a child's name is gone from the registry; registering it again");
                if let Err(e) = reg.register_name(name.clone(), Term::atom("nil"), &pid).await {
                    tracing::warn!(supervisor = %self.cfg.name, key = %short(&name), error = %e, "horde supervisor: child not registered again");
                }
            }
        }
    }

    /// The state left under `{:erlnode_handoff, key}` (by the process
    /// this one replaces, Elixir or Rust), for the new child to start
    /// from before any message; marked taken.
    fn take_handed_state(&mut self, spec: &Term, key: &Term) -> Option<(u32, Term)> {
        let k = handoff_key(key);
        let v = self.peer.crdt.store.read(&k).cloned()?;
        if v.is_atom("erlnode_handoff_taken") {
            return None;
        }
        // Marked taken rather than deleted: a delete can be undone by the
        // same entry arriving again from another peer (see `Store::put`),
        // and a later move would then adopt this old state; the marker is
        // stamped past it.
        self.put(k, Term::atom("erlnode_handoff_taken"));
        let module = module_of(spec);
        let ours = module.as_atom().and_then(|m| self.cfg.types.type_of(m.as_str()));
        match (v.as_tuple(), ours) {
            (Some([tag, Term::Binary(ty), vsn, state]), Some((our_type, _))) if tag.is_atom("erlnode_handoff_state") && &ty[..] == our_type.as_bytes() => {
                let from_version = vsn.as_int().unwrap_or(1) as u32;
                tracing::debug!(supervisor = %self.cfg.name, key = %short(key), "horde supervisor: handed-over state adopted");
                Some((from_version, state.clone()))
            }
            _ => {
                tracing::error!(supervisor = %self.cfg.name, key = %short(key), value = %short(&v), "horde supervisor: handed-over state is not of this child's type; the child starts fresh");
                None
            }
        }
    }

    /// Moves a local child away (redistribution, leave, lost quorum):
    /// with handoff, it hands its state over (`{:erlnode_handoff, key}`,
    /// written before the relinquish, so whoever starts it sees both) and
    /// keeps its messages for its replacement; else it stops. Either way
    /// it is relinquished (`{nil, spec}`) for the member the ring chooses.
    async fn move_away(&mut self, pid: &Pid) {
        let Some(l) = self.local.get_mut(pid) else { return };
        if l.ending != Ending::Own {
            return;
        }
        let module = module_of(&l.spec);
        let ty = module.as_atom().and_then(|m| self.cfg.types.type_of(m.as_str()));
        let (Some(key), Some((type_name, version))) = (l.key.clone(), ty) else {
            l.ending = Ending::Relinquish;
            let _ = l.ctl.send(ChildCtl::Stop);
            return;
        };
        let (tx, rx) = oneshot::channel();
        let _ = l.ctl.send(ChildCtl::Freeze { reply: tx });
        let state = match rx.await {
            Ok(Ok(state)) => state,
            other => {
                tracing::error!(supervisor = %self.cfg.name, key = %short(&key), result = ?other.map(|r| r.err()), "horde supervisor: the state could not be prepared; the child moves without it");
                if let Some(l) = self.local.get_mut(pid) {
                    l.ending = Ending::Relinquish;
                    let _ = l.ctl.send(ChildCtl::Stop);
                }
                return;
            }
        };
        let l = self.local.remove(pid).expect("present above");
        if let Some((reg, key_field)) = &self.cfg.via {
            if let Some(name) = arg_field(&l.spec, key_field) {
                let _ = reg.unregister(name, pid).await;
            }
        }
        let handed = Term::tuple([Term::atom("erlnode_handoff_state"), Term::binary(type_name.as_bytes().to_vec()), Term::Int(version.into()), state]);
        self.put(handoff_key(&key), handed);
        let now = Instant::now();
        self.relinquish_after.push(HeldRelinquish { id: l.id.clone(), spec: l.spec.clone(), written: now, until: now + RELINQUISH_WAIT });
        self.processes.remove(&TermKey(l.id.clone()));
        self.forwarding.insert(TermKey(l.id), Forwarding { ctl: l.ctl, until: Instant::now() + FORWARD_WAIT });
        if let Some(lv) = &mut self.leaving {
            lv.relinquished += 1;
        }
    }

    /// Relinquishes whose state every neighbour has been offered (a sync
    /// started after the state was written was acked), or that waited
    /// `RELINQUISH_WAIT`, are written now.
    fn release_relinquishes(&mut self) {
        if self.relinquish_after.is_empty() {
            return;
        }
        let now = Instant::now();
        let (ready, held): (Vec<HeldRelinquish>, Vec<HeldRelinquish>) =
            std::mem::take(&mut self.relinquish_after).into_iter().partition(|h| h.until <= now || self.peer.crdt.all_acked_since(h.written));
        self.relinquish_after = held;
        for h in ready {
            self.relinquish(h.id, h.spec);
        }
    }

    /// Relinquished children waiting for their state: started once it is
    /// here, or fresh after `STATE_WAIT`, if this member is still the one.
    async fn start_awaiting(&mut self) {
        if self.awaiting_state.is_empty() {
            return;
        }
        let now = Instant::now();
        let ready: Vec<TermKey> = self
            .awaiting_state
            .iter()
            .filter(|(_, (spec, until))| {
                *until <= now
                    || self.cfg.handoff.as_ref().and_then(|f| arg_field(spec, f)).is_some_and(|k| self.peer.crdt.store.read(&handoff_key(&k)).is_some_and(|v| !v.is_atom("erlnode_handoff_taken")))
            })
            .map(|(id, _)| id.clone())
            .collect();
        for id in ready {
            let Some((spec, until)) = self.awaiting_state.remove(&id) else { continue };
            let running = self.local.values().any(|l| term_eq(&l.id, &id.0));
            if running || self.shutting_down || !self.choose(&spec).is_ok_and(|n| term_eq(&n, &self.me())) {
                continue;
            }
            if until <= now {
                tracing::debug!(supervisor = %self.cfg.name, child = ?id.0, "horde supervisor: no handed-over state arrived; the child starts fresh");
            }
            let _ = self.add_child(spec).await;
        }
    }

    /// Frozen children whose replacement never showed up stop.
    fn expire_forwarding(&mut self) {
        let now = Instant::now();
        self.forwarding.retain(|id, f| {
            let keep = f.until > now;
            if !keep {
                tracing::warn!(child = %short(&id.0), "horde supervisor: no replacement within the wait; the moved child stops and the messages it kept are dropped");
                let _ = f.ctl.send(ChildCtl::Stop);
            }
            keep
        });
    }

    /// A local child's DOWN (`maybe_restart_child`).
    async fn child_down(&mut self, pid: Pid, reason: Term) {
        let Some(l) = self.local.remove(&pid) else { return };
        match l.ending {
            Ending::Forget => {}
            Ending::Relinquish => {
                self.relinquish(l.id, l.spec);
                if let Some(lv) = &mut self.leaving {
                    lv.relinquished += 1;
                }
            }
            Ending::Own if matches!(reason.as_tuple(), Some([t, ..]) if t.is_atom("name_conflict")) => {
                // Another process holds its name now: restarting would
                // take the name back and kill that one, back and forth.
                tracing::info!(supervisor = %self.cfg.name, child = %short(&l.id), "horde supervisor: child lost its name; not restarted");
                self.disown(&l.id);
            }
            Ending::Own => {
                let restart = match l.restart {
                    Restart::Permanent => true,
                    Restart::Transient => !is_shutdown(&reason),
                    Restart::Temporary => false,
                };
                if !restart {
                    self.disown(&l.id);
                    return;
                }
                tracing::warn!(supervisor = %self.cfg.name, child = %short(&l.id), reason = %short(&reason), "horde supervisor: child terminated; restarting");
                if !self.may_restart() {
                    tracing::error!(supervisor = %self.cfg.name, child = %short(&l.id), "horde supervisor: restart intensity reached; child given up (Horde would stop the whole member)");
                    self.disown(&l.id);
                    return;
                }
                match self.start_local(&l.id, &l.spec).await {
                    Ok(new) => self.record_running(l.id, l.spec, new),
                    Err(e) => {
                        tracing::error!(supervisor = %self.cfg.name, child = %short(&l.id), reason = %short(&e), "horde supervisor: restart failed; child given up");
                        self.disown(&l.id);
                    }
                }
            }
        }
    }

    fn may_restart(&mut self) -> bool {
        let now = Instant::now();
        while self.restarts.front().is_some_and(|t| now.duration_since(*t) > self.cfg.max_seconds) {
            self.restarts.pop_front();
        }
        self.restarts.push_back(now);
        self.restarts.len() <= self.cfg.max_restarts
    }

    async fn request(&mut self, r: Request) {
        match r {
            Request::StartChild { spec, reply } => {
                let spec = with_id(&spec, random_id());
                let route = match self.start_child(spec.clone(), None).await {
                    Some(r) => Route::Done(r),
                    None => match self.choose(&spec).ok().and_then(|m| m.as_tuple().map(|t| t.to_vec())) {
                        Some(t) if matches!(&t[..], [Term::Atom(_), Term::Atom(_)]) => {
                            let (Term::Atom(name), Term::Atom(node)) = (&t[0], &t[1]) else { unreachable!() };
                            Route::Ask(Dest::local(name.as_str(), node.as_str()), Term::tuple([Term::atom("start_child"), spec]))
                        }
                        _ => Route::Done(error(Term::atom("no_alive_nodes"))),
                    },
                };
                let _ = reply.send(route);
            }
            Request::Children { reply } => {
                let me = self.me();
                let v = self
                    .processes
                    .iter()
                    .map(|(id, p)| ChildInfo { id: id.0.clone(), pid: p.pid.clone(), module: module_of(&p.spec), local: term_eq(&p.member, &me) })
                    .collect();
                let _ = reply.send(v);
            }
            Request::Members { reply } => {
                let _ = reply.send(self.member_infos());
            }
            Request::Leave { timeout, reply } => {
                self.shutting_down = true;
                self.set_own_node_status(false);
                tracing::info!(supervisor = %self.cfg.name, children = self.local.len(), "horde supervisor: leaving; relinquishing children");
                self.leaving = Some(Leaving { deadline: Instant::now() + timeout, relinquished: 0, reply });
                let pids: Vec<Pid> = self.local.keys().cloned().collect();
                for pid in pids {
                    self.move_away(&pid).await;
                }
            }
        }
    }

    /// Ends a leave once every child was relinquished and every
    /// neighbour acked the last writes (or the deadline passed).
    fn check_leave(&mut self) -> bool {
        let Some(lv) = &self.leaving else { return false };
        let done = self.local.is_empty() && self.relinquish_after.is_empty() && self.forwarding.is_empty() && self.peer.crdt.synced_with_all();
        let late = Instant::now() >= lv.deadline;
        if !(done || late) {
            return false;
        }
        let lv = self.leaving.take().expect("checked");
        let report = LeaveReport { relinquished: lv.relinquished, synced: done, still_running: self.local.len(), registry_synced: None };
        let _ = lv.reply.send(report);
        for l in self.local.values() {
            let _ = l.ctl.send(ChildCtl::Stop);
        }
        for f in self.forwarding.values() {
            let _ = f.ctl.send(ChildCtl::Stop);
        }
        true
    }

    /// `handle_call({:start_child, spec})`: here, proxied, or an error;
    /// `None` when another member will reply. `from` is the caller and
    /// whether it came as a `{:proxy_operation, ...}`: then a member
    /// already chose this node, so it starts here even when this view of
    /// the ring differs (Horde would send it on, and two members whose
    /// views disagree could pass it back and forth).
    async fn start_child(&mut self, spec: Term, from: Option<(&Term, bool)>) -> Option<Term> {
        let proxied = from.filter(|(_, p)| *p);
        let proxied_from = from.map(|(f, _)| f);
        if self.shutting_down {
            return Some(error(Term::tuple([Term::atom("shutting_down"), Term::binary(&b"this node is shutting down."[..])])));
        }
        match self.choose(&spec) {
            Ok(n) if term_eq(&n, &self.me()) || proxied.is_some() => Some(self.add_child(with_id(&spec, random_id())).await),
            Ok(other) => {
                if !self.is_alive(&other) {
                    return Some(not_alive());
                }
                match proxied_from {
                    // A caller on the wire: the chosen member replies to it.
                    Some(from) => {
                        let Some([Term::Atom(name), Term::Atom(node)]) = other.as_tuple() else { return Some(error(Term::atom("bad_member"))) };
                        let msg = Term::tuple([Term::atom("proxy_operation"), Term::tuple([Term::atom("start_child"), spec]), from.clone()]);
                        self.sup.send_to(&Dest::local(name.as_str(), node.as_str()), msg);
                        None
                    }
                    // The Rust API: its handle asks the member itself.
                    None => None,
                }
            }
            Err(reason) => Some(error(reason)),
        }
    }

    async fn sup_message(&mut self, m: Term) {
        if let Some((from, req)) = gen_call_parts(&m) {
            let (from, req) = (from.clone(), req.clone());
            if let Some(reply) = self.sup_call(&req, &from, false).await {
                self.sup.reply(&from, reply);
            }
            return;
        }
        match m.as_tuple() {
            Some([t, msg, reply_to]) | Some([t, msg, reply_to, _]) if t.is_atom("proxy_operation") => {
                let (msg, reply_to) = (msg.clone(), reply_to.clone());
                if let Some(reply) = self.sup_call(&msg, &reply_to, true).await {
                    self.sup.reply(&reply_to, reply);
                }
            }
            Some([t, Term::Ref(r), _, _, _]) if t.is_atom("DOWN") => {
                if let Some(name) = self.sup_monitors.remove(r) {
                    // mark_dead/2
                    tracing::info!(supervisor = %self.cfg.name, member = %short(&name), "horde supervisor: member down; marked dead");
                    self.put(Term::tuple([Term::atom("member_node_info"), name.clone()]), Member::new(name, Status::Dead).to_term());
                    self.set_own_node_status(false);
                }
            }
            Some([t, Term::List(members)]) if t.is_atom("set_members") => {
                let new = self.full_names(members);
                self.set_members(new);
            }
            Some([t, c]) if t.is_atom("$gen_cast") => self.sup_cast(c),
            _ => tracing::warn!(supervisor = %self.cfg.name, shape = %short(&m), "horde supervisor: unexpected message dropped"),
        }
    }

    fn full_names(&self, members: &[Term]) -> Vec<Term> {
        members
            .iter()
            .map(|m| match m {
                Term::Atom(a) => self.member_of_name(a),
                other => other.clone(),
            })
            .collect()
    }

    fn member_of_name(&self, name: &Atom) -> Term {
        Term::tuple([Term::Atom(name.clone()), Term::Atom(self.node.name().clone())])
    }

    /// The casts Horde's own ProcessesSupervisor sends its Impl; this
    /// member's children report through monitors instead, so these only
    /// come from a confused peer and are applied as Horde would.
    fn sup_cast(&mut self, c: &Term) {
        match c.as_tuple() {
            Some([t, id]) if t.is_atom("disown_child_process") => {
                if self.processes.contains_key(&TermKey(id.clone())) {
                    self.disown(id);
                }
            }
            _ => tracing::warn!(supervisor = %self.cfg.name, shape = %short(c), "horde supervisor: cast ignored"),
        }
    }

    /// `DynamicSupervisorImpl.handle_call/3`; `None` is `:noreply`.
    async fn sup_call(&mut self, req: &Term, from: &Term, proxied: bool) -> Option<Term> {
        let ok = Term::atom("ok");
        if req.is_atom("members") {
            return Some(Term::List(self.members.clone()));
        }
        if req.is_atom("which_children") {
            return Some(Term::List(self.processes.values().map(|p| Term::tuple([Term::atom("undefined"), Term::Pid(p.pid.clone()), Term::atom("worker"), Term::List(vec![module_of(&p.spec)])])).collect()));
        }
        if req.is_atom("count_children") {
            let n = self.processes.len() as i64;
            return Some(Term::Map(vec![(Term::atom("active"), Term::Int(n)), (Term::atom("specs"), Term::Int(n)), (Term::atom("supervisors"), Term::Int(0)), (Term::atom("workers"), Term::Int(n))]));
        }
        if req.is_atom("wait_for_quorum") {
            if self.cfg.distribution.has_quorum(&self.member_infos()) {
                return Some(ok);
            }
            self.waiting_for_quorum.push(from.clone());
            return None;
        }
        if req.is_atom("horde_shutting_down") {
            self.shutting_down = true;
            self.set_own_node_status(false);
            return Some(ok);
        }
        if req.is_atom("get_telemetry") {
            return Some(Term::Map(vec![
                (Term::atom("global_supervised_process_count"), Term::Int(self.processes.len() as i64)),
                (Term::atom("local_supervised_process_count"), Term::Int(self.local.len() as i64)),
            ]));
        }
        match req.as_tuple() {
            Some([t, spec]) if t.is_atom("start_child") => {
                // Horde proxies the caller's message as it came, before its
                // own randomisation: every member that starts a child gives
                // it a fresh id (`start_child`).
                self.start_child(spec.clone(), Some((from, proxied))).await
            }
            Some([t, Term::Pid(pid)]) if t.is_atom("terminate_child") => self.terminate_child(pid, Some(from)),
            Some([t, Term::List(members)]) if t.is_atom("set_members") => {
                let new = self.full_names(members);
                self.set_members(new);
                Some(ok)
            }
            _ => {
                tracing::warn!(supervisor = %self.cfg.name, shape = %short(req), "horde supervisor: unknown call");
                Some(error(Term::atom("unknown_call")))
            }
        }
    }

    /// `terminate_child`: here if the child is local; else proxied to its
    /// member, which replies to `from` (`None` then), if that member is
    /// `:alive`; unknown pids are `{:error, :not_found}`.
    fn terminate_child(&mut self, pid: &Pid, from: Option<&Term>) -> Option<Term> {
        if let Some(l) = self.local.get_mut(pid) {
            l.ending = Ending::Forget;
            let _ = l.ctl.send(ChildCtl::Stop);
            let id = l.id.clone();
            self.disown(&id);
            return Some(Term::atom("ok"));
        }
        let owner = self.processes.values().find(|p| &p.pid == pid).map(|p| p.member.clone());
        match (owner.as_ref().and_then(|m| m.as_tuple()), from) {
            (Some(_), Some(_)) if !owner.as_ref().is_some_and(|m| self.is_alive(m)) => Some(not_alive()),
            (Some([Term::Atom(name), Term::Atom(node)]), Some(from)) => {
                let msg = Term::tuple([Term::atom("proxy_operation"), Term::tuple([Term::atom("terminate_child"), Term::Pid(pid.clone())]), from.clone()]);
                self.sup.send_to(&Dest::local(name.as_str(), node.as_str()), msg);
                None
            }
            _ => Some(error(Term::atom("not_found"))),
        }
    }

    /// `Sup.ProcessesSupervisor`: what other members ask of this node's
    /// children, and the children's DOWNs.
    async fn procs_message(&mut self, m: Term) {
        if let Some((from, req)) = gen_call_parts(&m) {
            let (from, req) = (from.clone(), req.clone());
            let reply = self.procs_call(&req);
            self.procs.reply(&from, reply);
            return;
        }
        match m.as_tuple() {
            Some([t, _, _, Term::Pid(pid), reason]) if t.is_atom("DOWN") => {
                let (pid, reason) = (pid.clone(), reason.clone());
                self.child_down(pid, reason).await;
            }
            _ => tracing::warn!(supervisor = %self.cfg.name, shape = %short(&m), "horde supervisor: unexpected message to the processes supervisor dropped"),
        }
    }

    fn procs_call(&mut self, req: &Term) -> Term {
        let worker = Term::atom("worker");
        if req.is_atom("which_children") {
            return Term::List(self.local.iter().map(|(pid, l)| Term::tuple([l.id.clone(), Term::Pid(pid.clone()), worker.clone(), Term::List(vec![module_of(&l.spec)])])).collect());
        }
        if req.is_atom("count_children") {
            let n = self.local.len() as i64;
            let kw = |k: &str, v: i64| Term::tuple([Term::atom(k), Term::Int(v)]);
            return Term::List(vec![kw("specs", n), kw("active", n), kw("supervisors", 0), kw("workers", n)]);
        }
        match req.as_tuple() {
            Some([t, id]) if t.is_atom("terminate_child_by_id") => {
                let pid = self.local.iter().find(|(_, l)| term_eq(&l.id, id)).map(|(p, _)| p.clone());
                match pid {
                    Some(p) => self.terminate_child(&p, None).unwrap_or_else(|| error(Term::atom("not_found"))),
                    None => error(Term::atom("not_found")),
                }
            }
            Some([t, Term::Pid(pid)]) if t.is_atom("terminate_child") => self.terminate_child(&pid.clone(), None).unwrap_or_else(|| error(Term::atom("not_found"))),
            Some([t, Term::Pid(pid), reason]) if t.is_atom("send_exit_signal") => {
                let (pid, reason) = (pid.clone(), reason.clone());
                match self.local.get_mut(&pid) {
                    Some(l) if reason.as_tuple().is_some_and(|r| matches!(r, [a, b] if a.is_atom("shutdown") && b.is_atom("process_redistribution"))) => {
                        l.ending = Ending::Relinquish;
                        let _ = l.ctl.send(ChildCtl::Stop);
                    }
                    _ => self.procs.exit(&pid, reason),
                }
                Term::atom("ok")
            }
            _ => {
                tracing::warn!(supervisor = %self.cfg.name, shape = %short(req), "horde supervisor: unknown call to the processes supervisor");
                error(Term::atom("unknown_call"))
            }
        }
    }
}

/// Starts the member and registers its three names.
pub(crate) fn spawn(node: &Node, cfg: Config, requests: mpsc::UnboundedReceiver<Request>) -> Result<Pid, crate::NodeError> {
    let events = node.subscribe();
    let procs = node.spawn_mailbox();
    let crdt_mb = node.spawn_mailbox();
    let (procs_pid, crdt_pid) = (procs.pid().clone(), crdt_mb.pid().clone());
    let (go_tx, go_rx) = oneshot::channel::<()>();
    let name = cfg.name.clone();
    let procs_name = format!("{}.ProcessesSupervisor", name.as_str());
    let sup_pid = node.spawn(move |sup| async move {
        if go_rx.await.is_err() {
            return Term::atom("normal");
        }
        let peer = CrdtPeer::new(cfg.name.clone(), crdt_mb, cfg.max_items);
        let s = Supervisor {
            node: sup.node(),
            cfg,
            sup,
            procs,
            peer,
            members: vec![],
            info: HashMap::new(),
            processes: HashMap::new(),
            local: HashMap::new(),
            forwarding: HashMap::new(),
            restarts: VecDeque::new(),
            sup_monitors: HashMap::new(),
            waiting_for_quorum: vec![],
            shutting_down: false,
            leaving: None,
            quorum_lost: false,
            auto: AutoMembers::default(),
            relinquish_after: vec![],
            awaiting_state: HashMap::new(),
            pending: VecDeque::new(),
            names_checked: Instant::now(),
        };
        s.run(requests, events).await
    });
    let registered = node
        .register(name.as_str(), &sup_pid)
        .and_then(|_| node.register(&procs_name, &procs_pid))
        .and_then(|_| node.register(&crdt_name(&name), &crdt_pid));
    if let Err(e) = registered {
        for n in [name.as_str(), procs_name.as_str(), crdt_name(&name).as_str()] {
            if node.whereis(n).is_some_and(|p| p == sup_pid || p == procs_pid || p == crdt_pid) {
                node.unregister(n);
            }
        }
        node.exit(&sup_pid, Term::atom("kill"));
        return Err(e);
    }
    let _ = go_tx.send(());
    tracing::info!(supervisor = %name, %sup_pid, %procs_pid, %crdt_pid, "horde supervisor member started");
    Ok(sup_pid)
}
