//! EPMD, the Erlang Port Mapper Daemon: how nodes on a host find each
//! other's distribution ports.
//!
//! erlnode needs both sides: a client to register itself and look up BEAM
//! nodes, and an embedded server so it also works on hosts where no
//! Erlang (hence no `epmd` binary) is installed. [`ensure_epmd`] picks
//! between using an existing daemon and starting the embedded one.

mod client;
mod error;
pub mod protocol;
mod registry;
mod server;
mod session;

#[cfg(test)]
mod tests;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

pub use client::{EpmdClient, Registration, DEFAULT_TIMEOUT};
pub use error::EpmdError;
pub use protocol::{NodeEntry, NodeKind, DEFAULT_PORT};
pub use server::{EpmdServer, EpmdServerConfig, EpmdServerHandle};

/// How long to wait for a daemon that won the bind race to start
/// answering (it may have bound but not yet called `listen`).
const RACE_GRACE: Duration = Duration::from_secs(5);

/// Makes sure an EPMD serves `port` on this host.
///
/// Returns `None` when an EPMD already answers on 127.0.0.1:`port` (real
/// epmd, or another erlnode's embedded one), otherwise starts the embedded
/// server on 0.0.0.0:`port`, as epmd binds all interfaces, and returns its
/// handle; keep it alive for as long as the node runs. If another process
/// takes the port between our check and our bind, its EPMD is used.
///
/// Whatever answers must actually speak EPMD (checked with a NAMES
/// request): registering with some other service would fail later in a
/// much more confusing way.
pub async fn ensure_epmd(port: u16) -> Result<Option<EpmdServerHandle>, EpmdError> {
    ensure_epmd_on(port, &[]).await
}

/// The addresses an EPMD listens on, as epmd reads `ERL_EPMD_ADDRESS`: a
/// comma-separated list of IP addresses, to which loopback is added.
/// Empty (the default): every interface.
pub fn listen_addresses(addresses: &[IpAddr], port: u16) -> Vec<SocketAddr> {
    if addresses.is_empty() || addresses.iter().any(|a| a.is_unspecified()) {
        return vec![SocketAddr::from((Ipv4Addr::UNSPECIFIED, port))];
    }
    let mut out: Vec<SocketAddr> = Vec::new();
    if !addresses.iter().any(|a| a.is_loopback()) {
        out.push(SocketAddr::from((Ipv4Addr::LOCALHOST, port)));
    }
    for a in addresses {
        let s = SocketAddr::new(*a, port);
        if !out.contains(&s) {
            out.push(s);
        }
    }
    out
}

/// Parses `ERL_EPMD_ADDRESS`'s format: `10.0.0.5,192.168.1.2` (spaces
/// allowed around the commas).
pub fn parse_addresses(list: &str) -> Result<Vec<IpAddr>, String> {
    list.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.parse::<IpAddr>().map_err(|e| format!("{s:?} is not an IP address: {e}")))
        .collect()
}

/// [`ensure_epmd`], the embedded server listening on `addresses` (see
/// [`listen_addresses`]).
pub async fn ensure_epmd_on(port: u16, addresses: &[IpAddr]) -> Result<Option<EpmdServerHandle>, EpmdError> {
    let probe = EpmdClient::new(Ipv4Addr::LOCALHOST.to_string(), port);
    match probe_epmd(&probe).await {
        Probe::Epmd => {
            tracing::debug!(port, "using existing EPMD");
            return Ok(None);
        }
        Probe::Nothing => {}
        Probe::Failed(e) => return Err(e),
    }
    match EpmdServer::bind_all(&listen_addresses(addresses, port), EpmdServerConfig::default()).await {
        Ok(server) => {
            tracing::debug!(port, "no EPMD running; starting embedded EPMD");
            Ok(Some(server.spawn()))
        }
        Err(EpmdError::Bind { source, .. }) if source.kind() == std::io::ErrorKind::AddrInUse => {
            wait_for_winner(&probe, port, source).await
        }
        Err(e) => Err(e),
    }
}

enum Probe {
    Epmd,
    Nothing,
    Failed(EpmdError),
}

async fn probe_epmd(client: &EpmdClient) -> Probe {
    match client.names().await {
        Ok(_) => Probe::Epmd,
        Err(EpmdError::NoEpmd { .. }) => Probe::Nothing,
        Err(
            e @ (EpmdError::Protocol { .. }
            | EpmdError::Closed { .. }
            | EpmdError::Io { .. }
            | EpmdError::Timeout { .. }),
        ) => Probe::Failed(EpmdError::NotEpmd {
            addr: format!("127.0.0.1:{}", client.port()),
            reason: e.to_string(),
        }),
        Err(e) => Probe::Failed(e),
    }
}

/// Someone else bound the port first: poll until their EPMD answers.
async fn wait_for_winner(
    probe: &EpmdClient,
    port: u16,
    bind_error: std::io::Error,
) -> Result<Option<EpmdServerHandle>, EpmdError> {
    let deadline = tokio::time::Instant::now() + RACE_GRACE;
    loop {
        match probe_epmd(probe).await {
            Probe::Epmd => {
                tracing::debug!(port, "another process started EPMD first; using it");
                return Ok(None);
            }
            Probe::Failed(e) => return Err(e),
            Probe::Nothing if tokio::time::Instant::now() >= deadline => {
                return Err(EpmdError::Bind {
                    addr: SocketAddr::from((Ipv4Addr::UNSPECIFIED, port)),
                    source: bind_error,
                });
            }
            Probe::Nothing => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
}
