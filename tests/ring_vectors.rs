//! Placement is bit-exact with ProcessHub's ring: vectors computed by
//! the real library (sile/hash_ring 0.4.2 on OTP 25), copied from
//! ../shared/vectors.

mod common;

use common::b64;
use erlnode::migration::ring::{Ring, RingEncoding};
use erlnode::term::{decode, Atom};

fn field<'a>(line: &'a str, key: &str) -> &'a str {
    let start = line.find(&format!("\"{key}\":")).unwrap() + key.len() + 3;
    &line[start..]
}

fn strings(list: &str) -> Vec<String> {
    let end = list.find(']').unwrap();
    list[1..end].split(',').map(|s| s.trim().trim_matches('"').to_string()).collect()
}

/// Checks every vector of a file with `encoding`; returns how many.
fn check(text: &str, encoding: RingEncoding) -> usize {
    let mut checked = 0;
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let nodes = strings(field(line, "nodes"));
        let key_b64 = field(line, "key_etf_b64");
        let key = decode(&b64(&key_b64[1..key_b64[1..].find('"').unwrap() + 1])).unwrap();
        let replication: usize = field(line, "replication").split(|c: char| !c.is_ascii_digit()).next().unwrap().parse().unwrap();
        let expected = strings(field(line, "result"));
        let ring = Ring::new(nodes.iter().map(|n| Atom::new(n)), encoding);
        let got: Vec<String> = ring.owners(&key, replication).iter().map(|a| a.to_string()).collect();
        assert_eq!(got, expected, "{encoding}: {line}");
        checked += 1;
    }
    checked
}

/// sile/hash_ring 0.4.2 (ProcessHub's ring) run on OTP 25.2.3.
#[test]
fn processhub_ring_vectors_otp25() {
    let checked = check(include_str!("vectors/processhub_ring_vectors.jsonl"), RingEncoding::Otp25);
    assert!(checked > 800, "only {checked} vectors");
}

/// The same library run on OTP 27 (Debian trixie), on the same keys plus
/// 800 atom keys: OTP 26 writes atoms as UTF-8, so owners differ.
#[test]
fn processhub_ring_vectors_otp27() {
    let checked = check(include_str!("vectors/processhub_ring_vectors_otp27.jsonl"), RingEncoding::Otp26);
    assert!(checked > 1600, "only {checked} vectors");
}

/// The encodings really differ: the OTP 27 vectors do not all hold with
/// OTP 25's encoding (so the two tests above check the encoding, not
/// only the ring).
#[test]
fn the_encodings_place_differently() {
    let text = include_str!("vectors/processhub_ring_vectors_otp27.jsonl");
    let differ = std::panic::catch_unwind(|| check(text, RingEncoding::Otp25)).is_err();
    assert!(differ, "OTP 25's encoding reproduced every OTP 27 vector");
}
