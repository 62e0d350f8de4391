//! The client commands against a live cluster (a Rust node hosting a
//! counter, an Elixir node): `erlnode status` lists nodes, hosted
//! processes by type and global names; errors say what happened, in
//! words and Elixir syntax, with the documented exit codes; no colour
//! when the output is not a terminal.

use crate::support::{self, BeamNode, Epmd};
use erlnode::examples::counter::Counter;
use erlnode::prelude::*;
use std::time::Duration;

const T: Duration = Duration::from_secs(60);

fn run(args: &[&str]) -> support::Erlnode {
    support::Erlnode::spawn(args)
}

#[tokio::test(flavor = "multi_thread")]
async fn status_and_client_errors() {
    support::require_erlang();
    let epmd = Epmd::start().await;
    let cookie = support::unique("cli_client");
    let ex = BeamNode::builder().prefix("cli_ex").cookie(&cookie).epmd_port(epmd.port()).erlnode_ex(true).start().await;
    assert_eq!(ex.eval("element(1, application:ensure_all_started(erlnode_ex))").await, Term::atom("ok"));
    let node = Node::builder(format!("{}@127.0.0.1", support::unique("cli_rust"))).cookie(&cookie).epmd_port(epmd.port()).embedded_epmd(false).start().await.unwrap();
    let m = Migration::builder(&node).register::<Counter>().rebalance_on_join(false).start().unwrap();
    node.connect(ex.name()).await.unwrap();
    node.global().sync(T).await.unwrap();
    let name = support::unique("cli_counter");
    m.start_process::<Counter>(1, &name).await.unwrap();
    let (via, port) = (node.name().to_string(), epmd.port().to_string());
    let common = ["--cookie", cookie.as_str(), "--epmd-port", port.as_str()];

    let mut status = run(&[&["status", "--via", &via][..], &common[..]].concat());
    assert!(status.wait_exit(T).await.expect("status exits").success(), "{:?}", status.output());
    let out = status.output().join("\n");
    assert!(out.contains(&via) && out.contains(ex.name()), "both nodes listed: {out}");
    assert!(out.contains(&format!("counter (1): {name}")), "hosted by type: {out}");
    assert!(out.contains(&format!("{name} -> ")), "global names: {out}");
    assert!(out.contains("migrations in flight 0"), "{out}");
    assert!(!out.contains('\u{1b}'), "no colour when not a terminal: {out}");

    // No such name: exit 4, in words.
    let mut m1 = run(&[&["migrate", "no_such_counter", "--to", ex.name(), "--via", &via][..], &common[..]].concat());
    assert_eq!(m1.wait_exit(T).await.expect("exits").code(), Some(4), "{:?}", m1.output());
    let out = m1.output().join("\n");
    assert!(out.contains("no process is registered as no_such_counter"), "{out}");
    assert!(!out.contains("Tuple(") && !out.contains("Atom("), "no Rust Debug: {out}");

    // A node that does not exist: exit 3, not "went down during the call".
    let ghost = format!("{}@127.0.0.1", support::unique("ghost"));
    let mut m2 = run(&[&["migrate", name.as_str(), "--to", ex.name(), "--via", &ghost][..], &common[..]].concat());
    assert_eq!(m2.wait_exit(T).await.expect("exits").code(), Some(3), "{:?}", m2.output());
    assert!(m2.output().join("\n").contains(&format!("cannot reach node {ghost}")), "{:?}", m2.output());

    // A failure with a reason term: printed in Elixir syntax.
    let mut m3 = run(&[&["migrate", name.as_str(), "--to", &via, "--via", &via][..], &common[..]].concat());
    assert_eq!(m3.wait_exit(T).await.expect("exits").code(), Some(1), "{:?}", m3.output());
    assert!(m3.output().join("\n").contains("erlnode migrate: :same_node"), "{:?}", m3.output());
    node.shutdown().await;
}
