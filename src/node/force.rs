//! `--force-new-cluster`: a data dir becomes the data dir of a one-member cluster, before the
//! node starts on it (a backup made by `pikv backup`, or the data dir of the last member of
//! a cluster that lost its quorum).
//!
//! It keeps what etcd's flag keeps: every key with its indexes (the store's etcd index goes
//! on from where it was), the member id and the cluster id; the other members are recorded
//! as removed, so their ids are never given to a member added later. It must not leave a
//! data dir that a crash part way through could make inconsistent: each step is durable
//! before the next, and a start after any of them (with or without the flag) finds a valid
//! data dir.

use super::batch::{self, Maintenance};
use super::disk;
use crate::raft::HardState;
use crate::storage::lmdb::LmdbStorage;
use crate::storage::{MemberRecord, RaftState, StorageError};
use crate::store::V2Store;

/// What forcing a new cluster did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Forced {
    /// The index LMDB had applied before.
    pub applied_before: u64,
    /// The write-ahead log's entries after it, now committed and applied.
    pub from_wal: u64,
    /// The last index of the log now (everything up to it is applied).
    pub last_index: u64,
    /// The members recorded as removed now.
    pub removed: Vec<u64>,
    /// The store's etcd index now.
    pub etcd_index: u64,
}

/// Makes the data dir of `storage` the data dir of a cluster whose only member is `me`
/// (same member id and cluster id as recorded; `me` carries the name and peer URLs this
/// start advertises). `None`: the data dir was never bootstrapped, there is nothing to
/// force (the server refuses to start then, see `server::run`).
///
/// The entries of the write-ahead log beyond the applied index are all committed and
/// applied, the unacknowledged tail included, as etcd's `--force-new-cluster` commits
/// everything its WAL holds. Why not discard what this member did not know to be
/// committed: a member learns that an entry is committed only with the leader's next
/// message, so its WAL may hold entries the lost majority had committed and the leader had
/// acknowledged to clients; discarding them could lose acknowledged writes. Keeping an
/// entry that was not committed only makes a write take effect whose client got no answer
/// (a timeout: its outcome was unknown, and either outcome was allowed). Membership changes
/// in that tail are applied too, then superseded by the one-member membership.
///
/// Order: the tail is applied in LMDB (durable), then the membership and Raft state are
/// rewritten in one durable transaction, then the WAL restarts empty with the new hard
/// state. A crash before the last step leaves a WAL whose entries LMDB has all applied,
/// which a start ignores.
pub fn force_new_cluster(
    storage: &LmdbStorage,
    me: &MemberRecord,
) -> Result<Option<Forced>, StorageError> {
    let recovered = storage.recover()?;
    if recovered.identity.is_none() {
        return Ok(None);
    }
    let (mut wal, log) = disk::open_log(storage, &recovered)?;
    let applied_before = log.raft.applied;
    let last_index = log.last_index;
    let hard_state = HardState {
        commit: last_index,
        ..log.raft.hard_state
    };
    let store = V2Store::new();
    let mut state = log.raft;
    for chunk in log.tail.chunks(disk::TXN_ENTRIES_MAX) {
        batch::apply_batch(
            storage,
            &store,
            chunk,
            hard_state,
            &mut state,
            Maintenance::default(),
            None,
        )?;
    }
    storage.sync()?;
    let forced_state = RaftState {
        hard_state: HardState {
            // The vote stays: a member never takes back a vote of its term. The node's first
            // election (alone, at once) moves to the next term anyway.
            term: hard_state.term.max(log.last_term),
            vote: hard_state.vote,
            commit: last_index,
        },
        applied: last_index,
    };
    let removed = storage.force_single_member(me, &forced_state)?;
    wal.restart(forced_state.hard_state, &[])?;
    let etcd_index = V2Store::current_index(&storage.read()?)?;
    Ok(Some(Forced {
        applied_before,
        from_wal: last_index - applied_before,
        last_index,
        removed,
        etcd_index,
    }))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::raft::{ConfChange, Entry, Payload};
    use crate::storage::wal::Wal;
    use crate::storage::Identity;
    use std::path::Path;

    fn record(id: u64) -> MemberRecord {
        MemberRecord {
            id,
            name: format!("m{id}"),
            peer_urls: vec![format!("http://127.0.0.1:{}", 7000 + id)],
        }
    }

    fn set(term: u64, index: u64) -> Entry {
        let cmd = crate::store::Command::Set {
            key: format!("/k{index}"),
            value: format!("v{index}"),
            dir: false,
            expire_at: None,
            refresh: false,
        };
        Entry {
            term,
            index,
            payload: Payload::Command(batch::encode_command(&cmd).unwrap()),
        }
    }

    /// A data dir of member 1 of a 3-member cluster (members 1, 2, 3): entries 1..=3
    /// applied in LMDB, 1..=6 in its WAL (6 adds member 4, not committed), hard state of
    /// term 2 with commit 4.
    pub(crate) fn member_of_three(dir: &Path) -> Identity {
        let _ = std::fs::remove_dir_all(dir);
        let storage = LmdbStorage::open(dir, 64 << 20).unwrap();
        let identity = Identity {
            cluster_id: 0xc1,
            member_id: 1,
        };
        storage
            .save_identity(&identity, &[record(1), record(2), record(3)])
            .unwrap();
        let recovered = storage.recover().unwrap();
        let (mut wal, _) = disk::open_log(&storage, &recovered).unwrap();
        let mut entries: Vec<Entry> = (1..=5).map(|i| set(2, i)).collect();
        entries.push(Entry {
            term: 2,
            index: 6,
            payload: Payload::Membership {
                change: ConfChange::AddVoter(4),
                context: crate::storage::format::encode("member record", &record(4)).unwrap(),
            },
        });
        let hs = HardState {
            term: 2,
            vote: 2,
            commit: 4,
        };
        wal.append(Some(hs), &entries, true).unwrap();
        let mut state = RaftState::default();
        batch::apply_batch(
            &storage,
            &V2Store::new(),
            &entries[..3],
            hs,
            &mut state,
            Maintenance::default(),
            None,
        )
        .unwrap();
        storage.sync().unwrap();
        identity
    }

    fn value(storage: &LmdbStorage, key: &str) -> Option<String> {
        let view = storage.read().unwrap();
        let store = V2Store::new();
        match store.get(&view, key, false, false) {
            Ok(Ok(event)) => event.node.value.clone(),
            _ => None,
        }
    }

    // The WAL's tail (committed or not) is applied, the membership is this member alone
    // with the others removed for good, the WAL holds nothing LMDB lacks, and a second
    // force (the flag left on) changes nothing.
    #[test]
    fn a_member_of_three_becomes_the_only_member_with_every_entry_of_its_wal() {
        let dir = std::env::temp_dir().join(format!("pikv-force-{}", std::process::id()));
        member_of_three(&dir);
        let storage = LmdbStorage::open(&dir, 64 << 20).unwrap();
        let me = record(1);
        let forced = force_new_cluster(&storage, &me).unwrap().unwrap();
        assert_eq!(
            forced,
            Forced {
                applied_before: 3,
                from_wal: 3,
                last_index: 6,
                removed: vec![2, 3, 4],
                etcd_index: 5,
            }
        );
        let recovered = storage.recover().unwrap();
        assert_eq!(recovered.members, vec![me.clone()]);
        assert_eq!(
            storage.read().unwrap().removed_members().unwrap(),
            vec![2, 3, 4]
        );
        assert_eq!(recovered.raft.applied, 6);
        for i in 1..=5 {
            assert_eq!(value(&storage, &format!("/k{i}")), Some(format!("v{i}")));
        }
        let (_, log) = disk::open_log(&storage, &recovered).unwrap();
        assert!(log.tail.is_empty());
        assert_eq!((log.last_index, log.last_term), (6, 2));
        assert_eq!(log.raft.hard_state.commit, 6);
        assert_eq!(log.raft.hard_state.vote, 2, "a vote is never taken back");
        drop(log);
        let (_, replay) = Wal::open(&storage.wal_dir()).unwrap();
        assert!(replay.entries.is_empty());

        let again = force_new_cluster(&storage, &me).unwrap().unwrap();
        assert_eq!((again.from_wal, again.last_index), (0, 6));
        assert!(again.removed.is_empty());
        assert_eq!(again.etcd_index, 5);
        drop(storage);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    // Its own removal was in the WAL, not yet applied: applied with the rest, then the
    // member is the cluster (not listed as removed).
    #[test]
    fn a_member_whose_removal_was_under_way_is_the_cluster_afterwards() {
        let dir = std::env::temp_dir().join(format!("pikv-force-rm-{}", std::process::id()));
        member_of_three(&dir);
        {
            let storage = LmdbStorage::open(&dir, 64 << 20).unwrap();
            let recovered = storage.recover().unwrap();
            let (mut wal, _) = disk::open_log(&storage, &recovered).unwrap();
            let removal = Entry {
                term: 2,
                index: 7,
                payload: Payload::Membership {
                    change: ConfChange::RemoveVoter(1),
                    context: Vec::new(),
                },
            };
            wal.append(None, &[removal], true).unwrap();
        }
        let storage = LmdbStorage::open(&dir, 64 << 20).unwrap();
        let forced = force_new_cluster(&storage, &record(1)).unwrap().unwrap();
        assert_eq!((forced.from_wal, forced.last_index), (4, 7));
        assert_eq!(forced.removed, vec![2, 3, 4]);
        assert_eq!(storage.recover().unwrap().members, vec![record(1)]);
        assert_eq!(
            storage.read().unwrap().removed_members().unwrap(),
            vec![2, 3, 4]
        );
        drop(storage);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn an_empty_data_dir_has_nothing_to_force() {
        let dir = std::env::temp_dir().join(format!("pikv-force-empty-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let storage = LmdbStorage::open(&dir, 64 << 20).unwrap();
        assert_eq!(force_new_cluster(&storage, &record(1)).unwrap(), None);
        drop(storage);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
