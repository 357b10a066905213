//! What the peer port answers to HTTP, beside the framed Raft traffic (etcd's peer port is
//! HTTP too): `GET /members` (who is in the cluster, for a member that joins),
//! `GET /raft/snapshot` (the applied state, for a member that joins with an empty data
//! dir) and `POST /raft/snapshot` (the leader sending its state to a follower that needs
//! entries the leader no longer holds).
//!
//! Each request runs on a thread of its own (a snapshot takes a while; the peers thread
//! must not wait for it), a few at a time. A snapshot sent to this member is spooled to a
//! file first, so that neither a slow network nor a dropped connection holds the node up
//! or leaves anything half done: only a complete stream is handed to the node thread,
//! which installs it between two batches (see `node::snapshot`).

use crate::node::members::UnappliedAdds;
use crate::node::NodeHandle;
use crate::storage::lmdb::snapshot::read_snapshot_header;
use crate::storage::lmdb::LmdbStorage;
use crate::transport::tcp::PeerHttp;
use serde::{Deserialize, Serialize};
use std::io::{BufReader, BufWriter, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

/// Peer-port HTTP requests served at once, at most; more are closed unanswered (a joiner
/// or a leader tries again).
const PEER_HTTP_MAX: usize = 4;
/// How long one peer may take to answer, and to send each part of a snapshot.
pub const PEER_TIMEOUT: Duration = Duration::from_secs(5);
/// The name of a snapshot being received, in the LMDB directory.
pub const INCOMING_SNAPSHOT: &str = "snapshot.incoming";

/// One member as etcd's peer `GET /members` lists it.
#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct PeerMember {
    /// The member id in hex.
    pub id: String,
    /// Its name, empty until it published it.
    pub name: String,
    /// Its peer URLs.
    #[serde(rename = "peerURLs")]
    pub peer_urls: Vec<String>,
    /// Its client URLs, empty until it published them.
    #[serde(rename = "clientURLs", default)]
    pub client_urls: Vec<String>,
}

/// What the peer port's HTTP answers need.
pub struct PeerHttpContext {
    /// The data dir.
    pub storage: Arc<LmdbStorage>,
    /// This member's cluster.
    pub cluster_id: u64,
    /// Members added and not applied yet (listed too).
    pub unapplied: UnappliedAdds,
    /// The node, once it runs (a snapshot sent before is refused).
    pub node: Arc<OnceLock<NodeHandle>>,
    /// This member's id, name and client URLs: listed as they are now, as a member's own
    /// `/v2/members` shows them (a lone member publishes nothing through the log, and a
    /// member joining through its peer URL needs a client URL to ask).
    pub own: (u64, String, Vec<String>),
}

/// The handler the transport calls with each HTTP request on the peer port.
pub fn peer_http(context: PeerHttpContext) -> PeerHttp {
    let busy = Arc::new(AtomicUsize::new(0));
    let receiving = Arc::new(AtomicBool::new(false));
    let context = Arc::new(context);
    PeerHttp(Arc::new(
        move |method: &str, target: &str, stream: TcpStream| {
            if busy.fetch_add(1, Ordering::SeqCst) >= PEER_HTTP_MAX {
                busy.fetch_sub(1, Ordering::SeqCst);
                return;
            }
            let context = Arc::clone(&context);
            let receiving = Arc::clone(&receiving);
            let request = format!("{method} {target}");
            let done = Arc::clone(&busy);
            let spawned = std::thread::Builder::new()
                .name("peer-http".into())
                .spawn(move || {
                    if let Err(e) = answer(&context, &receiving, &request, stream) {
                        log::warn!("answering {request} on the peer port: {e}");
                    }
                    done.fetch_sub(1, Ordering::SeqCst);
                });
            if let Err(e) = spawned {
                busy.fetch_sub(1, Ordering::SeqCst);
                log::warn!("cannot start a thread for a peer request: {e}");
            }
        },
    ))
}

fn head(cluster_id: u64, status: &str, kind: &str, length: Option<usize>, extra: &str) -> String {
    let length = length.map_or(String::new(), |n| format!("Content-Length: {n}\r\n"));
    format!(
        "HTTP/1.1 {status}\r\nContent-Type: {kind}\r\nX-Etcd-Cluster-ID: {cluster_id:x}\r\n{extra}{length}Connection: close\r\n\r\n"
    )
}

fn reply(out: &mut impl Write, head: &str, body: &[u8]) -> Result<(), String> {
    out.write_all(head.as_bytes())
        .and_then(|()| out.write_all(body))
        .and_then(|()| out.flush())
        .map_err(|e| e.to_string())
}

fn answer(
    context: &PeerHttpContext,
    receiving: &AtomicBool,
    request: &str,
    stream: TcpStream,
) -> Result<(), String> {
    stream
        .set_nonblocking(false)
        .and_then(|()| stream.set_write_timeout(Some(PEER_TIMEOUT)))
        .map_err(|e| e.to_string())?;
    let peer = stream
        .peer_addr()
        .map_or_else(|_| "?".to_string(), |a| a.to_string());
    let id = context.cluster_id;
    let (method, target) = request.split_once(' ').unwrap_or((request, ""));
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    match (method, path) {
        ("GET", "/members") => {
            let body = members_json(context).map_err(|e| e.to_string())?;
            let mut out = BufWriter::new(stream);
            reply(
                &mut out,
                &head(id, "200 OK", "application/json", Some(body.len()), ""),
                &body,
            )
        }
        ("GET", "/raft/snapshot") => {
            let mut out = BufWriter::new(stream);
            let h = head(id, "200 OK", "application/octet-stream", None, "");
            out.write_all(h.as_bytes()).map_err(|e| e.to_string())?;
            let header = context
                .storage
                .write_snapshot(id, &mut out)
                .map_err(|e| e.to_string())?;
            log::info!(
                "sent a snapshot of the state at index {} to {peer}",
                header.index
            );
            Ok(())
        }
        ("POST", "/raft/snapshot") => {
            if receiving.swap(true, Ordering::SeqCst) {
                let mut out = stream;
                let body = b"a snapshot is being received already\n";
                let h = head(
                    id,
                    "503 Service Unavailable",
                    "text/plain",
                    Some(body.len()),
                    "",
                );
                return reply(&mut out, &h, body);
            }
            let outcome = receive_snapshot(context, query, &stream, &peer);
            receiving.store(false, Ordering::SeqCst);
            let mut out = stream;
            match outcome {
                Ok(index) => reply(
                    &mut out,
                    &head(
                        id,
                        "204 No Content",
                        "text/plain",
                        None,
                        &format!("X-Raft-Index: {index}\r\n"),
                    ),
                    b"",
                ),
                Err(e) => {
                    let body = format!("{e}\n");
                    let h = head(
                        id,
                        "500 Internal Server Error",
                        "text/plain",
                        Some(body.len()),
                        "",
                    );
                    let _ = reply(&mut out, &h, body.as_bytes());
                    Err(format!("a snapshot from {peer}: {e}"))
                }
            }
        }
        _ => {
            let body = b"404 page not found\n";
            let mut out = stream;
            reply(
                &mut out,
                &head(
                    id,
                    "404 Not Found",
                    "text/plain; charset=utf-8",
                    Some(body.len()),
                    "",
                ),
                body,
            )
        }
    }
}

/// The leader and term a snapshot is sent in, from `from=<hex id>&term=<term>`.
fn sender_of(query: &str) -> Option<(u64, u64)> {
    let mut from = None;
    let mut term = None;
    for pair in query.split('&') {
        match pair.split_once('=') {
            Some(("from", v)) => from = u64::from_str_radix(v, 16).ok(),
            Some(("term", v)) => term = v.parse().ok(),
            _ => {}
        }
    }
    Some((from?, term?))
}

/// Spools the body to a file (up to the map size), then has the node install it; returns
/// the index it covers.
fn receive_snapshot(
    context: &PeerHttpContext,
    query: &str,
    stream: &TcpStream,
    peer: &str,
) -> Result<u64, String> {
    let (from, term) = sender_of(query).ok_or("want from=<leader id>&term=<term>")?;
    let node = context.node.get().ok_or("the node is not running yet")?;
    let path: PathBuf = context.storage.path().join(INCOMING_SNAPSHOT);
    // Each read may wait this long: the sender streams from a read transaction at disk
    // speed, it never pauses for long.
    stream
        .set_read_timeout(Some(PEER_TIMEOUT * 6))
        .map_err(|e| e.to_string())?;
    let limit = context.storage.map_bytes().saturating_mul(2);
    let spooled = (|| -> std::io::Result<u64> {
        let mut file = std::fs::File::create(&path)?;
        let mut reader = stream.take(limit);
        let n = std::io::copy(&mut reader, &mut file)?;
        file.sync_data()?;
        Ok(n)
    })();
    let spooled = spooled.map_err(|e| format!("spooling to {}: {e}", path.display()));
    let outcome = spooled.and_then(|bytes| {
        let file = std::fs::File::open(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        let header = read_snapshot_header(&mut BufReader::new(file)).map_err(|e| e.to_string())?;
        log::info!(
            "received a snapshot of the state at index {} ({bytes} bytes) from member {from:x} at {peer}",
            header.index
        );
        node.install_snapshot(from, term, path.clone(), header)
    });
    if let Err(e) = std::fs::remove_file(&path) {
        if e.kind() != std::io::ErrorKind::NotFound {
            log::warn!("cannot remove {}: {e}", path.display());
        }
    }
    outcome
}

fn members_json(context: &PeerHttpContext) -> Result<Vec<u8>, crate::storage::StorageError> {
    let view = context.storage.read()?;
    let mut records = view.members()?;
    if let Ok(added) = context.unapplied.lock() {
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
            let (name, client_urls) = if r.id == context.own.0 {
                (context.own.1.clone(), context.own.2.clone())
            } else {
                published.get(&r.id).cloned().unwrap_or_default()
            };
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sender_of_a_snapshot_is_in_its_query() {
        assert_eq!(sender_of("from=1f&term=7"), Some((0x1f, 7)));
        assert_eq!(sender_of("term=7&from=a"), Some((10, 7)));
        assert_eq!(sender_of("from=zz&term=7"), None);
        assert_eq!(sender_of("from=1"), None);
        assert_eq!(sender_of(""), None);
    }
}
