//! The small ordered key-value interface the v2 store is written against. The LMDB write
//! transaction implements it in production (so applying shares the batch's one commit), a
//! `BTreeMap` in unit tests and the simulator.

use crate::storage::StorageError;
use std::collections::BTreeMap;

/// The separate keyspaces the store uses; each is its own LMDB database.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Table {
    /// The v2 tree, keyed so that a directory's direct children are one contiguous range.
    Nodes,
    /// The expiry index: (expiration, key).
    Ttl,
    /// Store metadata (the etcd index counter).
    StoreMeta,
}

/// Read access. Implementations must return keys in ascending byte order.
pub trait KvRead {
    /// The value stored under `key`, if any.
    fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError>;

    /// Calls `visit` for every entry with `start <= key < end` (`end = None`: no upper
    /// bound) in ascending order, until `visit` returns `false`.
    fn scan(
        &self,
        table: Table,
        start: &[u8],
        end: Option<&[u8]>,
        visit: &mut dyn FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<(), StorageError>;
}

/// Write access on top of reads (a write transaction sees its own writes).
pub trait KvWrite: KvRead {
    /// Stores `value` under `key`, replacing any previous value.
    fn put(&mut self, table: Table, key: &[u8], value: &[u8]) -> Result<(), StorageError>;

    /// Stores `value` under `key`, which sorts after every key of `table` (an append at the
    /// right edge). LMDB then fills pages instead of splitting them in half; other
    /// implementations just put.
    fn put_last(&mut self, table: Table, key: &[u8], value: &[u8]) -> Result<(), StorageError> {
        self.put(table, key, value)
    }

    /// Removes `key`; returns whether it existed.
    fn delete(&mut self, table: Table, key: &[u8]) -> Result<bool, StorageError>;
}

/// An in-memory [`KvWrite`]: the reference model in tests and the simulator's state machine.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MemKv {
    tables: BTreeMap<Table, BTreeMap<Vec<u8>, Vec<u8>>>,
}

impl MemKv {
    /// An empty store.
    pub fn new() -> MemKv {
        MemKv::default()
    }

    /// Number of entries in `table` (for tests).
    pub fn len(&self, table: Table) -> usize {
        self.tables.get(&table).map_or(0, |t| t.len())
    }

    /// Whether every table is empty.
    pub fn is_empty(&self) -> bool {
        self.tables.values().all(|t| t.is_empty())
    }
}

impl KvRead for MemKv {
    fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        Ok(self.tables.get(&table).and_then(|t| t.get(key)).cloned())
    }

    fn scan(
        &self,
        table: Table,
        start: &[u8],
        end: Option<&[u8]>,
        visit: &mut dyn FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<(), StorageError> {
        let Some(t) = self.tables.get(&table) else {
            return Ok(());
        };
        for (k, v) in t.range(start.to_vec()..) {
            if end.is_some_and(|e| k.as_slice() >= e) {
                break;
            }
            if !visit(k, v) {
                break;
            }
        }
        Ok(())
    }
}

impl KvWrite for MemKv {
    fn put(&mut self, table: Table, key: &[u8], value: &[u8]) -> Result<(), StorageError> {
        self.tables
            .entry(table)
            .or_default()
            .insert(key.to_vec(), value.to_vec());
        Ok(())
    }

    fn delete(&mut self, table: Table, key: &[u8]) -> Result<bool, StorageError> {
        Ok(self
            .tables
            .get_mut(&table)
            .is_some_and(|t| t.remove(key).is_some()))
    }
}
