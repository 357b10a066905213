//! The retained event history `Table::Events` (spec §4.3): every event, refreshes included,
//! keyed by its big-endian etcd index, trimmed to the last [`HISTORY_LEN`] in the same apply
//! that adds a new one.

use super::codec;
use super::event::Event;
use super::kv::{KvRead, KvWrite, Table};
use crate::storage::StorageError;

/// How many of the most recent events the store keeps (etcd's watch history window).
pub const HISTORY_LEN: usize = 1000;

/// Stores `event` under its index and drops whatever falls out of the window.
pub fn record<K: KvWrite>(kv: &mut K, event: &Event) -> Result<(), StorageError> {
    let index = event.etcd_index;
    let bytes = codec::encode(&format!("event {index}"), event)?;
    kv.put_last(Table::Events, &index.to_be_bytes(), &bytes)?;
    let keep_from = index.saturating_sub(HISTORY_LEN as u64 - 1);
    // Indexes are contiguous, so this range normally holds exactly one event; scanning it
    // instead of deleting one key also heals any gap left by an older format.
    let mut stale = Vec::new();
    kv.scan(
        Table::Events,
        &[],
        Some(&keep_from.to_be_bytes()),
        &mut |k, _| {
            stale.push(k.to_vec());
            true
        },
    )?;
    for key in stale {
        kv.delete(Table::Events, &key)?;
    }
    Ok(())
}

/// Every retained event, ascending by index.
pub fn all<K: KvRead>(kv: &K) -> Result<Vec<Event>, StorageError> {
    let mut raw = Vec::new();
    kv.scan(Table::Events, &[], None, &mut |k, v| {
        raw.push((k.to_vec(), v.to_vec()));
        true
    })?;
    raw.into_iter()
        .map(|(k, v)| {
            let index = codec::decode_u64("event key", &k)?;
            codec::decode(&format!("event {index}"), &v)
        })
        .collect()
}

/// Drops the persisted events older than the newest `keep` (used when the quota is nearly
/// used up: a watch from a dropped index then gets the usual 401 after a restart, instead
/// of old values holding space the user freed).
pub fn trim_to<K: KvWrite>(kv: &mut K, keep: u64) -> Result<usize, StorageError> {
    let current = super::meta::index(kv)?;
    let keep_from = current.saturating_sub(keep.saturating_sub(1));
    let mut stale = Vec::new();
    kv.scan(
        Table::Events,
        &[],
        Some(&keep_from.to_be_bytes()),
        &mut |k, _| {
            stale.push(k.to_vec());
            true
        },
    )?;
    for key in &stale {
        kv.delete(Table::Events, key)?;
    }
    Ok(stale.len())
}
