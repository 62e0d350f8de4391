//! Pinning (docs/guide.md, "What moves on its own"): a pinned type or a
//! pinned process is never moved by placement, whichever node plans the
//! rebalance, while unpinned processes of the same cluster still are.
//! Two Rust nodes with OTP `global` and the migration defaults.

use erlnode::examples::account::Account;
use erlnode::examples::counter::Counter;
use erlnode::prelude::*;
use std::time::Duration;

mod common;
use common::free_port;

const T: Duration = Duration::from_secs(10);

async fn node(tag: &str, epmd: u16) -> Node {
    Node::builder(format!("{tag}_{}@127.0.0.1", std::process::id())).cookie("placement-pin").epmd_port(epmd).start().await.unwrap()
}

/// Membership is learnt from the other manager's announcement: wait for it.
async fn await_members(m: &Migration, ty: &str, n: usize) {
    let deadline = tokio::time::Instant::now() + T;
    while m.members(ty).len() < n {
        assert!(tokio::time::Instant::now() < deadline, "{ty}: members {:?}", m.members(ty));
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn hosted_of(m: &Migration, ty: &str) -> Vec<String> {
    m.hosted().into_iter().filter(|(_, t, _)| t == ty).map(|(n, _, _)| n.to_string()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pinned_types_and_processes_stay_put_under_rebalance() {
    let epmd = free_port();
    let a = node("pin_a", epmd).await;
    let b = node("pin_b", epmd).await;
    let ma = Migration::builder(&a).register_pinned::<Counter>().register::<Account>().rebalance_on_join(false).start().unwrap();
    let mb = Migration::builder(&b).register::<Counter>().register::<Account>().rebalance_on_join(false).start().unwrap();
    a.connect(b.name().as_str()).await.unwrap();
    a.global().sync(T).await.unwrap();
    b.global().sync(T).await.unwrap();
    for i in 0..6 {
        ma.start_process::<Counter>(i, &format!("pin_counter_{i}")).await.unwrap();
        ma.start_process::<Account>(Term::nil(), &format!("pin_acct_{i}")).await.unwrap();
    }
    ma.start_process::<Account>(Term::nil(), "pin_acct_pinned").await.unwrap();
    ma.pin("pin_acct_pinned");
    for (m, ty) in [(&ma, "counter"), (&ma, "account"), (&mb, "counter"), (&mb, "account")] {
        await_members(m, ty, 2).await;
    }

    // The pinned type: neither node's rebalance moves it.
    assert_eq!(mb.rebalance("counter").await.unwrap().moved, 0, "b sees no movable counter on a");
    assert_eq!(ma.rebalance("counter").await.unwrap().moved, 0);
    assert_eq!(hosted_of(&ma, "counter").len(), 6);

    // Accounts move (6 movable -> 3 and 3), the pinned one stays.
    let r = ma.rebalance("account").await.unwrap();
    assert!(r.failed.is_empty(), "{r:?}");
    assert_eq!(r.moved, 3);
    let on_a = hosted_of(&ma, "account");
    assert!(on_a.contains(&"pin_acct_pinned".to_string()), "{on_a:?}");
    assert_eq!(on_a.len(), 4);
    assert_eq!(hosted_of(&mb, "account").len(), 3);

    // An explicit move still moves a pinned process.
    let c = ma.start_process::<Counter>(100, "pin_counter_explicit").await.unwrap();
    let pid = c.migrate(b.name().as_str()).await.unwrap();
    assert_eq!(&pid.node, b.name());
    assert_eq!(c.call::<i64>(&erlnode::examples::counter::Req::Get, T).await.unwrap(), 100);
    a.shutdown().await;
    b.shutdown().await;
}
