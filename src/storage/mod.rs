//! Durable state: the Raft log, hard state, applied index and the store's tables, in one LMDB
//! environment (`lmdb.rs` is the only file naming heed types), plus the on-disk format rules.

mod error;

pub use error::{StorageError, StorageErrorKind};
