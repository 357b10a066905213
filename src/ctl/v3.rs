//! The etcdctl v3 spellings people type now (current etcd tutorials use them), over the v2
//! API: `put`, `get` (`--prefix`, `--keys-only`, `--print-value-only`, `--limit`),
//! `del` (`--prefix`, `--prev-kv`), `endpoint health` (`--cluster`) and
//! `member list` (`-w table`), with etcdctl v3's output, error lines and exit codes.
//!
//! A v3 key is a v2 key under `/` (`foo` is `/foo`); keys are shown as they were asked
//! (`get --prefix fo` lists `foo`, `get --prefix /app/` lists `/app/a`). What the v2 API
//! cannot give is refused with a clear line rather than faked: revisions (`--rev`),
//! leases, key ranges, `--from-key`, sorting options, the protobuf/JSON response formats
//! (they carry v3 revisions and headers).
//!
//! Chosen when `ETCDCTL_API=3`, when the command exists only in v3 (`put`, `del`,
//! `endpoint`), or when a v3-only flag is given (`--prefix`, `--keys-only`,
//! `--print-value-only`, `-w`/`--write-out`); otherwise `pikv ctl` is etcdctl v2.

use super::args::{flag, parse_interspersed, FlagDef, Kind, ParseError, Parsed};
use super::client::{Client, ClientConfig};
use super::commands::{decode, keys_target};
use super::error::{ClientError, Failure};
use super::http::{encode_values, Http, Method, Request, Timeouts};
use super::response::{decode_json, Members, Node};
use std::io::{Read, Write};
use std::time::{Duration, Instant};

/// etcdctl v3's `ExitError`.
const EXIT_ERROR: u8 = 1;
/// etcdctl v3's `ExitBadArgs`.
const EXIT_BAD_ARGS: u8 = 128;

const V3_ONLY_COMMANDS: &[&str] = &["put", "del", "endpoint"];
const V3_ONLY_FLAGS: &[&str] = &[
    "--prefix",
    "--keys-only",
    "--print-value-only",
    "-w",
    "--write-out",
];

const GLOBAL: &[FlagDef] = &[
    flag(&["endpoints"], Kind::Str, "gRPC endpoints"),
    flag(
        &["write-out", "w"],
        Kind::Str,
        "set the output format (simple, table)",
    ),
    flag(&["dial-timeout"], Kind::Duration, "dial timeout"),
    flag(&["command-timeout"], Kind::Duration, "command timeout"),
    flag(&["debug"], Kind::Bool, "enable client-side debug logging"),
    flag(&["hex"], Kind::Bool, "print byte strings as hex"),
    flag(&["user"], Kind::Str, "username[:password]"),
    flag(&["password"], Kind::Str, "password"),
    flag(&["cacert"], Kind::Str, "CA bundle"),
    flag(&["cert"], Kind::Str, "TLS certificate"),
    flag(&["key"], Kind::Str, "TLS key"),
    flag(&["insecure-transport"], Kind::Bool, "no TLS (always)"),
    flag(
        &["prefix"],
        Kind::Bool,
        "get or delete keys with the prefix",
    ),
    flag(&["keys-only"], Kind::Bool, "get only the keys"),
    flag(&["print-value-only"], Kind::Bool, "print only the value"),
    flag(&["limit"], Kind::Int, "maximum number of results"),
    flag(&["rev"], Kind::Int, "revision"),
    flag(&["from-key"], Kind::Bool, "keys from the given one on"),
    flag(&["sort-order"], Kind::Str, "order of results"),
    flag(&["sort-by"], Kind::Str, "sort target"),
    flag(
        &["consistency"],
        Kind::Str,
        "l (linearizable) or s (serializable)",
    ),
    flag(
        &["prev-kv"],
        Kind::Bool,
        "return the previous key-value pair",
    ),
    flag(&["lease"], Kind::Str, "lease ID"),
    flag(&["ignore-value"], Kind::Bool, "keep the current value"),
    flag(&["ignore-lease"], Kind::Bool, "keep the current lease"),
    flag(
        &["cluster"],
        Kind::Bool,
        "use all endpoints from the member list",
    ),
];

/// Whether this command line is etcdctl v3's (see the module doc).
pub fn wants_v3(args: &[String], api: &str) -> bool {
    if api == "3" {
        return true;
    }
    let v2_value_flags: Vec<&str> = super::GLOBAL_FLAGS
        .iter()
        .filter(|f| f.kind != Kind::Bool)
        .flat_map(|f| f.names.iter().copied())
        .collect();
    let mut i = 0;
    let mut command = None;
    while i < args.len() {
        let a = args[i].as_str();
        if let Some(name) = a.strip_prefix("--").or_else(|| a.strip_prefix('-')) {
            if !name.contains('=') && v2_value_flags.contains(&name) {
                i += 1;
            }
        } else {
            command = Some(a);
            break;
        }
        i += 1;
    }
    let Some(command) = command else {
        return false;
    };
    if V3_ONLY_COMMANDS.contains(&command) {
        return true;
    }
    matches!(command, "get" | "member")
        && args.iter().any(|a| {
            V3_ONLY_FLAGS
                .iter()
                .any(|f| a == f || a.starts_with(&format!("{f}=")))
        })
}

/// What a v3 command needs.
struct V3<'a> {
    client: Client,
    http: Http,
    endpoints: Vec<String>,
    dial: Duration,
    deadline: Instant,
    out: &'a mut dyn Write,
    err: &'a mut dyn Write,
    stdin: &'a mut dyn Read,
}

fn error(code: u8, text: impl std::fmt::Display) -> Failure {
    Failure::Message {
        code,
        text: format!("Error: {text}\n"),
    }
}

fn unsupported(what: &str) -> Failure {
    error(
        EXIT_ERROR,
        format!("{what} cannot be honoured over the v2 API (pikv ctl's v3 spellings)"),
    )
}

fn client_error(e: ClientError) -> Failure {
    error(EXIT_ERROR, e.to_string().trim_end())
}

/// Runs a v3 command line; the global flags may come anywhere (cobra's syntax).
pub fn run(
    args: &[String],
    env_endpoints: &str,
    stdin: &mut dyn Read,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<(), Failure> {
    let p = match parse_interspersed(GLOBAL, args) {
        Ok(p) => p,
        Err(ParseError::Help) => {
            out.write_all(HELP.as_bytes())?;
            return Ok(());
        }
        Err(ParseError::Bad(m)) => return Err(error(EXIT_BAD_ARGS, m)),
    };
    for (flag, what) in [
        ("user", "v3 authentication (--user)"),
        ("password", "v3 authentication (--password)"),
        ("cacert", "TLS (--cacert)"),
        ("cert", "TLS (--cert)"),
        ("key", "TLS (--key)"),
    ] {
        if !p.str(flag).is_empty() {
            return Err(unsupported(what));
        }
    }
    if p.bool("hex") {
        return Err(unsupported("--hex"));
    }
    let format = if p.given("write-out") {
        p.str("write-out")
    } else {
        "simple"
    };
    let endpoints: Vec<String> = [p.str("endpoints"), env_endpoints, "127.0.0.1:2379"]
        .into_iter()
        .find(|s| !s.is_empty())
        .unwrap_or("127.0.0.1:2379")
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            if s.contains("://") {
                s.to_string()
            } else {
                format!("http://{s}")
            }
        })
        .collect();
    let dial = p.duration("dial-timeout", Duration::from_secs(2));
    let command_timeout = p.duration("command-timeout", Duration::from_secs(5));
    let client = Client::new(&ClientConfig {
        endpoints: endpoints.clone(),
        header_timeout: command_timeout,
        total_timeout: command_timeout,
        debug: p.bool("debug"),
    })?;
    let mut v3 = V3 {
        client,
        http: Http::new(),
        endpoints,
        dial,
        deadline: Instant::now() + command_timeout,
        out,
        err,
        stdin,
    };
    let words: Vec<&str> = p.args.iter().map(String::as_str).collect();
    let simple_only = |name: &str| -> Result<(), Failure> {
        if format == "simple" {
            Ok(())
        } else {
            Err(unsupported(&format!("`{name} -w {format}`")))
        }
    };
    match words.as_slice() {
        ["put", rest @ ..] => {
            simple_only("put")?;
            v3.put(&p, rest)
        }
        ["get", rest @ ..] => {
            simple_only("get")?;
            v3.get(&p, rest)
        }
        ["del", rest @ ..] => {
            simple_only("del")?;
            v3.del(&p, rest)
        }
        ["endpoint", "health", ..] => {
            simple_only("endpoint health")?;
            v3.endpoint_health(p.bool("cluster"))
        }
        ["endpoint", other, ..] => Err(unsupported(&format!("`endpoint {other}`"))),
        ["member", "list", ..] => v3.member_list(format),
        ["member", other, ..] => Err(error(
            EXIT_ERROR,
            format!("`member {other}` in the v3 spelling is not in pikv ctl: use the v2 `member {other}` (without ETCDCTL_API=3)"),
        )),
        // cobra says it twice: once with the hint, once as the command's error.
        [other, ..] => Err(Failure::Message {
            code: EXIT_ERROR,
            text: format!("Error: unknown command {other:?} for \"etcdctl\"\nRun 'etcdctl --help' for usage.\nError: unknown command {other:?} for \"etcdctl\"\n"),
        }),
        [] => {
            v3.out.write_all(HELP.as_bytes())?;
            Ok(())
        }
    }
}

/// `key` as a v2 key, and how a v2 key is shown back (without the `/` the user did not
/// write).
fn shown(v2_key: &str, asked: &str) -> String {
    if asked.starts_with('/') {
        v2_key.to_string()
    } else {
        v2_key.trim_start_matches('/').to_string()
    }
}

fn leaves(node: &Node, into: &mut Vec<Node>) {
    match &node.nodes {
        Some(children) if node.dir => {
            for c in children {
                leaves(c, into);
            }
        }
        _ if !node.dir => into.push(node.clone()),
        _ => {}
    }
}

impl V3<'_> {
    fn send(&mut self, req: Request) -> Result<super::http::Response, Failure> {
        self.client
            .send(&req, Some(self.deadline), self.err)
            .map_err(client_error)
    }

    /// The leaves whose key starts with `prefix` (as a v2 key), sorted by key: a
    /// recursive listing of the deepest directory the prefix names.
    fn with_prefix(&mut self, prefix: &str, quorum: bool) -> Result<Vec<Node>, Failure> {
        let v2_prefix = format!("/{}", prefix.trim_start_matches('/'));
        let dir = match v2_prefix.rfind('/') {
            Some(0) | None => "/".to_string(),
            Some(i) => v2_prefix[..i].to_string(),
        };
        let q = [
            ("quorum", quorum.to_string()),
            ("recursive", "true".to_string()),
            ("sorted", "true".to_string()),
        ];
        let resp = self.send(Request::get(keys_target(&dir, &q)))?;
        if resp.status == 404 {
            return Ok(Vec::new());
        }
        let listing = decode(resp).map_err(client_error)?;
        let mut all = Vec::new();
        leaves(&listing.node(), &mut all);
        all.retain(|n| n.key.starts_with(&v2_prefix));
        all.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(all)
    }

    fn put(&mut self, p: &Parsed, rest: &[&str]) -> Result<(), Failure> {
        if !p.str("lease").is_empty() && p.str("lease") != "0" {
            return Err(unsupported("a lease (use the v2 `set --ttl`)"));
        }
        if p.bool("ignore-value") || p.bool("ignore-lease") {
            return Err(unsupported("--ignore-value/--ignore-lease"));
        }
        let (key, value) = match rest {
            [key, value, ..] => (key.to_string(), value.to_string()),
            [key] => {
                let mut buf = Vec::new();
                match self.stdin.read_to_end(&mut buf) {
                    Ok(_) if !buf.is_empty() => {
                        (key.to_string(), String::from_utf8_lossy(&buf).into_owned())
                    }
                    _ => return Err(error(EXIT_BAD_ARGS, PUT_ARGS)),
                }
            }
            [] => return Err(error(EXIT_BAD_ARGS, PUT_ARGS)),
        };
        let form = encode_values(&[("value", value)]);
        let resp = self.send(Request::with_form(
            Method::Put,
            keys_target(&key, &[]),
            form,
        ))?;
        let done = decode(resp).map_err(client_error)?;
        writeln!(self.out, "OK")?;
        if p.bool("prev-kv") {
            if let Some(prev) = done.prev_node.filter(|n| !n.dir) {
                writeln!(self.out, "{}\n{}", shown(&prev.key, &key), prev.value)?;
            }
        }
        Ok(())
    }

    fn get(&mut self, p: &Parsed, rest: &[&str]) -> Result<(), Failure> {
        let key = match rest {
            [key] => key.to_string(),
            [_, _] => return Err(unsupported("a key range [key, range_end) (use --prefix)")),
            _ => return Err(error(EXIT_BAD_ARGS, GET_ARGS)),
        };
        if p.int("rev") != 0 {
            return Err(unsupported("--rev (v2 keeps no revisions)"));
        }
        if p.bool("from-key") || p.given("sort-order") || p.given("sort-by") {
            return Err(unsupported("--from-key/--sort-order/--sort-by"));
        }
        let quorum = match p.str("consistency") {
            "" | "l" => true,
            "s" => false,
            other => {
                return Err(error(
                    EXIT_BAD_ARGS,
                    format!("unknown consistency flag {other:?}"),
                ))
            }
        };
        let mut found = if p.bool("prefix") {
            self.with_prefix(&key, quorum)?
        } else {
            let q = [("quorum", quorum.to_string())];
            let resp = self.send(Request::get(keys_target(&key, &q)))?;
            if resp.status == 404 {
                Vec::new()
            } else {
                let node = decode(resp).map_err(client_error)?.node();
                if node.dir {
                    Vec::new()
                } else {
                    vec![node]
                }
            }
        };
        if let Ok(limit) = usize::try_from(p.int("limit")) {
            if limit > 0 {
                found.truncate(limit);
            }
        }
        for n in &found {
            let k = shown(&n.key, &key);
            if p.bool("keys-only") {
                writeln!(self.out, "{k}\n")?;
            } else if p.bool("print-value-only") {
                writeln!(self.out, "{}", n.value)?;
            } else {
                writeln!(self.out, "{k}\n{}", n.value)?;
            }
        }
        Ok(())
    }

    fn del(&mut self, p: &Parsed, rest: &[&str]) -> Result<(), Failure> {
        let key = match rest {
            [key] => key.to_string(),
            [_, _] => return Err(unsupported("a key range [key, range_end) (use --prefix)")),
            _ => return Err(error(EXIT_BAD_ARGS, DEL_ARGS)),
        };
        if p.bool("from-key") {
            return Err(unsupported("--from-key"));
        }
        // v2 has no range delete: the keys with the prefix are deleted one by one.
        let targets: Vec<String> = if p.bool("prefix") {
            self.with_prefix(&key, true)?
                .into_iter()
                .map(|n| n.key)
                .collect()
        } else {
            vec![key.clone()]
        };
        let mut deleted = Vec::new();
        for t in targets {
            let resp = self.send(Request::delete(keys_target(&t, &[])))?;
            if resp.status == 404 {
                continue;
            }
            // A directory is no v3 key: a 403 "not a file" deletes nothing.
            if resp.status == 403 && !p.bool("prefix") {
                continue;
            }
            let done = decode(resp).map_err(client_error)?;
            if let Some(prev) = done.prev_node {
                deleted.push(prev);
            }
        }
        writeln!(self.out, "{}", deleted.len())?;
        if p.bool("prev-kv") {
            for n in &deleted {
                writeln!(self.out, "{}\n{}", shown(&n.key, &key), n.value)?;
            }
        }
        Ok(())
    }

    fn members(&mut self) -> Result<Members, Failure> {
        let resp = self.send(Request::get("/v2/members".to_string()))?;
        if resp.status != 200 {
            return Err(error(
                EXIT_ERROR,
                format!("listing the members: status {}", resp.status),
            ));
        }
        decode_json(&resp.body).map_err(|e| error(EXIT_ERROR, e))
    }

    fn endpoint_health(&mut self, cluster: bool) -> Result<(), Failure> {
        let endpoints = if cluster {
            self.members()?
                .members
                .into_iter()
                .flat_map(|m| m.client_urls)
                .collect()
        } else {
            self.endpoints.clone()
        };
        let mut unhealthy = false;
        for ep in &endpoints {
            let started = Instant::now();
            let t = Timeouts {
                connect: Some(self.dial),
                header: Some(self.dial + Duration::from_secs(3)),
                deadline: None,
            };
            let answer = self.http.send(ep, &Request::get("/health".to_string()), t);
            let took = crate::util::time::go_duration(
                u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX),
            );
            match answer {
                Ok(r) if r.status == 200 && String::from_utf8_lossy(&r.body).contains("true") => {
                    // etcdctl writes every endpoint's result to stderr.
                    writeln!(
                        self.err,
                        "{ep} is healthy: successfully committed proposal: took = {took}"
                    )?;
                }
                Ok(r) => {
                    unhealthy = true;
                    writeln!(
                        self.err,
                        "{ep} is unhealthy: failed to commit proposal: /health answered {}",
                        r.status
                    )?;
                }
                Err(e) => {
                    unhealthy = true;
                    writeln!(
                        self.err,
                        "{ep} is unhealthy: failed to commit proposal: {e}"
                    )?;
                }
            }
        }
        if unhealthy {
            return Err(error(EXIT_ERROR, "unhealthy cluster"));
        }
        Ok(())
    }

    fn member_list(&mut self, format: &str) -> Result<(), Failure> {
        let members = self.members()?.members;
        let rows: Vec<[String; 6]> = members
            .iter()
            .map(|m| {
                [
                    m.id.clone(),
                    if m.name.is_empty() {
                        "unstarted".to_string()
                    } else {
                        "started".to_string()
                    },
                    m.name.clone(),
                    m.peer_urls.join(","),
                    m.client_urls.join(","),
                    "false".to_string(),
                ]
            })
            .collect();
        match format {
            "simple" => {
                for r in &rows {
                    writeln!(self.out, "{}", r.join(", "))?;
                }
                Ok(())
            }
            "table" => {
                let header = [
                    "ID",
                    "STATUS",
                    "NAME",
                    "PEER ADDRS",
                    "CLIENT ADDRS",
                    "IS LEARNER",
                ];
                self.out.write_all(table(&header, &rows).as_bytes())?;
                Ok(())
            }
            other => Err(unsupported(&format!("`member list -w {other}`"))),
        }
    }
}

/// etcdctl's tablewriter layout: a ruled header centred, cells right-aligned.
fn table(header: &[&str; 6], rows: &[[String; 6]]) -> String {
    let widths: Vec<usize> = (0..6)
        .map(|i| {
            rows.iter()
                .map(|r| r[i].chars().count())
                .chain([header[i].chars().count()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let rule: String = widths
        .iter()
        .map(|w| format!("+{}", "-".repeat(w + 2)))
        .collect::<String>()
        + "+\n";
    let mut out = rule.clone();
    for (i, h) in header.iter().enumerate() {
        let gap = widths[i] - h.chars().count();
        let left = gap / 2;
        out.push_str(&format!(
            "| {}{h}{} ",
            " ".repeat(left),
            " ".repeat(gap - left)
        ));
    }
    out.push_str("|\n");
    out.push_str(&rule);
    for r in rows {
        for (i, cell) in r.iter().enumerate() {
            out.push_str(&format!("| {cell:>w$} ", w = widths[i]));
        }
        out.push_str("|\n");
    }
    out.push_str(&rule);
    out
}

const PUT_ARGS: &str = "put command needs 1 argument and input from stdin or 2 arguments";
const GET_ARGS: &str =
    "get command needs one argument as key and an optional argument as range_end";
const DEL_ARGS: &str =
    "del command needs one argument as key and an optional argument as range_end";

const HELP: &str = "\
pikv ctl: etcdctl v3 spellings over the v2 API (ETCDCTL_API=3, or a v3-only
command or flag):

  put KEY VALUE [--prev-kv]          VALUE from stdin when not given
  get KEY [--prefix] [--keys-only] [--print-value-only] [--limit N]
          [--consistency l|s]
  del KEY [--prefix] [--prev-kv]     v2 has no range delete: one DELETE per key
  endpoint health [--cluster]
  member list [-w simple|table]

Global: --endpoints (or ETCDCTL_ENDPOINTS), -w/--write-out, --dial-timeout,
--command-timeout, --debug. Revisions, leases, key ranges, --from-key, sort
options and the json/protobuf/fields output formats have no v2 counterpart and
are refused with a message. The v2 commands are `pikv ctl --help`.
";

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn v3_is_chosen_by_the_api_variable_a_v3_command_or_a_v3_flag() {
        assert!(wants_v3(&s(&["get", "k"]), "3"));
        assert!(wants_v3(&s(&["put", "k", "v"]), ""));
        assert!(wants_v3(&s(&["--endpoints", "x", "del", "k"]), ""));
        assert!(wants_v3(&s(&["endpoint", "health"]), ""));
        assert!(wants_v3(&s(&["get", "k", "--prefix"]), ""));
        assert!(wants_v3(&s(&["member", "list", "-w", "table"]), ""));
        assert!(wants_v3(&s(&["member", "list", "--write-out=table"]), ""));
        assert!(!wants_v3(&s(&["get", "k"]), ""));
        assert!(!wants_v3(&s(&["get", "k"]), "2"));
        assert!(!wants_v3(&s(&["member", "list"]), ""));
        // A v2 flag's value is not the command.
        assert!(!wants_v3(&s(&["--endpoints", "put", "get", "k"]), ""));
        assert!(!wants_v3(&s(&["set", "put", "x"]), ""));
    }

    #[test]
    fn tables_are_laid_out_as_etcdctls() {
        let rows = [[
            "61f97220ab052a12".to_string(),
            "started".to_string(),
            "default".to_string(),
            "http://127.0.0.1:23380".to_string(),
            "http://127.0.0.1:23379".to_string(),
            "false".to_string(),
        ]];
        let header = [
            "ID",
            "STATUS",
            "NAME",
            "PEER ADDRS",
            "CLIENT ADDRS",
            "IS LEARNER",
        ];
        // etcdctl 3.4's output for this member, byte for byte.
        assert_eq!(
            table(&header, &rows),
            "\
+------------------+---------+---------+------------------------+------------------------+------------+
|        ID        | STATUS  |  NAME   |       PEER ADDRS       |      CLIENT ADDRS      | IS LEARNER |
+------------------+---------+---------+------------------------+------------------------+------------+
| 61f97220ab052a12 | started | default | http://127.0.0.1:23380 | http://127.0.0.1:23379 |      false |
+------------------+---------+---------+------------------------+------------------------+------------+
"
        );
    }

    #[test]
    fn keys_are_shown_as_they_were_asked() {
        assert_eq!(shown("/foo", "fo"), "foo");
        assert_eq!(shown("/app/a", "/app/"), "/app/a");
    }
}
