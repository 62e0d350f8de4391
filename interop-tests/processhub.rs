//! Opt-in tests against the real ProcessHub (0.4.1-beta).
//!
//! ProcessHub is GPL-3.0 and on no registry these machines reach, so it is
//! neither vendored nor built here: `PROCESSHUB_LIBS` names a folder of
//! its compiled applications, one `<app>/ebin` per application
//! (process_hub, blockade, hash_ring, elector), built by hand for the
//! host's OTP. Unset, every test here says it was not run and passes;
//! `make test-processhub PROCESSHUB_LIBS=DIR` runs them.
//!
//! For now this is the plumbing: Elixir hub nodes only (the Rust member
//! comes with issue 10).

use crate::support::{binaries_to_strings as strings, BeamNode, Epmd};
use erlnode::term::Term;
use std::path::PathBuf;
use std::time::{Duration, Instant};

const HUB: &str = "ph_smoke";

/// The `ebin` folders under `PROCESSHUB_LIBS`. These tests are
/// `#[ignore]`d with the reason (cargo prints it) so `cargo test` never
/// passes them silently; `make test-processhub PROCESSHUB_LIBS=DIR` runs
/// them with `--include-ignored`. A set but unusable folder fails the test.
fn processhub_libs() -> Option<Vec<PathBuf>> {
    let Some(dir) = std::env::var_os("PROCESSHUB_LIBS").filter(|v| !v.is_empty()) else {
        panic!("PROCESSHUB_LIBS is unset: run `make test-processhub PROCESSHUB_LIBS=DIR` (DIR/<app>/ebin)");
    };
    let dir = PathBuf::from(dir);
    let mut ebins: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("PROCESSHUB_LIBS={}: {e}", dir.display()))
        .filter_map(|e| Some(e.ok()?.path().join("ebin")))
        .filter(|p| p.is_dir())
        .collect();
    ebins.sort();
    for app in ["process_hub", "blockade", "hash_ring"] {
        let app_file = dir.join(app).join("ebin").join(format!("{app}.app"));
        assert!(
            app_file.exists(),
            "PROCESSHUB_LIBS={}: no {} (expected <dir>/<app>/ebin for process_hub, blockade, hash_ring)",
            dir.display(),
            app_file.display()
        );
    }
    Some(ebins)
}

/// An Elixir node on the host's OTP with ProcessHub loaded and started.
async fn hub_node(prefix: &str, cookie: &str, epmd: u16, ebins: &[PathBuf]) -> BeamNode {
    // The libraries are compiled for the host's release (OTP 25).
    let mut b = BeamNode::builder().prefix(prefix).cookie(cookie).epmd_port(epmd).elixir(true).otp(25);
    for p in ebins {
        b = b.code_path(p);
    }
    let node = b.start().await;
    let r = node.eval_elixir("Application.ensure_all_started(:process_hub)").await;
    assert!(is_ok_tuple(&r), "{}: ProcessHub does not start: {r:?}", node.name());
    node
}

/// Starts hub `HUB` on `node`, owned by a process that outlives the eval.
async fn start_hub(node: &BeamNode) {
    let r = node
        .eval_elixir(&format!(
            r#"parent = self()
               spawn(fn ->
                 Process.flag(:trap_exit, true)
                 send(parent, {{:hub, ProcessHub.start_link(%ProcessHub{{hub_id: :{HUB}}})}})
                 Process.sleep(:infinity)
               end)
               receive do {{:hub, r}} -> r after 10_000 -> :timeout end"#
        ))
        .await;
    assert!(is_ok_tuple(&r), "{}: hub does not start: {r:?}", node.name());
}

fn is_ok_tuple(t: &Term) -> bool {
    matches!(t.as_tuple(), Some([ok, _]) if ok.is_atom("ok"))
}

/// `ProcessHub.nodes/1` on `node`, as sorted strings.
async fn hub_nodes(node: &BeamNode) -> Vec<String> {
    strings(
        &node
            .eval_elixir(&format!("ProcessHub.nodes(:{HUB}) |> Enum.map(&Atom.to_string/1) |> Enum.sort()"))
            .await,
    )
}

/// Polls `ProcessHub.nodes/1` on `node` until it equals `expected`.
async fn await_hub_nodes(node: &BeamNode, expected: &[&str], within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let got = hub_nodes(node).await;
        if got == expected {
            return;
        }
        assert!(Instant::now() < deadline, "{}: ProcessHub.nodes is {got:?}, expected {expected:?}", node.name());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The node each of `children` runs on according to `node`'s registry
/// (`""` for a child it does not know).
async fn child_nodes(node: &BeamNode, children: usize) -> Vec<String> {
    strings(
        &node
            .eval_elixir(&format!(
                r#"for i <- 1..{children} do
                     case ProcessHub.get_pid(:{HUB}, "s#{{i}}") do
                       pid when is_pid(pid) -> Atom.to_string(node(pid))
                       _ -> ""
                     end
                   end"#
            ))
            .await,
    )
}

/// Two Elixir hub nodes find each other (`ProcessHub.nodes/1`), spread
/// children over both, and one leaves gracefully: its children restart on
/// the other. This checks `PROCESSHUB_LIBS` and the harness, not erlnode.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs PROCESSHUB_LIBS: make test-processhub PROCESSHUB_LIBS=DIR"]
async fn processhub_two_elixir_hubs_smoke() {
    let Some(ebins) = processhub_libs() else { return };
    let epmd = Epmd::start().await;
    let cookie = crate::support::unique("phcookie");
    let mut a = hub_node("pha", &cookie, epmd.port(), &ebins).await;
    let mut b = hub_node("phb", &cookie, epmd.port(), &ebins).await;
    // Hubs first, then the connection: pg discovery then shows each
    // coordinator to the other at once (ProcessHub 0.4.1 races otherwise).
    start_hub(&a).await;
    start_hub(&b).await;
    let r = a.eval(&format!("net_kernel:connect_node('{}')", b.name())).await;
    assert!(r.is_atom("true"), "connect: {r:?}");
    let within = Duration::from_secs(15);
    await_hub_nodes(&a, &[b.name()], within).await;
    await_hub_nodes(&b, &[a.name()], within).await;

    const N: usize = 16;
    let r = a
        .eval_elixir(&format!(
            r#"specs = for i <- 1..{N}, do: %{{id: "s#{{i}}", start: {{Agent, :start_link, [fn -> i end]}}}}
               r = ProcessHub.start_children(:{HUB}, specs, awaitable: true) |> ProcessHub.await()
               {{r.status, r.started |> Enum.flat_map(fn {{_, l}} -> Keyword.keys(l) end)
                 |> Enum.uniq() |> Enum.map(&Atom.to_string/1) |> Enum.sort()}}"#
        ))
        .await;
    let Some([status, nodes]) = r.as_tuple() else { panic!("start_children: {r:?}") };
    assert!(status.is_atom("ok"), "start_children: {r:?}");
    let mut expected = vec![a.name().to_string(), b.name().to_string()];
    expected.sort();
    assert_eq!(strings(nodes), expected, "{N} children land on both nodes");
    // Both registries agree (registration events are asynchronous).
    let deadline = Instant::now() + within;
    loop {
        let (on_a, on_b) = (child_nodes(&a, N).await, child_nodes(&b, N).await);
        if on_a == on_b && !on_a.contains(&String::new()) {
            break;
        }
        assert!(Instant::now() < deadline, "registries differ:\n a: {on_a:?}\n b: {on_b:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // b leaves gracefully: a takes over all the children.
    let r = b.eval_elixir(&format!("ProcessHub.stop(:{HUB})")).await;
    assert!(r.is_atom("ok"), "ProcessHub.stop: {r:?}");
    await_hub_nodes(&a, &[], within).await;
    let deadline = Instant::now() + within;
    loop {
        let on_a = child_nodes(&a, N).await;
        if on_a.iter().all(|n| n == a.name()) {
            break;
        }
        assert!(Instant::now() < deadline, "after b left, children on {on_a:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    a.stop().await;
    b.stop().await;
}
