//! Issue 13, item 3: TLS distribution interoperable with OTP's
//! `inet_tls_dist`. Real `erl` nodes started with `-proto_dist inet_tls
//! -ssl_dist_optfile FILE`, erlnode with the same option file; the
//! certificates are made by the test with the `openssl` CLI.
//!
//! In a matrix run (`ERLNODE_TEST_OTP_ROOT`) the BEAM nodes run in a
//! chroot: the certificates are then written under the root's `/tmp` and
//! the BEAM's option file names them as the chroot sees them.

use crate::global::poll;
use crate::support::certs::{tls_beam_builder, Certs};
use crate::support::{self, BeamNode, Epmd, Erlnode};
use erlnode::tls::TlsConfig;
use erlnode::{Node, Term};
use std::path::Path;
use std::time::Duration;

const T: Duration = Duration::from_secs(30);

async fn tls_beam(prefix: &str, cookie: &str, epmd: u16, optfile: &Path, elixir: bool) -> BeamNode {
    tls_beam_builder(prefix, cookie, epmd, optfile).elixir(elixir).start().await
}

async fn tls_rust(cookie: &str, epmd: u16, optfile: &Path) -> Node {
    Node::builder(format!("{}@127.0.0.1", support::unique("rtls")))
        .cookie(cookie)
        .epmd_port(epmd)
        .embedded_epmd(false)
        .tls(TlsConfig::from_ssl_dist_optfile(optfile).expect("the option file loads"))
        .start()
        .await
        .expect("rust node starts")
}

/// `erlnode run` over TLS; returns its name and the process.
async fn tls_erlnode_run(cookie: &str, epmd: u16, optfile: &Path) -> (String, Erlnode) {
    let name = format!("{}@127.0.0.1", support::unique("rtls"));
    let opt = optfile.display().to_string();
    let node = Erlnode::run(&name, cookie, epmd, &["--no-embedded-epmd", "--proto-dist", "inet_tls", "--ssl-dist-optfile", &opt]).await;
    (name, node)
}

/// `erlnode ping` over TLS; returns (success, output).
async fn cli_ping(target: &str, cookie: &str, epmd: u16, optfile: &Path) -> (bool, Vec<String>) {
    let mut cli = Erlnode::spawn([
        "ping",
        target,
        "--cookie",
        cookie,
        "--epmd-port",
        epmd.to_string().as_str(),
        "--proto-dist",
        "inet_tls",
        "--ssl-dist-optfile",
        optfile.display().to_string().as_str(),
        "--timeout",
        "10",
        "-v",
    ]);
    let status = cli.wait_exit(T).await.expect("erlnode ping exits");
    (status.success(), cli.output())
}

#[tokio::test(flavor = "multi_thread")]
async fn tls_ping_calls_global_and_50mb_both_ways() {
    support::require_erlang();
    crate::global::init_log();
    let certs = Certs::new();
    let epmd = Epmd::start().await;
    let cookie = support::unique("cookie");
    let beam = tls_beam("tls", &cookie, epmd.port(), &certs.good_beam, true).await;
    let rust = tls_rust(&cookie, epmd.port(), &certs.good_host).await;
    let rn = rust.name().to_string();
    erlnode::services::echo::spawn(&rust, "erlnode_echo").expect("echo starts");

    // The BEAM really runs TLS distribution.
    assert_eq!(beam.eval("init:get_argument(proto_dist) =:= {ok, [[\"inet_tls\"]]}").await, Term::atom("true"));

    // Ping both ways, and the CLI (its own node, over TLS).
    assert_eq!(beam.eval(&format!("net_adm:ping('{rn}')")).await, Term::atom("pong"), "erl -> erlnode over TLS");
    assert!(rust.ping(beam.name()).await, "erlnode -> erl over TLS");
    let (ok, out) = cli_ping(beam.name(), &cookie, epmd.port(), &certs.good_host).await;
    assert!(ok && out.iter().any(|l| l.contains("pong")), "erlnode ping over TLS: {out:?}");
    // The link is TLS: the BEAM's distribution controller is an ssl one.
    let ctrl = beam.eval(&format!("is_pid(proplists:get_value('{rn}', erlang:system_info(dist_ctrl)))")).await;
    assert_eq!(ctrl, Term::atom("true"), "inet_tls_dist controls the link with a process (a TCP link has a port)");

    // GenServer calls both ways.
    let r = beam.eval(&format!("gen_server:call({{erlnode_echo, '{rn}'}}, hello_tls)")).await;
    assert_eq!(r, Term::tuple([Term::atom("echo"), Term::atom("hello_tls")]));
    beam.eval_elixir("{:ok, _} = Agent.start(fn -> 41 end, name: :tls_agent)").await;
    let mut mb = rust.spawn_mailbox();
    let get = Term::tuple([Term::atom("get"), Term::tuple([Term::atom("erlang"), Term::atom("+"), Term::list([Term::Int(1)])])]);
    assert_eq!(mb.call(("tls_agent", beam.name()), get, T).await, Ok(Term::Int(42)), "erlnode calls an Agent over TLS");

    // global: each side registers, the other sees it.
    assert_eq!(beam.try_eval_timeout("global:sync()", T).await, Ok(Term::atom("ok")));
    rust.global().sync(T).await.expect("rust global sync");
    let echo = erlnode::services::echo::spawn_unregistered(&rust);
    assert_eq!(rust.global().register_name(Term::atom("tls_rust_echo"), &echo).await, Ok(true));
    assert_eq!(beam.eval("global:whereis_name(tls_rust_echo)").await, Term::Pid(echo.clone()));
    let r = beam.eval("gen_server:call({global, tls_rust_echo}, via_global)").await;
    assert_eq!(r, Term::tuple([Term::atom("echo"), Term::atom("via_global")]));
    let bpid = beam.eval_elixir("pid = Process.whereis(:tls_agent)\n:yes = :global.register_name(:tls_beam_agent, pid)\npid").await;
    let Term::Pid(bpid) = bpid else { panic!("{bpid:?}") };
    let got = poll(T, || async { rust.global().whereis_name(&Term::atom("tls_beam_agent")) }).await;
    assert_eq!(got, Some(bpid));

    // A 50 MB binary there and back (fragmented, inside TLS records).
    let r = beam
        .try_eval_timeout(
            &format!(
                "B = crypto:strong_rand_bytes(50000000), \
                 {{echo, B2}} = gen_server:call({{erlnode_echo, '{rn}'}}, B, 120000), \
                 {{byte_size(B2), B2 =:= B}}"
            ),
            Duration::from_secs(150),
        )
        .await;
    assert_eq!(r, Ok(Term::tuple([Term::Int(50_000_000), Term::atom("true")])), "50 MB round trip over TLS");
    rust.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn untrusted_certificate_is_refused_both_ways() {
    support::require_erlang();
    let certs = Certs::new();
    let epmd = Epmd::start().await;
    let cookie = support::unique("cookie");
    let rogue = tls_beam("rogue", &cookie, epmd.port(), &certs.rogue_beam, false).await;
    let (name, rust) = tls_erlnode_run(&cookie, epmd.port(), &certs.good_host).await;

    // The rogue BEAM trusts erlnode's CA, but erlnode does not trust the
    // rogue's certificate: erlnode refuses it. OTP 25 and 27 send it
    // (`UnknownIssuer`); OTP 29 sees that it is not from a CA erlnode's
    // certificate request names and sends none, which
    // fail_if_no_peer_cert refuses.
    assert_eq!(rogue.eval(&format!("net_adm:ping('{name}')")).await, Term::atom("pang"));
    let line = rust.wait_for_line("TLS handshake failed", T).await.expect("erlnode logs the refusal");
    assert!(
        line.contains("incoming connection refused") && (line.contains("UnknownIssuer") || line.contains("peer sent no certificates")),
        "{line}"
    );

    // erlnode dialling the rogue: erlnode refuses the rogue's server
    // certificate.
    let (ok, out) = cli_ping(rogue.name(), &cookie, epmd.port(), &certs.good_host).await;
    assert!(!ok, "erlnode ping must fail: {out:?}");
    assert!(
        out.iter().any(|l| l.contains("TLS handshake with") && l.contains("invalid peer certificate")),
        "erlnode says why: {out:?}"
    );

    // And the rogue node with an erlnode of its own (rogue certificate):
    // both refuse.
    let from = rust.line_count();
    let (ok, out) = cli_ping(&name, &cookie, epmd.port(), &certs.rogue_host).await;
    assert!(!ok, "a rogue erlnode must not get in: {out:?}");
    let line = rust.wait_for_line_after(from, "TLS handshake failed", T).await.expect("erlnode logs the second refusal");
    assert!(line.contains("UnknownIssuer"), "{line}");
    // Nothing got through.
    assert_eq!(rogue.eval("nodes(connected)").await, Term::nil());
}

#[tokio::test(flavor = "multi_thread")]
async fn plaintext_peers_are_refused() {
    support::require_erlang();
    let certs = Certs::new();
    let epmd = Epmd::start().await;
    let cookie = support::unique("cookie");
    let plain = BeamNode::builder().prefix("plain").cookie(&cookie).epmd_port(epmd.port()).elixir(false).start().await;
    let (name, rust) = tls_erlnode_run(&cookie, epmd.port(), &certs.good_host).await;

    // A plaintext BEAM is refused by the TLS erlnode, which says why.
    assert_eq!(plain.eval(&format!("net_adm:ping('{name}')")).await, Term::atom("pang"));
    let line = rust.wait_for_line("TLS handshake failed", T).await.expect("erlnode logs the refusal");
    assert!(line.contains("plaintext peer"), "{line}");

    // A TLS erlnode cannot dial a plaintext BEAM either.
    let (ok, out) = cli_ping(plain.name(), &cookie, epmd.port(), &certs.good_host).await;
    assert!(!ok, "TLS erlnode -> plaintext erl must fail: {out:?}");
    assert!(out.iter().any(|l| l.contains("TLS handshake with")), "erlnode says why: {out:?}");
    assert_eq!(plain.eval("nodes(connected)").await, Term::nil());
}

#[tokio::test(flavor = "multi_thread")]
async fn an_account_migrates_to_elixir_and_back_over_tls() {
    use erlnode::examples::account::Account;
    use erlnode::migration::{HandoffConfig, Migration, Mode};
    support::require_erlang();
    let certs = Certs::new();
    let epmd = Epmd::start().await;
    let cookie = support::unique("cookie");
    let rust = tls_rust(&cookie, epmd.port(), &certs.good_host).await;
    let cfg = HandoffConfig { rebalance_on_join: false, ..Default::default() };
    let m = Migration::start(&rust, std::sync::Arc::new(rust.global()), cfg).unwrap();
    m.register_type::<Account>();
    let ex = tls_beam_builder("extls", &cookie, epmd.port(), &certs.good_beam).erlnode_ex(true).start().await;
    let r = ex.eval("application:ensure_all_started(erlnode_ex)").await;
    assert_eq!(r.as_tuple().map(|t| t[0].clone()), Some(Term::atom("ok")), "erlnode_ex starts: {r:?}");
    assert!(rust.ping(ex.name()).await);
    assert_eq!(ex.try_eval_timeout("global:sync()", T).await, Ok(Term::atom("ok")));
    rust.global().sync(T).await.unwrap();
    let en = ex.name().to_string();
    let seen = poll(T, || async { m.members("account").iter().any(|n| n.as_str() == en).then_some(()) }).await;
    assert!(seen.is_some(), "the Elixir manager announces account over TLS");

    m.start_process::<Account>(Term::nil(), "tls_acct").await.unwrap();
    for seq in 1..=3 {
        let r = ex.eval_elixir(&format!("GenServer.call({{:global, :tls_acct}}, {{:deposit, \"ex\", {seq}, 10}})")).await;
        assert_eq!(r.as_tuple().map(|t| t[0].clone()), Some(Term::atom("ok")), "{r:?}");
    }
    let before = ex.eval_elixir("GenServer.call({:global, :tls_acct}, :get)").await;

    let pid = m.migrate("tls_acct", &en, Mode::Hot, T).await.expect("Rust -> Elixir over TLS");
    assert_eq!(pid.node.as_str(), en);
    assert_eq!(ex.eval_elixir("GenServer.call({:global, :tls_acct}, :get)").await, before, "the state moved to Elixir");
    let pid = m.migrate("tls_acct", rust.name().as_str(), Mode::Hot, T).await.expect("Elixir -> Rust over TLS");
    assert_eq!(&pid.node, rust.name());
    assert_eq!(ex.eval_elixir("GenServer.call({:global, :tls_acct}, :get)").await, before, "and back to Rust");
    rust.shutdown().await;
}
