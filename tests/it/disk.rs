//! What pikv writes to disk: nothing when idle, one commit for many writes under load, and
//! no replay on restart.
//!
//! What it proves: (a) with no TTL keys and no requests the process writes nothing: its
//! `/proc/<pid>/io` `write_bytes` and `wchar` are the same before and after 3 s of silence
//! (a measurement over a quiet interval, not a timing assertion; the numbers are printed).
//! (b) group commit: 64 concurrent writers doing 20 PUTs each make
//! `pikv_storage_batches_total` grow by fewer batches than PUTs (the average entries per
//! batch is printed). (c) a restart replays nothing: after writes and a clean restart the
//! new process has committed exactly one batch once it is ready (the new leader's no-op entry,
//! committed at start: src/node/mod.rs `Node::run`), and one entry.
//!
//! How: a real pikv process (these are pikv's own counters, so whatever `PIKV_IT_TARGET`
//! says) on a free loopback port with a temp data dir; deadlines bound every request.

use crate::support::{http, Kind, Server};
use std::sync::Arc;
use std::time::Duration;

fn proc_io(pid: u32) -> (u64, u64) {
    let text = std::fs::read_to_string(format!("/proc/{pid}/io"))
        .unwrap_or_else(|e| panic!("read /proc/{pid}/io: {e}"));
    let field = |name: &str| -> u64 {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {name} in /proc/{pid}/io:\n{text}"))
    };
    (field("write_bytes:"), field("wchar:"))
}

#[test]
fn an_idle_server_writes_nothing() {
    let s = Server::start(Kind::Pikv);
    for i in 0..10 {
        assert_eq!(s.put(&format!("/v2/keys/idle/{i}"), "value=x").status, 201);
    }
    // Let the last responses and any deferred work settle, then measure a silent interval.
    std::thread::sleep(Duration::from_millis(500));
    let before = proc_io(s.pid());
    std::thread::sleep(Duration::from_secs(3));
    let after = proc_io(s.pid());
    eprintln!(
        "disk: idle 3 s: write_bytes {} -> {}, wchar {} -> {}",
        before.0, after.0, before.1, after.1
    );
    assert_eq!(
        after, before,
        "(write_bytes, wchar) changed while idle with no TTL keys"
    );
}

#[test]
fn concurrent_writes_share_commits() {
    const WRITERS: usize = 64;
    const PUTS: usize = 20;
    let s = Arc::new(Server::start(Kind::Pikv));
    let batches0 = s.metric("pikv_storage_batches_total");
    let entries0 = s.metric("pikv_storage_entries_total");
    let barrier = Arc::new(std::sync::Barrier::new(WRITERS));
    let handles: Vec<_> = (0..WRITERS)
        .map(|w| {
            let (port, barrier) = (s.client_port, barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                for i in 0..PUTS {
                    let r = http::put(port, &format!("/v2/keys/gc/w{w}/k{i}"), "value=v");
                    assert_eq!(r.status, 201, "writer {w} put {i}: {}", r.dump());
                }
            })
        })
        .collect();
    for h in handles {
        h.join().expect("writer");
    }
    let batches = s.metric("pikv_storage_batches_total") - batches0;
    let entries = s.metric("pikv_storage_entries_total") - entries0;
    let puts = (WRITERS * PUTS) as u64;
    eprintln!(
        "disk: {puts} PUTs from {WRITERS} writers: {batches} batches, {entries} entries, {:.1} entries per batch",
        entries as f64 / batches.max(1) as f64
    );
    assert_eq!(entries, puts, "one log entry per PUT");
    assert!(
        batches < puts,
        "no group commit: {batches} batches for {puts} PUTs"
    );
}

#[test]
fn a_restart_replays_nothing() {
    let mut s = Server::start(Kind::Pikv);
    for i in 0..50 {
        assert_eq!(s.put(&format!("/v2/keys/r/{i}"), "value=x").status, 201);
    }
    let index = s.get("/v2/keys/r").etcd_index();
    s.restart();
    // Ready (the handle waited for /health); nothing was asked of it since.
    let batches = s.metric("pikv_storage_batches_total");
    let entries = s.metric("pikv_storage_entries_total");
    eprintln!("disk: after a clean restart: {batches} batches, {entries} entries");
    assert_eq!(
        (batches, entries),
        (1, 1),
        "after a restart only the new leader's no-op is committed"
    );
    let r = s.get("/v2/keys/r/49");
    assert_eq!(r.status, 200, "{}", r.dump());
    assert_eq!(r.etcd_index(), index, "the etcd index survived unchanged");
}
