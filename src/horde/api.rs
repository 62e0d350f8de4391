//! The Rust API: [`HordeRegistry`], a handle on a `Horde.Registry` this
//! node is a member of.

use super::crdt::DEFAULT_MAX_ITEMS;
use super::registry::{self, Config, Request};
use super::tables::{Entry, Tables};
use super::term_key::TermKey;
use crate::process::{CallError, Mailbox};
use crate::term::{Atom, Pid, Term};
use crate::Node;
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// Errors of the registry API.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum HordeError {
    #[error("cannot start the Horde registry: {0}")]
    Start(String),
    #[error("the Horde registry {0} is not running")]
    NotRunning(String),
    #[error("the key is already registered to {0}")]
    AlreadyRegistered(Pid),
    #[error("no live process is registered under the key")]
    NotFound,
    #[error("the key is not registered by this process")]
    NotOwner,
    #[error("call failed: {0}")]
    Call(#[from] CallError),
}

/// How to start a registry member; see [`HordeRegistry::builder`].
pub struct HordeRegistryBuilder {
    name: Atom,
    auto: bool,
    members: Vec<Atom>,
    sync_interval: Duration,
    max_items: usize,
}

/// The Elixir atom of a module name: `Reg` is `:"Elixir.Reg"`; a name
/// already starting with `Elixir.` or with a lower-case letter (an Erlang
/// atom) is kept.
pub fn elixir_name(name: &str) -> Atom {
    if name.starts_with("Elixir.") || !name.starts_with(|c: char| c.is_ascii_uppercase()) {
        Atom::new(name)
    } else {
        Atom::new(&format!("Elixir.{name}"))
    }
}

impl HordeRegistryBuilder {
    /// `members: :auto` (the default): every visible node is a member,
    /// as Horde's NodeListener makes them.
    pub fn members_auto(mut self) -> Self {
        self.auto = true;
        self
    }

    /// Explicit members (`members: [{Reg, node}, ...]`), by node name.
    pub fn members(mut self, nodes: &[&str]) -> Self {
        self.auto = false;
        self.members = nodes.iter().map(|n| Atom::new(n)).collect();
        self
    }

    /// DeltaCrdt's `sync_interval` (Horde's default: 300 ms).
    pub fn sync_interval(mut self, d: Duration) -> Self {
        self.sync_interval = d;
        self
    }

    /// The most keys plus trees one CRDT message may carry before it is
    /// dropped unread.
    pub fn max_diff_items(mut self, n: usize) -> Self {
        self.max_items = n;
        self
    }

    /// Starts `Reg` and `Reg.Crdt` on `node`.
    pub fn start(self, node: &Node) -> Result<HordeRegistry, HordeError> {
        let tables = Arc::new(RwLock::new(Tables::default()));
        let (tx, rx) = mpsc::unbounded_channel();
        let cfg = Config { name: self.name.clone(), auto: self.auto, members: self.members, sync_interval: self.sync_interval, max_items: self.max_items };
        let (pid, crdt_pid) = registry::spawn(node, cfg, tables.clone(), rx).map_err(|e| HordeError::Start(e.to_string()))?;
        Ok(HordeRegistry { node: node.clone(), name: self.name, pid, crdt_pid, tables, requests: tx })
    }
}

/// A Horde registry this node is a member of: its CRDT is a DeltaCrdt
/// peer of the Elixir members' and its lookups read the local tables.
///
/// ```no_run
/// # async fn demo(node: erlnode::Node) -> Result<(), erlnode::horde::HordeError> {
/// use erlnode::horde::HordeRegistry;
/// use erlnode::Term;
/// let reg = HordeRegistry::builder("MyApp.Registry").start(&node)?;
/// let pid = node.spawn(|mut mb| async move { while mb.recv().await.is_some() {} Term::atom("normal") });
/// reg.register(Term::binary(&b"worker-1"[..]), Term::atom("meta"), &pid).await?;
/// // Elixir: Horde.Registry.lookup(MyApp.Registry, "worker-1") == [{pid, :meta}]
/// assert_eq!(reg.whereis(&Term::binary(&b"worker-1"[..])), Some(pid));
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct HordeRegistry {
    node: Node,
    name: Atom,
    pid: Pid,
    crdt_pid: Pid,
    tables: Arc<RwLock<Tables>>,
    requests: mpsc::UnboundedSender<Request>,
}

impl HordeRegistry {
    /// A member of the registry `name` (an Elixir module name such as
    /// `MyApp.Registry`, see [`elixir_name`]).
    pub fn builder(name: &str) -> HordeRegistryBuilder {
        HordeRegistryBuilder { name: elixir_name(name), auto: true, members: vec![], sync_interval: Duration::from_millis(300), max_items: DEFAULT_MAX_ITEMS }
    }

    pub fn name(&self) -> &Atom {
        &self.name
    }

    /// The `Reg` process.
    pub fn pid(&self) -> &Pid {
        &self.pid
    }

    /// The `Reg.Crdt` process.
    pub fn crdt_pid(&self) -> &Pid {
        &self.crdt_pid
    }

    async fn ask(&self, f: impl FnOnce(oneshot::Sender<()>) -> Request) -> Result<(), HordeError> {
        let (tx, rx) = oneshot::channel();
        self.requests.send(f(tx)).map_err(|_| HordeError::NotRunning(self.name.to_string()))?;
        rx.await.map_err(|_| HordeError::NotRunning(self.name.to_string()))
    }

    /// `Horde.Registry.register/3` for `pid` (unique keys): refused when
    /// a live process already holds the key here. Concurrent
    /// registrations elsewhere are settled as Horde settles them: the
    /// latest wins, the other owner gets the `name_conflict` exit.
    pub async fn register(&self, key: Term, value: Term, pid: &Pid) -> Result<(), HordeError> {
        if let Some((holder, _)) = self.lookup(&key) {
            if &holder != pid {
                return Err(HordeError::AlreadyRegistered(holder));
            }
        }
        self.ask(|reply| Request::Register { key, value, pid: pid.clone(), reply }).await
    }

    /// `Horde.Registry.register_name/2` (what `{:via, Horde.Registry,
    /// ...}` names do): no check; the latest registration wins and the
    /// previous owner gets the `name_conflict` exit. A supervisor's child
    /// that replaces a process that moved away registers this way (the
    /// old owner's exit may not have reached this node yet).
    pub async fn register_name(&self, key: Term, value: Term, pid: &Pid) -> Result<(), HordeError> {
        self.ask(|reply| Request::Register { key, value, pid: pid.clone(), reply }).await
    }

    /// `Horde.Registry.unregister/2` for `pid`.
    pub async fn unregister(&self, key: Term, pid: &Pid) -> Result<(), HordeError> {
        self.ask(|reply| Request::Unregister { key, pid: pid.clone(), reply }).await
    }

    /// `Horde.Registry.update_value/3` for `pid`, which must hold the key.
    pub async fn update_value(&self, key: Term, pid: &Pid, value: Term) -> Result<(), HordeError> {
        match self.entry(&key) {
            Some(e) if &e.pid == pid => self.ask(|reply| Request::UpdateValue { key, pid: pid.clone(), value, reply }).await,
            _ => Err(HordeError::NotOwner),
        }
    }

    /// `Horde.Registry.put_meta/3`.
    pub async fn put_meta(&self, key: Term, value: Term) -> Result<(), HordeError> {
        self.ask(|reply| Request::PutMeta { key, value, reply }).await
    }

    /// `Horde.Registry.meta/2`.
    pub fn meta(&self, key: &Term) -> Option<Term> {
        self.tables.read().unwrap().meta.get(&TermKey(key.clone())).cloned()
    }

    fn entry(&self, key: &Term) -> Option<Entry> {
        self.tables.read().unwrap().get(key).cloned()
    }

    /// `Horde.Registry.lookup/2`, read locally: the owner and value if its
    /// registry is a member and the owner is alive (a local process) or
    /// its node connected (a remote one; no call is made).
    pub fn lookup(&self, key: &Term) -> Option<(Pid, Term)> {
        let t = self.tables.read().unwrap();
        let e = t.get(key)?;
        if !t.members.contains(&TermKey(e.member.clone())) {
            return None;
        }
        let live = if e.pid.node == *self.node.name() {
            self.node.is_alive(&e.pid)
        } else {
            self.node.connected_nodes().contains(&e.pid.node)
        };
        live.then(|| (e.pid.clone(), e.value.clone()))
    }

    /// `whereis_name/1` of `{:via, Horde.Registry, {Reg, key}}`.
    pub fn whereis(&self, key: &Term) -> Option<Pid> {
        self.lookup(key).map(|(p, _)| p)
    }

    /// `Horde.Registry.send/2`: to the key's owner.
    pub fn send(&self, key: &Term, msg: Term) -> Result<(), HordeError> {
        let pid = self.whereis(key).ok_or(HordeError::NotFound)?;
        self.node.send(&pid, msg);
        Ok(())
    }

    /// `GenServer.call({:via, Horde.Registry, {Reg, key}}, request, timeout)`.
    pub async fn call(&self, mb: &mut Mailbox, key: &Term, request: Term, timeout: Duration) -> Result<Term, HordeError> {
        let pid = self.whereis(key).ok_or(HordeError::NotFound)?;
        Ok(mb.call(pid, request, timeout).await?)
    }

    /// `Horde.Registry.keys/2`: the keys `pid` holds.
    pub fn keys(&self, pid: &Pid) -> Vec<Term> {
        self.tables.read().unwrap().pids.get(pid).map(|k| k.newest_first()).unwrap_or_default()
    }

    /// `Horde.Registry.count/1`.
    pub fn count(&self) -> usize {
        self.tables.read().unwrap().keys.len()
    }

    /// `Horde.Registry.select/2` with a Rust predicate over `{key, pid,
    /// value}` (Horde takes a match spec): the matching entries.
    pub fn select(&self, f: impl Fn(&Term, &Pid, &Term) -> bool) -> Vec<(Term, Pid, Term)> {
        let t = self.tables.read().unwrap();
        t.keys.values().filter(|e| f(&e.key, &e.pid, &e.value)).map(|e| (e.key.clone(), e.pid.clone(), e.value.clone())).collect()
    }

    /// `Horde.Registry.match/3` with a predicate on the value: the owners
    /// and values of `key` that match.
    pub fn match_value(&self, key: &Term, f: impl Fn(&Term) -> bool) -> Vec<(Pid, Term)> {
        self.entry(key).filter(|e| f(&e.value)).map(|e| vec![(e.pid, e.value)]).unwrap_or_default()
    }

    /// The members (`{Reg, Node}`) the local tables know.
    pub fn members(&self) -> Vec<Term> {
        self.tables.read().unwrap().members.iter().map(|k| k.0.clone()).collect()
    }

    /// Runs `f` on the CRDT inside the registry process (diagnostics:
    /// key counts, root hash).
    pub async fn inspect<R: Send + 'static>(&self, f: impl FnOnce(&super::crdt::Crdt) -> R + Send + 'static) -> Result<R, HordeError> {
        let (tx, rx) = oneshot::channel();
        let req = Request::Inspect(Box::new(move |c| {
            let _ = tx.send(f(c));
        }));
        self.requests.send(req).map_err(|_| HordeError::NotRunning(self.name.to_string()))?;
        rx.await.map_err(|_| HordeError::NotRunning(self.name.to_string()))
    }

    /// Offers every other member this member's registrations as they are
    /// now and waits until each has applied them (it acked two rounds
    /// started after the call; see `registry::Flush`): `Ok(true)`, or `Ok(false)`
    /// when `timeout` passed first (a member that did not answer).
    ///
    /// Call it after this node's owners stopped and before the node shuts
    /// down: the deletes of their keys then reach the Elixir members
    /// before this member goes away. Without it a key whose delete was not
    /// synced yet stays with them until they drop this member, and that
    /// drop can take a registration of the same key made elsewhere with
    /// it (Horde's registry drops a departed member's keys by key).
    pub async fn flush(&self, timeout: Duration) -> Result<bool, HordeError> {
        let (tx, rx) = oneshot::channel();
        let until = std::time::Instant::now() + timeout;
        self.requests.send(Request::Flush { until, reply: tx }).map_err(|_| HordeError::NotRunning(self.name.to_string()))?;
        rx.await.map_err(|_| HordeError::NotRunning(self.name.to_string()))
    }

    /// Stops the registry's processes (peers see their DOWNs).
    pub fn stop(&self) {
        self.node.exit(&self.pid, Term::atom("kill"));
    }
}
