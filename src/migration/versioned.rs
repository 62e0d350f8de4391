//! What a handed-over state carries besides the fields this node's type
//! knows: its type version (for rolling deploys) and the fields a newer
//! twin added (carried through this node and handed on, never dropped).
//! The wire form is in docs/handoff.md, "State versions and unknown
//! fields".

use crate::term::Term;

/// The tag of a versioned handover state: `{'$erlnode_vsn', Vsn, State}`.
pub(crate) const VSN_TAG: &str = "$erlnode_vsn";

/// What a Rust target does with fields of a handed-over state its type
/// does not know (a newer twin added them).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum UnknownFields {
    /// Keep them beside the state and hand them on with it at the next
    /// move, so a Rust hop between two newer nodes loses nothing.
    #[default]
    Carry,
    /// Refuse the handover: the source gets `{rejected, {unknown_fields,
    /// [Key]}}` and keeps running with its state.
    Reject,
}

/// The state as it travels: wrapped with its version unless the version
/// is 1 (the format nodes without versions send and accept).
pub(crate) fn wrap(version: u32, state: Term) -> Term {
    if version == 1 {
        state
    } else {
        Term::tuple([Term::atom(VSN_TAG), Term::Int(version as i64), state])
    }
}

/// Splits a received state into its version (1 when unwrapped) and body.
pub(crate) fn unwrap(t: Term) -> (u32, Term) {
    match t {
        Term::Tuple(mut items) if items.len() == 3 && items[0].is_atom(VSN_TAG) => {
            let state = items.pop().unwrap();
            match items[1].as_int().and_then(|v| u32::try_from(v).ok()) {
                Some(v) => (v, state),
                None => {
                    items.push(state);
                    (1, Term::Tuple(items))
                }
            }
        }
        other => (1, other),
    }
}

/// The entries of `received` (a map) whose keys `known` (the map the
/// type serializes to) lacks. Not a map: nothing to carry.
pub(crate) fn unknown_entries(received: &Term, known: &Term) -> Vec<(Term, Term)> {
    let (Term::Map(r), Term::Map(k)) = (received, known) else { return vec![] };
    r.iter().filter(|(key, _)| !k.iter().any(|(kk, _)| kk == key)).map(|(a, b)| (a.clone(), b.clone())).collect()
}

/// `state` (a map) with the carried entries put back.
pub(crate) fn with_carried(state: Term, carried: &[(Term, Term)]) -> Term {
    match state {
        Term::Map(mut entries) if !carried.is_empty() => {
            for (k, v) in carried {
                if !entries.iter().any(|(kk, _)| kk == k) {
                    entries.push((k.clone(), v.clone()));
                }
            }
            Term::Map(entries)
        }
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(kv: &[(&str, i64)]) -> Term {
        Term::Map(kv.iter().map(|(k, v)| (Term::atom(k), Term::Int(*v))).collect())
    }

    #[test]
    fn version_one_travels_unwrapped_and_others_round_trip() {
        let s = map(&[("count", 1)]);
        assert_eq!(wrap(1, s.clone()), s);
        assert_eq!(unwrap(s.clone()), (1, s.clone()));
        assert_eq!(unwrap(wrap(3, s.clone())), (3, s));
    }

    #[test]
    fn unknown_fields_are_found_and_put_back() {
        let received = map(&[("count", 1), ("note", 7)]);
        let known = map(&[("count", 1)]);
        let extra = unknown_entries(&received, &known);
        assert_eq!(extra, vec![(Term::atom("note"), Term::Int(7))]);
        assert_eq!(with_carried(map(&[("count", 2)]), &extra), map(&[("count", 2), ("note", 7)]));
        assert_eq!(with_carried(Term::Int(5), &extra), Term::Int(5), "not a map: unchanged");
    }
}
