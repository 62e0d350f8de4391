//! Command-line interface. Each subcommand lives in its own file.

mod client;
mod migrate;
mod names;
mod ping;
mod run;
mod status;

use clap::{Args, Parser, Subcommand};
use std::process::ExitCode;

/// erlnode: a Rust node for Erlang/Elixir clusters.
///
/// erlnode speaks the Erlang distribution protocol. It joins a cluster as
/// a visible node, so Elixir code sees it in Node.list(), pings it and
/// calls its processes. When no EPMD runs on this machine, erlnode serves
/// EPMD itself, so no Erlang installation is needed.
#[derive(Parser, Debug)]
#[command(
    name = "erlnode",
    version,
    propagate_version = true,
    after_help = "Exit codes: 0 success; 1 the operation failed (the reason is printed, \
terms in Elixir syntax); 2 bad usage; 3 a node could not be reached (unknown, down, \
wrong cookie); 4 no process has that name; 5 no answer in time.\n\
Colours only when the output is a terminal; NO_COLOR turns them off."
)]
pub struct Cli {
    /// More log output (-v debug, -vv trace). RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Ping a node, like net_adm:ping/1: exit 0 on pong, 1 with the reason otherwise.
    Ping(ping::PingArgs),
    /// List the nodes registered with EPMD on HOST, like `epmd -names`.
    Names(names::NamesArgs),
    /// Start a node and keep it up until SIGINT or SIGTERM, logging peers
    /// joining and leaving. Hosts the diagnostic process `erlnode_echo`.
    Run(run::RunArgs),
    /// Move a live process (registered in global) to another node, with its
    /// state, its name and its queued messages.
    Migrate(migrate::MigrateArgs),
    /// Even out the processes of a migratable type across the nodes that
    /// host it, moving from the most to the least loaded.
    Rebalance(migrate::RebalanceArgs),
    /// Show the cluster as seen from a node: its nodes, the migratable
    /// processes each hosts by type, the global names, and the
    /// migrations in flight.
    Status(status::StatusArgs),
}

/// Options of the command that runs a node (`run`).
#[derive(Args, Debug, Clone)]
pub struct NodeOpts {
    /// Magic cookie shared by the cluster. Default: ~/.erlang.cookie, as erl reads it.
    #[arg(long, env = "ERLNODE_COOKIE")]
    pub cookie: Option<String>,
    /// EPMD port to register with and look peers up in.
    #[arg(long, env = "ERL_EPMD_PORT", default_value_t = 4369)]
    pub epmd_port: u16,
    /// Never serve EPMD in-process, even when none is running.
    #[arg(long)]
    pub no_embedded_epmd: bool,
    /// Seconds of silence after which a peer counts as down (erl's net_ticktime).
    #[arg(long, default_value_t = 60)]
    pub net_ticktime: u64,
}

impl NodeOpts {
    fn apply(&self, b: crate::NodeBuilder) -> crate::NodeBuilder {
        let mut b = b
            .epmd_port(self.epmd_port)
            .embedded_epmd(!self.no_embedded_epmd)
            .net_ticktime(std::time::Duration::from_secs(self.net_ticktime.max(1)));
        if let Some(c) = &self.cookie {
            b = b.cookie(c.clone());
        }
        b
    }
}

/// Logs to stderr. `quiet`: a one-shot client, whose own node's
/// comings and goings are noise: errors only unless `-v`.
pub fn init_logging(verbose: u8, quiet: bool) {
    let default = match verbose {
        0 if quiet => "error",
        0 => "info",
        1 => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(colour(std::io::stderr())).with_target(false).try_init();
}

/// Colours only on a terminal, and never with `NO_COLOR` set
/// (<https://no-color.org>).
fn colour(stream: impl std::io::IsTerminal) -> bool {
    std::env::var_os("NO_COLOR").map(|v| v.is_empty()).unwrap_or(true) && stream.is_terminal()
}

impl Cli {
    /// True for the commands that only ask a running cluster something.
    pub fn is_client(&self) -> bool {
        matches!(self.command, Command::Ping(_) | Command::Migrate(_) | Command::Rebalance(_) | Command::Status(_))
    }
}

pub async fn main(cli: Cli) -> ExitCode {
    match cli.command {
        Command::Ping(a) => ping::run(a).await,
        Command::Names(a) => names::run(a).await,
        Command::Run(a) => run::run(a).await,
        Command::Migrate(a) => migrate::migrate(a).await,
        Command::Rebalance(a) => migrate::rebalance(a).await,
        Command::Status(a) => status::status(a).await,
    }
}
