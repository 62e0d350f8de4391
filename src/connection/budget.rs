//! The node's memory budget for input: bytes a peer has sent that the
//! node holds before they become messages (the frame being read and the
//! pieces of unfinished fragmented messages).
//!
//! Every link has a share ([`LinkConfig::input_share`](super::LinkConfig));
//! all links together draw on one node-wide [`InputBudget`]. A link that
//! would go over its share, or over what is left of the node's budget, is
//! closed with the reason logged; other links are untouched. What a link
//! holds is given back when its messages complete or when it closes.
//!
//! Decoded messages are not counted: once delivered they belong to the
//! receiving process, as on the BEAM.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// Default node-wide input budget: 256 MiB.
pub const DEFAULT_INPUT_BUDGET: usize = 256 * 1024 * 1024;
/// Default share of one link: 144 MiB (the 128 MiB default `max_message`,
/// its fragment headers and the next frame being read).
pub const DEFAULT_INPUT_SHARE: usize = 144 * 1024 * 1024;

/// The node-wide budget that every link's [`LinkBudget`] draws on.
#[derive(Debug)]
pub struct InputBudget {
    limit: usize,
    used: AtomicUsize,
}

impl InputBudget {
    pub fn new(limit: usize) -> Arc<InputBudget> {
        Arc::new(InputBudget { limit, used: AtomicUsize::new(0) })
    }

    /// Bytes all links hold right now.
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Takes `n` bytes if they fit; all or nothing.
    fn take(&self, n: usize) -> Result<(), usize> {
        let mut cur = self.used.load(Ordering::Relaxed);
        loop {
            let new = cur.saturating_add(n);
            if new > self.limit {
                return Err(cur);
            }
            match self.used.compare_exchange_weak(cur, new, Ordering::AcqRel, Ordering::Relaxed) {
                Ok(_) => return Ok(()),
                Err(actual) => cur = actual,
            }
        }
    }

    fn give_back(&self, n: usize) {
        self.used.fetch_sub(n, Ordering::AcqRel);
    }
}

/// Why a link may not hold more input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BudgetError {
    #[error(
        "memory budget: this link would hold {wanted} bytes of unfinished input \
         (partial fragmented messages and the frame being read), over its share of {share} bytes"
    )]
    LinkShare { wanted: usize, share: usize },
    #[error(
        "memory budget: the node-wide input budget of {limit} bytes is exhausted \
         ({used} bytes held by all links; this link asked for {more} more)"
    )]
    Node { more: usize, used: usize, limit: usize },
}

/// One link's part of the budget. Dropping it gives everything back.
#[derive(Debug)]
pub struct LinkBudget {
    node: Arc<InputBudget>,
    share: usize,
    held: usize,
}

impl LinkBudget {
    pub fn new(node: Arc<InputBudget>, share: usize) -> LinkBudget {
        LinkBudget { node, share, held: 0 }
    }

    /// Bytes this link holds.
    pub fn held(&self) -> usize {
        self.held
    }

    /// Makes this link hold exactly `bytes`. Shrinking always succeeds;
    /// growing fails, holding what it held before, when `bytes` is over
    /// the link's share or the node's budget has no room for the growth.
    pub fn hold(&mut self, bytes: usize) -> Result<(), BudgetError> {
        if bytes <= self.held {
            self.node.give_back(self.held - bytes);
            self.held = bytes;
            return Ok(());
        }
        if bytes > self.share {
            return Err(BudgetError::LinkShare { wanted: bytes, share: self.share });
        }
        let more = bytes - self.held;
        self.node.take(more).map_err(|used| BudgetError::Node { more, used, limit: self.node.limit })?;
        self.held = bytes;
        Ok(())
    }
}

impl Drop for LinkBudget {
    fn drop(&mut self) {
        self.node.give_back(self.held);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_share_the_node_budget_and_give_it_back() {
        let node = InputBudget::new(100);
        let mut a = LinkBudget::new(node.clone(), 60);
        let mut b = LinkBudget::new(node.clone(), 60);
        a.hold(50).unwrap();
        assert_eq!(a.hold(61), Err(BudgetError::LinkShare { wanted: 61, share: 60 }));
        assert_eq!(a.held(), 50, "a refused growth keeps what was held");
        b.hold(40).unwrap();
        assert_eq!(b.hold(51), Err(BudgetError::Node { more: 11, used: 90, limit: 100 }));
        assert_eq!(node.used(), 90);
        a.hold(10).unwrap();
        assert_eq!(node.used(), 50);
        b.hold(51).unwrap();
        drop(b);
        assert_eq!(node.used(), 10);
        drop(a);
        assert_eq!(node.used(), 0);
    }
}
