//! Durable state: the Raft write-ahead log (`wal.rs`: hard state and the entries not yet
//! applied), and one LMDB environment (`lmdb.rs`, the only file naming heed types) with the
//! applied log, the applied index and the store's tables; plus the on-disk format rules.

mod error;
pub mod format;
pub mod lmdb;
pub mod wal;

pub use error::{StorageError, StorageErrorKind};
pub use format::{Identity, MemberRecord, RaftState};

use crate::raft::{ConfChange, Entry};
use crate::store::KvWrite;

/// A write transaction of one batch: everything in it is applied at `commit`, or nothing.
pub trait StorageTxn: KvWrite {
    /// Records an applied log entry at its index, with the store's encoded events of it
    /// (`history`; empty when it produced none).
    fn append(&mut self, entry: &Entry, history: &[u8]) -> Result<(), StorageError>;
    /// Removes the log entries `first..=last` (compaction: they are applied and no longer
    /// needed).
    fn compact_log(&mut self, first: u64, last: u64) -> Result<(), StorageError>;
    /// Applies a committed membership change to the membership record, in this batch (so
    /// the record is always the voters as of the applied index): `added` is the new
    /// member's record; a removed id goes to the removed list for good.
    fn apply_membership(
        &mut self,
        change: ConfChange,
        added: Option<&MemberRecord>,
    ) -> Result<(), StorageError>;
    /// Saves the hard state and the applied index.
    fn save_raft_state(&mut self, state: &RaftState) -> Result<(), StorageError>;
    /// Commits the transaction (one fsync; durable once the next commit or
    /// [`lmdb::LmdbStorage::sync`] has synced too). An error leaves nothing of it.
    fn commit(self) -> Result<(), StorageError>;
}

/// Durable storage that opens batch transactions.
pub trait Storage {
    /// The batch transaction type.
    type Txn<'a>: StorageTxn
    where
        Self: 'a;
    /// Begins a batch. Only one batch is open at a time (the apply thread's).
    fn begin(&self) -> Result<Self::Txn<'_>, StorageError>;
}
