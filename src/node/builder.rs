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
    /// Where the distribution listener binds (default `0.0.0.0:0`, every
    /// interface and any free port, as the BEAM does).
    pub listen: SocketAddr,
    /// Like `inet_dist_listen_min`/`inet_dist_listen_max`: listen on the
    /// first free port of this range (inclusive) instead of `listen`'s.
    pub listen_port_range: Option<(u16, u16)>,
    /// Addresses the embedded EPMD listens on (`ERL_EPMD_ADDRESS` if set;
    /// empty: every interface). Loopback is always added.
    pub epmd_addresses: Vec<std::net::IpAddr>,
    /// Incoming handshakes that may run at once; connections beyond are
    /// closed at once (default 256). Each may take `handshake_timeout`.
    pub max_handshakes: usize,
    /// Like `net_setuptime`: the longest a handshake may take.
    pub handshake_timeout: Duration,
    pub link: LinkConfig,
    /// Node-wide budget for unfinished input, shared by all links (each
    /// limited to `link.input_share`); see [`crate::connection::budget`].
    pub input_budget: usize,
    pub flags: u64,
    /// Run `global_name_server` (cluster-wide names, see `crate::global`).
    pub global: bool,
    /// Answer the liveness checks BEAM libraries make of erlnode pids
    /// (`Process.alive?/1`, `erlang:is_process_alive/1` over erpc/rpc;
    /// see [`Node::allow_liveness_checks`]). Default: yes, since Horde's
    /// registry raises on every node when they are refused.
    pub liveness_checks: bool,
    /// TLS distribution (`-proto_dist inet_tls`): every connection, both
    /// ways, runs TLS; plaintext peers are refused. `None`: plain TCP.
    pub tls: Option<crate::tls::TlsConfig>,
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
            listen_port_range: None,
            epmd_addresses: std::env::var("ERL_EPMD_ADDRESS")
                .ok()
                .and_then(|v| crate::epmd::parse_addresses(&v).ok())
                .unwrap_or_default(),
            max_handshakes: 256,
            handshake_timeout: Duration::from_secs(7),
            link: LinkConfig::default(),
            input_budget: crate::connection::budget::DEFAULT_INPUT_BUDGET,
            flags: flags::ERLNODE_DEFAULT,
            global: true,
            liveness_checks: true,
            tls: None,
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
    /// Listen on the first free port in `min..=max` (the BEAM's
    /// `inet_dist_listen_min`/`max`), on `listen`'s address.
    pub fn listen_port_range(mut self, min: u16, max: u16) -> Self {
        self.cfg.listen_port_range = Some((min, max));
        self
    }
    /// Addresses the embedded EPMD listens on, as `ERL_EPMD_ADDRESS`
    /// (loopback is always added; empty: every interface).
    pub fn epmd_addresses(mut self, addrs: Vec<std::net::IpAddr>) -> Self {
        self.cfg.epmd_addresses = addrs;
        self
    }
    /// Incoming handshakes that may run at once (default 256).
    pub fn max_handshakes(mut self, n: usize) -> Self {
        self.cfg.max_handshakes = n.max(1);
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
    /// Largest fragmented message accepted (default 128 MiB). Raising it
    /// past [`link_input_share`](Self::link_input_share) needs that
    /// raised too.
    pub fn max_message(mut self, bytes: usize) -> Self {
        self.cfg.link.max_message = bytes;
        self
    }
    /// The most unfinished input (pieces of fragmented messages, the frame
    /// being read) one link may hold before it is closed (default 144 MiB).
    pub fn link_input_share(mut self, bytes: usize) -> Self {
        self.cfg.link.input_share = bytes;
        self
    }
    /// Bytes queued for a link's socket at which the link is busy and
    /// [`Node::send_async`] waits, [`Node::try_send`] fails (default 1 MiB,
    /// the BEAM's `dist_buf_busy_limit`). Other traffic is never held.
    pub fn dist_buf_busy_limit(mut self, bytes: usize) -> Self {
        self.cfg.link.busy_limit = bytes;
        self
    }
    /// Whether atoms go to peers as references to their distribution
    /// atom cache (default `true`: each atom's text crosses a link once).
    /// `false` writes every atom as text, as erlnode did before; for
    /// comparisons (`cargo bench --bench throughput` measures both).
    pub fn send_atom_cache(mut self, on: bool) -> Self {
        self.cfg.link.send_atom_cache = on;
        self
    }
    /// Whether the buffers that messages of 4 MiB or more are received
    /// into ask the kernel for transparent huge pages (default `true`: a
    /// fresh 64 MiB buffer otherwise takes 16,384 page faults, and 64 MB
    /// messages arrive at about half the rate). Turn it off on a host
    /// where huge page compaction stalls (`defrag` set to `always`).
    pub fn huge_pages(mut self, on: bool) -> Self {
        self.cfg.link.huge_pages = on;
        self
    }
    /// While large messages arrive on a link, how long its reader polls
    /// the empty socket again before it sleeps (default 20 us, measured
    /// best; at most 1 ms, as a poll holds a runtime worker; zero turns it
    /// off; `LinkConfig::busy_poll`). As the
    /// BEAM's schedulers busy-wait before they sleep, it trades a little
    /// CPU for a reader that is awake when the next frame comes (a BEAM
    /// sender of 64 KB messages was 1.5-2x faster with it). Small
    /// messages are read without it.
    pub fn busy_poll(mut self, limit: std::time::Duration) -> Self {
        self.cfg.link.busy_poll = limit;
        self
    }
    /// The most bytes of freed receive buffers the node keeps for the
    /// next large messages (default 160 MiB, at most 8 buffers; 0: none).
    /// A message of 256 KiB or more is read into a buffer of its size;
    /// fresh from the allocator, its pages fault on first write (0.3-0.6
    /// ms per MiB on a VM), so the buffer of a message whose bytes were
    /// dropped is kept and reused, as the BEAM keeps freed carriers.
    /// Memory kept this way is not returned to the system until reused
    /// or replaced.
    pub fn receive_buffer_cache(mut self, bytes: usize) -> Self {
        self.cfg.link.buffer_cache = crate::connection::buffer_cache::BufferCache::new(bytes);
        self
    }
    /// The most unfinished input all links together may hold (default
    /// 256 MiB): the bound on what peers, hostile ones included, can make
    /// the node buffer. A link that needs more than what is left is closed.
    pub fn input_budget(mut self, bytes: usize) -> Self {
        self.cfg.input_budget = bytes;
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
    /// Distribution over TLS, as `-proto_dist inet_tls`; e.g.
    /// `.tls(TlsConfig::from_ssl_dist_optfile(path)?)`.
    pub fn tls(mut self, tls: crate::tls::TlsConfig) -> Self {
        self.cfg.tls = Some(tls);
        self
    }
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
        if cfg.link.max_message > cfg.link.input_share || cfg.link.input_share > cfg.input_budget {
            tracing::warn!(
                max_message = cfg.link.max_message,
                link_input_share = cfg.link.input_share,
                input_budget = cfg.input_budget,
                "memory limits out of order: messages near max_message will be refused (want max_message < link_input_share <= input_budget)"
            );
        }
        let name = names::parse(&cfg.name).map_err(|e| NodeError::Config(e.to_string()))?;
        let cookie = match &cfg.cookie {
            Some(c) => c.clone(),
            None => crate::handshake::cookie::default_cookie().map_err(NodeError::Cookie)?,
        };
        let epmd_server =
            if cfg.embedded_epmd { crate::epmd::ensure_epmd_on(cfg.epmd_port, &cfg.epmd_addresses).await? } else { None };
        if epmd_server.is_some() {
            tracing::info!(port = cfg.epmd_port, "no EPMD was running: serving EPMD in-process");
        }
        let listener = bind_listener(cfg.listen, cfg.listen_port_range).await?;
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
            pg: Default::default(),
            input_budget: crate::connection::InputBudget::new(cfg.input_budget),
            migration: Default::default(),
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
            let handshakes = Arc::new(tokio::sync::Semaphore::new(inner.cfg.max_handshakes));
            let inner = Arc::downgrade(&inner);
            let mut refused: u64 = 0;
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
                    let Ok(permit) = handshakes.clone().try_acquire_owned() else {
                        refused += 1;
                        // Every refusal counts; the log gets the 1st, 2nd, 4th, 8th...
                        if refused.is_power_of_two() {
                            tracing::warn!(%addr, limit = node.cfg.max_handshakes, refused, "too many handshakes at once: closing new connections");
                        }
                        drop(stream);
                        continue;
                    };
                    tracing::debug!(%addr, "incoming connection");
                    tokio::spawn(async move {
                        node.accept(stream).await;
                        drop(permit);
                    });
                }
            })
        };
        inner.tasks.lock().unwrap().push(acceptor.abort_handle());
        tracing::info!(node = %full, port = listen_port, creation, "node up");
        Ok(Node { inner })
    }
}

/// Binds the distribution listener: `listen` as given, or the first free
/// port of `range` on `listen`'s address, as the BEAM walks
/// `inet_dist_listen_min..=max`.
async fn bind_listener(listen: SocketAddr, range: Option<(u16, u16)>) -> Result<TcpListener, NodeError> {
    let Some((min, max)) = range else {
        return TcpListener::bind(listen).await.map_err(NodeError::Listen);
    };
    if min > max || min == 0 {
        return Err(NodeError::Config(format!("dist port range {min}-{max} is empty")));
    }
    let mut last = None;
    for port in min..=max {
        match TcpListener::bind(SocketAddr::new(listen.ip(), port)).await {
            Ok(l) => return Ok(l),
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => last = Some(e),
            Err(e) => return Err(NodeError::Listen(e)),
        }
    }
    Err(NodeError::Listen(std::io::Error::new(
        std::io::ErrorKind::AddrInUse,
        format!("every port of {min}-{max} on {} is in use ({})", listen.ip(), last.map(|e| e.to_string()).unwrap_or_default()),
    )))
}
