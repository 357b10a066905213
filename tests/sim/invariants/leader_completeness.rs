//! Leader Completeness (Raft Figure 3, §5.4): if a log entry is committed in a given term,
//! that entry is present in the logs of the leaders of all higher-numbered terms.
//!
//! An entry counts as committed no later than the term the first member to apply it was
//! in (it learned the commit from a leader of that term or an earlier one). Each leader's
//! log is checked once against each applied entry: a leader's log only grows in its term.
//! Entries a leader compacted away (or never held, having installed a snapshot) are in its
//! state; the entry its log starts after must then be the agreed one.

use super::{Checker, Violation};
use pikv::raft::{Raft, Role};

impl Checker {
    /// Checks `raft` if it leads: its log holds every entry committed in an earlier term.
    pub fn leader_completeness(&mut self, raft: &Raft) -> Result<(), Violation> {
        if raft.role() != Role::Leader {
            return Ok(());
        }
        let key = (raft.id(), raft.term());
        let from = self.completeness_checked.get(&key).copied().unwrap_or(0);
        let first = raft.first_index();
        for a in &self.applied[from..] {
            if a.known_in_term >= raft.term() {
                continue;
            }
            let index = a.entry.index;
            if index < first {
                // Compacted into the leader's state: the entry its log starts after must be
                // the agreed one there (log matching vouches for the rest before it).
                let base = first - 1;
                let agreed = self.applied.get(base as usize - 1).map(|b| b.entry.term);
                if agreed.is_some() && agreed != raft.log_term(base) {
                    return Err(Violation::LeaderCompleteness {
                        leader: raft.id(),
                        term: raft.term(),
                        index: base,
                        detail: format!(
                            "its log starts after term {:?} at {base}, the agreed entry there is of term {agreed:?}",
                            raft.log_term(base)
                        ),
                    });
                }
                continue;
            }
            let held = index
                .checked_sub(first)
                .and_then(|pos| raft.log_entries().get(pos as usize));
            if held != Some(&a.entry) {
                return Err(Violation::LeaderCompleteness {
                    leader: raft.id(),
                    term: raft.term(),
                    index,
                    detail: format!(
                        "committed by term {} as {:?}, the leader holds {held:?}",
                        a.known_in_term, a.entry
                    ),
                });
            }
        }
        self.completeness_checked.insert(key, self.applied.len());
        Ok(())
    }
}
