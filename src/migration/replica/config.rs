//! How many copies of a process's state other nodes keep, and whether a
//! reply waits for them.

use std::time::Duration;

/// `Sync`: a reply (and the ack of an acknowledged cast) leaves only
/// once every replica holds a state that includes the update. `Async`:
/// updates are sent at once without waiting, but an owner never runs
/// more than [`ASYNC_MAX_LAG`] state versions (flushed batches) ahead of
/// its slowest replica.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ReplicaMode {
    #[default]
    Sync,
    Async,
}

/// The most state versions (one per flushed batch) an `Async` owner runs
/// ahead of a replica before it waits for acks: the bound on what a
/// crash can lose per process.
pub const ASYNC_MAX_LAG: u64 = 32;

/// How long an owner waits for a replica's ack before it counts that
/// replica as missing (it gets the whole state again at the next update
/// or upkeep tick).
pub const ACK_TIMEOUT: Duration = Duration::from_secs(5);

/// How often an idle owner checks that its replicas are where the ring
/// says they should be (joins, leaves, dead replica nodes).
pub const UPKEEP_TICK: Duration = Duration::from_millis(500);

impl ReplicaMode {
    pub fn name(self) -> &'static str {
        match self {
            ReplicaMode::Sync => "sync",
            ReplicaMode::Async => "async",
        }
    }
    pub fn from_name(s: &str) -> Option<ReplicaMode> {
        match s {
            "sync" => Some(ReplicaMode::Sync),
            "async" => Some(ReplicaMode::Async),
            _ => None,
        }
    }
    /// Updates an owner may run ahead of a replica.
    pub fn max_lag(self) -> u64 {
        match self {
            ReplicaMode::Sync => 0,
            ReplicaMode::Async => ASYNC_MAX_LAG,
        }
    }
}

impl std::str::FromStr for ReplicaMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        ReplicaMode::from_name(s).ok_or_else(|| format!("replica mode must be sync or async, got {s}"))
    }
}

/// Replicas of a migratable type or process: `replicas` other nodes
/// hosting the type (the next owners on the ring) keep its state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ReplicaConfig {
    pub replicas: usize,
    pub mode: ReplicaMode,
}

impl ReplicaConfig {
    pub fn sync(replicas: usize) -> ReplicaConfig {
        ReplicaConfig { replicas, mode: ReplicaMode::Sync }
    }
    pub fn async_(replicas: usize) -> ReplicaConfig {
        ReplicaConfig { replicas, mode: ReplicaMode::Async }
    }
    pub fn enabled(&self) -> bool {
        self.replicas > 0
    }
}
