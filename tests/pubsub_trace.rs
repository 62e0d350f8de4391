//! Replays what a real Elixir node running Phoenix.PubSub 2.2.0 sent a
//! PG2 member on another node (recorded in tests/vectors/phoenix_pubsub.trace
//! by interop-tests/pubsub.rs `record_pubsub_trace`): erlnode builds
//! exactly the same messages for the same broadcasts, and its worker
//! delivers each recorded message's payload to the topic's subscribers,
//! once each and in order. Runs in `make test` without Elixir.

use erlnode::pubsub::{forward_to_local, DEFAULT_DISPATCHER};
use erlnode::{Atom, Node, Term};
use std::time::Duration;

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex")).collect()
}

/// Recorded on OTP 25 and on OTP 27.
const TRACES: [&str; 2] = [include_str!("vectors/phoenix_pubsub.trace"), include_str!("vectors/phoenix_pubsub_otp27.trace")];

fn recorded_member_messages() -> Vec<Term> {
    TRACES
        .iter()
        .flat_map(|t| t.lines())
        .filter_map(|l| l.strip_prefix("member "))
        .map(|h| erlnode::term::decode(&unhex(h.trim())).expect("recorded ETF decodes"))
        .collect()
}

fn fields(t: &Term) -> (String, Term) {
    match t.as_tuple() {
        Some([tag, Term::Binary(topic), msg, d]) if tag.is_atom("forward_to_local") && d.is_atom(DEFAULT_DISPATCHER) => {
            (String::from_utf8(topic.to_vec()).unwrap(), msg.clone())
        }
        _ => panic!("not PG2's forward_to_local: {t:?}"),
    }
}

/// `%Phoenix.Socket.Broadcast{}` as Elixir sent it: a map with
/// `__struct__`, read by a serde type that ignores that key.
#[derive(serde::Deserialize, Debug)]
struct Broadcast {
    topic: String,
    event: String,
    payload: std::collections::HashMap<String, Term>,
}

#[test]
fn recorded_struct_payload_reads_into_a_serde_type() {
    let structs: Vec<Broadcast> = recorded_member_messages()
        .iter()
        .map(|t| fields(t).1)
        .filter(|m| matches!(m, Term::Map(_)))
        .map(|m| erlnode::term::serde::from_term(m).expect("the struct map deserializes"))
        .collect();
    assert_eq!(structs.len(), 2, "one per recording");
    for b in structs {
        assert_eq!((b.topic.as_str(), b.event.as_str()), ("room:1", "new_msg"));
        assert_eq!(b.payload["body"], Term::binary(&b"hi"[..]));
        assert!(matches!(b.payload["n"], Term::Big(_)), "a bignum survives as a term");
    }
}

#[tokio::test]
async fn recorded_pubsub_messages_build_identically_and_reach_subscribers() {
    let recorded = recorded_member_messages();
    assert_eq!(recorded.len(), 12, "per trace: four broadcasts, a broadcast_from and a direct_broadcast");
    for t in &recorded {
        let (topic, msg) = fields(t);
        assert_eq!(&forward_to_local(topic.as_bytes(), msg, &Atom::new(DEFAULT_DISPATCHER)), t);
    }

    let node = Node::builder("replay@127.0.0.1").cookie("replay").publish(false).embedded_epmd(false).listen(([127, 0, 0, 1], 0).into()).start().await.unwrap();
    let ps = node.pubsub("TestPS").start().await.unwrap();
    assert_eq!(node.whereis("Elixir.TestPS.Adapter").as_ref(), Some(&ps.workers()[0]), "the worker is registered under its group");
    let mut sub = node.spawn_mailbox();
    for topic in ["room:1", "room:2", "room:3"] {
        ps.subscribe(sub.pid(), topic).unwrap();
    }
    ps.subscribe(sub.pid(), "room:1").unwrap(); // twice: room:1 messages arrive twice
    let mut other = node.spawn_mailbox();
    ps.subscribe(other.pid(), "unrelated").unwrap();

    for t in &recorded {
        node.send(&ps.workers()[0], t.clone());
    }
    for t in &recorded {
        let (topic, msg) = fields(t);
        let copies = if topic == "room:1" { 2 } else { 1 };
        for _ in 0..copies {
            assert_eq!(sub.recv_timeout(Duration::from_secs(10)).await.unwrap(), msg, "topic {topic}");
        }
    }
    ps.local_broadcast("unrelated", Term::atom("marker"));
    assert_eq!(other.recv_timeout(Duration::from_secs(10)).await.unwrap(), Term::atom("marker"), "nothing else reached another topic");
    assert_eq!(sub.pending(), 0, "no extra copies");
    node.shutdown().await;
}
