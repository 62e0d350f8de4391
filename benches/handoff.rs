//! Single-process handoff latency between two Rust nodes on loopback,
//! for state sizes 1 KB and 1 MB and queue lengths 0 and 1,000, next to
//! the physical floor measured in the same run: state bytes over the
//! loopback bandwidth between the same two nodes, plus one round trip.
//!
//! Latency is from releasing the paused source (its `begin` already
//! queued, with the queue behind it) to the requester receiving
//! `{ok, T}`: start of the target, state capture, handover of state and
//! queue, the target applying both, and the name switch. Retention (the
//! old pid forwarding late arrivals afterwards) is not included.

#[path = "common/summary.rs"]
mod summary;
#[path = "../interop-tests/support/mod.rs"]
#[allow(dead_code)]
mod support;

use erlnode::gen_server::{Ctx, Flow, GenServer, Reply};
use erlnode::migration::messages::Op;
use erlnode::migration::{HandoffConfig, Migratable, Migration, Mode, Phase, PhaseHook};
use erlnode::term::Binary;
use erlnode::{Node, Term};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Handoffs per row (BENCH_QUICK: 10).
fn hops() -> usize {
    // For profiling: HANDOFF_HOPS=<n> hops per row.
    std::env::var("HANDOFF_HOPS").ok().and_then(|n| n.parse().ok()).unwrap_or(summary::pick(40, 10))
}

/// The state handed over. `D` is how it holds its bytes: [`Binary`]
/// (shared, not copied by serde at either end: every row) or a
/// `serde_bytes` `Vec<u8>` ([`VecBytes`], copied into the term at the
/// source and out of it at the target: the 1 MB row once more, as the
/// state type a first version of a user's code likely has). Both are
/// the same binary on the wire.
#[derive(Serialize, Deserialize)]
struct Blob<D> {
    data: D,
    applied: i64,
}

#[derive(Serialize, Deserialize)]
struct VecBytes(#[serde(with = "serde_bytes")] Vec<u8>);

#[derive(Deserialize)]
#[serde(rename_all = "snake_case")]
enum Cast {
    Bump,
    /// Pause until a `go` message arrives (the bench queues work behind it).
    Hold,
}

impl<D: Serialize + serde::de::DeserializeOwned + Send + 'static> GenServer for Blob<D> {
    type Call = ();
    type Cast = Cast;
    type Reply = i64;
    async fn handle_call(&mut self, _r: (), _f: &Term, _c: &mut Ctx) -> Reply<i64> {
        Reply::Reply(self.applied)
    }
    async fn handle_cast(&mut self, m: Cast, ctx: &mut Ctx) -> Flow {
        match m {
            Cast::Bump => self.applied += 1,
            Cast::Hold => {
                let _ = ctx.recv_match(Duration::from_secs(30), |t| t.is_atom("go").then_some(())).await;
            }
        }
        Flow::Continue
    }
}

impl Migratable for Blob<Binary> {
    const TYPE: &'static str = "bench_blob";
    type Args = usize;
    fn init_state(size: usize) -> Result<Self, Term> {
        Ok(Blob { data: Binary::from(vec![7; size]), applied: 0 })
    }
}

impl Migratable for Blob<VecBytes> {
    const TYPE: &'static str = "bench_blob_vec";
    type Args = usize;
    fn init_state(size: usize) -> Result<Self, Term> {
        Ok(Blob { data: VecBytes(vec![7; size]), applied: 0 })
    }
}

fn cast(m: &str) -> Term {
    Term::tuple([Term::atom("$gen_cast"), Term::atom(m)])
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    // Everything runs in a task on the runtime's workers, as a user's code
    // does: timed from `block_on`'s own thread, each wake of that parked
    // thread added tens of microseconds to every latency (the round trip
    // read 49-75 us from there, 7-12 us from a task; docs/benchmarks.md).
    rt.block_on(async { tokio::spawn(run()).await.unwrap() });
}

async fn run() {
    let epmd = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let tag = std::process::id();
    let a = Node::builder(format!("hb_a_{tag}@127.0.0.1")).cookie("bench").epmd_port(epmd).start().await.unwrap();
    let b = Node::builder(format!("hb_b_{tag}@127.0.0.1")).cookie("bench").epmd_port(epmd).start().await.unwrap();
    a.connect(b.name().as_str()).await.unwrap();
    a.global().sync(Duration::from_secs(30)).await.unwrap();
    let phases = Phases::default();
    let hook = std::env::var("HANDOFF_PHASES").is_ok().then(|| phases.hook());
    let cfg = HandoffConfig { retention: Duration::from_millis(50), rebalance_on_join: false, hook, ..Default::default() };
    let ma = Migration::start(&a, Arc::new(a.global()), cfg.clone()).unwrap();
    let mb = Migration::start(&b, Arc::new(b.global()), cfg).unwrap();
    ma.register_type::<Blob<Binary>>();
    mb.register_type::<Blob<Binary>>();
    ma.register_type::<Blob<VecBytes>>();
    mb.register_type::<Blob<VecBytes>>();

    let (node_bandwidth, rtt) = floor(&a, &b).await;
    // The machine's loopback bandwidth for the floor: the best of three
    // streams (one stream's rate swung 2.7-5.8 GB/s between runs here, and
    // the floor, and every ratio to it, with it).
    let mut bandwidth = 0f64;
    for _ in 0..3 {
        bandwidth = bandwidth.max(summary::raw_loopback_bandwidth(summary::pick(256, 64) << 20).await);
    }
    // Not the issue's floor: what one 1 MB transfer and its answer take
    // over raw loopback TCP, in this runtime (docs/benchmarks.md).
    let raw_1mb = summary::raw_loopback_transfer(1 << 20, summary::pick(200, 50)).await;
    let link_1mb = message_and_reply(&a, &b, 1 << 20, summary::pick(200, 50)).await;
    println!(
        "loopback TCP: {:.0} MB/s; erlnode node-to-node (64 MB message): {:.0} MB/s; call round trip {:.1} us; raw TCP 1 MB write + 1-byte answer {:.3} ms, erlnode 1 MB message + reply {:.3} ms (medians)",
        bandwidth / 1e6,
        node_bandwidth / 1e6,
        rtt.as_secs_f64() * 1e6,
        ms(raw_1mb),
        ms(link_1mb)
    );
    let beam = elixir_baseline(epmd).await;
    println!();
    println!("| state | queue | Rust -> Rust p50 | p99 | Elixir -> Elixir p50 (erlnode_ex, same run) | p99 | floor (bytes/bandwidth + RTT) | Rust p50 / floor |");
    println!("|---|---|---|---|---|---|---|---|");
    // For profiling: HANDOFF_ONLY=<state label> ("1 MB") runs that
    // state's rows alone, without the rebalance rows.
    let only = std::env::var("HANDOFF_ONLY").ok();
    for (size, label) in [(1024usize, "1 KB"), (1024 * 1024, "1 MB")] {
        if only.as_deref().is_some_and(|o| o != label) {
            continue;
        }
        for queue in [0usize, 1000] {
            let name = format!("blob_{size}_{queue}");
            ma.start_process::<Blob<Binary>>(size, &name).await.unwrap();
            let mut lat = hop_latencies(&a, &b, &name, queue, &phases).await;
            lat.sort();
            phases.report(&format!("{label}, queue {queue}"));
            let p50 = lat[lat.len() / 2];
            let p99 = lat[(lat.len() * 99 / 100).min(lat.len() - 1)];
            let floor = Duration::from_secs_f64(size as f64 / bandwidth) + rtt;
            let (bp50, bp99) = beam.iter().find(|(s, q, _, _)| *s == size && *q == queue).map(|(_, _, a, b)| (*a, *b)).unwrap();
            println!(
                "| {label} | {queue} | {:.2} ms | {:.2} ms | {:.2} ms | {:.2} ms | {:.3} ms | {:.1}x |",
                ms(p50),
                ms(p99),
                ms(bp50),
                ms(bp99),
                ms(floor),
                p50.as_secs_f64() / floor.as_secs_f64()
            );
            let path = format!("handoff {label}, queue {queue}, Rust -> Rust p50");
            summary::summary("handoff", &format!("{path} vs Elixir -> Elixir"), &format!("{:.2} ms", ms(p50)), &format!("{:.2} ms", ms(bp50)), Some(bp50.as_secs_f64() / p50.as_secs_f64()), "-");
            if queue == 0 && size == 1024 {
                let r = p50.as_secs_f64() / rtt.as_secs_f64();
                summary::summary("handoff", &format!("{path} / Rust -> Rust call round trip"), &format!("{:.3} ms", ms(p50)), &format!("{:.3} ms", ms(rtt)), Some(r), "<= 3 (p50 / round trip)");
            }
            if queue == 0 && size > 1024 {
                let r = p50.as_secs_f64() / floor.as_secs_f64();
                summary::summary("handoff", &format!("{path} / floor"), &format!("{:.3} ms", ms(p50)), &format!("{:.3} ms", ms(floor)), Some(r), "<= 2 (p50 / floor)");
                let raw = p50.as_secs_f64() / raw_1mb.as_secs_f64();
                summary::summary("handoff", &format!("{path} / raw TCP 1 MB write + answer"), &format!("{:.3} ms", ms(p50)), &format!("{:.3} ms", ms(raw_1mb)), Some(raw), "-");
                let link = p50.as_secs_f64() / link_1mb.as_secs_f64();
                summary::summary("handoff", &format!("{path} / erlnode 1 MB message + reply"), &format!("{:.3} ms", ms(p50)), &format!("{:.3} ms", ms(link_1mb)), Some(link), "-");
                // The same with the state's bytes in a Vec<u8>.
                let name = format!("blob_vec_{size}");
                ma.start_process::<Blob<VecBytes>>(size, &name).await.unwrap();
                let mut lat = hop_latencies(&a, &b, &name, 0, &phases).await;
                lat.sort();
                phases.report(&format!("{label}, queue 0, Vec<u8> state"));
                let p50v = lat[lat.len() / 2];
                println!(
                    "| {label}, Vec<u8> state | 0 | {:.2} ms | {:.2} ms | | | {:.3} ms | {:.1}x |",
                    ms(p50v),
                    ms(lat[(lat.len() * 99 / 100).min(lat.len() - 1)]),
                    ms(floor),
                    p50v.as_secs_f64() / floor.as_secs_f64()
                );
                let r = p50v.as_secs_f64() / floor.as_secs_f64();
                summary::summary("handoff", &format!("{path} / floor, Vec<u8> state (before Binary)"), &format!("{:.3} ms", ms(p50v)), &format!("{:.3} ms", ms(floor)), Some(r), "-");
            }
        }
    }
    println!();
    println!("| accounts on c | moved to d on its join | registered in global | rebalance on join | per process moved |");
    println!("|---|---|---|---|---|");
    for n in summary::pick(vec![1_000, 10_000, 30_000], vec![1_000, 5_000]) {
        if only.is_some() {
            break;
        }
        rebalance_on_join(epmd, n).await;
    }
    a.shutdown().await;
    b.shutdown().await;
}

/// `n` accounts on a fresh node c; node d starts hosting the type: the
/// time until every account whose ring owner is now d runs there.
async fn rebalance_on_join(epmd: u16, n: usize) {
    use erlnode::examples::account::Account;
    let tag = std::process::id();
    let c = Node::builder(format!("rj_c_{tag}_{n}@127.0.0.1")).cookie("bench").epmd_port(epmd).start().await.unwrap();
    let d = Node::builder(format!("rj_d_{tag}_{n}@127.0.0.1")).cookie("bench").epmd_port(epmd).start().await.unwrap();
    c.connect(d.name().as_str()).await.unwrap();
    c.global().sync(Duration::from_secs(30)).await.unwrap();
    let mc = Migration::start(&c, Arc::new(c.global()), HandoffConfig::default()).unwrap();
    let md = Migration::start(&d, Arc::new(d.global()), HandoffConfig::default()).unwrap();
    let t0 = Instant::now();
    for i in 0..n {
        mc.start_process::<Account>(Term::nil(), &format!("rj_{n}_{i}")).await.unwrap();
    }
    let registered = t0.elapsed();
    let ring = erlnode::migration::ring::Ring::new([c.name().clone(), d.name().clone()], mc.ring_encoding());
    let expect = (0..n).filter(|i| ring.owner(&Term::atom(&format!("rj_{n}_{i}"))).as_ref() == Some(d.name())).count();
    let t0 = Instant::now();
    md.register_type::<Account>();
    let deadline = Instant::now() + Duration::from_secs(600);
    while md.hosted_count() < expect {
        assert!(Instant::now() < deadline, "rebalance stuck at {} of {expect}", md.hosted_count());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let took = t0.elapsed();
    println!(
        "| {n} | {expect} | {:.2} s | {:.2} s | {:.3} ms (64 in flight) |",
        registered.as_secs_f64(),
        took.as_secs_f64(),
        took.as_secs_f64() * 1e3 / expect as f64
    );
    let target = if n == 10_000 { "<= 0.5 s, linear" } else { "linear" };
    summary::summary("handoff", &format!("rebalance on join, {n} processes ({expect} moved)"), &format!("{:.2} s", took.as_secs_f64()), "-", None, target);
    c.shutdown().await;
    d.shutdown().await;
}


const ELIXIR_BLOB: &str = r#"
defmodule BenchBlob do
  use Erlnode.Migratable, type: "bench_blob", retention: 50
  def init(size), do: {:ok, %{data: :binary.copy(<<7>>, size), applied: 0}}
  def handle_cast(:bump, s), do: {:noreply, %{s | applied: s.applied + 1}}
  def handle_cast(:hold, s) do
    receive do
      :go -> :ok
    end
    {:noreply, s}
  end
  def handle_call(:get, _from, s), do: {:reply, s.applied, s}
end
Erlnode.Migration.register_type("bench_blob", BenchBlob)
"#;

/// The same measurement between two Elixir nodes with erlnode's Elixir
/// library (`:global.re_register_name` for the switch): the BEAM-to-BEAM
/// baseline of this run. Returns (size, queue, p50, p99).
async fn elixir_baseline(epmd: u16) -> Vec<(usize, usize, Duration, Duration)> {
    support::require_erlang();
    let ebin = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("erlang/_build/test/lib/erlnode_ex/ebin");
    assert!(ebin.exists(), "{} missing: run `make bench` (it compiles erlang/)", ebin.display());
    let cookie = support::unique("hbx");
    let start = || support::BeamNode::builder().prefix("hbx").cookie(&cookie).epmd_port(epmd).elixir(true).code_path(&ebin).start();
    let e1 = start().await;
    let e2 = start().await;
    for e in [&e1, &e2] {
        e.eval("application:ensure_all_started(erlnode_ex)").await;
        e.eval_elixir(ELIXIR_BLOB).await;
    }
    assert_eq!(e1.eval(&format!("net_adm:ping('{}')", e2.name())).await, Term::atom("pong"));
    e1.eval("global:sync()").await;
    let mut out = vec![];
    for size in [1024usize, 1024 * 1024] {
        for queue in [0usize, 1000] {
            let code = format!(
                r#"
                name = :"bx_{size}_{queue}"
                {{:ok, _}} = Erlnode.Migration.start_process(BenchBlob, {size}, name)
                other = :"{other}"
                lat = for _ <- 1..{hops} do
                  pid = :global.whereis_name(name)
                  target = if node(pid) == node(), do: other, else: node()
                  GenServer.cast(pid, :hold)
                  ref = make_ref()
                  send(pid, {{:"$erlnode_migrate", :begin, ref, target, :hot, self()}})
                  for _ <- 1..{queue}//1, do: GenServer.cast(pid, :bump)
                  t0 = System.monotonic_time(:microsecond)
                  send(pid, :go)
                  receive do
                    {{:"$erlnode_migrate", :result, ^ref, {{:ok, _}}}} -> System.monotonic_time(:microsecond) - t0
                  after 60_000 -> raise "handoff timed out"
                  end
                end
                Enum.sort(lat)
                "#,
                other = e2.name(),
                hops = hops(),
            );
            let Term::List(lat) = e1.eval_elixir(&code).await else { panic!("latencies") };
            let us: Vec<i64> = lat.iter().map(|t| t.as_int().unwrap()).collect();
            let p50 = Duration::from_micros(us[us.len() / 2] as u64);
            let p99 = Duration::from_micros(us[(us.len() * 99 / 100).min(us.len() - 1)] as u64);
            out.push((size, queue, p50, p99));
        }
    }
    out
}

/// `HANDOFF_PHASES=1`: when each phase of the source's handoff began,
/// from the bench's `go` (median over a row's hops), to see which step a
/// row's time goes to.
#[derive(Clone, Default)]
struct Phases(Arc<std::sync::Mutex<(Option<Instant>, Vec<(Phase, Duration)>)>>);

impl Phases {
    fn hook(&self) -> PhaseHook {
        let me = self.clone();
        PhaseHook(Arc::new(move |p| {
            let mut g = me.0.lock().unwrap();
            if let Some(t0) = g.0 {
                g.1.push((p, t0.elapsed()));
            }
            Box::pin(async {})
        }))
    }
    fn start(&self, t0: Instant) {
        self.0.lock().unwrap().0 = Some(t0);
    }
    fn report(&self, row: &str) {
        let mut g = self.0.lock().unwrap();
        let seen = std::mem::take(&mut g.1);
        if seen.is_empty() {
            return;
        }
        let line: Vec<String> = [Phase::TargetStarted, Phase::HandoverSent, Phase::Accepted, Phase::Switched]
            .iter()
            .map(|p| {
                let mut at: Vec<Duration> = seen.iter().filter(|(q, _)| q == p).map(|(_, d)| *d).collect();
                at.sort();
                format!("{p:?} {:.3} ms", at.get(at.len() / 2).map(|d| ms(*d)).unwrap_or(f64::NAN))
            })
            .collect();
        println!("phases ({row}, median from go): {}", line.join(", "));
    }
}

/// Hops the process registered as `name` between `a` and `b`, `hops()`
/// times, each with `queue` casts queued behind its `begin`: the latency
/// of each, from releasing the held source to the requester's `{ok, T}`.
async fn hop_latencies(a: &Node, b: &Node, name: &str, queue: usize, phases: &Phases) -> Vec<Duration> {
    let mut lat = Vec::with_capacity(hops());
    let mut me = a.spawn_mailbox();
    for hop in 0..hops() {
        let src = a.global().whereis_name(&Term::atom(name)).unwrap();
        let target = if src.node == *a.name() { b.name().clone() } else { a.name().clone() };
        me.send(&src, cast("hold"));
        let reference = a.make_ref();
        let begin = Op::Begin { reference: reference.clone(), target, mode: Mode::Hot, reply_to: Some(me.pid().clone()) };
        me.send(&src, begin.to_term());
        for _ in 0..queue {
            me.send(&src, cast("bump"));
        }
        let t0 = Instant::now();
        phases.start(t0);
        me.send(&src, Term::atom("go"));
        let result = me
            .recv_match(Duration::from_secs(60), |m| match Op::parse(m) {
                Some(Ok(Op::Result { reference: r, result })) if r == reference => Some(result),
                _ => None,
            })
            .await
            .expect("handoff result");
        lat.push(t0.elapsed());
        assert!(result.is_ok(), "hop {hop}: {result:?}");
    }
    lat
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Loopback bandwidth between the two nodes (a 64 MB binary, a -> b, as
/// a message) and the round trip of a call (`Mailbox::call`, monitor and
/// all, to a process on b that answers at once), median of 200.
async fn floor(a: &Node, b: &Node) -> (f64, Duration) {
    let mut sink = b.spawn_mailbox();
    let src = a.spawn_mailbox();
    let payload = Term::binary(vec![1u8; 64 * 1024 * 1024]);
    let mut best = f64::MAX;
    for _ in 0..3 {
        let t0 = Instant::now();
        src.send(sink.pid(), payload.clone());
        sink.recv_timeout(Duration::from_secs(60)).await.unwrap();
        best = best.min(t0.elapsed().as_secs_f64());
    }
    let bandwidth = 64.0 * 1024.0 * 1024.0 / best;
    let mut echo = b.spawn_mailbox();
    let echo_pid = echo.pid().clone();
    tokio::spawn(async move {
        while let Some(m) = echo.recv().await {
            if let Some([tag, from, _]) = m.as_tuple() {
                if tag.is_atom("$gen_call") {
                    echo.reply(from, Term::atom("pong"));
                }
            }
        }
    });
    let mut me = a.spawn_mailbox();
    let mut rtts = vec![];
    for _ in 0..200 {
        let t0 = Instant::now();
        let r = me.call(&echo_pid, Term::atom("ping"), Duration::from_secs(5)).await.unwrap();
        rtts.push(t0.elapsed());
        assert!(r.is_atom("pong"));
    }
    rtts.sort();
    (bandwidth, rtts[rtts.len() / 2])
}

/// A `size`-byte binary in a message from a process on `a` to one on `b`
/// that answers with a small message: the median of `rounds`. What the
/// link alone takes to move a state's bytes there and hear back, without
/// the handoff's start, accept and name switch.
async fn message_and_reply(a: &Node, b: &Node, size: usize, rounds: usize) -> Duration {
    let mut echo = b.spawn_mailbox();
    let echo_pid = echo.pid().clone();
    let answering = tokio::spawn(async move {
        while let Some(m) = echo.recv().await {
            match m.as_tuple() {
                Some([Term::Pid(from), _]) => echo.send(from, Term::atom("ok")),
                _ => break,
            }
        }
    });
    let mut me = a.spawn_mailbox();
    let payload = Term::Binary(bytes::Bytes::from(vec![5u8; size]));
    let mut times = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let t0 = Instant::now();
        me.send(&echo_pid, Term::tuple([Term::Pid(me.pid().clone()), payload.clone()]));
        let r = me.recv_timeout(Duration::from_secs(10)).await.unwrap();
        times.push(t0.elapsed());
        assert!(r.is_atom("ok"));
    }
    me.send(&echo_pid, Term::atom("stop"));
    answering.await.unwrap();
    times.sort();
    times[times.len() / 2]
}
