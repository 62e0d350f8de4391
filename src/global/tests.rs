//! global on erlnode alone: the API on one node, and two erlnode nodes
//! syncing and resolving a conflict (interop-tests/global.rs runs the
//! same against BEAM nodes).

use crate::process::{CallError, Dest};
use crate::{Node, Pid, Term};
use std::time::Duration;

const T: Duration = Duration::from_secs(10);

async fn lone_node(tag: &str) -> Node {
    Node::builder(format!("g{tag}_{}@127.0.0.1", std::process::id()))
        .cookie("c")
        .publish(false)
        .embedded_epmd(false)
        .start()
        .await
        .unwrap()
}

fn idle(n: &Node) -> Pid {
    n.spawn(|mut mb| async move {
        while mb.recv().await.is_some() {}
        Term::atom("normal")
    })
}

async fn eventually(mut f: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + T;
    while tokio::time::Instant::now() < deadline {
        if f() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    f()
}

#[tokio::test]
async fn register_whereis_unregister_on_one_node() {
    let n = lone_node("api").await;
    let g = n.global();
    let (a, b) = (idle(&n), idle(&n));
    let name = Term::atom("svc");
    assert_eq!(g.register_name(name.clone(), &a).await, Ok(true));
    assert_eq!(g.whereis_name(&name), Some(a.clone()));
    assert_eq!(g.registered_names(), vec![name.clone()]);
    assert_eq!(g.register_name(name.clone(), &b).await, Ok(false), "the name is taken");
    assert_eq!(g.register_name(Term::atom("other"), &a).await, Ok(false), "one global name per process");
    g.re_register_name(name.clone(), &b).await.unwrap();
    assert_eq!(g.whereis_name(&name), Some(b.clone()));
    // Any term is a name.
    let tuple_name = Term::tuple([Term::atom("shard"), Term::Int(3)]);
    assert_eq!(g.register_name(tuple_name.clone(), &a).await, Ok(true));
    assert_eq!(g.whereis_name(&Term::tuple([Term::atom("shard"), Term::Int(3)])), Some(a.clone()));
    g.unregister_name(&tuple_name).await.unwrap();
    assert_eq!(g.whereis_name(&tuple_name), None);
    // A dead process loses its name.
    n.exit(&b, Term::atom("kill"));
    assert!(eventually(|| g.registered_names().is_empty()).await, "{:?}", g.registered_names());
    assert_eq!(g.send(&name, Term::atom("x")), Err(super::GlobalError::NotRegistered(name)));
}

#[tokio::test]
async fn calls_and_sends_to_a_global_name() {
    let n = lone_node("call").await;
    let echo = crate::services::echo::spawn_unregistered(&n);
    assert_eq!(n.global().register_name(Term::atom("echo"), &echo).await, Ok(true));
    let mut mb = n.spawn_mailbox();
    let r = mb.call(Dest::Global(Term::atom("echo")), Term::atom("hi"), T).await;
    assert_eq!(r, Ok(Term::tuple([Term::atom("echo"), Term::atom("hi")])));
    let r = mb.call(Dest::Global(Term::atom("nobody")), Term::atom("hi"), T).await;
    assert!(matches!(r, Err(CallError::NoProc(_))), "{r:?}");
    mb.send_to(&Dest::Global(Term::atom("echo")), Term::tuple([Term::Pid(mb.pid().clone()), Term::atom("back")]));
    assert_eq!(mb.recv_timeout(T).await, Ok(Term::atom("back")));
}

#[tokio::test]
async fn two_erlnode_nodes_sync_and_resolve_a_conflict() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let start = |prefix: &str| {
        Node::builder(format!("{prefix}_{}@127.0.0.1", std::process::id())).cookie("c").epmd_port(port).embedded_epmd(true).start()
    };
    let a = start("ga").await.unwrap(); // sorts lower: its registration wins
    let b = start("gb").await.unwrap();
    let (pa, pb, only_b) = (idle(&a), idle(&b), idle(&b));
    assert_eq!(a.global().register_name(Term::atom("clash"), &pa).await, Ok(true));
    assert_eq!(b.global().register_name(Term::atom("clash"), &pb).await, Ok(true));
    assert_eq!(b.global().register_name(Term::atom("only_b"), &only_b).await, Ok(true));
    assert!(a.ping(b.name().as_str()).await);
    a.global().sync(T).await.unwrap();
    b.global().sync(T).await.unwrap();
    assert_eq!(a.global().known_nodes(), vec![b.name().clone()]);
    assert_eq!(b.global().known_nodes(), vec![a.name().clone()]);
    let agreed = eventually(|| {
        [&a, &b].iter().all(|n| {
            n.global().whereis_name(&Term::atom("clash")).as_ref() == Some(&pa)
                && n.global().whereis_name(&Term::atom("only_b")).as_ref() == Some(&only_b)
        })
    })
    .await;
    assert!(agreed, "a: {:?}, b: {:?}", a.global().whereis_name(&Term::atom("clash")), b.global().whereis_name(&Term::atom("clash")));
    assert!(eventually(|| !b.is_alive(&pb)).await, "the loser on the higher node is killed");
    // Registrations after the sync reach both.
    let p = idle(&b);
    assert_eq!(b.global().register_name(Term::atom("late"), &p).await, Ok(true));
    assert_eq!(a.global().whereis_name(&Term::atom("late")), Some(p));
    // The node going away takes its names with it.
    b.shutdown().await;
    assert!(eventually(|| a.global().registered_names() == vec![Term::atom("clash")]).await, "{:?}", a.global().registered_names());
    assert!(a.global().known_nodes().is_empty());
}
