//! etcd's member and cluster ids (spec §10.6), so a test can check `X-Etcd-Cluster-Id`
//! against the value implied by a server's own peer URL and token. The derivation is pikv's
//! own (`pikv::node::bootstrap`); the differential test checks it against real etcd's
//! headers, and the spec's examples are checked here.

use pikv::node::bootstrap::{cluster_id, member_id};

/// (member id, cluster id) of a single-member cluster with the default token, as lower-case
/// hex without leading zeros (Go `FormatUint(id, 16)`).
pub fn single_member_ids(peer_url: &str) -> (String, String) {
    let m = member_id(&[peer_url.to_string()], "etcd-cluster");
    (format!("{m:x}"), format!("{:x}", cluster_id(&[m])))
}

#[test]
fn ids_match_the_spec_examples() {
    assert_eq!(
        single_member_ids("http://127.0.0.1:22380"),
        (
            "9e737febb6b99eee".to_string(),
            "c8730d66636ff140".to_string()
        )
    );
    let ids: Vec<u64> = [22380, 22480, 22580]
        .iter()
        .map(|p| member_id(&[format!("http://127.0.0.1:{p}")], "spec-tok"))
        .collect();
    let hex: Vec<String> = ids.iter().map(|id| format!("{id:x}")).collect();
    assert_eq!(
        hex,
        ["364f2848e9f1b81e", "e7fb0d6c1ed1d3a0", "6e7cf19eb1e64c36"]
    );
    assert_eq!(format!("{:x}", cluster_id(&ids)), "203f87d64785bd5a");
}
