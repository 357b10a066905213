//! The contract between the pure core and the loop that does its I/O.

use super::message::{Entry, HardState};

/// What the core asks its driver to do, in this order:
/// 1. persist `hard_state` (if any) and append `entries` durably;
/// 2. apply `committed_entries` to the state machine. Entries in `committed_entries` may be
///    among this same `entries` (a single voter commits what it has made durable): the driver
///    must then apply them in the same atomic durable commit as the append, so an applied
///    entry is never durable without the entry itself;
/// 3. report the outcome with [`super::Raft::advance`] (or [`super::Raft::persist_failed`]).
///
/// Messages to peers (multi-member clusters) will be sent after step 1.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ready {
    /// New hard state to persist, if it changed.
    pub hard_state: Option<HardState>,
    /// Entries to append to the durable log, in index order.
    pub entries: Vec<Entry>,
    /// Entries to apply, in index order; all are committed once step 1 is durable.
    pub committed_entries: Vec<Entry>,
}

impl Ready {
    /// Whether there is nothing to do.
    pub fn is_empty(&self) -> bool {
        self.hard_state.is_none() && self.entries.is_empty() && self.committed_entries.is_empty()
    }
}

/// What the driver reports back after handling a [`Ready`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Persisted {
    /// Highest log index now durable.
    pub durable_index: u64,
    /// Highest index now applied (durably).
    pub applied_index: u64,
}
