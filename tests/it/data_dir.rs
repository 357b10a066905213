//! Start-up refusals and the command line.
//!
//! What it proves: pikv refuses to start — non-zero exit and exactly one line on stderr that
//! names the data dir and the reason — on an etcd data dir (made by the real etcd when it
//! is installed, else its `member/wal` and `member/snap` layout), on a pikv data dir whose
//! format record says version 9, on a data.mdb whose first 8 KiB are overwritten with
//! random bytes, and on a data dir path that is a regular file. Bad flags and values exit
//! non-zero with one line (`--heartbeat-interval=0`, `--initial-cluster-state=bogus`,
//! `--cert-file` refused as TLS, an unknown flag with exit code 2). Two listen URLs both
//! serve; the single-dash forms `-name x -data-dir d` and the `ETCD_NAME`/`ETCD_DATA_DIR`
//! environment variables work (the name shows in `/v2/members`, the data dir is created).
//!
//! How: the real pikv binary on free loopback ports with temp dirs; refused starts are run
//! to their exit (deadline 30 s), servers are killed by pid through guards. These are pikv's
//! own behaviours, so the tests run pikv whatever `PIKV_IT_TARGET` says.

use crate::support::{self, http, ChildGuard, Exited, Kind, Prng, Server, TempDir};
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

/// The listen flags for a start that should be refused before it binds anything.
fn listen_args(port: u16) -> Vec<String> {
    let url = format!("http://127.0.0.1:{port}");
    vec![
        "--listen-client-urls".into(),
        url.clone(),
        "--advertise-client-urls".into(),
        url,
    ]
}

fn refused_on(data_dir: &Path, reason: &str) -> Exited {
    let (port, _) = support::free_ports();
    let dir = data_dir.to_string_lossy().into_owned();
    let mut args: Vec<String> = vec!["--data-dir".into(), dir.clone()];
    args.extend(listen_args(port));
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = support::run_pikv(&argv, &[]);
    assert_one_line_refusal(&out, &argv, &[&dir, reason]);
    out
}

fn assert_one_line_refusal(out: &Exited, argv: &[&str], must_contain: &[&str]) {
    let lines: Vec<&str> = out
        .stderr
        .lines()
        .filter(|l| !l.trim().is_empty())
        .collect();
    assert!(
        out.code.is_some_and(|c| c != 0),
        "pikv {argv:?} exited with {:?}\nstderr: {}",
        out.code,
        out.stderr
    );
    assert_eq!(
        lines.len(),
        1,
        "pikv {argv:?}: expected one line on stderr, got:\n{}\nstdout: {}",
        out.stderr,
        out.stdout
    );
    for part in must_contain {
        assert!(
            lines[0].contains(part),
            "pikv {argv:?}: {:?} does not mention {part:?}",
            lines[0]
        );
    }
    eprintln!("data_dir: {argv:?} -> exit {:?}: {}", out.code, lines[0]);
}

/// A pikv data dir with a little data, the server stopped.
fn stopped_pikv() -> Server {
    let mut s = Server::start(Kind::Pikv);
    assert_eq!(s.put("/v2/keys/x", "value=1").status, 201);
    s.stop();
    s
}

#[test]
fn foreign_newer_damaged_and_non_directory_data_dirs_are_refused() {
    // (a) an etcd data dir.
    let etcd_dir =
        if Path::new("/usr/bin/etcd").exists() || std::env::var_os("PIKV_IT_ETCD").is_some() {
            let mut e = Server::start(Kind::Etcd);
            e.stop();
            assert!(
                e.data_dir().join("member/wal").is_dir(),
                "etcd made no member/wal"
            );
            Some(e)
        } else {
            eprintln!("data_dir: no etcd installed; using an etcd-shaped data dir");
            None
        };
    let shaped = TempDir::new("etcd-shaped");
    for d in ["member/wal", "member/snap"] {
        std::fs::create_dir_all(shaped.path().join(d)).unwrap();
    }
    if let Some(e) = &etcd_dir {
        refused_on(&e.data_dir(), "etcd data dir");
    }
    refused_on(shaped.path(), "etcd data dir");

    // (b) a newer format: patch the 12-byte format record (every copy LMDB's
    // copy-on-write left in the file) from version 3 to 9.
    let newer = stopped_pikv();
    let mdb = newer.data_dir().join("member/data.mdb");
    let mut bytes = std::fs::read(&mdb).unwrap();
    let record = b"pikv-dat\0\0\0\x03";
    let mut patched = 0;
    let mut at = 0;
    while let Some(pos) = bytes[at..].windows(record.len()).position(|w| w == record) {
        bytes[at + pos + 11] = 9;
        at += pos + record.len();
        patched += 1;
    }
    assert!(patched > 0, "no format record found in {}", mdb.display());
    std::fs::write(&mdb, &bytes).unwrap();
    refused_on(&newer.data_dir(), "version 9");

    // (c) a damaged data.mdb: its first 8 KiB (both LMDB meta pages) overwritten.
    let damaged = stopped_pikv();
    let mdb = damaged.data_dir().join("member/data.mdb");
    let mut bytes = std::fs::read(&mdb).unwrap();
    let seed = support::seed();
    let mut rng = Prng::new(seed);
    for b in bytes.iter_mut().take(8192) {
        *b = rng.next_u64() as u8;
    }
    std::fs::write(&mdb, &bytes).unwrap();
    eprintln!("data_dir: damaged with seed {seed}");
    refused_on(&damaged.data_dir(), "damaged");

    // (d) the data dir path is a regular file.
    let tmp = TempDir::new("file-data-dir");
    let file = tmp.path().join("not-a-dir");
    std::fs::write(&file, b"hello").unwrap();
    refused_on(&file, "not a directory");
    assert_eq!(
        std::fs::read(&file).unwrap(),
        b"hello",
        "the file was changed"
    );
}

#[test]
fn bad_flags_and_values_exit_with_one_line() {
    let tmp = TempDir::new("flags");
    let dir = tmp.path().join("d").to_string_lossy().into_owned();
    let (port, _) = support::free_ports();
    let listen = listen_args(port);
    for (flag, code, says) in [
        ("--heartbeat-interval=0", None, "--heartbeat-interval"),
        ("--initial-cluster-state=bogus", None, "bogus"),
        ("--cert-file=x", None, "TLS"),
        ("--no-such-flag", Some(2), "no-such-flag"),
    ] {
        let mut argv: Vec<&str> = vec!["--data-dir", &dir];
        argv.extend(listen.iter().map(String::as_str));
        argv.push(flag);
        let out = support::run_pikv(&argv, &[]);
        assert_one_line_refusal(&out, &argv, &[says]);
        if let Some(c) = code {
            assert_eq!(out.code, Some(c), "{flag}: exit code");
        }
    }
    assert!(
        !Path::new(&dir).exists(),
        "a refused start created the data dir"
    );
}

// The tests are built for the same target as the binary (armv7 under qemu in `make
// armv7-test`), so the test's own pointer width is the server's.
#[test]
fn the_quota_fits_the_address_space() {
    let s = Server::start_with_args(Kind::Pikv, "a", &[]);
    let default = if cfg!(target_pointer_width = "32") {
        512 << 20
    } else {
        2 << 30
    };
    assert_eq!(s.metric("pikv_storage_quota_bytes"), default);
    let put = s.put("/v2/keys/q", &http::form(&[("value", "1")]));
    assert_eq!(put.status, 201, "{}", put.dump());
    drop(s);
    if cfg!(target_pointer_width = "32") {
        let tmp = TempDir::new("quota32");
        let dir = tmp.path().join("d").to_string_lossy().into_owned();
        let (port, _) = support::free_ports();
        let listen = listen_args(port);
        let mut argv: Vec<&str> = vec!["--data-dir", &dir, "--quota-backend-bytes=3221225472"];
        argv.extend(listen.iter().map(String::as_str));
        let out = support::run_pikv(&argv, &[]);
        assert_one_line_refusal(&out, &argv, &["--quota-backend-bytes", "32-bit"]);
    }
}

/// A pikv started with `args` and `env`, killed when dropped.
fn spawn_pikv(args: &[String], env: &[(&str, String)], log: &Path) -> ChildGuard {
    let log = std::fs::File::create(log).unwrap();
    let mut cmd = crate::support::pikv_command();
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::from(log.try_clone().unwrap()))
        .stderr(Stdio::from(log));
    for (k, _) in std::env::vars() {
        if k.starts_with("ETCD_") || k.starts_with("PIKV_") {
            cmd.env_remove(k);
        }
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    ChildGuard(Some(cmd.spawn().expect("spawn pikv")))
}

fn wait_healthy(port: u16, guard: &mut ChildGuard, log: &Path) {
    support::wait_for(
        &format!("/health on port {port}"),
        Duration::from_secs(30),
        || {
            if let Ok(Some(st)) = guard.child().try_wait() {
                panic!(
                    "pikv exited with {st}: {}",
                    std::fs::read_to_string(log).unwrap_or_default()
                );
            }
            http::try_request(port, "GET", "/health", &[], b"", Duration::from_secs(2))
                .ok()
                .filter(|r| r.status == 200)
        },
    );
}

fn member_names(port: u16) -> Vec<String> {
    let r = http::get(port, "/v2/members");
    assert_eq!(r.status, 200, "{}", r.dump());
    r.json()["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["name"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn several_listen_urls_single_dash_flags_and_environment() {
    let tmp = TempDir::new("cli");
    let (a, b) = support::free_ports();
    let (_, peer) = support::free_ports();
    let peer_url = format!("http://127.0.0.1:{peer}");
    let peer_args = |name: &str| -> Vec<String> {
        vec![
            "--listen-peer-urls".into(),
            peer_url.clone(),
            "--initial-advertise-peer-urls".into(),
            peer_url.clone(),
            "--initial-cluster".into(),
            format!("{name}={peer_url}"),
        ]
    };

    // Two listen URLs and single-dash flags.
    let dir = tmp.path().join("x.data");
    let mut args: Vec<String> = vec![
        "-name".into(),
        "x".into(),
        "-data-dir".into(),
        dir.to_string_lossy().into_owned(),
        "--listen-client-urls".into(),
        format!("http://127.0.0.1:{a},http://127.0.0.1:{b}"),
        "--advertise-client-urls".into(),
        format!("http://127.0.0.1:{a}"),
    ];
    args.extend(peer_args("x"));
    let log = tmp.path().join("x.log");
    let mut g = spawn_pikv(&args, &[], &log);
    wait_healthy(a, &mut g, &log);
    wait_healthy(b, &mut g, &log);
    assert_eq!(http::put(a, "/v2/keys/two", "value=ports").status, 201);
    let r = http::get(b, "/v2/keys/two");
    assert_eq!(r.json()["node"]["value"], "ports", "{}", r.dump());
    for port in [a, b] {
        assert_eq!(member_names(port), ["x"], "port {port}");
    }
    assert!(dir.join("member/data.mdb").is_file(), "-data-dir not used");
    drop(g);

    // The environment.
    let dir = tmp.path().join("env.data");
    let url = format!("http://127.0.0.1:{a}");
    let env = [
        ("ETCD_NAME", "envname".to_string()),
        ("ETCD_DATA_DIR", dir.to_string_lossy().into_owned()),
        ("ETCD_LISTEN_CLIENT_URLS", url.clone()),
        ("ETCD_ADVERTISE_CLIENT_URLS", url),
    ];
    let log = tmp.path().join("env.log");
    let mut g = spawn_pikv(&peer_args("envname"), &env, &log);
    wait_healthy(a, &mut g, &log);
    assert_eq!(member_names(a), ["envname"]);
    assert!(
        dir.join("member/data.mdb").is_file(),
        "ETCD_DATA_DIR not used"
    );
}

// `docker run <image> etcd -name ...` (the program named first, as tutorials run etcd's
// images) works with pikv as the image's entrypoint; `pikv check-config` only checks.
#[test]
fn program_name_first_and_check_config() {
    let out = support::run_pikv(&["etcd", "--version"], &[]);
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    assert!(out.stdout.starts_with("pikv Version: "), "{}", out.stdout);
    let out = support::run_pikv(&["/usr/local/bin/etcd", "check-config", "-name", "n1"], &[]);
    assert_eq!(
        (out.code, out.stdout.as_str(), out.stderr.as_str()),
        (Some(0), "", "")
    );
    let out = support::run_pikv(
        &[
            "check-config",
            "--name",
            "n1",
            "--initial-cluster",
            "n2=http://127.0.0.1:2380",
        ],
        &[],
    );
    assert_eq!(out.code, Some(1));
    assert!(
        out.stderr.contains("couldn't find local name \"n1\""),
        "{}",
        out.stderr
    );
    let tmp = TempDir::new("check");
    let dir = tmp.path().join("never");
    let out = support::run_pikv(
        &["check-config", "--data-dir", &dir.to_string_lossy()],
        &[("ETCD_SNAPSHOT_COUNT", "x")],
    );
    assert_eq!(out.code, Some(1), "{}", out.stderr);
    assert!(out.stderr.contains("ETCD_SNAPSHOT_COUNT"), "{}", out.stderr);
    assert!(!dir.exists(), "check-config created the data dir");
}
