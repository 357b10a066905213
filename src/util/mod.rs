//! Small std-only helpers: clocks, checksums, SHA-1 for ids, Go-compatible
//! time formatting.

pub mod checksum;
pub mod clock;
pub mod hosts;
pub mod memory;
pub mod sha1;
pub mod signal;
pub mod time;
