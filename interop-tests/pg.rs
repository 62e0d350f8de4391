//! Issue 9: erlnode's `pg` scopes in clusters of real BEAM nodes
//! (`:pg` on the Erlang/Elixir side) and erlnode nodes.
//!
//! Views are compared as sorted member lists; every wait is a bounded
//! poll of the real state on every node.

use crate::global::{beam, init_log, pid_literal};
use crate::support::{self, BeamNode, Epmd};
use erlnode::pg::{PgAction, PgScope};
use erlnode::{Node, Pid, Term};
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
