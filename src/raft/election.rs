//! Elections: the randomized timeout, pre-vote, votes (Raft §5.2, §5.4.1), check-quorum,
//! and what a new leader does first.

use super::message::{MessageBody, NodeId, Payload};
use super::progress::Progress;
use super::quorum::{self, VoteResult};
use super::replication::SendWhen;
use super::{Raft, Role};

/// How a campaign starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Campaign {
    /// Ask for pre-votes first (the election timeout fired).
    PreVote,
    /// Campaign in a new term (a pre-vote quorum granted).
    Election,
    /// Campaign at once because the leader asked (TimeoutNow): voters grant even within
    /// their lease.
    Transfer,
}

impl Raft {
    /// A follower's or candidate's tick: campaign when the election timeout runs out.
    pub(super) fn tick_election(&mut self) {
        self.election_elapsed = self.election_elapsed.saturating_add(1);
        if self.promotable() && self.election_elapsed >= self.randomized_timeout {
            self.campaign(Campaign::PreVote);
        }
    }

    /// A leader's tick: check-quorum every election timeout, heartbeats in between.
    pub(super) fn tick_leader(&mut self) {
        self.heartbeat_elapsed = self.heartbeat_elapsed.saturating_add(1);
        self.election_elapsed = self.election_elapsed.saturating_add(1);
        if self.election_elapsed >= self.config.election_ticks {
            self.election_elapsed = 0;
            if !self.quorum_active() {
                // Raft thesis §6.2: a leader cut off from a quorum steps down, so that its
                // clients go elsewhere and its followers' leases can expire.
                let term = self.term();
                self.become_follower(term, None);
                return;
            }
            // A transfer that did not finish within an election timeout is abandoned (the
            // target may be down): take proposals again.
            self.lead_transferee = None;
        }
        if self.heartbeat_elapsed >= self.config.heartbeat_ticks {
            self.heartbeat_elapsed = 0;
            self.bcast_heartbeat();
        }
    }

    // Whether a quorum (this leader included) was heard from since the last round; starts
    // the next round.
    fn quorum_active(&mut self) -> bool {
        // A leader that removed itself leads on until that commits, counting only others.
        let mut active = usize::from(self.voters.contains(&self.id));
        let mut gone = Vec::new();
        for (id, pr) in self.progress.iter_mut() {
            if !pr.recent_active {
                gone.push(*id);
            } else if self.voters.contains(id) {
                active += 1;
            }
            pr.recent_active = false;
        }
        for peer in gone {
            self.maybe_forget_leaving(peer, true);
        }
        active >= quorum::majority(self.voters.len())
    }

    /// Starts a campaign of the given kind.
    pub(super) fn campaign(&mut self, kind: Campaign) {
        if !self.promotable() {
            return;
        }
        let (last_index, last_term) = (self.log.last_index(), self.log.last_term());
        let peers: Vec<NodeId> = self
            .voters
            .iter()
            .copied()
            .filter(|v| *v != self.id)
            .collect();
        if kind == Campaign::PreVote {
            let term = self.term();
            self.become_follower(term, None);
            self.role = Role::PreCandidate;
            // Our own pre-vote changes nothing durable, so it counts at once.
            self.votes.insert(self.id, true);
            if quorum::vote_result(&self.voters, &self.votes) == VoteResult::Won {
                self.campaign(Campaign::Election);
                return;
            }
            // Terms come from peers too: saturate rather than overflow on a hostile one.
            let next_term = term.saturating_add(1);
            for peer in peers {
                self.send_in_term(
                    peer,
                    next_term,
                    MessageBody::PreVote {
                        last_index,
                        last_term,
                    },
                );
            }
            return;
        }
        let term = self.term().saturating_add(1);
        self.become_follower(term, None);
        self.role = Role::Candidate;
        self.hard_state.vote = self.id;
        // Our own vote counts only once the new term and vote are durable: a member that
        // crashed before that could vote again in this term after restarting.
        self.send_durable(
            self.id,
            MessageBody::VoteResponse {
                granted: true,
                clock: self.vote_clock(),
            },
        );
        let transfer = kind == Campaign::Transfer;
        for peer in peers {
            self.send(
                peer,
                MessageBody::Vote {
                    last_index,
                    last_term,
                    transfer,
                },
            );
        }
    }

    /// A (pre-)vote request at our term (or, for a pre-vote, one ahead of it).
    pub(super) fn handle_vote_request(
        &mut self,
        from: NodeId,
        term: u64,
        pre: bool,
        last_index: u64,
        last_term: u64,
    ) {
        // Raft §5.2: one vote per term, first come first served; a repeated request from
        // the member we voted for gets the same answer. A pre-vote for a later term is a
        // question about that term, where we have not voted yet.
        let vote = self.hard_state.vote;
        let can_vote =
            vote == from || (vote == 0 && self.leader.is_none()) || (pre && term > self.term());
        // Raft §5.4.1: only for a log at least as up to date as ours.
        let granted = can_vote && self.log.is_up_to_date(last_index, last_term);
        match (pre, granted) {
            (true, true) => {
                self.send_in_term(from, term, MessageBody::PreVoteResponse { granted: true })
            }
            (true, false) => self.send(from, MessageBody::PreVoteResponse { granted: false }),
            (false, true) => {
                self.hard_state.vote = from;
                // Granting restarts the timer: the candidate gets its chance to win.
                self.election_elapsed = 0;
                let clock = self.vote_clock();
                self.send_durable(
                    from,
                    MessageBody::VoteResponse {
                        granted: true,
                        clock,
                    },
                );
            }
            (false, false) => self.send(
                from,
                MessageBody::VoteResponse {
                    granted: false,
                    clock: 0,
                },
            ),
        }
    }

    /// Counts a (pre-)vote answer; only a voter's first answer in a campaign counts.
    pub(super) fn poll(&mut self, from: NodeId, granted: bool) {
        // Only voters' answers count (and are kept: a stranger's would only grow the map).
        if !self.voters.contains(&from) {
            return;
        }
        self.votes.entry(from).or_insert(granted);
        match quorum::vote_result(&self.voters, &self.votes) {
            VoteResult::Won if self.role == Role::PreCandidate => self.campaign(Campaign::Election),
            VoteResult::Won => self.become_leader(),
            VoteResult::Lost => {
                let term = self.term();
                self.become_follower(term, None);
            }
            VoteResult::Pending => {}
        }
    }

    /// Takes the lead of the current term: fresh progress for every follower, and a no-op
    /// entry so that entries of earlier terms commit under this one (Raft §5.4.2; it also
    /// lets ReadIndex know the commit index is current, §6.4).
    pub(super) fn become_leader(&mut self) {
        self.role = Role::Leader;
        self.leader = Some(self.id);
        self.lead_transferee = None;
        self.votes.clear();
        self.reset_timers();
        let next = self.log.last_index() + 1;
        self.progress = self
            .voters
            .iter()
            .filter(|v| **v != self.id)
            .map(|v| (*v, Progress::new(next)))
            .collect();
        self.pending_reads.clear();
        self.reads_awaiting_commit.clear();
        self.forwarded_seen.clear();
        self.forwarded_set.clear();
        self.append_entry(Payload::Empty);
        self.bcast_append(SendWhen::Always);
    }
}
