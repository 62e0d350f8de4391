//! erlnode's DeltaCrdt peer against syncs recorded from the real
//! DeltaCrdt 0.6.4 (tests/traces/horde-0.10.0/, recorded by `record.exs`
//! there): two CRDT processes start from the recorded states, the
//! recorded `set_neighbours` start the syncs, and every message the Rust
//! replicas send must be one the BEAM replicas sent (same diff rounds,
//! keys in the same order, same data, same acks), none missing, none
//! extra; the end states equal the recorded ones, Merkle root included.

mod common;

use common::b64;
use erlnode::horde::crdt::Crdt;
use erlnode::horde::store::Store;
use erlnode::term::{decode, Term};

/// Canonical form: maps sorted by their encoded keys, so terms compare
/// whatever map order each side used; lists keep their order.
fn canon(t: &Term) -> Term {
    match t {
        Term::Map(m) => {
            let mut v: Vec<(Term, Term)> = m.iter().map(|(k, v)| (canon(k), canon(v))).collect();
            v.sort_by_key(|(k, _)| erlnode::term::encode(k));
            Term::Map(v)
        }
        Term::Tuple(v) => Term::Tuple(v.iter().map(canon).collect()),
        Term::List(v) => Term::List(v.iter().map(canon).collect()),
        other => other.clone(),
    }
}

struct Trace {
    states: Vec<(u64, Term)>,
    pids: Vec<Term>,
    recvs: Vec<(usize, Term)>,
    finals: Vec<(Term, Term)>,
}

fn side(s: &str) -> usize {
    match s {
        "A" => 0,
        "B" => 1,
        other => panic!("side {other}"),
    }
}

fn load(text: &str) -> Trace {
    let mut t = Trace { states: vec![], pids: vec![], recvs: vec![], finals: vec![] };
    for line in text.lines().filter(|l| !l.is_empty()) {
        let f: Vec<&str> = line.split(' ').collect();
        let term = |s: &str| decode(&b64(s)).unwrap_or_else(|e| panic!("{}: {e}", &line[..40]));
        match f[0] {
            "state" => t.states.push((f[2].parse().unwrap(), term(f[3]))),
            "pid" => t.pids.push(term(f[2])),
            "recv" => t.recvs.push((side(f[1]), term(f[2]))),
            "final" => t.finals.push((term(f[2]), term(f[3]))),
            other => panic!("line kind {other}"),
        }
    }
    t
}

fn replay(name: &str, text: &str) -> usize {
    let t = load(text);
    assert_eq!((t.states.len(), t.pids.len(), t.finals.len()), (2, 2, 2), "{name}: incomplete trace");
    let mut peers: Vec<Crdt> = (0..2)
        .map(|i| Crdt::new(Store::from_term(t.states[i].0, &t.states[i].1).expect("recorded state"), t.pids[i].clone()))
        .collect();
    // A trace shows when a message was queued, not when it was handled,
    // so the two replicas' receipts interleave arbitrarily; but each
    // replica's state depends only on its own messages, in its own order.
    // Replay each replica's sequence, then match what the Rust replicas
    // sent against what the BEAM replicas received.
    let mut sent: Vec<(usize, Term)> = vec![];
    for at in 0..2 {
        for (i, (_, msg)) in t.recvs.iter().enumerate().filter(|(_, (x, _))| *x == at) {
            let fx = peers[at].handle(msg).unwrap_or_else(|e| panic!("{name}: message #{i}: {e}"));
            for (to, m) in fx.sends {
                // The other replica is addressed by pid or by {Name, Node}.
                let receiver = if to == t.pids[at] { at } else { 1 - at };
                assert!(receiver == at || to == t.pids[receiver] || matches!(&to, Term::Tuple(v) if v.len() == 2), "{name}: send to {to:?}");
                sent.push((receiver, canon(&m)));
            }
        }
    }
    let mut checked = 0;
    for (i, (at, msg)) in t.recvs.iter().enumerate() {
        if msg.as_tuple().is_some_and(|v| v[0].is_atom("set_neighbours")) {
            continue;
        }
        let c = canon(msg);
        let pos = sent.iter().position(|(to, m)| to == at && *m == c);
        assert!(pos.is_some(), "{name}: message #{i} received by {at} was not sent by the Rust replica: {msg:?}");
        sent.remove(pos.unwrap());
        checked += 1;
    }
    assert!(sent.is_empty(), "{name}: the Rust replicas sent {} messages the BEAM ones did not: {sent:?}", sent.len());
    for (i, p) in peers.iter_mut().enumerate() {
        let (state, root) = &t.finals[i];
        assert_eq!(canon(&p.store.to_term()), canon(state), "{name}: end state of {i}");
        let root_now = p.store.tree().root_hash().map(|h| Term::binary(h.to_be_bytes().to_vec())).unwrap_or(Term::nil());
        assert_eq!(&root_now, root, "{name}: Merkle root of {i}");
    }
    checked
}

#[test]
fn disjoint_registries_sync_like_delta_crdt() {
    let n = replay("disjoint", include_str!("traces/horde-0.10.0/disjoint.trace"));
    assert!(n >= 8, "{n} messages checked");
}

#[test]
fn overlapping_keys_deletes_and_meta_sync_like_delta_crdt() {
    let n = replay("overlap", include_str!("traces/horde-0.10.0/overlap.trace"));
    assert!(n >= 10, "{n} messages checked");
}

#[test]
fn deltas_after_a_first_sync_like_delta_crdt() {
    let n = replay("deltas", include_str!("traces/horde-0.10.0/deltas.trace"));
    assert!(n >= 8, "{n} messages checked");
}

/// The same three syncs recorded on OTP 27.3 / Elixir (the trixie root),
/// whose small maps keep atom keys in another order.
#[test]
fn the_same_syncs_recorded_on_otp27() {
    for (name, text) in [
        ("otp27/disjoint", include_str!("traces/horde-0.10.0/otp27/disjoint.trace")),
        ("otp27/overlap", include_str!("traces/horde-0.10.0/otp27/overlap.trace")),
        ("otp27/deltas", include_str!("traces/horde-0.10.0/otp27/deltas.trace")),
    ] {
        assert!(replay(name, text) >= 8, "{name}");
    }
}
