//! erlnode: a Rust node for Erlang/Elixir clusters.
//!
//! It speaks the Erlang distribution protocol as a visible peer: BEAM
//! nodes see it in `Node.list()`, ping it, send to its processes and call
//! them as GenServers.
//!
//! Layers, bottom up (see docs/architecture.md):
//! - [`term`]: the External Term Format and the serde bridge;
//! - [`epmd`]: port mapper client and embedded server;
//! - [`handshake`]: distribution handshake version 6;
//! - [`connection`]: framing, atom cache, fragments, ticks, batching;
//! - [`control`]: control messages;
//! - [`process`]: pids, mailboxes, registered names;
//! - [`node`]: the node handle tying it together; [`services`]: processes
//!   erlnode hosts.

pub mod cli;
pub mod connection;
pub mod control;
pub mod epmd;
pub mod examples;
pub mod gen_server;
pub mod global;
pub mod handshake;
pub mod horde;
pub mod migration;
pub mod node;
pub mod process;
pub mod services;
pub mod term;

pub use node::{Node, NodeBuilder, NodeError, NodeEvent};
pub use process::Mailbox;
pub use term::{Atom, Pid, Reference, Term};
