//! The connection table: at most one link per peer, connect on first
//! send, and the BEAM's rules for simultaneous connects.
//!
//! A slot is `Pending` while a handshake (ours or theirs) runs; messages
//! sent meanwhile queue in the slot and go out, in order, right after the
//! handshake. When both nodes dial each other at once, the node whose name
//! sorts higher keeps its outgoing attempt (net_kernel's accept_pending).

use super::{NodeError, NodeEvent, NodeInner, SendError};
use crate::connection::{Busy, Closed, Connection, Unencodable};
use crate::handshake::{self, AcceptDecision, Arbiter, HandshakeConfig, HandshakeError};
use crate::term::{Atom, Term};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use crate::tls::DistStream;
use tokio::net::TcpStream;
use tokio::sync::oneshot;

type Waiter = oneshot::Sender<Result<(), String>>;

enum Slot {
    Pending {
        /// Which handshake owns the slot.
        attempt: u64,
        outgoing: Option<tokio::task::AbortHandle>,
        queue: Vec<(Term, Option<Term>)>,
        waiters: Vec<Waiter>,
    },
    Up(Arc<Connection>),
}

#[derive(Default)]
pub(crate) struct Peers {
    slots: Mutex<HashMap<Atom, Slot>>,
    next_attempt: AtomicU64,
    /// Set by [`Node::shutdown`](crate::Node::shutdown): no link is made
    /// or accepted afterwards, so a process still running on a node that
    /// was shut down (a CRDT's sync tick, say) cannot bring it back into
    /// its peers' clusters.
    closed: AtomicBool,
}

impl Peers {
    pub fn connected(&self) -> Vec<Atom> {
        let slots = self.slots.lock().unwrap();
        let mut v: Vec<Atom> = slots.iter().filter(|(_, s)| matches!(s, Slot::Up(_))).map(|(k, _)| k.clone()).collect();
        v.sort();
        v
    }

    pub fn connection(&self, node: &Atom) -> Option<Arc<Connection>> {
        match self.slots.lock().unwrap().get(node) {
            Some(Slot::Up(c)) => Some(c.clone()),
            _ => None,
        }
    }

    pub fn close_all(&self) {
        self.closed.store(true, Ordering::SeqCst);
        let slots = std::mem::take(&mut *self.slots.lock().unwrap());
        for (_, s) in slots {
            match s {
                Slot::Up(c) => c.close(),
                Slot::Pending { outgoing, waiters, .. } => {
                    if let Some(h) = outgoing {
                        h.abort();
                    }
                    for w in waiters {
                        let _ = w.send(Err("node shutting down".into()));
                    }
                }
            }
        }
    }
}

/// A fire-and-forget send the peer could not have decoded: dropped before
/// it reached the link, as the BEAM would have dropped it (and the link
/// with it), and said loudly since no one else will hear of it.
fn unencodable_dropped(peer: &Atom, ctl: &Term, e: Unencodable) {
    tracing::warn!(%peer, ?ctl, "message dropped: {e}");
}

/// Whether a control message carries a user message (SEND, REG_SEND,
/// SEND_TT, REG_SEND_TT, SEND_SENDER(_TT), ALIAS_SEND(_TT)) rather than
/// a signal (exit, monitor, spawn reply...).
fn is_user_message(ctl: &Term) -> bool {
    matches!(ctl.as_tuple(), Some([Term::Int(op), ..]) if matches!(op, 2 | 6 | 12 | 16 | 22 | 23 | 33 | 34))
}

/// A signal whose reason holds a native record the peer cannot decode:
/// the signal must still arrive (a linked or monitoring process would
/// otherwise wait for it forever), so the records go as classic record
/// tuples, which is how that peer's processes know records anyway.
fn signal_without_records(ctl: &Term, payload: Option<&Term>) -> Option<(Term, Option<Term>)> {
    if is_user_message(ctl) {
        return None;
    }
    let c = crate::term::records_as_tuples(ctl);
    let p = payload.and_then(crate::term::records_as_tuples);
    (c.is_some() || p.is_some()).then(|| (c.unwrap_or_else(|| ctl.clone()), p.or_else(|| payload.cloned())))
}

impl NodeInner {
    /// Sends a control message to `peer`, connecting first if needed.
    /// Never blocks; if the connection attempt fails the queued messages
    /// are dropped with a warning, as the BEAM drops sends to an
    /// unreachable node.
    pub(crate) fn route(self: &Arc<Self>, peer: &Atom, ctl: &Term, payload: Option<&Term>) {
        self.route_or(peer, ctl, payload, true);
    }

    /// The link to `peer` up or being set up takes the message; with none,
    /// `dial` decides between connecting first and dropping it.
    fn route_or(self: &Arc<Self>, peer: &Atom, ctl: &Term, payload: Option<&Term>, dial: bool) {
        if let Some(c) = self.peers.connection(peer) {
            match c.send_terms(ctl, payload) {
                Ok(()) => return,
                Err(Closed::Unencodable(e)) => {
                    return match signal_without_records(ctl, payload) {
                        Some((ctl, payload)) => self.route_or(peer, &ctl, payload.as_ref(), dial),
                        None => unencodable_dropped(peer, ctl, e),
                    };
                }
                Err(Closed::Closed) => {}
            }
        }
        let mut slots = self.peers.slots.lock().unwrap();
        match slots.get_mut(peer) {
            Some(Slot::Up(c)) => match c.send_terms(ctl, payload) {
                Ok(()) => {}
                Err(Closed::Unencodable(e)) => match signal_without_records(ctl, payload) {
                    Some((ctl, payload)) => {
                        if c.send_terms(&ctl, payload.as_ref()).is_err() {
                            tracing::debug!(%peer, "signal dropped: link closing");
                        }
                    }
                    None => unencodable_dropped(peer, ctl, e),
                },
                Err(Closed::Closed) => tracing::debug!(%peer, "message dropped: link closing"),
            },
            Some(Slot::Pending { queue, .. }) => queue.push((ctl.clone(), payload.cloned())),
            None if !dial => tracing::debug!(%peer, ?ctl, "teardown signal dropped: no link (the link's loss already tore it down)"),
            None if self.peers.closed.load(Ordering::SeqCst) => tracing::debug!(%peer, "message dropped: this node was shut down"),
            None => {
                let attempt = self.peers.next_attempt.fetch_add(1, Ordering::Relaxed);
                let handle = self.spawn_connect(peer.clone(), attempt);
                slots.insert(
                    peer.clone(),
                    Slot::Pending { attempt, outgoing: Some(handle), queue: vec![(ctl.clone(), payload.cloned())], waiters: vec![] },
                );
            }
        }
    }

    /// Like [`route`](Self::route), waiting while the link is busy; with
    /// no link, connects first (so nothing piles up in a pending slot).
    pub(crate) async fn route_wait(self: &Arc<Self>, peer: &Atom, ctl: &Term, payload: Option<&Term>) -> Result<(), SendError> {
        let conn = match self.peers.connection(peer) {
            Some(c) => c,
            None => {
                self.ensure_connected(peer).await.map_err(|e| SendError::NoConnection { node: peer.clone(), reason: e.to_string() })?;
                self.peers.connection(peer).ok_or_else(|| SendError::Closed { node: peer.clone() })?
            }
        };
        conn.send_terms_wait(ctl, payload).await.map_err(|e| match e {
            Closed::Closed => SendError::Closed { node: peer.clone() },
            Closed::Unencodable(e) => SendError::Unencodable { node: peer.clone(), reason: e.to_string() },
        })
    }

    /// Like [`route`](Self::route), unless the link is busy.
    pub(crate) fn try_route(self: &Arc<Self>, peer: &Atom, ctl: &Term, payload: Option<&Term>) -> Result<(), SendError> {
        let Some(conn) = self.peers.connection(peer) else {
            self.route(peer, ctl, payload);
            return Ok(());
        };
        conn.try_send_terms(ctl, payload).map_err(|e| match e {
            Busy::Busy { queued, limit } => SendError::WouldBlock { node: peer.clone(), queued, limit },
            Busy::Closed => SendError::Closed { node: peer.clone() },
            Busy::Unencodable(e) => SendError::Unencodable { node: peer.clone(), reason: e.to_string() },
        })
    }

    /// Like [`route`](Self::route), but only over a link that is up or
    /// being set up: with none, the message is dropped (logged at debug).
    pub(crate) fn route_existing(self: &Arc<Self>, peer: &Atom, ctl: &Term, payload: Option<&Term>) {
        self.route_or(peer, ctl, payload, false);
    }

    /// Ensures a link to `peer`, dialling if needed, and waits for it.
    pub(crate) async fn ensure_connected(self: &Arc<Self>, peer: &Atom) -> Result<(), NodeError> {
        if peer == &self.name {
            return Ok(());
        }
        if self.peers.closed.load(Ordering::SeqCst) {
            return Err(NodeError::Connect { node: peer.to_string(), reason: "this node was shut down".into() });
        }
        let rx = {
            let mut slots = self.peers.slots.lock().unwrap();
            let (tx, rx) = oneshot::channel();
            match slots.get_mut(peer) {
                Some(Slot::Up(_)) => return Ok(()),
                Some(Slot::Pending { waiters, .. }) => waiters.push(tx),
                None => {
                    let attempt = self.peers.next_attempt.fetch_add(1, Ordering::Relaxed);
                    let handle = self.spawn_connect(peer.clone(), attempt);
                    slots.insert(peer.clone(), Slot::Pending { attempt, outgoing: Some(handle), queue: vec![], waiters: vec![tx] });
                }
            }
            rx
        };
        match rx.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(reason)) => Err(NodeError::Connect { node: peer.to_string(), reason }),
            Err(_) => Err(NodeError::Connect { node: peer.to_string(), reason: "connection attempt abandoned".into() }),
        }
    }

    fn spawn_connect(self: &Arc<Self>, peer: Atom, attempt: u64) -> tokio::task::AbortHandle {
        let node = self.clone();
        tokio::spawn(async move {
            let result = node.dial(&peer, attempt).await;
            match result {
                Ok((stream, info)) => node.install(stream, info, attempt),
                Err(HandshakeError::LostRace { .. }) => {
                    tracing::debug!(%peer, "simultaneous connect: waiting for the peer's own connection");
                    // The peer's incoming attempt now owns the slot; if it
                    // never arrives, don't keep senders waiting forever.
                    let node2 = node.clone();
                    tokio::spawn(async move {
                        tokio::time::sleep(node2.cfg.handshake_timeout * 2).await;
                        node2.fail_attempt(&peer, attempt, "simultaneous connect never completed".into());
                    });
                }
                Err(e) => {
                    tracing::warn!(%peer, error = %e, "connection attempt failed");
                    node.fail_attempt(&peer, attempt, e.to_string());
                }
            }
        })
        .abort_handle()
    }

    async fn dial(self: &Arc<Self>, peer: &Atom, attempt: u64) -> Result<(DistStream, handshake::PeerInfo), HandshakeError> {
        let parsed = super::names::parse(peer.as_str()).map_err(|e| HandshakeError::Protocol(e.to_string()))?;
        let epmd = crate::epmd::EpmdClient::new(parsed.host.clone(), self.cfg.epmd_port);
        let entry = epmd
            .port_please(&parsed.alive)
            .await
            .map_err(|e| HandshakeError::Protocol(format!("EPMD lookup of {peer} failed: {e}")))?
            .ok_or_else(|| HandshakeError::Protocol(format!("{peer} is not registered with EPMD on {}:{}", parsed.host, self.cfg.epmd_port)))?;
        let mut stream = tokio::time::timeout(self.cfg.handshake_timeout, TcpStream::connect((parsed.host.as_str(), entry.port)))
            .await
            .map_err(|_| HandshakeError::Timeout(self.cfg.handshake_timeout))??;
        let _ = stream.set_nodelay(true);
        let node = self.clone();
        let peer2 = peer.clone();
        let still_pending = move || node.owns(&peer2, attempt);
        if let Some(tls) = &self.cfg.tls {
            let mut tls_stream = tokio::time::timeout(self.cfg.handshake_timeout, tls.connect(&parsed.host, stream))
                .await
                .map_err(|_| {
                    HandshakeError::Protocol(format!(
                        "TLS handshake with {peer} timed out after {:?} (does it run plain TCP distribution?)",
                        self.cfg.handshake_timeout
                    ))
                })?
                .map_err(|e| HandshakeError::Protocol(format!("TLS handshake with {peer} failed: {e}")))?;
            let info = handshake::initiate(&mut tls_stream, &self.handshake_config(), peer.as_str(), still_pending).await?;
            return Ok((DistStream::Tls(Box::new(tls_stream)), info));
        }
        let info = handshake::initiate(&mut stream, &self.handshake_config(), peer.as_str(), still_pending).await?;
        Ok((DistStream::Tcp(stream), info))
    }

    pub(crate) fn handshake_config(&self) -> HandshakeConfig {
        HandshakeConfig {
            node_name: self.name.to_string(),
            creation: self.creation,
            cookie: self.cookie.clone(),
            flags: self.cfg.flags,
            timeout: self.cfg.handshake_timeout,
            packet_header: if self.cfg.tls.is_some() { 4 } else { 2 },
        }
    }

    fn owns(&self, peer: &Atom, attempt: u64) -> bool {
        matches!(self.peers.slots.lock().unwrap().get(peer), Some(Slot::Pending { attempt: a, .. }) if *a == attempt)
    }

    fn fail_attempt(&self, peer: &Atom, attempt: u64, reason: String) {
        let mut slots = self.peers.slots.lock().unwrap();
        let mut failed = false;
        if let Some(Slot::Pending { attempt: a, .. }) = slots.get(peer) {
            if *a == attempt {
                if let Some(Slot::Pending { queue, waiters, .. }) = slots.remove(peer) {
                    if !queue.is_empty() {
                        tracing::warn!(%peer, dropped = queue.len(), %reason, "messages to an unreachable node dropped");
                    }
                    for w in waiters {
                        let _ = w.send(Err(reason.clone()));
                    }
                    failed = true;
                }
            }
        }
        drop(slots);
        if failed {
            // The queue may have held LINK/MONITOR_P requests: as the BEAM
            // does when it cannot connect, fire those monitors and break
            // those links with `noconnection`. Without this a
            // `Mailbox::call` to a node that is gone waited for its whole
            // timeout instead of failing with NodeDown (interop test
            // `rust_calls_elixir_genserver_with_distinct_errors`).
            self.arc().processes_nodedown(peer);
        }
    }

    /// Handles one incoming TCP connection through its handshake.
    pub(crate) async fn accept(self: Arc<Self>, stream: TcpStream) {
        let _ = stream.set_nodelay(true);
        let addr = stream.peer_addr().map(|a| a.to_string()).unwrap_or_default();
        let mut stream = match &self.cfg.tls {
            None => DistStream::Tcp(stream),
            Some(tls) => match tokio::time::timeout(self.cfg.handshake_timeout, tls.accept(stream)).await {
                Ok(Ok(s)) => DistStream::Tls(Box::new(s)),
                Ok(Err(e)) => {
                    tracing::warn!(%addr, error = %e, "incoming connection refused: TLS handshake failed (TLS distribution is on: a plaintext peer, or a certificate not trusted)");
                    return;
                }
                Err(_) => {
                    tracing::warn!(%addr, timeout = ?self.cfg.handshake_timeout, "incoming connection refused: TLS handshake timed out (TLS distribution is on: a plaintext peer waiting for us?)");
                    return;
                }
            },
        };
        let attempt = self.peers.next_attempt.fetch_add(1, Ordering::Relaxed);
        let arbiter = AcceptArbiter { node: self.clone(), attempt, peer: Mutex::new(None) };
        let result = match &mut stream {
            DistStream::Tcp(s) => handshake::accept(s, &self.handshake_config(), &arbiter).await,
            DistStream::Tls(s) => handshake::accept(s, &self.handshake_config(), &arbiter).await,
        };
        match result {
            Ok(info) => self.install(stream, info, attempt),
            Err(HandshakeError::LostRace { peer }) => {
                tracing::debug!(%peer, "simultaneous connect: refused the peer's attempt, ours continues")
            }
            Err(e) => {
                tracing::warn!(%addr, error = %e, "incoming connection refused");
                // Release the Pending slot the arbiter may have given this
                // attempt, whatever the error. Taking the name from the
                // arbiter rather than from the error matters: a peer that
                // stalls after send_name (Timeout) or drops the socket (Io)
                // used to leave the slot behind, so every later connection
                // from that node was refused `not_allowed` and sends to it
                // queued forever. fail_attempt only removes a slot this
                // attempt still owns.
                let peer = arbiter.peer.lock().unwrap().take();
                if let Some(peer) = peer {
                    self.fail_attempt(&peer, attempt, e.to_string());
                }
            }
        }
    }

    fn install(self: &Arc<Self>, stream: DistStream, info: handshake::PeerInfo, attempt: u64) {
        let peer = Atom::new(&info.name);
        if self.peers.closed.load(Ordering::SeqCst) {
            tracing::debug!(%peer, "link not installed: this node was shut down");
            return;
        }
        let inbound: Arc<dyn crate::connection::Inbound> = self.clone();
        let mut slots = self.peers.slots.lock().unwrap();
        let (queue, waiters) = match slots.remove(&peer) {
            Some(Slot::Pending { attempt: a, queue, waiters, .. }) if a == attempt => (queue, waiters),
            Some(Slot::Up(old)) => {
                // The peer restarted and told us ("alive" -> "true"): the
                // old link is stale.
                tracing::info!(%peer, "replacing a stale connection");
                old.close();
                self.processes_nodedown(&peer);
                let _ = self.events.send(NodeEvent::Down { node: peer.clone(), reason: "replaced by a new connection".into() });
                (vec![], vec![])
            }
            other => {
                if let Some(o) = other {
                    slots.insert(peer.clone(), o);
                }
                tracing::debug!(%peer, "handshake finished after losing its slot; closing it");
                return;
            }
        };
        let conn = Connection::spawn(stream, peer.clone(), info.flags, info.creation, self.cfg.link.clone(), self.input_budget.clone(), inbound);
        for (ctl, payload) in &queue {
            if let Err(Closed::Unencodable(e)) = conn.send_terms(ctl, payload.as_ref()) {
                match signal_without_records(ctl, payload.as_ref()) {
                    Some((ctl, payload)) => {
                        let _ = conn.send_terms(&ctl, payload.as_ref());
                    }
                    None => unencodable_dropped(&peer, ctl, e),
                }
            }
        }
        slots.insert(peer.clone(), Slot::Up(conn));
        drop(slots);
        for w in waiters {
            let _ = w.send(Ok(()));
        }
        tracing::info!(node = %peer, flags = format_args!("{:#x}", info.flags), "nodeup");
        let _ = self.events.send(NodeEvent::Up(peer.clone()));
    }

    /// Called by a link when it ends.
    pub(crate) fn remove_link(&self, conn: &Arc<Connection>, reason: String) {
        let mut slots = self.peers.slots.lock().unwrap();
        let ours = matches!(slots.get(&conn.peer), Some(Slot::Up(c)) if Arc::ptr_eq(c, conn));
        if !ours {
            return;
        }
        slots.remove(&conn.peer);
        drop(slots);
        tracing::info!(node = %conn.peer, %reason, "nodedown");
        self.arc().processes_nodedown(&conn.peer);
        let _ = self.events.send(NodeEvent::Down { node: conn.peer.clone(), reason });
    }

    pub(crate) fn disconnect(&self, peer: &Atom) -> bool {
        match self.peers.connection(peer) {
            Some(c) => {
                c.close();
                true
            }
            None => false,
        }
    }
}

struct AcceptArbiter {
    node: Arc<NodeInner>,
    attempt: u64,
    /// The peer's name once `decide` ran (for cleanup if the handshake fails).
    peer: Mutex<Option<Atom>>,
}

impl Arbiter for AcceptArbiter {
    fn decide(&self, peer: &str) -> AcceptDecision {
        let peer_atom = Atom::new(peer);
        *self.peer.lock().unwrap() = Some(peer_atom.clone());
        if peer_atom == self.node.name {
            return AcceptDecision::NotAllowed;
        }
        let mut slots = self.node.peers.slots.lock().unwrap();
        match slots.get_mut(&peer_atom) {
            None => {
                slots.insert(peer_atom, Slot::Pending { attempt: self.attempt, outgoing: None, queue: vec![], waiters: vec![] });
                AcceptDecision::Ok
            }
            Some(Slot::Pending { attempt, outgoing, .. }) => match outgoing.take() {
                Some(handle) => {
                    if self.node.name.as_str() > peer {
                        *outgoing = Some(handle);
                        AcceptDecision::Nok
                    } else {
                        handle.abort();
                        *attempt = self.attempt;
                        AcceptDecision::OkSimultaneous
                    }
                }
                None => AcceptDecision::NotAllowed, // another incoming handshake is running
            },
            Some(Slot::Up(_)) => AcceptDecision::Alive,
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::control::{Control, MonitorTarget};
    use crate::{Atom, Node, Pid};

    /// Teardown signals to a node without a link are dropped, never dial:
    /// a demonitor used to reconnect a peer that had just disconnected.
    #[tokio::test]
    async fn teardown_signals_never_dial() {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let name = format!("teardown_{}@127.0.0.1", std::process::id());
        let node = Node::builder(name).cookie("c").epmd_port(port).embedded_epmd(true).start().await.unwrap();
        let inner = &node.inner;
        let gone = Atom::new("gone@127.0.0.1");
        let remote = Pid { node: gone.clone(), id: 1, serial: 0, creation: 1 };
        let me = node.spawn(|_mb| async { crate::Term::atom("normal") });
        let demonitor = Control::Demonitor { from: me.clone(), target: MonitorTarget::Pid(remote.clone()), reference: inner.make_ref() };
        inner.send_teardown(&gone, &demonitor);
        assert!(inner.peers.slots.lock().unwrap().get(&gone).is_none(), "a teardown signal set up a link");
        // An ordinary signal does dial (so the check above can fail).
        inner.send_control(&gone, &Control::Link { from: me, to: remote });
        assert!(inner.peers.slots.lock().unwrap().get(&gone).is_some());
        node.shutdown().await;
    }

    /// A node that was shut down dials no one: a process still running on
    /// it (a CRDT's sync tick) used to reconnect it to its peers, which then
    /// saw it as a live, uninitialized Horde member again.
    #[tokio::test]
    async fn a_shut_down_node_dials_no_one() {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let tag = std::process::id();
        let a = Node::builder(format!("shut_a_{tag}@127.0.0.1")).cookie("c").epmd_port(port).embedded_epmd(true).start().await.unwrap();
        let b = Node::builder(format!("shut_b_{tag}@127.0.0.1")).cookie("c").epmd_port(port).embedded_epmd(false).start().await.unwrap();
        let mut events = a.subscribe();
        b.connect(a.name().as_str()).await.expect("connects while running");
        b.shutdown().await;
        // Wait for the link's end as `a` sees it.
        loop {
            if let crate::node::NodeEvent::Down { .. } = events.recv().await.unwrap() {
                break;
            }
        }
        let remote = Pid { node: a.name().clone(), id: 1, serial: 0, creation: 1 };
        let from = Pid { node: b.name().clone(), id: 2, serial: 0, creation: 1 };
        b.inner.send_control(a.name(), &Control::Link { from, to: remote });
        assert!(b.inner.peers.slots.lock().unwrap().get(a.name()).is_none(), "a send set up a link");
        let err = b.connect(a.name().as_str()).await.expect_err("no connect after shutdown");
        assert!(err.to_string().contains("shut down"), "{err}");
        assert!(a.connected_nodes().is_empty());
        a.shutdown().await;
    }
}
