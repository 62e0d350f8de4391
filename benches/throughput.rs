//! End-to-end one-way throughput, measured in one run on one machine:
//! BEAM -> BEAM (the baseline), BEAM -> Rust, Rust -> BEAM and
//! Rust -> Rust (two erlnode nodes in this process, over loopback TCP
//! like the rest), for small messages and for large ones (64 KB, 1 MB,
//! 64 MB binaries), next to raw loopback TCP. Run with `make bench` or
//! `cargo bench --bench throughput` (`BENCH_QUICK=1`: fewer messages).
//!
//! Each direction sends N tuples `{msg, I, <<Size bytes>>}` from one
//! sender to a registered sink on another node; the sink counts them and
//! answers `done`; the rate is N over the time from the first send to
//! `done`. The directions are interleaved within each round; three
//! rounds; the median is reported, with the spread (min..max).
//!
//! Three rows are A/Bs of a change, in the same run: "Rust -> BEAM, atoms
//! as text" (a sender without the send-side atom cache); for messages of
//! 4 MiB or more, "Rust -> Rust, fresh small pages" (a receiver whose
//! large buffers neither ask for transparent huge pages nor come from its
//! cache of freed receive buffers); and for small messages "Rust -> BEAM,
//! on-heap sink" (the BEAM sink with the default on-heap message queue,
//! as before the sink moved its queue off the heap: common/sink.rs says
//! why).

#[path = "common/sink.rs"]
mod sink;
#[path = "common/summary.rs"]
mod summary;
#[path = "../interop-tests/support/mod.rs"]
#[allow(dead_code)]
mod support;

use erlnode::{Node, Pid, Term};
use sink::{median, own_cpu_ms, rate, rust_sink, ERL_SINK};
use std::time::{Duration, Instant};
use summary::{pick, summary};
use support::{BeamNode, Epmd};

const ROUNDS: usize = 3;
const DIRECTIONS: [&str; 7] = [
    "BEAM -> BEAM",
    "BEAM -> Rust",
    "Rust -> BEAM",
    "Rust -> Rust",
    "Rust -> BEAM, atoms as text",
    "Rust -> Rust, fresh small pages",
    "Rust -> BEAM, on-heap sink",
];

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    rt.block_on(run());
}

/// N messages of `size` bytes from `from` to `sink` (a `bench_sink`,
/// already started), messages/s. Large messages wait on the link's busy
/// limit (`send_async`), as a BEAM sender is suspended on a busy
/// distribution port; small ones are sent without waiting.
/// `BlastCpu` on BEAM node `from` towards `bench_sink` on `to`:
/// (microseconds, sending node's CPU milliseconds).
async fn blast_cpu(from: &BeamNode, to: &str, n: i64, size: usize) -> (i64, i64) {
    let t = from.eval(&format!("BlastCpu({{bench_sink, '{to}'}}, {n}, {size})")).await;
    match t.as_tuple() {
        Some([Term::Int(us), Term::Int(ms)]) => (*us, *ms),
        _ => panic!("BlastCpu: {t:?}"),
    }
}

async fn rust_blast(from: &Node, sink: &Pid, n: i64, size: usize) -> f64 {
    let mut mb = from.spawn_mailbox();
    mb.send(sink, Term::tuple([Term::atom("start"), Term::Pid(mb.pid().clone())]));
    let payload = Term::binary(vec![b'p'; size]);
    let t0 = Instant::now();
    for i in (1..=n).rev() {
        let msg = Term::tuple([Term::atom("msg"), Term::Int(i), payload.clone()]);
        if size >= 64 * 1024 {
            mb.send_async(sink, msg).await.unwrap();
        } else {
            mb.send(sink, msg);
        }
    }
    let done = mb.recv_timeout(Duration::from_secs(300)).await.unwrap();
    assert!(done.is_atom("done"));
    n as f64 / t0.elapsed().as_secs_f64()
}

async fn run() {
    support::require_erlang();
    let epmd = Epmd::start().await;
    let cookie = support::unique("bench");
    let rust = support::rust_node_builder("rust", &cookie, epmd.port()).start().await.unwrap();
    let rust2 = support::rust_node_builder("rust2", &cookie, epmd.port()).start().await.unwrap();
    // The same sender without the send-side atom cache (every atom as
    // text, as before issue 16): an A/B of that change in the same run.
    let rust_text = support::rust_node_builder("rust_text", &cookie, epmd.port()).send_atom_cache(false).start().await.unwrap();
    // A receiver without transparent huge pages and without its cache of
    // freed receive buffers, as before issue 16's last two receive
    // changes: the A/B of both.
    let rust_small =
        support::rust_node_builder("rust_small", &cookie, epmd.port()).huge_pages(false).receive_buffer_cache(0).start().await.unwrap();
    let a = BeamNode::builder().prefix("a").cookie(&cookie).epmd_port(epmd.port()).start().await;
    let b = BeamNode::builder().prefix("b").cookie(&cookie).epmd_port(epmd.port()).start().await;
    for n in [&a, &b] {
        n.eval(ERL_SINK).await;
    }
    assert_eq!(a.eval(&format!("net_adm:ping('{}')", b.name())).await, Term::atom("pong"));
    assert!(rust.ping(a.name()).await && rust.ping(b.name()).await && rust.ping(rust2.name().as_str()).await && rust_text.ping(b.name()).await);
    assert!(rust.ping(rust_small.name().as_str()).await);

    // (label, payload bytes, messages per round)
    let sizes: Vec<(&str, usize, i64)> = vec![
        ("small (7 B)", 7, pick(200_000, 50_000)),
        ("64 KB", 64 << 10, pick(2_000, 400)),
        ("1 MB", 1 << 20, pick(128, 32)),
        ("64 MB", 64 << 20, pick(4, 2)),
    ];
    // For profiling: THROUGHPUT_ONLY=<payload label> (e.g. "64 MB").
    let only = std::env::var("THROUGHPUT_ONLY").ok();
    // For profiling: THROUGHPUT_SCALE=<k> sends k times as many messages
    // per round (short rounds are dominated by the TCP window's ramp).
    let scale: i64 = std::env::var("THROUGHPUT_SCALE").ok().and_then(|s| s.parse().ok()).unwrap_or(1);
    let sizes: Vec<_> = sizes.into_iter().filter(|(l, _, _)| only.as_deref().is_none_or(|o| *l == o)).map(|(l, s, n)| (l, s, n * scale)).collect();
    let loopback = summary::raw_loopback_bandwidth(pick(256, 64) << 20).await;
    println!("raw loopback TCP: {:.0} MB/s", loopback / 1e6);
    println!();
    println!("| payload | direction | msgs/s (median of {ROUNDS}) | MB/s | spread (msgs/s) | ratio to BEAM -> BEAM |");
    println!("|---|---|---|---|---|---|");
    for (label, size, n) in sizes {
        let mut rates: Vec<Vec<f64>> = vec![vec![]; DIRECTIONS.len()];
        // Sender's and receiver's CPU per wall second (1.0 = one core
        // busy throughout) for BEAM -> BEAM, BEAM -> Rust and Rust ->
        // BEAM: which side bounds those rows.
        let mut cpu: [Vec<(f64, f64)>; 3] = [vec![], vec![], vec![]];
        for round in 0..ROUNDS {
            // BEAM -> BEAM
            b.eval(&format!("StartSink({n})")).await;
            let rx0 = b.eval("Cpu()").await.as_int().unwrap();
            let (us, tx_ms) = blast_cpu(&a, b.name(), n, size).await;
            let rx_ms = b.eval("Cpu()").await.as_int().unwrap() - rx0;
            rates[0].push(rate(n, us));
            cpu[0].push((tx_ms as f64 * 1e3 / us as f64, rx_ms as f64 * 1e3 / us as f64));
            // BEAM -> Rust
            let sink = rust_sink(&rust, n);
            let rx0 = own_cpu_ms();
            let (us, tx_ms) = blast_cpu(&a, rust.name().as_str(), n, size).await;
            let rx_ms = own_cpu_ms() - rx0;
            rates[1].push(rate(n, us));
            cpu[1].push((tx_ms as f64 * 1e3 / us as f64, rx_ms * 1e3 / us as f64));
            drop(sink);
            // Rust -> BEAM
            b.eval(&format!("StartSink({n})")).await;
            let Term::Pid(sink) = b.eval("whereis(bench_sink)").await else { panic!("no bench_sink on b") };
            let (rx0, tx0, t0) = (b.eval("Cpu()").await.as_int().unwrap(), own_cpu_ms(), Instant::now());
            rates[2].push(rust_blast(&rust, &sink, n, size).await);
            let wall_ms = t0.elapsed().as_secs_f64() * 1e3;
            let rx_ms = b.eval("Cpu()").await.as_int().unwrap() - rx0;
            cpu[2].push(((own_cpu_ms() - tx0) / wall_ms, rx_ms as f64 / wall_ms));
            // Rust -> Rust
            let done = rust_sink(&rust2, n);
            let sink = rust2.whereis("bench_sink").expect("bench_sink on rust2");
            rates[3].push(rust_blast(&rust, &sink, n, size).await);
            drop(done);
            // Rust -> BEAM, atoms as text
            b.eval(&format!("StartSink({n})")).await;
            let Term::Pid(sink) = b.eval("whereis(bench_sink)").await else { panic!("no bench_sink on b") };
            rates[4].push(rust_blast(&rust_text, &sink, n, size).await);
            // Rust -> BEAM, the sink's queue on its heap (small messages only)
            if size <= 1024 {
                b.eval(&format!("StartSinkOnHeap({n})")).await;
                let Term::Pid(sink) = b.eval("whereis(bench_sink)").await else { panic!("no bench_sink on b") };
                rates[6].push(rust_blast(&rust, &sink, n, size).await);
            }
            // Rust -> Rust, the receiver on fresh small pages (large messages only)
            if size >= erlnode::connection::huge_pages::MIN_LEN {
                let done = rust_sink(&rust_small, n);
                let sink = rust_small.whereis("bench_sink").expect("bench_sink on rust_small");
                rates[5].push(rust_blast(&rust, &sink, n, size).await);
                drop(done);
            }
            eprintln!(
                "{label} round {round}: {}",
                DIRECTIONS.iter().zip(&rates).filter_map(|(d, r)| Some(format!("{d} {:.0}/s", r.get(round)?))).collect::<Vec<_>>().join(", ")
            );
        }
        for (i, d) in DIRECTIONS.iter().take(3).enumerate() {
            let tx = median(cpu[i].iter().map(|c| c.0).collect());
            let rx = median(cpu[i].iter().map(|c| c.1).collect());
            println!("{label}, {d}: sending node {tx:.2} cores, receiving node {rx:.2} cores (CPU per wall second, median)");
        }
        let base = median(rates[0].clone());
        for (d, r) in DIRECTIONS.iter().zip(&rates).filter(|(_, r)| !r.is_empty()) {
            let m = median(r.clone());
            let (lo, hi) = r.iter().fold((f64::MAX, 0f64), |(lo, hi), x| (lo.min(*x), hi.max(*x)));
            println!("| {label} | {d} | {m:.0} | {:.1} | {lo:.0}..{hi:.0} | {:.2} |", m * size as f64 / 1e6, m / base);
        }
        let ratio = |i: usize| median(rates[i].clone()) / base;
        let fmt = |i: usize| {
            let m = median(rates[i].clone());
            if size > 1024 { format!("{:.0} MB/s", m * size as f64 / 1e6) } else { format!("{m:.0} msgs/s") }
        };
        if size <= 1024 {
            summary("throughput", "one-way small, BEAM -> Rust", &fmt(1), &fmt(0), Some(ratio(1)), ">= 1.5x");
            summary("throughput", "one-way small, Rust -> BEAM", &fmt(2), &fmt(0), Some(ratio(2)), ">= 1.2x");
            summary("throughput", "one-way small, Rust -> Rust", &fmt(3), &fmt(0), Some(ratio(3)), ">= 3x");
            summary("throughput", "one-way small, Rust -> BEAM, atoms as text (before)", &fmt(4), &fmt(0), Some(ratio(4)), "-");
            summary("throughput", "one-way small, Rust -> BEAM, on-heap sink (before)", &fmt(6), &fmt(0), Some(ratio(6)), "-");
        } else {
            summary("throughput", &format!("{label} messages, Rust -> Rust"), &fmt(3), &fmt(0), Some(ratio(3)), ">= 1x");
            summary("throughput", &format!("{label} messages, BEAM -> Rust"), &fmt(1), &fmt(0), Some(ratio(1)), ">= 1x");
            summary("throughput", &format!("{label} messages, Rust -> BEAM"), &fmt(2), &fmt(0), Some(ratio(2)), ">= 1x");
            let bytes = median(rates[3].clone()) * size as f64;
            summary(
                "throughput",
                &format!("{label} messages, Rust -> Rust vs loopback TCP"),
                &format!("{:.0} MB/s", bytes / 1e6),
                &format!("{:.0} MB/s", loopback / 1e6),
                Some(bytes / loopback),
                ">= 0.5x",
            );
            if !rates[5].is_empty() {
                summary(
                    "throughput",
                    &format!("{label} messages, Rust -> Rust, receiver on fresh small pages (before)"),
                    &fmt(5),
                    &fmt(0),
                    Some(ratio(5)),
                    "-",
                );
            }
        }
    }
    rust.shutdown().await;
    rust2.shutdown().await;
    rust_text.shutdown().await;
    rust_small.shutdown().await;
}
