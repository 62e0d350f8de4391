//! Processes as tokio tasks. The task runs the user's future; an exit
//! signal that kills the process drops that future wherever it is
//! waiting, and a panic becomes the exit reason `{panic, Message}`, so
//! links and monitors always learn why a process ended.

use super::Mailbox;
use crate::node::NodeInner;
use crate::term::{Pid, Term};
use futures_util::FutureExt;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;

impl NodeInner {
    pub(crate) fn spawn_process<F, Fut>(self: &Arc<Self>, link_to: Option<&Pid>, f: F) -> Pid
    where
        F: FnOnce(Mailbox) -> Fut + Send + 'static,
        Fut: Future<Output = Term> + Send + 'static,
    {
        let (mb, kill) = Mailbox::new(self.clone(), true);
        let pid = mb.pid().clone();
        if let Some(parent) = link_to {
            self.link(parent, &pid);
        }
        let node = self.clone();
        let pid2 = pid.clone();
        tokio::spawn(async move {
            let body = AssertUnwindSafe(f(mb)).catch_unwind();
            let reason = tokio::select! {
                biased;
                r = kill => r.unwrap_or_else(|_| Term::atom("killed")),
                out = body => match out {
                    Ok(reason) => reason,
                    Err(panic) => {
                        let text = panic
                            .downcast_ref::<&str>()
                            .map(|s| s.to_string())
                            .or_else(|| panic.downcast_ref::<String>().cloned())
                            .unwrap_or_else(|| "panic".into());
                        tracing::error!(pid = %pid2, panic = %text, "process panicked");
                        Term::tuple([Term::atom("panic"), Term::from(text.as_str())])
                    }
                },
            };
            node.exit_process(&pid2, reason);
        });
        pid
    }
}
