//! Membership changes, one member at a time (Raft thesis §4.1, §4.2.2).
//!
//! A change takes effect on a member as soon as the member appends it, committed or not:
//! the voters are those of the newest configuration in its log. Adding or removing a single
//! voter keeps every majority of the old configuration overlapping every majority of the
//! new one, so two leaders cannot be elected in one term across a change — provided only
//! one change is in the log uncommitted at a time, and a new leader proposes none before it
//! committed an entry of its own term (the fix to the single-server algorithm Ongaro posted
//! in 2015: otherwise two leaders of different terms could each commit a different change
//! built on the same old configuration).
//!
//! Voters are `base` (the configuration at a committed index, the driver's durable copy at
//! restart) with the changes in the log after it applied in order. A truncated log tail
//! takes its changes with it.
//!
//! A leader that removed itself keeps leading, without counting itself in any majority,
//! until the removal commits; then it hands over to its most up-to-date follower at once
//! (TimeoutNow) instead of leaving the cluster to wait out an election timeout.

use super::message::{ConfChange, Entry, MessageBody, NodeId, Payload};
use super::progress::Progress;
use super::replication::SendWhen;
use super::{BrokenRule, ProposeError, Raft, Role};

/// The voters at a point of the log, and the changes in the log after it.
#[derive(Debug, Clone, Default)]
pub(super) struct Membership {
    /// The voters as of `base_index` (a committed index), sorted.
    base: Vec<NodeId>,
    base_index: u64,
    /// The changes of the log after `base_index`, in index order.
    changes: Vec<(u64, ConfChange)>,
}

impl Membership {
    /// Voters `base` as of `base_index`, with the changes among `entries` after it.
    pub(super) fn new(mut base: Vec<NodeId>, base_index: u64, entries: &[Entry]) -> Membership {
        base.sort_unstable();
        base.dedup();
        let mut m = Membership {
            base,
            base_index,
            changes: Vec::new(),
        };
        for e in entries {
            m.appended(e);
        }
        m
    }

    /// Takes note of an entry appended to the log.
    pub(super) fn appended(&mut self, e: &Entry) {
        if e.index <= self.base_index {
            return;
        }
        if let Some((change, _)) = e.payload.membership() {
            self.changes.push((e.index, change));
        }
    }

    /// The log lost its entries after `index`.
    pub(super) fn truncated_after(&mut self, index: u64) {
        self.changes.retain(|(i, _)| *i <= index);
    }

    /// The voters as the newest change in the log has them.
    pub(super) fn voters(&self) -> Vec<NodeId> {
        self.voters_at(u64::MAX)
    }

    /// The voters as of `index` (at or after the base).
    pub(super) fn voters_at(&self, index: u64) -> Vec<NodeId> {
        let mut voters = self.base.clone();
        for (_, change) in self.changes.iter().take_while(|(i, _)| *i <= index) {
            change.applied_to(&mut voters);
        }
        voters
    }

    /// Index of the newest change in the log (0: none after the base).
    pub(super) fn last_change_index(&self) -> u64 {
        self.changes.last().map_or(0, |(i, _)| *i)
    }

    /// Folds the changes up to `index` (committed and applied) into the base, so the list
    /// holds only what a truncation could still take back.
    pub(super) fn settle_through(&mut self, index: u64) {
        if index <= self.base_index {
            return;
        }
        let settled = self.changes.iter().take_while(|(i, _)| *i <= index).count();
        for (_, change) in self.changes.drain(..settled) {
            change.applied_to(&mut self.base);
        }
        self.base_index = index;
    }
}

impl Raft {
    /// Proposes adding or removing one voter (with the driver's `context`, e.g. the member's
    /// name and URLs); returns the entry's index. The change is in effect from that moment
    /// on this leader, and on each follower once it appends the entry. Refused while another
    /// change is not yet committed, and until this leader committed an entry of its term.
    pub fn propose_conf_change(
        &mut self,
        change: ConfChange,
        context: Vec<u8>,
    ) -> Result<u64, ProposeError> {
        if self.role != Role::Leader {
            return Err(ProposeError::NotLeader);
        }
        if self.lead_transferee.is_some() {
            return Err(ProposeError::TransferInProgress);
        }
        let commit = self.hard_state.commit;
        let rule_off = self.config.broken_rule == Some(BrokenRule::ManyMembershipChanges);
        if !rule_off
            && (self.membership.last_change_index() > commit
                || self.log.term(commit) != Some(self.term()))
        {
            return Err(ProposeError::MembershipChangePending);
        }
        match change {
            ConfChange::AddVoter(id) if id == 0 || self.voters.contains(&id) => {
                return Err(ProposeError::MemberExists(id));
            }
            ConfChange::RemoveVoter(id) | ConfChange::UpdateMember(id)
                if !self.voters.contains(&id) =>
            {
                return Err(ProposeError::UnknownMember(id));
            }
            ConfChange::RemoveVoter(_) if self.voters.len() == 1 => {
                // The last voter cannot leave: nobody would be left to commit it.
                return Err(ProposeError::LastVoter);
            }
            _ => {}
        }
        let index = self.append_entry(Payload::Membership { change, context });
        self.bcast_append(SendWhen::NewEntries);
        Ok(index)
    }

    /// Asks for a membership change: proposed here on the leader (its refusal returned),
    /// sent to the leader from a follower (where a refusal is dropped and the change never
    /// applies). The driver recognises the change when it applies. A member that knows no
    /// leader asks every voter: it may be one the leader cannot reach (it moved to a new
    /// address, and this change tells the cluster), and only the leader acts on it.
    pub fn request_conf_change(
        &mut self,
        change: ConfChange,
        context: Vec<u8>,
    ) -> Result<(), ProposeError> {
        if self.role == Role::Leader {
            return self.propose_conf_change(change, context).map(|_| ());
        }
        let to: Vec<NodeId> = match self.leader {
            Some(leader) => vec![leader],
            None => self
                .voters
                .iter()
                .copied()
                .filter(|v| *v != self.id)
                .collect(),
        };
        for peer in to {
            let body = MessageBody::ProposeMembership {
                change,
                context: context.clone(),
            };
            self.send(peer, body);
        }
        Ok(())
    }

    /// Whether a membership change is in the log and not yet committed.
    pub fn membership_change_pending(&self) -> bool {
        self.membership.last_change_index() > self.hard_state.commit
    }

    /// Appends `e` to the log, taking in the membership change it may carry.
    pub(super) fn push_entry(&mut self, e: Entry) {
        let change = e.payload.membership().map(|(c, _)| c);
        if let Some(ConfChange::RemoveVoter(peer)) = change {
            if self.role == Role::Leader && peer != self.id {
                self.leaving.insert(peer, e.index);
            }
        }
        self.membership.appended(&e);
        self.log.push(e);
        if change.is_some() {
            self.membership_changed();
        }
    }

    /// The log lost its entries after `index`: so did the membership.
    pub(super) fn membership_truncated_after(&mut self, index: u64) {
        if self.membership.last_change_index() > index {
            self.membership.truncated_after(index);
            self.membership_changed();
        }
    }

    /// The voters moved: a leader starts or stops replicating to the members concerned
    /// (a new follower is probed from the leader's end; it answers where its log ends).
    fn membership_changed(&mut self) {
        self.voters = self.membership.voters();
        if self.role != Role::Leader {
            return;
        }
        let next = self.log.last_index() + 1;
        let (id, voters) = (self.id, self.voters.clone());
        // A member being removed is still sent the log, counted in no majority, until it
        // holds its removal and knows it committed: then it stops by itself.
        let leaving = &self.leaving;
        self.progress
            .retain(|peer, _| voters.contains(peer) || leaving.contains_key(peer));
        for v in voters.into_iter().filter(|v| *v != id) {
            self.progress
                .entry(v)
                .or_insert_with(|| Progress::new(next));
        }
        if self
            .lead_transferee
            .is_some_and(|t| !self.progress.contains_key(&t))
        {
            self.lead_transferee = None;
        }
        // A smaller quorum may commit what the old one had not yet.
        if self.maybe_commit() {
            self.bcast_append(SendWhen::NewEntriesOrCommit);
        }
    }

    /// Stops replicating to a removed member once it holds its removal and was told that it
    /// committed (or, with `gone`, once the removal committed and the member was not heard
    /// from for an election timeout: it is down, or stopped already).
    pub(super) fn maybe_forget_leaving(&mut self, peer: NodeId, gone: bool) {
        let Some(&index) = self.leaving.get(&peer) else {
            return;
        };
        if self.hard_state.commit < index {
            return;
        }
        let told = self
            .progress
            .get(&peer)
            .is_none_or(|pr| pr.match_index >= index && pr.sent_commit >= index);
        if told || gone {
            self.leaving.remove(&peer);
            self.progress.remove(&peer);
        }
    }

    /// A leader whose own removal committed hands over and steps down: the follower with the
    /// whole log campaigns at once; the others would elect one an election timeout later
    /// anyway. Called whenever the commit index moves on a leader.
    pub(super) fn maybe_leave_after_removal(&mut self) {
        if self.role != Role::Leader
            || self.voters.contains(&self.id)
            || self.membership.last_change_index() > self.hard_state.commit
        {
            return;
        }
        let last = self.log.last_index();
        // The removal is committed, so everything after it came from this leader's term:
        // a follower holding all of it can take over without losing an entry.
        let target = self
            .progress
            .iter()
            .filter(|(_, pr)| pr.match_index == last)
            .map(|(id, _)| *id)
            .min();
        // Followers must learn the final commit index first, or the new leader would wait
        // for its own no-op to commit what this leader already committed (safe, just slower).
        self.bcast_append(SendWhen::NewEntriesOrCommit);
        if let Some(to) = target {
            self.send(to, MessageBody::TimeoutNow);
        }
        let term = self.term();
        self.become_follower(term, None);
    }
}
