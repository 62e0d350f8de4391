//! Test harness for interop tests: real `epmd`, real BEAM nodes driven
//! through an eval line protocol, and the `erlnode` binary as a child.
//!
//! Everything started here is a child process killed by pid when its
//! handle is dropped (also on panic). BEAM nodes additionally halt on
//! stdin EOF, so even a test binary that is SIGKILLed leaves no node
//! behind.
#![allow(dead_code, unused_imports)]

mod beam;
pub mod certs;
mod epmd;
pub(crate) mod erlnode;
mod proc;
pub mod netns;
pub mod otp;
pub mod sender;

pub use beam::{BeamNode, BeamNodeBuilder};
pub use epmd::Epmd;
pub use erlnode::Erlnode;
pub use proc::{child_pids, pid_alive, send_signal, wait_pid_gone, SIGINT, SIGKILL, SIGTERM};

use rand::Rng;
use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

/// Waits up to `within` for the `{'DOWN', r, process, Object, Reason}`
/// of monitor `r` in `mb`: `(Object, Reason)`. Panics without one.
pub async fn down(mb: &mut ::erlnode::process::Mailbox, r: &::erlnode::term::Reference, within: std::time::Duration) -> (::erlnode::Term, ::erlnode::Term) {
    use ::erlnode::Term;
    mb.recv_match(within, |m| match m.as_tuple() {
        Some([d, Term::Ref(x), p, object, reason]) if d.is_atom("DOWN") && x == r && p.is_atom("process") => Some((object.clone(), reason.clone())),
        _ => None,
    })
    .await
    .unwrap_or_else(|e| panic!("no DOWN for {r}: {e}"))
}

/// A name unique across parallel test processes and runs:
/// `<prefix>_<pid>_<counter>_<random>`. Only `[a-z0-9_]` plus whatever
/// safe characters the prefix had, so it is valid as the name part of an
/// Erlang node name and as a cookie.
pub fn unique(prefix: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let prefix: String = prefix
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::thread_rng();
    let suffix: String = (0..6)
        .map(|_| ALPHABET[rng.gen_range(0..ALPHABET.len())] as char)
        .collect();
    format!("{prefix}_{}_{n}_{suffix}", std::process::id())
}

/// An erlnode node for a test: a unique name on loopback, the test's own
/// epmd (never an embedded one, so tests stay independent).
///
/// `ERLNODE_TEST_BUSY_POLL_US=N` sets the link reader's busy poll
/// (`NodeBuilder::busy_poll`; 0 turns it off) in every such node, to run
/// a suite with another setting than the default.
pub fn rust_node_builder(prefix: &str, cookie: &str, epmd_port: u16) -> ::erlnode::NodeBuilder {
    let b = ::erlnode::Node::builder(format!("{}@127.0.0.1", unique(prefix))).cookie(cookie).epmd_port(epmd_port).embedded_epmd(false);
    match std::env::var("ERLNODE_TEST_BUSY_POLL_US").ok().filter(|v| !v.is_empty()) {
        Some(us) => b.busy_poll(std::time::Duration::from_micros(us.parse().expect("ERLNODE_TEST_BUSY_POLL_US: microseconds"))),
        None => b,
    }
}

/// [`rust_node_builder`] started with defaults.
pub async fn rust_node(prefix: &str, cookie: &str, epmd_port: u16) -> ::erlnode::Node {
    rust_node_builder(prefix, cookie, epmd_port).start().await.expect("rust node starts")
}

/// The strings of a list of UTF-8 binaries (what Elixir snippets return
/// for a list of strings); panics on anything else.
pub fn binaries_to_strings(t: &::erlnode::Term) -> Vec<String> {
    let ::erlnode::Term::List(items) = t else { panic!("expected a list of binaries: {t:?}") };
    items
        .iter()
        .map(|x| match x {
            ::erlnode::Term::Binary(b) => String::from_utf8(b.to_vec()).expect("UTF-8"),
            other => panic!("expected a binary: {other:?}"),
        })
        .collect()
}

/// A TCP port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().expect("local_addr").port()
}

const ERLANG_MISSING: &str = "Erlang/OTP not found: run `make test` (installs it) or \
     `apt-get install erlang-nox erlang-dev elixir`";

/// Panics with a clear message when `erl`, `epmd` or `elixir` is missing.
/// Interop tests never skip silently.
pub fn require_erlang() {
    static MISSING: OnceLock<Vec<&'static str>> = OnceLock::new();
    let missing = MISSING.get_or_init(|| {
        ["erl", "epmd", "elixir"]
            .into_iter()
            .filter(|t| find_in_path(t).is_none())
            .collect()
    });
    if !missing.is_empty() {
        panic!("{ERLANG_MISSING} (missing: {})", missing.join(", "));
    }
}

/// Full path of an executable found on `PATH`.
pub fn find_in_path(exe: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|d| d.join(exe)).find(|p| {
        std::fs::metadata(p)
            .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
            .unwrap_or(false)
    })
}

/// Lower-case hex of `bytes`.
pub fn hex_encode(bytes: &[u8]) -> String {
    String::from_utf8(hex_encode_bytes(bytes)).expect("hex is ASCII")
}

/// Lower-case hex of `bytes`, as bytes.
pub fn hex_encode_bytes(bytes: &[u8]) -> Vec<u8> {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = vec![0u8; bytes.len() * 2];
    for (pair, b) in out.chunks_exact_mut(2).zip(bytes) {
        pair[0] = DIGITS[(b >> 4) as usize];
        pair[1] = DIGITS[(b & 15) as usize];
    }
    out
}

/// Decodes hex (either case); `None` on odd length or a non-hex digit.
/// A table and a plain loop: this runs on 100 MB replies in debug builds.
pub fn hex_decode(s: &str) -> Option<Vec<u8>> {
    hex_decode_bytes(s.as_bytes())
}

/// [`hex_decode`] on bytes.
pub fn hex_decode_bytes(s: &[u8]) -> Option<Vec<u8>> {
    const BAD: u8 = 0xff;
    static TABLE: [u8; 256] = {
        let mut t = [BAD; 256];
        let mut i = 0;
        while i < 10 {
            t[b'0' as usize + i] = i as u8;
            i += 1;
        }
        let mut i = 0;
        while i < 6 {
            t[b'a' as usize + i] = 10 + i as u8;
            t[b'A' as usize + i] = 10 + i as u8;
            i += 1;
        }
        t
    };
    if !s.len().is_multiple_of(2) {
        return None;
    }
    let mut out = vec![0u8; s.len() / 2];
    let mut bad = 0u8;
    for (o, pair) in out.iter_mut().zip(s.chunks_exact(2)) {
        let (hi, lo) = (TABLE[pair[0] as usize], TABLE[pair[1] as usize]);
        bad |= (hi | lo) & 0xf0;
        *o = (hi << 4) | (lo & 0x0f);
    }
    (bad == 0).then_some(out)
}

/// Keeps the last `max` lines of a child's output, for error messages.
pub(crate) fn tail(lines: &[String], max: usize) -> String {
    let start = lines.len().saturating_sub(max);
    lines[start..].join("\n")
}
