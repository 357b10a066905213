//! The table of etcdctl v2's commands (names, help, flags, entry points), and the key
//! commands: what each sends (spec §16.2) and prints, with etcdctl's checks in etcdctl's
//! order (the member sync happens before the arguments are looked at, as in etcdctl, so a
//! dead cluster is reported first). `watch`/`exec-watch` are in [`super::watch`],
//! `member`/`cluster-health` in [`super::members`].

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use super::args::{flag, FlagDef, Kind, Parsed};
use super::client::Client;
use super::error::{ClientError, Failure, EXIT_BAD_ARGS, EXIT_SERVER_ERROR};
use super::http::{canonical_path, encode_values, escape_path, Method, Request};
use super::output::{print_ls, print_response_key, Format};
use super::response::{decode_json, KeysResponse, V2Error};

/// What a command runs with.
pub struct Ctx<'a> {
    /// The client; [`Ctx::connect`] syncs it unless `--no-sync`.
    pub client: Client,
    /// Whether the member list is still to be synced (no `--no-sync`, and
    /// [`Ctx::connect`] not called yet).
    pub sync: bool,
    /// The program's name for help texts (`pikv ctl` or `pikvctl`).
    pub prog: &'a str,
    /// `--output`.
    pub format: Format,
    /// `--total-timeout`, applied to each command's request (not to watches).
    pub total_timeout: Duration,
    /// Standard input, for a value not given on the command line.
    pub stdin: &'a mut dyn Read,
    /// Standard output.
    pub out: &'a mut dyn Write,
    /// Standard error.
    pub err: &'a mut dyn Write,
}

/// A command's entry point.
pub type RunFn = fn(&mut Ctx, &Parsed) -> Result<(), Failure>;

/// When a command's client syncs the member list (etcdctl's `mustNewClient` call sits in
/// a different place in different commands, which decides what is reported first).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Connect {
    /// Before the arguments are checked (the key commands).
    First,
    /// When the command says so, after its own argument checks (`member`).
    ByCommand,
    /// Never (`cluster-health` uses the endpoints as given).
    Never,
}

/// A command: its names, help and flags, and what runs it (`None`: etcdctl has it, pikv
/// ctl not yet).
pub struct CommandDef {
    /// Name.
    pub name: &'static str,
    /// One-line summary.
    pub usage: &'static str,
    /// The arguments, for the usage line.
    pub args_usage: &'static str,
    /// Longer help, lines of at most 77 columns (it is indented by 3).
    pub description: &'static str,
    /// The command's flags.
    pub flags: &'static [FlagDef],
    /// The implementation.
    pub run: Option<RunFn>,
    /// When the member sync happens.
    pub connect: Connect,
}

const TTL: FlagDef = flag(&["ttl"], Kind::Int, "key time-to-live in seconds");

/// Every etcdctl v2 command, in etcdctl's order.
pub const COMMANDS: &[CommandDef] = &[
    CommandDef {
        name: "backup",
        usage: "backup an etcd directory",
        args_usage: "",
        description: "Copies a pikv data dir, also of a running member (what `pikv backup`\n\
                      does); start the copy with `pikv --force-new-cluster`. pikv keeps\n\
                      its write-ahead log in the data dir: the WAL dir flags are refused.",
        flags: &[
            flag(&["data-dir"], Kind::Str, "Path to the etcd data dir"),
            flag(&["wal-dir"], Kind::Str, "Path to the etcd wal dir"),
            flag(&["backup-dir"], Kind::Str, "Path to the backup dir"),
            flag(&["backup-wal-dir"], Kind::Str, "Path to the backup wal dir"),
            flag(&["with-v3"], Kind::Bool, "Backup v3 backend data"),
        ],
        run: Some(super::backup::backup),
        connect: Connect::Never,
    },
    CommandDef {
        name: "cluster-health",
        usage: "check the health of the etcd cluster",
        args_usage: "",
        description: "Reads the member list from the endpoints as given (never synced)\n\
                      and asks each member's client URLs for /health. Exit status 0 when\n\
                      every member is healthy, 5 otherwise.",
        flags: &[flag(
            &["forever", "f"],
            Kind::Bool,
            "forever check the health every 10 second until CTRL+C",
        )],
        run: Some(super::members::cluster_health),
        connect: Connect::Never,
    },
    CommandDef {
        name: "mk",
        usage: "make a new key with a given value",
        args_usage: "<key> <value>",
        description: "Creates <key> with <value>; fails if <key> exists. With --in-order,\n\
                      creates a key named after its index inside the directory <key>.\n\
                      Without <value>, the value is read from standard input.",
        flags: &[
            flag(
                &["in-order"],
                Kind::Bool,
                "create in-order key under directory <key>",
            ),
            TTL,
        ],
        run: Some(mk),
        connect: Connect::First,
    },
    CommandDef {
        name: "mkdir",
        usage: "make a new directory",
        args_usage: "<key>",
        description: "",
        flags: &[TTL],
        run: Some(mkdir),
        connect: Connect::First,
    },
    CommandDef {
        name: "rm",
        usage: "remove a key or a directory",
        args_usage: "<key>",
        description: "",
        flags: &[
            flag(
                &["dir"],
                Kind::Bool,
                "removes the key if it is an empty directory or a key-value pair",
            ),
            flag(
                &["recursive", "r"],
                Kind::Bool,
                "removes the key and all child keys(if it is a directory)",
            ),
            flag(&["with-value"], Kind::Str, "previous value"),
            flag(&["with-index"], Kind::Int, "previous index"),
        ],
        run: Some(rm),
        connect: Connect::First,
    },
    CommandDef {
        name: "rmdir",
        usage: "removes the key if it is an empty directory or a key-value pair",
        args_usage: "<key>",
        description: "",
        flags: &[],
        run: Some(rmdir),
        connect: Connect::First,
    },
    CommandDef {
        name: "get",
        usage: "retrieve the value of a key",
        args_usage: "<key>",
        description: "",
        flags: &[
            flag(&["sort"], Kind::Bool, "returns result in sorted order"),
            flag(
                &["quorum", "q"],
                Kind::Bool,
                "require quorum for get request",
            ),
        ],
        run: Some(get),
        connect: Connect::First,
    },
    CommandDef {
        name: "ls",
        usage: "retrieve a directory",
        args_usage: "[key]",
        description: "",
        flags: &[
            flag(&["sort"], Kind::Bool, "returns result in sorted order"),
            flag(
                &["recursive", "r"],
                Kind::Bool,
                "returns all key names recursively for the given path",
            ),
            flag(&["p"], Kind::Bool, "append slash (/) to directories"),
            flag(
                &["quorum", "q"],
                Kind::Bool,
                "require quorum for get request",
            ),
        ],
        run: Some(ls),
        connect: Connect::First,
    },
    CommandDef {
        name: "set",
        usage: "set the value of a key",
        args_usage: "<key> <value>",
        description: "Set sets the value of a key.\n\
                      \n\
                      When <value> begins with '-', <value> is interpreted as a flag.\n\
                      Insert '--' for workaround:\n\
                      \n\
                      $ set -- <key> <value>",
        flags: &[
            TTL,
            flag(&["swap-with-value"], Kind::Str, "previous value"),
            flag(&["swap-with-index"], Kind::Int, "previous index"),
        ],
        run: Some(set),
        connect: Connect::First,
    },
    CommandDef {
        name: "setdir",
        usage: "create a new directory or update an existing directory TTL",
        args_usage: "<key>",
        description: "",
        flags: &[TTL],
        run: Some(setdir),
        connect: Connect::First,
    },
    CommandDef {
        name: "update",
        usage: "update an existing key with a given value",
        args_usage: "<key> <value>",
        description: "",
        flags: &[TTL],
        run: Some(update),
        connect: Connect::First,
    },
    CommandDef {
        name: "updatedir",
        usage: "update an existing directory",
        args_usage: "<key> <value>",
        description: "",
        flags: &[TTL],
        run: Some(updatedir),
        connect: Connect::First,
    },
    CommandDef {
        name: "watch",
        usage: "watch a key for changes",
        args_usage: "<key>",
        description: "Prints the next change of <key> and exits (with --forever: every\n\
                      change until interrupted). Changes to directories are not printed.",
        flags: &[
            flag(
                &["forever", "f"],
                Kind::Bool,
                "forever watch a key until CTRL+C",
            ),
            flag(&["after-index"], Kind::Int, "watch after the given index"),
            flag(
                &["recursive", "r"],
                Kind::Bool,
                "returns all values for key and child keys",
            ),
        ],
        run: Some(super::watch::watch),
        connect: Connect::First,
    },
    CommandDef {
        name: "exec-watch",
        usage: "watch a key for changes and exec an executable",
        args_usage: "<key> <command> [args...]",
        description: "Runs <command> after every change of <key> (until interrupted), with\n\
                      ETCD_WATCH_ACTION, ETCD_WATCH_KEY, ETCD_WATCH_VALUE and\n\
                      ETCD_WATCH_MODIFIED_INDEX in its environment. Write\n\
                      `exec-watch [options] <key> -- <command> [args...]`: as with\n\
                      etcdctl, without a flag before <key> the last argument is taken\n\
                      as the key.",
        flags: &[
            flag(&["after-index"], Kind::Int, "watch after the given index"),
            flag(
                &["recursive", "r"],
                Kind::Bool,
                "watch all values for key and child keys",
            ),
        ],
        run: Some(super::watch::exec_watch),
        connect: Connect::First,
    },
    CommandDef {
        name: "member",
        usage: "member add, remove and list subcommands",
        args_usage: "list | add <name> <peerURL> | remove <memberID> |\n   \
                     update <memberID> <peerURLs>",
        description: "list    enumerate existing cluster members\n\
                      add     add a new member to the etcd cluster\n\
                      remove  remove an existing member from the etcd cluster\n\
                      update  update an existing member in the etcd cluster",
        flags: &[],
        run: Some(super::members::member),
        connect: Connect::ByCommand,
    },
    CommandDef {
        name: "user",
        usage: "user add, grant and revoke subcommands",
        args_usage: "",
        description: "",
        flags: &[],
        run: None,
        connect: Connect::First,
    },
    CommandDef {
        name: "role",
        usage: "role add, grant and revoke subcommands",
        args_usage: "",
        description: "",
        flags: &[],
        run: None,
        connect: Connect::First,
    },
    CommandDef {
        name: "auth",
        usage: "overall auth controls",
        args_usage: "",
        description: "",
        flags: &[],
        run: None,
        connect: Connect::First,
    },
];

/// The command named `name`.
pub fn find(name: &str) -> Option<&'static CommandDef> {
    COMMANDS.iter().find(|c| c.name == name)
}

/// etcd's Go client's error for a body that is not what it expects.
const INVALID_JSON: &str =
    "client: response is invalid json. The endpoint is probably not valid etcd cluster endpoint.";

/// The escaped path and query of a keys request (Go's `v2KeysURL`).
pub(super) fn keys_target(key: &str, params: &[(&str, String)]) -> String {
    let key = if key.is_empty() || key.starts_with('/') {
        key.to_string()
    } else {
        format!("/{key}")
    };
    let path = escape_path(&canonical_path(&format!("/v2/keys{key}")));
    let query = encode_values(params);
    if query.is_empty() {
        path
    } else {
        format!("{path}?{query}")
    }
}

/// Decodes a keys answer as the Go client does.
pub(super) fn decode(resp: super::http::Response) -> Result<KeysResponse, ClientError> {
    match resp.status {
        200 | 201 => {
            if resp.body.is_empty() {
                return Err(ClientError::Other(
                    "client: response body is empty".to_string(),
                ));
            }
            let mut r: KeysResponse = decode_json(&resp.body)
                .map_err(|_| ClientError::Other(INVALID_JSON.to_string()))?;
            if let Some(h) = resp.etcd_index.as_deref().filter(|h| !h.is_empty()) {
                r.index = h.parse().map_err(|_| {
                    ClientError::Other(format!("strconv.ParseUint: parsing {h:?}: invalid syntax"))
                })?;
            }
            Ok(r)
        }
        _ => match decode_json::<V2Error>(&resp.body) {
            Ok(e) => Err(ClientError::Server(e)),
            Err(_) => Err(ClientError::Other(INVALID_JSON.to_string())),
        },
    }
}

impl Ctx<'_> {
    /// etcdctl's `mustNewClient`: sync the member list unless `--no-sync` (once), then
    /// the `--debug` line naming the endpoints in use.
    pub fn connect(&mut self) -> Result<(), Failure> {
        if self.sync {
            self.sync = false;
            let deadline = Instant::now() + self.total_timeout;
            self.client.sync(deadline, self.err)?;
        }
        self.debug_endpoints()
    }

    /// etcdctl's `mustNewClientNoSync`: only the `--debug` line.
    pub fn debug_endpoints(&mut self) -> Result<(), Failure> {
        if self.client.debug() {
            writeln!(
                self.err,
                "Cluster-Endpoints: {}",
                self.client.endpoints().join(", ")
            )?;
        }
        Ok(())
    }

    /// Sends one keys request within the total timeout; a failure is etcdctl's
    /// `handleError(ExitServerError)`.
    fn keys(&mut self, req: Request) -> Result<KeysResponse, Failure> {
        let deadline = Instant::now() + self.total_timeout;
        self.client
            .send(&req, Some(deadline), self.err)
            .and_then(decode)
            .map_err(|e| Failure::client(EXIT_SERVER_ERROR, e))
    }

    pub(super) fn print(&mut self, resp: &KeysResponse) -> Result<(), Failure> {
        print_response_key(resp, &self.format, self.out, self.err)?;
        Ok(())
    }

    /// Prints unless the format is simple (directory commands print nothing then).
    fn print_unless_simple(&mut self, resp: &KeysResponse) -> Result<(), Failure> {
        if self.format != Format::Simple {
            self.print(resp)?;
        }
        Ok(())
    }

    /// etcdctl's `argOrStdin`: argument `i`, else all of standard input (kept as read,
    /// trailing newline included); neither is "value required".
    fn value(&mut self, p: &Parsed, i: usize) -> Result<String, Failure> {
        if let Some(v) = p.args.get(i) {
            return Ok(v.clone());
        }
        let mut buf = Vec::new();
        match self.stdin.read_to_end(&mut buf) {
            Ok(_) if !buf.is_empty() => Ok(String::from_utf8_lossy(&buf).into_owned()),
            _ => Err(Failure::bad_args("value required")),
        }
    }
}

pub(super) fn key_arg(p: &Parsed) -> Result<String, Failure> {
    p.args
        .first()
        .cloned()
        .ok_or_else(|| Failure::bad_args("key required"))
}

/// The form of a set request: `value` unless a directory, `ttl` when positive.
fn set_form(value: Option<&str>, ttl: i64) -> String {
    let mut form: Vec<(&str, String)> = Vec::new();
    if let Some(v) = value {
        form.push(("value", v.to_string()));
    }
    if ttl > 0 {
        form.push(("ttl", ttl.to_string()));
    }
    encode_values(&form)
}

fn put(target: String, form: String) -> Request {
    Request::with_form(Method::Put, target, form)
}

fn set(c: &mut Ctx, p: &Parsed) -> Result<(), Failure> {
    let key = key_arg(p)?;
    let value = c.value(p, 1)?;
    let mut q: Vec<(&str, String)> = Vec::new();
    let prev_value = p.str("swap-with-value");
    if !prev_value.is_empty() {
        q.push(("prevValue", prev_value.to_string()));
    }
    let prev_index = p.int("swap-with-index");
    if prev_index != 0 {
        // Go converts the int to uint64: a negative index wraps, as etcdctl's does.
        q.push(("prevIndex", (prev_index as u64).to_string()));
    }
    let resp = c.keys(put(
        keys_target(&key, &q),
        set_form(Some(&value), p.int("ttl")),
    ))?;
    c.print(&resp)
}

fn mk(c: &mut Ctx, p: &Parsed) -> Result<(), Failure> {
    let key = key_arg(p)?;
    let value = c.value(p, 1)?;
    let form = set_form(Some(&value), p.int("ttl"));
    let req = if p.bool("in-order") {
        Request::with_form(Method::Post, keys_target(&key, &[]), form)
    } else {
        put(keys_target(&key, &[("prevExist", "false".into())]), form)
    };
    let resp = c.keys(req)?;
    c.print(&resp)
}

fn update(c: &mut Ctx, p: &Parsed) -> Result<(), Failure> {
    let key = key_arg(p)?;
    let value = c.value(p, 1)?;
    let resp = c.keys(put(
        keys_target(&key, &[("prevExist", "true".into())]),
        set_form(Some(&value), p.int("ttl")),
    ))?;
    c.print(&resp)
}

/// mkdir, setdir and updatedir: `PUT ?dir=true` with `prevExist` false, absent or true.
fn dir_command(c: &mut Ctx, p: &Parsed, prev_exist: Option<&str>) -> Result<(), Failure> {
    let key = key_arg(p)?;
    let mut q: Vec<(&str, String)> = vec![("dir", "true".into())];
    if let Some(pe) = prev_exist {
        q.push(("prevExist", pe.into()));
    }
    let resp = c.keys(put(keys_target(&key, &q), set_form(None, p.int("ttl"))))?;
    c.print_unless_simple(&resp)
}

fn mkdir(c: &mut Ctx, p: &Parsed) -> Result<(), Failure> {
    dir_command(c, p, Some("false"))
}

fn setdir(c: &mut Ctx, p: &Parsed) -> Result<(), Failure> {
    dir_command(c, p, None)
}

fn updatedir(c: &mut Ctx, p: &Parsed) -> Result<(), Failure> {
    dir_command(c, p, Some("true"))
}

fn delete(c: &mut Ctx, key: &str, q: &[(&str, String)]) -> Result<(), Failure> {
    let resp = c.keys(Request::delete(keys_target(key, q)))?;
    if !resp.node().dir || c.format != Format::Simple {
        c.print(&resp)?;
    }
    Ok(())
}

fn rm(c: &mut Ctx, p: &Parsed) -> Result<(), Failure> {
    let key = key_arg(p)?;
    let mut q: Vec<(&str, String)> = Vec::new();
    if p.bool("dir") {
        q.push(("dir", "true".into()));
    }
    let prev_index = p.int("with-index");
    if prev_index != 0 {
        q.push(("prevIndex", (prev_index as u64).to_string()));
    }
    let prev_value = p.str("with-value");
    if !prev_value.is_empty() {
        q.push(("prevValue", prev_value.to_string()));
    }
    if p.bool("recursive") {
        q.push(("recursive", "true".into()));
    }
    delete(c, &key, &q)
}

fn rmdir(c: &mut Ctx, p: &Parsed) -> Result<(), Failure> {
    let key = key_arg(p)?;
    delete(c, &key, &[("dir", "true".into())])
}

fn get_params(recursive: bool, sorted: bool, quorum: bool) -> Vec<(&'static str, String)> {
    vec![
        ("quorum", quorum.to_string()),
        ("recursive", recursive.to_string()),
        ("sorted", sorted.to_string()),
    ]
}

fn get(c: &mut Ctx, p: &Parsed) -> Result<(), Failure> {
    let key = key_arg(p)?;
    let q = get_params(false, p.bool("sort"), p.bool("quorum"));
    let resp = c.keys(Request::get(keys_target(&key, &q)))?;
    let node = resp.node();
    if node.dir {
        return Err(Failure::Message {
            code: EXIT_BAD_ARGS,
            text: format!("{}: is a directory\n", node.key),
        });
    }
    c.print(&resp)
}

fn ls(c: &mut Ctx, p: &Parsed) -> Result<(), Failure> {
    let key = p.args.first().cloned().unwrap_or_else(|| "/".to_string());
    let q = get_params(p.bool("recursive"), p.bool("sort"), p.bool("quorum"));
    let resp = c.keys(Request::get(keys_target(&key, &q)))?;
    print_ls(&resp, &c.format, p.bool("p"), c.out, c.err)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_targets_are_what_etcdctl_sends() {
        assert_eq!(
            keys_target("x", &get_params(false, false, false)),
            "/v2/keys/x?quorum=false&recursive=false&sorted=false"
        );
        assert_eq!(keys_target("/", &[]), "/v2/keys/");
        assert_eq!(
            keys_target("/ctl/k1", &[("prevValue", "v 2".into())]),
            "/v2/keys/ctl/k1?prevValue=v+2"
        );
        assert_eq!(
            keys_target(
                "/d",
                &[("prevExist", "false".into()), ("dir", "true".into())]
            ),
            "/v2/keys/d?dir=true&prevExist=false"
        );
        assert_eq!(set_form(Some("a b&c"), 5), "ttl=5&value=a+b%26c");
        assert_eq!(set_form(None, 0), "");
    }
}
