//! Rust -> Rust handoffs between two nodes on loopback, under traffic,
//! with an in-process name registry (the protocol itself, without
//! `global`). The acceptance tests against Elixir nodes live in
//! interop-tests.

use erlnode::examples::account::{Account, Msg};
use erlnode::migration::{HandoffConfig, Migration, Mode, NameRegistry};
use erlnode::term::serde::{from_term, to_term};
use erlnode::{Node, Pid, Term};
use futures_util::future::BoxFuture;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

mod common;
use common::free_port;

/// A name table shared by the nodes of this test process, seen through
/// one node. Like `global`, `re_register` returns only after a round trip
/// to every connected node: a node's answer leaves on the same link as,
/// and after, every message it had sent to the old pid, which is what
/// keeps per-sender order across the switch (docs/handoff.md).
#[derive(Clone)]
struct SharedRegistry {
    names: Arc<Mutex<HashMap<String, Pid>>>,
    node: Node,
}

impl SharedRegistry {
    fn with_pid<T>(&self, name: &str, f: impl FnOnce(&Pid) -> T) -> T {
        let names = self.names.lock().unwrap();
        f(names.get(name).expect("registered"))
    }

    fn view(&self, node: &Node) -> Arc<SharedRegistry> {
        Arc::new(SharedRegistry { names: self.names.clone(), node: node.clone() })
    }
}

impl NameRegistry for SharedRegistry {
    fn whereis(&self, name: &str) -> Option<Pid> {
        self.names.lock().unwrap().get(name).cloned()
    }
    fn register<'a>(&'a self, name: &'a str, pid: &'a Pid) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            let mut m = self.names.lock().unwrap();
            if m.contains_key(name) {
                return Err("taken".into());
            }
            m.insert(name.into(), pid.clone());
            Ok(())
        })
    }
    fn re_register<'a>(&'a self, name: &'a str, pid: &'a Pid) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            self.names.lock().unwrap().insert(name.into(), pid.clone());
            for peer in self.node.connected_nodes() {
                self.node.try_ping(peer.as_str(), Duration::from_secs(10)).await.map_err(|e| e.to_string())?;
            }
            Ok(())
        })
    }
}

async fn node(tag: &str, epmd: u16) -> Node {
    Node::builder(format!("{tag}_{}@127.0.0.1", std::process::id()))
        .cookie("migration-local")
        .epmd_port(epmd)
        .start()
        .await
        .unwrap()
}

/// Nodes `{tag}_a` and `{tag}_b` on one fresh EPMD, a name table both
/// see, and a migration manager with `cfg` on each (no types yet).
async fn two_managers(tag: &str, cfg: HandoffConfig) -> (Node, Node, SharedRegistry, Migration, Migration) {
    let epmd = free_port();
    let a = node(&format!("{tag}_a"), epmd).await;
    let b = node(&format!("{tag}_b"), epmd).await;
    let registry = SharedRegistry { names: Default::default(), node: a.clone() };
    let ma = Migration::start(&a, registry.view(&a), cfg.clone()).unwrap();
    let mb = Migration::start(&b, registry.view(&b), cfg).unwrap();
    (a, b, registry, ma, mb)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn account_hops_between_rust_nodes_under_traffic() {
    let cfg = HandoffConfig { retention: Duration::from_millis(300), rebalance_on_join: false, ..Default::default() };
    let (a, b, registry, ma, mb_) = two_managers("mig", cfg).await;
    ma.register_type::<Account>();
    mb_.register_type::<Account>();
    ma.start_process::<Account>(Term::nil(), "acc").await.unwrap();

    const SENDERS: i64 = 4;
    const PER_SENDER: i64 = 2000;
    let mut tasks = vec![];
    for s in 0..SENDERS {
        let reg = registry.view(&a);
        let n = if s % 2 == 0 { a.clone() } else { b.clone() };
        tasks.push(tokio::spawn(async move {
            let mut mb = n.spawn_mailbox();
            let sender = format!("s{s}");
            for seq in 1..=PER_SENDER {
                let msg = to_term(&Msg::Deposit(sender.clone(), seq, 1)).unwrap();
                // Resolve and send under the table's lock, as erlnode's
                // global does: the switch cannot fall between the two.
                if seq % 3 == 0 {
                    let req = reg.with_pid("acc", |pid| mb.send_request(pid, msg));
                    let r = mb.receive_response(req, Duration::from_secs(30)).await;
                    assert!(r.is_ok(), "call {seq} of {sender} failed: {r:?}");
                } else {
                    reg.with_pid("acc", |pid| mb.send(pid, Term::tuple([Term::atom("$gen_cast"), msg])));
                }
                if seq % 50 == 0 {
                    tokio::task::yield_now().await;
                }
            }
        }));
    }
    // Hop back and forth for as long as the senders run (at least 6 hops).
    let mut hops = 0;
    let mut hops_under_traffic = 0;
    while hops < 6 || tasks.iter().any(|t| !t.is_finished()) {
        let busy = tasks.iter().any(|t| !t.is_finished());
        let to = if hops % 2 == 0 { b.name().to_string() } else { a.name().to_string() };
        let mode = if hops % 3 == 2 { Mode::Cold } else { Mode::Hot };
        let pid = ma.migrate("acc", &to, mode, Duration::from_secs(30)).await.unwrap();
        assert_eq!(pid.node.as_str(), to, "hop {hops} lands on {to}");
        hops += 1;
        if busy {
            hops_under_traffic += 1;
        }
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert!(hops_under_traffic >= 3, "only {hops_under_traffic} hops overlapped the traffic");
    let mut probe = a.spawn_mailbox();
    let pid = registry.whereis("acc").unwrap();
    let state: Account = from_term(probe.call(&pid, Term::atom("get"), Duration::from_secs(10)).await.unwrap()).unwrap();
    assert_eq!(state.anomalies, vec![], "no loss, duplication or reordering");
    assert_eq!(state.applied, SENDERS * PER_SENDER);
    assert_eq!(state.balance, SENDERS * PER_SENDER);
    for s in 0..SENDERS {
        assert_eq!(state.last_seq[&format!("s{s}")], PER_SENDER);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_type_and_dead_target_roll_back() {
    // b runs a manager that does not know "account": the start is refused.
    let (a, b, registry, ma, _mb) = two_managers("rb", HandoffConfig { rebalance_on_join: false, ..Default::default() }).await;
    let pid = ma.start_process::<Account>(Term::nil(), "acc2").await.unwrap().pid().clone();
    let mut c = a.spawn_mailbox();
    for seq in 1..=3 {
        c.call(&pid, to_term(&Msg::Deposit("x".into(), seq, 2)).unwrap(), Duration::from_secs(5)).await.unwrap();
    }
    let err = ma.migrate("acc2", b.name().as_str(), Mode::Hot, Duration::from_secs(30)).await.unwrap_err();
    assert!(format!("{err}").contains("unknown_type"), "{err}");
    // still here, state intact, still serving
    assert_eq!(registry.whereis("acc2"), Some(pid.clone()));
    let st: Account = from_term(c.call(&pid, Term::atom("get"), Duration::from_secs(5)).await.unwrap()).unwrap();
    assert_eq!(st.balance, 6);
    assert!(st.anomalies.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_processes_rebalance_on_join_and_drain_on_leave() {
    use erlnode::migration::ring::Ring;
    const N: usize = 10_000;
    let _ = tracing_subscriber::fmt().with_env_filter("warn").with_test_writer().try_init();
    let epmd = free_port();
    let a = node("pl_a", epmd).await;
    let b = node("pl_b", epmd).await;
    a.connect(b.name().as_str()).await.unwrap();
    let registry = SharedRegistry { names: Default::default(), node: a.clone() };
    let cfg = HandoffConfig { retention: Duration::from_millis(100), ..Default::default() };
    let ma = Migration::start(&a, registry.view(&a), cfg.clone()).unwrap();
    let mut c = a.spawn_mailbox();
    for i in 0..N {
        let pid = ma.start_process::<Account>(Term::nil(), &format!("acct_{i}")).await.unwrap().pid().clone();
        c.send(&pid, Term::tuple([Term::atom("$gen_cast"), to_term(&Msg::Deposit("init".into(), 1, i as i64)).unwrap()]));
    }
    // b joins the type: the ring gives it roughly half; they move there.
    let mb_ = Migration::start(&b, registry.view(&b), cfg).unwrap();
    mb_.register_type::<Account>();
    let ring = Ring::new([a.name().clone(), b.name().clone()], ma.ring_encoding());
    let expected_on_b = (0..N).filter(|i| ring.owner(&Term::atom(&format!("acct_{i}"))).as_ref() == Some(b.name())).count();
    assert!(expected_on_b > N / 3 && expected_on_b < 2 * N / 3, "ring split {expected_on_b}");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    while mb_.hosted().len() < expected_on_b {
        assert!(tokio::time::Instant::now() < deadline, "only {} of {expected_on_b} moved", mb_.hosted().len());
        tokio::time::sleep(Duration::from_millis(50)).await; // bounded poll of the tables
    }
    assert_eq!(ma.hosted().len() + mb_.hosted().len(), N, "every process accounted for");
    for (name, _, pid) in mb_.hosted() {
        assert_eq!(ring.owner(&Term::Atom(name.clone())).as_ref(), Some(b.name()));
        assert_eq!(registry.whereis(name.as_str()), Some(pid));
    }
    // b leaves gracefully: everything comes back to a, state intact.
    let report = mb_.drain().await;
    assert_eq!(report.failed, vec![]);
    assert_eq!(report.moved, expected_on_b);
    assert_eq!(mb_.hosted().len(), 0);
    assert_eq!(ma.hosted().len(), N);
    for i in (0..N).step_by(97) {
        let pid = registry.whereis(&format!("acct_{i}")).unwrap();
        assert_eq!(&pid.node, a.name());
        let st: Account = from_term(c.call(&pid, Term::atom("get"), Duration::from_secs(10)).await.unwrap()).unwrap();
        assert_eq!(st.balance, i as i64, "state of acct_{i} intact");
        assert!(st.anomalies.is_empty());
    }
}

/// A state that reports its own drop: `instance` is set by `init_state`
/// (counted from 1), 0 for one built from a handover.
mod tracked {
    use erlnode::gen_server::{Ctx, GenServer, Reply};
    use erlnode::migration::Migratable;
    use erlnode::Term;
    use serde::{Deserialize, Serialize};
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::Mutex;
    use tokio::sync::mpsc::UnboundedSender;

    pub static DROPS: Mutex<Option<UnboundedSender<u32>>> = Mutex::new(None);
    static NEXT: AtomicU32 = AtomicU32::new(1);

    #[derive(Serialize, Deserialize)]
    pub struct Tracked {
        pub value: u32,
        #[serde(skip)]
        pub instance: u32,
    }

    impl Drop for Tracked {
        fn drop(&mut self) {
            if let Some(tx) = DROPS.lock().unwrap().as_ref() {
                let _ = tx.send(self.instance);
            }
        }
    }

    impl GenServer for Tracked {
        type Call = ();
        type Cast = ();
        type Reply = u32;
        async fn handle_call(&mut self, _r: (), _f: &Term, _c: &mut Ctx) -> Reply<u32> {
            Reply::Reply(self.value)
        }
    }

    impl Migratable for Tracked {
        const TYPE: &'static str = "tracked";
        type Args = u32;
        fn init_state(value: u32) -> Result<Self, Term> {
            Ok(Tracked { value, instance: NEXT.fetch_add(1, Ordering::SeqCst) })
        }
    }
}

/// The source lets go of its state when the name points at the target,
/// not at the end of its retention: the state the process started with
/// is dropped while the old pid is still alive, forwarding (retention 60
/// s here; before, the drop came after it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_drops_its_state_at_the_switch_not_after_retention() {
    use tracked::{Tracked, DROPS};
    let (tx, mut drops) = tokio::sync::mpsc::unbounded_channel();
    *DROPS.lock().unwrap() = Some(tx);
    let cfg = HandoffConfig { retention: Duration::from_secs(60), rebalance_on_join: false, ..Default::default() };
    let (a, b, _registry, ma, mb_) = two_managers("drop", cfg).await;
    ma.register_type::<Tracked>();
    mb_.register_type::<Tracked>();
    let old = ma.start_process::<Tracked>(7, "tracked").await.unwrap().pid().clone();
    let new = ma.migrate("tracked", b.name().as_str(), Mode::Hot, Duration::from_secs(30)).await.unwrap();
    assert_eq!(new.node, *b.name());
    // Instance 1 is the source's state (the target's own init_state made
    // instance 2, dropped for the handover's).
    let dropped = tokio::time::timeout(Duration::from_secs(20), async {
        while let Some(i) = drops.recv().await {
            if i == 1 {
                return;
            }
        }
    })
    .await;
    assert!(dropped.is_ok(), "the source's state was not dropped within 20 s of the switch (retention 60 s)");
    assert!(a.is_alive(&old), "the old pid is still in retention");
    let mut caller = a.spawn_mailbox();
    let v = caller.call(&new, Term::atom("nil"), Duration::from_secs(5)).await.unwrap();
    assert_eq!(v, Term::Int(7), "the target serves the state");
    *DROPS.lock().unwrap() = None;
    a.shutdown().await;
    b.shutdown().await;
}
