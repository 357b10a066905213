//! A minimal raw HTTP/1.1 client over `std::net::TcpStream`.
//!
//! It sends exactly the bytes asked for (the request target is not cleaned, so `//` and `..`
//! reach the server), and returns the status, the headers in wire order with their names as
//! sent, and the body bytes (chunked bodies are decoded, and `chunked` records that they were).
//! `start` returns once the status line and headers have arrived, so a test can see a live
//! watch's headers before its event, then read chunks one at a time.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// How long any single request may take before the test fails (a deadline, not an assertion).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Clone, Debug)]
pub struct Response {
    pub status: u16,
    pub reason: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// The body came with `Transfer-Encoding: chunked`.
    pub chunked: bool,
    /// The raw chunks of a chunked body, in order (a watch event is one chunk).
    pub chunks: Vec<Vec<u8>>,
}

impl Response {
    /// First header with this name, compared case-insensitively.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "response body is not JSON ({e}): {} {}\n{}",
                self.status,
                self.reason,
                self.text()
            )
        })
    }
    /// `X-Etcd-Index` as a number (panics when absent).
    pub fn etcd_index(&self) -> u64 {
        self.header("X-Etcd-Index")
            .unwrap_or_else(|| panic!("no X-Etcd-Index in {self:?}"))
            .parse()
            .expect("X-Etcd-Index is decimal")
    }
    /// `node.modifiedIndex` of a keys response body.
    pub fn modified_index(&self) -> u64 {
        self.json()["node"]["modifiedIndex"]
            .as_u64()
            .unwrap_or_else(|| panic!("no node.modifiedIndex in {}", self.text()))
    }
    /// Status line, headers and body as text, for failure messages.
    pub fn dump(&self) -> String {
        let mut s = format!("HTTP/1.1 {} {}\n", self.status, self.reason);
        for (n, v) in &self.headers {
            s.push_str(&format!("{n}: {v}\n"));
        }
        s.push('\n');
        s.push_str(&String::from_utf8_lossy(&self.body));
        s
    }
}

/// Percent-encodes for `application/x-www-form-urlencoded` (space → `+`).
pub fn urlencode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// `a=1&b=2` with both names and values encoded.
pub fn form(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", urlencode(k), urlencode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

pub const FORM: &str = "application/x-www-form-urlencoded";

/// A request whose status line and headers have been read; the body has not.
pub struct Pending {
    reader: BufReader<TcpStream>,
    pub status: u16,
    pub reason: String,
    pub headers: Vec<(String, String)>,
    method: String,
    chunks: Vec<Vec<u8>>,
    done: bool,
}

/// The loopback address every server listens on unless a test places it elsewhere.
pub const LOOPBACK: &str = "127.0.0.1";

fn connect(host: &str, port: u16, timeout: Duration) -> std::io::Result<TcpStream> {
    let ip: std::net::IpAddr = host
        .parse()
        .map_err(|_| bad(&format!("not an IP address: {host:?}")))?;
    let addr = std::net::SocketAddr::new(ip, port);
    let s = TcpStream::connect_timeout(&addr, timeout.min(Duration::from_secs(5)))?;
    s.set_read_timeout(Some(timeout))?;
    s.set_write_timeout(Some(timeout))?;
    s.set_nodelay(true)?;
    Ok(s)
}

/// Sends a request and reads up to the end of the response headers.
/// `headers` are sent as given after `Host`; `Content-Length` is added when `body` is not
/// empty. Large bodies are written from a helper thread so that a server that answers early
/// (the 10 MiB limit) is still heard.
pub fn start(
    port: u16,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    timeout: Duration,
) -> std::io::Result<Pending> {
    start_at(LOOPBACK, port, method, target, headers, body, timeout)
}

/// [`start`] to a server at `host` (an IP address, e.g. a member in a network namespace).
pub fn start_at(
    host: &str,
    port: u16,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    timeout: Duration,
) -> std::io::Result<Pending> {
    let mut stream = connect(host, port, timeout)?;
    let mut head = format!("{method} {target} HTTP/1.1\r\nHost: {host}:{port}\r\n");
    for (n, v) in headers {
        head.push_str(&format!("{n}: {v}\r\n"));
    }
    if !body.is_empty() {
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes())?;
    if body.len() > (1 << 20) {
        let mut w = stream.try_clone()?;
        let body = body.to_vec();
        std::thread::spawn(move || {
            let _ = w.write_all(&body);
        });
    } else if !body.is_empty() {
        stream.write_all(body)?;
    }
    let mut reader = BufReader::new(stream);
    loop {
        let line = read_line(&mut reader)?;
        let mut parts = line.splitn(3, ' ');
        let _version = parts.next().unwrap_or("");
        let status: u16 = parts
            .next()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| bad(&format!("bad status line {line:?}")))?;
        let reason = parts.next().unwrap_or("").to_string();
        let mut hdrs = Vec::new();
        loop {
            let l = read_line(&mut reader)?;
            if l.is_empty() {
                break;
            }
            let (n, v) = l
                .split_once(':')
                .ok_or_else(|| bad(&format!("bad header line {l:?}")))?;
            hdrs.push((n.to_string(), v.trim().to_string()));
        }
        if (100..200).contains(&status) {
            continue; // 100 Continue and friends: the real response follows
        }
        return Ok(Pending {
            reader,
            status,
            reason,
            headers: hdrs,
            method: method.to_string(),
            chunks: Vec::new(),
            done: false,
        });
    }
}

fn bad(msg: &str) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, msg.to_string())
}

fn read_line(r: &mut BufReader<TcpStream>) -> std::io::Result<String> {
    let mut buf = Vec::new();
    let n = r.read_until(b'\n', &mut buf)?;
    if n == 0 {
        return Err(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "connection closed",
        ));
    }
    while buf.last() == Some(&b'\n') || buf.last() == Some(&b'\r') {
        buf.pop();
    }
    Ok(String::from_utf8_lossy(&buf).into_owned())
}

impl Pending {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    pub fn is_chunked(&self) -> bool {
        self.header("Transfer-Encoding")
            .map(|v| v.eq_ignore_ascii_case("chunked"))
            .unwrap_or(false)
    }
    fn set_deadline(&mut self, deadline: Instant) -> std::io::Result<()> {
        let left = deadline
            .saturating_duration_since(Instant::now())
            .max(Duration::from_millis(1));
        self.reader.get_ref().set_read_timeout(Some(left))
    }
    /// Reads the next chunk of a chunked body; `None` at the terminating chunk.
    pub fn next_chunk(&mut self, deadline: Instant) -> std::io::Result<Option<Vec<u8>>> {
        if self.done {
            return Ok(None);
        }
        self.set_deadline(deadline)?;
        let line = read_line(&mut self.reader)?;
        let size_text = line.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size_text, 16)
            .map_err(|_| bad(&format!("bad chunk size line {line:?}")))?;
        if size == 0 {
            // trailers until an empty line
            loop {
                if read_line(&mut self.reader)?.is_empty() {
                    break;
                }
            }
            self.done = true;
            return Ok(None);
        }
        let mut data = vec![0u8; size];
        self.reader.read_exact(&mut data)?;
        let mut crlf = [0u8; 2];
        self.reader.read_exact(&mut crlf)?;
        if &crlf != b"\r\n" {
            return Err(bad("chunk not followed by CRLF"));
        }
        self.chunks.push(data.clone());
        Ok(Some(data))
    }
    /// Reads the rest of the body (by chunked framing, Content-Length, or to EOF).
    pub fn finish(mut self, deadline: Instant) -> std::io::Result<Response> {
        let no_body = self.method == "HEAD"
            || self.status == 204
            || self.status == 304
            || (100..200).contains(&self.status);
        let chunked = self.is_chunked();
        let mut body = Vec::new();
        if no_body {
        } else if chunked {
            for c in &self.chunks {
                body.extend_from_slice(c);
            }
            while let Some(c) = self.next_chunk(deadline)? {
                body.extend_from_slice(&c);
            }
        } else if let Some(len) = self.header("Content-Length") {
            let len: usize = len.parse().map_err(|_| bad("bad Content-Length"))?;
            self.set_deadline(deadline)?;
            body = vec![0u8; len];
            self.reader.read_exact(&mut body)?;
        } else {
            self.set_deadline(deadline)?;
            self.reader.read_to_end(&mut body)?;
        }
        Ok(Response {
            status: self.status,
            reason: self.reason,
            headers: self.headers,
            body,
            chunked,
            chunks: self.chunks,
        })
    }
}

/// One complete request; panics (naming the request) on any transport error.
pub fn request(
    port: u16,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Response {
    try_request(port, method, target, headers, body, DEFAULT_TIMEOUT)
        .unwrap_or_else(|e| panic!("{method} {target} on port {port}: {e}"))
}

pub fn try_request(
    port: u16,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    timeout: Duration,
) -> std::io::Result<Response> {
    try_request_at(LOOPBACK, port, method, target, headers, body, timeout)
}

/// [`try_request`] to a server at `host` (an IP address).
pub fn try_request_at(
    host: &str,
    port: u16,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    timeout: Duration,
) -> std::io::Result<Response> {
    let deadline = Instant::now() + timeout;
    start_at(host, port, method, target, headers, body, timeout)?.finish(deadline)
}

/// [`request`] to a server at `host`: panics (naming the request) on any transport error.
pub fn request_at(
    host: &str,
    port: u16,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Response {
    try_request_at(host, port, method, target, headers, body, DEFAULT_TIMEOUT)
        .unwrap_or_else(|e| panic!("{method} {target} on {host}:{port}: {e}"))
}

pub fn get(port: u16, target: &str) -> Response {
    request(port, "GET", target, &[], b"")
}

pub fn delete(port: u16, target: &str) -> Response {
    request(port, "DELETE", target, &[], b"")
}

/// PUT with an urlencoded form body (as curl -d does).
pub fn put(port: u16, target: &str, form_body: &str) -> Response {
    request(
        port,
        "PUT",
        target,
        &[("Content-Type", FORM)],
        form_body.as_bytes(),
    )
}

pub fn post(port: u16, target: &str, form_body: &str) -> Response {
    request(
        port,
        "POST",
        target,
        &[("Content-Type", FORM)],
        form_body.as_bytes(),
    )
}
