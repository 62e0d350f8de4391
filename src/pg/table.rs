//! A scope's membership table: what pg.erl keeps in its ETS table, one
//! row per non-empty group, `{Group, AllPids, LocalPids}`. The scope
//! process is its only writer; the API reads it directly, as BEAM code
//! reads the ETS table, so `get_members` costs no message.
//!
//! Lists keep pg.erl's order (newest first) and its duplicates (a pid
//! that joined twice appears twice and must leave twice). Removal is
//! Erlang's `--`: the first occurrence of each listed pid goes.

use crate::term::{Pid, Term};
use std::collections::HashMap;

/// Groups are arbitrary terms; `Term` has no `Hash`, so a group is keyed
/// by its external term format encoding (deterministic for a given term).
pub(crate) type GroupKey = Vec<u8>;

pub(crate) fn key(group: &Term) -> GroupKey {
    crate::term::encode(group)
}

pub(crate) struct Row {
    pub group: Term,
    pub all: Vec<Pid>,
    pub local: Vec<Pid>,
}

#[derive(Default)]
pub(crate) struct Table {
    rows: HashMap<GroupKey, Row>,
}

/// `A -- B`: removes the first occurrence in `list` of each pid of `gone`.
pub(crate) fn subtract(list: &mut Vec<Pid>, gone: &[Pid]) {
    for p in gone {
        if let Some(i) = list.iter().position(|x| x == p) {
            list.remove(i);
        }
    }
}

/// `New ++ Old`.
fn prepend(list: &mut Vec<Pid>, new: &[Pid]) {
    list.splice(0..0, new.iter().cloned());
}

impl Table {
    pub fn members(&self, group: &Term) -> Vec<Pid> {
        self.rows.get(&key(group)).map(|r| r.all.clone()).unwrap_or_default()
    }
    pub fn local_members(&self, group: &Term) -> Vec<Pid> {
        self.rows.get(&key(group)).map(|r| r.local.clone()).unwrap_or_default()
    }
    pub fn groups(&self) -> Vec<Term> {
        self.rows.values().map(|r| r.group.clone()).collect()
    }
    pub fn local_groups(&self) -> Vec<Term> {
        self.rows.values().filter(|r| !r.local.is_empty()).map(|r| r.group.clone()).collect()
    }
    /// Every group with all its members (what `monitor_scope` returns).
    pub fn snapshot(&self) -> Vec<(Term, Vec<Pid>)> {
        self.rows.values().map(|r| (r.group.clone(), r.all.clone())).collect()
    }

    /// `join_local_update_ets` / `join_remote_update_ets`.
    pub fn join(&mut self, group: &Term, pids: &[Pid], local: bool) {
        let row = self.rows.entry(key(group)).or_insert_with(|| Row { group: group.clone(), all: Vec::new(), local: Vec::new() });
        prepend(&mut row.all, pids);
        if local {
            prepend(&mut row.local, pids);
        }
    }

    /// `leave_local_update_ets` / `leave_remote_update_ets` for one
    /// group: false if the group has no row (nothing to notify). A row
    /// goes when no member is left.
    pub fn leave(&mut self, group: &Term, pids: &[Pid], local: bool) -> bool {
        let k = key(group);
        let Some(row) = self.rows.get_mut(&k) else { return false };
        subtract(&mut row.all, pids);
        if local {
            subtract(&mut row.local, pids);
        }
        if row.all.is_empty() && row.local.is_empty() {
            self.rows.remove(&k);
        }
        true
    }

    /// The `sync_groups` case where a peer re-announces a group with a
    /// different member list: `All = New ++ (All -- Old)`.
    pub fn replace_remote(&mut self, group: &Term, old: &[Pid], new: &[Pid]) {
        self.leave(group, old, false);
        self.join(group, new, false);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::term::Atom;

    fn pid(id: u32) -> Pid {
        Pid { node: Atom::new("a@h"), id, serial: 0, creation: 1 }
    }

    #[test]
    fn duplicates_join_and_leave_one_at_a_time() {
        let mut t = Table::default();
        let g = Term::atom("g");
        t.join(&g, &[pid(1)], true);
        t.join(&g, &[pid(1), pid(2)], true);
        assert_eq!(t.members(&g), vec![pid(1), pid(2), pid(1)]);
        assert!(t.leave(&g, &[pid(1)], true));
        assert_eq!(t.members(&g), vec![pid(2), pid(1)]);
        assert!(t.leave(&g, &[pid(1), pid(2)], true));
        assert!(t.groups().is_empty(), "an empty group is removed");
        assert!(!t.leave(&g, &[pid(1)], true));
    }

    #[test]
    fn remote_members_are_not_local() {
        let mut t = Table::default();
        let g = Term::tuple([Term::atom("room"), Term::Int(7)]);
        t.join(&g, &[pid(1)], true);
        t.join(&g, &[pid(9)], false);
        assert_eq!(t.local_members(&g), vec![pid(1)]);
        assert_eq!(t.local_groups(), vec![g.clone()]);
        t.replace_remote(&g, &[pid(9)], &[pid(8)]);
        assert_eq!(t.members(&g), vec![pid(8), pid(1)]);
    }
}
