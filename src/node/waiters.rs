//! The clients waiting for their writes to apply: the node thread adds them as it proposes
//! or forwards, and whichever thread applied their entries answers them. In a cluster that is
//! the apply thread, as soon as a batch is applied and before its commit: answering from
//! there, not through the node thread, takes one thread hand-off off every write's path
//! (under load each hand-off waits its turn for a CPU).
//!
//! Events go to the watch hub before any client of the same batch is answered, so a client
//! that saw its write's response never registers a watch that the write itself would wake.

use super::batch::AppliedEntry;
use super::{ProposeReply, LOST_CAUSE};
use crate::raft::NodeId;
use crate::store::V2Error;
use crate::watch::WatchHub;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};

/// The waiting clients, shared by the node and apply threads.
#[derive(Clone)]
pub struct Waiters {
    inner: Arc<Mutex<Inner>>,
    hub: Arc<WatchHub>,
}

/// What the lock guards.
pub struct Inner {
    /// This member's id: forwarded entries tagged with it are its own clients'.
    me: NodeId,
    /// Proposals of this member as leader: log index -> (term, reply).
    pub pending: BTreeMap<u64, (u64, ProposeReply)>,
    /// Commands forwarded to a leader: request id -> (that leader, reply).
    pub forwarded: HashMap<u64, (NodeId, ProposeReply)>,
    /// The highest index whose results went to the hub and the clients.
    pub delivered_through: u64,
}

impl Waiters {
    /// No one waits yet; results at or below `applied` were delivered by an earlier run.
    pub fn new(me: NodeId, applied: u64, hub: Arc<WatchHub>) -> Waiters {
        Waiters {
            inner: Arc::new(Mutex::new(Inner {
                me,
                pending: BTreeMap::new(),
                forwarded: HashMap::new(),
                delivered_through: applied,
            })),
            hub,
        }
    }

    /// The tables, for the node thread's bookkeeping.
    pub fn lock(&self) -> MutexGuard<'_, Inner> {
        // A thread that panicked while holding the lock took the process down (panic =
        // abort); in tests the tables are still consistent enough to answer errors.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Forgets the clients that gave up (timed out, disconnected): under a long partition
    /// they would otherwise pile up, and a deposed leader's proposals past what the new
    /// leader ever writes would wait for an index that never comes.
    pub fn drop_abandoned(&self) {
        let mut inner = self.lock();
        inner.forwarded.retain(|_, (_, r)| !r.is_closed());
        inner.pending.retain(|_, (_, r)| !r.is_closed());
    }

    /// Answers every waiting client with `cause` (the node stops).
    pub fn fail_all(&self, cause: &str) {
        let mut inner = self.lock();
        for (_, (_, reply)) in std::mem::take(&mut inner.pending) {
            let _ = reply.try_send(Err(V2Error::new(300, cause, 0)));
        }
        for (_, (_, reply)) in std::mem::take(&mut inner.forwarded) {
            let _ = reply.try_send(Err(V2Error::new(300, cause, 0)));
        }
    }

    /// Publishes the events of entries not delivered yet and answers their clients.
    pub fn deliver(&self, results: Vec<AppliedEntry>) {
        let mut inner = self.lock();
        let results: Vec<AppliedEntry> = results
            .into_iter()
            .filter(|a| a.index > inner.delivered_through)
            .collect();
        let Some(last) = results.last().map(|a| a.index) else {
            return;
        };
        inner.delivered_through = last;
        for applied in &results {
            if let Ok(events) = &applied.result {
                self.hub.publish(events);
            }
        }
        let me = inner.me;
        for applied in results {
            let reply = match applied.origin {
                Some((origin, request)) if origin == me => {
                    inner.forwarded.remove(&request).map(|(_, reply)| reply)
                }
                _ => match inner.pending.remove(&applied.index) {
                    Some((term, reply)) if term == applied.term => Some(reply),
                    // Another leader's entry took that index: ours is lost.
                    Some((_, reply)) => {
                        let _ = reply.try_send(Err(V2Error::new(300, LOST_CAUSE, 0)));
                        None
                    }
                    None => None,
                },
            };
            if let Some(reply) = reply {
                let answer = applied.result.and_then(|events| {
                    events.into_iter().next().map(|a| a.event).ok_or_else(|| {
                        V2Error::new(300, "the command was applied without an event", 0)
                    })
                });
                let _ = reply.try_send(Ok(answer));
            }
        }
    }
}
