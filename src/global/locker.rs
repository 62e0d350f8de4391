//! The locker: global.erl's `the_locker` process.
//!
//! Before two partitions exchange names, each must hold global's lock on
//! all of its own nodes, under one lock id both compute independently:
//! `{global, lists:sort([MyLocker, HisLocker])}`. The locker does that
//! locking for every pending sync, in one of two roles:
//!
//! - initiator (`select_node`): after a pause it picks a pending peer,
//!   locks the boss of its partition, itself, the peer node and the rest
//!   of its partition, then tells the peer's locker `lock_set true` and
//!   waits for the same answer;
//! - responder: a peer's `lock_set true` arrives first; it locks its own
//!   partition under the same id and answers `lock_set` with the result.
//!
//! Either way, once both hold their side it tells the server
//! (`lock_is_set`), which exchanges names, and keeps the lock until the
//! server cancels the session; the cancel may carry the `new_nodes`
//! casts, which must leave before the lock is released.
//!
//! Its pid is what peers see as `TheLockerPid` in init_connect: peers
//! grant it locks and monitor it, so it is a real process of this node.

use super::lockops::{del_lock, delete_global_lock, set_lock_on_nodes, subtract};
use super::messages::{self, VERIFY_CONNECT_VSN};
use super::multicall::GNS;
use super::order::{sorted_pair, the_boss};
use super::server::Internal;
use super::{LockId, Shared};
use crate::process::{Dest, Mailbox};
use crate::term::{Atom, Pid, Term};
use rand::Rng;
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender};

/// What the server (and, for old peers, a remote locker) tells the locker.
#[derive(Debug)]
pub(crate) enum LockerMsg {
    /// A sync session with `locker`'s node has started.
    HisTheLocker { locker: Pid, vsn: u32, his_tag: Term, my_tag: Term },
    /// Forget the session `tag` with `node`; if the locker holds the lock
    /// for it, first send `then`, then release. `then: None` is
    /// global.erl's `no_fun`.
    Cancel { node: Atom, tag: Term, then: Option<Vec<(Atom, Term)>> },
    /// The peer's locker says whether it locked its side.
    LockSet { pid: Pid, set: bool, tag: Option<Term> },
    AddToKnown(Vec<Atom>),
    RemoveFromKnown(Atom),
}

#[derive(Debug, Clone, PartialEq)]
struct Him {
    node: Atom,
    locker: Pid,
    vsn: u32,
    my_tag: Term,
    his_tag: Term,
}

/// The process has been killed or the server is gone.
struct Dead;

pub(crate) struct Locker {
    mb: Mailbox,
    rx: UnboundedReceiver<LockerMsg>,
    inbox: VecDeque<LockerMsg>,
    /// Peers on this host are tried first (global.erl's optimisation).
    local: Vec<Him>,
    remote: Vec<Him>,
    known: Vec<Atom>,
    the_boss: Atom,
    just_synced: bool,
    shared: Arc<Shared>,
    server: UnboundedSender<Internal>,
    me: Atom,
    my_host: String,
}

impl Locker {
    pub fn new(mb: Mailbox, rx: UnboundedReceiver<LockerMsg>, shared: Arc<Shared>, server: UnboundedSender<Internal>) -> Locker {
        let me = mb.node().name().clone();
        Locker {
            mb,
            rx,
            inbox: VecDeque::new(),
            local: vec![],
            remote: vec![],
            known: vec![],
            the_boss: me.clone(),
            just_synced: false,
            shared,
            server,
            my_host: crate::node::names::short_hostname(),
            me,
        }
    }

    pub async fn run(mut self) -> Term {
        match self.main_loop().await {
            Ok(()) | Err(Dead) => Term::atom("normal"),
        }
    }

    async fn main_loop(&mut self) -> Result<(), Dead> {
        loop {
            let msg = match self.inbox.pop_front() {
                Some(m) => Some(m),
                None => {
                    let timeout = if self.local.is_empty() && self.remote.is_empty() {
                        None
                    } else if self.just_synced {
                        Some(Duration::ZERO)
                    } else if self.known.is_empty() {
                        Some(Duration::from_millis(200))
                    } else {
                        Some(Duration::from_millis((1000 + 100 * self.known.len() as u64).min(3000)))
                    };
                    self.just_synced = false;
                    self.recv_timeout(timeout).await?
                }
            };
            match msg {
                Some(m) => self.handle(m).await?,
                // Someone else (a registration, another sync) holds
                // global here: wait for the next round.
                None if self.shared.global_lock_set() => {}
                None => self.select_node().await?,
            }
        }
    }

    async fn handle(&mut self, m: LockerMsg) -> Result<(), Dead> {
        match m {
            LockerMsg::HisTheLocker { locker, vsn, his_tag, my_tag } => {
                let him = Him { node: locker.node.clone(), locker, vsn, my_tag, his_tag };
                if self.is_node_local(&him.node) {
                    self.local.insert(0, him);
                } else {
                    self.remote.insert(0, him);
                }
            }
            LockerMsg::Cancel { tag, .. } if tag.is_atom("undefined") => {}
            LockerMsg::Cancel { node, tag, then: None } => self.remove_node(&node, &tag),
            LockerMsg::Cancel { node, tag, then: Some(_) } => {
                // global.erl's locker drops a cancel with a fun that
                // arrives when it holds no lock for the session.
                tracing::debug!(%node, ?tag, "global locker: cancel with new_nodes for a session it holds no lock for; ignored");
            }
            LockerMsg::LockSet { set: false, .. } => {}
            LockerMsg::LockSet { pid, set: true, tag } => self.respond(pid, tag).await?,
            LockerMsg::AddToKnown(nodes) => self.update_known_add(nodes),
            LockerMsg::RemoveFromKnown(n) => self.update_known_remove(&n),
        }
        Ok(())
    }

    /// A peer's locker holds its side and asks us to lock ours.
    async fn respond(&mut self, pid: Pid, tag: Option<Term>) -> Result<(), Dead> {
        let node = pid.node.clone();
        let him = self.find_node_tag(&node).filter(|h| tag.as_ref().is_none_or(|t| *t == h.my_tag)).cloned();
        let Some(him) = him else {
            // No such session: refuse, as global.erl does, straight to
            // the asking locker in the version 5 form.
            let msg = messages::lock_set(self.mb.pid(), false, &self.known, None);
            self.mb.send(&pid, msg);
            return Ok(());
        };
        let lock_id = LockId::global(sorted_pair(self.mb.pid(), &pid));
        let is_set = self.lock_nodes_safely(&lock_id, &[]).await?;
        self.send_lock_set(is_set, &pid, him.vsn, &him.his_tag);
        if is_set {
            let mut known2 = vec![self.me.clone()];
            known2.extend(self.known.iter().cloned());
            self.tell_server_lock_is_set(&node, &him.my_tag, &lock_id);
            self.wait_cancel_lock(&node, &lock_id, &him.my_tag, &known2).await?;
            self.just_synced = true;
            self.remove_node(&node, &him.my_tag);
        } else {
            self.just_synced = false;
        }
        Ok(())
    }

    async fn select_node(&mut self) -> Result<(), Dead> {
        let use_remote = self.local.is_empty();
        let known = self.known.clone();
        let list = if use_remote { &mut self.remote } else { &mut self.local };
        list.retain(|h| !known.contains(&h.node));
        if list.is_empty() {
            return Ok(());
        }
        let him = list[rand::thread_rng().gen_range(0..list.len())].clone();
        let lock_id = LockId::global(sorted_pair(self.mb.pid(), &him.locker));
        // Locking one node of the other partition too (the peer itself)
        // is what makes two partitions locking at once unable to
        // deadlock: the second one meets the first's id there.
        let is_set = self.lock_nodes_safely(&lock_id, std::slice::from_ref(&him.node)).await?;
        if is_set {
            let mut known1 = vec![self.me.clone(), him.node.clone()];
            known1.extend(self.known.iter().cloned());
            self.send_lock_set(true, &him.locker, him.vsn, &him.his_tag);
            self.lock_is_set(&him, &known1, &lock_id).await?;
        }
        Ok(())
    }

    /// The initiator waits for the peer's `lock_set` (no timeout, as in
    /// global.erl: a lost peer arrives as a cancel from the server).
    async fn lock_is_set(&mut self, him: &Him, known1: &[Atom], lock_id: &LockId) -> Result<(), Dead> {
        loop {
            let node = him.node.clone();
            let my_tag = him.my_tag.clone();
            let m = self
                .recv_where(|m| match m {
                    LockerMsg::LockSet { pid, .. } => pid.node == node,
                    LockerMsg::Cancel { node: n, tag, .. } => *n == node && *tag == my_tag,
                    _ => false,
                })
                .await?;
            match m {
                LockerMsg::LockSet { set: true, tag: Some(t), .. } | LockerMsg::LockSet { set: false, tag: Some(t), .. }
                    if t != him.my_tag =>
                {
                    continue; // an old session's answer
                }
                LockerMsg::LockSet { set: true, .. } => {
                    self.tell_server_lock_is_set(&him.node, &him.my_tag, lock_id);
                    self.wait_cancel_lock(&him.node, lock_id, &him.my_tag, known1).await?;
                    self.just_synced = true;
                    if let Some(i) = self.local.iter().position(|h| h == him) {
                        self.local.remove(i);
                    }
                    if let Some(i) = self.remote.iter().position(|h| h == him) {
                        self.remote.remove(i);
                    }
                    return Ok(());
                }
                LockerMsg::LockSet { set: false, .. } => {
                    delete_global_lock(&mut self.mb, lock_id, known1).await;
                    return Ok(());
                }
                LockerMsg::Cancel { then, .. } => {
                    self.run_then(then);
                    delete_global_lock(&mut self.mb, lock_id, known1).await;
                    self.remove_node(&him.node, &him.my_tag);
                    return Ok(());
                }
                _ => unreachable!("filtered by recv_where"),
            }
        }
    }

    /// Holds the lock until the server ends the session.
    async fn wait_cancel_lock(&mut self, node: &Atom, lock_id: &LockId, my_tag: &Term, known: &[Atom]) -> Result<(), Dead> {
        let m = self.recv_where(|m| matches!(m, LockerMsg::Cancel { node: n, tag, .. } if n == node && tag == my_tag)).await?;
        if let LockerMsg::Cancel { then, .. } = m {
            self.run_then(then);
        }
        delete_global_lock(&mut self.mb, lock_id, known).await;
        Ok(())
    }

    /// Sent from the locker before it releases the lock, so peers get
    /// `new_nodes` while the lock id it names is still held.
    fn run_then(&self, then: Option<Vec<(Atom, Term)>>) {
        for (node, msg) in then.unwrap_or_default() {
            self.mb.send_to(&Dest::Name { name: Atom::new(GNS), node }, msg);
        }
    }

    /// Locks the boss first, then this node and `extra`, then the rest of
    /// the partition; all or nothing.
    async fn lock_nodes_safely(&mut self, lock_id: &LockId, extra: &[Atom]) -> Result<bool, Dead> {
        let first = vec![self.the_boss.clone()];
        if first != [self.me.clone()] && !self.shared.can_set_lock(lock_id) {
            return Ok(false);
        }
        if !set_lock_on_nodes(&mut self.mb, &self.shared, lock_id, &first).await {
            return Ok(false);
        }
        self.update_known_now().await?;
        let mut second = vec![self.me.clone()];
        second.extend(extra.iter().cloned());
        let second = subtract(&second, &first);
        if !set_lock_on_nodes(&mut self.mb, &self.shared, lock_id, &second).await {
            del_lock(&mut self.mb, lock_id, &first).await;
            return Ok(false);
        }
        let rest = subtract(&self.known, &first);
        if set_lock_on_nodes(&mut self.mb, &self.shared, lock_id, &rest).await {
            return Ok(true);
        }
        let mut so_far = first;
        so_far.extend(second);
        del_lock(&mut self.mb, lock_id, &so_far).await;
        Ok(false)
    }

    fn send_lock_set(&self, set: bool, his_locker: &Pid, vsn: u32, his_tag: &Term) {
        let tag = (vsn >= VERIFY_CONNECT_VSN).then_some(his_tag);
        let msg = messages::lock_set(self.mb.pid(), set, &self.known, tag);
        if vsn < 6 {
            self.mb.send(his_locker, msg);
        } else {
            self.mb.send_to(&Dest::Name { name: Atom::new(GNS), node: his_locker.node.clone() }, messages::cast(msg));
        }
    }

    fn tell_server_lock_is_set(&self, node: &Atom, my_tag: &Term, lock_id: &LockId) {
        let _ = self.server.send(Internal::LockIsSet { node: node.clone(), tag: my_tag.clone(), lock_id: lock_id.to_term() });
    }

    fn find_node_tag(&self, node: &Atom) -> Option<&Him> {
        self.local.iter().chain(self.remote.iter()).find(|h| h.node == *node)
    }

    fn remove_node(&mut self, node: &Atom, tag: &Term) {
        for list in [&mut self.local, &mut self.remote] {
            if let Some(i) = list.iter().position(|h| h.node == *node && h.my_tag == *tag) {
                list.remove(i);
            }
        }
    }

    fn is_node_local(&self, node: &Atom) -> bool {
        node.as_str().split_once('@').is_some_and(|(_, host)| host == self.my_host)
    }

    fn update_known_add(&mut self, nodes: Vec<Atom>) {
        let mut k = nodes;
        k.append(&mut self.known);
        self.known = k;
        self.recompute_boss();
    }

    fn update_known_remove(&mut self, node: &Atom) {
        if let Some(i) = self.known.iter().position(|n| n == node) {
            self.known.remove(i);
        }
        self.recompute_boss();
    }

    fn recompute_boss(&mut self) {
        let mut all = vec![self.me.clone()];
        all.extend(self.known.iter().cloned());
        self.the_boss = the_boss(&all).expect("not empty");
    }

    /// Applies every known-nodes update already queued, leaving other
    /// messages where they are.
    async fn update_known_now(&mut self) -> Result<(), Dead> {
        self.pull_ready().await?;
        let mut rest = VecDeque::with_capacity(self.inbox.len());
        while let Some(m) = self.inbox.pop_front() {
            match m {
                LockerMsg::AddToKnown(n) => self.update_known_add(n),
                LockerMsg::RemoveFromKnown(n) => self.update_known_remove(&n),
                other => rest.push_back(other),
            }
        }
        self.inbox = rest;
        Ok(())
    }

    // -----------------------------------------------------------------
    // Receiving: the server's channel and the mailbox (where old peers'
    // lockers send `lock_set` directly) merged into one queue, with
    // Erlang's selective receive over it.

    async fn recv_timeout(&mut self, timeout: Option<Duration>) -> Result<Option<LockerMsg>, Dead> {
        if let Some(m) = self.inbox.pop_front() {
            return Ok(Some(m));
        }
        // Erlang's `after 0`: look, don't wait (a zero tokio timer would
        // still wait for the next millisecond tick).
        if timeout == Some(Duration::ZERO) {
            self.pull_ready().await?;
            return Ok(self.inbox.pop_front());
        }
        let deadline = timeout.map(|t| tokio::time::Instant::now() + t);
        if self.pull(deadline).await? {
            Ok(self.inbox.pop_front())
        } else {
            Ok(None)
        }
    }

    async fn recv_where(&mut self, f: impl Fn(&LockerMsg) -> bool) -> Result<LockerMsg, Dead> {
        let mut scanned = 0;
        loop {
            if let Some(i) = self.inbox.iter().skip(scanned).position(&f) {
                return Ok(self.inbox.remove(scanned + i).expect("index in range"));
            }
            scanned = self.inbox.len();
            self.pull(None).await?;
        }
    }

    /// Moves everything already waiting into the queue, without blocking.
    async fn pull_ready(&mut self) -> Result<(), Dead> {
        while let Ok(m) = self.rx.try_recv() {
            self.inbox.push_back(m);
        }
        for t in self.mb.drain() {
            if let Some(m) = from_mailbox(&t) {
                self.inbox.push_back(m);
            }
        }
        Ok(())
    }

    /// Waits for one more message; false on timeout.
    async fn pull(&mut self, deadline: Option<tokio::time::Instant>) -> Result<bool, Dead> {
        loop {
            let sleep = async {
                match deadline {
                    Some(d) => tokio::time::sleep_until(d).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                biased;
                m = self.rx.recv() => match m {
                    Some(m) => {
                        self.inbox.push_back(m);
                        return Ok(true);
                    }
                    None => return Err(Dead),
                },
                t = self.mb.recv() => match t {
                    Some(t) => {
                        if let Some(m) = from_mailbox(&t) {
                            self.inbox.push_back(m);
                            return Ok(true);
                        }
                        // A stray was dropped. The biased select polls
                        // the timer only once the queues are empty, so a
                        // flood of strays would hold the timeout back for
                        // as long as it lasts: look at the clock here.
                        if deadline.is_some_and(|d| tokio::time::Instant::now() >= d) {
                            return Ok(false);
                        }
                    }
                    None => return Err(Dead),
                },
                _ = sleep => return Ok(false),
            }
        }
    }
}

/// The only message a peer sends straight to a locker pid: a version 5
/// style `{lock_set, Pid, Bool, Known}` refusal. Anything else (late call
/// replies, strays) is dropped.
fn from_mailbox(t: &Term) -> Option<LockerMsg> {
    match t.as_tuple()? {
        // Version 5-6 peers omit the tag; 7+ send it last.
        [tag, Term::Pid(p), set, _known, his_tag @ ..] if tag.is_atom("lock_set") && his_tag.len() <= 1 => {
            let set = if set.is_atom("true") {
                true
            } else if set.is_atom("false") {
                false
            } else {
                return None;
            };
            Some(LockerMsg::LockSet { pid: p.clone(), set, tag: his_tag.first().cloned() })
        }
        _ => {
            tracing::trace!(msg = ?t, "global locker: stray message dropped");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Node, Term};

    /// Junk sent straight to the locker's pid (it is visible to every
    /// peer) must not keep its timer from firing: the locker's rounds
    /// (`select_node`) run on that timeout. 200,000 strays take far longer
    /// than the 1 ms wait to drop, so a locker that drains them all first
    /// returns with none left.
    #[tokio::test]
    async fn a_flood_of_strays_does_not_hold_back_the_timeout() {
        let node = Node::builder(format!("lk_{}@127.0.0.1", std::process::id()))
            .cookie("c")
            .publish(false)
            .embedded_epmd(false)
            .start()
            .await
            .unwrap();
        let (queued_tx, queued_rx) = tokio::sync::oneshot::channel::<()>();
        let (out_tx, out_rx) = tokio::sync::oneshot::channel::<(bool, usize)>();
        let pid = node.spawn(move |mb| async move {
            let _ = queued_rx.await;
            let (_tx, rx) = tokio::sync::mpsc::unbounded_channel();
            let (server, _server_rx) = tokio::sync::mpsc::unbounded_channel();
            let mut locker = Locker::new(mb, rx, Arc::new(Shared::default()), server);
            let deadline = tokio::time::Instant::now() + Duration::from_millis(1);
            let got = locker.pull(Some(deadline)).await.ok().unwrap_or(true);
            let left = locker.mb.drain().len();
            let _ = out_tx.send((got, left));
            Term::atom("normal")
        });
        for i in 0..200_000 {
            node.send(&pid, Term::tuple([Term::atom("junk"), Term::Int(i)]));
        }
        queued_tx.send(()).unwrap();
        let (got, left) = out_rx.await.unwrap();
        assert!(!got, "a stray is no message: the wait ends on its timer");
        assert!(left > 0, "the timer fired only once all 200,000 strays were dropped");
    }
}
