//! The safety properties of Raft's Figure 3, checked after every step of the simulation, one
//! file each, plus what the simulator itself must see at the end (no acknowledged write
//! lost, every member caught up, linearizable client histories).
//!
//! The checker keeps what it has seen across the whole run — leaders by term, every
//! (index, term) ever handed out, the applied sequence — so a member that crashed or was
//! overwritten cannot hide a violation that happened earlier.

mod election_safety;
mod leader_completeness;
mod log_matching;
mod state_machine_safety;

use pikv::raft::{Entry, NodeId, Payload};
use std::collections::{BTreeMap, HashMap};
use std::fmt;

/// An entry some member applied, and the term that member was in when it was first applied
/// (the entry was committed in that term or earlier).
#[derive(Debug, Clone)]
pub struct AppliedEntry {
    /// The entry.
    pub entry: Entry,
    /// The term of the first member seen applying it.
    pub known_in_term: u64,
}

/// What the checker has seen so far.
#[derive(Debug, Default)]
pub struct Checker {
    /// The leader seen in each term.
    leaders: BTreeMap<u64, NodeId>,
    /// Every (index, term) seen in a log: its payload and the term of the entry before it.
    registry: HashMap<(u64, u64), (Payload, u64)>,
    /// The applied sequence all members must agree on (position k holds index k + 1).
    pub applied: Vec<AppliedEntry>,
    /// Per (leader, term): how far the applied sequence has been checked against its log.
    completeness_checked: BTreeMap<(NodeId, u64), usize>,
}

impl Checker {
    /// Terms in which some member led.
    pub fn elections(&self) -> usize {
        self.leaders.len()
    }
}

/// A broken property, with what is needed to see why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Violation {
    /// Raft §5.2, Figure 3: at most one leader per term.
    ElectionSafety {
        term: u64,
        first: NodeId,
        second: NodeId,
    },
    /// Figure 3, §5.3: the same index and term mean the same entry and the same prefix.
    LogMatching {
        member: NodeId,
        index: u64,
        detail: String,
    },
    /// Figure 3, §5.4: a leader holds every entry committed in an earlier term.
    LeaderCompleteness {
        leader: NodeId,
        term: u64,
        index: u64,
        detail: String,
    },
    /// Figure 3, §5.4.3: no two members apply different entries at one index.
    StateMachineSafety {
        member: NodeId,
        index: u64,
        detail: String,
    },
    /// An entry was applied before a majority held it durably (the persistence rule).
    NotCommittedOnQuorum {
        index: u64,
        holders: usize,
        /// The smallest majority any configuration that could have committed it needs.
        quorum: usize,
    },
    /// The core broke its own invariants or the Ready contract.
    Member { member: NodeId, detail: String },
    /// After the faults healed the cluster did not converge.
    NoConvergence { detail: String },
    /// An acknowledged write is missing, or a member's state differs from the log.
    LostWrite { detail: String },
    /// The client history of a key is not linearizable.
    NotLinearizable { key: u8, detail: String },
    /// The core panicked.
    Panic { detail: String },
    /// A member campaigned in a run where nothing justified an election.
    Election { member: NodeId, detail: String },
    /// Cluster time went back or jumped (requirement 6, bad clocks).
    Clock { member: NodeId, detail: String },
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Violation::ElectionSafety {
                term,
                first,
                second,
            } => write!(
                f,
                "election safety: members {first} and {second} both led term {term}"
            ),
            Violation::LogMatching {
                member,
                index,
                detail,
            } => write!(f, "log matching: member {member} at index {index}: {detail}"),
            Violation::LeaderCompleteness {
                leader,
                term,
                index,
                detail,
            } => write!(
                f,
                "leader completeness: leader {leader} of term {term} at committed index {index}: {detail}"
            ),
            Violation::StateMachineSafety {
                member,
                index,
                detail,
            } => write!(
                f,
                "state machine safety: member {member} at index {index}: {detail}"
            ),
            Violation::NotCommittedOnQuorum {
                index,
                holders,
                quorum,
            } => write!(
                f,
                "entry {index} applied while only {holders} disks held it (a majority needs {quorum})"
            ),
            Violation::Member { member, detail } => write!(f, "member {member}: {detail}"),
            Violation::NoConvergence { detail } => write!(f, "no convergence: {detail}"),
            Violation::LostWrite { detail } => write!(f, "lost write: {detail}"),
            Violation::NotLinearizable { key, detail } => {
                write!(f, "key {key} not linearizable: {detail}")
            }
            Violation::Panic { detail } => write!(f, "panic: {detail}"),
            Violation::Clock { member, detail } => write!(f, "clock: member {member}: {detail}"),
            Violation::Election { member, detail } => {
                write!(f, "needless election: member {member} is {detail}")
            }
        }
    }
}
