//! Bad and hostile input never stalls or crashes the server.
//!
//! What it proves: (1) clients that send half a request head, or a head promising 100 body
//! bytes and then only 10, and 20 such clients at once, hold only their own connection:
//! ordinary requests on new connections are answered within a deadline meanwhile, the
//! half-sent write is never applied, and the server works after the hung clients leave;
//! 50 keep-alive connections opened at once each get an answer, twice. (2) Malformed
//! request lines and non-HTTP bytes get a 400 and a closed connection (etcd, behind its
//! connection multiplexer, just closes); headers over 1 MiB get 431; invalid UTF-8 in the
//! path and query, bad percent-encoding and unknown methods (PATCH, FOO) get etcd's answers
//! (the shapes observed on etcd 3.4 and checked in the differential test); a chunked form
//! body is accepted; `Expect: 100-continue` is honoured (raw, and by curl with a 2 KiB
//! value). After each group the process is alive and `/health` answers 200.
//!
//! How: raw `TcpStream`s to a real server on a free loopback port, every read bounded by a
//! deadline; nothing is timed.

use crate::support::{self, http, Kind, Server};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

const DEADLINE: Duration = Duration::from_secs(20);

fn connect(port: u16) -> TcpStream {
    let s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(DEADLINE)).unwrap();
    s.set_write_timeout(Some(DEADLINE)).unwrap();
    s
}

/// Sends `raw` (from a helper thread, so a server that answers before reading everything is
/// still heard) and reads until the server closes. Returns what arrived and whether the
/// connection was closed by the server (EOF or reset) before the deadline.
fn send_raw(port: u16, raw: &[u8]) -> (Vec<u8>, bool) {
    let mut s = connect(port);
    let mut w = s.try_clone().unwrap();
    let raw = raw.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = w.write_all(&raw);
    });
    let mut out = Vec::new();
    let mut buf = [0u8; 8192];
    let deadline = Instant::now() + DEADLINE;
    let closed = loop {
        if Instant::now() > deadline {
            break false;
        }
        match s.read(&mut buf) {
            Ok(0) => break true,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break true,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                break false
            }
            Err(e) => panic!("read: {e}"),
        }
    };
    let _ = s.shutdown(std::net::Shutdown::Both);
    let _ = writer.join();
    (out, closed)
}

fn status_of(resp: &[u8]) -> Option<u16> {
    let line = resp.split(|&b| b == b'\n').next()?;
    std::str::from_utf8(line)
        .ok()?
        .split(' ')
        .nth(1)?
        .parse()
        .ok()
}

fn body_of(resp: &[u8]) -> serde_json::Value {
    let at = resp
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("end of head");
    serde_json::from_slice(&resp[at + 4..])
        .unwrap_or_else(|e| panic!("body is not JSON ({e}): {}", String::from_utf8_lossy(resp)))
}

/// Reads one response (Content-Length framing) from a keep-alive connection.
fn read_response(r: &mut BufReader<TcpStream>) -> std::io::Result<(u16, Vec<u8>)> {
    let mut status = None;
    let mut len = 0usize;
    loop {
        let mut line = String::new();
        if r.read_line(&mut line)? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if status.is_none() {
            status = line.split(' ').nth(1).and_then(|s| s.parse().ok());
        } else if let Some((n, v)) = line.split_once(':') {
            if n.eq_ignore_ascii_case("content-length") {
                len = v.trim().parse().unwrap_or(0);
            }
        }
    }
    let mut body = vec![0u8; len];
    r.read_exact(&mut body)?;
    Ok((status.unwrap_or(0), body))
}

fn assert_healthy(s: &mut Server, after: &str) {
    assert!(s.is_alive(), "the server process died after {after}");
    let r = http::try_request(
        s.client_port,
        "GET",
        "/health",
        &[],
        b"",
        Duration::from_secs(10),
    )
    .unwrap_or_else(|e| panic!("/health after {after}: {e}"));
    assert_eq!(r.status, 200, "/health after {after}: {}", r.dump());
}

/// An ordinary write and read on new connections, each bounded by a deadline.
fn ordinary_requests(port: u16, tag: &str) {
    let t = Duration::from_secs(10);
    let body = http::form(&[("value", tag)]);
    let w = http::try_request(
        port,
        "PUT",
        &format!("/v2/keys/ok/{tag}"),
        &[("Content-Type", http::FORM)],
        body.as_bytes(),
        t,
    )
    .unwrap_or_else(|e| panic!("PUT {tag} while slow clients hang: {e}"));
    assert_eq!(w.status, 201, "{}", w.dump());
    let r = http::try_request(port, "GET", &format!("/v2/keys/ok/{tag}"), &[], b"", t)
        .unwrap_or_else(|e| panic!("GET {tag} while slow clients hang: {e}"));
    assert_eq!(r.status, 200, "{}", r.dump());
    assert_eq!(r.json()["node"]["value"], tag);
}

#[test]
fn slow_and_hung_clients_do_not_stall_others() {
    let mut s = Server::start(support::target());
    let port = s.client_port;
    let half_head: &[u8] = b"GET /v2/keys/ok HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: */";
    let short_body: &[u8] = b"PUT /v2/keys/partial HTTP/1.1\r\nHost: 127.0.0.1\r\n\
        Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 100\r\n\r\nvalue=0123";
    let mut hung = Vec::new();
    for raw in [half_head, short_body] {
        let mut c = connect(port);
        c.write_all(raw).unwrap();
        hung.push(c);
    }
    ordinary_requests(port, "two-hung");
    for i in 0..20 {
        let mut c = connect(port);
        c.write_all(if i % 2 == 0 { half_head } else { short_body })
            .unwrap();
        hung.push(c);
    }
    for i in 0..10 {
        ordinary_requests(port, &format!("hung22-{i}"));
    }
    // None of the hung clients got an answer (they have not finished a request).
    for c in &hung {
        c.set_nonblocking(true).unwrap();
        let mut b = [0u8; 1];
        match (&*c).read(&mut b) {
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            other => panic!("a hung client got {other:?}"),
        }
    }
    drop(hung);
    assert_healthy(&mut s, "22 hung clients closed");
    ordinary_requests(port, "after-hung");
    let p = s.get("/v2/keys/partial");
    assert_eq!(p.status, 404, "a half-sent write was applied: {}", p.dump());

    // 50 keep-alive connections opened at once, each asks twice.
    let mut conns: Vec<BufReader<TcpStream>> =
        (0..50).map(|_| BufReader::new(connect(port))).collect();
    for round in 0..2 {
        for (i, c) in conns.iter_mut().enumerate() {
            let req = format!(
                "GET /v2/keys/ok/two-hung?k={i}&r={round} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
            );
            c.get_mut().write_all(req.as_bytes()).unwrap();
        }
        for (i, c) in conns.iter_mut().enumerate() {
            let (status, body) = read_response(c)
                .unwrap_or_else(|e| panic!("keep-alive connection {i}, round {round}: {e}"));
            assert_eq!(
                status,
                200,
                "connection {i}: {}",
                String::from_utf8_lossy(&body)
            );
        }
    }
    drop(conns);
    assert_healthy(&mut s, "50 keep-alive connections");
}

#[test]
fn malformed_requests_get_etcds_answers_and_never_crash() {
    let mut s = Server::start(support::target());
    let port = s.client_port;

    // Not HTTP at all: 400 and close (etcd's cmux closes without an answer).
    let tls_hello: &[u8] = b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03\x00\x01garbage\r\n\r\n";
    for raw in [
        &b"GARBAGE\r\n\r\n"[..],
        tls_hello,
        b"GET\r\n\r\n",
        b"GET /v2/keys/a HTTP/1.1 extra\r\nHost: x\r\n\r\n",
        b"GET /v2/keys/a HTTP/1.1\r\nNo colon here\r\n\r\n",
    ] {
        let (resp, closed) = send_raw(port, raw);
        let what = String::from_utf8_lossy(raw);
        assert!(closed, "{what:?}: the connection stays open");
        match s.kind {
            Kind::Pikv => assert_eq!(
                status_of(&resp),
                Some(400),
                "{what:?}: {}",
                String::from_utf8_lossy(&resp)
            ),
            Kind::Etcd => assert!(
                resp.is_empty() || status_of(&resp) == Some(400),
                "{what:?}: {}",
                String::from_utf8_lossy(&resp)
            ),
        }
    }
    assert_healthy(&mut s, "garbage request lines");

    // Headers over 1 MiB: 431.
    let mut huge = b"GET /v2/keys/a HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: ".to_vec();
    huge.resize(huge.len() + (2 << 20), b'a');
    huge.extend_from_slice(b"\r\n\r\n");
    let (resp, closed) = send_raw(port, &huge);
    assert_eq!(
        status_of(&resp),
        Some(431),
        "{}",
        String::from_utf8_lossy(&resp[..resp.len().min(300)])
    );
    assert!(closed, "431 closes the connection");
    assert_healthy(&mut s, "a 2 MiB header");

    // Invalid UTF-8 in the path and the query: served as etcd does (Go keeps the bytes; the
    // JSON shows U+FFFD for them).
    let (resp, _) = send_raw(
        port,
        b"PUT /v2/keys/u\xc3\x28 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\
          Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 7\r\n\r\nvalue=1",
    );
    assert_eq!(
        status_of(&resp),
        Some(201),
        "{}",
        String::from_utf8_lossy(&resp)
    );
    assert_eq!(body_of(&resp)["node"]["key"], "/u\u{FFFD}(");
    let (resp, _) = send_raw(
        port,
        b"GET /v2/keys/u\xc3\x28 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(
        status_of(&resp),
        Some(200),
        "{}",
        String::from_utf8_lossy(&resp)
    );
    assert_eq!(body_of(&resp)["node"]["value"], "1");
    let (resp, _) = send_raw(
        port,
        b"GET /v2/keys/nx\xff\xfe?x=\xff HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(
        status_of(&resp),
        Some(404),
        "{}",
        String::from_utf8_lossy(&resp)
    );
    let j = body_of(&resp);
    assert_eq!(
        (j["errorCode"].as_u64(), j["cause"].as_str()),
        (Some(100), Some("/nx\u{FFFD}\u{FFFD}")),
        "{j}"
    );
    let (resp, _) = send_raw(
        port,
        b"GET /v2/keys/u?recursive=\xff HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(
        status_of(&resp),
        Some(400),
        "{}",
        String::from_utf8_lossy(&resp)
    );
    assert_eq!(body_of(&resp)["errorCode"], 209);
    assert_healthy(&mut s, "invalid UTF-8");

    // Percent-encoding errors: in the path Go's server answers a plain 400 and closes; in a
    // form value etcd answers 210.
    for target in ["/v2/keys/%zz", "/v2/keys/a%4"] {
        let raw = format!("GET {target} HTTP/1.1\r\nHost: x\r\n\r\n");
        let (resp, closed) = send_raw(port, raw.as_bytes());
        assert_eq!(
            status_of(&resp),
            Some(400),
            "{target}: {}",
            String::from_utf8_lossy(&resp)
        );
        assert!(
            resp.ends_with(b"\r\n\r\n400 Bad Request"),
            "{target}: {}",
            String::from_utf8_lossy(&resp)
        );
        assert!(closed, "{target}: the connection stays open");
    }
    for (what, r) in [
        ("query", s.put("/v2/keys/v?value=%zz", "")),
        ("body", s.put("/v2/keys/v", "value=%zz")),
        ("GET query", s.get("/v2/keys/v?recursive=%zz")),
    ] {
        assert_eq!(r.status, 400, "{what}: {}", r.dump());
        let j = r.json();
        assert_eq!(j["errorCode"], 210, "{what}: {j}");
        assert_eq!(j["cause"], "invalid URL escape \"%zz\"", "{what}: {j}");
    }

    // Unknown methods: Go's 405 with etcd's Allow list.
    for method in ["PATCH", "FOO"] {
        let r = http::request(port, method, "/v2/keys/a", &[], b"");
        assert_eq!(r.status, 405, "{method}: {}", r.dump());
        assert_eq!(
            r.header("Allow"),
            Some("HEAD,GET,PUT,POST,DELETE"),
            "{method}"
        );
        assert_eq!(r.text(), "Method Not Allowed\n", "{method}");
    }
    assert_healthy(&mut s, "percent-encoding errors and unknown methods");

    // A chunked form body is accepted.
    let (resp, _) = send_raw(
        port,
        b"PUT /v2/keys/chunked HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\
          Content-Type: application/x-www-form-urlencoded\r\nTransfer-Encoding: chunked\r\n\r\n\
          4\r\nvalu\r\n9\r\ne=chunked\r\n0\r\n\r\n",
    );
    assert_eq!(
        status_of(&resp),
        Some(201),
        "{}",
        String::from_utf8_lossy(&resp)
    );
    assert_eq!(s.get("/v2/keys/chunked").json()["node"]["value"], "chunked");

    // Expect: 100-continue, raw: the server asks for the body before it has any.
    let mut c = BufReader::new(connect(port));
    c.get_mut()
        .write_all(
            b"PUT /v2/keys/expect HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n\
              Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 8\r\n\r\n",
        )
        .unwrap();
    let mut line = String::new();
    c.read_line(&mut line).unwrap();
    assert!(
        line.starts_with("HTTP/1.1 100 "),
        "interim answer: {line:?}"
    );
    c.read_line(&mut line).unwrap();
    c.get_mut().write_all(b"value=ok").unwrap();
    let (status, body) = read_response(&mut c).unwrap();
    assert_eq!(status, 201, "{}", String::from_utf8_lossy(&body));
    drop(c);

    // ... and by curl, with a 2 KiB value (forced: curl 7.88 only asks past 1 MiB).
    support::require_tool("curl");
    let value = "x".repeat(2048);
    let out = std::process::Command::new("curl")
        .args(["-sS", "-v", "--max-time", "20", "-X", "PUT"])
        .args([
            "-H",
            "Expect: 100-continue",
            "-H",
            "Content-Type: application/x-www-form-urlencoded",
        ])
        .args(["--data-binary", &format!("value={value}")])
        .arg(format!("{}/v2/keys/curl2k", s.client_url()))
        .output()
        .expect("run curl");
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "curl failed: {log}");
    assert!(
        log.contains("< HTTP/1.1 100 Continue"),
        "no 100 Continue: {log}"
    );
    assert!(log.contains("< HTTP/1.1 201 Created"), "{log}");
    assert_eq!(
        s.get("/v2/keys/curl2k").json()["node"]["value"],
        value.as_str()
    );
    assert_healthy(&mut s, "chunked and 100-continue bodies");
}
