//! Issue "OTP matrix": placement follows the encoding of the release the
//! cluster runs. The ring hashes `term_to_binary` output, whose atoms
//! changed in OTP 26; a Rust node must compute the owners the Elixir
//! nodes (and ProcessHub) compute on their release, and a cluster that
//! mixes releases behaves as docs/otp-releases.md says.

use crate::support::{self, otp, BeamNode, Epmd};
use erlnode::examples::account::Account;
use erlnode::migration::{HandoffConfig, Migration, RingEncoding};
use erlnode::{Node, Term};
use std::sync::Arc;
use std::time::Duration;

const T: Duration = Duration::from_secs(60);
const NAMES: usize = 1_000;

async fn rust_member(cookie: &str, epmd: u16, encoding: Option<RingEncoding>) -> (Node, Migration) {
    let node = support::rust_node("place_r", cookie, epmd).await;
    let cfg = HandoffConfig { rebalance_on_join: false, ring_encoding: encoding, ..Default::default() };
    let m = Migration::start(&node, Arc::new(node.global()), cfg).unwrap();
    m.register_type::<Account>();
    (node, m)
}

/// An Elixir node running erlnode_ex on OTP `release` (None: the run's),
/// with `ring_encoding` set before the library starts.
async fn elixir_member(prefix: &str, cookie: &str, epmd: u16, release: Option<u32>, encoding: &str) -> BeamNode {
    let mut b = BeamNode::builder().prefix(prefix).cookie(cookie).epmd_port(epmd).erlnode_ex(true);
    if let Some(r) = release {
        b = b.otp(r);
    }
    let b = b.start().await;
    let r = b.eval(&format!("application:load(erlnode_ex), application:set_env(erlnode_ex, ring_encoding, {encoding}), application:ensure_all_started(erlnode_ex)")).await;
    assert_eq!(r.as_tuple().map(|t| t[0].clone()), Some(Term::atom("ok")), "erlnode_ex starts: {r:?}");
    b
}

fn names() -> Vec<String> {
    (0..NAMES).map(|i| format!("place_{i}")).collect()
}

/// Owners of [`names`] as an Elixir node computes them (its manager's
/// members of the account type, its configured encoding).
async fn elixir_owners(b: &BeamNode) -> Vec<String> {
    let t = b
        .eval_elixir(&format!(
            r#"ring = Erlnode.Migration.Ring.new(Erlnode.Migration.members("account"))
               for i <- 0..{}, do: Atom.to_string(Erlnode.Migration.Ring.owner(ring, :"place_#{{i}}"))"#,
            NAMES - 1
        ))
        .await;
    support::binaries_to_strings(&t)
}

fn rust_owners(m: &Migration) -> Vec<String> {
    names().iter().map(|n| m.owner("account", n).expect("an owner").to_string()).collect()
}

/// Waits until every node sees the same members of the account type.
async fn await_members(m: &Migration, elixir: &[&BeamNode], want: usize) {
    let deadline = tokio::time::Instant::now() + T;
    loop {
        let rust = m.members("account").len();
        let mut ex = Vec::new();
        for b in elixir {
            ex.push(b.eval_elixir(r#"length(Erlnode.Migration.members("account"))"#).await);
        }
        if rust == want && ex.iter().all(|t| *t == Term::Int(want as i64)) {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "members never converged: rust {rust}, elixir {ex:?}, want {want}");
        tokio::time::sleep(Duration::from_millis(20)).await; // bounded poll: announcements have no event to await
    }
}

fn count_diff(a: &[String], b: &[String]) -> usize {
    a.iter().zip(b).filter(|(x, y)| x != y).count()
}

/// The ring hash of random terms of every kind equals the BEAM's
/// `md5(term_to_binary(T))` on this run's release.
#[tokio::test(flavor = "multi_thread")]
async fn ring_hash_equals_the_beams_on_random_terms() {
    support::require_erlang();
    let epmd = Epmd::start().await;
    let beam = BeamNode::builder().prefix("hash").epmd_port(epmd.port()).start().await;
    beam.eval(crate::connect::GEN).await;
    let t = beam
        .eval("[begin <<_:12/binary, H:32>> = erlang:md5(term_to_binary(T)), {T, H} end || T <- [Gen(rand:uniform(4)) || _ <- lists:seq(1, 3000)]]")
        .await;
    let enc = RingEncoding::of_release(otp::release());
    let Term::List(pairs) = t else { panic!("{t:?}") };
    assert_eq!(pairs.len(), 3000);
    let mut bad = Vec::new();
    for p in &pairs {
        let [term, Term::Int(h)] = p.as_tuple().unwrap() else { panic!("{p:?}") };
        if erlnode::migration::ring::hash(term, enc) as i64 != *h {
            bad.push(term.clone());
        }
    }
    for b in bad.iter().take(12) {
        let mine = erlnode::term::encode(b);
        let theirs = beam.eval_raw(&format!("term_to_binary(binary_to_term(<<{}>>))", mine.iter().map(|x| x.to_string()).collect::<Vec<_>>().join(","))).await.unwrap();
        let Term::Binary(theirs) = erlnode::term::decode(&theirs).unwrap() else { panic!() };
        let at = mine.iter().zip(theirs.iter()).position(|(a, b)| a != b).unwrap_or(mine.len().min(theirs.len()));
        eprintln!("DIFF at {at}: mine {:?} theirs {:?}", &mine[at.saturating_sub(20)..(at + 20).min(mine.len())], &theirs[at.saturating_sub(20)..(at + 20).min(theirs.len())]);
    }
    assert!(bad.is_empty(), "{} of 3000 hashes differ", bad.len());
}

/// Two Elixir nodes of this run's release and a Rust node with the
/// default (automatic) encoding: the Rust node follows the Elixir nodes'
/// release, and all three compute the same owner for 1,000 names.
#[tokio::test(flavor = "multi_thread")]
async fn rust_and_elixir_agree_on_a_thousand_owners() {
    support::require_erlang();
    let epmd = Epmd::start().await;
    let cookie = support::unique("cookie");
    let (rust, m) = rust_member(&cookie, epmd.port(), None).await;
    let e1 = elixir_member("pl_e1", &cookie, epmd.port(), None, "auto").await;
    let e2 = elixir_member("pl_e2", &cookie, epmd.port(), None, "auto").await;
    assert!(rust.ping(e1.name()).await && rust.ping(e2.name()).await);
    await_members(&m, &[&e1, &e2], 3).await;
    let want = RingEncoding::of_release(otp::release());
    assert_eq!(m.ring_encoding(), want, "the Rust node follows the Elixir nodes' OTP {}", otp::release());
    let ours = rust_owners(&m);
    let mut spread = std::collections::BTreeMap::new();
    for o in &ours {
        *spread.entry(o.clone()).or_insert(0) += 1;
    }
    assert_eq!(spread.len(), 3, "every node owns some names: {spread:?}");
    for b in [&e1, &e2] {
        let theirs = elixir_owners(b).await;
        assert_eq!(count_diff(&ours, &theirs), 0, "owners differ from {}'s", b.name());
    }
    eprintln!("OTP {}: 1000 owners agree ({want}), spread {spread:?}", otp::release());
}

/// A cluster in the middle of an OTP upgrade: an OTP 25 Elixir node, a
/// newer one (this run's release, or 27 on the host run) and a Rust node.
/// As docs/otp-releases.md says: with the automatic setting each Elixir
/// node hashes with its own release's encoding, so they disagree (as
/// ProcessHub nodes do), both log it, and the Rust node follows the OTP
/// 25 one; with one encoding pinned on every node all three agree.
#[tokio::test(flavor = "multi_thread")]
async fn mixed_releases_disagree_unless_pinned() {
    support::require_erlang();
    let newer = match otp::release() {
        r if r >= 26 => r,
        _ => 27,
    };
    // Automatic everywhere.
    {
        let epmd = Epmd::start().await;
        let cookie = support::unique("cookie");
        let (rust, m) = rust_member(&cookie, epmd.port(), None).await;
        let old = elixir_member("mx_old", &cookie, epmd.port(), Some(25), "auto").await;
        let new = elixir_member("mx_new", &cookie, epmd.port(), Some(newer), "auto").await;
        assert!(rust.ping(old.name()).await && rust.ping(new.name()).await);
        assert_eq!(old.eval(&format!("net_adm:ping('{}')", new.name())).await, Term::atom("pong"));
        await_members(&m, &[&old, &new], 3).await;
        assert_eq!(m.ring_encoding(), RingEncoding::Otp25, "mixed: the Rust node follows the OTP 25 node");
        let ours = rust_owners(&m);
        assert_eq!(count_diff(&ours, &elixir_owners(&old).await), 0, "Rust and the OTP 25 node agree");
        let differ = count_diff(&ours, &elixir_owners(&new).await);
        assert!(differ > 0, "the OTP {newer} node hashes as OTP 25 does?");
        eprintln!("mixed 25/{newer}, automatic: the OTP {newer} node disagrees on {differ} of {NAMES} owners");
        for b in [&old, &new] {
            let warned = b.output().iter().any(|l| l.contains("owners disagree"));
            assert!(warned, "{} did not log the disagreement:\n{}", b.name(), b.output().join("\n"));
        }
    }
    // Pinned to one encoding on every node.
    for (pin, rust_pin) in [("otp26", RingEncoding::Otp26), ("otp25", RingEncoding::Otp25)] {
        let epmd = Epmd::start().await;
        let cookie = support::unique("cookie");
        let (rust, m) = rust_member(&cookie, epmd.port(), Some(rust_pin)).await;
        let old = elixir_member("mx_old", &cookie, epmd.port(), Some(25), pin).await;
        let new = elixir_member("mx_new", &cookie, epmd.port(), Some(newer), pin).await;
        assert!(rust.ping(old.name()).await && rust.ping(new.name()).await);
        await_members(&m, &[&old, &new], 3).await;
        assert_eq!(m.ring_encoding(), rust_pin);
        let ours = rust_owners(&m);
        assert_eq!(count_diff(&ours, &elixir_owners(&old).await), 0, "{pin}: OTP 25 node");
        assert_eq!(count_diff(&ours, &elixir_owners(&new).await), 0, "{pin}: OTP {newer} node");
    }
}
