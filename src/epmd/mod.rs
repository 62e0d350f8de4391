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

use std::net::{Ipv4Addr, SocketAddr};
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
    let probe = EpmdClient::new(Ipv4Addr::LOCALHOST.to_string(), port);
    match probe_epmd(&probe).await {
        Probe::Epmd => {
            tracing::debug!(port, "using existing EPMD");
            return Ok(None);
        }
        Probe::Nothing => {}
        Probe::Failed(e) => return Err(e),
    }
    let addr = SocketAddr::from((Ipv4Addr::UNSPECIFIED, port));
    match EpmdServer::bind(addr).await {
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
