//! Sending to any destination from the node itself, so that code outside
//! a process (a web handler, a test, `main`) can reach a pid, a local
//! name or a global name with one call and the same ordering guarantees
//! a process gets.

use super::Node;
use crate::process::Dest;
use crate::term::Term;

impl Node {
    /// Sends `msg` to `to`: a pid, `("name", "node@host")`, or a global
    /// name (`"cart_1"` or [`Dest::global`]).
    ///
    /// A global name is looked up and the message enqueued under the name
    /// table's lock, which a migration's name switch also takes: messages
    /// one sender sends by global name arrive in order across a migration
    /// (docs/handoff.md, "Messages sent to `{:global, name}`"). Returns
    /// `false` when a global name is not registered (the message is
    /// dropped, as `global:send/2` would raise); sends to pids and local
    /// names never fail, like Erlang's `!`.
    pub fn send_to(&self, to: impl Into<Dest>, msg: Term) -> bool {
        match to.into() {
            Dest::Pid(p) => {
                self.inner.send(None, &p, msg);
                true
            }
            Dest::Name { name, node } => {
                self.inner.send_named(&self.inner.system_pid(), &name, &node, msg);
                true
            }
            Dest::Global(name) => crate::global::with_resolved(self, &name, |pid| match pid {
                Some(p) => {
                    self.inner.send(None, &p, msg);
                    true
                }
                None => {
                    tracing::debug!(?name, "message to an unregistered global name dropped");
                    false
                }
            }),
        }
    }
}
