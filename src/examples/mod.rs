//! Worked examples that are also used by the demo and the tests.

pub mod account;
pub mod counter;
