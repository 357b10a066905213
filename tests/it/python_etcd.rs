//! python-etcd (the PyPI client most Python users have) against the server under test.
//!
//! What it proves: read, write, test-and-set (prevValue, prevIndex, prevExist), delete,
//! directories, in-order keys, refresh, watch (a parked `wait=true` in a thread woken by a
//! write), TTL expiry and the `expire` event, `client.leader`, `client.machines`,
//! `client.members`, `client.version` and the stats calls all behave as python-etcd expects
//! of etcd. How: `tests/it/py/client_suite.py` asserts each step; this test runs it against a
//! fresh server and checks its exit status and that every section reported `ok`.

use crate::support::{self, Server};
use std::process::Command;

#[test]
fn python_etcd_client_suite() {
    support::require_tool("python3");
    let probe = Command::new("python3")
        .args(["-c", "import etcd"])
        .output()
        .expect("run python3");
    assert!(
        probe.status.success(),
        "python-etcd is not installed (run scripts/setup.sh): {}",
        String::from_utf8_lossy(&probe.stderr)
    );
    let s = Server::start(support::target());
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/it/py/client_suite.py");
    let out = Command::new("python3")
        .arg(script)
        .arg(s.client_port.to_string())
        .output()
        .expect("run client_suite.py");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "client_suite.py failed ({}):\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
        out.status
    );
    for section in [
        "write/read",
        "test-and-set",
        "delete",
        "directories",
        "in-order",
        "watch",
        "ttl",
        "cluster info",
    ] {
        assert!(
            stdout
                .lines()
                .any(|l| l.starts_with(&format!("ok {section}"))),
            "section {section:?} did not report ok:\n{stdout}"
        );
    }
    assert_eq!(stdout.lines().last(), Some("ALL OK"), "{stdout}");
}
