//! What every end-to-end bench shares for `make bench`: the short mode
//! (`BENCH_QUICK=1`), the summary lines the Makefile gathers into one
//! table of ratios at the end, and the raw loopback TCP bandwidth (the
//! machine's limit for node-to-node bytes).

#![allow(dead_code)]

use std::time::Instant;

/// `BENCH_QUICK=1` (any value but empty or `0`): fewer rounds and
/// messages, so that `BENCH_QUICK=1 make bench` finishes in under two
/// minutes (after the build). Numbers are noisier; ratios still compare
/// erlnode with its baseline of the same run.
pub fn quick() -> bool {
    std::env::var("BENCH_QUICK").map(|v| !v.is_empty() && v != "0").unwrap_or(false)
}

/// `full`, or `short` in quick mode.
pub fn pick<T>(full: T, short: T) -> T {
    if quick() {
        short
    } else {
        full
    }
}

/// One row of `make bench`'s closing table, printed as a tab-separated
/// line starting with `SUMMARY` (the Makefile keeps those lines):
/// `bench`, `path`, erlnode's value, the baseline's value from the same
/// run, `ratio` (>1: erlnode better; latencies are baseline / erlnode),
/// and the target for it.
pub fn summary(bench: &str, path: &str, erlnode: &str, baseline: &str, ratio: Option<f64>, target: &str) {
    let ratio = ratio.map(|r| format!("{r:.2}x")).unwrap_or_else(|| "-".into());
    println!("SUMMARY\t{bench}\t{path}\t{erlnode}\t{baseline}\t{ratio}\t{target}");
}

/// Raw TCP over loopback, `total` bytes in 1 MB writes, bytes/s: the
/// physical floor of node-to-node transfers on this machine.
pub async fn raw_loopback_bandwidth(total: usize) -> f64 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let reader = tokio::spawn(async move {
        let (mut s, _) = l.accept().await.unwrap();
        let mut buf = vec![0u8; 1024 * 1024];
        let mut got = 0;
        while got < total {
            got += s.read(&mut buf).await.unwrap();
        }
    });
    let mut w = tokio::net::TcpStream::connect(addr).await.unwrap();
    let chunk = vec![3u8; 1024 * 1024];
    let t0 = Instant::now();
    for _ in 0..total / chunk.len() {
        w.write_all(&chunk).await.unwrap();
    }
    reader.await.unwrap();
    total as f64 / t0.elapsed().as_secs_f64()
}

/// Raw loopback TCP, one `size`-byte write answered by one byte, on this
/// runtime (the writer and the reader are tasks, as a link's are): the
/// median of `rounds` such exchanges. What moving `size` bytes once, and
/// hearing back, costs on this machine with nothing else in the way; a
/// stream's bandwidth (above) overlaps writes and reads that a single
/// transfer cannot.
#[allow(dead_code)] // handoff.rs only
pub async fn raw_loopback_transfer(size: usize, rounds: usize) -> std::time::Duration {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let reader = tokio::spawn(async move {
        let (mut s, _) = l.accept().await.unwrap();
        s.set_nodelay(true).unwrap();
        let mut buf = vec![0u8; size];
        while s.read_exact(&mut buf).await.is_ok() {
            s.write_all(b"k").await.unwrap();
        }
    });
    let mut w = tokio::net::TcpStream::connect(addr).await.unwrap();
    w.set_nodelay(true).unwrap();
    let data = vec![3u8; size];
    let mut ack = [0u8; 1];
    let mut times = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let t0 = Instant::now();
        w.write_all(&data).await.unwrap();
        w.read_exact(&mut ack).await.unwrap();
        times.push(t0.elapsed());
    }
    drop(w);
    reader.await.unwrap();
    times.sort();
    times[times.len() / 2]
}
