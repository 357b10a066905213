//! The command line: etcd-compatible server flags and environment (spec §14).
//!
//! Three layers, as in ripgrep's lowargs/hiargs:
//! - [`argv`]: etcd's syntax and environment folded into a normalised argv (pure);
//! - [`flags`]: the argh struct, strings exactly as typed;
//! - [`config`]: validation into [`ServerConfig`] with etcd's one-line messages.
//!
//! `main` calls [`parse_server_args`] with `std::env::args().skip(1)` and
//! `std::env::vars()`, logs [`Parsed::warnings`], and on [`ConfigError`] prints its message
//! and exits with its `exit_code`. `pikv backup` has its own small command line
//! ([`backup`]).

pub mod argv;
pub mod backup;
pub mod config;
pub mod flags;

pub use config::{
    parse_server_args, ClusterState, ConfigError, Cors, Invocation, ListenUrl, Parsed, ServerConfig,
};
