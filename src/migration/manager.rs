//! The migration manager, `erlnode_migration`: starts targets of a
//! registered type, takes migration requests for processes hosted here,
//! learns which nodes host which types, and runs placement (a newcomer
//! takes the processes the ring now gives it; a leaving node drains to
//! the remaining owners). It never waits on a migration itself: results
//! come back to it as messages and are matched to the waiting caller,
//! and placement moves run in their own task.

use super::hosted::{Hosted, Members};
use super::messages::{result_term, Op, Request, HANDED_OVER};
use super::runtime::{run_fresh, run_restored, run_target, Meta};
use super::replica::placement::ReplicaCtx;
use super::replica::ReplicaConfig;
use super::{HandoffConfig, Migratable, MigrationError, Mode, NameRegistry};
use crate::node::gen_call_parts;
use crate::term::serde::from_term;
use crate::term::{Atom, Pid, Reference, Term};
use crate::{Node, NodeEvent};
use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

pub const MANAGER_NAME: &str = "erlnode_migration";

/// Migrations run at once by placement (join, drain, rebalance).
const PLACEMENT_CONCURRENCY: usize = 64;

type Factory = Arc<dyn Fn(&Node, &Shared, Term, Atom, StartAs) -> Result<Pid, Term> + Send + Sync>;

/// How a factory starts a process.
pub(crate) enum StartAs {
    /// `init_state(args)`, optionally with its own replica configuration.
    Fresh(Option<ReplicaConfig>),
    /// The target of a handoff from `source`, with the process's own
    /// replica setting if it has one.
    Target(Reference, Pid, Option<ReplicaConfig>),
    /// A failover: from a replica's latest state, waiting for `go`.
    Restore(super::replica::store::Entry),
}

pub(crate) struct Shared {
    types: RwLock<HashMap<String, Factory>>,
    pub registry: Arc<dyn NameRegistry>,
    pub cfg: HandoffConfig,
    pub hosted: Arc<Hosted>,
    pub members: Arc<Members>,
    /// Replica placement and per-type replica settings.
    pub replica: Arc<ReplicaCtx>,
    /// Types whose names are registered with the merge resolve method
    /// (`Migratable::MERGES`).
    merging: RwLock<std::collections::HashSet<String>>,
    /// Names and types placement never moves (join, rebalance); see
    /// [`Migration::pin`].
    pinned: RwLock<(std::collections::HashSet<Atom>, std::collections::HashSet<String>)>,
}

impl Shared {
    /// Registers `name` as its type asks: with the merge method for a
    /// type that merges on netsplit heal, OTP's default otherwise.
    pub(crate) async fn register_name(&self, type_name: &str, name: &str, pid: &Pid) -> Result<(), String> {
        if self.merging.read().unwrap().contains(type_name) {
            self.registry.register_merging(name, pid).await
        } else {
            self.registry.register(name, pid).await
        }
    }

    /// Starts `name` from a replica's state (failover); it waits for
    /// `go` before serving.
    pub(crate) fn restore(&self, node: &Node, name: &Atom, e: &super::replica::store::Entry) -> Result<Pid, Term> {
        let factory = self.types.read().unwrap().get(&e.type_name).cloned();
        match factory {
            Some(f) => f(node, self, e.args.clone(), name.clone(), StartAs::Restore(e.clone())),
            None => Err(Term::tuple([Term::atom("unknown_type"), Term::from(e.type_name.as_str())])),
        }
    }

    /// What placement may move: hosted here, not pinned by name or type.
    fn movable(&self) -> Vec<(Atom, String, Pid)> {
        let pins = self.pinned.read().unwrap();
        self.hosted.snapshot().into_iter().filter(|(n, t, _)| !pins.0.contains(n) && !pins.1.contains(t)).collect()
    }
}

/// Handle to this node's migration service.
#[derive(Clone)]
pub struct Migration {
    pub(super) node: Node,
    pub(super) shared: Arc<Shared>,
}

/// What a drain or rebalance did.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct MoveReport {
    pub moved: usize,
    pub failed: Vec<(String, String)>,
}

impl Migration {
    /// Starts the manager (registered as `erlnode_migration`) with the
    /// registry that holds the processes' names.
    pub fn start(node: &Node, registry: Arc<dyn NameRegistry>, cfg: HandoffConfig) -> Result<Migration, crate::NodeError> {
        let cfg_encoding = cfg.ring_encoding;
        let members = Arc::new(Members::with_pinned(cfg_encoding));
        let shared = Arc::new(Shared {
            types: RwLock::new(HashMap::new()),
            registry,
            cfg,
            hosted: Default::default(),
            replica: Arc::new(ReplicaCtx::new(members.clone())),
            members,
            merging: Default::default(),
            pinned: Default::default(),
        });
        let s2 = shared.clone();
        let n2 = node.clone();
        let events = node.subscribe();
        let pid = node.spawn(move |mb| manager_loop(n2, s2, mb, events));
        node.register(MANAGER_NAME, &pid)?;
        super::replica::store::start(node, shared.clone())?;
        let erased: Arc<dyn std::any::Any + Send + Sync> = shared.clone();
        let _ = node.inner().migration.set(Arc::downgrade(&erased));
        let m = Migration { node: node.clone(), shared };
        // Peers already connected learn about us now; later ones on nodeup.
        for peer in node.connected_nodes() {
            m.announce(&peer, true);
        }
        Ok(m)
    }

    fn announce(&self, peer: &Atom, ack: bool) {
        announce(&self.node, &self.shared, peer, ack)
    }

    /// Makes `M` startable here by its type name, as a target of
    /// migrations from any node, and tells the other managers.
    pub fn register_type<M: Migratable>(&self) {
        self.shared.replica.set_delta(
            M::TYPE,
            crate::migration::replica::delta::DeltaFns::new(M::replica_delta, M::apply_replica_delta),
        );
        let f: Factory = Arc::new(|node, shared, args_term, name, start_as| {
            let args: M::Args = from_term(args_term.clone()).map_err(|e| {
                Term::tuple([Term::atom("bad_args"), Term::from(e.to_string().as_str())])
            })?;
            let default_cfg = shared.replica.config_for(M::TYPE, ReplicaConfig { replicas: M::REPLICAS, mode: M::REPLICA_MODE });
            let (cfg, seq, own_replicas) = match &start_as {
                StartAs::Fresh(Some(c)) | StartAs::Target(_, _, Some(c)) => (*c, 0, Some(*c)),
                StartAs::Restore(e) => (e.cfg, e.seq, Some(e.cfg)),
                _ => (default_cfg, 0, None),
            };
            let meta = Meta {
                replication: cfg.enabled().then(|| (cfg, shared.replica.clone(), seq)),
                type_name: M::TYPE,
                args: args_term,
                name,
                registry: shared.registry.clone(),
                cfg: shared.cfg.clone(),
                hosted: shared.hosted.clone(),
                carried: vec![],
                own_replicas,
                moved_to: Default::default(),
            };
            let (hosted, name) = (meta.hosted.clone(), meta.name.clone());
            let pid = match start_as {
                StartAs::Restore(e) => {
                    let pid = node.spawn(move |mb| run_restored::<M>(mb, meta, args, e.state));
                    hosted.insert(name.clone(), M::TYPE, pid.clone());
                    pid
                }
                StartAs::Fresh(_) => {
                    // Counted as hosted from the moment it exists, not from
                    // when its task first runs: a placement plan made right
                    // after start must see it.
                    let pid = node.spawn(move |mb| run_fresh::<M>(mb, meta, args));
                    hosted.insert(name.clone(), M::TYPE, pid.clone());
                    pid
                }
                StartAs::Target(r, s, _) => node.spawn(move |mb| run_target::<M>(mb, meta, args, r, s)),
            };
            // However the process ends (a `kill` from global's conflict
            // resolution drops its task wherever it waits), it leaves the
            // hosted table before anyone sees it gone.
            let gone = pid.clone();
            node.on_exit(&pid, move || hosted.remove(&name, &gone));
            Ok(pid)
        });
        if M::MERGES {
            self.shared.merging.write().unwrap().insert(M::TYPE.to_string());
        }
        let new = self.shared.types.write().unwrap().insert(M::TYPE.to_string(), f).is_none();
        self.shared.members.add(self.node.name(), &[M::TYPE.to_string()]);
        if new {
            for peer in self.node.connected_nodes() {
                self.announce(&peer, false);
            }
        }
    }

    /// Starts a process of type `M` here, registers it globally as
    /// `name` and returns a handle that addresses it by that name (so it
    /// keeps working after the process moves). Registers the type first
    /// if needed.
    pub async fn start_process<M: Migratable>(&self, args: M::Args, name: &str) -> Result<crate::gen_server::ServerRef<M>, MigrationError> {
        self.start_process_with::<M>(args, name, None).await
    }

    /// As [`Migration::start_process`], with this process's own replica
    /// configuration instead of its type's. It stays the process's own:
    /// a failover restores it and a migration carries it to the target
    /// (docs/replicas.md, "Using it").
    pub async fn start_process_with<M: Migratable>(
        &self,
        args: M::Args,
        name: &str,
        replicas: Option<ReplicaConfig>,
    ) -> Result<crate::gen_server::ServerRef<M>, MigrationError> {
        if !self.shared.types.read().unwrap().contains_key(M::TYPE) {
            self.register_type::<M>();
        }
        let args_term = crate::term::serde::to_term(&args).map_err(|e| MigrationError::Failed(Term::from(e.to_string().as_str())))?;
        let factory = self.shared.types.read().unwrap().get(M::TYPE).cloned().expect("registered above");
        let pid = factory(&self.node, &self.shared, args_term, Atom::new(name), StartAs::Fresh(replicas)).map_err(MigrationError::Failed)?;
        if let Err(e) = self.shared.register_name(M::TYPE, name, &pid).await {
            self.node.exit(&pid, Term::atom("kill"));
            return Err(MigrationError::Name(e));
        }
        Ok(crate::gen_server::ServerRef::for_global(self.node.clone(), name, pid, self.clone()))
    }

    /// Replicas for the processes of type `type_name` started or arriving
    /// here from now on (wins over the type's `REPLICAS` and
    /// `REPLICA_MODE`; `erlnode run --replicas N` sets it for accounts).
    pub fn set_replicas(&self, type_name: &str, cfg: ReplicaConfig) {
        self.shared.replica.set_override(type_name, cfg);
    }

    /// What this node's replica store holds: `(name, seq, owner, state
    /// bytes)`.
    pub async fn replicas_held(&self) -> Result<Vec<(Atom, u64, Pid, usize)>, MigrationError> {
        let reply = self
            .node
            .spawn_mailbox()
            .call((super::replica::STORE_NAME, self.node.name().as_str()), super::replica::messages::Msg::List.to_term(), Duration::from_secs(10))
            .await?;
        Ok(super::replica::parse_list(&reply))
    }

    /// Pins the process named `name` to this node: placement (a node
    /// joining, `rebalance`) never moves it, and other nodes' rebalance
    /// plans do not see it. An explicit `migrate` still moves it (the pin
    /// stays with this node, so it is pinned again if it comes back), and
    /// a graceful leave (`drain`, `Node::leave`) still hands it on rather
    /// than let it die with the node.
    pub fn pin(&self, name: &str) {
        self.shared.pinned.write().unwrap().0.insert(Atom::new(name));
    }

    /// Undoes [`Migration::pin`].
    pub fn unpin(&self, name: &str) {
        self.shared.pinned.write().unwrap().0.remove(&Atom::new(name));
    }

    /// Pins every process of type `M` hosted here, as [`Migration::pin`].
    pub fn pin_type<M: Migratable>(&self) {
        self.shared.pinned.write().unwrap().1.insert(M::TYPE.to_string());
    }

    /// Replica placement and settings, for processes another library
    /// places (a Horde supervisor's children).
    pub(crate) fn replica_ctx(&self) -> Arc<super::replica::placement::ReplicaCtx> {
        self.shared.replica.clone()
    }

    /// The node this service runs on.
    pub fn node(&self) -> &Node {
        &self.node
    }

    /// Moves the process registered as `name` to `target`, wherever it
    /// runs now. Returns the new pid.
    pub async fn migrate(&self, name: &str, target: &str, mode: Mode, timeout: Duration) -> Result<Pid, MigrationError> {
        migrate_via_host(&self.node, &self.shared, name, target, mode, timeout).await
    }

    /// Processes hosted on this node now.
    /// The encoding this node hashes placement rings with (pinned in
    /// [`HandoffConfig::ring_encoding`], else the Elixir members').
    pub fn ring_encoding(&self) -> super::ring::RingEncoding {
        self.shared.members.encoding()
    }

    /// The owner of the process named `name` of type `type_name` on the
    /// ring of the nodes hosting that type, as this node sees it now.
    pub fn owner(&self, type_name: &str, name: &str) -> Option<Atom> {
        self.shared.members.ring(type_name, None).owner(&Term::Atom(Atom::new(name)))
    }

    pub fn hosted(&self) -> Vec<(Atom, String, Pid)> {
        self.shared.hosted.snapshot()
    }

    /// How many processes this node hosts: [`Self::hosted`]'s length
    /// without copying the table (for progress and polling).
    pub fn hosted_count(&self) -> usize {
        self.shared.hosted.len()
    }

    /// Nodes known to host `type_name` (this one included if it does).
    pub fn members(&self, type_name: &str) -> Vec<Atom> {
        self.shared.members.nodes(type_name)
    }

    /// Graceful leave: moves every process hosted here to its owner on
    /// the ring of the remaining nodes of its type, logging progress.
    pub async fn drain(&self) -> MoveReport {
        let me = self.node.name().clone();
        let plan: Vec<(String, Atom)> = self
            .shared
            .hosted
            .snapshot()
            .into_iter()
            .filter_map(|(name, ty, _)| {
                let owner = self.shared.members.ring(&ty, Some(&me)).owner(&Term::Atom(name.clone()))?;
                Some((name.to_string(), owner))
            })
            .collect();
        let unplaced = self.shared.hosted.len() - plan.len();
        if unplaced > 0 {
            tracing::warn!(unplaced, "no other node hosts their type: these processes stay and stop with the node");
        }
        run_plan(&self.node, &self.shared, plan, "drain").await
    }

    /// Moves processes from the most to the least loaded node of each
    /// type until they differ by at most one.
    pub async fn rebalance(&self, type_name: &str) -> Result<MoveReport, MigrationError> {
        let mut load: Vec<(Atom, Vec<Atom>)> = vec![];
        for n in self.shared.members.nodes(type_name) {
            load.push((n.clone(), hosted_on(&self.node, &self.shared, &n, type_name).await?));
        }
        let mut report = MoveReport::default();
        loop {
            load.sort_by_key(|(_, names)| names.len());
            let (Some(least), Some(most)) = (load.first(), load.last()) else { break };
            if most.1.len() <= least.1.len() + 1 {
                break;
            }
            let n = (most.1.len() - least.1.len()) / 2;
            let to = least.0.clone();
            let last = load.len() - 1;
            let moving: Vec<Atom> = load[last].1.drain(..n).collect();
            let plan = moving.iter().map(|m| (m.to_string(), to.clone())).collect();
            let r = run_plan(&self.node, &self.shared, plan, "rebalance").await;
            load[0].1.extend(moving);
            report.moved += r.moved;
            report.failed.extend(r.failed);
        }
        Ok(report)
    }
}

fn announce(node: &Node, shared: &Shared, peer: &Atom, ack: bool) {
    // An announcement is the whole list and replaces the last one, so two
    // must arrive in the order their lists were read: the read lock is
    // held until the message is queued on the link (in order), and a type
    // registered meanwhile (the write lock) is announced after it. Read
    // and sent apart, the manager's answer to a peer's nodeup could read
    // the list before a `register_type`, be queued after that type's own
    // announcement and make the peer forget the type (CI saw it once).
    let types = shared.types.read().unwrap();
    let msg = Op::Members { node: node.name().clone(), types: types.keys().cloned().collect(), ack, encoding: None }.to_term();
    let from = node.spawn_mailbox();
    from.send_to(&crate::process::Dest::Name { name: Atom::new(MANAGER_NAME), node: peer.clone() }, msg);
    drop(types);
}

/// One call to the manager on node `on`, from a short-lived mailbox.
pub(crate) async fn call_manager(node: &Node, on: &str, request: &Request, timeout: Duration) -> Result<Term, crate::process::CallError> {
    node.spawn_mailbox().call((MANAGER_NAME, on), request.to_term(), timeout).await
}

async fn hosted_on(node: &Node, shared: &Shared, on: &Atom, type_name: &str) -> Result<Vec<Atom>, MigrationError> {
    if on == node.name() {
        return Ok(shared.movable().into_iter().filter(|(_, t, _)| t == type_name).map(|(n, _, _)| n).collect());
    }
    let reply = call_manager(node, on.as_str(), &Request::Hosted, Duration::from_secs(30)).await?;
    let Term::List(items) = reply else { return Err(MigrationError::Failed(reply)) };
    Ok(items
        .iter()
        .filter_map(|i| match i.as_tuple() {
            Some([Term::Atom(n), Term::Binary(t)]) if t.as_ref() == type_name.as_bytes() => Some(n.clone()),
            _ => None,
        })
        .collect())
}

async fn migrate_via_host(node: &Node, shared: &Shared, name: &str, target: &str, mode: Mode, timeout: Duration) -> Result<Pid, MigrationError> {
    let host = shared.registry.whereis(name).ok_or_else(|| MigrationError::NoSuchName(name.to_string()))?;
    let req = Request::Migrate { name: Atom::new(name), target: Atom::new(target), mode };
    match call_manager(node, host.node.as_str(), &req, timeout).await {
        Ok(reply) => parse_result(reply),
        // The host may have moved the process all the same: the answer is
        // where the name points, not the lost reply (docs/handoff.md).
        Err(reason @ (crate::process::CallError::Timeout(_) | crate::process::CallError::NodeDown(_))) => {
            match settled_location(shared, name, &host, target).await {
                Some(pid) if pid.node.as_str() == target => {
                    tracing::info!(%name, %pid, error = %reason, "no reply from the host, but the process moved to the target");
                    Ok(pid)
                }
                now_at => Err(MigrationError::ReplyLost { name: name.to_string(), reason, now_at }),
            }
        }
        Err(e) => Err(e.into()),
    }
}

/// Where `name` points once a handoff that may be under way has had time
/// to finish: as soon as it leaves `source`, or after the longest a
/// handoff can still take (accept plus switch timeouts).
async fn settled_location(shared: &Shared, name: &str, source: &Pid, target: &str) -> Option<Pid> {
    let deadline = tokio::time::Instant::now() + shared.cfg.accept_timeout + shared.cfg.switch_timeout;
    loop {
        let now = shared.registry.whereis(name);
        let moved = match &now {
            Some(p) => p != source || p.node.as_str() == target,
            None => false,
        };
        if moved || tokio::time::Instant::now() >= deadline {
            return now;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Runs moves with bounded concurrency, logging progress; a move that
/// failed (a busy target timing out, a lost race with another handoff)
/// is tried again twice before it is reported.
async fn run_plan(node: &Node, shared: &Arc<Shared>, plan: Vec<(String, Atom)>, what: &'static str) -> MoveReport {
    let mut report = run_plan_once(node, shared, plan.clone(), what).await;
    for attempt in 1..=2 {
        if report.failed.is_empty() {
            break;
        }
        let retry: Vec<(String, Atom)> = plan.iter().filter(|(n, _)| report.failed.iter().any(|(f, _)| f == n)).cloned().collect();
        tracing::warn!(count = retry.len(), attempt, "{what}: retrying failed moves");
        tokio::time::sleep(Duration::from_millis(200 * attempt)).await;
        let again = run_plan_once(node, shared, retry, what).await;
        report.moved += again.moved;
        report.failed = again.failed;
    }
    report
}

async fn run_plan_once(node: &Node, shared: &Arc<Shared>, plan: Vec<(String, Atom)>, what: &'static str) -> MoveReport {
    let total = plan.len();
    if total == 0 {
        return MoveReport::default();
    }
    tracing::info!(total, "{what}: moving processes");
    let sem = Arc::new(tokio::sync::Semaphore::new(PLACEMENT_CONCURRENCY));
    let mut tasks = tokio::task::JoinSet::new();
    for (name, to) in plan {
        let permit = sem.clone().acquire_owned().await.expect("semaphore open");
        let node = node.clone();
        let shared = shared.clone();
        tasks.spawn(async move {
            let r = migrate_via_host(&node, &shared, &name, to.as_str(), Mode::Hot, Duration::from_secs(60)).await;
            drop(permit);
            (name, r)
        });
    }
    let mut report = MoveReport::default();
    let step = (total / 10).max(1);
    while let Some(done) = tasks.join_next().await {
        match done {
            Ok((_, Ok(_))) => report.moved += 1,
            Ok((name, Err(e))) => report.failed.push((name, e.to_string())),
            Err(e) => report.failed.push(("?".into(), e.to_string())),
        }
        let n = report.moved + report.failed.len();
        if n % step == 0 || n == total {
            tracing::info!(done = n, total, failed = report.failed.len(), "{what}: progress");
        }
    }
    report
}

fn unknown_type(type_name: &str) -> Term {
    Term::tuple([Term::atom("error"), Term::tuple([Term::atom("unknown_type"), Term::from(type_name)])])
}

fn parse_result(reply: Term) -> Result<Pid, MigrationError> {
    match reply.as_tuple() {
        Some([ok, Term::Pid(p)]) if ok.is_atom("ok") => Ok(p.clone()),
        Some([e, reason]) if e.is_atom("error") => Err(MigrationError::Failed(reason.clone())),
        _ => Err(MigrationError::Failed(Term::tuple([Term::atom("bad_reply"), reply]))),
    }
}

/// A newcomer hosts `type_name`: every local process of that type whose
/// owner on the new ring is the newcomer moves there.
fn rebalance_to(node: &Node, shared: &Arc<Shared>, newcomer: &Atom, type_name: &str) {
    let ring = shared.members.ring(type_name, None);
    let plan: Vec<(String, Atom)> = shared
        .movable()
        .into_iter()
        .filter(|(name, ty, _)| ty == type_name && ring.owner(&Term::Atom(name.clone())).as_ref() == Some(newcomer))
        .map(|(name, _, _)| (name.to_string(), newcomer.clone()))
        .collect();
    if plan.is_empty() {
        return;
    }
    let node = node.clone();
    let shared = shared.clone();
    tokio::spawn(async move {
        let r = run_plan(&node, &shared, plan, "join").await;
        if !r.failed.is_empty() {
            tracing::warn!(failed = r.failed.len(), first = ?r.failed.first(), "join: some processes did not move");
        }
    });
}

async fn manager_loop(node: Node, shared: Arc<Shared>, mut mb: crate::process::Mailbox, mut events: tokio::sync::broadcast::Receiver<NodeEvent>) -> Term {
    // Migrations in flight: our reference -> the caller's From.
    let mut pending: HashMap<Reference, Term> = HashMap::new();
    loop {
        let msg = tokio::select! {
            m = mb.recv() => match m { Some(m) => m, None => break },
            ev = events.recv() => {
                match ev {
                    Ok(NodeEvent::Up(peer)) => announce(&node, &shared, &peer, true),
                    Ok(NodeEvent::Down { node: peer, .. }) => shared.members.remove_node(&peer),
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => tracing::warn!(missed = n, "migration manager missed node events"),
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => {}
                }
                continue;
            }
        };
        if let Some((from, request)) = gen_call_parts(&msg) {
            handle_call(&node, &shared, &mut mb, &mut pending, from, request);
            continue;
        }
        match Op::parse(&msg) {
            Some(Ok(Op::Result { reference, result })) => match pending.remove(&reference) {
                Some(from) => mb.reply(&from, result_term(&result)),
                None => tracing::debug!("migration result for nobody dropped"),
            },
            Some(Ok(Op::Members { node: peer, types, ack, encoding })) => {
                // The encoding first: the join plan below hashes with it.
                if let Some(e) = encoding {
                    shared.members.set_announced(&peer, e);
                }
                let new_types = shared.members.set(&peer, &types);
                if ack {
                    announce(&node, &shared, &peer, false);
                }
                if shared.cfg.rebalance_on_join {
                    for t in new_types {
                        rebalance_to(&node, &shared, &peer, &t);
                    }
                }
            }
            _ => tracing::debug!(?msg, "migration manager: unexpected message dropped"),
        }
    }
    Term::atom("normal")
}

fn handle_call(node: &Node, shared: &Arc<Shared>, mb: &mut crate::process::Mailbox, pending: &mut HashMap<Reference, Term>, from: &Term, request: &Term) {
    match Request::parse(request) {
        Some(Request::Start { type_name, args, name, reference, source, replicas, handover }) => {
            let factory = shared.types.read().unwrap().get(&type_name).cloned();
            let reply = match factory {
                Some(f) => match f(node, shared, args, name, StartAs::Target(reference.clone(), source.clone(), replicas)) {
                    // The handover that came with the request goes to the
                    // target as the source would have sent it (it waits
                    // for exactly this message), and the source learns it
                    // need not send it.
                    Ok(pid) => match handover {
                        Some((state, queue)) => {
                            mb.send(&pid, Op::Handover { reference, state, queue, source }.to_term());
                            Term::tuple([Term::atom("ok"), Term::Pid(pid), Term::atom(HANDED_OVER)])
                        }
                        None => result_term(&Ok(pid)),
                    },
                    Err(e) => result_term(&Err(e)),
                },
                None => unknown_type(&type_name),
            };
            mb.reply(from, reply);
        }
        Some(Request::Spawn { type_name, args, name }) => {
            let Some(f) = shared.types.read().unwrap().get(&type_name).cloned() else {
                mb.reply(from, unknown_type(&type_name));
                return;
            };
            let pid = match f(node, shared, args, name.clone(), StartAs::Fresh(None)) {
                Ok(pid) => pid,
                Err(e) => return mb.reply(from, result_term(&Err(e))),
            };
            // Registering waits on global's lock: not in the manager's loop.
            let (node, shared, from) = (node.clone(), shared.clone(), from.clone());
            tokio::spawn(async move {
                let reply = match shared.register_name(&type_name, name.as_str(), &pid).await {
                    Ok(()) => Ok(pid),
                    Err(e) => {
                        node.exit(&pid, Term::atom("kill"));
                        Err(Term::from(e.to_string().as_str()))
                    }
                };
                node.reply(&from, result_term(&reply));
            });
        }
        Some(Request::Migrate { name, target, mode }) => match shared.registry.whereis(name.as_str()) {
            Some(pid) if node.is_alive(&pid) => {
                let reference = node.make_ref();
                pending.insert(reference.clone(), from.clone());
                let begin = Op::Begin { reference, target, mode, reply_to: Some(mb.pid().clone()) };
                mb.send(&pid, begin.to_term());
            }
            Some(pid) if &pid.node != node.name() => {
                // Hosted elsewhere: ask that node's manager on the caller's behalf.
                let from = from.clone();
                let node2 = node.clone();
                tokio::spawn(async move {
                    let req = Request::Migrate { name, target, mode };
                    let reply = match call_manager(&node2, pid.node.as_str(), &req, Duration::from_secs(60)).await {
                        Ok(r) => r,
                        Err(e) => Term::tuple([Term::atom("error"), Term::from(e.to_string().as_str())]),
                    };
                    node2.reply(&from, reply);
                });
            }
            _ => mb.reply(from, Term::tuple([Term::atom("error"), Term::atom("no_such_name")])),
        },
        Some(Request::Rebalance { type_name }) => {
            let m = Migration { node: node.clone(), shared: shared.clone() };
            let from = from.clone();
            tokio::spawn(async move {
                let reply = match m.rebalance(&type_name).await {
                    Ok(r) if r.failed.is_empty() => Term::tuple([Term::atom("ok"), Term::Int(r.moved as i64)]),
                    Ok(r) => Term::tuple([Term::atom("error"), Term::tuple([Term::atom("failed"), Term::Int(r.failed.len() as i64)])]),
                    Err(e) => Term::tuple([Term::atom("error"), Term::from(e.to_string().as_str())]),
                };
                m.node.reply(&from, reply);
            });
        }
        Some(Request::Status) => {
            let hosted = shared.hosted.snapshot().into_iter().map(|(n, t, _)| Term::tuple([Term::Atom(n), Term::from(t.as_str())])).collect();
            let reply = Term::Map(vec![
                (Term::atom("hosted"), Term::List(hosted)),
                (Term::atom("in_flight"), Term::Int(pending.len() as i64)),
                (Term::atom("nodes"), Term::List(node.connected_nodes().into_iter().map(Term::Atom).collect())),
            ]);
            mb.reply(from, reply);
        }
        Some(Request::Hosted) => {
            // Placement input: pinned processes are left out.
            let list = shared.movable().into_iter().map(|(n, t, _)| Term::tuple([Term::Atom(n), Term::from(t.as_str())])).collect::<Vec<_>>();
            mb.reply(from, Term::List(list));
        }
        None => {
            tracing::warn!(?request, "migration manager: unknown call");
            mb.reply(from, Term::tuple([Term::atom("error"), Term::atom("unknown_request")]));
        }
    }
}
