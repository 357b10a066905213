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

fn request(m: &support::Server, method: &str, target: &str, body: &str) -> http::Response {
    m.try_request(
        method,
        target,
        &[JSON],
        body.as_bytes(),
        Duration::from_secs(20),
    )
    .unwrap_or_else(|e| m.fail(&format!("{method} {target}: {e}")))
}

fn add(m: &support::Server, peer_url: &str) -> http::Response {
    let body = format!("{{\"peerURLs\":[\"{peer_url}\"]}}");
    request(m, "POST", "/v2/members", &body)
}

fn member_ids(m: &support::Server) -> Vec<(String, String)> {
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

fn id_of(m: &support::Server, name: &str) -> String {
    member_ids(m)
        .into_iter()
        .find(|(_, n)| n == name)
        .map(|(id, _)| id)
        .unwrap_or_else(|| m.fail(&format!("no member named {name}")))
}

/// Writes `key` through `m`, retrying while the cluster elects (a 300 error or no answer);
/// panics when no write succeeds within 15 s.
fn write(m: &support::Server, key: &str, value: &str) {
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
            Ok(r) if r.status == 200 || r.status == 201 => return,
            _ if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(100)),
            other => m.fail(&format!("write {key}: {other:?}")),
        }
    }
}

fn assert_has(m: &support::Server, key: &str, value: &str) {
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
fn wait_started(m: &support::Server, n: usize) {
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
fn settle() {
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
        assert_eq!(member_ids(m).len(), 2, "{}", m.name);
        assert_has(m, "k1", "v1");
        assert_has(m, "k2", "v2");
    }
}

#[test]
fn a_member_at_a_new_peer_url_is_reachable_again() {
    let kind = support::target();
    let mut c = Cluster::start(kind, 3, &[]);
    let leader = c.wait_leader(Duration::from_secs(10));
    write(&c.members[leader], "k1", "v1");
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
