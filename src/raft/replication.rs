//! Log replication (Raft §5.3): the leader's appends and heartbeats, the follower's
//! consistency check with conflict hints, and the commit rule (§5.4.2).

use super::message::{Entry, MessageBody, NodeId, Payload};
use super::progress::ProgressState;
use super::quorum;
use super::{Raft, Role};

/// When an append with no entries is worth sending.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum SendWhen {
    /// Only appends that carry entries.
    NewEntries,
    /// Also an empty one that tells the follower of a commit index it has not been sent.
    NewEntriesOrCommit,
    /// Always: an empty append probes where the follower's log ends.
    Always,
}

impl Raft {
    /// Appends an entry of the current term to the leader's log; returns its index.
    pub(super) fn append_entry(&mut self, payload: Payload) -> u64 {
        let index = self.log.last_index() + 1;
        self.push_entry(Entry {
            term: self.term(),
            index,
            payload,
        });
        index
    }

    fn peers(&self) -> Vec<NodeId> {
        self.progress.keys().copied().collect()
    }

    /// Sends every follower what it lacks (with `when` saying whether an empty append is
    /// worth it to those that lack nothing).
    pub(super) fn bcast_append(&mut self, when: SendWhen) {
        for peer in self.peers() {
            self.maybe_send_append(peer, when);
        }
    }

    /// Asks for a [`Raft::bcast_append`] when the driver next takes messages.
    pub(super) fn defer_bcast(&mut self, when: SendWhen) {
        // The widest ask wins: Always sends what NewEntriesOrCommit would, and more.
        let rank = |w: SendWhen| match w {
            SendWhen::NewEntries => 0,
            SendWhen::NewEntriesOrCommit => 1,
            SendWhen::Always => 2,
        };
        self.pending_bcast = Some(match self.pending_bcast {
            Some(p) if rank(p) >= rank(when) => p,
            _ => when,
        });
    }

    /// Sends the broadcast [`Raft::defer_bcast`] asked for, if this member still leads.
    pub(super) fn flush_bcast(&mut self) {
        if let Some(when) = self.pending_bcast.take() {
            if self.role == Role::Leader {
                self.bcast_append(when);
            }
        }
    }

    /// Heartbeats to every follower, with the commit index each may take and the current
    /// read round.
    pub(super) fn bcast_heartbeat(&mut self) {
        let (commit, seq) = (self.hard_state.commit, self.heartbeat_seq);
        let targets: Vec<(NodeId, u64)> = self
            .progress
            .iter()
            .map(|(id, pr)| (*id, pr.match_index.min(commit)))
            .collect();
        for (to, commit) in targets {
            let clock = self.clock;
            self.send(to, MessageBody::Heartbeat { commit, seq, clock });
        }
    }

    /// Sends `to` the next append its progress allows; returns whether one went out. Appends
    /// go out before the leader's own entries are durable (they claim nothing).
    pub(super) fn maybe_send_append(&mut self, to: NodeId, when: SendWhen) -> bool {
        let (max_inflight, max_entries) = (
            self.config.max_inflight_msgs,
            self.config.max_entries_per_msg as u64,
        );
        let Some(pr) = self.progress.get(&to) else {
            return false;
        };
        if pr.is_paused(max_inflight) {
            return false;
        }
        let prev_index = pr.next_index - 1;
        let Some(prev_term) = self.log.term(prev_index) else {
            // The follower needs entries compacted away: only the state can help it.
            self.request_snapshot(to);
            return false;
        };
        let hi = prev_index
            .saturating_add(max_entries)
            .min(self.log.last_index());
        // With an append already on its way, a partial one waits for its acknowledgement
        // (which sends everything that came meanwhile in one message): the follower would
        // have made them one WAL write anyway, and each message costs both sides syscalls
        // and wakeups. Full appends still stream, so a follower's slow disk does not throttle
        // the pipeline; a probe (`Always`) still goes.
        if pr.state == ProgressState::Replicate
            && !pr.inflight.is_empty()
            && hi > prev_index
            && hi - prev_index < max_entries
            && when != SendWhen::Always
        {
            return false;
        }
        let entries = self.log.slice(prev_index + 1, hi).to_vec();
        let commit = self.hard_state.commit;
        // The follower takes the commit index only up to the last entry the append vouches for.
        let carried = commit.min(entries.last().map_or(prev_index, |e| e.index));
        if entries.is_empty() {
            match when {
                SendWhen::NewEntries => return false,
                SendWhen::NewEntriesOrCommit if carried <= pr.sent_commit => return false,
                _ => {}
            }
        }
        let last = entries.last().map(|e| e.index);
        if let Some(pr) = self.progress.get_mut(&to) {
            pr.sent(last);
            pr.sent_commit = pr.sent_commit.max(carried);
        }
        self.send(
            to,
            MessageBody::Append {
                prev_index,
                prev_term,
                entries,
                commit,
                clock: self.clock,
            },
        );
        true
    }

    /// A follower's handling of the leader's append (Raft §5.3).
    pub(super) fn handle_append(
        &mut self,
        from: NodeId,
        term: u64,
        prev_index: u64,
        prev_term: u64,
        entries: Vec<Entry>,
        commit: u64,
    ) {
        // Entries must continue from prev_index, one index at a time, with terms that never
        // go down and never pass the leader's term: anything else is not a leader's append.
        let mut expected_term = prev_term;
        for (k, e) in entries.iter().enumerate() {
            if prev_index.checked_add(1 + k as u64) != Some(e.index)
                || e.term < expected_term
                || e.term > term
            {
                return;
            }
            expected_term = e.term;
        }
        if self.voters.is_empty() {
            // No configuration yet (a member that joined empty): the log from index 1 would
            // not say who the first voters were.
            self.send(from, MessageBody::SnapshotWanted);
            return;
        }
        let committed = self.hard_state.commit;
        if prev_index < committed {
            // Everything up to our commit matches any leader's log: say where we are, and the
            // leader resumes from there.
            self.send_durable(
                from,
                MessageBody::AppendAccepted {
                    match_index: committed,
                },
            );
            return;
        }
        match self.log.term(prev_index) {
            None => {
                // Our log ends before prev_index: resume after our last entry.
                let last = self.log.last_index();
                self.send(
                    from,
                    MessageBody::AppendRejected {
                        rejected_index: prev_index,
                        hint_index: last,
                        hint_term: 0,
                    },
                );
            }
            Some(ours) if ours != prev_term => {
                // Our entry at prev_index is of another term: name that term and where it
                // starts, so the leader skips all of it at once.
                let hint_index = self.log.first_index_of_term_at(prev_index, committed);
                self.send(
                    from,
                    MessageBody::AppendRejected {
                        rejected_index: prev_index,
                        hint_index,
                        hint_term: ours,
                    },
                );
            }
            Some(_) => {
                let n = entries.len() as u64;
                let first_new = entries
                    .iter()
                    .position(|e| self.log.term(e.index) != Some(e.term));
                if let Some(pos) = first_new {
                    let at = prev_index + 1 + pos as u64;
                    if at <= committed {
                        // Never rewrite committed entries (unreachable for prev_index >=
                        // committed; kept as the guard it is).
                        return;
                    }
                    if at <= self.log.last_index() {
                        self.truncate_log_after(at - 1);
                    }
                    for e in entries.into_iter().skip(pos) {
                        self.push_entry(e);
                    }
                }
                let last_new = prev_index + n;
                let commit_to = commit.min(last_new);
                if commit_to > self.hard_state.commit {
                    self.hard_state.commit = commit_to;
                }
                self.send_durable(
                    from,
                    MessageBody::AppendAccepted {
                        match_index: last_new,
                    },
                );
            }
        }
    }

    /// A follower's handling of a heartbeat.
    pub(super) fn handle_heartbeat(&mut self, from: NodeId, commit: u64, seq: u64, clock: u64) {
        self.leader_clock = self.leader_clock.max(clock);
        // The leader caps `commit` at what it knows we hold, so it is ours to take (capped
        // at our log anyway: a peer's number is never trusted to index memory).
        let commit = commit.min(self.log.last_index());
        if commit > self.hard_state.commit {
            self.hard_state.commit = commit;
        }
        self.send(from, MessageBody::HeartbeatResponse { seq });
    }

    /// The leader learns that `from` holds its log up to `match_index`.
    pub(super) fn handle_append_accepted(&mut self, from: NodeId, match_index: u64) {
        if match_index > self.log.last_index() {
            return;
        }
        let Some(pr) = self.progress.get_mut(&from) else {
            return;
        };
        pr.recent_active = true;
        let was_probe = pr.state == ProgressState::Probe;
        let was_paused = pr.is_paused(self.config.max_inflight_msgs);
        let moved = pr.acknowledge(match_index);
        if was_probe && (moved || pr.match_index == match_index) {
            pr.become_replicate();
        }
        if moved && self.maybe_commit() {
            self.defer_bcast(SendWhen::NewEntriesOrCommit);
        } else if was_paused {
            // Held back while paused, the follower may lack the latest commit index.
            self.maybe_send_append(from, SendWhen::NewEntriesOrCommit);
        }
        while self.maybe_send_append(from, SendWhen::NewEntries) {}
        self.maybe_send_timeout_now(from);
        self.maybe_forget_leaving(from, false);
    }

    /// The leader learns that `from` lacks its entry at `rejected_index`.
    pub(super) fn handle_append_rejected(
        &mut self,
        from: NodeId,
        rejected_index: u64,
        hint_index: u64,
        hint_term: u64,
    ) {
        // Where to resume (Raft §5.3, the thesis' conflict hint): after our last entry of the
        // follower's conflicting term if we have that term, else at the first index the
        // follower holds of it; after the follower's last entry if its log is shorter.
        if rejected_index > self.log.last_index() {
            // We never sent an append after an entry we do not have.
            return;
        }
        let hinted_next = if hint_term == 0 {
            hint_index.saturating_add(1)
        } else {
            match self.log.last_index_of_term(hint_term, rejected_index) {
                Some(k) => k + 1,
                None => hint_index,
            }
        };
        let Some(pr) = self.progress.get_mut(&from) else {
            return;
        };
        pr.recent_active = true;
        if pr.reject(rejected_index, hinted_next) {
            self.maybe_send_append(from, SendWhen::Always);
        }
    }

    /// The leader's handling of a heartbeat answer.
    pub(super) fn handle_heartbeat_response(&mut self, from: NodeId, seq: u64) {
        let (max_inflight, last, current_seq) = (
            self.config.max_inflight_msgs,
            self.log.last_index(),
            self.heartbeat_seq,
        );
        let Some(pr) = self.progress.get_mut(&from) else {
            return;
        };
        pr.recent_active = true;
        pr.probe_sent = false;
        // A full window whose appends were all lost would never drain: a live follower
        // frees one slot per heartbeat, so the next append (rejected if there is a gap)
        // finds out.
        if pr.state == ProgressState::Replicate && pr.inflight.len() >= max_inflight {
            pr.inflight.pop_front();
        }
        if seq <= current_seq {
            pr.acked_seq = pr.acked_seq.max(seq);
        }
        // A follower behind with nothing left to send it lost appends: an empty one finds
        // out where its log ends (once per heartbeat, so never a storm).
        let behind = pr.match_index < last;
        if behind {
            self.maybe_send_append(from, SendWhen::Always);
        }
        self.maybe_confirm_reads();
    }

    /// Moves the commit index to the highest index a quorum holds durably, if that entry is
    /// of the current term (Raft §5.4.2, Figure 8: counting replicas of an older term's
    /// entry does not make it safe). Returns whether it moved.
    pub(super) fn maybe_commit(&mut self) -> bool {
        if self.role != Role::Leader {
            return false;
        }
        let (id, own) = (self.id, self.log.persisted());
        let progress = &self.progress;
        let index = quorum::committed_index(&self.voters, |v| {
            if v == id {
                own
            } else {
                progress.get(&v).map_or(0, |p| p.match_index)
            }
        });
        if index <= self.hard_state.commit || self.log.term(index) != Some(self.term()) {
            return false;
        }
        self.hard_state.commit = index;
        self.release_reads_awaiting_commit();
        self.maybe_leave_after_removal();
        true
    }
}
