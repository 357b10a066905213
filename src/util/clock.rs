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

/// This boot of the machine (Linux's `/proc/sys/kernel/random/boot_id`), so that a
/// monotonic reading recorded by an earlier process can be compared with one of this
/// process; 0 if unknown (then no recorded reading is taken to be of this boot).
pub fn boot_id() -> u128 {
    static BOOT: std::sync::OnceLock<u128> = std::sync::OnceLock::new();
    *BOOT.get_or_init(|| {
        std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
            .ok()
            .and_then(|s| parse_boot_id(&s))
            .unwrap_or(0)
    })
}

fn parse_boot_id(text: &str) -> Option<u128> {
    let hex: String = text.trim().chars().filter(|c| *c != '-').collect();
    if hex.len() != 32 {
        return None;
    }
    u128::from_str_radix(&hex, 16).ok()
}

/// Where cluster time stood against the monotonic clock of one boot: the store records it
/// with every batch, so that a restarted member can resume its cluster clock (see
/// [`ClusterClock::resume`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClockAnchor {
    /// The boot of `mono` ([`boot_id`]; 0 if unknown).
    pub boot: u128,
    /// Cluster time at `mono`.
    pub cluster: u64,
    /// A monotonic reading ([`monotonic_nanos`]).
    pub mono: u64,
    /// Whether the clock was fixed (see [`ClusterClock::is_fixed`]).
    pub fixed: bool,
}

/// Cluster time, in Unix-like nanoseconds: the time TTLs are counted in. It advances with
/// this process's monotonic clock from the last value the cluster fixed (a `Sync` entry
/// applied, a leader's heartbeat), and never goes back. A wall clock that jumps — a Pi
/// boots without a real-time clock, then NTP corrects it by days — moves none of it: wall
/// time is only used to show `expiration` as a date, and to start the clock of a data dir
/// that never had one.
///
/// Such a clock is provisional: the board's wall clock may be days off when a cluster is
/// first formed. It becomes fixed when the member leads (its clock is then the cluster's)
/// or first hears a leader's clock, which it then takes even if that is behind: so all
/// members count in the first leader's time. A fixed clock only ever moves forward.
///
/// The `_at` methods take the monotonic reading ([`monotonic_nanos`]) as a value, so that the
/// simulator can drive the same clock in virtual time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClusterClock {
    /// Cluster time at monotonic time `at`.
    base: u64,
    /// Monotonic nanoseconds.
    at: u64,
    /// See the type's docs.
    fixed: bool,
}

impl ClusterClock {
    /// A fixed clock reading `base` now.
    pub fn starting_at(base: u64) -> ClusterClock {
        ClusterClock::starting_at_mono(base, monotonic_nanos())
    }

    /// A fixed clock reading `base` at monotonic time `mono`.
    pub fn starting_at_mono(base: u64, mono: u64) -> ClusterClock {
        ClusterClock {
            base,
            at: mono,
            fixed: true,
        }
    }

    /// The clock of a member starting in boot `boot` at monotonic time `mono`, with wall
    /// time `wall`, whose store recorded cluster time `stored` (the newest `Sync`, 0 if none)
    /// and `anchor` (where its cluster clock stood at its last batch, if ever):
    /// - a restart in the same boot resumes exactly: the monotonic clock ran on while the
    ///   process was down, so the time it was down counts, whatever the wall clock did;
    /// - after a reboot it resumes from the newest cluster time recorded (the time the
    ///   machine was down is not counted: keys live that much longer, never shorter);
    /// - only a data dir that never recorded a cluster time starts from the wall clock, and
    ///   provisionally (see the type's docs).
    pub fn resume(
        stored: u64,
        anchor: Option<ClockAnchor>,
        boot: u128,
        wall: u64,
        mono: u64,
    ) -> ClusterClock {
        // A data dir written before anchors were recorded is fixed if it applied a `Sync`.
        let mut clock = ClusterClock {
            base: stored,
            at: mono,
            fixed: stored != 0,
        };
        if let Some(a) = anchor {
            let same_boot = a.boot != 0 && a.boot == boot && mono >= a.mono;
            let ran = if same_boot { mono - a.mono } else { 0 };
            clock.base = clock.base.max(a.cluster.saturating_add(ran));
            // A clock still provisional at its last batch stays so: it will take the
            // leader's time again (its line may be its own wall clock's).
            clock.fixed = a.fixed;
        }
        if clock.base == 0 {
            clock.base = wall;
        }
        clock
    }

    /// Where this clock stands at monotonic time `mono` of boot `boot`.
    pub fn anchor_at(&self, boot: u128, mono: u64) -> ClockAnchor {
        ClockAnchor {
            boot,
            cluster: self.now_at(mono),
            mono,
            fixed: self.fixed,
        }
    }

    /// The current cluster time.
    pub fn now(&self) -> u64 {
        self.now_at(monotonic_nanos())
    }

    /// The cluster time at monotonic time `mono` (not before the clock's own start).
    pub fn now_at(&self, mono: u64) -> u64 {
        self.base.saturating_add(mono.saturating_sub(self.at))
    }

    /// Whether the clock is fixed (see the type's docs).
    pub fn is_fixed(&self) -> bool {
        self.fixed
    }

    /// This member leads: its clock is the cluster's from now on.
    pub fn fix(&mut self) {
        self.fixed = true;
    }

    /// The log says cluster time reached `t` (an applied `Sync`): catch up if behind, never
    /// go back.
    pub fn observe(&mut self, t: u64) {
        self.observe_at(t, monotonic_nanos());
    }

    /// [`ClusterClock::observe`] at monotonic time `mono`.
    pub fn observe_at(&mut self, t: u64, mono: u64) {
        if t > self.now_at(mono) {
            *self = ClusterClock {
                base: t,
                at: mono,
                fixed: self.fixed,
            };
        }
    }

    /// The leader's clock (its heartbeats) read `t` (0: says nothing): catch up if behind,
    /// never go back — unless this clock is still provisional, which takes `t` as it is (an
    /// old `Sync` would be a worse guess: it may have waited long to be applied here).
    pub fn follow(&mut self, t: u64) {
        self.follow_at(t, monotonic_nanos());
    }

    /// [`ClusterClock::follow`] at monotonic time `mono`.
    pub fn follow_at(&mut self, t: u64, mono: u64) {
        if t != 0 && (t > self.now_at(mono) || !self.fixed) {
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
    fn a_restart_resumes_the_cluster_time_not_the_wall_clock() {
        let day = 86_400 * 1_000_000_000u64;
        let t = 1_700_000_000 * 1_000_000_000u64;
        let recorded = ClockAnchor {
            boot: 7,
            cluster: t,
            mono: 1_000,
            fixed: true,
        };
        let anchor = Some(recorded);
        // Same boot, 5 s later by the monotonic clock, the wall clock 2 days off either way.
        for wall in [t + 2 * day, t - 2 * day] {
            let c = ClusterClock::resume(0, anchor, 7, wall, 1_000 + 5_000_000_000);
            assert_eq!(c.now_at(1_000 + 5_000_000_000), t + 5_000_000_000);
        }
        // Another boot: from the recorded time (the downtime is not counted), or the newer
        // Sync.
        let c = ClusterClock::resume(0, anchor, 8, t + 2 * day, 50);
        assert_eq!(c.now_at(50), t);
        let c = ClusterClock::resume(t + 9, anchor, 8, t + 2 * day, 50);
        assert_eq!(c.now_at(50), t + 9);
        // An unknown boot never matches.
        let unknown = Some(ClockAnchor {
            boot: 0,
            ..recorded
        });
        assert_eq!(
            ClusterClock::resume(0, unknown, 0, 1, 9_000).now_at(9_000),
            t
        );
        assert!(ClusterClock::resume(0, anchor, 8, 1, 50).is_fixed());
        // Nothing recorded: the wall clock, provisionally.
        let fresh = ClusterClock::resume(0, None, 7, t + day, 3);
        assert_eq!(fresh.now_at(3), t + day);
        assert!(!fresh.is_fixed());
        let synced = ClusterClock::resume(t, None, 7, t + day, 3);
        assert_eq!(synced.now_at(3), t);
        assert!(synced.is_fixed());
        // A provisional clock's anchor resumes provisional.
        let a = fresh.anchor_at(7, 103);
        assert_eq!(
            (a.boot, a.cluster, a.mono, a.fixed),
            (7, t + day + 100, 103, false)
        );
        let again = ClusterClock::resume(0, Some(a), 7, 1, 203);
        assert_eq!(again.now_at(203), t + day + 200);
        assert!(!again.is_fixed());
        assert!(!ClusterClock::resume(t, Some(a), 7, 1, 203).is_fixed());
    }

    #[test]
    fn a_provisional_clock_takes_the_first_cluster_time_it_hears() {
        let t = 1_700_000_000 * 1_000_000_000u64;
        let mut c = ClusterClock::resume(0, None, 7, t + 5_000, 10);
        c.follow_at(0, 20);
        assert!(!c.is_fixed(), "0 says nothing");
        c.observe_at(t, 20);
        assert!(!c.is_fixed(), "a Sync is no leader's clock");
        assert_eq!(
            c.now_at(20),
            t + 5_010,
            "nor does a provisional clock go back for it"
        );
        c.follow_at(t, 20);
        assert!(c.is_fixed());
        assert_eq!(c.now_at(30), t + 10, "taken although behind");
        c.follow_at(t - 1_000, 40);
        c.observe_at(t - 1_000, 40);
        assert_eq!(c.now_at(40), t + 20, "a fixed clock never goes back");
        c.follow_at(t + 1_000, 40);
        assert_eq!(c.now_at(40), t + 1_000, "and catches up");
        let mut leader = ClusterClock::resume(0, None, 7, t, 10);
        leader.fix();
        leader.follow_at(t - 1_000, 20);
        assert_eq!(leader.now_at(20), t + 10);
    }

    #[test]
    fn boot_ids() {
        assert_eq!(
            parse_boot_id("0f3c6a2e-8d1b-4b6f-9a37-2c5e1d7f8a90\n"),
            Some(0x0f3c6a2e_8d1b_4b6f_9a37_2c5e1d7f8a90)
        );
        assert_eq!(parse_boot_id("not a uuid"), None);
        assert_eq!(parse_boot_id(""), None);
        assert_ne!(boot_id(), 0, "Linux has a boot id");
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
