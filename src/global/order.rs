//! The few pieces of Erlang term order global depends on.
//!
//! Both lockers of a sync compute the shared lock id
//! `{global, lists:sort([MyLocker, HisLocker])}` independently; if erlnode
//! sorted two pids differently from the BEAM the ids would differ, each
//! side would refuse the other's lock, and the sync would retry forever.
//! The pid order below was measured on OTP 25.2.3: serial, then number,
//! then node name, then creation.

use crate::term::{Atom, Pid, Term};
use num_bigint::BigInt;
use std::cmp::Ordering;

pub(crate) fn pid_cmp(a: &Pid, b: &Pid) -> Ordering {
    a.serial
        .cmp(&b.serial)
        .then(a.id.cmp(&b.id))
        .then_with(|| a.node.as_str().cmp(b.node.as_str()))
        .then(a.creation.cmp(&b.creation))
}

/// The list `lists:sort([A, B])` of two pids.
pub(crate) fn sorted_pair(a: &Pid, b: &Pid) -> Term {
    let (x, y) = if pid_cmp(a, b) == Ordering::Greater { (b, a) } else { (a, b) };
    Term::list([Term::Pid(x.clone()), Term::Pid(y.clone())])
}

/// `lists:max/1` of node names (atoms compare by their text).
pub(crate) fn the_boss(nodes: &[Atom]) -> Option<Atom> {
    nodes.iter().max_by(|a, b| a.as_str().cmp(b.as_str())).cloned()
}

/// Compares two integer terms (`Int` or `Big`); `None` if either is not
/// an integer.
pub(crate) fn int_cmp(a: &Term, b: &Term) -> Option<Ordering> {
    let big = |t: &Term| match t {
        Term::Int(i) => Some(BigInt::from(*i)),
        Term::Big(b) => Some(b.clone()),
        _ => None,
    };
    match (a, b) {
        (Term::Int(x), Term::Int(y)) => Some(x.cmp(y)),
        _ => Some(big(a)?.cmp(&big(b)?)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(node: &str, id: u32, serial: u32, creation: u32) -> Pid {
        Pid { node: Atom::new(node), id, serial, creation }
    }

    #[test]
    fn pid_order_matches_the_beam() {
        // Each pair measured with `<` on OTP 25.2.3.
        assert_eq!(pid_cmp(&p("a@h", 100, 0, 1), &p("b@h", 50, 0, 1)), Ordering::Greater);
        assert_eq!(pid_cmp(&p("a@h", 50, 0, 1), &p("b@h", 100, 0, 1)), Ordering::Less);
        assert_eq!(pid_cmp(&p("a@h", 50, 1, 1), &p("b@h", 50, 0, 1)), Ordering::Greater);
        assert_eq!(pid_cmp(&p("a@h", 100, 0, 1), &p("a@h", 1, 1, 1)), Ordering::Less);
        assert_eq!(pid_cmp(&p("a@h", 50, 0, 1), &p("a@h", 50, 0, 2)), Ordering::Less);
        assert_eq!(pid_cmp(&p("a", 5, 0, 7), &p("b", 5, 0, 1)), Ordering::Less);
        let pair = sorted_pair(&p("z@h", 70, 0, 1), &p("a@h", 80, 0, 1));
        assert_eq!(pair, Term::list([Term::Pid(p("z@h", 70, 0, 1)), Term::Pid(p("a@h", 80, 0, 1))]));
    }

    #[test]
    fn integers_of_any_size_compare() {
        assert_eq!(int_cmp(&Term::Int(3), &Term::Int(4)), Some(Ordering::Less));
        let big = Term::Big(BigInt::from(i64::MAX) * 4);
        assert_eq!(int_cmp(&big, &Term::Int(4)), Some(Ordering::Greater));
        assert_eq!(int_cmp(&Term::atom("x"), &Term::Int(4)), None);
        assert_eq!(the_boss(&[Atom::new("b@h"), Atom::new("c@h"), Atom::new("a@h")]), Some(Atom::new("c@h")));
    }
}
