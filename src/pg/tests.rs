//! Conformance with the real library: every pg message a BEAM node's
//! `Phoenix.PubSub` scope sent in the recorded trace
//! (tests/vectors/phoenix_pubsub.trace, see interop-tests/pubsub.rs)
//! parses as what it is, and erlnode's builders produce the identical
//! term from the parsed fields, so what erlnode sends has OTP's shape.

use super::messages::{self, Incoming};
use crate::term::{Atom, Term};

/// Recorded on OTP 25 and on OTP 27 (Elixir 1.14 and 1.18).
const TRACES: [&str; 2] = [include_str!("../../tests/vectors/phoenix_pubsub.trace"), include_str!("../../tests/vectors/phoenix_pubsub_otp27.trace")];

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex")).collect()
}

fn trace(text: &str, kind: &str) -> Vec<Term> {
    text.lines()
        .filter_map(|l| l.strip_prefix(kind).and_then(|r| r.strip_prefix(' ')))
        .map(|h| crate::term::decode(&unhex(h.trim())).expect("recorded ETF decodes"))
        .collect()
}

#[test]
fn recorded_pg_messages_parse_and_rebuild_identically() {
    for text in TRACES {
        replay(text);
    }
}

fn replay(text: &str) {
    let me = Atom::new("recorder@127.0.0.1");
    let msgs = trace(text, "pg");
    let mut kinds = Vec::new();
    for t in &msgs {
        let rebuilt = match Incoming::parse(t, &me).unwrap_or_else(|e| panic!("{e}: {t:?}")) {
            Incoming::Discover(peer) => {
                kinds.push("discover");
                messages::discover(&peer)
            }
            Incoming::Sync { peer, groups } => {
                kinds.push("sync");
                assert_eq!(groups.len(), 1, "the Elixir node announces its one adapter group");
                assert_eq!(groups[0].0, Term::atom("Elixir.TestPS.Adapter"));
                messages::sync(&peer, groups)
            }
            Incoming::Join { peer, group, pids } => {
                kinds.push("join");
                let single = matches!(t.as_tuple(), Some([_, _, _, Term::Pid(_)]));
                messages::join(&peer, &group, &pids, single)
            }
            Incoming::Leave { peer, pids, groups } => {
                kinds.push("leave");
                let single = matches!(t.as_tuple(), Some([_, _, Term::Pid(_), _]));
                messages::leave(&peer, &pids, single, groups)
            }
            _ => panic!("unexpected kind: {t:?}"),
        };
        assert_eq!(&rebuilt, t, "erlnode builds the same term");
    }
    assert_eq!(kinds, ["discover", "sync", "discover", "join", "join", "leave", "leave"]);
}
