//! The real clients of the single-node tests against a 3-member cluster: python-etcd's whole
//! suite through a follower plus writes spread over every member, and etcdctl (v2) writing
//! on one member and reading on another, `member list` (three members, one leader) and
//! `cluster-health` over the whole cluster.

use crate::support::cluster::Cluster;
use crate::support::{self, Kind};
use std::process::Command;
use std::time::Duration;

fn etcdctl(endpoints: &str, sync: bool, args: &[&str]) -> (i32, String, String) {
    let o = crate::etcdctl::etcdctl(endpoints, sync, args);
    (o.code, o.stdout, o.stderr)
}

fn ok(endpoints: &str, sync: bool, args: &[&str]) -> String {
    let (code, out, err) = etcdctl(endpoints, sync, args);
    assert_eq!(code, 0, "etcdctl {args:?} on {endpoints}: {out}{err}");
    out
}

#[test]
fn etcdctl_against_three_members() {
    support::require_tool("etcdctl");
    let kind = support::target();
    let c = Cluster::start(kind, 3, &[]);
    let urls: Vec<String> = c.members.iter().map(|m| m.client_url()).collect();
    // Write on each member, read on the next (etcd's plain GET on a follower may lag, so
    // the read is --quorum there; pikv's is linearizable either way).
    for i in 0..3 {
        let key = format!("/ctl/k{i}");
        assert_eq!(
            ok(&urls[i], false, &["set", &key, &format!("v{i}")]),
            format!("v{i}\n")
        );
        let next = &urls[(i + 1) % 3];
        let read = ok(next, false, &["get", "--quorum", &key]);
        assert_eq!(read, format!("v{i}\n"), "get on {next}");
        if kind == Kind::Pikv {
            assert_eq!(
                ok(next, false, &["get", &key]),
                format!("v{i}\n"),
                "plain get on {next}"
            );
        }
    }
    // All endpoints at once, with and without sync (sync reads /v2/members and uses the
    // advertised client URLs, so every member's must be published).
    let all = urls.join(",");
    for sync in [false, true] {
        ok(&all, sync, &["mk", &format!("/ctl/made-{sync}"), "x"]);
        let ls = ok(&all, sync, &["ls", "--sort", "/ctl"]);
        assert!(ls.contains(&format!("/ctl/made-{sync}")), "{ls}");
    }
    let (code, _, err) = etcdctl(&all, false, &["mk", "/ctl/made-false", "again"]);
    assert_eq!(code, 4, "{err}");
    assert!(
        err.starts_with("Error:  105: Key already exists (/ctl/made-false)"),
        "{err}"
    );
    // member list: three lines, one leader; each member's name and URLs.
    support::wait_for(
        "every member published its URLs",
        Duration::from_secs(15),
        || {
            let list = ok(&all, true, &["member", "list"]);
            (list.lines().count() == 3 && urls.iter().all(|u| list.contains(u))).then_some(())
        },
    );
    let list = ok(&all, true, &["member", "list"]);
    assert_eq!(list.matches("isLeader=true").count(), 1, "{list}");
    for m in &c.members {
        assert!(
            list.contains(&format!(
                "name={} peerURLs={} clientURLs={}",
                m.name,
                m.peer_url(),
                m.client_url()
            )),
            "{list}"
        );
    }
    let health = ok(&all, true, &["cluster-health"]);
    assert_eq!(
        health
            .matches(" is healthy: got healthy result from ")
            .count(),
        3,
        "{health}"
    );
    assert!(health.ends_with("cluster is healthy\n"), "{health}");
}

#[test]
fn python_etcd_against_three_members() {
    support::require_tool("python3");
    let c = Cluster::start(support::target(), 3, &[]);
    // The suite's main client talks to a follower: every write it makes is forwarded.
    let leader = c.wait_leader(Duration::from_secs(10));
    let first = (leader + 1) % 3;
    let mut ports = vec![c.members[first].client_port.to_string()];
    ports.extend(
        (0..3)
            .filter(|i| *i != first)
            .map(|i| c.members[i].client_port.to_string()),
    );
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/it/py/client_suite.py");
    let out = Command::new("python3")
        .arg(script)
        .args(&ports)
        .output()
        .expect("run client_suite.py");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "client_suite.py against 3 members failed ({}):\n--- stdout\n{stdout}\n--- stderr\n{stderr}\n{}",
        out.status,
        c.logs()
    );
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with("ok spread over 3 members")),
        "{stdout}"
    );
    assert_eq!(stdout.lines().last(), Some("ALL OK"), "{stdout}");
}
