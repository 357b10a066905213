//! The etcd v2 store: the state machine the Raft log is applied to.

pub mod command;
pub mod error;
pub mod event;
pub mod kv;

pub use command::Command;
pub use error::V2Error;
pub use event::{Action, Event, NodeView};
pub use kv::{KvRead, KvWrite, MemKv, Table};
