//! A gen_server whose callbacks take milliseconds, with messages always
//! queued, still gets what it sends out while it works.
//!
//! Why: tokio's cooperative budget counts receives (128 per poll), not
//! time, and the task a process woke last (the link writer carrying what
//! it sends) waits in its worker's LIFO slot, which other workers do not
//! steal from, until the process gives the worker back. Without the
//! serving loop's yield (`erlnode::process::Yielder`, 2 ms), a server
//! doing 3 ms per message sent nothing to another node for about 128
//! messages.

use erlnode::gen_server::{self, Ctx, Flow, GenServer, Reply};
use erlnode::{Node, Pid, Term};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

mod common;
use common::free_port;

/// 3 ms of work per message, then a report to `watcher` (on another
/// node) and `done` to the message's sender.
struct Busy {
    watcher: Pid,
    turns: Arc<AtomicU64>,
}

impl GenServer for Busy {
    type Call = ();
    type Cast = ();
    type Reply = ();

    async fn handle_call(&mut self, _req: (), _from: &Term, _ctx: &mut Ctx) -> Reply<()> {
        Reply::Reply(())
    }

    async fn handle_info(&mut self, msg: Term, ctx: &mut Ctx) -> Flow {
        let n = self.turns.fetch_add(1, Ordering::SeqCst) + 1;
        std::thread::sleep(Duration::from_millis(3)); // the work: it holds the worker
        ctx.send(&self.watcher, Term::Int(n as i64));
        if let Term::Pid(from) = msg {
            ctx.send(&from, Term::atom("done"));
        }
        Flow::Continue
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_gen_server_with_a_full_mailbox_still_gets_its_sends_out() {
    let epmd = free_port();
    let start = |tag: &str| Node::builder(format!("{tag}_{}@127.0.0.1", std::process::id())).cookie("busy-sends").epmd_port(epmd).start();
    let a = start("bps_a").await.unwrap();
    let b = start("bps_b").await.unwrap();
    a.connect(b.name().as_str()).await.unwrap();
    let mut watcher = a.spawn_mailbox();
    let turns = Arc::new(AtomicU64::new(0));
    let busy = gen_server::start(&b, Busy { watcher: watcher.pid().clone(), turns: turns.clone() }).spawn().unwrap();
    let busy_pid = busy.pid().clone();

    // Keeps 16 messages queued at the server from a thread and runtime of
    // its own (a task of the test's runtime woken by the server would
    // itself wait in the LIFO slot, and the queue would run dry between).
    let stop = Arc::new(AtomicBool::new(false));
    let mut feeder = b.spawn_mailbox();
    let s = stop.clone();
    let fed = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async move {
            let (mut sent, mut queued) = (0u64, 0);
            while !s.load(Ordering::Relaxed) {
                while queued < 16 {
                    feeder.send(&busy_pid, Term::Pid(feeder.pid().clone()));
                    sent += 1;
                    queued += 1;
                }
                feeder.recv_timeout(Duration::from_secs(30)).await.expect("the server answers");
                queued -= 1;
            }
            sent
        })
    });

    let first = watcher.recv_timeout(Duration::from_secs(60)).await.expect("a report from the server");
    let turns_then = turns.load(Ordering::SeqCst);
    stop.store(true, Ordering::Relaxed);
    let sent = fed.join().unwrap();
    println!("the first report ({first:?}) reached the other node after the server had taken {turns_then} messages; {sent} fed");
    assert_eq!(first, Term::Int(1));
    // With the yield, the writer runs after the first 3 ms message or the
    // second; with tokio's budget alone, after about 128.
    assert!(turns_then < 32, "the server's first report left only after {turns_then} of its messages");
}
