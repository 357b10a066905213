//! SIGTERM/SIGINT without a handler: the signals are blocked in every thread (the mask is set
//! before any thread starts and inherited), and the main thread takes them with `sigwait`.
//! Nothing polls, so an idle server stays asleep.
#![allow(unsafe_code)]

fn termination_set() -> libc::sigset_t {
    // SAFETY: sigemptyset/sigaddset only write the set we own, with valid signal numbers.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::sigaddset(&mut set, libc::SIGINT);
        set
    }
}

/// Blocks SIGTERM and SIGINT in the calling thread and every thread it starts later. Call it
/// first thing in `main`.
pub fn block_termination_signals() {
    let set = termination_set();
    // SAFETY: the set is initialised; a null old-set pointer is allowed.
    unsafe {
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
    }
}

/// Waits until SIGTERM or SIGINT arrives; returns its number.
pub fn wait_for_termination() -> i32 {
    let set = termination_set();
    let mut sig: libc::c_int = 0;
    loop {
        // SAFETY: both pointers point to live, initialised values.
        let rc = unsafe { libc::sigwait(&set, &mut sig) };
        if rc == 0 {
            return sig;
        }
    }
}
