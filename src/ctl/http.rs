//! One HTTP exchange with one endpoint, over `ureq` (plain HTTP, no TLS): the request
//! etcd's Go client would send, and its failures named the way Go names them.
//!
//! This module owns URL and form encoding (Go's `url.PathEscape`-like path escaping and
//! `url.Values.Encode`) and the mapping from `ureq` errors to [`HttpError`], whose `Display`
//! is the text etcdctl prints (`dial tcp 127.0.0.1:2379: connect: connection refused`). It
//! does not decide which endpoint to try next: that is [`super::client`].

use std::fmt;
use std::time::{Duration, Instant};

/// The largest response body read; etcd refuses values over 10 MiB, but a recursive `ls`
/// of a big tree can be larger than ureq's default 10 MB limit.
const BODY_BYTES_MAX: u64 = 1 << 30;

/// An HTTP method etcdctl uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    /// `GET`
    Get,
    /// `PUT`
    Put,
    /// `POST`
    Post,
    /// `DELETE`
    Delete,
}

impl Method {
    /// The method as written on the request line.
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Put => "PUT",
            Method::Post => "POST",
            Method::Delete => "DELETE",
        }
    }
}

/// A request relative to an endpoint: method, path (already escaped) with its query, and
/// the urlencoded form body, if the Go client sends one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    /// Method.
    pub method: Method,
    /// Path and query, e.g. `/v2/keys/a?recursive=false`, escaped.
    pub target: String,
    /// The body (urlencoded form, or JSON when `json`); `None` sends no body (GET) or an
    /// empty one (DELETE), as Go's client does.
    pub form: Option<String>,
    /// The body is JSON (the members API), not a form.
    pub json: bool,
}

impl Request {
    /// `GET target`.
    pub fn get(target: String) -> Request {
        Request {
            method: Method::Get,
            target,
            form: None,
            json: false,
        }
    }

    /// `DELETE target` with an empty body.
    pub fn delete(target: String) -> Request {
        Request {
            method: Method::Delete,
            target,
            form: None,
            json: false,
        }
    }

    /// `method target` with an urlencoded `form`.
    pub fn with_form(method: Method, target: String, form: String) -> Request {
        Request {
            method,
            target,
            form: Some(form),
            json: false,
        }
    }

    /// `method target` with a JSON body.
    pub fn with_json(method: Method, target: String, body: String) -> Request {
        Request {
            method,
            target,
            form: Some(body),
            json: true,
        }
    }

    /// The body's content type.
    fn content_type(&self) -> &'static str {
        if self.json {
            "application/json"
        } else {
            "application/x-www-form-urlencoded"
        }
    }
}

/// The parts of a response etcdctl looks at.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Response {
    /// HTTP status code.
    pub status: u16,
    /// The `X-Etcd-Index` header, as sent.
    pub etcd_index: Option<String>,
    /// The body.
    pub body: Vec<u8>,
}

/// How long one exchange may take.
#[derive(Clone, Copy, Debug, Default)]
pub struct Timeouts {
    /// Connecting (Go: the transport's dial timeout).
    pub connect: Option<Duration>,
    /// From sending the request to the end of the response headers (`--timeout`).
    pub header: Option<Duration>,
    /// The whole command's deadline (`--total-timeout`); `None` for watches.
    pub deadline: Option<Instant>,
}

/// Why one exchange failed, worded as Go's net/http and etcd's client word it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HttpError {
    /// Nothing listens on `addr` (`host:port`).
    Refused {
        /// `host:port` dialled.
        addr: String,
    },
    /// The peer at `addr` reset the connection (Go names the local address too, which
    /// ureq does not expose).
    Reset {
        /// `host:port` of the peer.
        addr: String,
    },
    /// Connecting to `addr` took longer than the dial timeout.
    ConnectTimeout {
        /// `host:port` dialled.
        addr: String,
    },
    /// The endpoint `endpoint` sent no response headers within `--timeout`.
    HeaderTimeout {
        /// The endpoint URL as given.
        endpoint: String,
    },
    /// The command's `--total-timeout` passed (Go: `context deadline exceeded`).
    Deadline,
    /// Anything else, already worded.
    Other(String),
}

impl HttpError {
    /// Whether etcdctl counts this as a connection error (its `isConnectionError`: dial and
    /// read errors, refused connections, timeouts of the network or of the context).
    pub fn is_connection_error(&self) -> bool {
        matches!(
            self,
            HttpError::Refused { .. }
                | HttpError::Reset { .. }
                | HttpError::ConnectTimeout { .. }
                | HttpError::Deadline
        )
    }
}

impl fmt::Display for HttpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HttpError::Refused { addr } => {
                write!(f, "dial tcp {addr}: connect: connection refused")
            }
            HttpError::Reset { addr } => {
                write!(f, "read tcp {addr}: read: connection reset by peer")
            }
            HttpError::ConnectTimeout { addr } => write!(f, "dial tcp {addr}: i/o timeout"),
            HttpError::HeaderTimeout { endpoint } => {
                write!(f, "client: endpoint {endpoint} exceeded header timeout")
            }
            HttpError::Deadline => f.write_str("context deadline exceeded"),
            HttpError::Other(s) => f.write_str(s),
        }
    }
}

/// An HTTP client for the whole command: one `ureq` agent (its connection pool keeps the
/// connection of a `watch --forever` open between events).
pub struct Http {
    agent: ureq::Agent,
}

impl Default for Http {
    fn default() -> Self {
        Http::new()
    }
}

impl Http {
    /// A client that returns every status as a response (etcd's errors are JSON bodies
    /// with 4xx/5xx statuses, which the caller decodes).
    pub fn new() -> Http {
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .user_agent(concat!("pikv-ctl/", env!("CARGO_PKG_VERSION")))
            .build()
            .new_agent();
        Http { agent }
    }

    /// Sends `req` to `endpoint` (`http://host:port`, no trailing slash) and reads the
    /// whole response.
    pub fn send(&self, endpoint: &str, req: &Request, t: Timeouts) -> Result<Response, HttpError> {
        // What Go's transport says of URLs it cannot send to (kept by client.rs, as etcdctl
        // keeps them, so the failure shows up in the same place).
        match endpoint.split_once(':') {
            Some((scheme, rest)) if scheme.eq_ignore_ascii_case("http") => {
                if !rest.starts_with("//") || rest.len() == 2 {
                    return Err(HttpError::Other("http: no Host in request URL".into()));
                }
            }
            Some((scheme, _)) => {
                return Err(HttpError::Other(format!(
                    "unsupported protocol scheme {scheme:?}"
                )))
            }
            None => return Err(HttpError::Other("unsupported protocol scheme \"\"".into())),
        }
        let url = format!("{endpoint}{}", req.target);
        let global = match t.deadline {
            Some(d) => match d.checked_duration_since(Instant::now()) {
                Some(left) if !left.is_zero() => Some(left),
                _ => return Err(HttpError::Deadline),
            },
            None => None,
        };
        let result = match (req.method, &req.form) {
            (Method::Get, _) => configure(self.agent.get(&url).config(), t, global)
                .build()
                .call(),
            (Method::Delete, _) => {
                let b = self
                    .agent
                    .delete(&url)
                    .header("Content-Type", "application/x-www-form-urlencoded")
                    .force_send_body();
                configure(b.config(), t, global).build().send("")
            }
            (Method::Put | Method::Post, form) => {
                let b = if req.method == Method::Put {
                    self.agent.put(&url)
                } else {
                    self.agent.post(&url)
                };
                let b = b.header("Content-Type", req.content_type());
                configure(b.config(), t, global)
                    .build()
                    .send(form.as_deref().unwrap_or(""))
            }
        };
        let mut resp = result.map_err(|e| map_error(e, endpoint, req.method, &url, "EOF"))?;
        let status = resp.status().as_u16();
        let etcd_index = resp
            .headers()
            .get("X-Etcd-Index")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body = resp
            .body_mut()
            .with_config()
            .limit(BODY_BYTES_MAX)
            .read_to_vec()
            // A body cut short: Go's io.ErrUnexpectedEOF.
            .map_err(|e| map_error(e, endpoint, req.method, &url, "unexpected EOF"))?;
        Ok(Response {
            status,
            etcd_index,
            body,
        })
    }
}

/// Applies `t` to one request's configuration.
fn configure<B>(
    c: ureq::config::ConfigBuilder<ureq::typestate::RequestScope<B>>,
    t: Timeouts,
    global: Option<Duration>,
) -> ureq::config::ConfigBuilder<ureq::typestate::RequestScope<B>> {
    c.timeout_connect(t.connect)
        .timeout_recv_response(t.header)
        .timeout_global(global)
}

/// `host:port` of `endpoint` as Go's dialer names it (port 80 when none is given).
fn dial_addr(endpoint: &str) -> String {
    let rest = endpoint.split_once("://").map_or(endpoint, |(_, r)| r);
    let hostport = rest.split('/').next().unwrap_or(rest);
    let has_port = match hostport.rfind(']') {
        Some(close) => hostport[close..].contains(':'),
        None => hostport.contains(':'),
    };
    if has_port {
        hostport.to_string()
    } else {
        format!("{hostport}:80")
    }
}

/// `eof` is what Go says when the peer closes the connection at this point: `EOF` before
/// the response, `unexpected EOF` in the middle of a body.
fn map_error(e: ureq::Error, endpoint: &str, method: Method, url: &str, eof: &str) -> HttpError {
    use std::io::ErrorKind;
    use ureq::Timeout;
    let addr = dial_addr(endpoint);
    match e {
        ureq::Error::Io(io) if io.kind() == ErrorKind::ConnectionRefused => {
            HttpError::Refused { addr }
        }
        ureq::Error::Io(io) if io.kind() == ErrorKind::ConnectionReset => HttpError::Reset { addr },
        ureq::Error::Io(io)
            if matches!(
                io.kind(),
                ErrorKind::UnexpectedEof | ErrorKind::ConnectionAborted | ErrorKind::BrokenPipe
            ) =>
        {
            HttpError::Other(eof.to_string())
        }
        ureq::Error::ConnectionFailed => HttpError::Refused { addr },
        ureq::Error::Timeout(Timeout::Connect | Timeout::Resolve) => {
            HttpError::ConnectTimeout { addr }
        }
        ureq::Error::Timeout(Timeout::RecvResponse | Timeout::SendRequest | Timeout::SendBody) => {
            HttpError::HeaderTimeout {
                endpoint: endpoint.to_string(),
            }
        }
        ureq::Error::Timeout(_) => HttpError::Deadline,
        ureq::Error::HostNotFound => {
            let host = addr.rsplit_once(':').map_or(addr.as_str(), |(h, _)| h);
            HttpError::Other(format!("dial tcp: lookup {host}: no such host"))
        }
        other => {
            let m = method.as_str();
            let m = format!("{}{}", &m[..1], m[1..].to_ascii_lowercase());
            HttpError::Other(format!("{m} {url:?}: {other}"))
        }
    }
}

/// Escapes a key path as Go's `url.URL.EscapedPath` does: letters, digits, `-_.~` and
/// `$&+,/:;=@` stay, every other byte becomes `%XX`.
pub fn escape_path(p: &str) -> String {
    let mut out = String::with_capacity(p.len());
    for &b in p.as_bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~$&+,/:;=@".contains(&b) {
            out.push(b as char);
        } else {
            push_pct(&mut out, b);
        }
    }
    out
}

/// Go's `url.QueryEscape`: letters, digits and `-_.~` stay, space becomes `+`, every other
/// byte `%XX`.
pub fn query_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for &b in s.as_bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else if b == b' ' {
            out.push('+');
        } else {
            push_pct(&mut out, b);
        }
    }
    out
}

fn push_pct(out: &mut String, b: u8) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    out.push('%');
    out.push(HEX[usize::from(b >> 4)] as char);
    out.push(HEX[usize::from(b & 15)] as char);
}

/// Go's `url.Values.Encode`: `k=v` pairs sorted by key, joined by `&`.
pub fn encode_values(pairs: &[(&str, String)]) -> String {
    let mut sorted: Vec<&(&str, String)> = pairs.iter().collect();
    sorted.sort_by(|a, b| a.0.cmp(b.0));
    sorted
        .iter()
        .map(|(k, v)| format!("{}={}", query_escape(k), query_escape(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// etcd's `pathutil.CanonicalURLPath`: a leading `/`, `path.Clean` (no empty, `.` or `..`
/// segments), and the trailing slash kept.
pub fn canonical_path(p: &str) -> String {
    let mut segs: Vec<&str> = Vec::new();
    for s in p.split('/') {
        match s {
            "" | "." => {}
            ".." => {
                segs.pop();
            }
            s => segs.push(s),
        }
    }
    let mut out = format!("/{}", segs.join("/"));
    if p.ends_with('/') && out != "/" {
        out.push('/');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_sorted_and_escaped_as_go_does() {
        assert_eq!(
            encode_values(&[("value", "a b&c".into()), ("ttl", "5".into())]),
            "ttl=5&value=a+b%26c"
        );
        assert_eq!(query_escape("/x~y_z-1."), "%2Fx~y_z-1.");
    }

    #[test]
    fn paths_are_cleaned_and_escaped_as_go_does() {
        assert_eq!(canonical_path("//x/"), "/x/");
        assert_eq!(canonical_path("a/./b/../c"), "/a/c");
        assert_eq!(canonical_path(""), "/");
        assert_eq!(escape_path("/a b/ä?#%"), "/a%20b/%C3%A4%3F%23%25");
        assert_eq!(escape_path("/$&+,:;=@"), "/$&+,:;=@");
    }

    #[test]
    fn dial_address_has_a_port() {
        assert_eq!(dial_addr("http://127.0.0.1:2379"), "127.0.0.1:2379");
        assert_eq!(dial_addr("http://node-1"), "node-1:80");
        assert_eq!(dial_addr("http://[::1]:2379/x"), "[::1]:2379");
        assert_eq!(dial_addr("http://[::1]"), "[::1]:80");
    }
}
