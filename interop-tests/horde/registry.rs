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
pub(super) fn horde_libs() -> Vec<PathBuf> {
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

pub(super) async fn poll<F, Fut>(what: &str, within: Duration, f: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(), String>>,
{
    poll_or_diag(what, within, async { String::new() }, f).await
}

/// Polls `f` until it is `Ok` or `within` has passed; then prints `diag`
/// (when not empty) and panics.
async fn poll_or_diag<F, Fut>(what: &str, within: Duration, diag: impl std::future::Future<Output = String>, mut f: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(), String>>,
{
    let start = Instant::now();
    loop {
        match f().await {
            Ok(()) => return start.elapsed(),
            Err(e) if start.elapsed() > within => {
                let d = diag.await;
                if !d.is_empty() {
                    eprintln!("{what}: not converged; state of each member:\n{d}");
                }
                panic!("{what}: not within {within:?}: {e}")
            }
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

/// Why the members' entries differ, for a failed convergence: each
/// member's CRDT (node id, context, size, Merkle root) and, for a few keys
/// some member lacks, the raw entries (value, timestamp, dots) each member
/// holds for them. Enough to tell a sync that found no difference from a
/// delta whose context covered dots its entries did not carry.
async fn crdt_diag(exs: &[&BeamNode], regs: &[&HordeRegistry]) -> String {
    let mut out = String::new();
    let key_set = |t: &Term| -> std::collections::BTreeSet<Vec<u8>> {
        let Term::List(l) = t else { return Default::default() };
        l.iter().filter_map(|e| match e.as_tuple() {
            Some([Term::Binary(k), ..]) => Some(k.to_vec()),
            _ => None,
        }).collect()
    };
    let mut sets = vec![];
    for ex in exs {
        sets.push((ex.name().to_string(), key_set(&elixir_entries(ex).await)));
        let st = ex
            .eval_elixir(&format!(
                r#"s = :sys.get_state({REG}.Crdt)
                   t = MerkleMap.update_hashes(s.merkle_map).merkle_tree.tree
                   {{s.node_id, s.crdt_state.dots, map_size(s.crdt_state.value), (if is_tuple(t), do: elem(t, 0), else: t), Map.keys(s.outstanding_syncs)}}"#
            ))
            .await;
        out += &format!("{}: crdt {{node_id, dots, size, root, outstanding}} = {st:?}\n", ex.name());
    }
    for reg in regs {
        sets.push((format!("rust {}", reg.pid()), key_set(&rust_entries(reg))));
        let st = tokio::time::timeout(Duration::from_secs(5), reg.inspect(|c| (c.store.node_id, c.store.dots.clone(), c.store.len(), c.store.clone().tree().root_hash(), c.sync_states(), c.activity()))).await;
        out += &format!("rust {}: crdt (node_id, dots, size, root, [(neighbour, in flight for, acked (root, ago))], (last round ago, messages handled)) = {st:?}\n", reg.pid());
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    for reg in regs {
        let a = tokio::time::timeout(Duration::from_secs(5), reg.inspect(|c| c.activity())).await;
        out += &format!("rust {}: 2 s later (last round ago, messages handled) = {a:?}\n", reg.pid());
    }
    let all: std::collections::BTreeSet<Vec<u8>> = sets.iter().flat_map(|(_, s)| s.iter().cloned()).collect();
    let mut sample = vec![];
    for (who, s) in &sets {
        let missing: Vec<&Vec<u8>> = all.difference(s).collect();
        out += &format!("{who}: {} of {} keys missing, e.g. {:?}\n", missing.len(), all.len(), missing.iter().take(5).map(|k| String::from_utf8_lossy(k)).collect::<Vec<_>>());
        sample.extend(missing.into_iter().take(2).cloned());
    }
    sample.dedup();
    for k in sample.iter().take(4) {
        let key = String::from_utf8_lossy(k).to_string();
        for ex in exs {
            let e = ex.eval_elixir(&format!(r#"Map.get(:sys.get_state({REG}.Crdt).crdt_state.value, {{:key, "{key}"}})"#)).await;
            out += &format!("  {key:?} in {}: {e:?}\n", ex.name());
        }
        for reg in regs {
            let ck = Term::tuple([Term::atom("key"), Term::binary(k.clone())]);
            let e = tokio::time::timeout(Duration::from_secs(5), reg.inspect(move |c| c.store.entries_term(&ck))).await;
            out += &format!("  {key:?} in rust {}: {e:?}\n", reg.pid());
        }
    }
    out
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
    let converge = poll_or_diag("10,000 entries everywhere, equal", T, crdt_diag(&[&ex_a, &ex_b], &[&reg1, &reg2]), || async {
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

/// A member's last deletes reach the Elixir members before it goes:
/// 200 Rust owners registered (the Rust member syncing only every 5 s),
/// all killed, then `flush`: it returns acked, and the Elixir CRDT
/// already holds none of the keys, read right after it returns. Without
/// the flush the deletes wait for the next sync (up to 5 s here), and a
/// member shutting down meanwhile leaves its keys to the Elixir members,
/// whose later drop of them by key can take a newer registration along.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs HORDE_LIBS: make test-horde HORDE_LIBS=DIR"]
async fn flush_delivers_the_last_deletes_before_the_member_goes() {
    let ebins = horde_libs();
    let mut epmd = Epmd::start().await;
    let cookie = support::unique("cookie");
    let mut ex = horde_node("hfa", &cookie, epmd.port(), &ebins).await;
    let r1 = support::rust_node("hf1", &cookie, epmd.port()).await;
    r1.connect(ex.name()).await.expect("connect");
    let reg = HordeRegistry::builder(REG).sync_interval(Duration::from_secs(5)).start(&r1).expect("registry");
    poll("both members", T, || async { if member_nodes(&ex).await.len() == 2 && reg.members().len() == 2 { Ok(()) } else { Err("members".into()) } }).await;
    let n = 200;
    let pids = register_rust(&r1, &reg, "f", n).await;
    let crdt_keys = || async {
        let t = ex.eval_elixir(&format!(r#"DeltaCrdt.to_map({REG}.Crdt) |> Enum.count(fn {{{{:key, "f" <> _}}, _}} -> true; _ -> false end)"#)).await;
        int(&t)
    };
    poll("the Elixir member holds the Rust keys", T, || async { if crdt_keys().await == n as i64 { Ok(()) } else { Err("not yet".into()) } }).await;

    // Every owner is down (its exit signal to the registry sent before
    // its DOWN), then the flush.
    let mut watcher = r1.spawn_mailbox();
    let refs: Vec<_> = pids.iter().map(|p| watcher.monitor(p)).collect();
    for p in &pids {
        r1.exit(p, Term::atom("kill"));
    }
    for r in &refs {
        support::down(&mut watcher, r, T).await;
    }
    assert!(reg.flush(Duration::from_secs(10)).await.expect("flush"), "every member acked");
    assert_eq!(crdt_keys().await, 0, "the Elixir CRDT holds none of the killed owners' keys right after the flush");
    assert_eq!(reg.count(), 0);
    ex.stop().await;
    epmd.kill().await;
}

/// A name registered on both sides of a netsplit (the link cut with
/// `:erlang.disconnect_node/1`, a wrong cookie keeping it down): after
/// the reconnect both nodes settle on the same owner, and the other gets
/// Horde's `{:name_conflict, {key, value}, Reg, winner}` exit.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs HORDE_LIBS: make test-horde HORDE_LIBS=DIR"]
async fn name_conflict_after_a_netsplit_is_settled_alike_on_both_sides() {
    let ebins = horde_libs();
    let epmd = Epmd::start().await;
    let cookie = support::unique("cookie");
    let ex = horde_node("hca", &cookie, epmd.port(), &ebins).await;
    let r1 = support::rust_node("hc1", &cookie, epmd.port()).await;
    r1.connect(ex.name()).await.expect("connect");
    let reg = HordeRegistry::builder(REG).start(&r1).expect("registry");
    let rust = r1.name().to_string();
    poll("both members", T, || async { if member_nodes(&ex).await.len() == 2 && reg.members().len() == 2 { Ok(()) } else { Err("members".into()) } }).await;

    // Split, and keep it split.
    ex.eval_elixir(&format!(r#":erlang.set_cookie(:"{rust}", :wrong_cookie); :erlang.disconnect_node(:"{rust}")"#)).await;
    poll("split seen on both sides", T, || async {
        let m = member_nodes(&ex).await;
        if m.len() == 1 && reg.members().len() == 1 { Ok(()) } else { Err(format!("{m:?} / {:?}", reg.members())) }
    })
    .await;

    // "conf" on both sides of the split; both owners trap exits.
    let owner = ex
        .eval_elixir(&format!(
            r#"parent = self()
               pid = spawn(fn ->
                 Process.flag(:trap_exit, true)
                 {{:ok, _}} = Horde.Registry.register({REG}, "conf", :elixir_value)
                 send(parent, :registered)
                 receive do {{:EXIT, _, reason}} -> :persistent_term.put(:conf_exit, reason) end
               end)
               receive do :registered -> pid after 5000 -> :timeout end"#
        ))
        .await;
    let Term::Pid(ex_owner) = owner else { panic!("{owner:?}") };
    let mut rust_owner = r1.spawn_mailbox();
    rust_owner.trap_exit(true);
    reg.register(Term::binary(&b"conf"[..]), Term::atom("rust_value"), rust_owner.pid()).await.expect("register on the Rust side");

    // Heal.
    ex.eval_elixir(&format!(r#":erlang.set_cookie(:"{rust}", :"{cookie}"); Node.connect(:"{rust}")"#)).await;
    let conf = || Term::binary(&b"conf"[..]);
    poll("one owner for \"conf\" on both sides", T, || async {
        let l = ex.eval_elixir(&format!(r#"Horde.Registry.lookup({REG}, "conf")"#)).await;
        let rust_side = reg.lookup(&conf()).map(|(p, v)| Term::List(vec![Term::tuple([Term::Pid(p), v])]));
        if matches!(&l, Term::List(v) if v.len() == 1) && Some(&l) == rust_side.as_ref() { Ok(()) } else { Err(format!("elixir {l:?}, rust {rust_side:?}")) }
    })
    .await;
    let winner = reg.whereis(&conf()).expect("an owner");
    let conflict = |key: &str, value: Term, winner: &Pid| {
        Term::tuple([
            Term::atom("name_conflict"),
            Term::tuple([Term::binary(key.as_bytes().to_vec()), value]),
            Term::atom(&format!("Elixir.{REG}")),
            Term::Pid(winner.clone()),
        ])
    };
    if winner == ex_owner {
        let got = rust_owner
            .recv_match(T, |m| match m.as_tuple() {
                Some([t, _, reason]) if t.is_atom("EXIT") => Some(reason.clone()),
                _ => None,
            })
            .await
            .expect("the Rust owner gets the exit");
        assert_eq!(got, conflict("conf", Term::atom("rust_value"), &ex_owner));
        println!("netsplit conflict: the Elixir registration won; the Rust owner got {got:?}");
    } else {
        assert_eq!(&winner, rust_owner.pid());
        poll("the Elixir owner gets the exit", T, || async {
            let got = ex.eval_elixir(":persistent_term.get(:conf_exit, :none)").await;
            if got.is_atom("none") { Err("no exit yet".into()) } else { Ok(()) }
        })
        .await;
        let got = ex.eval_elixir(":persistent_term.get(:conf_exit, :none)").await;
        assert_eq!(got, conflict("conf", Term::atom("elixir_value"), rust_owner.pid()));
        println!("netsplit conflict: the Rust registration won; the Elixir owner got {got:?}");
    }
    r1.shutdown().await;
}

/// A new member joining a large registry: the time until it holds every
/// key, an Elixir node and then an erlnode node. `HORDE_JOIN_KEYS` keys
/// (default 20,000; the acceptance size, 100,000, takes a few minutes).
#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs HORDE_LIBS: make test-horde HORDE_LIBS=DIR"]
async fn joining_a_large_registry_elixir_then_rust() {
    let n: i64 = std::env::var("HORDE_JOIN_KEYS").ok().and_then(|v| v.parse().ok()).unwrap_or(20_000);
    let _ = tracing_subscriber::fmt().with_env_filter(std::env::var("HLOG").unwrap_or("warn".into())).try_init();
    // Horde fills and joins at a few hundred keys a second on this
    // machine: each wait is allowed 600 s or 1 s per 50 keys.
    let wait = Duration::from_secs(600.max(n as u64 / 50));
    let ebins = horde_libs();
    let epmd = Epmd::start().await;
    let cookie = support::unique("cookie");
    let ex = horde_node("hja", &cookie, epmd.port(), &ebins).await;
    // Filled in bulk through the CRDT (what N `register/3` calls would
    // write, `{:key, i} => {{Reg, node}, owner, nil}`), in chunks, each
    // key with its own owner process as in real use. (One owner for all
    // keys makes Horde quadratic: each node keeps a list of every key of
    // a pid and copies it out of ETS for each key it adds.)
    // `HORDE_JOIN_ONE_OWNER=1` measures that case.
    let owner = if std::env::var_os("HORDE_JOIN_ONE_OWNER").is_some() { "one" } else { "spawn(fn -> Process.sleep(:infinity) end)" };
    ex.eval_elixir(&format!(
        r#"one = spawn(fn -> Process.sleep(:infinity) end)
           for c <- Enum.chunk_every(1..{n}, 2_000) do
             entries = Map.new(c, fn i -> {{{{:key, i}}, {{{{{REG}, node()}}, {owner}, nil}}}} end)
             DeltaCrdt.merge(:"Elixir.{REG}.Crdt", entries, :infinity)
           end
           :ok"#
    ))
    .await;
    let fill = poll("every key on the first node", wait, || async {
        let c = int(&ex.eval_elixir(&format!("Horde.Registry.count({REG})")).await);
        if c == n { Ok(()) } else { Err(c.to_string()) }
    })
    .await;
    println!("{n} keys written on the first Elixir node; its registry held them all {fill:?} later");

    let mut ex2 = horde_node("hjb", &cookie, epmd.port(), &ebins).await;
    assert_eq!(ex2.eval_elixir(&format!(r#"Node.connect(:"{}")"#, ex.name())).await, Term::atom("true"));
    let elixir_join = poll("the Elixir node holds every key", wait, || async {
        let c = int(&ex2.eval_elixir(&format!("Horde.Registry.count({REG})")).await);
        if c == n { Ok(()) } else { Err(c.to_string()) }
    })
    .await;
    ex2.kill().await;

    let r1 = support::rust_node("hj1", &cookie, epmd.port()).await;
    let reg = HordeRegistry::builder(REG).start(&r1).expect("registry");
    r1.connect(ex.name()).await.expect("connect");
    let rust_join = poll("the Rust node holds every key", wait, || async {
        let c = reg.count() as i64;
        if c == n { Ok(()) } else { Err(c.to_string()) }
    })
    .await;
    println!("joining a registry of {n} keys: Elixir node {elixir_join:?}, erlnode node {rust_join:?} ({} build)", if cfg!(debug_assertions) { "debug" } else { "release" });
    assert_eq!(reg.lookup(&Term::Int(n / 2 + 1)).map(|(_, v)| v), Some(Term::atom("nil")));
    r1.shutdown().await;
}

/// Bad input to the Rust CRDT from a BEAM node (an unknown message, a
/// diff with a malformed tree, a diff over the size limit, data that is
/// not an AWLWWMap): each is dropped with a warning and the peer keeps
/// syncing; and `erlnode run --register-echo-horde` serves via-calls.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs HORDE_LIBS: make test-horde HORDE_LIBS=DIR"]
async fn bad_input_is_dropped_and_the_cli_member_keeps_serving() {
    let ebins = horde_libs();
    let epmd = Epmd::start().await;
    let cookie = support::unique("cookie");
    let ex = horde_node("hba", &cookie, epmd.port(), &ebins).await;
    let rust = format!("{}@127.0.0.1", support::unique("hbr"));
    let mut cli = crate::support::Erlnode::run(&rust, &cookie, epmd.port(), &["--no-embedded-epmd", "--register-echo-horde", &format!("{REG}/cli-echo")]).await;
    cli.wait_for_line("echo registered in the Horde registry", T).await.expect("the echo is registered");
    assert_eq!(ex.eval_elixir(&format!(r#"Node.connect(:"{rust}")"#)).await, Term::atom("true"));
    let call = format!(r#"GenServer.call({{:via, Horde.Registry, {{{REG}, "cli-echo"}}}}, :hello)"#);
    poll("the CLI's echo reachable by a via-call", T, || async {
        match ex.try_eval_elixir(&call).await {
            Ok(t) if t == Term::tuple([Term::atom("echo"), Term::atom("hello")]) => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    let crdt = format!("{{:\"Elixir.{REG}.Crdt\", :\"{rust}\"}}");
    ex.eval_elixir(&format!(
        r#"to = {crdt}
           send(to, :hello)
           send(to, {{:diff, %DeltaCrdt.CausalCrdt.Diff{{continuation: %MerkleMap.MerkleTree.Diff{{trees: [{{"", %MerkleMap.MerkleTree{{tree: {{1, 2, 3, 4}}}}}}]}}, dots: %{{}}, originator: self(), from: self(), to: to}}}})
           send(to, {{:diff, %DeltaCrdt.CausalCrdt.Diff{{continuation: %MerkleMap.MerkleTree.Diff{{keys: Enum.to_list(1..2_200_000)}}, dots: %{{}}, originator: self(), from: self(), to: to}}}})
           send(to, {{:diff, %{{not: :a_crdt}}, [1]}})
           :ok"#
    ))
    .await;
    for what in ["not a DeltaCrdt message", "4-tuple in a tree", "over the limit", "not an %AWLWWMap{}"] {
        cli.wait_for_line(what, T).await.unwrap_or_else(|e| panic!("no warning for {what}: {e}"));
    }
    // Still serving: the same CRDT process (monitored, no DOWN), its
    // registry answers Horde's `:members` call, the echo answers.
    let alive = ex
        .eval_elixir(&format!(
            r#"ref = Process.monitor({crdt})
               members = GenServer.call({{:"Elixir.{REG}", :"{rust}"}}, :members)
               echo = {call}
               down = receive do {{:DOWN, ^ref, _, _, r}} -> r after 1000 -> :none end
               {{length(members), echo, down}}"#
        ))
        .await;
    assert_eq!(alive, Term::tuple([Term::Int(2), Term::tuple([Term::atom("echo"), Term::atom("hello")]), Term::atom("none")]));
    // DeltaCrdt's read calls are answered (erlnode's Elixir library asks a
    // peer's replica whether a write reached it); other calls are not.
    let read = ex
        .eval_elixir(&format!(
            r#"to = {crdt}
               {{:"Elixir.{REG}", _}} = DeltaCrdt.get(to, {{:key, "cli-echo"}}) |> elem(0)
               map = DeltaCrdt.to_map(to)
               none = DeltaCrdt.read(to, [{{:key, "no such key"}}])
               other = try do GenServer.call(to, :bogus, 500) catch :exit, {{:timeout, _}} -> :timeout end
               {{map_size(map) >= 3, none, other}}"#
        ))
        .await;
    assert_eq!(read, Term::tuple([Term::atom("true"), Term::Map(vec![]), Term::atom("timeout")]));
    cli.wait_for_line("call not served", T).await.expect("the unknown call is logged");
    assert!(!cli.output().iter().any(|l| l.contains("panicked")), "the CLI node panicked");
    cli.kill().await;
}
