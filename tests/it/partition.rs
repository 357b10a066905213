//! Network partitions of real clusters: each member runs in its own network namespace, cabled
//! to a switch namespace (`support::netns`); a partition unplugs a member's cable (its
//! switch-side veth goes down), healing plugs it back. The test reaches every member on a
//! separate client network, the cut-off one included.
//!
//! - An isolated follower comes back without deposing the leader (pre-vote: its term did not
//!   move while it was cut off) and catches up.
//! - A cut-off leader is the minority: it answers writes and reads with etcd's timeout error
//!   (500, errorCode 300) — never the old value of a key the majority changed — and after
//!   healing follows the new leader and serves the new value.
//! - The four-board tutorial, with its own flags and host names from per-namespace
//!   `/etc/hosts`, survives unplugging its leader.
//!
//! etcd (`PIKV_IT_TARGET=etcd`) runs with `--pre-vote` (3.4 has it off by default). Its plain
//! GET is served from local state, so the assertions on a minority's plain GET are pikv's
//! only; `quorum=true` reads are checked on both.

use crate::support::cluster::Cluster;
use crate::support::netns::{self, Lab};
use crate::support::{self, http, wait_for, Kind, Server};
use std::time::{Duration, Instant};

/// pikv's and etcd's default election timeout.
const ELECTION: Duration = Duration::from_millis(1000);

fn put(m: &Server, key: &str, value: &str, timeout: Duration) -> Result<http::Response, String> {
    let body = http::form(&[("value", value)]);
    m.try_request(
        "PUT",
        &format!("/v2/keys{key}"),
        &[("Content-Type", http::FORM)],
        body.as_bytes(),
        timeout,
    )
    .map_err(|e| format!("PUT {key} on {}: {e}", m.name))
}

fn get(m: &Server, target: &str, timeout: Duration) -> Result<http::Response, String> {
    m.try_request("GET", target, &[], b"", timeout)
        .map_err(|e| format!("GET {target} on {}: {e}", m.name))
}

/// Retries a write on `m` until it is acknowledged (201 or 200), for up to `limit`.
fn put_until_ok(c: &Cluster, m: usize, key: &str, value: &str, limit: Duration) -> http::Response {
    let deadline = Instant::now() + limit;
    loop {
        match put(&c.members[m], key, value, Duration::from_secs(8)) {
            Ok(r) if r.status == 201 || r.status == 200 => return r,
            _ if Instant::now() > deadline => {
                panic!(
                    "no acknowledged write of {key} within {limit:?}\n{}",
                    c.logs()
                )
            }
            _ => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}

/// Waits until member `m` serves `value` for `key` with a read that is linearizable on the
/// target (`quorum=true` on etcd, a plain GET on pikv).
fn wait_value(c: &Cluster, m: usize, key: &str, value: &str, limit: Duration) {
    let target = match c.members[m].kind {
        Kind::Pikv => format!("/v2/keys{key}"),
        Kind::Etcd => format!("/v2/keys{key}?quorum=true"),
    };
    let deadline = Instant::now() + limit;
    loop {
        let last = match get(&c.members[m], &target, Duration::from_secs(8)) {
            Ok(r) if r.status == 200 && r.json()["node"]["value"] == value => return,
            Ok(r) => r.dump(),
            Err(e) => e,
        };
        if Instant::now() > deadline {
            panic!(
                "{} does not serve {key}={value} within {limit:?}; last answer:\n{last}\n{}",
                c.members[m].name,
                c.logs()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `/v2/stats/self`: (is the leader, the leader's id as it knows it, its own id).
fn stats(m: &Server) -> (bool, String, String) {
    let j = m.get("/v2/stats/self").json();
    (
        j["state"] == "StateLeader",
        j["leaderInfo"]["leader"].as_str().unwrap_or("").to_string(),
        j["id"].as_str().unwrap_or("").to_string(),
    )
}

/// The Raft term as member `m` reports it on a successful linearizable read (X-Raft-Term).
fn term(m: &Server) -> u64 {
    let r = get(m, "/v2/keys/?quorum=true", Duration::from_secs(10)).unwrap();
    assert_eq!(r.status, 200, "{}", r.dump());
    r.header("X-Raft-Term")
        .unwrap_or_else(|| panic!("no X-Raft-Term: {}", r.dump()))
        .parse()
        .unwrap()
}

/// etcd's answer when no quorum is reachable: 500, errorCode 300, "etcdserver: request timed
/// out...".
fn assert_timeout_error(what: &str, r: &Result<http::Response, String>) {
    let r = r
        .as_ref()
        .unwrap_or_else(|e| panic!("{what}: no answer: {e}"));
    assert_eq!(r.status, 500, "{what}: {}", r.dump());
    let j = r.json();
    assert_eq!(j["errorCode"], 300, "{what}: {j}");
    assert!(
        j["cause"]
            .as_str()
            .unwrap_or("")
            .starts_with("etcdserver: request timed out"),
        "{what}: {j}"
    );
}

/// Flags for the target: etcd 3.4 needs `--pre-vote` to keep a rejoining member from
/// deposing the leader (pikv always pre-votes).
fn flags(kind: Kind, extra: &[&'static str]) -> Vec<&'static str> {
    let mut f = extra.to_vec();
    if kind == Kind::Etcd {
        f.push("--pre-vote");
    }
    f
}

/// Waits for a leader other than `not` (the cut-off one, which may still believe it leads).
fn wait_new_leader(c: &Cluster, not: usize, limit: Duration) -> usize {
    wait_for("a leader on the majority side", limit, || {
        (0..c.members.len())
            .filter(|&i| i != not)
            .find(|&i| stats(&c.members[i]).0)
    })
}

#[test]
fn an_isolated_follower_rejoins_without_deposing_the_leader() {
    let Some(lab) = netns::lab_or_skip(
        "an_isolated_follower_rejoins_without_deposing_the_leader",
        3,
    ) else {
        return;
    };
    let kind = support::target();
    let c = Cluster::start_in(lab, kind, &flags(kind, &[]));
    let leader = c.wait_leader(Duration::from_secs(10));
    put_until_ok(&c, leader, "/a/before", "1", Duration::from_secs(10));
    let follower = (leader + 1) % 3;
    wait_value(&c, follower, "/a/before", "1", Duration::from_secs(10));
    let (_, _, leader_id) = stats(&c.members[leader]);
    let term_before = term(&c.members[leader]);
    wait_for(
        "every member to know the leader",
        Duration::from_secs(10),
        || {
            c.members
                .iter()
                .all(|m| stats(m).1 == leader_id)
                .then_some(())
        },
    );

    c.lab().unplug(follower);
    let unplugged = Instant::now();
    // The leader and the other follower are a majority: writes go on.
    put_until_ok(&c, leader, "/a/during", "2", Duration::from_secs(10));
    // Cut off for a few election timeouts: without pre-vote it would campaign (and bump its
    // term) each time.
    std::thread::sleep((4 * ELECTION).saturating_sub(unplugged.elapsed()));
    if kind == Kind::Pikv {
        let t = c.members[follower].metric("pikv_raft_term");
        assert_eq!(
            t, term_before,
            "the cut-off follower's term did not move (pre-vote)"
        );
    }
    c.lab().plug(follower);

    // It catches up: the write made while it was away is readable on it.
    wait_value(&c, follower, "/a/during", "2", Duration::from_secs(20));
    // Give a disruption time to show, then check that nothing changed.
    std::thread::sleep(2 * ELECTION);
    let (is_leader, _, _) = stats(&c.members[leader]);
    assert!(is_leader, "the leader still leads\n{}", c.logs());
    assert_eq!(
        term(&c.members[leader]),
        term_before,
        "the leader's term did not move\n{}",
        c.logs()
    );
    for m in &c.members {
        assert_eq!(stats(m).1, leader_id, "{} follows the same leader", m.name);
    }
    eprintln!(
        "partition: {} rejoined after {:?}; {} still leads in term {term_before}",
        c.members[follower].name,
        4 * ELECTION,
        c.members[leader].name
    );
}

#[test]
fn the_minority_side_times_out_and_never_serves_stale_data() {
    let Some(lab) =
        netns::lab_or_skip("the_minority_side_times_out_and_never_serves_stale_data", 3)
    else {
        return;
    };
    let kind = support::target();
    // Shorter timeouts: the minority's request timeout is 5 s + 2 × 500 ms.
    let c = Cluster::start_in(
        lab,
        kind,
        &flags(
            kind,
            &["--election-timeout", "500", "--heartbeat-interval", "50"],
        ),
    );
    let old = c.wait_leader(Duration::from_secs(10));
    put_until_ok(&c, old, "/b/k", "old", Duration::from_secs(10));
    for m in 0..3 {
        wait_value(&c, m, "/b/k", "old", Duration::from_secs(10));
    }

    c.lab().unplug(old);
    let new = wait_new_leader(&c, old, Duration::from_secs(20));
    let other = (0..3).find(|&i| i != old && i != new).unwrap();
    put_until_ok(&c, other, "/b/k", "new", Duration::from_secs(20));

    // The old leader, cut off, is the minority. Ask it everything at once (each answer takes
    // the request timeout).
    let m = &c.members[old];
    let started = Instant::now();
    let (w, plain, quorum) = std::thread::scope(|s| {
        let w = s.spawn(|| put(m, "/b/minority", "x", Duration::from_secs(20)));
        let plain = s.spawn(|| get(m, "/v2/keys/b/k", Duration::from_secs(20)));
        let quorum = s.spawn(|| get(m, "/v2/keys/b/k?quorum=true", Duration::from_secs(20)));
        (
            w.join().unwrap(),
            plain.join().unwrap(),
            quorum.join().unwrap(),
        )
    });
    let took = started.elapsed();
    assert_timeout_error("a write on the minority", &w);
    assert_timeout_error("a quorum read on the minority", &quorum);
    match kind {
        Kind::Pikv => assert_timeout_error("a plain GET on the minority", &plain),
        // etcd serves a plain GET from its local state: here, the stale value.
        Kind::Etcd => eprintln!(
            "partition: etcd's plain GET on the minority: {}",
            plain.map(|r| r.text()).unwrap_or_else(|e| e)
        ),
    }
    eprintln!("partition: the minority answered the timeout error after {took:?}");

    c.lab().plug(old);
    // It follows the new leader and serves the new value.
    wait_value(&c, old, "/b/k", "new", Duration::from_secs(20));
    let (_, leader_now, _) = stats(&c.members[new]);
    let (old_leads, old_follows, _) = stats(&c.members[old]);
    assert!(
        !old_leads,
        "the old leader does not lead again\n{}",
        c.logs()
    );
    assert_eq!(old_follows, leader_now, "it follows the majority's leader");
}

/// `/etc/hosts` of every board: the four names on the peer network.
fn tutorial_hosts(lab: &Lab) -> String {
    let mut hosts = String::from("127.0.0.1 localhost\n::1 localhost\n");
    for i in 0..lab.len() {
        hosts.push_str(&format!("{} node-{}\n", lab.peer_ip(i), i + 1));
    }
    hosts
}

/// The tutorial's `etcd` command line for board `n` (000_*.txt, "Run a 4 node etcd cluster"),
/// with host names in place of the IPs its script looks up.
fn tutorial_args(n: usize, boards: usize) -> Vec<String> {
    let initial: Vec<String> = (1..=boards)
        .map(|i| format!("node-{i}=http://node-{i}:2380"))
        .collect();
    [
        "-name",
        &format!("node-{n}"),
        "-initial-advertise-peer-urls",
        &format!("http://node-{n}:2380"),
        "-listen-peer-urls",
        "http://0.0.0.0:2380",
        "-listen-client-urls",
        "http://0.0.0.0:2379,http://0.0.0.0:4001",
        "-advertise-client-urls",
        &format!("http://node-{n}:2379"),
        "-initial-cluster-token",
        "etcd-cluster-1",
        "-initial-cluster",
        &initial.join(","),
        "-initial-cluster-state",
        "new",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

#[test]
fn the_four_board_tutorial() {
    let Some(mut lab) = netns::lab_or_skip("the_four_board_tutorial", 4) else {
        return;
    };
    let kind = support::target();
    let hosts = tutorial_hosts(&lab);
    for i in 0..4 {
        lab.write_hosts(i, &hosts);
    }
    let members = (0..4)
        .map(|i| {
            let mut s = Server::prepare(kind, &format!("node-{}", i + 1), (2379, 2380), &[]);
            s.raw_args = Some(tutorial_args(i + 1, 4));
            s.client_host = lab.client_ip(i);
            s.peer_host = lab.peer_ip(i);
            s.netns = Some(lab.ns(i).to_string());
            s
        })
        .collect();
    let mut c = Cluster {
        members,
        net: Some(lab),
    };
    c.spawn_all_and_wait();

    // The tutorial's check: a write on node-2 is read on node-3, on either client port.
    let r = put(
        &c.members[1],
        "/message",
        "Hello world",
        Duration::from_secs(10),
    )
    .unwrap();
    assert_eq!(r.status, 201, "{}", r.dump());
    let r = get(
        &c.members[2],
        "/v2/keys/message?quorum=true",
        Duration::from_secs(10),
    )
    .unwrap();
    assert_eq!(r.json()["node"]["value"], "Hello world", "{}", r.dump());
    let node3 = c.members[2].client_host.clone();
    let r = http::try_request_at(
        &node3,
        4001,
        "GET",
        "/v2/keys/message?quorum=true",
        &[],
        b"",
        Duration::from_secs(10),
    )
    .unwrap();
    assert_eq!(r.json()["node"]["value"], "Hello world", "{}", r.dump());
    // The members advertise the tutorial's names: each publishes its own once it has a
    // leader, as etcd's do, so a slow one (under qemu) may not show it yet: wait for it.
    let expected: Vec<String> = (1..=4)
        .map(|i| format!("\"node-{i}\"=[\"http://node-{i}:2380\"]"))
        .collect();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let j = c.members[0].get("/v2/members").json();
        let mut peers: Vec<String> = j["members"]
            .as_array()
            .unwrap_or_else(|| panic!("{j}"))
            .iter()
            .map(|m| format!("{}={}", m["name"], m["peerURLs"]))
            .collect();
        peers.sort();
        if peers == expected {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "members never all published their names: {peers:?}, expected {expected:?}: {j}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    // Unplug the leader's cable: the three others elect a new leader and take writes.
    let old = c.wait_leader(Duration::from_secs(10));
    c.lab().unplug(old);
    let new = wait_new_leader(&c, old, Duration::from_secs(20));
    let other = (0..4).find(|&i| i != old && i != new).unwrap();
    put_until_ok(
        &c,
        other,
        "/message",
        "Hello again",
        Duration::from_secs(20),
    );
    wait_value(&c, new, "/message", "Hello again", Duration::from_secs(10));

    // Plug it back: it rejoins as a follower and sees the data.
    c.lab().plug(old);
    wait_value(&c, old, "/message", "Hello again", Duration::from_secs(20));
    let (_, leader_now, _) = stats(&c.members[new]);
    let (old_leads, old_follows, _) = stats(&c.members[old]);
    assert!(
        !old_leads,
        "the old leader rejoined as a follower\n{}",
        c.logs()
    );
    assert_eq!(old_follows, leader_now, "it follows the majority's leader");
    eprintln!(
        "partition: tutorial: {} was cut off, {} took over, {} rejoined",
        c.members[old].name, c.members[new].name, c.members[old].name
    );
}
