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

/// Cluster time, in Unix-like nanoseconds: the time TTLs are counted in. It advances with
/// this process's monotonic clock from the last value the cluster fixed (a `Sync` entry
/// applied, a leader's heartbeat), and never goes back. A wall clock that jumps — a Pi
/// boots without a real-time clock, then NTP corrects it by days — moves none of it: wall
/// time is only used to show `expiration` as a date.
#[derive(Debug, Clone, Copy)]
pub struct ClusterClock {
    base: u64,
    at: Instant,
}

impl ClusterClock {
    /// A clock reading `base` now.
    pub fn starting_at(base: u64) -> ClusterClock {
        ClusterClock {
            base,
            at: Instant::now(),
        }
    }

    /// The current cluster time.
    pub fn now(&self) -> u64 {
        let elapsed = u64::try_from(self.at.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.base.saturating_add(elapsed)
    }

    /// The cluster says time reached `t`: catch up if behind, never go back.
    pub fn observe(&mut self, t: u64) {
        if t > self.now() {
            *self = ClusterClock::starting_at(t);
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
