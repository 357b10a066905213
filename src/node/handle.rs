//! What API workers hold: a cloneable sender into the node thread and the member's shared,
//! lock-free status (Raft index and term for the headers, leader, quota use).

use super::inbox::InboxSender;
use super::Input;
use crate::store::{Command, Event, V2Error};
use crate::util::notify::Liveness;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;

/// etcd's v2 cause for a request that timed out.
pub const TIMEOUT_CAUSE: &str = "etcdserver: request timed out";
/// etcd's cause when the server is stopping.
pub const STOPPED_CAUSE: &str = "etcdserver: server stopped";
/// The cause pikv reports when the quota (`--quota-backend-bytes`) is used up.
pub const NO_SPACE_CAUSE: &str = "etcdserver: mvcc: database space exceeded";

/// Status the node publishes for everyone to read.
#[derive(Debug, Default)]
pub struct Status {
    /// Raft commit index (X-Raft-Index).
    pub commit_index: AtomicU64,
    /// Raft term (X-Raft-Term).
    pub term: AtomicU64,
    /// Leader id, 0 when unknown.
    pub leader: AtomicU64,
    /// Bytes of the LMDB map in use.
    pub used_bytes: AtomicU64,
    /// Whether the node is shutting down.
    pub stopping: AtomicBool,
    /// Batches committed (one LMDB commit and fsync each).
    pub batches: AtomicU64,
    /// Log entries appended by those batches.
    pub entries: AtomicU64,
    /// Batches refused because the map was full.
    pub batches_map_full: AtomicU64,
    /// The leader's view of each follower (`/v2/stats/leader`); empty unless leader.
    pub followers: std::sync::Mutex<std::collections::BTreeMap<u64, FollowerStats>>,
    /// Whether this member is the leader (`/v2/stats/self` state).
    pub is_leader: AtomicBool,
    /// Append messages (appends and heartbeats) sent and received, for `/v2/stats/self`.
    pub appends_sent: AtomicU64,
    /// See `appends_sent`.
    pub appends_received: AtomicU64,
    /// Voters of the cluster as this member's log has them.
    pub voters: AtomicU64,
    /// This member applied its own removal from the cluster: the process is to exit.
    pub removed: AtomicBool,
    /// The member's cluster clock, as the node thread last set it.
    pub clock: std::sync::Mutex<Option<crate::util::clock::ClusterClock>>,
}

/// Round-trip latency of heartbeats to one follower, in milliseconds, and how many were
/// answered or failed (etcd's `/v2/stats/leader` shape).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct FollowerStats {
    /// The last sample.
    pub current: f64,
    /// Mean of the samples.
    pub average: f64,
    /// Sum of squared deviations (Welford), for the standard deviation.
    pub m2: f64,
    /// The smallest sample.
    pub minimum: f64,
    /// The largest sample.
    pub maximum: f64,
    /// Answered heartbeats.
    pub success: u64,
    /// Messages that could not be delivered.
    pub fail: u64,
}

impl FollowerStats {
    /// Adds a round trip of `ms` milliseconds.
    pub fn sample(&mut self, ms: f64) {
        self.success += 1;
        let n = self.success as f64;
        let delta = ms - self.average;
        self.average += delta / n;
        self.m2 += delta * (ms - self.average);
        self.current = ms;
        if self.success == 1 || ms < self.minimum {
            self.minimum = ms;
        }
        if ms > self.maximum {
            self.maximum = ms;
        }
    }

    /// The population standard deviation of the samples.
    pub fn standard_deviation(&self) -> f64 {
        if self.success == 0 {
            0.0
        } else {
            (self.m2 / self.success as f64).sqrt()
        }
    }
}

impl Status {
    /// Cluster time (for TTLs) and wall time (for dates) now.
    pub fn clocks(&self) -> crate::util::clock::Clocks {
        let wall = crate::util::clock::now_unix_nanos();
        let cluster = self
            .clock
            .lock()
            .ok()
            .and_then(|c| c.map(|c| c.now()))
            .unwrap_or(wall);
        crate::util::clock::Clocks { cluster, wall }
    }
}

/// A cloneable handle to the node thread.
#[derive(Clone)]
pub struct NodeHandle {
    pub(super) tx: InboxSender<Input>,
    /// The member's shared status.
    pub status: Arc<Status>,
    /// How long a write or quorum read waits before etcd's timeout error.
    pub request_timeout: Duration,
    /// The quota: the LMDB map size.
    pub quota_bytes: u64,
}

fn raft_error(cause: &str) -> V2Error {
    V2Error::new(crate::store::error::RAFT_INTERNAL, cause, 0)
}

/// Waits for `rx` at most `timeout`; etcd's timeout error after it, "stopped" when the node
/// went away.
async fn reply_within<T>(
    rx: smol::channel::Receiver<Result<T, V2Error>>,
    timeout: Duration,
) -> Result<T, V2Error> {
    // A coarse deadline, not a reactor timer: arming one per request woke another thread
    // on every PUT (see `coarse_timer`).
    match crate::util::coarse_timer::within(timeout, rx.recv()).await {
        Some(Ok(result)) => result,
        Some(Err(_)) => Err(raft_error(STOPPED_CAUSE)),
        None => Err(raft_error(TIMEOUT_CAUSE)),
    }
}

impl NodeHandle {
    /// Proposes `command` and waits until it is applied on this member. The outer error is
    /// etcd's 300 (timeout, stopped, no space); a store error (e.g. 100) comes back as the
    /// inner one.
    pub async fn propose(
        &self,
        command: Command,
        body_bytes: usize,
    ) -> Result<Result<Event, V2Error>, V2Error> {
        if !matches!(
            command,
            Command::Delete { .. }
                | Command::CompareAndDelete { .. }
                | Command::Sync { .. }
                | Command::Publish { .. }
        ) && self.over_quota(body_bytes)
        {
            return Err(raft_error(NO_SPACE_CAUSE));
        }
        let (reply, rx) = smol::channel::bounded(1);
        // Deferrable: while the node's last Ready is with the WAL thread, a write has to
        // wait for that fsync anyway (see `inbox`).
        self.tx
            .send_deferrable(Input::Propose { command, reply })
            .map_err(|_| raft_error(STOPPED_CAUSE))?;
        reply_within(rx, self.request_timeout).await
    }

    /// Waits until every write committed before this call is applied here (ReadIndex), so
    /// a read that follows is linearizable.
    pub async fn read_barrier(&self) -> Result<(), V2Error> {
        self.read_barrier_within(self.request_timeout).await
    }

    /// [`Self::read_barrier`] with its own deadline.
    pub async fn read_barrier_within(&self, timeout: Duration) -> Result<(), V2Error> {
        let (reply, rx) = smol::channel::bounded(1);
        self.tx
            .send(Input::ReadIndex { reply })
            .map_err(|_| raft_error(STOPPED_CAUSE))?;
        reply_within(rx, timeout).await
    }

    /// Whether the node thread's loop answers within `timeout` (the systemd watchdog's probe).
    /// It checks the loop, not Raft or the disk: the node thread never waits on either, so an
    /// answer means it is running and not stuck, on a follower or a slow SD card as well.
    pub fn ping(&self, timeout: Duration) -> Liveness {
        let (reply, rx) = mpsc::channel();
        if self.tx.send(Input::Ping { reply }).is_err() {
            return Liveness::Gone;
        }
        match rx.recv_timeout(timeout) {
            Ok(()) => Liveness::Alive,
            Err(mpsc::RecvTimeoutError::Timeout) => Liveness::Unresponsive,
            // The node dropped the request unanswered: its thread has ended.
            Err(mpsc::RecvTimeoutError::Disconnected) => Liveness::Gone,
        }
    }

    /// Adds, removes or readdresses a member, and waits until the change is applied here
    /// (etcd's timeout error after the request timeout; the change may still apply later).
    pub async fn change_membership(
        &self,
        change: crate::raft::ConfChange,
        context: Vec<u8>,
    ) -> Result<(), V2Error> {
        let (reply, rx) = smol::channel::bounded(1);
        self.tx
            .send(Input::ChangeMembership {
                change,
                context,
                reply,
            })
            .map_err(|_| raft_error(STOPPED_CAUSE))?;
        reply_within(rx, self.request_timeout).await
    }

    /// Hands the node a snapshot the peer port received (spooled at `path`) and waits
    /// until it is installed; the index it covers, or why it was not installed.
    pub fn install_snapshot(
        &self,
        from: u64,
        term: u64,
        path: std::path::PathBuf,
        header: crate::storage::lmdb::snapshot::SnapshotHeader,
    ) -> Result<u64, String> {
        let (reply, outcome) = mpsc::channel();
        let incoming = super::snapshot::Incoming {
            from,
            term,
            path,
            header,
            reply,
        };
        self.tx
            .send(Input::InstallSnapshot(incoming))
            .map_err(|_| STOPPED_CAUSE.to_string())?;
        outcome
            .recv_timeout(Duration::from_secs(600))
            .map_err(|e| format!("waiting for the install: {e}"))?
    }

    /// Asks the node thread to stop.
    pub fn shutdown(&self) {
        self.status.stopping.store(true, Ordering::SeqCst);
        let _ = self.tx.send(Input::Shutdown);
    }

    /// Cluster time (for TTLs) and wall time (for dates) now.
    pub fn clocks(&self) -> crate::util::clock::Clocks {
        self.status.clocks()
    }

    /// X-Raft-Index and X-Raft-Term.
    pub fn raft_index_term(&self) -> (u64, u64) {
        (
            self.status.commit_index.load(Ordering::SeqCst),
            self.status.term.load(Ordering::SeqCst),
        )
    }

    // Deletes stay allowed near the quota (they free space); other writes are refused while
    // less than a safety margin is left, because a commit that hits MapFull fails its whole
    // batch. LMDB's copy-on-write needs room for the pages a commit rewrites.
    fn over_quota(&self, body_bytes: usize) -> bool {
        let used = self.status.used_bytes.load(Ordering::SeqCst);
        let margin = (self.quota_bytes / 20).max(1 << 20);
        let need = (body_bytes as u64).saturating_mul(4);
        used.saturating_add(margin).saturating_add(need) > self.quota_bytes
    }
}
