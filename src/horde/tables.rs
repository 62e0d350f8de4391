//! The registry's local view, what Horde keeps in its ETS tables
//! (`keys_Reg`, `pids_Reg`, `members_Reg`, `Reg`): written only by the
//! registry process, read by [`super::HordeRegistry`] without a message,
//! as `Horde.Registry.lookup/2` reads ETS.

use super::term_key::TermKey;
use crate::term::{Pid, Term};
use std::collections::{HashMap, HashSet};

/// One registration: `{Key, Member, {Pid, Value}}` in `keys_Reg`.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub key: Term,
    /// `{Reg, Node}` of the registry that took the registration.
    pub member: Term,
    pub pid: Pid,
    pub value: Term,
}

/// The keys one pid holds (`pids_Reg`). Horde keeps them as one list it
/// copies out of ETS and searches for each key it adds, which is
/// quadratic for a pid with many keys (100,000 keys of one owner took it
/// minutes); here a key is added or removed in constant time, and
/// [`PidKeys::newest_first`] gives Horde's order.
#[derive(Debug, Default, Clone)]
pub struct PidKeys {
    next: u64,
    keys: HashMap<TermKey, u64>,
}

impl PidKeys {
    /// The keys, the last added first, as `Horde.Registry.keys/2` lists them.
    pub fn newest_first(&self) -> Vec<Term> {
        let mut v: Vec<(&TermKey, &u64)> = self.keys.iter().collect();
        v.sort_by(|a, b| b.1.cmp(a.1));
        v.into_iter().map(|(k, _)| k.0.clone()).collect()
    }
}

#[derive(Debug, Default)]
pub struct Tables {
    pub keys: HashMap<TermKey, Entry>,
    pub pids: HashMap<Pid, PidKeys>,
    pub members: HashSet<TermKey>,
    pub meta: HashMap<TermKey, Term>,
}

impl Tables {
    pub fn get(&self, key: &Term) -> Option<&Entry> {
        self.keys.get(&TermKey(key.clone()))
    }

    /// `add_key_to_pids_table` then the insert into `keys_Reg`.
    pub fn insert(&mut self, e: Entry) {
        let keys = self.pids.entry(e.pid.clone()).or_default();
        let k = TermKey(e.key.clone());
        if !keys.keys.contains_key(&k) {
            keys.keys.insert(k, keys.next);
            keys.next += 1;
        }
        self.keys.insert(TermKey(e.key.clone()), e);
    }

    fn forget_pid_key(&mut self, pid: &Pid, key: &Term) {
        if let Some(keys) = self.pids.get_mut(pid) {
            keys.keys.remove(&TermKey(key.clone()));
            if keys.keys.is_empty() {
                self.pids.remove(pid);
            }
        }
    }

    /// `unregister_local/2`: whatever pid holds `key`.
    pub fn remove_key(&mut self, key: &Term) -> Option<Entry> {
        let e = self.keys.remove(&TermKey(key.clone()))?;
        self.forget_pid_key(&e.pid, key);
        Some(e)
    }

    /// `unregister_local/3`: `key` only if `pid` holds it.
    pub fn remove_key_of(&mut self, key: &Term, pid: &Pid) {
        self.forget_pid_key(pid, key);
        let k = TermKey(key.clone());
        if self.keys.get(&k).is_some_and(|e| &e.pid == pid) {
            self.keys.remove(&k);
        }
    }

    /// Keys registered by a registry no longer a member.
    pub fn keys_of_member(&self, member: &Term) -> Vec<(Term, Pid)> {
        let m = TermKey(member.clone());
        self.keys.values().filter(|e| TermKey(e.member.clone()) == m).map(|e| (e.key.clone(), e.pid.clone())).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::term::Atom;

    fn entry(key: i64, pid: &Pid) -> Entry {
        Entry { key: Term::Int(key), member: Term::atom("m"), pid: pid.clone(), value: Term::atom("nil") }
    }

    /// One pid with many keys: Horde's order (the last added first),
    /// re-adding a key keeps its place, removing one leaves the rest.
    #[test]
    fn a_pid_with_many_keys() {
        let pid = Pid { node: Atom::from("n@h"), id: 1, serial: 0, creation: 1 };
        let mut t = Tables::default();
        for k in 0..50_000 {
            t.insert(entry(k, &pid));
        }
        t.insert(entry(7, &pid));
        let keys = t.pids[&pid].newest_first();
        assert_eq!(keys.len(), 50_000);
        assert_eq!(&keys[..2], &[Term::Int(49_999), Term::Int(49_998)]);
        assert_eq!(keys.last(), Some(&Term::Int(0)));
        t.remove_key_of(&Term::Int(49_999), &pid);
        assert_eq!(t.pids[&pid].newest_first()[0], Term::Int(49_998));
        assert!(t.get(&Term::Int(49_999)).is_none());
        for k in 0..49_999 {
            t.remove_key(&Term::Int(k));
        }
        assert!(!t.pids.contains_key(&pid), "the pid's row goes with its last key");
    }
}
