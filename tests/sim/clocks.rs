//! Clocks of the simulated members (requirement 6, bad clocks): each member has a monotonic
//! clock (virtual time from its own boot offset: members booted at different times) and a
//! wall clock that jumps by days now and then (a Pi boots without a real-time clock, then NTP
//! corrects it). The driver keeps pikv's own [`ClusterClock`] per member, driven by the
//! monotonic reading, exactly as the node thread does (src/node/mod.rs):
//! - on (re)start it is [`ClusterClock::resume`] from what the disk recorded (the newest
//!   `Sync`, and the clock anchor every write records), the wall clock and the monotonic
//!   reading (a crash and restart is a process restart on the same boot: the monotonic
//!   clock runs on; reboots are left to the unit tests of `resume`);
//! - a leader calls `set_clock(cluster.now())` before each tick, so its heartbeats carry it;
//! - a follower observes `leader_clock()`, and everyone observes the cluster time of each
//!   `Sync` entry it applies (the leader proposes them, as pikv's does when a TTL is due).
//!
//! What is checked: every member's cluster time never goes back, across leader changes and
//! its own restarts (a restart may lose a catch-up made after its last write: at most the
//! start-up skew and a message delay); each follower's `leader_clock()` never goes back; and every cluster
//! time — a member's, a follower's `leader_clock()`, a heartbeat's — stays near the true
//! cluster time (the first leader's clock advancing at the rate of virtual time): never
//! ahead of it by more than the members' start-up skew, never behind by more than a few
//! message delays per leader change. A wall-clock jump of days would break that by days.
//!
//! This checks that the core carries the driver's clock and that the start-up decision is
//! sound; the end-to-end check with real processes and a faked wall clock is
//! tests/it/clock_jump.rs.

use pikv::util::clock::ClusterClock;

/// Nanoseconds per virtual millisecond.
pub const NS_PER_MS: u64 = 1_000_000;

/// Wall-clock time at virtual time 0 (2023-11-14, in Unix nanoseconds).
pub const WALL_ORIGIN: u64 = 1_700_000_000 * 1_000_000_000;

/// A day in nanoseconds.
pub const DAY: u64 = 86_400 * 1_000_000_000;

/// How the clocks misbehave.
#[derive(Debug, Clone)]
pub struct ClockOptions {
    /// Mean time between wall-clock jumps of a member (each by 1 to 3 days, forward or
    /// back).
    pub jump_every_ms: u64,
    /// Mean time between the leader's `Sync` proposals (0: none, so a restart finds no
    /// cluster time in the log).
    pub sync_every_ms: u64,
    /// The largest skew between the members' wall clocks at start (NTP-synchronised boards).
    pub start_skew_ms: u64,
    /// One member's wall clock is this many days off at start (a board without a real-time
    /// clock, not yet corrected by NTP), negative for behind.
    pub start_offset_days: i64,
    /// Wall clocks jump from the start, not only once every member has taken a leader's
    /// time.
    pub jumps_before_formed: bool,
    /// How far behind the true cluster time a member may fall (message delays lost at
    /// leader changes).
    pub behind_tolerance_ms: u64,
    /// The network's longest delay (how stale a heard leader clock may be).
    pub net_delay_max_ms: u64,
}

/// One member's clocks.
#[derive(Debug, Clone)]
pub struct MemberClock {
    /// Its machine's boot id (a crash is a process restart: the boot stays).
    pub boot: u128,
    /// Its monotonic clock at virtual time 0.
    pub mono_origin: u64,
    /// Its wall clock minus the true wall time, in nanoseconds.
    pub wall_offset: i64,
    /// The driver's cluster clock (`None` while down).
    pub cluster: Option<ClusterClock>,
    /// The highest cluster time it has read (kept across restarts: it must never go back).
    pub seen_cluster: u64,
    /// The highest `leader_clock()` of its current core.
    pub seen_leader_clock: u64,
    /// Its cluster clock has been fixed (it led, or took a leader's time).
    pub ever_fixed: bool,
    /// It restarted and its clock has not been checked since.
    pub restarted: bool,
}

impl MemberClock {
    /// The monotonic reading at virtual time `now_ms`.
    pub fn mono(&self, now_ms: u64) -> u64 {
        self.mono_origin + now_ms * NS_PER_MS
    }

    /// The wall-clock reading at virtual time `now_ms`.
    pub fn wall(&self, now_ms: u64) -> u64 {
        let truth = (WALL_ORIGIN + now_ms * NS_PER_MS) as i64;
        truth.saturating_add(self.wall_offset).max(0) as u64
    }
}

/// The `Sync` entry the simulated leader proposes: cluster time `now`.
pub fn encode_sync(now: u64) -> Vec<u8> {
    let mut v = b"sync".to_vec();
    v.extend_from_slice(&now.to_le_bytes());
    v
}

/// The cluster time of a `Sync` entry's command, if it is one.
pub fn decode_sync(command: &[u8]) -> Option<u64> {
    let rest = command.strip_prefix(b"sync")?;
    let bytes: [u8; 8] = rest.try_into().ok()?;
    Some(u64::from_le_bytes(bytes))
}
