//! Client against the embedded server over real loopback sockets, plus the
//! abuse cases the server must survive.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::protocol::{AliveResponse, Request};
use super::*;

fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

async fn start(config: EpmdServerConfig) -> (EpmdServerHandle, EpmdClient) {
    init_tracing();
    let server = EpmdServer::bind_with_config("127.0.0.1:0".parse().unwrap(), config)
        .await
        .unwrap();
    let handle = server.spawn();
    let client = EpmdClient::new("127.0.0.1", handle.local_addr().port())
        .with_timeout(Duration::from_secs(5));
    (handle, client)
}

async fn start_default() -> (EpmdServerHandle, EpmdClient) {
    start(EpmdServerConfig::default()).await
}

/// Sends raw bytes, half-closes (so a short request is truncated, not
/// merely slow) and returns everything the server sends before closing.
async fn raw(addr: SocketAddr, bytes: &[u8]) -> Vec<u8> {
    let mut s = TcpStream::connect(addr).await.unwrap();
    // The server may already have hung up on a bad header; that is fine.
    let _ = s.write_all(bytes).await;
    let _ = s.shutdown().await;
    read_to_close(&mut s).await
}

/// Reads until the server closes; panics if it keeps the connection open.
async fn read_to_close(s: &mut TcpStream) -> Vec<u8> {
    let mut out = Vec::new();
    let r = tokio::time::timeout(Duration::from_secs(5), async {
        let mut buf = [0u8; 1024];
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    assert!(r.is_ok(), "server did not close the connection");
    out
}

/// Bounded poll for a condition that becomes true asynchronously.
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..250 {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("timed out waiting for: {what}");
}

#[tokio::test]
async fn register_lookup_and_list() {
    let (handle, client) = start_default().await;
    let reg = client
        .register("alpha", 4711, NodeKind::Normal)
        .await
        .unwrap();
    assert!(
        reg.creation() >= 4,
        "32-bit creation expected, got {}",
        reg.creation()
    );
    assert_eq!(reg.name(), "alpha");
    let _hidden = client
        .register("beta", 4712, NodeKind::Hidden)
        .await
        .unwrap();

    let e = client.port_please("alpha").await.unwrap().unwrap();
    assert_eq!(e, NodeEntry::new("alpha", 4711, NodeKind::Normal));
    let b = client.port_please("beta").await.unwrap().unwrap();
    assert_eq!(b.kind, NodeKind::Hidden);
    assert_eq!(client.port_please("gamma").await.unwrap(), None);

    let (port, names) = client.names_with_port().await.unwrap();
    assert_eq!(port as u16, handle.local_addr().port());
    assert_eq!(
        names,
        vec![("beta".to_string(), 4712), ("alpha".to_string(), 4711)]
    );
    assert_eq!(handle.names(), names);
}

#[tokio::test]
async fn extra_and_versions_are_stored_verbatim() {
    let (_handle, client) = start_default().await;
    let mut entry = NodeEntry::new("x", 1, NodeKind::Other(110));
    entry.highest_version = 7;
    entry.lowest_version = 6;
    entry.extra = b"hello".to_vec();
    let _reg = client.register_entry(entry.clone()).await.unwrap();
    assert_eq!(client.port_please("x").await.unwrap(), Some(entry));
}

#[tokio::test]
async fn drop_unregisters() {
    let (_handle, client) = start_default().await;
    let reg = client
        .register("dropme", 1234, NodeKind::Normal)
        .await
        .unwrap();
    assert!(client.port_please("dropme").await.unwrap().is_some());
    drop(reg);
    let c = client.clone();
    eventually("dropme unregistered", || {
        let c = c.clone();
        async move { c.port_please("dropme").await.unwrap().is_none() }
    })
    .await;
}

#[tokio::test]
async fn close_unregisters_before_returning_and_creation_increments() {
    let (_handle, client) = start_default().await;
    let reg = client.register("again", 1, NodeKind::Normal).await.unwrap();
    let first = reg.creation();
    reg.close().await.unwrap();
    assert_eq!(client.port_please("again").await.unwrap(), None);
    assert!(client.names().await.unwrap().is_empty());
    let reg2 = client.register("again", 2, NodeKind::Normal).await.unwrap();
    assert_eq!(reg2.creation(), first.wrapping_add(1).max(4));
}

#[tokio::test]
async fn duplicate_name_is_a_distinct_error() {
    let (_handle, client) = start_default().await;
    let _reg = client.register("dup", 1, NodeKind::Normal).await.unwrap();
    let err = client
        .register("dup", 2, NodeKind::Normal)
        .await
        .unwrap_err();
    assert!(err.is_name_taken(), "{err:?}");
    assert!(err.to_string().contains("already registered"), "{err}");
    // The original registration is untouched.
    assert_eq!(client.port_please("dup").await.unwrap().unwrap().port, 1);
}

#[tokio::test]
async fn legacy_registrant_gets_16_bit_creation() {
    let (handle, _client) = start_default().await;
    let mut entry = NodeEntry::new("old", 9, NodeKind::Normal);
    entry.highest_version = 5;
    entry.lowest_version = 5;
    let mut s = TcpStream::connect(handle.local_addr()).await.unwrap();
    s.write_all(&Request::Alive2(entry).encode().unwrap())
        .await
        .unwrap();
    let mut reply = [0u8; 4];
    s.read_exact(&mut reply).await.unwrap();
    let resp = AliveResponse::decode(&reply).unwrap().unwrap();
    assert!(!resp.extended);
    assert_eq!(resp.result, 0);
    assert!((1..=3).contains(&resp.creation));
}

#[tokio::test]
async fn invalid_names_fail_locally() {
    let (_handle, client) = start_default().await;
    let err = client.register("", 1, NodeKind::Normal).await.unwrap_err();
    assert!(matches!(err, EpmdError::InvalidRequest(_)), "{err:?}");
    let err = client.port_please(&"n".repeat(300)).await.unwrap_err();
    assert!(matches!(err, EpmdError::InvalidRequest(_)), "{err:?}");
}

#[tokio::test]
async fn no_epmd_error_names_the_address() {
    init_tracing();
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    drop(l);
    let client = EpmdClient::new("127.0.0.1", port);
    let err = client.names().await.unwrap_err();
    assert_eq!(err.to_string(), format!("no EPMD at 127.0.0.1:{port}"));
}

#[tokio::test]
async fn silent_server_times_out() {
    init_tracing();
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    let _keep = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = l.accept().await {
            held.push(s);
        }
    });
    let client = EpmdClient::new("127.0.0.1", port).with_timeout(Duration::from_millis(200));
    let err = client.port_please("x").await.unwrap_err();
    assert!(matches!(err, EpmdError::Timeout { .. }), "{err:?}");
    let err = client.register("x", 1, NodeKind::Normal).await.unwrap_err();
    assert!(matches!(err, EpmdError::Timeout { .. }), "{err:?}");
}

#[tokio::test]
async fn malformed_requests_close_only_their_connection() {
    let (handle, client) = start_default().await;
    let addr = handle.local_addr();
    let _reg = client
        .register("survivor", 77, NodeKind::Normal)
        .await
        .unwrap();

    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("zero length", vec![0, 0]),
        ("oversize length", vec![0xff, 0xff, 120, 0, 0]),
        ("just over epmd's limit", vec![0x0b, 0xf2]),
        ("unknown tag", vec![0, 1, 1]),
        ("truncated ALIVE2", vec![0, 3, 120, 0, 1]),
        (
            "ALIVE2 name overruns body",
            vec![0, 14, 120, 0, 1, 77, 0, 0, 6, 0, 6, 0, 200, b'a', 0, 0],
        ),
        (
            "ALIVE2 bad utf8",
            vec![0, 14, 120, 0, 1, 77, 0, 0, 6, 0, 6, 0, 1, 0xff, 0, 0],
        ),
        ("PORT_PLEASE2 empty", vec![0, 1, 122]),
        ("PORT_PLEASE2 embedded NUL", vec![0, 4, 122, b'a', 0, b'b']),
        ("body shorter than length", vec![0, 50, 110]),
        ("single header byte", vec![0]),
        ("STOP", vec![0, 2, 115, b'a']),
    ];
    for (what, bytes) in cases {
        let reply = raw(addr, &bytes).await;
        assert!(reply.is_empty(), "{what}: unexpected reply {reply:?}");
    }
    // Garbage after a complete request is ignored, as epmd does.
    let reply = raw(addr, &[0, 1, 110, 9, 9, 9]).await;
    assert!(reply.starts_with(&(addr.port() as u32).to_be_bytes()));

    assert_eq!(
        client.port_please("survivor").await.unwrap().unwrap().port,
        77
    );
    assert_eq!(
        client.names().await.unwrap(),
        vec![("survivor".to_string(), 77)]
    );
}

#[tokio::test]
async fn slow_and_silent_clients_are_timed_out() {
    let (handle, client) = start(EpmdServerConfig {
        io_timeout: Duration::from_millis(300),
        ..EpmdServerConfig::default()
    })
    .await;
    let addr = handle.local_addr();
    let mut silent = TcpStream::connect(addr).await.unwrap();
    let mut dribble = TcpStream::connect(addr).await.unwrap();
    dribble.write_all(&[0, 5, 122]).await.unwrap();
    // Other clients are served while those two hang.
    assert!(client.names().await.unwrap().is_empty());
    assert!(read_to_close(&mut silent).await.is_empty());
    assert!(read_to_close(&mut dribble).await.is_empty());
    assert!(client.names().await.unwrap().is_empty());
}

#[tokio::test]
async fn data_on_registration_connection_unregisters() {
    let (handle, client) = start_default().await;
    let mut s = TcpStream::connect(handle.local_addr()).await.unwrap();
    let req = Request::Alive2(NodeEntry::new("chatty", 5, NodeKind::Normal))
        .encode()
        .unwrap();
    s.write_all(&req).await.unwrap();
    let mut reply = [0u8; 6];
    s.read_exact(&mut reply).await.unwrap();
    assert_eq!(reply[0], 118);
    assert!(client.port_please("chatty").await.unwrap().is_some());
    s.write_all(b"more").await.unwrap();
    read_to_close(&mut s).await;
    assert_eq!(client.port_please("chatty").await.unwrap(), None);
}

#[tokio::test]
async fn connection_flood_is_capped() {
    let (handle, client) = start(EpmdServerConfig {
        max_connections: 4,
        max_registrations: 2,
        io_timeout: Duration::from_secs(30),
        ..Default::default()
    })
    .await;
    let addr = handle.local_addr();
    let r1 = client.register("r1", 1, NodeKind::Normal).await.unwrap();
    let _r2 = client.register("r2", 2, NodeKind::Normal).await.unwrap();
    // Registration cap: connection closed without a reply.
    let err = client
        .register("r3", 3, NodeKind::Normal)
        .await
        .unwrap_err();
    assert!(matches!(err, EpmdError::Closed { .. }), "{err:?}");

    // Fill the remaining two connection slots with idle clients.
    let idle1 = TcpStream::connect(addr).await.unwrap();
    let idle2 = TcpStream::connect(addr).await.unwrap();
    let c = client.clone();
    eventually("connection cap enforced", || {
        let c = c.clone();
        async move { c.names().await.is_err() }
    })
    .await;

    // Freeing slots restores service.
    drop(idle1);
    drop(idle2);
    let c = client.clone();
    eventually("service restored", || {
        let c = c.clone();
        async move { c.names().await.is_ok() }
    })
    .await;
    r1.close().await.unwrap();
    let _r3 = client.register("r3", 3, NodeKind::Normal).await.unwrap();
    assert_eq!(client.names().await.unwrap().len(), 2);
}

#[tokio::test]
async fn dump_and_kill() {
    let (handle, client) = start_default().await;
    let _reg = client.register("d", 42, NodeKind::Normal).await.unwrap();
    let reply = raw(handle.local_addr(), &[0, 1, 100]).await;
    let text = String::from_utf8_lossy(&reply[4..]).to_string();
    assert!(
        text.starts_with("active name     <d> at port 42, fd = "),
        "{text:?}"
    );
    assert!(text.ends_with("\n\0"), "{text:?}");
    assert_eq!(raw(handle.local_addr(), &[0, 1, 107]).await, b"NO");
    assert!(client.port_please("d").await.unwrap().is_some());
}

#[tokio::test]
async fn shutdown_drops_registrations_and_frees_port() {
    let (handle, client) = start_default().await;
    let addr = handle.local_addr();
    let mut reg = client.register("gone", 1, NodeKind::Normal).await.unwrap();
    handle.shutdown_and_wait().await;
    tokio::time::timeout(Duration::from_secs(5), reg.lost())
        .await
        .unwrap();
    assert!(matches!(
        client.names().await,
        Err(EpmdError::NoEpmd { .. })
    ));
    let again = EpmdServer::bind(addr).await.unwrap().spawn();
    assert!(client.names().await.unwrap().is_empty());
    drop(again);
}

#[tokio::test]
async fn sync_shutdown_stops_server() {
    let (handle, client) = start_default().await;
    let mut reg = client.register("s", 1, NodeKind::Normal).await.unwrap();
    handle.shutdown();
    tokio::time::timeout(Duration::from_secs(5), reg.lost())
        .await
        .unwrap();
    let c = client.clone();
    eventually("server stopped", || {
        let c = c.clone();
        async move { matches!(c.names().await, Err(EpmdError::NoEpmd { .. })) }
    })
    .await;
}

#[tokio::test]
async fn dropping_handle_stops_server() {
    let (handle, client) = start_default().await;
    drop(handle);
    let c = client.clone();
    eventually("server stopped", || {
        let c = c.clone();
        async move { matches!(c.names().await, Err(EpmdError::NoEpmd { .. })) }
    })
    .await;
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test]
async fn ensure_epmd_starts_or_reuses() {
    init_tracing();
    let port = free_port();
    let handle = ensure_epmd(port)
        .await
        .unwrap()
        .expect("should start embedded EPMD");
    assert_eq!(handle.local_addr().port(), port);
    assert!(handle.local_addr().ip().is_unspecified());
    // Second call finds the first one.
    assert!(ensure_epmd(port).await.unwrap().is_none());
    handle.shutdown_and_wait().await;
}

#[tokio::test]
async fn ensure_epmd_refuses_non_epmd_listener() {
    init_tracing();
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    let _task = tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            let _ = s.write_all(b"HTTP/1.0 400 Bad Request\r\n\r\n").await;
        }
    });
    let err = ensure_epmd(port).await.unwrap_err();
    assert!(matches!(err, EpmdError::NotEpmd { .. }), "{err:?}");
}

#[tokio::test]
async fn ensure_epmd_race_loser_uses_winner() {
    init_tracing();
    // Several concurrent callers on one free port: exactly one serves.
    let port = free_port();
    let results = futures_join_all((0..4).map(|_| tokio::spawn(ensure_epmd(port)))).await;
    let mut started = Vec::new();
    for r in results {
        if let Some(h) = r.unwrap().unwrap() {
            started.push(h);
        }
    }
    assert_eq!(started.len(), 1, "exactly one caller should start EPMD");
}

/// Small stand-in for `futures::future::join_all` (not a dependency).
async fn futures_join_all<T>(
    handles: impl Iterator<Item = tokio::task::JoinHandle<T>>,
) -> Vec<Result<T, tokio::task::JoinError>> {
    let mut out = Vec::new();
    for h in handles {
        out.push(h.await);
    }
    out
}

#[test]
fn epmd_addresses_parse_like_erl_epmd_address_and_always_include_loopback() {
    use super::{listen_addresses, parse_addresses};
    let a = parse_addresses(" 10.1.2.3, 192.168.0.1 ").unwrap();
    assert_eq!(a.len(), 2);
    let l = listen_addresses(&a, 4369);
    assert_eq!(
        l,
        vec!["127.0.0.1:4369".parse().unwrap(), "10.1.2.3:4369".parse().unwrap(), "192.168.0.1:4369".parse().unwrap()]
    );
    assert_eq!(listen_addresses(&[], 4369), vec!["0.0.0.0:4369".parse().unwrap()]);
    assert_eq!(listen_addresses(&parse_addresses("127.0.0.1").unwrap(), 1), vec!["127.0.0.1:1".parse().unwrap()]);
    assert!(parse_addresses("10.0.0.1,nonsense").is_err());
}

#[tokio::test]
async fn a_standalone_daemon_honours_kill_only_with_no_node_registered() {
    let (handle, client) = start(EpmdServerConfig { allow_kill: true, ..Default::default() }).await;
    let kill = |addr: SocketAddr| async move {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(&Request::Kill.encode().unwrap()).await.unwrap();
        let mut reply = Vec::new();
        s.read_to_end(&mut reply).await.unwrap();
        reply
    };
    let reg = client.register("alive", 1, NodeKind::Normal).await.unwrap();
    assert_eq!(kill(handle.local_addr()).await, b"NO");
    // Returns once the server has dropped the name.
    reg.close().await.unwrap();
    assert_eq!(kill(handle.local_addr()).await, b"OK");
    tokio::time::timeout(Duration::from_secs(5), handle.kill_requested()).await.expect("the owner is told");
}
