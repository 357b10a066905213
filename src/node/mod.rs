//! The node thread: owns the Raft core and the tables of waiting requests, never waits on the
//! disk. It drains its input channel, steps the core, and hands each `Ready` to the WAL
//! thread (`disk.rs`) — one batch in flight at a time, so while one batch is fsynced the next
//! one accumulates (group commit). When entries are applied it publishes their events to the
//! watch hub first and then answers the clients, so a client that saw its write's response
//! never registers a watch that the write itself would wake.

pub mod batch;
pub mod bootstrap;
mod disk;
pub mod force;
mod handle;
mod inbox;
pub mod members;
pub mod snapshot;
mod waiters;

pub use handle::{FollowerStats, NodeHandle, Status, NO_SPACE_CAUSE, STOPPED_CAUSE, TIMEOUT_CAUSE};

use crate::raft::{ConfChange, Config, InitialState, Message, NodeId, Persisted, Raft, Role};
use crate::storage::lmdb::LmdbStorage;
use crate::storage::StorageError;
use crate::store::{Command, Event, V2Error, V2Store};
use crate::transport::Transport;
use crate::util::clock::{self, ClusterClock};
use crate::watch::WatchHub;
use batch::BatchOutcome;
use inbox::{Inbox, InboxSender};
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::Ordering;
use std::sync::mpsc::{self, Sender};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The reply to a proposal: the outer error is etcd's 300 family, the inner one a store error.
pub type ProposeReply = smol::channel::Sender<Result<Result<Event, V2Error>, V2Error>>;
/// The reply to a read barrier.
pub type ReadReply = smol::channel::Sender<Result<(), V2Error>>;
/// The reply to a membership change: once it applied on this member.
pub type MembershipReply = smol::channel::Sender<Result<(), V2Error>>;

/// Inputs of the node thread.
pub enum Input {
    /// A client write.
    Propose {
        /// The command to append.
        command: Command,
        /// Where to send the outcome once applied.
        reply: ProposeReply,
    },
    /// A linearizable read waiting for the read index to be applied.
    ReadIndex {
        /// Answered once it is safe to read locally.
        reply: ReadReply,
    },
    /// The WAL thread made the last Ready durable: the log through this index.
    Durable(Result<u64, StorageError>),
    /// The apply thread applied committed entries.
    Applied(Result<BatchOutcome, StorageError>),
    /// A message from a peer (the transport checked who sent it).
    Peer(Message),
    /// A membership change (etcd's members API), answered once applied here.
    ChangeMembership {
        /// The change.
        change: ConfChange,
        /// The member's record for an add or an update (encoded), empty for a removal.
        context: Vec<u8>,
        /// Where the outcome goes.
        reply: MembershipReply,
    },
    /// A snapshot the peer port received from the leader.
    InstallSnapshot(snapshot::Incoming),
    /// The apply thread installed a snapshot (inner error: nothing was installed).
    Installed(Result<Result<snapshot::Installed, String>, StorageError>),
    /// A snapshot transfer to a follower ended: the index it covered, or why it failed.
    SnapshotSent {
        /// The follower.
        to: NodeId,
        /// The outcome.
        outcome: Result<u64, String>,
    },
    /// The watchdog's liveness probe, answered as soon as the loop reads it.
    Ping {
        /// Where the answer goes.
        reply: mpsc::Sender<()>,
    },
    /// Stop.
    Shutdown,
}

/// Everything the node thread needs at start.
pub struct NodeParts {
    /// The open data dir.
    pub storage: Arc<LmdbStorage>,
    /// The state machine.
    pub store: Arc<V2Store>,
    /// The watch hub events are published to.
    pub hub: Arc<WatchHub>,
    /// This member's id.
    pub member_id: u64,
    /// Its cluster's id.
    pub cluster_id: u64,
    /// How long writes wait before the timeout error.
    pub request_timeout: Duration,
    /// Applied entries between log compactions (`--snapshot-count`).
    pub snapshot_count: u64,
    /// Every member of the cluster as of the applied index, this one included.
    pub members: Vec<crate::storage::MemberRecord>,
    /// `--heartbeat-interval`: the tick.
    pub heartbeat_interval: Duration,
    /// `--election-timeout`.
    pub election_timeout: Duration,
    /// Answer clients as soon as a batch has applied their (already committed) entries,
    /// before its fsync (a cluster without `--serializable-reads`: reads that could miss a
    /// write answered early all wait for the applied index, which moves only once durable).
    pub early_answers: bool,
    /// What this member publishes about itself once a leader is known (`Command::Publish`;
    /// not while it is the only voter: it knows itself).
    pub publish: Option<Command>,
    /// Members added by appended entries and not applied yet (the peer port lists them).
    pub unapplied_adds: members::UnappliedAdds,
    /// This member's record with the peer URLs it now advertises, when they differ from
    /// the cluster's record of it (it was moved to a new address): proposed as an update
    /// once a leader is known.
    pub readdress: Option<crate::storage::MemberRecord>,
}

/// How the transport hands peer messages to the node thread.
pub type Deliver = Box<dyn Fn(Message) + Send + Sync>;

/// Entries kept in memory behind the applied index of a cluster member, for followers
/// that lag (a follower further behind needs a snapshot). 2,000 covers 150 ms of lag at
/// the 13k PUT/s of a 2-core VM and seconds at a Pi's rates; with 256-byte values each
/// costs ~370 bytes of heap, which 5,000 made ~1.1 MiB more of a member's RSS.
pub const MEMORY_RETAIN: u64 = 2_000;
/// ... and at most this many payload bytes of them.
pub const MEMORY_RETAIN_BYTES: usize = 32 << 20;
/// Ticks per heartbeat interval.
const TICKS_PER_HEARTBEAT: u32 = 4;
/// Commands waiting for a leader to be elected; more are refused at once.
const AWAITING_LEADER_MAX: usize = 10_000;

/// A running node: its handle and the threads to join.
pub struct Running {
    /// The handle API workers use.
    pub handle: NodeHandle,
    /// The node thread.
    pub node_thread: std::thread::JoinHandle<Result<(), StorageError>>,
}

/// Starts the storage and node threads; `connect` starts the transport, given how to hand
/// the node what peers send.
pub fn start(
    parts: NodeParts,
    connect: impl FnOnce(Deliver) -> Result<Box<dyn Transport>, String>,
) -> Result<Running, StorageError> {
    let recovered = parts.storage.recover()?;
    let (wal, log) = disk::open_log(&parts.storage, &recovered)?;
    let voters: Vec<NodeId> = parts.members.iter().map(|m| m.id).collect();
    let multi = voters.len() > 1;
    let retain = if multi { MEMORY_RETAIN } else { 0 };
    let initial = initial_state(&parts.storage, &log, retain)?;
    // A tick is a quarter of the heartbeat interval: election timeouts are drawn from 4x as
    // many values as with etcd's one tick per heartbeat, so two followers time out in the
    // same tick (a split vote, one more timeout before writes resume) 4x less often.
    let heartbeat = parts.heartbeat_interval.max(Duration::from_millis(4));
    let tick = heartbeat / TICKS_PER_HEARTBEAT;
    let election_ticks = (parts.election_timeout.as_micros() / tick.as_micros().max(1))
        .clamp(2 * u128::from(TICKS_PER_HEARTBEAT), 1_000_000) as u32;
    let config = Config {
        seed: parts.member_id ^ clock::now_unix_nanos(),
        election_ticks,
        heartbeat_ticks: TICKS_PER_HEARTBEAT,
        ..Config::default()
    };
    let mut raft = Raft::new(parts.member_id, voters, initial, &config);
    let mut members = members::Members::new(
        parts.member_id,
        &parts.members,
        raft.log_entries(),
        Arc::clone(&parts.unapplied_adds),
    );
    let readdress = match &parts.readdress {
        Some(record) => {
            let context = crate::storage::format::encode("member record", record)?;
            let (reply, outcome) = smol::channel::bounded(1);
            members.wait(ConfChange::UpdateMember(parts.member_id), context, reply);
            log::info!(
                "this member now advertises peer URLs {}: updating the cluster's record",
                record.peer_urls.join(",")
            );
            Some(outcome)
        }
        None => None,
    };
    if multi {
        raft.hasten_first_election();
    }
    let (next_expiration, stored_clock, anchor) = {
        let view = parts.storage.read()?;
        (
            V2Store::next_expiration(&view)?,
            V2Store::clock(&view)?,
            V2Store::clock_anchor(&view)?,
        )
    };
    let cluster = ClusterClock::resume(
        stored_clock,
        anchor,
        clock::boot_id(),
        clock::now_unix_nanos(),
        clock::monotonic_nanos(),
    );
    let status = Arc::new(Status::default());
    status
        .voters
        .store(raft.voters().len() as u64, Ordering::SeqCst);
    status
        .used_bytes
        .store(parts.storage.used_bytes()?, Ordering::SeqCst);
    let (tx, rx) = inbox::channel();
    let peer_tx = tx.clone();
    let deliver: Deliver = Box::new(move |m| {
        // A forwarded write waits for the leader's WAL like a local one (see `inbox`).
        let _ = if matches!(m.body, crate::raft::MessageBody::Propose { .. }) {
            peer_tx.send_deferrable(Input::Peer(m))
        } else {
            peer_tx.send(Input::Peer(m))
        };
    });
    let transport = connect(deliver).map_err(|e| {
        StorageError::new(
            "start the peer transport",
            "",
            crate::storage::StorageErrorKind::Io(e),
        )
    })?;
    let first_index = parts.storage.first_index()?;
    let lmdb_durable = Arc::new(std::sync::atomic::AtomicU64::new(log.raft.applied));
    let waiters = waiters::Waiters::new(
        parts.member_id,
        raft.applied_index(),
        Arc::clone(&parts.hub),
    );
    let early_answers = multi && parts.early_answers;
    let (batch_tx, apply_tx) = disk::spawn(
        disk::WalThread {
            wal,
            durable: log.last_index,
            hard_state: log.raft.hard_state,
            status: Arc::clone(&status),
            lmdb_durable: Arc::clone(&lmdb_durable),
        },
        disk::ApplyThread {
            storage: Arc::clone(&parts.storage),
            store: Arc::clone(&parts.store),
            status: Arc::clone(&status),
            state: log.raft,
            first_index,
            snapshot_count: parts.snapshot_count,
            single: !multi,
            early_answers: early_answers.then(|| waiters.clone()),
            commit_window: APPLY_COMMIT_WINDOW,
            lmdb_durable,
            flush_through: 0,
        },
        tx.clone(),
    )?;
    let self_tx = tx.clone();
    let handle = NodeHandle {
        tx,
        status: Arc::clone(&status),
        request_timeout: parts.request_timeout,
        quota_bytes: parts.storage.map_bytes(),
    };
    let node = Node {
        storage: Arc::clone(&parts.storage),
        identity: crate::storage::Identity {
            cluster_id: parts.cluster_id,
            member_id: parts.member_id,
        },
        self_tx,
        install_wanted: None,
        installing: None,
        deferred: std::collections::VecDeque::new(),
        deferred_peers: 0,
        wal_restored: None,
        raft,
        hub: parts.hub,
        status,
        batch_tx,
        apply_tx,
        batch_busy: false,
        write_waiting: false,
        durable_index: log.last_index,
        wal_hard_state: log.raft.hard_state,
        latest_hard_state: log.raft.hard_state,
        applies_outstanding: std::collections::VecDeque::new(),
        waiters: waiters.clone(),
        known_leader: None,
        awaiting_leader: Vec::new(),
        reads_awaiting_leader: Vec::new(),
        reads: Vec::new(),
        read_requests: BTreeMap::new(),
        // Random like the request ids: a leader may still answer a read a previous run of
        // this member asked for, and that answer must not match a new request.
        next_read_ctx: request_id_base(),
        next_request: request_id_base(),
        next_expiration,
        sync_proposed: None,
        sync_not_before: 0,
        transport,
        tick,
        next_tick: Instant::now() + tick,
        stopping: None,
        publish: match &parts.publish {
            Some(cmd) => Some(batch::encode_command(cmd)?),
            None => None,
        },
        publish_attempt: None,
        cluster,
        heartbeats_sent: HashMap::new(),
        members,
        readdress,
        flush_sent: 0,
    };
    let mut node = node;
    node.publish_status();
    let node_thread = std::thread::Builder::new()
        .name("node".into())
        .spawn(move || node.run(rx))
        .map_err(|e| {
            StorageError::new(
                "start node thread",
                "",
                crate::storage::StorageErrorKind::Io(e.to_string()),
            )
        })?;
    Ok(Running {
        handle,
        node_thread,
    })
}

// Request ids tag forwarded commands in the log, where they outlive the process: a restart
// must not reuse the ids of entries a previous run forwarded and that may still be applied
// now. A random base (std's hasher keys come from the OS) makes a collision negligible.
fn request_id_base() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(clock::now_unix_nanos());
    h.finish()
}

// The core holds in memory the log after the applied index (durable entries a restart has
// not applied yet, from the WAL) and, in a cluster, up to `retain` applied entries before it
// (from LMDB) for followers that lag; the entry before the first one loaded gives its term.
fn initial_state(
    storage: &LmdbStorage,
    log: &disk::DurableLog,
    retain: u64,
) -> Result<InitialState, StorageError> {
    let applied = log.raft.applied;
    let disk_first = storage.first_index()?;
    // The entry at `from - 1` must be on disk for its term (index 0 has term 0).
    let mut from = applied.saturating_sub(retain).max(1);
    if disk_first > 1 {
        from = from.max(disk_first + 1);
    }
    from = from.min(applied + 1);
    let before = from - 1;
    let mut entries = if before < applied {
        storage.entries(before.max(1), applied)?
    } else {
        Vec::new()
    };
    let compacted_term = if before == 0 {
        0
    } else if before == applied && entries.is_empty() {
        if log.tail.is_empty() {
            log.last_term
        } else {
            storage
                .entries(applied, applied)?
                .first()
                .map(|e| e.term)
                .ok_or_else(|| {
                    StorageError::corrupt(
                        "read the log at the applied index",
                        format!("entry {applied} is missing"),
                    )
                })?
        }
    } else {
        match entries.first() {
            Some(e) if e.index == before => {
                let term = e.term;
                entries.remove(0);
                term
            }
            _ => {
                return Err(StorageError::corrupt(
                    "read the log after the applied index",
                    format!("entry {before} is missing"),
                ))
            }
        }
    };
    entries.extend(log.tail.iter().cloned());
    Ok(InitialState {
        hard_state: log.raft.hard_state,
        applied,
        compacted_index: before,
        compacted_term,
        entries,
    })
}

struct Node {
    raft: Raft,
    hub: Arc<WatchHub>,
    /// The data dir (read for snapshots sent to followers).
    storage: Arc<LmdbStorage>,
    /// This member and its cluster.
    identity: crate::storage::Identity,
    /// The node's own input, for the threads it starts.
    self_tx: InboxSender<Input>,
    /// A received snapshot waiting for the pipeline to be idle.
    install_wanted: Option<snapshot::Incoming>,
    /// The snapshot the apply thread is installing: the core is frozen meanwhile.
    installing: Option<snapshot::Incoming>,
    /// Inputs that arrived during an install.
    deferred: std::collections::VecDeque<Input>,
    /// How many of them are peer messages.
    deferred_peers: usize,
    /// A snapshot was installed: the next WAL job restarts the WAL from this.
    wal_restored: Option<disk::Restart>,
    status: Arc<Status>,
    batch_tx: Sender<disk::WalJob>,
    /// Where committed entries that are durable already go to be applied.
    apply_tx: Sender<disk::ApplyInput>,
    /// A Ready is with the WAL thread.
    batch_busy: bool,
    /// The leader holds its next write back (see [`Raft::own_write_can_wait`]).
    write_waiting: bool,
    /// The log is durable through this index (the WAL thread's last report).
    durable_index: u64,
    /// The term and vote last handed to the WAL thread.
    wal_hard_state: crate::raft::HardState,
    /// The newest hard state the core handed out.
    latest_hard_state: crate::raft::HardState,
    /// The last index of each batch of committed entries handed out and not yet applied.
    applies_outstanding: std::collections::VecDeque<u64>,
    /// This member's proposals as leader and the commands it forwarded, waiting to apply.
    waiters: waiters::Waiters,
    /// The leader as of the last loop, to notice a change.
    known_leader: Option<NodeId>,
    /// Commands that arrived while no leader was known.
    awaiting_leader: Vec<(Vec<u8>, ProposeReply)>,
    /// Linearizable reads that arrived while no leader was known.
    reads_awaiting_leader: Vec<ReadReply>,
    /// Linearizable reads waiting for (read index, reply).
    reads: Vec<(u64, ReadReply)>,
    /// Reads waiting for their read index, by request context.
    read_requests: BTreeMap<u64, ReadReply>,
    next_read_ctx: u64,
    next_request: u64,
    next_expiration: Option<u64>,
    /// When this member, as leader, last proposed an expiry (`Sync`) not yet applied.
    sync_proposed: Option<Instant>,
    /// No expiry proposal before this time (backoff after the disk was full).
    sync_not_before: u64,
    transport: Box<dyn Transport>,
    /// The tick of a cluster member (see [`Node::single`]: a single member never ticks).
    tick: Duration,
    next_tick: Instant,
    /// A graceful stop is under way: leadership is being handed over until this deadline.
    stopping: Option<Instant>,
    /// The encoded `Publish` still to be applied.
    publish: Option<Vec<u8>>,
    /// The publish proposal in flight: when it went, and where its outcome arrives.
    publish_attempt: Option<(Instant, PublishOutcome)>,
    /// Cluster time: TTLs are counted in it.
    cluster: ClusterClock,
    /// The highest index a `Flush` was sent for: the apply thread commits without a window
    /// until it has applied that far, so a read at or below it needs no other.
    flush_sent: u64,
    /// The last heartbeat round sent to each follower and when, to time its answer.
    heartbeats_sent: HashMap<NodeId, (u64, Instant)>,
    /// Where the members listen, and the membership changes clients wait for.
    members: members::Members,
    /// The outcome of this member's update of its own peer URLs, while it is pending.
    readdress: Option<smol::channel::Receiver<Result<(), V2Error>>>,
}

type PublishOutcome = smol::channel::Receiver<Result<Result<Event, V2Error>, V2Error>>;

/// A publish not applied within this time is proposed again.
const PUBLISH_RETRY: Duration = Duration::from_secs(3);

/// An expiry proposal not applied within this time was lost (with a leader, or refused).
const SYNC_RETRY: Duration = Duration::from_secs(2);
/// How long a cluster member's apply transaction takes in further committed entries before
/// it commits (its clients are answered before the commit; readers that need the commit
/// end the window at once). Each commit is an fdatasync on the disk the WALs use; measured on
/// the project's 2-core VM, 3 members on loopback, 4 interleaved runs each: sequential PUT p50
/// on the leader 1.53 -> 1.27 ms (p99 7.6 -> 4.4 ms), PUT/s at 63 connections 4750 -> 5800
/// with a 10 ms window; 50 ms against 10 ms, 3 interleaved runs: p50 1.29-1.83 against
/// 1.55-2.54 ms. Longer only delays what waits for LMDB anyway (compaction, WAL release).
const APPLY_COMMIT_WINDOW: Duration = Duration::from_millis(50);
/// How long a stopping leader waits for its transfer to take effect.
const TRANSFER_WAIT: Duration = Duration::from_secs(2);

impl Node {
    fn run(mut self, mut rx: Inbox<Input>) -> Result<(), StorageError> {
        // The leader's no-op is already in the log: commit it now, not with the first request.
        self.maybe_send_batch();
        loop {
            // While a Ready is with the WAL thread, its answer comes within one fsync, and
            // writes that arrive meanwhile wait for it (see `inbox`).
            let input = match rx.recv(self.wait_timeout(), self.batch_busy || self.write_waiting) {
                Ok(input) => input,
                Err(inbox::Disconnected) => return Ok(()),
            };
            let mut next = input;
            while let Some(input) = next {
                if let Some(input) = self.defer_while_installing(input) {
                    if !self.handle(input)? {
                        return Ok(());
                    }
                }
                next = rx.try_recv();
            }
            if self.installing.is_some() {
                // The core is frozen until the snapshot is in (see `snapshot`).
                continue;
            }
            while let Some(input) = self.deferred.pop_front() {
                if !self.handle(input)? {
                    return Ok(());
                }
                if self.installing.is_some() {
                    break;
                }
            }
            if self.stopped() {
                self.fail_all(STOPPED_CAUSE);
                return Ok(());
            }
            self.maybe_tick();
            for peer in self.transport.unreachable() {
                self.raft.report_unreachable(peer);
                if self.raft.role() == Role::Leader {
                    if let Ok(mut f) = self.status.followers.lock() {
                        f.entry(peer).or_default().fail += 1;
                    }
                }
            }
            self.on_leader_change();
            self.flush_awaiting_leader();
            self.maybe_publish();
            self.check_readdress();
            self.maybe_propose_sync();
            self.maybe_start_install();
            self.maybe_send_batch();
            self.link_peers();
            self.send_messages();
            self.take_read_states();
            self.publish_status();
        }
    }

    // The transport reaches whom Raft talks to: the voters; the leader, which may be one no
    // longer (a leader that removed itself leads until its removal commits); and on a
    // leader the members it still replicates to (one being removed, until it holds its
    // removal).
    fn link_peers(&mut self) {
        let mut talking_to = self.raft.voters().to_vec();
        talking_to.extend(self.raft.leader());
        talking_to.extend(self.raft.follower_matches().into_iter().map(|(id, _)| id));
        if let Some(peers) = self.members.peers_to_link(talking_to) {
            if let Err(e) = self.transport.set_peers(&peers) {
                log::warn!("cannot reach the members now in the cluster: {e}");
            }
        }
        self.status
            .voters
            .store(self.raft.voters().len() as u64, Ordering::SeqCst);
    }

    fn change_membership(&mut self, change: ConfChange, context: Vec<u8>, reply: MembershipReply) {
        if self.stopping.is_some() {
            let _ = reply.try_send(Err(V2Error::new(300, STOPPED_CAUSE, 0)));
            return;
        }
        self.members.wait(change, context, reply);
        self.members.ask(&mut self.raft, Instant::now());
        self.link_peers();
    }

    // A single member idle without TTL keys has no timer at all: the server writes nothing
    // and wakes for nothing. With TTL keys the loop wakes when the earliest one expires; a
    // cluster member wakes every tick.
    fn wait_timeout(&self) -> Option<Duration> {
        let now = Instant::now();
        let tick = (!self.single()).then(|| self.next_tick.saturating_duration_since(now));
        let expiry = self.expiry_wait();
        match (tick, expiry) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn expiry_wait(&self) -> Option<Duration> {
        if self.sync_proposed.is_some() || self.raft.role() != Role::Leader {
            return None;
        }
        let at = self.next_expiration?.max(self.sync_not_before);
        let now = self.cluster.now();
        Some(Duration::from_nanos(at.saturating_sub(now)) + Duration::from_millis(1))
    }

    // The only voter, this member: it elects itself, needs no timers and keeps no log for
    // followers. A member added to it (or joined to a cluster it is not a voter of yet) is
    // not single: the cluster's shape is the log's, not the command line's.
    fn single(&self) -> bool {
        self.raft.voters() == [self.raft.id()]
    }

    fn maybe_tick(&mut self) {
        if self.single() {
            return;
        }
        let tick = self.tick;
        let now = Instant::now();
        if now < self.next_tick {
            return;
        }
        self.update_core_clock();
        self.raft.tick();
        // After a long stall (the process was stopped) one tick is counted, not a burst:
        // a burst would expire every timer at once.
        self.next_tick = (self.next_tick + tick).max(now);
        if let Some(at) = self.sync_proposed {
            if now.duration_since(at) > SYNC_RETRY {
                self.sync_proposed = None;
            }
        }
        self.drop_abandoned();
    }

    // Requests whose client gave up (timed out, disconnected) are dropped: under a long
    // partition they would otherwise pile up.
    fn drop_abandoned(&mut self) {
        self.waiters.drop_abandoned();
        self.awaiting_leader.retain(|(_, r)| !r.is_closed());
        self.reads_awaiting_leader.retain(|r| !r.is_closed());
        self.read_requests.retain(|_, r| !r.is_closed());
        self.reads.retain(|(_, r)| !r.is_closed());
        self.members.drop_abandoned();
    }

    fn handle(&mut self, input: Input) -> Result<bool, StorageError> {
        // Heartbeats also go out between ticks (a ReadIndex round): they carry the clock as
        // it is now, not as it was at the last tick. Set on every member: a vote won while
        // handling this input sends appends at once, and they carry the time the new
        // leader is about to lead with (followers that never heard the old leader's time
        // take it from them).
        self.update_core_clock();
        match input {
            Input::Propose { command, reply } => self.propose(command, reply),
            Input::ReadIndex { reply } => self.read_index(reply),
            Input::Durable(outcome) => self.on_durable(outcome)?,
            Input::Applied(outcome) => self.on_applied(outcome)?,
            Input::Peer(m) => {
                self.observe_peer(&m);
                self.raft.step(m);
            }
            Input::ChangeMembership {
                change,
                context,
                reply,
            } => self.change_membership(change, context, reply),
            Input::InstallSnapshot(incoming) => self.snapshot_received(incoming),
            Input::Installed(outcome) => self.on_installed(outcome)?,
            Input::SnapshotSent { to, outcome } => self.snapshot_sent(to, outcome),
            Input::Ping { reply } => {
                let _ = reply.send(());
            }
            Input::Shutdown => return Ok(self.begin_stop()),
        }
        Ok(true)
    }

    // A leader of a cluster hands leadership to its most up-to-date follower before it
    // stops, so a planned restart costs no election timeout; anyone else stops at once.
    fn begin_stop(&mut self) -> bool {
        if self.stopping.is_some() {
            return true;
        }
        if self.raft.role() != Role::Leader || self.raft.voters().len() < 2 {
            self.fail_all(STOPPED_CAUSE);
            return false;
        }
        let Some(target) = self.raft.best_transfer_target() else {
            self.fail_all(STOPPED_CAUSE);
            return false;
        };
        match self.raft.transfer_leader(target) {
            Ok(()) => {
                log::info!("handing leadership to {target:x} before stopping");
                self.stopping = Some(Instant::now() + TRANSFER_WAIT);
                true
            }
            Err(e) => {
                log::warn!("cannot hand leadership to {target:x}: {e}");
                self.fail_all(STOPPED_CAUSE);
                false
            }
        }
    }

    fn stopped(&mut self) -> bool {
        let Some(deadline) = self.stopping else {
            return false;
        };
        if self.raft.role() != Role::Leader {
            // Let the TimeoutNow and the last appends leave before the sockets close.
            self.send_messages();
            return true;
        }
        Instant::now() >= deadline
    }

    fn read_index(&mut self, reply: ReadReply) {
        if self.stopping.is_some() {
            let _ = reply.try_send(Err(V2Error::new(300, STOPPED_CAUSE, 0)));
            return;
        }
        let ctx = self.next_read_ctx;
        self.next_read_ctx = self.next_read_ctx.wrapping_add(1);
        match self.raft.read_index(ctx) {
            Ok(()) => {
                self.read_requests.insert(ctx, reply);
                // A single voter answers at once.
                self.take_read_states();
            }
            Err(crate::raft::ProposeError::NoLeader) => self.reads_awaiting_leader.push(reply),
            Err(e) => {
                let _ = reply.try_send(Err(V2Error::new(
                    crate::store::error::RAFT_INTERNAL,
                    e.to_string(),
                    0,
                )));
            }
        }
    }

    fn take_read_states(&mut self) {
        for rs in self.raft.take_read_states() {
            self.on_read_state(rs);
        }
    }

    fn on_read_state(&mut self, rs: crate::raft::ReadState) {
        let Some(reply) = self.read_requests.remove(&rs.ctx) else {
            return;
        };
        if rs.index <= self.raft.applied_index() {
            let _ = reply.try_send(Ok(()));
        } else {
            // The apply thread may be holding its transaction open for more entries.
            if rs.index > self.flush_sent {
                self.flush_sent = rs.index;
                let _ = self.apply_tx.send(disk::ApplyInput::Flush(rs.index));
            }
            self.reads.push((rs.index, reply));
        }
    }

    fn propose(&mut self, command: Command, reply: ProposeReply) {
        if self.stopping.is_some() {
            let _ = reply.try_send(Err(V2Error::new(300, STOPPED_CAUSE, 0)));
            return;
        }
        let encoded = match batch::encode_command(&command) {
            Ok(e) => e,
            Err(e) => {
                let _ = reply.try_send(Err(V2Error::new(300, e.to_string(), 0)));
                return;
            }
        };
        self.propose_encoded(encoded, reply);
    }

    fn propose_encoded(&mut self, encoded: Vec<u8>, reply: ProposeReply) {
        if self.raft.role() == Role::Leader {
            match self.raft.propose(encoded) {
                Ok(index) => {
                    let term = self.raft.term();
                    self.waiters.lock().pending.insert(index, (term, reply));
                }
                Err(e) => {
                    let _ = reply.try_send(Err(V2Error::new(300, e.to_string(), 0)));
                }
            }
            return;
        }
        if self.raft.leader().is_none() {
            if self.awaiting_leader.len() >= AWAITING_LEADER_MAX {
                let _ = reply.try_send(Err(V2Error::new(300, TIMEOUT_CAUSE, 0)));
            } else {
                self.awaiting_leader.push((encoded, reply));
            }
            return;
        }
        let request = self.next_request;
        self.next_request = self.next_request.wrapping_add(1);
        match self.raft.forward(request, encoded) {
            Ok(()) => {
                let leader = self.raft.leader().unwrap_or(0);
                self.waiters
                    .lock()
                    .forwarded
                    .insert(request, (leader, reply));
            }
            Err(e) => {
                let _ = reply.try_send(Err(V2Error::new(300, e.to_string(), 0)));
            }
        }
    }

    // Commands forwarded to a leader that is gone are probably lost with it: their clients
    // get etcd's "previous leader failure" error now rather than after the whole request
    // timeout, and can retry on the new leader (the write may still apply, as after any
    // timeout). Read requests are idempotent: they go again to the new leader.
    fn on_leader_change(&mut self) {
        let leader = self.raft.leader();
        if leader == self.known_leader {
            return;
        }
        // etcd logs these too: the first thing to look for when a cluster misbehaves.
        match leader {
            Some(l) if l == self.raft.id() => {
                log::info!("elected leader at term {}", self.raft.term())
            }
            Some(l) => log::info!("leader is {l:x} at term {}", self.raft.term()),
            None => log::info!("no leader at term {}", self.raft.term()),
        }
        self.known_leader = leader;
        self.members.leader_changed();
        let Some(now) = leader else {
            return;
        };
        self.waiters.lock().forwarded.retain(|_, (to, reply)| {
            if *to == now {
                return true;
            }
            let _ = reply.try_send(Err(V2Error::new(300, LOST_CAUSE, 0)));
            false
        });
        // Reads asked of the old leader are asked again, of the new one (this member
        // too: a survivor that wins the election answers its own waiting reads instead of
        // letting them time out). An answer that still comes from the old leader is taken
        // once; the other is dropped.
        let asked: Vec<u64> = self.read_requests.keys().copied().collect();
        for ctx in asked {
            let _ = self.raft.read_index(ctx);
        }
    }

    fn flush_awaiting_leader(&mut self) {
        self.members.ask(&mut self.raft, Instant::now());
        if self.raft.leader().is_none() {
            return;
        }
        for (encoded, reply) in std::mem::take(&mut self.awaiting_leader) {
            self.propose_encoded(encoded, reply);
        }
        for reply in std::mem::take(&mut self.reads_awaiting_leader) {
            self.read_index(reply);
        }
    }

    fn check_readdress(&mut self) {
        let Some(outcome) = &self.readdress else {
            return;
        };
        match outcome.try_recv() {
            Err(smol::channel::TryRecvError::Empty) => return,
            Ok(Ok(())) => log::info!("the cluster has this member's new peer URLs"),
            Ok(Err(e)) => log::warn!(
                "the cluster refused this member's new peer URLs: {} (update them with PUT /v2/members/{:x})",
                e.cause,
                self.raft.id()
            ),
            Err(smol::channel::TryRecvError::Closed) => {}
        }
        self.readdress = None;
    }

    fn maybe_publish(&mut self) {
        // A single member knows itself; once another is added it publishes like any.
        if self.single() {
            return;
        }
        let Some(encoded) = &self.publish else {
            return;
        };
        if let Some((at, outcome)) = &self.publish_attempt {
            match outcome.try_recv() {
                // Applied (a publish yields no event: the inner result does not matter).
                Ok(Ok(_)) => {
                    self.publish = None;
                    self.publish_attempt = None;
                    return;
                }
                Ok(Err(_)) | Err(smol::channel::TryRecvError::Closed) => {}
                Err(smol::channel::TryRecvError::Empty) if at.elapsed() < PUBLISH_RETRY => return,
                Err(smol::channel::TryRecvError::Empty) => {}
            }
        }
        if self.raft.leader().is_none() || self.stopping.is_some() {
            self.publish_attempt = None;
            return;
        }
        let (reply, outcome) = smol::channel::bounded(1);
        let encoded = encoded.clone();
        self.publish_attempt = Some((Instant::now(), outcome));
        self.propose_encoded(encoded, reply);
    }

    // Only the leader decides expiry, so that every member expires a key at the same log
    // position; it proposes only while TTL keys exist (an idle cluster writes nothing).
    fn maybe_propose_sync(&mut self) {
        if self.raft.role() != Role::Leader || self.sync_proposed.is_some() {
            return;
        }
        let Some(at) = self.next_expiration else {
            return;
        };
        let at = at.max(self.sync_not_before);
        let now = self.cluster.now();
        if now < at {
            return;
        }
        if let Ok(encoded) = batch::encode_command(&Command::Sync { now }) {
            if self.raft.propose(encoded).is_ok() {
                self.sync_proposed = Some(Instant::now());
            }
        }
    }

    fn maybe_send_batch(&mut self) {
        loop {
            if self.batch_busy {
                return;
            }
            self.write_waiting = self.raft.own_write_can_wait();
            if self.write_waiting {
                return;
            }
            // A single member's clients wait for the apply anyway: while one batch applies
            // and the next is in the WAL, let the one after grow instead of syncing small
            // ones (measured: small WAL batches took the disk's syncs from LMDB's commits).
            if self.single() && self.applies_outstanding.len() >= 2 {
                return;
            }
            let Some(mut ready) = self.raft.ready() else {
                return;
            };
            // Before the messages: appends to a member this batch adds need its address.
            if ready
                .entries
                .iter()
                .any(|e| e.payload.membership().is_some())
            {
                self.members.appended(&ready.entries);
                self.note_adds_alone(&ready.entries);
                self.link_peers();
            }
            // Messages go before the disk work: a leader replicates while its own fsync
            // runs, and what depends on durability the core holds back itself.
            let messages = std::mem::take(&mut ready.messages);
            self.send(messages);
            for rs in std::mem::take(&mut ready.read_states) {
                self.on_read_state(rs);
            }
            if !ready.needs_persist() {
                return;
            }
            if let Some(last) = ready.committed_entries.last() {
                self.applies_outstanding.push_back(last.index);
            }
            if let Some(hs) = ready.hard_state {
                self.latest_hard_state = hs;
            }
            let new_vote = ready.hard_state.is_some_and(|hs| {
                hs.term != self.wal_hard_state.term || hs.vote != self.wal_hard_state.vote
            });
            let committed_durable = ready
                .committed_entries
                .last()
                .is_none_or(|e| e.index <= self.durable_index);
            if ready.entries.is_empty() && !new_vote && committed_durable {
                // Nothing to make durable (a commit index alone is learned again from the
                // leader after a crash): apply at once, one thread hop fewer on the path of
                // every answer.
                if !ready.committed_entries.is_empty() {
                    let job = disk::ApplyJob {
                        committed: ready.committed_entries,
                        hard_state: self.latest_hard_state,
                    };
                    if self.apply_tx.send(disk::ApplyInput::Job(job)).is_err() {
                        return;
                    }
                }
                self.raft.advance(Persisted {
                    durable_index: self.durable_index,
                    applied_index: self.raft.applied_index(),
                });
                continue;
            }
            // Committed entries the log holds durably already go to the apply thread now,
            // not behind this Ready's write: under load nearly every Ready also carries new
            // entries, and their write held each answer for one more WAL write. Measured on
            // a leader, 3 members, 64 connections: commit to answer 0.92-1.0 -> 0.55-0.61
            // ms. They queue before whatever the WAL thread passes on after this write.
            // The core's durable index, not the WAL's last: a tail a newer leader overwrote
            // is in the WAL until this Ready's write replaces it.
            let durable = self.raft.persisted_index();
            let durable_part = ready
                .committed_entries
                .partition_point(|e| e.index <= durable);
            if durable_part > 0 {
                let job = disk::ApplyJob {
                    committed: ready.committed_entries.drain(..durable_part).collect(),
                    // The term and vote durable now: this Ready's are not yet.
                    hard_state: crate::raft::HardState {
                        commit: self.latest_hard_state.commit,
                        ..self.wal_hard_state
                    },
                };
                if self.apply_tx.send(disk::ApplyInput::Job(job)).is_err() {
                    return;
                }
            }
            if let Some(hs) = ready.hard_state {
                self.wal_hard_state = hs;
            }
            let job = disk::WalJob {
                hard_state: ready.hard_state,
                entries: ready.entries,
                committed: ready.committed_entries,
                restored: self.wal_restored.take(),
            };
            if self.batch_tx.send(job).is_ok() {
                self.batch_busy = true;
            }
            return;
        }
    }

    fn send_messages(&mut self) {
        let messages = self.raft.take_messages();
        self.send(messages);
        self.send_snapshots();
    }

    fn send(&mut self, messages: Vec<Message>) {
        if messages.is_empty() {
            return;
        }
        let now = Instant::now();
        let mut appends = 0;
        for m in &messages {
            match m.body {
                crate::raft::MessageBody::Heartbeat { seq, .. } => {
                    appends += 1;
                    self.heartbeats_sent.insert(m.to, (seq, now));
                }
                crate::raft::MessageBody::Append { .. } => appends += 1,
                _ => {}
            }
        }
        self.status
            .appends_sent
            .fetch_add(appends, Ordering::Relaxed);
        self.transport.send(messages);
    }

    // Statistics only: what etcd's /v2/stats show (append counts, heartbeat round trips).
    fn observe_peer(&mut self, m: &Message) {
        match m.body {
            crate::raft::MessageBody::Append { .. }
            | crate::raft::MessageBody::Heartbeat { .. } => {
                self.status.appends_received.fetch_add(1, Ordering::Relaxed);
            }
            crate::raft::MessageBody::HeartbeatResponse { seq } => {
                if let Some((sent_seq, at)) = self.heartbeats_sent.get(&m.from) {
                    if *sent_seq == seq && self.raft.role() == Role::Leader {
                        let ms = at.elapsed().as_secs_f64() * 1000.0;
                        self.heartbeats_sent.remove(&m.from);
                        if let Ok(mut f) = self.status.followers.lock() {
                            f.entry(m.from).or_default().sample(ms);
                        }
                    }
                }
            }
            _ => {}
        }
    }

    // A leader that was the only voter and appended the add of a second (see
    // `Members::appended_alone`).
    fn note_adds_alone(&mut self, entries: &[crate::raft::Entry]) {
        if self.raft.role() != Role::Leader {
            return;
        }
        let me = self.raft.id();
        for e in entries {
            if let Some((change @ ConfChange::AddVoter(added), context)) = e.payload.membership() {
                let before: Vec<NodeId> = self
                    .raft
                    .voters()
                    .iter()
                    .copied()
                    .filter(|v| *v != added)
                    .collect();
                if before == [me] {
                    self.members.appended_alone(e.index, change, context);
                }
            }
        }
    }

    fn on_durable(&mut self, outcome: Result<u64, StorageError>) -> Result<(), StorageError> {
        self.batch_busy = false;
        let durable_index = match outcome {
            Ok(index) => index,
            Err(e) => {
                // The disk cannot be trusted: stop writing (a restart recovers from what is
                // durable).
                self.fail_all(STOPPED_CAUSE);
                return Err(e);
            }
        };
        self.durable_index = durable_index;
        self.raft.advance(Persisted {
            durable_index,
            applied_index: self.raft.applied_index(),
        });
        self.members.durable(durable_index);
        Ok(())
    }

    fn on_applied(
        &mut self,
        outcome: Result<BatchOutcome, StorageError>,
    ) -> Result<(), StorageError> {
        let outcome = match outcome {
            Ok(o) => o,
            Err(e) => {
                self.fail_all(STOPPED_CAUSE);
                return Err(e);
            }
        };
        let before = self.raft.applied_index();
        self.raft.applied_to(outcome.applied_index);
        self.membership_applied(before);
        while self
            .applies_outstanding
            .front()
            .is_some_and(|&i| i <= outcome.applied_index)
        {
            self.applies_outstanding.pop_front();
        }
        self.compact_memory();
        self.cluster.observe(outcome.clock);
        self.next_expiration = outcome.next_expiration;
        if outcome.applied_sync {
            self.sync_proposed = None;
        }
        self.deliver_results(outcome.results);
        // Entries without a command (a leader's no-op) have no waiter; waiters below the
        // applied index that got no result were never going to get one.
        self.answer_reads_through(self.raft.applied_index());
        Ok(())
    }

    // The applied index reached `applied`: proposals below it that got no result never
    // will; reads waiting for it may go.
    fn answer_reads_through(&mut self, applied: u64) {
        {
            let mut w = self.waiters.lock();
            let later = w.pending.split_off(&(applied.saturating_add(1)));
            for (_, (_, reply)) in std::mem::replace(&mut w.pending, later) {
                let _ = reply.try_send(Err(V2Error::new(300, LOST_CAUSE, 0)));
            }
        }
        let (ready, waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut self.reads)
            .into_iter()
            .partition(|(index, _)| *index <= applied);
        self.reads = waiting;
        for (_, reply) in ready {
            let _ = reply.try_send(Ok(()));
        }
    }

    // Membership changes applied since `before`: their clients are answered (what they
    // see in the members list now includes the change), and a member that applied its own
    // removal stops (once it has handed leadership over, if it led).
    fn membership_applied(&mut self, before: u64) {
        let applied = self.raft.applied_index();
        let changes: Vec<(u64, ConfChange, Vec<u8>)> = self
            .raft
            .log_entries()
            .iter()
            .filter(|e| e.index > before && e.index <= applied)
            .filter_map(|e| {
                e.payload
                    .membership()
                    .map(|(c, ctx)| (e.index, c, ctx.to_vec()))
            })
            .collect();
        for (index, change, context) in changes {
            self.members.applied(change, &context);
            if change == ConfChange::RemoveVoter(self.raft.id()) {
                log::warn!(
                    "member {:x} was removed from the cluster (entry {index}): stopping; its id is never used again (to bring this board back, empty its data dir and add it as a new member)",
                    self.raft.id()
                );
                self.status.removed.store(true, Ordering::SeqCst);
                self.status.stopping.store(true, Ordering::SeqCst);
                if self.stopping.is_none() {
                    self.stopping = Some(Instant::now() + TRANSFER_WAIT);
                }
            }
        }
    }

    // Events go to the watch hub first, then the clients are answered, so a client that saw
    // its write's response never registers a watch the write itself would wake. Entries
    // already delivered (early, before a batch whose commit then failed and is applied
    // again) are not published twice.
    fn deliver_results(&mut self, results: Vec<batch::AppliedEntry>) {
        if results.is_empty() {
            return;
        }
        self.waiters.deliver(results);
        self.publish_status();
    }

    // What is applied is on disk: a single member drops it from memory at once; a cluster
    // member keeps a tail (bounded in entries and bytes) for followers that lag.
    fn compact_memory(&mut self) {
        let applied = self.raft.applied_index();
        if self.single() {
            self.raft.compact(applied);
            return;
        }
        let first = self.raft.first_index();
        // Compact in steps, not every batch: the byte count walks the retained entries.
        if applied < first.saturating_add(MEMORY_RETAIN + MEMORY_RETAIN / 10) {
            return;
        }
        let mut cut = applied.saturating_sub(MEMORY_RETAIN);
        let mut bytes = 0usize;
        for e in self.raft.log_entries().iter().rev() {
            if e.index > applied {
                continue;
            }
            if e.index <= cut {
                break;
            }
            bytes += e.payload.command().map_or(0, <[u8]>::len);
            if bytes > MEMORY_RETAIN_BYTES {
                cut = e.index;
                break;
            }
        }
        self.raft.compact(cut);
    }

    // The core's copy of the cluster clock, and whether a leader set it (a provisional one,
    // a fresh member's own wall clock, is not offered in votes).
    fn update_core_clock(&mut self) {
        self.raft
            .set_clock(self.cluster.now(), self.cluster.is_fixed());
    }

    fn publish_status(&mut self) {
        if self.raft.role() == Role::Leader {
            // A member elected on a provisional clock (a fresh data dir, its own wall
            // clock) takes the time its voters or an earlier leader established first.
            if !self.cluster.is_fixed() {
                self.cluster.follow(self.raft.leader_clock());
            }
            self.cluster.fix();
        } else {
            self.cluster.follow(self.raft.leader_clock());
        }
        if let Ok(mut c) = self.status.clock.lock() {
            *c = Some(self.cluster);
        }
        let leader = self.raft.role() == Role::Leader;
        if self.status.is_leader.swap(leader, Ordering::SeqCst) != leader {
            // A new term of leadership starts its follower statistics afresh.
            if let Ok(mut f) = self.status.followers.lock() {
                f.clear();
                if leader {
                    for (id, _) in self.raft.follower_matches() {
                        f.insert(id, FollowerStats::default());
                    }
                }
            }
        }
        self.status
            .commit_index
            .store(self.raft.commit_index(), Ordering::SeqCst);
        self.status.term.store(self.raft.term(), Ordering::SeqCst);
        self.status
            .leader
            .store(self.raft.leader().unwrap_or(0), Ordering::SeqCst);
    }

    fn fail_all(&mut self, cause: &str) {
        self.waiters.fail_all(cause);
        for (_, reply) in std::mem::take(&mut self.awaiting_leader) {
            let _ = reply.try_send(Err(V2Error::new(300, cause, 0)));
        }
        for reply in std::mem::take(&mut self.reads_awaiting_leader) {
            let _ = reply.try_send(Err(V2Error::new(300, cause, 0)));
        }
        for (_, reply) in std::mem::take(&mut self.reads) {
            let _ = reply.try_send(Err(V2Error::new(300, cause, 0)));
        }
        for (_, reply) in std::mem::take(&mut self.read_requests) {
            let _ = reply.try_send(Err(V2Error::new(300, cause, 0)));
        }
        self.members.fail_all(cause);
    }
}

/// etcd's cause when a write was lost with the leader that took it.
pub const LOST_CAUSE: &str =
    "etcdserver: request timed out, possibly due to previous leader failure";
