//! Issue 13, item 5: bind addresses and limits. The distribution listener
//! binds the address asked for (`--listen-address`, like
//! `inet_dist_use_interface`) on a port of the range asked for
//! (`inet_dist_listen_min/max`); the embedded EPMD listens where
//! `ERL_EPMD_ADDRESS` / `--epmd-address` says (plus loopback); incoming
//! handshakes are capped.
//!
//! "Not listening on every interface" is checked on 127.0.0.2, a loopback
//! address a listener bound to 127.0.0.1 does not serve and one bound to
//! 0.0.0.0 does.

use crate::support::{self, BeamNode, Epmd, Erlnode};
use erlnode::Term;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

const T: Duration = Duration::from_secs(10);
const OTHER_LOOPBACK: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);

/// Whether something accepts TCP connections on 127.0.0.2:`port`.
async fn serves_other_loopback(port: u16) -> bool {
    match tokio::time::timeout(T, TcpStream::connect((OTHER_LOOPBACK, port))).await {
        Ok(Ok(_)) => true,
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => false,
        Ok(Err(e)) => panic!("connect to 127.0.0.2:{port}: {e}"),
        Err(_) => panic!("connect to 127.0.0.2:{port} timed out"),
    }
}

/// A run of `n` ports starting at a port that was free a moment ago.
fn port_range(n: u16) -> (u16, u16) {
    let p = support::free_port().min(u16::MAX - n);
    (p, p + n - 1)
}

#[tokio::test(flavor = "multi_thread")]
async fn the_dist_listener_binds_the_address_and_port_range_asked_for() {
    support::require_erlang();
    let epmd = Epmd::start().await;
    let cookie = support::unique("cookie");
    let (min, max) = port_range(4);
    let rust = support::rust_node_builder("rust", &cookie, epmd.port())
        .listen(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
        .listen_port_range(min, max)
        .start()
        .await
        .expect("node starts");
    let port = rust.listen_port();
    assert!((min..=max).contains(&port), "port {port} outside {min}-{max}");
    assert!(!serves_other_loopback(port).await, "bound to 127.0.0.1 only");
    let beam = BeamNode::builder().cookie(&cookie).epmd_port(epmd.port()).start().await;
    assert_eq!(beam.eval(&format!("net_adm:ping('{}')", rust.name())).await, Term::atom("pong"));

    // The default binds every interface, as the BEAM does.
    let all = support::rust_node("rust", &cookie, epmd.port()).await;
    assert!(serves_other_loopback(all.listen_port()).await, "the default listens on every interface");

    // A range with every port taken is an error that says so.
    let taken = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let p = taken.local_addr().unwrap().port();
    let err = support::rust_node_builder("rust", &cookie, epmd.port())
        .listen(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
        .listen_port_range(p, p)
        .start()
        .await
        .err()
        .expect("no free port in the range");
    assert!(err.to_string().contains("in use"), "{err}");
    rust.shutdown().await;
    all.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_embedded_epmd_listens_on_the_epmd_addresses_only() {
    support::require_erlang();
    let cookie = support::unique("cookie");
    let epmd_port = support::free_port();
    let rust = support::rust_node_builder("rust", &cookie, epmd_port)
        .embedded_epmd(true)
        .epmd_addresses(vec![IpAddr::V4(Ipv4Addr::LOCALHOST)])
        .start()
        .await
        .expect("node starts");
    assert!(rust.serves_epmd(), "nothing else serves port {epmd_port}");
    assert!(!serves_other_loopback(epmd_port).await, "EPMD bound to 127.0.0.1 only");
    // BEAM nodes find each other and the Rust node through it.
    let a = BeamNode::builder().cookie(&cookie).epmd_port(epmd_port).start().await;
    let b = BeamNode::builder().cookie(&cookie).epmd_port(epmd_port).start().await;
    assert_eq!(a.eval(&format!("net_adm:ping('{}')", b.name())).await, Term::atom("pong"));
    assert_eq!(b.eval(&format!("net_adm:ping('{}')", rust.name())).await, Term::atom("pong"));
    rust.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn handshakes_beyond_the_cap_are_closed_until_one_finishes() {
    support::require_erlang();
    let epmd = Epmd::start().await;
    let cookie = support::unique("cookie");
    let rust = support::rust_node_builder("rust", &cookie, epmd.port())
        .max_handshakes(2)
        .handshake_timeout(Duration::from_secs(120))
        .start()
        .await
        .expect("node starts");
    let port = rust.listen_port();
    // Two connections that never send their name hold both slots.
    let mut stalled = Vec::new();
    for _ in 0..2 {
        stalled.push(TcpStream::connect((Ipv4Addr::LOCALHOST, port)).await.unwrap());
    }
    // Wait until the node has taken both (a third is then refused at once:
    // EOF, where a handshake would wait up to 120 s for our name).
    let mut extra = TcpStream::connect((Ipv4Addr::LOCALHOST, port)).await.unwrap();
    let mut buf = [0u8; 16];
    let n = tokio::time::timeout(T, extra.read(&mut buf)).await.expect("the connection over the cap is closed at once");
    assert!(matches!(n, Ok(0) | Err(_)), "{n:?}");
    let beam = BeamNode::builder().cookie(&cookie).epmd_port(epmd.port()).start().await;
    assert_eq!(
        beam.eval(&format!("net_adm:ping('{}')", rust.name())).await,
        Term::atom("pang"),
        "no slot for a real peer while both are held"
    );
    // Closing the stalled connections ends their handshakes and frees the slots.
    drop(stalled);
    let mut pong = false;
    for _ in 0..100 {
        if beam.eval(&format!("net_adm:ping('{}')", rust.name())).await == Term::atom("pong") {
            pong = true;
            break;
        }
    }
    assert!(pong, "a real peer gets in once the stalled handshakes end");
    rust.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_binary_takes_listen_address_port_range_and_handshake_cap() {
    support::require_erlang();
    let epmd = Epmd::start().await;
    let cookie = support::unique("cookie");
    let name = format!("{}@127.0.0.1", support::unique("rust"));
    let (min, max) = port_range(4);
    let (min_s, max_s) = (min.to_string(), max.to_string());
    let node = Erlnode::run(
        &name,
        &cookie,
        epmd.port(),
        &[
            "--no-embedded-epmd",
            "--listen-address",
            "127.0.0.1",
            "--inet-dist-listen-min",
            &min_s,
            "--inet-dist-listen-max",
            &max_s,
            "--max-handshakes",
            "8",
        ],
    )
    .await;
    let port = node.listen_port().await;
    assert!((min..=max).contains(&port), "port {port} outside {min}-{max}");
    assert!(!serves_other_loopback(port).await, "bound to 127.0.0.1 only");
    let beam = BeamNode::builder().cookie(&cookie).epmd_port(epmd.port()).start().await;
    assert_eq!(beam.eval(&format!("net_adm:ping('{name}')")).await, Term::atom("pong"));
}
