//! The simulated cluster: members (a Raft core and a disk each), the driver that persists
//! their Readies, the network, clients, and faults — all driven by virtual time in
//! milliseconds and one seed.
//!
//! The driver follows the Ready contract as the node thread will: it sends a Ready's
//! messages at once, hands the hard state, entries and committed entries to a simulated
//! fsync that completes after a delay drawn from the seed, and only then applies them to the
//! disk — in one atomic step, as LMDB's single transaction did — and calls `advance`; or,
//! with `apply_lag_ms` (half the swarm seeds), as pikv's node does now: `advance` once the
//! log write is durable, the committed entries applied later in order and reported with
//! `applied_to`. A crash throws away the core and any write or apply not yet complete; a
//! restart builds a new core from the disk alone. So a member keeps exactly what it had
//! reported durable.

use crate::clocks::{self, ClockOptions, MemberClock, DAY, NS_PER_MS};
use crate::invariants::{Checker, Violation};
use crate::linearizability::OpKind;
use crate::network::{NetOptions, Network};
use pikv::raft::{
    BrokenRule, ConfChange, Config, Entry, HardState, InitialState, Message, MessageBody, NodeId,
    Payload, Persisted, Prng, Raft, Ready, Role, SnapshotMeta,
};
use pikv::util::clock::{ClockAnchor, ClusterClock};
use std::collections::hash_map::DefaultHasher;
use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::hash::{Hash, Hasher};

/// Everything a run varies, drawn from its seed (TigerBeetle's swarm testing: each seed
/// also picks which faults are on and how hard they hit).
#[derive(Debug, Clone)]
pub struct Options {
    /// Cluster size.
    pub members: usize,
    /// Virtual milliseconds per tick.
    pub tick_ms: u64,
    /// The core's [`Config`] values.
    pub election_ticks: u32,
    /// See `election_ticks`.
    pub heartbeat_ticks: u32,
    /// See `election_ticks`.
    pub max_inflight_msgs: usize,
    /// See `election_ticks`.
    pub max_entries_per_msg: usize,
    /// How the network misbehaves while faults are on.
    pub net: NetOptions,
    /// Fsync latency: usually up to `fsync_max_ms`, now and then up to `fsync_slow_ms`.
    pub fsync_max_ms: u64,
    /// See `fsync_max_ms`.
    pub fsync_slow_per_mille: u64,
    /// See `fsync_max_ms`.
    pub fsync_slow_ms: u64,
    /// Writes that fail (the disk is full): the driver reports `persist_failed`.
    pub persist_fail_per_mille: u64,
    /// Apply behind the log, as pikv's node does (a WAL thread, then an apply thread): 0
    /// applies committed entries in the write that makes them durable; otherwise each
    /// Ready's committed entries are applied up to this many ms after it was reported
    /// durable, in order, and reported with `applied_to`. A failed write then stops the
    /// member (as the node does), instead of `persist_failed`.
    pub apply_lag_ms: u64,
    /// Mean time between crashes (0: none), and the longest a member stays down.
    pub crash_every_ms: u64,
    /// See `crash_every_ms`.
    pub down_max_ms: u64,
    /// Mean time between partition changes (0: none).
    pub partition_every_ms: u64,
    /// Mean time between leadership transfer requests (0: none).
    pub transfer_every_ms: u64,
    /// Clients, each with one operation at a time.
    pub clients: usize,
    /// Keys the clients use (each key's history is checked on its own).
    pub keys: u8,
    /// The longest pause between a client's operations.
    pub op_gap_max_ms: u64,
    /// Clients give up on an operation after this long.
    pub op_timeout_ms: u64,
    /// How long faults run; then the network heals, members restart and the run must
    /// converge within `heal_budget_ms`.
    pub fault_ms: u64,
    /// See `fault_ms`.
    pub heal_budget_ms: u64,
    /// A disk that acknowledges the vote but forgets it on a crash: the simulator must catch
    /// the consequences (used only to prove the checkers work).
    pub lying_disk: bool,
    /// One member's disk stalls (see [`SlowDisk`]).
    pub slow_disk: Option<SlowDisk>,
    /// Wall clocks that jump and the cluster time the driver keeps (see `clocks.rs`).
    pub clock: Option<ClockOptions>,
    /// Once a first leader is established nobody may campaign again: no member may become
    /// a pre-candidate or a candidate, and no term may start (a run without faults that could
    /// justify an election).
    pub no_elections: bool,
    /// Mean time between membership changes asked of the leader (0: none): a new member
    /// added (and started empty), or a voter — the leader itself too — removed.
    pub membership_every_ms: u64,
    /// Voters the run may have at once (`members` at the start, more once added); ids are
    /// never reused.
    pub max_voters: usize,
    /// A safety rule switched off in the core (used only to prove the checkers work).
    pub broken_rule: Option<BrokenRule>,
    /// Applied entries a member keeps in its log (memory and disk) before compacting the
    /// rest away (0: never): a follower that falls further behind needs a snapshot.
    pub compact_retain: u64,
}

impl Disk {
    /// The durable entry at `index`, if held.
    fn entry(&self, index: u64) -> Option<&Entry> {
        index
            .checked_sub(self.log_offset + 1)
            .and_then(|k| self.log.get(k as usize))
    }

    /// The last durable index.
    fn last_index(&self) -> u64 {
        self.log_offset + self.log.len() as u64
    }
}

/// A member whose fsyncs stall, as an SD card's do: a write on it takes
/// `stall_min_ms..=stall_max_ms` now and then (`stall_per_mille` of its writes), the usual
/// latency otherwise. The member is picked when the first leader is established: that
/// leader itself when `on_leader`, else one of its followers.
#[derive(Debug, Clone)]
pub struct SlowDisk {
    /// See the type's docs.
    pub stall_min_ms: u64,
    /// See the type's docs.
    pub stall_max_ms: u64,
    /// See the type's docs.
    pub stall_per_mille: u64,
    /// See the type's docs.
    pub on_leader: bool,
    /// The driver waits on the stalled fsync, as a node thread that blocks on its disk
    /// would: the member neither ticks nor sends while its write is in flight (used only to
    /// prove that the election check can fail).
    pub blocking_driver: bool,
}

impl Options {
    /// The options of `seed` for a cluster of `members`.
    pub fn swarm(seed: u64, members: usize) -> Options {
        let mut p = Prng::new(seed ^ 0x5157_5EED);
        let mut pick = |choices: &[u64]| choices[p.below(choices.len() as u64) as usize];
        let net = NetOptions {
            loss_per_mille: pick(&[0, 10, 50, 150]),
            dup_per_mille: pick(&[0, 0, 20]),
            delay_min_ms: 1,
            delay_max_ms: pick(&[3, 10, 30]),
            long_delay_per_mille: pick(&[0, 5, 30]),
            long_delay_max_ms: 300,
        };
        Options {
            members,
            tick_ms: 10,
            election_ticks: 10,
            heartbeat_ticks: pick(&[1, 2, 3]) as u32,
            max_inflight_msgs: pick(&[1, 2, 4, 256]) as usize,
            max_entries_per_msg: pick(&[1, 3, 16, 64]) as usize,
            net,
            fsync_max_ms: pick(&[0, 5, 20]),
            fsync_slow_per_mille: pick(&[0, 20]),
            fsync_slow_ms: 200,
            persist_fail_per_mille: pick(&[0, 0, 0, 20]),
            apply_lag_ms: pick(&[0, 0, 3, 15]),
            crash_every_ms: pick(&[0, 100, 300, 1000]),
            down_max_ms: pick(&[50, 400]),
            partition_every_ms: pick(&[0, 200, 600]),
            transfer_every_ms: pick(&[0, 300]),
            clients: pick(&[3, 8]) as usize,
            keys: pick(&[1, 2, 3]) as u8,
            op_gap_max_ms: pick(&[5, 30]),
            op_timeout_ms: pick(&[300, 1000]),
            fault_ms: 3000,
            heal_budget_ms: 8000,
            lying_disk: false,
            slow_disk: None,
            clock: None,
            no_elections: false,
            membership_every_ms: pick(&[0, 0, 150, 600]),
            max_voters: members + 2,
            broken_rule: None,
            compact_retain: pick(&[0, 0, 3, 20]),
        }
    }

    /// Requirement 6, bad clocks: wall clocks jump by days, leaders change (transfers,
    /// crashes, partitions) and members restart, over a network with some loss; the cluster
    /// time must neither go back nor jump (see `clocks.rs`).
    pub fn clock_jumps(seed: u64, members: usize) -> Options {
        let mut p = Prng::new(seed ^ 0xC10C_7155);
        let mut pick = |choices: &[u64]| choices[p.below(choices.len() as u64) as usize];
        let delay_max_ms = pick(&[3, 10]);
        Options {
            members,
            tick_ms: pick(&[10, 100]),
            election_ticks: 10,
            heartbeat_ticks: pick(&[1, 2]) as u32,
            max_inflight_msgs: 256,
            max_entries_per_msg: 64,
            net: NetOptions {
                loss_per_mille: pick(&[0, 10, 50]),
                delay_max_ms,
                ..NetOptions::calm()
            },
            fsync_max_ms: pick(&[0, 5, 20]),
            fsync_slow_per_mille: 0,
            fsync_slow_ms: 0,
            persist_fail_per_mille: 0,
            apply_lag_ms: 0,
            crash_every_ms: pick(&[0, 300, 1000]),
            down_max_ms: pick(&[50, 400]),
            partition_every_ms: pick(&[0, 600]),
            transfer_every_ms: pick(&[0, 300]),
            clients: 2,
            keys: 2,
            op_gap_max_ms: 30,
            op_timeout_ms: 1000,
            fault_ms: 3000,
            heal_budget_ms: 8000,
            lying_disk: false,
            slow_disk: None,
            clock: Some(ClockOptions {
                jump_every_ms: pick(&[100, 500]),
                sync_every_ms: pick(&[0, 100, 1000]),
                start_skew_ms: pick(&[0, 20]),
                start_offset_days: 0,
                jumps_before_formed: false,
                // Each leader change may lose up to one message delay (the new leader's
                // clock is the last heartbeat it heard plus the time since), well within
                // this over a run; a wall-clock jump would be days.
                behind_tolerance_ms: 1000,
                net_delay_max_ms: delay_max_ms,
            }),
            no_elections: false,
            membership_every_ms: 0,
            max_voters: members,
            broken_rule: None,
            compact_retain: 0,
        }
    }

    /// A healthy cluster but for one member's disk, whose fsyncs stall for 500 ms to 1 s
    /// (the leader's in some seeds, a follower's in the others): nothing else goes wrong, so
    /// no election may happen once the first leader is established. The timing is pikv's
    /// default (100 ms ticks, heartbeat 1 tick, election timeout 10 ticks) in some seeds and
    /// ten times faster in others, where every stall lasts 5 to 10 election timeouts.
    pub fn slow_disk(seed: u64, members: usize) -> Options {
        let mut p = Prng::new(seed ^ 0x510_D15C);
        let mut pick = |choices: &[u64]| choices[p.below(choices.len() as u64) as usize];
        let on_leader = pick(&[0, 1]) == 1;
        Options {
            members,
            tick_ms: pick(&[10, 100]),
            election_ticks: 10,
            heartbeat_ticks: pick(&[1, 1, 2, 3]) as u32,
            max_inflight_msgs: pick(&[1, 4, 256]) as usize,
            max_entries_per_msg: pick(&[1, 16, 64]) as usize,
            net: NetOptions {
                delay_max_ms: pick(&[2, 5, 10]),
                ..NetOptions::calm()
            },
            fsync_max_ms: pick(&[0, 2, 10]),
            fsync_slow_per_mille: 0,
            fsync_slow_ms: 0,
            persist_fail_per_mille: 0,
            apply_lag_ms: 0,
            crash_every_ms: 0,
            down_max_ms: 0,
            partition_every_ms: 0,
            transfer_every_ms: 0,
            clients: pick(&[2, 5]) as usize,
            keys: pick(&[1, 3]) as u8,
            op_gap_max_ms: pick(&[5, 50]),
            // A write waits for the slow disk when it went to the slow leader: a client
            // that gave up would only blur the history.
            op_timeout_ms: 5000,
            fault_ms: 5000,
            // A follower whose every write stalls, fed one entry per message with few in
            // flight, falls far behind under load and catches up a few entries per stall.
            heal_budget_ms: 60_000,
            lying_disk: false,
            slow_disk: Some(SlowDisk {
                stall_min_ms: 500,
                stall_max_ms: 1000,
                stall_per_mille: pick(&[250, 500, 1000]),
                on_leader,
                blocking_driver: false,
            }),
            clock: None,
            no_elections: true,
            membership_every_ms: 0,
            max_voters: members,
            broken_rule: None,
            compact_retain: 0,
        }
    }
}

/// What a member keeps across crashes.
#[derive(Debug, Clone, Default)]
struct Disk {
    /// The highest cluster time a `Sync` entry applied here carried (the store's record).
    cluster_clock: u64,
    /// Where the member's cluster clock stood at its last write (the storage thread records
    /// it with every batch).
    clock_anchor: Option<ClockAnchor>,
    hard_state: HardState,
    /// Entries `log_offset + 1 ..`: those up to `log_offset` were compacted away (their
    /// effect is in `kv`) or replaced by a snapshot.
    log: Vec<Entry>,
    log_offset: u64,
    /// The term of the entry at `log_offset`.
    log_offset_term: u64,
    applied: u64,
    /// The voters as of `applied` (what pikv's store records with each membership entry).
    voters: Vec<NodeId>,
    /// The state machine: key → the op id of the last write applied.
    kv: BTreeMap<u8, u64>,
}

struct Write {
    ready: Ready,
    done_at: u64,
}

struct Member {
    id: NodeId,
    /// Started once (a member of the first configuration, or added later).
    joined: bool,
    /// Applied its own removal and stopped for good.
    removed: bool,
    raft: Option<Raft>,
    disk: Disk,
    write: Option<Write>,
    /// Committed entries waiting for the apply thread (`apply_lag_ms`), with when each
    /// batch is applied and whether it went ahead of its Ready's write (its commit index
    /// was not written yet: the apply records it, as pikv's apply transaction does).
    applies: VecDeque<(u64, Vec<Entry>, bool)>,
    next_tick_at: u64,
    down_until: u64,
    boots: u64,
    /// Answers to this member's ReadIndex requests, by context.
    read_states: BTreeMap<u64, u64>,
    /// Last term and commit seen while up (they must never go down), and the role.
    seen_term: u64,
    seen_commit: u64,
    seen_role: Option<Role>,
    /// Has followed (or been) the first leader: a campaign from here on needs a reason.
    settled: bool,
    /// Its clocks and the driver's cluster clock.
    clock: MemberClock,
}

/// What happened to a client operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Pending,
    Ok,
    /// The client never learned whether it took effect.
    Unknown,
    /// It certainly did not take effect (or, for a read, never answered).
    Failed,
}

/// One client operation.
#[derive(Debug, Clone)]
struct HistOp {
    client: usize,
    key: u8,
    /// A read's value is filled in when it returns.
    kind: OpKind,
    call: u64,
    ret: Option<u64>,
    outcome: Outcome,
    /// A write's log index.
    index: u64,
}

struct Client {
    /// Index into the history of the operation in progress.
    pending: Option<usize>,
    /// The member this client takes for the leader: kept until it refuses a write or an
    /// operation times out, so clients keep writing to a deposed leader for a while, as
    /// real clients do.
    leader_hint: Option<usize>,
    member: usize,
    ctx: u64,
    read_index: Option<u64>,
    deadline: u64,
    next_at: u64,
}

/// One line of the trace.
#[derive(Debug, Clone, Hash)]
pub enum Event {
    Deliver {
        from: NodeId,
        to: NodeId,
        term: u64,
        kind: &'static str,
    },
    Tick(NodeId),
    Persist {
        member: NodeId,
        entries: usize,
        committed: usize,
        hard_state: bool,
    },
    PersistFailed(NodeId),
    Crash(NodeId),
    Restart(NodeId),
    Net(String),
    Role {
        member: NodeId,
        role: String,
        term: u64,
    },
    Propose {
        member: NodeId,
        op: u64,
        index: u64,
    },
    Read {
        member: NodeId,
        ctx: u64,
    },
    Transfer {
        from: NodeId,
        to: NodeId,
    },
    Membership {
        leader: NodeId,
        change: String,
        index: Option<u64>,
    },
    Removed(NodeId),
    Snapshot {
        from: NodeId,
        to: NodeId,
        index: u64,
        outcome: &'static str,
    },
    SlowDisk {
        member: NodeId,
    },
    WallClock {
        member: NodeId,
        offset: i64,
    },
    Done {
        client: usize,
        outcome: String,
    },
}

/// The last events (printed on failure) and a hash of all of them (to check that a seed
/// replays exactly).
pub struct Trace {
    ring: VecDeque<(u64, Event)>,
    hasher: DefaultHasher,
    /// Events so far.
    pub events: u64,
    /// Print every event as it happens.
    pub verbose: bool,
}

impl Trace {
    const KEEP: usize = 80;

    fn new(verbose: bool) -> Trace {
        Trace {
            ring: VecDeque::with_capacity(Trace::KEEP),
            hasher: DefaultHasher::new(),
            events: 0,
            verbose,
        }
    }

    fn push(&mut self, at: u64, e: Event) {
        self.events += 1;
        at.hash(&mut self.hasher);
        e.hash(&mut self.hasher);
        if self.verbose {
            eprintln!("{at:>6} {e:?}");
        }
        if self.ring.len() == Trace::KEEP {
            self.ring.pop_front();
        }
        self.ring.push_back((at, e));
    }

    /// A hash of every event so far.
    pub fn hash(&self) -> u64 {
        self.hasher.finish()
    }
}

impl fmt::Display for Trace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (at, e) in &self.ring {
            writeln!(f, "  {at:>6} ms  {e:?}")?;
        }
        Ok(())
    }
}

/// Counts for the report.
#[derive(Debug, Default, Clone)]
pub struct Stats {
    /// Members crashed.
    pub crashes: u64,
    /// Writes the driver reported failed.
    pub persist_failures: u64,
    /// Leadership transfers asked for.
    pub transfers: u64,
    /// Writes acknowledged to their client.
    pub writes_ok: u64,
    /// Writes whose client never learned the outcome, and that did take effect.
    pub writes_unknown: u64,
    /// Reads answered.
    pub reads_ok: u64,
    /// Messages sent.
    pub messages: u64,
    /// Entries committed (applied by every member at the end).
    pub committed: u64,
    /// Virtual time the run took.
    pub virtual_ms: u64,
    /// Durable entries overwritten by a newer leader's (log truncations that reached a disk).
    pub overwrites: u64,
    /// Terms that had a leader.
    pub elections: u64,
    /// Writes on a slow disk that stalled (500 ms and more), and those of them that stalled
    /// while the member led.
    pub stalls: u64,
    /// See `stalls`.
    pub leader_stalls: u64,
    /// How far behind the true cluster time a member's cluster time fell at most.
    pub clock_lag_max_ms: u64,
    /// Wall-clock jumps (by days).
    pub wall_jumps: u64,
    /// Membership changes appended by a leader (adds, removes).
    pub added: u64,
    /// See `added`.
    pub removed: u64,
    /// Members readdressed (a change of no voter).
    pub updated: u64,
    /// Snapshots installed by followers.
    pub snapshots: u64,
    /// Batches of committed entries, durable already, handed to the apply thread ahead of
    /// the write of the Ready that carried them.
    pub early_applies: u64,
    /// Driver passes in which a leader held its write back ([`Raft::own_write_can_wait`]).
    pub held_writes: u64,
}

/// A snapshot on its way from a leader to a follower (the driver's transfer).
struct SnapshotTransfer {
    at: u64,
    /// The leader's slot and its boot count when it sent (a leader that crashed since has
    /// no one to report to).
    from: usize,
    from_boot: u64,
    to: NodeId,
    term: u64,
    meta: SnapshotMeta,
    kv: BTreeMap<u8, u64>,
    cluster_clock: u64,
    fails: bool,
}

fn encode_op(op_id: u64, key: u8) -> Vec<u8> {
    let mut v = op_id.to_le_bytes().to_vec();
    v.push(key);
    v
}

fn decode_op(payload: &Payload) -> Option<(u64, u8)> {
    match payload.command() {
        Some(b) if b.len() == 9 => {
            let mut id = [0u8; 8];
            id.copy_from_slice(&b[..8]);
            Some((u64::from_le_bytes(id), b[8]))
        }
        _ => None,
    }
}

/// One seed's cluster, clients and network, and what the checkers have seen.
pub struct World {
    opts: Options,
    seed: u64,
    prng: Prng,
    now: u64,
    ids: Vec<NodeId>,
    members: Vec<Member>,
    net: Network,
    clients: Vec<Client>,
    history: Vec<HistOp>,
    /// Where each write is in the agreed log, once a member applied it.
    op_index: BTreeMap<u64, u64>,
    checker: Checker,
    /// What happened, for the report and the replay check.
    pub trace: Trace,
    /// Faults on (first phase) or healing (second phase).
    faults: bool,
    next_op: u64,
    next_ctx: u64,
    /// The term of the first leader seen.
    first_leader_term: Option<u64>,
    /// The member whose disk stalls (`Options::slow_disk`), once picked.
    slow_member: Option<usize>,
    /// The true cluster time at virtual time 0 (see `true_cluster_time`).
    cluster_origin: Option<u64>,
    /// Snapshot transfers in flight.
    snapshots: Vec<SnapshotTransfer>,
    /// Counts for the report.
    pub stats: Stats,
}

impl World {
    /// The world of `seed`: members not started yet, clients idle.
    pub fn new(seed: u64, opts: Options, verbose: bool) -> World {
        let slots = opts.max_voters.max(opts.members);
        let ids: Vec<NodeId> = (1..=slots as u64).collect();
        let first_config: Vec<NodeId> = (1..=opts.members as u64).collect();
        let members = ids
            .iter()
            .map(|id| Member {
                id: *id,
                joined: *id <= opts.members as u64,
                removed: false,
                raft: None,
                // A member added later starts with an empty data dir: it knows no
                // configuration until a leader's snapshot brings one.
                disk: Disk {
                    voters: if *id <= opts.members as u64 {
                        first_config.clone()
                    } else {
                        Vec::new()
                    },
                    ..Disk::default()
                },
                write: None,
                applies: VecDeque::new(),
                next_tick_at: 0,
                down_until: 0,
                boots: 0,
                read_states: BTreeMap::new(),
                seen_term: 0,
                seen_commit: 0,
                seen_role: None,
                settled: false,
                clock: MemberClock {
                    boot: u128::from(*id),
                    mono_origin: 0,
                    wall_offset: 0,
                    cluster: None,
                    seen_cluster: 0,
                    seen_leader_clock: 0,
                    ever_fixed: false,
                    restarted: false,
                },
            })
            .collect();
        let clients = (0..opts.clients)
            .map(|_| Client {
                pending: None,
                leader_hint: None,
                member: 0,
                ctx: 0,
                read_index: None,
                deadline: 0,
                next_at: 0,
            })
            .collect();
        let mut world = World {
            net: Network::new(opts.net.clone()),
            opts,
            seed,
            prng: Prng::new(seed),
            now: 0,
            ids,
            members,
            clients,
            history: Vec::new(),
            op_index: BTreeMap::new(),
            checker: Checker::default(),
            trace: Trace::new(verbose),
            faults: true,
            next_op: 1,
            next_ctx: 1,
            first_leader_term: None,
            slow_member: None,
            cluster_origin: None,
            snapshots: Vec::new(),
            stats: Stats::default(),
        };
        if let Some(ck) = world.opts.clock.clone() {
            for m in &mut world.members {
                // Booted at different times (up to ~11 days ago), wall clocks within the skew.
                m.clock.mono_origin = world.prng.between(1, 1_000_000) * 1_000_000_000;
                m.clock.boot = u128::from(world.prng.between(1, u64::MAX));
                let skew =
                    world.prng.between(0, 2 * ck.start_skew_ms) as i64 - ck.start_skew_ms as i64;
                m.clock.wall_offset = skew * NS_PER_MS as i64;
            }
            let n = world.members.len() as u64;
            let odd = world.prng.below(n) as usize;
            world.members[odd].clock.wall_offset += ck.start_offset_days * DAY as i64;
        }
        world
    }

    /// The true cluster time at the current virtual time, once a clock was fixed: the first
    /// fixed clock's, advancing with virtual time.
    fn true_cluster_time(&self) -> Option<u64> {
        self.cluster_origin.map(|o| o + self.now * NS_PER_MS)
    }

    /// The node thread's `set_clock` before a tick or any input: a leader's heartbeats and
    /// appends carry its clock as it is, and so do the first appends of a member that has
    /// just won an election (the time it is about to lead with).
    fn set_leader_clock(&mut self, i: usize) {
        let mono = self.members[i].clock.mono(self.now);
        let m = &mut self.members[i];
        if let (Some(raft), Some(cluster)) = (m.raft.as_mut(), &m.clock.cluster) {
            raft.set_clock(cluster.now_at(mono), cluster.is_fixed());
        }
    }

    /// Clock faults and the leader's `Sync` proposals, every virtual millisecond.
    fn clocks_step(&mut self) -> Result<(), Violation> {
        let Some(ck) = self.opts.clock.clone() else {
            return Ok(());
        };
        // Wall clocks jump once the cluster has formed: every member has taken a leader's
        // time (or led). Before that a wall clock is only a provisional guess (see
        // `ClusterClock`), and clocks days apart when a cluster first forms are a scenario
        // of their own (`fresh_clusters_with_wall_clocks_days_apart`).
        let formed = ck.jumps_before_formed || self.members.iter().all(|m| m.clock.ever_fixed);
        for i in 0..self.members.len() {
            if formed && self.prng.chance(1, ck.jump_every_ms.max(1)) {
                let days = self.prng.between(1, 3) as i64;
                let sign = if self.prng.chance(1, 2) { 1 } else { -1 };
                let m = &mut self.members[i];
                m.clock.wall_offset = m
                    .clock
                    .wall_offset
                    .saturating_add(sign * days * DAY as i64)
                    .clamp(-10 * DAY as i64, 10 * DAY as i64);
                let (id, offset) = (m.id, m.clock.wall_offset);
                self.stats.wall_jumps += 1;
                self.trace
                    .push(self.now, Event::WallClock { member: id, offset });
            }
        }
        if ck.sync_every_ms > 0 && self.prng.chance(1, ck.sync_every_ms) {
            if let Some(i) = self.leader() {
                let mono = self.members[i].clock.mono(self.now);
                let m = &mut self.members[i];
                if let (Some(raft), Some(cluster)) = (m.raft.as_mut(), m.clock.cluster.as_ref()) {
                    let _ = raft.propose(clocks::encode_sync(cluster.now_at(mono)));
                }
                self.pump(i)?;
                self.after_event(i)?;
            }
        }
        Ok(())
    }

    /// The clock checks for member `i` (see `clocks.rs`), after the driver's follower step:
    /// a member that does not lead observes the leader's clock (src/node/mod.rs
    /// `publish_status`).
    fn check_clock(&mut self, i: usize) -> Result<(), Violation> {
        let Some(ck) = self.opts.clock.as_ref() else {
            return Ok(());
        };
        // Fresh members' clocks are provisional until one leads (then they all take its
        // time), so two leaders that fixed their own clocks before hearing each other may
        // be up to twice the start-up skew apart.
        let ahead_ok = 2 * ck.start_skew_ms * NS_PER_MS + NS_PER_MS;
        let behind_ok = ck.behind_tolerance_ms * NS_PER_MS;
        let now_ms = self.now;
        let m = &mut self.members[i];
        let mono = m.clock.mono(now_ms);
        let (Some(raft), Some(cluster)) = (m.raft.as_ref(), m.clock.cluster.as_mut()) else {
            return Ok(());
        };
        let bad = |detail: String| Violation::Clock {
            member: m.id,
            detail,
        };
        // The node's publish_status: a leader's clock is the cluster's, a follower takes
        // the leader's.
        let leader_clock = raft.leader_clock();
        if raft.role() == Role::Leader {
            if !cluster.is_fixed() {
                cluster.follow_at(leader_clock, mono);
            }
            cluster.fix();
        } else {
            cluster.follow_at(leader_clock, mono);
        }
        if leader_clock < m.clock.seen_leader_clock {
            return Err(bad(format!(
                "leader_clock() went back from {} to {leader_clock}",
                m.clock.seen_leader_clock
            )));
        }
        m.clock.seen_leader_clock = leader_clock;
        if !cluster.is_fixed() {
            return Ok(());
        }
        m.clock.ever_fixed = true;
        let now = cluster.now_at(mono);
        // A restart resumes the line its last batch recorded: a catch-up with a leader's
        // clock after that batch (within the start-up skew and a message delay, once the
        // cluster formed) is not on disk.
        let restart_slack = if std::mem::take(&mut m.clock.restarted) {
            ahead_ok + ck.net_delay_max_ms * NS_PER_MS
        } else {
            0
        };
        if now + restart_slack < m.clock.seen_cluster {
            return Err(bad(format!(
                "cluster time went back by {} ms (from {} to {now})",
                (m.clock.seen_cluster - now) / NS_PER_MS,
                m.clock.seen_cluster
            )));
        }
        m.clock.seen_cluster = m.clock.seen_cluster.max(now);
        // The first fixed clock defines the true cluster time: it advances with virtual time.
        let origin = *self
            .cluster_origin
            .get_or_insert(now.saturating_sub(now_ms * NS_PER_MS));
        let truth = origin + now_ms * NS_PER_MS;
        // A heard leader clock is a past reading (it may be old after a partition): it may
        // only never be ahead. The member's own cluster time runs on, and must be near.
        let ahead = |t: u64| t > truth + ahead_ok;
        if ahead(leader_clock) || ahead(now) || now + behind_ok < truth {
            let off = |t: u64| (t as i128 - truth as i128) / NS_PER_MS as i128;
            return Err(Violation::Clock {
                member: self.members[i].id,
                detail: format!(
                    "cluster time is {} ms off the true cluster time, leader_clock() {} ms (wall clock offset {} ms)",
                    off(now),
                    off(leader_clock),
                    self.members[i].clock.wall_offset / NS_PER_MS as i64
                ),
            });
        }
        let lag = truth.saturating_sub(now) / NS_PER_MS;
        self.stats.clock_lag_max_ms = self.stats.clock_lag_max_ms.max(lag);
        Ok(())
    }

    /// A heartbeat's clock may be stale (a new leader's before its first tick: followers keep
    /// the highest they heard), but never ahead of the true cluster time.
    fn check_heartbeat_clock(&self, m: &Message) -> Result<(), Violation> {
        let (Some(ck), MessageBody::Heartbeat { clock, .. }) = (&self.opts.clock, &m.body) else {
            return Ok(());
        };
        let ahead_ok = 2 * ck.start_skew_ms * NS_PER_MS + NS_PER_MS;
        let Some(truth) = self.true_cluster_time() else {
            return Ok(());
        };
        if *clock > truth + ahead_ok {
            return Err(Violation::Clock {
                member: m.from,
                detail: format!(
                    "sent a heartbeat with a clock {} ms ahead of the true cluster time",
                    (*clock - truth) / NS_PER_MS
                ),
            });
        }
        Ok(())
    }

    /// Runs the faulty phase, heals, waits for convergence and checks the end state.
    pub fn run(&mut self) -> Result<(), Violation> {
        for i in 0..self.members.len() {
            if self.members[i].joined {
                self.restart(i)?;
            }
        }
        while self.now < self.opts.fault_ms {
            self.step_ms()?;
        }
        self.heal()?;
        let deadline = self.now + self.opts.heal_budget_ms;
        loop {
            self.step_ms()?;
            if self.converged() {
                break;
            }
            if self.now >= deadline {
                return Err(Violation::NoConvergence {
                    detail: self.describe_members(),
                });
            }
        }
        self.stats.virtual_ms = self.now;
        self.stats.messages = self.net.sent;
        self.stats.committed = self.checker.applied.len() as u64;
        self.stats.elections = self.checker.elections() as u64;
        self.final_checks()
    }

    fn step_ms(&mut self) -> Result<(), Violation> {
        self.now += 1;
        for i in 0..self.members.len() {
            if self.members[i].raft.is_none() {
                let m = &self.members[i];
                if m.joined && !m.removed && self.now >= m.down_until {
                    self.restart(i)?;
                }
                continue;
            }
            if self.members[i]
                .write
                .as_ref()
                .is_some_and(|w| w.done_at <= self.now)
            {
                self.complete_write(i)?;
                self.pump(i)?;
                self.after_event(i)?;
            }
            if self.members[i].raft.is_some() && self.complete_applies(i)? {
                self.pump(i)?;
                self.after_event(i)?;
            }
            if self.members[i].next_tick_at <= self.now && !self.driver_blocked(i) {
                self.members[i].next_tick_at = self.now + self.opts.tick_ms;
                let id = self.members[i].id;
                self.trace.push(self.now, Event::Tick(id));
                self.set_leader_clock(i);
                if let Some(raft) = self.members[i].raft.as_mut() {
                    raft.tick();
                }
                self.pump(i)?;
                self.after_event(i)?;
            }
        }
        while let Some(m) = self.net.pop_due(self.now) {
            self.deliver(m)?;
        }
        self.snapshots_step()?;
        self.clients_step()?;
        self.clocks_step()?;
        if self.faults {
            self.faults_step()?;
        }
        if self.now % 250 == 0 {
            self.full_scan()?;
        }
        Ok(())
    }

    fn deliver(&mut self, m: Message) -> Result<(), Violation> {
        let i = (m.to - 1) as usize;
        self.trace.push(
            self.now,
            Event::Deliver {
                from: m.from,
                to: m.to,
                term: m.term,
                kind: m.body.kind(),
            },
        );
        self.check_heartbeat_clock(&m)?;
        if i >= self.members.len() {
            return Ok(());
        }
        self.set_leader_clock(i);
        let Some(raft) = self.members.get_mut(i).and_then(|mb| mb.raft.as_mut()) else {
            return Ok(());
        };
        raft.step(m);
        self.pump(i)?;
        self.after_event(i)
    }

    /// A blocking driver waits for member `i`'s write (see [`SlowDisk::blocking_driver`]).
    fn driver_blocked(&self, i: usize) -> bool {
        self.members[i].write.is_some()
            && self
                .opts
                .slow_disk
                .as_ref()
                .is_some_and(|s| s.blocking_driver)
    }

    /// The driver: send what may go, hand out the next Ready, persist it (now or later).
    fn pump(&mut self, i: usize) -> Result<(), Violation> {
        loop {
            let busy = self.members[i].write.is_some();
            if self.driver_blocked(i) {
                return Ok(());
            }
            let Some(raft) = self.members[i].raft.as_mut() else {
                return Ok(());
            };
            // As pikv's node does: a leader holds its write back while no quorum could
            // acknowledge the entries yet (asked first: it queues the appends due).
            let hold = !busy && self.opts.apply_lag_ms > 0 && raft.own_write_can_wait();
            let msgs = raft.take_messages();
            let snapshots = raft.take_snapshot_requests();
            let reads = raft.take_read_states();
            let ready = if busy || hold { None } else { raft.ready() };
            if hold {
                self.stats.held_writes += 1;
            }
            let prev_term = ready
                .as_ref()
                .and_then(|rd| rd.entries.first())
                .map(|e| raft.log_term(e.index - 1));
            for rs in reads {
                self.members[i].read_states.insert(rs.ctx, rs.index);
            }
            for m in msgs {
                self.net.send(self.now, m, &mut self.prng);
            }
            for to in snapshots {
                self.start_snapshot(i, to);
            }
            let Some(mut rd) = ready else {
                return Ok(());
            };
            for m in std::mem::take(&mut rd.messages) {
                self.net.send(self.now, m, &mut self.prng);
            }
            for rs in std::mem::take(&mut rd.read_states) {
                self.members[i].read_states.insert(rs.ctx, rs.index);
            }
            let id = self.members[i].id;
            if let Some(prev) = prev_term {
                let Some(prev) = prev else {
                    return Err(Violation::Member {
                        member: id,
                        detail: "a Ready's entries follow an entry of unknown term".into(),
                    });
                };
                self.checker.observe_entries(id, prev, &rd.entries)?;
            }
            if !rd.needs_persist() {
                let p = self.persisted(i);
                if let Some(raft) = self.members[i].raft.as_mut() {
                    raft.advance(p);
                }
                continue;
            }
            if self.opts.apply_lag_ms > 0 {
                // As pikv's node does: committed entries the log holds durably already go
                // to the apply thread now, ahead of this Ready's write.
                // The core's durable index, not the disk's last: a tail a newer leader
                // overwrote is still on the disk until this Ready's write replaces it.
                let durable = self.members[i]
                    .raft
                    .as_ref()
                    .map_or(0, Raft::persisted_index);
                let n = rd.committed_entries.partition_point(|e| e.index <= durable);
                if n > 0 {
                    let early: Vec<Entry> = rd.committed_entries.drain(..n).collect();
                    self.stats.early_applies += 1;
                    self.queue_apply(i, early, true);
                }
            }
            let latency = self.fsync_latency(i);
            self.members[i].write = Some(Write {
                ready: rd,
                done_at: self.now + latency,
            });
            if latency > 0 {
                return Ok(());
            }
            self.complete_write(i)?;
        }
    }

    fn fsync_latency(&mut self, i: usize) -> u64 {
        if let Some(slow) = &self.opts.slow_disk {
            if self.slow_member == Some(i) && self.prng.chance(slow.stall_per_mille, 1000) {
                self.stats.stalls += 1;
                let leads = self.members[i]
                    .raft
                    .as_ref()
                    .is_some_and(|r| r.role() == Role::Leader);
                if leads {
                    self.stats.leader_stalls += 1;
                }
                return self.prng.between(slow.stall_min_ms, slow.stall_max_ms);
            }
        }
        if self.prng.chance(self.opts.fsync_slow_per_mille, 1000) {
            return self.prng.between(1, self.opts.fsync_slow_ms);
        }
        self.prng.between(0, self.opts.fsync_max_ms)
    }

    fn persisted(&self, i: usize) -> Persisted {
        Persisted {
            durable_index: self.members[i].disk.last_index(),
            applied_index: self.members[i].disk.applied,
        }
    }

    /// The simulated fsync completed: one atomic write of the Ready, then `advance`.
    fn complete_write(&mut self, i: usize) -> Result<(), Violation> {
        let Some(Write { ready, .. }) = self.members[i].write.take() else {
            return Ok(());
        };
        let id = self.members[i].id;
        if self.faults && self.prng.chance(self.opts.persist_fail_per_mille, 1000) {
            self.stats.persist_failures += 1;
            self.trace.push(self.now, Event::PersistFailed(id));
            if self.opts.apply_lag_ms > 0 {
                // The node stops on a failed log write (its applies may be in flight).
                self.crash(i);
                return Ok(());
            }
            if let Some(raft) = self.members[i].raft.as_mut() {
                raft.persist_failed();
            }
            return Ok(());
        }
        self.trace.push(
            self.now,
            Event::Persist {
                member: id,
                entries: ready.entries.len(),
                committed: ready.committed_entries.len(),
                hard_state: ready.hard_state.is_some(),
            },
        );
        let bad = |detail: String| Violation::Member { member: id, detail };
        let mono = self.members[i].clock.mono(self.now);
        let m = &mut self.members[i];
        if let Some(c) = &m.clock.cluster {
            m.disk.clock_anchor = Some(c.anchor_at(m.clock.boot, mono));
        }
        let disk = &mut m.disk;
        if let Some(hs) = ready.hard_state {
            let old = disk.hard_state;
            if hs.term < old.term {
                return Err(bad(format!(
                    "durable term goes back {} -> {}",
                    old.term, hs.term
                )));
            }
            if hs.term == old.term && old.vote != 0 && hs.vote != old.vote {
                return Err(bad(format!(
                    "durable vote changes within term {}: {} -> {}",
                    hs.term, old.vote, hs.vote
                )));
            }
            disk.hard_state = hs;
        }
        if let Some(first) = ready.entries.first() {
            let keep = first.index - 1;
            if keep > disk.last_index() || keep < disk.log_offset {
                return Err(bad(format!(
                    "entries from {} do not continue the durable log's {}..={}",
                    first.index,
                    disk.log_offset,
                    disk.last_index()
                )));
            }
            for e in &ready.entries {
                if e.index <= disk.applied && disk.entry(e.index) != Some(e) {
                    return Err(bad(format!("overwrites applied entry {}", e.index)));
                }
            }
            // The contract: appending removes the durable entries after the last one.
            if disk.last_index() > keep {
                self.stats.overwrites += 1;
            }
            disk.log.truncate((keep - disk.log_offset) as usize);
            disk.log.extend(ready.entries.iter().cloned());
        }
        if self.opts.apply_lag_ms > 0 {
            // The log write is durable: report it, and apply behind it, in order.
            let p = self.persisted(i);
            if let Some(raft) = self.members[i].raft.as_mut() {
                raft.advance(p);
            }
            if !ready.committed_entries.is_empty() {
                self.queue_apply(i, ready.committed_entries, false);
            }
            return Ok(());
        }
        self.apply_committed(i, &ready.committed_entries)?;
        let p = self.persisted(i);
        if let Some(raft) = self.members[i].raft.as_mut() {
            raft.advance(p);
        }
        self.observe_store_clock(i);
        self.maybe_compact(i);
        Ok(())
    }

    // The apply thread takes batches in the order they were handed out, each after a lag.
    fn queue_apply(&mut self, i: usize, entries: Vec<Entry>, records_commit: bool) {
        let lag = self.prng.between(0, self.opts.apply_lag_ms);
        let m = &mut self.members[i];
        let at = m
            .applies
            .back()
            .map_or(0, |(t, _, _)| *t)
            .max(self.now + lag);
        m.applies.push_back((at, entries, records_commit));
    }

    /// The apply thread's batches that are due (`apply_lag_ms`): applied, then reported with
    /// `applied_to`.
    fn complete_applies(&mut self, i: usize) -> Result<bool, Violation> {
        let mut any = false;
        while let Some((at, _, _)) = self.members[i].applies.front() {
            if *at > self.now {
                break;
            }
            let Some((_, entries, records_commit)) = self.members[i].applies.pop_front() else {
                break;
            };
            if let (true, Some(last)) = (records_commit, entries.last()) {
                // Committed: the core handed them out as such (the checker verifies it
                // against the holders when each is applied).
                let hs = &mut self.members[i].disk.hard_state;
                hs.commit = hs.commit.max(last.index);
            }
            self.apply_committed(i, &entries)?;
            let applied = self.members[i].disk.applied;
            if let Some(raft) = self.members[i].raft.as_mut() {
                raft.applied_to(applied);
            }
            self.observe_store_clock(i);
            self.maybe_compact(i);
            any = true;
        }
        Ok(any)
    }

    // The node's on_persisted: the cluster time the store recorded.
    fn observe_store_clock(&mut self, i: usize) {
        let mono = self.members[i].clock.mono(self.now);
        let m = &mut self.members[i];
        if let Some(cluster) = m.clock.cluster.as_mut() {
            cluster.observe_at(m.disk.cluster_clock, mono);
        }
    }

    /// Applies committed entries to member `i`'s disk, checking they are durable, in order
    /// and committed.
    fn apply_committed(&mut self, i: usize, committed: &[Entry]) -> Result<(), Violation> {
        let id = self.members[i].id;
        let bad = |detail: String| Violation::Member { member: id, detail };
        let term = self.members[i].raft.as_ref().map_or(0, Raft::term);
        let mut removed_at = None;
        for e in committed {
            if removed_at.is_some() {
                // pikv's node stops at its removal: nothing after it is applied here.
                break;
            }
            let disk = &self.members[i].disk;
            if e.index != disk.applied + 1 {
                return Err(bad(format!(
                    "applies {} after applied {}",
                    e.index, disk.applied
                )));
            }
            if disk.entry(e.index) != Some(e) {
                return Err(bad(format!(
                    "applies entry {} that is not durable",
                    e.index
                )));
            }
            if e.index > disk.hard_state.commit {
                return Err(bad(format!(
                    "applies entry {} beyond the durable commit {}",
                    e.index, disk.hard_state.commit
                )));
            }
            let holders = self
                .members
                .iter()
                .filter(|m| m.disk.entry(e.index) == Some(e))
                .count();
            let quorum = commit_quorum(disk, e);
            self.checker.applied_entry(id, term, e, holders, quorum)?;
            let disk = &mut self.members[i].disk;
            if let Some((change, _)) = e.payload.membership() {
                change.applied_to(&mut disk.voters);
                if change == ConfChange::RemoveVoter(id) {
                    removed_at = Some(e.index);
                }
            }
            if let Some((op, key)) = decode_op(&e.payload) {
                disk.kv.insert(key, op);
                self.op_index.entry(op).or_insert(e.index);
            }
            if let Some(t) = e.payload.command().and_then(clocks::decode_sync) {
                disk.cluster_clock = disk.cluster_clock.max(t);
            }
            disk.applied = e.index;
        }
        if removed_at.is_some() {
            self.retire(i);
        }
        Ok(())
    }

    /// Drops applied entries beyond `compact_retain` from member `i`'s log, in memory and on
    /// disk (the state machine holds their effect).
    fn maybe_compact(&mut self, i: usize) {
        let retain = self.opts.compact_retain;
        let m = &mut self.members[i];
        let Some(raft) = m.raft.as_mut() else {
            return;
        };
        let applied = raft.applied_index().min(m.disk.applied);
        if retain == 0 || applied < m.disk.log_offset + 2 * retain {
            return;
        }
        let cut = applied - retain;
        let Some(term) = m.disk.entry(cut).map(|e| e.term) else {
            return;
        };
        raft.compact(cut);
        let disk = &mut m.disk;
        disk.log.drain(..(cut - disk.log_offset) as usize);
        disk.log_offset = cut;
        disk.log_offset_term = term;
    }

    /// Leader `i`'s driver starts sending `to` a snapshot of its applied state.
    fn start_snapshot(&mut self, i: usize, to: NodeId) {
        let m = &self.members[i];
        let Some(raft) = m.raft.as_ref() else {
            return;
        };
        let meta = raft
            .snapshot_meta()
            .filter(|meta| meta.index == m.disk.applied);
        let term = raft.term();
        let (from_boot, kv, cluster_clock) = (m.boots, m.disk.kv.clone(), m.disk.cluster_clock);
        let Some(meta) = meta else {
            if let Some(raft) = self.members[i].raft.as_mut() {
                raft.snapshot_sent(to, Err(()));
            }
            return;
        };
        let fails = self.faults && self.prng.chance(1, 10);
        let at = self.now + self.prng.between(1, 40);
        self.snapshots.push(SnapshotTransfer {
            at,
            from: i,
            from_boot,
            to,
            term,
            meta,
            kv,
            cluster_clock,
            fails,
        });
    }

    /// Transfers that arrive now: the follower installs the state (atomically, between two
    /// writes) and the core learns where it ends; the leader learns the outcome.
    fn snapshots_step(&mut self) -> Result<(), Violation> {
        let mut k = 0;
        while k < self.snapshots.len() {
            if self.snapshots[k].at > self.now {
                k += 1;
                continue;
            }
            let j = (self.snapshots[k].to - 1) as usize;
            if self.members[j].write.is_some() && !self.snapshots[k].fails {
                // The driver installs between writes: a moment later.
                self.snapshots[k].at = self.now + 1;
                k += 1;
                continue;
            }
            let t = self.snapshots.swap_remove(k);
            let leader_up =
                self.members[t.from].raft.is_some() && self.members[t.from].boots == t.from_boot;
            let from_id = self.members[t.from].id;
            let installed = !t.fails && self.install_snapshot(j, from_id, &t)?;
            self.trace.push(
                self.now,
                Event::Snapshot {
                    from: from_id,
                    to: t.to,
                    index: t.meta.index,
                    outcome: if t.fails {
                        "lost"
                    } else if installed {
                        "installed"
                    } else {
                        "refused"
                    },
                },
            );
            if leader_up {
                let outcome = if installed { Ok(t.meta.index) } else { Err(()) };
                if let Some(raft) = self.members[t.from].raft.as_mut() {
                    raft.snapshot_sent(t.to, outcome);
                }
                self.pump(t.from)?;
                self.after_event(t.from)?;
            }
        }
        Ok(())
    }

    /// Member `j` installs snapshot `t` if its core takes it; returns whether it did.
    fn install_snapshot(
        &mut self,
        j: usize,
        from: NodeId,
        t: &SnapshotTransfer,
    ) -> Result<bool, Violation> {
        let index = t.meta.index;
        // The snapshot must be the state of the agreed log up to its index.
        let mut expected: BTreeMap<u8, u64> = BTreeMap::new();
        for a in self.checker.applied.iter().take(index as usize) {
            if let Some((op, key)) = decode_op(&a.entry.payload) {
                expected.insert(key, op);
            }
        }
        if self.checker.applied.len() < index as usize || expected != t.kv {
            return Err(Violation::Member {
                member: from,
                detail: format!("sent a snapshot at {index} that is not the agreed state there"),
            });
        }
        let Some(raft) = self.members[j].raft.as_mut() else {
            return Ok(false);
        };
        if !raft.restore(from, t.term, t.meta.clone()) {
            self.pump(j)?;
            return Ok(false);
        }
        let m = &mut self.members[j];
        m.applies.clear();
        let disk = &mut m.disk;
        // As the core does: a log holding the snapshot's last entry keeps what follows.
        if disk.entry(index).map(|e| e.term) == Some(t.meta.term) {
            disk.log.drain(..(index - disk.log_offset) as usize);
        } else {
            disk.log.clear();
        }
        disk.log_offset = index;
        disk.log_offset_term = t.meta.term;
        disk.applied = index;
        disk.kv = t.kv.clone();
        disk.voters = t.meta.voters.clone();
        disk.cluster_clock = disk.cluster_clock.max(t.cluster_clock);
        disk.hard_state.commit = disk.hard_state.commit.max(index);
        self.stats.snapshots += 1;
        self.observe_store_clock(j);
        self.pump(j)?;
        self.after_event(j)?;
        Ok(true)
    }

    /// Member `i` applied its own removal: it stops for good, as pikv's node does.
    fn retire(&mut self, i: usize) {
        self.members[i].removed = true;
        let id = self.members[i].id;
        self.trace.push(self.now, Event::Removed(id));
        self.stop(i);
    }

    /// Checks after every event, for member `i` and the clients waiting on it.
    fn after_event(&mut self, i: usize) -> Result<(), Violation> {
        self.complete_clients(i)?;
        let now = self.now;
        let m = &mut self.members[i];
        let Some(raft) = m.raft.as_ref() else {
            return Ok(());
        };
        if let Some(detail) = raft.violation() {
            return Err(Violation::Member {
                member: m.id,
                detail,
            });
        }
        if raft.term() < m.seen_term || raft.commit_index() < m.seen_commit {
            return Err(Violation::Member {
                member: m.id,
                detail: format!(
                    "term/commit went back: {}/{} after {}/{}",
                    raft.term(),
                    raft.commit_index(),
                    m.seen_term,
                    m.seen_commit
                ),
            });
        }
        if raft.term() != m.seen_term || Some(raft.role()) != m.seen_role {
            self.trace.push(
                now,
                Event::Role {
                    member: raft.id(),
                    role: format!("{:?}", raft.role()),
                    term: raft.term(),
                },
            );
        }
        let prev_role = m.seen_role;
        m.seen_term = raft.term();
        m.seen_commit = raft.commit_index();
        m.seen_role = Some(raft.role());
        self.checker.election_safety(raft)?;
        self.checker.leader_completeness(raft)?;
        self.watch_elections(i, prev_role)?;
        self.check_clock(i)
    }

    /// Notes the first leader (and picks the slow disk then); with `no_elections`, any
    /// campaign started after it, and any newer term, is a violation.
    fn watch_elections(&mut self, i: usize, prev_role: Option<Role>) -> Result<(), Violation> {
        let Some(raft) = self.members[i].raft.as_ref() else {
            return Ok(());
        };
        let (id, role, term) = (raft.id(), raft.role(), raft.term());
        let Some(first) = self.first_leader_term else {
            if role == Role::Leader {
                self.first_leader_term = Some(term);
                if let Some(slow) = &self.opts.slow_disk {
                    let n = self.members.len() as u64;
                    let pick = if slow.on_leader {
                        i
                    } else {
                        (i + 1 + self.prng.below(n - 1) as usize) % self.members.len()
                    };
                    self.slow_member = Some(pick);
                    self.trace.push(
                        self.now,
                        Event::SlowDisk {
                            member: self.members[pick].id,
                        },
                    );
                }
            }
            return Ok(());
        };
        // A member that has not heard of the first leader yet may still time out on the
        // first election (its vote request was in flight): only campaigns of members that
        // followed the first leader, and newer terms, count.
        let campaigning = |r: Option<Role>| matches!(r, Some(Role::PreCandidate | Role::Candidate));
        let campaign_started = campaigning(Some(role)) && !campaigning(prev_role);
        let settled = self.members[i].settled;
        if term >= first && raft.leader().is_some() {
            self.members[i].settled = true;
        }
        if self.opts.no_elections && (term > first || (settled && campaign_started)) {
            return Err(Violation::Election {
                member: id,
                detail: format!(
                    "{role:?} in term {term} after the first leader of term {first} was established, with no fault but a slow disk on member {}",
                    self.slow_member.map_or(0, |s| self.members[s].id)
                ),
            });
        }
        Ok(())
    }

    /// The O(log) checks, every 250 virtual ms: whole logs, and that what the core calls
    /// durable is on the disk.
    fn full_scan(&mut self) -> Result<(), Violation> {
        for m in &self.members {
            let Some(raft) = m.raft.as_ref() else {
                continue;
            };
            self.checker.full_log(raft)?;
            let persisted = raft.persisted_index();
            for e in raft
                .log_entries()
                .iter()
                .take_while(|e| e.index <= persisted)
            {
                if m.disk.entry(e.index) != Some(e) {
                    return Err(Violation::Member {
                        member: m.id,
                        detail: format!(
                            "the core counts entry {} durable, the disk holds {:?}",
                            e.index,
                            m.disk.entry(e.index)
                        ),
                    });
                }
            }
        }
        Ok(())
    }

    fn crash(&mut self, i: usize) {
        let id = self.members[i].id;
        self.stats.crashes += 1;
        self.trace.push(self.now, Event::Crash(id));
        let down = self.prng.between(1, self.opts.down_max_ms);
        self.members[i].down_until = self.now + down;
        self.stop(i);
    }

    /// Member `i` stops (crashed or retired): everything not on its disk is gone, and its
    /// clients stop waiting.
    fn stop(&mut self, i: usize) {
        let m = &mut self.members[i];
        m.raft = None;
        m.write = None;
        m.applies.clear();
        m.read_states.clear();
        // Term and commit are only durable once written: a restart may resume below what
        // memory held (the disk's own checks say the durable ones never go back).
        m.seen_term = 0;
        m.seen_commit = 0;
        m.seen_role = None;
        m.clock.cluster = None;
        m.clock.seen_leader_clock = 0;
        for c in 0..self.clients.len() {
            if self.clients[c].member == i {
                self.give_up(c);
            }
        }
    }

    fn restart(&mut self, i: usize) -> Result<(), Violation> {
        let m = &mut self.members[i];
        if self.opts.lying_disk {
            m.disk.hard_state.vote = 0;
        }
        // As pikv's recovery does (`disk::open_log`): the log's commit index may trail what
        // the apply thread applied and recorded beside it.
        let mut hard_state = m.disk.hard_state;
        hard_state.commit = hard_state.commit.max(m.disk.applied);
        let initial = InitialState {
            hard_state,
            applied: m.disk.applied,
            compacted_index: m.disk.log_offset,
            compacted_term: m.disk.log_offset_term,
            entries: m.disk.log.clone(),
        };
        let config = Config {
            election_ticks: self.opts.election_ticks,
            heartbeat_ticks: self.opts.heartbeat_ticks,
            seed: self
                .seed
                .wrapping_mul(0x2545_F491_4F6C_DD1D)
                .wrapping_add(m.boots),
            max_inflight_msgs: self.opts.max_inflight_msgs,
            max_entries_per_msg: self.opts.max_entries_per_msg,
            broken_rule: self.opts.broken_rule,
        };
        m.boots += 1;
        let raft = Raft::new(m.id, m.disk.voters.clone(), initial, &config);
        if raft.applied_index() != m.disk.applied {
            return Err(Violation::Member {
                member: m.id,
                detail: format!(
                    "restarted with applied {} from a disk at {}",
                    raft.applied_index(),
                    m.disk.applied
                ),
            });
        }
        m.raft = Some(raft);
        // The node's start: the cluster clock resumes from what the store recorded.
        m.clock.cluster = Some(ClusterClock::resume(
            m.disk.cluster_clock,
            m.disk.clock_anchor,
            m.clock.boot,
            m.clock.wall(self.now),
            m.clock.mono(self.now),
        ));
        m.clock.restarted = true;
        m.next_tick_at = self.now + self.prng.between(1, self.opts.tick_ms);
        let id = m.id;
        self.trace.push(self.now, Event::Restart(id));
        self.pump(i)?;
        self.after_event(i)
    }

    fn faults_step(&mut self) -> Result<(), Violation> {
        let n = self.members.len();
        if self.opts.crash_every_ms > 0 && self.prng.chance(1, self.opts.crash_every_ms) {
            let i = self.prng.below(n as u64) as usize;
            if self.members[i].raft.is_some() {
                self.crash(i);
            }
        }
        if self.opts.partition_every_ms > 0 && self.prng.chance(1, self.opts.partition_every_ms) {
            match self.prng.below(10) {
                0..=3 => self.net.heal(),
                4..=6 => {
                    let lone = self.ids[self.prng.below(n as u64) as usize];
                    self.net.split(&[lone], &self.ids);
                }
                7..=8 => {
                    let mut group: Vec<NodeId> = self
                        .ids
                        .iter()
                        .copied()
                        .filter(|_| self.prng.chance(1, 2))
                        .collect();
                    group.sort_unstable();
                    self.net.split(&group, &self.ids);
                }
                _ => {
                    let a = self.ids[self.prng.below(n as u64) as usize];
                    let b = self.ids[self.prng.below(n as u64) as usize];
                    if a != b {
                        self.net.cut_one_way(a, b);
                    }
                }
            }
            self.trace.push(self.now, Event::Net(self.net.describe()));
        }
        if self.opts.membership_every_ms > 0 && self.prng.chance(1, self.opts.membership_every_ms) {
            self.membership_step()?;
        }
        if self.opts.transfer_every_ms > 0 && self.prng.chance(1, self.opts.transfer_every_ms) {
            if let Some(i) = self.leader() {
                let to = self.ids[self.prng.below(n as u64) as usize];
                let from = self.members[i].id;
                self.stats.transfers += 1;
                self.trace.push(self.now, Event::Transfer { from, to });
                if let Some(raft) = self.members[i].raft.as_mut() {
                    let _ = raft.transfer_leader(to);
                }
                self.pump(i)?;
                self.after_event(i)?;
            }
        }
        Ok(())
    }

    /// Asks the leader to add the next member never used (started empty at once, as an
    /// operator starts the new board after `member add`) or to remove a voter (itself
    /// too), keeping 2 to `max_voters` voters.
    fn membership_step(&mut self) -> Result<(), Violation> {
        let Some(l) = self.leader() else {
            return Ok(());
        };
        let Some(raft) = self.members[l].raft.as_ref() else {
            return Ok(());
        };
        let voters = raft.voters().to_vec();
        let fresh = self.members.iter().position(|m| !m.joined);
        let add = match fresh {
            Some(_) if voters.len() < self.opts.max_voters => {
                voters.len() <= 2 || self.prng.chance(1, 2)
            }
            _ => false,
        };
        let pick = |prng: &mut Prng| voters[prng.below(voters.len() as u64) as usize];
        let change = match fresh {
            Some(f) if add => ConfChange::AddVoter(self.members[f].id),
            // Readdressing changes no voter, but goes through the same one-at-a-time rule.
            _ if !voters.is_empty() && self.prng.chance(1, 5) => {
                ConfChange::UpdateMember(pick(&mut self.prng))
            }
            _ if voters.len() > 2 => ConfChange::RemoveVoter(pick(&mut self.prng)),
            _ => return Ok(()),
        };
        let leader = self.members[l].id;
        let Some(raft) = self.members[l].raft.as_mut() else {
            return Ok(());
        };
        let index = raft.propose_conf_change(change, vec![]).ok();
        self.trace.push(
            self.now,
            Event::Membership {
                leader,
                change: format!("{change:?}"),
                index,
            },
        );
        self.pump(l)?;
        self.after_event(l)?;
        match (index, change) {
            (Some(_), ConfChange::AddVoter(id)) => {
                self.stats.added += 1;
                let f = (id - 1) as usize;
                self.members[f].joined = true;
                self.restart(f)?;
            }
            (Some(_), ConfChange::RemoveVoter(_)) => self.stats.removed += 1,
            (Some(_), ConfChange::UpdateMember(_)) => self.stats.updated += 1,
            (None, _) => {}
        }
        Ok(())
    }

    /// The member a client would find as leader: the live leader of the highest term.
    fn leader(&self) -> Option<usize> {
        (0..self.members.len())
            .filter(|i| {
                self.members[*i]
                    .raft
                    .as_ref()
                    .is_some_and(|r| r.role() == Role::Leader)
            })
            .max_by_key(|i| self.members[*i].raft.as_ref().map_or(0, Raft::term))
    }

    fn clients_step(&mut self) -> Result<(), Violation> {
        for c in 0..self.clients.len() {
            if self.clients[c].pending.is_some() {
                if self.now >= self.clients[c].deadline {
                    self.give_up(c);
                }
                continue;
            }
            if !self.faults || self.now < self.clients[c].next_at {
                continue;
            }
            self.clients[c].next_at = self.now + self.prng.between(1, self.opts.op_gap_max_ms);
            let key = self.prng.below(u64::from(self.opts.keys)) as u8;
            let write = self.prng.chance(1, 2);
            // Writes go to the member taken for the leader; reads there or anywhere
            // (followers forward them).
            let to_hint = write || self.prng.chance(1, 2);
            let i = match (to_hint, self.clients[c].leader_hint) {
                (true, Some(l)) => l,
                _ => self.prng.below(self.members.len() as u64) as usize,
            };
            let id = self.members[i].id;
            self.set_leader_clock(i);
            let Some(raft) = self.members[i].raft.as_mut() else {
                self.clients[c].leader_hint = None;
                continue;
            };
            if write {
                let op = self.next_op;
                self.next_op += 1;
                let index = match raft.propose(encode_op(op, key)) {
                    Ok(index) => {
                        self.clients[c].leader_hint = Some(i);
                        index
                    }
                    // Half the time a follower forwards the write to the leader (as pikv's
                    // API does); the index is learned when the entry is applied.
                    Err(_) if raft.leader().is_some() && self.prng.chance(1, 2) => {
                        if raft.forward(op, encode_op(op, key)).is_err() {
                            continue;
                        }
                        0
                    }
                    Err(_) => {
                        // Redirected to whom this member takes for the leader, if anyone.
                        self.clients[c].leader_hint = raft.leader().map(|l| (l - 1) as usize);
                        continue;
                    }
                };
                self.trace.push(
                    self.now,
                    Event::Propose {
                        member: id,
                        op,
                        index,
                    },
                );
                self.history.push(HistOp {
                    client: c,
                    key,
                    kind: OpKind::Write(op),
                    call: self.now,
                    ret: None,
                    outcome: Outcome::Pending,
                    index,
                });
            } else {
                let ctx = self.next_ctx;
                self.next_ctx += 1;
                if raft.read_index(ctx).is_err() {
                    continue;
                }
                self.trace.push(self.now, Event::Read { member: id, ctx });
                self.history.push(HistOp {
                    client: c,
                    key,
                    kind: OpKind::Read(None),
                    call: self.now,
                    ret: None,
                    outcome: Outcome::Pending,
                    index: 0,
                });
            }
            let cl = &mut self.clients[c];
            cl.pending = Some(self.history.len() - 1);
            cl.member = i;
            cl.ctx = self.next_ctx - 1;
            cl.read_index = None;
            cl.deadline = self.now + self.opts.op_timeout_ms;
            self.pump(i)?;
            self.after_event(i)?;
        }
        Ok(())
    }

    /// A client stops waiting: a write's outcome becomes unknown, a read is dropped.
    fn give_up(&mut self, c: usize) {
        let Some(h) = self.clients[c].pending.take() else {
            return;
        };
        self.clients[c].leader_hint = None;
        let op = &mut self.history[h];
        op.outcome = match op.kind {
            OpKind::Write(_) => Outcome::Unknown,
            OpKind::Read(_) => Outcome::Failed,
        };
        self.trace.push(
            self.now,
            Event::Done {
                client: c,
                outcome: format!("{:?}", op.outcome),
            },
        );
    }

    /// Answers clients waiting on member `i` whose operation is now done.
    fn complete_clients(&mut self, i: usize) -> Result<(), Violation> {
        for c in 0..self.clients.len() {
            let cl = &self.clients[c];
            let Some(h) = cl.pending else {
                continue;
            };
            if cl.member != i {
                continue;
            }
            let m = &self.members[i];
            let op = &self.history[h];
            let outcome = match op.kind {
                OpKind::Write(value) => {
                    // A forwarded write's index is where the agreed log has it.
                    let index = if op.index == 0 {
                        match self.op_index.get(&value) {
                            Some(index) => *index,
                            None => continue,
                        }
                    } else {
                        op.index
                    };
                    if m.disk.applied < index {
                        continue;
                    }
                    self.history[h].index = index;
                    let op = &self.history[h];
                    // Applied here, so it is in the agreed sequence at that index.
                    let applied = &self.checker.applied[op.index as usize - 1].entry;
                    if decode_op(&applied.payload).map(|(id, _)| id) == Some(value) {
                        Outcome::Ok
                    } else {
                        // Another entry took its index: it can never commit.
                        Outcome::Failed
                    }
                }
                OpKind::Read(_) => {
                    let index = match cl.read_index {
                        Some(index) => index,
                        None => match m.read_states.get(&cl.ctx) {
                            Some(index) => *index,
                            None => continue,
                        },
                    };
                    self.clients[c].read_index = Some(index);
                    if m.disk.applied < index {
                        continue;
                    }
                    let value = m.disk.kv.get(&op.key).copied();
                    self.history[h].kind = OpKind::Read(value);
                    Outcome::Ok
                }
            };
            let op = &mut self.history[h];
            op.outcome = outcome;
            if outcome == Outcome::Ok {
                op.ret = Some(self.now);
            }
            self.clients[c].pending = None;
            self.trace.push(
                self.now,
                Event::Done {
                    client: c,
                    outcome: format!("{outcome:?} {:?}", op.kind),
                },
            );
        }
        Ok(())
    }

    /// Ends the faults: the network heals and turns calm, every member comes back.
    fn heal(&mut self) -> Result<(), Violation> {
        self.faults = false;
        self.net.heal();
        self.net.opts = NetOptions::calm();
        self.trace
            .push(self.now, Event::Net("healed for good".into()));
        for i in 0..self.members.len() {
            if self.members[i].raft.is_none() {
                self.members[i].down_until = self.now;
            }
        }
        Ok(())
    }

    /// Every voter up, one leader whose whole log is committed, and every voter applied all
    /// of it. Members outside the leader's configuration (removed, or added by an entry a
    /// later leader overwrote) do not count: nobody talks to them any more.
    fn converged(&self) -> bool {
        let Some(l) = self.leader() else {
            return false;
        };
        let Some(leader) = self.members[l].raft.as_ref() else {
            return false;
        };
        let commit = leader.commit_index();
        let voters = leader.voters();
        commit == leader.last_index()
            && self
                .members
                .iter()
                .filter(|m| voters.contains(&m.id))
                .all(|m| {
                    m.raft.as_ref().is_some_and(|r| {
                        r.last_index() == commit && r.leader() == Some(leader.id())
                    }) && m.disk.applied == commit
                })
    }

    fn describe_members(&self) -> String {
        let mut out = String::new();
        for m in &self.members {
            match &m.raft {
                Some(r) => out.push_str(&format!(
                    "\n    member {}: {:?} term {} leader {:?} last {} commit {} applied {} durable {}{}",
                    m.id,
                    r.role(),
                    r.term(),
                    r.leader(),
                    r.last_index(),
                    r.commit_index(),
                    m.disk.applied,
                    m.disk.last_index(),
                    if m.write.is_some() { " (writing)" } else { "" }
                )),
                None => out.push_str(&format!("\n    member {}: down", m.id)),
            }
        }
        out.push_str(&format!("\n    network: {}", self.net.describe()));
        out
    }

    /// After convergence: every member's state machine is the agreed log's, every
    /// acknowledged write is in it, and each key's history is linearizable.
    fn final_checks(&mut self) -> Result<(), Violation> {
        let applied = &self.checker.applied;
        let mut expected: BTreeMap<u8, u64> = BTreeMap::new();
        let mut in_log: BTreeMap<u64, u64> = BTreeMap::new();
        for a in applied {
            if let Some((op, key)) = decode_op(&a.entry.payload) {
                expected.insert(key, op);
                in_log.insert(op, a.entry.index);
            }
        }
        let voters: Vec<NodeId> = self
            .leader()
            .and_then(|l| self.members[l].raft.as_ref())
            .map_or_else(Vec::new, |r| r.voters().to_vec());
        for m in self.members.iter().filter(|m| voters.contains(&m.id)) {
            if m.disk.applied != applied.len() as u64 || m.disk.kv != expected {
                return Err(Violation::LostWrite {
                    detail: format!(
                        "member {} applied {} of {} entries; its state {:?}, the log's {:?}",
                        m.id,
                        m.disk.applied,
                        applied.len(),
                        m.disk.kv,
                        expected
                    ),
                });
            }
        }
        for op in &mut self.history {
            let OpKind::Write(value) = op.kind else {
                continue;
            };
            match (op.outcome, in_log.get(&value)) {
                (Outcome::Ok, Some(index)) if *index == op.index => {}
                (Outcome::Ok, found) => {
                    return Err(Violation::LostWrite {
                        detail: format!(
                            "write {value} acknowledged at index {}, in the final log at {found:?}",
                            op.index
                        ),
                    })
                }
                // An outcome the client never learned: it happened iff it is in the log.
                (Outcome::Unknown | Outcome::Pending, Some(_)) => op.outcome = Outcome::Unknown,
                (Outcome::Unknown | Outcome::Pending, None) => op.outcome = Outcome::Failed,
                (Outcome::Failed, Some(index)) => {
                    return Err(Violation::LostWrite {
                        detail: format!("write {value} was refused but is in the log at {index}"),
                    })
                }
                (Outcome::Failed, None) => {}
            }
        }
        for op in &self.history {
            match (op.kind, op.outcome) {
                (OpKind::Write(_), Outcome::Ok) => self.stats.writes_ok += 1,
                (OpKind::Write(_), Outcome::Unknown) => self.stats.writes_unknown += 1,
                (OpKind::Read(_), Outcome::Ok) => self.stats.reads_ok += 1,
                _ => {}
            }
        }
        for key in 0..self.opts.keys {
            let ops: Vec<crate::linearizability::Op> = self
                .history
                .iter()
                .filter(|o| o.key == key && matches!(o.outcome, Outcome::Ok | Outcome::Unknown))
                .map(|o| crate::linearizability::Op {
                    client: o.client,
                    kind: o.kind,
                    call: o.call,
                    ret: if o.outcome == Outcome::Ok {
                        o.ret
                    } else {
                        None
                    },
                })
                .collect();
            crate::linearizability::check_register(&ops)
                .map_err(|detail| Violation::NotLinearizable { key, detail })?;
        }
        Ok(())
    }
}

/// The smallest majority that may have committed `e`, given the voters in effect at it
/// (`disk.voters` is the applying member's configuration as of the entry before). The
/// leader counted by the newest configuration in its log: `e`'s, or, one change at a time,
/// one change later — and a removal makes an even-sized configuration's majority smaller.
fn commit_quorum(disk: &Disk, e: &Entry) -> usize {
    let mut voters = disk.voters.clone();
    if let Some((change, _)) = e.payload.membership() {
        change.applied_to(&mut voters);
    }
    voters.len().saturating_sub(1) / 2 + 1
}
