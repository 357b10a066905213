//! Keys API response bodies: events and errors in etcd's exact JSON (spec §2.2, §2.3, §8.1).
//!
//! Bodies are written by hand rather than through serde because the member set depends on
//! context (removal events drop `value`, `ttl` depends on the clock at render time) and the
//! member order and omission rules must match Go's struct tags exactly:
//! every node member is `omitempty`, so a zero index, an empty key and a zero ttl vanish.

use super::json::write_json_string;
use crate::store::{Action, Event, NodeView, V2Error};
use crate::util::clock::Clocks;
use crate::util::time::rfc3339_nano_utc;

const NANOS_PER_SEC: i128 = 1_000_000_000;

/// etcd's remaining-TTL value for a node expiring at `expiration`, seen at `now`
/// (both Unix nanoseconds): `ceil((expiration - now) / 1s)`.
///
/// Go divides the (signed) duration truncating towards zero and adds one only for a positive
/// remainder, so a key 0.5 s past its expiration shows 0 (omitted) and one 1.5 s late shows
/// -1. Go's `Time.Sub` saturates at the `int64` range; that is replicated so extreme
/// expirations give Go's numbers.
pub fn ttl_seconds(expiration: u64, now: u64) -> i64 {
    let diff = (expiration as i128 - now as i128).clamp(i64::MIN as i128, i64::MAX as i128);
    let mut ttl = diff / NANOS_PER_SEC;
    if diff % NANOS_PER_SEC > 0 {
        ttl += 1;
    }
    ttl as i64
}

/// Writes one member separator-aware: `,"name":` (comma unless it is the first member).
fn member(out: &mut Vec<u8>, first: &mut bool, name: &str) {
    if !*first {
        out.push(b',');
    }
    *first = false;
    out.push(b'"');
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b"\":");
}

/// Appends a node object. `removed` marks the `node` of a delete/compareAndDelete/expire
/// event, which etcd renders without `value`.
fn write_node(out: &mut Vec<u8>, node: &NodeView, now: Clocks, removed: bool) {
    out.push(b'{');
    let mut first = true;
    // The root's key is "/1" inside etcd and trimmed to "" on output, hence omitted.
    if node.key != "/" && !node.key.is_empty() {
        member(out, &mut first, "key");
        write_json_string(out, &node.key);
    }
    // A file always has a value in etcd (a *string that is never nil for files), so an
    // absent value on a file renders as "".
    if !node.dir && !removed {
        member(out, &mut first, "value");
        write_json_string(out, node.value.as_deref().unwrap_or(""));
    }
    if node.dir {
        member(out, &mut first, "dir");
        out.extend_from_slice(b"true");
    }
    if let Some(exp) = node.expiration {
        member(out, &mut first, "expiration");
        // Expirations are cluster times; the date shown is the wall clock's.
        write_json_string(out, &rfc3339_nano_utc(now.to_wall(exp)));
        let ttl = ttl_seconds(exp, now.cluster);
        if ttl != 0 {
            member(out, &mut first, "ttl");
            out.extend_from_slice(ttl.to_string().as_bytes());
        }
    }
    if let Some(children) = node.nodes.as_ref().filter(|c| !c.is_empty()) {
        member(out, &mut first, "nodes");
        out.push(b'[');
        for (i, child) in children.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            write_node(out, child, now, false);
        }
        out.push(b']');
    }
    if node.modified_index != 0 {
        member(out, &mut first, "modifiedIndex");
        out.extend_from_slice(node.modified_index.to_string().as_bytes());
    }
    if node.created_index != 0 {
        member(out, &mut first, "createdIndex");
        out.extend_from_slice(node.created_index.to_string().as_bytes());
    }
    out.push(b'}');
}

/// Whether `noValueOnSuccess` strips `node`/`prevNode` for this action (spec §5.6: the four
/// value-writing actions only).
fn strips_value(action: Action) -> bool {
    matches!(
        action,
        Action::Set | Action::Create | Action::Update | Action::CompareAndSwap
    )
}

/// The JSON body (with Go's trailing `\n`) of a successful keys response or of one watch
/// notification.
///
/// `now_unix_nanos` is the responding member's clock, used for every `ttl`. With
/// `no_value_on_success` a set/create/update/compareAndSwap body is just the action,
/// e.g. `{"action":"set"}\n`. The internal `refresh` flag never appears (etcd's captures show
/// refresh responses as ordinary events).
pub fn event_body(event: &Event, now_unix_nanos: u64, no_value_on_success: bool) -> Vec<u8> {
    event_body_at(event, Clocks::same(now_unix_nanos), no_value_on_success)
}

/// [`event_body`] on a member whose cluster time differs from its wall clock: `ttl`s count
/// in cluster time, `expiration` dates are wall-clock.
pub fn event_body_at(event: &Event, now: Clocks, no_value_on_success: bool) -> Vec<u8> {
    let now_unix_nanos = now;
    // Sized for the common event (a file and its previous version, little to escape), so
    // that the body is written without regrowing.
    let node_len =
        |n: &NodeView| 160 + n.key.len() + n.value.as_ref().map_or(0, |v| v.len() + v.len() / 8);
    let prev_len = event.prev_node.as_ref().map_or(0, node_len);
    let mut out = Vec::with_capacity(64 + node_len(&event.node) + prev_len);
    out.extend_from_slice(b"{\"action\":");
    write_json_string(&mut out, event.action.as_str());
    if !(no_value_on_success && strips_value(event.action)) {
        out.extend_from_slice(b",\"node\":");
        write_node(
            &mut out,
            &event.node,
            now_unix_nanos,
            event.action.is_removal(),
        );
        if let Some(prev) = &event.prev_node {
            out.extend_from_slice(b",\"prevNode\":");
            write_node(&mut out, prev, now_unix_nanos, false);
        }
    }
    out.extend_from_slice(b"}\n");
    out
}

/// The JSON body (with trailing `\n`) of a keys error:
/// `{"errorCode":..,"message":..,"cause":..,"index":..}`, `cause` omitted when empty.
pub fn error_body(err: &V2Error) -> Vec<u8> {
    let mut out = Vec::with_capacity(96);
    out.extend_from_slice(b"{\"errorCode\":");
    out.extend_from_slice(err.code.to_string().as_bytes());
    out.extend_from_slice(b",\"message\":");
    write_json_string(&mut out, err.message());
    if !err.cause.is_empty() {
        out.extend_from_slice(b",\"cause\":");
        write_json_string(&mut out, &err.cause);
    }
    out.extend_from_slice(b",\"index\":");
    out.extend_from_slice(err.index.to_string().as_bytes());
    out.extend_from_slice(b"}\n");
    out
}

/// The HTTP status of a successful keys response: 201 for `create`, and for a `set` that
/// found no previous node (etcd's `Event.IsCreated`); 200 otherwise.
pub fn success_status(event: &Event) -> u16 {
    match event.action {
        Action::Create => 201,
        Action::Set if event.prev_node.is_none() => 201,
        _ => 200,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::error::*;

    /// 2026-11-22T18:06:42.528418343Z
    const EXP_FOO: u64 = 1_795_370_802_528_418_343;

    fn file(key: &str, value: &str, m: u64, c: u64) -> NodeView {
        NodeView {
            key: key.into(),
            value: Some(value.into()),
            dir: false,
            expiration: None,
            nodes: None,
            modified_index: m,
            created_index: c,
        }
    }

    fn dir(key: &str, nodes: Option<Vec<NodeView>>, m: u64, c: u64) -> NodeView {
        NodeView {
            key: key.into(),
            value: None,
            dir: true,
            expiration: None,
            nodes,
            modified_index: m,
            created_index: c,
        }
    }

    fn ev(action: Action, node: NodeView, prev: Option<NodeView>) -> Event {
        Event {
            action,
            node,
            prev_node: prev,
            etcd_index: 0,
            refresh: false,
        }
    }

    fn body(e: &Event, now: u64) -> String {
        String::from_utf8(event_body(e, now, false)).unwrap()
    }

    #[test]
    fn spec_event_examples() {
        let root = ev(Action::Get, dir("/", Some(vec![]), 0, 0), None);
        assert_eq!(
            body(&root, 0),
            "{\"action\":\"get\",\"node\":{\"dir\":true}}\n"
        );

        let get = ev(Action::Get, file("/message", "Hello world", 4, 4), None);
        assert_eq!(
            body(&get, 0),
            "{\"action\":\"get\",\"node\":{\"key\":\"/message\",\"value\":\"Hello world\",\"modifiedIndex\":4,\"createdIndex\":4}}\n"
        );

        let listing = ev(
            Action::Get,
            dir(
                "/dir",
                Some(vec![
                    file("/dir/a", "1", 15, 15),
                    dir("/dir/sub", None, 16, 16),
                ]),
                14,
                14,
            ),
            None,
        );
        assert_eq!(
            body(&listing, 0),
            "{\"action\":\"get\",\"node\":{\"key\":\"/dir\",\"dir\":true,\"nodes\":[{\"key\":\"/dir/a\",\"value\":\"1\",\"modifiedIndex\":15,\"createdIndex\":15},{\"key\":\"/dir/sub\",\"dir\":true,\"modifiedIndex\":16,\"createdIndex\":16}],\"modifiedIndex\":14,\"createdIndex\":14}}\n"
        );

        let recursive = ev(
            Action::Get,
            dir(
                "/dir",
                Some(vec![
                    file("/dir/a", "1", 15, 15),
                    dir(
                        "/dir/sub",
                        Some(vec![file("/dir/sub/b", "2", 16, 16)]),
                        16,
                        16,
                    ),
                ]),
                14,
                14,
            ),
            None,
        );
        assert_eq!(
            body(&recursive, 0),
            "{\"action\":\"get\",\"node\":{\"key\":\"/dir\",\"dir\":true,\"nodes\":[{\"key\":\"/dir/a\",\"value\":\"1\",\"modifiedIndex\":15,\"createdIndex\":15},{\"key\":\"/dir/sub\",\"dir\":true,\"nodes\":[{\"key\":\"/dir/sub/b\",\"value\":\"2\",\"modifiedIndex\":16,\"createdIndex\":16}],\"modifiedIndex\":16,\"createdIndex\":16}],\"modifiedIndex\":14,\"createdIndex\":14}}\n"
        );

        // A key with a TTL, rendered 4.2 s before it expires → ttl 5 (ceil).
        let mut foo = file("/foo", "bar", 7, 7);
        foo.expiration = Some(EXP_FOO);
        let get_ttl = ev(Action::Get, foo, None);
        assert_eq!(
            body(&get_ttl, EXP_FOO - 4_200_000_000),
            "{\"action\":\"get\",\"node\":{\"key\":\"/foo\",\"value\":\"bar\",\"expiration\":\"2026-11-22T18:06:42.528418343Z\",\"ttl\":5,\"modifiedIndex\":7,\"createdIndex\":7}}\n"
        );

        let set2 = ev(
            Action::Set,
            file("/message", "Hello etcd", 5, 5),
            Some(file("/message", "Hello world", 4, 4)),
        );
        assert_eq!(
            body(&set2, 0),
            "{\"action\":\"set\",\"node\":{\"key\":\"/message\",\"value\":\"Hello etcd\",\"modifiedIndex\":5,\"createdIndex\":5},\"prevNode\":{\"key\":\"/message\",\"value\":\"Hello world\",\"modifiedIndex\":4,\"createdIndex\":4}}\n"
        );

        // delete: the node has no value even though it was a file.
        let mut removed = file("/message", "ignored", 6, 5);
        removed.value = None;
        let del = ev(
            Action::Delete,
            removed,
            Some(file("/message", "Hello etcd", 5, 5)),
        );
        assert_eq!(
            body(&del, 0),
            "{\"action\":\"delete\",\"node\":{\"key\":\"/message\",\"modifiedIndex\":6,\"createdIndex\":5},\"prevNode\":{\"key\":\"/message\",\"value\":\"Hello etcd\",\"modifiedIndex\":5,\"createdIndex\":5}}\n"
        );
        // Even if the store left the value in, a removal's node does not show it.
        let cad = ev(
            Action::CompareAndDelete,
            file("/q3", "body", 36, 9),
            Some(file("/q3", "body", 9, 9)),
        );
        assert_eq!(
            body(&cad, 0),
            "{\"action\":\"compareAndDelete\",\"node\":{\"key\":\"/q3\",\"modifiedIndex\":36,\"createdIndex\":9},\"prevNode\":{\"key\":\"/q3\",\"value\":\"body\",\"modifiedIndex\":9,\"createdIndex\":9}}\n"
        );

        let deldir = ev(
            Action::Delete,
            dir("/dir", None, 18, 14),
            Some(dir("/dir", None, 14, 14)),
        );
        assert_eq!(
            body(&deldir, 0),
            "{\"action\":\"delete\",\"node\":{\"key\":\"/dir\",\"dir\":true,\"modifiedIndex\":18,\"createdIndex\":14},\"prevNode\":{\"key\":\"/dir\",\"dir\":true,\"modifiedIndex\":14,\"createdIndex\":14}}\n"
        );

        // Quirk 5: dir=true&prevExist=true on a file blanks the value, which is still shown.
        let upd = ev(
            Action::Update,
            file("/f2", "", 75, 74),
            Some(file("/f2", "hello", 74, 74)),
        );
        assert_eq!(
            body(&upd, 0),
            "{\"action\":\"update\",\"node\":{\"key\":\"/f2\",\"value\":\"\",\"modifiedIndex\":75,\"createdIndex\":74},\"prevNode\":{\"key\":\"/f2\",\"value\":\"hello\",\"modifiedIndex\":74,\"createdIndex\":74}}\n"
        );

        // Directory TTL update (§2.4), prevNode with a ttl of 100 at render time.
        let exp = 1_795_370_362_148_944_888; // 2026-11-22T17:59:22.148944888Z
        let mut prev = dir("/dir1", None, 25, 25);
        prev.expiration = Some(exp);
        let dir_upd = ev(Action::Update, dir("/dir1", None, 27, 25), Some(prev));
        assert_eq!(
            body(&dir_upd, exp - 99_500_000_000),
            "{\"action\":\"update\",\"node\":{\"key\":\"/dir1\",\"dir\":true,\"modifiedIndex\":27,\"createdIndex\":25},\"prevNode\":{\"key\":\"/dir1\",\"dir\":true,\"expiration\":\"2026-11-22T17:59:22.148944888Z\",\"ttl\":100,\"modifiedIndex\":25,\"createdIndex\":25}}\n"
        );

        // §1.3 encoding example.
        let v = String::from_utf8_lossy(b"\xff\x00\x01\x09\x0a\x0d\xe2\x80\xa8\x22\x5c\x7f");
        let enc = ev(Action::Set, file("/enc", &v, 76, 76), None);
        assert_eq!(
            body(&enc, 0),
            "{\"action\":\"set\",\"node\":{\"key\":\"/enc\",\"value\":\"\\ufffd\\u0000\\u0001\\t\\n\\r\\u2028\\\"\\\\\u{7f}\",\"modifiedIndex\":76,\"createdIndex\":76}}\n"
        );
    }

    #[test]
    fn no_value_on_success() {
        let set = ev(Action::Set, file("/cas", "nv", 50, 50), None);
        assert_eq!(event_body(&set, 0, true), b"{\"action\":\"set\"}\n");
        for a in [Action::Create, Action::Update, Action::CompareAndSwap] {
            let e = ev(a, file("/k", "v", 1, 1), Some(file("/k", "o", 1, 1)));
            assert_eq!(
                event_body(&e, 0, true),
                format!("{{\"action\":\"{}\"}}\n", a.as_str()).into_bytes()
            );
        }
        // Not for deletes or reads.
        let mut n = file("/k", "v", 2, 1);
        n.value = None;
        let del = ev(Action::Delete, n, None);
        assert_eq!(
            event_body(&del, 0, true),
            b"{\"action\":\"delete\",\"node\":{\"key\":\"/k\",\"modifiedIndex\":2,\"createdIndex\":1}}\n"
        );
        let get = ev(Action::Get, file("/k", "v", 1, 1), None);
        assert_eq!(
            event_body(&get, 0, true),
            b"{\"action\":\"get\",\"node\":{\"key\":\"/k\",\"value\":\"v\",\"modifiedIndex\":1,\"createdIndex\":1}}\n"
        );
    }

    #[test]
    fn ttl_edges() {
        const S: u64 = 1_000_000_000;
        let now = 1_000 * S;
        let cases: &[(u64, i64)] = &[
            (now + 5 * S, 5),
            (now + 5 * S - 1, 5),
            (now + 4 * S + 1, 5),
            (now + 1, 1),
            (now, 0),
            (now - 1, 0),
            (now - S + 1, 0),
            (now - S, -1),
            (now - 3 * S / 2, -1),
            (now - 2 * S, -2),
        ];
        for (exp, want) in cases {
            assert_eq!(ttl_seconds(*exp, now), *want, "exp {exp}");
        }
        // Saturation like Go's Time.Sub.
        assert_eq!(ttl_seconds(u64::MAX, 0), i64::MAX / 1_000_000_000 + 1);
        assert_eq!(ttl_seconds(0, u64::MAX), i64::MIN / 1_000_000_000);

        // ttl 0 is omitted but expiration stays (ttl=0 capture in §2.5).
        let exp = 1_795_370_246_131_370_901; // 2026-11-22T17:57:26.131370901Z
        let mut n = file("/t1", "zero", 23, 23);
        n.expiration = Some(exp);
        let e = ev(Action::Set, n, None);
        assert_eq!(
            body(&e, exp),
            "{\"action\":\"set\",\"node\":{\"key\":\"/t1\",\"value\":\"zero\",\"expiration\":\"2026-11-22T17:57:26.131370901Z\",\"modifiedIndex\":23,\"createdIndex\":23}}\n"
        );
        assert!(body(&e, exp + 1_500_000_000).contains("\"ttl\":-1,"));
    }

    #[test]
    fn error_bodies() {
        let cases: &[(V2Error, &str)] = &[
            (
                V2Error::new(KEY_NOT_FOUND, "/message", 6),
                r#"{"errorCode":100,"message":"Key not found","cause":"/message","index":6}"#,
            ),
            (
                V2Error::new(NOT_DIR, "/dir1/a", 30),
                r#"{"errorCode":104,"message":"Not a directory","cause":"/dir1/a","index":30}"#,
            ),
            (
                V2Error::new(NOT_FILE, "", 1134),
                r#"{"errorCode":102,"message":"Not a file","index":1134}"#,
            ),
            (
                V2Error::new(NODE_EXIST, "/foo", 9),
                r#"{"errorCode":105,"message":"Key already exists","cause":"/foo","index":9}"#,
            ),
            (
                V2Error::new(TEST_FAILED, "[nope != three] [1 != 42]", 42),
                r#"{"errorCode":101,"message":"Compare failed","cause":"[nope != three] [1 != 42]","index":42}"#,
            ),
            (
                V2Error::new(ROOT_READ_ONLY, "/", 38),
                r#"{"errorCode":107,"message":"Root is read only","cause":"/","index":38}"#,
            ),
            (
                V2Error::new(DIR_NOT_EMPTY, "/dir", 17),
                r#"{"errorCode":108,"message":"Directory not empty","cause":"/dir","index":17}"#,
            ),
            (
                V2Error::new(TTL_NAN, "invalid value for \"ttl\"", 0),
                r#"{"errorCode":202,"message":"The given TTL in POST form is not a number","cause":"invalid value for \"ttl\"","index":0}"#,
            ),
            (
                V2Error::new(INDEX_NAN, "invalid value for \"waitIndex\"", 0),
                r#"{"errorCode":203,"message":"The given index in POST form is not a number","cause":"invalid value for \"waitIndex\"","index":0}"#,
            ),
            (
                V2Error::new(
                    INVALID_FIELD,
                    "\"wait\" can only be used with GET requests",
                    0,
                ),
                r#"{"errorCode":209,"message":"Invalid field","cause":"\"wait\" can only be used with GET requests","index":0}"#,
            ),
            (
                V2Error::new(INVALID_FIELD, "invalid value for prevExist", 0),
                r#"{"errorCode":209,"message":"Invalid field","cause":"invalid value for prevExist","index":0}"#,
            ),
            (
                V2Error::new(PREV_VALUE_REQUIRED, "\"prevValue\" cannot be empty", 0),
                r#"{"errorCode":201,"message":"PrevValue is Required in POST form","cause":"\"prevValue\" cannot be empty","index":0}"#,
            ),
            (
                V2Error::new(INVALID_FORM, "invalid URL escape \"%zz\"", 0),
                r#"{"errorCode":210,"message":"Invalid POST form","cause":"invalid URL escape \"%zz\"","index":0}"#,
            ),
            (
                V2Error::new(INVALID_FORM, "http: POST too large", 0),
                r#"{"errorCode":210,"message":"Invalid POST form","cause":"http: POST too large","index":0}"#,
            ),
            (
                V2Error::new(REFRESH_VALUE, "A value was provided on a refresh", 0),
                r#"{"errorCode":211,"message":"Value provided on refresh","cause":"A value was provided on a refresh","index":0}"#,
            ),
            (
                V2Error::new(REFRESH_TTL_REQUIRED, "No TTL value set", 0),
                r#"{"errorCode":212,"message":"A TTL must be provided on refresh","cause":"No TTL value set","index":0}"#,
            ),
            (
                V2Error::new(RAFT_INTERNAL, "etcdserver: request timed out", 0),
                r#"{"errorCode":300,"message":"Raft Internal Error","cause":"etcdserver: request timed out","index":0}"#,
            ),
            (
                V2Error::new(
                    EVENT_INDEX_CLEARED,
                    "the requested history has been cleared [129/8]",
                    1128,
                ),
                r#"{"errorCode":401,"message":"The event in requested index is outdated and cleared","cause":"the requested history has been cleared [129/8]","index":1128}"#,
            ),
        ];
        for (err, want) in cases {
            let got = String::from_utf8(error_body(err)).unwrap();
            assert_eq!(got, format!("{want}\n"), "{err}");
        }
        // Content-Length values from the captures (body incl. newline).
        assert_eq!(error_body(&cases[0].0).len(), 73);
        assert_eq!(error_body(&cases[7].0).len(), 119);
        assert_eq!(error_body(&cases[16].0).len(), 100);
        assert_eq!(error_body(&cases[17].0).len(), 153);
    }

    #[test]
    fn statuses() {
        let created = ev(Action::Set, file("/a", "", 1, 1), None);
        assert_eq!(success_status(&created), 201);
        let replaced = ev(
            Action::Set,
            file("/a", "", 2, 2),
            Some(file("/a", "", 1, 1)),
        );
        assert_eq!(success_status(&replaced), 200);
        assert_eq!(
            success_status(&ev(Action::Create, file("/a", "", 1, 1), None)),
            201
        );
        for a in [
            Action::Get,
            Action::Update,
            Action::CompareAndSwap,
            Action::Delete,
            Action::CompareAndDelete,
            Action::Expire,
        ] {
            assert_eq!(success_status(&ev(a, file("/a", "", 1, 1), None)), 200);
        }
    }
}
