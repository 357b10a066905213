//! Requirement 6, bad clocks, end to end: real pikv processes whose wall clock jumps by days
//! while they run (a Pi boots without a real-time clock, then NTP corrects it), with the
//! monotonic clock left alone.
//!
//! What it proves: TTLs count in cluster time, which a wall-clock jump does not move. After a
//! jump of +2 days a key set with `ttl=6` is still there with its remaining `ttl` (not
//! expired, not negative), its `expiration` shows the new wall date plus what remains, it is
//! still there about 3 s after it was set, it is gone (and a watch saw its `expire` event)
//! within 6 + 3 s, and a jump back by 2 days does not keep a new key alive for 2 days. The
//! same holds across a restart of a member after a jump (the restarted member resumes the
//! cluster time, not its wall clock), on one member and in a 3-member cluster whose leader's
//! clock jumps forward and a follower's back, and across a leader change.
//!
//! How: libfaketime (Debian package `faketime`) preloaded into the dynamically linked test
//! build of pikv (`CARGO_BIN_EXE_pikv`; LD_PRELOAD cannot reach a static binary, and the
//! armv7 build under qemu-user is static, so there the test says why it does not run). The
//! wall clock's offset is read from a file on every call (`FAKETIME_TIMESTAMP_FILE` with
//! `FAKETIME_NO_CACHE=1`), so rewriting the file jumps the clock of a running process;
//! `FAKETIME_DONT_FAKE_MONOTONIC=1` keeps `CLOCK_MONOTONIC` real. Each server's `Date`
//! header shows its wall clock, so the test first sees the jump take effect. The timing
//! checks leave seconds of slack ("present at ~3 s", "gone by 6 + 3 s"); nothing is timed
//! tightly.

use crate::support::cluster::Cluster;
use crate::support::{self, http, Kind, Server, TempDir};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const DAY: i64 = 86_400;

/// Where Debian installs the preload library (`faketime` depends on `libfaketime`).
fn libfaketime() -> PathBuf {
    let multiarch = match std::env::consts::ARCH {
        "x86_64" => "x86_64-linux-gnu",
        "aarch64" => "aarch64-linux-gnu",
        "arm" => "arm-linux-gnueabihf",
        other => other,
    };
    let candidates = [
        format!("/usr/lib/{multiarch}/faketime/libfaketime.so.1"),
        "/usr/lib/faketime/libfaketime.so.1".to_string(),
        "/usr/local/lib/faketime/libfaketime.so.1".to_string(),
    ];
    candidates
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "libfaketime not found (looked at {candidates:?}): install it with \
                 `apt-get install faketime` (scripts/setup.sh does)"
            )
        })
}

/// Whether the test can run here; panics (naming the fix) when a tool is missing.
fn faketime_usable() -> bool {
    if std::env::var_os("PIKV_IT_RUNNER").is_some_and(|r| !r.is_empty()) {
        eprintln!(
            "clock_jump: not run under PIKV_IT_RUNNER: the board build is static and runs \
             under qemu-user, where LD_PRELOAD of libfaketime cannot reach it (the cluster-time \
             logic is the same code on every architecture; the native run covers it)"
        );
        return false;
    }
    support::require_tool("file");
    let bin = env!("CARGO_BIN_EXE_pikv");
    let out = std::process::Command::new("file")
        .args(["-L", bin])
        .output()
        .unwrap_or_else(|e| panic!("run `file -L {bin}`: {e}"));
    let kind = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        kind.contains("dynamically linked"),
        "{bin} is not dynamically linked, so libfaketime cannot be preloaded into it: {kind}"
    );
    libfaketime();
    true
}

/// libfaketime keeps a shared-memory segment and a semaphore in /dev/shm per process and
/// removes them when the process exits normally: the tests stop their servers with SIGTERM,
/// and on drop (also after a failed assertion killed them with SIGKILL) remove what dead
/// processes left behind, as libfaketime's README asks.
struct ShmSweep;

impl Drop for ShmSweep {
    fn drop(&mut self) {
        let Ok(dir) = std::fs::read_dir("/dev/shm") else {
            return;
        };
        for entry in dir.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let pid = name
                .strip_prefix("faketime_shm_")
                .or_else(|| name.strip_prefix("sem.faketime_sem_"));
            if let Some(pid) = pid.filter(|p| p.bytes().all(|b| b.is_ascii_digit())) {
                if !Path::new(&format!("/proc/{pid}")).exists() {
                    let _ = std::fs::remove_file(entry.path());
                }
            }
        }
    }
}

/// One process's faked wall clock: an offset from the real time, in a file libfaketime reads
/// on every call.
struct FakeClock {
    file: PathBuf,
    /// Seconds ahead of the real wall clock.
    offset: i64,
}

impl FakeClock {
    fn new(dir: &Path, name: &str) -> FakeClock {
        let c = FakeClock {
            file: dir.join(format!("faketime-{name}.rc")),
            offset: 0,
        };
        c.write();
        c
    }

    fn env(&self) -> Vec<(String, String)> {
        vec![
            (
                "LD_PRELOAD".into(),
                libfaketime().to_string_lossy().into_owned(),
            ),
            (
                "FAKETIME_TIMESTAMP_FILE".into(),
                self.file.to_string_lossy().into_owned(),
            ),
            ("FAKETIME_NO_CACHE".into(), "1".into()),
            ("FAKETIME_DONT_FAKE_MONOTONIC".into(), "1".into()),
        ]
    }

    /// Jumps the clock by `secs` (rename: libfaketime never reads half a file).
    fn jump(&mut self, secs: i64) {
        self.offset += secs;
        self.write();
    }

    fn write(&self) {
        let tmp = self.file.with_extension("tmp");
        std::fs::write(&tmp, format!("{:+}\n", self.offset))
            .unwrap_or_else(|e| panic!("write {}: {e}", tmp.display()));
        std::fs::rename(&tmp, &self.file)
            .unwrap_or_else(|e| panic!("rename to {}: {e}", self.file.display()));
    }
}

fn real_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// Days since 1970-01-01 of a civil date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * ((m + 9) % 12) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Unix seconds of an RFC 3339 UTC date (`2026-11-22T17:57:56.05541868Z`; the fraction is
/// dropped).
fn parse_rfc3339(s: &str) -> Option<i64> {
    let n = |r: std::ops::Range<usize>| s.get(r)?.parse::<i64>().ok();
    if !s.ends_with('Z') || s.get(10..11) != Some("T") {
        return None;
    }
    let days = days_from_civil(n(0..4)?, n(5..7)?, n(8..10)?);
    Some(days * DAY + n(11..13)? * 3600 + n(14..16)? * 60 + n(17..19)?)
}

/// Unix seconds of an HTTP date (`Sun, 06 Nov 1994 08:49:37 GMT`).
fn parse_http_date(s: &str) -> Option<i64> {
    let f: Vec<&str> = s.split_whitespace().collect();
    if f.len() != 6 || f[5] != "GMT" {
        return None;
    }
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let month = MONTHS.iter().position(|m| *m == f[2])? as i64 + 1;
    let hms: Vec<i64> = f[4].split(':').filter_map(|x| x.parse().ok()).collect();
    if hms.len() != 3 {
        return None;
    }
    let days = days_from_civil(f[3].parse().ok()?, month, f[1].parse().ok()?);
    Some(days * DAY + hms[0] * 3600 + hms[1] * 60 + hms[2])
}

#[test]
fn date_parsers() {
    assert_eq!(parse_rfc3339("1970-01-02T00:00:01.5Z"), Some(DAY + 1));
    assert_eq!(parse_rfc3339("2000-03-01T00:00:00Z"), Some(951_868_800));
    assert_eq!(
        parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT"),
        Some(784_111_777)
    );
    assert_eq!(parse_http_date("06 Nov 1994"), None);
}

/// The server's wall clock as its `Date` header shows it.
fn server_date(port: u16) -> i64 {
    let r = http::get(port, "/version");
    let date = r
        .header("Date")
        .unwrap_or_else(|| panic!("no Date header: {}", r.dump()));
    parse_http_date(date).unwrap_or_else(|| panic!("bad Date header {date:?}"))
}

/// Waits until the server's wall clock is `offset` seconds from the real one (the jump took
/// effect).
fn wait_wall_offset(port: u16, offset: i64) {
    support::wait_for(
        &format!("the wall clock of the server on port {port} to be {offset:+} s off"),
        Duration::from_secs(10),
        || ((server_date(port) - real_now() - offset).abs() <= 5).then_some(()),
    );
}

/// A TTL key as one member shows it: `ttl` and `expiration` (Unix seconds).
struct TtlView {
    ttl: i64,
    expiration: i64,
    body: String,
}

/// `GET key` on `port`: `None` if it is gone (404).
fn ttl_view(port: u16, key: &str) -> Option<TtlView> {
    let r = http::get(port, &format!("/v2/keys{key}"));
    if r.status == 404 {
        return None;
    }
    assert_eq!(r.status, 200, "GET {key} on port {port}: {}", r.dump());
    let j = r.json();
    let node = &j["node"];
    let exp = node["expiration"]
        .as_str()
        .unwrap_or_else(|| panic!("no expiration: {}", r.text()));
    Some(TtlView {
        // etcd omits a ttl of 0.
        ttl: node["ttl"].as_i64().unwrap_or(0),
        expiration: parse_rfc3339(exp).unwrap_or_else(|| panic!("bad expiration {exp:?}")),
        body: r.text(),
    })
}

/// What a member shows for `key`, set with `ttl` at `set_at`, at a time when it must still be
/// there: present, `ttl` what remains (within a couple of seconds of slack, never negative or
/// more than it was set with), `expiration` this member's wall date plus that.
fn assert_on_schedule(port: u16, key: &str, ttl: i64, set_at: Instant, what: &str) {
    let before = set_at.elapsed().as_secs() as i64;
    let date = server_date(port);
    let v = ttl_view(port, key)
        .unwrap_or_else(|| panic!("{what}: {key} is gone after {before} s of its {ttl} s"));
    let after = set_at.elapsed().as_secs() as i64 + 1;
    assert!(
        v.ttl >= 1 && v.ttl <= ttl && v.ttl >= ttl - after - 1 && v.ttl <= ttl - before + 1,
        "{what}: {key} after {before}..{after} s of its {ttl} s shows ttl {}: {}",
        v.ttl,
        v.body
    );
    assert!(
        (v.expiration - (date + v.ttl)).abs() <= 3,
        "{what}: {key} expiration {} is not the server's wall date {date} plus ttl {}: {}",
        v.expiration,
        v.ttl,
        v.body
    );
}

/// Waits (up to `ttl + 3` s from `set_at`) until `key` is gone on every port.
fn assert_gone_on_schedule(ports: &[u16], key: &str, ttl: i64, set_at: Instant, what: &str) {
    let deadline = set_at + Duration::from_secs(ttl as u64 + 3);
    for &port in ports {
        while let Some(v) = ttl_view(port, key) {
            assert!(
                Instant::now() < deadline,
                "{what}: {key} (ttl {ttl}) still on port {port} {:.1} s after it was set: {}",
                set_at.elapsed().as_secs_f64(),
                v.body
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// A watch on `key` that must see its `expire` event by `ttl + 3` s from `set_at`.
struct ExpireWatch {
    pending: http::Pending,
    key: String,
}

impl ExpireWatch {
    /// Watches `key` for the first event after index `set_index` (the set itself, which a
    /// follower may not have applied yet when the watch arrives).
    fn open(port: u16, key: &str, set_index: u64) -> ExpireWatch {
        let pending = http::start(
            port,
            "GET",
            &format!("/v2/keys{key}?wait=true&waitIndex={}", set_index + 1),
            &[],
            b"",
            Duration::from_secs(60),
        )
        .unwrap_or_else(|e| panic!("watch {key}: {e}"));
        assert_eq!(pending.status, 200, "watch {key}");
        ExpireWatch {
            pending,
            key: key.to_string(),
        }
    }

    fn expect_expire(self, ttl: i64, set_at: Instant, what: &str) {
        let deadline = set_at + Duration::from_secs(ttl as u64 + 3);
        let key = self.key;
        let r = self
            .pending
            .finish(deadline)
            .unwrap_or_else(|e| panic!("{what}: no event for {key} within {ttl} + 3 s: {e}"));
        let j = r.json();
        assert_eq!(j["action"], "expire", "{what}: {}", r.text());
        assert_eq!(j["node"]["key"], key.as_str(), "{what}: {}", r.text());
        // Not early: it was still there at ~3 s (checked before), and an expiry is never
        // decided before its time; a second of slack for the clock read at the PUT.
        assert!(
            set_at.elapsed() >= Duration::from_secs(ttl as u64 - 1),
            "{what}: {key} expired after {:.1} s of its {ttl} s",
            set_at.elapsed().as_secs_f64()
        );
    }
}

/// Sets `key` with `ttl`: when the request went, and the set's index.
fn put_ttl(port: u16, key: &str, ttl: i64) -> (Instant, u64) {
    let at = Instant::now();
    let r = http::put(
        port,
        &format!("/v2/keys{key}"),
        &format!("value=v&ttl={ttl}"),
    );
    assert!(
        r.status == 201 || r.status == 200,
        "PUT {key}: {}",
        r.dump()
    );
    (at, r.modified_index())
}

fn sleep_until(t: Instant) {
    std::thread::sleep(t.saturating_duration_since(Instant::now()));
}

/// A single pikv member with a faked wall clock.
fn start_single(dir_tag: &str, clock: &FakeClock) -> Server {
    let env = clock.env();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    for _ in 0..3 {
        let mut s = Server::launch(Kind::Pikv, "a", TempDir::new(dir_tag), &env);
        match s.try_wait_ready() {
            Ok(()) => return s,
            Err(_) if s.lost_port_race() => continue,
            Err(e) => s.fail(&e),
        }
    }
    panic!("could not start pikv: ports kept being taken");
}

/// One member: a jump forward by 2 days neither expires a TTL key nor changes its `ttl`; it
/// expires on schedule (seen by a watch); a jump back by 2 days keeps no new key alive.
#[test]
fn single_member_expires_on_schedule_across_wall_clock_jumps() {
    if !faketime_usable() {
        return;
    }
    let _sweep = ShmSweep;
    let dir = TempDir::new("clock-jump-single");
    let mut clock = FakeClock::new(dir.path(), "a");
    let mut s = start_single("clock-jump-single-a", &clock);
    let port = s.client_port;
    wait_wall_offset(port, 0);

    let ttl = 6;
    let (set_at, set_index) = put_ttl(port, "/jump/fwd", ttl);
    let before = ttl_view(port, "/jump/fwd").expect("just set");
    let watch = ExpireWatch::open(port, "/jump/fwd", set_index);
    clock.jump(2 * DAY);
    wait_wall_offset(port, 2 * DAY);
    assert_on_schedule(port, "/jump/fwd", ttl, set_at, "after +2 days");
    let after = ttl_view(port, "/jump/fwd").expect("still there");
    assert!(
        (after.expiration - before.expiration - 2 * DAY).abs() <= 3,
        "the expiration date moves with the wall clock: {} then {}",
        before.body,
        after.body
    );
    sleep_until(set_at + Duration::from_secs(3));
    assert_on_schedule(port, "/jump/fwd", ttl, set_at, "~3 s after +2 days");
    watch.expect_expire(ttl, set_at, "after +2 days");
    assert_gone_on_schedule(&[port], "/jump/fwd", ttl, set_at, "after +2 days");

    clock.jump(-2 * DAY);
    wait_wall_offset(port, 0);
    let (set_at, set_index) = put_ttl(port, "/jump/back", ttl);
    let watch = ExpireWatch::open(port, "/jump/back", set_index);
    clock.jump(-2 * DAY);
    wait_wall_offset(port, -2 * DAY);
    assert_on_schedule(port, "/jump/back", ttl, set_at, "after -2 days");
    sleep_until(set_at + Duration::from_secs(3));
    assert_on_schedule(port, "/jump/back", ttl, set_at, "~3 s after -2 days");
    watch.expect_expire(ttl, set_at, "after -2 days");
    assert_gone_on_schedule(&[port], "/jump/back", ttl, set_at, "after -2 days");
    s.stop();
}

/// One member restarted after a jump resumes the cluster time: a key set before the jump
/// neither expires at the restart (+2 days) nor lives on for days after one (-2 days).
#[test]
fn single_member_restart_after_a_jump_keeps_expiry_on_schedule() {
    if !faketime_usable() {
        return;
    }
    let _sweep = ShmSweep;
    let dir = TempDir::new("clock-jump-restart");
    let mut clock = FakeClock::new(dir.path(), "a");
    let mut s = start_single("clock-jump-restart-a", &clock);
    let port = s.client_port;
    wait_wall_offset(port, 0);

    for (jump, what) in [
        (2 * DAY, "restart after +2 days"),
        (-3 * DAY, "restart after -3 days"),
    ] {
        let ttl = 8;
        let (set_at, _) = put_ttl(port, "/restart/k", ttl);
        clock.jump(jump);
        wait_wall_offset(port, clock.offset);
        s.restart();
        wait_wall_offset(port, clock.offset);
        assert_on_schedule(port, "/restart/k", ttl, set_at, what);
        sleep_until(set_at + Duration::from_secs(4));
        assert_on_schedule(port, "/restart/k", ttl, set_at, what);
        assert_gone_on_schedule(&[port], "/restart/k", ttl, set_at, what);
    }
    s.stop();
}

/// Three members: the leader's wall clock jumps forward by 2 days and a follower's back by 2;
/// every member shows the key's remaining `ttl` and its own wall date as `expiration`; the
/// jumped leader hands over and restarts (a leader change, and a restart after a jump); the
/// key expires on schedule everywhere; then the new leader's clock jumps back and a new key
/// still expires on schedule.
#[test]
fn cluster_expires_on_schedule_across_jumps_and_a_leader_change() {
    if !faketime_usable() {
        return;
    }
    let _sweep = ShmSweep;
    let dir = TempDir::new("clock-jump-cluster");
    let mut clocks: Vec<FakeClock> = (0..3)
        .map(|i| FakeClock::new(dir.path(), &format!("m{i}")))
        .collect();
    let envs: Vec<Vec<(String, String)>> = clocks.iter().map(FakeClock::env).collect();
    let mut c = Cluster::start_configured(Kind::Pikv, 3, &[], |m| {
        let i: usize = m.name[1..].parse().expect("member names are m0, m1, ...");
        m.extra_env.extend(envs[i].iter().cloned());
    });
    let ports: Vec<u16> = c.members.iter().map(|m| m.client_port).collect();
    let leader = c.wait_leader(Duration::from_secs(10));
    let follower = (leader + 1) % 3;
    let other = (leader + 2) % 3;

    let ttl = 10;
    let key = "/cluster/a";
    let (set_at, set_index) = put_ttl(ports[leader], key, ttl);
    let watch = ExpireWatch::open(ports[follower], key, set_index);
    clocks[leader].jump(2 * DAY);
    clocks[other].jump(-2 * DAY);
    for i in 0..3 {
        wait_wall_offset(ports[i], clocks[i].offset);
    }
    for &p in &ports {
        assert_on_schedule(p, key, ttl, set_at, "after the leader's +2 days");
    }

    // The jumped leader stops (handing leadership over) and comes back.
    c.members[leader].stop();
    let new_leader = c.wait_leader(Duration::from_secs(10));
    assert_ne!(new_leader, leader);
    c.members[leader].start_again();
    wait_wall_offset(ports[leader], clocks[leader].offset);
    for &p in &ports {
        assert_on_schedule(p, key, ttl, set_at, "after the leader change and restart");
    }
    sleep_until(set_at + Duration::from_secs(5));
    for &p in &ports {
        assert_on_schedule(p, key, ttl, set_at, "~5 s after it was set");
    }
    watch.expect_expire(ttl, set_at, "cluster");
    assert_gone_on_schedule(&ports, key, ttl, set_at, "cluster");

    // The new leader's wall clock jumps back by 2 days.
    let leader = c.wait_leader(Duration::from_secs(10));
    clocks[leader].jump(-2 * DAY);
    wait_wall_offset(ports[leader], clocks[leader].offset);
    let ttl = 6;
    let key = "/cluster/b";
    let (set_at, set_index) = put_ttl(ports[leader], key, ttl);
    let watch = ExpireWatch::open(ports[(leader + 1) % 3], key, set_index);
    for &p in &ports {
        assert_on_schedule(p, key, ttl, set_at, "after the new leader's -2 days");
    }
    sleep_until(set_at + Duration::from_secs(3));
    for &p in &ports {
        assert_on_schedule(p, key, ttl, set_at, "~3 s after the new leader's -2 days");
    }
    watch.expect_expire(ttl, set_at, "after the new leader's -2 days");
    assert_gone_on_schedule(&ports, key, ttl, set_at, "after the new leader's -2 days");
    for m in &mut c.members {
        m.stop();
    }
}
