//! Memory settings for small boards.
#![allow(unsafe_code)]

/// Caps glibc's malloc arenas. By default glibc gives threads up to 8 arenas per core, each
/// keeping its own free memory; that multiplies RSS for no gain on a 1-4 core board. Two
/// arenas keep the node, WAL and apply threads off the connections' arena lock. Only glibc
/// has `mallopt`; elsewhere this does nothing.
pub fn limit_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator tuning; called before other threads exist.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}
