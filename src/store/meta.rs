//! The store's etcd index counter, kept in `Table::StoreMeta` so that it commits with the
//! tree it counts and survives restarts.

use super::codec;
use super::kv::{KvRead, KvWrite, Table};
use crate::storage::StorageError;

const INDEX_KEY: &[u8] = b"etcd_index";

/// The current etcd index (0 for a fresh store).
pub fn index<K: KvRead>(kv: &K) -> Result<u64, StorageError> {
    kv.get(Table::StoreMeta, INDEX_KEY)?
        .map_or(Ok(0), |bytes| codec::decode_u64("etcd index", &bytes))
}

/// Records a new current etcd index.
pub fn set_index<K: KvWrite>(kv: &mut K, index: u64) -> Result<(), StorageError> {
    kv.put(Table::StoreMeta, INDEX_KEY, &index.to_be_bytes())
}
