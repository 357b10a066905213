//! The watch hub: parked long-polls, answered from the apply path. A parked watch holds no
//! thread of pikv's — only its sink (a channel into the connection's task) sits in the hub —
//! and sinks never block, so deliveries run right on the publishing thread, after the hub's
//! lock is released.
//!
//! Live matching follows etcd's watcher hub (spec §4.4): watchers on the event's key and
//! recursive watchers on its ancestors (unless a component below them is hidden); for
//! removals, watchers on every removed node too (so a stream watcher on a deleted directory
//! sees the event twice, as in etcd).

pub mod history;

use crate::store::{Applied, Event, V2Error};
use history::History;
use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

/// How many undelivered events a stream watcher may fall behind before it is dropped.
const STREAM_BACKLOG_MAX: usize = 100;

/// Where a watcher's events go: the client's response.
pub trait WatchSink: Send {
    /// Hands one event over without blocking (the node thread calls it); `false` when the
    /// client is gone or too far behind.
    fn send_event(&mut self, event: &Event) -> bool;
    /// Ends the response.
    fn finish(self: Box<Self>);
}

/// How a watch request starts.
#[derive(Debug)]
pub enum WatchStart {
    /// A matching event is already in the history.
    Hit {
        /// The event.
        event: Box<Event>,
        /// The current index (X-Etcd-Index).
        current: u64,
    },
    /// Nothing yet: park the watcher from `since`.
    Wait {
        /// First index of interest.
        since: u64,
        /// The current index (X-Etcd-Index).
        current: u64,
    },
}

struct StreamState {
    /// Set when the watcher fell too far behind: the next drain ends the response.
    dead: std::sync::atomic::AtomicBool,
    backlog: Mutex<VecDeque<Event>>,
    sink: Mutex<Option<Box<dyn WatchSink>>>,
}

enum Target {
    Once(Box<dyn WatchSink>),
    Stream(Arc<StreamState>),
}

struct Watcher {
    recursive: bool,
    since: u64,
    target: Target,
}

#[derive(Default)]
struct Inner {
    history: History,
    current: u64,
    next_id: u64,
    watchers: BTreeMap<u64, Watcher>,
    by_key: BTreeMap<String, Vec<u64>>,
}

/// The hub; shared by the node thread (publish) and API workers (watch).
pub struct WatchHub {
    inner: Mutex<Inner>,
}

enum Delivery {
    Once(Box<dyn WatchSink>, Box<Event>),
    Stream(Arc<StreamState>),
}

impl WatchHub {
    /// A hub starting at `current` with the persisted `history`.
    pub fn new(current: u64, history: Vec<Event>) -> WatchHub {
        WatchHub {
            inner: Mutex::new(Inner {
                history: History::from_events(history),
                current,
                ..Inner::default()
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A poisoned lock only means a panic elsewhere; the data is still consistent
        // because every mutation completes before it can panic.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The current etcd index as the hub has seen it.
    pub fn current_index(&self) -> u64 {
        self.lock().current
    }

    /// Live watchers registered.
    pub fn watcher_count(&self) -> usize {
        self.lock().watchers.len()
    }

    /// Decides how a watch on `key` from `wait_index` (0 = next change) starts.
    pub fn start(
        &self,
        key: &str,
        recursive: bool,
        wait_index: u64,
    ) -> Result<WatchStart, V2Error> {
        let inner = self.lock();
        let current = inner.current;
        let since = if wait_index == 0 {
            current + 1
        } else {
            wait_index
        };
        match inner.history.scan(key, recursive, since, current)? {
            Some(e) => Ok(WatchStart::Hit {
                event: Box::new(e.clone()),
                current,
            }),
            None => Ok(WatchStart::Wait { since, current }),
        }
    }

    /// Parks a watcher. Events published since `start` are looked up again first, so none
    /// falls between the two calls. Returns the watcher's id, or `None` when the event was
    /// already there and the sink has been handed to a delivery. If the history was cleared
    /// past `since` in between, the sink is dropped and the 401 comes back.
    pub fn park(
        &self,
        key: &str,
        recursive: bool,
        stream: bool,
        since: u64,
        sink: Box<dyn WatchSink>,
    ) -> Result<Option<u64>, V2Error> {
        let mut deliveries = Vec::new();
        let registered;
        {
            let mut inner = self.lock();
            let current = inner.current;
            let mut since = since;
            let target = if stream {
                let state = Arc::new(StreamState {
                    dead: std::sync::atomic::AtomicBool::new(false),
                    backlog: Mutex::new(VecDeque::new()),
                    sink: Mutex::new(Some(sink)),
                });
                // A stream catches up on everything matching in history, then goes live.
                inner.history.scan(key, recursive, since, current)?;
                while let Ok(Some(e)) = inner.history.scan(key, recursive, since, current) {
                    since = e.etcd_index + 1;
                    lock_backlog(&state).push_back(e.clone());
                }
                if !lock_backlog(&state).is_empty() {
                    deliveries.push(Delivery::Stream(Arc::clone(&state)));
                }
                Target::Stream(state)
            } else {
                match inner.history.scan(key, recursive, since, current)? {
                    Some(e) => {
                        let e = e.clone();
                        drop(inner);
                        self.deliver(vec![Delivery::Once(sink, Box::new(e))]);
                        return Ok(None);
                    }
                    None => Target::Once(sink),
                }
            };
            let id = inner.next_id;
            inner.next_id += 1;
            inner.by_key.entry(key.to_string()).or_default().push(id);
            inner.watchers.insert(
                id,
                Watcher {
                    recursive,
                    since,
                    target,
                },
            );
            registered = id;
        }
        self.deliver(deliveries);
        Ok(Some(registered))
    }

    /// Removes a watcher whose client has gone, ending its response.
    pub fn cancel(&self, id: u64) {
        let removed = {
            let mut inner = self.lock();
            let w = inner.watchers.remove(&id);
            inner.by_key.retain(|_, ids| {
                ids.retain(|i| *i != id);
                !ids.is_empty()
            });
            w
        };
        match removed.map(|w| w.target) {
            Some(Target::Once(sink)) => sink.finish(),
            Some(Target::Stream(state)) => {
                state.dead.store(true, std::sync::atomic::Ordering::SeqCst);
                drain_stream(&state);
            }
            None => {}
        }
    }

    /// Records applied events in the history and wakes the watchers they match.
    pub fn publish(&self, applied: &[Applied]) {
        let mut deliveries = Vec::new();
        {
            let mut inner = self.lock();
            for a in applied {
                inner.current = inner.current.max(a.event.etcd_index);
                inner.history.push(a.event.clone());
                // Nothing to notify: skip the walk over the key's ancestors (the common case
                // under write load).
                if a.event.refresh || inner.by_key.is_empty() {
                    continue;
                }
                if a.event.action.is_removal() {
                    let mut removed: Vec<&str> = a.removed.iter().map(String::as_str).collect();
                    if !removed.contains(&a.event.node.key.as_str()) {
                        removed.push(&a.event.node.key);
                    }
                    for path in removed {
                        notify_path(&mut inner, &a.event, path, true, &mut deliveries);
                    }
                }
                for path in ancestors(&a.event.node.key) {
                    notify_path(&mut inner, &a.event, path, false, &mut deliveries);
                }
            }
        }
        self.deliver(deliveries);
    }

    /// The state was replaced by a snapshot: the events between the old index and
    /// `current` are not known here, so every parked watch ends (its client asks again,
    /// from the index it saw, and is answered from `history` or told it was cleared).
    pub fn reset(&self, current: u64, history: Vec<Event>) {
        self.close_all();
        let mut inner = self.lock();
        inner.history = History::from_events(history);
        inner.current = current;
    }

    /// Ends every parked watch with an empty body (server shutdown, as etcd does).
    pub fn close_all(&self) {
        let watchers = {
            let mut inner = self.lock();
            inner.by_key.clear();
            std::mem::take(&mut inner.watchers)
        };
        for (_, w) in watchers {
            match w.target {
                Target::Once(sink) => sink.finish(),
                Target::Stream(state) => {
                    if let Some(sink) = lock_sink(&state).take() {
                        sink.finish();
                    }
                }
            }
        }
    }

    fn deliver(&self, deliveries: Vec<Delivery>) {
        for d in deliveries {
            match d {
                Delivery::Once(mut sink, event) => {
                    sink.send_event(&event);
                    sink.finish();
                }
                Delivery::Stream(state) => drain_stream(&state),
            }
        }
    }
}

fn lock_backlog(state: &StreamState) -> MutexGuard<'_, VecDeque<Event>> {
    state.backlog.lock().unwrap_or_else(|p| p.into_inner())
}

fn lock_sink(state: &StreamState) -> MutexGuard<'_, Option<Box<dyn WatchSink>>> {
    state.sink.lock().unwrap_or_else(|p| p.into_inner())
}

// The sink lock is held while draining, so events of one stream go out in order even when
// two deliveries run at once.
fn drain_stream(state: &StreamState) {
    let mut sink = lock_sink(state);
    loop {
        if state.dead.load(std::sync::atomic::Ordering::SeqCst) {
            if let Some(s) = sink.take() {
                s.finish();
            }
            return;
        }
        let Some(event) = lock_backlog(state).pop_front() else {
            return;
        };
        let alive = sink.as_mut().is_some_and(|s| s.send_event(&event));
        if !alive {
            // The hub drops a dead stream's watcher at its next notification.
            state.dead.store(true, std::sync::atomic::Ordering::SeqCst);
            if let Some(s) = sink.take() {
                s.finish();
            }
            lock_backlog(state).clear();
            return;
        }
    }
}

/// "/", "/a", "/a/b" for "/a/b" (keys are clean: rooted, no empty or trailing segment),
/// as slices of `key`.
fn ancestors(key: &str) -> impl Iterator<Item = &str> {
    std::iter::once("/").chain(
        key.char_indices()
            .filter(|&(i, c)| c == '/' && i > 0)
            .map(|(i, _)| &key[..i])
            .chain((key.len() > 1).then_some(key)),
    )
}

/// Whether `key` lies in a hidden part below `watch_path` (etcd's isHidden).
fn is_hidden(watch_path: &str, key: &str) -> bool {
    if watch_path.len() > key.len() {
        return false;
    }
    let after = &key[watch_path.len()..];
    let after = if after.starts_with('/') {
        after.to_string()
    } else {
        format!("/{after}")
    };
    after.contains("/_")
}

fn notify_path(
    inner: &mut Inner,
    event: &Event,
    path: &str,
    deleted: bool,
    out: &mut Vec<Delivery>,
) {
    let Some(ids) = inner.by_key.get(path).cloned() else {
        return;
    };
    let original = event.node.key == path;
    if !original && !deleted && is_hidden(path, &event.node.key) {
        return;
    }
    let mut keep = Vec::with_capacity(ids.len());
    for id in ids {
        let Some(w) = inner.watchers.get(&id) else {
            continue;
        };
        let wants = (w.recursive || original || deleted) && event.etcd_index >= w.since;
        if !wants {
            keep.push(id);
            continue;
        }
        match &w.target {
            Target::Stream(state) if state.dead.load(std::sync::atomic::Ordering::SeqCst) => {
                inner.watchers.remove(&id);
            }
            Target::Stream(state) => {
                let overflow = {
                    let mut backlog = lock_backlog(state);
                    backlog.push_back(event.clone());
                    backlog.len() > STREAM_BACKLOG_MAX
                };
                if overflow {
                    // Never wait for the sink here (a delivery may be writing to a slow
                    // client): mark it dead and let a drain job end it.
                    state.dead.store(true, std::sync::atomic::Ordering::SeqCst);
                    lock_backlog(state).clear();
                    out.push(Delivery::Stream(Arc::clone(state)));
                    inner.watchers.remove(&id);
                } else {
                    out.push(Delivery::Stream(Arc::clone(state)));
                    keep.push(id);
                }
            }
            Target::Once(_) => {
                if let Some(w) = inner.watchers.remove(&id) {
                    if let Target::Once(sink) = w.target {
                        out.push(Delivery::Once(sink, Box::new(event.clone())));
                    }
                }
            }
        }
    }
    if keep.is_empty() {
        inner.by_key.remove(path);
    } else {
        inner.by_key.insert(path.to_string(), keep);
    }
}

#[cfg(test)]
mod tests {
    use super::ancestors;

    #[test]
    fn ancestors_run_from_the_root_to_the_key_itself() {
        fn all(k: &str) -> Vec<&str> {
            ancestors(k).collect()
        }
        assert_eq!(all("/"), ["/"]);
        assert_eq!(all("/a"), ["/", "/a"]);
        assert_eq!(all("/a/bc/d"), ["/", "/a", "/a/bc", "/a/bc/d"]);
    }
}
