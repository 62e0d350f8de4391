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

#[derive(Debug, Default)]
pub struct Tables {
    pub keys: HashMap<TermKey, Entry>,
    pub pids: HashMap<Pid, Vec<Term>>,
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
        if !keys.iter().any(|k| super::term_key::term_eq(k, &e.key)) {
            keys.insert(0, e.key.clone());
        }
        self.keys.insert(TermKey(e.key.clone()), e);
    }

    fn forget_pid_key(&mut self, pid: &Pid, key: &Term) {
        if let Some(keys) = self.pids.get_mut(pid) {
            keys.retain(|k| !super::term_key::term_eq(k, key));
            if keys.is_empty() {
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
