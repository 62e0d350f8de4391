//! Which migratable processes run on this node, and which nodes host
//! which types: the inputs to placement (join, leave, rebalance).

use super::ring::{Ring, RingEncoding};
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
    /// The ring encoding set on this node (`None`: follow the BEAM nodes).
    pinned: Option<RingEncoding>,
    /// The encodings Elixir managers announced, by node.
    announced: RwLock<HashMap<Atom, RingEncoding>>,
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
        self.announced.write().unwrap().remove(node);
    }

    pub fn with_pinned(pinned: Option<RingEncoding>) -> Members {
        Members { pinned, ..Default::default() }
    }

    /// Records the encoding an Elixir manager announced; logs when the
    /// BEAM nodes stop agreeing (a cluster in the middle of an OTP
    /// upgrade: docs/otp-releases.md).
    pub fn set_announced(&self, node: &Atom, enc: RingEncoding) {
        let mut a = self.announced.write().unwrap();
        let before: BTreeSet<RingEncoding> = a.values().copied().collect();
        a.insert(node.clone(), enc);
        let after: BTreeSet<RingEncoding> = a.values().copied().collect();
        if after.len() > 1 && before.len() <= 1 {
            let by_node: Vec<String> = a.iter().map(|(n, e)| format!("{n}={e}")).collect();
            // Not self.encoding(): it takes the lock held here.
            let follows = self.pinned.unwrap_or_else(|| Self::follow(&a));
            tracing::warn!(
                encodings = %by_node.join(" "),
                pinned = ?self.pinned,
                "the Elixir nodes hash the placement ring differently (mixed OTP releases): their owners disagree; \
                 this node follows {}. Pin one encoding on every node (docs/otp-releases.md)",
                follows
            );
        }
    }

    /// The encoding rings are hashed with: the pinned one; else the one
    /// the Elixir members announce; in a mixed cluster the OTP 25 one
    /// (what the cluster ran before its upgrade began); with no Elixir
    /// member, OTP 26's (every release since 2023).
    pub fn encoding(&self) -> RingEncoding {
        if let Some(e) = self.pinned {
            return e;
        }
        Self::follow(&self.announced.read().unwrap())
    }

    fn follow(announced: &HashMap<Atom, RingEncoding>) -> RingEncoding {
        announced.values().copied().min().unwrap_or(RingEncoding::Otp26)
    }
    pub fn nodes(&self, type_name: &str) -> Vec<Atom> {
        self.map.read().unwrap().get(type_name).map(|s| s.iter().cloned().collect()).unwrap_or_default()
    }
    pub fn ring(&self, type_name: &str, without: Option<&Atom>) -> Ring {
        Ring::new(self.nodes(type_name).into_iter().filter(|n| Some(n) != without), self.encoding())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoding_follows_the_elixir_members_and_the_oldest_when_mixed() {
        let m = Members::default();
        assert_eq!(m.encoding(), RingEncoding::Otp26, "no Elixir member yet: today's releases");
        m.set_announced(&Atom::new("new@h"), RingEncoding::Otp26);
        assert_eq!(m.encoding(), RingEncoding::Otp26);
        m.set_announced(&Atom::new("old@h"), RingEncoding::Otp25); // mixed: warns, follows OTP 25
        assert_eq!(m.encoding(), RingEncoding::Otp25);
        m.remove_node(&Atom::new("old@h"));
        assert_eq!(m.encoding(), RingEncoding::Otp26, "the OTP 25 node left");
        let pinned = Members::with_pinned(Some(RingEncoding::Otp25));
        pinned.set_announced(&Atom::new("new@h"), RingEncoding::Otp26);
        pinned.set_announced(&Atom::new("old@h"), RingEncoding::Otp25);
        assert_eq!(pinned.encoding(), RingEncoding::Otp25);
        assert_eq!(pinned.ring("t", None).encoding(), RingEncoding::Otp25);
    }
}
