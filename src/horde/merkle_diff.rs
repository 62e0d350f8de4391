//! MerkleMap's partial diff (merkle_map 0.2), the comparison DeltaCrdt's
//! sync walks 8 levels at a time, message by message.
//!
//! A continuation (`%MerkleMap.MerkleTree.Diff{keys, trees}`) carries the
//! keys found different so far and, per location still to compare, the
//! sender's subtree there cut 8 levels down with `{partial, Loc}`. The
//! receiver compares each against its own subtree at the same location
//! ([`continue_partial_diff`]): equal hashes prune, leaves give keys, cuts
//! on either side become the next round's locations. Both trees are held
//! as [`Branch`]es, MerkleMap's term shapes with the cuts.
//!
//! The order of keys and locations follows MerkleMap's (its lists are
//! built wrapped and reversed), so a reply is the term a BEAM peer would
//! send; the recorded traces (tests/traces/horde-0.10.0/) check it.
//! Everything a peer sends is checked: a malformed tree gives an error,
//! never a panic, and recursion is bounded by the 32 levels a key hash has.

use super::merkle::{bit, hash_term, loc_term, MerkleTree, Node};
use super::term_key::term_eq;
use crate::term::{Atom, Term};

/// How many levels a continuation's subtrees reach (DeltaCrdt's `8`).
pub const DEPTH: u32 = 8;
/// Locations are prefixes of a 32-bit key hash.
const MAX_LOC: usize = 32;

/// A (sub)tree as a diff carries it.
#[derive(Debug, Clone, PartialEq)]
pub enum Branch {
    Empty,
    Leaf { hash: Option<u32>, key_hash: u32, contents: Vec<(Term, Term)> },
    Inner { hash: Option<u32>, left: Box<Branch>, right: Box<Branch> },
    /// `{partial, Loc}`: cut here, compare in a later round.
    Partial(Vec<bool>),
}

/// `%MerkleMap.MerkleTree.Diff{keys, trees}`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Continuation {
    pub keys: Vec<Term>,
    pub trees: Vec<(Vec<bool>, Branch)>,
}

/// What [`continue_partial_diff`] found.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// More locations to compare: send this back.
    Continue(Continuation),
    /// Comparison finished: these keys differ.
    Done(Vec<Term>),
}

impl Branch {
    /// MerkleMap's `get_subtree/3` over a local branch found at `loc`.
    pub fn from_local(n: &Node, loc: &mut Vec<bool>, depth: u32) -> Branch {
        match n {
            Node::Empty => Branch::Empty,
            Node::Leaf { hash, key_hash, contents } => Branch::Leaf { hash: *hash, key_hash: *key_hash, contents: contents.clone() },
            Node::Inner { .. } if depth == 0 => Branch::Partial(loc.clone()),
            Node::Inner { hash, left, right } => {
                loc.push(false);
                let l = Branch::from_local(left, loc, depth - 1);
                loc.pop();
                loc.push(true);
                let r = Branch::from_local(right, loc, depth - 1);
                loc.pop();
                Branch::Inner { hash: *hash, left: Box::new(l), right: Box::new(r) }
            }
        }
    }

    pub fn to_term(&self) -> Term {
        match self {
            Branch::Empty => Term::nil(),
            Branch::Leaf { hash, key_hash, contents } => {
                Term::tuple([hash_term(*hash), Term::tuple([hash_term(Some(*key_hash)), Term::Map(contents.clone())])])
            }
            Branch::Inner { hash, left, right } => Term::tuple([hash_term(*hash), left.to_term(), right.to_term()]),
            Branch::Partial(loc) => Term::tuple([Term::atom("partial"), loc_term(loc)]),
        }
    }

    /// Reads a peer's tree; `depth` is the level of `t` (its location's
    /// length), which bounds the recursion.
    pub fn from_term(t: &Term, depth: usize) -> Result<Branch, String> {
        if depth > MAX_LOC + 1 {
            return Err("tree deeper than 32 levels".into());
        }
        match t {
            Term::List(l) if l.is_empty() => Ok(Branch::Empty),
            Term::Tuple(v) => match v.as_slice() {
                [tag, loc] if tag.is_atom("partial") => Ok(Branch::Partial(loc_from_term(loc)?)),
                [h, leaf] => {
                    let [kh, Term::Map(contents)] = leaf.as_tuple().ok_or("leaf is not a tuple")? else {
                        return Err("leaf is not {KeyHash, Map}".into());
                    };
                    let key_hash = hash_from_term(kh)?.ok_or("leaf without key hash")?;
                    Ok(Branch::Leaf { hash: hash_from_term(h)?, key_hash, contents: contents.clone() })
                }
                [h, l, r] => Ok(Branch::Inner {
                    hash: hash_from_term(h)?,
                    left: Box::new(Branch::from_term(l, depth + 1)?),
                    right: Box::new(Branch::from_term(r, depth + 1)?),
                }),
                _ => Err(format!("{}-tuple in a tree", v.len())),
            },
            _ => Err("not a tree node".into()),
        }
    }
}

fn hash_from_term(t: &Term) -> Result<Option<u32>, String> {
    match t {
        Term::List(l) if l.is_empty() => Ok(None),
        Term::Binary(b) if b.len() == 4 => Ok(Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))),
        _ => Err("hash is not a 4-byte binary".into()),
    }
}

/// A location bitstring as directions (`true`: right).
pub fn loc_from_term(t: &Term) -> Result<Vec<bool>, String> {
    let (bytes, len) = match t {
        Term::Binary(b) => (b.clone(), b.len() * 8),
        Term::BitBinary { bytes, bits } => (bytes.clone(), (bytes.len() - 1) * 8 + *bits as usize),
        _ => return Err("location is not a bitstring".into()),
    };
    if len > MAX_LOC {
        return Err(format!("location of {len} bits"));
    }
    Ok((0..len).map(|i| bytes[i / 8] & (0x80 >> (i % 8)) != 0).collect())
}

fn strukt(name: &str, fields: Vec<(&str, Term)>) -> Term {
    let mut m = vec![(Term::atom("__struct__"), Term::Atom(Atom::new(name)))];
    m.extend(fields.into_iter().map(|(k, v)| (Term::atom(k), v)));
    Term::Map(m)
}

/// A struct's field, if `t` is a map with that key.
pub(crate) fn field<'a>(t: &'a Term, name: &str) -> Option<&'a Term> {
    match t {
        Term::Map(m) => m.iter().find(|(k, _)| k.is_atom(name)).map(|(_, v)| v),
        _ => None,
    }
}

impl Continuation {
    pub fn to_term(&self) -> Term {
        let trees = self
            .trees
            .iter()
            .map(|(loc, b)| Term::tuple([loc_term(loc), strukt("Elixir.MerkleMap.MerkleTree", vec![("tree", b.to_term())])]))
            .collect::<Vec<_>>();
        strukt("Elixir.MerkleMap.MerkleTree.Diff", vec![("keys", Term::List(self.keys.clone())), ("trees", Term::List(trees))])
    }

    /// Reads a peer's continuation, refusing more than `max_items` keys
    /// plus trees (a huge diff is dropped, not walked).
    pub fn from_term(t: &Term, max_items: usize) -> Result<Continuation, String> {
        if !field(t, "__struct__").is_some_and(|s| s.is_atom("Elixir.MerkleMap.MerkleTree.Diff")) {
            return Err("not a %MerkleMap.MerkleTree.Diff{}".into());
        }
        let (Some(Term::List(keys)), Some(Term::List(trees))) = (field(t, "keys"), field(t, "trees")) else {
            return Err("keys/trees are not lists".into());
        };
        if keys.len() + trees.len() > max_items {
            return Err(format!("{} keys and {} trees: over the limit of {max_items}", keys.len(), trees.len()));
        }
        let trees = trees
            .iter()
            .map(|e| {
                let [loc, tree] = e.as_tuple().ok_or("tree entry is not a tuple")? else {
                    return Err("tree entry is not {Loc, Tree}".to_string());
                };
                let loc = loc_from_term(loc)?;
                let inner = field(tree, "tree").ok_or("not a %MerkleMap.MerkleTree{}")?;
                let b = Branch::from_term(inner, loc.len())?;
                Ok((loc, b))
            })
            .collect::<Result<Vec<_>, String>>()?;
        Ok(Continuation { keys: keys.clone(), trees })
    }
}

/// MerkleMap's `subtree/3`: the local branch at `loc`, cut `depth` down.
pub fn subtree(tree: &MerkleTree, loc: &[bool], depth: u32) -> Branch {
    Branch::from_local(tree.find(loc), &mut loc.to_vec(), depth)
}

/// `prepare_partial_diff(tree, 8)`: the first message of a sync.
pub fn prepare_partial_diff(tree: &MerkleTree) -> Continuation {
    Continuation { keys: vec![], trees: vec![(vec![], subtree(tree, &[], DEPTH))] }
}

/// `continue_partial_diff(local, partial, 8)`.
pub fn continue_partial_diff(local: &MerkleTree, partial: &Continuation) -> Result<Step, String> {
    let mut found: Vec<Item> = Vec::new();
    for (loc, remote) in &partial.trees {
        let mine = subtree(local, loc, DEPTH);
        let mut items = Vec::new();
        diff(&mine, remote, loc.len(), &mut items)?;
        items.reverse();
        found.extend(items);
    }
    let mut keys = partial.keys.clone();
    let mut trees = Vec::new();
    for it in found {
        match it {
            Item::Partial(loc) => {
                let b = subtree(local, &loc, DEPTH);
                trees.push((loc, b));
            }
            Item::Key(k) => keys.push(k),
        }
    }
    Ok(if trees.is_empty() { Step::Done(keys) } else { Step::Continue(Continuation { keys, trees }) })
}

enum Item {
    Key(Term),
    Partial(Vec<bool>),
}

/// `raw_keys/1`, flattened in order (each leaf's keys reversed, as
/// `add_tuple_wrappers` leaves them).
fn raw_keys(b: &Branch, out: &mut Vec<Item>) {
    match b {
        Branch::Empty => {}
        Branch::Inner { left, right, .. } => {
            raw_keys(left, out);
            raw_keys(right, out);
        }
        Branch::Leaf { contents, .. } => out.extend(contents.iter().rev().map(|(k, _)| Item::Key(k.clone()))),
        Branch::Partial(loc) => out.push(Item::Partial(loc.clone())),
    }
}

/// `do_diff_keys/3`, clause by clause, flattened in order.
fn diff(t1: &Branch, t2: &Branch, levels: usize, out: &mut Vec<Item>) -> Result<(), String> {
    use Branch::*;
    if levels > MAX_LOC + 1 {
        return Err("diff deeper than 32 levels".into());
    }
    match (t1, t2) {
        (Empty, t) | (t, Empty) => raw_keys(t, out),
        (Inner { hash: h1, .. }, Inner { hash: h2, .. }) if h1 == h2 => {}
        (Inner { left: l1, right: r1, .. }, Inner { left: l2, right: r2, .. }) => {
            diff(l1, l2, levels + 1, out)?;
            diff(r1, r2, levels + 1, out)?;
        }
        (_, Partial(loc)) | (Partial(loc), _) => out.push(Item::Partial(loc.clone())),
        (Leaf { hash: h1, .. }, Leaf { hash: h2, .. }) if h1 == h2 => {}
        (Leaf { contents: c1, .. }, Leaf { contents: c2, .. }) => {
            let get = |c: &[(Term, Term)], k: &Term| c.iter().find(|(k2, _)| term_eq(k, k2)).map(|(_, v)| v.clone());
            let changed = c1.iter().filter(|(k, v)| !get(c2, k).is_some_and(|v2| term_eq(v, &v2)));
            out.extend(changed.map(|(k, _)| Item::Key(k.clone())).collect::<Vec<_>>().into_iter().rev());
            let only2 = c2.iter().filter(|(k, _)| !c1.iter().any(|(k1, _)| term_eq(k, k1)));
            out.extend(only2.map(|(k, _)| Item::Key(k.clone())).collect::<Vec<_>>().into_iter().rev());
        }
        (inner @ Inner { .. }, leaf @ Leaf { .. }) => diff(leaf, inner, levels, out)?,
        (leaf @ Leaf { key_hash, .. }, Inner { left, right, .. }) => {
            if levels >= 32 {
                return Err("leaf compared below level 32".into());
            }
            if bit(*key_hash, levels as u32) {
                raw_keys(left, out);
                diff(right, leaf, levels + 1, out)?;
            } else {
                diff(left, leaf, levels + 1, out)?;
                raw_keys(right, out);
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(keys: impl IntoIterator<Item = i64>, tag: i64) -> MerkleTree {
        let mut t = MerkleTree::new();
        for k in keys {
            t.put(Term::Int(k), Term::tuple([Term::Int(k), Term::Int(tag)]));
        }
        t.update_hashes();
        t
    }

    /// Runs a whole exchange between two local trees, as two peers would.
    fn exchange(a: &MerkleTree, b: &MerkleTree) -> (Vec<Term>, usize) {
        let mut c = prepare_partial_diff(a);
        let mut rounds = 0;
        let mut sides = [b, a].into_iter().cycle();
        loop {
            rounds += 1;
            // Round trip through the wire shape each time.
            let wire = Continuation::from_term(&c.to_term(), usize::MAX).unwrap();
            assert_eq!(wire, c);
            match continue_partial_diff(sides.next().unwrap(), &c).unwrap() {
                Step::Continue(next) => c = next,
                Step::Done(keys) => return (keys, rounds),
            }
        }
    }

    fn sorted(mut v: Vec<Term>) -> Vec<i64> {
        let mut out: Vec<i64> = v.drain(..).map(|t| t.as_int().unwrap()).collect();
        out.sort();
        out.dedup();
        out
    }

    #[test]
    fn equal_trees_finish_at_once_with_no_keys() {
        let a = tree(0..500, 1);
        assert_eq!(exchange(&a, &a.clone()), (vec![], 1));
    }

    #[test]
    fn finds_exactly_the_differing_keys() {
        let a = tree(0..3000, 1);
        let mut b = tree(0..3000, 1);
        for k in [7, 1234, 2999] {
            b.put(Term::Int(k), Term::atom("changed"));
        }
        b.delete(&Term::Int(42));
        b.put(Term::Int(5000), Term::atom("new"));
        b.update_hashes();
        let (keys, rounds) = exchange(&a, &b);
        assert_eq!(sorted(keys), vec![7, 42, 1234, 2999, 5000]);
        assert!(rounds >= 2, "3000 keys need more than 8 levels");
        let (keys, _) = exchange(&a, &MerkleTree::new());
        assert_eq!(sorted(keys).len(), 3000);
    }

    #[test]
    fn malformed_trees_are_errors() {
        let bad = [
            Term::atom("x"),
            Term::tuple([Term::binary(vec![1, 2, 3]), Term::nil(), Term::nil()]),
            Term::tuple([Term::atom("partial"), Term::binary(vec![0; 5])]),
            Term::tuple([Term::nil(), Term::tuple([Term::nil(), Term::Map(vec![])])]),
        ];
        for t in bad {
            assert!(Branch::from_term(&t, 0).is_err(), "{t:?}");
        }
        // A leaf compared below level 32 is refused, not a panic.
        let deep = Branch::Leaf { hash: Some(1), key_hash: 0, contents: vec![] };
        let inner = Branch::Inner { hash: Some(2), left: Box::new(Branch::Empty), right: Box::new(Branch::Empty) };
        assert!(diff(&deep, &inner, 32, &mut vec![]).is_err());
    }
}
