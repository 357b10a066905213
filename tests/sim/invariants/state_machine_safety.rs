//! State Machine Safety (Raft Figure 3, §5.4.3): if a member has applied a log entry at a
//! given index, no other member ever applies a different entry at that index. Checked at
//! each application against the sequence every member must agree on; the first member to
//! apply an index also checks that a majority of the disks held the entry by then (entries
//! are acknowledged, and so committed, only once durable).

use super::{AppliedEntry, Checker, Violation};
use pikv::raft::{Entry, NodeId};

impl Checker {
    /// `member`, in `term`, applies `entry`; `holders` is how many disks hold it now.
    pub fn applied_entry(
        &mut self,
        member: NodeId,
        term: u64,
        entry: &Entry,
        holders: usize,
        quorum: usize,
    ) -> Result<(), Violation> {
        let pos = entry.index as usize - 1;
        match self.applied.get(pos) {
            Some(a) if a.entry != *entry => Err(Violation::StateMachineSafety {
                member,
                index: entry.index,
                detail: format!("applies {entry:?}, another member applied {:?}", a.entry),
            }),
            Some(_) => Ok(()),
            None if pos == self.applied.len() => {
                if holders < quorum {
                    return Err(Violation::NotCommittedOnQuorum {
                        index: entry.index,
                        holders,
                        quorum,
                    });
                }
                self.applied.push(AppliedEntry {
                    entry: entry.clone(),
                    known_in_term: term,
                });
                Ok(())
            }
            None => Err(Violation::StateMachineSafety {
                member,
                index: entry.index,
                detail: format!(
                    "applied past the end of everything applied ({})",
                    self.applied.len()
                ),
            }),
        }
    }
}
