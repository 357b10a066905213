//! The client listeners: one per `--listen-client-urls` entry, served by `http1` (each open
//! connection a task on the shared smol executor, its requests answered in order). Routing,
//! CORS and Go's `ServeMux` behaviour (OPTIONS, 301 for unclean paths, 404) live here; the
//! endpoints are in `keys.rs` and `admin.rs`.

use super::http1::{self, Request, Response};
use super::path::{check_path, keys_key, redirect_body, PathCheck, BAD_REQUEST_BODY};
use super::reply::{reply_bytes, Reply};
use crate::cli::config::Cors;
use crate::node::NodeHandle;
use crate::storage::lmdb::LmdbStorage;
use crate::store::V2Store;
use crate::watch::WatchHub;
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;

/// This member as the members API shows it.
#[derive(Debug, Clone)]
pub struct MemberInfo {
    /// Member id.
    pub id: u64,
    /// `--name`.
    pub name: String,
    /// Advertised peer URLs.
    pub peer_urls: Vec<String>,
    /// Advertised client URLs.
    pub client_urls: Vec<String>,
}

/// What every request handler can reach.
pub struct ApiContext {
    /// LMDB, for read transactions.
    pub storage: Arc<LmdbStorage>,
    /// The v2 store (reads and counters).
    pub store: Arc<V2Store>,
    /// Parked watches.
    pub hub: Arc<WatchHub>,
    /// The node thread.
    pub node: NodeHandle,
    /// The cluster id (X-Etcd-Cluster-Id).
    pub cluster_id: u64,
    /// This member.
    pub member: MemberInfo,
    /// The CORS policy.
    pub cors: Cors,
    /// `--serializable-reads`: plain GETs are served from the local state.
    pub serializable_reads: bool,
    /// `--strict-reconfig-check`: membership changes that would leave too few started
    /// members are refused.
    pub strict_reconfig_check: bool,
    /// Since when this member's links to its peers are up (none for a single member).
    pub peer_health: Option<Arc<crate::transport::tcp::LinkHealth>>,
    /// Process start, Unix nanoseconds.
    pub start_time: u64,
}

impl ApiContext {
    /// Whether plain GETs go through ReadIndex: in a cluster without
    /// `--serializable-reads`. A single member's local state is always current, so it
    /// never needs the round.
    pub fn linearizable_reads(&self) -> bool {
        !self.serializable_reads
            && self
                .node
                .status
                .voters
                .load(std::sync::atomic::Ordering::Relaxed)
                > 1
    }

    /// X-Etcd-Cluster-Id's value.
    pub fn cluster_id_hex(&self) -> String {
        format!("{:x}", self.cluster_id)
    }
}

/// A request as the handlers see it: method, query, head and body.
pub struct Incoming {
    /// The request (the body is read for PUT and POST).
    pub request: Request,
    /// Upper-case method name.
    pub method: String,
    /// The raw query string (without '?').
    pub raw_query: String,
}

impl Incoming {
    /// A request header's value (first occurrence).
    pub fn header(&self, name: &str) -> Option<String> {
        self.request.head.header(name).map(str::to_string)
    }
}

/// Binds every listen address; an error names the address.
pub fn bind(addrs: &[SocketAddr]) -> Result<Vec<(SocketAddr, TcpListener)>, String> {
    addrs
        .iter()
        .map(|a| {
            TcpListener::bind(a)
                .map(|s| (*a, s))
                .map_err(|e| format!("cannot listen for clients on {a}: {e}"))
        })
        .collect()
}

/// The most client connections open at once per listener.
const CONNECTIONS_MAX: usize = 4096;

struct Api {
    ctx: Arc<ApiContext>,
}

impl http1::Service for Api {
    fn call(&self, request: Request) -> impl std::future::Future<Output = Response> + Send {
        let ctx = Arc::clone(&self.ctx);
        async move { handle(&ctx, request).await }
    }
}

/// Serves every listener on `executor`: each client connection is a task.
pub fn serve(
    executor: &Arc<smol::Executor<'static>>,
    listeners: Vec<(SocketAddr, TcpListener)>,
    ctx: Arc<ApiContext>,
) -> Result<(), String> {
    let api = Arc::new(Api { ctx });
    for (addr, listener) in listeners {
        http1::serve(
            executor,
            listener,
            Arc::clone(&api),
            super::params::BODY_BYTES_MAX,
            CONNECTIONS_MAX,
        )
        .map_err(|e| format!("cannot serve clients on {addr}: {e}"))?;
    }
    Ok(())
}

/// The CORS headers this request gets (spec §13).
pub fn cors_headers(ctx: &ApiContext, origin: Option<&str>) -> Vec<(&'static str, String)> {
    let allow_origin = match &ctx.cors {
        Cors::Any => Some("*".to_string()),
        Cors::Origins(list) => origin
            .filter(|o| list.iter().any(|a| a == o))
            .map(str::to_string),
    };
    match allow_origin {
        Some(o) => vec![
            (
                "Access-Control-Allow-Headers",
                "accept, content-type, authorization".to_string(),
            ),
            (
                "Access-Control-Allow-Methods",
                "POST, GET, OPTIONS, PUT, DELETE".to_string(),
            ),
            ("Access-Control-Allow-Origin", o),
        ],
        None => Vec::new(),
    }
}

/// `reply` with the CORS headers added, as the connection's response.
pub fn send(ctx: &ApiContext, incoming: &Incoming, mut reply: Reply) -> Response {
    let origin = incoming.header("Origin");
    reply.headers.extend(cors_headers(ctx, origin.as_deref()));
    let head_only = incoming.method == "HEAD";
    Response::Bytes {
        bytes: reply_bytes(&reply, head_only),
        close: reply.close,
    }
}

async fn handle(ctx: &ApiContext, request: Request) -> Response {
    let method = request.head.method.to_ascii_uppercase();
    let url = request.head.target.clone();
    let (raw_path, raw_query) = match url.split_once('?') {
        Some((p, q)) => (p.to_string(), q.to_string()),
        None => (url.clone(), String::new()),
    };
    let incoming = Incoming {
        request,
        method,
        raw_query,
    };
    if incoming.method == "OPTIONS" {
        return send(ctx, &incoming, Reply::new(200, Vec::new()));
    }
    let path = match check_path(&raw_path, &incoming.raw_query) {
        Ok(PathCheck::Clean(p)) => p,
        Ok(PathCheck::Redirect(location)) => {
            let body = if matches!(incoming.method.as_str(), "GET" | "HEAD") {
                redirect_body(&raw_path, &incoming.raw_query)
            } else {
                Vec::new()
            };
            let mut reply = Reply::new(301, body).header("Location", location);
            if matches!(incoming.method.as_str(), "GET" | "HEAD") {
                reply = reply.header("Content-Type", "text/html; charset=utf-8");
            }
            // Go's Redirect writes no body for HEAD, so no Content-Length either.
            reply.no_length = incoming.method == "HEAD";
            return send(ctx, &incoming, reply);
        }
        Err(why) => {
            log::debug!("bad request target {raw_path:?}: {why}");
            let mut reply = Reply::new(400, BAD_REQUEST_BODY.to_vec())
                .header("Content-Type", "text/plain; charset=utf-8");
            reply.close = true;
            return send(ctx, &incoming, reply);
        }
    };
    if let Some(key) = keys_key(&path) {
        return super::keys::handle(ctx, incoming, key).await;
    }
    super::admin::handle(ctx, incoming, &path).await
}
