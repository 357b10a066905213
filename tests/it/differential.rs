//! Differential test: pikv against the real etcd 3.4 (`--enable-v2`).
//!
//! What it proves: for one scripted sequence of well over 120 requests (every keys-API
//! operation, directories, hidden keys, in-order keys, TTL set/refresh/clear/expiry, live and
//! historical watches, the 401 "event index cleared" window, every validation error of spec
//! §1.5, Go `net/http` behaviour such as 301/404/405/OPTIONS, HEAD, the 10 MiB limit, value
//! sources and JSON escaping) pikv answers exactly as etcd does.
//!
//! How: the same script runs against a fresh etcd and a fresh pikv at the same time (one
//! thread each). The script computes every index it sends from earlier responses of the same
//! server, so both servers get "the same" requests in their own index space. Each response is
//! normalised and compared per spec §18.1:
//! * indexes (`X-Etcd-Index`, `modifiedIndex`, `createdIndex`, `index`, in-order key names,
//!   `[7 != 11]` and `[129/8]` causes) are shifted by a constant measured from each server's
//!   first write (etcd spends 3 indexes on membership bookkeeping, pikv none);
//! * `X-Etcd-Cluster-Id` and member ids must equal the ids spec §10.6 derives from that
//!   server's own peer URL; the servers' own port numbers are replaced by placeholders;
//! * `X-Raft-Index`, `X-Raft-Term`, `Date`, `Content-Length` are compared by presence;
//! * `ttl` within ±1, `expiration` by format (RFC 3339 nano, UTC) and within 1.5 s of the
//!   same offset from the moment the response arrived;
//! * `nodes` of reads without `sorted=true` as multisets;
//! * everything else — status line, other headers (Content-Type, Transfer-Encoding, CORS,
//!   Allow, Location, ...), JSON member order, string literals byte for byte (so Go's `\u003c`
//!   escaping and `\ufffd` replacement count), trailing newlines — exactly.
//!
//! Every difference is printed; the test fails on any difference not covered by `ALLOWED`.
//! With `PIKV_IT_TARGET=etcd` (ORACLE mode) it runs etcd against a second fresh etcd, which
//! must give zero differences: that proves the normaliser does not hide or invent anything
//! that varies between two runs of the reference itself.

use crate::support::http::{self, Pending, Response, FORM};
use crate::support::json::{self, J};
use crate::support::{self, Kind, Server};
use std::time::{Duration, Instant, SystemTime};

/// Differences that are accepted, each with its reason: (step label prefix, field prefix,
/// reason). Starts empty; the server team adds reasoned entries (and lists them in the README).
const ALLOWED: &[(&str, &str, &str)] = &[];

const WATCH_DEADLINE: Duration = Duration::from_secs(10);

/// One recorded request/response pair.
struct Step {
    label: String,
    request: String,
    params: Vec<(String, String)>,
    resp: Response,
    recv: SystemTime,
}

/// Runs the script against one server and records what it saw.
struct Rec<'a> {
    s: &'a Server,
    steps: Vec<Step>,
    /// etcd index of this server just before the script's first write.
    base: Option<u64>,
    /// Keeps the two runs in step, so TTLs are compared at the same moments.
    lockstep: Option<(&'a Lockstep, usize)>,
}

/// Holds each of the two script runs at every request until the other run has reached it
/// too (or 5 s passed, so a run that took another path cannot hang the test). Without it a
/// loaded machine lets one run drift seconds ahead, and remaining TTLs no longer compare.
#[derive(Default)]
struct Lockstep {
    reached: std::sync::Mutex<[usize; 2]>,
    moved: std::sync::Condvar,
}

impl Lockstep {
    fn arrive(&self, side: usize, step: usize) {
        let Ok(mut reached) = self.reached.lock() else {
            return;
        };
        reached[side] = step;
        self.moved.notify_all();
        let deadline = Instant::now() + Duration::from_secs(5);
        while reached[1 - side] < step {
            let now = Instant::now();
            if now >= deadline {
                return;
            }
            match self.moved.wait_timeout(reached, deadline - now) {
                Ok((r, _)) => reached = r,
                Err(_) => return,
            }
        }
    }
}

/// A live watch whose headers have arrived.
struct Live {
    label: String,
    request: String,
    params: Vec<(String, String)>,
    /// The pending response, or why the watch could not even be started.
    pending: Result<Pending, String>,
}

/// A transport failure recorded as a response (status 0), so the comparison goes on and
/// prints it as a difference instead of aborting the whole run.
fn broken(what: String) -> Response {
    Response {
        status: 0,
        reason: format!("<transport error: {what}>"),
        headers: Vec::new(),
        body: Vec::new(),
        chunked: false,
        chunks: Vec::new(),
    }
}

fn pct_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            let hex = std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or("");
            if let Ok(v) = u8::from_str_radix(hex, 16) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(if b[i] == b'+' { b' ' } else { b[i] });
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn parse_params(
    target: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    method: &str,
) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut add = |s: &str| {
        for part in s.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = part.split_once('=').unwrap_or((part, ""));
            out.push((pct_decode(k), pct_decode(v)));
        }
    };
    let form_body = headers
        .iter()
        .any(|(n, v)| n.eq_ignore_ascii_case("content-type") && v.starts_with(FORM));
    if form_body && (method == "PUT" || method == "POST") && body.len() < 4096 {
        add(&String::from_utf8_lossy(body));
    }
    if let Some((_, q)) = target.split_once('?') {
        add(q);
    }
    out
}

impl<'a> Rec<'a> {
    fn new(s: &'a Server) -> Rec<'a> {
        Rec {
            s,
            steps: Vec::new(),
            base: None,
            lockstep: None,
        }
    }

    fn base(&self) -> u64 {
        // If the first write failed there is no shift to measure; 0 makes every later
        // index show up as a difference rather than aborting the run.
        self.base.unwrap_or(0)
    }

    /// A normalised index (as the script thinks of it) in this server's own index space.
    fn abs(&self, n: u64) -> u64 {
        self.base() + n
    }

    fn send(
        &mut self,
        label: &str,
        method: &str,
        target: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Response {
        if let Some((ls, side)) = self.lockstep {
            ls.arrive(side, self.steps.len() + 1);
        }
        let resp = http::try_request(
            self.s.client_port,
            method,
            target,
            headers,
            body,
            Duration::from_secs(30),
        )
        .unwrap_or_else(|e| broken(e.to_string()));
        let recv = SystemTime::now();
        if self.base.is_none()
            && matches!(method, "PUT" | "POST" | "DELETE")
            && (resp.status == 200 || resp.status == 201)
        {
            let idx = resp
                .header("X-Etcd-Index")
                .and_then(|v| v.parse::<u64>().ok());
            self.base = Some(idx.unwrap_or(1).saturating_sub(1));
        }
        let body_note = if body.len() > 200 {
            format!(" <{} bytes body>", body.len())
        } else if body.is_empty() {
            String::new()
        } else {
            format!(" body={:?}", String::from_utf8_lossy(body))
        };
        let hdr_note: String = headers
            .iter()
            .map(|(n, v)| format!(" [{n}: {v}]"))
            .collect();
        self.steps.push(Step {
            label: label.to_string(),
            request: format!("{method} {target}{hdr_note}{body_note}"),
            params: parse_params(target, headers, body, method),
            resp: resp.clone(),
            recv,
        });
        resp
    }

    fn get(&mut self, label: &str, target: &str) -> Response {
        self.send(label, "GET", target, &[], b"")
    }
    fn head(&mut self, label: &str, target: &str) -> Response {
        self.send(label, "HEAD", target, &[], b"")
    }
    fn delete(&mut self, label: &str, target: &str) -> Response {
        self.send(label, "DELETE", target, &[], b"")
    }
    fn put(&mut self, label: &str, target: &str, form: &str) -> Response {
        if form.is_empty() {
            self.send(label, "PUT", target, &[], b"")
        } else {
            self.send(
                label,
                "PUT",
                target,
                &[("Content-Type", FORM)],
                form.as_bytes(),
            )
        }
    }
    fn post(&mut self, label: &str, target: &str, form: &str) -> Response {
        self.send(
            label,
            "POST",
            target,
            &[("Content-Type", FORM)],
            form.as_bytes(),
        )
    }

    /// Starts a watch and returns once its headers have arrived (the watcher is registered).
    fn watch(&mut self, label: &str, target: &str) -> Live {
        let pending = http::start(self.s.client_port, "GET", target, &[], b"", WATCH_DEADLINE)
            .map_err(|e| format!("watch not started: {e}"));
        Live {
            label: label.to_string(),
            request: format!("GET {target}"),
            params: parse_params(target, &[], b"", "GET"),
            pending,
        }
    }

    /// Reads a live watch to its end (`events` = None) or reads `n` events of a stream and
    /// hangs up, and records it.
    fn finish(&mut self, w: Live, events: Option<usize>) -> Response {
        let deadline = Instant::now() + WATCH_DEADLINE;
        let resp = match (w.pending, events) {
            (Err(e), _) => broken(e),
            (Ok(p), None) => p
                .finish(deadline)
                .unwrap_or_else(|e| broken(format!("no complete event before the deadline: {e}"))),
            (Ok(mut p), Some(n)) => {
                let mut body = Vec::new();
                let mut chunks = Vec::new();
                // Events may in principle be split over chunks; read until n newline-terminated
                // JSON objects have arrived.
                while body.iter().filter(|&&b| b == b'\n').count() < n {
                    match p.next_chunk(deadline) {
                        Ok(Some(c)) => {
                            body.extend_from_slice(&c);
                            chunks.push(c);
                        }
                        Ok(None) => break,
                        Err(e) => {
                            body.extend_from_slice(format!("<stream error: {e}>").as_bytes());
                            break;
                        }
                    }
                }
                Response {
                    status: p.status,
                    reason: p.reason.clone(),
                    headers: p.headers.clone(),
                    body,
                    chunked: p.is_chunked(),
                    chunks,
                }
            }
        };
        self.steps.push(Step {
            label: w.label,
            request: w.request,
            params: w.params,
            resp: resp.clone(),
            recv: SystemTime::now(),
        });
        resp
    }

    /// Waits (unrecorded, with a deadline) until a key with a TTL has expired, so that the
    /// expiry's index is spent at the same point of the script on both servers.
    /// If it never expires, the following steps show the difference.
    fn wait_gone(&self, key: &str) {
        let deadline = Instant::now() + Duration::from_secs(10);
        let target = format!("/v2/keys{key}");
        while Instant::now() < deadline {
            match http::try_request(
                self.s.client_port,
                "GET",
                &target,
                &[],
                b"",
                Duration::from_secs(5),
            ) {
                Ok(r) if r.status == 404 => return,
                Ok(_) => {}
                Err(_) => return,
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        eprintln!("[{}] {key} did not expire within 10 s", self.s.kind.label());
    }
}

fn num(r: &Response, path: &[&str]) -> u64 {
    let mut v = match serde_json::from_slice::<serde_json::Value>(&r.body) {
        Ok(v) => v,
        Err(_) => return 0,
    };
    for p in path {
        v = v[*p].take();
    }
    v.as_u64().unwrap_or(0)
}

fn text(r: &Response, path: &[&str]) -> String {
    let mut v = match serde_json::from_slice::<serde_json::Value>(&r.body) {
        Ok(v) => v,
        Err(_) => return String::new(),
    };
    for p in path {
        v = v[*p].take();
    }
    v.as_str().unwrap_or("").to_string()
}

/// modifiedIndex of the response's node, as a normalised index.
fn nidx(c: &Rec, r: &Response) -> u64 {
    num(r, &["node", "modifiedIndex"]).saturating_sub(c.base())
}

/// The script. Everything it sends that contains an index is computed from this server's
/// own earlier responses (`c.abs`, `nidx`), never hard-coded.
fn script(c: &mut Rec) {
    // ---- basics: set / get / create / update / CAS / CAD / delete of files
    c.put(
        "set new file (first write, measures the index shift)",
        "/v2/keys/message",
        "value=Hello+world",
    );
    c.get("get file", "/v2/keys/message");
    c.put("set replaces file", "/v2/keys/message", "value=Hello+etcd");
    c.head("HEAD file", "/v2/keys/message");
    c.get("get root", "/v2/keys/");
    c.get("get root without slash", "/v2/keys");
    c.get("quorum read", "/v2/keys/message?quorum=true");
    c.get(
        "quorum wins over wait",
        "/v2/keys/message?wait=true&quorum=true",
    );
    c.get(
        "missing nested key: cause is first missing prefix",
        "/v2/keys/nokey/sub/deeper",
    );
    c.head("HEAD missing key", "/v2/keys/nokey");
    c.delete("delete file", "/v2/keys/message");
    c.get("get deleted file", "/v2/keys/message");
    let r = c.put(
        "create with prevExist=false",
        "/v2/keys/new",
        "value=one&prevExist=false",
    );
    let created_new = nidx(c, &r);
    c.put(
        "create existing -> 105",
        "/v2/keys/new",
        "value=again&prevExist=false",
    );
    let r = c.put("CAS by value", "/v2/keys/new", "value=two&prevValue=one");
    let cur = nidx(c, &r);
    c.put(
        "CAS by value fails",
        "/v2/keys/new",
        "value=three&prevValue=one",
    );
    let t = format!("value=three&prevIndex={}", c.abs(created_new));
    c.put("CAS by index fails", "/v2/keys/new", &t);
    let t = format!("value=four&prevIndex={}", c.abs(cur));
    let r = c.put("CAS by index", "/v2/keys/new", &t);
    let cur = nidx(c, &r);
    let t = format!("value=five&prevIndex={}&prevValue=nope", c.abs(1));
    c.put("CAS both conditions fail", "/v2/keys/new", &t);
    let t = format!("value=five&prevIndex={}&prevValue=four", c.abs(cur));
    c.put("CAS both conditions hold", "/v2/keys/new", &t);
    let t = format!("value=x&prevIndex={}", c.abs(cur));
    c.put(
        "CAS by index, value holds but index stale",
        "/v2/keys/new",
        &t,
    );
    c.put("update", "/v2/keys/new", "value=six&prevExist=true");
    c.put(
        "update missing -> 100",
        "/v2/keys/nokey",
        "value=x&prevExist=true",
    );
    c.put(
        "update with prevExist=1",
        "/v2/keys/new",
        "value=seven&prevExist=1",
    );
    c.put(
        "prevExist=false wins over prevValue",
        "/v2/keys/new",
        "value=x&prevExist=false&prevValue=seven",
    );
    c.put(
        "prevIndex=0 is no condition",
        "/v2/keys/new",
        "value=eight&prevIndex=0",
    );
    c.put(
        "CAS on missing key",
        "/v2/keys/nokey",
        "value=x&prevValue=y",
    );
    c.delete("CAD by value fails", "/v2/keys/new?prevValue=wrong");
    let t = format!("/v2/keys/new?prevIndex={}", c.abs(1));
    c.delete("CAD by index fails", &t);
    c.delete("CAD by value", "/v2/keys/new?prevValue=eight");
    c.delete("CAD on missing key", "/v2/keys/new?prevValue=x");
    c.delete("CAD on root: 102 without cause", "/v2/keys/?prevValue=x");
    c.delete("delete root recursive -> 107", "/v2/keys/?recursive=true");
    c.delete("delete root -> 107", "/v2/keys/");
    c.put("set root -> 107", "/v2/keys/", "value=1");
    c.put("create root -> 107", "/v2/keys/", "value=1&prevExist=false");
    let r = c.put("set file for CAD by index", "/v2/keys/cadi", "value=v");
    let t = format!("/v2/keys/cadi?prevIndex={}", c.abs(nidx(c, &r)));
    c.delete("CAD by index", &t);

    // ---- directories, hidden keys, recursive and sorted reads
    c.put("set dir", "/v2/keys/dir", "dir=true");
    c.put("set existing dir -> 102", "/v2/keys/dir", "dir=true");
    c.put("set value on dir -> 102", "/v2/keys/dir", "value=x");
    c.put("file in dir", "/v2/keys/dir/a", "value=1");
    c.put(
        "nested file creates parent",
        "/v2/keys/dir/sub/b",
        "value=2",
    );
    c.put("hidden file", "/v2/keys/dir/_hidden", "value=h");
    c.put("another file", "/v2/keys/dir/c", "value=3");
    c.put("hidden dir child", "/v2/keys/dir/_hd/x", "value=hx");
    c.get("list dir (unsorted: multiset)", "/v2/keys/dir");
    c.get("list dir sorted", "/v2/keys/dir?sorted=true");
    c.get(
        "list dir recursive sorted",
        "/v2/keys/dir?recursive=true&sorted=true",
    );
    c.get("list dir recursive unsorted", "/v2/keys/dir?recursive=true");
    c.get("read hidden key by name", "/v2/keys/dir/_hidden");
    c.get("list hidden dir by name", "/v2/keys/dir/_hd");
    c.get("read below a file -> 104", "/v2/keys/dir/a/x");
    c.put("write below a file -> 104", "/v2/keys/dir/a/x", "value=1");
    c.post("POST below a file -> 104", "/v2/keys/dir/a", "value=x");
    c.delete("delete dir without flags -> 102", "/v2/keys/dir");
    c.delete(
        "delete non-empty dir with dir=true -> 108",
        "/v2/keys/dir?dir=true",
    );
    c.put(
        "update dir with value -> 102",
        "/v2/keys/dir",
        "value=x&prevExist=true",
    );
    c.put(
        "update dir TTL (modifiedIndex quirk)",
        "/v2/keys/dir",
        "dir=true&prevExist=true&ttl=100",
    );
    c.get(
        "dir keeps old modifiedIndex, has ttl",
        "/v2/keys/dir?sorted=true",
    );
    c.put(
        "clear dir TTL",
        "/v2/keys/dir",
        "dir=true&prevExist=true&ttl=",
    );
    c.get("dir after TTL cleared", "/v2/keys/dir?sorted=true");
    c.put(
        "dir=true replaces a file by a dir",
        "/v2/keys/dir/a",
        "dir=true",
    );
    c.put("file f2", "/v2/keys/f2", "value=hello");
    c.put(
        "dir=true&prevExist=true blanks a file",
        "/v2/keys/f2?dir=true&prevExist=true",
        "",
    );
    c.delete("delete empty dir with dir=true", "/v2/keys/dir/a?dir=true");
    c.put("mkdir", "/v2/keys/emptyd", "dir=true");
    c.delete("rmdir", "/v2/keys/emptyd?dir=true");
    c.delete("CAD on dir -> 102", "/v2/keys/dir?prevValue=x");
    c.put("CAS on dir -> 102", "/v2/keys/dir", "value=y&prevValue=x");
    c.delete("delete dir recursive", "/v2/keys/dir?recursive=true");
    c.get("deleted dir", "/v2/keys/dir");
    c.delete("delete file with dir=true", "/v2/keys/f2?dir=true");
    c.put("%2F is a separator", "/v2/keys/a%2Fc", "value=slash");
    c.get("read /a/c", "/v2/keys/a/c");
    c.put("%20 key", "/v2/keys/a%20b", "value=space");
    c.put("UTF-8 key", "/v2/keys/%E2%9C%93", "value=check");
    c.get("trailing slash reaches the handler", "/v2/keys/a/");
    c.get("root listing sorted", "/v2/keys/?sorted=true");
    c.get("bools T and 1", "/v2/keys/a?recursive=T&sorted=1");
    c.get(
        "bools TRUE and False",
        "/v2/keys/a?recursive=TRUE&sorted=False",
    );

    // ---- in-order keys
    let r = c.post("POST in-order key", "/v2/keys/queue", "value=Job1");
    let first_job = text(&r, &["node", "key"]);
    c.post("POST second in-order key", "/v2/keys/queue", "value=Job2");
    c.get("queue sorted", "/v2/keys/queue?recursive=true&sorted=true");
    c.post(
        "POST in-order dir with TTL",
        "/v2/keys/queue",
        "dir=true&ttl=100",
    );
    c.post(
        "POST ignores prevExist",
        "/v2/keys/queue?prevExist=false",
        "value=Job3",
    );
    let r = c.post("POST at root", "/v2/keys", "value=rootjob");
    let root_job = text(&r, &["node", "key"]);
    c.get("read in-order key by name", &format!("/v2/keys{first_job}"));
    c.delete(
        "delete in-order key at root",
        &format!("/v2/keys{root_job}"),
    );
    c.post("POST on a file -> 104", "/v2/keys/a/c", "value=x");

    // ---- where the value comes from; JSON encoding
    c.put("value from query", "/v2/keys/q1?value=fromquery", "");
    c.put(
        "body wins over query",
        "/v2/keys/q3?value=query",
        "value=body",
    );
    c.put("first value wins", "/v2/keys/q4", "value=a&value=b");
    c.send(
        "JSON body ignored",
        "PUT",
        "/v2/keys/q5",
        &[("Content-Type", "application/json")],
        br#"{"value":"x"}"#,
    );
    let mp = b"--XyZ\r\nContent-Disposition: form-data; name=\"value\"\r\n\r\nmulti\r\n--XyZ--\r\n";
    c.send(
        "multipart body ignored",
        "PUT",
        "/v2/keys/m1",
        &[("Content-Type", "multipart/form-data; boundary=XyZ")],
        mp,
    );
    c.put("no value at all", "/v2/keys/q2", "");
    c.send(
        "text/plain body ignored",
        "PUT",
        "/v2/keys/q6",
        &[("Content-Type", "text/plain")],
        b"value=x",
    );
    c.send(
        "no Content-Type: body ignored",
        "PUT",
        "/v2/keys/q8",
        &[],
        b"value=x",
    );
    c.send(
        "form content type with parameters",
        "PUT",
        "/v2/keys/q7",
        &[(
            "Content-Type",
            "application/x-www-form-urlencoded; charset=utf-8",
        )],
        b"value=param",
    );
    c.put(
        "invalid UTF-8 and control characters",
        "/v2/keys/enc",
        "value=%FF%00%01%09%0A%0D%E2%80%A8%22%5C%7F",
    );
    c.get("read back encoded value", "/v2/keys/enc");
    c.put(
        "<>& are escaped",
        "/v2/keys/amp",
        "value=%3Ca%26b%3Dc+d%2Be%3E",
    );
    c.delete(
        "plain delete with unknown query parameter",
        "/v2/keys/q1?x=1",
    );
    c.send(
        "DELETE with body prevValue is plain delete",
        "DELETE",
        "/v2/keys/q3",
        &[("Content-Type", FORM)],
        b"prevValue=wrong",
    );
    let big = format!("value={}", "b".repeat(1536 * 1024));
    c.send(
        "1.5 MiB value accepted",
        "PUT",
        "/v2/keys/big",
        &[("Content-Type", FORM)],
        big.as_bytes(),
    );
    let huge = format!("value={}", "h".repeat(11 * 1024 * 1024));
    c.send(
        "body over 10 MiB -> 210",
        "PUT",
        "/v2/keys/huge",
        &[("Content-Type", FORM)],
        huge.as_bytes(),
    );
    c.get("huge was not written", "/v2/keys/huge");

    // ---- noValueOnSuccess
    c.put(
        "set noValueOnSuccess",
        "/v2/keys/nv?noValueOnSuccess=true",
        "value=nv",
    );
    c.put(
        "create error with noValueOnSuccess",
        "/v2/keys/nv?noValueOnSuccess=true",
        "value=x&prevExist=false",
    );
    c.put(
        "update noValueOnSuccess",
        "/v2/keys/nv?noValueOnSuccess=true",
        "value=2&prevExist=true",
    );
    c.put(
        "CAS noValueOnSuccess",
        "/v2/keys/nv",
        "value=3&prevValue=2&noValueOnSuccess=true",
    );
    c.put(
        "create noValueOnSuccess (201)",
        "/v2/keys/nv2?noValueOnSuccess=true&prevExist=false",
        "value=c",
    );
    c.delete(
        "delete ignores noValueOnSuccess",
        "/v2/keys/nv?noValueOnSuccess=true",
    );
    c.get(
        "get ignores noValueOnSuccess",
        "/v2/keys/nv2?noValueOnSuccess=true",
    );

    // ---- validation errors, spec §1.5, in its order
    c.put("1 bad escape in query", "/v2/keys/v?value=%zz", "");
    c.put("1 bad escape in body", "/v2/keys/v", "value=%zz");
    c.get("1 bad escape in GET query", "/v2/keys/v?recursive=%zz");
    c.delete("1 bad escape in DELETE query", "/v2/keys/v?x=%g1");
    c.head("1 bad escape in HEAD query", "/v2/keys/v?x=%");
    c.put(
        "2 prevIndex not a number",
        "/v2/keys/v",
        "value=1&prevIndex=abc",
    );
    c.delete("2 prevIndex negative", "/v2/keys/v?prevIndex=-1");
    c.put("2 prevIndex with plus sign", "/v2/keys/v", "prevIndex=%2B5");
    c.get(
        "3 waitIndex not a number",
        "/v2/keys/v?wait=true&waitIndex=x",
    );
    c.get("3 waitIndex fraction", "/v2/keys/v?wait=true&waitIndex=1.5");
    c.get(
        "3 waitIndex bad even without wait",
        "/v2/keys/v?waitIndex=x",
    );
    c.get("4 recursive=maybe", "/v2/keys/v?recursive=maybe");
    c.get("4 recursive empty", "/v2/keys/v?recursive=");
    c.get("5 sorted=yes", "/v2/keys/v?sorted=yes");
    c.get("6 wait=2", "/v2/keys/v?wait=2");
    c.put("7 dir=yes", "/v2/keys/v", "dir=yes");
    c.get("8 quorum=x", "/v2/keys/v?quorum=x");
    c.get("9 stream=x", "/v2/keys/v?stream=x");
    c.put("10 wait with PUT", "/v2/keys/v?wait=true", "value=1");
    c.delete("10 wait with DELETE", "/v2/keys/v?wait=true");
    c.head("10 wait with HEAD", "/v2/keys/v?wait=true");
    c.post("10 wait with POST", "/v2/keys/queue?wait=true", "value=1");
    c.put("11 empty prevValue", "/v2/keys/v", "value=1&prevValue=");
    c.delete("11 empty prevValue on DELETE", "/v2/keys/v?prevValue=");
    c.put(
        "12 noValueOnSuccess=x",
        "/v2/keys/v",
        "value=1&noValueOnSuccess=x",
    );
    c.put("13 ttl=abc", "/v2/keys/v", "value=1&ttl=abc");
    c.put("13 ttl=-1", "/v2/keys/v", "value=1&ttl=-1");
    c.put("13 ttl=1.5", "/v2/keys/v", "value=1&ttl=1.5");
    c.put(
        "13 ttl over 2^64-1",
        "/v2/keys/v",
        "value=1&ttl=18446744073709551616",
    );
    c.put(
        "14 prevExist=maybe",
        "/v2/keys/v",
        "value=1&prevExist=maybe",
    );
    c.put("15 refresh=maybe", "/v2/keys/v", "ttl=5&refresh=maybe");
    c.put(
        "16 refresh with a value",
        "/v2/keys/v",
        "ttl=30&refresh=true&value=x",
    );
    c.put("17 refresh without ttl", "/v2/keys/v", "refresh=true");
    c.put(
        "17 refresh with empty ttl",
        "/v2/keys/v",
        "refresh=true&ttl=",
    );
    c.put(
        "order: prevIndex before waitIndex and recursive",
        "/v2/keys/v?waitIndex=y&recursive=z",
        "prevIndex=x",
    );
    c.get(
        "order: waitIndex before recursive",
        "/v2/keys/v?waitIndex=y&recursive=z&sorted=q",
    );
    c.put(
        "order: prevValue (11) before ttl (13)",
        "/v2/keys/v",
        "ttl=x&prevValue=",
    );
    c.put(
        "order: wait (10) before prevValue (11)",
        "/v2/keys/v?wait=true",
        "prevValue=",
    );
    c.put(
        "order: ttl (13) before prevExist (14)",
        "/v2/keys/v",
        "prevExist=x&refresh=x&ttl=x",
    );
    c.put(
        "order: noValueOnSuccess (12) before ttl (13)",
        "/v2/keys/v",
        "ttl=x&noValueOnSuccess=x",
    );
    c.put(
        "refresh of a missing key -> 100",
        "/v2/keys/tnone",
        "ttl=30&refresh=true",
    );
    c.get("unknown parameters are ignored", "/v2/keys/a/c?foo=bar&x");

    // ---- TTL set / refresh / clear / expiry
    c.put("set with ttl", "/v2/keys/foo", "value=bar&ttl=100");
    c.get("read key with ttl", "/v2/keys/foo");
    c.put(
        "refresh via update keeps value",
        "/v2/keys/foo",
        "ttl=200&refresh=true&prevExist=true",
    );
    c.put(
        "update with empty ttl clears TTL",
        "/v2/keys/foo",
        "value=bar&ttl=&prevExist=true",
    );
    c.get("key without ttl", "/v2/keys/foo");
    c.put("t1 plain", "/v2/keys/t1", "value=v2");
    c.put(
        "refresh set form (createdIndex changes)",
        "/v2/keys/t1",
        "ttl=300&refresh=true",
    );
    c.put(
        "update without ttl removes TTL",
        "/v2/keys/t1",
        "value=v3&prevExist=true",
    );
    c.put(
        "refresh CAS form",
        "/v2/keys/t1",
        "ttl=300&refresh=true&prevValue=v3",
    );
    let w = c.watch(
        "refresh is not delivered to watchers",
        "/v2/keys/t1?wait=true",
    );
    c.put(
        "refresh while watched",
        "/v2/keys/t1",
        "ttl=400&refresh=true",
    );
    c.put("real write while watched", "/v2/keys/t1", "value=after");
    c.finish(w, None);
    let r = c.put("ttl=0 accepted", "/v2/keys/t0", "value=zero&ttl=0");
    let t0 = nidx(c, &r);
    c.wait_gone("/t0");
    let t = format!("/v2/keys/t0?wait=true&waitIndex={}", c.abs(t0 + 1));
    c.get("ttl=0 key expired (history)", &t);
    c.put("ttl=1 key", "/v2/keys/short", "value=x&ttl=1");
    let w = c.watch("live watch sees expire", "/v2/keys/short?wait=true");
    c.finish(w, None);
    c.get("expired key is gone", "/v2/keys/short");
    let r = c.put("second ttl=1 key", "/v2/keys/short2", "value=y&ttl=1");
    let s2 = nidx(c, &r);
    std::thread::sleep(Duration::from_millis(1500));
    c.wait_gone("/short2");
    let t = format!("/v2/keys/short2?wait=true&waitIndex={}", c.abs(s2 + 1));
    c.get("expire event from history", &t);
    c.put("dir with ttl=1", "/v2/keys/edir", "dir=true&ttl=1");
    c.put("child of expiring dir", "/v2/keys/edir/child", "value=c");
    let w = c.watch(
        "watch on child sees dir expire",
        "/v2/keys/edir/child?wait=true",
    );
    c.finish(w, None);
    c.get("expired dir is gone", "/v2/keys/edir");
    c.post("in-order key with ttl", "/v2/keys/tq", "value=x&ttl=100");
    c.put("mkdir with ttl", "/v2/keys/tdir", "dir=true&ttl=100");
    c.get("read dir with ttl", "/v2/keys/tdir");
    c.get("tq listing with ttl", "/v2/keys/tq?recursive=true");

    // ---- watches
    let w = c.watch("live watch", "/v2/keys/wfoo?wait=true");
    c.put("write wakes live watch", "/v2/keys/wfoo", "value=bar");
    c.finish(w, None);
    let t = format!("/v2/keys/new?wait=true&waitIndex={}", c.abs(1));
    c.get("history watch: first event on /new", &t);
    let t = format!(
        "/v2/keys/queue?wait=true&recursive=true&waitIndex={}",
        c.abs(1)
    );
    c.get("history watch recursive", &t);
    let t = format!("/v2/keys/?wait=true&recursive=true&waitIndex={}", c.abs(2));
    c.get("history watch on root recursive", &t);
    let w = c.watch(
        "recursive live watch",
        "/v2/keys/wdir?wait=true&recursive=true",
    );
    c.put(
        "child write wakes recursive watch",
        "/v2/keys/wdir/child",
        "value=c",
    );
    c.finish(w, None);
    let w = c.watch("non-recursive watch on dir", "/v2/keys/wdir?wait=true");
    c.put(
        "child write does not wake it",
        "/v2/keys/wdir/child2",
        "value=c2",
    );
    c.delete("recursive delete wakes it", "/v2/keys/wdir?recursive=true");
    c.finish(w, None);
    c.put("file in p", "/v2/keys/p/c", "value=pc");
    let w = c.watch(
        "watch on file whose parent is deleted",
        "/v2/keys/p/c?wait=true",
    );
    c.delete("delete parent", "/v2/keys/p?recursive=true");
    c.finish(w, None);
    let w = c.watch(
        "recursive live watch ignores hidden",
        "/v2/keys/hw?wait=true&recursive=true",
    );
    let r = c.put(
        "hidden write under watched dir",
        "/v2/keys/hw/_secret",
        "value=s",
    );
    let secret = nidx(c, &r);
    c.put(
        "visible write under watched dir",
        "/v2/keys/hw/visible",
        "value=v",
    );
    c.finish(w, None);
    let t = format!(
        "/v2/keys/hw?wait=true&recursive=true&waitIndex={}",
        c.abs(secret)
    );
    c.get("history watch returns hidden key (quirk)", &t);
    c.put("qa/x", "/v2/keys/qa/x", "value=1");
    let r = c.delete("delete /qa", "/v2/keys/qa?recursive=true");
    let qdel = nidx(c, &r);
    let t = format!("/v2/keys/qab?wait=true&waitIndex={}", c.abs(qdel));
    c.get("history watch on /qab sees /qa deletion (quirk)", &t);
    let w = c.watch("stream watch", "/v2/keys/rawk?wait=true&stream=true");
    c.put("stream event 1", "/v2/keys/rawk", "value=1");
    c.put("stream event 2", "/v2/keys/rawk", "value=2");
    c.finish(w, Some(2));
    let r = c.get("current index", "/v2/keys/rawk");
    let next = r
        .header("X-Etcd-Index")
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0)
        + 1;
    let w = c.watch(
        "watch with future waitIndex",
        &format!("/v2/keys/fut?wait=true&waitIndex={next}"),
    );
    c.put("write at the future index", "/v2/keys/fut", "value=f");
    c.finish(w, None);
    let w = c.watch(
        "watch on a path below a file",
        "/v2/keys/a/c/below?wait=true",
    );
    c.delete("delete the file", "/v2/keys/a/c");
    c.put("write below", "/v2/keys/a/c/below", "value=x");
    c.finish(w, None);

    // ---- HTTP layer: methods, paths, other endpoints
    c.send("PATCH -> 405", "PATCH", "/v2/keys/cas", &[], b"");
    c.send(
        "OPTIONS on a key",
        "OPTIONS",
        "/v2/keys/foo",
        &[
            ("Origin", "http://example.com"),
            ("Access-Control-Request-Method", "PUT"),
        ],
        b"",
    );
    c.send(
        "OPTIONS on an unknown path",
        "OPTIONS",
        "/nowhere",
        &[],
        b"",
    );
    c.put(
        "PUT unclean path -> 301",
        "/v2/keys//afile?recursive=true",
        "value=zz",
    );
    c.get("GET /./ -> 301 with html body", "/v2/keys/a/./b");
    c.get("GET /../ -> 301", "/v2/keys/a/../b?x=1");
    c.get("GET // -> 301 keeps query", "/v2/keys//x?sorted=true");
    c.get("%2F%2F decodes to // -> 301", "/v2/keys/a%2F%2Fb");
    c.head("HEAD unclean path", "/v2/keys//x");
    c.delete("DELETE unclean path", "/v2/keys/a/../x");
    c.get("afile was not written by the 301", "/v2/keys/afile");
    c.get("/v2/keysfoo -> 404", "/v2/keysfoo");
    c.get("/v2/ -> 404", "/v2/");
    c.get("/ -> 404", "/");
    c.get("/v1/keys -> 404", "/v1/keys/foo");
    c.get("/mod -> 404", "/mod/v2/leader");
    // /v2/leader and /v2/keys/_etcd/machines answer as etcd 0.4 did, on purpose (issue 7;
    // tests/it/join.rs checks them).
    c.send("POST /health -> 405", "POST", "/health", &[], b"");
    c.send("PUT /version -> 405", "PUT", "/version", &[], b"");
    c.send(
        "DELETE /v2/machines -> 405",
        "DELETE",
        "/v2/machines",
        &[],
        b"",
    );
    c.send(
        "POST /v2/stats/self -> 405",
        "POST",
        "/v2/stats/self",
        &[],
        b"",
    );
    c.get("health", "/health");
    c.get("members", "/v2/members");
    c.get("members/", "/v2/members/");
    c.get("members leader", "/v2/members/leader");
    c.get("members unknown", "/v2/members/xyz");
    c.send(
        "PUT members without id -> 405",
        "PUT",
        "/v2/members",
        &[],
        b"",
    );
    c.send("PATCH members -> 405", "PATCH", "/v2/members", &[], b"");
    c.get("machines", "/v2/machines");
    c.head("HEAD machines", "/v2/machines");

    // ---- > 1000 events: the history window and error 401
    for i in 0..1005 {
        let t = format!("/v2/keys/bulk/k{}", i % 7);
        c.put("bulk write", &t, &format!("value={i}"));
    }
    c.get("bulk listing", "/v2/keys/bulk?recursive=true&sorted=true");
    let t = format!("/v2/keys/bulk/k1?wait=true&waitIndex={}", c.abs(1));
    c.get("401 event index cleared", &t);
    let t = format!("/v2/keys/new?wait=true&waitIndex={}", c.abs(8));
    c.get("401 again, other key", &t);
    let r = c.get("index after bulk", "/v2/keys/bulk/k3");
    let cur = r
        .header("X-Etcd-Index")
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0);
    let t = format!(
        "/v2/keys/bulk/k3?wait=true&waitIndex={}",
        cur.saturating_sub(500)
    );
    c.get("history watch inside the window", &t);
    let t = format!(
        "/v2/keys/bulk?wait=true&recursive=true&waitIndex={}",
        cur.saturating_sub(999)
    );
    c.get("oldest retained event", &t);
    c.get("final tree", "/v2/keys/?recursive=true&sorted=true");
}

// ---------------------------------------------------------------------------------------
// Normalisation and comparison

/// What is compared of one response, after normalisation.
struct View {
    status: String,
    headers: Vec<(String, String)>,
    /// Body as a sequence of JSON values (one per watch event) with the whitespace after each,
    /// or the raw text when it is not JSON.
    json: Option<Vec<(J, String)>>,
    raw: String,
}

struct Norm {
    base: u64,
    client_port: u16,
    peer_port: u16,
    member_id: String,
    cluster_id: String,
}

impl Norm {
    fn for_server(s: &Server, base: u64) -> Norm {
        let (member_id, cluster_id) = s.expected_ids();
        Norm {
            base,
            client_port: s.client_port,
            peer_port: s.peer_port,
            member_id,
            cluster_id,
        }
    }

    fn shift(&self, n: u64) -> String {
        if n == 0 {
            "0".into()
        } else if n >= self.base {
            (n - self.base).to_string()
        } else {
            format!("(below-base {n})")
        }
    }

    fn text(&self, s: &str) -> String {
        s.replace(
            &format!("127.0.0.1:{}", self.client_port),
            "127.0.0.1:CLIENT_PORT",
        )
        .replace(
            &format!("127.0.0.1:{}", self.peer_port),
            "127.0.0.1:PEER_PORT",
        )
        .replace(&format!("\"{}\"", self.member_id), "\"MEMBER_ID\"")
        .replace(&format!("\"{}\"", self.cluster_id), "\"CLUSTER_ID\"")
    }

    /// In-order key names: 20-digit components are indexes.
    fn key(&self, k: &str) -> String {
        k.split('/')
            .map(|c| {
                if c.len() == 20 && c.bytes().all(|b| b.is_ascii_digit()) {
                    format!("{:0>20}", self.shift(c.parse().unwrap()))
                } else {
                    c.to_string()
                }
            })
            .collect::<Vec<_>>()
            .join("/")
    }

    fn cause(&self, code: u64, cause: &str, params: &[(String, String)]) -> String {
        let first = |name: &str| {
            params
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
        };
        match code {
            101 => {
                let has_pi = first("prevIndex")
                    .map(|v| v != "0" && !v.is_empty())
                    .unwrap_or(false);
                let has_pv = first("prevValue").map(|v| !v.is_empty()).unwrap_or(false);
                // "[pv != cv]", "[pi != ci]" or "[pv != cv] [pi != ci]"; shift the index pair.
                let parts: Vec<&str> = cause.split("] [").collect();
                let idx_part = if has_pi && has_pv && parts.len() == 2 {
                    Some(1)
                } else if has_pi && !has_pv {
                    Some(0)
                } else {
                    None
                };
                match idx_part {
                    None => cause.to_string(),
                    Some(i) => {
                        let mut p: Vec<String> = parts.iter().map(|s| s.to_string()).collect();
                        let inner = p[i]
                            .trim_start_matches('[')
                            .trim_end_matches(']')
                            .to_string();
                        if let Some((a, b)) = inner.split_once(" != ") {
                            if let (Ok(a), Ok(b)) = (a.parse::<u64>(), b.parse::<u64>()) {
                                let open = if p[i].starts_with('[') { "[" } else { "" };
                                let close = if p[i].ends_with(']') { "]" } else { "" };
                                p[i] =
                                    format!("{open}{} != {}{close}", self.shift(a), self.shift(b));
                            }
                        }
                        p.join("] [")
                    }
                }
            }
            401 => {
                if let Some(start) = cause.rfind('[') {
                    let inner = cause[start + 1..].trim_end_matches(']');
                    if let Some((a, b)) = inner.split_once('/') {
                        if let (Ok(a), Ok(b)) = (a.parse::<u64>(), b.parse::<u64>()) {
                            return format!(
                                "{}[{}/{}]",
                                &cause[..start],
                                self.shift(a),
                                self.shift(b)
                            );
                        }
                    }
                }
                cause.to_string()
            }
            _ => self.key(cause),
        }
    }

    fn json(&self, v: &mut J, sorted: bool, params: &[(String, String)], recv: SystemTime) {
        match v {
            J::Obj(members) => {
                let code = members
                    .iter()
                    .find(|(k, _)| k == "errorCode")
                    .and_then(|(_, v)| v.as_u64())
                    .unwrap_or(0);
                for (k, val) in members.iter_mut() {
                    match (k.as_str(), &mut *val) {
                        ("modifiedIndex" | "createdIndex" | "index", J::Num(n)) => {
                            if let Ok(x) = n.parse::<u64>() {
                                *n = self.shift(x);
                            }
                        }
                        ("key", J::Str(s)) => *s = self.key(s),
                        ("cause", J::Str(s)) => *s = self.cause(code, s, params),
                        ("expiration", J::Str(s)) => *s = expiration(s, recv),
                        ("nodes", J::Arr(items)) => {
                            for it in items.iter_mut() {
                                self.json(it, sorted, params, recv);
                            }
                            if !sorted {
                                items.sort_by_key(|it| {
                                    it.get("key").map(|k| k.render()).unwrap_or_default()
                                });
                            }
                        }
                        _ => self.json(val, sorted, params, recv),
                    }
                }
            }
            J::Arr(items) => {
                for it in items.iter_mut() {
                    self.json(it, sorted, params, recv);
                }
            }
            _ => {}
        }
    }

    fn view(&self, st: &Step) -> View {
        let r = &st.resp;
        let mut headers: Vec<(String, String)> = Vec::new();
        for (n, v) in &r.headers {
            let lname = n.to_ascii_lowercase();
            let nv = match lname.as_str() {
                "date" | "content-length" => "<present>".to_string(),
                "x-raft-index" | "x-raft-term" => {
                    if v.parse::<u64>().is_ok() {
                        "<decimal>".into()
                    } else {
                        format!("<not decimal: {v}>")
                    }
                }
                "x-etcd-index" => match v.parse::<u64>() {
                    Ok(x) => self.shift(x),
                    Err(_) => format!("<not decimal: {v}>"),
                },
                "x-etcd-cluster-id" => {
                    if *v == self.cluster_id {
                        "CLUSTER_ID".into()
                    } else {
                        format!("{v} (expected {} from spec §10.6)", self.cluster_id)
                    }
                }
                _ => self.text(v),
            };
            match headers.iter_mut().find(|(n2, _)| *n2 == lname) {
                Some((_, old)) => {
                    old.push_str(", ");
                    old.push_str(&nv);
                }
                None => headers.push((lname, nv)),
            }
        }
        headers.sort();
        let body = self.text(&String::from_utf8_lossy(&r.body));
        let is_json = r
            .header("Content-Type")
            .map(|c| c.starts_with("application/json"))
            .unwrap_or(false);
        let sorted = st
            .params
            .iter()
            .find(|(k, _)| k == "sorted")
            .map(|(_, v)| matches!(v.as_str(), "1" | "t" | "T" | "true" | "TRUE" | "True"))
            .unwrap_or(false);
        let json = if is_json && !body.is_empty() {
            split_json(&body).map(|mut vals| {
                for (v, _) in vals.iter_mut() {
                    self.json(v, sorted, &st.params, st.recv);
                }
                vals
            })
        } else {
            None
        };
        View {
            status: format!("{} {}", r.status, r.reason),
            headers,
            json,
            raw: body,
        }
    }
}

/// Splits a body into consecutive JSON values (a stream watch sends several).
fn split_json(body: &str) -> Option<Vec<(J, String)>> {
    let mut out = Vec::new();
    let mut rest = body;
    while !rest.trim().is_empty() {
        // find the end of the first top-level value by bracket depth (strings respected)
        let b = rest.as_bytes();
        let (mut depth, mut in_str, mut esc, mut end) = (0i32, false, false, None);
        for (i, &ch) in b.iter().enumerate() {
            if in_str {
                if esc {
                    esc = false;
                } else if ch == b'\\' {
                    esc = true;
                } else if ch == b'"' {
                    in_str = false;
                }
                continue;
            }
            match ch {
                b'"' => in_str = true,
                b'{' | b'[' => depth += 1,
                b'}' | b']' => {
                    depth -= 1;
                    if depth == 0 {
                        end = Some(i + 1);
                        break;
                    }
                }
                _ => {}
            }
        }
        let end = end?;
        let v = json::parse(&rest[..end]).ok()?;
        let after = &rest[end..];
        let ws_len = after.len() - after.trim_start().len();
        out.push((v, after[..ws_len].to_string()));
        rest = &after[ws_len..];
    }
    Some(out)
}

/// `expiration` → "EXP <offset ms from arrival>" if it is RFC 3339 nano in UTC, else a
/// marked raw value.
fn expiration(s: &str, recv: SystemTime) -> String {
    match parse_rfc3339_nano(s) {
        Some(t) => {
            let recv_ms = recv
                .duration_since(SystemTime::UNIX_EPOCH)
                .unwrap()
                .as_millis() as i128;
            format!("EXP {}", t / 1_000_000 - recv_ms)
        }
        None => format!("BAD-EXPIRATION-FORMAT {s}"),
    }
}

/// Parses Go's RFC3339Nano UTC form (`2026-11-22T17:57:56.05541868Z`, fraction without
/// trailing zeros, or none) into nanoseconds since the epoch.
fn parse_rfc3339_nano(s: &str) -> Option<i128> {
    let b = s.as_bytes();
    if b.len() < 20 || *b.last()? != b'Z' {
        return None;
    }
    let digits = |r: std::ops::Range<usize>| -> Option<i64> {
        let t = s.get(r)?;
        if t.bytes().all(|c| c.is_ascii_digit()) {
            t.parse().ok()
        } else {
            None
        }
    };
    if b[4] != b'-' || b[7] != b'-' || b[10] != b'T' || b[13] != b':' || b[16] != b':' {
        return None;
    }
    let (y, mo, d) = (digits(0..4)?, digits(5..7)?, digits(8..10)?);
    let (h, mi, se) = (digits(11..13)?, digits(14..16)?, digits(17..19)?);
    let mut nanos: i128 = 0;
    let frac = &s[19..s.len() - 1];
    if !frac.is_empty() {
        let f = frac.strip_prefix('.')?;
        if f.is_empty() || f.len() > 9 || f.ends_with('0') || !f.bytes().all(|c| c.is_ascii_digit())
        {
            return None;
        }
        nanos = format!("{f:0<9}").parse().ok()?;
    }
    // days from civil (Howard Hinnant)
    let y2 = if mo <= 2 { y - 1 } else { y };
    let era = y2.div_euclid(400);
    let yoe = y2 - era * 400;
    let mp = (mo + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146097 + doe - 719468;
    let secs = days * 86400 + h * 3600 + mi * 60 + se;
    Some(secs as i128 * 1_000_000_000 + nanos)
}

#[test]
fn rfc3339_parser_accepts_go_format_only() {
    assert_eq!(
        parse_rfc3339_nano("1970-01-01T00:00:01Z"),
        Some(1_000_000_000)
    );
    assert_eq!(
        parse_rfc3339_nano("1970-01-01T00:00:00.5Z"),
        Some(500_000_000)
    );
    assert!(
        parse_rfc3339_nano("1970-01-01T00:00:00.50Z").is_none(),
        "trailing zero"
    );
    assert!(
        parse_rfc3339_nano("1970-01-01T00:00:00+00:00").is_none(),
        "not Z"
    );
    assert_eq!(
        parse_rfc3339_nano("2026-11-22T17:57:56.05541868Z").map(|n| n / 1_000_000_000),
        Some(1_795_370_276)
    );
}

fn cmp_json(path: &str, a: &J, b: &J, out: &mut Vec<(String, String)>) {
    match (a, b) {
        (J::Obj(ma), J::Obj(mb)) => {
            let na: Vec<&str> = ma.iter().map(|(k, _)| k.as_str()).collect();
            let nb: Vec<&str> = mb.iter().map(|(k, _)| k.as_str()).collect();
            if na != nb {
                out.push((path.to_string(), format!("members {na:?} vs {nb:?}")));
            }
            for (k, va) in ma {
                if let Some((_, vb)) = mb.iter().find(|(k2, _)| k2 == k) {
                    cmp_json(&format!("{path}.{k}"), va, vb, out);
                }
            }
        }
        (J::Arr(xa), J::Arr(xb)) => {
            if xa.len() != xb.len() {
                out.push((
                    path.to_string(),
                    format!("{} items vs {} items", xa.len(), xb.len()),
                ));
            }
            for (i, (va, vb)) in xa.iter().zip(xb.iter()).enumerate() {
                cmp_json(&format!("{path}[{i}]"), va, vb, out);
            }
        }
        (J::Num(x), J::Num(y)) if path.ends_with(".ttl") => {
            match (x.parse::<i64>(), y.parse::<i64>()) {
                (Ok(p), Ok(q)) if (p - q).abs() <= 1 => {}
                _ => out.push((path.to_string(), format!("ttl {x} vs {y} (±1 allowed)"))),
            }
        }
        (J::Str(x), J::Str(y)) if x.starts_with("EXP ") && y.starts_with("EXP ") => {
            let p: i128 = x[4..].parse().unwrap_or(0);
            let q: i128 = y[4..].parse().unwrap_or(0);
            if (p - q).abs() > 1500 {
                out.push((
                    path.to_string(),
                    format!("expiration offset {p} ms vs {q} ms (±1500 allowed)"),
                ));
            }
        }
        _ => {
            if a != b {
                let (ra, rb) = (a.render(), b.render());
                out.push((path.to_string(), format!("{} vs {}", clip(&ra), clip(&rb))));
            }
        }
    }
}

fn clip(s: &str) -> String {
    clip_to(s, 300)
}

fn clip_to(s: &str, max: usize) -> String {
    if s.len() > max {
        let mut e = max;
        while !s.is_char_boundary(e) {
            e -= 1;
        }
        format!("{}…({} bytes)", &s[..e], s.len())
    } else {
        s.to_string()
    }
}

/// Differences between two views as (field, description).
fn compare(a: &View, b: &View) -> Vec<(String, String)> {
    let mut d = Vec::new();
    if a.status != b.status {
        d.push(("status".into(), format!("{:?} vs {:?}", a.status, b.status)));
    }
    for (n, va) in &a.headers {
        match b.headers.iter().find(|(m, _)| m == n) {
            Some((_, vb)) if va == vb => {}
            Some((_, vb)) => d.push((format!("header {n}"), format!("{va:?} vs {vb:?}"))),
            None => d.push((format!("header {n}"), format!("{va:?} vs (absent)"))),
        }
    }
    for (n, vb) in &b.headers {
        if !a.headers.iter().any(|(m, _)| m == n) {
            d.push((format!("header {n}"), format!("(absent) vs {vb:?}")));
        }
    }
    match (&a.json, &b.json) {
        (Some(ja), Some(jb)) => {
            if ja.len() != jb.len() {
                d.push((
                    "body".into(),
                    format!("{} JSON values vs {}", ja.len(), jb.len()),
                ));
            }
            for (i, ((va, wa), (vb, wb))) in ja.iter().zip(jb.iter()).enumerate() {
                cmp_json(&format!("body[{i}]"), va, vb, &mut d);
                if wa != wb {
                    d.push((format!("body[{i}] trailing"), format!("{wa:?} vs {wb:?}")));
                }
            }
        }
        _ => {
            if a.raw != b.raw {
                d.push((
                    "body".into(),
                    format!("{:?} vs {:?}", clip(&a.raw), clip(&b.raw)),
                ));
            }
        }
    }
    d
}

fn allowed(label: &str, field: &str) -> bool {
    ALLOWED
        .iter()
        .any(|(l, f, _why)| label.starts_with(l) && field.starts_with(f))
}

fn run_script(s: &Server, lockstep: Option<(&Lockstep, usize)>) -> (Vec<Step>, u64) {
    let mut c = Rec::new(s);
    c.lockstep = lockstep;
    script(&mut c);
    let base = c.base();
    (c.steps, base)
}

#[test]
fn differential_against_etcd() {
    let b_kind = support::target(); // pikv, or etcd in ORACLE mode
    let (ref_srv, srv) = std::thread::scope(|sc| {
        let h = sc.spawn(|| Server::start(Kind::Etcd));
        let s = Server::start(b_kind);
        (h.join().unwrap(), s)
    });
    eprintln!(
        "differential: reference etcd on {}, {} on {}",
        ref_srv.client_port,
        b_kind.label(),
        srv.client_port
    );
    let lockstep = Lockstep::default();
    let ((sa, base_a), (sb, base_b)) = std::thread::scope(|sc| {
        let h = sc.spawn(|| run_script(&ref_srv, Some((&lockstep, 0))));
        let b = run_script(&srv, Some((&lockstep, 1)));
        (h.join().expect("script against etcd panicked"), b)
    });
    assert_eq!(sa.len(), sb.len(), "the script took different paths");
    assert!(sa.len() >= 120, "script too short: {}", sa.len());

    let na = Norm::for_server(&ref_srv, base_a);
    let nb = Norm::for_server(&srv, base_b);
    eprintln!(
        "differential: {} requests; index shift etcd {base_a}, {} {base_b}",
        sa.len(),
        b_kind.label()
    );

    if let Ok(path) = std::env::var("PIKV_IT_DIFF_DUMP") {
        // Every exchange of both runs, for reading the script's effect by eye.
        let mut t = String::new();
        for (i, (x, y)) in sa.iter().zip(sb.iter()).enumerate() {
            t.push_str(&format!(
                "#{i} {}\n{}\n-- etcd:\n{}\n-- {}:\n{}\n\n",
                x.label,
                x.request,
                clip_to(&x.resp.dump(), 3000),
                b_kind.label(),
                clip_to(&y.resp.dump(), 3000)
            ));
        }
        std::fs::write(&path, t).expect("write PIKV_IT_DIFF_DUMP");
    }
    let mut failing = 0usize;
    let mut tolerated = 0usize;
    let mut report = String::new();
    for (i, (x, y)) in sa.iter().zip(sb.iter()).enumerate() {
        assert_eq!(x.label, y.label);
        let diffs = compare(&na.view(x), &nb.view(y));
        if diffs.is_empty() {
            continue;
        }
        report.push_str(&format!("\n#{i} {}\n  request: {}\n", x.label, x.request));
        for (field, what) in &diffs {
            let ok = allowed(&x.label, field);
            if ok {
                tolerated += 1;
            } else {
                failing += 1;
            }
            report.push_str(&format!(
                "  {} {field}: {what}\n",
                if ok { "allowed" } else { "DIFF" }
            ));
        }
        report.push_str(&format!(
            "  --- etcd:\n{}\n  --- {}:\n{}\n",
            indent(&clip_to(&x.resp.dump(), 3000)),
            b_kind.label(),
            indent(&clip_to(&y.resp.dump(), 3000))
        ));
    }
    if !report.is_empty() {
        eprintln!("differential report (etcd vs {}):{report}", b_kind.label());
    }
    eprintln!(
        "differential: {} requests compared, {failing} differences, {tolerated} allowed",
        sa.len()
    );
    assert_eq!(
        failing,
        0,
        "{failing} differences between etcd and {} (see the report above)",
        b_kind.label()
    );
}

fn indent(s: &str) -> String {
    s.lines()
        .map(|l| format!("    {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The normaliser must hide only what §18.1 says may differ: a shifted index is equal, a
/// wrong index, a different escape, member order or trailing newline is a difference.
#[test]
fn normaliser_shifts_indexes_and_still_sees_differences() {
    let mk = |hdr_idx: &str, body: &str| Step {
        label: "t".into(),
        request: "PUT /v2/keys/x".into(),
        params: vec![("prevIndex".into(), "9".into())],
        resp: Response {
            status: 412,
            reason: "Precondition Failed".into(),
            headers: vec![
                ("Content-Type".into(), "application/json".into()),
                ("X-Etcd-Index".into(), hdr_idx.into()),
                ("X-Etcd-Cluster-Id".into(), "c1".into()),
            ],
            body: body.as_bytes().to_vec(),
            chunked: false,
            chunks: vec![],
        },
        recv: SystemTime::now(),
    };
    let n = |base| Norm {
        base,
        client_port: 1,
        peer_port: 2,
        member_id: "m1".into(),
        cluster_id: "c1".into(),
    };
    let etcd = mk(
        "14",
        "{\"errorCode\":101,\"message\":\"Compare failed\",\"cause\":\"[9 != 14]\",\"index\":14}\n",
    );
    let same = mk(
        "11",
        "{\"errorCode\":101,\"message\":\"Compare failed\",\"cause\":\"[6 != 11]\",\"index\":11}\n",
    );
    assert!(compare(&n(3).view(&etcd), &n(0).view(&same)).is_empty());
    for bad in [
        mk("12", "{\"errorCode\":101,\"message\":\"Compare failed\",\"cause\":\"[6 != 11]\",\"index\":11}\n"),
        mk("11", "{\"errorCode\":101,\"message\":\"Compare failed\",\"cause\":\"[6 != 12]\",\"index\":11}\n"),
        mk("11", "{\"message\":\"Compare failed\",\"errorCode\":101,\"cause\":\"[6 != 11]\",\"index\":11}\n"),
        mk("11", "{\"errorCode\":101,\"message\":\"Compare failed\",\"cause\":\"[6 != 11]\",\"index\":11}"),
        mk("11", "{\"errorCode\":101,\"message\":\"Compare \\u0066ailed\",\"cause\":\"[6 != 11]\",\"index\":11}\n"),
    ] {
        assert!(!compare(&n(3).view(&etcd), &n(0).view(&bad)).is_empty(), "not caught: {}", bad.resp.text());
    }
}
