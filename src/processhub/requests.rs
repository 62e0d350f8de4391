//! Start and stop requests a member answers: the `start_children` and
//! `stop_children` casts and `migration_add_event`, with the results to
//! every `reply_to` pid and the registration broadcasts ProcessHub's
//! members expect (every field of `PostStartData`). A child whose module
//! has no Rust type is answered `{:error, {:erlnode_no_rust_type, M}}`,
//! which the caller's `ProcessHub.start_children` reports.

use super::member::{LocalChild, Member};
use super::messages::{ChildStart, ChildStop, HubEvent, HubMessage, Keyword, PostStartData, StartOutcome, Unregistered};
use super::registry::key;
use super::HubNotice;
use crate::migration::replica::placed;
use crate::term::{Pid, Term};

impl Member {
    pub async fn start_children(&mut self, children: Vec<ChildStart>, opts: Keyword) {
        let mut reply_to: Vec<Pid> = opts.reply_to();
        let mut results = Vec::with_capacity(children.len());
        let mut registered = Vec::new();
        for c in children {
            for p in c.reply_to.iter().flatten() {
                if !reply_to.contains(p) {
                    reply_to.push(p.clone());
                }
            }
            let outcome = self.start_one(&c).await;
            if let StartOutcome::Ok(pid) = &outcome {
                registered.push(PostStartData {
                    cid: c.child_id.clone(),
                    pid: Some(pid.clone()),
                    child_spec: c.child_spec.clone(),
                    result: outcome.clone(),
                    for_node: (self.me.clone(), Keyword(vec![(crate::term::Atom::new("migration"), Term::atom("false"))])),
                    child_nodes: vec![(self.me.clone(), pid.clone())],
                    has_errors: false,
                    nodes: c.nodes.clone(),
                    metadata: c.metadata.clone(),
                    extra: vec![],
                });
            }
            results.push((c.child_id, outcome));
        }
        self.publish_local();
        let (ok, failed): (Vec<_>, Vec<_>) = results.iter().partition(|(_, r)| matches!(r, StartOutcome::Ok(_)));
        if !ok.is_empty() {
            self.notify(HubNotice::ChildrenStarted(ok.into_iter().map(|(c, _)| c.clone()).collect()));
        }
        if !failed.is_empty() {
            let failed = failed.into_iter().map(|(c, r)| (c.clone(), match r { StartOutcome::Error(e) | StartOutcome::Other(e) => e.clone(), StartOutcome::Ok(_) => Term::nil() })).collect();
            self.notify(HubNotice::ChildrenFailed(failed));
        }
        let answer = HubMessage::CollectStartResults { results, node: self.me.clone() };
        if let Some(t) = self.build(&answer) {
            for p in &reply_to {
                self.mb.send(p, t.clone());
            }
        }
        if !registered.is_empty() {
            let mut ropts = Keyword::new();
            ropts.push("members", Term::atom("external"));
            self.send_external(
                HubEvent::ChildrenRegistration,
                &HubMessage::ChildrenRegistration { children: registered, node: self.me.clone(), opts: ropts },
            );
        }
    }

    async fn start_one(&mut self, c: &ChildStart) -> StartOutcome {
        let k = key(&c.child_id);
        // Taken whatever happens: a replica is for this start only.
        let restored = self.restored.remove(&k);
        if let Some(existing) = self.local.get(&k) {
            return StartOutcome::Error(Term::tuple([Term::atom("already_started"), Term::Pid(existing.pid.clone())]));
        }
        if self.leaving {
            return StartOutcome::Error(Term::atom("erlnode_hub_leaving"));
        }
        let mut opts = self.start_opts(&c.child_id);
        let restored = restored.filter(|f| opts.restore(f)).zip(opts.replica.as_ref().map(|(_, name)| name.clone()));
        match self.types.start_with(&self.node, &c.child_id, &c.child_spec, self.dialect, opts).await {
            Ok(s) => {
                if let Some((f, name)) = &restored {
                    tracing::info!(hub = %self.hub, %name, pid = %s.pid, seq = f.seq, dead_owner = %f.owner, "hub child of a dead member started from its replica");
                    placed::drop_dead_owner(&self.mb, name, f);
                }
                let monitor = self.mb.monitor(&s.pid);
                self.view.write().unwrap().registry.put(&c.child_id, &c.child_spec, &c.metadata, &self.me, &s.pid);
                if let Some(state) = self.stored.remove(&k) {
                    self.deliver(&s.pid, state);
                }
                let pid = s.pid.clone();
                self.local.insert(
                    k,
                    LocalChild {
                        cid: c.child_id.clone(),
                        spec: c.child_spec.clone(),
                        meta: c.metadata.clone(),
                        pid: s.pid,
                        ctl: s.ctl,
                        monitor,
                    },
                );
                StartOutcome::Ok(pid)
            }
            Err(reason) => {
                tracing::warn!(hub = %self.hub, cid = ?c.child_id, ?reason, "child not started");
                StartOutcome::Error(reason)
            }
        }
    }

    pub fn stop_children(&mut self, children: Vec<ChildStop>, opts: Keyword) {
        let mut results = Vec::with_capacity(children.len());
        let mut stopped = Vec::new();
        for c in children {
            let k = key(&c.child_id);
            match self.local.remove(&k) {
                Some(child) => {
                    self.mb.demonitor(&child.monitor);
                    let _ = child.ctl.send(super::child::ChildCtl::Stop);
                    self.view.write().unwrap().registry.remove_on(&c.child_id, &self.me);
                    stopped.push(c.child_id.clone());
                    results.push((c.child_id, Term::atom("ok")));
                }
                None => results.push((c.child_id, Term::tuple([Term::atom("error"), Term::atom("not_found")]))),
            }
        }
        self.publish_local();
        let reply_to = opts.reply_to();
        if !stopped.is_empty() {
            self.notify(HubNotice::ChildrenStopped(stopped.clone()));
        }
        self.unregistered(stopped, opts);
        let answer = HubMessage::CollectStopResults { results, node: self.me.clone() };
        if let Some(t) = self.build(&answer) {
            for p in &reply_to {
                self.mb.send(p, t.clone());
            }
        }
    }

    /// `children_unregistration_event` for children that no longer run
    /// here (this node's registry is already updated).
    pub fn unregistered(&self, cids: Vec<Term>, opts: Keyword) {
        if cids.is_empty() {
            return;
        }
        let children = cids.into_iter().map(|child_id| Unregistered { child_id, result: Term::atom("ok"), node: self.me.clone() }).collect();
        self.send_external(HubEvent::ChildrenUnregistration, &HubMessage::ChildrenUnregistration { children, node: self.me.clone(), opts });
    }
}
