//! The dialing side: one task per peer keeps one outbound connection, which only this member
//! writes. It resolves and dials the peer's URLs in turn, says hello, then writes whatever
//! the peer's queue holds in frames; on any failure it drops the queue (stale by the time
//! the peer is back), reports the peer unreachable, and redials with backoff.

use super::direct::{fill_batch, Direct};
use super::{describe, within, LogThrottle, PeerUrl, Shared};
use super::{BACKOFF_MAX, BACKOFF_MIN, DIAL_TIMEOUT, HANDSHAKE_TIMEOUT, WRITE_TIMEOUT};
use super::{LINK_DOWN, LINK_UP};
use crate::raft::{Message, NodeId};
use crate::transport::codec::{self, Batch};
use crate::transport::frame;
use crate::transport::handshake::{Hello, HelloReply, HANDSHAKE_PAYLOAD_BYTES_MAX};
use smol::channel::Receiver;
use smol::io::AsyncWriteExt;
use smol::{future, Async, Timer};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// One peer's outbound side: its queue and how to reach it.
pub(super) struct Link {
    pub(super) me: NodeId,
    pub(super) cluster_id: u64,
    pub(super) peer: NodeId,
    pub(super) urls: Vec<PeerUrl>,
    pub(super) queue: Receiver<Message>,
    /// Rung when the peer connects to this member (see `Shared::wake_link`).
    pub(super) wake: Receiver<()>,
    /// The node thread's direct line to the connection.
    pub(super) direct: Arc<Direct>,
    /// Rung when a direct write left the rest of a frame to this task.
    pub(super) kicked: Receiver<()>,
    pub(super) state: Arc<AtomicU8>,
    pub(super) shared: Arc<Shared>,
}

/// Why a dial did not give a connection.
enum DialError {
    /// The peer answered and refused: it will not change its mind soon.
    Refused(String),
    /// No address could be reached or finished the handshake.
    Failed(String),
}

impl Link {
    /// Drops what is queued (stale by now) and counts it; returns how much there was.
    fn discard_queued(&self) -> usize {
        let mut n = 0;
        while self.queue.try_recv().is_ok() {
            n += 1;
        }
        Shared::count(&self.shared.dropped, n);
        n
    }

    fn set_up(&self) {
        // Messages that slipped into the queue while the link was down are stale, and so
        // is a ring of the bell: the peer is reached.
        self.discard_queued();
        while self.wake.try_recv().is_ok() {}
        self.state.store(LINK_UP, Ordering::Release);
        self.shared.health.up(self.peer);
    }

    /// The link is down (after a failed dial or a lost connection): drop the queue and tell
    /// the core once, unless it is already known and nothing was dropped.
    fn set_down(&self) {
        Shared::count(&self.shared.dropped, self.direct.disconnected());
        let was = self.state.swap(LINK_DOWN, Ordering::AcqRel);
        // A retired link (its queue closed: the peer was dropped or readdressed) leaves the
        // peer's health to its successor.
        if !self.queue.is_closed() {
            self.shared.health.down(self.peer);
        }
        if self.discard_queued() > 0 || was != LINK_DOWN {
            self.shared.unreachable().insert(self.peer);
        }
    }
}

/// Keeps the link to one peer: dial, pump the queue, and redial with backoff, until the
/// transport stops.
pub(super) async fn run_link(link: Link) {
    // However the task ends (its peer dropped, or dropped with the executor when the
    // transport stops), the node thread's handle on the connection goes with it: the
    // connection closes, and later sends queue (and are dropped) instead of writing.
    let _unlink = Unlink(Arc::clone(&link.direct));
    let mut backoff = Backoff::new(link.me, link.peer);
    let mut log = LinkLog::new(link.peer);
    // The queue closes when the handle is dropped; the executor is stopping then too.
    while !link.queue.is_closed() {
        match dial(&link).await {
            Ok((stream, addr)) => {
                link.set_up();
                match stream.get_ref().try_clone() {
                    Ok(conn) => link.direct.connected(conn),
                    // Everything then goes through the queue, as before direct writes.
                    Err(e) => log::debug!("no direct line to peer {:x}: {e}", link.peer),
                }
                backoff.reset();
                log.connected(addr);
                let why = pump(&link, &stream).await;
                link.set_down();
                log.lost(&why);
            }
            Err(DialError::Refused(reason)) => {
                link.set_down();
                backoff.refused();
                log.failed(&reason);
                if crate::transport::handshake::says_removed(&reason) {
                    if let Some(r) = &link.shared.removal {
                        (r.removed_self)(&reason);
                    }
                }
            }
            Err(DialError::Failed(reason)) => {
                link.set_down();
                log.failed(&reason);
            }
        }
        let delay = backoff.next_delay();
        let rung = future::or(
            async {
                Timer::after(delay).await;
                false
            },
            async {
                match link.wake.recv().await {
                    Ok(()) => true,
                    // The transport dropped the bell with the link: wait out the delay.
                    Err(_) => future::pending().await,
                }
            },
        )
        .await;
        if rung {
            backoff.reset();
        }
    }
}

/// Tries each URL of the peer and each of its addresses in turn; returns the first
/// connection whose handshake the peer accepted.
async fn dial(link: &Link) -> Result<(Async<TcpStream>, SocketAddr), DialError> {
    let mut last = String::from("no address to dial");
    for url in &link.urls {
        let addrs = match resolve(url).await {
            Ok(addrs) => addrs,
            Err(e) => {
                last = format!("{}: {e}", url.text);
                continue;
            }
        };
        for addr in addrs {
            let stream = match within(DIAL_TIMEOUT, Async::<TcpStream>::connect(addr)).await {
                Some(Ok(stream)) => stream,
                Some(Err(e)) => {
                    last = format!("dial tcp {addr}: {}", describe(&e));
                    continue;
                }
                None => {
                    last = format!("dial tcp {addr}: i/o timeout");
                    continue;
                }
            };
            // Raft messages are small and latency-bound: do not let Nagle hold them back.
            if let Err(e) = stream.get_ref().set_nodelay(true) {
                log::debug!("TCP_NODELAY on the connection to {addr}: {e}");
            }
            match within(HANDSHAKE_TIMEOUT, offer_hello(link, &stream)).await {
                Some(Ok(())) => return Ok((stream, addr)),
                Some(Err(DialError::Refused(reason))) => {
                    return Err(DialError::Refused(format!(
                        "{addr} refused the connection: {reason}"
                    )))
                }
                Some(Err(DialError::Failed(reason))) => {
                    last = format!("handshake with {addr}: {reason}");
                }
                None => {
                    last = format!("handshake with {addr}: no answer within {HANDSHAKE_TIMEOUT:?}");
                }
            }
        }
    }
    Err(DialError::Failed(last))
}

/// A peer URL's addresses: literals at once, names through `/etc/hosts` then DNS on the
/// blocking pool (a slow resolver must not stall the other peers' tasks).
async fn resolve(url: &PeerUrl) -> Result<Vec<SocketAddr>, String> {
    if let Ok(ip) = url.host.parse::<IpAddr>() {
        return Ok(vec![SocketAddr::new(ip, url.port)]);
    }
    let (host, port) = (url.host.clone(), url.port);
    smol::unblock(move || crate::util::hosts::resolve(&host, port)).await
}

/// Sends our hello and reads the answer.
async fn offer_hello(link: &Link, stream: &Async<TcpStream>) -> Result<(), DialError> {
    let failed = |why: String| DialError::Failed(why);
    let hello = Hello::new(link.cluster_id, link.me, link.peer).encode();
    let framed =
        frame::encode(&hello).ok_or_else(|| failed("hello over the frame limit".into()))?;
    let mut writer = stream;
    writer
        .write_all(&framed)
        .await
        .map_err(|e| failed(describe(&e)))?;
    let mut buf = Vec::new();
    let mut reader = stream;
    let range = codec::read_frame(&mut reader, &mut buf, HANDSHAKE_PAYLOAD_BYTES_MAX)
        .await
        .map_err(|e| failed(e.to_string()))?
        .ok_or_else(|| failed("closed by the peer before its answer".into()))?;
    let reply = HelloReply::decode(&buf[range]).map_err(failed)?;
    if reply.accepted {
        Ok(())
    } else {
        Err(DialError::Refused(reply.reason))
    }
}

/// Writes the peer's queued messages, batched into frames, until the connection fails;
/// returns why. The peer never writes after the handshake, so a readable socket means the
/// peer closed it: noticed at once, not at the next write (which the kernel would accept
/// and lose).
async fn pump(link: &Link, stream: &Async<TcpStream>) -> String {
    let mut batch = Batch::new();
    let mut carry: Option<Message> = None;
    // One watch for the whole connection: made anew for every wait, it read the socket
    // (nothing there) and re-armed the reactor's interest once per frame.
    let mut closed = std::pin::pin!(closed_by_peer(stream));
    loop {
        let first = match carry.take() {
            Some(m) => m,
            None => {
                link.direct.offer(|| link.queue.is_empty());
                let woke = future::or(
                    future::or(
                        async {
                            match link.queue.recv().await {
                                Ok(m) => Woke::Message(m),
                                Err(_) => Woke::Shutdown,
                            }
                        },
                        async {
                            match link.kicked.recv().await {
                                Ok(()) => Woke::Kicked,
                                Err(_) => future::pending().await,
                            }
                        },
                    ),
                    async { Woke::Closed(closed.as_mut().await) },
                )
                .await;
                let rest = link.direct.reclaim();
                if !rest.bytes.is_empty() {
                    if let Err(why) = write_frame(stream, &rest.bytes).await {
                        let waiting = usize::from(matches!(woke, Woke::Message(_)));
                        Shared::count(&link.shared.dropped, rest.messages + waiting);
                        return why;
                    }
                    Shared::count(&link.shared.sent, rest.messages);
                }
                match woke {
                    Woke::Message(m) => m,
                    Woke::Kicked => continue,
                    Woke::Shutdown => return "the transport is shutting down".into(),
                    Woke::Closed(why) => return why,
                }
            }
        };
        carry = fill_batch(
            &mut batch,
            first,
            || link.queue.try_recv().ok(),
            link.peer,
            &link.shared,
        );
        let count = batch.len();
        let Some(framed) = batch.finish() else {
            // Only too-large messages, or (were the bound wrong) unencodable: logged.
            Shared::count(&link.shared.dropped, count);
            continue;
        };
        let Err(why) = write_frame(stream, &framed).await else {
            Shared::count(&link.shared.sent, count);
            continue;
        };
        // This frame and the message waiting for the next one are lost.
        Shared::count(&link.shared.dropped, count + usize::from(carry.is_some()));
        return why;
    }
}

/// Closes the node thread's handle on the link's connection when dropped.
struct Unlink(Arc<Direct>);

impl Drop for Unlink {
    fn drop(&mut self) {
        self.0.disconnected();
    }
}

/// What ended an idle link task's wait.
enum Woke {
    Message(Message),
    /// A direct write left the rest of a frame.
    Kicked,
    Shutdown,
    Closed(String),
}

/// Writes a whole frame. The timeout is on progress, not on the frame: a large frame over a
/// slow link may take longer than [`WRITE_TIMEOUT`], a peer that takes nothing may not.
async fn write_frame(stream: &Async<TcpStream>, framed: &[u8]) -> Result<(), String> {
    let mut writer = stream;
    let mut written = 0;
    while written < framed.len() {
        match within(WRITE_TIMEOUT, writer.write(&framed[written..])).await {
            Some(Ok(0)) => return Err("write failed: connection closed".into()),
            Some(Ok(n)) => written += n,
            Some(Err(e)) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Some(Err(e)) => return Err(format!("write failed: {}", describe(&e))),
            None => {
                return Err(format!(
                    "the peer took no data for {WRITE_TIMEOUT:?} (not reading)"
                ))
            }
        }
    }
    Ok(())
}

/// Resolves when the peer closes (or breaks) our outbound connection. It waits for the
/// socket to become readable before it reads, so polling it again while nothing arrived
/// costs no system call.
async fn closed_by_peer(stream: &Async<TcpStream>) -> String {
    use std::io::Read;
    let mut byte = [0u8; 1];
    loop {
        if let Err(e) = stream.readable().await {
            return describe(&e);
        }
        match (&mut stream.get_ref()).read(&mut byte) {
            Ok(0) => return "closed by the peer".into(),
            Ok(_) => {
                return "the peer wrote on a connection only we write (protocol violation)".into()
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return describe(&e),
        }
    }
}

/// Reconnect delays: doubling from [`BACKOFF_MIN`] to [`BACKOFF_MAX`], plus up to a quarter
/// of jitter so members restarted together do not redial in lockstep. The jitter is derived
/// from the two member ids and the attempt number: no global randomness, same on every run.
#[derive(Debug, Clone)]
pub(super) struct Backoff {
    delay: Duration,
    seed: u64,
    attempt: u64,
}

impl Backoff {
    pub(super) fn new(me: NodeId, peer: NodeId) -> Backoff {
        Backoff {
            delay: BACKOFF_MIN,
            seed: me.rotate_left(32) ^ peer,
            attempt: 0,
        }
    }

    pub(super) fn next_delay(&mut self) -> Duration {
        let base = self.delay;
        self.delay = (self.delay * 2).min(BACKOFF_MAX);
        self.attempt += 1;
        let jitter = (splitmix64(self.seed ^ self.attempt) % 1024) as u32;
        base + base * jitter / 4096
    }

    pub(super) fn reset(&mut self) {
        self.delay = BACKOFF_MIN;
    }

    pub(super) fn refused(&mut self) {
        self.delay = BACKOFF_MAX;
    }
}

fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The link's state changes, logged: connected (info), lost (warn), and failures to
/// (re)connect (warn, throttled: the first, a changed reason, then once a minute).
struct LinkLog {
    peer: NodeId,
    failures: u64,
    down_since: Option<Instant>,
    throttle: LogThrottle,
}

impl LinkLog {
    fn new(peer: NodeId) -> LinkLog {
        LinkLog {
            peer,
            failures: 0,
            down_since: None,
            throttle: LogThrottle::default(),
        }
    }

    fn connected(&mut self, addr: SocketAddr) {
        match (self.failures, self.down_since) {
            (0, _) | (_, None) => log::info!("connected to peer {:x} at {addr}", self.peer),
            (n, Some(since)) => log::info!(
                "connected to peer {:x} at {addr} after {n} failed attempts over {}s",
                self.peer,
                since.elapsed().as_secs()
            ),
        }
        self.failures = 0;
        self.down_since = None;
        self.throttle = LogThrottle::default();
    }

    fn lost(&mut self, why: &str) {
        log::warn!("lost connection to peer {:x}: {why}", self.peer);
        self.down_since = Some(Instant::now());
    }

    fn failed(&mut self, why: &str) {
        self.failures += 1;
        let since = *self.down_since.get_or_insert_with(Instant::now);
        if self.throttle.should_log(why) {
            if self.failures == 1 {
                log::warn!("cannot reach peer {:x}: {why}", self.peer);
            } else {
                log::warn!(
                    "cannot reach peer {:x} ({} attempts over {}s): {why}",
                    self.peer,
                    self.failures,
                    since.elapsed().as_secs()
                );
            }
        }
    }
}
