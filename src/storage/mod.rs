//! Durable state: the Raft log, hard state, applied index and the store's tables, in one LMDB
//! environment (`lmdb.rs` is the only file naming heed types), plus the on-disk format rules.

mod error;
pub mod format;
pub mod lmdb;

pub use error::{StorageError, StorageErrorKind};
pub use format::{Identity, MemberRecord, RaftState};

use crate::raft::Entry;
use crate::store::KvWrite;

/// A write transaction of one batch: everything in it becomes durable at `commit`, or nothing.
pub trait StorageTxn: KvWrite {
    /// Appends (or overwrites) a log entry at its index, with the store's encoded events of
    /// it (`history`; empty when the entry is not applied in this batch).
    fn append(&mut self, entry: &Entry, history: &[u8]) -> Result<(), StorageError>;
    /// Records the encoded events of an entry already in the log (applied in a later batch
    /// than the one that appended it).
    fn attach_history(&mut self, index: u64, history: &[u8]) -> Result<(), StorageError>;
    /// Removes the log entries `first..=last` (compaction: they are applied and no longer
    /// needed).
    fn compact_log(&mut self, first: u64, last: u64) -> Result<(), StorageError>;
    /// Saves the hard state and the applied index.
    fn save_raft_state(&mut self, state: &RaftState) -> Result<(), StorageError>;
    /// Makes the transaction durable (one fsync). An error leaves nothing of it on disk.
    fn commit(self) -> Result<(), StorageError>;
}

/// Durable storage that opens batch transactions.
pub trait Storage {
    /// The batch transaction type.
    type Txn<'a>: StorageTxn
    where
        Self: 'a;
    /// Begins a batch. Only one batch is open at a time (the storage thread's).
    fn begin(&self) -> Result<Self::Txn<'_>, StorageError>;
}
