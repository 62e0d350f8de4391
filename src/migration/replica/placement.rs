//! Where a process's replicas live: the next owners on the ring of the
//! nodes hosting its type, after the owner's own node. Rings are cached
//! per node set, as owners ask on every update and a ring costs 256
//! md5s per node to build.

use super::config::ReplicaConfig;
use crate::migration::hosted::Members;
use crate::migration::ring::{Ring, RingEncoding};
use crate::term::{Atom, Term};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};

type CachedRing = (Vec<Atom>, RingEncoding, Arc<Ring>);

/// Shared by the owners, the store and the failover of one node.
pub(crate) struct ReplicaCtx {
    pub members: Arc<Members>,
    rings: Mutex<HashMap<String, CachedRing>>,
    /// Per-type configurations set at run time
    /// ([`crate::migration::Migration::set_replicas`]); they win over the
    /// type's constants.
    overrides: RwLock<HashMap<String, ReplicaConfig>>,
    /// Each local type's delta callbacks (docs/replicas.md, "Deltas").
    deltas: RwLock<HashMap<String, super::delta::DeltaFns>>,
}

impl ReplicaCtx {
    pub fn new(members: Arc<Members>) -> ReplicaCtx {
        ReplicaCtx { members, rings: Default::default(), overrides: Default::default(), deltas: Default::default() }
    }

    pub(crate) fn set_delta(&self, type_name: &str, fns: super::delta::DeltaFns) {
        self.deltas.write().unwrap().insert(type_name.to_string(), fns);
    }

    pub(crate) fn delta_for(&self, type_name: &str) -> Option<super::delta::DeltaFns> {
        self.deltas.read().unwrap().get(type_name).copied()
    }

    pub fn set_override(&self, type_name: &str, cfg: ReplicaConfig) {
        self.overrides.write().unwrap().insert(type_name.to_string(), cfg);
    }

    pub fn config_for(&self, type_name: &str, default: ReplicaConfig) -> ReplicaConfig {
        self.overrides.read().unwrap().get(type_name).copied().unwrap_or(default)
    }

    /// The ring of `type_name`'s nodes, `without` one of them.
    pub fn ring(&self, type_name: &str, without: Option<&Atom>) -> Arc<Ring> {
        let nodes: Vec<Atom> = self.members.nodes(type_name).into_iter().filter(|n| Some(n) != without).collect();
        let enc = self.members.encoding();
        let key = match without {
            Some(w) => format!("{type_name}\u{0}{w}"),
            None => type_name.to_string(),
        };
        let mut cache = self.rings.lock().unwrap();
        if let Some((n, e, r)) = cache.get(&key) {
            if n == &nodes && *e == enc {
                return r.clone();
            }
        }
        let ring = Arc::new(Ring::new(nodes.clone(), enc));
        cache.insert(key, (nodes, enc, ring.clone()));
        ring
    }

    /// The `n` nodes that keep `name`'s replicas when `owner` runs it.
    pub fn replica_nodes(&self, type_name: &str, name: &Atom, owner: &Atom, n: usize) -> Vec<Atom> {
        if n == 0 {
            return vec![];
        }
        let ring = self.ring(type_name, None);
        ring.owners(&Term::Atom(name.clone()), n + 1).into_iter().filter(|x| x != owner).take(n).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replicas_are_the_next_owners_without_the_owner() {
        let members = Arc::new(Members::default());
        for n in ["a@h", "b@h", "c@h", "d@h"] {
            members.add(&Atom::new(n), &["t".to_string()]);
        }
        let ctx = ReplicaCtx::new(members.clone());
        let name = Atom::new("acc1");
        let owners = ctx.ring("t", None).owners(&Term::Atom(name.clone()), 4);
        let r = ctx.replica_nodes("t", &name, &owners[0], 2);
        assert_eq!(r, owners[1..3].to_vec());
        // Owner not the ring's primary (started elsewhere): still two others.
        let r = ctx.replica_nodes("t", &name, &owners[2], 2);
        assert_eq!(r, owners[0..2].to_vec());
        // Failover order: without the dead owner the first replica leads.
        assert_eq!(ctx.ring("t", Some(&owners[0])).owner(&Term::Atom(name.clone())), Some(owners[1].clone()));
        // The cache follows membership.
        members.remove_node(&owners[1]);
        assert_eq!(ctx.replica_nodes("t", &name, &owners[0], 1), vec![owners[2].clone()]);
    }
}
