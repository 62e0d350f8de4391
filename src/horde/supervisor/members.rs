//! A DynamicSupervisor's members and where a child goes: Horde's
//! `%Horde.DynamicSupervisor.Member{}`, `UniformDistribution` and
//! `UniformQuorumDistribution`, bit-exact (placement through
//! [`crate::horde::libring`]).
//!
//! Each member writes its own status into the CRDT
//! (`{:member_node_info, {Sup, node}} => %Member{status, name}`); a
//! member nobody wrote for is `:uninitialized`, which places nothing on
//! it and, under the quorum strategy, counts against quorum.

use crate::horde::libring::choose_member;
use crate::horde::term_key::term_eq;
use crate::term::Term;

/// `Horde.DynamicSupervisor.Member`'s `status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Uninitialized,
    Alive,
    ShuttingDown,
    Dead,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Uninitialized => "uninitialized",
            Status::Alive => "alive",
            Status::ShuttingDown => "shutting_down",
            Status::Dead => "dead",
        }
    }

    fn from_atom(a: &str) -> Option<Status> {
        Some(match a {
            "uninitialized" => Status::Uninitialized,
            "alive" => Status::Alive,
            "shutting_down" => Status::ShuttingDown,
            "dead" => Status::Dead,
            _ => return None,
        })
    }
}

/// One member: its name `{Sup, node}` and status.
#[derive(Debug, Clone, PartialEq)]
pub struct Member {
    pub name: Term,
    pub status: Status,
}

const STRUCT: &str = "Elixir.Horde.DynamicSupervisor.Member";

impl Member {
    pub fn new(name: Term, status: Status) -> Member {
        Member { name, status }
    }

    /// `%Horde.DynamicSupervisor.Member{status: s, name: n}` (an Elixir
    /// struct: a map with `__struct__`).
    pub fn to_term(&self) -> Term {
        Term::Map(vec![
            (Term::atom("__struct__"), Term::atom(STRUCT)),
            (Term::atom("name"), self.name.clone()),
            (Term::atom("status"), Term::atom(self.status.as_str())),
        ])
    }

    /// Reads a member struct; anything else is `None` (and ignored).
    pub fn from_term(t: &Term) -> Option<Member> {
        let Term::Map(m) = t else { return None };
        let get = |k: &str| m.iter().find(|(key, _)| key.is_atom(k)).map(|(_, v)| v);
        let status = match get("status")? {
            Term::Atom(a) => Status::from_atom(a.as_str())?,
            _ => return None,
        };
        Some(Member { name: get("name")?.clone(), status })
    }
}

/// Which of Horde's distribution strategies the supervisor uses; all
/// members must agree, as in Horde.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Distribution {
    /// `Horde.UniformDistribution` (Horde's default).
    #[default]
    Uniform,
    /// `Horde.UniformQuorumDistribution`: nothing runs on a side of a
    /// split that lacks a majority of alive members.
    UniformQuorum,
}

/// Why no member was chosen; the term is what Horde replies.
#[derive(Debug, Clone, PartialEq)]
pub enum NoMember {
    NoAliveNodes,
    QuorumNotMet,
}

impl NoMember {
    pub fn to_term(&self) -> Term {
        Term::atom(match self {
            NoMember::NoAliveNodes => "no_alive_nodes",
            NoMember::QuorumNotMet => "quorum_not_met",
        })
    }
}

/// Terms compare like the BEAM for the shapes member names have
/// (`{atom, atom}`): atoms by their text.
fn cmp_names(a: &Term, b: &Term) -> std::cmp::Ordering {
    match (a.as_tuple(), b.as_tuple()) {
        (Some([Term::Atom(s1), Term::Atom(n1)]), Some([Term::Atom(s2), Term::Atom(n2)])) => {
            (s1.as_str(), n1.as_str()).cmp(&(s2.as_str(), n2.as_str()))
        }
        _ => std::cmp::Ordering::Equal,
    }
}

impl Distribution {
    /// `choose_node(child_spec, members)`: the name of the member that
    /// runs `child_spec`. `members` are Horde's `members(state)` values
    /// in any order: Horde puts them in a map keyed by name, so the ring
    /// is built in name order (exact for up to 32 members, where a BEAM
    /// map is ordered).
    pub fn choose(self, child_spec: &Term, members: &[Member]) -> Result<Term, NoMember> {
        if self == Distribution::UniformQuorum && !self.has_quorum(members) {
            return Err(NoMember::QuorumNotMet);
        }
        let mut alive: Vec<Term> = members.iter().filter(|m| m.status == Status::Alive).map(|m| m.name.clone()).collect();
        alive.sort_by(cmp_names);
        alive.dedup_by(|a, b| term_eq(a, b));
        choose_member(child_spec, &alive).cloned().ok_or(NoMember::NoAliveNodes)
    }

    /// `has_quorum?/1`. Uniform: always. Quorum: members not shutting
    /// down, sorted by name, the first dropped when their count is even;
    /// more than half of those alive. No members: no quorum; none left
    /// after the filter: Horde returns `nil`, i.e. no quorum.
    pub fn has_quorum(self, members: &[Member]) -> bool {
        if self == Distribution::Uniform {
            return true;
        }
        let mut active: Vec<&Member> = members.iter().filter(|m| m.status != Status::ShuttingDown).collect();
        if active.is_empty() {
            return false;
        }
        active.sort_by(|a, b| cmp_names(&a.name, &b.name));
        if active.len() % 2 == 0 {
            active.remove(0);
        }
        let alive = active.iter().filter(|m| m.status == Status::Alive).count();
        alive * 2 > active.len()
    }

    /// The module name Elixir configures it with.
    pub fn module(self) -> &'static str {
        match self {
            Distribution::Uniform => "Elixir.Horde.UniformDistribution",
            Distribution::UniformQuorum => "Elixir.Horde.UniformQuorumDistribution",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(node: &str, s: Status) -> Member {
        Member::new(Term::tuple([Term::atom("Elixir.Sup"), Term::atom(node)]), s)
    }

    #[test]
    fn member_struct_round_trips() {
        let x = m("a@h", Status::ShuttingDown);
        assert_eq!(Member::from_term(&x.to_term()), Some(x));
        assert_eq!(Member::from_term(&Term::atom("alive")), None);
    }

    #[test]
    fn uninitialized_members_get_nothing() {
        let spec = Term::Map(vec![(Term::atom("start"), Term::tuple([Term::atom("M"), Term::atom("f"), Term::List(vec![])]))]);
        let ms = [m("a@h", Status::Alive), m("b@h", Status::Uninitialized)];
        for _ in 0..3 {
            assert_eq!(Distribution::Uniform.choose(&spec, &ms), Ok(ms[0].name.clone()));
        }
        assert_eq!(Distribution::Uniform.choose(&spec, &[m("b@h", Status::Dead)]), Err(NoMember::NoAliveNodes));
    }

    #[test]
    fn quorum_as_horde_counts_it() {
        use Status::*;
        let q = Distribution::UniformQuorum;
        // Two Elixir nodes alive, two idle (uninitialized) nodes: four,
        // the first by name dropped; 2 of 3 alive if the dropped one is
        // idle, 1 of 3 if it is alive.
        assert!(q.has_quorum(&[m("a@h", Uninitialized), m("b@h", Alive), m("c@h", Alive), m("d@h", Uninitialized)]));
        assert!(!q.has_quorum(&[m("a@h", Alive), m("b@h", Alive), m("c@h", Uninitialized), m("d@h", Uninitialized)]));
        // The same four once the idle ones are alive members.
        assert!(q.has_quorum(&[m("a@h", Alive), m("b@h", Alive), m("c@h", Alive), m("d@h", Alive)]));
        // Shutting-down members do not count either way.
        assert!(q.has_quorum(&[m("a@h", ShuttingDown), m("b@h", Alive)]));
        assert!(!q.has_quorum(&[]));
        assert!(!q.has_quorum(&[m("a@h", ShuttingDown)]));
        assert!(Distribution::Uniform.has_quorum(&[]));
    }
}
