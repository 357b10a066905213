//! What the Raft core persists and exchanges: entries, the hard state and the messages between
//! members. Fixed-width integers only, since these reach the disk and the wire on 32- and
//! 64-bit boards; every type derives bincode's `Encode`/`Decode`.
//!
//! Everything here may come from a peer, so nothing about it is trusted: the core validates
//! each message (sender, term, indexes, entry order) and ignores what does not fit.

use bincode::{Decode, Encode};

/// A member id (etcd's 64-bit member id). 0 means "nobody".
pub type NodeId = u64;

/// One log entry.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub struct Entry {
    /// The term the entry was proposed in.
    pub term: u64,
    /// Its position in the log (first entry is 1).
    pub index: u64,
    /// What the entry carries.
    pub payload: Payload,
}

/// The content of an entry.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub enum Payload {
    /// The no-op a new leader appends to commit entries of earlier terms (Raft §5.4.2).
    Empty,
    /// An encoded state-machine command.
    Command(Vec<u8>),
    /// A command a follower forwarded to the leader, tagged so that the follower recognises
    /// its own request when it applies the entry and can answer its client (the follower
    /// never learns the index the leader gave it). Last variant: entries written before it
    /// existed decode unchanged.
    Forwarded {
        /// The member whose client asked.
        origin: NodeId,
        /// That member's request id.
        request: u64,
        /// The encoded command.
        command: Vec<u8>,
    },
    /// A change of the voters, one member at a time (Raft thesis §4.1): it takes effect on
    /// every member as soon as the member appends it, committed or not. `context` is the
    /// driver's (the member's name and URLs); the core only reads `change`. Last variant:
    /// entries written before it existed decode unchanged.
    Membership {
        /// Whom it adds or removes.
        change: ConfChange,
        /// What the driver records with it.
        context: Vec<u8>,
    },
}

/// One membership change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Encode, Decode)]
pub enum ConfChange {
    /// The member becomes a voter.
    AddVoter(NodeId),
    /// The member stops being a voter (and leaves the cluster).
    RemoveVoter(NodeId),
    /// The voters stay; the driver's record of the member changes (its peer URLs, in the
    /// context). Goes through the log like the others so every member readdresses it at
    /// the same point. Last variant: entries written before it decode unchanged.
    UpdateMember(NodeId),
}

impl ConfChange {
    /// `voters` (sorted, without duplicates) after this change.
    pub fn applied_to(self, voters: &mut Vec<NodeId>) {
        match self {
            ConfChange::AddVoter(id) => {
                if let Err(at) = voters.binary_search(&id) {
                    voters.insert(at, id);
                }
            }
            ConfChange::RemoveVoter(id) => voters.retain(|v| *v != id),
            ConfChange::UpdateMember(_) => {}
        }
    }
}

impl Payload {
    /// The encoded state-machine command, if the entry carries one.
    pub fn command(&self) -> Option<&[u8]> {
        match self {
            Payload::Empty | Payload::Membership { .. } => None,
            Payload::Command(c) | Payload::Forwarded { command: c, .. } => Some(c),
        }
    }

    /// The membership change the entry carries, with its driver context.
    pub fn membership(&self) -> Option<(ConfChange, &[u8])> {
        match self {
            Payload::Membership { change, context } => Some((*change, context)),
            _ => None,
        }
    }

    /// The member and request a forwarded command came from.
    pub fn origin(&self) -> Option<(NodeId, u64)> {
        match self {
            Payload::Forwarded {
                origin, request, ..
            } => Some((*origin, *request)),
            _ => None,
        }
    }
}

/// The state that must be durable before a vote is answered or an entry acknowledged.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Encode, Decode)]
pub struct HardState {
    /// Current term.
    pub term: u64,
    /// Who this member voted for in `term` (0 = nobody).
    pub vote: NodeId,
    /// Highest index known committed.
    pub commit: u64,
}

/// One message between members. `term` is the sender's current term, except in a pre-vote
/// request (the term the sender would campaign in) and a granted pre-vote response (that
/// same term, echoed), which move nobody's term (Raft thesis §9.6).
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub struct Message {
    /// The sender.
    pub from: NodeId,
    /// The receiver.
    pub to: NodeId,
    /// See the type's docs.
    pub term: u64,
    /// What the message says.
    pub body: MessageBody,
}

/// The kinds of message. Requests and their responses sit side by side.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub enum MessageBody {
    /// "Would you vote for me if I campaigned?" Sent before bumping the term, so that a member
    /// that cannot win (e.g. one returning from a partition) does not disrupt the cluster.
    PreVote {
        /// Index of the sender's last entry.
        last_index: u64,
        /// Term of the sender's last entry.
        last_term: u64,
    },
    /// The answer to [`MessageBody::PreVote`].
    PreVoteResponse {
        /// Whether the pre-vote is granted.
        granted: bool,
    },
    /// A vote request of a candidate (Raft §5.2, §5.4.1).
    Vote {
        /// Index of the candidate's last entry.
        last_index: u64,
        /// Term of the candidate's last entry.
        last_term: u64,
        /// The campaign was asked for by the leader (leadership transfer): voters grant it
        /// even though they heard from that leader within their lease.
        transfer: bool,
    },
    /// The answer to [`MessageBody::Vote`]; a grant is only sent once the vote is durable.
    VoteResponse {
        /// Whether the vote is granted.
        granted: bool,
        /// The voter's cluster time if a leader ever set it (0: its clock is provisional,
        /// or the vote is refused): a candidate whose own clock is provisional leads on
        /// the newest of its voters' times, not on its own wall clock.
        clock: u64,
    },
    /// The leader's AppendEntries (Raft §5.3).
    Append {
        /// Index of the entry just before `entries`.
        prev_index: u64,
        /// Term of that entry.
        prev_term: u64,
        /// Entries to append, consecutive from `prev_index + 1` (may be empty).
        entries: Vec<Entry>,
        /// The leader's commit index.
        commit: u64,
        /// The leader's cluster time, as in [`MessageBody::Heartbeat`]: a member that
        /// received entries from a leader knows that leader's time, so that it cannot lead
        /// later on a time of its own (a fresh member's wall clock, days off).
        clock: u64,
    },
    /// The follower's log matches the leader's up to `match_index`, durably.
    AppendAccepted {
        /// The last index known to match the leader's log.
        match_index: u64,
    },
    /// The follower's log does not hold the leader's entry at `rejected_index`. The hint lets
    /// the leader skip a whole term per round trip instead of one entry (Raft §5.3, the
    /// optimisation after Figure 7; the thesis' conflictTerm/conflictIndex).
    AppendRejected {
        /// The `prev_index` of the rejected append.
        rejected_index: u64,
        /// First index of `hint_term` in the follower's log, or, when `hint_term` is 0, the
        /// follower's last index (its log is shorter than `rejected_index`).
        hint_index: u64,
        /// The term of the follower's entry at `rejected_index` (0: it has no such entry).
        hint_term: u64,
    },
    /// The leader's heartbeat: it asserts leadership and confirms ReadIndex rounds.
    Heartbeat {
        /// The commit index the follower may take: the leader's commit, capped by what the
        /// leader knows the follower holds.
        commit: u64,
        /// The leader's heartbeat round, echoed back to confirm ReadIndex requests.
        seq: u64,
        /// The leader's cluster time (opaque to the core: the driver sets it with
        /// [`crate::raft::Raft::set_clock`]), so followers count TTLs on the leader's clock.
        clock: u64,
    },
    /// The answer to a heartbeat.
    HeartbeatResponse {
        /// The round being answered.
        seq: u64,
    },
    /// A follower asks the leader for a read index on behalf of its client.
    ReadIndex {
        /// The follower's request context, echoed in the answer.
        ctx: u64,
    },
    /// The leader's answer to [`MessageBody::ReadIndex`], sent once a quorum confirmed it
    /// was still the leader.
    ReadIndexResponse {
        /// The request context.
        ctx: u64,
        /// The read is linearizable once the asker applied this index.
        index: u64,
    },
    /// The leader tells the transfer target to campaign now, skipping pre-vote.
    TimeoutNow,
    /// A follower forwards its client's command to the leader, which appends it as a
    /// [`Payload::Forwarded`] entry. Not answered: the follower answers its client when it
    /// applies the entry, or times out (a proposal lost with a leader is never retried
    /// silently, since it might still commit).
    Propose {
        /// The follower's request id, echoed in the entry.
        request: u64,
        /// The encoded command.
        command: Vec<u8>,
    },
    /// A member that does not know its cluster's configuration (it joined with an empty
    /// data dir) answers appends with this: the leader sends it the state instead of the
    /// log, since the log alone does not say who the first voters were.
    SnapshotWanted,
    /// A follower forwards its client's membership change to the leader, which proposes it
    /// (see [`crate::raft::Raft::propose_conf_change`]). Not answered, like
    /// [`MessageBody::Propose`]: a change is unique (ids are never reused), so the follower
    /// recognises it when it applies. Last variant: older messages decode unchanged.
    ProposeMembership {
        /// The change.
        change: ConfChange,
        /// The driver's context (the member's record for an add).
        context: Vec<u8>,
    },
}

/// What a follower installs from a leader's snapshot, besides the state itself (which the
/// driver transfers and installs: the core only learns where it ends).
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub struct SnapshotMeta {
    /// The last index the snapshot's state includes.
    pub index: u64,
    /// The term of the entry at `index`.
    pub term: u64,
    /// The voters as of `index`.
    pub voters: Vec<NodeId>,
}

impl MessageBody {
    /// A short name for traces and logs.
    pub fn kind(&self) -> &'static str {
        match self {
            MessageBody::PreVote { .. } => "PreVote",
            MessageBody::PreVoteResponse { .. } => "PreVoteResponse",
            MessageBody::Vote { .. } => "Vote",
            MessageBody::VoteResponse { .. } => "VoteResponse",
            MessageBody::Append { .. } => "Append",
            MessageBody::AppendAccepted { .. } => "AppendAccepted",
            MessageBody::AppendRejected { .. } => "AppendRejected",
            MessageBody::Heartbeat { .. } => "Heartbeat",
            MessageBody::HeartbeatResponse { .. } => "HeartbeatResponse",
            MessageBody::ReadIndex { .. } => "ReadIndex",
            MessageBody::ReadIndexResponse { .. } => "ReadIndexResponse",
            MessageBody::TimeoutNow => "TimeoutNow",
            MessageBody::Propose { .. } => "Propose",
            MessageBody::SnapshotWanted => "SnapshotWanted",
            MessageBody::ProposeMembership { .. } => "ProposeMembership",
        }
    }
}
