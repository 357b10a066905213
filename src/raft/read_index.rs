//! ReadIndex (Raft thesis §6.4): a linearizable read without writing to the log. The leader
//! records its commit index, confirms with a heartbeat round that a quorum still follows it
//! (so no newer leader can have committed more), and answers; the reader then waits until
//! it has applied that index. Followers forward the request to the leader.

use super::message::{MessageBody, NodeId};
use super::quorum;
use super::ready::ReadState;
use super::Raft;

/// A read waiting for its heartbeat round.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct ReadRequest {
    /// Who asked (this member, or the follower that forwarded it).
    from: NodeId,
    ctx: u64,
    /// The leader's commit index when the request arrived.
    index: u64,
    /// The heartbeat round that confirms it.
    seq: u64,
}

impl Raft {
    /// The leader takes a read request from `from` (itself or a follower).
    pub(super) fn leader_read(&mut self, from: NodeId, ctx: u64) {
        if self.is_single_voter() {
            // No one else can lead: what is committed is current.
            let commit = self.hard_state.commit;
            self.answer_read(from, ctx, commit);
            return;
        }
        if self.log.term(self.hard_state.commit) != Some(self.term()) {
            // Until its no-op commits, a new leader does not know the commit index yet.
            self.reads_awaiting_commit.push((from, ctx));
            return;
        }
        self.heartbeat_seq += 1;
        self.pending_reads.push_back(ReadRequest {
            from,
            ctx,
            index: self.hard_state.commit,
            seq: self.heartbeat_seq,
        });
        self.bcast_heartbeat();
    }

    /// Answers every read whose round a quorum (the leader included) has echoed.
    pub(super) fn maybe_confirm_reads(&mut self) {
        if self.pending_reads.is_empty() {
            return;
        }
        let (id, own) = (self.id, self.heartbeat_seq);
        let progress = &self.progress;
        let confirmed = quorum::committed_index(&self.voters, |v| {
            if v == id {
                own
            } else {
                progress.get(&v).map_or(0, |p| p.acked_seq)
            }
        });
        while let Some(r) = self.pending_reads.front().copied() {
            if r.seq > confirmed {
                break;
            }
            self.pending_reads.pop_front();
            self.answer_read(r.from, r.ctx, r.index);
        }
    }

    /// Starts the reads that waited for the leader's first commit in its term.
    pub(super) fn release_reads_awaiting_commit(&mut self) {
        if self.log.term(self.hard_state.commit) != Some(self.term()) {
            return;
        }
        for (from, ctx) in std::mem::take(&mut self.reads_awaiting_commit) {
            self.leader_read(from, ctx);
        }
    }

    fn answer_read(&mut self, from: NodeId, ctx: u64, index: u64) {
        if from == self.id {
            self.read_states.push(ReadState { ctx, index });
        } else {
            self.send(from, MessageBody::ReadIndexResponse { ctx, index });
        }
    }
}
