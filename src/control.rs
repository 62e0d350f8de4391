//! Distribution control messages: the first term of every frame, telling
//! the receiving node what to do with the (optional) payload term after it.
//!
//! Decoding is total: any tuple that is not one of the shapes below
//! becomes an error the connection logs and drops, never a panic.

use crate::term::{Atom, Pid, Reference, Term};

pub mod op {
    pub const LINK: i64 = 1;
    pub const SEND: i64 = 2;
    pub const EXIT: i64 = 3;
    pub const UNLINK: i64 = 4;
    pub const REG_SEND: i64 = 6;
    pub const GROUP_LEADER: i64 = 7;
    pub const EXIT2: i64 = 8;
    pub const SEND_TT: i64 = 12;
    pub const EXIT_TT: i64 = 13;
    pub const REG_SEND_TT: i64 = 16;
    pub const EXIT2_TT: i64 = 18;
    pub const MONITOR_P: i64 = 19;
    pub const DEMONITOR_P: i64 = 20;
    pub const MONITOR_P_EXIT: i64 = 21;
    pub const SEND_SENDER: i64 = 22;
    pub const SEND_SENDER_TT: i64 = 23;
    pub const PAYLOAD_EXIT: i64 = 24;
    pub const PAYLOAD_EXIT_TT: i64 = 25;
    pub const PAYLOAD_EXIT2: i64 = 26;
    pub const PAYLOAD_EXIT2_TT: i64 = 27;
    pub const PAYLOAD_MONITOR_P_EXIT: i64 = 28;
    pub const SPAWN_REQUEST: i64 = 29;
    pub const SPAWN_REQUEST_TT: i64 = 30;
    pub const SPAWN_REPLY: i64 = 31;
    pub const SPAWN_REPLY_TT: i64 = 32;
    pub const ALIAS_SEND: i64 = 33;
    pub const ALIAS_SEND_TT: i64 = 34;
    pub const UNLINK_ID: i64 = 35;
    pub const UNLINK_ID_ACK: i64 = 36;
}

/// The target of a monitor: a pid, or a registered name on the
/// receiving node.
#[derive(Debug, Clone, PartialEq)]
pub enum MonitorTarget {
    Pid(Pid),
    Name(Atom),
}

/// A decoded control message. Trace tokens (`_TT` forms) are accepted
/// and dropped: erlnode does not implement sequential tracing. Exit
/// reasons carried in the payload (`PAYLOAD_*` forms) are folded into
/// `reason`, so that callers see one shape whichever form the peer used.
#[derive(Debug, Clone, PartialEq)]
pub enum Control {
    Link { from: Pid, to: Pid },
    Send { to: Pid, msg: Term },
    SendSender { from: Pid, to: Pid, msg: Term },
    RegSend { from: Pid, to: Atom, msg: Term },
    AliasSend { from: Pid, alias: Reference, msg: Term },
    Exit { from: Pid, to: Pid, reason: Term },
    Exit2 { from: Pid, to: Pid, reason: Term },
    Unlink { from: Pid, to: Pid },
    UnlinkId { id: u64, from: Pid, to: Pid },
    UnlinkIdAck { id: u64, from: Pid, to: Pid },
    GroupLeader { from: Pid, to: Pid },
    Monitor { from: Pid, target: MonitorTarget, reference: Reference },
    Demonitor { from: Pid, target: MonitorTarget, reference: Reference },
    MonitorExit { from: Term, to: Pid, reference: Reference, reason: Term },
    SpawnRequest { req_id: Reference, from: Pid, group_leader: Pid, module: Atom, function: Atom, arity: i64, opts: Term, args: Term },
    SpawnReply { req_id: Reference, to: Pid, flags: i64, result: Term },
}

#[derive(Debug, thiserror::Error, PartialEq)]
#[error("malformed control message: {0}")]
pub struct ControlError(pub String);

fn bad<T>(what: &str, t: &Term) -> Result<T, ControlError> {
    let mut s = format!("{what}: {t:?}");
    s.truncate(300);
    Err(ControlError(s))
}

fn pid(t: &Term) -> Result<Pid, ControlError> {
    t.as_pid().cloned().map_or_else(|| bad("expected a pid", t), Ok)
}
fn reference(t: &Term) -> Result<Reference, ControlError> {
    t.as_reference().cloned().map_or_else(|| bad("expected a reference", t), Ok)
}
fn atom(t: &Term) -> Result<Atom, ControlError> {
    t.as_atom().cloned().map_or_else(|| bad("expected an atom", t), Ok)
}
fn int(t: &Term) -> Result<i64, ControlError> {
    t.as_int().map_or_else(|| bad("expected an integer", t), Ok)
}
fn target(t: &Term) -> Result<MonitorTarget, ControlError> {
    match t {
        Term::Pid(p) => Ok(MonitorTarget::Pid(p.clone())),
        Term::Atom(a) => Ok(MonitorTarget::Name(a.clone())),
        _ => bad("expected a pid or an atom", t),
    }
}

impl Control {
    /// Builds a control message from the control tuple and the payload
    /// term that followed it in the frame (if any).
    pub fn from_terms(ctl: Term, payload: Option<Term>) -> Result<Control, ControlError> {
        let Term::Tuple(t) = &ctl else {
            return bad("control is not a tuple", &ctl);
        };
        let Some(opcode) = t.first().and_then(Term::as_int) else {
            return bad("control has no integer opcode", &ctl);
        };
        let need = |n: usize| -> Result<(), ControlError> {
            if t.len() == n {
                Ok(())
            } else {
                bad(&format!("opcode {opcode} needs {n} elements"), &ctl)
            }
        };
        let need_payload = |p: Option<Term>| -> Result<Term, ControlError> {
            p.ok_or_else(|| ControlError(format!("opcode {opcode} without its payload term")))
        };
        use op::*;
        Ok(match opcode {
            LINK => {
                need(3)?;
                Control::Link { from: pid(&t[1])?, to: pid(&t[2])? }
            }
            SEND | SEND_TT => {
                need(if opcode == SEND { 3 } else { 4 })?;
                Control::Send { to: pid(&t[2])?, msg: need_payload(payload)? }
            }
            SEND_SENDER | SEND_SENDER_TT => {
                need(if opcode == SEND_SENDER { 3 } else { 4 })?;
                Control::SendSender { from: pid(&t[1])?, to: pid(&t[2])?, msg: need_payload(payload)? }
            }
            REG_SEND | REG_SEND_TT => {
                need(if opcode == REG_SEND { 4 } else { 5 })?;
                Control::RegSend { from: pid(&t[1])?, to: atom(&t[3])?, msg: need_payload(payload)? }
            }
            ALIAS_SEND | ALIAS_SEND_TT => {
                need(if opcode == ALIAS_SEND { 3 } else { 4 })?;
                Control::AliasSend { from: pid(&t[1])?, alias: reference(&t[2])?, msg: need_payload(payload)? }
            }
            EXIT | EXIT_TT => {
                need(if opcode == EXIT { 4 } else { 5 })?;
                Control::Exit { from: pid(&t[1])?, to: pid(&t[2])?, reason: t[t.len() - 1].clone() }
            }
            PAYLOAD_EXIT | PAYLOAD_EXIT_TT => {
                need(if opcode == PAYLOAD_EXIT { 3 } else { 4 })?;
                Control::Exit { from: pid(&t[1])?, to: pid(&t[2])?, reason: need_payload(payload)? }
            }
            EXIT2 | EXIT2_TT => {
                need(if opcode == EXIT2 { 4 } else { 5 })?;
                Control::Exit2 { from: pid(&t[1])?, to: pid(&t[2])?, reason: t[t.len() - 1].clone() }
            }
            PAYLOAD_EXIT2 | PAYLOAD_EXIT2_TT => {
                need(if opcode == PAYLOAD_EXIT2 { 3 } else { 4 })?;
                Control::Exit2 { from: pid(&t[1])?, to: pid(&t[2])?, reason: need_payload(payload)? }
            }
            UNLINK => {
                need(3)?;
                Control::Unlink { from: pid(&t[1])?, to: pid(&t[2])? }
            }
            UNLINK_ID | UNLINK_ID_ACK => {
                need(4)?;
                let id = match &t[1] {
                    Term::Int(i) if *i >= 0 => *i as u64,
                    Term::Big(b) => u64::try_from(b).map_err(|_| ControlError("unlink id out of range".into()))?,
                    other => return bad("expected an unlink id", other),
                };
                let (from, to) = (pid(&t[2])?, pid(&t[3])?);
                if opcode == UNLINK_ID {
                    Control::UnlinkId { id, from, to }
                } else {
                    Control::UnlinkIdAck { id, from, to }
                }
            }
            GROUP_LEADER => {
                need(3)?;
                Control::GroupLeader { from: pid(&t[1])?, to: pid(&t[2])? }
            }
            MONITOR_P => {
                need(4)?;
                Control::Monitor { from: pid(&t[1])?, target: target(&t[2])?, reference: reference(&t[3])? }
            }
            DEMONITOR_P => {
                need(4)?;
                Control::Demonitor { from: pid(&t[1])?, target: target(&t[2])?, reference: reference(&t[3])? }
            }
            MONITOR_P_EXIT => {
                need(5)?;
                Control::MonitorExit { from: t[1].clone(), to: pid(&t[2])?, reference: reference(&t[3])?, reason: t[4].clone() }
            }
            PAYLOAD_MONITOR_P_EXIT => {
                need(4)?;
                Control::MonitorExit {
                    from: t[1].clone(),
                    to: pid(&t[2])?,
                    reference: reference(&t[3])?,
                    reason: need_payload(payload)?,
                }
            }
            SPAWN_REQUEST | SPAWN_REQUEST_TT => {
                need(if opcode == SPAWN_REQUEST { 6 } else { 7 })?;
                let Some([m, f, a]) = t[4].as_tuple().and_then(|x| <&[Term; 3]>::try_from(x).ok()) else {
                    return bad("expected {M, F, Arity}", &t[4]);
                };
                Control::SpawnRequest {
                    req_id: reference(&t[1])?,
                    from: pid(&t[2])?,
                    group_leader: pid(&t[3])?,
                    module: atom(m)?,
                    function: atom(f)?,
                    arity: int(a)?,
                    opts: t[5].clone(),
                    args: need_payload(payload)?,
                }
            }
            SPAWN_REPLY | SPAWN_REPLY_TT => {
                need(if opcode == SPAWN_REPLY { 5 } else { 6 })?;
                Control::SpawnReply { req_id: reference(&t[1])?, to: pid(&t[2])?, flags: int(&t[3])?, result: t[4].clone() }
            }
            _ => return bad("unknown opcode", &ctl),
        })
    }

    /// The control tuple and payload to put on the wire. Exits use the
    /// payload forms (EXIT_PAYLOAD is mandatory for erlnode's peers).
    pub fn to_terms(&self) -> (Term, Option<Term>) {
        use op::*;
        let i = Term::Int;
        let p = |x: &Pid| Term::Pid(x.clone());
        let r = |x: &Reference| Term::Ref(x.clone());
        let tgt = |t: &MonitorTarget| match t {
            MonitorTarget::Pid(x) => Term::Pid(x.clone()),
            MonitorTarget::Name(a) => Term::Atom(a.clone()),
        };
        match self {
            Control::Link { from, to } => (Term::tuple([i(LINK), p(from), p(to)]), None),
            Control::Send { to, msg } => (Term::tuple([i(SEND), Term::atom(""), p(to)]), Some(msg.clone())),
            Control::SendSender { from, to, msg } => (Term::tuple([i(SEND_SENDER), p(from), p(to)]), Some(msg.clone())),
            Control::RegSend { from, to, msg } => {
                (Term::tuple([i(REG_SEND), p(from), Term::atom(""), Term::Atom(to.clone())]), Some(msg.clone()))
            }
            Control::AliasSend { from, alias, msg } => (Term::tuple([i(ALIAS_SEND), p(from), r(alias)]), Some(msg.clone())),
            Control::Exit { from, to, reason } => (Term::tuple([i(PAYLOAD_EXIT), p(from), p(to)]), Some(reason.clone())),
            Control::Exit2 { from, to, reason } => (Term::tuple([i(PAYLOAD_EXIT2), p(from), p(to)]), Some(reason.clone())),
            Control::Unlink { from, to } => (Term::tuple([i(UNLINK), p(from), p(to)]), None),
            Control::UnlinkId { id, from, to } => (Term::tuple([i(UNLINK_ID), i(*id as i64), p(from), p(to)]), None),
            Control::UnlinkIdAck { id, from, to } => (Term::tuple([i(UNLINK_ID_ACK), i(*id as i64), p(from), p(to)]), None),
            Control::GroupLeader { from, to } => (Term::tuple([i(GROUP_LEADER), p(from), p(to)]), None),
            Control::Monitor { from, target, reference } => (Term::tuple([i(MONITOR_P), p(from), tgt(target), r(reference)]), None),
            Control::Demonitor { from, target, reference } => {
                (Term::tuple([i(DEMONITOR_P), p(from), tgt(target), r(reference)]), None)
            }
            Control::MonitorExit { from, to, reference, reason } => {
                (Term::tuple([i(PAYLOAD_MONITOR_P_EXIT), from.clone(), p(to), r(reference)]), Some(reason.clone()))
            }
            Control::SpawnRequest { req_id, from, group_leader, module, function, arity, opts, args } => (
                Term::tuple([
                    i(SPAWN_REQUEST),
                    r(req_id),
                    p(from),
                    p(group_leader),
                    Term::tuple([Term::Atom(module.clone()), Term::Atom(function.clone()), i(*arity)]),
                    opts.clone(),
                ]),
                Some(args.clone()),
            ),
            Control::SpawnReply { req_id, to, flags, result } => {
                (Term::tuple([i(SPAWN_REPLY), r(req_id), p(to), i(*flags), result.clone()]), None)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pid(n: u32) -> Pid {
        Pid { node: Atom::new("a@h"), id: n, serial: 0, creation: 1 }
    }
    fn rf() -> Reference {
        Reference { node: Atom::new("a@h"), creation: 1, ids: [1, 2, 3].into_iter().collect() }
    }

    #[test]
    fn round_trips() {
        let all = vec![
            Control::Link { from: pid(1), to: pid(2) },
            Control::Send { to: pid(2), msg: Term::atom("hi") },
            Control::RegSend { from: pid(1), to: Atom::new("x"), msg: Term::Int(1) },
            Control::AliasSend { from: pid(1), alias: rf(), msg: Term::nil() },
            Control::Exit { from: pid(1), to: pid(2), reason: Term::atom("kill") },
            Control::Exit2 { from: pid(1), to: pid(2), reason: Term::atom("normal") },
            Control::UnlinkId { id: 7, from: pid(1), to: pid(2) },
            Control::UnlinkIdAck { id: 7, from: pid(1), to: pid(2) },
            Control::Monitor { from: pid(1), target: MonitorTarget::Name(Atom::new("n")), reference: rf() },
            Control::Demonitor { from: pid(1), target: MonitorTarget::Pid(pid(3)), reference: rf() },
            Control::MonitorExit { from: Term::Pid(pid(3)), to: pid(1), reference: rf(), reason: Term::atom("noproc") },
            Control::SpawnReply { req_id: rf(), to: pid(1), flags: 0, result: Term::atom("notsup") },
        ];
        for c in all {
            let (ctl, payload) = c.to_terms();
            assert_eq!(Control::from_terms(ctl, payload).unwrap(), c);
        }
    }

    #[test]
    fn malformed_is_an_error_not_a_panic() {
        let cases = vec![
            Term::Int(1),
            Term::tuple([]),
            Term::tuple([Term::atom("x")]),
            Term::tuple([Term::Int(999)]),
            Term::tuple([Term::Int(op::LINK), Term::Int(1)]),
            Term::tuple([Term::Int(op::LINK), Term::Int(1), Term::Int(2)]),
            Term::tuple([Term::Int(op::SEND), Term::nil(), Term::Pid(pid(1))]),
            Term::tuple([Term::Int(op::SPAWN_REQUEST), Term::Ref(rf()), Term::Pid(pid(1)), Term::Pid(pid(1)), Term::Int(3), Term::nil()]),
        ];
        for c in cases {
            assert!(Control::from_terms(c.clone(), None).is_err(), "{c:?}");
        }
    }
}
