//! Key paths: how a node's path becomes its `Table::Nodes` key, and the path helpers the tree
//! walks with.
//!
//! A node key is the path's depth (number of components, big-endian `u32`) followed by the
//! path's bytes. All direct children of a directory then share depth and the prefix
//! `<dir>/`, so they form one contiguous range that sorts byte-wise by full key, and a
//! range scan over it never meets a grandchild (those have a larger depth).

/// The root directory's path.
pub const ROOT: &str = "/";

/// Number of components of a normalised absolute path (0 for the root).
pub fn depth(path: &str) -> u32 {
    if path == ROOT {
        return 0;
    }
    // A depth beyond u32 would need a 4 GiB key; saturating keeps this total.
    u32::try_from(path.bytes().filter(|b| *b == b'/').count()).unwrap_or(u32::MAX)
}

/// The `Table::Nodes` key of `path`.
pub fn node_key(path: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(4 + path.len());
    key.extend_from_slice(&depth(path).to_be_bytes());
    key.extend_from_slice(path.as_bytes());
    key
}

/// The path stored in a `Table::Nodes` key, or `None` if the key is malformed.
pub fn path_of_node_key(key: &[u8]) -> Option<&str> {
    key.get(4..).and_then(|p| std::str::from_utf8(p).ok())
}

/// The half-open key range `[start, end)` holding exactly the direct children of `dir`.
pub fn children_range(dir: &str) -> (Vec<u8>, Vec<u8>) {
    let child_depth = depth(dir).saturating_add(1).to_be_bytes();
    let prefix = child_prefix(dir);
    let mut start = child_depth.to_vec();
    start.extend_from_slice(prefix.as_bytes());
    // The prefix ends in '/', so bumping that byte to '0' bounds every name after it.
    let mut end = start.clone();
    if let Some(last) = end.last_mut() {
        *last = b'/' + 1;
    }
    (start, end)
}

/// `dir` with a trailing separator: the common prefix of its children's paths.
fn child_prefix(dir: &str) -> String {
    if dir == ROOT {
        ROOT.to_string()
    } else {
        format!("{dir}/")
    }
}

/// The path of the child `name` of `dir`.
pub fn join(dir: &str, name: &str) -> String {
    format!("{}{name}", child_prefix(dir))
}

/// The parent directory of a non-root path (`/a` → `/`, `/a/b` → `/a`).
pub fn parent(path: &str) -> &str {
    match path.rfind('/') {
        Some(0) | None => ROOT,
        Some(i) => &path[..i],
    }
}

/// The last component of a path (empty for the root).
pub fn name(path: &str) -> &str {
    path.rfind('/').map_or(path, |i| &path[i + 1..])
}

/// Whether the node itself is hidden: its own name starts with `_` (spec §2.1).
pub fn is_hidden(path: &str) -> bool {
    name(path).starts_with('_')
}

/// Every proper ancestor of `path` below the root, outermost first, then `path` itself
/// (`/a/b/c` → `/a`, `/a/b`, `/a/b/c`; the root yields nothing).
pub fn prefixes(path: &str) -> impl Iterator<Item = &str> {
    let ends = path
        .char_indices()
        .filter(|(i, c)| *c == '/' && *i > 0)
        .map(|(i, _)| i);
    let whole = if path == ROOT { None } else { Some(path.len()) };
    ends.chain(whole).map(move |end| &path[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_key_is_depth_then_path() {
        assert_eq!(node_key("/"), b"\0\0\0\0/".to_vec());
        assert_eq!(node_key("/a"), b"\0\0\0\x01/a".to_vec());
        assert_eq!(node_key("/a/b c"), b"\0\0\0\x02/a/b c".to_vec());
        assert_eq!(path_of_node_key(&node_key("/a/✓")), Some("/a/✓"));
        assert_eq!(path_of_node_key(b"\0\0"), None);
    }

    #[test]
    fn children_range_holds_children_only() {
        let (start, end) = children_range("/a");
        let inside = |p: &str| {
            let k = node_key(p);
            k >= start && k < end
        };
        assert!(inside("/a/b"));
        assert!(inside("/a/\0"));
        assert!(inside("/a/~~~"));
        assert!(inside("/a/_h"));
        assert!(!inside("/a"));
        assert!(!inside("/a/b/c"));
        assert!(!inside("/ab"));
        assert!(!inside("/a0"));
        assert!(!inside("/b/c"));
        let (start, end) = children_range("/");
        let k = node_key("/x");
        assert!(k >= start && k < end);
        assert!(node_key("/x/y") >= end);
    }

    #[test]
    fn path_helpers() {
        assert_eq!(join("/", "a"), "/a");
        assert_eq!(join("/a", "b"), "/a/b");
        assert_eq!(parent("/a"), "/");
        assert_eq!(parent("/a/b"), "/a");
        assert_eq!(name("/a/b"), "b");
        assert_eq!(name("/"), "");
        assert!(is_hidden("/a/_b"));
        assert!(!is_hidden("/_a/b"));
        assert_eq!(
            prefixes("/a/b/c").collect::<Vec<_>>(),
            ["/a", "/a/b", "/a/b/c"]
        );
        assert_eq!(prefixes("/a").collect::<Vec<_>>(), ["/a"]);
        assert_eq!(prefixes("/").count(), 0);
        assert_eq!(depth("/"), 0);
        assert_eq!(depth("/a/b"), 2);
    }
}
