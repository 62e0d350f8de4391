//! `erlnode epmd`: a standalone EPMD, in the foreground or as a daemon
//! (`--daemon`, as `epmd -daemon`), and the daemon `erlnode run` starts
//! when nothing listens on the EPMD port, so that the BEAM nodes
//! registered with it keep finding each other after the Rust node stops.

use crate::epmd::{EpmdClient, EpmdServer, EpmdServerConfig};
use clap::Args;
use std::net::IpAddr;
use std::process::{ExitCode, Stdio};
use std::time::Duration;

/// How long a starting daemon may take to answer.
const DAEMON_START: Duration = Duration::from_secs(10);

#[derive(Args, Debug)]
pub struct EpmdArgs {
    /// Port to listen on.
    #[arg(long, env = "ERL_EPMD_PORT", default_value_t = 4369)]
    pub port: u16,
    /// Addresses to listen on, comma-separated (loopback is always added),
    /// as epmd reads ERL_EPMD_ADDRESS. Default: every interface.
    #[arg(long, env = "ERL_EPMD_ADDRESS", value_name = "IP,...", value_parser = super::parse_epmd_addresses)]
    pub address: Option<super::EpmdAddresses>,
    /// Detach and run in the background; print the daemon's pid. Does
    /// nothing (successfully) if an EPMD already answers on the port.
    #[arg(long)]
    pub daemon: bool,
    /// Names that may be registered at once.
    #[arg(long, value_name = "N", default_value_t = EpmdServerConfig::default().max_registrations)]
    pub max_registrations: usize,
    /// Names one local user (uid) may hold at once, so that one client
    /// cannot take every slot.
    #[arg(long, value_name = "N", default_value_t = EpmdServerConfig::default().max_registrations_per_uid)]
    pub max_registrations_per_uid: usize,
}

pub async fn run(a: EpmdArgs) -> ExitCode {
    let addresses = a.address.as_ref().map(|x| x.0.clone()).unwrap_or_default();
    if a.daemon {
        let limits = Some((a.max_registrations, a.max_registrations_per_uid));
        return match start_daemon(a.port, &addresses, limits).await {
            Ok(Daemon::Started(pid)) => {
                println!("{pid}");
                ExitCode::SUCCESS
            }
            Ok(Daemon::AlreadyRunning) => {
                tracing::info!(port = a.port, "an EPMD already answers on this port");
                ExitCode::SUCCESS
            }
            Err(e) => {
                tracing::error!(port = a.port, error = %e, "cannot start the EPMD daemon");
                ExitCode::FAILURE
            }
        };
    }
    let cfg = EpmdServerConfig {
        max_registrations: a.max_registrations,
        max_registrations_per_uid: a.max_registrations_per_uid,
        allow_kill: true,
        ..Default::default()
    };
    let server = match EpmdServer::bind_all(&crate::epmd::listen_addresses(&addresses, a.port), cfg).await {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(port = a.port, error = %e, "cannot listen");
            return ExitCode::FAILURE;
        }
    };
    let handle = server.spawn();
    tracing::info!(port = a.port, pid = std::process::id(), "EPMD listening");
    tokio::select! {
        _ = super::wait_for_signal() => tracing::info!("EPMD stopping on a signal"),
        _ = handle.kill_requested() => {}
    }
    handle.shutdown_and_wait().await;
    ExitCode::SUCCESS
}

/// What [`start_daemon`] found or did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Daemon {
    /// A new daemon runs with this pid.
    Started(u32),
    /// Something already answers EPMD requests on the port.
    AlreadyRunning,
}

/// Starts `erlnode epmd` (this very executable) as a detached process in
/// its own process group, with no terminal and no inherited output, and
/// waits until it answers. It is not stopped when this process ends.
/// `limits`: names in all and per uid (default: the server's defaults).
pub async fn start_daemon(port: u16, addresses: &[IpAddr], limits: Option<(usize, usize)>) -> Result<Daemon, String> {
    let probe = EpmdClient::new("127.0.0.1", port);
    if probe.names().await.is_ok() {
        return Ok(Daemon::AlreadyRunning);
    }
    let exe = std::env::current_exe().map_err(|e| format!("cannot find this executable: {e}"))?;
    let mut cmd = std::process::Command::new(exe);
    cmd.arg("epmd").arg("--port").arg(port.to_string());
    if !addresses.is_empty() {
        let list: Vec<String> = addresses.iter().map(|a| a.to_string()).collect();
        cmd.arg("--address").arg(list.join(","));
    }
    if let Some((all, per_uid)) = limits {
        cmd.arg("--max-registrations").arg(all.to_string());
        cmd.arg("--max-registrations-per-uid").arg(per_uid.to_string());
    }
    // Its own process group: a terminal's Ctrl-C to the node's group does
    // not reach it. No inherited descriptors: whoever reads the node's
    // output sees EOF when the node ends.
    use std::os::unix::process::CommandExt;
    cmd.env_remove("ERL_EPMD_ADDRESS").stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null()).process_group(0);
    let mut child = cmd.spawn().map_err(|e| format!("cannot start the EPMD daemon: {e}"))?;
    let pid = child.id();
    let deadline = tokio::time::Instant::now() + DAEMON_START;
    loop {
        if probe.names().await.is_ok() {
            // The daemon is reaped by whoever inherits it; while this
            // process lives, a background thread waits for it so it never
            // lingers as a zombie.
            std::thread::spawn(move || {
                let _ = child.wait();
            });
            return Ok(Daemon::Started(pid));
        }
        if let Ok(Some(status)) = child.try_wait() {
            // Lost a race with another EPMD starting on the same port?
            if probe.names().await.is_ok() {
                return Ok(Daemon::AlreadyRunning);
            }
            return Err(format!("the EPMD daemon exited at once ({status})"));
        }
        if tokio::time::Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("the EPMD daemon did not answer within {DAEMON_START:?}"));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
