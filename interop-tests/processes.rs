//! Issue "Processes": erlnode processes as first-class citizens of an
//! Elixir cluster: GenServer calls both ways, links, monitors, exit
//! reasons, aliases, and prompt refusals of what erlnode cannot do.
//!
//! Elixir code is evaluated with `Code.eval_string/2`; values cross from
//! Rust as bindings (`lit` turns a term into an Erlang expression that
//! rebuilds it with `binary_to_term`), and Erlang variables bound by
//! earlier evals (the control loop keeps them) can be bound too.
//! Nothing here sleeps to synchronise: orderings come from the BEAM's
//! per-sender signal order (a process links/monitors, then sends `:go`
//! itself) and from bounded polling of `Process.info`.

use crate::support::{self, BeamNode, Epmd, Erlnode};
use erlnode::gen_server::{self, Ctx, Flow, GenServer, Reply, ServerCallError};
use erlnode::process::{CallError, Dest, RecvError};
use erlnode::{Mailbox, Node, Pid, Reference, Term};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// Bound on every wait in these tests (evals, receives, calls).
const T: Duration = Duration::from_secs(20);

struct Cluster {
    rust: Node,
    beam: BeamNode,
    _epmd: Epmd,
}

/// A private epmd, an erlnode library node and an Elixir node, sharing a
/// fresh cookie. The Elixir node gets `WaitUntil(Fun, Tries)`: polls
/// `Fun` every 10 ms, at most `Tries` times, returning whether it held.
async fn cluster(prefix: &str) -> Cluster {
    support::require_erlang();
    let epmd = Epmd::start().await;
    let cookie = support::unique("cookie");
    let rust = support::rust_node_builder("rust", &cookie, epmd.port())
        .start()
        .await
        .expect("rust node starts");
    let beam = BeamNode::builder().prefix(prefix).cookie(&cookie).epmd_port(epmd.port()).elixir(true).start().await;
    beam.eval(
        "WaitUntil = fun W(F, N) -> case F() of true -> true; _ when N =< 0 -> false; _ -> timer:sleep(10), W(F, N - 1) end end, ok",
    )
    .await;
    Cluster { rust, beam, _epmd: epmd }
}

/// An Erlang expression evaluating to `t`.
fn lit(t: &Term) -> String {
    format!("binary_to_term(binary:decode_hex(<<\"{}\">>))", support::hex_encode(&erlnode::term::encode(t)))
}

fn lit_pid(p: &Pid) -> String {
    lit(&Term::Pid(p.clone()))
}

/// The Erlang expression evaluating Elixir `code` with `binds`
/// (`(elixir_var, erlang_expr)`), e.g. to bind the result: `E1 = ...`.
fn ex_expr(code: &str, binds: &[(&str, &str)]) -> String {
    let bytes: Vec<String> = code.bytes().map(|b| b.to_string()).collect();
    let binds: Vec<String> = binds.iter().map(|(k, v)| format!("{{'{k}', {v}}}")).collect();
    format!("element(1, 'Elixir.Code':eval_string(<<{}>>, [{}]))", bytes.join(","), binds.join(", "))
}

/// Evaluates Elixir code (bounded by `T`), panicking on an exception.
async fn ex(beam: &BeamNode, code: &str, binds: &[(&str, &str)]) -> Term {
    beam.try_eval_timeout(&ex_expr(code, binds), T).await.unwrap_or_else(|e| panic!("{e}"))
}

/// Evaluates Elixir code and binds its value to the Erlang variable `var`
/// for later evals.
async fn ex_let(beam: &BeamNode, var: &str, code: &str, binds: &[(&str, &str)]) -> Term {
    beam.try_eval_timeout(&format!("{var} = {}", ex_expr(code, binds)), T).await.unwrap_or_else(|e| panic!("{e}"))
}

fn atom(s: &str) -> Term {
    Term::atom(s)
}

fn pid_of(t: &Term) -> Pid {
    t.as_pid().cloned().unwrap_or_else(|| panic!("not a pid: {t:?}"))
}

/// Waits for the `{'DOWN', r, process, Object, Reason}` of `r`.
async fn down(mb: &mut Mailbox, r: &Reference) -> (Term, Term) {
    support::down(mb, r, T).await
}

/// Waits for `{'EXIT', from, Reason}`.
async fn exit_msg(mb: &mut Mailbox, from: &Pid) -> Term {
    mb.recv_match(T, |m| match m.as_tuple() {
        Some([e, Term::Pid(p), reason]) if e.is_atom("EXIT") && p == from => Some(reason.clone()),
        _ => None,
    })
    .await
    .unwrap_or_else(|e| panic!("no EXIT from {from}: {e}"))
}

/// A Rust process (a task) that exits with `reason` when it receives `:go`.
fn spawn_exit_on_go(rust: &Node, reason: Term) -> Pid {
    rust.spawn(move |mut mb| async move {
        while let Some(m) = mb.recv().await {
            if m.is_atom("go") {
                return reason;
            }
        }
        atom("unreachable")
    })
}

// ---------------------------------------------------------------------------
// 1. erlnode_echo from Elixir

#[tokio::test(flavor = "multi_thread")]
async fn elixir_calls_and_sends_to_erlnode_echo() {
    let c = cluster("echo").await;
    erlnode::services::echo::spawn(&c.rust, "erlnode_echo").unwrap();
    let node = lit(&Term::Atom(c.rust.name().clone()));
    let r = ex(
        &c.beam,
        r#"
        import Bitwise
        terms = [0, -1, 255, 1 <<< 40, -(1 <<< 70), 3.25, :atom, :"with space", :"ünï",
                 "binary", "", 'charlist', [], [1, [2, [3]]], [1 | 2], {}, {1, {2, {3}}},
                 %{}, %{:a => 1, "b" => [2], {:c} => %{d: nil}}, self(), make_ref(),
                 <<1::3>>, true, nil, fn x -> x + 1 end, &Enum.map/2,
                 :binary.copy("x", 100_000)]
        dest = {:erlnode_echo, node}
        bad_calls = Enum.reject(terms, fn t -> GenServer.call(dest, t, 10_000) === {:echo, t} end)
        bad_sends = Enum.reject(terms, fn t ->
          send(dest, {self(), t})
          receive do
            back -> back === t
          after
            10_000 -> false
          end
        end)
        {length(terms), bad_calls, bad_sends}
        "#,
        &[("node", &node)],
    )
    .await;
    let t = r.as_tuple().unwrap();
    assert!(t[0].as_int().unwrap() > 20);
    assert_eq!(t[1], Term::nil(), "GenServer.call did not return {{:echo, x}} for these");
    assert_eq!(t[2], Term::nil(), "send/receive did not echo these back");
}

// ---------------------------------------------------------------------------
// 2. Rust calls Elixir GenServers

const ELIXIR_COUNTER: &str = r#"
defmodule Counter do
  use GenServer
  def init(n), do: {:ok, n}
  def handle_call(:get, _from, n), do: {:reply, n, n}
  def handle_call({:add, k}, _from, n), do: {:reply, n + k, n + k}
  def handle_call(:never, _from, n), do: {:noreply, n}
  def handle_call({:stop, reason}, _from, n), do: {:stop, reason, n}
  def handle_call({:hang, notify}, _from, n) do
    send(notify, :hanging)
    {:noreply, n}
  end
end
{:ok, pid} = GenServer.start(Counter, 0, name: :counter)
{:ok, _} = Agent.start(fn -> 42 end, name: :agent)
pid
"#;

#[derive(Serialize, Deserialize, Debug, PartialEq)]
#[serde(rename_all = "snake_case")]
enum CounterReq {
    Get,
    Add(i64),
}

#[tokio::test(flavor = "multi_thread")]
async fn rust_calls_elixir_genserver_with_distinct_errors() {
    let mut c = cluster("gscall").await;
    let counter = pid_of(&ex(&c.beam, ELIXIR_COUNTER, &[]).await);
    let beam_name = c.beam.name().to_string();
    let bn = beam_name.as_str();
    let mut mb = c.rust.spawn_mailbox();

    // Untyped, by name and by pid.
    let add5 = Term::tuple([atom("add"), Term::Int(5)]);
    assert_eq!(mb.call(("counter", bn), add5.clone(), T).await, Ok(Term::Int(5)));
    assert_eq!(mb.call(&counter, add5, T).await, Ok(Term::Int(10)));
    // An Agent, with a fun made on the Elixir node travelling through Rust.
    let fun = ex(&c.beam, "fn s -> s + 1 end", &[]).await;
    assert!(matches!(fun, Term::Fun(_)), "{fun:?}");
    let get = Term::tuple([atom("get"), fun]);
    assert_eq!(mb.call(("agent", bn), get, T).await, Ok(Term::Int(43)));

    // Typed through serde.
    let n: i64 = gen_server::call(&c.rust, ("counter", bn), &CounterReq::Add(3), T).await.unwrap();
    assert_eq!(n, 13);
    let n: i64 = gen_server::call(&c.rust, &counter, &CounterReq::Get, T).await.unwrap();
    assert_eq!(n, 13);
    // A reply that does not decode into the asked type is a Decode error.
    let r = gen_server::call::<String>(&c.rust, &counter, &CounterReq::Get, T).await;
    assert!(matches!(r, Err(ServerCallError::Decode(_))), "{r:?}");

    // Timeout: a server that never replies.
    let r = mb.call(("counter", bn), atom("never"), Duration::from_millis(300)).await;
    assert!(matches!(r, Err(CallError::Timeout(_))), "{r:?}");
    // The server is fine and the mailbox is clean afterwards.
    assert_eq!(mb.call(("counter", bn), atom("get"), T).await, Ok(Term::Int(13)));

    // NoProc, promptly: a 60 s call must end well inside the 20 s bound.
    let r = tokio::time::timeout(T, mb.call(("no_such_name", bn), atom("x"), Duration::from_secs(60)))
        .await
        .expect("a call to an unknown name returns before the test bound");
    assert!(matches!(r, Err(CallError::NoProc(_))), "{r:?}");
    let dead = pid_of(&c.beam.eval("P = spawn(fun() -> ok end), M = monitor(process, P), receive {'DOWN', M, _, _, _} -> P end").await);
    let r = tokio::time::timeout(T, gen_server::call::<i64>(&c.rust, &dead, &CounterReq::Get, Duration::from_secs(60)))
        .await
        .expect("a call to a dead pid returns before the test bound");
    assert!(matches!(r, Err(ServerCallError::Call(CallError::NoProc(_)))), "{r:?}");

    // Exit: the server stops during the call.
    ex(&c.beam, "{:ok, _} = GenServer.start(Counter, 0, name: :doomed)", &[]).await;
    let stop_me = Term::tuple([atom("stop"), Term::tuple([atom("shutdown"), atom("asked")])]);
    let r = mb.call(("doomed", bn), stop_me, T).await;
    match r {
        Err(CallError::Exit { reason, .. }) => assert_eq!(reason, Term::tuple([atom("shutdown"), atom("asked")])),
        other => panic!("expected CallError::Exit, got {other:?}"),
    }

    // NodeDown: the node goes away while the server sits on the request.
    let ctl = pid_of(&c.beam.eval("self()").await);
    let rust = c.rust.clone();
    let name = beam_name.clone();
    let call = tokio::spawn(async move {
        let mut mb = rust.spawn_mailbox();
        mb.call(("counter", name.as_str()), Term::tuple([atom("hang"), Term::Pid(ctl)]), Duration::from_secs(60)).await
    });
    assert_eq!(c.beam.eval("receive hanging -> ok after 20000 -> timeout end").await, atom("ok"));
    c.beam.kill().await;
    let r = tokio::time::timeout(T, call).await.expect("the call ends when the node dies").unwrap();
    assert!(matches!(r, Err(CallError::NodeDown(_))), "{r:?}");
    // A call to the node that is now gone: the reconnection fails, and
    // that too is NodeDown at once (OTP: the monitor fires noconnection),
    // not a 60 s wait. By name and by pid.
    let r = tokio::time::timeout(T, mb.call(("counter", bn), atom("get"), Duration::from_secs(60)))
        .await
        .expect("a call to an unreachable node returns before the test bound");
    assert!(matches!(r, Err(CallError::NodeDown(_))), "{r:?}");
    let r = tokio::time::timeout(T, mb.call(&counter, atom("get"), Duration::from_secs(60)))
        .await
        .expect("a call to an unreachable node returns before the test bound");
    assert!(matches!(r, Err(CallError::NodeDown(_))), "{r:?}");
}

// ---------------------------------------------------------------------------
// 3. Elixir calls an unknown name on erlnode

#[tokio::test(flavor = "multi_thread")]
async fn elixir_call_to_unknown_rust_name_exits_noproc_at_once() {
    let c = cluster("noproc").await;
    let node = lit(&Term::Atom(c.rust.name().clone()));
    // :infinity: only the noproc DOWN can end this call inside the eval bound.
    let r = ex(
        &c.beam,
        r#"
        try do
          GenServer.call({:no_such_name, node}, :x, :infinity)
        catch
          :exit, reason -> reason
        end
        "#,
        &[("node", &node)],
    )
    .await;
    let want = Term::tuple([
        atom("noproc"),
        Term::tuple([
            atom("Elixir.GenServer"),
            atom("call"),
            Term::list([Term::tuple([atom("no_such_name"), Term::Atom(c.rust.name().clone())]), atom("x"), atom("infinity")]),
        ]),
    ]);
    assert_eq!(r, want);
    // The same for a pid that is gone.
    let dead = c.rust.spawn_mailbox().pid().clone();
    let r = ex(
        &c.beam,
        "try do GenServer.call(dead, :x, 60_000) catch :exit, {reason, _} -> reason end",
        &[("dead", &lit_pid(&dead))],
    )
    .await;
    assert_eq!(r, atom("noproc"));
    // A cast to an unknown name is silently dropped, as on the BEAM.
    assert_eq!(ex(&c.beam, "GenServer.cast({:no_such_name, node}, :x)", &[("node", &node)]).await, atom("ok"));
    assert_eq!(ex(&c.beam, "Node.ping(node)", &[("node", &node)]).await, atom("pong"));
}

// ---------------------------------------------------------------------------
// 4. A Rust GenServer called from Elixir

/// A server that stops (without replying) on `{:stop, reason}`.
struct Stopper;

impl GenServer for Stopper {
    type Call = (erlnode::Atom, Term);
    type Cast = Term;
    type Reply = Term;

    async fn handle_call(&mut self, (_, reason): (erlnode::Atom, Term), _from: &Term, _ctx: &mut Ctx) -> Reply<Term> {
        Reply::Stop { reason, reply: None }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "snake_case")]
enum CounterCast {
    Add(i64),
}

struct RustCounter(i64);

impl GenServer for RustCounter {
    type Call = CounterReq;
    type Cast = CounterCast;
    type Reply = i64;

    async fn handle_call(&mut self, req: CounterReq, _from: &Term, _ctx: &mut Ctx) -> Reply<i64> {
        if let CounterReq::Add(n) = req {
            self.0 += n;
        }
        Reply::Reply(self.0)
    }

    async fn handle_cast(&mut self, msg: CounterCast, _ctx: &mut Ctx) -> Flow {
        let CounterCast::Add(n) = msg;
        self.0 += n;
        Flow::Continue
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn rust_genserver_called_from_elixir() {
    let c = cluster("rustgs").await;
    let server = gen_server::start(&c.rust, RustCounter(0)).name("rust_counter").spawn().unwrap();
    let node = lit(&Term::Atom(c.rust.name().clone()));
    let r = ex(
        &c.beam,
        r#"
        s = {:rust_counter, node}
        a = GenServer.call(s, {:add, 5})
        :ok = GenServer.cast(s, {:add, 10})
        b = GenServer.call(s, :get)
        bad = GenServer.call(s, {:mul, 2})
        bad2 = GenServer.call(s, "not even a tuple")
        :ok = GenServer.cast(s, :bogus)
        c = GenServer.call(pid, {:add, 1})
        {a, b, bad, bad2, c}
        "#,
        &[("node", &node), ("pid", &lit_pid(server.pid()))],
    )
    .await;
    let t = r.as_tuple().unwrap_or_else(|| panic!("{r:?}"));
    assert_eq!(t[0], Term::Int(5));
    assert_eq!(t[1], Term::Int(15), "the cast was applied before the next call");
    for bad in [&t[2], &t[3]] {
        match bad.as_tuple() {
            Some([e, inner]) if e.is_atom("error") => match inner.as_tuple() {
                Some([b, Term::Binary(_)]) if b.is_atom("bad_request") => {}
                _ => panic!("{bad:?}"),
            },
            _ => panic!("expected {{:error, {{:bad_request, _}}}}, got {bad:?}"),
        }
    }
    assert_eq!(t[4], Term::Int(16), "wrong shapes did not crash or change the server");
    assert!(c.rust.is_alive(server.pid()));
    assert_eq!(c.rust.whereis("rust_counter").as_ref(), Some(server.pid()));
    // And from Rust, typed.
    assert_eq!(server.call::<i64>(&CounterReq::Get, T).await.unwrap(), 16);

    // A server that stops during a call: the Elixir caller exits with
    // the server's reason (the monitor by name reports it).
    let stopper = gen_server::start(&c.rust, Stopper).name("stopper").spawn().unwrap();
    let r = ex(
        &c.beam,
        r#"
        try do
          GenServer.call({:stopper, node}, {:stop, {:shutdown, :asked}}, :infinity)
        catch
          :exit, {reason, {GenServer, :call, _}} -> reason
        end
        "#,
        &[("node", &node)],
    )
    .await;
    assert_eq!(r, Term::tuple([atom("shutdown"), atom("asked")]));
    assert!(!c.rust.is_alive(stopper.pid()));
    assert_eq!(c.rust.whereis("stopper"), None);
}

// ---------------------------------------------------------------------------
// 5. Links

/// An Elixir process that waits for `:stop` (then exits normally) or
/// `{:exit, reason}` (then exits with reason); bound to `var`.
async fn elixir_waiter(beam: &BeamNode, var: &str) -> Pid {
    pid_of(
        &ex_let(
            beam,
            var,
            "spawn(fn -> receive do :stop -> :ok; {:exit, r} -> exit(r) end end)",
            &[],
        )
        .await,
    )
}

/// Waits until the BEAM sees `e` (an Erlang variable) linked to `r`.
async fn beam_sees_link(beam: &BeamNode, e: &str, r: &Pid, linked: bool) {
    let got = ex(
        beam,
        "wait_until.(fn -> case Process.info(e, :links) do {:links, l} -> (r in l) == linked; nil -> false end end, 1000)",
        &[("wait_until", "WaitUntil"), ("e", e), ("r", &lit_pid(r)), ("linked", if linked { "true" } else { "false" })],
    )
    .await;
    assert_eq!(got, atom("true"), "BEAM link state of {e} to {r} never became {linked}");
}

/// Waits until the BEAM lists `who` among the monitors of `e` (an Erlang
/// variable), so that its MONITOR_P has arrived (or, `yes` false, until
/// a DEMONITOR has).
async fn beam_sees_monitor(beam: &BeamNode, e: &str, who: &Pid, yes: bool) {
    let got = ex(
        beam,
        "wait_until.(fn -> case Process.info(e, :monitored_by) do {:monitored_by, l} -> (w in l) == yes; nil -> false end end, 1000)",
        &[("wait_until", "WaitUntil"), ("e", e), ("w", &lit_pid(who)), ("yes", if yes { "true" } else { "false" })],
    )
    .await;
    assert_eq!(got, atom("true"), "monitored_by of {e} never became {yes}");
}

#[tokio::test(flavor = "multi_thread")]
async fn elixir_exit_propagates_to_linked_rust_processes() {
    let c = cluster("linkin").await;
    let beam = &c.beam;
    let mut watcher = c.rust.spawn_mailbox();

    // Killed Elixir process -> linked Rust process dies with `killed`.
    let e1 = elixir_waiter(beam, "E1").await;
    let mut r1 = c.rust.spawn_mailbox();
    let m1 = watcher.monitor(r1.pid());
    r1.link(&e1);
    beam_sees_link(beam, "E1", r1.pid(), true).await;
    ex(beam, "Process.exit(e, :kill)", &[("e", "E1")]).await;
    assert_eq!(down(&mut watcher, &m1).await, (Term::Pid(r1.pid().clone()), atom("killed")));
    assert_eq!(r1.recv_timeout(T).await, Err(RecvError::Exited(atom("killed"))));
    assert!(!c.rust.is_alive(r1.pid()));

    // Trapping exits, the same kill arrives as {'EXIT', Pid, killed}.
    let e2 = elixir_waiter(beam, "E2").await;
    let mut r2 = c.rust.spawn_mailbox();
    r2.trap_exit(true);
    r2.link(&e2);
    beam_sees_link(beam, "E2", r2.pid(), true).await;
    ex(beam, "Process.exit(e, :kill)", &[("e", "E2")]).await;
    assert_eq!(exit_msg(&mut r2, &e2).await, atom("killed"));
    assert!(c.rust.is_alive(r2.pid()));

    // An Elixir process exiting with :boom kills a non-trapping Rust
    // process with :boom and tells a trapping one.
    let e3 = elixir_waiter(beam, "E3").await;
    let r3 = c.rust.spawn_mailbox();
    let mut r3t = c.rust.spawn_mailbox();
    r3t.trap_exit(true);
    let m3 = watcher.monitor(r3.pid());
    r3.link(&e3);
    r3t.link(&e3);
    beam_sees_link(beam, "E3", r3.pid(), true).await;
    beam_sees_link(beam, "E3", r3t.pid(), true).await;
    ex(beam, "send(e, {:exit, :boom})", &[("e", "E3")]).await;
    assert_eq!(down(&mut watcher, &m3).await.1, atom("boom"));
    assert_eq!(exit_msg(&mut r3t, &e3).await, atom("boom"));

    // A process that exits with reason `kill` itself sends `kill` over its
    // links, which (unlike exit(Pid, kill)) kills with reason `kill`, as
    // OTP 25 does.
    let e4 = elixir_waiter(beam, "E4").await;
    let r4 = c.rust.spawn_mailbox();
    let m4 = watcher.monitor(r4.pid());
    r4.link(&e4);
    beam_sees_link(beam, "E4", r4.pid(), true).await;
    ex(beam, "send(e, {:exit, :kill})", &[("e", "E4")]).await;
    assert_eq!(down(&mut watcher, &m4).await.1, atom("kill"));

    // Linking to a dead Elixir pid: an exit signal `noproc` comes back.
    let dead = pid_of(&beam.eval("P = spawn(fun() -> ok end), M = monitor(process, P), receive {'DOWN', M, _, _, _} -> P end").await);
    let mut r6 = c.rust.spawn_mailbox();
    let m6 = watcher.monitor(r6.pid());
    r6.link(&dead);
    assert_eq!(down(&mut watcher, &m6).await.1, atom("noproc"));
    assert_eq!(r6.recv_timeout(T).await, Err(RecvError::Exited(atom("noproc"))));
    let mut r6t = c.rust.spawn_mailbox();
    r6t.trap_exit(true);
    r6t.link(&dead);
    assert_eq!(exit_msg(&mut r6t, &dead).await, atom("noproc"));

    // `normal` does not kill; a trapping process sees it. The BEAM sends a
    // dying process's link EXITs before its monitor DOWNs, so once r5 has
    // its DOWN it has handled the EXIT too.
    let e5 = elixir_waiter(beam, "E5").await;
    let mut r5 = c.rust.spawn_mailbox();
    let mut r5t = c.rust.spawn_mailbox();
    r5t.trap_exit(true);
    r5.link(&e5);
    r5t.link(&e5);
    let m5 = r5.monitor(&e5);
    beam_sees_monitor(beam, "E5", r5.pid(), true).await;
    beam_sees_link(beam, "E5", r5.pid(), true).await;
    beam_sees_link(beam, "E5", r5t.pid(), true).await;
    ex(beam, "send(e, :stop)", &[("e", "E5")]).await;
    assert_eq!(down(&mut r5, &m5).await.1, atom("normal"));
    assert!(c.rust.is_alive(r5.pid()), "a normal exit killed a linked process");
    assert_eq!(exit_msg(&mut r5t, &e5).await, atom("normal"));
    drop((r2, r3, r3t, r4, r5, r5t, r6t));
}

#[tokio::test(flavor = "multi_thread")]
async fn rust_exit_propagates_to_linked_elixir_processes() {
    let c = cluster("linkout").await;
    let beam = &c.beam;

    // Each Elixir process links to its Rust process and then sends it
    // :go itself, so the LINK is there before the Rust process exits.
    const LINK_AND_GO: &str = r#"
        {e, ref} = spawn_monitor(fn ->
          Process.flag(:trap_exit, trap)
          Process.link(r)
          send(r, :go)
          receive do
            msg -> send(parent, {:trapped, self(), msg})
          end
        end)
        receive do
          {:DOWN, ^ref, :process, ^e, reason} -> {:down, reason}
          {:trapped, ^e, msg} -> {:trapped, msg}
        after
          15_000 -> :timeout
        end
    "#;
    let run = |r: Pid, trap: bool| {
        let pid = lit_pid(&r);
        async move {
            ex(beam, LINK_AND_GO, &[("r", &pid), ("trap", if trap { "true" } else { "false" }), ("parent", "self()")]).await
        }
    };

    let r = spawn_exit_on_go(&c.rust, atom("boom"));
    assert_eq!(run(r, false).await, Term::tuple([atom("down"), atom("boom")]));

    let r = spawn_exit_on_go(&c.rust, Term::tuple([atom("shutdown"), Term::from("bye")]));
    let want = Term::tuple([atom("EXIT"), Term::Pid(r.clone()), Term::tuple([atom("shutdown"), Term::from("bye")])]);
    assert_eq!(run(r, true).await, Term::tuple([atom("trapped"), want]));

    // exit(self(), kill) in Rust: the process dies `killed`, and that is
    // what the linked Elixir process sees.
    let r = c.rust.spawn(|mut mb| async move {
        while let Some(m) = mb.recv().await {
            if m.is_atom("go") {
                let me = mb.pid().clone();
                mb.exit(&me, atom("kill"));
            }
        }
        atom("unreachable")
    });
    assert_eq!(run(r, false).await, Term::tuple([atom("down"), atom("killed")]));

    // Linking to a dead Rust pid: the Elixir process gets `noproc`.
    let dead = c.rust.spawn_mailbox().pid().clone();
    let got = ex(
        beam,
        "Process.flag(:trap_exit, true); Process.link(dead); receive do {:EXIT, ^dead, reason} -> reason after 15_000 -> :timeout end",
        &[("dead", &lit_pid(&dead))],
    )
    .await;
    assert_eq!(got, atom("noproc"));

    // Link, unlink and link again from Elixir (LINK, UNLINK_ID, LINK in
    // a row): the last link holds.
    let r = spawn_exit_on_go(&c.rust, atom("relinked"));
    let got = ex(
        beam,
        r#"
        {e, ref} = spawn_monitor(fn ->
          Process.link(r)
          Process.unlink(r)
          Process.link(r)
          send(r, :go)
          receive do _ -> :ok end
        end)
        receive do {:DOWN, ^ref, :process, ^e, reason} -> reason after 15_000 -> :timeout end
        "#,
        &[("r", &lit_pid(&r))],
    )
    .await;
    assert_eq!(got, atom("relinked"));

    // A normal exit does not kill the linked Elixir process.
    let r = spawn_exit_on_go(&c.rust, atom("normal"));
    let mut w = c.rust.spawn_mailbox();
    let mw = w.monitor(&r);
    let e = pid_of(
        &ex_let(
            beam,
            "E6",
            "spawn(fn -> Process.link(r); send(r, :go); receive do :ping -> send(parent, {:pong, self()}) end; receive do :stop -> :ok end end)",
            &[("r", &lit_pid(&r)), ("parent", "self()")],
        )
        .await,
    );
    assert_eq!(down(&mut w, &mw).await.1, atom("normal"));
    // The EXIT left before the DOWN fired; :ping follows it on the same link.
    w.send(&e, atom("ping"));
    let got = ex(beam, "receive do {:pong, ^e} -> Process.alive?(e) after 15_000 -> :timeout end", &[("e", "E6")]).await;
    assert_eq!(got, atom("true"), "a normal exit of a linked Rust process killed the Elixir one");
}

#[tokio::test(flavor = "multi_thread")]
async fn elixir_process_exit_2_on_rust_processes() {
    let c = cluster("exit2").await;
    let beam = &c.beam;
    let mut watcher = c.rust.spawn_mailbox();
    // exit/2 signals come from the eval's control process.
    let ctl = pid_of(&beam.eval("self()").await);

    // :shutdown kills a process that does not trap exits...
    let r1 = c.rust.spawn_mailbox();
    let m1 = watcher.monitor(r1.pid());
    ex(beam, "Process.exit(r, :shutdown)", &[("r", &lit_pid(r1.pid()))]).await;
    assert_eq!(down(&mut watcher, &m1).await.1, atom("shutdown"));

    // ...and is a message to one that does.
    let mut r2 = c.rust.spawn_mailbox();
    r2.trap_exit(true);
    ex(beam, "Process.exit(r, {:shutdown, 1})", &[("r", &lit_pid(r2.pid()))]).await;
    assert_eq!(exit_msg(&mut r2, &ctl).await, Term::tuple([atom("shutdown"), Term::Int(1)]));

    // :normal is ignored unless trapped; the marker from the same sender
    // shows the signal has been handled.
    let mut r3 = c.rust.spawn_mailbox();
    ex(beam, "Process.exit(r, :normal); send(r, :marker)", &[("r", &lit_pid(r3.pid()))]).await;
    assert_eq!(r3.recv_timeout(T).await, Ok(atom("marker")));
    assert!(c.rust.is_alive(r3.pid()));
    ex(beam, "Process.exit(r, :normal)", &[("r", &lit_pid(r2.pid()))]).await;
    assert_eq!(exit_msg(&mut r2, &ctl).await, atom("normal"));

    // :kill cannot be trapped: the victim dies with :killed.
    let m2 = watcher.monitor(r2.pid());
    ex(beam, "Process.exit(r, :kill)", &[("r", &lit_pid(r2.pid()))]).await;
    assert_eq!(down(&mut watcher, &m2).await.1, atom("killed"));
}

#[tokio::test(flavor = "multi_thread")]
async fn unlink_stops_exit_propagation_both_ways() {
    let c = cluster("unlink").await;
    let beam = &c.beam;
    let mut watcher = c.rust.spawn_mailbox();

    // Elixir unlinks (UNLINK_ID to erlnode, which acks), then tells the
    // Rust process to exit with :boom: the Elixir process survives.
    let r = spawn_exit_on_go(&c.rust, atom("boom"));
    let mr = watcher.monitor(&r);
    let e = pid_of(
        &ex_let(
            beam,
            "E1",
            r#"spawn(fn ->
                 Process.link(r)
                 Process.unlink(r)
                 send(r, :go)
                 receive do :ping -> send(parent, {:pong, self()}) end
                 receive do :stop -> :ok end
               end)"#,
            &[("r", &lit_pid(&r)), ("parent", "self()")],
        )
        .await,
    );
    assert_eq!(down(&mut watcher, &mr).await.1, atom("boom"));
    watcher.send(&e, atom("ping"));
    let got = ex(beam, "receive do {:pong, ^e} -> Process.alive?(e) after 15_000 -> :timeout end", &[("e", "E1")]).await;
    assert_eq!(got, atom("true"), "the Elixir process died although it had unlinked");

    // Rust unlinks: the BEAM drops its side of the link, and killing the
    // Elixir process leaves the Rust one alive.
    let e2 = elixir_waiter(beam, "E2").await;
    let mut r2 = c.rust.spawn_mailbox();
    r2.link(&e2);
    beam_sees_link(beam, "E2", r2.pid(), true).await;
    r2.unlink(&e2);
    beam_sees_link(beam, "E2", r2.pid(), false).await;
    let m2 = r2.monitor(&e2);
    beam_sees_monitor(beam, "E2", r2.pid(), true).await;
    ex(beam, "Process.exit(e, :kill)", &[("e", "E2")]).await;
    assert_eq!(down(&mut r2, &m2).await.1, atom("killed"));
    assert!(c.rust.is_alive(r2.pid()), "an unlinked Rust process was killed");

    // Linking again after an unlink works (the link is really new).
    let e3 = elixir_waiter(beam, "E3").await;
    let r3 = c.rust.spawn_mailbox();
    let m3 = watcher.monitor(r3.pid());
    r3.link(&e3);
    r3.unlink(&e3);
    r3.link(&e3);
    beam_sees_link(beam, "E3", r3.pid(), true).await;
    ex(beam, "send(e, {:exit, :again})", &[("e", "E3")]).await;
    assert_eq!(down(&mut watcher, &m3).await.1, atom("again"));
}

// ---------------------------------------------------------------------------
// 6. Monitors

#[tokio::test(flavor = "multi_thread")]
async fn elixir_monitors_rust_processes() {
    let c = cluster("monin").await;
    let beam = &c.beam;
    let node = lit(&Term::Atom(c.rust.name().clone()));
    let rust_name = Term::Atom(c.rust.name().clone());

    // A live pid: DOWN with its exit reason. The monitoring process sends
    // :go itself, after the MONITOR_P.
    const MONITOR_AND_GO: &str = r#"
        ref = Process.monitor(target)
        send(target, :go)
        receive do
          {:DOWN, ^ref, :process, object, reason} -> {object, reason}
        after
          15_000 -> :timeout
        end
    "#;
    let reason = Term::tuple([atom("shutdown"), Term::list([Term::Int(1), Term::from("two")])]);
    let r = spawn_exit_on_go(&c.rust, reason.clone());
    assert_eq!(ex(beam, MONITOR_AND_GO, &[("target", &lit_pid(&r))]).await, Term::tuple([Term::Pid(r), reason]));

    // A registered name: the DOWN names {name, node}.
    let r = spawn_exit_on_go(&c.rust, atom("boom"));
    c.rust.register("rust_named", &r).unwrap();
    let got = ex(beam, MONITOR_AND_GO, &[("target", &format!("{{rust_named, {node}}}"))]).await;
    assert_eq!(got, Term::tuple([Term::tuple([atom("rust_named"), rust_name.clone()]), atom("boom")]));

    // A dead pid and an unknown name: noproc at once.
    let dead = c.rust.spawn_mailbox().pid().clone();
    assert!(!c.rust.is_alive(&dead));
    const MONITOR: &str = r#"
        ref = Process.monitor(target)
        receive do
          {:DOWN, ^ref, :process, object, reason} -> {object, reason}
        after
          15_000 -> :timeout
        end
    "#;
    assert_eq!(ex(beam, MONITOR, &[("target", &lit_pid(&dead))]).await, Term::tuple([Term::Pid(dead), atom("noproc")]));
    let got = ex(beam, MONITOR, &[("target", &format!("{{nobody_here, {node}}}"))]).await;
    assert_eq!(got, Term::tuple([Term::tuple([atom("nobody_here"), rust_name]), atom("noproc")]));

    // Demonitor: of two monitors on the same process, only the one kept
    // delivers.
    let r = spawn_exit_on_go(&c.rust, atom("boom"));
    let got = ex(
        beam,
        r#"
        gone = Process.monitor(target)
        kept = Process.monitor(target)
        true = Process.demonitor(gone)
        send(target, :go)
        receive do
          {:DOWN, ^kept, :process, _, reason} ->
            receive do
              {:DOWN, ^gone, _, _, _} -> :demonitored_down_delivered
            after
              0 -> reason
            end
        after
          15_000 -> :timeout
        end
        "#,
        &[("target", &lit_pid(&r))],
    )
    .await;
    assert_eq!(got, atom("boom"));
}

#[tokio::test(flavor = "multi_thread")]
async fn rust_monitors_elixir_processes_and_names() {
    let c = cluster("monout").await;
    let beam = &c.beam;
    let beam_atom = Term::Atom(erlnode::Atom::new(beam.name()));
    let mut w = c.rust.spawn_mailbox();

    // A pid: DOWN with the exit reason.
    let e1 = elixir_waiter(beam, "E1").await;
    let m1 = w.monitor(&e1);
    beam_sees_monitor(beam, "E1", w.pid(), true).await;
    ex(beam, "send(e, {:exit, {:shutdown, :bye}})", &[("e", "E1")]).await;
    assert_eq!(down(&mut w, &m1).await, (Term::Pid(e1), Term::tuple([atom("shutdown"), atom("bye")])));

    // A registered name: the DOWN names {name, node}.
    let _e2 = elixir_waiter(beam, "E2").await;
    beam.eval("true = register(ex_named, E2)").await;
    let m2 = w.monitor_name("ex_named", beam.name());
    beam_sees_monitor(beam, "E2", w.pid(), true).await;
    ex(beam, "Process.exit(e, :kill)", &[("e", "E2")]).await;
    assert_eq!(down(&mut w, &m2).await, (Term::tuple([atom("ex_named"), beam_atom.clone()]), atom("killed")));

    // A dead pid and an unknown name: noproc.
    let dead = pid_of(&beam.eval("P = spawn(fun() -> ok end), M = monitor(process, P), receive {'DOWN', M, _, _, _} -> P end").await);
    let m3 = w.monitor(&dead);
    assert_eq!(down(&mut w, &m3).await, (Term::Pid(dead), atom("noproc")));
    let m4 = w.monitor_name("nobody_here", beam.name());
    assert_eq!(down(&mut w, &m4).await, (Term::tuple([atom("nobody_here"), beam_atom]), atom("noproc")));

    // Demonitor: the BEAM forgets the monitor, and of two monitors only
    // the one kept delivers.
    let e5 = elixir_waiter(beam, "E5").await;
    let gone = w.monitor(&e5);
    beam_sees_monitor(beam, "E5", w.pid(), true).await;
    assert!(w.demonitor(&gone));
    beam_sees_monitor(beam, "E5", w.pid(), false).await;
    let kept = w.monitor(&e5);
    beam_sees_monitor(beam, "E5", w.pid(), true).await;
    ex(beam, "send(e, {:exit, :boom})", &[("e", "E5")]).await;
    assert_eq!(down(&mut w, &kept).await.1, atom("boom"));
    let stray = w
        .recv_match(Duration::ZERO, |m| match m.as_tuple() {
            Some([d, Term::Ref(r), ..]) if d.is_atom("DOWN") && r == &gone => Some(()),
            _ => None,
        })
        .await;
    assert_eq!(stray, Err(RecvError::Timeout), "a DOWN arrived for a demonitored reference");
}

#[tokio::test(flavor = "multi_thread")]
async fn lost_connections_deliver_noconnection_both_ways() {
    let mut c = cluster("nodedown").await;
    let bn = c.beam.name().to_string();
    let beam_atom = Term::Atom(erlnode::Atom::new(&bn));
    let node = lit(&Term::Atom(c.rust.name().clone()));

    // Sets up both directions: Rust `w` monitors Elixir process `var`
    // (which is linked to a non-trapping Rust process too), and the
    // Elixir control process monitors Rust process `r` (Erlang variable
    // `Ref<var>`). Returns (monitor ref, linked Rust process, its watcher ref).
    async fn watch_both(c: &Cluster, w: &mut Mailbox, watcher: &mut Mailbox, var: &str, r: &Pid) -> (Reference, Mailbox, Reference) {
        let e = elixir_waiter(&c.beam, var).await;
        let m = w.monitor(&e);
        let linked = c.rust.spawn_mailbox();
        let ml = watcher.monitor(linked.pid());
        linked.link(&e);
        beam_sees_link(&c.beam, var, linked.pid(), true).await;
        let got = ex(
            &c.beam,
            "wait_until.(fn -> {:monitored_by, l} = Process.info(e, :monitored_by); w in l end, 1000)",
            &[("wait_until", "WaitUntil"), ("e", var), ("w", &lit_pid(w.pid()))],
        )
        .await;
        assert_eq!(got, atom("true"));
        ex_let(&c.beam, &format!("Ref{var}"), "Process.monitor(r)", &[("r", &lit_pid(r))]).await;
        (m, linked, ml)
    }
    async fn elixir_down(c: &Cluster, var: &str) -> Term {
        ex(
            &c.beam,
            "receive do {:DOWN, ^ref, :process, _, reason} -> reason after 15_000 -> :timeout end",
            &[("ref", &format!("Ref{var}"))],
        )
        .await
    }
    let mut w = c.rust.spawn_mailbox();
    let mut watcher = c.rust.spawn_mailbox();
    let r = c.rust.spawn_mailbox();

    // 1. erlnode closes the connection.
    let (m, _linked, ml) = watch_both(&c, &mut w, &mut watcher, "E1", r.pid()).await;
    assert!(c.rust.disconnect(&bn));
    assert_eq!(down(&mut w, &m).await.1, atom("noconnection"));
    assert_eq!(down(&mut watcher, &ml).await.1, atom("noconnection"), "link broken with noconnection");
    assert_eq!(elixir_down(&c, "E1").await, atom("noconnection"));

    // 2. Elixir closes it (Node.disconnect); the eval reconnects first.
    assert_eq!(ex(&c.beam, "Node.connect(node)", &[("node", &node)]).await, atom("true"));
    let (m, _linked, ml) = watch_both(&c, &mut w, &mut watcher, "E2", r.pid()).await;
    assert_eq!(ex(&c.beam, "Node.disconnect(node)", &[("node", &node)]).await, atom("true"));
    assert_eq!(elixir_down(&c, "E2").await, atom("noconnection"));
    assert_eq!(down(&mut w, &m).await.1, atom("noconnection"));
    assert_eq!(down(&mut watcher, &ml).await.1, atom("noconnection"));

    // 3. A second erlnode node shuts down under an Elixir monitor.
    let other = Node::builder(format!("{}@127.0.0.1", support::unique("rust2")))
        .cookie(c.beam.cookie())
        .epmd_port(c.beam.epmd_port())
        .embedded_epmd(false)
        .start()
        .await
        .unwrap();
    let o = other.spawn_mailbox();
    let got = ex(
        &c.beam,
        "ref = Process.monitor(o); true = Node.connect(node(o)); send(o, :hello); ref",
        &[("o", &lit_pid(o.pid()))],
    )
    .await;
    let other_ref = lit(&got);
    let mut o = o;
    assert_eq!(o.recv_timeout(T).await, Ok(atom("hello")), "the monitor's connection is up");
    other.shutdown().await;
    let got = ex(&c.beam, "receive do {:DOWN, ^ref, :process, _, reason} -> reason after 15_000 -> :timeout end", &[("ref", &other_ref)]).await;
    assert_eq!(got, atom("noconnection"));

    // 4. The Elixir node dies: DOWNs for a pid and a name.
    assert_eq!(ex(&c.beam, "Node.connect(node)", &[("node", &node)]).await, atom("true"));
    let e3 = elixir_waiter(&c.beam, "E3").await;
    c.beam.eval("true = register(ex_named, E3)").await;
    let m_pid = w.monitor(&e3);
    let m_name = w.monitor_name("ex_named", &bn);
    let got = ex(
        &c.beam,
        "wait_until.(fn -> {:monitored_by, l} = Process.info(e, :monitored_by); Enum.count(l, &(&1 == w)) == 2 end, 1000)",
        &[("wait_until", "WaitUntil"), ("e", "E3"), ("w", &lit_pid(w.pid()))],
    )
    .await;
    assert_eq!(got, atom("true"));
    c.beam.kill().await;
    assert_eq!(down(&mut w, &m_pid).await, (Term::Pid(e3), atom("noconnection")));
    assert_eq!(down(&mut w, &m_name).await, (Term::tuple([atom("ex_named"), beam_atom]), atom("noconnection")));
    drop(r);
}

// ---------------------------------------------------------------------------
// 7. Spawning and rpc into erlnode

#[tokio::test(flavor = "multi_thread")]
async fn spawn_and_rpc_into_erlnode_fail_promptly() {
    let c = cluster("spawn").await;
    let node = lit(&Term::Atom(c.rust.name().clone()));
    // Every call below uses an infinite or 60 s timeout: only erlnode's
    // prompt refusal ends them inside the eval bound.
    let got = ex(
        &c.beam,
        r#"
        # OTP 25 turns a refused spawn into a local "crasher" process that
        # exits with the refusal (spawn, spawn_link), or raises it
        # (spawn_monitor).
        p1 = Node.spawn(node, fn -> :ok end)
        p2 = Node.spawn_link(node, fn -> :ok end)
        linked = receive do
          {:EXIT, ^p2, reason} -> reason
        after
          15_000 -> :timeout
        end
        mon = try do
          Node.spawn_monitor(node, fn -> :ok end)
        catch
          kind, reason -> {kind, reason}
        end
        erpc = try do
          :erpc.call(node, :erlang, :node, [], 60_000)
        catch
          kind, reason -> {kind, reason}
        end
        erpc_inf = try do
          :erpc.call(node, :erlang, :node, [], :infinity)
        catch
          kind, reason -> {kind, reason}
        end
        rpc = :rpc.call(node, :erlang, :node, [])
        rpc_inf = :rpc.call(node, :erlang, :node, [], :infinity)
        {node(p1) == node() and node(p2) == node(), linked, mon, erpc, erpc_inf, rpc, rpc_inf}
        "#,
        &[("node", &node)],
    )
    .await;
    let notsup = atom("notsup");
    let erpc_err = Term::tuple([atom("error"), Term::tuple([atom("erpc"), notsup.clone()])]);
    let badrpc = Term::tuple([atom("badrpc"), notsup.clone()]);
    assert_eq!(
        got,
        Term::tuple([
            atom("true"),
            notsup.clone(),
            Term::tuple([atom("error"), notsup.clone()]),
            erpc_err.clone(),
            erpc_err,
            badrpc.clone(),
            badrpc
        ]),
        "(spawn: a local pid exiting notsup; spawn_monitor raises notsup; erpc raises {{erpc, notsup}}; rpc gives {{badrpc, notsup}})"
    );

    // The Elixir node is healthy and still connected.
    assert_eq!(ex(&c.beam, "{1 + 1, Node.ping(node), node in Node.list()}", &[("node", &node)]).await,
        Term::tuple([Term::Int(2), atom("pong"), atom("true")]));

    // Liveness checks: answered by default (allowing them again is
    // harmless).
    c.rust.allow_liveness_checks();
    let live = c.rust.spawn_mailbox();
    let dead = c.rust.spawn_mailbox().pid().clone();
    let got = ex(
        &c.beam,
        r#"
        {:erpc.call(node, Process, :alive?, [live], 60_000),
         :erpc.call(node, Process, :alive?, [dead], 60_000),
         :rpc.call(node, :erlang, :is_process_alive, [live]),
         :rpc.call(node, :erlang, :is_process_alive, [dead]),
         try do
           :erpc.call(node, :erlang, :node, [], 60_000)
         catch
           kind, reason -> {kind, reason}
         end}
        "#,
        &[("node", &node), ("live", &lit_pid(live.pid())), ("dead", &lit_pid(&dead))],
    )
    .await;
    assert_eq!(
        got,
        Term::tuple([
            atom("true"),
            atom("false"),
            atom("true"),
            atom("false"),
            Term::tuple([atom("error"), Term::tuple([atom("erpc"), atom("notsup")])]),
        ])
    );
    assert!(c.rust.is_alive(live.pid()));
}

// ---------------------------------------------------------------------------
// 8. Aliases

#[tokio::test(flavor = "multi_thread")]
async fn elixir_sends_to_rust_alias_until_unalias() {
    let c = cluster("alias").await;
    let mut mb = c.rust.spawn_mailbox();
    let a = mb.alias();
    let me = lit_pid(mb.pid());

    // The alias used directly...
    ex(&c.beam, "send(a, {:via_alias, 1})", &[("a", &lit(&Term::Ref(a.clone())))]).await;
    assert_eq!(mb.recv_timeout(T).await, Ok(Term::tuple([atom("via_alias"), Term::Int(1)])));
    // ...and received in a message, as a reply address.
    let e = elixir_waiter_replying(&c.beam).await;
    mb.send(&e, Term::tuple([atom("reply_to"), Term::Ref(a.clone())]));
    assert_eq!(mb.recv_timeout(T).await, Ok(Term::tuple([atom("via_alias"), atom("from_message")])));

    // After unalias: dropped. The marker, sent after it by the same Elixir
    // process, proves the aliased message had its chance to arrive.
    mb.unalias(&a);
    ex(&c.beam, "send(a, :after_unalias); send(me, :marker)", &[("a", &lit(&Term::Ref(a.clone()))), ("me", &me)]).await;
    assert_eq!(mb.recv_timeout(T).await, Ok(atom("marker")), "a message to an inactive alias was delivered");
    // The pid itself still works.
    ex(&c.beam, "send(me, :by_pid)", &[("me", &me)]).await;
    assert_eq!(mb.recv_timeout(T).await, Ok(atom("by_pid")));
}

/// An Elixir process answering `{:reply_to, addr}` with
/// `{:via_alias, :from_message}` sent to `addr`.
async fn elixir_waiter_replying(beam: &BeamNode) -> Pid {
    pid_of(&ex(beam, "spawn(fn -> receive do {:reply_to, a} -> send(a, {:via_alias, :from_message}) end end)", &[]).await)
}

// ---------------------------------------------------------------------------
// 9. The binary

#[tokio::test(flavor = "multi_thread")]
async fn erlnode_run_hosts_echo_for_elixir() {
    support::require_erlang();
    let epmd = Epmd::start().await;
    let cookie = support::unique("cookie");
    let name = format!("{}@127.0.0.1", support::unique("cli"));
    let _cli = Erlnode::run(&name, &cookie, epmd.port(), &["--no-embedded-epmd"]).await;
    let beam = BeamNode::builder().prefix("cli").cookie(&cookie).epmd_port(epmd.port()).elixir(true).start().await;
    let node = lit(&Term::Atom(erlnode::Atom::new(&name)));
    let got = ex(
        &beam,
        r#"
        call = GenServer.call({:erlnode_echo, node}, {:hi, [1, 2.5, "x"]}, 15_000)
        send({:erlnode_echo, node}, {self(), :back})
        sent = receive do m -> m after 15_000 -> :timeout end
        {call, sent}
        "#,
        &[("node", &node)],
    )
    .await;
    let hi = Term::tuple([atom("hi"), Term::list([Term::Int(1), Term::Float(2.5), Term::from("x")])]);
    assert_eq!(got, Term::tuple([Term::tuple([atom("echo"), hi]), atom("back")]));
}

/// Messages around the 64 KiB fragment size from Rust to a BEAM process,
/// each bringing new atoms (so its atom cache header is tens of bytes):
/// every one arrives and the link stays up. One window of sizes used to
/// go out as a whole frame without its header, which the BEAM rejects as
/// a corrupted distribution header, dropping the link.
#[tokio::test(flavor = "multi_thread")]
async fn messages_at_the_fragment_boundary_reach_the_beam() {
    let c = cluster("edge").await;
    const N: usize = 160;
    c.beam
        .eval(&format!(
            "L = fun Loop(K, B) when K < {N} -> receive {{E1, E2, Bin}} when is_atom(E1), is_atom(E2) -> Loop(K + 1, B + byte_size(Bin)) after 20000 -> {{K, B}} end; Loop(K, B) -> {{K, B}} end,
             P = spawn(fun() -> R = L(0, 0), receive {{count, From}} -> From ! {{count, R}} end end),
             true = register(edge_sink, P), ok"
        ))
        .await;
    let mb = c.rust.spawn_mailbox();
    let mut bytes = 0i64;
    for off in 0..N {
        let n = 64 * 1024 - 120 + off;
        bytes += n as i64;
        let m = Term::tuple([Term::atom(&format!("edge_{off}_first")), Term::atom(&format!("edge_{off}_second")), Term::binary(vec![3u8; n])]);
        mb.send_to(&Dest::local("edge_sink", c.beam.name()), m);
    }
    let got = c.beam.eval("edge_sink ! {count, self()}, receive {count, R} -> R after 30000 -> timeout end").await;
    assert_eq!(got, Term::tuple([Term::Int(N as i64), Term::Int(bytes)]));
    assert!(c.rust.connected_nodes().iter().any(|n| n.as_str() == c.beam.name()), "the link stayed up");
}

/// Large binaries leave a Rust node from their own buffers, not copied into
/// the link's queue (issue 16): several in one message, across fragment
/// boundaries, with the atom cache. A BEAM process echoes each message
/// back, and what returns is what was sent, byte for byte.
#[tokio::test(flavor = "multi_thread")]
async fn large_binaries_reach_the_beam_intact_and_come_back() {
    let c = cluster("bigbin").await;
    c.beam
        .eval("P = spawn(fun L() -> receive {From, M} -> From ! {echo, M}, L() end end), true = register(bigbin_echo, P), ok")
        .await;
    let mut mb = c.rust.spawn_mailbox();
    let bin = |n: usize, seed: u8| Term::binary((0..n).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)).collect::<Vec<u8>>());
    let msgs = [
        bin(64 * 1024, 1),
        Term::tuple([Term::atom("pair"), bin(200 * 1024 + 7, 2), Term::Int(5), bin(70_000, 3)]),
        Term::Map(vec![(Term::atom("data"), bin(1 << 20, 4)), (Term::atom("note"), Term::from("after"))]),
        Term::List(vec![bin(3 * 64 * 1024, 5), Term::atom("between"), bin(65 * 1024, 6)]),
    ];
    for m in &msgs {
        mb.send_to(&Dest::local("bigbin_echo", c.beam.name()), Term::tuple([Term::Pid(mb.pid().clone()), m.clone()]));
    }
    for m in &msgs {
        let back = mb.recv_timeout(Duration::from_secs(30)).await.expect("echo");
        assert!(back == Term::tuple([Term::atom("echo"), m.clone()]), "a message came back changed");
    }
    assert!(c.rust.connected_nodes().iter().any(|n| n.as_str() == c.beam.name()), "the link stayed up");
}
