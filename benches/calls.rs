//! `GenServer.call` round trips, measured in one run on one machine:
//! Elixir -> Elixir (the baseline), Elixir -> Rust (the `erlnode_echo`
//! style service and an `erlnode::gen_server`), Rust -> Elixir and
//! Rust -> Rust (two erlnode nodes). Run with `cargo bench --bench calls`.
//!
//! Nodes: one epmd, BEAM node A (the Elixir callers), BEAM node B (an
//! Elixir `GenServer` registered as `bench_echo` whose `handle_call`
//! replies `{:echo, request}` at once), Rust node R (an echo process and a
//! gen_server, both replying `{:echo, request}`) and Rust node R2 (Rust
//! callers for the Rust -> Rust row). All on loopback.
//!
//! Each run spawns K callers (K = 1, 16) that each make M calls
//! `GenServer.call({:bench_echo, node}, {:ping, i})` back to back; calls/s
//! is K*M over the time from releasing the callers to the last one
//! finishing; p50/p99 are over every call's own round-trip time
//! (`:erlang.monotonic_time` around each call in Elixir, `Instant` in
//! Rust). Targets are interleaved within a round; the median of ROUNDS
//! rounds is reported.
//!
//! For profiling, `CALLS_ONLY=<substring of a target label>` runs only the
//! matching targets and `CALLS_ROUNDS=<n>` sets the number of rounds, e.g.
//! `CALLS_ONLY="Rust (echo" CALLS_ROUNDS=20 cargo bench --bench calls`
//! under `perf record`. `CALLS_DIAG=1` also prints, per run, the CPU time
//! per call of A, B and this process, and the host's TCP segments per call.
//!
//! The CPU columns (user + system time of each node's OS process from
//! /proc, divided by the calls made) are the steadier comparison on a
//! shared machine: calls/s moves with whatever else runs, CPU per call
//! much less.

#[path = "common/summary.rs"]
mod summary;
#[path = "../interop-tests/support/mod.rs"]
mod support;

use erlnode::gen_server::{Ctx, GenServer, Reply};
use erlnode::process::Dest;
use erlnode::{Node, Term};
use std::time::{Duration, Instant};
use support::{BeamNode, Epmd};

const DEFAULT_ROUNDS: usize = 3;
/// (callers, calls per caller)
const CONFIGS: [(usize, usize); 2] = [(1, 20_000), (16, 2_000)];
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    rt.block_on(run());
}

/// The Elixir callers (compiled, not interpreted by the eval loop).
/// `run(dest, k, m)` returns `{calls, total_native, p50_native, p99_native}`.
const EX_CALLER: &str = r#"
defmodule BenchCaller do
  def run(dest, k, m) do
    parent = self()
    pids = for _ <- 1..k do
      spawn_link(fn ->
        receive do :go -> :ok end
        send(parent, {:lat, self(), loop(dest, m, [])})
      end)
    end
    t0 = :erlang.monotonic_time()
    Enum.each(pids, &send(&1, :go))
    lats = Enum.flat_map(pids, fn p -> receive do {:lat, ^p, l} -> l end end)
    total = :erlang.monotonic_time() - t0
    sorted = lats |> Enum.sort() |> List.to_tuple()
    n = tuple_size(sorted)
    {n, total, elem(sorted, div(n * 50, 100)), elem(sorted, min(n - 1, div(n * 99, 100)))}
  end

  def warm(dest, m), do: loop(dest, m, [])

  defp loop(_dest, 0, acc), do: acc
  defp loop(dest, i, acc) do
    t = :erlang.monotonic_time()
    {:echo, {:ping, ^i}} = GenServer.call(dest, {:ping, i})
    loop(dest, i - 1, [:erlang.monotonic_time() - t | acc])
  end
end
"#;

/// The Elixir server: replies at once, the same work as the Rust echo.
const EX_SERVER: &str = r#"
defmodule BenchEcho do
  use GenServer
  @impl true
  def init(s), do: {:ok, s}
  @impl true
  def handle_call(req, _from, s), do: {:reply, {:echo, req}, s}
end
{:ok, _} = GenServer.start(BenchEcho, nil, name: :bench_echo)
:ok
"#;

/// The same server written with `erlnode::gen_server`.
struct Echo;

impl GenServer for Echo {
    type Call = Term;
    type Cast = Term;
    type Reply = Term;
    async fn handle_call(&mut self, request: Term, _from: &Term, _ctx: &mut Ctx) -> Reply<Term> {
        Reply::Reply(Term::tuple([Term::atom("echo"), request]))
    }
}

#[derive(Clone, Copy, Debug)]
struct Sample {
    rate: f64,
    p50_us: f64,
    p99_us: f64,
    /// CPU time (user + system) per call of the calling node's OS
    /// process and of the serving node's.
    caller_cpu_us: f64,
    server_cpu_us: f64,
}

#[derive(Clone, Copy, PartialEq)]
enum Target {
    ExEx,
    ExRustEcho,
    ExRustGs,
    RustEx,
    RustRust,
}

impl Target {
    const ALL: [Target; 5] = [Target::ExEx, Target::ExRustEcho, Target::ExRustGs, Target::RustEx, Target::RustRust];
    fn label(self) -> &'static str {
        match self {
            Target::ExEx => "Elixir -> Elixir",
            Target::ExRustEcho => "Elixir -> Rust (echo process)",
            Target::ExRustGs => "Elixir -> Rust (erlnode::gen_server)",
            Target::RustEx => "Rust -> Elixir",
            Target::RustRust => "Rust -> Rust (other node)",
        }
    }
}

async fn run() {
    support::require_erlang();
    let epmd = Epmd::start().await;
    let cookie = support::unique("bench");
    let start_rust = |prefix: &str| {
        Node::builder(format!("{}@127.0.0.1", support::unique(prefix)))
            .cookie(&cookie)
            .epmd_port(epmd.port())
            .embedded_epmd(false)
            .start()
    };
    let rust = start_rust("rust").await.unwrap();
    let rust_name = rust.name().as_str().to_string();
    let rust_name = rust_name.as_str();
    let rust2 = start_rust("rust2").await.unwrap();
    erlnode::services::echo::spawn(&rust, "bench_echo").unwrap();
    erlnode::gen_server::start(&rust, Echo).name("bench_gs").spawn().unwrap();

    let a = BeamNode::builder().prefix("a").elixir(true).cookie(&cookie).epmd_port(epmd.port()).start().await;
    let b = BeamNode::builder().prefix("b").elixir(true).cookie(&cookie).epmd_port(epmd.port()).start().await;
    a.eval_elixir(EX_CALLER).await;
    b.eval_elixir(EX_SERVER).await;
    for peer in [b.name(), rust_name] {
        assert_eq!(a.eval(&format!("net_adm:ping('{peer}')")).await, Term::atom("pong"));
    }
    assert!(rust.ping(b.name()).await && rust2.ping(rust_name).await);

    // Warm-up: connections, code paths, allocators.
    for (name, node) in [("bench_echo", b.name()), ("bench_echo", rust_name), ("bench_gs", rust_name)] {
        a.eval(&format!("length('Elixir.BenchCaller':warm({{{name}, '{node}'}}, 2000))")).await;
    }
    rust_calls(&rust, "bench_echo", b.name(), 1, 2000).await;
    rust_calls(&rust2, "bench_echo", rust_name, 1, 2000).await;

    let only = std::env::var("CALLS_ONLY").ok();
    let targets: Vec<Target> = Target::ALL.into_iter().filter(|t| only.as_deref().is_none_or(|o| t.label().contains(o))).collect();
    let diag = std::env::var_os("CALLS_DIAG").is_some();
    let rounds: usize = std::env::var("CALLS_ROUNDS").ok().and_then(|r| r.parse().ok()).unwrap_or(DEFAULT_ROUNDS);
    let mut results: Vec<(Target, usize, Vec<Sample>)> = vec![];
    // BENCH_QUICK: a tenth of the calls per run.
    let configs: Vec<(usize, usize)> = CONFIGS.iter().map(|&(k, m)| (k, summary::pick(m, m / 10))).collect();
    for &(k, _) in &configs {
        for &t in &targets {
            results.push((t, k, vec![]));
        }
    }
    for round in 0..rounds {
        for &(k, m) in &configs {
            for &t in &targets {
                let pids = [a.os_pid(), b.os_pid(), std::process::id()];
                let (cpu0, segs0) = (pids.map(cpu_us), tcp_out_segs());
                let mut s = match t {
                    Target::ExEx => ex_calls(&a, "bench_echo", b.name(), k, m).await,
                    Target::ExRustEcho => ex_calls(&a, "bench_echo", rust_name, k, m).await,
                    Target::ExRustGs => ex_calls(&a, "bench_gs", rust_name, k, m).await,
                    Target::RustEx => rust_calls(&rust, "bench_echo", b.name(), k, m).await,
                    Target::RustRust => rust_calls(&rust2, "bench_echo", rust_name, k, m).await,
                };
                let n = (k * m) as f64;
                let cpu = |i: usize| (cpu_us(pids[i]) - cpu0[i]) / n;
                let (a_cpu, b_cpu, r_cpu) = (cpu(0), cpu(1), cpu(2));
                (s.caller_cpu_us, s.server_cpu_us) = match t {
                    Target::ExEx => (a_cpu, b_cpu),
                    Target::ExRustEcho | Target::ExRustGs => (a_cpu, r_cpu),
                    Target::RustEx => (r_cpu, b_cpu),
                    Target::RustRust => (r_cpu, r_cpu), // one OS process hosts both nodes
                };
                eprintln!(
                    "round {round} k={k:2} {:38} {:>8.0} calls/s  p50 {:>6.1} us  p99 {:>7.1} us  CPU/call: caller {:5.1} us, server {:5.1} us",
                    t.label(),
                    s.rate,
                    s.p50_us,
                    s.p99_us,
                    s.caller_cpu_us,
                    s.server_cpu_us
                );
                if diag {
                    let segs = (tcp_out_segs() - segs0) as f64 / n;
                    eprintln!("    CPU/call: A {a_cpu:5.1} us, B {b_cpu:5.1} us, Rust {r_cpu:5.1} us; TCP segments sent per call (host-wide) {segs:.2}");
                }
                results.iter_mut().find(|(tt, kk, _)| *tt == t && *kk == k).unwrap().2.push(s);
            }
        }
    }

    println!("| target | callers | calls/s | p50 us | p99 us | ratio to Elixir -> Elixir (calls/s) | caller CPU us/call | server CPU us/call |");
    println!("|---|---|---|---|---|---|---|---|");
    for &(k, m) in &configs {
        let base = results.iter().find(|(t, kk, _)| *t == Target::ExEx && *kk == k).map(|r| median(r.2.iter().map(|s| s.rate).collect()));
        for (t, kk, samples) in &results {
            if *kk != k {
                continue;
            }
            let rate = median(samples.iter().map(|s| s.rate).collect());
            let p50 = median(samples.iter().map(|s| s.p50_us).collect());
            let p99 = median(samples.iter().map(|s| s.p99_us).collect());
            let ratio = base.map_or("-".to_string(), |b| format!("{:.2}", rate / b));
            let caller = median(samples.iter().map(|s| s.caller_cpu_us).collect());
            let server = median(samples.iter().map(|s| s.server_cpu_us).collect());
            let (caller, server) = match t {
                Target::RustRust => ("(both in one process)".to_string(), format!("{server:.1} (caller + server)")),
                _ => (format!("{caller:.1}"), format!("{server:.1}")),
            };
            println!("| {} | {k} | {rate:.0} | {p50:.0} | {p99:.0} | {ratio} | {caller} | {server} |", t.label());
            if let (Some(b), Target::ExRustEcho | Target::ExRustGs | Target::RustRust) = (base, t) {
                let target = if *t == Target::RustRust { "-" } else { ">= 1.1x" };
                summary::summary("calls", &format!("{}, {k} caller(s)", t.label()), &format!("{rate:.0} calls/s"), &format!("{b:.0} calls/s"), Some(rate / b), target);
            }
        }
        let _ = m;
    }
    println!();
    println!("({rounds} rounds, median per cell; calls per run: {})", configs.iter().map(|(k, m)| format!("{k} x {m}")).collect::<Vec<_>>().join(", "));
    rust.shutdown().await;
    rust2.shutdown().await;
}

/// K Elixir callers on `a` calling `{name, node}`.
async fn ex_calls(a: &BeamNode, name: &str, node: &str, k: usize, m: usize) -> Sample {
    let r = a.eval(&format!("'Elixir.BenchCaller':run({{{name}, '{node}'}}, {k}, {m})")).await;
    let t = r.as_tuple().unwrap_or_else(|| panic!("BenchCaller:run returned {r:?}"));
    let n = t[0].as_int().unwrap() as f64;
    let [total, p50, p99] = [&t[1], &t[2], &t[3]].map(|x| x.as_int().unwrap() as f64 / 1e3); // native = ns
    assert_eq!(n as usize, k * m);
    Sample { rate: n / (total / 1e6), p50_us: p50, p99_us: p99, caller_cpu_us: 0.0, server_cpu_us: 0.0 }
}

/// K Rust callers (each its own process on `from`) calling `{name, node}`.
async fn rust_calls(from: &Node, name: &str, node: &str, k: usize, m: usize) -> Sample {
    let (go_tx, go_rx) = tokio::sync::watch::channel(false);
    let mut tasks = vec![];
    for _ in 0..k {
        let from = from.clone();
        let dest = Dest::from((name, node));
        let mut go = go_rx.clone();
        tasks.push(tokio::spawn(async move {
            let mut mb = from.spawn_mailbox();
            let mut lat = Vec::with_capacity(m);
            go.wait_for(|g| *g).await.unwrap();
            for i in 0..m as i64 {
                let t = Instant::now();
                let req = Term::tuple([Term::atom("ping"), Term::Int(i)]);
                let reply = mb.call(dest.clone(), req, CALL_TIMEOUT).await.expect("call");
                debug_assert!(matches!(reply.as_tuple(), Some([e, _]) if e.is_atom("echo")));
                lat.push(t.elapsed().as_nanos() as u64);
            }
            lat
        }));
    }
    tokio::time::sleep(Duration::from_millis(20)).await;
    let t0 = Instant::now();
    go_tx.send(true).unwrap();
    let mut lats = Vec::with_capacity(k * m);
    for t in tasks {
        lats.extend(t.await.unwrap());
    }
    let total = t0.elapsed().as_secs_f64();
    lats.sort_unstable();
    let n = lats.len();
    Sample {
        rate: n as f64 / total,
        p50_us: lats[n * 50 / 100] as f64 / 1e3,
        p99_us: lats[(n * 99 / 100).min(n - 1)] as f64 / 1e3,
        caller_cpu_us: 0.0,
        server_cpu_us: 0.0,
    }
}

/// CPU time (user + system, all threads) of a process so far, in us.
fn cpu_us(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the parenthesised command name; utime and stime are
    // fields 14 and 15 of the line, in clock ticks (USER_HZ = 100).
    let fields: Vec<&str> = stat.rsplit(')').next().unwrap_or("").split_whitespace().collect();
    let tick = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (tick(11) + tick(12)) * 1e6 / 100.0
}

/// Host-wide TCP segments sent so far (/proc/net/snmp `Tcp: OutSegs`).
fn tcp_out_segs() -> u64 {
    let snmp = std::fs::read_to_string("/proc/net/snmp").unwrap_or_default();
    let mut tcp = snmp.lines().filter(|l| l.starts_with("Tcp:"));
    let (Some(names), Some(values)) = (tcp.next(), tcp.next()) else { return 0 };
    names.split_whitespace().zip(values.split_whitespace()).find(|(n, _)| *n == "OutSegs").and_then(|(_, v)| v.parse().ok()).unwrap_or(0)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}
