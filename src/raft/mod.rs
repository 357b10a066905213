//! The Raft core: pure and deterministic. No clocks, files, sockets, threads or global
//! randomness live here; inputs are method calls, outputs come out in [`Ready`].
//!
//! This version implements the single-voter configuration that issue 4 needs (a member that
//! is the whole cluster): it elects itself on start, appends the leader's no-op, and commits
//! every entry as soon as it is durable. The shape (hard state, unstable tail, Ready/advance)
//! is the one multi-member replication extends.

pub mod message;
pub mod prng;
pub mod quorum;
pub mod ready;

pub use message::{Entry, HardState, NodeId, Payload};
pub use ready::{Persisted, Ready};

use std::fmt;

/// Where a restarted member resumes (read from storage).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct InitialState {
    /// The durable hard state.
    pub hard_state: HardState,
    /// Index and term of the last durable log entry (0, 0 for an empty log).
    pub last_index: u64,
    /// Term of the last durable entry.
    pub last_term: u64,
    /// Highest applied index.
    pub applied: u64,
}

/// Why a proposal was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProposeError {
    /// This member is not the leader.
    NotLeader,
}

impl fmt::Display for ProposeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProposeError::NotLeader => write!(f, "not the leader"),
        }
    }
}

/// Role of this member.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Follows a leader (or waits for one).
    Follower,
    /// Leads the cluster.
    Leader,
}

/// The Raft state machine of one member.
#[derive(Debug)]
pub struct Raft {
    id: NodeId,
    voters: Vec<NodeId>,
    role: Role,
    hard_state: HardState,
    /// The hard state last handed out in a Ready (to know when it changed).
    hard_state_sent: HardState,
    // Invariant: applied <= durable_index <= last_index; commit <= last_index.
    last_index: u64,
    last_term: u64,
    durable_index: u64,
    applied: u64,
    /// Highest index already handed out for applying.
    applying: u64,
    /// Entries proposed but not yet handed out in a Ready.
    unsent: Vec<Entry>,
    /// Entries handed out but not yet reported durable (kept to hand out for applying).
    in_flight: Vec<Entry>,
}

impl Raft {
    /// A member resuming from `initial`, in a cluster whose voters are `voters`.
    pub fn new(id: NodeId, voters: Vec<NodeId>, initial: InitialState) -> Raft {
        let mut raft = Raft {
            id,
            voters,
            role: Role::Follower,
            hard_state: initial.hard_state,
            hard_state_sent: initial.hard_state,
            last_index: initial.last_index,
            last_term: initial.last_term,
            durable_index: initial.last_index,
            applied: initial.applied,
            applying: initial.applied,
            unsent: Vec::new(),
            in_flight: Vec::new(),
        };
        if raft.voters == [id] {
            raft.become_leader();
        }
        raft
    }

    /// This member's id.
    pub fn id(&self) -> NodeId {
        self.id
    }

    /// Current role.
    pub fn role(&self) -> Role {
        self.role
    }

    /// Current term.
    pub fn term(&self) -> u64 {
        self.hard_state.term
    }

    /// The leader's id, if known.
    pub fn leader(&self) -> Option<NodeId> {
        (self.role == Role::Leader).then_some(self.id)
    }

    /// Highest committed index.
    pub fn commit_index(&self) -> u64 {
        self.hard_state.commit
    }

    /// Highest applied index.
    pub fn applied_index(&self) -> u64 {
        self.applied
    }

    /// Highest index in the log (durable or not).
    pub fn last_index(&self) -> u64 {
        self.last_index
    }

    // A single voter wins its own election at once (Raft §5.2) and appends a no-op so that
    // entries of earlier terms commit under the new term (§5.4.2).
    fn become_leader(&mut self) {
        self.hard_state.term += 1;
        self.hard_state.vote = self.id;
        self.role = Role::Leader;
        self.append(Payload::Empty);
    }

    fn append(&mut self, payload: Payload) -> u64 {
        self.last_index += 1;
        self.last_term = self.hard_state.term;
        self.unsent.push(Entry {
            term: self.hard_state.term,
            index: self.last_index,
            payload,
        });
        self.last_index
    }

    /// Appends a command to the log; returns its index.
    pub fn propose(&mut self, data: Vec<u8>) -> Result<u64, ProposeError> {
        if self.role != Role::Leader {
            return Err(ProposeError::NotLeader);
        }
        Ok(self.append(Payload::Command(data)))
    }

    /// The index a linearizable read must wait to be applied: the leader's commit index,
    /// including what is proposed and will commit (a single voter needs no heartbeat round).
    pub fn read_index(&self) -> Result<u64, ProposeError> {
        if self.role != Role::Leader {
            return Err(ProposeError::NotLeader);
        }
        Ok(self.hard_state.commit)
    }

    /// The work to do now, if any. Handing out a Ready moves its entries in flight.
    pub fn ready(&mut self) -> Option<Ready> {
        let entries = std::mem::take(&mut self.unsent);
        let mut committed_entries = Vec::new();
        if let Some(last) = entries.last() {
            // Quorum of one: what this batch makes durable is committed by it.
            if self.voters == [self.id] {
                self.hard_state.commit = last.index;
            }
        }
        self.in_flight.extend(entries.iter().cloned());
        for e in &self.in_flight {
            if e.index > self.applying && e.index <= self.hard_state.commit {
                committed_entries.push(e.clone());
            }
        }
        if let Some(last) = committed_entries.last() {
            self.applying = last.index;
        }
        let hard_state = (self.hard_state != self.hard_state_sent).then_some(self.hard_state);
        self.hard_state_sent = self.hard_state;
        let ready = Ready {
            hard_state,
            entries,
            committed_entries,
        };
        (!ready.is_empty()).then_some(ready)
    }

    /// The driver made the last Ready durable and applied.
    pub fn advance(&mut self, persisted: Persisted) {
        debug_assert!(persisted.durable_index <= self.last_index);
        self.durable_index = self.durable_index.max(persisted.durable_index);
        self.applied = self.applied.max(persisted.applied_index);
        let durable = self.durable_index;
        self.in_flight.retain(|e| e.index > durable);
        self.check_invariants();
    }

    /// The driver could not persist the last Ready (e.g. the disk is full): forget the
    /// entries that were not made durable, as if they had never been proposed. Safe because
    /// nothing about them left this member.
    pub fn persist_failed(&mut self) {
        let durable = self.durable_index;
        self.in_flight.clear();
        self.unsent.retain(|e| e.index <= durable);
        self.last_index = durable;
        self.last_term = self.hard_state.term;
        self.hard_state.commit = self.hard_state.commit.min(durable);
        self.applying = self.applied;
        // The failed Ready's hard state was not saved either: hand it out again.
        self.hard_state_sent = HardState::default();
    }

    fn check_invariants(&self) {
        debug_assert!(
            self.applied <= self.durable_index,
            "applied({}) > durable({})",
            self.applied,
            self.durable_index
        );
        debug_assert!(self.durable_index <= self.last_index);
        debug_assert!(self.hard_state.commit <= self.last_index);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn persist_all(raft: &mut Raft) -> Ready {
        let rd = raft.ready().unwrap_or_default();
        let durable = rd.entries.last().map_or(raft.last_index(), |e| e.index);
        let applied = rd
            .committed_entries
            .last()
            .map_or(raft.applied_index(), |e| e.index);
        raft.advance(Persisted {
            durable_index: durable,
            applied_index: applied,
        });
        rd
    }

    #[test]
    fn single_voter_elects_itself_and_commits_its_noop_with_the_append() {
        let mut raft = Raft::new(1, vec![1], InitialState::default());
        assert_eq!(raft.role(), Role::Leader);
        let rd = persist_all(&mut raft);
        assert_eq!(
            rd.hard_state.map(|h| (h.term, h.vote, h.commit)),
            Some((1, 1, 1))
        );
        assert_eq!(rd.entries.len(), 1);
        assert_eq!(rd.committed_entries, rd.entries);
        assert!(raft.ready().is_none(), "nothing to do when idle");
    }

    #[test]
    fn proposals_batch_into_one_ready_in_order() {
        let mut raft = Raft::new(1, vec![1], InitialState::default());
        persist_all(&mut raft);
        let a = raft.propose(b"a".to_vec()).unwrap();
        let b = raft.propose(b"b".to_vec()).unwrap();
        assert_eq!((a, b), (2, 3));
        let rd = persist_all(&mut raft);
        let idx: Vec<u64> = rd.committed_entries.iter().map(|e| e.index).collect();
        assert_eq!(idx, vec![2, 3]);
        assert_eq!(raft.applied_index(), 3);
    }

    #[test]
    fn restart_resumes_in_a_new_term_after_the_durable_log() {
        let initial = InitialState {
            hard_state: HardState {
                term: 4,
                vote: 1,
                commit: 9,
            },
            last_index: 9,
            last_term: 4,
            applied: 9,
        };
        let mut raft = Raft::new(1, vec![1], initial);
        assert_eq!(raft.term(), 5);
        let rd = persist_all(&mut raft);
        assert_eq!(rd.entries[0].index, 10);
        assert_eq!(rd.entries[0].term, 5);
    }

    #[test]
    fn a_failed_persist_forgets_the_batch() {
        let mut raft = Raft::new(1, vec![1], InitialState::default());
        persist_all(&mut raft);
        raft.propose(b"x".to_vec()).unwrap();
        let rd = raft.ready().unwrap();
        assert_eq!(rd.entries[0].index, 2);
        raft.persist_failed();
        assert_eq!(raft.last_index(), 1);
        assert_eq!(raft.propose(b"y".to_vec()).unwrap(), 2);
        let rd = persist_all(&mut raft);
        assert_eq!(rd.committed_entries.len(), 1);
        assert!(rd.hard_state.is_some());
    }
}
