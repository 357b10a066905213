//! The simulated network: every message gets a delivery time drawn from the seed, so loss,
//! delay, duplication and reordering all come from the same PRNG; partitions cut links, one
//! way or both, and also drop what is in flight on a cut link when it arrives.
//!
//! A link is FIFO by default, as the TCP connection per peer the transport will use is:
//! a message is never delivered before one sent earlier on the same link. Reordering is a
//! fault of its own — a message held back for a long delay, or a duplicate, skips the queue
//! (what a reconnect and a retransmission look like). A network that reorders every message
//! is safe for Raft too, but makes a leader resend whole in-flight windows over and over.

use pikv::raft::{Message, NodeId, Prng};
use std::collections::{BTreeMap, BTreeSet};

/// How the network misbehaves (per-mille rates, delays in virtual milliseconds).
#[derive(Debug, Clone)]
pub struct NetOptions {
    /// Messages lost.
    pub loss_per_mille: u64,
    /// Messages delivered twice (the copy out of order).
    pub dup_per_mille: u64,
    /// Delay of an in-order message.
    pub delay_min_ms: u64,
    /// See `delay_min_ms`.
    pub delay_max_ms: u64,
    /// A message now and then takes much longer (reordering across heartbeats).
    pub long_delay_per_mille: u64,
    /// The longest extra delay of such a message.
    pub long_delay_max_ms: u64,
}

impl NetOptions {
    /// A healthy network: no loss, short delays.
    pub fn calm() -> NetOptions {
        NetOptions {
            loss_per_mille: 0,
            dup_per_mille: 0,
            delay_min_ms: 1,
            delay_max_ms: 5,
            long_delay_per_mille: 0,
            long_delay_max_ms: 0,
        }
    }
}

/// Messages in flight between members, and the links that are cut.
pub struct Network {
    /// How it misbehaves (the heal phase swaps in a calm network).
    pub opts: NetOptions,
    /// In flight, by (delivery time, sequence): the sequence keeps order deterministic.
    queue: BTreeMap<(u64, u64), Message>,
    seq: u64,
    /// Cut links (from, to).
    blocked: BTreeSet<(NodeId, NodeId)>,
    /// Per link, the delivery time of the last message sent in order.
    last_at: BTreeMap<(NodeId, NodeId), u64>,
    /// Messages sent, for the report.
    pub sent: u64,
    /// Messages lost (dropped, or swallowed by a cut link).
    pub lost: u64,
}

impl Network {
    /// A network with nothing in flight and no link cut.
    pub fn new(opts: NetOptions) -> Network {
        Network {
            opts,
            queue: BTreeMap::new(),
            seq: 0,
            blocked: BTreeSet::new(),
            last_at: BTreeMap::new(),
            sent: 0,
            lost: 0,
        }
    }

    /// Sends `m` at `now`: lost, or queued once or twice with delivery times from `prng`.
    pub fn send(&mut self, now: u64, m: Message, prng: &mut Prng) {
        self.sent += 1;
        if self.blocked.contains(&(m.from, m.to)) || prng.chance(self.opts.loss_per_mille, 1000) {
            self.lost += 1;
            return;
        }
        let copies = if prng.chance(self.opts.dup_per_mille, 1000) {
            2
        } else {
            1
        };
        let link = (m.from, m.to);
        for copy in 0..copies {
            let mut at = now + prng.between(self.opts.delay_min_ms, self.opts.delay_max_ms);
            if copy == 0 && !prng.chance(self.opts.long_delay_per_mille, 1000) {
                // In order: not before the last message sent on this link.
                let last = self.last_at.entry(link).or_insert(0);
                at = at.max(*last);
                *last = at;
            } else {
                at += prng.between(1, self.opts.long_delay_max_ms.max(1));
            }
            self.seq += 1;
            self.queue.insert((at, self.seq), m.clone());
        }
    }

    /// The next message due at `now`, if any (a cut link swallows it).
    pub fn pop_due(&mut self, now: u64) -> Option<Message> {
        loop {
            let (&key, _) = self.queue.first_key_value()?;
            if key.0 > now {
                return None;
            }
            let m = self.queue.remove(&key)?;
            if self.blocked.contains(&(m.from, m.to)) {
                self.lost += 1;
                continue;
            }
            return Some(m);
        }
    }

    /// Restores every link.
    pub fn heal(&mut self) {
        self.blocked.clear();
    }

    /// Cuts every link between `group` and the rest (both ways).
    pub fn split(&mut self, group: &[NodeId], all: &[NodeId]) {
        self.blocked.clear();
        for a in group {
            for b in all.iter().filter(|b| !group.contains(b)) {
                self.blocked.insert((*a, *b));
                self.blocked.insert((*b, *a));
            }
        }
    }

    /// Cuts the link from `from` to `to` only.
    pub fn cut_one_way(&mut self, from: NodeId, to: NodeId) {
        self.blocked.insert((from, to));
    }

    /// The cut links, for the trace.
    pub fn describe(&self) -> String {
        if self.blocked.is_empty() {
            "healed".to_string()
        } else {
            let links: Vec<String> = self
                .blocked
                .iter()
                .map(|(a, b)| format!("{a}->{b}"))
                .collect();
            format!("cut {}", links.join(" "))
        }
    }
}
