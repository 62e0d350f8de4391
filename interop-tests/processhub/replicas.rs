//! Issue 14 with ProcessHub placing the accounts: replicas keep every
//! acknowledged deposit when hub members are killed (docs/replicas.md,
//! "Processes Horde or ProcessHub places").

use super::*;

const T: Duration = Duration::from_secs(90);

/// The Elixir account of these tests: `use Erlnode.Migratable` with
/// `use Erlnode.ProcessHub` (HotSwap's handover, and replicas), keyed by
/// the `name` its start argument carries, which is its child id.
const ACCOUNT_EX: &str = r#"
defmodule PhT.Account do
  use Erlnode.Migratable, type: "account"
  use Erlnode.ProcessHub, hub: :ph_rust, key: :name
  def init(args), do: {:ok, Erlnode.Examples.Account.new(args)}
  def handle_call({:deposit, s, q, a}, _from, st) do
    st = Erlnode.Examples.Account.deposit(st, s, q, a)
    {:reply, {:ok, st.balance}, st}
  end
  def handle_call(:get, _from, st), do: {:reply, st, st}
end
"#;

fn accounts() -> usize {
    std::env::var("PH_ACCOUNTS").ok().and_then(|v| v.parse().ok()).unwrap_or(200)
}

/// An Elixir member of `RHUB` (HotSwap with handover) running
/// `erlnode_ex` with `replicas: 1, :sync` for accounts (no placement on
/// join: ProcessHub places them) and `PhT.Account` loaded.
async fn replica_hub_node(prefix: &str, cookie: &str, epmd: u16, libs: &Libs) -> BeamNode {
    let mut b = BeamNode::builder().prefix(prefix).cookie(cookie).epmd_port(epmd).erlnode_ex(true).otp(libs.otp);
    for p in &libs.ebins {
        b = b.code_path(p);
    }
    let node = b.start().await;
    node.start_erlnode_ex_with_account_replicas().await;
    let r = node.eval_elixir("Application.ensure_all_started(:process_hub)").await;
    assert!(is_ok_tuple(&r), "{}: ProcessHub does not start: {r:?}", node.name());
    let code = format!("Code.compile_string(~S'''{ACCOUNT_EX}''') |> length()");
    assert_eq!(node.eval_elixir(&code).await, Term::Int(1), "PhT.Account compiles");
    start_rhub(&node).await;
    node
}

/// `erlnode run --processhub RHUB` hosting accounts with replicas,
/// connected to `peer`.
async fn replica_rust_member(cookie: &str, epmd: u16, peer: &str) -> (Erlnode, String) {
    let name = format!("{}@127.0.0.1", crate::support::unique("rphr"));
    let args = [
        "--no-embedded-epmd",
        "--no-rebalance-on-join",
        "--connect",
        peer,
        "--processhub",
        RHUB,
        "--processhub-child",
        "PhT.Account=account",
        "--replicas",
        "1",
        "--replica-mode",
        "sync",
    ];
    let node = Erlnode::run(&name, cookie, epmd, &args).await;
    node.wait_for_line("joined the ProcessHub hub", Duration::from_secs(30)).await.expect("the Rust member joins");
    (node, name)
}

async fn poll<F, Fut>(what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(), String>>,
{
    let deadline = Instant::now() + T;
    loop {
        match f().await {
            Ok(()) => return,
            Err(e) if Instant::now() > deadline => panic!("{what}: {e}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

/// Every account `a1..aN` is registered once, on a node other than
/// `gone`, and answers `:get` from `ex`.
async fn await_accounts(ex: &BeamNode, n: usize, gone: Option<&str>) {
    let gone = gone.unwrap_or("");
    poll(&format!("{}: all {n} accounts registered and answering", ex.name()), || async {
        let t = ex
            .eval_elixir(&format!(
                r#"Enum.count(1..{n}, fn i ->
                     case ProcessHub.get_pid(:{RHUB}, "a#{{i}}") do
                       pid when is_pid(pid) ->
                         Atom.to_string(node(pid)) != "{gone}" and
                           (try do is_map(GenServer.call(pid, :get, 5_000)) catch :exit, _ -> false end)
                       _ -> false
                     end
                   end)"#
            ))
            .await;
        if t.as_int() == Some(n as i64) { Ok(()) } else { Err(format!("{t:?} answering")) }
    })
    .await;
}

/// Every account's replica is held once, across the stores of `ex`'s
/// connected nodes (a dead owner's entry left behind by a restart that
/// did not take it would count twice).
async fn await_replicated(ex: &BeamNode, n: usize) {
    poll("every account replicated once", || async {
        let t = ex
            .eval_elixir(
                r#"for nd <- [node() | Node.list()], reduce: 0 do
                     acc ->
                       held = try do Erlnode.Replica.held(nd) catch _, _ -> [] end
                       acc + Enum.count(held, fn {name, _, _, _} -> String.starts_with?(Atom.to_string(name), "erlnode_processhub:ph_rust:") end)
                   end"#,
            )
            .await;
        if t.as_int() == Some(n as i64) { Ok(()) } else { Err(format!("{t:?} replicas held, want {n}")) }
    })
    .await;
}



/// The balances of `ids`, read from `ex` (`-1`: no answer).
async fn balances(ex: &BeamNode, ids: &[usize]) -> Vec<i64> {
    let list = ids.iter().map(|i| i.to_string()).collect::<Vec<_>>().join(",");
    let t = ex
        .eval_elixir(&format!(
            r#"for i <- [{list}] do
                 try do
                   GenServer.call(ProcessHub.get_pid(:{RHUB}, "a#{{i}}"), :get, 5_000) |> Map.fetch!(:balance)
                 catch _, _ -> -1
                 end
               end"#
        ))
        .await;
    let Term::List(v) = t else { panic!("balances: {t:?}") };
    v.iter().map(|b| b.as_int().unwrap_or(-1)).collect()
}

/// Two Elixir and two Rust members of a HotSwap hub, every account with
/// `replicas: 1, :sync`, a sender calling 50 accounts throughout. A Rust
/// member is killed with SIGKILL, then an Elixir one: ProcessHub restarts
/// their children on the others, each from its latest replica (nothing
/// was handed over), so every account exists once and holds every
/// deposit acknowledged to the sender. Without replicas the restarted
/// children start from their specs (`processhub_elixir_leaves_to_rust_then_rust_killed`).
#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs PROCESSHUB_LIBS: make test-processhub PROCESSHUB_LIBS=DIR"]
async fn processhub_replicas_keep_every_acknowledged_deposit_when_members_are_killed() {
    let Some(libs) = processhub_libs() else { return };
    let n = accounts();
    let epmd = Epmd::start().await;
    let cookie = crate::support::unique("phrc");
    let mut e1 = replica_hub_node("phre1", &cookie, epmd.port(), &libs).await;
    let mut e2 = replica_hub_node("phre2", &cookie, epmd.port(), &libs).await;
    assert!(e1.eval(&format!("net_kernel:connect_node('{}')", e2.name())).await.is_atom("true"));
    let (mut r1, n1) = replica_rust_member(&cookie, epmd.port(), e1.name()).await;
    let (mut r2, n2) = replica_rust_member(&cookie, epmd.port(), e2.name()).await;
    let all = [e1.name(), e2.name(), n1.as_str(), n2.as_str()];
    for ex in [&e1, &e2] {
        await_rhub_nodes(ex, &all).await;
    }
    // Replica placement needs every node in every node's account ring.
    let sorted = {
        let mut v: Vec<String> = all.iter().map(|s| format!("'{s}'")).collect();
        v.sort();
        v.join(", ")
    };
    for ex in [&e1, &e2] {
        poll(&format!("{} sees four account hosts", ex.name()), || async {
            let t = ex.eval(&format!("lists:sort('Elixir.Erlnode.Migration':members(<<\"account\">>)) =:= [{sorted}]")).await;
            if t.is_atom("true") { Ok(()) } else { Err(format!("{t:?}")) }
        })
        .await;
    }
    let r = e1
        .eval_elixir(&format!(
            r#"specs = for i <- 1..{n}, do: %{{id: "a#{{i}}", start: {{PhT.Account, :start_link, [%{{name: "a#{{i}}", balance: i}}]}}}}
               r = ProcessHub.start_children(:{RHUB}, specs, awaitable: true, timeout: 30_000) |> ProcessHub.await()
               {{r.status, length(r.errors)}}"#
        ))
        .await;
    assert_eq!(r, Term::tuple([Term::atom("ok"), Term::Int(0)]), "start_children of {n}");
    await_accounts(&e1, n, None).await;
    let on: Vec<String> = registry_nodes(&e1, RHUB, &ids("a", n)).await;
    let count = |node: &str| on.iter().filter(|x| *x == node).count();
    println!("placement: {:?}", all.iter().map(|m| (m.to_string(), count(m))).collect::<Vec<_>>());
    assert!(all.iter().all(|m| count(m) > 0), "accounts on all four members");
    await_replicated(&e1, n).await;
    let sample: Vec<usize> = (1..=n).step_by((n / 50).max(1)).take(50).collect();
    crate::support::sender::start(&e1, "phsender", &sample, &format!("GenServer.call(ProcessHub.get_pid(:{RHUB}, name) || exit(:no_pid), msg, 5_000)")).await;

    let killed_rust = count(&n1);
    r1.kill().await;
    await_rhub_nodes(&e1, &[e1.name(), e2.name(), n2.as_str()]).await;
    await_accounts(&e1, n, Some(&n1)).await;
    await_replicated(&e1, n).await;
    let restored = |lines: Vec<String>| lines.iter().filter(|l| l.contains("started from its replica")).count();
    println!("after SIGKILL of {n1} ({killed_rust} accounts): {} restored on {n2}, {} on the Elixir members", restored(r2.output()), restored(e1.output()) + restored(e2.output()));

    let e2_name = e2.name().to_string();
    e2.kill().await;
    await_rhub_nodes(&e1, &[e1.name(), n2.as_str()]).await;
    await_accounts(&e1, n, Some(&e2_name)).await;
    let on_end = registry_nodes(&e1, RHUB, &ids("a", n)).await;
    assert!(on_end.iter().all(|x| x == e1.name() || *x == n2), "every account on a live member: {on_end:?}");

    let sent = crate::support::sender::stop(&e1, "phsender").await;
    let got = balances(&e1, &sample).await;
    let (mut exact, mut doubt_ok, mut wrong, mut acked_all, mut doubt_all) = (0, 0, vec![], 0, 0);
    for (i, b) in sample.iter().zip(&got) {
        let (acked, refused, doubt) = sent.get(&(*i as i64)).copied().unwrap_or((0, 0, 0));
        acked_all += acked;
        doubt_all += doubt;
        let want = *i as i64 + acked;
        if *b == want {
            exact += 1;
        } else if *b > want && *b <= want + doubt {
            doubt_ok += 1;
        } else {
            wrong.push((*i, *b, want, refused, doubt));
        }
    }
    let (on_rust, on_ex) = (restored(r2.output()), restored(e1.output()) + restored(e2.output()));
    println!(
        "ProcessHub replicas under SIGKILL: {acked_all} deposits acknowledged, {doubt_all} in doubt; {exact} of {} accounts exactly at the oracle, \
         {doubt_ok} within calls in doubt, {} wrong: {wrong:?}; restored from replicas: {on_rust} on {n2}, {on_ex} on the Elixir members",
        sample.len(),
        wrong.len()
    );
    assert!(on_rust > 0 && on_ex > 0, "children started from replicas on both kinds of member ({on_rust} Rust, {on_ex} Elixir)");
    assert!(wrong.is_empty(), "accounts whose state lost acknowledged deposits: (id, got, oracle, refused, in doubt) {wrong:?}");

    // A third Elixir member joins: ProcessHub moves it its share from the
    // Elixir member (the old `use Erlnode.ProcessHub` process hands its
    // state over and forgets its replicas) and from the Rust one, and the
    // new processes replicate what they adopted.
    let mut e3 = replica_hub_node("phre3", &cookie, epmd.port(), &libs).await;
    assert!(e3.eval(&format!("net_kernel:connect_node('{}')", e1.name())).await.is_atom("true"));
    let three = [e1.name(), n2.as_str(), e3.name()];
    await_rhub_nodes(&e1, &three).await;
    await_rhub_nodes(&e3, &three).await;
    poll("accounts moved to the joining member", || async {
        let on = registry_nodes(&e1, RHUB, &ids("a", n)).await;
        let moved = on.iter().filter(|x| *x == e3.name()).count();
        if moved > 0 && on.iter().all(|x| three.contains(&x.as_str())) { Ok(()) } else { Err(format!("{moved} on {}", e3.name())) }
    })
    .await;
    await_accounts(&e3, n, None).await;
    let after_join = balances(&e3, &sample).await;
    assert_eq!(after_join, got, "balances after the moves to the joining member");
    await_replicated(&e1, n).await;
    // ... and the copies hold the moved states, not the joiner's initial ones.
    let list = sample.iter().map(|i| i.to_string()).collect::<Vec<_>>().join(",");
    poll("the replicas hold the moved balances", || async {
        let t = e3
            .eval_elixir(&format!(
                r#"for i <- [{list}] do
                     case Erlnode.Replica.Placed.fetch(Erlnode.Replica.Placed.processhub_name(:{RHUB}, "a#{{i}}")) do
                       {{_seq, {{:"$erlnode_vsn", _, hs}}}} -> hs.balance
                       {{_seq, hs}} -> hs.balance
                       nil -> -1
                     end
                   end"#
            ))
            .await;
        let held: Vec<i64> = match &t { Term::List(v) => v.iter().map(|b| b.as_int().unwrap_or(-2)).collect(), _ => vec![] };
        if held == got { Ok(()) } else { Err(format!("replicas hold {held:?}, the accounts {got:?}")) }
    })
    .await;
    let moved = registry_nodes(&e1, RHUB, &ids("a", n)).await.iter().filter(|x| *x == e3.name()).count();
    println!("{} joined: {moved} accounts moved to it with their states, every account replicated once", e3.name());
    for ex in [&e1, &e3] {
        let errors: Vec<String> = ex.output().into_iter().filter(|l| l.contains("[error]")).collect();
        assert!(errors.is_empty(), "{}: errors logged: {errors:?}", ex.name());
    }
    r2.kill().await;
    e1.stop().await;
    e3.stop().await;
}
