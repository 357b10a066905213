//! The Raft write-ahead log: the hard state and the log entries not yet applied, appended to
//! preallocated segment files with one `fdatasync` per batch.
//!
//! Why a WAL beside LMDB: a durable LMDB commit costs two syncs (its data pages, then its
//! meta page), and entries must be durable before a member acknowledges them or a leader
//! counts them; that was two syncs on the path of every write, on the leader and on the
//! followers. Here an acknowledgement costs one sync of blocks the file already has, and
//! LMDB's commit (the applied state) leaves the acknowledgement path. The applied state is
//! derived from the log, so LMDB may then lag the WAL: at start the entries after LMDB's
//! applied index are replayed from here.
//!
//! Layout: `<data-dir>/member/raft-wal/<seq>.wal` (not `member/wal`: that names an etcd data
//! dir), seq in 16 hex digits. A segment is a run of records `[len u32 LE][crc32c u32 LE][payload]`; the payload is one [`Record`] (a batch:
//! hard state and entries) and names its segment's seq, so that a recycled segment's old
//! records, and the zeros of a fresh one, end the replay. The first invalid record ends
//! its segment: that is where a crash tore the last write, which was never acknowledged.
//! Each segment starts with the hard state, so that segments wholly applied (and durable in
//! LMDB) can be dropped without losing it.

use super::format::BINCODE;
use super::{StorageError, StorageErrorKind};
use crate::raft::{Entry, HardState};
use crate::util::checksum::crc32c;
use bincode::{Decode, Encode};
use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// Bytes a segment is preallocated to; a batch that does not fit starts the next one. The
/// data dir holds two (the one written and the spare), so this is what the WAL costs on an
/// SD card whatever the write rate: 2 MiB holds thousands of entries, more than the apply
/// thread's commit window ever leaves unapplied, and a roll-over reuses the spare.
pub const SEGMENT_BYTES: u64 = 2 << 20;
/// Bytes of a record's header.
const HEADER: u64 = 8;
/// The name a released segment waits under to be reused as the next one (its blocks are
/// written already: reusing it costs no preallocation).
const SPARE: &str = "spare.wal.tmp";
/// A restarted log's first segment while it is written (discarded at open)...
const RESTART_TMP: &str = "restart.wal.tmp";
/// ... and once it is complete: at open, the segments before it go and it takes their
/// place (see [`Wal::restart`]).
const RESTART: &str = "restart.wal";

/// One batch as written.
#[derive(Debug, Clone, PartialEq, Eq, Decode)]
#[cfg_attr(test, derive(Encode))]
struct Record {
    /// The segment it belongs to.
    seq: u64,
    /// The hard state after the batch, if it changed (always in a segment's first record).
    hard_state: Option<HardState>,
    /// The batch's entries, in index order. They replace every entry from the first one's
    /// index on (the tail a newer leader overwrote).
    entries: Vec<Entry>,
}

/// A [`Record`] borrowing its entries (same encoding): a batch is written without copying.
#[derive(Encode)]
struct RecordRef<'a> {
    seq: u64,
    hard_state: Option<HardState>,
    entries: &'a [Entry],
}

/// What the WAL held at open.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WalReplay {
    /// The last hard state written, if any.
    pub hard_state: Option<HardState>,
    /// The log entries in the WAL, contiguous and in index order (it may hold some that
    /// LMDB has applied already).
    pub entries: Vec<Entry>,
}

#[derive(Debug)]
struct Segment {
    seq: u64,
    path: PathBuf,
    /// The highest entry index written in it (0: none).
    last_index: u64,
}

/// The open WAL: the segment being appended to and the older ones still needed.
pub struct Wal {
    dir: PathBuf,
    /// Oldest first; the last is the one appended to.
    segments: Vec<Segment>,
    file: File,
    /// Where the next record goes in the current segment.
    offset: u64,
    /// The hard state last written (a new segment starts with it).
    hard_state: HardState,
}

fn io(op: impl Into<String>, path: &Path, e: std::io::Error) -> StorageError {
    StorageError::new(op, path, StorageErrorKind::Io(e.to_string()))
}

fn segment_name(seq: u64) -> String {
    format!("{seq:016x}.wal")
}

fn parse_segment_name(name: &str) -> Option<u64> {
    let hex = name.strip_suffix(".wal")?;
    (hex.len() == 16)
        .then(|| u64::from_str_radix(hex, 16).ok())
        .flatten()
}

impl Wal {
    /// Opens the WAL in `dir` (creating it empty if missing) and replays it.
    pub fn open(dir: &Path) -> Result<(Wal, WalReplay), StorageError> {
        std::fs::create_dir_all(dir).map_err(|e| io("create wal directory", dir, e))?;
        finish_restart(dir)?;
        let seqs = list_segments(dir)?;
        let mut replay = WalReplay::default();
        let mut segments = Vec::new();
        let mut end = 0;
        for seq in seqs {
            let path = dir.join(segment_name(seq));
            let (last_index, stop) = replay_segment(seq, &path, &mut replay)?;
            end = stop;
            segments.push(Segment {
                seq,
                path,
                last_index,
            });
        }
        let hard_state = replay.hard_state.unwrap_or_default();
        let (file, offset) = match segments.last() {
            Some(s) => (
                OpenOptions::new()
                    .write(true)
                    .open(&s.path)
                    .map_err(|e| io("open wal segment", &s.path, e))?,
                end,
            ),
            None => {
                let path = dir.join(segment_name(1));
                let file = create_segment(dir, &path)?;
                segments.push(Segment {
                    seq: 1,
                    path,
                    last_index: 0,
                });
                (file, 0)
            }
        };
        let wal = Wal {
            dir: dir.to_path_buf(),
            segments,
            file,
            offset,
            hard_state,
        };
        Ok((wal, replay))
    }

    /// Appends one batch and, with `sync`, makes it durable (one `fdatasync`; without, the
    /// next sync does). Nothing to write is a no-op.
    pub fn append(
        &mut self,
        hard_state: Option<HardState>,
        entries: &[Entry],
        sync: bool,
    ) -> Result<(), StorageError> {
        if hard_state.is_none() && entries.is_empty() {
            return Ok(());
        }
        let mut record = RecordRef {
            seq: self.current().seq,
            hard_state,
            entries,
        };
        let mut bytes = encode(&record)?;
        if self.offset > 0 && self.offset + bytes.len() as u64 > SEGMENT_BYTES {
            self.rotate()?;
            record.seq = self.current().seq;
            record.hard_state = Some(hard_state.unwrap_or(self.hard_state));
            bytes = encode(&record)?;
        }
        let path = &self.current().path;
        self.file
            .write_all_at(&bytes, self.offset)
            .map_err(|e| io("write wal record", path, e))?;
        if sync {
            self.file
                .sync_data()
                .map_err(|e| io("sync wal segment", path, e))?;
        }
        self.offset += bytes.len() as u64;
        if let Some(hs) = hard_state {
            self.hard_state = hs;
        }
        if let Some(last) = entries.last() {
            let seg = self.current_mut();
            seg.last_index = last.index;
        }
        Ok(())
    }

    /// Drops the segments before the current one whose entries are all at or below
    /// `applied` (applied and durable in LMDB): the WAL stays as small as the unapplied log.
    pub fn release(&mut self, applied: u64) -> Result<(), StorageError> {
        let mut dropped = 0;
        while self.segments.len() > 1 && self.segments[0].last_index <= applied {
            let seg = self.segments.remove(0);
            let spare = self.dir.join(SPARE);
            if spare.exists() {
                std::fs::remove_file(&seg.path)
                    .map_err(|e| io("remove wal segment", &seg.path, e))?;
            } else {
                std::fs::rename(&seg.path, &spare)
                    .map_err(|e| io("recycle wal segment", &seg.path, e))?;
            }
            dropped += 1;
        }
        if dropped > 0 {
            sync_dir(&self.dir)?;
        }
        Ok(())
    }

    /// Starts the log afresh: the segments so far go, and the WAL holds `hard_state` and
    /// `kept` only (a snapshot replaced the applied state; `kept` are the durable entries
    /// after it). Crash-safe: until the new segment is complete the old ones stand; once
    /// it is, a crash part way is finished at the next open.
    pub fn restart(&mut self, hard_state: HardState, kept: &[Entry]) -> Result<(), StorageError> {
        let seq = self.current().seq + 1;
        let tmp = self.dir.join(RESTART_TMP);
        let _ = std::fs::remove_file(&tmp);
        let file = OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .open(&tmp)
            .map_err(|e| io("create wal segment", &tmp, e))?;
        let bytes = encode(&RecordRef {
            seq,
            hard_state: Some(hard_state),
            entries: kept,
        })?;
        file.write_all_at(&bytes, 0)
            .and_then(|()| file.set_len(SEGMENT_BYTES.max(bytes.len() as u64)))
            .and_then(|()| file.sync_all())
            .map_err(|e| io("write wal segment", &tmp, e))?;
        let ready = self.dir.join(RESTART);
        std::fs::rename(&tmp, &ready).map_err(|e| io("name wal segment", &ready, e))?;
        sync_dir(&self.dir)?;
        // The same steps as an open after a crash here.
        let path = finish_restart(&self.dir)?.unwrap_or_else(|| self.dir.join(segment_name(seq)));
        self.file = OpenOptions::new()
            .write(true)
            .open(&path)
            .map_err(|e| io("open wal segment", &path, e))?;
        self.offset = bytes.len() as u64;
        self.segments = vec![Segment {
            seq,
            path,
            last_index: kept.last().map_or(0, |e| e.index),
        }];
        self.hard_state = hard_state;
        Ok(())
    }

    /// What the WAL in `dir` holds, read without changing anything there: `pikv backup`
    /// reads the WAL of a running member, whose WAL thread keeps appending, recycling and
    /// (after a snapshot install) restarting it meanwhile. A segment that goes between the
    /// listing and its reading is an error (`NotFound`); the caller reads again. A missing
    /// directory is an empty WAL.
    pub fn read_only(dir: &Path) -> Result<WalReplay, StorageError> {
        let mut replay = WalReplay::default();
        if !dir.exists() {
            return Ok(replay);
        }
        // A complete restart segment replaces every one before it (as `finish_restart`
        // would make it at the next open).
        let ready = dir.join(RESTART);
        if ready.exists() {
            if let Some(seq) = read_first_seq(&ready)? {
                replay_segment(seq, &ready, &mut replay)?;
                return Ok(replay);
            }
        }
        for seq in list_segments(dir)? {
            replay_segment(seq, &dir.join(segment_name(seq)), &mut replay)?;
        }
        Ok(replay)
    }

    /// How many segment files the WAL holds now.
    pub fn segment_count(&self) -> usize {
        self.segments.len()
    }

    fn current(&self) -> &Segment {
        // `segments` is never empty: open creates the first and release keeps the last.
        &self.segments[self.segments.len() - 1]
    }

    fn current_mut(&mut self) -> &mut Segment {
        let last = self.segments.len() - 1;
        &mut self.segments[last]
    }

    fn rotate(&mut self) -> Result<(), StorageError> {
        let seq = self.current().seq + 1;
        let path = self.dir.join(segment_name(seq));
        let spare = self.dir.join(SPARE);
        let file = if spare.exists() {
            std::fs::rename(&spare, &path).map_err(|e| io("reuse wal segment", &spare, e))?;
            sync_dir(&self.dir)?;
            OpenOptions::new()
                .write(true)
                .open(&path)
                .map_err(|e| io("open wal segment", &path, e))?
        } else {
            create_segment(&self.dir, &path)?
        };
        self.file = file;
        self.offset = 0;
        self.segments.push(Segment {
            seq,
            path,
            last_index: 0,
        });
        Ok(())
    }
}

fn encode<R: Encode>(record: &R) -> Result<Vec<u8>, StorageError> {
    // Sized first: growing the buffer write by write reallocated it a dozen times a batch.
    let mut size = bincode::enc::write::SizeWriter::default();
    bincode::encode_into_writer(record, &mut size, BINCODE)
        .map_err(|e| StorageError::corrupt("encode wal record", e.to_string()))?;
    let mut out = Vec::with_capacity(HEADER as usize + size.bytes_written);
    out.resize(HEADER as usize, 0);
    bincode::encode_into_std_write(record, &mut out, BINCODE)
        .map_err(|e| StorageError::corrupt("encode wal record", e.to_string()))?;
    let len = u32::try_from(out.len() - HEADER as usize)
        .map_err(|_| StorageError::corrupt("encode wal record", "a batch of more than 4 GiB"))?;
    let sum = crc32c(&out[HEADER as usize..]);
    out[..4].copy_from_slice(&len.to_le_bytes());
    out[4..8].copy_from_slice(&sum.to_le_bytes());
    Ok(out)
}

// Zeros written block by block (not a sparse file, not fallocate's unwritten extents): then
// an fdatasync of a record has no block allocation or extent conversion to journal. One
// page per write: a larger write leaves a multi-page folio in the page cache, and each small
// record written into it later would dirty, and write back, the whole folio (measured: a
// 64 KiB folio per batch).
fn create_segment(dir: &Path, path: &Path) -> Result<File, StorageError> {
    let tmp = dir.join("new.wal.tmp");
    let file = OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .open(&tmp)
        .map_err(|e| io("create wal segment", &tmp, e))?;
    let zeros = [0u8; 4096];
    let mut at = 0;
    while at < SEGMENT_BYTES {
        file.write_all_at(&zeros, at)
            .map_err(|e| io("preallocate wal segment", &tmp, e))?;
        at += zeros.len() as u64;
    }
    file.sync_all()
        .map_err(|e| io("sync wal segment", &tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| io("name wal segment", path, e))?;
    sync_dir(dir)?;
    Ok(file)
}

// Reading a segment fills the page cache with read-ahead's multi-page folios, which records
// appended later would dirty whole (see `create_segment`): drop them once replayed.
fn drop_cached(file: &File) {
    use std::os::fd::AsRawFd;
    // SAFETY: posix_fadvise only reads the descriptor, which `file` keeps open; the advice
    // drops clean cached pages and cannot change the file's contents.
    #[allow(unsafe_code)]
    let rc = unsafe { libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
    if rc != 0 {
        log::debug!("posix_fadvise(DONTNEED) on a wal segment: error {rc}");
    }
}

// The seqs of the segments in `dir`, in order.
fn list_segments(dir: &Path) -> Result<Vec<u64>, StorageError> {
    let mut seqs = Vec::new();
    let listing = std::fs::read_dir(dir).map_err(|e| io("list wal directory", dir, e))?;
    for item in listing {
        let item = item.map_err(|e| io("list wal directory", dir, e))?;
        if let Some(seq) = item.file_name().to_str().and_then(parse_segment_name) {
            seqs.push(seq);
        }
    }
    seqs.sort_unstable();
    Ok(seqs)
}

// A complete restart segment replaces every segment before it (removed first, then it is
// named after them); a partial one is dropped. Returns the new segment's path, if any.
fn finish_restart(dir: &Path) -> Result<Option<PathBuf>, StorageError> {
    let tmp = dir.join(RESTART_TMP);
    if tmp.exists() {
        std::fs::remove_file(&tmp).map_err(|e| io("remove partial wal segment", &tmp, e))?;
    }
    let ready = dir.join(RESTART);
    if !ready.exists() {
        return Ok(None);
    }
    let seqs = list_segments(dir)?;
    let seq = seqs.iter().max().map_or(1, |s| s + 1);
    // The record inside names the seq it was written for: the segment takes that one.
    let written = read_first_seq(&ready)?.unwrap_or(seq);
    for old in seqs {
        let path = dir.join(segment_name(old));
        std::fs::remove_file(&path).map_err(|e| io("remove wal segment", &path, e))?;
    }
    let path = dir.join(segment_name(written));
    std::fs::rename(&ready, &path).map_err(|e| io("name wal segment", &path, e))?;
    sync_dir(dir)?;
    Ok(Some(path))
}

// The seq the first record of the segment at `path` names.
fn read_first_seq(path: &Path) -> Result<Option<u64>, StorageError> {
    let file = File::open(path).map_err(|e| io("open wal segment", path, e))?;
    let len = file
        .metadata()
        .map_err(|e| io("open wal segment", path, e))?
        .len();
    let mut header = [0u8; HEADER as usize];
    if file.read_exact_at(&mut header, 0).is_err() {
        return Ok(None);
    }
    let n = u64::from(u32::from_le_bytes([
        header[0], header[1], header[2], header[3],
    ]));
    if n == 0 || HEADER + n > len {
        return Ok(None);
    }
    let mut payload = vec![0u8; n as usize];
    if file.read_exact_at(&mut payload, HEADER).is_err() {
        return Ok(None);
    }
    Ok(bincode::decode_from_slice::<Record, _>(&payload, BINCODE)
        .ok()
        .map(|(r, _)| r.seq))
}

// A new or renamed file is durable only once its directory is.
fn sync_dir(dir: &Path) -> Result<(), StorageError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io("sync wal directory", dir, e))
}

// Replays one segment into `replay`; returns the highest entry index it holds and the offset
// where its valid records end.
fn replay_segment(
    seq: u64,
    path: &Path,
    replay: &mut WalReplay,
) -> Result<(u64, u64), StorageError> {
    let file = File::open(path).map_err(|e| io("open wal segment", path, e))?;
    let len = file
        .metadata()
        .map_err(|e| io("stat wal segment", path, e))?
        .len();
    let mut offset = 0u64;
    let mut last_index = 0;
    let mut header = [0u8; HEADER as usize];
    while offset + HEADER <= len {
        file.read_exact_at(&mut header, offset)
            .map_err(|e| io("read wal segment", path, e))?;
        let n = u64::from(u32::from_le_bytes([
            header[0], header[1], header[2], header[3],
        ]));
        let sum = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
        if n == 0 || offset + HEADER + n > len {
            break;
        }
        let mut payload = vec![0u8; n as usize];
        file.read_exact_at(&mut payload, offset + HEADER)
            .map_err(|e| io("read wal segment", path, e))?;
        if crc32c(&payload) != sum {
            break;
        }
        let Ok((record, _)) = bincode::decode_from_slice::<Record, _>(&payload, BINCODE) else {
            break;
        };
        if record.seq != seq {
            break;
        }
        if let Some(hs) = record.hard_state {
            replay.hard_state = Some(hs);
        }
        if let Some(first) = record.entries.first() {
            let first = first.index;
            if let Some(last) = replay.entries.last() {
                if first > last.index + 1 {
                    return Err(StorageError::new(
                        "replay wal",
                        path,
                        StorageErrorKind::Corrupt(format!(
                            "entries {}..{} are missing",
                            last.index + 1,
                            first - 1
                        )),
                    ));
                }
            }
            let keep = replay.entries.partition_point(|e| e.index < first);
            replay.entries.truncate(keep);
            last_index = record.entries.last().map_or(last_index, |e| e.index);
            replay.entries.extend(record.entries);
        }
        offset += HEADER + n;
    }
    drop_cached(&file);
    Ok((last_index, offset))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::raft::Payload;

    fn entry(term: u64, index: u64, bytes: usize) -> Entry {
        Entry {
            term,
            index,
            payload: Payload::Command(vec![index as u8; bytes]),
        }
    }

    fn tmp(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("pikv-wal-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    fn hs(term: u64, commit: u64) -> HardState {
        HardState {
            term,
            vote: 1,
            commit,
        }
    }

    #[test]
    fn batches_replay_after_reopen_and_a_newer_tail_replaces_the_old() {
        let dir = tmp("replay");
        {
            let (mut wal, replay) = Wal::open(&dir).unwrap();
            assert_eq!(replay, WalReplay::default());
            wal.append(
                Some(hs(1, 0)),
                &[entry(1, 1, 10), entry(1, 2, 10), entry(1, 3, 10)],
                true,
            )
            .unwrap();
            wal.append(Some(hs(2, 1)), &[entry(2, 2, 10)], true)
                .unwrap();
        }
        let (mut wal, replay) = Wal::open(&dir).unwrap();
        assert_eq!(replay.hard_state, Some(hs(2, 1)));
        assert_eq!(replay.entries, vec![entry(1, 1, 10), entry(2, 2, 10)]);
        wal.append(None, &[entry(2, 3, 10)], true).unwrap();
        drop(wal);
        let (_, replay) = Wal::open(&dir).unwrap();
        assert_eq!(
            replay
                .entries
                .iter()
                .map(|e| (e.index, e.term))
                .collect::<Vec<_>>(),
            vec![(1, 1), (2, 2), (3, 2)]
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_torn_last_record_ends_the_log_and_is_overwritten() {
        let dir = tmp("torn");
        {
            let (mut wal, _) = Wal::open(&dir).unwrap();
            wal.append(Some(hs(1, 0)), &[entry(1, 1, 100)], true)
                .unwrap();
            wal.append(None, &[entry(1, 2, 100)], true).unwrap();
        }
        // Damage the second record's payload, as a write cut by a power loss would.
        let path = dir.join(segment_name(1));
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .unwrap();
        let first_len = {
            let mut h = [0u8; 4];
            f.read_exact_at(&mut h, 0).unwrap();
            u64::from(u32::from_le_bytes(h))
        };
        f.write_all_at(&[0xff; 3], HEADER + first_len + HEADER + 5)
            .unwrap();
        let (mut wal, replay) = Wal::open(&dir).unwrap();
        assert_eq!(replay.entries, vec![entry(1, 1, 100)]);
        wal.append(None, &[entry(1, 2, 7)], true).unwrap();
        drop(wal);
        let (_, replay) = Wal::open(&dir).unwrap();
        assert_eq!(replay.entries, vec![entry(1, 1, 100), entry(1, 2, 7)]);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn full_segments_rotate_carry_the_hard_state_and_are_released_and_reused() {
        let dir = tmp("rotate");
        let (mut wal, _) = Wal::open(&dir).unwrap();
        wal.append(Some(hs(3, 0)), &[], true).unwrap();
        let per: u64 = 64 << 10;
        let n = 3 * SEGMENT_BYTES / per;
        for i in 1..=n {
            wal.append(None, &[entry(3, i, per as usize)], true)
                .unwrap();
        }
        assert!(wal.segment_count() >= 3, "{}", wal.segment_count());
        // Nothing applied: everything stays.
        wal.release(0).unwrap();
        assert!(wal.segment_count() >= 3);
        let before = wal.segment_count();
        wal.release(n - 1).unwrap();
        assert_eq!(wal.segment_count(), 1, "from {before}");
        assert!(
            dir.join(SPARE).exists(),
            "a released segment is kept for reuse"
        );
        // The next rotation reuses the spare, whose old records must not replay.
        for i in n + 1..=n + SEGMENT_BYTES / per + 1 {
            wal.append(None, &[entry(3, i, per as usize)], true)
                .unwrap();
        }
        assert!(!dir.join(SPARE).exists(), "the spare was reused");
        drop(wal);
        let (_, replay) = Wal::open(&dir).unwrap();
        assert_eq!(
            replay.hard_state,
            Some(hs(3, 0)),
            "each segment starts with it"
        );
        let indexes: Vec<u64> = replay.entries.iter().map(|e| e.index).collect();
        let first = indexes[0];
        assert!(
            first <= n,
            "the unreleased tail starts at or before {n}: {first}"
        );
        assert_eq!(
            indexes,
            (first..=n + SEGMENT_BYTES / per + 1).collect::<Vec<_>>()
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    // What `pikv backup` reads of a live member's WAL: the same as an open replays, a
    // complete restart segment in place of the older ones, and nothing changed on disk.
    #[test]
    fn a_read_only_replay_sees_what_an_open_would_and_changes_nothing() {
        let dir = tmp("read-only");
        assert_eq!(Wal::read_only(&dir).unwrap(), WalReplay::default());
        assert!(!dir.exists(), "a missing WAL is not created");
        {
            let (mut wal, _) = Wal::open(&dir).unwrap();
            wal.append(Some(hs(1, 1)), &[entry(1, 1, 10), entry(1, 2, 10)], true)
                .unwrap();
        }
        let seen = Wal::read_only(&dir).unwrap();
        assert_eq!(seen.entries.len(), 2);
        assert_eq!(seen.hard_state, Some(hs(1, 1)));
        // A restart that was complete when the member stopped (or is being finished now).
        let bytes = encode(&Record {
            seq: 2,
            hard_state: Some(hs(2, 50)),
            entries: vec![entry(2, 51, 10)],
        })
        .unwrap();
        std::fs::write(dir.join(RESTART), bytes).unwrap();
        let seen = Wal::read_only(&dir).unwrap();
        assert_eq!(seen.hard_state, Some(hs(2, 50)));
        assert_eq!(seen.entries, vec![entry(2, 51, 10)]);
        assert!(dir.join(RESTART).exists() && dir.join(segment_name(1)).exists());
        let (_, opened) = Wal::open(&dir).unwrap();
        assert_eq!(opened, seen);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_gap_between_segments_is_reported_as_damage() {
        let dir = tmp("gap");
        {
            let (mut wal, _) = Wal::open(&dir).unwrap();
            wal.append(Some(hs(1, 0)), &[entry(1, 1, 10)], true)
                .unwrap();
        }
        // A second segment that starts two entries later (its predecessor lost records).
        {
            let path = dir.join(segment_name(2));
            let f = create_segment(&dir, &path).unwrap();
            let bytes = encode(&Record {
                seq: 2,
                hard_state: Some(hs(1, 0)),
                entries: vec![entry(1, 3, 10)],
            })
            .unwrap();
            f.write_all_at(&bytes, 0).unwrap();
        }
        let err = Wal::open(&dir).err().expect("a gap is damage");
        assert!(
            err.to_string().contains("entries 2..2 are missing"),
            "{err}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_restart_replaces_the_log_and_a_crash_part_way_is_finished_or_undone() {
        let dir = tmp("restart");
        let old: Vec<Entry> = (1..=5).map(|i| entry(1, i, 100)).collect();
        {
            let (mut wal, _) = Wal::open(&dir).unwrap();
            wal.append(Some(hs(1, 5)), &old, true).unwrap();
            // A snapshot at 100 with two durable entries kept after it.
            let kept = [entry(2, 101, 10), entry(2, 102, 10)];
            wal.restart(hs(2, 100), &kept).unwrap();
            assert_eq!(wal.segment_count(), 1);
            wal.append(None, &[entry(2, 103, 10)], true).unwrap();
        }
        let (_, replay) = Wal::open(&dir).unwrap();
        let indexes: Vec<u64> = replay.entries.iter().map(|e| e.index).collect();
        assert_eq!(indexes, vec![101, 102, 103]);
        assert_eq!(replay.hard_state, Some(hs(2, 100)));

        // A crash while the new segment was written: the old log stands.
        std::fs::write(dir.join(RESTART_TMP), b"half a segment").unwrap();
        let (_, again) = Wal::open(&dir).unwrap();
        assert_eq!(again, replay);
        assert!(!dir.join(RESTART_TMP).exists());

        // A crash once it was complete, before the old segments went: finished at open.
        {
            let (wal, _) = Wal::open(&dir).unwrap();
            let seq = wal.current().seq + 1;
            let bytes = encode(&Record {
                seq,
                hard_state: Some(hs(3, 200)),
                entries: vec![entry(3, 201, 10)],
            })
            .unwrap();
            std::fs::write(dir.join(RESTART), bytes).unwrap();
            drop(wal);
        }
        let (mut wal, replay) = Wal::open(&dir).unwrap();
        let indexes: Vec<u64> = replay.entries.iter().map(|e| e.index).collect();
        assert_eq!(indexes, vec![201]);
        assert_eq!(replay.hard_state, Some(hs(3, 200)));
        assert_eq!(wal.segment_count(), 1);
        // It goes on from there.
        wal.append(None, &[entry(3, 202, 10)], true).unwrap();
        drop(wal);
        let (_, replay) = Wal::open(&dir).unwrap();
        assert_eq!(replay.entries.len(), 2);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
