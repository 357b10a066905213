//! Shared helpers for the process-level integration tests: which server to run
//! (`PIKV_IT_TARGET`), temp dirs, free ports, a seeded PRNG, and the raw HTTP client,
//! process handle, order-preserving JSON parser and network-namespace lab in the submodules.

pub mod cluster;
pub mod http;
pub mod json;
pub mod netns;
pub mod process;
pub mod sha1;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

pub use process::{Kind, Server};

/// The server kind the tests run against: `PIKV_IT_TARGET` unset or `pikv` → pikv,
/// `etcd` → the real etcd 3.4 (ORACLE mode). Anything else is a loud error.
pub fn target() -> Kind {
    match std::env::var("PIKV_IT_TARGET").ok().as_deref() {
        None | Some("") | Some("pikv") => Kind::Pikv,
        Some("etcd") => Kind::Etcd,
        Some(other) => panic!("PIKV_IT_TARGET={other:?}: expected \"pikv\" or \"etcd\""),
    }
}

/// A directory under the system temp dir, removed on drop (unless `PIKV_IT_KEEP` is set).
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static N: AtomicU64 = AtomicU64::new(0);
        let n = N.fetch_add(1, Ordering::SeqCst);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        let path =
            std::env::temp_dir().join(format!("pikv-it-{tag}-{}-{n}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&path).unwrap_or_else(|e| panic!("mkdir {}: {e}", path.display()));
        TempDir { path }
    }
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if std::env::var_os("PIKV_IT_KEEP").is_none() {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

/// Two distinct free loopback ports (both listeners are held until both are known).
pub fn free_ports() -> (u16, u16) {
    let p = fresh_ports(2);
    (p[0], p[1])
}

/// `n` distinct free loopback ports, none handed out before in this test process. A port is
/// never reused: a member killed by one test and restarted later must find its ports free,
/// not taken by a cluster another test started meanwhile (which would then answer in its
/// place).
pub fn fresh_ports(n: usize) -> Vec<u16> {
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
    let mut held = Vec::new();
    let mut out = Vec::new();
    while out.len() < n {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let port = l.local_addr().expect("local addr").port();
        if !given.contains(&port) && !out.contains(&port) {
            out.push(port);
        }
        held.push(l);
    }
    given.extend(&out);
    out
}

/// splitmix64: a tiny seeded PRNG, so a failing run can be reproduced from its seed.
pub struct Prng(u64);

impl Prng {
    pub fn new(seed: u64) -> Prng {
        Prng(seed)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    /// Uniform in `lo..hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next_u64() % (hi - lo)
    }
}

/// The seed for randomised tests: `PIKV_IT_SEED` or a fixed default (printed by the caller).
pub fn seed() -> u64 {
    std::env::var("PIKV_IT_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5eed_0001)
}

/// Polls `f` every 20 ms until it returns `Some`, or panics with `what` after `limit`.
pub fn wait_for<T>(what: &str, limit: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = f() {
            return v;
        }
        if Instant::now() > deadline {
            panic!("timed out after {limit:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Is `prog` on PATH (or an existing path)? Used to fail loudly naming a missing tool.
pub fn require_tool(prog: &str) {
    let found = if prog.contains('/') {
        Path::new(prog).exists()
    } else {
        std::env::var_os("PATH")
            .map(|p| std::env::split_paths(&p).any(|d| d.join(prog).is_file()))
            .unwrap_or(false)
    };
    assert!(
        found,
        "required tool `{prog}` not found; run scripts/setup.sh (or `make setup`)"
    );
}

/// A client child process (etcdctl watch, curl) that is killed by pid and reaped when the
/// guard goes out of scope, including when an assertion fails first.
pub struct ChildGuard(pub Option<std::process::Child>);

impl ChildGuard {
    pub fn child(&mut self) -> &mut std::process::Child {
        self.0.as_mut().expect("child already taken")
    }
    pub fn take(&mut self) -> std::process::Child {
        self.0.take().expect("child already taken")
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// The outcome of a pikv run that is expected to exit by itself (a refused start).
#[derive(Debug)]
pub struct Exited {
    pub code: Option<i32>,
    pub stderr: String,
    pub stdout: String,
}

/// A command that runs the pikv binary under test: directly, or through `PIKV_IT_RUNNER`
/// (e.g. `qemu-arm-static`, when the tests were built for armv7 and run under qemu on a
/// machine without binfmt handlers). qemu-user runs the guest in its own process, so the
/// child's pid is the server's.
pub fn pikv_command() -> std::process::Command {
    let mut cmd = match std::env::var_os("PIKV_IT_RUNNER").filter(|r| !r.is_empty()) {
        Some(runner) => {
            let mut cmd = std::process::Command::new(runner);
            cmd.arg(env!("CARGO_BIN_EXE_pikv"));
            cmd
        }
        None => std::process::Command::new(env!("CARGO_BIN_EXE_pikv")),
    };
    // The harness's own settings are not the server's: pikv warns about PIKV_* it does not
    // know, and some tests count its stderr lines.
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("PIKV_IT_") {
            cmd.env_remove(key);
        }
    }
    cmd
}

/// Runs the pikv binary with `args` and extra `env`, waits (deadline 30 s, then kill -9 and
/// panic) for it to exit, and returns its exit code and output.
pub fn run_pikv(args: &[&str], env: &[(&str, &str)]) -> Exited {
    use std::process::Stdio;
    let mut cmd = pikv_command();
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for k in ["ETCD_NAME", "ETCD_DATA_DIR", "PIKV_NAME", "PIKV_DATA_DIR"]
        .iter()
        .chain(process::SYSTEMD_ENV)
    {
        cmd.env_remove(k);
    }
    cmd.envs(env.iter().copied());
    let mut guard = ChildGuard(Some(cmd.spawn().expect("spawn pikv")));
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(Some(_)) = guard.child().try_wait() {
            break;
        }
        if Instant::now() > deadline {
            panic!("pikv {args:?} did not exit within 30 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = guard.take().wait_with_output().expect("pikv output");
    Exited {
        code: out.status.code(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
    }
}
