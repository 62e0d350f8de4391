//! A process's message queue: an unbounded multi-producer,
//! single-consumer channel whose only up-front cost is one ~100-byte
//! allocation. (`tokio::sync::mpsc::unbounded_channel` allocates 512
//! bytes of cache-padded state plus a first block of 32 message slots,
//! 32 x 56 = 1.8 KB, for every channel: most of an idle process's
//! memory.) The queue grows on the first message and shrinks back when a
//! burst has been drained.
//!
//! Semantics are those of the tokio channel it replaces: `send` fails
//! (handing the message back) once the receiver is gone; `recv` yields
//! `None` once every sender is gone and the queue is empty; `recv` is
//! cancel-safe (a message is taken only when it is returned) and
//! cooperative (tokio's task budget).

use std::collections::VecDeque;
use std::future::poll_fn;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Poll, Waker};

/// Above this many slots an emptied queue gives its memory back.
const SHRINK_ABOVE: usize = 1024;

struct State<T> {
    queue: VecDeque<T>,
    waker: Option<Waker>,
    senders: usize,
    receiver_alive: bool,
}

struct Shared<T> {
    state: Mutex<State<T>>,
}

impl<T> Shared<T> {
    fn lock(&self) -> MutexGuard<'_, State<T>> {
        // A panic while holding the lock cannot leave State inconsistent
        // (every critical section is a single push, pop or flag change).
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

pub(crate) struct Sender<T> {
    shared: Arc<Shared<T>>,
}

pub(crate) struct Receiver<T> {
    shared: Arc<Shared<T>>,
}

/// `try_recv` found nothing: the queue is empty (`Empty`) or empty with
/// every sender gone (`Disconnected`).
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum TryRecvError {
    Empty,
    Disconnected,
}

pub(crate) fn channel<T>() -> (Sender<T>, Receiver<T>) {
    let shared = Arc::new(Shared {
        state: Mutex::new(State { queue: VecDeque::new(), waker: None, senders: 1, receiver_alive: true }),
    });
    (Sender { shared: shared.clone() }, Receiver { shared })
}

impl<T> Sender<T> {
    /// Queues `msg`; `Err(msg)` if the receiver is gone.
    pub(crate) fn send(&self, msg: T) -> Result<(), T> {
        let waker = {
            let mut st = self.shared.lock();
            if !st.receiver_alive {
                return Err(msg);
            }
            st.queue.push_back(msg);
            st.waker.take()
        };
        if let Some(w) = waker {
            w.wake();
        }
        Ok(())
    }
}

impl<T> Clone for Sender<T> {
    fn clone(&self) -> Self {
        self.shared.lock().senders += 1;
        Sender { shared: self.shared.clone() }
    }
}

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        let waker = {
            let mut st = self.shared.lock();
            st.senders -= 1;
            if st.senders == 0 {
                st.waker.take()
            } else {
                None
            }
        };
        if let Some(w) = waker {
            w.wake();
        }
    }
}

impl<T> Receiver<T> {
    /// The next message; `None` once every sender is gone and the queue
    /// is drained. Like tokio's own channels it spends the task's coop
    /// budget, so a process with an endless backlog still yields to the
    /// scheduler now and then.
    pub(crate) async fn recv(&mut self) -> Option<T> {
        poll_fn(|cx| {
            let coop = std::task::ready!(tokio::task::coop::poll_proceed(cx));
            let mut st = self.shared.lock();
            match pop(&mut st) {
                Some(m) => {
                    coop.made_progress();
                    Poll::Ready(Some(m))
                }
                None if st.senders == 0 => {
                    coop.made_progress();
                    Poll::Ready(None)
                }
                None => {
                    match &mut st.waker {
                        Some(w) if w.will_wake(cx.waker()) => {}
                        slot => *slot = Some(cx.waker().clone()),
                    }
                    Poll::Pending
                }
            }
        })
        .await
    }

    /// Messages queued now.
    pub(crate) fn len(&self) -> usize {
        self.shared.lock().queue.len()
    }

    pub(crate) fn try_recv(&mut self) -> Result<T, TryRecvError> {
        let mut st = self.shared.lock();
        match pop(&mut st) {
            Some(m) => Ok(m),
            None if st.senders == 0 => Err(TryRecvError::Disconnected),
            None => Err(TryRecvError::Empty),
        }
    }
}

fn pop<T>(st: &mut State<T>) -> Option<T> {
    let m = st.queue.pop_front();
    if st.queue.is_empty() && st.queue.capacity() > SHRINK_ABOVE {
        st.queue = VecDeque::new();
    }
    m
}

impl<T> Drop for Receiver<T> {
    fn drop(&mut self) {
        let queued = {
            let mut st = self.shared.lock();
            st.receiver_alive = false;
            st.waker = None;
            std::mem::take(&mut st.queue)
        };
        drop(queued); // outside the lock: dropping messages may run arbitrary Drop code
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn fifo_then_none_when_senders_are_gone() {
        let (tx, mut rx) = channel();
        let tx2 = tx.clone();
        tx.send(1).unwrap();
        tx2.send(2).unwrap();
        assert_eq!(rx.recv().await, Some(1));
        assert_eq!(rx.try_recv(), Ok(2));
        assert_eq!(rx.try_recv(), Err(TryRecvError::Empty));
        drop(tx);
        assert_eq!(rx.try_recv(), Err(TryRecvError::Empty));
        tx2.send(3).unwrap();
        drop(tx2);
        assert_eq!(rx.recv().await, Some(3), "queued messages outlive the senders");
        assert_eq!(rx.recv().await, None);
        assert_eq!(rx.try_recv(), Err(TryRecvError::Disconnected));
    }

    #[tokio::test]
    async fn send_fails_once_the_receiver_is_gone() {
        let (tx, rx) = channel();
        tx.send(1).unwrap();
        drop(rx);
        assert_eq!(tx.send(2), Err(2));
    }

    #[tokio::test]
    async fn a_waiting_receiver_is_woken_by_send_and_by_the_last_drop() {
        let (tx, mut rx) = channel::<u32>();
        let waiter = tokio::spawn(async move { (rx.recv().await, rx.recv().await) });
        tokio::time::sleep(Duration::from_millis(20)).await;
        tx.send(7).unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
        drop(tx);
        let got = tokio::time::timeout(Duration::from_secs(5), waiter).await.unwrap().unwrap();
        assert_eq!(got, (Some(7), None));
    }

    #[tokio::test]
    async fn recv_is_cancel_safe() {
        let (tx, mut rx) = channel::<u32>();
        assert!(tokio::time::timeout(Duration::from_millis(10), rx.recv()).await.is_err());
        tx.send(1).unwrap();
        assert_eq!(rx.recv().await, Some(1));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn many_senders_lose_nothing_and_keep_per_sender_order() {
        let (tx, mut rx) = channel::<(u32, u32)>();
        let mut tasks = vec![];
        for s in 0..4 {
            let tx = tx.clone();
            tasks.push(tokio::spawn(async move {
                for i in 0..10_000 {
                    tx.send((s, i)).unwrap();
                    if i % 1000 == 0 {
                        tokio::task::yield_now().await;
                    }
                }
            }));
        }
        drop(tx);
        let mut next = [0u32; 4];
        while let Some((s, i)) = rx.recv().await {
            assert_eq!(next[s as usize], i);
            next[s as usize] += 1;
        }
        assert_eq!(next, [10_000; 4]);
        for t in tasks {
            t.await.unwrap();
        }
    }

    #[tokio::test]
    async fn a_process_with_an_endless_backlog_still_yields() {
        // current_thread: if recv never returned Pending, the other task
        // would never run and the loop below would never end.
        let (tx, mut rx) = channel::<u32>();
        let flag = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let f2 = flag.clone();
        tokio::spawn(async move { f2.store(true, std::sync::atomic::Ordering::SeqCst) });
        let mut n = 0u32;
        while !flag.load(std::sync::atomic::Ordering::SeqCst) {
            tx.send(n).unwrap();
            assert_eq!(rx.recv().await, Some(n));
            n += 1;
            assert!(n < 1_000_000, "recv never yielded");
        }
    }

    #[test]
    fn a_drained_burst_gives_its_memory_back() {
        let (tx, mut rx) = channel();
        for i in 0..100_000 {
            tx.send(i).unwrap();
        }
        while rx.try_recv().is_ok() {}
        assert!(rx.shared.lock().queue.capacity() <= SHRINK_ABOVE);
    }
}
