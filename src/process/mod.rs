//! Local processes: pids from the node's own pid space, FIFO mailboxes
//! and registered names.
//!
//! A process is whatever owns a [`Mailbox`]: a tokio task, a test, a
//! system service. The table maps pid ids to the mailbox's sender, so
//! delivering a message is one hash lookup and one channel push.

mod mailbox;
mod table;

pub use mailbox::{Mailbox, RecvError};
pub use table::{ProcessTable, RegisterError};

use crate::term::{Pid, Term};

/// What arrives in a mailbox.
#[derive(Debug, Clone, PartialEq)]
pub enum Signal {
    /// An ordinary message.
    Message(Term),
}

/// A local pid never used before in this node's lifetime (until the
/// 32-bit id space wraps, as on the BEAM).
pub(crate) fn is_local(pid: &Pid, node: &crate::term::Atom, creation: u32) -> bool {
    &pid.node == node && pid.creation == creation
}
