//! Worked examples that are also used by the demo and the tests.

pub mod account;
pub mod bench;
pub mod counter;
