//! OTP `global` in erlnode: cluster-wide process names, compatible with
//! the BEAM's `global` (protocol version 8, OTP 25).
//!
//! Every node starts a `global_name_server` process that takes part in
//! the BEAM's name-table synchronisation as a full peer (it reports the
//! nodes it knows and spreads `new_nodes`), so a cluster of BEAM and
//! erlnode nodes agrees on one name table whichever pairs connect first.
//! A name registered anywhere is visible everywhere; a name disappears
//! with its process or its node; conflicts after a partition heals are
//! resolved as `global:random_exit_name/3` does.
//!
//! ```no_run
//! # async fn demo(node: erlnode::Node) {
//! use erlnode::Term;
//! let g = node.global();
//! let pid = node.spawn(|mut mb| async move { while mb.recv().await.is_some() {} Term::atom("normal") });
//! assert!(g.register_name(Term::atom("my_service"), &pid).await.unwrap());
//! // Elixir: GenServer.call({:global, :my_service}, msg) reaches `pid`.
//! assert_eq!(g.whereis_name(&Term::atom("my_service")), Some(pid));
//! # }
//! ```
//!
//! Layout: `server` (the process and its tables' owner), `sync` (the
//! connection algorithm), `locker`, `registrar`, `resolve` (conflicts),
//! `messages` (every wire shape), `names` / `locks` (tables),
//! `multicall`, `lockops`, `order` (Erlang term order where it matters).
//! docs/architecture.md ("global") walks through a sync.

mod locker;
mod lockops;
mod locks;
mod messages;
mod multicall;
mod names;
mod order;
mod registrar;
mod resolve;
mod server;
mod sync;
#[cfg(test)]
mod tests;

pub use resolve::Resolve;

use crate::process::Mailbox;
use crate::term::{Atom, Pid, Term};
use crate::Node;
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::sync::mpsc::{unbounded_channel, UnboundedSender};
use tokio::sync::oneshot;

/// Errors from the global API.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum GlobalError {
    #[error("global is not running on this node")]
    NotRunning,
    #[error("no process is registered globally as {0:?}")]
    NotRegistered(Term),
    #[error("global did not sync within {0:?}")]
    Timeout(Duration),
}

/// A lock id: `{ResourceId, LockRequesterId}`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct LockId {
    pub res: Term,
    pub req: Term,
}

impl LockId {
    /// `{global, Req}`: the lock every registration and sync takes.
    pub fn global(req: Term) -> LockId {
        LockId { res: Term::atom("global"), req }
    }
    pub fn to_term(&self) -> Term {
        Term::tuple([self.res.clone(), self.req.clone()])
    }
}

/// The tables the server writes and everyone else reads, as BEAM code
/// reads global's ETS tables.
#[derive(Default)]
pub(crate) struct Shared {
    pub names: RwLock<names::NameTable>,
    pub locks: RwLock<locks::LockTable>,
    /// Nodes global has synced with (`global:get_known/0`).
    pub known: RwLock<Vec<Atom>>,
}

impl Shared {
    pub fn known(&self) -> Vec<Atom> {
        self.known.read().unwrap().clone()
    }
    pub fn global_lock_set(&self) -> bool {
        self.locks.read().unwrap().is_set(&Term::atom("global"))
    }
    /// `can_set_lock/1` on this node's table.
    pub fn can_set_lock(&self, id: &LockId) -> bool {
        self.locks.read().unwrap().can_set(&id.res, &id.req, None) != locks::Grant::No
    }
}

/// What a node keeps of its global: the tables and the way to its
/// processes.
pub(crate) struct Core {
    shared: Arc<Shared>,
    server: Pid,
    internal: UnboundedSender<server::Internal>,
    registrar: UnboundedSender<registrar::Request>,
}

/// Starts global_name_server, its locker and its registrar on `node`.
/// Called once while the node starts, before it accepts connections, so
/// that no nodeup is missed.
pub(crate) fn start(node: &Node) -> Result<Arc<Core>, crate::NodeError> {
    let shared = Arc::new(Shared::default());
    let (internal_tx, internal_rx) = unbounded_channel();
    let (locker_tx, locker_rx) = unbounded_channel();
    let (registrar_tx, registrar_rx) = unbounded_channel();
    let events = node.subscribe();
    let (go_tx, go_rx) = oneshot::channel::<(Pid, Pid)>();
    let server_pid = {
        let (shared, internal_tx) = (shared.clone(), internal_tx.clone());
        node.spawn(move |mb: Mailbox| async move {
            let Ok(helpers) = go_rx.await else { return Term::atom("normal") };
            server::Server::new(mb, shared, helpers, locker_tx, internal_tx).run(internal_rx, events).await
        })
    };
    if let Err(e) = node.register(multicall::GNS, &server_pid) {
        node.exit(&server_pid, Term::atom("kill"));
        return Err(e);
    }
    // Linked as global.erl links them: none of the three works alone.
    let locker_pid = {
        let (shared, internal_tx) = (shared.clone(), internal_tx.clone());
        node.spawn_link(&server_pid, move |mb| locker::Locker::new(mb, locker_rx, shared, internal_tx).run())
    };
    let registrar_pid = {
        let shared = shared.clone();
        node.spawn_link(&server_pid, move |mb| registrar::run(mb, registrar_rx, shared))
    };
    let _ = go_tx.send((locker_pid, registrar_pid));
    node.allow_erpc("global", "resolve_it", 4, resolve::resolve_it_erpc);
    Ok(Arc::new(Core { shared, server: server_pid, internal: internal_tx, registrar: registrar_tx }))
}

impl Core {
    /// Stops global (the node is shutting down): its processes end, so
    /// nothing reconnects to peers afterwards.
    pub(crate) fn stop(&self, node: &Node) {
        node.exit(&self.server, Term::atom("kill"));
    }
}

/// `where/1`: the registered pid, unless it is a dead local process
/// whose DOWN the server has not handled yet.
pub(crate) fn where_(node: &Node, shared: &Shared, name: &Term) -> Option<Pid> {
    let pid = shared.names.read().unwrap().get(name).map(|e| e.info.pid.clone())?;
    if pid.node == *node.name() && !node.is_alive(&pid) {
        return None;
    }
    Some(pid)
}

/// Resolves `name` and runs `f` with the pid while the name table is
/// read-locked, so that a switch of the name (applied under the write
/// lock, and acknowledged to the registrar only afterwards) cannot fall
/// between the lookup and what `f` enqueues. This is what makes
/// per-sender order strict across a migration for erlnode's senders by
/// name (docs/handoff.md). `f` must not touch the name table.
pub(crate) fn with_resolved<R>(node: &Node, name: &Term, f: impl FnOnce(Option<Pid>) -> R) -> R {
    let Some(core) = node.global().core else { return f(None) };
    let names = core.shared.names.read().unwrap();
    let pid = names.get(name).map(|e| e.info.pid.clone()).filter(|p| p.node != *node.name() || node.is_alive(p));
    let r = f(pid);
    drop(names);
    r
}

/// The global API of one node; from [`Node::global`].
#[derive(Clone)]
pub struct Global {
    node: Node,
    core: Option<Arc<Core>>,
}

impl Global {
    pub(crate) fn new(node: Node, core: Option<Arc<Core>>) -> Global {
        Global { node, core }
    }

    fn core(&self) -> Result<&Arc<Core>, GlobalError> {
        self.core.as_ref().ok_or(GlobalError::NotRunning)
    }

    /// `global:register_name/2`: registers `pid` as `name` on every node
    /// of the cluster. `Ok(false)` if the name is taken or `pid` already
    /// has a global name.
    pub async fn register_name(&self, name: Term, pid: &Pid) -> Result<bool, GlobalError> {
        self.register_name_with(name, pid, Resolve::RandomExit).await
    }

    /// `global:register_name/3` with one of the standard resolve methods.
    pub async fn register_name_with(&self, name: Term, pid: &Pid, method: Resolve) -> Result<bool, GlobalError> {
        let info = messages::NameInfo { name, pid: pid.clone(), method: method.method() };
        self.registrar(|reply| registrar::Request::Register { info, check_free: true, reply }).await
    }

    /// `global:re_register_name/2`: registers `pid` as `name` whether or
    /// not the name is taken. Every node replaces the entry in one step
    /// under the lock, so no node ever sees the name missing.
    /// The name keeps its resolve method (a migrating process that merges
    /// on conflicts still does after the move).
    pub async fn re_register_name(&self, name: Term, pid: &Pid) -> Result<(), GlobalError> {
        let method = self.core()?.shared.names.read().unwrap().get(&name).map(|e| e.info.method.clone());
        let info = messages::NameInfo { name, pid: pid.clone(), method: method.unwrap_or_else(|| Resolve::RandomExit.method()) };
        self.registrar(|reply| registrar::Request::Register { info, check_free: false, reply }).await.map(|_| ())
    }

    /// `global:unregister_name/1`.
    pub async fn unregister_name(&self, name: &Term) -> Result<(), GlobalError> {
        if self.whereis_name(name).is_none() {
            return Ok(());
        }
        let name = name.clone();
        self.registrar(|reply| registrar::Request::Unregister { name, reply }).await
    }

    async fn registrar<T>(&self, req: impl FnOnce(oneshot::Sender<T>) -> registrar::Request) -> Result<T, GlobalError> {
        let (tx, rx) = oneshot::channel();
        self.core()?.registrar.send(req(tx)).map_err(|_| GlobalError::NotRunning)?;
        rx.await.map_err(|_| GlobalError::NotRunning)
    }

    /// `global:whereis_name/1`: a local table read, no messages.
    pub fn whereis_name(&self, name: &Term) -> Option<Pid> {
        let core = self.core.as_ref()?;
        where_(&self.node, &core.shared, name)
    }

    /// `global:registered_names/0`.
    pub fn registered_names(&self) -> Vec<Term> {
        self.core.as_ref().map(|c| c.shared.names.read().unwrap().names()).unwrap_or_default()
    }

    /// `global:send/2`: sends `msg` to the process registered as `name`.
    pub fn send(&self, name: &Term, msg: Term) -> Result<Pid, GlobalError> {
        with_resolved(&self.node, name, |pid| {
            let pid = pid.ok_or_else(|| GlobalError::NotRegistered(name.clone()))?;
            self.node.send(&pid, msg);
            Ok(pid)
        })
    }

    /// `global:sync/0`: waits until global has synced with every node
    /// connected now (bounded by `timeout`).
    pub async fn sync(&self, timeout: Duration) -> Result<(), GlobalError> {
        let (tx, rx) = oneshot::channel();
        let nodes = self.node.connected_nodes();
        self.core()?.internal.send(server::Internal::Sync { nodes, reply: tx }).map_err(|_| GlobalError::NotRunning)?;
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(GlobalError::NotRunning),
            Err(_) => Err(GlobalError::Timeout(timeout)),
        }
    }

    /// The nodes global has synced with (`global`'s own `nodes()`).
    pub fn known_nodes(&self) -> Vec<Atom> {
        self.core.as_ref().map(|c| c.shared.known()).unwrap_or_default()
    }

    /// global_name_server's pid on this node.
    pub fn server_pid(&self) -> Option<Pid> {
        self.core.as_ref().map(|c| c.server.clone())
    }
}
