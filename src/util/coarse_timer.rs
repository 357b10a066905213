//! Deadlines for requests that wait on the node thread (a write until it applies, a read
//! until its barrier passes), kept without a reactor timer each.
//!
//! Why: every `smol::Timer` a task arms is an insertion that async-io announces to its
//! reactor by writing its eventfd, which wakes whichever thread sits in `epoll_wait`, which
//! then reads the eventfd and re-arms its timerfd. A PUT armed one, so each PUT cost a wake-up
//! of another thread on every member; measured on a loaded 3-member cluster it was one
//! `write` per request on the HTTP threads. These deadlines are seconds long and need no
//! precision beyond [`TICK`], so one ticker thread wakes every waiter each tick, and each
//! checks its own deadline. The ticker runs only while somebody waits: an idle server has no
//! timer at all.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Condvar, Mutex, OnceLock};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

/// How late a deadline may be noticed.
pub const TICK: Duration = Duration::from_millis(50);

/// `f`, or `None` once `limit` has passed (noticed within [`TICK`] after it).
pub async fn within<T>(limit: Duration, f: impl Future<Output = T>) -> Option<T> {
    let deadline = Instant::now() + limit;
    let Some(ticker) = ticker() else {
        // No ticker thread (it could not be started): a reactor timer still bounds the wait.
        return smol::future::or(async { Some(f.await) }, async {
            smol::Timer::at(deadline).await;
            None
        })
        .await;
    };
    let _waiting = Waiting::enter(ticker);
    smol::future::or(async { Some(f.await) }, async {
        loop {
            if Instant::now() >= deadline {
                return None;
            }
            NextTick::new(ticker).await;
        }
    })
    .await
}

struct Ticker {
    /// Ticks so far: a waiter that saw another value has been woken by a tick since.
    ticks: AtomicU64,
    state: Mutex<State>,
    /// Rung when the first waiter arrives.
    arrived: Condvar,
}

#[derive(Default)]
struct State {
    waiting: usize,
    wakers: Vec<Waker>,
}

fn ticker() -> Option<&'static Ticker> {
    static TICKER: OnceLock<Option<&'static Ticker>> = OnceLock::new();
    *TICKER.get_or_init(|| {
        let ticker: &'static Ticker = Box::leak(Box::new(Ticker {
            ticks: AtomicU64::new(0),
            state: Mutex::new(State::default()),
            arrived: Condvar::new(),
        }));
        match std::thread::Builder::new()
            .name("deadlines".into())
            .spawn(move || ticker.run())
        {
            Ok(_) => Some(ticker),
            Err(e) => {
                log::warn!("cannot start the request deadline thread, using timers: {e}");
                None
            }
        }
    })
}

impl Ticker {
    fn run(&self) {
        loop {
            {
                let Ok(mut state) = self.state.lock() else {
                    return;
                };
                while state.waiting == 0 {
                    state = match self.arrived.wait(state) {
                        Ok(s) => s,
                        Err(_) => return,
                    };
                }
            }
            std::thread::sleep(TICK);
            self.ticks.fetch_add(1, Ordering::SeqCst);
            // Taken under the lock, woken outside it: a woken task may poll at once.
            let wakers = match self.state.lock() {
                Ok(mut state) => std::mem::take(&mut state.wakers),
                Err(_) => return,
            };
            for w in wakers {
                w.wake();
            }
        }
    }
}

/// Counts a waiter for as long as it lives, so the ticker runs exactly while there is one.
struct Waiting(&'static Ticker);

impl Waiting {
    fn enter(ticker: &'static Ticker) -> Waiting {
        if let Ok(mut state) = ticker.state.lock() {
            state.waiting += 1;
            if state.waiting == 1 {
                ticker.arrived.notify_one();
            }
        }
        Waiting(ticker)
    }
}

impl Drop for Waiting {
    fn drop(&mut self) {
        if let Ok(mut state) = self.0.state.lock() {
            state.waiting = state.waiting.saturating_sub(1);
        }
    }
}

/// Resolves at the next tick after it was made.
struct NextTick {
    ticker: &'static Ticker,
    seen: u64,
}

impl NextTick {
    fn new(ticker: &'static Ticker) -> NextTick {
        NextTick {
            ticker,
            seen: ticker.ticks.load(Ordering::SeqCst),
        }
    }
}

impl Future for NextTick {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.ticker.ticks.load(Ordering::SeqCst) != self.seen {
            return Poll::Ready(());
        }
        let Ok(mut state) = self.ticker.state.lock() else {
            return Poll::Ready(());
        };
        // Checked again under the lock: a tick between the load and the lock took the
        // wakers already, and this one would wait a tick more.
        if self.ticker.ticks.load(Ordering::SeqCst) != self.seen {
            return Poll::Ready(());
        }
        if !state.wakers.iter().any(|w| w.will_wake(cx.waker())) {
            state.wakers.push(cx.waker().clone());
        }
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_future_that_finishes_first_is_returned() {
        let got = smol::block_on(within(Duration::from_secs(5), async { 7 }));
        assert_eq!(got, Some(7));
    }

    #[test]
    fn a_pending_future_times_out_after_its_limit_within_a_few_ticks() {
        let start = Instant::now();
        let got = smol::block_on(within(
            Duration::from_millis(120),
            std::future::pending::<()>(),
        ));
        let took = start.elapsed();
        assert_eq!(got, None);
        assert!(took >= Duration::from_millis(120), "{took:?}");
        assert!(took < Duration::from_secs(3), "{took:?}");
    }

    #[test]
    fn many_waiters_each_see_their_own_deadline() {
        let ex = smol::Executor::new();
        let results = smol::block_on(ex.run(async {
            let tasks: Vec<_> = (0..50u64)
                .map(|i| {
                    ex.spawn(async move {
                        let (tx, rx) = smol::channel::bounded::<u64>(1);
                        if i % 2 == 0 {
                            let _ = tx.send(i).await;
                        }
                        let got = within(Duration::from_millis(100), rx.recv()).await;
                        drop(tx);
                        (i, got.map(|r| r.ok()))
                    })
                })
                .collect();
            let mut out = Vec::new();
            for t in tasks {
                out.push(t.await);
            }
            out
        }));
        for (i, got) in results {
            if i % 2 == 0 {
                assert_eq!(got, Some(Some(i)), "waiter {i}");
            } else {
                assert_eq!(got, None, "waiter {i}");
            }
        }
    }
}
