//! Interop tests: a real Erlang/Elixir cluster against `erlnode`.
//!
//! Every test starts its own `epmd` (on a free port) and its own BEAM
//! nodes through `support`, so tests run in parallel and never touch a
//! system-wide epmd. Erlang/OTP must be installed (`make deps`); tests
//! panic, never skip, when it is missing.

mod support;

mod harness_selftest;
mod connect;
mod hostile;
mod backpressure;
mod limits;
mod epmd_daemon;
mod netsplit;
mod netsplit_ns;
mod processes;
mod global;
mod migration;
mod placement;
mod otp29;
mod pg;
mod pubsub;
mod processhub;
mod guide;
mod state_versions;
mod cli_client;
mod bench_cli;
mod phash2;
mod horde;
mod tls;
mod replicas;
mod merge;
