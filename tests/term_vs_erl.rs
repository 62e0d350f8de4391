//! Differential test against a real BEAM: erl generates terms, Rust decodes
//! and re-encodes them, and a second erl checks that every re-encoding
//! decodes `=:=` to the original. Requires `erl` (Erlang/OTP) on PATH; a
//! missing `erl` is a failure, not a skip, so CI cannot pass vacuously.

use erlnode::term::{
    decode, decode_bytes, decode_with_cache, encode, encode_latin1_atoms, DecodeLimits, Term,
};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const TERMGEN: &str = include_str!("term_vs_erl/termgen.erl");
const COUNT: usize = 2000;
const ERL_TIMEOUT: Duration = Duration::from_secs(120);

/// Runs `erl -noshell -eval EXPR -s init stop` in `dir`, killing it if it
/// outlives the timeout; returns its stdout.
fn run_erl(dir: &Path, expr: &str) -> String {
    let mut child = Command::new("erl")
        .current_dir(dir)
        .args(["-noshell", "-pa"])
        .arg(dir)
        .args(["-eval", expr, "-s", "init", "stop"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run `erl` ({e}). This test needs Erlang/OTP on PATH \
                 (e.g. `apt-get install erlang-nox`) to generate and check terms."
            )
        });
    let deadline = Instant::now() + ERL_TIMEOUT;
    loop {
        match child.try_wait().expect("waiting for erl") {
            Some(_) => break,
            None if Instant::now() > deadline => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("erl did not finish within {ERL_TIMEOUT:?}: {expr}");
            }
            None => std::thread::sleep(Duration::from_millis(20)),
        }
    }
    let out = child.wait_with_output().expect("collecting erl output");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "erl failed ({}): {stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// Records written by termgen:generate/2.
fn records(buf: &[u8]) -> Vec<(u8, &[u8])> {
    let mut out = Vec::new();
    let mut rest = buf;
    while !rest.is_empty() {
        let flavor = rest[0];
        let len = u32::from_be_bytes(rest[1..5].try_into().unwrap()) as usize;
        out.push((flavor, &rest[5..5 + len]));
        rest = &rest[5 + len..];
    }
    out
}

#[test]
fn rust_round_trip_is_equal_on_the_beam() {
    let dir = tempfile::tempdir().expect("temp dir");
    let d = dir.path();
    std::fs::write(d.join("termgen.erl"), TERMGEN).unwrap();
    let quoted = |name: &str| format!("{:?}", d.join(name).display().to_string());
    let compile = format!(
        "{{ok, termgen}} = compile:file({}, [{{outdir, {}}}]), code:add_patha({}), ",
        quoted("termgen.erl"),
        quoted(""),
        quoted("")
    );
    let out = run_erl(d, &format!("{compile}termgen:generate({}, {COUNT})", quoted("in.bin")));
    assert!(out.contains(&format!("GENERATED {COUNT}")), "generator said: {out}");

    let input = std::fs::read(d.join("in.bin")).unwrap();
    let recs = records(&input);
    assert_eq!(recs.len(), COUNT);
    let limits = DecodeLimits::default();
    let mut rust_out = Vec::new();
    let (mut bit_exact, mut funs, mut by_flavor) = (0, 0, [0usize; 4]);
    for (i, &(flavor, bytes)) in recs.iter().enumerate() {
        let term = decode(bytes).unwrap_or_else(|e| panic!("record {i}: {e}: {bytes:?}"));
        by_flavor[flavor as usize] += 1;
        funs += usize::from(contains_fun(&term));
        assert_eq!(decode_bytes(&bytes.to_vec().into()).unwrap(), term, "record {i}");
        let (t, used) = decode_with_cache(bytes, &[], &limits).unwrap();
        assert_eq!((t == term, used), (true, bytes.len()), "record {i}");

        let ours = encode(&term);
        assert_eq!(decode(&ours).unwrap(), term, "record {i}: Rust round trip");
        // Re-encoding canonical BEAM output must give the BEAM's bytes back.
        let expected = match flavor {
            0 => Some(encode_latin1_atoms(&term)),
            1 => Some(ours.clone()),
            _ => None,
        };
        if let Some(e) = expected {
            assert_eq!(e, bytes, "record {i} (flavor {flavor}) is not bit-exact");
            bit_exact += 1;
        }
        rust_out.extend_from_slice(&(ours.len() as u32).to_be_bytes());
        rust_out.extend_from_slice(&ours);
    }
    assert!(funs > 50, "only {funs} terms with funs");
    assert!(by_flavor.iter().all(|&n| n > 100), "flavors {by_flavor:?}");
    std::fs::write(d.join("out.bin"), &rust_out).unwrap();

    let out = run_erl(
        d,
        &format!("termgen:check({}, {})", quoted("in.bin"), quoted("out.bin")),
    );
    assert!(out.contains(&format!("CHECKED {COUNT} MISMATCHES 0")), "erl check: {out}");
    eprintln!("{COUNT} terms equal on the BEAM, {bit_exact} bit-exact, {funs} with funs");
}

fn contains_fun(t: &Term) -> bool {
    let mut todo = vec![t];
    while let Some(t) = todo.pop() {
        match t {
            Term::Fun(_) => return true,
            Term::List(v) | Term::Tuple(v) => todo.extend(v),
            Term::ImproperList(v, tail) => {
                todo.extend(v);
                todo.push(tail);
            }
            Term::Map(m) => m.iter().for_each(|(k, v)| todo.extend([k, v])),
            _ => {}
        }
    }
    false
}
