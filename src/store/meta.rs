//! The store's etcd index counter, kept in `Table::StoreMeta` so that it commits with the
//! tree it counts and survives restarts; and the attributes members published.

use super::codec;
use super::kv::{KvRead, KvWrite, Table};
use crate::storage::StorageError;

const INDEX_KEY: &[u8] = b"etcd_index";
const CLOCK_KEY: &[u8] = b"cluster_clock";

/// The highest cluster time a `Sync` entry carried (0 before any).
pub fn clock<K: KvRead>(kv: &K) -> Result<u64, StorageError> {
    kv.get(Table::StoreMeta, CLOCK_KEY)?
        .map_or(Ok(0), |bytes| codec::decode_u64("cluster clock", &bytes))
}

/// Records that the log reached cluster time `now` (kept if it is older than what is there:
/// cluster time never goes back).
pub fn advance_clock<K: KvWrite>(kv: &mut K, now: u64) -> Result<(), StorageError> {
    if now > clock(kv)? {
        kv.put(Table::StoreMeta, CLOCK_KEY, &now.to_be_bytes())?;
    }
    Ok(())
}

/// The current etcd index (0 for a fresh store).
pub fn index<K: KvRead>(kv: &K) -> Result<u64, StorageError> {
    kv.get(Table::StoreMeta, INDEX_KEY)?
        .map_or(Ok(0), |bytes| codec::decode_u64("etcd index", &bytes))
}

/// Records a new current etcd index.
pub fn set_index<K: KvWrite>(kv: &mut K, index: u64) -> Result<(), StorageError> {
    kv.put(Table::StoreMeta, INDEX_KEY, &index.to_be_bytes())
}

const MEMBER_PREFIX: &[u8] = b"member/";

fn member_key(member: u64) -> Vec<u8> {
    let mut k = MEMBER_PREFIX.to_vec();
    k.extend_from_slice(&member.to_be_bytes());
    k
}

/// What a member published about itself: (name, client URLs).
pub type MemberAttributes = (String, Vec<String>);

/// Records what `member` published.
pub fn set_member<K: KvWrite>(
    kv: &mut K,
    member: u64,
    name: &str,
    client_urls: &[String],
) -> Result<(), StorageError> {
    let attrs: MemberAttributes = (name.to_string(), client_urls.to_vec());
    let bytes = crate::storage::format::encode("member attributes", &attrs)?;
    kv.put(Table::StoreMeta, &member_key(member), &bytes)
}

/// Every member's published attributes, by member id.
pub fn members<K: KvRead>(
    kv: &K,
) -> Result<std::collections::BTreeMap<u64, MemberAttributes>, StorageError> {
    let mut raw = Vec::new();
    let mut end = MEMBER_PREFIX.to_vec();
    if let Some(last) = end.last_mut() {
        *last += 1;
    }
    kv.scan(Table::StoreMeta, MEMBER_PREFIX, Some(&end), &mut |k, v| {
        raw.push((k.to_vec(), v.to_vec()));
        true
    })?;
    let mut out = std::collections::BTreeMap::new();
    for (k, v) in raw {
        let Ok(id) = <[u8; 8]>::try_from(&k[MEMBER_PREFIX.len()..]) else {
            continue;
        };
        let attrs: MemberAttributes = crate::storage::format::decode("member attributes", &v)?;
        out.insert(u64::from_be_bytes(id), attrs);
    }
    Ok(out)
}
