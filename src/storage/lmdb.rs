//! LMDB through heed: the only module that uses heed (with `snapshot`, its state streamed
//! out and installed, and `backup`, a running member's copied). One environment in
//! `<data-dir>/member/`: the meta records (format, identity, Raft state, the store's index)
//! in the main database, and the databases `log` (entries with their events), `nodes` and
//! `ttl`. The apply thread's batch is one write transaction and one commit (data pages
//! synced, meta page synced by the next: `NO_META_SYNC`); API workers read in short read
//! transactions, which never block the writer.

use super::format::{self, Identity, MemberRecord, RaftState};
use super::{Storage, StorageError, StorageErrorKind, StorageTxn};
use crate::raft::Entry;
use crate::store::{KvRead, KvWrite, Table};
use heed::types::Bytes;
use heed::{Database, Env, EnvOpenOptions, RoTxn, RwTxn, WithTls};
use std::path::{Path, PathBuf};

pub mod backup;
pub mod snapshot;

type Db = Database<Bytes, Bytes>;

#[derive(Clone, Copy)]
struct Dbs {
    /// LMDB's main (unnamed) database.
    meta: Db,
    log: Db,
    nodes: Db,
    ttl: Db,
}

/// What [`LmdbStorage::recent_history`] calls with each entry and its history bytes;
/// `Ok(false)` stops the walk.
pub type HistoryVisitor<'a> = dyn FnMut(&Entry, &[u8]) -> Result<bool, StorageError> + 'a;

/// An open data dir.
pub struct LmdbStorage {
    env: Env<WithTls>,
    dbs: Dbs,
    path: PathBuf,
    map_bytes: u64,
    /// The format version found at open (older ones are converted at start).
    version: u32,
    ahead: Preallocation,
}

/// Zeroed space kept written past LMDB's last page, so that commits overwrite blocks the file
/// already has instead of growing it.
///
/// Two reasons, both measured on ext4 (kernel 6.18): an fdatasync that must also commit a new
/// file size waits for a journal commit (append + fdatasync 0.18 ms, overwrite 0.14 ms in
/// `shared/bench/fsync_limit.py`); and LMDB writes a run of new contiguous pages with one
/// `writev`, which the page cache turns into one multi-page folio, so every later one-page
/// rewrite inside it dirties (and writes back) the whole folio: 3.4x the bytes LMDB wrote.
/// Zeros written one page per `pwrite` leave one-page folios behind.
struct Preallocation {
    file: std::fs::File,
    /// Bytes of data.mdb known to be written (the file length).
    len: std::sync::atomic::AtomicU64,
}

/// Preallocate when fewer than this many pages are left past LMDB's last page.
const PREALLOC_LOW_PAGES: u64 = 64;
/// How much to preallocate at once.
const PREALLOC_STEP_PAGES: u64 = 256;

/// What a data dir holds when pikv starts on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recovered {
    /// Cluster and member id, if the data dir was bootstrapped.
    pub identity: Option<Identity>,
    /// The members recorded at bootstrap (empty in a data dir of a pikv that recorded none:
    /// those were single-member clusters).
    pub members: Vec<MemberRecord>,
    /// Hard state and applied index.
    pub raft: RaftState,
    /// Index and term of the last log entry (0, 0 when the log is empty).
    pub last_index: u64,
    /// Term of the last log entry.
    pub last_term: u64,
}

fn io_err(op: impl Into<String>, path: &Path, e: heed::Error) -> StorageError {
    let kind = match e {
        heed::Error::Mdb(heed::MdbError::MapFull) => StorageErrorKind::MapFull,
        heed::Error::Mdb(heed::MdbError::Invalid) => StorageErrorKind::Foreign(
            "data.mdb is not an LMDB file or is damaged (MDB_INVALID)".to_string(),
        ),
        heed::Error::Mdb(heed::MdbError::VersionMismatch) => StorageErrorKind::Foreign(
            "data.mdb was written by an incompatible LMDB version".to_string(),
        ),
        other => StorageErrorKind::Io(other.to_string()),
    };
    StorageError::new(op, path.to_path_buf(), kind)
}

impl LmdbStorage {
    /// Opens (creating if needed) the data dir `data_dir` with a map of `map_bytes`.
    /// Refuses data dirs of other programs, other formats and damaged files.
    pub fn open(data_dir: &Path, map_bytes: u64) -> Result<LmdbStorage, StorageError> {
        refuse_foreign_layout(data_dir)?;
        let dir = data_dir.join("member");
        std::fs::create_dir_all(&dir).map_err(|e| {
            StorageError::new("create data dir", &dir, StorageErrorKind::Io(e.to_string()))
        })?;
        let map_size = usize::try_from(map_bytes).map_err(|_| {
            StorageError::new(
                "open data dir",
                &dir,
                StorageErrorKind::Io(format!(
                    "--quota-backend-bytes={map_bytes} does not fit this machine's address space"
                )),
            )
        })?;
        let mut options = EnvOpenOptions::new();
        options.map_size(map_size).max_dbs(8).max_readers(510);
        // SAFETY: NO_READ_AHEAD only stops the kernel from reading pages around each page
        // LMDB touches (it does not weaken durability, unlike NO_SYNC): random key access
        // then keeps only the pages actually used resident, which is what keeps RSS small
        // once the data outgrows a few MB.
        // NO_META_SYNC: a commit syncs its data pages but not its meta page, which the next
        // commit's sync (or `sync`) makes durable; the database stays intact on a crash
        // (LMDB's guarantee for this flag), only the last commit may be undone. pikv can
        // afford that: what LMDB holds is the applied state, and the entries it derives
        // from stay in the WAL until LMDB has them durably (see `wal.rs`).
        #[allow(unsafe_code)]
        unsafe {
            options.flags(heed::EnvFlags::NO_READ_AHEAD | heed::EnvFlags::NO_META_SYNC);
        }
        // SAFETY: heed's conditions for opening a memory map: this process owns the data dir
        // (nothing else modifies data.mdb while it is mapped; `pikv backup` only reads it,
        // through LMDB's lock file, see `backup`), pikv keeps read transactions short, and a
        // data dir on a network filesystem is documented as unsupported.
        #[allow(unsafe_code)]
        let env = unsafe { options.open(&dir) }.map_err(|e| match e {
            heed::Error::Io(ref io) if io.raw_os_error() == Some(12) => StorageError::new(
                "open data dir",
                &dir,
                StorageErrorKind::Io(format!(
                    "cannot map --quota-backend-bytes={map_bytes} bytes (out of address space; \
                     on 32-bit boards use at most 512 MiB)"
                )),
            ),
            other => io_err("open data dir", &dir, other),
        })?;
        refuse_truncated(&env, &dir)?;
        let mut wtxn = env
            .write_txn()
            .map_err(|e| io_err("begin setup", &dir, e))?;
        let mk = |wtxn: &mut RwTxn, name: &str| {
            env.create_database::<Bytes, Bytes>(wtxn, Some(name))
                .map_err(|e| io_err(format!("open database {name}"), &dir, e))
        };
        let main = env
            .create_database::<Bytes, Bytes>(&mut wtxn, None)
            .map_err(|e| io_err("open main database", &dir, e))?;
        let mut found = main
            .get(&wtxn, format::META_FORMAT)
            .map_err(|e| io_err("read format record", &dir, e))?
            .map(<[u8]>::to_vec);
        if found.is_none() {
            // Format 1 kept its records in a database named `meta`: report its version.
            if let Some(old) = env
                .open_database::<Bytes, Bytes>(&wtxn, Some("meta"))
                .map_err(|e| io_err("open database meta", &dir, e))?
            {
                found = Some(
                    old.get(&wtxn, format::META_FORMAT)
                        .map_err(|e| io_err("read format record", &dir, e))?
                        .map_or_else(Vec::new, <[u8]>::to_vec),
                );
            }
        }
        let dbs = Dbs {
            meta: main,
            log: mk(&mut wtxn, "log")?,
            nodes: mk(&mut wtxn, "nodes")?,
            ttl: mk(&mut wtxn, "ttl")?,
        };
        let version = match found {
            Some(record) => format::check_format(&record).map_err(|why| {
                StorageError::new("check data dir", &dir, StorageErrorKind::Foreign(why))
            })?,
            None => {
                let empty = dbs
                    .log
                    .is_empty(&wtxn)
                    .map_err(|e| io_err("check log", &dir, e))?
                    && dbs
                        .nodes
                        .is_empty(&wtxn)
                        .map_err(|e| io_err("check nodes", &dir, e))?;
                if !empty {
                    return Err(StorageError::new(
                        "check data dir",
                        &dir,
                        StorageErrorKind::Foreign("it holds data but no pikv format record".into()),
                    ));
                }
                dbs.meta
                    .put(&mut wtxn, format::META_FORMAT, &format::format_record())
                    .map_err(|e| io_err("write format record", &dir, e))?;
                format::FORMAT_VERSION
            }
        };
        wtxn.commit().map_err(|e| io_err("commit setup", &dir, e))?;
        env.force_sync()
            .map_err(|e| io_err("sync setup", &dir, e))?;
        let data_path = dir.join("data.mdb");
        let file = std::fs::OpenOptions::new()
            .write(true)
            .open(&data_path)
            .map_err(|e| {
                StorageError::new(
                    "open for preallocation",
                    &data_path,
                    StorageErrorKind::Io(e.to_string()),
                )
            })?;
        let len = file
            .metadata()
            .map_err(|e| {
                StorageError::new("stat", &data_path, StorageErrorKind::Io(e.to_string()))
            })?
            .len();
        let storage = LmdbStorage {
            env,
            dbs,
            path: dir,
            map_bytes,
            version,
            ahead: Preallocation {
                file,
                len: std::sync::atomic::AtomicU64::new(len),
            },
        };
        storage.preallocate()?;
        Ok(storage)
    }

    /// Keeps [`PREALLOC_LOW_PAGES`] or more written pages past LMDB's last page (see
    /// [`Preallocation`]). Called by the one writer between transactions, so nothing else
    /// writes past the last page meanwhile.
    pub fn preallocate(&self) -> Result<(), StorageError> {
        use std::os::unix::fs::FileExt;
        use std::sync::atomic::Ordering::Relaxed;
        let page = page_size();
        let used = (self.env.info().last_page_number as u64 + 1) * page;
        let len = self.ahead.len.load(Relaxed);
        if len >= used + PREALLOC_LOW_PAGES * page || len >= self.map_bytes {
            return Ok(());
        }
        let target = (used.max(len) + PREALLOC_STEP_PAGES * page).min(self.map_bytes);
        let data_path = self.path.join("data.mdb");
        let zeros = [0u8; 4096];
        // Start at a page boundary at or past both the file end and LMDB's last page.
        let mut at = len.max(used).div_ceil(page) * page;
        while at < target {
            self.ahead.file.write_all_at(&zeros, at).map_err(|e| {
                StorageError::new(
                    "preallocate",
                    &data_path,
                    StorageErrorKind::Io(e.to_string()),
                )
            })?;
            at += page;
        }
        self.ahead.file.sync_data().map_err(|e| {
            StorageError::new(
                "sync preallocation",
                &data_path,
                StorageErrorKind::Io(e.to_string()),
            )
        })?;
        self.ahead.len.store(at, Relaxed);
        Ok(())
    }

    /// The directory holding the LMDB files.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The data format version the data dir had when opened.
    pub fn format_version(&self) -> u32 {
        self.version
    }

    /// Rewrites the format record as `version` (tests make old data dirs with it).
    #[cfg(test)]
    pub fn write_format_version(&self, version: u32) -> Result<(), StorageError> {
        let mut txn = self.begin()?;
        let mut record = format::format_record();
        record[8..].copy_from_slice(&version.to_be_bytes());
        self.dbs
            .meta
            .put(&mut txn.txn, format::META_FORMAT, &record)
            .map_err(|e| self.err("write format record", e))?;
        txn.commit()?;
        self.sync()
    }

    /// The directory of the WAL.
    pub fn wal_dir(&self) -> PathBuf {
        self.path.join("raft-wal")
    }

    /// Makes every commit so far durable (the last one's meta page included).
    pub fn sync(&self) -> Result<(), StorageError> {
        self.env
            .force_sync()
            .map_err(|e| self.err("sync data.mdb", e))
    }

    /// Removes the log entries after `applied` and records `state`, durably: the log
    /// database then holds only applied entries (the others are in the WAL). For data dirs
    /// of format 2, which kept every entry here.
    pub fn drop_unapplied(&self, state: &RaftState, last: u64) -> Result<(), StorageError> {
        let mut txn = self.begin()?;
        if last > state.applied {
            txn.compact_log(state.applied + 1, last)?;
        }
        txn.save_raft_state(state)?;
        let main = self.dbs.meta;
        main.put(&mut txn.txn, format::META_FORMAT, &format::format_record())
            .map_err(|e| self.err("write format record", e))?;
        txn.commit()?;
        self.sync()
    }

    /// What the data dir holds: identity, Raft state and the end of the log.
    pub fn recover(&self) -> Result<Recovered, StorageError> {
        let rtxn = self
            .env
            .read_txn()
            .map_err(|e| self.err("begin recovery", e))?;
        let identity = match self
            .dbs
            .meta
            .get(&rtxn, format::META_IDENTITY)
            .map_err(|e| self.err("read identity", e))?
        {
            Some(b) => Some(format::decode::<Identity>("identity record", b)?),
            None => None,
        };
        let members = match self
            .dbs
            .meta
            .get(&rtxn, format::META_MEMBERS)
            .map_err(|e| self.err("read membership", e))?
        {
            Some(b) => format::decode::<Vec<MemberRecord>>("membership record", b)?,
            None => Vec::new(),
        };
        let raft = match self
            .dbs
            .meta
            .get(&rtxn, format::META_RAFT_STATE)
            .map_err(|e| self.err("read raft state", e))?
        {
            Some(b) => format::decode::<RaftState>("raft state record", b)?,
            None => RaftState::default(),
        };
        let (last_index, last_term) = match self
            .dbs
            .log
            .last(&rtxn)
            .map_err(|e| self.err("read last log entry", e))?
        {
            Some((k, v)) => {
                let index = <[u8; 8]>::try_from(k)
                    .map(u64::from_be_bytes)
                    .map_err(|_| StorageError::corrupt("read last log entry", "bad key length"))?;
                let (entry, _) = format::decode_entry(index, v)?;
                (entry.index, entry.term)
            }
            None => (0, 0),
        };
        // (The commit index may be past LMDB's log: the entries after the applied index
        // are in the WAL, and the caller checks the two together.)
        if raft.applied > last_index {
            return Err(StorageError::new(
                "check raft state",
                &self.path,
                StorageErrorKind::Corrupt(format!(
                    "applied {} beyond the last log entry {last_index}",
                    raft.applied
                )),
            ));
        }
        Ok(Recovered {
            identity,
            members,
            raft,
            last_index,
            last_term,
        })
    }

    /// Index of the first log entry (0 when the log is empty).
    pub fn first_index(&self) -> Result<u64, StorageError> {
        let rtxn = self
            .env
            .read_txn()
            .map_err(|e| self.err("begin log read", e))?;
        match self
            .dbs
            .log
            .first(&rtxn)
            .map_err(|e| self.err("read first log entry", e))?
        {
            Some((k, _)) => <[u8; 8]>::try_from(k)
                .map(u64::from_be_bytes)
                .map_err(|_| StorageError::corrupt("read first log entry", "bad key length")),
            None => Ok(0),
        }
    }

    /// Records who this data dir belongs to and the cluster it was bootstrapped in (once, at
    /// bootstrap, in one transaction).
    pub fn save_identity(
        &self,
        identity: &Identity,
        members: &[MemberRecord],
    ) -> Result<(), StorageError> {
        let mut wtxn = self
            .env
            .write_txn()
            .map_err(|e| self.err("begin identity write", e))?;
        self.dbs
            .meta
            .put(
                &mut wtxn,
                format::META_MEMBERS,
                &format::encode("membership", &members.to_vec())?,
            )
            .map_err(|e| self.err("write membership", e))?;
        self.dbs
            .meta
            .put(
                &mut wtxn,
                format::META_IDENTITY,
                &format::encode("identity", identity)?,
            )
            .map_err(|e| self.err("write identity", e))?;
        wtxn.commit().map_err(|e| self.err("commit identity", e))
    }

    /// A read transaction for API workers: keep it short.
    pub fn read(&self) -> Result<LmdbRead<'_>, StorageError> {
        let txn = self.env.read_txn().map_err(|e| self.err("begin read", e))?;
        Ok(LmdbRead {
            txn,
            dbs: self.dbs,
            path: &self.path,
        })
    }

    /// Bytes of the map in use (pages that are not free), for the quota check.
    pub fn used_bytes(&self) -> Result<u64, StorageError> {
        let info = self.env.info();
        let high_water = (info.last_page_number as u64 + 1).saturating_mul(page_size());
        // Cheap estimate first; the exact count walks every database's statistics.
        // (below 60 %, under the 70 % where the node starts to make room: the high-water mark
        // never goes down, so near the quota only the exact count can say space came back).
        if high_water < self.map_bytes / 10 * 6 {
            return Ok(high_water);
        }
        self.env
            .non_free_pages_size()
            .map_err(|e| self.err("measure used pages", e))
    }

    /// The map size (the quota).
    pub fn map_bytes(&self) -> u64 {
        self.map_bytes
    }

    /// The log entries in `[from, to]`, for tests and replay.
    pub fn entries(&self, from: u64, to: u64) -> Result<Vec<Entry>, StorageError> {
        let rtxn = self
            .env
            .read_txn()
            .map_err(|e| self.err("begin log read", e))?;
        let (lo, hi) = (format::log_key(from), format::log_key(to));
        let bounds: (std::ops::Bound<&[u8]>, std::ops::Bound<&[u8]>) = (
            std::ops::Bound::Included(&lo[..]),
            std::ops::Bound::Included(&hi[..]),
        );
        let iter = self
            .dbs
            .log
            .range(&rtxn, &bounds)
            .map_err(|e| self.err("read log", e))?;
        let mut out = Vec::new();
        for item in iter {
            let (k, v) = item.map_err(|e| self.err("read log", e))?;
            let index = <[u8; 8]>::try_from(k)
                .map(u64::from_be_bytes)
                .map_err(|_| StorageError::corrupt("read log", "bad key length"))?;
            out.push(format::decode_entry(index, v)?.0);
        }
        Ok(out)
    }

    /// Visits the log from its newest record back, passing each entry that carries history
    /// bytes (the events it produced when applied), until `visit` returns `false`: the watch
    /// history is rebuilt from this at start.
    pub fn recent_history(&self, visit: &mut HistoryVisitor<'_>) -> Result<(), StorageError> {
        let rtxn = self
            .env
            .read_txn()
            .map_err(|e| self.err("begin log read", e))?;
        let iter = self
            .dbs
            .log
            .rev_iter(&rtxn)
            .map_err(|e| self.err("read log", e))?;
        for item in iter {
            let (k, v) = item.map_err(|e| self.err("read log", e))?;
            let index = <[u8; 8]>::try_from(k)
                .map(u64::from_be_bytes)
                .map_err(|_| StorageError::corrupt("read log", "bad key length"))?;
            let (entry, history) = format::decode_entry(index, v)?;
            if !history.is_empty() && !visit(&entry, history)? {
                break;
            }
        }
        Ok(())
    }

    fn err(&self, op: &str, e: heed::Error) -> StorageError {
        io_err(op, &self.path, e)
    }
}

// MDB_APPEND fills the right-most leaf and starts a fresh one when it is full; a plain put
// splits the full leaf in half, leaving sequential trees half empty and rewriting two pages
// per split. APPEND refuses a key that is not the largest: then fall back to a plain put
// (a Raft log overwrite, a store key out of order).
fn append_or_put(txn: &mut RwTxn, db: Db, key: &[u8], value: &[u8]) -> Result<(), heed::Error> {
    match db.put_with_flags(txn, heed::PutFlags::APPEND, key, value) {
        Err(heed::Error::Mdb(heed::MdbError::KeyExist)) => db.put(txn, key, value),
        other => other,
    }
}

fn page_size() -> u64 {
    4096
}

/// Refuses a data.mdb shorter than the pages its meta page says are in use (a copy cut
/// short, a file truncated by a full disk): LMDB would read them through the map, past the
/// end of the file, and the process would die of SIGBUS instead of saying why.
fn refuse_truncated(env: &Env<WithTls>, dir: &Path) -> Result<(), StorageError> {
    let data = dir.join("data.mdb");
    let len = std::fs::metadata(&data)
        .map_err(|e| StorageError::new("stat", &data, StorageErrorKind::Io(e.to_string())))?
        .len();
    let used = (env.info().last_page_number as u64 + 1).saturating_mul(page_size());
    if len < used {
        return Err(StorageError::new(
            "check data dir",
            &data,
            StorageErrorKind::Corrupt(format!(
                "the file has {len} bytes but its pages in use end at byte {used} (truncated)"
            )),
        ));
    }
    Ok(())
}

/// Refuses an etcd data dir (or any dir with a `member/` that is not pikv's) before LMDB
/// creates files in it.
fn refuse_foreign_layout(data_dir: &Path) -> Result<(), StorageError> {
    let member = data_dir.join("member");
    for etcd_part in ["wal", "snap"] {
        if member.join(etcd_part).exists() {
            return Err(StorageError::new(
                "check data dir",
                data_dir,
                StorageErrorKind::Foreign(format!(
                    "it looks like an etcd data dir (member/{etcd_part} exists); pikv cannot read etcd's format"
                )),
            ));
        }
    }
    if data_dir.exists() && !data_dir.is_dir() {
        return Err(StorageError::new(
            "check data dir",
            data_dir,
            StorageErrorKind::Foreign("it is not a directory".into()),
        ));
    }
    Ok(())
}

/// A read transaction over the store's tables.
pub struct LmdbRead<'e> {
    txn: RoTxn<'e, WithTls>,
    dbs: Dbs,
    path: &'e Path,
}

/// A write transaction: the log, the Raft state and the store's tables, committed at once.
pub struct LmdbTxn<'e> {
    txn: RwTxn<'e>,
    dbs: Dbs,
    path: &'e Path,
    owner: &'e LmdbStorage,
}

fn table_db(dbs: &Dbs, table: Table) -> Db {
    match table {
        Table::Nodes => dbs.nodes,
        Table::Ttl => dbs.ttl,
        Table::StoreMeta => dbs.meta,
    }
}

fn table_key(table: Table, key: &[u8]) -> std::borrow::Cow<'_, [u8]> {
    if table == Table::StoreMeta {
        let mut k = format::META_STORE_PREFIX.to_vec();
        k.extend_from_slice(key);
        std::borrow::Cow::Owned(k)
    } else {
        std::borrow::Cow::Borrowed(key)
    }
}

fn get_in(
    txn: &RoTxn,
    dbs: &Dbs,
    path: &Path,
    table: Table,
    key: &[u8],
) -> Result<Option<Vec<u8>>, StorageError> {
    table_db(dbs, table)
        .get(txn, &table_key(table, key))
        .map(|v| v.map(<[u8]>::to_vec))
        .map_err(|e| io_err(format!("read {table:?}"), path, e))
}

fn scan_in(
    txn: &RoTxn,
    dbs: &Dbs,
    path: &Path,
    table: Table,
    start: &[u8],
    end: Option<&[u8]>,
    visit: &mut dyn FnMut(&[u8], &[u8]) -> bool,
) -> Result<(), StorageError> {
    use std::ops::Bound;
    let start_key = table_key(table, start).into_owned();
    let end_key = match end {
        Some(e) => Bound::Excluded(table_key(table, e).into_owned()),
        // StoreMeta shares the meta database: an unbounded scan must stop at its prefix end.
        None if table == Table::StoreMeta => {
            let mut p = format::META_STORE_PREFIX.to_vec();
            if let Some(last) = p.last_mut() {
                *last += 1;
            }
            Bound::Excluded(p)
        }
        None => Bound::Unbounded,
    };
    // LMDB refuses empty keys, so an empty start means "from the beginning".
    let start_bound = if start_key.is_empty() {
        Bound::Unbounded
    } else {
        Bound::Included(start_key.as_slice())
    };
    let bounds = (start_bound, end_key.as_ref().map(|v| v.as_slice()));
    let iter = table_db(dbs, table)
        .range(txn, &bounds)
        .map_err(|e| io_err(format!("scan {table:?}"), path, e))?;
    let skip = if table == Table::StoreMeta {
        format::META_STORE_PREFIX.len()
    } else {
        0
    };
    for item in iter {
        let (k, v) = item.map_err(|e| io_err(format!("scan {table:?}"), path, e))?;
        if !visit(&k[skip.min(k.len())..], v) {
            break;
        }
    }
    Ok(())
}

// Both transaction kinds read the same way (a write transaction derefs to a read one).
macro_rules! impl_kv_read {
    ($t:ty) => {
        impl KvRead for $t {
            fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
                get_in(&self.txn, &self.dbs, self.path, table, key)
            }

            fn scan(
                &self,
                table: Table,
                start: &[u8],
                end: Option<&[u8]>,
                visit: &mut dyn FnMut(&[u8], &[u8]) -> bool,
            ) -> Result<(), StorageError> {
                scan_in(&self.txn, &self.dbs, self.path, table, start, end, visit)
            }
        }
    };
}

impl_kv_read!(LmdbRead<'_>);
impl_kv_read!(LmdbTxn<'_>);

impl LmdbRead<'_> {
    /// The members as of the applied index (the bootstrap record, with every applied
    /// membership change since).
    pub fn members(&self) -> Result<Vec<MemberRecord>, StorageError> {
        self.record(format::META_MEMBERS, "membership")
    }

    /// The ids of members removed from the cluster (never to be reused).
    pub fn removed_members(&self) -> Result<Vec<u64>, StorageError> {
        self.record(format::META_REMOVED, "removed members")
    }

    fn record<T: bincode::Decode<()>>(
        &self,
        key: &[u8],
        what: &str,
    ) -> Result<Vec<T>, StorageError> {
        match self
            .dbs
            .meta
            .get(&self.txn, key)
            .map_err(|e| io_err(format!("read {what}"), self.path, e))?
        {
            Some(b) => format::decode::<Vec<T>>(&format!("{what} record"), b),
            None => Ok(Vec::new()),
        }
    }
}

impl KvWrite for LmdbTxn<'_> {
    fn put(&mut self, table: Table, key: &[u8], value: &[u8]) -> Result<(), StorageError> {
        table_db(&self.dbs, table)
            .put(&mut self.txn, &table_key(table, key), value)
            .map_err(|e| io_err(format!("write {table:?}"), self.path, e))
    }

    fn put_last(&mut self, table: Table, key: &[u8], value: &[u8]) -> Result<(), StorageError> {
        let db = table_db(&self.dbs, table);
        let key = table_key(table, key);
        append_or_put(&mut self.txn, db, &key, value)
            .map_err(|e| io_err(format!("write {table:?}"), self.path, e))
    }

    fn delete(&mut self, table: Table, key: &[u8]) -> Result<bool, StorageError> {
        table_db(&self.dbs, table)
            .delete(&mut self.txn, &table_key(table, key))
            .map_err(|e| io_err(format!("delete from {table:?}"), self.path, e))
    }
}

impl LmdbTxn<'_> {
    /// A list record of the meta database (empty when absent).
    fn meta_record<T: bincode::Decode<()>>(
        &self,
        key: &[u8],
        what: &str,
    ) -> Result<Vec<T>, StorageError> {
        match self
            .dbs
            .meta
            .get(&self.txn, key)
            .map_err(|e| io_err(format!("read {what}"), self.path, e))?
        {
            Some(b) => format::decode::<Vec<T>>(&format!("{what} record"), b),
            None => Ok(Vec::new()),
        }
    }

    fn put_meta_record<T: bincode::Encode>(
        &mut self,
        key: &[u8],
        what: &str,
        records: &Vec<T>,
    ) -> Result<(), StorageError> {
        let bytes = format::encode(what, records)?;
        self.dbs
            .meta
            .put(&mut self.txn, key, &bytes)
            .map_err(|e| io_err(format!("write {what}"), self.path, e))
    }
}

impl StorageTxn for LmdbTxn<'_> {
    fn append(&mut self, entry: &Entry, history: &[u8]) -> Result<(), StorageError> {
        let bytes = format::encode_entry(entry, history)?;
        append_or_put(
            &mut self.txn,
            self.dbs.log,
            &format::log_key(entry.index),
            &bytes,
        )
        .map_err(|e| io_err(format!("append log entry {}", entry.index), self.path, e))
    }

    fn compact_log(&mut self, first: u64, last: u64) -> Result<(), StorageError> {
        let (lo, hi) = (format::log_key(first), format::log_key(last));
        let bounds: (std::ops::Bound<&[u8]>, std::ops::Bound<&[u8]>) = (
            std::ops::Bound::Included(&lo[..]),
            std::ops::Bound::Included(&hi[..]),
        );
        self.dbs
            .log
            .delete_range(&mut self.txn, &bounds)
            .map(|_| ())
            .map_err(|e| {
                io_err(
                    format!("compact log entries {first}..={last}"),
                    self.path,
                    e,
                )
            })
    }

    fn apply_membership(
        &mut self,
        change: crate::raft::ConfChange,
        added: Option<&MemberRecord>,
    ) -> Result<(), StorageError> {
        let mut members: Vec<MemberRecord> =
            self.meta_record(format::META_MEMBERS, "membership")?;
        match change {
            crate::raft::ConfChange::AddVoter(id) => {
                let record = added
                    .filter(|r| r.id == id)
                    .cloned()
                    .unwrap_or(MemberRecord {
                        id,
                        name: String::new(),
                        peer_urls: Vec::new(),
                    });
                members.retain(|m| m.id != id);
                members.push(record);
                members.sort_by_key(|m| m.id);
            }
            crate::raft::ConfChange::RemoveVoter(id) => {
                members.retain(|m| m.id != id);
                let mut removed: Vec<u64> =
                    self.meta_record(format::META_REMOVED, "removed members")?;
                if !removed.contains(&id) {
                    removed.push(id);
                }
                self.put_meta_record(format::META_REMOVED, "removed members", &removed)?;
            }
            crate::raft::ConfChange::UpdateMember(id) => {
                let urls = added.filter(|r| r.id == id).map(|r| r.peer_urls.clone());
                if let (Some(m), Some(urls)) = (members.iter_mut().find(|m| m.id == id), urls) {
                    m.peer_urls = urls;
                }
            }
        }
        self.put_meta_record(format::META_MEMBERS, "membership", &members)
    }

    fn save_raft_state(&mut self, state: &RaftState) -> Result<(), StorageError> {
        let bytes = format::encode("raft state", state)?;
        self.dbs
            .meta
            .put(&mut self.txn, format::META_RAFT_STATE, &bytes)
            .map_err(|e| io_err("write raft state", self.path, e))
    }

    fn commit(self) -> Result<(), StorageError> {
        let path = self.path;
        self.txn
            .commit()
            .map_err(|e| io_err("commit batch", path, e))?;
        // The batch is durable whatever happens here; a failure to preallocate (a full disk)
        // only means the next commits grow the file themselves.
        if let Err(e) = self.owner.preallocate() {
            log::warn!("{e}");
        }
        Ok(())
    }
}

impl Storage for LmdbStorage {
    type Txn<'a> = LmdbTxn<'a>;

    fn begin(&self) -> Result<LmdbTxn<'_>, StorageError> {
        let txn = self
            .env
            .write_txn()
            .map_err(|e| self.err("begin batch", e))?;
        Ok(LmdbTxn {
            txn,
            dbs: self.dbs,
            path: &self.path,
            owner: self,
        })
    }
}
