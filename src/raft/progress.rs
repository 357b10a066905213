//! What a leader knows about one follower's log, and how fast it may send to it
//! (etcd-io/raft's `tracker/progress.go`, `design.md`):
//! - **Probe**: the leader does not know where the follower's log matches; it sends one
//!   append at a time and waits for the answer (or a heartbeat response) before the next.
//! - **Replicate**: the follower matched; the leader streams appends optimistically, at most
//!   `max_inflight` messages ahead of the acknowledgements, so a slow or dead follower costs
//!   a bounded amount of memory and bandwidth.

use std::collections::VecDeque;

/// How the leader sends to a follower.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProgressState {
    /// One append at a time until the follower's log matches.
    Probe,
    /// Streaming, bounded by the in-flight window.
    Replicate,
    /// The follower needs the state, not the log (what it lacks was compacted away, or it
    /// has no configuration): nothing is sent until the driver reports the snapshot sent.
    Snapshot,
}

/// The leader's view of one follower.
#[derive(Debug, Clone)]
pub(super) struct Progress {
    /// Highest index known to match (durably) on the follower.
    /// Invariant: match_index < next_index.
    pub(super) match_index: u64,
    /// Index of the next entry to send.
    pub(super) next_index: u64,
    pub(super) state: ProgressState,
    /// In Probe: an append is out and unanswered.
    pub(super) probe_sent: bool,
    /// In Replicate: the last index of each unacknowledged append, oldest first.
    pub(super) inflight: VecDeque<u64>,
    /// Heard from since the last check-quorum round.
    pub(super) recent_active: bool,
    /// Highest heartbeat round the follower answered (confirms ReadIndex requests).
    pub(super) acked_seq: u64,
    /// Highest commit index an append told the follower about: an empty append that would
    /// tell it nothing new is not worth a message (and its acknowledgement).
    pub(super) sent_commit: u64,
}

impl Progress {
    /// A follower the new leader knows nothing about: probe from the leader's end.
    pub(super) fn new(next_index: u64) -> Progress {
        Progress {
            match_index: 0,
            next_index,
            state: ProgressState::Probe,
            probe_sent: false,
            inflight: VecDeque::new(),
            recent_active: false,
            acked_seq: 0,
            sent_commit: 0,
        }
    }

    /// Whether the leader must hold back appends to this follower for now.
    pub(super) fn is_paused(&self, max_inflight: usize) -> bool {
        match self.state {
            ProgressState::Probe => self.probe_sent,
            ProgressState::Replicate => self.inflight.len() >= max_inflight,
            ProgressState::Snapshot => true,
        }
    }

    /// Back to probing: the follower rejected an append or could not be reached.
    pub(super) fn become_probe(&mut self) {
        self.state = ProgressState::Probe;
        self.probe_sent = false;
        self.inflight.clear();
        self.next_index = self.match_index + 1;
    }

    /// The follower matched: stream from just after its match.
    pub(super) fn become_replicate(&mut self) {
        self.state = ProgressState::Replicate;
        self.probe_sent = false;
        self.inflight.clear();
        self.next_index = self.match_index + 1;
    }

    /// An append ending at `last` went out.
    pub(super) fn sent(&mut self, last: Option<u64>) {
        match self.state {
            ProgressState::Probe => self.probe_sent = true,
            ProgressState::Replicate => {
                if let Some(last) = last {
                    self.next_index = last + 1;
                    self.inflight.push_back(last);
                }
            }
            ProgressState::Snapshot => {}
        }
    }

    /// The follower acknowledged up to `index`; returns whether its match moved.
    pub(super) fn acknowledge(&mut self, index: u64) -> bool {
        let moved = index > self.match_index;
        if moved {
            self.match_index = index;
            self.probe_sent = false;
        }
        self.next_index = self.next_index.max(index + 1);
        while self.inflight.front().is_some_and(|last| *last <= index) {
            self.inflight.pop_front();
        }
        moved
    }

    /// The follower rejected an append after `rejected_index`; `hinted_next` is where the
    /// leader's search of the hint says to resume. Returns false for a stale rejection (one
    /// about an append the leader has already moved past), which must change nothing.
    pub(super) fn reject(&mut self, rejected_index: u64, hinted_next: u64) -> bool {
        match self.state {
            ProgressState::Replicate if rejected_index <= self.match_index => false,
            ProgressState::Probe if rejected_index + 1 != self.next_index => false,
            ProgressState::Snapshot => false,
            _ => {
                // Probe from strictly before the rejected append, never below what is known
                // to match: the follower's log has to be found again.
                self.state = ProgressState::Probe;
                self.inflight.clear();
                self.next_index = hinted_next.min(rejected_index).max(self.match_index + 1);
                self.probe_sent = false;
                true
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replicate_window_fills_and_drains_with_acknowledgements() {
        let mut p = Progress::new(1);
        p.acknowledge(0);
        p.become_replicate();
        for last in 1..=3 {
            assert!(!p.is_paused(3));
            p.sent(Some(last));
        }
        assert!(p.is_paused(3));
        assert_eq!(p.next_index, 4);
        assert!(p.acknowledge(2));
        assert!(!p.is_paused(3));
        assert_eq!(p.inflight.len(), 1);
    }

    #[test]
    fn probe_sends_one_at_a_time_and_ignores_stale_rejections() {
        let mut p = Progress::new(10);
        p.sent(Some(12));
        assert!(p.is_paused(256));
        assert!(!p.reject(5, 3), "not about the append that is out");
        assert!(p.reject(9, 4));
        assert_eq!(p.next_index, 4);
        assert!(!p.is_paused(256));
    }
}
