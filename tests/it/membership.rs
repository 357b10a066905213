//! Membership changes on running clusters through etcd's members API (spec §10): adding a
//! member (listed at once, counted in the quorum), etcd's refusals in etcd's order
//! (`--strict-reconfig-check` counting started members), removing members for ever (410
//! after), removing the leader (it hands over and its process ends), and readdressing a
//! member with `PUT /v2/members/<id>` or by restarting it with new peer URLs. Every write
//! acknowledged along the way is read back from every remaining member.

use crate::support::cluster::Cluster;
use crate::support::{self, http, Kind};
use std::time::{Duration, Instant};

const JSON: (&str, &str) = ("Content-Type", "application/json");

pub(crate) fn request(
    m: &support::Server,
    method: &str,
    target: &str,
    body: &str,
) -> http::Response {
    m.try_request(
        method,
        target,
        &[JSON],
        body.as_bytes(),
        Duration::from_secs(20),
    )
    .unwrap_or_else(|e| m.fail(&format!("{method} {target}: {e}")))
}

pub(crate) fn add(m: &support::Server, peer_url: &str) -> http::Response {
    let body = format!("{{\"peerURLs\":[\"{peer_url}\"]}}");
    request(m, "POST", "/v2/members", &body)
}

pub(crate) fn member_ids(m: &support::Server) -> Vec<(String, String)> {
    let list = m.get("/v2/members").json();
    list["members"]
        .as_array()
        .unwrap_or_else(|| m.fail(&format!("no member list: {list}")))
        .iter()
        .map(|x| {
            (
                x["id"].as_str().unwrap_or_default().to_string(),
                x["name"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

pub(crate) fn id_of(m: &support::Server, name: &str) -> String {
    member_ids(m)
        .into_iter()
        .find(|(_, n)| n == name)
        .map(|(id, _)| id)
        .unwrap_or_else(|| m.fail(&format!("no member named {name}")))
}

/// Writes `key` through `m`, retrying while the cluster elects (a 300 error or no answer);
/// panics when no write succeeds within 15 s. Returns the write's modifiedIndex.
pub(crate) fn write(m: &support::Server, key: &str, value: &str) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let body = http::form(&[("value", value)]);
        let r = m.try_request(
            "PUT",
            &format!("/v2/keys/{key}"),
            &[("Content-Type", http::FORM)],
            body.as_bytes(),
            Duration::from_secs(10),
        );
        match r {
            Ok(r) if r.status == 200 || r.status == 201 => return r.modified_index(),
            _ if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(100)),
            other => m.fail(&format!("write {key}: {other:?}")),
        }
    }
}

pub(crate) fn assert_has(m: &support::Server, key: &str, value: &str) {
    let r = m.get(&format!("/v2/keys/{key}?quorum=true"));
    assert_eq!(
        r.json()["node"]["value"].as_str(),
        Some(value),
        "{} {key}: {}",
        m.name,
        r.dump()
    );
}

/// Waits until `m` lists `n` members that have all published their names (started, for
/// the strict reconfiguration check).
pub(crate) fn wait_started(m: &support::Server, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let ids = member_ids(m);
        if ids.len() == n && ids.iter().all(|(_, name)| !name.is_empty()) {
            return;
        }
        if Instant::now() > deadline {
            m.fail(&format!("members not all started: {ids:?}"));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The strict reconfiguration check (etcd 3.4's, and pikv's) wants every member connected
/// for 5 s (etcd's HealthInterval) before one is added.
pub(crate) fn settle() {
    std::thread::sleep(Duration::from_secs(6));
}

fn unused_peer_url() -> String {
    format!("http://127.0.0.1:{}", support::free_ports().1)
}

#[test]
fn members_are_added_refused_and_removed_as_etcd_does() {
    let kind = support::target();
    let c = Cluster::start(kind, 3, &[]);
    let leader = c.wait_leader(Duration::from_secs(10));
    let follower = &c.members[(leader + 1) % 3];
    write(follower, "before", "1");
    wait_started(follower, 3);
    settle();

    // etcd's refusals, each before anything is proposed.
    let r = add(follower, &c.members[leader].peer_url());
    assert_eq!(
        (r.status, r.json()["message"].clone()),
        (409, "membership: peerURL exists".into()),
        "{}",
        r.dump()
    );
    let r = request(follower, "POST", "/v2/members", "{\"peerURLs\":[]}");
    assert_eq!(
        (r.status, r.json()["message"].clone()),
        (400, "no valid URLs given".into())
    );
    let r = follower
        .try_request(
            "POST",
            "/v2/members",
            &[("Content-Type", http::FORM)],
            b"{}",
            Duration::from_secs(5),
        )
        .unwrap();
    assert_eq!(r.status, 415, "{}", r.dump());

    // An add through a follower: 201 with the new member, unnamed and without client URLs
    // until it starts; soon listed by every member.
    let first = unused_peer_url();
    let r = add(follower, &first);
    assert_eq!(r.status, 201, "{}", r.dump());
    let added = r.json();
    assert_eq!(added["name"], "", "{added}");
    assert_eq!(added["peerURLs"], serde_json::json!([first]), "{added}");
    assert_eq!(added["clientURLs"], serde_json::json!([]), "{added}");
    assert!(r.header("X-Etcd-Cluster-Id").is_some(), "{}", r.dump());
    let first_id = added["id"].as_str().unwrap_or_default().to_string();
    for m in &c.members {
        let deadline = Instant::now() + Duration::from_secs(5);
        while !member_ids(m).iter().any(|(id, _)| *id == first_id) {
            if Instant::now() > deadline {
                m.fail(&format!("{first_id} is not listed"));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    // Three of four are a quorum: writes go on.
    write(&c.members[leader], "with-four", "2");

    // Not while the added member is not connected (strict reconfig check).
    let r = add(follower, &unused_peer_url());
    assert_eq!(r.status, 500, "strict reconfig check: {}", r.dump());
    assert_eq!(member_ids(follower).len(), 4);

    // Removed for ever (a member that is down may always go): 204, then 410 for a second
    // removal, and the quirky 500 for an update; unknown and unparsable ids are 404.
    let r = request(follower, "DELETE", &format!("/v2/members/{first_id}"), "");
    assert_eq!(r.status, 204, "{}", r.dump());
    let r = request(follower, "DELETE", &format!("/v2/members/{first_id}"), "");
    assert_eq!(r.status, 410, "{}", r.dump());
    assert_eq!(
        r.json()["message"],
        format!("Member permanently removed: {first_id}")
    );
    let r = request(
        follower,
        "PUT",
        &format!("/v2/members/{first_id}"),
        &format!("{{\"peerURLs\":[\"{}\"]}}", unused_peer_url()),
    );
    assert_eq!(r.status, 500, "{}", r.dump());
    let r = request(follower, "DELETE", "/v2/members/zzz", "");
    assert_eq!(
        (r.status, r.json()["message"].clone()),
        (404, "No such member: zzz".into())
    );
    assert_eq!(member_ids(follower).len(), 3);
    // Another member's peer URL cannot be taken.
    let other = &c.members[(leader + 2) % 3];
    let r = request(
        follower,
        "PUT",
        &format!("/v2/members/{}", id_of(follower, &other.name)),
        &format!("{{\"peerURLs\":[\"{}\"]}}", c.members[leader].peer_url()),
    );
    assert_eq!(r.status, 409, "{}", r.dump());
    for m in &c.members {
        assert_has(m, "with-four", "2");
    }
}

/// A member removed while it was down still finds itself in its data dir when it comes
/// back; its peers or the leader tell it, and it stops (etcd's does too) instead of
/// running refused.
#[test]
fn a_member_removed_while_down_stops_when_it_comes_back() {
    let kind = support::target();
    let mut c = Cluster::start(kind, 3, &[]);
    let leader = c.wait_leader(Duration::from_secs(10));
    let away = (leader + 1) % 3;
    write(&c.members[leader], "k1", "v1");
    wait_started(&c.members[leader], 3);
    let id = id_of(&c.members[leader], &c.members[away].name);
    c.members[away].stop();
    let r = request(
        &c.members[leader],
        "DELETE",
        &format!("/v2/members/{id}"),
        "",
    );
    assert_eq!(r.status, 204, "{}", r.dump());
    c.members[away].spawn_now();
    let exit = c.members[away].wait_exit(Duration::from_secs(30));
    assert!(
        exit.is_some(),
        "a removed member kept running: {}",
        c.members[away].log()
    );
    if kind == Kind::Pikv {
        assert!(exit.is_some_and(|s| s.success()), "{exit:?}");
        // Two ways to learn it, both right: a peer refuses its handshake, or the leader,
        // which keeps replicating to a member being removed until it holds its removal,
        // delivers the entry first and the member applies its own removal.
        let log = c.members[away].log();
        assert!(
            log.contains("removed while it was away")
                || log.contains("was removed from the cluster (entry"),
            "{log}"
        );
    }
    let rest: Vec<usize> = (0..3).filter(|i| *i != away).collect();
    write(&c.members[rest[0]], "k2", "v2");
    for &i in &rest {
        // The quorum read of k2, written after the removal, means the removal is applied here.
        assert_has(&c.members[i], "k2", "v2");
        assert_eq!(member_ids(&c.members[i]).len(), 2, "{}", c.members[i].name);
    }
}

#[test]
fn removing_the_leader_hands_over_and_its_process_ends() {
    let kind = support::target();
    let mut c = Cluster::start(kind, 3, &[]);
    let leader = c.wait_leader(Duration::from_secs(10));
    write(&c.members[leader], "k1", "v1");
    wait_started(&c.members[leader], 3);
    settle();
    let leader_id = id_of(&c.members[leader], &c.members[leader].name);
    let r = request(
        &c.members[leader],
        "DELETE",
        &format!("/v2/members/{leader_id}"),
        "",
    );
    assert_eq!(r.status, 204, "{}", r.dump());
    if kind == Kind::Pikv {
        let gone = c.members[leader].wait_exit(Duration::from_secs(10));
        assert!(gone.is_some_and(|s| s.success()), "{gone:?}");
        assert!(
            c.members[leader]
                .log()
                .contains("was removed from the cluster"),
            "{}",
            c.members[leader].log()
        );
    }
    c.members[leader].kill9();
    let rest: Vec<usize> = (0..3).filter(|i| *i != leader).collect();
    c.wait_leader(Duration::from_secs(10));
    write(&c.members[rest[0]], "k2", "v2");
    for &i in &rest {
        let m = &c.members[i];
        // The quorum read of k2, written after the removal, means the removal is applied here.
        assert_has(m, "k2", "v2");
        assert_eq!(member_ids(m).len(), 2, "{}", m.name);
        assert_has(m, "k1", "v1");
    }
}

#[test]
fn a_member_at_a_new_peer_url_is_reachable_again() {
    let kind = support::target();
    let mut c = Cluster::start(kind, 3, &[]);
    let leader = c.wait_leader(Duration::from_secs(10));
    write(&c.members[leader], "k1", "v1");
    wait_started(&c.members[leader], 3);
    let port = |c: &Cluster| -> String {
        c.members
            .iter()
            .map(|m| format!("{}={}", m.name, m.peer_url()))
            .collect::<Vec<_>>()
            .join(",")
    };
    // Readdressed with PUT while running, then restarted at the new URL (etcd's way).
    let a = (leader + 1) % 3;
    let a_id = id_of(&c.members[leader], &c.members[a].name);
    let new_port = support::free_ports().1;
    let new_url = format!("http://127.0.0.1:{new_port}");
    let r = request(
        &c.members[leader],
        "PUT",
        &format!("/v2/members/{a_id}"),
        &format!("{{\"peerURLs\":[\"{new_url}\"]}}"),
    );
    assert_eq!(r.status, 204, "{}", r.dump());
    c.members[a].stop();
    c.members[a].peer_port = new_port;
    let cluster = port(&c);
    for m in &mut c.members {
        m.initial_cluster = Some(cluster.clone());
    }
    c.members[a].start_again();
    // pikv only: restarted with a new peer URL, a member readdresses itself.
    if kind == Kind::Pikv {
        let b = (leader + 2) % 3;
        c.members[b].stop();
        c.members[b].peer_port = support::free_ports().1;
        let cluster = port(&c);
        for m in &mut c.members {
            m.initial_cluster = Some(cluster.clone());
        }
        c.members[b].start_again();
    }
    // With the old leader gone, the two readdressed members must reach each other.
    write(&c.members[a], "k2", "v2");
    c.members[leader].stop();
    let rest: Vec<usize> = (0..3).filter(|i| *i != leader).collect();
    write(&c.members[rest[0]], "k3", "v3");
    for &i in &rest {
        assert_has(&c.members[i], "k1", "v1");
        assert_has(&c.members[i], "k3", "v3");
        let listed = c.members[i].get("/v2/members").text();
        assert!(
            listed.contains(&c.members[i].peer_url()),
            "{}: {listed}",
            c.members[i].name
        );
    }
}

/// Writes `w/<n>` for n = 0, 1, ... to the members whose client ports are in `ports`, in
/// turn, until `stop`; returns the keys whose write was acknowledged.
pub(crate) fn write_throughout(
    ports: std::sync::Arc<std::sync::Mutex<Vec<u16>>>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> std::thread::JoinHandle<Vec<u64>> {
    std::thread::spawn(move || {
        let mut acked = Vec::new();
        let mut n = 0u64;
        while !stop.load(std::sync::atomic::Ordering::SeqCst) {
            let live = ports.lock().unwrap().clone();
            let port = live[(n as usize) % live.len()];
            let body = http::form(&[("value", &n.to_string())]);
            let r = http::try_request_at(
                http::LOOPBACK,
                port,
                "PUT",
                &format!("/v2/keys/w/{n}"),
                &[("Content-Type", http::FORM)],
                body.as_bytes(),
                Duration::from_secs(10),
            );
            if matches!(&r, Ok(r) if r.status == 200 || r.status == 201) {
                acked.push(n);
            }
            n += 1;
            std::thread::sleep(Duration::from_millis(20));
        }
        acked
    })
}

/// A cluster about to grow: its members, the client ports the writer spreads its writes
/// over, the writer's stop flag and the writer (see [`write_throughout`]).
pub(crate) struct Growing {
    pub members: Vec<support::Server>,
    pub ports: std::sync::Arc<std::sync::Mutex<Vec<u16>>>,
    pub stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    pub writer: std::thread::JoinHandle<Vec<u64>>,
}

/// One member, `m0`, started alone, with writes going to it from now on.
pub(crate) fn first_member_writing(kind: Kind) -> Growing {
    use std::sync::atomic::AtomicBool;
    use std::sync::{Arc, Mutex};
    let mut m0 = support::Server::prepare(kind, "m0", support::free_ports(), &[]);
    m0.spawn_now();
    m0.wait_ready();
    let ports = Arc::new(Mutex::new(vec![m0.client_port]));
    let stop = Arc::new(AtomicBool::new(false));
    let writer = write_throughout(Arc::clone(&ports), Arc::clone(&stop));
    Growing {
        members: vec![m0],
        ports,
        stop,
        writer,
    }
}

/// The values under `w/` as `m` serves them (a linearizable read).
pub(crate) fn written(m: &support::Server) -> std::collections::BTreeSet<u64> {
    let r = m.get("/v2/keys/w?recursive=true&quorum=true");
    r.json()["node"]["nodes"]
        .as_array()
        .map(|nodes| {
            nodes
                .iter()
                .filter_map(|n| n["value"].as_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// The tutorials' way to grow a cluster, one board at a time, from one: `member add`, then
/// start the board with `--initial-cluster-state existing` and the cluster etcdctl prints.
/// Then it shrinks to three, the leader among the two removed. Writes go on throughout; at
/// the end every acknowledged one is on every remaining member.
#[test]
fn a_cluster_grows_from_one_to_five_and_shrinks_to_three_while_writing() {
    use std::sync::atomic::Ordering;
    let kind = support::target();
    let Growing {
        mut members,
        ports,
        stop,
        writer,
    } = first_member_writing(kind);
    let mut cluster = format!("m0={}", members[0].peer_url());
    for i in 1..5 {
        let first = &members[0];
        wait_started(first, i);
        if i > 1 {
            settle();
        }
        let mut joiner = support::Server::prepare(
            kind,
            &format!("m{i}"),
            support::free_ports(),
            &["--initial-cluster-state", "existing"],
        );
        let r = add(first, &joiner.peer_url());
        assert_eq!(r.status, 201, "add m{i}: {}", r.dump());
        cluster = format!("{cluster},m{i}={}", joiner.peer_url());
        joiner.initial_cluster = Some(cluster.clone());
        joiner.spawn_now();
        joiner.wait_ready();
        ports.lock().unwrap().push(joiner.client_port);
        write(&joiner, &format!("joined/m{i}"), "yes");
        members.push(joiner);
    }
    wait_started(&members[0], 5);
    for m in &members {
        // The last add may still be on its way to the members that joined before it.
        wait_started(m, 5);
        assert_has(m, "joined/m1", "yes");
    }

    // Shrink: the leader first (it hands over and ends), then a follower.
    let leader = (0..5)
        .find(|&i| {
            let s = members[i].get("/v2/stats/self").json();
            s["state"] == "StateLeader"
        })
        .unwrap_or_else(|| members[0].fail("no leader"));
    let follower = (leader + 1) % 5;
    for gone in [leader, follower] {
        settle();
        let asker = (0..5).find(|i| *i != leader && *i != follower).unwrap_or(0);
        let id = id_of(&members[asker], &members[gone].name);
        ports
            .lock()
            .unwrap()
            .retain(|p| *p != members[gone].client_port);
        let r = request(&members[asker], "DELETE", &format!("/v2/members/{id}"), "");
        assert_eq!(r.status, 204, "remove {}: {}", members[gone].name, r.dump());
        if kind == support::Kind::Pikv {
            let exit = members[gone].wait_exit(Duration::from_secs(10));
            assert!(exit.is_some_and(|s| s.success()), "{exit:?}");
        }
        members[gone].kill9();
    }
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::SeqCst);
    let acked = writer.join().unwrap_or_default();
    assert!(
        acked.len() > 50,
        "too few writes acknowledged: {}",
        acked.len()
    );
    for (i, m) in members.iter().enumerate() {
        if i == leader || i == follower {
            continue;
        }
        // A member learns that the removal committed on the next append or heartbeat, so
        // under a slow CPU (armv7 under qemu) it may still list four for a moment.
        wait_started(m, 3);
        let have = written(m);
        let missing: Vec<_> = acked.iter().filter(|n| !have.contains(n)).collect();
        assert!(
            missing.is_empty(),
            "{} lacks acknowledged writes {missing:?}",
            m.name
        );
    }
}
