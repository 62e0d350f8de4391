//! What the member tells Rust code, at the points where ProcessHub runs
//! its hooks (`post_children_start`, `children_migrated`,
//! `post_cluster_join`, `post_cluster_leave`, `coordinator_shutdown`...):
//! a broadcast channel from [`super::Hub::subscribe`]. A slow subscriber
//! misses notices (it sees `Lagged`); the member never waits for one.

use crate::term::{Atom, Term};

/// One event of the member's life.
#[derive(Debug, Clone, PartialEq)]
pub enum HubNotice {
    /// A node's hub became a member (`post_cluster_join`).
    NodeJoined(Atom),
    /// A node left the hub, gracefully or not (`post_cluster_leave`).
    NodeLeft(Atom),
    /// Children started here, by request, migration or takeover
    /// (`post_children_start`).
    ChildrenStarted(Vec<Term>),
    /// Children that could not start here, with the reason reported.
    ChildrenFailed(Vec<(Term, Term)>),
    /// Children stopped here by request (`post_children_stop`).
    ChildrenStopped(Vec<Term>),
    /// Children handed to `target` with their state (`children_migrated`).
    ChildrenMigrated { target: Atom, children: Vec<Term> },
    /// Moves that failed: the children keep running here.
    MigrationFailed { target: Atom, children: Vec<(Term, Term)> },
    /// The member left the hub (`coordinator_shutdown`).
    Left(super::LeaveReport),
}
