//! The node: identity, EPMD registration, the listener, the connection
//! table and local processes, behind one cheap-to-clone handle.
//!
//! ```no_run
//! # async fn demo() -> Result<(), erlnode::NodeError> {
//! let node = erlnode::Node::builder("rust@127.0.0.1").cookie("secret").start().await?;
//! assert!(node.ping("ex@127.0.0.1").await);
//! # Ok(()) }
//! ```

mod builder;
mod dispatch;
pub mod events;
pub mod names;
mod peers;
mod send;

pub use builder::{NodeBuilder, NodeConfig};
pub use dispatch::gen_call_parts;
pub(crate) use dispatch::is_system_name;
pub use events::NodeEvent;

use crate::control::Control;
use crate::process::{Mailbox, ProcessTable};
use crate::term::{Atom, Pid, Reference, Term};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::broadcast;

/// Errors from node operations.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error("EPMD: {0}")]
    Epmd(#[from] crate::epmd::EpmdError),
    #[error("cannot listen: {0}")]
    Listen(std::io::Error),
    #[error("cannot read the cookie: {0}")]
    Cookie(std::io::Error),
    #[error("cannot connect to {node}: {reason}")]
    Connect { node: String, reason: String },
    #[error("{0}")]
    Register(#[from] crate::process::RegisterError),
    #[error("call to {target} timed out after {after:?}")]
    Timeout { target: String, after: Duration },
}

/// Why a send with backpressure ([`Node::send_async`], [`Node::try_send`])
/// did not queue its message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// The link is busy, like a BEAM process's `nosuspend` send to a busy
    /// distribution port: try again later, or use `send_async`.
    #[error("the link to {node} is busy: {queued} bytes wait to be written (busy limit {limit})")]
    WouldBlock { node: Atom, queued: usize, limit: usize },
    /// The link closed (the peer died or was disconnected) before the
    /// message was queued.
    #[error("the link to {node} closed before the message was queued")]
    Closed { node: Atom },
    /// There was no link and none could be made.
    #[error("cannot connect to {node}: {reason}")]
    NoConnection { node: Atom, reason: String },
    /// The message holds a term the peer cannot decode (a native record
    /// for a node older than OTP 29): refused, the link untouched.
    #[error("{node} cannot decode this message: {reason}")]
    Unencodable { node: Atom, reason: String },
}

/// A running node. Clone freely: all clones are the same node.
#[derive(Clone)]
pub struct Node {
    inner: Arc<NodeInner>,
}

pub(crate) struct NodeInner {
    pub(crate) name: Atom,
    pub(crate) creation: u32,
    pub(crate) cookie: String,
    pub(crate) cfg: NodeConfig,
    pub(crate) listen_port: u16,
    pub(crate) processes: Arc<ProcessTable>,
    pub(crate) peers: peers::Peers,
    pub(crate) events: broadcast::Sender<NodeEvent>,
    pub(crate) next_ref: AtomicU64,
    /// Held for the node's lifetime: dropping it unregisters from EPMD.
    pub(crate) epmd_registration: Mutex<Option<crate::epmd::Registration>>,
    pub(crate) epmd_server: Mutex<Option<crate::epmd::EpmdServerHandle>>,
    pub(crate) tasks: Mutex<Vec<tokio::task::AbortHandle>>,
    /// Lets `&self` callbacks (the link's Inbound) reach `Arc<Self>`.
    pub(crate) me: std::sync::Weak<NodeInner>,
    pub(crate) erpc_allow: crate::services::erpc::AllowList,
    /// Set once at start unless the node was built with `.global(false)`.
    pub(crate) global: std::sync::OnceLock<Arc<crate::global::Core>>,
    /// The pg scopes running here, by name (`Node::pg_scope`).
    pub(crate) pg: crate::pg::Scopes,
    /// What all links together may hold of unfinished input.
    pub(crate) input_budget: Arc<crate::connection::InputBudget>,
    /// The migration service, once started (`Node::migration`); weak, as
    /// the service holds the node.
    pub(crate) migration: std::sync::OnceLock<std::sync::Weak<dyn std::any::Any + Send + Sync>>,
}

impl Node {
    /// Starts configuring a node called `name` (`alive@host`, or a short
    /// name to which this host's name is appended).
    pub fn builder(name: impl Into<String>) -> NodeBuilder {
        NodeBuilder::new(name.into())
    }

    pub fn name(&self) -> &Atom {
        &self.inner.name
    }

    /// The creation EPMD assigned: it distinguishes this incarnation's
    /// pids from those of an earlier run under the same name.
    pub fn creation(&self) -> u32 {
        self.inner.creation
    }

    /// The TCP port peers connect to.
    pub fn listen_port(&self) -> u16 {
        self.inner.listen_port
    }

    pub fn epmd_port(&self) -> u16 {
        self.inner.cfg.epmd_port
    }

    /// True when this node serves EPMD itself.
    pub fn serves_epmd(&self) -> bool {
        self.inner.epmd_server.lock().unwrap().is_some()
    }

    /// Creates a process without a task of its own: whoever holds the
    /// mailbox receives its messages.
    pub fn spawn_mailbox(&self) -> Mailbox {
        Mailbox::standalone(self.inner.clone())
    }

    /// Spawns a process running `f` as a tokio task. The future's output
    /// is the exit reason (`Term::atom("normal")` for a normal exit).
    ///
    /// ```no_run
    /// # async fn demo(node: erlnode::Node) {
    /// use erlnode::Term;
    /// let pid = node.spawn(|mut mb| async move {
    ///     while let Some(msg) = mb.recv().await {
    ///         tracing::info!(?msg, "got");
    ///     }
    ///     Term::atom("normal")
    /// });
    /// # }
    /// ```
    pub fn spawn<F, Fut>(&self, f: F) -> Pid
    where
        F: FnOnce(Mailbox) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = Term> + Send + 'static,
    {
        self.inner.spawn_process(None, f)
    }

    /// Like [`Node::spawn`], linked to `parent` before it starts.
    pub fn spawn_link<F, Fut>(&self, parent: &Pid, f: F) -> Pid
    where
        F: FnOnce(Mailbox) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = Term> + Send + 'static,
    {
        self.inner.spawn_process(Some(parent), f)
    }

    /// Lets peers call `M:F/Arity` on this node with `erpc`/`rpc`,
    /// implemented by `handler`. Every MFA not registered is refused
    /// promptly with an error.
    pub fn allow_erpc(&self, module: &str, function: &str, arity: usize, handler: impl Fn(&Node, &[Term]) -> Result<Term, Term> + Send + Sync + 'static) {
        self.inner.erpc_allow.insert(Atom::new(module), Atom::new(function), arity, Arc::new(handler));
    }

    /// Spawn requests of funs (`Node.spawn(node, fn -> ... end)`, which
    /// erlnode cannot run) get a process that exits `normal` at once,
    /// without running the fun, instead of a refusal, which makes the
    /// BEAM caller log a warning ("Can not start erlang:apply") each time.
    /// For libraries that spawn funs on every member periodically and do
    /// not depend on them (ProcessHub's PubSub sync every 15 s); the
    /// ProcessHub member turns it on. erpc calls of funs stay refused.
    pub fn accept_spawned_funs(&self, on: bool) {
        self.inner.erpc_allow.set_funs_noop(on);
    }

    /// Allow-lists the liveness checks peers make of erlnode pids
    /// (`Process.alive?/1`, `erlang:is_process_alive/1`; Horde's registry
    /// uses the former). Every node does this at start unless built with
    /// `liveness_checks(false)`; both answer whether the pid is a live local
    /// process (`false` for any other pid) and fail with `badarg` for a
    /// non-pid argument (docs/horde.md).
    pub fn allow_liveness_checks(&self) {
        let alive = |node: &Node, args: &[Term]| match args {
            [Term::Pid(p)] => Ok(Term::atom(if node.is_alive(p) { "true" } else { "false" })),
            _ => Err(Term::atom("badarg")),
        };
        self.allow_erpc("Elixir.Process", "alive?", 1, alive);
        self.allow_erpc("erlang", "is_process_alive", 1, alive);
    }

    /// True if `pid` is a live local process.
    pub fn is_alive(&self, pid: &Pid) -> bool {
        self.inner.processes.is_alive(pid)
    }

    /// Sends an exit signal from the node itself, like `exit(Pid, Reason)`
    /// from a shell: `kill` always kills.
    pub fn exit(&self, pid: &Pid, reason: Term) {
        let from = self.inner.system_pid();
        if self.inner.processes.is_local(pid) {
            self.inner.signal_exit(pid, &from, reason, false);
        } else {
            self.inner.send_control(&pid.node.clone(), &Control::Exit2 { from, to: pid.clone(), reason });
        }
    }

    /// Runs `f` when `pid` (local) ends, before its links and monitors
    /// are told; at once if it is already gone.
    pub(crate) fn on_exit(&self, pid: &Pid, f: impl FnOnce() + Send + Sync + 'static) {
        if let Err(f) = self.inner.processes.on_exit(pid, Box::new(f)) {
            f();
        }
    }

    pub(crate) fn from_inner(inner: Arc<NodeInner>) -> Node {
        Node { inner }
    }

    pub(crate) fn inner(&self) -> &Arc<NodeInner> {
        &self.inner
    }

    pub fn register(&self, name: &str, pid: &Pid) -> Result<(), NodeError> {
        Ok(self.inner.processes.register(Atom::new(name), pid)?)
    }

    pub fn unregister(&self, name: &str) -> Option<Pid> {
        self.inner.processes.unregister(name)
    }

    pub fn whereis(&self, name: &str) -> Option<Pid> {
        self.inner.processes.whereis(name)
    }

    /// Sends `msg` to a pid, local or remote. Like Erlang's `!`, this never
    /// blocks and never fails; a remote node is connected on first send.
    /// A message the peer could not decode (a native record for a node
    /// older than OTP 29, which would drop the link) is dropped with a
    /// warning; [`Node::try_send`] (over a link that is up) and
    /// [`Node::send_async`] return [`SendError::Unencodable`] for it
    /// instead. Exit and monitor signals are never dropped for this: their
    /// records go to such a node as classic record tuples.
    pub fn send(&self, to: &Pid, msg: Term) {
        self.inner.send(None, to, msg)
    }

    /// Sends `msg` with backpressure: while the link to the pid's node is
    /// busy (more than `dist_buf_busy_limit` bytes wait to be written,
    /// 1 MiB by default) this waits, as a BEAM process sending to a busy
    /// distribution port is suspended. Connects first if needed. Messages
    /// one sender sends this way arrive in order; an error means this
    /// message was not queued.
    pub async fn send_async(&self, to: &Pid, msg: Term) -> Result<(), SendError> {
        self.inner.send_async(None, to, msg).await
    }

    /// Sends `msg` unless the link to the pid's node is busy
    /// ([`SendError::WouldBlock`], like `erlang:send(To, Msg, [nosuspend])`).
    /// With no link yet, the message is queued and a connection started,
    /// as [`Node::send`] does.
    pub fn try_send(&self, to: &Pid, msg: Term) -> Result<(), SendError> {
        self.inner.try_send(None, to, msg)
    }

    /// Bytes queued for the socket of the link to `node`, if one is up.
    pub fn queued_bytes(&self, node: &str) -> Option<usize> {
        self.inner.peers.connection(&Atom::new(node)).map(|c| c.queued())
    }

    /// Like [`Node::send`], telling the receiver's node who sent it.
    pub fn send_from(&self, from: &Pid, to: &Pid, msg: Term) {
        self.inner.send(Some(from), to, msg)
    }

    /// Sends to a registered name on a node (`{name, node} ! msg`).
    pub fn send_named(&self, from: &Pid, name: &str, node: &str, msg: Term) {
        self.inner.send_named(from, &Atom::new(name), &Atom::new(node), msg)
    }

    /// Answers a `gen:call`: `from` is the `{Pid, Tag}` of the request.
    pub fn reply(&self, from: &Term, reply: Term) {
        self.inner.reply(from, reply)
    }

    /// A reference unique to this node incarnation.
    pub fn make_ref(&self) -> Reference {
        self.inner.make_ref()
    }

    /// Connects to `node` now (otherwise the first send does).
    pub async fn connect(&self, node: &str) -> Result<(), NodeError> {
        self.inner.ensure_connected(&Atom::new(node)).await
    }

    /// Keeps a link to `node` up, like libcluster's EPMD strategy: connects
    /// now and again whenever the link goes down (a restart, a healed
    /// partition), retrying failed attempts after 250 ms, doubling to 30 s,
    /// with jitter. Runs until the node shuts down.
    pub fn keep_connected(&self, node: &str) {
        const MIN: Duration = Duration::from_millis(250);
        const MAX: Duration = Duration::from_secs(30);
        let weak = Arc::downgrade(&self.inner);
        let peer = Atom::new(node);
        let mut events = self.inner.events.subscribe();
        let task = tokio::spawn(async move {
            let mut backoff = MIN;
            let mut failures: u64 = 0;
            loop {
                let Some(node) = weak.upgrade() else { return };
                if node.peers.connection(&peer).is_none() {
                    if let Err(e) = node.ensure_connected(&peer).await {
                        drop(node);
                        failures += 1;
                        // The 1st, 2nd, 4th, 8th... failure in a row is logged.
                        if failures.is_power_of_two() {
                            tracing::warn!(node = %peer, error = %e, failures, retry_in = ?backoff, "cannot connect; retrying");
                        }
                        let jitter = backoff.mul_f64(rand::random::<f64>() * 0.2);
                        tokio::time::sleep(backoff + jitter).await;
                        backoff = (backoff * 2).min(MAX);
                        continue;
                    }
                    tracing::info!(node = %peer, after_failures = failures, "connected (kept connected)");
                    failures = 0;
                    backoff = MIN;
                }
                drop(node);
                // Wait for this peer's nodedown, then reconnect.
                loop {
                    match events.recv().await {
                        Ok(NodeEvent::Down { node, .. }) if node == peer => break,
                        Ok(_) => {}
                        Err(broadcast::error::RecvError::Lagged(_)) => break,
                        Err(broadcast::error::RecvError::Closed) => return,
                    }
                }
            }
        });
        self.inner.tasks.lock().unwrap().push(task.abort_handle());
    }

    /// Closes the link to `node`, like `erlang:disconnect_node/1`.
    pub fn disconnect(&self, node: &str) -> bool {
        self.inner.disconnect(&Atom::new(node))
    }

    /// `net_adm:ping/1`: connects and asks the peer's net_kernel whether
    /// it accepts us.
    pub async fn ping(&self, node: &str) -> bool {
        self.try_ping(node, Duration::from_secs(10)).await.is_ok()
    }

    /// Like [`Node::ping`] with the reason when the answer is `pang`.
    pub async fn try_ping(&self, node: &str, timeout: Duration) -> Result<(), NodeError> {
        let peer = Atom::new(node);
        self.inner.ensure_connected(&peer).await?;
        let request = Term::tuple([Term::atom("is_auth"), Term::Atom(self.inner.name.clone())]);
        let reply = self.call_named("net_kernel", node, request, timeout).await?;
        if reply.is_atom("yes") {
            Ok(())
        } else {
            Err(NodeError::Connect { node: node.into(), reason: format!("net_kernel answered {reply:?}") })
        }
    }

    /// A `gen:call` to `{name, node}`: sends `{'$gen_call', {Self, Ref},
    /// Request}` and waits for `{Ref, Reply}`.
    pub async fn call_named(&self, name: &str, node: &str, request: Term, timeout: Duration) -> Result<Term, NodeError> {
        let mut mb = self.spawn_mailbox();
        let r = self.make_ref();
        let msg = Term::tuple([
            Term::atom("$gen_call"),
            Term::tuple([Term::Pid(mb.pid().clone()), Term::Ref(r.clone())]),
            request,
        ]);
        self.send_named(&mb.pid().clone(), name, node, msg);
        mb.recv_match(timeout, |m| match m.as_tuple() {
            Some([Term::Ref(got), reply]) if *got == r => Some(reply.clone()),
            _ => None,
        })
        .await
        .map_err(|_| NodeError::Timeout { target: format!("{{{name}, {node}}}"), after: timeout })
    }

    /// Nodes with a live link, sorted.
    pub fn connected_nodes(&self) -> Vec<Atom> {
        self.inner.peers.connected()
    }

    /// Node up/down events from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<NodeEvent> {
        self.inner.events.subscribe()
    }

    /// Bytes of unfinished input (partial fragmented messages, frames
    /// being read) all links hold right now, and the node's budget for it.
    pub fn input_held(&self) -> (usize, usize) {
        (self.inner.input_budget.used(), self.inner.input_budget.limit())
    }

    /// Number of live local processes.
    pub fn process_count(&self) -> usize {
        self.inner.processes.count()
    }

    /// This node's `global` (cluster-wide names).
    pub fn global(&self) -> crate::global::Global {
        crate::global::Global::new(self.clone(), self.inner.global.get().cloned())
    }

    /// The pg scope `name` on this node, started on first use (as
    /// `pg:start_link(Scope)`); any number of scopes may run. Fails if
    /// another process is registered under `name`. See [`crate::pg`].
    pub fn pg_scope(&self, name: &str) -> Result<crate::pg::PgScope, crate::pg::PgError> {
        crate::pg::scope(self, &self.inner.pg, name)
    }

    /// The flags agreed with `node` if a link to it is up.
    pub(crate) fn peer_flags(&self, node: &Atom) -> Option<u64> {
        self.inner.peers.connection(node).map(|c| c.flags)
    }

    /// Stops listening, closes every link and unregisters from EPMD.
    pub async fn shutdown(&self) {
        // global first: its processes would otherwise dial peers again.
        if let Some(g) = self.inner.global.get() {
            g.stop(self);
        }
        self.inner.pg.stop_all(self);
        for t in self.inner.tasks.lock().unwrap().drain(..) {
            t.abort();
        }
        self.inner.peers.close_all();
        if let Some(reg) = self.inner.epmd_registration.lock().unwrap().take() {
            drop(reg);
        }
        if let Some(srv) = self.inner.epmd_server.lock().unwrap().take() {
            srv.shutdown();
        }
    }
}

impl NodeInner {
    pub(crate) fn arc(&self) -> Arc<NodeInner> {
        self.me.upgrade().expect("node is alive while its links run")
    }

    pub(crate) fn make_ref(&self) -> Reference {
        let n = self.next_ref.fetch_add(1, Ordering::Relaxed);
        let salt: u32 = (self as *const _ as usize as u32) ^ 0x5bd1_e995;
        Reference {
            node: self.name.clone(),
            creation: self.creation,
            ids: [(n & 0x3ffff) as u32, (n >> 18) as u32, salt].into_iter().collect(),
        }
    }

    pub(crate) fn send(self: &Arc<Self>, from: Option<&Pid>, to: &Pid, msg: Term) {
        if let Some(msg) = self.deliver_if_local(to, msg) {
            self.route(&to.node, &send_control(from, to), Some(&msg));
        }
    }

    pub(crate) async fn send_async(self: &Arc<Self>, from: Option<&Pid>, to: &Pid, msg: Term) -> Result<(), SendError> {
        match self.deliver_if_local(to, msg) {
            Some(msg) => self.route_wait(&to.node, &send_control(from, to), Some(&msg)).await,
            None => Ok(()),
        }
    }

    pub(crate) fn try_send(self: &Arc<Self>, from: Option<&Pid>, to: &Pid, msg: Term) -> Result<(), SendError> {
        match self.deliver_if_local(to, msg) {
            Some(msg) => self.try_route(&to.node, &send_control(from, to), Some(&msg)),
            None => Ok(()),
        }
    }

    /// Delivers to a local pid (`None`), or hands the message back.
    fn deliver_if_local(&self, to: &Pid, msg: Term) -> Option<Term> {
        if to.node != self.name {
            return Some(msg);
        }
        if !self.processes.deliver(to, msg) {
            tracing::trace!(%to, "message to a dead local process dropped");
        }
        None
    }

    pub(crate) fn send_named(self: &Arc<Self>, from: &Pid, name: &Atom, node: &Atom, msg: Term) {
        if node == &self.name {
            self.deliver_named(from, name, msg);
            return;
        }
        let ctl = Term::tuple([
            Term::Int(crate::control::op::REG_SEND),
            Term::Pid(from.clone()),
            Term::atom(""),
            Term::Atom(name.clone()),
        ]);
        self.route(node, &ctl, Some(&msg));
    }

    pub(crate) fn send_control(self: &Arc<Self>, node: &Atom, c: &Control) {
        let (ctl, payload) = c.to_terms();
        self.route(node, &ctl, payload.as_ref());
    }

    /// Sends a teardown signal (exit of a link, `DOWN` of a monitor,
    /// demonitor, unlink) over the link to `node` that is up or being set
    /// up, and never dials one. The loss of a link already broke every
    /// link and monitor across it (`processes_nodedown`), so with no link
    /// there is nothing left to tear down; dialling would only bring the
    /// peer back. That is what the BEAM does, and it matters: a demonitor
    /// sent by `global` while handling the last messages of a peer that
    /// had just disconnected reconnected to it within a millisecond,
    /// undoing `erlang:disconnect_node` (interop test
    /// `global::conflict_rust_node_sorts_*`, flaky under load before).
    pub(crate) fn send_teardown(self: &Arc<Self>, node: &Atom, c: &Control) {
        let (ctl, payload) = c.to_terms();
        self.route_existing(node, &ctl, payload.as_ref());
    }
}

/// `{SEND_SENDER, From, To}`, or `{SEND, '', To}` without a sender.
fn send_control(from: Option<&Pid>, to: &Pid) -> Term {
    match from {
        Some(f) => Term::tuple([Term::Int(crate::control::op::SEND_SENDER), Term::Pid(f.clone()), Term::Pid(to.clone())]),
        None => Term::tuple([Term::Int(crate::control::op::SEND), Term::atom(""), Term::Pid(to.clone())]),
    }
}

impl crate::connection::Inbound for NodeInner {
    fn deliver(&self, peer: &Atom, msg: Control) {
        self.arc().dispatch(peer, msg);
    }
    fn link_closed(&self, conn: &Arc<crate::connection::Connection>, reason: String) {
        self.remove_link(conn, reason);
    }
}
