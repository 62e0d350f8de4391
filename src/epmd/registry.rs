//! The embedded server's name table, including epmd's creation rules.
//!
//! A node's "creation" lets peers tell a restarted node from its previous
//! incarnation (pids/refs of the old one must not match). epmd derives it
//! per name: the first registration starts from the wall clock, each later
//! registration of the same name bumps it. We reproduce that so nodes see
//! the same values they would see with real epmd.

use std::collections::{HashMap, VecDeque};
use std::time::{SystemTime, UNIX_EPOCH};

use super::protocol::NodeEntry;

/// How many unregistered names keep their creation counter, as epmd's
/// `MAX_UNREG_COUNT`; bounds memory under name churn.
const MAX_RETIRED: usize = 1000;

#[derive(Debug)]
struct Active {
    entry: NodeEntry,
    conn_id: u64,
    counter: u32,
    /// Registration order, for listing newest first like epmd.
    seq: u64,
    /// The uid of the process that registered, when it could be told.
    owner: Option<u32>,
}

#[derive(Debug, PartialEq, Eq)]
pub(crate) enum RegisterOutcome {
    Registered { creation: u32 },
    NameTaken,
    Full,
    /// This owner (uid) already holds its share of the names.
    OwnerFull,
}

#[derive(Debug)]
pub(crate) struct Registry {
    active: HashMap<String, Active>,
    retired: HashMap<String, u32>,
    retired_order: VecDeque<String>,
    next_seq: u64,
    max_active: usize,
    max_per_owner: usize,
}

/// epmd's `bump_creation`: never below 4, so that the 1..=3 range stays
/// distinct from values handed to version-6 nodes.
fn bump(counter: u32) -> u32 {
    counter.wrapping_add(1).max(4)
}

/// epmd's `get_creation`: old nodes only understand 1..=3.
fn creation_for(entry: &NodeEntry, counter: u32) -> u32 {
    if entry.wants_extended_creation() {
        counter
    } else {
        counter % 3 + 1
    }
}

impl Registry {
    #[cfg(test)]
    pub(crate) fn new(max_active: usize) -> Self {
        Registry::with_owner_limit(max_active, max_active)
    }

    /// At most `max_active` names, of which one owner may hold at most
    /// `max_per_owner`.
    pub(crate) fn with_owner_limit(max_active: usize, max_per_owner: usize) -> Self {
        Registry {
            active: HashMap::new(),
            retired: HashMap::new(),
            retired_order: VecDeque::new(),
            next_seq: 0,
            max_active,
            max_per_owner,
        }
    }

    #[cfg(test)]
    pub(crate) fn register(&mut self, entry: NodeEntry, conn_id: u64) -> RegisterOutcome {
        self.register_owned(entry, conn_id, None)
    }

    /// Registers `entry` for connection `conn_id`, made by `owner` (a uid;
    /// `None` when unknown, which no owner limit applies to).
    pub(crate) fn register_owned(&mut self, entry: NodeEntry, conn_id: u64, owner: Option<u32>) -> RegisterOutcome {
        if self.active.contains_key(&entry.name) {
            return RegisterOutcome::NameTaken;
        }
        if self.active.len() >= self.max_active {
            return RegisterOutcome::Full;
        }
        if let Some(uid) = owner {
            if self.active.values().filter(|a| a.owner == Some(uid)).count() >= self.max_per_owner {
                return RegisterOutcome::OwnerFull;
            }
        }
        let counter = match self.retired.remove(&entry.name) {
            Some(previous) => {
                self.retired_order.retain(|n| n != &entry.name);
                bump(previous)
            }
            None => {
                let now = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map(|d| d.as_secs() as u32)
                    .unwrap_or(0);
                bump(now)
            }
        };
        let creation = creation_for(&entry, counter);
        let seq = self.next_seq;
        self.next_seq += 1;
        self.active.insert(
            entry.name.clone(),
            Active {
                entry,
                conn_id,
                counter,
                seq,
                owner,
            },
        );
        RegisterOutcome::Registered { creation }
    }

    /// Removes `name` if it is still owned by `conn_id` (a stale guard must
    /// not remove a newer registration of the same name).
    pub(crate) fn unregister(&mut self, name: &str, conn_id: u64) -> bool {
        match self.active.get(name) {
            Some(a) if a.conn_id == conn_id => {}
            _ => return false,
        }
        let Some(active) = self.active.remove(name) else {
            return false;
        };
        if self.retired_order.len() >= MAX_RETIRED {
            if let Some(oldest) = self.retired_order.pop_front() {
                self.retired.remove(&oldest);
            }
        }
        self.retired.insert(name.to_owned(), active.counter);
        self.retired_order.push_back(name.to_owned());
        true
    }

    pub(crate) fn lookup(&self, name: &str) -> Option<NodeEntry> {
        self.active.get(name).map(|a| a.entry.clone())
    }

    /// Registered nodes, newest first, with their owning connection id.
    pub(crate) fn list(&self) -> Vec<(String, u16, u64)> {
        let mut v: Vec<&Active> = self.active.values().collect();
        v.sort_by_key(|a| std::cmp::Reverse(a.seq));
        v.into_iter()
            .map(|a| (a.entry.name.clone(), a.entry.port, a.conn_id))
            .collect()
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.active.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::epmd::protocol::NodeKind;

    fn entry(name: &str, high: u16) -> NodeEntry {
        let mut e = NodeEntry::new(name, 1000, NodeKind::Normal);
        e.highest_version = high;
        e.lowest_version = high.min(5);
        e
    }

    fn creation(o: RegisterOutcome) -> u32 {
        match o {
            RegisterOutcome::Registered { creation } => creation,
            other => panic!("not registered: {other:?}"),
        }
    }

    #[test]
    fn creation_increments_per_reregistration() {
        let mut r = Registry::new(10);
        let c1 = creation(r.register(entry("a", 6), 1));
        assert!(c1 >= 4);
        assert_eq!(r.register(entry("a", 6), 2), RegisterOutcome::NameTaken);
        assert!(r.unregister("a", 1));
        let c2 = creation(r.register(entry("a", 6), 3));
        assert_eq!(c2, c1.wrapping_add(1).max(4));
    }

    #[test]
    fn old_nodes_get_small_creations() {
        let mut r = Registry::new(10);
        let c = creation(r.register(entry("old", 5), 1));
        assert!((1..=3).contains(&c));
    }

    #[test]
    fn stale_owner_cannot_unregister() {
        let mut r = Registry::new(10);
        creation(r.register(entry("a", 6), 1));
        assert!(!r.unregister("a", 2));
        assert!(r.lookup("a").is_some());
        assert!(!r.unregister("nope", 1));
    }

    #[test]
    fn cap_and_order() {
        let mut r = Registry::new(2);
        creation(r.register(entry("a", 6), 1));
        creation(r.register(entry("b", 6), 2));
        assert_eq!(r.register(entry("c", 6), 3), RegisterOutcome::Full);
        let names: Vec<String> = r.list().into_iter().map(|(n, _, _)| n).collect();
        assert_eq!(names, vec!["b", "a"]);
        assert_eq!(r.len(), 2);
    }

    #[test]
    fn retired_names_are_bounded() {
        let mut r = Registry::new(10);
        for i in 0..(MAX_RETIRED + 50) {
            let name = format!("n{i}");
            creation(r.register(entry(&name, 6), i as u64));
            assert!(r.unregister(&name, i as u64));
        }
        assert_eq!(r.retired.len(), MAX_RETIRED);
        assert_eq!(r.retired_order.len(), MAX_RETIRED);
    }

    #[test]
    fn one_owner_cannot_take_every_slot() {
        let mut r = Registry::with_owner_limit(4, 2);
        creation(r.register_owned(entry("a", 6), 1, Some(1000)));
        creation(r.register_owned(entry("b", 6), 2, Some(1000)));
        assert_eq!(r.register_owned(entry("c", 6), 3, Some(1000)), RegisterOutcome::OwnerFull);
        creation(r.register_owned(entry("d", 6), 4, Some(0)));
        creation(r.register_owned(entry("e", 6), 5, None));
        assert!(r.unregister("a", 1));
        creation(r.register_owned(entry("c", 6), 6, Some(1000)));
    }
}
