//! The replica wire protocol, version 1 (docs/replicas.md, "Wire
//! messages"). Every message is a tuple tagged `'$erlnode_replica'`
//! followed by the protocol version, so a user message is never taken
//! for one, and a peer speaking a later version is recognised, logged
//! and ignored rather than misread.

use super::config::{ReplicaConfig, ReplicaMode};
use crate::term::{Atom, Pid, Term};

pub const TAG: &str = "$erlnode_replica";
pub const VERSION: i64 = 1;

/// One replica message.
#[derive(Debug, Clone, PartialEq)]
pub enum Msg {
    /// Owner -> store: the whole state of `name` at `seq`. `ack_to`
    /// asks the store to answer with [`Msg::Ack`] once it holds it.
    Put { name: Atom, type_name: String, args: Term, seq: u64, state: Term, owner: Pid, cfg: ReplicaConfig, ack_to: Option<Pid> },
    /// Owner -> store: the change from the state at `base` to the one
    /// at `seq`, made by the type's `replica_delta` (docs/replicas.md,
    /// "Deltas"). Applied only on top of exactly `base` from `owner`;
    /// otherwise the store answers [`Msg::NeedWhole`].
    Delta { name: Atom, base: u64, seq: u64, delta: Term, owner: Pid, ack_to: Option<Pid> },
    /// Store -> owner: a delta found no base here (or did not apply):
    /// send `node` the whole state.
    NeedWhole { node: Atom, name: Atom },
    /// Store -> owner: `node` holds the state at `seq` (or later).
    Ack { node: Atom, seq: u64 },
    /// Owner -> store: forget `name` if `owner` still owns the entry
    /// (the process stopped, or the store is no longer one of its
    /// replica nodes).
    Drop { name: Atom, owner: Pid },
    /// Failover -> restored process: you hold the global name now; serve.
    Go,
    /// `global`'s conflict resolution -> the winner of a name held on
    /// both sides of a healed partition: merge `loser`'s state.
    MergeFrom { loser: Pid },
    /// Call from a merge winner to the loser: reply with your state
    /// (versioned handover state) and stop.
    MergeState,
    /// Call to a store: what it holds, `[{Name, Seq, Owner, Bytes}]`
    /// (tests, `erlnode` tooling, the demo's memory line).
    List,
    /// Call to a store: what it took so far, `#{puts => N, deltas => N,
    /// need_whole => N}` (whole states, deltas applied, deltas refused).
    Stats,
    /// Call to a store from a process a library (Horde) restarted after
    /// its node died: `{ok, Seq, Owner, State}` for the entry of `name`,
    /// or `none` (docs/replicas.md, "Processes Horde or ProcessHub places").
    Fetch { name: Atom },
}

fn tag() -> Term {
    Term::atom(TAG)
}

fn head(op: &str) -> Vec<Term> {
    vec![tag(), Term::Int(VERSION), Term::atom(op)]
}

impl Msg {
    pub fn to_term(&self) -> Term {
        let mut t = match self {
            Msg::Put { .. } => head("put"),
            Msg::Delta { .. } => head("delta"),
            Msg::NeedWhole { .. } => head("need_whole"),
            Msg::Ack { .. } => head("ack"),
            Msg::Drop { .. } => head("drop"),
            Msg::List => head("list"),
            Msg::Stats => head("stats"),
            Msg::Fetch { .. } => head("fetch"),
            Msg::Go => head("go"),
            Msg::MergeFrom { .. } => head("merge_from"),
            Msg::MergeState => head("merge_state"),
        };
        match self {
            Msg::Put { name, type_name, args, seq, state, owner, cfg, ack_to } => t.extend([
                Term::Atom(name.clone()),
                Term::from(type_name.as_str()),
                args.clone(),
                Term::Int(*seq as i64),
                state.clone(),
                Term::Pid(owner.clone()),
                cfg.to_term(),
                ack_to.clone().map(Term::Pid).unwrap_or_else(|| Term::atom("undefined")),
            ]),
            Msg::Delta { name, base, seq, delta, owner, ack_to } => t.extend([
                Term::Atom(name.clone()),
                Term::Int(*base as i64),
                Term::Int(*seq as i64),
                delta.clone(),
                Term::Pid(owner.clone()),
                ack_to.clone().map(Term::Pid).unwrap_or_else(|| Term::atom("undefined")),
            ]),
            Msg::NeedWhole { node, name } => t.extend([Term::Atom(node.clone()), Term::Atom(name.clone())]),
            Msg::Ack { node, seq } => t.extend([Term::Atom(node.clone()), Term::Int(*seq as i64)]),
            Msg::Drop { name, owner } => t.extend([Term::Atom(name.clone()), Term::Pid(owner.clone())]),
            Msg::MergeFrom { loser } => t.push(Term::Pid(loser.clone())),
            Msg::Fetch { name } => t.push(Term::Atom(name.clone())),
            Msg::List | Msg::Stats | Msg::Go | Msg::MergeState => {}
        }
        Term::Tuple(t)
    }

    /// `None`: not a replica message. `Some(Err(text))`: tagged but
    /// malformed, or of a version this node does not speak: log, drop.
    pub fn parse(msg: &Term) -> Option<Result<Msg, String>> {
        let t = msg.as_tuple()?;
        if t.is_empty() || !t[0].is_atom(TAG) {
            return None;
        }
        Some(parse_tagged(t).ok_or_else(|| {
            let mut s = format!("{msg:?}");
            s.truncate(200);
            s
        }))
    }
}

fn seq_of(t: &Term) -> Option<u64> {
    match t {
        Term::Int(i) if *i >= 0 => Some(*i as u64),
        _ => None,
    }
}

fn parse_tagged(t: &[Term]) -> Option<Msg> {
    if !matches!(t.get(1), Some(Term::Int(VERSION))) {
        return None;
    }
    Some(match (t.get(2)?.as_atom()?.as_str(), &t[3..]) {
        ("put", [Term::Atom(name), Term::Binary(ty), args, seq, state, Term::Pid(owner), cfg, ack_to]) => Msg::Put {
            name: name.clone(),
            type_name: String::from_utf8(ty.to_vec()).ok()?,
            args: args.clone(),
            seq: seq_of(seq)?,
            state: state.clone(),
            owner: owner.clone(),
            cfg: ReplicaConfig::from_term(cfg)?,
            ack_to: match ack_to {
                Term::Pid(p) => Some(p.clone()),
                a if a.is_atom("undefined") => None,
                _ => return None,
            },
        },
        ("delta", [Term::Atom(name), base, seq, delta, Term::Pid(owner), ack_to]) => Msg::Delta {
            name: name.clone(),
            base: seq_of(base)?,
            seq: seq_of(seq)?,
            delta: delta.clone(),
            owner: owner.clone(),
            ack_to: match ack_to {
                Term::Pid(p) => Some(p.clone()),
                a if a.is_atom("undefined") => None,
                _ => return None,
            },
        },
        ("need_whole", [Term::Atom(node), Term::Atom(name)]) => Msg::NeedWhole { node: node.clone(), name: name.clone() },
        ("ack", [Term::Atom(node), seq]) => Msg::Ack { node: node.clone(), seq: seq_of(seq)? },
        ("drop", [Term::Atom(name), Term::Pid(owner)]) => Msg::Drop { name: name.clone(), owner: owner.clone() },
        ("list", []) => Msg::List,
        ("stats", []) => Msg::Stats,
        ("fetch", [Term::Atom(name)]) => Msg::Fetch { name: name.clone() },
        ("go", []) => Msg::Go,
        ("merge_from", [Term::Pid(loser)]) => Msg::MergeFrom { loser: loser.clone() },
        ("merge_state", []) => Msg::MergeState,
        _ => return None,
    })
}

impl ReplicaConfig {
    /// `{Replicas, sync | async}`.
    pub fn to_term(&self) -> Term {
        Term::tuple([Term::Int(self.replicas as i64), Term::atom(self.mode.name())])
    }
    pub fn from_term(t: &Term) -> Option<ReplicaConfig> {
        match t.as_tuple()? {
            [Term::Int(n), Term::Atom(m)] if (0..=16).contains(n) => {
                Some(ReplicaConfig { replicas: *n as usize, mode: ReplicaMode::from_name(m.as_str())? })
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pid() -> Pid {
        Pid { node: Atom::new("a@h"), id: 70, serial: 0, creation: 3 }
    }

    #[test]
    fn round_trip() {
        let msgs = [
            Msg::Put {
                name: Atom::new("acc"),
                type_name: "account".into(),
                args: Term::nil(),
                seq: 7,
                state: Term::Int(1),
                owner: pid(),
                cfg: ReplicaConfig { replicas: 2, mode: ReplicaMode::Async },
                ack_to: Some(pid()),
            },
            Msg::Put {
                name: Atom::new("acc"),
                type_name: "account".into(),
                args: Term::nil(),
                seq: 0,
                state: Term::Int(1),
                owner: pid(),
                cfg: ReplicaConfig::sync(1),
                ack_to: None,
            },
            Msg::Ack { node: Atom::new("b@h"), seq: 3 },
            Msg::Delta { name: Atom::new("acc"), base: 6, seq: 7, delta: Term::Int(5), owner: pid(), ack_to: Some(pid()) },
            Msg::Delta { name: Atom::new("acc"), base: 0, seq: 1, delta: Term::nil(), owner: pid(), ack_to: None },
            Msg::NeedWhole { node: Atom::new("b@h"), name: Atom::new("acc") },
            Msg::Drop { name: Atom::new("acc"), owner: pid() },
            Msg::List,
            Msg::Stats,
            Msg::Fetch { name: Atom::new("erlnode_horde:Elixir.S:ba1") },
            Msg::Go,
            Msg::MergeFrom { loser: pid() },
            Msg::MergeState,
        ];
        for m in msgs {
            assert_eq!(Msg::parse(&m.to_term()), Some(Ok(m.clone())));
        }
    }

    #[test]
    fn foreign_malformed_and_future_versions() {
        assert_eq!(Msg::parse(&Term::atom("hello")), None);
        assert_eq!(Msg::parse(&Term::tuple([Term::atom("$erlnode_migrate"), Term::atom("x")])), None);
        for bad in [
            Term::tuple([tag()]),
            Term::tuple([tag(), Term::Int(2), Term::atom("ack"), Term::atom("b@h"), Term::Int(1)]),
            Term::tuple([tag(), Term::Int(1), Term::atom("ack"), Term::atom("b@h"), Term::Int(-1)]),
            Term::tuple([tag(), Term::Int(1), Term::atom("nope")]),
            Term::tuple([tag(), Term::Int(1), Term::atom("drop"), Term::Int(1), Term::Int(2)]),
        ] {
            assert!(matches!(Msg::parse(&bad), Some(Err(_))), "{bad:?}");
        }
    }
}
