//! Issue 13, item 4: an EPMD like the BEAM's. `erlnode run` with nothing
//! listening on the EPMD port starts `erlnode epmd` as a separate process
//! that outlives the node (as `erl` starts `epmd -daemon`), so BEAM nodes
//! registered with it keep finding each other after the Rust node stops.
//!
//! The daemon is not a child of the test: it is stopped by the pid the
//! node logs, when the test ends, also on failure.

use crate::support::{self, pid_alive, send_signal, wait_pid_gone, BeamNode, Erlnode, SIGKILL, SIGTERM};
use erlnode::Term;
use std::time::Duration;

const T: Duration = Duration::from_secs(30);

/// Kills a process that is not our child by pid when dropped.
struct KillOnDrop(u32);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        send_signal(self.0, SIGKILL);
    }
}

/// The `pid=N` field of a log line.
fn pid_in(line: &str) -> u32 {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix("pid="))
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no pid in {line:?}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn the_epmd_erlnode_run_starts_outlives_it() {
    support::require_erlang();
    let port = support::free_port();
    let cookie = support::unique("cookie");
    let name = format!("{}@127.0.0.1", support::unique("rust"));
    let mut node = Erlnode::run(&name, &cookie, port, &[]).await;
    let line = node.wait_for_line("started an EPMD daemon", T).await.unwrap();
    let daemon = KillOnDrop(pid_in(&line));
    assert!(pid_alive(daemon.0));
    assert_ne!(daemon.0, node.os_pid());

    let first = BeamNode::builder().prefix("first").cookie(&cookie).epmd_port(port).start().await;
    assert_eq!(first.eval(&format!("net_adm:ping('{name}')")).await, Term::atom("pong"));
    assert!(node.signal(SIGTERM));
    assert!(node.wait_exit(T).await.is_some(), "erlnode exits on SIGTERM");
    assert!(pid_alive(daemon.0), "the EPMD daemon outlives the node");

    // A node started afterwards finds the first one through the daemon.
    let second = BeamNode::builder().prefix("second").cookie(&cookie).epmd_port(port).start().await;
    let short = first.name().split('@').next().unwrap().to_string();
    let r = second
        .eval(&format!(
            "{{net_adm:ping('{}'), case erl_epmd:names(\"127.0.0.1\") of {{ok, Ns}} -> lists:keymember(\"{short}\", 1, Ns); E -> E end}}",
            first.name()
        ))
        .await;
    assert_eq!(r, Term::tuple([Term::atom("pong"), Term::atom("true")]));

    // `epmd -kill` is refused while nodes are registered, as epmd does.
    let kill = support::Erlnode::spawn_program("epmd", ["-port", &port.to_string(), "-kill"], &[]);
    kill.wait_for_line("not", T).await.expect("epmd -kill refused");
    assert!(pid_alive(daemon.0));
    drop(second);
    drop(first);
    assert!(send_signal(daemon.0, SIGTERM));
    assert!(wait_pid_gone(daemon.0, T).await, "the daemon stops on SIGTERM");
}

#[tokio::test(flavor = "multi_thread")]
async fn erlnode_epmd_daemon_serves_beam_nodes_and_stops_on_epmd_kill() {
    support::require_erlang();
    let port = support::free_port();
    let cookie = support::unique("cookie");
    let mut start = Erlnode::spawn(["epmd", "--daemon", "--port", &port.to_string()]);
    assert!(start.wait_exit(T).await.expect("--daemon returns").success());
    let out = start.output();
    let pid: u32 = out.iter().find_map(|l| l.trim().parse().ok()).unwrap_or_else(|| panic!("no pid printed: {out:?}"));
    let daemon = KillOnDrop(pid);
    assert!(pid_alive(daemon.0));
    // A second --daemon finds it running and starts nothing.
    let mut again = Erlnode::spawn(["epmd", "--daemon", "--port", &port.to_string()]);
    assert!(again.wait_exit(T).await.expect("--daemon returns").success());
    assert!(again.output().iter().any(|l| l.contains("already answers")), "{:?}", again.output());

    let a = BeamNode::builder().cookie(&cookie).epmd_port(port).start().await;
    let b = BeamNode::builder().cookie(&cookie).epmd_port(port).start().await;
    assert_eq!(a.eval(&format!("net_adm:ping('{}')", b.name())).await, Term::atom("pong"));
    drop(a);
    drop(b);
    // With no node left, `epmd -kill` stops it (the names go when the
    // nodes' registration connections close).
    let mut killed = false;
    for _ in 0..50 {
        let kill = Erlnode::spawn_program("epmd", ["-port", &port.to_string(), "-kill"], &[]);
        if kill.wait_for_line("Killed", Duration::from_secs(5)).await.is_ok() {
            killed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(killed, "epmd -kill stops an idle daemon");
    assert!(wait_pid_gone(daemon.0, T).await);
}

/// A shell (as uid 65534, via `setpriv`) that opens `n` EPMD connections
/// and sends ALIVE2 for `h000`, `h001`... on each, prints `done`, then
/// keeps them open.
fn register_flood_as_nobody(port: u16, n: usize) -> Erlnode {
    // ALIVE2_REQ: len 17, 120, port 9999, 77 (normal), 0 (tcp), 6, 5,
    // name length 4, name, no extra.
    let script = format!(
        "for i in $(seq 0 {last}); do
             exec {{fd}}<>/dev/tcp/127.0.0.1/{port} || break
             printf '\\000\\021\\170\\047\\017\\115\\000\\000\\006\\000\\005\\000\\004h%03d\\000\\000' $i >&$fd
         done
         echo done
         exec sleep 1000",
        last = n - 1
    );
    Erlnode::spawn_program("setpriv", ["--reuid=65534", "--regid=65534", "--clear-groups", "bash", "-c", &script], &[])
}

#[tokio::test(flavor = "multi_thread")]
async fn one_user_cannot_take_every_registration_slot() {
    support::require_erlang();
    let uid = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find_map(|l| l.strip_prefix("Uid:")).and_then(|v| v.split_whitespace().next()).map(str::to_string));
    assert_eq!(uid.as_deref(), Some("0"), "this test runs a client as uid 65534 with setpriv: run it as root (as `make test` does in CI)");
    let port = support::free_port();
    let cookie = support::unique("cookie");
    let daemon = Erlnode::spawn(["epmd", "--port", &port.to_string(), "--max-registrations", "16", "--max-registrations-per-uid", "8"]);
    daemon.wait_for_line("EPMD listening", T).await.unwrap();
    let flood = register_flood_as_nobody(port, 16);
    flood.wait_for_line("done", T).await.unwrap();
    // The ninth name was refused, so the first eight are in.
    daemon.wait_for_line("this user holds its share of the registrations", T).await.unwrap();
    let client = erlnode::epmd::EpmdClient::new("127.0.0.1", port);
    let held: Vec<String> = client.names().await.unwrap().into_iter().map(|(n, _)| n).filter(|n| n.starts_with('h')).collect();
    assert_eq!(held.len(), 8, "uid 65534 holds its share and no more: {held:?}");
    // Another user still registers (the test's nodes run as another uid).
    let a = BeamNode::builder().cookie(&cookie).epmd_port(port).start().await;
    let b = BeamNode::builder().cookie(&cookie).epmd_port(port).start().await;
    assert_eq!(a.eval(&format!("net_adm:ping('{}')", b.name())).await, Term::atom("pong"));
    drop(flood);
}
