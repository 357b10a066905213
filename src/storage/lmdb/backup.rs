//! The LMDB side of `pikv backup` and `--force-new-cluster`: a consistent copy of a running
//! member's environment, the mark that makes the copy a backup, and the one transaction that
//! makes a data dir the data dir of a one-member cluster.
//!
//! The copy is LMDB's own (`mdb_env_copy2` with compaction): it reads every page from one
//! read transaction, so it is the applied state of one commit while the member goes on
//! committing. The member opens its environment with LMDB's lock file (pikv never sets
//! `NO_LOCK`), which is what lets another process hold that read transaction safely: the
//! writer sees the reader in the lock file's reader table and does not reuse the pages it
//! reads until it ends.

use super::{io_err, LmdbStorage};
use crate::storage::format::{self, MemberRecord, RaftState};
use crate::storage::{StorageError, StorageErrorKind};
use heed::types::Bytes;
use heed::{CompactionOption, EnvOpenOptions};
use std::path::Path;

/// Copies the LMDB environment of the data dir `data_dir` (a running member's or a stopped
/// one's) into `<backup_dir>/member/data.mdb`, which must not exist yet. Refuses a
/// directory that holds no pikv data (no `member/data.mdb`, or one without pikv's format
/// record, or of a format this build does not read).
pub fn copy_env(data_dir: &Path, backup_dir: &Path) -> Result<(), StorageError> {
    super::refuse_foreign_layout(data_dir)?;
    let dir = data_dir.join("member");
    let data = dir.join("data.mdb");
    if !data.is_file() {
        return Err(StorageError::new(
            "check data dir",
            data_dir,
            StorageErrorKind::Foreign(
                "it is not a pikv data dir (there is no member/data.mdb)".into(),
            ),
        ));
    }
    let mut options = EnvOpenOptions::new();
    // No map size: LMDB then maps the size the member's own meta page records (its
    // --quota-backend-bytes), so that no commit of the running member can outgrow this map
    // while the copy's read transaction starts (MDB_MAP_RESIZED).
    options.max_dbs(8).max_readers(510);
    // SAFETY: READ_ONLY and NO_READ_AHEAD only restrict what this process does with the
    // map (no writes, no read-ahead); they do not change what LMDB guarantees the writer.
    #[allow(unsafe_code)]
    unsafe {
        options.flags(heed::EnvFlags::READ_ONLY | heed::EnvFlags::NO_READ_AHEAD);
    }
    // SAFETY: heed's conditions for opening a memory map: nothing modifies data.mdb except
    // through LMDB (the member's writer, which coordinates with this reader through the
    // lock file it also uses), this process only reads it, from one short-lived process,
    // and a data dir on a network filesystem is documented as unsupported.
    #[allow(unsafe_code)]
    let env = unsafe { options.open(&dir) }.map_err(|e| io_err("open for backup", &dir, e))?;
    {
        let rtxn = env
            .read_txn()
            .map_err(|e| io_err("begin backup read", &dir, e))?;
        let main = env
            .open_database::<Bytes, Bytes>(&rtxn, None)
            .map_err(|e| io_err("open main database", &dir, e))?
            .ok_or_else(|| {
                StorageError::new(
                    "check data dir",
                    &dir,
                    StorageErrorKind::Foreign("data.mdb has no main database".into()),
                )
            })?;
        let record = main
            .get(&rtxn, format::META_FORMAT)
            .map_err(|e| io_err("read format record", &dir, e))?
            .ok_or_else(|| {
                StorageError::new(
                    "check data dir",
                    &dir,
                    StorageErrorKind::Foreign(
                        "it holds no pikv format record (not a pikv data dir)".into(),
                    ),
                )
            })?;
        let version = format::check_format(record).map_err(|why| {
            StorageError::new("check data dir", &dir, StorageErrorKind::Foreign(why))
        })?;
        if version != format::FORMAT_VERSION {
            return Err(StorageError::new(
                "check data dir",
                &dir,
                StorageErrorKind::Foreign(format!(
                    "it has data format version {version}: start pikv on it once (it converts \
                     the data dir to version {}), then back it up",
                    format::FORMAT_VERSION
                )),
            ));
        }
        if main
            .get(&rtxn, format::META_IDENTITY)
            .map_err(|e| io_err("read identity", &dir, e))?
            .is_none()
        {
            return Err(StorageError::new(
                "check data dir",
                &dir,
                StorageErrorKind::Foreign("it was never started as a member (no identity)".into()),
            ));
        }
    }
    let target_dir = backup_dir.join("member");
    std::fs::create_dir_all(&target_dir).map_err(|e| {
        StorageError::new(
            "create backup dir",
            &target_dir,
            StorageErrorKind::Io(e.to_string()),
        )
    })?;
    // Copied under another name, renamed once complete and synced: a copy cut short (the
    // process killed) must not be a data.mdb, whose meta page would promise pages the file
    // does not have.
    let partial = target_dir.join("data.mdb.partial");
    let target = target_dir.join("data.mdb");
    // Compacted: only the pages in use, renumbered, so the copy is as small as the data
    // (the member's file keeps freed pages and preallocated zeros).
    let file = env
        .copy_to_path(&partial, CompactionOption::Enabled)
        .map_err(|e| io_err("copy data.mdb", &partial, e))?;
    let io = |op: &str, path: &Path, e: std::io::Error| {
        StorageError::new(op, path, StorageErrorKind::Io(e.to_string()))
    };
    file.sync_all()
        .map_err(|e| io("sync backup", &partial, e))?;
    std::fs::rename(&partial, &target).map_err(|e| io("name backup", &target, e))?;
    std::fs::File::open(&target_dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io("sync backup dir", &target_dir, e))?;
    Ok(())
}

impl LmdbStorage {
    /// Frees the reader slots of processes that ended inside a read transaction: a
    /// `pikv backup` killed while it copied leaves one, and until it is freed the pages
    /// its transaction saw are never reused (the file grows towards the quota). Returns
    /// how many were freed.
    pub fn clear_stale_readers(&self) -> Result<usize, StorageError> {
        self.env
            .clear_stale_readers()
            .map_err(|e| self.err("check reader slots", e))
    }

    /// Marks this data dir as a backup of `source` (durably): it then starts only with
    /// `--force-new-cluster`.
    pub fn mark_backup(&self, source: &Path) -> Result<(), StorageError> {
        let mut wtxn = self
            .env
            .write_txn()
            .map_err(|e| self.err("begin backup mark", e))?;
        let bytes = format::encode("backup mark", &source.to_string_lossy().into_owned())?;
        self.dbs
            .meta
            .put(&mut wtxn, format::META_BACKUP, &bytes)
            .map_err(|e| self.err("write backup mark", e))?;
        wtxn.commit()
            .map_err(|e| self.err("commit backup mark", e))?;
        self.sync()
    }

    /// The data dir a backup was made from, if this data dir is a backup.
    pub fn backup_source(&self) -> Result<Option<String>, StorageError> {
        let rtxn = self.env.read_txn().map_err(|e| self.err("begin read", e))?;
        match self
            .dbs
            .meta
            .get(&rtxn, format::META_BACKUP)
            .map_err(|e| self.err("read backup mark", e))?
        {
            Some(b) => Ok(Some(format::decode::<String>("backup mark", b)?)),
            None => Ok(None),
        }
    }

    /// Makes this data dir the data dir of a one-member cluster, durably and in one
    /// transaction: `me` is the only member, every other member recorded so far goes to
    /// the removed list (their ids are never given again), the Raft state becomes `state`,
    /// and a backup mark goes. Returns the ids that were removed now.
    pub fn force_single_member(
        &self,
        me: &MemberRecord,
        state: &RaftState,
    ) -> Result<Vec<u64>, StorageError> {
        let mut wtxn = self
            .env
            .write_txn()
            .map_err(|e| self.err("begin force-new-cluster", e))?;
        let read = |wtxn: &heed::RwTxn, key: &[u8], what: &str| -> Result<Vec<u8>, StorageError> {
            Ok(self
                .dbs
                .meta
                .get(wtxn, key)
                .map_err(|e| self.err(&format!("read {what}"), e))?
                .map(<[u8]>::to_vec)
                .unwrap_or_default())
        };
        let members_bytes = read(&wtxn, format::META_MEMBERS, "membership")?;
        let members: Vec<MemberRecord> = if members_bytes.is_empty() {
            Vec::new()
        } else {
            format::decode("membership record", &members_bytes)?
        };
        let removed_bytes = read(&wtxn, format::META_REMOVED, "removed members")?;
        let mut removed: Vec<u64> = if removed_bytes.is_empty() {
            Vec::new()
        } else {
            format::decode("removed members record", &removed_bytes)?
        };
        // A member being removed (its removal in the WAL tail just applied) that is forced
        // stays: it is the cluster now.
        removed.retain(|id| *id != me.id);
        let mut removed_now = Vec::new();
        for m in members.iter().filter(|m| m.id != me.id) {
            if !removed.contains(&m.id) {
                removed.push(m.id);
            }
            removed_now.push(m.id);
        }
        let records = [
            (
                format::META_MEMBERS,
                format::encode("membership", &vec![me.clone()])?,
            ),
            (
                format::META_REMOVED,
                format::encode("removed members", &removed)?,
            ),
            (
                format::META_RAFT_STATE,
                format::encode("raft state", state)?,
            ),
        ];
        for (key, bytes) in records {
            self.dbs
                .meta
                .put(&mut wtxn, key, &bytes)
                .map_err(|e| self.err("write force-new-cluster state", e))?;
        }
        self.dbs
            .meta
            .delete(&mut wtxn, format::META_BACKUP)
            .map_err(|e| self.err("remove backup mark", e))?;
        wtxn.commit()
            .map_err(|e| self.err("commit force-new-cluster", e))?;
        self.sync()?;
        Ok(removed_now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::{Storage, StorageTxn};

    // What a copy cut short would be if it had been named data.mdb: refused with a reason,
    // where LMDB would have died of SIGBUS.
    #[test]
    fn a_truncated_data_file_is_refused_not_mapped_past_its_end() {
        let dir = std::env::temp_dir().join(format!("pikv-truncated-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        {
            let storage = LmdbStorage::open(&dir, 64 << 20).unwrap();
            let mut txn = storage.begin().unwrap();
            for i in 1..=2_000u64 {
                let entry = crate::raft::Entry {
                    term: 1,
                    index: i,
                    payload: crate::raft::Payload::Command(vec![7; 600]),
                };
                txn.append(&entry, &[]).unwrap();
            }
            txn.commit().unwrap();
            storage.sync().unwrap();
        }
        let data = dir.join("member").join("data.mdb");
        // Beyond the preallocated zeros too: down to a tenth of what LMDB uses.
        let used = {
            let storage = LmdbStorage::open(&dir, 64 << 20).unwrap();
            (storage.env.info().last_page_number as u64 + 1) * 4096
        };
        let file = std::fs::OpenOptions::new().write(true).open(&data).unwrap();
        file.set_len(used / 10).unwrap();
        drop(file);
        let err = LmdbStorage::open(&dir, 64 << 20).err().expect("refused");
        assert!(err.to_string().contains("truncated"), "{err}");
        assert!(err.to_string().contains("data.mdb"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
