//! `global` registration latency and throughput: erlnode's
//! `Global::register_name` against Erlang's `global:register_name/2`, in
//! one cluster (two Elixir nodes A and B, two erlnode nodes R and R2,
//! all synced) and one run. Run with `cargo bench --bench global`.
//!
//! Every registration locks `global` on all four nodes, registers on all
//! four and unlocks (`trans_all_known`), so its cost is cluster round
//! trips plus each node's registrar, which serialises a node's
//! registrations. Measured from A (Erlang callers) and from R (Rust
//! callers), interleaved within each round:
//!
//! - sequential: one caller registers N fresh processes under N names,
//!   then unregisters them; p50/p99 of each call;
//! - concurrent: K callers each register M names at once, then all
//!   unregister; names/s = K*M / time until the last caller is done;
//! - whereis: `whereis_name` of a registered name, a local table read on
//!   both (ns per lookup, 100k lookups).
//!
//! The median of ROUNDS rounds is reported.

#[path = "common/summary.rs"]
mod summary;
#[path = "../interop-tests/support/mod.rs"]
#[allow(dead_code)]
mod support;

use erlnode::{Node, Pid, Term};
use std::time::{Duration, Instant};
use support::{BeamNode, Epmd};

const ROUNDS: usize = 3;
const SEQ_N: usize = 300;
const PAR_K: usize = 16;
const PAR_M: usize = 50;
const WHEREIS_N: usize = 100_000;

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    rt.block_on(run());
}

/// The Erlang callers, compiled (not interpreted by the eval loop).
/// Latencies in native units (ns).
const EX_BENCH: &str = r##"
defmodule BenchGlobal do
  defp idle(), do: spawn(fn -> receive do :stop -> :ok end end)
  defp name(prefix, i), do: String.to_atom("#{prefix}_#{i}")
  defp stats(lats) do
    s = lats |> Enum.sort() |> List.to_tuple()
    n = tuple_size(s)
    {n, elem(s, div(n * 50, 100)), elem(s, min(n - 1, div(n * 99, 100)))}
  end
  defp timed(f) do
    t = :erlang.monotonic_time()
    f.()
    :erlang.monotonic_time() - t
  end

  def seq(prefix, n) do
    pids = for _ <- 1..n, do: idle()
    t0 = :erlang.monotonic_time()
    reg = for {p, i} <- Enum.with_index(pids), do: timed(fn -> :yes = :global.register_name(name(prefix, i), p) end)
    t1 = :erlang.monotonic_time()
    unreg = for i <- 0..(n - 1), do: timed(fn -> :ok = :global.unregister_name(name(prefix, i)) end)
    t2 = :erlang.monotonic_time()
    Enum.each(pids, &send(&1, :stop))
    {stats(reg), stats(unreg), t1 - t0, t2 - t1}
  end

  def par(prefix, k, m) do
    parent = self()
    workers = for w <- 1..k do
      spawn_link(fn ->
        pids = for _ <- 1..m, do: idle()
        receive do :go -> :ok end
        for {p, i} <- Enum.with_index(pids), do: :yes = :global.register_name(name(prefix, w * 100_000 + i), p)
        send(parent, {:registered, self()})
        receive do :unregister -> :ok end
        for i <- 0..(m - 1), do: :ok = :global.unregister_name(name(prefix, w * 100_000 + i))
        Enum.each(pids, &send(&1, :stop))
        send(parent, {:unregistered, self()})
      end)
    end
    Process.sleep(20)
    reg = timed(fn ->
      Enum.each(workers, &send(&1, :go))
      Enum.each(workers, fn w -> receive do {:registered, ^w} -> :ok end end)
    end)
    unreg = timed(fn ->
      Enum.each(workers, &send(&1, :unregister))
      Enum.each(workers, fn w -> receive do {:unregistered, ^w} -> :ok end end)
    end)
    {k * m, reg, unreg}
  end

  def whereis(name, n) do
    t = :erlang.monotonic_time()
    for _ <- 1..n, do: :global.whereis_name(name)
    :erlang.monotonic_time() - t
  end
end
:ok
"##;

#[derive(Clone, Copy, Default, Debug)]
struct Row {
    reg_rate: f64,
    reg_p50_ms: f64,
    reg_p99_ms: f64,
    unreg_rate: f64,
    unreg_p50_ms: f64,
    unreg_p99_ms: f64,
}

fn idle(n: &Node) -> Pid {
    n.spawn(|mut mb| async move {
        while mb.recv().await.is_some() {}
        Term::atom("normal")
    })
}

fn pct(mut v: Vec<u64>) -> (f64, f64) {
    v.sort_unstable();
    let n = v.len();
    (v[n * 50 / 100] as f64 / 1e6, v[(n * 99 / 100).min(n - 1)] as f64 / 1e6)
}

async fn rust_seq(r: &Node, prefix: &str, n: usize) -> Row {
    let g = r.global();
    let pids: Vec<Pid> = (0..n).map(|_| idle(r)).collect();
    let mut reg = Vec::with_capacity(n);
    let t0 = Instant::now();
    for (i, p) in pids.iter().enumerate() {
        let t = Instant::now();
        assert_eq!(g.register_name(Term::atom(&format!("{prefix}_{i}")), p).await, Ok(true));
        reg.push(t.elapsed().as_nanos() as u64);
    }
    let reg_total = t0.elapsed().as_secs_f64();
    let mut unreg = Vec::with_capacity(n);
    let t0 = Instant::now();
    for i in 0..n {
        let t = Instant::now();
        g.unregister_name(&Term::atom(&format!("{prefix}_{i}"))).await.unwrap();
        unreg.push(t.elapsed().as_nanos() as u64);
    }
    let unreg_total = t0.elapsed().as_secs_f64();
    for p in &pids {
        r.exit(p, Term::atom("kill"));
    }
    let ((rp50, rp99), (up50, up99)) = (pct(reg), pct(unreg));
    Row { reg_rate: n as f64 / reg_total, reg_p50_ms: rp50, reg_p99_ms: rp99, unreg_rate: n as f64 / unreg_total, unreg_p50_ms: up50, unreg_p99_ms: up99 }
}

async fn rust_par(r: &Node, prefix: &str, k: usize, m: usize) -> Row {
    let g = r.global();
    let pids: Vec<Vec<Pid>> = (0..k).map(|_| (0..m).map(|_| idle(r)).collect()).collect();
    let name = |w: usize, i: usize| Term::atom(&format!("{prefix}_{}", w * 100_000 + i));
    let t0 = Instant::now();
    let workers = pids.iter().enumerate().map(|(w, ps)| {
        let g = g.clone();
        async move {
            for (i, p) in ps.iter().enumerate() {
                assert_eq!(g.register_name(name(w, i), p).await, Ok(true));
            }
        }
    });
    futures_util::future::join_all(workers).await;
    let reg = t0.elapsed().as_secs_f64();
    let t0 = Instant::now();
    let workers = (0..k).map(|w| {
        let g = g.clone();
        async move {
            for i in 0..m {
                g.unregister_name(&name(w, i)).await.unwrap();
            }
        }
    });
    futures_util::future::join_all(workers).await;
    let unreg = t0.elapsed().as_secs_f64();
    for p in pids.iter().flatten() {
        r.exit(p, Term::atom("kill"));
    }
    let n = (k * m) as f64;
    Row { reg_rate: n / reg, unreg_rate: n / unreg, ..Default::default() }
}

async fn ex_seq(a: &BeamNode, prefix: &str, n: usize) -> Row {
    let r = a.try_eval_timeout(&format!("'Elixir.BenchGlobal':seq('{prefix}', {n})"), Duration::from_secs(600)).await.unwrap();
    let st = |t: &Term| -> (f64, f64, f64) {
        let s = t.as_tuple().unwrap();
        (s[0].as_int().unwrap() as f64, s[1].as_int().unwrap() as f64 / 1e6, s[2].as_int().unwrap() as f64 / 1e6)
    };
    let t = r.as_tuple().unwrap();
    let ((_, rp50, rp99), (_, up50, up99)) = (st(&t[0]), st(&t[1]));
    let (reg_total, unreg_total) = (t[2].as_int().unwrap() as f64 / 1e9, t[3].as_int().unwrap() as f64 / 1e9);
    Row {
        reg_rate: n as f64 / reg_total,
        reg_p50_ms: rp50,
        reg_p99_ms: rp99,
        unreg_rate: n as f64 / unreg_total,
        unreg_p50_ms: up50,
        unreg_p99_ms: up99,
    }
}

async fn ex_par(a: &BeamNode, prefix: &str, k: usize, m: usize) -> Row {
    let r = a.try_eval_timeout(&format!("'Elixir.BenchGlobal':par('{prefix}', {k}, {m})"), Duration::from_secs(600)).await.unwrap();
    let t = r.as_tuple().unwrap();
    let n = t[0].as_int().unwrap() as f64;
    let (reg, unreg) = (t[1].as_int().unwrap() as f64 / 1e9, t[2].as_int().unwrap() as f64 / 1e9);
    Row { reg_rate: n / reg, unreg_rate: n / unreg, ..Default::default() }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

async fn run() {
    support::require_erlang();
    let epmd = Epmd::start().await;
    let cookie = support::unique("bench");
    let start_rust = |prefix: &str| {
        Node::builder(format!("{}@127.0.0.1", support::unique(prefix))).cookie(&cookie).epmd_port(epmd.port()).embedded_epmd(false).start()
    };
    let r = start_rust("r").await.unwrap();
    let r2 = start_rust("r2").await.unwrap();
    let a = BeamNode::builder().prefix("a").elixir(true).cookie(&cookie).epmd_port(epmd.port()).start().await;
    let b = BeamNode::builder().prefix("b").elixir(true).cookie(&cookie).epmd_port(epmd.port()).start().await;
    a.eval_elixir(EX_BENCH).await;
    for peer in [b.name(), r.name().as_str(), r2.name().as_str()] {
        assert_eq!(a.eval(&format!("net_adm:ping('{peer}')")).await, Term::atom("pong"));
    }
    for e in [&a, &b] {
        assert_eq!(e.try_eval_timeout("global:sync()", Duration::from_secs(60)).await, Ok(Term::atom("ok")));
    }
    for n in [&r, &r2] {
        n.global().sync(Duration::from_secs(60)).await.unwrap();
        assert_eq!(n.global().known_nodes().len(), 3, "the cluster is fully synced");
    }
    // Warm-up.
    ex_seq(&a, "warm_e", 50).await;
    rust_seq(&r, "warm_r", 50).await;

    let mut seq_e = vec![];
    let mut seq_r = vec![];
    let mut par_e = vec![];
    let mut par_r = vec![];
    let rounds = summary::pick(ROUNDS, 1);
    for round in 0..rounds {
        let e = ex_seq(&a, &format!("s{round}_e"), SEQ_N).await;
        let rr = rust_seq(&r, &format!("s{round}_r"), SEQ_N).await;
        eprintln!("round {round} sequential: erlang {e:?}\n                      rust   {rr:?}");
        seq_e.push(e);
        seq_r.push(rr);
        let e = ex_par(&a, &format!("p{round}_e"), PAR_K, PAR_M).await;
        let rr = rust_par(&r, &format!("p{round}_r"), PAR_K, PAR_M).await;
        eprintln!("round {round} concurrent: erlang {:.0}/{:.0} names/s, rust {:.0}/{:.0} names/s (register/unregister)", e.reg_rate, e.unreg_rate, rr.reg_rate, rr.unreg_rate);
        par_e.push(e);
        par_r.push(rr);
    }

    // whereis: a local read on both sides.
    let p = idle(&r);
    assert_eq!(r.global().register_name(Term::atom("bench_where"), &p).await, Ok(true));
    let ex_ns = a.eval(&format!("'Elixir.BenchGlobal':whereis(bench_where, {WHEREIS_N})")).await.as_int().unwrap() as f64 / WHEREIS_N as f64;
    let g = r2.global();
    let t = Instant::now();
    for _ in 0..WHEREIS_N {
        std::hint::black_box(g.whereis_name(&Term::atom("bench_where")));
    }
    let rust_ns = t.elapsed().as_nanos() as f64 / WHEREIS_N as f64;

    let m = |v: &[Row], f: fn(&Row) -> f64| median(v.iter().map(f).collect());
    println!("| caller | mode | register names/s | register p50 ms | register p99 ms | unregister names/s | unregister p50 ms | unregister p99 ms |");
    println!("|---|---|---|---|---|---|---|---|");
    for (who, mode, v) in [
        ("Erlang `global:register_name/2` (node A)", format!("sequential, 1 caller x {SEQ_N}"), &seq_e),
        ("Rust `Global::register_name` (node R)", format!("sequential, 1 caller x {SEQ_N}"), &seq_r),
        ("Erlang `global:register_name/2` (node A)", format!("concurrent, {PAR_K} callers x {PAR_M}"), &par_e),
        ("Rust `Global::register_name` (node R)", format!("concurrent, {PAR_K} callers x {PAR_M}"), &par_r),
    ] {
        let lat = |x: f64| if x > 0.0 { format!("{x:.2}") } else { "-".into() };
        println!(
            "| {who} | {mode} | {:.0} | {} | {} | {:.0} | {} | {} |",
            m(v, |r| r.reg_rate),
            lat(m(v, |r| r.reg_p50_ms)),
            lat(m(v, |r| r.reg_p99_ms)),
            m(v, |r| r.unreg_rate),
            lat(m(v, |r| r.unreg_p50_ms)),
            lat(m(v, |r| r.unreg_p99_ms)),
        );
    }
    println!();
    println!("| lookup | ns per whereis_name |");
    println!("|---|---|");
    println!("| Erlang `global:whereis_name/1` (node A) | {ex_ns:.0} |");
    println!("| Rust `Global::whereis_name` (node R2) | {rust_ns:.0} |");
    println!();
    println!("({rounds} rounds, median per cell)");
    for (mode, e, r) in [("sequential", &seq_e, &seq_r), ("concurrent", &par_e, &par_r)] {
        let (ee, rr) = (m(e, |x| x.reg_rate), m(r, |x| x.reg_rate));
        summary::summary("global", &format!("register_name, {mode}, Rust vs Erlang caller"), &format!("{rr:.0} names/s"), &format!("{ee:.0} names/s"), Some(rr / ee), ">= 1x");
    }
    summary::summary("global", "whereis_name, Rust vs Erlang", &format!("{rust_ns:.0} ns"), &format!("{ex_ns:.0} ns"), Some(ex_ns / rust_ns), ">= 1x");
    r.shutdown().await;
    r2.shutdown().await;
}
