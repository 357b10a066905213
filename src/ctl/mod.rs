//! `pikv ctl` (and the binary invoked as `pikvctl`): etcdctl's v2 client (etcd 3.4's
//! etcdctl with `ETCDCTL_API=2`, spec §16) inside pikv, for boards without curl or etcdctl.
//!
//! Same commands, flags, output, error text and exit codes as etcdctl, so scripts written
//! for etcdctl keep working, against pikv or etcd. The modules:
//! - [`args`]: Go/urfave flag syntax (pure);
//! - [`client`]: endpoints, member sync, failover, timeouts, `--debug`;
//! - [`http`]: one exchange over `ureq`, Go's wording of network errors;
//! - [`response`]: the Go client's response types and their `--output json` encoding;
//! - [`output`]: `--output simple|extended|json`;
//! - [`commands`]: the command table and the key commands;
//! - [`watch`]: `watch` and `exec-watch`;
//! - [`members`]: `member` and `cluster-health`;
//! - [`help`]: the help texts (80 columns);
//! - [`error`]: failures and the one place they become stderr text and exit codes;
//! - [`signals`]: Go's SIGPIPE and etcdctl's Ctrl+C behaviour;
//! - [`v3`]: the etcdctl v3 spellings (`put`, `get --prefix`, `del`, `endpoint health`,
//!   `member list -w table`) over the v2 API.
//!
//! It never touches a data dir and starts no server; it only speaks HTTP to endpoints.

pub mod args;
pub mod backup;
pub mod client;
pub mod commands;
pub mod error;
pub mod help;
pub mod http;
pub mod members;
pub mod output;
pub mod response;
pub mod signals;
pub mod v3;
pub mod watch;

use std::io::{Read, Write};
use std::time::Duration;

use args::{flag, parse_command, parse_flags, FlagDef, Kind, ParseError};
use client::{Client, ClientConfig};

use commands::{Connect, Ctx};
use error::{Failure, EXIT_BAD_ARGS, EXIT_NO_COMMAND};
use output::Format;

/// etcdctl v2's global flags, in its order (`etcdctl/ctlv2/ctl.go`).
pub const GLOBAL_FLAGS: &[FlagDef] = &[
    flag(
        &["debug"],
        Kind::Bool,
        "output cURL commands which can be used to reproduce the request",
    ),
    flag(
        &["no-sync"],
        Kind::Bool,
        "don't synchronize cluster information before sending request",
    ),
    flag(
        &["output", "o"],
        Kind::Str,
        "output response in the given format (simple, extended or json) \
         (default: \"simple\")",
    ),
    flag(
        &["discovery-srv", "D"],
        Kind::Str,
        "domain name to query for SRV records describing cluster endpoints \
         (not supported by pikv ctl)",
    ),
    flag(
        &["insecure-discovery"],
        Kind::Bool,
        "accept insecure SRV records describing cluster endpoints",
    ),
    flag(
        &["peers", "C"],
        Kind::Str,
        "DEPRECATED - \"--endpoints\" should be used instead",
    ),
    flag(
        &["endpoint"],
        Kind::Str,
        "DEPRECATED - \"--endpoints\" should be used instead",
    ),
    flag(
        &["endpoints"],
        Kind::Str,
        "a comma-delimited list of machine addresses in the cluster (default: \
         http://127.0.0.1:2379, http://127.0.0.1:4001)",
    ),
    flag(
        &["cert-file"],
        Kind::Str,
        "identify HTTPS client using this SSL certificate file (no TLS in pikv ctl)",
    ),
    flag(
        &["key-file"],
        Kind::Str,
        "identify HTTPS client using this SSL key file (no TLS in pikv ctl)",
    ),
    flag(
        &["ca-file"],
        Kind::Str,
        "verify certificates of HTTPS-enabled servers using this CA bundle (no TLS in \
         pikv ctl)",
    ),
    flag(
        &["username", "u"],
        Kind::Str,
        "provide username[:password] (v2 auth: not supported by pikv ctl)",
    ),
    flag(
        &["timeout"],
        Kind::Duration,
        "connection timeout per request (default: 2s)",
    ),
    flag(
        &["total-timeout"],
        Kind::Duration,
        "timeout for the command execution (except watch) (default: 5s)",
    ),
    flag(&["version", "v"], Kind::Bool, "print the version"),
];

const ENDPOINTS_DEFAULT: &str = "http://127.0.0.1:2379,http://127.0.0.1:4001";

/// Everything `pikv ctl` reads from its process.
pub struct Io<'a> {
    /// Standard input (a value not given as an argument).
    pub stdin: &'a mut dyn Read,
    /// Standard output.
    pub out: &'a mut dyn Write,
    /// Standard error.
    pub err: &'a mut dyn Write,
}

/// Runs `pikv ctl` with `args` (after `ctl`, or after `pikvctl`) and the process
/// environment `env`; returns the exit status. `prog` names the program in help texts.
pub fn run(prog: &str, args: &[String], env: &[(String, String)], io: Io) -> u8 {
    let Io { stdin, out, err } = io;
    signals::default_sigpipe();
    let outcome = if v3::wants_v3(args, env_var(env, "ETCDCTL_API")) {
        v3::run(args, env_var(env, "ETCDCTL_ENDPOINTS"), stdin, out, err)
    } else {
        run_inner(prog, args, env, stdin, out, err)
    };
    let code = match outcome {
        Ok(()) => 0,
        Err(f) => f.report(out, err),
    };
    // Output that cannot be flushed has nowhere to go; the exit status stands.
    let _ = out.flush();
    code
}

fn env_var<'e>(env: &'e [(String, String)], key: &str) -> &'e str {
    env.iter()
        .rev()
        .find(|(k, _)| k == key)
        .map_or("", |(_, v)| v.as_str())
}

fn run_inner(
    prog: &str,
    args: &[String],
    env: &[(String, String)],
    stdin: &mut dyn Read,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<(), Failure> {
    let global = match parse_flags(GLOBAL_FLAGS, args) {
        Ok(g) => g,
        Err(ParseError::Help) => {
            out.write_all(help::global(prog, GLOBAL_FLAGS).as_bytes())?;
            return Ok(());
        }
        Err(ParseError::Bad(message)) => {
            return Err(Failure::Usage {
                stdout: format!(
                    "Incorrect Usage. {message}\n\n{}",
                    help::global(prog, GLOBAL_FLAGS)
                ),
                message,
            })
        }
    };
    if global.bool("version") {
        writeln!(out, "{prog} version: {}", env!("CARGO_PKG_VERSION"))?;
        writeln!(out, "API version: 2")?;
        return Ok(());
    }
    let Some((name, rest)) = global.args.split_first() else {
        out.write_all(help::global(prog, GLOBAL_FLAGS).as_bytes())?;
        return Ok(());
    };
    if name == "help" || name == "h" {
        return match rest.first() {
            None => {
                out.write_all(help::global(prog, GLOBAL_FLAGS).as_bytes())?;
                Ok(())
            }
            Some(topic) => match commands::find(topic) {
                Some(c) => {
                    out.write_all(help::command(prog, c).as_bytes())?;
                    Ok(())
                }
                None => Err(no_topic(topic)),
            },
        };
    }
    let Some(def) = commands::find(name) else {
        return Err(no_topic(name));
    };
    let parsed = match parse_command(def.flags, rest) {
        Ok(p) => p,
        Err(ParseError::Help) => {
            out.write_all(help::command(prog, def).as_bytes())?;
            return Ok(());
        }
        Err(ParseError::Bad(message)) => {
            return Err(Failure::Usage {
                stdout: format!("Incorrect Usage: {message}\n\n{}", help::command(prog, def)),
                message,
            })
        }
    };
    let Some(run_command) = def.run else {
        return Err(Failure::Message {
            code: EXIT_BAD_ARGS,
            text: format!(
                "{prog}: `{}` is not implemented in pikv ctl yet; use etcdctl, or curl \
                 against the v2 HTTP API\n",
                def.name
            ),
        });
    };
    refuse_unsupported(&global, env)?;

    // etcdctl's getPeersFlagValue: the first non-empty of these.
    let endpoints = [
        global.str("endpoints"),
        env_var(env, "ETCDCTL_ENDPOINTS"),
        global.str("endpoint"),
        env_var(env, "ETCDCTL_ENDPOINT"),
        global.str("peers"),
        env_var(env, "ETCDCTL_PEERS"),
    ]
    .into_iter()
    .find(|s| !s.is_empty())
    .unwrap_or(ENDPOINTS_DEFAULT);
    let total_timeout = global.duration("total-timeout", Duration::from_secs(5));
    let cfg = ClientConfig {
        endpoints: endpoints.split(',').map(str::to_string).collect(),
        header_timeout: global.duration("timeout", Duration::from_secs(2)),
        total_timeout,
        debug: global.bool("debug"),
    };
    let client = Client::new(&cfg)?;
    let output = if global.given("output") {
        global.str("output")
    } else {
        "simple"
    };
    let mut ctx = Ctx {
        client,
        sync: !global.bool("no-sync"),
        prog,
        format: Format::parse(output),
        total_timeout,
        stdin,
        out,
        err,
    };
    match def.connect {
        Connect::First => ctx.connect()?,
        Connect::Never => ctx.debug_endpoints()?,
        Connect::ByCommand => {}
    }
    run_command(&mut ctx, &parsed)
}

fn no_topic(name: &str) -> Failure {
    Failure::Message {
        code: EXIT_NO_COMMAND,
        text: format!("No help topic for '{name}'\n"),
    }
}

/// TLS, v2 auth and DNS discovery are not in pikv ctl: say so rather than silently
/// talking plain HTTP without credentials to endpoints the user did not list.
fn refuse_unsupported(global: &args::Parsed, env: &[(String, String)]) -> Result<(), Failure> {
    let checks = [
        (
            "--cert-file",
            global.str("cert-file"),
            "ETCDCTL_CERT_FILE",
            "TLS",
        ),
        (
            "--key-file",
            global.str("key-file"),
            "ETCDCTL_KEY_FILE",
            "TLS",
        ),
        ("--ca-file", global.str("ca-file"), "ETCDCTL_CA_FILE", "TLS"),
        (
            "--username",
            global.str("username"),
            "ETCDCTL_USERNAME",
            "v2 auth",
        ),
        (
            "--discovery-srv",
            global.str("discovery-srv"),
            "ETCDCTL_DISCOVERY_SRV",
            "DNS discovery",
        ),
    ];
    for (flag_name, value, var, what) in checks {
        let from = if !value.is_empty() {
            flag_name
        } else if !env_var(env, var).is_empty() {
            var
        } else {
            continue;
        };
        return Err(Failure::Message {
            code: EXIT_BAD_ARGS,
            text: format!("pikv ctl: {from}: {what} is not supported by pikv ctl\n"),
        });
    }
    Ok(())
}
