//! `make_hash2` (erlang:phash2) throughput on shapes Horde hashes, with a
//! BEAM baseline measured in the same run: `erl` times `erlang:phash2/2`
//! on the very same terms (sent as ETF) and the ratio is printed at the
//! end. Without `erl` on PATH only the Rust numbers are reported.

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion};
use erlnode::term::phash2::make_hash2;
use erlnode::term::{encode, Atom, Pid, Term};
use std::process::{Command, Stdio};
use std::time::Instant;

fn pid(id: u32) -> Term {
    Term::Pid(Pid { node: Atom::new("rust@127.0.0.1"), id, serial: 0, creation: 1_700_000_000 })
}

/// The shapes: a registry key, a registry entry, a child spec, a Merkle
/// leaf (a map of 8 keys), a 1 KiB binary, a 300-key map.
fn cases() -> Vec<(&'static str, Term)> {
    let key = Term::tuple([Term::atom("key"), Term::from("user:1234")]);
    let entry = Term::tuple([
        Term::tuple([Term::atom("Elixir.Reg"), Term::atom("ex1@127.0.0.1")]),
        pid(80),
        Term::Map(vec![(Term::atom("role"), Term::atom("worker"))]),
    ]);
    let spec = Term::Map(vec![
        (Term::atom("restart"), Term::atom("transient")),
        (
            Term::atom("start"),
            Term::tuple([
                Term::atom("Elixir.MyApp.Worker"),
                Term::atom("start_link"),
                Term::list([Term::Map(vec![(Term::atom("n"), Term::Int(1))])]),
            ]),
        ),
    ]);
    let leaf = Term::Map((0..8).map(|i| (Term::tuple([Term::atom("key"), Term::Int(i)]), Term::Int(i * 7))).collect());
    let big_map = Term::Map((0..300).map(|i| (Term::Int(i), Term::from("value"))).collect());
    vec![
        ("registry_key", key),
        ("registry_entry", entry),
        ("child_spec", spec),
        ("merkle_leaf_8", leaf),
        ("binary_1k", Term::binary(vec![0xab; 1024])),
        ("map_300", big_map),
    ]
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// A compiled timing loop (erl_eval's interpreted funs would dominate).
const TIMER: &str = "-module(p2bench).
-export([time/2]).
time(T, N) ->
    _ = loop(T, 20000, 0),
    T0 = erlang:monotonic_time(nanosecond),
    _ = loop(T, N, 0),
    (erlang:monotonic_time(nanosecond) - T0) / N.
loop(_, 0, Acc) -> Acc;
loop(T, N, Acc) -> loop(T, N - 1, Acc bxor erlang:phash2(T, 4294967296)).
";

/// ns per `erlang:phash2(T, 1 bsl 32)` for each case, measured by `erl`.
fn beam_ns(cases: &[(&'static str, Term)]) -> Option<Vec<f64>> {
    let dir = tempfile::tempdir().ok()?;
    let src = dir.path().join("p2bench.erl");
    std::fs::write(&src, TIMER).ok()?;
    let terms: Vec<String> = cases.iter().map(|(_, t)| format!("<<\"{}\">>", hex(&encode(t)))).collect();
    let expr = format!(
        "{{ok, p2bench, Bin}} = compile:file({:?}, [binary]),
         {{module, p2bench}} = code:load_binary(p2bench, \"p2bench.erl\", Bin),
         Ts = [binary_to_term(binary:decode_hex(H)) || H <- [{}]],
         io:format(\"~w~n\", [[p2bench:time(T, 200000) || T <- Ts]]), halt().",
        src.display().to_string(),
        terms.join(",")
    );
    let out = Command::new("erl").args(["-noshell", "-eval", &expr]).stdin(Stdio::null()).output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let inner = text.trim().strip_prefix('[')?.strip_suffix(']')?;
    inner.split(',').map(|s| s.trim().parse::<f64>().ok()).collect()
}

fn bench(c: &mut Criterion) {
    let cases = cases();
    let mut g = c.benchmark_group("phash2");
    for (name, term) in &cases {
        g.bench_with_input(BenchmarkId::from_parameter(name), term, |b, t| b.iter(|| make_hash2(black_box(t))));
    }
    g.finish();

    // A quick own timing next to the BEAM's, for the ratio.
    let beam = beam_ns(&cases);
    eprintln!("\nphash2(T, 2^32), ns per call: Rust vs BEAM (erl, same terms, same run)");
    for (i, (name, term)) in cases.iter().enumerate() {
        let n = 200_000u32;
        let t0 = Instant::now();
        for _ in 0..n {
            black_box(make_hash2(black_box(term)));
        }
        let rust = t0.elapsed().as_nanos() as f64 / f64::from(n);
        match &beam {
            Some(b) => {
                eprintln!("  {name:<16} rust {rust:>9.1}  beam {:>9.1}  beam/rust {:>5.2}", b[i], b[i] / rust);
                // The summary line `make bench` gathers (benches/common/summary.rs).
                println!("SUMMARY\tphash2\tphash2 {name}\t{rust:.1} ns\t{:.1} ns\t{:.2}x\t>= 1x", b[i], b[i] / rust);
            }
            None => eprintln!("  {name:<16} rust {rust:>9.1}  (no erl on PATH: no baseline)"),
        }
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
