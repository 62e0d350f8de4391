//! Consistent-hash placement, bit-exact with ProcessHub's ring
//! (sile/hash_ring 0.4.2 defaults: md5, 256 virtual nodes per node,
//! 4-byte hashes) on OTP 25. Exactness matters: a mixed cluster must
//! agree on every process's owner, and a later issue makes erlnode a
//! ProcessHub hub member.
//!
//! `h(x) = md5(term_to_binary(x))` read big-endian, low 32 bits; node
//! points are `{h({Seq, Node}), Seq, Node}` for Seq in 0..256, sorted;
//! a key's owners are the first distinct nodes clockwise from the first
//! point whose hash is >= `h(key)`.

use crate::term::{encode_latin1_atoms, Atom, Term};
use md5::{Digest, Md5};

const VNODES: i64 = 256;

/// OTP 25's `term_to_binary` writes latin-1 atoms as ATOM_EXT; so do we
/// here, so the hash equals the BEAM's.
pub fn hash(t: &Term) -> u32 {
    let bytes = encode_latin1_atoms(t);
    let d = Md5::digest(&bytes);
    u32::from_be_bytes([d[12], d[13], d[14], d[15]])
}

#[derive(Debug, Clone)]
pub struct Ring {
    points: Vec<(u32, i64, Atom)>,
    nodes: Vec<Atom>,
}

impl Ring {
    pub fn new(nodes: impl IntoIterator<Item = Atom>) -> Ring {
        let mut nodes: Vec<Atom> = nodes.into_iter().collect();
        nodes.sort();
        nodes.dedup();
        let mut points = Vec::with_capacity(nodes.len() * VNODES as usize);
        for n in &nodes {
            for seq in 0..VNODES {
                let h = hash(&Term::tuple([Term::Int(seq), Term::Atom(n.clone())]));
                points.push((h, seq, n.clone()));
            }
        }
        points.sort_by(|a, b| (a.0, a.1, a.2.as_str()).cmp(&(b.0, b.1, b.2.as_str())));
        Ring { points, nodes }
    }

    pub fn nodes(&self) -> &[Atom] {
        &self.nodes
    }

    /// The first `n` distinct owners of `key`, primary first.
    pub fn owners(&self, key: &Term, n: usize) -> Vec<Atom> {
        if self.points.is_empty() {
            return vec![];
        }
        let h = hash(key);
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
