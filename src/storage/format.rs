//! The on-disk format: record keys and encodings, and the checks that refuse a data dir pikv
//! does not understand. One bincode configuration serves every record.

use super::StorageError;
use crate::raft::{Entry, HardState};
use crate::util::checksum::crc32c;
use bincode::{Decode, Encode};

/// The bincode configuration of every record on disk.
pub const BINCODE: bincode::config::Configuration = bincode::config::standard();

/// What the `format` meta key holds: a magic that says "pikv", then the version.
pub const FORMAT_MAGIC: &[u8; 8] = b"pikv-dat";
/// The format this build writes. Version 2: the meta records live in LMDB's main database
/// and each log record carries the watch-history events its entry produced. Version 3: the
/// Raft hard state and the entries not yet applied live in the WAL (`member/raft-wal/`), LMDB's
/// log database holds applied entries only.
pub const FORMAT_VERSION: u32 = 3;
/// The oldest format this build reads (and converts to [`FORMAT_VERSION`] at start).
pub const FORMAT_OLDEST: u32 = 2;

/// Main-database key of the format record. The meta records share LMDB's main database with
/// the named databases' own records: a commit rewrites that leaf anyway, so they cost no page.
pub const META_FORMAT: &[u8] = b"format";
/// Meta key of the identity record (cluster and member id).
pub const META_IDENTITY: &[u8] = b"identity";
/// Meta key of the membership record (the voters and their peer URLs).
pub const META_MEMBERS: &[u8] = b"members";
/// Meta key of the ids of removed members (never given to another member).
pub const META_REMOVED: &[u8] = b"removed";
/// Meta key of the Raft state record (hard state and applied index, side by side so one
/// commit touches one meta leaf).
pub const META_RAFT_STATE: &[u8] = b"raft";
/// Meta key of the mark `pikv backup` leaves in a backup (the data dir it was made from): a
/// backup starts only with `--force-new-cluster`, never as the member it was copied from.
pub const META_BACKUP: &[u8] = b"backup";
/// Prefix of the store's own metadata keys in the meta database.
pub const META_STORE_PREFIX: &[u8] = b"store/";

/// The Raft state saved with every batch.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Encode, Decode)]
pub struct RaftState {
    /// Term, vote, commit.
    pub hard_state: HardState,
    /// Highest applied index.
    pub applied: u64,
}

/// Who this data dir belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Encode, Decode)]
pub struct Identity {
    /// The cluster id (spec §10.6).
    pub cluster_id: u64,
    /// This member's id.
    pub member_id: u64,
}

/// A member of the cluster as recorded at bootstrap.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub struct MemberRecord {
    /// Its member id.
    pub id: u64,
    /// Its `--name` in `--initial-cluster`.
    pub name: String,
    /// Its peer URLs, sorted.
    pub peer_urls: Vec<String>,
}

/// The format record's bytes.
pub fn format_record() -> Vec<u8> {
    let mut v = FORMAT_MAGIC.to_vec();
    v.extend_from_slice(&FORMAT_VERSION.to_be_bytes());
    v
}

/// Checks a format record and returns its version; the error says what was found.
pub fn check_format(record: &[u8]) -> Result<u32, String> {
    if record.len() != 12 || &record[..8] != FORMAT_MAGIC {
        return Err("it was not written by pikv (unknown format record)".to_string());
    }
    let version = u32::from_be_bytes([record[8], record[9], record[10], record[11]]);
    if !(FORMAT_OLDEST..=FORMAT_VERSION).contains(&version) {
        return Err(format!(
            "it has data format version {version}, this pikv reads versions \
             {FORMAT_OLDEST} to {FORMAT_VERSION}"
        ));
    }
    Ok(version)
}

/// The log key of an index: big-endian, so LMDB orders entries by index.
pub fn log_key(index: u64) -> [u8; 8] {
    index.to_be_bytes()
}

/// Encodes a log record: a CRC-32C of the rest, the entry, then `history` (the store's encoded
/// events of the entry, empty until it is applied). The events ride in the entry's record,
/// at the log's right edge, so recording them touches no page of its own.
pub fn encode_entry(entry: &Entry, history: &[u8]) -> Result<Vec<u8>, StorageError> {
    // The command's bytes and the history are nearly all of it: one allocation, not a
    // dozen as the buffer grows write by write.
    let command = entry.payload.command().map_or(0, <[u8]>::len);
    let mut out = Vec::with_capacity(4 + 40 + command + history.len());
    out.resize(4, 0);
    bincode::encode_into_std_write(entry, &mut out, BINCODE).map_err(|e| {
        StorageError::corrupt(format!("encode log entry {}", entry.index), e.to_string())
    })?;
    out.extend_from_slice(history);
    let sum = crc32c(&out[4..]).to_be_bytes();
    out[..4].copy_from_slice(&sum);
    Ok(out)
}

/// Decodes a log record, checking its checksum and that it sits at `index`: the entry and
/// the history bytes after it.
pub fn decode_entry(index: u64, bytes: &[u8]) -> Result<(Entry, &[u8]), StorageError> {
    let op = || format!("read log entry {index}");
    if bytes.len() < 4 {
        return Err(StorageError::corrupt(
            op(),
            "record shorter than its checksum",
        ));
    }
    let (sum, body) = bytes.split_at(4);
    let want = u32::from_be_bytes([sum[0], sum[1], sum[2], sum[3]]);
    if crc32c(body) != want {
        return Err(StorageError::corrupt(op(), "checksum mismatch"));
    }
    let (entry, used): (Entry, usize) = bincode::decode_from_slice(body, BINCODE)
        .map_err(|e| StorageError::corrupt(op(), e.to_string()))?;
    if entry.index != index {
        return Err(StorageError::corrupt(
            op(),
            format!("entry claims index {}", entry.index),
        ));
    }
    Ok((entry, &body[used..]))
}

/// Encodes any record. `what` names it in an error and is formatted only then.
pub fn encode<T: Encode>(what: impl std::fmt::Display, value: &T) -> Result<Vec<u8>, StorageError> {
    bincode::encode_to_vec(value, BINCODE)
        .map_err(|e| StorageError::corrupt(format!("encode {what}"), e.to_string()))
}

/// Decodes any record, naming it in the error (formatted only then).
pub fn decode<T: Decode<()>>(
    what: impl std::fmt::Display,
    bytes: &[u8],
) -> Result<T, StorageError> {
    bincode::decode_from_slice(bytes, BINCODE)
        .map(|(v, _)| v)
        .map_err(|e| StorageError::corrupt(format!("decode {what}"), e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::raft::Payload;

    #[test]
    fn entries_round_trip_and_damage_is_detected() {
        let e = Entry {
            term: 3,
            index: 7,
            payload: Payload::Command(b"hello".to_vec()),
        };
        let mut bytes = encode_entry(&e, b"events").unwrap();
        assert_eq!(
            decode_entry(7, &bytes).unwrap(),
            (e.clone(), &b"events"[..])
        );
        let bare = encode_entry(&e, &[]).unwrap();
        assert_eq!(decode_entry(7, &bare).unwrap(), (e, &[][..]));
        assert!(decode_entry(8, &bytes).is_err(), "wrong slot");
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        assert!(decode_entry(7, &bytes).is_err(), "flipped bit");
        assert!(decode_entry(7, &[1, 2]).is_err());
    }

    #[test]
    fn format_check_names_what_it_found() {
        assert!(check_format(&format_record()).is_ok());
        assert!(check_format(b"etcd")
            .unwrap_err()
            .contains("not written by pikv"));
        let mut newer = format_record();
        newer[11] = 9;
        assert!(check_format(&newer).unwrap_err().contains("version 9"));
    }
}
