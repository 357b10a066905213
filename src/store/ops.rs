//! The state changes, one function per command, following etcd's `v2store/store.go`
//! (check order included, since it decides which error a request gets). Each checks
//! everything before it writes, so a failed command leaves the Kv untouched.

use super::command::Command;
use super::error::{
    DIR_NOT_EMPTY, KEY_NOT_FOUND, NODE_EXIST, NOT_FILE, ROOT_READ_ONLY, TEST_FAILED,
};
use super::event::{Action, Event, NodeView};
use super::kv::KvWrite;
use super::path::{self, ROOT};
use super::tree::{self, etcd, Fault, NodeRecord};
use super::{meta, ttl, Applied};

/// Applies `cmd` on a store whose current index is `cur`.
pub fn apply<K: KvWrite>(kv: &mut K, cmd: &Command, cur: u64) -> Result<Vec<Applied>, Fault> {
    let next = cur + 1;
    let one = match cmd {
        Command::Set {
            key,
            value,
            dir,
            expire_at,
            refresh,
        } => set(kv, key, value, *dir, *expire_at, *refresh, next)?,
        Command::Create {
            key,
            value,
            dir,
            expire_at,
        } => create(kv, key, value, *dir, *expire_at, next)?,
        Command::CreateInOrder {
            dir_key,
            value,
            dir,
            expire_at,
        } => {
            let key = path::join(dir_key, &format!("{next:020}"));
            create(kv, &key, value, *dir, *expire_at, next)?
        }
        Command::Update {
            key,
            value,
            expire_at,
            refresh,
        } => update(kv, key, value, *expire_at, *refresh, next)?,
        Command::CompareAndSwap {
            key,
            value,
            prev_value,
            prev_index,
            expire_at,
            refresh,
        } => {
            let cond = Cond::new(prev_value, *prev_index);
            compare_and_swap(kv, key, value, cond, *expire_at, *refresh, next)?
        }
        Command::Delete {
            key,
            dir,
            recursive,
        } => delete(kv, key, *dir, *recursive, next)?,
        Command::CompareAndDelete {
            key,
            prev_value,
            prev_index,
        } => compare_and_delete(kv, key, Cond::new(prev_value, *prev_index), next)?,
        Command::Sync { now } => return expire(kv, *now, cur),
        Command::Publish {
            member,
            name,
            client_urls,
        } => {
            meta::set_member(kv, *member, name, client_urls)?;
            return Ok(Vec::new());
        }
    };
    Ok(vec![one])
}

/// Records a successful change: the new index. (The event goes into the history with its
/// log entry: `history`.)
fn commit<K: KvWrite>(
    kv: &mut K,
    action: Action,
    node: NodeView,
    prev_node: Option<NodeView>,
    refresh: bool,
    removed: Vec<String>,
) -> Result<Applied, Fault> {
    let event = Event {
        action,
        etcd_index: node.modified_index,
        node,
        prev_node,
        refresh,
    };
    meta::set_index(kv, event.etcd_index)?;
    Ok(Applied { event, removed })
}

fn root_read_only() -> Fault {
    etcd(ROOT_READ_ONLY, ROOT)
}

/// The node of a removal event: key, dir, the removal's index and the node's creation.
fn removal_view(key: &str, node: &NodeRecord, index: u64) -> NodeView {
    NodeView {
        key: key.to_string(),
        value: None,
        dir: node.dir,
        expiration: None,
        nodes: None,
        modified_index: index,
        created_index: node.created_index,
    }
}

/// Creates the node `key` (and its missing ancestors) at `index`.
fn create_node<K: KvWrite>(
    kv: &mut K,
    key: &str,
    dir: bool,
    value: &str,
    expire_at: Option<u64>,
    index: u64,
) -> Result<NodeRecord, Fault> {
    tree::ensure_dir(kv, path::parent(key), index)?;
    let node = NodeRecord::new(dir, value.to_string(), index, expire_at);
    tree::put(kv, key, None, &node)?;
    Ok(node)
}

fn set<K: KvWrite>(
    kv: &mut K,
    key: &str,
    value: &str,
    dir: bool,
    expire_at: Option<u64>,
    refresh: bool,
    next: u64,
) -> Result<Applied, Fault> {
    if key == ROOT {
        return Err(root_read_only());
    }
    let prev = match tree::lookup(kv, key) {
        Ok(node) => Some(node),
        Err(Fault::Etcd(KEY_NOT_FOUND, _)) if !refresh => None,
        Err(e) => return Err(e),
    };
    if prev.as_ref().is_some_and(|p| p.dir) {
        return Err(etcd(NOT_FILE, key));
    }
    let value = match (&prev, refresh) {
        (Some(p), true) => p.value.as_str(),
        _ => value,
    };
    let node = match &prev {
        // A file replaced where it stands: its directories exist (the lookup walked them),
        // and one write over the old record keeps the expiry index in step.
        Some(p) => {
            let node = NodeRecord::new(dir, value.to_string(), next, expire_at);
            tree::put(kv, key, Some(p), &node)?;
            node
        }
        None => create_node(kv, key, dir, value, expire_at, next)?,
    };
    let prev_view = prev.map(|p| p.view(key));
    commit(
        kv,
        Action::Set,
        node.view(key),
        prev_view,
        refresh,
        Vec::new(),
    )
}

fn create<K: KvWrite>(
    kv: &mut K,
    key: &str,
    value: &str,
    dir: bool,
    expire_at: Option<u64>,
    next: u64,
) -> Result<Applied, Fault> {
    if key == ROOT {
        return Err(root_read_only());
    }
    // An existing node implies directories all the way up, so testing it before the walk
    // gives the same error as etcd's walk-then-test.
    if tree::load(kv, key)?.is_some() {
        return Err(etcd(NODE_EXIST, key));
    }
    let node = create_node(kv, key, dir, value, expire_at, next)?;
    commit(kv, Action::Create, node.view(key), None, false, Vec::new())
}

fn update<K: KvWrite>(
    kv: &mut K,
    key: &str,
    value: &str,
    expire_at: Option<u64>,
    refresh: bool,
    next: u64,
) -> Result<Applied, Fault> {
    if key == ROOT {
        return Err(root_read_only());
    }
    let old = tree::lookup(kv, key)?;
    if old.dir && !value.is_empty() {
        return Err(etcd(NOT_FILE, key));
    }
    let mut new = old.clone();
    new.expiration = expire_at;
    // etcd's node.Write fails silently on a directory, so a directory keeps its
    // modifiedIndex while the event reports the new one (spec §2.4 quirk).
    if !old.dir {
        if !refresh {
            new.value = value.to_string();
        }
        new.modified_index = next;
    }
    tree::put(kv, key, Some(&old), &new)?;
    let mut view = new.view(key);
    view.modified_index = next;
    commit(
        kv,
        Action::Update,
        view,
        Some(old.view(key)),
        refresh,
        Vec::new(),
    )
}

/// The conditions of a compare-and-swap/delete; an empty value or index 0 is no condition.
struct Cond<'a> {
    value: Option<&'a str>,
    index: Option<u64>,
}

impl<'a> Cond<'a> {
    fn new(value: &'a Option<String>, index: Option<u64>) -> Cond<'a> {
        Cond {
            value: value.as_deref().filter(|v| !v.is_empty()),
            index: index.filter(|i| *i != 0),
        }
    }

    /// 101 with etcd's cause text when a given condition does not hold.
    fn check(&self, node: &NodeRecord) -> Result<(), Fault> {
        let value_fail = self
            .value
            .filter(|v| *v != node.value)
            .map(|v| format!("[{v} != {}]", node.value));
        let index_fail = self
            .index
            .filter(|i| *i != node.modified_index)
            .map(|i| format!("[{i} != {}]", node.modified_index));
        let cause = match (value_fail, index_fail) {
            (None, None) => return Ok(()),
            (Some(v), Some(i)) => format!("{v} {i}"),
            (Some(one), None) | (None, Some(one)) => one,
        };
        Err(etcd(TEST_FAILED, cause))
    }
}

fn compare_and_swap<K: KvWrite>(
    kv: &mut K,
    key: &str,
    value: &str,
    cond: Cond<'_>,
    expire_at: Option<u64>,
    refresh: bool,
    next: u64,
) -> Result<Applied, Fault> {
    if key == ROOT {
        return Err(root_read_only());
    }
    let old = tree::lookup(kv, key)?;
    if old.dir {
        return Err(etcd(NOT_FILE, key));
    }
    cond.check(&old)?;
    let mut new = old.clone();
    if !refresh {
        new.value = value.to_string();
    }
    new.modified_index = next;
    new.expiration = expire_at;
    tree::put(kv, key, Some(&old), &new)?;
    let prev = Some(old.view(key));
    commit(
        kv,
        Action::CompareAndSwap,
        new.view(key),
        prev,
        refresh,
        Vec::new(),
    )
}

fn delete<K: KvWrite>(
    kv: &mut K,
    key: &str,
    dir: bool,
    recursive: bool,
    next: u64,
) -> Result<Applied, Fault> {
    if key == ROOT {
        return Err(root_read_only());
    }
    let node = tree::lookup(kv, key)?;
    if node.dir {
        if !(dir || recursive) {
            return Err(etcd(NOT_FILE, key));
        }
        // Hidden children count: etcd tests its child map, not the listing.
        if !recursive && tree::has_children(kv, key)? {
            return Err(etcd(DIR_NOT_EMPTY, key));
        }
    }
    let mut removed = Vec::new();
    tree::remove_subtree(kv, key, &node, &mut removed)?;
    let view = removal_view(key, &node, next);
    commit(
        kv,
        Action::Delete,
        view,
        Some(node.view(key)),
        false,
        removed,
    )
}

fn compare_and_delete<K: KvWrite>(
    kv: &mut K,
    key: &str,
    cond: Cond<'_>,
    next: u64,
) -> Result<Applied, Fault> {
    let node = tree::lookup(kv, key)?;
    if node.dir {
        // etcd's cause is the internal path with the "/1" prefix stripped: empty for the root.
        let cause = if key == ROOT { "" } else { key };
        return Err(etcd(NOT_FILE, cause));
    }
    cond.check(&node)?;
    tree::remove_one(kv, key, &node)?;
    let view = removal_view(key, &node, next);
    let prev = Some(node.view(key));
    commit(
        kv,
        Action::CompareAndDelete,
        view,
        prev,
        false,
        vec![key.to_string()],
    )
}

/// Removes every node whose expiration is at or before `now`, earliest first, one index and
/// one `expire` event each; an expired directory takes its subtree (and the subtree's TTL
/// entries) with it, so a child inside never expires on its own afterwards.
fn expire<K: KvWrite>(kv: &mut K, now: u64, cur: u64) -> Result<Vec<Applied>, Fault> {
    meta::advance_clock(kv, now)?;
    let mut applied = Vec::new();
    let mut index = cur;
    while let Some((exp, key)) = ttl::first(kv)? {
        if exp > now {
            break;
        }
        let Some(node) = live_entry(kv, exp, &key)? else {
            continue;
        };
        index += 1;
        let mut removed = Vec::new();
        tree::remove_subtree(kv, &key, &node, &mut removed)?;
        let view = removal_view(&key, &node, index);
        let prev = Some(node.view(&key));
        applied.push(commit(kv, Action::Expire, view, prev, false, removed)?);
    }
    Ok(applied)
}

/// The node a TTL entry points at, or `None` after dropping an entry that no longer
/// matches its node. That cannot happen while every write goes through `tree`; dropping it
/// (the same way on every member) beats stalling expiry forever.
fn live_entry<K: KvWrite>(kv: &mut K, exp: u64, key: &str) -> Result<Option<NodeRecord>, Fault> {
    match tree::load(kv, key)? {
        Some(node) if node.expiration == Some(exp) && key != ROOT => Ok(Some(node)),
        _ => {
            log::warn!("dropping stale expiry entry for {key:?} at {exp}");
            ttl::remove(kv, exp, key)?;
            Ok(None)
        }
    }
}
