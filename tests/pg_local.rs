//! pg scopes on a single erlnode node (no BEAM needed): the API's
//! semantics as pg.erl defines them, and the scope's lifecycle.

use erlnode::pg::{PgAction, PgError};
use erlnode::{Node, Pid, Term};
use std::time::Duration;

const T: Duration = Duration::from_secs(10);

async fn node() -> Node {
    Node::builder(format!("pglocal{}@127.0.0.1", std::process::id())).cookie("c").publish(false).embedded_epmd(false).listen(([127, 0, 0, 1], 0).into()).start().await.unwrap()
}

fn idle(node: &Node) -> Pid {
    node.spawn(|mut mb| async move {
        while mb.recv().await.is_some() {}
        Term::atom("normal")
    })
}

#[tokio::test]
async fn joins_leaves_exits_and_subscriptions() {
    let node = node().await;
    let scope = node.pg_scope("local_scope").unwrap();
    assert_eq!(node.whereis("local_scope").as_ref(), Some(scope.pid()), "registered under its name");
    let (a, b) = (idle(&node), idle(&node));
    let g = Term::atom("g");
    let (_, mut sub) = scope.monitor_scope().await.unwrap();

    scope.join(g.clone(), &a).await.unwrap();
    scope.join_many(g.clone(), &[a.clone(), b.clone()]).await.unwrap();
    assert_eq!(scope.get_members(&g), vec![a.clone(), b.clone(), a.clone()], "newest first, a twice");
    assert_eq!(scope.get_local_members(&g).len(), 3);
    assert_eq!(scope.which_local_groups(), vec![g.clone()]);
    let c = tokio::time::timeout(T, sub.recv()).await.unwrap().unwrap();
    assert_eq!((c.action, c.pids), (PgAction::Join, vec![a.clone()]));
    let c = tokio::time::timeout(T, sub.recv()).await.unwrap().unwrap();
    assert_eq!((c.action, c.pids), (PgAction::Join, vec![a.clone(), b.clone()]));

    scope.leave(g.clone(), &a).await.unwrap();
    assert_eq!(scope.get_members(&g), vec![b.clone(), a.clone()], "one leave undoes one join");
    assert_eq!(scope.leave(Term::atom("other"), &a).await, Err(PgError::NotJoined));
    let remote = Pid { node: erlnode::Atom::new("elsewhere@host"), id: 1, serial: 0, creation: 1 };
    assert_eq!(scope.join(g.clone(), &remote).await, Err(PgError::NotLocal(remote.clone())));

    // A member that exits leaves every group it joined.
    node.exit(&a, Term::atom("kill"));
    let _ = tokio::time::timeout(T, sub.recv()).await.unwrap().unwrap(); // the leave above
    let c = tokio::time::timeout(T, sub.recv()).await.unwrap().unwrap();
    assert_eq!((c.action, c.pids), (PgAction::Leave, vec![a.clone()]));
    assert_eq!(scope.get_members(&g), vec![b.clone()]);
    // A process that is already dead leaves at once.
    scope.join(Term::atom("h"), &a).await.unwrap();
    let deadline = tokio::time::Instant::now() + T;
    while !scope.get_members(&Term::atom("h")).is_empty() {
        assert!(tokio::time::Instant::now() < deadline, "a dead joiner never left");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    node.shutdown().await;
}

#[tokio::test]
async fn a_killed_scope_takes_its_table_and_restarts_fresh() {
    let node = node().await;
    let scope = node.pg_scope("restartable").unwrap();
    assert_eq!(node.pg_scope("restartable").unwrap().pid(), scope.pid(), "one scope per name");
    let a = idle(&node);
    scope.join(Term::atom("g"), &a).await.unwrap();
    node.exit(scope.pid(), Term::atom("kill"));
    let deadline = tokio::time::Instant::now() + T;
    while !scope.which_groups().is_empty() {
        assert!(tokio::time::Instant::now() < deadline, "the dead scope's table stayed");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(scope.join(Term::atom("g"), &a).await, Err(PgError::NotRunning("restartable".into())));
    let again = node.pg_scope("restartable").unwrap();
    assert_ne!(again.pid(), scope.pid());
    assert!(again.which_groups().is_empty(), "membership is not kept across restarts, as in pg");
    again.join(Term::atom("g"), &a).await.unwrap();
    assert_eq!(again.get_members(&Term::atom("g")), vec![a]);
    // A name held by another process cannot become a scope.
    let squatter = idle(&node);
    node.register("taken", &squatter).unwrap();
    assert_eq!(node.pg_scope("taken").err(), Some(PgError::NameTaken("taken".into())));
    node.shutdown().await;
}
