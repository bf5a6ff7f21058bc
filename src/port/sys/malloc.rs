//! The C allocator's per-thread arenas (`mallopt(M_ARENA_MAX)`).
//!
//! glibc gives a thread that finds the arenas in use a new one, up to
//! eight per core, and an arena keeps the memory it touched after its
//! threads exit. vswitchd's control plane runs its requests on a pool of
//! threads that come and go (a port add, a flow-mod and the periodic tick
//! at once make three), so each new peak of threads alive at once left a
//! new arena behind: in a 30-minute soak, RSS rose in steps of a few
//! hundred KiB, each a new anonymous 64 MiB-aligned mapping. No thread
//! allocates per packet, so the arenas' only gain, less waiting on the
//! allocator's lock, buys nothing here; a fixed number bounds that growth.

/// Caps the arenas at `n` (at least 1). Call before spawning threads: a
/// thread keeps the arena it first got. Does nothing where the C library
/// is not glibc.
pub fn limit_arenas(n: usize) -> bool {
    #[cfg(target_env = "gnu")]
    {
        let n = libc::c_int::try_from(n.max(1)).unwrap_or(libc::c_int::MAX);
        // SAFETY: mallopt only sets an allocator parameter; M_ARENA_MAX
        // takes any positive count.
        unsafe { libc::mallopt(libc::M_ARENA_MAX, n) == 1 }
    }
    #[cfg(not(target_env = "gnu"))]
    {
        let _ = n;
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg(target_env = "gnu")]
    fn glibc_takes_the_cap() {
        // Above glibc's own default on any machine this runs on, so the
        // test binary's other threads are not squeezed.
        assert!(limit_arenas(1024));
    }
}
