//! Memory per idle process, measured in one run on one machine: N idle
//! erlnode processes (`Node::spawn`, each waiting in `recv`) against N
//! idle BEAM processes (each waiting in `receive stop -> ok end`). Run
//! with `cargo bench --bench processes`.
//!
//! erlnode: resident set size of this process (/proc/self/statm) before
//! and after spawning N processes, delta / N; then every process is sent
//! `stop` and the bench checks `Node::process_count` returns to where it
//! was and reports the RSS left. BEAM: `erlang:memory(processes)` delta /
//! N and the beam's VmRSS delta / N, and `process_info(P, memory)` of one
//! idle process. The BEAM processes run a compiled function (a module
//! compiled from forms), not an `erl_eval` fun, so the baseline is what
//! a real BEAM process costs. Median of ROUNDS rounds.

#[path = "common/summary.rs"]
mod summary;
#[path = "../interop-tests/support/mod.rs"]
mod support;

use erlnode::{Node, Pid, Term};
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};
use support::BeamNode;

/// Counts live heap bytes and blocks (requested sizes), so the heap cost
/// per process is exact whatever the allocator caches. With
/// `PROCS_DIAG=1` it also keeps a histogram of allocation sizes made
/// while spawning.
struct Counting;
static LIVE_BYTES: AtomicI64 = AtomicI64::new(0);
static LIVE_BLOCKS: AtomicI64 = AtomicI64::new(0);
static HISTOGRAM_ON: AtomicBool = AtomicBool::new(false);
static HISTOGRAM: [AtomicU64; 4097] = [const { AtomicU64::new(0) }; 4097];

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        LIVE_BYTES.fetch_add(l.size() as i64, Relaxed);
        LIVE_BLOCKS.fetch_add(1, Relaxed);
        if HISTOGRAM_ON.load(Relaxed) {
            HISTOGRAM[l.size().min(4096)].fetch_add(1, Relaxed);
        }
        System.alloc(l)
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        LIVE_BYTES.fetch_sub(l.size() as i64, Relaxed);
        LIVE_BLOCKS.fetch_sub(1, Relaxed);
        System.dealloc(p, l)
    }
    unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
        LIVE_BYTES.fetch_add(l.size() as i64, Relaxed);
        LIVE_BLOCKS.fetch_add(1, Relaxed);
        System.alloc_zeroed(l)
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        LIVE_BYTES.fetch_add(new as i64 - l.size() as i64, Relaxed);
        System.realloc(p, l, new)
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

const N: usize = 100_000;
const ROUNDS: usize = 3;
/// Warm rounds in BENCH_QUICK mode.
const QUICK_ROUNDS: usize = 1;

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    rt.block_on(run());
}

/// Loads `bench_idle` (compiled) and defines the measuring funs. Pids are
/// not kept in a list (that would grow the measuring process's heap,
/// which `erlang:memory(processes)` counts); the processes are found
/// again with `erlang:processes()` to be stopped.
const ERL_SETUP: &str = r#"
Src = ["-module(bench_idle).", "-export([idle/0]).", "idle() -> receive stop -> ok end."],
Forms = [begin {ok, T, _} = erl_scan:string(S), {ok, F} = erl_parse:parse_form(T), F end || S <- Src],
{ok, bench_idle, Bin} = compile:forms(Forms),
{module, bench_idle} = code:load_binary(bench_idle, "bench_idle.erl", Bin),
Rss = fun() ->
    {ok, S} = file:read_file("/proc/self/status"),
    [_, Rest] = binary:split(S, <<"VmRSS:">>),
    [Kb | _] = string:lexemes(Rest, " \t\n"),
    binary_to_integer(Kb) * 1024
end,
SpawnIdle = fun(Count) ->
    garbage_collect(),
    M0 = erlang:memory(processes), R0 = Rss(), C0 = erlang:system_info(process_count),
    T0 = erlang:monotonic_time(microsecond),
    SpawnLoop = fun L(0) -> ok; L(I) -> spawn(fun bench_idle:idle/0), L(I - 1) end,
    SpawnLoop(Count),
    T1 = erlang:monotonic_time(microsecond),
    timer:sleep(200),
    M1 = erlang:memory(processes), R1 = Rss(), C1 = erlang:system_info(process_count),
    {C1 - C0, M1 - M0, R1 - R0, T1 - T0}
end,
OneIdle = fun() ->
    P = spawn(fun bench_idle:idle/0), timer:sleep(10),
    {memory, B} = process_info(P, memory), P ! stop, B
end,
StopIdle = fun() ->
    C0 = erlang:system_info(process_count),
    Idle = [P || P <- erlang:processes(), process_info(P, current_function) == {current_function, {bench_idle, idle, 0}}],
    [P ! stop || P <- Idle],
    Wait = fun W(K) -> case erlang:system_info(process_count) of C when C =< C0 - length(Idle) -> ok; _ when K > 500 -> timeout; _ -> timer:sleep(10), W(K + 1) end end,
    {Wait(0), length(Idle)}
end,
ok
"#;

struct Rust {
    heap: f64,
    blocks: f64,
    rss: f64,
    heap_left_after_stop: f64,
    rss_left_after_stop: f64,
    spawn_us: f64,
}

struct Beam {
    erlang_memory: f64,
    rss: f64,
    process_info: f64,
}

async fn run() {
    support::require_erlang();
    let node = Node::builder(format!("{}@127.0.0.1", support::unique("procs")))
        .cookie("bench")
        .publish(false)
        .embedded_epmd(false)
        .start()
        .await
        .unwrap();
    let beam = BeamNode::builder().prefix("procs").start().await;
    beam.eval(ERL_SETUP).await;

    // Round 0 is the cold one: the first 100k processes each side ever
    // had, so the RSS deltas include growing the allocators' pools. Later
    // rounds reuse those pools, so only the exact counts (heap bytes,
    // erlang:memory) are compared across rounds.
    let mut rust = vec![];
    let mut erl = vec![];
    let rounds = summary::pick(ROUNDS, QUICK_ROUNDS);
    for round in 0..=rounds {
        let r = rust_round(&node, round == 0 && std::env::var_os("PROCS_DIAG").is_some()).await;
        let b = beam_round(&beam).await;
        eprintln!(
            "round {round}: erlnode heap {:.0} B/process in {:.2} blocks, RSS {:.0} B/process, spawn {:.2} us/process, \
             after stop: heap {:.0} B/process, RSS {:.0} B/process | BEAM erlang:memory(processes) {:.0} B/process, \
             RSS {:.0} B/process, process_info(memory) {:.0} B",
            r.heap, r.blocks, r.rss, r.spawn_us, r.heap_left_after_stop, r.rss_left_after_stop, b.erlang_memory, b.rss, b.process_info
        );
        rust.push(r);
        erl.push(b);
    }
    let (cold_rust, cold_beam) = (rust.remove(0), erl.remove(0));
    let heap = median(rust.iter().map(|r| r.heap).collect());
    let left = rust.iter().map(|r| r.heap_left_after_stop).fold(cold_rust.heap_left_after_stop, f64::max);
    let bm = median(erl.iter().map(|b| b.erlang_memory).collect());
    let bi = median(erl.iter().map(|b| b.process_info).collect());
    println!("| {N} idle processes | bytes per process | ratio to BEAM (erlang:memory) |");
    println!("|---|---|---|");
    println!("| BEAM: erlang:memory(processes) delta (median of {rounds}) | {bm:.0} | 1.00 |");
    println!("| BEAM: process_info(P, memory) of one idle process | {bi:.0} | {:.2} |", bi / bm);
    println!("| BEAM: beam.smp RSS delta, cold (first {N}) | {:.0} | {:.2} |", cold_beam.rss, cold_beam.rss / bm);
    println!(
        "| erlnode: live heap delta, cold (incl. growing the process table; {:.1} allocations/process) | {:.0} | {:.2} |",
        cold_rust.blocks,
        cold_rust.heap,
        cold_rust.heap / bm
    );
    println!("| erlnode: live heap delta, warm (table already sized; median of {rounds}) | {heap:.0} | {:.2} |", heap / bm);
    println!("| erlnode: process RSS delta, cold (first {N}) | {:.0} | {:.2} |", cold_rust.rss, cold_rust.rss / bm);
    println!();
    summary::summary("processes", "memory per idle process, cold (live heap)", &format!("{:.0} B", cold_rust.heap), &format!("{bm:.0} B"), Some(bm / cold_rust.heap), "<= 1 KB");
    summary::summary("processes", "memory per idle process, warm (live heap)", &format!("{heap:.0} B"), &format!("{bm:.0} B"), Some(bm / heap), "-");
    let mut local = vec![];
    for senders in [1, 4] {
        let mut rates = vec![];
        for _ in 0..rounds {
            rates.push(local_send_rate(&node, senders, 1_000_000 / senders).await);
        }
        local.push((senders, median(rates)));
    }
    println!(
        "Stop: after `stop` to all {N}, process_count was back to its baseline every round; live heap left <= {left:.0} B/process \
         (the process table keeps its capacity); spawn took {:.1} us/process (median).",
        median(rust.iter().map(|r| r.spawn_us).collect())
    );
    for (senders, rate) in local {
        println!(
            "Local delivery (mailbox queue): {senders} sender task(s) -> 1 erlnode process, 1,000,000 messages: {rate:.0} msgs/s ({:.0} ns/msg, median of {rounds})",
            1e9 / rate
        );
    }
    node.shutdown().await;
}

async fn rust_round(node: &Node, diag: bool) -> Rust {
    let base_count = node.process_count();
    // Pre-fill the pid vector so its memory is in the baseline.
    let mut pids: Vec<Pid> = vec![Pid { node: node.name().clone(), id: 0, serial: 0, creation: 0 }; N];
    settle().await;
    let (heap0, blocks0, rss0) = (LIVE_BYTES.load(Relaxed), LIVE_BLOCKS.load(Relaxed), rss());
    HISTOGRAM_ON.store(diag, Relaxed);
    let t0 = Instant::now();
    for slot in pids.iter_mut() {
        *slot = node.spawn(|mut mb| async move {
            mb.recv().await;
            Term::atom("normal")
        });
    }
    let spawn_us = t0.elapsed().as_secs_f64() * 1e6 / N as f64;
    assert_eq!(node.process_count(), base_count + N);
    settle().await; // every task polled once and parked in recv
    HISTOGRAM_ON.store(false, Relaxed);
    let (heap1, blocks1, rss1) = (LIVE_BYTES.load(Relaxed), LIVE_BLOCKS.load(Relaxed), rss());
    if diag {
        let mut mb = node.spawn_mailbox();
        let body = async move {
            mb.recv().await;
            Term::atom("normal")
        };
        eprintln!(
            "size_of: idle body future {} B, Mailbox {} B, Term {} B, Pid {} B, tokio Sleep {} B",
            std::mem::size_of_val(&body),
            std::mem::size_of::<erlnode::Mailbox>(),
            std::mem::size_of::<Term>(),
            std::mem::size_of::<Pid>(),
            std::mem::size_of::<tokio::time::Sleep>()
        );
        drop(body);
        let mut h: Vec<(usize, u64)> = HISTOGRAM.iter().enumerate().map(|(i, c)| (i, c.load(Relaxed))).filter(|(_, c)| *c >= N as u64 / 10).collect();
        h.sort_by_key(|(size, c)| std::cmp::Reverse(*size as u64 * c));
        eprintln!("allocations while spawning (size: count per process):");
        for (size, c) in h {
            eprintln!("  {size:5} B: {:.2}", c as f64 / N as f64);
        }
    }
    for p in &pids {
        node.send(p, Term::atom("stop"));
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while node.process_count() != base_count {
        assert!(Instant::now() < deadline, "processes did not stop: {} left", node.process_count() - base_count);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    settle().await;
    let (heap2, rss2) = (LIVE_BYTES.load(Relaxed), rss());
    let per = |d: i64| d as f64 / N as f64;
    Rust {
        heap: per(heap1 - heap0),
        blocks: per(blocks1 - blocks0),
        rss: per(rss1 as i64 - rss0 as i64),
        heap_left_after_stop: per(heap2 - heap0),
        rss_left_after_stop: per(rss2 as i64 - rss0 as i64),
        spawn_us,
    }
}
/// Messages per second from `senders` tokio tasks (`Node::send`) into
/// one erlnode process's mailbox, until the process has received them all.
async fn local_send_rate(node: &Node, senders: usize, per_sender: usize) -> f64 {
    let total = senders * per_sender;
    let (done_tx, done_rx) = tokio::sync::oneshot::channel();
    let sink = node.spawn(move |mut mb| async move {
        for _ in 0..total {
            mb.recv().await;
        }
        let _ = done_tx.send(());
        Term::atom("normal")
    });
    let t0 = Instant::now();
    let tasks: Vec<_> = (0..senders)
        .map(|_| {
            let (node, sink) = (node.clone(), sink.clone());
            tokio::spawn(async move {
                for i in 0..per_sender {
                    node.send(&sink, Term::Int(i as i64));
                    if i % 1024 == 0 {
                        tokio::task::yield_now().await;
                    }
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    done_rx.await.unwrap();
    total as f64 / t0.elapsed().as_secs_f64()
}

async fn beam_round(beam: &BeamNode) -> Beam {
    let r = beam.eval(&format!("SpawnIdle({N})")).await;
    let t = r.as_tuple().unwrap_or_else(|| panic!("SpawnIdle returned {r:?}"));
    let [count, mem, rss, _us] = [0, 1, 2, 3].map(|i| t[i].as_int().unwrap() as f64);
    assert!(count >= N as f64, "BEAM spawned {count} processes");
    let one = beam.eval("OneIdle()").await.as_int().unwrap() as f64;
    let stopped = beam.eval("StopIdle()").await;
    assert_eq!(stopped, Term::tuple([Term::atom("ok"), Term::Int(N as i64)]), "BEAM processes stopped");
    Beam { erlang_memory: mem / N as f64, rss: rss / N as f64, process_info: one }
}

async fn settle() {
    tokio::time::sleep(Duration::from_millis(300)).await;
}

/// Resident set size of this process in bytes.
fn rss() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
    let pages: u64 = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4096
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}
