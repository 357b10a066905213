//! `pikv ctl` against the real etcdctl (`ETCDCTL_API=2`): golden tests.
//!
//! What it proves: for every key command (set, get, mk, mkdir, setdir, update, updatedir,
//! rm, rmdir, ls, watch, exec-watch), `member list|add|remove|update` and
//! `cluster-health` and their flags, success and failure, `pikv ctl` prints the same
//! stdout and stderr and exits with the same code as etcd 3.4's etcdctl, against pikv and
//! against a real etcd 3.4, with and without `--no-sync`; also for dead endpoints, header
//! and total timeouts, the endpoint variables and usage errors.
//!
//! How: both clients run against the same server, each in its own subtree that the same
//! script builds the same way (`/ctl-e` for etcdctl, `/ctl-p` for pikv ctl). Outputs are
//! compared after replacing the subtree name and the numbers that must differ between the
//! two subtrees (indexes, TTLs, expiration times, in-order key names); every step also
//! names the exit code it expects, so the two cannot agree on a broken setup. Usage errors
//! compare stderr and exit code only: pikv's help text is wrapped to 80 columns, etcdctl's
//! is not.

use crate::support::{self, ChildGuard, Kind, Server, TempDir};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const E: &str = "/ctl-e";
const P: &str = "/ctl-p";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Tool {
    Etcdctl,
    PikvCtl,
}

#[derive(Debug)]
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

/// Variables of the tester's environment that would change what either client does.
const CLIENT_ENV: &[&str] = &[
    "ETCDCTL_ENDPOINTS",
    "ETCDCTL_ENDPOINT",
    "ETCDCTL_PEERS",
    "ETCDCTL_CA_FILE",
    "ETCDCTL_CERT_FILE",
    "ETCDCTL_KEY_FILE",
    "ETCDCTL_USERNAME",
    "ETCDCTL_DISCOVERY_SRV",
    "http_proxy",
    "HTTP_PROXY",
    "all_proxy",
    "ALL_PROXY",
];

fn command(tool: Tool, args: &[String], env: &[(&str, &str)]) -> Command {
    let mut cmd = match tool {
        Tool::Etcdctl => {
            let mut c = Command::new("etcdctl");
            c.env("ETCDCTL_API", "2");
            c
        }
        Tool::PikvCtl => {
            let mut c = support::pikv_command();
            c.arg("ctl");
            c
        }
    };
    for k in CLIENT_ENV {
        cmd.env_remove(k);
    }
    cmd.args(args).envs(env.iter().copied());
    cmd
}

/// Runs a client to completion (deadline 30 s, then kill and panic).
fn run(tool: Tool, args: &[String], env: &[(&str, &str)]) -> Run {
    let mut guard = ChildGuard(Some(
        command(tool, args, env)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {tool:?}: {e}")),
    ));
    let deadline = Instant::now() + Duration::from_secs(30);
    while matches!(guard.child().try_wait(), Ok(None)) {
        if Instant::now() > deadline {
            panic!("{tool:?} {args:?} did not exit within 30 s");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let out = guard.take().wait_with_output().expect("client output");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Replaces the digits after each of `marks` with `#`.
fn mask_after(s: &str, marks: &[&str]) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    'outer: while !rest.is_empty() {
        for m in marks {
            if let Some(tail) = rest.strip_prefix(m) {
                let digits = tail.bytes().take_while(u8::is_ascii_digit).count();
                if digits > 0 {
                    out.push_str(m);
                    out.push('#');
                    rest = &tail[digits..];
                    continue 'outer;
                }
            }
        }
        let c = rest.chars().next().unwrap_or(' ');
        out.push(c);
        rest = &rest[c.len_utf8()..];
    }
    out
}

/// The subtree names made equal, and the numbers that differ between the subtrees (or
/// between runs) masked.
fn normalise(s: &str) -> String {
    let s = s.replace(E, "/ctl-X").replace(P, "/ctl-X");
    // In-order keys are the zero-padded index: 20 digits after a slash.
    let mut t = String::new();
    let mut rest = s.as_str();
    while let Some(i) = rest.find('/') {
        t.push_str(&rest[..=i]);
        rest = &rest[i + 1..];
        let d = rest.bytes().take_while(u8::is_ascii_digit).count();
        if d == 20 {
            t.push_str("<in-order>");
            rest = &rest[d..];
        }
    }
    t.push_str(rest);
    // Expiration times.
    let mut u = String::new();
    let mut rest = t.as_str();
    while let Some(i) = rest.find("\"expiration\":\"") {
        let start = i + "\"expiration\":\"".len();
        u.push_str(&rest[..start]);
        rest = &rest[start..];
        let end = rest.find('"').unwrap_or(rest.len());
        u.push_str("<time>");
        rest = &rest[end..];
    }
    u.push_str(rest);
    mask_after(
        &u,
        &[
            "[",
            " != ",
            "Created-Index: ",
            "Modified-Index: ",
            "Index: ",
            "TTL: ",
            "\"createdIndex\":",
            "\"modifiedIndex\":",
            "\"ttl\":",
            "idx=",
        ],
    )
}

/// What a step compares.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Compare {
    /// stdout, stderr and exit code.
    All,
    /// stderr and exit code (usage errors: the help on stdout is pikv's own).
    NoStdout,
}

/// One server, one sync mode, and the mismatches found so far.
struct Golden<'a> {
    s: &'a Server,
    sync: bool,
    failures: Vec<String>,
    steps: usize,
}

impl<'a> Golden<'a> {
    fn new(s: &'a Server, sync: bool) -> Golden<'a> {
        support::require_tool("etcdctl");
        Golden {
            s,
            sync,
            failures: Vec::new(),
            steps: 0,
        }
    }

    /// The global flags for a normal step.
    fn globals(&self) -> Vec<String> {
        let mut g = vec!["--endpoints".to_string(), self.s.client_url()];
        if !self.sync {
            g.push("--no-sync".into());
        }
        g
    }

    /// Runs `args(prefix)` with etcdctl on `/ctl-e` and pikv ctl on `/ctl-p`, both after
    /// `globals`, and records a mismatch or an unexpected exit code.
    fn raw(
        &mut self,
        globals: &[String],
        env: &[(&str, &str)],
        args: impl Fn(&str) -> Vec<String>,
        code: i32,
        compare: Compare,
    ) {
        self.steps += 1;
        let line = |pre: &str| {
            let mut a = globals.to_vec();
            a.extend(args(pre));
            a
        };
        let (ea, pa) = (line(E), line(P));
        let e = run(Tool::Etcdctl, &ea, env);
        let p = run(Tool::PikvCtl, &pa, env);
        let same = e.code == p.code
            && normalise(&e.stderr) == normalise(&p.stderr)
            && (compare == Compare::NoStdout || normalise(&e.stdout) == normalise(&p.stdout));
        if !same || e.code != code {
            self.failures.push(format!(
                "step {} `{}` (sync={}, server {}), want exit {code}:\n  etcdctl: exit {}\n    \
                 stdout {:?}\n    stderr {:?}\n  pikv ctl: exit {}\n    stdout {:?}\n    stderr {:?}",
                self.steps,
                pa.join(" "),
                self.sync,
                self.s.kind.label(),
                e.code,
                e.stdout,
                e.stderr,
                p.code,
                p.stdout,
                p.stderr
            ));
        }
    }

    /// A step with `args` as written, `{}` standing for the subtree.
    fn step(&mut self, args: &[&str], code: i32) {
        let g = self.globals();
        self.raw(&g, &[], |pre| subst(args, pre), code, Compare::All);
    }

    fn usage(&mut self, args: &[&str], code: i32) {
        let g = self.globals();
        self.raw(&g, &[], |pre| subst(args, pre), code, Compare::NoStdout);
    }

    /// A step whose arguments depend on the subtree beyond its name (indexes).
    fn step_with(&mut self, args: impl Fn(&str) -> Vec<String>, code: i32) {
        let g = self.globals();
        self.raw(&g, &[], args, code, Compare::All);
    }

    fn finish(self) {
        assert!(
            self.failures.is_empty(),
            "{} of {} steps differ:\n{}",
            self.failures.len(),
            self.steps,
            self.failures.join("\n\n")
        );
    }

    /// The modified index of `<subtree><key>` in each subtree, for steps that name it.
    fn indexes(&self, key: &str) -> impl Fn(&str) -> String {
        let index = |pre: &str| {
            self.s
                .get(&format!("/v2/keys{pre}{key}"))
                .modified_index()
                .to_string()
        };
        let (e, p) = (index(E), index(P));
        move |pre: &str| if pre == E { e.clone() } else { p.clone() }
    }
}

fn subst(args: &[&str], pre: &str) -> Vec<String> {
    args.iter().map(|a| a.replace("{}", pre)).collect()
}

/// The key-command script, success and failure for every command and flag.
fn script(g: &mut Golden) {
    // set / get, all three output formats
    g.step(&["set", "{}/one", "uno"], 0);
    g.step(&["get", "{}/one"], 0);
    g.step(&["get", "{}/two"], 4);
    g.step(&["-o", "extended", "get", "{}/one"], 0);
    g.step(&["-o", "json", "get", "{}/one"], 0);
    g.step(&["--output", "json", "get", "{}/two"], 4);
    g.step(&["-o", "extended", "set", "{}/one", "eins"], 0);
    g.step(&["-o", "json", "set", "{}/one", "un"], 0);
    g.step(&["get", "--quorum", "{}/one"], 0);
    g.step(&["get", "-q", "--sort", "{}/one"], 0);
    g.step(&["set", "{}/one"], 1); // value required (stdin is empty)
    g.step(&["set"], 1);
    g.step(&["get"], 1);
    g.step(&["set", "{}/dash", "--", "-v"], 0);
    g.step(&["set", "--", "{}/dash2", "-v"], 0);
    g.step(&["set", "{}/sp", "a b&c=d%e"], 0);
    g.step(&["get", "{}/sp"], 0);
    g.step(&["set", "{}/ttl", "v", "--ttl", "100"], 0);
    g.step(&["-o", "json", "get", "{}/ttl"], 0);
    g.step(&["-o", "extended", "get", "{}/ttl"], 0);
    // compare-and-swap
    g.step(&["set", "{}/one", "dos", "--swap-with-value", "un"], 0);
    g.step(&["set", "{}/one", "x", "--swap-with-value", "nope"], 4);
    g.step(&["set", "--swap-with-index", "1", "{}/one", "x"], 4);
    let idx = g.indexes("/one");
    g.step_with(
        |pre| {
            let i = idx(pre);
            vec![
                "set".into(),
                format!("{pre}/one"),
                "tres".into(),
                "--swap-with-index".into(),
                i,
            ]
        },
        0,
    );
    g.usage(&["set", "--ttl", "abc", "{}/x", "1"], 1);
    // mk
    g.step(&["mk", "{}/mk", "v"], 0);
    g.step(&["mk", "{}/mk", "v2"], 4);
    g.step(&["mk", "--ttl", "50", "{}/mkttl", "v"], 0);
    g.step(&["mk", "--in-order", "{}/q", "job1"], 0);
    g.step(&["-o", "json", "mk", "--in-order", "{}/q", "job2"], 0);
    g.step(&["-o", "extended", "mk", "{}/mk2", "w"], 0);
    g.step(&["mk", "{}/mk3"], 1);
    g.step(&["mk", "{}/mk/sub", "v"], 4); // not a directory
                                          // mkdir / setdir / updatedir
    g.step(&["mkdir", "{}/d"], 0);
    g.step(&["mkdir", "{}/d"], 4);
    g.step(&["-o", "json", "mkdir", "{}/d2"], 0);
    g.step(&["-o", "extended", "mkdir", "--ttl", "100", "{}/d3"], 0);
    g.step(&["mkdir"], 1);
    g.step(&["setdir", "{}/sd"], 0);
    g.step(&["setdir", "{}/sd"], 4);
    g.step(&["-o", "extended", "setdir", "{}/sd2"], 0);
    g.step(&["updatedir", "--ttl", "100", "{}/sd"], 0);
    g.step(&["-o", "json", "updatedir", "{}/sd"], 0);
    g.step(&["updatedir", "{}/nodir"], 4);
    g.step(&["updatedir"], 1);
    g.step(&["mkdir", "{}/one"], 4);
    // update
    g.step(&["update", "{}/one", "four"], 0);
    g.step(&["update", "{}/none", "x"], 4);
    g.step(&["update", "--ttl", "30", "{}/one", "five"], 0);
    g.step(&["-o", "extended", "update", "{}/one", "six"], 0);
    g.step(&["-o", "json", "update", "{}/one", "seven"], 0);
    g.step(&["update", "{}/one"], 1);
    // ls (sorted where a directory has several children: unsorted order is random)
    g.step(&["set", "{}/d/x", "1"], 0);
    g.step(&["set", "{}/d/y", "2"], 0);
    g.step(&["mkdir", "{}/d/sub"], 0);
    g.step(&["set", "{}/d/sub/z", "3"], 0);
    g.step(&["set", "{}/d/_hidden", "h"], 0);
    g.step(&["ls", "--sort", "{}/d"], 0);
    g.step(&["ls", "-r", "--sort", "{}/d"], 0);
    g.step(&["ls", "--recursive", "--sort", "-p", "{}/d"], 0);
    g.step(&["ls", "--sort", "-p", "{}/d"], 0);
    g.step(&["ls", "--quorum", "--sort", "{}/d"], 0);
    g.step(&["ls", "{}/d/sub"], 0);
    g.step(&["ls", "{}/one"], 0);
    g.step(&["ls", "{}/nope"], 4);
    g.step(&["-o", "json", "ls", "--sort", "{}/d"], 0);
    g.step(&["-o", "json", "ls", "-r", "--sort", "{}/d"], 0);
    g.step(&["-o", "extended", "ls", "--sort", "{}/d"], 0);
    g.step(&["get", "{}/d"], 1); // is a directory
    g.step(&["-o", "json", "get", "{}/d"], 1);
    // rm / rmdir
    g.step(&["rm", "{}/one"], 0);
    g.step(&["rm", "{}/one"], 4);
    g.step(&["rm", "{}/d"], 4); // a directory without --dir
    g.step(&["rm", "--dir", "{}/d"], 4); // not empty
    g.step(&["rm", "--dir", "{}/d3"], 0);
    g.step(&["-o", "extended", "rm", "--dir", "{}/d2"], 0);
    g.step(&["rm", "--recursive", "{}/d/sub"], 0);
    g.step(&["-o", "json", "rm", "-r", "{}/d"], 0);
    g.step(&["set", "{}/k", "v"], 0);
    g.step(&["rm", "--with-value", "w", "{}/k"], 4);
    g.step(&["rm", "--with-index", "1", "{}/k"], 4);
    g.step(&["rm", "--with-value", "v", "{}/k"], 0);
    g.step(&["set", "{}/k", "v"], 0);
    let idx = g.indexes("/k");
    g.step_with(
        |pre| {
            vec![
                "rm".into(),
                format!("{pre}/k"),
                "--with-index".into(),
                idx(pre),
            ]
        },
        0,
    );
    g.step(&["set", "{}/k2", "v"], 0);
    g.step(&["-o", "json", "rm", "{}/k2"], 0);
    g.step(&["set", "{}/k3", "v"], 0);
    g.step(&["-o", "extended", "rm", "{}/k3"], 0);
    g.step(&["rm"], 1);
    g.step(&["mkdir", "{}/e"], 0);
    g.step(&["rmdir", "{}/e"], 0);
    g.step(&["rmdir", "{}/e"], 4);
    g.step(&["set", "{}/e/f", "v"], 0);
    g.step(&["rmdir", "{}/e"], 4); // not empty
    g.step(&["rmdir", "{}/e/f"], 0); // a file: removed, as etcd does
    g.step(&["rmdir"], 1);
    // usage errors, unknown commands, output formats
    g.step(&["nosuchcommand"], 3);
    g.step(&["help", "nosuchcommand"], 3);
    g.usage(&["set", "--bogus", "{}/x", "1"], 1);
    g.usage(&["set", "{}/x", "1", "--ttl"], 1);
    g.usage(&["rm", "--dir=maybe", "{}/x"], 1);
    g.usage(&["get", "--help"], 0);
    g.usage(&["help", "ls"], 0);
    g.step(&["-o", "bogus", "get", "{}/sp"], 0);
}

fn golden(kind: Kind, sync: bool) {
    let s = Server::start(kind);
    let mut g = Golden::new(&s, sync);
    script(&mut g);
    global_flags(&mut g);
    g.finish();
}

/// Global flags, endpoint variables and dead or silent endpoints.
fn global_flags(g: &mut Golden) {
    let url = g.s.client_url();
    let dead = format!("http://127.0.0.1:{}", support::fresh_ports(1)[0]);
    let no_sync: Vec<String> = if g.sync {
        vec![]
    } else {
        vec!["--no-sync".into()]
    };
    let with = |v: &[&str]| -> Vec<String> {
        let mut a: Vec<String> = v.iter().map(|s| s.to_string()).collect();
        a.extend(no_sync.iter().cloned());
        a
    };
    g.step(&["set", "{}/g", "v"], 0);
    let get = |pre: &str| vec!["get".to_string(), format!("{pre}/g")];
    g.raw(&with(&["-C", &url]), &[], get, 0, Compare::All);
    g.raw(&with(&["--peers", &url]), &[], get, 0, Compare::All);
    g.raw(&with(&["--endpoint", &url]), &[], get, 0, Compare::All);
    g.raw(
        &with(&[]),
        &[("ETCDCTL_ENDPOINTS", &url)],
        get,
        0,
        Compare::All,
    );
    g.raw(&with(&[]), &[("ETCDCTL_PEERS", &url)], get, 0, Compare::All);
    // The flag wins over the variable.
    g.raw(
        &with(&["--endpoints", &url]),
        &[("ETCDCTL_ENDPOINTS", &dead)],
        get,
        0,
        Compare::All,
    );
    // First endpoint dead: the next one answers.
    let both = format!("{dead},{url}");
    g.raw(&with(&["--endpoints", &both]), &[], get, 0, Compare::All);
    // Only a dead endpoint: exit 2 when syncing (connection error), 4 without.
    let code = if g.sync { 2 } else { 4 };
    g.raw(&with(&["--endpoints", &dead]), &[], get, code, Compare::All);
    g.raw(
        &with(&["--endpoints", &dead, "--debug"]),
        &[],
        get,
        code,
        Compare::All,
    );
    g.raw(
        &with(&["--endpoints", &url, "--debug"]),
        &[],
        get,
        0,
        Compare::All,
    );
    let set = |pre: &str| {
        vec![
            "set".to_string(),
            "--ttl".into(),
            "5".into(),
            format!("{pre}/g"),
            "a b".into(),
        ]
    };
    g.raw(
        &with(&["--endpoints", &url, "--debug"]),
        &[],
        set,
        0,
        Compare::All,
    );
    // Endpoints Go's url.Parse refuses (exit 1) or parses into something unusable (the
    // scheme "localhost", exit 4).
    let port = g.s.client_port;
    let bare = format!("127.0.0.1:{port}");
    g.raw(&with(&["--endpoints", &bare]), &[], get, 1, Compare::All);
    let spaced = format!("{url}, {dead}");
    g.raw(&with(&["--endpoints", &spaced]), &[], get, 1, Compare::All);
    let scheme = format!("localhost:{port}");
    g.raw(&with(&["--endpoints", &scheme]), &[], get, 4, Compare::All);
    // Bad global flags are usage errors.
    g.raw(
        &with(&["--endpoints", &url, "--timeout", "1"]),
        &[],
        get,
        1,
        Compare::NoStdout,
    );
    g.raw(&with(&["--bogus"]), &[], get, 1, Compare::NoStdout);
}

/// `member list|add|remove|update` and `cluster-health`: every argument check, the
/// messages and codes of refused changes, and the healthy single member. (No member is
/// added for real: a single member would lose its quorum.)
fn members_golden(kind: Kind, sync: bool) {
    let s = Server::start(kind);
    let mut g = Golden::new(&s, sync);
    let members = s.get("/v2/members").json();
    let id = members["members"][0]["id"]
        .as_str()
        .expect("member id in /v2/members")
        .to_string();
    g.step(&["member", "list"], 0);
    g.step(&["member", "list", "x"], 1);
    g.usage(&["member"], 0);
    g.step(&["member", "bogus"], 3);
    g.step(&["member", "add"], 1);
    g.step(&["member", "add", "n"], 1);
    g.step(&["member", "add", "n", "ftp://127.0.0.1:1"], 1);
    g.step(&["member", "add", "n", "http://127.0.0.1:1x"], 1);
    g.step(&["member", "add", "n", "http://127.0.0.1"], 1);
    g.step(&["member", "add", "n", "http://127.0.0.1:1/p"], 1);
    g.step(&["member", "remove"], 1);
    g.step(&["member", "remove", "1234"], 1);
    g.step(&["member", "remove", "a"], 1); // a name, not an id
    g.step(&["member", "update"], 1);
    g.step(&["member", "update", &id, "ftp://127.0.0.1:1"], 1);
    g.step(&["member", "update", "1234", "http://127.0.0.1:1"], 1);
    let peer = s.peer_url();
    g.step(&["member", "update", &id, &peer], 0);
    g.step(&["cluster-health"], 0);
    g.step(&["--debug", "cluster-health"], 0);
    let dead = format!("http://127.0.0.1:{}", support::fresh_ports(1)[0]);
    let both = format!("{dead},{}", s.client_url());
    for (eps, code) in [(dead.as_str(), 4), (both.as_str(), 0)] {
        let health = |_: &str| vec!["cluster-health".to_string()];
        g.raw(
            &["--endpoints".into(), eps.into()],
            &[],
            health,
            code,
            Compare::All,
        );
    }
    let list = |_: &str| vec!["member".to_string(), "list".into()];
    let code = if sync { 2 } else { 1 };
    let mut globals = vec!["--endpoints".to_string(), dead.clone()];
    if !sync {
        globals.push("--no-sync".into());
    }
    g.raw(&globals, &[], list, code, Compare::All);
    g.finish();
}

#[test]
fn ctl_members_golden_pikv() {
    members_golden(Kind::Pikv, false);
    members_golden(Kind::Pikv, true);
}

#[test]
fn ctl_members_golden_etcd() {
    members_golden(Kind::Etcd, false);
    members_golden(Kind::Etcd, true);
}

#[test]
fn ctl_golden_pikv_no_sync() {
    golden(Kind::Pikv, false);
}

#[test]
fn ctl_golden_pikv_sync() {
    golden(Kind::Pikv, true);
}

#[test]
fn ctl_golden_etcd_no_sync() {
    golden(Kind::Etcd, false);
}

#[test]
fn ctl_golden_etcd_sync() {
    golden(Kind::Etcd, true);
}

/// A listener that accepts connections (the kernel does, into its backlog) and never
/// answers: a frozen server.
struct Silent {
    _listener: std::net::TcpListener,
    url: String,
}

fn silent() -> Silent {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    let port = l.local_addr().expect("local addr").port();
    Silent {
        _listener: l,
        url: format!("http://127.0.0.1:{port}"),
    }
}

/// `--timeout` (response headers per request) and `--total-timeout` (the command), worded
/// and coded as etcdctl does, and a silent first endpoint skipped after `--timeout`.
#[test]
fn ctl_timeouts() {
    let s = Server::start(support::target());
    let mut g = Golden::new(&s, false);
    let frozen = silent();
    g.step(&["set", "{}/t", "v"], 0);
    let get = |pre: &str| vec!["get".to_string(), format!("{pre}/t")];
    let header = [
        "--no-sync",
        "--timeout",
        "300ms",
        "--endpoints",
        frozen.url.as_str(),
    ]
    .map(String::from);
    g.raw(&header, &[], get, 4, Compare::All);
    let total = [
        "--no-sync",
        "--timeout",
        "5s",
        "--total-timeout",
        "500ms",
        "--endpoints",
        frozen.url.as_str(),
    ]
    .map(String::from);
    g.raw(&total, &[], get, 4, Compare::All);
    // Syncing against a silent endpoint fails with a header timeout, which etcdctl does
    // not count as a connection error: it goes on with the endpoint and fails with 4.
    let sync = ["--timeout", "300ms", "--endpoints", frozen.url.as_str()].map(String::from);
    g.raw(&sync, &[], get, 4, Compare::All);
    let failover = [
        "--no-sync".to_string(),
        "--timeout".into(),
        "300ms".into(),
        "--endpoints".into(),
        format!("{},{}", frozen.url, s.client_url()),
    ];
    g.raw(&failover, &[], get, 0, Compare::All);
    g.finish();
}

/// With the first endpoint dead, every command still succeeds (pikv ctl alone, exact
/// output), with and without the member sync.
#[test]
fn ctl_failover_first_endpoint_dead() {
    let s = Server::start(support::target());
    let dead = format!("http://127.0.0.1:{}", support::fresh_ports(1)[0]);
    let eps = format!("{dead},{}", s.client_url());
    for sync in [false, true] {
        let pre = if sync { "/fo-sync" } else { "/fo" };
        let ctl = |args: &[&str]| {
            let mut a = vec!["--endpoints".to_string(), eps.clone()];
            if !sync {
                a.push("--no-sync".into());
            }
            a.extend(args.iter().map(|x| x.replace("{}", pre)));
            run(Tool::PikvCtl, &a, &[])
        };
        let ok = |args: &[&str], want: &str| {
            let r = ctl(args);
            assert!(
                r.code == 0 && r.stdout == want && r.stderr.is_empty(),
                "pikv ctl {args:?} (sync={sync}) via {eps}: {r:?}"
            );
        };
        ok(&["set", "{}/a", "1"], "1\n");
        ok(&["get", "{}/a"], "1\n");
        ok(&["mk", "{}/b", "2"], "2\n");
        ok(&["update", "{}/b", "3"], "3\n");
        ok(&["mkdir", "{}/d"], "");
        ok(&["setdir", "{}/d2"], "");
        ok(&["updatedir", "{}/d2"], "");
        ok(
            &["ls", "--sort", "{}"],
            &format!("{pre}/a\n{pre}/b\n{pre}/d\n{pre}/d2\n"),
        );
        ok(&["rm", "{}/a"], "PrevNode.Value: 1\n");
        ok(&["rmdir", "{}/d"], "");
        let i = s.get(&format!("/v2/keys{pre}/b")).modified_index();
        ok(
            &["watch", "--after-index", &(i - 1).to_string(), "{}/b"],
            "3\n",
        );
        let r = ctl(&["get", "{}/a"]);
        assert_eq!(r.code, 4, "{r:?}");
        assert!(
            r.stderr
                .starts_with(&format!("Error:  100: Key not found ({pre}/a) [")),
            "{r:?}"
        );
    }
}

fn watchers(s: &Server) -> u64 {
    s.get("/v2/stats/store").json()["watchers"]
        .as_u64()
        .expect("watchers in /v2/stats/store")
}

/// A client running in the background with its output in files.
struct Background {
    tool: Tool,
    guard: ChildGuard,
    out: std::path::PathBuf,
    err: std::path::PathBuf,
}

fn background(tool: Tool, args: &[String], dir: &TempDir, tag: &str) -> Background {
    let out = dir.path().join(format!("{tag}.out"));
    let err = dir.path().join(format!("{tag}.err"));
    let file = |p: &std::path::Path| std::fs::File::create(p).expect("create output file");
    let child = command(tool, args, &[])
        .stdin(Stdio::null())
        .stdout(file(&out))
        .stderr(file(&err))
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {tool:?}: {e}"));
    Background {
        tool,
        guard: ChildGuard(Some(child)),
        out,
        err,
    }
}

impl Background {
    fn stdout(&self) -> String {
        std::fs::read_to_string(&self.out).unwrap_or_default()
    }
    fn stderr(&self) -> String {
        std::fs::read_to_string(&self.err).unwrap_or_default()
    }
    /// Waits (deadline 15 s) for the client to exit by itself.
    fn wait(&mut self) -> i32 {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Ok(Some(st)) = self.guard.child().try_wait() {
                return st.code().unwrap_or(-1);
            }
            if Instant::now() > deadline {
                panic!(
                    "{:?} did not exit; stdout {:?} stderr {:?}",
                    self.tool,
                    self.stdout(),
                    self.stderr()
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    /// SIGINT, as Ctrl+C; returns the exit code.
    fn interrupt(&mut self) -> i32 {
        let pid = self.guard.child().id();
        let _ = Command::new("kill")
            .arg("-INT")
            .arg(pid.to_string())
            .status();
        self.wait()
    }
}

/// `watch`: one event and exit, `--forever --recursive` until Ctrl+C (exit 0, directory
/// events skipped), `--after-index` from the history, every output format; both clients
/// watch at the same time and see the same writes to their own subtree.
fn watch_golden(kind: Kind, sync: bool) {
    support::require_tool("etcdctl");
    let s = Server::start(kind);
    let dir = TempDir::new("ctl-watch");
    let globals = |pre_args: &[&str]| {
        let mut a = vec!["--endpoints".to_string(), s.client_url()];
        if !sync {
            a.push("--no-sync".into());
        }
        a.extend(pre_args.iter().map(|x| x.to_string()));
        a
    };
    let both = |args: &[&str], tag: &str| {
        let e = background(
            Tool::Etcdctl,
            &globals(
                &subst(args, E)
                    .iter()
                    .map(String::as_str)
                    .collect::<Vec<_>>(),
            ),
            &dir,
            &format!("{tag}-e"),
        );
        let p = background(
            Tool::PikvCtl,
            &globals(
                &subst(args, P)
                    .iter()
                    .map(String::as_str)
                    .collect::<Vec<_>>(),
            ),
            &dir,
            &format!("{tag}-p"),
        );
        (e, p)
    };
    // Only this test's watches run on this server, and each one below has ended (by its
    // event) before the next starts; the server may count an ended watch a little longer,
    // so a new pair is "parked" once the count went back to 0 and then up to 2.
    let idle = || {
        support::wait_for("no watch left", Duration::from_secs(15), || {
            (watchers(&s) == 0).then_some(())
        })
    };
    let wait_watchers = |n: u64| {
        support::wait_for("both watches parked", Duration::from_secs(15), || {
            (watchers(&s) >= n).then_some(())
        })
    };
    let put = |key: &str, value: &str| {
        let r = s.put(&format!("/v2/keys{key}"), &format!("value={value}"));
        assert!(r.status == 200 || r.status == 201, "{}", r.dump());
    };
    let compare_code = |what: &str, e: &Background, ec: i32, p: &Background, pc: i32, want: i32| {
        let (eo, po) = (normalise(&e.stdout()), normalise(&p.stdout()));
        let (ee, pe) = (normalise(&e.stderr()), normalise(&p.stderr()));
        assert!(
            ec == pc && eo == po && ee == pe && ec == want,
            "{what} (sync={sync}, server {}):\n  etcdctl exit {ec} stdout {eo:?} stderr {ee:?}\n  \
             pikv ctl exit {pc} stdout {po:?} stderr {pe:?}",
            kind.label()
        );
    };
    let compare = |what: &str, e: &Background, ec: i32, p: &Background, pc: i32| {
        compare_code(what, e, ec, p, pc, 0)
    };

    for (i, (fmt, tag)) in [("simple", "w1"), ("extended", "w2"), ("json", "w3")]
        .into_iter()
        .enumerate()
    {
        idle();
        let (mut e, mut p) = both(&["-o", fmt, "watch", "{}/w"], tag);
        wait_watchers(2);
        put(&format!("{E}/w"), &format!("v{i}"));
        put(&format!("{P}/w"), &format!("v{i}"));
        let (ec, pc) = (e.wait(), p.wait());
        compare(&format!("watch -o {fmt}"), &e, ec, &p, pc);
    }

    // --forever --recursive: two files and a directory (skipped), then Ctrl+C.
    idle();
    let (mut e, mut p) = both(&["watch", "--forever", "--recursive", "{}/wr"], "wr");
    wait_watchers(2);
    for pre in [E, P] {
        put(&format!("{pre}/wr/a"), "1");
        let r = s.put(&format!("/v2/keys{pre}/wr/sub?dir=true"), "");
        assert_eq!(r.status, 201, "{}", r.dump());
        put(&format!("{pre}/wr/b"), "2");
    }
    support::wait_for(
        "both watches printed 2 events",
        Duration::from_secs(15),
        || (e.stdout().lines().count() >= 4 && p.stdout().lines().count() >= 4).then_some(()),
    );
    let (ec, pc) = (e.interrupt(), p.interrupt());
    compare("watch --forever --recursive", &e, ec, &p, pc);

    // --after-index: the event is in the history, so the watch returns at once.
    let ie = s.get(&format!("/v2/keys{E}/w")).modified_index();
    let ip = s.get(&format!("/v2/keys{P}/w")).modified_index();
    let mut e = background(
        Tool::Etcdctl,
        &globals(&[
            "watch",
            "--after-index",
            &(ie - 1).to_string(),
            &format!("{E}/w"),
        ]),
        &dir,
        "ai-e",
    );
    let mut p = background(
        Tool::PikvCtl,
        &globals(&[
            "watch",
            "--after-index",
            &(ip - 1).to_string(),
            &format!("{P}/w"),
        ]),
        &dir,
        "ai-p",
    );
    let (ec, pc) = (e.wait(), p.wait());
    compare("watch --after-index", &e, ec, &p, pc);

    // exec-watch: the command runs once per file event with ETCD_WATCH_*; directory
    // events are reported on stderr; Ctrl+C ends it with 0.
    let script = "echo \"$ETCD_WATCH_ACTION $ETCD_WATCH_KEY $ETCD_WATCH_VALUE \
                  idx=$ETCD_WATCH_MODIFIED_INDEX\"";
    // From the current index on: the watches need not be parked before the writes (a
    // count of parked watchers is unreliable here: the server may still count the
    // interrupted watches above until it notices they are gone).
    let from = s.get("/v2/keys/").etcd_index().to_string();
    let (mut e, mut p) = both(
        &[
            "exec-watch",
            "--after-index",
            &from,
            "--recursive",
            "{}/ex",
            "--",
            "sh",
            "-c",
            script,
        ],
        "ex",
    );
    let lines = |b: &Background, n: usize| b.stdout().lines().count() >= n;
    for pre in [E, P] {
        put(&format!("{pre}/ex/a"), "1");
    }
    support::wait_for("both commands ran once", Duration::from_secs(15), || {
        (lines(&e, 1) && lines(&p, 1)).then_some(())
    });
    for pre in [E, P] {
        let r = s.put(&format!("/v2/keys{pre}/ex/d?dir=true"), "");
        assert_eq!(r.status, 201, "{}", r.dump());
        put(&format!("{pre}/ex/b"), "2");
    }
    support::wait_for("both commands ran twice", Duration::from_secs(15), || {
        (lines(&e, 2) && lines(&p, 2)).then_some(())
    });
    let (ec, pc) = (e.interrupt(), p.interrupt());
    compare("exec-watch --recursive", &e, ec, &p, pc);
    // A command that does not exist: the first event ends the watch with exit 1.
    let from = s.get("/v2/keys/").etcd_index().to_string();
    let (mut e, mut p) = both(
        &[
            "exec-watch",
            "--after-index",
            &from,
            "-r",
            "{}/ey",
            "--",
            "pikv-ctl-test-no-such-command",
        ],
        "ey",
    );
    for pre in [E, P] {
        put(&format!("{pre}/ey/a"), "1");
    }
    let (ec, pc) = (e.wait(), p.wait());
    compare_code("exec-watch of a missing command", &e, ec, &p, pc, 1);

    // No key: exit 1 at once.
    let mut g = Golden::new(&s, sync);
    g.step(&["watch"], 1);
    g.step(&["exec-watch"], 1);
    g.step(&["exec-watch", "{}/k"], 1);
    g.finish();
}

#[test]
fn ctl_watch_golden_pikv() {
    watch_golden(Kind::Pikv, false);
    watch_golden(Kind::Pikv, true);
}

#[test]
fn ctl_watch_golden_etcd() {
    watch_golden(Kind::Etcd, false);
}

/// `pikv ctl --help` and `pikv ctl <command> --help` exit 0, fit 80 columns, and the binary
/// invoked as `pikvctl` (a symlink) is `pikv ctl`.
#[test]
fn ctl_help_and_pikvctl_name() {
    let commands = [
        "set",
        "get",
        "mk",
        "mkdir",
        "setdir",
        "update",
        "updatedir",
        "rm",
        "rmdir",
        "ls",
        "watch",
        "exec-watch",
        "member",
        "cluster-health",
    ];
    let mut all = vec![vec!["--help".to_string()], vec!["-h".to_string()], vec![]];
    for c in commands {
        all.push(vec![c.to_string(), "--help".into()]);
        all.push(vec!["help".to_string(), c.to_string()]);
    }
    for args in &all {
        let r = run(Tool::PikvCtl, args, &[]);
        assert!(
            r.code == 0 && r.stderr.is_empty(),
            "pikv ctl {args:?}: {r:?}"
        );
        assert!(r.stdout.contains("USAGE:"), "pikv ctl {args:?}: {r:?}");
        for l in r.stdout.lines() {
            assert!(
                l.chars().count() <= 80,
                "pikv ctl {args:?}: {l:?} is wider than 80"
            );
        }
    }
    let dir = TempDir::new("pikvctl");
    let link = dir.path().join("pikvctl");
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_pikv"), &link).expect("symlink pikvctl");
    // Through the runner (qemu) the symlink's name is still argv[0].
    let mut cmd = match std::env::var_os("PIKV_IT_RUNNER").filter(|r| !r.is_empty()) {
        Some(runner) => {
            let mut c = Command::new(runner);
            c.arg(&link);
            c
        }
        None => Command::new(&link),
    };
    let out = cmd.arg("--version").output().expect("run pikvctl");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success()
            && text.starts_with("pikvctl version: ")
            && text.ends_with("API version: 2\n"),
        "pikvctl --version: {out:?}"
    );
}

/// The etcdctl v3 spellings (`ETCDCTL_API=3`, or a v3-only command or flag): real etcdctl
/// v3 against etcd and `pikv ctl` against the server under test print the same stdout and
/// stderr and exit the same; `member list` (also `-w table`) and `endpoint health` are
/// compared against the same etcd, whose members both read (etcdctl over v3, pikv ctl over
/// v2). What v2 cannot honour is refused.
#[test]
fn ctl_v3_spellings_match_etcdctl_v3() {
    support::require_tool("etcdctl");
    let (etcd, tested) = std::thread::scope(|sc| {
        let e = sc.spawn(|| Server::start(Kind::Etcd));
        let t = Server::start(support::target());
        (e.join().unwrap_or_else(|_| panic!("etcd")), t)
    });
    let v3 = [("ETCDCTL_API", "3")];
    type Env<'a> = &'a [(&'a str, &'a str)];
    let steps: &[(&[&str], Env)] = &[
        (&["put", "foo", "bar"], &v3),
        (&["get", "foo"], &v3),
        (&["get", "nope"], &v3),
        (&["put", "/app/a", "1"], &v3),
        (&["put", "/app/b", "2"], &[]),
        (&["put", "/apple", "x"], &[]),
        (&["get", "--prefix", "/app/"], &v3),
        (&["get", "/app", "--prefix"], &[]),
        (&["get", "--prefix", "/app/", "--keys-only"], &v3),
        (&["get", "--prefix", "/app/", "--print-value-only"], &v3),
        (&["get", "--prefix", "/app/", "--limit", "1"], &v3),
        (&["get", "--prefix", "f"], &v3),
        (&["put", "foo", "baz", "--prev-kv"], &v3),
        (&["del", "foo", "--prev-kv"], &v3),
        (&["del", "nope"], &[]),
        (&["del", "--prefix", "/app/"], &v3),
        (&["get", "--prefix", "/app"], &v3),
        (&["put"], &v3),
        (&["get"], &v3),
        (&["del"], &v3),
        (&["bogus"], &v3),
    ];
    // etcdctl v3's client logs its retries as JSON lines on stderr; a health check's
    // duration differs from run to run.
    let quiet = |s: &str| -> String {
        s.lines()
            .filter(|l| !l.starts_with("{\"level\""))
            .map(|l| match l.find("took = ") {
                Some(i) => format!("{}\n", &l[..i]),
                None => format!("{l}\n"),
            })
            .collect()
    };
    let mut diffs = Vec::new();
    let with_endpoint = |s: &Server, args: &[&str]| -> Vec<String> {
        let mut a = vec!["--endpoints".to_string(), s.client_url()];
        a.extend(args.iter().map(|x| x.to_string()));
        a
    };
    for (args, env) in steps {
        // etcdctl needs ETCDCTL_API=3 always; pikv ctl also finds v3 by the command.
        let e = run(Tool::Etcdctl, &with_endpoint(&etcd, args), &v3);
        let t = run(Tool::PikvCtl, &with_endpoint(&tested, args), env);
        let (es, ts) = (quiet(&e.stderr), quiet(&t.stderr));
        if (e.code, &e.stdout, &es) != (t.code, &t.stdout, &ts) {
            diffs.push(format!(
                "{args:?} {env:?}:\n  etcdctl {e:?}\n  pikv    {t:?}"
            ));
        }
    }
    // The same etcd's members, read by both.
    for args in [
        &["member", "list"][..],
        &["member", "list", "-w", "table"],
        &["endpoint", "health"],
        &["endpoint", "health", "--cluster"],
    ] {
        let a = with_endpoint(&etcd, args);
        let e = run(Tool::Etcdctl, &a, &v3);
        let t = run(Tool::PikvCtl, &a, &v3);
        if (e.code, &e.stdout, quiet(&e.stderr)) != (t.code, &t.stdout, quiet(&t.stderr)) {
            diffs.push(format!("{args:?}:\n  etcdctl {e:?}\n  pikv    {t:?}"));
        }
    }
    assert!(
        diffs.is_empty(),
        "v3 spellings differ:\n{}",
        diffs.join("\n")
    );
    // A dead endpoint is unhealthy, as with etcdctl (whose reason is its gRPC deadline).
    let dead = format!("http://127.0.0.1:{}", support::fresh_ports(1)[0]);
    let eps = format!("{},{dead}", tested.client_url());
    let t = run(
        Tool::PikvCtl,
        &[
            "--endpoints".into(),
            eps,
            "endpoint".into(),
            "health".into(),
        ],
        &v3,
    );
    assert_eq!(t.code, 1, "{t:?}");
    assert!(
        t.stderr
            .contains(&format!("{dead} is unhealthy: failed to commit proposal: "))
            && t.stderr.ends_with("Error: unhealthy cluster\n"),
        "{t:?}"
    );
    // Refused, not faked: revisions, leases, v3 response formats.
    for args in [
        &["get", "foo", "--rev", "3"][..],
        &["put", "k", "v", "--lease", "1234"],
        &["get", "foo", "-w", "json"],
    ] {
        let t = run(Tool::PikvCtl, &with_endpoint(&tested, args), &v3);
        assert_eq!(t.code, 1, "{args:?}: {t:?}");
        assert!(
            t.stderr.contains("cannot be honoured over the v2 API"),
            "{args:?}: {t:?}"
        );
    }
}

/// The board build's `pikv ctl` (armv7 under qemu: `PIKV_IT_RUNNER`) against a server
/// built for the host (`PIKV_IT_NATIVE_PIKV`, which `make armv7-test` points at the x86_64
/// build): a board's client talking to a server of another architecture.
#[test]
fn ctl_of_the_runner_build_talks_to_a_native_server() {
    let runner = std::env::var_os("PIKV_IT_RUNNER").filter(|r| !r.is_empty());
    let native = std::env::var_os("PIKV_IT_NATIVE_PIKV").filter(|r| !r.is_empty());
    let native = match (runner, native) {
        (None, _) => {
            eprintln!("SKIPPED: only in the armv7 run (PIKV_IT_RUNNER), where the client is the board build");
            return;
        }
        (Some(_), None) => panic!(
            "PIKV_IT_RUNNER is set but PIKV_IT_NATIVE_PIKV (the host's pikv) is not: `make armv7-test` sets both"
        ),
        (Some(_), Some(n)) => std::path::PathBuf::from(n),
    };
    let mut s = Server::prepare(Kind::Pikv, "native", support::free_ports(), &[]);
    s.native = Some(native);
    s.spawn_now();
    s.wait_ready();
    let ep = |args: &[&str]| -> Vec<String> {
        let mut a = vec!["--endpoints".to_string(), s.client_url()];
        a.extend(args.iter().map(|x| x.to_string()));
        a
    };
    let set = run(Tool::PikvCtl, &ep(&["set", "/board", "armv7"]), &[]);
    assert_eq!((set.code, set.stdout.as_str()), (0, "armv7\n"), "{set:?}");
    let get = run(Tool::PikvCtl, &ep(&["get", "/board"]), &[]);
    assert_eq!((get.code, get.stdout.as_str()), (0, "armv7\n"), "{get:?}");
    let health = run(Tool::PikvCtl, &ep(&["cluster-health"]), &[]);
    assert_eq!(health.code, 0, "{health:?}");
    assert!(
        health.stdout.ends_with("cluster is healthy\n"),
        "{health:?}"
    );
    let v3 = run(Tool::PikvCtl, &ep(&["get", "--prefix", "/bo"]), &[]);
    assert_eq!(
        (v3.code, v3.stdout.as_str()),
        (0, "/board\narmv7\n"),
        "{v3:?}"
    );
    // The server really is the host's build, not the board's under the runner.
    let exe = s.exe().unwrap_or_default();
    assert!(
        !exe.to_string_lossy().contains("qemu"),
        "the server runs as {}",
        exe.display()
    );
}
