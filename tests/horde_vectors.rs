//! phash2 and Horde placement against values computed by the real BEAM
//! libraries on OTP 25.2.3 / Elixir 1.14 (copied from the project's shared
//! vectors; tests/vectors/README.md). The interop test `phash2` checks
//! phash2 live against OTP 25 and 27.

mod common;

use common::b64;
use erlnode::horde::libring::{child_identifier, choose_member, HashRing};
use erlnode::term::phash2::{make_hash2, phash2, phash2_range, RANGE_2_32};
use erlnode::term::{decode, Term};

/// One term a line: base64 ETF, `phash2(T, 2^32)`, `phash2(T)`, printed.
#[test]
fn phash2_vectors_otp25() {
    let mut checked = 0;
    for line in include_str!("vectors/phash2_vectors.txt").lines().filter(|l| !l.trim().is_empty()) {
        let mut f = line.splitn(4, ' ');
        let term = decode(&b64(f.next().unwrap())).unwrap_or_else(|e| panic!("{line}: {e}"));
        let full: u32 = f.next().unwrap().parse().unwrap();
        let p27: u32 = f.next().unwrap().parse().unwrap();
        assert_eq!(make_hash2(&term), full, "phash2(T, 2^32): {line}");
        assert_eq!(phash2_range(&term, RANGE_2_32), full, "{line}");
        assert_eq!(phash2(&term), p27, "phash2(T): {line}");
        checked += 1;
    }
    assert!(checked >= 50, "only {checked} vectors");
}

fn json_str<'a>(line: &'a str, key: &str) -> &'a str {
    let start = line.find(&format!("\"{key}\":\"")).unwrap_or_else(|| panic!("no {key}")) + key.len() + 4;
    let len = line[start..].find('"').unwrap();
    &line[start..start + len]
}

fn json_int(line: &str, key: &str) -> u64 {
    let start = line.find(&format!("\"{key}\":")).unwrap() + key.len() + 3;
    line[start..].split(|c: char| !c.is_ascii_digit()).next().unwrap().parse().unwrap()
}

/// `["MyApp.Sup","ex1@127.0.0.1"]` from `"result":[...]`.
fn json_pair(line: &str, key: &str) -> (String, String) {
    let start = line.find(&format!("\"{key}\":[")).unwrap() + key.len() + 4;
    let end = start + line[start..].find(']').unwrap();
    let parts: Vec<String> = line[start..end].split(',').map(|s| s.trim().trim_matches('"').to_string()).collect();
    (parts[0].clone(), parts[1].clone())
}

/// Horde 0.10 UniformDistribution (libring 1.7.0) on OTP 25.
#[test]
fn horde_uniform_distribution_vectors() {
    let mut checked = 0;
    for line in include_str!("vectors/horde_ring_vectors.jsonl").lines().filter(|l| !l.trim().is_empty()) {
        let members = match decode(&b64(json_str(line, "members_etf_b64"))).unwrap() {
            Term::List(m) => m,
            t => panic!("members: {t:?}"),
        };
        let spec = decode(&b64(json_str(line, "child_spec_etf_b64"))).unwrap();
        let id = child_identifier(&spec);
        assert_eq!(u64::from(id), json_int(line, "identifier_phash2"), "identifier: {line}");
        let chosen = choose_member(&spec, &members).expect("a member");
        let (name, node) = json_pair(line, "result");
        let t = chosen.as_tuple().unwrap();
        assert_eq!(t[0].as_atom().unwrap().as_str(), format!("Elixir.{name}"), "{line}");
        assert_eq!(t[1].as_atom().unwrap().as_str(), node, "{line}");
        // The same through the ring API with the identifier as the key.
        let ring = HashRing::with_nodes(members.iter().cloned());
        let key = Term::Int(id.into());
        assert_eq!(ring.key_to_node(&key, erlnode::migration::ring::RingEncoding::Otp25), Some(chosen));
        checked += 1;
    }
    assert!(checked >= 150, "only {checked} vectors");
}
