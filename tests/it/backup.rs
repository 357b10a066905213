//! Losing quorum and coming back: `pikv backup` of a running member while clients write,
//! restored with `--force-new-cluster` as a one-member cluster on new ports; and
//! `--force-new-cluster` on the last member of a 3-member cluster whose other two were
//! killed. Each time every write acknowledged before (the backup began, the quorum was
//! lost) is there with its value and modifiedIndex, a new write gets a higher index, the
//! member keeps its id, a restart without the flag keeps everything, and a member can be
//! added again with `POST /v2/members` and `--initial-cluster-state existing`.
//!
//! pikv only for the backup: etcd 3.4's `etcdctl backup` copies an etcd data dir in etcd's
//! own format, a different command with other flags.

use crate::membership::write;
use crate::support::cluster::Cluster;
use crate::support::{self, http, Kind, Server};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One acknowledged write: its key number, its modifiedIndex, when the answer arrived.
type Ack = (u64, u64, Instant);

/// Writes `b/<n>` = `v<n>` through the member at `port` from `clients` threads until `stop`,
/// recording each acknowledged write.
fn write_until(
    port: u16,
    clients: u64,
    stop: Arc<AtomicBool>,
    acks: Arc<Mutex<Vec<Ack>>>,
) -> Vec<std::thread::JoinHandle<()>> {
    (0..clients)
        .map(|t| {
            let (stop, acks) = (Arc::clone(&stop), Arc::clone(&acks));
            std::thread::spawn(move || {
                let mut n = t;
                while !stop.load(Ordering::SeqCst) {
                    let body = http::form(&[("value", &format!("v{n}"))]);
                    let r = http::try_request_at(
                        http::LOOPBACK,
                        port,
                        "PUT",
                        &format!("/v2/keys/b/{n}"),
                        &[("Content-Type", http::FORM)],
                        body.as_bytes(),
                        Duration::from_secs(10),
                    );
                    if let Ok(r) = r {
                        if r.status == 200 || r.status == 201 {
                            let index = r.modified_index();
                            acks.lock().unwrap().push((n, index, Instant::now()));
                        }
                    }
                    n += clients;
                }
            })
        })
        .collect()
}

/// Every key under `b/` that `m` serves: key number → (value, modifiedIndex).
fn tree(m: &Server) -> BTreeMap<u64, (String, u64)> {
    let r = m.get("/v2/keys/b?recursive=true&quorum=true");
    assert_eq!(r.status, 200, "{}", r.dump());
    r.json()["node"]["nodes"]
        .as_array()
        .map(|nodes| {
            nodes
                .iter()
                .filter_map(|n| {
                    let key = n["key"].as_str()?.strip_prefix("/b/")?.parse().ok()?;
                    let value = n["value"].as_str()?.to_string();
                    Some((key, (value, n["modifiedIndex"].as_u64()?)))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Checks that `m` serves every write of `acks` with its value and index.
fn assert_all_there(m: &Server, acks: &[Ack], what: &str) {
    let have = tree(m);
    for (n, index, _) in acks {
        match have.get(n) {
            Some((value, at)) if *value == format!("v{n}") && at == index => {}
            other => m.fail(&format!(
                "{what}: b/{n} (acknowledged at index {index}) is {other:?}"
            )),
        }
    }
}

/// The ids `m` lists in `GET /v2/members`.
fn member_ids(m: &Server) -> Vec<String> {
    let list = m.get("/v2/members").json();
    list["members"]
        .as_array()
        .unwrap_or_else(|| m.fail(&format!("no member list: {list}")))
        .iter()
        .filter_map(|x| Some(x["id"].as_str()?.to_string()))
        .collect()
}

fn own_id(m: &Server) -> String {
    let s = m.get("/v2/stats/self").json();
    s["id"]
        .as_str()
        .unwrap_or_else(|| m.fail(&format!("no id in {s}")))
        .to_string()
}

/// The highest modifiedIndex `m` serves under `/`.
fn top_index(m: &Server) -> u64 {
    fn walk(node: &serde_json::Value, top: &mut u64) {
        if let Some(i) = node["modifiedIndex"].as_u64() {
            *top = (*top).max(i);
        }
        for child in node["nodes"].as_array().into_iter().flatten() {
            walk(child, top);
        }
    }
    let r = m.get("/v2/keys/?recursive=true&quorum=true");
    let mut top = 0;
    walk(&r.json()["node"], &mut top);
    top
}

/// Adds a new member to the one-member cluster `m` (named `name` in the flags) and checks
/// it serves `key` = `value`.
fn add_member(m: &Server, name: &str, key: &str, value: &str) -> Server {
    let mut joiner = Server::prepare(
        Kind::Pikv,
        "joiner",
        support::free_ports(),
        &["--initial-cluster-state", "existing"],
    );
    let body = format!("{{\"peerURLs\":[\"{}\"]}}", joiner.peer_url());
    let r = m
        .try_request(
            "POST",
            "/v2/members",
            &[("Content-Type", "application/json")],
            body.as_bytes(),
            Duration::from_secs(20),
        )
        .unwrap_or_else(|e| m.fail(&format!("POST /v2/members: {e}")));
    assert_eq!(r.status, 201, "{}", r.dump());
    joiner.initial_cluster = Some(format!(
        "{name}={},joiner={}",
        m.peer_url(),
        joiner.peer_url()
    ));
    joiner.spawn_now();
    joiner.wait_ready();
    let got = joiner.get(&format!("/v2/keys/{key}?quorum=true"));
    assert_eq!(
        got.json()["node"]["value"].as_str(),
        Some(value),
        "{}",
        got.dump()
    );
    support::wait_for("two members listed", Duration::from_secs(10), || {
        (member_ids(m).len() == 2).then_some(())
    });
    joiner
}

#[test]
fn a_backup_taken_while_writing_restores_as_a_one_member_cluster() {
    if support::target() == Kind::Etcd {
        eprintln!(
            "SKIPPED: `pikv backup` is pikv's own command (etcd 3.4 has `etcdctl backup`, for \
             etcd's data dirs, with other flags)"
        );
        return;
    }
    // A long election timeout: the backup is of the leader, which must stay the leader
    // while the writes it acknowledged are counted.
    let c = Cluster::start(
        Kind::Pikv,
        3,
        &["--heartbeat-interval", "100", "--election-timeout", "3000"],
    );
    let leader = c.wait_leader(Duration::from_secs(10));
    let source = &c.members[leader];
    let source_id = own_id(source);
    let stop = Arc::new(AtomicBool::new(false));
    let acks = Arc::new(Mutex::new(Vec::new()));
    let writers = write_until(source.client_port, 4, Arc::clone(&stop), Arc::clone(&acks));
    support::wait_for("300 writes", Duration::from_secs(60), || {
        (acks.lock().unwrap().len() >= 300).then_some(())
    });
    let mut restored = Server::prepare(
        Kind::Pikv,
        "restored",
        support::free_ports(),
        &["--force-new-cluster"],
    );
    let backup_dir = restored.data_dir();
    let backup = || {
        support::run_pikv(
            &[
                "backup",
                "--data-dir",
                source.data_dir().to_str().unwrap(),
                "--backup-dir",
                backup_dir.to_str().unwrap(),
            ],
            &[],
        )
    };
    let began = Instant::now();
    let out = backup();
    let took = began.elapsed();
    assert_eq!(out.code, Some(0), "{out:?}");
    assert!(out.stdout.contains("backup of member"), "{out:?}");
    // Writes go on after it too: they may or may not be in the backup.
    let during = acks.lock().unwrap().len();
    support::wait_for("100 more writes", Duration::from_secs(60), || {
        (acks.lock().unwrap().len() >= during + 100).then_some(())
    });
    stop.store(true, Ordering::SeqCst);
    for w in writers {
        w.join().expect("a writer panicked");
    }
    assert_eq!(
        c.leader(),
        Some(leader),
        "the leader changed:\n{}",
        c.logs()
    );
    let all = acks.lock().unwrap().clone();
    let before: Vec<Ack> = all.iter().filter(|a| a.2 < began).copied().collect();
    let top_before = before.iter().map(|a| a.1).max().unwrap_or(0);
    eprintln!(
        "backup of the leader took {took:?} with 4 clients writing; {} writes acknowledged \
         before it began (up to index {top_before}), {} in all; {}",
        before.len(),
        all.len(),
        out.stdout.trim()
    );
    // A second backup into the same (now full) dir is refused with the path.
    let again = backup();
    assert_eq!(again.code, Some(1), "{again:?}");
    assert!(again.stderr.starts_with("pikv: "), "{again:?}");
    assert!(again.stderr.contains("not empty"), "{again:?}");
    assert!(
        again.stderr.contains(backup_dir.to_str().unwrap()),
        "{again:?}"
    );
    drop(c);

    restored.spawn_now();
    restored.wait_ready();
    assert!(
        restored.log().contains("--force-new-cluster: member"),
        "{}",
        restored.log()
    );
    assert_all_there(&restored, &before, "restored from the backup");
    assert_eq!(member_ids(&restored), vec![source_id.clone()]);
    let top = top_index(&restored);
    assert!(top >= top_before, "{top} < {top_before}");
    let next = write(&restored, "after/restore", "1");
    assert!(next > top, "the index goes on: {next} after {top}");

    // Without the flag: the same one-member cluster, everything kept.
    restored.extra_args.clear();
    restored.restart();
    assert_all_there(&restored, &before, "restarted without the flag");
    assert_eq!(member_ids(&restored), vec![source_id]);
    let later = write(&restored, "after/restart", "1");
    assert!(later > next, "{later} after {next}");
    let _joiner = add_member(&restored, "restored", "after/restart", "1");
}

#[test]
fn the_last_member_of_a_cluster_that_lost_quorum_goes_on_alone() {
    let kind = support::target();
    let mut c = Cluster::start(kind, 3, &[]);
    let leader = c.wait_leader(Duration::from_secs(10));
    let port = c.members[leader].client_port;
    let survivor_id = own_id(&c.members[leader]);
    let stop = Arc::new(AtomicBool::new(false));
    let acks = Arc::new(Mutex::new(Vec::new()));
    let writers = write_until(port, 2, Arc::clone(&stop), Arc::clone(&acks));
    support::wait_for("200 writes", Duration::from_secs(60), || {
        (acks.lock().unwrap().len() >= 200).then_some(())
    });
    stop.store(true, Ordering::SeqCst);
    for w in writers {
        w.join().expect("a writer panicked");
    }
    let acked = acks.lock().unwrap().clone();
    // The two followers die: the leader is the last member, and it holds every write the
    // cluster acknowledged.
    for i in (0..3).filter(|&i| i != leader) {
        c.members[i].kill9();
    }
    // A write at once (before check-quorum makes the leader step down) is never
    // acknowledged, but its entry is in the survivor's log.
    let body = http::form(&[("value", "maybe")]);
    let pending = c.members[leader].try_request(
        "PUT",
        "/v2/keys/pending",
        &[("Content-Type", http::FORM)],
        body.as_bytes(),
        Duration::from_secs(2),
    );
    assert!(
        !matches!(&pending, Ok(r) if r.status == 200 || r.status == 201),
        "{pending:?}"
    );
    let top_before = acked.iter().map(|a| a.1).max().unwrap_or(0);
    // The board loses power too, then comes back alone.
    let survivor = &mut c.members[leader];
    survivor.kill9();
    survivor.extra_args.push("--force-new-cluster".into());
    survivor.start_again();
    if kind == Kind::Pikv {
        assert!(
            survivor.log().contains("--force-new-cluster: member"),
            "{}",
            survivor.log()
        );
        // pikv commits everything in the WAL, as etcd does (node::force).
        let got = survivor.get("/v2/keys/pending");
        assert_eq!(
            got.json()["node"]["value"].as_str(),
            Some("maybe"),
            "{}",
            got.dump()
        );
    }
    assert_all_there(survivor, &acked, "forced on the survivor");
    assert_eq!(member_ids(survivor), vec![survivor_id.clone()]);
    let top = top_index(survivor);
    assert!(top >= top_before, "{top} < {top_before}");
    let next = write(survivor, "after/force", "1");
    assert!(next > top, "the index goes on: {next} after {top}");
    eprintln!(
        "{}: {} writes acknowledged before quorum was lost (up to index {top_before}); the \
         survivor alone wrote at index {next}",
        kind.label(),
        acked.len()
    );

    // Restarted with its original flags and without --force-new-cluster: still alone.
    survivor.extra_args.retain(|a| a != "--force-new-cluster");
    survivor.restart();
    assert_all_there(survivor, &acked, "restarted without the flag");
    assert_eq!(member_ids(survivor), vec![survivor_id]);
    let later = write(survivor, "after/restart", "1");
    assert!(later > next, "{later} after {next}");
    if kind == Kind::Pikv {
        let name = survivor.name.clone();
        let _joiner = add_member(survivor, &name, "after/restart", "1");
    }
}

/// The refusals, each one line on stderr naming the path: a backup of a directory that is
/// not a pikv data dir (exit 1, nothing left behind), bad flags (exit 2), and
/// `--force-new-cluster` on a data dir that holds no member (pikv only: etcd bootstraps a
/// new cluster then; pikv refuses, since the flag is given to restore data).
#[test]
fn backup_and_force_new_cluster_refuse_what_they_cannot_use() {
    if support::target() == Kind::Etcd {
        eprintln!("SKIPPED: pikv's own command line (etcd bootstraps an empty data dir)");
        return;
    }
    let tmp = support::TempDir::new("backup-refusals");
    let not_data = tmp.path().join("not-data");
    std::fs::create_dir_all(&not_data).unwrap();
    let into = tmp.path().join("into");
    let out = support::run_pikv(
        &[
            "backup",
            "--data-dir",
            not_data.to_str().unwrap(),
            "--backup-dir",
            into.to_str().unwrap(),
        ],
        &[],
    );
    assert_eq!(out.code, Some(1), "{out:?}");
    assert_eq!(out.stderr.lines().count(), 1, "{out:?}");
    assert!(out.stderr.starts_with("pikv: "), "{out:?}");
    assert!(out.stderr.contains(not_data.to_str().unwrap()), "{out:?}");
    assert!(out.stderr.contains("not a pikv data dir"), "{out:?}");
    assert!(!into.exists(), "a failed backup leaves nothing");

    let out = support::run_pikv(&["backup", "--data-dir", "x"], &[]);
    assert_eq!(out.code, Some(2), "{out:?}");
    assert!(out.stderr.contains("--backup-dir is required"), "{out:?}");
    let out = support::run_pikv(&["backup", "--help"], &[]);
    assert_eq!(out.code, Some(0), "{out:?}");
    assert!(out.stdout.contains("--force-new-cluster"), "{out:?}");

    let empty = tmp.path().join("empty.data");
    let out = support::run_pikv(
        &[
            "--force-new-cluster",
            "--data-dir",
            empty.to_str().unwrap(),
            "--listen-client-urls",
            "http://127.0.0.1:0",
            "--advertise-client-urls",
            "http://127.0.0.1:0",
        ],
        &[],
    );
    assert_eq!(out.code, Some(1), "{out:?}");
    assert!(out.stderr.contains("holds no member"), "{out:?}");
    assert!(out.stderr.contains(empty.to_str().unwrap()), "{out:?}");
    assert!(!empty.exists(), "nothing is created");
}

/// `pikv ctl backup` (etcdctl's `backup` command) is `pikv backup`: a running member's copy
/// that `--force-new-cluster` starts with the data. Nothing on stdout, as etcdctl; etcd's
/// separate WAL directory flags are refused, not ignored.
#[test]
fn ctl_backup_copies_a_running_member() {
    if support::target() == Kind::Etcd {
        eprintln!("SKIPPED: `pikv ctl backup` copies pikv data dirs");
        return;
    }
    let source = Server::start(Kind::Pikv);
    write(&source, "kept", "yes");
    let mut restored = Server::prepare(
        Kind::Pikv,
        "restored",
        support::free_ports(),
        &["--force-new-cluster"],
    );
    let data_dir = source.data_dir();
    let backup_dir = restored.data_dir();
    let (from, to) = (data_dir.to_str().unwrap(), backup_dir.to_str().unwrap());
    let refused = support::run_pikv(
        &[
            "ctl",
            "backup",
            "--data-dir",
            from,
            "--backup-dir",
            to,
            "--wal-dir",
            "w",
        ],
        &[],
    );
    assert_eq!(refused.code, Some(1), "{refused:?}");
    assert!(
        refused.stderr.contains("--wal-dir is not supported"),
        "{refused:?}"
    );
    assert!(
        !backup_dir.exists(),
        "a refused backup wrote {}",
        backup_dir.display()
    );
    let out = support::run_pikv(
        &[
            "ctl",
            "backup",
            "--data-dir",
            from,
            "--backup-dir",
            to,
            "--with-v3",
        ],
        &[],
    );
    assert_eq!((out.code, out.stdout.as_str()), (Some(0), ""), "{out:?}");
    assert!(out.stderr.contains("backup of member"), "{out:?}");
    restored.spawn_now();
    restored.wait_ready();
    let r = restored.get("/v2/keys/kept");
    assert_eq!(r.json()["node"]["value"], "yes", "{}", r.dump());
}

/// A 2-member cluster that loses one member stays consistent: the survivor acknowledges no
/// write and serves no linearizable read (etcd's timeout error), and keeps what it had; the
/// way out is `--force-new-cluster` on it (README "I lost quorum").
#[test]
fn a_two_member_cluster_that_loses_one_stays_consistent_until_forced() {
    let kind = support::target();
    let mut c = Cluster::start(kind, 2, &[]);
    let leader = c.wait_leader(Duration::from_secs(10));
    for i in 0..20 {
        write(&c.members[i % 2], &format!("two/{i}"), &format!("v{i}"));
    }
    let lost = 1 - leader;
    c.members[lost].kill9();
    let survivor = &mut c.members[leader];
    let body = http::form(&[("value", "never")]);
    let w = survivor.try_request(
        "PUT",
        "/v2/keys/two/after",
        &[("Content-Type", http::FORM)],
        body.as_bytes(),
        Duration::from_secs(30),
    );
    match &w {
        Ok(r) => {
            assert_eq!(r.status, 500, "{}", r.dump());
            assert_eq!(r.json()["errorCode"], 300, "{}", r.dump());
        }
        Err(e) => panic!("no answer to a write without quorum: {e}"),
    }
    let r = survivor.try_request(
        "GET",
        "/v2/keys/two/0?quorum=true",
        &[],
        b"",
        Duration::from_secs(30),
    );
    assert!(
        matches!(&r, Ok(r) if r.status == 500),
        "a linearizable read without quorum: {r:?}"
    );
    survivor.kill9();
    survivor.extra_args.push("--force-new-cluster".into());
    survivor.start_again();
    for i in 0..20 {
        let got = survivor.get(&format!("/v2/keys/two/{i}"));
        assert_eq!(
            got.json()["node"]["value"],
            format!("v{i}"),
            "{}",
            got.dump()
        );
    }
    write(survivor, "two/forced", "yes");
    assert_eq!(member_ids(survivor).len(), 1);
}
