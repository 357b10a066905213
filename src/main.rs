//! The `pikv` binary: parse etcd-style flags, run the server, and turn any error into one
//! line on stderr and an exit code.

use pikv::cli::config::{parse_server_args, Invocation};
use std::process::ExitCode;

fn main() -> ExitCode {
    // Before any thread exists, so every thread inherits the blocked mask (util::signal).
    pikv::util::signal::block_termination_signals();
    pikv::util::memory::limit_malloc_arenas();
    let mut args: Vec<String> = std::env::args().skip(1).collect();
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
