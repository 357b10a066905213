//! `/v2/keys`: parse, then read in a short LMDB read transaction, propose through the node,
//! or park a watch in the hub.

use super::http1::Response;
use super::params::{self, KeysRequest};
use super::render;
use super::reply::{chunk_bytes, chunked_head_bytes, Reply, LAST_CHUNK};
use super::server::{cors_headers, send, ApiContext, Incoming};
use crate::store::{Event, V2Error};
use crate::watch::{WatchSink, WatchStart};

/// LMDB's key limit leaves room for this many bytes of key path (the node and TTL index keys
/// add a few bytes of their own).
const KEY_BYTES_MAX: usize = 480;
/// Events a watch connection may have queued but not yet written: a stream watcher that
/// falls this far behind is ended (the hub allows 100 undelivered events, as etcd).
const WATCH_CHUNKS_QUEUED_MAX: usize = 128;

pub(super) async fn handle(ctx: &ApiContext, incoming: Incoming, key: String) -> Response {
    if !matches!(
        incoming.method.as_str(),
        "GET" | "HEAD" | "PUT" | "POST" | "DELETE"
    ) {
        let reply =
            Reply::text(405, "Method Not Allowed\n").header("Allow", "HEAD,GET,PUT,POST,DELETE");
        return send(ctx, &incoming, reply);
    }
    let content_type = incoming.header("Content-Type");
    // The connection read the body of PUT and POST; Go parses it only as a form.
    let body: &[u8] = if params::reads_form_body(&incoming.method, content_type.as_deref()) {
        &incoming.request.body
    } else {
        &[]
    };
    // Expirations are fixed in cluster time, the clock TTLs count in on every member.
    let now = ctx.node.clocks().cluster;
    let parsed = params::parse_keys_request(
        &incoming.method,
        &key,
        &incoming.raw_query,
        content_type.as_deref(),
        body,
        now,
    );
    let request = match parsed {
        Ok(r) => r,
        Err(e) => {
            let mut reply = error_reply(ctx, &e);
            // Go closes the connection after a body it refused to read to the end.
            reply.close = body.len() > params::BODY_BYTES_MAX;
            return send(ctx, &incoming, reply);
        }
    };
    if super::compat04::is_machines_key(&key) {
        let reply = machines_0_4(ctx, &request);
        return send(ctx, &incoming, reply);
    }
    match request {
        KeysRequest::Read {
            key,
            recursive,
            sorted,
            quorum,
        } => {
            let reply = read(ctx, &key, recursive, sorted, quorum).await;
            send(ctx, &incoming, reply)
        }
        KeysRequest::Watch {
            key,
            recursive,
            stream,
            wait_index,
        } => watch(ctx, &incoming, &key, recursive, stream, wait_index),
        KeysRequest::Write {
            command,
            no_value_on_success,
        } => {
            if key.len() > KEY_BYTES_MAX {
                let e = V2Error::new(
                    crate::store::error::INVALID_FIELD,
                    format!("key is longer than {KEY_BYTES_MAX} bytes"),
                    0,
                );
                return send(ctx, &incoming, error_reply(ctx, &e));
            }
            let reply = match ctx.node.propose(command, body.len()).await {
                Ok(Ok(event)) => event_reply(ctx, &event, no_value_on_success),
                Ok(Err(e)) | Err(e) => error_reply(ctx, &e),
            };
            send(ctx, &incoming, reply)
        }
    }
}

async fn read(ctx: &ApiContext, key: &str, recursive: bool, sorted: bool, quorum: bool) -> Reply {
    if quorum || ctx.linearizable_reads() {
        if let Err(e) = ctx.node.read_barrier().await {
            return error_reply(ctx, &e);
        }
    }
    let result = ctx
        .storage
        .read()
        .and_then(|view| ctx.store.get(&view, key, recursive, sorted));
    match result {
        Ok(Ok(event)) => event_reply(ctx, &event, false),
        Ok(Err(e)) => error_reply(ctx, &e),
        Err(e) => {
            log::error!("read of {key} failed: {e}");
            error_reply(ctx, &V2Error::new(300, e.to_string(), 0))
        }
    }
}

/// etcd 0.4's machine listing (see `compat04`): read-only, and a watch on it is a read.
fn machines_0_4(ctx: &ApiContext, request: &KeysRequest) -> Reply {
    let index = match ctx
        .storage
        .read()
        .and_then(|v| crate::store::V2Store::current_index(&v))
    {
        Ok(i) => i,
        Err(e) => {
            log::error!("reading the etcd index failed: {e}");
            return error_reply(ctx, &V2Error::new(300, e.to_string(), 0));
        }
    };
    let key = match request {
        KeysRequest::Read { key, .. } | KeysRequest::Watch { key, .. } => key,
        KeysRequest::Write { .. } => {
            return error_reply(
                ctx,
                &super::compat04::refuse_write(super::compat04::MACHINES_DIR, index),
            )
        }
    };
    match super::compat04::read_machines(ctx, key, index) {
        Ok(body) => {
            let mut reply = Reply::new(200, body);
            reply.headers = base_headers(ctx, index);
            reply.headers.extend(raft_headers(ctx));
            reply
        }
        Err(e) => error_reply(ctx, &e),
    }
}

fn base_headers(ctx: &ApiContext, etcd_index: u64) -> Vec<(&'static str, String)> {
    vec![
        ("Content-Type", "application/json".to_string()),
        ("X-Etcd-Cluster-Id", ctx.cluster_id_hex()),
        ("X-Etcd-Index", etcd_index.to_string()),
    ]
}

fn raft_headers(ctx: &ApiContext) -> Vec<(&'static str, String)> {
    let (index, term) = ctx.node.raft_index_term();
    vec![
        ("X-Raft-Index", index.to_string()),
        ("X-Raft-Term", term.to_string()),
    ]
}

fn event_reply(ctx: &ApiContext, event: &Event, no_value: bool) -> Reply {
    let body = render::event_body_at(event, ctx.node.clocks(), no_value);
    let mut reply = Reply::new(render::success_status(event), body);
    reply.headers = base_headers(ctx, event.etcd_index);
    reply.headers.extend(raft_headers(ctx));
    reply
}

/// A keys error: etcd's body, its status, the cluster id and index headers, no X-Raft-*.
pub(super) fn error_reply(ctx: &ApiContext, e: &V2Error) -> Reply {
    let mut reply = Reply::new(e.http_status(), render::error_body(e));
    reply.headers = base_headers(ctx, e.index);
    reply
}

/// A parked watch's way to its connection: framed chunks into the connection task's channel.
/// Dropping it closes the channel, which ends the response.
struct ChannelSink {
    chunks: smol::channel::Sender<Vec<u8>>,
    /// The member's status, for the clocks a notification is rendered with.
    status: std::sync::Arc<crate::node::Status>,
}

impl WatchSink for ChannelSink {
    fn send_event(&mut self, event: &Event) -> bool {
        let body = render::event_body_at(event, self.status.clocks(), false);
        self.chunks.try_send(chunk_bytes(&body)).is_ok()
    }

    fn finish(self: Box<Self>) {}
}

fn watch(
    ctx: &ApiContext,
    incoming: &Incoming,
    key: &str,
    recursive: bool,
    stream: bool,
    wait_index: u64,
) -> Response {
    let start = match ctx.hub.start(key, recursive, wait_index) {
        Ok(s) => s,
        Err(e) => return send(ctx, incoming, error_reply(ctx, &e)),
    };
    let current = match &start {
        WatchStart::Hit { current, .. } | WatchStart::Wait { current, .. } => *current,
    };
    let mut headers = base_headers(ctx, current);
    headers.extend(raft_headers(ctx));
    headers.extend(cors_headers(ctx, incoming.header("Origin").as_deref()));
    let head = chunked_head_bytes(200, &headers, false);
    let (tx, rx) = smol::channel::bounded(WATCH_CHUNKS_QUEUED_MAX);
    let since = match start {
        WatchStart::Hit { event, .. } => {
            let chunk = chunk_bytes(&render::event_body_at(&event, ctx.node.clocks(), false));
            if !stream {
                let mut bytes = head;
                bytes.extend_from_slice(&chunk);
                bytes.extend_from_slice(LAST_CHUNK);
                return Response::Bytes {
                    bytes,
                    close: false,
                };
            }
            let _ = tx.try_send(chunk);
            event.etcd_index + 1
        }
        WatchStart::Wait { since, .. } => since,
    };
    let parked = ctx.hub.park(
        key,
        recursive,
        stream,
        since,
        Box::new(ChannelSink {
            chunks: tx,
            status: std::sync::Arc::clone(&ctx.node.status),
        }),
    );
    let id = match parked {
        Ok(id) => id,
        Err(e) => return send(ctx, incoming, error_reply(ctx, &e)),
    };
    let hub = std::sync::Arc::clone(&ctx.hub);
    Response::Stream {
        head,
        chunks: rx,
        on_gone: Box::new(move || {
            if let Some(id) = id {
                hub.cancel(id);
            }
        }),
    }
}
