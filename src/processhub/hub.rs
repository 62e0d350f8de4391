//! The Rust API of hub membership: [`Node::processhub`] gives a
//! [`HubBuilder`]; [`HubBuilder::join`] starts the member and returns a
//! [`Hub`] handle.
//!
//! ```no_run
//! # async fn demo(node: erlnode::Node) -> Result<(), erlnode::processhub::HubError> {
//! use erlnode::examples::counter::Counter;
//! let hub = node.processhub("my_hub").child::<Counter>("MyApp.Counter").join().await?;
//! // Elixir: ProcessHub.start_children(:my_hub, [%{id: "c1", start: {MyApp.Counter, :start_link, [0]}}])
//! // places some children here, as Rust `Counter`s.
//! println!("hub nodes: {:?}", hub.nodes());
//! let report = hub.leave().await; // hands every child to the other members
//! # Ok(()) }
//! ```

use super::member::{Internal, Member, View};
use super::types::ChildTypes;
use super::{Dialect, HubChild};
use crate::migration::replica::placement::ReplicaCtx;
use crate::migration::ring::RingEncoding;
use crate::migration::Migratable;
use crate::term::{Atom, Pid, Term};
use crate::Node;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::sync::{broadcast, mpsc, oneshot};

/// Timers and placement of a Rust hub member.
#[derive(Debug, Clone)]
pub struct HubConfig {
    /// How often `{:cluster_join_event, node}` goes to the other members
    /// (ProcessHub's `hubs_discover_interval`, 10 s).
    pub discover_interval: Duration,
    /// How long a move away waits for the target's
    /// `collect_start_results` (ProcessHub's `child_migration_timeout`).
    pub migration_timeout: Duration,
    /// How long a move away waits for the target's handlers to become
    /// visible (where ProcessHub gives up at once and loses the move).
    pub visibility_timeout: Duration,
    /// How long an old child forwards late messages to its new process.
    pub retention: Duration,
    /// How long a graceful leave waits for the other members to restart
    /// the children it handed over.
    pub leave_timeout: Duration,
    /// The ring's encoding; `None`: the oldest OTP release among the
    /// Elixir members (asked at join), as each hashes with its own.
    pub ring_encoding: Option<RingEncoding>,
    /// The hub's migration strategy, which the Elixir members configure
    /// and the wire does not say: `true` (default) for HotSwap with
    /// `handover: true`, whose children `use
    /// ProcessHub.Strategy.Migration.HotSwap`; `false` for ColdSwap (or
    /// HotSwap without handover): children leave this node without state,
    /// and no `{:process_hub, ...}` message is sent to an Elixir child
    /// that may have no clause for it.
    pub handover: bool,
}

impl Default for HubConfig {
    fn default() -> Self {
        HubConfig {
            discover_interval: Duration::from_secs(10),
            migration_timeout: Duration::from_secs(10),
            visibility_timeout: Duration::from_secs(30),
            retention: Duration::from_secs(5),
            leave_timeout: Duration::from_secs(10),
            ring_encoding: None,
            handover: true,
        }
    }
}

/// Why a member could not start.
#[derive(Debug, thiserror::Error)]
pub enum HubError {
    #[error("the hub name {0} is registered to another process on this node")]
    NameTaken(String),
    #[error("the hub's pg scope: {0}")]
    Pg(#[from] crate::pg::PgError),
    #[error("the hub member stopped while starting")]
    Stopped,
}

/// What a graceful leave did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LeaveReport {
    /// Children whose state went to their new owner.
    pub handed_over: usize,
    /// Of those, the ones whose new process was seen, and that forwarded
    /// their kept messages to it.
    pub forwarded: usize,
    /// Children stopped without a handover (no other member, or no state).
    pub stopped: usize,
}

/// Configures membership in one hub; from [`Node::processhub`].
pub struct HubBuilder {
    node: Node,
    hub_id: String,
    dialect: Dialect,
    types: ChildTypes,
    cfg: HubConfig,
    replicas: Option<Arc<ReplicaCtx>>,
}

impl Node {
    /// Membership in the ProcessHub hub `hub_id` (an atom on the Elixir
    /// side: `:my_hub` is `"my_hub"`).
    pub fn processhub(&self, hub_id: &str) -> HubBuilder {
        HubBuilder { node: self.clone(), hub_id: hub_id.to_string(), dialect: Dialect::V0_4_1, types: ChildTypes::default(), cfg: HubConfig::default(), replicas: None }
    }
}

impl HubBuilder {
    /// Children whose spec starts `module` (`"MyApp.Counter"`) run here
    /// as `M`, with the spec's args decoded into `M::Args`.
    pub fn child<M: Migratable>(mut self, module: &str) -> Self {
        self.types.insert::<M>(module);
        self
    }

    /// The protocol version the hub speaks (only 0.4.1-beta today).
    pub fn dialect(mut self, d: Dialect) -> Self {
        self.dialect = d;
        self
    }

    pub fn config(mut self, cfg: HubConfig) -> Self {
        self.cfg = cfg;
        self
    }

    /// Crash-safe children: a child of a type with replicas (its
    /// `Migratable::REPLICAS`, or `migration`'s setting for the type)
    /// keeps copies of its state on the next nodes hosting the type in
    /// `migration`, under a name made of the hub id and the child id
    /// (a string, an atom or an integer). When its node is killed, the
    /// member ProcessHub's ring gives the child to starts it from the
    /// latest copy; ProcessHub keeps placing, registering and moving it
    /// (docs/replicas.md, "Processes Horde or ProcessHub places").
    pub fn replicas(mut self, migration: &crate::migration::Migration) -> Self {
        self.replicas = Some(migration.replica_ctx());
        self
    }

    /// Starts the member: pg scope, coordinator registered as the hub id
    /// and joined to the hub's groups, discovery. Returns once the other
    /// members can see it.
    pub async fn join(self) -> Result<Hub, HubError> {
        let scope = self.node.pg_scope(&self.dialect.pg_scope_name(&self.hub_id))?;
        // ProcessHub's PubSub sync spawns a fun on every member every 15 s;
        // a refusal would make each Elixir member log a warning each time.
        self.node.accept_spawned_funs(true);
        let mb = self.node.spawn_mailbox();
        let pid = mb.pid().clone();
        if self.node.register(&self.hub_id, &pid).is_err() {
            return Err(HubError::NameTaken(self.hub_id));
        }
        let view = Arc::new(RwLock::new(View::default()));
        let (tx, rx) = mpsc::unbounded_channel();
        let (notices, _) = broadcast::channel(1024);
        let member = Member {
            me: self.node.name().clone(),
            node: self.node.clone(),
            hub: Atom::new(&self.hub_id),
            dialect: self.dialect,
            cfg: self.cfg,
            types: self.types,
            scope,
            mb,
            view: view.clone(),
            local: HashMap::new(),
            stored: HashMap::new(),
            moving: HashSet::new(),
            encodings: HashMap::new(),
            pending: HashSet::new(),
            sync_after_moves: HashSet::new(),
            internal_tx: tx.clone(),
            leaving: false,
            handing: HashMap::new(),
            notices: notices.clone(),
            replicas: self.replicas,
            restored: HashMap::new(),
        };
        tracing::info!(hub = %self.hub_id, dialect = %self.dialect, types = ?member.types.modules(), "joining ProcessHub hub");
        let (ready_tx, ready_rx) = oneshot::channel();
        let task = tokio::spawn(member.run(rx, ready_tx));
        match ready_rx.await {
            Ok(Ok(())) => Ok(Hub { hub_id: self.hub_id, node: self.node, pid, view, tx, notices, task: Arc::new(std::sync::Mutex::new(Some(task))) }),
            Ok(Err(e)) => Err(e.into()),
            Err(_) => Err(HubError::Stopped),
        }
    }
}

/// A running membership; cheap to clone. Membership lasts until
/// [`Hub::leave`] or the node's shutdown (dropping the handles does not
/// end it).
#[derive(Clone)]
pub struct Hub {
    hub_id: String,
    node: Node,
    pid: Pid,
    view: Arc<RwLock<View>>,
    tx: mpsc::UnboundedSender<Internal>,
    notices: broadcast::Sender<super::HubNotice>,
    task: Arc<std::sync::Mutex<Option<tokio::task::JoinHandle<Term>>>>,
}

impl Hub {
    pub fn hub_id(&self) -> &str {
        &self.hub_id
    }

    /// The member's events, at ProcessHub's hook points ([`super::HubNotice`]).
    pub fn subscribe(&self) -> broadcast::Receiver<super::HubNotice> {
        self.notices.subscribe()
    }

    /// The coordinator's pid (registered as the hub id).
    pub fn coordinator(&self) -> &Pid {
        &self.pid
    }

    /// Every hub member, this node included, sorted.
    pub fn nodes(&self) -> Vec<Atom> {
        let mut v: Vec<Atom> = self.view.read().unwrap().nodes.iter().cloned().collect();
        v.push(self.node.name().clone());
        v.sort();
        v
    }

    /// `ProcessHub.get_pid/2`: the child's pid on its first node.
    pub fn get_pid(&self, cid: &Term) -> Option<Pid> {
        self.view.read().unwrap().registry.get(cid).and_then(|c| c.nodes.first().map(|(_, p)| p.clone()))
    }

    /// The hub's registry entry of a child.
    pub fn child(&self, cid: &Term) -> Option<HubChild> {
        self.view.read().unwrap().registry.get(cid).cloned()
    }

    /// Number of children in the hub's registry as this member knows it.
    pub fn registry_len(&self) -> usize {
        self.view.read().unwrap().registry.len()
    }

    /// The children running here: `(child id, pid)`.
    pub fn local_children(&self) -> Vec<(Term, Pid)> {
        self.view.read().unwrap().local.clone()
    }

    /// Graceful leave: every child goes, with its state, to its owner on
    /// the ring without this node; then the member stops.
    pub async fn leave(&self) -> LeaveReport {
        let (reply, rx) = oneshot::channel();
        if self.tx.send(Internal::Leave { reply }).is_err() {
            return LeaveReport::default();
        }
        let report = rx.await.unwrap_or_default();
        let task = self.task.lock().unwrap().take();
        if let Some(t) = task {
            let _ = t.await;
        }
        report
    }
}
