//! What the Raft core persists and exchanges: entries and the hard state. Fixed-width
//! integers only, since these reach the disk (and, later, the wire) on 32- and 64-bit boards.

use bincode::{Decode, Encode};

/// A member id (etcd's 64-bit member id).
pub type NodeId = u64;

/// One log entry.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub struct Entry {
    /// The term the entry was proposed in.
    pub term: u64,
    /// Its position in the log (first entry is 1).
    pub index: u64,
    /// What the entry carries.
    pub payload: Payload,
}

/// The content of an entry.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub enum Payload {
    /// The no-op a new leader appends to commit entries of earlier terms (Raft §5.4.2).
    Empty,
    /// An encoded state-machine command.
    Command(Vec<u8>),
}

/// The state that must be durable before a vote is answered or an entry acknowledged.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Encode, Decode)]
pub struct HardState {
    /// Current term.
    pub term: u64,
    /// Who this member voted for in `term` (0 = nobody).
    pub vote: NodeId,
    /// Highest index known committed.
    pub commit: u64,
}
