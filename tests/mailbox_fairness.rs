//! A process that takes long messages back to back from a queue that never
//! empties still gets what it sends out while it works.
//!
//! Why: tokio's cooperative budget counts receives (128 per poll), not
//! time, and the task a process woke last (the link writer carrying what
//! it sends) waits in its worker's LIFO slot, which other workers do not
//! steal from, until the process gives the worker back. Without a limit
//! by time (`chan::RUN_AT_MOST`, 2 ms), a process doing 3 ms per message
//! sent nothing to another node for 128 messages.

use erlnode::{Node, Term};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_process_with_a_full_mailbox_still_gets_its_sends_out() {
    let epmd = free_port();
    let start = |tag: &str| Node::builder(format!("{tag}_{}@127.0.0.1", std::process::id())).cookie("fairness").epmd_port(epmd).start();
    let a = start("mbf_a").await.unwrap();
    let b = start("mbf_b").await.unwrap();
    a.connect(b.name().as_str()).await.unwrap();
    let mut watcher = a.spawn_mailbox();
    let watcher_pid = watcher.pid().clone();

    // The busy process on b: 3 ms of work per message, then a report to
    // the watcher on a and an answer to whoever sent the message.
    let turns = Arc::new(AtomicU64::new(0));
    let mut busy = b.spawn_mailbox();
    let busy_pid = busy.pid().clone();
    let t = turns.clone();
    tokio::spawn(async move {
        while let Ok(m) = busy.recv_timeout(Duration::from_secs(30)).await {
            let n = t.fetch_add(1, Ordering::SeqCst) + 1;
            std::thread::sleep(Duration::from_millis(3)); // the work: it holds the worker
            busy.send(&watcher_pid, Term::Int(n as i64));
            if let Term::Pid(from) = m {
                busy.send(&from, Term::atom("done"));
            }
        }
    });

    // Keeps 16 messages queued at the busy process from a thread and
    // runtime of its own (a task of the test's runtime woken by the busy
    // process would itself wait in the LIFO slot, and the queue would run
    // dry in between).
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
                feeder.recv_timeout(Duration::from_secs(30)).await.expect("the busy process answers");
                queued -= 1;
            }
            sent
        })
    });

    let first = watcher.recv_timeout(Duration::from_secs(60)).await.expect("a report from the busy process");
    let turns_then = turns.load(Ordering::SeqCst);
    stop.store(true, Ordering::Relaxed);
    let sent = fed.join().unwrap();
    println!("the first report ({first:?}) reached the other node after the busy process had taken {turns_then} messages; {sent} fed");
    assert_eq!(first, Term::Int(1));
    // With the limit by time, the writer runs after the first 3 ms message
    // or the second; with tokio's budget alone, after about 128.
    assert!(turns_then < 32, "the busy process's first report left only after {turns_then} of its messages");
}
