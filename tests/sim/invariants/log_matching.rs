//! Log Matching (Raft Figure 3, §5.3): if two logs contain an entry with the same index and
//! term, the logs are identical in all entries up through that index.
//!
//! Checked through a registry of every (index, term) ever seen in any log: it must always
//! carry the same payload and follow an entry of the same term. By induction on the index,
//! equal (index, term) then means equal prefixes, without comparing logs pairwise. Entries
//! are registered as each Ready hands them out (every entry reaches a log that way) and by a
//! periodic scan of every member's whole log.

use super::{Checker, Violation};
use pikv::raft::{Entry, NodeId, Raft};

impl Checker {
    /// Registers `entries`, which follow an entry of term `prev_term` in `member`'s log.
    pub fn observe_entries(
        &mut self,
        member: NodeId,
        prev_term: u64,
        entries: &[Entry],
    ) -> Result<(), Violation> {
        let mut prev = prev_term;
        for e in entries {
            match self.registry.get(&(e.index, e.term)) {
                None => {
                    self.registry
                        .insert((e.index, e.term), (e.payload.clone(), prev));
                }
                Some((payload, before)) => {
                    if *payload != e.payload || *before != prev {
                        return Err(Violation::LogMatching {
                            member,
                            index: e.index,
                            detail: format!(
                                "term {} holds {:?} after term {prev}, seen before as {payload:?} after term {before}",
                                e.term, e.payload
                            ),
                        });
                    }
                }
            }
            prev = e.term;
        }
        Ok(())
    }

    /// Scans a member's whole log: consecutive indexes, terms never going down, and every
    /// entry registered.
    pub fn full_log(&mut self, raft: &Raft) -> Result<(), Violation> {
        let first = raft.first_index();
        let Some(prev_term) = raft.log_term(first - 1) else {
            return Err(Violation::Member {
                member: raft.id(),
                detail: format!("no term for the entry before the first held ({first})"),
            });
        };
        let entries = raft.log_entries();
        let mut term = prev_term;
        for (k, e) in entries.iter().enumerate() {
            if e.index != first + k as u64 || e.term < term {
                return Err(Violation::LogMatching {
                    member: raft.id(),
                    index: e.index,
                    detail: format!(
                        "position {k} holds index {} term {} after term {term}",
                        e.index, e.term
                    ),
                });
            }
            term = e.term;
        }
        self.observe_entries(raft.id(), prev_term, entries)
    }
}
