//! Errors of the storage layer: what failed (`op`), on what (`path`), and why.

use std::fmt;
use std::path::PathBuf;

/// Why a storage operation failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StorageErrorKind {
    /// The LMDB map is full (`--quota-backend-bytes` reached): writes fail, reads go on.
    MapFull,
    /// A record could not be decoded or failed its checksum.
    Corrupt(String),
    /// The data dir was written by another program or a newer format.
    Foreign(String),
    /// Any other I/O or LMDB failure, with its text.
    Io(String),
}

/// A storage failure with its context.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StorageError {
    /// The operation that failed, e.g. "commit batch" or "read log entry 17".
    pub op: String,
    /// The data dir or file involved (empty for in-memory storage).
    pub path: PathBuf,
    /// What went wrong.
    pub kind: StorageErrorKind,
}

impl StorageError {
    /// A new error.
    pub fn new(op: impl Into<String>, path: impl Into<PathBuf>, kind: StorageErrorKind) -> Self {
        StorageError {
            op: op.into(),
            path: path.into(),
            kind,
        }
    }

    /// A decoding failure of a record in memory or on disk.
    pub fn corrupt(op: impl Into<String>, detail: impl Into<String>) -> Self {
        StorageError::new(op, PathBuf::new(), StorageErrorKind::Corrupt(detail.into()))
    }

    /// Whether the failure is the map being full (the quota).
    pub fn is_map_full(&self) -> bool {
        self.kind == StorageErrorKind::MapFull
    }
}

impl fmt::Display for StorageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.op)?;
        if !self.path.as_os_str().is_empty() {
            write!(f, " in {}", self.path.display())?;
        }
        match &self.kind {
            StorageErrorKind::MapFull => write!(
                f,
                ": database space exceeded (the --quota-backend-bytes map is full)"
            ),
            StorageErrorKind::Corrupt(d) => write!(f, ": corrupt record: {d}"),
            StorageErrorKind::Foreign(d) => write!(f, ": {d}"),
            StorageErrorKind::Io(d) => write!(f, ": {d}"),
        }
    }
}

impl std::error::Error for StorageError {}
