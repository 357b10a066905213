//! Joining by naming a running member (`--join`, and 0.4's `-peers`), one command per
//! board: the etcd 0.4 clustering guide's three machines unchanged (with free ports), with
//! 0.4's `/v2/machines`, `/v2/keys/_etcd/machines` and `/v2/leader`; a cluster grown from
//! one to five with `--join` while writing; a joined member restarted with its command
//! line; a member whose data dir was wiped coming back with the same command line.
//!
//! etcd 3.4 has none of this (`-peers` and the 0.4 address flags are unknown to it): under
//! `PIKV_IT_TARGET=etcd` these tests say so and return.

use crate::membership::{
    assert_has, first_member_writing, id_of, member_ids, wait_started, write, written, Growing,
};
use crate::support::{self, Kind};
use std::time::{Duration, Instant};

fn pikv_only(test: &str) -> bool {
    if support::target() == Kind::Etcd {
        eprintln!(
            "SKIPPED {test}: etcd 3.4 has no --join/-peers or 0.4 endpoints (a pikv extension)"
        );
        return false;
    }
    true
}

/// Retries `f` for up to 20 s (an election after a kill), then fails with the last answer.
fn eventually<T>(what: &str, mut f: impl FnMut() -> Result<T, String>) -> T {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match f() {
            Ok(v) => return v,
            Err(e) if Instant::now() > deadline => panic!("{what}: {e}"),
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}

fn text_of(m: &support::Server, target: &str) -> Result<String, String> {
    let r = m
        .try_request("GET", target, &[], b"", Duration::from_secs(5))
        .map_err(|e| e.to_string())?;
    if r.status != 200 {
        return Err(r.dump());
    }
    Ok(r.text())
}

/// The guide's commands, with free ports in place of 4001-4003 and 7001-7003: the first
/// machine alone, the two others with `-peers` naming the first and each other (the third
/// is not up when the second starts).
#[test]
fn the_etcd_0_4_clustering_guide_forms_three_working_machines() {
    if !pikv_only("the_etcd_0_4_clustering_guide_forms_three_working_machines") {
        return;
    }
    let ports: Vec<(u16, u16)> = (0..3).map(|_| support::free_ports()).collect();
    let addr = |p: u16| format!("127.0.0.1:{p}");
    let mut machines: Vec<support::Server> = (0..3)
        .map(|i| {
            let name = format!("machine{}", i + 1);
            let mut m = support::Server::prepare(Kind::Pikv, &name, ports[i], &[]);
            let mut args = vec![
                "-peer-addr".to_string(),
                addr(ports[i].1),
                "-addr".to_string(),
                addr(ports[i].0),
            ];
            if i > 0 {
                let others: Vec<String> = (0..3)
                    .filter(|j| *j != i)
                    .map(|j| addr(ports[j].1))
                    .collect();
                args.extend(["-peers".to_string(), others.join(",")]);
            }
            args.extend([
                "-data-dir".to_string(),
                format!("machines/{name}"),
                "-name".to_string(),
                name,
            ]);
            m.raw_args = Some(args);
            m
        })
        .collect();
    for m in machines.iter_mut() {
        m.spawn_now();
        m.wait_ready();
    }
    wait_started(&machines[0], 3);

    // curl -L http://127.0.0.1:4001/v2/machines
    let mut clients: Vec<String> = ports
        .iter()
        .map(|p| format!("http://{}", addr(p.0)))
        .collect();
    clients.sort();
    assert_eq!(
        text_of(&machines[0], "/v2/machines"),
        Ok(clients.join(", "))
    );

    // curl -L http://127.0.0.1:4001/v2/keys/_etcd/machines
    let listing = machines[0].get("/v2/keys/_etcd/machines").json();
    assert_eq!(listing["action"], "get", "{listing}");
    assert_eq!(listing["node"]["key"], "/_etcd/machines", "{listing}");
    assert_eq!(listing["node"]["dir"], true, "{listing}");
    let nodes = listing["node"]["nodes"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let got: Vec<(String, String)> = nodes
        .iter()
        .map(|n| {
            (
                n["key"].as_str().unwrap_or_default().to_string(),
                n["value"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    let want: Vec<(String, String)> = (0..3)
        .map(|i| {
            (
                format!("/_etcd/machines/machine{}", i + 1),
                format!(
                    "raft=http://{}&etcd=http://{}",
                    addr(ports[i].1),
                    addr(ports[i].0)
                ),
            )
        })
        .collect();
    assert_eq!(got, want, "{listing}");
    let one = machines[1].get("/v2/keys/_etcd/machines/machine3").json();
    assert_eq!(
        one["node"]["value"].as_str(),
        Some(want[2].1.as_str()),
        "{one}"
    );
    let missing = machines[1].get("/v2/keys/_etcd/machines/nope");
    assert_eq!(missing.status, 404, "{}", missing.dump());
    assert_eq!(missing.json()["errorCode"], 100, "{}", missing.dump());
    // The listing is the membership's, not a key anyone may write.
    let refused = machines[0].put("/v2/keys/_etcd/machines/x", "value=1");
    assert_eq!(refused.json()["errorCode"], 107, "{}", refused.dump());

    // curl -L http://127.0.0.1:4001/v2/leader: the first machine, unless it died meanwhile.
    let leader_of = |m: &support::Server| -> Result<usize, String> {
        let url = text_of(m, "/v2/leader")?;
        (0..3)
            .find(|&i| url == format!("http://{}", addr(ports[i].1)))
            .ok_or(format!("leader {url:?} is no machine's peer URL"))
    };
    let leader = eventually("a leader", || leader_of(&machines[0]));
    let state = machines[leader].get("/v2/stats/self").json();
    assert_eq!(state["state"], "StateLeader", "{state}");

    // curl -L http://127.0.0.1:4001/v2/keys/foo -XPUT -d value=bar
    let set = machines[0].put("/v2/keys/foo", "value=bar");
    assert_eq!(set.status, 201, "{}", set.dump());

    // Killing the leader: the others still serve foo and elect one of themselves.
    machines[leader].kill9();
    let other = (leader + 1) % 3;
    assert_has(&machines[other], "foo", "bar");
    let new_leader = eventually("a new leader", || match leader_of(&machines[other]) {
        Ok(l) if l != leader => Ok(l),
        Ok(l) => Err(format!("still the dead machine{}", l + 1)),
        Err(e) => Err(e),
    });
    assert_ne!(new_leader, leader);

    // Testing persistence: stop every machine, rerun the same commands.
    for m in machines.iter_mut() {
        m.stop();
    }
    for m in machines.iter_mut() {
        m.spawn_now();
    }
    for m in machines.iter_mut() {
        m.wait_ready();
    }
    assert_has(&machines[1], "foo", "bar");
    assert_eq!(member_ids(&machines[1]).len(), 3);
    // The restarts joined nothing again: one add per joined machine in its log.
    for m in &machines[1..] {
        assert_eq!(
            m.log().matches("added as member").count(),
            1,
            "{}: {}",
            m.name,
            m.log()
        );
    }
}

/// One command per board: each new member names a running one, by client URL or by peer
/// URL (one list starts with a member that is not there), while writes go on. Then a
/// joined member restarts with its command line (it only restarts), and one whose data dir
/// was wiped comes back with its command line: it removes its old self, is added afresh
/// and gets all the data.
#[test]
fn a_cluster_grows_from_one_to_five_with_join_and_a_wiped_member_rejoins() {
    use std::sync::atomic::Ordering;
    if !pikv_only("a_cluster_grows_from_one_to_five_with_join_and_a_wiped_member_rejoins") {
        return;
    }
    let Growing {
        mut members,
        ports,
        stop,
        writer,
    } = first_member_writing(Kind::Pikv);
    for i in 1..5 {
        let via = match i {
            1 => members[0].client_url(),
            2 => members[1].peer_url(),
            3 => format!(
                "http://127.0.0.1:{},{}",
                support::free_ports().0,
                members[2].client_url()
            ),
            _ => format!("{},{}", members[0].peer_url(), members[3].client_url()),
        };
        // No pause for --strict-reconfig-check: a joiner asks again until it is let in.
        let mut joiner = support::Server::prepare(
            Kind::Pikv,
            &format!("m{i}"),
            support::free_ports(),
            &["--join", &via],
        );
        joiner.spawn_now();
        joiner.wait_ready();
        ports.lock().unwrap().push(joiner.client_port);
        write(&joiner, &format!("joined/m{i}"), "yes");
        members.push(joiner);
    }
    wait_started(&members[0], 5);

    // A joined member restarted with the same command line just restarts.
    let before = id_of(&members[0], "m2");
    members[2].restart();
    assert_eq!(id_of(&members[0], "m2"), before);
    assert_eq!(members[2].log().matches("added as member").count(), 1);

    // The same command line started a second time elsewhere (an empty data dir) while m3
    // runs: refused, and m3 is not removed.
    let m3_id = id_of(&members[0], "m3");
    let copy = support::TempDir::new("pikv-join-copy");
    let (client, spare_peer) = support::free_ports();
    let client_url = format!("http://127.0.0.1:{client}");
    let out = support::run_pikv(
        &[
            "--name",
            "m3",
            "--data-dir",
            copy.path().join("d").to_str().unwrap_or("d"),
            "--listen-client-urls",
            &client_url,
            "--advertise-client-urls",
            &client_url,
            "--listen-peer-urls",
            &format!("http://127.0.0.1:{spare_peer}"),
            "--initial-advertise-peer-urls",
            &members[3].peer_url(),
            "--initial-cluster",
            &format!("m3={}", members[3].peer_url()),
            "--join",
            &members[0].client_url(),
        ],
        &[],
    );
    assert_eq!(out.code, Some(1), "{out:?}");
    assert!(out.stderr.contains("still answers at"), "{out:?}");
    assert_eq!(
        id_of(&members[0], "m3"),
        m3_id,
        "the running m3 was replaced"
    );
    assert!(members[3].is_alive(), "{}", members[3].log());

    // A dead SD card: m3's data dir is gone; the same command line brings it back.
    let old = id_of(&members[0], "m3");
    ports
        .lock()
        .unwrap()
        .retain(|p| *p != members[3].client_port);
    members[3].kill9();
    std::fs::remove_dir_all(members[3].data_dir()).unwrap_or_else(|e| panic!("wipe m3: {e}"));
    members[3].start_again();
    ports.lock().unwrap().push(members[3].client_port);
    wait_started(&members[0], 5);
    let new = id_of(&members[0], "m3");
    assert_ne!(new, old, "a wiped member comes back under a new id");
    assert!(
        members[3].log().contains("has no data here"),
        "{}",
        members[3].log()
    );
    let gone = members[0].get(&format!("/v2/members/{old}"));
    assert_ne!(gone.status, 200, "{}", gone.dump());

    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::SeqCst);
    let acked = writer.join().unwrap_or_default();
    assert!(
        acked.len() > 50,
        "too few writes acknowledged: {}",
        acked.len()
    );
    for m in &members {
        wait_started(m, 5);
        assert_has(m, "joined/m1", "yes");
        let have = written(m);
        let missing: Vec<_> = acked.iter().filter(|n| !have.contains(n)).collect();
        assert!(
            missing.is_empty(),
            "{} lacks acknowledged writes {missing:?}",
            m.name
        );
    }
}

/// etcd's way back for a dead SD card: remove the member, add it again, start it
/// `existing` with an empty data dir. Against etcd too.
#[test]
fn a_member_whose_data_dir_was_wiped_rejoins_after_remove_and_add() {
    let kind = support::target();
    let mut c = crate::support::cluster::Cluster::start(kind, 3, &[]);
    for i in 0..20 {
        write(&c.members[i % 3], &format!("d/{i}"), &format!("v{i}"));
    }
    let leader = c.wait_leader(Duration::from_secs(10));
    let lost = (leader + 1) % 3;
    let asker = (leader + 2) % 3;
    c.members[lost].kill9();
    std::fs::remove_dir_all(c.members[lost].data_dir()).unwrap_or_else(|e| panic!("wipe: {e}"));
    let old = id_of(&c.members[asker], &c.members[lost].name);
    let r = crate::membership::request(
        &c.members[asker],
        "DELETE",
        &format!("/v2/members/{old}"),
        "",
    );
    assert_eq!(r.status, 204, "{}", r.dump());
    write(&c.members[asker], "after/remove", "yes");
    crate::membership::settle();
    let r = crate::membership::add(&c.members[asker], &c.members[lost].peer_url());
    assert_eq!(r.status, 201, "{}", r.dump());
    c.members[lost].extra_args.extend([
        "--initial-cluster-state".to_string(),
        "existing".to_string(),
    ]);
    c.members[lost].start_again();
    let m = &c.members[lost];
    for i in 0..20 {
        assert_has(m, &format!("d/{i}"), &format!("v{i}"));
    }
    assert_has(m, "after/remove", "yes");
    wait_started(&c.members[asker], 3);
    assert_ne!(id_of(&c.members[asker], &c.members[lost].name), old);
}
