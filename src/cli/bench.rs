//! `erlnode bench`: measures, in a running cluster, what erlnode exists
//! for: handoff latency between two nodes (either direction, Rust or
//! Elixir), call round trips and one-way throughput, each next to the
//! same measurement between two Elixir nodes of the cluster when it has
//! two. It works through throwaway processes of the bench type
//! `"erlnode_bench"` (src/examples/bench.rs, erlang/lib/erlnode/examples/
//! bench.ex), which it starts through each node's migration manager and
//! stops at the end, also on Ctrl-C and on failure.

use super::client::{self, ClientError, ClientOpts};
use crate::examples::bench::{GO, TYPE};
use crate::migration::messages::{Mode, Op, Request};
use crate::process::Mailbox;
use crate::term::serde::render::short;
use crate::term::{Atom, Pid, Term};
use crate::Node;
use clap::{Args, ValueEnum};
use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::time::{Duration, Instant};

#[derive(Args, Debug)]
#[command(after_help = "Every node measured must host the bench type \"erlnode_bench\": \
`erlnode run` nodes do (unless --no-migration), and so do Elixir nodes running the \
erlnode_ex application (Erlnode.Examples.Bench). Without --between, the bench picks one \
pair of nodes of each kind the cluster has (Rust/Rust, Rust/Elixir, Elixir/Elixir) and \
measures both directions of each; the Elixir/Elixir pair is the baseline the last column \
compares with (>1: faster than Elixir -> Elixir). Handoff latency is as seen from this \
client: from releasing the held source (its `begin` and --queue messages already queued) \
to the result reaching the client. Progress goes to stderr, the table to stdout.")]
pub struct BenchArgs {
    /// What to measure.
    #[arg(value_enum, default_value_t = What::All)]
    pub what: What,
    /// A node of the cluster running erlnode's migration manager (Rust or
    /// Elixir); the cluster is it and the nodes it is connected to.
    #[arg(long, value_name = "NODE")]
    pub via: String,
    /// Measure between these two nodes only (both directions; the
    /// Elixir -> Elixir baseline is still measured when there is one).
    #[arg(long, num_args = 2, value_names = ["NODE_A", "NODE_B"])]
    pub between: Option<Vec<String>>,
    /// Handoffs per direction (the process hops back and forth).
    #[arg(long, value_name = "N", default_value_t = 40)]
    pub rounds: usize,
    /// Size of the handed-over state (bytes; K, M suffixes).
    #[arg(long, value_name = "SIZE", default_value = "1K", value_parser = super::parse_size)]
    pub state_size: usize,
    /// Messages queued behind each handoff's `begin` (they travel with the state).
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub queue: usize,
    /// Call round trips per direction.
    #[arg(long, value_name = "N", default_value_t = 2000)]
    pub calls: usize,
    /// One-way messages per direction and round (3 rounds).
    #[arg(long, value_name = "N", default_value_t = 20_000)]
    pub messages: usize,
    /// Payload of each one-way message (bytes; K, M suffixes).
    #[arg(long, value_name = "SIZE", default_value = "64", value_parser = super::parse_size)]
    pub message_size: usize,
    /// Seconds to wait for any one step (a handoff, a batch of calls).
    #[arg(long, value_name = "SECONDS", default_value_t = 120)]
    pub timeout: u64,
    #[command(flatten)]
    pub opts: ClientOpts,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum What {
    /// Handoff latency (p50/p99).
    Handoff,
    /// GenServer call round trips (p50/p99).
    Calls,
    /// One-way message throughput (messages/s).
    Send,
    /// All three.
    All,
}

const SEND_ROUNDS: usize = 3;

/// A node taking part, with the resident bench process the call and send
/// measurements use.
#[derive(Clone)]
struct Member {
    name: String,
    kind: &'static str,
    resident: Pid,
}

/// One line of the table.
struct Row {
    what: String,
    from: String,
    to: String,
    kinds: String,
    value: Value,
}

#[derive(Clone, Copy)]
enum Value {
    /// Latencies: p50, p99 (microseconds).
    Latency(f64, f64),
    /// Throughput: median, min, max (messages/s).
    Rate(f64, f64, f64),
}

struct Session {
    node: Node,
    me: Mailbox,
    timeout: Duration,
    /// Every bench process started, where it is now (stopped at the end).
    started: Vec<Pid>,
    serial: usize,
    progress: Progress,
}

pub async fn run(a: BenchArgs) -> ExitCode {
    let node = match client::connect(&a.via, &a.opts).await {
        Ok(n) => n,
        Err(e) => return fail(e),
    };
    let me = node.spawn_mailbox();
    let mut s = Session { node: node.clone(), me, timeout: Duration::from_secs(a.timeout), started: vec![], serial: 0, progress: Progress::new() };
    let outcome = tokio::select! {
        r = measure(&mut s, &a) => Some(r),
        _ = super::wait_for_signal() => None,
    };
    s.progress.clear();
    let left = s.cleanup().await;
    node.shutdown().await;
    if left > 0 {
        eprintln!("erlnode bench: {left} bench process(es) did not stop; they end with their node");
    }
    match outcome {
        Some(Ok(rows)) => {
            print_table(&a, &rows);
            ExitCode::SUCCESS
        }
        Some(Err(e)) => fail(e),
        None => {
            eprintln!("erlnode bench: interrupted; the bench processes were stopped");
            ExitCode::from(130)
        }
    }
}

fn fail(e: ClientError) -> ExitCode {
    eprintln!("erlnode bench: {e}");
    e.exit_code()
}

/// The pairs to measure: the requested one, or one of each kind; and the
/// Elixir/Elixir baseline pair if there is one.
fn pairs(members: &[Member], between: Option<&[String]>) -> (Vec<(Member, Member)>, Option<(Member, Member)>) {
    let of = |k: &str| members.iter().filter(|m| m.kind == k).cloned().collect::<Vec<_>>();
    let (rust, elixir) = (of("Rust"), of("Elixir"));
    let baseline = (elixir.len() >= 2).then(|| (elixir[0].clone(), elixir[1].clone()));
    if let Some([a, b]) = between {
        let find = |n: &String| members.iter().find(|m| &m.name == n).cloned();
        if let (Some(a), Some(b)) = (find(a), find(b)) {
            return (vec![(a, b)], baseline);
        }
    }
    let mut out = vec![];
    if rust.len() >= 2 {
        out.push((rust[0].clone(), rust[1].clone()));
    }
    if let (Some(r), Some(e)) = (rust.first(), elixir.first()) {
        out.push((r.clone(), e.clone()));
    }
    (out, baseline)
}

async fn measure(s: &mut Session, a: &BenchArgs) -> Result<Vec<Row>, ClientError> {
    if a.rounds == 0 || a.calls == 0 || a.messages == 0 {
        return Err(ClientError::Failed("--rounds, --calls and --messages must be at least 1".into()));
    }
    let mut wanted: Vec<String> = match &a.between {
        Some(b) => b.clone(),
        None => client::cluster_nodes(&s.node, &a.via, s.timeout).await,
    };
    if let Some([x, y]) = a.between.as_deref() {
        if x == y {
            return Err(ClientError::Failed("--between needs two different nodes".into()));
        }
        // The baseline pair comes from the rest of the cluster.
        for n in client::cluster_nodes(&s.node, &a.via, s.timeout).await {
            if !wanted.contains(&n) {
                wanted.push(n);
            }
        }
    }
    let required: Vec<String> = a.between.clone().unwrap_or_else(|| vec![a.via.clone()]);
    let mut members = vec![];
    for n in &wanted {
        s.progress.step(&format!("starting a bench process on {n}"));
        match s.spawn(n, 0).await {
            Ok(pid) => {
                let pong = s.me.call(pid.clone(), Term::atom("ping"), s.timeout).await.map_err(|e| call_error(n, e))?;
                let kind = if matches!(pong.as_tuple(), Some([_, k]) if k.is_atom("rust")) { "Rust" } else { "Elixir" };
                members.push(Member { name: n.clone(), kind, resident: pid });
            }
            Err(e) if required.contains(n) => return Err(e),
            Err(e) => eprintln!("erlnode bench: leaving {n} out: {e}"),
        }
    }
    let (pairs, baseline) = pairs(&members, a.between.as_deref());
    if pairs.is_empty() && baseline.is_none() {
        return Err(ClientError::Failed(format!(
            "need two nodes hosting the bench type {TYPE:?}; found {}",
            members.iter().map(|m| m.name.as_str()).collect::<Vec<_>>().join(", ")
        )));
    }
    let mut all = pairs.clone();
    if let Some(b) = &baseline {
        if !all.iter().any(|(x, y)| x.name == b.0.name && y.name == b.1.name) {
            all.push(b.clone());
        }
    }
    let mut rows = vec![];
    for (x, y) in &all {
        if matches!(a.what, What::Handoff | What::All) {
            rows.extend(s.handoff(x, y, a).await?);
        }
        if matches!(a.what, What::Calls | What::All) {
            for (p, q) in [(x, y), (y, x)] {
                rows.push(s.calls(p, q, a.calls).await?);
            }
        }
        if matches!(a.what, What::Send | What::All) {
            for (p, q) in [(x, y), (y, x)] {
                rows.push(s.send(p, q, a.messages, a.message_size).await?);
            }
        }
    }
    Ok(rows)
}

fn call_error(on: &str, e: crate::process::CallError) -> ClientError {
    use crate::process::CallError;
    match e {
        CallError::Timeout(_) => ClientError::Timeout(on.to_string()),
        CallError::NodeDown(_) => ClientError::UnknownNode { node: on.to_string(), reason: "the connection was lost".into() },
        other => ClientError::Failed(format!("{on}: {other}")),
    }
}

fn row(what: String, from: &Member, to: &Member, value: Value) -> Row {
    Row { what, from: from.name.clone(), to: to.name.clone(), kinds: format!("{} -> {}", from.kind, to.kind), value }
}

fn percentiles(mut us: Vec<f64>) -> Value {
    us.sort_by(|a, b| a.total_cmp(b));
    let at = |q: usize| us[(us.len() * q / 100).min(us.len() - 1)];
    Value::Latency(at(50), at(99))
}

impl Session {
    /// Starts a bench process on `on` (through its migration manager),
    /// registered globally under a fresh name.
    async fn spawn(&mut self, on: &str, state_size: usize) -> Result<Pid, ClientError> {
        self.serial += 1;
        let name = Atom::new(&format!("erlnode_bench_{}_{}", std::process::id(), self.serial));
        let req = Request::Spawn { type_name: TYPE.into(), args: Term::Int(state_size as i64), name };
        let refuse = || ClientError::Failed(format!(
            "{on} does not host the bench type {TYPE:?}: run it with `erlnode run` (migration on), or as an Elixir node with the erlnode_ex application (Erlnode.Examples.Bench)"
        ));
        let reply = match client::ask(&self.node, on, &req, self.timeout).await {
            Ok(r) => r,
            Err(ClientError::Failed(m)) if m.contains("no migration manager") => return Err(refuse()),
            Err(e) => return Err(e),
        };
        match reply.as_tuple() {
            Some([ok, Term::Pid(p)]) if ok.is_atom("ok") => {
                self.started.push(p.clone());
                Ok(p.clone())
            }
            Some([e, r]) if e.is_atom("error") && (r.is_atom("unknown_request") || matches!(r.as_tuple(), Some([u, _]) if u.is_atom("unknown_type"))) => {
                Err(refuse())
            }
            _ => Err(ClientError::Failed(format!("{on}: cannot start a bench process: {}", short(&reply)))),
        }
    }

    /// Hops one process of `--state-size` between `x` and `y`, `--rounds`
    /// times each way.
    async fn handoff(&mut self, x: &Member, y: &Member, a: &BenchArgs) -> Result<Vec<Row>, ClientError> {
        let mut pid = self.spawn(&x.name, a.state_size).await?;
        let slot = self.started.len() - 1;
        let (mut there, mut back) = (vec![], vec![]);
        for hop in 0..2 * a.rounds {
            let (from, to) = if hop % 2 == 0 { (x, y) } else { (y, x) };
            self.progress.show(&format!("handoff {} -> {}", from.name, to.name), hop / 2 + 1, a.rounds);
            let t0;
            let reference = self.node.make_ref();
            {
                let me = &self.me;
                me.send(&pid, cast("hold"));
                let begin = Op::Begin { reference: reference.clone(), target: Atom::new(&to.name), mode: Mode::Hot, reply_to: Some(me.pid().clone()) };
                me.send(&pid, begin.to_term());
                for _ in 0..a.queue {
                    me.send(&pid, cast("bump"));
                }
                t0 = Instant::now();
                me.send(&pid, Term::atom(GO));
            }
            let result = self
                .me
                .recv_match(self.timeout, |m| match Op::parse(m) {
                    Some(Ok(Op::Result { reference: r, result })) if r == reference => Some(result),
                    _ => None,
                })
                .await
                .map_err(|_| ClientError::Timeout(format!("handoff {} -> {}", from.name, to.name)))?;
            let us = t0.elapsed().as_secs_f64() * 1e6;
            pid = result.map_err(|r| ClientError::Failed(format!("handoff {} -> {} failed: {}", from.name, to.name, short(&r))))?;
            self.started[slot] = pid.clone();
            if hop % 2 == 0 { there.push(us) } else { back.push(us) }
        }
        let what = format!("handoff, state {}, queue {}", size(a.state_size), a.queue);
        Ok(vec![row(what.clone(), x, y, percentiles(there)), row(what, y, x, percentiles(back))])
    }

    async fn calls(&mut self, from: &Member, to: &Member, n: usize) -> Result<Row, ClientError> {
        self.progress.step(&format!("{n} calls {} -> {}", from.name, to.name));
        let req = Term::tuple([Term::atom("calls"), Term::Pid(to.resident.clone()), Term::Int(n as i64)]);
        let reply = self.me.call(from.resident.clone(), req, self.timeout).await.map_err(|e| call_error(&from.name, e))?;
        let Term::List(items) = &reply else {
            return Err(ClientError::Failed(format!("calls {} -> {}: {}", from.name, to.name, short(&reply))));
        };
        let us = items.iter().filter_map(|t| t.as_int()).map(|v| v as f64).collect::<Vec<_>>();
        if us.len() != n {
            return Err(ClientError::Failed(format!("calls {} -> {}: {} round trips of {n}", from.name, to.name, us.len())));
        }
        Ok(row("GenServer.call round trip".into(), from, to, percentiles(us)))
    }

    async fn send(&mut self, from: &Member, to: &Member, n: usize, bytes: usize) -> Result<Row, ClientError> {
        let req = Term::tuple([Term::atom("send"), Term::Pid(to.resident.clone()), Term::Int(n as i64), Term::Int(bytes as i64)]);
        let mut rates = vec![];
        for round in 1..=SEND_ROUNDS {
            self.progress.show(&format!("{n} one-way messages {} -> {}", from.name, to.name), round, SEND_ROUNDS);
            let reply = self.me.call(from.resident.clone(), req.clone(), self.timeout).await.map_err(|e| call_error(&from.name, e))?;
            match reply.as_tuple() {
                Some([Term::Int(us), Term::Int(got)]) if *got as usize == n => rates.push(n as f64 / (*us).max(1) as f64 * 1e6),
                _ => return Err(ClientError::Failed(format!("one-way {} -> {}: {}", from.name, to.name, short(&reply)))),
            }
        }
        rates.sort_by(|a, b| a.total_cmp(b));
        let what = format!("one-way messages, {} payload", size(bytes));
        Ok(row(what, from, to, Value::Rate(rates[rates.len() / 2], rates[0], rates[rates.len() - 1])))
    }

    /// Stops every bench process started; returns how many did not stop.
    async fn cleanup(&mut self) -> usize {
        let mut left = 0;
        for pid in std::mem::take(&mut self.started) {
            // A held process first gets its release, then the stop.
            self.me.send(&pid, Term::atom(GO));
            match self.me.call(pid.clone(), Term::atom("stop"), Duration::from_secs(10)).await {
                Ok(_) | Err(crate::process::CallError::NoProc(_)) => {}
                Err(crate::process::CallError::Exit { .. }) => {}
                Err(e) => {
                    tracing::warn!(%pid, error = %e, "bench process did not stop");
                    left += 1;
                }
            }
        }
        left
    }
}

fn cast(m: &str) -> Term {
    Term::tuple([Term::atom("$gen_cast"), Term::atom(m)])
}

fn size(bytes: usize) -> String {
    match bytes {
        b if b >= 1 << 20 && b % (1 << 20) == 0 => format!("{} MB", b >> 20),
        b if b >= 1 << 10 && b % (1 << 10) == 0 => format!("{} KB", b >> 10),
        b => format!("{b} B"),
    }
}

/// The progress line on stderr: rewritten in place on a terminal, one
/// line per step otherwise.
struct Progress {
    tty: bool,
    last: String,
}

impl Progress {
    fn new() -> Progress {
        Progress { tty: std::io::stderr().is_terminal(), last: String::new() }
    }
    fn step(&mut self, what: &str) {
        self.show(what, 0, 0)
    }
    fn show(&mut self, what: &str, i: usize, n: usize) {
        let mut err = std::io::stderr();
        if self.tty {
            let counter = if n > 0 { format!(" {i}/{n}") } else { String::new() };
            let _ = write!(err, "\r\x1b[Kbench: {what}{counter}");
            let _ = err.flush();
        } else if self.last != what {
            let _ = writeln!(err, "bench: {what}");
        }
        self.last = what.to_string();
    }
    fn clear(&mut self) {
        if self.tty && !self.last.is_empty() {
            let _ = write!(std::io::stderr(), "\r\x1b[K");
        }
    }
}

fn fmt_value(v: Value) -> (String, String) {
    match v {
        Value::Latency(p50, p99) => (format!("p50 {}", fmt_us(p50)), format!("p99 {}", fmt_us(p99))),
        Value::Rate(med, lo, hi) => (format!("{} msgs/s", thousands(med)), format!("{}..{}", thousands(lo), thousands(hi))),
    }
}

fn fmt_us(us: f64) -> String {
    if us >= 1000.0 {
        format!("{:.2} ms", us / 1000.0)
    } else {
        format!("{us:.0} us")
    }
}

fn thousands(x: f64) -> String {
    let s = format!("{:.0}", x);
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// How many times faster than the baseline (>1: faster).
fn ratio(v: Value, base: Value) -> Option<f64> {
    match (v, base) {
        (Value::Latency(p, _), Value::Latency(b, _)) if p > 0.0 => Some(b / p),
        (Value::Rate(r, _, _), Value::Rate(b, _, _)) if b > 0.0 => Some(r / b),
        _ => None,
    }
}

fn print_table(a: &BenchArgs, rows: &[Row]) {
    let header = ["measurement", "from", "to", "kinds", "result", "spread", "vs Elixir -> Elixir"];
    let mut lines: Vec<[String; 7]> = vec![];
    for r in rows {
        // The baseline: the Elixir -> Elixir row of the same measurement
        // (both directions pooled by taking the first).
        let base = rows.iter().find(|b| b.what == r.what && b.kinds == "Elixir -> Elixir").map(|b| b.value);
        let (result, spread) = fmt_value(r.value);
        let vs = match base.and_then(|b| ratio(r.value, b)) {
            Some(x) if r.kinds != "Elixir -> Elixir" => format!("{x:.2}x"),
            Some(_) => "baseline".to_string(),
            None => "-".to_string(),
        };
        lines.push([r.what.clone(), r.from.clone(), r.to.clone(), r.kinds.clone(), result, spread, vs]);
    }
    let widths: Vec<usize> = (0..7).map(|i| lines.iter().map(|l| l[i].len()).chain([header[i].len()]).max().unwrap_or(0)).collect();
    let fmt = |cells: &[String]| cells.iter().enumerate().map(|(i, c)| format!("{c:<w$}", w = widths[i])).collect::<Vec<_>>().join(" | ");
    println!("{}", fmt(&header.map(String::from)));
    println!("{}", widths.iter().map(|w| "-".repeat(*w)).collect::<Vec<_>>().join("-|-"));
    for l in &lines {
        println!("{}", fmt(l));
    }
    if !rows.iter().any(|r| r.kinds == "Elixir -> Elixir") {
        println!("(no Elixir -> Elixir baseline: the cluster has fewer than two Elixir nodes hosting {TYPE:?})");
    }
    println!(
        "handoff: {} rounds each way, latency from releasing the held source to the result at this client; calls: {} per direction; one-way: {} messages x {} rounds per direction, median and min..max",
        a.rounds, a.calls, a.messages, SEND_ROUNDS
    );
}
