//! The etcd event and node shapes every keys response and watch notification is made of
//! (spec §2.2, §2.3). JSON rendering lives in `api::render`, because `ttl` is computed when
//! the response is written, on the responding member's clock.

use bincode::{Decode, Encode};

/// What a store operation did; rendered as etcd's `action` string.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Encode, Decode)]
pub enum Action {
    /// A read.
    Get,
    /// PUT without conditions.
    Set,
    /// PUT with prevExist=false, or POST.
    Create,
    /// PUT with prevExist=true.
    Update,
    /// PUT with prevValue/prevIndex.
    CompareAndSwap,
    /// DELETE.
    Delete,
    /// DELETE with prevValue/prevIndex.
    CompareAndDelete,
    /// TTL expiry (delivered to watchers only).
    Expire,
}

impl Action {
    /// etcd's wire name of the action.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Get => "get",
            Action::Set => "set",
            Action::Create => "create",
            Action::Update => "update",
            Action::CompareAndSwap => "compareAndSwap",
            Action::Delete => "delete",
            Action::CompareAndDelete => "compareAndDelete",
            Action::Expire => "expire",
        }
    }

    /// Whether the action removed the node (its `node` carries no value).
    pub fn is_removal(self) -> bool {
        matches!(
            self,
            Action::Delete | Action::CompareAndDelete | Action::Expire
        )
    }
}

/// A node as a response shows it (spec §2.2).
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub struct NodeView {
    /// Absolute key; `/` for the root, whose key is omitted from JSON.
    pub key: String,
    /// The value of a file; `None` for directories and for removed nodes.
    pub value: Option<String>,
    /// Whether the node is a directory.
    pub dir: bool,
    /// Expiration time, Unix nanoseconds (wall clock), if the node has a TTL.
    pub expiration: Option<u64>,
    /// Children to show (directory reads only; `None` when there is nothing to show).
    pub nodes: Option<Vec<NodeView>>,
    /// etcd index of the last modification (0 for the root).
    pub modified_index: u64,
    /// etcd index of the creation (0 for the root).
    pub created_index: u64,
}

/// The result of a successful store operation, or a watch notification.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub struct Event {
    /// What happened.
    pub action: Action,
    /// The node after the operation (for removals: key, dir and the indexes only).
    pub node: NodeView,
    /// The node before the operation, without children.
    pub prev_node: Option<NodeView>,
    /// The store's etcd index when the event was produced: for a write, the new index; for a
    /// read, the current index.
    pub etcd_index: u64,
    /// A refresh write: it takes an index and a history slot but is never delivered.
    pub refresh: bool,
}
