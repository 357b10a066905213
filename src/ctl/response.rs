//! The v2 keys API's answers as etcd's Go client decodes them (`client.Response`,
//! `client.Node`, `client.Error`), and their re-encoding for `--output json`, byte for byte
//! what Go's `json.Marshal` writes for those structs.
//!
//! Decoding is lenient where Go's is (missing fields are zero); it never panics on a body
//! from the network.

use serde::Deserialize;
use std::fmt;

use crate::api::json::write_json_string;

/// A node as the Go client holds it.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase", default)]
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
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase", default)]
pub struct KeysResponse {
    /// `get`, `set`, `create`, `update`, `delete`, `compareAndSwap`, ...
    pub action: String,
    /// The node acted on.
    pub node: Option<Node>,
    /// The node before the write, if there was one.
    pub prev_node: Option<Node>,
    /// `X-Etcd-Index` (not in the body).
    #[serde(skip)]
    pub index: u64,
}

/// An error body: `{"errorCode":100,"message":"Key not found","cause":"/a","index":4}`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase", default)]
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
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase", default)]
pub struct Member {
    /// Member id (hex).
    pub id: String,
    /// Name, empty until the member published it.
    pub name: String,
    /// Peer URLs.
    #[serde(rename = "peerURLs")]
    pub peer_urls: Vec<String>,
    /// Client URLs, empty until the member published them.
    #[serde(rename = "clientURLs")]
    pub client_urls: Vec<String>,
}

/// The `/v2/members` body.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct Members {
    /// Every member.
    pub members: Vec<Member>,
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
        let r: KeysResponse = serde_json::from_slice(body).expect("decode");
        assert_eq!(
            r.to_go_json(),
            r#"{"action":"set","node":{"key":"/a","value":"3","nodes":null,"createdIndex":6,"modifiedIndex":6},"prevNode":{"key":"/a","value":"2","nodes":null,"createdIndex":5,"modifiedIndex":5}}"#
        );
        let body = br#"{"action":"get","node":{"dir":true,"nodes":[{"key":"/d","dir":true,"expiration":"2026-01-01T00:00:00Z","ttl":5,"modifiedIndex":7,"createdIndex":7}]}}"#;
        let r: KeysResponse = serde_json::from_slice(body).expect("decode");
        assert_eq!(
            r.to_go_json(),
            r#"{"action":"get","node":{"key":"","dir":true,"value":"","nodes":[{"key":"/d","dir":true,"value":"","nodes":null,"createdIndex":7,"modifiedIndex":7,"expiration":"2026-01-01T00:00:00Z","ttl":5}],"createdIndex":0,"modifiedIndex":0},"prevNode":null}"#
        );
    }

    #[test]
    fn errors_read_as_etcdctl_prints_them() {
        let e: V2Error = serde_json::from_slice(
            br#"{"errorCode":100,"message":"Key not found","cause":"/two","index":4}"#,
        )
        .expect("decode");
        assert_eq!(e.to_string(), "100: Key not found (/two) [4]");
    }
}
