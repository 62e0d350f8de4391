//! `erlang:phash2/1,2` against ERTS itself: a BEAM node of the run's
//! release (the host's OTP 25, or OTP 27 in `make test-otp`) generates
//! 100,000 random terms of every kind (phash2/phash2gen.erl, on top of
//! tests/term_vs_erl/termgen.erl), hashes each with `phash2/1` and
//! `phash2/2` over ten fixed ranges (2^32 included) and a random one, and
//! sends term and hashes back; every Rust value must be equal.

use crate::support::{self, otp, BeamNode};
use erlnode::term::phash2::{make_hash2, phash2, phash2_range};
use erlnode::term::{decode_with_cache, DecodeLimits, Term};
use std::time::{Duration, Instant};

const TERMGEN: &str = include_str!("../tests/term_vs_erl/termgen.erl");
const PHASH2GEN: &str = include_str!("phash2/phash2gen.erl");
const BATCHES: u32 = 10;
const PER_BATCH: u32 = 10_000;

/// Writes the generator modules into the node's /tmp (a chroot node sees
/// only its root) and loads them; a fun keeps the eval's bindings clean.
async fn load_generators(beam: &BeamNode) {
    let dir = format!("/tmp/{}", support::unique("phash2gen"));
    for (name, src) in [("termgen", TERMGEN), ("phash2gen", PHASH2GEN)] {
        let r = beam
            .eval(&format!(
                "(fun() -> Dir = \"{dir}\", ok = filelib:ensure_dir(Dir ++ \"/x\"),
                 Path = Dir ++ \"/{name}.erl\",
                 ok = file:write_file(Path, binary:decode_hex(<<\"{}\">>)),
                 {{ok, M, Bin}} = compile:file(Path, [binary, export_all, nowarn_export_all, return_errors]),
                 {{module, M}} = code:load_binary(M, Path, Bin),
                 file:delete(Path), M end)()",
                support::hex_encode(src.as_bytes())
            ))
            .await;
        assert_eq!(r, Term::atom(name), "loading {name}");
    }
    beam.eval(&format!("file:del_dir(\"{dir}\")")).await;
}

/// Which kinds of terms were hashed (each must occur).
#[derive(Default, Debug)]
struct Kinds {
    atom: usize,
    small: usize,
    int28: usize,
    big: usize,
    float: usize,
    binary: usize,
    bits: usize,
    byte_list: usize,
    list: usize,
    improper: usize,
    tuple: usize,
    map: usize,
    large_map: usize,
    pid: usize,
    port: usize,
    reference: usize,
    fun: usize,
}

impl Kinds {
    fn add(&mut self, t: &Term) {
        let mut todo = vec![t];
        while let Some(t) = todo.pop() {
            match t {
                Term::Atom(_) => self.atom += 1,
                Term::Int(i) if (-(1 << 27)..(1 << 27)).contains(i) => self.small += 1,
                Term::Int(_) => self.int28 += 1,
                Term::Big(_) => self.big += 1,
                Term::Float(_) => self.float += 1,
                Term::Binary(_) => self.binary += 1,
                Term::BitBinary { .. } => self.bits += 1,
                Term::List(v) => {
                    self.list += 1;
                    if v.len() > 1 && v.iter().all(|e| matches!(e, Term::Int(0..=255))) {
                        self.byte_list += 1;
                    }
                    todo.extend(v);
                }
                Term::ImproperList(v, tail) => {
                    self.improper += 1;
                    todo.extend(v);
                    todo.push(tail);
                }
                Term::Tuple(v) => {
                    self.tuple += 1;
                    todo.extend(v);
                }
                // The generator makes none (OTP 25 and 27 have no native
                // records); counted with tuples should one appear.
                Term::Record(r) => {
                    self.tuple += 1;
                    todo.extend(r.fields().iter().map(|(_, v)| v));
                }
                Term::Map(m) => {
                    self.map += 1;
                    self.large_map += usize::from(m.len() > 32);
                    m.iter().for_each(|(k, v)| todo.extend([k, v]));
                }
                Term::Pid(_) => self.pid += 1,
                Term::Port(_) => self.port += 1,
                Term::Ref(_) => self.reference += 1,
                Term::Fun(_) => self.fun += 1,
            }
        }
    }

    fn merge(&mut self, o: &Kinds) {
        let pairs = [
            (&mut self.atom, o.atom),
            (&mut self.small, o.small),
            (&mut self.int28, o.int28),
            (&mut self.big, o.big),
            (&mut self.float, o.float),
            (&mut self.binary, o.binary),
            (&mut self.bits, o.bits),
            (&mut self.byte_list, o.byte_list),
            (&mut self.list, o.list),
            (&mut self.improper, o.improper),
            (&mut self.tuple, o.tuple),
            (&mut self.map, o.map),
            (&mut self.large_map, o.large_map),
            (&mut self.pid, o.pid),
            (&mut self.port, o.port),
            (&mut self.reference, o.reference),
            (&mut self.fun, o.fun),
        ];
        for (a, b) in pairs {
            *a += b;
        }
    }

    fn all_seen(&self) -> bool {
        let s = self;
        [
            s.atom, s.small, s.int28, s.big, s.float, s.binary, s.bits, s.byte_list, s.list, s.improper,
            s.tuple, s.map, s.large_map, s.pid, s.port, s.reference, s.fun,
        ]
        .iter()
        .all(|&n| n > 0)
    }
}

fn int(t: &Term) -> u64 {
    match t {
        Term::Int(i) => u64::try_from(*i).expect("a hash is not negative"),
        Term::Big(b) => u64::try_from(b).expect("a range fits in u64"),
        t => panic!("not an integer: {t:?}"),
    }
}

/// What one batch showed.
#[derive(Default)]
struct Checked {
    terms: usize,
    values: usize,
    kinds: Kinds,
    mismatches: Vec<String>,
}

/// Decodes a batch of `{T, phash2(T), [{Range, phash2(T, Range)}]}` and
/// compares every value.
fn check_batch(raw: &[u8], c: &mut Checked) {
    let limits = DecodeLimits { max_depth: 2_000, ..Default::default() };
    let (batch, _) = decode_with_cache(raw, &[], &limits).expect("batch decodes");
    let Term::List(records) = batch else { panic!("batch: {batch:?}") };
    for rec in &records {
        let [t, p1, ranged] = rec.as_tuple().expect("record") else { panic!("record {rec:?}") };
        c.kinds.add(t);
        c.terms += 1;
        let mut check = |what: &dyn Fn() -> String, ours: u64, erts: u64| {
            c.values += 1;
            if ours != erts && c.mismatches.len() < 10 {
                c.mismatches.push(format!("{}: Rust {ours}, ERTS {erts}, T = {t:?}", what()));
            }
        };
        check(&|| "phash2(T)".into(), phash2(t).into(), int(p1));
        let Term::List(ranged) = ranged else { panic!("ranges {ranged:?}") };
        let full = make_hash2(t);
        for pair in ranged {
            let [r, h] = pair.as_tuple().expect("{R, H}") else { panic!("{pair:?}") };
            let r = int(r);
            check(&|| format!("phash2(T, {r})"), phash2_range(t, r).into(), int(h));
            if r == 1 << 32 {
                check(&|| "make_hash2(T)".into(), full.into(), int(h));
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn phash2_equals_erts_on_100k_random_terms() {
    support::require_erlang();
    let release = otp::release();
    let beam = BeamNode::builder().prefix("phash2").start().await;
    load_generators(&beam).await;
    let started = Instant::now();
    let batch = |seed: u32| {
        let beam = &beam;
        async move {
            beam.eval_raw_timeout(&format!("phash2gen:batch({seed}, {PER_BATCH})"), Duration::from_secs(120))
                .await
                .unwrap_or_else(|e| panic!("OTP {release}: batch {seed}: {e}"))
        }
    };
    // The BEAM makes batch n + 1 while Rust checks batch n.
    let mut checked = Checked::default();
    let mut raw = batch(0).await;
    for seed in 1..=BATCHES {
        let check = tokio::task::spawn_blocking(move || {
            let mut c = Checked::default();
            check_batch(&raw, &mut c);
            c
        });
        let next = async {
            if seed < BATCHES {
                batch(seed).await
            } else {
                Vec::new()
            }
        };
        let (c, next) = tokio::join!(check, next);
        let c = c.expect("check task");
        assert!(c.mismatches.is_empty(), "OTP {release}: phash2 differs from ERTS:\n{}", c.mismatches.join("\n"));
        checked.terms += c.terms;
        checked.values += c.values;
        checked.kinds.merge(&c.kinds);
        raw = next;
    }
    let (terms, kinds) = (checked.terms, &checked.kinds);
    assert!(terms >= (BATCHES * PER_BATCH) as usize, "only {terms} terms");
    assert!(kinds.all_seen(), "OTP {release}: a kind of term never came up: {kinds:?}");
    eprintln!(
        "OTP {release}: {terms} terms, {} phash2 values equal to ERTS in {:?}; kinds {kinds:?}",
        checked.values,
        started.elapsed()
    );
}
