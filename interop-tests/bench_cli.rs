//! `erlnode bench` against a small real cluster: two Elixir nodes running
//! erlnode_ex and two `erlnode run` nodes. The table has every direction
//! (Rust -> Rust, Rust -> Elixir, Elixir -> Rust and the Elixir -> Elixir
//! baseline) for each measurement, a ratio on every non-baseline row, and
//! the bench leaves nothing behind (no bench process, no global name, no
//! client node). With one Elixir node left (the `make demo` layout)
//! `bench handoff` prints the four directions and says there is no
//! baseline. A node that does not host the bench type is refused in
//! words. No timing is asserted.

use crate::support::{self, BeamNode, Epmd};
use erlnode::examples::counter::Counter;
use erlnode::prelude::*;
use std::time::{Duration, Instant};

const T: Duration = Duration::from_secs(120);

/// Waits (at most 30 s) until `expr`, evaluated on `on`, is `[]`; panics
/// with the last value otherwise. Global unregisters a stopped process's
/// name on every node after it exits, a moment after the bench has seen
/// it stop.
async fn until_empty(on: &BeamNode, expr: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let v = on.eval(expr).await;
        if v == Term::nil() {
            return;
        }
        assert!(Instant::now() < deadline, "still left after the bench: {v:?} ({expr})");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// What the bench left on the cluster, as seen from `on`: global names
/// and hosted processes of the bench type on each of `nodes`, client nodes.
async fn assert_clean(on: &BeamNode, nodes: &[&str]) {
    until_empty(on, "[N || N <- global:registered_names(), is_atom(N), lists:prefix(\"erlnode_bench\", atom_to_list(N))]").await;
    for n in nodes {
        let expr = format!("[X || {{_, <<\"erlnode_bench\">>}} = X <- 'Elixir.Erlnode.Migration':hosted('{n}')]");
        until_empty(on, &expr).await;
    }
    until_empty(on, "[N || N <- nodes(hidden), lists:prefix(\"erlnode_ctl_\", atom_to_list(N))]").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn bench_prints_every_direction_and_cleans_up() {
    support::require_erlang();
    let epmd = Epmd::start().await;
    let cookie = support::unique("bench_cli");
    let start = || BeamNode::builder().prefix("bench_ex").cookie(&cookie).epmd_port(epmd.port()).erlnode_ex(true).start();
    let (ex1, mut ex2) = (start().await, start().await);
    for e in [&ex1, &ex2] {
        assert_eq!(e.eval("element(1, application:ensure_all_started(erlnode_ex))").await, Term::atom("ok"));
    }
    let (r1, r2) = (format!("{}@127.0.0.1", support::unique("bench_r1")), format!("{}@127.0.0.1", support::unique("bench_r2")));
    let _n1 = support::Erlnode::run(&r1, &cookie, epmd.port(), &[]).await;
    let _n2 = support::Erlnode::run(&r2, &cookie, epmd.port(), &[]).await;
    for n in [r1.as_str(), r2.as_str(), ex2.name()] {
        assert_eq!(ex1.eval(&format!("net_adm:ping('{n}')")).await, Term::atom("pong"), "{n}");
    }
    ex1.eval("global:sync()").await;
    let port = epmd.port().to_string();
    let common = ["--cookie", cookie.as_str(), "--epmd-port", port.as_str()];

    let args = ["bench", "--via", ex1.name(), "--rounds", "3", "--calls", "20", "--messages", "200", "--queue", "5", "--state-size", "2K"];
    let mut bench = support::Erlnode::spawn([&args[..], &common[..]].concat());
    let status = bench.wait_exit(T).await.expect("bench exits");
    let out = bench.output();
    assert!(status.success(), "{out:?}");
    let header = out.iter().position(|l| l.starts_with("measurement")).unwrap_or_else(|| panic!("a table: {out:?}"));
    assert!(out[header].contains("vs Elixir -> Elixir"), "{out:?}");
    let rows: Vec<Vec<String>> = out[header + 2..]
        .iter()
        .take_while(|l| l.contains(" | "))
        .map(|l| l.split(" | ").map(|c| c.trim().to_string()).collect())
        .collect();
    // Three pairs (Rust/Rust, Rust/Elixir, Elixir/Elixir), both directions,
    // three measurements.
    assert_eq!(rows.len(), 18, "{out:?}");
    for what in ["handoff, state 2 KB, queue 5", "GenServer.call round trip", "one-way messages, 64 B payload"] {
        let kinds: Vec<&str> = rows.iter().filter(|r| r[0] == what).map(|r| r[3].as_str()).collect();
        for k in ["Rust -> Rust", "Rust -> Elixir", "Elixir -> Rust", "Elixir -> Elixir"] {
            assert!(kinds.contains(&k), "{what}: {k} missing in {out:?}");
        }
    }
    for r in &rows {
        assert_eq!(r.len(), 7, "{r:?}");
        assert!([r1.as_str(), r2.as_str(), ex1.name(), ex2.name()].contains(&r[1].as_str()) && r[1] != r[2], "{r:?}");
        let expect_vs = if r[3] == "Elixir -> Elixir" { r[6] == "baseline" } else { r[6].ends_with('x') && r[6].trim_end_matches('x').parse::<f64>().is_ok() };
        assert!(expect_vs, "{r:?}");
        assert!(r[4].starts_with("p50 ") || r[4].ends_with(" msgs/s"), "{r:?}");
    }
    assert!(out.iter().any(|l| l.starts_with("bench: handoff")), "a progress line on stderr: {out:?}");
    assert_clean(&ex1, &[r1.as_str(), r2.as_str(), ex1.name(), ex2.name()]).await;

    // The `make demo` layout: two erlnode nodes and one Elixir node.
    // `bench handoff` prints the four directions, without a baseline.
    let gone = ex2.name().to_string();
    ex2.stop().await;
    until_empty(&ex1, &format!("[N || N <- nodes(), N == '{gone}']")).await;
    let args = ["bench", "handoff", "--via", ex1.name(), "--rounds", "2"];
    let mut demo = support::Erlnode::spawn([&args[..], &common[..]].concat());
    let status = demo.wait_exit(T).await.expect("bench exits");
    let out = demo.output();
    assert!(status.success(), "{out:?}");
    let header = out.iter().position(|l| l.starts_with("measurement")).unwrap_or_else(|| panic!("a table: {out:?}"));
    let rows: Vec<Vec<String>> =
        out[header + 2..].iter().take_while(|l| l.contains(" | ")).map(|l| l.split(" | ").map(|c| c.trim().to_string()).collect()).collect();
    let mut kinds: Vec<&str> = rows.iter().map(|r| r[3].as_str()).collect();
    kinds.sort();
    assert_eq!(kinds, ["Elixir -> Rust", "Rust -> Elixir", "Rust -> Rust", "Rust -> Rust"], "{out:?}");
    assert!(rows.iter().all(|r| r[0] == "handoff, state 1 KB, queue 0" && r[6] == "-"), "{out:?}");
    assert!(out.iter().any(|l| l.starts_with("(no Elixir -> Elixir baseline")), "{out:?}");
    assert_clean(&ex1, &[r1.as_str(), r2.as_str(), ex1.name()]).await;

    // A node without the bench type (a migration manager hosting only
    // counters) is refused in words, and nothing is left behind.
    let plain = support::rust_node("bench_plain", &cookie, epmd.port()).await;
    let _m = Migration::builder(&plain).register::<Counter>().rebalance_on_join(false).start().unwrap();
    plain.connect(ex1.name()).await.unwrap();
    let args = ["bench", "handoff", "--via", ex1.name(), "--between", plain.name().as_str(), ex1.name(), "--rounds", "2"];
    let mut refused = support::Erlnode::spawn([&args[..], &common[..]].concat());
    let status = refused.wait_exit(T).await.expect("bench exits");
    let out = refused.output().join("\n");
    assert_eq!(status.code(), Some(1), "{out}");
    assert!(out.contains(&format!("{} does not host the bench type \"erlnode_bench\"", plain.name())), "{out}");
    assert_clean(&ex1, &[r1.as_str(), ex1.name()]).await;
    plain.shutdown().await;
}
