//! The watch history as it is kept on disk (spec §4.3): the events a log entry produced, in
//! that entry's own log record (`storage::format`), so recording them costs no page of its
//! own and log compaction drops them with their entries. At start the node reads them back
//! from the newest record until it has the last [`HISTORY_LEN`].
//!
//! An event repeats much of its command: a set's new value is the command's value, its
//! previous node has the same key, and often (a refresh, a heartbeat rewriting what it wrote)
//! the same value too. Those parts are left out and restored from the command, which sits in
//! the same record.

use super::codec;
use super::command::Command;
use super::event::Event;
use crate::storage::StorageError;
use bincode::{Decode, Encode};

/// How many of the most recent events the watch history keeps (etcd's window).
pub const HISTORY_LEN: usize = 1000;

/// The node's value is the command's value.
const VALUE_FROM_COMMAND: u8 = 1;
/// The previous node's key is the node's key.
const PREV_KEY_SAME: u8 = 2;
/// The previous node's value is the command's value.
const PREV_VALUE_FROM_COMMAND: u8 = 4;

#[derive(Encode, Decode)]
struct StoredEvent {
    flags: u8,
    event: Event,
}

/// Encodes the events one command produced (empty bytes for none).
pub fn encode<'a>(
    events: impl IntoIterator<Item = &'a Event>,
    cmd: &Command,
) -> Result<Vec<u8>, StorageError> {
    let stored: Vec<StoredEvent> = events
        .into_iter()
        .map(|e| {
            let mut event = e.clone();
            let mut flags = 0;
            if event.node.value.is_some() && event.node.value.as_deref() == cmd.value() {
                event.node.value = None;
                flags |= VALUE_FROM_COMMAND;
            }
            if let Some(prev) = event.prev_node.as_mut() {
                if prev.key == event.node.key {
                    prev.key = String::new();
                    flags |= PREV_KEY_SAME;
                }
                if prev.value.is_some() && prev.value.as_deref() == cmd.value() {
                    prev.value = None;
                    flags |= PREV_VALUE_FROM_COMMAND;
                }
            }
            StoredEvent { flags, event }
        })
        .collect();
    if stored.is_empty() {
        return Ok(Vec::new());
    }
    codec::encode("events", &stored)
}

/// Decodes what [`encode`] wrote for `cmd`.
pub fn decode(bytes: &[u8], cmd: &Command) -> Result<Vec<Event>, StorageError> {
    let stored: Vec<StoredEvent> = codec::decode("events", bytes)?;
    Ok(stored
        .into_iter()
        .map(|StoredEvent { flags, mut event }| {
            if flags & VALUE_FROM_COMMAND != 0 {
                event.node.value = cmd.value().map(str::to_string);
            }
            if let Some(prev) = event.prev_node.as_mut() {
                if flags & PREV_KEY_SAME != 0 {
                    prev.key = event.node.key.clone();
                }
                if flags & PREV_VALUE_FROM_COMMAND != 0 {
                    prev.value = cmd.value().map(str::to_string);
                }
            }
            event
        })
        .collect())
}
