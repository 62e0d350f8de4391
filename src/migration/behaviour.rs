//! The migratable state machine: a GenServer whose state is a serde type,
//! so that it crosses to an Elixir node as a plain map.

use crate::gen_server::GenServer;
use crate::term::serde::{from_term, to_term};
use crate::term::Term;
use serde::de::DeserializeOwned;
use serde::Serialize;

/// A GenServer that can move between nodes. The implementing type is the
/// state; the callbacks are ProcessHub's, under the same names, so
/// handover code ports directly.
pub trait Migratable: GenServer + Serialize + DeserializeOwned {
    /// The type name every node registers for this state machine
    /// (`"account"`); an Elixir module with `use Erlnode.Migratable,
    /// type: "account"` is the same type on Elixir nodes.
    const TYPE: &'static str;
    /// Start arguments; they travel with a migration so the target can
    /// run `init_state` as a fresh process would.
    type Args: Serialize + DeserializeOwned + Send + Sync + Clone + 'static;

    fn init_state(args: Self::Args) -> Result<Self, Term>;

    /// The version of this type's state. Raise it when the state's shape
    /// changes, and teach [`Migratable::upgrade_state`] the old shapes:
    /// during a rolling deploy, old-version and new-version nodes then
    /// hand processes to each other. Version 1 travels as before
    /// (docs/handoff.md, "State versions and unknown fields"); an Elixir
    /// twin declares it with `use Erlnode.Migratable, version: 2`.
    const VERSION: u32 = 1;

    /// How many other nodes hosting the type keep a copy of each
    /// process's state (docs/replicas.md). 0 (the default): none; the
    /// state dies with its node. The Elixir twin says `use
    /// Erlnode.Migratable, replicas: N`. A node can override it per type
    /// ([`crate::migration::Migration::set_replicas`]) and per process
    /// ([`crate::migration::Migration::start_process_with`]).
    const REPLICAS: usize = 0;

    /// Whether a reply waits for the replicas (`Sync`, the default) or
    /// not (`Async`, bounded lag); Elixir: `replica_mode: :sync | :async`.
    const REPLICA_MODE: super::ReplicaMode = super::ReplicaMode::Sync;

    /// Whether this type merges when a healed partition finds its name
    /// registered on both sides (docs/replicas.md, "Netsplit merges").
    /// `false` (the default): OTP's rule, the registration on the node
    /// whose name sorts lower survives and the other process is killed.
    /// `true`: the same one survives, but first takes the other's state
    /// through [`Migratable::merge_conflict`]. An Elixir twin merges when
    /// it defines `merge_conflict/2`.
    const MERGES: bool = false;

    /// The surviving process's state (`self`, "mine") merged with the
    /// state of the process that held the same name on the other side
    /// (`theirs`). Same name and meaning as the Elixir callback
    /// `merge_conflict(mine, theirs)`. Used only when
    /// [`Migratable::MERGES`] is `true`; default: keep mine.
    fn merge_conflict(&mut self, _theirs: Self) {}

    /// What changed from `old` to `new`, the states as they travel to
    /// the replicas (what [`Migratable::prepare_handover_state`] makes,
    /// in its version wrapper), for replicas that hold `old`
    /// (docs/replicas.md, "Deltas"). `None` (the default): `new` goes
    /// whole. The replica nodes apply it with
    /// [`Migratable::apply_replica_delta`], or the Elixir twin's
    /// `apply_replica_delta/2`: both must read the same delta.
    /// [`crate::migration::replica::map_delta`] fits any map state.
    fn replica_delta(_old: &Term, _new: &Term) -> Option<Term> {
        None
    }

    /// Rebuilds the new state from the replica held (`held`) and a delta
    /// made by `replica_delta` on the owner's node, Rust or Elixir. Runs
    /// on replica nodes, which never run the process; same name and
    /// meaning as the Elixir callback. An error makes the replica ask the
    /// owner for the whole state. Pair of
    /// [`crate::migration::replica::map_delta`]:
    /// [`crate::migration::replica::apply_map_delta`].
    fn apply_replica_delta(_held: &Term, _delta: &Term) -> Result<Term, Term> {
        Err(Term::atom("no_replica_delta"))
    }

    /// Turns a handed-over state of another version (`from`, older or
    /// newer) into one this version decodes, before
    /// [`Migratable::alter_handover_state`]. Same name and meaning as the
    /// Elixir callback `upgrade_state/2`. It must keep fields already
    /// present: a state that went through an older node comes back with
    /// the newer fields carried, and that older node's version.
    /// Default: unchanged. An error rejects the handoff.
    fn upgrade_state(_from: u32, state: Term) -> Result<Term, Term> {
        Ok(state)
    }

    /// What the source hands over. Must not change the source: if the
    /// handoff fails, the source continues with its state.
    fn prepare_handover_state(&self) -> Result<Term, Term> {
        to_term(self).map_err(|e| Term::from(e.to_string().as_str()))
    }

    /// Builds the target's state from its freshly initialised state and
    /// the handed-over one. An error rejects the handoff (the source
    /// resumes).
    fn alter_handover_state(self, handover: Term) -> Result<Self, Term> {
        from_term(handover).map_err(|e| Term::from(e.to_string().as_str()))
    }
}
