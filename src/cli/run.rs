use super::NodeOpts;
use crate::NodeEvent;
use clap::Args;
use std::process::ExitCode;

#[derive(Args, Debug)]
pub struct RunArgs {
    /// Node name: name@host (long) or name (short; this host's name is appended).
    #[arg(long)]
    pub name: String,
    /// Connect to these nodes at start (repeatable).
    #[arg(long = "connect", value_name = "NODE")]
    pub connect: Vec<String>,
    /// TCP port for incoming distribution connections (0: any free port).
    #[arg(long, default_value_t = 0)]
    pub listen_port: u16,
    #[command(flatten)]
    pub opts: NodeOpts,
}

pub async fn run(a: RunArgs) -> ExitCode {
    let builder = a.opts.apply(crate::Node::builder(a.name.clone())).listen(([0, 0, 0, 0], a.listen_port).into());
    let node = match builder.start().await {
        Ok(n) => n,
        Err(e) => {
            tracing::error!(error = %e, "cannot start the node");
            return ExitCode::FAILURE;
        }
    };
    if let Err(e) = crate::services::echo::spawn(&node, "erlnode_echo") {
        tracing::error!(error = %e, "cannot start erlnode_echo");
        return ExitCode::FAILURE;
    }
    let mut events = node.subscribe();
    tokio::spawn(async move {
        use tokio::sync::broadcast::error::RecvError;
        loop {
            match events.recv().await {
                Ok(NodeEvent::Up(n)) => tracing::info!(node = %n, "peer joined"),
                Ok(NodeEvent::Down { node, reason }) => tracing::info!(%node, %reason, "peer left"),
                Err(RecvError::Lagged(n)) => tracing::warn!(missed = n, "peer events came faster than they could be logged"),
                Err(RecvError::Closed) => break,
            }
        }
    });
    for peer in &a.connect {
        match node.connect(peer).await {
            Ok(()) => tracing::info!(node = %peer, "connected"),
            Err(e) => tracing::warn!(node = %peer, error = %e, "cannot connect"),
        }
    }
    tracing::info!(node = %node.name(), port = node.listen_port(), epmd_port = node.epmd_port(), embedded_epmd = node.serves_epmd(), "ready");
    wait_for_signal().await;
    tracing::info!("shutting down");
    node.shutdown().await;
    ExitCode::SUCCESS
}

async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
