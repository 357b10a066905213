//! The node thread's input queue: many senders (API workers, the peer transport, the disk
//! threads), one receiver, and a receiver that can say which inputs are worth waking it for.
//!
//! Waking a parked thread costs both sides a futex call and a context switch, and under load
//! the node thread was woken about once per client write. A write that arrives while the
//! node's previous Ready is still with the WAL thread produces nothing the node could do at
//! once that the WAL's answer (due within one fsync) would not let it do with every write
//! that came in meanwhile. So senders mark inputs *deferrable*, the node waits *deferring*
//! while its WAL is busy, and such inputs then queue without a wake-up; everything else
//! (the WAL's and apply thread's answers, peer messages, reads) wakes it as before.
//!
//! One lock guards the queue and the receiver's waiting state together, so a sender never
//! misses a receiver that is about to park (the receiver's park token covers an unpark that
//! lands between the unlock and the park).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::Thread;
use std::time::{Duration, Instant};

/// The receiver is gone: what was sent comes back.
#[derive(Debug)]
pub struct Closed<T>(pub T);

/// Every sender is gone and the queue is empty.
#[derive(Debug, PartialEq, Eq)]
pub struct Disconnected;

/// A new input queue.
pub fn channel<T>() -> (InboxSender<T>, Inbox<T>) {
    let shared = Arc::new(Shared {
        state: Mutex::new(State {
            queue: VecDeque::new(),
            waiting: Waiting::No,
            thread: None,
            senders: 1,
            receiver: true,
        }),
    });
    (
        InboxSender {
            shared: Arc::clone(&shared),
        },
        Inbox {
            shared,
            local: VecDeque::new(),
        },
    )
}

/// What a parked receiver is woken by.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Waiting {
    /// Not parked (or about to look at the queue again).
    No,
    /// Any input.
    Any,
    /// Only inputs not sent as deferrable.
    Urgent,
}

struct State<T> {
    queue: VecDeque<T>,
    waiting: Waiting,
    /// The receiver's thread, set when it first parks.
    thread: Option<Thread>,
    senders: usize,
    receiver: bool,
}

struct Shared<T> {
    state: Mutex<State<T>>,
}

impl<T> Shared<T> {
    // A panic while the lock is held cannot leave the queue half-changed (every change is
    // one VecDeque call), so a poisoned lock is used as it is.
    fn lock(&self) -> MutexGuard<'_, State<T>> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The sending side; cloned freely.
pub struct InboxSender<T> {
    shared: Arc<Shared<T>>,
}

impl<T> InboxSender<T> {
    /// Queues `item` and wakes the receiver if it is parked.
    pub fn send(&self, item: T) -> Result<(), Closed<T>> {
        self.push(item, true)
    }

    /// Queues `item`; wakes the receiver only if it waits for any input, not when it waits
    /// deferring (it takes the item with the next urgent input or at its timeout).
    pub fn send_deferrable(&self, item: T) -> Result<(), Closed<T>> {
        self.push(item, false)
    }

    fn push(&self, item: T, urgent: bool) -> Result<(), Closed<T>> {
        let wake = {
            let mut state = self.shared.lock();
            if !state.receiver {
                return Err(Closed(item));
            }
            state.queue.push_back(item);
            let wake = match state.waiting {
                Waiting::No => false,
                Waiting::Any => true,
                Waiting::Urgent => urgent,
            };
            if wake {
                state.waiting = Waiting::No;
                state.thread.clone()
            } else {
                None
            }
        };
        if let Some(thread) = wake {
            thread.unpark();
        }
        Ok(())
    }
}

impl<T> Clone for InboxSender<T> {
    fn clone(&self) -> Self {
        self.shared.lock().senders += 1;
        InboxSender {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<T> Drop for InboxSender<T> {
    fn drop(&mut self) {
        let wake = {
            let mut state = self.shared.lock();
            state.senders -= 1;
            if state.senders == 0 && state.waiting != Waiting::No {
                state.waiting = Waiting::No;
                state.thread.clone()
            } else {
                None
            }
        };
        if let Some(thread) = wake {
            thread.unpark();
        }
    }
}

/// The receiving side, owned by one thread at a time.
pub struct Inbox<T> {
    shared: Arc<Shared<T>>,
    /// Inputs taken from the shared queue in one swap, handed out one by one.
    local: VecDeque<T>,
}

impl<T> Inbox<T> {
    /// The next input, waiting at most `timeout` (`None`: without a limit); `Ok(None)` when
    /// the time ran out. With `defer`, deferrable inputs do not end the wait (they are
    /// returned with the next urgent one, or at the timeout).
    pub fn recv(
        &mut self,
        timeout: Option<Duration>,
        defer: bool,
    ) -> Result<Option<T>, Disconnected> {
        if let Some(item) = self.local.pop_front() {
            return Ok(Some(item));
        }
        let deadline = timeout.map(|t| Instant::now() + t);
        loop {
            {
                let mut state = self.shared.lock();
                state.waiting = Waiting::No;
                if !state.queue.is_empty() {
                    std::mem::swap(&mut state.queue, &mut self.local);
                    drop(state);
                    return Ok(self.local.pop_front());
                }
                if state.senders == 0 {
                    return Err(Disconnected);
                }
                let left = match deadline {
                    Some(d) => match d.checked_duration_since(Instant::now()) {
                        Some(left) if !left.is_zero() => Some(left),
                        _ => return Ok(None),
                    },
                    None => None,
                };
                state.waiting = if defer { Waiting::Urgent } else { Waiting::Any };
                if state.thread.is_none() {
                    state.thread = Some(std::thread::current());
                }
                drop(state);
                match left {
                    Some(left) => std::thread::park_timeout(left),
                    None => std::thread::park(),
                }
            }
        }
    }

    /// An input that is already queued, without waiting.
    pub fn try_recv(&mut self) -> Option<T> {
        if let Some(item) = self.local.pop_front() {
            return Some(item);
        }
        let mut state = self.shared.lock();
        if state.queue.is_empty() {
            return None;
        }
        std::mem::swap(&mut state.queue, &mut self.local);
        drop(state);
        self.local.pop_front()
    }
}

impl<T> Drop for Inbox<T> {
    fn drop(&mut self) {
        // The queued inputs (with their reply channels) are dropped outside the lock.
        let queued = {
            let mut state = self.shared.lock();
            state.receiver = false;
            std::mem::take(&mut state.queue)
        };
        drop(queued);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inputs_come_out_in_order_across_swaps() {
        let (tx, mut rx) = channel();
        for i in 0..3 {
            tx.send(i).unwrap();
        }
        assert_eq!(rx.recv(None, false), Ok(Some(0)));
        tx.send(3).unwrap();
        assert_eq!(rx.try_recv(), Some(1));
        assert_eq!(rx.try_recv(), Some(2));
        assert_eq!(rx.try_recv(), Some(3));
        assert_eq!(rx.try_recv(), None);
    }

    #[test]
    fn a_wait_times_out_empty() {
        let (_tx, mut rx) = channel::<u32>();
        let started = Instant::now();
        assert_eq!(rx.recv(Some(Duration::from_millis(30)), false), Ok(None));
        assert!(started.elapsed() >= Duration::from_millis(30));
    }

    #[test]
    fn a_deferrable_input_wakes_a_receiver_that_does_not_defer() {
        let (tx, mut rx) = channel();
        let sender = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            tx.send_deferrable(7).unwrap();
            // Keeps the channel open until the receiver is done.
            std::thread::sleep(Duration::from_millis(200));
        });
        assert_eq!(rx.recv(Some(Duration::from_secs(30)), false), Ok(Some(7)));
        sender.join().unwrap();
    }

    #[test]
    fn a_deferring_receiver_sleeps_through_deferrable_inputs_until_an_urgent_one() {
        let (tx, mut rx) = channel();
        let (sent_tx, sent) = std::sync::mpsc::channel();
        let (go_tx, go) = std::sync::mpsc::channel::<()>();
        let sender = std::thread::spawn(move || {
            // Well after the receiver parked.
            std::thread::sleep(Duration::from_millis(50));
            tx.send_deferrable(1).unwrap();
            sent_tx.send(()).unwrap();
            let _ = go.recv();
            tx.send(2).unwrap();
            std::thread::sleep(Duration::from_millis(200));
        });
        let helper = std::thread::spawn(move || {
            // The deferrable input is queued; let the receiver sleep on a while, then send
            // the urgent one.
            sent.recv().unwrap();
            std::thread::sleep(Duration::from_millis(150));
            go_tx.send(()).unwrap();
        });
        let started = Instant::now();
        assert_eq!(rx.recv(Some(Duration::from_secs(30)), true), Ok(Some(1)));
        // Not woken by the deferrable input (sent at ~50 ms) but by the urgent one (~200 ms).
        assert!(
            started.elapsed() >= Duration::from_millis(180),
            "{:?}",
            started.elapsed()
        );
        assert_eq!(rx.recv(None, true), Ok(Some(2)));
        sender.join().unwrap();
        helper.join().unwrap();
    }

    #[test]
    fn a_deferring_receiver_takes_deferrable_inputs_at_its_timeout() {
        let (tx, mut rx) = channel();
        tx.send_deferrable(5).unwrap();
        // Already queued: returned at once.
        assert_eq!(rx.recv(Some(Duration::from_secs(30)), true), Ok(Some(5)));
        let keep = tx.clone();
        let sender = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            keep.send_deferrable(6).unwrap();
        });
        assert_eq!(rx.recv(Some(Duration::from_millis(150)), true), Ok(Some(6)));
        sender.join().unwrap();
        drop(tx);
    }

    #[test]
    fn the_last_sender_leaving_ends_a_wait() {
        let (tx, mut rx) = channel::<u32>();
        let sender = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            drop(tx);
        });
        assert_eq!(rx.recv(None, true), Err(Disconnected));
        sender.join().unwrap();
    }

    #[test]
    fn sending_to_a_dropped_receiver_gives_the_input_back() {
        let (tx, rx) = channel();
        drop(rx);
        assert!(matches!(tx.send(9), Err(Closed(9))));
    }
}
