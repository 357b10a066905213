//! The one place pikv reads clocks. Everything else takes times as values, so the store and
//! the Raft core stay deterministic and tests can pass any time they like.

use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// Wall-clock time in Unix nanoseconds (0 if the clock is before 1970).
pub fn now_unix_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// A monotonic instant, for timeouts and ticks.
pub fn monotonic() -> Instant {
    Instant::now()
}
