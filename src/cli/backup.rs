//! `pikv backup` command line: `--data-dir` and `--backup-dir`, as etcdctl's v2 `backup`
//! takes them (one or two dashes, `--flag value` or `--flag=value`). Pure: no I/O.

use super::config::ConfigError;
use std::path::PathBuf;

/// What `pikv backup ...` asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BackupInvocation {
    /// Copy `data_dir` into `backup_dir`.
    Run {
        /// The member's data dir (`--data-dir`).
        data_dir: PathBuf,
        /// Where the backup goes (`--backup-dir`): missing or empty.
        backup_dir: PathBuf,
    },
    /// `-h`/`--help`: print [`USAGE`] to stdout and exit 0.
    Help,
}

/// The help text of `pikv backup` (every line at most 80 columns).
pub const USAGE: &str = "\
Usage:

  pikv backup --data-dir <dir> --backup-dir <dir>

Copies the data dir of a pikv member into a new data dir while the member keeps
running (or stopped): the applied state as of one moment (LMDB's consistent
copy, compacted) and the member's write-ahead log up to then. Every write the
member had acknowledged when the backup began is in it; back up the leader
for every write the cluster had acknowledged.

The backup is a data dir that starts only as a new one-member cluster:
  pikv --force-new-cluster --data-dir <backup dir> [--name ... URLs ...]
keeps every key, the etcd index and the member and cluster ids; add members
again with `pikv ctl member add` and --initial-cluster-state existing.

Flags:
  --data-dir <dir>
    The member's data dir (the one given to `pikv --data-dir`).
  --backup-dir <dir>
    Where to write the backup; it must be missing or empty.
  -h, --help
    Show this help.

Exit status: 0 when the backup is complete and synced to disk, 1 when it failed
(one line on stderr says why; a partial backup is removed), 2 for bad flags.
";

fn usage_error(message: String) -> ConfigError {
    ConfigError {
        message: format!("{message} (see `pikv backup --help`)"),
        exit_code: 2,
    }
}

/// Parses the arguments after `backup`.
pub fn parse_backup_args(args: &[String]) -> Result<BackupInvocation, ConfigError> {
    let mut data_dir = None;
    let mut backup_dir = None;
    let mut rest = args.iter();
    while let Some(arg) = rest.next() {
        let Some(flag) = arg
            .strip_prefix("--")
            .or_else(|| arg.strip_prefix('-'))
            .filter(|f| !f.is_empty())
        else {
            return Err(usage_error(format!("unexpected argument {arg:?}")));
        };
        let (name, inline) = match flag.split_once('=') {
            Some((n, v)) => (n, Some(v.to_string())),
            None => (flag, None),
        };
        let slot = match name {
            "h" | "help" => return Ok(BackupInvocation::Help),
            "data-dir" => &mut data_dir,
            "backup-dir" => &mut backup_dir,
            _ => return Err(usage_error(format!("unknown flag -{name}"))),
        };
        let value = match inline {
            Some(v) => v,
            None => rest
                .next()
                .cloned()
                .ok_or_else(|| usage_error(format!("flag needs an argument: -{name}")))?,
        };
        if value.is_empty() {
            return Err(usage_error(format!("-{name} must not be empty")));
        }
        *slot = Some(PathBuf::from(value));
    }
    match (data_dir, backup_dir) {
        (Some(data_dir), Some(backup_dir)) => Ok(BackupInvocation::Run {
            data_dir,
            backup_dir,
        }),
        (None, _) => Err(usage_error("--data-dir is required".into())),
        (_, None) => Err(usage_error("--backup-dir is required".into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<BackupInvocation, ConfigError> {
        parse_backup_args(&args.iter().map(|a| a.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn both_dirs_in_every_flag_form() {
        let want = BackupInvocation::Run {
            data_dir: "d".into(),
            backup_dir: "b".into(),
        };
        assert_eq!(
            parse(&["--data-dir", "d", "--backup-dir", "b"]),
            Ok(want.clone())
        );
        assert_eq!(
            parse(&["-backup-dir=b", "-data-dir", "d"]),
            Ok(want.clone())
        );
        assert_eq!(
            parse(&["--data-dir=x", "--data-dir=d", "--backup-dir=b"]),
            Ok(want)
        );
        assert_eq!(
            parse(&["--data-dir", "d", "-h"]),
            Ok(BackupInvocation::Help)
        );
    }

    #[test]
    fn missing_unknown_and_empty_are_usage_errors() {
        for (args, says) in [
            (&["--data-dir", "d"][..], "--backup-dir is required"),
            (&["--backup-dir", "b"][..], "--data-dir is required"),
            (&["--data-dir"][..], "flag needs an argument: -data-dir"),
            (&["--wal-dir", "w"][..], "unknown flag -wal-dir"),
            (
                &["--data-dir=", "--backup-dir", "b"][..],
                "must not be empty",
            ),
            (&["d", "b"][..], "unexpected argument \"d\""),
        ] {
            let e = parse(args).unwrap_err();
            assert_eq!(e.exit_code, 2, "{args:?}");
            assert!(e.message.contains(says), "{args:?}: {}", e.message);
        }
    }

    #[test]
    fn help_lines_fit_80_columns() {
        for line in USAGE.lines() {
            assert!(line.len() <= 80, "{line}");
        }
    }
}
