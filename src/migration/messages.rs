//! The handoff wire messages (docs/handoff.md, "Wire messages"). Every
//! one is a tuple tagged `'$erlnode_migrate'`, so user messages can never
//! be mistaken for protocol, and a malformed one is recognisable as such
//! and dropped.

use crate::term::{Atom, Pid, Reference, Term};
use super::ring::RingEncoding;
use super::replica::ReplicaConfig;

pub const TAG: &str = "$erlnode_migrate";

/// HotSwap starts the target before pausing the source; ColdSwap pauses
/// and captures first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Hot,
    Cold,
}

impl Mode {
    pub fn to_term(self) -> Term {
        Term::atom(match self {
            Mode::Hot => "hot",
            Mode::Cold => "cold",
        })
    }
    pub fn from_term(t: &Term) -> Option<Mode> {
        match t.as_atom()?.as_str() {
            "hot" => Some(Mode::Hot),
            "cold" => Some(Mode::Cold),
            _ => None,
        }
    }
}

/// Messages a migratable process (source or target) receives.
#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    Begin { reference: Reference, target: Atom, mode: Mode, reply_to: Option<Pid> },
    Handover { reference: Reference, state: Term, queue: Vec<Term>, source: Pid },
    Accepted { reference: Reference, target: Pid },
    Rejected { reference: Reference, reason: Term },
    Fwd { reference: Reference, msgs: Vec<Term> },
    Switched { reference: Reference },
    Result { reference: Reference, result: Result<Pid, Term> },
    /// Manager to manager: `node` hosts these types. `ack` asks the
    /// receiver to answer with its own list (sent on nodeup).
    /// `encoding`: the ring encoding an Elixir manager hashes with (a
    /// sixth element; Rust managers and older Elixir ones send five).
    Members { node: Atom, types: Vec<String>, ack: bool, encoding: Option<RingEncoding> },
}

fn tag() -> Term {
    Term::atom(TAG)
}

impl Op {
    pub fn to_term(&self) -> Term {
        let r = |x: &Reference| Term::Ref(x.clone());
        match self {
            Op::Begin { reference, target, mode, reply_to } => Term::tuple([
                tag(),
                Term::atom("begin"),
                r(reference),
                Term::Atom(target.clone()),
                mode.to_term(),
                reply_to.clone().map(Term::Pid).unwrap_or_else(|| Term::atom("undefined")),
            ]),
            Op::Handover { reference, state, queue, source } => Term::tuple([
                tag(),
                Term::atom("handover"),
                r(reference),
                state.clone(),
                Term::List(queue.clone()),
                Term::Pid(source.clone()),
            ]),
            Op::Accepted { reference, target } => Term::tuple([tag(), Term::atom("accepted"), r(reference), Term::Pid(target.clone())]),
            Op::Rejected { reference, reason } => Term::tuple([tag(), Term::atom("rejected"), r(reference), reason.clone()]),
            Op::Fwd { reference, msgs } => Term::tuple([tag(), Term::atom("fwd"), r(reference), Term::List(msgs.clone())]),
            Op::Switched { reference } => Term::tuple([tag(), Term::atom("switched"), r(reference)]),
            Op::Result { reference, result } => Term::tuple([tag(), Term::atom("result"), r(reference), result_term(result)]),
            Op::Members { node, types, ack, encoding } => {
                let mut items = vec![
                    tag(),
                    Term::atom("members"),
                    Term::Atom(node.clone()),
                    Term::List(types.iter().map(|t| Term::from(t.as_str())).collect()),
                    Term::atom(if *ack { "true" } else { "false" }),
                ];
                items.extend(encoding.map(|e| Term::atom(e.name())));
                Term::Tuple(items)
            }
        }
    }

    /// `None`: not a protocol message. `Some(Err)`: tagged but malformed.
    pub fn parse(msg: &Term) -> Option<Result<Op, String>> {
        let t = msg.as_tuple()?;
        if t.len() < 2 || !t[0].is_atom(TAG) {
            return None;
        }
        Some(parse_tagged(t).ok_or_else(|| {
            let mut s = format!("{msg:?}");
            s.truncate(200);
            s
        }))
    }
}

/// The third element of a start reply, `{ok, Pid, handed_over}`: the
/// manager gave the target the handover that came with the request.
pub const HANDED_OVER: &str = "handed_over";

pub fn result_term(result: &Result<Pid, Term>) -> Term {
    match result {
        Ok(p) => Term::tuple([Term::atom("ok"), Term::Pid(p.clone())]),
        Err(e) => Term::tuple([Term::atom("error"), e.clone()]),
    }
}

fn parse_result(t: &Term) -> Option<Result<Pid, Term>> {
    match t.as_tuple()? {
        [ok, Term::Pid(p)] if ok.is_atom("ok") => Some(Ok(p.clone())),
        [e, reason] if e.is_atom("error") => Some(Err(reason.clone())),
        _ => None,
    }
}

fn parse_tagged(t: &[Term]) -> Option<Op> {
    let op = t[1].as_atom()?.as_str();
    if let ("members", [_, _, Term::Atom(node), Term::List(types), ack, rest @ ..]) = (op, t) {
        // A sixth element we do not know (a later encoding) is ignored,
        // not a malformed message: placement then follows the others.
        let encoding = match rest {
            [] => None,
            [e] => e.as_atom().and_then(|a| RingEncoding::from_name(a.as_str())),
            _ => return None,
        };
        let types = types
            .iter()
            .map(|x| match x {
                Term::Binary(b) => String::from_utf8(b.to_vec()).ok(),
                _ => None,
            })
            .collect::<Option<Vec<String>>>()?;
        return Some(Op::Members { node: node.clone(), types, ack: ack.is_atom("true"), encoding });
    }
    let reference = t.get(2)?.as_reference()?.clone();
    Some(match (op, &t[3..]) {
        ("begin", [Term::Atom(target), mode, reply_to]) => Op::Begin {
            reference,
            target: target.clone(),
            mode: Mode::from_term(mode)?,
            reply_to: reply_to.as_pid().cloned(),
        },
        ("handover", [state, Term::List(queue), Term::Pid(source)]) => {
            Op::Handover { reference, state: state.clone(), queue: queue.clone(), source: source.clone() }
        }
        ("accepted", [Term::Pid(target)]) => Op::Accepted { reference, target: target.clone() },
        ("rejected", [reason]) => Op::Rejected { reference, reason: reason.clone() },
        ("fwd", [Term::List(msgs)]) => Op::Fwd { reference, msgs: msgs.clone() },
        ("switched", []) => Op::Switched { reference },
        ("result", [r]) => Op::Result { reference, result: parse_result(r)? },
        _ => return None,
    })
}

/// Requests to a node's migration manager (`erlnode_migration`), sent as
/// `gen:call`s.
#[derive(Debug, Clone, PartialEq)]
pub enum Request {
    /// Start a target of `type_name` that waits for a handover. A
    /// process with its own replica setting sends it as an eighth
    /// element, `#{replicas => {N, sync | async}}` (without one the
    /// request keeps its old seven-element shape, which every release
    /// reads).
    ///
    /// A small handover rides along as `#{handover => {State, Queue}}` in
    /// the same map (docs/handoff.md, "The messages"): a manager that
    /// reads it gives the new target the handover itself and answers
    /// `{ok, Pid, handed_over}`, one round trip less for the source. A
    /// manager of an earlier release ignores the key and answers
    /// `{ok, Pid}`; the source then sends the handover as before.
    Start { type_name: String, args: Term, name: Atom, reference: Reference, source: Pid, replicas: Option<ReplicaConfig>, handover: Option<(Term, Vec<Term>)> },
    /// Move the process registered as `name` (hosted on the receiving
    /// node) to `target`.
    Migrate { name: Atom, target: Atom, mode: Mode },
    /// The processes hosted on the receiving node: `[{Name, Type}]`.
    Hosted,
    /// For `erlnode status`: `#{hosted => [{Name, Type}], in_flight => N,
    /// nodes => [Node]}`
    /// (every hosted process, pinned ones included; migrations this
    /// manager is waiting for).
    Status,
    /// Even out the processes of a type across the nodes hosting it;
    /// replies `{ok, Moved}` or `{error, Reason}`.
    Rebalance { type_name: String },
    /// Start a fresh process of `type_name` on the receiving node and
    /// register it globally as `name` (`erlnode bench` starts its
    /// throwaway processes so); replies `{ok, Pid}` or `{error, Reason}`,
    /// `{error, {unknown_type, Type}}` when the node does not host it.
    Spawn { type_name: String, args: Term, name: Atom },
}

impl Request {
    pub fn to_term(&self) -> Term {
        match self {
            Request::Start { type_name, args, name, reference, source, replicas, handover } => {
                let mut t = vec![
                    tag(),
                    Term::atom("start"),
                    Term::from(type_name.as_str()),
                    args.clone(),
                    Term::Atom(name.clone()),
                    Term::Ref(reference.clone()),
                    Term::Pid(source.clone()),
                ];
                let mut extra = vec![];
                if let Some(c) = replicas {
                    extra.push((Term::atom("replicas"), c.to_term()));
                }
                if let Some((state, queue)) = handover {
                    extra.push((Term::atom("handover"), Term::tuple([state.clone(), Term::List(queue.clone())])));
                }
                if !extra.is_empty() {
                    t.push(Term::Map(extra));
                }
                Term::Tuple(t)
            }
            Request::Migrate { name, target, mode } => {
                Term::tuple([tag(), Term::atom("migrate"), Term::Atom(name.clone()), Term::Atom(target.clone()), mode.to_term()])
            }
            Request::Hosted => Term::tuple([tag(), Term::atom("hosted")]),
            Request::Status => Term::tuple([tag(), Term::atom("status")]),
            Request::Rebalance { type_name } => Term::tuple([tag(), Term::atom("rebalance"), Term::from(type_name.as_str())]),
            Request::Spawn { type_name, args, name } => {
                Term::tuple([tag(), Term::atom("spawn"), Term::from(type_name.as_str()), args.clone(), Term::Atom(name.clone())])
            }
        }
    }

    pub fn parse(t: &Term) -> Option<Request> {
        match t.as_tuple()? {
            [tg, op, Term::Binary(ty), args, Term::Atom(name), Term::Ref(r), Term::Pid(s), extra @ ..] if tg.is_atom(TAG) && op.is_atom("start") && extra.len() <= 1 => {
                // Unknown keys of the extra map are ignored (a later
                // release may add some); a malformed setting refuses the
                // request rather than starting with the wrong one.
                let (replicas, handover) = match extra {
                    [] => (None, None),
                    [Term::Map(kv)] => {
                        let replicas = match kv.iter().find(|(k, _)| k.is_atom("replicas")) {
                            Some((_, v)) => Some(ReplicaConfig::from_term(v)?),
                            None => None,
                        };
                        let handover = match kv.iter().find(|(k, _)| k.is_atom("handover")) {
                            Some((_, v)) => match v.as_tuple() {
                                Some([state, Term::List(queue)]) => Some((state.clone(), queue.clone())),
                                _ => return None,
                            },
                            None => None,
                        };
                        (replicas, handover)
                    }
                    _ => return None,
                };
                Some(Request::Start {
                    type_name: String::from_utf8(ty.to_vec()).ok()?,
                    args: args.clone(),
                    name: name.clone(),
                    reference: r.clone(),
                    source: s.clone(),
                    replicas,
                    handover,
                })
            }
            [tg, op, Term::Atom(name), Term::Atom(target), mode] if tg.is_atom(TAG) && op.is_atom("migrate") => {
                Some(Request::Migrate { name: name.clone(), target: target.clone(), mode: Mode::from_term(mode)? })
            }
            [tg, op] if tg.is_atom(TAG) && op.is_atom("hosted") => Some(Request::Hosted),
            [tg, op] if tg.is_atom(TAG) && op.is_atom("status") => Some(Request::Status),
            [tg, op, Term::Binary(ty)] if tg.is_atom(TAG) && op.is_atom("rebalance") => {
                Some(Request::Rebalance { type_name: String::from_utf8(ty.to_vec()).ok()? })
            }
            [tg, op, Term::Binary(ty), args, Term::Atom(name)] if tg.is_atom(TAG) && op.is_atom("spawn") => {
                Some(Request::Spawn { type_name: String::from_utf8(ty.to_vec()).ok()?, args: args.clone(), name: name.clone() })
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
    fn rf() -> Reference {
        Reference { node: Atom::new("a@h"), creation: 3, ids: [1, 2, 3].into_iter().collect() }
    }

    #[test]
    fn ops_round_trip() {
        let ops = vec![
            Op::Begin { reference: rf(), target: Atom::new("b@h"), mode: Mode::Cold, reply_to: Some(pid()) },
            Op::Begin { reference: rf(), target: Atom::new("b@h"), mode: Mode::Hot, reply_to: None },
            Op::Handover { reference: rf(), state: Term::Int(1), queue: vec![Term::atom("x")], source: pid() },
            Op::Accepted { reference: rf(), target: pid() },
            Op::Rejected { reference: rf(), reason: Term::atom("bad") },
            Op::Fwd { reference: rf(), msgs: vec![] },
            Op::Switched { reference: rf() },
            Op::Result { reference: rf(), result: Err(Term::atom("timeout")) },
            Op::Members { node: Atom::new("b@h"), types: vec!["account".into()], ack: true, encoding: None },
            Op::Members { node: Atom::new("b@h"), types: vec![], ack: false, encoding: Some(RingEncoding::Otp25) },
        ];
        for op in ops {
            assert_eq!(Op::parse(&op.to_term()), Some(Ok(op.clone())));
        }
        let start = |replicas, handover| Request::Start {
            type_name: "account".into(),
            args: Term::nil(),
            name: Atom::new("acc"),
            reference: rf(),
            source: pid(),
            replicas,
            handover,
        };
        let reqs = vec![
            start(None, None),
            start(Some(ReplicaConfig { replicas: 2, mode: crate::migration::ReplicaMode::Async }), None),
            start(None, Some((Term::Int(5), vec![Term::atom("q")]))),
            start(Some(ReplicaConfig { replicas: 1, mode: crate::migration::ReplicaMode::Sync }), Some((Term::Int(5), vec![]))),
            Request::Migrate { name: Atom::new("acc"), target: Atom::new("b@h"), mode: Mode::Hot },
            Request::Hosted,
            Request::Status,
            Request::Rebalance { type_name: "account".into() },
            Request::Spawn { type_name: "erlnode_bench".into(), args: Term::Int(1024), name: Atom::new("b1") },
        ];
        for r in reqs {
            assert_eq!(Request::parse(&r.to_term()), Some(r.clone()));
        }
    }

    #[test]
    fn foreign_and_malformed() {
        assert_eq!(Op::parse(&Term::atom("hello")), None);
        assert_eq!(Op::parse(&Term::tuple([Term::atom("process_hub"), Term::atom("handover_confirmed")])), None);
        assert!(matches!(Op::parse(&Term::tuple([Term::atom(TAG), Term::atom("begin")])), Some(Err(_))));
        assert!(matches!(Op::parse(&Term::tuple([Term::atom(TAG), Term::atom("nope"), Term::Ref(rf())])), Some(Err(_))));
    }
}
