//! Issue 13, item 2: backpressure. A link whose peer stops reading is
//! busy once `dist_buf_busy_limit` bytes wait to be written: `try_send`
//! answers WouldBlock, `send_async` waits, memory stays bounded, other
//! traffic and other peers are unaffected, and everything arrives in
//! order once the peer reads again. A peer killed meanwhile gives waiting
//! senders an error.
//!
//! The peer is stopped with SIGSTOP (by pid). Every BEAM node is killed by
//! pid when its handle drops, which also ends a stopped one.

use crate::support::{self, send_signal, BeamNode, Epmd, SIGKILL};
use erlnode::{Node, SendError, Term};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

const SIGCONT: i32 = 18;
const SIGSTOP: i32 = 19;
const T: Duration = Duration::from_secs(30);
/// The default busy limit (the BEAM's dist_buf_busy_limit).
const BUSY_LIMIT: usize = 1 << 20;
const PAYLOAD: usize = 32 * 1024;

/// A sink on `beam`, registered as `bp_sink`: it takes `{msg, Sender, I,
/// Bin}` and checks that each sender's I count 1, 2, 3...; after
/// `{expect, N}` and N messages it reports `{sink_done, Received,
/// OutOfOrder, SysMarkers}` to `{bp_reporter, Rust}`.
async fn start_sink(beam: &BeamNode, rust: &Node) -> erlnode::Pid {
    let r = beam
        .eval(&format!(
            "(fun(Rust) ->
                 Loop = fun L(Expect, Got, Next, Bad, Sys) when Got =:= Expect ->
                                {{bp_reporter, Rust}} ! {{sink_done, Got, Bad, Sys}};
                            L(Expect, Got, Next, Bad, Sys) ->
                                receive
                                    {{expect, N}} -> L(N, Got, Next, Bad, Sys);
                                    {{msg, S, I, _}} ->
                                        Exp = maps:get(S, Next, 1),
                                        B2 = case I of Exp -> Bad; _ -> Bad + 1 end,
                                        L(Expect, Got + 1, Next#{{S => I + 1}}, B2, Sys);
                                    sys_marker -> L(Expect, Got, Next, Bad, Sys + 1)
                                end
                        end,
                 Pid = spawn(fun() -> Loop(undefined, 0, #{{}}, 0, 0) end),
                 register(bp_sink, Pid),
                 Pid
             end)('{}')",
            rust.name()
        ))
        .await;
    r.as_pid().cloned().unwrap_or_else(|| panic!("sink pid, got {r:?}"))
}

fn msg(sender: i64, i: i64, payload: &Term) -> Term {
    Term::tuple([Term::atom("msg"), Term::Int(sender), Term::Int(i), payload.clone()])
}

fn vm_rss() -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap();
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .expect("VmRSS")
        * 1024
}

/// Fills the link to `sink`'s node with `try_send` (sender 0) until it
/// is busy; returns how many messages went in. Fails if 256 MiB went in
/// without the link ever being busy.
fn fill_until_busy(rust: &Node, sink: &erlnode::Pid, payload: &Term) -> i64 {
    let mut i = 0;
    loop {
        match rust.try_send(sink, msg(0, i + 1, payload)) {
            Ok(()) => i += 1,
            Err(SendError::WouldBlock { queued, limit, .. }) => {
                assert_eq!(limit, BUSY_LIMIT);
                assert!(queued >= limit, "busy at {queued} bytes");
                return i;
            }
            Err(e) => panic!("try_send: {e}"),
        }
        assert!((i as usize) * PAYLOAD < 256 << 20, "256 MiB queued to a stopped peer and the link never became busy");
        if i % 64 == 0 {
            // Let the writer move what it can into the socket.
            std::thread::yield_now();
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stopped_peer_makes_senders_wait_and_gets_everything_in_order_after_sigcont() {
    const SENDERS: i64 = 4;
    const PER_SENDER: i64 = 2000; // 4 x 2000 x 32 KiB = 250 MiB offered
    support::require_erlang();
    let epmd = Epmd::start().await;
    let cookie = support::unique("cookie");
    let rust = support::rust_node("rust", &cookie, epmd.port()).await;
    erlnode::services::echo::spawn(&rust, "erlnode_echo").unwrap();
    let stopped = BeamNode::builder().prefix("stopped").cookie(&cookie).epmd_port(epmd.port()).start().await;
    let bystander = BeamNode::builder().prefix("bystander").cookie(&cookie).epmd_port(epmd.port()).start().await;
    assert!(rust.ping(stopped.name()).await && rust.ping(bystander.name()).await);
    let mut reporter = rust.spawn_mailbox();
    rust.register("bp_reporter", &reporter.pid().clone()).unwrap();
    let sink = start_sink(&stopped, &rust).await;
    let payload = Term::binary(vec![0xabu8; PAYLOAD]);

    assert!(send_signal(stopped.os_pid(), SIGSTOP));
    let rss_before = vm_rss();
    let filled = fill_until_busy(&rust, &sink, &payload);
    let sent = Arc::new(AtomicUsize::new(0));
    let senders: Vec<_> = (1..=SENDERS)
        .map(|s| {
            let (rust, sink, payload, sent) = (rust.clone(), sink.clone(), payload.clone(), sent.clone());
            tokio::spawn(async move {
                for i in 1..=PER_SENDER {
                    rust.send_async(&sink, msg(s, i, &payload)).await?;
                    sent.fetch_add(1, Ordering::Relaxed);
                }
                Ok::<(), SendError>(())
            })
        })
        .collect();

    // System traffic and the fire-and-forget send are never held back, and
    // the other peer is served as usual while the link is busy.
    rust.send(&sink, Term::atom("sys_marker"));
    rust.send(&sink, Term::tuple([Term::atom("expect"), Term::Int(filled + SENDERS * PER_SENDER)]));
    let name = rust.name().to_string();
    let mut peak_queued = 0;
    let mut peak_rss = 0;
    for _ in 0..20 {
        let r = bystander
            .eval(&format!("{{net_adm:ping('{name}'), gen_server:call({{erlnode_echo, '{name}'}}, hi, 5000)}}"))
            .await;
        assert_eq!(r, Term::tuple([Term::atom("pong"), Term::tuple([Term::atom("echo"), Term::atom("hi")])]));
        assert!(rust.ping(bystander.name()).await);
        peak_queued = peak_queued.max(rust.queued_bytes(stopped.name()).expect("the link to the stopped peer is up"));
        peak_rss = peak_rss.max(vm_rss());
        assert!(matches!(rust.try_send(&sink, msg(99, 1, &payload)), Err(SendError::WouldBlock { .. })), "still busy");
    }
    let sent_while_stopped = sent.load(Ordering::Relaxed);
    let growth = peak_rss.saturating_sub(rss_before);
    eprintln!(
        "stopped peer: {filled} messages before busy, {sent_while_stopped} of {} async sends done, peak queue {} KiB, RSS growth {} MiB",
        SENDERS * PER_SENDER,
        peak_queued >> 10,
        growth >> 20
    );
    // The queue holds at most the limit, a message that went over it and
    // the system traffic sent meanwhile.
    assert!(peak_queued <= BUSY_LIMIT + 2 * PAYLOAD + 64 * 1024, "queue grew to {peak_queued} bytes");
    assert!(sent_while_stopped < (SENDERS * PER_SENDER / 2) as usize, "{sent_while_stopped} async sends went through to a stopped peer");
    assert!(growth < 128 << 20, "RSS grew by {} MiB while 250 MiB were offered to a stopped peer", growth >> 20);

    assert!(send_signal(stopped.os_pid(), SIGCONT));
    for s in senders {
        s.await.unwrap().expect("every async send succeeds once the peer reads again");
    }
    let done = reporter.recv_timeout(Duration::from_secs(120)).await.expect("the sink reports");
    assert_eq!(
        done,
        Term::tuple([Term::atom("sink_done"), Term::Int(filled + SENDERS * PER_SENDER), Term::Int(0), Term::Int(1)]),
        "every message arrived, each sender's in order, and the system marker too"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn senders_waiting_on_a_killed_peer_get_an_error() {
    support::require_erlang();
    let epmd = Epmd::start().await;
    let cookie = support::unique("cookie");
    let rust = support::rust_node("rust", &cookie, epmd.port()).await;
    let peer = BeamNode::builder().prefix("killed").cookie(&cookie).epmd_port(epmd.port()).start().await;
    assert!(rust.ping(peer.name()).await);
    let sink = start_sink(&peer, &rust).await;
    let payload = Term::binary(vec![1u8; PAYLOAD]);
    let mut events = rust.subscribe();

    assert!(send_signal(peer.os_pid(), SIGSTOP));
    fill_until_busy(&rust, &sink, &payload);
    let waiting: Vec<_> = (1..=3)
        .map(|s| {
            let (rust, sink, payload) = (rust.clone(), sink.clone(), payload.clone());
            tokio::spawn(async move {
                let mut i = 0;
                loop {
                    i += 1;
                    rust.send_async(&sink, msg(s, i, &payload)).await?;
                }
                #[allow(unreachable_code)]
                Ok::<(), SendError>(())
            })
        })
        .collect();
    assert!(send_signal(peer.os_pid(), SIGKILL));
    for w in waiting {
        let r = tokio::time::timeout(T, w).await.expect("a sender waiting on a killed peer is not left hanging").unwrap();
        assert!(
            matches!(&r, Err(SendError::Closed { node }) if node.as_str() == peer.name())
                || matches!(&r, Err(SendError::NoConnection { node, .. }) if node.as_str() == peer.name()),
            "{r:?}"
        );
    }
    let down = tokio::time::timeout(T, async {
        loop {
            if let Ok(erlnode::NodeEvent::Down { node, .. }) = events.recv().await {
                if node.as_str() == peer.name() {
                    return;
                }
            }
        }
    })
    .await;
    assert!(down.is_ok(), "nodedown for the killed peer");
}
