//! A Horde member whose CRDT never has an empty mailbox still offers its
//! own writes to the other members.
//!
//! Why: in DeltaCrdt data flows only from the originator of a sync, so a
//! member's own keys reach the others only through the syncs it starts on
//! its tick. Its CRDT also answers every sync the others start (the BEAM
//! members start one per neighbour every 300 ms, finished or not). Under
//! load, with many keys differing, those answers can keep its mailbox
//! non-empty for good; the tick must still get its turn. When it did not
//! (the tick came after the mailbox in a biased `select!`), a member with
//! half its 2,500 registrations still unsent stopped syncing and the other
//! three members of `make test-horde`'s registry test stayed 1,081 keys
//! short for the whole minute (seen with the link reader's busy poll on and
//! a busy CPU: the extra load was what kept the mailbox full).
//!
//! Here a thread of its own keeps costly read calls queued at the CRDT,
//! so its mailbox is never empty when the member looks at it.

use erlnode::horde::{HordeRegistry, HordeSupervisor};
use erlnode::{Dest, Node, Term};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

mod common;
use common::free_port;

const T: Duration = Duration::from_secs(60);
/// Read calls kept queued, and keys per call (about 20 ms of work each in
/// a debug build; ten times the keys in an optimised one). A member that
/// gave its worker back only when tokio's budget of 128 receives ran out
/// would hold it for 128 turns of 64 calls, minutes: well past `T`.
const QUEUED: usize = 64;
const KEYS_PER_READ: usize = if cfg!(debug_assertions) { 20_000 } else { 200_000 };

async fn node(tag: &str, epmd: u16, cookie: &str) -> Node {
    Node::builder(format!("{tag}_{}@127.0.0.1", std::process::id())).cookie(cookie).epmd_port(epmd).start().await.unwrap()
}

/// Keeps [`QUEUED`] read calls (`{:read, Keys}`, what `DeltaCrdt.read/3`
/// sends) queued at `to` until `stop`: each costs the CRDT about as much
/// as a diff step of a big tree, so its mailbox is never empty when it
/// looks, as under a burst of syncs it cannot keep up with. Returns how
/// many calls it made.
fn flood(node: &Node, to: Dest, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<u64> {
    let mut mb = node.spawn_mailbox();
    let keys = Term::List((0..KEYS_PER_READ).map(|i| Term::tuple([Term::atom("key"), Term::binary(format!("x{i}").into_bytes())])).collect());
    // A thread and runtime of its own, as a link reader delivering a peer's
    // frames is: woken by a reply on the member's worker, a task of the
    // test's runtime would wait in that worker's LIFO slot until the member
    // yields, and the mailbox would run dry in between.
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async move {
            let (mut sent, mut queued) = (0u64, 0);
            while !stop.load(Ordering::Relaxed) {
                while queued < QUEUED {
                    let from = Term::tuple([Term::Pid(mb.pid().clone()), Term::Int(sent as i64)]);
                    mb.send_to(&to, Term::tuple([Term::atom("$gen_call"), from, Term::tuple([Term::atom("read"), keys.clone()])]));
                    sent += 1;
                    queued += 1;
                }
                mb.recv_timeout(Duration::from_secs(5)).await.expect("the CRDT answers read calls");
                queued -= 1;
            }
            sent
        })
    })
}

/// Polls `f` until it is `Ok`; panics with its last error after `T`.
/// Returns how long it took.
async fn until<F, Fut>(what: &str, mut f: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(), String>>,
{
    let start = Instant::now();
    loop {
        match f().await {
            Ok(()) => return start.elapsed(),
            Err(e) => assert!(start.elapsed() < T, "{what}: not within {T:?}: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registry_member_with_a_flooded_crdt_still_syncs_its_own_keys() {
    let epmd = free_port();
    let a = node("hbp_ra", epmd, "hbp-reg").await;
    let b = node("hbp_rb", epmd, "hbp-reg").await;
    a.connect(b.name().as_str()).await.unwrap();
    let reg_a = HordeRegistry::builder("HBP.Registry").start(&a).unwrap();
    let reg_b = HordeRegistry::builder("HBP.Registry").start(&b).unwrap();
    until("both members", || async {
        let n = (reg_a.members().len(), reg_b.members().len());
        if n == (2, 2) { Ok(()) } else { Err(format!("{n:?}")) }
    })
    .await;

    let stop = Arc::new(AtomicBool::new(false));
    let flooder = flood(&b, Dest::local("Elixir.HBP.Registry.Crdt", b.name().as_str()), stop.clone());
    let owner = erlnode::services::echo::spawn_unregistered(&b);
    for i in 0..50 {
        reg_b.register(Term::binary(format!("k{i}").into_bytes()), Term::Int(i), &owner).await.unwrap();
    }
    let took = until("b's 50 keys on a while b's CRDT is flooded", || async {
        let n = reg_a.count();
        if n == 50 { Ok(()) } else { Err(format!("{n} keys")) }
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    let sent = flooder.join().unwrap();
    println!("a had b's 50 keys {took:?} after they were registered; {sent} read calls made of b's CRDT meanwhile");
    assert!(sent > QUEUED as u64, "the CRDT answered the flood's calls meanwhile ({sent} made)");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_supervisor_member_with_a_flooded_crdt_still_syncs_its_own_children() {
    let epmd = free_port();
    let a = node("hbp_sa", epmd, "hbp-sup").await;
    let b = node("hbp_sb", epmd, "hbp-sup").await;
    a.connect(b.name().as_str()).await.unwrap();
    let sup = |n: &Node| HordeSupervisor::builder("HBP.Sup").child::<erlnode::examples::account::Account>("HBP.Account").start(n).unwrap();
    let (sup_a, sup_b) = (sup(&a), sup(&b));
    until("both members", || async {
        let n = (sup_a.members().await.unwrap().len(), sup_b.members().await.unwrap().len());
        if n == (2, 2) { Ok(()) } else { Err(format!("{n:?}")) }
    })
    .await;

    let stop = Arc::new(AtomicBool::new(false));
    let flooder = flood(&b, Dest::local("Elixir.HBP.Sup.Crdt", b.name().as_str()), stop.clone());
    for i in 0..20 {
        let args = Term::Map(vec![(Term::atom("name"), Term::binary(format!("c{i}").into_bytes())), (Term::atom("balance"), Term::Int(i))]);
        let spec = Term::Map(vec![
            (Term::atom("id"), Term::binary(format!("c{i}").into_bytes())),
            (Term::atom("start"), Term::tuple([Term::atom("Elixir.HBP.Account"), Term::atom("start_link"), Term::List(vec![args])])),
        ]);
        sup_b.start_child(spec).await.unwrap();
    }
    let took = until("b's 20 children on a while b's CRDT is flooded", || async {
        let n = sup_a.children().await.unwrap().len();
        if n == 20 { Ok(()) } else { Err(format!("{n} children")) }
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    let sent = flooder.join().unwrap();
    println!("a listed b's 20 children {took:?} after they were started; {sent} read calls made of b's CRDT meanwhile");
    assert!(sent > QUEUED as u64, "the CRDT answered the flood's calls meanwhile ({sent} made)");
}
