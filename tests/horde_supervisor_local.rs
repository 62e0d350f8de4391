//! Horde DynamicSupervisor members on three Rust nodes (loopback), with a
//! Horde registry and state handoff: placement by the ring, a join that
//! redistributes, a graceful leave that hands every state over, and the
//! calls Horde makes of a member. The same member against the real
//! Horde runs in interop-tests/horde/supervisor.rs (`make test-horde`).

use erlnode::examples::account::{Account, Msg};
use erlnode::horde::supervisor::Distribution;
use erlnode::horde::{HordeRegistry, HordeSupervisor, Redistribution};
use erlnode::term::serde::{from_term, to_term};
use erlnode::{Node, Term};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

mod common;
use common::free_port;

const T: Duration = Duration::from_secs(30);
/// Accounts in the test.
const N: usize = 40;

struct Member {
    node: Node,
    reg: HordeRegistry,
    sup: HordeSupervisor,
}

async fn member(tag: &str, epmd: u16, peers: &[&Member]) -> Member {
    let node = Node::builder(format!("{tag}_{}@127.0.0.1", std::process::id())).cookie("horde-sup-local").epmd_port(epmd).start().await.unwrap();
    for p in peers {
        node.connect(p.node.name().as_str()).await.unwrap();
    }
    let reg = HordeRegistry::builder("HSL.Registry").sync_interval(Duration::from_millis(50)).start(&node).unwrap();
    let sup = HordeSupervisor::builder("HSL.Sup")
        .sync_interval(Duration::from_millis(50))
        .redistribution(Redistribution::Active)
        .child::<Account>("HSL.Account")
        .register_in(&reg, "name")
        .handoff("name")
        .start(&node)
        .unwrap();
    Member { node, reg, sup }
}

fn spec(i: usize) -> Term {
    let args = Term::Map(vec![(Term::atom("name"), Term::binary(format!("a{i}").into_bytes())), (Term::atom("balance"), Term::Int(i as i64))]);
    Term::Map(vec![
        (Term::atom("id"), Term::binary(format!("a{i}").into_bytes())),
        (Term::atom("start"), Term::tuple([Term::atom("Elixir.HSL.Account"), Term::atom("start_link"), Term::List(vec![args])])),
    ])
}

async fn until<F, Fut>(what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(), String>>,
{
    let start = Instant::now();
    loop {
        match f().await {
            Ok(()) => return,
            Err(e) if start.elapsed() > T => panic!("{what}: not within {T:?}: {e}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
}

/// Every member sees the same `n` children, each alive on the member the
/// ring gives it, and `n` names in the registry.
async fn settled(members: &[&Member], n: usize) -> Result<BTreeMap<String, usize>, String> {
    let mut per_node = BTreeMap::new();
    for m in members {
        let children = m.sup.children().await.map_err(|e| e.to_string())?;
        if children.len() != n {
            return Err(format!("{}: {} children", m.node.name(), children.len()));
        }
        if m.reg.count() != n {
            return Err(format!("{}: {} names", m.node.name(), m.reg.count()));
        }
        let infos = m.sup.members().await.map_err(|e| e.to_string())?;
        if infos.len() != members.len() {
            return Err(format!("{}: members {infos:?}", m.node.name()));
        }
        per_node.clear();
        for c in children {
            *per_node.entry(c.pid.node.to_string()).or_insert(0) += 1;
        }
    }
    Ok(per_node)
}

async fn balance(m: &Member, i: usize) -> Result<i64, String> {
    let mut mb = m.node.spawn_mailbox();
    let key = Term::binary(format!("a{i}").into_bytes());
    let st = m.reg.call(&mut mb, &key, to_term(&Msg::Get).unwrap(), Duration::from_secs(5)).await.map_err(|e| e.to_string())?;
    let acc: Account = from_term(st).map_err(|e| e.to_string())?;
    Ok(acc.balance)
}

/// Every account answers, through `m`'s registry, with its opening
/// balance plus the one deposit of 1000: its state came along.
async fn await_deposits_kept(m: &Member, after: &str) {
    for i in 1..=N {
        until(&format!("a{i} after the {after}"), || async {
            match balance(m, i).await {
                Ok(x) if x == i as i64 + 1000 => Ok(()),
                other => Err(format!("{other:?}")),
            }
        })
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn children_follow_the_ring_and_keep_their_state_across_join_and_leave() {
    let _ = tracing_subscriber::fmt().with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into())).with_test_writer().try_init();
    let epmd = free_port();
    let a = member("hsl_a", epmd, &[]).await;
    let b = member("hsl_b", epmd, &[&a]).await;
    until("two members alive", || async { settled(&[&a, &b], 0).await.map(|_| ()) }).await;

    // Unknown module: refused with Horde's error shape.
    let bad = Term::Map(vec![(Term::atom("id"), Term::atom("x")), (Term::atom("start"), Term::tuple([Term::atom("Elixir.Nope"), Term::atom("start_link"), Term::List(vec![])]))]);
    let mut refused = 0;
    for _ in 0..4 {
        let r = a.sup.start_child(bad.clone()).await.unwrap();
        let Some([err, reason]) = r.as_tuple() else { panic!("{r:?}") };
        assert!(err.is_atom("error"));
        assert!(matches!(reason.as_tuple(), Some([t, m]) if t.is_atom("erlnode_no_rust_type") && m.is_atom("Elixir.Nope")), "{r:?}");
        refused += 1;
    }
    assert_eq!(refused, 4);

    for i in 1..=N {
        let r = if i % 2 == 0 { a.sup.start_child(spec(i)).await } else { b.sup.start_child(spec(i)).await }.unwrap();
        assert!(matches!(r.as_tuple(), Some([ok, Term::Pid(_)]) if ok.is_atom("ok")), "{r:?}");
    }
    until("children on both members", || async {
        let p = settled(&[&a, &b], N).await?;
        if p.len() == 2 { Ok(()) } else { Err(format!("{p:?}")) }
    })
    .await;
    // Placement is the ring's.
    let infos = a.sup.members().await.unwrap();
    for c in a.sup.children().await.unwrap() {
        let i: usize = {
            let key = (1..=N).find(|i| a.reg.whereis(&Term::binary(format!("a{i}").into_bytes())) == Some(c.pid.clone()));
            key.expect("every child is registered")
        };
        let owner = Distribution::Uniform.choose(&spec(i), &infos).unwrap();
        let Some([_, Term::Atom(node)]) = owner.as_tuple() else { panic!() };
        assert_eq!(node, &c.pid.node, "a{i}");
    }
    // A deposit to each.
    let mut mb = a.node.spawn_mailbox();
    for i in 1..=N {
        let key = Term::binary(format!("a{i}").into_bytes());
        let msg = to_term(&Msg::Deposit("t".into(), 1, 1000)).unwrap();
        a.reg.call(&mut mb, &key, msg, Duration::from_secs(5)).await.unwrap();
    }

    // A third member joins: its share moves to it, with its state.
    let c = member("hsl_c", epmd, &[&a, &b]).await;
    until("children on three members", || async {
        let p = settled(&[&a, &b, &c], N).await?;
        if p.len() == 3 { Ok(()) } else { Err(format!("{p:?}")) }
    })
    .await;
    await_deposits_kept(&b, "join").await;

    // B leaves gracefully: every child it ran moves, with its state.
    let report = b.sup.leave(T).await.unwrap();
    assert!(report.synced, "{report:?}");
    assert_eq!(report.still_running, 0);
    b.node.shutdown().await;
    until("children on the two remaining members", || async {
        let p = settled(&[&a, &c], N).await?;
        if p.len() == 2 && !p.contains_key(b.node.name().as_str()) { Ok(()) } else { Err(format!("{p:?}")) }
    })
    .await;
    await_deposits_kept(&a, "leave").await;
    // Horde's calls of a member.
    let mut mb = a.node.spawn_mailbox();
    let r = mb.call(("Elixir.HSL.Sup.ProcessesSupervisor", c.node.name().as_str()), Term::atom("count_children"), T).await.unwrap();
    let Term::List(kw) = &r else { panic!("{r:?}") };
    let active = kw.iter().find_map(|p| match p.as_tuple() { Some([k, Term::Int(v)]) if k.is_atom("active") => Some(*v), _ => None }).unwrap();
    let on_c = c.sup.children().await.unwrap().iter().filter(|x| x.local).count();
    assert_eq!(active as usize, on_c);
    let r = mb.call(("Elixir.HSL.Sup", c.node.name().as_str()), Term::atom("bogus"), T).await.unwrap();
    assert_eq!(r, Term::tuple([Term::atom("error"), Term::atom("unknown_call")]));
    a.node.shutdown().await;
    c.node.shutdown().await;
}
