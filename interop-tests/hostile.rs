//! Issue "Connect", item 5 "Malformed input": a hostile peer (a raw TCP
//! client that completes a real handshake, then writes whatever it likes)
//! gets its own link closed with a reported reason, or its junk dropped,
//! while erlnode keeps serving a real BEAM node.
//!
//! Every test starts its own epmd, one erlnode `Node` (in this process)
//! and one BEAM node, and links the BEAM node to erlnode *before* the
//! attack, so "keeps serving every other peer" means an existing link
//! survives, not just that a new one can be made.

use crate::support::{self, BeamNode, Epmd, Erlnode};
use erlnode::connection::{atom_cache::AtomCache, decode_message, header};
use erlnode::handshake::{self, flags, messages, HandshakeConfig};
use erlnode::term::{encode, Atom, DecodeLimits, Pid, Reference, Term};
use erlnode::{Node, NodeBuilder, NodeEvent};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::broadcast;

/// Upper bound for anything that should happen "at once".
const T: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------------
// Setup: epmd + erlnode + a BEAM node already linked to it.

struct Setup {
    beam: BeamNode,
    rust: Node,
    events: broadcast::Receiver<NodeEvent>,
    cookie: String,
    _epmd: Epmd,
}

async fn setup(configure: impl FnOnce(NodeBuilder) -> NodeBuilder) -> Setup {
    support::require_erlang();
    let epmd = Epmd::start().await;
    let cookie = support::unique("cookie");
    let builder = support::rust_node_builder("rust", &cookie, epmd.port());
    let rust = configure(builder).start().await.expect("erlnode starts");
    erlnode::services::echo::spawn(&rust, "erlnode_echo").unwrap();
    let events = rust.subscribe();
    let beam = BeamNode::builder().prefix("peer").cookie(&cookie).epmd_port(epmd.port()).start().await;
    let mut s = Setup { beam, rust, events, cookie, _epmd: epmd };
    assert_eq!(s.beam.eval(&format!("net_adm:ping('{}')", s.rust.name())).await, Term::atom("pong"));
    let beam_name = s.beam.name().to_string();
    s.wait_event(|e| matches!(e, NodeEvent::Up(n) if n.as_str() == beam_name)).await;
    s
}

impl Setup {
    /// Waits for an event; panics if the BEAM node's link goes down
    /// meanwhile (no attack may cost an innocent peer its link).
    async fn wait_event(&mut self, f: impl Fn(&NodeEvent) -> bool) -> NodeEvent {
        let beam = self.beam.name().to_string();
        tokio::time::timeout(T, async {
            loop {
                match self.events.recv().await {
                    Ok(NodeEvent::Down { node, reason }) if node.as_str() == beam => {
                        panic!("the BEAM node's link went down: {reason}")
                    }
                    Ok(e) if f(&e) => return e,
                    Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(e) => panic!("event stream: {e}"),
                }
            }
        })
        .await
        .expect("event arrives in time")
    }

    /// The nodedown reason reported for `node`.
    async fn down_reason(&mut self, node: &str) -> String {
        match self.wait_event(|e| matches!(e, NodeEvent::Down { node: n, .. } if n.as_str() == node)).await {
            NodeEvent::Down { reason, .. } => reason,
            _ => unreachable!(),
        }
    }

    /// A hostile peer that completed a real handshake (and whose nodeup
    /// the node reported).
    async fn hostile(&mut self) -> Hostile {
        let h = Hostile::connect(self.rust.listen_port(), self.rust.name().as_str(), &self.cookie).await;
        let name = h.name.clone();
        self.wait_event(|e| matches!(e, NodeEvent::Up(n) if n.as_str() == name)).await;
        h
    }

    /// The node still serves the BEAM node, both ways, over the link that
    /// existed before the attack; and the BEAM node itself is healthy.
    async fn assert_still_serves(&mut self) {
        let rust = self.rust.name().to_string();
        let r = self
            .beam
            // The control loop keeps bindings across evals: only fun
            // parameters (always fresh) are used, so this can run any
            // number of times next to any other eval.
            .eval(&format!(
                "(fun(Rust, Ref) ->
                     {{erlnode_echo, Rust}} ! {{self(), {{back, Ref}}}},
                     {{net_adm:ping(Rust),
                      gen_server:call({{erlnode_echo, Rust}}, {{hello, 42}}, 5000),
                      receive {{back, Ref}} -> ok after 5000 -> timeout end,
                      lists:member(Rust, nodes()),
                      1 + 1}}
                 end)('{rust}', make_ref())"
            ))
            .await;
        assert_eq!(
            r,
            Term::tuple([
                Term::atom("pong"),
                Term::tuple([Term::atom("echo"), Term::tuple([Term::atom("hello"), Term::Int(42)])]),
                Term::atom("ok"),
                Term::atom("true"),
                Term::Int(2),
            ]),
            "the BEAM node is still served"
        );
        assert!(self.rust.ping(self.beam.name()).await, "erlnode -> BEAM ping");
        // No nodedown for the BEAM node happened in between.
        loop {
            match self.events.try_recv() {
                Ok(NodeEvent::Down { node, reason }) if node.as_str() == self.beam.name() => {
                    panic!("the BEAM node's link went down: {reason}")
                }
                Ok(_) | Err(broadcast::error::TryRecvError::Lagged(_)) => continue,
                Err(_) => break,
            }
        }
        assert!(self.rust.connected_nodes().iter().any(|n| n.as_str() == self.beam.name()));
    }

    /// A pid on the erlnode node that no process has.
    fn dead_local_pid(&self) -> Pid {
        Pid { node: self.rust.name().clone(), id: 0x7fff_0000, serial: 0, creation: self.rust.creation() }
    }
}

// ---------------------------------------------------------------------
// The hostile peer.

struct Hostile {
    name: String,
    creation: u32,
    stream: TcpStream,
    cache: AtomCache,
}

impl Hostile {
    async fn connect(port: u16, node: &str, cookie: &str) -> Hostile {
        let name = format!("{}@127.0.0.1", support::unique("hostile"));
        let creation = rand::random::<u32>().max(4);
        let mut stream = TcpStream::connect(("127.0.0.1", port)).await.expect("tcp connect");
        let cfg = HandshakeConfig {
            node_name: name.clone(),
            creation,
            cookie: cookie.to_string(),
            flags: flags::ERLNODE_DEFAULT,
            timeout: T,
            packet_header: 2,
        };
        handshake::initiate(&mut stream, &cfg, node, || true).await.expect("hostile handshake");
        Hostile { name, creation, stream, cache: AtomCache::default() }
    }

    fn pid(&self, id: u32) -> Pid {
        Pid { node: Atom::new(&self.name), id, serial: 0, creation: self.creation }
    }

    fn reference(&self, n: u32) -> Reference {
        Reference { node: Atom::new(&self.name), creation: self.creation, ids: [n, 0, 0].into_iter().collect() }
    }

    async fn write(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.expect("hostile write");
    }

    /// The next control message from the node whose opcode is `opcode`.
    /// Ticks and other traffic (the node's `global` talks to every new
    /// peer) are skipped.
    async fn read_message(&mut self, opcode: i64) -> (Term, Option<Term>) {
        tokio::time::timeout(T, async {
            loop {
                let (ctl, payload) = self.read_any_message().await;
                if matches!(ctl.as_tuple(), Some([Term::Int(op), ..]) if *op == opcode) {
                    return (ctl, payload);
                }
            }
        })
        .await
        .unwrap_or_else(|_| panic!("no message with opcode {opcode} from the node in time"))
    }

    async fn read_any_message(&mut self) -> (Term, Option<Term>) {
        tokio::time::timeout(T, async {
            loop {
                let len = self.stream.read_u32().await.expect("read frame length") as usize;
                if len == 0 {
                    continue;
                }
                let mut buf = vec![0; len];
                self.stream.read_exact(&mut buf).await.expect("read frame");
                match header::parse_frame(buf.into(), &mut self.cache).expect("node sends valid frames") {
                    header::FramePart::Whole { atoms, body } => {
                        return decode_message(&body, &atoms, &DecodeLimits::default()).expect("node sends valid terms")
                    }
                    other => panic!("unexpected fragment from the node: {other:?}"),
                }
            }
        })
        .await
        .expect("a message from the node in time")
    }

    /// Waits until the node closes the link (EOF or reset), reading and
    /// ignoring whatever it still sends; returns how long that took.
    async fn expect_closed(&mut self, within: Duration) -> Duration {
        expect_closed(&mut self.stream, within).await
    }
}

/// Time from `since` until the node closed `stream`.
async fn closed_since(stream: &mut TcpStream, since: Instant) -> Duration {
    expect_closed(stream, T).await;
    since.elapsed()
}

async fn expect_closed(stream: &mut TcpStream, within: Duration) -> Duration {
    let start = Instant::now();
    let mut buf = [0u8; 4096];
    let r = tokio::time::timeout(within, async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => continue,
            }
        }
    })
    .await;
    assert!(r.is_ok(), "the node did not close the hostile link within {within:?}");
    start.elapsed()
}

// ---------------------------------------------------------------------
// Frame builders.

/// A 4-byte length then `body`.
fn frame(body: &[u8]) -> Vec<u8> {
    let mut f = (body.len() as u32).to_be_bytes().to_vec();
    f.extend_from_slice(body);
    f
}

/// A whole message: `131 68 0` (no atom-cache refs), control, payload.
fn message(ctl: &Term, payload: Option<&Term>) -> Vec<u8> {
    let mut body = vec![131, 68, 0];
    body.extend(encode(ctl));
    if let Some(p) = payload {
        body.extend(encode(p));
    }
    frame(&body)
}

/// `{SEND, '', To}` + `msg`.
fn send(to: &Pid, msg: Term) -> Vec<u8> {
    message(&Term::tuple([Term::Int(2), Term::atom(""), Term::Pid(to.clone())]), Some(&msg))
}

/// `{REG_SEND, From, '', Name}` + `msg`.
fn reg_send(from: &Pid, name: &str, msg: Term) -> Vec<u8> {
    message(&Term::tuple([Term::Int(6), Term::Pid(from.clone()), Term::atom(""), Term::atom(name)]), Some(&msg))
}

/// First fragment: `131 69 Seq FragId 0` + body.
fn frag_first(seq: u64, id: u64, body: &[u8]) -> Vec<u8> {
    let mut b = vec![131, 69];
    b.extend(seq.to_be_bytes());
    b.extend(id.to_be_bytes());
    b.push(0);
    b.extend_from_slice(body);
    frame(&b)
}

/// Continuation: `131 70 Seq FragId` + body.
fn frag_cont(seq: u64, id: u64, body: &[u8]) -> Vec<u8> {
    let mut b = vec![131, 70];
    b.extend(seq.to_be_bytes());
    b.extend(id.to_be_bytes());
    b.extend_from_slice(body);
    frame(&b)
}

/// A control + payload body (what follows a header), for fragments.
fn some_message_body(s: &Setup) -> Vec<u8> {
    let mut b = encode(&Term::tuple([Term::Int(2), Term::atom(""), Term::Pid(s.dead_local_pid())]));
    b.extend(encode(&Term::binary(vec![7u8; 300])));
    b
}

/// One hostile peer per case: it writes `bytes` (then half-closes if
/// `then_close`); the node must close that link and report a nodedown
/// reason containing every string in `expect`.
async fn link_is_closed_with_reason(s: &mut Setup, bytes: &[u8], then_close: bool, expect: &[&str]) {
    let mut h = s.hostile().await;
    h.write(bytes).await;
    if then_close {
        h.stream.shutdown().await.expect("half-close");
    }
    h.expect_closed(T).await;
    let reason = s.down_reason(&h.name).await;
    for e in expect {
        assert!(reason.contains(e), "nodedown reason {reason:?} should mention {e:?}");
    }
    assert!(!s.rust.connected_nodes().iter().any(|n| n.as_str() == h.name));
}

// ---------------------------------------------------------------------
// Frame-level errors: the link is closed, the reason reported.

#[tokio::test(flavor = "multi_thread")]
async fn truncated_frames_close_only_that_link() {
    let mut s = setup(|b| b).await;
    // Length says 100, 10 bytes come, then the peer closes.
    let mut bytes = 100u32.to_be_bytes().to_vec();
    bytes.extend_from_slice(&[131, 68, 0, 131, 104, 3, 97, 2, 119, 0]);
    link_is_closed_with_reason(&mut s, &bytes, true, &["middle of a frame"]).await;
    // A whole frame whose header stops short (no atom-cache count).
    link_is_closed_with_reason(&mut s, &frame(&[131, 68]), false, &["truncated"]).await;
    // A header announcing two atom-cache refs but carrying only one.
    link_is_closed_with_reason(&mut s, &frame(&[131, 68, 2, 0x88, 0x00, 1, 1, b'a']), false, &["truncated"]).await;
    s.assert_still_serves().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_frame_and_header_tags_close_the_link() {
    let mut s = setup(|b| b).await;
    link_is_closed_with_reason(&mut s, &frame(&[131, 99, 0, 131, 106]), false, &["unknown distribution header tag 99"]).await;
    link_is_closed_with_reason(&mut s, &frame(&[7, 1, 2, 3]), false, &["unknown frame type 7"]).await;
    s.assert_still_serves().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_atom_cache_refs_close_the_link() {
    let mut s = setup(|b| b).await;
    // The header refers to cache slot 5, which was never filled.
    link_is_closed_with_reason(&mut s, &frame(&[131, 68, 1, 0x00, 5, 131, 106]), false, &["empty atom cache slot 5"]).await;
    // The header refers to segment 7 slot 255 (index 2047, the last of
    // the 2048 slots), also never filled.
    link_is_closed_with_reason(&mut s, &frame(&[131, 68, 1, 0x07, 255, 131, 106]), false, &["empty atom cache slot 2047"])
        .await;
    // The term uses ATOM_CACHE_REF 3 but the header announced no atoms.
    link_is_closed_with_reason(&mut s, &frame(&[131, 68, 0, 131, 104, 2, 97, 2, 82, 3]), false, &["atom cache reference 3"])
        .await;
    // A new cache entry whose text is not UTF-8.
    link_is_closed_with_reason(&mut s, &frame(&[131, 68, 1, 0x08, 9, 2, 0xff, 0xfe, 131, 106]), false, &["not UTF-8"])
        .await;
    s.assert_still_serves().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn undecodable_terms_close_the_link() {
    let mut s = setup(|b| b).await;
    // Unknown term tag.
    link_is_closed_with_reason(&mut s, &frame(&[131, 68, 0, 131, 255]), false, &["undecodable term", "unknown term tag 255"])
        .await;
    // A control term cut short.
    let ctl = encode(&Term::tuple([Term::Int(2), Term::atom(""), Term::Pid(s.dead_local_pid())]));
    let mut b = vec![131, 68, 0];
    b.extend_from_slice(&ctl[..ctl.len() / 2]);
    link_is_closed_with_reason(&mut s, &frame(&b), false, &["undecodable term"]).await;
    // A list claiming 4 billion elements in a 20-byte frame.
    link_is_closed_with_reason(&mut s, &frame(&[131, 68, 0, 131, 108, 0xff, 0xff, 0xff, 0xff, 97, 1, 106]), false, &["undecodable term"])
        .await;
    // A compressed term declaring 4 GiB uncompressed.
    link_is_closed_with_reason(&mut s, &frame(&[131, 68, 0, 131, 80, 0xff, 0xff, 0xff, 0xff, 0x78, 0x9c]), false, &["undecodable term"])
        .await;
    // Nesting deeper than the decode limit: 5000 nested 1-tuples.
    let mut b = vec![131, 68, 0, 131];
    for _ in 0..5000 {
        b.extend_from_slice(&[104, 1]);
    }
    b.push(106);
    link_is_closed_with_reason(&mut s, &frame(&b), false, &["nested deeper"]).await;
    // Bytes left over after control and payload.
    let mut b = vec![131, 68, 0];
    b.extend(some_message_body(&s));
    b.extend_from_slice(&[97, 1]);
    link_is_closed_with_reason(&mut s, &frame(&b), false, &["trailing bytes"]).await;
    s.assert_still_serves().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn oversize_frame_closes_the_link() {
    const MAX: usize = 256 * 1024;
    let mut s = setup(|b| b.max_frame(MAX)).await;
    // Only the length is sent: the node must not wait for (or allocate)
    // the body before refusing it.
    link_is_closed_with_reason(&mut s, &((MAX + 1) as u32).to_be_bytes(), false, &["max_frame"]).await;
    link_is_closed_with_reason(&mut s, &u32::MAX.to_be_bytes(), false, &["exceeds max_frame"]).await;
    s.assert_still_serves().await;
    // The limit does not get in the way of a large message from a real
    // peer: the BEAM fragments it into 64 KiB frames.
    let r = s
        .beam
        .eval(&format!(
            "Bin = crypto:strong_rand_bytes(1024 * 1024),
             {{erlnode_echo, '{}'}} ! {{self(), {{big, Bin}}}},
             receive {{big, Back}} -> Back =:= Bin after 10000 -> timeout end",
            s.rust.name()
        ))
        .await;
    assert_eq!(r, Term::atom("true"));
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_fragment_sequences_close_the_link() {
    let mut s = setup(|b| b).await;
    let body = some_message_body(&s);
    let (a, rest) = body.split_at(100);
    let b = &rest[..100];
    // Continuation of a sequence that was never started.
    link_is_closed_with_reason(&mut s, &frag_cont(42, 1, a), false, &["unknown fragment sequence 42"]).await;
    // Fragments out of order: 3 of 3, then 1 of 3.
    let mut bytes = frag_first(7, 3, a);
    bytes.extend(frag_cont(7, 1, b));
    link_is_closed_with_reason(&mut s, &bytes, false, &["out of order"]).await;
    // The same sequence started twice.
    let mut bytes = frag_first(8, 3, a);
    bytes.extend(frag_first(8, 3, a));
    link_is_closed_with_reason(&mut s, &bytes, false, &["started twice"]).await;
    // Fragment id 0 does not exist.
    link_is_closed_with_reason(&mut s, &frag_first(9, 0, a), false, &["fragment id 0"]).await;
    // More partial messages in flight than allowed (1024 by default).
    let mut bytes = Vec::new();
    for seq in 0..1025u64 {
        bytes.extend(frag_first(seq, 2, a));
    }
    link_is_closed_with_reason(&mut s, &bytes, false, &["fragmented messages in flight"]).await;
    // Sanity: a correct fragmented message over a fresh hostile link is
    // accepted and delivered.
    let mut mb = s.rust.spawn_mailbox();
    let mut h = s.hostile().await;
    let mut body = encode(&Term::tuple([Term::Int(2), Term::atom(""), Term::Pid(mb.pid().clone())]));
    body.extend(encode(&Term::binary(vec![9u8; 300])));
    let (a, rest) = body.split_at(100);
    let (b, c2) = rest.split_at(100);
    let mut bytes = frag_first(1, 3, a);
    bytes.extend(frag_cont(1, 2, b));
    bytes.extend(frag_cont(1, 1, c2));
    h.write(&bytes).await;
    assert_eq!(mb.recv_timeout(T).await.unwrap(), Term::binary(vec![9u8; 300]));
    s.assert_still_serves().await;
}

/// Large frames are read past the link's buffer, and a continuation's
/// body straight into its message (issue 16): two fragmented messages of
/// uneven, interleaved fragments (a first fragment smaller than the
/// rest, so the announced size is short and the buffer grows; small and
/// large continuations; an empty one), and a large unfragmented message,
/// all arrive intact and in order.
#[tokio::test(flavor = "multi_thread")]
async fn interleaved_large_fragments_arrive_intact() {
    let mut s = setup(|b| b).await;
    let mut mb = s.rust.spawn_mailbox();
    let mut h = s.hostile().await;
    let body_of = |fill: u8, n: usize| {
        let mut body = encode(&Term::tuple([Term::Int(2), Term::atom(""), Term::Pid(mb.pid().clone())]));
        let payload: Vec<u8> = (0..n).map(|i| fill ^ (i % 251) as u8).collect();
        body.extend(encode(&Term::binary(payload.clone())));
        (body, payload)
    };
    let (one, one_payload) = body_of(0x11, 300_000);
    let (two, two_payload) = body_of(0x22, 200_000);
    // one: 20 KB, 100 KB, 0 B, 3 KB, the rest; two: 64 KB, 64 KB, the rest.
    let cuts = |b: &[u8], sizes: &[usize]| -> Vec<Vec<u8>> {
        let mut out = vec![];
        let mut at = 0;
        for n in sizes {
            out.push(b[at..at + n].to_vec());
            at += n;
        }
        out.push(b[at..].to_vec());
        out
    };
    let p1 = cuts(&one, &[20_000, 100_000, 0, 3_000]);
    let p2 = cuts(&two, &[65_536, 65_536]);
    let mut bytes = frag_first(1, p1.len() as u64, &p1[0]);
    bytes.extend(frag_first(2, p2.len() as u64, &p2[0]));
    let (mut i1, mut i2) = (1, 1);
    while i1 < p1.len() || i2 < p2.len() {
        if i1 < p1.len() {
            bytes.extend(frag_cont(1, (p1.len() - i1) as u64, &p1[i1]));
            i1 += 1;
        }
        if i2 < p2.len() {
            bytes.extend(frag_cont(2, (p2.len() - i2) as u64, &p2[i2]));
            i2 += 1;
        }
    }
    // A large message in one frame.
    let (three, three_payload) = body_of(0x33, 50_000);
    let mut whole = vec![131, 68, 0];
    whole.extend(three);
    bytes.extend(frame(&whole));
    h.write(&bytes).await;
    // two completes first (3 fragments against 5).
    assert_eq!(mb.recv_timeout(T).await.unwrap(), Term::binary(two_payload));
    assert_eq!(mb.recv_timeout(T).await.unwrap(), Term::binary(one_payload));
    assert_eq!(mb.recv_timeout(T).await.unwrap(), Term::binary(three_payload));
    s.assert_still_serves().await;
}

// ---------------------------------------------------------------------
// Well-formed terms that are not valid control messages: logged and
// dropped, the link stays up.

#[tokio::test(flavor = "multi_thread")]
async fn unknown_and_malformed_control_messages_are_dropped_and_the_link_stays_up() {
    let mut s = setup(|b| b).await;
    let mut mb = s.rust.spawn_mailbox();
    s.rust.register("hostile_probe", &mb.pid().clone()).unwrap();
    let mut h = s.hostile().await;
    let me = h.pid(1);
    let target = mb.pid().clone();
    let p = |x: &Pid| Term::Pid(x.clone());
    let i = Term::Int;
    let payload = Term::atom("junk");
    let mut bytes = Vec::new();
    // Unknown opcodes, with and without payload.
    bytes.extend(message(&Term::tuple([i(99), Term::atom("foo")]), None));
    bytes.extend(message(&Term::tuple([i(-1), p(&me)]), Some(&payload)));
    bytes.extend(message(&Term::tuple([i(0)]), None));
    // Not a tuple, an empty tuple, no integer opcode, a bignum opcode.
    bytes.extend(message(&Term::atom("hello"), None));
    bytes.extend(message(&Term::tuple([]), Some(&payload)));
    bytes.extend(message(&Term::tuple([Term::atom("send"), p(&target)]), Some(&payload)));
    bytes.extend(message(&Term::tuple([Term::Big(num_big()), p(&target)]), Some(&payload)));
    // Known opcodes, wrong shapes: SEND to a non-pid, SEND without its
    // payload, SEND with an extra element, REG_SEND to a non-atom, LINK
    // between non-pids, MONITOR_P with a non-reference, SPAWN_REQUEST
    // without {M, F, A}, UNLINK_ID with a negative id.
    bytes.extend(message(&Term::tuple([i(2), Term::atom(""), Term::atom("not_a_pid")]), Some(&payload)));
    bytes.extend(message(&Term::tuple([i(2), Term::atom(""), p(&target)]), None));
    bytes.extend(message(&Term::tuple([i(2), Term::atom(""), p(&target), i(1)]), Some(&payload)));
    bytes.extend(message(&Term::tuple([i(6), p(&me), Term::atom(""), i(123)]), Some(&payload)));
    bytes.extend(message(&Term::tuple([i(1), i(1), i(2)]), None));
    bytes.extend(message(&Term::tuple([i(19), p(&me), p(&target), Term::atom("not_a_ref")]), None));
    bytes.extend(message(
        &Term::tuple([i(29), Term::Ref(h.reference(1)), p(&me), p(&me), i(3), Term::nil()]),
        Some(&Term::nil()),
    ));
    bytes.extend(message(&Term::tuple([i(35), i(-5), p(&me), p(&target)]), None));
    // Then two valid messages over the same link.
    bytes.extend(send(&target, Term::tuple([Term::atom("after_garbage"), i(1)])));
    bytes.extend(reg_send(&me, "hostile_probe", Term::tuple([Term::atom("after_garbage"), i(2)])));
    h.write(&bytes).await;
    assert_eq!(mb.recv_timeout(T).await.unwrap(), Term::tuple([Term::atom("after_garbage"), i(1)]));
    assert_eq!(mb.recv_timeout(T).await.unwrap(), Term::tuple([Term::atom("after_garbage"), i(2)]));
    assert!(s.rust.connected_nodes().iter().any(|n| n.as_str() == h.name), "the hostile link stays up");

    // Well-formed requests about things that do not exist are answered,
    // as a BEAM peer waiting on them expects.
    let dead = s.dead_local_pid();
    let mut bytes = Vec::new();
    bytes.extend(send(&dead, Term::atom("to_nobody")));
    bytes.extend(reg_send(&me, "no_such_name", Term::atom("to_nobody")));
    bytes.extend(message(&Term::tuple([i(33), p(&me), Term::Ref(h.reference(77))]), Some(&payload))); // ALIAS_SEND, unknown alias
    bytes.extend(message(&Term::tuple([i(20), p(&me), p(&dead), Term::Ref(h.reference(78))]), None)); // DEMONITOR_P, unknown
    bytes.extend(message(&Term::tuple([i(4), p(&me), p(&dead)]), None)); // UNLINK, never linked
    bytes.extend(message(&Term::tuple([i(7), p(&me), p(&dead)]), None)); // GROUP_LEADER
    bytes.extend(message(&Term::tuple([i(31), Term::Ref(h.reference(79)), p(&me), i(0), p(&me)]), None)); // unsolicited SPAWN_REPLY
    bytes.extend(message(&Term::tuple([i(26), p(&me), p(&dead)]), Some(&Term::atom("kill")))); // EXIT2 to a dead pid
    bytes.extend(message(&Term::tuple([i(1), p(&me), p(&dead)]), None)); // LINK to a dead pid
    h.write(&bytes).await;
    let (ctl, reason) = h.read_message(24).await;
    assert_eq!(ctl, Term::tuple([i(24), p(&dead), p(&me)]), "LINK to a dead pid gets an exit");
    assert_eq!(reason, Some(Term::atom("noproc")));
    h.write(&message(&Term::tuple([i(19), p(&me), p(&dead), Term::Ref(h.reference(80))]), None)).await; // MONITOR_P
    let (ctl, reason) = h.read_message(28).await;
    assert_eq!(ctl, Term::tuple([i(28), p(&dead), p(&me), Term::Ref(h.reference(80))]), "MONITOR_P of a dead pid gets DOWN");
    assert_eq!(reason, Some(Term::atom("noproc")));
    h.write(&message(
        &Term::tuple([
            i(29),
            Term::Ref(h.reference(81)),
            p(&me),
            p(&me),
            Term::tuple([Term::atom("os"), Term::atom("cmd"), i(1)]),
            Term::nil(),
        ]),
        Some(&Term::list([Term::list([Term::Int(b'l' as i64), Term::Int(b's' as i64)])])),
    ))
    .await;
    let (ctl, _) = h.read_message(31).await;
    assert_eq!(
        ctl,
        Term::tuple([i(31), Term::Ref(h.reference(81)), p(&me), i(0), Term::atom("notsup")]),
        "SPAWN_REQUEST is refused, not run"
    );
    h.write(&message(&Term::tuple([i(35), i(5), p(&me), p(&dead)]), None)).await; // UNLINK_ID
    let (ctl, _) = h.read_message(36).await;
    assert_eq!(ctl, Term::tuple([i(36), i(5), p(&dead), p(&me)]), "UNLINK_ID is acknowledged");

    // Still up, still delivering.
    h.write(&send(&target, Term::atom("still_here"))).await;
    assert_eq!(mb.recv_timeout(T).await.unwrap(), Term::atom("still_here"));
    assert!(s.rust.connected_nodes().iter().any(|n| n.as_str() == h.name));
    assert!(s.rust.is_alive(&target));
    s.assert_still_serves().await;
}

fn num_big() -> num_bigint::BigInt {
    num_bigint::BigInt::from(1u8) << 70
}

// ---------------------------------------------------------------------
// Handshake: a peer that stops half way is cut off after the timeout.

#[tokio::test(flavor = "multi_thread")]
async fn peer_stalling_mid_handshake_is_closed_after_the_handshake_timeout() {
    const HS: Duration = Duration::from_millis(500);
    let mut s = setup(|b| b.handshake_timeout(HS)).await;
    let port = s.rust.listen_port();
    let bounds = |took: Duration, what: &str| {
        assert!(took >= HS - Duration::from_millis(100), "{what}: closed after {took:?}, before the handshake timeout");
        assert!(took < HS + Duration::from_secs(3), "{what}: closed only after {took:?}");
    };

    // 1. Connects and says nothing.
    let mut silent = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let silent_since = Instant::now();
    // 2. Sends half a packet.
    let mut half = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let half_since = Instant::now();
    half.write_all(&[0, 50, b'N', 0, 0]).await.unwrap();
    // 3. Sends a valid send_name, reads status and challenge, then stops.
    let stalled_name = format!("{}@127.0.0.1", support::unique("stall"));
    let mut stalled = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let stalled_since = Instant::now();
    let send_name = messages::SendName { flags: flags::ERLNODE_DEFAULT, creation: 5, name: stalled_name.clone() };
    messages::write_packet(&mut stalled, 2, &send_name.encode()).await.unwrap();
    let status = messages::decode_status(&messages::read_packet(&mut stalled, 2).await.unwrap()).unwrap();
    assert_eq!(status, "ok");
    messages::Challenge::decode(&messages::read_packet(&mut stalled, 2).await.unwrap()).unwrap();

    let (a, b, c) = tokio::join!(
        closed_since(&mut silent, silent_since),
        closed_since(&mut half, half_since),
        closed_since(&mut stalled, stalled_since)
    );
    bounds(a, "silent peer");
    bounds(b, "half a packet");
    bounds(c, "stalled after the challenge");

    // The stalled attempt left nothing behind: the same node name can
    // connect properly right away (not refused as "another handshake is
    // running"), and sends to it do not queue forever.
    assert!(!s.rust.connected_nodes().iter().any(|n| n.as_str() == stalled_name));
    let mut again = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let cfg = HandshakeConfig {
        node_name: stalled_name.clone(),
        creation: 6,
        cookie: s.cookie.clone(),
        flags: flags::ERLNODE_DEFAULT,
        timeout: T,
        packet_header: 2,
    };
    handshake::initiate(&mut again, &cfg, s.rust.name().as_str(), || true)
        .await
        .expect("the name of a peer that once stalled can connect again");
    s.wait_event(|e| matches!(e, NodeEvent::Up(n) if n.as_str() == stalled_name)).await;
    drop(again);
    let reason = s.down_reason(&stalled_name).await;
    // Closed or reset (the node may have sent us data we never read).
    assert!(reason.contains("closed by peer") || reason.contains("reset by peer"), "{reason}");
    s.assert_still_serves().await;
}

// ---------------------------------------------------------------------
// Silent peers: cut off by the tick timeout, also half way through a frame.

#[tokio::test(flavor = "multi_thread")]
async fn silent_peers_are_cut_off_by_the_tick_timeout_even_mid_frame() {
    // Short ticktime on both sides, so the BEAM link ticks fast enough.
    const TICK: Duration = Duration::from_secs(3);
    support::require_erlang();
    let epmd = Epmd::start().await;
    let cookie = support::unique("cookie");
    let rust = support::rust_node_builder("rust", &cookie, epmd.port())
        .net_ticktime(TICK)
        .start()
        .await
        .unwrap();
    erlnode::services::echo::spawn(&rust, "erlnode_echo").unwrap();
    let events = rust.subscribe();
    let beam = BeamNode::builder()
        .prefix("peer")
        .cookie(&cookie)
        .epmd_port(epmd.port())
        .arg("-kernel")
        .arg("net_ticktime")
        .arg("3")
        .start()
        .await;
    let mut s = Setup { beam, rust, events, cookie, _epmd: epmd };
    assert_eq!(s.beam.eval(&format!("net_adm:ping('{}')", s.rust.name())).await, Term::atom("pong"));

    // One says nothing after its handshake; the other sends 10 bytes of a
    // 100-byte frame and then nothing, keeping the socket open.
    let mut quiet = s.hostile().await;
    let mut stuck = s.hostile().await;
    let mut bytes = 100u32.to_be_bytes().to_vec();
    bytes.extend_from_slice(&[131, 68, 0, 131, 104, 3, 97, 2, 119, 0]);
    stuck.write(&bytes).await;
    let (a, b) = tokio::join!(quiet.expect_closed(TICK * 3), stuck.expect_closed(TICK * 3));
    assert!(a >= TICK - Duration::from_millis(500) && b >= TICK - Duration::from_millis(500), "closed too early: {a:?} {b:?}");
    // Both downs, in whichever order they come.
    let (mut quiet_reason, mut stuck_reason) = (None, None);
    while quiet_reason.is_none() || stuck_reason.is_none() {
        let names = [quiet.name.clone(), stuck.name.clone()];
        let NodeEvent::Down { node, reason } =
            s.wait_event(|e| matches!(e, NodeEvent::Down { node, .. } if names.iter().any(|n| n == node.as_str()))).await
        else {
            unreachable!()
        };
        if node.as_str() == quiet.name {
            quiet_reason = Some(reason);
        } else {
            stuck_reason = Some(reason);
        }
    }
    let (r1, r2) = (quiet_reason.unwrap(), stuck_reason.unwrap());
    assert!(r1.contains("net_tick_timeout"), "{r1}");
    assert!(r2.contains("net_tick_timeout") && r2.contains("middle of a frame"), "{r2}");
    s.assert_still_serves().await;
}

// ---------------------------------------------------------------------
// Flood: a peer sending as fast as it can does not starve the others.

#[tokio::test(flavor = "multi_thread")]
async fn flood_of_messages_and_ticks_does_not_starve_other_peers() {
    const N: usize = 100_000;
    let mut s = setup(|b| b).await;
    let mut h = s.hostile().await;
    let hostile_name = h.name.clone();
    let dead = s.dead_local_pid();
    // 100k messages to a pid that does not exist, each followed by a
    // tick, then one message to a live mailbox that marks the end.
    let mut flood = Vec::with_capacity(N * 100);
    for n in 0..N {
        flood.extend(send(&dead, Term::tuple([Term::atom("flood"), Term::Int(n as i64)])));
        flood.extend_from_slice(&[0, 0, 0, 0]);
    }
    let mut mb = s.rust.spawn_mailbox();
    flood.extend(send(mb.pid(), Term::atom("flood_done")));
    let flood_bytes = flood.len();
    let started = Instant::now();
    let writer = tokio::spawn(async move {
        for chunk in flood.chunks(64 * 1024) {
            h.write(chunk).await;
        }
        h
    });
    // The node has consumed the whole flood when the marker arrives.
    let consumed = tokio::spawn(async move {
        let m = mb.recv_timeout(Duration::from_secs(20)).await;
        (m, mb, started.elapsed())
    });

    // Meanwhile the BEAM node's requests are answered promptly: probe
    // (ping + a call to erlnode_echo, from the BEAM side) until the flood
    // has been consumed.
    let rust = s.rust.name().to_string();
    let probe = format!(
        "(fun(Rust) -> {{net_adm:ping(Rust), gen_server:call({{erlnode_echo, Rust}}, probe, 5000)}} end)('{rust}')"
    );
    let mut during = Vec::new();
    while !consumed.is_finished() && during.len() < 1000 {
        let t0 = Instant::now();
        let r = s.beam.eval(&probe).await;
        assert_eq!(r, Term::tuple([Term::atom("pong"), Term::tuple([Term::atom("echo"), Term::atom("probe")])]));
        if !consumed.is_finished() {
            during.push(t0.elapsed());
        }
    }
    let (marker, mut mb, took) = consumed.await.unwrap();
    assert_eq!(marker.expect("the flood is consumed"), Term::atom("flood_done"));
    let worst = during.iter().max().copied().unwrap_or_default();
    eprintln!("flood of {flood_bytes} bytes consumed in {took:?}; {} BEAM probes meanwhile, slowest {worst:?}", during.len());
    assert!(!during.is_empty(), "no BEAM request completed while the flood ({took:?}) was being consumed");
    assert!(worst < Duration::from_secs(2), "a BEAM ping + call took {worst:?} during the flood");

    // The flooding link itself is still up and delivers in order.
    let mut h = writer.await.unwrap();
    assert!(s.rust.connected_nodes().iter().any(|n| n.as_str() == hostile_name));
    h.write(&send(mb.pid(), Term::atom("after_flood"))).await;
    assert_eq!(mb.recv_timeout(T).await.unwrap(), Term::atom("after_flood"));
    s.assert_still_serves().await;
}

// ---------------------------------------------------------------------
// Unexpected terms to erlnode's system processes from a real BEAM node.

#[tokio::test(flavor = "multi_thread")]
async fn unexpected_terms_to_system_processes_get_answers_or_drops() {
    let mut s = setup(|b| b).await;
    let rust = s.rust.name().to_string();
    let r = s
        .beam
        .eval(&format!(
            "Rust = '{rust}',
             Call = fun(Dest, Req) ->
                        try gen_server:call(Dest, Req, 5000) of
                            Reply -> {{reply, Reply}}
                        catch exit:Why -> {{no_reply, Why}}
                        end
                    end,
             {{net_kernel, Rust}} ! garbage,
             {{net_kernel, Rust}} ! {{'$gen_call', not_a_from, x}},
             {{net_kernel, Rust}} ! {{'$gen_call', {{not_a_pid, tag}}, x}},
             {{rex, Rust}} ! {{self(), nonsense}},
             {{rex, Rust}} ! nonsense,
             {{rex, Rust}} ! {{'$gen_call', {{self()}}, x}},
             {{some_scope, Rust}} ! {{discover, self()}},
             {{pg, Rust}} ! {{discover, self()}},
             {{global_name_server, Rust}} ! {{garbage, self()}},
             {{erlnode_echo, Rust}} ! garbage,
             {{erlnode_echo, Rust}} ! {{self()}},
             R1 = Call({{net_kernel, Rust}}, weird),
             R2 = Call({{net_kernel, Rust}}, {{connect, normal, 'x@y'}}),
             R3 = Call({{rex, Rust}}, {{call, erlang, node, [], user}}),
             R4 = Call({{rex, Rust}}, garbage),
             R5 = Call({{rex, Rust}}, {{call, erlang, node, not_a_list, user}}),
             {{rex, Rust}} ! {{self(), {{call, m, f, not_a_list, user}}}},
             R6 = receive {{rex, X6}} -> X6 after 5000 -> no_reply end,
             R7 = rpc:call(Rust, erlang, node, [], 5000),
             R8 = (catch erpc:call(Rust, erlang, node, [], 5000)),
             MRef = erlang:monitor(process, {{no_such_name, Rust}}),
             R9 = receive {{'DOWN', MRef, _, _, Why9}} -> Why9 after 5000 -> no_down end,
             {{R1, R2, R3, R4, R5, R6, R7, R8, R9, 1 + 1}}"
        ))
        .await;
    let t = r.as_tuple().unwrap_or_else(|| panic!("{r:?}")).to_vec();
    let reply = |x: &Term| match x.as_tuple() {
        Some([tag, v]) if tag.is_atom("reply") => v.clone(),
        _ => panic!("expected a reply, got {x:?} (all: {r:?})"),
    };
    let is_badrpc = |x: &Term| matches!(x.as_tuple(), Some([tag, _]) if tag.is_atom("badrpc"));
    let err_unsupported = Term::tuple([Term::atom("error"), Term::atom("unsupported")]);
    assert_eq!(reply(&t[0]), err_unsupported, "net_kernel answers an unknown call");
    assert_eq!(reply(&t[1]), err_unsupported, "net_kernel answers an unsupported call");
    assert!(is_badrpc(&reply(&t[2])), "rex refuses a call: {:?}", t[2]);
    assert!(is_badrpc(&reply(&t[3])), "rex answers garbage: {:?}", t[3]);
    assert!(is_badrpc(&reply(&t[4])), "rex answers a bad call: {:?}", t[4]);
    assert!(is_badrpc(&t[5]), "rex answers the hidden-node form: {:?}", t[5]);
    assert!(is_badrpc(&t[6]), "rpc:call gets badrpc: {:?}", t[6]);
    assert!(matches!(t[7].as_tuple(), Some([tag, _]) if tag.is_atom("EXIT")), "erpc:call raises: {:?}", t[7]);
    assert_eq!(t[8], Term::atom("noproc"), "monitor of an unknown name fires at once");
    assert_eq!(t[9], Term::Int(2), "the BEAM node is healthy");
    // The BEAM node's own system processes are fine too.
    let ok = s
        .beam
        .eval("{is_process_alive(whereis(net_kernel)), is_process_alive(whereis(rex)), length(nodes())}")
        .await;
    assert_eq!(ok, Term::tuple([Term::atom("true"), Term::atom("true"), Term::Int(1)]));
    s.assert_still_serves().await;
}

// ---------------------------------------------------------------------
// The reasons are logged: the same attacks against the erlnode binary,
// reading its log.

/// The `erlnode` binary (its own epmd, no embedded one) with a BEAM peer
/// already connected to it.
struct BinarySetup {
    node: Erlnode,
    name: String,
    cookie: String,
    /// The node's distribution port.
    port: u16,
    beam: BeamNode,
    _epmd: Epmd,
}

impl BinarySetup {
    async fn start() -> BinarySetup {
        support::require_erlang();
        let epmd = Epmd::start().await;
        let cookie = support::unique("cookie");
        let name = format!("{}@127.0.0.1", support::unique("rust"));
        let node = Erlnode::run(&name, &cookie, epmd.port(), &["--no-embedded-epmd"]).await;
        let port = node.listen_port().await;
        let beam = BeamNode::builder().prefix("peer").cookie(&cookie).epmd_port(epmd.port()).start().await;
        assert_eq!(beam.eval(&format!("net_adm:ping('{name}')")).await, Term::atom("pong"));
        BinarySetup { node, name, cookie, port, beam, _epmd: epmd }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_binary_logs_dropped_control_messages_and_nodedown_reasons() {
    let BinarySetup { node, name, cookie, port, beam, _epmd } = BinarySetup::start().await;

    let mut h = Hostile::connect(port, &name, &cookie).await;
    let me = h.pid(1);
    let mark = node.line_count();
    let mut bytes = message(&Term::tuple([Term::Int(99), Term::atom("foo")]), None);
    bytes.extend(reg_send(&me, "erlnode_echo", Term::tuple([Term::Pid(me.clone()), Term::atom("still_up")])));
    h.write(&bytes).await;
    let (ctl, payload) = h.read_message(22).await;
    assert!(matches!(ctl.as_tuple(), Some([Term::Int(22), _, Term::Pid(to)]) if *to == me), "{ctl:?}");
    assert_eq!(payload, Some(Term::atom("still_up")), "the link stayed up after the unknown control message");
    let line = node.wait_for_line_after(mark, "dropping unknown or malformed control message", T).await.unwrap();
    assert!(line.contains(&h.name) && line.contains("unknown opcode"), "{line}");

    let mark = node.line_count();
    h.write(&frame(&[131, 99])).await;
    h.expect_closed(T).await;
    let line = node.wait_for_line_after(mark, "nodedown", T).await.unwrap();
    assert!(line.contains(&h.name) && line.contains("unknown distribution header tag 99"), "{line}");
    assert!(!node.output()[mark..].iter().any(|l| l.contains("panicked")), "{:?}", node.output());
    assert_eq!(beam.eval(&format!("net_adm:ping('{name}')")).await, Term::atom("pong"));
    assert_eq!(
        beam.eval(&format!("gen_server:call({{erlnode_echo, '{name}'}}, hi, 5000)")).await,
        Term::tuple([Term::atom("echo"), Term::atom("hi")])
    );
    assert!(beam.eval(&format!("lists:member('{name}', nodes())")).await.is_atom("true"));
}

// ---------------------------------------------------------------------
// Memory budget (issue 13, item 1): peers holding the cookie that send
// fragmented messages and never finish them cannot make the node hold
// more than its input budget.

/// The `erlnode run` default node-wide input budget (docs/security.md).
const DEFAULT_INPUT_BUDGET: u64 = 256 << 20;

/// `VmHWM` (peak resident set) and `VmRSS` of a process, in bytes.
fn rss_of(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read /proc/<pid>/status");
    let kib = |key: &str| -> u64 {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .unwrap_or_else(|| panic!("no {key} in {status}"))
            * 1024
    };
    (kib("VmHWM:"), kib("VmRSS:"))
}

/// Writes fragments of messages that never finish (64 KiB each, up to
/// `total` bytes over sequences of 32 MiB) until the node closes the link.
/// Returns whether the node closed it.
async fn push_unfinished_fragments(mut stream: TcpStream, dead: Pid, total: usize) -> bool {
    let body = vec![0x55u8; 64 * 1024];
    let mut start = encode(&Term::tuple([Term::Int(2), Term::atom(""), Term::Pid(dead)]));
    start.extend_from_slice(&body[start.len()..]);
    let per_seq = 512u64;
    let mut sent = 0usize;
    let mut seq = 1u64;
    'all: while sent < total {
        // Claims a million fragments; sends `per_seq` of them.
        let first_id = 1_000_000u64;
        if stream.write_all(&frag_first(seq, first_id, &start)).await.is_err() {
            return true;
        }
        sent += body.len();
        for i in 1..per_seq {
            if stream.write_all(&frag_cont(seq, first_id - i, &body)).await.is_err() {
                return true;
            }
            sent += body.len();
            if sent >= total {
                break 'all;
            }
        }
        seq += 1;
    }
    // Everything was written (the last of it may sit in socket buffers):
    // the node must still close the link.
    expect_closed(&mut stream, Duration::from_secs(60)).await;
    true
}

#[tokio::test(flavor = "multi_thread")]
async fn unfinished_fragments_on_1_to_12_links_stay_within_the_memory_budget() {
    let BinarySetup { node, name, cookie, port, beam, _epmd } = BinarySetup::start().await;
    let (hwm_before, _) = rss_of(node.os_pid());
    let probe = format!(
        "(fun(Rust) -> {{net_adm:ping(Rust), gen_server:call({{erlnode_echo, Rust}}, probe, 10000)}} end)('{name}')"
    );
    let probe_ok = Term::tuple([Term::atom("pong"), Term::tuple([Term::atom("echo"), Term::atom("probe")])]);
    let limit = DEFAULT_INPUT_BUDGET + (100 << 20);

    for links in [1usize, 3, 12] {
        let mut attackers = Vec::new();
        let mut names = Vec::new();
        for _ in 0..links {
            let h = Hostile::connect(port, &name, &cookie).await;
            let dead = Pid { node: Atom::new(&name), id: 0x7fff_0000, serial: 0, creation: 1 };
            names.push(h.name.clone());
            // Each link offers 200 MiB: more than a link's share.
            attackers.push(tokio::spawn(push_unfinished_fragments(h.stream, dead, 200 << 20)));
        }
        // The BEAM peer is answered throughout the attack.
        let mut probes = 0;
        while attackers.iter().any(|a| !a.is_finished()) {
            assert_eq!(beam.eval(&probe).await, probe_ok, "the BEAM peer is answered during the attack ({links} links)");
            probes += 1;
        }
        for a in attackers {
            assert!(a.await.expect("attacker task"), "the node closed the hostile link");
        }
        let (hwm, rss) = rss_of(node.os_pid());
        eprintln!(
            "{links} hostile link(s): erlnode peak RSS {} MiB (before the attacks {} MiB, now {} MiB), {probes} BEAM probes answered meanwhile",
            hwm >> 20,
            hwm_before >> 20,
            rss >> 20
        );
        assert!(hwm <= limit, "peak RSS {} MiB over the budget + 100 MiB ({} MiB) with {links} links", hwm >> 20, limit >> 20);
        for h in &names {
            let line = node
                .wait_for_line(&format!("nodedown node={h}"), T)
                .await
                .unwrap_or_else(|e| panic!("no nodedown for {h}: {e}"));
            assert!(line.contains("memory budget"), "{line}");
        }
        assert_eq!(beam.eval(&probe).await, probe_ok);
    }
    assert!(
        node.output().iter().any(|l| l.contains("closing the link: over its memory budget")),
        "the binary logs why it closed the links"
    );
    // The attacks gave their budget back: a legitimate 100 MiB message
    // (under the 128 MiB max_message) passes both ways.
    let r = beam
        .eval(&format!(
            "(fun(Rust) ->
                 Bin = binary:copy(<<\"0123456789abcdef\">>, 100 * 1024 * 1024 div 16),
                 {{echo, Back}} = gen_server:call({{erlnode_echo, Rust}}, Bin, 60000),
                 {{byte_size(Back), Back =:= Bin}}
             end)('{name}')"
        ))
        .await;
    assert_eq!(r, Term::tuple([Term::Int(100 * 1024 * 1024), Term::atom("true")]));
    assert!(!node.output().iter().any(|l| l.contains("panicked")), "{:?}", node.output());
}

/// The budget is charged from a frame's length, before its buffer exists:
/// announcing a frame over the link's share closes the link at once, and
/// links that together hold more than the node's budget are closed,
/// while the BEAM peer is served.
#[tokio::test(flavor = "multi_thread")]
async fn frames_are_charged_to_the_link_share_and_the_node_budget_before_they_arrive() {
    let mut s = setup(|b| b.link_input_share(2 << 20).input_budget(3 << 20).max_message(1 << 20)).await;
    // One length header over the share: nothing else needs to arrive.
    link_is_closed_with_reason(&mut s, &(3u32 << 20).to_be_bytes(), false, &["memory budget", "over its share of 2097152 bytes"]).await;
    // Two links each hold an unfinished 1.5 MiB frame: 3 MiB + overhead
    // is over the node's budget, so the second is closed and the first
    // keeps its link.
    let mut first = s.hostile().await;
    let mut half = (3u32 << 19).to_be_bytes().to_vec();
    half.extend_from_slice(&[131, 68, 0]);
    first.write(&half).await;
    // No event says erlnode has read the first length: watch the budget.
    let deadline = Instant::now() + T;
    while s.rust.input_held().0 < 3 << 19 {
        assert!(Instant::now() < deadline, "the first frame was never charged: {:?}", s.rust.input_held());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut second = s.hostile().await;
    second.write(&half).await;
    second.expect_closed(T).await;
    let reason = s.down_reason(&second.name).await;
    assert!(reason.contains("node-wide input budget of 3145728 bytes is exhausted"), "{reason}");
    assert!(s.rust.connected_nodes().iter().any(|n| n.as_str() == first.name), "the first link holds its share and stays");
    let (held, limit) = s.rust.input_held();
    assert_eq!(limit, 3 << 20);
    assert!(held >= 3 << 19, "the first link's frame is charged: {held}");
    drop(first);
    s.assert_still_serves().await;
}
