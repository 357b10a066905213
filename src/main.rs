//! The `pikv` binary: parse etcd-style flags, run the server, and turn any error into one
//! line on stderr and an exit code.

use pikv::cli::config::{parse_server_args, Invocation};
use std::process::ExitCode;

fn main() -> ExitCode {
    // Before any thread exists, so every thread inherits the blocked mask (util::signal).
    pikv::util::signal::block_termination_signals();
    pikv::util::memory::limit_malloc_arenas();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let env: Vec<(String, String)> = std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
        .collect();
    let parsed = match parse_server_args(&args, &env) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("pikv: {}", e.message);
            return ExitCode::from(e.exit_code);
        }
    };
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
