//! The real `etcdctl` (v2 mode, `ETCDCTL_API=2`) against the server under test.
//!
//! What it proves: the etcdctl workflows of the tutorials (spec §16, tutorial 002) work
//! unchanged — set, get, mk, mkdir, ls -r --sort, update, rm, rmdir, setdir, updatedir,
//! set --ttl, mk --in-order, watch, member list, cluster-health — with the exact stdout,
//! stderr (e.g. `Error:  100: Key not found (/two) [<idx>]`) and exit codes etcdctl prints
//! for etcd. Expected indexes are read from the server itself (`X-Etcd-Index`), never
//! hard-coded. Each suite runs twice: with `--no-sync` and without (then etcdctl first
//! reads `/v2/members` and uses the advertised client URLs, so those must be right). The
//! member commands also run against three pikv and three etcd members side by side: the
//! same output once ids and ports are labelled.

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

/// One cluster's names for what differs between two clusters run side by side: member ids
/// and ports, replaced by labels so that etcdctl's output can be compared.
struct Labels(Vec<(String, String)>);

impl Labels {
    fn of(c: &crate::support::cluster::Cluster) -> Labels {
        let mut l = Vec::new();
        for (i, m) in c.members.iter().enumerate() {
            l.push((format!(":{}", m.client_port), format!(":C{i}")));
            l.push((format!(":{}", m.peer_port), format!(":P{i}")));
        }
        let mut labels = Labels(l);
        labels.learn_ids(&c.members[0]);
        labels
    }

    /// Ids of members (named or not yet) that have no label.
    fn learn_ids(&mut self, s: &Server) {
        let list = s.get("/v2/members").json();
        for m in list["members"].as_array().cloned().unwrap_or_default() {
            let id = m["id"].as_str().unwrap_or_default().to_string();
            let label = match m["name"].as_str() {
                Some(n) if !n.is_empty() => format!("<id of {n}>"),
                _ => format!(
                    "<id of {}>",
                    self.apply(m["peerURLs"][0].as_str().unwrap_or(""))
                ),
            };
            if !id.is_empty() && !self.0.iter().any(|(k, _)| *k == id) {
                self.0.push((id, label));
            }
        }
        // Longest first: an id never hides inside a shorter one's replacement.
        self.0.sort_by_key(|(k, _)| std::cmp::Reverse(k.len()));
    }

    fn apply(&self, text: &str) -> String {
        let mut t = text.to_string();
        for (k, v) in &self.0 {
            t = t.replace(k.as_str(), v);
        }
        t
    }

    fn id(&self, label: &str) -> String {
        self.0
            .iter()
            .find(|(_, v)| v == label)
            .map(|(k, _)| k.clone())
            .unwrap_or_else(|| panic!("no id labelled {label}: {:?}", self.0))
    }
}

/// Lines sorted (member order follows the ids, which differ) and comma lists in
/// `ETCD_INITIAL_CLUSTER` sorted; which member leads, and the order etcdctl tried the
/// endpoints in (it shuffles them), left out.
fn canonical(text: &str) -> String {
    let mut text = text
        .replace("isLeader=true", "isLeader=?")
        .replace("isLeader=false", "isLeader=?");
    for n in 0..10 {
        text = text.replace(&format!("error #{n}: "), "error #?: ");
    }
    let mut lines: Vec<String> = text
        .split(['\n', ';'])
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(|l| match l.strip_prefix("ETCD_INITIAL_CLUSTER=\"") {
            Some(rest) => {
                let mut items: Vec<&str> = rest.trim_end_matches('"').split(',').collect();
                items.sort();
                format!("ETCD_INITIAL_CLUSTER=\"{}\"", items.join(","))
            }
            None => l.to_string(),
        })
        .collect();
    lines.sort();
    lines.join("\n")
}

/// `etcdctl member list|add|update|remove` and `cluster-health`, successes and refusals,
/// against three pikv members and three etcd members at once: the same stdout, stderr and
/// exit codes once ids and ports are labelled.
#[test]
fn etcdctl_member_commands_on_three_members_match_etcd() {
    use crate::support::cluster::Cluster;
    support::require_tool("etcdctl");
    let (mut reference, mut tested) = std::thread::scope(|sc| {
        let r = sc.spawn(|| Cluster::start(support::Kind::Etcd, 3, &[]));
        let t = Cluster::start(support::target(), 3, &[]);
        (r.join().unwrap_or_else(|_| panic!("etcd cluster")), t)
    });
    let mut labels = [Labels::of(&reference), Labels::of(&tested)];
    // etcd's strict reconfiguration check wants every member connected for 5 s.
    std::thread::sleep(Duration::from_secs(6));
    let spare: Vec<String> = (0..2)
        .map(|_| format!("http://127.0.0.1:{}", support::free_ports().1))
        .collect();
    for (i, url) in spare.iter().enumerate() {
        for l in &mut labels {
            l.0.push((
                url.rsplit(':')
                    .next()
                    .map(|p| format!(":{p}"))
                    .unwrap_or_default(),
                format!(":S{i}"),
            ));
        }
    }
    let clusters = [&mut reference, &mut tested];
    type Args = Box<dyn Fn(&Labels) -> Vec<String>>;
    type Step = (&'static str, Args);
    let fixed = |a: &'static [&'static str]| -> Args {
        Box::new(move |_| a.iter().map(|s| s.to_string()).collect())
    };
    let s0 = spare[0].clone();
    let s1 = spare[1].clone();
    let steps: Vec<Step> = vec![
        ("list", fixed(&["member", "list"])),
        ("health", fixed(&["cluster-health"])),
        (
            "add",
            Box::new(move |_| vec!["member".into(), "add".into(), "n3".into(), s0.clone()]),
        ),
        ("list with an unstarted member", fixed(&["member", "list"])),
        (
            "health with an unstarted member",
            fixed(&["cluster-health"]),
        ),
        (
            "update the new member",
            Box::new(move |l| {
                vec![
                    "member".into(),
                    "update".into(),
                    l.id("<id of http://127.0.0.1:S0>"),
                    s1.clone(),
                ]
            }),
        ),
        (
            "remove it",
            Box::new(|l| {
                vec![
                    "member".into(),
                    "remove".into(),
                    l.id("<id of http://127.0.0.1:S0>"),
                ]
            }),
        ),
        (
            "remove it again",
            Box::new(|l| {
                vec![
                    "member".into(),
                    "remove".into(),
                    l.id("<id of http://127.0.0.1:S0>"),
                ]
            }),
        ),
        (
            "update the removed member",
            Box::new(|l| {
                vec![
                    "member".into(),
                    "update".into(),
                    l.id("<id of http://127.0.0.1:S0>"),
                    "http://127.0.0.1:1".into(),
                ]
            }),
        ),
        // PEER1: the second member's peer URL, filled in per cluster below.
        (
            "add an existing peer URL",
            fixed(&["member", "add", "dup", "PEER1"]),
        ),
        ("list at the end", fixed(&["member", "list"])),
        ("health at the end", fixed(&["cluster-health"])),
    ];
    let mut diffs = Vec::new();
    let mut codes = Vec::new();
    for (label, args) in &steps {
        let mut seen = Vec::new();
        for (side, c) in clusters.iter().enumerate() {
            let mut a = args(&labels[side]);
            for x in a.iter_mut() {
                if x == "PEER1" {
                    *x = c.members[1].peer_url();
                }
            }
            let refs: Vec<&str> = a.iter().map(String::as_str).collect();
            let o = etcdctl(&c.members[0].client_url(), true, &refs);
            if o.stdout.contains("isLeader=") {
                assert_eq!(
                    o.stdout.matches("isLeader=true").count(),
                    1,
                    "{label}: {}",
                    o.stdout
                );
            }
            labels[side].learn_ids(&c.members[0]);
            seen.push((
                o.code,
                canonical(&labels[side].apply(&o.stdout)),
                canonical(&labels[side].apply(&o.stderr)),
            ));
        }
        codes.push(seen[0].0);
        if seen[0] != seen[1] {
            diffs.push(format!(
                "{label}:\n  etcd: {:?}\n    {}: {:?}",
                seen[0],
                support::target().label(),
                seen[1]
            ));
        }
    }
    assert!(diffs.is_empty(), "etcdctl differs:\n{}", diffs.join("\n"));
    // What etcd answered is what the script means: the successes succeeded.
    assert_eq!(codes, [0, 0, 0, 0, 5, 0, 0, 1, 1, 1, 0, 0], "exit codes");
}
