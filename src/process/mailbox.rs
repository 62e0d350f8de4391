//! The owner's side of a local process: its pid, its FIFO mailbox, and
//! the operations a process performs on itself (link, monitor, trap
//! exits, aliases, calls).

use super::CallError;
use crate::control::MonitorTarget;
use crate::node::NodeInner;
use crate::term::{Atom, Pid, Reference, Term};
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;
use super::chan::Receiver;
use tokio::sync::oneshot;

/// A local process as its owner sees it. For a process made with
/// `Node::spawn_mailbox`, dropping the mailbox ends the process (reason
/// `normal`); for one made with `Node::spawn`, the task's end does.
pub struct Mailbox {
    pid: Pid,
    rx: Receiver<Term>,
    /// Messages skipped by a selective receive, kept in arrival order.
    saved: VecDeque<Term>,
    /// Present for stand-alone mailboxes: fires when the process is
    /// killed. Spawned processes' tasks watch it instead.
    kill: Option<oneshot::Receiver<Term>>,
    exited: Option<Term>,
    managed: bool,
    node: Arc<NodeInner>,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum RecvError {
    #[error("receive timed out")]
    Timeout,
    #[error("process exited: {0:?}")]
    Exited(Term),
}

/// A request in flight, from [`Mailbox::send_request`].
#[derive(Debug)]
#[must_use = "a request's answer is only consumed by receive_response"]
pub struct RequestId {
    mref: Reference,
    target: String,
}

/// Where a call or send goes.
#[derive(Debug, Clone)]
pub enum Dest {
    Pid(Pid),
    /// A registered name on a node.
    Name { name: Atom, node: Atom },
    /// A name registered with `global` (`{global, Name}` in Erlang):
    /// looked up in this node's global table when the message is sent.
    Global(Term),
}

impl From<Pid> for Dest {
    fn from(p: Pid) -> Dest {
        Dest::Pid(p)
    }
}
impl From<&Pid> for Dest {
    fn from(p: &Pid) -> Dest {
        Dest::Pid(p.clone())
    }
}
impl From<(&str, &str)> for Dest {
    fn from((name, node): (&str, &str)) -> Dest {
        Dest::Name { name: Atom::new(name), node: Atom::new(node) }
    }
}
/// A bare string is a **global** name (`{:global, :name}`), never a
/// local one: global names are how migratable processes are addressed,
/// and they keep working after the process moves. A locally registered
/// name is `("name", "node@host")` or [`Dest::local`].
impl From<&str> for Dest {
    fn from(name: &str) -> Dest {
        Dest::Global(Term::atom(name))
    }
}
impl From<String> for Dest {
    fn from(name: String) -> Dest {
        Dest::Global(Term::atom(&name))
    }
}
impl From<&Dest> for Dest {
    fn from(d: &Dest) -> Dest {
        d.clone()
    }
}

impl Dest {
    /// `{:global, name}` with an atom name.
    pub fn global(name: &str) -> Dest {
        Dest::Global(Term::atom(name))
    }
    /// A name registered on `node` (`{name, node}` in Erlang).
    pub fn local(name: &str, node: &str) -> Dest {
        Dest::Name { name: Atom::new(name), node: Atom::new(node) }
    }
}

impl std::fmt::Display for Dest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Dest::Pid(p) => write!(f, "{p}"),
            Dest::Name { name, node } => write!(f, "{{:{name}, :\"{node}\"}}"),
            Dest::Global(name) => write!(f, "{{:global, {}}}", crate::term::serde::render::short(name)),
        }
    }
}

impl Mailbox {
    pub(crate) fn new(node: Arc<NodeInner>, managed: bool) -> (Mailbox, oneshot::Receiver<Term>) {
        let (tx, rx) = super::chan::channel();
        let (ktx, krx) = oneshot::channel();
        let pid = node.processes.insert(tx, ktx);
        (Mailbox { pid, rx, saved: VecDeque::new(), kill: None, exited: None, managed, node }, krx)
    }

    pub(crate) fn standalone(node: Arc<NodeInner>) -> Mailbox {
        let (mut mb, krx) = Mailbox::new(node, false);
        mb.kill = Some(krx);
        mb
    }

    pub fn pid(&self) -> &Pid {
        &self.pid
    }

    /// The node this process runs on.
    pub fn node(&self) -> crate::Node {
        crate::Node::from_inner(self.node.clone())
    }

    /// The next message in arrival order; `None` once the process has
    /// been killed (by a link or `exit/2`).
    pub async fn recv(&mut self) -> Option<Term> {
        if let Some(m) = self.saved.pop_front() {
            return Some(m);
        }
        // Not via next_raw: without a timer in it, this future (part of
        // every idle process's task) is a tokio `Sleep` smaller.
        self.wait(std::future::pending()).await.ok()
    }

    pub async fn recv_timeout(&mut self, t: Duration) -> Result<Term, RecvError> {
        self.next(Some(t)).await
    }

    async fn next(&mut self, t: Option<Duration>) -> Result<Term, RecvError> {
        if let Some(m) = self.saved.pop_front() {
            return Ok(m);
        }
        if t == Some(Duration::ZERO) {
            // A poll, not a wait (see recv_match).
            if let Some(r) = &self.exited {
                return Err(RecvError::Exited(r.clone()));
            }
            return self.rx.try_recv().map_err(|_| RecvError::Timeout);
        }
        let deadline = t.map(|t| tokio::time::Instant::now() + t);
        self.next_raw(deadline).await
    }

    async fn next_raw(&mut self, deadline: Option<tokio::time::Instant>) -> Result<Term, RecvError> {
        match deadline {
            Some(d) => self.wait(tokio::time::sleep_until(d)).await,
            None => self.wait(std::future::pending()).await,
        }
    }

    /// The next message, or the exit reason if the process is killed
    /// first, or a timeout when `timer` completes first.
    async fn wait(&mut self, timer: impl std::future::Future<Output = ()>) -> Result<Term, RecvError> {
        if let Some(r) = &self.exited {
            return Err(RecvError::Exited(r.clone()));
        }
        let kill = async {
            match self.kill.as_mut() {
                Some(k) => k.await.unwrap_or_else(|_| Term::atom("normal")),
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            biased;
            r = kill => {
                self.kill = None;
                self.exited = Some(r.clone());
                Err(RecvError::Exited(r))
            }
            m = self.rx.recv() => m.ok_or_else(|| RecvError::Exited(Term::atom("normal"))),
            _ = timer => Err(RecvError::Timeout),
        }
    }

    /// Selective receive: the first message for which `f` returns `Some`,
    /// leaving the others queued in order (Erlang's `receive`).
    pub async fn recv_match<T>(&mut self, t: Duration, mut f: impl FnMut(&Term) -> Option<T>) -> Result<T, RecvError> {
        if let Some((i, v)) = self.saved.iter().enumerate().find_map(|(i, m)| f(m).map(|v| (i, v))) {
            self.saved.remove(i);
            return Ok(v);
        }
        if t.is_zero() {
            // A poll, not a wait: a zero deadline would still sleep until
            // the timer wheel's next 1 ms tick.
            if let Some(r) = &self.exited {
                return Err(RecvError::Exited(r.clone()));
            }
            while let Ok(m) = self.rx.try_recv() {
                if let Some(v) = f(&m) {
                    return Ok(v);
                }
                self.saved.push_back(m);
            }
            return Err(RecvError::Timeout);
        }
        let deadline = tokio::time::Instant::now() + t;
        loop {
            let m = self.next_raw(Some(deadline)).await?;
            if let Some(v) = f(&m) {
                return Ok(v);
            }
            self.saved.push_back(m);
        }
    }

    /// Takes every message queued right now, in arrival order, without
    /// waiting: what a migrating process hands over with its state.
    pub fn drain(&mut self) -> Vec<Term> {
        let mut out: Vec<Term> = self.saved.drain(..).collect();
        while let Ok(m) = self.rx.try_recv() {
            out.push(m);
        }
        out
    }

    /// Messages queued right now (not yet received).
    pub fn pending(&self) -> usize {
        self.saved.len() + self.rx.len()
    }

    /// Sends from this process (the receiver's node learns the sender).
    pub fn send(&self, to: &Pid, msg: Term) {
        self.node.send(Some(&self.pid), to, msg)
    }

    /// Sends from this process with backpressure: waits while the link
    /// to the receiver's node is busy (see [`crate::Node::send_async`]).
    pub async fn send_async(&self, to: &Pid, msg: Term) -> Result<(), crate::node::SendError> {
        self.node.send_async(Some(&self.pid), to, msg).await
    }

    /// Sends from this process unless the link to the receiver's node is
    /// busy (see [`crate::Node::try_send`]).
    pub fn try_send(&self, to: &Pid, msg: Term) -> Result<(), crate::node::SendError> {
        self.node.try_send(Some(&self.pid), to, msg)
    }

    pub fn send_to(&self, to: &Dest, msg: Term) {
        match to {
            Dest::Pid(p) => self.node.send(Some(&self.pid), p, msg),
            Dest::Name { name, node } => self.node.send_named(&self.pid, name, node, msg),
            Dest::Global(name) => crate::global::with_resolved(&self.node(), name, |pid| match pid {
                Some(p) => self.node.send(Some(&self.pid), &p, msg),
                None => tracing::debug!(?name, "message to an unregistered global name dropped"),
            }),
        }
    }

    /// `process_flag(trap_exit, on)`: exit signals become messages.
    pub fn trap_exit(&self, on: bool) {
        if let Some(e) = self.node.processes.write().get_mut(&self.pid.id) {
            e.trap_exit = on;
        }
    }

    pub fn link(&self, to: &Pid) {
        self.node.link(&self.pid, to)
    }

    pub fn unlink(&self, to: &Pid) {
        self.node.unlink(&self.pid, to)
    }

    /// Monitors a pid; a `{'DOWN', Ref, process, Pid, Reason}` message
    /// arrives when it exits (`noproc` at once if it does not exist).
    pub fn monitor(&self, pid: &Pid) -> Reference {
        self.node.monitor(&self.pid, MonitorTarget::Pid(pid.clone()))
    }

    /// Monitors the process registered as `name` on `node`.
    pub fn monitor_name(&self, name: &str, node: &str) -> Reference {
        self.node.monitor_name(&self.pid, &Atom::new(name), &Atom::new(node))
    }

    /// Stops a monitor; no DOWN for it is delivered after this returns
    /// (one already queued is removed too).
    pub fn demonitor(&mut self, reference: &Reference) -> bool {
        let active = self.node.demonitor(&self.pid, reference);
        self.flush_down(reference);
        active
    }

    fn flush_down(&mut self, reference: &Reference) {
        let is_down = |m: &Term| super::signals::down_reason(m, reference).is_some();
        while let Ok(m) = self.rx.try_recv() {
            self.saved.push_back(m);
        }
        self.saved.retain(|m| !is_down(m));
    }

    /// Sends an exit signal to `to`, like `exit(Pid, Reason)`.
    pub fn exit(&self, to: &Pid, reason: Term) {
        if self.node.processes.is_local(to) {
            self.node.signal_exit(to, &self.pid, reason, false);
        } else {
            self.node.send_control(&to.node.clone(), &crate::control::Control::Exit2 { from: self.pid.clone(), to: to.clone(), reason });
        }
    }

    /// A new alias (OTP 24+): messages sent to it arrive here until
    /// [`Mailbox::unalias`].
    pub fn alias(&self) -> Reference {
        let r = self.node.make_ref();
        self.node.processes.add_alias(&self.pid, r.clone());
        r
    }

    pub fn unalias(&self, alias: &Reference) {
        self.node.processes.remove_alias(&self.pid, alias)
    }

    /// `gen:call/4` as OTP 25 does it: monitor the target, send
    /// `{'$gen_call', {Self, [alias | Mref]}, Request}`, wait for the reply
    /// or the DOWN. Distinct errors for timeout, a missing process and a
    /// lost node.
    pub async fn call(&mut self, to: impl Into<Dest>, request: Term, timeout: Duration) -> Result<Term, CallError> {
        let req = self.send_request(to, request);
        self.receive_response(req, timeout).await
    }

    /// The sending half of [`Mailbox::call`] (`gen_server:send_request`):
    /// returns as soon as the request is queued, so that a caller can
    /// resolve a name and send under one lock, or have several requests
    /// in flight.
    pub fn send_request(&mut self, to: impl Into<Dest>, request: Term) -> RequestId {
        self.send_tagged("$gen_call", to.into(), request)
    }

    /// Like [`Mailbox::send_request`] for an OTP system message
    /// (`{system, From, Request}`, what `:sys` sends): `get_state`,
    /// `{terminate, Reason}`, ... The answer comes back through
    /// [`Mailbox::receive_response`].
    pub fn send_system_request(&mut self, to: impl Into<Dest>, request: Term) -> RequestId {
        self.send_tagged("system", to.into(), request)
    }

    fn send_tagged(&mut self, tag_atom: &str, to: Dest, request: Term) -> RequestId {
        let target = format!("{to:?}");
        // A global name is looked up once, as gen:call does; an
        // unregistered one fails like a dead pid (noproc): pid 0 is never
        // a process.
        // Resolved and sent under the name table's lock: see
        // global::with_resolved.
        let mref = match to {
            Dest::Global(name) => {
                let node = self.node();
                crate::global::with_resolved(&node, &name, |pid| {
                    let pid = pid.unwrap_or_else(|| self.node.system_pid());
                    self.request_tagged(tag_atom, Dest::Pid(pid), request)
                })
            }
            other => self.request_tagged(tag_atom, other, request),
        };
        RequestId { mref, target }
    }

    fn request_tagged(&mut self, tag_atom: &str, to: Dest, request: Term) -> Reference {
        let mref = match &to {
            Dest::Pid(p) => self.monitor(p),
            Dest::Name { name, node } => self.node.monitor_name(&self.pid, name, node),
            Dest::Global(_) => unreachable!("resolved by send_request"),
        };
        self.node.processes.add_alias(&self.pid, mref.clone());
        let tag = Term::ImproperList(vec![Term::atom("alias")], Box::new(Term::Ref(mref.clone())));
        let msg = Term::tuple([Term::atom(tag_atom), Term::tuple([Term::Pid(self.pid.clone()), tag]), request]);
        self.send_to(&to, msg);
        mref
    }

    /// The waiting half of [`Mailbox::call`] (`gen_server:receive_response`).
    pub async fn receive_response(&mut self, req: RequestId, timeout: Duration) -> Result<Term, CallError> {
        let RequestId { mref, target } = req;
        let result = self
            .recv_match(timeout, |m| match m.as_tuple() {
                Some([Term::ImproperList(h, t), reply]) if h.len() == 1 && h[0].is_atom("alias") && t.as_reference() == Some(&mref) => {
                    Some(Ok(reply.clone()))
                }
                _ => super::signals::down_reason(m, &mref).map(|reason| Err(reason.clone())),
            })
            .await;
        self.unalias(&mref);
        match result {
            Ok(Ok(reply)) => {
                self.demonitor(&mref);
                Ok(reply)
            }
            Ok(Err(reason)) if reason.is_atom("noproc") => Err(CallError::NoProc(target)),
            Ok(Err(reason)) if reason.is_atom("noconnection") => Err(CallError::NodeDown(target)),
            Ok(Err(reason)) => Err(CallError::Exit { target, reason }),
            Err(RecvError::Timeout) => {
                self.demonitor(&mref);
                Err(CallError::Timeout(target))
            }
            Err(RecvError::Exited(r)) => Err(CallError::Exited(r)),
        }
    }

    /// Answers a `gen:call`: `from` is the request's `{Pid, Tag}`.
    pub fn reply(&self, from: &Term, reply: Term) {
        self.node.reply(from, reply)
    }
}

impl Drop for Mailbox {
    fn drop(&mut self) {
        if !self.managed {
            let reason = self.exited.take().unwrap_or_else(|| Term::atom("normal"));
            self.node.exit_process(&self.pid, reason);
        }
    }
}
