//! Peer transport: how Raft messages reach other members. A single-member cluster has no
//! peers, so today the only implementation is [`NoPeers`]; the TCP transport (one smol
//! thread, a bounded queue per peer, the handshake) plugs in behind the same trait when
//! multi-member Raft lands. `frame` is the wire format's pure, bounded codec.

pub mod frame;

use crate::raft::NodeId;

/// Sends encoded Raft messages to peers without ever blocking the node thread.
pub trait Transport: Send {
    /// Queues `payload` for `to`; a full queue or an unknown peer drops it (Raft retries).
    fn send(&mut self, to: NodeId, payload: Vec<u8>);
    /// Peers that could not be reached since the last call (fed back to the core).
    fn unreachable(&mut self) -> Vec<NodeId>;
}

/// The transport of a member that is the whole cluster.
#[derive(Debug, Default)]
pub struct NoPeers;

impl Transport for NoPeers {
    fn send(&mut self, to: NodeId, _payload: Vec<u8>) {
        log::warn!("dropping a message to {to:x}: this member has no peers");
    }

    fn unreachable(&mut self) -> Vec<NodeId> {
        Vec::new()
    }
}
