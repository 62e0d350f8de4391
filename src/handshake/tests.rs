use super::*;
use std::time::Duration;

struct Fixed(AcceptDecision);
impl Arbiter for Fixed {
    fn decide(&self, _peer: &str) -> AcceptDecision {
        self.0
    }
}

fn cfg(name: &str, cookie: &str) -> HandshakeConfig {
    HandshakeConfig {
        node_name: name.into(),
        creation: 42,
        cookie: cookie.into(),
        flags: flags::ERLNODE_DEFAULT,
        timeout: Duration::from_secs(2),
        packet_header: 2,
    }
}

async fn run(a_cookie: &str, b_cookie: &str, d: AcceptDecision) -> (Result<PeerInfo, HandshakeError>, Result<PeerInfo, HandshakeError>) {
    let (mut x, mut y) = tokio::io::duplex(4096);
    let a = cfg("a@h", a_cookie);
    let b = cfg("b@h", b_cookie);
    let arb = Fixed(d);
    let (ra, rb) = tokio::join!(
        async {
            let r = initiate(&mut x, &a, "b@h", || true).await;
            drop(x);
            r
        },
        async {
            let r = accept(&mut y, &b, &arb).await;
            drop(y);
            r
        }
    );
    (ra, rb)
}

#[tokio::test]
async fn both_sides_agree() {
    let (a, b) = run("c", "c", AcceptDecision::Ok).await;
    let a = a.unwrap();
    let b = b.unwrap();
    assert_eq!(a.name, "b@h");
    assert_eq!(b.name, "a@h");
    assert_eq!(a.creation, 42);
    assert_eq!(a.flags, flags::ERLNODE_DEFAULT);
}

#[tokio::test]
async fn wrong_cookie_fails_on_both_sides() {
    let (a, b) = run("one", "two", AcceptDecision::Ok).await;
    assert!(matches!(b, Err(HandshakeError::BadCookie { .. })), "{b:?}");
    assert!(matches!(a, Err(HandshakeError::CookieRejectedByPeer { .. })), "{a:?}");
}

#[tokio::test]
async fn nok_loses_race() {
    let (a, b) = run("c", "c", AcceptDecision::Nok).await;
    assert!(matches!(a, Err(HandshakeError::LostRace { .. })));
    assert!(matches!(b, Err(HandshakeError::LostRace { .. })));
}

#[tokio::test]
async fn silent_peer_times_out() {
    let (_x, mut y) = tokio::io::duplex(64);
    let mut c = cfg("b@h", "c");
    c.timeout = Duration::from_millis(50);
    let r = accept(&mut y, &c, &Fixed(AcceptDecision::Ok)).await;
    assert!(matches!(r, Err(HandshakeError::Timeout(_))));
}

#[tokio::test]
async fn garbage_is_a_protocol_error() {
    use tokio::io::AsyncWriteExt;
    let (mut x, mut y) = tokio::io::duplex(64);
    x.write_all(&[0, 3, b'N', 1, 2]).await.unwrap();
    let r = accept(&mut y, &cfg("b@h", "c"), &Fixed(AcceptDecision::Ok)).await;
    assert!(matches!(r, Err(HandshakeError::Protocol(_))), "{r:?}");
    x.write_all(&[0xff, 0xff]).await.unwrap();
}
