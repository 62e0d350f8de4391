//! The scope process: pg.erl's gen_server, one per scope, registered
//! under the scope's name so that peers' `{Scope, Node} ! {discover, _}`
//! reaches it.
//!
//! State, as pg.erl's `#state{}`:
//! - `local`: each local member, its monitor and the groups it joined
//!   (a group once per join);
//! - `remote`: each peer scope we are in an overlay with, our monitor on
//!   it and the groups it announced with their pids (for syncs, leaves
//!   and the cleanup when it goes down);
//! - the table (shared with the API) and the subscribers.
//!
//! Inputs, one at a time: nodeups (send `discover`), requests from the
//! Rust API, and the mailbox (peers' protocol messages, calls, DOWNs).
//! A message that fails to parse, or that pg.erl would crash on (a leave
//! for a group the peer never announced), is logged and dropped.

use super::messages::{self, CallRequest, Incoming};
use super::table::{key, GroupKey, Table};
use super::watchers::{PgChange, Sink, Watchers};
use crate::process::Mailbox;
use crate::term::{Atom, Pid, Reference, Term};
use crate::{Node, NodeEvent};
use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use tokio::sync::broadcast::{self, error::RecvError};
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender};
use tokio::sync::oneshot;

/// Requests from the Rust API (the local equivalent of pg's calls).
pub(crate) enum Request {
    Join { group: Term, pids: Vec<Pid>, reply: oneshot::Sender<()> },
    /// Replies false when none of the pids had joined (`not_joined`).
    Leave { group: Term, pids: Vec<Pid>, reply: oneshot::Sender<bool> },
    /// `group: None` subscribes to the whole scope.
    Subscribe { group: Option<Term>, tx: UnboundedSender<PgChange>, reply: oneshot::Sender<(Reference, Vec<(Term, Vec<Pid>)>)> },
    Unsubscribe(Reference),
}

/// What a peer scope announced: group => its pids there.
type RemoteGroups = HashMap<GroupKey, (Term, Vec<Pid>)>;

pub(crate) struct Scope {
    name: Atom,
    node: Node,
    mb: Mailbox,
    table: Arc<RwLock<Table>>,
    local: HashMap<Pid, (Reference, Vec<Term>)>,
    remote: HashMap<Pid, (Reference, RemoteGroups)>,
    watchers: Watchers,
}

/// Whatever ends the scope (its task is dropped when it is killed), its
/// table goes with it, as pg's ETS table does: readers holding an old
/// handle then see no members rather than a frozen view.
impl Drop for Scope {
    fn drop(&mut self) {
        *self.table.write().unwrap() = Table::default();
    }
}

impl Scope {
    pub fn new(name: Atom, mb: Mailbox, table: Arc<RwLock<Table>>) -> Scope {
        Scope { name, node: mb.node(), mb, table, local: HashMap::new(), remote: HashMap::new(), watchers: Watchers::default() }
    }

    fn me(&self) -> Pid {
        self.mb.pid().clone()
    }

    pub async fn run(mut self, mut requests: UnboundedReceiver<Request>, mut events: broadcast::Receiver<NodeEvent>) -> Term {
        // init/1: discover every node this scope may share an overlay with.
        self.discover_all();
        loop {
            tokio::select! {
                biased;
                e = events.recv() => match e {
                    Ok(NodeEvent::Up(n)) => self.discover_node(&n),
                    // Cleanup waits for the DOWN of the peer scope's monitor, as in pg.erl.
                    Ok(NodeEvent::Down { .. }) => {}
                    Err(RecvError::Lagged(k)) => {
                        tracing::warn!(scope = %self.name, missed = k, "pg: node events lagged; discovering every connected node again");
                        self.discover_all();
                    }
                    Err(RecvError::Closed) => return Term::atom("normal"),
                },
                r = requests.recv() => match r {
                    Some(r) => self.request(r),
                    None => return Term::atom("normal"),
                },
                m = self.mb.recv() => match m {
                    Some(m) => self.handle(m),
                    None => return Term::atom("normal"),
                },
            }
        }
    }

    fn discover_all(&self) {
        for n in self.node.connected_nodes() {
            self.discover_node(&n);
        }
    }

    /// Visible nodes only: pg.erl learns nodes from `nodes()` and
    /// `monitor_nodes(true)`, neither of which reports hidden ones.
    fn discover_node(&self, n: &Atom) {
        let hidden = self.node.peer_flags(n).is_some_and(|f| f & crate::handshake::flags::PUBLISHED == 0);
        if n != self.node.name() && !hidden {
            self.node.send_named(self.mb.pid(), self.name.as_str(), n.as_str(), messages::discover(self.mb.pid()));
        }
    }

    fn broadcast(&self, msg: Term) {
        for peer in self.remote.keys() {
            self.mb.send(peer, msg.clone());
        }
    }

    fn request(&mut self, r: Request) {
        match r {
            Request::Join { group, pids, reply } => {
                self.join_local(&group, &pids, pids.len() == 1);
                let _ = reply.send(());
            }
            Request::Leave { group, pids, reply } => {
                let _ = reply.send(self.leave_local(&group, &pids, pids.len() == 1));
            }
            Request::Subscribe { group, tx, reply } => {
                let r = self.node.make_ref();
                let state = self.subscription_state(group.as_ref());
                self.watchers.add(r.clone(), Sink::Chan(tx), group.as_ref());
                let _ = reply.send((r, state));
            }
            Request::Unsubscribe(r) => {
                self.watchers.remove(&r);
            }
        }
    }

    fn subscription_state(&self, group: Option<&Term>) -> Vec<(Term, Vec<Pid>)> {
        let t = self.table.read().unwrap();
        match group {
            None => t.snapshot(),
            Some(g) => vec![(g.clone(), t.members(g))],
        }
    }

    fn handle(&mut self, m: Term) {
        let msg = match Incoming::parse(&m, self.node.name()) {
            Ok(msg) => msg,
            Err(why) => {
                let mut shown = format!("{m:?}");
                shown.truncate(shown.floor_char_boundary(400));
                tracing::warn!(scope = %self.name, %why, msg = %shown, "pg: malformed or unknown message dropped");
                return;
            }
        };
        match msg {
            Incoming::Discover(peer) => self.discover(peer),
            Incoming::Sync { peer, groups } => self.sync(peer, groups),
            Incoming::Join { peer, group, pids } => self.join_remote(&peer, &group, &pids),
            Incoming::Leave { peer, pids, groups } => self.leave_remote(&peer, &pids, &groups),
            Incoming::Down { mref, pid } => self.down(&mref, &pid),
            Incoming::Call { from, request } => self.call(&from, request),
        }
    }

    /// `handle_discover`: answer with our local members; if the peer is
    /// new to us, monitor it and discover it back.
    fn discover(&mut self, peer: Pid) {
        let me = self.me();
        self.mb.send(&peer, messages::sync(&me, self.all_local_pids()));
        if !self.remote.contains_key(&peer) {
            let mref = self.mb.monitor(&peer);
            self.mb.send(&peer, messages::discover(&me));
            self.remote.insert(peer, (mref, HashMap::new()));
        }
    }

    /// `all_local_pids`: group => local pids (a pid once per join).
    fn all_local_pids(&self) -> Vec<(Term, Vec<Pid>)> {
        let mut by_group: HashMap<GroupKey, (Term, Vec<Pid>)> = HashMap::new();
        for (pid, (_, groups)) in &self.local {
            for g in groups {
                by_group.entry(key(g)).or_insert_with(|| (g.clone(), Vec::new())).1.push(pid.clone());
            }
        }
        by_group.into_values().collect()
    }

    /// `handle_sync`: the peer's announcement replaces all we knew of it.
    fn sync(&mut self, peer: Pid, groups: Vec<(Term, Vec<Pid>)>) {
        let (mref, mut old) = match self.remote.remove(&peer) {
            Some(x) => x,
            None => (self.mb.monitor(&peer), HashMap::new()),
        };
        let mut new = HashMap::with_capacity(groups.len());
        for (group, pids) in groups {
            let k = key(&group);
            match old.remove(&k) {
                Some((_, old_pids)) if old_pids == pids => {}
                Some((_, old_pids)) => {
                    self.table.write().unwrap().replace_remote(&group, &old_pids, &pids);
                    self.watchers.notify(&self.mb, false, &group, &old_pids);
                    self.watchers.notify(&self.mb, true, &group, &pids);
                }
                None => self.table_join(&group, &pids, false),
            }
            new.insert(k, (group, pids));
        }
        for (_, (group, pids)) in old {
            self.table_leave(&group, &pids, false);
        }
        self.remote.insert(peer, (mref, new));
    }

    fn table_join(&mut self, group: &Term, pids: &[Pid], local: bool) {
        self.table.write().unwrap().join(group, pids, local);
        self.watchers.notify(&self.mb, true, group, pids);
    }

    fn table_leave(&mut self, group: &Term, pids: &[Pid], local: bool) {
        if self.table.write().unwrap().leave(group, pids, local) {
            self.watchers.notify(&self.mb, false, group, pids);
        }
    }

    fn join_local(&mut self, group: &Term, pids: &[Pid], single: bool) {
        for pid in pids {
            match self.local.get_mut(pid) {
                Some((_, groups)) => groups.insert(0, group.clone()),
                None => {
                    let mref = self.mb.monitor(pid);
                    self.local.insert(pid.clone(), (mref, vec![group.clone()]));
                }
            }
        }
        self.table_join(group, pids, true);
        self.broadcast(messages::join(&self.me(), group, pids, single));
    }

    /// False (`not_joined`) if none of `pids` was a member of `group`.
    fn leave_local(&mut self, group: &Term, pids: &[Pid], single: bool) -> bool {
        let mut left = Vec::new();
        for pid in pids {
            let Some((mref, groups)) = self.local.get_mut(pid) else { continue };
            let Some(i) = groups.iter().position(|g| g == group) else { continue };
            groups.remove(i);
            if groups.is_empty() {
                let mref = mref.clone();
                self.local.remove(pid);
                self.mb.demonitor(&mref);
            }
            left.push(pid.clone());
        }
        if left.is_empty() {
            return false;
        }
        self.table_leave(group, &left, true);
        self.broadcast(messages::leave(&self.me(), &left, single && left.len() == 1, vec![group.clone()]));
        true
    }

    fn join_remote(&mut self, peer: &Pid, group: &Term, pids: &[Pid]) {
        let Some((_, groups)) = self.remote.get_mut(peer) else {
            // pg.erl: a join racing a flickering node, or from a scope outside the overlay.
            tracing::debug!(scope = %self.name, %peer, "pg: join from a scope not in the overlay dropped");
            return;
        };
        let entry = groups.entry(key(group)).or_insert_with(|| (group.clone(), Vec::new()));
        entry.1.splice(0..0, pids.iter().cloned());
        self.table_join(group, pids, false);
    }

    fn leave_remote(&mut self, peer: &Pid, pids: &[Pid], groups: &[Term]) {
        let Some((_, known)) = self.remote.get_mut(peer) else {
            tracing::debug!(scope = %self.name, %peer, "pg: leave from a scope not in the overlay dropped");
            return;
        };
        let mut gone = Vec::new();
        for group in groups {
            let k = key(group);
            let Some((_, members)) = known.get_mut(&k) else {
                // pg.erl would crash here (maps:get badkey): it never happens with a sane peer.
                tracing::warn!(scope = %self.name, %peer, ?group, "pg: leave for a group the peer never joined dropped");
                continue;
            };
            super::table::subtract(members, pids);
            if members.is_empty() {
                known.remove(&k);
            }
            gone.push(group.clone());
        }
        for group in gone {
            self.table_leave(&group, pids, false);
        }
    }

    fn down(&mut self, mref: &Reference, pid: &Pid) {
        if pid.node == *self.node.name() {
            if self.local.get(pid).is_some_and(|(r, _)| r == mref) {
                let (_, groups) = self.local.remove(pid).expect("just looked up");
                for g in &groups {
                    self.table_leave(g, std::slice::from_ref(pid), true);
                }
                self.broadcast(messages::leave(&self.me(), std::slice::from_ref(pid), true, groups));
                return;
            }
        } else if self.remote.get(pid).is_some_and(|(r, _)| r == mref) {
            let (_, groups) = self.remote.remove(pid).expect("just looked up");
            for (_, (group, pids)) in groups {
                self.table_leave(&group, &pids, false);
            }
            return;
        }
        // A subscriber went away (or a late DOWN of a member that left).
        self.watchers.remove(mref);
    }

    /// Calls a process can make of this scope by name, as of pg.erl's.
    fn call(&mut self, from: &Term, request: CallRequest) {
        let caller = match from.as_tuple() {
            Some([Term::Pid(p), _]) => p.clone(),
            _ => {
                tracing::warn!(scope = %self.name, ?from, "pg: call with a malformed From dropped");
                return;
            }
        };
        let reply = match request {
            CallRequest::MonitorScope => {
                let mref = self.mb.monitor(&caller);
                let groups = self.table.read().unwrap().snapshot();
                let map = groups.into_iter().map(|(g, p)| (g, messages::members_term(&p, false))).collect();
                self.watchers.add(mref.clone(), Sink::Pid(caller), None);
                Term::tuple([Term::Ref(mref), Term::Map(map)])
            }
            CallRequest::MonitorGroup(group) => {
                let mref = self.mb.monitor(&caller);
                let members = self.table.read().unwrap().members(&group);
                self.watchers.add(mref.clone(), Sink::Pid(caller), Some(&group));
                Term::tuple([Term::Ref(mref), messages::members_term(&members, false)])
            }
            CallRequest::Demonitor(r) => {
                if self.watchers.is_pid_watcher(&r) {
                    self.watchers.remove(&r);
                    self.mb.demonitor(&r);
                    Term::atom("ok")
                } else {
                    Term::atom("false")
                }
            }
            CallRequest::JoinLocal { group, pids, single } | CallRequest::LeaveLocal { group, pids, single }
                if pids.iter().any(|p| p.node != *self.node.name()) =>
            {
                // pg:join/3 refuses remote pids before calling; answer rather than crash.
                tracing::warn!(scope = %self.name, ?group, single, "pg: join/leave of a pid of another node refused");
                let bad = pids.into_iter().find(|p| p.node != *self.node.name()).expect("checked");
                Term::tuple([Term::atom("error"), Term::tuple([Term::atom("nolocal"), Term::Pid(bad)])])
            }
            CallRequest::Unknown(request) => {
                tracing::warn!(scope = %self.name, %caller, ?request, "pg: unknown call answered {{error, badarg}}");
                Term::tuple([Term::atom("error"), Term::atom("badarg")])
            }
            CallRequest::JoinLocal { group, pids, single } => {
                self.join_local(&group, &pids, single);
                Term::atom("ok")
            }
            CallRequest::LeaveLocal { group, pids, single } => {
                Term::atom(if self.leave_local(&group, &pids, single) { "ok" } else { "not_joined" })
            }
        };
        self.mb.reply(from, reply);
    }
}
