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

use erlnode::gen_server::{Ctx, Flow, GenServer, Reply};
use erlnode::migration::messages::Op;
use erlnode::migration::{HandoffConfig, Migratable, Migration, Mode, NameRegistry};
use erlnode::{Node, Pid, Term};
use futures_util::future::BoxFuture;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const HOPS: usize = 40;

#[derive(Serialize, Deserialize)]
struct Blob {
    #[serde(with = "serde_bytes")]
    data: Vec<u8>,
    applied: i64,
}

#[derive(Deserialize)]
#[serde(rename_all = "snake_case")]
enum Cast {
    Bump,
    /// Pause until a `go` message arrives (the bench queues work behind it).
    Hold,
}

impl GenServer for Blob {
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

impl Migratable for Blob {
    const TYPE: &'static str = "bench_blob";
    type Args = usize;
    fn init_state(size: usize) -> Result<Self, Term> {
        Ok(Blob { data: vec![7; size], applied: 0 })
    }
}

/// Names shared by the two in-process nodes; `re_register` does a round
/// trip to every connected node like `global` does.
#[derive(Clone)]
struct Registry {
    names: Arc<Mutex<HashMap<String, Pid>>>,
    node: Node,
}

impl NameRegistry for Registry {
    fn whereis(&self, name: &str) -> Option<Pid> {
        self.names.lock().unwrap().get(name).cloned()
    }
    fn register<'a>(&'a self, name: &'a str, pid: &'a Pid) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            self.names.lock().unwrap().insert(name.into(), pid.clone());
            Ok(())
        })
    }
    fn re_register<'a>(&'a self, name: &'a str, pid: &'a Pid) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            self.names.lock().unwrap().insert(name.into(), pid.clone());
            for peer in self.node.connected_nodes() {
                self.node.try_ping(peer.as_str(), Duration::from_secs(10)).await.map_err(|e| e.to_string())?;
            }
            Ok(())
        })
    }
}

fn cast(m: &str) -> Term {
    Term::tuple([Term::atom("$gen_cast"), Term::atom(m)])
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    rt.block_on(run());
}

async fn run() {
    let epmd = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let tag = std::process::id();
    let a = Node::builder(format!("hb_a_{tag}@127.0.0.1")).cookie("bench").epmd_port(epmd).start().await.unwrap();
    let b = Node::builder(format!("hb_b_{tag}@127.0.0.1")).cookie("bench").epmd_port(epmd).start().await.unwrap();
    a.connect(b.name().as_str()).await.unwrap();
    let names = Arc::new(Mutex::new(HashMap::new()));
    let cfg = HandoffConfig { retention: Duration::from_millis(50), rebalance_on_join: false, ..Default::default() };
    let ma = Migration::start(&a, Arc::new(Registry { names: names.clone(), node: a.clone() }), cfg.clone()).unwrap();
    let mb = Migration::start(&b, Arc::new(Registry { names: names.clone(), node: b.clone() }), cfg).unwrap();
    ma.register_type::<Blob>();
    mb.register_type::<Blob>();

    let (node_bandwidth, rtt) = floor(&a, &b).await;
    let bandwidth = raw_loopback_bandwidth().await;
    println!(
        "loopback TCP: {:.0} MB/s; erlnode node-to-node (64 MB message): {:.0} MB/s; round trip {:.0} us",
        bandwidth / 1e6,
        node_bandwidth / 1e6,
        rtt.as_secs_f64() * 1e6
    );
    println!();
    println!("| state | queue | p50 | p99 | floor (bytes/bandwidth + RTT) | p50 / floor |");
    println!("|---|---|---|---|---|---|");
    for (size, label) in [(1024usize, "1 KB"), (1024 * 1024, "1 MB")] {
        for queue in [0usize, 1000] {
            let name = format!("blob_{size}_{queue}");
            ma.start_process::<Blob>(size, &name).await.unwrap();
            let mut lat = Vec::with_capacity(HOPS);
            let mut me = a.spawn_mailbox();
            for hop in 0..HOPS {
                let src = names.lock().unwrap().get(&name).cloned().unwrap();
                let target = if src.node == *a.name() { b.name().clone() } else { a.name().clone() };
                me.send(&src, cast("hold"));
                let reference = a.make_ref();
                let begin = Op::Begin { reference: reference.clone(), target, mode: Mode::Hot, reply_to: Some(me.pid().clone()) };
                me.send(&src, begin.to_term());
                for _ in 0..queue {
                    me.send(&src, cast("bump"));
                }
                let t0 = Instant::now();
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
            lat.sort();
            let p50 = lat[lat.len() / 2];
            let p99 = lat[(lat.len() * 99 / 100).min(lat.len() - 1)];
            let floor = Duration::from_secs_f64(size as f64 / bandwidth) + rtt;
            println!(
                "| {label} | {queue} | {:.2} ms | {:.2} ms | {:.3} ms | {:.1}x |",
                ms(p50),
                ms(p99),
                ms(floor),
                p50.as_secs_f64() / floor.as_secs_f64()
            );
        }
    }
    a.shutdown().await;
    b.shutdown().await;
}

/// The physical floor: raw TCP over loopback, 256 MB in 1 MB writes.
async fn raw_loopback_bandwidth() -> f64 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    const TOTAL: usize = 256 * 1024 * 1024;
    let reader = tokio::spawn(async move {
        let (mut s, _) = l.accept().await.unwrap();
        let mut buf = vec![0u8; 1024 * 1024];
        let mut got = 0;
        while got < TOTAL {
            got += s.read(&mut buf).await.unwrap();
        }
    });
    let mut w = tokio::net::TcpStream::connect(addr).await.unwrap();
    let chunk = vec![3u8; 1024 * 1024];
    let t0 = Instant::now();
    for _ in 0..TOTAL / chunk.len() {
        w.write_all(&chunk).await.unwrap();
    }
    reader.await.unwrap();
    TOTAL as f64 / t0.elapsed().as_secs_f64()
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Loopback bandwidth between the two nodes (a 64 MB binary, a -> b, as
/// a message) and the round trip of a small message.
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
            if let Some(Term::Pid(p)) = m.as_tuple().and_then(|t| t.first()) {
                echo.send(p, Term::atom("pong"));
            }
        }
    });
    let mut me = a.spawn_mailbox();
    let mut rtts = vec![];
    for _ in 0..200 {
        let t0 = Instant::now();
        me.send(&echo_pid, Term::tuple([Term::Pid(me.pid().clone())]));
        me.recv_timeout(Duration::from_secs(5)).await.unwrap();
        rtts.push(t0.elapsed());
    }
    rtts.sort();
    (bandwidth, rtts[rtts.len() / 2])
}
