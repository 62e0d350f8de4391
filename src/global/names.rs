//! The global name table: what `global_names`, `global_pid_names` and
//! `global_names_ext` are in global.erl.
//!
//! Only global_name_server writes it (it owns the monitors behind the
//! entries); the Rust API and the registrar read it directly, as BEAM
//! code reads the ETS tables, so `whereis_name` costs one lock and one
//! hash lookup and never waits for the server.

use super::messages::{ExtName, NameInfo};
use crate::term::{Pid, Reference, Term};
use std::collections::HashMap;

/// A name as a hashable key: its external encoding. erlnode's encoder
/// writes one encoding per term, and terms that are `=:=` on the BEAM
/// decode to equal `Term`s, so equal names get equal keys.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub(crate) struct Key(Vec<u8>);

impl Key {
    pub fn of(name: &Term) -> Key {
        Key(crate::term::encode(name))
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Entry {
    pub info: NameInfo,
    /// The server's monitor on the pid: its DOWN removes the name.
    pub mref: Reference,
}

#[derive(Default)]
pub(crate) struct NameTable {
    names: HashMap<Key, Entry>,
    /// Names per pid (a pid normally has at most one).
    by_pid: HashMap<Pid, Vec<Key>>,
    by_ref: HashMap<Reference, Key>,
    ext: HashMap<Key, ExtName>,
}

impl NameTable {
    pub fn get(&self, name: &Term) -> Option<&Entry> {
        self.names.get(&Key::of(name))
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.names.len()
    }

    pub fn pid_has_name(&self, pid: &Pid) -> bool {
        self.by_pid.get(pid).is_some_and(|v| !v.is_empty())
    }

    pub fn names(&self) -> Vec<Term> {
        self.names.values().map(|e| e.info.name.clone()).collect()
    }

    /// `[{Name, Pid, Method}]`, as exchange sends it.
    pub fn wire_list(&self) -> Vec<Term> {
        self.names.values().map(|e| e.info.to_term()).collect()
    }

    pub fn ext_list(&self) -> Vec<ExtName> {
        self.ext.values().cloned().collect()
    }

    /// Inserts or replaces; returns the replaced entry (whose monitor the
    /// caller drops).
    pub fn insert(&mut self, info: NameInfo, mref: Reference) -> Option<Entry> {
        let key = Key::of(&info.name);
        let old = self.remove_key(&key);
        self.by_pid.entry(info.pid.clone()).or_default().push(key.clone());
        self.by_ref.insert(mref.clone(), key.clone());
        self.names.insert(key, Entry { info, mref });
        old
    }

    pub fn set_ext(&mut self, ext: ExtName) {
        self.ext.insert(Key::of(&ext.name), ext);
    }

    /// Removes a name (and its external-name record).
    pub fn remove(&mut self, name: &Term) -> Option<Entry> {
        self.remove_key(&Key::of(name))
    }

    /// Swaps the monitor behind a name; false if `old` is no longer it.
    pub fn replace_mref(&mut self, name: &Term, old: &Reference, new: Reference) -> bool {
        let key = Key::of(name);
        let Some(e) = self.names.get_mut(&key).filter(|e| &e.mref == old) else { return false };
        e.mref = new.clone();
        self.by_ref.remove(old);
        self.by_ref.insert(new, key);
        true
    }

    /// The name whose monitor is `mref`, if it is still that entry's.
    pub fn name_of_ref(&self, mref: &Reference) -> Option<Term> {
        let key = self.by_ref.get(mref)?;
        self.names.get(key).filter(|e| &e.mref == mref).map(|e| e.info.name.clone())
    }

    fn remove_key(&mut self, key: &Key) -> Option<Entry> {
        let e = self.names.remove(key)?;
        self.by_ref.remove(&e.mref);
        if let Some(v) = self.by_pid.get_mut(&e.info.pid) {
            v.retain(|k| k != key);
            if v.is_empty() {
                self.by_pid.remove(&e.info.pid);
            }
        }
        // A replaced name loses its external record too, as in
        // global.erl's delete_global_name_keep_pid.
        self.ext.remove(key);
        Some(e)
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
    fn info(name: &str, p: u32) -> NameInfo {
        NameInfo { name: Term::atom(name), pid: pid(p), method: Term::atom("m") }
    }

    #[test]
    fn replace_and_remove_keep_indexes_consistent() {
        let mut t = NameTable::default();
        assert!(t.insert(info("a", 1), r(1)).is_none());
        assert!(t.pid_has_name(&pid(1)));
        let old = t.insert(info("a", 2), r(2)).unwrap();
        assert_eq!(old.mref, r(1));
        assert!(!t.pid_has_name(&pid(1)));
        assert_eq!(t.name_of_ref(&r(1)), None, "a stale monitor no longer names the entry");
        assert_eq!(t.name_of_ref(&r(2)), Some(Term::atom("a")));
        assert_eq!(t.get(&Term::atom("a")).unwrap().info.pid, pid(2));
        assert!(t.remove(&Term::atom("a")).is_some());
        assert_eq!(t.len(), 0);
        assert!(!t.pid_has_name(&pid(2)));
    }

    #[test]
    fn names_are_compared_as_terms() {
        let mut t = NameTable::default();
        t.insert(NameInfo { name: Term::tuple([Term::atom("x"), Term::Int(1)]), pid: pid(1), method: Term::nil() }, r(1));
        assert!(t.get(&Term::tuple([Term::atom("x"), Term::Int(1)])).is_some());
        assert!(t.get(&Term::tuple([Term::atom("x"), Term::Float(1.0)])).is_none(), "1 and 1.0 are different names");
        assert!(t.get(&Term::binary(&b"x"[..])).is_none());
    }
}
