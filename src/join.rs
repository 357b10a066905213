//! Joining a running cluster with an empty data dir.
//!
//! Two ways in. etcd's: a member added with `POST /v2/members` and started with
//! `--initial-cluster-state existing` asks the peers of its `--initial-cluster`, on their
//! peer URLs as etcd does, who it is (`GET /members`: the member whose peer URLs are the
//! ones it advertises, and the cluster id in `X-Etcd-Cluster-ID`). pikv's `--join` (0.4's
//! `-peers`): the member asks any running member, on a client or a peer URL, for the
//! members, has itself added through a member's client URL, and goes on the same way.
//! Either way it then fetches a peer's applied state (`GET /raft/snapshot`, the stream of
//! `storage::lmdb::snapshot`) and installs it, and starts like any restarted member: its
//! log begins after the snapshot, and the leader sends it what followed.
//!
//! It must not: join a cluster that does not list it (it would only be refused), take the
//! place of a member that still has its data (another board with the same addresses), or
//! leave a half-installed data dir (the install is one transaction).

use crate::cli::config::ServerConfig;
use crate::peer_http::{PeerMember, PEER_TIMEOUT};
use crate::server::ServerError;
use crate::storage::lmdb::LmdbStorage;
use crate::storage::{Identity, MemberRecord};
use std::time::{Duration, Instant};

/// How long a joiner keeps trying its peers (the cluster may be electing, or the member
/// that was just added may not have applied the change yet).
const JOIN_DEADLINE: Duration = Duration::from_secs(60);
/// A membership change waits for the cluster to apply it (etcd's request timeout is 5 s
/// plus two election timeouts).
const CHANGE_TIMEOUT: Duration = Duration::from_secs(30);

fn agent(timeout: Duration) -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_connect(Some(PEER_TIMEOUT))
        .timeout_recv_response(Some(timeout))
        .timeout_recv_body(Some(timeout))
        .build()
        .new_agent()
}

fn sorted(urls: &[String]) -> Vec<String> {
    let mut urls = urls.to_vec();
    urls.sort();
    urls
}

/// Who this member is in the cluster it joins: asked of the peers of `--initial-cluster`,
/// then the state fetched from one of them and installed into `storage`. Returns the
/// identity and the members as of the installed state.
pub fn join_existing(
    config: &ServerConfig,
    storage: &LmdbStorage,
) -> Result<(Identity, Vec<MemberRecord>), ServerError> {
    let mine = sorted(&config.initial_advertise_peer_urls);
    let peers: Vec<String> = config
        .initial_cluster
        .iter()
        .map(|(_, url)| url.clone())
        .filter(|url| !mine.contains(url))
        .collect();
    if peers.is_empty() {
        return Err(ServerError(
            "--initial-cluster-state existing: --initial-cluster names no other member to join"
                .into(),
        ));
    }
    fetch_state(&peers, &mine, storage)
}

/// `--join`: has this member added to the cluster of the first of `config.join` that
/// answers (unless an earlier try already did), then fetches the state as
/// [`join_existing`] does. `None` when `--join` names only this member itself: it is the
/// first member, and bootstraps from `--initial-cluster` (0.4 started a machine whose
/// `-peers` listed only itself as a new cluster too).
pub fn join_by_asking(
    config: &ServerConfig,
    storage: &LmdbStorage,
) -> Result<Option<(Identity, Vec<MemberRecord>)>, ServerError> {
    let mine = sorted(&config.initial_advertise_peer_urls);
    let own = |u: &String| {
        let u = u.trim_end_matches('/');
        mine.iter()
            .chain(&config.advertise_client_urls)
            .any(|m| m == u)
    };
    let targets: Vec<String> = config.join.iter().filter(|u| !own(u)).cloned().collect();
    if targets.is_empty() {
        log::info!("--join names only this member: starting a new cluster from --initial-cluster");
        return Ok(None);
    }
    let agent = agent(CHANGE_TIMEOUT);
    let deadline = Instant::now() + JOIN_DEADLINE;
    let mut last = String::new();
    let peers = loop {
        match have_self_added(&agent, &targets, &mine, &config.name) {
            Ok(peers) => break peers,
            Err(Fatal(e)) => return Err(ServerError(e)),
            Err(Retry(e)) => {
                if e != last {
                    log::warn!("joining through {}: {e}", targets.join(", "));
                }
                last = e;
            }
        }
        if Instant::now() > deadline {
            return Err(ServerError(format!(
                "could not join a cluster through {} within {JOIN_DEADLINE:?}: {last}",
                targets.join(", ")
            )));
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    fetch_state(&peers, &mine, storage).map(Some)
}

/// The members as a running member lists them, and its client URL if that is what the
/// `--join` URL was.
struct Listing {
    members: Vec<PeerMember>,
    client: Option<String>,
}

// A peer URL answers etcd's peer `GET /members`, a client URL `GET /v2/members`; which one
// the user gave is not written anywhere, so both are tried.
fn list_members(agent: &ureq::Agent, target: &str) -> Result<Listing, String> {
    let base = target.trim_end_matches('/');
    let get = |path: &str| -> Result<Vec<u8>, String> {
        let url = format!("{base}{path}");
        let mut resp = agent.get(&url).call().map_err(|e| format!("{url}: {e}"))?;
        if resp.status() != 200 {
            return Err(format!("{url}: status {}", resp.status()));
        }
        resp.body_mut()
            .read_to_vec()
            .map_err(|e| format!("{url}: {e}"))
    };
    let peer_answer = get("/members");
    if let Ok(body) = &peer_answer {
        if let Ok(members) = serde_json::from_slice::<Vec<PeerMember>>(body) {
            return Ok(Listing {
                members,
                client: None,
            });
        }
    }
    #[derive(serde::Deserialize)]
    struct ClientListing {
        members: Vec<PeerMember>,
    }
    match get("/v2/members") {
        Ok(body) => serde_json::from_slice::<ClientListing>(&body)
            .map(|l| Listing {
                members: l.members,
                client: Some(base.to_string()),
            })
            .map_err(|e| format!("{base}/v2/members: {e}")),
        Err(e) => Err(match peer_answer {
            Err(p) => format!("{p}; {e}"),
            Ok(_) => e,
        }),
    }
}

// Has this member added (or finds it added by an earlier try) and returns the other
// members' peer URLs, to fetch the state from.
fn have_self_added(
    agent: &ureq::Agent,
    targets: &[String],
    mine: &[String],
    name: &str,
) -> Result<Vec<String>, JoinError> {
    let mut errors = Vec::new();
    let mut listing = None;
    for t in targets {
        match list_members(agent, t) {
            Ok(l) => {
                listing = Some(l);
                break;
            }
            Err(e) => errors.push(e),
        }
    }
    let Some(listing) = listing else {
        return Err(Retry(errors.join("; ")));
    };
    let mut clients: Vec<String> = listing.client.into_iter().collect();
    for m in &listing.members {
        for u in &m.client_urls {
            if !clients.contains(u) {
                clients.push(u.clone());
            }
        }
    }
    let others: Vec<String> = listing
        .members
        .iter()
        .filter(|m| sorted(&m.peer_urls) != mine)
        .flat_map(|m| m.peer_urls.clone())
        .collect();
    if let Some(taken) = others.iter().find(|u| mine.contains(u)) {
        return Err(Fatal(format!(
            "peer URL {taken} belongs to another member of the cluster: give this member addresses of its own"
        )));
    }
    match listing
        .members
        .iter()
        .find(|m| sorted(&m.peer_urls) == mine)
    {
        // Added, never started: an earlier try of this member's got that far (in a
        // two-member cluster it could not even be removed again without it).
        Some(m) if m.name.is_empty() => {
            log::info!("member {} at {} was added already: joining as it", m.id, mine.join(","));
        }
        // This member, started before: its data dir is gone (a new SD card). Its votes
        // went with it, so it comes back under a new id, as `member remove` then
        // `member add` would.
        Some(m) if m.name == name => {
            // Only if that member is really gone: this process has not bound the peer
            // URLs yet, so whatever answers there is the member itself, still running
            // (the same command line started on a second board, or twice).
            if let Some(url) = mine.iter().find(|u| list_members(agent, u).is_ok()) {
                return Err(Fatal(format!(
                    "member {} ({name}) still answers at {url}: it is running; this data dir is empty, so this is not that member (stop the other process, or give this one its own addresses)",
                    m.id
                )));
            }
            log::warn!(
                "member {} ({name}) at {} has no data here: removing it and joining afresh",
                m.id,
                mine.join(",")
            );
            change(agent, &clients, "DELETE", &format!("/v2/members/{}", m.id), None)?;
            add_self(agent, &clients, mine)?;
        }
        Some(m) => {
            return Err(Fatal(format!(
                "peer URLs {} belong to member {} ({}) of the cluster, not to {name}: give this member addresses of its own, or its old name",
                mine.join(","),
                m.id,
                m.name
            )))
        }
        None => add_self(agent, &clients, mine)?,
    }
    Ok(others)
}

fn add_self(agent: &ureq::Agent, clients: &[String], mine: &[String]) -> Result<(), JoinError> {
    let body = serde_json::json!({ "peerURLs": mine }).to_string();
    let answer = change(agent, clients, "POST", "/v2/members", Some(&body))?;
    let id = serde_json::from_slice::<serde_json::Value>(&answer)
        .ok()
        .and_then(|v| v.get("id").and_then(|i| i.as_str()).map(str::to_string))
        .unwrap_or_default();
    log::info!("added as member {id} with peer URLs {}", mine.join(","));
    Ok(())
}

// A members API request through the first client URL that answers: its body on success.
// Refusals the cluster may get over (no leader, unhealthy, a race with another change)
// are worth another try; a malformed request is not.
fn change(
    agent: &ureq::Agent,
    clients: &[String],
    method: &str,
    path: &str,
    body: Option<&str>,
) -> Result<Vec<u8>, JoinError> {
    if clients.is_empty() {
        return Err(Retry(
            "no member has published a client URL to ask (give --join a client URL)".into(),
        ));
    }
    let mut errors = Vec::new();
    for client in clients {
        let url = format!("{}{path}", client.trim_end_matches('/'));
        let resp = match (method, body) {
            ("POST", Some(b)) => agent
                .post(&url)
                .header("Content-Type", "application/json")
                .send(b),
            _ => agent.delete(&url).call(),
        };
        let mut resp = match resp {
            Ok(r) => r,
            Err(e) => {
                errors.push(format!("{method} {url}: {e}"));
                continue;
            }
        };
        let status = resp.status().as_u16();
        let text = resp.body_mut().read_to_vec().unwrap_or_default();
        let message = String::from_utf8_lossy(&text).trim().to_string();
        match status {
            200..=299 => return Ok(text),
            // Removed already (by an earlier try).
            404 | 410 if method == "DELETE" => return Ok(text),
            400 | 415 => return Err(Fatal(format!("{method} {url}: {status} {message}"))),
            _ => errors.push(format!("{method} {url}: {status} {message}")),
        }
    }
    Err(Retry(errors.join("; ")))
}

// Asks the peers in turn until one lists this member and sends its state.
fn fetch_state(
    peers: &[String],
    mine: &[String],
    storage: &LmdbStorage,
) -> Result<(Identity, Vec<MemberRecord>), ServerError> {
    let agent = agent(PEER_TIMEOUT);
    let deadline = Instant::now() + JOIN_DEADLINE;
    let mut last = String::new();
    loop {
        for peer in peers {
            match join_through(&agent, peer, mine, storage) {
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
    let me = members.iter().find(|m| sorted(&m.peer_urls) == mine);
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
