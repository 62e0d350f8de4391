//! erlnode as a member of a real `Horde.DynamicSupervisor` (Horde 0.10.0):
//! two Elixir nodes and `erlnode run --horde-supervisor` in one
//! `members: :auto` supervisor with `process_redistribution: :active`.
//! Accounts are started from Elixir; the Rust node's share runs as Rust
//! `Account`s registered in the same Horde registry, so every account is
//! reached by `{:via, Horde.Registry, {HIReg, name}}` from every node.
//! `make test-horde HORDE_LIBS=DIR` runs these `#[ignore]`d tests.

use super::registry::{horde_libs, poll};
use crate::support::{self, BeamNode, Epmd, Erlnode};
use erlnode::horde::supervisor::{Distribution, Member, Status};
use erlnode::Term;
use std::path::PathBuf;
use std::time::Duration;

const REG: &str = "HIReg";
const SUP: &str = "HISup";
const T: Duration = Duration::from_secs(90);

fn accounts() -> usize {
    std::env::var("HORDE_SUP_ACCOUNTS").ok().and_then(|v| v.parse().ok()).unwrap_or(300)
}

/// An Elixir node running, as an application, the registry `REG` and the
/// supervisor `SUP` (members :auto, redistribution :active, `strategy`),
/// and `HISup.Account`, whose `start_link(%{name: n})` runs an account
/// registered as `n` in `REG`. With `handoff`, the account is `use
/// Erlnode.Migratable` + `use Erlnode.Horde` and the tree ends with
/// `Erlnode.Horde.Drain`; without, it is the plain Horde child of Horde's
/// guide (state lost on every move).
async fn horde_node(prefix: &str, cookie: &str, epmd: u16, ebins: &[PathBuf], strategy: &str, handoff: bool) -> BeamNode {
    horde_node_with(prefix, cookie, epmd, ebins, strategy, handoff, false).await
}

/// [`horde_node`]; with `replicas`, `erlnode_ex` runs first with
/// `replicas: 1, :sync` for accounts (no placement on join: Horde places
/// the accounts), so the handoff accounts keep replicas.
async fn horde_node_with(prefix: &str, cookie: &str, epmd: u16, ebins: &[PathBuf], strategy: &str, handoff: bool, replicas: bool) -> BeamNode {
    let mut b = BeamNode::builder().prefix(prefix).cookie(cookie).epmd_port(epmd).erlnode_ex(true).otp(25);
    for p in ebins {
        b = b.code_path(p);
    }
    let node = b.start().await;
    if replicas {
        node.start_erlnode_ex_with_account_replicas().await;
    }
    let account = if handoff {
        format!(
            r#"defmodule HISup.Account do
                 use Erlnode.Migratable, type: "account"
                 use Erlnode.Horde, supervisor: {SUP}, registry: {REG}
                 def init(args), do: {{:ok, Erlnode.Examples.Account.new(args)}}
                 def handle_call({{:deposit, s, q, a}}, _from, st) do
                   st = Erlnode.Examples.Account.deposit(st, s, q, a)
                   {{:reply, {{:ok, st.balance}}, st}}
                 end
                 def handle_call(:get, _from, st), do: {{:reply, st, st}}
               end"#
        )
    } else {
        format!(
            r#"defmodule HISup.Account do
                 def start_link(%{{name: n}} = args),
                   do: GenServer.start_link(Erlnode.Examples.Account, args, name: {{:via, Horde.Registry, {{{REG}, n}}}})
               end"#
        )
    };
    let drain = if handoff { format!("[{{Erlnode.Horde.Drain, supervisor: {SUP}}}]") } else { "[]".to_string() };
    let r = node
        .eval_elixir(&format!(
            r#"{{:ok, _}} = Application.ensure_all_started(:horde)
               {account}
               defmodule HITest.App do
                 use Application
                 def start(_, _) do
                   children = [
                     {{Horde.Registry, name: {REG}, keys: :unique, members: :auto}},
                     {{Horde.DynamicSupervisor, name: {SUP}, strategy: :one_for_one, members: :auto,
                       process_redistribution: :active, distribution_strategy: {strategy}}}
                   ] ++ {drain}
                   Supervisor.start_link(children, strategy: :one_for_one)
                 end
               end
               :ok = :application.load({{:application, :hitest, [description: 'horde test', vsn: '1', modules: [],
                       registered: [], applications: [:kernel, :stdlib, :elixir, :horde], mod: {{HITest.App, []}}]}})
               case Application.ensure_all_started(:hitest) do
                 {{:ok, _}} -> :ok
                 other -> other
               end"#
        ))
        .await;
    assert_eq!(r, Term::atom("ok"), "{}: Horde does not start", node.name());
    node
}

/// `erlnode run --horde-supervisor SUP`, connected to `peer`.
async fn rust_member(cookie: &str, epmd: u16, peer: &str, extra: &[&str]) -> (Erlnode, String) {
    let name = format!("{}@127.0.0.1", support::unique("hsr"));
    // Replicas need the migration service (its type members place them).
    let migration = if extra.contains(&"--replicas") {
        "--no-rebalance-on-join"
    } else {
        "--no-migration"
    };
    let mut args = vec![
        "--no-embedded-epmd",
        migration,
        "--connect",
        peer,
        "--horde-supervisor",
        SUP,
        "--horde-child",
        "HISup.Account=account",
        "--horde-register-in",
        REG,
        "--horde-redistribution",
        "active",
    ];
    args.extend_from_slice(extra);
    let node = Erlnode::run(&name, cookie, epmd, &args).await;
    node.wait_for_line("member of the Horde supervisor", T).await.expect("the Rust member starts");
    (node, name)
}

/// The members' statuses as `ex`'s CRDT holds them.
async fn statuses(ex: &BeamNode) -> Vec<Member> {
    let t = ex
        .eval_elixir(&format!(
            r#"DeltaCrdt.to_map({SUP}.Crdt)
               |> Enum.flat_map(fn {{{{:member_node_info, _}}, m}} -> [m]; _ -> [] end)"#
        ))
        .await;
    match t {
        Term::List(v) => v.iter().filter_map(Member::from_term).collect(),
        _ => vec![],
    }
}

async fn await_alive(ex: &BeamNode, node: &str) {
    let want = Term::tuple([Term::atom(&format!("Elixir.{SUP}")), Term::atom(node)]);
    poll(&format!("{}: {node} alive", ex.name()), T, || async {
        let s = statuses(ex).await;
        match s.iter().find(|m| m.name == want) {
            Some(m) if m.status == Status::Alive => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
}

/// Polls until `node` runs some of the children and every entry is
/// consistent, as `ex` sees it.
async fn await_share_on(ex: &BeamNode, node: &str, what: &str) {
    poll(what, T, || async {
        let (counts, consistent) = placement(ex).await;
        match counts.iter().find(|(n, _)| n == node) {
            Some((_, k)) if *k > 0 && consistent => Ok(()),
            _ => Err(format!("{counts:?}")),
        }
    })
    .await;
}

/// The Elixir members' log lines above `[info]`, on stderr.
fn print_elixir_logs(nodes: &[&BeamNode]) {
    for ex in nodes {
        for l in ex.output().iter().filter(|l| !l.trim().is_empty() && !l.contains("[info]")) {
            eprintln!("  {}: {l}", ex.name());
        }
    }
}

/// Starts accounts `a1..aN` (balance i), alternately from `e1` and `e2`.
async fn start_accounts(e1: &BeamNode, e2: &BeamNode, n: usize) {
    for (ex, parity) in [(e1, 1), (e2, 0)] {
        let r = ex
            .try_eval_elixir(&format!(
                r#"for i <- 1..{n}, rem(i, 2) == {parity} do
                     spec = %{{id: "a#{{i}}", start: {{HISup.Account, :start_link, [%{{name: "a#{{i}}", balance: i}}]}}}}
                     case Horde.DynamicSupervisor.start_child({SUP}, spec) do
                       {{:ok, _}} -> :ok
                       other -> exit({{:start_failed, i, other}})
                     end
                   end
                   :ok"#
            ))
            .await;
        if r.is_err() {
            // What the Elixir members logged, for the failure message.
            print_elixir_logs(&[e1, e2]);
        }
        assert_eq!(r, Ok(Term::atom("ok")), "{}: starting accounts", ex.name());
    }
}

/// `{node => count}` of the supervisor's children, from `ex`'s CRDT:
/// `[{node, count}]` sorted, and whether every entry's pid is alive on
/// the member it names.
async fn placement(ex: &BeamNode) -> (Vec<(String, i64)>, bool) {
    let t = ex
        .eval_elixir(&format!(
            r#"ps = DeltaCrdt.to_map({SUP}.Crdt) |> Enum.flat_map(fn {{{{:process, _}}, {{{{_, n}}, _, pid}}}} -> [{{n, pid}}]; _ -> [] end)
               consistent = Enum.all?(ps, fn {{n, pid}} -> node(pid) == n end)
               counts = ps |> Enum.frequencies_by(fn {{n, _}} -> Atom.to_string(n) end) |> Enum.sort()
               dead = Enum.reject(ps, fn {{n, pid}} -> :rpc.call(n, Process, :alive?, [pid], 5_000) == true end)
               {{counts, consistent and dead == []}}"#
        ))
        .await;
    let Some([Term::List(counts), ok]) = t.as_tuple() else { panic!("placement: {t:?}") };
    let counts = counts
        .iter()
        .map(|c| match c.as_tuple() {
            Some([n, k]) => (support::binaries_to_strings(&Term::List(vec![n.clone()]))[0].clone(), k.as_int().unwrap()),
            _ => panic!("{c:?}"),
        })
        .collect();
    (counts, ok.is_atom("true"))
}

/// The specs and owners of all children per `ex`'s CRDT, checked against
/// erlnode's own `UniformDistribution` over the alive members.
async fn placed_as_the_ring_says(ex: &BeamNode) -> usize {
    let members = statuses(ex).await;
    let t = ex
        .eval_elixir(&format!(r#"DeltaCrdt.to_map({SUP}.Crdt) |> Enum.flat_map(fn {{{{:process, _}}, {{m, spec, _}}}} -> [{{m, spec}}]; _ -> [] end)"#))
        .await;
    let Term::List(entries) = t else { panic!("{t:?}") };
    let mut checked = 0;
    for e in &entries {
        let Some([member, spec]) = e.as_tuple() else { panic!("{e:?}") };
        let chosen = Distribution::Uniform.choose(spec, &members).expect("a member");
        assert_eq!(&chosen, member, "child {spec:?} runs on {member:?}, the ring says {chosen:?}");
        checked += 1;
    }
    checked
}

/// `GenServer.call({:via, Horde.Registry, {REG, "aI"}}, :get)` for each
/// `i` in `ids` from `ex`: the balances.
async fn balances(ex: &BeamNode, ids: &[usize]) -> Result<Vec<i64>, String> {
    let list = ids.iter().map(|i| i.to_string()).collect::<Vec<_>>().join(",");
    let t = ex
        .try_eval_elixir(&format!(
            r#"for i <- [{list}] do
                 GenServer.call({{:via, Horde.Registry, {{{REG}, "a#{{i}}"}}}}, :get, 5_000).balance
               end"#
        ))
        .await?;
    match t {
        Term::List(v) => Ok(v.iter().map(|x| x.as_int().unwrap_or(-1)).collect()),
        other => Err(format!("{other:?}")),
    }
}

/// The names registered in `REG` on `ex`, and how many distinct ones.
async fn registered(ex: &BeamNode) -> (i64, i64) {
    let t = ex
        .eval_elixir(&format!(
            r#"keys = Horde.Registry.select({REG}, [{{{{:"$1", :_, :_}}, [], [:"$1"]}}])
               {{length(keys), keys |> Enum.uniq() |> length()}}"#
        ))
        .await;
    match t.as_tuple() {
        Some([a, b]) => (a.as_int().unwrap(), b.as_int().unwrap()),
        _ => panic!("{t:?}"),
    }
}

/// Every account once on the Elixir nodes' view: `n` children, `n`
/// names, each reachable with its balance.
async fn await_all_accounts(ex: &BeamNode, n: usize, gone: Option<&str>) {
    poll(&format!("{}: {n} children, none on {gone:?}", ex.name()), T, || async {
        let (counts, consistent) = placement(ex).await;
        let total: i64 = counts.iter().map(|(_, k)| k).sum();
        let on_gone = counts.iter().any(|(node, _)| Some(node.as_str()) == gone);
        let (names, distinct) = registered(ex).await;
        if total == n as i64 && consistent && !on_gone && names == n as i64 && distinct == n as i64 {
            Ok(())
        } else {
            Err(format!(
                "placement {counts:?} consistent {consistent}, registered {names} ({distinct} distinct); unnamed: {}; relinquished: {}; twice: {}",
                unnamed(ex).await,
                relinquished(ex).await,
                twice(ex).await
            ))
        }
    })
    .await;
}

/// Records, on `ex`, when its registry was asked to register a key, when
/// it dropped keys from its CRDT and when it was given new members (host
/// clock, so the nodes' records compare), for
/// [`dropped_after_registering`].
///
/// Why: Horde 0.10.0's registry drops every key of a member it removes,
/// by key. When a child of a crashed member restarts elsewhere and
/// registers before a registry has handled the member's removal, that
/// drop removes the new registration too and the child runs unnamed
/// (elixir-horde/horde pull request 291; the same happens with an Elixir
/// member killed). Only such children may be left unnamed after a crash.
async fn trace_registry_drops(ex: &BeamNode) {
    let code = format!(
        r#"me = self()
           spawn(fn ->
             :ets.new(:hi_reg_trace, [:named_table, :public, :bag])
             send(me, :ready)
             receive do :stop -> :ok end
           end)
           receive do :ready -> :ok end
           h = fn
             {{:trace, _, :receive, {{:"$gen_call", _, {{:register, key, _, pid}}}}}}, n ->
               :ets.insert(:hi_reg_trace, {{{{:register, key}}, pid, :os.system_time(:microsecond)}})
               n
             {{:trace, _, :receive, {{:"$gen_call", _, {{:set_members, _}}}}}}, n ->
               :ets.insert(:hi_reg_trace, {{:set_members, :os.system_time(:microsecond)}})
               n
             {{:trace, _, :call, {{DeltaCrdt, :drop, [_, keys, _]}}}}, n ->
               t = :os.system_time(:microsecond)
               for {{:key, k}} <- keys, do: :ets.insert(:hi_reg_trace, {{{{:drop, k}}, node(), t}})
               n
             _, n -> n
           end
           {{:ok, _}} = :dbg.tracer(:process, {{h, 0}})
           {{:ok, _}} = :dbg.p(Process.whereis({REG}), [:c, :r])
           {{:ok, _}} = :dbg.tpl(DeltaCrdt, :drop, 3, [])
           :ok"#
    );
    assert_eq!(ex.eval_elixir(&code).await, Term::atom("ok"), "{}: registry trace", ex.name());
}

/// The children `ex`'s supervisor runs without a registry name, each as
/// `(name, true)` when some node in `exs` (all traced with
/// [`trace_registry_drops`]) dropped the key after the child asked its
/// node's registry to register it: Horde's own race, not a lost write.
async fn dropped_after_registering(ex: &BeamNode, exs: &[&BeamNode]) -> Vec<(String, bool, String)> {
    let t = ex
        .eval_elixir(&format!(
            r#"keys = Horde.Registry.select({REG}, [{{{{:"$1", :_, :_}}, [], [:"$1"]}}]) |> MapSet.new()
               DeltaCrdt.to_map({SUP}.Crdt)
               |> Enum.flat_map(fn {{{{:process, _}}, {{{{_, n}}, %{{start: {{_, _, [%{{name: name}}]}}}}, pid}}}} -> [{{name, n, pid}}]; _ -> [] end)
               |> Enum.reject(fn {{name, _, _}} -> MapSet.member?(keys, name) end)
               |> Enum.map(fn {{name, n, pid}} ->
                    traced = fn x, k -> case :rpc.call(x, :ets, :lookup, [:hi_reg_trace, k], 5_000) do l when is_list(l) -> l; _ -> [] end end
                    at = for {{_, ^pid, t}} <- traced.(n, {{:register, name}}), do: t
                    drops = Enum.flat_map([{}], fn x -> traced.(x, {{:drop, name}}) end)
                    race = at != [] and Enum.any?(drops, fn {{_, _, t}} -> t > Enum.min(at) end)
                    members = Enum.map([{}], fn x -> {{x, traced.(x, :set_members)}} end)
                    {{name, race, inspect({{pid, at, drops, members}})}}
                  end)"#,
            exs.iter().map(|e| format!(r#":"{}""#, e.name())).collect::<Vec<_>>().join(", "),
            exs.iter().map(|e| format!(r#":"{}""#, e.name())).collect::<Vec<_>>().join(", ")
        ))
        .await;
    let Term::List(l) = t else { panic!("{}: {t:?}", ex.name()) };
    l.iter()
        .map(|e| match e.as_tuple() {
            Some([name, race, detail]) => {
                let name = support::binaries_to_strings(&Term::List(vec![name.clone()]))[0].clone();
                let detail = support::binaries_to_strings(&Term::List(vec![detail.clone()]))[0].clone();
                (name, race.is_atom("true"), detail)
            }
            _ => panic!("{e:?}"),
        })
        .collect()
}

/// [`await_all_accounts`] after a member crashed: `n` children, placed,
/// none on `gone`, every one named except those Horde's own race left
/// unnamed ([`dropped_after_registering`]), which are returned.
async fn await_all_accounts_after_crash(ex: &BeamNode, exs: &[&BeamNode], n: usize, gone: &str, gone_children: &[String]) -> Vec<String> {
    poll(&format!("{}: {n} children after the crash of {gone}", ex.name()), T, || async {
        let (counts, consistent) = placement(ex).await;
        let total: i64 = counts.iter().map(|(_, k)| k).sum();
        let on_gone = counts.iter().any(|(node, _)| node == gone);
        let (names, distinct) = registered(ex).await;
        let left = dropped_after_registering(ex, exs).await;
        let unexplained: Vec<(&String, &String)> = left.iter().filter(|(_, race, _)| !race).map(|(k, _, d)| (k, d)).collect();
        // Horde's own duplicate (docs/horde.md, "A dead member's child
        // started twice"): allowed only in its exact shape, a child of the
        // dead member running twice on one Elixir member, one copy holding
        // the name, and at most two such children.
        let dups = duplicates(ex).await;
        let elixir: Vec<&str> = exs.iter().map(|e| e.name()).collect();
        let horde_own = |(name, nodes, named): &(String, Vec<String>, i64)| {
            gone_children.contains(name) && nodes.len() == 2 && nodes[0] == nodes[1] && elixir.contains(&nodes[0].as_str()) && *named == 1
        };
        let allowed: Vec<&(String, Vec<String>, i64)> = dups.iter().filter(|d| horde_own(d)).collect();
        let extra = allowed.len() as i64;
        let other_dups = dups.len() > allowed.len() || extra > 2;
        if total == n as i64 + extra && !other_dups && extra > 0 {
            eprintln!("{}: Horde started a dead member's child twice on one Elixir member, allowed: {allowed:?}", ex.name());
        }
        if total == n as i64 + extra && !other_dups && consistent && !on_gone && distinct == names && names + left.len() as i64 == n as i64 && unexplained.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "placement {counts:?} consistent {consistent}, registered {names} ({distinct} distinct); unnamed, not by Horde's race: {unexplained:?}; unnamed: {}; relinquished: {}; twice: {}",
                unnamed(ex).await,
                relinquished(ex).await,
                twice(ex).await
            ))
        }
    })
    .await;
    dropped_after_registering(ex, exs).await.into_iter().map(|(k, _, d)| format!("{k} {d}")).collect()
}

/// The names of the children the CRDT places on `node`.
async fn children_on(ex: &BeamNode, node: &str) -> Vec<String> {
    let t = ex
        .eval_elixir(&format!(
            r#"DeltaCrdt.to_map({SUP}.Crdt)
               |> Enum.flat_map(fn {{{{:process, _}}, {{{{_, n}}, %{{start: {{_, _, [%{{name: name}}]}}}}, _}}}} when n == :"{node}" -> [name]; _ -> [] end)"#
        ))
        .await;
    support::binaries_to_strings(&t)
}

/// The Elixir query behind [`duplicates`] and [`twice`]: per account the
/// CRDT lists more than once, `{name, [{child_id, member_node, pid}],
/// pids_the_registry_holds_the_name_with}`.
fn copies_query() -> String {
    format!(
        r#"DeltaCrdt.to_map({SUP}.Crdt)
           |> Enum.flat_map(fn {{{{:process, id}}, {{{{_, n}}, %{{start: {{_, _, [%{{name: name}}]}}}}, pid}}}} -> [{{name, id, n, pid}}]; _ -> [] end)
           |> Enum.group_by(fn {{name, _, _, _}} -> name end, fn {{_, id, n, pid}} -> {{id, n, pid}} end)
           |> Enum.filter(fn {{_, l}} -> length(l) > 1 end)
           |> Enum.map(fn {{name, l}} -> {{name, l, Horde.Registry.lookup({REG}, name) |> Enum.map(fn {{p, _}} -> p end)}} end)"#
    )
}

/// Accounts the CRDT lists more than once: the name, the member of each
/// copy, and how many of the copies hold the name in the registry.
async fn duplicates(ex: &BeamNode) -> Vec<(String, Vec<String>, i64)> {
    let t = ex.eval_elixir(&copies_query()).await;
    let Term::List(items) = t else { panic!("duplicates: {t:?}") };
    items
        .iter()
        .map(|i| match i.as_tuple() {
            Some([Term::Binary(name), Term::List(copies), Term::List(held)]) => {
                let mut nodes = vec![];
                let mut named = 0;
                for c in copies {
                    let Some([_, Term::Atom(n), pid]) = c.as_tuple() else { panic!("duplicates: {c:?}") };
                    nodes.push(n.as_str().to_string());
                    named += held.contains(pid) as i64;
                }
                (String::from_utf8_lossy(name).into_owned(), nodes, named)
            }
            _ => panic!("duplicates: {i:?}"),
        })
        .collect()
}

/// Children relinquished (`{nil, spec}`) that nobody started, with the
/// member `ex`'s Horde would choose for them now and its member view.
async fn relinquished(ex: &BeamNode) -> String {
    let t = ex
        .try_eval_elixir(&format!(
            r#"st = :sys.get_state({SUP})
               members = Map.take(st.members_info, Map.keys(st.members)) |> Map.values()
               view = Enum.map(members, fn m -> {{elem(m.name, 1), m.status}} end)
               nils = DeltaCrdt.to_map({SUP}.Crdt)
                 |> Enum.flat_map(fn {{{{:process, _}}, {{nil, %{{start: {{_, _, [%{{name: name}}]}}}} = spec}}}} -> [{{name, st.distribution_strategy.choose_node(spec, members)}}]; _ -> [] end)
               inspect({{length(nils), Enum.take(nils, 4), view}})"#
        ))
        .await;
    format!("{t:?}")
}

/// [`copies_query`]'s first three accounts as Elixir prints them, each
/// copy with its child id, member and pid (for failure messages).
async fn twice(ex: &BeamNode) -> String {
    let t = ex.try_eval_elixir(&format!("({}) |> Enum.take(3) |> inspect()", copies_query())).await;
    format!("{t:?}")
}

/// Children whose name is not in the registry, with the member that runs
/// them and whether their pid is alive (for failure messages).
async fn unnamed(ex: &BeamNode) -> String {
    let t = ex
        .try_eval_elixir(&format!(
            r#"keys = Horde.Registry.select({REG}, [{{{{:"$1", :_, :_}}, [], [:"$1"]}}]) |> MapSet.new()
               DeltaCrdt.to_map({SUP}.Crdt)
               |> Enum.flat_map(fn {{{{:process, _}}, {{{{_, n}}, %{{start: {{_, _, [%{{name: name}}]}}}}, pid}}}} -> [{{name, n, pid}}]; _ -> [] end)
               |> Enum.reject(fn {{name, _, _}} -> MapSet.member?(keys, name) end)
               |> Enum.take(5)
               |> Enum.map(fn {{name, n, pid}} -> {{name, n, pid, :rpc.call(n, Horde.Registry, :lookup, [{REG}, name], 2_000), :rpc.call(n, Process, :info, [pid, :registered_name], 2_000)}} end)
               |> inspect()"#
        ))
        .await;
    format!("{t:?}")
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs HORDE_LIBS: make test-horde HORDE_LIBS=DIR"]
async fn supervisor_rust_member_takes_its_share_then_leaves_and_is_killed() {
    let ebins = horde_libs();
    let n = accounts();
    let mut epmd = Epmd::start().await;
    let cookie = support::unique("c");
    let strategy = "Horde.UniformDistribution";
    let mut e1 = horde_node("hse1", &cookie, epmd.port(), &ebins, strategy, false).await;
    let mut e2 = horde_node("hse2", &cookie, epmd.port(), &ebins, strategy, false).await;
    assert_eq!(e1.eval_elixir(&format!(r#"Node.connect(:"{}")"#, e2.name())).await, Term::atom("true"));
    let (mut rust, rname) = rust_member(&cookie, epmd.port(), e1.name(), &[]).await;
    await_alive(&e1, &rname).await;
    await_alive(&e2, &rname).await;

    // 1. N accounts over three members, placed as the ring says.
    start_accounts(&e1, &e2, n).await;
    // Both views: the checks below read e1's CRDT, which may trail e2's.
    await_all_accounts(&e2, n, None).await;
    await_all_accounts(&e1, n, None).await;
    let (counts, _) = placement(&e1).await;
    eprintln!("placement with the Rust member: {counts:?}");
    assert_eq!(counts.len(), 3, "children on all three members: {counts:?}");
    let rust_share = counts.iter().find(|(node, _)| *node == rname).map(|(_, k)| *k).unwrap();
    assert!(rust_share > 0);
    assert_eq!(placed_as_the_ring_says(&e1).await, n);
    let sample: Vec<usize> = (1..=n).step_by((n / 50).max(1)).collect();
    for ex in [&e1, &e2] {
        let b = balances(ex, &sample).await.expect("via calls");
        assert_eq!(b, sample.iter().map(|i| *i as i64).collect::<Vec<_>>(), "{}: balances by via-call", ex.name());
    }
    // The Rust share really runs in the Rust node: which_children from
    // Elixir reaches its ProcessesSupervisor.
    let on_rust = e1
        .eval_elixir(&format!(r#"Horde.DynamicSupervisor.which_children({SUP}) |> Enum.count(fn {{_, pid, _, _}} -> node(pid) == :"{rname}" end)"#))
        .await;
    assert_eq!(on_rust.as_int(), Some(rust_share), "which_children's Rust share");

    // 2. Deposits, then a graceful leave (SIGTERM): the Rust share
    // restarts on the Elixir members (plain Horde: no state moves).
    let deposit = format!(
        r#"for i <- [{}] do GenServer.call({{:via, Horde.Registry, {{{REG}, "a#{{i}}"}}}}, {{:deposit, "t", 1, 1000}}) end; :ok"#,
        sample.iter().map(|i| i.to_string()).collect::<Vec<_>>().join(",")
    );
    assert_eq!(e2.eval_elixir(&deposit).await, Term::atom("ok"));
    assert!(rust.signal(support::SIGTERM));
    let status = rust.wait_exit(T).await.expect("erlnode exits on SIGTERM");
    assert!(status.success(), "erlnode exit: {status:?}");
    let left = rust.output().into_iter().find(|l| l.contains("left the Horde supervisor")).unwrap_or_default();
    eprintln!("leave: {left}");
    assert!(left.contains("synced=true"), "the leave was acked by the other members: {left}");
    // The registry's last deletes (the children it stopped) were acked
    // too: no Elixir member keeps a key of this member to drop later.
    assert!(left.contains("registry_synced=Some(true)"), "the registry's deletes were acked: {left}");
    await_all_accounts(&e1, n, Some(&rname)).await;
    await_all_accounts(&e2, n, Some(&rname)).await;
    let after = poll_balances(&e1, &sample).await;
    let lost = after.iter().zip(&sample).filter(|(b, i)| **b != **i as i64 + 1000).count();
    eprintln!("after the graceful leave: {lost} of {} sampled deposits lost (Horde restarts children without state)", sample.len());

    // 3. A Rust member again, then SIGKILL: its children restart on the
    // Elixir members as Horde restarts them (without state).
    let (mut rust2, rname2) = rust_member(&cookie, epmd.port(), e2.name(), &[]).await;
    await_alive(&e1, &rname2).await;
    await_share_on(&e1, &rname2, "children redistributed to the new Rust member").await;
    // Both views settled before the kill, as before the leave.
    await_all_accounts(&e1, n, None).await;
    await_all_accounts(&e2, n, None).await;
    for ex in [&e1, &e2] {
        trace_registry_drops(ex).await;
    }
    let on_rust2 = children_on(&e1, &rname2).await;
    assert!(!on_rust2.is_empty(), "the new Rust member runs children before the kill");
    rust2.kill().await;
    let mut race = vec![];
    for ex in [&e1, &e2] {
        race = await_all_accounts_after_crash(ex, &[&e1, &e2], n, &rname2, &on_rust2).await;
        eprintln!("{}: after the kill, {} of {n} children named; left unnamed by Horde's registry race: {race:?}", ex.name(), n - race.len());
    }
    // Every sampled account Horde's race did not leave unnamed answers.
    let named: Vec<usize> = sample.iter().copied().filter(|i| !race.iter().any(|r| r.split(' ').next() == Some(&format!("a{i}")))).collect();
    let b = poll_balances(&e2, &named).await;
    assert_eq!(b.len(), named.len());

    for ex in [&e1, &e2] {
        let bad = ex.output().into_iter().filter(|l| l.contains("[error]") || l.contains("** (")).collect::<Vec<_>>();
        assert!(bad.is_empty(), "{}: errors logged: {bad:?}", ex.name());
    }
    e1.stop().await;
    e2.stop().await;
    epmd.kill().await;
}

/// Balances of `ids`, retried while a via-call fails (a child between
/// two members).
async fn poll_balances(ex: &BeamNode, ids: &[usize]) -> Vec<i64> {
    let deadline = std::time::Instant::now() + T;
    loop {
        match balances(ex, ids).await {
            Ok(b) => return b,
            Err(e) if std::time::Instant::now() > deadline => panic!("{}: balances by via-call: {e}", ex.name()),
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs HORDE_LIBS: make test-horde HORDE_LIBS=DIR"]
async fn supervisor_quorum_holds_with_rust_members() {
    let ebins = horde_libs();
    let n = 60;
    let mut epmd = Epmd::start().await;
    let cookie = support::unique("c");
    let strategy = "Horde.UniformQuorumDistribution";
    let mut e1 = horde_node("hqe1", &cookie, epmd.port(), &ebins, strategy, false).await;
    let mut e2 = horde_node("hqe2", &cookie, epmd.port(), &ebins, strategy, false).await;
    assert_eq!(e1.eval_elixir(&format!(r#"Node.connect(:"{}")"#, e2.name())).await, Term::atom("true"));
    let q = ["--horde-distribution", "quorum"];
    let (mut r1, n1) = rust_member(&cookie, epmd.port(), e1.name(), &q).await;
    let (mut r2, n2) = rust_member(&cookie, epmd.port(), e2.name(), &q).await;
    for ex in [&e1, &e2] {
        await_alive(ex, &n1).await;
        await_alive(ex, &n2).await;
    }
    start_accounts(&e1, &e2, n).await;
    await_all_accounts(&e1, n, None).await;
    let (counts, _) = placement(&e1).await;
    eprintln!("quorum placement with two Rust members: {counts:?}");
    assert_eq!(counts.len(), 4, "children on all four members: {counts:?}");
    let pids_before = e1.eval_elixir(&format!("Horde.DynamicSupervisor.which_children({SUP}) |> Enum.map(&elem(&1, 1)) |> Enum.filter(&(node(&1) == node())) |> Enum.sort()")).await;
    // One Rust member leaves gracefully: shutting_down members do not
    // count, 3 remain, all alive: quorum holds, nothing on the Elixir
    // nodes stops.
    assert!(r1.signal(support::SIGTERM));
    r1.wait_exit(T).await.expect("erlnode exits");
    await_all_accounts(&e1, n, Some(&n1)).await;
    let pids_after = e1.eval_elixir(&format!("Horde.DynamicSupervisor.which_children({SUP}) |> Enum.map(&elem(&1, 1)) |> Enum.filter(&(node(&1) == node())) |> Enum.sort()")).await;
    let Term::List(before) = &pids_before else { panic!() };
    let Term::List(after) = &pids_after else { panic!() };
    assert!(before.iter().all(|p| after.contains(p)), "an Elixir child was stopped: before {pids_before:?} after {pids_after:?}");
    r2.kill().await;
    e1.stop().await;
    e2.stop().await;
    epmd.kill().await;
}



/// The sampled accounts' balances against what the sender was told.
struct Oracle {
    /// Accounts exactly at start balance + acknowledged deposits.
    exact: usize,
    /// Above it by no more than the calls in doubt.
    doubt_ok: usize,
    /// `(id, got, oracle, refused, in doubt)` of every other account.
    wrong: Vec<(usize, i64, i64, i64, i64)>,
    acked: i64,
    refused: i64,
    doubt: i64,
}

/// Reads the balances of `sample` (account `aI` starts at `I`) from `ex`
/// and compares each with `sent` (`support::sender::stop`).
async fn against_oracle(ex: &BeamNode, sample: &[usize], sent: &std::collections::BTreeMap<i64, (i64, i64, i64)>) -> Oracle {
    let balances = poll_balances(ex, sample).await;
    let mut o = Oracle { exact: 0, doubt_ok: 0, wrong: vec![], acked: 0, refused: 0, doubt: 0 };
    for (i, got) in sample.iter().zip(&balances) {
        let (acked, refused, doubt) = sent.get(&(*i as i64)).copied().unwrap_or((0, 0, 0));
        (o.acked, o.refused, o.doubt) = (o.acked + acked, o.refused + refused, o.doubt + doubt);
        let want = *i as i64 + acked;
        if *got == want {
            o.exact += 1;
        } else if *got > want && *got <= want + doubt {
            o.doubt_ok += 1;
        } else {
            o.wrong.push((*i, *got, want, refused, doubt));
        }
    }
    o
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs HORDE_LIBS: make test-horde HORDE_LIBS=DIR"]
async fn supervisor_handoff_keeps_every_acknowledged_deposit() {
    handoff_scenario("Horde.UniformDistribution", "uniform", true).await;
}

/// The same scenario with plain Horde semantics (no handoff on either
/// side, Horde's own children, no Drain): every account still exists
/// once at the end; the deposits it loses are reported, not asserted.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs HORDE_LIBS: make test-horde HORDE_LIBS=DIR"]
async fn supervisor_without_handoff_reports_what_horde_loses() {
    handoff_scenario("Horde.UniformDistribution", "uniform", false).await;
}

/// The same under `UniformQuorumDistribution`: at every step the members
/// keep quorum (the Rust members count as alive members, not as
/// `:uninitialized` ones), so no child stops and no state is lost.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs HORDE_LIBS: make test-horde HORDE_LIBS=DIR"]
async fn supervisor_handoff_under_quorum_distribution() {
    handoff_scenario("Horde.UniformQuorumDistribution", "quorum", true).await;
}

/// Two Elixir members and a Rust one, all with handoff; accounts started
/// from Elixir; a sender calling 50 of them by name throughout: a second
/// Rust member joins, the first leaves by SIGTERM, an Elixir member
/// leaves with `System.stop/0`. Every account exists once at the end and
/// holds every deposit acknowledged to the sender.
async fn handoff_scenario(strategy: &str, dist: &str, handoff: bool) {
    let ebins = horde_libs();
    let n = accounts();
    let mut epmd = Epmd::start().await;
    let cookie = support::unique("c");
    let mut e1 = horde_node("hhe1", &cookie, epmd.port(), &ebins, strategy, handoff).await;
    let mut e2 = horde_node("hhe2", &cookie, epmd.port(), &ebins, strategy, handoff).await;
    assert_eq!(e1.eval_elixir(&format!(r#"Node.connect(:"{}")"#, e2.name())).await, Term::atom("true"));
    let flags: Vec<&str> = if handoff { vec!["--horde-handoff", "--horde-distribution", dist] } else { vec!["--horde-distribution", dist] };
    let (mut r1, n1) = rust_member(&cookie, epmd.port(), e1.name(), &flags).await;
    for ex in [&e1, &e2] {
        await_alive(ex, e1.name()).await;
        await_alive(ex, e2.name()).await;
        await_alive(ex, &n1).await;
    }
    start_accounts(&e1, &e2, n).await;
    await_all_accounts(&e1, n, None).await;
    eprintln!("start: {:?}", placement(&e1).await.0);
    let sample: Vec<usize> = (1..=n).step_by((n / 50).max(1)).take(50).collect();
    crate::support::sender::start(&e1, "hisender", &sample, &format!("GenServer.call({{:via, Horde.Registry, {{{REG}, name}}}}, msg, 5_000)")).await;

    // A second Rust member joins: its share moves to it, with state.
    let (mut r2, n2) = rust_member(&cookie, epmd.port(), e2.name(), &flags).await;
    await_share_on(&e1, &n2, "children redistributed to the second Rust member").await;
    // HORDE_DEBUG=1: what the members logged about conflicts and moves.
    if std::env::var_os("HORDE_DEBUG").is_some() {
        tokio::time::sleep(Duration::from_secs(3)).await;
        for l in r1.output().iter().chain(r2.output().iter()).filter(|l| l.contains("conflict") || l.contains("lost its name") || l.contains("WARN") || l.contains("already runs") || l.contains("not started")) {
            eprintln!("  {l}");
        }
        print_elixir_logs(&[&e1, &e2]);
    }
    await_all_accounts(&e1, n, None).await;
    eprintln!("after the join: {:?}", placement(&e1).await.0);

    // The first leaves by SIGTERM.
    assert!(r1.signal(support::SIGTERM));
    let status = r1.wait_exit(T).await.expect("erlnode exits on SIGTERM");
    assert!(status.success(), "erlnode exit: {status:?}");
    let left = r1.output().into_iter().find(|l| l.contains("left the Horde supervisor")).unwrap_or_default();
    eprintln!("leave: {left}");
    assert!(left.contains("synced=true"), "{left}");
    await_all_accounts(&e1, n, Some(&n1)).await;
    eprintln!("after the Rust leave: {:?}", placement(&e1).await.0);

    // An Elixir member leaves with System.stop/0 (Erlnode.Horde.Drain).
    let e2_name = e2.name().to_string();
    let _ = e2.try_eval_elixir("System.stop()").await;
    assert!(e2.wait_exit(T).await.is_some(), "the Elixir node stops");
    if std::env::var_os("HORDE_DEBUG").is_some() {
        for l in e2.output().iter().filter(|l| !l.trim().is_empty()) {
            eprintln!("  {e2_name}: {l}");
        }
        for l in r2.output().iter().filter(|l| l.contains("WARN") || l.contains("ERROR") || l.contains("conflict") || l.contains("not started")) {
            eprintln!("  {n2}: {l}");
        }
        for l in e1.output().iter().filter(|l| l.contains("[warning]") || l.contains("[error]")) {
            eprintln!("  {}: {l}", e1.name());
        }
    }
    await_all_accounts(&e1, n, Some(&e2_name)).await;
    eprintln!("after the Elixir leave: {:?}", placement(&e1).await.0);

    let sent = crate::support::sender::stop(&e1, "hisender").await;
    let Oracle { exact, doubt_ok, wrong, acked: acked_all, refused: refused_all, .. } = against_oracle(&e1, &sample, &sent).await;
    eprintln!(
        "handoff={handoff} ({strategy}): {acked_all} deposits acknowledged, {refused_all} refused (not delivered, the name between two members); \
         {exact} of {} accounts exactly at the oracle, {doubt_ok} within calls in doubt, {} wrong: {wrong:?}",
        sample.len(),
        wrong.len()
    );
    if handoff {
        assert!(wrong.is_empty(), "accounts whose state lost acknowledged deposits: (id, got, oracle, refused, in doubt) {wrong:?}");
    } else {
        let lost: i64 = wrong.iter().map(|(_, got, want, _, _)| want - got).sum();
        eprintln!("without handoff: {} of {} accounts lost {lost} of {acked_all} acknowledged deposits", wrong.len(), sample.len());
    }
    r2.kill().await;
    e1.stop().await;
    epmd.kill().await;
}

/// Issue 14 with Horde placing the accounts: two Elixir and two Rust
/// members, every account with handoff and `replicas: 1, :sync`, a
/// sender calling 50 accounts by name throughout. A Rust member is
/// killed with SIGKILL, then an Elixir one: Horde restarts their
/// children on the others, each from its latest replica (no `terminate`
/// ran, nothing was handed over), so every account exists once and holds
/// every deposit acknowledged to the sender. (Without replicas, the
/// first test above shows the states lost on SIGKILL.)
#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs HORDE_LIBS: make test-horde HORDE_LIBS=DIR"]
async fn supervisor_replicas_keep_every_acknowledged_deposit_when_members_are_killed() {
    let ebins = horde_libs();
    let n = accounts();
    let mut epmd = Epmd::start().await;
    let cookie = support::unique("c");
    let strategy = "Horde.UniformDistribution";
    let mut e1 = horde_node_with("hke1", &cookie, epmd.port(), &ebins, strategy, true, true).await;
    let mut e2 = horde_node_with("hke2", &cookie, epmd.port(), &ebins, strategy, true, true).await;
    assert_eq!(
        e1.eval_elixir(&format!(r#"Node.connect(:"{}")"#, e2.name()))
            .await,
        Term::atom("true")
    );
    let flags = [
        "--horde-handoff",
        "--replicas",
        "1",
        "--replica-mode",
        "sync",
    ];
    let (mut r1, n1) = rust_member(&cookie, epmd.port(), e1.name(), &flags).await;
    let (mut r2, n2) = rust_member(&cookie, epmd.port(), e2.name(), &flags).await;
    for ex in [&e1, &e2] {
        for m in [e1.name(), e2.name(), n1.as_str(), n2.as_str()] {
            await_alive(ex, m).await;
        }
    }
    // Replica placement needs every node in every node's account ring.
    for ex in [&e1, &e2] {
        let all = format!("['{}', '{}', '{}', '{}']", e1.name(), e2.name(), n1, n2);
        poll(&format!("{} sees four account hosts", ex.name()), T, || async {
            let t = ex.eval(&format!("lists:sort('Elixir.Erlnode.Migration':members(<<\"account\">>)) =:= lists:sort({all})")).await;
            if t.is_atom("true") { Ok(()) } else { Err(format!("{t:?}")) }
        })
        .await;
    }
    start_accounts(&e1, &e2, n).await;
    await_all_accounts(&e1, n, None).await;
    let start = placement(&e1).await.0;
    eprintln!("start: {start:?}");
    let sample: Vec<usize> = (1..=n).step_by((n / 50).max(1)).take(50).collect();
    crate::support::sender::start(&e1, "hisender", &sample, &format!("GenServer.call({{:via, Horde.Registry, {{{REG}, name}}}}, msg, 5_000)")).await;
    wait_replicated(&e1, &e2, n).await;

    // Horde's own duplicate of a dead member's child is allowed in its
    // exact shape, as in the other kill tests; every child stays named
    // (no registry trace here: `use Erlnode.Horde` children take their
    // name back, so none may be left unnamed).
    let on_r1 = children_on(&e1, &n1).await;
    r1.kill().await;
    await_all_accounts_after_crash(&e1, &[&e1, &e2], n, &n1, &on_r1).await;
    let restored_rust = r2
        .output()
        .iter()
        .filter(|l| l.contains("started from its replica"))
        .count();
    eprintln!(
        "after SIGKILL of {n1}: {:?}; {restored_rust} restored on {n2}",
        placement(&e1).await.0
    );
    wait_replicated(&e1, &e1, n).await;

    let e2_name = e2.name().to_string();
    let on_e2 = children_on(&e1, &e2_name).await;
    e2.kill().await;
    await_all_accounts_after_crash(&e1, &[&e1], n, &e2_name, &on_e2).await;
    eprintln!("after SIGKILL of {e2_name}: {:?}", placement(&e1).await.0);

    let sent = crate::support::sender::stop(&e1, "hisender").await;
    let Oracle { exact, doubt_ok, wrong, acked: acked_all, doubt: doubt_all, .. } = against_oracle(&e1, &sample, &sent).await;
    let restored_ex = e1
        .output()
        .iter()
        .filter(|l| l.contains("started from its replica"))
        .count();
    let restored_rust = r2
        .output()
        .iter()
        .filter(|l| l.contains("started from its replica"))
        .count();
    eprintln!(
        "replicas under SIGKILL: {acked_all} deposits acknowledged, {doubt_all} in doubt; {exact} of {} accounts exactly at the oracle, \
         {doubt_ok} within calls in doubt, {} wrong: {wrong:?}; restored from replicas: {restored_rust} on {n2}, {restored_ex} on {}",
        sample.len(),
        wrong.len(),
        e1.name()
    );
    assert!(
        restored_rust + restored_ex > 0,
        "no child started from a replica"
    );
    assert!(wrong.is_empty(), "accounts whose state lost acknowledged deposits: (id, got, oracle, refused, in doubt) {wrong:?}");
    r2.kill().await;
    e1.stop().await;
    epmd.kill().await;
}

/// Every account's replica is held somewhere: the stores of `a` and `b`
/// plus the Rust members' hold `n` entries of Horde children in all
/// (each child has one replica), read through `a`.
async fn wait_replicated(a: &BeamNode, b: &BeamNode, n: usize) {
    poll("every account replicated once", T, || async {
        let t = a
            .eval_elixir(&format!(
                r#"nodes = Enum.uniq([node(), :"{}" | Node.list()])
                   for nd <- nodes, reduce: 0 do
                     acc ->
                       held = try do Erlnode.Replica.held(nd) catch _, _ -> [] end
                       acc + Enum.count(held, fn {{name, _, _, _}} -> String.starts_with?(Atom.to_string(name), "erlnode_horde:") end)
                   end"#,
                b.name()
            ))
            .await;
        if t.as_int() == Some(n as i64) { Ok(()) } else { Err(format!("{t:?} replicas held, want {n}")) }
    })
    .await;
}


/// The baseline of the kill step above with Horde alone: three Elixir
/// members, one SIGKILLed. Horde's registry race
/// ([`trace_registry_drops`]) leaves a restarted child unnamed here too
/// (2 runs of 15 when it was written; the Rust member's test 1 of 10), so
/// the same allowance applies to both, checked the same way.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs HORDE_LIBS: make test-horde HORDE_LIBS=DIR"]
async fn supervisor_elixir_member_killed_baseline() {
    let ebins = horde_libs();
    let n = accounts();
    let mut epmd = Epmd::start().await;
    let cookie = support::unique("c");
    let strategy = "Horde.UniformDistribution";
    let mut e1 = horde_node("hce1", &cookie, epmd.port(), &ebins, strategy, false).await;
    let mut e2 = horde_node("hce2", &cookie, epmd.port(), &ebins, strategy, false).await;
    let mut e3 = horde_node("hce3", &cookie, epmd.port(), &ebins, strategy, false).await;
    assert_eq!(e1.eval_elixir(&format!(r#"Node.connect(:"{}")"#, e2.name())).await, Term::atom("true"));
    assert_eq!(e3.eval_elixir(&format!(r#"Node.connect(:"{}")"#, e2.name())).await, Term::atom("true"));
    let e3name = e3.name().to_string();
    await_alive(&e1, &e3name).await;
    await_alive(&e2, &e3name).await;
    start_accounts(&e1, &e2, n).await;
    await_all_accounts(&e1, n, None).await;
    await_all_accounts(&e2, n, None).await;
    let (counts, _) = placement(&e1).await;
    eprintln!("baseline placement: {counts:?}");
    assert_eq!(counts.len(), 3, "children on all three members: {counts:?}");
    for ex in [&e1, &e2] {
        trace_registry_drops(ex).await;
    }
    let on_e3 = children_on(&e1, &e3name).await;
    assert!(!on_e3.is_empty(), "e3 runs children before the kill");
    e3.kill().await;
    for ex in [&e1, &e2] {
        let race = await_all_accounts_after_crash(ex, &[&e1, &e2], n, &e3name, &on_e3).await;
        eprintln!("baseline {}: after the kill, {} of {n} children named; left unnamed by Horde's registry race: {race:?}", ex.name(), n - race.len());
    }
    e1.stop().await;
    e2.stop().await;
    epmd.kill().await;
}
