//! Replica deltas: instead of the whole state after every change, an
//! owner may send its replicas what changed since the state they hold
//! (docs/replicas.md, "Deltas"). A type opts in with two callbacks, the
//! same in both languages: `replica_delta(old, new)` on the owner and
//! `apply_replica_delta(held, delta)` on the replica nodes, both over
//! the state as it travels (the handover state, version wrapper
//! included), so a delta made in Rust is applied in Elixir and back.
//!
//! [`map_delta`] and [`apply_map_delta`] are a ready pair for states that
//! are maps (every serde struct, every Elixir struct or map): the
//! top-level keys whose values changed, and the keys removed. The
//! Elixir twins are `Erlnode.Replica.Delta.map_delta/2` and
//! `apply_map_delta/2`, with the same wire form
//! `{'$erlnode_map_delta', Changed, Removed}`.

use crate::term::Term;

const MAP_DELTA: &str = "$erlnode_map_delta";
use crate::migration::versioned::VSN_TAG as VSN;

/// The type's two delta callbacks, kept per type name so the owner loop
/// and the store (which only know the type by name) can call them.
#[derive(Clone, Copy)]
pub(crate) struct DeltaFns {
    make: fn(&Term, &Term) -> Option<Term>,
    apply: fn(&Term, &Term) -> Result<Term, Term>,
}

impl DeltaFns {
    pub fn new(make: fn(&Term, &Term) -> Option<Term>, apply: fn(&Term, &Term) -> Result<Term, Term>) -> DeltaFns {
        DeltaFns { make, apply }
    }

    /// The user's `replica_delta`; a panic in it sends the state whole.
    pub fn make(&self, old: &Term, new: &Term) -> Option<Term> {
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| (self.make)(old, new))).unwrap_or_else(|_| {
            tracing::error!("replica_delta panicked; the whole state goes instead");
            None
        })
    }

    /// The user's `apply_replica_delta`, run in the replica store: a
    /// panic in it must not end the store (it holds every replica of the
    /// node), so it counts as a delta that did not apply.
    pub fn apply(&self, held: &Term, delta: &Term) -> Result<Term, Term> {
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| (self.apply)(held, delta)))
            .unwrap_or_else(|_| Err(Term::atom("apply_replica_delta_panicked")))
    }
}

/// The change from `old` to `new` when both are maps (or maps in the
/// same version wrapper): `{'$erlnode_map_delta', Changed, Removed}`.
/// `None` when they are not, or when the delta would not be smaller
/// than sending `new` whole (every key changed).
pub fn map_delta(old: &Term, new: &Term) -> Option<Term> {
    let (old, new) = match (old.as_tuple(), new.as_tuple()) {
        (Some([t1, v1, o]), Some([t2, v2, n])) if t1.is_atom(VSN) && t2.is_atom(VSN) && v1 == v2 => (o, n),
        _ => (old, new),
    };
    let (Term::Map(old), Term::Map(new)) = (old, new) else { return None };
    let mut changed = Vec::new();
    for (i, (k, v)) in new.iter().enumerate() {
        // Same order on both sides is the common case (serde writes
        // fields in declaration order, the BEAM keeps small maps sorted).
        let before = match old.get(i) {
            Some((ok, ov)) if ok == k => Some(ov),
            _ => old.iter().find(|(ok, _)| ok == k).map(|(_, ov)| ov),
        };
        if before != Some(v) {
            changed.push((k.clone(), v.clone()));
        }
    }
    let removed: Vec<Term> = old.iter().filter(|(k, _)| !new.iter().any(|(nk, _)| nk == k)).map(|(k, _)| k.clone()).collect();
    if changed.len() == new.len() && !new.is_empty() {
        return None;
    }
    Some(Term::tuple([Term::atom(MAP_DELTA), Term::Map(changed), Term::List(removed)]))
}

/// Applies a [`map_delta`] to the held state (in its version wrapper if
/// it has one). An error for anything else, so the store asks the owner
/// for the whole state.
pub fn apply_map_delta(held: &Term, delta: &Term) -> Result<Term, Term> {
    let bad = || Term::tuple([Term::atom("bad_map_delta"), Term::atom("not_a_map_delta_for_a_map")]);
    let Some([tag, Term::Map(changed), Term::List(removed)]) = delta.as_tuple() else { return Err(bad()) };
    if !tag.is_atom(MAP_DELTA) {
        return Err(bad());
    }
    let patch = |m: &Term| -> Result<Term, Term> {
        let Term::Map(entries) = m else { return Err(bad()) };
        let mut out: Vec<(Term, Term)> = entries.iter().filter(|(k, _)| !removed.contains(k)).cloned().collect();
        for (k, v) in changed {
            match out.iter_mut().find(|(ok, _)| ok == k) {
                Some(slot) => slot.1 = v.clone(),
                None => out.push((k.clone(), v.clone())),
            }
        }
        Ok(Term::Map(out))
    };
    match held.as_tuple() {
        Some([t, v, inner]) if t.is_atom(VSN) => Ok(Term::tuple([t.clone(), v.clone(), patch(inner)?])),
        _ => patch(held),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(kv: &[(&str, Term)]) -> Term {
        Term::Map(kv.iter().map(|(k, v)| (Term::atom(k), v.clone())).collect())
    }

    #[test]
    fn a_map_delta_carries_what_changed_and_rebuilds_the_new_state() {
        let history = Term::binary(vec![7u8; 10_000]);
        let old = map(&[("balance", Term::Int(10)), ("history", history.clone()), ("gone", Term::Int(1))]);
        let new = map(&[("balance", Term::Int(15)), ("history", history.clone()), ("added", Term::atom("x"))]);
        let d = map_delta(&old, &new).expect("a delta");
        assert!(crate::term::encode(&d).len() < 100, "the unchanged 10 KB field stays home: {d:?}");
        let rebuilt = apply_map_delta(&old, &d).unwrap();
        let Term::Map(mut got) = rebuilt else { panic!() };
        let Term::Map(mut want) = new else { panic!() };
        got.sort_by(|a, b| format!("{a:?}").cmp(&format!("{b:?}")));
        want.sort_by(|a, b| format!("{a:?}").cmp(&format!("{b:?}")));
        assert_eq!(got, want);
    }

    #[test]
    fn versions_wrap_the_delta_and_mismatches_send_whole_states() {
        let w = |v: i64, m: Term| Term::tuple([Term::atom(VSN), Term::Int(v), m]);
        let (a, b) = (map(&[("n", Term::Int(1)), ("k", Term::Int(0))]), map(&[("n", Term::Int(2)), ("k", Term::Int(0))]));
        let d = map_delta(&w(2, a.clone()), &w(2, b.clone())).unwrap();
        assert_eq!(apply_map_delta(&w(2, a.clone()), &d).unwrap(), w(2, b.clone()));
        assert_eq!(map_delta(&w(2, a.clone()), &w(3, b.clone())), None, "another version: whole");
        assert_eq!(map_delta(&Term::Int(1), &Term::Int(2)), None, "not maps: whole");
        assert_eq!(map_delta(&a, &map(&[("n", Term::Int(5)), ("k", Term::Int(9))])), None, "every key changed: whole");
        assert!(apply_map_delta(&Term::Int(1), &d).is_err());
        assert!(apply_map_delta(&a, &Term::atom("junk")).is_err());
    }
}
