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
                "case erlang:disconnect_node('{rust}') of
                     true ->
                         %% A nodeup still queued from before (the first
                         %% connection can come between monitor_nodes and
                         %% the nodes() check) precedes this nodedown:
                         %% net_kernel sends both, in order. Take it on the
                         %% way, or it would pass for the redial's nodeup.
                         Down = fun Skip() ->
                                    receive {{nodeup, '{rust}'}} -> Skip();
                                            {{nodedown, '{rust}'}} -> ok
                                    after 30000 -> no_nodedown
                                    end
                                end,
                         case Down() of
                             ok -> receive {{nodeup, '{rust}'}} -> true after 30000 -> no_nodeup end;
                             NoDown -> NoDown
                         end;
                     Other -> {{disconnect_node, Other}}
                 end"
            ))
            .await;
        // On failure, what erlnode logged says why it did not redial.
        assert_eq!(again, Term::atom("true"), "erlnode reconnected by itself (round {round}); its output: {:#?}", node.output());
    }
    assert_eq!(beam.eval(&format!("net_adm:ping('{rust}')")).await, Term::atom("pong"));
    let kept = node.output().iter().filter(|l| l.contains("connected (kept connected)")).count();
    assert!(kept >= 2, "{:?}", node.output());
}

/// A node with the migration manager hosting the example `Account`.
async fn rust_with_migration(cookie: &str, epmd: u16) -> (erlnode::Node, erlnode::migration::Migration) {
    let node = support::rust_node("rust", cookie, epmd).await;
    let cfg = erlnode::migration::HandoffConfig { rebalance_on_join: false, ..Default::default() };
    let m = erlnode::migration::Migration::start(&node, std::sync::Arc::new(node.global()), cfg).unwrap();
    m.register_type::<erlnode::examples::account::Account>();
    (node, m)
}

/// Two nodes that each registered `dup` while apart meet: `global` keeps
/// one and kills the other, which must leave its node's hosted list (the
/// next drain would otherwise try to move a dead process).
#[tokio::test(flavor = "multi_thread")]
async fn a_process_killed_by_a_name_conflict_leaves_the_hosted_list() {
    use erlnode::examples::account::Account;
    support::require_erlang();
    let epmd = Epmd::start().await;
    let cookie = support::unique("cookie");
    let (a, ma) = rust_with_migration(&cookie, epmd.port()).await;
    let (b, mb) = rust_with_migration(&cookie, epmd.port()).await;
    let pa = ma.start_process::<Account>(Term::nil(), "dup").await.expect("registered on a, alone").pid().clone();
    let pb = mb.start_process::<Account>(Term::nil(), "dup").await.expect("registered on b, alone").pid().clone();
    let hosts_dup = |m: &erlnode::migration::Migration| m.hosted().iter().any(|(n, _, _)| n.as_str() == "dup");
    assert!(hosts_dup(&ma) && hosts_dup(&mb));
    // Watch both: the loser's DOWN comes after its future (and guard) is gone.
    let mut wa = a.spawn_mailbox();
    let ra = wa.monitor(&pa);
    let mut wb = b.spawn_mailbox();
    let rb = wb.monitor(&pb);

    a.connect(b.name().as_str()).await.expect("a and b meet");
    a.global().sync(T).await.expect("global sync on a");
    b.global().sync(T).await.expect("global sync on b");
    let name = Term::atom("dup");
    let winner = a.global().whereis_name(&name).expect("one owner");
    assert_eq!(b.global().whereis_name(&name), Some(winner.clone()), "both agree on the owner");
    let (loser_mb, loser_ref, loser_m, winner_m) =
        if winner == pa { (&mut wb, rb, &mb, &ma) } else { (&mut wa, ra, &ma, &mb) };
    assert!(winner == pa || winner == pb);
    let (_, down) = support::down(loser_mb, &loser_ref, T).await; // the loser is killed
    eprintln!("conflict over dup: winner {winner}, loser died with {down:?}");
    assert!(!hosts_dup(loser_m), "the killed loser left its node's hosted list: {:?}", loser_m.hosted());
    assert!(hosts_dup(winner_m), "the winner is still hosted");
    a.shutdown().await;
    b.shutdown().await;
}

/// The requester's call to the host fails (here: a 1 ms timeout; in a
/// partition: nodedown) while the host moves the process anyway. The
/// requester answers with where the process is, not with the lost reply.
#[tokio::test(flavor = "multi_thread")]
async fn a_migration_whose_reply_is_lost_reports_where_the_process_went() {
    use erlnode::examples::account::Account;
    use erlnode::migration::{MigrationError, Mode};
    support::require_erlang();
    let epmd = Epmd::start().await;
    let cookie = support::unique("cookie");
    let (r, mr) = rust_with_migration(&cookie, epmd.port()).await;
    let (a, ma) = rust_with_migration(&cookie, epmd.port()).await;
    let (b, mb) = rust_with_migration(&cookie, epmd.port()).await;
    for n in [&a, &b] {
        r.connect(n.name().as_str()).await.unwrap();
    }
    a.connect(b.name().as_str()).await.unwrap();
    for n in [&r, &a, &b] {
        n.global().sync(T).await.unwrap();
    }
    let source = ma.start_process::<Account>(Term::nil(), "lost_reply").await.unwrap().pid().clone();
    for n in [&r, &a, &b] {
        n.global().sync(T).await.unwrap();
    }
    assert_eq!(r.global().whereis_name(&Term::atom("lost_reply")), Some(source.clone()));

    let moved = mr.migrate("lost_reply", b.name().as_str(), Mode::Hot, Duration::from_millis(1)).await;
    let pid = match moved {
        Ok(pid) => pid,
        Err(MigrationError::ReplyLost { now_at, reason, .. }) => panic!("the process went to {now_at:?} ({reason})"),
        Err(e) => panic!("{e}"),
    };
    assert_eq!(pid.node, *b.name(), "the answer names the process on the target");
    assert!(b.is_alive(&pid));
    // The requester saw the name leave the source; b's hosted table and
    // the other nodes' global tables follow on their own schedule.
    let deadline = tokio::time::Instant::now() + T;
    loop {
        let hosted = mb.hosted().iter().any(|(n, _, p)| n.as_str() == "lost_reply" && *p == pid);
        let agreed = [&r, &a, &b].iter().all(|n| n.global().whereis_name(&Term::atom("lost_reply")) == Some(pid.clone()));
        if hosted && agreed {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "hosted on b: {hosted}, every node names the new pid: {agreed}");
        tokio::time::sleep(Duration::from_millis(20)).await; // bounded poll: tables, no event to await
    }
    for n in [r, a, b] {
        n.shutdown().await;
    }
}
