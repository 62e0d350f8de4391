//! The ProcessHub wire protocol ("dialect"), as typed messages.
//!
//! [ProcessHub](https://github.com/alfetahe/process-hub) (Elixir, GPL-3.0)
//! distributes processes over a cluster and migrates them, with an
//! optional state handover, when nodes join or leave. Hub members talk
//! through plain Erlang messages: pg traffic between the hub's scope
//! processes (`:"hub.<id>.event_queue_pg"`), events sent to the
//! coordinators that joined the hub's pg groups (`{event, payload}`),
//! `GenServer.cast`s to `{hub_id, node}`, results sent back to `reply_to`
//! pids and `{:process_hub, ...}` handover messages between the old and
//! the new process of a migrating child.
//!
//! Membership: [`crate::Node::processhub`] makes this node a hub member
//! ([`HubBuilder`], [`Hub`]) whose children are Rust state machines
//! (docs/processhub.md). Layout: `member` (the coordinator process),
//! `requests` (start/stop), `outgoing` (moves away on join), `leave`
//! (graceful leave), `child` (a Rust child's runtime and handover),
//! `types` (module -> Rust type), `registry` (the hub's registry),
//! `release` (a peer's OTP release, for the ring), `hub` (the API).
//!
//! This module holds those messages as Rust values ([`HubMessage`]) and
//! converts them from and to [`Term`]s. The shapes are the ones recorded
//! from real ProcessHub nodes (tests/traces/processhub-0.4.1/, described
//! in docs/processhub-protocol.md); nothing here is derived from
//! ProcessHub's source.
//!
//! The protocol changes between ProcessHub releases (0.5 replaces most
//! events with request structs), so every conversion takes a [`Dialect`].
//! Only [`Dialect::V0_4_1`] exists today; a second dialect adds a variant
//! and its own parse/build module, and may add message variants.
//!
//! ```
//! use erlnode::processhub::{Dialect, HubMessage};
//! use erlnode::Term;
//!
//! let t = Term::tuple([Term::atom("cluster_join_event"), Term::atom("a@127.0.0.1")]);
//! let msg = Dialect::V0_4_1.parse(&t).unwrap();
//! assert!(matches!(&msg, HubMessage::ClusterJoin { node } if node.as_str() == "a@127.0.0.1"));
//! assert_eq!(Dialect::V0_4_1.build(&msg).unwrap(), t);
//! // Anything else is an error, never a panic.
//! assert!(Dialect::V0_4_1.parse(&Term::atom("hello")).is_err());
//! ```

pub(crate) mod child;
mod hub;
mod leave;
mod member;
mod messages;
mod notices;
mod outgoing;
mod registry;
mod release;
mod requests;
pub(crate) mod types;
mod v0_4_1;

pub use hub::{Hub, HubBuilder, HubConfig, HubError, LeaveReport};
pub use messages::*;
pub use notices::HubNotice;
pub use registry::HubChild;
pub use types::module_atom;
pub use v0_4_1::{HOT_SWAP, POST_START_DATA};

use crate::term::Term;
use std::fmt;

/// A ProcessHub protocol version.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Dialect {
    /// ProcessHub 0.4.1-beta (blockade 0.2.2 event queue over OTP `pg`).
    V0_4_1,
}

impl Dialect {
    /// The ProcessHub release this dialect was recorded from.
    pub fn version(self) -> &'static str {
        match self {
            Dialect::V0_4_1 => "0.4.1-beta",
        }
    }

    /// The pg groups a coordinator joins in the hub's scope.
    pub fn groups(self) -> &'static [HubEvent] {
        match self {
            Dialect::V0_4_1 => &HubEvent::ALL,
        }
    }

    /// The registered name of the hub's pg scope process.
    pub fn pg_scope_name(self, hub_id: &str) -> String {
        match self {
            Dialect::V0_4_1 => format!("hub.{hub_id}.event_queue_pg"),
        }
    }

    /// The registered name of the hub's (local) event queue process.
    pub fn event_queue_name(self, hub_id: &str) -> String {
        match self {
            Dialect::V0_4_1 => format!("hub.{hub_id}.event_queue"),
        }
    }

    /// Reads a message a hub member received (or sent). Terms of another
    /// protocol give [`ParseError::Unknown`]; a known tag with a wrong
    /// shape gives [`ParseError::Malformed`].
    pub fn parse(self, term: &Term) -> Result<HubMessage, ParseError> {
        match self {
            Dialect::V0_4_1 => v0_4_1::parse(term),
        }
    }

    /// The term for a message, as this dialect's nodes send it.
    /// `parse` then `build` gives back the term parsed: `==` for terms
    /// from OTP 25 nodes, equal up to map key order for OTP 26 and later
    /// (which keep small-map atom keys in atom-table order).
    pub fn build(self, msg: &HubMessage) -> Result<Term, BuildError> {
        match self {
            Dialect::V0_4_1 => Ok(v0_4_1::build(msg)),
        }
    }
}

impl fmt::Display for Dialect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ProcessHub {}", self.version())
    }
}

/// Why a term is not a message of a dialect.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum ParseError {
    /// Not a message of this dialect at all (another protocol's traffic).
    #[error("not a {dialect} message: {shape}")]
    Unknown { dialect: Dialect, shape: String },
    /// A known message whose payload does not have the expected shape.
    #[error("malformed {message} ({dialect}): {reason}")]
    Malformed {
        dialect: Dialect,
        message: &'static str,
        reason: String,
    },
}

/// A message that a dialect cannot express.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum BuildError {
    #[error("{message} does not exist in {dialect}")]
    NotInDialect {
        dialect: Dialect,
        message: &'static str,
    },
}

/// A short description of a term's outer shape, for error messages (never
/// the whole term: payloads can be large).
pub(crate) fn shape(t: &Term) -> String {
    fn head(t: &Term) -> String {
        match t {
            Term::Atom(a) => format!(":{}", a.as_str()),
            Term::Int(i) => i.to_string(),
            Term::Tuple(items) => format!("{{{}-tuple}}", items.len()),
            Term::List(items) => format!("[{}-list]", items.len()),
            Term::Map(e) => format!("%{{{} keys}}", e.len()),
            Term::Binary(b) => format!("<<{} bytes>>", b.len()),
            Term::Pid(_) => "pid".into(),
            Term::Ref(_) => "reference".into(),
            other => format!("{:?}", std::mem::discriminant(other)),
        }
    }
    match t {
        Term::Tuple(items) if !items.is_empty() => {
            let inner: Vec<String> = items.iter().take(3).map(head).collect();
            let more = if items.len() > 3 { ", ..." } else { "" };
            format!("{{{}{more}}} ({}-tuple)", inner.join(", "), items.len())
        }
        other => head(other),
    }
}

#[cfg(test)]
mod tests;
