//! Exit signals, links and monitors, with the BEAM's semantics:
//! links are bidirectional and propagate exits; `trap_exit` turns exit
//! signals into `{'EXIT', From, Reason}` messages; `kill` cannot be
//! trapped (the victim dies with `killed`); `normal` is ignored unless
//! trapped; monitors deliver `{'DOWN', Ref, process, Object, Reason}`
//! exactly once, with `noproc` for a target that does not exist and
//! `noconnection` when the target's node goes down.

use crate::control::{Control, MonitorTarget};
use crate::node::NodeInner;
use crate::term::{Atom, Pid, Reference, Term};
use std::sync::Arc;

enum Action {
    Ignore,
    Message(Term),
    Kill(Term),
}

pub(crate) fn down_message(reference: &Reference, object: Term, reason: Term) -> Term {
    Term::tuple([Term::atom("DOWN"), Term::Ref(reference.clone()), Term::atom("process"), object, reason])
}

/// The reason of `{'DOWN', reference, process, _, Reason}`, if `m` is the
/// DOWN of that monitor: the one matcher every selective receive uses.
pub fn down_reason<'a>(m: &'a Term, reference: &Reference) -> Option<&'a Term> {
    match m.as_tuple()? {
        [d, Term::Ref(r), _, _, reason] if d.is_atom("DOWN") && r == reference => Some(reason),
        _ => None,
    }
}

fn exit_message(from: &Pid, reason: Term) -> Term {
    Term::tuple([Term::atom("EXIT"), Term::Pid(from.clone()), reason])
}

impl NodeInner {
    /// A local process has ended with `reason`: release what it owned and
    /// tell its links and monitors, local and remote. Idempotent.
    pub(crate) fn exit_process(self: &Arc<Self>, pid: &Pid, reason: Term) {
        let Some(mut e) = self.processes.remove(pid) else { return };
        for f in e.on_exit.take() {
            f();
        }
        if let Some(k) = e.kill.take() {
            let _ = k.send(reason.clone());
        }
        for linked in e.links.take() {
            if self.processes.is_local(&linked) {
                self.signal_exit(&linked, pid, reason.clone(), true);
            } else {
                self.send_teardown(&linked.node.clone(), &Control::Exit { from: pid.clone(), to: linked, reason: reason.clone() });
            }
        }
        for (reference, (watcher, object)) in e.monitored_by.take() {
            if self.processes.is_local(&watcher) {
                self.fire_down(&watcher, &reference, object, reason.clone());
            } else {
                self.send_teardown(
                    &watcher.node.clone(),
                    &Control::MonitorExit { from: object, to: watcher, reference, reason: reason.clone() },
                );
            }
        }
        for (reference, target) in e.monitors.take() {
            self.drop_monitor_at_target(pid, &reference, &target);
        }
    }

    /// Delivers a DOWN to a local watcher if it still holds the monitor.
    pub(crate) fn fire_down(&self, watcher: &Pid, reference: &Reference, object: Term, reason: Term) {
        let mut procs = self.processes.write();
        if let Some(w) = procs.get_mut(&watcher.id) {
            if w.monitors.as_mut().and_then(|m| m.remove(reference)).is_some() {
                let _ = w.tx.send(down_message(reference, object, reason));
            }
        }
    }

    /// An exit signal to a local process, from a link (`via_link`) or
    /// from `exit/2`.
    pub(crate) fn signal_exit(self: &Arc<Self>, target: &Pid, from: &Pid, reason: Term, via_link: bool) {
        let action = {
            let mut procs = self.processes.write();
            let Some(e) = procs.get_mut(&target.id).filter(|_| self.processes.is_local(target)) else { return };
            if via_link && !e.links.as_mut().is_some_and(|l| l.remove(from)) {
                // Not (or no longer) linked: a stale signal, as after unlink.
                return;
            }
            if reason.is_atom("kill") && !via_link {
                Action::Kill(Term::atom("killed"))
            } else if e.trap_exit {
                Action::Message(exit_message(from, reason))
            } else if reason.is_atom("normal") && from != target {
                Action::Ignore
            } else {
                // A *link* exit signal with reason `kill` (its sender
                // called exit(kill)) is an ordinary reason: OTP 25 kills
                // the receiver with `kill`, not `killed`, and lets a
                // trapping one receive it (checked BEAM-to-BEAM; the
                // interop test `elixir_exit_propagates_to_linked_rust_processes`
                // asserts it). Only exit/2 with `kill` becomes `killed`.
                Action::Kill(reason)
            }
        };
        match action {
            Action::Ignore => {}
            Action::Message(m) => {
                self.processes.deliver(target, m);
            }
            Action::Kill(r) => self.exit_process(target, r),
        }
    }

    /// Links `a` (local, alive) to `b`.
    pub(crate) fn link(self: &Arc<Self>, a: &Pid, b: &Pid) {
        if a == b {
            return;
        }
        if self.processes.is_local(b) {
            let ok = {
                let mut procs = self.processes.write();
                if procs.contains_key(&a.id) && procs.contains_key(&b.id) {
                    procs.get_mut(&a.id).unwrap().links.get_mut().insert(b.clone());
                    procs.get_mut(&b.id).unwrap().links.get_mut().insert(a.clone());
                    true
                } else {
                    false
                }
            };
            if !ok {
                self.noproc_link(a, b);
            }
        } else if b.node == self.name {
            // A pid of an earlier incarnation of this node: dead.
            self.noproc_link(a, b);
        } else {
            let added = self.processes.write().get_mut(&a.id).map(|e| e.links.get_mut().insert(b.clone())).unwrap_or(false);
            if added {
                self.send_control(&b.node.clone(), &Control::Link { from: a.clone(), to: b.clone() });
            }
        }
    }

    fn noproc_link(self: &Arc<Self>, a: &Pid, b: &Pid) {
        // As the BEAM: linking to a dead process sends the linker an exit
        // signal with reason noproc (a message if it traps exits).
        let mut procs = self.processes.write();
        if let Some(e) = procs.get_mut(&a.id) {
            if e.trap_exit {
                let _ = e.tx.send(exit_message(b, Term::atom("noproc")));
                return;
            }
        }
        drop(procs);
        self.exit_process(a, Term::atom("noproc"));
    }

    pub(crate) fn unlink(self: &Arc<Self>, a: &Pid, b: &Pid) {
        let was = self.processes.write().get_mut(&a.id).map(|e| e.links.as_mut().is_some_and(|l| l.remove(b))).unwrap_or(false);
        if self.processes.is_local(b) {
            if let Some(e) = self.processes.write().get_mut(&b.id) {
                let _ = e.links.as_mut().is_some_and(|l| l.remove(a));
            }
        } else if was {
            let id = self.next_ref.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            self.send_teardown(&b.node.clone(), &Control::UnlinkId { id, from: a.clone(), to: b.clone() });
        }
    }

    /// `erlang:monitor(process, Target)` from local `watcher`.
    pub(crate) fn monitor(self: &Arc<Self>, watcher: &Pid, target: MonitorTarget) -> Reference {
        let reference = self.make_ref();
        let (object, node, local_pid) = match &target {
            MonitorTarget::Pid(p) => (Term::Pid(p.clone()), p.node.clone(), self.processes.is_local(p).then(|| p.clone())),
            MonitorTarget::Name(_) => unreachable!("use monitor_name"),
        };
        self.monitor_object(watcher, reference.clone(), object, node, local_pid, target);
        reference
    }

    /// Monitors the process registered as `name` on `node`.
    pub(crate) fn monitor_name(self: &Arc<Self>, watcher: &Pid, name: &Atom, node: &Atom) -> Reference {
        let reference = self.make_ref();
        let object = Term::tuple([Term::Atom(name.clone()), Term::Atom(node.clone())]);
        let local_pid = if node == &self.name { Some(self.processes.whereis(name.as_str())) } else { None };
        match local_pid {
            Some(None) => {
                self.processes.write().get_mut(&watcher.id).map(|e| e.monitors.get_mut().insert(reference.clone(), object.clone()));
                self.fire_down(watcher, &reference, object, Term::atom("noproc"));
            }
            Some(Some(pid)) => self.monitor_object(watcher, reference.clone(), object, node.clone(), Some(pid), MonitorTarget::Name(name.clone())),
            None => self.monitor_object(watcher, reference.clone(), object, node.clone(), None, MonitorTarget::Name(name.clone())),
        }
        reference
    }

    fn monitor_object(self: &Arc<Self>, watcher: &Pid, reference: Reference, object: Term, node: Atom, local: Option<Pid>, target: MonitorTarget) {
        let mut procs = self.processes.write();
        let Some(w) = procs.get_mut(&watcher.id) else { return };
        w.monitors.get_mut().insert(reference.clone(), object.clone());
        if let Some(t) = local {
            match procs.get_mut(&t.id) {
                Some(te) => {
                    te.monitored_by.get_mut().insert(reference, (watcher.clone(), object));
                }
                None => {
                    drop(procs);
                    self.fire_down(watcher, &reference, object, Term::atom("noproc"));
                }
            }
        } else if node == self.name {
            drop(procs);
            self.fire_down(watcher, &reference, object, Term::atom("noproc"));
        } else {
            drop(procs);
            self.send_control(&node, &Control::Monitor { from: watcher.clone(), target, reference });
        }
    }

    /// Removes a monitor `watcher` holds; true if it was active.
    pub(crate) fn demonitor(self: &Arc<Self>, watcher: &Pid, reference: &Reference) -> bool {
        let target = self.processes.write().get_mut(&watcher.id).and_then(|e| e.monitors.as_mut().and_then(|m| m.remove(reference)));
        match target {
            Some(t) => {
                self.drop_monitor_at_target(watcher, reference, &t);
                true
            }
            None => false,
        }
    }

    fn drop_monitor_at_target(self: &Arc<Self>, watcher: &Pid, reference: &Reference, target: &Term) {
        let (node, ctl_target) = match target {
            Term::Pid(p) => (p.node.clone(), MonitorTarget::Pid(p.clone())),
            Term::Tuple(t) if t.len() == 2 => match (&t[0], &t[1]) {
                (Term::Atom(n), Term::Atom(node)) => (node.clone(), MonitorTarget::Name(n.clone())),
                _ => return,
            },
            _ => return,
        };
        if node == self.name {
            // The target is known (a pid, or a name that usually still
            // names the same process): look there first; scanning every
            // process made each local demonitor O(processes).
            let direct = match &ctl_target {
                MonitorTarget::Pid(p) => Some(p.clone()),
                MonitorTarget::Name(n) => self.processes.whereis(n.as_str()),
            };
            let mut procs = self.processes.write();
            let found = direct.and_then(|p| procs.get_mut(&p.id)).is_some_and(|e| e.monitored_by.as_mut().and_then(|m| m.remove(reference)).is_some());
            if !found {
                for e in procs.values_mut() {
                    if e.monitored_by.as_mut().and_then(|m| m.remove(reference)).is_some() {
                        break;
                    }
                }
            }
        } else {
            self.send_teardown(&node, &Control::Demonitor { from: watcher.clone(), target: ctl_target, reference: reference.clone() });
        }
    }

    /// A peer asked to monitor a local process (MONITOR_P).
    pub(crate) fn remote_monitor(self: &Arc<Self>, peer: &Atom, from: Pid, target: MonitorTarget, reference: Reference) {
        let (pid, object) = match &target {
            MonitorTarget::Pid(p) => (Some(p.clone()).filter(|p| self.processes.is_local(p)), Term::Pid(p.clone())),
            MonitorTarget::Name(n) => (self.processes.whereis(n.as_str()), Term::Atom(n.clone())),
        };
        let added = pid
            .and_then(|p| self.processes.write().get_mut(&p.id).map(|e| e.monitored_by.get_mut().insert(reference.clone(), (from.clone(), object.clone()))))
            .is_some();
        if !added {
            if let MonitorTarget::Name(n) = &target {
                if crate::node::is_system_name(n) {
                    return; // inline services never exit while the node runs
                }
            }
            self.send_teardown(peer, &Control::MonitorExit { from: object, to: from, reference, reason: Term::atom("noproc") });
        }
    }

    pub(crate) fn remote_demonitor(&self, target: MonitorTarget, reference: &Reference) {
        let pid = match target {
            MonitorTarget::Pid(p) => Some(p),
            MonitorTarget::Name(n) => self.processes.whereis(n.as_str()),
        };
        if let Some(p) = pid.filter(|p| self.processes.is_local(p)) {
            if let Some(e) = self.processes.write().get_mut(&p.id) {
                e.monitored_by.as_mut().and_then(|m| m.remove(reference));
            }
        }
    }

    /// A peer linked one of its processes to a local one.
    pub(crate) fn remote_link(self: &Arc<Self>, peer: &Atom, from: Pid, to: Pid) {
        let ok = self.processes.is_local(&to)
            && self.processes.write().get_mut(&to.id).map(|e| e.links.get_mut().insert(from.clone())).is_some();
        if !ok {
            self.send_teardown(peer, &Control::Exit { from: to, to: from, reason: Term::atom("noproc") });
        }
    }

    pub(crate) fn remote_unlink(&self, from: &Pid, to: &Pid) {
        if let Some(e) = self.processes.write().get_mut(&to.id).filter(|_| self.processes.is_local(to)) {
            let _ = e.links.as_mut().is_some_and(|l| l.remove(from));
        }
    }

    /// The link to `node` is gone: every link to it breaks with
    /// `noconnection`, every monitor of a process there fires, and
    /// monitors held from there are forgotten.
    pub(crate) fn processes_nodedown(self: &Arc<Self>, node: &Atom) {
        let mut exits = Vec::new();
        {
            let mut procs = self.processes.write();
            for (id, e) in procs.iter_mut() {
                let pid = Pid { node: self.name.clone(), id: *id, serial: 0, creation: self.creation };
                let broken: Vec<Pid> = e.links.get().into_iter().flatten().filter(|p| &p.node == node).cloned().collect();
                for b in broken {
                    exits.push((pid.clone(), b));
                }
                let downs: Vec<(Reference, Term)> = e
                    .monitors
                    .get()
                    .into_iter()
                    .flatten()
                    .filter(|(_, t)| monitor_node(t).as_ref() == Some(node))
                    .map(|(r, t)| (r.clone(), t.clone()))
                    .collect();
                for (r, object) in downs {
                    e.monitors.as_mut().and_then(|m| m.remove(&r));
                    let _ = e.tx.send(down_message(&r, object, Term::atom("noconnection")));
                }
                if let Some(m) = e.monitored_by.as_mut() {
                    m.retain(|_, (w, _)| &w.node != node);
                }
            }
        }
        for (local, remote) in exits {
            self.signal_exit(&local, &remote, Term::atom("noconnection"), true);
        }
    }
}

fn monitor_node(target: &Term) -> Option<Atom> {
    match target {
        Term::Pid(p) => Some(p.node.clone()),
        Term::Tuple(t) if t.len() == 2 => t[1].as_atom().cloned(),
        _ => None,
    }
}
