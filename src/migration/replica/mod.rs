//! Replicated state for migratable processes: `replicas` other nodes
//! hosting the type keep the latest state of each process, so a node
//! killed without a graceful leave loses no acknowledged update (Sync
//! mode) and its processes start again on the next owner from that
//! state. Protocol, guarantees and what can be lost: docs/replicas.md.
//!
//! - [`config`]: `replicas: N`, `Sync` / `Async`;
//! - [`messages`]: the versioned wire protocol both languages speak;
//! - [`delta`]: sending what changed instead of the whole state;
//! - `placement`: which nodes hold a process's replicas (ring order);
//! - `owner`: the running process's side (send, await acks, hold replies);
//! - `store`: `erlnode_replica`, the per-node holder of replicas;
//! - `failover`: starting a process from its replica, exactly once;
//! - [`placed`]: replicas of processes Horde places (it restarts them;
//!   they fetch their state).

pub mod config;
pub mod delta;
mod failover;
pub mod messages;
pub(crate) mod owner;
pub(crate) mod merge;
pub mod placed;
pub(crate) mod placement;
pub(crate) mod store;

pub use config::{ReplicaConfig, ReplicaMode, ACK_TIMEOUT, ASYNC_MAX_LAG, UPKEEP_TICK};
pub use delta::{apply_map_delta, map_delta};

/// The store's registered name on every node (Rust and Elixir).
pub const STORE_NAME: &str = "erlnode_replica";

use crate::term::Term;

/// The request of an acknowledged cast: `GenServer.call(server,
/// acked_cast(msg))` is answered `ok` once `msg` has been handled as a
/// cast and (Sync mode) every replica holds a state that includes it.
pub fn acked_cast(msg: Term) -> Term {
    Term::tuple([Term::atom(messages::TAG), Term::Int(messages::VERSION), Term::atom("cast"), msg])
}

/// Parses a store's `list` answer.
pub(crate) fn parse_list(t: &Term) -> Vec<(crate::term::Atom, u64, crate::term::Pid, usize)> {
    let Term::List(items) = t else { return vec![] };
    items
        .iter()
        .filter_map(|i| match i.as_tuple()? {
            [Term::Atom(n), Term::Int(seq), Term::Pid(p), Term::Int(b)] => Some((n.clone(), *seq as u64, p.clone(), *b as usize)),
            _ => None,
        })
        .collect()
}
