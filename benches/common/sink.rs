//! The Rust side of the throughput benches (benches/throughput.rs,
//! benches/tls_throughput.rs): a counting sink and the statistics.

use erlnode::{Node, Term};

/// Erlang helpers bound in a BEAM node's shell: `StartSink(N)` registers
/// `bench_sink`, which counts N `{msg, _, _}` then sends `done`, its
/// message queue kept off its heap (`StartSinkOnHeap(N)`: the same sink
/// with the default on-heap queue);
/// `Blast(Dest, N, Size)` sends N messages with a Size-byte binary and
/// returns the microseconds until `done`; `BlastCpu` the same and the
/// CPU milliseconds the sending node used meanwhile, `{Us, Ms}`;
/// `Cpu()` the node's CPU milliseconds so far.
///
/// Why off the heap: a sender faster than the sink (an erlnode sender
/// is, by 2-4x) leaves hundreds of thousands of messages queued at the
/// sink, and with the default on-heap queue every garbage collection of
/// the sink first moves the queued messages onto its heap
/// (`erts_proc_sig_move_msgs_to_heap`, `erts_msg_attached_data_size_aux`
/// in a `perf` profile of the sink's node), so that row measured the
/// sink's collections, not the link: 3.9 us of the receiving node's CPU
/// per message against 3.1 us when a BEAM sender (slower than the sink,
/// so its queue stays short) feeds it. `off_heap` is OTP's setting for a
/// process that receives bursts; every direction uses the same sink, and
/// the throughput bench keeps an on-heap row (docs/benchmarks.md).
pub const ERL_SINK: &str = r#"
SinkLoop = fun Loop(0, From) -> From ! done;
               Loop(K, From) -> receive {msg, _, _} -> Loop(K - 1, From) end
           end,
StartSinkWith = fun(Count, Opts) ->
    catch unregister(bench_sink),
    Pid = spawn_opt(fun() -> receive {start, From} -> SinkLoop(Count, From) end end, Opts),
    register(bench_sink, Pid), ok
end,
StartSink = fun(Count) -> StartSinkWith(Count, [{message_queue_data, off_heap}]) end,
StartSinkOnHeap = fun(Count) -> StartSinkWith(Count, []) end,
Blast = fun(Dest, Count, Size) ->
    Payload = binary:copy(<<"p">>, Size),
    Dest ! {start, self()},
    T0 = erlang:monotonic_time(microsecond),
    SendLoop = fun L(0) -> ok; L(I) -> Dest ! {msg, I, Payload}, L(I - 1) end,
    SendLoop(Count),
    receive done -> ok after 300000 -> exit(timeout) end,
    erlang:monotonic_time(microsecond) - T0
end,
BlastCpu = fun(Dest, Count, Size) ->
    {R0, _} = statistics(runtime),
    Us = Blast(Dest, Count, Size),
    {R1, _} = statistics(runtime),
    {Us, R1 - R0}
end,
Cpu = fun() -> {R, _} = statistics(runtime), R end,
ok
"#;

/// A registered Rust process that counts `n` messages then answers `done`.
pub fn rust_sink(node: &Node, n: i64) -> tokio::sync::oneshot::Receiver<()> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let pid = node.spawn(move |mut mb| async move {
        let Some(start) = mb.recv().await else { return Term::atom("normal") };
        let from = start.as_tuple().and_then(|t| t.get(1)).and_then(|p| p.as_pid()).cloned().expect("{start, From}");
        let mut left = n;
        while left > 0 {
            if mb.recv().await.is_none() {
                break;
            }
            left -= 1;
        }
        mb.send(&from, Term::atom("done"));
        let _ = tx.send(());
        Term::atom("normal")
    });
    let _ = node.unregister("bench_sink");
    node.register("bench_sink", &pid).unwrap();
    rx
}

pub fn rate(n: i64, us: i64) -> f64 {
    n as f64 / (us as f64 / 1e6)
}

pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

/// CPU time this OS process (the bench and its Rust nodes) has used, in
/// milliseconds (user + system, from /proc/self/stat).
#[allow(dead_code)] // throughput.rs only
pub fn own_cpu_ms() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which may hold spaces) start at ")".
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|x| x.parse::<f64>().ok()).unwrap_or(0.0);
    // utime and stime are fields 14 and 15 of stat: 12 and 13 after ")".
    (ticks(11) + ticks(12)) * 1000.0 / 100.0
}
