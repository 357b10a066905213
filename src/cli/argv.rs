//! etcd compatibility before argh: a pure function from (argv, environment) to a normalised
//! argv that argh can parse, plus warnings.
//!
//! argh by itself knows neither Go's flag syntax (`-name x`, `-name=x`, bare booleans, the
//! last of a repeated flag wins) nor etcd's `ETCD_*` environment variables. [`normalise`]
//! implements both the way etcd 3.4 does (spec §14.1, §14.2):
//!
//! 1. The command line is scanned like Go's `flag.FlagSet.Parse`: one or two dashes, `=` or
//!    a separate value, booleans only with `=`, parsing stops at the first positional
//!    argument or `--`. Every value is checked for its Go type as it is read, so a bad value
//!    is an exit-2 error even if the flag is repeated later. `-h`/`--help` stop here.
//! 2. A positional argument is an error (exit 1); `--version` is answered before the
//!    environment is looked at.
//! 3. `ETCD_<FLAG>` and `PIKV_<FLAG>` are folded in (PIKV wins; empty counts as unset); a
//!    variable for a flag that is also on the command line is refused, as etcd 3.4 does.
//! 4. Flags pikv does not act on become one warning each and are dropped; the remaining ones
//!    are emitted once each (`--name value`, the last occurrence) for [`super::flags`].

use std::collections::BTreeMap;

use super::config::ConfigError;

/// The Go type of a flag's value, which decides how it is written and checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// `bool`: bare `--f` means true; a value only with `=` (Go `strconv.ParseBool`).
    Bool,
    /// etcd's `IgnoredFlag`: behaves like a boolean, any `=value` is accepted.
    Ignored,
    /// Unsigned integer (Go `strconv.ParseUint` with base 0).
    Uint,
    /// Signed 64-bit integer (Go `strconv.ParseInt` with base 0).
    Int,
    /// Go `time.Duration` (`1h2m`, `300ms`, `0`).
    Duration,
    /// Any string.
    Str,
    /// Comma-separated URL list, checked like etcd's `types.NewURLs`.
    Urls,
    /// `--cors`: `*`, empty, or a comma-separated list of origins.
    Cors,
    /// One of a fixed set of words.
    Enum(&'static [&'static str]),
    /// 0.4 `-addr`/`-peer-addr`: `host:port`.
    Addr,
    /// 0.4 `-bind-addr`/`-peer-bind-addr`: `IP[:port]` (or `localhost`).
    BindAddr,
    /// `--join` and 0.4's `-peers`: comma-separated members to join through, each a URL
    /// (client or peer) or a bare `host:port` (a peer address, as 0.4 wrote them).
    Join,
    /// A flag etcd 2.x rejects whatever its value (`-peers-file`).
    Gone,
}

/// What pikv does with a flag.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Use {
    /// Handed to argh ([`super::flags::ServerFlags`]) and interpreted by [`super::config`]
    /// (acted on, refused there, or mapped from the 0.4 form).
    Argh,
    /// An etcd 3.4 flag pikv accepts but does not act on yet: one warning line.
    Inert,
    /// A flag etcd itself ignores with `flag "-x" is no longer supported - ignoring.`
    Legacy,
    /// `--version`: answered by [`normalise`].
    Version,
}

/// One flag of the command line: its name (without dashes), value type and use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlagSpec {
    /// Name as written after the dashes, e.g. `data-dir`.
    pub name: &'static str,
    /// Value type.
    pub kind: Kind,
    /// What pikv does with it.
    pub use_: Use,
}

const fn f(name: &'static str, kind: Kind, use_: Use) -> FlagSpec {
    FlagSpec { name, kind, use_ }
}

const CLUSTER_STATES: &[&str] = &["new", "existing"];
const LOG_LEVELS: &[&str] = &["debug", "info", "warn", "error", "panic", "fatal"];
const PROXY_MODES: &[&str] = &["off", "readonly", "on"];
const FALLBACKS: &[&str] = &["exit", "proxy"];

use Kind::*;
use Use::*;

/// Every flag pikv's server command line knows: etcd 3.4.23's flag set (`etcd --help` plus
/// its hidden and ignored flags), and the 0.4 forms handled the 2.x way.
pub const FLAGS: &[FlagSpec] = &[
    // Acted on (spec §14.3).
    f("name", Str, Argh),
    f("data-dir", Str, Argh),
    f("listen-client-urls", Urls, Argh),
    f("advertise-client-urls", Urls, Argh),
    f("listen-peer-urls", Urls, Argh),
    f("initial-advertise-peer-urls", Urls, Argh),
    f("initial-cluster", Str, Argh),
    f("initial-cluster-state", Enum(CLUSTER_STATES), Argh),
    f("initial-cluster-token", Str, Argh),
    f("heartbeat-interval", Uint, Argh),
    f("election-timeout", Uint, Argh),
    f("snapshot-count", Uint, Argh),
    f("quota-backend-bytes", Int, Argh),
    f("cors", Cors, Argh),
    f("strict-reconfig-check", Bool, Argh),
    f("debug", Bool, Argh),
    f("serializable-reads", Bool, Argh),
    f("force-new-cluster", Bool, Argh),
    f("log-level", Enum(LOG_LEVELS), Argh),
    // Refused by config.rs when they ask for something pikv cannot do.
    f("config-file", Str, Argh),
    f("cert-file", Str, Argh),
    f("key-file", Str, Argh),
    f("trusted-ca-file", Str, Argh),
    f("client-cert-auth", Bool, Argh),
    f("client-crl-file", Str, Argh),
    f("client-cert-allowed-hostname", Str, Argh),
    f("auto-tls", Bool, Argh),
    f("peer-cert-file", Str, Argh),
    f("peer-key-file", Str, Argh),
    f("peer-trusted-ca-file", Str, Argh),
    f("peer-client-cert-auth", Bool, Argh),
    f("peer-auto-tls", Bool, Argh),
    f("peer-crl-file", Str, Argh),
    f("peer-cert-allowed-cn", Str, Argh),
    f("peer-cert-allowed-hostname", Str, Argh),
    f("cipher-suites", Str, Argh),
    f("experimental-peer-skip-client-san-verification", Bool, Argh),
    f("discovery", Str, Argh),
    f("discovery-srv", Str, Argh),
    f("proxy", Enum(PROXY_MODES), Argh),
    // 0.4 flags with the 2.x mapping (spec §14.4).
    f("addr", Addr, Argh),
    f("bind-addr", BindAddr, Argh),
    f("peer-addr", Addr, Argh),
    f("peer-bind-addr", BindAddr, Argh),
    // 0.4's dynamic join, and pikv's own spelling of it.
    f("peers", Join, Argh),
    f("join", Join, Argh),
    f("peers-file", Gone, Argh),
    // Accepted, not acted on yet.
    f("enable-v2", Bool, Inert),
    f("wal-dir", Str, Inert),
    f("initial-election-tick-advance", Bool, Inert),
    f("max-snapshots", Uint, Inert),
    f("max-wals", Uint, Inert),
    f("backend-batch-interval", Duration, Inert),
    f("backend-batch-limit", Uint, Inert),
    f("max-txn-ops", Uint, Inert),
    f("max-request-bytes", Uint, Inert),
    f("max-concurrent-streams", Uint, Inert),
    f("grpc-keepalive-min-time", Duration, Inert),
    f("grpc-keepalive-interval", Duration, Inert),
    f("grpc-keepalive-timeout", Duration, Inert),
    f("discovery-fallback", Enum(FALLBACKS), Inert),
    f("discovery-proxy", Str, Inert),
    f("discovery-srv-name", Str, Inert),
    f("pre-vote", Bool, Inert),
    f("auto-compaction-retention", Str, Inert),
    f("auto-compaction-mode", Str, Inert),
    f("host-whitelist", Str, Inert),
    f("auth-token", Str, Inert),
    f("bcrypt-cost", Uint, Inert),
    f("auth-token-ttl", Uint, Inert),
    f("enable-pprof", Bool, Inert),
    f("metrics", Str, Inert),
    f("listen-metrics-urls", Urls, Inert),
    f("logger", Str, Inert),
    f("log-outputs", Str, Inert),
    f("log-output", Str, Inert),
    f("log-package-levels", Str, Inert),
    f("enable-grpc-gateway", Bool, Inert),
    f("proxy-failure-wait", Uint, Inert),
    f("proxy-refresh-interval", Uint, Inert),
    f("proxy-dial-timeout", Uint, Inert),
    f("proxy-write-timeout", Uint, Inert),
    f("proxy-read-timeout", Uint, Inert),
    f("experimental-initial-corrupt-check", Bool, Inert),
    f("experimental-corrupt-check-time", Duration, Inert),
    f("experimental-enable-v2v3", Str, Inert),
    f("experimental-backend-bbolt-freelist-type", Str, Inert),
    f("experimental-enable-lease-checkpoint", Bool, Inert),
    f("experimental-enable-lease-checkpoint-persist", Bool, Inert),
    f("experimental-compaction-batch-limit", Int, Inert),
    f(
        "experimental-watch-progress-notify-interval",
        Duration,
        Inert,
    ),
    f("experimental-warning-apply-duration", Duration, Inert),
    f("unsafe-no-fsync", Bool, Inert),
    // etcd's own ignored flags (etcdmain `ignored`).
    f("cluster-active-size", Ignored, Legacy),
    f("cluster-remove-delay", Ignored, Legacy),
    f("cluster-sync-interval", Ignored, Legacy),
    f("config", Ignored, Legacy),
    f("force", Ignored, Legacy),
    f("max-result-buffer", Ignored, Legacy),
    f("max-retry-attempts", Ignored, Legacy),
    f("peer-heartbeat-interval", Ignored, Legacy),
    f("peer-election-timeout", Ignored, Legacy),
    f("retry-interval", Ignored, Legacy),
    f("snapshot", Ignored, Legacy),
    f("v", Ignored, Legacy),
    f("vv", Ignored, Legacy),
    f("version", Bool, Version),
];

/// Environment variables with the ETCD_ prefix that are not flags but are known, so they get
/// no "unrecognized" warning. etcd requires `ETCD_UNSUPPORTED_ARCH` on ARM; pikv runs there
/// natively and needs nothing.
const KNOWN_NON_FLAG_ENV: &[&str] = &["UNSUPPORTED_ARCH"];

/// The flag called `name`, if there is one.
pub fn lookup(name: &str) -> Option<&'static FlagSpec> {
    FLAGS.iter().find(|s| s.name == name)
}

/// The environment variable suffix for a flag: `data-dir` → `DATA_DIR`.
pub fn env_suffix(flag: &str) -> String {
    flag.to_ascii_uppercase().replace('-', "_")
}

/// What the command line asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Run the server with the normalised flags.
    Run,
    /// `-h`/`--help`: print usage.
    Help,
    /// `--version`: print the version.
    Version,
}

/// The result of [`normalise`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Normalised {
    /// What was asked for; `argv` is only meaningful for [`Action::Run`].
    pub action: Action,
    /// `--flag value` pairs for argh, one per flag (the effective value), in [`FLAGS`] order.
    pub argv: Vec<String>,
    /// One line each, for the caller to log.
    pub warnings: Vec<String>,
}

fn syntax(message: String) -> ConfigError {
    ConfigError {
        message,
        exit_code: 2,
    }
}

fn invalid(message: String) -> ConfigError {
    ConfigError {
        message,
        exit_code: 1,
    }
}

/// Normalise a server command line and environment (see the module docs).
///
/// `args` excludes argv\[0\]; `env` is the process environment as (name, value) pairs.
/// Errors carry etcd's one-line message and exit status (2 for flag syntax, 1 otherwise).
pub fn normalise(args: &[String], env: &[(String, String)]) -> Result<Normalised, ConfigError> {
    let mut values: BTreeMap<&'static str, String> = BTreeMap::new();
    let mut positional: Option<&str> = None;
    let mut i = 0;
    while i < args.len() {
        let arg = args[i].as_str();
        if arg.len() < 2 || !arg.starts_with('-') {
            positional = Some(arg);
            break;
        }
        let mut name = &arg[1..];
        if let Some(rest) = name.strip_prefix('-') {
            if rest.is_empty() {
                positional = args.get(i + 1).map(String::as_str);
                break;
            }
            name = rest;
        }
        if name.is_empty() || name.starts_with('-') || name.starts_with('=') {
            return Err(syntax(format!("bad flag syntax: {arg}")));
        }
        let (name, inline) = match name.split_once('=') {
            Some((n, v)) => (n, Some(v)),
            None => (name, None),
        };
        let Some(spec) = lookup(name) else {
            if name == "h" || name == "help" {
                return Ok(Normalised {
                    action: Action::Help,
                    argv: Vec::new(),
                    warnings: Vec::new(),
                });
            }
            return Err(syntax(format!("flag provided but not defined: -{name}")));
        };
        let value = match (spec.kind, inline) {
            (_, Some(v)) => v,
            (Bool | Ignored, None) => "true",
            (_, None) => {
                i += 1;
                match args.get(i) {
                    Some(v) => v.as_str(),
                    None => return Err(syntax(format!("flag needs an argument: -{name}"))),
                }
            }
        };
        if let Err(reason) = check_value(spec, value) {
            return Err(syntax(match spec.kind {
                Bool => format!("invalid boolean value \"{value}\" for -{name}: {reason}"),
                Gone => reason,
                _ => format!("invalid value \"{value}\" for flag -{name}: {reason}"),
            }));
        }
        values.insert(spec.name, value.to_string());
        i += 1;
    }
    if let Some(p) = positional {
        return Err(invalid(format!("'{p}' is not a valid flag")));
    }
    if values.get("version").and_then(|v| go_bool(v)) == Some(true) {
        return Ok(Normalised {
            action: Action::Version,
            argv: Vec::new(),
            warnings: Vec::new(),
        });
    }

    let mut warnings = Vec::new();
    let from_env = fold_env(env, &values, &mut warnings)?;
    values.extend(from_env);

    let mut argv = Vec::new();
    for spec in FLAGS {
        let Some(value) = values.get(spec.name) else {
            continue;
        };
        match spec.use_ {
            Argh => {
                argv.push(format!("--{}", spec.name));
                argv.push(value.clone());
            }
            Inert if spec.name == "enable-v2" => warnings.push(format!(
                "--enable-v2={value} has no effect: pikv always serves the v2 API"
            )),
            Inert => warnings.push(format!(
                "--{} is accepted for etcd compatibility but pikv does not act on it yet",
                spec.name
            )),
            Legacy => warnings.push(format!(
                "flag \"-{}\" is no longer supported - ignoring.",
                spec.name
            )),
            Version => {}
        }
    }
    Ok(Normalised {
        action: Action::Run,
        argv,
        warnings,
    })
}

/// Read `ETCD_*`/`PIKV_*` variables into flag values (spec §14.2).
fn fold_env(
    env: &[(String, String)],
    on_cli: &BTreeMap<&'static str, String>,
    warnings: &mut Vec<String>,
) -> Result<BTreeMap<&'static str, String>, ConfigError> {
    // flag -> (ETCD_ key/value, PIKV_ key/value)
    type Slot<'a> = (Option<(&'a str, &'a str)>, Option<(&'a str, &'a str)>);
    let mut found: BTreeMap<&'static str, Slot> = BTreeMap::new();
    for (key, value) in env {
        if key.starts_with("ETCDCTL") || value.is_empty() {
            continue;
        }
        let (suffix, pikv) = if let Some(s) = key.strip_prefix("ETCD_") {
            (s, false)
        } else if let Some(s) = key.strip_prefix("PIKV_") {
            (s, true)
        } else {
            continue;
        };
        let Some(spec) = FLAGS.iter().find(|s| env_suffix(s.name) == suffix) else {
            if !KNOWN_NON_FLAG_ENV.contains(&suffix) {
                warnings.push(format!("unrecognized environment variable {key}={value}"));
            }
            continue;
        };
        let slot = found.entry(spec.name).or_default();
        if pikv {
            slot.1 = Some((key.as_str(), value.as_str()));
        } else {
            slot.0 = Some((key.as_str(), value.as_str()));
        }
    }
    // Conflicts first (etcd's verifyEnv runs before the values are reported).
    for (name, (etcd, pikv)) in &found {
        if on_cli.contains_key(name) {
            let key = pikv.or(*etcd).map(|(k, _)| k).unwrap_or_default();
            return Err(invalid(format!(
                "conflicting environment variable \"{key}\" is shadowed by corresponding \
                 command-line flag (either unset environment variable or disable flag)"
            )));
        }
    }
    let mut out = BTreeMap::new();
    for (name, (etcd, pikv)) in found {
        let Some(spec) = lookup(name) else { continue };
        let Some((key, value)) = pikv.or(etcd) else {
            continue;
        };
        if let (Some((pk, _)), Some((ek, _))) = (pikv, etcd) {
            warnings.push(format!("{pk} overrides {ek}"));
        }
        if let Err(reason) = check_value(spec, value) {
            return Err(invalid(format!(
                "invalid value \"{value}\" for {key}: {reason}"
            )));
        }
        out.insert(name, value.to_string());
    }
    Ok(out)
}

/// Check a value against its flag's type; the error is the reason etcd (Go) gives.
pub fn check_value(spec: &FlagSpec, value: &str) -> Result<(), String> {
    const PARSE: &str = "parse error";
    match spec.kind {
        Bool => go_bool(value).map(|_| ()).ok_or_else(|| PARSE.to_string()),
        Ignored | Str => Ok(()),
        Uint => go_uint(value).map(|_| ()).map_err(str::to_string),
        Int => go_int(value).map(|_| ()).map_err(str::to_string),
        Duration => {
            if go_duration_ok(value) {
                Ok(())
            } else {
                Err(PARSE.to_string())
            }
        }
        Urls => {
            for item in value.split(',') {
                check_url(item.trim())?;
            }
            Ok(())
        }
        Cors => {
            if value.trim().is_empty() {
                return Ok(());
            }
            for item in value.split(',').map(str::trim) {
                if item != "*" && !origin_ok(item) {
                    return Err(format!(
                        "CORS origin must be * or scheme://host[:port]: {item}"
                    ));
                }
            }
            Ok(())
        }
        Enum(words) => {
            if words.contains(&value) {
                Ok(())
            } else {
                Err(format!("valid values are {}", words.join(", ")))
            }
        }
        Addr => match split_host_port(value.trim()) {
            Some((host, port)) if !host.is_empty() && port_ok(port) => Ok(()),
            Some(_) => Err(format!("address {value}: invalid host or port")),
            None => Err(format!("address {value}: missing port in address")),
        },
        BindAddr => {
            let v = value.trim();
            let (host, port) = match split_host_port(v) {
                Some((h, p)) => (h, Some(p)),
                None => (v.trim_start_matches('[').trim_end_matches(']'), None),
            };
            if host != "localhost" && host.parse::<std::net::IpAddr>().is_err() {
                return Err("bad IP in address specification".to_string());
            }
            match port {
                Some(p) if !port_ok(p) => Err(format!("address {value}: invalid port")),
                _ => Ok(()),
            }
        }
        Join => {
            for item in value.split(',').map(str::trim).filter(|i| !i.is_empty()) {
                if item.contains("://") {
                    check_url(item)?;
                } else {
                    match split_host_port(item) {
                        Some((host, port)) if !host.is_empty() && port_ok(port) => {}
                        _ => {
                            return Err(format!(
                                "{item} is neither a URL nor host:port (a member's client or peer address)"
                            ))
                        }
                    }
                }
            }
            Ok(())
        }
        Gone => Err(format!("flag \"-{}\" is no longer supported.", spec.name)),
    }
}

fn port_ok(port: &str) -> bool {
    !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) && port.parse::<u16>().is_ok()
}

fn origin_ok(item: &str) -> bool {
    let Some((scheme, rest)) = item.split_once("://") else {
        return false;
    };
    !scheme.is_empty()
        && scheme
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b))
        && !rest.is_empty()
        && !rest.contains('/')
}

/// The parts of a URL that etcd looks at.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UrlParts {
    /// Scheme, lower-cased (`http`, `https`, `unix`, `unixs`).
    pub scheme: String,
    /// Host without IPv6 brackets (empty for unix sockets written without authority).
    pub host: String,
    /// Port text as written (may be empty for `host:`).
    pub port: String,
}

/// Check one URL the way etcd's `types.NewURLs` does; returns its parts.
pub fn check_url(item: &str) -> Result<UrlParts, String> {
    let scheme_err = || format!("URL scheme must be http, https, unix, or unixs: {item}");
    let (scheme, rest) = go_scheme(item).ok_or_else(scheme_err)?;
    let scheme = scheme.to_ascii_lowercase();
    match scheme.as_str() {
        "http" | "https" => {
            let form_err = || format!("URL address does not have the form \"host:port\": {item}");
            let without_fragment = rest.split('#').next().unwrap_or_default();
            let without_query = without_fragment.split('?').next().unwrap_or_default();
            let Some(after) = without_query.strip_prefix("//") else {
                return Err(form_err());
            };
            let (authority, path) = match after.find('/') {
                Some(p) => after.split_at(p),
                None => (after, ""),
            };
            let hostport = authority.rsplit('@').next().unwrap_or_default();
            let (host, port) = split_host_port(hostport).ok_or_else(form_err)?;
            if !path.is_empty() {
                return Err(format!("URL must not contain a path: {item}"));
            }
            Ok(UrlParts {
                scheme,
                host: host.to_string(),
                port: port.to_string(),
            })
        }
        "unix" | "unixs" => Ok(UrlParts {
            scheme,
            host: rest.trim_start_matches("//").to_string(),
            port: String::new(),
        }),
        _ => Err(scheme_err()),
    }
}

/// Go's `url.getScheme`: `Some((scheme, rest))` when the text starts with a scheme.
fn go_scheme(s: &str) -> Option<(&str, &str)> {
    for (i, c) in s.char_indices() {
        match c {
            'a'..='z' | 'A'..='Z' => {}
            '0'..='9' | '+' | '-' | '.' if i > 0 => {}
            ':' if i > 0 => return Some((&s[..i], &s[i + 1..])),
            _ => return None,
        }
    }
    None
}

/// Go's `net.SplitHostPort`: `None` where Go returns an error.
pub fn split_host_port(hostport: &str) -> Option<(&str, &str)> {
    let i = hostport.rfind(':')?;
    let (host, j, k) = if let Some(inner) = hostport.strip_prefix('[') {
        let end = inner.find(']')? + 1;
        if end + 1 != i {
            return None;
        }
        (&hostport[1..end], 1, end + 1)
    } else {
        let host = &hostport[..i];
        if host.contains(':') {
            return None;
        }
        (host, 0, 0)
    };
    if hostport[j..].contains('[') || hostport[k..].contains(']') {
        return None;
    }
    Some((host, &hostport[i + 1..]))
}

/// Go's `strconv.ParseBool`.
pub fn go_bool(s: &str) -> Option<bool> {
    match s {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

/// Go's `strconv.ParseUint(s, 0, 64)`; the error is Go's flag reason.
pub fn go_uint(s: &str) -> Result<u64, &'static str> {
    const PARSE: &str = "parse error";
    if s.is_empty() {
        return Err(PARSE);
    }
    let lower = s.to_ascii_lowercase();
    let (radix, digits, prefixed) = if let Some(d) = lower.strip_prefix("0x") {
        (16, d, true)
    } else if let Some(d) = lower.strip_prefix("0b") {
        (2, d, true)
    } else if let Some(d) = lower.strip_prefix("0o") {
        (8, d, true)
    } else if lower.len() > 1 && lower.starts_with('0') {
        (8, &lower[1..], true)
    } else {
        (10, lower.as_str(), false)
    };
    if digits.is_empty()
        || digits.ends_with('_')
        || digits.contains("__")
        || (digits.starts_with('_') && !prefixed)
    {
        return Err(PARSE);
    }
    let mut n: u64 = 0;
    let mut out_of_range = false;
    for c in digits.chars().filter(|&c| c != '_') {
        let d = c.to_digit(radix).ok_or(PARSE)?;
        match n
            .checked_mul(u64::from(radix))
            .and_then(|m| m.checked_add(u64::from(d)))
        {
            Some(m) => n = m,
            None => out_of_range = true,
        }
    }
    if out_of_range {
        Err("value out of range")
    } else {
        Ok(n)
    }
}

/// Go's `strconv.ParseInt(s, 0, 64)`.
pub fn go_int(s: &str) -> Result<i64, &'static str> {
    let (neg, body) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    let n = go_uint(body)?;
    if neg {
        if n <= i64::MAX as u64 + 1 {
            Ok((n as i128).wrapping_neg() as i64)
        } else {
            Err("value out of range")
        }
    } else {
        i64::try_from(n).map_err(|_| "value out of range")
    }
}

/// Whether `s` is a valid Go `time.Duration` (syntax only).
pub fn go_duration_ok(s: &str) -> bool {
    let s = s.strip_prefix(['-', '+']).unwrap_or(s);
    if s == "0" {
        return true;
    }
    if s.is_empty() {
        return false;
    }
    let mut rest = s;
    while !rest.is_empty() {
        let int_len = rest.bytes().take_while(u8::is_ascii_digit).count();
        let mut n = int_len;
        let mut frac_len = 0;
        if rest[n..].starts_with('.') {
            n += 1;
            frac_len = rest[n..].bytes().take_while(u8::is_ascii_digit).count();
            n += frac_len;
        }
        if int_len == 0 && frac_len == 0 {
            return false;
        }
        rest = &rest[n..];
        let unit_len = rest
            .char_indices()
            .find(|&(_, c)| c == '.' || c.is_ascii_digit())
            .map_or(rest.len(), |(i, _)| i);
        if !matches!(
            &rest[..unit_len],
            "ns" | "us" | "µs" | "μs" | "ms" | "s" | "m" | "h"
        ) {
            return false;
        }
        rest = &rest[unit_len..];
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    fn norm(args: &[&str], env: &[(&str, &str)]) -> Result<Normalised, ConfigError> {
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        normalise(&s(args), &env)
    }

    #[test]
    fn syntax_forms_normalise_to_one_pair() {
        for args in [
            &["-name", "a"][..],
            &["--name", "a"],
            &["-name=a"],
            &["--name=a"],
            &["--name", "x", "-name=a"],
        ] {
            let n = norm(args, &[]).unwrap();
            assert_eq!(n.argv, s(&["--name", "a"]), "{args:?}");
        }
    }

    #[test]
    fn bool_forms() {
        let cases: &[(&[&str], &str)] = &[
            (&["--debug"], "true"),
            (&["-debug=false"], "false"),
            (&["--debug=T"], "T"),
            (&["--debug=0", "--debug"], "true"),
        ];
        for (args, want) in cases {
            let n = norm(args, &[]).unwrap();
            assert_eq!(n.argv, s(&["--debug", want]), "{args:?}");
        }
    }

    #[test]
    fn errors_and_exit_codes() {
        let cases: &[(&[&str], &str, u8)] = &[
            (&["--enable-v2", "true"], "'true' is not a valid flag", 1),
            (&["foo"], "'foo' is not a valid flag", 1),
            (&["-"], "'-' is not a valid flag", 1),
            (&["--", "--name"], "'--name' is not a valid flag", 1),
            (&["--bogus"], "flag provided but not defined: -bogus", 2),
            (&["-bogus=1"], "flag provided but not defined: -bogus", 2),
            (&["---name", "x"], "bad flag syntax: ---name", 2),
            (&["-=x"], "bad flag syntax: -=x", 2),
            (&["--name"], "flag needs an argument: -name", 2),
            (
                &["--debug=zzz"],
                "invalid boolean value \"zzz\" for -debug: parse error",
                2,
            ),
            (
                &["--heartbeat-interval", "abc"],
                "invalid value \"abc\" for flag -heartbeat-interval: parse error",
                2,
            ),
            (
                &["--heartbeat-interval=-1"],
                "invalid value \"-1\" for flag -heartbeat-interval: parse error",
                2,
            ),
            (
                &["--heartbeat-interval=99999999999999999999"],
                "invalid value \"99999999999999999999\" for flag -heartbeat-interval: value out of range",
                2,
            ),
            (
                &["--heartbeat-interval=x", "--heartbeat-interval=5"],
                "invalid value \"x\" for flag -heartbeat-interval: parse error",
                2,
            ),
            (
                &["--initial-cluster-state", "bogus"],
                "invalid value \"bogus\" for flag -initial-cluster-state: valid values are new, existing",
                2,
            ),
            (
                &["--listen-client-urls", "http://127.0.0.1"],
                "invalid value \"http://127.0.0.1\" for flag -listen-client-urls: URL address does not have the form \"host:port\": http://127.0.0.1",
                2,
            ),
            (
                &["--listen-client-urls", "http://127.0.0.1:1/foo"],
                "invalid value \"http://127.0.0.1:1/foo\" for flag -listen-client-urls: URL must not contain a path: http://127.0.0.1:1/foo",
                2,
            ),
            (
                &["--advertise-client-urls=zzz"],
                "invalid value \"zzz\" for flag -advertise-client-urls: URL scheme must be http, https, unix, or unixs: zzz",
                2,
            ),
            (
                &["--grpc-keepalive-time=5"],
                "flag provided but not defined: -grpc-keepalive-time",
                2,
            ),
            (
                &["--grpc-keepalive-timeout=5x"],
                "invalid value \"5x\" for flag -grpc-keepalive-timeout: parse error",
                2,
            ),
            (
                &["-peers", "a:7001,b"],
                "invalid value \"a:7001,b\" for flag -peers: b is neither a URL nor host:port (a member's client or peer address)",
                2,
            ),
            (
                &["--join", "ftp://a:1"],
                "invalid value \"ftp://a:1\" for flag -join: URL scheme must be http, https, unix, or unixs: ftp://a:1",
                2,
            ),
            (&["-peers-file=f"], "flag \"-peers-file\" is no longer supported.", 2),
            (
                &["-addr", "127.0.0.1"],
                "invalid value \"127.0.0.1\" for flag -addr: address 127.0.0.1: missing port in address",
                2,
            ),
            (
                &["-bind-addr", "example.com:4001"],
                "invalid value \"example.com:4001\" for flag -bind-addr: bad IP in address specification",
                2,
            ),
            (
                &["--log-level", "loud"],
                "invalid value \"loud\" for flag -log-level: valid values are debug, info, warn, error, panic, fatal",
                2,
            ),
            // Parsing stops at the positional argument: later flags are never looked at.
            (&["x", "--bogus"], "'x' is not a valid flag", 1),
            // An error before the positional argument comes first.
            (&["--bogus", "x"], "flag provided but not defined: -bogus", 2),
        ];
        for (args, msg, code) in cases {
            let e = norm(args, &[]).unwrap_err();
            assert_eq!((e.message.as_str(), e.exit_code), (*msg, *code), "{args:?}");
        }
    }

    #[test]
    fn help_and_version() {
        for args in [
            &["-h"][..],
            &["--help"],
            &["-help"],
            &["--name", "a", "-h=x"],
        ] {
            assert_eq!(norm(args, &[]).unwrap().action, Action::Help, "{args:?}");
        }
        assert_eq!(
            norm(&["--bogus", "-h"], &[]).unwrap_err().exit_code,
            2,
            "errors before -h win"
        );
        assert_eq!(norm(&["--version"], &[]).unwrap().action, Action::Version);
        assert_eq!(
            norm(&["-version=true"], &[]).unwrap().action,
            Action::Version
        );
        assert_eq!(norm(&["--version=false"], &[]).unwrap().action, Action::Run);
        // Evaluated before the environment: a conflicting env var does not matter.
        assert_eq!(
            norm(&["--version", "--name", "a"], &[("ETCD_NAME", "b")])
                .unwrap()
                .action,
            Action::Version
        );
        // ETCD_VERSION does not print the version.
        let n = norm(&[], &[("ETCD_VERSION", "true")]).unwrap();
        assert_eq!((n.action, n.warnings.len()), (Action::Run, 0));
        // A value "--help" belongs to the flag before it.
        let n = norm(&["--name", "--help"], &[]).unwrap();
        assert_eq!(n.argv, s(&["--name", "--help"]));
    }

    #[test]
    fn env_precedence_and_conflicts() {
        let n = norm(&[], &[("ETCD_NAME", "e")]).unwrap();
        assert_eq!(n.argv, s(&["--name", "e"]));
        let n = norm(&[], &[("PIKV_NAME", "p"), ("ETCD_NAME", "e")]).unwrap();
        assert_eq!(n.argv, s(&["--name", "p"]));
        assert_eq!(
            n.warnings,
            vec!["PIKV_NAME overrides ETCD_NAME".to_string()]
        );
        // Empty counts as unset, also for the conflict rule.
        let n = norm(&["--name", "c"], &[("ETCD_NAME", "")]).unwrap();
        assert_eq!(n.argv, s(&["--name", "c"]));
        let n = norm(&[], &[("ETCD_NAME", ""), ("PIKV_NAME", "")]).unwrap();
        assert!(n.argv.is_empty());

        type Case<'a> = (&'a [&'a str], &'a [(&'a str, &'a str)], &'a str, u8);
        let cases: &[Case] = &[
            (
                &["--name", "y"],
                &[("ETCD_NAME", "x")],
                "conflicting environment variable \"ETCD_NAME\" is shadowed by corresponding command-line flag (either unset environment variable or disable flag)",
                1,
            ),
            (
                &["-data-dir=d"],
                &[("PIKV_DATA_DIR", "x")],
                "conflicting environment variable \"PIKV_DATA_DIR\" is shadowed by corresponding command-line flag (either unset environment variable or disable flag)",
                1,
            ),
            (
                &[],
                &[("ETCD_ELECTION_TIMEOUT", "abc")],
                "invalid value \"abc\" for ETCD_ELECTION_TIMEOUT: parse error",
                1,
            ),
            (
                &[],
                &[("PIKV_ENABLE_V2", "abc")],
                "invalid value \"abc\" for PIKV_ENABLE_V2: parse error",
                1,
            ),
            (
                &[],
                &[("ETCD_LISTEN_CLIENT_URLS", "http://127.0.0.1")],
                "invalid value \"http://127.0.0.1\" for ETCD_LISTEN_CLIENT_URLS: URL address does not have the form \"host:port\": http://127.0.0.1",
                1,
            ),
            (
                &[],
                &[("ETCD_PEERS", "a:")],
                "invalid value \"a:\" for ETCD_PEERS: a: is neither a URL nor host:port (a member's client or peer address)",
                1,
            ),
        ];
        for (args, env, msg, code) in cases {
            let e = norm(args, env).unwrap_err();
            assert_eq!(
                (e.message.as_str(), e.exit_code),
                (*msg, *code),
                "{args:?} {env:?}"
            );
        }
    }

    #[test]
    fn env_warnings_and_ignored_names() {
        let n = norm(
            &[],
            &[
                ("ETCD_FOO", "1"),
                ("PIKV_BAR", "2"),
                ("ETCDCTL_API", "2"),
                ("ETCDCTL_ENDPOINTS", "http://x:1"),
                ("ETCD_UNSUPPORTED_ARCH", "arm"),
                ("ETCD_name", "lower"),
                ("HOME", "/root"),
                ("ETCD_ENABLE_V2", "true"),
            ],
        )
        .unwrap();
        assert_eq!(
            n.warnings,
            vec![
                "unrecognized environment variable ETCD_FOO=1".to_string(),
                "unrecognized environment variable PIKV_BAR=2".to_string(),
                "unrecognized environment variable ETCD_name=lower".to_string(),
                "--enable-v2=true has no effect: pikv always serves the v2 API".to_string(),
            ]
        );
        assert!(n.argv.is_empty());
    }

    #[test]
    fn inert_and_legacy_flags_warn_once_each() {
        let n = norm(
            &[
                "--enable-v2",
                "--logger",
                "zap",
                "--logger=zap",
                "--log-outputs",
                "stderr",
                "--max-snapshots",
                "5",
                "--auto-compaction-retention=1h",
                "--experimental-initial-corrupt-check=true",
                "--grpc-keepalive-interval",
                "2h",
                "-v",
                "--pre-vote",
                "--name",
                "a",
            ],
            &[],
        )
        .unwrap();
        assert_eq!(n.argv, s(&["--name", "a"]));
        assert_eq!(n.warnings.len(), 9, "{:?}", n.warnings);
        for name in [
            "--enable-v2",
            "--max-snapshots",
            "--grpc-keepalive-interval",
            "--auto-compaction-retention",
            "--logger",
            "--log-outputs",
            "--pre-vote",
            "--experimental-initial-corrupt-check",
            "\"-v\"",
        ] {
            assert_eq!(
                n.warnings.iter().filter(|w| w.contains(name)).count(),
                1,
                "{name}: {:?}",
                n.warnings
            );
        }
        // Ignored flags behave like booleans: a separate value is positional.
        assert_eq!(norm(&["-v", "x"], &[]).unwrap_err().exit_code, 1);
    }

    #[test]
    fn flag_table_is_consistent() {
        let mut names: Vec<_> = FLAGS.iter().map(|s| s.name).collect();
        names.sort_unstable();
        let len = names.len();
        names.dedup();
        assert_eq!(names.len(), len, "duplicate flag in FLAGS");
        for spec in FLAGS {
            assert!(!spec.name.contains(['=', '_']) && !spec.name.starts_with('-'));
        }
    }

    #[test]
    fn go_number_parsing() {
        assert_eq!(go_uint("100"), Ok(100));
        assert_eq!(go_uint("0x10"), Ok(16));
        assert_eq!(go_uint("010"), Ok(8));
        assert_eq!(go_uint("0b11"), Ok(3));
        assert_eq!(go_uint("0o17"), Ok(15));
        assert_eq!(go_uint("1_000"), Ok(1000));
        assert_eq!(go_uint("0"), Ok(0));
        for bad in ["", "_1", "1_", "1__0", "0x", "09", "+1", "-1", " 1", "1.5"] {
            assert_eq!(go_uint(bad), Err("parse error"), "{bad}");
        }
        assert_eq!(go_uint("18446744073709551616"), Err("value out of range"));
        assert_eq!(go_int("-5"), Ok(-5));
        assert_eq!(go_int("+5"), Ok(5));
        assert_eq!(go_int("-9223372036854775808"), Ok(i64::MIN));
        assert_eq!(go_int("9223372036854775808"), Err("value out of range"));
    }

    #[test]
    fn go_duration_parsing() {
        for ok in [
            "0", "5s", "2h", "1h2m3.5s", "300ms", "1.5us", "-1m", ".5s", "1µs",
        ] {
            assert!(go_duration_ok(ok), "{ok}");
        }
        for bad in ["", "5", "s", "1x", "1h2", ".s", "--1s"] {
            assert!(!go_duration_ok(bad), "{bad}");
        }
    }

    #[test]
    fn split_host_port_like_go() {
        assert_eq!(split_host_port("a:1"), Some(("a", "1")));
        assert_eq!(split_host_port("[::1]:2"), Some(("::1", "2")));
        assert_eq!(split_host_port(":2"), Some(("", "2")));
        assert_eq!(split_host_port("a:"), Some(("a", "")));
        for bad in ["a", "::1:2", "[::1]", "[::1", "[::1]x:2", "a]:1", "[a:1"] {
            assert_eq!(split_host_port(bad), None, "{bad}");
        }
    }

    #[test]
    fn odd_inputs_never_panic() {
        let odd: Vec<&str> = vec![
            "",
            "-",
            "--",
            "---",
            "-=",
            "--=",
            "=",
            "-é",
            "--é=ü",
            "-name=",
            "--name=é",
            "-\u{0}",
            "--\u{10FFFF}",
            "-h=",
            "--cors",
            "--cors=,",
            "--cors=*,",
            "-addr=[",
            "-bind-addr=[::",
            "--listen-client-urls=http://[",
            "--listen-client-urls=http://:",
            "--heartbeat-interval=0x",
            "--grpc-keepalive-timeout=.",
            "--grpc-keepalive-timeout=µ",
            "--listen-client-urls=é://",
            "--initial-cluster==,=,",
        ];
        for a in &odd {
            let _ = norm(&[a], &[]);
            let _ = norm(&[a, a], &[]);
            let _ = norm(&["--name", a], &[]);
            let _ = norm(&[], &[("ETCD_NAME", a), (a, a), ("PIKV_CORS", a)]);
        }
        for spec in FLAGS {
            for a in &odd {
                let _ = check_value(spec, a);
            }
        }
    }
}
