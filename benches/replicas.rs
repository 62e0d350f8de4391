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

#[path = "../interop-tests/support/mod.rs"]
mod support;

use erlnode::examples::account::Account;
use erlnode::migration::{HandoffConfig, Migration, ReplicaConfig, ReplicaMode};
use erlnode::process::Dest;
use erlnode::{Node, Term};
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::Epmd;

const CALLERS: usize = 8;
const CALLS: usize = 2_000;

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
    println!("{CALLERS} callers x {CALLS} synchronous deposit calls each, own account per caller; accounts on A, replicas (if any) on B");
    println!("{:<14} {:>10} {:>10} {:>10}", "replicas", "calls/s", "p50 us", "p99 us");
    let modes: [(&str, Option<ReplicaConfig>); 3] = [("none", None), ("1 sync", Some(ReplicaConfig::sync(1))), ("1 async", Some(ReplicaConfig::async_(1)))];
    for (label, cfg) in modes {
        let names: Vec<String> = (0..CALLERS).map(|i| support::unique(&format!("bacc{i}"))).collect();
        for n in &names {
            ma.start_process_with::<Account>(Term::nil(), n, Some(cfg.unwrap_or_default())).await.unwrap();
        }
        let started = Instant::now();
        let mut tasks = vec![];
        for (i, n) in names.iter().enumerate() {
            let (c, n) = (c.clone(), n.clone());
            tasks.push(tokio::spawn(async move {
                let mut mb = c.spawn_mailbox();
                let mut lat = Vec::with_capacity(CALLS);
                for seq in 1..=CALLS {
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
        let wall = started.elapsed();
        lat.sort();
        let pct = |p: usize| lat[(lat.len() * p / 100).min(lat.len() - 1)].as_micros();
        println!("{:<14} {:>10.0} {:>10} {:>10}", label, (CALLERS * CALLS) as f64 / wall.as_secs_f64(), pct(50), pct(99));
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
