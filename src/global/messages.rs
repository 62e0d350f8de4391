//! The wire shapes of global's protocol (OTP 25 kernel/global.erl,
//! version 8), both ways.
//!
//! Parsing is strict: a BEAM peer never sends a malformed global message,
//! so anything that does not match a known shape exactly comes from a
//! broken or hostile peer and is dropped with a warning, never acted on.
//! Building is the only place outgoing tuples are made, so every shape
//! erlnode sends is visible in this file (notes/global.md lists which
//! wrong shapes halt a BEAM node).

use crate::term::{Atom, Pid, Reference, Term};

/// The protocol version erlnode speaks (global.erl `-define(vsn, 8)`).
pub(crate) const VSN: u32 = 8;
/// From this version on, peers propagate versions and run
/// "prevent overlapping partitions" (`pop_vsn`, `pgpv_vsn`).
pub(crate) const POP_VSN: u32 = 7;
/// From this version on, init_connect is acknowledged and cancel_connect
/// exists (`verify_connect_vsn`).
pub(crate) const VERIFY_CONNECT_VSN: u32 = 8;

/// One name as exchanged: `{Name, Pid, Method}`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct NameInfo {
    pub name: Term,
    pub pid: Pid,
    /// A fun, kept as received (bytes) and re-sent unchanged.
    pub method: Term,
}

/// A name-table operation computed by a resolver.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Op {
    Insert(NameInfo),
    Delete(Term),
}

/// An entry of a known-nodes list: `Node` (old peers) or `{Node, Vsn}`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct KnownNode {
    pub node: Atom,
    /// 0: version not known.
    pub vsn: u32,
}

/// `{Name, Pid, RegNode}`: a name registered for a foreign (C) node.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ExtName {
    pub name: Term,
    pub pid: Pid,
    pub reg_node: Atom,
}

/// A `gen_server:call` request to global_name_server.
#[derive(Debug)]
pub(crate) enum Call {
    Register(NameInfo),
    Unregister(Term),
    RegisterExt { info: NameInfo, reg_node: Atom },
    SetLock { res: Term, req: Term },
    DelLock { res: Term, req: Term },
    GetKnown,
    GetSynced,
    Sync(Vec<Atom>),
    GetProtocolVersion,
    GetNamesExt,
    /// A known request with a wrong shape, named for the log. Answered
    /// with the value that is harmless for that request.
    Malformed { what: &'static str, reply: Term },
    Unknown(Term),
}

/// A `gen_server:cast` to global_name_server.
#[derive(Debug)]
pub(crate) enum Cast {
    InitConnect { his_vsn: u32, vsn: u32, his_tag: Term, node: Atom, his_locker: Pid },
    Exchange { node: Atom, names: Vec<NameInfo>, tag: Term },
    Resolved { node: Atom, ops: Vec<Op>, known: Vec<KnownNode>, names_ext: Vec<ExtName>, tag: Term },
    NewNodes { node: Atom, ops: Vec<Op>, names_ext: Vec<ExtName>, nodes: Vec<KnownNode>, extra: Term },
    InSync { node: Atom },
    /// `tag: None` is the version 6-7 four-tuple form.
    LockSet { pid: Pid, set: bool, tag: Option<Term> },
    /// `async_del_name` / `async_del_lock`: pre-R14 leftovers, ignored.
    Obsolete,
}

/// A plain message to global_name_server.
#[derive(Debug)]
pub(crate) enum Info {
    Whereis { name: Term, from: Term },
    LostConnection { node_a: Atom, xcreation: Term, op_id: Term, node_b: Atom },
    RemoveConnection { node: Atom },
    CancelConnect { node: Atom, tag: Term },
    InitConnectAck { node: Atom, his_my_tag: Term, his_his_tag: Term },
    PrepareShutdown { from: Pid, tag: Term },
    Down { reference: Reference },
    /// A linked process ended (the server traps exits).
    Exit { pid: Pid, reason: Term },
}

/// Everything global_name_server can receive from outside.
#[derive(Debug)]
pub(crate) enum Incoming {
    Call { from: Term, caller: Pid, call: Call },
    Cast(Cast),
    Info(Info),
}

/// Why a message was dropped.
#[derive(Debug, PartialEq)]
pub(crate) struct Malformed(pub String);

fn bad<T>(what: impl Into<String>) -> Result<T, Malformed> {
    Err(Malformed(what.into()))
}

fn atom(t: &Term, what: &str) -> Result<Atom, Malformed> {
    t.as_atom().cloned().ok_or_else(|| Malformed(format!("{what} is not an atom: {t:?}")))
}

fn pid(t: &Term, what: &str) -> Result<Pid, Malformed> {
    t.as_pid().cloned().ok_or_else(|| Malformed(format!("{what} is not a pid: {t:?}")))
}

fn list<'a>(t: &'a Term, what: &str) -> Result<&'a [Term], Malformed> {
    match t {
        Term::List(l) => Ok(l),
        _ => bad(format!("{what} is not a proper list: {t:?}")),
    }
}

fn is_integer(t: &Term) -> bool {
    matches!(t, Term::Int(_) | Term::Big(_))
}

fn small_vsn(t: &Term) -> Option<u32> {
    match t {
        Term::Int(v) if *v >= 0 => Some((*v).min(u32::MAX as i64) as u32),
        Term::Big(b) if b.sign() == num_bigint::Sign::Plus => Some(u32::MAX),
        _ => None,
    }
}

/// Parses any message that arrived in global_name_server's mailbox.
pub(crate) fn parse(msg: &Term) -> Result<Incoming, Malformed> {
    let Some(t) = msg.as_tuple() else { return bad(format!("not a tuple: {msg:?}")) };
    match t {
        [tag, from, req] if tag.is_atom("$gen_call") => {
            let Some([Term::Pid(caller), _]) = from.as_tuple() else { return bad(format!("call with a malformed From: {from:?}")) };
            Ok(Incoming::Call { from: from.clone(), caller: caller.clone(), call: parse_call(req) })
        }
        [tag, body] if tag.is_atom("$gen_cast") => parse_cast(body).map(Incoming::Cast),
        _ => parse_info(t).map(Incoming::Info),
    }
}

fn parse_call(req: &Term) -> Call {
    let malformed = |what, reply| Call::Malformed { what, reply };
    let Some(t) = req.as_tuple() else {
        return match req.as_atom().map(|a| a.as_str()) {
            Some("get_known") => Call::GetKnown,
            Some("get_synced") => Call::GetSynced,
            Some("get_protocol_version") => Call::GetProtocolVersion,
            Some("get_names_ext") => Call::GetNamesExt,
            _ => Call::Unknown(req.clone()),
        };
    };
    let Some(tag) = t.first().and_then(|x| x.as_atom()) else { return Call::Unknown(req.clone()) };
    match (tag.as_str(), t) {
        ("register", [_, name, p, method]) => match p {
            Term::Pid(p) => Call::Register(NameInfo { name: name.clone(), pid: p.clone(), method: method.clone() }),
            _ => malformed("register with a non-pid", Term::atom("no")),
        },
        ("register", _) => malformed("register of the wrong arity", Term::atom("no")),
        ("unregister", [_, name]) => Call::Unregister(name.clone()),
        ("unregister", _) => malformed("unregister of the wrong arity", Term::atom("ok")),
        ("register_ext", [_, name, p, method, reg]) => match (p, reg) {
            (Term::Pid(p), Term::Atom(reg)) => Call::RegisterExt {
                info: NameInfo { name: name.clone(), pid: p.clone(), method: method.clone() },
                reg_node: reg.clone(),
            },
            _ => malformed("register_ext with a non-pid or a non-atom node", Term::atom("no")),
        },
        ("register_ext", _) => malformed("register_ext of the wrong arity", Term::atom("no")),
        // Only `true` or `false` may answer set_lock: anything else
        // crashes the caller's locker and with it the BEAM node.
        ("set_lock", [_, lock]) => match lock.as_tuple() {
            Some([res, req]) => Call::SetLock { res: res.clone(), req: req.clone() },
            _ => malformed("set_lock with a lock that is not {ResourceId, RequesterId}", Term::atom("false")),
        },
        ("set_lock", _) => malformed("set_lock of the wrong arity", Term::atom("false")),
        ("del_lock", [_, lock]) => match lock.as_tuple() {
            Some([res, req]) => Call::DelLock { res: res.clone(), req: req.clone() },
            _ => malformed("del_lock with a lock that is not {ResourceId, RequesterId}", Term::atom("true")),
        },
        ("del_lock", _) => malformed("del_lock of the wrong arity", Term::atom("true")),
        ("sync", [_, nodes]) => match nodes {
            Term::List(l) if l.iter().all(|n| n.as_atom().is_some()) => {
                Call::Sync(l.iter().filter_map(|n| n.as_atom().cloned()).collect())
            }
            _ => malformed("sync with a node list that is not a list of atoms", Term::atom("ok")),
        },
        _ => Call::Unknown(req.clone()),
    }
}

fn parse_cast(body: &Term) -> Result<Cast, Malformed> {
    let Some(t) = body.as_tuple() else { return bad(format!("cast that is not a tuple: {body:?}")) };
    let Some(tag) = t.first().and_then(|x| x.as_atom()) else { return bad(format!("cast without an atom tag: {body:?}")) };
    match (tag.as_str(), t) {
        ("init_connect", [_, vsn, node, init_msg]) => parse_init_connect(vsn, node, init_msg),
        ("exchange", [_, node, names, _ext, tag]) => Ok(Cast::Exchange {
            node: atom(node, "exchange node")?,
            names: name_infos(names, "exchange names")?,
            tag: tag.clone(),
        }),
        ("resolved", [_, node, ops, known, _unused, ext, tag]) => Ok(Cast::Resolved {
            node: atom(node, "resolved node")?,
            ops: ops_list(ops)?,
            known: known_list(known)?,
            names_ext: ext_names(ext)?,
            tag: tag.clone(),
        }),
        ("new_nodes", [_, node, ops, ext, nodes, extra]) => Ok(Cast::NewNodes {
            node: atom(node, "new_nodes node")?,
            ops: ops_list(ops)?,
            names_ext: ext_names(ext)?,
            nodes: known_list(nodes)?,
            extra: extra.clone(),
        }),
        ("in_sync", [_, node, _is_known]) => Ok(Cast::InSync { node: atom(node, "in_sync node")? }),
        ("lock_set", [_, p, set, _known, tag]) => {
            Ok(Cast::LockSet { pid: pid(p, "lock_set locker")?, set: boolean(set)?, tag: Some(tag.clone()) })
        }
        ("lock_set", [_, p, set, _known]) => Ok(Cast::LockSet { pid: pid(p, "lock_set locker")?, set: boolean(set)?, tag: None }),
        ("async_del_name", [_, _, _]) | ("async_del_lock", [_, _, _]) => Ok(Cast::Obsolete),
        _ => bad(format!("unknown cast or wrong arity: {body:?}")),
    }
}

fn boolean(t: &Term) -> Result<bool, Malformed> {
    match t {
        t if t.is_atom("true") => Ok(true),
        t if t.is_atom("false") => Ok(false),
        _ => bad(format!("not a boolean: {t:?}")),
    }
}

fn parse_init_connect(vsn: &Term, node: &Term, init_msg: &Term) -> Result<Cast, Malformed> {
    let node = atom(node, "init_connect node")?;
    // `{HisVsn, HisTag}`, or a longer tuple from a future version whose
    // first two elements are those.
    let (his_vsn, his_tag, longer) = match vsn.as_tuple() {
        Some([v, tag]) => (v, tag, false),
        Some([v, tag, ..]) => (v, tag, true),
        _ => return bad(format!("init_connect version is not a tuple: {vsn:?}")),
    };
    let Some(his_vsn) = small_vsn(his_vsn) else { return bad(format!("init_connect version is not an integer: {his_vsn:?}")) };
    // A version below 5 makes the BEAM's locker crash; refuse it here.
    if his_vsn < 5 {
        return bad(format!("init_connect with protocol version {his_vsn} (5 or later required)"));
    }
    let v = if longer { VSN } else { his_vsn.min(VSN) };
    let Some([tag, _not_a_pid, _known, locker]) = init_msg.as_tuple() else {
        return bad(format!("init_connect message is not {{locker, _, _, Pid}}: {init_msg:?}"));
    };
    if !tag.is_atom("locker") {
        return bad(format!("init_connect message is not {{locker, _, _, Pid}}: {init_msg:?}"));
    }
    let his_locker = pid(locker, "init_connect locker")?;
    if his_locker.node != node {
        return bad(format!("init_connect from {node} names a locker on {}", his_locker.node));
    }
    Ok(Cast::InitConnect { his_vsn, vsn: v, his_tag: his_tag.clone(), node, his_locker })
}

fn name_info(t: &Term) -> Result<NameInfo, Malformed> {
    match t.as_tuple() {
        Some([name, Term::Pid(p), method]) => Ok(NameInfo { name: name.clone(), pid: p.clone(), method: method.clone() }),
        _ => bad(format!("name entry is not {{Name, Pid, Method}}: {t:?}")),
    }
}

fn name_infos(t: &Term, what: &str) -> Result<Vec<NameInfo>, Malformed> {
    list(t, what)?.iter().map(name_info).collect()
}

fn op(t: &Term) -> Result<Op, Malformed> {
    match t.as_tuple() {
        Some([tag, info]) if tag.is_atom("insert") => Ok(Op::Insert(name_info(info)?)),
        Some([tag, name]) if tag.is_atom("delete") => Ok(Op::Delete(name.clone())),
        _ => bad(format!("operation is neither {{insert, _}} nor {{delete, _}}: {t:?}")),
    }
}

fn ops_list(t: &Term) -> Result<Vec<Op>, Malformed> {
    list(t, "operations")?.iter().map(op).collect()
}

fn known_list(t: &Term) -> Result<Vec<KnownNode>, Malformed> {
    list(t, "known nodes")?
        .iter()
        .map(|k| match k {
            Term::Atom(a) => Ok(KnownNode { node: a.clone(), vsn: 0 }),
            Term::Tuple(p) => match p.as_slice() {
                [Term::Atom(a), v] => match small_vsn(v) {
                    Some(vsn) => Ok(KnownNode { node: a.clone(), vsn }),
                    None => bad(format!("known node version is not an integer: {k:?}")),
                },
                _ => bad(format!("known node is not Node or {{Node, Vsn}}: {k:?}")),
            },
            _ => bad(format!("known node is not Node or {{Node, Vsn}}: {k:?}")),
        })
        .collect()
}

fn ext_names(t: &Term) -> Result<Vec<ExtName>, Malformed> {
    list(t, "external names")?
        .iter()
        .map(|e| match e.as_tuple() {
            Some([name, Term::Pid(p), Term::Atom(reg)]) => Ok(ExtName { name: name.clone(), pid: p.clone(), reg_node: reg.clone() }),
            _ => bad(format!("external name is not {{Name, Pid, RegNode}}: {e:?}")),
        })
        .collect()
}

fn parse_info(t: &[Term]) -> Result<Info, Malformed> {
    let Some(tag) = t.first().and_then(|x| x.as_atom()) else { return bad(format!("message without an atom tag: {t:?}")) };
    match (tag.as_str(), t) {
        ("whereis", [_, name, from]) => match from.as_tuple() {
            Some([Term::Pid(_), _]) => Ok(Info::Whereis { name: name.clone(), from: from.clone() }),
            _ => bad(format!("whereis with a malformed From: {from:?}")),
        },
        ("lost_connection", [_, a, xcre, op_id, b]) => {
            if !is_integer(xcre) || !is_integer(op_id) {
                return bad(format!("lost_connection with non-integer ids: {t:?}"));
            }
            Ok(Info::LostConnection {
                node_a: atom(a, "lost_connection node")?,
                xcreation: xcre.clone(),
                op_id: op_id.clone(),
                node_b: atom(b, "lost_connection node")?,
            })
        }
        ("remove_connection", [_, n]) => Ok(Info::RemoveConnection { node: atom(n, "remove_connection node")? }),
        ("cancel_connect", [_, n, tag]) => Ok(Info::CancelConnect { node: atom(n, "cancel_connect node")?, tag: tag.clone() }),
        ("init_connect_ack", [_, n, a, b]) => {
            Ok(Info::InitConnectAck { node: atom(n, "init_connect_ack node")?, his_my_tag: a.clone(), his_his_tag: b.clone() })
        }
        ("prepare_shutdown", [_, from, tag]) => Ok(Info::PrepareShutdown { from: pid(from, "prepare_shutdown From")?, tag: tag.clone() }),
        ("DOWN", [_, Term::Ref(r), kind, _, _]) if kind.is_atom("process") => Ok(Info::Down { reference: r.clone() }),
        ("EXIT", [_, Term::Pid(p), reason]) => Ok(Info::Exit { pid: p.clone(), reason: reason.clone() }),
        _ => bad(format!("unknown message or wrong arity: {t:?}")),
    }
}

// ---------------------------------------------------------------------
// Outgoing shapes. Only these are ever sent to a peer's global.

pub(crate) fn cast(msg: Term) -> Term {
    Term::tuple([Term::atom("$gen_cast"), msg])
}

pub(crate) fn gen_call(from: &Pid, tag: Term, req: Term) -> Term {
    Term::tuple([Term::atom("$gen_call"), Term::tuple([Term::Pid(from.clone()), tag]), req])
}

impl NameInfo {
    pub fn to_term(&self) -> Term {
        Term::tuple([self.name.clone(), Term::Pid(self.pid.clone()), self.method.clone()])
    }
}

impl Op {
    pub fn to_term(&self) -> Term {
        match self {
            Op::Insert(i) => Term::tuple([Term::atom("insert"), i.to_term()]),
            Op::Delete(n) => Term::tuple([Term::atom("delete"), n.clone()]),
        }
    }
}

impl ExtName {
    pub fn to_term(&self) -> Term {
        Term::tuple([self.name.clone(), Term::Pid(self.pid.clone()), Term::Atom(self.reg_node.clone())])
    }
}

pub(crate) fn ops_term(ops: &[Op]) -> Term {
    Term::List(ops.iter().map(Op::to_term).collect())
}

pub(crate) fn ext_term(ext: &[ExtName]) -> Term {
    Term::List(ext.iter().map(ExtName::to_term).collect())
}

/// `[{Node, Vsn}]` for peers of version 7 and later, `[Node]` before.
pub(crate) fn known_term(known: &[KnownNode], with_vsn: bool) -> Term {
    Term::List(
        known
            .iter()
            .map(|k| if with_vsn { Term::tuple([Term::Atom(k.node.clone()), Term::Int(k.vsn as i64)]) } else { Term::Atom(k.node.clone()) })
            .collect(),
    )
}

pub(crate) fn atoms_term(nodes: &[Atom]) -> Term {
    Term::List(nodes.iter().cloned().map(Term::Atom).collect())
}

/// `{init_connect, {8, MyTag}, Me, {locker, no_longer_a_pid, [], Locker}}`.
pub(crate) fn init_connect(my_tag: &Term, me: &Atom, locker: &Pid) -> Term {
    cast(Term::tuple([
        Term::atom("init_connect"),
        Term::tuple([Term::Int(VSN as i64), my_tag.clone()]),
        Term::Atom(me.clone()),
        Term::tuple([Term::atom("locker"), Term::atom("no_longer_a_pid"), Term::nil(), Term::Pid(locker.clone())]),
    ]))
}

pub(crate) fn init_connect_ack(me: &Atom, his_tag: &Term, my_tag: &Term) -> Term {
    Term::tuple([Term::atom("init_connect_ack"), Term::Atom(me.clone()), his_tag.clone(), my_tag.clone()])
}

pub(crate) fn cancel_connect(me: &Atom, his_tag: &Term) -> Term {
    Term::tuple([Term::atom("cancel_connect"), Term::Atom(me.clone()), his_tag.clone()])
}

pub(crate) fn exchange(me: &Atom, names: Vec<Term>, his_tag: &Term) -> Term {
    cast(Term::tuple([Term::atom("exchange"), Term::Atom(me.clone()), Term::List(names), Term::nil(), his_tag.clone()]))
}

pub(crate) fn resolved(me: &Atom, resolved: &[Op], known: Term, ext: &[ExtName], his_tag: &Term) -> Term {
    cast(Term::tuple([
        Term::atom("resolved"),
        Term::Atom(me.clone()),
        ops_term(resolved),
        known,
        Term::atom("unused"),
        ext_term(ext),
        his_tag.clone(),
    ]))
}

pub(crate) fn new_nodes(me: &Atom, ops: &[Op], ext: &[ExtName], nodes: Term, extra: Term) -> Term {
    cast(Term::tuple([Term::atom("new_nodes"), Term::Atom(me.clone()), ops_term(ops), ext_term(ext), nodes, extra]))
}

pub(crate) fn in_sync(me: &Atom) -> Term {
    cast(Term::tuple([Term::atom("in_sync"), Term::Atom(me.clone()), Term::atom("true")]))
}

/// `{lock_set, Locker, IsSet, Known, HisTag}` (version 8) or the
/// four-tuple without the tag (versions 6-7).
pub(crate) fn lock_set(locker: &Pid, set: bool, known: &[Atom], his_tag: Option<&Term>) -> Term {
    let mut t = vec![Term::atom("lock_set"), Term::Pid(locker.clone()), Term::atom(if set { "true" } else { "false" }), atoms_term(known)];
    if let Some(tag) = his_tag {
        t.push(tag.clone());
    }
    Term::Tuple(t)
}

pub(crate) fn lost_connection(node_a: &Atom, xcreation: &Term, op_id: &Term, node_b: &Atom) -> Term {
    Term::tuple([Term::atom("lost_connection"), Term::Atom(node_a.clone()), xcreation.clone(), op_id.clone(), Term::Atom(node_b.clone())])
}

pub(crate) fn remove_connection(me: &Atom) -> Term {
    Term::tuple([Term::atom("remove_connection"), Term::Atom(me.clone())])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(node: &str, id: u32) -> Pid {
        Pid { node: Atom::new(node), id, serial: 0, creation: 1 }
    }

    #[test]
    fn init_connect_round_trip_and_versions() {
        let me = Atom::new("r@h");
        let msg = init_connect(&Term::Int(7), &me, &p("r@h", 70));
        let Incoming::Cast(Cast::InitConnect { his_vsn, vsn, his_tag, node, his_locker }) = parse(&msg).unwrap() else { panic!() };
        assert_eq!((his_vsn, vsn, his_tag, node, his_locker), (8, 8, Term::Int(7), me.clone(), p("r@h", 70)));
        // a future version with a longer tuple: we answer with ours
        let future = cast(Term::tuple([
            Term::atom("init_connect"),
            Term::tuple([Term::Int(9), Term::Int(1), Term::atom("x")]),
            Term::Atom(me.clone()),
            Term::tuple([Term::atom("locker"), Term::atom("no_longer_a_pid"), Term::nil(), Term::Pid(p("r@h", 70))]),
        ]));
        assert!(matches!(parse(&future), Ok(Incoming::Cast(Cast::InitConnect { his_vsn: 9, vsn: 8, .. }))));
        // version 4 and a non-pid locker are refused
        let old = cast(Term::tuple([
            Term::atom("init_connect"),
            Term::tuple([Term::Int(4), Term::Int(1)]),
            Term::Atom(me.clone()),
            Term::tuple([Term::atom("locker"), Term::atom("x"), Term::nil(), Term::Pid(p("r@h", 70))]),
        ]));
        assert!(parse(&old).is_err());
        let nopid = cast(Term::tuple([
            Term::atom("init_connect"),
            Term::tuple([Term::Int(8), Term::Int(1)]),
            Term::Atom(me),
            Term::tuple([Term::atom("locker"), Term::atom("x"), Term::nil(), Term::atom("nopid")]),
        ]));
        assert!(parse(&nopid).is_err());
    }

    #[test]
    fn malformed_calls_get_harmless_replies() {
        let from = Term::tuple([Term::Pid(p("e@h", 1)), Term::Int(1)]);
        let call = |req: Term| parse(&Term::tuple([Term::atom("$gen_call"), from.clone(), req])).unwrap();
        let Incoming::Call { call: Call::Malformed { reply, .. }, .. } = call(Term::tuple([Term::atom("set_lock"), Term::atom("x")])) else {
            panic!()
        };
        assert_eq!(reply, Term::atom("false"));
        let Incoming::Call { call: Call::Malformed { reply, .. }, .. } =
            call(Term::tuple([Term::atom("register"), Term::atom("n"), Term::atom("notpid"), Term::atom("m")]))
        else {
            panic!()
        };
        assert_eq!(reply, Term::atom("no"));
        assert!(matches!(call(Term::atom("weird")), Incoming::Call { call: Call::Unknown(_), .. }));
        // a From without a pid cannot be answered: dropped
        assert!(parse(&Term::tuple([Term::atom("$gen_call"), Term::atom("x"), Term::atom("get_known")])).is_err());
    }

    #[test]
    fn ops_and_known_lists_are_validated() {
        let good = Term::List(vec![
            Op::Insert(NameInfo { name: Term::atom("a"), pid: p("e@h", 3), method: Term::atom("m") }).to_term(),
            Op::Delete(Term::atom("b")).to_term(),
        ]);
        assert_eq!(ops_list(&good).unwrap().len(), 2);
        let badop = Term::List(vec![Term::tuple([Term::atom("insert"), Term::tuple([Term::atom("a"), Term::atom("nopid"), Term::atom("m")])])]);
        assert!(ops_list(&badop).is_err());
        let known = Term::List(vec![Term::atom("a@h"), Term::tuple([Term::atom("b@h"), Term::Int(8)])]);
        assert_eq!(known_list(&known).unwrap(), vec![KnownNode { node: Atom::new("a@h"), vsn: 0 }, KnownNode { node: Atom::new("b@h"), vsn: 8 }]);
        assert!(known_list(&Term::List(vec![Term::Int(1)])).is_err());
        assert!(known_list(&Term::atom("x")).is_err());
    }
}
