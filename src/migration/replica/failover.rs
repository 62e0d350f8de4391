//! Failover: the owner's node went down without a graceful leave. Each
//! node holding a replica ranks itself on the ring of the type's
//! remaining nodes (the dead one left out); the best-ranked holder
//! starts the process from its latest state and takes the global name.
//! Lower-ranked holders wait a little per rank and only step in when the
//! name is still free, so normally one node tries; when several do at
//! once (different membership views, a rank-0 node without the replica)
//! `global`'s registration, serialised cluster-wide by its lock, lets
//! exactly one win: the others stop their unregistered copy before it
//! has served a single message (it waits for [`Msg::Go`] first).
//!
//! The holder that steps in restores the newest replica any store holds
//! for the dead owner, not necessarily its own: an owner that moved its
//! replica to another node (a join changed the ring) and died before the
//! old holder processed its `drop` leaves two entries, and the old,
//! older one may rank first.

use super::messages::Msg;
use super::store::Entry;
use super::STORE_NAME;
use crate::migration::manager::Shared;
use crate::term::{Atom, Pid, Term};
use crate::Node;
use std::sync::Arc;
use std::time::Duration;

/// How long a holder waits per rank before it steps in.
const RANK_DELAY: Duration = Duration::from_millis(300);
/// How long a holder keeps trying (the dead node's name may linger in
/// some `global` tables for a moment after nodedown).
const TRY_FOR: Duration = Duration::from_secs(10);
/// How long the owner's node gets to answer before it counts as dead.
const ALIVE_CHECK: Duration = Duration::from_secs(2);
/// Failovers run at once on one node.
const CONCURRENCY: usize = 16;
/// How long the other stores get to say what they hold.
const COMPARE_FOR: Duration = Duration::from_millis(500);

#[derive(Debug)]
enum Outcome {
    Restored,
    TakenElsewhere,
    NotACandidate,
    Failed(String),
}

/// Fails over `orphans` (entries whose owner lived on `dead`), in the
/// background, unless `dead` still answers: a lost connection is not a
/// crash (OTP's `prevent_overlapping_partitions` drops live links when
/// another node dies), and restarting processes that still run would
/// make a second copy that `global` later resolves by killing one.
pub(crate) fn run(node: Node, shared: Arc<Shared>, dead: Atom, orphans: Vec<(Atom, Entry)>) {
    tokio::spawn(async move {
        if node.try_ping(dead.as_str(), ALIVE_CHECK).await.is_ok() {
            tracing::warn!(%dead, count = orphans.len(), "owner node lost its connection but answers: no failover");
            return;
        }
        let started = std::time::Instant::now();
        let sem = Arc::new(tokio::sync::Semaphore::new(CONCURRENCY));
        let mut tasks = tokio::task::JoinSet::new();
        for (name, e) in orphans {
            let permit = sem.clone().acquire_owned().await.expect("semaphore open");
            let (node, shared, dead) = (node.clone(), shared.clone(), dead.clone());
            tasks.spawn(async move {
                let r = take_over(&node, &shared, &dead, &name, e).await;
                drop(permit);
                (name, r)
            });
        }
        let (mut restored, mut elsewhere, mut failed) = (0, 0, 0);
        while let Some(done) = tasks.join_next().await {
            match done {
                Ok((_, Outcome::Restored)) => restored += 1,
                Ok((_, Outcome::TakenElsewhere | Outcome::NotACandidate)) => elsewhere += 1,
                Ok((name, Outcome::Failed(why))) => {
                    failed += 1;
                    tracing::error!(%name, %why, "failover failed");
                }
                Err(e) => {
                    failed += 1;
                    tracing::error!(error = %e, "failover task died");
                }
            }
        }
        tracing::info!(%dead, restored, elsewhere, failed, elapsed_ms = started.elapsed().as_millis() as u64, "failover done");
    });
}

async fn take_over(node: &Node, shared: &Arc<Shared>, dead: &Atom, name: &Atom, e: Entry) -> Outcome {
    let ring = shared.replica.ring(&e.type_name, Some(dead));
    let owners = ring.owners(&Term::Atom(name.clone()), ring.nodes().len());
    let Some(rank) = owners.iter().position(|n| n == node.name()) else { return Outcome::NotACandidate };
    tokio::time::sleep(RANK_DELAY * rank as u32).await;
    let deadline = tokio::time::Instant::now() + TRY_FOR;
    loop {
        match shared.registry.whereis(name.as_str()) {
            Some(p) if &p.node != dead => return Outcome::TakenElsewhere,
            Some(_) => {} // the dead owner's name has not left global yet
            None => match shared.restore(node, name, &newest(node, dead, name, &e).await) {
                Ok(pid) => match shared.register_name(&e.type_name, name.as_str(), &pid).await {
                    Ok(()) => {
                        go(node, &pid, name, &e.owner);
                        tracing::info!(%name, %pid, seq = e.seq, rank, "took over from the replica");
                        return Outcome::Restored;
                    }
                    Err(why) => {
                        tracing::info!(%name, %why, "another node took over first");
                        node.exit(&pid, Term::atom("kill"));
                    }
                },
                Err(reason) => return Outcome::Failed(format!("{reason:?}")),
            },
        }
        if tokio::time::Instant::now() >= deadline {
            return Outcome::Failed("the name stayed taken by the dead node".into());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `e`, or a newer entry of the same dead owner another store holds.
async fn newest(node: &Node, dead: &Atom, name: &Atom, e: &Entry) -> Entry {
    let others = node.connected_nodes();
    match super::placed::newest_of_dead_owner(node, &others, name, dead, COMPARE_FOR).await {
        Some(f) if f.seq > e.seq => {
            tracing::info!(%name, own = e.seq, newer = f.seq, "a newer replica is held elsewhere: restoring that one");
            Entry { seq: f.seq, state: f.state, owner: f.owner, ..e.clone() }
        }
        _ => e.clone(),
    }
}

/// The restored process may serve; this store forgets the entry (the
/// new owner replicates to its own replica nodes).
fn go(node: &Node, pid: &Pid, name: &Atom, old_owner: &Pid) {
    let mb = node.spawn_mailbox();
    mb.send(pid, Msg::Go.to_term());
    let drop = Msg::Drop { name: name.clone(), owner: old_owner.clone() };
    mb.send_to(&crate::process::Dest::local(STORE_NAME, node.name().as_str()), drop.to_term());
}
