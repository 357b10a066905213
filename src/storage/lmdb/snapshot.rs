//! A member's applied state as a stream, and installing one: what a member that joins with
//! an empty data dir starts from (its log would not say who the first voters were), and
//! what the leader sends a follower that needs entries it compacted away.
//!
//! The stream is written from one LMDB read transaction, so it is consistent and the member
//! keeps serving while it goes out; it is a sequence of checksummed frames (the peer
//! transport's frame format) of at most [`CHUNK_BYTES`] of records each, so neither side
//! ever holds more than a chunk of it. The first frame is the [`SnapshotHeader`], the last
//! one an end marker with the record count. Installing writes everything in one write
//! transaction that also records the member's identity: a crash or a dropped connection
//! mid-install leaves the data dir as empty as before.

use super::{format, io_err, LmdbStorage};
use crate::storage::{Identity, MemberRecord, StorageError, StorageErrorKind};
use crate::transport::frame::{self, HEADER_BYTES};
use bincode::{Decode, Encode};
use std::io::{Read, Write};

/// Records per frame stop at about this many bytes (one record may make it larger).
pub const CHUNK_BYTES: usize = 256 << 10;
/// The largest frame a reader takes: a chunk plus one record as large as LMDB allows a
/// value to be in pikv (the store refuses bigger ones long before).
const FRAME_BYTES_MAX: usize = CHUNK_BYTES + (4 << 20);
/// The stream's version: a reader refuses other ones.
const STREAM_VERSION: u32 = 1;

/// What a snapshot is of.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub struct SnapshotHeader {
    /// [`STREAM_VERSION`].
    pub version: u32,
    /// The cluster it comes from.
    pub cluster_id: u64,
    /// The last applied index it includes.
    pub index: u64,
    /// The term of the entry at `index`.
    pub term: u64,
    /// The members as of `index`.
    pub members: Vec<MemberRecord>,
}

/// Which database a record goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Encode, Decode)]
enum Table {
    Meta,
    Log,
    Nodes,
    Ttl,
}

#[derive(Debug, Encode, Decode)]
enum Frame {
    Header(SnapshotHeader),
    Records(Vec<(Table, Vec<u8>, Vec<u8>)>),
    End { records: u64 },
}

fn stream_err(op: &str, what: impl std::fmt::Display) -> StorageError {
    StorageError::new(op, "", StorageErrorKind::Io(what.to_string()))
}

fn write_frame(out: &mut impl Write, f: &Frame) -> Result<(), StorageError> {
    let payload = format::encode("snapshot frame", f)?;
    let framed = frame::encode(&payload)
        .ok_or_else(|| stream_err("send a snapshot", "a record over the frame limit"))?;
    out.write_all(&framed)
        .map_err(|e| stream_err("send a snapshot", e))
}

fn read_frame(input: &mut impl Read, buf: &mut Vec<u8>) -> Result<Frame, StorageError> {
    let op = "receive a snapshot";
    let mut head = [0u8; HEADER_BYTES];
    input
        .read_exact(&mut head)
        .map_err(|e| stream_err(op, format!("the stream ended early: {e}")))?;
    let len = u32::from_be_bytes([head[0], head[1], head[2], head[3]]) as usize;
    if len > FRAME_BYTES_MAX {
        return Err(stream_err(op, format!("a frame of {len} bytes")));
    }
    buf.clear();
    buf.extend_from_slice(&head);
    buf.resize(HEADER_BYTES + len, 0);
    input
        .read_exact(&mut buf[HEADER_BYTES..])
        .map_err(|e| stream_err(op, format!("the stream ended early: {e}")))?;
    let payload = match frame::decode(buf) {
        Ok(Some((payload, _))) => payload,
        Ok(None) => return Err(stream_err(op, "a short frame")),
        Err(e) => return Err(stream_err(op, e)),
    };
    format::decode::<Frame>("snapshot frame", payload)
}

/// The header of a snapshot stream (its first frame), to judge it before installing it.
pub fn read_snapshot_header(input: &mut impl Read) -> Result<SnapshotHeader, StorageError> {
    match read_frame(input, &mut Vec::new())? {
        Frame::Header(h) => Ok(h),
        _ => Err(stream_err("receive a snapshot", "no header")),
    }
}

/// Meta records that describe the state (the rest — identity, Raft state, format — are the
/// receiving member's own).
fn is_state_meta(key: &[u8]) -> bool {
    key == format::META_MEMBERS
        || key == format::META_REMOVED
        || key.starts_with(format::META_STORE_PREFIX)
}

impl LmdbStorage {
    /// Writes the applied state to `out`, from one read transaction; returns its header.
    pub fn write_snapshot(
        &self,
        cluster_id: u64,
        out: &mut impl Write,
    ) -> Result<SnapshotHeader, StorageError> {
        let rtxn = self
            .env
            .read_txn()
            .map_err(|e| self.err("begin snapshot read", e))?;
        let raft = match self
            .dbs
            .meta
            .get(&rtxn, format::META_RAFT_STATE)
            .map_err(|e| self.err("read raft state", e))?
        {
            Some(b) => format::decode::<format::RaftState>("raft state record", b)?,
            None => format::RaftState::default(),
        };
        let index = raft.applied;
        let last = self
            .dbs
            .log
            .get(&rtxn, &index.to_be_bytes())
            .map_err(|e| self.err("read the applied entry", e))?;
        let (term, last) = match last {
            Some(v) => (format::decode_entry(index, v)?.0.term, Some(v.to_vec())),
            None if index == 0 => (0, None),
            None => {
                return Err(StorageError::corrupt(
                    "write a snapshot",
                    format!("the applied entry {index} is not in the log"),
                ))
            }
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
        let header = SnapshotHeader {
            version: STREAM_VERSION,
            cluster_id,
            index,
            term,
            members,
        };
        write_frame(out, &Frame::Header(header.clone()))?;
        let mut chunk = Vec::new();
        let mut bytes = 0usize;
        let mut records = 0u64;
        let mut push = |out: &mut dyn Write,
                        table: Table,
                        k: &[u8],
                        v: &[u8],
                        flush: bool|
         -> Result<(), StorageError> {
            if !flush {
                bytes += k.len() + v.len();
                chunk.push((table, k.to_vec(), v.to_vec()));
                records += 1;
            }
            if (flush && !chunk.is_empty()) || bytes >= CHUNK_BYTES {
                let mut w = out;
                write_frame(&mut w, &Frame::Records(std::mem::take(&mut chunk)))?;
                bytes = 0;
            }
            Ok(())
        };
        if let Some(v) = &last {
            push(out, Table::Log, &index.to_be_bytes(), v, false)?;
        }
        for (table, db) in [(Table::Nodes, self.dbs.nodes), (Table::Ttl, self.dbs.ttl)] {
            for item in db
                .iter(&rtxn)
                .map_err(|e| self.err("read for a snapshot", e))?
            {
                let (k, v) = item.map_err(|e| self.err("read for a snapshot", e))?;
                push(out, table, k, v, false)?;
            }
        }
        for item in self
            .dbs
            .meta
            .iter(&rtxn)
            .map_err(|e| self.err("read for a snapshot", e))?
        {
            let (k, v) = item.map_err(|e| self.err("read for a snapshot", e))?;
            if is_state_meta(k) {
                push(out, Table::Meta, k, v, false)?;
            }
        }
        push(out, Table::Meta, &[], &[], true)?;
        write_frame(out, &Frame::End { records })?;
        out.flush().map_err(|e| stream_err("send a snapshot", e))?;
        Ok(header)
    }

    /// Installs the state `input` streams into this (empty) data dir as `identity`: one
    /// write transaction, committed and synced only once the whole stream arrived intact
    /// (a stream of another cluster is refused before anything is written). Returns the
    /// header.
    pub fn install_snapshot(
        &self,
        identity: Identity,
        input: &mut impl Read,
    ) -> Result<SnapshotHeader, StorageError> {
        let mut buf = Vec::new();
        let header = match read_frame(input, &mut buf)? {
            Frame::Header(h) if h.version == STREAM_VERSION => h,
            Frame::Header(h) => {
                return Err(stream_err(
                    "receive a snapshot",
                    format!("stream version {}, expected {STREAM_VERSION}", h.version),
                ))
            }
            _ => return Err(stream_err("receive a snapshot", "no header")),
        };
        if header.cluster_id != identity.cluster_id {
            return Err(stream_err(
                "receive a snapshot",
                format!(
                    "it is of cluster {:x}, not {:x}",
                    header.cluster_id, identity.cluster_id
                ),
            ));
        }
        let mut wtxn = self
            .env
            .write_txn()
            .map_err(|e| self.err("begin snapshot install", e))?;
        for db in [self.dbs.log, self.dbs.nodes, self.dbs.ttl] {
            db.clear(&mut wtxn)
                .map_err(|e| self.err("clear for a snapshot", e))?;
        }
        // A member that falls behind replaces its state, meta records of it included.
        let mut stale = Vec::new();
        for item in self
            .dbs
            .meta
            .iter(&wtxn)
            .map_err(|e| self.err("clear for a snapshot", e))?
        {
            let (k, _) = item.map_err(|e| self.err("clear for a snapshot", e))?;
            if is_state_meta(k) {
                stale.push(k.to_vec());
            }
        }
        for k in stale {
            self.dbs
                .meta
                .delete(&mut wtxn, &k)
                .map_err(|e| self.err("clear for a snapshot", e))?;
        }
        let mut received = 0u64;
        loop {
            match read_frame(input, &mut buf)? {
                Frame::Records(records) => {
                    for (table, k, v) in records {
                        let db = match table {
                            Table::Meta if is_state_meta(&k) => self.dbs.meta,
                            Table::Meta => {
                                return Err(stream_err(
                                    "receive a snapshot",
                                    "a record of the sender's own",
                                ))
                            }
                            Table::Log => self.dbs.log,
                            Table::Nodes => self.dbs.nodes,
                            Table::Ttl => self.dbs.ttl,
                        };
                        db.put(&mut wtxn, &k, &v)
                            .map_err(|e| io_err("install a snapshot", &self.path, e))?;
                        received += 1;
                    }
                }
                Frame::End { records } if records == received => break,
                Frame::End { records } => {
                    return Err(stream_err(
                        "receive a snapshot",
                        format!("{received} records of {records}"),
                    ))
                }
                Frame::Header(_) => return Err(stream_err("receive a snapshot", "two headers")),
            }
        }
        let state = format::RaftState {
            hard_state: crate::raft::HardState {
                term: header.term,
                vote: 0,
                commit: header.index,
            },
            applied: header.index,
        };
        let meta = [
            (
                format::META_RAFT_STATE,
                format::encode("raft state", &state)?,
            ),
            (
                format::META_IDENTITY,
                format::encode("identity", &identity)?,
            ),
        ];
        for (k, v) in meta {
            self.dbs
                .meta
                .put(&mut wtxn, k, &v)
                .map_err(|e| self.err("install a snapshot", e))?;
        }
        wtxn.commit()
            .map_err(|e| self.err("commit the snapshot", e))?;
        // Not durable until the caller's `sync`: an error before here installed nothing,
        // one there leaves the data dir in doubt.
        Ok(header)
    }
}
