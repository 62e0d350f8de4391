//! Where each incoming control message goes: a local mailbox, a system
//! service answered in place, or a logged drop. Every request that a BEAM
//! peer would wait on gets an answer (MONITOR_P_EXIT `noproc`, an exit for
//! a link to a dead pid, SPAWN_REPLY `notsup`), so no peer process hangs
//! on erlnode.

use super::NodeInner;
use crate::control::Control;
use crate::term::{Atom, Pid, Term};
use std::sync::Arc;

impl NodeInner {
    pub(crate) fn dispatch(self: &Arc<Self>, peer: &Atom, msg: Control) {
        match msg {
            Control::Send { to, msg } | Control::SendSender { to, msg, .. } => {
                if !self.processes.deliver(&to, msg) {
                    tracing::debug!(%peer, %to, "message to a dead or unknown pid dropped");
                }
            }
            Control::RegSend { from, to, msg } => self.deliver_named(&from, &to, msg),
            Control::AliasSend { alias, msg, .. } => match self.processes.alias_owner(&alias) {
                Some(pid) => {
                    self.processes.deliver(&pid, msg);
                }
                None => tracing::debug!(%peer, %alias, "message to an inactive alias dropped"),
            },
            Control::Monitor { from, target, reference } => self.remote_monitor(peer, from, target, reference),
            Control::Demonitor { target, reference, .. } => self.remote_demonitor(target, &reference),
            Control::MonitorExit { from, to, reference, reason } => {
                let object = match from {
                    // A monitor by name reports the name; show it as {Name, Node} as the BEAM does.
                    Term::Atom(name) => Term::tuple([Term::Atom(name), Term::Atom(peer.clone())]),
                    other => other,
                };
                self.fire_down(&to, &reference, object, reason);
            }
            Control::Link { from, to } => self.remote_link(peer, from, to),
            Control::Unlink { from, to } => self.remote_unlink(&from, &to),
            Control::UnlinkId { id, from, to } => {
                self.remote_unlink(&from, &to);
                self.send_teardown(peer, &Control::UnlinkIdAck { id, from: to, to: from });
            }
            Control::Exit { from, to, reason } => self.signal_exit(&to, &from, reason, true),
            Control::Exit2 { from, to, reason } => self.signal_exit(&to, &from, reason, false),
            Control::SpawnRequest { req_id, from, module, function, arity, opts, args, .. } => {
                self.spawn_request(peer, req_id, from, module, function, arity, opts, args)
            }
            other => tracing::debug!(%peer, msg = ?other, "control message ignored"),
        }
    }

    /// `{name, node()} ! msg` arriving here.
    pub(crate) fn deliver_named(self: &Arc<Self>, from: &Pid, name: &Atom, msg: Term) {
        if let Some(pid) = self.processes.whereis(name.as_str()) {
            if !self.processes.deliver(&pid, msg) {
                tracing::debug!(%name, "message to a process that just exited dropped");
            }
            return;
        }
        match name.as_str() {
            "net_kernel" => self.net_kernel(msg),
            "rex" => self.rex(from, msg),
            _ => tracing::debug!(%from, %name, "message to an unregistered name dropped"),
        }
    }

    /// net_kernel answers `is_auth` (what `net_adm:ping` asks) with `yes`
    /// and any other call with an error, never silence.
    fn net_kernel(self: &Arc<Self>, msg: Term) {
        match gen_call_parts(&msg) {
            Some((from, request)) => {
                let reply = match request.as_tuple() {
                    Some([tag, _]) if tag.is_atom("is_auth") => Term::atom("yes"),
                    _ => {
                        tracing::debug!(request = ?request, "unsupported net_kernel call");
                        Term::tuple([Term::atom("error"), Term::atom("unsupported")])
                    }
                };
                self.reply(from, reply);
            }
            None => tracing::debug!(msg = ?msg, "net_kernel message ignored"),
        }
    }

    /// Answers a `gen:call` whose `From` is `{Pid, Tag}`, using the alias
    /// when the caller sent one (OTP 24+) so the reply reaches it even
    /// after it stopped monitoring.
    pub(crate) fn reply(self: &Arc<Self>, from: &Term, reply: Term) {
        let Some([Term::Pid(pid), tag]) = from.as_tuple() else {
            tracing::debug!(from = ?from, "reply to a malformed From dropped");
            return;
        };
        let msg = Term::tuple([tag.clone(), reply]);
        match alias_of(tag) {
            Some(alias) if alias.node != self.name => {
                let ctl = Control::AliasSend { from: self.system_pid(), alias: alias.clone(), msg };
                self.send_control(&alias.node, &ctl);
            }
            _ => self.send(None, pid, msg),
        }
    }

    /// The pid system services use as sender: erlnode runs them inline,
    /// so they borrow the identity of pid 0, never given to a process.
    pub(crate) fn system_pid(&self) -> Pid {
        Pid { node: self.name.clone(), id: 0, serial: 0, creation: self.creation }
    }
}

pub(crate) fn is_system_name(n: &Atom) -> bool {
    matches!(n.as_str(), "net_kernel" | "rex")
}

/// Splits `{'$gen_call', From, Request}`.
pub fn gen_call_parts(msg: &Term) -> Option<(&Term, &Term)> {
    match msg.as_tuple()? {
        [tag, from, request] if tag.is_atom("$gen_call") => Some((from, request)),
        _ => None,
    }
}

/// The alias in an OTP 24+ call tag: `[alias | Ref]` or `[[alias | Ref] | _]`.
pub(crate) fn alias_of(tag: &Term) -> Option<&crate::term::Reference> {
    match tag {
        Term::ImproperList(head, tail) if head.len() == 1 && head[0].is_atom("alias") => tail.as_reference(),
        Term::ImproperList(head, _) if head.len() == 1 => alias_of(&head[0]),
        _ => None,
    }
}
