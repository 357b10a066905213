//! An elastic pool of small-stack threads for blocking work (HTTP requests, watch
//! deliveries). It grows when every worker is busy, so a client that sends half a request and
//! hangs holds one thread and never stalls the others, and idle workers above the minimum
//! exit after a while so a burst does not keep its threads.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::time::Duration;

type Job = Box<dyn FnOnce() + Send + 'static>;

/// Stack size of pool threads: request handling needs little, and many may be parked.
const STACK_BYTES: usize = 256 * 1024;
/// How long a worker above the minimum waits for a job before exiting.
const IDLE_EXIT: Duration = Duration::from_secs(30);

struct Shared {
    jobs: Mutex<Receiver<Job>>,
    idle: AtomicUsize,
    /// Jobs sent but not yet taken by a worker.
    queued: AtomicUsize,
    total: AtomicUsize,
    min: usize,
    max: usize,
    name: String,
}

/// A cloneable handle to the pool.
#[derive(Clone)]
pub struct Pool {
    tx: Sender<Job>,
    shared: Arc<Shared>,
}

impl Pool {
    /// A pool that keeps `min` threads and grows up to `max`.
    pub fn new(name: &str, min: usize, max: usize) -> Pool {
        let (tx, rx) = mpsc::channel();
        let shared = Arc::new(Shared {
            jobs: Mutex::new(rx),
            idle: AtomicUsize::new(0),
            queued: AtomicUsize::new(0),
            total: AtomicUsize::new(0),
            min,
            max: max.max(1),
            name: name.to_string(),
        });
        Pool { tx, shared }
    }

    /// Runs `job` on a pool thread, starting a new thread when none is idle.
    pub fn spawn(&self, job: impl FnOnce() + Send + 'static) {
        // Every queued job needs its own idle worker: a job ahead of it may block for long.
        let queued = self.shared.queued.fetch_add(1, Ordering::SeqCst) + 1;
        if self.shared.idle.load(Ordering::SeqCst) < queued
            && self.shared.total.load(Ordering::SeqCst) < self.shared.max
        {
            self.start_worker();
        }
        if self.tx.send(Box::new(job)).is_err() {
            self.shared.queued.fetch_sub(1, Ordering::SeqCst);
            log::error!("{} pool: no worker can take jobs", self.shared.name);
        }
    }

    /// Threads currently alive.
    pub fn threads(&self) -> usize {
        self.shared.total.load(Ordering::SeqCst)
    }

    fn start_worker(&self) {
        let shared = Arc::clone(&self.shared);
        shared.total.fetch_add(1, Ordering::SeqCst);
        let spawned = std::thread::Builder::new()
            .name(format!("{}-worker", shared.name))
            .stack_size(STACK_BYTES)
            .spawn({
                let shared = Arc::clone(&shared);
                move || worker_loop(&shared)
            });
        if let Err(e) = spawned {
            shared.total.fetch_sub(1, Ordering::SeqCst);
            log::error!("{} pool: cannot start a thread: {e}", shared.name);
        }
    }
}

fn worker_loop(shared: &Shared) {
    loop {
        shared.idle.fetch_add(1, Ordering::SeqCst);
        let next = match shared.jobs.lock() {
            Ok(rx) => rx.recv_timeout(IDLE_EXIT),
            Err(_) => Err(RecvTimeoutError::Disconnected),
        };
        shared.idle.fetch_sub(1, Ordering::SeqCst);
        match next {
            Ok(job) => {
                shared.queued.fetch_sub(1, Ordering::SeqCst);
                job()
            }
            Err(RecvTimeoutError::Timeout) => {
                if shared.total.load(Ordering::SeqCst) > shared.min {
                    break;
                }
            }
            Err(RecvTimeoutError::Disconnected) => break,
        }
    }
    shared.total.fetch_sub(1, Ordering::SeqCst);
}

#[cfg(test)]
mod tests {
    use super::Pool;
    use std::sync::mpsc;

    #[test]
    fn a_blocked_job_does_not_stall_the_next() {
        let pool = Pool::new("test", 1, 8);
        let (block_tx, block_rx) = mpsc::channel::<()>();
        pool.spawn(move || {
            let _ = block_rx.recv();
        });
        let (done_tx, done_rx) = mpsc::channel();
        pool.spawn(move || {
            let _ = done_tx.send(7);
        });
        assert_eq!(
            done_rx.recv_timeout(std::time::Duration::from_secs(10)),
            Ok(7)
        );
        drop(block_tx);
    }
}
