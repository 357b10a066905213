//! Store tests on [`MemKv`]: one test per row of the spec's tables (§5.3, §6, §7) and per
//! captured example (§2, §3, §5, §6, §7), the §18 quirks that concern the store, expiry,
//! history, restart and the listing cost. Captured examples are replayed at the captured
//! etcd indexes by padding the index with writes to a hidden key first, so every expected
//! event below is copied from the spec's listings.

use super::*;
use crate::store::error::*;
use std::cell::Cell;

/// A store plus its Kv; every command is followed by a consistency check of the tables.
/// The events of each command go through the history codec, as the apply thread keeps
/// them with their log entry, and `history` holds what a restart would read back.
struct Harness {
    kv: MemKv,
    store: V2Store,
    history: Vec<Event>,
}

impl Harness {
    fn new() -> Harness {
        Harness {
            kv: MemKv::new(),
            store: V2Store::new(),
            history: Vec::new(),
        }
    }

    fn run(&mut self, cmd: Command) -> Result<Vec<Applied>, V2Error> {
        let out = self.store.apply(&mut self.kv, &cmd).unwrap();
        // MemKv has no transaction: each command is its own committed batch.
        self.store.batch_committed();
        check_invariants(&self.kv);
        if let Ok(applied) = &out {
            let events: Vec<Event> = applied.iter().map(|a| a.event.clone()).collect();
            let bytes = V2Store::encode_history(&events, &cmd).unwrap();
            assert_eq!(bytes.is_empty(), events.is_empty());
            if !bytes.is_empty() {
                let back = V2Store::decode_history(&bytes, &cmd).unwrap();
                assert_eq!(back, events, "history codec round trip of {cmd:?}");
                self.history.extend(back);
            }
        }
        out
    }

    /// Applies a command that must succeed with one event.
    fn ok(&mut self, cmd: Command) -> Event {
        let mut applied = self
            .run(cmd.clone())
            .unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
        assert_eq!(applied.len(), 1);
        applied.remove(0).event
    }

    /// Applies a command that must fail, and checks it changed nothing.
    fn err(&mut self, cmd: Command) -> V2Error {
        let before = self.kv.clone();
        let e = self
            .run(cmd.clone())
            .err()
            .unwrap_or_else(|| panic!("{cmd:?} ok"));
        assert_eq!(before, self.kv, "failed {cmd:?} changed the Kv");
        e
    }

    fn get(&self, key: &str, recursive: bool) -> Result<Event, V2Error> {
        self.store.get(&self.kv, key, recursive, true).unwrap()
    }

    /// The node at `key` as a non-recursive read shows it, without its listing.
    fn node(&self, key: &str) -> NodeView {
        let mut node = self.get(key, false).unwrap().node;
        node.nodes = None;
        node
    }

    fn next_expiration(&self) -> Option<u64> {
        V2Store::next_expiration(&self.kv).unwrap()
    }

    fn index(&self) -> u64 {
        V2Store::current_index(&self.kv).unwrap()
    }

    /// Spends indexes on a hidden key until the current index is `index`, so the next write
    /// gets `index + 1` as in the captured listing.
    fn pad_to(&mut self, index: u64) {
        assert!(self.index() <= index);
        while self.index() < index {
            self.ok(set("/_pad", ""));
        }
    }
}

/// Every node's parent is a stored directory, and the TTL index holds exactly one entry per
/// node with an expiration.
fn check_invariants(kv: &MemKv) {
    let mut nodes = Vec::new();
    kv.scan(Table::Nodes, &[], None, &mut |k, _| {
        let p = path::path_of_node_key(k).unwrap().to_string();
        assert_eq!(path::node_key(&p), k, "key encoding does not round-trip");
        nodes.push(p);
        true
    })
    .unwrap();
    let mut ttl_entries = 0;
    for p in &nodes {
        let rec = tree::load(kv, p).unwrap().unwrap();
        let parent = tree::load(kv, path::parent(p)).unwrap();
        assert!(parent.is_some_and(|d| d.dir), "{p} has no parent directory");
        if let Some(exp) = rec.expiration {
            ttl_entries += 1;
            let key = ttl::entry_key(exp, p);
            assert!(
                kv.get(Table::Ttl, &key).unwrap().is_some(),
                "{p} not in ttl index"
            );
        }
    }
    assert_eq!(kv.len(Table::Ttl), ttl_entries, "stale ttl entries");
}

fn set(key: &str, value: &str) -> Command {
    Command::Set {
        key: key.into(),
        value: value.into(),
        dir: false,
        expire_at: None,
        refresh: false,
    }
}

fn set_ttl(key: &str, value: &str, exp: u64) -> Command {
    Command::Set {
        key: key.into(),
        value: value.into(),
        dir: false,
        expire_at: Some(exp),
        refresh: false,
    }
}

fn mkdir(key: &str, exp: Option<u64>) -> Command {
    Command::Set {
        key: key.into(),
        value: String::new(),
        dir: true,
        expire_at: exp,
        refresh: false,
    }
}

fn refresh_set(key: &str, exp: u64) -> Command {
    Command::Set {
        key: key.into(),
        value: String::new(),
        dir: false,
        expire_at: Some(exp),
        refresh: true,
    }
}

fn create(key: &str, value: &str, dir: bool) -> Command {
    Command::Create {
        key: key.into(),
        value: value.into(),
        dir,
        expire_at: None,
    }
}

fn post(dir_key: &str, value: &str, dir: bool, exp: Option<u64>) -> Command {
    Command::CreateInOrder {
        dir_key: dir_key.into(),
        value: value.into(),
        dir,
        expire_at: exp,
    }
}

fn update(key: &str, value: &str, exp: Option<u64>) -> Command {
    Command::Update {
        key: key.into(),
        value: value.into(),
        expire_at: exp,
        refresh: false,
    }
}

fn refresh_update(key: &str, exp: u64) -> Command {
    Command::Update {
        key: key.into(),
        value: String::new(),
        expire_at: Some(exp),
        refresh: true,
    }
}

fn cas(key: &str, value: &str, prev_value: Option<&str>, prev_index: Option<u64>) -> Command {
    Command::CompareAndSwap {
        key: key.into(),
        value: value.into(),
        prev_value: prev_value.map(Into::into),
        prev_index,
        expire_at: None,
        refresh: false,
    }
}

fn del(key: &str, dir: bool, recursive: bool) -> Command {
    Command::Delete {
        key: key.into(),
        dir,
        recursive,
    }
}

fn cad(key: &str, prev_value: Option<&str>, prev_index: Option<u64>) -> Command {
    Command::CompareAndDelete {
        key: key.into(),
        prev_value: prev_value.map(Into::into),
        prev_index,
    }
}

fn sync(now: u64) -> Command {
    Command::Sync { now }
}

fn file(key: &str, value: &str, modified: u64, created: u64) -> NodeView {
    NodeView {
        key: key.into(),
        value: Some(value.into()),
        dir: false,
        expiration: None,
        nodes: None,
        modified_index: modified,
        created_index: created,
    }
}

fn dir(key: &str, modified: u64, created: u64) -> NodeView {
    NodeView {
        value: None,
        dir: true,
        ..file(key, "", modified, created)
    }
}

/// The node of a removal event of a file.
fn gone(key: &str, modified: u64, created: u64) -> NodeView {
    NodeView {
        value: None,
        ..file(key, "", modified, created)
    }
}

fn exp(mut node: NodeView, expiration: u64) -> NodeView {
    node.expiration = Some(expiration);
    node
}

fn with_nodes(mut node: NodeView, nodes: Vec<NodeView>) -> NodeView {
    node.nodes = Some(nodes);
    node
}

fn ev(action: Action, node: NodeView, prev: Option<NodeView>, index: u64) -> Event {
    Event {
        action,
        node,
        prev_node: prev,
        etcd_index: index,
        refresh: false,
    }
}

fn refreshed(mut event: Event) -> Event {
    event.refresh = true;
    event
}

fn error(code: u16, cause: &str, index: u64) -> V2Error {
    V2Error::new(code, cause, index)
}

// ---- §2.4 indexes ----

#[test]
fn fresh_store_starts_at_zero_and_first_write_gets_one() {
    let mut h = Harness::new();
    assert_eq!(h.index(), 0);
    let e = h.ok(set("/a", "1"));
    assert_eq!(e, ev(Action::Set, file("/a", "1", 1, 1), None, 1));
    assert_eq!(h.index(), 1);
}

#[test]
fn failed_writes_and_reads_do_not_consume_indexes() {
    let mut h = Harness::new();
    h.ok(set("/a", "1"));
    assert_eq!(h.err(create("/a", "x", false)), error(NODE_EXIST, "/a", 1));
    assert_eq!(h.err(update("/nokey", "x", None)).index, 1);
    h.get("/a", false).unwrap();
    h.get("/nokey", true).unwrap_err();
    assert_eq!(h.index(), 1);
    assert_eq!(h.ok(set("/b", "2")).etcd_index, 2);
}

#[test]
fn missing_ancestors_are_created_with_the_writes_index() {
    // Captured: POST /m4 at 16 made /m4 a directory with indexes 16.
    let mut h = Harness::new();
    h.pad_to(15);
    let e = h.ok(post("/m4", "x", false, None));
    assert_eq!(e.node.key, "/m4/00000000000000000016");
    assert_eq!(h.node("/m4").modified_index, 16);
    assert_eq!(h.node("/m4").created_index, 16);
    h.ok(set("/x/y/z", "v"));
    assert_eq!(h.node("/x"), dir("/x", 17, 17));
    assert_eq!(h.node("/x/y"), dir("/x/y", 17, 17));
}

#[test]
fn recursive_delete_counts_once() {
    let mut h = Harness::new();
    h.ok(set("/d/a", "1"));
    h.ok(set("/d/b/c", "2"));
    assert_eq!(h.ok(del("/d", false, true)).etcd_index, 3);
    assert_eq!(h.index(), 3);
}

// ---- §3 GET ----

#[test]
fn get_file_captured() {
    let mut h = Harness::new();
    h.pad_to(3);
    h.ok(set("/message", "Hello world"));
    let e = h.get("/message", false).unwrap();
    let want = ev(Action::Get, file("/message", "Hello world", 4, 4), None, 4);
    assert_eq!(e, want);
    // recursive/sorted make no difference for files.
    assert_eq!(h.get("/message", true).unwrap(), want);
}

/// The `/dir` tree of the §3 and §7 captures: /dir 14, /dir/a 15, /dir/sub/b 16,
/// /dir/_hidden 17.
fn captured_dir_tree() -> Harness {
    let mut h = Harness::new();
    h.pad_to(13);
    h.ok(mkdir("/dir", None));
    h.ok(set("/dir/a", "1"));
    h.ok(set("/dir/sub/b", "2"));
    h.ok(set("/dir/_hidden", "h"));
    h
}

#[test]
fn get_dir_lists_visible_children_captured() {
    let h = captured_dir_tree();
    let e = h.get("/dir", false).unwrap();
    let listing = vec![file("/dir/a", "1", 15, 15), dir("/dir/sub", 16, 16)];
    let want = ev(
        Action::Get,
        with_nodes(dir("/dir", 14, 14), listing),
        None,
        17,
    );
    assert_eq!(e, want);
}

#[test]
fn get_dir_recursive_captured() {
    let h = captured_dir_tree();
    let e = h.get("/dir", true).unwrap();
    let sub = with_nodes(
        dir("/dir/sub", 16, 16),
        vec![file("/dir/sub/b", "2", 16, 16)],
    );
    let listing = vec![file("/dir/a", "1", 15, 15), sub];
    let want = ev(
        Action::Get,
        with_nodes(dir("/dir", 14, 14), listing),
        None,
        17,
    );
    assert_eq!(e, want);
}

#[test]
fn get_root_without_visible_keys() {
    let mut h = Harness::new();
    assert_eq!(
        h.get("/", false).unwrap(),
        ev(Action::Get, dir("/", 0, 0), None, 0)
    );
    h.ok(set("/_hidden", "x"));
    assert_eq!(
        h.get("/", true).unwrap(),
        ev(Action::Get, dir("/", 0, 0), None, 1)
    );
}

#[test]
fn get_key_with_ttl_shows_expiration() {
    let mut h = Harness::new();
    h.pad_to(6);
    h.ok(set_ttl("/foo", "bar", 5_000));
    let want = ev(Action::Get, exp(file("/foo", "bar", 7, 7), 5_000), None, 7);
    assert_eq!(h.get("/foo", false).unwrap(), want);
}

#[test]
fn get_expired_but_not_synced_key_is_still_returned() {
    let mut h = Harness::new();
    h.ok(set_ttl("/t", "v", 10));
    assert_eq!(h.node("/t"), exp(file("/t", "v", 1, 1), 10));
    h.run(sync(10)).unwrap();
    assert_eq!(
        h.get("/t", false).unwrap_err(),
        error(KEY_NOT_FOUND, "/t", 2)
    );
}

#[test]
fn get_missing_key_captured() {
    let mut h = Harness::new();
    h.pad_to(6);
    assert_eq!(
        h.get("/message", false).unwrap_err(),
        error(KEY_NOT_FOUND, "/message", 6)
    );
}

#[test]
fn get_missing_reports_first_missing_prefix() {
    let h = Harness::new();
    let e = h.get("/nokey/sub/deeper", false).unwrap_err();
    assert_eq!(e, error(KEY_NOT_FOUND, "/nokey", 0));
}

#[test]
fn get_below_file_is_not_a_directory_captured() {
    let mut h = Harness::new();
    h.ok(mkdir("/dir1", None));
    h.ok(set("/dir1/a", "A"));
    h.pad_to(30);
    let e = h.get("/dir1/a/x", false).unwrap_err();
    assert_eq!(e, error(NOT_DIR, "/dir1/a", 30));
    let e = h.get("/dir1/a/x/y", true).unwrap_err();
    assert_eq!(e, error(NOT_DIR, "/dir1/a", 30));
}

// ---- §5.3 set ----

#[test]
fn set_captured_sequence() {
    let mut h = Harness::new();
    h.pad_to(3);
    let e = h.ok(set("/message", "Hello world"));
    assert_eq!(
        e,
        ev(Action::Set, file("/message", "Hello world", 4, 4), None, 4)
    );
    let e = h.ok(set("/message", "Hello etcd"));
    let prev = file("/message", "Hello world", 4, 4);
    let want = ev(
        Action::Set,
        file("/message", "Hello etcd", 5, 5),
        Some(prev),
        5,
    );
    assert_eq!(e, want);
}

#[test]
fn set_root_is_read_only() {
    let mut h = Harness::new();
    h.pad_to(38);
    assert_eq!(h.err(set("/", "1")), error(ROOT_READ_ONLY, "/", 38));
    assert_eq!(h.err(mkdir("/", None)), error(ROOT_READ_ONLY, "/", 38));
    assert_eq!(h.err(refresh_set("/", 9)), error(ROOT_READ_ONLY, "/", 38));
}

#[test]
fn set_below_file_is_not_a_directory() {
    let mut h = Harness::new();
    h.ok(set("/f", "x"));
    assert_eq!(h.err(set("/f/a/b", "y")), error(NOT_DIR, "/f", 1));
    assert_eq!(h.err(mkdir("/f/a", None)), error(NOT_DIR, "/f", 1));
}

#[test]
fn set_on_existing_dir_is_not_a_file_captured() {
    let mut h = Harness::new();
    h.pad_to(24);
    let e = h.ok(mkdir("/dir1", None));
    assert_eq!(e, ev(Action::Set, dir("/dir1", 25, 25), None, 25));
    assert_eq!(h.err(mkdir("/dir1", None)), error(NOT_FILE, "/dir1", 25));
    assert_eq!(h.err(set("/dir1", "v")), error(NOT_FILE, "/dir1", 25));
}

#[test]
fn set_replaces_file_by_a_new_node() {
    // Quirk 3: createdIndex resets.
    let mut h = Harness::new();
    h.ok(set("/k", "a"));
    h.ok(update("/k", "b", None));
    let e = h.ok(set("/k", "c"));
    let want = ev(
        Action::Set,
        file("/k", "c", 3, 3),
        Some(file("/k", "b", 2, 1)),
        3,
    );
    assert_eq!(e, want);
}

#[test]
fn set_dir_on_file_replaces_it_with_empty_dir_captured() {
    let mut h = Harness::new();
    h.ok(mkdir("/dir1", None));
    h.pad_to(27);
    h.ok(set_ttl("/dir1/a", "A", 500));
    h.pad_to(30);
    let e = h.ok(mkdir("/dir1/a", None));
    let prev = exp(file("/dir1/a", "A", 28, 28), 500);
    assert_eq!(e, ev(Action::Set, dir("/dir1/a", 31, 31), Some(prev), 31));
    assert_eq!(h.next_expiration(), None);
}

#[test]
fn set_dir_ignores_value() {
    let mut h = Harness::new();
    let e = h.ok(Command::Set {
        key: "/d".into(),
        value: "ignored".into(),
        dir: true,
        expire_at: None,
        refresh: false,
    });
    assert_eq!(e.node, dir("/d", 1, 1));
    assert_eq!(h.node("/d"), dir("/d", 1, 1));
}

#[test]
fn set_without_ttl_makes_node_permanent() {
    let mut h = Harness::new();
    h.ok(set_ttl("/k", "a", 100));
    h.ok(set("/k", "b"));
    assert_eq!(h.node("/k"), file("/k", "b", 2, 2));
    assert_eq!(h.next_expiration(), None);
}

#[test]
fn set_ttl_zero_expires_at_next_sync() {
    // Quirk 19: ttl=0 means expiration = the API's now.
    let mut h = Harness::new();
    h.pad_to(22);
    let e = h.ok(set_ttl("/t1", "zero", 1_000));
    assert_eq!(e.node, exp(file("/t1", "zero", 23, 23), 1_000));
    let expired = h.run(sync(1_000)).unwrap();
    assert_eq!(expired.len(), 1);
    assert_eq!(expired[0].event.node, gone("/t1", 24, 23));
}

#[test]
fn set_refresh_captured() {
    // Quirks 3 and 10: the set form of refresh creates a new node and consumes an index.
    let mut h = Harness::new();
    h.pad_to(17);
    h.ok(set("/t1", "v1"));
    h.ok(update("/t1", "v2", None));
    let e = h.ok(refresh_set("/t1", 30_000));
    let node = exp(file("/t1", "v2", 20, 20), 30_000);
    let prev = file("/t1", "v2", 19, 18);
    assert_eq!(e, refreshed(ev(Action::Set, node, Some(prev), 20)));
    assert_eq!(h.next_expiration(), Some(30_000));
}

#[test]
fn set_refresh_on_missing_key_captured() {
    let mut h = Harness::new();
    h.pad_to(23);
    assert_eq!(
        h.err(refresh_set("/tnone", 5)),
        error(KEY_NOT_FOUND, "/tnone", 23)
    );
    h.ok(set("/f", "x"));
    assert_eq!(h.err(refresh_set("/f/a", 5)), error(NOT_DIR, "/f", 24));
}

// ---- §5.3 create ----

#[test]
fn create_captured() {
    let mut h = Harness::new();
    h.pad_to(6);
    h.ok(set_ttl("/foo", "bar", 5));
    h.pad_to(9);
    assert_eq!(
        h.err(create("/foo", "baz", false)),
        error(NODE_EXIST, "/foo", 9)
    );
    let e = h.ok(create("/new", "one", false));
    assert_eq!(e, ev(Action::Create, file("/new", "one", 10, 10), None, 10));
}

#[test]
fn create_rows() {
    let mut h = Harness::new();
    h.ok(mkdir("/d", None));
    h.ok(set("/f", "x"));
    assert_eq!(h.err(create("/d", "x", false)), error(NODE_EXIST, "/d", 2));
    assert_eq!(h.err(create("/d", "", true)), error(NODE_EXIST, "/d", 2));
    assert_eq!(
        h.err(create("/", "x", false)),
        error(ROOT_READ_ONLY, "/", 2)
    );
    assert_eq!(h.err(create("/f/a", "x", false)), error(NOT_DIR, "/f", 2));
    let e = h.ok(create("/p/q/dir", "ignored", true));
    assert_eq!(e, ev(Action::Create, dir("/p/q/dir", 3, 3), None, 3));
    assert_eq!(h.node("/p/q"), dir("/p/q", 3, 3));
}

// ---- §5.3 update ----

#[test]
fn update_and_refresh_captured() {
    let mut h = Harness::new();
    h.pad_to(6);
    h.ok(set_ttl("/foo", "bar", 5_000));
    let e = h.ok(refresh_update("/foo", 30_000));
    let node = exp(file("/foo", "bar", 8, 7), 30_000);
    let prev = exp(file("/foo", "bar", 7, 7), 5_000);
    assert_eq!(
        e,
        refreshed(ev(Action::Update, node, Some(prev.clone()), 8))
    );
    // Quirk 4: update without ttl removes the TTL.
    let e = h.ok(update("/foo", "bar", None));
    let prev = exp(file("/foo", "bar", 8, 7), 30_000);
    assert_eq!(
        e,
        ev(Action::Update, file("/foo", "bar", 9, 7), Some(prev), 9)
    );
    assert_eq!(h.next_expiration(), None);
}

#[test]
fn update_rows() {
    let mut h = Harness::new();
    h.pad_to(43);
    h.ok(set("/cas", "six"));
    assert_eq!(
        h.err(update("/nokey", "x", None)),
        error(KEY_NOT_FOUND, "/nokey", 44)
    );
    assert_eq!(h.err(update("/", "", None)), error(ROOT_READ_ONLY, "/", 44));
    assert_eq!(
        h.err(update("/cas/x", "", None)),
        error(NOT_DIR, "/cas", 44)
    );
    let e = h.ok(update("/cas", "x", None));
    let want = ev(
        Action::Update,
        file("/cas", "x", 45, 44),
        Some(file("/cas", "six", 44, 44)),
        45,
    );
    assert_eq!(e, want);
    let e = h.ok(update("/cas", "y", Some(77)));
    assert_eq!(e.node, exp(file("/cas", "y", 46, 44), 77));
    assert_eq!(h.next_expiration(), Some(77));
    h.ok(update("/cas", "z", Some(88)));
    assert_eq!(h.next_expiration(), Some(88));
}

#[test]
fn update_dir_ttl_keeps_stored_modified_index_captured() {
    // Quirk 2, captured in §2.4 and §5.3: dir created at 25, TTL set at 26, removed at 27.
    let mut h = Harness::new();
    h.pad_to(24);
    h.ok(mkdir("/dir1", None));
    let e = h.ok(update("/dir1", "", Some(100_000)));
    let node = exp(dir("/dir1", 26, 25), 100_000);
    assert_eq!(e, ev(Action::Update, node, Some(dir("/dir1", 25, 25)), 26));
    assert_eq!(h.node("/dir1"), exp(dir("/dir1", 25, 25), 100_000));
    assert_eq!(h.next_expiration(), Some(100_000));
    let e = h.ok(update("/dir1", "", None));
    let prev = exp(dir("/dir1", 25, 25), 100_000);
    assert_eq!(e, ev(Action::Update, dir("/dir1", 27, 25), Some(prev), 27));
    assert_eq!(h.node("/dir1"), dir("/dir1", 25, 25));
    assert_eq!(h.next_expiration(), None);
    assert_eq!(
        h.err(update("/dir1", "x", None)),
        error(NOT_FILE, "/dir1", 27)
    );
}

#[test]
fn update_refresh_on_dir_keeps_it_a_dir() {
    let mut h = Harness::new();
    h.ok(mkdir("/d", Some(10)));
    let e = h.ok(refresh_update("/d", 20));
    assert_eq!(
        e,
        refreshed(ev(
            Action::Update,
            exp(dir("/d", 2, 1), 20),
            Some(exp(dir("/d", 1, 1), 10)),
            2
        ))
    );
}

#[test]
fn update_with_empty_value_blanks_a_file_captured() {
    // Quirk 5: dir=true&prevExist=true on a file arrives as Update with value "".
    let mut h = Harness::new();
    h.pad_to(73);
    h.ok(set("/f2", "hello"));
    let e = h.ok(update("/f2", "", None));
    let prev = file("/f2", "hello", 74, 74);
    assert_eq!(
        e,
        ev(Action::Update, file("/f2", "", 75, 74), Some(prev), 75)
    );
}

// ---- §5.3 compareAndSwap ----

#[test]
fn compare_and_swap_captured() {
    let mut h = Harness::new();
    h.pad_to(9);
    h.ok(create("/new", "one", false));
    let e = h.ok(cas("/new", "two", Some("one"), None));
    let want = ev(
        Action::CompareAndSwap,
        file("/new", "two", 11, 10),
        Some(file("/new", "one", 10, 10)),
        11,
    );
    assert_eq!(e, want);
    let fail = h.err(cas("/new", "three", Some("one"), None));
    assert_eq!(fail, error(TEST_FAILED, "[one != two]", 11));
    let fail = h.err(cas("/new", "three", None, Some(7)));
    assert_eq!(fail, error(TEST_FAILED, "[7 != 11]", 11));
}

#[test]
fn compare_and_swap_both_conditions_fail_captured() {
    let mut h = Harness::new();
    h.pad_to(41);
    h.ok(set("/cas", "three"));
    let fail = h.err(cas("/cas", "four", Some("nope"), Some(1)));
    assert_eq!(fail, error(TEST_FAILED, "[nope != three] [1 != 42]", 42));
    // One condition holding is not enough.
    let fail = h.err(cas("/cas", "four", Some("three"), Some(1)));
    assert_eq!(fail, error(TEST_FAILED, "[1 != 42]", 42));
    let e = h.ok(cas("/cas", "four", Some("three"), Some(42)));
    assert_eq!(e.node, file("/cas", "four", 43, 42));
}

#[test]
fn compare_and_swap_rows() {
    let mut h = Harness::new();
    h.ok(mkdir("/d", None));
    h.ok(set_ttl("/k", "v", 50));
    assert_eq!(
        h.err(cas("/", "x", Some("a"), None)),
        error(ROOT_READ_ONLY, "/", 2)
    );
    assert_eq!(
        h.err(cas("/no", "x", Some("a"), None)),
        error(KEY_NOT_FOUND, "/no", 2)
    );
    assert_eq!(
        h.err(cas("/d", "x", Some("a"), None)),
        error(NOT_FILE, "/d", 2)
    );
    assert_eq!(
        h.err(cas("/k/x", "x", Some("a"), None)),
        error(NOT_DIR, "/k", 2)
    );
    // An empty prevValue or prevIndex 0 is no condition.
    let e = h.ok(cas("/k", "w", Some(""), Some(0)));
    // Without ttl the TTL is removed; createdIndex is kept.
    assert_eq!(e.node, file("/k", "w", 3, 2));
    assert_eq!(e.prev_node, Some(exp(file("/k", "v", 2, 2), 50)));
    assert_eq!(h.next_expiration(), None);
    let e = h.ok(Command::CompareAndSwap {
        key: "/k".into(),
        value: "u".into(),
        prev_value: Some("w".into()),
        prev_index: None,
        expire_at: Some(70),
        refresh: false,
    });
    assert_eq!(e.node, exp(file("/k", "u", 4, 2), 70));
    assert_eq!(h.next_expiration(), Some(70));
}

#[test]
fn compare_and_swap_refresh_keeps_value() {
    let mut h = Harness::new();
    h.ok(set_ttl("/k", "v", 10));
    let e = h.ok(Command::CompareAndSwap {
        key: "/k".into(),
        value: String::new(),
        prev_value: Some("v".into()),
        prev_index: None,
        expire_at: Some(20),
        refresh: true,
    });
    let prev = exp(file("/k", "v", 1, 1), 10);
    let want = ev(
        Action::CompareAndSwap,
        exp(file("/k", "v", 2, 1), 20),
        Some(prev),
        2,
    );
    assert_eq!(e, refreshed(want));
}

// ---- §6 POST ----

#[test]
fn create_in_order_captured() {
    let mut h = Harness::new();
    h.pad_to(11);
    let e = h.ok(post("/queue", "Job1", false, None));
    let name = "/queue/00000000000000000012";
    assert_eq!(e, ev(Action::Create, file(name, "Job1", 12, 12), None, 12));
    h.ok(post("/queue", "Job2", false, None));
    let listing = vec![
        file("/queue/00000000000000000012", "Job1", 12, 12),
        file("/queue/00000000000000000013", "Job2", 13, 13),
    ];
    let want = with_nodes(dir("/queue", 12, 12), listing);
    assert_eq!(h.get("/queue", true).unwrap().node, want);
}

#[test]
fn create_in_order_dir_with_ttl_captured() {
    let mut h = Harness::new();
    h.ok(mkdir("/queue", None));
    h.pad_to(67);
    let e = h.ok(post("/queue", "", true, Some(60_000)));
    let node = exp(dir("/queue/00000000000000000068", 68, 68), 60_000);
    assert_eq!(e, ev(Action::Create, node, None, 68));
}

#[test]
fn create_in_order_under_file_captured() {
    let mut h = Harness::new();
    h.ok(set("/afile", "x"));
    h.pad_to(67);
    let e = h.err(post("/afile", "x", false, None));
    assert_eq!(e, error(NOT_DIR, "/afile", 67));
    let e = h.err(post("/afile/sub", "x", false, None));
    assert_eq!(e, error(NOT_DIR, "/afile", 67));
}

#[test]
fn create_in_order_creates_missing_parents() {
    let mut h = Harness::new();
    let e = h.ok(post("/a/b/q", "v", false, Some(9)));
    assert_eq!(
        e.node,
        exp(file("/a/b/q/00000000000000000001", "v", 1, 1), 9)
    );
    assert_eq!(h.node("/a/b/q"), dir("/a/b/q", 1, 1));
    assert_eq!(h.node("/a"), dir("/a", 1, 1));
}

#[test]
fn create_in_order_onto_an_existing_name_is_key_already_exists() {
    let mut h = Harness::new();
    h.ok(set("/q/00000000000000000002", "squatter"));
    let e = h.err(post("/q", "v", false, None));
    assert_eq!(e, error(NODE_EXIST, "/q/00000000000000000002", 1));
}

#[test]
fn create_in_order_at_root() {
    let mut h = Harness::new();
    h.pad_to(38);
    let e = h.ok(post("/", "v", false, None));
    assert_eq!(e.node, file("/00000000000000000039", "v", 39, 39));
}

// ---- §7 DELETE ----

#[test]
fn delete_file_captured() {
    let mut h = Harness::new();
    h.pad_to(3);
    h.ok(set("/message", "Hello world"));
    h.ok(set("/message", "Hello etcd"));
    let applied = h.run(del("/message", false, false)).unwrap();
    let prev = file("/message", "Hello etcd", 5, 5);
    let want = ev(Action::Delete, gone("/message", 6, 5), Some(prev), 6);
    assert_eq!(applied[0].event, want);
    assert_eq!(applied[0].removed, vec!["/message".to_string()]);
    assert_eq!(
        h.get("/message", false).unwrap_err(),
        error(KEY_NOT_FOUND, "/message", 6)
    );
}

#[test]
fn delete_dir_captured() {
    let mut h = captured_dir_tree();
    assert_eq!(
        h.err(del("/dir", false, false)),
        error(NOT_FILE, "/dir", 17)
    );
    assert_eq!(
        h.err(del("/dir", true, false)),
        error(DIR_NOT_EMPTY, "/dir", 17)
    );
    let applied = h.run(del("/dir", false, true)).unwrap();
    let prev = dir("/dir", 14, 14);
    let want = ev(Action::Delete, dir("/dir", 18, 14), Some(prev), 18);
    assert_eq!(applied[0].event, want);
    let removed = ["/dir", "/dir/_hidden", "/dir/a", "/dir/sub", "/dir/sub/b"];
    assert_eq!(applied[0].removed, removed.map(String::from).to_vec());
    assert_eq!(h.get("/", true).unwrap().node.nodes, None);
    assert_eq!(h.kv.len(Table::Nodes), 1, "only /_pad is left");
}

#[test]
fn delete_rows() {
    let mut h = Harness::new();
    h.ok(set("/f1", "a"));
    h.ok(set("/f2", "b"));
    h.ok(set("/f3", "c"));
    h.ok(mkdir("/empty", None));
    h.ok(set("/onlyhidden/_h", "x"));
    h.pad_to(38);
    assert_eq!(h.err(del("/", false, true)), error(ROOT_READ_ONLY, "/", 38));
    assert_eq!(h.err(del("/", true, false)), error(ROOT_READ_ONLY, "/", 38));
    assert_eq!(
        h.err(del("/nope", false, false)),
        error(KEY_NOT_FOUND, "/nope", 38)
    );
    assert_eq!(h.err(del("/f1/x", false, false)), error(NOT_DIR, "/f1", 38));
    // A file is deleted whatever dir/recursive say.
    assert_eq!(h.ok(del("/f1", false, false)).node, gone("/f1", 39, 1));
    assert_eq!(h.ok(del("/f2", true, false)).node, gone("/f2", 40, 2));
    assert_eq!(h.ok(del("/f3", false, true)).node, gone("/f3", 41, 3));
    assert_eq!(
        h.err(del("/empty", false, false)),
        error(NOT_FILE, "/empty", 41)
    );
    assert_eq!(h.ok(del("/empty", true, false)).node, dir("/empty", 42, 4));
    // Hidden children make a directory non-empty.
    let e = h.err(del("/onlyhidden", true, false));
    assert_eq!(e, error(DIR_NOT_EMPTY, "/onlyhidden", 42));
}

#[test]
fn delete_removes_ttl_entries_of_the_subtree() {
    let mut h = Harness::new();
    h.ok(mkdir("/d", Some(100)));
    h.ok(set_ttl("/d/a", "1", 50));
    h.ok(set_ttl("/d/s/_b", "2", 70));
    assert_eq!(h.next_expiration(), Some(50));
    h.ok(del("/d", false, true));
    assert_eq!(h.next_expiration(), None);
    assert_eq!(h.kv.len(Table::Nodes), 0);
}

#[test]
fn compare_and_delete_captured() {
    let mut h = Harness::new();
    h.pad_to(8);
    h.ok(set("/q3", "body"));
    h.pad_to(35);
    let applied = h.run(cad("/q3", Some("body"), None)).unwrap();
    let prev = file("/q3", "body", 9, 9);
    let want = ev(Action::CompareAndDelete, gone("/q3", 36, 9), Some(prev), 36);
    assert_eq!(applied[0].event, want);
    assert_eq!(applied[0].removed, vec!["/q3".to_string()]);
}

#[test]
fn compare_and_delete_index_mismatch_captured() {
    let mut h = Harness::new();
    h.pad_to(9);
    h.ok(create("/new", "one", false));
    h.ok(cas("/new", "two", Some("one"), None));
    assert_eq!(
        h.err(cad("/new", None, Some(8))),
        error(TEST_FAILED, "[8 != 11]", 11)
    );
    let e = h.err(cad("/new", Some("x"), Some(8)));
    assert_eq!(e, error(TEST_FAILED, "[x != two] [8 != 11]", 11));
    assert_eq!(
        h.err(cad("/new", Some("x"), None)),
        error(TEST_FAILED, "[x != two]", 11)
    );
}

#[test]
fn compare_and_delete_rows() {
    let mut h = Harness::new();
    h.ok(mkdir("/d", None));
    h.ok(set_ttl("/k", "v", 40));
    h.pad_to(1134);
    // Quirk 11: the root gives 102 with no cause.
    assert_eq!(h.err(cad("/", Some("x"), None)), error(NOT_FILE, "", 1134));
    assert_eq!(
        h.err(cad("/d", Some("x"), None)),
        error(NOT_FILE, "/d", 1134)
    );
    assert_eq!(
        h.err(cad("/no", Some("x"), None)),
        error(KEY_NOT_FOUND, "/no", 1134)
    );
    assert_eq!(
        h.err(cad("/k/a", Some("x"), None)),
        error(NOT_DIR, "/k", 1134)
    );
    let e = h.ok(cad("/k", None, Some(2)));
    assert_eq!(e.node, gone("/k", 1135, 2));
    assert_eq!(e.prev_node, Some(exp(file("/k", "v", 2, 2), 40)));
    assert_eq!(h.next_expiration(), None);
}

// ---- expiry ----

#[test]
fn sync_expires_in_expiration_order_then_key_order() {
    let mut h = Harness::new();
    h.ok(set_ttl("/c", "3", 30));
    h.ok(set_ttl("/b", "2", 20));
    h.ok(set_ttl("/a", "1", 20));
    h.ok(set_ttl("/later", "4", 99));
    assert_eq!(h.next_expiration(), Some(20));
    assert!(h.run(sync(19)).unwrap().is_empty());
    assert_eq!(h.index(), 4);
    let applied = h.run(sync(30)).unwrap();
    let events: Vec<Event> = applied.into_iter().map(|a| a.event).collect();
    let want = vec![
        ev(
            Action::Expire,
            gone("/a", 5, 3),
            Some(exp(file("/a", "1", 3, 3), 20)),
            5,
        ),
        ev(
            Action::Expire,
            gone("/b", 6, 2),
            Some(exp(file("/b", "2", 2, 2), 20)),
            6,
        ),
        ev(
            Action::Expire,
            gone("/c", 7, 1),
            Some(exp(file("/c", "3", 1, 1), 30)),
            7,
        ),
    ];
    assert_eq!(events, want);
    assert_eq!(h.index(), 7);
    assert_eq!(h.next_expiration(), Some(99));
    assert_eq!(h.store.stats().expire_count, 3);
}

#[test]
fn expiring_dir_removes_subtree_with_one_event() {
    let mut h = Harness::new();
    h.ok(mkdir("/d", Some(50)));
    h.ok(set_ttl("/d/early", "e", 40));
    h.ok(set_ttl("/d/late", "l", 60));
    h.ok(set("/d/sub/_h", "h"));
    let applied = h.run(sync(55)).unwrap();
    assert_eq!(applied.len(), 2);
    // The child that expires before its directory gets its own event first.
    assert_eq!(applied[0].event.node, gone("/d/early", 5, 2));
    assert_eq!(applied[0].removed, vec!["/d/early".to_string()]);
    let want = ev(
        Action::Expire,
        dir("/d", 6, 1),
        Some(exp(dir("/d", 1, 1), 50)),
        6,
    );
    assert_eq!(applied[1].event, want);
    let removed = ["/d", "/d/late", "/d/sub", "/d/sub/_h"];
    assert_eq!(applied[1].removed, removed.map(String::from).to_vec());
    // The child with a later TTL went with its directory and never expires on its own.
    assert_eq!(h.next_expiration(), None);
    assert!(h.run(sync(1_000)).unwrap().is_empty());
    assert_eq!(h.index(), 6);
    assert_eq!(h.kv.len(Table::Nodes), 0);
}

#[test]
fn dir_and_child_expiring_together_give_one_event() {
    // Ties go by key, and the directory sorts before its children.
    let mut h = Harness::new();
    h.ok(mkdir("/d", Some(50)));
    h.ok(set_ttl("/d/a", "1", 50));
    let applied = h.run(sync(50)).unwrap();
    assert_eq!(applied.len(), 1);
    assert_eq!(applied[0].event.node, dir("/d", 3, 1));
    assert_eq!(
        applied[0].removed,
        ["/d", "/d/a"].map(String::from).to_vec()
    );
    assert_eq!(h.next_expiration(), None);
}

#[test]
fn expiry_events_are_in_history() {
    let mut h = Harness::new();
    h.ok(set_ttl("/a", "1", 5));
    h.run(sync(5)).unwrap();
    let history = &h.history;
    assert_eq!(history.len(), 2);
    assert_eq!(history[1].action, Action::Expire);
    assert_eq!(history[1].etcd_index, 2);
}

#[test]
fn stale_ttl_entry_is_dropped_not_fatal() {
    let mut h = Harness::new();
    h.ok(set_ttl("/a", "1", 5));
    h.kv.put(Table::Ttl, &ttl::entry_key(3, "/ghost"), &[])
        .unwrap();
    let applied = h.store.apply(&mut h.kv, &sync(10)).unwrap().unwrap();
    assert_eq!(applied.len(), 1);
    assert_eq!(applied[0].event.node.key, "/a");
    check_invariants(&h.kv);
}

// ---- history ----

#[test]
fn history_keeps_every_event_including_refresh() {
    let mut h = Harness::new();
    h.ok(set_ttl("/a", "1", 10));
    h.ok(refresh_update("/a", 20));
    h.err(create("/a", "x", false));
    h.ok(del("/a", false, false));
    let history = &h.history;
    let summary: Vec<(u64, Action, bool)> = history
        .iter()
        .map(|e| (e.etcd_index, e.action, e.refresh))
        .collect();
    let want = vec![
        (1, Action::Set, false),
        (2, Action::Update, true),
        (3, Action::Delete, false),
    ];
    assert_eq!(summary, want);
}

#[test]
fn history_codec_leaves_out_what_the_command_holds() {
    let mut h = Harness::new();
    let value = "v".repeat(256);
    h.ok(set("/k", &"w".repeat(256)));
    let cmd = set("/k", &value);
    let applied = h.run(cmd.clone()).unwrap();
    let events: Vec<Event> = applied.iter().map(|a| a.event.clone()).collect();
    assert_eq!(events[0].prev_node.as_ref().unwrap().key, "/k");
    let bytes = V2Store::encode_history(&events, &cmd).unwrap();
    // The previous value is stored; the new value and the repeated key are not.
    assert!(
        bytes.len() > 256 && bytes.len() < 256 + 40,
        "{} bytes",
        bytes.len()
    );
    assert_eq!(V2Store::decode_history(&bytes, &cmd).unwrap(), events);
    // Rewriting the same value stores neither value.
    let again = h.run(cmd.clone()).unwrap();
    let events: Vec<Event> = again.iter().map(|a| a.event.clone()).collect();
    assert_eq!(
        events[0].prev_node.as_ref().unwrap().value.as_deref(),
        Some(value.as_str())
    );
    let bytes = V2Store::encode_history(&events, &cmd).unwrap();
    assert!(bytes.len() < 40, "{} bytes", bytes.len());
    assert_eq!(V2Store::decode_history(&bytes, &cmd).unwrap(), events);
    // An event whose value differs from the command's (none here) keeps it.
    let other = set("/k", "different");
    assert_eq!(
        V2Store::decode_history(&V2Store::encode_history(&events, &other).unwrap(), &other)
            .unwrap(),
        events
    );
    assert!(V2Store::decode_history(&[0xFF, 0xFF], &cmd).is_err());
}

#[test]
fn index_and_history_survive_restart() {
    let mut h = Harness::new();
    h.ok(set("/a", "1"));
    h.ok(set_ttl("/b", "2", 9));
    let kv = h.kv.clone();
    let mut restarted = Harness {
        kv,
        store: V2Store::new(),
        history: Vec::new(),
    };
    assert_eq!(restarted.index(), 2);
    assert_eq!(restarted.next_expiration(), Some(9));
    assert_eq!(restarted.ok(set("/c", "3")).etcd_index, 3);
    assert_eq!(restarted.node("/a"), file("/a", "1", 1, 1));
}

// ---- hidden keys and names ----

#[test]
fn hidden_nodes_are_left_out_of_listings_at_every_depth() {
    let mut h = Harness::new();
    h.ok(set("/h/_secret", "s"));
    h.ok(set("/h/_hd/x", "x"));
    h.ok(set("/h/v/_deep", "d"));
    h.ok(set("/h/v/w", "w"));
    let want = with_nodes(
        dir("/h", 1, 1),
        vec![with_nodes(
            dir("/h/v", 3, 3),
            vec![file("/h/v/w", "w", 4, 4)],
        )],
    );
    assert_eq!(h.get("/h", true).unwrap().node, want);
    // Hidden nodes are readable by their full key, and a hidden dir lists its children.
    assert_eq!(h.node("/h/_secret"), file("/h/_secret", "s", 1, 1));
    let want = with_nodes(dir("/h/_hd", 2, 2), vec![file("/h/_hd/x", "x", 2, 2)]);
    assert_eq!(h.get("/h/_hd", false).unwrap().node, want);
    // A directory whose only child is hidden has no `nodes`.
    h.ok(set("/only/_h", "x"));
    assert_eq!(h.get("/only", true).unwrap().node, dir("/only", 5, 5));
}

#[test]
fn names_with_any_utf8_sort_bytewise() {
    let mut h = Harness::new();
    for key in ["/n/b c", "/n/%41", "/n/a\0z", "/n/✓", "/n/a", "/n/A/child"] {
        h.ok(set(key, "v"));
    }
    let keys: Vec<String> = h
        .get("/n", false)
        .unwrap()
        .node
        .nodes
        .unwrap()
        .into_iter()
        .map(|n| n.key)
        .collect();
    let want = ["/n/%41", "/n/A", "/n/a", "/n/a\0z", "/n/b c", "/n/✓"];
    assert_eq!(keys, want.map(String::from).to_vec());
    assert_eq!(h.node("/n/a\0z"), file("/n/a\0z", "v", 3, 3));
}

#[test]
fn set_file_then_nul_sibling_does_not_look_like_a_child() {
    let mut h = Harness::new();
    h.ok(set("/a", "file"));
    h.ok(set("/a\0b", "sibling"));
    assert_eq!(h.ok(del("/a", false, false)).node.key, "/a");
    assert_eq!(h.node("/a\0b"), file("/a\0b", "sibling", 2, 2));
}

// ---- cost of a listing ----

/// A Kv that counts the entries its scans hand out.
struct CountingKv<'a> {
    inner: &'a MemKv,
    visited: Cell<usize>,
}

impl KvRead for CountingKv<'_> {
    fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        self.inner.get(table, key)
    }

    fn scan(
        &self,
        table: Table,
        start: &[u8],
        end: Option<&[u8]>,
        visit: &mut dyn FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<(), StorageError> {
        self.inner.scan(table, start, end, &mut |k, v| {
            self.visited.set(self.visited.get() + 1);
            visit(k, v)
        })
    }
}

#[test]
fn listing_a_directory_does_not_visit_grandchildren() {
    let mut h = Harness::new();
    for c in 0..5 {
        for g in 0..100 {
            h.ok(set(&format!("/d/c{c}/g{g}"), "x"));
        }
    }
    h.ok(set("/d/file", "x"));
    let counting = CountingKv {
        inner: &h.kv,
        visited: Cell::new(0),
    };
    let e = h.store.get(&counting, "/d", false, true).unwrap().unwrap();
    assert_eq!(e.node.nodes.map(|n| n.len()), Some(6));
    assert_eq!(counting.visited.get(), 6);
}

// ---- stats ----

#[test]
fn stats_count_user_operations() {
    let mut h = Harness::new();
    h.ok(set("/a", "1"));
    h.err(set("/a/b", "1"));
    h.ok(create("/b", "1", false));
    h.ok(post("/q", "1", false, None));
    h.err(create("/b", "1", false));
    h.ok(update("/a", "2", None));
    h.err(update("/zz", "2", None));
    h.ok(cas("/a", "3", Some("2"), None));
    h.err(cas("/a", "3", Some("2"), None));
    h.ok(cad("/a", Some("3"), None));
    h.err(cad("/a", Some("3"), None));
    h.ok(del("/b", false, false));
    h.err(del("/b", false, false));
    h.ok(set_ttl("/t", "1", 5));
    h.run(sync(5)).unwrap();
    h.get("/q", false).unwrap();
    h.get("/none", false).unwrap_err();
    let want = StoreStatsSnapshot {
        gets_success: 1,
        gets_fail: 1,
        sets_success: 2,
        sets_fail: 1,
        delete_success: 1,
        delete_fail: 1,
        update_success: 1,
        update_fail: 1,
        create_success: 2,
        create_fail: 1,
        compare_and_swap_success: 1,
        compare_and_swap_fail: 1,
        compare_and_delete_success: 1,
        compare_and_delete_fail: 1,
        expire_count: 1,
    };
    assert_eq!(h.store.stats(), want);
}

// ---- storage failures ----

/// A Kv whose writes fail.
struct ReadOnlyKv(MemKv);

impl KvRead for ReadOnlyKv {
    fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        self.0.get(table, key)
    }

    fn scan(
        &self,
        table: Table,
        start: &[u8],
        end: Option<&[u8]>,
        visit: &mut dyn FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<(), StorageError> {
        self.0.scan(table, start, end, visit)
    }
}

impl KvWrite for ReadOnlyKv {
    fn put(&mut self, _: Table, _: &[u8], _: &[u8]) -> Result<(), StorageError> {
        Err(StorageError::new(
            "put",
            "",
            crate::storage::StorageErrorKind::MapFull,
        ))
    }

    fn delete(&mut self, _: Table, _: &[u8]) -> Result<bool, StorageError> {
        Ok(false)
    }
}

#[test]
fn storage_failure_is_the_outer_error() {
    let store = V2Store::new();
    let mut kv = ReadOnlyKv(MemKv::new());
    let err = store.apply(&mut kv, &set("/a", "1")).unwrap_err();
    assert!(err.is_map_full());
    // An etcd error is decided before anything is written.
    let e = store
        .apply(&mut kv, &update("/a", "1", None))
        .unwrap()
        .unwrap_err();
    assert_eq!(e.code, KEY_NOT_FOUND);
}

#[test]
fn corrupt_records_are_storage_errors() {
    let store = V2Store::new();
    let mut kv = MemKv::new();
    kv.put(Table::Nodes, &path::node_key("/bad"), &[0xFF; 3])
        .unwrap();
    assert!(store.get(&kv, "/bad", false, false).is_err());
    assert!(store.get(&kv, "/", false, false).is_err());
    kv.put(Table::StoreMeta, b"etcd_index", &[1]).unwrap();
    assert!(V2Store::current_index(&kv).is_err());
}

// 32-bit boards (armv7, where `make armv7-test` runs this under qemu): indexes and times are
// u64 everywhere, so values past 2^32 and dates past 2038 must come through intact.
#[test]
fn indexes_past_2_pow_32_and_times_past_2038() {
    let mut h = Harness::new();
    let big = u64::from(u32::MAX) + 5;
    meta::set_index(&mut h.kv, big).unwrap();
    let e = h.ok(set("/a", "1"));
    assert_eq!((e.etcd_index, e.node.modified_index), (big + 1, big + 1));
    // 2040-01-01T00:00:00Z in Unix nanoseconds, beyond i32 seconds.
    let y2040 = 2_208_988_800u64 * 1_000_000_000;
    let e = h.ok(set_ttl("/t", "v", y2040 + 60_000_000_000));
    assert_eq!(e.node.expiration, Some(y2040 + 60_000_000_000));
    assert_eq!(h.next_expiration(), Some(y2040 + 60_000_000_000));
    assert!(
        h.run(sync(y2040)).unwrap().is_empty(),
        "expired a minute early"
    );
    let expired = h.run(sync(y2040 + 60_000_000_000)).unwrap();
    assert_eq!(expired.len(), 1);
    assert_eq!(expired[0].event.etcd_index, big + 3);
    assert_eq!(
        crate::util::time::rfc3339_nano_utc(y2040 + 1),
        "2040-01-01T00:00:00.000000001Z"
    );
}

#[test]
fn a_failed_batch_counts_nothing() {
    let mut h = Harness::new();
    h.ok(set("/a", "1"));
    let before = h.store.stats();
    // Applied, then the transaction failed (a full map): the store counts nothing of it.
    h.store
        .apply(&mut h.kv.clone(), &set("/b", "2"))
        .unwrap()
        .unwrap();
    h.store
        .apply(&mut h.kv.clone(), &create("/a", "x", false))
        .unwrap()
        .unwrap_err();
    h.store.batch_failed();
    assert_eq!(h.store.stats(), before);
    h.ok(set("/c", "3"));
    assert_eq!(h.store.stats().sets_success, before.sets_success + 1);
}
