//! The HTTP API's pure translation layer: URL paths to store keys, request parameters to
//! [`crate::store::Command`]s, and store results to etcd's exact response bytes.
//!
//! Nothing here does I/O; the tiny_http glue (server, keys and admin handlers) calls these
//! functions, so every wire detail of spec §1–§8 is unit-tested here.

pub mod http1;
pub mod json;
pub mod params;
pub mod path;
pub mod render;
pub mod reply;
pub mod server;

mod admin;
mod compat04;
pub use admin::{ETCD_CLUSTER_VERSION, ETCD_SERVER_VERSION};
mod keys;
mod members;
