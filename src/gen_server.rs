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
use crate::process::{CallError, Mailbox};
use crate::term::serde::{from_term, to_term};
use crate::term::{Pid, Term};
use crate::{Node, NodeError};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::future::Future;
use std::marker::PhantomData;
use std::time::Duration;

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

    fn terminate(&mut self, _reason: &Term, _ctx: &mut Ctx) -> impl Future<Output = ()> + Send {
        async {}
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
        Ok(ServerRef { pid, node: self.node, _t: PhantomData })
    }
}

async fn run<S: GenServer>(mut s: S, mb: &mut Mailbox) -> Term {
    if let Err(reason) = s.init(mb).await {
        return reason;
    }
    let reason = loop {
        let Some(msg) = mb.recv().await else { break Term::atom("killed") };
        if let Flow::Stop(reason) = dispatch(&mut s, msg, mb).await {
            break reason;
        }
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
        Incoming::System(from) => {
            // sys:get_state and friends: answered, never left hanging.
            mb.reply(&from, Term::tuple([Term::atom("error"), Term::atom("sys_not_supported")]));
            Flow::Continue
        }
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
    System(Term),
    Info(Term),
}

fn classify(msg: Term) -> Incoming {
    if let Some((from, req)) = gen_call_parts(&msg) {
        return Incoming::Call(from.clone(), req.clone());
    }
    match msg {
        Term::Tuple(mut t) if t.len() == 2 && t[0].is_atom("$gen_cast") => Incoming::Cast(t.pop().unwrap()),
        Term::Tuple(t) if t.len() == 3 && t[0].is_atom("system") => Incoming::System(t[1].clone()),
        other => Incoming::Info(other),
    }
}

/// A typed handle to a running server.
pub struct ServerRef<S> {
    pid: Pid,
    node: Node,
    _t: PhantomData<fn() -> S>,
}

impl<S> Clone for ServerRef<S> {
    fn clone(&self) -> Self {
        ServerRef { pid: self.pid.clone(), node: self.node.clone(), _t: PhantomData }
    }
}

/// Errors from typed calls.
#[derive(Debug, thiserror::Error)]
pub enum ServerCallError {
    #[error(transparent)]
    Call(#[from] CallError),
    #[error("cannot encode the request: {0}")]
    Encode(String),
    #[error("cannot decode the reply: {0}")]
    Decode(String),
}

impl<S: GenServer> ServerRef<S> {
    pub fn pid(&self) -> &Pid {
        &self.pid
    }

    /// `GenServer.call/3` from Rust.
    pub async fn call<R: DeserializeOwned>(&self, request: &impl Serialize, timeout: Duration) -> Result<R, ServerCallError> {
        call(&self.node, &self.pid, request, timeout).await
    }

    /// `GenServer.cast/2` from Rust.
    pub fn cast(&self, msg: &impl Serialize) -> Result<(), ServerCallError> {
        cast(&self.node, &self.pid, msg)
    }
}

/// Calls any GenServer, Rust or BEAM, by pid or `{name, node}`.
pub async fn call<R: DeserializeOwned>(
    node: &Node,
    to: impl Into<crate::process::Dest>,
    request: &impl Serialize,
    timeout: Duration,
) -> Result<R, ServerCallError> {
    let req = to_term(request).map_err(|e| ServerCallError::Encode(e.to_string()))?;
    let mut mb = node.spawn_mailbox();
    let reply = mb.call(to, req, timeout).await?;
    from_term(reply).map_err(|e| ServerCallError::Decode(e.to_string()))
}

/// Casts to any GenServer: sends `{'$gen_cast', Msg}`.
pub fn cast(node: &Node, to: &Pid, msg: &impl Serialize) -> Result<(), ServerCallError> {
    let m = to_term(msg).map_err(|e| ServerCallError::Encode(e.to_string()))?;
    node.send(to, Term::tuple([Term::atom("$gen_cast"), m]));
    Ok(())
}
