//! Live migration of state machines between nodes, Rust and Elixir, with
//! their state, their name and their queued messages. The protocol and
//! its guarantees are in docs/handoff.md; `runtime` implements both ends.

mod behaviour;
mod hosted;
mod manager;
pub mod messages;
pub mod ring;
mod registry;
pub mod replica;
mod runtime;
mod start;
pub(crate) mod versioned;

pub use behaviour::Migratable;
#[cfg(feature = "cli")]
pub(crate) use manager::call_manager;
pub use manager::{Migration, MoveReport, MANAGER_NAME};
pub use messages::Mode;
pub use ring::RingEncoding;
pub use registry::NameRegistry;
pub use replica::{ReplicaConfig, ReplicaMode};
pub use start::MigrationBuilder;
pub use versioned::UnknownFields;

use crate::term::Term;
use std::time::Duration;

/// Points in a source's handoff where a test (or an operator tool) can
/// step in, e.g. to kill the target's node at that exact moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// The target runs (HotSwap) or the state is captured (ColdSwap).
    TargetStarted,
    /// State and queue are on their way to the target.
    HandoverSent,
    /// The target confirmed; the name has not moved yet.
    Accepted,
    /// The name points at the target; retention begins.
    Switched,
}

/// Called by the source at each [`Phase`]; the handoff continues when the
/// returned future completes.
#[derive(Clone)]
pub struct PhaseHook(pub std::sync::Arc<dyn Fn(Phase) -> futures_util::future::BoxFuture<'static, ()> + Send + Sync>);

impl std::fmt::Debug for PhaseHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PhaseHook")
    }
}

/// Timers of a handoff.
#[derive(Debug, Clone)]
pub struct HandoffConfig {
    /// How long the source waits for the target's node to start it.
    pub start_timeout: Duration,
    /// How long the source waits for `accepted` (and the target for the
    /// handover).
    pub accept_timeout: Duration,
    /// How long the target waits for `switched` before taking the name.
    pub switch_timeout: Duration,
    /// How long the old pid forwards late arrivals (extended in 50 ms steps,
    /// up to twice this, while forwards keep coming).
    pub retention: Duration,
    /// A pause before the final drain, taken only when traffic arrived
    /// during the handoff, for senders caught between name lookup and
    /// send (docs/handoff.md).
    pub settle: Duration,
    /// Move processes to a node that newly hosts their type when the ring
    /// makes it their owner (placement on join). **On by default**: a
    /// node that starts hosting a type, even a short-lived script, takes
    /// over its share of that type's processes as soon as it connects.
    /// Turn it off, or pin types and processes
    /// ([`Migration::pin`], [`Migration::pin_type`]), where that would
    /// surprise (docs/guide.md, "What moves on its own").
    pub rebalance_on_join: bool,
    /// The encoding placement rings hash with (`term_to_binary` changed
    /// its atoms in OTP 26). `None` (the default): follow the Elixir
    /// members, as each of them hashes with its own release's default;
    /// set it on every node of a cluster that mixes releases
    /// (docs/otp-releases.md).
    pub ring_encoding: Option<ring::RingEncoding>,
    /// What a Rust target does with fields of a handed-over state its
    /// type does not know: carry them on (default) or reject the handoff.
    pub unknown_fields: UnknownFields,
    /// Test hook, see [`Phase`].
    pub hook: Option<PhaseHook>,
}

impl Default for HandoffConfig {
    fn default() -> Self {
        HandoffConfig {
            start_timeout: Duration::from_secs(10),
            accept_timeout: Duration::from_secs(10),
            switch_timeout: Duration::from_secs(30),
            retention: Duration::from_secs(5),
            settle: Duration::from_millis(5),
            rebalance_on_join: true,
            ring_encoding: None,
            unknown_fields: UnknownFields::Carry,
            hook: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum MigrationError {
    #[error("no process is registered as {0}")]
    NoSuchName(String),
    #[error("name registry: {0}")]
    Name(String),
    #[error("migration failed: {0:?}")]
    Failed(Term),
    #[error(transparent)]
    Call(#[from] crate::process::CallError),
    /// The call to the host failed (timeout, nodedown) and the process did
    /// not turn up on the target: where the name points now.
    #[error("no reply from {name}'s host ({reason}); {name} is now {}", match now_at { Some(p) => format!("at {p} on {}", p.node), None => "not registered".to_string() })]
    ReplyLost { name: String, reason: crate::process::CallError, now_at: Option<crate::term::Pid> },
}
