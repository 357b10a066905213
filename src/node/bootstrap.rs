//! Member and cluster ids derived exactly as etcd derives them (spec §10.6), so that
//! `X-Etcd-Cluster-Id` and member ids match etcd's for the same flags.

use crate::util::sha1::sha1;

fn first_u64(digest: &[u8; 20]) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&digest[..8]);
    u64::from_be_bytes(b)
}

/// A member id: SHA-1 of the sorted peer URLs concatenated, then the cluster token.
pub fn member_id(peer_urls: &[String], token: &str) -> u64 {
    let mut urls: Vec<&str> = peer_urls.iter().map(String::as_str).collect();
    urls.sort_unstable();
    let mut data = urls.concat().into_bytes();
    data.extend_from_slice(token.as_bytes());
    first_u64(&sha1(&data))
}

/// The cluster id: SHA-1 of the sorted member ids as 8-byte big-endian values.
pub fn cluster_id(member_ids: &[u64]) -> u64 {
    let mut ids = member_ids.to_vec();
    ids.sort_unstable();
    let data: Vec<u8> = ids.iter().flat_map(|id| id.to_be_bytes()).collect();
    first_u64(&sha1(&data))
}

/// Groups `--initial-cluster` pairs by name (a name may repeat to give several peer URLs)
/// and returns (name, member id, peer URLs) sorted by id.
pub fn initial_members(pairs: &[(String, String)], token: &str) -> Vec<(String, u64, Vec<String>)> {
    let mut by_name: std::collections::BTreeMap<&str, Vec<String>> = Default::default();
    for (name, url) in pairs {
        by_name.entry(name.as_str()).or_default().push(url.clone());
    }
    let mut out: Vec<(String, u64, Vec<String>)> = by_name
        .into_iter()
        .map(|(name, mut urls)| {
            urls.sort();
            let id = member_id(&urls, token);
            (name.to_string(), id, urls)
        })
        .collect();
    out.sort_by_key(|m| m.1);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_match_etcd_single_member() {
        let id = member_id(&["http://127.0.0.1:22380".to_string()], "etcd-cluster");
        assert_eq!(format!("{id:x}"), "9e737febb6b99eee");
        assert_eq!(format!("{:x}", cluster_id(&[id])), "c8730d66636ff140");
    }

    #[test]
    fn ids_match_etcd_three_members() {
        let pairs: Vec<(String, String)> = [("a", 22380), ("b", 22480), ("c", 22580)]
            .iter()
            .map(|(n, p)| (n.to_string(), format!("http://127.0.0.1:{p}")))
            .collect();
        let members = initial_members(&pairs, "spec-tok");
        let hex: Vec<String> = members
            .iter()
            .map(|m| format!("{}={:x}", m.0, m.1))
            .collect();
        assert_eq!(
            hex,
            [
                "a=364f2848e9f1b81e",
                "c=6e7cf19eb1e64c36",
                "b=e7fb0d6c1ed1d3a0"
            ]
        );
        let ids: Vec<u64> = members.iter().map(|m| m.1).collect();
        assert_eq!(format!("{:x}", cluster_id(&ids)), "203f87d64785bd5a");
    }
}
