//! Writing responses byte for byte as Go's net/http does (header names and order, Date,
//! Content-Length, chunked watch bodies), straight to the connection tiny_http hands over.
//! Owning the bytes keeps the wire identical to etcd's for clients and the differential test.

use crate::util::{clock, time};
use std::io::Write;

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

/// Room for the status line, `Date`, `Content-Length` and `Connection` around the headers.
const HEAD_FIXED_BYTES: usize = 128;

fn head_len(headers: &[(&'static str, String)]) -> usize {
    HEAD_FIXED_BYTES
        + headers
            .iter()
            .map(|(n, v)| n.len() + v.len() + 4)
            .sum::<usize>()
}

// Into `out`, which the caller sized for the whole response: a reply is built without
// regrowing its buffer (the copies showed in the profile of a loaded member).
fn write_head(out: &mut Vec<u8>, status: u16, headers: &[(&'static str, String)]) {
    // Writing to a Vec cannot fail.
    let _ = write!(out, "HTTP/1.1 {status} {}\r\n", reason(status));
    let mut write = |name: &str, value: &str| {
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    };
    // Go writes headers sorted by name (stable for repeated names); callers mostly add
    // them in that order already.
    if headers.is_sorted_by_key(|h| h.0) {
        headers.iter().for_each(|(n, v)| write(n, v));
    } else {
        let mut sorted: Vec<&(&'static str, String)> = headers.iter().collect();
        sorted.sort_by_key(|h| h.0);
        sorted.into_iter().for_each(|(n, v)| write(n, v));
    }
    out.extend_from_slice(b"Date: ");
    out.extend_from_slice(time::http_date(clock::now_unix_nanos() / 1_000_000_000).as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// Go's response buffer: a handler that writes more than this before returning gets a
/// chunked response instead of a Content-Length.
const GO_CHUNKING_BYTES: usize = 2048;

/// The bytes of `reply`; `head_only` for HEAD requests (same headers, no body).
pub fn reply_bytes(reply: &Reply, head_only: bool) -> Vec<u8> {
    let body = if head_only { 0 } else { reply.body.len() };
    let mut out = Vec::with_capacity(head_len(&reply.headers) + body + 32);
    if reply.body.len() > GO_CHUNKING_BYTES && !head_only {
        write_chunked_head(&mut out, reply.status, &reply.headers, reply.close);
        write_chunk(&mut out, &reply.body);
        out.extend_from_slice(LAST_CHUNK);
        return out;
    }
    write_head(&mut out, reply.status, &reply.headers);
    if reply.close {
        out.extend_from_slice(b"Connection: close\r\n");
    }
    // Go omits Content-Length on 204 and 1xx.
    if reply.status != 204 && !reply.no_length {
        let _ = write!(out, "Content-Length: {}\r\n", reply.body.len());
    }
    out.extend_from_slice(b"\r\n");
    if !head_only {
        out.extend_from_slice(&reply.body);
    }
    out
}

/// The head of a chunked response (a watch, or a body over Go's buffer).
pub fn chunked_head_bytes(status: u16, headers: &[(&'static str, String)], close: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(head_len(headers) + 32);
    write_chunked_head(&mut out, status, headers, close);
    out
}

fn write_chunked_head(
    out: &mut Vec<u8>,
    status: u16,
    headers: &[(&'static str, String)],
    close: bool,
) {
    write_head(out, status, headers);
    if close {
        out.extend_from_slice(b"Connection: close\r\n");
    }
    out.extend_from_slice(b"Transfer-Encoding: chunked\r\n\r\n");
}

/// One chunk (empty data gives nothing: an empty chunk would end the body).
pub fn chunk_bytes(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + 20);
    write_chunk(&mut out, data);
    out
}

fn write_chunk(out: &mut Vec<u8>, data: &[u8]) {
    if data.is_empty() {
        return;
    }
    let _ = write!(out, "{:x}\r\n", data.len());
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
}

/// The end of a chunked body.
pub const LAST_CHUNK: &[u8] = b"0\r\n\r\n";

#[cfg(test)]
mod tests {
    use super::*;

    fn text(bytes: &[u8]) -> String {
        // The Date line changes every second.
        String::from_utf8_lossy(bytes)
            .lines()
            .filter(|l| !l.starts_with("Date: "))
            .collect::<Vec<_>>()
            .join("\n")
    }

    #[test]
    fn headers_go_out_sorted_and_the_buffer_is_sized_once() {
        let body = vec![b'v'; 300];
        let reply = Reply::new(201, body.clone())
            .header("X-Raft-Term", "2")
            .header("Content-Type", "application/json")
            .header("X-Etcd-Index", "7");
        let bytes = reply_bytes(&reply, false);
        let want = format!(
            "HTTP/1.1 201 Created\nContent-Type: application/json\nX-Etcd-Index: 7\n\
             X-Raft-Term: 2\nContent-Length: 300\n\n{}",
            "v".repeat(300)
        );
        assert_eq!(text(&bytes), want);
        assert!(bytes.capacity() <= head_len(&reply.headers) + body.len() + 32);
        let head = reply_bytes(&reply, true);
        assert!(
            text(&head).ends_with("Content-Length: 300\n"),
            "{}",
            text(&head)
        );
    }

    #[test]
    fn a_body_over_go_buffer_is_chunked() {
        let mut reply = Reply::new(200, vec![b'a'; GO_CHUNKING_BYTES + 1]).header("A", "b");
        reply.close = true;
        let bytes = reply_bytes(&reply, false);
        let t = String::from_utf8_lossy(&bytes).into_owned();
        assert!(t.starts_with("HTTP/1.1 200 OK\r\nA: b\r\nDate: "), "{t}");
        assert!(t.contains("Connection: close\r\nTransfer-Encoding: chunked\r\n\r\n801\r\n"));
        assert!(t.ends_with("a\r\n0\r\n\r\n"));
        assert!(chunk_bytes(b"").is_empty());
    }
}
