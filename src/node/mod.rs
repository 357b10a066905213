//! The node thread: owns the Raft core and the tables of waiting requests, never waits on the
//! disk. It drains its input channel, steps the core, and hands each `Ready` to the storage
//! thread — one batch in flight at a time, so while one batch is fsynced the next one
//! accumulates (group commit). When a batch is durable it publishes the applied events to the
//! watch hub first and then answers the clients, so a client that saw its write's response
//! never registers a watch that the write itself would wake.

pub mod batch;
pub mod bootstrap;
mod handle;

pub use handle::{NodeHandle, Status, NO_SPACE_CAUSE, STOPPED_CAUSE, TIMEOUT_CAUSE};

use crate::raft::{Config, InitialState, Persisted, Raft, Ready};
use crate::storage::lmdb::LmdbStorage;
use crate::storage::lmdb::Recovered;
use crate::storage::{RaftState, StorageError};
use crate::store::{Command, Event, V2Error, V2Store};
use crate::util::clock;
use crate::watch::WatchHub;
use batch::BatchOutcome;
use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::Arc;
use std::time::Duration;

/// The reply to a proposal: the outer error is etcd's 300 family, the inner one a store error.
pub type ProposeReply = smol::channel::Sender<Result<Result<Event, V2Error>, V2Error>>;
/// The reply to a read barrier.
pub type ReadReply = smol::channel::Sender<Result<(), V2Error>>;

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
    /// The storage thread finished a batch.
    Persisted(Result<BatchOutcome, StorageError>),
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
    /// How long writes wait before the timeout error.
    pub request_timeout: Duration,
    /// Applied entries between log compactions (`--snapshot-count`).
    pub snapshot_count: u64,
}

/// A running node: its handle and the threads to join.
pub struct Running {
    /// The handle API workers use.
    pub handle: NodeHandle,
    /// The node thread.
    pub node_thread: std::thread::JoinHandle<Result<(), StorageError>>,
}

/// Starts the storage and node threads.
pub fn start(parts: NodeParts) -> Result<Running, StorageError> {
    let recovered = parts.storage.recover()?;
    let initial = initial_state(&parts.storage, &recovered)?;
    // A single voter never ticks; the seed only matters once there are elections to time.
    let config = Config {
        seed: parts.member_id,
        ..Config::default()
    };
    let raft = Raft::new(parts.member_id, vec![parts.member_id], initial, &config);
    let next_expiration = {
        let view = parts.storage.read()?;
        V2Store::next_expiration(&view)?
    };
    let status = Arc::new(Status::default());
    status
        .used_bytes
        .store(parts.storage.used_bytes()?, Ordering::SeqCst);
    let (tx, rx) = mpsc::channel();
    let (batch_tx, batch_rx) = mpsc::channel::<Ready>();
    let first_index = parts.storage.first_index()?;
    spawn_storage_thread(
        StorageThread {
            storage: Arc::clone(&parts.storage),
            store: Arc::clone(&parts.store),
            status: Arc::clone(&status),
            state: recovered.raft,
            durable: recovered.last_index,
            first_index,
            snapshot_count: parts.snapshot_count,
        },
        batch_rx,
        tx.clone(),
    )?;
    let handle = NodeHandle {
        tx,
        status: Arc::clone(&status),
        request_timeout: parts.request_timeout,
        quota_bytes: parts.storage.map_bytes(),
    };
    let node = Node {
        raft,
        hub: parts.hub,
        status,
        batch_tx,
        batch_busy: false,
        pending: BTreeMap::new(),
        reads: Vec::new(),
        read_requests: BTreeMap::new(),
        next_read_ctx: 0,
        next_expiration,
        sync_in_flight: false,
        sync_not_before: 0,
    };
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

// The core keeps in memory only the log after the applied index (a single voter has no
// follower that could need older entries); the entry at the applied index gives its term.
fn initial_state(
    storage: &LmdbStorage,
    recovered: &Recovered,
) -> Result<InitialState, StorageError> {
    let applied = recovered.raft.applied;
    let last = recovered.last_index;
    let (compacted_term, entries) = if applied == last {
        (recovered.last_term, Vec::new())
    } else if applied == 0 {
        (0, storage.entries(1, last)?)
    } else {
        let mut entries = storage.entries(applied, last)?;
        match entries.first() {
            Some(e) if e.index == applied => {
                let term = e.term;
                entries.remove(0);
                (term, entries)
            }
            _ => {
                return Err(StorageError::corrupt(
                    "read the log after the applied index",
                    format!("entry {applied} is missing"),
                ))
            }
        }
    };
    Ok(InitialState {
        hard_state: recovered.raft.hard_state,
        applied,
        compacted_index: applied,
        compacted_term,
        entries,
    })
}

/// What the storage thread owns.
struct StorageThread {
    storage: Arc<LmdbStorage>,
    store: Arc<V2Store>,
    status: Arc<Status>,
    state: RaftState,
    durable: u64,
    /// First index still in the log.
    first_index: u64,
    snapshot_count: u64,
}

impl StorageThread {
    // Near the quota the retained log tail is the easiest space to give back: a single
    // member has no follower that could still need it, so everything applied can go. (A
    // cluster will need a snapshot for followers behind the compacted log instead.)
    // A full map fails the whole batch, housekeeping included: give space back in a
    // transaction of its own, so the next batch can succeed.
    fn make_room(&mut self) {
        let last = self.state.applied;
        let maint = batch::Maintenance {
            compact: self.urgent_compaction(last),
        };
        let empty = Ready::default();
        match batch::write_batch(
            &*self.storage,
            &self.store,
            &empty,
            &mut self.state,
            self.durable,
            maint,
        ) {
            Ok(_) => {
                if let Some((_, last)) = maint.compact {
                    self.first_index = last + 1;
                }
                match self.storage.used_bytes() {
                    Ok(used) => self.status.used_bytes.store(used, Ordering::SeqCst),
                    Err(e) => log::warn!("{e}"),
                }
            }
            Err(e) => log::warn!("cannot make room in the full map: {e}"),
        }
    }

    // Near the quota everything applied goes, the events in those records with it: with
    // large values even a few events can hold more than the user's own data. Watchers keep
    // the in-memory history; only a restart then answers older waitIndexes with 401.
    fn urgent_compaction(&self, last: u64) -> Option<(u64, u64)> {
        (self.first_index > 0 && last > self.first_index).then(|| (self.first_index, last - 1))
    }

    fn maintenance(&self) -> batch::Maintenance {
        let used = self.status.used_bytes.load(Ordering::SeqCst);
        let pressure = used > self.storage.map_bytes() / 10 * 7;
        let last = self.state.applied;
        let regular = batch::compaction_range(self.first_index, last, self.snapshot_count);
        let urgent = pressure.then(|| self.urgent_compaction(last)).flatten();
        batch::Maintenance {
            compact: regular.or(urgent),
        }
    }
}

fn spawn_storage_thread(
    mut st: StorageThread,
    batches: Receiver<Ready>,
    node: Sender<Input>,
) -> Result<(), StorageError> {
    std::thread::Builder::new()
        .name("storage".into())
        .spawn(move || {
            for ready in batches {
                let maint = st.maintenance();
                let compact = maint.compact;
                let outcome = batch::write_batch(
                    &*st.storage,
                    &st.store,
                    &ready,
                    &mut st.state,
                    st.durable,
                    maint,
                );
                if let Ok(o) = &outcome {
                    st.durable = o.durable_index;
                    if st.first_index == 0 {
                        st.first_index = ready.entries.first().map_or(0, |e| e.index);
                    }
                    if let Some((_, last)) = compact {
                        st.first_index = last + 1;
                    }
                    st.status.batches.fetch_add(1, Ordering::Relaxed);
                    st.status
                        .entries
                        .fetch_add(ready.entries.len() as u64, Ordering::Relaxed);
                    match st.storage.used_bytes() {
                        Ok(used) => st.status.used_bytes.store(used, Ordering::SeqCst),
                        Err(e) => log::warn!("{e}"),
                    }
                }
                if outcome.as_ref().is_err_and(StorageError::is_map_full) {
                    st.make_room();
                }
                if node.send(Input::Persisted(outcome)).is_err() {
                    break;
                }
            }
        })
        .map(|_| ())
        .map_err(|e| {
            StorageError::new(
                "start storage thread",
                "",
                crate::storage::StorageErrorKind::Io(e.to_string()),
            )
        })
}

struct Node {
    raft: Raft,
    hub: Arc<WatchHub>,
    status: Arc<Status>,
    batch_tx: Sender<Ready>,
    /// A batch is with the storage thread.
    batch_busy: bool,
    /// Proposals waiting for their log index to be applied.
    pending: BTreeMap<u64, ProposeReply>,
    /// Linearizable reads waiting for (read index, reply).
    reads: Vec<(u64, ReadReply)>,
    /// Reads waiting for their read index, by request context.
    read_requests: BTreeMap<u64, ReadReply>,
    next_read_ctx: u64,
    next_expiration: Option<u64>,
    sync_in_flight: bool,
    /// No expiry proposal before this time (backoff after the disk was full).
    sync_not_before: u64,
}

impl Node {
    fn run(mut self, rx: Receiver<Input>) -> Result<(), StorageError> {
        // The leader's no-op is already in the log: commit it now, not with the first request.
        self.maybe_send_batch();
        loop {
            let input = match self.wait_timeout() {
                Some(t) => match rx.recv_timeout(t) {
                    Ok(i) => Some(i),
                    Err(mpsc::RecvTimeoutError::Timeout) => None,
                    Err(mpsc::RecvTimeoutError::Disconnected) => return Ok(()),
                },
                None => match rx.recv() {
                    Ok(i) => Some(i),
                    Err(_) => return Ok(()),
                },
            };
            let mut next = input;
            while let Some(input) = next {
                if !self.handle(input)? {
                    return Ok(());
                }
                next = rx.try_recv().ok();
            }
            self.maybe_propose_sync();
            self.maybe_send_batch();
        }
    }

    // Idle without TTL keys means no timer at all: the server writes nothing and wakes for
    // nothing. With TTL keys the loop wakes when the earliest one expires.
    fn wait_timeout(&self) -> Option<Duration> {
        if self.sync_in_flight {
            return None;
        }
        let at = self.next_expiration?.max(self.sync_not_before);
        let now = clock::now_unix_nanos();
        Some(Duration::from_nanos(at.saturating_sub(now)) + Duration::from_millis(1))
    }

    fn handle(&mut self, input: Input) -> Result<bool, StorageError> {
        match input {
            Input::Propose { command, reply } => self.propose(command, reply),
            Input::ReadIndex { reply } => {
                let ctx = self.next_read_ctx;
                self.next_read_ctx += 1;
                match self.raft.read_index(ctx) {
                    Ok(()) => {
                        self.read_requests.insert(ctx, reply);
                        // A single voter answers at once.
                        self.take_read_states();
                    }
                    Err(e) => {
                        let _ = reply.try_send(Err(V2Error::new(
                            crate::store::error::RAFT_INTERNAL,
                            e.to_string(),
                            0,
                        )));
                    }
                }
            }
            Input::Persisted(outcome) => self.on_persisted(outcome)?,
            Input::Ping { reply } => {
                let _ = reply.send(());
            }
            Input::Shutdown => {
                self.fail_all(STOPPED_CAUSE);
                return Ok(false);
            }
        }
        Ok(true)
    }

    fn take_read_states(&mut self) {
        for rs in self.raft.take_read_states() {
            let Some(reply) = self.read_requests.remove(&rs.ctx) else {
                continue;
            };
            if rs.index <= self.raft.applied_index() {
                let _ = reply.try_send(Ok(()));
            } else {
                self.reads.push((rs.index, reply));
            }
        }
    }

    fn propose(&mut self, command: Command, reply: ProposeReply) {
        let encoded = match batch::encode_command(&command) {
            Ok(e) => e,
            Err(e) => {
                let _ = reply.try_send(Err(V2Error::new(300, e.to_string(), 0)));
                return;
            }
        };
        match self.raft.propose(encoded) {
            Ok(index) => {
                self.pending.insert(index, reply);
            }
            Err(e) => {
                let _ = reply.try_send(Err(V2Error::new(300, e.to_string(), 0)));
            }
        }
    }

    fn maybe_propose_sync(&mut self) {
        let Some(at) = self.next_expiration else {
            return;
        };
        let at = at.max(self.sync_not_before);
        let now = clock::now_unix_nanos();
        if self.sync_in_flight || now < at {
            return;
        }
        if let Ok(encoded) = batch::encode_command(&Command::Sync { now }) {
            if self.raft.propose(encoded).is_ok() {
                self.sync_in_flight = true;
            }
        }
    }

    fn maybe_send_batch(&mut self) {
        if self.batch_busy {
            return;
        }
        if let Some(mut ready) = self.raft.ready() {
            // A single voter has no peers to message; its reads are answered at once.
            ready.messages.clear();
            ready.read_states.clear();
            if self.batch_tx.send(ready).is_ok() {
                self.batch_busy = true;
            }
        }
    }

    fn on_persisted(
        &mut self,
        outcome: Result<BatchOutcome, StorageError>,
    ) -> Result<(), StorageError> {
        self.batch_busy = false;
        let outcome = match outcome {
            Ok(o) => o,
            Err(e) if e.is_map_full() => {
                log::warn!("{e}; the batch's writes are refused");
                self.status.batches_map_full.fetch_add(1, Ordering::Relaxed);
                self.raft.persist_failed();
                self.sync_in_flight = false;
                // An expiry that cannot be written is retried a second later, not at once.
                self.sync_not_before = clock::now_unix_nanos().saturating_add(1_000_000_000);
                let durable = self.raft.last_index();
                let failed: Vec<u64> = self.pending.range(durable + 1..).map(|(i, _)| *i).collect();
                for index in failed {
                    if let Some(reply) = self.pending.remove(&index) {
                        let _ = reply.try_send(Err(V2Error::new(300, NO_SPACE_CAUSE, 0)));
                    }
                }
                // Reads waited for writes that now never happened: what is applied is current.
                for (_, reply) in std::mem::take(&mut self.reads) {
                    let _ = reply.try_send(Ok(()));
                }
                return Ok(());
            }
            Err(e) => {
                // Anything else means the disk cannot be trusted: stop writing (a restart
                // recovers from what is durable).
                self.fail_all(STOPPED_CAUSE);
                return Err(e);
            }
        };
        self.raft.advance(Persisted {
            durable_index: outcome.durable_index,
            applied_index: outcome.applied_index,
        });
        // What is applied is on disk: the core's in-memory copy is no longer needed.
        self.raft.compact(self.raft.applied_index());
        self.next_expiration = outcome.next_expiration;
        if outcome.applied_sync {
            self.sync_in_flight = false;
        }
        for (_, result) in &outcome.results {
            if let Ok(applied) = result {
                self.hub.publish(applied);
            }
        }
        self.publish_status();
        for (index, result) in outcome.results {
            if let Some(reply) = self.pending.remove(&index) {
                let answer = result.map(|mut applied| applied.remove(0).event);
                let _ = reply.try_send(Ok(answer));
            }
        }
        // Entries without a command (the leader's no-op) have no waiter; waiters below the
        // applied index that got no result were never going to get one.
        let applied = self.raft.applied_index();
        let stale: Vec<u64> = self.pending.range(..=applied).map(|(i, _)| *i).collect();
        for index in stale {
            if let Some(reply) = self.pending.remove(&index) {
                let _ = reply.try_send(Err(V2Error::new(300, TIMEOUT_CAUSE, 0)));
            }
        }
        let (ready, waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut self.reads)
            .into_iter()
            .partition(|(index, _)| *index <= applied);
        self.reads = waiting;
        for (_, reply) in ready {
            let _ = reply.try_send(Ok(()));
        }
        Ok(())
    }

    fn publish_status(&self) {
        self.status
            .commit_index
            .store(self.raft.commit_index(), Ordering::SeqCst);
        self.status.term.store(self.raft.term(), Ordering::SeqCst);
        self.status
            .leader
            .store(self.raft.leader().unwrap_or(0), Ordering::SeqCst);
    }

    fn fail_all(&mut self, cause: &str) {
        for (_, reply) in std::mem::take(&mut self.pending) {
            let _ = reply.try_send(Err(V2Error::new(300, cause, 0)));
        }
        for (_, reply) in std::mem::take(&mut self.reads) {
            let _ = reply.try_send(Err(V2Error::new(300, cause, 0)));
        }
        for (_, reply) in std::mem::take(&mut self.read_requests) {
            let _ = reply.try_send(Err(V2Error::new(300, cause, 0)));
        }
    }
}
