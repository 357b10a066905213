//! A Jepsen-style test of a real 3-member cluster: concurrent clients on every member read
//! and write a few registers and add unique elements to a set, while a nemesis kills
//! members (`kill -9`, then a restart on the same data dir), freezes the leader
//! (`SIGSTOP`/`SIGCONT`) and unplugs members' cables (network namespaces, when this machine
//! can make them). Every operation's call and return times and outcome are recorded:
//!
//! - ok: the client saw success (or, for a read, the value);
//! - failed: a definite refusal — the connection was refused (the member is down, so the
//!   request was never received) or a 4xx answer. The write did not happen;
//! - unknown: a timeout, a dropped connection, a 5xx (etcd's "request timed out" included).
//!   The write may take effect at any time after its call, or never.
//!
//! After the faults heal, each register's whole history — with final reads on every member —
//! must be linearizable (the checker of `tests/sim/linearizability.rs`), and every
//! acknowledged set element must be present, with nothing present that was refused. A
//! self-check then breaks the recorded history on purpose (a read that sees a value before
//! it was written; an acknowledged element missing) and requires both checks to fail.
//!
//! Reads are plain GETs on pikv (linearizable there, by ReadIndex) and `quorum=true` on etcd
//! (`PIKV_IT_TARGET=etcd`), whose plain GET is served from local state. The fault schedule
//! comes from `PIKV_IT_SEED` (printed); thread timing is the machine's. `PIKV_IT_JEPSEN_SECS`
//! makes the faulty phase longer than its default 22 s.

use crate::linearizability::{check_register, Op, OpKind};
use crate::support::cluster::Cluster;
use crate::support::{self, http, netns, Kind, Prng};
use std::collections::{BTreeMap, BTreeSet};
use std::io::ErrorKind;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Registers under test (`/jepsen/r<k>`).
const KEYS: usize = 3;
/// Client threads, spread over the members.
const CLIENTS: usize = 6;
/// How long a client waits for an answer (shorter than the server's own request timeout, so
/// both kinds of unknown outcome occur).
const CLIENT_TIMEOUT: Duration = Duration::from_secs(3);
/// How long the nemesis injects faults, unless `PIKV_IT_JEPSEN_SECS` says (a longer run).
fn nemesis_time() -> Duration {
    let secs = std::env::var("PIKV_IT_JEPSEN_SECS")
        .ok()
        .map(|s| {
            s.parse()
                .expect("PIKV_IT_JEPSEN_SECS is a number of seconds")
        })
        .unwrap_or(22);
    Duration::from_secs(secs)
}
/// Fault-free operation after the last heal, before the final reads.
const CALM_TIME: Duration = Duration::from_secs(2);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Outcome {
    Ok,
    Failed,
    Unknown,
}

/// What a client saw, for the summary: `ok`, `refused` (no connection), an HTTP status
/// class (`4xx`, `500`, ...), or `timeout`/`io` (no complete answer).
type Why = &'static str;

fn why_status(status: u16) -> Why {
    match status {
        500 => "500",
        400..=499 => "4xx",
        _ => "other status",
    }
}

fn why_io(e: &std::io::Error) -> (Outcome, Why) {
    match e.kind() {
        ErrorKind::ConnectionRefused => (Outcome::Failed, "refused"),
        ErrorKind::TimedOut | ErrorKind::WouldBlock => (Outcome::Unknown, "timeout"),
        _ => (Outcome::Unknown, "io"),
    }
}

#[derive(Clone, Copy, Debug)]
enum Action {
    /// A read of register `key` and what it saw (`None`: not found).
    Read { key: usize, seen: Option<u64> },
    /// A write of a unique `value` to register `key`.
    Write { key: usize, value: u64 },
    /// A create of the set element `/jepsen/set/e<element>`.
    Add { element: u64 },
}

#[derive(Clone, Debug)]
struct Event {
    client: usize,
    action: Action,
    /// Microseconds since the history's start.
    call: u64,
    ret: u64,
    outcome: Outcome,
    why: Why,
}

/// One client's view of its member.
#[derive(Clone)]
struct Endpoint {
    host: String,
    port: u16,
    kind: Kind,
}

impl Endpoint {
    fn request(&self, method: &str, target: &str, body: &str) -> std::io::Result<http::Response> {
        let headers: &[(&str, &str)] = if body.is_empty() {
            &[]
        } else {
            &[("Content-Type", http::FORM)]
        };
        http::try_request_at(
            &self.host,
            self.port,
            method,
            target,
            headers,
            body.as_bytes(),
            CLIENT_TIMEOUT,
        )
    }

    /// A linearizable read of `path` (pikv: plain GET; etcd: `quorum=true`).
    fn read(&self, path: &str) -> std::io::Result<http::Response> {
        let q = if self.kind == Kind::Etcd {
            "?quorum=true"
        } else {
            ""
        };
        self.request("GET", &format!("/v2/keys{path}{q}"), "")
    }

    /// A read of register `key`: what it saw, and how it went. Any answer but the value (or
    /// "not found") makes the read unusable, whatever the reason.
    fn read_register(&self, key: usize) -> (Option<u64>, Outcome, Why) {
        match self.read(&format!("/jepsen/r{key}")) {
            Ok(r) if r.status == 200 => {
                let v = r.json()["node"]["value"].as_str().map(|s| s.parse::<u64>());
                match v {
                    Some(Ok(v)) => (Some(v), Outcome::Ok, "ok"),
                    _ => panic!("register {key} holds no number: {}", r.dump()),
                }
            }
            Ok(r) if r.status == 404 && r.json()["errorCode"] == 100 => (None, Outcome::Ok, "ok"),
            Ok(r) => (None, Outcome::Failed, why_status(r.status)),
            Err(e) => {
                let (outcome, why) = why_io(&e);
                (None, outcome, why)
            }
        }
    }

    fn write(&self, path: &str, value: u64) -> (Outcome, Why) {
        let body = http::form(&[("value", &value.to_string())]);
        match self.request("PUT", &format!("/v2/keys{path}"), &body) {
            Ok(r) if r.status == 200 || r.status == 201 => (Outcome::Ok, "ok"),
            Ok(r) if (400..500).contains(&r.status) => (Outcome::Failed, "4xx"),
            Ok(r) => (Outcome::Unknown, why_status(r.status)),
            Err(e) => why_io(&e),
        }
    }
}

fn micros(t0: Instant) -> u64 {
    t0.elapsed().as_micros() as u64
}

/// One client thread: random operations against its member until `stop`.
fn run_client(id: usize, ep: Endpoint, seed: u64, t0: Instant, stop: &AtomicBool) -> Vec<Event> {
    let mut prng = Prng::new(seed ^ (id as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15));
    let mut events = Vec::new();
    let mut seq = 0u64;
    while !stop.load(Ordering::SeqCst) {
        seq += 1;
        // Unique across clients and operations.
        let unique = (id as u64 + 1) * 1_000_000 + seq;
        let key = prng.range(0, KEYS as u64) as usize;
        let dice = prng.range(0, 100);
        let call = micros(t0);
        let (action, (outcome, why)) = if dice < 50 {
            let (seen, outcome, why) = ep.read_register(key);
            (Action::Read { key, seen }, (outcome, why))
        } else if dice < 85 {
            let done = ep.write(&format!("/jepsen/r{key}"), unique);
            (Action::Write { key, value: unique }, done)
        } else {
            let done = ep.write(&format!("/jepsen/set/e{unique}"), unique);
            (Action::Add { element: unique }, done)
        };
        let ret = micros(t0);
        events.push(Event {
            client: id,
            action,
            call,
            ret,
            outcome,
            why,
        });
        // A little think time varies the interleavings and leaves the machine's other tests
        // some CPU; more after a failure, not to spin on a member that is down.
        let pause = if outcome == Outcome::Ok { 0 } else { 30 } + prng.range(0, 6);
        std::thread::sleep(Duration::from_millis(pause));
    }
    events
}

/// Register `key`'s history in the checker's terms: failed writes did not happen, unknown
/// writes have no return, and reads without an answer constrain nothing.
fn register_history(events: &[Event], key: usize) -> Vec<Op> {
    events
        .iter()
        .filter_map(|e| {
            let kind = match e.action {
                Action::Read { key: k, seen } if k == key && e.outcome == Outcome::Ok => {
                    OpKind::Read(seen)
                }
                Action::Write { key: k, value } if k == key && e.outcome != Outcome::Failed => {
                    OpKind::Write(value)
                }
                _ => return None,
            };
            Some(Op {
                client: e.client,
                kind,
                call: e.call,
                ret: (e.outcome == Outcome::Ok).then_some(e.ret),
            })
        })
        .collect()
}

/// Every acknowledged element is in `present`; every element in `present` was added, and
/// not refused.
fn check_set(events: &[Event], present: &BTreeSet<u64>) -> Result<(), String> {
    let adds: BTreeMap<u64, Outcome> = events
        .iter()
        .filter_map(|e| match e.action {
            Action::Add { element } => Some((element, e.outcome)),
            _ => None,
        })
        .collect();
    let lost: Vec<u64> = adds
        .iter()
        .filter(|(el, o)| **o == Outcome::Ok && !present.contains(el))
        .map(|(el, _)| *el)
        .collect();
    let unexpected: Vec<(u64, Option<Outcome>)> = present
        .iter()
        .filter(|el| !matches!(adds.get(el), Some(Outcome::Ok | Outcome::Unknown)))
        .map(|el| (*el, adds.get(el).copied()))
        .collect();
    if lost.is_empty() && unexpected.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "set: {} acknowledged elements lost {lost:?}; present but refused or never \
             added: {unexpected:?}",
            lost.len()
        ))
    }
}

/// A copy of `ops` that is certainly not linearizable: one read sees the value of a write
/// that was called only after the read returned (or, if there is none, a value nobody wrote).
fn broken_copy(ops: &[Op]) -> Option<(Vec<Op>, String)> {
    let reads: Vec<usize> = (0..ops.len())
        .filter(|&i| matches!(ops[i].kind, OpKind::Read(_)))
        .collect();
    for &r in &reads {
        let ret = ops[r].ret?;
        let later = ops.iter().find_map(|o| match o.kind {
            OpKind::Write(v) if o.call > ret => Some(v),
            _ => None,
        });
        if let Some(v) = later {
            let mut broken = ops.to_vec();
            let was = ops[r].kind;
            broken[r].kind = OpKind::Read(Some(v));
            let why = format!("read #{r} {was:?} now sees {v}, written later");
            return Some((broken, why));
        }
    }
    let &r = reads.first()?;
    let mut broken = ops.to_vec();
    broken[r].kind = OpKind::Read(Some(u64::MAX));
    Some((broken, format!("read #{r} now sees a value nobody wrote")))
}

#[derive(Default)]
struct Faults {
    kills: u32,
    stops: u32,
    partitions: u32,
    timeline: Vec<String>,
}

/// Injects faults one at a time until [`nemesis_time`] has passed; each is healed before the
/// next (a killed member restarted, a stopped one continued, a cable plugged back). Victims:
/// a random member for `kill -9`, the leader for SIGSTOP, either for a partition.
fn nemesis(c: &mut Cluster, prng: &mut Prng, t0: Instant) -> Faults {
    let mut f = Faults::default();
    let kinds: &[&str] = if c.net.is_some() {
        &["kill", "stop", "partition"]
    } else {
        &["kill", "stop"]
    };
    let n = c.members.len();
    let started = Instant::now();
    // The kinds take turns (from a random one), so that each occurs in every run.
    let mut turn = prng.range(0, kinds.len() as u64) as usize;
    let limit = nemesis_time();
    while started.elapsed() < limit {
        let kind = kinds[turn % kinds.len()];
        turn += 1;
        let leader = c.leader();
        let victim = match (kind, leader) {
            ("kill", _) | (_, None) => prng.range(0, n as u64) as usize,
            ("partition", Some(l)) if prng.range(0, 2) == 0 => l,
            ("partition", _) => prng.range(0, n as u64) as usize,
            (_, Some(l)) => l,
        };
        let hold = Duration::from_millis(prng.range(1000, 3000));
        let name = c.members[victim].name.clone();
        let is_leader = if leader == Some(victim) {
            " (leader)"
        } else {
            ""
        };
        f.timeline.push(format!(
            "{:>6.1}s {kind} {name}{is_leader} for {hold:?}",
            t0.elapsed().as_secs_f64()
        ));
        match kind {
            "kill" => {
                f.kills += 1;
                c.members[victim].kill9();
                std::thread::sleep(hold);
                c.members[victim].start_again();
            }
            "stop" => {
                f.stops += 1;
                c.members[victim].signal("STOP");
                std::thread::sleep(hold);
                c.members[victim].signal("CONT");
            }
            _ => {
                f.partitions += 1;
                c.lab().unplug(victim);
                std::thread::sleep(hold);
                c.lab().plug(victim);
            }
        }
        std::thread::sleep(Duration::from_millis(prng.range(300, 1200)));
    }
    f
}

/// Sets the flag when dropped: the clients stop even if the nemesis panics.
struct StopOnDrop(Arc<AtomicBool>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// Reads until an answer comes, for up to 20 s; the event joins the history.
fn final_read(ep: &Endpoint, key: usize, client: usize, t0: Instant) -> Event {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let call = micros(t0);
        let (seen, outcome, why) = ep.read_register(key);
        if outcome == Outcome::Ok {
            return Event {
                client,
                action: Action::Read { key, seen },
                call,
                ret: micros(t0),
                outcome,
                why,
            };
        }
        assert!(
            Instant::now() < deadline,
            "no final read of r{key} on {}",
            ep.host
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The set's elements as member `ep` lists them.
fn final_set(ep: &Endpoint) -> BTreeSet<u64> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match ep.read("/jepsen/set") {
            Ok(r) if r.status == 200 => {
                let j = r.json();
                return j["node"]["nodes"]
                    .as_array()
                    .map(|nodes| {
                        nodes
                            .iter()
                            .map(|n| {
                                n["value"]
                                    .as_str()
                                    .and_then(|v| v.parse().ok())
                                    .unwrap_or_else(|| panic!("set element {n}"))
                            })
                            .collect()
                    })
                    .unwrap_or_default();
            }
            Ok(r) if r.status == 404 => return BTreeSet::new(),
            _ => {}
        }
        assert!(
            Instant::now() < deadline,
            "no final set read on {}",
            ep.host
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[derive(Default)]
struct Tally {
    ok: u32,
    failed: u32,
    unknown: u32,
    /// Failed and unknown outcomes by what the client saw.
    whys: BTreeMap<Why, u32>,
}

impl std::fmt::Display for Tally {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} ok / {} failed / {} unknown",
            self.ok, self.failed, self.unknown
        )?;
        if !self.whys.is_empty() {
            let whys: Vec<String> = self.whys.iter().map(|(w, n)| format!("{n} {w}")).collect();
            write!(f, " ({})", whys.join(", "))?;
        }
        Ok(())
    }
}

#[test]
fn jepsen_registers_and_a_set_under_kills_stops_and_partitions() {
    let seed = support::seed();
    eprintln!("jepsen: seed {seed} (set PIKV_IT_SEED to replay the fault schedule)");
    let kind = support::target();
    let flags = ["--election-timeout", "500", "--heartbeat-interval", "50"];
    let mut c = match netns::lab_or_skip("jepsen partitions", 3) {
        Some(lab) => Cluster::start_in(lab, kind, &flags),
        None => Cluster::start(kind, 3, &flags),
    };
    c.wait_leader(Duration::from_secs(10));
    let endpoints: Vec<Endpoint> = c
        .members
        .iter()
        .map(|m| Endpoint {
            host: m.client_host.clone(),
            port: m.client_port,
            kind,
        })
        .collect();

    let t0 = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let guard = StopOnDrop(stop.clone());
    let clients: Vec<_> = (0..CLIENTS)
        .map(|id| {
            let (ep, stop) = (endpoints[id % endpoints.len()].clone(), stop.clone());
            std::thread::spawn(move || run_client(id, ep, seed, t0, &stop))
        })
        .collect();
    let mut prng = Prng::new(seed);
    let faults = nemesis(&mut c, &mut prng, t0);
    // Every fault is healed; let the cluster settle under load, then stop the clients.
    c.wait_leader(Duration::from_secs(20));
    std::thread::sleep(CALM_TIME);
    drop(guard);
    let mut events: Vec<Event> = Vec::new();
    for t in clients {
        events.extend(t.join().expect("client thread"));
    }

    // Final reads of every register on every member, and of the set.
    for (m, ep) in endpoints.iter().enumerate() {
        for key in 0..KEYS {
            events.push(final_read(ep, key, 100 + m, t0));
        }
    }
    let sets: Vec<BTreeSet<u64>> = endpoints.iter().map(final_set).collect();

    // The summary.
    let mut tallies: BTreeMap<&str, Tally> = BTreeMap::new();
    for e in &events {
        let name = match e.action {
            Action::Read { .. } => "read",
            Action::Write { .. } => "write",
            Action::Add { .. } => "add",
        };
        let t = tallies.entry(name).or_default();
        match e.outcome {
            Outcome::Ok => t.ok += 1,
            Outcome::Failed => t.failed += 1,
            Outcome::Unknown => t.unknown += 1,
        }
        if e.outcome != Outcome::Ok {
            *t.whys.entry(e.why).or_default() += 1;
        }
    }
    eprintln!(
        "jepsen: {} on {} members, seed {seed}, {:.1} s of history",
        kind.label(),
        c.members.len(),
        t0.elapsed().as_secs_f64()
    );
    for (name, t) in &tallies {
        eprintln!("jepsen:   {name:<5} {t}");
    }
    eprintln!(
        "jepsen:   faults: {} kill -9, {} SIGSTOP, {} partitions{}",
        faults.kills,
        faults.stops,
        faults.partitions,
        if c.net.is_some() {
            ""
        } else {
            " (no network namespaces)"
        }
    );
    for line in &faults.timeline {
        eprintln!("jepsen:     {line}");
    }
    let context = format!("seed {seed} (PIKV_IT_SEED)\n{}", faults.timeline.join("\n"));
    for name in ["read", "write", "add"] {
        assert!(
            tallies.get(name).is_some_and(|t| t.ok > 10),
            "too few successful {name}s to check anything; {context}\n{}",
            c.logs()
        );
    }

    // The checks.
    let mut violations = Vec::new();
    let mut histories = Vec::new();
    for key in 0..KEYS {
        let ops = register_history(&events, key);
        let started = Instant::now();
        if let Err(e) = check_register(&ops) {
            violations.push(format!("register r{key}: {e}"));
        }
        eprintln!(
            "jepsen:   r{key}: {} operations checked in {:?}",
            ops.len(),
            started.elapsed()
        );
        histories.push(ops);
    }
    for (m, set) in sets.iter().enumerate() {
        if let Err(e) = check_set(&events, set) {
            violations.push(format!("{}: {e}", c.members[m].name));
        }
    }
    assert!(
        violations.is_empty(),
        "{} violations:\n{}\n{context}\n{}",
        violations.len(),
        violations.join("\n"),
        c.logs()
    );
    eprintln!("jepsen: 0 violations, 0 lost acknowledged writes");

    // The checks can fail: break the recorded history on purpose.
    let busiest = (0..KEYS)
        .max_by_key(|&k| {
            histories[k]
                .iter()
                .filter(|o| matches!(o.kind, OpKind::Read(_)))
                .count()
        })
        .unwrap();
    let (broken, why) = broken_copy(&histories[busiest]).expect("a read to break");
    assert!(
        check_register(&broken).is_err(),
        "the checker accepts r{busiest} with {why}"
    );
    let acked = events.iter().find_map(|e| match (e.action, e.outcome) {
        (Action::Add { element }, Outcome::Ok) => Some(element),
        _ => None,
    });
    let mut missing = sets[0].clone();
    missing.remove(&acked.expect("an acknowledged add"));
    assert!(
        check_set(&events, &missing).is_err(),
        "the set check misses a lost element"
    );
    eprintln!("jepsen: self-check: r{busiest} with {why} is caught; so is a lost set element");
}
