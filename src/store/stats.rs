//! The store counters of `/v2/stats/store` (spec §11.3). They are atomics because reads run
//! on API threads while writes are applied on the apply thread. Like etcd's, they live in
//! memory only: write counters are rebuilt by log replay, read counters restart at 0.

use std::sync::atomic::{AtomicU64, Ordering};

/// One counter, in the spec's member order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Counter {
    /// Successful GETs.
    GetsSuccess,
    /// Failed GETs.
    GetsFail,
    /// Successful sets.
    SetsSuccess,
    /// Failed sets.
    SetsFail,
    /// Successful deletes.
    DeleteSuccess,
    /// Failed deletes.
    DeleteFail,
    /// Successful updates.
    UpdateSuccess,
    /// Failed updates.
    UpdateFail,
    /// Successful creates (PUT prevExist=false and POST).
    CreateSuccess,
    /// Failed creates.
    CreateFail,
    /// Successful compare-and-swaps.
    CompareAndSwapSuccess,
    /// Failed compare-and-swaps.
    CompareAndSwapFail,
    /// Successful compare-and-deletes.
    CompareAndDeleteSuccess,
    /// Failed compare-and-deletes.
    CompareAndDeleteFail,
    /// Expired nodes.
    ExpireCount,
}

const COUNTERS: usize = Counter::ExpireCount as usize + 1;

/// The live counters, and the counts of the batch being written: an apply counts into
/// `pending`, which joins the live counters only once its transaction committed (a batch
/// refused with a full map changed nothing, so it counts nothing).
#[derive(Debug, Default)]
pub struct Stats {
    counters: [AtomicU64; COUNTERS],
    pending: [AtomicU64; COUNTERS],
}

impl Stats {
    /// Adds `n` to `counter`.
    pub fn add(&self, counter: Counter, n: u64) {
        // Relaxed: the counters are independent and only ever read for display.
        self.counters[counter as usize].fetch_add(n, Ordering::Relaxed);
    }

    /// Adds `n` to `counter` once the batch being written commits.
    pub fn add_pending(&self, counter: Counter, n: u64) {
        self.pending[counter as usize].fetch_add(n, Ordering::Relaxed);
    }

    /// The batch committed: its counts become live.
    pub fn commit_pending(&self) {
        for (live, pending) in self.counters.iter().zip(&self.pending) {
            live.fetch_add(pending.swap(0, Ordering::Relaxed), Ordering::Relaxed);
        }
    }

    /// The batch failed: its counts go.
    pub fn discard_pending(&self) {
        for pending in &self.pending {
            pending.store(0, Ordering::Relaxed);
        }
    }

    fn get(&self, counter: Counter) -> u64 {
        self.counters[counter as usize].load(Ordering::Relaxed)
    }

    /// A copy of every counter.
    pub fn snapshot(&self) -> StoreStatsSnapshot {
        use Counter::*;
        StoreStatsSnapshot {
            gets_success: self.get(GetsSuccess),
            gets_fail: self.get(GetsFail),
            sets_success: self.get(SetsSuccess),
            sets_fail: self.get(SetsFail),
            delete_success: self.get(DeleteSuccess),
            delete_fail: self.get(DeleteFail),
            update_success: self.get(UpdateSuccess),
            update_fail: self.get(UpdateFail),
            create_success: self.get(CreateSuccess),
            create_fail: self.get(CreateFail),
            compare_and_swap_success: self.get(CompareAndSwapSuccess),
            compare_and_swap_fail: self.get(CompareAndSwapFail),
            compare_and_delete_success: self.get(CompareAndDeleteSuccess),
            compare_and_delete_fail: self.get(CompareAndDeleteFail),
            expire_count: self.get(ExpireCount),
        }
    }
}

/// The counters at one moment, in the order `/v2/stats/store` lists them (without
/// `watchers`, which the watch hub knows).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StoreStatsSnapshot {
    /// `getsSuccess`.
    pub gets_success: u64,
    /// `getsFail`.
    pub gets_fail: u64,
    /// `setsSuccess`.
    pub sets_success: u64,
    /// `setsFail`.
    pub sets_fail: u64,
    /// `deleteSuccess`.
    pub delete_success: u64,
    /// `deleteFail`.
    pub delete_fail: u64,
    /// `updateSuccess`.
    pub update_success: u64,
    /// `updateFail`.
    pub update_fail: u64,
    /// `createSuccess`.
    pub create_success: u64,
    /// `createFail`.
    pub create_fail: u64,
    /// `compareAndSwapSuccess`.
    pub compare_and_swap_success: u64,
    /// `compareAndSwapFail`.
    pub compare_and_swap_fail: u64,
    /// `compareAndDeleteSuccess`.
    pub compare_and_delete_success: u64,
    /// `compareAndDeleteFail`.
    pub compare_and_delete_fail: u64,
    /// `expireCount`.
    pub expire_count: u64,
}
