//! `ServerConfig`, "high level": parsed URLs, cluster membership, quota, log level; every
//! rule of spec §14 with etcd 3.4's one-line messages.
//!
//! Entry point: [`parse_server_args`] = [`super::argv::normalise`] → argh
//! ([`super::flags::ServerFlags`]) → validation here. Pure: no I/O, no DNS.
//!
//! Where pikv deliberately differs from etcd 3.4:
//! - `--cors=` (empty) means no CORS headers (etcd 3.4 rejects it); origins need no port,
//!   and `*` anywhere in the list allows all.
//! - `PIKV_*` variables exist beside `ETCD_*` and win; an empty variable never conflicts
//!   with a command-line flag.
//! - TLS, discovery, `--config-file`, proxy mode and unix-socket URLs are refused with one
//!   line instead of being half-supported.
//! - The `--initial-cluster` checks always run (etcd runs them only when bootstrapping; a
//!   pure function cannot look at the data directory). No DNS: URLs compare as strings.
//! - URL ports must be numbers (0 allowed for listening); `--snapshot-count` defaults to
//!   10000 (etcd 2.x); bad `--initial-cluster-state`/`--log-level` values name the choices.
//! - 0.4 flags: `-bind-addr`/`-peer-bind-addr` may omit the port (taken from `-addr`/
//!   `-peer-addr`, else 4001/7001), and `-peer-addr` alone gives `--initial-cluster`
//!   `<name>=http://<peer-addr>`.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;

use super::argv::{self, go_bool, go_int, go_uint, split_host_port, Action};
use super::flags::ServerFlags;

/// A URL to listen on: `http://<IP literal or localhost>:<port>`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListenUrl {
    /// The URL as given (trimmed).
    pub url: String,
    /// The host part without IPv6 brackets: an IP literal or `localhost`.
    pub host: String,
    /// The port (0 lets the OS choose).
    pub port: u16,
    /// What to bind: `localhost` becomes 127.0.0.1.
    pub addr: SocketAddr,
}

/// `--initial-cluster-state`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClusterState {
    /// Bootstrap a new cluster from `--initial-cluster`.
    New,
    /// Join a running cluster this member was added to.
    Existing,
}

/// `--cors` (spec §13).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Cors {
    /// `*` (etcd 3.4's default): CORS headers on every response.
    Any,
    /// Only these origins get CORS headers; empty (`--cors=`) means no CORS headers at all.
    Origins(Vec<String>),
}

/// Everything the server needs from its command line and environment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerConfig {
    /// `--name`, default `default`.
    pub name: String,
    /// `--data-dir`, default `<name>.pikv`.
    pub data_dir: PathBuf,
    /// `--listen-client-urls`, default `http://localhost:2379`; sorted, no duplicates.
    pub listen_client_urls: Vec<ListenUrl>,
    /// `--advertise-client-urls`, default `http://localhost:2379`; sorted, no duplicates.
    pub advertise_client_urls: Vec<String>,
    /// `--listen-peer-urls`, default `http://localhost:2380`; sorted, no duplicates.
    pub listen_peer_urls: Vec<ListenUrl>,
    /// `--initial-advertise-peer-urls`, default `http://localhost:2380`; sorted, no duplicates.
    pub initial_advertise_peer_urls: Vec<String>,
    /// `--initial-cluster` as (name, peer URL) pairs in the order given; default
    /// `default=http://localhost:2380`, or `<name>=<each initial advertise peer URL>` when
    /// `--name` is not `default` (or the 0.4 `-peer-addr` is given).
    pub initial_cluster: Vec<(String, String)>,
    /// `--initial-cluster-state`, default new.
    pub initial_cluster_state: ClusterState,
    /// `--join` (or 0.4's `-peers`): members to join through when the data dir is empty,
    /// as URLs (`http://` put before a bare `host:port`); empty: bootstrap or restart.
    pub join: Vec<String>,
    /// `--initial-cluster-token`, default `etcd-cluster`.
    pub initial_cluster_token: String,
    /// `--heartbeat-interval` in ms, default 100.
    pub heartbeat_interval_ms: u64,
    /// `--election-timeout` in ms, default 1000.
    pub election_timeout_ms: u64,
    /// `--snapshot-count`, default (and for 0) 10000, etcd 2.x's value.
    pub snapshot_count: u64,
    /// `--quota-backend-bytes` resolved: 0/absent → 2 GiB (512 MiB on 32-bit targets).
    pub quota_backend_bytes: u64,
    /// `--cors`, default [`Cors::Any`].
    pub cors: Cors,
    /// `--strict-reconfig-check`, default true.
    pub strict_reconfig_check: bool,
    /// `--serializable-reads` (pikv's own), default false: plain GETs are linearizable
    /// (ReadIndex); with it they are served from local state, as etcd 2.x did.
    pub serializable_reads: bool,
    /// `--force-new-cluster`, default false: start as a one-member cluster from the data dir
    /// (a backup, or the last member of a cluster that lost its quorum), keeping its data
    /// and ids (`node::force`).
    pub force_new_cluster: bool,
    /// `--debug`, default false.
    pub debug: bool,
    /// Info; Debug with `--debug`; else `--log-level` (panic and fatal map to Error).
    pub log_level: log::LevelFilter,
}

/// What the command line asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
// Built once per process; boxing the config would only make the agreed API clumsier.
#[allow(clippy::large_enum_variant)]
pub enum Invocation {
    /// Run the server.
    Server(ServerConfig),
    /// `-h`/`--help`: print this usage text to stdout and exit 0.
    Help(String),
    /// `--version`: print the version and exit 0.
    Version,
}

/// A successful parse: what to do, and warnings for the caller to log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Parsed {
    /// What to do.
    pub invocation: Invocation,
    /// One line each (accepted-but-ignored flags, unrecognised variables, ...).
    pub warnings: Vec<String>,
}

/// Why the command line was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    /// One line, etcd's wording where etcd has one.
    pub message: String,
    /// Process exit status: 2 for flag syntax errors (unknown flag, bad value on the command
    /// line), like Go's flag package; 1 for everything else.
    pub exit_code: u8,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ConfigError {}

fn fail(message: impl Into<String>) -> ConfigError {
    ConfigError {
        message: message.into(),
        exit_code: 1,
    }
}

/// Default member name.
pub const DEFAULT_NAME: &str = "default";
/// Default client URL (listen and advertise).
pub const DEFAULT_CLIENT_URL: &str = "http://localhost:2379";
/// Default peer URL (listen and advertise).
pub const DEFAULT_PEER_URL: &str = "http://localhost:2380";
/// Default `--initial-cluster-token`.
pub const DEFAULT_CLUSTER_TOKEN: &str = "etcd-cluster";
/// Default `--heartbeat-interval` (ms).
pub const DEFAULT_HEARTBEAT_MS: u64 = 100;
/// Default `--election-timeout` (ms).
pub const DEFAULT_ELECTION_MS: u64 = 1000;
/// Largest `--election-timeout` etcd accepts (ms).
pub const MAX_ELECTION_MS: u64 = 50_000;
/// Default `--snapshot-count` (etcd 2.x's).
pub const DEFAULT_SNAPSHOT_COUNT: u64 = 10_000;
/// Default quota on 64-bit targets: 2 GiB.
pub const DEFAULT_QUOTA_64: u64 = 2 << 30;
/// Default quota on 32-bit targets: 512 MiB (the map must fit in the address space).
pub const DEFAULT_QUOTA_32: u64 = 512 << 20;
/// Largest quota on 32-bit targets: 2 GiB.
pub const MAX_QUOTA_32: u64 = 2 << 30;

/// Parse the server command line (`args` without argv\[0\]) and environment into what to do.
///
/// Follows etcd 3.4 (spec §14): Go flag syntax, `ETCD_*`/`PIKV_*` variables, etcd's
/// defaults and validation messages. See the module docs of [`super::argv`] for the order in
/// which things are checked.
pub fn parse_server_args(args: &[String], env: &[(String, String)]) -> Result<Parsed, ConfigError> {
    parse_server_args_for(args, env, pointer_width())
}

/// The target's pointer width in bits.
pub fn pointer_width() -> u32 {
    if cfg!(target_pointer_width = "32") {
        32
    } else {
        64
    }
}

/// [`parse_server_args`] for a target with the given pointer width (for tests of the 32-bit
/// quota rule).
pub fn parse_server_args_for(
    args: &[String],
    env: &[(String, String)],
    pointer_width: u32,
) -> Result<Parsed, ConfigError> {
    let n = argv::normalise(args, env)?;
    let invocation = match n.action {
        Action::Help => Invocation::Help(usage()),
        Action::Version => Invocation::Version,
        Action::Run => {
            let flags = ServerFlags::parse(&n.argv).map_err(|message| ConfigError {
                message,
                exit_code: 2,
            })?;
            let mut warnings = n.warnings;
            let config = build(&flags, &mut warnings, pointer_width)?;
            return Ok(Parsed {
                invocation: Invocation::Server(config),
                warnings,
            });
        }
    };
    Ok(Parsed {
        invocation,
        warnings: n.warnings,
    })
}

/// Resolve `--quota-backend-bytes` (`None` = not given) for a target pointer width.
pub fn resolve_quota(raw: Option<&str>, pointer_width: u32) -> Result<u64, ConfigError> {
    let n = match raw {
        None => 0,
        Some(s) => go_int(s).map_err(|reason| {
            fail(format!(
                "invalid value \"{s}\" for flag -quota-backend-bytes: {reason}"
            ))
        })?,
    };
    let n = u64::try_from(n).map_err(|_| {
        fail(format!(
            "--quota-backend-bytes={n} is negative; pikv uses it as the size of its data file"
        ))
    })?;
    match (n, pointer_width) {
        (0, 32) => Ok(DEFAULT_QUOTA_32),
        (0, _) => Ok(DEFAULT_QUOTA_64),
        (n, 32) if n > MAX_QUOTA_32 => Err(fail(format!(
            "--quota-backend-bytes={n} cannot be mapped on 32-bit (at most {MAX_QUOTA_32} bytes)"
        ))),
        (n, _) => Ok(n),
    }
}

/// True when a boolean flag was given and is true.
fn is_true(v: &Option<String>) -> bool {
    v.as_deref().and_then(go_bool) == Some(true)
}

fn non_empty(v: &Option<String>) -> bool {
    v.as_deref().is_some_and(|s| !s.is_empty())
}

fn refuse_unsupported(f: &ServerFlags) -> Result<(), ConfigError> {
    if non_empty(&f.config_file) {
        return Err(fail(
            "--config-file is not supported yet: give the settings as flags or ETCD_* \
             environment variables",
        ));
    }
    let tls_values = [
        ("cert-file", &f.cert_file),
        ("key-file", &f.key_file),
        ("trusted-ca-file", &f.trusted_ca_file),
        ("client-crl-file", &f.client_crl_file),
        (
            "client-cert-allowed-hostname",
            &f.client_cert_allowed_hostname,
        ),
        ("peer-cert-file", &f.peer_cert_file),
        ("peer-key-file", &f.peer_key_file),
        ("peer-trusted-ca-file", &f.peer_trusted_ca_file),
        ("peer-crl-file", &f.peer_crl_file),
        ("peer-cert-allowed-cn", &f.peer_cert_allowed_cn),
        ("peer-cert-allowed-hostname", &f.peer_cert_allowed_hostname),
        ("cipher-suites", &f.cipher_suites),
    ];
    let tls_bools = [
        ("client-cert-auth", &f.client_cert_auth),
        ("auto-tls", &f.auto_tls),
        ("peer-client-cert-auth", &f.peer_client_cert_auth),
        ("peer-auto-tls", &f.peer_auto_tls),
        (
            "experimental-peer-skip-client-san-verification",
            &f.experimental_peer_skip_client_san_verification,
        ),
    ];
    let asked = tls_values
        .iter()
        .find(|(_, v)| non_empty(v))
        .or_else(|| tls_bools.iter().find(|(_, v)| is_true(v)));
    if let Some((name, _)) = asked {
        return Err(fail(format!(
            "TLS is not supported yet: --{name} was given; refusing to serve plaintext"
        )));
    }
    for (name, v) in [
        ("discovery", &f.discovery),
        ("discovery-srv", &f.discovery_srv),
    ] {
        if non_empty(v) {
            return Err(fail(format!(
                "discovery is not supported: --{name} was given; bootstrap with \
                 --initial-cluster instead"
            )));
        }
    }
    if let Some(mode) = f.proxy.as_deref().filter(|m| *m != "off") {
        return Err(fail(format!("proxy mode is not supported: --proxy={mode}")));
    }
    if f.peers_file.is_some() {
        return Err(fail("flag \"-peers-file\" is no longer supported."));
    }
    Ok(())
}

/// A URL list flag after the 0.4 mapping: its items, and whether it was set explicitly.
struct UrlList {
    flag: &'static str,
    items: Vec<String>,
}

/// Split, trim, drop duplicates and sort (etcd sorts its URL lists).
fn url_items(value: &str) -> Vec<String> {
    let mut items: Vec<String> = value.split(',').map(|s| s.trim().to_string()).collect();
    items.sort();
    items.dedup();
    items
}

fn list(flag: &'static str, value: Option<&str>, default: &str) -> UrlList {
    UrlList {
        flag,
        items: url_items(value.unwrap_or(default)),
    }
}

/// `host:port` with IPv6 hosts bracketed.
fn join_host_port(host: &str, port: &str) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// Split a 0.4 bind address `IP[:port]` into host and (maybe) port.
fn split_bind_addr(v: &str) -> (String, Option<String>) {
    let v = v.trim();
    match split_host_port(v) {
        Some((h, p)) => (h.to_string(), Some(p.to_string())),
        None => (
            v.trim_start_matches('[').trim_end_matches(']').to_string(),
            None,
        ),
    }
}

/// The 0.4 flags (spec §14.4), mapped the 2.x way onto the URL flags.
struct Mapped {
    lcurls: UrlList,
    acurls: UrlList,
    lpurls: UrlList,
    apurls: UrlList,
}

fn map_04_flags(f: &ServerFlags, warnings: &mut Vec<String>) -> Result<Mapped, ConfigError> {
    let conflict =
        |urls: &str, addr: &str| fail(format!("Set only one of flags -{urls} and -{addr}"));
    let mut side = |addr: &Option<String>,
                    bind: &Option<String>,
                    listen: &Option<String>,
                    advertise: &Option<String>,
                    names: [&'static str; 4],
                    default_url: &str,
                    default_04_port: &str|
     -> Result<(UrlList, UrlList), ConfigError> {
        let [addr_flag, bind_flag, listen_flag, advertise_flag] = names;
        let mut adv = list(advertise_flag, advertise.as_deref(), default_url);
        let mut lis = list(listen_flag, listen.as_deref(), default_url);
        let addr_port = addr
            .as_deref()
            .and_then(|a| split_host_port(a.trim()).map(|(_, p)| p.to_string()));
        if let Some(a) = addr {
            if advertise.is_some() {
                return Err(conflict(advertise_flag, addr_flag));
            }
            warnings.push(format!(
                "flag -{addr_flag} is deprecated (etcd 0.4); use --{advertise_flag}"
            ));
            adv.items = vec![format!("http://{}", a.trim())];
            if bind.is_none() && listen.is_none() {
                if let Some(p) = &addr_port {
                    lis.items = vec![format!("http://[::]:{p}")];
                }
            }
        }
        if let Some(b) = bind {
            if listen.is_some() {
                return Err(conflict(listen_flag, bind_flag));
            }
            warnings.push(format!(
                "flag -{bind_flag} is deprecated (etcd 0.4); use --{listen_flag}"
            ));
            let (host, port) = split_bind_addr(b);
            let port = port
                .or(addr_port)
                .unwrap_or_else(|| default_04_port.to_string());
            lis.items = vec![format!("http://{}", join_host_port(&host, &port))];
        }
        Ok((lis, adv))
    };
    let (lcurls, acurls) = side(
        &f.addr,
        &f.bind_addr,
        &f.listen_client_urls,
        &f.advertise_client_urls,
        [
            "addr",
            "bind-addr",
            "listen-client-urls",
            "advertise-client-urls",
        ],
        DEFAULT_CLIENT_URL,
        "4001",
    )?;
    let (lpurls, apurls) = side(
        &f.peer_addr,
        &f.peer_bind_addr,
        &f.listen_peer_urls,
        &f.initial_advertise_peer_urls,
        [
            "peer-addr",
            "peer-bind-addr",
            "listen-peer-urls",
            "initial-advertise-peer-urls",
        ],
        DEFAULT_PEER_URL,
        "7001",
    )?;
    Ok(Mapped {
        lcurls,
        acurls,
        lpurls,
        apurls,
    })
}

/// Check scheme support: https/unixs need TLS, unix sockets are not served.
fn check_scheme(flag: &str, url: &str) -> Result<argv::UrlParts, ConfigError> {
    let parts = argv::check_url(url)
        .map_err(|reason| fail(format!("invalid value \"{url}\" for --{flag}: {reason}")))?;
    match parts.scheme.as_str() {
        "http" => Ok(parts),
        "https" | "unixs" => Err(fail(format!(
            "TLS is not supported yet: --{flag} has {url}; refusing to serve plaintext"
        ))),
        _ => Err(fail(format!(
            "unix socket URLs are not supported: --{flag} has {url}"
        ))),
    }
}

fn parse_port(url: &str, port: &str) -> Result<u16, ConfigError> {
    if port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) {
        return Err(fail(format!("invalid port in URL ({url})")));
    }
    port.parse::<u16>()
        .map_err(|_| fail(format!("invalid port in URL ({url})")))
}

/// etcd's `checkBindURLs`, plus the port pikv needs to bind.
fn listen_urls(l: &UrlList) -> Result<Vec<ListenUrl>, ConfigError> {
    let mut out = Vec::new();
    for url in &l.items {
        let parts = check_scheme(l.flag, url)?;
        let ip: IpAddr = if parts.host == "localhost" {
            IpAddr::V4(Ipv4Addr::LOCALHOST)
        } else {
            parts
                .host
                .parse()
                .map_err(|_| fail(format!("expected IP in URL for binding ({url})")))?
        };
        let port = parse_port(url, &parts.port)?;
        out.push(ListenUrl {
            url: url.clone(),
            host: parts.host,
            port,
            addr: SocketAddr::new(ip, port),
        });
    }
    Ok(out)
}

/// etcd's `checkHostURLs` (host names allowed, must be `host:port`).
fn advertise_urls(l: &UrlList) -> Result<Vec<String>, ConfigError> {
    for url in &l.items {
        let parts = check_scheme(l.flag, url)?;
        let reason = if parts.host.is_empty() {
            format!("unexpected empty host ({url})")
        } else if parse_port(url, &parts.port).is_err() {
            format!("invalid port in URL ({url})")
        } else {
            continue;
        };
        return Err(fail(format!(
            "--{} \"{}\" must be \"host:port\" ({reason})",
            l.flag,
            l.items.join(",")
        )));
    }
    Ok(l.items.clone())
}

/// etcd's `URLsMap.String()`: sorted `name=url` pairs joined by commas.
fn urls_map_string<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> String {
    let mut v: Vec<String> = pairs.into_iter().map(|(n, u)| format!("{n}={u}")).collect();
    v.sort();
    v.join(",")
}

/// Parse `--initial-cluster` like etcd's `types.NewURLsMap` (empty items skipped).
fn parse_initial_cluster(s: &str) -> Result<Vec<(String, String)>, ConfigError> {
    let mut out = Vec::new();
    for item in s.split(',').filter(|i| !i.is_empty()) {
        let (name, url) = item.split_once('=').unwrap_or((item, ""));
        let url = url.trim();
        argv::check_url(url)
            .map_err(|reason| fail(format!("error setting up initial cluster: {reason}")))?;
        check_scheme("initial-cluster", url)?;
        out.push((name.to_string(), url.to_string()));
    }
    Ok(out)
}

/// etcd's `ServerConfig.VerifyBootstrap`/`VerifyJoinExisting` (without DNS resolution).
fn verify_cluster(
    name: &str,
    cluster: &[(String, String)],
    apurls: &[String],
    state: ClusterState,
) -> Result<(), ConfigError> {
    let mut mine: Vec<&str> = cluster
        .iter()
        .filter(|(n, _)| n == name)
        .map(|(_, u)| u.as_str())
        .collect();
    if mine.is_empty() {
        return Err(fail(format!(
            "couldn't find local name \"{name}\" in the initial cluster configuration"
        )));
    }
    mine.sort_unstable();
    if state == ClusterState::New {
        let ap: Vec<&str> = apurls.iter().map(String::as_str).collect(); // sorted already
        if ap != mine {
            let detail = if ap.len() != mine.len() {
                format!(
                    "len({}) != len({})",
                    go_quote_list(&ap),
                    go_quote_list(&mine)
                )
            } else {
                let (a, m) = ap
                    .iter()
                    .zip(&mine)
                    .find(|(a, m)| a != m)
                    .map_or(("", ""), |(a, m)| (*a, *m));
                format!("resolved urls: \"{a}\" != \"{m}\"")
            };
            let missing: Vec<String> = mine
                .iter()
                .filter(|u| !ap.contains(u))
                .map(|u| format!("{name}={u}"))
                .collect();
            if !missing.is_empty() {
                return Err(fail(format!(
                    "--initial-cluster has {} but missing from --initial-advertise-peer-urls={} ({detail})",
                    missing.join(","),
                    ap.join(",")
                )));
            }
            let missing: Vec<&str> = ap.iter().copied().filter(|u| !mine.contains(u)).collect();
            return Err(fail(format!(
                "--initial-advertise-peer-urls has {} but missing from --initial-cluster={}",
                missing.join(","),
                urls_map_string(ap.iter().map(|u| (name, *u)))
            )));
        }
    }
    let mut urls: Vec<&str> = cluster.iter().map(|(_, u)| u.as_str()).collect();
    urls.sort_unstable();
    if urls.windows(2).any(|w| w[0] == w[1]) {
        return Err(fail(format!(
            "initial cluster {} has duplicate url",
            urls_map_string(cluster.iter().map(|(n, u)| (n.as_str(), u.as_str())))
        )));
    }
    Ok(())
}

/// `--join`/`-peers` as URLs. Joining learns the cluster from a running member, so a
/// bootstrap description naming other members, or `existing` (etcd's way to join), would
/// be a second answer to the same question: refused rather than one silently ignored.
fn join_urls(
    f: &ServerFlags,
    cluster: &[(String, String)],
    name: &str,
    state: ClusterState,
) -> Result<Vec<String>, ConfigError> {
    let (flag, value) = match (&f.join, &f.peers) {
        (Some(_), Some(_)) => return Err(fail("Set only one of flags -join and -peers")),
        (Some(v), None) => ("join", v),
        (None, Some(v)) => ("peers", v),
        (None, None) => return Ok(Vec::new()),
    };
    // In the order given: they are tried in turn.
    let mut urls: Vec<String> = Vec::new();
    for item in value.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        let url = if item.contains("://") {
            item.to_string()
        } else {
            format!("http://{item}")
        };
        if !urls.contains(&url) {
            urls.push(url);
        }
    }
    if urls.is_empty() {
        return Ok(urls);
    }
    if state == ClusterState::Existing {
        return Err(fail(format!(
            "--{flag} and --initial-cluster-state existing are two ways of joining: give one"
        )));
    }
    if cluster.iter().any(|(n, _)| n != name) {
        return Err(fail(format!(
            "--{flag} learns the members from the cluster it joins: do not give --initial-cluster other members too"
        )));
    }
    Ok(urls)
}

/// Go's `%q` of a string slice: `["a" "b"]`.
fn go_quote_list(v: &[&str]) -> String {
    let items: Vec<String> = v.iter().map(|s| format!("\"{s}\"")).collect();
    format!("[{}]", items.join(" "))
}

fn uint(flag: &str, v: &Option<String>, default: u64) -> Result<u64, ConfigError> {
    match v.as_deref() {
        None => Ok(default),
        Some(s) => go_uint(s)
            .map_err(|reason| fail(format!("invalid value \"{s}\" for flag -{flag}: {reason}"))),
    }
}

fn boolean(flag: &str, v: &Option<String>, default: bool) -> Result<bool, ConfigError> {
    match v.as_deref() {
        None => Ok(default),
        Some(s) => go_bool(s).ok_or_else(|| {
            fail(format!(
                "invalid boolean value \"{s}\" for -{flag}: parse error"
            ))
        }),
    }
}

/// Validate the low-level flags into a [`ServerConfig`].
fn build(
    f: &ServerFlags,
    warnings: &mut Vec<String>,
    pointer_width: u32,
) -> Result<ServerConfig, ConfigError> {
    refuse_unsupported(f)?;
    let m = map_04_flags(f, warnings)?;

    // embed.Config.Validate order: bind URLs, host URLs, bootstrap flags, timing, advertise.
    let listen_peer_urls = listen_urls(&m.lpurls)?;
    let listen_client_urls = listen_urls(&m.lcurls)?;
    let initial_advertise_peer_urls = advertise_urls(&m.apurls)?;
    let advertise_client_urls = advertise_urls(&m.acurls)?;

    let initial_cluster_state = match f.initial_cluster_state.as_deref() {
        None | Some("new") => ClusterState::New,
        Some("existing") => ClusterState::Existing,
        Some(other) => return Err(fail(format!("unexpected clusterState \"{other}\""))),
    };
    let heartbeat_interval_ms = uint(
        "heartbeat-interval",
        &f.heartbeat_interval,
        DEFAULT_HEARTBEAT_MS,
    )?;
    let election_timeout_ms = uint("election-timeout", &f.election_timeout, DEFAULT_ELECTION_MS)?;
    if heartbeat_interval_ms == 0 {
        return Err(fail("--heartbeat-interval must be >0 (set to 0ms)"));
    }
    if election_timeout_ms == 0 {
        return Err(fail("--election-timeout must be >0 (set to 0ms)"));
    }
    if heartbeat_interval_ms.saturating_mul(5) > election_timeout_ms {
        return Err(fail(format!(
            "--election-timeout[{election_timeout_ms}ms] should be at least as 5 times as \
             --heartbeat-interval[{heartbeat_interval_ms}ms]"
        )));
    }
    if election_timeout_ms > MAX_ELECTION_MS {
        return Err(fail(format!(
            "--election-timeout[{election_timeout_ms}ms] is too long, and should be set less \
             than {MAX_ELECTION_MS}ms"
        )));
    }
    if f.listen_client_urls.is_some() && f.advertise_client_urls.is_none() && f.addr.is_none() {
        return Err(fail(
            "--advertise-client-urls is required when --listen-client-urls is set explicitly",
        ));
    }

    let name = f.name.clone().unwrap_or_else(|| DEFAULT_NAME.to_string());
    let data_dir = match f.data_dir.as_deref() {
        None | Some("") => PathBuf::from(format!("{name}.pikv")),
        Some(d) => PathBuf::from(d),
    };
    let initial_cluster = match f.initial_cluster.as_deref() {
        Some(s) => parse_initial_cluster(s)?,
        // etcd's rule (a non-default --name); also for the 0.4 -peer-addr, which had no
        // --initial-cluster to go with it.
        None if name != DEFAULT_NAME || f.peer_addr.is_some() => {
            let n = if name.is_empty() { DEFAULT_NAME } else { &name };
            initial_advertise_peer_urls
                .iter()
                .map(|u| (n.to_string(), u.clone()))
                .collect()
        }
        None => vec![(DEFAULT_NAME.to_string(), DEFAULT_PEER_URL.to_string())],
    };
    verify_cluster(
        &name,
        &initial_cluster,
        &initial_advertise_peer_urls,
        initial_cluster_state,
    )?;
    let join = join_urls(f, &initial_cluster, &name, initial_cluster_state)?;

    let snapshot_count = match uint("snapshot-count", &f.snapshot_count, DEFAULT_SNAPSHOT_COUNT)? {
        0 => DEFAULT_SNAPSHOT_COUNT,
        n => n,
    };
    let quota_backend_bytes = resolve_quota(f.quota_backend_bytes.as_deref(), pointer_width)?;
    let cors = match f.cors.as_deref().map(str::trim) {
        None => Cors::Any,
        Some("") => Cors::Origins(Vec::new()),
        Some(s) => {
            let items = url_items(s);
            if items.iter().any(|i| i == "*") {
                Cors::Any
            } else {
                Cors::Origins(items)
            }
        }
    };
    let strict_reconfig_check = boolean("strict-reconfig-check", &f.strict_reconfig_check, true)?;
    let debug = boolean("debug", &f.debug, false)?;
    let serializable_reads = boolean("serializable-reads", &f.serializable_reads, false)?;
    let force_new_cluster = boolean("force-new-cluster", &f.force_new_cluster, false)?;
    let log_level = if debug {
        log::LevelFilter::Debug
    } else {
        match f.log_level.as_deref() {
            None | Some("info") => log::LevelFilter::Info,
            Some("debug") => log::LevelFilter::Debug,
            Some("warn") => log::LevelFilter::Warn,
            Some("error" | "panic" | "fatal") => log::LevelFilter::Error,
            Some(other) => {
                return Err(fail(format!(
                    "invalid value \"{other}\" for flag -log-level"
                )))
            }
        }
    };
    Ok(ServerConfig {
        initial_cluster_token: f
            .initial_cluster_token
            .clone()
            .unwrap_or_else(|| DEFAULT_CLUSTER_TOKEN.to_string()),
        name,
        data_dir,
        listen_client_urls,
        advertise_client_urls,
        listen_peer_urls,
        initial_advertise_peer_urls,
        initial_cluster,
        initial_cluster_state,
        join,
        heartbeat_interval_ms,
        election_timeout_ms,
        snapshot_count,
        quota_backend_bytes,
        cors,
        strict_reconfig_check,
        serializable_reads,
        force_new_cluster,
        debug,
        log_level,
    })
}

/// The usage text printed for `-h`/`--help` (every line at most 80 columns).
pub fn usage() -> String {
    USAGE.to_string()
}

const USAGE: &str = "\
Usage:

  pikv [flags]
    Start a pikv server (etcd v2 API, etcd's flags and ETCD_* variables).
  pikv --version
    Show the version of pikv.
  pikv backup --data-dir <dir> --backup-dir <dir>
    Copy a (running) member's data dir into a backup (`pikv backup --help`).
  pikv -h | --help
    Show this help.

Flags take one or two dashes, `--flag value` or `--flag=value` (booleans only
`--flag=false`); the last of a repeated flag wins. Each flag can also be given
as ETCD_<FLAG> or PIKV_<FLAG> (e.g. ETCD_DATA_DIR; PIKV_ wins over ETCD_), but
not both as a variable and on the command line.

Member:
  --name 'default'
    Human-readable name for this member.
  --data-dir '${name}.pikv'
    Path to the data directory.
  --listen-client-urls 'http://localhost:2379'
    Comma-separated URLs to serve clients on (IP or localhost, with port).
  --listen-peer-urls 'http://localhost:2380'
    Comma-separated URLs to listen on for peer traffic.
  --heartbeat-interval '100'
    Time (in milliseconds) of a heartbeat interval.
  --election-timeout '1000'
    Time (in milliseconds) for an election to time out (>= 5 x heartbeat).
  --snapshot-count '10000'
    Number of applied entries between snapshots.
  --quota-backend-bytes '0'
    Size limit of the data file; 0 means 2 GiB (512 MiB on 32-bit systems).

Clustering:
  --advertise-client-urls 'http://localhost:2379'
    This member's client URLs as published; required with --listen-client-urls.
  --initial-advertise-peer-urls 'http://localhost:2380'
    This member's peer URLs as announced to the rest of the cluster.
  --initial-cluster 'default=http://localhost:2380'
    Bootstrap membership as name=peerURL,...; default <name>=<advertised peers>.
  --initial-cluster-state 'new'
    'new' to bootstrap a cluster, 'existing' to join a running one.
  --initial-cluster-token 'etcd-cluster'
    Token mixed into member and cluster ids during bootstrap.
  --join ''
    (pikv) Comma-separated client or peer URLs (or host:port) of running
    members: an empty data dir asks them to add this member, then fetches the
    data. Ignored once the data dir holds a member. 0.4's -peers means this.
  --strict-reconfig-check 'true'
    Reject membership changes that would cause quorum loss.
  --force-new-cluster 'false'
    Start as a one-member cluster from the data dir (a backup, or the last
    member of a cluster that lost quorum), keeping its keys, indexes and ids;
    the other members are recorded as removed. Drop the flag once it started.
  --serializable-reads 'false'
    (pikv) Serve plain GETs from local state, as etcd 2.x did; by default they
    are linearizable (quorum=true always is).

Security:
  --cors '*'
    Comma-separated origins allowed for CORS; '*' allows all, empty allows none.
  TLS flags (--cert-file, --auto-tls, ...) and https URLs are refused: pikv has
  no TLS yet and will not serve plaintext to someone who asked for TLS.

Logging:
  --debug 'false'
    Enable debug-level logging.
  --log-level 'info'
    One of debug, info, warn, error (panic and fatal mean error).

Compatibility:
  Other etcd 3.4 flags (--enable-v2, --logger, --max-wals, ...) are accepted and
  ignored with a warning. The etcd 0.4 flags -addr, -bind-addr, -peer-addr and
  -peer-bind-addr are mapped as etcd 2.x did; -peers means --join.
";

#[cfg(test)]
mod tests;
