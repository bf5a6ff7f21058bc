//! Which worker reads a quiet VM's frames: the one on the CPU that sent
//! them.
//!
//! A worker asleep on an idle vCPU takes tens of microseconds to wake on
//! a VM host (the host must run the halted vCPU again), and Linux wakes a
//! thread on an idle CPU rather than on the busy one that woke it: so by
//! default each ping through the switch paid a wakeup on the other vCPU
//! (0.10 ms on a 2-vCPU guest, where the same worker woken on the pinging
//! CPU answered in 0.03). When vswitchd runs one worker per CPU it pins
//! worker `i` to CPU `i` of its set ([`install`]); with `--cpu-steering`
//! it also attaches, while a TAP is quiet, the steering program of
//! `sys::steer` to it: the kernel then queues each frame (a TCP segment
//! excepted, which keeps to its connection's hash) for the worker on the
//! sender's CPU, which wakes where the sender is about to sleep. Steering
//! is not the default because moving flows between workers reorders
//! them: under a flood with heavy TCP loss, conntrack saw segments out of
//! its window (README, "Datapath threads").
//!
//! Only while quiet ([`Gate`]): steered by CPU, a flood from one VM lands
//! on the worker sharing the VM's CPU instead of the one free CPU (64-byte
//! frames lost 40-55% of their rate so, one TCP stream 10-20%). Once a TAP
//! carries more than [`BUSY_FRAMES`] frames between two looks, the
//! choice goes back to the kernel's (the flow's last queue, else its hash)
//! at once; a TAP that carried fewer than [`QUIET_FPS`] a second over a
//! whole look is steered again. Moving a flow between queues can reorder
//! the few frames queued at that moment, as the kernel's own choice does
//! when a flow's last queue changes.

use crate::port::sys::steer::CpuSteering;
use parking_lot::Mutex;
use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Below this many frames a second over a whole look, a TAP is steered by
/// CPU (a ping, DHCP, an idle guest's chatter).
pub const QUIET_FPS: u64 = 1_000;
/// More frames than this since the last look end steering by CPU at once.
pub const BUSY_FRAMES: u64 = 1_000;

/// The process's steering: the CPUs its workers are pinned to, and the
/// program (`None`: the kernel refused it, workers are pinned all the
/// same).
#[derive(Debug)]
pub struct Steering {
    prog: Option<CpuSteering>,
    cpus: Vec<usize>,
}

impl Steering {
    /// The CPU worker `i` runs on (`None`: a worker past the CPUs, left
    /// unpinned).
    pub fn cpu_of_worker(&self, i: usize) -> Option<usize> {
        self.cpus.get(i).copied()
    }

    /// The program, for `sys::steer::set_steering` (`None`: not loaded).
    pub fn prog(&self) -> Option<BorrowedFd<'_>> {
        self.prog.as_ref().map(|p| p.as_fd())
    }
}

static STEERING: OnceLock<Steering> = OnceLock::new();

/// Makes worker `i` of every bridge started from now on pin itself to
/// `cpus[i]`, and with `steer` loads the program for them, which quiet
/// TAPs then get: with the error when the kernel refused it (no
/// `CAP_BPF`, no `TUNSETSTEERINGEBPF`), the workers are pinned and TAPs
/// left to the kernel's choice. Once per process; a second call returns
/// the first's.
pub fn install(cpus: Vec<usize>, steer: bool) -> (&'static Steering, Option<io::Error>) {
    if let Some(s) = STEERING.get() {
        return (s, None);
    }
    let (prog, err) = match steer.then(|| CpuSteering::load(&cpus)) {
        None => (None, None),
        Some(Ok(p)) => (Some(p), None),
        Some(Err(e)) => (None, Some(e)),
    };
    (STEERING.get_or_init(|| Steering { prog, cpus }), err)
}

/// The process's steering, if [`install`] ran.
pub fn installed() -> Option<&'static Steering> {
    STEERING.get()
}

/// Whether one TAP device is steered by CPU now, shared by its queues
/// (each on its own worker).
#[derive(Debug, Default)]
pub struct Gate {
    /// Frames every queue of the device received, ever.
    frames: AtomicU64,
    /// `frames` at the last look.
    looked: AtomicU64,
    /// Steering by CPU is attached (a hint for the receive path; `state`
    /// is the truth).
    on: AtomicBool,
    state: Mutex<GateState>,
}

#[derive(Debug, Default)]
struct GateState {
    /// The program is attached to the device.
    attached: bool,
    /// When the last look was.
    at: Option<Instant>,
    /// Attaching or detaching failed: the gate stays off for this device.
    broken: bool,
}

impl Gate {
    /// A queue received `n` frames. While steering by CPU, more than
    /// [`BUSY_FRAMES`] since the last look end it at once: `apply(false)`
    /// detaches the program (on whichever queue's fd).
    pub fn received(&self, n: usize, apply: impl FnOnce(bool) -> io::Result<()>) {
        if n == 0 {
            return;
        }
        let total = self.frames.fetch_add(n as u64, Ordering::Relaxed) + n as u64;
        if !self.on.load(Ordering::Relaxed)
            || total.saturating_sub(self.looked.load(Ordering::Relaxed)) <= BUSY_FRAMES
        {
            return;
        }
        let mut st = self.state.lock();
        if st.attached {
            self.set(&mut st, false, apply);
        }
    }

    /// The device's periodic look (its primary queue's upkeep): a device
    /// that carried fewer than [`QUIET_FPS`] frames a second since the last
    /// look is steered by CPU, `apply(true)` attaching the program.
    pub fn look(&self, now: Instant, apply: impl FnOnce(bool) -> io::Result<()>) {
        let mut st = self.state.lock();
        let total = self.frames.load(Ordering::Relaxed);
        let since = total.saturating_sub(self.looked.swap(total, Ordering::Relaxed));
        let Some(at) = st.at.replace(now) else {
            return;
        };
        let elapsed = now.saturating_duration_since(at);
        if st.attached || st.broken || elapsed < Duration::from_millis(10) {
            return;
        }
        // frames / s < QUIET_FPS, without dividing by a short interval.
        if u128::from(since) * 1_000_000 < u128::from(QUIET_FPS) * elapsed.as_micros() {
            self.set(&mut st, true, apply);
        }
    }

    /// A new device is attached: it has no program, and its first look
    /// starts a fresh interval.
    pub fn reset(&self) {
        let mut st = self.state.lock();
        st.attached = false;
        st.broken = false;
        st.at = None;
        self.on.store(false, Ordering::Relaxed);
    }

    /// Whether the program is attached now (what the tests check; the
    /// receive path reads the lock-free hint instead).
    #[cfg(test)]
    fn steering(&self) -> bool {
        self.state.lock().attached
    }

    fn set(&self, st: &mut GateState, on: bool, apply: impl FnOnce(bool) -> io::Result<()>) {
        match apply(on) {
            Ok(()) => {
                st.attached = on;
                self.on.store(on, Ordering::Relaxed);
            }
            Err(e) => {
                // Left to the kernel's choice for good: correct, only
                // slower to answer a quiet VM.
                tracing::warn!(error = %e, on, "tap: steering by CPU not changed; the kernel chooses the queue");
                st.broken = true;
                st.attached = false;
                self.on.store(false, Ordering::Relaxed);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;

    /// What a gate asked of its device, in order (true: attach).
    #[derive(Default)]
    struct Device(RefCell<Vec<bool>>);

    impl Device {
        fn apply(&self, on: bool) -> io::Result<()> {
            self.0.borrow_mut().push(on);
            Ok(())
        }

        fn asked(&self) -> Vec<bool> {
            self.0.borrow().clone()
        }
    }

    #[test]
    fn a_quiet_tap_is_steered_and_a_burst_gives_the_choice_back_at_once() {
        let g = Gate::default();
        let dev = Device::default();
        let rec = |on| dev.apply(on);
        let t0 = Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        // The first look only starts the interval.
        g.look(t0, rec);
        assert!(dev.asked().is_empty());
        // 100 frames in 500 ms: 200 a second, quiet.
        g.received(100, rec);
        g.look(ms(500), rec);
        assert_eq!(dev.asked(), [true]);
        assert!(g.steering());
        // A ping's worth of frames keeps it.
        g.received(BUSY_FRAMES as usize, rec);
        assert_eq!(dev.asked(), [true]);
        // One more than BUSY_FRAMES since the look: off now, not at the
        // next look.
        g.received(1, rec);
        assert_eq!(dev.asked(), [true, false]);
        assert!(!g.steering());
        g.received(100_000, rec);
        assert_eq!(dev.asked(), [true, false]);
        // A busy look leaves it off; a quiet one puts it back.
        g.look(ms(1000), rec);
        assert_eq!(dev.asked(), [true, false]);
        g.received(499, rec);
        g.look(ms(1500), rec);
        assert_eq!(dev.asked(), [true, false, true]);
    }

    #[test]
    fn the_threshold_is_a_rate_over_the_whole_interval() {
        let g = Gate::default();
        let dev = Device::default();
        let rec = |on| dev.apply(on);
        let t0 = Instant::now();
        g.look(t0, rec);
        // Exactly QUIET_FPS over 2 s is not below it.
        g.frames.fetch_add(2 * QUIET_FPS, Ordering::Relaxed);
        g.look(t0 + Duration::from_secs(2), rec);
        assert!(dev.asked().is_empty());
        g.frames.fetch_add(2 * QUIET_FPS - 1, Ordering::Relaxed);
        g.look(t0 + Duration::from_secs(4), rec);
        assert_eq!(dev.asked(), [true]);
    }

    #[test]
    fn a_refused_ioctl_leaves_the_device_to_the_kernel_until_it_is_replaced() {
        let g = Gate::default();
        let tries = RefCell::new(0);
        let refuse = |_| {
            *tries.borrow_mut() += 1;
            Err(io::Error::from_raw_os_error(libc::EINVAL))
        };
        let t0 = Instant::now();
        g.look(t0, refuse);
        g.look(t0 + Duration::from_secs(1), refuse);
        g.look(t0 + Duration::from_secs(2), refuse);
        assert_eq!(*tries.borrow(), 1);
        assert!(!g.steering());
        g.reset();
        g.look(t0 + Duration::from_secs(3), |_| Ok(()));
        g.look(t0 + Duration::from_secs(4), |_| Ok(()));
        assert!(g.steering());
    }
}
