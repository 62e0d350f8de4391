//! libring's `HashRing` and Horde's `UniformDistribution`, bit-exact.
//!
//! libring 1.7 (`HashRing`): a node gets `weight` points (default 128),
//! point `i` (1-based) at `phash2({Node, i}, 2^32 - 1)`, kept in a
//! `:gb_trees`; a point already taken stays with the node inserted first
//! (`gb_trees:insert` raises `key_exists`, which `add_node` ignores). A
//! node already on the ring is not added again. A key's owner is the node
//! of the first point `>= phash2(Key, 2^32 - 1)`, else (past the last
//! point) of the smallest point. An atom key is hashed as
//! `term_to_binary(Key)` ("phash does not distribute atoms evenly"), so
//! its owner depends on the release's atom encoding.
//!
//! Horde (`Horde.UniformDistribution.choose_node/2`): the key is
//! `identifier = phash2(Map.drop(child_spec, [:id]))` (phash2/1, 27
//! bits); the ring holds the names (`{Sup, node}`) of the members whose
//! status is `:alive`, added in the order of Horde's members map.

use crate::migration::ring::RingEncoding;
use crate::term::phash2::{make_hash2, phash2, reduce};
use crate::term::{encode_latin1_atoms, encode_otp26, Term};

/// libring's `@hash_range`: `trunc(:math.pow(2, 32) - 1)`.
pub const HASH_RANGE: u64 = (1 << 32) - 1;

/// libring's default weight: points per node.
pub const DEFAULT_WEIGHT: u32 = 128;

/// libring's `HashRing`: nodes are arbitrary terms.
#[derive(Debug, Clone, Default)]
pub struct HashRing {
    /// Points sorted by hash, one node index each.
    points: Vec<(u32, usize)>,
    /// Nodes in insertion order.
    nodes: Vec<Term>,
}

impl HashRing {
    pub fn new() -> HashRing {
        HashRing::default()
    }

    /// The ring over `nodes`, inserted in order with the default weight
    /// (`HashRing.add_nodes(HashRing.new(), nodes)`).
    pub fn with_nodes(nodes: impl IntoIterator<Item = Term>) -> HashRing {
        let mut r = HashRing::new();
        for n in nodes {
            r.add_node(n, DEFAULT_WEIGHT);
        }
        r
    }

    /// `HashRing.add_node(ring, node, weight)`.
    pub fn add_node(&mut self, node: Term, weight: u32) {
        if self.nodes.contains(&node) {
            return;
        }
        let idx = self.nodes.len();
        let mut fresh = Vec::with_capacity(weight as usize);
        for i in 1..=weight {
            let p = Term::tuple([node.clone(), Term::Int(i.into())]);
            fresh.push((reduce(make_hash2(&p), HASH_RANGE), idx));
        }
        self.nodes.push(node);
        // Points already on the ring keep their owner; within one node the
        // first `i` wins (later duplicates are the same node anyway).
        fresh.sort_by_key(|&(h, _)| h);
        fresh.dedup_by_key(|&mut (h, _)| h);
        let mut merged = Vec::with_capacity(self.points.len() + fresh.len());
        let (mut a, mut b) = (self.points.iter().peekable(), fresh.into_iter().peekable());
        loop {
            match (a.peek(), b.peek()) {
                (Some(&&x), Some(&y)) if x.0 < y.0 => {
                    merged.push(x);
                    a.next();
                }
                (Some(&&x), Some(&y)) if x.0 == y.0 => {
                    merged.push(x);
                    a.next();
                    b.next();
                }
                (_, Some(&y)) => {
                    merged.push(y);
                    b.next();
                }
                (Some(&&x), None) => {
                    merged.push(x);
                    a.next();
                }
                (None, None) => break,
            }
        }
        self.points = merged;
    }

    /// `HashRing.remove_node/2`.
    pub fn remove_node(&mut self, node: &Term) {
        let Some(idx) = self.nodes.iter().position(|n| n == node) else { return };
        self.nodes.remove(idx);
        self.points.retain(|&(_, i)| i != idx);
        for p in &mut self.points {
            if p.1 > idx {
                p.1 -= 1;
            }
        }
    }

    /// Nodes in insertion order (libring's `nodes/1` lists them newest
    /// first).
    pub fn nodes(&self) -> &[Term] {
        &self.nodes
    }

    /// Number of points (fewer than nodes × weight after collisions).
    pub fn points(&self) -> usize {
        self.points.len()
    }

    /// The owner of a key whose ring hash (`phash2(Key, 2^32 - 1)`) is
    /// `hash`; `None` on an empty ring.
    pub fn owner_of_hash(&self, hash: u32) -> Option<&Term> {
        let at = self.points.partition_point(|&(h, _)| h < hash);
        let (_, idx) = self.points.get(at).or_else(|| self.points.first())?;
        Some(&self.nodes[*idx])
    }

    /// `HashRing.key_to_node(ring, key)` on a cluster whose
    /// `term_to_binary` writes atoms as `enc` (only atom keys depend on
    /// it); `None` on an empty ring.
    pub fn key_to_node(&self, key: &Term, enc: RingEncoding) -> Option<&Term> {
        self.owner_of_hash(key_hash(key, enc))
    }
}

/// libring's hash of a key: `phash2(Key, 2^32 - 1)`, atoms first turned
/// into `term_to_binary(Key)`.
pub fn key_hash(key: &Term, enc: RingEncoding) -> u32 {
    let h = match key {
        Term::Atom(_) => {
            let bytes = match enc {
                RingEncoding::Otp25 => encode_latin1_atoms(key),
                RingEncoding::Otp26 => encode_otp26(key),
            };
            make_hash2(&Term::binary(bytes))
        }
        _ => make_hash2(key),
    };
    reduce(h, HASH_RANGE)
}

/// Horde's child identifier: `phash2(Map.drop(child_spec, [:id]))`.
/// `child_spec` is the spec as a map; a non-map is hashed as is.
pub fn child_identifier(child_spec: &Term) -> u32 {
    match child_spec {
        Term::Map(m) => {
            let kept: Vec<(Term, Term)> = m.iter().filter(|(k, _)| !k.is_atom("id")).cloned().collect();
            phash2(&Term::Map(kept))
        }
        t => phash2(t),
    }
}

/// `Horde.UniformDistribution.choose_node/2`: the member (its name,
/// `{Sup, node}`) that runs `child_spec`, among the `:alive` members
/// `alive`, given in the order of Horde's members map; `None` when there
/// is none (Horde answers `{:error, :no_alive_nodes}`).
pub fn choose_member<'a>(child_spec: &Term, alive: &'a [Term]) -> Option<&'a Term> {
    let ring = HashRing::with_nodes(alive.iter().cloned());
    let id = Term::Int(child_identifier(child_spec).into());
    let owner = ring.owner_of_hash(key_hash(&id, RingEncoding::Otp26))?;
    alive.iter().find(|m| *m == owner)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(n: &str) -> Term {
        Term::tuple([Term::atom("Elixir.Sup"), Term::atom(n)])
    }

    #[test]
    fn every_node_gets_its_points() {
        let r = HashRing::with_nodes([member("a@h"), member("b@h")]);
        assert_eq!(r.points(), 256);
        assert_eq!(r.nodes().len(), 2);
    }

    #[test]
    fn adding_a_node_twice_changes_nothing() {
        let mut r = HashRing::with_nodes([member("a@h")]);
        r.add_node(member("a@h"), 128);
        assert_eq!(r.points(), 128);
    }

    #[test]
    fn wraps_past_the_last_point() {
        let r = HashRing::with_nodes([member("a@h"), member("b@h")]);
        let first = r.points[0];
        assert_eq!(r.owner_of_hash(u32::MAX), Some(&r.nodes[first.1]));
        assert_eq!(r.owner_of_hash(0), Some(&r.nodes[first.1]));
    }

    #[test]
    fn remove_node_restores_the_smaller_ring() {
        let mut r = HashRing::with_nodes([member("a@h"), member("b@h"), member("c@h")]);
        r.remove_node(&member("b@h"));
        let fresh = HashRing::with_nodes([member("a@h"), member("c@h")]);
        for h in (0..u32::MAX).step_by(7_777_777) {
            assert_eq!(r.owner_of_hash(h), fresh.owner_of_hash(h));
        }
    }

    #[test]
    fn empty_ring_has_no_owner() {
        assert_eq!(HashRing::new().owner_of_hash(5), None);
        assert_eq!(choose_member(&Term::Map(vec![]), &[]), None);
    }
}
