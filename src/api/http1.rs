//! A small HTTP/1.1 server on smol: every client connection is a task on a small executor
//! (no thread per connection), requests are handled in order on their connection with
//! keep-alive, Content-Length and chunked request bodies, `Expect: 100-continue`, and Go's
//! header limits. A streaming response (a parked watch) takes its chunks from a channel and
//! notices at once when its client leaves.
//!
//! It replaces tiny_http, whose task pool (0.12) gives a burst of new connections only as
//! many threads as were idle at that moment: 40 keep-alive clients connecting at once left
//! 36 of them unanswered until others disconnected (measured). Tasks instead of threads
//! also take the thread wake-ups out of every request.

use smol::io::{AsyncBufRead, AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use smol::{Async, Executor};
use std::future::Future;
use std::io;
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// Go's default limit on the request line and headers (1 MiB, plus its 4 KiB slack).
const HEADER_BYTES_MAX: usize = (1 << 20) + 4096;
/// How long the rest of a request head may take once its first byte arrived.
const HEAD_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);
/// Bytes of a request body nobody reads that are skipped to keep the connection usable
/// (Go's value); beyond it the connection closes.
const DRAIN_BYTES_MAX: u64 = 256 * 1024;
/// The most a body's buffer is sized to before its bytes arrive.
const BODY_PRESIZE_BYTES: u64 = 64 * 1024;

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
    /// Chunked.
    Chunked(Option<u64>),
    /// Nothing (more) to read.
    Done,
}

// Strict about framing, as Go is: two different lengths, a length that is not plain
// digits, a repeated or non-chunked Transfer-Encoding, or both headers at once could make
// pikv and a proxy in front of it see different request boundaries.
fn framing_of(head: &RequestHead) -> Result<Framing, String> {
    let values = |name: &str| -> Vec<&str> {
        head.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    };
    let te = values("Transfer-Encoding");
    let cl = values("Content-Length");
    if !te.is_empty() {
        if te.len() > 1 || !te[0].eq_ignore_ascii_case("chunked") {
            return Err(format!("unsupported transfer encoding: {te:?}"));
        }
        if !cl.is_empty() {
            return Err("both Transfer-Encoding and Content-Length".into());
        }
        return Ok(Framing::Chunked(None));
    }
    let Some(first) = cl.first() else {
        return Ok(Framing::Done);
    };
    if cl.iter().any(|v| v.trim() != first.trim()) {
        return Err(format!("conflicting Content-Length values {cl:?}"));
    }
    let digits = first.trim();
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("bad Content-Length {first:?}"));
    }
    digits
        .parse::<u64>()
        .map(Framing::Length)
        .map_err(|_| format!("bad Content-Length {first:?}"))
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

/// A whole request: head and (for PUT and POST) its body, read up to the limit given to
/// [`serve`] plus one byte.
#[derive(Debug)]
pub struct Request {
    /// The head.
    pub head: RequestHead,
    /// The body bytes read.
    pub body: Vec<u8>,
}

/// What a service answers.
pub enum Response {
    /// A complete response, already rendered; `close` ends the connection after it.
    Bytes {
        /// The response bytes.
        bytes: Vec<u8>,
        /// Close after sending.
        close: bool,
    },
    /// A chunked response whose chunks come later: `head` now, then every framed chunk from
    /// `chunks`, then the last chunk when the channel closes. `on_gone` runs if the client
    /// leaves first.
    Stream {
        /// Status line and headers.
        head: Vec<u8>,
        /// Framed chunks.
        chunks: smol::channel::Receiver<Vec<u8>>,
        /// Called when the client disconnects before the stream ends.
        on_gone: Box<dyn FnOnce() + Send>,
    },
}

/// Chunked responses being written right now, in this process: at shutdown the server ends
/// every watch and waits for this to reach zero, so each client gets its last chunk (as etcd
/// ends them) instead of a cut connection. One server per process, so one counter.
static OPEN_STREAMS: AtomicUsize = AtomicUsize::new(0);

struct OpenStream;

impl OpenStream {
    fn new() -> OpenStream {
        OPEN_STREAMS.fetch_add(1, Ordering::SeqCst);
        OpenStream
    }
}

impl Drop for OpenStream {
    fn drop(&mut self) {
        OPEN_STREAMS.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Waits (blocking, at most `limit`) until no chunked response is being written; returns
/// how many still are.
pub fn wait_for_streams(limit: std::time::Duration) -> usize {
    let deadline = std::time::Instant::now() + limit;
    loop {
        let open = OPEN_STREAMS.load(Ordering::SeqCst);
        if open == 0 || std::time::Instant::now() >= deadline {
            return open;
        }
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
}

/// Answers requests.
pub trait Service: Send + Sync + 'static {
    /// Answers one request.
    fn call(&self, request: Request) -> impl Future<Output = Response> + Send;
}

/// Accepts connections on `listener` and serves each as a task on `executor`.
pub fn serve<S: Service>(
    executor: &Arc<Executor<'static>>,
    listener: TcpListener,
    service: Arc<S>,
    body_bytes_max: usize,
    max_connections: usize,
) -> io::Result<()> {
    let addr = listener.local_addr()?;
    let listener = Async::new(listener)?;
    let ex = Arc::clone(executor);
    executor
        .spawn(async move {
            let open = Arc::new(AtomicUsize::new(0));
            loop {
                let stream = match listener.accept().await {
                    Ok((s, _)) => s,
                    Err(e) => {
                        log::warn!("accept on {addr} failed: {e}");
                        smol::Timer::after(std::time::Duration::from_millis(10)).await;
                        continue;
                    }
                };
                if open.load(Ordering::SeqCst) >= max_connections {
                    log::warn!("{addr}: {max_connections} connections open, refusing another");
                    let mut s = &stream;
                    let _ = s
                        .write_all(b"HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nContent-Length: 0\r\n\r\n")
                        .await;
                    continue;
                }
                open.fetch_add(1, Ordering::SeqCst);
                let (svc, open) = (Arc::clone(&service), Arc::clone(&open));
                ex.spawn(async move {
                    if let Err(e) = serve_connection(stream, &*svc, body_bytes_max).await {
                        log::debug!("connection ended: {e}");
                    }
                    open.fetch_sub(1, Ordering::SeqCst);
                })
                .detach();
            }
        })
        .detach();
    Ok(())
}

type Reader<'a> = BufReader<&'a Async<TcpStream>>;

/// Reads one line ending in `\n` (kept), at most `max` bytes; `None` on EOF before any byte.
async fn read_line<R: AsyncBufRead + Unpin>(
    reader: &mut R,
    max: usize,
) -> Result<Option<Vec<u8>>, HeadError> {
    let mut line = Vec::new();
    loop {
        let buf = reader.fill_buf().await.map_err(HeadError::Io)?;
        if buf.is_empty() {
            return if line.is_empty() {
                Ok(None)
            } else {
                Err(HeadError::Malformed(
                    "connection closed inside a line".into(),
                ))
            };
        }
        if let Some(i) = buf.iter().position(|&b| b == b'\n') {
            line.extend_from_slice(&buf[..=i]);
            reader.consume(i + 1);
            return if line.len() > max {
                Err(HeadError::TooLarge)
            } else {
                Ok(Some(line))
            };
        }
        let n = buf.len();
        line.extend_from_slice(buf);
        reader.consume(n);
        if line.len() > max {
            return Err(HeadError::TooLarge);
        }
    }
}

/// Reads a request head; `Closed` on EOF before any byte.
pub async fn read_head<R: AsyncBufRead + Unpin>(reader: &mut R) -> Result<RequestHead, HeadError> {
    let mut lines: Vec<String> = Vec::new();
    let mut total = 0usize;
    loop {
        let Some(mut line) = read_line(reader, HEADER_BYTES_MAX - total).await? else {
            return Err(if lines.is_empty() && total == 0 {
                HeadError::Closed
            } else {
                HeadError::Malformed("connection closed inside the request head".into())
            });
        };
        total += line.len();
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
        // Go keeps raw bytes; pikv's strings replace invalid UTF-8 with U+FFFD, as it does
        // for %-escapes.
        lines.push(String::from_utf8_lossy(&line).into_owned());
    }
    parse_head(&lines)
}

/// Reads the body as framed, up to `limit + 1` bytes; `Ok(false)` in the second field when
/// the body was not read to its end (the connection must then close).
async fn read_body(
    reader: &mut Reader<'_>,
    framing: Framing,
    limit: usize,
) -> io::Result<(Vec<u8>, bool)> {
    let mut out = Vec::new();
    match framing {
        Framing::Done => Ok((out, true)),
        Framing::Length(n) => {
            let want = n.min(limit as u64 + 1);
            // Sized for what is announced (read_to_end's first growth steps showed in the
            // profile), but no more than a small body's worth before it arrives: a
            // Content-Length alone must not reserve memory. 32 more for read_to_end's look
            // for the end.
            out.reserve(want.min(BODY_PRESIZE_BYTES) as usize + 32);
            (&mut *reader).take(want).read_to_end(&mut out).await?;
            if (out.len() as u64) < want {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "body shorter than Content-Length",
                ));
            }
            Ok((out, want == n))
        }
        Framing::Chunked(_) => loop {
            let size_line = read_line(reader, 4096)
                .await
                .map_err(|_| {
                    io::Error::new(io::ErrorKind::InvalidData, "malformed chunk size line")
                })?
                .ok_or_else(|| {
                    io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "connection closed inside a chunked body",
                    )
                })?;
            let text = String::from_utf8_lossy(&size_line);
            let size_text = text
                .trim()
                .split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_string();
            let size = u64::from_str_radix(&size_text, 16)
                .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "malformed chunk size"))?;
            if size == 0 {
                // Trailers up to the empty line.
                loop {
                    match read_line(reader, 8192).await {
                        Ok(Some(l)) if l != b"\r\n" && l != b"\n" => continue,
                        Ok(_) => return Ok((out, true)),
                        Err(_) => {
                            return Err(io::Error::new(
                                io::ErrorKind::InvalidData,
                                "malformed trailer",
                            ))
                        }
                    }
                }
            }
            let room = (limit as u64 + 1).saturating_sub(out.len() as u64);
            if size > room {
                let mut part = Vec::new();
                (&mut *reader).take(room).read_to_end(&mut part).await?;
                out.extend_from_slice(&part);
                return Ok((out, false));
            }
            let start = out.len();
            (&mut *reader).take(size).read_to_end(&mut out).await?;
            if (out.len() - start) as u64 != size {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "connection closed inside a chunk",
                ));
            }
            let mut crlf = [0u8; 2];
            reader.read_exact(&mut crlf).await?;
            if &crlf != b"\r\n" {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "malformed chunk end",
                ));
            }
        },
    }
}

const BAD_REQUEST: &[u8] = b"HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n\r\n400 Bad Request";
const HEADERS_TOO_LARGE: &[u8] = b"HTTP/1.1 431 Request Header Fields Too Large\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n\r\n431 Request Header Fields Too Large";

async fn serve_connection<S: Service>(
    stream: Async<TcpStream>,
    service: &S,
    body_bytes_max: usize,
) -> io::Result<()> {
    stream.get_ref().set_nodelay(true)?;
    let mut reader: Reader<'_> = BufReader::with_capacity(4096, &stream);
    let mut writer = &stream;
    loop {
        // An idle keep-alive connection may wait for its next request as long as it likes
        // (clients pool them); once a request has begun, its head must arrive in time, so
        // a client that trickles bytes cannot hold a connection and its buffer forever.
        match reader.fill_buf().await {
            Ok([]) => return Ok(()),
            Ok(_) => {}
            Err(e) => return Err(e),
        }
        let head_in_time = async { Some(read_head(&mut reader).await) };
        let late = async {
            smol::Timer::after(HEAD_TIMEOUT).await;
            None
        };
        let Some(head) = smol::future::or(head_in_time, late).await else {
            log::debug!("request head not complete after {HEAD_TIMEOUT:?}: closing");
            return Ok(());
        };
        let head = match head {
            Ok(h) => h,
            Err(HeadError::Closed) => return Ok(()),
            Err(HeadError::Io(e)) => return Err(e),
            Err(HeadError::TooLarge) => return writer.write_all(HEADERS_TOO_LARGE).await,
            Err(HeadError::Malformed(why)) => {
                log::debug!("malformed request: {why}");
                return writer.write_all(BAD_REQUEST).await;
            }
        };
        let framing = match framing_of(&head) {
            Ok(f) => f,
            Err(why) => {
                log::debug!("malformed request: {why}");
                return writer.write_all(BAD_REQUEST).await;
            }
        };
        let mut keep = keep_alive(&head);
        let wants_body = matches!(head.method.to_ascii_uppercase().as_str(), "PUT" | "POST");
        let body = if wants_body && framing != Framing::Done {
            if head
                .header("Expect")
                .is_some_and(|v| v.eq_ignore_ascii_case("100-continue"))
            {
                writer.write_all(b"HTTP/1.1 100 Continue\r\n\r\n").await?;
            }
            let (body, complete) = read_body(&mut reader, framing, body_bytes_max).await?;
            keep &= complete;
            body
        } else {
            if framing != Framing::Done {
                // Skipped like Go does, up to its limit (a DELETE with a form body...).
                let (_, complete) =
                    read_body(&mut reader, framing, DRAIN_BYTES_MAX as usize).await?;
                keep &= complete;
            }
            Vec::new()
        };
        match service.call(Request { head, body }).await {
            Response::Bytes { bytes, close } => {
                writer.write_all(&bytes).await?;
                keep &= !close;
            }
            Response::Stream {
                head,
                chunks,
                on_gone,
            } => {
                let _open = OpenStream::new();
                writer.write_all(&head).await?;
                if !stream_chunks(&mut reader, &mut writer, chunks).await? {
                    on_gone();
                    return Ok(());
                }
            }
        }
        if !keep {
            return Ok(());
        }
    }
}

// Writes chunks until the channel closes (then the last chunk; true), or until the client
// goes away (false).
async fn stream_chunks(
    reader: &mut Reader<'_>,
    writer: &mut &Async<TcpStream>,
    chunks: smol::channel::Receiver<Vec<u8>>,
) -> io::Result<bool> {
    enum Next {
        Chunk(Option<Vec<u8>>),
        ClientGone,
    }
    loop {
        let chunk = async { Next::Chunk(chunks.recv().await.ok()) };
        // A client sends nothing while it waits for a watch; data or EOF both end the wait
        // on this side (EOF: it left; data: it pipelines, which no watch client does).
        let gone = async {
            match reader.fill_buf().await {
                Ok(buf) if !buf.is_empty() => std::future::pending::<Next>().await,
                _ => Next::ClientGone,
            }
        };
        // A failed write means the client is gone too: the watcher must be cancelled.
        match smol::future::or(chunk, gone).await {
            Next::Chunk(Some(bytes)) => {
                if writer.write_all(&bytes).await.is_err() {
                    return Ok(false);
                }
            }
            Next::Chunk(None) => {
                return Ok(writer.write_all(super::reply::LAST_CHUNK).await.is_ok());
            }
            Next::ClientGone => return Ok(false),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heads_parse_and_bad_ones_are_refused() {
        let mut r = &b"\r\nPUT /v2/keys/a?x=1 HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\n"[..];
        let head = smol::block_on(read_head(&mut r)).unwrap();
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
                matches!(
                    smol::block_on(read_head(&mut &bad[..])),
                    Err(HeadError::Malformed(_))
                ),
                "{bad:?}"
            );
        }
        assert!(matches!(
            smol::block_on(read_head(&mut &b""[..])),
            Err(HeadError::Closed)
        ));
        let head = smol::block_on(read_head(
            &mut &b"GET /a\xff?x=\xfe HTTP/1.1\r\nX: \xc3\x28\r\n\r\n"[..],
        ))
        .unwrap();
        assert_eq!(head.target, "/a\u{FFFD}?x=\u{FFFD}");
        assert_eq!(head.header("x"), Some("\u{FFFD}("));
        let mut huge = b"GET / HTTP/1.1\r\nX: ".to_vec();
        huge.resize(HEADER_BYTES_MAX + 10, b'a');
        assert!(matches!(
            smol::block_on(read_head(&mut &huge[..])),
            Err(HeadError::TooLarge)
        ));
    }

    #[test]
    fn framing_is_strict_about_lengths_and_encodings() {
        let head = |hs: &[(&str, &str)]| RequestHead {
            method: "PUT".into(),
            target: "/".into(),
            minor: 1,
            headers: hs
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect(),
        };
        assert_eq!(
            framing_of(&head(&[("Content-Length", "9")])),
            Ok(Framing::Length(9))
        );
        assert_eq!(
            framing_of(&head(&[("Content-Length", "9"), ("content-length", "9")])),
            Ok(Framing::Length(9))
        );
        assert_eq!(
            framing_of(&head(&[("Transfer-Encoding", "chunked")])),
            Ok(Framing::Chunked(None))
        );
        assert_eq!(framing_of(&head(&[])), Ok(Framing::Done));
        for bad in [
            &[("Content-Length", "9"), ("Content-Length", "62")][..],
            &[("Content-Length", "+7")],
            &[("Content-Length", "")],
            &[("Content-Length", "-1")],
            &[("Transfer-Encoding", "chunked"), ("Content-Length", "3")],
            &[
                ("Transfer-Encoding", "chunked"),
                ("Transfer-Encoding", "chunked"),
            ],
            &[("Transfer-Encoding", "gzip")],
        ] {
            assert!(framing_of(&head(bad)).is_err(), "{bad:?}");
        }
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
