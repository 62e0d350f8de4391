//! Processes erlnode runs for its peers and operators. The protocol-level
//! services every peer talks to (net_kernel, spawn refusals) are answered
//! inline in `node::dispatch`; the ones here are ordinary processes.

pub mod echo;
pub mod erpc;
mod rex;
