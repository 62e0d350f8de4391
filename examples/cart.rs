//! `cargo run --example cart`: a shopping cart, its own migratable type
//! written in this file, with an Elixir twin (erlang/examples/cart.ex).
//! The cart moves Rust -> Elixir -> Rust several times while an Elixir
//! process keeps adding apples by call and this program adds pears by
//! cast (by global name, so per-sender order holds across moves). At the
//! end every item must be in the cart exactly once. Prints a verdict.
//!
//! It also shows replies of different shapes: one enum, `CartReply`,
//! whose variants are Elixir's tagged tuples (`:ok`, `{:items, %{...}}`,
//! `{:total, n}`, `{:error, reason}`), decoded per call.

mod common;

use common::{expect, T};
use erlnode::prelude::*;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The state, `%{items: %{"apple" => 2}}` on the wire.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Cart {
    items: BTreeMap<String, i64>,
}

/// `{:add, item, qty}`, `{:remove, item}`, `:items`, `:total`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum CartReq {
    Add(String, i64),
    Remove(String),
    Items,
    Total,
}

/// One reply type, several shapes.
#[derive(Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum CartReply {
    Ok,
    Items(BTreeMap<String, i64>),
    Total(i64),
    Error(String),
}

impl GenServer for Cart {
    type Call = CartReq;
    type Cast = CartReq;
    type Reply = CartReply;

    async fn handle_call(&mut self, req: CartReq, _from: &Term, _ctx: &mut Ctx) -> Reply<CartReply> {
        Reply::Reply(self.apply(req))
    }

    async fn handle_cast(&mut self, req: CartReq, _ctx: &mut Ctx) -> Flow {
        self.apply(req);
        Flow::Continue
    }
}

impl Cart {
    fn apply(&mut self, req: CartReq) -> CartReply {
        match req {
            CartReq::Add(item, qty) => {
                *self.items.entry(item).or_default() += qty;
                CartReply::Ok
            }
            // A bad request is answered, and the cart lives on.
            CartReq::Remove(item) => match self.items.remove(&item) {
                Some(_) => CartReply::Ok,
                None => CartReply::Error(format!("no {item} in the cart")),
            },
            CartReq::Items => CartReply::Items(self.items.clone()),
            CartReq::Total => CartReply::Total(self.items.values().sum()),
        }
    }
}

impl Migratable for Cart {
    const TYPE: &'static str = "cart";
    type Args = ();
    fn init_state(_: ()) -> Result<Self, Term> {
        Ok(Cart::default())
    }
}

const HOPS: usize = 6;

#[tokio::main]
async fn main() {
    let (node, migration, mut driver, twin, ex) = common::start::<Cart>("rust_cart", "cart.exs").await;
    let cart = migration.start_process::<Cart>((), "example_cart").await.unwrap();
    node.send_to(("example_twin", ex.as_str()), Term::atom("go")); // apples, by call, from Elixir
    let mut pears = 0;
    for hop in 0..HOPS {
        for _ in 0..20 {
            cart.cast(&CartReq::Add("pear".into(), 1)).unwrap();
            pears += 1;
        }
        let to = if hop % 2 == 0 { ex.as_str() } else { node.name().as_str() };
        let pid = cart.migrate(to).await.unwrap();
        let total = match cart.call::<CartReply>(&CartReq::Total, T).await.unwrap() {
            CartReply::Total(n) => n,
            other => panic!("total: {other:?}"),
        };
        println!("hop {}: now on {} ({}), {total} items", hop + 1, pid.node, if pid.node == *node.name() { "Rust" } else { "Elixir" });
    }
    let apples = expect(&mut driver, "added").await.as_int().unwrap_or(-1);
    let mut failures = vec![];
    let bad = cart.call::<CartReply>(&CartReq::Remove("durian".into()), T).await.unwrap();
    if bad != CartReply::Error("no durian in the cart".into()) {
        failures.push(format!("a bad request: {bad:?}"));
    }
    match cart.call::<CartReply>(&CartReq::Items, T).await.unwrap() {
        CartReply::Items(items) => {
            println!("cart: {items:?} (Elixir added {apples} apples, Rust {pears} pears)");
            if items.get("apple") != Some(&apples) || items.get("pear") != Some(&pears) {
                failures.push(format!("items {items:?}: expected {apples} apples and {pears} pears"));
            }
        }
        other => failures.push(format!("items: {other:?}")),
    }
    common::finish(node, twin, failures).await
}
