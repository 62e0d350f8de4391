//! Issue 11 groundwork against real BEAM nodes: the liveness checks
//! Horde's registry makes of a remote pid (`:erpc.call(node, Process,
//! :alive?, [pid])`, no timeout) are answered by the stock `erlnode run`
//! binary, through erpc and rpc, while any other MFA is still refused.

use crate::support::{self, BeamNode, Epmd, Erlnode};
use erlnode::Term;
use std::time::Duration;

const T: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread")]
async fn erlnode_run_answers_liveness_checks_and_refuses_other_calls() {
    let epmd = Epmd::start().await;
    let cookie = support::unique("cookie");
    let rust_name = format!("{}@127.0.0.1", support::unique("rlive"));
    let rust = Erlnode::run(&rust_name, &cookie, epmd.port(), &["--no-embedded-epmd", "--register-echo", "live_echo"]).await;
    rust.wait_for_line("echo registered globally", T).await.expect("the echo is registered");
    let ex = BeamNode::builder().prefix("exlive").cookie(&cookie).epmd_port(epmd.port()).elixir(true).start().await;
    assert_eq!(ex.eval(&format!("net_adm:ping('{rust_name}')")).await, Term::atom("pong"));
    assert_eq!(ex.try_eval_timeout("global:sync()", T).await, Ok(Term::atom("ok")));

    // A live erlnode pid (the CLI's echo, found through global) and a
    // pid of the same node that names no process (its id changed).
    ex.eval(
        "Live = global:whereis_name(live_echo),
         LiveBin = term_to_binary(Live, [{minor_version, 2}]),
         Head = binary:part(LiveBin, 0, byte_size(LiveBin) - 12),
         <<_:32, Ser:32, Cre:32>> = binary:part(LiveBin, byte_size(LiveBin), -12),
         Dead = binary_to_term(<<Head/binary, 16#7ffffff0:32, Ser:32, Cre:32>>),
         true = is_pid(Live) andalso node(Live) =:= node(Dead) andalso Live =/= Dead",
    )
    .await;
    ex.eval("put(live, Live), put(dead, Dead)").await;

    // Exactly Horde's call (Elixir, erpc without timeout), both ways.
    let horde = ex
        .eval_elixir(&format!(
            "{{:erpc.call(:'{rust_name}', Process, :alive?, [Process.get(:live)]),
              :erpc.call(:'{rust_name}', Process, :alive?, [Process.get(:dead)])}}"
        ))
        .await;
    assert_eq!(horde, Term::tuple([Term::atom("true"), Term::atom("false")]));

    let got = ex
        .eval(&format!(
            "N = '{rust_name}',
             Try = fun(F) -> try F() catch C:R -> {{C, R}} end end,
             {{erpc:call(N, erlang, is_process_alive, [Live], 60000),
              erpc:call(N, erlang, is_process_alive, [Dead], infinity),
              rpc:call(N, 'Elixir.Process', 'alive?', [Live]),
              rpc:call(N, erlang, is_process_alive, [Dead]),
              rpc:call(N, erlang, is_process_alive, [not_a_pid]),
              Try(fun() -> erpc:call(N, erlang, node, [], 60000) end),
              rpc:call(N, os, cmd, [\"id\"], 60000),
              Try(fun() -> erpc:call(N, erlang, is_process_alive, [Live, extra], 60000) end)}}"
        ))
        .await;
    let atom = Term::atom;
    let notsup = || Term::tuple([atom("error"), Term::tuple([atom("erpc"), atom("notsup")])]);
    let mut expected: Vec<Term> = ["true", "false", "true", "false"].into_iter().map(atom).collect();
    expected.extend([
        Term::tuple([atom("badrpc"), Term::tuple([atom("EXIT"), atom("badarg")])]),
        notsup(),
        Term::tuple([atom("badrpc"), atom("notsup")]),
        notsup(),
    ]);
    assert_eq!(
        got,
        Term::Tuple(expected),
        "(allow-listed checks answered; erlang:node/0, os:cmd/1 and a wrong arity refused)"
    );
    // The refusals were logged, and the node is still serving.
    assert!(rust.output().iter().any(|l| l.contains("refusing spawn request")), "no refusal logged");
    let echo = ex.eval_elixir("GenServer.call({:global, :live_echo}, :still_here)").await;
    assert_eq!(echo, Term::tuple([atom("echo"), atom("still_here")]));
}

mod registry;
mod supervisor;
