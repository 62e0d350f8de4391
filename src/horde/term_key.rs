//! A term usable as a hash-map key with the BEAM's map-key equality.
//!
//! `Term` has no `Hash`/`Eq` (floats; maps compare in received order), but
//! the CRDT and the registry index up to hundreds of thousands of keys.
//! [`TermKey`] hashes with `phash2` (which ignores map order) and compares
//! like map keys (`=:=`, maps order-insensitive), so a key decoded from a
//! BEAM peer and the same key built in Rust land in the same slot.

use crate::term::map_keys::same_key;
use crate::term::phash2::make_hash2;
use crate::term::Term;
use std::hash::{Hash, Hasher};

#[derive(Clone, Debug)]
pub struct TermKey(pub Term);

impl PartialEq for TermKey {
    fn eq(&self, other: &TermKey) -> bool {
        same_key(&self.0, &other.0)
    }
}

impl Eq for TermKey {}

impl Hash for TermKey {
    fn hash<H: Hasher>(&self, h: &mut H) {
        make_hash2(&self.0).hash(h)
    }
}

/// Term equality as the BEAM's `=:=`, maps compared whatever their order.
pub fn term_eq(a: &Term, b: &Term) -> bool {
    same_key(a, b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn map_order_does_not_matter() {
        let a = Term::Map(vec![(Term::atom("x"), Term::Int(1)), (Term::atom("y"), Term::Int(2))]);
        let b = Term::Map(vec![(Term::atom("y"), Term::Int(2)), (Term::atom("x"), Term::Int(1))]);
        let mut m = HashMap::new();
        m.insert(TermKey(a), 1);
        assert_eq!(m.get(&TermKey(b)), Some(&1));
        assert!(!term_eq(&Term::Int(1), &Term::Float(1.0)));
    }
}
