//! `member list|add|remove|update` and `cluster-health`: etcd's Go `MembersAPI` over
//! `/v2/members` and etcdctl's output, messages and exit codes for them.
//!
//! Unlike the key commands, the member commands print their own errors (no `Error:  `
//! prefix, exit 1), and check their arguments before the member sync.

use std::time::{Duration, Instant};

use super::args::Parsed;
use super::commands::Ctx;
use super::error::{ClientError, Failure, EXIT_BAD_ARGS, EXIT_NO_COMMAND, EXIT_SERVER_ERROR};
use super::http::{Http, Method, Request, Timeouts};
use super::response::{decode_json, FromJson, Member, Members};
use crate::api::json::write_json_string;
use crate::cli::argv::check_url;

/// etcdctl's `ExitClusterNotHealthy`.
const EXIT_CLUSTER_NOT_HEALTHY: u8 = 5;

/// How long `cluster-health --forever` waits between rounds (etcdctl: 10 s).
const HEALTH_INTERVAL: Duration = Duration::from_secs(10);

/// A member command's failure: the message on stderr as it is, exit 1.
fn fail(text: String) -> Failure {
    Failure::Message {
        code: EXIT_BAD_ARGS,
        text,
    }
}

/// The Go client's `assertStatusCode` error.
fn unexpected(status: u16) -> ClientError {
    ClientError::Other(format!("unexpected status code {status}"))
}

/// Decodes a JSON body, worded like Go's `json.Unmarshal` failures as far as it matters
/// (the text only appears in error messages).
fn parse<T: FromJson>(body: &[u8]) -> Result<T, ClientError> {
    decode_json(body).map_err(|e| ClientError::Other(format!("invalid JSON: {e}")))
}

/// The error body of a refused member change (`{"message":"membership: peerURL exists"}`).
fn members_error(body: &[u8]) -> ClientError {
    match serde_json::from_slice::<serde_json::Value>(body) {
        Ok(v) => ClientError::Other(
            v.get("message")
                .and_then(serde_json::Value::as_str)
                .unwrap_or_default()
                .to_string(),
        ),
        Err(e) => ClientError::Other(format!("invalid JSON: {e}")),
    }
}

impl Ctx<'_> {
    fn members_request(
        &mut self,
        req: Request,
        deadline: Option<Instant>,
    ) -> Result<super::http::Response, ClientError> {
        self.client.send(&req, deadline, self.err)
    }

    /// `MembersAPI.List`.
    fn list_members(&mut self, deadline: Option<Instant>) -> Result<Vec<Member>, ClientError> {
        let r = self.members_request(Request::get("/v2/members".into()), deadline)?;
        if r.status != 200 {
            return Err(unexpected(r.status));
        }
        Ok(parse::<Members>(&r.body)?.members)
    }
}

/// etcd's `types.NewURLs` for the peer URLs of `member add`/`update`: checked, trimmed,
/// sorted.
fn peer_urls(items: &[&str]) -> Result<Vec<String>, String> {
    if items.is_empty() {
        return Err("no valid URLs given".into());
    }
    let mut urls = Vec::new();
    for item in items {
        let u = item.trim();
        // Go's url.Parse, before NewURLs' own checks: a port must be digits.
        if let Some((_, rest)) = u.split_once("://") {
            let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
            let hostport = authority.rsplit('@').next().unwrap_or_default();
            let port = match hostport.rfind(']') {
                Some(close) => hostport[close + 1..].strip_prefix(':'),
                None => hostport.rfind(':').map(|i| &hostport[i + 1..]),
            };
            if let Some(port) = port.filter(|p| !p.bytes().all(|b| b.is_ascii_digit())) {
                return Err(format!("parse {u:?}: invalid port \":{port}\" after host"));
            }
        }
        check_url(u)?;
        urls.push(u.to_string());
    }
    urls.sort();
    Ok(urls)
}

fn peer_urls_json(urls: &[String]) -> String {
    let mut out = b"{\"peerURLs\":[".to_vec();
    for (i, u) in urls.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_json_string(&mut out, u);
    }
    out.extend_from_slice(b"]}");
    String::from_utf8_lossy(&out).into_owned()
}

/// Go's `%q` of a string (for the `ETCD_*=` lines of `member add`).
fn go_quote(s: &str) -> String {
    format!("{s:?}")
}

/// `member <subcommand>`.
pub fn member(c: &mut Ctx, p: &Parsed) -> Result<(), Failure> {
    let Some((sub, args)) = p.args.split_first() else {
        let help = super::commands::find("member")
            .map(|d| super::help::command(c.prog, d))
            .unwrap_or_default();
        c.out.write_all(help.as_bytes())?;
        return Ok(());
    };
    match sub.as_str() {
        "list" => member_list(c, args),
        "add" => member_add(c, args),
        "remove" => member_remove(c, args),
        "update" => member_update(c, args),
        other => Err(Failure::Message {
            code: EXIT_NO_COMMAND,
            text: format!("No help topic for '{other}'\n"),
        }),
    }
}

fn member_list(c: &mut Ctx, args: &[String]) -> Result<(), Failure> {
    if !args.is_empty() {
        return Err(fail("No arguments accepted\n".into()));
    }
    c.connect()?;
    let deadline = Some(Instant::now() + c.total_timeout);
    let members = c
        .list_members(deadline)
        .map_err(|e| fail(format!("{e}\n")))?;
    let leader = (|| {
        let r = c.members_request(Request::get("/v2/members/leader".into()), deadline)?;
        if r.status != 200 {
            return Err(unexpected(r.status));
        }
        parse::<Member>(&r.body)
    })()
    .map_err(|e| fail(format!("Failed to get leader:  {e}\n")))?;
    for m in &members {
        if m.name.is_empty() {
            writeln!(
                c.out,
                "{}[unstarted]: peerURLs={}",
                m.id,
                m.peer_urls.join(",")
            )?;
        } else {
            writeln!(
                c.out,
                "{}: name={} peerURLs={} clientURLs={} isLeader={}",
                m.id,
                m.name,
                m.peer_urls.join(","),
                m.client_urls.join(","),
                m.id == leader.id
            )?;
        }
    }
    Ok(())
}

fn member_add(c: &mut Ctx, args: &[String]) -> Result<(), Failure> {
    let [name, url] = args else {
        return Err(fail("Provide a name and a single member peerURL\n".into()));
    };
    c.connect()?;
    let deadline = Some(Instant::now() + c.total_timeout);
    let urls = peer_urls(&[url.as_str()]).map_err(|e| fail(format!("{e}\n")))?;
    let req = Request::with_json(Method::Post, "/v2/members".into(), peer_urls_json(&urls));
    let added = (|| {
        let r = c.members_request(req, deadline)?;
        match r.status {
            201 => parse::<Member>(&r.body),
            409 => Err(members_error(&r.body)),
            s => Err(unexpected(s)),
        }
    })()
    .map_err(|e| fail(format!("{e}\n")))?;
    writeln!(
        c.out,
        "Added member named {name} with ID {} to cluster",
        added.id
    )?;
    let members = c
        .list_members(deadline)
        .map_err(|e| fail(format!("{e}\n")))?;
    let mut conf = Vec::new();
    for m in &members {
        let n = if m.id == added.id { name } else { &m.name };
        for u in &m.peer_urls {
            conf.push(format!("{n}={u}"));
        }
    }
    writeln!(c.out)?;
    writeln!(c.out, "ETCD_NAME={}", go_quote(name))?;
    writeln!(c.out, "ETCD_INITIAL_CLUSTER={}", go_quote(&conf.join(",")))?;
    writeln!(c.out, "ETCD_INITIAL_CLUSTER_STATE=\"existing\"")?;
    Ok(())
}

fn member_remove(c: &mut Ctx, args: &[String]) -> Result<(), Failure> {
    let [id] = args else {
        return Err(fail("Provide a single member ID\n".into()));
    };
    c.connect()?;
    let deadline = Some(Instant::now() + c.total_timeout);
    let members = c.list_members(deadline).map_err(|e| {
        fail(format!(
            "Error while verifying ID against known members: {e}\n"
        ))
    })?;
    let mut found = false;
    for m in &members {
        found |= &m.id == id;
        if &m.name == id {
            write!(
                c.err,
                "Found a member named {}; if this is correct, please use its ID, eg:\n\t\
                 etcdctl member remove {}\n\
                 For more details, read the documentation at \
                 https://github.com/etcd-io/etcd/blob/master/Documentation/\
                 runtime-configuration.md#remove-a-member\n\n",
                m.name, m.id
            )?;
        }
    }
    if !found {
        return Err(fail(format!(
            "Couldn't find a member in the cluster with an ID of {id}.\n"
        )));
    }
    let r = c
        .members_request(Request::delete(format!("/v2/members/{id}")), deadline)
        .and_then(|r| match r.status {
            204 | 410 => Ok(()),
            s => Err(unexpected(s)),
        });
    if let Err(e) = r {
        // etcdctl ends this message without a newline.
        return Err(fail(format!(
            "Received an error trying to remove member {id}: {e}"
        )));
    }
    writeln!(c.out, "Removed member {id} from cluster")?;
    Ok(())
}

fn member_update(c: &mut Ctx, args: &[String]) -> Result<(), Failure> {
    let [id, urls] = args else {
        return Err(fail(
            "Provide an ID and a list of comma separated peerURL \
             (0xabcd http://example.com,http://example1.com)\n"
                .into(),
        ));
    };
    c.connect()?;
    let deadline = Some(Instant::now() + c.total_timeout);
    let items: Vec<&str> = urls.split(',').collect();
    let urls = peer_urls(&items).map_err(|e| fail(format!("{e}\n")))?;
    let req = Request::with_json(
        Method::Put,
        format!("/v2/members/{id}"),
        peer_urls_json(&urls),
    );
    let r = c
        .members_request(req, deadline)
        .and_then(|r| match r.status {
            204 => Ok(()),
            404 | 409 => Err(members_error(&r.body)),
            s => Err(unexpected(s)),
        });
    r.map_err(|e| fail(format!("{e}\n")))?;
    writeln!(c.out, "Updated member with ID {id} in cluster")?;
    Ok(())
}

/// What one member's `/health` said.
enum Health {
    Healthy,
    Unhealthy,
}

/// `GET <url>/health` as etcdctl's plain `http.Client` does it (no header timeout, the
/// dial timeout only); `Err` is the line etcdctl prints for a failed check.
fn check_health(http: &Http, url: &str, connect: Duration) -> Result<Health, String> {
    let t = Timeouts {
        connect: Some(connect),
        header: None,
        deadline: None,
    };
    let target = format!("{url}/health");
    let r = http
        .send(url, &Request::get("/health".into()), t)
        .map_err(|e| format!("Get {target:?}: {e}"))?;
    // etcd answers {"health":"true"}; some versions send a boolean.
    let v: serde_json::Value = serde_json::from_slice(&r.body).map_err(|e| e.to_string())?;
    let healthy = match v.get("health") {
        Some(serde_json::Value::String(s)) => s == "true",
        Some(serde_json::Value::Bool(b)) => *b,
        _ => false,
    };
    Ok(if healthy {
        Health::Healthy
    } else {
        Health::Unhealthy
    })
}

/// `cluster-health [--forever]`: the member list from the endpoints as given, then each
/// member's client URLs in turn until one answers `/health`.
pub fn cluster_health(c: &mut Ctx, p: &Parsed) -> Result<(), Failure> {
    let forever = p.bool("forever");
    if forever {
        super::signals::exit_zero_on_interrupt();
    }
    let members = match c.list_members(None) {
        Ok(m) => m,
        Err(e) => {
            writeln!(c.out, "cluster may be unhealthy: failed to list members")?;
            return Err(Failure::client(EXIT_SERVER_ERROR, e));
        }
    };
    let http = Http::new();
    let connect = c.client.dial_timeout();
    loop {
        let mut healthy = 0;
        for m in &members {
            if m.client_urls.is_empty() {
                writeln!(
                    c.out,
                    "member {} is unreachable: no available published client urls",
                    m.id
                )?;
                continue;
            }
            let mut checked = false;
            for url in &m.client_urls {
                match check_health(&http, url, connect) {
                    Err(e) => writeln!(
                        c.out,
                        "failed to check the health of member {} on {url}: {e}",
                        m.id
                    )?,
                    Ok(h) => {
                        checked = true;
                        match h {
                            Health::Healthy => {
                                healthy += 1;
                                writeln!(
                                    c.out,
                                    "member {} is healthy: got healthy result from {url}",
                                    m.id
                                )?;
                            }
                            Health::Unhealthy => writeln!(
                                c.out,
                                "member {} is unhealthy: got unhealthy result from {url}",
                                m.id
                            )?,
                        }
                        break;
                    }
                }
            }
            if !checked {
                writeln!(
                    c.out,
                    "member {} is unreachable: [{}] are all unreachable",
                    m.id,
                    m.client_urls.join(" ")
                )?;
            }
        }
        if healthy == members.len() {
            writeln!(c.out, "cluster is healthy")?;
        } else if healthy == 0 {
            writeln!(c.out, "cluster is unavailable")?;
        } else {
            writeln!(c.out, "cluster is degraded")?;
        }
        c.out.flush()?;
        if !forever {
            if healthy == members.len() {
                return Ok(());
            }
            return Err(Failure::Message {
                code: EXIT_CLUSTER_NOT_HEALTHY,
                text: String::new(),
            });
        }
        write!(c.out, "\nnext check after 10 second...\n\n")?;
        c.out.flush()?;
        std::thread::sleep(HEALTH_INTERVAL);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peer_urls_are_checked_and_sorted_as_etcd_does() {
        assert_eq!(
            peer_urls(&["http://b:2380", " http://a:2380"]),
            Ok(vec![
                "http://a:2380".to_string(),
                "http://b:2380".to_string()
            ])
        );
        assert_eq!(
            peer_urls(&["ftp://a:1"]),
            Err("URL scheme must be http, https, unix, or unixs: ftp://a:1".into())
        );
        assert_eq!(
            peer_urls(&["http://a:1x"]),
            Err("parse \"http://a:1x\": invalid port \":1x\" after host".into())
        );
        assert_eq!(
            peer_urls_json(&["http://a:2380".into()]),
            r#"{"peerURLs":["http://a:2380"]}"#
        );
    }
}
