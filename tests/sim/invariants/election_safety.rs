//! Election Safety (Raft Figure 3, §5.2): at most one leader can be elected in a given term.
//! Every leader ever seen is remembered by term, so two leaders of one term are caught even
//! if they never coexisted (one crashed before the other won).

use super::{Checker, Violation};
use pikv::raft::{Raft, Role};

impl Checker {
    /// Checks `raft` if it leads: no other member led its term.
    pub fn election_safety(&mut self, raft: &Raft) -> Result<(), Violation> {
        if raft.role() != Role::Leader {
            return Ok(());
        }
        let first = *self.leaders.entry(raft.term()).or_insert(raft.id());
        if first != raft.id() {
            return Err(Violation::ElectionSafety {
                term: raft.term(),
                first,
                second: raft.id(),
            });
        }
        Ok(())
    }
}
