use super::{ProcessTable, Signal};
use crate::term::{Pid, Term};
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc::UnboundedReceiver;

/// The receiving end of a local process. Dropping it ends the process:
/// its pid and name are released.
pub struct Mailbox {
    pid: Pid,
    rx: UnboundedReceiver<Signal>,
    /// Messages skipped by a selective receive, kept in arrival order.
    saved: VecDeque<Term>,
    table: Arc<ProcessTable>,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum RecvError {
    #[error("receive timed out")]
    Timeout,
    #[error("mailbox closed")]
    Closed,
}

impl Mailbox {
    pub(crate) fn new(table: Arc<ProcessTable>) -> Mailbox {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let pid = table.insert(tx);
        Mailbox { pid, rx, saved: VecDeque::new(), table }
    }

    pub fn pid(&self) -> &Pid {
        &self.pid
    }

    /// The next message in arrival order.
    pub async fn recv(&mut self) -> Option<Term> {
        if let Some(m) = self.saved.pop_front() {
            return Some(m);
        }
        match self.rx.recv().await? {
            Signal::Message(m) => Some(m),
        }
    }

    pub async fn recv_timeout(&mut self, t: Duration) -> Result<Term, RecvError> {
        match tokio::time::timeout(t, self.recv()).await {
            Ok(Some(m)) => Ok(m),
            Ok(None) => Err(RecvError::Closed),
            Err(_) => Err(RecvError::Timeout),
        }
    }

    /// Selective receive: the first message for which `f` returns
    /// `Some`, leaving the others queued in order (Erlang's `receive`).
    pub async fn recv_match<T>(&mut self, t: Duration, mut f: impl FnMut(&Term) -> Option<T>) -> Result<T, RecvError> {
        if let Some(i) = self.saved.iter().position(|m| f(m).is_some()) {
            let m = self.saved.remove(i).unwrap();
            return Ok(f(&m).unwrap());
        }
        let deadline = tokio::time::Instant::now() + t;
        loop {
            let sig = match tokio::time::timeout_at(deadline, self.rx.recv()).await {
                Ok(Some(s)) => s,
                Ok(None) => return Err(RecvError::Closed),
                Err(_) => return Err(RecvError::Timeout),
            };
            let Signal::Message(m) = sig;
            if let Some(v) = f(&m) {
                return Ok(v);
            }
            self.saved.push_back(m);
        }
    }
}

impl Drop for Mailbox {
    fn drop(&mut self) {
        self.table.remove(&self.pid);
    }
}
