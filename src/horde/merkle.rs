//! MerkleMap's tree (merkle_map 0.2, what DeltaCrdt diffs), bit-exact.
//!
//! A binary trie over the 32-bit key hash `phash2(Key, 2^32)`, branching
//! on its bits, most significant first. Shapes, as the BEAM holds them:
//!
//! - `[]`: an empty branch;
//! - `{Hash, Left, Right}`: an inner node;
//! - `{Hash, {<<KeyHash:32>>, #{Key => Value}}}`: a leaf, all keys whose
//!   hash is `KeyHash`;
//! - `{partial, Location}`: where a subtree sent in a diff was cut
//!   (`Location` is the bitstring of the branch directions taken).
//!
//! A leaf sits as high as its key hash allows: inserting next to a leaf
//! of another key hash pushes both down until their bits differ; a delete
//! that leaves an inner node with one leaf and one empty side replaces
//! the node by the leaf, all the way up. So the shape depends only on the
//! set of key hashes, not on the order of puts and deletes.
//!
//! `Hash` is `<<phash2(X, 2^32):32>>`, where `X` is the leaf's contents
//! map for a leaf and `{HashLeft, HashRight}` for an inner node, an empty
//! side hashing as `[]`. Hashes are computed lazily
//! ([`MerkleTree::update_hashes`], MerkleMap's `update_hashes/1`).
//!
//! The trie is at most 33 levels deep, so the recursion here is bounded.

use crate::term::phash2::make_hash2;
use crate::term::Term;
use bytes::Bytes;

const LEVELS: u32 = 32;

/// A branch of the tree.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum Node {
    #[default]
    Empty,
    /// `hash` is `None` until [`MerkleTree::update_hashes`].
    Leaf { hash: Option<u32>, key_hash: u32, contents: Vec<(Term, Term)> },
    Inner { hash: Option<u32>, left: Box<Node>, right: Box<Node> },
}

/// MerkleMap's `MerkleTree`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct MerkleTree {
    root: Node,
}

/// The key hash MerkleMap files a key under: `phash2(Key, 2^32)`.
pub fn key_hash(key: &Term) -> u32 {
    make_hash2(key)
}

/// Bit `depth` (0: most significant) of a key hash.
pub(crate) fn bit(h: u32, depth: u32) -> bool {
    (h >> (LEVELS - 1 - depth)) & 1 == 1
}

pub(crate) fn hash_term(h: Option<u32>) -> Term {
    match h {
        Some(h) => Term::Binary(Bytes::copy_from_slice(&h.to_be_bytes())),
        None => Term::nil(),
    }
}

impl MerkleTree {
    pub fn new() -> MerkleTree {
        MerkleTree::default()
    }

    pub fn root(&self) -> &Node {
        &self.root
    }

    /// `put/3`: sets `key` to `value`.
    pub fn put(&mut self, key: Term, value: Term) {
        let kh = key_hash(&key);
        put(&mut self.root, 0, kh, key, value);
    }

    /// `delete/2`.
    pub fn delete(&mut self, key: &Term) {
        let kh = key_hash(key);
        delete(&mut self.root, 0, kh, key);
    }

    /// The value of `key`.
    pub fn get(&self, key: &Term) -> Option<&Term> {
        let kh = key_hash(key);
        let mut n = &self.root;
        let mut depth = 0;
        loop {
            match n {
                Node::Empty => return None,
                Node::Leaf { key_hash, contents, .. } => {
                    return (*key_hash == kh).then(|| contents.iter().find(|(k, _)| k == key).map(|(_, v)| v)).flatten();
                }
                Node::Inner { left, right, .. } => {
                    n = if bit(kh, depth) { right } else { left };
                    depth += 1;
                }
            }
        }
    }

    /// MerkleMap's `find_subtree/2`: the branch at `location`, or the leaf
    /// or empty branch met on the way there.
    pub fn find(&self, location: &[bool]) -> &Node {
        let mut n = &self.root;
        for &right in location {
            match n {
                Node::Inner { left, right: r, .. } => n = if right { r } else { left },
                _ => break,
            }
        }
        n
    }

    /// MerkleMap's `update_hashes/1`: fills in every missing hash.
    pub fn update_hashes(&mut self) {
        update(&mut self.root);
    }

    /// The root hash (`None`: empty tree, or hashes not updated).
    pub fn root_hash(&self) -> Option<u32> {
        match &self.root {
            Node::Empty => None,
            Node::Leaf { hash, .. } | Node::Inner { hash, .. } => *hash,
        }
    }

    /// The tree as the BEAM term MerkleMap holds (hashes not computed are
    /// `[]`, as in MerkleMap).
    pub fn to_term(&self) -> Term {
        to_term(&self.root, &mut Vec::new(), u32::MAX)
    }

    /// MerkleMap's `subtree(tree, Location, Depth)`: the branch at
    /// `location` (directions, `true` = right), cut `depth` levels below
    /// it with `{partial, Loc}`; what a `Diff` continuation carries.
    pub fn subtree_term(&self, location: &[bool], depth: u32) -> Term {
        let mut n = &self.root;
        for &right in location {
            match n {
                Node::Inner { left, right: r, .. } => n = if right { r } else { left },
                // A leaf or an empty branch is returned whole.
                _ => break,
            }
        }
        let mut loc = location.to_vec();
        to_term(n, &mut loc, depth)
    }
}

fn put(n: &mut Node, depth: u32, kh: u32, key: Term, value: Term) {
    match n {
        Node::Empty => *n = Node::Leaf { hash: None, key_hash: kh, contents: vec![(key, value)] },
        Node::Inner { hash, left, right } => {
            *hash = None;
            let side = if bit(kh, depth) { right } else { left };
            put(side, depth + 1, kh, key, value);
        }
        Node::Leaf { hash, key_hash, contents } if *key_hash == kh => {
            *hash = None;
            match contents.iter_mut().find(|(k, _)| *k == key) {
                Some(slot) => slot.1 = value,
                None => contents.push((key, value)),
            }
        }
        Node::Leaf { key_hash, .. } => {
            // Push the leaf one level down, on its side, and retry.
            let found_right = bit(*key_hash, depth);
            let found = std::mem::take(n);
            let (left, right) = if found_right { (Node::Empty, found) } else { (found, Node::Empty) };
            *n = Node::Inner { hash: None, left: Box::new(left), right: Box::new(right) };
            put(n, depth, kh, key, value);
        }
    }
}

fn delete(n: &mut Node, depth: u32, kh: u32, key: &Term) {
    match n {
        Node::Empty => {}
        Node::Leaf { hash, key_hash, contents } => {
            if *key_hash != kh {
                return;
            }
            let before = contents.len();
            contents.retain(|(k, _)| k != key);
            if contents.is_empty() {
                *n = Node::Empty;
            } else if contents.len() != before {
                *hash = None;
            }
        }
        Node::Inner { hash, left, right } => {
            *hash = None;
            let side = if bit(kh, depth) { &mut **right } else { &mut **left };
            delete(side, depth + 1, kh, key);
            match (&**left, &**right) {
                (Node::Empty, Node::Empty) => *n = Node::Empty,
                (Node::Empty, Node::Leaf { .. }) => *n = std::mem::take(&mut **right),
                (Node::Leaf { .. }, Node::Empty) => *n = std::mem::take(&mut **left),
                _ => {}
            }
        }
    }
}

/// Hash of a branch as its parent sees it (`[]` when empty).
fn update(n: &mut Node) -> Option<u32> {
    match n {
        Node::Empty => None,
        Node::Leaf { hash, contents, .. } => {
            if hash.is_none() {
                *hash = Some(make_hash2(&Term::Map(contents.clone())));
            }
            *hash
        }
        Node::Inner { hash, left, right } => {
            if hash.is_none() {
                let (l, r) = (update(left), update(right));
                *hash = Some(make_hash2(&Term::tuple([hash_term(l), hash_term(r)])));
            }
            *hash
        }
    }
}

pub(crate) fn loc_term(loc: &[bool]) -> Term {
    let mut bytes = vec![0u8; loc.len().div_ceil(8)];
    for (i, &b) in loc.iter().enumerate() {
        if b {
            bytes[i / 8] |= 0x80 >> (i % 8);
        }
    }
    match (loc.len() % 8) as u8 {
        0 => Term::Binary(bytes.into()),
        bits => Term::BitBinary { bytes: bytes.into(), bits },
    }
}

fn to_term(n: &Node, loc: &mut Vec<bool>, depth: u32) -> Term {
    match n {
        Node::Empty => Term::nil(),
        Node::Leaf { hash, key_hash, contents } => Term::tuple([
            hash_term(*hash),
            Term::tuple([hash_term(Some(*key_hash)), Term::Map(contents.clone())]),
        ]),
        Node::Inner { .. } if depth == 0 => Term::tuple([Term::atom("partial"), loc_term(loc)]),
        Node::Inner { hash, left, right } => {
            loc.push(false);
            let l = to_term(left, loc, depth.saturating_sub(1));
            loc.pop();
            loc.push(true);
            let r = to_term(right, loc, depth.saturating_sub(1));
            loc.pop();
            Term::tuple([hash_term(*hash), l, r])
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn k(i: i64) -> Term {
        Term::tuple([Term::atom("key"), Term::Int(i)])
    }

    fn depth_of_leaves(n: &Node, d: u32, out: &mut Vec<(u32, u32)>) {
        match n {
            Node::Empty => {}
            Node::Leaf { key_hash, .. } => out.push((*key_hash, d)),
            Node::Inner { left, right, .. } => {
                depth_of_leaves(left, d + 1, out);
                depth_of_leaves(right, d + 1, out);
            }
        }
    }

    #[test]
    fn shape_depends_only_on_the_keys() {
        let mut a = MerkleTree::new();
        for i in 0..200 {
            a.put(k(i), Term::Int(i));
        }
        let mut b = MerkleTree::new();
        for i in (0..300).rev() {
            b.put(k(i), Term::Int(i));
        }
        for i in 200..300 {
            b.delete(&k(i));
        }
        a.update_hashes();
        b.update_hashes();
        assert_eq!(a.to_term(), b.to_term());
        assert_eq!(a.root_hash(), b.root_hash());
        assert_eq!(b.get(&k(7)), Some(&Term::Int(7)));
        assert_eq!(b.get(&k(250)), None);
    }

    #[test]
    fn leaves_sit_just_below_their_longest_shared_prefix() {
        let mut t = MerkleTree::new();
        let keys: Vec<u32> = (0..64).map(|i| key_hash(&k(i))).collect();
        for i in 0..64 {
            t.put(k(i), Term::Int(i));
        }
        let mut leaves = vec![];
        depth_of_leaves(&t.root, 0, &mut leaves);
        for (h, d) in leaves {
            let shared = keys.iter().filter(|&&o| o != h).map(|o| (o ^ h).leading_zeros()).max().unwrap();
            assert_eq!(d, shared + 1, "leaf {h:#x}");
        }
    }

    #[test]
    fn hashes_follow_merkle_map() {
        let mut t = MerkleTree::new();
        t.put(Term::atom("a"), Term::Int(1));
        t.update_hashes();
        // A lone leaf: the hash of its contents map.
        let contents = Term::Map(vec![(Term::atom("a"), Term::Int(1))]);
        assert_eq!(t.root_hash(), Some(make_hash2(&contents)));
        t.put(Term::atom("b"), Term::Int(2));
        t.update_hashes();
        let Node::Inner { hash, .. } = t.root() else { panic!("two keys: an inner root") };
        let expected = match t.to_term() {
            Term::Tuple(v) => {
                let side = |s: &Term| match s {
                    Term::Tuple(x) => x[0].clone(),
                    _ => Term::nil(),
                };
                make_hash2(&Term::tuple([side(&v[1]), side(&v[2])]))
            }
            other => panic!("{other:?}"),
        };
        assert_eq!(*hash, Some(expected));
        // Deleting brings the single leaf back to the root, same hash.
        t.delete(&Term::atom("b"));
        t.update_hashes();
        assert_eq!(t.root_hash(), Some(make_hash2(&contents)));
    }

    #[test]
    fn subtree_is_cut_with_partial_locations() {
        let mut t = MerkleTree::new();
        for i in 0..100 {
            t.put(k(i), Term::Int(i));
        }
        t.update_hashes();
        let cut = t.subtree_term(&[], 1);
        let Term::Tuple(v) = cut else { panic!() };
        assert_eq!(v[1], Term::tuple([Term::atom("partial"), Term::BitBinary { bytes: vec![0u8].into(), bits: 1 }]));
        assert_eq!(v[2], Term::tuple([Term::atom("partial"), Term::BitBinary { bytes: vec![0x80u8].into(), bits: 1 }]));
        // Depth large enough: the whole tree.
        assert_eq!(t.subtree_term(&[], 40), t.to_term());
    }
}
