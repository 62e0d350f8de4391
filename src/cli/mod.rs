//! Command-line interface. Each subcommand lives in its own file.

mod bench;
mod epmd;
mod horde;
mod client;
mod migrate;
mod names;
mod ping;
mod run;
mod tail;
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
    /// joining and leaving. Hosts the diagnostic process `erlnode_echo`
    /// (optionally in pg groups), and can tail a Phoenix.PubSub topic from
    /// the terminal (--pubsub SERVER --subscribe TOPIC).
    Run(run::RunArgs),
    /// Move a live process (registered in global) to another node, with its
    /// state, its name and its queued messages.
    Migrate(migrate::MigrateArgs),
    /// Run an EPMD (port mapper) like `epmd`: in the foreground, or with
    /// --daemon in the background. Stops on SIGTERM/SIGINT, or on
    /// `epmd -kill` when no node is registered.
    Epmd(epmd::EpmdArgs),
    /// Even out the processes of a migratable type across the nodes that
    /// host it, moving from the most to the least loaded.
    Rebalance(migrate::RebalanceArgs),
    /// Show the cluster as seen from a node: its nodes, the migratable
    /// processes each hosts by type, the global names, and the
    /// migrations in flight.
    Status(status::StatusArgs),
    /// Measure the running cluster: handoff latency between two nodes
    /// (every direction, Rust or Elixir; p50/p99), call round trips and
    /// one-way throughput, next to the same between two Elixir nodes.
    Bench(bench::BenchArgs),
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
    /// Never start or serve an EPMD, even when none is running.
    #[arg(long)]
    pub no_embedded_epmd: bool,
    /// Addresses an EPMD this command starts listens on, comma-separated
    /// (loopback is always added), as epmd reads ERL_EPMD_ADDRESS.
    /// Default: every interface.
    #[arg(long, env = "ERL_EPMD_ADDRESS", value_name = "IP,...", value_parser = parse_epmd_addresses)]
    pub epmd_address: Option<EpmdAddresses>,
    /// Seconds of silence after which a peer counts as down (erl's net_ticktime).
    #[arg(long, default_value_t = 60)]
    pub net_ticktime: u64,
    /// Largest fragmented message accepted from a peer (bytes; K, M, G
    /// suffixes are powers of 1024). Default 128M.
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub max_message: Option<usize>,
    /// The most unfinished input (parts of fragmented messages, the frame
    /// being read) one link may hold; a link over it is closed. Must exceed
    /// --max-message. Default 144M.
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub link_input_share: Option<usize>,
    /// The most unfinished input all links together may hold: what peers,
    /// hostile ones included, can make this node buffer. Default 256M.
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub input_budget: Option<usize>,
    /// Bytes queued for one link's socket at which the link counts as busy
    /// and senders with backpressure wait (the BEAM's +zdbbl). Default 1M.
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub dist_buf_busy_limit: Option<usize>,
    /// Receive messages of 4 MiB or more into buffers backed by small
    /// pages only. By default such buffers ask the kernel for transparent
    /// huge pages (32 page faults for 64 MiB instead of 16,384); turn
    /// that off where huge page compaction stalls the host.
    #[arg(long)]
    pub no_huge_pages: bool,
    /// While large messages arrive on a link, how many microseconds its
    /// reader polls the empty socket again before it sleeps, as the BEAM's
    /// schedulers busy-wait (+sbwt): a little CPU for a reader that is
    /// awake when the next frame comes. At most 1000; 0 turns it off.
    /// Default 20 (measured best).
    #[arg(long, value_name = "MICROSECONDS")]
    pub busy_poll: Option<u64>,
    /// The most bytes of freed receive buffers kept for the next large
    /// messages (256K and up; at most 8 buffers; 0 keeps none). Reusing
    /// mapped memory spares each large message its page faults.
    /// Default 160M.
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub receive_buffer_cache: Option<usize>,
    #[command(flatten)]
    pub tls: TlsOpts,
}

/// The BEAM's switches for TLS distribution.
#[derive(Args, Debug, Clone, Default)]
pub struct TlsOpts {
    /// Distribution carrier, as erl's -proto_dist: inet_tcp (plain TCP,
    /// the default) or inet_tls (TLS, as OTP's inet_tls_dist; needs
    /// --ssl-dist-optfile).
    #[arg(long, value_name = "inet_tcp|inet_tls", value_parser = ["inet_tcp", "inet_tls"])]
    pub proto_dist: Option<String>,
    /// The ssl_dist option file the BEAM nodes read (erl's
    /// -ssl_dist_optfile): [{server, [...]}, {client, [...]}].
    #[arg(long, value_name = "FILE")]
    pub ssl_dist_optfile: Option<std::path::PathBuf>,
}

impl TlsOpts {
    /// The TLS configuration these switches ask for (`None`: plain TCP).
    pub fn load(&self) -> Result<Option<crate::tls::TlsConfig>, String> {
        match (self.proto_dist.as_deref(), &self.ssl_dist_optfile) {
            (Some("inet_tls"), Some(f)) => crate::tls::TlsConfig::from_ssl_dist_optfile(f).map(Some).map_err(|e| e.to_string()),
            (Some("inet_tls"), None) => Err("--proto-dist inet_tls needs --ssl-dist-optfile FILE".into()),
            (_, Some(_)) => Err("--ssl-dist-optfile is only used with --proto-dist inet_tls".into()),
            _ => Ok(None),
        }
    }

    /// Adds the TLS configuration to a builder.
    pub fn apply(&self, b: crate::NodeBuilder) -> Result<crate::NodeBuilder, String> {
        Ok(match self.load()? {
            Some(t) => b.tls(t),
            None => b,
        })
    }
}

/// The IP addresses of `--epmd-address` / `ERL_EPMD_ADDRESS`.
#[derive(Debug, Clone)]
pub struct EpmdAddresses(pub Vec<std::net::IpAddr>);

fn parse_epmd_addresses(s: &str) -> Result<EpmdAddresses, String> {
    crate::epmd::parse_addresses(s).map(EpmdAddresses)
}

/// `123`, `64K`, `128M`, `2G` (also `KiB`/`MiB`/`GiB`, any case): bytes.
pub fn parse_size(s: &str) -> Result<usize, String> {
    let t = s.trim();
    let digits = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(digits);
    let n: usize = num.parse().map_err(|_| format!("{s:?} is not a size (e.g. 64M)"))?;
    let mult: usize = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        other => return Err(format!("unknown size unit {other:?} in {s:?} (use K, M or G)")),
    };
    n.checked_mul(mult).ok_or_else(|| format!("{s:?} is too large"))
}

impl NodeOpts {
    fn apply(&self, b: crate::NodeBuilder) -> Result<crate::NodeBuilder, String> {
        let mut b = self
            .tls
            .apply(b)?
            .epmd_port(self.epmd_port)
            .embedded_epmd(!self.no_embedded_epmd)
            .net_ticktime(std::time::Duration::from_secs(self.net_ticktime.max(1)));
        if let Some(c) = &self.cookie {
            b = b.cookie(c.clone());
        }
        if let Some(a) = &self.epmd_address {
            b = b.epmd_addresses(a.0.clone());
        }
        if let Some(n) = self.max_message {
            b = b.max_message(n);
        }
        if let Some(n) = self.link_input_share {
            b = b.link_input_share(n);
        }
        if let Some(n) = self.input_budget {
            b = b.input_budget(n);
        }
        if let Some(n) = self.dist_buf_busy_limit {
            b = b.dist_buf_busy_limit(n);
        }
        if self.no_huge_pages {
            b = b.huge_pages(false);
        }
        if let Some(n) = self.receive_buffer_cache {
            b = b.receive_buffer_cache(n);
        }
        if let Some(us) = self.busy_poll {
            b = b.busy_poll(std::time::Duration::from_micros(us));
        }
        Ok(b)
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
        matches!(self.command, Command::Ping(_) | Command::Migrate(_) | Command::Rebalance(_) | Command::Status(_) | Command::Bench(_))
    }
}

pub async fn main(cli: Cli) -> ExitCode {
    match cli.command {
        Command::Ping(a) => ping::run(a).await,
        Command::Names(a) => names::run(a).await,
        Command::Run(a) => run::run(a).await,
        Command::Epmd(a) => epmd::run(a).await,
        Command::Migrate(a) => migrate::migrate(a).await,
        Command::Rebalance(a) => migrate::rebalance(a).await,
        Command::Status(a) => status::status(a).await,
        Command::Bench(a) => bench::run(a).await,
    }
}

/// Waits for SIGINT or SIGTERM.
pub(crate) async fn wait_for_signal() {
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

#[cfg(test)]
mod tests {
    #[test]
    fn sizes_parse_with_binary_units() {
        assert_eq!(super::parse_size("123"), Ok(123));
        assert_eq!(super::parse_size("64K"), Ok(64 << 10));
        assert_eq!(super::parse_size("128MiB"), Ok(128 << 20));
        assert_eq!(super::parse_size("2g"), Ok(2 << 30));
        assert!(super::parse_size("12X").is_err());
        assert!(super::parse_size("M").is_err());
    }
}
