//! Every wire shape of pg's peer protocol, built and parsed here only.
//!
//! Parsing is strict: a message from a peer scope is accepted only if it
//! has exactly the shape pg.erl sends and every member pid lives on the
//! sending scope's node (pg.erl joins local processes only, so a peer that
//! announces anyone else's pids is broken or hostile). Anything else is
//! `Err(why)`, which the scope logs and drops.
//!
//! Building is conservative: erlnode never sends a shape that makes some
//! OTP release's scope crash (`{discover, Pid, Vsn}` crashes OTP 25, an
//! empty group in a sync or join would leave an empty row behind).

use crate::term::{Atom, Pid, Reference, Term};

/// What a peer scope (or a local caller) can send a scope process.
pub(crate) enum Incoming {
    /// `{discover, Peer}`, or OTP 26+'s accepted `{discover, Peer, Vsn}`.
    Discover(Pid),
    /// `{'$gen_cast', {sync, Peer, [{Group, Pids}]}}`.
    Sync { peer: Pid, groups: Vec<(Term, Vec<Pid>)> },
    /// `{join, Peer, Group, PidOrPids}`.
    Join { peer: Pid, group: Term, pids: Vec<Pid> },
    /// `{leave, Peer, PidOrPids, Groups}`.
    Leave { peer: Pid, pids: Vec<Pid>, groups: Vec<Term> },
    /// `{'DOWN', MRef, process, Pid, Info}`.
    Down { mref: Reference, pid: Pid },
    /// `{'$gen_call', From, Request}`.
    Call { from: Term, request: CallRequest },
}

pub(crate) enum CallRequest {
    JoinLocal { group: Term, pids: Vec<Pid>, single: bool },
    LeaveLocal { group: Term, pids: Vec<Pid>, single: bool },
    MonitorScope,
    MonitorGroup(Term),
    Demonitor(Reference),
    /// A call pg.erl does not know (it would crash): answered `{error, badarg}`.
    Unknown(Term),
}

/// A pid, or a proper list of pids (pg's `PidOrPids`); the flag says
/// which, so that a reply or re-broadcast can keep the form.
fn pid_or_pids(t: &Term) -> Result<(Vec<Pid>, bool), &'static str> {
    match t {
        Term::Pid(p) => Ok((vec![p.clone()], true)),
        Term::List(xs) => xs.iter().map(|x| x.as_pid().cloned().ok_or("a member is not a pid")).collect::<Result<_, _>>().map(|v| (v, false)),
        _ => Err("members are neither a pid nor a list of pids"),
    }
}

/// Members announced by `peer` must be `peer`'s node's processes.
fn remote_members(peer: &Pid, t: &Term) -> Result<Vec<Pid>, &'static str> {
    let (pids, _) = pid_or_pids(t)?;
    if pids.iter().any(|p| p.node != peer.node) {
        return Err("a member does not live on the peer scope's node");
    }
    Ok(pids)
}

fn peer(t: &Term, me: &Atom) -> Result<Pid, &'static str> {
    match t {
        Term::Pid(p) if p.node != *me => Ok(p.clone()),
        Term::Pid(_) => Err("the peer scope is a local pid"),
        _ => Err("the peer scope is not a pid"),
    }
}

fn sync_groups(p: &Pid, t: &Term) -> Result<Vec<(Term, Vec<Pid>)>, &'static str> {
    let Term::List(items) = t else { return Err("sync groups are not a list") };
    let mut out: Vec<(Term, Vec<Pid>)> = Vec::with_capacity(items.len());
    let mut seen = std::collections::HashSet::with_capacity(items.len());
    for item in items {
        let Some([g, pids]) = item.as_tuple() else { return Err("a sync entry is not {Group, Pids}") };
        if !matches!(pids, Term::List(_)) {
            return Err("a sync entry's members are not a list");
        }
        if !seen.insert(super::table::key(g)) {
            return Err("a group appears twice in one sync");
        }
        out.push((g.clone(), remote_members(p, pids)?));
    }
    Ok(out)
}

impl Incoming {
    /// Parses a scope's mailbox message; `me` is this node's name.
    pub fn parse(msg: &Term, me: &Atom) -> Result<Incoming, &'static str> {
        let Some(t) = msg.as_tuple() else { return Err("not a tuple") };
        match t {
            [tag, p] | [tag, p, _] if tag.is_atom("discover") => Ok(Incoming::Discover(peer(p, me)?)),
            [tag, body] if tag.is_atom("$gen_cast") => match body.as_tuple() {
                Some([s, p, groups]) if s.is_atom("sync") => {
                    let peer = peer(p, me)?;
                    let groups = sync_groups(&peer, groups)?;
                    Ok(Incoming::Sync { peer, groups })
                }
                _ => Err("unknown cast"),
            },
            [tag, p, group, pids] if tag.is_atom("join") => {
                let peer = peer(p, me)?;
                let pids = remote_members(&peer, pids)?;
                if pids.is_empty() {
                    return Err("a join with no members");
                }
                Ok(Incoming::Join { peer, group: group.clone(), pids })
            }
            [tag, p, pids, groups] if tag.is_atom("leave") => {
                let peer = peer(p, me)?;
                let pids = remote_members(&peer, pids)?;
                let Term::List(groups) = groups else { return Err("leave groups are not a list") };
                Ok(Incoming::Leave { peer, pids, groups: groups.clone() })
            }
            [tag, Term::Ref(mref), kind, Term::Pid(pid), _] if tag.is_atom("DOWN") && kind.is_atom("process") => {
                Ok(Incoming::Down { mref: mref.clone(), pid: pid.clone() })
            }
            [tag, from, request] if tag.is_atom("$gen_call") => Ok(Incoming::Call { from: from.clone(), request: call_request(request)? }),
            _ => Err("unknown message"),
        }
    }
}

fn call_request(r: &Term) -> Result<CallRequest, &'static str> {
    if r.is_atom("monitor") {
        return Ok(CallRequest::MonitorScope);
    }
    match r.as_tuple() {
        Some([tag, g]) if tag.is_atom("monitor") => Ok(CallRequest::MonitorGroup(g.clone())),
        Some([tag, Term::Ref(r)]) if tag.is_atom("demonitor") => Ok(CallRequest::Demonitor(r.clone())),
        Some([tag, g, pids]) if tag.is_atom("join_local") || tag.is_atom("leave_local") => {
            let (pids, single) = pid_or_pids(pids)?;
            let group = g.clone();
            Ok(if tag.is_atom("join_local") { CallRequest::JoinLocal { group, pids, single } } else { CallRequest::LeaveLocal { group, pids, single } })
        }
        _ => Ok(CallRequest::Unknown(r.clone())),
    }
}

/// `PidOrPids` as pg.erl sends it: a bare pid for one, a list otherwise.
pub(crate) fn members_term(pids: &[Pid], single: bool) -> Term {
    match pids {
        [p] if single => Term::Pid(p.clone()),
        _ => Term::List(pids.iter().cloned().map(Term::Pid).collect()),
    }
}

/// `{discover, Self}`: the two-element form every release accepts.
pub(crate) fn discover(me: &Pid) -> Term {
    Term::tuple([Term::atom("discover"), Term::Pid(me.clone())])
}

/// `{'$gen_cast', {sync, Self, [{Group, Pids}]}}` (no empty groups).
pub(crate) fn sync(me: &Pid, groups: Vec<(Term, Vec<Pid>)>) -> Term {
    let entries = groups.into_iter().filter(|(_, p)| !p.is_empty()).map(|(g, p)| Term::tuple([g, members_term(&p, false)]));
    Term::tuple([Term::atom("$gen_cast"), Term::tuple([Term::atom("sync"), Term::Pid(me.clone()), Term::List(entries.collect())])])
}

/// `{join, Self, Group, PidOrPids}`.
pub(crate) fn join(me: &Pid, group: &Term, pids: &[Pid], single: bool) -> Term {
    Term::tuple([Term::atom("join"), Term::Pid(me.clone()), group.clone(), members_term(pids, single)])
}

/// `{leave, Self, PidOrPids, Groups}`.
pub(crate) fn leave(me: &Pid, pids: &[Pid], single: bool, groups: Vec<Term>) -> Term {
    Term::tuple([Term::atom("leave"), Term::Pid(me.clone()), members_term(pids, single), Term::List(groups)])
}

/// `{Ref, join | leave, Group, Pids}`, what a pg monitor receives.
pub(crate) fn notification(mref: &Reference, join: bool, group: &Term, pids: &[Pid]) -> Term {
    Term::tuple([Term::Ref(mref.clone()), Term::atom(if join { "join" } else { "leave" }), group.clone(), members_term(pids, false)])
}
