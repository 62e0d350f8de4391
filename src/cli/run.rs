use super::NodeOpts;
use crate::NodeEvent;
use clap::Args;
use std::process::ExitCode;

#[derive(Args, Debug)]
pub struct RunArgs {
    /// Node name: name@host (long) or name (short; this host's name is appended).
    #[arg(long)]
    pub name: String,
    /// Connect to these nodes at start and keep them connected: a lost
    /// link is redialled, failed attempts retried with backoff (250 ms
    /// doubling to 30 s) (repeatable).
    #[arg(long = "connect", value_name = "NODE")]
    pub connect: Vec<String>,
    /// TCP port for incoming distribution connections (0: any free port).
    #[arg(long, default_value_t = 0)]
    pub listen_port: u16,
    /// Address the distribution listener binds, like the BEAM's
    /// inet_dist_use_interface (0.0.0.0: every interface).
    #[arg(long, value_name = "IP", default_value = "0.0.0.0")]
    pub listen_address: std::net::IpAddr,
    /// Lowest port to listen on, like inet_dist_listen_min: the first free
    /// port from here up to --inet-dist-listen-max is used.
    #[arg(long, value_name = "PORT", requires = "inet_dist_listen_max")]
    pub inet_dist_listen_min: Option<u16>,
    /// Highest port to listen on, like inet_dist_listen_max.
    #[arg(long, value_name = "PORT", requires = "inet_dist_listen_min")]
    pub inet_dist_listen_max: Option<u16>,
    /// Incoming handshakes that may run at once; more connections are
    /// closed at once until one finishes.
    #[arg(long, value_name = "N", default_value_t = 256)]
    pub max_handshakes: usize,
    /// Also run an echo process (like erlnode_echo) registered with
    /// `global` under the atom NAME: GenServer.call({:global, :NAME}, msg)
    /// replies {:echo, msg} from any node of the cluster.
    #[arg(long = "register-echo", value_name = "NAME")]
    pub register_echo: Option<String>,
    /// Don't run the migration manager (erlnode_migration). With it, this
    /// node hosts the example type "account" and the bench type
    /// "erlnode_bench" (`erlnode bench`), takes processes moved to it,
    /// and on SIGTERM/SIGINT first moves every process it hosts to the
    /// remaining nodes (graceful leave).
    #[arg(long)]
    pub no_migration: bool,
    /// Don't move processes here when this node becomes their owner on the
    /// placement ring (by default a joining node takes its share).
    #[arg(long)]
    pub no_rebalance_on_join: bool,
    /// How the placement ring hashes (OTP 26 changed `term_to_binary`'s
    /// atoms): `auto` follows the Elixir nodes' release; pin `otp25` or
    /// `otp26` on every node of a cluster that mixes OTP releases
    /// (docs/otp-releases.md).
    #[arg(long, value_name = "ENCODING", default_value = "auto", value_parser = parse_ring_encoding)]
    pub ring_encoding: RingEncodingArg,
    /// Refuse the liveness checks BEAM libraries make of this node's pids
    /// (`Process.alive?/1`, `erlang:is_process_alive/1` over erpc/rpc),
    /// which are answered by default (docs/horde.md).
    #[arg(long)]
    pub no_liveness_checks: bool,
    /// Keep the state of each hosted account on N other nodes hosting
    /// accounts (the next owners on the ring): a node killed without a
    /// graceful leave loses no acknowledged deposit, and its accounts
    /// restart from their replicas (docs/replicas.md). With
    /// --horde-supervisor or --processhub, the accounts Horde or
    /// ProcessHub places here keep replicas too, and the library's
    /// restart of a dead member's account starts from its latest replica.
    #[arg(long, value_name = "N", default_value_t = 0, conflicts_with = "no_migration")]
    pub replicas: usize,
    /// With --replicas: `sync` (a reply waits for the replicas) or
    /// `async` (bounded lag, see docs/replicas.md).
    #[arg(long, value_name = "MODE", default_value = "sync")]
    pub replica_mode: crate::migration::ReplicaMode,
    /// Start an account (the example migratable process) registered in
    /// global under NAME (repeatable).
    #[arg(long = "start-account", value_name = "NAME")]
    pub start_account: Vec<String>,
    /// Join this node's erlnode_echo process to GROUP (an atom) in the pg
    /// scope SCOPE (repeatable): BEAM nodes see it in
    /// :pg.get_members(SCOPE, GROUP), and GenServer.call(pid, x) on it
    /// replies {:echo, x}.
    #[arg(long = "pg-join", value_name = "SCOPE/GROUP", value_parser = parse_pg_join)]
    pub pg_join: Vec<(String, String)>,
    /// Be a member of the Horde.Registry NAME (as Elixir names it, e.g.
    /// MyApp.Registry; members: :auto) with a DeltaCrdt peer of its own
    /// (repeatable; docs/horde.md).
    #[arg(long = "horde-registry", value_name = "NAME")]
    pub horde_registry: Vec<String>,
    /// Register an echo process under KEY (an Elixir string) in the
    /// Horde.Registry NAME (repeatable; NAME joins as with
    /// --horde-registry): {:via, Horde.Registry, {NAME, KEY}} calls reply
    /// {:echo, msg}.
    #[arg(long = "register-echo-horde", value_name = "NAME/KEY", value_parser = parse_pg_join)]
    pub register_echo_horde: Vec<(String, String)>,
    /// Be a member of the Horde.DynamicSupervisor NAME (members: :auto):
    /// the children Horde's ring gives this node run here as the Rust
    /// types named with --horde-child; on SIGTERM/SIGINT they are handed
    /// back to the other members (docs/horde.md).
    #[arg(long = "horde-supervisor", value_name = "NAME")]
    pub horde_supervisor: Option<String>,
    /// MODULE=TYPE: supervisor children started with `{MODULE, :start_link,
    /// [args]}` run as the example Rust type TYPE (`counter` or `account`)
    /// (repeatable; default `Erlnode.Examples.Account=account`).
    #[arg(long = "horde-child", value_name = "MODULE=TYPE", requires = "horde_supervisor", value_parser = parse_hub_child)]
    pub horde_child: Vec<(String, String)>,
    /// The supervisor's distribution strategy, as the Elixir members set
    /// it: `uniform` (Horde.UniformDistribution) or `quorum`
    /// (Horde.UniformQuorumDistribution).
    #[arg(long = "horde-distribution", value_name = "STRATEGY", default_value = "uniform", requires = "horde_supervisor", value_parser = parse_distribution)]
    pub horde_distribution: crate::horde::supervisor::Distribution,
    /// The supervisor's process_redistribution, as the Elixir members set
    /// it: `passive` or `active`.
    #[arg(long = "horde-redistribution", value_name = "MODE", default_value = "passive", requires = "horde_supervisor", value_parser = parse_redistribution)]
    pub horde_redistribution: crate::horde::Redistribution,
    /// Register each supervisor child whose start argument is a map with a
    /// `name` in the Horde.Registry REG under that name (REG joins as with
    /// --horde-registry), as an Elixir child started with `name: {:via,
    /// Horde.Registry, {REG, name}}`.
    #[arg(long = "horde-register-in", value_name = "REG", requires = "horde_supervisor")]
    pub horde_register_in: Option<String>,
    /// State handoff for the supervisor's children whose start argument is
    /// a map with a `name`: when Horde moves one, its state goes to the
    /// process that replaces it, Elixir (`use Erlnode.Horde`) or Rust.
    #[arg(long = "horde-handoff", requires = "horde_supervisor")]
    pub horde_handoff: bool,
    /// Join the Phoenix.PubSub server SERVER (as Elixir names it, e.g.
    /// MyApp.PubSub) of the cluster; with --subscribe, tail a topic from
    /// the terminal.
    #[arg(long, value_name = "SERVER")]
    pub pubsub: Option<String>,
    /// Log every message broadcast on TOPIC of the --pubsub server
    /// (repeatable): tail a topic from the terminal.
    #[arg(long, value_name = "TOPIC", requires = "pubsub")]
    pub subscribe: Vec<String>,
    /// When no EPMD answers on the EPMD port, serve it inside this process
    /// (it stops with the node) instead of starting an `erlnode epmd`
    /// daemon that outlives the node, as `erl` starts `epmd -daemon`.
    #[arg(long)]
    pub epmd_in_process: bool,
    /// Join the ProcessHub (0.4.1-beta) hub HUB_ID as a full member: its
    /// children whose module is given with --processhub-child run here as
    /// Rust state machines; on SIGTERM/SIGINT they go back, with their
    /// state, to the other members (docs/processhub.md).
    #[arg(long, value_name = "HUB_ID")]
    pub processhub: Option<String>,
    /// MODULE=TYPE: children started with `{MODULE, :start_link, [args]}`
    /// run as the example Rust type TYPE (`counter` or `account`)
    /// (repeatable; default `Erlnode.Examples.Counter=counter`).
    #[arg(long = "processhub-child", value_name = "MODULE=TYPE", requires = "processhub", value_parser = parse_hub_child)]
    pub processhub_child: Vec<(String, String)>,
    /// The hub migrates without state handover (ColdSwap, or HotSwap with
    /// handover: false): children leave this node without their state.
    #[arg(long, requires = "processhub")]
    pub processhub_no_handover: bool,
    #[command(flatten)]
    pub opts: NodeOpts,
}

/// `--ring-encoding`: `None` is `auto`.
#[derive(Debug, Clone, Copy)]
pub struct RingEncodingArg(pub Option<crate::migration::RingEncoding>);

fn parse_ring_encoding(s: &str) -> Result<RingEncodingArg, String> {
    match s {
        "auto" => Ok(RingEncodingArg(None)),
        other => crate::migration::RingEncoding::from_name(other)
            .map(|e| RingEncodingArg(Some(e)))
            .ok_or_else(|| format!("`{other}`: expected auto, otp25 or otp26")),
    }
}

fn parse_hub_child(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((m, t)) if !m.is_empty() && (t == "counter" || t == "account") => Ok((m.to_string(), t.to_string())),
        _ => Err(format!("expected MODULE=counter or MODULE=account, got {s:?}")),
    }
}

/// `--processhub`: joins the hub with the example types.
async fn join_hub(
    node: &crate::Node,
    hub_id: &str,
    children: &[(String, String)],
    ring: Option<crate::migration::RingEncoding>,
    handover: bool,
    replicas: Option<&crate::migration::Migration>,
) -> Result<crate::processhub::Hub, crate::processhub::HubError> {
    use crate::examples::{account::Account, counter::Counter};
    let mut b = node.processhub(hub_id).config(crate::processhub::HubConfig { ring_encoding: ring, handover, ..Default::default() });
    if let Some(m) = replicas {
        b = b.replicas(m);
    }
    let default = [("Erlnode.Examples.Counter".to_string(), "counter".to_string())];
    for (module, ty) in if children.is_empty() { &default[..] } else { children } {
        b = match ty.as_str() {
            "account" => b.child::<Account>(module),
            _ => b.child::<Counter>(module),
        };
    }
    b.join().await
}

fn parse_distribution(s: &str) -> Result<crate::horde::supervisor::Distribution, String> {
    use crate::horde::supervisor::Distribution;
    match s {
        "uniform" => Ok(Distribution::Uniform),
        "quorum" => Ok(Distribution::UniformQuorum),
        other => Err(format!("`{other}`: expected uniform or quorum")),
    }
}

fn parse_redistribution(s: &str) -> Result<crate::horde::Redistribution, String> {
    match s {
        "passive" => Ok(crate::horde::Redistribution::Passive),
        "active" => Ok(crate::horde::Redistribution::Active),
        other => Err(format!("`{other}`: expected passive or active")),
    }
}

/// `A/B` (`--pg-join SCOPE/GROUP`, `--register-echo-horde NAME/KEY`).
fn parse_pg_join(s: &str) -> Result<(String, String), String> {
    match s.split_once('/') {
        Some((scope, group)) if !scope.is_empty() && !group.is_empty() => Ok((scope.to_string(), group.to_string())),
        _ => Err(format!("expected A/B (SCOPE/GROUP or NAME/KEY), got {s:?}")),
    }
}

pub async fn run(a: RunArgs) -> ExitCode {
    if !a.opts.no_embedded_epmd && !a.epmd_in_process {
        let addresses = a.opts.epmd_address.as_ref().map(|x| x.0.clone()).unwrap_or_default();
        match super::epmd::start_daemon(a.opts.epmd_port, &addresses, None).await {
            Ok(super::epmd::Daemon::Started(pid)) => {
                tracing::info!(pid, port = a.opts.epmd_port, "no EPMD was running: started an EPMD daemon (it outlives this node)")
            }
            Ok(super::epmd::Daemon::AlreadyRunning) => {}
            // ensure_epmd then serves it in-process, as before.
            Err(e) => tracing::warn!(error = %e, "cannot start an EPMD daemon; serving EPMD in-process"),
        }
    }
    let builder = match a.opts.apply(crate::Node::builder(a.name.clone())) {
        Ok(b) => b,
        Err(e) => {
            tracing::error!(error = %e, "cannot start the node");
            return ExitCode::FAILURE;
        }
    };
    let mut builder = builder
        .listen((a.listen_address, a.listen_port).into())
        .max_handshakes(a.max_handshakes)
        .liveness_checks(!a.no_liveness_checks);
    if let (Some(min), Some(max)) = (a.inet_dist_listen_min, a.inet_dist_listen_max) {
        builder = builder.listen_port_range(min, max);
    }
    let node = match builder.start().await {
        Ok(n) => n,
        Err(e) => {
            tracing::error!(error = %e, "cannot start the node");
            return ExitCode::FAILURE;
        }
    };
    let echo = match crate::services::echo::spawn(&node, "erlnode_echo") {
        Ok(pid) => pid,
        Err(e) => {
            tracing::error!(error = %e, "cannot start erlnode_echo");
            return ExitCode::FAILURE;
        }
    };
    for (scope, group) in &a.pg_join {
        let joined = match node.pg_scope(scope) {
            Ok(s) => s.join(crate::Term::atom(group), &echo).await,
            Err(e) => Err(e),
        };
        match joined {
            Ok(()) => tracing::info!(%scope, %group, pid = %echo, "erlnode_echo joined the pg group"),
            Err(e) => {
                tracing::error!(%scope, %group, error = %e, "cannot join the pg group");
                return ExitCode::FAILURE;
            }
        }
    }
    let _pubsub = match &a.pubsub {
        None => None,
        Some(server) => match super::tail::start(&node, server, &a.subscribe).await {
            Ok(ps) => Some(ps),
            Err(e) => {
                tracing::error!(%server, error = %e, "cannot join the pubsub server");
                return ExitCode::FAILURE;
            }
        },
    };
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
            Err(e) => tracing::warn!(node = %peer, error = %e, "cannot connect; will keep trying"),
        }
        node.keep_connected(peer);
    }
    if let Some(name) = &a.register_echo {
        let pid = crate::services::echo::spawn_unregistered(&node);
        match node.global().register_name(crate::Term::atom(name), &pid).await {
            Ok(true) => tracing::info!(%name, %pid, "echo registered globally"),
            Ok(false) => {
                tracing::error!(%name, "cannot register the echo globally: the name is taken");
                return ExitCode::FAILURE;
            }
            Err(e) => {
                tracing::error!(%name, error = %e, "cannot register the echo globally");
                return ExitCode::FAILURE;
            }
        }
    }
    let mut registries = a.horde_registry.clone();
    registries.extend(a.horde_register_in.iter().cloned());
    let horde = match super::horde::start(&node, &registries, &a.register_echo_horde).await {
        Ok(regs) => regs,
        Err(e) => {
            tracing::error!(error = %e, "cannot start the Horde registry");
            return ExitCode::FAILURE;
        }
    };
    let migration = if a.no_migration {
        None
    } else {
        let cfg = crate::migration::HandoffConfig {
            rebalance_on_join: !a.no_rebalance_on_join,
            ring_encoding: a.ring_encoding.0,
            ..Default::default()
        };
        match crate::migration::Migration::start(&node, std::sync::Arc::new(node.global()), cfg) {
            Ok(m) => {
                if a.replicas > 0 {
                    m.set_replicas("account", crate::migration::ReplicaConfig { replicas: a.replicas, mode: a.replica_mode });
                }
                m.register_type::<crate::examples::account::Account>();
                // `erlnode bench` measures with throwaway processes of this
                // type; placement never moves them.
                m.register_type::<crate::examples::bench::Bench>();
                m.pin_type::<crate::examples::bench::Bench>();
                Some(m)
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot start the migration manager");
                return ExitCode::FAILURE;
            }
        }
    };
    let horde_sup = match &a.horde_supervisor {
        None => None,
        Some(name) => {
            let opts = super::horde::SupervisorOpts {
                name,
                children: &a.horde_child,
                distribution: a.horde_distribution,
                redistribution: a.horde_redistribution,
                register_in: a.horde_register_in.as_deref(),
                handoff: a.horde_handoff,
                // --replicas: the accounts Horde places keep replicas too
                replicas: if a.replicas > 0 { migration.as_ref() } else { None },
            };
            match super::horde::start_supervisor(&node, &horde, opts) {
                Ok(s) => Some(s),
                Err(e) => {
                    tracing::error!(supervisor = %name, error = %e, "cannot start the Horde supervisor member");
                    return ExitCode::FAILURE;
                }
            }
        }
    };
    for name in &a.start_account {
        let Some(m) = &migration else {
            tracing::error!("--start-account needs the migration manager");
            return ExitCode::FAILURE;
        };
        match m.start_process::<crate::examples::account::Account>(crate::Term::nil(), name).await {
            Ok(server) => tracing::info!(%name, pid = %server.pid(), "account started"),
            Err(e) => {
                tracing::error!(%name, error = %e, "cannot start the account");
                return ExitCode::FAILURE;
            }
        }
    }
    let hub = match &a.processhub {
        None => None,
        // --replicas: the accounts ProcessHub places keep replicas too
        Some(id) => match join_hub(&node, id, &a.processhub_child, a.ring_encoding.0, !a.processhub_no_handover, if a.replicas > 0 { migration.as_ref() } else { None }).await {
            Ok(h) => {
                tracing::info!(hub = %id, "joined the ProcessHub hub");
                Some(h)
            }
            Err(e) => {
                tracing::error!(hub = %id, error = %e, "cannot join the ProcessHub hub");
                return ExitCode::FAILURE;
            }
        },
    };
    tracing::info!(node = %node.name(), port = node.listen_port(), epmd_port = node.epmd_port(), embedded_epmd = node.serves_epmd(), "ready");
    super::wait_for_signal().await;
    // The registry the supervisor's leave already flushed (its children's).
    let mut flushed = None;
    if let Some(s) = &horde_sup {
        tracing::info!(supervisor = %s.name(), "leaving the Horde supervisor: handing children back to the other members");
        match s.leave(std::time::Duration::from_secs(30)).await {
            Ok(r) => {
                tracing::info!(relinquished = r.relinquished, synced = r.synced, still_running = r.still_running, registry_synced = ?r.registry_synced, "left the Horde supervisor");
                if r.registry_synced.is_some() {
                    flushed = a.horde_register_in.as_deref().map(crate::horde::elixir_name);
                }
            }
            Err(e) => tracing::warn!(error = %e, "leaving the Horde supervisor failed"),
        }
    }
    if let Some(h) = &hub {
        tracing::info!(hub = %h.hub_id(), children = h.local_children().len(), "leaving the ProcessHub hub: handing children to the other members");
        let r = h.leave().await;
        tracing::info!(handed_over = r.handed_over, forwarded = r.forwarded, stopped = r.stopped, "left the ProcessHub hub");
    }
    if let Some(m) = &migration {
        let hosted = m.hosted_count();
        if hosted > 0 {
            tracing::info!(hosted, "leaving: moving hosted processes to the remaining nodes");
            let report = m.drain().await;
            if report.failed.is_empty() {
                tracing::info!(moved = report.moved, "drain complete");
            } else {
                tracing::warn!(moved = report.moved, failed = report.failed.len(), first = ?report.failed.first(), "drain incomplete");
            }
        }
    }
    // The registries last: the leaves above stopped owners whose keys'
    // deletes must reach the other members before this node goes.
    for reg in horde.iter().filter(|r| flushed.as_ref() != Some(r.name())) {
        match reg.flush(std::time::Duration::from_secs(5)).await {
            Ok(acked) => tracing::info!(registry = %reg.name(), acked, "synced the Horde registry with the other members"),
            Err(e) => tracing::warn!(registry = %reg.name(), error = %e, "syncing the Horde registry failed"),
        }
    }
    tracing::info!("shutting down");
    node.shutdown().await;
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::migration::RingEncoding;

    #[test]
    fn ring_encoding_flag() {
        assert!(parse_ring_encoding("auto").unwrap().0.is_none());
        assert_eq!(parse_ring_encoding("otp25").unwrap().0, Some(RingEncoding::Otp25));
        assert_eq!(parse_ring_encoding("otp26").unwrap().0, Some(RingEncoding::Otp26));
        assert!(parse_ring_encoding("utf8").unwrap_err().contains("auto, otp25 or otp26"));
    }
}
