//! What both examples share: a Rust node serving EPMD on a free port, and
//! the Elixir twin script run as a child process on it (stopped by pid
//! when the example ends, also on failure). The script reports to the
//! registered process `example_driver` on the Rust node.

#![allow(dead_code)]

use erlnode::prelude::*;
use std::path::PathBuf;
use std::time::Duration;

pub const T: Duration = Duration::from_secs(30);

/// A Rust node on loopback that serves EPMD itself on a free port.
pub async fn rust_node(name: &str, cookie: &str) -> Node {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    Node::builder(format!("{name}_{}@127.0.0.1", std::process::id())).cookie(cookie).epmd_port(port).start().await.expect("the Rust node starts")
}

/// The Elixir node running `erlang/examples/<script>`; killed on drop.
pub struct ElixirTwin {
    child: tokio::process::Child,
    pub name: String,
}

impl ElixirTwin {
    pub fn start(node: &Node, cookie: &str, script: &str) -> ElixirTwin {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        let ebin = std::env::var("ERLNODE_EX_EBIN").map(PathBuf::from).unwrap_or_else(|_| root.join("erlang/_build/dev/lib/erlnode_ex/ebin"));
        assert!(ebin.join("erlnode_ex.app").exists(), "{} missing: run `make demo-lib`", ebin.display());
        let name = format!("ex_{}_{}@127.0.0.1", script.trim_end_matches(".exs"), std::process::id());
        let child = tokio::process::Command::new("elixir")
            .args(["--name", &name, "--cookie", cookie, "--erl", "-start_epmd false", "-pa"])
            .arg(&ebin)
            .arg(root.join("erlang/examples").join(script))
            .env("ERL_EPMD_PORT", node.epmd_port().to_string())
            .env("RUST_NODE", node.name().as_str())
            .kill_on_drop(true)
            .spawn()
            .expect("elixir runs");
        ElixirTwin { child, name }
    }

    /// Kills the script if it still runs (`verdict` exits the process
    /// without running destructors).
    pub fn stop(&mut self) {
        let _ = self.child.start_kill();
    }

    /// Waits for the script to exit and returns its status code.
    pub async fn wait(&mut self) -> Option<i32> {
        tokio::time::timeout(T, self.child.wait()).await.ok()?.ok()?.code()
    }
}

/// The driver's mailbox, registered so the script can report to it.
pub fn driver(node: &Node) -> Mailbox {
    let mb = node.spawn_mailbox();
    node.register("example_driver", mb.pid()).unwrap();
    mb
}

/// Waits for `{tag, value}` from the script.
pub async fn expect(mb: &mut Mailbox, tag: &str) -> Term {
    let tag2 = tag.to_string();
    mb.recv_match(T, move |m| match m.as_tuple() {
        Some([t, v]) if t.is_atom(&tag2) => Some(v.clone()),
        _ => None,
    })
    .await
    .unwrap_or_else(|e| panic!("no {tag} from the Elixir twin: {e}"))
}

/// Prints the verdict and exits with it.
pub fn verdict(failures: Vec<String>) -> ! {
    if failures.is_empty() {
        println!("VERDICT: OK");
        std::process::exit(0);
    }
    for f in &failures {
        println!("  {f}");
    }
    println!("VERDICT: FAIL - {} check(s) failed", failures.len());
    std::process::exit(1);
}

/// The start both examples share: the Rust node hosting `M` (nothing
/// moves by itself), the driver mailbox, and the Elixir twin, connected
/// and ready. Returns the twin's node name too.
pub async fn start<M: Migratable>(name: &str, script: &str) -> (Node, Migration, Mailbox, ElixirTwin, String) {
    let cookie = format!("{name}_{}", std::process::id());
    let node = rust_node(name, &cookie).await;
    let migration = Migration::builder(&node).register::<M>().rebalance_on_join(false).start().unwrap();
    let mut driver = driver(&node);
    let twin = ElixirTwin::start(&node, &cookie, script);
    let Term::Atom(ex) = expect(&mut driver, "ready").await else { panic!("ready without a node name") };
    node.global().sync(T).await.unwrap();
    (node, migration, driver, twin, ex.to_string())
}

/// Tells the twin to stop, checks it exits cleanly, stops everything and
/// exits with the verdict.
pub async fn finish(node: Node, mut twin: ElixirTwin, mut failures: Vec<String>) -> ! {
    node.send_to(("example_twin", twin.name.as_str()), Term::atom("stop"));
    if twin.wait().await != Some(0) {
        failures.push("the Elixir twin did not exit cleanly".into());
    }
    twin.stop();
    node.shutdown().await;
    verdict(failures)
}
