//! Memory settings for small boards.
#![allow(unsafe_code)]

/// How many malloc arenas the process may use (see [`limit_malloc_arenas`]).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const ARENAS: i32 = 8;

/// Caps glibc's malloc arenas. By default glibc gives threads up to 8 arenas per core, each
/// keeping its own free memory; that multiplies RSS on a 1-4 core board. Eight arenas are one
/// per long-lived thread (node, WAL, apply, peers, the HTTP executor's, the reactor's): with
/// fewer, the threads queue on each other's arena lock for every request's buffers. Measured
/// on the project's 2-core VM, 3 members on loopback, PUT/s at 64 connections, interleaved
/// runs: 2 arenas 19081/19470, 4 arenas 19436/18777, 8 arenas 20084-20651 (CPU per PUT 70 ->
/// 65 us); RssAnon after 100k keys 6.7 -> 7.8 MiB, peak RSS unchanged (57 MiB, all LMDB
/// pages). Only glibc has `mallopt`; elsewhere this does nothing.
pub fn limit_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator tuning; called before other threads exist.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, ARENAS);
    }
}
