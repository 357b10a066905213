//! Joining a running cluster with an empty data dir.
//!
//! A member started with `--initial-cluster-state existing` (after `etcdctl member add`)
//! asks the peers of its `--initial-cluster`, on their peer URLs as etcd does, who it is
//! (`GET /members`: the member whose peer URLs are the ones it advertises, and the cluster
//! id in `X-Etcd-Cluster-ID`), then fetches their applied state (`GET /raft/snapshot`, the
//! stream of `storage::lmdb::snapshot`) and installs it. It then starts like any restarted
//! member: its log begins after the snapshot, and the leader sends it what followed.
//!
//! It must not: join a cluster that does not list it (it would only be refused), or leave a
//! half-installed data dir (the install is one transaction).

use crate::cli::config::ServerConfig;
use crate::peer_http::{PeerMember, PEER_TIMEOUT};
use crate::server::ServerError;
use crate::storage::lmdb::LmdbStorage;
use crate::storage::{Identity, MemberRecord};
use std::time::{Duration, Instant};

/// How long a joiner keeps trying its peers (the cluster may be electing, or the member
/// that was just added may not have applied the change yet).
const JOIN_DEADLINE: Duration = Duration::from_secs(60);

/// Who this member is in the cluster it joins: asked of the peers of `--initial-cluster`,
/// then the state fetched from one of them and installed into `storage`. Returns the
/// identity and the members as of the installed state.
pub fn join_existing(
    config: &ServerConfig,
    storage: &LmdbStorage,
) -> Result<(Identity, Vec<MemberRecord>), ServerError> {
    let mut mine = config.initial_advertise_peer_urls.clone();
    mine.sort();
    let peers: Vec<&str> = config
        .initial_cluster
        .iter()
        .map(|(_, url)| url.as_str())
        .filter(|url| !mine.iter().any(|m| m == url))
        .collect();
    if peers.is_empty() {
        return Err(ServerError(
            "--initial-cluster-state existing: --initial-cluster names no other member to join"
                .into(),
        ));
    }
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_connect(Some(PEER_TIMEOUT))
        .timeout_recv_response(Some(PEER_TIMEOUT))
        .timeout_recv_body(Some(PEER_TIMEOUT))
        .build()
        .new_agent();
    let deadline = Instant::now() + JOIN_DEADLINE;
    let mut last = String::new();
    loop {
        for peer in &peers {
            match join_through(&agent, peer, &mine, storage) {
                Ok(found) => return Ok(found),
                Err(Fatal(e)) => return Err(ServerError(e)),
                Err(Retry(e)) => {
                    if e != last {
                        log::warn!("joining through {peer}: {e}");
                    }
                    last = e;
                }
            }
        }
        if Instant::now() > deadline {
            return Err(ServerError(format!(
                "could not join the cluster through {} within {JOIN_DEADLINE:?}: {last}",
                peers.join(", ")
            )));
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

enum JoinError {
    /// Worth another try, through this peer or another.
    Retry(String),
    /// Trying again will not help.
    Fatal(String),
}
use JoinError::{Fatal, Retry};

fn join_through(
    agent: &ureq::Agent,
    peer: &str,
    mine: &[String],
    storage: &LmdbStorage,
) -> Result<(Identity, Vec<MemberRecord>), JoinError> {
    let url = format!("{}/members", peer.trim_end_matches('/'));
    let mut resp = agent.get(&url).call().map_err(|e| Retry(e.to_string()))?;
    if resp.status() != 200 {
        return Err(Retry(format!("{url}: status {}", resp.status())));
    }
    let cluster_id = resp
        .headers()
        .get("X-Etcd-Cluster-ID")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| u64::from_str_radix(v, 16).ok())
        .ok_or_else(|| Retry(format!("{url}: no X-Etcd-Cluster-ID")))?;
    let body = resp
        .body_mut()
        .read_to_vec()
        .map_err(|e| Retry(format!("{url}: {e}")))?;
    let members: Vec<PeerMember> =
        serde_json::from_slice(&body).map_err(|e| Retry(format!("{url}: {e}")))?;
    let me = members.iter().find(|m| {
        let mut urls = m.peer_urls.clone();
        urls.sort();
        urls == mine
    });
    let Some(me) = me else {
        // The add may not be applied on this peer yet: another try, then a clear refusal.
        return Err(Retry(format!(
            "cluster {cluster_id:x} has no member with peer URLs {} (add it first: etcdctl member add <name> {})",
            mine.join(","),
            mine.join(",")
        )));
    };
    let member_id = u64::from_str_radix(&me.id, 16)
        .map_err(|_| Fatal(format!("{url}: member id {:?} is not hex", me.id)))?;
    let snapshot_url = format!("{}/raft/snapshot", peer.trim_end_matches('/'));
    let resp = agent
        .get(&snapshot_url)
        .call()
        .map_err(|e| Retry(e.to_string()))?;
    if resp.status() != 200 {
        return Err(Retry(format!("{snapshot_url}: status {}", resp.status())));
    }
    let mut reader = resp.into_body().into_reader();
    let identity = Identity {
        cluster_id,
        member_id,
    };
    let header = storage
        .install_snapshot(identity, &mut reader)
        .map_err(|e| Retry(format!("{snapshot_url}: {e}")))?;
    storage.sync().map_err(|e| Fatal(e.to_string()))?;
    // The WAL holds the Raft state from here on (as after a bootstrap), from the snapshot's
    // term: a joiner's vote is not used twice in it.
    let hard_state = crate::raft::HardState {
        term: header.term,
        vote: 0,
        commit: header.index,
    };
    crate::storage::wal::Wal::open(&storage.wal_dir())
        .and_then(|(mut wal, _)| wal.append(Some(hard_state), &[], true))
        .map_err(|e| Fatal(e.to_string()))?;
    log::info!(
        "joined cluster {cluster_id:x} as member {member_id:x}: installed the state at index {} from {peer}",
        header.index
    );
    Ok((identity, header.members))
}
