//! DeltaCrdt's `AWLWWMap` (delta_crdt 0.6), the state Horde replicates:
//! its join and read as pure functions, and its BEAM term shape.
//!
//! State: a causal context `dots` (`%{NodeId => MaxCounter}`, a dot
//! `{NodeId, Ctr}` is covered when `Ctr <= dots[NodeId]`) and a value
//! `%{Key => %{{Val, Ts} => MapSet of dots}}`. `Ts` is the writer's
//! `System.monotonic_time(:nanosecond)`, `NodeId` a random integer per
//! CRDT start.
//!
//! Join of `a` and `b` over `keys` (the keys a delta touches): per key and
//! per `{Val, Ts}`, keep the dots both have, plus `a`'s dots `b`'s context
//! does not cover, plus `b`'s dots `a`'s context does not cover; drop
//! entries and keys left without dots. Keys outside `keys` are taken
//! whole, `b`'s over `a`'s. Contexts merge by maximum per node. A read
//! picks, per key, the entry with the largest `Ts` (DeltaCrdt's
//! `Enum.max_by`; equal timestamps, which two writers practically never
//! produce, resolve to the first in this model's order, not necessarily
//! the BEAM's).

use super::term_key::term_eq;
use crate::term::{Atom, Term};
use std::collections::{BTreeMap, BTreeSet};

/// `{NodeId, Counter}`.
pub type Dot = (u64, u64);

/// The entries of one key: `({Val, Ts}, dots)`.
pub type Entries = Vec<((Term, i64), BTreeSet<Dot>)>;

#[derive(Debug, Clone, PartialEq, Default)]
pub struct AwLwwMap {
    /// Compressed causal context: max counter per node.
    pub dots: BTreeMap<u64, u64>,
    pub value: Vec<(Term, Entries)>,
}

pub(crate) fn covered(ctx: &BTreeMap<u64, u64>, (n, c): &Dot) -> bool {
    ctx.get(n).is_some_and(|max| c <= max)
}

fn entries_of<'a>(v: &'a [(Term, Entries)], key: &Term) -> Option<&'a Entries> {
    v.iter().find(|(k, _)| k == key).map(|(_, e)| e)
}

impl AwLwwMap {
    pub fn new() -> AwLwwMap {
        AwLwwMap::default()
    }

    /// `join(a, b, keys)`.
    pub fn join(a: &AwLwwMap, b: &AwLwwMap, keys: &[Term]) -> AwLwwMap {
        let mut dots = a.dots.clone();
        for (&n, &c) in &b.dots {
            let e = dots.entry(n).or_insert(c);
            *e = (*e).max(c);
        }
        let mut value: Vec<(Term, Entries)> = Vec::new();
        // Keys outside `keys`: a's, then b's over them.
        for (k, e) in a.value.iter().chain(b.value.iter()) {
            if keys.contains(k) {
                continue;
            }
            match value.iter_mut().find(|(k2, _)| k2 == k) {
                Some(slot) => slot.1 = e.clone(),
                None => value.push((k.clone(), e.clone())),
            }
        }
        let empty = Entries::new();
        for key in keys {
            let ea = entries_of(&a.value, key).unwrap_or(&empty);
            let eb = entries_of(&b.value, key).unwrap_or(&empty);
            let joined = join_entries(ea, &a.dots, eb, &b.dots);
            if !joined.is_empty() {
                value.push((key.clone(), joined));
            }
        }
        AwLwwMap { dots, value }
    }

    /// `read/1`: each key's value of largest timestamp.
    pub fn read(&self) -> Vec<(Term, Term)> {
        self.value.iter().filter_map(|(k, entries)| read_entries(entries).map(|v| (k.clone(), v.clone()))).collect()
    }

    /// The state as the BEAM holds it:
    /// `%DeltaCrdt.AWLWWMap{dots: %{N => C}, value: %{K => %{{V, Ts} => %MapSet{}}}}`.
    pub fn to_term(&self) -> Term {
        self.to_term_shaped(MapSetShape::default())
    }

    /// [`to_term`](Self::to_term) with the `MapSet` shape of a given
    /// Elixir release.
    pub fn to_term_shaped(&self, shape: MapSetShape) -> Term {
        let int = |x: u64| Term::Int(x as i64);
        let dots = Term::Map(self.dots.iter().map(|(&n, &c)| (int(n), int(c))).collect());
        let value = Term::Map(self.value.iter().map(|(k, entries)| (k.clone(), entries_term_shaped(entries, shape))).collect());
        strukt("Elixir.DeltaCrdt.AWLWWMap", vec![("dots", dots), ("value", value)])
    }

    /// Reads the BEAM shape of [`to_term`](Self::to_term); `None` when
    /// `t` is not one (dots given as a set, as in some deltas, included).
    pub fn from_term(t: &Term) -> Option<AwLwwMap> {
        let Term::Map(fields) = t else { return None };
        let field = |name: &str| fields.iter().find(|(k, _)| k.is_atom(name)).map(|(_, v)| v);
        let mut dots = BTreeMap::new();
        match field("dots")? {
            Term::Map(m) if !is_map_set(m) => {
                for (n, c) in m {
                    dots.insert(uint(n)?, uint(c)?);
                }
            }
            Term::Map(m) => {
                for d in map_set_members(m)? {
                    let (n, c) = dot(d)?;
                    let e = dots.entry(n).or_insert(c);
                    *e = (*e).max(c);
                }
            }
            _ => return None,
        }
        let Term::Map(value) = field("value")? else { return None };
        let mut out = Vec::new();
        for (k, v) in value {
            let entries = entries_from_term(v)?;
            out.push((k.clone(), entries));
        }
        Some(AwLwwMap { dots, value: out })
    }
}

fn uint(t: &Term) -> Option<u64> {
    match t {
        Term::Int(i) => u64::try_from(*i).ok(),
        _ => None,
    }
}

/// `{NodeId, Counter}` as a term.
fn dot(t: &Term) -> Option<Dot> {
    match t.as_tuple()? {
        [n, c] => Some((uint(n)?, uint(c)?)),
        _ => None,
    }
}

/// One key's join: the dots both sides hold, plus `a`'s dots `b_ctx`
/// does not cover, plus `b`'s dots `a_ctx` does not cover; entries left
/// without dots go.
pub fn join_entries(ea: &Entries, a_ctx: &BTreeMap<u64, u64>, eb: &Entries, b_ctx: &BTreeMap<u64, u64>) -> Entries {
    let mut joined: Entries = Vec::new();
    let els = ea.iter().map(|(el, _)| el).chain(eb.iter().map(|(el, _)| el));
    // Elements compare as the BEAM's map keys do (map order ignored): a
    // value that went through a BEAM peer comes back with its maps sorted.
    let same = |x: &(Term, i64), y: &(Term, i64)| x.1 == y.1 && term_eq(&x.0, &y.0);
    for el in els {
        if joined.iter().any(|(e, _)| same(e, el)) {
            continue;
        }
        let none = BTreeSet::new();
        let da = ea.iter().find(|(e, _)| same(e, el)).map_or(&none, |(_, d)| d);
        let db = eb.iter().find(|(e, _)| same(e, el)).map_or(&none, |(_, d)| d);
        let mut d: BTreeSet<Dot> = da.intersection(db).copied().collect();
        d.extend(da.iter().filter(|dot| !covered(b_ctx, dot)));
        d.extend(db.iter().filter(|dot| !covered(a_ctx, dot)));
        if !d.is_empty() {
            joined.push((el.clone(), d));
        }
    }
    joined
}

/// Same entries, in any order.
pub fn entries_eq(a: &Entries, b: &Entries) -> bool {
    a.len() == b.len() && a.iter().all(|(el, d)| b.iter().any(|(e2, d2)| el.1 == e2.1 && d == d2 && term_eq(&el.0, &e2.0)))
}

/// The value of largest timestamp among a key's entries.
pub fn read_entries(entries: &Entries) -> Option<&Term> {
    let mut best: Option<&(Term, i64)> = None;
    for (el, _) in entries {
        if best.is_none_or(|b| el.1 > b.1) {
            best = Some(el);
        }
    }
    best.map(|(v, _)| v)
}

/// How the writer's Elixir spells a `MapSet`: `%MapSet{map: M, version:
/// 2}` up to Elixir 1.14 (OTP 25 hosts), `%MapSet{map: M}` in later
/// releases (1.18 on OTP 27 measured). It matters: a Merkle leaf hashes
/// the whole entry, `MapSet` included, so a peer spelling it differently
/// would see every key as different on every sync.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MapSetShape {
    #[default]
    WithVersion,
    WithoutVersion,
}

/// The `MapSet` shape used in an `%AWLWWMap{}` term (the first entry
/// that has one decides); `None` when it holds no entry.
pub fn mapset_shape_of(t: &Term) -> Option<MapSetShape> {
    let Term::Map(fields) = t else { return None };
    let Term::Map(value) = fields.iter().find(|(k, _)| k.is_atom("value"))?.1.clone() else { return None };
    let (_, Term::Map(entries)) = value.first()? else { return None };
    let (_, Term::Map(set)) = entries.first()? else { return None };
    is_map_set(set).then(|| if set.iter().any(|(k, _)| k.is_atom("version")) { MapSetShape::WithVersion } else { MapSetShape::WithoutVersion })
}

/// A key's entries as the BEAM holds them: `%{{V, Ts} => %MapSet{}}`.
pub fn entries_term(entries: &Entries) -> Term {
    entries_term_shaped(entries, MapSetShape::default())
}

/// [`entries_term`] with a given `MapSet` shape.
pub fn entries_term_shaped(entries: &Entries, shape: MapSetShape) -> Term {
    let int = |x: u64| Term::Int(x as i64);
    Term::Map(
        entries
            .iter()
            .map(|((v, ts), d)| {
                let set = d.iter().map(|&(n, c)| (Term::tuple([int(n), int(c)]), Term::nil()));
                (Term::tuple([v.clone(), Term::Int(*ts)]), map_set(set.collect(), shape))
            })
            .collect(),
    )
}

/// Reads [`entries_term`]'s shape.
pub fn entries_from_term(v: &Term) -> Option<Entries> {
    let Term::Map(v) = v else { return None };
    let mut entries = Entries::new();
    for (el, set) in v {
        let [val, Term::Int(ts)] = el.as_tuple()? else { return None };
        let Term::Map(set) = set else { return None };
        let d = map_set_members(set)?.into_iter().map(dot).collect::<Option<BTreeSet<_>>>()?;
        entries.push(((val.clone(), *ts), d));
    }
    Some(entries)
}

fn strukt(name: &str, fields: Vec<(&str, Term)>) -> Term {
    let mut m = vec![(Term::atom("__struct__"), Term::Atom(Atom::new(name)))];
    m.extend(fields.into_iter().map(|(k, v)| (Term::atom(k), v)));
    Term::Map(m)
}

/// `%MapSet{map: %{El => []}, version: 2}`.
fn map_set(members: Vec<(Term, Term)>, shape: MapSetShape) -> Term {
    match shape {
        MapSetShape::WithVersion => strukt("Elixir.MapSet", vec![("map", Term::Map(members)), ("version", Term::Int(2))]),
        MapSetShape::WithoutVersion => strukt("Elixir.MapSet", vec![("map", Term::Map(members))]),
    }
}

fn is_map_set(m: &[(Term, Term)]) -> bool {
    m.iter().any(|(k, v)| k.is_atom("__struct__") && v.is_atom("Elixir.MapSet"))
}

fn map_set_members(m: &[(Term, Term)]) -> Option<Vec<&Term>> {
    if !is_map_set(m) {
        return None;
    }
    match m.iter().find(|(k, _)| k.is_atom("map")).map(|(_, v)| v)? {
        Term::Map(members) => Some(members.iter().map(|(k, _)| k).collect()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(ctx: &[(u64, u64)], value: Vec<(Term, Entries)>) -> AwLwwMap {
        AwLwwMap { dots: ctx.iter().copied().collect(), value }
    }

    fn entry(v: &str, ts: i64, dots: &[Dot]) -> ((Term, i64), BTreeSet<Dot>) {
        ((Term::atom(v), ts), dots.iter().copied().collect())
    }

    fn key() -> Term {
        Term::atom("k")
    }

    #[test]
    fn concurrent_writes_both_survive_and_the_later_is_read() {
        let a = state(&[(1, 1)], vec![(key(), vec![entry("x", 10, &[(1, 1)])])]);
        let b = state(&[(2, 1)], vec![(key(), vec![entry("y", 20, &[(2, 1)])])]);
        let j = AwLwwMap::join(&a, &b, &[key()]);
        assert_eq!(j.value[0].1.len(), 2);
        assert_eq!(j.read(), vec![(key(), Term::atom("y"))]);
        assert_eq!(j.dots, [(1, 1), (2, 1)].into_iter().collect());
        // Join is commutative on the state read.
        assert_eq!(AwLwwMap::join(&b, &a, &[key()]).read(), j.read());
    }

    #[test]
    fn a_remove_seen_by_the_other_side_wins_over_the_old_dot() {
        // a wrote x with dot (1,1); b saw it (context covers it) and
        // removed the key: b has no entry but its context covers (1,1).
        let a = state(&[(1, 1)], vec![(key(), vec![entry("x", 10, &[(1, 1)])])]);
        let b = state(&[(1, 1)], vec![]);
        let j = AwLwwMap::join(&a, &b, &[key()]);
        assert!(j.value.is_empty());
        assert!(j.read().is_empty());
    }

    #[test]
    fn an_add_the_other_side_never_saw_wins_over_its_remove() {
        // b removed after seeing (1,1), but a has since written (1,2).
        let a = state(&[(1, 2)], vec![(key(), vec![entry("z", 30, &[(1, 2)])])]);
        let b = state(&[(1, 1)], vec![]);
        let j = AwLwwMap::join(&a, &b, &[key()]);
        assert_eq!(j.read(), vec![(key(), Term::atom("z"))]);
    }

    #[test]
    fn keys_outside_the_delta_are_taken_whole() {
        let other = Term::atom("other");
        let a = state(&[(1, 1)], vec![(other.clone(), vec![entry("a", 1, &[(1, 1)])])]);
        let b = state(&[(2, 1)], vec![(other.clone(), vec![entry("b", 2, &[(2, 1)])])]);
        let j = AwLwwMap::join(&a, &b, &[key()]);
        assert_eq!(j.read(), vec![(other, Term::atom("b"))]);
    }

    #[test]
    fn beam_shape_round_trips() {
        let a = state(&[(7, 3)], vec![(key(), vec![entry("x", -576460751303423488, &[(7, 2), (7, 3)])])]);
        let t = a.to_term();
        assert_eq!(AwLwwMap::from_term(&t), Some(a.clone()));
        // The shape a Horde diff carries.
        let Term::Map(fields) = &t else { panic!() };
        assert!(fields.iter().any(|(k, v)| k.is_atom("__struct__") && v.is_atom("Elixir.DeltaCrdt.AWLWWMap")));
        let bytes = crate::term::encode(&t);
        assert_eq!(crate::term::decode(&bytes).ok().as_ref().and_then(AwLwwMap::from_term), Some(a));
    }
}
