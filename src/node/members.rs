//! The node thread's side of membership changes: who the peers are and where they listen
//! (the address book), and the clients waiting for a change to apply.
//!
//! Addresses come from the member records (as of the applied index) and from the contexts
//! of membership entries as soon as they are appended: a change takes effect when appended,
//! so the leader replicates to a member it adds, and every member answers its votes,
//! before the change commits. A change is recognised by its content when it applies: ids
//! are never reused, so an add or a removal happens once; a client's request asked again of
//! a new leader is refused there if the old one appended it already (and applies anyway).

use super::MembershipReply;
use crate::raft::{ConfChange, Entry, NodeId, ProposeError, Raft};
use crate::storage::{format, MemberRecord};
use crate::store::V2Error;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A client's change, until it applies.
struct Waiter {
    change: ConfChange,
    context: Vec<u8>,
    reply: MembershipReply,
    /// When it was last asked of the leader (again after each leader change, and after
    /// [`ASK_AGAIN`]: the message may have been lost, or the leader refused it).
    asked: Option<Instant>,
}

/// A change not applied this long after it was asked is asked again.
const ASK_AGAIN: Duration = Duration::from_secs(3);

/// Addresses of the members and the changes being waited for.
pub(super) struct Members {
    me: NodeId,
    book: BTreeMap<NodeId, Vec<String>>,
    /// What the transport was last given.
    linked: Vec<(NodeId, Vec<String>)>,
    waiters: Vec<Waiter>,
    /// A sole voter's add of a second member, by log index: answered once durable here
    /// (see [`Members::appended_alone`]).
    alone_adds: Vec<(u64, ConfChange, Vec<u8>)>,
    /// Members added by appended entries not applied yet, for the peer port's member list.
    unapplied: UnappliedAdds,
}

/// Members whose add is appended here and not applied yet. A member added to a cluster
/// that cannot commit without it (a single member's first peer) must still find itself
/// when it joins: the peer port lists these beside the applied members.
pub type UnappliedAdds = Arc<Mutex<Vec<MemberRecord>>>;

/// The member record a membership entry's context carries (an add's or an update's).
pub fn record_of(change: ConfChange, context: &[u8]) -> Option<MemberRecord> {
    let id = match change {
        ConfChange::AddVoter(id) | ConfChange::UpdateMember(id) => id,
        ConfChange::RemoveVoter(_) => return None,
    };
    if context.is_empty() {
        return None;
    }
    format::decode::<MemberRecord>("member record", context)
        .ok()
        .filter(|r| r.id == id)
}

impl Members {
    /// The book of `records` (this member's view as of its applied index) and of the
    /// membership entries of `log` after it.
    pub(super) fn new(
        me: NodeId,
        records: &[MemberRecord],
        log: &[Entry],
        unapplied: UnappliedAdds,
    ) -> Members {
        let mut m = Members {
            me,
            book: records
                .iter()
                .map(|r| (r.id, r.peer_urls.clone()))
                .collect(),
            linked: Vec::new(),
            waiters: Vec::new(),
            alone_adds: Vec::new(),
            unapplied,
        };
        m.appended(log);
        m
    }

    /// Takes in the addresses of members added by appended entries. A new address of a
    /// member is taken only once its update applies: the update commits over the old one
    /// (which the member may still listen on until it restarts).
    pub(super) fn appended(&mut self, entries: &[Entry]) {
        for e in entries {
            if let Some((change @ ConfChange::AddVoter(_), context)) = e.payload.membership() {
                self.learn(change, context);
                if let (Some(record), Ok(mut list)) =
                    (record_of(change, context), self.unapplied.lock())
                {
                    list.retain(|r| r.id != record.id);
                    list.push(record);
                }
            }
        }
    }

    fn learn(&mut self, change: ConfChange, context: &[u8]) {
        if let Some(record) = record_of(change, context) {
            self.book.insert(record.id, record.peer_urls);
        }
    }

    /// The peers the transport should have, given the members Raft talks to now; `None`
    /// when that is what it has.
    pub(super) fn peers_to_link(
        &mut self,
        talking_to: impl IntoIterator<Item = NodeId>,
    ) -> Option<Vec<(NodeId, Vec<String>)>> {
        // Asked on every turn of the node loop: the answer is almost always "no change",
        // found without copying any address.
        let mut ids: Vec<NodeId> = talking_to
            .into_iter()
            .filter(|id| *id != self.me && self.book.contains_key(id))
            .collect();
        ids.sort_unstable();
        ids.dedup();
        let unchanged = ids.len() == self.linked.len()
            && ids
                .iter()
                .zip(&self.linked)
                .all(|(id, (linked, urls))| id == linked && self.book.get(id) == Some(urls));
        if unchanged {
            return None;
        }
        let wanted: Vec<(NodeId, Vec<String>)> = ids
            .into_iter()
            .filter_map(|id| self.book.get(&id).map(|urls| (id, urls.clone())))
            .collect();
        self.linked = wanted.clone();
        Some(wanted)
    }

    /// A client's change, to be asked of the leader.
    pub(super) fn wait(&mut self, change: ConfChange, context: Vec<u8>, reply: MembershipReply) {
        self.waiters.push(Waiter {
            change,
            context,
            reply,
            asked: None,
        });
    }

    /// Asks the leader (or, leading, proposes) the changes not asked yet. A refusal this
    /// member can see is the client's answer; another change still being committed, or a
    /// transfer, only delays it.
    pub(super) fn ask(&mut self, raft: &mut Raft, now: Instant) {
        let mut refused = Vec::new();
        for (i, w) in self.waiters.iter_mut().enumerate() {
            let recent = w.asked.is_some_and(|at| now.duration_since(at) < ASK_AGAIN);
            if recent || w.reply.is_closed() {
                continue;
            }
            // The leader replicates to a member it adds at once: it needs the address
            // before the entry's first Ready.
            if let (ConfChange::AddVoter(_), Some(record)) =
                (w.change, record_of(w.change, &w.context))
            {
                self.book.insert(record.id, record.peer_urls);
            }
            // A new leader may hold the change already (the old one appended it): it
            // applies from there, and asked again it would be refused as done.
            let in_log = raft.log_entries().iter().any(|e| {
                e.index > raft.applied_index()
                    && e.payload.membership() == Some((w.change, w.context.as_slice()))
            });
            if in_log {
                w.asked = Some(now);
                continue;
            }
            match raft.request_conf_change(w.change, w.context.clone()) {
                Ok(()) => w.asked = Some(now),
                Err(ProposeError::MembershipChangePending | ProposeError::TransferInProgress) => {}
                Err(e) => refused.push((i, e)),
            }
        }
        for (i, e) in refused.into_iter().rev() {
            let w = self.waiters.remove(i);
            let _ = w.reply.try_send(Err(V2Error::new(
                crate::store::error::RAFT_INTERNAL,
                e.to_string(),
                0,
            )));
        }
    }

    /// The only voter appended the add of a second one at `index`. The add cannot commit
    /// before the new member runs, and it cannot start before it is added (etcd answers
    /// once the add applies, which in etcd's Raft needs only the old voter). Durable on
    /// the old voter it can never be lost: no other member can lead without its vote or
    /// its log. So the client is answered then, as etcd answers.
    pub(super) fn appended_alone(&mut self, index: u64, change: ConfChange, context: &[u8]) {
        self.alone_adds.push((index, change, context.to_vec()));
    }

    /// The log is durable through `index`: a sole voter's add it holds is answered.
    pub(super) fn durable(&mut self, index: u64) {
        if self.alone_adds.is_empty() {
            return;
        }
        let (done, later): (Vec<_>, Vec<_>) = std::mem::take(&mut self.alone_adds)
            .into_iter()
            .partition(|(i, _, _)| *i <= index);
        self.alone_adds = later;
        for (_, change, context) in done {
            self.answer(change, &context);
        }
    }

    /// Where `id` listens, if known.
    pub(super) fn urls_of(&self, id: NodeId) -> Option<Vec<String>> {
        self.book.get(&id).cloned()
    }

    /// A snapshot replaced the state: the book is its members' and the log's after it.
    pub(super) fn restored(&mut self, records: &[MemberRecord], log: &[Entry]) {
        for r in records {
            self.book.insert(r.id, r.peer_urls.clone());
        }
        self.appended(log);
    }

    /// A new leader: what the old one may have lost is asked again.
    pub(super) fn leader_changed(&mut self) {
        for w in &mut self.waiters {
            w.asked = None;
        }
    }

    /// A change applied: its waiters are answered.
    pub(super) fn applied(&mut self, change: ConfChange, context: &[u8]) {
        self.learn(change, context);
        if let (ConfChange::AddVoter(id), Ok(mut list)) = (change, self.unapplied.lock()) {
            list.retain(|r| r.id != id);
        }
        self.answer(change, context);
    }

    fn answer(&mut self, change: ConfChange, context: &[u8]) {
        self.waiters.retain(|w| {
            let done = w.change == change && w.context == context;
            if done {
                let _ = w.reply.try_send(Ok(()));
            }
            !done
        });
    }

    /// Forgets the waiters whose client is gone.
    pub(super) fn drop_abandoned(&mut self) {
        self.waiters.retain(|w| !w.reply.is_closed());
    }

    /// Answers every waiter with `cause`.
    pub(super) fn fail_all(&mut self, cause: &str) {
        for w in self.waiters.drain(..) {
            let _ = w.reply.try_send(Err(V2Error::new(
                crate::store::error::RAFT_INTERNAL,
                cause,
                0,
            )));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::raft::Payload;

    fn record(id: NodeId, url: &str) -> MemberRecord {
        MemberRecord {
            id,
            name: String::new(),
            peer_urls: vec![url.to_string()],
        }
    }

    fn entry(index: u64, change: ConfChange, context: Vec<u8>) -> Entry {
        Entry {
            index,
            term: 1,
            payload: Payload::Membership { change, context },
        }
    }

    #[test]
    fn peers_follow_the_records_and_the_appended_changes() {
        let four = format::encode("member record", &record(4, "http://d:2380")).unwrap();
        let log = [entry(5, ConfChange::AddVoter(4), four.clone())];
        let unapplied = UnappliedAdds::default();
        let mut m = Members::new(
            1,
            &[record(1, "http://a:2380"), record(2, "http://b:2380")],
            &log,
            Arc::clone(&unapplied),
        );
        // Listed for the peer port (a joiner finds itself) until the add applies.
        assert_eq!(
            unapplied.lock().unwrap().clone(),
            vec![record(4, "http://d:2380")]
        );
        assert_eq!(
            m.peers_to_link([1, 2, 4]),
            Some(vec![
                (2, vec!["http://b:2380".to_string()]),
                (4, vec!["http://d:2380".to_string()])
            ])
        );
        assert_eq!(m.peers_to_link([4, 2, 1]), None, "unchanged");
        // Readdressed by an update once it applies; a context of another member is ignored.
        let moved = format::encode("member record", &record(2, "http://b2:2380")).unwrap();
        m.appended(&[
            entry(6, ConfChange::UpdateMember(2), moved.clone()),
            entry(7, ConfChange::UpdateMember(4), vec![1, 2, 3]),
        ]);
        assert_eq!(
            m.peers_to_link([1, 2]),
            Some(vec![(2, vec!["http://b:2380".to_string()])])
        );
        m.applied(ConfChange::UpdateMember(4), &[1, 2, 3]);
        m.applied(ConfChange::UpdateMember(2), &moved);
        assert_eq!(
            m.peers_to_link([1, 2]),
            Some(vec![(2, vec!["http://b2:2380".to_string()])])
        );
        // A member without a known address is not linked.
        assert_eq!(m.peers_to_link([1, 2, 9]), None);
        m.applied(ConfChange::AddVoter(4), &four);
        assert!(unapplied.lock().unwrap().is_empty());
    }

    #[test]
    fn a_sole_voters_add_is_answered_once_durable() {
        let two = format::encode("member record", &record(2, "http://b:2380")).unwrap();
        let mut m = Members::new(
            1,
            &[record(1, "http://a:2380")],
            &[],
            UnappliedAdds::default(),
        );
        let (reply, outcome) = smol::channel::bounded(1);
        m.wait(ConfChange::AddVoter(2), two.clone(), reply);
        m.appended_alone(7, ConfChange::AddVoter(2), &two);
        m.durable(6);
        assert!(outcome.try_recv().is_err(), "not durable yet");
        m.durable(7);
        assert!(matches!(outcome.try_recv(), Ok(Ok(()))));
        // Applied later: nobody left to answer, nothing answered twice.
        m.applied(ConfChange::AddVoter(2), &two);
        assert!(outcome.try_recv().is_err());
    }

    #[test]
    fn a_waiter_is_answered_when_its_change_applies() {
        let mut m = Members::new(
            1,
            &[record(1, "http://a:2380")],
            &[],
            UnappliedAdds::default(),
        );
        let (tx, rx) = smol::channel::bounded(1);
        m.wait(ConfChange::RemoveVoter(3), vec![], tx);
        m.applied(ConfChange::RemoveVoter(2), &[]);
        assert!(rx.try_recv().is_err(), "another change");
        m.applied(ConfChange::RemoveVoter(3), &[]);
        assert_eq!(rx.try_recv().ok(), Some(Ok(())));
        let (tx, rx) = smol::channel::bounded(1);
        m.wait(ConfChange::RemoveVoter(4), vec![], tx);
        m.fail_all("stopped");
        assert!(matches!(rx.try_recv(), Ok(Err(_))));
    }
}
