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

/// The system's monotonic clock (`CLOCK_MONOTONIC`, the one `Instant` reads) in nanoseconds:
/// it never jumps, whatever is done to the wall clock, and every process of one boot reads
/// the same value.
#[allow(unsafe_code)]
pub fn monotonic_nanos() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime only writes the timespec we own; CLOCK_MONOTONIC always exists
    // on Linux.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    if rc != 0 {
        return 0;
    }
    let secs = u64::try_from(ts.tv_sec).unwrap_or(0);
    let nanos = u64::try_from(ts.tv_nsec).unwrap_or(0);
    secs.saturating_mul(1_000_000_000).saturating_add(nanos)
}

/// Cluster time, in Unix-like nanoseconds: the time TTLs are counted in. It advances with
/// this process's monotonic clock from the last value the cluster fixed (a `Sync` entry
/// applied, a leader's heartbeat), and never goes back. A wall clock that jumps — a Pi
/// boots without a real-time clock, then NTP corrects it by days — moves none of it: wall
/// time is only used to show `expiration` as a date.
///
/// The `_at` methods take the monotonic reading ([`monotonic_nanos`]) as a value, so that the
/// simulator can drive the same clock in virtual time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClusterClock {
    /// Cluster time at monotonic time `at`.
    base: u64,
    /// Monotonic nanoseconds.
    at: u64,
}

impl ClusterClock {
    /// A clock reading `base` now.
    pub fn starting_at(base: u64) -> ClusterClock {
        ClusterClock::starting_at_mono(base, monotonic_nanos())
    }

    /// The clock of a member starting at monotonic time `mono` with wall time `wall`, whose
    /// log recorded cluster time `stored` (0 if it never fixed one): it resumes from the log
    /// (the time the member was down is not counted); a log that never fixed a cluster time
    /// starts from the wall clock.
    pub fn resume(stored: u64, wall: u64, mono: u64) -> ClusterClock {
        let base = if stored == 0 { wall } else { stored };
        ClusterClock::starting_at_mono(base, mono)
    }

    /// A clock reading `base` at monotonic time `mono`.
    pub fn starting_at_mono(base: u64, mono: u64) -> ClusterClock {
        ClusterClock { base, at: mono }
    }

    /// The current cluster time.
    pub fn now(&self) -> u64 {
        self.now_at(monotonic_nanos())
    }

    /// The cluster time at monotonic time `mono` (not before the clock's own start).
    pub fn now_at(&self, mono: u64) -> u64 {
        self.base.saturating_add(mono.saturating_sub(self.at))
    }

    /// The cluster says time reached `t`: catch up if behind, never go back.
    pub fn observe(&mut self, t: u64) {
        self.observe_at(t, monotonic_nanos());
    }

    /// [`ClusterClock::observe`] at monotonic time `mono`.
    pub fn observe_at(&mut self, t: u64, mono: u64) {
        if t > self.now_at(mono) {
            *self = ClusterClock::starting_at_mono(t, mono);
        }
    }
}

/// The two times a response needs: cluster time for TTLs, wall time to show dates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Clocks {
    /// Cluster time (see [`ClusterClock`]).
    pub cluster: u64,
    /// Wall-clock Unix nanoseconds.
    pub wall: u64,
}

impl Clocks {
    /// Both the same (a member whose cluster time is its wall clock; tests).
    pub fn same(t: u64) -> Clocks {
        Clocks {
            cluster: t,
            wall: t,
        }
    }

    /// The wall-clock date of cluster time `t`.
    pub fn to_wall(&self, t: u64) -> u64 {
        if t >= self.cluster {
            self.wall.saturating_add(t - self.cluster)
        } else {
            self.wall.saturating_sub(self.cluster - t)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_clock_advances_and_never_goes_back() {
        let mut c = ClusterClock::starting_at(1_000);
        let a = c.now();
        assert!(a >= 1_000);
        c.observe(10);
        assert!(c.now() >= a, "an older value does not move it back");
        c.observe(u64::MAX / 2);
        assert!(c.now() >= u64::MAX / 2, "a newer one moves it forward");
        let far = ClusterClock::starting_at(u64::MAX);
        assert_eq!(far.now(), u64::MAX, "saturates");
    }

    #[test]
    fn cluster_clock_in_given_monotonic_time() {
        let mut c = ClusterClock::starting_at_mono(5_000, 100);
        assert_eq!(c.now_at(100), 5_000);
        assert_eq!(c.now_at(350), 5_250);
        assert_eq!(c.now_at(50), 5_000, "not before its own start");
        c.observe_at(5_100, 350);
        assert_eq!(c.now_at(400), 5_300, "behind it: ignored");
        c.observe_at(9_000, 400);
        assert_eq!(c.now_at(410), 9_010, "ahead: caught up");
        let a = monotonic_nanos();
        let b = monotonic_nanos();
        assert!(a > 0 && b >= a);
    }

    #[test]
    fn wall_dates_of_cluster_times() {
        let k = Clocks {
            cluster: 100,
            wall: 1_000,
        };
        assert_eq!(k.to_wall(150), 1_050);
        assert_eq!(k.to_wall(40), 940);
        assert_eq!(
            Clocks {
                cluster: 5_000,
                wall: 10
            }
            .to_wall(0),
            0
        );
    }
}
