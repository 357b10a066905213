//! The `pikv` binary: parse etcd-style flags, run the server, and turn any error into one
//! line on stderr and an exit code.

use pikv::cli::config::{parse_server_args, Invocation};
use std::process::ExitCode;

fn main() -> ExitCode {
    // `pikv ctl ...` or the binary invoked as `pikvctl`: the etcdctl-compatible client
    // (issue 8). Before the signal mask below: a client must die of Ctrl+C as usual.
    if let Some((prog, ctl_args)) = ctl_invocation() {
        let env: Vec<(String, String)> = std::env::vars_os()
            .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
            .collect();
        let io = pikv::ctl::Io {
            stdin: &mut std::io::stdin().lock(),
            out: &mut std::io::stdout().lock(),
            err: &mut std::io::stderr().lock(),
        };
        return ExitCode::from(pikv::ctl::run(prog, &ctl_args, &env, io));
    }
    // `pikv backup ...`: a one-shot copy of a data dir; like the client, it dies of Ctrl+C
    // as usual (a backup cut short has no WAL yet, and no start accepts it; the member
    // clears the reader slot it leaves behind at its next compaction).
    let argv: Vec<String> = std::env::args().skip(1).collect();
    if argv.first().map(String::as_str) == Some("backup") {
        return backup(&argv[1..]);
    }
    // Before any thread exists, so every thread inherits the blocked mask (util::signal).
    pikv::util::signal::block_termination_signals();
    pikv::util::memory::limit_malloc_arenas();
    let mut args = argv;
    // In a container `docker run <image> etcd -name ...` names the program first, as etcd's
    // images are run in several tutorials: with pikv as the entrypoint, skip that word.
    if args
        .first()
        .is_some_and(|a| a == "etcd" || a.ends_with("/etcd") || a == "pikv" || a.ends_with("/pikv"))
    {
        args.remove(0);
    }
    let env: Vec<(String, String)> = std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
        .collect();
    // `pikv check-config [flags]`: the server's own flag and environment checks, nothing
    // started (the snap's configure hook rejects bad settings with it).
    let check_only = args.first().map(String::as_str) == Some("check-config");
    let args = if check_only { args[1..].to_vec() } else { args };
    let parsed = match parse_server_args(&args, &env) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("pikv: {}", e.message);
            return ExitCode::from(e.exit_code);
        }
    };
    if check_only {
        for w in &parsed.warnings {
            eprintln!("pikv: warning: {w}");
        }
        if let Invocation::Server(config) = &parsed.invocation {
            if let Err(e) = pikv::server::check_config(config) {
                eprintln!("pikv: {e}");
                return ExitCode::from(1);
            }
        }
        return ExitCode::SUCCESS;
    }
    match parsed.invocation {
        Invocation::Help(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Invocation::Version => {
            println!("pikv Version: {}", env!("CARGO_PKG_VERSION"));
            println!("etcd API Version: {}", pikv::api::ETCD_SERVER_VERSION);
            ExitCode::SUCCESS
        }
        Invocation::Server(config) => {
            if let Err(e) = simple_logger::SimpleLogger::new()
                .with_level(config.log_level)
                .init()
            {
                eprintln!("pikv: cannot start logging: {e}");
            }
            for w in &parsed.warnings {
                log::warn!("{w}");
            }
            match pikv::server::run(config) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    // One line: the logger also writes to stderr, so not through it as well.
                    eprintln!("pikv: {e}");
                    ExitCode::from(1)
                }
            }
        }
    }
}

/// `pikv backup --data-dir D --backup-dir B`: the summary on stdout, or one line on stderr.
fn backup(args: &[String]) -> ExitCode {
    use pikv::cli::backup::{parse_backup_args, BackupInvocation, USAGE};
    match parse_backup_args(args) {
        Ok(BackupInvocation::Help) => {
            print!("{USAGE}");
            ExitCode::SUCCESS
        }
        Ok(BackupInvocation::Run {
            data_dir,
            backup_dir,
        }) => match pikv::backup::backup(&data_dir, &backup_dir) {
            Ok(summary) => {
                println!("{summary}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("pikv: backup failed: {e}");
                ExitCode::from(1)
            }
        },
        Err(e) => {
            eprintln!("pikv: {}", e.message);
            ExitCode::from(e.exit_code)
        }
    }
}

/// `Some((program name for help texts, the client's arguments))` when this process is
/// `pikv ctl ...` or was invoked as `pikvctl` (a symlink, the snap's `pikv.ctl`).
fn ctl_invocation() -> Option<(&'static str, Vec<String>)> {
    let mut args = std::env::args_os();
    let argv0 = args.next()?;
    let is_pikvctl = std::path::Path::new(&argv0)
        .file_name()
        .is_some_and(|n| n == "pikvctl" || n == "pikv.ctl");
    // Arguments that are not UTF-8 are passed on lossily: keys and values go over HTTP
    // as UTF-8 anyway.
    let rest: Vec<String> = args.map(|a| a.to_string_lossy().into_owned()).collect();
    if is_pikvctl {
        return Some(("pikvctl", rest));
    }
    match rest.split_first() {
        Some((first, tail)) if first == "ctl" => Some(("pikv ctl", tail.to_vec())),
        _ => None,
    }
}
