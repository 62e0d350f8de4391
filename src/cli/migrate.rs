//! `erlnode migrate` and `erlnode rebalance`: operator commands that ask
//! a running node's migration manager to move processes.

use super::client::{self, ClientError, ClientOpts};
use crate::migration::messages::{Mode, Request};
use crate::term::{Atom, Term};
use clap::Args;
use std::process::ExitCode;
use std::time::Duration;

#[derive(Args, Debug)]
pub struct MigrateArgs {
    /// The global name of the process to move (an atom, as in {:global, :NAME}).
    pub name: String,
    /// The node to move it to.
    #[arg(long, value_name = "NODE")]
    pub to: String,
    /// A node of the cluster to ask (it finds the process's host). Default: the --to node.
    #[arg(long, value_name = "NODE")]
    pub via: Option<String>,
    /// ColdSwap: pause and capture the state before starting the target
    /// (default HotSwap: the target starts first, the pause is shorter).
    #[arg(long)]
    pub cold: bool,
    /// Seconds to wait for the move to finish.
    #[arg(long, value_name = "SECONDS", default_value_t = 60)]
    pub timeout: u64,
    #[command(flatten)]
    pub opts: ClientOpts,
}

#[derive(Args, Debug)]
pub struct RebalanceArgs {
    /// The migratable type to even out, as registered on the nodes (e.g. account, counter).
    #[arg(value_name = "TYPE")]
    pub type_name: String,
    /// A node of the cluster running erlnode's migration manager, which plans and runs the moves.
    #[arg(long, value_name = "NODE")]
    pub via: String,
    /// Seconds to wait for every move to finish.
    #[arg(long, value_name = "SECONDS", default_value_t = 600)]
    pub timeout: u64,
    #[command(flatten)]
    pub opts: ClientOpts,
}

async fn ask(via: &str, opts: &ClientOpts, request: Request, timeout: u64) -> Result<Term, ClientError> {
    let node = client::connect(via, opts).await?;
    let r = client::ask(&node, via, &request, Duration::from_secs(timeout)).await;
    node.shutdown().await;
    r
}

fn fail(cmd: &str, e: ClientError) -> ExitCode {
    eprintln!("erlnode {cmd}: {e}");
    e.exit_code()
}

pub async fn migrate(a: MigrateArgs) -> ExitCode {
    let via = a.via.clone().unwrap_or_else(|| a.to.clone());
    let mode = if a.cold { Mode::Cold } else { Mode::Hot };
    let req = Request::Migrate { name: Atom::new(&a.name), target: Atom::new(&a.to), mode };
    let started = std::time::Instant::now();
    let reply = match ask(&via, &a.opts, req, a.timeout).await {
        Ok(r) => r,
        Err(e) => return fail("migrate", e),
    };
    match reply.as_tuple() {
        Some([ok, Term::Pid(p)]) if ok.is_atom("ok") => {
            println!("{} moved to {} as {} in {:.1} ms", a.name, p.node, p, started.elapsed().as_secs_f64() * 1e3);
            ExitCode::SUCCESS
        }
        Some([e, reason]) if e.is_atom("error") => fail("migrate", ClientError::from_reason(reason, &a.name)),
        _ => fail("migrate", ClientError::Failed(format!("unexpected reply {}", crate::term::serde::render::short(&reply)))),
    }
}

pub async fn rebalance(a: RebalanceArgs) -> ExitCode {
    let req = Request::Rebalance { type_name: a.type_name.clone() };
    let reply = match ask(&a.via, &a.opts, req, a.timeout).await {
        Ok(r) => r,
        Err(e) => return fail("rebalance", e),
    };
    match reply.as_tuple() {
        Some([ok, Term::Int(n)]) if ok.is_atom("ok") => {
            println!("rebalanced {}: {n} processes moved", a.type_name);
            ExitCode::SUCCESS
        }
        Some([e, reason]) if e.is_atom("error") => fail("rebalance", ClientError::from_reason(reason, &a.type_name)),
        _ => fail("rebalance", ClientError::Failed(format!("unexpected reply {}", crate::term::serde::render::short(&reply)))),
    }
}
