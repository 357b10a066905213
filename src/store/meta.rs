//! The store's etcd index counter, kept in `Table::StoreMeta` so that it commits with the
//! tree it counts and survives restarts; and the attributes members published.

use super::codec;
use super::kv::{KvRead, KvWrite, Table};
use crate::storage::StorageError;
use crate::util::clock::ClockAnchor;

const INDEX_KEY: &[u8] = b"etcd_index";
const CLOCK_KEY: &[u8] = b"cluster_clock";
const ANCHOR_KEY: &[u8] = b"cluster_clock_anchor";

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

/// Where this member's cluster clock stood against its monotonic clock at its last batch
/// (`None` before any).
pub fn clock_anchor<K: KvRead>(kv: &K) -> Result<Option<ClockAnchor>, StorageError> {
    let Some(bytes) = kv.get(Table::StoreMeta, ANCHOR_KEY)? else {
        return Ok(None);
    };
    let corrupt = || {
        StorageError::corrupt(
            "decode cluster clock anchor",
            format!("{} bytes, expected 33 ending in 0 or 1", bytes.len()),
        )
    };
    let arr: [u8; 33] = bytes.as_slice().try_into().map_err(|_| corrupt())?;
    let mut boot = [0u8; 16];
    boot.copy_from_slice(&arr[..16]);
    let fixed = match arr[32] {
        0 => false,
        1 => true,
        _ => return Err(corrupt()),
    };
    Ok(Some(ClockAnchor {
        boot: u128::from_be_bytes(boot),
        cluster: codec::decode_u64("cluster clock anchor", &arr[16..24])?,
        mono: codec::decode_u64("cluster clock anchor", &arr[24..32])?,
        fixed,
    }))
}

/// Records where this member's cluster clock stands (see [`clock_anchor`]).
pub fn set_clock_anchor<K: KvWrite>(kv: &mut K, anchor: &ClockAnchor) -> Result<(), StorageError> {
    let mut bytes = Vec::with_capacity(33);
    bytes.extend_from_slice(&anchor.boot.to_be_bytes());
    bytes.extend_from_slice(&anchor.cluster.to_be_bytes());
    bytes.extend_from_slice(&anchor.mono.to_be_bytes());
    bytes.push(u8::from(anchor.fixed));
    kv.put(Table::StoreMeta, ANCHOR_KEY, &bytes)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::kv::MemKv;

    #[test]
    fn clock_anchors_round_trip_and_bad_ones_are_corrupt() {
        let mut kv = MemKv::new();
        assert_eq!(clock_anchor(&kv).unwrap(), None);
        let a = ClockAnchor {
            boot: u128::MAX - 5,
            cluster: 1_700_000_000 * 1_000_000_000,
            mono: 42,
            fixed: true,
        };
        set_clock_anchor(&mut kv, &a).unwrap();
        assert_eq!(clock_anchor(&kv).unwrap(), Some(a));
        let b = ClockAnchor { fixed: false, ..a };
        set_clock_anchor(&mut kv, &b).unwrap();
        assert_eq!(clock_anchor(&kv).unwrap(), Some(b));
        kv.put(Table::StoreMeta, ANCHOR_KEY, &[1, 2, 3]).unwrap();
        assert!(clock_anchor(&kv).is_err());
        kv.put(Table::StoreMeta, ANCHOR_KEY, &[2; 33]).unwrap();
        assert!(clock_anchor(&kv).is_err(), "the flag byte is 0 or 1");
    }
}
