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
            .any(|(i, (k, _))| entries[..i].iter().any(|(other, _)| other == k));
    }
    let state = RandomState::new();
    let mut hashed: Vec<(u64, usize)> =
        entries.iter().enumerate().map(|(i, (k, _))| (hash_term(&state, k), i)).collect();
    hashed.sort_unstable();
    hashed.chunk_by(|a, b| a.0 == b.0).any(|run| {
        run.iter().enumerate().any(|(i, &(_, a))| {
            run[..i].iter().any(|&(_, b)| entries[a].0 == entries[b].0)
        })
    })
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

/// Consistent with `Term`'s `PartialEq`: `0.0 == -0.0`, so floats are
/// hashed after folding the sign of zero.
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
