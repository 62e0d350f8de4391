//! A `Horde.DynamicSupervisor` member on the Rust node: the children
//! Horde's ring gives this node run here as Rust state machines.
//!
//! With `members: :auto`, Horde makes every visible node a member of
//! every DynamicSupervisor; a node that does not run the supervisor stays
//! `:uninitialized` forever, takes no children and, under
//! `UniformQuorumDistribution`, counts against quorum. A
//! [`HordeSupervisor`] is a real member: it writes its own status, takes
//! the children the ring gives it (a child spec names an Elixir module;
//! the Rust type registered for that module runs it, an unknown module is
//! refused with `{:error, {:erlnode_no_rust_type, module}}`), restarts
//! them per their spec, answers the calls other members make, and hands
//! its children back to the cluster when it leaves.
//!
//! - [`members`]: the member struct and the two distribution strategies;
//! - `process`: the member's three processes (`Sup`, `Sup.Crdt`,
//!   `Sup.ProcessesSupervisor`) as one task.

pub mod members;
mod process;

use self::process::{Config, Request, Route};
use super::crdt::DEFAULT_MAX_ITEMS;
use super::{elixir_name, HordeError, HordeRegistry};
use crate::migration::Migratable;
use crate::process::Mailbox;
use crate::processhub::types::ChildTypes;
use crate::term::{Atom, Pid, Term};
use crate::Node;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

pub use members::{Distribution, Member, Status};

/// Horde's `process_redistribution` option.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Redistribution {
    /// Children stay where they run until they stop (Horde's default).
    #[default]
    Passive,
    /// On every membership change, a child the ring now gives another
    /// member is stopped with `{:shutdown, :process_redistribution}` and
    /// started there.
    Active,
}

/// A child as the member sees it (`which_children`).
#[derive(Debug, Clone, PartialEq)]
pub struct ChildInfo {
    /// Horde's child id (a random integer Horde gives each child).
    pub id: Term,
    pub pid: Pid,
    /// The module of the spec's `start: {M, F, A}`.
    pub module: Term,
    /// Whether it runs on this node.
    pub local: bool,
}

/// What a graceful leave did.
#[derive(Debug, Clone, PartialEq)]
pub struct LeaveReport {
    /// Children stopped and handed back to the cluster (`{nil, spec}`).
    pub relinquished: usize,
    /// Whether every other member acked the last writes before the node
    /// went.
    pub synced: bool,
    /// Children still running when the deadline passed (stopped then).
    pub still_running: usize,
    /// With [`HordeSupervisorBuilder::register_in`]: whether every other
    /// member of that registry acked the deletes of the stopped children's
    /// names ([`HordeRegistry::flush`]). `None` without a registry.
    pub registry_synced: Option<bool>,
}

/// How to start a member; see [`HordeSupervisor::builder`].
pub struct HordeSupervisorBuilder {
    name: Atom,
    auto: bool,
    members: Vec<Atom>,
    distribution: Distribution,
    redistribution: Redistribution,
    sync_interval: Duration,
    max_restarts: usize,
    max_seconds: Duration,
    types: ChildTypes,
    via: Option<(HordeRegistry, Atom)>,
    handoff: Option<Atom>,
    replicas: Option<std::sync::Arc<crate::migration::replica::placement::ReplicaCtx>>,
}

impl HordeSupervisorBuilder {
    /// `members: :auto` (the default).
    pub fn members_auto(mut self) -> Self {
        self.auto = true;
        self
    }

    /// Explicit members, by node name.
    pub fn members(mut self, nodes: &[&str]) -> Self {
        self.auto = false;
        self.members = nodes.iter().map(|n| Atom::new(n)).collect();
        self
    }

    /// The distribution strategy; it must be the Elixir members' one.
    pub fn distribution(mut self, d: Distribution) -> Self {
        self.distribution = d;
        self
    }

    /// `process_redistribution`; it should be the Elixir members' one.
    pub fn redistribution(mut self, r: Redistribution) -> Self {
        self.redistribution = r;
        self
    }

    /// DeltaCrdt's `sync_interval` (Horde's default: 300 ms).
    pub fn sync_interval(mut self, d: Duration) -> Self {
        self.sync_interval = d;
        self
    }

    /// `max_restarts` in `max_seconds` (Horde's defaults: 3 in 5 s).
    /// A child that crashes more often is given up (Horde would stop the
    /// whole member instead).
    pub fn restart_intensity(mut self, max_restarts: usize, max_seconds: Duration) -> Self {
        self.max_restarts = max_restarts;
        self.max_seconds = max_seconds;
        self
    }

    /// Children whose spec names `module` (`MyApp.Account`) run as `M`;
    /// their start arguments decode into `M::Args`.
    pub fn child<M: Migratable>(mut self, module: &str) -> Self {
        self.types.insert::<M>(module);
        self
    }

    /// Registers each child whose first start argument is a map with
    /// `key_field` in `registry` under that value, as an Elixir child
    /// started with `name: {:via, Horde.Registry, {Reg, key}}` is.
    pub fn register_in(mut self, registry: &HordeRegistry, key_field: &str) -> Self {
        self.via = Some((registry.clone(), Atom::new(key_field)));
        self
    }

    /// State handoff, which Horde lacks: a child whose first start
    /// argument is a map with `key_field` hands its state
    /// (`prepare_handover_state`) to the process that replaces it when
    /// Horde moves it (redistribution, graceful leave), on any member,
    /// and messages that still reach it are forwarded to the replacement.
    /// Elixir children take part with `use Erlnode.Horde` (docs/horde.md).
    pub fn handoff(mut self, key_field: &str) -> Self {
        self.handoff = Some(Atom::new(key_field));
        self
    }

    /// Crash-safe children: a child of a type with replicas (its
    /// `REPLICAS`, or `migration`'s setting for the type) keeps copies of
    /// its state on the next nodes hosting the type in `migration`, as
    /// any erlnode process with replicas does; when its member is killed,
    /// the member Horde restarts it on starts it from the latest copy
    /// instead of from scratch (an Elixir child with `use Erlnode.Horde`
    /// does the same). Horde stays in charge of placement and names.
    /// Children are told apart by their handoff key (else their registry
    /// key), which must be a string, an atom or an integer
    /// (docs/replicas.md, "Processes Horde or ProcessHub places").
    pub fn replicas(mut self, migration: &crate::migration::Migration) -> Self {
        self.replicas = Some(migration.replica_ctx());
        self
    }

    /// Starts `Sup`, `Sup.Crdt` and `Sup.ProcessesSupervisor` on `node`.
    pub fn start(self, node: &Node) -> Result<HordeSupervisor, HordeError> {
        if self.replicas.is_some() && self.handoff.is_none() && self.via.is_none() {
            return Err(HordeError::Start("replicas need a key to tell children apart: set handoff(..) or register_in(..)".into()));
        }
        let (tx, rx) = mpsc::unbounded_channel();
        let cfg = Config {
            name: self.name.clone(),
            auto: self.auto,
            members: self.members,
            distribution: self.distribution,
            redistribution: self.redistribution,
            sync_interval: self.sync_interval,
            max_items: DEFAULT_MAX_ITEMS,
            max_restarts: self.max_restarts,
            max_seconds: self.max_seconds,
            types: self.types,
            via: self.via.clone(),
            handoff: self.handoff,
            replicas: self.replicas,
        };
        let pid = process::spawn(node, cfg, rx).map_err(|e| HordeError::Start(e.to_string()))?;
        let registry = self.via.map(|(r, _)| r);
        Ok(HordeSupervisor { node: node.clone(), name: self.name, pid, requests: tx, registry })
    }
}

/// A `Horde.DynamicSupervisor` this node is a member of.
///
/// ```no_run
/// # async fn demo(node: erlnode::Node) -> Result<(), erlnode::horde::HordeError> {
/// use erlnode::examples::account::Account;
/// use erlnode::horde::{HordeSupervisor, Redistribution};
/// let sup = HordeSupervisor::builder("MyApp.Sup")
///     .redistribution(Redistribution::Active)
///     .child::<Account>("MyApp.Account")
///     .start(&node)?;
/// // Elixir: Horde.DynamicSupervisor.start_child(MyApp.Sup,
/// //   %{id: :a, start: {MyApp.Account, :start_link, [%{balance: 5}]}})
/// // runs an `Account` here when the ring says so.
/// let local = sup.children().await?.into_iter().filter(|c| c.local).count();
/// # let _ = local; Ok(()) }
/// ```
#[derive(Clone)]
pub struct HordeSupervisor {
    node: Node,
    name: Atom,
    pid: Pid,
    requests: mpsc::UnboundedSender<Request>,
    /// The registry children are named in ([`HordeSupervisorBuilder::register_in`]):
    /// flushed at the end of a leave.
    registry: Option<HordeRegistry>,
}

impl HordeSupervisor {
    /// A member of the supervisor `name` (an Elixir module name such as
    /// `MyApp.Sup`).
    pub fn builder(name: &str) -> HordeSupervisorBuilder {
        HordeSupervisorBuilder {
            name: elixir_name(name),
            auto: true,
            members: vec![],
            distribution: Distribution::Uniform,
            redistribution: Redistribution::Passive,
            sync_interval: Duration::from_millis(300),
            max_restarts: 3,
            max_seconds: Duration::from_secs(5),
            types: ChildTypes::default(),
            via: None,
            handoff: None,
            replicas: None,
        }
    }

    pub fn name(&self) -> &Atom {
        &self.name
    }

    /// The pid registered as `Sup`.
    pub fn pid(&self) -> &Pid {
        &self.pid
    }

    fn ask<T>(&self, make: impl FnOnce(oneshot::Sender<T>) -> Request) -> oneshot::Receiver<T> {
        let (tx, rx) = oneshot::channel();
        let _ = self.requests.send(make(tx));
        rx
    }

    fn not_running(&self) -> HordeError {
        HordeError::NotRunning(self.name.to_string())
    }

    /// `Horde.DynamicSupervisor.start_child/2`: `spec` is a child spec
    /// map (`%{id: .., start: {M, F, A}, restart: ..}`); it starts where
    /// the ring says, here or on another member. The reply is Horde's:
    /// `{:ok, pid}` or `{:error, reason}`.
    pub async fn start_child(&self, spec: Term) -> Result<Term, HordeError> {
        let route = self.ask(|reply| Request::StartChild { spec, reply }).await.map_err(|_| self.not_running())?;
        match route {
            Route::Done(r) => Ok(r),
            Route::Ask(dest, req) => {
                let mut mb: Mailbox = self.node.spawn_mailbox();
                Ok(mb.call(dest, req, Duration::from_secs(30)).await?)
            }
        }
    }

    /// Every child of the supervisor, as the CRDT says (local lookup).
    pub async fn children(&self) -> Result<Vec<ChildInfo>, HordeError> {
        self.ask(|reply| Request::Children { reply }).await.map_err(|_| self.not_running())
    }

    /// The members and their status.
    pub async fn members(&self) -> Result<Vec<Member>, HordeError> {
        self.ask(|reply| Request::Members { reply }).await.map_err(|_| self.not_running())
    }

    /// Leaves gracefully: writes `:shutting_down`, stops every local
    /// child and hands it back to the cluster (the member the ring now
    /// chooses starts it), waits until every other member acked those
    /// writes or `timeout` passed, and stops the member.
    pub async fn leave(&self, timeout: Duration) -> Result<LeaveReport, HordeError> {
        let started = std::time::Instant::now();
        let mut report = self.ask(|reply| Request::Leave { timeout, reply }).await.map_err(|_| self.not_running())?;
        if let Some(reg) = &self.registry {
            // What is left of the deadline, and at least a sync round.
            let left = timeout.saturating_sub(started.elapsed()).max(Duration::from_secs(1));
            report.registry_synced = Some(reg.flush(left).await.unwrap_or(false));
        }
        Ok(report)
    }
}
