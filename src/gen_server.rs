//! A GenServer behaviour for Rust processes, wire-compatible with
//! Elixir's `GenServer.call/cast` and Erlang's `gen_server`.
//!
//! Requests, casts and replies are typed through the serde bridge, so a
//! Rust enum `Request::Deposit { amount }` is what Elixir sends as
//! `{:deposit, %{amount: 5}}`. A request that does not decode into the
//! type is answered with `{:error, {:bad_request, Text}}` (a call) or
//! logged and dropped (a cast), never a crash.
//!
//! ```no_run
//! use erlnode::gen_server::{GenServer, Ctx, Reply, Flow};
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Deserialize)]
//! #[serde(rename_all = "snake_case")]
//! enum Req { Get, Add(i64) }
//!
//! struct Counter(i64);
//!
//! impl GenServer for Counter {
//!     type Call = Req;
//!     type Cast = Req;
//!     type Reply = i64;
//!     async fn handle_call(&mut self, req: Req, _from: &erlnode::Term, _ctx: &mut Ctx) -> Reply<i64> {
//!         if let Req::Add(n) = req { self.0 += n }
//!         Reply::Reply(self.0)
//!     }
//! }
//! # async fn demo(node: erlnode::Node) {
//! let counter = erlnode::gen_server::start(&node, Counter(0)).name("counter").spawn().unwrap();
//! # }
//! ```

use crate::node::gen_call_parts;
use crate::process::{CallError, Dest, Mailbox};
use crate::term::serde::{from_term, to_term};
use crate::term::{Pid, Term};
use crate::{Node, NodeError};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::future::Future;
use std::time::Duration;

pub use crate::server_ref::{Request, ServerRef};

/// What a server's callbacks get besides the message: the process
/// itself (pid, send, link, monitor, deferred replies).
pub type Ctx = Mailbox;

/// The outcome of `handle_call`.
pub enum Reply<R> {
    Reply(R),
    /// Answer later with [`Mailbox::reply`] (or never: the caller times out).
    NoReply,
    /// Stop the server with `reason`, answering the caller first if
    /// `reply` is given.
    Stop { reason: Term, reply: Option<R> },
}

/// The outcome of `handle_cast` / `handle_info`.
pub enum Flow {
    Continue,
    Stop(Term),
}

/// A server's callbacks. Only `handle_call` is required.
pub trait GenServer: Send + Sized + 'static {
    type Call: DeserializeOwned + Send;
    type Cast: DeserializeOwned + Send;
    type Reply: Serialize + Send;

    /// Runs in the new process before any message is handled; an error
    /// stops it with that reason.
    fn init(&mut self, _ctx: &mut Ctx) -> impl Future<Output = Result<(), Term>> + Send {
        async { Ok(()) }
    }

    fn handle_call(&mut self, request: Self::Call, from: &Term, ctx: &mut Ctx) -> impl Future<Output = Reply<Self::Reply>> + Send;

    fn handle_cast(&mut self, _msg: Self::Cast, _ctx: &mut Ctx) -> impl Future<Output = Flow> + Send {
        async { Flow::Continue }
    }

    /// Any other message, including `{'EXIT', ..}` and `{'DOWN', ..}`.
    fn handle_info(&mut self, msg: Term, ctx: &mut Ctx) -> impl Future<Output = Flow> + Send {
        let pid = ctx.pid().clone();
        async move {
            tracing::debug!(%pid, ?msg, "unhandled message dropped");
            Flow::Continue
        }
    }

    /// Called once as the process ends, with its exit reason: after a
    /// callback returned [`Flow::Stop`] or [`Reply::Stop`], or when a
    /// [`Migratable`](crate::migration::Migratable) process has moved to
    /// another node (`{shutdown, {migrated, Node}}`). A moved process gets
    /// it as soon as its name points at the new process, and its state is
    /// dropped right after; it then only forwards late messages to the new
    /// process for the handoff's retention, so cleanup here must not wait
    /// for those.
    fn terminate(&mut self, _reason: &Term, _ctx: &mut Ctx) -> impl Future<Output = ()> + Send {
        async {}
    }

    /// The state `:sys.get_state/1` and observer show. Default: none
    /// (they get `{:error, :state_not_exposed}`); a serde state can
    /// return `erlnode::term::serde::to_term(self).ok()`. Migratable
    /// servers always expose their serde form.
    fn sys_state(&self) -> Option<Term> {
        None
    }

    /// `:sys.replace_state/2`: takes the term the caller's fun returned.
    /// Default: refused, the state is unchanged.
    fn sys_replace_state(&mut self, _state: Term) -> Result<(), Term> {
        Err(Term::atom("state_not_replaceable"))
    }
}

/// `:sys` through the [`GenServer`] hooks.
struct TraitSys<'a, S>(&'a mut S);

impl<S: GenServer> crate::sys::SysState for TraitSys<'_, S> {
    fn sys_get(&self) -> Option<Term> {
        self.0.sys_state()
    }
    fn sys_replace(&mut self, state: Term) -> Result<(), Term> {
        self.0.sys_replace_state(state)
    }
}

/// Builder returned by [`start`].
pub struct Starter<S: GenServer> {
    node: Node,
    server: S,
    name: Option<String>,
    link: Option<Pid>,
}

/// Starts configuring a server process.
pub fn start<S: GenServer>(node: &Node, server: S) -> Starter<S> {
    Starter { node: node.clone(), server, name: None, link: None }
}

impl<S: GenServer> Starter<S> {
    /// Registers the process under a local name.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }
    pub fn link_to(mut self, pid: &Pid) -> Self {
        self.link = Some(pid.clone());
        self
    }

    /// Spawns the process; the name is registered before it runs, so a
    /// call right after `spawn` returns finds it.
    pub fn spawn(self) -> Result<ServerRef<S>, NodeError> {
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let server = self.server;
        let body = move |mut mb: Mailbox| async move {
            if rx.await.is_err() {
                return Term::atom("normal");
            }
            run(server, &mut mb).await
        };
        let pid = match &self.link {
            Some(parent) => self.node.spawn_link(parent, body),
            None => self.node.spawn(body),
        };
        if let Some(name) = &self.name {
            if let Err(e) = self.node.register(name, &pid) {
                self.node.exit(&pid, Term::atom("kill"));
                return Err(e);
            }
        }
        let _ = tx.send(());
        Ok(ServerRef::for_pid(self.node, pid))
    }
}

async fn run<S: GenServer>(mut s: S, mb: &mut Mailbox) -> Term {
    if let Err(reason) = s.init(mb).await {
        return reason;
    }
    // Long callbacks with callers queueing up must not keep the replies
    // in the worker's LIFO slot (see `Yielder`).
    let mut yielder = crate::process::Yielder::new();
    let reason = loop {
        let Some(msg) = mb.recv().await else { break Term::atom("killed") };
        if let Flow::Stop(reason) = dispatch(&mut s, msg, mb).await {
            break reason;
        }
        yielder.after_message(mb).await;
    };
    s.terminate(&reason, mb).await;
    reason
}

/// Hands one message to the matching callback, answering calls. Used by
/// the server loop and by migration, which replays queued messages
/// through the same path.
pub async fn dispatch<S: GenServer>(s: &mut S, msg: Term, mb: &mut Mailbox) -> Flow {
    match classify(msg) {
        Incoming::Call(from, request) => match from_term::<S::Call>(request) {
            Ok(req) => match s.handle_call(req, &from, mb).await {
                Reply::Reply(r) => {
                    answer::<S>(mb, &from, &r);
                    Flow::Continue
                }
                Reply::NoReply => Flow::Continue,
                Reply::Stop { reason, reply } => {
                    if let Some(r) = reply {
                        answer::<S>(mb, &from, &r);
                    }
                    Flow::Stop(reason)
                }
            },
            Err(e) => {
                tracing::warn!(pid = %mb.pid(), error = %e, "call with a request of the wrong shape");
                let text = Term::from(e.to_string().as_str());
                mb.reply(&from, Term::tuple([Term::atom("error"), Term::tuple([Term::atom("bad_request"), text])]));
                Flow::Continue
            }
        },
        Incoming::Cast(msg) => match from_term::<S::Cast>(msg) {
            Ok(m) => s.handle_cast(m, mb).await,
            Err(e) => {
                tracing::warn!(pid = %mb.pid(), error = %e, "cast of the wrong shape dropped");
                Flow::Continue
            }
        },
        Incoming::System(from, request) => crate::sys::handle(&from, request, mb, &mut TraitSys(s)).await,
        Incoming::Info(msg) => s.handle_info(msg, mb).await,
    }
}

fn answer<S: GenServer>(mb: &Mailbox, from: &Term, r: &S::Reply) {
    match to_term(r) {
        Ok(t) => mb.reply(from, t),
        Err(e) => {
            tracing::error!(pid = %mb.pid(), error = %e, "reply does not serialize; answering with an error");
            mb.reply(from, Term::tuple([Term::atom("error"), Term::atom("reply_not_serializable")]));
        }
    }
}

enum Incoming {
    Call(Term, Term),
    Cast(Term),
    System(Term, Term),
    Info(Term),
}

fn classify(msg: Term) -> Incoming {
    if let Some((from, req)) = gen_call_parts(&msg) {
        return Incoming::Call(from.clone(), req.clone());
    }
    match msg {
        Term::Tuple(mut t) if t.len() == 2 && t[0].is_atom("$gen_cast") => Incoming::Cast(t.pop().unwrap()),
        Term::Tuple(mut t) if t.len() == 3 && t[0].is_atom("system") => {
            let req = t.pop().unwrap();
            Incoming::System(t.pop().unwrap(), req)
        }
        other => Incoming::Info(other),
    }
}

/// Sends `{'$gen_cast', Msg}` to any GenServer, Rust or BEAM: a pid,
/// `("name", "node@host")`, or a global name (`"cart_1"`,
/// [`Dest::global`]). By global name, the lookup and the send happen
/// under the name table's lock, so casts from one sender keep their
/// order across a migration (docs/handoff.md). An unregistered global
/// name is an error ([`ServerCallError::NotRegistered`]).
pub fn cast(node: &Node, to: impl Into<Dest>, msg: &impl Serialize) -> Result<(), ServerCallError> {
    let m = to_term(msg).map_err(|e| ServerCallError::Encode(e.to_string()))?;
    send_term(node, to.into(), Term::tuple([Term::atom("$gen_cast"), m]))
}

/// Sends a plain message (`send/2`, handled by `handle_info`) to any
/// destination, with [`cast`]'s ordering guarantee.
pub fn send(node: &Node, to: impl Into<Dest>, msg: &impl Serialize) -> Result<(), ServerCallError> {
    let m = to_term(msg).map_err(|e| ServerCallError::Encode(e.to_string()))?;
    send_term(node, to.into(), m)
}

fn send_term(node: &Node, to: Dest, msg: Term) -> Result<(), ServerCallError> {
    let missing = match &to {
        Dest::Global(name) => Some(name.clone()),
        _ => None,
    };
    if node.send_to(to, msg) {
        Ok(())
    } else {
        Err(ServerCallError::NotRegistered(missing.unwrap_or_else(Term::nil)))
    }
}

/// Errors from typed calls, casts and sends.
#[derive(Debug, thiserror::Error)]
pub enum ServerCallError {
    #[error(transparent)]
    Call(#[from] CallError),
    #[error("cannot encode the request: {0}")]
    Encode(String),
    #[error("cannot decode the reply: {0}")]
    Decode(String),
    #[error("no process is registered globally as {0:?}")]
    NotRegistered(Term),
}

/// Calls any GenServer, Rust or BEAM, by pid, `("name", "node@host")` or
/// global name (`"cart_1"`), decoding the reply into `R`. Pick `R` per
/// call: `Term` for anything, or the exact type this request's reply has.
pub async fn call<R: DeserializeOwned>(
    node: &Node,
    to: impl Into<Dest>,
    request: &impl Serialize,
    timeout: Duration,
) -> Result<R, ServerCallError> {
    let req = to_term(request).map_err(|e| ServerCallError::Encode(e.to_string()))?;
    let mut mb = node.spawn_mailbox();
    let reply = mb.call(to, req, timeout).await?;
    from_term(reply).map_err(|e| ServerCallError::Decode(e.to_string()))
}
