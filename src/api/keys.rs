//! `/v2/keys`: parse, then read in a short LMDB read transaction, propose through the node,
//! or park a watch in the hub.

use super::http1::Parked;
use super::params::{self, KeysRequest};
use super::render;
use super::reply::{write_chunk, write_chunked_head, write_last_chunk, Reply};
use super::server::{cors_headers, send, ApiContext, Incoming};
use crate::store::{Event, V2Error};
use crate::util::clock;
use crate::watch::{WatchSink, WatchStart};
use std::io::Write;

/// LMDB's key limit leaves room for this many bytes of key path (the node and TTL index keys
/// add a few bytes of their own).
const KEY_BYTES_MAX: usize = 480;
/// How long one watch event may take to write before the client counts as gone.
const WATCH_WRITE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

pub(super) fn handle(ctx: &ApiContext, mut incoming: Incoming<'_, '_>, key: String) {
    if !matches!(
        incoming.method.as_str(),
        "GET" | "HEAD" | "PUT" | "POST" | "DELETE"
    ) {
        let reply =
            Reply::text(405, "Method Not Allowed\n").header("Allow", "HEAD,GET,PUT,POST,DELETE");
        return send(ctx, incoming, reply);
    }
    let content_type = incoming.header("Content-Type");
    let body = if params::reads_form_body(&incoming.method, content_type.as_deref()) {
        match read_body(&mut incoming) {
            Ok(b) => b,
            Err(reply) => return send(ctx, incoming, reply),
        }
    } else {
        Vec::new()
    };
    let now = clock::now_unix_nanos();
    let parsed = params::parse_keys_request(
        &incoming.method,
        &key,
        &incoming.raw_query,
        content_type.as_deref(),
        &body,
        now,
    );
    let request = match parsed {
        Ok(r) => r,
        Err(e) => {
            let mut reply = error_reply(ctx, &e);
            // Go closes the connection after a body it refused to read to the end.
            reply.close = body.len() > params::BODY_BYTES_MAX;
            return send(ctx, incoming, reply);
        }
    };
    match request {
        KeysRequest::Read {
            key,
            recursive,
            sorted,
            quorum,
        } => {
            let reply = read(ctx, &key, recursive, sorted, quorum);
            send(ctx, incoming, reply)
        }
        KeysRequest::Watch {
            key,
            recursive,
            stream,
            wait_index,
        } => watch(ctx, incoming, &key, recursive, stream, wait_index),
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
                return send(ctx, incoming, error_reply(ctx, &e));
            }
            let reply = match ctx.node.propose(command, body.len()) {
                Ok(Ok(event)) => event_reply(ctx, &event, no_value_on_success),
                Ok(Err(e)) | Err(e) => error_reply(ctx, &e),
            };
            send(ctx, incoming, reply)
        }
    }
}

// Reads the body up to one byte past etcd's 10 MiB limit; the parser reports the 210.
fn read_body(incoming: &mut Incoming<'_, '_>) -> Result<Vec<u8>, Reply> {
    incoming.ex.read_body(params::BODY_BYTES_MAX).map_err(|e| {
        let mut reply = Reply::text(
            400,
            &format!("400 Bad Request: cannot read the body: {e}\n"),
        );
        reply.close = true;
        reply
    })
}

fn read(ctx: &ApiContext, key: &str, recursive: bool, sorted: bool, quorum: bool) -> Reply {
    if quorum {
        if let Err(e) = ctx.node.read_barrier() {
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
    let body = render::event_body(event, clock::now_unix_nanos(), no_value);
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

/// A watch's response writer, parked in the hub; `done` tells the connection it may go on.
struct ChunkedSink {
    writer: Box<dyn Write + Send>,
    done: std::sync::mpsc::Sender<()>,
}

impl WatchSink for ChunkedSink {
    fn send_event(&mut self, event: &Event) -> bool {
        let body = render::event_body(event, clock::now_unix_nanos(), false);
        write_chunk(&mut *self.writer, &body).is_ok()
    }

    fn finish(mut self: Box<Self>) {
        let _ = write_last_chunk(&mut *self.writer);
        let _ = self.done.send(());
    }
}

fn watch(
    ctx: &ApiContext,
    incoming: Incoming<'_, '_>,
    key: &str,
    recursive: bool,
    stream: bool,
    wait_index: u64,
) {
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
    let ex = incoming.ex;
    if let Err(e) = write_chunked_head(ex.writer(), 200, &headers) {
        log::debug!("watch on {key}: client gone: {e}");
        ex.close = true;
        return;
    }
    let since = match start {
        WatchStart::Hit { event, .. } => {
            let body = render::event_body(&event, clock::now_unix_nanos(), false);
            if write_chunk(ex.writer(), &body).is_err() {
                ex.close = true;
                return;
            }
            if !stream {
                if write_last_chunk(ex.writer()).is_err() {
                    ex.close = true;
                }
                return;
            }
            event.etcd_index + 1
        }
        WatchStart::Wait { since, .. } => since,
    };
    // A client that stops reading must not hold a delivery thread forever.
    let writer = match ex
        .clone_stream()
        .and_then(|w| w.set_write_timeout(Some(WATCH_WRITE_TIMEOUT)).map(|()| w))
    {
        Ok(w) => w,
        Err(e) => {
            log::warn!("watch on {key}: cannot keep the connection: {e}");
            ex.close = true;
            return;
        }
    };
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    let sink = Box::new(ChunkedSink {
        writer: Box::new(writer),
        done: done_tx,
    });
    let id = ctx.hub.park(key, recursive, stream, since, sink);
    let hub = std::sync::Arc::clone(&ctx.hub);
    ex.park(Parked {
        done: done_rx,
        cancel: Box::new(move || {
            if let Some(id) = id {
                hub.cancel(id);
            }
        }),
    });
}
