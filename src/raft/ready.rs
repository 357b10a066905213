//! The contract between the pure core and the loop that does its I/O.

use super::message::{Entry, HardState, Message};

/// What the core asks its driver to do, in this order:
/// 1. persist `hard_state` (if any) and append `entries` durably. Appending entries also
///    removes every durable entry after the last of them: they are the remains of a log tail
///    a newer leader overwrote;
/// 2. apply `committed_entries` to the state machine. Entries in `committed_entries` may be
///    among this same `entries` (a single voter commits what it has made durable; a follower
///    may learn an entry and its commit in one message): the driver must then apply them in
///    the same atomic durable commit as the append, so an applied entry is never durable
///    without the entry itself;
/// 3. report the outcome with [`super::Raft::advance`] (or [`super::Raft::persist_failed`]).
///    Until then [`super::Raft::ready`] hands out nothing new.
///
/// `messages` and `read_states` need not wait for step 1: the core holds back every message
/// that depends on durability (vote grants, append acknowledgements) until `advance` reports
/// the state it depends on durable, and releases it in a later Ready (or through
/// [`super::Raft::take_messages`]). So the driver may send `messages` at once, and a leader
/// replicates to its followers while its own fsync runs (Raft thesis §10.2.1).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ready {
    /// New hard state to persist, if it changed.
    pub hard_state: Option<HardState>,
    /// Entries to append to the durable log, in index order.
    pub entries: Vec<Entry>,
    /// Entries to apply, in index order; all are committed once step 1 is durable.
    pub committed_entries: Vec<Entry>,
    /// Messages to peers; they may be sent before step 1 (see the type's docs).
    pub messages: Vec<Message>,
    /// Answers to ReadIndex requests: each read is linearizable once `index` is applied.
    pub read_states: Vec<ReadState>,
}

impl Ready {
    /// Whether there is nothing to do.
    pub fn is_empty(&self) -> bool {
        !self.needs_persist() && self.messages.is_empty() && self.read_states.is_empty()
    }

    /// Whether the Ready holds work for the disk (steps 1 and 2). A Ready without it has
    /// nothing to make durable, and the driver may call `advance` at once.
    pub fn needs_persist(&self) -> bool {
        self.hard_state.is_some() || !self.entries.is_empty() || !self.committed_entries.is_empty()
    }
}

/// A confirmed ReadIndex request: once this member has applied `index`, a read of its state
/// machine observes every write committed before `read_index(ctx)` was called.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadState {
    /// The context the request was made with.
    pub ctx: u64,
    /// The commit index the read must wait for.
    pub index: u64,
}

/// What the driver reports back after handling a [`Ready`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Persisted {
    /// Highest log index now durable: the last of the Ready's entries (or, when it had none,
    /// the value reported before).
    pub durable_index: u64,
    /// Highest index now applied (durably).
    pub applied_index: u64,
}
