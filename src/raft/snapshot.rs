//! Snapshots (Raft §7): a follower that needs entries the leader compacted away, or that
//! joined without knowing the cluster's configuration, gets the leader's state instead of
//! the log. The core only decides who needs one and learns where it ended: the driver
//! streams the state itself (in chunks, from a consistent read of its storage) and installs
//! it atomically, since that is I/O.
//!
//! Leader: the follower's progress goes to `Snapshot` (nothing else is sent to it but
//! heartbeats), its id comes out of [`Raft::take_snapshot_requests`], and the driver
//! reports the transfer with [`Raft::snapshot_sent`]. Follower: once the driver installed
//! the state durably, [`Raft::restore`] resets the log to end at the snapshot and tells
//! the leader where it now matches.

use super::membership::Membership;
use super::message::{MessageBody, NodeId, SnapshotMeta};
use super::progress::ProgressState;
use super::replication::SendWhen;
use super::{Raft, Role};

impl Raft {
    /// The leader finds that `to` needs a snapshot (once per transfer).
    pub(super) fn request_snapshot(&mut self, to: NodeId) {
        let Some(pr) = self.progress.get_mut(&to) else {
            return;
        };
        if pr.state == ProgressState::Snapshot {
            return;
        }
        pr.state = ProgressState::Snapshot;
        pr.inflight.clear();
        pr.probe_sent = false;
        self.snapshot_requests.push(to);
    }

    /// The followers the driver should send a snapshot of its applied state to, each once
    /// until [`Raft::snapshot_sent`] reports on it.
    pub fn take_snapshot_requests(&mut self) -> Vec<NodeId> {
        std::mem::take(&mut self.snapshot_requests)
    }

    /// The driver finished sending `to` a snapshot: `Ok(index)` with the last index it
    /// covered (the follower acknowledges it with its next answer), or `Err(())` if the
    /// transfer failed (the leader asks for another when the follower next answers).
    pub fn snapshot_sent(&mut self, to: NodeId, outcome: Result<u64, ()>) {
        let last = self.log.last_index();
        let Some(pr) = self.progress.get_mut(&to) else {
            return;
        };
        if pr.state != ProgressState::Snapshot {
            return;
        }
        pr.become_probe();
        if let Ok(index) = outcome {
            pr.next_index = index.min(last).max(pr.match_index) + 1;
        }
        self.maybe_send_append(to, SendWhen::Always);
    }

    /// What a snapshot of this member's applied state is: its index, term and voters (for a
    /// driver whose state machine is in step with the core's applied index).
    pub fn snapshot_meta(&self) -> Option<SnapshotMeta> {
        let index = self.applied;
        Some(SnapshotMeta {
            index,
            term: self.log.term(index)?,
            voters: self.membership.voters_at(index),
        })
    }

    /// The driver installed, durably, a snapshot that `from` sent in `term`: everything up to
    /// `meta.index` is committed and applied, the voters are the snapshot's, and the log
    /// starts after it — keeping the durable entries after it if the log held the
    /// snapshot's last entry (the driver keeps the same ones), none otherwise. Returns false (and changes nothing) if the snapshot is stale — from
    /// an older term, or not past this member's commit index — or a Ready is in flight (the
    /// driver installs only between Readies).
    pub fn restore(&mut self, from: NodeId, term: u64, meta: SnapshotMeta) -> bool {
        if term < self.term() || self.in_flight.is_some() || meta.voters.is_empty() {
            return false;
        }
        if term > self.term() || self.role != Role::Follower || self.leader != Some(from) {
            if self.role == Role::Leader && term == self.term() {
                return false;
            }
            self.become_follower(term, Some(from));
        }
        if meta.index <= self.hard_state.commit {
            // Held like any acknowledgement: the commit index may cover entries not yet
            // durable here.
            self.send_durable(
                from,
                MessageBody::AppendAccepted {
                    match_index: self.hard_state.commit,
                },
            );
            return false;
        }
        // Raft §7: a log that holds the snapshot's last entry keeps what follows it — those
        // entries may be acknowledged already, and dropping them would undo a commit
        // (only the durable ones: the driver keeps exactly those). Whether they match the
        // leader's is for the next append to find out.
        let kept = if self.log.term(meta.index) == Some(meta.term) {
            self.log
                .slice(meta.index + 1, self.log.persisted())
                .to_vec()
        } else {
            Vec::new()
        };
        self.membership = Membership::new(meta.voters, meta.index, &kept);
        self.log = super::log::RaftLog::new(meta.index, meta.term, kept);
        self.hard_state.commit = meta.index;
        self.applying = meta.index;
        self.applied = meta.index;
        self.voters = self.membership.voters();
        // Acknowledgements held for the old log claim entries it no longer has.
        let claims = |m: &super::Message| matches!(m.body, MessageBody::AppendAccepted { .. });
        self.msgs_after_persist.retain(|m| !claims(m));
        self.msgs_after_inflight.retain(|m| !claims(m));
        self.election_elapsed = 0;
        // The state is durable (the driver installed it before calling): say so at once.
        self.send(
            from,
            MessageBody::AppendAccepted {
                match_index: meta.index,
            },
        );
        self.debug_check();
        true
    }
}
