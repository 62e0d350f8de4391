//! The lock table (`global_locks` / `global_pid_ids` in global.erl).
//!
//! A resource is held under one requester id by a set of pids. The grant
//! rule is the whole of global's locking: a resource is granted when it
//! is free or already held under the *same* requester id, so the two
//! lockers of a sync (which share the id `{global, sort([L1, L2])}`) can
//! both hold the nodes their partitions have in common, while anyone else
//! is refused. Every holder is monitored by the server; its DOWN or its
//! node's loss releases it.

use super::names::Key;
use crate::term::{Pid, Reference, Term};
use std::collections::HashMap;

#[derive(Debug, Clone)]
pub(crate) struct Lock {
    pub res: Term,
    pub req: Term,
    pub holders: Vec<(Pid, Reference)>,
}

/// What `can_set_lock` says about a request.
#[derive(Debug, PartialEq)]
pub(crate) enum Grant {
    /// Free, or held under this requester id (`already` if `pid` holds it).
    Yes { already: bool },
    No,
}

/// A holder released: `whole` when it was the last one, so the resource
/// is free again.
#[derive(Debug, PartialEq)]
pub(crate) struct Released {
    pub res: Term,
    pub mref: Reference,
    pub whole: bool,
}

#[derive(Default)]
pub(crate) struct LockTable {
    locks: HashMap<Key, Lock>,
    by_ref: HashMap<Reference, Key>,
}

impl LockTable {
    pub fn get(&self, res: &Term) -> Option<&Lock> {
        self.locks.get(&Key::of(res))
    }

    pub fn is_set(&self, res: &Term) -> bool {
        self.locks.contains_key(&Key::of(res))
    }

    /// `can_set_lock/1` (plus whether `pid` already holds it).
    pub fn can_set(&self, res: &Term, req: &Term, pid: Option<&Pid>) -> Grant {
        match self.get(res) {
            None => Grant::Yes { already: false },
            Some(l) if &l.req == req => Grant::Yes { already: pid.is_some_and(|p| l.holders.iter().any(|(h, _)| h == p)) },
            Some(_) => Grant::No,
        }
    }

    /// Adds a holder; the caller has checked [`LockTable::can_set`] and
    /// monitors `pid` with `mref`.
    pub fn add_holder(&mut self, res: Term, req: Term, pid: Pid, mref: Reference) {
        let key = Key::of(&res);
        self.by_ref.insert(mref.clone(), key.clone());
        self.locks.entry(key).or_insert_with(|| Lock { res, req, holders: Vec::new() }).holders.insert(0, (pid, mref));
    }

    /// `handle_del_lock`: releases `pid`'s hold if `req` is the holder id.
    pub fn del(&mut self, res: &Term, req: &Term, pid: &Pid) -> Option<Released> {
        let key = Key::of(res);
        let lock = self.locks.get_mut(&key).filter(|l| &l.req == req)?;
        let i = lock.holders.iter().position(|(h, _)| h == pid)?;
        let (_, mref) = lock.holders.remove(i);
        self.by_ref.remove(&mref);
        let whole = lock.holders.is_empty();
        let res = lock.res.clone();
        if whole {
            self.locks.remove(&key);
        }
        Some(Released { res, mref, whole })
    }

    /// A holder's monitor fired: release what it held.
    pub fn release_ref(&mut self, mref: &Reference) -> Option<Released> {
        let key = self.by_ref.remove(mref)?;
        let lock = self.locks.get_mut(&key)?;
        lock.holders.retain(|(_, r)| r != mref);
        let whole = lock.holders.is_empty();
        let res = lock.res.clone();
        if whole {
            self.locks.remove(&key);
        }
        Some(Released { res, mref: mref.clone(), whole })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::term::Atom;

    fn pid(id: u32) -> Pid {
        Pid { node: Atom::new("n@h"), id, serial: 0, creation: 1 }
    }
    fn r(i: u32) -> Reference {
        Reference { node: Atom::new("n@h"), creation: 1, ids: [i, 0, 0].into_iter().collect() }
    }

    #[test]
    fn same_requester_shares_others_are_refused() {
        let mut t = LockTable::default();
        let res = Term::atom("global");
        let id = Term::list([Term::Pid(pid(1)), Term::Pid(pid(2))]);
        assert_eq!(t.can_set(&res, &id, Some(&pid(1))), Grant::Yes { already: false });
        t.add_holder(res.clone(), id.clone(), pid(1), r(1));
        assert_eq!(t.can_set(&res, &id, Some(&pid(1))), Grant::Yes { already: true });
        assert_eq!(t.can_set(&res, &id, Some(&pid(2))), Grant::Yes { already: false });
        assert_eq!(t.can_set(&res, &Term::Pid(pid(9)), Some(&pid(9))), Grant::No);
        t.add_holder(res.clone(), id.clone(), pid(2), r(2));
        // del_lock with another requester id does nothing
        assert_eq!(t.del(&res, &Term::Pid(pid(9)), &pid(1)), None);
        assert!(!t.del(&res, &id, &pid(1)).unwrap().whole);
        assert!(t.is_set(&res));
        // the last holder's DOWN frees it
        assert!(t.release_ref(&r(2)).unwrap().whole);
        assert!(!t.is_set(&res));
        assert_eq!(t.release_ref(&r(2)), None);
    }
}
