//! The expiry index `Table::Ttl`: one empty-valued entry per node with a TTL, keyed by the
//! expiration (big-endian, so a scan yields the earliest first) followed by the node's path
//! (so ties expire in key order, the same on every member).

use super::kv::{KvRead, KvWrite, Table};
use crate::storage::StorageError;

/// The `Table::Ttl` key of a node expiring at `expiration`.
pub fn entry_key(expiration: u64, path: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(8 + path.len());
    key.extend_from_slice(&expiration.to_be_bytes());
    key.extend_from_slice(path.as_bytes());
    key
}

/// Registers `path` as expiring at `expiration`.
pub fn insert<K: KvWrite>(kv: &mut K, expiration: u64, path: &str) -> Result<(), StorageError> {
    kv.put(Table::Ttl, &entry_key(expiration, path), &[])
}

/// Unregisters `path`'s expiration.
pub fn remove<K: KvWrite>(kv: &mut K, expiration: u64, path: &str) -> Result<(), StorageError> {
    kv.delete(Table::Ttl, &entry_key(expiration, path))
        .map(|_| ())
}

/// The earliest entry: (expiration, path).
pub fn first<K: KvRead>(kv: &K) -> Result<Option<(u64, String)>, StorageError> {
    let mut found: Option<Vec<u8>> = None;
    kv.scan(Table::Ttl, &[], None, &mut |k, _| {
        found = Some(k.to_vec());
        false
    })?;
    found.map(|k| decode_entry(&k)).transpose()
}

fn decode_entry(key: &[u8]) -> Result<(u64, String), StorageError> {
    let corrupt = |detail: &str| StorageError::corrupt("decode ttl index key", detail);
    if key.len() < 8 {
        return Err(corrupt("shorter than 8 bytes"));
    }
    let (exp, path) = key.split_at(8);
    let exp = super::codec::decode_u64("ttl index key", exp)?;
    let path = std::str::from_utf8(path).map_err(|_| corrupt("path is not UTF-8"))?;
    Ok((exp, path.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemKv;

    #[test]
    fn first_is_earliest_then_smallest_key() {
        let mut kv = MemKv::new();
        insert(&mut kv, 300, "/a").unwrap();
        insert(&mut kv, 256, "/z").unwrap();
        insert(&mut kv, 256, "/b").unwrap();
        assert_eq!(first(&kv).unwrap(), Some((256, "/b".to_string())));
        remove(&mut kv, 256, "/b").unwrap();
        assert_eq!(first(&kv).unwrap(), Some((256, "/z".to_string())));
    }

    #[test]
    fn malformed_entry_is_corrupt() {
        let mut kv = MemKv::new();
        kv.put(Table::Ttl, b"abc", &[]).unwrap();
        assert!(first(&kv).is_err());
    }
}
