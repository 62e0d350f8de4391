//! `use erlnode::prelude::*;` brings what a program hosting its own
//! state machines needs: the node, the GenServer behaviour and its
//! outcomes, typed handles, destinations and migration.

pub use crate::gen_server::{self, Ctx, Flow, GenServer, Reply, Request, ServerCallError, ServerRef};
pub use crate::migration::{HandoffConfig, Migratable, Migration, MigrationError, Mode};
pub use crate::process::{Dest, Mailbox};
pub use crate::term::{Atom, Pid, Term};
pub use crate::{Node, NodeError};
pub use crate::supervisor::{Restart, Strategy, Supervisor};
