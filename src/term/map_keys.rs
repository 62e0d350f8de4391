//! Duplicate-key detection for decoded maps.
//!
//! The BEAM refuses a MAP_EXT with repeated keys, and `Term::Map` promises
//! unique keys. A peer controls the keys, so large maps are checked with a
//! randomly keyed hash (no crafted collisions) over the whole key, computed
//! without recursion because keys may be nested as deep as the decoder allows.

use super::Term;
use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hash, Hasher};

/// Below this size pairwise comparison is cheaper than hashing.
const PAIRWISE_MAX: usize = 16;

pub(crate) fn has_duplicates(entries: &[(Term, Term)]) -> bool {
    if strictly_ascending(entries) {
        return false;
    }
    if entries.len() <= PAIRWISE_MAX {
        return entries
            .iter()
            .enumerate()
            .any(|(i, (k, _))| entries[..i].iter().any(|(other, _)| same_key(other, k)));
    }
    let state = RandomState::new();
    let mut hashed: Vec<(u64, usize)> =
        entries.iter().enumerate().map(|(i, (k, _))| (hash_term(&state, k), i)).collect();
    hashed.sort_unstable();
    hashed.chunk_by(|a, b| a.0 == b.0).any(|run| {
        run.iter().enumerate().any(|(i, &(_, a))| {
            run[..i].iter().any(|&(_, b)| same_key(&entries[a].0, &entries[b].0))
        })
    })
}

/// Map keys are the same when `=:=`: unlike `Term`'s `PartialEq`, `0.0`
/// and `-0.0` are different keys, as they are on OTP 27 (where
/// `#{0.0 => a, -0.0 => b}` has two keys; OTP 25 never sends both).
/// Iterative, like the decoder.
pub(crate) fn same_key(a: &Term, b: &Term) -> bool {
    let mut todo: Vec<(&Term, &Term)> = vec![(a, b)];
    while let Some(pair) = todo.pop() {
        match pair {
            (Term::Float(x), Term::Float(y)) => {
                if x.to_bits() != y.to_bits() {
                    return false;
                }
            }
            (Term::List(x), Term::List(y)) | (Term::Tuple(x), Term::Tuple(y)) => {
                if x.len() != y.len() {
                    return false;
                }
                todo.extend(x.iter().zip(y.iter()));
            }
            (Term::ImproperList(x, xt), Term::ImproperList(y, yt)) => {
                if x.len() != y.len() {
                    return false;
                }
                todo.extend(x.iter().zip(y.iter()));
                todo.push((xt, yt));
            }
            // Keys of equal maps come in the same order only when sorted;
            // compare maps (rare as keys) with `Term`'s equality after
            // checking that they hold no zero floats of either sign.
            (Term::Map(x), Term::Map(y)) => {
                if x.len() != y.len() {
                    return false;
                }
                if x.iter().all(|(k, _)| y.iter().any(|(k2, _)| same_key(k, k2))) {
                    for (k, v) in x {
                        let Some((_, v2)) = y.iter().find(|(k2, _)| same_key(k, k2)) else { return false };
                        todo.push((v, v2));
                    }
                } else {
                    return false;
                }
            }
            (x, y) => {
                if std::mem::discriminant(x) != std::mem::discriminant(y) || x != y {
                    return false;
                }
            }
        }
    }
    true
}

/// The BEAM sends maps of up to 32 keys sorted, and such maps mostly have
/// only atom keys (records, Elixir structs) or only integer keys; for those
/// one linear pass proves the keys distinct. Atoms sort by their UTF-8
/// bytes here, which is the BEAM's order for them.
fn strictly_ascending(entries: &[(Term, Term)]) -> bool {
    entries.windows(2).all(|w| match (&w[0].0, &w[1].0) {
        (Term::Atom(a), Term::Atom(b)) => a.as_str().as_bytes() < b.as_str().as_bytes(),
        (Term::Int(a), Term::Int(b)) => a < b,
        _ => false,
    })
}

/// Consistent with [`same_key`] (and with `Term`'s `PartialEq`): the
/// sign of zero is folded, so `0.0` and `-0.0` only share a hash.
fn hash_term(state: &RandomState, root: &Term) -> u64 {
    let mut h = state.build_hasher();
    let mut todo: Vec<&Term> = vec![root];
    while let Some(t) = todo.pop() {
        std::mem::discriminant(t).hash(&mut h);
        match t {
            Term::Atom(a) => a.as_str().hash(&mut h),
            Term::Int(i) => i.hash(&mut h),
            Term::Big(b) => b.hash(&mut h),
            Term::Float(f) => (if *f == 0.0 { 0.0f64 } else { *f }).to_bits().hash(&mut h),
            Term::Binary(b) => b.hash(&mut h),
            Term::BitBinary { bytes, bits } => {
                bytes.hash(&mut h);
                bits.hash(&mut h);
            }
            Term::List(items) | Term::Tuple(items) => {
                items.len().hash(&mut h);
                todo.extend(items.iter());
            }
            Term::ImproperList(items, tail) => {
                items.len().hash(&mut h);
                todo.extend(items.iter());
                todo.push(tail);
            }
            Term::Map(entries) => {
                entries.len().hash(&mut h);
                for (k, v) in entries {
                    todo.push(k);
                    todo.push(v);
                }
            }
            Term::Pid(p) => p.hash(&mut h),
            Term::Port(p) => p.hash(&mut h),
            Term::Ref(r) => r.hash(&mut h),
            Term::Fun(f) => f.hash(&mut h),
            Term::Record(r) => {
                r.module().hash(&mut h);
                r.name().hash(&mut h);
                r.is_exported().hash(&mut h);
                r.fields().len().hash(&mut h);
                for (k, v) in r.fields() {
                    k.hash(&mut h);
                    todo.push(v);
                }
            }
        }
    }
    h.finish()
}
