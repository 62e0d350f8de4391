//! OTP `pg` in erlnode: process groups shared with BEAM nodes.
//!
//! A scope is a process registered under the scope's name that speaks
//! pg.erl's peer protocol (docs/pg.md): BEAM scopes of the same name
//! discover it at nodeup, and from then on both sides see each other's
//! members. Rust processes join and leave groups (a process may join a
//! group several times and then leaves it as many times); a member that
//! exits, or whose node goes down, disappears everywhere. Reads are local
//! table lookups, as `pg:get_members/2` reads an ETS table.
//!
//! ```no_run
//! # async fn demo(node: erlnode::Node) -> Result<(), erlnode::pg::PgError> {
//! use erlnode::Term;
//! let scope = node.pg_scope("chat")?;
//! let pid = node.spawn(|mut mb| async move { while mb.recv().await.is_some() {} Term::atom("normal") });
//! scope.join(Term::atom("lobby"), &pid).await?;
//! // Elixir: :pg.get_members(:chat, :lobby) includes `pid`.
//! for member in scope.get_members(&Term::atom("lobby")) {
//!     node.send(&member, Term::atom("hello"));
//! }
//! # Ok(()) }
//! ```
//!
//! Layout: `scope` (the process and its state), `messages` (every wire
//! shape), `table` (the membership table the API reads), `watchers`
//! (`monitor_scope`/`monitor` subscriptions).

mod messages;
mod scope;
mod table;
#[cfg(test)]
pub(crate) mod tests;
mod watchers;

pub use watchers::{PgAction, PgChange};

use crate::term::{Atom, Pid, Reference, Term};
use crate::Node;
use scope::Request;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use table::Table;
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};
use tokio::sync::oneshot;

/// Errors from the pg API.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum PgError {
    #[error("the pg scope {0} is not running")]
    NotRunning(String),
    #[error("cannot start the pg scope {0}: the name is registered to another process")]
    NameTaken(String),
    #[error("{0} is not a process of this node (pg only joins local processes)")]
    NotLocal(Pid),
    #[error("not a member of the group")]
    NotJoined,
}

/// What the node keeps of one running scope.
pub(crate) struct Core {
    name: Atom,
    pid: Pid,
    table: Arc<RwLock<Table>>,
    requests: UnboundedSender<Request>,
}

/// The scopes running on a node, by name.
#[derive(Default)]
pub(crate) struct Scopes {
    by_name: Mutex<HashMap<String, Arc<Core>>>,
}

impl Scopes {
    /// The running scope `name`, started if it is not running.
    pub(crate) fn get_or_start(&self, node: &Node, name: &str) -> Result<Arc<Core>, PgError> {
        let mut map = self.by_name.lock().unwrap();
        if let Some(core) = map.get(name) {
            if node.is_alive(&core.pid) {
                return Ok(core.clone());
            }
        }
        let core = start(node, name)?;
        map.insert(name.to_string(), core.clone());
        Ok(core)
    }

    /// Stops every scope (the node is shutting down): peers see the
    /// scopes' DOWNs, and nothing keeps the node's state alive.
    pub(crate) fn stop_all(&self, node: &Node) {
        for (_, core) in self.by_name.lock().unwrap().drain() {
            node.exit(&core.pid, Term::atom("kill"));
        }
    }
}

fn start(node: &Node, name: &str) -> Result<Arc<Core>, PgError> {
    let table = Arc::new(RwLock::new(Table::default()));
    let (tx, rx) = unbounded_channel();
    // Subscribed before the process exists, so no nodeup falls between
    // its initial discover round and its first event.
    let events = node.subscribe();
    let (go_tx, go_rx) = oneshot::channel::<()>();
    let atom = Atom::new(name);
    let pid = {
        let (atom, table) = (atom.clone(), table.clone());
        node.spawn(move |mb| async move {
            if go_rx.await.is_err() {
                return Term::atom("normal");
            }
            scope::Scope::new(atom, mb, table).run(rx, events).await
        })
    };
    if node.register(name, &pid).is_err() {
        node.exit(&pid, Term::atom("kill"));
        return Err(PgError::NameTaken(name.to_string()));
    }
    let _ = go_tx.send(());
    tracing::debug!(scope = name, %pid, "pg scope started");
    Ok(Arc::new(Core { name: atom, pid, table, requests: tx }))
}

/// `Node::pg_scope`: the handle on `name`, the scope started if needed.
pub(crate) fn scope(node: &Node, scopes: &Scopes, name: &str) -> Result<PgScope, PgError> {
    let core = scopes.get_or_start(node, name)?;
    Ok(PgScope { node: node.clone(), core })
}

/// A handle on one running scope; cheap to clone.
#[derive(Clone)]
pub struct PgScope {
    node: Node,
    core: Arc<Core>,
}

impl PgScope {
    /// The scope's name (also its registered name and pg's scope atom).
    pub fn name(&self) -> &str {
        self.core.name.as_str()
    }

    /// The scope process's pid (what peer scopes monitor).
    pub fn pid(&self) -> &Pid {
        &self.core.pid
    }

    fn check_local(&self, pids: &[Pid]) -> Result<(), PgError> {
        match pids.iter().find(|p| p.node != *self.node.name()) {
            Some(p) => Err(PgError::NotLocal(p.clone())),
            None => Ok(()),
        }
    }

    async fn request<T>(&self, req: impl FnOnce(oneshot::Sender<T>) -> Request) -> Result<T, PgError> {
        let (tx, rx) = oneshot::channel();
        let not_running = || PgError::NotRunning(self.name().to_string());
        self.core.requests.send(req(tx)).map_err(|_| not_running())?;
        rx.await.map_err(|_| not_running())
    }

    /// `pg:join(Scope, Group, Pid)`: when this returns, every reader on
    /// this node sees the member, and every peer scope in the overlay has
    /// been sent the join.
    pub async fn join(&self, group: impl Into<Term>, pid: &Pid) -> Result<(), PgError> {
        self.join_many(group, std::slice::from_ref(pid)).await
    }

    /// `pg:join(Scope, Group, Pids)`: one announcement for several
    /// processes (a pid may appear more than once).
    pub async fn join_many(&self, group: impl Into<Term>, pids: &[Pid]) -> Result<(), PgError> {
        self.check_local(pids)?;
        if pids.is_empty() {
            return Ok(());
        }
        let (group, pids) = (group.into(), pids.to_vec());
        self.request(|reply| Request::Join { group, pids, reply }).await
    }

    /// `pg:leave(Scope, Group, Pid)`: one of `pid`'s joins of `group`
    /// ends. `Err(NotJoined)` if it was not a member.
    pub async fn leave(&self, group: impl Into<Term>, pid: &Pid) -> Result<(), PgError> {
        self.leave_many(group, std::slice::from_ref(pid)).await
    }

    /// `pg:leave(Scope, Group, Pids)`: `Err(NotJoined)` only if none was.
    pub async fn leave_many(&self, group: impl Into<Term>, pids: &[Pid]) -> Result<(), PgError> {
        self.check_local(pids)?;
        let (group, pids) = (group.into(), pids.to_vec());
        match self.request(|reply| Request::Leave { group, pids, reply }).await? {
            true => Ok(()),
            false => Err(PgError::NotJoined),
        }
    }

    /// `pg:get_members/2`: members on every node, newest first.
    pub fn get_members(&self, group: &Term) -> Vec<Pid> {
        self.core.table.read().unwrap().members(group)
    }

    /// `pg:get_local_members/2`.
    pub fn get_local_members(&self, group: &Term) -> Vec<Pid> {
        self.core.table.read().unwrap().local_members(group)
    }

    /// `pg:which_groups/1`: every non-empty group.
    pub fn which_groups(&self) -> Vec<Term> {
        self.core.table.read().unwrap().groups()
    }

    /// `pg:which_local_groups/1`.
    pub fn which_local_groups(&self) -> Vec<Term> {
        self.core.table.read().unwrap().local_groups()
    }

    /// `pg:monitor_scope/1`: every group with its members now, and a
    /// subscription to every later change in the scope.
    pub async fn monitor_scope(&self) -> Result<(Vec<(Term, Vec<Pid>)>, PgSubscription), PgError> {
        self.subscribe(None).await
    }

    /// `pg:monitor/2`: the members of `group` now, and a subscription to
    /// its later changes.
    pub async fn monitor(&self, group: impl Into<Term>) -> Result<(Vec<Pid>, PgSubscription), PgError> {
        let (mut state, sub) = self.subscribe(Some(group.into())).await?;
        Ok((state.pop().map(|(_, pids)| pids).unwrap_or_default(), sub))
    }

    async fn subscribe(&self, group: Option<Term>) -> Result<(Vec<(Term, Vec<Pid>)>, PgSubscription), PgError> {
        let (tx, rx) = unbounded_channel();
        let (reference, state) = self.request(|reply| Request::Subscribe { group, tx, reply }).await?;
        Ok((state, PgSubscription { rx, reference, requests: self.core.requests.clone() }))
    }
}

/// A `monitor_scope`/`monitor` subscription; dropping it demonitors.
pub struct PgSubscription {
    rx: UnboundedReceiver<PgChange>,
    reference: Reference,
    requests: UnboundedSender<Request>,
}

impl PgSubscription {
    /// The next change; `None` once the scope has stopped.
    pub async fn recv(&mut self) -> Option<PgChange> {
        self.rx.recv().await
    }

    /// The reference pg would tag this subscription's messages with.
    pub fn reference(&self) -> &Reference {
        &self.reference
    }
}

impl Drop for PgSubscription {
    fn drop(&mut self) {
        let _ = self.requests.send(Request::Unsubscribe(self.reference.clone()));
    }
}
