//! `Cluster`: N pikv (or etcd) members on free loopback ports, bootstrapped statically from
//! one `--initial-cluster` the way the tutorials start boards, each with its own temp data
//! dir. Members are started together (none is ready before a quorum runs) and killed by pid
//! on drop. [`Cluster::start_in`] places the members in the network namespaces of a
//! [`Lab`] instead, one member per namespace, so that a test can unplug a member's cable.

use super::netns::Lab;
use super::process::{Kind, Server};
use std::time::{Duration, Instant};

/// The members of one cluster, in name order (`m0`, `m1`, ...).
pub struct Cluster {
    pub members: Vec<Server>,
    /// The namespaces the members run in, if any. Declared after `members`, so it is
    /// dropped after the processes are killed.
    pub net: Option<Lab>,
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
        Cluster { members, net: None }
    }

    /// Starts one member per namespace of `lab` (member `i` named `m<i>`, client URL
    /// `http://<client ip>:2379`, peer URL `http://<peer ip>:2380`) with `extra` flags, and
    /// waits until every one is ready.
    pub fn start_in(lab: Lab, kind: Kind, extra: &[&str]) -> Cluster {
        let initial: Vec<String> = (0..lab.len())
            .map(|i| format!("m{i}=http://{}:2380", lab.peer_ip(i)))
            .collect();
        let initial = initial.join(",");
        let mut extra: Vec<&str> = extra.to_vec();
        extra.extend(["--initial-cluster-token", "it-netns"]);
        let members = (0..lab.len())
            .map(|i| {
                let mut s = Server::prepare(kind, &format!("m{i}"), (2379, 2380), &extra);
                s.initial_cluster = Some(initial.clone());
                s.client_host = lab.client_ip(i);
                s.peer_host = lab.peer_ip(i);
                s.netns = Some(lab.ns(i).to_string());
                s
            })
            .collect();
        let mut c = Cluster {
            members,
            net: Some(lab),
        };
        c.spawn_all_and_wait();
        c
    }

    /// Starts every (prepared) member, then waits until each is ready; panics with the logs.
    pub fn spawn_all_and_wait(&mut self) {
        for m in &mut self.members {
            m.spawn_now();
        }
        if let Err(e) = self.try_wait_all_ready() {
            panic!("cluster did not start: {e}");
        }
        // `ip netns exec` execs the server: the pid the harness signals is the server's.
        if std::env::var_os("PIKV_IT_RUNNER").is_none() {
            for m in self.members.iter().filter(|m| m.netns.is_some()) {
                let program = std::fs::canonicalize(m.kind.program()).unwrap();
                assert_eq!(m.exe(), Some(program), "{}'s pid runs the server", m.name);
            }
        }
    }

    /// The lab the members run in (panics for a loopback cluster).
    pub fn lab(&self) -> &Lab {
        self.net.as_ref().expect("a cluster in network namespaces")
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
                && m.try_request(
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
