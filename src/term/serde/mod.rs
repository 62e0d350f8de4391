//! serde bridge between Rust types and Erlang terms. (stub: being written)
