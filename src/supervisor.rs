//! Supervision for Rust servers, with OTP's restart strategies and
//! restart types, so a Rust node hosting many servers recovers from a
//! crash as an Elixir one does.
//!
//! ```no_run
//! # use erlnode::prelude::*;
//! # #[derive(Default)] struct Cache;
//! # impl GenServer for Cache { type Call = (); type Cast = (); type Reply = ();
//! #   async fn handle_call(&mut self, _: (), _: &Term, _: &mut Ctx) -> Reply<()> { Reply::Reply(()) } }
//! # async fn demo(node: Node) -> Result<(), NodeError> {
//! use erlnode::supervisor::{Restart, Strategy, Supervisor};
//! let sup = Supervisor::builder(&node)
//!     .strategy(Strategy::OneForOne)
//!     .child("cache", Restart::Permanent, || Cache::default())
//!     .start()
//!     .await?;
//! # Ok(()) }
//! ```
//!
//! Each child is started from its factory, registered under its name
//! and linked to the supervisor. When a child exits, its restart type
//! decides whether it is restarted (`Permanent`: always; `Transient`:
//! unless it stopped normally, with `normal`, `shutdown` or `{shutdown,
//! _}`; `Temporary`: never), and the strategy which children restart with
//! it (`OneForOne`: itself; `OneForAll`: all; `RestForOne`: itself and
//! the children started after it). A restarted child starts fresh from
//! its factory. More than `max_restarts` restarts within `max_seconds`
//! stop the supervisor and every child, as in OTP.

use crate::gen_server::{self, GenServer};
use crate::process::Mailbox;
use crate::term::{Pid, Term};
use crate::{Node, NodeError};
use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Which children restart when one exits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strategy {
    OneForOne,
    OneForAll,
    RestForOne,
}

/// When a child is restarted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Restart {
    Permanent,
    Transient,
    Temporary,
}

type Factory = Box<dyn Fn(&Node, &Pid) -> Result<Pid, NodeError> + Send>;

struct Child {
    name: String,
    restart: Restart,
    start: Factory,
    pid: Option<Pid>,
}

/// Configures a supervisor; from [`Supervisor::builder`].
pub struct SupervisorBuilder {
    node: Node,
    strategy: Strategy,
    max_restarts: usize,
    max_seconds: u64,
    children: Vec<Child>,
    name: Option<String>,
}

/// A running supervisor.
#[derive(Clone)]
pub struct Supervisor {
    pid: Pid,
    node: Node,
}

impl Supervisor {
    pub fn builder(node: &Node) -> SupervisorBuilder {
        SupervisorBuilder { node: node.clone(), strategy: Strategy::OneForOne, max_restarts: 3, max_seconds: 5, children: vec![], name: None }
    }

    /// The supervisor's pid: exit it with `shutdown` to stop it and its
    /// children.
    pub fn pid(&self) -> &Pid {
        &self.pid
    }

    /// `supervisor:which_children/1`: each child's name and pid (`None`
    /// while it is not running), in start order.
    pub async fn which_children(&self) -> Result<Vec<(String, Option<Pid>)>, crate::process::CallError> {
        let reply = self.node.spawn_mailbox().call(&self.pid, Term::atom("which_children"), Duration::from_secs(5)).await?;
        let Term::List(items) = reply else { return Ok(vec![]) };
        Ok(items
            .iter()
            .filter_map(|i| match i.as_tuple() {
                Some([Term::Binary(n), p]) => Some((String::from_utf8_lossy(n).into_owned(), if let Term::Pid(p) = p { Some(p.clone()) } else { None })),
                _ => None,
            })
            .collect())
    }
}

impl SupervisorBuilder {
    pub fn strategy(mut self, s: Strategy) -> Self {
        self.strategy = s;
        self
    }

    /// OTP's restart intensity (default 3 restarts in 5 seconds).
    pub fn intensity(mut self, max_restarts: usize, max_seconds: u64) -> Self {
        self.max_restarts = max_restarts;
        self.max_seconds = max_seconds;
        self
    }

    /// Registers the supervisor itself under a local name.
    pub fn name(mut self, name: &str) -> Self {
        self.name = Some(name.to_string());
        self
    }

    /// A child server registered locally as `name`, built by `make` at
    /// every (re)start. Children start in the order they are added.
    pub fn child<S: GenServer>(mut self, name: &str, restart: Restart, make: impl Fn() -> S + Send + 'static) -> Self {
        let n = name.to_string();
        let start: Factory = Box::new(move |node, sup| gen_server::start(node, make()).name(n.clone()).link_to(sup).spawn().map(|r| r.pid().clone()));
        self.children.push(Child { name: name.to_string(), restart, start, pid: None });
        self
    }

    /// Starts the supervisor and its children, in order; an error stops
    /// the children already started.
    pub async fn start(self) -> Result<Supervisor, NodeError> {
        let SupervisorBuilder { node, strategy, max_restarts, max_seconds, mut children, name } = self;
        let (tx, rx) = tokio::sync::oneshot::channel::<Result<(), NodeError>>();
        let node2 = node.clone();
        let pid = node.spawn(move |mut mb: Mailbox| async move {
            mb.trap_exit(true);
            let me = mb.pid().clone();
            for i in 0..children.len() {
                match (children[i].start)(&node2, &me) {
                    Ok(p) => children[i].pid = Some(p),
                    Err(e) => {
                        let _ = tx.send(Err(e));
                        stop_all(&node2, &mut mb, &mut children, 0).await;
                        return Term::atom("shutdown");
                    }
                }
            }
            let _ = tx.send(Ok(()));
            supervise(&node2, &mut mb, children, strategy, max_restarts, Duration::from_secs(max_seconds)).await
        });
        rx.await.map_err(|_| NodeError::Config("the supervisor stopped while starting".into()))??;
        if let Some(n) = name {
            node.register(&n, &pid)?;
        }
        Ok(Supervisor { pid, node })
    }
}

fn normal(reason: &Term) -> bool {
    reason.is_atom("normal") || reason.is_atom("shutdown") || matches!(reason.as_tuple(), Some([t, _]) if t.is_atom("shutdown"))
}

async fn supervise(node: &Node, mb: &mut Mailbox, mut children: Vec<Child>, strategy: Strategy, max: usize, period: Duration) -> Term {
    let mut restarts: VecDeque<Instant> = VecDeque::new();
    loop {
        let Some(msg) = mb.recv().await else { return Term::atom("killed") };
        if let Some((from, req)) = crate::node::gen_call_parts(&msg) {
            if req.is_atom("which_children") {
                let list = children
                    .iter()
                    .map(|c| Term::tuple([Term::from(c.name.as_str()), c.pid.clone().map(Term::Pid).unwrap_or_else(|| Term::atom("undefined"))]))
                    .collect();
                mb.reply(from, Term::List(list));
            }
            continue;
        }
        let Some([tag, Term::Pid(from), reason]) = msg.as_tuple() else { continue };
        if !tag.is_atom("EXIT") {
            continue;
        }
        let Some(i) = children.iter().position(|c| c.pid.as_ref() == Some(from)) else {
            // Not a child: the parent or a linked process; stop like OTP.
            stop_all(node, mb, &mut children, 0).await;
            return reason.clone();
        };
        children[i].pid = None;
        let restart = match children[i].restart {
            Restart::Permanent => true,
            Restart::Transient => !normal(reason),
            Restart::Temporary => false,
        };
        if !restart {
            tracing::debug!(child = %children[i].name, ?reason, "child exited; not restarted");
            continue;
        }
        let now = Instant::now();
        restarts.push_back(now);
        while restarts.front().map(|t| now.duration_since(*t) > period).unwrap_or(false) {
            restarts.pop_front();
        }
        if restarts.len() > max {
            tracing::error!(child = %children[i].name, "restart intensity reached; the supervisor stops");
            stop_all(node, mb, &mut children, 0).await;
            return Term::atom("shutdown");
        }
        let first = match strategy {
            Strategy::OneForOne => i,
            Strategy::OneForAll => 0,
            Strategy::RestForOne => i,
        };
        let last = if strategy == Strategy::OneForOne { i + 1 } else { children.len() };
        // Siblings that restart with it stop first, last started first.
        for j in (first..last).rev() {
            if j != i {
                stop_child(node, mb, &mut children[j]).await;
            }
        }
        let me = mb.pid().clone();
        for child in &mut children[first..last] {
            if child.pid.is_none() {
                match (child.start)(node, &me) {
                    Ok(p) => {
                        tracing::info!(child = %child.name, pid = %p, "child restarted");
                        child.pid = Some(p);
                    }
                    Err(e) => tracing::error!(child = %child.name, error = %e, "child could not be restarted"),
                }
            }
        }
    }
}

/// Stops a child with `shutdown` and waits for its EXIT.
async fn stop_child(node: &Node, mb: &mut Mailbox, child: &mut Child) {
    let Some(pid) = child.pid.take() else { return };
    node.exit(&pid, Term::atom("shutdown"));
    let _ = mb
        .recv_match(Duration::from_secs(5), |m| match m.as_tuple() {
            Some([tag, Term::Pid(p), _]) if tag.is_atom("EXIT") && p == &pid => Some(()),
            _ => None,
        })
        .await;
}

async fn stop_all(node: &Node, mb: &mut Mailbox, children: &mut [Child], from: usize) {
    for j in (from..children.len()).rev() {
        stop_child(node, mb, &mut children[j]).await;
    }
}
