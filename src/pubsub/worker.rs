//! The local half of a Phoenix.PubSub server: the subscriber table and
//! the workers that receive other nodes' broadcasts.
//!
//! A worker is what `Phoenix.PubSub.PG2Worker` is on an Elixir node: a
//! process registered under its pg group's name (so `direct_broadcast`
//! reaches it by name) and joined to that group in the
//! `Phoenix.PubSub` scope (so `broadcast` finds it). It takes
//! `{forward_to_local, Topic, Message, Dispatcher}` and delivers Message
//! to this node's subscribers of Topic, in arrival order, so each
//! publisher's order is kept.

use super::names::DEFAULT_DISPATCHER;
use crate::process::Mailbox;
use crate::term::{Atom, Pid, Term};
use crate::Node;
use bytes::Bytes;
use std::collections::HashMap;
use std::sync::RwLock;

/// Topic => subscribers, with Registry's duplicate keys: a process that
/// subscribed twice receives each message twice.
#[derive(Default)]
pub(crate) struct Subscribers {
    by_topic: RwLock<HashMap<Bytes, Vec<Pid>>>,
}

impl Subscribers {
    pub fn add(&self, topic: &[u8], pid: &Pid) {
        self.by_topic.write().unwrap().entry(Bytes::copy_from_slice(topic)).or_default().push(pid.clone());
    }

    /// `Registry.unregister/2`: every subscription of `pid` to `topic`.
    pub fn remove(&self, topic: &[u8], pid: &Pid) {
        let mut t = self.by_topic.write().unwrap();
        if let Some(v) = t.get_mut(topic) {
            v.retain(|p| p != pid);
            if v.is_empty() {
                t.remove(topic);
            }
        }
    }

    /// `Phoenix.PubSub.dispatch/3`: sends `message` to every live
    /// subscriber of `topic` but `from`. Dead subscribers (a Registry
    /// entry goes with its process) are pruned here.
    pub fn dispatch(&self, node: &Node, topic: &[u8], from: Option<&Pid>, message: &Term) -> usize {
        let subs = match self.by_topic.read().unwrap().get(topic) {
            Some(v) => v.clone(),
            None => return 0,
        };
        let mut sent = 0;
        let mut dead = false;
        for pid in &subs {
            if !node.is_alive(pid) {
                dead = true;
            } else if Some(pid) != from {
                node.send(pid, message.clone());
                sent += 1;
            }
        }
        if dead {
            let mut t = self.by_topic.write().unwrap();
            if let Some(v) = t.get_mut(topic) {
                v.retain(|p| node.is_alive(p));
                if v.is_empty() {
                    t.remove(topic);
                }
            }
        }
        sent
    }
}

/// `{forward_to_local, Topic, Message, Dispatcher}`, the message PG2
/// sends a member on another node (and `direct_broadcast` a worker).
pub fn forward_to_local(topic: &[u8], message: Term, dispatcher: &Atom) -> Term {
    Term::tuple([Term::atom("forward_to_local"), Term::binary(Bytes::copy_from_slice(topic)), message, Term::Atom(dispatcher.clone())])
}

/// Splits a `forward_to_local` message; `Err` says why it is not one.
pub(crate) fn parse_forward(m: &Term) -> Result<(&[u8], &Term, &Atom), &'static str> {
    match m.as_tuple() {
        Some([tag, Term::Binary(topic), message, Term::Atom(d)]) if tag.is_atom("forward_to_local") => Ok((topic, message, d)),
        Some([tag, ..]) if tag.is_atom("forward_to_local") => Err("malformed forward_to_local"),
        _ => Err("not a forward_to_local"),
    }
}

/// A worker's loop: PG2Worker's `handle_info`. Anything else is dropped
/// (PG2Worker ignores it too); a custom dispatcher cannot run here, so
/// its messages are delivered as the default dispatcher would, logged.
pub(crate) async fn run(mut mb: Mailbox, subs: std::sync::Arc<Subscribers>, server: Atom) -> Term {
    let node = mb.node();
    let mut warned_dispatcher = false;
    while let Some(m) = mb.recv().await {
        match parse_forward(&m) {
            Ok((topic, message, dispatcher)) => {
                if dispatcher.as_str() != DEFAULT_DISPATCHER && !warned_dispatcher {
                    warned_dispatcher = true;
                    tracing::warn!(%server, %dispatcher, "pubsub: custom dispatcher cannot run on erlnode; delivering as Phoenix.PubSub's default (logged once)");
                }
                subs.dispatch(&node, topic, None, message);
            }
            Err(why) => tracing::debug!(%server, %why, msg = ?m, "pubsub: message to a worker dropped"),
        }
    }
    Term::atom("normal")
}
