//! 500 concurrent watchers parked on one server.
//!
//! What it proves: a server holds 500 simultaneous `?wait=true` long polls (raw TCP, half on
//! distinct keys, half on one shared key), reports them in `/v2/stats/store` `watchers`,
//! and wakes every one of them with the right event after the writes. The server's VmRSS
//! before and with the 500 parked is printed (eprintln!) for the README; nothing is asserted
//! about it. Deadlines bound the waits; nothing is timed.

use crate::support::{self, http, Server};
use std::time::{Duration, Instant};

const N: usize = 500;

/// Opens a watch (`target` has `wait=true`) and checks its head arrived with 200.
fn park(s: &Server, target: &str, limit: Duration) -> http::Pending {
    let p = http::start(s.client_port, "GET", target, &[], b"", limit)
        .unwrap_or_else(|e| panic!("watch {target}: {e}"));
    assert_eq!(p.status, 200, "watch {target}");
    p
}

#[test]
fn five_hundred_parked_watchers_all_get_their_event() {
    let s = Server::start(support::target());
    // some data so the server is warm, and a baseline RSS
    for i in 0..10 {
        assert_eq!(s.put(&format!("/v2/keys/warm/{i}"), "value=x").status, 201);
    }
    let rss_before = s.rss_kib();
    let base = s.get("/v2/keys/").etcd_index();

    let mut parked = Vec::with_capacity(N);
    for i in 0..N {
        let target = if i % 2 == 0 {
            format!("/v2/keys/w/k{i}?wait=true")
        } else {
            "/v2/keys/w/same?wait=true".to_string()
        };
        let p = park(&s, &target, Duration::from_secs(60));
        assert!(p.is_chunked(), "watcher {i}: {:?}", p.headers);
        assert_eq!(
            p.header("X-Etcd-Index"),
            Some(base.to_string().as_str()),
            "watcher {i}"
        );
        parked.push((i, p));
    }
    let stats = s.get("/v2/stats/store").json();
    assert_eq!(
        stats["watchers"], N as u64,
        "parked watchers in /v2/stats/store: {stats}"
    );
    let rss_parked = s.rss_kib();
    eprintln!(
        "watchers: {} VmRSS before {:?} KiB, with {N} parked {:?} KiB (delta {:?} KiB)",
        s.kind.label(),
        rss_before,
        rss_parked,
        rss_parked.zip(rss_before).map(|(a, b)| a as i64 - b as i64)
    );

    // Wake them: one write per distinct key, one write for the shared key.
    let mut expect_index = std::collections::HashMap::new();
    for i in (0..N).step_by(2) {
        let r = s.put(&format!("/v2/keys/w/k{i}"), &format!("value=v{i}"));
        assert_eq!(r.status, 201);
        expect_index.insert(format!("/w/k{i}"), r.modified_index());
    }
    let r = s.put("/v2/keys/w/same", "value=shared");
    expect_index.insert("/w/same".to_string(), r.modified_index());

    let deadline = Instant::now() + Duration::from_secs(60);
    for (i, p) in parked {
        let resp = p
            .finish(deadline)
            .unwrap_or_else(|e| panic!("watcher {i} got no event: {e}"));
        let j = resp.json();
        let (key, value) = if i % 2 == 0 {
            (format!("/w/k{i}"), format!("v{i}"))
        } else {
            ("/w/same".to_string(), "shared".to_string())
        };
        assert_eq!(j["action"], "set", "watcher {i}: {j}");
        assert_eq!(j["node"]["key"], key.as_str(), "watcher {i}: {j}");
        assert_eq!(j["node"]["value"], value.as_str(), "watcher {i}: {j}");
        assert_eq!(
            j["node"]["modifiedIndex"], expect_index[&key],
            "watcher {i}: {j}"
        );
    }
    let stats = s.get("/v2/stats/store").json();
    assert_eq!(
        stats["watchers"], 0,
        "all watchers removed after their event: {stats}"
    );
}

/// Watchers whose clients went away must leave the hub: stream and plain watchers are
/// opened, their connections dropped, and after a few writes to the watched keys
/// `/v2/stats/store` reports no watcher (a deadline bounds the wait, nothing is timed).
#[test]
fn watchers_of_departed_clients_are_dropped() {
    let s = Server::start(support::target());
    let mut parked = Vec::new();
    for i in 0..10 {
        let target = if i % 2 == 0 {
            "/v2/keys/gone?wait=true&stream=true".to_string()
        } else {
            format!("/v2/keys/gone{i}?wait=true")
        };
        parked.push(park(&s, &target, Duration::from_secs(30)));
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    while s.get("/v2/stats/store").json()["watchers"] != 10u64 {
        assert!(Instant::now() < deadline, "watchers never reached 10");
        std::thread::sleep(Duration::from_millis(50));
    }
    drop(parked);
    let mut n = 0;
    loop {
        // Writes give a leaked stream watcher the chance to show up in the count.
        assert_eq!(
            s.put("/v2/keys/gone", &format!("value={n}")).status / 100,
            2
        );
        n += 1;
        let watchers = s.get("/v2/stats/store").json()["watchers"].clone();
        if watchers == 0u64 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "watchers still counted after their clients left: {watchers}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

// On SIGTERM every parked watch, long poll and stream alike, gets its terminating chunk
// (an empty body, as etcd ends them) before the process exits: a client sees a finished
// response, not a cut connection.
#[test]
fn watches_end_with_their_last_chunk_on_sigterm() {
    let mut s = Server::start(support::target());
    let mut parked = Vec::new();
    for target in [
        "/v2/keys/bye?wait=true",
        "/v2/keys/bye?wait=true&stream=true",
        "/v2/keys/?wait=true&recursive=true",
    ] {
        let p = park(&s, target, Duration::from_secs(30));
        assert!(p.is_chunked(), "{target}");
        parked.push((target, p));
    }
    let stats = s.get("/v2/stats/store").json();
    assert_eq!(stats["watchers"], 3, "{stats}");
    s.terminate();
    let deadline = Instant::now() + Duration::from_secs(10);
    for (target, p) in parked {
        let r = p
            .finish(deadline)
            .unwrap_or_else(|e| panic!("{target}: response cut instead of ended: {e}"));
        assert!(
            r.body.is_empty(),
            "{target}: {:?}",
            String::from_utf8_lossy(&r.body)
        );
    }
    let status = s
        .wait_exit(Duration::from_secs(10))
        .expect("pikv did not exit");
    assert!(status.success(), "exit status {status:?}");
}
