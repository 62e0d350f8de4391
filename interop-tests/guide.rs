//! docs/guide.md, followed as written: an Elixir cluster gains a Rust
//! node that hosts a new type (`examples::counter::Counter`, twin of
//! `Erlnode.Examples.Counter`), and a counter moves Rust -> Elixir -> Rust
//! with calls and casts from both sides, `:sys` working on the Rust pid.
//! The lines between `guide:begin` and `guide:end` are the guide's
//! code; `tests/guide_in_sync.rs` fails if the two differ.

use crate::support::{self, BeamNode, Epmd};
use erlnode::term::serde::to_term;
use std::time::Duration;

const T: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread")]
async fn guide_counter_moves_rust_elixir_rust_under_calls_from_both_sides() -> Result<(), Box<dyn std::error::Error>> {
    support::require_erlang();
    let epmd = Epmd::start().await;
    let cookie = support::unique("guide");
    let ex = BeamNode::builder().prefix("guide_ex").cookie(&cookie).epmd_port(epmd.port()).erlnode_ex(true).start().await;
    let started = ex.eval("application:ensure_all_started(erlnode_ex)").await;
    assert_eq!(started.as_tuple().map(|t| t[0].clone()), Some(Term::atom("ok")), "{started:?}");
    let rust_name = format!("{}@127.0.0.1", support::unique("guide_rust"));
    let (ex_name, name) = (ex.name().to_string(), support::unique("counter"));
    let (ex_name, name, rust_name, cookie, epmd_port) = (ex_name.as_str(), name.as_str(), rust_name.as_str(), cookie.as_str(), epmd.port());

    // guide:begin
    use erlnode::examples::counter::{Counter, Req};
    use erlnode::prelude::*;

    let node = Node::builder(rust_name).cookie(cookie).epmd_port(epmd_port).start().await?;
    node.connect(ex_name).await?;
    let migration = Migration::builder(&node)
        .register::<Counter>() // this node hosts "counter"
        .rebalance_on_join(false) // nothing moves here by itself
        .start()?;
    node.global().sync(Duration::from_secs(10)).await?;

    // A counter starting at 10, registered as {:global, name}.
    let counter: ServerRef<Counter> = migration.start_process::<Counter>(10, name).await?;
    counter.cast(&Req::Add(1))?;
    let n: i64 = counter.call(&Req::Get, Duration::from_secs(5)).await?;
    assert_eq!(n, 11);

    // Live to the Elixir node: same state, same name, same handle.
    let pid = counter.migrate(ex_name).await?;
    assert_eq!(pid.node.as_str(), ex_name);
    let n: i64 = counter.call(&Req::Add(1), Duration::from_secs(5)).await?;
    assert_eq!(n, 12, "answered by Erlnode.Examples.Counter");

    // And back (the Elixir side can do it too: Erlnode.Migration.migrate/2).
    let pid = counter.migrate(node.name().as_str()).await?;
    assert_eq!(&pid.node, node.name());
    // guide:end

    let back_pid = pid.clone();
    let g = format!("{{:global, :{name}}}");
    // Calls from Elixir while the counter is on Rust, then on Elixir, then on Rust.
    assert_eq!(ex.eval_elixir(&format!("GenServer.call({g}, {{:add, 1}})")).await, Term::Int(13));
    let moved = ex.eval_elixir(&format!("Erlnode.Migration.migrate(:{name}, :\"{ex_name}\")")).await;
    assert_eq!(moved.as_tuple().map(|t| t[0].clone()), Some(Term::atom("ok")), "Elixir moves it to itself: {moved:?}");
    assert_eq!(ex.eval_elixir(&format!("node(:global.whereis_name(:{name})) == node()")).await, Term::atom("true"));
    assert_eq!(ex.eval_elixir(&format!("GenServer.call({g}, {{:add, 1}})")).await, Term::Int(14));
    assert_eq!(counter.call::<i64>(&Req::Add(1), T).await.unwrap(), 15, "Rust calls the Elixir process by name");
    let moved = ex.eval_elixir(&format!("Erlnode.Migration.migrate(:{name}, :\"{rust_name}\")")).await;
    assert_eq!(moved.as_tuple().map(|t| t[0].clone()), Some(Term::atom("ok")), "Elixir moves it back to Rust: {moved:?}");
    let now = counter.whereis().expect("registered");
    assert_eq!(&now.node, node.name());
    assert_ne!(now, back_pid, "a new process after the round trip");

    // :sys on the Rust pid, from Elixir: the state is the map that travels.
    let state = ex.eval_elixir(&format!(":sys.get_state({g})")).await;
    assert_eq!(state, to_term(&Counter { count: 15 }).unwrap());
    let status = ex.eval_elixir(&format!("elem(:sys.get_status({g}), 0)")).await;
    assert_eq!(status, Term::atom("status"));
    let replaced = ex.eval_elixir(&format!(":sys.replace_state({g}, fn s -> %{{s | count: 100}} end)")).await;
    assert_eq!(replaced, to_term(&Counter { count: 100 }).unwrap());
    assert_eq!(counter.call::<i64>(&Req::Get, T).await.unwrap(), 100);
    assert_eq!(counter.sys_state::<Counter>(T).await.unwrap(), Counter { count: 100 });

    // Stop through the handle: Ok only once it exited with that reason.
    counter.stop(Term::atom("normal"), T).await.unwrap();
    assert!(!node.is_alive(&now));
    node.shutdown().await;
    Ok(())
}
