//! The quota (`--quota-backend-bytes`, pikv's LMDB map size) filling up.
//!
//! What it proves: on a pikv started with an 8 MiB quota, 100-KiB writes succeed until one
//! fails with etcd's "database space exceeded" shape (HTTP 500, errorCode 300, exact JSON);
//! afterwards further writes fail the same way, reads and deletes still work, every write
//! acknowledged before is readable with its value, and after a graceful restart and after a
//! `kill -9` restart every acknowledged (and not deleted) key is there with its value while
//! the deleted ones stay deleted.
//!
//! How: a real pikv process on a free port with a temp data dir. This is pikv's own
//! behaviour (etcd 3.4's v2 store is not limited by its backend quota), so the test runs
//! pikv whatever `PIKV_IT_TARGET` says. The check that deleting keys makes room for new
//! writes is `deletes_make_room_again` (near the quota pikv compacts its applied log and
//! keeps only the newest entries, whose records hold the persisted watch history).

use crate::support::{http, Kind, Server};

const QUOTA: &str = "8388608";
const VALUE_BYTES: usize = 100 * 1024;
const NO_SPACE: &str = r#"{"errorCode":300,"message":"Raft Internal Error","cause":"etcdserver: mvcc: database space exceeded","index":0}"#;

fn value_for(i: usize) -> String {
    let mut v = format!("v{i}-");
    while v.len() < VALUE_BYTES {
        v.push(char::from(b'a' + (i % 26) as u8));
    }
    v
}

fn put_value(s: &Server, i: usize) -> http::Response {
    s.put(
        &format!("/v2/keys/q/k{i}"),
        &http::form(&[("value", &value_for(i))]),
    )
}

fn assert_no_space(r: &http::Response, what: &str) {
    assert_eq!(r.status, 500, "{what}: {}", r.dump());
    assert_eq!(r.text().trim_end(), NO_SPACE, "{what}");
    assert_eq!(r.header("Content-Type"), Some("application/json"), "{what}");
}

/// Writes 100-KiB values until one is refused; returns the acknowledged indexes.
fn fill(s: &Server) -> Vec<usize> {
    let mut acked = Vec::new();
    for i in 0..1000 {
        let r = put_value(s, i);
        if r.status == 201 {
            acked.push(i);
            continue;
        }
        assert_no_space(&r, &format!("write {i}, the first refused one"));
        eprintln!(
            "quota: {QUOTA} bytes: {} writes of {VALUE_BYTES} bytes acknowledged, used {} bytes",
            acked.len(),
            s.metric("pikv_storage_used_bytes")
        );
        return acked;
    }
    panic!("1000 writes of 100 KiB fit in an {QUOTA}-byte quota");
}

fn check_present(s: &Server, keys: &[usize], when: &str) {
    for &i in keys {
        let r = s.get(&format!("/v2/keys/q/k{i}"));
        assert_eq!(r.status, 200, "{when}: k{i}: {}", r.dump());
        assert!(
            r.json()["node"]["value"] == value_for(i).as_str(),
            "{when}: k{i} has another value"
        );
    }
}

#[test]
fn a_full_quota_refuses_writes_and_keeps_everything_committed() {
    let mut s = Server::start_with_args(Kind::Pikv, "a", &["--quota-backend-bytes", QUOTA]);
    let acked = fill(&s);
    // The refused write's batch changed nothing, so the store counters do not count it.
    let stats = s.get("/v2/stats/store").json();
    assert_eq!(stats["setsSuccess"], acked.len() as u64, "{stats}");
    assert!(acked.len() >= 5, "only {} writes fit", acked.len());
    assert_eq!(
        acked,
        (0..acked.len()).collect::<Vec<_>>(),
        "writes fail only once full"
    );

    // Still full: the next 100-KiB write is refused the same way, and nothing half-done
    // shows up. (pikv refuses a write by its size against the room left, so a small write
    // may still fit, where etcd's NOSPACE alarm would refuse it too.)
    let next = acked.len();
    assert_no_space(&put_value(&s, next), "a second write when full");
    assert_eq!(s.get(&format!("/v2/keys/q/k{next}")).status, 404);

    // Reads work and every acknowledged write is there with its value.
    check_present(&s, &acked, "when full");
    let listing = s.get("/v2/keys/q");
    assert_eq!(listing.status, 200);
    assert_eq!(
        listing.json()["node"]["nodes"].as_array().map(Vec::len),
        Some(acked.len())
    );

    // Deletes work.
    let (deleted, kept): (Vec<usize>, Vec<usize>) = acked.iter().partition(|i| *i % 2 == 0);
    for &i in &deleted {
        let r = s.delete(&format!("/v2/keys/q/k{i}"));
        assert_eq!(r.status, 200, "delete k{i} when full: {}", r.dump());
    }
    check_present(&s, &kept, "after deletes");

    for restart in ["graceful restart", "kill -9 and restart"] {
        if restart == "graceful restart" {
            s.restart();
        } else {
            s.crash_restart();
        }
        check_present(&s, &kept, restart);
        for &i in &deleted {
            assert_eq!(
                s.get(&format!("/v2/keys/q/k{i}")).status,
                404,
                "{restart}: deleted k{i} is back"
            );
        }
    }
}

#[test]
fn deletes_make_room_again() {
    let s = Server::start_with_args(Kind::Pikv, "a", &["--quota-backend-bytes", QUOTA]);
    let acked = fill(&s);
    for &i in &acked {
        assert_eq!(s.delete(&format!("/v2/keys/q/k{i}")).status, 200);
    }
    let r = put_value(&s, 0);
    assert_eq!(
        r.status,
        201,
        "after deleting all {} keys, a write is still refused (used {} of {QUOTA} bytes): {}",
        acked.len(),
        s.metric("pikv_storage_used_bytes"),
        r.dump()
    );
}
