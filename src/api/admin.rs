//! Everything outside `/v2/keys`: `/version`, `/health`, `/v2/stats/*`, `/v2/members`,
//! `/v2/machines` and the `/v2/auth/*` answers of an etcd whose v2 auth is disabled.

use super::http1::Response;
use super::json::to_go_json;
use super::reply::Reply;
use super::server::{send, ApiContext, Incoming};
use crate::util::{clock, time};
use serde::Serialize;
use std::time::Duration;

/// The etcd server version pikv reports (the last etcd 2 release, whose API pikv serves).
pub const ETCD_SERVER_VERSION: &str = "2.3.8";
/// The cluster version pikv reports.
pub const ETCD_CLUSTER_VERSION: &str = "2.3.0";

pub(super) async fn handle(ctx: &ApiContext, incoming: Incoming, path: &str) -> Response {
    let members_api = path == "/v2/members" || path.starts_with("/v2/members/");
    let reply = if path == "/health" && incoming.method == "GET" {
        health(ctx).await
    } else if members_api {
        with_cluster_id(ctx, super::members::handle(ctx, &incoming, path).await)
    } else {
        route(ctx, &incoming, path)
    };
    send(ctx, &incoming, reply)
}

fn route(ctx: &ApiContext, incoming: &Incoming, path: &str) -> Reply {
    let method = incoming.method.as_str();
    match path {
        "/version" => only(method, &["GET"], version),
        // GET /health is answered (asynchronously) before routing.
        "/health" => only(method, &["GET"], || {
            Reply::text(503, "{\"health\":\"false\"}\n")
        }),
        "/v2/machines" => only(method, &["GET", "HEAD"], || machines(ctx)),
        "/v2/leader" => only(method, &["GET"], || leader_0_4(ctx)),
        "/v2/stats/self" => only(method, &["GET"], || stats_self(ctx)),
        "/v2/stats/store" => only(method, &["GET"], || stats_store(ctx)),
        "/v2/stats/leader" => only(method, &["GET"], || stats_leader(ctx)),
        "/metrics" => metrics(ctx),
        p if p.starts_with("/v2/auth/") || p == "/v2/auth" => with_cluster_id(ctx, auth(method, p)),
        _ => Reply::text(404, "404 page not found\n"),
    }
}

fn only(method: &str, allowed: &[&str], f: impl FnOnce() -> Reply) -> Reply {
    if allowed.contains(&method) {
        f()
    } else {
        Reply::text(405, "Method Not Allowed\n").header("Allow", allowed.join(","))
    }
}

// etcd's method check runs before the cluster id is set, so its 405 carries none.
fn with_cluster_id(ctx: &ApiContext, reply: Reply) -> Reply {
    if reply.status == 405 && reply.headers.iter().any(|(n, _)| *n == "Allow") {
        return reply;
    }
    reply.header("X-Etcd-Cluster-Id", ctx.cluster_id_hex())
}

fn json(status: u16, body: Vec<u8>) -> Reply {
    Reply::new(status, body).header("Content-Type", "application/json")
}

fn message(status: u16, text: &str) -> Reply {
    #[derive(Serialize)]
    struct Message<'a> {
        message: &'a str,
    }
    json(status, to_go_json(&Message { message: text }))
}

fn version() -> Reply {
    #[derive(Serialize)]
    struct Version {
        etcdserver: &'static str,
        etcdcluster: &'static str,
        pikv: &'static str,
    }
    json(
        200,
        to_go_json(&Version {
            etcdserver: ETCD_SERVER_VERSION,
            etcdcluster: ETCD_CLUSTER_VERSION,
            pikv: env!("CARGO_PKG_VERSION"),
        }),
    )
}

// Healthy means a leader exists and a linearizable read gets through within a second, as in
// etcd 3.4 (which runs a quorum GET).
async fn health(ctx: &ApiContext) -> Reply {
    let has_leader = ctx
        .node
        .status
        .leader
        .load(std::sync::atomic::Ordering::SeqCst)
        != 0;
    if has_leader
        && ctx
            .node
            .read_barrier_within(Duration::from_secs(1))
            .await
            .is_ok()
    {
        Reply::new(200, b"{\"health\":\"true\"}".to_vec())
            .header("Content-Type", "text/plain; charset=utf-8")
    } else {
        Reply::text(503, "{\"health\":\"false\"}\n")
    }
}

fn leader_0_4(ctx: &ApiContext) -> Reply {
    let index = ctx
        .storage
        .read()
        .and_then(|v| crate::store::V2Store::current_index(&v))
        .unwrap_or(0);
    match super::compat04::leader(ctx, index) {
        Ok(reply) => reply,
        Err(e) => super::keys::error_reply(ctx, &e),
    }
}

fn machines(ctx: &ApiContext) -> Reply {
    let mut urls: Vec<String> = super::members::all_members(ctx)
        .into_iter()
        .flat_map(|m| m.client_urls)
        .collect();
    urls.sort();
    Reply::new(200, urls.join(", ").into_bytes())
        .header("Content-Type", "text/plain; charset=utf-8")
}

fn stats_self(ctx: &ApiContext) -> Reply {
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct LeaderInfo {
        leader: String,
        uptime: String,
        start_time: String,
    }
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct SelfStats {
        name: String,
        id: String,
        state: &'static str,
        start_time: String,
        leader_info: LeaderInfo,
        recv_append_request_cnt: u64,
        send_append_request_cnt: u64,
    }
    let leader = ctx
        .node
        .status
        .leader
        .load(std::sync::atomic::Ordering::SeqCst);
    let is_leader = leader == ctx.member.id;
    let now = clock::now_unix_nanos();
    let stats = SelfStats {
        name: ctx.member.name.clone(),
        id: format!("{:x}", ctx.member.id),
        state: if is_leader {
            "StateLeader"
        } else {
            "StateFollower"
        },
        start_time: time::rfc3339_nano_utc(ctx.start_time),
        leader_info: LeaderInfo {
            leader: if leader == 0 {
                String::new()
            } else {
                format!("{leader:x}")
            },
            uptime: time::go_duration(now.saturating_sub(ctx.start_time)),
            start_time: time::rfc3339_nano_utc(ctx.start_time),
        },
        recv_append_request_cnt: ctx
            .node
            .status
            .appends_received
            .load(std::sync::atomic::Ordering::Relaxed),
        send_append_request_cnt: ctx
            .node
            .status
            .appends_sent
            .load(std::sync::atomic::Ordering::Relaxed),
    };
    json(200, to_go_json(&stats))
}

// pikv's own counters in Prometheus text format (etcd serves its own metrics here too; no v2
// client reads them). They make group commit and the quota observable.
fn metrics(ctx: &ApiContext) -> Reply {
    use std::sync::atomic::Ordering::Relaxed;
    let st = &ctx.node.status;
    let (raft_index, raft_term) = ctx.node.raft_index_term();
    let rows = [
        (
            "pikv_storage_batches_total",
            "counter",
            "Batches committed, one LMDB commit each.",
            st.batches.load(Relaxed),
        ),
        (
            "pikv_storage_entries_total",
            "counter",
            "Raft log entries appended by those batches.",
            st.entries.load(Relaxed),
        ),
        (
            "pikv_storage_map_full_total",
            "counter",
            "Batches refused because the map was full.",
            st.batches_map_full.load(Relaxed),
        ),
        (
            "pikv_storage_used_bytes",
            "gauge",
            "Bytes of the LMDB map in use.",
            st.used_bytes.load(Relaxed),
        ),
        (
            "pikv_storage_quota_bytes",
            "gauge",
            "The LMDB map size (--quota-backend-bytes).",
            ctx.node.quota_bytes,
        ),
        (
            "pikv_raft_commit_index",
            "gauge",
            "Raft commit index.",
            raft_index,
        ),
        ("pikv_raft_term", "gauge", "Raft term.", raft_term),
        (
            "pikv_store_index",
            "gauge",
            "The etcd index.",
            ctx.hub.current_index(),
        ),
        (
            "pikv_watchers",
            "gauge",
            "Parked watches.",
            ctx.hub.watcher_count() as u64,
        ),
    ];
    let mut body = String::new();
    for (name, kind, help, value) in rows {
        body.push_str(&format!(
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}\n"
        ));
    }
    Reply::new(200, body.into_bytes())
        .header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
}

fn stats_store(ctx: &ApiContext) -> Reply {
    let s = ctx.store.stats();
    let watchers = ctx.hub.watcher_count();
    let body = format!(
        "{{\"getsSuccess\":{},\"getsFail\":{},\"setsSuccess\":{},\"setsFail\":{},\"deleteSuccess\":{},\"deleteFail\":{},\"updateSuccess\":{},\"updateFail\":{},\"createSuccess\":{},\"createFail\":{},\"compareAndSwapSuccess\":{},\"compareAndSwapFail\":{},\"compareAndDeleteSuccess\":{},\"compareAndDeleteFail\":{},\"expireCount\":{},\"watchers\":{}}}",
        s.gets_success, s.gets_fail, s.sets_success, s.sets_fail, s.delete_success, s.delete_fail,
        s.update_success, s.update_fail, s.create_success, s.create_fail, s.compare_and_swap_success,
        s.compare_and_swap_fail, s.compare_and_delete_success, s.compare_and_delete_fail, s.expire_count, watchers
    );
    json(200, body.into_bytes())
}

fn stats_leader(ctx: &ApiContext) -> Reply {
    let leader = ctx
        .node
        .status
        .leader
        .load(std::sync::atomic::Ordering::SeqCst);
    if leader != ctx.member.id {
        return message(403, "not current leader");
    }
    let followers = ctx
        .node
        .status
        .followers
        .lock()
        .map(|f| f.clone())
        .unwrap_or_default();
    // Written by hand: Go prints these floats with its own shortest form, which Rust's `{}`
    // matches for finite values.
    let mut body = format!("{{\"leader\":\"{:x}\",\"followers\":{{", ctx.member.id);
    for (i, (id, f)) in followers.iter().enumerate() {
        if i > 0 {
            body.push(',');
        }
        body.push_str(&format!(
            "\"{id:x}\":{{\"latency\":{{\"current\":{},\"average\":{},\"standardDeviation\":{},\"minimum\":{},\"maximum\":{}}},\"counts\":{{\"fail\":{},\"success\":{}}}}}",
            go_float(f.current),
            go_float(f.average),
            go_float(f.standard_deviation()),
            go_float(f.minimum),
            go_float(f.maximum),
            f.fail,
            f.success
        ));
    }
    body.push_str("}}");
    json(200, body.into_bytes())
}

// Go's encoding/json float form for the values these statistics take (finite, small).
fn go_float(v: f64) -> String {
    if v.is_finite() {
        format!("{v}")
    } else {
        "0".to_string()
    }
}

fn auth(method: &str, path: &str) -> Reply {
    let rest = path.trim_start_matches("/v2/auth").trim_start_matches('/');
    match (method, rest) {
        ("GET", "enable") => json(200, b"{\"enabled\":false}\n".to_vec()),
        ("GET", "users") => json(200, b"{\"users\":null}\n".to_vec()),
        ("GET", "roles") => json(
            200,
            b"{\"roles\":[{\"role\":\"root\",\"permissions\":{\"kv\":{\"read\":[\"/*\"],\"write\":[\"/*\"]}}}]}\n".to_vec(),
        ),
        ("GET", "roles/root") => json(
            200,
            b"{\"role\":\"root\",\"permissions\":{\"kv\":{\"read\":[\"/*\"],\"write\":[\"/*\"]}}}\n".to_vec(),
        ),
        ("GET", r) if r.starts_with("users/") => {
            message(404, &format!("auth: User {} does not exist.", &r["users/".len()..]))
        }
        ("GET", r) if r.starts_with("roles/") => {
            message(404, &format!("auth: Role {} does not exist.", &r["roles/".len()..]))
        }
        ("PUT", "enable") => message(409, "auth: No root user available, please create one"),
        ("DELETE", "enable") => message(409, "auth: already disabled"),
        _ => message(403, "auth is not supported by pikv"),
    }
}
