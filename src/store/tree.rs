//! Node records in `Table::Nodes` and the tree operations over them. Every write here keeps
//! the expiry index (`Table::Ttl`) in step with the records, so no caller has to.
//!
//! The root is never stored: it always exists, is a directory and has indexes 0.

use super::codec;
use super::error::{KEY_NOT_FOUND, NOT_DIR};
use super::event::NodeView;
use super::kv::{KvRead, KvWrite, Table};
use super::path::{self, ROOT};
use super::ttl;
use crate::storage::StorageError;
use bincode::{Decode, Encode};

/// One stored node.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub struct NodeRecord {
    /// Directory or file.
    pub dir: bool,
    /// The file's value (empty for directories).
    pub value: String,
    /// etcd index of the creation.
    pub created_index: u64,
    /// etcd index of the last modification.
    pub modified_index: u64,
    /// Absolute expiration (Unix nanoseconds), `None` if permanent.
    pub expiration: Option<u64>,
}

impl NodeRecord {
    /// A node created at `index`; directories never keep a value.
    pub fn new(dir: bool, value: String, index: u64, expiration: Option<u64>) -> NodeRecord {
        NodeRecord {
            dir,
            value: if dir { String::new() } else { value },
            created_index: index,
            modified_index: index,
            expiration,
        }
    }

    fn root() -> NodeRecord {
        NodeRecord::new(true, String::new(), 0, None)
    }

    /// The node as responses show it, without children.
    pub fn view(&self, path: &str) -> NodeView {
        NodeView {
            key: path.to_string(),
            value: (!self.dir).then(|| self.value.clone()),
            dir: self.dir,
            expiration: self.expiration,
            nodes: None,
            modified_index: self.modified_index,
            created_index: self.created_index,
        }
    }
}

/// Why a store operation failed: the storage underneath, or an etcd error whose index the
/// caller fills in (it is always the index before the operation).
#[derive(Debug)]
pub enum Fault {
    /// The Kv failed; the batch must be aborted.
    Storage(StorageError),
    /// An etcd keys error (code and cause).
    Etcd(u16, String),
}

impl From<StorageError> for Fault {
    fn from(e: StorageError) -> Fault {
        Fault::Storage(e)
    }
}

/// An etcd error with the given code and cause.
pub fn etcd(code: u16, cause: impl Into<String>) -> Fault {
    Fault::Etcd(code, cause.into())
}

/// The node at `path`, if stored (the root always exists).
pub fn load<K: KvRead>(kv: &K, path: &str) -> Result<Option<NodeRecord>, StorageError> {
    if path == ROOT {
        return Ok(Some(NodeRecord::root()));
    }
    kv.get(Table::Nodes, &path::node_key(path))?
        .map(|bytes| codec::decode(format_args!("node {path}"), &bytes))
        .transpose()
}

/// The node at `path` the way etcd's `internalGet` finds it: 100 with the first missing
/// prefix, or 104 with the first file that has a component below it.
pub fn lookup<K: KvRead>(kv: &K, path: &str) -> Result<NodeRecord, Fault> {
    // A stored node implies directories all the way up, so finding it ends the walk before
    // it starts: one read instead of one per component for the keys that exist.
    if let Some(node) = load(kv, path)? {
        return Ok(node);
    }
    let mut node = NodeRecord::root();
    let mut parent = ROOT;
    for prefix in path::prefixes(path) {
        if !node.dir {
            return Err(etcd(NOT_DIR, parent));
        }
        node = load(kv, prefix)?.ok_or_else(|| etcd(KEY_NOT_FOUND, prefix))?;
        parent = prefix;
    }
    Ok(node)
}

/// Makes sure `dir` is a directory, creating it and its missing ancestors at `index`
/// (etcd's `checkDir` walk); 104 with the file's key if a component is a file. Nothing is
/// written before the check has passed: below the first missing component, everything is
/// missing.
pub fn ensure_dir<K: KvWrite>(kv: &mut K, dir: &str, index: u64) -> Result<(), Fault> {
    let mut creating = false;
    for prefix in path::prefixes(dir) {
        if !creating {
            match load(kv, prefix)? {
                Some(node) if node.dir => continue,
                Some(_) => return Err(etcd(NOT_DIR, prefix)),
                None => creating = true,
            }
        }
        put(
            kv,
            prefix,
            None,
            &NodeRecord::new(true, String::new(), index, None),
        )?;
    }
    Ok(())
}

/// Stores `new` at `path`, replacing `old` (the record currently stored there, if any).
pub fn put<K: KvWrite>(
    kv: &mut K,
    path: &str,
    old: Option<&NodeRecord>,
    new: &NodeRecord,
) -> Result<(), StorageError> {
    let old_exp = old.and_then(|o| o.expiration);
    if old_exp != new.expiration {
        if let Some(exp) = old_exp {
            ttl::remove(kv, exp, path)?;
        }
        if let Some(exp) = new.expiration {
            ttl::insert(kv, exp, path)?;
        }
    }
    let bytes = codec::encode(format_args!("node {path}"), new)?;
    kv.put(Table::Nodes, &path::node_key(path), &bytes)
}

/// Removes the single node `path` whose record is `node` (children are not touched).
pub fn remove_one<K: KvWrite>(
    kv: &mut K,
    path: &str,
    node: &NodeRecord,
) -> Result<(), StorageError> {
    if let Some(exp) = node.expiration {
        ttl::remove(kv, exp, path)?;
    }
    kv.delete(Table::Nodes, &path::node_key(path)).map(|_| ())
}

/// Removes `path` and its whole subtree (hidden nodes included), appending every removed
/// path to `removed`, parents before children.
pub fn remove_subtree<K: KvWrite>(
    kv: &mut K,
    path: &str,
    node: &NodeRecord,
    removed: &mut Vec<String>,
) -> Result<(), StorageError> {
    removed.push(path.to_string());
    if node.dir {
        for (child, record) in children(kv, path)? {
            remove_subtree(kv, &child, &record, removed)?;
        }
    }
    remove_one(kv, path, node)
}

/// The direct children of `dir` (hidden ones included), byte-wise ascending by key.
pub fn children<K: KvRead>(kv: &K, dir: &str) -> Result<Vec<(String, NodeRecord)>, StorageError> {
    let (start, end) = path::children_range(dir);
    let mut raw = Vec::new();
    kv.scan(Table::Nodes, &start, Some(&end), &mut |k, v| {
        raw.push((k.to_vec(), v.to_vec()));
        true
    })?;
    raw.into_iter().map(|(k, v)| decode_child(&k, &v)).collect()
}

fn decode_child(key: &[u8], value: &[u8]) -> Result<(String, NodeRecord), StorageError> {
    let path = path::path_of_node_key(key)
        .ok_or_else(|| StorageError::corrupt("decode node key", "malformed key"))?;
    let record = codec::decode(format_args!("node {path}"), value)?;
    Ok((path.to_string(), record))
}

/// Whether `dir` has any child, hidden ones included.
pub fn has_children<K: KvRead>(kv: &K, dir: &str) -> Result<bool, StorageError> {
    let (start, end) = path::children_range(dir);
    let mut any = false;
    kv.scan(Table::Nodes, &start, Some(&end), &mut |_, _| {
        any = true;
        false
    })?;
    Ok(any)
}

/// The visible (non-hidden) children of `dir` as a read shows them: child directories with
/// their own children only when `recursive`. `None` when nothing is visible.
pub fn listing<K: KvRead>(
    kv: &K,
    dir: &str,
    recursive: bool,
) -> Result<Option<Vec<NodeView>>, StorageError> {
    let mut nodes = Vec::new();
    for (child, record) in children(kv, dir)? {
        if path::is_hidden(&child) {
            continue;
        }
        let mut view = record.view(&child);
        if recursive && record.dir {
            view.nodes = listing(kv, &child, true)?;
        }
        nodes.push(view);
    }
    Ok((!nodes.is_empty()).then_some(nodes))
}
