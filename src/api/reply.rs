//! Writing responses byte for byte as Go's net/http does (header names and order, Date,
//! Content-Length, chunked watch bodies), straight to the connection tiny_http hands over.
//! Owning the bytes keeps the wire identical to etcd's for clients and the differential test.

use crate::util::{clock, time};

/// A complete response.
#[derive(Debug, Clone)]
pub struct Reply {
    /// HTTP status code.
    pub status: u16,
    /// Headers in the order Go writes them (before `Date` and `Content-Length`).
    pub headers: Vec<(&'static str, String)>,
    /// The body.
    pub body: Vec<u8>,
    /// Close the connection after this response.
    pub close: bool,
    /// Send no Content-Length (Go's HEAD response of a handler that wrote no body).
    pub no_length: bool,
}

impl Reply {
    /// A response with no headers yet.
    pub fn new(status: u16, body: Vec<u8>) -> Reply {
        Reply {
            status,
            headers: Vec::new(),
            body,
            close: false,
            no_length: false,
        }
    }

    /// Adds a header.
    pub fn header(mut self, name: &'static str, value: impl Into<String>) -> Reply {
        self.headers.push((name, value.into()));
        self
    }

    /// A Go `http.Error`-style text response.
    pub fn text(status: u16, body: &str) -> Reply {
        Reply::new(status, body.as_bytes().to_vec())
            .header("Content-Type", "text/plain; charset=utf-8")
            .header("X-Content-Type-Options", "nosniff")
    }
}

/// The reason phrase Go uses for a status.
pub fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        301 => "Moved Permanently",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        409 => "Conflict",
        410 => "Gone",
        412 => "Precondition Failed",
        413 => "Request Entity Too Large",
        415 => "Unsupported Media Type",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Unknown",
    }
}

fn sorted_headers(headers: &[(&'static str, String)]) -> Vec<(&'static str, String)> {
    let mut h = headers.to_vec();
    // Go writes headers sorted by name (stable for repeated names).
    h.sort_by(|a, b| a.0.cmp(b.0));
    h
}

fn head_bytes(status: u16, headers: &[(&'static str, String)]) -> Vec<u8> {
    let mut out = format!("HTTP/1.1 {status} {}\r\n", reason(status)).into_bytes();
    for (name, value) in sorted_headers(headers) {
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"Date: ");
    out.extend_from_slice(time::http_date(clock::now_unix_nanos() / 1_000_000_000).as_bytes());
    out.extend_from_slice(b"\r\n");
    out
}

/// Go's response buffer: a handler that writes more than this before returning gets a
/// chunked response instead of a Content-Length.
const GO_CHUNKING_BYTES: usize = 2048;

/// The bytes of `reply`; `head_only` for HEAD requests (same headers, no body).
pub fn reply_bytes(reply: &Reply, head_only: bool) -> Vec<u8> {
    if reply.body.len() > GO_CHUNKING_BYTES && !head_only {
        let mut out = chunked_head_bytes(reply.status, &reply.headers, reply.close);
        out.extend_from_slice(&chunk_bytes(&reply.body));
        out.extend_from_slice(LAST_CHUNK);
        return out;
    }
    let mut out = head_bytes(reply.status, &reply.headers);
    if reply.close {
        out.extend_from_slice(b"Connection: close\r\n");
    }
    // Go omits Content-Length on 204 and 1xx.
    if reply.status != 204 && !reply.no_length {
        out.extend_from_slice(format!("Content-Length: {}\r\n", reply.body.len()).as_bytes());
    }
    out.extend_from_slice(b"\r\n");
    if !head_only {
        out.extend_from_slice(&reply.body);
    }
    out
}

/// The head of a chunked response (a watch, or a body over Go's buffer).
pub fn chunked_head_bytes(status: u16, headers: &[(&'static str, String)], close: bool) -> Vec<u8> {
    let mut out = head_bytes(status, headers);
    if close {
        out.extend_from_slice(b"Connection: close\r\n");
    }
    out.extend_from_slice(b"Transfer-Encoding: chunked\r\n\r\n");
    out
}

/// One chunk (empty data gives nothing: an empty chunk would end the body).
pub fn chunk_bytes(data: &[u8]) -> Vec<u8> {
    if data.is_empty() {
        return Vec::new();
    }
    let mut out = format!("{:x}\r\n", data.len()).into_bytes();
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
    out
}

/// The end of a chunked body.
pub const LAST_CHUNK: &[u8] = b"0\r\n\r\n";
