//! pikv: a small, crash-safe, etcd-v2-compatible key-value store.
//!
//! Threads and seams (design.md): API workers (tiny_http) parse requests and send writes to
//! the node thread, which owns the Raft core and hands each batch to the WAL thread; the WAL
//! thread makes the batch's entries and hard state durable (one fdatasync) and passes the
//! committed entries to the apply thread, which applies them in one LMDB write transaction;
//! applied events wake parked watches in the watch hub.
#![warn(missing_docs)]
#![deny(unsafe_code)]

pub mod api;
pub mod backup;
pub mod cli;
pub mod ctl;
pub mod join;
pub mod node;
pub mod peer_http;
pub mod raft;
pub mod server;
pub mod storage;
pub mod store;
pub mod transport;
pub mod util;
pub mod watch;
