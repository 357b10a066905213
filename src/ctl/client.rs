//! The endpoint list and failover of etcd's Go client (`client.httpClusterClient`), as
//! etcdctl v2 drives it: sync the members first (unless `--no-sync`), then send each
//! request to the endpoints in turn until one answers with anything but a 5xx.
//!
//! It owns the `--debug` lines (`cURL Command: ...`) and the per-request and total
//! timeouts. It does not decode keys responses: [`super::commands`] does.
//!
//! One deliberate difference: the Go client shuffles its endpoints; pikv tries them in the
//! order given (after a sync: the members' order), so a dead first endpoint costs the same
//! on every run and error lists are in a predictable order.

use std::io::Write;
use std::time::{Duration, Instant};

use super::error::{ClientError, Failure, EXIT_BAD_ARGS, EXIT_BAD_CONNECTION, EXIT_SERVER_ERROR};
use super::http::{Http, HttpError, Method, Request, Response, Timeouts};
use super::response::{decode_json, Members};

/// Go's transport dial timeout in etcdctl (`defaultDialTimeout`), capped by the total
/// timeout.
const DIAL_TIMEOUT_DEFAULT: Duration = Duration::from_secs(30);

/// The global flags the client needs.
#[derive(Clone, Debug)]
pub struct ClientConfig {
    /// Endpoint URLs as given (before normalisation).
    pub endpoints: Vec<String>,
    /// `--timeout`: response headers per request (0: none).
    pub header_timeout: Duration,
    /// `--total-timeout`: the whole command except watches.
    pub total_timeout: Duration,
    /// `--debug`.
    pub debug: bool,
}

/// A client for one command.
pub struct Client {
    http: Http,
    endpoints: Vec<String>,
    /// The endpoint that answered last (Go's `pinned`): tried first next time.
    pinned: usize,
    header_timeout: Duration,
    dial_timeout: Duration,
    debug: bool,
}

/// Go's `url.getScheme`: `Ok(Some((scheme, rest)))` for `scheme:rest`, `Ok(None)` when
/// there is no scheme, `Err` for a leading colon.
fn go_scheme(s: &str) -> Result<Option<(&str, &str)>, &'static str> {
    for (i, c) in s.char_indices() {
        if c.is_ascii_alphabetic() {
            continue;
        }
        if c.is_ascii_digit() || c == '+' || c == '-' || c == '.' {
            if i == 0 {
                return Ok(None);
            }
            continue;
        }
        if c == ':' {
            if i == 0 {
                return Err("missing protocol scheme");
            }
            return Ok(Some((&s[..i], &s[i + 1..])));
        }
        return Ok(None);
    }
    Ok(None)
}

/// Normalises one endpoint as etcdctl's `getEndpoints` does (Go's `url.Parse`, and a
/// missing scheme becomes `http`). What Go parses but cannot use (`localhost:2379`: the
/// scheme `localhost`) is kept and fails when used, with Go's words; TLS endpoints, which
/// etcdctl would use, are refused because pikv ctl has no TLS.
fn normalise_endpoint(ep: &str) -> Result<String, String> {
    let with_scheme = match go_scheme(ep) {
        Err(why) => return Err(format!("parse {ep:?}: {why}")),
        Ok(Some(_)) => ep.to_string(),
        Ok(None) => {
            if ep.split('/').next().is_some_and(|s| s.contains(':')) {
                return Err(format!(
                    "parse {ep:?}: first path segment in URL cannot contain colon"
                ));
            }
            format!("http://{ep}")
        }
    };
    if let Ok(Some((scheme, _))) = go_scheme(&with_scheme) {
        if scheme.eq_ignore_ascii_case("https") || scheme.eq_ignore_ascii_case("unixs") {
            return Err(format!(
                "pikv ctl: {ep}: TLS endpoints are not supported (pikv ctl speaks plain HTTP)"
            ));
        }
    }
    // Go's url.String() drops nothing but an empty path; a trailing slash would double
    // the one of "/v2/...".
    Ok(with_scheme.trim_end_matches('/').to_string())
}

impl Client {
    /// A client over `cfg.endpoints`; an endpoint pikv cannot use ends the command with
    /// exit 1, as etcdctl's `mustNewClient` does for unparsable ones.
    pub fn new(cfg: &ClientConfig) -> Result<Client, Failure> {
        let mut endpoints = Vec::new();
        for ep in &cfg.endpoints {
            match normalise_endpoint(ep) {
                Ok(e) => endpoints.push(e),
                Err(text) => {
                    return Err(Failure::Message {
                        code: EXIT_BAD_ARGS,
                        text: format!("{text}\n"),
                    })
                }
            }
        }
        Ok(Client {
            http: Http::new(),
            endpoints,
            pinned: 0,
            header_timeout: cfg.header_timeout,
            dial_timeout: DIAL_TIMEOUT_DEFAULT.min(if cfg.total_timeout.is_zero() {
                DIAL_TIMEOUT_DEFAULT
            } else {
                cfg.total_timeout
            }),
            debug: cfg.debug,
        })
    }

    /// The endpoints in use.
    pub fn endpoints(&self) -> &[String] {
        &self.endpoints
    }

    /// The dial timeout (etcdctl: 30 s, or the total timeout if shorter).
    pub fn dial_timeout(&self) -> Duration {
        self.dial_timeout
    }

    /// Whether `--debug` is on.
    pub fn debug(&self) -> bool {
        self.debug
    }

    /// etcdctl's `mustNewClient` sync: `GET /v2/members` and use every member's client
    /// URLs. A connection failure everywhere ends the command (exit 2); a cluster that
    /// publishes no client URL ends it with exit 4; any other failure is ignored and the
    /// given endpoints are used, as etcdctl does.
    pub fn sync(&mut self, deadline: Instant, err: &mut dyn Write) -> Result<(), Failure> {
        if self.debug {
            writeln!(
                err,
                "start to sync cluster using endpoints({})",
                self.endpoints.join(",")
            )?;
        }
        let req = Request::get("/v2/members".to_string());
        match self.send(&req, Some(deadline), err) {
            Ok(resp) if resp.status == 200 => {
                let members: Members = match decode_json(&resp.body) {
                    Ok(m) => m,
                    // Go's client fails the sync; etcdctl then carries on with the
                    // endpoints it was given.
                    Err(_) => return self.synced(err),
                };
                let mut eps = Vec::new();
                for m in &members.members {
                    for u in &m.client_urls {
                        if let Ok(e) = normalise_endpoint(u) {
                            if !eps.contains(&e) {
                                eps.push(e);
                            }
                        }
                    }
                }
                if eps.is_empty() {
                    let text = format!(
                        "etcd cluster has no published client endpoints.\n\
                         Try '--no-sync' if you want to access non-published client \
                         endpoints({}).\nError:  client: no endpoints available\n",
                        self.endpoints.join(",")
                    );
                    return Err(Failure::Message {
                        code: EXIT_SERVER_ERROR,
                        text,
                    });
                }
                self.endpoints = eps;
                self.pinned = 0;
                self.synced(err)
            }
            Ok(_) => self.synced(err),
            Err(e) if e.is_connection_error() => Err(Failure::client(EXIT_BAD_CONNECTION, e)),
            Err(_) => self.synced(err),
        }
    }

    fn synced(&self, err: &mut dyn Write) -> Result<(), Failure> {
        if self.debug {
            writeln!(
                err,
                "got endpoints({}) after sync",
                self.endpoints.join(",")
            )?;
        }
        Ok(())
    }

    /// Sends `req` to the endpoints in turn, starting with the one that answered last,
    /// until one gives a non-5xx answer. `deadline` is the command's total timeout (`None`
    /// for watches).
    pub fn send(
        &mut self,
        req: &Request,
        deadline: Option<Instant>,
        err: &mut dyn Write,
    ) -> Result<Response, ClientError> {
        let mut attempts = Vec::new();
        let n = self.endpoints.len();
        for i in 0..n {
            let k = (self.pinned + i) % n;
            let ep = &self.endpoints[k];
            if self.debug {
                let mut line = format!(
                    "cURL Command: curl -X {} {ep}{}",
                    req.method.as_str(),
                    req.target
                );
                if req.method != Method::Get && req.method != Method::Delete {
                    line.push_str(&format!(
                        " -d {}",
                        go_quote(req.form.as_deref().unwrap_or(""))
                    ));
                }
                // A debug line that cannot be written is not worth failing the request.
                let _ = writeln!(err, "{line}");
            }
            let t = Timeouts {
                connect: Some(self.dial_timeout),
                header: (!self.header_timeout.is_zero()).then_some(self.header_timeout),
                deadline,
            };
            match self.http.send(ep, req, t) {
                Ok(resp) if resp.status / 100 == 5 => {
                    let e = if resp.status == 500 || resp.status == 503 {
                        format!("client: etcd member {ep} has no leader")
                    } else {
                        format!(
                            "client: etcd member {ep} returns server error [{}]",
                            status_text(resp.status)
                        )
                    };
                    attempts.push(HttpError::Other(e));
                }
                Ok(resp) => {
                    self.pinned = k;
                    return Ok(resp);
                }
                Err(HttpError::Deadline) => return Err(ClientError::Deadline),
                Err(e) => attempts.push(e),
            }
        }
        Err(ClientError::Cluster(attempts))
    }
}

/// Go's `%q` for the ASCII strings a form body holds.
fn go_quote(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Go's `http.StatusText` for the 5xx codes.
fn status_text(code: u16) -> &'static str {
    match code {
        501 => "Not Implemented",
        502 => "Bad Gateway",
        504 => "Gateway Timeout",
        505 => "HTTP Version Not Supported",
        507 => "Insufficient Storage",
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_are_normalised_as_etcdctl_does() {
        assert_eq!(
            normalise_endpoint("http://127.0.0.1:2379/").as_deref(),
            Ok("http://127.0.0.1:2379")
        );
        assert_eq!(normalise_endpoint("node-1").as_deref(), Ok("http://node-1"));
        assert!(normalise_endpoint("127.0.0.1:2379")
            .unwrap_err()
            .contains("first path segment"));
        assert!(normalise_endpoint("https://a:1")
            .unwrap_err()
            .contains("TLS"));
    }
}
