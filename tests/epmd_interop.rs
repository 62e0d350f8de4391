//! EPMD interop with real Erlang/OTP: our client against the real `epmd`,
//! and real `erl` nodes against our embedded server.
//!
//! These tests need `erl` and `epmd` on PATH and fail (never skip) without
//! them, so a CI machine missing Erlang is noticed. Every OS process they
//! start is owned by a guard that kills it by pid on drop, panics included,
//! and every port/name/cookie is unique so the tests run in parallel.

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use erlnode::epmd::{EpmdClient, EpmdError, EpmdServer, NodeKind};
use tokio::sync::mpsc;

mod common;
use common::free_port;

/// Bound on every wait for an external process (BEAM boot is ~1 s, but CI
/// machines can be slow).
const WAIT: Duration = Duration::from_secs(60);

/// `RUST_LOG=erlnode=debug` shows the embedded server's side.
fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

fn require(program: &str) -> PathBuf {
    init_tracing();
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "`{program}` not found on PATH: the EPMD interop tests need Erlang/OTP \
                 installed (e.g. `apt-get install erlang-base`)"
            )
        })
}

/// A name fragment no other test (or concurrent test run) uses.
fn unique(prefix: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!(
        "{prefix}_{}_{}_{nanos}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// Owns a child process: kills it by pid and reaps it when dropped.
struct ChildGuard {
    what: String,
    child: Child,
    stdin: Option<ChildStdin>,
    /// Lines from stdout and stderr, in arrival order.
    lines: mpsc::UnboundedReceiver<String>,
    seen: Vec<String>,
}

impl ChildGuard {
    fn spawn(what: &str, mut cmd: Command) -> ChildGuard {
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {what}: {e}"));
        let (tx, rx) = mpsc::unbounded_channel();
        let out = child.stdout.take().unwrap();
        let err = child.stderr.take().unwrap();
        let tx2 = tx.clone();
        std::thread::spawn(move || forward_lines(out, tx));
        std::thread::spawn(move || forward_lines(err, tx2));
        ChildGuard {
            what: what.to_owned(),
            stdin: child.stdin.take(),
            child,
            lines: rx,
            seen: Vec::new(),
        }
    }

    fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    fn send_line(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin open");
        writeln!(stdin, "{line}")
            .and_then(|_| stdin.flush())
            .unwrap_or_else(|e| panic!("{} stdin: {e}; output so far: {:?}", self.what, self.seen));
    }

    /// Waits for an output line satisfying `pred`; panics with all output
    /// seen if the process exits or `WAIT` passes first.
    async fn expect_line(&mut self, pred: impl Fn(&str) -> bool) -> String {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            match tokio::time::timeout_at(deadline, self.lines.recv()).await {
                Ok(Some(line)) => {
                    self.seen.push(line.clone());
                    if pred(&line) {
                        return line;
                    }
                }
                Ok(None) => panic!("{} exited; output: {:#?}", self.what, self.seen),
                Err(_) => panic!("{} timed out; output: {:#?}", self.what, self.seen),
            }
        }
    }

    /// Collects all output until the process closes stdout and stderr.
    async fn output(&mut self) -> String {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            match tokio::time::timeout_at(deadline, self.lines.recv()).await {
                Ok(Some(line)) => self.seen.push(line),
                Ok(None) => return self.seen.join("\n"),
                Err(_) => panic!("{} timed out; output: {:#?}", self.what, self.seen),
            }
        }
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        // Child::kill signals exactly this pid (SIGKILL); wait reaps it.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn forward_lines(src: impl std::io::Read, tx: mpsc::UnboundedSender<String>) {
    for line in BufReader::new(src).lines() {
        match line {
            Ok(l) => {
                if tx.send(l).is_err() {
                    return;
                }
            }
            Err(_) => return,
        }
    }
}

/// Starts the real `epmd` in the foreground on a fresh port and waits
/// until it answers. Retries on a new port if the chosen one was taken
/// in the meantime (epmd then exits at once).
async fn start_real_epmd() -> (ChildGuard, EpmdClient) {
    let epmd = require("epmd");
    for _ in 0..5 {
        let port = free_port();
        let mut cmd = Command::new(&epmd);
        cmd.args(["-port", &port.to_string()]);
        let mut guard = ChildGuard::spawn("epmd", cmd);
        let client = EpmdClient::new("127.0.0.1", port);
        for _ in 0..500 {
            if !guard.is_running() {
                break;
            }
            if client.names().await.is_ok() {
                return (guard, client);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    panic!("could not start a real epmd on a free port");
}

/// `erl` configured to use the EPMD on `epmd_port` and never start one.
fn erl_command(epmd_port: u16, extra: &[&str]) -> Command {
    let mut cmd = Command::new(require("erl"));
    cmd.env("ERL_EPMD_PORT", epmd_port.to_string())
        .args(["-noshell", "-start_epmd", "false"])
        .args(extra);
    cmd
}

/// Bounded poll of `names()` until `pred` holds; returns the last list.
async fn wait_for_names(
    client: &EpmdClient,
    what: &str,
    pred: impl Fn(&[(String, u16)]) -> bool,
) -> Vec<(String, u16)> {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let names = client.names().await.expect("names");
        if pred(&names) {
            return names;
        }
        if tokio::time::Instant::now() >= deadline {
            panic!("timed out waiting for {what}; names: {names:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn our_client_against_real_epmd() {
    let (_epmd, client) = start_real_epmd().await;
    let name = unique("rustnode");
    let hidden = unique("rusthidden");

    let reg = client
        .register(&name, 45_123, NodeKind::Normal)
        .await
        .unwrap();
    assert_ne!(reg.creation(), 0);
    // OTP 25 epmd answers version-6 registrants with ALIVE2_X_RESP whose
    // creation is at least 4 (the 1..=3 range is for ALIVE2_RESP).
    assert!(reg.creation() >= 4, "creation {}", reg.creation());
    let _hidden_reg = client
        .register(&hidden, 45_124, NodeKind::Hidden)
        .await
        .unwrap();

    let entry = client
        .port_please(&name)
        .await
        .unwrap()
        .expect("registered");
    assert_eq!(entry.port, 45_123);
    assert_eq!(entry.kind, NodeKind::Normal);
    assert_eq!(entry.protocol, 0);
    assert_eq!((entry.highest_version, entry.lowest_version), (6, 6));
    assert_eq!(entry.name, name);
    assert!(entry.extra.is_empty());
    assert_eq!(
        client.port_please(&hidden).await.unwrap().unwrap().kind,
        NodeKind::Hidden
    );
    assert_eq!(client.port_please(&unique("nobody")).await.unwrap(), None);

    let (epmd_port, names) = client.names_with_port().await.unwrap();
    assert_eq!(epmd_port, client.port() as u32);
    assert!(names.contains(&(name.clone(), 45_123)), "{names:?}");
    assert!(names.contains(&(hidden.clone(), 45_124)), "{names:?}");

    let err = client
        .register(&name, 1, NodeKind::Normal)
        .await
        .unwrap_err();
    assert!(matches!(err, EpmdError::NameTaken { .. }), "{err:?}");

    // Erlang's own view of the same daemon.
    let mut erl = ChildGuard::spawn(
        "erl (erl_epmd:names)",
        erl_command(
            client.port(),
            &["-eval", r#"io:format("~p~n", [erl_epmd:names()]), halt()."#],
        ),
    );
    let out = erl.output().await;
    assert!(
        out.contains(&format!("{{\"{name}\",45123}}")),
        "erl_epmd:names() did not list {name}: {out}"
    );
    assert!(out.contains(&format!("{{\"{hidden}\",45124}}")), "{out}");

    // Closing unregisters by the time close() returns.
    reg.close().await.unwrap();
    assert_eq!(client.port_please(&name).await.unwrap(), None);
    let reg2 = client
        .register(&name, 45_125, NodeKind::Normal)
        .await
        .unwrap();
    assert_eq!(
        client.port_please(&name).await.unwrap().unwrap().port,
        45_125
    );
    drop(reg2);
    wait_for_names(&client, "drop to unregister", |n| {
        !n.iter().any(|(x, _)| *x == name)
    })
    .await;
}

/// Erlang script for a node that, on each line from stdin, pings `peer`
/// and reports the result, and also asks EPMD for `peer`'s port.
fn pinger_script(peer_short: &str) -> String {
    format!(
        r#"Peer = list_to_atom("{peer_short}@127.0.0.1"),
           io:format("READY~n"),
           _ = io:get_line(""),
           io:format("LOOKUP ~p~n", [erl_epmd:port_please("{peer_short}", {{127,0,0,1}})]),
           io:format("PING ~p~n", [net_adm:ping(Peer)]),
           _ = io:get_line(""),
           halt()."#
    )
}

fn start_node(epmd_port: u16, short: &str, peer_short: &str, cookie: &str) -> ChildGuard {
    let name = format!("{short}@127.0.0.1");
    let script = pinger_script(peer_short);
    ChildGuard::spawn(
        &format!("erl node {name}"),
        erl_command(
            epmd_port,
            &["-name", &name, "-setcookie", cookie, "-eval", &script],
        ),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_nodes_use_embedded_epmd() {
    require("erl");
    let server = EpmdServer::bind("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap()
        .spawn();
    let port = server.local_addr().port();
    let client = EpmdClient::new("127.0.0.1", port);

    let a = unique("a");
    let b = unique("b");
    let cookie = unique("cookie");
    let mut node_a = start_node(port, &a, &b, &cookie);
    let mut node_b = start_node(port, &b, &a, &cookie);

    // Both nodes register with our EPMD during boot.
    let names = wait_for_names(&client, "both nodes to register", |n| {
        n.iter().any(|(x, _)| *x == a) && n.iter().any(|(x, _)| *x == b)
    })
    .await;
    let port_of = |who: &str| names.iter().find(|(x, _)| x == who).unwrap().1;
    let entry_a = client.port_please(&a).await.unwrap().expect("a registered");
    assert_eq!(entry_a.port, port_of(&a));
    assert_eq!(entry_a.kind, NodeKind::Normal);
    assert_eq!(entry_a.highest_version, 6);
    node_a.expect_line(|l| l == "READY").await;
    node_b.expect_line(|l| l == "READY").await;

    // a finds b through our EPMD and connects.
    node_a.send_line("go");
    let lookup = node_a.expect_line(|l| l.starts_with("LOOKUP")).await;
    assert_eq!(lookup, format!("LOOKUP {{port,{},6}}", port_of(&b)));
    let ping = node_a.expect_line(|l| l.starts_with("PING")).await;
    assert_eq!(ping, "PING pong", "a -> b");

    node_b.send_line("go");
    let lookup = node_b.expect_line(|l| l.starts_with("LOOKUP")).await;
    assert_eq!(lookup, format!("LOOKUP {{port,{},6}}", port_of(&a)));
    let ping = node_b.expect_line(|l| l.starts_with("PING")).await;
    assert_eq!(ping, "PING pong", "b -> a");

    // A killed node's registration disappears with its connection.
    drop(node_a);
    wait_for_names(&client, "killed node to unregister", |n| {
        !n.iter().any(|(x, _)| *x == a) && n.iter().any(|(x, _)| *x == b)
    })
    .await;

    node_b.send_line("done");
    drop(node_b);
    server.shutdown_and_wait().await;
}

#[tokio::test]
async fn epmd_names_cli_reads_embedded_server() {
    // `epmd -names` is the operator's tool; it must understand our reply.
    let epmd = require("epmd");
    let server = EpmdServer::bind("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap()
        .spawn();
    let port = server.local_addr().port();
    let client = EpmdClient::new("127.0.0.1", port);
    let name = unique("listed");
    let _reg = client
        .register(&name, 40_001, NodeKind::Normal)
        .await
        .unwrap();

    let mut cmd = Command::new(epmd);
    cmd.args(["-port", &port.to_string(), "-names"]);
    let mut cli = ChildGuard::spawn("epmd -names", cmd);
    let out = cli.output().await;
    assert!(
        out.contains(&format!("up and running on port {port}")),
        "{out}"
    );
    assert!(out.contains(&format!("name {name} at port 40001")), "{out}");
}
