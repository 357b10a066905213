//! Joining a running cluster with an empty data dir, and what the peer port answers to a
//! member that joins.
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
use crate::node::members::UnappliedAdds;
use crate::server::ServerError;
use crate::storage::lmdb::LmdbStorage;
use crate::storage::{Identity, MemberRecord};
use crate::transport::tcp::PeerHttp;
use serde::{Deserialize, Serialize};
use std::io::{BufWriter, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Peer-port HTTP requests served at once, at most; more are closed unanswered (a joiner
/// retries).
const PEER_HTTP_MAX: usize = 4;
/// How long a joiner keeps trying its peers (the cluster may be electing, or the member
/// that was just added may not have applied the change yet).
const JOIN_DEADLINE: Duration = Duration::from_secs(60);
/// How long one peer may take to answer, and to send each part of a snapshot.
const PEER_TIMEOUT: Duration = Duration::from_secs(5);

/// One member as etcd's peer `GET /members` lists it.
#[derive(Serialize, Deserialize, Debug, Clone)]
struct PeerMember {
    id: String,
    name: String,
    #[serde(rename = "peerURLs")]
    peer_urls: Vec<String>,
    #[serde(rename = "clientURLs", default)]
    client_urls: Vec<String>,
}

/// What the peer port answers to HTTP: `/members` and `/raft/snapshot`, each on a thread of
/// its own (a snapshot takes a while; the peers thread must not wait for it).
pub fn peer_http(storage: Arc<LmdbStorage>, cluster_id: u64, unapplied: UnappliedAdds) -> PeerHttp {
    let busy = Arc::new(AtomicUsize::new(0));
    PeerHttp(Arc::new(move |target: &str, stream: TcpStream| {
        if busy.fetch_add(1, Ordering::SeqCst) >= PEER_HTTP_MAX {
            busy.fetch_sub(1, Ordering::SeqCst);
            return;
        }
        let storage = Arc::clone(&storage);
        let unapplied = Arc::clone(&unapplied);
        let target = target.to_string();
        let done = Arc::clone(&busy);
        let spawned = std::thread::Builder::new()
            .name("peer-http".into())
            .spawn(move || {
                if let Err(e) = answer(&storage, &unapplied, cluster_id, &target, stream) {
                    log::warn!("answering {target} on the peer port: {e}");
                }
                done.fetch_sub(1, Ordering::SeqCst);
            });
        if let Err(e) = spawned {
            busy.fetch_sub(1, Ordering::SeqCst);
            log::warn!("cannot start a thread for a peer request: {e}");
        }
    }))
}

fn answer(
    storage: &LmdbStorage,
    unapplied: &UnappliedAdds,
    cluster_id: u64,
    target: &str,
    stream: TcpStream,
) -> Result<(), String> {
    stream
        .set_nonblocking(false)
        .and_then(|()| stream.set_write_timeout(Some(PEER_TIMEOUT)))
        .map_err(|e| e.to_string())?;
    let peer = stream
        .peer_addr()
        .map_or_else(|_| "?".to_string(), |a| a.to_string());
    let mut out = BufWriter::new(stream);
    let head = |status: &str, kind: &str, length: Option<usize>| {
        let length = length.map_or(String::new(), |n| format!("Content-Length: {n}\r\n"));
        format!(
            "HTTP/1.1 {status}\r\nContent-Type: {kind}\r\nX-Etcd-Cluster-ID: {cluster_id:x}\r\n{length}Connection: close\r\n\r\n"
        )
    };
    let path = target.split('?').next().unwrap_or_default();
    match path {
        "/members" => {
            let body = members_json(storage, unapplied).map_err(|e| e.to_string())?;
            let reply = head("200 OK", "application/json", Some(body.len()));
            out.write_all(reply.as_bytes())
                .and_then(|()| out.write_all(&body))
                .and_then(|()| out.flush())
                .map_err(|e| e.to_string())
        }
        "/raft/snapshot" => {
            let reply = head("200 OK", "application/octet-stream", None);
            out.write_all(reply.as_bytes()).map_err(|e| e.to_string())?;
            let header = storage
                .write_snapshot(cluster_id, &mut out)
                .map_err(|e| e.to_string())?;
            log::info!(
                "sent a snapshot of the state at index {} to {peer}",
                header.index
            );
            Ok(())
        }
        _ => {
            let body = b"404 page not found\n";
            let reply = head(
                "404 Not Found",
                "text/plain; charset=utf-8",
                Some(body.len()),
            );
            out.write_all(reply.as_bytes())
                .and_then(|()| out.write_all(body))
                .and_then(|()| out.flush())
                .map_err(|e| e.to_string())
        }
    }
}

fn members_json(
    storage: &LmdbStorage,
    unapplied: &UnappliedAdds,
) -> Result<Vec<u8>, crate::storage::StorageError> {
    let view = storage.read()?;
    let mut records = view.members()?;
    if let Ok(added) = unapplied.lock() {
        for r in added.iter() {
            if !records.iter().any(|x| x.id == r.id) {
                records.push(r.clone());
            }
        }
    }
    let published = crate::store::V2Store::members(&view)?;
    let list: Vec<PeerMember> = records
        .iter()
        .map(|r| {
            let (name, client_urls) = published.get(&r.id).cloned().unwrap_or_default();
            let mut peer_urls = r.peer_urls.clone();
            peer_urls.sort();
            PeerMember {
                id: format!("{:x}", r.id),
                name: if name.is_empty() {
                    r.name.clone()
                } else {
                    name
                },
                peer_urls,
                client_urls,
            }
        })
        .collect();
    serde_json::to_vec(&list).map_err(|e| {
        crate::storage::StorageError::new(
            "list the members",
            "",
            crate::storage::StorageErrorKind::Io(e.to_string()),
        )
    })
}

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
