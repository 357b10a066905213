//! pikv: a small, crash-safe, etcd-v2-compatible key-value store.
//!
//! Threads and seams (design.md): API workers (tiny_http) parse requests and send writes to
//! the node thread, which owns the Raft core and hands each batch to the storage thread; the
//! storage thread appends, applies and commits in one LMDB write transaction and reports what
//! is durable and applied; applied events wake parked watches in the watch hub.
#![warn(missing_docs)]
#![deny(unsafe_code)]

pub mod api;
pub mod cli;
pub mod ctl;
pub mod node;
pub mod raft;
pub mod server;
pub mod storage;
pub mod store;
pub mod transport;
pub mod util;
pub mod watch;
