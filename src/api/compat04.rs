//! What etcd 0.4 answered and etcd 2 dropped, kept on purpose for the 0.4 clustering guide
//! and the clients written for it (node-etcd's `leader()` and `machines()`): `GET
//! /v2/leader`, the leader's peer URL as text, and `/v2/keys/_etcd/machines`, the members
//! as a hidden read-only directory of `raft=<peer URL>&etcd=<client URL>` values.
//!
//! pikv keeps no `_etcd` keys in its store: the listing is made from the membership on
//! each read, so it cannot drift from `/v2/members`. The members' `createdIndex` and
//! `modifiedIndex` are their positions in the listing (by name), as a cluster grown one
//! machine at a time showed them in 0.4; pikv does not record the index a member joined at.

use super::json::to_go_json;
use super::reply::Reply;
use super::server::ApiContext;
use crate::store::error::{KEY_NOT_FOUND, ROOT_READ_ONLY};
use crate::store::V2Error;
use serde::Serialize;

/// The directory 0.4 listed its machines in.
pub(super) const MACHINES_DIR: &str = "/_etcd/machines";
/// etcd's "During Leader Election".
const LEADER_ELECT: u16 = 301;

/// Whether a keys request for `key` is about the machine listing.
pub(super) fn is_machines_key(key: &str) -> bool {
    let key = key.trim_end_matches('/');
    key == MACHINES_DIR
        || key
            .strip_prefix(MACHINES_DIR)
            .is_some_and(|rest| rest.starts_with('/'))
}

/// `GET /v2/leader`: the leader's first peer URL, or 0.4's error while there is none.
pub(super) fn leader(ctx: &ApiContext, index: u64) -> Result<Reply, V2Error> {
    let leader = ctx
        .node
        .status
        .leader
        .load(std::sync::atomic::Ordering::SeqCst);
    let url = super::members::all_members(ctx)
        .into_iter()
        .find(|m| leader != 0 && m.id_value() == Some(leader))
        .and_then(|m| m.peer_urls().first().cloned());
    match url {
        Some(url) => {
            Ok(Reply::new(200, url.into_bytes())
                .header("Content-Type", "text/plain; charset=utf-8"))
        }
        None => Err(V2Error::new(LEADER_ELECT, String::new(), index)),
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Node {
    key: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    value: Option<String>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    dir: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    nodes: Option<Vec<Node>>,
    modified_index: u64,
    created_index: u64,
}

#[derive(Serialize)]
struct Answer {
    action: &'static str,
    node: Node,
}

/// The started members (a member without a name has not joined yet), by name, as 0.4's
/// machine keys.
fn machine_nodes(ctx: &ApiContext) -> Vec<Node> {
    let mut members: Vec<_> = super::members::all_members(ctx)
        .into_iter()
        .filter(|m| !m.name().is_empty())
        .collect();
    members.sort_by(|a, b| a.name().cmp(b.name()));
    members
        .iter()
        .zip(1u64..)
        .map(|(m, position)| Node {
            key: format!("{MACHINES_DIR}/{}", m.name()),
            value: Some(format!(
                "raft={}&etcd={}",
                m.peer_urls().first().map_or("", String::as_str),
                m.client_urls.first().map_or("", String::as_str)
            )),
            dir: false,
            nodes: None,
            modified_index: position,
            created_index: position,
        })
        .collect()
}

/// A read of `key` under [`MACHINES_DIR`]: the body of etcd's `get` answer, or its
/// "Key not found" for a machine that is not there.
pub(super) fn read_machines(ctx: &ApiContext, key: &str, index: u64) -> Result<Vec<u8>, V2Error> {
    let key = key.trim_end_matches('/');
    let nodes = machine_nodes(ctx);
    let node = if key == MACHINES_DIR {
        Node {
            key: MACHINES_DIR.to_string(),
            value: None,
            dir: true,
            modified_index: 1,
            created_index: 1,
            nodes: Some(nodes),
        }
    } else {
        nodes
            .into_iter()
            .find(|n| n.key == key)
            .ok_or_else(|| V2Error::new(KEY_NOT_FOUND, key.to_string(), index))?
    };
    Ok(to_go_json(&Answer {
        action: "get",
        node,
    }))
}

/// A write under [`MACHINES_DIR`]: refused, the listing is the membership's.
pub(super) fn refuse_write(key: &str, index: u64) -> V2Error {
    V2Error::new(ROOT_READ_ONLY, key.trim_end_matches('/').to_string(), index)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_machine_listing_and_only_it_is_emulated() {
        for key in ["/_etcd/machines", "/_etcd/machines/", "/_etcd/machines/m1"] {
            assert!(is_machines_key(key), "{key}");
        }
        for key in ["/_etcd", "/_etcd/machinesx", "/machines", "/_etcd/other"] {
            assert!(!is_machines_key(key), "{key}");
        }
    }

    #[test]
    fn a_dir_answer_has_etcds_field_order() {
        let body = to_go_json(&Answer {
            action: "get",
            node: Node {
                key: MACHINES_DIR.into(),
                value: None,
                dir: true,
                nodes: Some(vec![Node {
                    key: "/_etcd/machines/m1".into(),
                    value: Some("raft=http://a:7001&etcd=http://a:4001".into()),
                    dir: false,
                    nodes: None,
                    modified_index: 1,
                    created_index: 1,
                }]),
                modified_index: 1,
                created_index: 1,
            },
        });
        assert_eq!(
            String::from_utf8_lossy(&body),
            r#"{"action":"get","node":{"key":"/_etcd/machines","dir":true,"nodes":[{"key":"/_etcd/machines/m1","value":"raft=http://a:7001\u0026etcd=http://a:4001","modifiedIndex":1,"createdIndex":1}],"modifiedIndex":1,"createdIndex":1}}"#
        );
    }
}
