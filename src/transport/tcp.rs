//! The TCP peer transport: one thread ("peers") runs a smol executor holding every peer
//! connection's task: dials, handshakes, timeouts and the outbound queues. Each member dials
//! each peer once for its outbound messages (a connection only it writes) and reads the
//! connections its peers dial (connections it only reads), so every connection has one
//! writer and no request/response pairing to get wrong. Two shortcuts keep the busy path
//! off the peers thread (each hop there was a wake-up per message): the node thread writes
//! an idle outbound connection itself (`direct`), and each accepted connection, once its
//! handshake is done, is read by a thread of its own ("peer-in") with blocking reads.
//!
//! What keeps the node thread and the other peers safe from one bad peer:
//! - `send` writes only without waiting (a socket that takes nothing now leaves the rest to
//!   the peer's task) or `try_send`s into the peer's bounded queue: a full queue, or a peer
//!   that is down, drops the message and reports the peer unreachable (Raft retries; a
//!   stale message is useless anyway). The node thread never waits on a socket.
//! - one task per peer, one reader thread per accepted connection: a dead or slow peer
//!   stalls only its own task, queue and reader.
//! - memory is bounded: [`QUEUE_MESSAGES_MAX`] messages per peer, one frame in flight, one
//!   read buffer of at most a frame per accepted peer connection, at most
//!   [`PENDING_HANDSHAKES_MAX`] connections still to say who they are.
//! - every handshake read, dial and write has a timeout; peer input is validated (frame,
//!   decode limit, sender) and anything wrong closes that connection with a logged reason.
//!
//! It must not: block the node thread, panic on peer input, or log every failed retry to a
//! peer that is down for hours (state changes are logged; repeats at most once a minute).

use super::Transport;
use crate::raft::{Message, NodeId};
use direct::{Direct, Sent};
use inbound::{accept_loop, Inbound, InboundConfig};
use outbound::{run_link, Link};
use smol::channel::{self, Receiver, Sender};
use smol::{future, Async, LocalExecutor, Timer};
use std::collections::BTreeMap;
use std::collections::BTreeSet;
use std::fmt;
use std::future::Future;
use std::io;
use std::net::{SocketAddr, TcpListener};
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Messages queued per peer. A heartbeat interval's worth of traffic is far less; beyond it
/// the peer is not keeping up and more queueing would only add latency and memory.
pub const QUEUE_MESSAGES_MAX: usize = 4096;
/// How long a connect may take: a black-holed address must not hold the peer's task.
pub const DIAL_TIMEOUT: Duration = Duration::from_secs(1);
/// How long either side waits for the other's handshake frame, so a silent connection
/// cannot pin a task.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(3);
/// How long one frame may take to write (etcd's peer write timeout): a peer that stopped
/// reading is then treated as lost and redialled.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(5);
/// The first reconnect delay; it doubles per failure up to [`BACKOFF_MAX`].
pub const BACKOFF_MIN: Duration = Duration::from_millis(50);
/// The longest reconnect delay, and the delay after a peer refused the handshake (it will
/// not change its mind quickly).
pub const BACKOFF_MAX: Duration = Duration::from_secs(1);
/// Accepted connections that have not finished their handshake, at most; more are closed
/// at once. Peers need one each; the rest of the room is for reconnects overlapping.
pub const PENDING_HANDSHAKES_MAX: usize = 32;
/// A failure that repeats is logged again at most this often.
const REPEAT_LOG_INTERVAL: Duration = Duration::from_secs(60);

/// Called with each message from a peer, on the reader thread of that peer's connection.
/// It should not block for long (it is meant to put the message on the node thread's input
/// channel): while it runs, that connection makes no progress.
pub type Deliver = Box<DeliverFn>;

/// The function inside a [`Deliver`].
pub type DeliverFn = dyn Fn(Message) + Send + Sync;

/// What answers an HTTP request on the peer port: given the method (`GET` or `POST`), the
/// request target and the connection (blocking mode, head read, body not), it must return at once (a thread of its own for
/// anything slow): it runs on the peers thread.
#[derive(Clone)]
pub struct PeerHttp(pub Arc<PeerHttpFn>);

/// The function inside a [`PeerHttp`].
pub type PeerHttpFn = dyn Fn(&str, &str, std::net::TcpStream) + Send + Sync;

impl fmt::Debug for PeerHttp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PeerHttp")
    }
}

/// Everything the transport needs.
#[derive(Debug, Clone)]
pub struct PeerConfig {
    /// This member's id.
    pub member_id: NodeId,
    /// This member's cluster id: peers of another cluster are refused.
    pub cluster_id: u64,
    /// Addresses to listen on for peer connections; bound by [`TcpTransport::start`] (port 0
    /// picks a free port, see [`TcpTransport::local_addrs`]).
    pub listen: Vec<SocketAddr>,
    /// Every other member with its peer URLs (`http://host:port`, as given in
    /// `--initial-cluster`; the host may be a name, an IPv4 or a bracketed IPv6 address).
    pub peers: Vec<(NodeId, Vec<String>)>,
    /// Who answers HTTP requests on the peer port (none: they are refused as bad frames).
    pub http: Option<PeerHttp>,
    /// How removed members are told so, and how this one learns it was (none: a member
    /// that is not a peer is only refused).
    pub removal: Option<Removal>,
}

/// The removed-member notice: a member removed while it was down comes back with a data
/// dir that still lists it, and nothing in the log it can still receive tells it.
#[derive(Clone)]
pub struct Removal {
    /// Whether member `id` was removed from this cluster (asked for a dialer that is not a
    /// peer; the answer comes from the applied membership).
    pub is_removed: Arc<dyn Fn(NodeId) -> bool + Send + Sync>,
    /// Called when a peer refuses this member because it was removed, with the peer's
    /// words.
    pub removed_self: Arc<dyn Fn(&str) + Send + Sync>,
}

impl fmt::Debug for Removal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Removal")
    }
}

/// Why the transport could not start.
#[derive(Debug)]
pub enum TransportError {
    /// A listen address could not be bound.
    Listen {
        /// The address.
        addr: SocketAddr,
        /// Why.
        error: io::Error,
    },
    /// A peer's URL cannot be dialled.
    PeerUrl {
        /// The peer.
        peer: NodeId,
        /// The URL as given.
        url: String,
        /// Why.
        reason: String,
    },
    /// The member list is not usable (this member among its peers, a duplicate, id 0).
    Members(String),
    /// The peers thread could not be started.
    Thread(io::Error),
}

impl fmt::Display for TransportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            // etcd's wording, which operators search for.
            TransportError::Listen { addr, error } => {
                write!(f, "listen tcp {addr}: bind: {}", describe(error))
            }
            TransportError::PeerUrl { peer, url, reason } => {
                write!(f, "peer URL {url} of member {peer:x}: {reason}")
            }
            TransportError::Members(reason) => f.write_str(reason),
            TransportError::Thread(e) => write!(f, "cannot start the peers thread: {e}"),
        }
    }
}

impl std::error::Error for TransportError {}

/// Counters since start, for tests and statistics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TransportStats {
    /// Messages written to peer connections.
    pub messages_sent: u64,
    /// Messages dropped on the sending side: queue full, peer down, unknown peer, too large,
    /// or queued when the connection was lost.
    pub messages_dropped: u64,
    /// Messages from peers handed to `deliver`.
    pub messages_delivered: u64,
    /// Inbound handshakes refused (another cluster, another protocol, not a peer...).
    pub handshakes_refused: u64,
    /// Inbound connections closed for bad input (malformed frame, undecodable or forged
    /// messages).
    pub connections_closed_bad_input: u64,
}

/// The TCP transport's handle, held by the node thread.
pub struct TcpTransport {
    member_id: NodeId,
    local_addrs: Vec<SocketAddr>,
    peers: BTreeMap<NodeId, PeerQueue>,
    cluster_id: u64,
    shared: Arc<Shared>,
    // New links and peer changes go to the peers thread through this.
    control: Sender<Control>,
    // Closing it stops the peers thread, which drops every task, socket and listener.
    stop: Sender<()>,
    thread: Mutex<Option<JoinHandle<()>>>,
    // Unknown destinations already warned about, so a misaddressed stream warns once.
    warned_unknown: BTreeSet<NodeId>,
}

struct PeerQueue {
    queue: Sender<Message>,
    link: Arc<AtomicU8>,
    urls: Vec<PeerUrl>,
    direct: Arc<Direct>,
    // Wakes the link's task for a frame `send` could not finish.
    kick: Sender<()>,
}

// A peer link's state, shared by `send` (which drops rather than queues while it is down)
// and the peer's task.
/// Not connected yet: messages queue for the first dial.
const LINK_STARTING: u8 = 0;
/// Handshake done, connection up.
const LINK_UP: u8 = 1;
/// The last dial or the connection failed: messages are dropped until the next handshake.
const LINK_DOWN: u8 = 2;

/// Since when each peer's outbound connection has been up, for whoever needs to know how
/// healthy the cluster looks from here (etcd's strict reconfiguration check).
#[derive(Debug, Default)]
pub struct LinkHealth {
    up_since: Mutex<BTreeMap<NodeId, Instant>>,
}

impl LinkHealth {
    /// When the connection to `peer` came up, if it is up.
    pub fn up_since(&self, peer: NodeId) -> Option<Instant> {
        self.lock().get(&peer).copied()
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<NodeId, Instant>> {
        // Plain inserts and removes: valid whatever a panicking holder did.
        self.up_since.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn up(&self, peer: NodeId) {
        self.lock().insert(peer, Instant::now());
    }

    fn down(&self, peer: NodeId) {
        self.lock().remove(&peer);
    }
}

/// State of the node thread's side and the peers thread's side both.
#[derive(Default)]
struct Shared {
    health: Arc<LinkHealth>,
    unreachable: Mutex<BTreeSet<NodeId>>,
    // Who may connect: the peers as the node thread last set them.
    accepted: Mutex<Vec<NodeId>>,
    sent: AtomicU64,
    dropped: AtomicU64,
    delivered: AtomicU64,
    refused: AtomicU64,
    bad_input: AtomicU64,
    removal: Option<Removal>,
    // Each link's doorbell: a peer that connects to this member is back, so the link to it
    // redials at once instead of at the end of its backoff (a restarted follower would
    // otherwise wait up to a second for the leader's appends).
    wake: Mutex<BTreeMap<NodeId, channel::Sender<()>>>,
}

impl Shared {
    fn unreachable(&self) -> MutexGuard<'_, BTreeSet<NodeId>> {
        // The set stays valid whatever a panicking holder did: it is only inserted into.
        self.unreachable.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The peer `id` connected: its link redials now if it is waiting to.
    fn wake_link(&self, id: NodeId) {
        if let Some(bell) = self.wake.lock().unwrap_or_else(|e| e.into_inner()).get(&id) {
            let _ = bell.try_send(());
        }
    }

    fn accepted(&self) -> Vec<NodeId> {
        self.accepted
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn count(counter: &AtomicU64, n: usize) {
        counter.fetch_add(n as u64, Ordering::Relaxed);
    }
}

impl TcpTransport {
    /// Binds the listeners, starts one thread ("peers") running a smol executor with all
    /// peer tasks, and returns the handle. Fails, naming the address or URL, when a listen
    /// address cannot be bound or a peer URL is not `http://host:port`.
    pub fn start(config: PeerConfig, deliver: Deliver) -> Result<TcpTransport, TransportError> {
        let targets = check_members(&config)?;
        let mut listeners = Vec::with_capacity(config.listen.len());
        let mut local_addrs = Vec::with_capacity(config.listen.len());
        for &addr in &config.listen {
            let listen_err = |error| TransportError::Listen { addr, error };
            let listener = TcpListener::bind(addr).map_err(listen_err)?;
            let bound = listener.local_addr().map_err(listen_err)?;
            listeners.push((Async::new(listener).map_err(listen_err)?, bound));
            local_addrs.push(bound);
        }
        // The peers may connect as soon as the listener runs, before `replace_peers` below:
        // refusing them then ("not a peer") sent a leader's link to its longest backoff,
        // and a restarted follower waited a second for its appends.
        let shared = Arc::new(Shared {
            removal: config.removal.clone(),
            accepted: Mutex::new(targets.iter().map(|(id, _)| *id).collect()),
            ..Shared::default()
        });
        let (control, changes) = channel::unbounded();
        let inbound = InboundConfig {
            me: config.member_id,
            cluster_id: config.cluster_id,
            deliver: Arc::from(deliver),
            http: config.http.clone(),
            shared: Arc::clone(&shared),
        };
        let (stop, stopped) = channel::bounded(1);
        let thread = std::thread::Builder::new()
            .name("peers".into())
            .spawn(move || run_peers(listeners, changes, inbound, stopped))
            .map_err(TransportError::Thread)?;
        let mut transport = TcpTransport {
            member_id: config.member_id,
            local_addrs,
            peers: BTreeMap::new(),
            cluster_id: config.cluster_id,
            shared,
            control,
            stop,
            thread: Mutex::new(Some(thread)),
            warned_unknown: BTreeSet::new(),
        };
        transport.replace_peers(targets);
        Ok(transport)
    }

    // Peers are (re)linked from checked targets; those gone are dropped, and their links
    // end once their queue's sender is gone.
    fn replace_peers(&mut self, targets: Vec<(NodeId, Vec<PeerUrl>)>) {
        let wanted: BTreeMap<NodeId, Vec<PeerUrl>> = targets.into_iter().collect();
        let health = &self.shared.health;
        self.peers.retain(|id, p| {
            let keep = wanted.get(id) == Some(&p.urls);
            if !keep {
                health.down(*id);
            }
            keep
        });
        for (peer, urls) in wanted.iter() {
            if self.peers.contains_key(peer) {
                continue;
            }
            let (tx, rx) = channel::bounded(QUEUE_MESSAGES_MAX);
            let (bell, wake) = channel::bounded(1);
            self.shared
                .wake
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(*peer, bell);
            let link = Arc::new(AtomicU8::new(LINK_STARTING));
            let direct = Arc::new(Direct::default());
            let (kick, kicked) = channel::bounded(1);
            self.peers.insert(
                *peer,
                PeerQueue {
                    queue: tx,
                    link: Arc::clone(&link),
                    urls: urls.clone(),
                    direct: Arc::clone(&direct),
                    kick,
                },
            );
            let _ = self.control.try_send(Control::Link(Link {
                me: self.member_id,
                cluster_id: self.cluster_id,
                peer: *peer,
                urls: urls.clone(),
                queue: rx,
                wake,
                direct,
                kicked,
                state: link,
                shared: Arc::clone(&self.shared),
            }));
            self.warned_unknown.remove(peer);
        }
        self.shared
            .wake
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|id, _| wanted.contains_key(id));
        *self
            .shared
            .accepted
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = wanted.keys().copied().collect();
        let _ = self.control.try_send(Control::Accepted);
    }

    /// The bound listen addresses, in the order of [`PeerConfig::listen`].
    pub fn local_addrs(&self) -> &[SocketAddr] {
        &self.local_addrs
    }

    /// Stops dialing and accepting and closes every peer connection; waits for the peers
    /// thread unless called on it. Later sends are dropped. Used at shutdown; idempotent.
    pub fn shutdown(&self) {
        self.stop.close();
        let thread = self.thread.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(thread) = thread {
            if thread.thread().id() != std::thread::current().id() {
                let _ = thread.join();
            }
        }
    }

    /// Since when each peer's connection is up, kept current by the peers thread.
    pub fn health(&self) -> Arc<LinkHealth> {
        Arc::clone(&self.shared.health)
    }

    /// Whether the outbound connection to `peer` is up (handshake done, not lost since).
    pub fn is_connected(&self, peer: NodeId) -> bool {
        self.peers
            .get(&peer)
            .is_some_and(|p| p.link.load(Ordering::Acquire) == LINK_UP)
    }

    /// Counters since start.
    pub fn stats(&self) -> TransportStats {
        let s = &self.shared;
        TransportStats {
            messages_sent: s.sent.load(Ordering::Relaxed),
            messages_dropped: s.dropped.load(Ordering::Relaxed),
            messages_delivered: s.delivered.load(Ordering::Relaxed),
            handshakes_refused: s.refused.load(Ordering::Relaxed),
            connections_closed_bad_input: s.bad_input.load(Ordering::Relaxed),
        }
    }
}

impl Transport for TcpTransport {
    fn send(&mut self, messages: Vec<Message>) {
        let mut unreachable = BTreeSet::new();
        let mut dropped = 0;
        // Per peer, in order: each peer's messages go out as one write when they can.
        let mut by_peer: BTreeMap<NodeId, Vec<Message>> = BTreeMap::new();
        for m in messages {
            debug_assert_eq!(
                m.from, self.member_id,
                "sending a message of another member"
            );
            if !self.peers.contains_key(&m.to) {
                if self.warned_unknown.insert(m.to) {
                    log::warn!(
                        "dropping messages to {:x}: not a peer of member {:x}",
                        m.to,
                        self.member_id
                    );
                }
                dropped += 1;
                continue;
            }
            by_peer.entry(m.to).or_default().push(m);
        }
        for (to, messages) in by_peer {
            let Some(peer) = self.peers.get(&to) else {
                continue;
            };
            if peer.link.load(Ordering::Acquire) == LINK_DOWN {
                dropped += messages.len();
                unreachable.insert(to);
                continue;
            }
            let mut refused = 0;
            let sent = peer.direct.send(messages, to, &self.shared, |m| {
                if peer.queue.try_send(m).is_err() {
                    refused += 1;
                }
            });
            if refused > 0 {
                dropped += refused;
                unreachable.insert(to);
            }
            if matches!(sent, Sent::Kick) {
                let _ = peer.kick.try_send(());
            }
        }
        Shared::count(&self.shared.dropped, dropped);
        if !unreachable.is_empty() {
            self.shared.unreachable().append(&mut unreachable);
        }
    }

    fn unreachable(&mut self) -> Vec<NodeId> {
        std::mem::take(&mut *self.shared.unreachable())
            .into_iter()
            .collect()
    }

    fn set_peers(&mut self, peers: &[(NodeId, Vec<String>)]) -> Result<(), String> {
        let config = PeerConfig {
            member_id: self.member_id,
            cluster_id: self.cluster_id,
            listen: Vec::new(),
            peers: peers.to_vec(),
            http: None,
            removal: None,
        };
        let targets = check_members(&config).map_err(|e| e.to_string())?;
        self.replace_peers(targets);
        Ok(())
    }
}

impl Drop for TcpTransport {
    fn drop(&mut self) {
        self.shutdown();
    }
}

impl fmt::Debug for TcpTransport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TcpTransport")
            .field("member_id", &format_args!("{:x}", self.member_id))
            .field("local_addrs", &self.local_addrs)
            .field("peers", &self.peers.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

/// One peer URL, parsed once at start and resolved again at each dial (a board's address
/// may change while the member runs; `/etc/hosts` is read first).
#[derive(Debug, Clone, PartialEq, Eq)]
struct PeerUrl {
    text: String,
    host: String,
    port: u16,
}

fn parse_peer_url(text: &str) -> Result<PeerUrl, String> {
    let parts = crate::cli::argv::check_url(text)?;
    if parts.scheme != "http" {
        return Err(format!(
            "{}:// peer URLs are not supported (no TLS between peers): use http://",
            parts.scheme
        ));
    }
    let port = match parts.port.parse::<u16>() {
        Ok(p) if p != 0 => p,
        _ => return Err(format!("port {:?} is not a TCP port to dial", parts.port)),
    };
    if parts.host.is_empty() {
        return Err("no host".to_string());
    }
    Ok(PeerUrl {
        text: text.to_string(),
        host: parts.host,
        port,
    })
}

fn check_members(config: &PeerConfig) -> Result<Vec<(NodeId, Vec<PeerUrl>)>, TransportError> {
    let members = |reason: String| TransportError::Members(reason);
    if config.member_id == 0 {
        return Err(members("member id 0 is not a member".into()));
    }
    let mut seen = BTreeSet::new();
    let mut out = Vec::with_capacity(config.peers.len());
    for (peer, urls) in &config.peers {
        let peer = *peer;
        if peer == 0 || peer == config.member_id {
            return Err(members(format!(
                "member {peer:x} cannot be a peer of member {:x}",
                config.member_id
            )));
        }
        if !seen.insert(peer) {
            return Err(members(format!("member {peer:x} is listed twice")));
        }
        if urls.is_empty() {
            return Err(members(format!("member {peer:x} has no peer URLs")));
        }
        let parsed = urls
            .iter()
            .map(|url| {
                parse_peer_url(url).map_err(|reason| TransportError::PeerUrl {
                    peer,
                    url: url.clone(),
                    reason,
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        out.push((peer, parsed));
    }
    Ok(out)
}

/// An I/O error in Go's words ("connection refused"), as etcd's logs say it.
fn describe(e: &io::Error) -> String {
    let text = match e.kind() {
        io::ErrorKind::AddrInUse => "address already in use",
        io::ErrorKind::AddrNotAvailable => "cannot assign requested address",
        io::ErrorKind::PermissionDenied => "permission denied",
        io::ErrorKind::ConnectionRefused => "connection refused",
        io::ErrorKind::ConnectionReset => "connection reset by peer",
        io::ErrorKind::BrokenPipe => "broken pipe",
        io::ErrorKind::TimedOut => "i/o timeout",
        _ => return e.to_string(),
    };
    text.to_string()
}

/// `f`, or `None` when `limit` passes first.
async fn within<T>(limit: Duration, f: impl Future<Output = T>) -> Option<T> {
    future::or(async { Some(f.await) }, async {
        Timer::after(limit).await;
        None
    })
    .await
}

/// Says yes to a log line the first time, when its text changes, and once per
/// [`REPEAT_LOG_INTERVAL`] while it repeats.
#[derive(Debug, Default)]
struct LogThrottle {
    last: Option<(Instant, String)>,
}

impl LogThrottle {
    fn should_log(&mut self, line: &str) -> bool {
        self.should_log_at(line, Instant::now())
    }

    fn should_log_at(&mut self, line: &str, now: Instant) -> bool {
        let due = match &self.last {
            None => true,
            Some((at, last)) => last != line || now.duration_since(*at) >= REPEAT_LOG_INTERVAL,
        };
        if due {
            self.last = Some((now, line.to_string()));
        }
        due
    }
}

// ---- The peers thread -------------------------------------------------------------------

/// What the node thread's handle tells the peers thread.
enum Control {
    /// Keep this link to a new (or readdressed) peer.
    Link(Link),
    /// The accepted peers changed: close the connections of those gone.
    Accepted,
}

/// The peers thread: every listener's accept loop and every peer's link, until stopped.
fn run_peers(
    listeners: Vec<(Async<TcpListener>, SocketAddr)>,
    changes: Receiver<Control>,
    inbound: InboundConfig,
    stopped: Receiver<()>,
) {
    let executor = Rc::new(LocalExecutor::new());
    let inbound = Rc::new(Inbound::new(inbound, Rc::downgrade(&executor)));
    for (listener, addr) in listeners {
        executor
            .spawn(accept_loop(Rc::clone(&inbound), listener, addr))
            .detach();
    }
    // Weak, like the accepting side's: the executor owns this task.
    let spawner = Rc::downgrade(&executor);
    let accepting = Rc::clone(&inbound);
    executor
        .spawn(async move {
            while let Ok(change) = changes.recv().await {
                match change {
                    Control::Link(link) => {
                        if let Some(executor) = spawner.upgrade() {
                            executor.spawn(run_link(link)).detach();
                        }
                    }
                    Control::Accepted => accepting.close_unaccepted(),
                }
            }
        })
        .detach();
    drop(inbound);
    // Not async-io's `block_on`: this thread leaves the reactor to async-io's own thread
    // (see `server::start_executor`).
    smol::future::block_on(executor.run(async {
        // Returns when the handle closes the channel (shutdown or drop).
        let _ = stopped.recv().await;
    }));
    // Dropping the executor drops every task: each socket and listener closes here.
}

mod direct;
mod inbound;
mod outbound;

#[cfg(test)]
mod tests;
