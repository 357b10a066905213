//! The commands written to the Raft log and applied by [`crate::store::V2Store`]. Every field
//! is decided before the command is proposed (the operation chosen by spec §5.2, the absolute
//! expiration time), so applying a command is deterministic on every member.

use bincode::{Decode, Encode};

/// One state-machine command. Times are Unix nanoseconds.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub enum Command {
    /// PUT without conditions (`set`); `refresh` keeps the value and changes the TTL.
    Set {
        /// Normalised absolute key.
        key: String,
        /// New value (ignored for directories and on refresh).
        value: String,
        /// Create a directory instead of a file.
        dir: bool,
        /// Absolute expiration, `None` for a permanent node.
        expire_at: Option<u64>,
        /// refresh=true.
        refresh: bool,
    },
    /// PUT with prevExist=false (`create`).
    Create {
        /// Normalised absolute key.
        key: String,
        /// New value.
        value: String,
        /// Create a directory instead of a file.
        dir: bool,
        /// Absolute expiration.
        expire_at: Option<u64>,
    },
    /// POST: a new child of `dir_key` named by the new index (`%020d`).
    CreateInOrder {
        /// The parent directory.
        dir_key: String,
        /// New value.
        value: String,
        /// The new child is a directory.
        dir: bool,
        /// Absolute expiration.
        expire_at: Option<u64>,
    },
    /// PUT with prevExist=true and no condition (`update`).
    Update {
        /// Normalised absolute key.
        key: String,
        /// New value (must be empty for a directory).
        value: String,
        /// Absolute expiration; `None` removes an existing TTL.
        expire_at: Option<u64>,
        /// refresh=true.
        refresh: bool,
    },
    /// PUT with prevValue and/or prevIndex (`compareAndSwap`).
    CompareAndSwap {
        /// Normalised absolute key.
        key: String,
        /// New value.
        value: String,
        /// Condition on the current value.
        prev_value: Option<String>,
        /// Condition on the current modifiedIndex (never 0).
        prev_index: Option<u64>,
        /// Absolute expiration; `None` removes an existing TTL.
        expire_at: Option<u64>,
        /// refresh=true.
        refresh: bool,
    },
    /// DELETE without conditions.
    Delete {
        /// Normalised absolute key.
        key: String,
        /// dir=true.
        dir: bool,
        /// recursive=true.
        recursive: bool,
    },
    /// DELETE with prevValue and/or prevIndex (`compareAndDelete`).
    CompareAndDelete {
        /// Normalised absolute key.
        key: String,
        /// Condition on the current value.
        prev_value: Option<String>,
        /// Condition on the current modifiedIndex (never 0).
        prev_index: Option<u64>,
    },
    /// Expire every node whose expiration is at or before `now` (proposed by the leader
    /// while TTL keys exist).
    Sync {
        /// The leader's time.
        now: u64,
    },
    /// A member publishes its name and client URLs after it starts (etcd does the same
    /// through its log), so every member can list every other in `/v2/members` and
    /// `/v2/machines`. Changes no key and no etcd index (pikv spends no index on itself).
    /// Last variant: entries written before it existed decode unchanged.
    Publish {
        /// The member's id.
        member: u64,
        /// Its `--name`.
        name: String,
        /// Its `--advertise-client-urls`.
        client_urls: Vec<String>,
    },
}

impl Command {
    /// The value the command writes, if it writes one.
    pub fn value(&self) -> Option<&str> {
        match self {
            Command::Set { value, .. }
            | Command::Create { value, .. }
            | Command::CreateInOrder { value, .. }
            | Command::Update { value, .. }
            | Command::CompareAndSwap { value, .. } => Some(value),
            Command::Delete { .. }
            | Command::CompareAndDelete { .. }
            | Command::Sync { .. }
            | Command::Publish { .. } => None,
        }
    }
}
