//! The Raft core: pure and deterministic. No clocks, files, sockets, threads or global
//! randomness live here: inputs are method calls ([`Raft::step`] for peer messages,
//! [`Raft::tick`] for time, [`Raft::propose`], [`Raft::read_index`],
//! [`Raft::transfer_leader`]), outputs come out in a [`Ready`] (see its docs for the order
//! the driver must follow), and the only randomness is the seed in [`Config`].
//!
//! What it implements (Raft §5, thesis chapters 3, 6, 9):
//! - roles Follower / PreCandidate / Candidate / Leader, a randomized election timeout in
//!   `[election_ticks, 2 * election_ticks)`, heartbeats every `heartbeat_ticks`;
//! - pre-vote (a member asks before it bumps its term) and check-quorum (a leader that has
//!   not heard from a quorum within an election timeout steps down); a member that heard
//!   from a leader within its lease ignores (pre-)votes, so a member returning from a
//!   partition cannot depose a healthy leader;
//! - log replication with conflict hints for fast backtracking, per-follower progress
//!   (probe / replicate) with a bounded number of in-flight appends, commit by counting
//!   only entries of the leader's term (§5.4.2), a no-op appended on election;
//! - ReadIndex (§6.4): the leader confirms its leadership with a heartbeat round to a
//!   quorum; followers forward the request to the leader;
//! - leadership transfer (§3.10): the leader stops taking proposals, brings the target up to
//!   date and sends it TimeoutNow; the target campaigns at once, skipping pre-vote;
//! - membership changes one voter at a time, in effect once appended (thesis §4.1, see
//!   `membership.rs`); a leader that removed itself hands over once the removal commits;
//! - snapshots (§7, `snapshot.rs`): a follower behind the compacted log, or one that joined
//!   without a configuration, gets the state; the driver moves it, the core learns where
//!   it ends ([`Raft::take_snapshot_requests`], [`Raft::snapshot_sent`], [`Raft::restore`]).
//!
//! Durability is the driver's, and the core never assumes it: a vote is granted and an
//! entry acknowledged only in messages released after [`Raft::advance`] reported the state
//! they depend on durable. A leader counts its own entries towards a commit the same way.
//!
//! The log lives in memory (a `Vec` after a compacted prefix, [`Raft::compact`]). A single
//! voter keeps the fast path it had before: it elects itself on start and commits each
//! batch as it hands it out, the driver applying it in the same durable commit.

mod election;
mod log;
mod membership;
pub mod message;
pub mod prng;
mod progress;
pub mod quorum;
mod read_index;
pub mod ready;
mod replication;
mod snapshot;
#[cfg(test)]
mod tests;
mod transfer;

pub use message::{
    ConfChange, Entry, HardState, Message, MessageBody, NodeId, Payload, SnapshotMeta,
};
pub use prng::Prng;
pub use progress::ProgressState;
pub use ready::{Persisted, ReadState, Ready};

use log::RaftLog;
use membership::Membership;
use progress::Progress;
use read_index::ReadRequest;
use replication::SendWhen;
use std::collections::{BTreeMap, VecDeque};
use std::fmt;

/// How a member times its elections and paces its replication.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Ticks without hearing from a leader before a follower campaigns (the timeout is
    /// drawn from `[election_ticks, 2 * election_ticks)`); also the leader's lease and the
    /// check-quorum period. At least `heartbeat_ticks + 1`.
    pub election_ticks: u32,
    /// Ticks between a leader's heartbeats. At least 1.
    pub heartbeat_ticks: u32,
    /// Seeds the election-timeout PRNG (mixed with the member id, so members given the same
    /// seed still draw different timeouts).
    pub seed: u64,
    /// Unacknowledged append messages a leader keeps in flight to a follower it replicates
    /// to. At least 1.
    pub max_inflight_msgs: usize,
    /// Entries in one append message. At least 1.
    pub max_entries_per_msg: usize,
    /// Test only: a safety rule switched off, so that the simulator can show it catches
    /// what follows. `None` everywhere else.
    #[doc(hidden)]
    pub broken_rule: Option<BrokenRule>,
}

/// A safety rule the simulator may switch off (see [`Config::broken_rule`]).
#[doc(hidden)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BrokenRule {
    /// Membership changes are taken while another is uncommitted, and by a leader that has
    /// not committed an entry of its term.
    ManyMembershipChanges,
}

impl Default for Config {
    /// etcd's defaults in ticks of 100 ms: heartbeat 100 ms, election timeout 1000 ms.
    fn default() -> Config {
        Config {
            election_ticks: 10,
            heartbeat_ticks: 1,
            seed: 0,
            max_inflight_msgs: 256,
            max_entries_per_msg: 64,
            broken_rule: None,
        }
    }
}

impl Config {
    // Out-of-range values are raised to the nearest that works rather than refused: they
    // come from pikv's own flag handling, and a timer of 0 ticks would mean "never".
    fn sanitized(&self) -> Config {
        let heartbeat_ticks = self.heartbeat_ticks.max(1);
        Config {
            election_ticks: self.election_ticks.max(heartbeat_ticks + 1),
            heartbeat_ticks,
            seed: self.seed,
            max_inflight_msgs: self.max_inflight_msgs.max(1),
            max_entries_per_msg: self.max_entries_per_msg.max(1),
            broken_rule: self.broken_rule,
        }
    }
}

/// Where a restarted member resumes (read from storage).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InitialState {
    /// The durable hard state.
    pub hard_state: HardState,
    /// Highest applied index. Entries after it must be in `entries`.
    pub applied: u64,
    /// Index of the last entry not passed in `entries` (compacted away, or applied and left
    /// on disk); 0 when `entries` starts at index 1.
    pub compacted_index: u64,
    /// Term of the entry at `compacted_index` (0 for index 0).
    pub compacted_term: u64,
    /// The durable entries after `compacted_index`, in index order, up to the last one.
    pub entries: Vec<Entry>,
}

/// Why a request was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProposeError {
    /// This member is not the leader.
    NotLeader,
    /// No leader is known, so a read cannot be forwarded.
    NoLeader,
    /// A leadership transfer is under way: the leader takes no proposals until it ends.
    TransferInProgress,
    /// The member named is not a voter of this cluster.
    UnknownMember(NodeId),
    /// A forwarded request this leader has already appended.
    Duplicate,
    /// A membership change is not committed yet (or this new leader has not committed an
    /// entry of its term yet): one change at a time.
    MembershipChangePending,
    /// The member to add is a voter already.
    MemberExists(NodeId),
    /// The only voter cannot be removed.
    LastVoter,
}

/// How many forwarded requests a leader remembers to drop duplicates.
const FORWARDED_WINDOW: usize = 1024;

impl fmt::Display for ProposeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProposeError::NotLeader => write!(f, "not the leader"),
            ProposeError::NoLeader => write!(f, "no leader is known"),
            ProposeError::TransferInProgress => write!(f, "leadership transfer in progress"),
            ProposeError::UnknownMember(id) => write!(f, "member {id:x} is not a voter"),
            ProposeError::Duplicate => write!(f, "request already proposed"),
            ProposeError::MembershipChangePending => {
                write!(f, "another membership change is in progress")
            }
            ProposeError::MemberExists(id) => write!(f, "member {id:x} is a voter already"),
            ProposeError::LastVoter => write!(f, "the last voter cannot be removed"),
        }
    }
}

/// Role of this member.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Follows a leader (or waits for one).
    Follower,
    /// Asks for pre-votes without bumping its term.
    PreCandidate,
    /// Campaigns in a new term.
    Candidate,
    /// Leads the cluster.
    Leader,
}

/// The Ready handed out and not yet reported.
#[derive(Debug, Clone, Copy)]
struct InFlight {
    /// Index and term of its last entry: what becomes durable when it is reported.
    last_entry: Option<(u64, u64)>,
}

/// The Raft state machine of one member.
#[derive(Debug)]
pub struct Raft {
    id: NodeId,
    /// Sorted, without duplicates: those of the newest configuration in the log.
    voters: Vec<NodeId>,
    /// Where `voters` comes from.
    membership: Membership,
    /// A leader's followers being removed, with the index of their removal: still sent the
    /// log until they know they are out (see `maybe_forget_leaving`).
    leaving: BTreeMap<NodeId, u64>,
    /// Followers a leader found needing a snapshot, for the driver.
    snapshot_requests: Vec<NodeId>,
    config: Config,
    prng: Prng,
    role: Role,
    hard_state: HardState,
    /// The hard state last handed out in a Ready (to know when it changed).
    hard_state_sent: HardState,
    leader: Option<NodeId>,
    log: RaftLog,
    // Invariant: applied <= applying <= commit <= last_index.
    /// Highest index handed out for applying.
    applying: u64,
    applied: u64,
    election_elapsed: u32,
    heartbeat_elapsed: u32,
    /// This term's election timeout, in [election_ticks, 2 * election_ticks).
    randomized_timeout: u32,
    /// (Pre-)votes received in the current campaign.
    votes: BTreeMap<NodeId, bool>,
    /// The leader's view of each other voter (empty unless leader).
    progress: BTreeMap<NodeId, Progress>,
    /// The member leadership is being handed to.
    lead_transferee: Option<NodeId>,
    /// The leader's heartbeat round; ReadIndex requests wait for a quorum to echo theirs.
    heartbeat_seq: u64,
    /// ReadIndex requests waiting for their heartbeat round, oldest first.
    pending_reads: VecDeque<ReadRequest>,
    /// ReadIndex requests that arrived before the leader committed an entry of its term.
    reads_awaiting_commit: Vec<(NodeId, u64)>,
    read_states: Vec<ReadState>,
    /// The cluster time this member sends in its heartbeats as leader (the driver's).
    clock: u64,
    /// Whether `clock` was ever set by a leader (this member's or another's): only such a
    /// time goes into vote answers.
    clock_established: bool,
    /// The highest cluster time a leader's heartbeat carried.
    leader_clock: u64,
    /// Forwarded requests this leader appended in its term, oldest first (bounded): a
    /// duplicated `Propose` must not append the command twice.
    forwarded_seen: VecDeque<(NodeId, u64)>,
    /// The same requests, for lookup.
    forwarded_set: std::collections::BTreeSet<(NodeId, u64)>,
    /// Messages that may go now.
    msgs: Vec<Message>,
    /// A broadcast of appends asked for since the driver last took messages: proposals and
    /// commit advances of one driver pass share one append per follower (sent at once, a
    /// pass of 20 proposals sent 20 single-entry appends to each follower, each acknowledged
    /// and each ack moving the commit index on its own).
    pending_bcast: Option<replication::SendWhen>,
    /// Messages that depend on state not yet handed out in a Ready.
    msgs_after_persist: Vec<Message>,
    /// Messages that depend on the Ready in flight.
    msgs_after_inflight: Vec<Message>,
    in_flight: Option<InFlight>,
}

impl Raft {
    /// A member resuming from `initial`, in a cluster whose voters were `voters` at
    /// `initial.applied` (membership changes in `initial.entries` after it take effect on
    /// top). A single voter (`voters == [id]`) elects itself at once.
    pub fn new(id: NodeId, voters: Vec<NodeId>, initial: InitialState, config: &Config) -> Raft {
        let membership = Membership::new(voters, initial.applied, &initial.entries);
        let voters = membership.voters();
        let config = config.sanitized();
        let log = RaftLog::new(
            initial.compacted_index,
            initial.compacted_term,
            initial.entries,
        );
        let mut hard_state = initial.hard_state;
        // Storage checked this on recovery; never let a commit point past the log anyway.
        hard_state.commit = hard_state.commit.min(log.last_index());
        let applied = initial.applied.min(hard_state.commit);
        let prng = Prng::new(config.seed ^ id.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let mut raft = Raft {
            id,
            voters,
            membership,
            leaving: BTreeMap::new(),
            snapshot_requests: Vec::new(),
            config,
            prng,
            role: Role::Follower,
            hard_state,
            hard_state_sent: hard_state,
            leader: None,
            log,
            applying: applied,
            applied,
            election_elapsed: 0,
            heartbeat_elapsed: 0,
            randomized_timeout: 0,
            votes: BTreeMap::new(),
            progress: BTreeMap::new(),
            lead_transferee: None,
            heartbeat_seq: 0,
            pending_reads: VecDeque::new(),
            reads_awaiting_commit: Vec::new(),
            read_states: Vec::new(),
            clock: 0,
            clock_established: false,
            leader_clock: 0,
            forwarded_seen: VecDeque::new(),
            forwarded_set: std::collections::BTreeSet::new(),
            msgs: Vec::new(),
            pending_bcast: None,
            msgs_after_persist: Vec::new(),
            msgs_after_inflight: Vec::new(),
            in_flight: None,
        };
        raft.reset_timers();
        if raft.is_single_voter() {
            // A single voter wins its own election at once (Raft §5.2). Its vote needs no
            // durability first: nothing of this term leaves the member before the first
            // batch, which carries the new term, is durable.
            raft.hard_state.term += 1;
            raft.hard_state.vote = id;
            raft.become_leader();
        }
        raft
    }

    /// This member's id.
    pub fn id(&self) -> NodeId {
        self.id
    }

    /// The voters, sorted.
    pub fn voters(&self) -> &[NodeId] {
        &self.voters
    }

    /// Current role.
    pub fn role(&self) -> Role {
        self.role
    }

    /// Current term.
    pub fn term(&self) -> u64 {
        self.hard_state.term
    }

    /// The current hard state (durable or not yet).
    pub fn hard_state(&self) -> HardState {
        self.hard_state
    }

    /// The leader's id, if known.
    pub fn leader(&self) -> Option<NodeId> {
        self.leader
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
        self.log.last_index()
    }

    /// Index of the first entry held in memory.
    pub fn first_index(&self) -> u64 {
        self.log.first_index()
    }

    /// Highest index reported durable (and still the same entry as in memory).
    pub fn persisted_index(&self) -> u64 {
        self.log.persisted()
    }

    /// The entries held in memory, from [`Raft::first_index`] on.
    pub fn log_entries(&self) -> &[Entry] {
        self.log.all()
    }

    /// The term of the entry at `index`, if held (or the compacted prefix's last index).
    pub fn log_term(&self, index: u64) -> Option<u64> {
        self.log.term(index)
    }

    /// The member leadership is being transferred to, if any.
    pub fn lead_transferee(&self) -> Option<NodeId> {
        self.lead_transferee
    }

    /// Appends a command to the leader's log and starts replicating it; returns its index.
    pub fn propose(&mut self, data: Vec<u8>) -> Result<u64, ProposeError> {
        if self.role != Role::Leader {
            return Err(ProposeError::NotLeader);
        }
        if self.lead_transferee.is_some() {
            return Err(ProposeError::TransferInProgress);
        }
        let index = self.append_entry(Payload::Command(data));
        self.defer_bcast(SendWhen::NewEntries);
        Ok(index)
    }

    /// Sends a command to the leader on behalf of this follower's client (see
    /// [`MessageBody::Propose`]); the entry comes back tagged with `request`. On the leader
    /// it is the same as [`Raft::propose`] with the tag.
    pub fn forward(&mut self, request: u64, command: Vec<u8>) -> Result<(), ProposeError> {
        if self.role == Role::Leader {
            self.accept_forwarded(self.id, request, command)?;
            return Ok(());
        }
        let leader = self.leader.ok_or(ProposeError::NoLeader)?;
        self.send(leader, MessageBody::Propose { request, command });
        Ok(())
    }

    fn accept_forwarded(
        &mut self,
        origin: NodeId,
        request: u64,
        command: Vec<u8>,
    ) -> Result<u64, ProposeError> {
        if self.lead_transferee.is_some() {
            return Err(ProposeError::TransferInProgress);
        }
        // Stale-term duplicates are dropped by the term check; this catches those of this
        // term.
        if !self.forwarded_set.insert((origin, request)) {
            return Err(ProposeError::Duplicate);
        }
        if self.forwarded_seen.len() >= FORWARDED_WINDOW {
            if let Some(old) = self.forwarded_seen.pop_front() {
                self.forwarded_set.remove(&old);
            }
        }
        self.forwarded_seen.push_back((origin, request));
        let index = self.append_entry(Payload::Forwarded {
            origin,
            request,
            command,
        });
        self.defer_bcast(SendWhen::NewEntries);
        Ok(index)
    }

    /// Asks for a linearizable read. The answer comes back as a [`ReadState`] with `ctx`
    /// (from [`Raft::take_read_states`] or a later Ready): on a leader once a heartbeat round
    /// confirmed a quorum still follows it (a single voter answers at once), on a follower
    /// once the leader answered the forwarded request. A request lost on the way is never
    /// answered: the driver times it out.
    pub fn read_index(&mut self, ctx: u64) -> Result<(), ProposeError> {
        if self.role == Role::Leader {
            self.leader_read(self.id, ctx);
            return Ok(());
        }
        let leader = self.leader.ok_or(ProposeError::NoLeader)?;
        self.send(leader, MessageBody::ReadIndex { ctx });
        Ok(())
    }

    /// The follower a leader would best hand leadership to: the one with the most of the
    /// log (ties: lowest id), among those heard from this election period.
    pub fn best_transfer_target(&self) -> Option<NodeId> {
        if self.role != Role::Leader {
            return None;
        }
        self.progress
            .iter()
            .filter(|(id, _)| self.voters.contains(id))
            .filter(|(_, pr)| pr.recent_active || pr.match_index > 0)
            .max_by_key(|(id, pr)| (pr.match_index, std::cmp::Reverse(**id)))
            .map(|(id, _)| *id)
    }

    /// What the leader knows each follower holds: (member, match index). Empty unless
    /// leader.
    pub fn follower_matches(&self) -> Vec<(NodeId, u64)> {
        self.progress
            .iter()
            .map(|(id, pr)| (*id, pr.match_index))
            .collect()
    }

    /// Brings a follower's first campaign forward: its election timer starts as if all but
    /// one tick of the minimum timeout had passed, so a cluster started together elects
    /// within about one election timeout instead of up to two (etcd's initial election tick
    /// advance). Safe with pre-vote: a member that starts into a cluster with a leader is
    /// refused by voters in their lease and disturbs nobody.
    pub fn hasten_first_election(&mut self) {
        if self.role == Role::Follower && self.leader.is_none() {
            self.election_elapsed = self.config.election_ticks.saturating_sub(1);
        }
    }

    /// The cluster time this member sends with its heartbeats and appends (a member that
    /// wins an election sends the time it is about to lead with), and, when `established`
    /// (a leader set it), with its votes: see [`MessageBody::VoteResponse`]. The core only
    /// carries it: time stays the driver's business.
    pub fn set_clock(&mut self, clock: u64, established: bool) {
        self.clock = clock;
        self.clock_established = established;
    }

    /// What a vote answer carries of this member's clock.
    pub(super) fn vote_clock(&self) -> u64 {
        if self.clock_established {
            self.clock
        } else {
            0
        }
    }

    /// The highest cluster time heard in a leader's heartbeat (0 before any).
    pub fn leader_clock(&self) -> u64 {
        self.leader_clock
    }

    /// Hands leadership to `to` (used on a leader's graceful shutdown).
    pub fn transfer_leader(&mut self, to: NodeId) -> Result<(), ProposeError> {
        self.start_transfer(to)
    }

    /// One unit of time passed (the driver's tick, e.g. 100 ms).
    pub fn tick(&mut self) {
        match self.role {
            Role::Leader => self.tick_leader(),
            _ => self.tick_election(),
        }
        self.debug_check();
    }

    /// A message from a peer. Anything that does not fit — unknown sender, another
    /// receiver, a stale term, indexes beyond the log — is ignored or answered, never trusted.
    pub fn step(&mut self, m: Message) {
        if m.to != self.id || m.from == self.id || m.from == 0 {
            return;
        }
        // Raft thesis §4.1: appends and votes are taken from members this one does not
        // know as voters: a leader added by an entry not appended here yet must be
        // followed, and a candidate's vote may be needed (a new member's, with one of the
        // old ones down). A removed member cannot disrupt with its campaigns: it does not
        // campaign once it appended its removal, and before that the lease refuses it
        // (thesis §4.2.3). What only a leader sends is taken from our leader only, and a
        // leader serves only its followers.
        let known = match m.body {
            MessageBody::TimeoutNow | MessageBody::ReadIndexResponse { .. } => {
                self.leader == Some(m.from)
            }
            MessageBody::ReadIndex { .. }
            | MessageBody::Propose { .. }
            | MessageBody::ProposeMembership { .. } => {
                self.voters.contains(&m.from) || self.progress.contains_key(&m.from)
            }
            _ => true,
        };
        if !known {
            return;
        }
        if m.term > self.term() {
            match m.body {
                MessageBody::PreVote { .. } => {
                    if self.in_lease() {
                        // Raft thesis §9.6: a member that heard from a leader recently
                        // refuses to help depose it.
                        self.send(m.from, MessageBody::PreVoteResponse { granted: false });
                        return;
                    }
                    // A pre-vote moves nobody's term.
                }
                MessageBody::Vote { transfer, .. } => {
                    if !transfer && self.in_lease() {
                        return;
                    }
                    self.become_follower(m.term, None);
                }
                // A granted pre-vote echoes the term the candidate would campaign in.
                MessageBody::PreVoteResponse { granted: true } => {}
                MessageBody::Append { .. }
                | MessageBody::Heartbeat { .. }
                | MessageBody::TimeoutNow => self.become_follower(m.term, Some(m.from)),
                _ => self.become_follower(m.term, None),
            }
        } else if m.term < self.term() {
            // A membership change is a client's request, not a step of the protocol: the
            // leader proposes it in its own term whatever the asker's. The asker may be a
            // member that moved to an address nobody can reach yet, so it cannot learn the
            // term before this change readdresses it.
            if !matches!(m.body, MessageBody::ProposeMembership { .. }) {
                self.answer_stale(m);
                return;
            }
        }
        self.dispatch(m);
        self.debug_check();
    }

    // A stale leader learns of the newer term from the answer and steps down; without it a
    // member whose term moved on while the leader kept its own could not rejoin (etcd
    // answers stale appends for the same reason when check-quorum or pre-vote is on).
    fn answer_stale(&mut self, m: Message) {
        match m.body {
            MessageBody::Append { prev_index, .. } => self.send(
                m.from,
                MessageBody::AppendRejected {
                    rejected_index: prev_index,
                    hint_index: 0,
                    hint_term: 0,
                },
            ),
            MessageBody::Heartbeat { seq, .. } => {
                self.send(m.from, MessageBody::HeartbeatResponse { seq })
            }
            MessageBody::PreVote { .. } => {
                self.send(m.from, MessageBody::PreVoteResponse { granted: false })
            }
            _ => {}
        }
    }

    // The message's term is ours now (or, for pre-votes, one ahead and not adopted).
    fn dispatch(&mut self, m: Message) {
        let from = m.from;
        match m.body {
            MessageBody::PreVote {
                last_index,
                last_term,
            } => self.handle_vote_request(from, m.term, true, last_index, last_term),
            MessageBody::Vote {
                last_index,
                last_term,
                ..
            } => self.handle_vote_request(from, m.term, false, last_index, last_term),
            MessageBody::PreVoteResponse { granted } => {
                // Grants echo the campaign's term, refusals carry the voter's (ours).
                let expected = if granted {
                    self.term().saturating_add(1)
                } else {
                    self.term()
                };
                if self.role == Role::PreCandidate && m.term == expected {
                    self.poll(from, granted);
                }
            }
            MessageBody::VoteResponse { granted, clock } => {
                if self.role == Role::Candidate {
                    if granted {
                        self.leader_clock = self.leader_clock.max(clock);
                    }
                    self.poll(from, granted);
                }
            }
            MessageBody::Append {
                prev_index,
                prev_term,
                entries,
                commit,
                clock,
            } => {
                if self.follow(from) {
                    self.leader_clock = self.leader_clock.max(clock);
                    self.handle_append(from, m.term, prev_index, prev_term, entries, commit);
                }
            }
            MessageBody::Heartbeat { commit, seq, clock } => {
                if self.follow(from) {
                    self.handle_heartbeat(from, commit, seq, clock);
                }
            }
            MessageBody::AppendAccepted { match_index } => {
                if self.role == Role::Leader {
                    self.handle_append_accepted(from, match_index);
                }
            }
            MessageBody::AppendRejected {
                rejected_index,
                hint_index,
                hint_term,
            } => {
                if self.role == Role::Leader {
                    self.handle_append_rejected(from, rejected_index, hint_index, hint_term);
                }
            }
            MessageBody::HeartbeatResponse { seq } => {
                if self.role == Role::Leader {
                    self.handle_heartbeat_response(from, seq);
                }
            }
            MessageBody::ReadIndex { ctx } => {
                if self.role == Role::Leader {
                    self.leader_read(from, ctx);
                }
            }
            MessageBody::ReadIndexResponse { ctx, index } => {
                if self.role != Role::Leader {
                    self.read_states.push(ReadState { ctx, index });
                }
            }
            MessageBody::Propose { request, command } => {
                // Dropped unless we lead (and are not handing leadership over): the
                // follower's client times out, as with etcd.
                if self.role == Role::Leader {
                    let _ = self.accept_forwarded(from, request, command);
                }
            }
            MessageBody::TimeoutNow => {
                if self.role == Role::Follower && self.leader == Some(from) {
                    self.campaign(election::Campaign::Transfer);
                }
            }
            MessageBody::SnapshotWanted => {
                if self.role == Role::Leader {
                    self.request_snapshot(from);
                }
            }
            MessageBody::ProposeMembership { change, context } => {
                // Refusals are dropped: the follower's client times out, as with a
                // forwarded command (the driver checks what it can before asking).
                if self.role == Role::Leader {
                    let _ = self.propose_conf_change(change, context);
                }
            }
        }
    }

    // An append or heartbeat from `from` at our term: `from` is this term's leader. Returns
    // false if we lead this term ourselves (two leaders in a term cannot happen; ignore it).
    fn follow(&mut self, from: NodeId) -> bool {
        if self.role == Role::Leader {
            return false;
        }
        if self.role != Role::Follower || self.leader != Some(from) {
            self.become_follower(self.term(), Some(from));
        }
        self.election_elapsed = 0;
        true
    }

    /// The work to do now, if any (see [`Ready`] for what the driver does with it). Returns
    /// `None` while the previous Ready has not been reported with [`Raft::advance`] or
    /// [`Raft::persist_failed`]; [`Raft::take_messages`] still yields messages meanwhile.
    pub fn ready(&mut self) -> Option<Ready> {
        self.flush_bcast();
        if self.in_flight.is_some() {
            return None;
        }
        if self.role == Role::Leader && self.is_single_voter() {
            // Quorum of one: what this batch makes durable is committed by it.
            self.hard_state.commit = self.log.last_index();
        }
        let entries = self.log.take_unstable();
        let hard_state = (self.hard_state != self.hard_state_sent).then_some(self.hard_state);
        self.hard_state_sent = self.hard_state;
        let committed_entries = self
            .log
            .slice(self.applying + 1, self.hard_state.commit)
            .to_vec();
        if let Some(last) = committed_entries.last() {
            self.applying = last.index;
        }
        let mut ready = Ready {
            hard_state,
            entries,
            committed_entries,
            messages: Vec::new(),
            read_states: std::mem::take(&mut self.read_states),
        };
        let held = std::mem::take(&mut self.msgs_after_persist);
        if ready.needs_persist() {
            self.in_flight = Some(InFlight {
                last_entry: ready.entries.last().map(|e| (e.index, e.term)),
            });
            self.msgs_after_inflight.extend(held);
        } else {
            // Held messages wait for unstable state, which a Ready without persistence work
            // shows there is none of: what they waited for is durable.
            self.release(held);
        }
        ready.messages = std::mem::take(&mut self.msgs);
        (!ready.is_empty()).then_some(ready)
    }

    /// Whether a leader's next [`Raft::ready`] may wait: it would hand out only new entries
    /// to make durable, and no quorum can acknowledge them yet (fewer followers than a
    /// quorum needs have been sent them). The leader's own write is then off the path of
    /// every commit until an acknowledgement sends them on; writing at once only makes
    /// more, smaller writes. A driver may call `ready` at any time regardless; appends due
    /// are queued for [`Raft::take_messages`].
    pub fn own_write_can_wait(&mut self) -> bool {
        // Appends the driver has not taken yet count as sent.
        self.flush_bcast();
        if self.role != Role::Leader
            || self.is_single_voter()
            || self.in_flight.is_some()
            || !self.log.has_unstable()
            || self.hard_state.commit > self.applying
            || !self.read_states.is_empty()
            || !self.msgs_after_persist.is_empty()
            || (self.hard_state.term, self.hard_state.vote)
                != (self.hard_state_sent.term, self.hard_state_sent.vote)
        {
            return false;
        }
        let first_unstable = self.log.handed_out() + 1;
        let sent = self
            .voters
            .iter()
            .filter(|v| **v != self.id)
            .filter(|v| {
                self.progress
                    .get(v)
                    .is_some_and(|p| p.next_index > first_unstable)
            })
            .count();
        sent + 1 < quorum::majority(self.voters.len())
    }

    /// Messages that may be sent now, without waiting for a Ready (e.g. heartbeats while the
    /// previous Ready is being made durable).
    pub fn take_messages(&mut self) -> Vec<Message> {
        self.flush_bcast();
        std::mem::take(&mut self.msgs)
    }

    /// Answers to ReadIndex requests, without waiting for a Ready.
    pub fn take_read_states(&mut self) -> Vec<ReadState> {
        std::mem::take(&mut self.read_states)
    }

    /// The driver made the last Ready durable and applied what `persisted` says.
    pub fn advance(&mut self, persisted: Persisted) {
        let in_flight = self.in_flight.take();
        if let Some((index, term)) = in_flight.and_then(|f| f.last_entry) {
            debug_assert!(
                persisted.durable_index >= index,
                "driver reports durable {} for a Ready ending at {index}",
                persisted.durable_index
            );
            self.log.mark_persisted(index, term);
        }
        self.applied = self.applied.max(persisted.applied_index.min(self.applying));
        self.membership.settle_through(self.applied);
        let held = std::mem::take(&mut self.msgs_after_inflight);
        self.release(held);
        if self.role == Role::Leader && self.maybe_commit() {
            self.defer_bcast(SendWhen::NewEntriesOrCommit);
        }
        self.debug_check();
    }

    /// The driver applied committed entries it was handed through `index`, after the Ready
    /// that handed them out was reported with [`Raft::advance`] (a driver that applies on a
    /// thread of its own, behind its log writes, reports the two separately).
    pub fn applied_to(&mut self, index: u64) {
        self.applied = self.applied.max(index.min(self.applying));
        self.membership.settle_through(self.applied);
        self.debug_check();
    }

    /// The driver could not persist the last Ready (e.g. the disk is full). Messages that
    /// waited for it are dropped (peers retry). A single voter forgets the entries that were
    /// not made durable, as if they had never been proposed — safe because nothing about
    /// them left this member. With peers, entries may already be on their way to followers,
    /// so nothing is forgotten: the next Ready hands the same work out again.
    pub fn persist_failed(&mut self) {
        self.in_flight = None;
        self.msgs_after_inflight.clear();
        self.applying = self.applied;
        // The failed Ready's hard state was not saved either: hand it out again.
        self.hard_state_sent = HardState::default();
        if self.is_single_voter() {
            let durable = self.log.persisted();
            self.log.truncate_after(durable);
            self.hard_state.commit = self.hard_state.commit.min(durable);
        } else {
            self.log.unhand();
        }
    }

    /// Drops the in-memory entries up to `index` (clamped to the applied index): the driver
    /// calls it once they are no longer needed in memory. A follower that needs them later
    /// gets a snapshot (see [`Raft::take_snapshot_requests`]).
    pub fn compact(&mut self, index: u64) {
        self.log.compact(index.min(self.applied));
    }

    /// The transport could not reach `peer`: stop streaming to it and probe instead.
    pub fn report_unreachable(&mut self, peer: NodeId) {
        if let Some(pr) = self.progress.get_mut(&peer) {
            if pr.state == ProgressState::Replicate {
                pr.become_probe();
            }
        }
    }

    /// The first broken invariant of this member's own state, if any (the simulator checks
    /// after every step; debug builds check after every input).
    pub fn violation(&self) -> Option<String> {
        if let Some(v) = self.log.violation() {
            return Some(v);
        }
        let (applied, applying, commit, last) = (
            self.applied,
            self.applying,
            self.hard_state.commit,
            self.log.last_index(),
        );
        if !(applied <= applying && applying <= commit && commit <= last) {
            return Some(format!(
                "applied {applied} <= applying {applying} <= commit {commit} <= last {last} broken"
            ));
        }
        if applied > self.log.persisted() && self.in_flight.is_none() {
            return Some(format!(
                "applied {applied} beyond durable {}",
                self.log.persisted()
            ));
        }
        if self.voters != self.membership.voters() {
            return Some(format!(
                "voters {:?}, the log's membership says {:?}",
                self.voters,
                self.membership.voters()
            ));
        }
        if self.role == Role::Leader
            && (self.leader != Some(self.id) || self.hard_state.vote != self.id)
        {
            return Some(format!(
                "leader {} with leader {:?} and vote {}",
                self.id, self.leader, self.hard_state.vote
            ));
        }
        for (peer, pr) in &self.progress {
            if pr.match_index >= pr.next_index || pr.next_index > last + 1 {
                return Some(format!(
                    "progress of {peer}: match {} next {} last {last}",
                    pr.match_index, pr.next_index
                ));
            }
        }
        None
    }

    fn debug_check(&self) {
        if cfg!(debug_assertions) {
            if let Some(v) = self.violation() {
                panic!("raft member {}: {v}", self.id);
            }
        }
    }

    fn is_single_voter(&self) -> bool {
        self.voters == [self.id]
    }

    /// Whether this member may campaign.
    fn promotable(&self) -> bool {
        self.voters.contains(&self.id)
    }

    /// Heard from a leader within the election timeout (check-quorum's lease).
    fn in_lease(&self) -> bool {
        self.leader.is_some() && self.election_elapsed < self.config.election_ticks
    }

    fn reset_timers(&mut self) {
        self.election_elapsed = 0;
        self.heartbeat_elapsed = 0;
        let election = u64::from(self.config.election_ticks);
        self.randomized_timeout = (election + self.prng.below(election)) as u32;
    }

    /// Steps down to follower in `term` (adopting it, with no vote, if it is newer).
    fn become_follower(&mut self, term: u64, leader: Option<NodeId>) {
        if term > self.hard_state.term {
            self.hard_state.term = term;
            self.hard_state.vote = 0;
        }
        self.role = Role::Follower;
        self.leader = leader;
        self.reset_timers();
        self.votes.clear();
        self.progress.clear();
        self.leaving.clear();
        self.snapshot_requests.clear();
        self.lead_transferee = None;
        // Reads the leader had not confirmed are never answered: the driver times them out.
        self.pending_reads.clear();
        self.reads_awaiting_commit.clear();
    }

    /// A message that may go now.
    fn send(&mut self, to: NodeId, body: MessageBody) {
        let term = self.term();
        self.send_in_term(to, term, body);
    }

    fn send_in_term(&mut self, to: NodeId, term: u64, body: MessageBody) {
        self.msgs.push(Message {
            from: self.id,
            to,
            term,
            body,
        });
    }

    /// A message that claims durability (a vote grant, an append acknowledgement): held
    /// until everything it may depend on — the current hard state and log — is durable.
    fn send_durable(&mut self, to: NodeId, body: MessageBody) {
        let m = Message {
            from: self.id,
            to,
            term: self.term(),
            body,
        };
        let hs_unsent = (self.hard_state.term, self.hard_state.vote)
            != (self.hard_state_sent.term, self.hard_state_sent.vote);
        if hs_unsent || self.log.has_unstable() {
            self.msgs_after_persist.push(m);
        } else if self.in_flight.is_some() {
            self.msgs_after_inflight.push(m);
        } else {
            self.release(vec![m]);
        }
    }

    // Held messages become sendable; one addressed to ourselves (a candidate's own vote,
    // counted only once durable) is taken in here.
    fn release(&mut self, held: Vec<Message>) {
        for m in held {
            if m.to != self.id {
                self.msgs.push(m);
                continue;
            }
            if let MessageBody::VoteResponse { granted, .. } = m.body {
                if self.role == Role::Candidate && m.term == self.term() {
                    self.poll(self.id, granted);
                }
            }
        }
    }

    /// Drops entries after `index` (a newer leader's entries replace them), with every held
    /// acknowledgement that claimed them: they never became durable here.
    fn truncate_log_after(&mut self, index: u64) {
        self.log.truncate_after(index);
        self.membership_truncated_after(index);
        let claims_dropped = |m: &Message| matches!(m.body, MessageBody::AppendAccepted { match_index } if match_index > index);
        self.msgs_after_persist.retain(|m| !claims_dropped(m));
        self.msgs_after_inflight.retain(|m| !claims_dropped(m));
        // The Ready in flight still makes the entries up to `index` durable (they are the
        // same in memory); its later ones are overwritten by the next Ready.
        if let Some(f) = &mut self.in_flight {
            if let Some((last, _)) = f.last_entry {
                if last > index {
                    f.last_entry = self.log.term(index).map(|t| (index, t));
                }
            }
        }
    }
}
