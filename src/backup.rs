//! `pikv backup`: a consistent copy of a member's data dir, taken while the member runs.
//!
//! A member's durable state is in two places (design.md, `storage::wal`): LMDB holds the
//! applied state, the WAL the hard state and the entries not yet applied (or applied but not
//! yet durable in LMDB). A write the member acknowledged may still be only in the WAL (a
//! cluster answers once the entry is applied in memory, before LMDB's commit is synced), so
//! the backup takes both:
//!
//! 1. the WAL is read first, without changing it (`Wal::read_only`): it holds every entry
//!    the member had made durable when the backup began, from at most one past LMDB's
//!    durable applied index on (segments go only once LMDB holds their entries durably);
//! 2. then LMDB is copied from one read transaction (`storage::lmdb::backup::copy_env`),
//!    applied through some index A no lower than that (LMDB only moves forward);
//! 3. the backup's WAL is the read one's entries after A, with its hard state. If the read
//!    WAL's entry at A has another term than the copy's, its tail was replaced by a newer
//!    leader's before A was applied: then none of it is kept (the copy has the newer log).
//!
//! The result is the member's own log as of step 1 with the state applied further, which is
//! a log the member had: consistent. It is marked as a backup, so that it starts only with
//! `--force-new-cluster` (as a new one-member cluster), never as the member it came from.

use crate::storage::lmdb::{backup::copy_env, LmdbStorage};
use crate::storage::wal::{Wal, WalReplay};
use crate::storage::{StorageError, StorageErrorKind};
use crate::store::V2Store;
use std::fmt;
use std::path::{Path, PathBuf};

/// Reads of the WAL before giving up: a segment recycled between the listing and the read
/// of it (the member went on writing) makes a read fail, and the next one sees the new set.
const WAL_READS: u32 = 5;
/// Room in the backup's map beyond the copied file, for the few records the backup writes.
const MAP_ROOM_BYTES: u64 = 64 << 20;

/// What a backup holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupSummary {
    /// The backup dir.
    pub backup_dir: PathBuf,
    /// The member the data dir belongs to.
    pub member_id: u64,
    /// Its cluster.
    pub cluster_id: u64,
    /// The index the copied state is applied through.
    pub applied: u64,
    /// The store's etcd index at `applied`.
    pub etcd_index: u64,
    /// Entries after `applied` in the backup's WAL (applied when it starts).
    pub wal_entries: u64,
    /// Bytes of the copied data.mdb.
    pub bytes: u64,
}

impl fmt::Display for BackupSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "backup of member {:x} of cluster {:x} in {}: state applied through entry {} \
             (etcd index {}), {} more entries in its write-ahead log, {} bytes; start it \
             with `pikv --force-new-cluster --data-dir {}`",
            self.member_id,
            self.cluster_id,
            self.backup_dir.display(),
            self.applied,
            self.etcd_index,
            self.wal_entries,
            self.bytes,
            self.backup_dir.display()
        )
    }
}

fn io(op: &str, path: &Path, e: std::io::Error) -> StorageError {
    StorageError::new(op, path, StorageErrorKind::Io(e.to_string()))
}

fn refuse(op: &str, path: &Path, why: impl Into<String>) -> StorageError {
    StorageError::new(op, path, StorageErrorKind::Foreign(why.into()))
}

/// Backs up the data dir `data_dir` into `backup_dir` (missing or empty). On failure what
/// was written into `backup_dir` is removed again.
pub fn backup(data_dir: &Path, backup_dir: &Path) -> Result<BackupSummary, StorageError> {
    if !data_dir.join("member").join("data.mdb").is_file() {
        return Err(refuse(
            "check data dir",
            data_dir,
            "it is not a pikv data dir (there is no member/data.mdb)",
        ));
    }
    let created = if backup_dir.exists() {
        if !backup_dir.is_dir() {
            return Err(refuse(
                "check backup dir",
                backup_dir,
                "it is not a directory",
            ));
        }
        let mut listing =
            std::fs::read_dir(backup_dir).map_err(|e| io("list backup dir", backup_dir, e))?;
        if listing.next().is_some() {
            return Err(refuse(
                "check backup dir",
                backup_dir,
                "it is not empty (a backup goes into a new or empty directory)",
            ));
        }
        false
    } else {
        std::fs::create_dir_all(backup_dir).map_err(|e| io("create backup dir", backup_dir, e))?;
        true
    };
    let outcome = write_backup(data_dir, backup_dir);
    if outcome.is_err() {
        // Best effort: the error that matters is the one that stopped the backup.
        let _ = std::fs::remove_dir_all(backup_dir.join("member"));
        if created {
            let _ = std::fs::remove_dir(backup_dir);
        }
    }
    outcome
}

fn write_backup(data_dir: &Path, backup_dir: &Path) -> Result<BackupSummary, StorageError> {
    let same = match (data_dir.canonicalize(), backup_dir.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    };
    if same {
        return Err(refuse(
            "check backup dir",
            backup_dir,
            "it is the data dir itself",
        ));
    }
    let wal_dir = data_dir.join("member").join("raft-wal");
    let mut read = Wal::read_only(&wal_dir);
    for _ in 1..WAL_READS {
        if read.is_ok() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
        read = Wal::read_only(&wal_dir);
    }
    let replay = read?;
    copy_env(data_dir, backup_dir)?;
    let data = backup_dir.join("member").join("data.mdb");
    let bytes = std::fs::metadata(&data)
        .map_err(|e| io("stat backup", &data, e))?
        .len();
    let map = (bytes.div_ceil(4096) * 4096).saturating_add(MAP_ROOM_BYTES);
    let storage = LmdbStorage::open(backup_dir, map)?;
    // The mark before the WAL: a backup cut short (killed) has no WAL, which every start
    // refuses, and one with a WAL is marked, so it never starts as the member it copies.
    storage.mark_backup(data_dir)?;
    let recovered = storage.recover()?;
    let identity = recovered.identity.ok_or_else(|| {
        refuse(
            "back up",
            data_dir,
            "it was never started as a member (no identity)",
        )
    })?;
    let applied = recovered.raft.applied;
    let applied_term = if applied == recovered.last_index {
        recovered.last_term
    } else {
        storage
            .entries(applied, applied)?
            .first()
            .map_or(0, |e| e.term)
    };
    let (hard_state, tail) = wal_after(replay, applied, applied_term, recovered.raft.hard_state)
        .map_err(|why| StorageError::new("back up", &wal_dir, StorageErrorKind::Corrupt(why)))?;
    let (mut wal, _) = Wal::open(&storage.wal_dir())?;
    wal.append(Some(hard_state), &tail, true)?;
    drop(wal);
    let etcd_index = V2Store::current_index(&storage.read()?)?;
    for dir in [backup_dir.join("member"), backup_dir.to_path_buf()] {
        std::fs::File::open(&dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| io("sync backup dir", &dir, e))?;
    }
    Ok(BackupSummary {
        backup_dir: backup_dir.to_path_buf(),
        member_id: identity.member_id,
        cluster_id: identity.cluster_id,
        applied,
        etcd_index,
        wal_entries: tail.len() as u64,
        bytes,
    })
}

/// The hard state and entries for the backup's WAL: the read WAL's entries after `applied`
/// (the copy's applied index, whose entry has `applied_term`), if they continue the copy's
/// log; `copied` is the copy's own record of the hard state.
fn wal_after(
    replay: WalReplay,
    applied: u64,
    applied_term: u64,
    copied: crate::raft::HardState,
) -> Result<(crate::raft::HardState, Vec<crate::raft::Entry>), String> {
    let mut hard_state = replay.hard_state.unwrap_or(copied);
    if hard_state.term < copied.term {
        hard_state = copied;
    }
    let entries = replay.entries;
    let continues = match entries.iter().find(|e| e.index == applied) {
        Some(e) => applied == 0 || e.term == applied_term,
        None => entries.first().is_none_or(|e| e.index <= applied + 1),
    };
    if let Some(first) = entries.first() {
        if first.index > applied + 1 {
            // Segments go only once LMDB holds their entries: not a WAL read before the copy.
            return Err(format!(
                "the write-ahead log starts at entry {} but the copy is applied through {applied} only",
                first.index
            ));
        }
    }
    let tail: Vec<_> = if continues {
        entries.into_iter().filter(|e| e.index > applied).collect()
    } else {
        Vec::new()
    };
    let last = tail.last().map_or(applied, |e| e.index);
    if let Some(top) = tail.iter().map(|e| e.term).max() {
        hard_state.term = hard_state.term.max(top);
    }
    hard_state.commit = hard_state.commit.max(applied).min(last);
    Ok((hard_state, tail))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::raft::{Entry, HardState, Payload};

    fn e(term: u64, index: u64) -> Entry {
        Entry {
            term,
            index,
            payload: Payload::Empty,
        }
    }

    fn hs(term: u64, commit: u64) -> HardState {
        HardState {
            term,
            vote: 1,
            commit,
        }
    }

    fn indexes(v: &[Entry]) -> Vec<u64> {
        v.iter().map(|e| e.index).collect()
    }

    #[test]
    fn the_tail_after_the_copy_is_kept_uncommitted_entries_included() {
        let replay = WalReplay {
            hard_state: Some(hs(2, 5)),
            entries: (4..=9).map(|i| e(2, i)).collect(),
        };
        let (h, tail) = wal_after(replay, 6, 2, hs(2, 6)).unwrap();
        assert_eq!(indexes(&tail), vec![7, 8, 9]);
        assert_eq!(h.commit, 6, "the copy's applied entries are committed");
        assert_eq!(h.term, 2);
    }

    #[test]
    fn a_wal_the_copy_overtook_or_a_replaced_tail_adds_nothing() {
        let behind = WalReplay {
            hard_state: Some(hs(2, 3)),
            entries: (1..=3).map(|i| e(2, i)).collect(),
        };
        let (h, tail) = wal_after(behind, 8, 3, hs(3, 8)).unwrap();
        assert!(tail.is_empty());
        assert_eq!((h.term, h.commit), (3, 8));
        // The WAL held entries of term 2 at 5..=7 that a term-3 leader replaced before 6 was
        // applied: the copy's entry 6 is of term 3.
        let replaced = WalReplay {
            hard_state: Some(hs(2, 4)),
            entries: (4..=7).map(|i| e(2, i)).collect(),
        };
        let (_, tail) = wal_after(replaced, 6, 3, hs(3, 6)).unwrap();
        assert!(tail.is_empty());
    }

    // A stopped member's data dir (the running case is the integration test: heed opens
    // an environment once per process): the copy is applied through 3, its WAL has 4..=6,
    // it refuses to start as the member, and forcing a new cluster on it applies them.
    #[test]
    fn a_backup_holds_the_applied_state_and_the_wal_after_it() {
        let base = std::env::temp_dir().join(format!("pikv-backup-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        let (data, into) = (base.join("data"), base.join("backup"));
        crate::node::force::tests::member_of_three(&data);
        let summary = backup(&data, &into).unwrap();
        assert_eq!(
            (summary.applied, summary.etcd_index, summary.wal_entries),
            (3, 3, 3)
        );
        assert_eq!((summary.member_id, summary.cluster_id), (1, 0xc1));
        let err = backup(&data, &into).unwrap_err().to_string();
        assert!(err.contains("not empty"), "{err}");
        assert!(err.contains(&into.display().to_string()), "{err}");
        let err = backup(&base.join("nothing"), &base.join("b2")).unwrap_err();
        assert!(err.to_string().contains("not a pikv data dir"), "{err}");
        assert!(
            !base.join("b2").exists(),
            "nothing is left of a failed backup"
        );

        let storage = LmdbStorage::open(&into, 64 << 20).unwrap();
        assert_eq!(
            storage.backup_source().unwrap(),
            Some(data.display().to_string())
        );
        let me = crate::storage::MemberRecord {
            id: 1,
            name: "restored".into(),
            peer_urls: vec!["http://127.0.0.1:9999".into()],
        };
        let forced = crate::node::force::force_new_cluster(&storage, &me)
            .unwrap()
            .unwrap();
        assert_eq!(
            (forced.from_wal, forced.last_index, forced.etcd_index),
            (3, 6, 5)
        );
        assert_eq!(storage.backup_source().unwrap(), None);
        drop(storage);
        std::fs::remove_dir_all(&base).unwrap();
    }

    #[test]
    fn a_gap_between_the_copy_and_the_wal_is_refused() {
        let replay = WalReplay {
            hard_state: Some(hs(2, 9)),
            entries: (9..=10).map(|i| e(2, i)).collect(),
        };
        let err = wal_after(replay, 6, 2, hs(2, 6)).unwrap_err();
        assert!(err.contains("starts at entry 9"), "{err}");
    }
}
