//! The cost of replicas (issue 14), in one run on one machine: the same
//! call workload against accounts without replicas, with one `Sync`
//! replica and with one `Async` replica. Run with `cargo bench --bench
//! replicas`.
//!
//! Nodes (all erlnode, in this process, on loopback): A hosts the
//! accounts, B hosts the type and so keeps their replicas, C makes the
//! calls. K callers each make M synchronous deposit calls by global name
//! to their own account; calls/s is K*M over the wall time, p50/p99 over
//! every call's round trip. Memory: what B's replica store holds per
//! account (state bytes as `list` reports them) plus the fixed entry
//! overhead (docs/replicas.md, "Cost").
//!
//! Then the same workload with Elixir owners: A' and B' are Elixir nodes
//! (`erlnode_ex`), the accounts run on A' (`Erlnode.Examples.Account`),
//! B' keeps their replicas, and C (Rust) makes the same calls.

#[path = "../interop-tests/support/mod.rs"]
mod support;
#[path = "common/summary.rs"]
#[allow(dead_code)]
mod summary;

use erlnode::examples::account::Account;
use erlnode::migration::{HandoffConfig, Migration, ReplicaConfig, ReplicaMode};
use erlnode::process::Dest;
use erlnode::{Node, Term};
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::{BeamNode, Epmd};

const CALLERS: usize = 8;

/// Calls per caller (BENCH_QUICK: 500).
fn calls_each() -> usize {
    summary::pick(2_000, 500)
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    rt.block_on(run());
}

async fn member(prefix: &str, cookie: &str, epmd: u16) -> (Node, Migration) {
    let node = support::rust_node(prefix, cookie, epmd).await;
    let m = Migration::start(&node, Arc::new(node.global()), HandoffConfig { rebalance_on_join: false, ..Default::default() }).unwrap();
    m.register_type::<Account>();
    (node, m)
}

async fn run() {
    let epmd = Epmd::start().await;
    let cookie = support::unique("rbench");
    let (a, ma) = member("rba", &cookie, epmd.port()).await;
    let (b, mb) = member("rbb", &cookie, epmd.port()).await;
    let c = support::rust_node("rbc", &cookie, epmd.port()).await;
    b.connect(a.name().as_str()).await.unwrap();
    c.connect(a.name().as_str()).await.unwrap();
    c.connect(b.name().as_str()).await.unwrap();
    c.global().sync(Duration::from_secs(30)).await.unwrap();
    while !ma.members("account").contains(b.name()) {
        tokio::time::sleep(Duration::from_millis(20)).await; // bounded by the announcement
    }
    println!("{CALLERS} callers x {} synchronous deposit calls each, own account per caller; accounts on A, replicas (if any) on B", calls_each());
    println!("{:<14} {:>10} {:>10} {:>10}", "replicas", "calls/s", "p50 us", "p99 us");
    let modes: [(&str, Option<ReplicaConfig>); 3] = [("none", None), ("1 sync", Some(ReplicaConfig::sync(1))), ("1 async", Some(ReplicaConfig::async_(1)))];
    let mut rates = vec![];
    for (label, cfg) in modes {
        let names: Vec<String> = (0..CALLERS).map(|i| support::unique(&format!("bacc{i}"))).collect();
        for n in &names {
            ma.start_process_with::<Account>(Term::nil(), n, Some(cfg.unwrap_or_default())).await.unwrap();
        }
        rates.push((label, print_calls(label, calls(&c, &names).await)));
        if cfg.is_some() {
            let held = mb.replicas_held().await.unwrap();
            let ours: Vec<_> = held.iter().filter(|(n, ..)| names.iter().any(|x| x == n.as_str())).collect();
            let bytes: usize = ours.iter().map(|(.., b)| *b).sum();
            println!("{:<14} {} replicas on B, {} state bytes each (+ a fixed entry of ~208 bytes)", "", ours.len(), bytes / ours.len().max(1));
        }
        if matches!(cfg, Some(c) if c.mode == ReplicaMode::Async) {
            async_lag(&c, &mb, &names[0]).await;
        }
    }
    summarize("Rust owner", &rates);
    let rates = elixir_owners(&c, &cookie, epmd.port(), [&ma, &mb]).await;
    summarize("Elixir owner", &rates);
}

/// `make bench`'s summary: calls/s with a replica against none, same run
/// (the cost of replicas; no target).
fn summarize(owner: &str, rates: &[(&str, f64)]) {
    let none = rates[0].1;
    for (label, r) in &rates[1..] {
        summary::summary("replicas", &format!("deposit calls, {label} replica vs none, {owner}"), &format!("{r:.0} calls/s"), &format!("{none:.0} calls/s"), Some(r / none), "-");
    }
}

/// K callers on `c`, M deposit calls each to their own account by
/// global name: (calls/s, sorted latencies).
async fn calls(c: &Node, names: &[String]) -> (f64, Vec<Duration>) {
    let started = Instant::now();
    let mut tasks = vec![];
    for (i, n) in names.iter().enumerate() {
        let (c, n) = (c.clone(), n.clone());
        tasks.push(tokio::spawn(async move {
            let mut mb = c.spawn_mailbox();
            let mut lat = Vec::with_capacity(calls_each());
            for seq in 1..=calls_each() {
                let msg = Term::tuple([Term::atom("deposit"), Term::from(format!("c{i}").as_str()), Term::Int(seq as i64), Term::Int(1)]);
                let t = Instant::now();
                mb.call(Dest::Global(Term::atom(&n)), msg, Duration::from_secs(10)).await.expect("call");
                lat.push(t.elapsed());
            }
            lat
        }));
    }
    let mut lat: Vec<Duration> = vec![];
    for t in tasks {
        lat.extend(t.await.unwrap());
    }
    let rate = (names.len() * calls_each()) as f64 / started.elapsed().as_secs_f64();
    lat.sort();
    (rate, lat)
}

fn print_calls(label: &str, (rate, lat): (f64, Vec<Duration>)) -> f64 {
    let pct = |p: usize| lat[(lat.len() * p / 100).min(lat.len() - 1)].as_micros();
    println!("{:<14} {:>10.0} {:>10} {:>10}", label, rate, pct(50), pct(99));
    rate
}

/// The same workload with Elixir owners: the accounts on A' with a
/// per-process setting (`start_process(..., replicas: 1, replica_mode:
/// m)`), the calls from C. Their replicas go where the ring of the nodes
/// hosting accounts puts them: B', or the Rust nodes A and B, which host
/// the type too (each is counted).
async fn elixir_owners(c: &Node, cookie: &str, epmd: u16, rust_members: [&Migration; 2]) -> Vec<(&'static str, f64)> {
    let start = |prefix: &'static str| async move {
        let n = BeamNode::builder().prefix(prefix).cookie(cookie).epmd_port(epmd).erlnode_ex(true).start().await;
        let r = n.eval("application:load(erlnode_ex), application:set_env(erlnode_ex, rebalance_on_join, false), application:ensure_all_started(erlnode_ex)").await;
        assert_eq!(r.as_tuple().map(|t| t[0].clone()), Some(Term::atom("ok")), "erlnode_ex: {r:?}");
        n
    };
    let (ea, eb) = (start("rbea").await, start("rbeb").await);
    assert_eq!(ea.eval(&format!("net_adm:ping('{}')", eb.name())).await, Term::atom("pong"));
    c.connect(ea.name()).await.unwrap();
    c.connect(eb.name()).await.unwrap();
    c.global().sync(Duration::from_secs(30)).await.unwrap();
    let member = format!("lists:member('{}', 'Elixir.Erlnode.Migration':members(<<\"account\">>))", eb.name());
    while !ea.eval(&member).await.is_atom("true") {
        tokio::time::sleep(Duration::from_millis(20)).await; // bounded by the announcement
    }
    println!("the same with Elixir owners: accounts on Elixir node A', replicas (if any) where the ring of account hosts puts them, calls from C");
    println!("{:<14} {:>10} {:>10} {:>10}", "replicas", "calls/s", "p50 us", "p99 us");
    let mut rates = vec![];
    for (label, opts) in [("none", "[]"), ("1 sync", "[replicas: 1, replica_mode: :sync]"), ("1 async", "[replicas: 1, replica_mode: :async]")] {
        let names: Vec<String> = (0..CALLERS).map(|i| support::unique(&format!("beacc{i}"))).collect();
        for n in &names {
            let r = ea.eval_elixir(&format!("Erlnode.Migration.start_process(\"account\", %{{}}, :{n}, {opts})")).await;
            assert!(matches!(r.as_tuple(), Some([ok, _]) if ok.is_atom("ok")), "{n}: {r:?}");
        }
        c.global().sync(Duration::from_secs(30)).await.unwrap();
        while names.iter().any(|n| c.global().whereis_name(&Term::atom(n)).is_none()) {
            tokio::time::sleep(Duration::from_millis(5)).await; // bounded by global's broadcast
        }
        rates.push((label, print_calls(label, calls(c, &names).await)));
        if opts != "[]" {
            let list = names.iter().map(|n| format!(":{n}")).collect::<Vec<_>>().join(", ");
            let held = eb
                .eval_elixir(&format!("ns = [{list}]; for {{n, _, _, b}} <- Erlnode.Replica.held(), n in ns, do: b"))
                .await;
            let Term::List(bytes) = &held else { panic!("{held:?}") };
            let total: i64 = bytes.iter().filter_map(|b| b.as_int()).sum();
            let mut on_rust = 0;
            for m in rust_members {
                on_rust += m.replicas_held().await.unwrap().iter().filter(|(n, ..)| names.iter().any(|x| x == n.as_str())).count();
            }
            println!(
                "{:<14} {} replicas on B' ({} state bytes each, + the store's map entry), {on_rust} on the Rust nodes",
                "",
                bytes.len(),
                total / (bytes.len().max(1) as i64)
            );
        }
    }
    rates
}

/// `:async` mode's lag: a deposit call returns as soon as the owner has
/// handled it; the time from that return until B's replica store holds
/// the state that includes it (B's `replicas_held` polled without pause;
/// each poll is one local call). One account, nothing else running.
async fn async_lag(c: &Node, mb: &Migration, name: &str) {
    const ROUNDS: usize = 300;
    let seq_on_b = |held: &[(erlnode::Atom, u64, erlnode::Pid, usize)]| held.iter().find(|(n, ..)| n.as_str() == name).map(|(_, s, ..)| *s).unwrap_or(0);
    let mut caller = c.spawn_mailbox();
    let mut lags = Vec::with_capacity(ROUNDS);
    for seq in 1..=ROUNDS {
        let before = seq_on_b(&mb.replicas_held().await.unwrap());
        let msg = Term::tuple([Term::atom("deposit"), Term::from("lag"), Term::Int(seq as i64), Term::Int(1)]);
        caller.call(Dest::Global(Term::atom(name)), msg, Duration::from_secs(10)).await.expect("call");
        let t = Instant::now();
        while seq_on_b(&mb.replicas_held().await.unwrap()) <= before {
            tokio::task::yield_now().await;
        }
        lags.push(t.elapsed());
    }
    lags.sort();
    let pct = |p: usize| lags[(lags.len() * p / 100).min(lags.len() - 1)].as_micros();
    println!("{:<14} lag from the reply to the replica holding the state: p50 {} us, p99 {} us, max {} us ({ROUNDS} calls, one at a time)", "", pct(50), pct(99), lags[lags.len() - 1].as_micros());
}
