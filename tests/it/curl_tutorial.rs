//! The curl commands users copy from the tutorials (`../shared/tutorials/001_*.txt`) and from
//! the spec's §3/§5/§7 examples, run with the real `curl` binary (`-s -i`).
//!
//! What it proves: the exact status lines, the etcd headers (Content-Type, X-Etcd-Cluster-Id
//! as derived in spec §10.6, X-Etcd-Index, X-Raft-Index/-Term, CORS) and the exact JSON bodies
//! (member order, trailing newline) that those commands print. Indexes in expected bodies are
//! computed from the server's own first write, so the same test holds for etcd (which spends
//! 3 indexes on bookkeeping first) and for pikv.

use crate::support::{self, Server, TempDir};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

struct Curl {
    status: String,
    headers: Vec<(String, String)>,
    body: String,
}

impl Curl {
    fn header(&self, n: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(n))
            .map(|(_, v)| v.as_str())
    }
}

fn curl(args: &[&str]) -> Curl {
    let out = Command::new("curl")
        .args(["-s", "-i", "--max-time", "20"])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run curl");
    assert!(out.status.success(), "curl {args:?} failed: {}", out.status);
    parse(&String::from_utf8_lossy(&out.stdout), args)
}

fn parse(text: &str, args: &[&str]) -> Curl {
    let mut rest = text;
    // skip interim responses such as "HTTP/1.1 100 Continue"
    loop {
        let (head, body) = rest
            .split_once("\r\n\r\n")
            .unwrap_or_else(|| panic!("curl {args:?}: no header block in {text:?}"));
        let mut lines = head.split("\r\n");
        let status = lines.next().unwrap().to_string();
        if status.contains(" 100 ") {
            rest = body;
            continue;
        }
        let headers = lines
            .filter_map(|l| l.split_once(": "))
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect();
        return Curl {
            status,
            headers,
            body: body.to_string(),
        };
    }
}

/// Asserts the headers every keys response carries.
fn keys_headers(r: &Curl, s: &Server, index: u64, success: bool) {
    let (_, cluster) = s.expected_ids();
    assert_eq!(
        r.header("Content-Type"),
        Some("application/json"),
        "{:?}",
        r.headers
    );
    assert_eq!(
        r.header("X-Etcd-Cluster-Id"),
        Some(cluster.as_str()),
        "{:?}",
        r.headers
    );
    assert_eq!(
        r.header("X-Etcd-Index"),
        Some(index.to_string().as_str()),
        "{:?}",
        r.headers
    );
    assert_eq!(
        r.header("Access-Control-Allow-Origin"),
        Some("*"),
        "{:?}",
        r.headers
    );
    assert_eq!(
        r.header("Access-Control-Allow-Methods"),
        Some("POST, GET, OPTIONS, PUT, DELETE")
    );
    assert_eq!(
        r.header("Access-Control-Allow-Headers"),
        Some("accept, content-type, authorization")
    );
    for h in ["X-Raft-Index", "X-Raft-Term"] {
        match r.header(h) {
            Some(v) if success => assert!(v.parse::<u64>().is_ok(), "{h}: {v}"),
            None if !success => {}
            other => panic!("{h} = {other:?} on a {} response", r.status),
        }
    }
}

#[test]
fn curl_tutorial_and_spec_examples() {
    support::require_tool("curl");
    let s = Server::start(support::target());
    let u = |p: &str| format!("{}{p}", s.client_url());

    // fresh server: the root is an empty directory
    let r = curl(&[&u("/v2/keys/")]);
    assert_eq!(r.status, "HTTP/1.1 200 OK");
    assert_eq!(r.body, "{\"action\":\"get\",\"node\":{\"dir\":true}}\n");
    let base = r.header("X-Etcd-Index").unwrap().parse::<u64>().unwrap();
    keys_headers(&r, &s, base, true);
    let i = |n: u64| base + n; // the n-th write of this test

    // tutorial 001: curl host:2379/v2/keys/hello -XPUT -d value="world", twice, then GET
    let r = curl(&[&u("/v2/keys/hello"), "-XPUT", "-d", "value=world"]);
    assert_eq!(r.status, "HTTP/1.1 201 Created");
    keys_headers(&r, &s, i(1), true);
    assert_eq!(
        r.body,
        format!("{{\"action\":\"set\",\"node\":{{\"key\":\"/hello\",\"value\":\"world\",\"modifiedIndex\":{0},\"createdIndex\":{0}}}}}\n", i(1))
    );
    let r = curl(&[&u("/v2/keys/hello"), "-XPUT", "-d", "value=world"]);
    assert_eq!(r.status, "HTTP/1.1 200 OK");
    keys_headers(&r, &s, i(2), true);
    assert_eq!(
        r.body,
        format!(
            "{{\"action\":\"set\",\"node\":{{\"key\":\"/hello\",\"value\":\"world\",\"modifiedIndex\":{1},\"createdIndex\":{1}}},\"prevNode\":{{\"key\":\"/hello\",\"value\":\"world\",\"modifiedIndex\":{0},\"createdIndex\":{0}}}}}\n",
            i(1),
            i(2)
        )
    );
    let r = curl(&[&u("/v2/keys/hello")]);
    assert_eq!(r.status, "HTTP/1.1 200 OK");
    keys_headers(&r, &s, i(2), true);
    let get_body = format!("{{\"action\":\"get\",\"node\":{{\"key\":\"/hello\",\"value\":\"world\",\"modifiedIndex\":{0},\"createdIndex\":{0}}}}}\n", i(2));
    assert_eq!(r.body, get_body);
    assert_eq!(
        r.header("Content-Length"),
        Some(get_body.len().to_string().as_str())
    );

    // HEAD (curl -I): same headers, Content-Length of the GET body, no body
    let r = curl(&["-I", &u("/v2/keys/hello")]);
    assert_eq!(r.status, "HTTP/1.1 200 OK");
    keys_headers(&r, &s, i(2), true);
    assert_eq!(
        r.header("Content-Length"),
        Some(get_body.len().to_string().as_str())
    );
    assert_eq!(r.body, "");

    // spec §5.3: message set/replace, foo with ttl, update clearing the ttl, create conflict
    let r = curl(&[&u("/v2/keys/message"), "-XPUT", "-d", "value=Hello world"]);
    assert_eq!(r.status, "HTTP/1.1 201 Created");
    assert_eq!(
        r.body,
        format!("{{\"action\":\"set\",\"node\":{{\"key\":\"/message\",\"value\":\"Hello world\",\"modifiedIndex\":{0},\"createdIndex\":{0}}}}}\n", i(3))
    );
    let r = curl(&[&u("/v2/keys/message"), "-XPUT", "-d", "value=Hello etcd"]);
    assert_eq!(r.status, "HTTP/1.1 200 OK");
    assert_eq!(
        r.body,
        format!("{{\"action\":\"set\",\"node\":{{\"key\":\"/message\",\"value\":\"Hello etcd\",\"modifiedIndex\":{1},\"createdIndex\":{1}}},\"prevNode\":{{\"key\":\"/message\",\"value\":\"Hello world\",\"modifiedIndex\":{0},\"createdIndex\":{0}}}}}\n", i(3), i(4))
    );
    let sent = std::time::Instant::now();
    let r = curl(&[
        &u("/v2/keys/foo"),
        "-XPUT",
        "-d",
        "value=bar",
        "-d",
        "ttl=5",
    ]);
    // Like etcd, the expiration is fixed when the request is parsed and the ttl shown is what
    // remains when the reply is rendered, so a slow commit (qemu on a busy CI machine) shows
    // less than 5: never more, and never less than the time the request took allows.
    let waited = sent.elapsed().as_secs() as i64 + 1;
    assert_eq!(r.status, "HTTP/1.1 201 Created");
    let j: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    let ttl = j["node"]["ttl"].as_i64().unwrap_or(0);
    assert!(
        ttl <= 5 && ttl >= 5 - waited,
        "ttl after {waited} s: {}",
        r.body
    );
    let exp = j["node"]["expiration"].as_str().expect("expiration");
    assert!(exp.ends_with('Z') && exp.contains('T'), "expiration {exp}");
    assert!(
        r.body.starts_with(
            "{\"action\":\"set\",\"node\":{\"key\":\"/foo\",\"value\":\"bar\",\"expiration\":\""
        ),
        "member order: {}",
        r.body
    );
    let r = curl(&[
        &u("/v2/keys/foo"),
        "-XPUT",
        "-d",
        "value=bar",
        "-d",
        "ttl=",
        "-d",
        "prevExist=true",
    ]);
    assert_eq!(r.status, "HTTP/1.1 200 OK");
    let j: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(j["action"], "update");
    assert!(
        j["node"]["ttl"].is_null() && j["node"]["expiration"].is_null(),
        "{}",
        r.body
    );
    // prevNode's ttl is the remaining time when the update ran: 5 less the seconds since the
    // first curl was sent.
    let waited = sent.elapsed().as_secs() as i64 + 1;
    let prev_ttl = j["prevNode"]["ttl"].as_i64().unwrap_or(0);
    assert!(
        prev_ttl <= 5 && prev_ttl >= 5 - waited,
        "after {waited} s: {}",
        r.body
    );
    let r = curl(&[
        &u("/v2/keys/foo"),
        "-XPUT",
        "-d",
        "value=baz",
        "-d",
        "prevExist=false",
    ]);
    assert_eq!(r.status, "HTTP/1.1 412 Precondition Failed");
    keys_headers(&r, &s, i(6), false);
    assert_eq!(r.body, format!("{{\"errorCode\":105,\"message\":\"Key already exists\",\"cause\":\"/foo\",\"index\":{}}}\n", i(6)));

    // create, compare-and-swap, compare failures
    let r = curl(&[
        &u("/v2/keys/new"),
        "-XPUT",
        "-d",
        "value=one",
        "-d",
        "prevExist=false",
    ]);
    assert_eq!(r.status, "HTTP/1.1 201 Created");
    assert_eq!(r.body, format!("{{\"action\":\"create\",\"node\":{{\"key\":\"/new\",\"value\":\"one\",\"modifiedIndex\":{0},\"createdIndex\":{0}}}}}\n", i(7)));
    let r = curl(&[
        &u("/v2/keys/new"),
        "-XPUT",
        "-d",
        "value=two",
        "-d",
        "prevValue=one",
    ]);
    assert_eq!(r.status, "HTTP/1.1 200 OK");
    assert_eq!(
        r.body,
        format!("{{\"action\":\"compareAndSwap\",\"node\":{{\"key\":\"/new\",\"value\":\"two\",\"modifiedIndex\":{1},\"createdIndex\":{0}}},\"prevNode\":{{\"key\":\"/new\",\"value\":\"one\",\"modifiedIndex\":{0},\"createdIndex\":{0}}}}}\n", i(7), i(8))
    );
    let r = curl(&[
        &u("/v2/keys/new"),
        "-XPUT",
        "-d",
        "value=three",
        "-d",
        "prevValue=one",
    ]);
    assert_eq!(r.status, "HTTP/1.1 412 Precondition Failed");
    assert_eq!(r.body, format!("{{\"errorCode\":101,\"message\":\"Compare failed\",\"cause\":\"[one != two]\",\"index\":{}}}\n", i(8)));
    let stale = i(7).to_string();
    let r = curl(&[
        &u("/v2/keys/new"),
        "-XPUT",
        "-d",
        "value=three",
        "-d",
        &format!("prevIndex={stale}"),
    ]);
    assert_eq!(r.status, "HTTP/1.1 412 Precondition Failed");
    assert_eq!(r.body, format!("{{\"errorCode\":101,\"message\":\"Compare failed\",\"cause\":\"[{} != {}]\",\"index\":{}}}\n", i(7), i(8), i(8)));
    let r = curl(&[&u("/v2/keys/t1"), "-XPUT", "-d", "ttl=abc", "-d", "value=1"]);
    assert_eq!(r.status, "HTTP/1.1 400 Bad Request");
    keys_headers(&r, &s, 0, false);
    assert_eq!(r.body, "{\"errorCode\":202,\"message\":\"The given TTL in POST form is not a number\",\"cause\":\"invalid value for \\\"ttl\\\"\",\"index\":0}\n");

    // §3: directory listings (sorted; the hidden key is not listed), recursive
    for (k, v) in [("/dir/a", "1"), ("/dir/sub/b", "2"), ("/dir/_hidden", "h")] {
        let r = curl(&[
            &u(&format!("/v2/keys{k}")),
            "-XPUT",
            "-d",
            &format!("value={v}"),
        ]);
        assert_eq!(r.status, "HTTP/1.1 201 Created", "{k}: {}", r.body);
    }
    let (a, b) = (i(9), i(10));
    let r = curl(&[&u("/v2/keys/dir?sorted=true")]);
    assert_eq!(r.status, "HTTP/1.1 200 OK");
    keys_headers(&r, &s, i(11), true);
    assert_eq!(
        r.body,
        format!("{{\"action\":\"get\",\"node\":{{\"key\":\"/dir\",\"dir\":true,\"nodes\":[{{\"key\":\"/dir/a\",\"value\":\"1\",\"modifiedIndex\":{a},\"createdIndex\":{a}}},{{\"key\":\"/dir/sub\",\"dir\":true,\"modifiedIndex\":{b},\"createdIndex\":{b}}}],\"modifiedIndex\":{a},\"createdIndex\":{a}}}}}\n")
    );
    let r = curl(&[&u("/v2/keys/dir?recursive=true&sorted=true")]);
    assert_eq!(
        r.body,
        format!("{{\"action\":\"get\",\"node\":{{\"key\":\"/dir\",\"dir\":true,\"nodes\":[{{\"key\":\"/dir/a\",\"value\":\"1\",\"modifiedIndex\":{a},\"createdIndex\":{a}}},{{\"key\":\"/dir/sub\",\"dir\":true,\"nodes\":[{{\"key\":\"/dir/sub/b\",\"value\":\"2\",\"modifiedIndex\":{b},\"createdIndex\":{b}}}],\"modifiedIndex\":{b},\"createdIndex\":{b}}}],\"modifiedIndex\":{a},\"createdIndex\":{a}}}}}\n")
    );
    let r = curl(&[&u("/v2/keys/dir/a/x")]);
    assert_eq!(r.status, "HTTP/1.1 400 Bad Request");
    assert_eq!(r.body, format!("{{\"errorCode\":104,\"message\":\"Not a directory\",\"cause\":\"/dir/a\",\"index\":{}}}\n", i(11)));

    // §7: delete, then the 404
    let r = curl(&[&u("/v2/keys/message"), "-XDELETE"]);
    assert_eq!(r.status, "HTTP/1.1 200 OK");
    keys_headers(&r, &s, i(12), true);
    assert_eq!(
        r.body,
        format!("{{\"action\":\"delete\",\"node\":{{\"key\":\"/message\",\"modifiedIndex\":{},\"createdIndex\":{1}}},\"prevNode\":{{\"key\":\"/message\",\"value\":\"Hello etcd\",\"modifiedIndex\":{1},\"createdIndex\":{1}}}}}\n", i(12), i(4))
    );
    let r = curl(&[&u("/v2/keys/message")]);
    assert_eq!(r.status, "HTTP/1.1 404 Not Found");
    keys_headers(&r, &s, i(12), false);
    assert_eq!(r.body, format!("{{\"errorCode\":100,\"message\":\"Key not found\",\"cause\":\"/message\",\"index\":{}}}\n", i(12)));

    // §5.5: --data-urlencode value@file stores a file's contents
    let tmp = TempDir::new("curl");
    let f = tmp.path().join("v.txt");
    std::fs::write(&f, "line one & <two>\nline=3 +4%\n").unwrap();
    let r = curl(&[
        &u("/v2/keys/file"),
        "-XPUT",
        "--data-urlencode",
        &format!("value@{}", f.display()),
    ]);
    assert_eq!(r.status, "HTTP/1.1 201 Created");
    let j: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(j["node"]["value"], "line one & <two>\nline=3 +4%\n");
    assert!(
        r.body.contains("\\u0026 \\u003ctwo\\u003e\\n"),
        "Go escaping: {}",
        r.body
    );

    // §6: POST creates in-order keys
    let r = curl(&[&u("/v2/keys/queue"), "-XPOST", "-d", "value=Job1"]);
    assert_eq!(r.status, "HTTP/1.1 201 Created");
    assert_eq!(r.body, format!("{{\"action\":\"create\",\"node\":{{\"key\":\"/queue/{0:020}\",\"value\":\"Job1\",\"modifiedIndex\":{0},\"createdIndex\":{0}}}}}\n", i(14)));

    // §13: OPTIONS with an Origin; §1.4: 301 for an unclean path, 405, 404
    let r = curl(&[
        "-XOPTIONS",
        &u("/v2/keys/foo"),
        "-H",
        "Origin: http://example.com",
        "-H",
        "Access-Control-Request-Method: PUT",
    ]);
    assert_eq!(r.status, "HTTP/1.1 200 OK");
    assert_eq!(r.header("Access-Control-Allow-Origin"), Some("*"));
    assert_eq!(r.header("Content-Length"), Some("0"));
    assert!(r.header("X-Etcd-Index").is_none() && r.body.is_empty());
    let r = curl(&[
        "--path-as-is",
        &u("/v2/keys//afile?recursive=true"),
        "-XPUT",
        "-d",
        "value=zz",
    ]);
    assert_eq!(r.status, "HTTP/1.1 301 Moved Permanently");
    assert_eq!(r.header("Location"), Some("/v2/keys/afile?recursive=true"));
    let r = curl(&[&u("/v2/keys/cas"), "-XPATCH"]);
    assert_eq!(r.status, "HTTP/1.1 405 Method Not Allowed");
    assert_eq!(r.header("Allow"), Some("HEAD,GET,PUT,POST,DELETE"));
    assert_eq!(r.body, "Method Not Allowed\n");
    let r = curl(&[&u("/v2/keysfoo")]);
    assert_eq!(r.status, "HTTP/1.1 404 Not Found");
    assert_eq!(r.body, "404 page not found\n");
    let r = curl(&[&u("/health")]);
    assert_eq!(r.status, "HTTP/1.1 200 OK");
    assert_eq!(r.body, "{\"health\":\"true\"}");

    // §4.5: curl '...?wait=true' blocks until another client writes
    let watchers = || -> u64 {
        let r = curl(&[&u("/v2/stats/store")]);
        serde_json::from_str::<serde_json::Value>(&r.body).unwrap()["watchers"]
            .as_u64()
            .unwrap()
    };
    let before = watchers();
    let mut guard = support::ChildGuard(Some(
        Command::new("curl")
            .args([
                "-s",
                "-i",
                "--max-time",
                "20",
                &u("/v2/keys/wfoo?wait=true"),
            ])
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn curl watch"),
    ));
    let deadline = Instant::now() + Duration::from_secs(15);
    while watchers() <= before {
        assert!(Instant::now() < deadline, "curl watch never parked");
        std::thread::sleep(Duration::from_millis(20));
    }
    let w = curl(&[&u("/v2/keys/wfoo"), "-XPUT", "-d", "value=bar"]);
    assert_eq!(w.status, "HTTP/1.1 201 Created");
    let out = guard.take().wait_with_output().expect("curl watch output");
    let r = parse(&String::from_utf8_lossy(&out.stdout), &["watch"]);
    assert_eq!(r.status, "HTTP/1.1 200 OK");
    assert_eq!(r.header("Transfer-Encoding"), Some("chunked"));
    keys_headers(&r, &s, i(14), true);
    assert_eq!(r.body, format!("{{\"action\":\"set\",\"node\":{{\"key\":\"/wfoo\",\"value\":\"bar\",\"modifiedIndex\":{0},\"createdIndex\":{0}}}}}\n", i(15)));
}
