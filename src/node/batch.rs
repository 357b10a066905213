//! The apply thread's unit of work: committed entries applied to the v2 store in one LMDB
//! transaction — each entry recorded in the log database with the events it produced, the
//! applied index saved — and one commit. The entries are durable in the WAL already
//! (`storage::wal`): this commit only moves the applied state. Generic over [`Storage`].

use crate::raft::{Entry, HardState};
use crate::storage::format::{self, RaftState};
use crate::storage::{MemberRecord, Storage, StorageError, StorageTxn};
use crate::store::{Applied, Command, V2Error, V2Store};

/// The result of applying one committed command.
pub type ApplyResult = Result<Vec<Applied>, V2Error>;

/// What an applied batch did.
#[derive(Debug)]
pub struct BatchOutcome {
    /// Highest index now applied (visible to readers).
    pub applied_index: u64,
    /// Results of the applied commands, in log order (none when they went out early).
    pub results: Vec<AppliedEntry>,
    /// Earliest expiration of any TTL node after this batch.
    pub next_expiration: Option<u64>,
    /// Whether the batch applied a `Sync` command.
    pub applied_sync: bool,
    /// The cluster time the applied log has reached.
    pub clock: u64,
}

/// One applied command: where it was in the log, who asked, what it did.
#[derive(Debug)]
pub struct AppliedEntry {
    /// Its log index.
    pub index: u64,
    /// The term it was proposed in (a waiter for the index checks it is its entry).
    pub term: u64,
    /// The member and request id of a forwarded command.
    pub origin: Option<(crate::raft::NodeId, u64)>,
    /// What applying it did.
    pub result: ApplyResult,
}

/// Encodes a command for the log.
pub fn encode_command(cmd: &Command) -> Result<Vec<u8>, StorageError> {
    format::encode("command", cmd)
}

fn decode_command(entry: &Entry, bytes: &[u8]) -> Result<Command, StorageError> {
    format::decode(format_args!("command of log entry {}", entry.index), bytes)
}

/// Log entries kept behind the applied index when the log is compacted: a restarted
/// member takes them back into memory (see `node::MEMORY_RETAIN`), and watches with an old
/// `waitIndex` are served from them (etcd keeps 1,000 events). etcd keeps 5,000 after a
/// snapshot; each retained entry costs ~400 bytes of LMDB file a member maps (its RSS).
pub const LOG_RETAIN: u64 = 2_000;

/// The most applied entries beyond the retained tail that wait for a compaction. The
/// LMDB file keeps the size it had at the log's longest (the freed pages stay in it, and a
/// member's RSS counts the mapped ones): with etcd's 10,000 entries between snapshots the
/// log would reach three times the retained tail, some 7 MiB more file with 256-byte
/// values. A range delete costs the same per entry in any size (one cursor delete each).
pub const COMPACTION_STEP_MAX: u64 = 1_000;

/// When to compact: the log holds `first..` and `applied` is applied; every
/// `snapshot_count` (at most [`COMPACTION_STEP_MAX`]) applied entries beyond the retained
/// tail go in one range delete.
pub fn compaction_range(first: u64, applied: u64, snapshot_count: u64) -> Option<(u64, u64)> {
    let keep_from = applied.saturating_sub(LOG_RETAIN);
    let step = snapshot_count.clamp(1, COMPACTION_STEP_MAX);
    (first > 0 && keep_from >= first.saturating_add(step)).then(|| (first, keep_from - 1))
}

/// Housekeeping done in a batch's transaction.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Maintenance {
    /// Remove the log entries of this range (and with them their events).
    pub compact: Option<(u64, u64)>,
    /// Record where the member's cluster clock stands, so that a restart resumes it (it
    /// shares the meta database's pages with the Raft state every batch rewrites anyway).
    pub clock: Option<crate::util::clock::ClockAnchor>,
}

/// Hands the results of what a batch applies to `early` once the transaction holds them and
/// before its commit; the outcome then has none.
pub type EarlyResults<'a> = &'a mut dyn FnMut(Vec<AppliedEntry>);

/// Where a batch whose results go out early finds more committed entries (in order, after
/// those it has applied) and the hard state that came with them, to take into the same
/// transaction before it commits; `None`: commit now.
pub type MoreEntries<'a> = &'a mut dyn FnMut() -> Option<(Vec<Entry>, HardState)>;

/// A batch that answers before its commit: where its results go, and (optionally) where it
/// finds more entries for the same transaction. Each commit costs a sync, and in a cluster
/// those syncs share the disk with the WAL's, which are on the path of every write:
/// taking what arrives within a short window into one commit leaves the disk to the WAL.
pub struct Early<'a> {
    /// Receives each part's results.
    pub results: EarlyResults<'a>,
    /// Supplies further entries.
    pub more: Option<MoreEntries<'a>>,
    /// What `more` supplied, moved here once applied: the caller retries a failed batch
    /// with them (the channel they came from has them no longer).
    pub taken: Option<&'a mut Vec<Entry>>,
}

/// Applies `committed` (durable and committed entries, in index order) as one transaction,
/// with the housekeeping of `maint`, saving `hard_state` beside the applied index. `state`
/// is the Raft state LMDB holds before the batch; on success it is the state after. On
/// error nothing of the batch is applied.
///
/// With `early`, the results go out before the commit: only for a cluster's entries, which
/// are on a majority of disks already, so a client may be answered while the local copy of
/// the applied state is being written (a crash now loses nothing committed: the entries are
/// applied again at restart, from the WAL).
pub fn apply_batch<S: Storage>(
    storage: &S,
    store: &V2Store,
    committed: &[Entry],
    hard_state: HardState,
    state: &mut RaftState,
    maint: Maintenance,
    early: Option<Early<'_>>,
) -> Result<BatchOutcome, StorageError> {
    // The store counts what this batch applies only if its transaction commits.
    let outcome = apply_batch_txn(storage, store, committed, hard_state, state, maint, early);
    match &outcome {
        Ok(_) => store.batch_committed(),
        Err(_) => store.batch_failed(),
    }
    outcome
}

/// Records `entry` as applied without applying it: its command was refused because the map
/// is full even for it alone. The refusal is the entry's result.
pub fn refuse_entry<S: Storage>(
    storage: &S,
    entry: &Entry,
    hard_state: HardState,
    state: &mut RaftState,
    refusal: V2Error,
) -> Result<AppliedEntry, StorageError> {
    let mut txn = storage.begin()?;
    txn.append(entry, &[])?;
    let next = RaftState {
        hard_state,
        applied: entry.index,
    };
    txn.save_raft_state(&next)?;
    txn.commit()?;
    *state = next;
    Ok(AppliedEntry {
        index: entry.index,
        term: entry.term,
        origin: entry.payload.origin(),
        result: Err(refusal),
    })
}

fn apply_batch_txn<S: Storage>(
    storage: &S,
    store: &V2Store,
    committed: &[Entry],
    mut hard_state: HardState,
    state: &mut RaftState,
    maint: Maintenance,
    early: Option<Early<'_>>,
) -> Result<BatchOutcome, StorageError> {
    let mut txn = storage.begin()?;
    if let Some((first, last)) = maint.compact {
        txn.compact_log(first, last)?;
    }
    if let Some(anchor) = &maint.clock {
        V2Store::set_clock_anchor(&mut txn, anchor)?;
    }
    let mut results = Vec::new();
    let mut applied = state.applied;
    let mut applied_sync = false;
    apply_entries(
        &mut txn,
        store,
        committed,
        &mut applied,
        &mut applied_sync,
        &mut results,
    )?;
    if let Some(early) = early {
        if !results.is_empty() {
            (early.results)(std::mem::take(&mut results));
        }
        if let (Some(more), Some(taken)) = (early.more, early.taken) {
            while let Some((entries, newer)) = more() {
                hard_state = newer;
                let applied_more = apply_entries(
                    &mut txn,
                    store,
                    &entries,
                    &mut applied,
                    &mut applied_sync,
                    &mut results,
                );
                taken.extend(entries);
                applied_more?;
                if !results.is_empty() {
                    (early.results)(std::mem::take(&mut results));
                }
            }
        }
    }
    let next = RaftState {
        hard_state,
        applied,
    };
    txn.save_raft_state(&next)?;
    let next_expiration = V2Store::next_expiration(&txn)?;
    let clock = V2Store::clock(&txn)?;
    txn.commit()?;
    *state = next;
    Ok(BatchOutcome {
        applied_index: applied,
        results,
        next_expiration,
        applied_sync,
        clock,
    })
}

fn apply_entries<T: StorageTxn>(
    txn: &mut T,
    store: &V2Store,
    committed: &[Entry],
    applied: &mut u64,
    applied_sync: &mut bool,
    results: &mut Vec<AppliedEntry>,
) -> Result<(), StorageError> {
    for entry in committed {
        if entry.index <= *applied {
            // Applied before a restart: LMDB has it already.
            continue;
        }
        let mut history = Vec::new();
        if let Some(bytes) = entry.payload.command() {
            let cmd = decode_command(entry, bytes)?;
            *applied_sync |= matches!(cmd, Command::Sync { .. });
            let result = store.apply(txn, &cmd)?;
            if let Ok(done) = &result {
                history = V2Store::encode_history(done.iter().map(|a| &a.event), &cmd)?;
            }
            results.push(AppliedEntry {
                index: entry.index,
                term: entry.term,
                origin: entry.payload.origin(),
                result,
            });
        }
        if let Some((change, context)) = entry.payload.membership() {
            // A leader's context that does not decode must not stop every member at the
            // same entry: the change is recorded without the member's details.
            let added = if context.is_empty() {
                None
            } else {
                format::decode::<MemberRecord>("member record", context)
                    .map_err(|e| {
                        log::warn!("membership change at {}: {e}", entry.index);
                    })
                    .ok()
            };
            txn.apply_membership(change, added.as_ref())?;
        }
        // The log database holds the applied log with its events: the watch history and
        // the tail kept for followers come from it.
        txn.append(entry, &history)?;
        *applied = entry.index;
    }
    Ok(())
}

/// The last [`crate::store::HISTORY_LEN`] events, ascending, read back from the log records
/// (at start, to rebuild the watch history).
pub fn load_history(
    storage: &crate::storage::lmdb::LmdbStorage,
) -> Result<Vec<crate::store::Event>, StorageError> {
    let mut newest_first = Vec::new();
    storage.recent_history(&mut |entry, bytes| {
        if let Some(cmd_bytes) = entry.payload.command() {
            let cmd = decode_command(entry, cmd_bytes)?;
            let events = V2Store::decode_history(bytes, &cmd)?;
            newest_first.extend(events.into_iter().rev());
        }
        Ok(newest_first.len() < crate::store::HISTORY_LEN)
    })?;
    newest_first.truncate(crate::store::HISTORY_LEN);
    newest_first.reverse();
    Ok(newest_first)
}

#[cfg(test)]
mod tests {
    //! Counts the pages one batch commit writes to LMDB (design.md: keep the pages touched
    //! per commit few). Bytes written come from /proc/thread-self/io `wchar`, which counts
    //! what this thread passed to write(2)/pwrite(2): LMDB writes whole pages.
    use super::*;
    use crate::raft::{Entry, Payload};
    use crate::storage::lmdb::LmdbStorage;

    fn thread_wchar() -> u64 {
        let io = std::fs::read_to_string("/proc/thread-self/io").unwrap_or_default();
        io.lines()
            .find_map(|l| l.strip_prefix("wchar: "))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    }

    struct Fixture {
        storage: LmdbStorage,
        store: V2Store,
        state: RaftState,
        next_index: u64,
        dir: std::path::PathBuf,
    }

    impl Fixture {
        fn new(name: &str) -> Fixture {
            let dir =
                std::env::temp_dir().join(format!("pikv-pages-{name}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            let storage = LmdbStorage::open(&dir, 256 << 20).unwrap();
            Fixture {
                storage,
                store: V2Store::new(),
                state: RaftState::default(),
                next_index: 1,
                dir,
            }
        }

        fn batch(&mut self, keys: &[u64]) {
            let value = "v".repeat(256);
            let entries: Vec<Entry> = keys
                .iter()
                .map(|k| {
                    let cmd = Command::Set {
                        key: format!("/bench/k{k}"),
                        value: value.clone(),
                        dir: false,
                        expire_at: None,
                        refresh: false,
                    };
                    let e = Entry {
                        term: 1,
                        index: self.next_index,
                        payload: Payload::Command(encode_command(&cmd).unwrap()),
                    };
                    self.next_index += 1;
                    e
                })
                .collect();
            apply_batch(
                &self.storage,
                &self.store,
                &entries,
                HardState::default(),
                &mut self.state,
                Maintenance::default(),
                None,
            )
            .unwrap();
        }
    }

    impl Drop for Fixture {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }

    #[test]
    fn compaction_waits_for_a_full_step_beyond_the_tail() {
        // The default --snapshot-count (10,000) compacts in steps of 1,000.
        let r = LOG_RETAIN;
        assert_eq!(compaction_range(1, r + 999, 10_000), None);
        assert_eq!(compaction_range(1, r + 1_001, 10_000), Some((1, 1_000)));
        assert_eq!(compaction_range(1_001, r + 1_999, 10_000), None);
        assert_eq!(compaction_range(1_001, r + 2_000, 10_000), None);
        assert_eq!(
            compaction_range(1_001, r + 2_001, 10_000),
            Some((1_001, 2_000))
        );
        // A smaller count compacts as often as it says.
        assert_eq!(compaction_range(1, r + 101, 100), Some((1, 100)));
        assert_eq!(compaction_range(1, r + 100, 100), None);
        assert_eq!(compaction_range(0, 50_000, 10_000), None);
    }

    // A deterministic key stream over a 10,000-key space, like the benchmark's.
    fn keys(seed: &mut u64, n: usize) -> Vec<u64> {
        (0..n)
            .map(|_| {
                *seed = seed
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                (*seed >> 33) % 10_000
            })
            .collect()
    }

    #[test]
    fn pages_written_per_commit() {
        let mut f = Fixture::new("commit");
        for chunk in (0..10_000u64).collect::<Vec<_>>().chunks(500) {
            f.batch(chunk);
        }
        let mut seed = 7;
        let mut report = Vec::new();
        for per_batch in [1usize, 16, 64] {
            let commits = 40;
            let before = thread_wchar();
            for _ in 0..commits {
                let k = keys(&mut seed, per_batch);
                f.batch(&k);
            }
            let bytes = thread_wchar() - before;
            let pages_per_commit = bytes as f64 / 4096.0 / commits as f64;
            let bytes_per_put = bytes as f64 / (commits * per_batch) as f64;
            eprintln!("pages per commit with {per_batch:>2} PUTs: {pages_per_commit:.1} ({bytes_per_put:.0} bytes/PUT)");
            report.push((per_batch, pages_per_commit));
        }
        // Keys written in order (as the benchmark's clients do), 28 per commit.
        let mut next = 0u64;
        let commits = 40;
        let before = thread_wchar();
        for _ in 0..commits {
            let k: Vec<u64> = (0..28).map(|i| (next + i) % 10_000).collect();
            next += 28;
            f.batch(&k);
        }
        let in_order = (thread_wchar() - before) as f64 / 4096.0 / commits as f64;
        eprintln!("pages per commit with 28 PUTs in key order: {in_order:.1}");
        // One PUT per commit: its node leaf, the log's right edge (entry and events), the main
        // database leaf (meta records), freelist pages and LMDB's meta page, with branch pages.
        assert!(report[0].1 <= 10.0, "{report:?}");
        // Group commit spreads the fixed pages: far fewer pages per PUT at 64 per commit.
        assert!(report[2].1 / 64.0 < report[0].1 / 4.0, "{report:?}");
    }

    #[test]
    fn a_membership_change_updates_the_record_in_the_batch_that_applies_it() {
        let mut f = Fixture::new("membership");
        let record = |id: u64| MemberRecord {
            id,
            name: format!("m{id}"),
            peer_urls: vec![format!("http://10.0.0.{id}:2380")],
        };
        f.storage
            .save_identity(
                &crate::storage::Identity {
                    cluster_id: 7,
                    member_id: 1,
                },
                &[record(1), record(2), record(3)],
            )
            .unwrap();
        let change = |index, change, context: Vec<u8>| Entry {
            term: 1,
            index,
            payload: Payload::Membership { change, context },
        };
        let four = format::encode("member", &record(4)).unwrap();
        let entries = [
            change(1, crate::raft::ConfChange::AddVoter(4), four),
            change(2, crate::raft::ConfChange::RemoveVoter(2), vec![]),
            // A context that does not decode still adds the member, without details.
            change(3, crate::raft::ConfChange::AddVoter(5), vec![0xFF; 3]),
        ];
        apply_batch(
            &f.storage,
            &f.store,
            &entries,
            HardState::default(),
            &mut f.state,
            Maintenance::default(),
            None,
        )
        .unwrap();
        let recovered = f.storage.recover().unwrap();
        let ids: Vec<u64> = recovered.members.iter().map(|m| m.id).collect();
        assert_eq!(ids, [1, 3, 4, 5]);
        assert_eq!(recovered.members[2], record(4));
        assert_eq!(recovered.members[3].name, "");
        assert_eq!(recovered.raft.applied, 3);
    }

    #[test]
    fn a_snapshot_streams_the_applied_state_into_an_empty_data_dir() {
        let mut f = Fixture::new("snapshot-from");
        let record = |id: u64| MemberRecord {
            id,
            name: format!("m{id}"),
            peer_urls: vec![format!("http://10.0.0.{id}:2380")],
        };
        f.storage
            .save_identity(
                &crate::storage::Identity {
                    cluster_id: 7,
                    member_id: 1,
                },
                &[record(1), record(2)],
            )
            .unwrap();
        // Enough to need several chunks.
        for chunk in (0..3_000u64).collect::<Vec<_>>().chunks(500) {
            f.batch(chunk);
        }
        let mut stream = Vec::new();
        let header = f.storage.write_snapshot(7, &mut stream).unwrap();
        assert_eq!(header.index, 3_000);
        assert_eq!(header.term, 1);
        assert_eq!(header.members, [record(1), record(2)]);
        assert!(stream.len() > 2 * crate::storage::lmdb::snapshot::CHUNK_BYTES);

        let to = Fixture::new("snapshot-to");
        let nine = crate::storage::Identity {
            cluster_id: 7,
            member_id: 9,
        };
        let installed = to
            .storage
            .install_snapshot(nine, &mut stream.as_slice())
            .unwrap();
        assert_eq!(installed, header);
        let recovered = to.storage.recover().unwrap();
        assert_eq!(
            recovered.identity,
            Some(crate::storage::Identity {
                cluster_id: 7,
                member_id: 9
            })
        );
        assert_eq!(recovered.raft.applied, 3_000);
        assert_eq!(recovered.raft.hard_state.commit, 3_000);
        assert_eq!((recovered.last_index, recovered.last_term), (3_000, 1));
        assert_eq!(recovered.members, [record(1), record(2)]);
        let read = |st: &LmdbStorage, key: &str| {
            let view = st.read().unwrap();
            let got = f.store.get(&view, key, true, false).unwrap();
            got.map(|e| (e.node.value, e.etcd_index))
        };
        for key in ["/bench/k0", "/bench/k2999", "/bench", "/nope"] {
            assert_eq!(read(&to.storage, key), read(&f.storage, key), "{key}");
        }

        // Cut anywhere, or corrupted, the stream installs nothing.
        let empty = Fixture::new("snapshot-cut");
        for cut in [0, 10, stream.len() / 2, stream.len() - 1] {
            assert!(empty
                .storage
                .install_snapshot(nine, &mut &stream[..cut])
                .is_err());
        }
        let other = crate::storage::Identity {
            cluster_id: 8,
            member_id: 9,
        };
        assert!(empty
            .storage
            .install_snapshot(other, &mut stream.as_slice())
            .is_err());
        let mut bad = stream.clone();
        let mid = bad.len() / 2;
        bad[mid] ^= 0x40;
        assert!(empty
            .storage
            .install_snapshot(nine, &mut bad.as_slice())
            .is_err());
        let recovered = empty.storage.recover().unwrap();
        assert_eq!(recovered.identity, None);
        assert_eq!(recovered.raft.applied, 0);
        assert!(read(&empty.storage, "/bench/k0").is_err(), "key not found");
    }
}
