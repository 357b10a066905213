//! The two threads that own the disk, and what they find there at start.
//!
//! - The WAL thread makes each Ready's hard state and entries durable (`storage::wal`, one
//!   `fdatasync`) and reports it to the node thread at once: acknowledgements to the leader,
//!   votes and a leader's own commit count wait for that one sync and nothing else. It then
//!   hands the Ready's committed entries to the apply thread.
//! - The apply thread applies committed entries to LMDB (`batch::apply_batch`), merging
//!   whatever queued while its previous commit ran into one transaction, and reports the
//!   results. It lags the WAL by design: LMDB's own syncs are off the path of
//!   acknowledgements, and a slow commit (an SD card's fsync tail) delays answers, never
//!   Raft.
//!
//! One Ready is with the WAL thread at a time (the core hands out the next after `advance`),
//! so while one is synced the next accumulates: group commit.

use super::batch::{self, AppliedEntry, BatchOutcome};
use super::handle::{Status, NO_SPACE_CAUSE};
use super::inbox::InboxSender;
use super::Input;
use crate::raft::{Entry, HardState};
use crate::storage::lmdb::{LmdbStorage, Recovered};
use crate::storage::wal::Wal;
use crate::storage::{format, RaftState, StorageError, StorageErrorKind};
use crate::store::{V2Error, V2Store};
use crate::util::clock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::Arc;

/// A Ready's disk work, as the node thread hands it to the WAL thread.
pub struct WalJob {
    /// The hard state to persist, if it changed.
    pub hard_state: Option<HardState>,
    /// Entries to append.
    pub entries: Vec<Entry>,
    /// Entries to apply once the append is durable.
    pub committed: Vec<Entry>,
    /// A snapshot was installed since the last job: the WAL starts afresh first.
    pub restored: Option<Restart>,
}

/// The log after a snapshot install, for the WAL to start from.
pub struct Restart {
    /// The hard state (the commit index at least the snapshot's).
    pub hard_state: HardState,
    /// The durable entries the core kept after the snapshot's index.
    pub kept: Vec<Entry>,
    /// The index the log is durable through then.
    pub durable: u64,
}

/// A received snapshot for the apply thread to install.
pub struct InstallJob {
    /// The spooled stream.
    pub path: std::path::PathBuf,
    /// This member (the stream must be of its cluster).
    pub identity: crate::storage::Identity,
}

/// Committed entries for the apply thread: from the WAL thread once its write made them
/// durable, or straight from the node thread when they are durable already.
pub struct ApplyJob {
    /// Entries to apply, in order.
    pub committed: Vec<Entry>,
    /// The newest hard state (LMDB keeps a copy beside the applied index).
    pub hard_state: HardState,
}

/// What the apply thread receives.
pub enum ApplyInput {
    /// Committed entries to apply.
    Job(ApplyJob),
    /// A reader waits until this index is applied (visible in LMDB): commit without
    /// waiting for more entries.
    Flush(u64),
    /// Replace the applied state with a snapshot (the node sends it only while nothing
    /// else is with this thread, and sends nothing else until it is told the outcome).
    Install(InstallJob),
}

/// The durable Raft log at start: LMDB's applied state with the WAL's hard state and the
/// entries it holds after the applied index.
pub struct DurableLog {
    /// The hard state (the WAL's, which is never older than LMDB's copy) and LMDB's
    /// applied index.
    pub raft: RaftState,
    /// Entries after the applied index, in order.
    pub tail: Vec<Entry>,
    /// Index and term of the last entry of the whole log.
    pub last_index: u64,
    /// Term of the last entry.
    pub last_term: u64,
}

/// Opens the WAL and combines it with what LMDB recovered. A data dir of format 2 (every
/// entry in LMDB) is converted: its unapplied entries move to the WAL.
pub fn open_log(
    storage: &LmdbStorage,
    recovered: &Recovered,
) -> Result<(Wal, DurableLog), StorageError> {
    let wal_dir = storage.wal_dir();
    let old_format = storage.format_version() < format::FORMAT_VERSION;
    if !old_format && !wal_dir.exists() && recovered.raft.hard_state.term > 0 {
        return Err(StorageError::new(
            "open the write-ahead log",
            &wal_dir,
            StorageErrorKind::Corrupt(
                "the directory is missing: the Raft state and the entries not yet applied \
                 were in it"
                    .into(),
            ),
        ));
    }
    let (mut wal, replay) = Wal::open(&wal_dir)?;
    let applied = recovered.raft.applied;
    let mut hard_state = replay.hard_state.unwrap_or(recovered.raft.hard_state);
    // After a snapshot was installed, the WAL may still hold the tail of a log that
    // diverged from the leader's before the snapshot's index (the first append after the
    // install overwrites it; a crash may come first). Such a tail does not continue the
    // applied entry: its entry at the applied index has another term.
    let at_applied = replay
        .entries
        .iter()
        .find(|e| e.index == applied)
        .map(|e| e.term);
    let diverged = match at_applied {
        Some(term) if applied > 0 => storage
            .entries(applied, applied)?
            .first()
            .is_some_and(|e| e.term != term),
        _ => false,
    };
    // Or it ends before the applied index (a snapshot installed, then a crash before the
    // WAL restarted): what comes next would leave a gap in it.
    let leapt = replay.entries.last().is_some_and(|e| e.index < applied);
    let mut tail: Vec<Entry> = replay
        .entries
        .into_iter()
        .filter(|e| e.index > applied && !diverged)
        .collect();
    if diverged || leapt {
        log::info!(
            "the write-ahead log holds a log a snapshot at entry {applied} replaced: it starts afresh"
        );
        wal.restart(hard_state, &[])?;
    }
    if old_format {
        // Move format 2's unapplied tail (durable, possibly acknowledged) into the WAL
        // first, then drop it from LMDB and mark the data dir format 3.
        if tail.is_empty() && recovered.last_index > applied {
            tail = storage.entries(applied + 1, recovered.last_index)?;
        }
        hard_state = recovered.raft.hard_state;
        wal.append(Some(hard_state), &tail, true)?;
        storage.drop_unapplied(
            &RaftState {
                hard_state,
                applied,
            },
            recovered.last_index,
        )?;
        log::info!(
            "converted {} to data format {} (write-ahead log in {})",
            storage.path().display(),
            format::FORMAT_VERSION,
            wal_dir.display()
        );
    }
    if let Some(first) = tail.first() {
        if first.index != applied + 1 {
            return Err(StorageError::new(
                "replay the write-ahead log",
                &wal_dir,
                StorageErrorKind::Corrupt(format!(
                    "it resumes at entry {} but entry {} is the next to apply",
                    first.index,
                    applied + 1
                )),
            ));
        }
    }
    let (last_index, last_term) = match tail.last() {
        Some(e) => (e.index, e.term),
        None if recovered.last_index == applied => (applied, recovered.last_term),
        None => match storage.entries(applied, applied)?.first() {
            Some(e) => (applied, e.term),
            None if applied == 0 => (0, 0),
            None => {
                return Err(StorageError::corrupt(
                    "read the last applied entry",
                    format!("entry {applied} is missing"),
                ))
            }
        },
    };
    // A commit index written without a sync may be older than what LMDB applied.
    hard_state.commit = hard_state.commit.max(applied).min(last_index);
    Ok((
        wal,
        DurableLog {
            raft: RaftState {
                hard_state,
                applied,
            },
            tail,
            last_index,
            last_term,
        },
    ))
}

/// What the WAL thread starts from.
pub struct WalThread {
    /// The open WAL.
    pub wal: Wal,
    /// The last durable entry's index.
    pub durable: u64,
    /// The hard state durable now.
    pub hard_state: HardState,
    /// Counters.
    pub status: Arc<Status>,
    /// The applied index LMDB holds durably (the apply thread moves it): WAL segments at or
    /// below it may go.
    pub lmdb_durable: Arc<AtomicU64>,
}

/// Starts the WAL and apply threads; returns where the node thread sends its Readys and
/// where it sends committed entries that need no log write.
pub fn spawn(
    wal: WalThread,
    apply: ApplyThread,
    node: InboxSender<Input>,
) -> Result<(Sender<WalJob>, Sender<ApplyInput>), StorageError> {
    let (job_tx, job_rx) = mpsc::channel::<WalJob>();
    let (apply_tx, apply_rx) = mpsc::channel::<ApplyInput>();
    let node2 = node.clone();
    let direct = apply_tx.clone();
    spawn_named("apply", move || apply.run(apply_rx, node2))?;
    spawn_named("wal", move || wal.run(job_rx, apply_tx, node))?;
    Ok((job_tx, direct))
}

fn spawn_named(name: &str, f: impl FnOnce() + Send + 'static) -> Result<(), StorageError> {
    std::thread::Builder::new()
        .name(name.into())
        .spawn(f)
        .map(|_| ())
        .map_err(|e| {
            StorageError::new(
                format!("start {name} thread"),
                "",
                StorageErrorKind::Io(e.to_string()),
            )
        })
}

impl WalThread {
    fn run(mut self, jobs: Receiver<WalJob>, apply: Sender<ApplyInput>, node: InboxSender<Input>) {
        for job in jobs {
            if let Some(restart) = job.restored {
                if let Err(e) = self.wal.restart(restart.hard_state, &restart.kept) {
                    let _ = node.send(Input::Durable(Err(e)));
                    return;
                }
                self.hard_state = restart.hard_state;
                self.durable = restart.durable;
            }
            // etcd's rule: a changed commit index alone needs no sync (it is learned again
            // from the leader); entries, a term and a vote do.
            let must_sync = !job.entries.is_empty()
                || job.hard_state.is_some_and(|hs| {
                    hs.term != self.hard_state.term || hs.vote != self.hard_state.vote
                });
            let written = self.wal.append(job.hard_state, &job.entries, must_sync);
            if let Err(e) = written {
                let _ = node.send(Input::Durable(Err(e)));
                return;
            }
            if let Some(hs) = job.hard_state {
                self.hard_state = hs;
            }
            if let Some(last) = job.entries.last() {
                self.durable = last.index;
            }
            if must_sync {
                self.status.batches.fetch_add(1, Ordering::Relaxed);
                self.status
                    .entries
                    .fetch_add(job.entries.len() as u64, Ordering::Relaxed);
            }
            if let Err(e) = self.wal.release(self.lmdb_durable.load(Ordering::SeqCst)) {
                log::warn!("{e}");
            }
            // To the apply thread first: the node, once told, may send later committed
            // entries there directly, and those must queue behind these.
            if !job.committed.is_empty() {
                let job = ApplyJob {
                    committed: job.committed,
                    hard_state: self.hard_state,
                };
                if apply.send(ApplyInput::Job(job)).is_err() {
                    return;
                }
            }
            if node.send(Input::Durable(Ok(self.durable))).is_err() {
                return;
            }
        }
    }
}

/// What the apply thread owns.
pub struct ApplyThread {
    /// The open data dir.
    pub storage: Arc<LmdbStorage>,
    /// The state machine.
    pub store: Arc<V2Store>,
    /// Counters.
    pub status: Arc<Status>,
    /// What LMDB holds.
    pub state: RaftState,
    /// First index still in LMDB's log.
    pub first_index: u64,
    /// `--snapshot-count`.
    pub snapshot_count: u64,
    /// The member is the whole cluster: no follower can need old entries.
    pub single: bool,
    /// Answer these clients before each commit (see `NodeParts::early_answers`).
    pub early_answers: Option<super::waiters::Waiters>,
    /// With early answers: how long a transaction takes in entries that arrive after its
    /// first before it commits (unless a reader waits, see [`ApplyInput::Flush`]).
    pub commit_window: std::time::Duration,
    /// See [`WalThread::lmdb_durable`].
    pub lmdb_durable: Arc<AtomicU64>,
    /// The highest index a reader waits for (see [`ApplyInput::Flush`]).
    pub flush_through: u64,
}

/// The node sends an install only to an idle apply thread; one that arrives with a batch
/// is a bug of the node's, and is not done (the node's install waits for ever, visibly).
const INSTALL_OUT_OF_TURN: &str =
    "a snapshot install arrived while entries were being applied: not installed";

/// An apply transaction takes at most this many entries, through its commit window or of a
/// long run handed over at once (replayed at start, a follower catching up, the WAL's tail
/// at `--force-new-cluster`). LMDB keeps every page a write transaction dirtied as malloc'd
/// memory for reuse until the environment closes (`me_dpages` is never trimmed), so the
/// largest transaction sets a member's anon RSS for good: with random keys each entry dirties about one leaf page, and a 50 ms window
/// at 13k PUT/s took ~650 entries, ~4 MiB. Measured on the project's 2-core VM, 3 members,
/// PUT sweep 64/256 conns, 3 interleaved reps: peak RSS 28.7 (4,096) -> 26.2 (512) -> 23.9
/// MiB (256); PUT/s at 64 conns 8050 / 8952 / 9140 (within the noise); CPU per PUT at 256
/// conns 109 / 107 / 118 us (more commits).
pub(super) const TXN_ENTRIES_MAX: usize = 256;

impl ApplyThread {
    fn run(mut self, jobs: Receiver<ApplyInput>, node: InboxSender<Input>) {
        let mut open = true;
        while open {
            let first = match jobs.recv() {
                Ok(ApplyInput::Job(job)) => job,
                Ok(ApplyInput::Flush(index)) => {
                    self.flush_through = self.flush_through.max(index);
                    continue;
                }
                Ok(ApplyInput::Install(job)) => {
                    let outcome = self.install(&job);
                    let failed = outcome.is_err();
                    if node.send(Input::Installed(outcome)).is_err() || failed {
                        return;
                    }
                    continue;
                }
                Err(_) => break,
            };
            let mut committed = first.committed;
            let mut hard_state = first.hard_state;
            while committed.len() < TXN_ENTRIES_MAX {
                let Ok(more) = jobs.try_recv() else {
                    break;
                };
                match more {
                    ApplyInput::Job(job) => {
                        committed.extend(job.committed);
                        hard_state = job.hard_state;
                    }
                    ApplyInput::Flush(index) => self.flush_through = self.flush_through.max(index),
                    ApplyInput::Install(_) => log::error!("{INSTALL_OUT_OF_TURN}"),
                }
            }
            // A long run of entries (replayed at start, or a follower catching up) is
            // applied in transactions of at most TXN_ENTRIES_MAX, for the memory LMDB keeps
            // (see there); only the last one takes in later entries through its window.
            loop {
                let rest = committed.split_off(committed.len().min(TXN_ENTRIES_MAX));
                let outcome = self.apply(committed, hard_state, &jobs, &mut open);
                let failed = outcome.is_err();
                if node.send(Input::Applied(outcome)).is_err() || failed {
                    return;
                }
                if rest.is_empty() {
                    break;
                }
                committed = rest;
            }
        }
        // The node stopped: make the last commit durable too, so a restart replays nothing.
        if let Err(e) = self.storage.sync() {
            log::warn!("{e}");
        }
    }

    fn apply(
        &mut self,
        mut committed: Vec<Entry>,
        mut hard_state: HardState,
        jobs: &Receiver<ApplyInput>,
        open: &mut bool,
    ) -> Result<BatchOutcome, StorageError> {
        let mut taken = Vec::new();
        let mut window = Window {
            jobs,
            open,
            hard_state,
            deadline: std::time::Instant::now() + self.commit_window,
            room: TXN_ENTRIES_MAX.saturating_sub(committed.len()),
        };
        let use_window = self.early_answers.is_some() && !self.commit_window.is_zero();
        let mut outcome = self.apply_once(
            &committed,
            hard_state,
            use_window.then_some((&mut window, &mut taken)),
        );
        if outcome.is_err() {
            // What the window took in is part of the batch: a retry applies it too.
            committed.append(&mut taken);
            hard_state = window.hard_state;
        }
        if outcome.as_ref().is_err_and(StorageError::is_map_full) {
            self.make_room(hard_state);
            outcome = self.apply_once(&committed, hard_state, None);
        }
        if outcome.as_ref().is_err_and(StorageError::is_map_full) {
            outcome = self.apply_one_by_one(&committed, hard_state);
        }
        outcome
    }

    fn apply_once(
        &mut self,
        committed: &[Entry],
        hard_state: HardState,
        window: Option<(&mut Window<'_>, &mut Vec<Entry>)>,
    ) -> Result<BatchOutcome, StorageError> {
        let maint = self.maintenance();
        let waiters = self.early_answers.clone();
        let mut early = |results| {
            if let Some(w) = &waiters {
                w.deliver(results);
            }
        };
        let before = self.state.applied;
        let flush_through = &mut self.flush_through;
        let (window, taken) = window.unzip();
        let mut more = window.map(|w| {
            move || {
                let (entries, hs) = w.next(before, flush_through)?;
                w.hard_state = hs;
                Some((entries, hs))
            }
        });
        let outcome = batch::apply_batch(
            &*self.storage,
            &self.store,
            committed,
            hard_state,
            &mut self.state,
            maint,
            self.early_answers.is_some().then_some(batch::Early {
                results: &mut early,
                more: more
                    .as_mut()
                    .map(|m| m as &mut dyn FnMut() -> Option<(Vec<Entry>, HardState)>),
                taken,
            }),
        )?;
        // With NO_META_SYNC a commit is durable once the next one has synced.
        self.lmdb_durable.store(before, Ordering::SeqCst);
        if let Some((_, last)) = maint.compact {
            self.first_index = last + 1;
            // Compaction frees pages for reuse, which a dead process's reader slot would
            // keep from happening.
            match self.storage.clear_stale_readers() {
                Ok(0) => {}
                Ok(n) => log::info!("freed {n} reader slots of processes that have ended"),
                Err(e) => log::warn!("{e}"),
            }
        }
        if self.first_index == 0 {
            self.first_index = committed.first().map_or(0, |e| e.index);
        }
        self.update_used();
        Ok(outcome)
    }

    // The map is full even after giving room back: each entry on its own, and one that
    // still does not fit is recorded applied with etcd's no-space error as its result (the
    // client's write is refused; the log moves on).
    fn apply_one_by_one(
        &mut self,
        committed: &[Entry],
        hard_state: HardState,
    ) -> Result<BatchOutcome, StorageError> {
        let mut results: Vec<AppliedEntry> = Vec::new();
        let mut applied_sync = false;
        for entry in committed {
            if entry.index <= self.state.applied {
                continue;
            }
            match self.apply_once(std::slice::from_ref(entry), hard_state, None) {
                Ok(o) => {
                    applied_sync |= o.applied_sync;
                    results.extend(o.results);
                }
                Err(e) if e.is_map_full() => {
                    log::warn!("{e}; the write at log index {} is refused", entry.index);
                    self.status.batches_map_full.fetch_add(1, Ordering::Relaxed);
                    let refusal = V2Error::new(300, NO_SPACE_CAUSE, 0);
                    results.push(batch::refuse_entry(
                        &*self.storage,
                        entry,
                        hard_state,
                        &mut self.state,
                        refusal,
                    )?);
                }
                Err(e) => return Err(e),
            }
        }
        let view = self.storage.read()?;
        Ok(BatchOutcome {
            applied_index: self.state.applied,
            results,
            next_expiration: V2Store::next_expiration(&view)?,
            applied_sync,
            clock: V2Store::clock(&view)?,
        })
    }

    // Outer error: the data dir is in doubt (the install committed, its sync failed).
    // Inner: nothing was installed (a cut, corrupt or foreign stream, or no room).
    #[allow(clippy::type_complexity)]
    fn install(
        &mut self,
        job: &InstallJob,
    ) -> Result<Result<super::snapshot::Installed, String>, StorageError> {
        let header = std::fs::File::open(&job.path)
            .map_err(|e| format!("open {}: {e}", job.path.display()))
            .and_then(|file| {
                self.storage
                    .install_snapshot(job.identity, &mut std::io::BufReader::new(file))
                    .map_err(|e| e.to_string())
            });
        let header = match header {
            Ok(h) => h,
            Err(e) => return Ok(Err(e)),
        };
        self.storage.sync()?;
        self.state = RaftState {
            hard_state: HardState {
                term: header.term,
                vote: 0,
                commit: header.index,
            },
            applied: header.index,
        };
        self.first_index = self.storage.first_index()?;
        self.lmdb_durable.store(header.index, Ordering::SeqCst);
        self.update_used();
        let history = batch::load_history(&self.storage)?;
        let view = self.storage.read()?;
        Ok(Ok(super::snapshot::Installed {
            current_index: V2Store::current_index(&view)?,
            next_expiration: V2Store::next_expiration(&view)?,
            history,
            header,
        }))
    }

    fn update_used(&self) {
        match self.storage.used_bytes() {
            Ok(used) => self.status.used_bytes.store(used, Ordering::SeqCst),
            Err(e) => log::warn!("{e}"),
        }
    }

    // Near the quota the retained log tail is the easiest space to give back: a single
    // member has no follower that could still need it, so everything applied can go. (A
    // cluster will need a snapshot for followers behind the compacted log instead.)
    // A full map fails the whole batch, housekeeping included: give space back in a
    // transaction of its own, so the next batch can succeed.
    fn make_room(&mut self, hard_state: HardState) {
        let maint = batch::Maintenance {
            compact: self.urgent_compaction(self.state.applied),
            clock: None,
        };
        match batch::apply_batch(
            &*self.storage,
            &self.store,
            &[],
            hard_state,
            &mut self.state,
            maint,
            None,
        ) {
            Ok(_) => {
                if let Some((_, last)) = maint.compact {
                    self.first_index = last + 1;
                }
                self.update_used();
            }
            Err(e) => log::warn!("cannot make room in the full map: {e}"),
        }
    }

    // Near the quota everything applied goes, the events in those records with it: with
    // large values even a few events can hold more than the user's own data. Watchers keep
    // the in-memory history; only a restart then answers older waitIndexes with 401.
    // In a cluster a short tail stays, so that a restarted member can still feed followers
    // that lag a little.
    fn urgent_compaction(&self, last: u64) -> Option<(u64, u64)> {
        let keep = if self.single { 1 } else { 1_000 };
        let end = last.saturating_sub(keep);
        (self.first_index > 0 && end >= self.first_index).then_some((self.first_index, end))
    }

    fn maintenance(&self) -> batch::Maintenance {
        let used = self.status.used_bytes.load(Ordering::SeqCst);
        let pressure = used > self.storage.map_bytes() / 10 * 7;
        let last = self.state.applied;
        let regular = batch::compaction_range(self.first_index, last, self.snapshot_count);
        let urgent = pressure.then(|| self.urgent_compaction(last)).flatten();
        // The clock as the node thread last published it: its line (cluster time against
        // the monotonic clock) is what a restart continues.
        let clock = self
            .status
            .clock
            .lock()
            .ok()
            .and_then(|c| *c)
            .map(|c| c.anchor_at(clock::boot_id(), clock::monotonic_nanos()));
        batch::Maintenance {
            compact: regular.or(urgent),
            clock,
        }
    }
}

/// A transaction's commit window: the entries that arrive while it is open join it, until
/// the window closes, it is full, or a reader waits for an index past what LMDB holds.
struct Window<'a> {
    jobs: &'a Receiver<ApplyInput>,
    /// Cleared when the node has gone (the channel closed).
    open: &'a mut bool,
    /// The hard state of the newest job taken in.
    hard_state: HardState,
    deadline: std::time::Instant,
    /// Entries the transaction may still take in.
    room: usize,
}

impl Window<'_> {
    // `committed_through`: what LMDB held before this transaction began.
    fn next(
        &mut self,
        committed_through: u64,
        flush_through: &mut u64,
    ) -> Option<(Vec<Entry>, HardState)> {
        loop {
            if *flush_through > committed_through || self.room == 0 {
                return None;
            }
            let left = self
                .deadline
                .checked_duration_since(std::time::Instant::now())?;
            match self.jobs.recv_timeout(left) {
                Ok(ApplyInput::Job(job)) => {
                    self.room = self.room.saturating_sub(job.committed.len());
                    return Some((job.committed, job.hard_state));
                }
                Ok(ApplyInput::Flush(index)) => *flush_through = (*flush_through).max(index),
                Ok(ApplyInput::Install(_)) => log::error!("{INSTALL_OUT_OF_TURN}"),
                Err(mpsc::RecvTimeoutError::Timeout) => return None,
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    *self.open = false;
                    return None;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::raft::Payload;
    use crate::storage::{Storage, StorageTxn};

    fn entry(term: u64, index: u64) -> Entry {
        Entry {
            term,
            index,
            payload: Payload::Empty,
        }
    }

    fn set_entry(index: u64) -> Entry {
        let cmd = crate::store::Command::Set {
            key: format!("/w/k{index}"),
            value: "v".into(),
            dir: false,
            expire_at: None,
            refresh: false,
        };
        Entry {
            term: 1,
            index,
            payload: Payload::Command(batch::encode_command(&cmd).unwrap()),
        }
    }

    // A cluster member's apply thread on a fresh store.
    fn apply_thread(
        storage: &Arc<LmdbStorage>,
        early_answers: Option<super::super::waiters::Waiters>,
        commit_window: std::time::Duration,
    ) -> ApplyThread {
        ApplyThread {
            storage: Arc::clone(storage),
            store: Arc::new(V2Store::new()),
            status: Arc::new(Status::default()),
            state: RaftState::default(),
            first_index: 0,
            snapshot_count: 10_000,
            single: false,
            early_answers,
            commit_window,
            lmdb_durable: Arc::new(AtomicU64::new(0)),
            flush_through: 0,
        }
    }

    fn job(indexes: std::ops::RangeInclusive<u64>) -> ApplyInput {
        ApplyInput::Job(ApplyJob {
            committed: indexes.map(set_entry).collect(),
            hard_state: HardState::default(),
        })
    }

    // Answers go out as entries arrive; one commit takes in what arrived while it was
    // open; a waiting reader (Flush) closes the window at once, and keeps later
    // transactions from waiting while its index is not applied.
    #[test]
    fn the_commit_window_takes_in_later_entries_and_a_flush_closes_it() {
        let dir = std::env::temp_dir().join(format!("pikv-disk-window-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let storage = Arc::new(LmdbStorage::open(&dir, 64 << 20).unwrap());
        let hub = Arc::new(crate::watch::WatchHub::new(0, Vec::new()));
        let waiters = super::super::waiters::Waiters::new(1, 0, hub);
        // A client waits on each of the six entries, as the node would register them.
        let answers: Vec<_> = (1..=6u64)
            .map(|index| {
                let (reply, answer) = smol::channel::bounded(1);
                waiters.lock().pending.insert(index, (1, reply));
                answer
            })
            .collect();
        // Longer than the test: only a flush (or the node leaving) ends a window.
        let window = std::time::Duration::from_secs(600);
        let apply = apply_thread(&storage, Some(waiters), window);
        let (tx, rx) = mpsc::channel();
        let (node_tx, node_rx) = crate::node::inbox::channel();
        let node_rx = std::cell::RefCell::new(node_rx);
        let thread = std::thread::spawn(move || apply.run(rx, node_tx));
        let recv = || {
            node_rx
                .borrow_mut()
                .recv(Some(std::time::Duration::from_secs(30)), false)
                .expect("the apply thread is there")
                .expect("the apply thread reports")
        };
        // The entries answered (by the apply thread itself) since the last call: waits for
        // `through`, then takes whatever else is there.
        let answered = |through: u64| {
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
            let last = loop {
                match answers[through as usize - 1].try_recv() {
                    Ok(answer) => break answer,
                    Err(_) if std::time::Instant::now() < deadline => {
                        std::thread::sleep(std::time::Duration::from_millis(1))
                    }
                    Err(e) => panic!("entry {through} was not answered: {e}"),
                }
            };
            let event = last.unwrap().unwrap();
            assert_eq!(
                event.node.modified_index, through,
                "the answer is its entry's"
            );
            let mut got: Vec<u64> = (1..=6u64)
                .filter(|i| answers[*i as usize - 1].try_recv().is_ok())
                .collect();
            got.push(through);
            got.sort_unstable();
            got
        };
        tx.send(job(1..=2)).unwrap();
        assert_eq!(answered(2), vec![1, 2]);
        tx.send(job(3..=3)).unwrap();
        assert_eq!(answered(3), vec![3]);
        assert!(
            matches!(
                node_rx
                    .borrow_mut()
                    .recv(Some(std::time::Duration::from_millis(300)), false),
                Ok(None)
            ),
            "the window is still open: nothing committed"
        );
        assert_eq!(storage.recover().unwrap().raft.applied, 0);
        // A reader waits for index 5, which has not arrived: the window closes at once.
        tx.send(ApplyInput::Flush(5)).unwrap();
        match recv() {
            Input::Applied(Ok(outcome)) => assert_eq!(outcome.applied_index, 3),
            _ => panic!("expected a commit"),
        }
        assert_eq!(storage.recover().unwrap().raft.applied, 3);
        // Index 5 is still awaited: the next transaction commits without a window.
        tx.send(job(4..=5)).unwrap();
        assert_eq!(answered(5), vec![4, 5]);
        match recv() {
            Input::Applied(Ok(outcome)) => assert_eq!(outcome.applied_index, 5),
            _ => panic!("expected a commit"),
        }
        // The reader is served: windows again; the node leaving commits what is open.
        tx.send(job(6..=6)).unwrap();
        assert_eq!(answered(6), vec![6]);
        drop(tx);
        match recv() {
            Input::Applied(Ok(outcome)) => assert_eq!(outcome.applied_index, 6),
            _ => panic!("expected a commit"),
        }
        thread.join().unwrap();
        assert_eq!(storage.recover().unwrap().raft.applied, 6);
        drop(storage);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    // Queued jobs merge only up to TXN_ENTRIES_MAX, and a longer run is applied in
    // transactions of that many: each commit reports the index it applied through.
    #[test]
    fn long_runs_of_entries_are_applied_in_bounded_transactions() {
        let dir = std::env::temp_dir().join(format!("pikv-disk-chunks-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let storage = Arc::new(LmdbStorage::open(&dir, 64 << 20).unwrap());
        let apply = apply_thread(&storage, None, std::time::Duration::ZERO);
        let w = TXN_ENTRIES_MAX as u64;
        let (tx, rx) = mpsc::channel();
        // All queued before the thread starts: one run longer than two transactions, then
        // two short jobs that together exceed one.
        tx.send(job(1..=2 * w + 10)).unwrap();
        tx.send(job(2 * w + 11..=2 * w + 10 + w / 2)).unwrap();
        tx.send(job(2 * w + 11 + w / 2..=3 * w + 20)).unwrap();
        drop(tx);
        let (node_tx, mut node_rx) = crate::node::inbox::channel();
        let thread = std::thread::spawn(move || apply.run(rx, node_tx));
        let mut commits = Vec::new();
        while let Ok(Some(input)) = node_rx.recv(Some(std::time::Duration::from_secs(30)), false) {
            match input {
                Input::Applied(Ok(outcome)) => commits.push(outcome.applied_index),
                _ => panic!("expected a commit"),
            }
        }
        thread.join().unwrap();
        // The first job alone is three transactions; the second and third merge into one
        // full transaction and the rest.
        assert_eq!(commits, vec![w, 2 * w, 2 * w + 10, 3 * w + 10, 3 * w + 20]);
        assert_eq!(storage.recover().unwrap().raft.applied, 3 * w + 20);
        drop(storage);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_format_2_data_dir_moves_its_unapplied_entries_to_the_wal() {
        let dir = std::env::temp_dir().join(format!("pikv-disk-v2-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let hard_state = HardState {
            term: 2,
            vote: 7,
            commit: 4,
        };
        {
            // What format 2 left: every entry in LMDB, the hard state beside the applied index.
            let storage = LmdbStorage::open(&dir, 64 << 20).unwrap();
            let mut txn = storage.begin().unwrap();
            for i in 1..=5 {
                txn.append(&entry(if i < 4 { 1 } else { 2 }, i), &[])
                    .unwrap();
            }
            txn.save_raft_state(&RaftState {
                hard_state,
                applied: 3,
            })
            .unwrap();
            txn.commit().unwrap();
            storage.write_format_version(2).unwrap();
            std::fs::remove_dir_all(storage.wal_dir()).ok();
        }
        for round in ["converted", "reopened"] {
            let storage = LmdbStorage::open(&dir, 64 << 20).unwrap();
            let expect_version = if round == "converted" { 2 } else { 3 };
            assert_eq!(storage.format_version(), expect_version, "{round}");
            let recovered = storage.recover().unwrap();
            let (_, log) = open_log(&storage, &recovered).unwrap();
            assert_eq!(log.raft.applied, 3, "{round}");
            assert_eq!(log.raft.hard_state, hard_state, "{round}");
            assert_eq!(log.tail, vec![entry(2, 4), entry(2, 5)], "{round}");
            assert_eq!((log.last_index, log.last_term), (5, 2), "{round}");
            // LMDB keeps the applied entries only.
            let in_lmdb: Vec<u64> = storage
                .entries(1, 10)
                .unwrap()
                .iter()
                .map(|e| e.index)
                .collect();
            assert_eq!(in_lmdb, vec![1, 2, 3], "{round}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_missing_wal_is_refused_once_the_data_dir_has_one() {
        let dir = std::env::temp_dir().join(format!("pikv-disk-nowal-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        {
            let storage = LmdbStorage::open(&dir, 64 << 20).unwrap();
            let recovered = storage.recover().unwrap();
            open_log(&storage, &recovered).unwrap();
            // A member that voted once (LMDB keeps a copy of the hard state).
            let mut txn = storage.begin().unwrap();
            txn.save_raft_state(&RaftState {
                hard_state: HardState {
                    term: 1,
                    vote: 1,
                    commit: 0,
                },
                applied: 0,
            })
            .unwrap();
            txn.commit().unwrap();
            std::fs::remove_dir_all(storage.wal_dir()).unwrap();
        }
        let storage = LmdbStorage::open(&dir, 64 << 20).unwrap();
        let recovered = storage.recover().unwrap();
        let err = open_log(&storage, &recovered).err().expect("refused");
        assert!(err.to_string().contains("raft-wal"), "{err}");
        assert!(err.to_string().contains("missing"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    // What a snapshot installed and a crash before the WAL restarted leave: LMDB applied
    // through 20 (the entry at 20 of the snapshot's term), the WAL the old log. A WAL that
    // ends before 20 ("leapt") or whose entry 20 has another term ("diverged") is not the
    // log that continues the applied state: it starts afresh, and nothing of it is
    // replayed. One that agrees at 20 keeps its tail.
    #[test]
    fn a_wal_that_a_snapshot_leapt_over_or_diverged_from_starts_afresh() {
        let cases: [(&str, u64, u64, u64, Vec<Entry>); 3] = [
            ("leapt", 1, 5, 2, vec![]),
            ("diverged", 1, 30, 2, vec![]),
            ("agrees", 2, 30, 2, (21..=30).map(|i| entry(2, i)).collect()),
        ];
        for (case, wal_term, wal_last, applied_term, want_tail) in cases {
            let dir =
                std::env::temp_dir().join(format!("pikv-disk-leapt-{case}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            let hard_state = HardState {
                term: 2,
                vote: 0,
                commit: 20,
            };
            {
                let storage = LmdbStorage::open(&dir, 64 << 20).unwrap();
                let recovered = storage.recover().unwrap();
                let (mut wal, _) = open_log(&storage, &recovered).unwrap();
                let old: Vec<Entry> = (1..=wal_last).map(|i| entry(wal_term, i)).collect();
                wal.append(Some(hard_state), &old, true).unwrap();
                // The installed state: the applied entry, of the snapshot's term.
                let mut txn = storage.begin().unwrap();
                txn.append(&entry(applied_term, 20), &[]).unwrap();
                txn.save_raft_state(&RaftState {
                    hard_state,
                    applied: 20,
                })
                .unwrap();
                txn.commit().unwrap();
            }
            let mut want_tail = want_tail;
            for round in ["first open", "reopened"] {
                let storage = LmdbStorage::open(&dir, 64 << 20).unwrap();
                let recovered = storage.recover().unwrap();
                let (mut wal, log) = open_log(&storage, &recovered).unwrap();
                assert_eq!(log.raft.applied, 20, "{case} {round}");
                assert_eq!(log.tail, want_tail, "{case} {round}");
                let want_last = want_tail
                    .last()
                    .map_or((20, applied_term), |e| (e.index, e.term));
                assert_eq!((log.last_index, log.last_term), want_last, "{case} {round}");
                assert_eq!(log.raft.hard_state.term, 2, "{case} {round}");
                if round == "first open" && want_tail.is_empty() {
                    // The leader's next entry continues the applied one, in the WAL too.
                    wal.append(None, &[entry(2, 21)], true).unwrap();
                    want_tail = vec![entry(2, 21)];
                }
            }
            std::fs::remove_dir_all(&dir).unwrap();
        }
    }
}
