//! `Server`: one running pikv or etcd 3.4 process on free loopback ports with its own temp
//! data dir (style.md §3.4 item 5, the `PikvProcess` helper) — or, for the partition tests,
//! at its own addresses inside a network namespace (`client_host`, `peer_host`, `netns`).
//!
//! Both programs get etcd's flags (`--name --data-dir --listen-client-urls
//! --advertise-client-urls --listen-peer-urls --initial-advertise-peer-urls --initial-cluster`,
//! plus `--enable-v2` for etcd). `start` waits, with a deadline, for `GET /health` = 200 and a
//! decided cluster version; stderr goes to a file that is printed when a wait fails. The
//! handle can stop (SIGTERM), `kill -9`, and restart with the same command line and data dir;
//! `Drop` kills the process by pid and reaps it.

use super::http;
use super::TempDir;
use std::fs::OpenOptions;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long a server may take to become ready before the test fails.
const READY_DEADLINE: Duration = Duration::from_secs(30);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Pikv,
    Etcd,
}

impl Kind {
    pub fn label(self) -> &'static str {
        match self {
            Kind::Pikv => "pikv",
            Kind::Etcd => "etcd",
        }
    }
    pub fn program(self) -> PathBuf {
        match self {
            Kind::Pikv => PathBuf::from(env!("CARGO_BIN_EXE_pikv")),
            Kind::Etcd => PathBuf::from(
                std::env::var("PIKV_IT_ETCD").unwrap_or_else(|_| "/usr/bin/etcd".into()),
            ),
        }
    }
}

pub struct Server {
    pub kind: Kind,
    pub name: String,
    pub client_port: u16,
    pub peer_port: u16,
    tmp: TempDir,
    child: Option<Child>,
    stderr_path: PathBuf,
    /// How many times the process has been started (etcd spends one index per start).
    pub starts: u32,
    /// Flags appended to the standard command line (e.g. `--quota-backend-bytes`).
    pub extra_args: Vec<String>,
    /// Environment variables set for every start (e.g. `NOTIFY_SOCKET`).
    pub extra_env: Vec<(String, String)>,
    /// `--initial-cluster` of a member of a multi-member cluster (default: this one alone).
    pub initial_cluster: Option<String>,
    /// The address clients reach the server on, and its client URLs name (default loopback).
    pub client_host: String,
    /// The address of the peer URLs (default loopback).
    pub peer_host: String,
    /// The network namespace to run in (`ip netns exec <ns> <program> <args>`; `ip` execs
    /// the program, so the child's pid is still the server's).
    pub netns: Option<String>,
    /// A command line used verbatim instead of [`Server::args`] (a tutorial's own flags; etcd
    /// still gets `--enable-v2`). The process then runs in its temp dir, so a default data dir
    /// lands there.
    pub raw_args: Option<Vec<String>>,
    /// A pikv binary run directly, not through `PIKV_IT_RUNNER` (the armv7 run's x86_64
    /// server for the armv7 client).
    pub native: Option<PathBuf>,
}

/// systemd's variables: a test run under a systemd service must not pass its own to the
/// servers it starts (they would notify the test's service manager).
pub const SYSTEMD_ENV: &[&str] = &["NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"];

impl Server {
    /// Starts a fresh single-member server of `kind` named `a` and waits until it is ready.
    pub fn start(kind: Kind) -> Server {
        Server::start_named(kind, "a")
    }

    pub fn start_named(kind: Kind, name: &str) -> Server {
        Server::start_with_args(kind, name, &[])
    }

    /// Like `start_named`, with `extra` appended to the command line of every start.
    pub fn start_with_args(kind: Kind, name: &str, extra: &[&str]) -> Server {
        super::require_tool(kind.program().to_str().unwrap());
        // A free port can be taken by someone else between our probe and the server's bind;
        // then start again on new ports.
        let mut last = String::new();
        for _attempt in 0..3 {
            let mut s = Server::prepare(kind, name, super::free_ports(), extra);
            s.spawn();
            match s.wait_ready_inner() {
                Ok(()) => return s,
                Err(e) if s.log().contains("address already in use") => last = e,
                Err(e) => s.fail(&e),
            }
        }
        panic!("could not start {}: {last}", kind.label());
    }

    /// Starts pikv or etcd with `env` added to its environment and returns at once, without
    /// waiting for it to be ready (a test that watches the start-up itself; it retries on
    /// "address already in use" through [`Server::lost_port_race`]). `dir` is the server's
    /// temp dir (removed on drop); the caller may have put files there first.
    pub fn launch(kind: Kind, name: &str, dir: TempDir, env: &[(&str, &str)]) -> Server {
        super::require_tool(kind.program().to_str().unwrap());
        let (client_port, peer_port) = super::free_ports();
        let stderr_path = dir.path().join("server.log");
        let mut s = Server {
            kind,
            name: name.to_string(),
            client_port,
            peer_port,
            tmp: dir,
            child: None,
            stderr_path,
            starts: 0,
            extra_args: Vec::new(),
            extra_env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            initial_cluster: None,
            client_host: http::LOOPBACK.into(),
            peer_host: http::LOOPBACK.into(),
            netns: None,
            raw_args: None,
            native: None,
        };
        s.spawn();
        s
    }

    /// A member of a cluster, not started: the caller sets `initial_cluster` and calls
    /// [`Server::spawn_now`] on every member before waiting for any (none is ready alone).
    pub fn prepare(kind: Kind, name: &str, ports: (u16, u16), extra: &[&str]) -> Server {
        super::require_tool(kind.program().to_str().unwrap());
        let tmp = TempDir::new(&format!("{}-{name}", kind.label()));
        let stderr_path = tmp.path().join("server.log");
        Server {
            kind,
            name: name.to_string(),
            client_port: ports.0,
            peer_port: ports.1,
            tmp,
            child: None,
            stderr_path,
            starts: 0,
            extra_args: extra.iter().map(|a| a.to_string()).collect(),
            extra_env: Vec::new(),
            initial_cluster: None,
            client_host: http::LOOPBACK.into(),
            peer_host: http::LOOPBACK.into(),
            netns: None,
            raw_args: None,
            native: None,
        }
    }

    /// Starts the process without waiting for it.
    pub fn spawn_now(&mut self) {
        self.spawn();
    }

    /// Waits for readiness; `Err` with the reason instead of a panic.
    pub fn try_wait_ready(&mut self) -> Result<(), String> {
        self.wait_ready_inner()
    }

    /// SIGSTOP (the process freezes, as on a stalled board) or SIGCONT.
    pub fn signal(&self, sig: &str) {
        if let Some(c) = &self.child {
            let _ = Command::new("kill")
                .arg(format!("-{sig}"))
                .arg(c.id().to_string())
                .status();
        }
    }

    /// The process exited during startup because someone took its port first.
    pub fn lost_port_race(&mut self) -> bool {
        !self.is_alive() && self.log().contains("address already in use")
    }

    pub fn data_dir(&self) -> PathBuf {
        self.tmp.path().join(format!("{}.data", self.name))
    }
    pub fn client_url(&self) -> String {
        format!("http://{}:{}", self.client_host, self.client_port)
    }
    pub fn peer_url(&self) -> String {
        format!("http://{}:{}", self.peer_host, self.peer_port)
    }
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("server is not running").id()
    }
    /// The program the process runs now (`/proc/<pid>/exe`): under `ip netns exec` it must
    /// be the server itself, so that signals and `kill -9` by pid reach the server.
    pub fn exe(&self) -> Option<PathBuf> {
        std::fs::read_link(format!("/proc/{}/exe", self.pid())).ok()
    }
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }
    /// The process was started and has not exited (checked with `try_wait`).
    pub fn is_alive(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }
    /// A counter or gauge of `GET /metrics` (pikv only), e.g. `pikv_storage_batches_total`.
    pub fn metric(&self, name: &str) -> u64 {
        let r = self.get("/metrics");
        assert_eq!(r.status, 200, "{}", r.dump());
        let text = r.text();
        text.lines()
            .filter(|l| !l.starts_with('#'))
            .find_map(|l| {
                let (n, v) = l.split_once(' ')?;
                (n == name).then(|| v.trim().parse::<u64>().ok()).flatten()
            })
            .unwrap_or_else(|| panic!("no metric {name} in\n{text}"))
    }

    /// The command line: etcd's flags for both programs.
    pub fn args(&self) -> Vec<String> {
        if let Some(raw) = &self.raw_args {
            let mut a = raw.clone();
            if self.kind == Kind::Etcd {
                a.push("--enable-v2".into());
            }
            return a;
        }
        let c = self.client_url();
        let p = self.peer_url();
        let mut a: Vec<String> = vec![
            "--name".into(),
            self.name.clone(),
            "--data-dir".into(),
            self.data_dir().to_string_lossy().into_owned(),
            "--listen-client-urls".into(),
            c.clone(),
            "--advertise-client-urls".into(),
            c,
            "--listen-peer-urls".into(),
            p.clone(),
            "--initial-advertise-peer-urls".into(),
            p.clone(),
            "--initial-cluster".into(),
            self.initial_cluster
                .clone()
                .unwrap_or_else(|| format!("{}={p}", self.name)),
        ];
        if self.kind == Kind::Etcd {
            a.push("--enable-v2".into());
        }
        a.extend(self.extra_args.iter().cloned());
        a
    }

    fn spawn(&mut self) {
        assert!(self.child.is_none(), "spawn while running");
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.stderr_path)
            .expect("open server log");
        use std::io::Write;
        let mut l2 = log.try_clone().unwrap();
        let _ = writeln!(
            l2,
            "==== start #{} of {} {:?}",
            self.starts + 1,
            self.kind.label(),
            self.args()
        );
        let mut cmd = match (self.kind, &self.native) {
            (Kind::Pikv, Some(native)) => Command::new(native),
            (Kind::Pikv, None) => super::pikv_command(),
            (Kind::Etcd, _) => Command::new(self.kind.program()),
        };
        if let Some(ns) = &self.netns {
            cmd = super::netns::exec_in(ns, &cmd);
        }
        if self.raw_args.is_some() {
            cmd.current_dir(self.tmp.path());
        }
        for k in SYSTEMD_ENV {
            cmd.env_remove(k);
        }
        let child = cmd
            .args(self.args())
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log))
            .env_remove("ETCDCTL_API")
            .envs(self.extra_env.iter().map(|(k, v)| (k, v)))
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {:?}: {e}", self.kind.program()));
        self.child = Some(child);
        self.starts += 1;
    }

    /// The captured stdout+stderr of every start so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    /// Panics with `why` and the tail of the server's log.
    pub fn fail(&self, why: &str) -> ! {
        let log = self.log();
        let tail: String = {
            let lines: Vec<&str> = log.lines().collect();
            let from = lines.len().saturating_sub(80);
            lines[from..].join("\n")
        };
        panic!(
            "{} {} at {}:{}: {why}\n---- server output (last 80 lines of {}) ----\n{tail}\n----",
            self.kind.label(),
            self.name,
            self.client_host,
            self.client_port,
            self.stderr_path.display()
        );
    }

    fn wait_ready_inner(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + READY_DEADLINE;
        loop {
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(st)) = child.try_wait() {
                    self.child = None;
                    return Err(format!("process exited during startup: {st}"));
                }
            }
            if let Ok(r) = http::try_request_at(
                &self.client_host,
                self.client_port,
                "GET",
                "/health",
                &[],
                b"",
                Duration::from_secs(2),
            ) {
                if r.status == 200 {
                    // etcd spends its 3rd index when the cluster version is decided; wait for
                    // it so that index accounting is the same from run to run.
                    if let Ok(v) = http::try_request_at(
                        &self.client_host,
                        self.client_port,
                        "GET",
                        "/version",
                        &[],
                        b"",
                        Duration::from_secs(2),
                    ) {
                        if v.status == 200 && !v.text().contains("not_decided") {
                            return Ok(());
                        }
                    }
                }
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "not ready (GET /health = 200) within {READY_DEADLINE:?}"
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits until the server answers /health with 200 (panics with its log otherwise).
    pub fn wait_ready(&mut self) {
        if let Err(e) = self.wait_ready_inner() {
            self.fail(&e);
        }
    }

    /// SIGKILL and reap.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill(); // std sends SIGKILL
            let _ = c.wait();
        }
    }

    /// SIGTERM, wait up to 10 s for a clean exit, then SIGKILL.
    pub fn stop(&mut self) {
        self.terminate();
        if self.wait_exit(Duration::from_secs(10)).is_none() {
            self.kill9();
        }
    }

    /// Sends SIGTERM and returns at once.
    pub fn terminate(&self) {
        if let Some(c) = &self.child {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(c.id().to_string())
                .status();
        }
    }

    /// Waits up to `limit` for the process to exit and reaps it; `None` if it is still running
    /// (or was not started).
    pub fn wait_exit(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + limit;
        loop {
            match self.child.as_mut()?.try_wait() {
                Ok(Some(st)) => {
                    self.child = None;
                    return Some(st);
                }
                _ if Instant::now() > deadline => return None,
                _ => std::thread::sleep(Duration::from_millis(20)),
            }
        }
    }

    /// Starts the process again with the same command line, ports and data dir.
    pub fn start_again(&mut self) {
        // The old process may still hold the port for a moment; retry the bind a few times.
        for attempt in 0..5 {
            self.spawn();
            match self.wait_ready_inner() {
                Ok(()) => return,
                Err(e)
                    if attempt < 4
                        && self.child.is_none()
                        && self.log().contains("address already in use") =>
                {
                    std::thread::sleep(Duration::from_millis(200));
                    let _ = e;
                }
                Err(e) => self.fail(&e),
            }
        }
    }

    /// Graceful stop, then start with the same data dir.
    pub fn restart(&mut self) {
        self.stop();
        self.start_again();
    }

    /// kill -9, then start with the same data dir.
    pub fn crash_restart(&mut self) {
        self.kill9();
        self.start_again();
    }

    /// VmRSS of the process in KiB, from /proc/<pid>/status.
    pub fn rss_kib(&self) -> Option<u64> {
        let s = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).ok()?;
        s.lines()
            .find(|l| l.starts_with("VmRSS:"))?
            .split_whitespace()
            .nth(1)?
            .parse()
            .ok()
    }

    /// The (member id, cluster id) that spec §10.6 derives from this server's peer URL.
    pub fn expected_ids(&self) -> (String, String) {
        super::sha1::single_member_ids(&self.peer_url())
    }

    // Convenience wrappers around the raw client, bound to this server's address.
    pub fn get(&self, target: &str) -> http::Response {
        http::request_at(&self.client_host, self.client_port, "GET", target, &[], b"")
    }
    pub fn put(&self, target: &str, form_body: &str) -> http::Response {
        http::request_at(
            &self.client_host,
            self.client_port,
            "PUT",
            target,
            &[("Content-Type", http::FORM)],
            form_body.as_bytes(),
        )
    }
    pub fn delete(&self, target: &str) -> http::Response {
        http::request_at(
            &self.client_host,
            self.client_port,
            "DELETE",
            target,
            &[],
            b"",
        )
    }
    /// One request with a timeout, `Err` on a transport error (no response).
    pub fn try_request(
        &self,
        method: &str,
        target: &str,
        headers: &[(&str, &str)],
        body: &[u8],
        timeout: Duration,
    ) -> std::io::Result<http::Response> {
        http::try_request_at(
            &self.client_host,
            self.client_port,
            method,
            target,
            headers,
            body,
            timeout,
        )
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill9();
        if std::thread::panicking() {
            eprintln!(
                "({} log kept in memory only; set PIKV_IT_KEEP=1 to keep {})",
                self.kind.label(),
                self.tmp.path().display()
            );
        }
    }
}
