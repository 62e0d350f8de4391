//! Configuring and starting a node.

use super::{names, Node, NodeError, NodeInner};
use crate::connection::LinkConfig;
use crate::handshake::flags;
use crate::process::ProcessTable;
use crate::term::Atom;
use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;

/// Everything that shapes a node. Defaults follow `erl`'s.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    pub name: String,
    /// `None`: read `~/.erlang.cookie` as `erl` does.
    pub cookie: Option<String>,
    /// EPMD's port: `ERL_EPMD_PORT` if set, else 4369.
    pub epmd_port: u16,
    /// Serve EPMD ourselves when nothing listens on `epmd_port`.
    pub embedded_epmd: bool,
    /// Register with EPMD so that peers can find us. A node that only
    /// dials out (`erlnode ping`) needs no registration.
    pub publish: bool,
    pub listen: SocketAddr,
    /// Like `net_setuptime`: the longest a handshake may take.
    pub handshake_timeout: Duration,
    pub link: LinkConfig,
    pub flags: u64,
    /// Run `global_name_server` (cluster-wide names, see `crate::global`).
    pub global: bool,
    /// Answer the liveness checks BEAM libraries make of erlnode pids
    /// (`Process.alive?/1`, `erlang:is_process_alive/1` over erpc/rpc;
    /// see [`Node::allow_liveness_checks`]). Default: yes, since Horde's
    /// registry raises on every node when they are refused.
    pub liveness_checks: bool,
}

impl NodeConfig {
    pub fn new(name: String) -> Self {
        let epmd_port = std::env::var("ERL_EPMD_PORT").ok().and_then(|p| p.parse().ok()).unwrap_or(4369);
        NodeConfig {
            name,
            cookie: None,
            epmd_port,
            embedded_epmd: true,
            publish: true,
            listen: "0.0.0.0:0".parse().unwrap(),
            handshake_timeout: Duration::from_secs(7),
            link: LinkConfig::default(),
            flags: flags::ERLNODE_DEFAULT,
            global: true,
            liveness_checks: true,
        }
    }
}

/// Builder for [`Node`].
pub struct NodeBuilder {
    cfg: NodeConfig,
}

impl NodeBuilder {
    pub(crate) fn new(name: String) -> Self {
        NodeBuilder { cfg: NodeConfig::new(name) }
    }
    pub fn cookie(mut self, cookie: impl Into<String>) -> Self {
        self.cfg.cookie = Some(cookie.into());
        self
    }
    pub fn epmd_port(mut self, port: u16) -> Self {
        self.cfg.epmd_port = port;
        self
    }
    /// Whether to serve EPMD when none runs (default: yes).
    pub fn embedded_epmd(mut self, yes: bool) -> Self {
        self.cfg.embedded_epmd = yes;
        self
    }
    /// Whether to register with EPMD (default: yes).
    pub fn publish(mut self, yes: bool) -> Self {
        self.cfg.publish = yes;
        self
    }
    pub fn listen(mut self, addr: SocketAddr) -> Self {
        self.cfg.listen = addr;
        self
    }
    pub fn net_ticktime(mut self, t: Duration) -> Self {
        self.cfg.link.net_ticktime = t;
        self
    }
    pub fn handshake_timeout(mut self, t: Duration) -> Self {
        self.cfg.handshake_timeout = t;
        self
    }
    pub fn max_frame(mut self, bytes: usize) -> Self {
        self.cfg.link.max_frame = bytes;
        self
    }
    pub fn max_message(mut self, bytes: usize) -> Self {
        self.cfg.link.max_message = bytes;
        self
    }
    /// Whether to run `global` (default: yes). Without it BEAM peers'
    /// `global:sync()` waits forever for this node.
    pub fn global(mut self, yes: bool) -> Self {
        self.cfg.global = yes;
        self
    }
    /// Whether to answer liveness checks of local pids (default: yes;
    /// `NodeConfig::liveness_checks`). Without them Horde's
    /// `Registry.lookup/2` of an erlnode pid raises `{:erpc, :notsup}`.
    pub fn liveness_checks(mut self, yes: bool) -> Self {
        self.cfg.liveness_checks = yes;
        self
    }
    pub fn config(&self) -> &NodeConfig {
        &self.cfg
    }

    /// Starts EPMD if needed, listens, registers, and serves.
    pub async fn start(self) -> Result<Node, NodeError> {
        let cfg = self.cfg;
        let name = names::parse(&cfg.name).map_err(|e| NodeError::Config(e.to_string()))?;
        let cookie = match &cfg.cookie {
            Some(c) => c.clone(),
            None => crate::handshake::cookie::default_cookie().map_err(NodeError::Cookie)?,
        };
        let epmd_server = if cfg.embedded_epmd { crate::epmd::ensure_epmd(cfg.epmd_port).await? } else { None };
        if epmd_server.is_some() {
            tracing::info!(port = cfg.epmd_port, "no EPMD was running: serving EPMD in-process");
        }
        let listener = TcpListener::bind(cfg.listen).await.map_err(NodeError::Listen)?;
        let listen_port = listener.local_addr().map_err(NodeError::Listen)?.port();
        let registration = if cfg.publish {
            let epmd = crate::epmd::EpmdClient::new("127.0.0.1", cfg.epmd_port);
            Some(epmd.register(&name.alive, listen_port, crate::epmd::NodeKind::Normal).await?)
        } else {
            None
        };
        // Unpublished nodes pick a creation at random, as the BEAM does for
        // nodes started without EPMD (creation 0 is reserved).
        let creation = registration.as_ref().map(|r| r.creation()).unwrap_or_else(|| rand::random::<u32>().max(4));
        let full = Atom::new(&name.full());
        let (events, _) = tokio::sync::broadcast::channel(1024);
        let inner = Arc::new_cyclic(|me| NodeInner {
            name: full.clone(),
            creation,
            cookie,
            listen_port,
            processes: Arc::new(ProcessTable::new(full.clone(), creation)),
            peers: Default::default(),
            events,
            next_ref: AtomicU64::new(1),
            epmd_registration: Mutex::new(registration),
            epmd_server: Mutex::new(epmd_server),
            tasks: Mutex::new(Vec::new()),
            me: me.clone(),
            erpc_allow: Default::default(),
            global: Default::default(),
            cfg,
        });
        // Before the listener runs, so no peer's check is ever refused.
        if inner.cfg.liveness_checks {
            Node { inner: inner.clone() }.allow_liveness_checks();
        }
        // Before the listener runs, so global sees every nodeup.
        if inner.cfg.global {
            let core = crate::global::start(&Node { inner: inner.clone() })?;
            let _ = inner.global.set(core);
        }
        let acceptor = {
            let inner = Arc::downgrade(&inner);
            tokio::spawn(async move {
                loop {
                    let (stream, addr) = match listener.accept().await {
                        Ok(x) => x,
                        Err(e) => {
                            tracing::warn!(error = %e, "accept failed");
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            continue;
                        }
                    };
                    let Some(node) = inner.upgrade() else { return };
                    tracing::debug!(%addr, "incoming connection");
                    tokio::spawn(node.accept(stream));
                }
            })
        };
        inner.tasks.lock().unwrap().push(acceptor.abort_handle());
        tracing::info!(node = %full, port = listen_port, creation, "node up");
        Ok(Node { inner })
    }
}
