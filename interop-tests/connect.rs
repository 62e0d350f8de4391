//! Issue "Connect": a Rust node that real BEAM nodes accept as a peer.

use crate::support::{self, BeamNode, Epmd, Erlnode};
use erlnode::{Node, NodeEvent, Term};
use std::time::Duration;

const T: Duration = Duration::from_secs(30);

async fn rust_node(cookie: &str, epmd_port: u16, embedded: bool) -> Node {
    Node::builder(format!("{}@127.0.0.1", support::unique("rust")))
        .cookie(cookie)
        .epmd_port(epmd_port)
        .embedded_epmd(embedded)
        .start()
        .await
        .expect("rust node starts")
}

async fn ping_both_ways(beam: &BeamNode, rust: &Node, epmd_port: u16) {
    let r = beam.eval(&format!("net_adm:ping('{}')", rust.name())).await;
    assert_eq!(r, Term::atom("pong"), "erl -> erlnode ping");
    assert!(rust.ping(beam.name()).await, "erlnode -> erl ping (library)");
    // The CLI, as a separate process with its own node.
    let mut cli = Erlnode::spawn([
        "ping",
        beam.name(),
        "--cookie",
        beam.cookie(),
        "--epmd-port",
        &epmd_port.to_string(),
    ]);
    let status = cli.wait_exit(T).await.expect("erlnode ping exits");
    assert!(status.success(), "erlnode ping failed: {:?}", cli.output());
    assert!(cli.output().iter().any(|l| l.contains("pong")));
}

#[tokio::test(flavor = "multi_thread")]
async fn ping_with_system_epmd() {
    support::require_erlang();
    let epmd = Epmd::start().await;
    let cookie = support::unique("cookie");
    let rust = rust_node(&cookie, epmd.port(), false).await;
    assert!(!rust.serves_epmd());
    let beam = BeamNode::builder().prefix("a").cookie(&cookie).epmd_port(epmd.port()).start().await;
    ping_both_ways(&beam, &rust, epmd.port()).await;
    // visible, not hidden
    let visible = beam.eval(&format!("lists:member('{}', nodes())", rust.name())).await;
    assert_eq!(visible, Term::atom("true"), "erlnode is in nodes()");
    let hidden = beam.eval("nodes(hidden)").await;
    assert_eq!(hidden, Term::nil(), "erlnode must not be hidden");
}

#[tokio::test(flavor = "multi_thread")]
async fn ping_with_embedded_epmd() {
    support::require_erlang();
    let port = support::free_port();
    let cookie = support::unique("cookie");
    let rust = rust_node(&cookie, port, true).await;
    assert!(rust.serves_epmd(), "nothing listened on {port}: erlnode must serve EPMD");
    // The erl nodes register with erlnode's EPMD and find each other through it.
    let a = BeamNode::builder().prefix("a").cookie(&cookie).epmd_port(port).start().await;
    let b = BeamNode::builder().prefix("b").cookie(&cookie).epmd_port(port).start().await;
    assert_eq!(a.eval(&format!("net_adm:ping('{}')", b.name())).await, Term::atom("pong"));
    ping_both_ways(&a, &rust, port).await;
    let names = a.eval("{ok, Ns} = erl_epmd:names(), length(Ns)").await;
    assert_eq!(names, Term::Int(3), "a, b and erlnode registered");
}

#[tokio::test(flavor = "multi_thread")]
async fn wrong_cookie_is_rejected_both_ways_and_logged() {
    support::require_erlang();
    let epmd = Epmd::start().await;
    let beam = BeamNode::builder().prefix("a").cookie(&support::unique("right")).epmd_port(epmd.port()).start().await;
    let rust_name = format!("{}@127.0.0.1", support::unique("rust"));
    let wrong = support::unique("wrong");
    let rust = Erlnode::run(&rust_name, &wrong, epmd.port(), &["--no-embedded-epmd"]).await;

    // erl -> erlnode
    assert_eq!(beam.eval(&format!("net_adm:ping('{rust_name}')")).await, Term::atom("pang"));
    rust.wait_for_line("cookie mismatch", T).await.expect("erlnode logs the bad cookie");
    // erlnode -> erl
    let mut cli = Erlnode::spawn(["ping", beam.name(), "--cookie", &wrong, "--epmd-port", &epmd.port().to_string()]);
    let status = cli.wait_exit(T).await.unwrap();
    assert!(!status.success());
    let out = cli.output().join("\n");
    assert!(out.contains("cookie"), "the reason names the cookie: {out}");
    // nobody crashed
    assert_eq!(beam.eval("1 + 1").await, Term::Int(2));
    assert!(support::pid_alive(rust.os_pid()));
    // and the right cookie still works against the same erlnode
    let ok = BeamNode::builder().prefix("ok").cookie(&wrong).epmd_port(epmd.port()).start().await;
    assert_eq!(ok.eval(&format!("net_adm:ping('{rust_name}')")).await, Term::atom("pong"));
}

/// Erlang code generating random terms of every kind a BEAM node sends.
pub(crate) const GEN: &str = r#"
Atoms = [a, 'hello world', '', 'ünïcödé', binary_to_atom(<<"😀smile"/utf8>>, utf8), 'Elixir.Foo.Bar', true, false, nil],
Pick = fun(L) -> lists:nth(rand:uniform(length(L)), L) end,
Port = hd(erlang:ports()),
Leaf = fun() ->
    case rand:uniform(16) of
        1 -> rand:uniform(255);
        2 -> rand:uniform(1 bsl 40) - (1 bsl 39);
        3 -> (rand:uniform(1 bsl 200)) * Pick([1, -1]);
        4 -> rand:uniform() * 1.0e10 - 5.0e9;
        5 -> Pick(Atoms);
        6 -> crypto_free_bytes;
        7 -> list_to_binary([rand:uniform(256) - 1 || _ <- lists:seq(1, rand:uniform(40))]);
        8 -> <<(rand:uniform(255)):(rand:uniform(7))>>;
        9 -> self();
        10 -> make_ref();
        11 -> Port;
        12 -> fun lists:map/2;
        13 -> X = rand:uniform(100), fun(Y) -> X + Y end;
        14 -> "a string";
        15 -> [];
        16 -> -rand:uniform(1 bsl 31)
    end
end,
Gen = fun G(0) -> Leaf();
          G(D) ->
            case rand:uniform(7) of
                1 -> [G(D - 1) || _ <- lists:seq(1, rand:uniform(5))];
                2 -> list_to_tuple([G(D - 1) || _ <- lists:seq(1, rand:uniform(5) - 1)]);
                3 -> maps:from_list([{G(D - 1), G(D - 1)} || _ <- lists:seq(1, rand:uniform(4))]);
                4 -> [G(D - 1) | G(0)];
                5 -> #{a => G(D - 1), <<"k">> => G(D - 1)};
                _ -> Leaf()
            end
      end,
ok
"#;

/// Binds `Rust` (the node's name) and `Check(T)`: sends `T` to its
/// `erlnode_echo` and is `true` when what comes back is `=:=` (and `==`).
pub(crate) fn echo_check(rust: &str) -> String {
    format!(
        "Rust = '{rust}',
         Check = fun(T) ->
             {{erlnode_echo, Rust}} ! {{self(), T}},
             receive Back -> Back =:= T andalso Back == T after 10000 -> timeout end
         end,"
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn ten_thousand_random_terms_round_trip() {
    support::require_erlang();
    let epmd = Epmd::start().await;
    let cookie = support::unique("cookie");
    let rust = rust_node(&cookie, epmd.port(), false).await;
    erlnode::services::echo::spawn(&rust, "erlnode_echo").unwrap();
    let beam = BeamNode::builder().prefix("gen").cookie(&cookie).epmd_port(epmd.port()).start().await;
    beam.eval(GEN).await;
    let r = beam
        .eval_raw_timeout(
            &format!(
                "{}
                 Bad = [T || T <- [Gen(rand:uniform(4)) || _ <- lists:seq(1, 10000)], Check(T) =/= true],
                 {{length(Bad), lists:sublist(Bad, 3)}}",
                echo_check(rust.name().as_str())
            ),
            Duration::from_secs(240),
        )
        .await
        .expect("eval");
    let t = erlnode::term::decode(&r).unwrap();
    assert_eq!(t.as_tuple().unwrap()[0], Term::Int(0), "terms that did not survive the round trip: {t:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn fifty_megabyte_binary_both_directions() {
    support::require_erlang();
    let epmd = Epmd::start().await;
    let cookie = support::unique("cookie");
    let rust = rust_node(&cookie, epmd.port(), false).await;
    erlnode::services::echo::spawn(&rust, "erlnode_echo").unwrap();
    let beam = BeamNode::builder().prefix("big").cookie(&cookie).epmd_port(epmd.port()).start().await;
    let r = beam
        .eval_raw_timeout(
            &format!(
                "Bin = crypto:strong_rand_bytes(50 * 1024 * 1024),
                 {{erlnode_echo, '{}'}} ! {{self(), {{big, Bin}}}},
                 receive {{big, Back}} -> {{byte_size(Back), Back =:= Bin}} after 60000 -> timeout end",
                rust.name()
            ),
            Duration::from_secs(120),
        )
        .await
        .unwrap();
    let t = erlnode::term::decode(&r).unwrap();
    assert_eq!(t, Term::tuple([Term::Int(50 * 1024 * 1024), Term::atom("true")]));
}

#[tokio::test(flavor = "multi_thread")]
async fn nodedown_on_kill_and_on_silence_then_reconnect_on_send() {
    support::require_erlang();
    let epmd = Epmd::start().await;
    let cookie = support::unique("cookie");
    let ticktime = Duration::from_secs(4);
    let rust = support::rust_node_builder("rust", &cookie, epmd.port())
        .net_ticktime(ticktime)
        .start()
        .await
        .unwrap();
    let mut events = rust.subscribe();
    let name = format!("{}@127.0.0.1", support::unique("victim"));
    let start = |n: String| {
        let c = cookie.clone();
        let p = epmd.port();
        async move { BeamNode::builder().name(&n).cookie(&c).epmd_port(p).arg("-kernel").arg("net_ticktime").arg("4").start().await }
    };

    // 1. SIGKILL: the socket closes, nodedown at once.
    let mut beam = start(name.clone()).await;
    assert!(rust.ping(&name).await);
    wait_event(&mut events, |e| matches!(e, NodeEvent::Up(n) if n.as_str() == name)).await;
    beam.kill().await;
    let down = wait_event(&mut events, |e| matches!(e, NodeEvent::Down { node, .. } if node.as_str() == name)).await;
    tracing::info!(?down, "nodedown after kill");

    // 2. Restart under the same name: the next send reconnects.
    let beam = start(name.clone()).await;
    beam.eval("register(probe, self()), ok").await;
    let mb = rust.spawn_mailbox();
    rust.send_named(mb.pid(), "probe", &name, Term::atom("hello_again"));
    assert_eq!(beam.eval("receive M -> M after 20000 -> timeout end").await, Term::atom("hello_again"));

    // 3. SIGSTOP: the peer goes silent with the socket open; ticks detect it.
    support::send_signal(beam.os_pid(), libc_sigstop());
    let stopped_at = std::time::Instant::now();
    let down = tokio::time::timeout(ticktime * 3, wait_event(&mut events, |e| matches!(e, NodeEvent::Down { node, .. } if node.as_str() == name)))
        .await
        .expect("nodedown within net_ticktime (plus scheduling slack)");
    let NodeEvent::Down { reason, .. } = down else { unreachable!() };
    assert!(reason.contains("net_tick_timeout"), "{reason}");
    tracing::info!(elapsed = ?stopped_at.elapsed(), "silent peer detected");
    support::send_signal(beam.os_pid(), libc_sigcont());
}

fn libc_sigstop() -> i32 {
    19
}
fn libc_sigcont() -> i32 {
    18
}

async fn wait_event(rx: &mut tokio::sync::broadcast::Receiver<NodeEvent>, f: impl Fn(&NodeEvent) -> bool) -> NodeEvent {
    tokio::time::timeout(T, async {
        loop {
            match rx.recv().await {
                Ok(e) if f(&e) => return e,
                Ok(_) => continue,
                Err(e) => panic!("event stream: {e}"),
            }
        }
    })
    .await
    .expect("event arrives")
}
