//! Encode/decode throughput for three message shapes typical of
//! distribution traffic.

use bytes::Bytes;
use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use erlnode::term::{decode, decode_bytes, encode, Atom, Pid, Reference, Term};

fn pid(id: u32) -> Term {
    Term::Pid(Pid { node: Atom::new("app@host.example"), id, serial: 0, creation: 1_700_000_000 })
}

/// `{'$gen_call', {Pid, Ref}, {get, key, 42}}`
fn small_tuple() -> Term {
    let r = Term::Ref(Reference {
        node: Atom::new("app@host.example"),
        creation: 1_700_000_000,
        ids: [1, 2, 3].into_iter().collect(),
    });
    Term::tuple([
        Term::atom("$gen_call"),
        Term::tuple([pid(80), r]),
        Term::tuple([Term::atom("get"), Term::atom("key"), Term::Int(42)]),
    ])
}

/// `{data, Pid, <<_:1024/binary>>}`
fn binary_1k() -> Term {
    Term::tuple([Term::atom("data"), pid(81), Term::binary(vec![0xab; 1024])])
}

/// An Elixir-struct-like map with nested maps and lists.
fn nested_map() -> Term {
    // Keys in the order the BEAM sends small maps: sorted.
    let user = |i: i64| {
        Term::Map(vec![
            (Term::atom("__struct__"), Term::atom("Elixir.MyApp.User")),
            (Term::atom("id"), Term::Int(i)),
            (
                Term::atom("meta"),
                Term::Map(vec![
                    (Term::atom("active"), Term::atom("true")),
                    (Term::atom("created"), Term::Int(1_700_000_000_000)),
                ]),
            ),
            (Term::atom("name"), Term::from("Jane Doe")),
            (Term::atom("score"), Term::Float(97.5)),
            (Term::atom("tags"), Term::list([Term::from("admin"), Term::from("ops")])),
        ])
    };
    Term::Map(vec![
        (Term::atom("count"), Term::Int(8)),
        (Term::atom("users"), Term::list((0..8).map(user).collect::<Vec<_>>())),
    ])
}

fn bench(c: &mut Criterion) {
    let cases = [("small_tuple", small_tuple()), ("binary_1k", binary_1k()), ("nested_map", nested_map())];
    let mut enc = c.benchmark_group("encode");
    for (name, term) in &cases {
        enc.throughput(Throughput::Bytes(encode(term).len() as u64));
        enc.bench_with_input(BenchmarkId::from_parameter(name), term, |b, t| {
            b.iter(|| encode(black_box(t)))
        });
    }
    enc.finish();
    let mut dec = c.benchmark_group("decode");
    for (name, term) in &cases {
        let bytes = encode(term);
        dec.throughput(Throughput::Bytes(bytes.len() as u64));
        dec.bench_with_input(BenchmarkId::from_parameter(name), &bytes, |b, v| {
            b.iter(|| decode(black_box(v)).unwrap())
        });
    }
    dec.finish();
    let mut zc = c.benchmark_group("decode_bytes");
    for (name, term) in &cases {
        let bytes = Bytes::from(encode(term));
        zc.throughput(Throughput::Bytes(bytes.len() as u64));
        zc.bench_with_input(BenchmarkId::from_parameter(name), &bytes, |b, v| {
            b.iter(|| decode_bytes(black_box(v)).unwrap())
        });
    }
    zc.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
