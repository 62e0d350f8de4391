//! [`ServerRef`]: the typed handle `gen_server::start(..).spawn()` and
//! `Migration::start_process` return, in the style of ractor's
//! `ActorRef` and tokio's `JoinHandle`: call, cast, send, stop, and for a
//! migratable process, migrate.
//!
//! A plain server is addressed by its pid. A migratable process is
//! addressed by its global name, because its pid changes every time it
//! moves: a handle taken before a migration keeps working after it, and
//! messages sent through it keep the per-sender order docs/handoff.md
//! guarantees for `{:global, name}`.

use crate::gen_server::{GenServer, ServerCallError};
use crate::migration::{Migratable, Migration, MigrationError, Mode};
use crate::process::{CallError, Dest};
use crate::term::serde::from_term;
use crate::term::{Pid, Term};
use crate::Node;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::marker::PhantomData;
use std::time::Duration;

/// How long [`ServerRef::migrate`] waits for the move.
pub const DEFAULT_MIGRATE_TIMEOUT: Duration = Duration::from_secs(60);

/// A typed handle to a running server of type `S`. Clone freely.
pub struct ServerRef<S> {
    dest: Dest,
    started_as: Pid,
    node: Node,
    migration: Option<Migration>,
    _t: PhantomData<fn() -> S>,
}

impl<S> Clone for ServerRef<S> {
    fn clone(&self) -> Self {
        ServerRef {
            dest: self.dest.clone(),
            started_as: self.started_as.clone(),
            node: self.node.clone(),
            migration: self.migration.clone(),
            _t: PhantomData,
        }
    }
}

impl<S> std::fmt::Debug for ServerRef<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ServerRef<{}>({})", std::any::type_name::<S>(), self.dest)
    }
}

impl<S> ServerRef<S> {
    /// A handle to the server running as `pid`.
    pub(crate) fn for_pid(node: Node, pid: Pid) -> Self {
        ServerRef { dest: Dest::Pid(pid.clone()), started_as: pid, node, migration: None, _t: PhantomData }
    }

    /// A handle to the migratable process registered globally as `name`.
    pub(crate) fn for_global(node: Node, name: &str, pid: Pid, migration: Migration) -> Self {
        ServerRef { dest: Dest::global(name), started_as: pid, node, migration: Some(migration), _t: PhantomData }
    }
}

impl<S: GenServer> ServerRef<S> {
    /// The pid the process started with. A migratable process gets a new
    /// pid on every move: [`ServerRef::whereis`] gives the current one.
    pub fn pid(&self) -> &Pid {
        &self.started_as
    }

    /// Where this handle sends: the pid, or the global name of a
    /// migratable process.
    pub fn dest(&self) -> &Dest {
        &self.dest
    }

    /// The process's pid now (for a global name, this node's view of it);
    /// `None` if its global name is not registered.
    pub fn whereis(&self) -> Option<Pid> {
        match &self.dest {
            Dest::Global(name) => self.node.global().whereis_name(name),
            Dest::Pid(p) => Some(p.clone()),
            Dest::Name { name, .. } => self.node.whereis(name.as_str()),
        }
    }

    /// `GenServer.call/3`. The reply type is chosen per call: the
    /// server's `Reply` type, one variant's payload type, or [`Term`].
    pub async fn call<R: DeserializeOwned>(&self, request: &impl Serialize, timeout: Duration) -> Result<R, ServerCallError> {
        crate::gen_server::call(&self.node, &self.dest, request, timeout).await
    }

    /// `GenServer.cast/2`: fire and forget.
    pub fn cast(&self, msg: &impl Serialize) -> Result<(), ServerCallError> {
        crate::gen_server::cast(&self.node, &self.dest, msg)
    }

    /// `send/2`: a plain message, handled by `handle_info`.
    pub fn send(&self, msg: &impl Serialize) -> Result<(), ServerCallError> {
        crate::gen_server::send(&self.node, &self.dest, msg)
    }

    /// `GenServer.stop/3`: the server runs `terminate` and exits with
    /// `reason`; returns when it has. `Ok` also when it was already gone.
    pub async fn stop(&self, reason: Term, timeout: Duration) -> Result<(), ServerCallError> {
        let mut mb = self.node.spawn_mailbox();
        let req = mb.send_system_request(&self.dest, Term::tuple([Term::atom("terminate"), reason.clone()]));
        match mb.receive_response(req, timeout).await {
            Err(CallError::Exit { reason: r, .. }) if r == reason => Ok(()),
            Err(CallError::NoProc(_)) => Ok(()),
            Ok(other) => Err(ServerCallError::Decode(format!("unexpected reply to terminate: {other:?}"))),
            Err(e) => Err(e.into()),
        }
    }

    /// `:sys.get_state/1`: the state the server exposes
    /// ([`GenServer::sys_state`]; a migratable process's serde form),
    /// decoded into `R`.
    pub async fn sys_state<R: DeserializeOwned>(&self, timeout: Duration) -> Result<R, ServerCallError> {
        let mut mb = self.node.spawn_mailbox();
        let req = mb.send_system_request(&self.dest, Term::atom("get_state"));
        let t = mb.receive_response(req, timeout).await?;
        from_term(t).map_err(|e| ServerCallError::Decode(e.to_string()))
    }
}

impl<M: Migratable> ServerRef<M> {
    /// The global name of the process.
    pub fn name(&self) -> Option<String> {
        match &self.dest {
            Dest::Global(Term::Atom(a)) => Some(a.to_string()),
            _ => None,
        }
    }

    /// Moves the process, live, to `node` (HotSwap, waiting up to
    /// [`DEFAULT_MIGRATE_TIMEOUT`]). This handle keeps working: it
    /// addresses the process by name. Returns the new pid.
    pub async fn migrate(&self, node: &str) -> Result<Pid, MigrationError> {
        self.migrate_with(node, Mode::Hot, DEFAULT_MIGRATE_TIMEOUT).await
    }

    /// [`ServerRef::migrate`] with a mode and a timeout.
    pub async fn migrate_with(&self, node: &str, mode: Mode, timeout: Duration) -> Result<Pid, MigrationError> {
        let (Some(m), Some(name)) = (&self.migration, self.name()) else {
            return Err(MigrationError::NoSuchName(format!("{}", self.dest)));
        };
        m.migrate(&name, node, mode, timeout).await
    }
}

/// Makes a request value whose reply type is fixed at compile time, for
/// servers whose calls answer different shapes:
/// `impl Request for Total { type Reply = i64; }` then
/// `server.request(&Total).await` is an `i64`.
pub trait Request: Serialize {
    /// What the server answers to this request.
    type Reply: DeserializeOwned;
}

impl<S: GenServer> ServerRef<S> {
    /// A call whose reply type comes from the request's [`Request`] impl,
    /// with a 5 s timeout (`GenServer.call/2`'s default).
    pub async fn request<Q: Request>(&self, q: &Q) -> Result<Q::Reply, ServerCallError> {
        self.call::<Q::Reply>(q, Duration::from_secs(5)).await
    }
}
