//! The etcd v2 store: the state machine the Raft log is applied to.
//!
//! All state (tree, expiry index, event history, etcd index) lives in the [`KvWrite`] the
//! caller passes, so applying shares the storage batch's one commit and a restart needs no
//! rebuilding; [`V2Store`] itself holds only the statistics counters.

mod codec;
pub mod command;
pub mod error;
pub mod event;
pub mod history;
pub mod kv;
mod meta;
mod ops;
pub mod path;
pub mod stats;
mod tree;
mod ttl;

#[cfg(test)]
mod tests;

pub use command::Command;
pub use error::V2Error;
pub use event::{Action, Event, NodeView};
pub use history::HISTORY_LEN;
pub use kv::{KvRead, KvWrite, MemKv, Table};
pub use stats::StoreStatsSnapshot;

use crate::storage::StorageError;
use stats::{Counter, Stats};
use tree::Fault;

/// Result of applying one state change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    /// The event the change produced.
    pub event: Event,
    /// Every key removed: for a delete or expiry, the node and (for a directory) every node
    /// of its subtree, hidden ones included, parents first; empty for other changes. The
    /// watch hub notifies watchers registered on these keys.
    pub removed: Vec<String>,
}

/// The v2 store over a [`KvRead`]/[`KvWrite`]: deterministic apply, reads, and counters.
#[derive(Debug, Default)]
pub struct V2Store {
    stats: Stats,
}

impl V2Store {
    /// A store with zeroed counters (its data is whatever the Kv holds).
    pub fn new() -> V2Store {
        V2Store::default()
    }

    /// Applies a command. Outer `Err` = storage failure (abort the batch). Inner `Err` = etcd
    /// error carrying the current etcd index; a failed command changes nothing.
    ///
    /// Non-`Sync` commands yield exactly one [`Applied`] on success; `Sync` yields one
    /// `expire` [`Applied`] per expired node, in expiration order, each with a new index.
    pub fn apply<K: KvWrite>(
        &self,
        kv: &mut K,
        cmd: &Command,
    ) -> Result<Result<Vec<Applied>, V2Error>, StorageError> {
        let cur = meta::index(kv)?;
        let (ok, fail) = counters(cmd);
        match ops::apply(kv, cmd, cur) {
            Ok(applied) => {
                let n = if ok == Counter::ExpireCount || applied.is_empty() {
                    applied.len() as u64
                } else {
                    1
                };
                self.stats.add_pending(ok, n);
                Ok(Ok(applied))
            }
            Err(Fault::Etcd(code, cause)) => {
                self.stats.add_pending(fail, 1);
                Ok(Err(V2Error::new(code, cause, cur)))
            }
            Err(Fault::Storage(e)) => Err(e),
        }
    }

    /// The cluster time the applied log has reached (the newest `Sync`; 0 before any).
    pub fn clock<K: KvRead>(kv: &K) -> Result<u64, StorageError> {
        meta::clock(kv)
    }

    /// Where this member's cluster clock stood at its last batch (see
    /// [`crate::util::clock::ClusterClock::resume`]).
    pub fn clock_anchor<K: KvRead>(
        kv: &K,
    ) -> Result<Option<crate::util::clock::ClockAnchor>, StorageError> {
        meta::clock_anchor(kv)
    }

    /// Records where this member's cluster clock stands, in the batch's transaction.
    pub fn set_clock_anchor<K: KvWrite>(
        kv: &mut K,
        anchor: &crate::util::clock::ClockAnchor,
    ) -> Result<(), StorageError> {
        meta::set_clock_anchor(kv, anchor)
    }

    /// What every member published about itself (`Command::Publish`), by member id.
    pub fn members<K: KvRead>(
        kv: &K,
    ) -> Result<std::collections::BTreeMap<u64, meta::MemberAttributes>, StorageError> {
        meta::members(kv)
    }

    /// A read (GET) of `key`. Nodes whose expiration has passed but that no `Sync` has
    /// removed yet are still returned. `sorted` needs no work: listings come out byte-wise
    /// ascending by key, which is etcd's sorted order and an allowed unsorted one.
    pub fn get<K: KvRead>(
        &self,
        kv: &K,
        key: &str,
        recursive: bool,
        sorted: bool,
    ) -> Result<Result<Event, V2Error>, StorageError> {
        let _ = sorted;
        let cur = meta::index(kv)?;
        match read(kv, key, recursive, cur) {
            Ok(event) => {
                self.stats.add(Counter::GetsSuccess, 1);
                Ok(Ok(event))
            }
            Err(Fault::Etcd(code, cause)) => {
                self.stats.add(Counter::GetsFail, 1);
                Ok(Err(V2Error::new(code, cause, cur)))
            }
            Err(Fault::Storage(e)) => Err(e),
        }
    }

    /// The store's current etcd index (0 for a fresh store).
    pub fn current_index<K: KvRead>(kv: &K) -> Result<u64, StorageError> {
        meta::index(kv)
    }

    /// Earliest expiration of any node with a TTL (`None` if there is none): the node loop
    /// proposes `Sync` once this time has come.
    pub fn next_expiration<K: KvRead>(kv: &K) -> Result<Option<u64>, StorageError> {
        Ok(ttl::first(kv)?.map(|(exp, _)| exp))
    }

    /// Encodes the events `cmd` produced, for its log record.
    pub fn encode_history<'a>(
        events: impl IntoIterator<Item = &'a Event>,
        cmd: &Command,
    ) -> Result<Vec<u8>, StorageError> {
        history::encode(events, cmd)
    }

    /// Decodes what [`V2Store::encode_history`] wrote for `cmd`.
    pub fn decode_history(bytes: &[u8], cmd: &Command) -> Result<Vec<Event>, StorageError> {
        history::decode(bytes, cmd)
    }

    /// The transaction of the commands applied since the last call committed: their counts
    /// show in [`V2Store::stats`] from now on.
    pub fn batch_committed(&self) {
        self.stats.commit_pending();
    }

    /// The transaction of the commands applied since the last call failed: nothing of it
    /// happened, so nothing of it is counted.
    pub fn batch_failed(&self) {
        self.stats.discard_pending();
    }

    /// The counters of `/v2/stats/store` (without `watchers`).
    pub fn stats(&self) -> StoreStatsSnapshot {
        self.stats.snapshot()
    }
}

fn read<K: KvRead>(kv: &K, key: &str, recursive: bool, cur: u64) -> Result<Event, Fault> {
    let node = tree::lookup(kv, key)?;
    let mut view = node.view(key);
    if node.dir {
        view.nodes = tree::listing(kv, key, recursive)?;
    }
    Ok(Event {
        action: Action::Get,
        node: view,
        prev_node: None,
        etcd_index: cur,
        refresh: false,
    })
}

/// The (success, failure) counters of a command, as etcd's store counts them.
fn counters(cmd: &Command) -> (Counter, Counter) {
    use Counter::*;
    match cmd {
        Command::Set { .. } => (SetsSuccess, SetsFail),
        Command::Create { .. } | Command::CreateInOrder { .. } => (CreateSuccess, CreateFail),
        Command::Update { .. } => (UpdateSuccess, UpdateFail),
        Command::CompareAndSwap { .. } => (CompareAndSwapSuccess, CompareAndSwapFail),
        Command::Delete { .. } => (DeleteSuccess, DeleteFail),
        Command::CompareAndDelete { .. } => (CompareAndDeleteSuccess, CompareAndDeleteFail),
        // Sync cannot fail with an etcd error; the second entry is never used.
        Command::Sync { .. } => (ExpireCount, ExpireCount),
        // Nothing etcd's store counts; a publish yields no Applied, so adds 0.
        Command::Publish { .. } => (ExpireCount, ExpireCount),
    }
}
