//! The last 1000 events and etcd's history-scan rules (spec §4.3, §4.4), quirks included:
//! hidden keys are not filtered, and a deleted or expired directory matches any watched key
//! it is a plain string prefix of.

use crate::store::error::EVENT_INDEX_CLEARED;
use crate::store::{Action, Event, V2Error};
use std::collections::VecDeque;

/// How many events the history keeps (etcd's value).
pub const HISTORY_LEN: usize = 1000;

/// The event ring.
#[derive(Debug, Default)]
pub struct History {
    events: VecDeque<Event>,
}

impl History {
    /// A history holding `events` (ascending), trimmed to the last 1000.
    pub fn from_events(events: Vec<Event>) -> History {
        let mut h = History::default();
        for e in events {
            h.push(e);
        }
        h
    }

    /// Appends an event, dropping the oldest beyond 1000.
    pub fn push(&mut self, event: Event) {
        if self.events.len() == HISTORY_LEN {
            self.events.pop_front();
        }
        self.events.push_back(event);
    }

    /// Index of the oldest retained event (0 when empty).
    pub fn start_index(&self) -> u64 {
        self.events.front().map_or(0, |e| e.etcd_index)
    }

    /// Index of the newest event (0 when empty).
    pub fn last_index(&self) -> u64 {
        self.events.back().map_or(0, |e| e.etcd_index)
    }

    /// The first event at or after `since` that a watch on `key` matches; `current` is the
    /// store index reported with a 401.
    pub fn scan(
        &self,
        key: &str,
        recursive: bool,
        since: u64,
        current: u64,
    ) -> Result<Option<&Event>, V2Error> {
        let start = self.start_index();
        if since < start {
            return Err(V2Error::new(
                EVENT_INDEX_CLEARED,
                format!("the requested history has been cleared [{start}/{since}]"),
                current,
            ));
        }
        if since > self.last_index() {
            return Ok(None);
        }
        let offset = usize::try_from(since - start).unwrap_or(usize::MAX);
        Ok(self
            .events
            .iter()
            .skip(offset)
            .find(|e| history_match(e, key, recursive)))
    }
}

fn history_match(e: &Event, key: &str, recursive: bool) -> bool {
    if e.refresh {
        return false;
    }
    let mut ok = e.node.key == key;
    if recursive {
        let prefix = if key.ends_with('/') {
            key.to_string()
        } else {
            format!("{key}/")
        };
        ok = ok || e.node.key.starts_with(&prefix);
    }
    if matches!(e.action, Action::Delete | Action::Expire) {
        if let Some(prev) = &e.prev_node {
            ok = ok || (prev.dir && key.starts_with(&prev.key));
        }
    }
    ok
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::NodeView;

    fn ev(action: Action, key: &str, index: u64, prev_dir: Option<&str>) -> Event {
        Event {
            action,
            node: NodeView {
                key: key.into(),
                value: None,
                dir: prev_dir.is_some(),
                expiration: None,
                nodes: None,
                modified_index: index,
                created_index: index,
            },
            prev_node: prev_dir.map(|k| NodeView {
                key: k.into(),
                value: None,
                dir: true,
                expiration: None,
                nodes: None,
                modified_index: 1,
                created_index: 1,
            }),
            etcd_index: index,
            refresh: false,
        }
    }

    #[test]
    fn a_sibling_directory_deletion_matches_by_string_prefix() {
        let h = History::from_events(vec![ev(Action::Delete, "/qa", 5, Some("/qa"))]);
        assert_eq!(
            h.scan("/qab", false, 5, 5).unwrap().map(|e| e.etcd_index),
            Some(5)
        );
    }

    #[test]
    fn hidden_keys_are_not_filtered_and_recursion_needs_a_slash() {
        let h = History::from_events(vec![
            ev(Action::Set, "/hd/_secret", 3, None),
            ev(Action::Set, "/abc", 4, None),
        ]);
        assert!(h.scan("/", true, 3, 4).unwrap().is_some());
        assert_eq!(h.scan("/ab", true, 3, 4).unwrap(), None);
    }

    #[test]
    fn cleared_history_is_401_with_the_window() {
        let h = History::from_events((1..=1005).map(|i| ev(Action::Set, "/k", i, None)).collect());
        let err = h.scan("/k", false, 3, 1005).unwrap_err();
        assert_eq!(err.code, 401);
        assert_eq!(err.cause, "the requested history has been cleared [6/3]");
        assert_eq!(err.index, 1005);
        assert_eq!(h.scan("/k", false, 1006, 1005).unwrap(), None);
    }
}
