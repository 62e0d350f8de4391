//! Phoenix.PubSub membership: Rust processes subscribe to and broadcast
//! on the topics of an Elixir application's PubSub server, through the
//! `pg`-based adapter (`Phoenix.PubSub.PG2`, phoenix_pubsub 2.x), with
//! exactly the messages Phoenix.PubSub itself sends, so the Elixir nodes
//! need no change.
//!
//! How PG2 works (and erlnode with it): every node runs, per server,
//! `pool_size` workers, each registered under a group name and joined to
//! that group in the pg scope `Phoenix.PubSub`. The groups are the
//! adapter name `Server.Adapter` and `:"Elixir.Server.Adapter_N"` for
//! N = 2..pool_size. `broadcast` picks one group, sends
//! `{forward_to_local, Topic, Message, Dispatcher}` to each of its
//! members on other nodes, and dispatches locally; a worker receiving it
//! dispatches to its node's subscribers. `direct_broadcast` sends the same
//! tuple to `{Group, Node}`.
//!
//! ```no_run
//! # async fn demo(node: erlnode::Node) -> Result<(), erlnode::pubsub::PubSubError> {
//! use erlnode::Term;
//! let pubsub = node.pubsub("MyApp.PubSub").start().await?;
//! let me = node.spawn(|mut mb| async move {
//!     // Receives what Phoenix.PubSub.broadcast(MyApp.PubSub, "room:1", msg) sends.
//!     while let Some(msg) = mb.recv().await { tracing::info!(?msg, "room:1"); }
//!     Term::atom("normal")
//! });
//! pubsub.subscribe(&me, "room:1");
//! pubsub.broadcast("room:1", Term::atom("hello"))?; // reaches every Elixir subscriber once
//! # Ok(()) }
//! ```

mod names;
mod worker;

pub use names::{adapter_name, server_atom, DEFAULT_DISPATCHER, SCOPE};
pub use worker::forward_to_local;

use crate::pg::{PgError, PgScope};
use crate::term::{Atom, Pid, Term};
use crate::Node;
use std::sync::Arc;
use worker::Subscribers;

/// Errors from the PubSub API.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum PubSubError {
    #[error("pg: {0}")]
    Pg(#[from] PgError),
    #[error("cannot start the pubsub worker {0}: the name is registered to another process")]
    NameTaken(String),
    #[error("pool_size must be at least 1 and at least broadcast_pool_size")]
    PoolSize,
    #[error("{0} is not a process of this node")]
    NotLocal(Pid),
}

/// Options of a PubSub server on this node; from [`Node::pubsub`].
pub struct PubSubBuilder {
    node: Node,
    server: Atom,
    pool_size: usize,
    broadcast_pool_size: Option<usize>,
}

impl PubSubBuilder {
    /// Listener workers (groups) on this node; as Phoenix.PubSub's
    /// `:pool_size`, it must be at least the largest broadcast pool of any
    /// node in the cluster, or broadcasts hashed to the missing groups
    /// skip this node. Default 1.
    pub fn pool_size(mut self, n: usize) -> Self {
        self.pool_size = n;
        self
    }

    /// Groups this node's broadcasts choose from (`:broadcast_pool_size`);
    /// default `pool_size`.
    pub fn broadcast_pool_size(mut self, n: usize) -> Self {
        self.broadcast_pool_size = Some(n);
        self
    }

    /// Starts the workers and joins them to their groups in the
    /// `Phoenix.PubSub` pg scope (started here if needed): from then on
    /// Elixir broadcasts reach this node's subscribers.
    pub async fn start(self) -> Result<PubSub, PubSubError> {
        let bsize = self.broadcast_pool_size.unwrap_or(self.pool_size);
        if self.pool_size == 0 || bsize == 0 || bsize > self.pool_size {
            return Err(PubSubError::PoolSize);
        }
        let scope = self.node.pg_scope(SCOPE)?;
        let adapter = adapter_name(&self.server);
        let groups = names::groups(&adapter, self.pool_size);
        let subs = Arc::new(Subscribers::default());
        let mut workers: Vec<Pid> = Vec::new();
        for g in &groups {
            let (subs, server) = (subs.clone(), self.server.clone());
            let pid = self.node.spawn(move |mb| worker::run(mb, subs, server));
            if self.node.register(g.as_str(), &pid).is_err() {
                for w in workers.iter().chain([&pid]) {
                    self.node.exit(w, Term::atom("kill"));
                }
                return Err(PubSubError::NameTaken(g.as_str().to_string()));
            }
            workers.push(pid);
        }
        let pubsub = PubSub { node: self.node, server: self.server, scope, groups, broadcast_groups: bsize, subs, workers };
        // Registered first, then joined: a member found through pg is
        // always reachable by name too.
        for (g, w) in pubsub.groups.iter().zip(&pubsub.workers) {
            pubsub.scope.join(Term::Atom(g.clone()), w).await?;
        }
        Ok(pubsub)
    }
}

impl Node {
    /// A Phoenix.PubSub server named `server` (as Elixir writes it:
    /// `"MyApp.PubSub"`) on this node; configure, then `start()`.
    pub fn pubsub(&self, server: &str) -> PubSubBuilder {
        PubSubBuilder { node: self.clone(), server: server_atom(server), pool_size: 1, broadcast_pool_size: None }
    }
}

/// A running PubSub server on this node.
pub struct PubSub {
    node: Node,
    server: Atom,
    scope: PgScope,
    groups: Vec<Atom>,
    broadcast_groups: usize,
    subs: Arc<Subscribers>,
    workers: Vec<Pid>,
}

impl PubSub {
    /// The server's atom (`Elixir.MyApp.PubSub`).
    pub fn server(&self) -> &Atom {
        &self.server
    }

    /// The workers' pids, one per group (what Elixir nodes see in
    /// `:pg.get_members(Phoenix.PubSub, group)`).
    pub fn workers(&self) -> &[Pid] {
        &self.workers
    }

    /// `Phoenix.PubSub.subscribe/2` for a local process: it receives
    /// every message broadcast on `topic`, once per subscription.
    pub fn subscribe(&self, pid: &Pid, topic: &str) -> Result<(), PubSubError> {
        if pid.node != *self.node.name() {
            return Err(PubSubError::NotLocal(pid.clone()));
        }
        self.subs.add(topic.as_bytes(), pid);
        Ok(())
    }

    /// `Phoenix.PubSub.unsubscribe/2`.
    pub fn unsubscribe(&self, pid: &Pid, topic: &str) {
        self.subs.remove(topic.as_bytes(), pid)
    }

    /// `Phoenix.PubSub.broadcast/3`: every subscriber in the cluster.
    pub fn broadcast(&self, topic: &str, message: Term) -> Result<(), PubSubError> {
        self.broadcast_with(None, topic, message)
    }

    /// `Phoenix.PubSub.broadcast_from/4`: every subscriber but `from`.
    pub fn broadcast_from(&self, from: &Pid, topic: &str, message: Term) -> Result<(), PubSubError> {
        self.broadcast_with(Some(from), topic, message)
    }

    fn broadcast_with(&self, from: Option<&Pid>, topic: &str, message: Term) -> Result<(), PubSubError> {
        // PG2.group/1 hashes the caller's pid over the broadcast pool.
        let i = from.map(|p| p.id as usize % self.broadcast_groups).unwrap_or(0);
        let group = Term::Atom(self.groups[i].clone());
        let fwd = worker::forward_to_local(topic.as_bytes(), message.clone(), &Atom::new(names::DEFAULT_DISPATCHER));
        for pid in self.scope.get_members(&group) {
            if pid.node != *self.node.name() {
                self.node.send(&pid, fwd.clone());
            }
        }
        self.subs.dispatch(&self.node, topic.as_bytes(), from, &message);
        Ok(())
    }

    /// `Phoenix.PubSub.local_broadcast/3`: this node's subscribers only.
    pub fn local_broadcast(&self, topic: &str, message: Term) {
        self.subs.dispatch(&self.node, topic.as_bytes(), None, &message);
    }

    /// `Phoenix.PubSub.local_broadcast_from/4`.
    pub fn local_broadcast_from(&self, from: &Pid, topic: &str, message: Term) {
        self.subs.dispatch(&self.node, topic.as_bytes(), Some(from), &message);
    }

    /// `Phoenix.PubSub.direct_broadcast/4`: the subscribers on `node` only.
    pub fn direct_broadcast(&self, node: &str, topic: &str, message: Term) {
        let fwd = worker::forward_to_local(topic.as_bytes(), message, &Atom::new(names::DEFAULT_DISPATCHER));
        let from = self.workers[0].clone();
        self.node.send_named(&from, self.groups[0].as_str(), node, fwd);
    }
}

impl Drop for PubSub {
    fn drop(&mut self) {
        for w in &self.workers {
            self.node.exit(w, Term::atom("kill"));
        }
    }
}
