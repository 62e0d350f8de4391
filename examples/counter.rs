//! `cargo run --example counter`: the guide's counter (docs/guide.md)
//! hosted on a Rust node, moved to an Elixir node and back, with calls
//! from both sides; the Elixir side is erlang/examples/counter.exs (its
//! twin module is `Erlnode.Examples.Counter`). Prints a verdict.

mod common;

use common::{expect, T};
use erlnode::examples::counter::{Counter, Req};
use erlnode::prelude::*;

#[tokio::main]
async fn main() {
    let (node, migration, mut driver, twin, ex) = common::start::<Counter>("rust_counter", "counter.exs").await;
    let mut failures = vec![];
    let counter = migration.start_process::<Counter>(0, "example_counter").await.unwrap();
    counter.cast(&Req::Add(1)).unwrap();
    println!("started on {} (Rust)", node.name());
    node.send_to(("example_twin", ex.as_str()), Term::atom("go")); // Elixir adds 10 by call
    let by_elixir = expect(&mut driver, "added").await;
    let pid = counter.migrate(ex.as_str()).await.unwrap();
    println!("moved to {} (Elixir): {pid}", pid.node);
    let n: i64 = counter.call(&Req::Add(100), T).await.unwrap();
    let pid = counter.migrate(node.name().as_str()).await.unwrap();
    println!("moved back to {} (Rust): {pid}", pid.node);
    let last: i64 = counter.call(&Req::Get, T).await.unwrap();
    println!("count {last} (Rust added 1 and 100, Elixir added {})", by_elixir.as_int().unwrap_or(-1));
    if n != 111 || last != 111 || by_elixir != Term::Int(10) {
        failures.push(format!("expected 111, got {n} then {last}"));
    }
    common::finish(node, twin, failures).await
}
