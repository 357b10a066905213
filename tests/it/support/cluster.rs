//! `Cluster`: N pikv (or etcd) members on free loopback ports, bootstrapped statically from
//! one `--initial-cluster` the way the tutorials start boards, each with its own temp data
//! dir. Members are started together (none is ready before a quorum runs) and killed by pid
//! on drop.

use super::http;
use super::process::{Kind, Server};
use std::time::{Duration, Instant};

/// The members of one cluster, in name order (`m0`, `m1`, ...).
pub struct Cluster {
    pub members: Vec<Server>,
}

impl Cluster {
    /// Starts `n` members with `extra` flags and waits until every one is ready (has a
    /// leader and answers `/health`).
    pub fn start(kind: Kind, n: usize, extra: &[&str]) -> Cluster {
        Cluster::start_configured(kind, n, extra, |_| {})
    }

    /// Like `start`, with `configure` called on every member before it is spawned (e.g. to
    /// set its `extra_env`, which every later start of that member keeps).
    pub fn start_configured(
        kind: Kind,
        n: usize,
        extra: &[&str],
        configure: impl Fn(&mut Server),
    ) -> Cluster {
        let mut last = String::new();
        for _attempt in 0..3 {
            let mut c = Cluster::prepare(kind, n, extra);
            for m in &mut c.members {
                configure(m);
                m.spawn_now();
            }
            match c.try_wait_all_ready() {
                Ok(()) => return c,
                Err(e)
                    if c.members
                        .iter()
                        .any(|m| m.log().contains("address already in use")) =>
                {
                    last = e
                }
                Err(e) => c.members[0].fail(&e),
            }
        }
        panic!("could not start a {n}-member cluster: {last}");
    }

    /// The members, configured but not started.
    pub fn prepare(kind: Kind, n: usize, extra: &[&str]) -> Cluster {
        let ports = distinct_free_ports(n);
        let initial: Vec<String> = ports
            .iter()
            .enumerate()
            .map(|(i, (_, p))| format!("m{i}=http://127.0.0.1:{p}"))
            .collect();
        let initial = initial.join(",");
        let mut extra: Vec<&str> = extra.to_vec();
        extra.extend(["--initial-cluster-token", "it-cluster"]);
        let members = ports
            .iter()
            .enumerate()
            .map(|(i, ports)| {
                let mut s = Server::prepare(kind, &format!("m{i}"), *ports, &extra);
                s.initial_cluster = Some(initial.clone());
                s
            })
            .collect();
        Cluster { members }
    }

    fn try_wait_all_ready(&mut self) -> Result<(), String> {
        for m in &mut self.members {
            m.try_wait_ready()
                .map_err(|e| format!("{}: {e}\n{}", m.name, tail(&m.log())))?;
        }
        Ok(())
    }

    /// The member that says it leads (`/v2/stats/self`), among those running and
    /// answering; `None` when none does.
    pub fn leader(&self) -> Option<usize> {
        self.members.iter().position(|m| {
            m.is_running()
                && http::try_request(
                    m.client_port,
                    "GET",
                    "/v2/stats/self",
                    &[],
                    b"",
                    Duration::from_millis(500),
                )
                .is_ok_and(|r| r.status == 200 && r.text().contains("\"StateLeader\""))
        })
    }

    /// Waits up to `limit` for a leader that a majority of the running members agree on.
    pub fn wait_leader(&self, limit: Duration) -> usize {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(l) = self.leader() {
                return l;
            }
            if Instant::now() > deadline {
                let logs: Vec<String> = self
                    .members
                    .iter()
                    .map(|m| format!("---- {}\n{}", m.name, tail(&m.log())))
                    .collect();
                panic!("no leader within {limit:?}\n{}", logs.join("\n"));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Every member's log, for a failure message.
    pub fn logs(&self) -> String {
        self.members
            .iter()
            .map(|m| format!("---- {}\n{}", m.name, tail(&m.log())))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

fn tail(log: &str) -> String {
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(60)..].join("\n")
}

/// `n` (client, peer) port pairs, all distinct and never handed out before.
fn distinct_free_ports(n: usize) -> Vec<(u16, u16)> {
    super::fresh_ports(2 * n)
        .chunks(2)
        .map(|p| (p[0], p[1]))
        .collect()
}
