//! Consistent-hash placement, bit-exact with ProcessHub's ring
//! (sile/hash_ring 0.4.2 defaults: md5, 256 virtual nodes per node,
//! 4-byte hashes) on every OTP release. Exactness matters: a mixed
//! cluster must agree on every process's owner, and a later issue makes
//! erlnode a ProcessHub hub member.
//!
//! `h(x) = md5(term_to_binary(x))` read big-endian, low 32 bits; node
//! points are `{h({Seq, Node}), Seq, Node}` for Seq in 0..256, sorted;
//! a key's owners are the first distinct nodes clockwise from the first
//! point whose hash is >= `h(key)`.
//!
//! `term_to_binary` changed in OTP 26: atoms are written as UTF-8
//! (SMALL_ATOM_UTF8_EXT) where OTP 25 wrote latin-1 ones as ATOM_EXT, so
//! every hash, and so every owner, depends on the release the cluster
//! runs: [`RingEncoding`]. docs/otp-releases.md says how erlnode picks
//! it and what happens in a cluster that mixes releases.

use crate::term::{encode_latin1_atoms, encode_otp26, Atom, Term};
use md5::{Digest, Md5};

const VNODES: i64 = 256;

/// How `term_to_binary` writes the terms a ring hashes: the default of
/// the OTP release the cluster runs (ProcessHub hashes with the default
/// of the node it runs on).
/// Ordered by release: `Otp25 < Otp26`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RingEncoding {
    /// OTP 25 and earlier: latin-1 atoms as ATOM_EXT
    /// (`term_to_binary(T, [{minor_version, 1}])` on any release).
    Otp25,
    /// OTP 26 and later: every atom as UTF-8 and every port as
    /// V4_PORT_EXT (`term_to_binary(T, [{minor_version, 2}])` on OTP 25
    /// gives the same atoms, but writes small ports as NEW_PORT_EXT).
    Otp26,
}

impl RingEncoding {
    /// The default encoding of OTP `release`.
    pub fn of_release(release: u32) -> RingEncoding {
        if release >= 26 {
            RingEncoding::Otp26
        } else {
            RingEncoding::Otp25
        }
    }

    /// The name used on the wire and in settings: `otp25` or `otp26`.
    pub fn name(self) -> &'static str {
        match self {
            RingEncoding::Otp25 => "otp25",
            RingEncoding::Otp26 => "otp26",
        }
    }

    /// Parses [`name`](Self::name).
    pub fn from_name(s: &str) -> Option<RingEncoding> {
        match s {
            "otp25" => Some(RingEncoding::Otp25),
            "otp26" => Some(RingEncoding::Otp26),
            _ => None,
        }
    }
}

impl std::fmt::Display for RingEncoding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The ring hash of `t`: equal to the BEAM's
/// `<<_:12/binary, H:32>> = erlang:md5(term_to_binary(T))` on a release
/// that encodes as `enc`.
pub fn hash(t: &Term, enc: RingEncoding) -> u32 {
    let bytes = match enc {
        RingEncoding::Otp25 => encode_latin1_atoms(t),
        RingEncoding::Otp26 => encode_otp26(t),
    };
    let d = Md5::digest(&bytes);
    u32::from_be_bytes([d[12], d[13], d[14], d[15]])
}

#[derive(Debug, Clone)]
pub struct Ring {
    points: Vec<(u32, i64, Atom)>,
    nodes: Vec<Atom>,
    encoding: RingEncoding,
}

impl Ring {
    /// The ring over `nodes` (duplicates ignored, order irrelevant), hashed
    /// as a cluster on `encoding` hashes.
    pub fn new(nodes: impl IntoIterator<Item = Atom>, encoding: RingEncoding) -> Ring {
        let mut nodes: Vec<Atom> = nodes.into_iter().collect();
        nodes.sort();
        nodes.dedup();
        let mut points = Vec::with_capacity(nodes.len() * VNODES as usize);
        for n in &nodes {
            for seq in 0..VNODES {
                let h = hash(&Term::tuple([Term::Int(seq), Term::Atom(n.clone())]), encoding);
                points.push((h, seq, n.clone()));
            }
        }
        points.sort_by(|a, b| (a.0, a.1, a.2.as_str()).cmp(&(b.0, b.1, b.2.as_str())));
        Ring { points, nodes, encoding }
    }

    pub fn nodes(&self) -> &[Atom] {
        &self.nodes
    }

    /// The encoding the ring hashes with.
    pub fn encoding(&self) -> RingEncoding {
        self.encoding
    }

    /// The first `n` distinct owners of `key`, primary first.
    pub fn owners(&self, key: &Term, n: usize) -> Vec<Atom> {
        if self.points.is_empty() {
            return vec![];
        }
        let h = hash(key, self.encoding);
        let start = self.points.partition_point(|p| p.0 < h);
        let mut out: Vec<Atom> = Vec::with_capacity(n);
        for i in 0..self.points.len() {
            let node = &self.points[(start + i) % self.points.len()].2;
            if !out.contains(node) {
                out.push(node.clone());
                if out.len() == n.min(self.nodes.len()) {
                    break;
                }
            }
        }
        out
    }

    /// The primary owner of `key`.
    pub fn owner(&self, key: &Term) -> Option<Atom> {
        self.owners(key, 1).into_iter().next()
    }
}
