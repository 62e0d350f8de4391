//! erlnode: a Rust node for Erlang/Elixir clusters.
//!
//! It speaks the Erlang distribution protocol as a visible peer: BEAM
//! nodes see it in `Node.list()`, ping it, send to its processes and call
//! them as GenServers; names live in OTP `global`; and state machines
//! move, live, between Rust and Elixir nodes with their state, their name
//! and their queued messages.
//!
//! # From "start a node" to "move my own state machine"
//!
//! ## 1. Start a node
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use erlnode::prelude::*;
//!
//! let node = Node::builder("rust@127.0.0.1").cookie("secret").start().await?;
//! node.connect("ex@127.0.0.1").await?; // or let Elixir connect: Node.connect(:"rust@127.0.0.1")
//! # Ok(()) }
//! ```
//!
//! When no EPMD runs on the machine, the node serves it itself
//! ([`NodeBuilder::embedded_epmd`]).
//!
//! ## 2. Write a GenServer
//!
//! Requests, casts and replies are serde types: `Req::Add(5)` is what
//! Elixir sends as `{:add, 5}`, `Req::Get` is `:get`, a struct is a map
//! with atom keys ([`term::serde`]).
//!
//! ```
//! use erlnode::prelude::*;
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Debug, Default, Serialize, Deserialize)]
//! pub struct Counter { pub count: i64 }
//!
//! #[derive(Serialize, Deserialize)]
//! #[serde(rename_all = "snake_case")]
//! pub enum Req { Get, Add(i64) }
//!
//! impl GenServer for Counter {
//!     type Call = Req;
//!     type Cast = Req;
//!     type Reply = i64;
//!     async fn handle_call(&mut self, req: Req, _from: &Term, _ctx: &mut Ctx) -> Reply<i64> {
//!         if let Req::Add(n) = req { self.count += n }
//!         Reply::Reply(self.count)
//!     }
//!     async fn handle_cast(&mut self, req: Req, _ctx: &mut Ctx) -> Flow {
//!         if let Req::Add(n) = req { self.count += n }
//!         Flow::Continue
//!     }
//! }
//! ```
//!
//! Start it with [`gen_server::start`]; you get a typed
//! [`ServerRef`] (call, cast, send, stop):
//!
//! ```no_run
//! # use erlnode::prelude::*;
//! # #[derive(Debug, Default, serde::Serialize, serde::Deserialize)] struct Counter { count: i64 }
//! # #[derive(serde::Serialize, serde::Deserialize)] #[serde(rename_all = "snake_case")] enum Req { Get, Add(i64) }
//! # impl GenServer for Counter { type Call = Req; type Cast = Req; type Reply = i64;
//! #   async fn handle_call(&mut self, _r: Req, _f: &Term, _c: &mut Ctx) -> Reply<i64> { Reply::Reply(self.count) } }
//! # async fn demo(node: Node) -> Result<(), Box<dyn std::error::Error>> {
//! use std::time::Duration;
//! let counter: ServerRef<Counter> = gen_server::start(&node, Counter::default()).name("counter").spawn()?;
//! counter.cast(&Req::Add(2))?;
//! let n: i64 = counter.call(&Req::Add(3), Duration::from_secs(5)).await?; // 5
//! // Elixir: GenServer.call({:counter, :"rust@127.0.0.1"}, {:add, 1})  #=> 6
//! counter.stop(Term::atom("normal"), Duration::from_secs(5)).await?;
//! # Ok(()) }
//! ```
//!
//! ## 3. Make it migratable
//!
//! A [`Migratable`] is a GenServer whose type is its state: it gets a
//! type name (the same string the Elixir twin uses in `use
//! Erlnode.Migratable, type: "counter"`), start arguments, and
//! optionally the handover callbacks (ProcessHub's names).
//!
//! ```
//! # use erlnode::prelude::*;
//! # #[derive(Debug, Default, serde::Serialize, serde::Deserialize)] pub struct Counter { pub count: i64 }
//! # #[derive(serde::Serialize, serde::Deserialize)] #[serde(rename_all = "snake_case")] pub enum Req { Get, Add(i64) }
//! # impl GenServer for Counter { type Call = Req; type Cast = Req; type Reply = i64;
//! #   async fn handle_call(&mut self, _r: Req, _f: &Term, _c: &mut Ctx) -> Reply<i64> { Reply::Reply(self.count) } }
//! impl Migratable for Counter {
//!     const TYPE: &'static str = "counter";
//!     type Args = i64; // the initial count
//!     fn init_state(start: i64) -> Result<Self, Term> {
//!         Ok(Counter { count: start })
//!     }
//! }
//! ```
//!
//! ## 4. Host it and move it
//!
//! [`Node::migration`] starts the migration service with its defaults
//! (names in OTP `global`); [`Migration::builder`] chooses otherwise.
//! [`Migration::start_process`] starts a process and registers it
//! globally; the handle it returns addresses it by that name, so it keeps
//! working wherever the process moves.
//!
//! ```no_run
//! # use erlnode::prelude::*;
//! # #[derive(Debug, Default, serde::Serialize, serde::Deserialize)] pub struct Counter { pub count: i64 }
//! # #[derive(serde::Serialize, serde::Deserialize)] #[serde(rename_all = "snake_case")] pub enum Req { Get, Add(i64) }
//! # impl GenServer for Counter { type Call = Req; type Cast = Req; type Reply = i64;
//! #   async fn handle_call(&mut self, _r: Req, _f: &Term, _c: &mut Ctx) -> Reply<i64> { Reply::Reply(self.count) } }
//! # impl Migratable for Counter { const TYPE: &'static str = "counter"; type Args = i64;
//! #   fn init_state(start: i64) -> Result<Self, Term> { Ok(Counter { count: start }) } }
//! # async fn demo(node: Node) -> Result<(), Box<dyn std::error::Error>> {
//! use std::time::Duration;
//! let migration = node.migration()?;
//! migration.register_type::<Counter>(); // this node can host counters
//! let c = migration.start_process::<Counter>(10, "counter_1").await?;
//! // Elixir: GenServer.call({:global, :counter_1}, :get)  #=> 10
//! c.cast(&Req::Add(1))?;                // by global name: order kept across moves
//! c.migrate("ex@127.0.0.1").await?;     // now an Elixir process, same state, same name
//! let n: i64 = c.call(&Req::Get, Duration::from_secs(5)).await?; // 11, answered by Elixir
//! // Any destination: a pid, ("name", "node@host"), or a bare string = a global name.
//! gen_server::cast(&node, "counter_1", &Req::Add(1))?;
//! node.leave().await; // graceful: moves what this node hosts elsewhere, then stops
//! # Ok(()) }
//! ```
//!
//! Placement: with the defaults, a node that starts hosting a type takes
//! over the processes the placement ring gives it, as soon as it joins
//! (see [`HandoffConfig::rebalance_on_join`] and docs/handoff.md). The
//! protocol, its guarantees and its failure cases: docs/handoff.md.
//!
//! ## Replies of different shapes
//!
//! One `Reply` type per server; for requests that answer different
//! shapes, make it an enum (`{:total, 5}`, `{:items, [...]}`) and pick
//! the decoded type per call (`call::<Term>`, or the enum), or tie a
//! reply type to a request type with [`gen_server::Request`] and
//! [`ServerRef::request`]. The cart example (`examples/cart.rs`) does both.
//!
//! # Layers
//!
//! Bottom up (see docs/architecture.md):
//! - [`term`]: the External Term Format and the serde bridge;
//! - [`epmd`]: port mapper client and embedded server;
//! - [`handshake`]: distribution handshake version 6;
//! - [`connection`]: framing, atom cache, fragments, ticks, batching;
//! - [`control`]: control messages;
//! - [`process`]: pids, mailboxes, registered names, [`Dest`];
//! - [`node`]: the node handle tying it together; [`services`]: processes
//!   erlnode hosts;
//! - [`global`]: OTP `global` (cluster-wide names and locks);
//!   [`Global`](global::Global) is the
//!   [`NameRegistry`](migration::NameRegistry) migration uses by default;
//! - [`pg`]: OTP `pg` process groups; [`pubsub`]: Phoenix.PubSub membership;
//! - [`gen_server`]: the GenServer behaviour, [`ServerRef`]; [`sys`]:
//!   `:sys` system messages for Rust servers;
//! - [`supervisor`]: OTP restart strategies for Rust servers;
//! - [`migration`]: moving state machines between nodes; [`prelude`];
//! - [`processhub`]: the ProcessHub wire protocol (typed messages, per version).
//!
//! # Cargo features
//!
//! - `cli` (default): the `erlnode` command line (`src/cli`, clap and
//!   tracing-subscriber). Embedders: `default-features = false`.

#[cfg(feature = "cli")]
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
pub mod pg;
pub mod pubsub;
pub mod process;
pub mod processhub;
pub mod server_ref;
pub mod services;
pub mod supervisor;
pub mod sys;
pub mod term;
pub mod tls;

pub mod prelude;

pub use gen_server::{GenServer, ServerCallError, ServerRef};
pub use migration::{HandoffConfig, Migratable, Migration, MigrationError, Mode};
pub use node::{Node, NodeBuilder, NodeError, NodeEvent, SendError};
pub use process::{Dest, Mailbox};
pub use term::{Atom, Pid, Reference, Term};
