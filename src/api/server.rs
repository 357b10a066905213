//! The client listeners: one tiny_http server per `--listen-client-urls` entry, a dispatcher
//! thread each, and the request handling on the elastic pool. Routing, CORS and Go's
//! `ServeMux` behaviour (OPTIONS, 301 for unclean paths, 404) live here; the endpoints are
//! in `keys.rs` and `admin.rs`.

use super::path::{check_path, keys_key, redirect_body, PathCheck, BAD_REQUEST_BODY};
use super::reply::{write_reply, Reply};
use crate::cli::config::Cors;
use crate::node::NodeHandle;
use crate::storage::lmdb::LmdbStorage;
use crate::store::V2Store;
use crate::util::pool::Pool;
use crate::watch::WatchHub;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
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
    /// Process start, Unix nanoseconds.
    pub start_time: u64,
    /// The pool requests and deliveries run on.
    pub pool: Pool,
}

impl ApiContext {
    /// X-Etcd-Cluster-Id's value.
    pub fn cluster_id_hex(&self) -> String {
        format!("{:x}", self.cluster_id)
    }
}

/// A request as the handlers see it: method, path, query, headers and the connection.
pub struct Incoming {
    /// The tiny_http request (body unread).
    pub request: tiny_http::Request,
    /// Upper-case method name.
    pub method: String,
    /// The raw query string (without '?').
    pub raw_query: String,
}

impl Incoming {
    /// A request header's value (first occurrence).
    pub fn header(&self, name: &str) -> Option<String> {
        self.request
            .headers()
            .iter()
            .find(|h| h.field.as_str().as_str().eq_ignore_ascii_case(name))
            .map(|h| h.value.as_str().to_string())
    }
}

/// Binds every listen address; an error names the address.
pub fn bind(addrs: &[SocketAddr]) -> Result<Vec<(SocketAddr, tiny_http::Server)>, String> {
    addrs
        .iter()
        .map(|a| {
            tiny_http::Server::http(a)
                .map(|s| (*a, s))
                .map_err(|e| format!("cannot listen for clients on {a}: {e}"))
        })
        .collect()
}

/// Threads per listener kept waiting for requests when idle.
const WORKERS_MIN: usize = 4;
/// The most threads per listener (each slow or hanging client holds one).
const WORKERS_MAX: usize = 4096;
/// How long a worker above the minimum waits for a request before exiting.
const WORKER_IDLE_EXIT: std::time::Duration = std::time::Duration::from_secs(30);

struct Listener {
    server: tiny_http::Server,
    addr: SocketAddr,
    idle: AtomicUsize,
    total: AtomicUsize,
}

/// Starts the request workers of every listener. Workers take requests straight from
/// tiny_http (no dispatcher hop); whenever a worker takes a request and none is left
/// waiting, it starts another first, so a client that hangs mid-request never stalls the
/// others.
pub fn serve(
    servers: Vec<(SocketAddr, tiny_http::Server)>,
    ctx: Arc<ApiContext>,
) -> Result<(), String> {
    for (addr, server) in servers {
        let listener = Arc::new(Listener {
            server,
            addr,
            idle: AtomicUsize::new(0),
            total: AtomicUsize::new(0),
        });
        for _ in 0..WORKERS_MIN {
            start_worker(&listener, &ctx)?;
        }
    }
    Ok(())
}

fn start_worker(listener: &Arc<Listener>, ctx: &Arc<ApiContext>) -> Result<(), String> {
    listener.total.fetch_add(1, Ordering::SeqCst);
    let (l, c) = (Arc::clone(listener), Arc::clone(ctx));
    std::thread::Builder::new()
        .name("http".into())
        .stack_size(256 * 1024)
        .spawn(move || worker_loop(&l, &c))
        .map(|_| ())
        .map_err(|e| {
            listener.total.fetch_sub(1, Ordering::SeqCst);
            format!("cannot start a worker for {}: {e}", listener.addr)
        })
}

fn worker_loop(listener: &Arc<Listener>, ctx: &Arc<ApiContext>) {
    loop {
        listener.idle.fetch_add(1, Ordering::SeqCst);
        let next = listener.server.recv_timeout(WORKER_IDLE_EXIT);
        let idle_left = listener.idle.fetch_sub(1, Ordering::SeqCst) - 1;
        match next {
            Ok(Some(request)) => {
                if idle_left == 0 && listener.total.load(Ordering::SeqCst) < WORKERS_MAX {
                    if let Err(e) = start_worker(listener, ctx) {
                        log::warn!("{e}");
                    }
                }
                handle(ctx, request);
            }
            Ok(None) if listener.total.load(Ordering::SeqCst) <= WORKERS_MIN => {}
            Ok(None) => break,
            Err(e) => {
                log::error!("listener {} stopped: {e}", listener.addr);
                break;
            }
        }
    }
    listener.total.fetch_sub(1, Ordering::SeqCst);
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

/// Sends `reply` with the CORS headers added.
pub fn send(ctx: &ApiContext, incoming: Incoming, mut reply: Reply) {
    let origin = incoming.header("Origin");
    reply.headers.extend(cors_headers(ctx, origin.as_deref()));
    let head_only = incoming.method == "HEAD";
    let mut writer = incoming.request.into_writer();
    if let Err(e) = write_reply(&mut *writer, &reply, head_only) {
        log::debug!("cannot write a response: {e}");
    }
}

fn handle(ctx: &ApiContext, request: tiny_http::Request) {
    let method = request.method().as_str().to_ascii_uppercase();
    let url = request.url().to_string();
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
        return send(ctx, incoming, Reply::new(200, Vec::new()));
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
            return send(ctx, incoming, reply);
        }
        Err(why) => {
            log::debug!("bad request target {raw_path:?}: {why}");
            let mut reply = Reply::new(400, BAD_REQUEST_BODY.to_vec())
                .header("Content-Type", "text/plain; charset=utf-8");
            reply.close = true;
            return send(ctx, incoming, reply);
        }
    };
    if let Some(key) = keys_key(&path) {
        return super::keys::handle(ctx, incoming, key);
    }
    super::admin::handle(ctx, incoming, &path);
}
