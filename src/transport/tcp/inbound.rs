//! The accepting side: peers' connections to this member, which it only reads. Each one
//! first says who it is (the handshake, with a timeout and a small size limit), then
//! carries frames of messages that must all be from that peer and for this member.

use super::{
    describe, within, DeliverFn, LogThrottle, Shared, HANDSHAKE_TIMEOUT, PENDING_HANDSHAKES_MAX,
};
use crate::raft::{Message, NodeId};
use crate::transport::codec;
use crate::transport::frame::{self, PAYLOAD_BYTES_MAX};
use crate::transport::handshake::{Expect, Hello, HelloReply, HANDSHAKE_PAYLOAD_BYTES_MAX};
use smol::channel::{self, Receiver, Sender};
use smol::io::AsyncWriteExt;
use smol::{future, Async, LocalExecutor, Timer};
use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::rc::{Rc, Weak};
use std::sync::Arc;
use std::time::Duration;

/// What the accepting side needs, owned by the peers thread.
pub(super) struct InboundConfig {
    pub(super) me: NodeId,
    pub(super) cluster_id: u64,
    pub(super) deliver: Arc<DeliverFn>,
    pub(super) http: Option<super::PeerHttp>,
    pub(super) shared: Arc<Shared>,
}

/// The accepting side's state on the peers thread.
pub(super) struct Inbound {
    config: InboundConfig,
    // Weak: the executor owns the tasks that hold this, and dropping it must drop them.
    executor: Weak<LocalExecutor<'static>>,
    // Connections accepted whose handshake is not done. Invariant: <= PENDING_HANDSHAKES_MAX.
    pending: Cell<usize>,
    // The newest connection of each peer, by the sender that keeps it open: a peer dials
    // one connection at a time, so a newer one means the older is dead (a peer that
    // rebooted without closing it); closing the older one bounds connections per peer to 1.
    current: RefCell<BTreeMap<NodeId, Sender<()>>>,
    accept_log: RefCell<LogThrottle>,
}

impl Inbound {
    /// The accepting side of `config`, spawning connection tasks on `executor`.
    pub(super) fn new(config: InboundConfig, executor: Weak<LocalExecutor<'static>>) -> Inbound {
        Inbound {
            config,
            executor,
            pending: Cell::new(0),
            current: RefCell::new(BTreeMap::new()),
            accept_log: RefCell::new(LogThrottle::default()),
        }
    }

    /// Closes the connections of members no longer accepted as peers (removed from the
    /// cluster): what they send is no longer taken.
    pub(super) fn close_unaccepted(&self) {
        let accepted = self.config.shared.accepted();
        self.current.borrow_mut().retain(|id, keep| {
            let stay = accepted.contains(id);
            if !stay {
                keep.close();
            }
            stay
        });
    }
}

/// Accepts peer connections on `listener`, one task each, until the executor stops.
pub(super) async fn accept_loop(
    inbound: Rc<Inbound>,
    listener: Async<TcpListener>,
    addr: SocketAddr,
) {
    loop {
        let (stream, remote) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of file descriptors, most likely: wait instead of spinning.
                let reason = format!("accepting peer connections on {addr}: {e}");
                if inbound.accept_log.borrow_mut().should_log(&reason) {
                    log::warn!("{reason}");
                }
                Timer::after(Duration::from_millis(100)).await;
                continue;
            }
        };
        if inbound.pending.get() >= PENDING_HANDSHAKES_MAX {
            let reason = format!(
                "refusing peer connections on {addr}: {PENDING_HANDSHAKES_MAX} handshakes already pending"
            );
            if inbound.accept_log.borrow_mut().should_log(&reason) {
                log::warn!("{reason} (from {remote})");
            }
            continue;
        }
        let Some(executor) = inbound.executor.upgrade() else {
            return;
        };
        inbound.pending.set(inbound.pending.get() + 1);
        executor
            .spawn(serve_inbound(Rc::clone(&inbound), stream, remote))
            .detach();
    }
}

/// Leaves the pending count however the handshake ends (including the task being dropped).
struct PendingSlot<'a>(&'a Cell<usize>);

impl Drop for PendingSlot<'_> {
    fn drop(&mut self) {
        self.0.set(self.0.get().saturating_sub(1));
    }
}

/// The longest HTTP request head the peer port reads.
const HTTP_HEAD_BYTES_MAX: usize = 4096;

async fn serve_inbound(inbound: Rc<Inbound>, stream: Async<TcpStream>, remote: SocketAddr) {
    let slot = PendingSlot(&inbound.pending);
    // etcd's peer port also speaks HTTP (`GET /members`, snapshots): a joining member asks
    // there who it is. A frame never starts with a method name.
    if let Some(http) = &inbound.config.http {
        let mut first = [0u8; 4];
        let peeked = within(HANDSHAKE_TIMEOUT, stream.peek(&mut first)).await;
        if matches!(peeked, Some(Ok(4))) && (&first == b"GET " || &first == b"POST") {
            match within(HANDSHAKE_TIMEOUT, read_http_head(&stream)).await {
                Some(Ok((method, target))) => match stream.into_inner() {
                    Ok(std_stream) => (http.0)(&method, &target, std_stream),
                    Err(e) => log::debug!("peer HTTP request from {remote}: {e}"),
                },
                Some(Err(e)) => log::debug!("bad peer HTTP request from {remote}: {e}"),
                None => log::debug!("peer HTTP request from {remote} timed out"),
            }
            drop(slot);
            return;
        }
    }
    let handshake = within(
        HANDSHAKE_TIMEOUT,
        accept_handshake(&inbound, &stream, remote),
    );
    let from = match handshake.await {
        Some(Ok(from)) => {
            // It is back: this member's link to it need not wait out its backoff.
            inbound.config.shared.wake_link(from);
            from
        }
        Some(Err(())) => return,
        None => {
            log::debug!(
                "peer connection from {remote} sent no handshake within {HANDSHAKE_TIMEOUT:?}"
            );
            return;
        }
    };
    drop(slot);
    let (keep, superseded) = channel::bounded::<()>(1);
    if let Some(older) = inbound.current.borrow_mut().insert(from, keep.clone()) {
        older.close();
    }
    log::info!("accepted peer connection from member {from:x} at {remote}");
    let end = read_messages(&inbound, stream, from, &superseded).await;
    match end {
        Ok(why) => log::info!("peer connection from member {from:x} at {remote} ended: {why}"),
        Err(why) => {
            Shared::count(&inbound.config.shared.bad_input, 1);
            log::warn!("closing peer connection from member {from:x} at {remote}: {why}");
        }
    }
    let mut current = inbound.current.borrow_mut();
    if current.get(&from).is_some_and(|s| s.same_channel(&keep)) {
        current.remove(&from);
    }
}

/// Reads a request head byte by byte up to its blank line (nothing of a body is taken from
/// the socket) and returns the method and the request target.
async fn read_http_head(stream: &Async<TcpStream>) -> io::Result<(String, String)> {
    use smol::io::AsyncReadExt;
    let mut head = Vec::new();
    let mut reader = stream;
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if head.len() >= HTTP_HEAD_BYTES_MAX {
            return Err(io::Error::other("request head too long"));
        }
        if reader.read(&mut byte).await? == 0 {
            return Err(io::Error::other("closed inside the request head"));
        }
        head.push(byte[0]);
    }
    let line = head.split(|b| *b == b'\r').next().unwrap_or_default();
    let text = String::from_utf8_lossy(line);
    let mut parts = text.split(' ');
    match (parts.next(), parts.next()) {
        (Some(method @ ("GET" | "POST")), Some(target)) => {
            Ok((method.to_string(), target.to_string()))
        }
        _ => Err(io::Error::other("not a GET or POST request")),
    }
}

/// Reads and judges the dialer's hello, answers it; `Ok(peer)` when the connection is taken.
/// Logs and counts every refusal.
async fn accept_handshake(
    inbound: &Inbound,
    stream: &Async<TcpStream>,
    remote: SocketAddr,
) -> Result<NodeId, ()> {
    let config = &inbound.config;
    let mut buf = Vec::new();
    let mut reader = stream;
    let payload = match codec::read_frame(&mut reader, &mut buf, HANDSHAKE_PAYLOAD_BYTES_MAX).await
    {
        Ok(Some(range)) => &buf[range],
        Ok(None) => {
            log::debug!("peer connection from {remote} closed before its handshake");
            return Err(());
        }
        Err(e) => {
            // Not even a frame: nothing that speaks our protocol, so no reply either.
            Shared::count(&config.shared.bad_input, 1);
            log::warn!("closing peer connection from {remote}: bad handshake: {e}");
            return Err(());
        }
    };
    let peers = config.shared.accepted();
    let expect = Expect {
        cluster_id: config.cluster_id,
        member_id: config.me,
        peers: &peers,
    };
    let judged = Hello::decode(payload).and_then(|hello| {
        let removed = |id| {
            !peers.contains(&id)
                && hello.cluster_id == config.cluster_id
                && config
                    .shared
                    .removal
                    .as_ref()
                    .is_some_and(|r| (r.is_removed)(id))
        };
        if removed(hello.from) {
            return Err(crate::transport::handshake::removed_reason(
                hello.from,
                config.cluster_id,
            ));
        }
        hello.check(&expect).map(|()| hello)
    });
    let reply = match &judged {
        Ok(_) => HelloReply::accept(),
        Err(reason) => {
            Shared::count(&config.shared.refused, 1);
            log::warn!("refusing peer connection from {remote}: {reason}");
            HelloReply::refuse(reason)
        }
    };
    let mut writer = stream;
    let written = match frame::encode(&reply.encode()) {
        Some(f) => writer.write_all(&f).await,
        None => Err(io::Error::other("handshake reply over the frame limit")),
    };
    match (judged, written) {
        (Ok(hello), Ok(())) => Ok(hello.from),
        (Ok(hello), Err(e)) => {
            log::debug!(
                "peer connection from member {:x} at {remote} failed during the handshake: {e}",
                hello.from
            );
            Err(())
        }
        (Err(_), _) => Err(()),
    }
}

/// Reads frames from peer `from` and delivers their messages until the connection ends:
/// `Ok(why)` for a normal end, `Err(why)` for bad input.
/// Reads the peer's frames on a thread of its own, with blocking reads, until the
/// connection ends or a newer one from the same member supersedes it. Read through the
/// reactor, each frame woke async-io's thread, which woke this executor's, which handed
/// the messages to the node: a thread that waits in `read` itself is woken by the data
/// (one wake-up per frame instead of two; 0.21 per PUT on a 3-member cluster at 64
/// connections).
async fn read_messages(
    inbound: &Inbound,
    stream: Async<TcpStream>,
    from: NodeId,
    superseded: &Receiver<()>,
) -> Result<String, String> {
    let stream = stream
        .into_inner()
        .and_then(|s| s.set_nonblocking(false).map(|()| s))
        .map_err(|e| format!("cannot take over the connection: {e}"))?;
    // Shutting the socket down ends the reader's blocking read: when this task ends,
    // and when it is dropped with the executor (the transport stops).
    let closer = Closer(
        stream
            .try_clone()
            .map_err(|e| format!("cannot take over the connection: {e}"))?,
    );
    let (done, ended) = channel::bounded(1);
    let reader = Reader {
        me: inbound.config.me,
        from,
        deliver: Arc::clone(&inbound.config.deliver),
        shared: Arc::clone(&inbound.config.shared),
    };
    std::thread::Builder::new()
        .name("peer-in".into())
        .stack_size(READER_STACK_BYTES)
        .spawn(move || {
            let end = reader.run(stream);
            let _ = done.try_send(end);
        })
        .map_err(|e| format!("cannot start its reader thread: {e}"))?;
    let end = future::or(
        async {
            ended
                .recv()
                .await
                .unwrap_or_else(|_| Ok("its reader thread ended".into()))
        },
        async {
            let _ = superseded.recv().await;
            Ok("superseded by a newer connection from the same member".into())
        },
    )
    .await;
    drop(closer);
    end
}

/// The reader thread's stack: it decodes into the heap and calls `deliver`, nothing deep.
const READER_STACK_BYTES: usize = 128 << 10;

/// Shuts its socket down (both ways) when dropped.
struct Closer(TcpStream);

impl Drop for Closer {
    fn drop(&mut self) {
        let _ = self.0.shutdown(std::net::Shutdown::Both);
    }
}

/// What a reader thread needs.
struct Reader {
    me: NodeId,
    from: NodeId,
    deliver: Arc<DeliverFn>,
    shared: Arc<Shared>,
}

/// How much of a peer's stream one read takes in. Small frames (append responses,
/// heartbeats) arrive many per wake-up: buffered, they cost one read between them instead of
/// two each (header, payload) and a third that finds nothing.
const READ_BUFFER_BYTES: usize = 32 * 1024;

impl Reader {
    /// Reads frames and delivers their messages until the connection ends: `Ok(why)` for
    /// a normal end, `Err(why)` for bad input.
    fn run(&self, stream: TcpStream) -> Result<String, String> {
        // Blocking reads behind the async frame reader: this thread has nothing else to do
        // while it waits, and no reactor is involved.
        let mut reader = smol::io::BufReader::with_capacity(
            READ_BUFFER_BYTES,
            smol::io::AssertAsync::new(stream),
        );
        smol::future::block_on(self.read_frames(&mut reader))
    }

    async fn read_frames<R: smol::io::AsyncRead + Unpin>(
        &self,
        reader: &mut R,
    ) -> Result<String, String> {
        let mut buf = Vec::new();
        loop {
            let range = match codec::read_frame(reader, &mut buf, PAYLOAD_BYTES_MAX).await {
                Ok(None) => return Ok("closed by the peer".into()),
                Ok(Some(range)) => range,
                Err(codec::ReadError::Io(e)) => return Ok(describe(&e)),
                Err(e) => return Err(e.to_string()),
            };
            let messages = codec::decode_messages(&buf[range])?;
            self.check(&messages)?;
            Shared::count(&self.shared.delivered, messages.len());
            for m in messages {
                (self.deliver)(m);
            }
        }
    }

    // The whole frame is judged before any of it is delivered.
    fn check(&self, messages: &[Message]) -> Result<(), String> {
        match messages
            .iter()
            .find(|m| m.from != self.from || m.to != self.me)
        {
            Some(m) => Err(format!(
                "a {} message from {:x} to {:x} on the connection of member {:x} to {:x}",
                m.body.kind(),
                m.from,
                m.to,
                self.from,
                self.me
            )),
            None => Ok(()),
        }
    }
}
