//! The C allocator's tuning: its per-thread arenas (`M_ARENA_MAX`) and
//! where a large block comes from (`M_MMAP_THRESHOLD`).
//!
//! Two glibc behaviours made vswitchd's RSS rise in steps under port and
//! control-plane churn (a soak adds and deletes a TAP every 10 s and runs
//! a flow-mod every second):
//!
//! * A thread that finds the arenas in use gets a new one, up to eight per
//!   core, and an arena keeps the memory it touched after its threads
//!   exit. The control plane runs its requests on a pool of threads that
//!   come and go (a port add, a flow-mod and the periodic tick at once
//!   make three), so each new peak of threads alive at once left an arena
//!   behind: a new 64 MiB-aligned mapping with a few hundred KiB in it.
//! * A block of 128 KiB or more is mapped on its own and unmapped when
//!   freed, but freeing one raises that threshold to its size, so from
//!   then on blocks of that size come from an arena's heap and stay there
//!   when freed. A TAP queue's receive overflow areas (512 KiB) went that
//!   way after the first port was deleted: the arena kept a MiB per port
//!   churned at once.
//!
//! No thread allocates per packet, so neither the extra arenas (less
//! waiting on the allocator's lock) nor the raised threshold (fewer
//! `mmap` calls) buys anything here.

/// Caps the arenas at `n` (at least 1). Call before spawning threads: a
/// thread keeps the arena it first got. Returns whether the C library
/// took it (false where it is not glibc).
pub fn limit_arenas(n: usize) -> bool {
    set(Param::ArenaMax, n.max(1))
}

/// Blocks of `bytes` or more are mapped on their own, and given back to
/// the system when freed, for the whole life of the process (setting it
/// turns off glibc's raising of the threshold). Returns whether the C
/// library took it.
pub fn fix_mmap_threshold(bytes: usize) -> bool {
    set(Param::MmapThreshold, bytes)
}

enum Param {
    ArenaMax,
    MmapThreshold,
}

fn set(p: Param, v: usize) -> bool {
    #[cfg(target_env = "gnu")]
    {
        let which = match p {
            Param::ArenaMax => libc::M_ARENA_MAX,
            Param::MmapThreshold => libc::M_MMAP_THRESHOLD,
        };
        let Ok(v) = libc::c_int::try_from(v) else {
            return false;
        };
        // SAFETY: mallopt only sets an allocator parameter and says
        // whether it took the value; both take any positive one.
        unsafe { libc::mallopt(which, v) == 1 }
    }
    #[cfg(not(target_env = "gnu"))]
    {
        let _ = (p, v);
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg(target_env = "gnu")]
    fn glibc_takes_both() {
        // Above glibc's own default arena count on any machine this runs
        // on, so the test binary's other threads are not squeezed; the
        // threshold is glibc's own starting value.
        assert!(limit_arenas(1024));
        assert!(fix_mmap_threshold(128 * 1024));
        // Past what the parameter can hold: refused here, never passed on
        // cut short.
        assert!(!fix_mmap_threshold(usize::MAX));
    }
}
