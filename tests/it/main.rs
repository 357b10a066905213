//! pikv's process-level integration tests: one test binary (`cargo test --test it`).
//!
//! Every test starts real server processes (pikv from `CARGO_BIN_EXE_pikv`, or the real
//! etcd 3.4 with `--enable-v2`) on free loopback ports with temp data dirs, drives them with
//! real clients (a raw HTTP client, curl, etcdctl, python-etcd) and kills them by pid when done.
//! The partition and Jepsen-style tests run members in network namespaces they create
//! themselves (`support::netns`; as root — elsewhere they print `SKIPPED:`, and fail under CI).
//!
//! `PIKV_IT_TARGET` picks the server under test: unset or `pikv` → pikv; `etcd` → etcd
//! (ORACLE mode: the same assertions hold for the reference, which validates the tests
//! themselves). The differential test always starts etcd as the reference; in ORACLE mode it
//! compares etcd with a second etcd.

#[allow(dead_code)]
mod support;

mod backup;
mod bad_input;
mod clock_jump;
mod cluster;
mod cluster_clients;
mod ctl;
mod curl_tutorial;
mod data_dir;
mod differential;
mod disk;
mod durability;
mod etcdctl;
mod harness;
mod jepsen;
mod join;
#[path = "../sim/linearizability.rs"]
mod linearizability;
mod membership;
mod partition;
mod python_etcd;
mod quota;
mod snapshots;
mod systemd;
mod watchers;
