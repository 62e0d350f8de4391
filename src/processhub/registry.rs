//! The hub's process registry, as every member keeps it: child id ->
//! `{child_spec, [{node, pid}], metadata}` (ProcessHub's ETS table named
//! after the hub). It is replicated only by the events, so the Rust
//! member applies the same ones: registration, unregistration, pid
//! update and the join sync; it also drops a node's entries when the node
//! leaves the hub. Lookups are local, as `ProcessHub.get_pid/2`.

use super::messages::{PostStartData, SyncedChild, Unregistered};
use crate::term::{Atom, Pid, Term};
use std::collections::HashMap;

/// One child as the hub knows it.
#[derive(Clone, Debug, PartialEq)]
pub struct HubChild {
    pub child_id: Term,
    pub child_spec: Term,
    /// Where it runs: `[{node, pid}]`.
    pub nodes: Vec<(Atom, Pid)>,
    pub metadata: Term,
}

/// Child ids are any term: keyed by their external encoding.
pub(crate) fn key(cid: &Term) -> Vec<u8> {
    crate::term::encode(cid)
}

#[derive(Default)]
pub(crate) struct Registry {
    children: HashMap<Vec<u8>, HubChild>,
}

impl Registry {
    pub fn get(&self, cid: &Term) -> Option<&HubChild> {
        self.children.get(&key(cid))
    }

    pub fn len(&self) -> usize {
        self.children.len()
    }

    /// The child runs on `node` at `pid` (replacing its pid there).
    pub fn put(&mut self, cid: &Term, spec: &Term, meta: &Term, node: &Atom, pid: &Pid) {
        let e = self.children.entry(key(cid)).or_insert_with(|| HubChild {
            child_id: cid.clone(),
            child_spec: spec.clone(),
            nodes: vec![],
            metadata: meta.clone(),
        });
        e.child_spec = spec.clone();
        e.metadata = meta.clone();
        match e.nodes.iter_mut().find(|(n, _)| n == node) {
            Some(slot) => slot.1 = pid.clone(),
            None => e.nodes.push((node.clone(), pid.clone())),
        }
    }

    /// The child no longer runs on `node`; an entry left without nodes
    /// is removed.
    pub fn remove_on(&mut self, cid: &Term, node: &Atom) {
        let k = key(cid);
        if let Some(e) = self.children.get_mut(&k) {
            e.nodes.retain(|(n, _)| n != node);
            if e.nodes.is_empty() {
                self.children.remove(&k);
            }
        }
    }

    /// `children_registration_event`.
    pub fn register(&mut self, children: &[PostStartData]) {
        for c in children {
            for (n, p) in &c.child_nodes {
                self.put(&c.cid, &c.child_spec, &c.metadata, n, p);
            }
        }
    }

    /// `children_unregistration_event`.
    pub fn unregister(&mut self, children: &[Unregistered]) {
        for c in children {
            self.remove_on(&c.child_id, &c.node);
        }
    }

    /// `sync_remote_children_event`: the sender's local children (the
    /// child id is the spec's `id`).
    pub fn sync(&mut self, children: &[SyncedChild], from: &Atom) {
        for c in children {
            match spec_id(&c.child_spec) {
                Some(cid) => self.put(&cid, &c.child_spec, &c.metadata, from, &c.pid),
                None => tracing::warn!(%from, "synced child without an id in its spec dropped"),
            }
        }
    }

    /// `child_process_pid_update_event`.
    pub fn update_pid(&mut self, cid: &Term, node: &Atom, pid: &Pid) {
        let k = key(cid);
        if let Some(e) = self.children.get_mut(&k) {
            match e.nodes.iter_mut().find(|(n, _)| n == node) {
                Some(slot) => slot.1 = pid.clone(),
                None => e.nodes.push((node.clone(), pid.clone())),
            }
        }
    }

    /// A node left the hub: its entries go; returns the children that ran
    /// only there (candidates for a restart elsewhere).
    pub fn drop_node(&mut self, node: &Atom) -> Vec<HubChild> {
        let mut orphans = vec![];
        self.children.retain(|_, e| {
            let before = e.nodes.len();
            e.nodes.retain(|(n, _)| n != node);
            if e.nodes.is_empty() && before > 0 {
                orphans.push(e.clone());
                false
            } else {
                true
            }
        });
        orphans
    }
}

/// The `id` of a child spec map.
pub(crate) fn spec_id(spec: &Term) -> Option<Term> {
    match spec {
        Term::Map(entries) => entries.iter().find(|(k, _)| k.is_atom("id")).map(|(_, v)| v.clone()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pid(node: &str, id: u32) -> Pid {
        Pid { node: Atom::new(node), id, serial: 0, creation: 1 }
    }

    #[test]
    fn a_node_leaving_orphans_only_its_sole_children() {
        let mut r = Registry::default();
        let (a, b) = (Atom::new("a@h"), Atom::new("b@h"));
        let spec = |id: &str| Term::Map(vec![(Term::atom("id"), Term::from(id))]);
        r.put(&Term::from("c1"), &spec("c1"), &Term::Map(vec![]), &a, &pid("a@h", 1));
        r.put(&Term::from("c2"), &spec("c2"), &Term::Map(vec![]), &b, &pid("b@h", 2));
        r.update_pid(&Term::from("c2"), &b, &pid("b@h", 3));
        assert_eq!(r.get(&Term::from("c2")).unwrap().nodes, vec![(b.clone(), pid("b@h", 3))]);
        let orphans = r.drop_node(&a);
        assert_eq!(orphans.len(), 1);
        assert_eq!(orphans[0].child_id, Term::from("c1"));
        assert_eq!(r.len(), 1);
        r.remove_on(&Term::from("c2"), &b);
        assert_eq!(r.len(), 0);
    }
}
