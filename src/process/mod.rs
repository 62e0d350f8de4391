//! Local processes: pids from the node's own pid space, FIFO mailboxes,
//! registered names, links, monitors and aliases.
//!
//! A process is whatever owns a [`Mailbox`]: a tokio task started with
//! `Node::spawn`, or any code holding one from `Node::spawn_mailbox`. The
//! table maps pid ids to the mailbox's sender, so delivering a message is
//! one hash lookup and one channel push.

mod chan;
mod mailbox;
pub(crate) mod signals;
mod spawn;
mod table;
mod yielder;

pub use mailbox::{Dest, Mailbox, RecvError, RequestId};
pub use table::{ProcessTable, RegisterError};
pub use yielder::{Yielder, HOLD_AT_MOST};

use crate::term::Term;

/// Why a call failed.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum CallError {
    #[error("call to {0} timed out")]
    Timeout(String),
    #[error("no process {0}")]
    NoProc(String),
    #[error("the node of {0} went down during the call")]
    NodeDown(String),
    #[error("{target} exited during the call: {reason:?}")]
    Exit { target: String, reason: Term },
    #[error("the calling process was killed: {0:?}")]
    Exited(Term),
}
