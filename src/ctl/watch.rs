//! `watch` and `exec-watch`: etcd's Go watcher (`GET ...?wait=true&waitIndex=N`, re-armed
//! at the last event's modified index + 1, an empty answer retried) and what etcdctl does
//! with each event.

use std::process::Command;

use super::args::Parsed;
use super::commands::{decode, key_arg, keys_target, Ctx};
use super::error::{ClientError, Failure, EXIT_BAD_ARGS, EXIT_SERVER_ERROR};
use super::http::Request;
use super::response::KeysResponse;

/// A watcher on one key.
struct Watcher {
    key: String,
    recursive: bool,
    /// `waitIndex` of the next request; 0: from now on.
    wait_index: u64,
}

impl Watcher {
    /// Go's `WatcherOptions{AfterIndex, Recursive}`: the first request waits for index
    /// after-index + 1.
    fn new(key: String, recursive: bool, after_index: i64) -> Watcher {
        let wait_index = if after_index > 0 {
            after_index as u64 + 1
        } else {
            0
        };
        Watcher {
            key,
            recursive,
            wait_index,
        }
    }

    /// The next event (no total timeout: watches wait as long as it takes).
    fn next(&mut self, c: &mut Ctx) -> Result<KeysResponse, ClientError> {
        loop {
            let q = vec![
                ("recursive", self.recursive.to_string()),
                ("wait", "true".to_string()),
                ("waitIndex", self.wait_index.to_string()),
            ];
            let req = Request::get(keys_target(&self.key, &q));
            let r = c.client.send(&req, None, c.err)?;
            // An empty 200 is the server ending a long poll with no event: ask again.
            if (r.status == 200 || r.status == 201) && r.body.is_empty() {
                continue;
            }
            let resp = decode(r)?;
            self.wait_index = resp.node().modified_index + 1;
            return Ok(resp);
        }
    }
}

/// `watch [--forever] [--after-index N] [--recursive] <key>`.
pub fn watch(c: &mut Ctx, p: &Parsed) -> Result<(), Failure> {
    let key = key_arg(p)?;
    let recursive = p.bool("recursive");
    let forever = p.bool("forever");
    let mut w = Watcher::new(key, recursive, p.int("after-index"));
    super::signals::exit_zero_on_interrupt();
    loop {
        let resp = w
            .next(c)
            .map_err(|e| Failure::client(EXIT_SERVER_ERROR, e))?;
        let node = resp.node();
        if node.dir {
            continue;
        }
        if recursive {
            writeln!(c.out, "[{}] {}", resp.action, node.key)?;
        }
        c.print(&resp)?;
        c.out.flush()?;
        if !forever {
            return Ok(());
        }
    }
}

/// etcdctl's way of finding the key and the command among the arguments: with a `--`
/// after the first argument, the key comes first; without one (urfave/cli moved it away
/// when no flag preceded the key) the last argument is the key.
fn split_exec_args(args: &[String]) -> Option<(String, Vec<String>)> {
    if args.len() < 2 {
        return None;
    }
    if args.iter().skip(1).any(|a| a == "--") {
        let cmd = args[2..].to_vec();
        Some((args[0].clone(), cmd))
    } else {
        let (key, cmd) = args.split_last()?;
        Some((key.clone(), cmd.to_vec()))
    }
}

/// `exec-watch [--after-index N] [--recursive] <key> -- <command> [args...]`.
pub fn exec_watch(c: &mut Ctx, p: &Parsed) -> Result<(), Failure> {
    let Some((key, cmd)) = split_exec_args(&p.args) else {
        return Err(Failure::bad_args("key and command to exec required"));
    };
    let mut w = Watcher::new(key, p.bool("recursive"), p.int("after-index"));
    super::signals::exit_zero_on_interrupt();
    loop {
        let resp = w
            .next(c)
            .map_err(|e| Failure::client(EXIT_SERVER_ERROR, e))?;
        let node = resp.node();
        if node.dir {
            writeln!(c.err, "Ignored dir {} change", node.key)?;
            continue;
        }
        let Some((program, args)) = cmd.split_first() else {
            // `key -- ` with nothing after the separator: Go indexes an empty slice and
            // panics; say what is missing instead.
            return Err(Failure::bad_args("key and command to exec required"));
        };
        // Go's exec.Command looks the program up in $PATH before it forks; the fork's own
        // exec error is not always reported back (under qemu-user the child just exits 127).
        let Some(path) = look_path(program) else {
            return Err(Failure::Message {
                code: EXIT_BAD_ARGS,
                text: format!("exec: {program:?}: executable file not found in $PATH"),
            });
        };
        let child = Command::new(&path)
            .args(args)
            .env("ETCD_WATCH_ACTION", &resp.action)
            .env("ETCD_WATCH_MODIFIED_INDEX", node.modified_index.to_string())
            .env("ETCD_WATCH_KEY", &node.key)
            .env("ETCD_WATCH_VALUE", &node.value)
            .spawn();
        match child {
            // etcdctl does not wait for the command before watching again; a thread
            // reaps it so no zombie is left behind.
            Ok(mut child) => {
                std::thread::spawn(move || child.wait());
            }
            // Go's os/exec wording, without a newline as etcdctl prints it.
            Err(e) => {
                return Err(Failure::Message {
                    code: EXIT_BAD_ARGS,
                    text: format!("fork/exec {}: {e}", path.display()),
                })
            }
        }
    }
}

/// Go's `exec.LookPath`: a name with a `/` is used as it is; otherwise the first regular
/// file with an execute bit in a `$PATH` directory (an empty entry is the current one).
fn look_path(program: &str) -> Option<std::path::PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    if program.contains('/') {
        return Some(program.into());
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path).find_map(|dir| {
        let dir = if dir.as_os_str().is_empty() {
            std::path::PathBuf::from(".")
        } else {
            dir
        };
        let candidate = dir.join(program);
        let meta = std::fs::metadata(&candidate).ok()?;
        (meta.is_file() && meta.permissions().mode() & 0o111 != 0).then_some(candidate)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn exec_args_are_split_as_etcdctl_splits_them() {
        assert_eq!(
            split_exec_args(&s(&["/k", "--", "sh", "-c", "env"])),
            Some(("/k".into(), s(&["sh", "-c", "env"])))
        );
        assert_eq!(
            split_exec_args(&s(&["sh", "-c", "env", "/k"])),
            Some(("/k".into(), s(&["sh", "-c", "env"])))
        );
        assert_eq!(split_exec_args(&s(&["/k"])), None);
    }

    #[test]
    fn programs_are_looked_up_in_path_as_go_does() {
        let sh = look_path("sh").expect("sh in $PATH");
        assert!(sh.is_absolute() && sh.ends_with("sh"), "{sh:?}");
        assert_eq!(look_path("pikv-no-such-program-anywhere"), None);
        assert_eq!(look_path("./x"), Some("./x".into()));
    }
}
