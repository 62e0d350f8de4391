//! Placement is bit-exact with ProcessHub's ring: vectors computed by
//! the real library (sile/hash_ring 0.4.2 on OTP 25), copied from
//! ../shared/vectors.

use erlnode::migration::ring::Ring;
use erlnode::term::{decode, Atom};

fn field<'a>(line: &'a str, key: &str) -> &'a str {
    let start = line.find(&format!("\"{key}\":")).unwrap() + key.len() + 3;
    &line[start..]
}

fn strings(list: &str) -> Vec<String> {
    let end = list.find(']').unwrap();
    list[1..end].split(',').map(|s| s.trim().trim_matches('"').to_string()).collect()
}

fn b64(s: &str) -> Vec<u8> {
    const T: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = vec![];
    let mut buf = 0u32;
    let mut bits = 0;
    for c in s.bytes().take_while(|c| *c != b'=') {
        buf = (buf << 6) | T.iter().position(|x| *x == c).unwrap() as u32;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((buf >> bits) as u8);
        }
    }
    out
}

#[test]
fn processhub_ring_vectors() {
    let text = include_str!("vectors/processhub_ring_vectors.jsonl");
    let mut checked = 0;
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let nodes = strings(field(line, "nodes"));
        let key_b64 = field(line, "key_etf_b64");
        let key = decode(&b64(&key_b64[1..key_b64[1..].find('"').unwrap() + 1])).unwrap();
        let replication: usize = field(line, "replication").split(|c: char| !c.is_ascii_digit()).next().unwrap().parse().unwrap();
        let expected = strings(field(line, "result"));
        let ring = Ring::new(nodes.iter().map(|n| Atom::new(n)));
        let got: Vec<String> = ring.owners(&key, replication).iter().map(|a| a.to_string()).collect();
        assert_eq!(got, expected, "{line}");
        checked += 1;
    }
    assert!(checked > 800, "only {checked} vectors");
}
