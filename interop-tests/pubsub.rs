//! Issue 9, Phoenix.PubSub: Rust subscribers and publishers on an
//! Elixir application's PubSub server (the pg-based PG2 adapter).
//!
//! Phoenix.PubSub is not part of OTP and is not vendored: these tests
//! load its compiled ebins from the folder named by `PHOENIX_PUBSUB_LIBS`
//! (`make test-pubsub PHOENIX_PUBSUB_LIBS=DIR`); without it they are
//! `#[ignore]`d, which cargo prints with the reason. `make test` always runs the replay of a trace recorded
//! from the real library (tests/pubsub_trace.rs).

use crate::global::init_log;
use crate::support::{self, BeamNode, Epmd};
use erlnode::pubsub::PubSub;
use erlnode::{Node, Pid, Term};
use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;
use tokio::sync::mpsc;

const T: Duration = Duration::from_secs(60);
const SERVER: &str = "TestPS";

/// Why these tests are `#[ignore]`d in `cargo test`: shown by cargo as
/// "ignored, needs PHOENIX_PUBSUB_LIBS ...", never a silent pass.
/// `make test-pubsub PHOENIX_PUBSUB_LIBS=DIR` runs them with
/// `--include-ignored`.
fn libs(test: &str) -> Option<PathBuf> {
    match std::env::var_os("PHOENIX_PUBSUB_LIBS") {
        Some(d) if !d.is_empty() => Some(PathBuf::from(d)),
        _ => panic!("{test}: PHOENIX_PUBSUB_LIBS is unset: run `make test-pubsub PHOENIX_PUBSUB_LIBS=DIR` (a folder of Phoenix.PubSub's compiled ebins)"),
    }
}

/// An Elixir node running the phoenix_pubsub application and a PubSub
/// server named `TestPS`.
async fn elixir_with_pubsub(prefix: &str, cookie: &str, epmd: u16, libs: &PathBuf) -> BeamNode {
    elixir_with_pubsub_opts(prefix, cookie, epmd, libs, "").await
}

/// [`elixir_with_pubsub`] with extra options for the server (`, pool_size: 2`).
async fn elixir_with_pubsub_opts(prefix: &str, cookie: &str, epmd: u16, libs: &PathBuf, opts: &str) -> BeamNode {
    let b = BeamNode::builder().prefix(prefix).cookie(cookie).epmd_port(epmd).elixir(true).code_path(libs).start().await;
    let started = b.eval_elixir("Application.ensure_all_started(:phoenix_pubsub)").await;
    assert!(matches!(started.as_tuple(), Some([ok, _]) if ok.is_atom("ok")), "phoenix_pubsub starts: {started:?}");
    let sup = b
        .eval_elixir(&format!("{{:ok, sup}} = Supervisor.start_link([{{Phoenix.PubSub, name: {SERVER}{opts}}}], strategy: :one_for_one); Process.unlink(sup); :ok"))
        .await;
    assert_eq!(sup, Term::atom("ok"));
    b
}

/// A test's epmd and cookie, and an erlnode node running the PubSub
/// server with `pool_size` workers.
async fn rust_side(pool_size: usize) -> (Epmd, String, Node, PubSub) {
    let epmd = Epmd::start().await;
    let cookie = support::unique("cookie");
    let rust = support::rust_node("r", &cookie, epmd.port()).await;
    let ps = rust.pubsub(SERVER).pool_size(pool_size).start().await.expect("pubsub starts");
    (epmd, cookie, rust, ps)
}

/// An Elixir process subscribed to `topic` that keeps what it receives;
/// `{:get, pid}` returns the list in arrival order.
async fn elixir_subscriber(b: &BeamNode, var: &str, topic: &str) {
    b.eval(&format!(
        "Me = self(), {var} = spawn(fun() -> ok = 'Elixir.Phoenix.PubSub':subscribe('Elixir.{SERVER}', <<\"{topic}\">>), Me ! subscribed,
             (fun L(Acc) -> receive {{get, From}} -> From ! {{got, lists:reverse(Acc)}}, L(Acc); M -> L([M | Acc]) end end)([]) end),
         receive subscribed -> ok end"
    ))
    .await;
}

/// A fresh Erlang variable name: the eval loop keeps bindings, so a
/// variable reused in a later `receive` pattern would match only the old
/// value.
fn fresh(prefix: &str) -> String {
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    format!("{prefix}{}", N.fetch_add(1, std::sync::atomic::Ordering::Relaxed))
}

async fn elixir_received(b: &BeamNode, var: &str) -> Vec<Term> {
    let l = fresh("L");
    match b.eval(&format!("{var} ! {{get, self()}}, receive {{got, {l}}} -> {l} after 30000 -> timeout end")).await {
        Term::List(xs) => xs,
        other => panic!("subscriber: {other:?}"),
    }
}

/// A Rust subscriber that forwards what it receives to the test.
fn rust_subscriber(node: &Node, ps: &PubSub, topic: &str) -> (Pid, mpsc::UnboundedReceiver<Term>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let pid = node.spawn(move |mut mb| async move {
        while let Some(m) = mb.recv().await {
            if tx.send(m).is_err() {
                break;
            }
        }
        Term::atom("normal")
    });
    ps.subscribe(&pid, topic).unwrap();
    (pid, rx)
}

async fn next(rx: &mut mpsc::UnboundedReceiver<Term>) -> Term {
    tokio::time::timeout(T, rx.recv()).await.expect("a message within the deadline").expect("subscriber alive")
}

/// Waits until the Elixir node sees `n` members in the adapter group.
async fn await_group_members(b: &BeamNode, n: usize) {
    let deadline = tokio::time::Instant::now() + T;
    loop {
        let got = b.eval(&format!("length(pg:get_members('Elixir.Phoenix.PubSub', 'Elixir.{SERVER}.Adapter'))")).await;
        if got == Term::Int(n as i64) {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "adapter group never reached {n} members: {got:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[derive(serde::Deserialize, Debug, PartialEq)]
struct Broadcast {
    topic: String,
    event: String,
    payload: HashMap<String, i64>,
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs PHOENIX_PUBSUB_LIBS: make test-pubsub PHOENIX_PUBSUB_LIBS=DIR"]
async fn pubsub_semantics_between_elixir_and_rust() {
    let Some(libs) = libs("pubsub_semantics_between_elixir_and_rust") else { return };
    init_log();
    let (epmd, cookie, rust, ps) = rust_side(1).await;
    let ex = elixir_with_pubsub("e", &cookie, epmd.port(), &libs).await;
    assert_eq!(ex.eval(&format!("net_adm:ping('{}')", rust.name())).await, Term::atom("pong"));
    await_group_members(&ex, 2).await;
    elixir_subscriber(&ex, "Sub", "room").await;
    let (rsub, mut rx) = rust_subscriber(&rust, &ps, "room");

    // Elixir -> Rust, once.
    ex.eval_elixir(&format!("Phoenix.PubSub.broadcast({SERVER}, \"room\", {{:from_elixir, 1}})")).await;
    assert_eq!(next(&mut rx).await, Term::tuple([Term::atom("from_elixir"), Term::Int(1)]));
    // Rust -> everyone, once each.
    ps.broadcast("room", Term::tuple([Term::atom("from_rust"), Term::Int(2)])).unwrap();
    assert_eq!(next(&mut rx).await, Term::tuple([Term::atom("from_rust"), Term::Int(2)]));
    // broadcast_from excludes the sender (here the Rust subscriber itself).
    ps.broadcast_from(&rsub, "room", Term::atom("not_to_sender")).unwrap();
    // local_broadcast stays on this node.
    ps.local_broadcast("room", Term::atom("local_only"));
    assert_eq!(next(&mut rx).await, Term::atom("local_only"), "broadcast_from skipped the sender, local_broadcast reached it");
    // A struct arrives as a map a serde type reads.
    ex.eval_elixir(&format!(
        "Phoenix.PubSub.broadcast({SERVER}, \"room\", %{{__struct__: Phoenix.Socket.Broadcast, topic: \"room\", event: \"new_msg\", payload: %{{\"n\" => 3}}}})"
    ))
    .await;
    let b: Broadcast = erlnode::term::serde::from_term(next(&mut rx).await).expect("struct map deserializes");
    assert_eq!(b, Broadcast { topic: "room".into(), event: "new_msg".into(), payload: HashMap::from([("n".to_string(), 3)]) });
    // direct_broadcast from Elixir to the Rust node, and from Rust to Elixir.
    ex.eval_elixir(&format!("Phoenix.PubSub.direct_broadcast(:\"{}\", {SERVER}, \"room\", :direct)", rust.name())).await;
    assert_eq!(next(&mut rx).await, Term::atom("direct"));
    ps.direct_broadcast(ex.name(), "room", Term::atom("direct_to_elixir"));
    ps.broadcast("room", Term::atom("marker")).unwrap();
    assert_eq!(next(&mut rx).await, Term::atom("marker"));

    // Per-link order makes the marker the proof that nothing else came.
    let deadline = tokio::time::Instant::now() + T;
    let got = loop {
        let got = elixir_received(&ex, "Sub").await;
        if got.last() == Some(&Term::atom("marker")) || tokio::time::Instant::now() >= deadline {
            break got;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert_eq!(got.len(), 6, "{got:?}");
    assert_eq!(got[0], Term::tuple([Term::atom("from_elixir"), Term::Int(1)]));
    assert_eq!(got[1], Term::tuple([Term::atom("from_rust"), Term::Int(2)]));
    assert_eq!(got[2], Term::atom("not_to_sender"));
    assert!(matches!(&got[3], Term::Map(_)));
    assert_eq!(&got[4..], &[Term::atom("direct_to_elixir"), Term::atom("marker")]);
    assert!(rx.try_recv().is_err(), "the Rust subscriber got nothing else");
}

/// Acceptance: 10,000 broadcasts from two Elixir nodes and one Rust node
/// to subscribers on all three: each subscriber gets each message exactly
/// once, in per-publisher order.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs PHOENIX_PUBSUB_LIBS: make test-pubsub PHOENIX_PUBSUB_LIBS=DIR"]
async fn ten_thousand_broadcasts_exactly_once_in_order() {
    let Some(libs) = libs("ten_thousand_broadcasts_exactly_once_in_order") else { return };
    init_log();
    let (epmd, cookie, rust, ps) = rust_side(1).await;
    let e1 = elixir_with_pubsub("ea", &cookie, epmd.port(), &libs).await;
    let e2 = elixir_with_pubsub("eb", &cookie, epmd.port(), &libs).await;
    for b in [&e1, &e2] {
        assert_eq!(b.eval(&format!("net_adm:ping('{}')", rust.name())).await, Term::atom("pong"));
    }
    assert_eq!(e1.eval(&format!("net_adm:ping('{}')", e2.name())).await, Term::atom("pong"));
    for b in [&e1, &e2] {
        await_group_members(b, 3).await;
    }
    let deadline = tokio::time::Instant::now() + T;
    while ps_members(&rust) < 3 {
        assert!(tokio::time::Instant::now() < deadline, "the Rust node never saw both Elixir workers");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // An Elixir subscriber that checks order per publisher as it goes.
    let checker = "Me = self(), Chk = spawn(fun() -> ok = 'Elixir.Phoenix.PubSub':subscribe('Elixir.TestPS', <<\"load\">>), Me ! subscribed,
        (fun L(Last, N, Bad) -> receive
            {get, From} -> From ! {counts, N, Bad, Last}, L(Last, N, Bad);
            {P, I} -> Prev = maps:get(P, Last, -1), L(Last#{P => I}, N + 1, case I =:= Prev + 1 of true -> Bad; false -> Bad + 1 end)
         end end)(#{}, 0, 0) end), receive subscribed -> ok end";
    e1.eval(checker).await;
    e2.eval(checker).await;
    let (_rsub, mut rx) = rust_subscriber(&rust, &ps, "load");

    let per = [3334i64, 3333, 3333];
    let total: i64 = per.iter().sum();
    // Publish from all three at once.
    for (b, tag, n) in [(&e1, "ea", per[0]), (&e2, "eb", per[1])] {
        b.eval(&format!(
            "spawn(fun() -> [ 'Elixir.Phoenix.PubSub':broadcast('Elixir.TestPS', <<\"load\">>, {{{tag}, I}}) || I <- lists:seq(0, {}) ] end), ok",
            n - 1
        ))
        .await;
    }
    for i in 0..per[2] {
        ps.broadcast("load", Term::tuple([Term::atom("rs"), Term::Int(i)])).unwrap();
    }

    // The Rust subscriber: exactly once, in order per publisher.
    let mut last: HashMap<String, i64> = HashMap::new();
    for k in 0..total {
        let m = next(&mut rx).await;
        let (p, i) = match m.as_tuple() {
            Some([Term::Atom(p), Term::Int(i)]) => (p.as_str().to_string(), *i),
            _ => panic!("message {k}: {m:?}"),
        };
        let prev = last.insert(p.clone(), i).unwrap_or(-1);
        assert_eq!(i, prev + 1, "publisher {p}: got {i} after {prev}");
    }
    assert_eq!(last, HashMap::from([("ea".into(), per[0] - 1), ("eb".into(), per[1] - 1), ("rs".into(), per[2] - 1)]));
    for b in [&e1, &e2] {
        let deadline = tokio::time::Instant::now() + T;
        loop {
            let (n, bad) = (fresh("N"), fresh("Bad"));
            let c = b.eval(&format!("Chk ! {{get, self()}}, receive {{counts, {n}, {bad}, _}} -> {{{n}, {bad}}} after 30000 -> timeout end")).await;
            if c == Term::tuple([Term::Int(total), Term::Int(0)]) {
                break;
            }
            assert!(tokio::time::Instant::now() < deadline, "Elixir subscriber on {}: {c:?}", b.name());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let l = fresh("Last");
        let last = b.eval(&format!("Chk ! {{get, self()}}, receive {{counts, _, _, {l}}} -> lists:sort(maps:to_list({l})) end")).await;
        assert_eq!(last, Term::list([
            Term::tuple([Term::atom("ea"), Term::Int(per[0] - 1)]),
            Term::tuple([Term::atom("eb"), Term::Int(per[1] - 1)]),
            Term::tuple([Term::atom("rs"), Term::Int(per[2] - 1)]),
        ]));
    }
    // An end marker from each Elixir publisher travels behind anything
    // it sent: the next two messages must be exactly those.
    for b in [&e1, &e2] {
        b.eval_elixir(&format!("Phoenix.PubSub.broadcast({SERVER}, \"load\", {{:end, node()}})")).await;
    }
    for _ in 0..2 {
        let m = next(&mut rx).await;
        assert!(matches!(m.as_tuple(), Some([e, _]) if e.is_atom("end")), "no duplicate reached the Rust subscriber: {m:?}");
    }
    println!("pubsub acceptance: {total} broadcasts ({} + {} from Elixir, {} from Rust) received exactly once, in per-publisher order, by 3 subscribers (2 Elixir, 1 Rust): {} deliveries", per[0], per[1], per[2], total * 3);
}

fn ps_members(rust: &Node) -> usize {
    rust.pg_scope(erlnode::pubsub::SCOPE).unwrap().get_members(&Term::atom(&format!("Elixir.{SERVER}.Adapter"))).len()
}

async fn recv(mb: &mut erlnode::Mailbox, what: &str) -> Term {
    mb.recv_timeout(T).await.unwrap_or_else(|e| panic!("no {what} message: {e:?}"))
}

/// Records the trace `make test` replays (tests/vectors/phoenix_pubsub.trace):
/// what a real Elixir node running Phoenix.PubSub sends to a peer pg
/// scope (`pg` lines) and to a PG2 member on another node (`member`
/// lines). Runs only with PHOENIX_PUBSUB_LIBS and PUBSUB_TRACE_OUT set;
/// the recorder is a plain mailbox, so the trace shows the library's
/// messages, not erlnode's interpretation of them.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs PHOENIX_PUBSUB_LIBS: make test-pubsub PHOENIX_PUBSUB_LIBS=DIR"]
async fn record_pubsub_trace() {
    let Some(libs) = libs("record_pubsub_trace") else { return };
    let Some(out) = std::env::var_os("PUBSUB_TRACE_OUT") else {
        println!("record_pubsub_trace: not run: PUBSUB_TRACE_OUT unset");
        return;
    };
    init_log();
    let epmd = Epmd::start().await;
    let cookie = support::unique("cookie");
    let rust = Node::builder("recorder@127.0.0.1").cookie(&cookie).epmd_port(epmd.port()).embedded_epmd(false).start().await.unwrap();
    let mut fake_scope = rust.spawn_mailbox();
    rust.register(erlnode::pubsub::SCOPE, fake_scope.pid()).unwrap();
    let mut member = rust.spawn_mailbox();
    rust.register(&format!("Elixir.{SERVER}.Adapter"), member.pid()).unwrap();
    let ex = elixir_with_pubsub("e", &cookie, epmd.port(), &libs).await;
    let version = match ex.eval("{ok, V} = application:get_key(phoenix_pubsub, vsn), list_to_binary([\"phoenix_pubsub \", V, \", OTP \", erlang:system_info(otp_release)])").await {
        Term::Binary(b) => String::from_utf8_lossy(&b).into_owned(),
        other => panic!("{other:?}"),
    };
    assert_eq!(ex.eval(&format!("net_adm:ping('{}')", rust.name())).await, Term::atom("pong"));

    let mut lines = vec![
        "# Messages a real Elixir node running Phoenix.PubSub sent to erlnode, recorded by".to_string(),
        "# interop-tests/pubsub.rs record_pubsub_trace (a plain mailbox as recorder).".to_string(),
        format!("# {version}; recorder node: {}; server: {SERVER}", rust.name()),
        "# pg <hex ETF>: to the peer scope 'Elixir.Phoenix.PubSub'; member <hex ETF>: to a PG2 member".to_string(),
    ];
    let mut record = |kind: &str, t: &Term| lines.push(format!("{kind} {}", support::hex_encode(&erlnode::term::encode(t))));
    // nodeup: the Elixir scope discovers us; we discover it back and get its sync.
    let discover = recv(&mut fake_scope, "pg").await;
    record("pg", &discover);
    let escope = match discover.as_tuple() {
        Some([_, Term::Pid(p)]) => p.clone(),
        _ => panic!("{discover:?}"),
    };
    fake_scope.send(&escope, Term::tuple([Term::atom("discover"), Term::Pid(fake_scope.pid().clone())]));
    for _ in 0..2 {
        let m = recv(&mut fake_scope, "pg").await;
        record("pg", &m);
    }
    // Announce our member as erlnode's scope does, then make the library talk to it.
    let sync = Term::tuple([
        Term::atom("$gen_cast"),
        Term::tuple([Term::atom("sync"), Term::Pid(fake_scope.pid().clone()), Term::list([Term::tuple([Term::atom(&format!("Elixir.{SERVER}.Adapter")), Term::list([Term::Pid(member.pid().clone())])])])]),
    ]);
    fake_scope.send(&escope, sync);
    let deadline = tokio::time::Instant::now() + T;
    while ex.eval(&format!("length(pg:get_members('Elixir.Phoenix.PubSub', 'Elixir.{SERVER}.Adapter'))")).await != Term::Int(2) {
        assert!(tokio::time::Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    for payload in [
        "{:tuple, 1, \"two\", [3.0]}",
        "\"a binary\"",
        "%{__struct__: Phoenix.Socket.Broadcast, topic: \"room:1\", event: \"new_msg\", payload: %{\"body\" => \"hi\", \"n\" => 123456789012345678901234567890}}",
        "self()",
    ] {
        ex.eval_elixir(&format!("Phoenix.PubSub.broadcast({SERVER}, \"room:1\", {payload})")).await;
        let m = recv(&mut member, "member").await;
        record("member", &m);
    }
    ex.eval_elixir(&format!("Phoenix.PubSub.broadcast_from({SERVER}, self(), \"room:2\", :from_someone)")).await;
    record("member", &recv(&mut member, "member").await);
    ex.eval_elixir(&format!("Phoenix.PubSub.direct_broadcast(:\"{}\", {SERVER}, \"room:3\", :direct)", rust.name())).await;
    record("member", &recv(&mut member, "member").await);
    // A second server joins its group (a join), then stops (a leave).
    ex.eval_elixir("{:ok, sup2} = Supervisor.start_link([{Phoenix.PubSub, name: TestPS2, pool_size: 2}], strategy: :one_for_one); Process.unlink(sup2); Process.put(:sup2, sup2)").await;
    for _ in 0..2 {
        record("pg", &recv(&mut fake_scope, "pg").await);
    }
    ex.eval_elixir("Supervisor.stop(Process.get(:sup2))").await;
    for _ in 0..2 {
        record("pg", &recv(&mut fake_scope, "pg").await);
    }
    lines.push(String::new());
    std::fs::write(&out, lines.join("\n")).expect("write the trace");
    println!("record_pubsub_trace: wrote {} lines to {:?}", lines.len(), out);
}

/// `erlnode run --pubsub SERVER --subscribe TOPIC` tails a topic: every
/// Elixir broadcast on it is logged, others are not.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs PHOENIX_PUBSUB_LIBS: make test-pubsub PHOENIX_PUBSUB_LIBS=DIR"]
async fn cli_tails_a_topic() {
    let Some(libs) = libs("cli_tails_a_topic") else { return };
    init_log();
    let epmd = Epmd::start().await;
    let cookie = support::unique("cookie");
    let name = format!("{}@127.0.0.1", support::unique("tail"));
    let cli = support::Erlnode::run(&name, &cookie, epmd.port(), &["--no-embedded-epmd", "--no-migration", "--pubsub", SERVER, "--subscribe", "news"]).await;
    cli.wait_for_line("subscribed", T).await.expect("the CLI subscribes");
    let ex = elixir_with_pubsub("e", &cookie, epmd.port(), &libs).await;
    assert_eq!(ex.eval(&format!("net_adm:ping('{name}')")).await, Term::atom("pong"));
    await_group_members(&ex, 2).await;
    ex.eval_elixir(&format!("Phoenix.PubSub.broadcast({SERVER}, \"other\", :not_this_one)")).await;
    ex.eval_elixir(&format!("Phoenix.PubSub.broadcast({SERVER}, \"news\", {{:headline, \"rust joins\", %{{n: 1}}}})")).await;
    let line = cli.wait_for_line("pubsub message", T).await.expect("the broadcast is logged");
    assert!(line.contains(r#"{:headline, \"rust joins\", %{n: 1}}"#) || line.contains(r#"{:headline, "rust joins", %{n: 1}}"#), "{line}");
    assert!(!cli.output().iter().any(|l| l.contains("not_this_one")), "another topic is not logged");
}

/// With a pool of 2 on both sides, Elixir publishers hash into both
/// groups ('Elixir.TestPS.Adapter' and 'Elixir.TestPS.Adapter_2'); the
/// Rust node, a member of both, gets every broadcast exactly once, and its
/// own broadcasts from different senders reach Elixir once each.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs PHOENIX_PUBSUB_LIBS: make test-pubsub PHOENIX_PUBSUB_LIBS=DIR"]
async fn pool_of_two_groups() {
    let Some(libs) = libs("pool_of_two_groups") else { return };
    init_log();
    let (epmd, cookie, rust, ps) = rust_side(2).await;
    assert_eq!(ps.workers().len(), 2);
    let ex = elixir_with_pubsub_opts("e", &cookie, epmd.port(), &libs, ", pool_size: 2").await;
    assert_eq!(ex.eval(&format!("net_adm:ping('{}')", rust.name())).await, Term::atom("pong"));
    let deadline = tokio::time::Instant::now() + T;
    while ex.eval("{length(pg:get_members('Elixir.Phoenix.PubSub', 'Elixir.TestPS.Adapter')), length(pg:get_members('Elixir.Phoenix.PubSub', 'Elixir.TestPS.Adapter_2'))}").await
        != Term::tuple([Term::Int(2), Term::Int(2)])
    {
        assert!(tokio::time::Instant::now() < deadline, "both groups never had both nodes");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    elixir_subscriber(&ex, "PoolSub", "pool").await;
    let (_rsub, mut rx) = rust_subscriber(&rust, &ps, "pool");
    // 40 publishers (40 different self() hashes), one broadcast each.
    ex.eval("Me = self(), [spawn(fun() -> 'Elixir.Phoenix.PubSub':broadcast('Elixir.TestPS', <<\"pool\">>, {ex, I}), Me ! {sent, I} end) || I <- lists:seq(1, 40)], [receive {sent, I} -> ok end || I <- lists:seq(1, 40)], ok").await;
    let mut got: Vec<i64> = Vec::new();
    for _ in 0..40 {
        match next(&mut rx).await.as_tuple() {
            Some([t, Term::Int(i)]) if t.is_atom("ex") => got.push(*i),
            other => panic!("{other:?}"),
        }
    }
    got.sort();
    assert_eq!(got, (1..=40).collect::<Vec<_>>(), "each Elixir broadcast once, whichever group it chose");
    // Rust broadcasts from 10 different senders (both groups get used).
    let senders: Vec<Pid> = (0..10).map(|_| rust.spawn(|mut mb| async move { while mb.recv().await.is_some() {} Term::atom("normal") })).collect();
    for (i, s) in senders.iter().enumerate() {
        ps.broadcast_from(s, "pool", Term::tuple([Term::atom("rs"), Term::Int(i as i64)])).unwrap();
    }
    let deadline = tokio::time::Instant::now() + T;
    let from_rust = loop {
        let got = elixir_received(&ex, "PoolSub").await;
        let rs: Vec<Term> = got.into_iter().filter(|m| matches!(m.as_tuple(), Some([t, _]) if t.is_atom("rs"))).collect();
        if rs.len() >= 10 || tokio::time::Instant::now() >= deadline {
            break rs;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let mut idx: Vec<i64> = from_rust.iter().map(|m| m.as_tuple().unwrap()[1].as_int().unwrap()).collect();
    idx.sort();
    assert_eq!(idx, (0..10).collect::<Vec<_>>(), "each Rust broadcast reached the Elixir subscriber once");
}
