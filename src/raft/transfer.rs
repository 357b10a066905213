//! Leadership transfer (Raft thesis §3.10), used when a leader shuts down gracefully: the
//! leader stops taking proposals, brings the target's log up to date, and sends it
//! TimeoutNow; the target campaigns at once, skipping pre-vote, and its vote requests say
//! so, so that voters grant them within their lease. If the target has not taken over
//! within an election timeout, the leader gives up and takes proposals again.

use super::message::{MessageBody, NodeId};
use super::replication::SendWhen;
use super::{ProposeError, Raft, Role};

impl Raft {
    pub(super) fn start_transfer(&mut self, to: NodeId) -> Result<(), ProposeError> {
        if self.role != Role::Leader {
            return Err(ProposeError::NotLeader);
        }
        if to == self.id || self.lead_transferee == Some(to) {
            return Ok(());
        }
        if !self.voters.contains(&to) || !self.progress.contains_key(&to) {
            return Err(ProposeError::UnknownMember(to));
        }
        self.lead_transferee = Some(to);
        // A full election timeout to finish (the leader's check-quorum tick abandons it).
        self.election_elapsed = 0;
        if !self.maybe_send_timeout_now(to) {
            self.maybe_send_append(to, SendWhen::Always);
        }
        Ok(())
    }

    /// Sends TimeoutNow to the transfer target once its log matches ours; returns whether
    /// it went out.
    pub(super) fn maybe_send_timeout_now(&mut self, to: NodeId) -> bool {
        if self.lead_transferee != Some(to) {
            return false;
        }
        let caught_up = self
            .progress
            .get(&to)
            .is_some_and(|pr| pr.match_index == self.log.last_index());
        if caught_up {
            self.send(to, MessageBody::TimeoutNow);
        }
        caught_up
    }
}
