//! Embedded EPMD server, so a machine without Erlang installed can still
//! host erlnode and let BEAM nodes find it.
//!
//! The server owns the listener and one task per connection; the
//! per-connection protocol lives in `session.rs`. Resource use is bounded
//! (connections, registrations, request size, time to send a request) so
//! that a hostile or broken client costs one closed connection, never the
//! daemon.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tokio::task::{JoinHandle, JoinSet};

use super::error::EpmdError;
use super::registry::Registry;
use super::session;

/// Limits of the embedded server.
#[derive(Debug, Clone)]
pub struct EpmdServerConfig {
    /// Open connections at once (registrations included); further
    /// connections are accepted and closed immediately.
    pub max_connections: usize,
    /// Registered names at once. Kept below `max_connections` so lookups
    /// still get through when registrations are at their cap.
    pub max_registrations: usize,
    /// Names one local user (uid, told from the kernel's socket table) may
    /// hold at once, so that one client cannot take every slot. Each name
    /// also holds a connection, so this bounds a user's held connections.
    pub max_registrations_per_uid: usize,
    /// Time a client has to send its whole request (and to take our
    /// reply); epmd uses 60 s, we are stricter since requests are tiny.
    pub io_timeout: Duration,
    /// Honour KILL_REQ (`epmd -kill`) as epmd does: stop when no node is
    /// registered, answer `NO` otherwise. Off for an EPMD embedded in a
    /// node, which lives as long as its node.
    pub allow_kill: bool,
}

impl Default for EpmdServerConfig {
    fn default() -> Self {
        EpmdServerConfig {
            max_connections: 1024,
            max_registrations: 512,
            max_registrations_per_uid: 256,
            io_timeout: Duration::from_secs(10),
            allow_kill: false,
        }
    }
}

/// State shared by all connection tasks.
pub(crate) struct Shared {
    registry: Mutex<Registry>,
    pub(crate) config: EpmdServerConfig,
    /// The port reported at the head of NAMES replies (`erl_epmd` checks
    /// it equals the port it connected to).
    pub(crate) port: u16,
    /// Connection ids, unique across all listeners (a registration is
    /// removed only by the connection that made it).
    next_conn_id: std::sync::atomic::AtomicU64,
    /// Signalled when a KILL_REQ was honoured.
    pub(crate) killed: tokio::sync::Notify,
}

impl Shared {
    /// The registry lock is never held across an await and no code under
    /// it panics, but if that ever changes a poisoned lock must not take
    /// the daemon down.
    pub(crate) fn registry(&self) -> MutexGuard<'_, Registry> {
        self.registry.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A bound, not yet serving, EPMD server.
#[derive(Debug)]
pub struct EpmdServer {
    listeners: Vec<TcpListener>,
    local_addr: SocketAddr,
    config: EpmdServerConfig,
}

impl EpmdServer {
    /// Binds with default limits. Port 0 picks a free port (for tests).
    pub async fn bind(addr: SocketAddr) -> Result<EpmdServer, EpmdError> {
        EpmdServer::bind_with_config(addr, EpmdServerConfig::default()).await
    }

    pub async fn bind_with_config(
        addr: SocketAddr,
        config: EpmdServerConfig,
    ) -> Result<EpmdServer, EpmdError> {
        EpmdServer::bind_all(&[addr], config).await
    }

    /// Binds every address in `addrs` (one port; like epmd with
    /// `ERL_EPMD_ADDRESS`), serving them as one daemon. The port of the
    /// first address is used for the others when it was 0.
    pub async fn bind_all(
        addrs: &[SocketAddr],
        config: EpmdServerConfig,
    ) -> Result<EpmdServer, EpmdError> {
        let mut listeners = Vec::with_capacity(addrs.len());
        let mut local_addr = None;
        for addr in addrs {
            let mut addr = *addr;
            if let Some(first) = local_addr {
                let first: SocketAddr = first;
                addr.set_port(first.port());
            }
            let bind_err = |source| EpmdError::Bind { addr, source };
            let listener = TcpListener::bind(addr).await.map_err(bind_err)?;
            if local_addr.is_none() {
                local_addr = Some(listener.local_addr().map_err(bind_err)?);
            }
            listeners.push(listener);
        }
        let local_addr = local_addr.ok_or_else(|| EpmdError::Bind {
            addr: SocketAddr::from(([0, 0, 0, 0], 0)),
            source: std::io::Error::new(std::io::ErrorKind::InvalidInput, "no address to listen on"),
        })?;
        Ok(EpmdServer {
            listeners,
            local_addr,
            config,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Starts serving on the current Tokio runtime.
    pub fn spawn(self) -> EpmdServerHandle {
        let shared = Arc::new(Shared {
            registry: Mutex::new(Registry::with_owner_limit(
                self.config.max_registrations,
                self.config.max_registrations_per_uid,
            )),
            port: self.local_addr.port(),
            config: self.config,
            next_conn_id: Default::default(),
            killed: tokio::sync::Notify::new(),
        });
        let (stop_tx, stop_rx) = watch::channel(false);
        let permits = Arc::new(Semaphore::new(shared.config.max_connections));
        let mut loops = JoinSet::new();
        for listener in self.listeners {
            loops.spawn(accept_loop(listener, shared.clone(), permits.clone(), stop_rx.clone()));
        }
        let task = tokio::spawn(async move { while loops.join_next().await.is_some() {} });
        tracing::debug!(addr = %self.local_addr, "embedded EPMD serving");
        EpmdServerHandle {
            local_addr: self.local_addr,
            shared,
            stop: stop_tx,
            task: Some(task),
        }
    }
}

/// Keeps the embedded EPMD running; dropping it stops the server and
/// drops every registration (as if epmd had been killed).
pub struct EpmdServerHandle {
    local_addr: SocketAddr,
    shared: Arc<Shared>,
    stop: watch::Sender<bool>,
    task: Option<JoinHandle<()>>,
}

impl EpmdServerHandle {
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Currently registered `(name, port)` pairs, newest first, without a
    /// round trip through TCP.
    pub fn names(&self) -> Vec<(String, u16)> {
        self.shared
            .registry()
            .list()
            .into_iter()
            .map(|(n, p, _)| (n, p))
            .collect()
    }

    /// Returns when a client's KILL_REQ was honoured (only with
    /// [`EpmdServerConfig::allow_kill`]); the owner should then shut down.
    pub async fn kill_requested(&self) {
        self.shared.killed.notified().await
    }

    /// Asks the server to stop: it stops accepting, closes every
    /// connection (dropping all registrations) and releases the port
    /// shortly after. Returns at once and may be called from sync code;
    /// use [`shutdown_and_wait`](Self::shutdown_and_wait) to know when the
    /// port is free again.
    pub fn shutdown(&self) {
        let _ = self.stop.send(true);
    }

    /// Like [`shutdown`](Self::shutdown), then waits until every
    /// connection is closed and the listening socket is released.
    pub async fn shutdown_and_wait(mut self) {
        self.shutdown();
        if let Some(task) = self.task.take() {
            if let Err(e) = task.await {
                if e.is_panic() {
                    tracing::warn!("embedded EPMD accept loop panicked: {e}");
                }
            }
        }
    }
}

impl std::fmt::Debug for EpmdServerHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EpmdServerHandle")
            .field("local_addr", &self.local_addr)
            .finish_non_exhaustive()
    }
}

impl Drop for EpmdServerHandle {
    fn drop(&mut self) {
        // The accept loop also stops when the sender is dropped; sending
        // first just makes the intent explicit.
        self.shutdown();
    }
}

async fn accept_loop(
    listener: TcpListener,
    shared: Arc<Shared>,
    permits: Arc<Semaphore>,
    mut stop: watch::Receiver<bool>,
) {
    let mut conns = JoinSet::new();
    loop {
        // Reap finished connections so the set does not grow without bound.
        while let Some(done) = conns.try_join_next() {
            if let Err(e) = done {
                if e.is_panic() {
                    tracing::warn!("EPMD connection task panicked: {e}");
                }
            }
        }
        let accepted = tokio::select! {
            changed = stop.changed() => {
                if changed.is_err() || *stop.borrow() {
                    break;
                }
                continue;
            }
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // Usually fd exhaustion; back off instead of spinning, but
                // stay responsive to shutdown.
                tracing::warn!("EPMD accept failed: {e}");
                tokio::select! {
                    _ = stop.changed() => {}
                    _ = tokio::time::sleep(Duration::from_millis(100)) => {}
                }
                continue;
            }
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            tracing::warn!(%peer, limit = shared.config.max_connections,
                "EPMD connection limit reached; closing new connection");
            drop(stream);
            continue;
        };
        let conn_id = shared.next_conn_id.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
        let shared = shared.clone();
        conns.spawn(async move {
            let _permit = permit;
            session::serve(stream, peer, shared, conn_id).await;
        });
    }
    // Aborting the tasks drops their registration guards, which removes
    // the names, and closes their sockets.
    drop(listener);
    conns.shutdown().await;
    tracing::debug!("embedded EPMD stopped");
}
