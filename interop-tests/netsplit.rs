//! Issue 13, item 6, on loopback: what a netsplit leaves behind. Lost
//! links to `--connect` peers are redialled (with backoff while the peer
//! is unreachable), so a healed partition rejoins by itself.

use crate::support::{self, BeamNode, Epmd, Erlnode};
use erlnode::Term;
use std::time::Duration;

const T: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread")]
async fn connect_peers_are_kept_connected() {
    support::require_erlang();
    let epmd = Epmd::start().await;
    let cookie = support::unique("cookie");
    let rust = format!("{}@127.0.0.1", support::unique("rust"));
    let beam_name = format!("{}@127.0.0.1", support::unique("later"));
    // The peer does not exist yet: the first attempts fail.
    let node = Erlnode::run(&rust, &cookie, epmd.port(), &["--no-embedded-epmd", "--connect", &beam_name]).await;
    node.wait_for_line("cannot connect; will keep trying", T).await.unwrap();

    let beam = BeamNode::builder().name(&beam_name).cookie(&cookie).epmd_port(epmd.port()).start().await;
    assert_eq!(beam.eval("net_kernel:monitor_nodes(true)").await, Term::atom("ok"));
    // Erlnode dials the peer once it is up, by itself.
    let up = beam
        .eval(&format!(
            "case lists:member('{rust}', nodes()) of
                 true -> true;
                 false -> receive {{nodeup, '{rust}'}} -> true after 30000 -> false end
             end"
        ))
        .await;
    assert_eq!(up, Term::atom("true"), "erlnode connected to the peer once it came up");

    // The peer drops the link (as a partition would): erlnode redials.
    for round in 0..2 {
        let again = beam
            .eval(&format!(
                "true = erlang:disconnect_node('{rust}'),
                 receive {{nodedown, '{rust}'}} -> ok after 30000 -> exit(no_nodedown) end,
                 receive {{nodeup, '{rust}'}} -> true after 30000 -> false end"
            ))
            .await;
        assert_eq!(again, Term::atom("true"), "erlnode reconnected by itself (round {round})");
    }
    assert_eq!(beam.eval(&format!("net_adm:ping('{rust}')")).await, Term::atom("pong"));
    let kept = node.output().iter().filter(|l| l.contains("connected (kept connected)")).count();
    assert!(kept >= 2, "{:?}", node.output());
}
