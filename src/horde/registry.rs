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

use super::peer::{crdt_name, crdt_neighbours, key_kind, short, CrdtPeer};
use super::store::Change;
use super::tables::{Entry, Tables};
use super::term_key::term_eq;
use crate::node::{gen_call_parts, NodeEvent};
use crate::process::Mailbox;
use crate::term::{Atom, Pid, Term};
use crate::Node;
use std::collections::VecDeque;
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::sync::{broadcast, mpsc, oneshot};

/// `{Reg, node}`.
fn member_of(name: &Atom, node: &Atom) -> Term {
    Term::tuple([Term::Atom(name.clone()), Term::Atom(node.clone())])
}

/// Requests from the Rust API.
pub(crate) enum Request {
    Register { key: Term, value: Term, pid: Pid, reply: oneshot::Sender<()> },
    Unregister { key: Term, pid: Pid, reply: oneshot::Sender<()> },
    UpdateValue { key: Term, pid: Pid, value: Term, reply: oneshot::Sender<()> },
    PutMeta { key: Term, value: Term, reply: oneshot::Sender<()> },
    /// Run `f` inside the process (tests, stats).
    Inspect(Box<dyn FnOnce(&super::crdt::Crdt) + Send>),
    /// Offer every neighbour the tree as it is now; `true` once each
    /// acked it, `false` at `until` (see [`Flush`]).
    Flush { until: std::time::Instant, reply: oneshot::Sender<bool> },
}

/// A [`Request::Flush`] waiting for its acks.
///
/// Why: a member that leaves takes its unsynced writes with it. The
/// deletes of its stopped processes' keys are among them, and the Elixir
/// members then keep those keys until they drop the departed member; that
/// drop removes every version of the key their CRDT holds, a newer
/// registration by the child restarted elsewhere included when the
/// registry has not yet seen it (the restarted child then runs unnamed).
/// DeltaCrdt syncs once when it terminates, without waiting; a Rust
/// member waits for the acks.
///
/// Two rounds: DeltaCrdt acks a round as soon as it has asked for the
/// data (`get_diff`), before the data arrives, so the first ack means the
/// deletes are on their way; the ack of a second round, which each
/// neighbour handles after that data, means they are applied there.
/// Without it a reader right after the flush could still see the keys
/// (seen under load in
/// `flush_delivers_the_last_deletes_before_the_member_goes`).
struct Flush {
    started: std::time::Instant,
    until: std::time::Instant,
    reply: oneshot::Sender<bool>,
    /// The second round was started (at `started`).
    confirming: bool,
}

pub(crate) struct Config {
    pub name: Atom,
    pub auto: bool,
    pub members: Vec<Atom>,
    pub sync_interval: Duration,
    pub max_items: usize,
}

/// A name a local owner lost to a process on another node, held while a
/// monitor tells whether that winner is alive (see `add_key`).
struct Contested {
    key: Term,
    value: Term,
    loser: Pid,
    reason: Term,
    until: std::time::Instant,
}

/// Sleeps until the first contested name's deadline (forever when none).
async fn contest_deadline(c: &std::collections::HashMap<crate::term::Reference, Contested>) {
    match c.values().map(|x| x.until).min() {
        Some(t) => tokio::time::sleep_until(tokio::time::Instant::from_std(t)).await,
        None => std::future::pending().await,
    }
}

/// How long a contested name waits for the winner's monitor to fire.
const CONTEST_WAIT: Duration = Duration::from_millis(200);

pub(crate) struct Registry {
    contested: std::collections::HashMap<crate::term::Reference, Contested>,
    auto: super::peer::AutoMembers,
    cfg: Config,
    node: Node,
    reg: Mailbox,
    peer: CrdtPeer,
    tables: Arc<RwLock<Tables>>,
    /// `state.members` of RegistryImpl: `{Reg, Node}` terms.
    members: Vec<Term>,
    flushes: Vec<Flush>,
}

impl Registry {
    pub fn new(cfg: Config, reg: Mailbox, crdt_mb: Mailbox, tables: Arc<RwLock<Tables>>) -> Registry {
        let peer = CrdtPeer::new(cfg.name.clone(), crdt_mb, cfg.max_items);
        Registry { contested: Default::default(), auto: Default::default(), node: reg.node(), cfg, reg, peer, tables, members: vec![], flushes: vec![] }
    }

    fn me(&self) -> Term {
        self.member_of(self.node.name())
    }

    fn member_of(&self, node: &Atom) -> Term {
        member_of(&self.cfg.name, node)
    }

    /// `Node.list([:visible, :this])`, as NodeListener's `make_members`.
    fn visible_members(&self) -> Vec<Term> {
        super::peer::visible_nodes(&self.node).iter().map(|n| self.member_of(n)).collect()
    }

    pub async fn run(mut self, mut requests: mpsc::UnboundedReceiver<Request>, mut events: broadcast::Receiver<NodeEvent>) -> Term {
        self.reg.trap_exit(true);
        let initial = crate::horde::peer::initial_members(&self.node, &self.cfg.name, self.cfg.auto, &self.cfg.members);
        self.set_members(initial);
        let mut tick = crate::horde::peer::sync_ticker(self.cfg.sync_interval);
        let mut yielder = crate::process::Yielder::new();
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
                e = events.recv(), if self.cfg.auto => {
                    if matches!(e, Err(broadcast::error::RecvError::Closed)) {
                        return Term::atom("normal");
                    }
                    let visible = self.visible_members();
                    let m = self.auto.on_event(&self.members, &e, visible, |n| member_of(&self.cfg.name, n));
                    self.set_members(m);
                }
                // The tick before the CRDT's mailbox: this member's own
                // keys reach the others only through the syncs it starts
                // here, and under load the peers' syncs can keep the
                // mailbox from ever being empty (tests/horde_busy_peer.rs).
                // A tick is ready once per interval, so it cannot starve
                // the mailbox in turn.
                _ = tick.tick() => {
                    if let Some(m) = self.auto.prune(&self.members) {
                        self.set_members(m);
                    }
                    let changes = self.peer.tick();
                    self.process_changes(changes);
                }
                m = self.peer.mb.recv() => match m {
                    Some(m) => {
                        let changes = self.peer.on_messages(m);
                        self.process_changes(changes);
                        if !self.flushes.is_empty() {
                            // A neighbour that acked an older round gets
                            // the round the flush waits for right away.
                            let changes = self.peer.tick_forced();
                            self.process_changes(changes);
                        }
                    }
                    None => return Term::atom("normal"),
                },
                _ = contest_deadline(&self.contested) => {}
            }
            self.contests_expired();
            self.flushes_done();
            // Let the tasks this one woke run (see `Yielder`).
            yielder.after_turn().await;
        }
    }

    /// Starts a [`Flush`]: the exits already queued (owners that just
    /// stopped) are handled first, so their keys' deletes are in the tree
    /// the neighbours are offered.
    fn flush(&mut self, until: std::time::Instant, reply: oneshot::Sender<bool>) {
        for m in self.reg.drain() {
            self.reg_message(m);
        }
        self.flushes.push(Flush { started: std::time::Instant::now(), until, reply, confirming: false });
        let changes = self.peer.tick_forced();
        self.process_changes(changes);
    }

    /// Answers the flushes every neighbour acked, and those past their
    /// deadline.
    fn flushes_done(&mut self) {
        if self.flushes.is_empty() {
            return;
        }
        let now = std::time::Instant::now();
        let mut another_round = false;
        for mut f in std::mem::take(&mut self.flushes) {
            if self.peer.crdt.all_acked_since(f.started) && f.confirming {
                let _ = f.reply.send(true);
            } else if self.peer.crdt.all_acked_since(f.started) {
                f.started = now;
                f.confirming = true;
                another_round = true;
                self.flushes.push(f);
            } else if f.until <= now {
                tracing::warn!(registry = %self.cfg.name, neighbours = self.peer.crdt.neighbours().len(), "horde registry: flush timed out; a neighbour did not ack");
                let _ = f.reply.send(false);
            } else {
                self.flushes.push(f);
            }
        }
        if another_round {
            let changes = self.peer.tick_forced();
            self.process_changes(changes);
        }
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
            let Some((kind, inner)) = key_kind(key) else { continue };
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
                        let crdt_key = Term::tuple([Term::atom("key"), k.clone()]);
                        // The CRDT may already hold a newer registration of
                        // the key by a live member (the process Horde
                        // restarted after the member's node died, merged in
                        // the same batch): a delete would remove that too
                        // and leave the name to nobody. Only the dead
                        // member's registration goes.
                        let newer = self.peer.crdt.store.read(&crdt_key).is_some_and(|v| match v.as_tuple() {
                            Some([member, ..]) => !term_eq(member, inner),
                            _ => false,
                        });
                        tracing::debug!(registry = %self.cfg.name, key = %short(&k), %pid, newer, "horde registry: key of a removed member");
                        if !newer {
                            queue.extend(self.peer.delete(&crdt_key));
                        }
                        self.tables.write().unwrap().remove_key_of(&k, &pid);
                    }
                    self.members.retain(|m| !term_eq(m, inner));
                }
                ("key", Some(v)) => self.add_key(inner, v),
                ("key", None) => {
                    tracing::debug!(registry = %self.cfg.name, key = %short(inner), "horde registry: key removed");
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
            let me = self.node.name();
            if o.pid.node == *me && pid.node != *me {
                // A local owner lost to a remote pid. DeltaCrdt can bring
                // back a registration that was already replaced (a dot
                // its sync context missed) and, by timestamp, it may win:
                // if that winner is dead, killing the live owner would
                // leave the name to nobody. A monitor tells: DOWN at once
                // means the winner is gone and the owner takes the name
                // back; no DOWN within CONTEST_WAIT (a monitor of a dead
                // pid fires within a round trip), the owner exits as
                // Horde's loser does.
                let r = self.reg.monitor(pid);
                self.contested.insert(r, Contested { key: key.clone(), value: o.value.clone(), loser: o.pid.clone(), reason, until: std::time::Instant::now() + CONTEST_WAIT });
            } else {
                self.reg.exit(&o.pid, reason);
            }
        }
    }

    /// The winner of a contested name is down: the local owner, if alive,
    /// registers again.
    fn contest_down(&mut self, r: &crate::term::Reference) {
        let Some(c) = self.contested.remove(r) else { return };
        if self.node.is_alive(&c.loser) {
            tracing::info!(registry = %self.cfg.name, key = %short(&c.key), owner = %c.loser, "horde registry: the name's winner is not alive; the owner takes it back");
            self.put_key(c.key, c.value, c.loser);
        }
    }

    /// Contested names whose winner is alive: the loser exits.
    fn contests_expired(&mut self) {
        let now = std::time::Instant::now();
        let done: Vec<crate::term::Reference> = self.contested.iter().filter(|(_, c)| c.until <= now).map(|(r, _)| r.clone()).collect();
        for r in done {
            let c = self.contested.remove(&r).expect("listed");
            self.reg.demonitor(&r);
            self.reg.exit(&c.loser, c.reason);
        }
    }

    fn update_neighbours(&mut self) {
        let n = crdt_neighbours(&self.me(), &self.members);
        let changes = self.peer.set_neighbours(n);
        self.process_changes(changes);
    }

    /// `handle_call({:set_members, members})`.
    fn set_members(&mut self, new: Vec<Term>) {
        let removed: Vec<Term> = self.members.iter().filter(|m| !new.iter().any(|n| term_eq(n, m))).cloned().collect();
        let added: Vec<Term> = new.iter().filter(|n| !self.members.iter().any(|m| term_eq(n, m))).cloned().collect();
        let mut changes = vec![];
        for m in &removed {
            changes.extend(self.peer.delete(&Term::tuple([Term::atom("member"), m.clone()])));
        }
        for m in &added {
            changes.extend(self.peer.put(Term::tuple([Term::atom("member"), m.clone()]), Term::Int(1)));
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
        let changes = self.peer.put(Term::tuple([Term::atom("key"), key]), v);
        self.process_changes(changes);
    }

    fn unregister(&mut self, key: Term, pid: &Pid) {
        let changes = self.peer.delete(&Term::tuple([Term::atom("key"), key.clone()]));
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
                let changes = self.peer.put(Term::tuple([Term::atom("registry"), key]), value);
                self.process_changes(changes);
                let _ = reply.send(());
            }
            Request::Inspect(f) => f(&self.peer.crdt),
            Request::Flush { until, reply } => self.flush(until, reply),
        }
    }

    fn reg_message(&mut self, m: Term) {
        if let Some((from, req)) = gen_call_parts(&m) {
            let reply = self.call(req);
            self.reg.reply(from, reply);
            return;
        }
        match m.as_tuple() {
            Some([t, Term::Ref(r), _, _, _]) if t.is_atom("DOWN") => {
                let r = r.clone();
                self.contest_down(&r);
            }
            Some([t, Term::Pid(pid), _]) if t.is_atom("EXIT") => {
                // handle_info({:EXIT, pid, _}): the owner's keys go.
                let keys = self.tables.write().unwrap().pids.remove(pid).map(|k| k.newest_first()).unwrap_or_default();
                for k in keys {
                    let changes = self.peer.delete(&Term::tuple([Term::atom("key"), k.clone()]));
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
                let changes = self.peer.put(Term::tuple([Term::atom("registry"), key.clone()]), value.clone());
                self.process_changes(changes);
                ok
            }
            Some([t, key]) if t.is_atom("delete_meta") => {
                let changes = self.peer.delete(&Term::tuple([Term::atom("registry"), key.clone()]));
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
