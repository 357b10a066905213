//! The storage thread's unit of work: one Ready written as one transaction — append the
//! entries, apply the committed ones to the v2 store, save hard state and applied index side
//! by side — and one durable commit. Generic over [`Storage`] so a simulator can run the same
//! code over in-memory storage.

use crate::raft::{Entry, HardState, Payload, Ready};
use crate::storage::format::{self, RaftState};
use crate::storage::{Storage, StorageError, StorageTxn};
use crate::store::{Applied, Command, V2Error, V2Store};

/// The result of applying one committed command.
pub type ApplyResult = Result<Vec<Applied>, V2Error>;

/// What a committed batch did.
#[derive(Debug)]
pub struct BatchOutcome {
    /// Highest log index now durable.
    pub durable_index: u64,
    /// Highest index now applied.
    pub applied_index: u64,
    /// The hard state now durable.
    pub hard_state: HardState,
    /// Results of the applied commands, by log index.
    pub results: Vec<(u64, ApplyResult)>,
    /// Earliest expiration of any TTL node after this batch.
    pub next_expiration: Option<u64>,
    /// Whether the batch applied a `Sync` command.
    pub applied_sync: bool,
}

/// Encodes a command for the log.
pub fn encode_command(cmd: &Command) -> Result<Vec<u8>, StorageError> {
    format::encode("command", cmd)
}

fn decode_command(entry: &Entry, bytes: &[u8]) -> Result<Command, StorageError> {
    format::decode(&format!("command of log entry {}", entry.index), bytes)
}

/// Writes `ready` as one transaction. `state` is the durable Raft state before the batch; on
/// success it is the state after. On error nothing of the batch is durable.
pub fn write_batch<S: Storage>(
    storage: &S,
    store: &V2Store,
    ready: &Ready,
    state: &mut RaftState,
    durable_index: u64,
) -> Result<BatchOutcome, StorageError> {
    let mut txn = storage.begin()?;
    let mut durable = durable_index;
    for entry in &ready.entries {
        txn.append(entry)?;
        durable = entry.index;
    }
    let mut results = Vec::new();
    let mut applied = state.applied;
    let mut applied_sync = false;
    for entry in &ready.committed_entries {
        if let Payload::Command(bytes) = &entry.payload {
            let cmd = decode_command(entry, bytes)?;
            applied_sync |= matches!(cmd, Command::Sync { .. });
            results.push((entry.index, store.apply(&mut txn, &cmd)?));
        }
        applied = entry.index;
    }
    let next = RaftState {
        hard_state: ready.hard_state.unwrap_or(state.hard_state),
        applied,
    };
    txn.save_raft_state(&next)?;
    let next_expiration = V2Store::next_expiration(&txn)?;
    txn.commit()?;
    *state = next;
    Ok(BatchOutcome {
        durable_index: durable,
        applied_index: applied,
        hard_state: next.hard_state,
        results,
        next_expiration,
        applied_sync,
    })
}
