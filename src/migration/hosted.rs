//! Which migratable processes run on this node, and which nodes host
//! which types: the inputs to placement (join, leave, rebalance).

use super::ring::Ring;
use crate::term::{Atom, Pid};
use std::collections::{BTreeSet, HashMap};
use std::sync::{Mutex, RwLock};

/// Processes hosted here: name -> (type, pid). A process adds itself when
/// it starts serving and removes itself when it stops (or moves away).
#[derive(Default)]
pub(crate) struct Hosted {
    map: Mutex<HashMap<Atom, (String, Pid)>>,
}

impl Hosted {
    pub fn insert(&self, name: Atom, type_name: &str, pid: Pid) {
        self.map.lock().unwrap().insert(name, (type_name.to_string(), pid));
    }
    /// Removes `name` only if it still maps to `pid` (a newer process
    /// under the same name may have arrived meanwhile).
    pub fn remove(&self, name: &Atom, pid: &Pid) {
        let mut m = self.map.lock().unwrap();
        if m.get(name).map(|(_, p)| p == pid).unwrap_or(false) {
            m.remove(name);
        }
    }
    pub fn snapshot(&self) -> Vec<(Atom, String, Pid)> {
        let mut v: Vec<_> = self.map.lock().unwrap().iter().map(|(n, (t, p))| (n.clone(), t.clone(), p.clone())).collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }
    pub fn len(&self) -> usize {
        self.map.lock().unwrap().len()
    }
}

/// type -> nodes that can host it (this node included when it registers
/// the type), learnt from the managers' `members` announcements.
#[derive(Default)]
pub(crate) struct Members {
    map: RwLock<HashMap<String, BTreeSet<Atom>>>,
}

impl Members {
    /// Records that `node` hosts `types`; returns the types for which it
    /// is new.
    pub fn add(&self, node: &Atom, types: &[String]) -> Vec<String> {
        let mut m = self.map.write().unwrap();
        types.iter().filter(|t| m.entry((*t).clone()).or_default().insert(node.clone())).cloned().collect()
    }

    /// An announcement is `node`'s whole list: types missing from it are
    /// dropped (an Elixir manager announces `[]` when it stops, while the
    /// node stays connected). Returns the types new for `node`.
    pub fn set(&self, node: &Atom, types: &[String]) -> Vec<String> {
        {
            let mut m = self.map.write().unwrap();
            for (t, set) in m.iter_mut() {
                if !types.contains(t) {
                    set.remove(node);
                }
            }
        }
        self.add(node, types)
    }
    pub fn remove_node(&self, node: &Atom) {
        for set in self.map.write().unwrap().values_mut() {
            set.remove(node);
        }
    }
    pub fn nodes(&self, type_name: &str) -> Vec<Atom> {
        self.map.read().unwrap().get(type_name).map(|s| s.iter().cloned().collect()).unwrap_or_default()
    }
    pub fn ring(&self, type_name: &str, without: Option<&Atom>) -> Ring {
        Ring::new(self.nodes(type_name).into_iter().filter(|n| Some(n) != without))
    }
}
