//! The two signal behaviours etcdctl has and a Rust program does not by default.
//!
//! - SIGPIPE: Go programs die of it when stdout is a closed pipe (`pikv ctl ls | head -1`
//!   ends quietly); Rust ignores it and would report a write error instead.
//! - SIGINT during `watch`: etcdctl exits with status 0 (its handler calls `os.Exit(0)`).
#![allow(unsafe_code)]

/// Restores the default SIGPIPE action (terminate), as a Go program has it.
pub fn default_sigpipe() {
    // SAFETY: setting a signal's disposition to SIG_DFL touches no Rust state.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

/// From now on, Ctrl+C ends the process with status 0.
pub fn exit_zero_on_interrupt() {
    extern "C" fn on_sigint(_: libc::c_int) {
        // SAFETY: _exit is async-signal-safe; it runs no destructors and takes no locks.
        unsafe { libc::_exit(0) }
    }
    // SAFETY: installs a handler that only calls _exit; no Rust state is touched from it.
    unsafe {
        libc::signal(
            libc::SIGINT,
            on_sigint as extern "C" fn(libc::c_int) as libc::sighandler_t,
        );
    }
}
