//! erlnode as a member of a real Horde 0.10.0 registry (DeltaCrdt 0.6.4):
//! Elixir and Rust nodes in one `members: :auto` registry. The libraries
//! are neither vendored nor built here: `HORDE_LIBS` names a folder of
//! compiled applications (`DIR/<app>/ebin`), and `make test-horde
//! HORDE_LIBS=DIR` runs these `#[ignore]`d tests.

use crate::support::{self, BeamNode, Epmd};
use erlnode::horde::HordeRegistry;
use erlnode::{Node, Pid, Term};
use std::path::PathBuf;
use std::time::{Duration, Instant};

const REG: &str = "HIReg";
const T: Duration = Duration::from_secs(60);

/// The `ebin` folders under `HORDE_LIBS`; a set but unusable folder fails.
fn horde_libs() -> Vec<PathBuf> {
    let Some(dir) = std::env::var_os("HORDE_LIBS").filter(|v| !v.is_empty()) else {
        panic!("HORDE_LIBS is unset: run `make test-horde HORDE_LIBS=DIR` (DIR/<app>/ebin)");
    };
    let dir = PathBuf::from(dir);
    for app in ["horde", "delta_crdt", "merkle_map", "libring", "telemetry", "telemetry_poller"] {
        let f = dir.join(app).join("ebin").join(format!("{app}.app"));
        assert!(f.exists(), "HORDE_LIBS={}: no {} (expected <dir>/<app>/ebin)", dir.display(), f.display());
    }
    let mut ebins: Vec<PathBuf> =
        std::fs::read_dir(&dir).unwrap().filter_map(|e| Some(e.ok()?.path().join("ebin"))).filter(|p| p.is_dir()).collect();
    ebins.sort();
    ebins
}

/// An Elixir node with Horde started and the registry `REG` (members
/// :auto) owned by a process that outlives the eval.
async fn horde_node(prefix: &str, cookie: &str, epmd: u16, ebins: &[PathBuf]) -> BeamNode {
    let mut b = BeamNode::builder().prefix(prefix).cookie(cookie).epmd_port(epmd).elixir(true).otp(25);
    for p in ebins {
        b = b.code_path(p);
    }
    let node = b.start().await;
    let r = node
        .eval_elixir(&format!(
            r#"{{:ok, _}} = Application.ensure_all_started(:horde)
               parent = self()
               spawn(fn ->
                 send(parent, {{:reg, Horde.Registry.start_link(name: {REG}, keys: :unique, members: :auto)}})
                 Process.sleep(:infinity)
               end)
               receive do {{:reg, {{:ok, _}}}} -> :ok; {{:reg, e}} -> e after 10_000 -> :timeout end"#
        ))
        .await;
    assert_eq!(r, Term::atom("ok"), "{}: the registry does not start", node.name());
    node
}

fn int(t: &Term) -> i64 {
    t.as_int().unwrap_or_else(|| panic!("not an integer: {t:?}"))
}

async fn poll<F, Fut>(what: &str, within: Duration, mut f: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(), String>>,
{
    let start = Instant::now();
    loop {
        match f().await {
            Ok(()) => return start.elapsed(),
            Err(e) if start.elapsed() > within => panic!("{what}: not within {within:?}: {e}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

/// `Horde.Cluster.members(REG)` as sorted node names.
async fn member_nodes(ex: &BeamNode) -> Vec<String> {
    let t = ex.eval_elixir(&format!("Horde.Cluster.members({REG}) |> Enum.map(fn {{_, n}} -> Atom.to_string(n) end) |> Enum.sort()")).await;
    support::binaries_to_strings(&t)
}

/// The registry's entries on an Elixir node, sorted: `[{key, pid, value}]`.
async fn elixir_entries(ex: &BeamNode) -> Term {
    ex.eval_elixir(&format!(r#"Horde.Registry.select({REG}, [{{{{:"$1", :"$2", :"$3"}}, [], [{{{{:"$1", :"$2", :"$3"}}}}]}}]) |> Enum.sort()"#)).await
}

/// The same from a Rust member, sorted like the BEAM sorts binaries.
fn rust_entries(reg: &HordeRegistry) -> Term {
    let mut v = reg.select(|_, _, _| true);
    v.sort_by(|a, b| match (&a.0, &b.0) {
        (Term::Binary(x), Term::Binary(y)) => x.cmp(y),
        _ => std::cmp::Ordering::Equal,
    });
    Term::List(v.into_iter().map(|(k, p, val)| Term::tuple([k, Term::Pid(p), val])).collect())
}

/// Messages (dist packets) `ex` sent to `to` in `secs` seconds at rest.
async fn packets_per_second(ex: &BeamNode, to: &str, secs: u64) -> f64 {
    let t = ex
        .eval_elixir(&format!(
            r#"{{_, port}} = List.keyfind(:erlang.system_info(:dist_ctrl), :"{to}", 0)
               {{:ok, [send_cnt: a]}} = :inet.getstat(port, [:send_cnt])
               Process.sleep({})
               {{:ok, [send_cnt: b]}} = :inet.getstat(port, [:send_cnt])
               b - a"#,
            secs * 1000
        ))
        .await;
    int(&t) as f64 / secs as f64
}

/// Spawns `n` Elixir processes registered as `"{prefix}{i}" => i`; each
/// answers GenServer calls with `{:echo, msg}`.
async fn register_elixir(ex: &BeamNode, prefix: &str, n: usize) {
    let r = ex
        .eval_elixir(&format!(
            r#"for i <- 1..{n} do
                 parent = self()
                 spawn(fn ->
                   {{:ok, _}} = Horde.Registry.register({REG}, "{prefix}#{{i}}", i)
                   send(parent, :registered)
                   loop = fn loop ->
                     receive do
                       {{:"$gen_call", from, msg}} -> GenServer.reply(from, {{:echo, msg}}); loop.(loop)
                     end
                   end
                   loop.(loop)
                 end)
                 receive do :registered -> :ok after 5000 -> exit(:register_timeout) end
               end
               :ok"#
        ))
        .await;
    assert_eq!(r, Term::atom("ok"));
}

/// Spawns `n` Rust echo processes registered as `"{prefix}{i}" => i`.
async fn register_rust(node: &Node, reg: &HordeRegistry, prefix: &str, n: usize) -> Vec<Pid> {
    let mut pids = vec![];
    for i in 1..=n {
        let pid = erlnode::services::echo::spawn_unregistered(node);
        reg.register(Term::binary(format!("{prefix}{i}").into_bytes()), Term::Int(i as i64), &pid).await.expect("register");
        pids.push(pid);
    }
    pids
}

/// Two Elixir and two erlnode members of one `members: :auto` registry:
/// the diff/monitor loop toward a Rust node is replaced by a real sync
/// (packet rate at rest measured before and after), 10,000 registrations
/// from all four converge to the same contents everywhere, Rust-owned
/// names answer via-calls from Elixir and Elixir-owned ones calls from
/// Rust, and a killed node's entries vanish everywhere.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs HORDE_LIBS: make test-horde HORDE_LIBS=DIR"]
async fn two_elixir_and_two_rust_members_share_one_registry() {
    let ebins = horde_libs();
    let _ = tracing_subscriber::fmt().with_env_filter(std::env::var("HLOG").unwrap_or("warn".into())).try_init();
    let epmd = Epmd::start().await;
    let cookie = support::unique("cookie");
    let mut ex_a = horde_node("hra", &cookie, epmd.port(), &ebins).await;
    let mut ex_b = horde_node("hrb", &cookie, epmd.port(), &ebins).await;
    let r1 = support::rust_node("hr1", &cookie, epmd.port()).await;
    let r2 = support::rust_node("hr2", &cookie, epmd.port()).await;
    for (r, ex) in [(&r1, &ex_a), (&r1, &ex_b), (&r2, &ex_a), (&r2, &ex_b)] {
        r.connect(ex.name()).await.expect("connect");
    }
    r1.connect(r2.name().as_str()).await.expect("connect r1-r2");
    let all: Vec<String> = {
        let mut v = vec![ex_a.name().to_string(), ex_b.name().to_string(), r1.name().to_string(), r2.name().to_string()];
        v.sort();
        v
    };
    poll("every node a member (auto)", T, || async { if member_nodes(&ex_a).await == all { Ok(()) } else { Err("members".into()) } }).await;

    // Before: r1 is a member without a CRDT.
    tokio::time::sleep(Duration::from_millis(600)).await;
    let before = packets_per_second(&ex_a, r1.name().as_str(), 3).await;

    let reg1 = HordeRegistry::builder(REG).start(&r1).expect("registry on r1");
    let reg2 = HordeRegistry::builder(REG).start(&r2).expect("registry on r2");
    poll("the Rust members know all four", T, || async {
        let mut m: Vec<String> = reg1.members().iter().map(|t| format!("{t:?}")).collect();
        m.sort();
        if m.len() == 4 && reg2.members().len() == 4 { Ok(()) } else { Err(format!("{m:?}")) }
    })
    .await;
    tokio::time::sleep(Duration::from_millis(900)).await;
    let after = packets_per_second(&ex_a, r1.name().as_str(), 3).await;
    println!("packets/s from an Elixir member to a Rust member at rest: before {before:.1}, after {after:.1}");

    // 10,000 registrations, 2,500 from each node.
    let started = Instant::now();
    let (_, _, p1, p2) = tokio::join!(
        register_elixir(&ex_a, "a", 2500),
        register_elixir(&ex_b, "b", 2500),
        register_rust(&r1, &reg1, "r", 2500),
        register_rust(&r2, &reg2, "s", 2500),
    );
    let registered = started.elapsed();
    let converge = poll("10,000 entries everywhere, equal", T, || async {
        let ea = elixir_entries(&ex_a).await;
        let eb = elixir_entries(&ex_b).await;
        let (x1, x2) = (rust_entries(&reg1), rust_entries(&reg2));
        let n = |t: &Term| match t {
            Term::List(l) => l.len(),
            _ => 0,
        };
        if n(&ea) == 10_000 && ea == eb && ea == x1 && ea == x2 {
            Ok(())
        } else {
            Err(format!("counts {} {} {} {}", n(&ea), n(&eb), n(&x1), n(&x2)))
        }
    })
    .await;
    println!("10,000 registrations took {registered:?}; all four equal {converge:?} later");

    // Via-calls: Rust-owned names from Elixir, Elixir-owned from Rust.
    let via = ex_b
        .eval_elixir(&format!(r#"for k <- ["r7", "s2500", "a1"], do: GenServer.call({{:via, Horde.Registry, {{{REG}, k}}}}, {{:hi, k}})"#))
        .await;
    let echo = |k: &str| Term::tuple([Term::atom("echo"), Term::tuple([Term::atom("hi"), Term::binary(k.as_bytes().to_vec())])]);
    assert_eq!(via, Term::List(vec![echo("r7"), echo("s2500"), echo("a1")]));
    let lookup = ex_a.eval_elixir(&format!(r#"Horde.Registry.lookup({REG}, "r9")"#)).await;
    assert_eq!(lookup, Term::List(vec![Term::tuple([Term::Pid(p1[8].clone()), Term::Int(9)])]));
    let mut mb = r2.spawn_mailbox();
    for k in ["a5", "b2500", "r3"] {
        let got = reg2.call(&mut mb, &Term::binary(k.as_bytes().to_vec()), Term::atom("ping"), T).await.expect("via call from Rust");
        assert_eq!(got, Term::tuple([Term::atom("echo"), Term::atom("ping")]), "{k}");
    }
    assert_eq!(reg1.whereis(&Term::binary(&b"s17"[..])), Some(p2[16].clone()));

    // A Rust owner exits: its key vanishes everywhere.
    r1.exit(&p1[0], Term::atom("kill"));
    poll("r1's exited owner gone", T, || async {
        let l = ex_b.eval_elixir(&format!(r#"Horde.Registry.lookup({REG}, "r1")"#)).await;
        if l == Term::nil() && reg2.lookup(&Term::binary(&b"r1"[..])).is_none() { Ok(()) } else { Err(format!("{l:?}")) }
    })
    .await;

    // An Elixir node is killed: its 2,500 entries vanish everywhere.
    ex_b.kill().await;
    let gone = poll("ex_b's entries gone everywhere", T, || async {
        let c = int(&ex_a.eval_elixir(&format!("Horde.Registry.count({REG})")).await);
        let (c1, c2) = (reg1.count(), reg2.count());
        if c == 7499 && c1 == 7499 && c2 == 7499 { Ok(()) } else { Err(format!("{c} {c1} {c2}")) }
    })
    .await;
    println!("ex_b killed: its entries gone from the three others {gone:?} later");
    assert_eq!(elixir_entries(&ex_a).await, rust_entries(&reg1));
    assert_eq!(rust_entries(&reg1), rust_entries(&reg2));
    ex_a.kill().await;
    r1.shutdown().await;
    r2.shutdown().await;
}
