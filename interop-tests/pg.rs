//! Issue 9: erlnode's `pg` scopes in clusters of real BEAM nodes
//! (`:pg` on the Erlang/Elixir side) and erlnode nodes.
//!
//! Views are compared as sorted member lists; every wait is a bounded
//! poll of the real state on every node.

use crate::global::{beam, init_log, pid_literal};
use crate::support::{self, BeamNode, Epmd};
use erlnode::pg::{PgAction, PgScope};
use erlnode::{Node, Pid, Term};
use rand::{Rng, SeedableRng};
use std::time::Duration;

const T: Duration = Duration::from_secs(30);

fn sorted(mut v: Vec<Pid>) -> Vec<Pid> {
    v.sort();
    v
}

fn pids(t: &Term) -> Vec<Pid> {
    match t {
        Term::List(xs) => xs.iter().map(|x| x.as_pid().cloned().unwrap_or_else(|| panic!("not a pid: {x:?}"))).collect(),
        other => panic!("not a pid list: {other:?}"),
    }
}

/// `pg:get_members(Scope, Group)` on a BEAM node.
async fn beam_members(b: &BeamNode, scope: &str, group: &str) -> Vec<Pid> {
    sorted(pids(&b.eval(&format!("pg:get_members('{scope}', {group})")).await))
}

/// A Rust process that lives until it is killed.
fn idle(node: &Node) -> Pid {
    node.spawn(|mut mb| async move {
        while mb.recv().await.is_some() {}
        Term::atom("normal")
    })
}

/// A BEAM process that lives until it is killed.
async fn beam_idle(b: &BeamNode) -> Pid {
    b.eval("spawn(fun() -> receive stop -> ok end end)").await.as_pid().cloned().expect("a pid")
}

/// Where a test reads a group's members.
enum View<'a> {
    Beam(&'a BeamNode, &'a str, &'a str),
    Rust(&'a PgScope, Term),
}

impl View<'_> {
    async fn members(&self) -> Vec<Pid> {
        match self {
            View::Beam(b, scope, group) => beam_members(b, scope, group).await,
            View::Rust(s, group) => sorted(s.get_members(group)),
        }
    }
}

/// Waits (bounded) until `view` shows exactly `want` (as a multiset).
async fn wait_equal(what: &str, want: &[Pid], view: View<'_>) {
    let want = sorted(want.to_vec());
    let mut last;
    let deadline = tokio::time::Instant::now() + T;
    loop {
        last = view.members().await;
        if last == want || tokio::time::Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(last, want, "{what}");
}

#[tokio::test(flavor = "multi_thread")]
async fn rust_and_beam_members_see_each_other_and_exits_clean_up() {
    init_log();
    let epmd = Epmd::start().await;
    let cookie = support::unique("cookie");
    let rust = support::rust_node("r", &cookie, epmd.port()).await;
    let ex = beam("e", &cookie, epmd.port(), true).await;
    // A scope started before the connection exists, on both sides.
    let scope = rust.pg_scope("pg_basic").expect("scope starts");
    assert!(matches!(ex.eval("pg:start(pg_basic)").await.as_tuple(), Some([ok, _]) if ok.is_atom("ok")));
    let r1 = idle(&rust);
    let r2 = idle(&rust);
    scope.join(Term::atom("g"), &r1).await.unwrap();
    scope.join_many(Term::atom("g"), &[r1.clone(), r2.clone()]).await.unwrap();
    assert_eq!(scope.get_local_members(&Term::atom("g")).len(), 3, "r1 twice, r2 once");
    assert_eq!(ex.eval(&format!("net_adm:ping('{}')", rust.name())).await, Term::atom("pong"));
    let e1 = beam_idle(&ex).await;
    ex.eval(&format!("B = {}, ok = pg:join(pg_basic, g, B)", pid_literal(&e1))).await;

    let all = vec![r1.clone(), r1.clone(), r2.clone(), e1.clone()];
    wait_equal("BEAM sees Rust members", &all, View::Beam(&ex, "pg_basic", "g")).await;
    wait_equal("Rust sees BEAM members", &all, View::Rust(&scope, Term::atom("g"))).await;
    assert_eq!(ex.eval("pg:get_local_members(pg_basic, g)").await, Term::list([Term::Pid(e1.clone())]));
    assert_eq!(sorted(scope.get_local_members(&Term::atom("g"))), sorted(vec![r1.clone(), r1.clone(), r2.clone()]));
    assert_eq!(scope.which_groups(), vec![Term::atom("g")]);

    // Leave once of two joins, then a Rust member exits, then a BEAM one.
    scope.leave(Term::atom("g"), &r1).await.unwrap();
    let want = vec![r1.clone(), r2.clone(), e1.clone()];
    wait_equal("BEAM after a leave", &want, View::Beam(&ex, "pg_basic", "g")).await;
    rust.exit(&r2, Term::atom("kill"));
    let want = vec![r1.clone(), e1.clone()];
    wait_equal("BEAM after a Rust exit", &want, View::Beam(&ex, "pg_basic", "g")).await;
    wait_equal("Rust after a Rust exit", &want, View::Rust(&scope, Term::atom("g"))).await;
    ex.eval(&format!("exit({}, kill)", pid_literal(&e1))).await;
    wait_equal("Rust after a BEAM exit", &[r1.clone()], View::Rust(&scope, Term::atom("g"))).await;
    assert_eq!(scope.leave(Term::atom("nope"), &r1).await, Err(erlnode::pg::PgError::NotJoined));

    // A scope started after the connection exists (discover via nodes()).
    let late = rust.pg_scope("pg_late").unwrap();
    late.join(Term::tuple([Term::atom("room"), Term::Int(1)]), &r1).await.unwrap();
    ex.eval("pg:start(pg_late)").await;
    wait_equal("late scope", &[r1.clone()], View::Beam(&ex, "pg_late", "{room, 1}")).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn monitors_in_both_directions() {
    init_log();
    let epmd = Epmd::start().await;
    let cookie = support::unique("cookie");
    let rust = support::rust_node("r", &cookie, epmd.port()).await;
    let ex = beam("e", &cookie, epmd.port(), false).await;
    let scope = rust.pg_scope("pg_mon").unwrap();
    ex.eval("pg:start(pg_mon)").await;
    assert_eq!(ex.eval(&format!("net_adm:ping('{}')", rust.name())).await, Term::atom("pong"));
    // Rust subscribes to the scope and to one group.
    let (state, mut all) = scope.monitor_scope().await.unwrap();
    assert!(state.is_empty());
    let (members, mut only_g) = scope.monitor(Term::atom("g")).await.unwrap();
    assert!(members.is_empty());
    // BEAM subscribes with its own pg:monitor_scope (OTP 25.1+), and through
    // erlnode's scope by a call to {Scope, RustNode}.
    ex.eval("{BRef, _} = pg:monitor_scope(pg_mon)").await;
    let remote = ex.eval(&format!("{{RRef, RState}} = gen_server:call({{pg_mon, '{}'}}, {{monitor, g}}), RState", rust.name())).await;
    assert_eq!(remote, Term::nil());

    let e1 = beam_idle(&ex).await;
    ex.eval(&format!("ok = pg:join(pg_mon, h, {})", pid_literal(&e1))).await;
    let r1 = idle(&rust);
    scope.join(Term::atom("g"), &r1).await.unwrap();

    let c = tokio::time::timeout(T, all.recv()).await.unwrap().unwrap();
    let d = tokio::time::timeout(T, all.recv()).await.unwrap().unwrap();
    let mut seen = vec![(c.group.clone(), c.pids.clone(), c.action), (d.group.clone(), d.pids.clone(), d.action)];
    seen.sort_by_key(|x| format!("{:?}", x.0));
    assert_eq!(seen, vec![(Term::atom("g"), vec![r1.clone()], PgAction::Join), (Term::atom("h"), vec![e1.clone()], PgAction::Join)]);
    let g = tokio::time::timeout(T, only_g.recv()).await.unwrap().unwrap();
    assert_eq!((g.group, g.pids, g.action), (Term::atom("g"), vec![r1.clone()], PgAction::Join));

    // The BEAM's own monitor sees the Rust join; the remote subscriber of
    // erlnode's scope gets pg's {Ref, join, Group, Pids}.
    let b = ex.eval("receive {BRef, join, g, P1} -> P1 after 30000 -> timeout end").await;
    assert_eq!(b, Term::list([Term::Pid(r1.clone())]));
    let rr = ex.eval("receive {RRef, join, g, P2} -> P2 after 30000 -> timeout end").await;
    assert_eq!(rr, Term::list([Term::Pid(r1.clone())]));

    rust.exit(&r1, Term::atom("kill"));
    let l = tokio::time::timeout(T, only_g.recv()).await.unwrap().unwrap();
    assert_eq!((l.action, l.pids), (PgAction::Leave, vec![r1.clone()]));
    let b = ex.eval("receive {BRef, leave, g, P3} -> P3 after 30000 -> timeout end").await;
    assert_eq!(b, Term::list([Term::Pid(r1.clone())]));
    let d = ex.eval(&format!("gen_server:call({{pg_mon, '{}'}}, {{demonitor, RRef}})", rust.name())).await;
    assert_eq!(d, Term::atom("ok"));
}

/// The acceptance scenario's cluster: BEAM nodes first, then Rust ones.
struct Cluster {
    beams: Vec<BeamNode>,
    rusts: Vec<(Node, PgScope)>,
    alive: Vec<bool>,
}

const SCOPE: &str = "pg_acc";
const GROUPS: usize = 5;

fn group(i: usize) -> Term {
    Term::atom(&format!("g{i}"))
}

impl Cluster {
    fn is_beam(&self, n: usize) -> bool {
        n < self.beams.len()
    }

    async fn spawn_member(&self, n: usize) -> Pid {
        if self.is_beam(n) {
            beam_idle(&self.beams[n]).await
        } else {
            idle(&self.rusts[n - self.beams.len()].0)
        }
    }

    async fn join(&self, n: usize, pid: &Pid, g: usize) {
        if self.is_beam(n) {
            let r = self.beams[n].eval(&format!("pg:join({SCOPE}, g{g}, {})", pid_literal(pid))).await;
            assert_eq!(r, Term::atom("ok"));
        } else {
            self.rusts[n - self.beams.len()].1.join(group(g), pid).await.expect("join");
        }
    }

    async fn leave(&self, n: usize, pid: &Pid, g: usize) {
        if self.is_beam(n) {
            let r = self.beams[n].eval(&format!("pg:leave({SCOPE}, g{g}, {})", pid_literal(pid))).await;
            assert_eq!(r, Term::atom("ok"));
        } else {
            self.rusts[n - self.beams.len()].1.leave(group(g), pid).await.expect("leave");
        }
    }

    async fn kill_member(&self, n: usize, pid: &Pid) {
        if self.is_beam(n) {
            self.beams[n].eval(&format!("exit({}, kill)", pid_literal(pid))).await;
        } else {
            self.rusts[n - self.beams.len()].0.exit(pid, Term::atom("kill"));
        }
    }

    /// Every group's members as node `n` sees them, sorted.
    async fn view(&self, n: usize) -> Vec<Vec<Pid>> {
        if self.is_beam(n) {
            let gs = (0..GROUPS).map(|g| format!("g{g}")).collect::<Vec<_>>().join(",");
            match self.beams[n].eval(&format!("[lists:sort(pg:get_members({SCOPE}, G)) || G <- [{gs}]]")).await {
                // Re-sorted in Rust's order: Erlang orders pids by serial first.
                Term::List(xs) => xs.iter().map(|x| sorted(pids(x))).collect(),
                other => panic!("view: {other:?}"),
            }
        } else {
            let s = &self.rusts[n - self.beams.len()].1;
            (0..GROUPS).map(|g| sorted(s.get_members(&group(g)))).collect()
        }
    }

    /// Waits (bounded) until every live node's view is `want`.
    async fn converge(&self, step: usize, want: &[Vec<Pid>]) {
        for n in (0..self.alive.len()).filter(|&n| self.alive[n]) {
            let deadline = tokio::time::Instant::now() + T;
            loop {
                let got = self.view(n).await;
                if got == want {
                    break;
                }
                assert!(tokio::time::Instant::now() < deadline, "step {step}: node {n} sees {got:?}, expected {want:?}");
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    }
}

/// One join of `pid` (on node `node`) to a group; a pid appears once
/// per join.
struct Membership {
    node: usize,
    pid: Pid,
    group: usize,
}

fn expected(ms: &[Membership]) -> Vec<Vec<Pid>> {
    (0..GROUPS).map(|g| sorted(ms.iter().filter(|m| m.group == g).map(|m| m.pid.clone()).collect())).collect()
}

/// Acceptance: two Elixir nodes and two erlnode nodes share a scope;
/// 1,000 joins, leaves and member exits from all four, a BEAM node
/// SIGKILLed at step 400 and an erlnode node shut down at step 700;
/// after every step all live nodes' `get_members` equal the model.
#[tokio::test(flavor = "multi_thread")]
async fn four_nodes_thousand_steps_converge() {
    init_log();
    let epmd = Epmd::start().await;
    let cookie = support::unique("cookie");
    let beams = vec![beam("ea", &cookie, epmd.port(), true).await, beam("eb", &cookie, epmd.port(), true).await];
    let mut rusts = Vec::new();
    for p in ["ra", "rb"] {
        let node = support::rust_node(p, &cookie, epmd.port()).await;
        let scope = node.pg_scope(SCOPE).unwrap();
        rusts.push((node, scope));
    }
    for b in &beams {
        assert!(matches!(b.eval(&format!("pg:start({SCOPE})")).await.as_tuple(), Some([ok, _]) if ok.is_atom("ok")));
        for (r, _) in &rusts {
            assert_eq!(b.eval(&format!("net_adm:ping('{}')", r.name())).await, Term::atom("pong"));
        }
    }
    assert_eq!(beams[0].eval(&format!("net_adm:ping('{}')", beams[1].name())).await, Term::atom("pong"));
    rusts[0].0.connect(rusts[1].0.name().as_str()).await.expect("rust nodes connect");
    let mut c = Cluster { beams, rusts, alive: vec![true; 4] };

    let mut rng = rand::rngs::StdRng::seed_from_u64(9);
    let mut ms: Vec<Membership> = Vec::new();
    let mut live_pids: Vec<(usize, Pid)> = Vec::new();
    let (mut joins, mut leaves, mut exits) = (0, 0, 0);
    for step in 0..1000 {
        if step == 400 {
            // SIGKILL a BEAM node: its members go with its scope's DOWN.
            c.beams[1].kill().await;
            c.alive[1] = false;
            ms.retain(|m| m.node != 1);
            live_pids.retain(|(n, _)| *n != 1);
        } else if step == 700 {
            c.rusts[1].0.shutdown().await;
            c.alive[3] = false;
            ms.retain(|m| m.node != 3);
            live_pids.retain(|(n, _)| *n != 3);
        } else {
            let live: Vec<usize> = (0..4).filter(|&n| c.alive[n]).collect();
            let roll = rng.gen_range(0..100);
            if roll < 50 || ms.is_empty() {
                let n = live[rng.gen_range(0..live.len())];
                let on_n: Vec<&Pid> = live_pids.iter().filter(|(m, _)| *m == n).map(|(_, p)| p).collect();
                let pid = if !on_n.is_empty() && rng.gen_bool(0.4) {
                    on_n[rng.gen_range(0..on_n.len())].clone()
                } else {
                    let p = c.spawn_member(n).await;
                    live_pids.push((n, p.clone()));
                    p
                };
                let g = rng.gen_range(0..GROUPS);
                c.join(n, &pid, g).await;
                ms.push(Membership { node: n, pid, group: g });
                joins += 1;
            } else if roll < 85 {
                let m = ms.swap_remove(rng.gen_range(0..ms.len()));
                c.leave(m.node, &m.pid, m.group).await;
                leaves += 1;
            } else {
                let (n, pid) = live_pids.swap_remove(rng.gen_range(0..live_pids.len()));
                c.kill_member(n, &pid).await;
                ms.retain(|m| m.pid != pid);
                exits += 1;
            }
        }
        c.converge(step, &expected(&ms)).await;
    }
    let total: usize = expected(&ms).iter().map(Vec::len).sum();
    println!("pg acceptance: 1000 steps: {joins} joins, {leaves} leaves, {exits} member exits, 1 BEAM node killed, 1 erlnode node shut down; {total} memberships at the end, all views equal after every step");
    assert!(joins > 300 && leaves > 150 && exits > 50, "the mix exercised every operation");
}

/// A hostile peer scope (a BEAM process speaking pg by hand) sends
/// malformed syncs, joins of pids it does not own (erlnode's, dead or
/// not), leaves of groups it never joined, unknown messages and calls:
/// each is dropped (calls answered), the scope keeps serving the hostile
/// peer's valid messages and a real BEAM scope, and nothing erlnode sends
/// crashes that BEAM scope.
#[tokio::test(flavor = "multi_thread")]
async fn hostile_peer_scope_is_dropped_and_scope_keeps_serving() {
    init_log();
    let epmd = Epmd::start().await;
    let cookie = support::unique("cookie");
    let rust = support::rust_node("r", &cookie, epmd.port()).await;
    let ex = beam("e", &cookie, epmd.port(), false).await;
    let scope = rust.pg_scope("pg_h").unwrap();
    ex.eval("{ok, RealScope} = pg:start(pg_h)").await;
    assert_eq!(ex.eval(&format!("net_adm:ping('{}')", rust.name())).await, Term::atom("pong"));
    let dead_rust = idle(&rust);
    rust.exit(&dead_rust, Term::atom("kill"));
    let live_rust = idle(&rust);
    scope.join(Term::atom("real"), &live_rust).await.unwrap();

    // The fake scope: a process that discovers erlnode's scope, then
    // sends what the test tells it to and reports what it receives.
    let fake = ex
        .eval(&format!(
            "Rust = '{}', Test = self(),
             Fake = spawn(fun() ->
                 {{pg_h, Rust}} ! {{discover, self()}},
                 Loop = fun L() -> receive {{send, M}} -> {{pg_h, Rust}} ! M, L(); {{call, R}} -> Test ! {{called, catch gen_server:call({{pg_h, Rust}}, R, 5000)}}, L(); stop -> ok; Other -> Test ! {{fake_got, Other}}, L() end end,
                 Loop() end),
             Fake",
            rust.name()
        ))
        .await;
    let fake = fake.as_pid().cloned().expect("fake pid");
    // erlnode answers a discover with a sync and its own discover.
    let got = ex.eval("receive {fake_got, {'$gen_cast', {sync, _, _}} = S} -> S after 30000 -> no_sync end").await;
    assert!(matches!(got.as_tuple(), Some([c, _]) if c.is_atom("$gen_cast")), "{got:?}");
    let got = ex.eval("receive {fake_got, {discover, P}} -> P after 30000 -> no_discover end").await;
    assert_eq!(got, Term::Pid(scope.pid().clone()));

    let dead = pid_literal(&dead_rust);
    let live = pid_literal(&live_rust);
    let hostile = [
        "{'$gen_cast', {sync, Fake, not_a_list}}".to_string(),
        "{'$gen_cast', {sync, Fake, [{g, [not_a_pid]}]}}".into(),
        "{'$gen_cast', {sync, Fake, [{g, [Fake]}, {g, [Fake]}]}}".into(),
        "{'$gen_cast', {sync, Fake, [{g, Fake}]}}".into(),
        "{'$gen_cast', {sync, Fake, [{g, [Fake]} | improper]}}".into(),
        "{'$gen_cast', {sync}}".into(),
        "{'$gen_cast', unknown_cast}".into(),
        format!("{{join, Fake, g, {dead}}}"),
        format!("{{join, Fake, g, [{live}]}}"),
        "{join, Fake, g, [self(), not_a_pid]}".into(),
        "{join, Fake, g, []}".into(),
        "{join, not_a_pid, g, Fake}".into(),
        "{leave, Fake, Fake, [never_joined]}".into(),
        "{leave, Fake, Fake, not_a_list}".into(),
        "{discover, not_a_pid}".into(),
        "{discover}".into(),
        "{'DOWN', make_ref(), process, Fake, boom}".into(),
        "garbage".into(),
        "<<\"binary garbage\">>".into(),
    ];
    for m in &hostile {
        ex.eval(&format!("Fake ! {{send, {m}}}, ok")).await;
    }
    // Unknown calls are answered, not left hanging.
    ex.eval("Fake ! {call, bogus_request}").await;
    let called = ex.eval("receive {called, C} -> C after 30000 -> no_answer end").await;
    assert_eq!(called, Term::tuple([Term::atom("error"), Term::atom("badarg")]));
    let called = ex.eval(&format!("gen_server:call({{pg_h, '{}'}}, {{join_local, g, self()}}, 5000)", rust.name())).await;
    assert!(matches!(called.as_tuple(), Some([e, _]) if e.is_atom("error")), "join_local of a foreign pid refused: {called:?}");

    // Still serving the (no longer) hostile peer: a valid join shows up,
    // including one of a pid of its own node that is already dead (pg.erl
    // keeps such a pid until its scope retracts it or goes down).
    ex.eval("Dead = spawn(fun() -> ok end), Fake ! {send, {join, Fake, ok_group, [Fake, Dead]}}, ok").await;
    let fake_dead = ex.eval("Dead").await.as_pid().cloned().unwrap();
    wait_equal("valid join after the garbage", &[fake.clone(), fake_dead.clone()], View::Rust(&scope, Term::atom("ok_group"))).await;
    assert!(scope.get_members(&Term::atom("g")).is_empty(), "nothing of the garbage was stored");
    let mut groups: Vec<String> = scope.which_groups().iter().map(|g| format!("{g:?}")).collect();
    groups.sort();
    assert_eq!(groups, vec![format!("{:?}", Term::atom("ok_group")), format!("{:?}", Term::atom("real"))]);
    // Still serving Rust joins and the real BEAM scope, which never crashed.
    wait_equal("real scope sees the Rust member", &[live_rust.clone()], View::Beam(&ex, "pg_h", "real")).await;
    let r2 = idle(&rust);
    scope.join(Term::atom("real"), &r2).await.unwrap();
    wait_equal("real scope sees a later join", &[live_rust.clone(), r2.clone()], View::Beam(&ex, "pg_h", "real")).await;
    assert_eq!(ex.eval("whereis(pg_h) =:= RealScope").await, Term::atom("true"), "the BEAM scope never restarted");

    // The hostile scope goes away: its members go with it.
    ex.eval("Fake ! stop").await;
    wait_equal("the fake scope's members are gone", &[], View::Rust(&scope, Term::atom("ok_group"))).await;
    assert_eq!(scope.which_groups(), vec![Term::atom("real")]);
}

/// `erlnode run --pg-join SCOPE/GROUP`: the node's erlnode_echo is a
/// member a BEAM node finds with :pg.get_members and calls.
#[tokio::test(flavor = "multi_thread")]
async fn cli_pg_join_puts_the_echo_in_a_group() {
    init_log();
    let epmd = Epmd::start().await;
    let cookie = support::unique("cookie");
    let name = format!("{}@127.0.0.1", support::unique("cli"));
    let cli = support::Erlnode::run(&name, &cookie, epmd.port(), &["--no-embedded-epmd", "--no-migration", "--pg-join", "pg_cli/workers", "--pg-join", "pg_cli/others"]).await;
    cli.wait_for_line("erlnode_echo joined the pg group", T).await.expect("the CLI joins");
    let ex = beam("e", &cookie, epmd.port(), true).await;
    ex.eval("pg:start(pg_cli)").await;
    assert_eq!(ex.eval(&format!("net_adm:ping('{name}')")).await, Term::atom("pong"));
    let deadline = tokio::time::Instant::now() + T;
    let member = loop {
        if let Term::List(xs) = ex.eval("pg:get_members(pg_cli, workers)").await {
            if let [Term::Pid(p)] = xs.as_slice() {
                break p.clone();
            }
        }
        assert!(tokio::time::Instant::now() < deadline, "the echo never appeared in pg_cli/workers");
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert_eq!(member.node.as_str(), name);
    assert_eq!(ex.eval("pg:get_members(pg_cli, others)").await, Term::list([Term::Pid(member.clone())]));
    let r = ex.eval_elixir(&format!("GenServer.call(hd(:pg.get_members(:pg_cli, :workers)), {{:hello, 42}})")).await;
    assert_eq!(r, Term::tuple([Term::atom("echo"), Term::tuple([Term::atom("hello"), Term::Int(42)])]));
}

/// As pg.erl, erlnode's scope discovers visible nodes only: a hidden
/// node's scope never hears from it (its state holds no erlnode peer),
/// while a visible node's scope sees the Rust member.
#[tokio::test(flavor = "multi_thread")]
async fn hidden_nodes_are_not_discovered() {
    init_log();
    let epmd = Epmd::start().await;
    let cookie = support::unique("cookie");
    let rust = support::rust_node("r", &cookie, epmd.port()).await;
    let scope = rust.pg_scope("pg_hid").unwrap();
    let r1 = idle(&rust);
    scope.join(Term::atom("g"), &r1).await.unwrap();
    let hidden = BeamNode::builder().prefix("h").cookie(&cookie).epmd_port(epmd.port()).hidden(true).start().await;
    hidden.eval("pg:start(pg_hid)").await;
    assert_eq!(hidden.eval(&format!("net_adm:ping('{}')", rust.name())).await, Term::atom("pong"));
    // A call through the scope travels the same link after any discover
    // the scope sent at nodeup; sys:get_state then runs behind anything
    // the hidden scope had received.
    let r = hidden.eval(&format!("{{Ref0, _}} = gen_server:call({{pg_hid, '{}'}}, {{monitor, g}}), ok", rust.name())).await;
    assert_eq!(r, Term::atom("ok"));
    let knows = hidden
        .eval(&format!(
            "S = sys:get_state(pg_hid), lists:any(fun(M) -> is_map(M) andalso lists:any(fun(K) -> is_pid(K) andalso node(K) =:= '{}' end, maps:keys(M)) end, tuple_to_list(S))",
            rust.name()
        ))
        .await;
    assert_eq!(knows, Term::atom("false"), "the hidden node's scope has no erlnode peer");
    assert_eq!(hidden.eval("pg:get_members(pg_hid, g)").await, Term::nil());
    // The same Rust scope does discover a visible node.
    let visible = beam("v", &cookie, epmd.port(), false).await;
    visible.eval("pg:start(pg_hid)").await;
    assert_eq!(visible.eval(&format!("net_adm:ping('{}')", rust.name())).await, Term::atom("pong"));
    wait_equal("visible node sees the member", &[r1.clone()], View::Beam(&visible, "pg_hid", "g")).await;
}
