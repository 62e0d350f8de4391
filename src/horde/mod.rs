//! Horde's dialect: what a foreign node must compute exactly like the
//! Elixir libraries Horde (0.10), DeltaCrdt (0.6), MerkleMap (0.2) and
//! libring (1.7) do, to be a peer of a Horde cluster.
//!
//! Everything here is a pure function of terms, bit-exact with the BEAM
//! libraries (the notes in docs/horde.md say what was measured against
//! them), and built on [`crate::term::phash2`], which is ERTS's
//! `erlang:phash2/1,2`:
//!
//! - [`libring`]: libring's `HashRing` and Horde's `UniformDistribution`
//!   placement of DynamicSupervisor children;
//! - [`merkle`]: MerkleMap's tree, its shape and hashes, which DeltaCrdt's
//!   sync compares level by level;
//! - [`awlww`]: DeltaCrdt's `AWLWWMap` join and read, and its BEAM shape.
//!
//! On these, the DeltaCrdt peer and the registry:
//!
//! - [`merkle_diff`]: MerkleMap's partial diff, round by round;
//! - [`store`]: one replica's AWLWWMap and Merkle tree, indexed;
//! - [`messages`], [`crdt`]: DeltaCrdt's sync protocol as a pure state
//!   machine (what the recorded traces check), and `peer`, the process
//!   around it;
//! - [`tables`], `registry`: Horde's `RegistryImpl` and the process that
//!   runs it and the CRDT (`Reg`, `Reg.Crdt`);
//! - [`HordeRegistry`]: the Rust API;
//! - [`supervisor`]: a `Horde.DynamicSupervisor` member whose children
//!   are Rust state machines ([`HordeSupervisor`]).

pub mod awlww;
pub mod libring;
pub mod merkle;
pub mod merkle_diff;
pub mod store;
pub mod term_key;
pub mod crdt;
mod peer;
pub mod messages;
pub mod tables;
mod api;
mod registry;
pub mod supervisor;

pub use api::{elixir_name, HordeError, HordeRegistry, HordeRegistryBuilder};
pub use supervisor::{HordeSupervisor, HordeSupervisorBuilder, Redistribution};
