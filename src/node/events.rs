//! Node-level events for subscribers (logging, the CLI, global, tests).

use crate::term::Atom;

#[derive(Debug, Clone, PartialEq)]
pub enum NodeEvent {
    /// A link to this node finished its handshake.
    Up(Atom),
    /// The link is gone; `reason` says why (closed by peer, tick
    /// timeout, malformed frame, ...).
    Down { node: Atom, reason: String },
}
