//! One-way throughput over TLS distribution (`-proto_dist inet_tls`),
//! measured in one run: BEAM -> BEAM over TLS (the baseline), BEAM -> Rust
//! and Rust -> BEAM over TLS, for small messages and for 64 KiB binaries.
//! Run with `cargo bench --bench tls_throughput`.
//!
//! As benches/throughput.rs: N tuples `{msg, I, Payload}` from one sender
//! to a registered sink on another node, which counts them and answers
//! `done`; rate = N over first send .. `done`; median of 3 rounds. The
//! certificates (a CA, ECDSA P-256 node certificates, mutual TLS with
//! verify_peer) are made with `openssl` in a temp dir.

#[path = "common/sink.rs"]
mod sink;
#[path = "common/summary.rs"]
mod summary;
#[path = "../interop-tests/support/mod.rs"]
#[allow(dead_code)]
mod support;

use erlnode::tls::TlsConfig;
use erlnode::Term;
use std::time::{Duration, Instant};
use sink::{median, rate, rust_sink, ERL_SINK};
use support::{certs::Certs, BeamNode, Epmd};

const ROUNDS: usize = 3;
const LONG: Duration = Duration::from_secs(320);

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    rt.block_on(run());
}


async fn tls_beam(prefix: &str, cookie: &str, epmd: u16, certs: &Certs) -> BeamNode {
    support::certs::tls_beam_builder(prefix, cookie, epmd, &certs.good_beam).start().await
}

async fn run() {
    support::require_erlang();
    let certs = Certs::new();
    let epmd = Epmd::start().await;
    let cookie = support::unique("bench");
    let rust = support::rust_node_builder("rust", &cookie, epmd.port())
        .tls(TlsConfig::from_ssl_dist_optfile(&certs.good_host).unwrap())
        .start()
        .await
        .unwrap();
    let a = tls_beam("a", &cookie, epmd.port(), &certs).await;
    let b = tls_beam("b", &cookie, epmd.port(), &certs).await;
    for n in [&a, &b] {
        n.eval(ERL_SINK).await;
    }
    assert_eq!(a.eval(&format!("net_adm:ping('{}')", b.name())).await, Term::atom("pong"));
    assert!(rust.ping(a.name()).await && rust.ping(b.name()).await);
    let tls = a.eval(&format!("is_pid(proplists:get_value('{}', erlang:system_info(dist_ctrl)))", b.name())).await;
    assert_eq!(tls, Term::atom("true"), "the BEAM -> BEAM link is inet_tls_dist's");

    let rounds = summary::pick(ROUNDS, 1);
    println!("| payload | direction | msgs/s (median of {rounds}) | MB/s | ratio to BEAM -> BEAM |");
    println!("|---|---|---|---|---|");
    for (n, size) in [(summary::pick(100_000i64, 20_000), 7usize), (summary::pick(2_000, 400), 65_536)] {
        let mut bb = vec![];
        let mut br = vec![];
        let mut rb = vec![];
        for round in 0..rounds {
            b.eval(&format!("StartSink({n})")).await;
            let us = a.try_eval_timeout(&format!("Blast({{bench_sink, '{}'}}, {n}, {size})", b.name()), LONG).await;
            bb.push(rate(n, micros(us)));

            let sink = rust_sink(&rust, n);
            let us = a.try_eval_timeout(&format!("Blast({{bench_sink, '{}'}}, {n}, {size})", rust.name()), LONG).await;
            br.push(rate(n, micros(us)));
            drop(sink);

            b.eval(&format!("StartSink({n})")).await;
            let Term::Pid(sink) = b.eval("whereis(bench_sink)").await else { panic!("no sink") };
            let mut mb = rust.spawn_mailbox();
            let me = mb.pid().clone();
            rust.send_async(&sink, Term::tuple([Term::atom("start"), Term::Pid(me.clone())])).await.expect("send");
            let payload = Term::binary(vec![b'p'; size]);
            let t0 = Instant::now();
            for i in (1..=n).rev() {
                let msg = Term::tuple([Term::atom("msg"), Term::Int(i), payload.clone()]);
                // With backpressure (the link's busy limit), as a BEAM
                // sender is suspended on a busy port.
                rust.send_async(&sink, msg).await.expect("send");
            }
            let done = mb.recv_timeout(Duration::from_secs(300)).await.unwrap();
            assert!(done.is_atom("done"));
            rb.push(n as f64 / t0.elapsed().as_secs_f64());
            eprintln!("payload {size} round {round}: beam->beam {:.0}/s beam->rust {:.0}/s rust->beam {:.0}/s", bb[round], br[round], rb[round]);
        }
        let (bb, br, rb) = (median(bb), median(br), median(rb));
        let mbs = |r: f64| r * size as f64 / 1e6;
        println!("| {size} B | BEAM -> BEAM | {bb:.0} | {:.1} | 1.00 |", mbs(bb));
        println!("| {size} B | BEAM -> Rust | {br:.0} | {:.1} | {:.2} |", mbs(br), br / bb);
        println!("| {size} B | Rust -> BEAM | {rb:.0} | {:.1} | {:.2} |", mbs(rb), rb / bb);
        for (dir, r) in [("BEAM -> Rust", br), ("Rust -> BEAM", rb)] {
            summary::summary("tls_throughput", &format!("{size} B over TLS, {dir}"), &format!("{r:.0} msgs/s"), &format!("{bb:.0} msgs/s"), Some(r / bb), ">= 1x");
        }
    }
    rust.shutdown().await;
}

fn micros(r: Result<Term, String>) -> i64 {
    r.expect("Blast").as_int().expect("microseconds")
}
