//! Issue 14, crash-safe state machines: accounts with `replicas: 1`
//! under synchronous call traffic; the node hosting them is SIGKILLed
//! (no graceful leave) and every deposit whose call returned `{ok, _}`
//! must be in the state the replica node restarts, exactly one copy of
//! each account must run, and its global name must be registered once.
//! Rust -> Rust, Rust -> Elixir and Elixir -> Rust.

use crate::support::{self, BeamNode, Epmd};
use erlnode::Atom;
use erlnode::examples::account::{Account, AnomalyKind};
use erlnode::migration::replica::{messages::Msg, STORE_NAME};
use erlnode::process::Dest;
use erlnode::term::serde::from_term;
use erlnode::{Node, Term};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const T: Duration = Duration::from_secs(60);
const CALL: Duration = Duration::from_secs(5);

/// Which deposits were acknowledged: (account, sender) -> seqs.
#[derive(Default)]
struct Tally {
    acked: Mutex<BTreeMap<(String, String), Vec<i64>>>,
    acks: AtomicUsize,
    failed: AtomicUsize,
}

/// `erlnode run --replicas 1` (no placement on join), connected to
/// `connect` if given, starting `accounts`.
async fn rust_member(name: &str, cookie: &str, epmd: u16, connect: Option<&str>, accounts: &[String]) -> support::Erlnode {
    rust_member_in(name, cookie, epmd, connect, accounts, "sync").await
}

/// [`rust_member`] with `--replica-mode mode`.
async fn rust_member_in(name: &str, cookie: &str, epmd: u16, connect: Option<&str>, accounts: &[String], mode: &str) -> support::Erlnode {
    let mut args = vec!["--no-embedded-epmd", "--no-rebalance-on-join", "--replicas", "1", "--replica-mode", mode];
    if let Some(c) = connect {
        args.extend(["--connect", c]);
    }
    for a in accounts {
        args.extend(["--start-account", a.as_str()]);
    }
    support::Erlnode::run(name, cookie, epmd, &args).await
}

async fn driver(cookie: &str, epmd: u16) -> Node {
    Node::builder(format!("{}@127.0.0.1", support::unique("drv")))
        .cookie(cookie)
        .epmd_port(epmd)
        .embedded_epmd(false)
        .start()
        .await
        .expect("driver node starts")
}

/// `senders` tasks, each depositing 1 into every account in turn with
/// synchronous calls by global name, numbering per account; a failed
/// call (nodedown, noproc during failover, timeout) is counted and the
/// next one gets the next number.
fn start_senders(node: &Node, accounts: &[String], senders: usize, tally: Arc<Tally>, stop: Arc<AtomicBool>) -> Vec<tokio::task::JoinHandle<()>> {
    (0..senders)
        .map(|s| {
            let (node, accounts, tally, stop) = (node.clone(), accounts.to_vec(), tally.clone(), stop.clone());
            tokio::spawn(async move {
                let id = format!("s{s}");
                let mut mb = node.spawn_mailbox();
                let mut seq: HashMap<String, i64> = HashMap::new();
                while !stop.load(Ordering::Relaxed) {
                    for a in &accounts {
                        let n = seq.entry(a.clone()).or_insert(0);
                        *n += 1;
                        let msg = Term::tuple([Term::atom("deposit"), Term::from(id.as_str()), Term::Int(*n), Term::Int(1)]);
                        match mb.call(Dest::Global(Term::atom(a)), msg, CALL).await {
                            Ok(r) if matches!(r.as_tuple(), Some([ok, _]) if ok.is_atom("ok")) => {
                                tally.acked.lock().unwrap().entry((a.clone(), id.clone())).or_default().push(*n);
                                tally.acks.fetch_add(1, Ordering::Relaxed);
                            }
                            _ => {
                                tally.failed.fetch_add(1, Ordering::Relaxed);
                                // Backoff, not synchronisation: the name is being failed over.
                                tokio::time::sleep(Duration::from_millis(20)).await;
                            }
                        }
                    }
                }
            })
        })
        .collect()
}

/// Violations of "no acknowledged deposit lost" in `st` for `account`:
/// an acked seq above the sender's last applied one, or inside a gap the
/// account recorded (sequential senders: a gap is a deposit never applied).
/// `acked` is a snapshot taken before `st` was read (senders may still
/// be running: a later ack is not in `st`, and not lost).
fn lost_acked(account: &str, st: &Account, acked: &BTreeMap<(String, String), Vec<i64>>) -> Vec<String> {
    let mut out = vec![];
    for ((a, sender), seqs) in acked.iter().filter(|((a, _), _)| a == account) {
        let last = st.last_seq.get(sender).copied().unwrap_or(0);
        let gaps: Vec<(i64, i64)> = st.anomalies.iter().filter(|x| &x.sender == sender && x.kind == AnomalyKind::Gap).map(|x| (x.expected, x.got)).collect();
        for s in seqs {
            if *s > last || gaps.iter().any(|(e, g)| s >= e && s < g) {
                out.push(format!("{a}: {sender} #{s} acknowledged but lost (last {last}, gaps {gaps:?})"));
            }
        }
    }
    out
}

async fn get_state(node: &Node, account: &str) -> Result<Account, String> {
    let mut mb = node.spawn_mailbox();
    let r = mb.call(Dest::Global(Term::atom(account)), Term::atom("get"), CALL).await.map_err(|e| e.to_string())?;
    from_term(r).map_err(|e| e.to_string())
}

/// What a node's replica store holds: names.
async fn replicas_on(node: &Node, on: &str) -> Vec<String> {
    replicas_with_owner(node, on).await.into_iter().map(|(n, _)| n).collect()
}

/// What a node's replica store holds: (name, owner pid).
async fn replicas_with_owner(node: &Node, on: &str) -> Vec<(String, erlnode::Pid)> {
    let mut mb = node.spawn_mailbox();
    match mb.call((STORE_NAME, on), Msg::List.to_term(), CALL).await {
        Ok(Term::List(items)) => items
            .iter()
            .filter_map(|i| match i.as_tuple()? {
                [Term::Atom(n), _, Term::Pid(p), _] => Some((n.to_string(), p.clone())),
                _ => None,
            })
            .collect(),
        _ => vec![],
    }
}

/// An account's state as it travels to the replicas (a map, version 1).
fn account_state(balance: i64, applied: i64) -> Term {
    Term::Map(vec![
        (Term::atom("balance"), Term::Int(balance)),
        (Term::atom("applied"), Term::Int(applied)),
        (Term::atom("last_seq"), Term::Map(vec![])),
        (Term::atom("anomalies"), Term::nil()),
    ])
}

/// Connects `drv` to `store`'s node and waits until its replica store
/// answers.
async fn connect_to_store(drv: &Node, store: &str) {
    drv.connect(store).await.unwrap();
    wait_until(&format!("the store on {store}"), T, || async {
        let mut mb = drv.spawn_mailbox();
        mb.call((STORE_NAME, store), Msg::Stats.to_term(), CALL).await.is_ok()
    })
    .await;
}

/// What a node's replica store took so far: (whole states, deltas
/// applied, deltas refused for want of a base).
async fn store_stats(node: &Node, on: &str) -> (i64, i64, i64) {
    let mut mb = node.spawn_mailbox();
    let r = mb.call((STORE_NAME, on), Msg::Stats.to_term(), CALL).await;
    let Ok(Term::Map(kv)) = &r else { panic!("stats of {on}: {r:?}") };
    let get = |k: &str| kv.iter().find(|(kk, _)| kk.is_atom(k)).and_then(|(_, v)| v.as_int()).unwrap_or_else(|| panic!("{k} in {r:?}"));
    (get("puts"), get("deltas"), get("need_whole"))
}

/// The migratable processes a node's manager hosts.
async fn hosted_on(node: &Node, on: &str) -> Vec<String> {
    let mut mb = node.spawn_mailbox();
    let req = Term::tuple([Term::atom("$erlnode_migrate"), Term::atom("hosted")]);
    match mb.call(("erlnode_migration", on), req, CALL).await {
        Ok(Term::List(items)) => items.iter().filter_map(|i| i.as_tuple().and_then(|t| t[0].as_atom().map(|a| a.to_string()))).collect(),
        r => panic!("hosted on {on}: {r:?}"),
    }
}

async fn wait_until<F, Fut>(what: &str, timeout: Duration, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    while !f().await {
        assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await; // bounded poll
    }
}

/// After the kill: every account answers again, exactly one copy runs
/// on the live nodes, every node's global agrees on it, and no acked
/// deposit is missing.
async fn verify(drv: &Node, live: &[String], accounts: &[String], tally: &Tally) {
    let lost = verify_counting(drv, live, accounts, tally).await;
    assert!(lost.is_empty(), "{} acknowledged deposits lost, first: {:?}", lost.len(), &lost[..lost.len().min(10)]);
}

/// [`verify`], but acknowledged deposits that are missing are returned
/// instead of failing (async mode may lose some: docs/replicas.md); a
/// wrong number of copies still fails.
async fn verify_counting(drv: &Node, live: &[String], accounts: &[String], tally: &Tally) -> Vec<String> {
    for a in accounts {
        wait_until(&format!("{a} answers again"), T, || async { get_state(drv, a).await.is_ok() }).await;
    }
    // The managers' hosted tables follow a restore by a message: poll
    // (bounded) until each account is hosted exactly once.
    let deadline = tokio::time::Instant::now() + T;
    let copies = loop {
        let mut copies: HashMap<String, usize> = HashMap::new();
        for n in live {
            for h in hosted_on(drv, n).await {
                *copies.entry(h).or_default() += 1;
            }
        }
        if accounts.iter().all(|a| copies.get(a) == Some(&1)) || tokio::time::Instant::now() >= deadline {
            break copies;
        }
        tokio::time::sleep(Duration::from_millis(100)).await; // bounded poll
    };
    let mut problems = vec![];
    let mut lost = vec![];
    let acked = tally.acked.lock().unwrap().clone();
    for a in accounts {
        let c = copies.get(a).copied().unwrap_or(0);
        if c != 1 {
            let owner = drv.global().whereis_name(&Term::atom(a));
            problems.push(format!("{a}: {c} copies hosted (global: {owner:?})"));
        }
        let st = get_state(drv, a).await.expect("answers");
        lost.extend(lost_acked(a, &st, &acked));
    }
    assert!(problems.is_empty(), "{} problems, first: {:?}", problems.len(), &problems[..problems.len().min(10)]);
    lost
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replica_kill9_rust_owner_loses_no_acked_deposit() {
    let epmd = Epmd::start().await;
    let cookie = support::unique("rep");
    let names: Vec<String> = (1..=3).map(|i| format!("{}@127.0.0.1", support::unique(&format!("rr{i}")))).collect();
    let accounts: Vec<String> = (0..12).map(|i| support::unique(&format!("racc{i}"))).collect();
    let mut r1 = rust_member(&names[0], &cookie, epmd.port(), None, &accounts).await;
    let mut rest = vec![];
    for n in &names[1..] {
        rest.push(rust_member(n, &cookie, epmd.port(), Some(&names[0]), &[]).await);
    }
    let drv = driver(&cookie, epmd.port()).await;
    for n in &names {
        drv.connect(n).await.expect("driver connects");
    }
    drv.global().sync(T).await.unwrap();
    for a in &accounts {
        wait_until(&format!("{a} registered"), T, || async { drv.global().whereis_name(&Term::atom(a)).is_some() }).await;
    }
    // Each account's replica is on r2 or r3 (r1 owns them all).
    wait_until("every account has a replica", T, || async {
        let mut held = HashSet::new();
        for n in &names[1..] {
            held.extend(replicas_on(&drv, n).await);
        }
        accounts.iter().all(|a| held.contains(a))
    })
    .await;

    let tally = Arc::new(Tally::default());
    let stop = Arc::new(AtomicBool::new(false));
    let senders = start_senders(&drv, &accounts, 4, tally.clone(), stop.clone());
    wait_until("traffic", T, || async { tally.acks.load(Ordering::Relaxed) >= 300 }).await;
    r1.kill().await;
    let at_kill = tally.acks.load(Ordering::Relaxed);
    wait_until("traffic after the kill", T, || async { tally.acks.load(Ordering::Relaxed) >= at_kill + 300 }).await;
    stop.store(true, Ordering::Relaxed);
    for s in senders {
        s.await.unwrap();
    }
    verify(&drv, &names[1..], &accounts, &tally).await;
    eprintln!(
        "rust->rust: {} deposits acknowledged ({} before the kill), {} calls failed during failover, 0 lost",
        tally.acks.load(Ordering::Relaxed),
        at_kill,
        tally.failed.load(Ordering::Relaxed)
    );
    for mut r in rest {
        r.kill().await;
    }
}

/// An Elixir node hosting accounts with `replicas: 1, :sync` (set in
/// the application environment before `erlnode_ex` starts).
async fn elixir_node(prefix: &str, cookie: &str, epmd: u16) -> BeamNode {
    elixir_named(BeamNode::builder().prefix(prefix), cookie, epmd).await
}

async fn elixir_named(builder: support::BeamNodeBuilder, cookie: &str, epmd: u16) -> BeamNode {
    elixir_named_in(builder, cookie, epmd, "sync").await
}

/// [`elixir_named`] with replica mode `mode` for accounts.
async fn elixir_named_in(builder: support::BeamNodeBuilder, cookie: &str, epmd: u16, mode: &str) -> BeamNode {
    let b = builder.cookie(cookie).epmd_port(epmd).erlnode_ex(true).start().await;
    let r = b
        .eval(&format!(
            "application:load(erlnode_ex), \
             application:set_env(erlnode_ex, replicas, #{{<<\"account\">> => {{1, {mode}}}}}), \
             application:set_env(erlnode_ex, rebalance_on_join, false), \
             application:ensure_all_started(erlnode_ex)"
        ))
        .await;
    assert_eq!(r.as_tuple().map(|t| t[0].clone()), Some(Term::atom("ok")), "erlnode_ex starts: {r:?}");
    b
}

/// Traffic, SIGKILL of the owner's node (`kill`), traffic again, then
/// [`verify`] on the survivors.
async fn crash_under_traffic<F, Fut>(drv: &Node, survivor: &str, accounts: &[String], kill: F) -> Arc<Tally>
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    wait_until("every account has a replica on the survivor", T, || async {
        let held: HashSet<String> = replicas_on(drv, survivor).await.into_iter().collect();
        accounts.iter().all(|a| held.contains(a))
    })
    .await;
    let tally = Arc::new(Tally::default());
    let stop = Arc::new(AtomicBool::new(false));
    let senders = start_senders(drv, accounts, 4, tally.clone(), stop.clone());
    wait_until("traffic", T, || async { tally.acks.load(Ordering::Relaxed) >= 200 }).await;
    // Accounts replicate by deltas (both twins implement them): the
    // survivor's replicas, which the failover restores, were built by
    // applying them, so the check after the kill covers their content.
    let (puts, deltas, refused) = store_stats(drv, survivor).await;
    eprint!("[replica store: {puts} whole states, {deltas} deltas applied, {refused} refused] ");
    assert!(deltas >= 100, "deltas should carry most updates: {puts} whole, {deltas} deltas, {refused} refused");
    kill().await;
    let at_kill = tally.acks.load(Ordering::Relaxed);
    wait_until("traffic after the kill", T, || async { tally.acks.load(Ordering::Relaxed) >= at_kill + 200 }).await;
    stop.store(true, Ordering::Relaxed);
    for s in senders {
        s.await.unwrap();
    }
    verify(drv, &[survivor.to_string()], accounts, &tally).await;
    eprintln!(
        "{} deposits acknowledged ({at_kill} before the kill), {} calls failed during failover, 0 lost",
        tally.acks.load(Ordering::Relaxed),
        tally.failed.load(Ordering::Relaxed)
    );
    tally
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replica_kill9_rust_owner_elixir_replica_takes_over() {
    let epmd = Epmd::start().await;
    let cookie = support::unique("rep");
    let e1 = elixir_node("re1", &cookie, epmd.port()).await;
    let r1_name = format!("{}@127.0.0.1", support::unique("rr1"));
    let accounts: Vec<String> = (0..8).map(|i| support::unique(&format!("rxacc{i}"))).collect();
    let mut r1 = rust_member(&r1_name, &cookie, epmd.port(), Some(e1.name()), &accounts).await;
    let drv = driver(&cookie, epmd.port()).await;
    drv.connect(&r1_name).await.unwrap();
    drv.connect(e1.name()).await.unwrap();
    drv.global().sync(T).await.unwrap();
    for a in &accounts {
        wait_until(&format!("{a} registered on r1"), T, || async {
            drv.global().whereis_name(&Term::atom(a)).is_some_and(|p| p.node == Atom::new(&r1_name))
        })
        .await;
    }
    eprint!("rust->elixir: ");
    crash_under_traffic(&drv, e1.name(), &accounts, || r1.kill()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replica_kill9_elixir_owner_rust_replica_takes_over() {
    let epmd = Epmd::start().await;
    let cookie = support::unique("rep");
    let mut e1 = elixir_node("re1", &cookie, epmd.port()).await;
    let r2_name = format!("{}@127.0.0.1", support::unique("rr2"));
    let r2 = rust_member(&r2_name, &cookie, epmd.port(), Some(e1.name()), &[]).await;
    let drv = driver(&cookie, epmd.port()).await;
    drv.connect(&r2_name).await.unwrap();
    drv.connect(e1.name()).await.unwrap();
    drv.global().sync(T).await.unwrap();
    // r2 must be a member before the Elixir owners look for replica nodes.
    let r2_atom = format!("'{r2_name}'");
    wait_until("e1 sees r2 host accounts", T, || async {
        let members = e1.eval(&format!("lists:member({r2_atom}, 'Elixir.Erlnode.Migration':members(<<\"account\">>))")).await;
        members.is_atom("true")
    })
    .await;
    let accounts: Vec<String> = (0..8).map(|i| support::unique(&format!("exacc{i}"))).collect();
    for a in &accounts {
        let r = e1.eval(&format!("'Elixir.Erlnode.Migration':start_process(<<\"account\">>, #{{}}, '{a}')")).await;
        assert!(matches!(r.as_tuple(), Some([ok, _]) if ok.is_atom("ok")), "{a}: {r:?}");
    }
    wait_until("names visible to the driver", T, || async { accounts.iter().all(|a| drv.global().whereis_name(&Term::atom(a)).is_some()) }).await;
    eprint!("elixir->rust: ");
    crash_under_traffic(&drv, &r2_name, &accounts, || e1.kill()).await;
    drop(r2);
}

/// The delta rules, the same in both stores: a delta applies only on top
/// of exactly its base from the same owner (else the store answers
/// `need_whole`, as it does for a delta the type cannot apply), a delta
/// already held is acknowledged again, and what the store then holds is
/// the state the deltas describe. The "owner" is a bare Rust mailbox, so
/// every answer is seen.
#[tokio::test(flavor = "multi_thread")]
async fn replica_stores_apply_deltas_only_on_their_base() {
    let epmd = Epmd::start().await;
    let cookie = support::unique("rep");
    let e1 = elixir_node("rde", &cookie, epmd.port()).await;
    let r1_name = format!("{}@127.0.0.1", support::unique("rdr"));
    let _r1 = rust_member(&r1_name, &cookie, epmd.port(), Some(e1.name()), &[]).await;
    let drv = driver(&cookie, epmd.port()).await;
    for store in [r1_name.as_str(), e1.name()] {
        connect_to_store(&drv, store).await;
        let mut owner = drv.spawn_mailbox();
        let me = owner.pid().clone();
        let name = Atom::new(&support::unique("dacc"));
        let dest = Dest::local(STORE_NAME, store);
        let delta = |base: u64, seq: u64, d: Term| Msg::Delta { name: name.clone(), base, seq, delta: d, owner: me.clone(), ack_to: Some(me.clone()) }.to_term();
        let answer = |m: Term| Msg::parse(&m).and_then(|r| r.ok());
        // No entry yet: no base.
        let d12 = erlnode::migration::replica::map_delta(&account_state(10, 1), &account_state(15, 2)).expect("a delta");
        owner.send_to(&dest, delta(1, 2, d12.clone()));
        assert_eq!(answer(owner.recv_timeout(CALL).await.unwrap()), Some(Msg::NeedWhole { node: Atom::new(store), name: name.clone() }), "{store}");
        let put = Msg::Put { name: name.clone(), type_name: "account".into(), args: Term::nil(), seq: 1, state: account_state(10, 1), owner: me.clone(), cfg: erlnode::migration::replica::ReplicaConfig::sync(1), ack_to: Some(me.clone()) };
        owner.send_to(&dest, put.to_term());
        assert_eq!(answer(owner.recv_timeout(CALL).await.unwrap()), Some(Msg::Ack { node: Atom::new(store), seq: 1 }), "{store}");
        // On its base: applied, acknowledged; again: acknowledged, not reapplied.
        for _ in 0..2 {
            owner.send_to(&dest, delta(1, 2, d12.clone()));
            assert_eq!(answer(owner.recv_timeout(CALL).await.unwrap()), Some(Msg::Ack { node: Atom::new(store), seq: 2 }), "{store}");
        }
        // A gap, and a delta the type cannot read: the whole state, please.
        let d34 = erlnode::migration::replica::map_delta(&account_state(20, 3), &account_state(25, 4)).unwrap();
        owner.send_to(&dest, delta(3, 4, d34));
        assert_eq!(answer(owner.recv_timeout(CALL).await.unwrap()), Some(Msg::NeedWhole { node: Atom::new(store), name: name.clone() }), "{store}");
        owner.send_to(&dest, delta(2, 3, Term::atom("not_a_delta")));
        assert_eq!(answer(owner.recv_timeout(CALL).await.unwrap()), Some(Msg::NeedWhole { node: Atom::new(store), name: name.clone() }), "{store}");
        // What it holds: seq 2, the state the delta made (a failover
        // would restore exactly this).
        let held = owner.call(dest.clone(), Msg::List.to_term(), CALL).await.unwrap();
        let Term::List(items) = &held else { panic!("{held:?}") };
        let mine: Vec<_> = items.iter().filter(|i| matches!(i.as_tuple(), Some([Term::Atom(n), ..]) if *n == name)).collect();
        assert!(matches!(mine.as_slice(), [i] if matches!(i.as_tuple(), Some([_, Term::Int(2), Term::Pid(p), _]) if *p == me)), "{store}: {held:?}");
        let (puts, deltas, refused) = store_stats(&drv, store).await;
        assert_eq!((puts, deltas, refused), (1, 1, 3), "{store}: whole states, deltas applied, refused");
    }
    // The state itself, from the Elixir store's table.
    let st = e1.eval_elixir("for {_, e} <- :sys.get_state(:erlnode_replica).entries, do: {e.seq, e.state}").await;
    let Term::List(items) = &st else { panic!("{st:?}") };
    let [Term::Tuple(e)] = items.as_slice() else { panic!("{st:?}") };
    assert_eq!(e[0], Term::Int(2), "{st:?}");
    let (got, want): (Account, Account) = (from_term(e[1].clone()).unwrap(), from_term(account_state(15, 2)).unwrap());
    assert_eq!(got, want, "the state the delta describes");
}

/// A process's own replica setting (`start_process_with`, Elixir's
/// `start_process(..., replicas: n, replica_mode: m)`) travels with it on
/// migrations, both ways: on nodes whose type setting is "no replicas",
/// the account keeps `{1, async}` on Rust -> Elixir -> Rust, its replica
/// following it to the node it left. (It used to take the target node's
/// type setting, so the first move dropped its replicas.)
#[tokio::test(flavor = "multi_thread")]
async fn a_process_keeps_its_own_replica_setting_across_migrations() {
    let epmd = Epmd::start().await;
    let cookie = support::unique("rep");
    // No replica setting for the type on either node.
    let e1 = BeamNode::builder().prefix("rse").cookie(&cookie).epmd_port(epmd.port()).erlnode_ex(true).start().await;
    let r = e1.eval("application:load(erlnode_ex), application:set_env(erlnode_ex, rebalance_on_join, false), application:ensure_all_started(erlnode_ex)").await;
    assert_eq!(r.as_tuple().map(|t| t[0].clone()), Some(Term::atom("ok")), "erlnode_ex starts: {r:?}");
    let rust = driver(&cookie, epmd.port()).await;
    rust.connect(e1.name()).await.unwrap();
    let migration = erlnode::migration::Migration::builder(&rust).register::<Account>().rebalance_on_join(false).start().unwrap();
    rust.global().sync(T).await.unwrap();
    let r_atom = format!("'{}'", rust.name());
    wait_until("e1 sees the Rust node host accounts", T, || async {
        e1.eval(&format!("lists:member({r_atom}, 'Elixir.Erlnode.Migration':members(<<\"account\">>))")).await.is_atom("true")
    })
    .await;
    let name = support::unique("own");
    let own = erlnode::migration::ReplicaConfig { replicas: 1, mode: erlnode::migration::ReplicaMode::Async };
    let acc = migration.start_process_with::<Account>(Term::Map(vec![]), &name, Some(own)).await.unwrap();
    let owner_on = |node: String| {
        let (drv, name) = (&rust, name.clone());
        async move { replicas_with_owner(drv, &node).await.into_iter().find(|(n, _)| *n == name).map(|(_, p)| p) }
    };
    // What e1's store holds for it: the owner and its {N, Mode}.
    let entry_expr = format!("case :sys.get_state(:erlnode_replica).entries do %{{:{name} => e}} -> {{e.owner, e.cfg}}; _ -> :none end");
    let e1_entry = || e1.eval_elixir(&entry_expr);
    let cfg_term = Term::tuple([Term::Int(1), Term::atom("async")]);
    wait_until("the Rust owner's replica on e1", T, || async { owner_on(e1.name().to_string()).await.is_some() }).await;
    assert_eq!(e1_entry().await.as_tuple().map(|t| t[1].clone()), Some(cfg_term.clone()));

    // To Elixir: the Elixir process replicates to the Rust node.
    let on_e1 = acc.migrate(e1.name()).await.unwrap();
    wait_until("the Elixir owner's replica on the Rust node", T, || async { owner_on(rust.name().to_string()).await == Some(on_e1.clone()) }).await;
    let on_elixir = e1
        .eval_elixir(&format!(
            "{{:dictionary, d}} = Process.info(:global.whereis_name(:{name}), :dictionary)
             r = d[:\"$erlnode_replica_owner\"]
             r && {{r.n, r.mode}}"
        ))
        .await;
    assert_eq!(on_elixir, cfg_term, "the Elixir process replicates as the Rust one did");
    // Back to Rust, asked from the Elixir side: the setting came back too.
    let moved = e1.eval_elixir(&format!("Erlnode.Migration.migrate(:{name}, :\"{}\")", rust.name())).await;
    let Some([ok, Term::Pid(back)]) = moved.as_tuple() else { panic!("{moved:?}") };
    assert!(ok.is_atom("ok"), "{moved:?}");
    wait_until("the Rust owner's replica on e1 again", T, || async {
        e1_entry().await == Term::tuple([Term::Pid(back.clone()), cfg_term.clone()])
    })
    .await;
    assert_eq!(acc.call::<Account>(&erlnode::examples::account::Msg::Get, CALL).await.map(|a| a.balance).ok(), Some(0));
    rust.shutdown().await;
}

/// Replica upkeep and bad input: when a replica node dies, the owner
/// re-creates its replicas on the remaining node; malformed,
/// unknown-version and misdirected replica messages from a BEAM node are
/// logged and dropped by the Rust store and by a Rust owner, which keep
/// working.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replica_upkeep_after_replica_node_death_and_bad_input_dropped() {
    let epmd = Epmd::start().await;
    let cookie = support::unique("rep");
    let names: Vec<String> = (1..=3).map(|i| format!("{}@127.0.0.1", support::unique(&format!("ru{i}")))).collect();
    let accounts: Vec<String> = (0..12).map(|i| support::unique(&format!("uacc{i}"))).collect();
    let r1 = rust_member(&names[0], &cookie, epmd.port(), None, &accounts).await;
    let mut r2 = rust_member(&names[1], &cookie, epmd.port(), Some(&names[0]), &[]).await;
    let r3 = rust_member(&names[2], &cookie, epmd.port(), Some(&names[0]), &[]).await;
    let drv = driver(&cookie, epmd.port()).await;
    for n in &names {
        drv.connect(n).await.unwrap();
    }
    drv.global().sync(T).await.unwrap();
    let on = |node: &str| {
        let (drv, node) = (drv.clone(), node.to_string());
        async move { replicas_on(&drv, &node).await.into_iter().collect::<HashSet<String>>() }
    };
    wait_until("every account has a replica on r2 or r3", T, || async {
        let held: HashSet<String> = on(&names[1]).await.union(&on(&names[2]).await).cloned().collect();
        accounts.iter().all(|a| held.contains(a))
    })
    .await;
    let on_r2 = on(&names[1]).await.len();
    assert!(on_r2 > 0 && on_r2 < accounts.len(), "the ring splits the replicas between r2 and r3: {on_r2} on r2");

    // Bad input from a BEAM node, to the Rust store and to a Rust owner.
    let beam = BeamNode::builder().prefix("rbad").cookie(&cookie).epmd_port(epmd.port()).start().await;
    let store = format!("{{erlnode_replica, '{}'}}", names[0]);
    let bad = [
        "{'$erlnode_replica', 1, put, <<\"not a name\">>}",
        "{'$erlnode_replica', 99, put, x, <<\"account\">>, [], 1, #{}, self(), {1, sync}, self()}",
        "{'$erlnode_replica', 1, put, x, <<\"account\">>, [], -5, #{}, self(), {1, sync}, self()}",
        "{'$erlnode_replica', 1, go}",
        "{'$erlnode_replica'}",
    ];
    for b in bad {
        let r = beam.eval(&format!("net_kernel:connect_node('{}'), {store} ! {b}, ok", names[0])).await;
        assert!(r.is_atom("ok"), "{r:?}");
    }
    let r = beam.eval(&format!("global:sync(), global:send('{}', {{'$erlnode_replica', 1, ack, nobody, -1}}), ok", accounts[0])).await;
    assert!(r.is_atom("ok"), "{r:?}");
    r1.wait_for_line("malformed or unknown-version replica message dropped", T).await.expect("the store logs the bad input");
    r1.wait_for_line("replica message an owner does not take; dropped", T).await.expect("the owner logs the bad input");
    assert!(replicas_on(&drv, &names[0]).await.is_empty(), "nothing bad was stored on r1 (it owns, holds no replicas)");
    assert!(get_state(&drv, &accounts[0]).await.is_ok(), "the owner still answers");
    assert!(beam.eval("erlang:is_process_alive(whereis(global_name_server))").await.is_atom("true"));

    // A replica node dies: every account gets its replica back, on r3.
    r2.kill().await;
    wait_until("replicas re-created on r3", T, || async {
        let held = on(&names[2]).await;
        accounts.iter().all(|a| held.contains(a))
    })
    .await;
    for a in &accounts {
        let p = drv.global().whereis_name(&Term::atom(a)).expect("still registered");
        assert_eq!(p.node.as_str(), names[0], "{a} never moved");
    }
    drop((r1, r3));
}

/// Replicas follow placement: when a third node joins, each account's
/// replica moves to the node the new ring names (the owner sends it the
/// state and tells the old holder to drop it), and no store keeps one it
/// should not.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replicas_move_to_a_joining_node() {
    use erlnode::migration::ring::{Ring, RingEncoding};
    let epmd = Epmd::start().await;
    let cookie = support::unique("rep");
    let names: Vec<String> = (1..=3).map(|i| format!("{}@127.0.0.1", support::unique(&format!("rj{i}")))).collect();
    let accounts: Vec<String> = (0..16).map(|i| support::unique(&format!("jacc{i}"))).collect();
    let _r1 = rust_member(&names[0], &cookie, epmd.port(), None, &accounts).await;
    let _r2 = rust_member(&names[1], &cookie, epmd.port(), Some(&names[0]), &[]).await;
    let drv = driver(&cookie, epmd.port()).await;
    drv.connect(&names[0]).await.unwrap();
    drv.connect(&names[1]).await.unwrap();
    let held = |n: &str| {
        let (drv, n) = (drv.clone(), n.to_string());
        async move { replicas_on(&drv, &n).await.into_iter().collect::<HashSet<String>>() }
    };
    let all: HashSet<String> = accounts.iter().cloned().collect();
    wait_until("all replicas on r2", T, || async { held(&names[1]).await == all }).await;

    let _r3 = rust_member(&names[2], &cookie, epmd.port(), Some(&names[0]), &[]).await;
    drv.connect(&names[2]).await.unwrap();
    // No Elixir member: the ring hashes as OTP 26 does.
    let ring = Ring::new(names.iter().map(|n| Atom::new(n)), RingEncoding::Otp26);
    let target = |a: &String| ring.owners(&Term::atom(a), 2).into_iter().find(|n| n.as_str() != names[0]).unwrap();
    let want_r3: HashSet<String> = accounts.iter().filter(|a| target(a).as_str() == names[2]).cloned().collect();
    assert!(!want_r3.is_empty() && want_r3.len() < accounts.len(), "the new ring splits the replicas: {} to r3", want_r3.len());
    let want_r2: HashSet<String> = all.difference(&want_r3).cloned().collect();
    wait_until("replicas where the new ring puts them", T, || async { held(&names[2]).await == want_r3 && held(&names[1]).await == want_r2 }).await;
}

/// A killed node of the cluster, Rust or Elixir, to restart later.
enum Member {
    Rust(support::Erlnode),
    Elixir(BeamNode),
}

impl Member {
    async fn kill(&mut self) {
        match self {
            Member::Rust(r) => r.kill().await,
            Member::Elixir(e) => e.kill().await,
        }
    }
}

/// Kill-and-restart rounds under call traffic over Rust and Elixir
/// nodes: each round SIGKILLs a random node that hosts accounts (seed
/// printed), checks every account answers again exactly once with no
/// acknowledged deposit lost (sync; async counts the loss it allows),
/// records each of the victim's accounts' time from the kill to its
/// first answer, restarts the node under its old name and waits until
/// every account has a replica again.
///
/// Defaults keep `make test` short (2 Rust + 2 Elixir nodes, 24
/// accounts, 4 rounds, sync). The acceptance size:
/// `REPLICA_ROUNDS_RUST=3 REPLICA_ROUNDS_ELIXIR=2 REPLICA_ROUNDS_ACCOUNTS=1000
/// REPLICA_ROUNDS=5` (and `REPLICA_ROUNDS_MODE=async`), with
/// `REPLICA_ROUNDS_SEED` to replay a run.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replica_kill_and_restart_rounds_rust_and_elixir() {
    use rand::{Rng, SeedableRng};
    let knob = |k: &str, d: u64| std::env::var(k).ok().and_then(|v| v.parse().ok()).unwrap_or(d);
    let (n_rust, n_ex, n_acc, rounds) =
        (knob("REPLICA_ROUNDS_RUST", 2) as usize, knob("REPLICA_ROUNDS_ELIXIR", 2) as usize, knob("REPLICA_ROUNDS_ACCOUNTS", 24) as usize, knob("REPLICA_ROUNDS", 4));
    let mode = std::env::var("REPLICA_ROUNDS_MODE").unwrap_or_else(|_| "sync".into());
    assert!(mode == "sync" || mode == "async", "REPLICA_ROUNDS_MODE is sync or async, not {mode}");
    assert!(n_rust >= 1 && n_ex >= 1 && n_rust + n_ex >= 3, "at least one node of each kind and three in all");
    let seed = knob("REPLICA_ROUNDS_SEED", rand::random::<u32>() as u64);
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    eprintln!("rounds: {n_rust} Rust + {n_ex} Elixir nodes, {n_acc} accounts, {rounds} rounds, {mode}, seed {seed}");

    let epmd = Epmd::start().await;
    let cookie = support::unique("rep");
    let rust_names: Vec<String> = (1..=n_rust).map(|i| format!("{}@127.0.0.1", support::unique(&format!("rk{i}")))).collect();
    let ex_names: Vec<String> = (1..=n_ex).map(|i| format!("{}@127.0.0.1", support::unique(&format!("ek{i}")))).collect();
    let accounts: Vec<String> = (0..n_acc).map(|i| support::unique(&format!("kacc{i}"))).collect();
    let mut members: Vec<(String, Member)> = vec![];
    for n in &ex_names {
        members.push((n.clone(), Member::Elixir(elixir_named_in(BeamNode::builder().name(n), &cookie, epmd.port(), &mode).await)));
    }
    // The accounts start spread over the Rust nodes; failovers move some to Elixir nodes.
    for (i, n) in rust_names.iter().enumerate() {
        let mine: Vec<String> = accounts.iter().skip(i).step_by(n_rust).cloned().collect();
        members.push((n.clone(), Member::Rust(rust_member_in(n, &cookie, epmd.port(), Some(&ex_names[0]), &mine, &mode).await)));
    }
    let all: Vec<String> = members.iter().map(|(n, _)| n.clone()).collect();
    let drv = driver(&cookie, epmd.port()).await;
    for n in &all {
        drv.connect(n).await.unwrap();
    }
    drv.global().sync(T).await.unwrap();
    let replicated = |live: Vec<String>| {
        let drv = drv.clone();
        let accounts = accounts.clone();
        async move {
            // A current replica: held for the pid that owns the name now
            // (an entry of an earlier owner may linger until the sweep).
            let mut holders: HashMap<String, Vec<erlnode::Pid>> = HashMap::new();
            for n in &live {
                for (a, owner) in replicas_with_owner(&drv, n).await {
                    holders.entry(a).or_default().push(owner);
                }
            }
            accounts.iter().all(|a| {
                let owner = drv.global().whereis_name(&Term::atom(a));
                holders.get(a).is_some_and(|h| owner.as_ref().is_some_and(|o| h.contains(o)))
            })
        }
    };
    wait_until("every account replicated", T, || replicated(all.clone())).await;

    let tally = Arc::new(Tally::default());
    let stop = Arc::new(AtomicBool::new(false));
    let senders = start_senders(&drv, &accounts, 8, tally.clone(), stop.clone());
    let mut recovery: Vec<Duration> = vec![];
    let mut lost_total = 0;
    for round in 0..rounds {
        let mut hosting: Vec<(usize, Vec<String>)> = vec![];
        for (i, (n, _)) in members.iter().enumerate() {
            let h = hosted_on(&drv, n).await;
            if !h.is_empty() {
                hosting.push((i, h));
            }
        }
        let (victim, victim_accounts) = hosting.swap_remove(rng.gen_range(0..hosting.len()));
        let name = members[victim].0.clone();
        let elixir = matches!(members[victim].1, Member::Elixir(_));
        let acks = tally.acks.load(Ordering::Relaxed);
        wait_until("traffic", T, || async { tally.acks.load(Ordering::Relaxed) >= acks + 100 }).await;
        let killed_at = tokio::time::Instant::now();
        members[victim].1.kill().await;
        // Each of the victim's accounts: time from the kill to its first answer.
        let probes: Vec<_> = victim_accounts
            .iter()
            .map(|a| {
                let (drv, a) = (drv.clone(), a.clone());
                tokio::spawn(async move {
                    while get_state(&drv, &a).await.is_err() {
                        assert!(killed_at.elapsed() < T, "{a} did not answer again within {T:?}");
                        tokio::time::sleep(Duration::from_millis(5)).await; // bounded poll
                    }
                    killed_at.elapsed()
                })
            })
            .collect();
        for p in probes {
            recovery.push(p.await.unwrap());
        }
        let live: Vec<String> = all.iter().filter(|n| **n != name).cloned().collect();
        let lost = verify_counting(&drv, &live, &accounts, &tally).await;
        if mode == "sync" && !lost.is_empty() {
            // What a diagnosis needs: the victim, and for each account with
            // a loss, whether it was the victim's and where it runs now.
            let mut hit: Vec<String> = lost.iter().filter_map(|l| l.split(':').next().map(str::to_string)).collect();
            hit.dedup();
            let places: Vec<String> = hit
                .iter()
                .map(|a| {
                    let owner = drv.global().whereis_name(&Term::atom(a)).map(|p| p.node.to_string());
                    format!("{a}: on the victim {}, now on {owner:?}", victim_accounts.contains(a))
                })
                .collect();
            panic!(
                "round {round} (killed {} {name}, seed {seed}): {} acknowledged deposits lost; accounts: {places:?}; first: {:?}",
                if elixir { "Elixir" } else { "Rust" },
                lost.len(),
                &lost[..lost.len().min(10)]
            );
        }
        lost_total = lost.len();
        eprintln!(
            "round {round}: killed {} {name} ({} accounts); all answer once; {} acknowledged deposits missing so far",
            if elixir { "Elixir" } else { "Rust" },
            victim_accounts.len(),
            lost.len()
        );
        // Restart under the same name once the cluster has forgotten it.
        wait_until("the name left epmd", T, || async { !drv.ping(&name).await }).await;
        members[victim].1 = if elixir {
            Member::Elixir(elixir_named_in(BeamNode::builder().name(&name), &cookie, epmd.port(), &mode).await)
        } else {
            let other = live.iter().find(|n| ex_names.contains(n)).unwrap();
            Member::Rust(rust_member_in(&name, &cookie, epmd.port(), Some(other), &[], &mode).await)
        };
        drv.connect(&name).await.unwrap();
        wait_until("every account replicated again", T, || replicated(all.clone())).await;
    }
    stop.store(true, Ordering::Relaxed);
    for s in senders {
        s.await.unwrap();
    }
    let lost = verify_counting(&drv, &all, &accounts, &tally).await;
    if mode == "sync" {
        assert!(lost.is_empty(), "{} acknowledged deposits lost, first: {:?}", lost.len(), &lost[..lost.len().min(10)]);
    }
    lost_total = lost_total.max(lost.len());
    recovery.sort();
    let pct = |p: f64| recovery.get(((recovery.len() as f64 - 1.0) * p).round() as usize).copied().unwrap_or_default();
    eprintln!(
        "{rounds} kill/restart rounds ({mode}, seed {seed}): {} deposits acknowledged, {} calls failed, {lost_total} acknowledged lost; \
         recovery of {} accounts from the kill to their first answer: p50 {:?}, p99 {:?}, max {:?}",
        tally.acks.load(Ordering::Relaxed),
        tally.failed.load(Ordering::Relaxed),
        recovery.len(),
        pct(0.5),
        pct(0.99),
        recovery.last().copied().unwrap_or_default()
    );
}

/// docs/replicas.md, "Processes Horde or ProcessHub places": both stores keep an entry
/// of a process Horde places (`erlnode_horde:...`) when its owner's node
/// dies and never fail it over themselves (Horde restarts the process;
/// an ordinary entry of the same dead owner is failed over, which is the
/// event the test waits for), answer `fetch` with it until the restarted
/// process drops the dead owner's entry, and forget such an entry when
/// its owner exits on a live node. Both languages build the same names.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn stores_keep_horde_placed_entries_for_fetch_and_never_fail_them_over() {
    use erlnode::migration::replica::placed::{self, horde_name, processhub_name};
    let epmd = Epmd::start().await;
    let cookie = support::unique("rep");
    let e1 = elixir_node("rpe", &cookie, epmd.port()).await;
    let r1_name = format!("{}@127.0.0.1", support::unique("rpr"));
    let _r1 = rust_member(&r1_name, &cookie, epmd.port(), Some(e1.name()), &[]).await;
    let drv = driver(&cookie, epmd.port()).await;
    let stores = [r1_name.as_str(), e1.name()];
    for store in stores {
        connect_to_store(&drv, store).await;
    }
    // The same name from the same key, in both languages.
    let sup = Atom::new("Elixir.MyApp.Sup");
    for (key, elixir) in [
        (Term::binary(b"a1".to_vec()), "\"a1\""),
        (Term::atom("k"), ":k"),
        (Term::Int(-5), "-5"),
        (Term::tuple([Term::Int(1)]), "{1}"),
        (Term::binary(vec![0xff]), "<<255>>"),
    ] {
        let ex = e1
            .eval_elixir(&format!(
                "Erlnode.Replica.Placed.horde_name(MyApp.Sup, {elixir})"
            ))
            .await;
        let rs = horde_name(&sup, &key)
            .map(Term::Atom)
            .unwrap_or(Term::atom("nil"));
        assert_eq!(ex, rs, "key {elixir}");
        let ex = e1
            .eval_elixir(&format!("Erlnode.Replica.Placed.processhub_name(:my_hub, {elixir})"))
            .await;
        let rs = processhub_name(&Atom::new("my_hub"), &key).map(Term::Atom).unwrap_or(Term::atom("nil"));
        assert_eq!(ex, rs, "ProcessHub child id {elixir}");
    }
    let account = |balance: i64| account_state(balance, 1);
    let put = |name: &Atom, owner: &erlnode::Pid, seq: u64, balance: i64| {
        Msg::Put {
            name: name.clone(),
            type_name: "account".into(),
            args: Term::nil(),
            seq,
            state: account(balance),
            owner: owner.clone(),
            cfg: erlnode::migration::replica::ReplicaConfig::sync(1),
            ack_to: Some(owner.clone()),
        }
        .to_term()
    };
    let fetch = |store: &str, name: &Atom| {
        let (drv, store, name) = (drv.clone(), store.to_string(), name.clone());
        async move {
            let mut mb = drv.spawn_mailbox();
            mb.call(
                (STORE_NAME, store.as_str()),
                Msg::Fetch { name }.to_term(),
                CALL,
            )
            .await
            .unwrap()
        }
    };

    // An owner on a node that will die, holding a placed and a plain entry in both stores.
    let doomed = driver(&cookie, epmd.port()).await;
    let mut owner = doomed.spawn_mailbox();
    let dead_owner = owner.pid().clone();
    let placed_name = horde_name(&sup, &Term::binary(support::unique("pk").into_bytes())).unwrap();
    let plain_name = Atom::new(&support::unique("pacc"));
    // A ProcessHub child's, kept the same way.
    let ph_name = processhub_name(&Atom::new("my_hub"), &Term::binary(support::unique("ph").into_bytes())).unwrap();
    // A third entry whose name another (live) process holds in `global`:
    // a store's sweep drops it once it is stale, which is the event that
    // shows a sweep has judged the placed entry too.
    let shadow_name = Atom::new(&support::unique("pshadow"));
    let shadow_holder = drv.spawn_mailbox();
    assert!(drv
        .global()
        .register_name(Term::Atom(shadow_name.clone()), shadow_holder.pid())
        .await
        .unwrap());
    for store in stores {
        doomed.connect(store).await.unwrap();
        for (name, balance) in [(&placed_name, 7), (&plain_name, 9), (&shadow_name, 5), (&ph_name, 8)] {
            owner.send_to(
                &Dest::local(STORE_NAME, store),
                put(name, &dead_owner, 3, balance),
            );
            let ack = Msg::parse(&owner.recv_timeout(CALL).await.unwrap()).and_then(|r| r.ok());
            assert_eq!(
                ack,
                Some(Msg::Ack {
                    node: Atom::new(store),
                    seq: 3
                }),
                "{store}"
            );
        }
    }
    // An owner on a live node: its placed entry goes when it exits.
    let live_name = horde_name(&sup, &Term::Int(42)).unwrap();
    let mut live = drv.spawn_mailbox();
    let live_pid = live.pid().clone();
    for store in stores {
        live.send_to(
            &Dest::local(STORE_NAME, store),
            put(&live_name, &live_pid, 1, 1),
        );
        assert!(
            matches!(
                Msg::parse(&live.recv_timeout(CALL).await.unwrap()),
                Some(Ok(Msg::Ack { .. }))
            ),
            "{store}"
        );
    }
    drop(live);
    for store in stores {
        await_entry_gone(&drv, store, &live_name, "an owner that exited").await;
    }

    // While the owner's node is up, a ProcessHub child starting elsewhere
    // (a move) does not take its replica: only a dead owner's counts.
    let ask: Vec<Atom> = stores.iter().map(|s| Atom::new(s)).collect();
    drv.connect(doomed.name().as_str()).await.unwrap();
    assert_eq!(placed::fetch(&drv, &ask, &ph_name).await.map(|f| f.seq), Some(3));
    assert_eq!(placed::fetch_of_dead_owner(&drv, &ask, &ph_name).await, None, "an entry of a live owner's node counted");

    // The owner's node dies: the plain name is failed over (restored and
    // registered by one store), the placed ones are kept for the library's
    // restart.
    doomed.shutdown().await;
    wait_until("the plain entry failed over", T, || async {
        drv.global()
            .whereis_name(&Term::Atom(plain_name.clone()))
            .is_some()
    })
    .await;
    assert_eq!(
        drv.global().whereis_name(&Term::Atom(placed_name.clone())),
        None,
        "a placed name is never registered by a failover"
    );
    for store in stores {
        let got = fetch(store, &placed_name).await;
        let (seq, by, state) =
            placed::parse_fetched(&got).unwrap_or_else(|| panic!("{store}: {got:?}"));
        assert_eq!((seq, &by), (3, &dead_owner), "{store}");
        let (got, want): (Account, Account) =
            (from_term(state).unwrap(), from_term(account(7)).unwrap());
        assert_eq!(got, want, "{store}: the state the dead owner sent");
        assert_eq!(
            fetch(store, &Atom::new("erlnode_horde:Elixir.MyApp.Sup:bnothing")).await,
            Term::atom("none"),
            "{store}"
        );
    }
    assert_eq!(drv.global().whereis_name(&Term::Atom(ph_name.clone())), None, "a ProcessHub name is never registered by a failover");
    // The dead owner's entry counts now, from both stores.
    wait_until("the owner's node seen down", T, || async { !drv.connected_nodes().contains(&dead_owner.node) }).await;
    let f = placed::fetch_of_dead_owner(&drv, &ask, &ph_name).await.expect("the dead owner's ProcessHub entry");
    assert_eq!((f.seq, &f.owner, f.holders.len()), (3, &dead_owner, 2));
    // Still there after a sweep has judged the stale entries.
    for store in stores {
        await_entry_gone(&drv, store, &shadow_name, "the stale shadow, in a sweep").await;
    }
    for store in stores {
        let got = fetch(store, &ph_name).await;
        assert!(placed::parse_fetched(&got).is_some(), "{store}: the ProcessHub entry after a sweep: {got:?}");
    }
    for store in stores {
        let got = fetch(store, &placed_name).await;
        assert!(placed::parse_fetched(&got).is_some(), "{store}: {got:?}");
    }
    // The restarted process drops the dead owner's entries.
    let f = placed::Fetched {
        seq: 3,
        owner: dead_owner.clone(),
        state: account(7),
        holders: stores
            .iter()
            .map(|s| (Atom::new(s), dead_owner.clone()))
            .collect(),
    };
    placed::drop_dead_owner(&drv.spawn_mailbox(), &placed_name, &f);
    for store in stores {
        wait_until(
            &format!("{store} drops the dead owner's entry"),
            T,
            || async { fetch(store, &placed_name).await == Term::atom("none") },
        )
        .await;
    }
}

/// Waits until `store` holds no entry for `name` (`why` names the rule).
async fn await_entry_gone(drv: &Node, store: &str, name: &Atom, why: &str) {
    wait_until(&format!("{store} forgets the entry of {why}"), T, || async { !replicas_on(drv, store).await.contains(&name.to_string()) }).await;
}

/// docs/replicas.md, "ProcessHub (0.4.1) children", on the Rust hub
/// member alone (no ProcessHub needed, so it runs in `make test`): two
/// `erlnode run --processhub H --replicas 1` members and this test's node,
/// a third member with replicas. Accounts started on the first member
/// replicate to the others; after its SIGKILL, the members the ring gives
/// its children to start each from its latest replica (every
/// acknowledged deposit in it), and drop the dead owner's copies.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn processhub_members_restart_a_killed_members_children_from_their_replicas() {
    use erlnode::migration::{Migration, ReplicaConfig};
    use erlnode::processhub::{ChildStart, Dialect, HubMessage, Keyword};
    const HUB: &str = "phrep";
    const N: usize = 24;
    let epmd = Epmd::start().await;
    let cookie = support::unique("phrep");
    let drv = driver(&cookie, epmd.port()).await;
    let port = epmd.port();
    let member = |name: String, also: Option<String>| {
        let (cookie, drv_name) = (cookie.clone(), drv.name().to_string());
        async move {
            let mut args = vec![
                "--no-embedded-epmd", "--no-rebalance-on-join", "--replicas", "1", "--replica-mode", "sync",
                "--processhub", HUB, "--processhub-child", "Erlnode.Examples.Account=account", "--connect", drv_name.as_str(),
            ];
            if let Some(other) = &also {
                args.extend(["--connect", other.as_str()]);
            }
            let node = support::Erlnode::run(&name, &cookie, port, &args).await;
            node.wait_for_line("joined the ProcessHub hub", T).await.expect("the member joins");
            node
        }
    };
    let (n1, n2) = (format!("{}@127.0.0.1", support::unique("phr1")), format!("{}@127.0.0.1", support::unique("phr2")));
    let mut r1 = member(n1.clone(), None).await;
    let mut r2 = member(n2.clone(), Some(n1.clone())).await;
    // Each counts the other (the third member, this node, is checked below).
    r1.wait_for_line(&format!("hub={HUB} node={n2}"), T).await.expect("r1 counts r2");
    r2.wait_for_line(&format!("hub={HUB} node={n1}"), T).await.expect("r2 counts r1");
    let m = Migration::builder(&drv).rebalance_on_join(false).register::<Account>().start().unwrap();
    m.set_replicas("account", ReplicaConfig::sync(1));
    let hub = drv.processhub(HUB).child::<Account>("Erlnode.Examples.Account").replicas(&m).join().await.unwrap();
    let mut all = vec![Atom::new(&n1), Atom::new(&n2), drv.name().clone()];
    all.sort();
    wait_until("three hub members and three account hosts", T, || {
        let (hub, m, all) = (hub.clone(), m.clone(), all.clone());
        async move {
            let mut hosts = m.members("account");
            hosts.sort();
            hub.nodes() == all && hosts == all
        }
    })
    .await;

    // N accounts on the first member (a start request names the node).
    let cids: Vec<Term> = (1..=N).map(|i| Term::from(format!("a{i}").as_str())).collect();
    let children = cids
        .iter()
        .enumerate()
        .map(|(i, cid)| ChildStart {
            child_id: cid.clone(),
            child_spec: Term::Map(vec![
                (Term::atom("id"), cid.clone()),
                (
                    Term::atom("start"),
                    Term::tuple([
                        Term::atom("Elixir.Erlnode.Examples.Account"),
                        Term::atom("start_link"),
                        Term::list([Term::Map(vec![(Term::atom("balance"), Term::Int(i as i64 + 1))])]),
                    ]),
                ),
            ]),
            hub_id: Atom::new(HUB),
            metadata: Term::Map(vec![]),
            nodes: vec![Atom::new(&n1)],
            migration_add: None,
            reply_to: None,
            extra: vec![],
        })
        .collect();
    let mut probe = drv.spawn_mailbox();
    let mut opts = Keyword::new();
    opts.push("reply_to", Term::list([Term::Pid(probe.pid().clone())]));
    let start = Dialect::V0_4_1.build(&HubMessage::StartChildren { children, opts }).unwrap();
    probe.send_to(&Dest::local(HUB, &n1), start);
    let answer = probe
        .recv_match(T, |m| match Dialect::V0_4_1.parse(m) {
            Ok(HubMessage::CollectStartResults { results, .. }) => Some(results),
            _ => None,
        })
        .await
        .expect("start results");
    assert_eq!(answer.len(), N, "{answer:?}");
    wait_until("every account registered on the first member", T, || {
        let (hub, cids, n1) = (hub.clone(), cids.clone(), n1.clone());
        async move { cids.iter().all(|c| hub.get_pid(c).is_some_and(|p| p.node.as_str() == n1)) }
    })
    .await;

    // Acknowledged deposits (sync: in a replica before the reply).
    let mut acked = vec![0i64; N];
    for round in 1..=5 {
        for (i, cid) in cids.iter().enumerate() {
            let pid = hub.get_pid(cid).unwrap();
            let msg = Term::tuple([Term::atom("deposit"), Term::from("s"), Term::Int(round), Term::Int(10)]);
            let r = probe.call(&pid, msg, CALL).await.unwrap();
            assert_eq!(r.as_tuple().map(|t| t[0].is_atom("ok")), Some(true), "{r:?}");
            acked[i] += 10;
        }
    }
    let held = |on: String| {
        let drv = drv.clone();
        async move { replicas_on(&drv, &on).await.into_iter().filter(|n| n.starts_with("erlnode_processhub:phrep:")).count() }
    };
    assert_eq!(held(n2.clone()).await + held(drv.name().to_string()).await, N, "one replica per account, on the other members");

    r1.kill().await;
    if std::env::var_os("PHREP_DEBUG").is_some() {
        tokio::time::sleep(Duration::from_secs(8)).await;
        for c in &cids {
            eprintln!("{c:?}: {:?}", hub.child(c));
        }
        for l in r2.output() {
            eprintln!("r2: {l}");
        }
    }
    wait_until("every account restarted on a live member", T, || {
        let (hub, cids, n1) = (hub.clone(), cids.clone(), n1.clone());
        async move { cids.iter().all(|c| hub.get_pid(c).is_some_and(|p| p.node.as_str() != n1)) }
    })
    .await;
    for (i, cid) in cids.iter().enumerate() {
        let pid = hub.get_pid(cid).unwrap();
        let st: Account = from_term(probe.call(&pid, Term::atom("get"), CALL).await.unwrap()).unwrap();
        assert_eq!(st.balance, i as i64 + 1 + acked[i], "{cid:?} on {}: every acknowledged deposit", pid.node);
    }
    let here = hub.local_children().len();
    let restored_r2 = r2.output().iter().filter(|l| l.contains("started from its replica")).count();
    println!("{n1} killed: {N} accounts restarted from their replicas, {here} here and {restored_r2} on {n2}, every acknowledged deposit in each");
    assert!(here > 0 && restored_r2 > 0, "restarted on both members: {here} here, {restored_r2} on {n2}");
    assert_eq!(here + restored_r2, N, "each restarted once, from its replica");
    // The dead owner's copies are gone: one replica per account again.
    wait_until("one replica per account", T, || {
        let held = held.clone();
        let (n2, me) = (n2.clone(), drv.name().to_string());
        async move { held(n2).await + held(me).await == N }
    })
    .await;
    r2.kill().await;
    drv.shutdown().await;
}

/// docs/replicas.md, "Failover": two stores hold a replica of the same
/// process from the same owner, one older than the other (the owner
/// moved its replica and died before the old holder dropped its entry).
/// Whichever store ranks first for a name, the process restarts from the
/// newer state. Eight names, the older entry on the Rust store for half
/// and on the Elixir store for the other half, so that for some names the
/// older holder ranks first (all ranking the other way: 1 in 256).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_failover_restores_the_newest_replica_whichever_holder_ranks_first() {
    let epmd = Epmd::start().await;
    let cookie = support::unique("rnew");
    let e1 = elixir_node("rne", &cookie, epmd.port()).await;
    let r1_name = format!("{}@127.0.0.1", support::unique("rnr"));
    let _r1 = rust_member(&r1_name, &cookie, epmd.port(), Some(e1.name()), &[]).await;
    let drv = driver(&cookie, epmd.port()).await;
    let stores = [r1_name.as_str(), e1.name()];
    for store in stores {
        connect_to_store(&drv, store).await;
    }
    let doomed = driver(&cookie, epmd.port()).await;
    let mut owner = doomed.spawn_mailbox();
    let dead_owner = owner.pid().clone();
    let names: Vec<Atom> = (0..8).map(|_| Atom::new(&support::unique("pnew"))).collect();
    for store in stores {
        doomed.connect(store).await.unwrap();
    }
    for (i, name) in names.iter().enumerate() {
        // (store, seq, balance): the older entry, then the newer one.
        let (old, new) = if i % 2 == 0 { (stores[0], stores[1]) } else { (stores[1], stores[0]) };
        for (store, seq, balance) in [(old, 3u64, 300i64), (new, 7, 700)] {
            let put = Msg::Put {
                name: name.clone(),
                type_name: "account".into(),
                args: Term::nil(),
                seq,
                state: account_state(balance, seq as i64),
                owner: dead_owner.clone(),
                cfg: erlnode::migration::replica::ReplicaConfig::sync(1),
                ack_to: Some(dead_owner.clone()),
            };
            owner.send_to(&Dest::local(STORE_NAME, store), put.to_term());
            let ack = Msg::parse(&owner.recv_timeout(CALL).await.unwrap()).and_then(|r| r.ok());
            assert_eq!(ack, Some(Msg::Ack { node: Atom::new(store), seq }), "{store}");
        }
    }
    doomed.shutdown().await;
    for name in &names {
        wait_until(&format!("{name} restored"), T, || async { drv.global().whereis_name(&Term::Atom(name.clone())).is_some() }).await;
        let st = get_state(&drv, name.as_str()).await.unwrap();
        assert_eq!(st.balance, 700, "{name}: restored from the newer replica (seq 7), not the older (seq 3)");
    }
    drv.shutdown().await;
}
