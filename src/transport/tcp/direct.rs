//! The node thread's direct line to an idle peer connection. Handing every message to the
//! peer's task woke the peers thread for each of the node's Readies (the largest single
//! source of wake-ups under load: 0.29 per PUT, 3 members at 64 connections). While the
//! task has nothing queued it leaves the connection to `send`, which frames the messages
//! and writes them with a non-blocking write on the node thread. A write the socket cannot
//! take at once is never waited for: what is left of the frame, and every later message,
//! go to the task, which writes them in order.
//!
//! One lock guards the hand-over. The task offers the connection only with its queue
//! empty, and `send` queues only under the lock while the connection is not offered, so a
//! direct write never overtakes a queued message and two frames never interleave.

use super::Shared;
use crate::raft::{Message, NodeId};
use crate::transport::codec::{self, Batch, Push};
use crate::transport::frame::PAYLOAD_BYTES_MAX;
use std::io::{self, Write};
use std::net::TcpStream;
use std::sync::{Mutex, MutexGuard};

/// A peer link's connection as the node thread may use it.
#[derive(Default)]
pub(super) struct Direct {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// A second handle on the link's connection (the same non-blocking socket), while it
    /// is up.
    conn: Option<TcpStream>,
    /// The task is idle and its queue empty: `send` may write.
    offered: bool,
    /// The unwritten end of a frame `send` began, and its message count: the task writes
    /// it before anything else.
    rest: Rest,
}

/// Bytes of a frame begun on the node thread, for the link's task to finish.
#[derive(Default)]
pub(super) struct Rest {
    /// The frame's remaining bytes.
    pub(super) bytes: Vec<u8>,
    /// Messages in that frame.
    pub(super) messages: usize,
}

/// What [`Direct::send`] did.
pub(super) enum Sent {
    /// Everything was written, or queued for a task that is already awake.
    Done,
    /// The task has a frame's rest or newly queued messages to write: wake it.
    Kick,
}

impl Direct {
    fn lock(&self) -> MutexGuard<'_, State> {
        // Each change is a plain assignment: the state is valid whatever a panicking
        // holder did.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The link's connection is up; `conn` is a second handle on its socket.
    pub(super) fn connected(&self, conn: TcpStream) {
        let mut state = self.lock();
        state.conn = Some(conn);
        state.offered = false;
        state.rest = Rest::default();
    }

    /// The connection is gone: a frame's rest is lost with it (returned to be counted).
    pub(super) fn disconnected(&self) -> usize {
        let mut state = self.lock();
        state.conn = None;
        state.offered = false;
        std::mem::take(&mut state.rest).messages
    }

    /// The task is about to wait: `send` may write while `queue_empty` holds, which the
    /// lock keeps true until `send` takes the connection back.
    pub(super) fn offer(&self, queue_empty: impl FnOnce() -> bool) {
        let mut state = self.lock();
        if state.conn.is_some() && state.rest.bytes.is_empty() && queue_empty() {
            state.offered = true;
        }
    }

    /// The task woke: it owns the connection again and writes the returned rest first.
    pub(super) fn reclaim(&self) -> Rest {
        let mut state = self.lock();
        state.offered = false;
        std::mem::take(&mut state.rest)
    }

    /// Writes `messages` to the peer now if the task offered the connection, in frames as
    /// the task would; otherwise, or from the first frame the socket does not take whole,
    /// hands them to `enqueue` (in order, under the lock).
    pub(super) fn send(
        &self,
        messages: Vec<Message>,
        peer: NodeId,
        shared: &Shared,
        enqueue: impl FnMut(Message),
    ) -> Sent {
        let mut state = self.lock();
        let mut messages = messages.into_iter();
        let conn = match (&state.conn, state.offered) {
            (Some(conn), true) => conn,
            _ => {
                messages.for_each(enqueue);
                return Sent::Done;
            }
        };
        let mut batch = Batch::new();
        let mut carry = messages.next();
        // Set when a frame did not go whole: the task takes over from there.
        let mut stopped: Option<Rest> = None;
        while let Some(first) = carry.take() {
            carry = fill_batch(&mut batch, first, || messages.next(), peer, shared);
            let count = batch.len();
            let Some(framed) = batch.finish() else {
                Shared::count(&shared.dropped, count);
                continue;
            };
            match write_now(conn, &framed) {
                Ok(n) if n == framed.len() => Shared::count(&shared.sent, count),
                Ok(n) => {
                    stopped = Some(Rest {
                        bytes: framed[n..].to_vec(),
                        messages: count,
                    });
                    break;
                }
                // The task sees the broken connection itself (it watches the socket) and
                // redials; this frame is lost as any write to a dead peer is.
                Err(e) => {
                    log::debug!("write to peer {peer:x}: {e}");
                    Shared::count(&shared.dropped, count);
                    stopped = Some(Rest::default());
                    break;
                }
            }
        }
        let Some(rest) = stopped else {
            return Sent::Done;
        };
        state.rest = rest;
        state.offered = false;
        carry.into_iter().chain(messages).for_each(enqueue);
        Sent::Kick
    }
}

/// Writes as much of `bytes` as the socket takes without waiting.
fn write_now(mut conn: &TcpStream, bytes: &[u8]) -> io::Result<usize> {
    let mut written = 0;
    while written < bytes.len() {
        match conn.write(&bytes[written..]) {
            Ok(0) => {
                return Err(io::Error::new(
                    io::ErrorKind::WriteZero,
                    "connection closed",
                ))
            }
            Ok(n) => written += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(written)
}

/// Adds `first`, then what `next` gives, to `batch` until it is full; returns the message
/// that did not fit. A message larger than any frame is dropped, counted and logged.
pub(super) fn fill_batch(
    batch: &mut Batch,
    first: Message,
    mut next: impl FnMut() -> Option<Message>,
    peer: NodeId,
    shared: &Shared,
) -> Option<Message> {
    let mut m = Some(first);
    while let Some(message) = m.take() {
        match batch.push(message) {
            Push::Added => m = next(),
            // The batch has at least one message: a full one is sent, this one goes next.
            Push::Full(message) => return Some(message),
            Push::TooLarge(message) => {
                Shared::count(&shared.dropped, 1);
                log::warn!(
                    "dropping a {} message to {peer:x}: about {} bytes, over the {PAYLOAD_BYTES_MAX}-byte frame limit",
                    message.body.kind(),
                    codec::bytes_bound(&message)
                );
                m = next();
            }
        }
    }
    None
}
