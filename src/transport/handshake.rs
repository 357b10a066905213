//! The peer handshake: the first frame on every outbound connection says who is calling whom
//! in which cluster, and the acceptor answers yes or no with a reason. It is what keeps a
//! member of another cluster, a misrouted connection or a newer protocol from feeding this
//! member's Raft, and what lets both ends log *why* in one line. Pure: no sockets here.
//!
//! Wire stability: `Hello` always starts with `magic` and `protocol`, and `HelloReply` keeps
//! its shape, in every protocol version, so that a member can always tell a peer of another
//! version "wrong protocol" instead of failing to decode it.

use crate::raft::NodeId;
use bincode::{Decode, Encode};

/// The first four bytes of every `Hello`: this is a pikv peer, not a stray client.
pub const MAGIC: [u8; 4] = *b"pikv";
/// The peer protocol this build speaks: frames of bincode `Vec<Message>` after a `Hello`.
/// Bump it when the message encoding changes (2: appends carry the leader's cluster time).
pub const PROTOCOL_VERSION: u32 = 2;
/// The longest refusal reason sent or accepted, in bytes: enough for one log line.
pub const REASON_BYTES_MAX: usize = 256;
/// The largest handshake payload either side reads. Checked before anything is allocated,
/// so a connection that has not said who it is costs a few hundred bytes at most.
pub const HANDSHAKE_PAYLOAD_BYTES_MAX: usize = 512;

// Handshake payloads are tiny: the limit bounds what a hostile length prefix (the reason's)
// can make the decoder allocate.
const CONFIG: bincode::config::Configuration<
    bincode::config::LittleEndian,
    bincode::config::Varint,
    bincode::config::Limit<HANDSHAKE_PAYLOAD_BYTES_MAX>,
> = bincode::config::standard().with_limit::<HANDSHAKE_PAYLOAD_BYTES_MAX>();

const _: () = assert!(REASON_BYTES_MAX + 16 <= HANDSHAKE_PAYLOAD_BYTES_MAX);

/// What the dialer says first on a new outbound connection.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub struct Hello {
    /// Always [`MAGIC`].
    pub magic: [u8; 4],
    /// The dialer's [`PROTOCOL_VERSION`].
    pub protocol: u32,
    /// The dialer's cluster id.
    pub cluster_id: u64,
    /// The dialer's member id: every message on this connection must be from it.
    pub from: NodeId,
    /// The member the dialer means to reach: a stale address book or a reused port shows up
    /// as a mismatch here instead of as messages for someone else.
    pub to: NodeId,
}

/// The acceptor's answer to a [`Hello`]. After a refusal the acceptor closes the connection.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub struct HelloReply {
    /// Whether the connection may carry messages.
    pub accepted: bool,
    /// Why not (empty when accepted); at most [`REASON_BYTES_MAX`] bytes.
    pub reason: String,
}

/// What an acceptor knows to judge a [`Hello`].
#[derive(Debug, Clone, Copy)]
pub struct Expect<'a> {
    /// This member's cluster id.
    pub cluster_id: u64,
    /// This member's id.
    pub member_id: NodeId,
    /// The members this one may hear from.
    pub peers: &'a [NodeId],
}

impl Hello {
    /// The hello of member `from` of cluster `cluster_id`, calling member `to`.
    pub fn new(cluster_id: u64, from: NodeId, to: NodeId) -> Hello {
        Hello {
            magic: MAGIC,
            protocol: PROTOCOL_VERSION,
            cluster_id,
            from,
            to,
        }
    }

    /// The handshake payload (to be framed).
    pub fn encode(&self) -> Vec<u8> {
        // Encoding these fixed-size fields into a Vec cannot fail.
        bincode::encode_to_vec(self, CONFIG).unwrap_or_default()
    }

    /// Decodes a handshake payload. The prefix is read first, so a peer of another protocol
    /// is told so even when the rest of its hello has another shape.
    pub fn decode(payload: &[u8]) -> Result<Hello, String> {
        let ((magic, protocol), _): (([u8; 4], u32), usize) =
            bincode::decode_from_slice(payload, CONFIG)
                .map_err(|e| format!("not a pikv peer hello: {e}"))?;
        if magic != MAGIC {
            return Err(format!("not a pikv peer (hello starts with {magic:02x?})"));
        }
        if protocol != PROTOCOL_VERSION {
            return Err(format!(
                "peer speaks pikv peer protocol {protocol}, this member speaks {PROTOCOL_VERSION}"
            ));
        }
        let (hello, used): (Hello, usize) = bincode::decode_from_slice(payload, CONFIG)
            .map_err(|e| format!("malformed peer hello: {e}"))?;
        if used != payload.len() {
            return Err(format!(
                "malformed peer hello: {} bytes after it",
                payload.len() - used
            ));
        }
        Ok(hello)
    }

    /// Whether an acceptor should take this connection: `Err` carries the reason, said in
    /// the acceptor's terms, for its log and for the dialer's.
    pub fn check(&self, expect: &Expect<'_>) -> Result<(), String> {
        // Magic and protocol were checked by decode; checking again keeps `check` whole for
        // a hello built by other means.
        if self.magic != MAGIC {
            return Err("not a pikv peer".to_string());
        }
        if self.protocol != PROTOCOL_VERSION {
            return Err(format!(
                "peer speaks pikv peer protocol {}, this member speaks {PROTOCOL_VERSION}",
                self.protocol
            ));
        }
        if self.cluster_id != expect.cluster_id {
            return Err(format!(
                "member {:x} belongs to cluster {:x}, this is cluster {:x}",
                self.from, self.cluster_id, expect.cluster_id
            ));
        }
        if self.to != expect.member_id {
            return Err(format!(
                "the connection is for member {:x}, this is member {:x}",
                self.to, expect.member_id
            ));
        }
        if !expect.peers.contains(&self.from) {
            return Err(format!(
                "member {:x} is not a peer of member {:x} in cluster {:x}",
                self.from, expect.member_id, expect.cluster_id
            ));
        }
        Ok(())
    }
}

/// What a refusal says when the dialer was removed from the cluster: the dialer recognises
/// it and stops (etcd's removed member hears the same from its peers and exits).
const REMOVED: &str = "has been permanently removed from the cluster";

/// The refusal of member `from`, removed from cluster `cluster_id`.
pub fn removed_reason(from: NodeId, cluster_id: u64) -> String {
    format!("member {from:x} {REMOVED} {cluster_id:x}")
}

/// Whether a refusal says the dialer was removed.
pub fn says_removed(reason: &str) -> bool {
    reason.contains(REMOVED)
}

impl HelloReply {
    /// The connection is taken.
    pub fn accept() -> HelloReply {
        HelloReply {
            accepted: true,
            reason: String::new(),
        }
    }

    /// The connection is refused for `reason`, cut to [`REASON_BYTES_MAX`] bytes.
    pub fn refuse(reason: &str) -> HelloReply {
        HelloReply {
            accepted: false,
            reason: bounded(reason),
        }
    }

    /// The handshake payload (to be framed).
    pub fn encode(&self) -> Vec<u8> {
        // The reason is bounded, so this always fits the limit; an empty payload would be
        // refused by the dialer, which is the safe side.
        bincode::encode_to_vec(self, CONFIG).unwrap_or_default()
    }

    /// Decodes a handshake reply. The reason comes from the network: it is bounded and its
    /// control characters are replaced, since it goes into this member's log.
    pub fn decode(payload: &[u8]) -> Result<HelloReply, String> {
        let (reply, used): (HelloReply, usize) = bincode::decode_from_slice(payload, CONFIG)
            .map_err(|e| format!("malformed handshake reply: {e}"))?;
        if used != payload.len() {
            return Err(format!(
                "malformed handshake reply: {} bytes after it",
                payload.len() - used
            ));
        }
        if reply.reason.len() > REASON_BYTES_MAX {
            return Err(format!(
                "handshake reply reason of {} bytes exceeds {REASON_BYTES_MAX}",
                reply.reason.len()
            ));
        }
        Ok(HelloReply {
            accepted: reply.accepted,
            reason: reply
                .reason
                .chars()
                .map(|c| if c.is_control() { '?' } else { c })
                .collect(),
        })
    }
}

/// `text` cut to at most [`REASON_BYTES_MAX`] bytes at a character boundary.
fn bounded(text: &str) -> String {
    let mut end = text.len().min(REASON_BYTES_MAX);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    const PEERS: &[NodeId] = &[0xa1, 0xa2];

    fn expect() -> Expect<'static> {
        Expect {
            cluster_id: 0xc1,
            member_id: 0xa0,
            peers: PEERS,
        }
    }

    #[test]
    fn hello_round_trips_and_a_good_one_is_accepted() {
        let h = Hello::new(0xc1, 0xa1, 0xa0);
        let back = Hello::decode(&h.encode()).unwrap();
        assert_eq!(back, h);
        assert_eq!(back.check(&expect()), Ok(()));
    }

    // Each refusal names both sides, so one log line on either member explains it.
    #[test]
    fn refusals_say_why() {
        let other_cluster = Hello::new(0xc2, 0xa1, 0xa0).check(&expect());
        assert_eq!(
            other_cluster,
            Err("member a1 belongs to cluster c2, this is cluster c1".into())
        );
        let misrouted = Hello::new(0xc1, 0xa1, 0xa9).check(&expect());
        assert_eq!(
            misrouted,
            Err("the connection is for member a9, this is member a0".into())
        );
        let stranger = Hello::new(0xc1, 0xa7, 0xa0).check(&expect());
        assert_eq!(
            stranger,
            Err("member a7 is not a peer of member a0 in cluster c1".into())
        );
        let myself = Hello::new(0xc1, 0xa0, 0xa0).check(&expect());
        assert!(myself.is_err());
    }

    #[test]
    fn other_protocols_and_strangers_are_told_apart() {
        let mut h = Hello::new(0xc1, 0xa1, 0xa0);
        h.protocol = PROTOCOL_VERSION + 1;
        let mut payload = h.encode();
        // A later protocol may add fields: the version is still reported.
        payload.extend_from_slice(&[1, 2, 3]);
        assert_eq!(
            Hello::decode(&payload),
            Err(format!(
                "peer speaks pikv peer protocol {}, this member speaks {PROTOCOL_VERSION}",
                PROTOCOL_VERSION + 1
            ))
        );
        let err = Hello::decode(b"GET / HTTP/1.1\r\n").unwrap_err();
        assert!(err.starts_with("not a pikv peer"), "{err}");
        assert!(Hello::decode(b"").is_err());
        let mut long = Hello::new(0xc1, 0xa1, 0xa0).encode();
        long.push(0);
        assert!(Hello::decode(&long).is_err());
    }

    #[test]
    fn reasons_are_bounded_both_ways() {
        let reply = HelloReply::refuse(&"é".repeat(REASON_BYTES_MAX));
        assert!(reply.reason.len() <= REASON_BYTES_MAX);
        let back = HelloReply::decode(&reply.encode()).unwrap();
        assert_eq!(back, reply);
        // A hostile acceptor: an oversized reason, a huge length prefix, control characters.
        let fat = HelloReply {
            accepted: false,
            reason: "x".repeat(REASON_BYTES_MAX + 1),
        };
        let fat = bincode::encode_to_vec(&fat, bincode::config::standard()).unwrap();
        assert!(HelloReply::decode(&fat).is_err());
        let mut huge = vec![0u8, 253];
        huge.extend_from_slice(&u64::MAX.to_le_bytes());
        assert!(HelloReply::decode(&huge).is_err());
        let ansi = HelloReply::refuse("no\x1b[2J\nthanks");
        assert_eq!(
            HelloReply::decode(&ansi.encode()).unwrap().reason,
            "no?[2J?thanks"
        );
        assert!(
            HelloReply::decode(&HelloReply::accept().encode())
                .unwrap()
                .accepted
        );
    }

    #[test]
    fn random_bytes_never_panic() {
        let mut seed = 7u64;
        for _ in 0..5000 {
            let bytes: Vec<u8> = (0..(seed % 48) as usize)
                .map(|_| {
                    seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
                    (seed >> 56) as u8
                })
                .collect();
            let _ = Hello::decode(&bytes);
            let _ = HelloReply::decode(&bytes);
        }
    }
}
