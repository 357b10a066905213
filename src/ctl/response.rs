//! The v2 keys API's answers as etcd's Go client decodes them (`client.Response`,
//! `client.Node`, `client.Error`), and their re-encoding for `--output json`, byte for byte
//! what Go's `json.Marshal` writes for those structs.
//!
//! Decoding is lenient where Go's is (missing fields are zero; so are fields of another
//! type, where Go would fail); it never panics on a body from the network. Every body is
//! parsed into one `serde_json::Value` first and read from there: one deserializer in the
//! binary instead of one per struct (about 20 KB less on x86_64).

use serde_json::Value;
use std::fmt;

use crate::api::json::write_json_string;

/// A node as the Go client holds it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Node {
    /// Key (`""` for the root).
    pub key: String,
    /// Whether this is a directory.
    pub dir: bool,
    /// Value (`""` for directories).
    pub value: String,
    /// Children, `None` when the body had none (Go: a nil slice, `null`).
    pub nodes: Option<Vec<Node>>,
    /// Index of the write that created the node.
    pub created_index: u64,
    /// Index of the last write to the node.
    pub modified_index: u64,
    /// Expiry time as the server wrote it (RFC 3339), if the node has a TTL.
    pub expiration: Option<String>,
    /// Seconds left to live, 0 without a TTL.
    pub ttl: i64,
}

/// A successful keys response.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KeysResponse {
    /// `get`, `set`, `create`, `update`, `delete`, `compareAndSwap`, ...
    pub action: String,
    /// The node acted on.
    pub node: Option<Node>,
    /// The node before the write, if there was one.
    pub prev_node: Option<Node>,
    /// `X-Etcd-Index` (not in the body).
    pub index: u64,
}

/// An error body: `{"errorCode":100,"message":"Key not found","cause":"/a","index":4}`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct V2Error {
    /// etcd's error code.
    pub error_code: i64,
    /// Its message.
    pub message: String,
    /// What it was about (often the key).
    pub cause: String,
    /// The etcd index when it happened.
    pub index: u64,
}

impl fmt::Display for V2Error {
    /// Go client's `Error.Error()`: `100: Key not found (/a) [4]`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {} ({}) [{}]",
            self.error_code, self.message, self.cause, self.index
        )
    }
}

/// A member of `/v2/members`, the parts etcdctl's sync reads.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Member {
    /// Member id (hex).
    pub id: String,
    /// Name, empty until the member published it.
    pub name: String,
    /// Peer URLs.
    pub peer_urls: Vec<String>,
    /// Client URLs, empty until the member published them.
    pub client_urls: Vec<String>,
}

/// The `/v2/members` body.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Members {
    /// Every member.
    pub members: Vec<Member>,
}

/// A type read from a decoded JSON object.
pub trait FromJson: Sized {
    /// `None` when `v` is not an object.
    fn from_json(v: &Value) -> Option<Self>;
}

/// Why a body could not be decoded.
#[derive(Debug)]
pub struct DecodeError(String);

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Decodes a response body into `T`.
pub fn decode_json<T: FromJson>(body: &[u8]) -> Result<T, DecodeError> {
    let v: Value = serde_json::from_slice(body).map_err(|e| DecodeError(e.to_string()))?;
    T::from_json(&v).ok_or_else(|| DecodeError("not a JSON object".to_string()))
}

fn string(v: &Value, k: &str) -> String {
    v.get(k)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

fn uint(v: &Value, k: &str) -> u64 {
    v.get(k).and_then(Value::as_u64).unwrap_or_default()
}

fn int(v: &Value, k: &str) -> i64 {
    v.get(k).and_then(Value::as_i64).unwrap_or_default()
}

fn strings(v: &Value, k: &str) -> Vec<String> {
    v.get(k)
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

impl FromJson for Node {
    fn from_json(v: &Value) -> Option<Node> {
        v.as_object()?;
        Some(Node {
            key: string(v, "key"),
            dir: v.get("dir").and_then(Value::as_bool).unwrap_or(false),
            value: string(v, "value"),
            nodes: v
                .get("nodes")
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(Node::from_json).collect()),
            created_index: uint(v, "createdIndex"),
            modified_index: uint(v, "modifiedIndex"),
            expiration: v
                .get("expiration")
                .and_then(Value::as_str)
                .map(str::to_string),
            ttl: int(v, "ttl"),
        })
    }
}

impl FromJson for KeysResponse {
    fn from_json(v: &Value) -> Option<KeysResponse> {
        v.as_object()?;
        Some(KeysResponse {
            action: string(v, "action"),
            node: v.get("node").and_then(Node::from_json),
            prev_node: v.get("prevNode").and_then(Node::from_json),
            index: 0,
        })
    }
}

impl FromJson for V2Error {
    fn from_json(v: &Value) -> Option<V2Error> {
        v.as_object()?;
        Some(V2Error {
            error_code: int(v, "errorCode"),
            message: string(v, "message"),
            cause: string(v, "cause"),
            index: uint(v, "index"),
        })
    }
}

impl FromJson for Member {
    fn from_json(v: &Value) -> Option<Member> {
        v.as_object()?;
        Some(Member {
            id: string(v, "id"),
            name: string(v, "name"),
            peer_urls: strings(v, "peerURLs"),
            client_urls: strings(v, "clientURLs"),
        })
    }
}

impl FromJson for Members {
    fn from_json(v: &Value) -> Option<Members> {
        v.as_object()?;
        let members = v
            .get("members")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Member::from_json).collect())
            .unwrap_or_default();
        Some(Members { members })
    }
}

impl Node {
    /// Appends Go's `json.Marshal` of `client.Node`: fields in struct order, `dir`,
    /// `expiration` and `ttl` omitted when empty, `nodes` as `null` when absent.
    pub fn write_go_json(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"{\"key\":");
        write_json_string(out, &self.key);
        if self.dir {
            out.extend_from_slice(b",\"dir\":true");
        }
        out.extend_from_slice(b",\"value\":");
        write_json_string(out, &self.value);
        out.extend_from_slice(b",\"nodes\":");
        match &self.nodes {
            None => out.extend_from_slice(b"null"),
            Some(nodes) => {
                out.push(b'[');
                for (i, n) in nodes.iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    n.write_go_json(out);
                }
                out.push(b']');
            }
        }
        out.extend_from_slice(
            format!(
                ",\"createdIndex\":{},\"modifiedIndex\":{}",
                self.created_index, self.modified_index
            )
            .as_bytes(),
        );
        if let Some(e) = &self.expiration {
            out.extend_from_slice(b",\"expiration\":");
            write_json_string(out, e);
        }
        if self.ttl != 0 {
            out.extend_from_slice(format!(",\"ttl\":{}", self.ttl).as_bytes());
        }
        out.push(b'}');
    }
}

impl KeysResponse {
    /// Go's `json.Marshal` of `client.Response` (`Index` is not serialised).
    pub fn to_go_json(&self) -> String {
        let mut out = Vec::new();
        out.extend_from_slice(b"{\"action\":");
        write_json_string(&mut out, &self.action);
        for (name, node) in [("node", &self.node), ("prevNode", &self.prev_node)] {
            out.extend_from_slice(format!(",\"{name}\":").as_bytes());
            match node {
                Some(n) => n.write_go_json(&mut out),
                None => out.extend_from_slice(b"null"),
            }
        }
        out.push(b'}');
        String::from_utf8_lossy(&out).into_owned()
    }

    /// The node, or an empty one when the body had none (Go would dereference nil).
    pub fn node(&self) -> Node {
        self.node.clone().unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_json_matches_etcdctl_output() {
        let body = br#"{"action":"set","node":{"key":"/a","value":"3","modifiedIndex":6,"createdIndex":6},"prevNode":{"key":"/a","value":"2","modifiedIndex":5,"createdIndex":5}}"#;
        let r: KeysResponse = decode_json(body).expect("decode");
        assert_eq!(
            r.to_go_json(),
            r#"{"action":"set","node":{"key":"/a","value":"3","nodes":null,"createdIndex":6,"modifiedIndex":6},"prevNode":{"key":"/a","value":"2","nodes":null,"createdIndex":5,"modifiedIndex":5}}"#
        );
        let body = br#"{"action":"get","node":{"dir":true,"nodes":[{"key":"/d","dir":true,"expiration":"2026-01-01T00:00:00Z","ttl":5,"modifiedIndex":7,"createdIndex":7}]}}"#;
        let r: KeysResponse = decode_json(body).expect("decode");
        assert_eq!(
            r.to_go_json(),
            r#"{"action":"get","node":{"key":"","dir":true,"value":"","nodes":[{"key":"/d","dir":true,"value":"","nodes":null,"createdIndex":7,"modifiedIndex":7,"expiration":"2026-01-01T00:00:00Z","ttl":5}],"createdIndex":0,"modifiedIndex":0},"prevNode":null}"#
        );
    }

    #[test]
    fn errors_read_as_etcdctl_prints_them() {
        let e: V2Error =
            decode_json(br#"{"errorCode":100,"message":"Key not found","cause":"/two","index":4}"#)
                .expect("decode");
        assert_eq!(e.to_string(), "100: Key not found (/two) [4]");
    }
}
