//! Deterministic cluster simulation of the Raft core (design.md, Tests §2).
//!
//! Each seed builds a cluster of 3 or 5 members over an in-memory network with message
//! loss, duplication, delay, reordering and partitions; members crash and restart with only
//! what they reported durable; clients write and read (ReadIndex, on leaders and followers)
//! a few keys; leaders are asked to hand over. Everything — fault rates included — comes
//! from the seed, so a seed replays a run exactly. After every step the simulator checks
//! election safety, log matching, leader completeness and state machine safety (plus the
//! core's own invariants and the Ready contract); after the faults heal every member must
//! catch up, no acknowledged write may be lost, and each key's client history must be
//! linearizable.
//!
//! Half the seeds also add and remove members (one at a time, the leader too); a scenario
//! of its own does so in every seed.
//!
//! Narrower scenarios run fewer seeds by default (300 per cluster size): a slow disk (one
//! member's fsyncs stall 500 ms to 1 s, nothing else fails, and nobody may campaign after
//! the first leader), and bad clocks (wall clocks jump by days while the cluster time that
//! leaders carry in heartbeats must neither go back nor jump).
//!
//! Controls:
//! - `PIKV_SIM_SEEDS=N` (or `A..B`): how many seeds each cluster size runs (default 1000,
//!   300 for the narrower scenarios);
//! - `PIKV_SIM_SEED=S`: run only seed S, printing its trace's tail on failure;
//! - `PIKV_SIM_TRACE=1`: print every event of the run (use with `PIKV_SIM_SEED`).

mod clocks;
mod invariants;
mod linearizability;
mod network;
mod world;

use invariants::Violation;
use std::ops::Range;
use std::time::Instant;
use world::{Options, Stats, World};

const DEFAULT_SEEDS: u64 = 1000;

/// Seeds of the narrower scenarios (slow disk, clock jumps) by default.
const SCENARIO_SEEDS: u64 = 300;

fn seeds(default: u64) -> Range<u64> {
    if let Ok(s) = std::env::var("PIKV_SIM_SEED") {
        let seed: u64 = s.trim().parse().expect("PIKV_SIM_SEED must be a number");
        return seed..seed + 1;
    }
    match std::env::var("PIKV_SIM_SEEDS") {
        Ok(s) => match s.trim().split_once("..") {
            Some((a, b)) => {
                a.parse().expect("PIKV_SIM_SEEDS=A..B")..b.parse().expect("PIKV_SIM_SEEDS=A..B")
            }
            None => 0..s.trim().parse().expect("PIKV_SIM_SEEDS must be a number"),
        },
        Err(_) => 0..default,
    }
}

fn verbose() -> bool {
    std::env::var("PIKV_SIM_TRACE").is_ok_and(|v| v == "1")
}

/// One seed's run: its outcome, trace hash and counts.
struct RunResult {
    outcome: Result<(), Violation>,
    trace_hash: u64,
    trace_tail: String,
    stats: Stats,
}

fn run_seed(seed: u64, opts: Options) -> RunResult {
    let mut world = World::new(seed, opts, verbose());
    // A panic in the core is a failure of the seed like any other, with its trace.
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| world.run()))
        .unwrap_or_else(|p| {
            let detail = p
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "non-string panic".into());
            Err(Violation::Panic { detail })
        });
    RunResult {
        outcome,
        trace_hash: world.trace.hash(),
        trace_tail: world.trace.to_string(),
        stats: world.stats.clone(),
    }
}

fn run_cluster_size(members: usize, test: &str) -> Stats {
    run_scenario(members, test, DEFAULT_SEEDS, Options::swarm)
}

/// Runs the seeds of one scenario (`options` makes each seed's options) and fails with
/// every failing seed's trace.
fn run_scenario(
    members: usize,
    test: &str,
    default_seeds: u64,
    options: fn(u64, usize) -> Options,
) -> Stats {
    let started = Instant::now();
    let range = seeds(default_seeds);
    let mut total = Stats::default();
    let mut failures = Vec::new();
    let mut slowest = (0.0f64, 0u64);
    for seed in range.clone() {
        let opts = options(seed, members);
        let one = Instant::now();
        let r = run_seed(seed, opts.clone());
        let took = one.elapsed().as_secs_f64();
        if took > slowest.0 {
            slowest = (took, seed);
        }
        if let Err(v) = &r.outcome {
            eprintln!(
                "\nsim: seed {seed} ({members} members) FAILED: {v}\n  options: {opts:?}\n  last events:\n{}\n  reproduce: PIKV_SIM_SEED={seed} cargo test --release --test sim {test}\n",
                r.trace_tail
            );
            failures.push(seed);
        }
        let s = &r.stats;
        total.crashes += s.crashes;
        total.persist_failures += s.persist_failures;
        total.transfers += s.transfers;
        total.writes_ok += s.writes_ok;
        total.writes_unknown += s.writes_unknown;
        total.reads_ok += s.reads_ok;
        total.messages += s.messages;
        total.committed += s.committed;
        total.virtual_ms += s.virtual_ms;
        total.overwrites += s.overwrites;
        total.elections += s.elections;
        total.stalls += s.stalls;
        total.leader_stalls += s.leader_stalls;
        total.clock_lag_max_ms = total.clock_lag_max_ms.max(s.clock_lag_max_ms);
        total.wall_jumps += s.wall_jumps;
        total.added += s.added;
        total.removed += s.removed;
        total.snapshots += s.snapshots;
        total.early_applies += s.early_applies;
        total.held_writes += s.held_writes;
    }
    eprintln!(
        "sim: {test}: {members} members, seeds {range:?}: {} failed, {:.2} s wall (slowest seed {} {:.3} s), {} s virtual; \
         {} writes acknowledged, {} unknown, {} reads, {} entries committed, {} messages, \
         {} crashes, {} failed fsyncs, {} transfers, {} members added, {} removed, {} snapshots installed, {} early applies, {} held leader writes, {} elections, {} log overwrites, \
         {} stalled fsyncs ({} on a leader), {} wall-clock jumps, cluster time at most {} ms behind",
        failures.len(),
        started.elapsed().as_secs_f64(),
        slowest.1,
        slowest.0,
        total.virtual_ms / 1000,
        total.writes_ok,
        total.writes_unknown,
        total.reads_ok,
        total.committed,
        total.messages,
        total.crashes,
        total.persist_failures,
        total.transfers,
        total.added,
        total.removed,
        total.snapshots,
        total.early_applies,
        total.held_writes,
        total.elections,
        total.overwrites,
        total.stalls,
        total.leader_stalls,
        total.wall_jumps,
        total.clock_lag_max_ms,
    );
    assert!(failures.is_empty(), "failing seeds: {failures:?}");
    total
}

#[test]
fn three_member_clusters() {
    let total = run_cluster_size(3, "three_member_clusters");
    // Half the seeds apply behind the log writes as the node does; there, committed entries
    // that are durable already must take the early path (and pass every check).
    assert!(total.early_applies > 0, "no early applies in {total:?}");
    assert!(total.held_writes > 0, "no held leader writes in {total:?}");
}

#[test]
fn five_member_clusters() {
    let total = run_cluster_size(5, "five_member_clusters");
    assert!(total.early_applies > 0, "no early applies in {total:?}");
    assert!(total.held_writes > 0, "no held leader writes in {total:?}");
}

/// Requirement 6, slow disks: one member's fsyncs stall for 500 ms to 1 s (the leader's in
/// half the seeds), nothing else goes wrong, and nobody campaigns after the first leader is
/// established — the leader keeps heartbeating while its Ready is being persisted, and a
/// slow follower keeps answering heartbeats. Every seed also passes all the usual checks
/// (safety, convergence, linearizability).
#[test]
fn slow_disk_causes_no_election() {
    for members in [3, 5] {
        let total = run_scenario(
            members,
            "slow_disk_causes_no_election",
            SCENARIO_SEEDS,
            Options::slow_disk,
        );
        // Each seed had its first election and no other.
        assert_eq!(total.elections, seeds(SCENARIO_SEEDS).count() as u64);
        assert!(
            total.leader_stalls > 0 && total.stalls > total.leader_stalls,
            "the stalls must hit leaders and followers: {} stalls, {} on a leader",
            total.stalls,
            total.leader_stalls
        );
    }
}

/// Requirement 6, bad clocks: wall clocks jump by days while leaders change and members
/// restart; the cluster time the driver keeps with pikv's `ClusterClock`, and that leaders
/// carry in heartbeats, never goes back and advances with virtual time (see `clocks.rs`).
#[test]
fn wall_clock_jumps_move_no_cluster_time() {
    for members in [3, 5] {
        let total = run_scenario(
            members,
            "wall_clock_jumps_move_no_cluster_time",
            SCENARIO_SEEDS,
            Options::clock_jumps,
        );
        assert!(total.wall_jumps > 0 && total.crashes > 0 && total.transfers > 0);
    }
}

/// A known limitation, run on demand (`--ignored`): a fresh cluster whose wall clocks are
/// days apart when it first forms. A fresh member's cluster clock is its wall clock,
/// provisionally: it takes the first leader's clock when it hears it — in heartbeats, in
/// every append (a new leader's first appends included) and, from a candidate on a
/// provisional clock, in the votes of members whose clock a leader set. What is left (4 of
/// 5,000 seeds, `PIKV_SIM_SEEDS=5000`): the first leader goes down within milliseconds of
/// its election, a member that heard it crashes before recording its time, and that member
/// wins the next election with the vote of one that never heard it: every clock it sees is
/// provisional, so the cluster runs on its wall clock, days from the first leader's. Closing
/// it needs the time durable with the entries (in the WAL), not only in the applied state.
#[test]
#[ignore = "known limitation: clocks days apart when a fresh cluster forms (4 in 5000 seeds)"]
fn fresh_clusters_with_wall_clocks_days_apart() {
    fn options(seed: u64, members: usize) -> Options {
        let mut opts = Options::clock_jumps(seed, members);
        if let Some(ck) = opts.clock.as_mut() {
            ck.start_offset_days = 3;
            ck.jumps_before_formed = true;
        }
        opts
    }
    run_scenario(
        3,
        "fresh_clusters_with_wall_clocks_days_apart",
        SCENARIO_SEEDS,
        options,
    );
}

/// The election check must be able to fail: a driver that waits on its stalled fsync (no
/// ticks, nothing sent meanwhile, as a node thread blocked on the disk) lets followers time
/// out, and some seed must catch the election that follows.
#[test]
fn a_driver_that_waits_on_fsync_is_caught() {
    let mut caught = Vec::new();
    for seed in 0..100 {
        let mut opts = Options::slow_disk(seed, 3);
        if let Some(slow) = opts.slow_disk.as_mut() {
            slow.blocking_driver = true;
            slow.on_leader = true;
        }
        if let Err(v @ Violation::Election { .. }) = run_seed(seed, opts).outcome {
            caught.push((seed, v));
            if caught.len() >= 3 {
                break;
            }
        }
    }
    assert!(
        !caught.is_empty(),
        "no seed caught a leader that stops heartbeating during its fsync"
    );
    for (seed, v) in &caught {
        eprintln!("sim: blocking driver caught by seed {seed}: {v}");
    }
}

/// Issue 7, membership changes: every seed adds and removes members (one at a time, the
/// leader itself too) among all the usual faults, from 3 voters up to 5 and down to 2; the
/// usual checks hold after every step, with commit quorums taken from the configuration in
/// effect.
#[test]
fn membership_changes_under_faults() {
    let total = run_scenario(
        3,
        "membership_changes_under_faults",
        DEFAULT_SEEDS,
        |seed, members| {
            let mut opts = Options::swarm(seed, members);
            opts.membership_every_ms = 100;
            opts
        },
    );
    assert!(
        total.added > 0 && total.removed > 0,
        "the runs must add and remove members: {} added, {} removed",
        total.added,
        total.removed
    );
}

/// The checkers must catch a broken membership rule: a leader that takes a change while
/// another is uncommitted (or before its first commit) lets two configurations without a
/// common majority each elect a leader or commit.
#[test]
fn many_membership_changes_at_once_are_caught() {
    let mut caught = Vec::new();
    for seed in 0..300 {
        let mut opts = Options::swarm(seed, 3);
        opts.membership_every_ms = 30;
        opts.broken_rule = Some(pikv::raft::BrokenRule::ManyMembershipChanges);
        match run_seed(seed, opts).outcome {
            Err(v @ (Violation::NoConvergence { .. } | Violation::Member { .. })) => {
                // Liveness or the core's own bookkeeping: not what this test is after.
                let _ = v;
            }
            Err(v) => {
                caught.push((seed, v));
                if caught.len() >= 3 {
                    break;
                }
            }
            Ok(()) => {}
        }
    }
    assert!(
        !caught.is_empty(),
        "no seed caught concurrent membership changes"
    );
    for (seed, v) in &caught {
        eprintln!("sim: concurrent membership changes caught by seed {seed}: {v}");
    }
}

/// A seed is a complete description of a run: the same seed, the same trace.
#[test]
fn a_seed_replays_exactly() {
    let a = run_seed(7, Options::swarm(7, 3));
    let b = run_seed(7, Options::swarm(7, 3));
    assert!(a.outcome.is_ok());
    assert_eq!(a.trace_hash, b.trace_hash);
    let c = run_seed(8, Options::swarm(8, 3));
    assert_ne!(a.trace_hash, c.trace_hash);
}

/// The checkers must be able to fail: a disk that acknowledges a vote but forgets it on a
/// crash lets a member vote twice in a term, and some seed must catch what follows. About
/// one seed in 200 does (measured over 2000: 9 and 10 with two versions of the core), so the
/// search goes far enough that missing all is not luck.
#[test]
fn a_disk_that_forgets_votes_is_caught() {
    let mut caught = Vec::new();
    for seed in 0..3000 {
        let mut opts = Options::swarm(seed, 3);
        opts.lying_disk = true;
        opts.crash_every_ms = 50;
        opts.down_max_ms = 20;
        if let Err(v) = run_seed(seed, opts).outcome {
            caught.push((seed, v));
            if caught.len() >= 3 {
                break;
            }
        }
    }
    assert!(!caught.is_empty(), "no seed caught a disk that loses votes");
    for (seed, v) in &caught {
        eprintln!("sim: lying disk caught by seed {seed}: {v}");
    }
}
