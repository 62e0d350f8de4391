//! Process semantics on one node (no network): links, trap_exit, kill,
//! monitors, aliases and calls between Rust processes.

use erlnode::process::CallError;
use erlnode::{Node, Term};
use std::time::Duration;

const T: Duration = Duration::from_secs(5);

async fn node() -> Node {
    Node::builder(format!("local_{}@127.0.0.1", std::process::id()))
        .cookie("c")
        .publish(false)
        .embedded_epmd(false)
        .start()
        .await
        .unwrap()
}

fn is_exit(m: &Term, reason: &str) -> bool {
    matches!(m.as_tuple(), Some([t, Term::Pid(_), r]) if t.is_atom("EXIT") && r.is_atom(reason))
}

#[tokio::test]
async fn link_propagates_and_trap_exit_turns_it_into_a_message() {
    let n = node().await;
    let mut watcher = n.spawn_mailbox();
    watcher.trap_exit(true);
    let victim = n.spawn(|mut mb| async move {
        let _ = mb.recv().await;
        Term::atom("boom")
    });
    watcher.link(&victim);
    watcher.send(&victim, Term::atom("go"));
    let m = watcher.recv_timeout(T).await.unwrap();
    assert!(is_exit(&m, "boom"), "{m:?}");
    assert!(!n.is_alive(&victim));
}

#[tokio::test]
async fn untrapped_abnormal_exit_kills_linked_process_and_normal_does_not() {
    let n = node().await;
    let mut obs = n.spawn_mailbox();
    let a = n.spawn(|mut mb| async move {
        let _ = mb.recv().await;
        Term::atom("normal")
    });
    let b = n.spawn(|mut mb| async move {
        let _ = mb.recv().await;
        Term::atom("normal")
    });
    let ra = obs.monitor(&a);
    let rb = obs.monitor(&b);
    n.spawn(move |mut mb| {
        let (a, b) = (a.clone(), b.clone());
        async move {
            mb.link(&a);
            mb.link(&b);
            let wait_a = mb.monitor(&a);
            mb.send(&a, Term::atom("stop")); // a exits normal: we survive it
            let _ = mb
                .recv_match(T, |m| matches!(m.as_tuple(), Some([_, Term::Ref(r), ..]) if *r == wait_a).then_some(()))
                .await;
            Term::atom("crash") // b is linked: killed with crash
        }
    });
    let d1 = obs.recv_timeout(T).await.unwrap();
    let d2 = obs.recv_timeout(T).await.unwrap();
    let reason_of = |d: &Term, r: &erlnode::Reference| match d.as_tuple() {
        Some([_, Term::Ref(x), _, _, reason]) if x == r => Some(reason.clone()),
        _ => None,
    };
    let ra_reason = reason_of(&d1, &ra).or_else(|| reason_of(&d2, &ra)).unwrap();
    let rb_reason = reason_of(&d1, &rb).or_else(|| reason_of(&d2, &rb)).unwrap();
    assert!(ra_reason.is_atom("normal"));
    assert!(rb_reason.is_atom("crash"));
}

#[tokio::test]
async fn kill_cannot_be_trapped() {
    let n = node().await;
    let mut obs = n.spawn_mailbox();
    let victim = n.spawn(|mut mb| async move {
        mb.trap_exit(true);
        loop {
            if mb.recv().await.is_none() {
                return Term::atom("normal");
            }
        }
    });
    let r = obs.monitor(&victim);
    obs.exit(&victim, Term::atom("kill"));
    let d = obs.recv_timeout(T).await.unwrap();
    assert_eq!(d, Term::tuple([Term::atom("DOWN"), Term::Ref(r), Term::atom("process"), Term::Pid(victim), Term::atom("killed")]));
}

#[tokio::test]
async fn monitor_of_dead_process_gives_noproc_and_demonitor_stops_delivery() {
    let n = node().await;
    let mut obs = n.spawn_mailbox();
    let dead = n.spawn(|_| async { Term::atom("normal") });
    while n.is_alive(&dead) {
        tokio::task::yield_now().await;
    }
    let r = obs.monitor(&dead);
    let d = obs.recv_timeout(T).await.unwrap();
    assert_eq!(d.as_tuple().unwrap()[4], Term::atom("noproc"));
    assert_eq!(d.as_tuple().unwrap()[1], Term::Ref(r));

    let alive = n.spawn(|mut mb| async move {
        let _ = mb.recv().await;
        Term::atom("bye")
    });
    let r2 = obs.monitor(&alive);
    assert!(obs.demonitor(&r2));
    let r3 = obs.monitor(&alive);
    obs.send(&alive, Term::atom("stop"));
    let d = obs.recv_timeout(T).await.unwrap();
    assert_eq!(d.as_tuple().unwrap()[1], Term::Ref(r3), "only the active monitor fires");
    assert!(obs.recv_timeout(Duration::from_millis(100)).await.is_err());
}

#[tokio::test]
async fn names_are_released_on_exit_and_calls_work() {
    let n = node().await;
    let server = n.spawn(|mut mb| async move {
        while let Some(m) = mb.recv().await {
            if let Some((from, req)) = erlnode::node::gen_call_parts(&m) {
                mb.reply(from, Term::tuple([Term::atom("ok"), req.clone()]));
            }
        }
        Term::atom("normal")
    });
    n.register("srv", &server).unwrap();
    let mut client = n.spawn_mailbox();
    let name = n.name().to_string();
    let r = client.call(("srv", name.as_str()), Term::Int(7), T).await.unwrap();
    assert_eq!(r, Term::tuple([Term::atom("ok"), Term::Int(7)]));
    n.exit(&server, Term::atom("kill"));
    let err = client.call(("srv", name.as_str()), Term::Int(8), T).await.unwrap_err();
    assert!(matches!(err, CallError::NoProc(_)), "{err:?}");
    assert!(n.whereis("srv").is_none());
}

#[tokio::test]
async fn panics_become_exit_reasons() {
    let n = node().await;
    let mut obs = n.spawn_mailbox();
    obs.trap_exit(true);
    let p = n.spawn_link(obs.pid(), |_| async {
        panic!("deliberate");
    });
    let m = obs.recv_timeout(T).await.unwrap();
    let t = m.as_tuple().unwrap();
    assert_eq!(t[1], Term::Pid(p));
    assert_eq!(t[2].as_tuple().unwrap()[0], Term::atom("panic"));
}
