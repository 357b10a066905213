//! The real `etcdctl` (v2 mode, `ETCDCTL_API=2`) against the server under test.
//!
//! What it proves: the etcdctl workflows of the tutorials (spec §16, tutorial 002) work
//! unchanged — set, get, mk, mkdir, ls -r --sort, update, rm, rmdir, setdir, updatedir,
//! set --ttl, mk --in-order, watch, member list, cluster-health — with the exact stdout,
//! stderr (e.g. `Error:  100: Key not found (/two) [<idx>]`) and exit codes etcdctl prints
//! for etcd. Expected indexes are read from the server itself (`X-Etcd-Index`), never
//! hard-coded. Each suite runs twice: with `--no-sync` and without (then etcdctl first
//! reads `/v2/members` and uses the advertised client URLs, so those must be right).

use crate::support::{self, Server};
use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

pub(crate) struct Out {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

fn ctl(s: &Server, sync: bool, args: &[&str]) -> Out {
    etcdctl(&s.client_url(), sync, args)
}

/// Runs etcdctl v2 against `endpoints` (comma-separated client URLs).
pub(crate) fn etcdctl(endpoints: &str, sync: bool, args: &[&str]) -> Out {
    let mut cmd = Command::new("etcdctl");
    cmd.env("ETCDCTL_API", "2")
        .arg("--endpoints")
        .arg(endpoints);
    if !sync {
        cmd.arg("--no-sync");
    }
    let out = cmd
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run etcdctl");
    Out {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Runs etcdctl and asserts exit code, stdout and stderr exactly.
fn check(s: &Server, sync: bool, args: &[&str], code: i32, stdout: &str, stderr: &str) {
    let o = ctl(s, sync, args);
    assert!(
        o.code == code && o.stdout == stdout && o.stderr == stderr,
        "etcdctl {args:?} (sync={sync}):\n  exit {} (want {code})\n  stdout {:?} (want {stdout:?})\n  stderr {:?} (want {stderr:?})",
        o.code,
        o.stdout,
        o.stderr
    );
}

fn index(s: &Server) -> u64 {
    s.get("/v2/keys/").etcd_index()
}

fn watchers(s: &Server) -> u64 {
    s.get("/v2/stats/store").json()["watchers"]
        .as_u64()
        .expect("watchers in /v2/stats/store")
}

fn suite(sync: bool) {
    support::require_tool("etcdctl");
    let s = Server::start(support::target());
    let ok = |args: &[&str], out: &str| check(&s, sync, args, 0, out, "");
    let err = |args: &[&str], code: i32, msg: String| check(&s, sync, args, code, "", &msg);

    // tutorial 002: set one, get one, get two (missing), set two, get two
    ok(&["set", "one", "uno"], "uno\n");
    ok(&["get", "one"], "uno\n");
    let i = index(&s);
    err(
        &["get", "two"],
        4,
        format!("Error:  100: Key not found (/two) [{i}]\n"),
    );
    ok(&["set", "two", "dos"], "dos\n");
    ok(&["get", "two"], "dos\n");

    // mk / mkdir and their "already exists" errors
    ok(&["mk", "/c/mk", "v"], "v\n");
    let i = index(&s);
    err(
        &["mk", "/c/mk", "v2"],
        4,
        format!("Error:  105: Key already exists (/c/mk) [{i}]\n"),
    );
    ok(&["mkdir", "/c/d"], "");
    let i = index(&s);
    err(
        &["mkdir", "/c/d"],
        4,
        format!("Error:  105: Key already exists (/c/d) [{i}]\n"),
    );
    ok(&["set", "/c/d/x", "1"], "1\n");
    ok(&["set", "/c/d/y", "2"], "2\n");
    ok(&["set", "/c/d/_hidden", "h"], "h\n");
    ok(
        &["ls", "-r", "--sort", "/c"],
        "/c/d\n/c/d/x\n/c/d/y\n/c/mk\n",
    );
    ok(&["ls", "--sort", "-p", "/c"], "/c/d/\n/c/mk\n");
    check(&s, sync, &["get", "/c/d"], 1, "", "/c/d: is a directory\n");

    // update, rm, rmdir
    ok(&["update", "/c/mk", "w"], "w\n");
    let i = index(&s);
    err(
        &["update", "/c/none", "x"],
        4,
        format!("Error:  100: Key not found (/c/none) [{i}]\n"),
    );
    ok(&["rm", "/c/mk"], "PrevNode.Value: w\n");
    let i = index(&s);
    err(
        &["rm", "/c/mk"],
        4,
        format!("Error:  100: Key not found (/c/mk) [{i}]\n"),
    );
    err(
        &["rmdir", "/c/d"],
        4,
        format!("Error:  108: Directory not empty (/c/d) [{i}]\n"),
    );
    ok(&["rm", "--recursive", "/c/d"], "");
    ok(&["mkdir", "/c/e"], "");
    ok(&["rmdir", "/c/e"], "");
    let r = s.get("/v2/keys/c/e");
    assert_eq!(r.status, 404, "rmdir left /c/e: {}", r.text());

    // CAS through etcdctl
    ok(&["set", "/c/k", "v1"], "v1\n");
    ok(&["set", "/c/k", "v2", "--swap-with-value", "v1"], "v2\n");
    let cur = s.get("/v2/keys/c/k").modified_index();
    let i = index(&s);
    err(
        &["set", "/c/k", "v3", "--swap-with-value", "nope"],
        4,
        format!("Error:  101: Compare failed ([nope != v2]) [{i}]\n"),
    );
    ok(
        &["set", "/c/k", "v3", "--swap-with-index", &cur.to_string()],
        "v3\n",
    );

    // set --ttl, mk --in-order
    ok(&["set", "--ttl", "100", "/c/t", "tv"], "tv\n");
    let j = s.get("/v2/keys/c/t").json();
    let ttl = j["node"]["ttl"].as_i64().expect("ttl after set --ttl");
    // What remains when the GET is rendered: a slow machine (qemu on CI) may take seconds.
    assert!((90..=100).contains(&ttl), "ttl {ttl}: {j}");
    assert!(j["node"]["expiration"].is_string(), "{j}");
    ok(&["mk", "--in-order", "/c/q", "job1"], "job1\n");
    let j = s.get("/v2/keys/c/q?recursive=true").json();
    let node = &j["node"]["nodes"][0];
    let name = node["key"].as_str().unwrap();
    assert_eq!(
        name,
        format!("/c/q/{:020}", node["createdIndex"].as_u64().unwrap()),
        "in-order key name is the zero-padded index: {j}"
    );
    assert_eq!(node["value"], "job1");

    // setdir / updatedir
    ok(&["setdir", "/c/sd"], "");
    ok(&["updatedir", "--ttl", "100", "/c/sd"], "");
    let j = s.get("/v2/keys/c/sd").json();
    assert_eq!(j["node"]["dir"], true, "{j}");
    assert!(
        (90..=100).contains(&j["node"]["ttl"].as_i64().unwrap_or(0)),
        "updatedir --ttl: {j}"
    );
    ok(&["updatedir", "/c/sd"], "");
    let j = s.get("/v2/keys/c/sd").json();
    assert!(
        j["node"]["ttl"].is_null(),
        "updatedir without --ttl removes the TTL: {j}"
    );
    let i = index(&s);
    err(
        &["setdir", "/c/sd"],
        4,
        format!("Error:  102: Not a file (/c/sd) [{i}]\n"),
    );

    // watch in the background: it must print the value and exit after one event
    let before = watchers(&s);
    let mut cmd = Command::new("etcdctl");
    cmd.env("ETCDCTL_API", "2")
        .arg("--endpoints")
        .arg(s.client_url());
    if !sync {
        cmd.arg("--no-sync");
    }
    let mut guard = support::ChildGuard(Some(
        cmd.args(["watch", "/c/w"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn etcdctl watch"),
    ));
    let child = guard.child();
    // The watch is parked once the store counts one more watcher (a deadline, not a timing
    // assertion).
    let wait = Instant::now() + Duration::from_secs(15);
    while watchers(&s) <= before {
        if Instant::now() > wait {
            panic!("etcdctl watch never registered a watcher");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    ok(&["set", "/c/w", "hello"], "hello\n");
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if Instant::now() > wait {
            panic!("etcdctl watch did not exit after the event");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut out = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    let mut errs = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut errs)
        .unwrap();
    assert!(status.success(), "watch exit {status}: {errs}");
    assert_eq!(out, "hello\n", "watch output (stderr {errs:?})");

    // member list and cluster-health
    let (member_id, _) = s.expected_ids();
    ok(
        &["member", "list"],
        &format!(
            "{member_id}: name=a peerURLs={} clientURLs={} isLeader=true\n",
            s.peer_url(),
            s.client_url()
        ),
    );
    // cluster-health never uses --no-sync; it always reads /v2/members then /health.
    ok(
        &["cluster-health"],
        &format!(
            "member {member_id} is healthy: got healthy result from {}\ncluster is healthy\n",
            s.client_url()
        ),
    );
}

#[test]
fn etcdctl_no_sync() {
    suite(false);
}

#[test]
fn etcdctl_with_sync() {
    suite(true);
}
