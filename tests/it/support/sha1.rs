//! SHA-1 (FIPS 180-1), just enough to derive etcd's member and cluster ids (spec §10.6)
//! so a test can check `X-Etcd-Cluster-Id` against the value implied by a server's own
//! peer URL and token.

pub fn sha1(data: &[u8]) -> [u8; 20] {
    let mut h: [u32; 5] = [0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476, 0xC3D2E1F0];
    let mut msg = data.to_vec();
    let bit_len = (data.len() as u64).wrapping_mul(8);
    msg.push(0x80);
    while msg.len() % 64 != 56 {
        msg.push(0);
    }
    msg.extend_from_slice(&bit_len.to_be_bytes());
    for block in msg.chunks(64) {
        let mut w = [0u32; 80];
        for (i, word) in block.chunks(4).enumerate() {
            w[i] = u32::from_be_bytes([word[0], word[1], word[2], word[3]]);
        }
        for i in 16..80 {
            w[i] = (w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16]).rotate_left(1);
        }
        let (mut a, mut b, mut c, mut d, mut e) = (h[0], h[1], h[2], h[3], h[4]);
        for (i, wi) in w.iter().enumerate() {
            let (f, k) = match i {
                0..=19 => ((b & c) | (!b & d), 0x5A827999),
                20..=39 => (b ^ c ^ d, 0x6ED9EBA1),
                40..=59 => ((b & c) | (b & d) | (c & d), 0x8F1BBCDC),
                _ => (b ^ c ^ d, 0xCA62C1D6),
            };
            let t = a
                .rotate_left(5)
                .wrapping_add(f)
                .wrapping_add(e)
                .wrapping_add(k)
                .wrapping_add(*wi);
            e = d;
            d = c;
            c = b.rotate_left(30);
            b = a;
            a = t;
        }
        h[0] = h[0].wrapping_add(a);
        h[1] = h[1].wrapping_add(b);
        h[2] = h[2].wrapping_add(c);
        h[3] = h[3].wrapping_add(d);
        h[4] = h[4].wrapping_add(e);
    }
    let mut out = [0u8; 20];
    for (i, v) in h.iter().enumerate() {
        out[i * 4..i * 4 + 4].copy_from_slice(&v.to_be_bytes());
    }
    out
}

fn first8(d: [u8; 20]) -> u64 {
    u64::from_be_bytes(d[..8].try_into().unwrap())
}

/// Member id of an initial member: SHA-1(sorted peer URLs concatenated + token), first 8 bytes.
pub fn member_id(peer_urls: &[&str], token: &str) -> u64 {
    let mut urls: Vec<&str> = peer_urls.to_vec();
    urls.sort();
    let mut b = urls.concat().into_bytes();
    b.extend_from_slice(token.as_bytes());
    first8(sha1(&b))
}

/// Cluster id: SHA-1 of the sorted 8-byte big-endian member ids, first 8 bytes.
pub fn cluster_id(member_ids: &[u64]) -> u64 {
    let mut ids = member_ids.to_vec();
    ids.sort();
    let mut b = Vec::new();
    for id in ids {
        b.extend_from_slice(&id.to_be_bytes());
    }
    first8(sha1(&b))
}

/// (member id, cluster id) of a single-member cluster with the default token, as lower-case
/// hex without leading zeros (Go `FormatUint(id, 16)`).
pub fn single_member_ids(peer_url: &str) -> (String, String) {
    let m = member_id(&[peer_url], "etcd-cluster");
    (format!("{m:x}"), format!("{:x}", cluster_id(&[m])))
}

#[test]
fn sha1_and_ids_match_the_spec_examples() {
    let hex: String = sha1(b"abc").iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(hex, "a9993e364706816aba3e25717850c26c9cd0d89d");
    assert_eq!(
        single_member_ids("http://127.0.0.1:22380"),
        (
            "9e737febb6b99eee".to_string(),
            "c8730d66636ff140".to_string()
        )
    );
    let urls = [
        "http://127.0.0.1:22380",
        "http://127.0.0.1:22480",
        "http://127.0.0.1:22580",
    ];
    let ids: Vec<u64> = urls.iter().map(|u| member_id(&[u], "spec-tok")).collect();
    assert_eq!(format!("{:x}", ids[0]), "364f2848e9f1b81e");
    assert_eq!(format!("{:x}", ids[1]), "e7fb0d6c1ed1d3a0");
    assert_eq!(format!("{:x}", ids[2]), "6e7cf19eb1e64c36");
    assert_eq!(format!("{:x}", cluster_id(&ids)), "203f87d64785bd5a");
}
