//! pikv under systemd's notification protocol, with the test playing the service manager.
//!
//! What it proves: started with `$NOTIFY_SOCKET`, pikv's first datagram is `READY=1` (with
//! `STATUS=` and its own `MAINPID=`), sent only once it serves — a `GET /v2/keys/` sent the
//! moment it arrives succeeds at the first try; with `WATCHDOG_USEC=200000` it sends
//! `WATCHDOG=1` about every 100 ms; on SIGTERM it sends `STOPPING=1`, no ping after it, and
//! exits 0. A `WATCHDOG_PID` of another process, or a `WATCHDOG_USEC` that is not a number
//! (logged as a warning), means no pings and an otherwise normal life. `systemd/pikv.default`
//! names only variables pikv knows, and its commented values are what pikv does under
//! `systemd/pikv.service` when the file is left as installed.
//!
//! How: the test binds a Unix datagram socket in the server's temp dir and passes its path
//! as `NOTIFY_SOCKET` to the real pikv binary on free loopback ports; the process is killed
//! by pid when the `Server` guard drops, also when an assertion fails first. These are pikv's
//! own behaviours, so the tests run pikv whatever `PIKV_IT_TARGET` says.

use crate::support::{http, Kind, Server, TempDir};
use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// The test's side of `$NOTIFY_SOCKET`.
struct Manager {
    socket: UnixDatagram,
    path: PathBuf,
}

impl Manager {
    fn bind(dir: &TempDir) -> Manager {
        let path = dir.path().join("notify.sock");
        let socket =
            UnixDatagram::bind(&path).unwrap_or_else(|e| panic!("bind {}: {e}", path.display()));
        Manager { socket, path }
    }

    /// The next datagram within `limit`, or `None`.
    fn recv_within(&self, limit: Duration) -> Option<String> {
        self.socket
            .set_read_timeout(Some(limit.max(Duration::from_millis(1))))
            .expect("set_read_timeout");
        let mut buf = [0u8; 4096];
        let n = self.socket.recv(&mut buf).ok()?;
        Some(String::from_utf8_lossy(&buf[..n]).into_owned())
    }
}

/// Starts pikv with `NOTIFY_SOCKET` and `env`, and waits for its first datagram; retries on
/// new ports when someone else took the one it was given.
fn start_notified(env: &[(&str, &str)]) -> (Server, Manager, String) {
    for _attempt in 0..3 {
        let dir = TempDir::new("pikv-systemd");
        let manager = Manager::bind(&dir);
        let socket = manager.path.to_string_lossy().into_owned();
        let mut all = vec![("NOTIFY_SOCKET", socket.as_str())];
        all.extend_from_slice(env);
        let mut server = Server::launch(Kind::Pikv, "a", dir, &all);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(first) = manager.recv_within(Duration::from_millis(100)) {
                return (server, manager, first);
            }
            if server.lost_port_race() {
                break;
            }
            assert!(
                server.is_alive(),
                "pikv exited before notifying:\n{}",
                server.log()
            );
            assert!(
                Instant::now() < deadline,
                "no notification within 30 s:\n{}",
                server.log()
            );
        }
    }
    panic!("could not start pikv on a free port in 3 attempts");
}

/// Checks the `READY=1` datagram and that the server serves at that very moment.
fn assert_ready_and_serving(server: &Server, first: &str) {
    // One attempt each, no retry: READY=1 promises that clients are served now.
    let keys = http::try_request(
        server.client_port,
        "GET",
        "/v2/keys/",
        &[],
        b"",
        Duration::from_secs(5),
    )
    .unwrap_or_else(|e| panic!("GET /v2/keys/ right after READY=1: {e}\n{}", server.log()));
    assert_eq!(keys.status, 200, "{}", keys.dump());
    assert_eq!(keys.json()["node"]["dir"], true, "{}", keys.dump());
    let health = http::get(server.client_port, "/health");
    assert_eq!(health.status, 200, "{}", health.dump());
    let lines: Vec<&str> = first.split('\n').collect();
    assert_eq!(lines.len(), 3, "{first:?}");
    assert_eq!(lines[0], "READY=1", "the first datagram: {first:?}");
    assert_eq!(
        lines[1],
        format!(
            "STATUS=serving client requests on http://127.0.0.1:{}",
            server.client_port
        )
    );
    assert_eq!(lines[2], format!("MAINPID={}", server.pid()));
}

/// SIGTERM: `STOPPING=1` arrives (pings sent before it are fine, none after), then a clean
/// exit with status 0.
fn assert_stops_cleanly(server: &mut Server, manager: &Manager) {
    server.terminate();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match manager.recv_within(left) {
            Some(m) if m == "WATCHDOG=1" => continue,
            Some(m) => {
                assert_eq!(m, "STOPPING=1\nSTATUS=stopping");
                break;
            }
            None => panic!("no STOPPING=1 within 10 s of SIGTERM:\n{}", server.log()),
        }
    }
    let status = server
        .wait_exit(Duration::from_secs(10))
        .unwrap_or_else(|| panic!("pikv still running 10 s after SIGTERM:\n{}", server.log()));
    assert_eq!(status.code(), Some(0), "{}", server.log());
    if let Some(m) = manager.recv_within(Duration::from_millis(50)) {
        panic!("a datagram after STOPPING=1: {m:?}");
    }
}

#[test]
fn ready_when_serving_then_watchdog_pings_then_stopping_on_sigterm() {
    let (mut server, manager, first) = start_notified(&[("WATCHDOG_USEC", "200000")]);
    assert_ready_and_serving(&server, &first);
    // Pings every WATCHDOG_USEC/2 = 100 ms: a dozen in 1.2 s; ask for half of that, as other
    // tests load the machine at the same time.
    let from = Instant::now();
    let mut at = vec![];
    while from.elapsed() < Duration::from_millis(1200) {
        if let Some(m) = manager.recv_within(Duration::from_millis(500)) {
            assert_eq!(m, "WATCHDOG=1");
            at.push(from.elapsed());
        }
    }
    let gaps: Vec<Duration> = at.windows(2).map(|w| w[1] - w[0]).collect();
    assert!(
        at.len() >= 6,
        "{} WATCHDOG=1 pings in 1.2 s at {at:?}\n{}",
        at.len(),
        server.log()
    );
    let widest = gaps.iter().max().copied().unwrap_or_default();
    assert!(
        widest < Duration::from_secs(1),
        "a {widest:?} gap between pings: {at:?}"
    );
    // The node keeps serving while the watchdog probes it.
    let r = server.put("/v2/keys/dog", "value=woof");
    assert_eq!(r.status, 201, "{}", r.dump());
    assert_stops_cleanly(&mut server, &manager);
}

#[test]
fn no_pings_for_another_pid_or_a_bad_watchdog_usec() {
    /// The extra environment, and the warning pikv must log.
    type Case<'a> = (&'a [(&'a str, &'a str)], Option<&'a str>);
    let cases: [Case; 2] = [
        // systemd's WATCHDOG_PID names the process it means; pid 1 is never pikv here.
        (&[("WATCHDOG_USEC", "100000"), ("WATCHDOG_PID", "1")], None),
        (
            &[("WATCHDOG_USEC", "soon")],
            Some("WATCHDOG_USEC=\"soon\" is not a positive number of microseconds"),
        ),
    ];
    for (env, warning) in cases {
        let (mut server, manager, first) = start_notified(env);
        assert_ready_and_serving(&server, &first);
        if let Some(m) = manager.recv_within(Duration::from_millis(400)) {
            panic!("{env:?}: unexpected {m:?}");
        }
        if let Some(w) = warning {
            assert!(
                server.log().contains(w),
                "{env:?}: no warning {w:?} in\n{}",
                server.log()
            );
        }
        assert_stops_cleanly(&mut server, &manager);
    }
}

/// The variables of `systemd/pikv.default`, uncommented: (name, value) for each
/// `#ETCD_X=value` line.
fn default_file_assignments() -> Vec<(String, String)> {
    let text = include_str!("../../systemd/pikv.default");
    text.lines()
        .filter_map(|l| l.strip_prefix('#')?.split_once('='))
        .filter(|(k, _)| k.starts_with("ETCD_") && !k.contains(' '))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn environment_file_names_flags_and_shows_the_unit_defaults() {
    use pikv::cli::config::{parse_server_args, Invocation};
    let all = default_file_assignments();
    let names: Vec<&str> = all.iter().map(|(k, _)| k.as_str()).collect();
    for want in [
        "ETCD_NAME",
        "ETCD_DATA_DIR",
        "ETCD_LISTEN_CLIENT_URLS",
        "ETCD_ADVERTISE_CLIENT_URLS",
        "ETCD_LISTEN_PEER_URLS",
        "ETCD_INITIAL_ADVERTISE_PEER_URLS",
        "ETCD_INITIAL_CLUSTER",
        "ETCD_INITIAL_CLUSTER_STATE",
        "ETCD_INITIAL_CLUSTER_TOKEN",
        "ETCD_HEARTBEAT_INTERVAL",
        "ETCD_ELECTION_TIMEOUT",
        "ETCD_SNAPSHOT_COUNT",
        "ETCD_QUOTA_BACKEND_BYTES",
        "ETCD_CORS",
    ] {
        assert!(names.contains(&want), "{want} missing from pikv.default");
    }
    // What the unit alone sets: its Environment= lines.
    let unit = include_str!("../../systemd/pikv.service");
    let unit_env: Vec<(String, String)> = unit
        .lines()
        .filter_map(|l| l.strip_prefix("Environment=")?.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    assert_eq!(
        unit_env,
        vec![(
            "ETCD_DATA_DIR".to_string(),
            "/var/lib/pikv/default.pikv".to_string()
        )]
    );
    let config = |env: &[(String, String)]| {
        let parsed = parse_server_args(&[], env).unwrap_or_else(|e| panic!("{env:?}: {e}"));
        // A name pikv does not know would be a warning ("unrecognized environment variable").
        assert_eq!(parsed.warnings, Vec::<String>::new(), "{env:?}");
        match parsed.invocation {
            Invocation::Server(c) => c,
            other => panic!("{env:?}: {other:?}"),
        }
    };
    // Every commented value is what pikv under the unit does when the line stays commented.
    assert_eq!(config(&all), config(&unit_env));
}
