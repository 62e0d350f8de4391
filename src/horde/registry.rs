//! The registry process: Horde's `RegistryImpl` (registered as `Reg`)
//! and its DeltaCrdt (`Reg.Crdt`), run by one task with two mailboxes.
//!
//! Horde keeps the registry in the CRDT under three kinds of keys:
//! `{member, {Reg, Node}} => 1`, `{key, Key} => {{Reg, Node}, Pid, Value}`
//! and `{registry, MetaKey} => Value`. Every change of a read value (a
//! local write or a peer's delta) is applied to the local tables the way
//! `RegistryImpl.process_diff/2` does: members become CRDT neighbours, a
//! key whose owner changes sends the old owner
//! `{name_conflict, {Key, OldValue}, Reg, Winner}`, keys of a member that
//! left are dropped. Local owners are linked (exits trapped): an owner's
//! exit deletes its keys.
//!
//! The `Reg` mailbox answers the calls Horde's API makes of its local
//! registry (`register`, `unregister`, `update_value`, `members`,
//! `set_members`, `put_meta`, `delete_meta`); Horde itself never calls
//! another node's `Reg` (only `Reg.Crdt` talks across nodes), but an
//! Elixir process may, e.g. `GenServer.call({Reg, rust_node},
//! {:register, key, value, pid})`.

use super::crdt::{Crdt, Effects};
use super::store::{Change, Store};
use super::tables::{Entry, Tables};
use super::term_key::term_eq;
use crate::node::{gen_call_parts, NodeEvent};
use crate::process::{Dest, Mailbox};
use crate::term::{Atom, Pid, Reference, Term};
use crate::Node;
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::sync::{broadcast, mpsc, oneshot};

/// Requests from the Rust API.
pub(crate) enum Request {
    Register { key: Term, value: Term, pid: Pid, reply: oneshot::Sender<()> },
    Unregister { key: Term, pid: Pid, reply: oneshot::Sender<()> },
    UpdateValue { key: Term, pid: Pid, value: Term, reply: oneshot::Sender<()> },
    PutMeta { key: Term, value: Term, reply: oneshot::Sender<()> },
    /// Run `f` inside the process (tests, stats).
    Inspect(Box<dyn FnOnce(&Crdt) + Send>),
}

pub(crate) struct Config {
    pub name: Atom,
    pub auto: bool,
    pub members: Vec<Atom>,
    pub sync_interval: Duration,
    pub max_items: usize,
}

pub(crate) struct Registry {
    cfg: Config,
    node: Node,
    reg: Mailbox,
    crdt_mb: Mailbox,
    crdt: Crdt,
    tables: Arc<RwLock<Tables>>,
    /// `state.members` of RegistryImpl: `{Reg, Node}` terms.
    members: Vec<Term>,
    monitors: HashMap<Reference, Term>,
    monitored: Vec<Term>,
}

fn crdt_name(name: &Atom) -> String {
    format!("{}.Crdt", name.as_str())
}

fn tag(t: &Term) -> Option<(&str, &Term)> {
    match t.as_tuple()? {
        [Term::Atom(a), rest] => Some((a.as_str(), rest)),
        _ => None,
    }
}

impl Registry {
    pub fn new(cfg: Config, reg: Mailbox, crdt_mb: Mailbox, tables: Arc<RwLock<Tables>>) -> Registry {
        let node_id = rand::random::<u64>() % 1_000_000_000 + 1;
        let crdt = Crdt::new(Store::new(node_id), Term::Pid(crdt_mb.pid().clone())).with_max_items(cfg.max_items);
        Registry { node: reg.node(), cfg, reg, crdt_mb, crdt, tables, members: vec![], monitors: HashMap::new(), monitored: vec![] }
    }

    fn me(&self) -> Term {
        self.member_of(self.node.name())
    }

    fn member_of(&self, node: &Atom) -> Term {
        Term::tuple([Term::Atom(self.cfg.name.clone()), Term::Atom(node.clone())])
    }

    /// `Node.list([:visible, :this])`, as NodeListener's `make_members`.
    fn visible_members(&self) -> Vec<Term> {
        let mut nodes = vec![self.node.name().clone()];
        for n in self.node.connected_nodes() {
            let hidden = self.node.peer_flags(&n).is_some_and(|f| f & crate::handshake::flags::PUBLISHED == 0);
            if !hidden && !nodes.contains(&n) {
                nodes.push(n);
            }
        }
        nodes.iter().map(|n| self.member_of(n)).collect()
    }

    pub async fn run(mut self, mut requests: mpsc::UnboundedReceiver<Request>, mut events: broadcast::Receiver<NodeEvent>) -> Term {
        self.reg.trap_exit(true);
        let initial = if self.cfg.auto {
            self.visible_members()
        } else {
            let mut m: Vec<Term> = self.cfg.members.iter().map(|n| self.member_of(n)).collect();
            if !m.iter().any(|x| term_eq(x, &self.me())) {
                m.insert(0, self.me());
            }
            m
        };
        self.set_members(initial);
        let mut tick = tokio::time::interval(self.cfg.sync_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            // Requests and registry calls first: they are cheap, and a
            // burst of diffs (each a walk of the tree) must not starve them.
            tokio::select! {
                biased;
                r = requests.recv() => match r {
                    Some(r) => self.request(r),
                    None => return Term::atom("normal"),
                },
                m = self.reg.recv() => match m {
                    Some(m) => self.reg_message(m),
                    None => return Term::atom("normal"),
                },
                e = events.recv(), if self.cfg.auto => match e {
                    Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {
                        let m = self.visible_members();
                        self.set_members(m);
                    }
                    Err(broadcast::error::RecvError::Closed) => return Term::atom("normal"),
                },
                m = self.crdt_mb.recv() => match m {
                    Some(m) => {
                        let mut batch = vec![m];
                        batch.extend(self.crdt_mb.drain());
                        for m in coalesce(batch) {
                            self.crdt_message(m);
                        }
                    }
                    None => return Term::atom("normal"),
                },
                _ = tick.tick() => {
                    self.monitor_neighbours();
                    let fx = self.crdt.sync();
                    self.apply(fx);
                }
            }
        }
    }

    /// DeltaCrdt's `monitor_neighbours/1`: one monitor per neighbour,
    /// renewed after its DOWN.
    fn monitor_neighbours(&mut self) {
        for n in self.crdt.neighbours().to_vec() {
            if self.monitored.iter().any(|m| term_eq(m, &n)) {
                continue;
            }
            let r = match n.as_tuple() {
                Some([Term::Atom(name), Term::Atom(node)]) => self.crdt_mb.monitor_name(name.as_str(), node.as_str()),
                _ => match &n {
                    Term::Pid(p) => self.crdt_mb.monitor(p),
                    _ => continue,
                },
            };
            self.monitors.insert(r, n.clone());
            self.monitored.push(n);
        }
    }

    fn crdt_message(&mut self, m: Term) {
        let t0 = std::time::Instant::now();
        let kind = short(&m);
        self.crdt_message_inner(m);
        tracing::trace!(registry = %self.cfg.name, took = ?t0.elapsed(), %kind, "crdt message handled");
    }

    fn crdt_message_inner(&mut self, m: Term) {
        if let Some([t, Term::Ref(r), _, _, _]) = m.as_tuple() {
            if t.is_atom("DOWN") {
                if let Some(n) = self.monitors.remove(r) {
                    self.monitored.retain(|x| !term_eq(x, &n));
                    self.crdt.down(&n);
                }
                return;
            }
        }
        match self.crdt.handle(&m) {
            Ok(fx) => self.apply(fx),
            Err(e) => tracing::warn!(registry = %self.cfg.name, error = %e, shape = %short(&m), "horde crdt: message dropped"),
        }
    }

    /// Sends what the CRDT produced and applies its read changes.
    fn apply(&mut self, fx: Effects) {
        for (to, msg) in fx.sends {
            match (&to, to.as_tuple()) {
                (Term::Pid(p), _) => self.crdt_mb.send(p, msg),
                (_, Some([Term::Atom(name), Term::Atom(node)])) => self.crdt_mb.send_to(&Dest::local(name.as_str(), node.as_str()), msg),
                _ => tracing::warn!(to = %short(&to), "horde crdt: no address to send to"),
            }
        }
        self.process_changes(fx.changes);
    }

    /// `RegistryImpl.process_diffs/2`, with the CRDT writes it makes
    /// (dropping a departed member's keys) fed back in.
    fn process_changes(&mut self, changes: Vec<Change>) {
        let mut queue: VecDeque<Change> = changes.into();
        while let Some(c) = queue.pop_front() {
            let (key, value) = match &c {
                Change::Add(k, v) => (k, Some(v)),
                Change::Remove(k) => (k, None),
            };
            let Some((kind, inner)) = tag(key) else { continue };
            match (kind, value) {
                ("member", Some(_)) => {
                    if !self.members.iter().any(|m| term_eq(m, inner)) {
                        self.members.push(inner.clone());
                    }
                    self.tables.write().unwrap().members.insert(super::term_key::TermKey(inner.clone()));
                    self.update_neighbours();
                }
                ("member", None) => {
                    let removed = {
                        let mut t = self.tables.write().unwrap();
                        t.members.remove(&super::term_key::TermKey(inner.clone()));
                        t.keys_of_member(inner)
                    };
                    for (k, pid) in removed {
                        queue.extend(self.crdt.delete(&Term::tuple([Term::atom("key"), k.clone()])));
                        self.tables.write().unwrap().remove_key_of(&k, &pid);
                    }
                    self.members.retain(|m| !term_eq(m, inner));
                }
                ("key", Some(v)) => self.add_key(inner, v),
                ("key", None) => {
                    self.tables.write().unwrap().remove_key(inner);
                }
                ("registry", Some(v)) => {
                    self.tables.write().unwrap().meta.insert(super::term_key::TermKey(inner.clone()), v.clone());
                }
                ("registry", None) => {
                    self.tables.write().unwrap().meta.remove(&super::term_key::TermKey(inner.clone()));
                }
                _ => {}
            }
        }
    }

    /// `process_diff({:add, {:key, key}, {member, pid, value}})`.
    fn add_key(&mut self, key: &Term, v: &Term) {
        let Some([member, Term::Pid(pid), value]) = v.as_tuple() else {
            tracing::warn!(key = %short(key), "horde registry: entry is not {{Member, Pid, Value}}; ignored");
            return;
        };
        // link_local_pid/1: only this node's processes.
        if pid.node == *self.node.name() {
            self.reg.link(pid);
        }
        let loser = {
            let mut t = self.tables.write().unwrap();
            let old = t.get(key).filter(|e| &e.pid != pid).cloned();
            if let Some(o) = &old {
                t.remove_key_of(key, &o.pid);
            }
            t.insert(Entry { key: key.clone(), member: member.clone(), pid: pid.clone(), value: value.clone() });
            old
        };
        if let Some(o) = loser {
            let reason = Term::tuple([
                Term::atom("name_conflict"),
                Term::tuple([key.clone(), o.value.clone()]),
                Term::Atom(self.cfg.name.clone()),
                Term::Pid(pid.clone()),
            ]);
            tracing::info!(registry = %self.cfg.name, key = %short(key), loser = %o.pid, winner = %pid, "horde registry: name conflict");
            self.reg.exit(&o.pid, reason);
        }
    }

    fn update_neighbours(&mut self) {
        let me = self.me();
        let crdt = Atom::new(&crdt_name(&self.cfg.name));
        let n: Vec<Term> = self
            .members
            .iter()
            .filter(|m| !term_eq(m, &me))
            .filter_map(|m| match m.as_tuple() {
                Some([Term::Atom(_), node @ Term::Atom(_)]) => Some(Term::tuple([Term::Atom(crdt.clone()), node.clone()])),
                _ => None,
            })
            .collect();
        if n.len() == self.crdt.neighbours().len() && n.iter().all(|x| self.crdt.neighbours().iter().any(|y| term_eq(x, y))) {
            return;
        }
        let gone: Vec<Reference> = self.monitors.iter().filter(|(_, m)| !n.iter().any(|x| term_eq(x, m))).map(|(r, _)| r.clone()).collect();
        for r in gone {
            self.monitors.remove(&r);
            self.crdt_mb.demonitor(&r);
        }
        self.monitored.retain(|m| n.iter().any(|x| term_eq(x, m)));
        let fx = self.crdt.set_neighbours(n);
        self.monitor_neighbours();
        self.apply(fx);
    }

    /// `handle_call({:set_members, members})`.
    fn set_members(&mut self, new: Vec<Term>) {
        let removed: Vec<Term> = self.members.iter().filter(|m| !new.iter().any(|n| term_eq(n, m))).cloned().collect();
        let added: Vec<Term> = new.iter().filter(|n| !self.members.iter().any(|m| term_eq(n, m))).cloned().collect();
        let mut changes = vec![];
        for m in &removed {
            changes.extend(self.crdt.delete(&Term::tuple([Term::atom("member"), m.clone()])));
        }
        for m in &added {
            changes.extend(self.crdt.put(Term::tuple([Term::atom("member"), m.clone()]), Term::Int(1)));
        }
        self.members = new;
        {
            let mut t = self.tables.write().unwrap();
            for m in &self.members {
                t.members.insert(super::term_key::TermKey(m.clone()));
            }
        }
        self.process_changes(changes);
        self.update_neighbours();
    }

    fn put_key(&mut self, key: Term, value: Term, pid: Pid) {
        let v = Term::tuple([self.me(), Term::Pid(pid), value]);
        let changes = self.crdt.put(Term::tuple([Term::atom("key"), key]), v);
        self.process_changes(changes);
    }

    fn unregister(&mut self, key: Term, pid: &Pid) {
        let changes = self.crdt.delete(&Term::tuple([Term::atom("key"), key.clone()]));
        self.process_changes(changes);
        self.tables.write().unwrap().remove_key_of(&key, pid);
    }

    fn request(&mut self, r: Request) {
        match r {
            Request::Register { key, value, pid, reply } => {
                self.reg.link(&pid);
                self.put_key(key, value, pid);
                let _ = reply.send(());
            }
            Request::Unregister { key, pid, reply } => {
                self.unregister(key, &pid);
                let _ = reply.send(());
            }
            Request::UpdateValue { key, pid, value, reply } => {
                self.put_key(key, value, pid);
                let _ = reply.send(());
            }
            Request::PutMeta { key, value, reply } => {
                let changes = self.crdt.put(Term::tuple([Term::atom("registry"), key]), value);
                self.process_changes(changes);
                let _ = reply.send(());
            }
            Request::Inspect(f) => f(&self.crdt),
        }
    }

    fn reg_message(&mut self, m: Term) {
        if let Some((from, req)) = gen_call_parts(&m) {
            let reply = self.call(req);
            self.reg.reply(from, reply);
            return;
        }
        match m.as_tuple() {
            Some([t, Term::Pid(pid), _]) if t.is_atom("EXIT") => {
                // handle_info({:EXIT, pid, _}): the owner's keys go.
                let keys = self.tables.write().unwrap().pids.remove(pid).unwrap_or_default();
                for k in keys {
                    let changes = self.crdt.delete(&Term::tuple([Term::atom("key"), k.clone()]));
                    self.process_changes(changes);
                    self.tables.write().unwrap().remove_key_of(&k, pid);
                }
            }
            _ => tracing::warn!(registry = %self.cfg.name, shape = %short(&m), "horde registry: unexpected message dropped"),
        }
    }

    /// `RegistryImpl.handle_call/3`.
    fn call(&mut self, req: &Term) -> Term {
        let ok = Term::atom("ok");
        match req.as_tuple() {
            Some([t, key, value, Term::Pid(pid)]) if t.is_atom("register") => {
                self.reg.link(pid);
                self.put_key(key.clone(), value.clone(), pid.clone());
                Term::tuple([ok, Term::Pid(self.reg.pid().clone())])
            }
            Some([t, key, Term::Pid(pid), value]) if t.is_atom("update_value") => {
                self.put_key(key.clone(), value.clone(), pid.clone());
                ok
            }
            Some([t, key, Term::Pid(pid)]) if t.is_atom("unregister") => {
                self.unregister(key.clone(), pid);
                ok
            }
            Some([t, key, value]) if t.is_atom("put_meta") => {
                let changes = self.crdt.put(Term::tuple([Term::atom("registry"), key.clone()]), value.clone());
                self.process_changes(changes);
                ok
            }
            Some([t, key]) if t.is_atom("delete_meta") => {
                let changes = self.crdt.delete(&Term::tuple([Term::atom("registry"), key.clone()]));
                self.process_changes(changes);
                ok
            }
            Some([t, Term::List(members)]) if t.is_atom("set_members") => {
                let new = members
                    .iter()
                    .map(|m| match m {
                        Term::Atom(a) => Term::tuple([Term::Atom(a.clone()), Term::Atom(self.node.name().clone())]),
                        other => other.clone(),
                    })
                    .collect();
                self.set_members(new);
                ok
            }
            _ if req.is_atom("members") => Term::List(self.members.clone()),
            _ => {
                tracing::warn!(registry = %self.cfg.name, shape = %short(req), "horde registry: unknown call");
                Term::tuple([Term::atom("error"), Term::atom("unknown_call")])
            }
        }
    }
}

/// Drops the fresh syncs (`{diff, Diff}` at the root, no keys yet) a
/// peer started while older ones from the same originator wait in the
/// queue: each restarts the whole comparison, and DeltaCrdt starts one
/// per tick whether or not the last one finished, so a peer slower than
/// the tick would fall further behind. The newest one per originator is
/// kept; everything else keeps its order.
fn coalesce(batch: Vec<Term>) -> Vec<Term> {
    if batch.len() < 2 {
        return batch;
    }
    let fresh_from = |m: &Term| -> Option<Term> {
        let [t, d] = m.as_tuple()? else { return None };
        if !t.is_atom("diff") {
            return None;
        }
        let c = super::merkle_diff::field(d, "continuation")?;
        let fresh = matches!(super::merkle_diff::field(c, "keys"), Some(Term::List(k)) if k.is_empty())
            && matches!(super::merkle_diff::field(c, "trees"), Some(Term::List(t)) if t.len() == 1 && matches!(t[0].as_tuple(), Some([Term::Binary(l), _]) if l.is_empty()));
        let from = super::merkle_diff::field(d, "from")?;
        let originator = super::merkle_diff::field(d, "originator")?;
        (fresh && term_eq(from, originator)).then(|| originator.clone())
    };
    let origins: Vec<Option<Term>> = batch.iter().map(fresh_from).collect();
    let mut out = Vec::with_capacity(batch.len());
    for (i, m) in batch.into_iter().enumerate() {
        let superseded = origins[i].as_ref().is_some_and(|o| origins[i + 1..].iter().any(|x| x.as_ref().is_some_and(|x| term_eq(x, o))));
        if superseded {
            tracing::debug!("horde crdt: a fresh sync superseded by a newer one from the same peer skipped");
        } else {
            out.push(m);
        }
    }
    out
}

/// A short description of a term's outer shape, for logs (never the
/// whole term: diffs are big, and formatting one costs more than it).
pub(crate) fn short(t: &Term) -> String {
    crate::processhub::shape(t)
}

/// Starts the process and registers its two names.
pub(crate) fn spawn(
    node: &Node,
    cfg: Config,
    tables: Arc<RwLock<Tables>>,
    requests: mpsc::UnboundedReceiver<Request>,
) -> Result<(Pid, Pid), crate::NodeError> {
    let events = node.subscribe();
    let crdt_mb = node.spawn_mailbox();
    let crdt_pid = crdt_mb.pid().clone();
    let (go_tx, go_rx) = oneshot::channel::<()>();
    let name = cfg.name.clone();
    let reg_pid = node.spawn(move |mb| async move {
        if go_rx.await.is_err() {
            return Term::atom("normal");
        }
        Registry::new(cfg, mb, crdt_mb, tables).run(requests, events).await
    });
    let registered = node.register(name.as_str(), &reg_pid).and_then(|_| node.register(&crdt_name(&name), &crdt_pid));
    if let Err(e) = registered {
        node.unregister(name.as_str());
        node.exit(&reg_pid, Term::atom("kill"));
        return Err(e);
    }
    let _ = go_tx.send(());
    tracing::info!(registry = %name, %reg_pid, %crdt_pid, "horde registry started");
    Ok((reg_pid, crdt_pid))
}
