//! Which ring encoding a peer hashes with. ProcessHub hashes child ids
//! with `term_to_binary` on each node, whose atoms changed in OTP 26, so
//! the Rust member must hash as its Elixir peers do. It asks the peer's
//! `rex` server (`rpc:call(Node, erlang, system_info, [otp_release])`,
//! an MFA every BEAM node serves; no code is shipped).

use crate::migration::ring::RingEncoding;
use crate::term::{Atom, Pid, Term};
use crate::Node;
use std::time::Duration;

/// The encoding of `peer`'s release, `None` when it does not answer.
pub(crate) async fn ring_encoding_of(node: &Node, peer: &Atom, group_leader: &Pid) -> Option<RingEncoding> {
    let req = Term::tuple([
        Term::atom("call"),
        Term::atom("erlang"),
        Term::atom("system_info"),
        Term::list([Term::atom("otp_release")]),
        Term::Pid(group_leader.clone()),
    ]);
    let reply = node.call_named("rex", peer.as_str(), req, Duration::from_secs(5)).await.ok()?;
    release_number(&reply).map(RingEncoding::of_release)
}

/// `"25"` as a charlist or a binary.
fn release_number(t: &Term) -> Option<u32> {
    let text: String = match t {
        Term::List(items) => items.iter().map(|c| c.as_int().and_then(|i| char::from_u32(i as u32))).collect::<Option<String>>()?,
        Term::Binary(b) => String::from_utf8(b.to_vec()).ok()?,
        _ => return None,
    };
    text.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn release_numbers() {
        let charlist = Term::list([Term::Int('2' as i64), Term::Int('7' as i64)]);
        assert_eq!(release_number(&charlist), Some(27));
        assert_eq!(release_number(&Term::from("25")), Some(25));
        assert_eq!(release_number(&Term::atom("badrpc")), None);
    }
}
