//! The in-memory Raft log: the entries after a compacted (or not loaded) prefix, and two
//! marks that say how much of it the driver holds — handed out in a Ready, and durable.
//!
//! The core keeps the whole retained log in memory for now; `compact` drops a prefix that is
//! applied (and, later, covered by a snapshot).

use super::message::Entry;

/// The log, positions `offset + 1 ..= last_index()`.
#[derive(Debug, Clone)]
pub(super) struct RaftLog {
    /// Index of the entry before `entries[0]`: compacted away, or left on disk because it
    /// is applied. Its term is kept so that an append right after it can be checked.
    offset: u64,
    offset_term: u64,
    /// `entries[k].index == offset + 1 + k`, terms non-decreasing.
    entries: Vec<Entry>,
    /// Highest index the driver reported durable that still holds the same entry as in
    /// memory. Invariant: offset <= persisted <= handed_out <= last_index().
    persisted: u64,
    /// Highest index handed out in a Ready; the entries after it go in the next one.
    handed_out: u64,
}

impl RaftLog {
    /// A log resuming from durable state: `offset`/`offset_term` and the entries after it.
    /// Entries that do not continue the log (a gap, a wrong index, a term going down) and
    /// everything after them are dropped rather than trusted.
    pub(super) fn new(offset: u64, offset_term: u64, entries: Vec<Entry>) -> RaftLog {
        let mut log = RaftLog {
            offset,
            offset_term,
            entries: Vec::with_capacity(entries.len()),
            persisted: offset,
            handed_out: offset,
        };
        for e in entries {
            if e.index != log.last_index() + 1 || e.term < log.last_term() {
                break;
            }
            log.entries.push(e);
        }
        log.persisted = log.last_index();
        log.handed_out = log.last_index();
        log
    }

    /// Index of the first entry held in memory.
    pub(super) fn first_index(&self) -> u64 {
        self.offset + 1
    }

    /// Index of the last entry (the offset when the log holds none).
    pub(super) fn last_index(&self) -> u64 {
        self.offset + self.entries.len() as u64
    }

    /// Term of the last entry.
    pub(super) fn last_term(&self) -> u64 {
        self.entries.last().map_or(self.offset_term, |e| e.term)
    }

    /// Index of the compacted prefix's last entry.
    #[cfg(test)]
    pub(super) fn offset(&self) -> u64 {
        self.offset
    }

    /// Highest index durable and matching memory.
    pub(super) fn persisted(&self) -> u64 {
        self.persisted
    }

    /// Highest index handed out in a Ready.
    pub(super) fn handed_out(&self) -> u64 {
        self.handed_out
    }

    /// The term of the entry at `index`, if this log knows it (`offset` included, compacted
    /// entries and those past the end not).
    pub(super) fn term(&self, index: u64) -> Option<u64> {
        if index == self.offset {
            return Some(self.offset_term);
        }
        self.entry(index).map(|e| e.term)
    }

    /// The entry at `index`, if held.
    pub(super) fn entry(&self, index: u64) -> Option<&Entry> {
        let pos = index.checked_sub(self.first_index())?;
        self.entries.get(usize::try_from(pos).ok()?)
    }

    /// The held entries in `lo..=hi` (clamped to what is held).
    pub(super) fn slice(&self, lo: u64, hi: u64) -> &[Entry] {
        let lo = lo.max(self.first_index());
        let hi = hi.min(self.last_index());
        if lo > hi {
            return &[];
        }
        let start = (lo - self.first_index()) as usize;
        let end = (hi - self.first_index()) as usize + 1;
        &self.entries[start..end]
    }

    /// Every held entry.
    pub(super) fn all(&self) -> &[Entry] {
        &self.entries
    }

    /// Whether a log ending at (`last_index`, `last_term`) is at least as up to date as this
    /// one (Raft §5.4.1: the later last term wins, then the longer log).
    pub(super) fn is_up_to_date(&self, last_index: u64, last_term: u64) -> bool {
        last_term > self.last_term()
            || (last_term == self.last_term() && last_index >= self.last_index())
    }

    /// Appends one entry; the caller computed its index as `last_index() + 1`.
    pub(super) fn push(&mut self, entry: Entry) {
        debug_assert!(
            entry.term >= self.last_term(),
            "term {} appended after term {}",
            entry.term,
            self.last_term()
        );
        debug_assert_eq!(
            entry.index,
            self.last_index() + 1,
            "append at {} to a log ending at {}",
            entry.index,
            self.last_index()
        );
        self.entries.push(entry);
    }

    /// Drops every entry after `index` (a newer leader's entries replace them). The marks
    /// follow: what was handed out or durable there no longer holds what memory holds.
    pub(super) fn truncate_after(&mut self, index: u64) {
        let index = index.max(self.offset);
        self.entries.truncate((index - self.offset) as usize);
        self.persisted = self.persisted.min(index);
        self.handed_out = self.handed_out.min(index);
    }

    /// The entries not yet handed out; marks them handed out.
    pub(super) fn take_unstable(&mut self) -> Vec<Entry> {
        let out = self.slice(self.handed_out + 1, self.last_index()).to_vec();
        self.handed_out = self.last_index();
        out
    }

    /// Whether some entries wait to be handed out.
    pub(super) fn has_unstable(&self) -> bool {
        self.handed_out < self.last_index()
    }

    /// The driver made the entries up to (`index`, `term`) durable. Only counts if memory
    /// still holds that entry: a tail overwritten since it was handed out is not the log
    /// that became durable (by log matching, the same index and term mean the same prefix).
    pub(super) fn mark_persisted(&mut self, index: u64, term: u64) {
        if self.term(index) == Some(term) && index > self.persisted {
            self.persisted = index;
        }
    }

    /// Forgets that anything after the durable mark was handed out (the Ready carrying it
    /// failed): it goes in the next Ready again.
    pub(super) fn unhand(&mut self) {
        self.handed_out = self.persisted;
    }

    /// Drops the entries up to `index`, keeping its term as the new offset term. The caller
    /// guarantees `index` is applied; an index outside the log is clamped.
    pub(super) fn compact(&mut self, index: u64) {
        let index = index.min(self.persisted);
        if index <= self.offset {
            return;
        }
        let Some(term) = self.term(index) else {
            return;
        };
        self.entries.drain(..(index - self.offset) as usize);
        self.offset = index;
        self.offset_term = term;
    }

    /// The last index at or before `index` whose entry has term `term`, if the held log has
    /// one. Terms never go down along the log, so the search walks back from `index` and
    /// stops at the first smaller term.
    pub(super) fn last_index_of_term(&self, term: u64, index: u64) -> Option<u64> {
        let mut i = index.min(self.last_index());
        while i >= self.offset {
            match self.term(i) {
                Some(t) if t == term => return Some(i),
                Some(t) if t < term => return None,
                Some(_) => {}
                None => return None,
            }
            if i == 0 {
                return None;
            }
            i -= 1;
        }
        None
    }

    /// The first index of the run of entries with the same term as `index`, not going
    /// below `floor + 1` (entries at or below `floor` are committed and match anyway).
    pub(super) fn first_index_of_term_at(&self, index: u64, floor: u64) -> u64 {
        let Some(term) = self.term(index) else {
            return index;
        };
        let floor = floor.max(self.offset);
        let mut i = index;
        while i > floor + 1 && self.term(i - 1) == Some(term) {
            i -= 1;
        }
        i
    }

    /// Checks the log's own invariants in constant time (the marks, and that the ends sit
    /// where the offset says); the message names what broke. The order of every entry is
    /// kept by construction (`new` drops what does not continue, `push` takes the next
    /// index), and the simulator scans whole logs on its own.
    pub(super) fn violation(&self) -> Option<String> {
        if !(self.offset <= self.persisted
            && self.persisted <= self.handed_out
            && self.handed_out <= self.last_index())
        {
            return Some(format!(
                "log marks out of order: offset {} persisted {} handed out {} last {}",
                self.offset,
                self.persisted,
                self.handed_out,
                self.last_index()
            ));
        }
        if let (Some(first), Some(last)) = (self.entries.first(), self.entries.last()) {
            if first.index != self.offset + 1 || last.index != self.last_index() {
                return Some(format!(
                    "entries {}..={} held after offset {} ({} of them)",
                    first.index,
                    last.index,
                    self.offset,
                    self.entries.len()
                ));
            }
            if first.term < self.offset_term || last.term < first.term {
                return Some(format!(
                    "terms go down: offset term {}, first {}, last {}",
                    self.offset_term, first.term, last.term
                ));
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::raft::message::Payload;

    fn log_of(terms: &[u64]) -> RaftLog {
        let entries = terms
            .iter()
            .enumerate()
            .map(|(k, t)| Entry {
                term: *t,
                index: k as u64 + 1,
                payload: Payload::Empty,
            })
            .collect();
        RaftLog::new(0, 0, entries)
    }

    #[test]
    fn terms_slices_and_bounds() {
        let log = log_of(&[1, 1, 2, 3]);
        assert_eq!(
            (log.first_index(), log.last_index(), log.last_term()),
            (1, 4, 3)
        );
        assert_eq!(log.term(0), Some(0));
        assert_eq!(log.term(3), Some(2));
        assert_eq!(log.term(5), None);
        assert_eq!(log.slice(2, 3).len(), 2);
        assert_eq!(log.slice(4, 9).len(), 1);
        assert!(log.slice(5, 9).is_empty());
        assert!(log.slice(3, 2).is_empty());
    }

    #[test]
    fn a_restart_log_that_does_not_continue_is_cut_where_it_breaks() {
        let mut entries = log_of(&[1, 2, 2]).all().to_vec();
        entries[2].index = 7;
        let log = RaftLog::new(0, 0, entries);
        assert_eq!(log.last_index(), 2);
        assert!(log.violation().is_none());
    }

    #[test]
    fn term_searches_for_backtracking() {
        let log = log_of(&[1, 1, 2, 2, 2, 4]);
        assert_eq!(log.last_index_of_term(2, 6), Some(5));
        assert_eq!(log.last_index_of_term(3, 6), None);
        assert_eq!(log.last_index_of_term(1, 6), Some(2));
        assert_eq!(log.first_index_of_term_at(5, 0), 3);
        assert_eq!(log.first_index_of_term_at(5, 3), 4);
        assert_eq!(log.first_index_of_term_at(2, 0), 1);
    }

    #[test]
    fn compaction_keeps_the_offset_term_and_never_passes_the_durable_mark() {
        let mut log = log_of(&[1, 1, 2, 3]);
        log.compact(2);
        assert_eq!(
            (log.first_index(), log.term(2), log.term(1)),
            (3, Some(1), None)
        );
        assert_eq!(log.last_index_of_term(1, 4), Some(2));
        log.push(Entry {
            term: 3,
            index: 5,
            payload: Payload::Empty,
        });
        log.compact(9);
        assert_eq!(log.offset(), 4, "the undurable entry 5 stays");
        assert!(log.violation().is_none());
    }

    #[test]
    fn truncation_pulls_the_marks_back() {
        let mut log = log_of(&[1, 1, 1]);
        log.truncate_after(1);
        assert_eq!(
            (log.last_index(), log.persisted(), log.handed_out()),
            (1, 1, 1)
        );
        log.mark_persisted(3, 1);
        assert_eq!(
            log.persisted(),
            1,
            "an overwritten tail is not what became durable"
        );
    }
}
