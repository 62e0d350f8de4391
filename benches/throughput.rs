//! End-to-end one-way throughput of small messages, measured in one run
//! on one machine: BEAM -> BEAM (the baseline), BEAM -> Rust and
//! Rust -> BEAM. Run with `make bench` or `cargo bench --bench throughput`.
//!
//! Each direction sends N small tuples `{msg, I, <<"payload">>}` from one
//! sender to a registered sink on another node; the sink counts them and
//! answers `done`; the rate is N over the time from the first send to
//! `done`. Three rounds per direction; the median is reported.

#[path = "common/sink.rs"]
mod sink;
#[path = "../interop-tests/support/mod.rs"]
#[allow(dead_code)]
mod support;

use erlnode::Term;
use sink::{median, rate, rust_sink, ERL_SINK};
use std::time::{Duration, Instant};
use support::{BeamNode, Epmd};

const N: i64 = 200_000;
const ROUNDS: usize = 3;

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    rt.block_on(run());
}


async fn run() {
    support::require_erlang();
    let epmd = Epmd::start().await;
    let cookie = support::unique("bench");
    let rust = support::rust_node_builder("rust", &cookie, epmd.port())
        .start()
        .await
        .unwrap();
    let a = BeamNode::builder().prefix("a").cookie(&cookie).epmd_port(epmd.port()).start().await;
    let b = BeamNode::builder().prefix("b").cookie(&cookie).epmd_port(epmd.port()).start().await;
    for n in [&a, &b] {
        n.eval(ERL_SINK).await;
    }
    assert_eq!(a.eval(&format!("net_adm:ping('{}')", b.name())).await, Term::atom("pong"));
    assert!(rust.ping(a.name()).await && rust.ping(b.name()).await);

    let mut beam_beam = vec![];
    let mut beam_rust = vec![];
    let mut rust_beam = vec![];
    for round in 0..ROUNDS {
        // BEAM -> BEAM
        b.eval(&format!("StartSink({N})")).await;
        let us = a.eval(&format!("Blast({{bench_sink, '{}'}}, {N}, 7)", b.name())).await.as_int().unwrap();
        beam_beam.push(rate(N, us));

        // BEAM -> Rust
        let sink = rust_sink(&rust, N);
        let us = a.eval(&format!("Blast({{bench_sink, '{}'}}, {N}, 7)", rust.name())).await.as_int().unwrap();
        beam_rust.push(rate(N, us));
        drop(sink);

        // Rust -> BEAM
        b.eval(&format!("StartSink({N})")).await;
        let mut mb = rust.spawn_mailbox();
        let me = mb.pid().clone();
        rust.send_named(&me, "bench_sink", b.name(), Term::tuple([Term::atom("start"), Term::Pid(me.clone())]));
        let payload = Term::binary(&b"payload"[..]);
        let t0 = Instant::now();
        let sink_name = b.name().to_string();
        for i in (1..=N).rev() {
            rust.send_named(&me, "bench_sink", &sink_name, Term::tuple([Term::atom("msg"), Term::Int(i), payload.clone()]));
        }
        let done = mb.recv_timeout(Duration::from_secs(120)).await.unwrap();
        assert!(done.is_atom("done"));
        rust_beam.push(N as f64 / t0.elapsed().as_secs_f64());
        eprintln!("round {round}: beam->beam {:.0}/s beam->rust {:.0}/s rust->beam {:.0}/s", beam_beam[round], beam_rust[round], rust_beam[round]);
    }
    let (bb, br, rb) = (median(beam_beam), median(beam_rust), median(rust_beam));
    println!("| direction | msgs/s (median of {ROUNDS}, N = {N}) | ratio to BEAM -> BEAM |");
    println!("|---|---|---|");
    println!("| BEAM -> BEAM | {bb:.0} | 1.00 |");
    println!("| BEAM -> Rust | {br:.0} | {:.2} |", br / bb);
    println!("| Rust -> BEAM | {rb:.0} | {:.2} |", rb / bb);
    rust.shutdown().await;
}
