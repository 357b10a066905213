//! Snapshot transfer between running members: the leader sends its applied state to a
//! follower that needs entries it no longer holds; the follower installs it between two
//! batches.
//!
//! Leader: when the core asks for a snapshot to a follower, a thread of its own streams
//! `storage::lmdb::snapshot` from one read transaction to the follower's peer port
//! (`POST /raft/snapshot?from=<id>&term=<term>`) and reports the outcome, so the node thread
//! and the heartbeats to everyone never wait for it. A failed transfer is reported after a
//! pause (the core asks again at the follower's next answer: without the pause a follower
//! that cannot take one would be sent the whole state in a loop).
//!
//! Follower: the peer port spools the stream to a file and hands it over
//! ([`Incoming`]). Once no batch is with the WAL or the apply thread, the node freezes its
//! core (inputs wait, no ticks), the apply thread installs the file in one LMDB write
//! transaction and makes it durable, and the core restores from it. A crash before the
//! install commits leaves the old state; after it, the new (the WAL's tail of a diverged
//! log is dropped at the next start, see `disk::open_log`).

use super::inbox::InboxSender;
use super::{disk, Input, Node};
use crate::raft::{NodeId, Role, SnapshotMeta};
use crate::storage::lmdb::snapshot::SnapshotHeader;
use crate::storage::lmdb::LmdbStorage;
use crate::storage::{Identity, StorageError, StorageErrorKind};
use std::io::{BufWriter, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::path::PathBuf;
use std::sync::mpsc::Sender;
use std::sync::Arc;
use std::time::Duration;

/// How long a dial to a follower's peer port may take.
const DIAL_TIMEOUT: Duration = Duration::from_secs(5);
/// How long one write to the follower may block (a follower that stops reading).
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the follower may take to install what it received.
const INSTALL_TIMEOUT: Duration = Duration::from_secs(600);
/// The pause before a failed transfer is reported.
const RETRY_PAUSE: Duration = Duration::from_secs(2);
/// Peer messages kept for after an install; more are dropped (Raft resends).
const DEFERRED_PEER_MAX: usize = 10_000;

/// A snapshot the peer port received, waiting to be installed.
pub struct Incoming {
    /// The leader that sent it.
    pub from: NodeId,
    /// The leader's term when it sent it.
    pub term: u64,
    /// The spooled stream.
    pub path: PathBuf,
    /// Its header.
    pub header: SnapshotHeader,
    /// Where the outcome goes: the index it covers once installed.
    pub reply: Sender<Result<u64, String>>,
}

/// Sends this member's applied state to `to` at `urls` (the first that answers); the
/// outcome goes to `node` as [`Input::SnapshotSent`].
pub(super) fn spawn_send(
    storage: Arc<LmdbStorage>,
    identity: Identity,
    term: u64,
    to: NodeId,
    urls: Vec<String>,
    node: InboxSender<Input>,
) {
    let spawned = std::thread::Builder::new()
        .name("snapshot-send".into())
        .spawn(move || {
            let mut outcome = Err(format!("member {to:x} has no peer URL"));
            for url in &urls {
                outcome = send(&storage, identity, term, url);
                if outcome.is_ok() {
                    break;
                }
            }
            match &outcome {
                Ok(index) => {
                    log::info!("sent member {to:x} a snapshot of the state at index {index}")
                }
                Err(e) => {
                    log::warn!("sending member {to:x} a snapshot: {e}");
                    std::thread::sleep(RETRY_PAUSE);
                }
            }
            let _ = node.send(Input::SnapshotSent { to, outcome });
        });
    if let Err(e) = spawned {
        log::warn!("cannot start a thread to send member {to:x} a snapshot: {e}");
    }
}

/// One transfer over one connection; `Ok(index)` once the follower installed it.
fn send(storage: &LmdbStorage, identity: Identity, term: u64, url: &str) -> Result<u64, String> {
    let hostport = url
        .split_once("://")
        .map_or(url, |(_, rest)| rest)
        .trim_end_matches('/');
    let addr = hostport
        .to_socket_addrs()
        .map_err(|e| format!("{url}: {e}"))?
        .next()
        .ok_or_else(|| format!("{url}: no address"))?;
    let stream =
        TcpStream::connect_timeout(&addr, DIAL_TIMEOUT).map_err(|e| format!("dial {url}: {e}"))?;
    stream
        .set_write_timeout(Some(WRITE_TIMEOUT))
        .and_then(|()| stream.set_read_timeout(Some(INSTALL_TIMEOUT)))
        .map_err(|e| format!("{url}: {e}"))?;
    let mut out = BufWriter::new(&stream);
    let head = format!(
        "POST /raft/snapshot?from={:x}&term={term} HTTP/1.1\r\nHost: {hostport}\r\nContent-Type: application/octet-stream\r\nX-Etcd-Cluster-ID: {:x}\r\nConnection: close\r\n\r\n",
        identity.member_id, identity.cluster_id
    );
    out.write_all(head.as_bytes())
        .map_err(|e| format!("{url}: {e}"))?;
    let header = storage
        .write_snapshot(identity.cluster_id, &mut out)
        .map_err(|e| format!("{url}: {e}"))?;
    out.flush().map_err(|e| format!("{url}: {e}"))?;
    drop(out);
    // The stream's end is the connection's (the receiver spools to EOF); the answer comes
    // once it installed.
    stream
        .shutdown(std::net::Shutdown::Write)
        .map_err(|e| format!("{url}: {e}"))?;
    let mut answer = String::new();
    (&stream)
        .take(64 << 10)
        .read_to_string(&mut answer)
        .map_err(|e| format!("{url}: waiting for the install: {e}"))?;
    let status = answer.split(' ').nth(1).unwrap_or_default();
    if status == "204" {
        return Ok(header.index);
    }
    let body = answer.split("\r\n\r\n").nth(1).unwrap_or_default().trim();
    Err(format!("{url} answered {status}: {body}"))
}

/// What the apply thread reports after installing.
pub struct Installed {
    /// The snapshot's header.
    pub header: SnapshotHeader,
    /// The store's index after it.
    pub current_index: u64,
    /// The watch history it has.
    pub history: Vec<crate::store::Event>,
    /// The earliest TTL expiry in it.
    pub next_expiration: Option<u64>,
}

impl Node {
    /// The core asks for snapshots to these followers.
    pub(super) fn send_snapshots(&mut self) {
        for to in self.raft.take_snapshot_requests() {
            let urls = self.members.urls_of(to).unwrap_or_default();
            log::info!(
                "member {to:x} needs entries this member no longer holds: sending it a snapshot"
            );
            spawn_send(
                Arc::clone(&self.storage),
                self.identity,
                self.raft.term(),
                to,
                urls,
                self.self_tx.clone(),
            );
        }
    }

    /// A transfer to `to` ended.
    pub(super) fn snapshot_sent(&mut self, to: NodeId, outcome: Result<u64, String>) {
        self.raft.snapshot_sent(to, outcome.map_err(|_| ()));
    }

    /// The peer port received a snapshot: installed once the pipeline is idle, if the core
    /// can take it.
    pub(super) fn snapshot_received(&mut self, incoming: Incoming) {
        if self.install_wanted.is_some() || self.installing.is_some() {
            let _ = incoming
                .reply
                .send(Err("another snapshot is being installed".into()));
            return;
        }
        self.install_wanted = Some(incoming);
    }

    // Why the core cannot take `incoming` now, if it cannot (the same checks as
    // `Raft::restore`, made before the state is replaced).
    fn refusal(&self, incoming: &Incoming) -> Option<String> {
        if incoming.term < self.raft.term() {
            return Some(format!(
                "sent in term {}, this member is in term {}",
                incoming.term,
                self.raft.term()
            ));
        }
        if self.raft.role() == Role::Leader && incoming.term == self.raft.term() {
            return Some("this member leads that term".into());
        }
        if incoming.header.index <= self.raft.commit_index() {
            return Some(format!(
                "of index {}, this member has committed {}",
                incoming.header.index,
                self.raft.commit_index()
            ));
        }
        if self.stopping.is_some() {
            return Some("this member is stopping".into());
        }
        None
    }

    /// Starts the install of a received snapshot once no batch is in the WAL or the
    /// apply thread (the core then has no Ready in flight).
    pub(super) fn maybe_start_install(&mut self) {
        if self.installing.is_some() || self.batch_busy || !self.applies_outstanding.is_empty() {
            return;
        }
        let Some(incoming) = self.install_wanted.take() else {
            return;
        };
        if let Some(why) = self.refusal(&incoming) {
            let _ = incoming.reply.send(Err(format!("snapshot refused: {why}")));
            return;
        }
        let job = disk::InstallJob {
            path: incoming.path.clone(),
            identity: self.identity,
        };
        if self.apply_tx.send(disk::ApplyInput::Install(job)).is_ok() {
            log::info!(
                "installing the snapshot of the state at index {} from member {:x}",
                incoming.header.index,
                incoming.from
            );
            self.installing = Some(incoming);
        }
    }

    /// Holds `input` for after the install, if one is under way; gives it back otherwise.
    pub(super) fn defer_while_installing(&mut self, input: Input) -> Option<Input> {
        if self.installing.is_none() {
            return Some(input);
        }
        match input {
            Input::Installed(_) | Input::Ping { .. } | Input::Shutdown => Some(input),
            Input::Peer(_) if self.deferred_peers >= DEFERRED_PEER_MAX => None,
            other => {
                if matches!(other, Input::Peer(_)) {
                    self.deferred_peers += 1;
                }
                self.deferred.push_back(other);
                None
            }
        }
    }

    /// The apply thread installed the snapshot (or failed to): the core restores from it.
    pub(super) fn on_installed(
        &mut self,
        outcome: Result<Result<Installed, String>, StorageError>,
    ) -> Result<(), StorageError> {
        let Some(incoming) = self.installing.take() else {
            return Ok(());
        };
        self.deferred_peers = 0;
        let installed = match outcome {
            Ok(Ok(i)) => i,
            Ok(Err(e)) => {
                // A corrupt or foreign stream, or no room for it: nothing was installed.
                log::warn!(
                    "the snapshot from member {:x} was not installed: {e}",
                    incoming.from
                );
                let _ = incoming.reply.send(Err(e));
                return Ok(());
            }
            Err(e) => {
                let _ = incoming.reply.send(Err(e.to_string()));
                self.fail_all(super::STOPPED_CAUSE);
                return Err(e);
            }
        };
        let header = &installed.header;
        let mut voters: Vec<NodeId> = header.members.iter().map(|m| m.id).collect();
        voters.sort_unstable();
        let meta = SnapshotMeta {
            index: header.index,
            term: header.term,
            voters,
        };
        if !self.raft.restore(incoming.from, incoming.term, meta) {
            // Checked before the install and the core did not move since: LMDB and the
            // core now disagree, and only a restart (from LMDB) reconciles them.
            let _ = incoming
                .reply
                .send(Err("the core refused the snapshot".into()));
            return Err(StorageError::new(
                "restore from the installed snapshot",
                self.storage.path(),
                StorageErrorKind::Io("the Raft core refused it after the install".into()),
            ));
        }
        // The core kept the durable entries after the snapshot's index, if any: the WAL
        // restarts with them (what it held before is of the replaced log).
        self.durable_index = self.raft.last_index();
        let kept: Vec<crate::raft::Entry> = self
            .raft
            .log_entries()
            .iter()
            .filter(|e| e.index > header.index)
            .cloned()
            .collect();
        self.wal_restored = Some(disk::Restart {
            hard_state: crate::raft::HardState {
                commit: header.index,
                ..self.wal_hard_state
            },
            kept,
            durable: self.durable_index,
        });
        self.waiters.lock().delivered_through = header.index;
        self.next_expiration = installed.next_expiration;
        self.members
            .restored(&header.members, self.raft.log_entries());
        self.hub.reset(installed.current_index, installed.history);
        log::info!(
            "installed the snapshot of the state at index {} (term {}) from member {:x}",
            header.index,
            header.term,
            incoming.from
        );
        let _ = incoming.reply.send(Ok(header.index));
        self.answer_reads_through(header.index);
        self.link_peers();
        Ok(())
    }
}
