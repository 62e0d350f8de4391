//! Issue "Migrate": an account moves among 2 Rust and 2 Elixir nodes, in
//! all four directions, under continuous traffic, and its state, name and
//! queued messages move with it.

use crate::support::{self, BeamNode, Epmd};
use erlnode::examples::account::{Account, AnomalyKind};
use erlnode::migration::{HandoffConfig, Migration, Mode};
use erlnode::process::Dest;
use erlnode::term::serde::from_term;
use erlnode::{Node, Pid, Term};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

const T: Duration = Duration::from_secs(60);

async fn rust_node(prefix: &str, cookie: &str, epmd: u16) -> (Node, Migration) {
    let node = Node::builder(format!("{}@127.0.0.1", support::unique(prefix)))
        .cookie(cookie)
        .epmd_port(epmd)
        .embedded_epmd(false)
        .start()
        .await
        .expect("rust node starts");
    let cfg = HandoffConfig { rebalance_on_join: false, ..Default::default() };
    let m = Migration::start(&node, Arc::new(node.global()), cfg).unwrap();
    m.register_type::<Account>();
    (node, m)
}

async fn elixir_node(prefix: &str, cookie: &str, epmd: u16) -> BeamNode {
    let b = BeamNode::builder().prefix(prefix).cookie(cookie).epmd_port(epmd).erlnode_ex(true).start().await;
    let r = b.eval("application:ensure_all_started(erlnode_ex)").await;
    assert_eq!(r.as_tuple().map(|t| t[0].clone()), Some(Term::atom("ok")), "erlnode_ex starts: {r:?}");
    b
}

fn pid_literal(p: &Pid) -> String {
    format!(
        ":erlang.binary_to_term(<<{}>>)",
        erlnode::term::encode(&Term::Pid(p.clone())).iter().map(|b| b.to_string()).collect::<Vec<_>>().join(",")
    )
}

/// An Elixir sender: deposits numbered 1, 2, ... until told to stop,
/// alternating cast / call / plain send; `by_name` decides between
/// `{:global, name}` and a cached pid (refreshed after a call through the
/// old one, so nothing is sent to a pid whose retention ended).
fn elixir_sender_code(id: &str, name: &str, by_name: bool, collector: &Pid) -> String {
    format!(
        r#"
        collector = {collector}
        spawn(fn ->
          name = :{name}
          loop = fn loop, seq, pid ->
            receive do
              :stop -> send(collector, {{:sender_done, "{id}", seq - 1, 0}})
            after 0 ->
              msg = {{:deposit, "{id}", seq, 1}}
              target = if {by_name}, do: {{:global, name}}, else: pid
              case rem(seq, 3) do
                0 -> {{:ok, _}} = GenServer.call(target, msg, 30_000)
                1 -> GenServer.cast(target, msg)
                2 -> if {by_name}, do: :global.send(name, msg), else: send(pid, msg)
              end
              pid = if rem(seq, 50) == 0 and not {by_name} do
                _ = GenServer.call(pid, :get, 30_000)
                :global.whereis_name(name)
              else
                pid
              end
              loop.(loop, seq + 1, pid)
            end
          end
          Process.register(self(), :"sender_{id}")
          loop.(loop, 1, :global.whereis_name(name))
        end)
        :ok
        "#,
        collector = pid_literal(collector),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn two_hundred_hops_in_all_four_directions_under_traffic() {
    support::require_erlang();
    let epmd = Epmd::start().await;
    let cookie = support::unique("mig");
    let (r1, m1) = rust_node("r1", &cookie, epmd.port()).await;
    let (r2, _m2) = rust_node("r2", &cookie, epmd.port()).await;
    let e1 = elixir_node("e1", &cookie, epmd.port()).await;
    let e2 = elixir_node("e2", &cookie, epmd.port()).await;
    for n in [e1.name(), e2.name()] {
        assert!(r1.ping(n).await && r2.ping(n).await);
    }
    assert!(r1.ping(r2.name().as_str()).await);
    assert_eq!(e1.eval(&format!("net_adm:ping('{}')", e2.name())).await, Term::atom("pong"));
    for e in [&e1, &e2] {
        assert_eq!(e.try_eval_timeout("global:sync()", T).await, Ok(Term::atom("ok")));
    }
    r1.global().sync(T).await.unwrap();

    let name = "acct_hops";
    m1.start_process::<Account>(Term::nil(), name).await.unwrap();
    // Every node must see the name before traffic starts.
    for e in [&e1, &e2] {
        let seen = e.eval(&format!("is_pid(global:whereis_name('{name}'))")).await;
        assert_eq!(seen, Term::atom("true"));
    }

    // Senders: 4 in Rust (2 by name, 2 by pid), 4 in Elixir (2 by name, 2 by pid).
    let mut collector = r1.spawn_mailbox();
    r1.register("collector", collector.pid()).unwrap();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut rust_senders = vec![];
    for (i, (node, by_name)) in [(&r1, true), (&r2, true), (&r1, false), (&r2, false)].into_iter().enumerate() {
        let node = node.clone();
        let stop = stop.clone();
        let id = format!("rust{i}");
        rust_senders.push(tokio::spawn(async move {
            let mut mb = node.spawn_mailbox();
            let global = node.global();
            let gname = Term::atom(name);
            let mut pid = global.whereis_name(&gname).unwrap();
            let mut seq = 0i64;
            loop {
                if stop.load(std::sync::atomic::Ordering::Relaxed) {
                    break;
                }
                seq += 1;
                let msg = Term::tuple([Term::atom("deposit"), Term::from(id.as_str()), Term::Int(seq), Term::Int(1)]);
                // By name: resolved and sent in one step (Dest::Global).
                let to = if by_name { Dest::Global(gname.clone()) } else { Dest::Pid(pid.clone()) };
                match seq % 3 {
                    0 => {
                        let r = mb.call(to, msg, T).await;
                        assert!(r.is_ok(), "{id} call {seq}: {r:?}");
                    }
                    1 => mb.send_to(&to, Term::tuple([Term::atom("$gen_cast"), msg])),
                    _ => mb.send_to(&to, msg),
                }
                if !by_name && seq % 50 == 0 {
                    let _ = mb.call(&pid, Term::atom("get"), T).await;
                    pid = global.whereis_name(&gname).unwrap();
                }
                if seq % 20 == 0 {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            }
            (id, seq, by_name)
        }));
    }
    let elixir_senders = [("ex0", &e1, true), ("ex1", &e2, true), ("ex2", &e1, false), ("ex3", &e2, false)];
    for (id, node, by_name) in &elixir_senders {
        node.eval_elixir(&elixir_sender_code(id, name, *by_name, collector.pid())).await;
    }

    // 200 hops: R1 -> R2 -> E1 -> E2 -> R1 -> ... covers R->R, R->E, E->E, E->R.
    let order = [r2.name().to_string(), e1.name().to_string(), e2.name().to_string(), r1.name().to_string()];
    let mut directions: HashMap<(bool, bool), usize> = HashMap::new();
    let mut from_rust = true;
    for hop in 0..200 {
        let to = &order[hop % 4];
        let to_rust = to.starts_with("r1_") || to.starts_with("r2_");
        let mode = if hop % 2 == 0 { Mode::Hot } else { Mode::Cold };
        let pid = m1.migrate(name, to, mode, T).await.unwrap_or_else(|e| panic!("hop {hop} to {to}: {e}"));
        assert_eq!(pid.node.as_str(), to.as_str());
        *directions.entry((from_rust, to_rust)).or_default() += 1;
        from_rust = to_rust;
    }
    assert_eq!(directions.len(), 4, "all four directions: {directions:?}");

    // Stop the traffic and collect what each sender sent.
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut sent: HashMap<String, (i64, bool)> = HashMap::new();
    for t in rust_senders {
        let (id, seq, by_name) = t.await.unwrap();
        sent.insert(id, (seq, by_name));
    }
    for (id, node, by_name) in &elixir_senders {
        node.eval_elixir(&format!("send(:sender_{id}, :stop)")).await;
        let done = collector.recv_timeout(T).await.expect("elixir sender reports");
        let t = done.as_tuple().unwrap().to_vec();
        let Term::Binary(got_id) = &t[1] else { panic!("{done:?}") };
        let _ = id;
        sent.insert(String::from_utf8(got_id.to_vec()).unwrap(), (t[2].as_int().unwrap(), *by_name));
    }
    assert_eq!(sent.len(), 8);

    // Final state against the sequential oracle.
    let mut probe = r1.spawn_mailbox();
    let total: i64 = sent.values().map(|(n, _)| n).sum();
    let state: Account = {
        let mut st = None;
        // The last casts may still be in flight: poll until all are applied.
        for _ in 0..600 {
            let pid = r1.global().whereis_name(&Term::atom(name)).unwrap();
            let s: Account = from_term(probe.call(&pid, Term::atom("get"), T).await.unwrap()).unwrap();
            if s.applied >= total {
                st = Some(s);
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        st.expect("every deposit applied")
    };
    assert_eq!(state.applied, total, "nothing lost, nothing duplicated");
    assert_eq!(state.balance, total);
    for (id, (n, _)) in &sent {
        assert_eq!(state.last_seq.get(id), Some(n), "sender {id}");
    }
    assert!(!state.anomalies.iter().any(|a| a.kind == AnomalyKind::Duplicate), "{:?}", state.anomalies);
    // Per docs/handoff.md: strict order for pid senders and for erlnode
    // senders by name; BEAM senders by name may (rarely) see a message
    // overtaken, never lost or duplicated.
    for a in &state.anomalies {
        let (_, by_name) = sent[&a.sender];
        assert!(by_name && a.sender.starts_with("ex"), "order broken for {}: {a:?}", a.sender);
    }
    eprintln!("200 hops, {total} deposits from 8 senders, anomalies (allowed kind only): {}", state.anomalies.len());
}

/// 10,000 accounts on a Rust node, an Elixir node beside it; a third node
/// (the `erlnode run` binary) joins and takes its share, then leaves by
/// SIGTERM and drains everything to the remaining owners, Rust and
/// Elixir.
#[tokio::test(flavor = "multi_thread")]
async fn ten_thousand_rebalance_on_join_and_drain_on_sigterm() {
    support::require_erlang();
    const N: usize = 10_000;
    let epmd = Epmd::start().await;
    let cookie = support::unique("mig10k");
    let node = support::rust_node_builder("r1", &cookie, epmd.port())
        .start()
        .await
        .unwrap();
    let m1 = Migration::start(&node, Arc::new(node.global()), HandoffConfig::default()).unwrap();
    m1.register_type::<Account>();
    // Two nodes host the type; the accounts are started on the Rust one.
    let e1 = elixir_node("e1", &cookie, epmd.port()).await;
    assert!(node.ping(e1.name()).await);
    node.global().sync(T).await.unwrap();
    let started = std::time::Instant::now();
    for i in 0..N {
        let args = Term::Map(vec![(Term::atom("balance"), Term::Int(i as i64))]);
        m1.start_process::<Account>(args, &format!("acct10k_{i}")).await.unwrap();
    }
    eprintln!("10k accounts registered in global in {:?}", started.elapsed());
    assert_eq!(e1.try_eval_timeout("global:sync(), length(global:registered_names())", T).await, Ok(Term::Int(N as i64)));

    // The third node joins and takes its share of the ring.
    let r3_name = format!("{}@127.0.0.1", support::unique("r3"));
    let mut r3 = support::Erlnode::run(&r3_name, &cookie, epmd.port(), &["--no-embedded-epmd", "--connect", node.name().as_str()]).await;
    let joined = std::time::Instant::now();
    let members = [node.name().clone(), e1.name().into(), erlnode::Atom::new(&r3_name)];
    // The Elixir member announced its release's encoding; r1 follows it.
    let enc = erlnode::migration::RingEncoding::of_release(support::otp::release());
    let deadline = tokio::time::Instant::now() + T;
    while m1.ring_encoding() != enc {
        assert!(tokio::time::Instant::now() < deadline, "the Rust node never followed the Elixir member's {enc}");
        tokio::time::sleep(Duration::from_millis(20)).await; // bounded poll: the announcement has no event of its own
    }
    let ring = erlnode::migration::ring::Ring::new(members.iter().cloned(), enc);
    let expect_r3 = (0..N).filter(|i| ring.owner(&Term::atom(&format!("acct10k_{i}"))).map(|o| o.as_str() == r3_name).unwrap_or(false)).count();
    assert!(expect_r3 > N / 5, "ring share {expect_r3}");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(240);
    loop {
        let on_r1 = m1.hosted().len();
        if on_r1 == N - expect_r3 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "rebalance stuck: {on_r1} still on r1, expected {}", N - expect_r3);
        tokio::time::sleep(Duration::from_millis(100)).await; // bounded poll
    }
    eprintln!("join: {expect_r3} of 10k moved to the new node in {:?}", joined.elapsed());
    let on_r3 = (0..N)
        .filter(|i| node.global().whereis_name(&Term::atom(&format!("acct10k_{i}"))).map(|p| p.node.as_str() == r3_name).unwrap_or(false))
        .count();
    assert_eq!(on_r3, expect_r3, "global agrees with the ring");

    // SIGTERM: the node drains to the remaining owners, then exits.
    let left = std::time::Instant::now();
    assert!(r3.signal(support::SIGTERM));
    let status = r3.wait_exit(Duration::from_secs(300)).await.expect("erlnode exits after draining");
    assert!(status.success(), "{:?}", r3.output().iter().rev().take(20).collect::<Vec<_>>());
    assert!(r3.output().iter().any(|l| l.contains("drain complete")), "drain progress logged");
    eprintln!("drain on SIGTERM took {:?}", left.elapsed());
    let mut probe = node.spawn_mailbox();
    let mut on_r1 = 0;
    let mut on_e1 = 0;
    for i in 0..N {
        let name = format!("acct10k_{i}");
        let pid = node.global().whereis_name(&Term::atom(&name)).unwrap_or_else(|| panic!("{name} lost"));
        if pid.node == *node.name() {
            on_r1 += 1;
        } else {
            assert_eq!(pid.node.as_str(), e1.name(), "{name} on a live node");
            on_e1 += 1;
        }
        if i % 50 == 0 {
            let st: Account = from_term(probe.call(&pid, Term::atom("get"), T).await.unwrap()).unwrap();
            assert_eq!(st.balance, i as i64, "state of {name} intact");
        }
    }
    assert_eq!(on_r1 + on_e1, N);
    assert!(on_e1 > 0, "some went to the Elixir node");
    eprintln!("after drain: {on_r1} on the Rust node, {on_e1} on the Elixir node");
}

type PhaseTx = tokio::sync::mpsc::UnboundedSender<(erlnode::migration::Phase, tokio::sync::oneshot::Sender<()>)>;

/// A hook that reports every phase to the test and waits for its go
/// (a dropped go blocks the source forever, like a dead node).
fn phase_hook(tx: PhaseTx) -> erlnode::migration::PhaseHook {
    erlnode::migration::PhaseHook(Arc::new(move |p| {
        let tx = tx.clone();
        Box::pin(async move {
            let (go, wait) = tokio::sync::oneshot::channel();
            if tx.send((p, go)).is_ok() && wait.await.is_err() {
                std::future::pending::<()>().await;
            }
        })
    }))
}

fn deposit(id: &str, seq: i64) -> Term {
    Term::tuple([Term::atom("deposit"), Term::from(id), Term::Int(seq), Term::Int(1)])
}

#[tokio::test(flavor = "multi_thread")]
async fn target_node_killed_at_each_phase_source_keeps_the_process() {
    use erlnode::migration::Phase;
    support::require_erlang();
    for kill_at in [Phase::TargetStarted, Phase::HandoverSent, Phase::Accepted] {
        let epmd = Epmd::start().await;
        let cookie = support::unique("fault");
        let r1 = support::rust_node_builder("r1", &cookie, epmd.port()).start().await.unwrap();
        let (tx, mut phases) = tokio::sync::mpsc::unbounded_channel();
        let cfg = HandoffConfig { rebalance_on_join: false, hook: Some(phase_hook(tx)), ..Default::default() };
        let m1 = Migration::start(&r1, Arc::new(r1.global()), cfg).unwrap();
        m1.register_type::<Account>();
        let mut e1 = elixir_node("e1", &cookie, epmd.port()).await;
        assert!(r1.ping(e1.name()).await);
        r1.global().sync(T).await.unwrap();
        let name = "fault_acct";
        let pid = m1.start_process::<Account>(Term::nil(), name).await.unwrap().pid().clone();
        let mut c = r1.spawn_mailbox();
        let mut sent = 0;
        for _ in 0..50 {
            sent += 1;
            c.send(&pid, Term::tuple([Term::atom("$gen_cast"), deposit("c", sent)]));
        }
        let mut events = r1.subscribe();
        let m = m1.clone();
        let target = e1.name().to_string();
        let hop = tokio::spawn(async move { m.migrate(name, &target, Mode::Hot, T).await });
        // casts keep arriving while the handoff runs: they must not be lost either
        for _ in 0..50 {
            sent += 1;
            c.send(&pid, Term::tuple([Term::atom("$gen_cast"), deposit("c", sent)]));
        }
        loop {
            let (p, go) = tokio::time::timeout(T, phases.recv()).await.expect("phase").expect("hook alive");
            if p == kill_at {
                e1.kill().await;
                // proceed once this node has seen the target's node go
                tokio::time::timeout(T, async {
                    while !matches!(events.recv().await, Ok(erlnode::NodeEvent::Down { .. })) {}
                })
                .await
                .expect("nodedown");
                let _ = go.send(());
                break;
            }
            let _ = go.send(());
        }
        // later phases (if any) just proceed
        tokio::spawn(async move {
            while let Some((_, go)) = phases.recv().await {
                let _ = go.send(());
            }
        });
        let result = hop.await.unwrap();
        assert!(result.is_err(), "{kill_at:?}: the hop must fail, got {result:?}");
        // The source owns it: same pid, still registered, state and queue intact.
        assert_eq!(r1.global().whereis_name(&Term::atom(name)), Some(pid.clone()), "{kill_at:?}: name stays on the source");
        let st: Account = from_term(c.call(&pid, Term::atom("get"), T).await.unwrap()).unwrap();
        assert_eq!(st.applied, sent, "{kill_at:?}: every deposit applied once");
        assert!(st.anomalies.is_empty(), "{kill_at:?}: {:?}", st.anomalies);
        eprintln!("target killed at {kill_at:?}: source kept the process with all {sent} deposits");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn source_node_lost_after_the_target_confirmed_target_owns_it() {
    use erlnode::migration::Phase;
    support::require_erlang();
    let epmd = Epmd::start().await;
    let cookie = support::unique("srcdie");
    let r1 = support::rust_node_builder("r1", &cookie, epmd.port()).start().await.unwrap();
    let (tx, mut phases) = tokio::sync::mpsc::unbounded_channel();
    let cfg = HandoffConfig { rebalance_on_join: false, hook: Some(phase_hook(tx)), ..Default::default() };
    let m1 = Migration::start(&r1, Arc::new(r1.global()), cfg).unwrap();
    m1.register_type::<Account>();
    let e1 = elixir_node("e1", &cookie, epmd.port()).await;
    assert!(r1.ping(e1.name()).await);
    r1.global().sync(T).await.unwrap();
    let name = "srcdie_acct";
    let pid = m1.start_process::<Account>(Term::nil(), name).await.unwrap().pid().clone();
    let c = r1.spawn_mailbox();
    for seq in 1..=30 {
        c.send(&pid, Term::tuple([Term::atom("$gen_cast"), deposit("c", seq)]));
    }
    let m = m1.clone();
    let target = e1.name().to_string();
    tokio::spawn(async move { m.migrate(name, &target, Mode::Hot, T).await });
    loop {
        let (p, go) = tokio::time::timeout(T, phases.recv()).await.expect("phase").expect("hook alive");
        if p == Phase::Accepted {
            // The source's node dies here: its links close; the source never continues.
            r1.shutdown().await;
            drop(go);
            break;
        }
        let _ = go.send(());
    }
    // The target (on the Elixir node) sees its source go and takes the name.
    let owner = e1
        .try_eval_elixir(
            &format!(
                "Enum.find_value(1..300, fn _ ->
                   case :global.whereis_name(:{name}) do
                     pid when is_pid(pid) and node(pid) == node() -> pid
                     _ -> Process.sleep(20); nil
                   end
                 end)"
            ),
        )
        .await;
    assert!(matches!(owner, Ok(Term::Pid(ref p)) if p.node.as_str() == e1.name()), "target owns the name: {owner:?}");
    let st = e1.eval_elixir(&format!("GenServer.call({{:global, :{name}}}, :get)")).await;
    let st: Account = from_term(st).unwrap();
    assert_eq!(st.applied, 30, "the target has the state and the whole queue");
    assert!(st.anomalies.is_empty());
    eprintln!("source lost after accepted: the target on {} owns the account with {} deposits", e1.name(), st.applied);
}

/// The operator commands: `erlnode migrate` moves one process, `erlnode
/// rebalance` evens out a type across the nodes hosting it.
#[tokio::test(flavor = "multi_thread")]
async fn cli_migrate_and_rebalance() {
    support::require_erlang();
    let epmd = Epmd::start().await;
    let cookie = support::unique("cli");
    let (r1, m1) = rust_node("r1", &cookie, epmd.port()).await;
    let r2_name = format!("{}@127.0.0.1", support::unique("r2"));
    let _r2 = support::Erlnode::run(&r2_name, &cookie, epmd.port(), &["--no-embedded-epmd", "--no-rebalance-on-join", "--connect", r1.name().as_str()]).await;
    r1.global().sync(T).await.unwrap();
    // wait until r2's manager has announced the type
    let deadline = tokio::time::Instant::now() + T;
    while !m1.members("account").iter().any(|n| n.as_str() == r2_name) {
        assert!(tokio::time::Instant::now() < deadline, "r2 never announced account");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    m1.start_process::<Account>(Term::nil(), "cli_acct").await.unwrap();
    let port = epmd.port().to_string();
    let mut cli = support::Erlnode::spawn(["migrate", "cli_acct", "--to", &r2_name, "--via", r1.name().as_str(), "--cookie", &cookie, "--epmd-port", &port]);
    let status = cli.wait_exit(T).await.expect("erlnode migrate exits");
    assert!(status.success(), "{:?}", cli.output());
    assert!(cli.output().iter().any(|l| l.contains("cli_acct moved to")), "{:?}", cli.output());
    assert_eq!(r1.global().whereis_name(&Term::atom("cli_acct")).map(|p| p.node.to_string()), Some(r2_name.clone()));

    // 20 more on r1: r1 has 20, r2 has 1; rebalance evens them out.
    for i in 0..20 {
        m1.start_process::<Account>(Term::nil(), &format!("rb_{i}")).await.unwrap();
    }
    let mut cli = support::Erlnode::spawn(["rebalance", "account", "--via", r1.name().as_str(), "--cookie", &cookie, "--epmd-port", &port]);
    let status = cli.wait_exit(T).await.expect("erlnode rebalance exits");
    assert!(status.success(), "{:?}", cli.output());
    assert!(cli.output().iter().any(|l| l.contains("processes moved")), "{:?}", cli.output());
    let on_r2 = (0..20).filter(|i| r1.global().whereis_name(&Term::atom(&format!("rb_{i}"))).map(|p| p.node.as_str() == r2_name).unwrap_or(false)).count() + 1;
    let on_r1 = 21 - on_r2;
    assert!(on_r1.abs_diff(on_r2) <= 1, "balanced: r1 {on_r1}, r2 {on_r2}");
}

/// Sends a start request carrying its handover inline (`req`) from the
/// stand-in source `src` to `on`'s manager; returns the target once it
/// accepted.
async fn start_accepted(src: &mut erlnode::process::Mailbox, on: &Node, req: &erlnode::migration::messages::Request, reference: &erlnode::term::Reference) -> Pid {
    use erlnode::migration::messages::Op;
    let reply = src.call(("erlnode_migration", on.name().as_str()), req.to_term(), T).await.unwrap();
    let Some([_, Term::Pid(t), _]) = reply.as_tuple() else { panic!("start reply {reply:?}") };
    let t = t.clone();
    src.recv_match(T, |m| matches!(Op::parse(m), Some(Ok(Op::Accepted { reference: ref r, .. })) if r == reference).then_some(()))
        .await
        .expect("accepted");
    t
}

/// A target with `Sync` replicas answers the calls that travelled in the
/// handover's queue only once its state with them is on its replicas: an
/// answer is an acknowledgement, and the source's replicas hold the state
/// from before the handoff. The source is a stand-in on r1 that switches
/// when the test says; the caller also sits on r1, so a reply sent before
/// `accepted` would be in its mailbox when `accepted` is read (one link,
/// in order). r3 hosts the type and keeps the replica.
#[tokio::test(flavor = "multi_thread")]
async fn a_replicated_target_answers_queued_calls_once_its_replicas_hold_them() {
    use erlnode::migration::messages::{Op, Request};
    use erlnode::migration::ReplicaConfig;
    let epmd = Epmd::start().await;
    let cookie = support::unique("held");
    let r1 = support::rust_node_builder("r1", &cookie, epmd.port()).start().await.unwrap();
    let (r2, _m2) = rust_node("r2", &cookie, epmd.port()).await;
    let (r3, m3) = rust_node("r3", &cookie, epmd.port()).await;
    for (a, b) in [(&r1, &r2), (&r1, &r3), (&r2, &r3)] {
        assert!(a.ping(b.name().as_str()).await);
    }
    let deadline = tokio::time::Instant::now() + T;
    while !m3.members("account").iter().any(|n| n == r2.name()) {
        assert!(tokio::time::Instant::now() < deadline, "r3 never learnt that r2 hosts account");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut src = r1.spawn_mailbox();
    let mut caller = r1.spawn_mailbox();
    let reference = r1.make_ref();
    let tag = r1.make_ref();
    let call = Term::tuple([Term::atom("$gen_call"), Term::tuple([Term::Pid(caller.pid().clone()), Term::Ref(tag.clone())]), deposit("held", 1)]);
    let state = erlnode::term::serde::to_term(&Account::default()).unwrap();
    let name = erlnode::Atom::new(&support::unique("held_acct"));
    let req = Request::Start {
        type_name: "account".into(),
        args: Term::nil(),
        name: name.clone(),
        reference: reference.clone(),
        source: src.pid().clone(),
        replicas: Some(ReplicaConfig::sync(1)),
        handover: Some((state, vec![call])),
    };
    let t = start_accepted(&mut src, &r2, &req, &reference).await;
    assert!(caller.recv_timeout(Duration::ZERO).await.is_err(), "the queued call was answered before the target replicated it");

    // The switch: the target serves, replicates, and answers.
    src.send(&t, Op::Switched { reference: reference.clone() }.to_term());
    let answer = caller
        .recv_match(T, |m| match m.as_tuple() {
            Some([Term::Ref(r), a]) if *r == tag => Some(a.clone()),
            _ => None,
        })
        .await
        .expect("the queued call is answered after the switch");
    assert_eq!(answer.as_tuple().map(|t| t[0].clone()), Some(Term::atom("ok")), "{answer:?}");
    // By then r3 holds the target's state (Sync: the answer waited for it).
    let held = m3.replicas_held().await.unwrap();
    assert!(held.iter().any(|(n, _, owner, _)| *n == name && *owner == t), "r3's replicas: {held:?}");
    r1.shutdown().await;
    r2.shutdown().await;
    r3.shutdown().await;
}

/// A source puts a small handover into its start request; a manager of a
/// release before that ignores it and answers `{ok, T}` as it always did:
/// the source then sends the handover as its own message, and the move
/// completes. The manager here is a mailbox under the manager's name on a
/// node without erlnode's migration, the target another mailbox there.
#[tokio::test(flavor = "multi_thread")]
async fn a_manager_that_ignores_an_inline_handover_gets_it_as_its_own_message() {
    use erlnode::migration::messages::{Op, Request};
    let epmd = Epmd::start().await;
    let cookie = support::unique("inline");
    let (r1, m1) = rust_node("r1", &cookie, epmd.port()).await;
    let r2 = support::rust_node_builder("r2", &cookie, epmd.port()).start().await.unwrap();
    assert!(r1.ping(r2.name().as_str()).await);
    r1.global().sync(T).await.unwrap();
    let mut manager = r2.spawn_mailbox();
    r2.register("erlnode_migration", manager.pid()).unwrap();
    let mut target = r2.spawn_mailbox();
    let name = "inline_old_acct";
    let pid = m1.start_process::<Account>(Term::nil(), name).await.unwrap().pid().clone();
    let c = r1.spawn_mailbox();
    for seq in 1..=3 {
        c.send(&pid, Term::tuple([Term::atom("$gen_cast"), deposit("c", seq)]));
    }
    let m = m1.clone();
    let to = r2.name().to_string();
    let moved = tokio::spawn(async move { m.migrate(name, &to, Mode::Hot, T).await });
    let (from, start) = manager
        .recv_match(T, |m| erlnode::node::gen_call_parts(m).and_then(|(f, r)| Some((f.clone(), Request::parse(r)?))))
        .await
        .expect("start request");
    let Request::Start { reference, handover, .. } = start else { panic!("not a start request: {start:?}") };
    assert!(handover.is_some(), "a small state rides with the start request");
    manager.reply(&from, Term::tuple([Term::atom("ok"), Term::Pid(target.pid().clone())]));
    let (state, queue, source) = target
        .recv_match(T, |m| match Op::parse(m) {
            Some(Ok(Op::Handover { reference: r, state, queue, source })) if r == reference => Some((state, queue, source)),
            _ => None,
        })
        .await
        .expect("the source sends the handover itself");
    let st: Account = from_term(state).unwrap();
    assert_eq!(st.applied as usize + queue.len(), 3, "every deposit is in the state or the queue");
    target.send(&source, Op::Accepted { reference: reference.clone(), target: target.pid().clone() }.to_term());
    target
        .recv_match(T, |m| matches!(Op::parse(m), Some(Ok(Op::Switched { reference: ref r })) if *r == reference).then_some(()))
        .await
        .expect("switched");
    assert_eq!(moved.await.unwrap().unwrap(), *target.pid());
    assert_eq!(r1.global().whereis_name(&Term::atom(name)).as_ref(), Some(target.pid()));
    r1.shutdown().await;
    r2.shutdown().await;
}

/// A target that accepted but never heard `switched` takes the name when
/// nobody live holds it, and gives way when a process it can reach does
/// (the source resumed and took the name back, or a partition healed
/// first): it stops with `{shutdown, {name_conflict, Name, Holder}}`
/// instead of serving without the name, so the process stays single. The
/// source here is a mailbox on r1 speaking the protocol; the target runs on
/// r2 with a short `switch_timeout`.
#[tokio::test(flavor = "multi_thread")]
async fn a_target_left_without_a_switch_takes_a_free_name_and_gives_way_to_a_live_holder() {
    use erlnode::migration::messages::Request;
    let epmd = Epmd::start().await;
    let cookie = support::unique("giveway");
    let r1 = support::rust_node_builder("r1", &cookie, epmd.port()).start().await.unwrap();
    let r2 = support::rust_node_builder("r2", &cookie, epmd.port()).start().await.unwrap();
    let cfg = HandoffConfig { rebalance_on_join: false, switch_timeout: Duration::from_millis(300), ..Default::default() };
    let m2 = Migration::start(&r2, Arc::new(r2.global()), cfg).unwrap();
    m2.register_type::<Account>();
    assert!(r1.ping(r2.name().as_str()).await);
    r1.global().sync(T).await.unwrap();
    let state = erlnode::term::serde::to_term(&Account::default()).unwrap();
    // Starts a target for `name` with the handover inline; returns it once
    // it accepted, and the source mailbox (which then stays silent).
    let start = |name: String| {
        let (r1, r2, state) = (r1.clone(), r2.clone(), state.clone());
        async move {
            let mut src = r1.spawn_mailbox();
            let reference = r1.make_ref();
            let req = Request::Start {
                type_name: "account".into(),
                args: Term::nil(),
                name: erlnode::Atom::new(&name),
                reference: reference.clone(),
                source: src.pid().clone(),
                replicas: None,
                handover: Some((state, vec![])),
            };
            let t = start_accepted(&mut src, &r2, &req, &reference).await;
            (src, t)
        }
    };

    // A free name: the target takes it after the switch timeout.
    let free = support::unique("gw_free");
    let (_src, t) = start(free.clone()).await;
    let deadline = tokio::time::Instant::now() + T;
    while r1.global().whereis_name(&Term::atom(&free)).as_ref() != Some(&t) {
        assert!(tokio::time::Instant::now() < deadline, "the target never took the free name");
        tokio::time::sleep(Duration::from_millis(20)).await; // bounded by global's broadcast
    }

    // A name a live process on r1 holds: the target stops rather than
    // serve without it.
    let taken = support::unique("gw_taken");
    let holder = r1.spawn_mailbox();
    assert!(r1.global().register_name(Term::atom(&taken), holder.pid()).await.unwrap());
    r2.global().sync(T).await.unwrap();
    let (mut src, t) = start(taken.clone()).await;
    let watch = src.monitor(&t);
    let (_, reason) = support::down(&mut src, &watch, T).await; // the target stops
    let want = Term::tuple([Term::atom("shutdown"), Term::tuple([Term::atom("name_conflict"), Term::atom(&taken), Term::Pid(holder.pid().clone())])]);
    assert_eq!(reason, want);
    assert_eq!(r2.global().whereis_name(&Term::atom(&taken)).as_ref(), Some(holder.pid()), "the holder keeps the name");
    assert!(!m2.hosted().iter().any(|(n, ..)| n.as_str() == taken), "the stopped target is not hosted");
    r1.shutdown().await;
    r2.shutdown().await;
}
