//! A small HTTP/1.1 server: one thread per open connection, requests handled inline on that
//! thread, keep-alive, Content-Length and chunked request bodies, `Expect: 100-continue`.
//!
//! It replaces tiny_http, whose task pool (0.12) gives a burst of new connections only as
//! many threads as were idle at that moment: 40 keep-alive clients connecting at once left
//! 36 of them unanswered until others disconnected (measured). Owning the connection loop
//! also removes a thread hop per request and lets a parked watch notice a client that left.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::time::Duration;

/// Go's default limit on the request line and headers (1 MiB, plus its 4 KiB slack).
const HEADER_BYTES_MAX: usize = (1 << 20) + 4096;
/// Bytes of an unread request body drained to keep the connection usable (Go's value).
const DRAIN_BYTES_MAX: u64 = 256 * 1024;
/// Stack of connection threads: handlers need little, and many connections may be open.
const CONN_STACK_BYTES: usize = 256 * 1024;
/// How often a connection with a parked watch checks whether its client has gone.
const PARKED_CHECK: Duration = Duration::from_secs(2);

/// One request's head.
#[derive(Debug, Clone)]
pub struct RequestHead {
    /// Method as sent.
    pub method: String,
    /// Request target (path and query) as sent; bytes that are not UTF-8 become U+FFFD.
    pub target: String,
    /// HTTP/1.x minor version.
    pub minor: u8,
    /// Headers in order.
    pub headers: Vec<(String, String)>,
}

impl RequestHead {
    /// The first value of a header (names compare case-insensitively).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Why a request head could not be read.
#[derive(Debug)]
pub enum HeadError {
    /// The connection closed (cleanly, between requests).
    Closed,
    /// Headers over the limit (431).
    TooLarge,
    /// Not HTTP (400).
    Malformed(String),
    /// The socket failed.
    Io(io::Error),
}

/// Reads a request head; `Closed` on EOF before any byte.
pub fn read_head(reader: &mut impl BufRead) -> Result<RequestHead, HeadError> {
    let mut lines: Vec<String> = Vec::new();
    let mut total = 0usize;
    loop {
        let mut line = Vec::new();
        let n = reader
            .by_ref()
            .take((HEADER_BYTES_MAX - total + 1) as u64)
            .read_until(b'\n', &mut line)
            .map_err(HeadError::Io)?;
        if n == 0 {
            return Err(if lines.is_empty() && total == 0 {
                HeadError::Closed
            } else {
                HeadError::Malformed("connection closed inside the request head".into())
            });
        }
        total += n;
        if total > HEADER_BYTES_MAX {
            return Err(HeadError::TooLarge);
        }
        if !line.ends_with(b"\n") {
            return Err(HeadError::Malformed("unterminated header line".into()));
        }
        while matches!(line.last(), Some(b'\n' | b'\r')) {
            line.pop();
        }
        if line.is_empty() {
            // Leading empty lines before a request line are allowed (RFC 7230 §3.5).
            if lines.is_empty() {
                continue;
            }
            break;
        }
        // Go accepts any bytes >= 0x80 in the request target and in header values; bytes
        // that are not UTF-8 become U+FFFD, as a `%FF` escape in the path does (api::path).
        lines.push(String::from_utf8_lossy(&line).into_owned());
    }
    parse_head(&lines)
}

fn parse_head(lines: &[String]) -> Result<RequestHead, HeadError> {
    let bad = |why: &str| HeadError::Malformed(why.to_string());
    let first = lines.first().ok_or_else(|| bad("empty request"))?;
    let mut parts = first.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(bad("malformed request line"));
    };
    let minor = match version {
        "HTTP/1.1" => 1,
        "HTTP/1.0" => 0,
        _ => return Err(bad("unsupported HTTP version")),
    };
    if method.is_empty() || !method.bytes().all(|b| b.is_ascii_graphic()) || target.is_empty() {
        return Err(bad("malformed request line"));
    }
    let mut headers = Vec::with_capacity(lines.len() - 1);
    for line in &lines[1..] {
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| bad("header without a colon"))?;
        if name.is_empty() || name.bytes().any(|b| b.is_ascii_whitespace()) {
            return Err(bad("malformed header name"));
        }
        headers.push((name.to_string(), value.trim().to_string()));
    }
    Ok(RequestHead {
        method: method.to_string(),
        target: target.to_string(),
        minor,
        headers,
    })
}

/// How the request body is framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    /// This many bytes remain.
    Length(u64),
    /// Chunked: bytes left in the current chunk, or `None` before a size line.
    Chunked(Option<u64>),
    /// Nothing (more) to read.
    Done,
}

/// The connection a handler answers on, and its request's body.
pub struct Exchange<'c> {
    /// The request head.
    pub head: RequestHead,
    reader: &'c mut BufReader<TcpStream>,
    writer: &'c mut TcpStream,
    framing: Framing,
    expect_continue: bool,
    /// The handler asked to close the connection after its response.
    pub close: bool,
    parked: Option<Parked>,
}

/// A watch parked on this connection: the connection waits for `done`, and calls `cancel`
/// when the client leaves first.
pub struct Parked {
    /// Signalled when the watch response is complete.
    pub done: Receiver<()>,
    /// Removes the watcher from the hub.
    pub cancel: Box<dyn FnOnce() + Send>,
}

impl<'c> Exchange<'c> {
    /// Reads up to `limit` bytes of the body (sending `100 Continue` first if the client
    /// waits for it). More than `limit` available shows as a result longer than `limit`
    /// only up to `limit + 1` bytes.
    pub fn read_body(&mut self, limit: usize) -> io::Result<Vec<u8>> {
        if self.expect_continue && self.framing != Framing::Done {
            self.expect_continue = false;
            self.writer.write_all(b"HTTP/1.1 100 Continue\r\n\r\n")?;
        }
        let mut out = Vec::new();
        let mut buf = vec![0u8; 16 * 1024];
        while out.len() <= limit {
            let want = (limit + 1 - out.len()).min(buf.len());
            let n = self.read_some(&mut buf[..want])?;
            if n == 0 {
                break;
            }
            out.extend_from_slice(&buf[..n]);
        }
        Ok(out)
    }

    fn read_some(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            match self.framing {
                Framing::Done => return Ok(0),
                Framing::Length(0) => {
                    self.framing = Framing::Done;
                    return Ok(0);
                }
                Framing::Length(left) => {
                    let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
                    let n = self.reader.read(&mut buf[..want])?;
                    if n == 0 {
                        return Err(io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            "body shorter than Content-Length",
                        ));
                    }
                    self.framing = Framing::Length(left - n as u64);
                    return Ok(n);
                }
                Framing::Chunked(None) => {
                    let size = read_chunk_size(self.reader)?;
                    if size == 0 {
                        skip_trailers(self.reader)?;
                        self.framing = Framing::Done;
                        return Ok(0);
                    }
                    self.framing = Framing::Chunked(Some(size));
                }
                Framing::Chunked(Some(0)) => {
                    let mut crlf = [0u8; 2];
                    self.reader.read_exact(&mut crlf)?;
                    if &crlf != b"\r\n" {
                        return Err(io::Error::new(
                            io::ErrorKind::InvalidData,
                            "malformed chunk end",
                        ));
                    }
                    self.framing = Framing::Chunked(None);
                }
                Framing::Chunked(Some(left)) => {
                    let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
                    let n = self.reader.read(&mut buf[..want])?;
                    if n == 0 {
                        return Err(io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            "connection closed inside a chunk",
                        ));
                    }
                    self.framing = Framing::Chunked(Some(left - n as u64));
                    return Ok(n);
                }
            }
        }
    }

    /// Where the response goes.
    pub fn writer(&mut self) -> &mut TcpStream {
        self.writer
    }

    /// An owned handle on the connection, for a response completed later (a parked watch).
    pub fn clone_stream(&self) -> io::Result<TcpStream> {
        self.writer.try_clone()
    }

    /// Hands the connection to a parked watch.
    pub fn park(&mut self, parked: Parked) {
        self.parked = Some(parked);
    }

    // Skips what the handler left of the body, so the next request can be read; gives up
    // (closing) past Go's drain limit or when the client still waits for 100 Continue.
    fn drain(&mut self) -> bool {
        if self.framing == Framing::Done {
            return true;
        }
        if self.expect_continue {
            return false;
        }
        let mut left = DRAIN_BYTES_MAX;
        let mut buf = vec![0u8; 8192];
        while left > 0 {
            match self.read_some(&mut buf) {
                Ok(0) => return true,
                Ok(n) => left = left.saturating_sub(n as u64),
                Err(_) => return false,
            }
        }
        false
    }
}

fn read_chunk_size(reader: &mut impl BufRead) -> io::Result<u64> {
    let mut line = Vec::new();
    reader.by_ref().take(4096).read_until(b'\n', &mut line)?;
    let text = String::from_utf8_lossy(&line);
    let size = text.trim().split(';').next().unwrap_or("").trim();
    u64::from_str_radix(size, 16)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "malformed chunk size"))
}

fn skip_trailers(reader: &mut impl BufRead) -> io::Result<()> {
    loop {
        let mut line = Vec::new();
        let n = reader.by_ref().take(8192).read_until(b'\n', &mut line)?;
        if n == 0 || line == b"\r\n" || line == b"\n" {
            return Ok(());
        }
    }
}

fn framing_of(head: &RequestHead) -> Result<Framing, String> {
    if let Some(te) = head.header("Transfer-Encoding") {
        if te.eq_ignore_ascii_case("chunked") {
            return Ok(Framing::Chunked(None));
        }
        return Err(format!("unsupported transfer encoding: {te:?}"));
    }
    match head.header("Content-Length") {
        Some(v) => v
            .trim()
            .parse::<u64>()
            .map(Framing::Length)
            .map_err(|_| format!("bad Content-Length {v:?}")),
        None => Ok(Framing::Done),
    }
}

fn keep_alive(head: &RequestHead) -> bool {
    let conn = head.header("Connection").unwrap_or("");
    let has = |tok: &str| conn.split(',').any(|t| t.trim().eq_ignore_ascii_case(tok));
    if head.minor == 0 {
        has("keep-alive")
    } else {
        !has("close")
    }
}

/// A request handler: answers one exchange.
pub type Handler = dyn Fn(&mut Exchange<'_>) + Send + Sync;

/// Accepts connections on `listener`, one thread each, until the process ends.
pub fn serve(
    listener: TcpListener,
    handler: Arc<Handler>,
    max_connections: usize,
) -> io::Result<()> {
    let addr = listener.local_addr()?;
    let open = Arc::new(AtomicUsize::new(0));
    std::thread::Builder::new()
        .name(format!("accept-{addr}"))
        .stack_size(128 * 1024)
        .spawn(move || accept_loop(listener, addr, handler, open, max_connections))?;
    Ok(())
}

fn accept_loop(
    listener: TcpListener,
    addr: SocketAddr,
    handler: Arc<Handler>,
    open: Arc<AtomicUsize>,
    max: usize,
) {
    for conn in listener.incoming() {
        let stream = match conn {
            Ok(s) => s,
            Err(e) => {
                log::warn!("accept on {addr} failed: {e}");
                std::thread::yield_now();
                continue;
            }
        };
        if open.load(Ordering::SeqCst) >= max {
            log::warn!("{addr}: {max} connections open, refusing another");
            let mut s = stream;
            let _ = s.write_all(b"HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nContent-Length: 0\r\n\r\n");
            continue;
        }
        open.fetch_add(1, Ordering::SeqCst);
        let (h, o) = (Arc::clone(&handler), Arc::clone(&open));
        let spawned = std::thread::Builder::new()
            .name("http".into())
            .stack_size(CONN_STACK_BYTES)
            .spawn(move || {
                if let Err(e) = serve_connection(stream, &*h) {
                    log::debug!("connection ended: {e}");
                }
                o.fetch_sub(1, Ordering::SeqCst);
            });
        if let Err(e) = spawned {
            open.fetch_sub(1, Ordering::SeqCst);
            log::error!("cannot start a connection thread: {e}");
        }
    }
}

fn serve_connection(stream: TcpStream, handler: &Handler) -> io::Result<()> {
    stream.set_nodelay(true)?;
    let mut writer = stream.try_clone()?;
    let mut reader = BufReader::with_capacity(4 * 1024, stream);
    loop {
        let head = match read_head(&mut reader) {
            Ok(h) => h,
            Err(HeadError::Closed) => return Ok(()),
            Err(HeadError::Io(e)) => return Err(e),
            Err(HeadError::TooLarge) => {
                let _ = writer.write_all(b"HTTP/1.1 431 Request Header Fields Too Large\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n\r\n431 Request Header Fields Too Large");
                return Ok(());
            }
            Err(HeadError::Malformed(why)) => {
                log::debug!("malformed request: {why}");
                let _ = writer.write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n\r\n400 Bad Request");
                return Ok(());
            }
        };
        let framing = match framing_of(&head) {
            Ok(f) => f,
            Err(why) => {
                log::debug!("malformed request: {why}");
                let _ = writer.write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n\r\n400 Bad Request");
                return Ok(());
            }
        };
        let expect_continue = head
            .header("Expect")
            .is_some_and(|v| v.eq_ignore_ascii_case("100-continue"));
        let mut keep = keep_alive(&head);
        let mut exchange = Exchange {
            head,
            reader: &mut reader,
            writer: &mut writer,
            framing,
            expect_continue,
            close: false,
            parked: None,
        };
        handler(&mut exchange);
        keep &= !exchange.close && exchange.drain();
        if let Some(parked) = exchange.parked.take() {
            if !wait_parked(parked, &reader) {
                return Ok(());
            }
        }
        if !keep {
            return Ok(());
        }
    }
}

// Waits for a parked watch to complete; false when the client left first (the watch is
// then cancelled, so the hub's watcher count stays exact).
fn wait_parked(parked: Parked, reader: &BufReader<TcpStream>) -> bool {
    loop {
        match parked.done.recv_timeout(PARKED_CHECK) {
            Ok(()) => return true,
            Err(RecvTimeoutError::Disconnected) => return false,
            Err(RecvTimeoutError::Timeout) => {
                if reader.buffer().is_empty() && peer_closed(reader.get_ref()) {
                    (parked.cancel)();
                    return false;
                }
            }
        }
    }
}

#[allow(unsafe_code)]
fn peer_closed(stream: &TcpStream) -> bool {
    use std::os::fd::AsRawFd;
    let mut byte = [0u8; 1];
    // SAFETY: a one-byte buffer we own; MSG_PEEK|MSG_DONTWAIT neither consumes data nor
    // blocks, and leaves the socket's flags alone (a watch delivery may be writing on it).
    let n = unsafe {
        libc::recv(
            stream.as_raw_fd(),
            byte.as_mut_ptr().cast(),
            1,
            libc::MSG_PEEK | libc::MSG_DONTWAIT,
        )
    };
    if n == 0 {
        return true;
    }
    if n < 0 {
        let e = io::Error::last_os_error();
        return !matches!(
            e.kind(),
            io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
        );
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heads_parse_and_bad_ones_are_refused() {
        let mut r = &b"\r\nPUT /v2/keys/a?x=1 HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\n"[..];
        let head = read_head(&mut r).unwrap();
        assert_eq!(
            (head.method.as_str(), head.target.as_str(), head.minor),
            ("PUT", "/v2/keys/a?x=1", 1)
        );
        assert_eq!(head.header("content-length"), Some("3"));
        for bad in [
            &b"GARBAGE\r\n\r\n"[..],
            b"GET / HTTP/2\r\n\r\n",
            b"GET / HTTP/1.1\r\nNoColon\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: x",
        ] {
            assert!(
                matches!(read_head(&mut &bad[..]), Err(HeadError::Malformed(_))),
                "{bad:?}"
            );
        }
        assert!(matches!(read_head(&mut &b""[..]), Err(HeadError::Closed)));
        let head =
            read_head(&mut &b"GET /a\xff?x=\xfe HTTP/1.1\r\nX: \xc3\x28\r\n\r\n"[..]).unwrap();
        assert_eq!(head.target, "/a\u{FFFD}?x=\u{FFFD}");
        assert_eq!(head.header("x"), Some("\u{FFFD}("));
        let mut huge = b"GET / HTTP/1.1\r\nX: ".to_vec();
        huge.resize(HEADER_BYTES_MAX + 10, b'a');
        assert!(matches!(
            read_head(&mut &huge[..]),
            Err(HeadError::TooLarge)
        ));
    }

    #[test]
    fn keep_alive_follows_version_and_connection_header() {
        let head = |minor, conn: Option<&str>| RequestHead {
            method: "GET".into(),
            target: "/".into(),
            minor,
            headers: conn
                .map(|c| ("Connection".to_string(), c.to_string()))
                .into_iter()
                .collect(),
        };
        assert!(keep_alive(&head(1, None)));
        assert!(!keep_alive(&head(1, Some("close"))));
        assert!(!keep_alive(&head(0, None)));
        assert!(keep_alive(&head(0, Some("Keep-Alive"))));
    }
}
