//! Small std-only helpers: clocks, coarse request deadlines, checksums, SHA-1 for ids, Go-compatible
//! time formatting, signals, systemd notifications.

pub mod checksum;
pub mod clock;
pub mod coarse_timer;
pub mod hosts;
pub mod memory;
pub mod notify;
pub mod sha1;
pub mod signal;
pub mod time;
