//! The calling thread's scheduler time slice (`sched_setattr`), and the
//! CPUs it may run on (`sched_setaffinity`).
//!
//! Linux's fair scheduler (EEVDF, 6.6 and later) lets a `SCHED_OTHER`
//! thread ask for a shorter slice through `sched_runtime`. A shorter
//! slice does not buy more CPU (the share still follows the weight, that
//! is `nice`); it buys an earlier deadline, so a thread that wakes up to
//! do a little work runs promptly instead of waiting for the running
//! thread's slice to end. Kernels from 6.12 preempt the running thread
//! for it; older ones accept and ignore the value.
//!
//! That is what the control plane wants on a switch whose workers keep
//! every core busy: a request hops between threads (client, control
//! thread, worker and back), and each hop waited about a whole default
//! slice (measured 1 to 4 ms per question to a busy worker on a 2-CPU
//! host under a packet flood). The datapath workers keep the default.
//!
//! The workers can instead be given a higher weight ([`set_nice`],
//! `vswitchd --datapath-nice`), as a packaged Open vSwitch runs its whole
//! daemon at nice -10: a forwarding thread that waits for a CPU while it
//! has packets delays every VM behind it. It is not the default: on a
//! host whose CPUs the guests share, the weight the workers gain is CPU
//! time the guests lose (measured on a 2-CPU host: one TCP stream between
//! two TAPs gained 7% at -10, a 64-byte flood from one guest lost 37%).

use std::io;
use std::time::Duration;

/// `struct sched_attr` as `SCHED_ATTR_SIZE_VER0` (48 bytes): the fields
/// this module reads and writes, in the kernel's layout.
#[repr(C)]
#[derive(Default)]
struct SchedAttr {
    size: u32,
    policy: u32,
    flags: u64,
    nice: i32,
    priority: u32,
    runtime: u64,
    deadline: u64,
    period: u64,
}

const SCHED_OTHER: u32 = 0;

/// The kernel clamps a requested slice to this range.
const MIN_SLICE: Duration = Duration::from_micros(100);
const MAX_SLICE: Duration = Duration::from_millis(100);

fn get() -> io::Result<SchedAttr> {
    let mut a = SchedAttr::default();
    // SAFETY: `a` is a writable `struct sched_attr` of the size passed;
    // pid 0 is the calling thread; flags must be 0.
    let r = unsafe {
        libc::syscall(
            libc::SYS_sched_getattr,
            0,
            &mut a as *mut SchedAttr,
            std::mem::size_of::<SchedAttr>() as u32,
            0u32,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(a)
}

/// Asks for `slice` as the calling thread's time slice (clamped to 0.1 to
/// 100 ms), or with `None` for the kernel's default again. Only a
/// `SCHED_OTHER` thread is changed, keeping its nice value: a thread an
/// operator put under a real-time policy is left alone. Returns whether
/// the request was made.
pub fn set_slice(slice: Option<Duration>) -> io::Result<bool> {
    let mut a = get()?;
    if a.policy != SCHED_OTHER {
        return Ok(false);
    }
    a.size = std::mem::size_of::<SchedAttr>() as u32;
    a.flags = 0;
    a.runtime = slice.map_or(0, |s| s.clamp(MIN_SLICE, MAX_SLICE).as_nanos() as u64);
    // SAFETY: `a` is an initialised `struct sched_attr` whose `size`
    // field says how many bytes the kernel may read; pid 0 is the calling
    // thread; flags must be 0.
    let r = unsafe { libc::syscall(libc::SYS_sched_setattr, 0, &a as *const SchedAttr, 0u32) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(true)
}

/// Sets the calling thread's nice value (-20 to 19; clamped), keeping its
/// slice. Only a `SCHED_OTHER` thread is changed, as with [`set_slice`].
/// Lowering it below what the thread had needs `CAP_SYS_NICE` (or an
/// `RLIMIT_NICE` allowing it): without, the error is `EPERM`.
pub fn set_nice(nice: i32) -> io::Result<bool> {
    let mut a = get()?;
    if a.policy != SCHED_OTHER {
        return Ok(false);
    }
    a.size = std::mem::size_of::<SchedAttr>() as u32;
    a.flags = 0;
    a.nice = nice.clamp(-20, 19);
    // SAFETY: as in `set_slice`.
    let r = unsafe { libc::syscall(libc::SYS_sched_setattr, 0, &a as *const SchedAttr, 0u32) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(true)
}

/// The CPUs the calling thread may run on (its affinity mask).
pub fn allowed_cpus() -> io::Result<Vec<usize>> {
    // SAFETY: an all-zero cpu_set_t is a valid empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: sched_getaffinity writes at most `size_of::<cpu_set_t>()`
    // bytes into `set`; pid 0 is the calling thread.
    let r = unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: CPU_ISSET reads `set` at an index below CPU_SETSIZE.
    Ok((0..libc::CPU_SETSIZE as usize)
        .filter(|&c| unsafe { libc::CPU_ISSET(c, &set) })
        .collect())
}

/// Keeps the calling thread on `cpu` alone.
pub fn pin_to_cpu(cpu: usize) -> io::Result<()> {
    if cpu >= libc::CPU_SETSIZE as usize {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "no such CPU"));
    }
    // SAFETY: an all-zero cpu_set_t is a valid empty set; CPU_SET writes
    // one bit below CPU_SETSIZE (checked above).
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    unsafe { libc::CPU_SET(cpu, &mut set) };
    // SAFETY: sched_setaffinity reads `size_of::<cpu_set_t>()` bytes of
    // `set`; pid 0 is the calling thread.
    let r = unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The calling thread's nice value.
pub fn nice() -> io::Result<i32> {
    Ok(get()?.nice)
}

/// The calling thread's slice as the kernel reports it: the requested one,
/// or the default (`None` for a thread not under `SCHED_OTHER`, or a kernel
/// that reports none).
pub fn slice() -> io::Result<Option<Duration>> {
    let a = get()?;
    Ok((a.policy == SCHED_OTHER && a.runtime != 0).then(|| Duration::from_nanos(a.runtime)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_thread_pinned_to_one_of_its_cpus_runs_there_alone() {
        let cpus = allowed_cpus().unwrap();
        assert!(!cpus.is_empty());
        let last = *cpus.last().unwrap();
        let after = std::thread::spawn(move || {
            pin_to_cpu(last).unwrap();
            allowed_cpus().unwrap()
        })
        .join()
        .unwrap();
        assert_eq!(after, vec![last]);
        assert!(pin_to_cpu(libc::CPU_SETSIZE as usize).is_err());
    }

    #[test]
    fn a_thread_asks_for_a_short_slice_and_gives_it_back_keeping_its_nice() {
        std::thread::spawn(|| {
            let before = get().unwrap();
            if before.policy != SCHED_OTHER {
                eprintln!("skipped: the test thread is not SCHED_OTHER");
                return;
            }
            let default = slice().unwrap();
            assert!(set_slice(Some(Duration::from_micros(300))).unwrap());
            // Kernels before EEVDF's custom slices (6.12) take the value
            // without keeping it.
            let custom = default.is_some() && slice().unwrap() != default;
            if custom {
                assert_eq!(slice().unwrap(), Some(Duration::from_micros(300)));
            }
            assert_eq!(get().unwrap().nice, before.nice);
            // Out of range: clamped by us, as the kernel would.
            assert!(set_slice(Some(Duration::from_nanos(1))).unwrap());
            if custom {
                assert_eq!(slice().unwrap(), Some(MIN_SLICE));
            }
            assert!(set_slice(None).unwrap());
            assert_eq!(slice().unwrap(), default, "the default again");
        })
        .join()
        .unwrap();
    }

    #[test]
    fn a_thread_sets_its_nice_keeping_its_slice_and_its_siblings_nice() {
        let mine = nice().unwrap();
        std::thread::spawn(|| {
            let before = get().unwrap();
            if before.policy != SCHED_OTHER {
                eprintln!("skipped: the test thread is not SCHED_OTHER");
                return;
            }
            let slice_before = slice().unwrap();
            let up = (before.nice + 3).min(19);
            // Raising it (a lower weight) needs no privilege.
            assert!(set_nice(up).unwrap());
            assert_eq!(nice().unwrap(), up);
            assert_eq!(slice().unwrap(), slice_before);
            let child = std::thread::spawn(|| nice().unwrap());
            assert_eq!(child.join().unwrap(), up, "a thread it spawns inherits it");
            assert!(set_nice(99).unwrap());
            assert_eq!(nice().unwrap(), 19, "clamped, as the kernel would");
            // Back down needs CAP_SYS_NICE.
            match set_nice(before.nice) {
                Ok(done) => {
                    assert!(done);
                    assert_eq!(nice().unwrap(), before.nice);
                }
                Err(e) => assert_eq!(e.raw_os_error(), Some(libc::EPERM), "{e}"),
            }
        })
        .join()
        .unwrap();
        assert_eq!(nice().unwrap(), mine, "the spawning thread keeps its own");
    }
}
