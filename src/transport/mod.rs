//! Peer transport: how Raft messages reach other members. [`tcp`] is the real one (one smol
//! thread, a bounded queue per peer, the handshake); [`NoPeers`] serves a member that is the
//! whole cluster. `frame` is the wire format's pure, bounded codec.

pub mod codec;
pub mod frame;
pub mod handshake;
pub mod tcp;

use crate::raft::{Message, NodeId};

/// Sends Raft messages to peers without ever blocking the node thread.
pub trait Transport: Send {
    /// Queues `messages` (each for its `to`); a full queue or an unknown peer drops what does
    /// not fit (Raft retries) and counts the peer as unreachable.
    fn send(&mut self, messages: Vec<Message>);
    /// Peers that could not be reached since the last call (fed back to the core).
    fn unreachable(&mut self) -> Vec<NodeId>;
    /// Makes `peers` (every other member with its peer URLs) the peers: new ones are
    /// dialled and accepted, gone ones dropped, those whose URLs changed redialled. A
    /// member whose URLs cannot be dialled is left out with the reason returned.
    fn set_peers(&mut self, peers: &[(NodeId, Vec<String>)]) -> Result<(), String>;
}

/// The transport of a member that is the whole cluster.
#[derive(Debug, Default)]
pub struct NoPeers;

impl Transport for NoPeers {
    fn send(&mut self, messages: Vec<Message>) {
        for m in messages {
            log::warn!("dropping a message to {:x}: this member has no peers", m.to);
        }
    }

    fn unreachable(&mut self) -> Vec<NodeId> {
        Vec::new()
    }

    fn set_peers(&mut self, peers: &[(NodeId, Vec<String>)]) -> Result<(), String> {
        if peers.is_empty() {
            Ok(())
        } else {
            Err("this member was started as the whole cluster and listens for no peers: restart it to reach the members added since".into())
        }
    }
}
