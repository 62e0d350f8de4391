//! Rust supervision (`erlnode::supervisor`): OTP's strategies and restart
//! types on one node. Every wait is for an event: the old child's DOWN,
//! then the supervisor's answer (it handles the child's EXIT first).

use erlnode::prelude::*;
use erlnode::supervisor::{Restart, Strategy, Supervisor};
use serde::{Deserialize, Serialize};
use std::time::Duration;

const T: Duration = Duration::from_secs(10);

#[derive(Default)]
struct Worker(i64);

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Msg {
    Add(i64),
    Get,
    Crash,
    Stop,
}

impl GenServer for Worker {
    type Call = Msg;
    type Cast = Msg;
    type Reply = i64;
    async fn handle_call(&mut self, _: Msg, _: &Term, _: &mut Ctx) -> Reply<i64> {
        Reply::Reply(self.0)
    }
    async fn handle_cast(&mut self, m: Msg, _: &mut Ctx) -> Flow {
        match m {
            Msg::Add(n) => self.0 += n,
            Msg::Crash => return Flow::Stop(Term::atom("boom")),
            Msg::Stop => return Flow::Stop(Term::atom("normal")),
            Msg::Get => {}
        }
        Flow::Continue
    }
}

async fn node() -> Node {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    Node::builder(format!("sup_{}@127.0.0.1", std::process::id())).cookie("sup").epmd_port(port).start().await.unwrap()
}

/// The reason of `{'DOWN', watch, process, _, Reason}`.
fn down(m: &Term, watch: &erlnode::Reference) -> Option<Term> {
    match m.as_tuple() {
        Some([tag, Term::Ref(r), _, _, reason]) if tag.is_atom("DOWN") && r == watch => Some(reason.clone()),
        _ => None,
    }
}

fn pids(children: &[(String, Option<Pid>)]) -> Vec<Option<Pid>> {
    children.iter().map(|(_, p)| p.clone()).collect()
}

/// Sends `msg` to the child `name` and waits until it has exited.
async fn make_exit(node: &Node, name: &str, msg: Msg) {
    // A child restarted a moment ago registers its name as it starts.
    let deadline = std::time::Instant::now() + T;
    let pid = loop {
        match node.whereis(name) {
            Some(p) => break p,
            None if std::time::Instant::now() < deadline => tokio::task::yield_now().await,
            None => panic!("{name} is not running"),
        }
    };
    let mut mb = node.spawn_mailbox();
    let watch = mb.monitor(&pid);
    gen_server::cast(node, &pid, &msg).unwrap();
    mb.recv_match(T, |m| down(m, &watch).map(|_| ())).await.unwrap();
}

async fn sup(node: &Node, strategy: Strategy, prefix: &str, restarts: [Restart; 3]) -> Supervisor {
    Supervisor::builder(node)
        .strategy(strategy)
        .child(&format!("{prefix}_a"), restarts[0], Worker::default)
        .child(&format!("{prefix}_b"), restarts[1], Worker::default)
        .child(&format!("{prefix}_c"), restarts[2], Worker::default)
        .start()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strategies_restart_types_and_intensity() {
    let node = node().await;
    let p = [Restart::Permanent; 3];

    // one_for_one: only the crashed child restarts, fresh.
    let s = sup(&node, Strategy::OneForOne, "o4o", p).await;
    let before = pids(&s.which_children().await.unwrap());
    gen_server::cast(&node, &node.whereis("o4o_a").unwrap(), &Msg::Add(5)).unwrap();
    make_exit(&node, "o4o_a", Msg::Crash).await;
    let after = pids(&s.which_children().await.unwrap());
    assert_ne!(after[0], before[0]);
    assert_eq!(after[1..], before[1..]);
    assert_eq!(gen_server::call::<i64>(&node, ("o4o_a", node.name().as_str()), &Msg::Get, T).await.unwrap(), 0, "fresh state");

    // one_for_all: every child restarts.
    let s = sup(&node, Strategy::OneForAll, "o4a", p).await;
    let before = pids(&s.which_children().await.unwrap());
    make_exit(&node, "o4a_b", Msg::Crash).await;
    let after = pids(&s.which_children().await.unwrap());
    assert!(after.iter().zip(&before).all(|(a, b)| a != b && a.is_some()), "{before:?} -> {after:?}");

    // rest_for_one: the crashed child and those started after it.
    let s = sup(&node, Strategy::RestForOne, "r4o", p).await;
    let before = pids(&s.which_children().await.unwrap());
    make_exit(&node, "r4o_b", Msg::Crash).await;
    let after = pids(&s.which_children().await.unwrap());
    assert_eq!(after[0], before[0]);
    assert!(after[1] != before[1] && after[2] != before[2] && after[1].is_some() && after[2].is_some());

    // transient: a normal stop is final, a crash restarts; temporary never restarts.
    let s = sup(&node, Strategy::OneForOne, "tr", [Restart::Transient, Restart::Transient, Restart::Temporary]).await;
    make_exit(&node, "tr_a", Msg::Stop).await;
    make_exit(&node, "tr_b", Msg::Crash).await;
    make_exit(&node, "tr_c", Msg::Crash).await;
    let after = s.which_children().await.unwrap();
    assert!(after[0].1.is_none(), "transient, normal stop: {after:?}");
    assert!(after[1].1.is_some(), "transient, crash: restarted");
    assert!(after[2].1.is_none(), "temporary: {after:?}");

    // intensity: more than 1 restart in 60 s stops the supervisor and its children.
    let s = Supervisor::builder(&node).intensity(1, 60).child("int_a", Restart::Permanent, Worker::default).start().await.unwrap();
    let mut mb = node.spawn_mailbox();
    let watch = mb.monitor(s.pid());
    make_exit(&node, "int_a", Msg::Crash).await;
    make_exit(&node, "int_a", Msg::Crash).await;
    let reason = mb.recv_match(T, |m| down(m, &watch)).await.unwrap();
    assert_eq!(reason, Term::atom("shutdown"));
    assert!(node.whereis("int_a").is_none(), "its child stopped with it");
    node.shutdown().await;
}
