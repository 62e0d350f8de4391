//! Proves the test harness itself works: real epmd, real BEAM nodes, the
//! eval protocol, and that nothing started is left behind.

use crate::support::{self, BeamNode, Epmd, Erlnode};
use erlnode::term::Term;
use std::time::Duration;

fn atom(s: &str) -> Term {
    Term::atom(s)
}

#[tokio::test(flavor = "multi_thread")]
async fn unique_names_are_unique_and_valid() {
    let a = support::unique("ex");
    let b = support::unique("ex");
    assert_ne!(a, b);
    assert!(a.starts_with(&format!("ex_{}_", std::process::id())), "{a}");
    assert!(
        a.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'),
        "{a}"
    );
    assert_eq!(
        support::hex_decode(&support::hex_encode(b"\x00\xffab")).unwrap(),
        b"\x00\xffab"
    );
    assert!(support::free_port() > 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn epmd_starts_lists_nodes_and_is_killed_on_drop() {
    support::require_erlang();
    let epmd = Epmd::start().await;
    let pid = epmd.os_pid();
    assert!(support::pid_alive(pid));
    let node = BeamNode::builder()
        .prefix("reg")
        .epmd_port(epmd.port())
        .start()
        .await;
    let short = node.name().split('@').next().unwrap().to_string();
    let names = epmd.names().await;
    assert!(
        names.contains(&format!("name {short} at port")),
        "epmd -names: {names}"
    );
    drop(node);
    drop(epmd);
    assert!(
        !support::pid_alive(pid),
        "epmd {pid} still running after drop"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn eval_returns_exact_term_to_binary_bytes() {
    let node = BeamNode::builder().prefix("raw").start().await;
    // 131 = version, 97 = SMALL_INTEGER_EXT
    assert_eq!(node.eval_raw("1+1").await.unwrap(), vec![131, 97, 2]);
    // a trailing dot is optional; bindings persist across requests
    assert_eq!(node.eval_raw("X = 40.").await.unwrap(), vec![131, 97, 40]);
    assert_eq!(node.eval_raw("X + 2").await.unwrap(), vec![131, 97, 42]);
    // newlines, quotes and comments survive transport
    let bytes = node
        .eval_raw("Y = \"a\nb\", % comment\n length(Y)")
        .await
        .unwrap();
    assert_eq!(bytes, vec![131, 97, 3]);
    // other stdout output (io:format, logger) is not mistaken for a reply
    let bytes = node
        .eval_raw("io:format(\"noise~nmore noise~n\"), logger:error(\"a log line\"), 7")
        .await
        .unwrap();
    assert_eq!(bytes, vec![131, 97, 7]);
    assert_eq!(node.eval_raw("X").await.unwrap(), vec![131, 97, 40]);
}

#[tokio::test(flavor = "multi_thread")]
async fn eval_and_ping_between_two_nodes() {
    let epmd = Epmd::start().await;
    let cookie = support::unique("cookie");
    let a = BeamNode::builder()
        .prefix("a")
        .cookie(&cookie)
        .epmd_port(epmd.port())
        .start()
        .await;
    let b = BeamNode::builder()
        .prefix("b")
        .cookie(&cookie)
        .epmd_port(epmd.port())
        .start()
        .await;
    assert_eq!(a.cookie(), cookie);

    assert_eq!(a.eval("1+1").await, Term::Int(2));
    assert_eq!(a.eval("node()").await, atom(a.name()));
    assert_eq!(
        a.eval(&format!("net_adm:ping('{}')", b.name())).await,
        atom("pong")
    );
    assert_eq!(
        b.eval(&format!("net_adm:ping('{}')", a.name())).await,
        atom("pong")
    );
    assert_eq!(b.eval("nodes()").await, Term::list(vec![atom(a.name())]));
}

#[tokio::test(flavor = "multi_thread")]
async fn wrong_cookie_gives_pang_and_hidden_nodes_stay_hidden() {
    let epmd = Epmd::start().await;
    let a = BeamNode::builder()
        .prefix("a")
        .epmd_port(epmd.port())
        .start()
        .await;
    let other = BeamNode::builder()
        .prefix("other")
        .epmd_port(epmd.port())
        .start()
        .await;
    assert_ne!(a.cookie(), other.cookie());
    assert_eq!(
        a.eval(&format!("net_adm:ping('{}')", other.name())).await,
        atom("pang")
    );

    let h = BeamNode::builder()
        .prefix("h")
        .cookie(a.cookie())
        .epmd_port(epmd.port())
        .hidden(true)
        .start()
        .await;
    assert_eq!(
        h.eval(&format!("net_adm:ping('{}')", a.name())).await,
        atom("pong")
    );
    assert_eq!(a.eval("nodes()").await, Term::nil());
    assert_eq!(
        a.eval("nodes(hidden)").await,
        Term::list(vec![atom(h.name())])
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn eval_errors_are_reported_and_the_node_keeps_working() {
    let node = BeamNode::builder().prefix("err").start().await;
    let err = node.try_eval("1/0").await.unwrap_err();
    // erl_error's rendering, with the expression
    assert!(err.contains("arithmetic expression"), "{err}");
    assert!(err.contains("1/0"), "{err}");
    let err = node.try_eval("this is not erlang").await.unwrap_err();
    assert!(err.contains("parse_error"), "{err}");
    let err = node.try_eval("\"unterminated").await.unwrap_err();
    assert!(err.contains("scan_error"), "{err}");
    // a linked process dying does not take the control loop down
    let r = node
        .eval("spawn_link(fun() -> exit(boom) end), receive {'EXIT', _, R} -> R after 5000 -> timeout end")
        .await;
    assert_eq!(r, atom("boom"));
    assert_eq!(node.eval("1+1").await, Term::Int(2));
    let err = node
        .try_eval_timeout("timer:sleep(2000)", Duration::from_millis(200))
        .await
        .unwrap_err();
    assert!(err.contains("timeout"), "{err}");
    // the late reply of the timed-out request is skipped, not mismatched
    assert_eq!(node.eval("3").await, Term::Int(3));
}

#[tokio::test(flavor = "multi_thread")]
async fn eval_elixir_runs_elixir_code() {
    let node = BeamNode::builder().prefix("ex").elixir(true).start().await;
    assert_eq!(node.eval_elixir("Enum.sum([1,2,3])").await, Term::Int(6));
    assert_eq!(
        node.eval_elixir("%{a: 1} |> Map.get(:a) |> Kernel.+(1)")
            .await,
        Term::Int(2)
    );
    assert_eq!(
        node.eval_elixir("\"héllo\" <> \"\\n\"").await,
        Term::from("héllo\n")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn killing_a_node_makes_its_os_pid_disappear() {
    let mut node = BeamNode::builder().prefix("kill").start().await;
    let pid = node.os_pid();
    // `erl` execs into beam.smp: the child's pid is the VM's own
    let getpid = node.eval_raw("list_to_integer(os:getpid())").await.unwrap();
    let expected = crate::support::hex_encode(&erlnode_int_etf(pid as i64));
    assert_eq!(crate::support::hex_encode(&getpid), expected);
    assert!(support::pid_alive(pid));
    node.kill().await;
    assert!(!support::pid_alive(pid), "pid {pid} still alive after kill");
    assert!(node.try_eval("1").await.is_err());
}

/// term_to_binary of a non-negative integer (SMALL_INTEGER or INTEGER).
fn erlnode_int_etf(i: i64) -> Vec<u8> {
    if (0..256).contains(&i) {
        vec![131, 97, i as u8]
    } else {
        let mut v = vec![131, 98];
        v.extend_from_slice(&(i as i32).to_be_bytes());
        v
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn dropping_a_node_leaves_no_process_behind() {
    let epmd = Epmd::start().await;
    let node = BeamNode::builder()
        .prefix("drop")
        .epmd_port(epmd.port())
        .start()
        .await;
    let pid = node.os_pid();
    let children = support::child_pids(pid); // erl_child_setup
    assert!(
        !children.is_empty(),
        "expected the BEAM to have a helper child"
    );
    drop(node);
    assert!(
        !support::pid_alive(pid),
        "BEAM {pid} still alive after drop"
    );
    for c in children {
        assert!(
            support::wait_pid_gone(c, Duration::from_secs(10)).await,
            "child {c} of BEAM {pid} left behind"
        );
    }
    // its registration is gone from epmd too
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while epmd.names().await.contains("name drop_") {
        assert!(
            std::time::Instant::now() < deadline,
            "node still registered: {}",
            epmd.names().await
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn private_epmd_goes_away_with_its_node() {
    let node = BeamNode::builder().prefix("priv").start().await;
    let port = node.epmd_port();
    assert!(tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_ok());
    drop(node);
    assert!(
        tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err(),
        "private epmd still up"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn stdin_eof_halts_the_node() {
    let mut node = BeamNode::builder().prefix("eof").start().await;
    let pid = node.os_pid();
    node.close_stdin().await;
    let status = node
        .wait_exit(Duration::from_secs(20))
        .await
        .expect("node did not halt on stdin EOF");
    assert!(status.success(), "{status:?}");
    assert!(!support::pid_alive(pid));
}

/// A test that dies while its node is stuck in an eval (here: one that
/// waits for ever, abandoned by its timeout) still leaves no node behind:
/// stdin EOF halts the node in the middle of the eval.
#[tokio::test(flavor = "multi_thread")]
async fn stdin_eof_halts_a_node_stuck_in_an_eval() {
    let mut node = BeamNode::builder().prefix("eofbusy").start().await;
    let pid = node.os_pid();
    let r = node.eval_raw_timeout("receive '$never' -> ok end", Duration::from_millis(300)).await;
    assert!(r.is_err(), "the eval never returns: {r:?}");
    node.close_stdin().await;
    let status = node.wait_exit(Duration::from_secs(20)).await.expect("node did not halt on stdin EOF during an eval");
    assert!(status.success(), "{status:?}");
    assert!(!support::pid_alive(pid));
}

#[tokio::test(flavor = "multi_thread")]
async fn stop_is_graceful() {
    let mut node = BeamNode::builder().prefix("stop").start().await;
    let pid = node.os_pid();
    node.stop().await;
    assert!(!support::pid_alive(pid));
    assert!(
        node.output().iter().all(|l| !l.contains("erlnode-harness")),
        "{:?}",
        node.output()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn erlnode_runner_captures_output_signals_and_kills() {
    // The runner is exercised on a stand-in program so that this test does
    // not depend on the erlnode CLI.
    let script = "echo out-line; echo 'node up' >&2; trap 'echo got-term; exit 0' TERM; \
                  while true; do sleep 0.05; done";
    let mut p = Erlnode::spawn_program("bash", ["-c", script], &[]);
    let line = p
        .wait_for_line("node up", Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(line, "node up");
    p.wait_for_line("out-line", Duration::from_secs(10))
        .await
        .unwrap();
    let err = p
        .wait_for_line("never printed", Duration::from_millis(100))
        .await
        .unwrap_err();
    assert!(err.contains("node up"), "error shows the output: {err}");
    assert!(p.signal(support::SIGTERM));
    p.wait_for_line("got-term", Duration::from_secs(10))
        .await
        .unwrap();
    assert!(p
        .wait_exit(Duration::from_secs(10))
        .await
        .unwrap()
        .success());

    let mut p = Erlnode::spawn_program("sleep", ["1000"], &[]);
    let pid = p.os_pid();
    p.kill().await;
    assert!(!support::pid_alive(pid));
    let p = Erlnode::spawn_program("sleep", ["1000"], &[]);
    let pid = p.os_pid();
    drop(p);
    assert!(!support::pid_alive(pid));
    assert!(Erlnode::bin().ends_with("erlnode"));
}

#[tokio::test(flavor = "multi_thread")]
async fn large_requests_and_replies_cross_the_line_protocol() {
    let node = BeamNode::builder().prefix("big").start().await;
    let reply = node
        .eval_raw("binary:copy(<<7, 255>>, 5000000)")
        .await
        .unwrap();
    assert_eq!(reply.len(), 6 + 10_000_000);
    assert_eq!(&reply[..6], &[131, 109, 0, 0x98, 0x96, 0x80]); // BINARY_EXT, len 10_000_000
    assert!(reply[6..].chunks(2).all(|c| c == [7, 255]));
    let expr = format!("byte_size(<<{}>>)", vec!["255"; 200_000].join(","));
    assert_eq!(
        node.eval_raw(&expr).await.unwrap(),
        vec![131, 98, 0, 3, 13, 64]
    );
}

/// The matrix is real: a node started by the harness runs the release of
/// the run's root (`ERLNODE_TEST_OTP_ROOT`, else the host's), and a node
/// asked for another release runs that one.
#[tokio::test]
async fn nodes_run_the_release_of_the_run() {
    let node = BeamNode::builder().prefix("rel").start().await;
    let got = node.eval("list_to_integer(erlang:system_info(otp_release))").await;
    let want = crate::support::otp::release();
    eprintln!("interop suite runs against OTP {want}");
    assert_eq!(got, Term::Int(want as i64));
    let host = BeamNode::builder().prefix("host").otp(25).start().await;
    let got = host.eval("list_to_integer(erlang:system_info(otp_release))").await;
    assert_eq!(got, Term::Int(crate::support::otp::release_in(None) as i64));
}

/// A test process killed by a signal runs no destructor: its epmd and its
/// erlnode children must still go (the kernel kills them, `PR_SET_PDEATHSIG`).
/// The test runs itself as a child process (`HARNESS_CHILD=1`), which
/// starts an epmd and an erlnode-managed child, prints their pids and
/// waits; the parent SIGKILLs it and waits for both pids to vanish.
#[tokio::test(flavor = "multi_thread")]
async fn a_test_killed_by_a_signal_takes_its_epmd_and_children_with_it() {
    if std::env::var_os("HARNESS_CHILD").is_some() {
        let epmd = Epmd::start().await;
        let sleeper = Erlnode::spawn_program("sleep", ["600"], &[]);
        println!("CHILDREN {} {}", epmd.os_pid(), sleeper.os_pid());
        tokio::time::sleep(Duration::from_secs(600)).await;
        return;
    }
    use tokio::io::AsyncBufReadExt;
    let mut me = tokio::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "harness_selftest::a_test_killed_by_a_signal_takes_its_epmd_and_children_with_it", "--nocapture", "--test-threads=1"])
        .env("HARNESS_CHILD", "1")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let me_pid = me.id().unwrap();
    let mut lines = tokio::io::BufReader::new(me.stdout.take().unwrap()).lines();
    let pids: Vec<u32> = tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(l) = lines.next_line().await.unwrap() {
            // libtest prints "test NAME ... " before the test runs, on
            // the same line.
            if let Some(i) = l.find("CHILDREN ") {
                return l[i + "CHILDREN ".len()..].split(' ').map(|p| p.parse().unwrap()).collect();
            }
        }
        panic!("the child test ended without printing its children")
    })
    .await
    .expect("the child test printed its children");
    assert!(pids.iter().all(|&p| support::pid_alive(p)), "{pids:?} alive before the kill");
    support::send_signal(me_pid, support::SIGKILL);
    let _ = me.wait().await;
    let mut outlived = vec![];
    for p in &pids {
        if !support::wait_pid_gone(*p, Duration::from_secs(10)).await {
            support::send_signal(*p, support::SIGKILL);
            outlived.push(*p);
        }
    }
    assert!(outlived.is_empty(), "pids {outlived:?} of {pids:?} outlived the test process that started them");
}
