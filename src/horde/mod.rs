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
//! No networking lives here: the processes that speak Horde's messages
//! build on these functions.

pub mod awlww;
pub mod libring;
pub mod merkle;
pub mod merkle_diff;
pub mod store;
pub mod term_key;
pub mod crdt;
pub mod messages;
