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
