use super::client::ClientOpts;
use clap::Args;
use std::process::ExitCode;
use std::time::Duration;

#[derive(Args, Debug)]
pub struct PingArgs {
    /// The node to ping, e.g. app@127.0.0.1.
    pub node: String,
    /// Our own node name for the connection. Default: a unique name on the target's host.
    #[arg(long)]
    pub name: Option<String>,
    /// Seconds to wait for the answer.
    #[arg(long, default_value_t = 10)]
    pub timeout: u64,
    #[command(flatten)]
    pub opts: ClientOpts,
}

pub async fn run(a: PingArgs) -> ExitCode {
    let host = a.node.split_once('@').map(|(_, h)| h.to_string()).unwrap_or_else(crate::node::names::short_hostname);
    let name = a.name.clone().unwrap_or_else(|| format!("erlnode_ping_{}@{}", std::process::id(), host));
    let b = crate::Node::builder(name).epmd_port(a.opts.epmd_port).embedded_epmd(false).publish(false);
    let mut b = match a.opts.tls.apply(b) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("pang: {e}");
            return ExitCode::FAILURE;
        }
    };
    if let Some(c) = &a.opts.cookie {
        b = b.cookie(c.clone());
    }
    let node = match b.start().await {
        Ok(n) => n,
        Err(e) => {
            eprintln!("pang: cannot start a local node: {e}");
            return ExitCode::FAILURE;
        }
    };
    let r = node.try_ping(&a.node, Duration::from_secs(a.timeout)).await;
    node.shutdown().await;
    match r {
        Ok(()) => {
            println!("pong");
            ExitCode::SUCCESS
        }
        Err(e) => {
            println!("pang");
            eprintln!("erlnode ping {}: {e}", a.node);
            ExitCode::FAILURE
        }
    }
}
