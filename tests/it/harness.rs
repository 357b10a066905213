//! Tests of the process harness itself, run against the server under test.
//!
//! What it proves: `Server` starts the program with etcd's flags on free ports, waits for
//! `/health`, reports the cluster id that spec §10.6 derives from its peer URL, keeps data
//! across a graceful restart and a `kill -9`, and the raw client sees a live watch's
//! headers before its event arrives (status and chunked framing first, body later).

use crate::support::{self, http, Server};
use std::time::{Duration, Instant};

#[test]
fn server_starts_restarts_and_keeps_data() {
    let mut s = Server::start(support::target());
    let h = s.get("/health");
    assert_eq!(h.status, 200);
    assert_eq!(h.text(), "{\"health\":\"true\"}");
    let r = s.put("/v2/keys/h/k", "value=v1");
    assert_eq!(r.status, 201, "{}", r.dump());
    let (_, cluster) = s.expected_ids();
    assert_eq!(
        r.header("X-Etcd-Cluster-Id"),
        Some(cluster.as_str()),
        "{}",
        r.dump()
    );
    let pid = s.pid();
    s.restart();
    assert_ne!(pid, s.pid(), "restart started a new process");
    assert_eq!(s.get("/v2/keys/h/k").json()["node"]["value"], "v1");
    s.crash_restart();
    let j = s.get("/v2/keys/h/k").json();
    assert_eq!(j["node"]["value"], "v1");
    assert_eq!(
        j["node"]["modifiedIndex"],
        r.json()["node"]["modifiedIndex"]
    );
}

#[test]
fn live_watch_headers_arrive_before_the_event() {
    let s = Server::start(support::target());
    let mut w = http::start(
        s.client_port,
        "GET",
        "/v2/keys/lw?wait=true",
        &[],
        b"",
        Duration::from_secs(15),
    )
    .expect("start watch");
    assert_eq!(w.status, 200);
    assert!(
        w.is_chunked(),
        "watch responses are chunked: {:?}",
        w.headers
    );
    let idx: u64 = w.header("X-Etcd-Index").unwrap().parse().unwrap();
    let put = s.put("/v2/keys/lw", "value=now");
    assert_eq!(put.modified_index(), idx + 1);
    let deadline = Instant::now() + Duration::from_secs(15);
    let chunk = w
        .next_chunk(deadline)
        .expect("event chunk")
        .expect("one chunk");
    let ev: serde_json::Value = serde_json::from_slice(&chunk).unwrap();
    assert_eq!(ev["action"], "set");
    assert_eq!(ev["node"]["value"], "now");
    assert!(chunk.ends_with(b"\n"));
    assert!(
        w.next_chunk(deadline).unwrap().is_none(),
        "the watch ends after one event"
    );
}
