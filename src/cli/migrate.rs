//! `erlnode migrate` and `erlnode rebalance`: operator commands that ask
//! a running node's migration manager to move processes.

use super::NodeOpts;
use crate::migration::messages::{Mode, Request};
use crate::migration::call_manager;
use crate::term::{Atom, Term};
use clap::Args;
use std::process::ExitCode;
use std::time::Duration;

#[derive(Args, Debug)]
pub struct MigrateArgs {
    /// The global name of the process to move.
    pub name: String,
    /// The node to move it to.
    #[arg(long)]
    pub to: String,
    /// A node of the cluster to ask (it finds the host). Default: the --to node.
    #[arg(long)]
    pub via: Option<String>,
    /// ColdSwap: pause and capture the state before starting the target.
    #[arg(long)]
    pub cold: bool,
    /// Seconds to wait for the result.
    #[arg(long, default_value_t = 60)]
    pub timeout: u64,
    #[command(flatten)]
    pub opts: NodeOpts,
}

#[derive(Args, Debug)]
pub struct RebalanceArgs {
    /// The migratable type to even out (e.g. account).
    #[arg(default_value = "account")]
    pub type_name: String,
    /// An erlnode node of the cluster to ask.
    #[arg(long)]
    pub via: String,
    #[arg(long, default_value_t = 600)]
    pub timeout: u64,
    #[command(flatten)]
    pub opts: NodeOpts,
}

async fn ask(via: &str, opts: &NodeOpts, request: Request, timeout: u64) -> Result<Term, String> {
    let host = via.split_once('@').map(|(_, h)| h.to_string()).unwrap_or_else(crate::node::names::short_hostname);
    let name = format!("erlnode_ctl_{}@{}", std::process::id(), host);
    let node = opts.apply(crate::Node::builder(name)).embedded_epmd(false).publish(false).start().await.map_err(|e| e.to_string())?;
    let r = call_manager(&node, via, &request, Duration::from_secs(timeout)).await.map_err(|e| e.to_string());
    node.shutdown().await;
    r
}

pub async fn migrate(a: MigrateArgs) -> ExitCode {
    let via = a.via.clone().unwrap_or_else(|| a.to.clone());
    let mode = if a.cold { Mode::Cold } else { Mode::Hot };
    let req = Request::Migrate { name: Atom::new(&a.name), target: Atom::new(&a.to), mode };
    let started = std::time::Instant::now();
    match ask(&via, &a.opts, req, a.timeout).await {
        Ok(reply) => match reply.as_tuple() {
            Some([ok, Term::Pid(p)]) if ok.is_atom("ok") => {
                println!("{} moved to {} as {} in {:.1} ms", a.name, p.node, p, started.elapsed().as_secs_f64() * 1e3);
                ExitCode::SUCCESS
            }
            _ => {
                eprintln!("erlnode migrate {}: {reply:?}", a.name);
                ExitCode::FAILURE
            }
        },
        Err(e) => {
            eprintln!("erlnode migrate {}: {e}", a.name);
            ExitCode::FAILURE
        }
    }
}

pub async fn rebalance(a: RebalanceArgs) -> ExitCode {
    let req = Request::Rebalance { type_name: a.type_name.clone() };
    match ask(&a.via, &a.opts, req, a.timeout).await {
        Ok(reply) => match reply.as_tuple() {
            Some([ok, Term::Int(n)]) if ok.is_atom("ok") => {
                println!("rebalanced {}: {n} processes moved", a.type_name);
                ExitCode::SUCCESS
            }
            _ => {
                eprintln!("erlnode rebalance: {reply:?}");
                ExitCode::FAILURE
            }
        },
        Err(e) => {
            eprintln!("erlnode rebalance: {e}");
            ExitCode::FAILURE
        }
    }
}
