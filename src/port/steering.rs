//! Which worker reads a quiet VM's frames: the one on the CPU that sent
//! them.
//!
//! A worker asleep on an idle vCPU takes tens of microseconds to wake on
//! a VM host (the host must run the halted vCPU again), and Linux wakes a
//! thread on an idle CPU rather than on the busy one that woke it: so by
//! default each ping through the switch paid a wakeup on the other vCPU
//! (0.10 ms on a 2-vCPU guest, where the same worker woken on the pinging
//! CPU answered in 0.03). When vswitchd runs one worker per CPU it pins
//! worker `i` to CPU `i` of its set ([`install`]); with CPU steering it
//! also gives every multi-queue TAP one of the two programs of
//! `sys::steer`: while the TAP is quiet, the one that queues a ping, ARP
//! or a DNS, DHCP or NTP datagram for the worker on the sender's CPU,
//! which wakes where the sender is about to sleep; while it is busy, the
//! one that spreads everything by flow hash. Every other flow (TCP, any
//! other UDP) goes by the same hash in both, so it never changes worker
//! and is never reordered.
//!
//! Only while quiet ([`Gate`]): steered by CPU, a flood from one VM lands
//! on the worker sharing the VM's CPU instead of the one free CPU (64-byte
//! frames lost 40-55% of their rate so). Once a TAP carries more than
//! [`BUSY_FRAMES`] frames between two looks it gets the busy program at
//! once; a TAP that carried fewer than [`QUIET_FPS`] a second over a
//! whole look gets the quiet one again. The swap moves those few kinds
//! of flow between queues, and may reorder the frames queued at that
//! moment.

use crate::port::sys::steer::{CpuSteering, Mode};
use parking_lot::Mutex;
use std::io;
use std::os::fd::BorrowedFd;
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

    /// Whether TAPs get the steering programs (the kernel took them).
    pub fn steers(&self) -> bool {
        self.prog.is_some()
    }

    /// The program for `mode`, for `sys::steer::set_steering` (`None`: not
    /// loaded).
    pub fn prog(&self, mode: Mode) -> Option<BorrowedFd<'_>> {
        self.prog.as_ref().map(|p| p.prog(mode))
    }
}

static STEERING: OnceLock<Steering> = OnceLock::new();

/// Makes worker `i` of every bridge started from now on pin itself to
/// `cpus[i]`, and with `steer` loads the programs for them, which every
/// multi-queue TAP then gets: with the error when the kernel refused them
/// (no `CAP_BPF`), the workers are pinned and TAPs left to the kernel's
/// choice. Once per process; a second call returns
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

/// How a multi-queue TAP's frames choose their queue now, as `vswitchctl
/// show` says it (`steering=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Steered {
    /// The quiet program: pings, ARP and service datagrams by the sending
    /// CPU, the rest by hash.
    ByCpu,
    /// The busy program: everything by flow hash.
    ByHash,
    /// No program of ours: the kernel chooses (steering off, or refused).
    Kernel,
}

impl Steered {
    /// The name `show` prints.
    pub fn name(self) -> &'static str {
        match self {
            Steered::ByCpu => "by-cpu",
            Steered::ByHash => "by-hash",
            Steered::Kernel => "kernel",
        }
    }
}

/// Which program one TAP device runs, shared by its queues (each on its
/// own worker).
#[derive(Debug, Default)]
pub struct Gate {
    /// Frames every queue of the device received, ever.
    frames: AtomicU64,
    /// `frames` at the last look.
    looked: AtomicU64,
    /// The quiet program runs (a hint for the receive path; `state` is
    /// the truth).
    quiet: AtomicBool,
    state: Mutex<GateState>,
}

#[derive(Debug, Default)]
struct GateState {
    /// The device runs the quiet program (else the busy one, or none).
    quiet: bool,
    /// When the last look was.
    at: Option<Instant>,
    /// The device keeps what it has: no steering, or the kernel refused a
    /// program.
    held: bool,
    /// One of our programs is attached (else the kernel chooses).
    ours: bool,
}

impl Gate {
    /// A queue received `n` frames. While the device is quiet, more than
    /// [`BUSY_FRAMES`] since the last look make it busy at once:
    /// `apply(Mode::Busy)` gives it the busy program (on whichever queue's
    /// fd).
    pub fn received(&self, n: usize, apply: impl FnOnce(Mode) -> io::Result<()>) {
        if n == 0 {
            return;
        }
        let total = self.frames.fetch_add(n as u64, Ordering::Relaxed) + n as u64;
        if !self.quiet.load(Ordering::Relaxed)
            || total.saturating_sub(self.looked.load(Ordering::Relaxed)) <= BUSY_FRAMES
        {
            return;
        }
        let mut st = self.state.lock();
        if st.quiet {
            self.set(&mut st, Mode::Busy, apply);
        }
    }

    /// The device's periodic look (its primary queue's upkeep): a device
    /// that carried fewer than [`QUIET_FPS`] frames a second since the last
    /// look gets the quiet program, `apply(Mode::Quiet)`.
    pub fn look(&self, now: Instant, apply: impl FnOnce(Mode) -> io::Result<()>) {
        let mut st = self.state.lock();
        let total = self.frames.load(Ordering::Relaxed);
        let since = total.saturating_sub(self.looked.swap(total, Ordering::Relaxed));
        let Some(at) = st.at.replace(now) else {
            return;
        };
        let elapsed = now.saturating_duration_since(at);
        if st.quiet || st.held || elapsed < Duration::from_millis(10) {
            return;
        }
        // frames / s < QUIET_FPS, without dividing by a short interval.
        if u128::from(since) * 1_000_000 < u128::from(QUIET_FPS) * elapsed.as_micros() {
            self.set(&mut st, Mode::Quiet, apply);
        }
    }

    /// A new device is attached: `apply(Mode::Busy)` gives it the busy
    /// program (replacing whatever a process that held it before left), and
    /// its first look starts a fresh interval. When the kernel refuses, the
    /// device keeps what it has, for good.
    pub fn reset(&self, apply: impl FnOnce(Mode) -> io::Result<()>) {
        let mut st = self.state.lock();
        self.forget(&mut st, false);
        self.set(&mut st, Mode::Busy, apply);
    }

    /// Which program the device runs now.
    pub fn steered(&self) -> Steered {
        let st = self.state.lock();
        match (st.ours, st.quiet) {
            (false, _) => Steered::Kernel,
            (true, true) => Steered::ByCpu,
            (true, false) => Steered::ByHash,
        }
    }

    /// A new device is attached without steering: no look changes it.
    pub fn hold(&self) {
        let mut st = self.state.lock();
        self.forget(&mut st, true);
    }

    /// A new device: no program of ours on it yet, no look taken.
    fn forget(&self, st: &mut GateState, held: bool) {
        st.held = held;
        st.ours = false;
        st.quiet = false;
        st.at = None;
        self.quiet.store(false, Ordering::Relaxed);
    }

    fn set(&self, st: &mut GateState, mode: Mode, apply: impl FnOnce(Mode) -> io::Result<()>) {
        let quiet = mode == Mode::Quiet;
        match apply(mode) {
            Ok(()) => {
                st.ours = true;
                st.quiet = quiet;
                self.quiet.store(quiet, Ordering::Relaxed);
            }
            Err(e) => {
                // Correct, only slower to answer a quiet VM.
                tracing::warn!(error = %e, ?mode, "tap: steering program not changed; left as it was");
                st.held = true;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;
    use Mode::{Busy, Quiet};

    /// What a gate asked of its device, in order.
    #[derive(Default)]
    struct Device(RefCell<Vec<Mode>>);

    impl Device {
        fn apply(&self, mode: Mode) -> io::Result<()> {
            self.0.borrow_mut().push(mode);
            Ok(())
        }

        fn asked(&self) -> Vec<Mode> {
            self.0.borrow().clone()
        }
    }

    #[test]
    fn a_quiet_tap_is_steered_and_a_burst_makes_it_busy_at_once() {
        let g = Gate::default();
        let dev = Device::default();
        let rec = |mode| dev.apply(mode);
        let t0 = Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        // A new device starts busy; the first look only starts the
        // interval.
        assert_eq!(g.steered(), Steered::Kernel);
        g.reset(rec);
        g.look(t0, rec);
        assert_eq!(dev.asked(), [Busy]);
        assert_eq!(g.steered(), Steered::ByHash);
        // 100 frames in 500 ms: 200 a second, quiet.
        g.received(100, rec);
        g.look(ms(500), rec);
        assert_eq!(dev.asked(), [Busy, Quiet]);
        assert_eq!(g.steered(), Steered::ByCpu);
        // A ping's worth of frames keeps it.
        g.received(BUSY_FRAMES as usize, rec);
        assert_eq!(dev.asked(), [Busy, Quiet]);
        // One more than BUSY_FRAMES since the look: busy now, not at the
        // next look.
        g.received(1, rec);
        assert_eq!(dev.asked(), [Busy, Quiet, Busy]);
        assert_eq!(g.steered(), Steered::ByHash);
        g.received(100_000, rec);
        assert_eq!(dev.asked(), [Busy, Quiet, Busy]);
        // A busy look leaves it busy; a quiet one makes it quiet again.
        g.look(ms(1000), rec);
        assert_eq!(dev.asked(), [Busy, Quiet, Busy]);
        g.received(499, rec);
        g.look(ms(1500), rec);
        assert_eq!(dev.asked(), [Busy, Quiet, Busy, Quiet]);
    }

    #[test]
    fn the_threshold_is_a_rate_over_the_whole_interval() {
        let g = Gate::default();
        let dev = Device::default();
        let rec = |mode| dev.apply(mode);
        let t0 = Instant::now();
        g.look(t0, rec);
        // Exactly QUIET_FPS over 2 s is not below it.
        g.frames.fetch_add(2 * QUIET_FPS, Ordering::Relaxed);
        g.look(t0 + Duration::from_secs(2), rec);
        assert!(dev.asked().is_empty());
        g.frames.fetch_add(2 * QUIET_FPS - 1, Ordering::Relaxed);
        g.look(t0 + Duration::from_secs(4), rec);
        assert_eq!(dev.asked(), [Quiet]);
    }

    #[test]
    fn a_refused_ioctl_leaves_the_device_as_it_is_until_it_is_replaced() {
        let g = Gate::default();
        let tries = RefCell::new(Vec::new());
        let refuse = |mode| {
            tries.borrow_mut().push(mode);
            Err(io::Error::from_raw_os_error(libc::EINVAL))
        };
        let t0 = Instant::now();
        g.reset(refuse);
        g.look(t0, refuse);
        g.look(t0 + Duration::from_secs(1), refuse);
        g.look(t0 + Duration::from_secs(2), refuse);
        assert_eq!(*tries.borrow(), [Busy]);
        assert_eq!(g.steered(), Steered::Kernel);
        // A quiet program refused: the device stays busy.
        g.reset(|_| Ok(()));
        g.look(t0 + Duration::from_secs(3), refuse);
        g.look(t0 + Duration::from_secs(4), refuse);
        g.look(t0 + Duration::from_secs(5), refuse);
        assert_eq!(*tries.borrow(), [Busy, Quiet]);
        assert_eq!(g.steered(), Steered::ByHash);
        g.reset(|_| Ok(()));
        g.look(t0 + Duration::from_secs(6), |_| Ok(()));
        g.look(t0 + Duration::from_secs(7), |_| Ok(()));
        assert_eq!(g.steered(), Steered::ByCpu);
        g.hold();
        assert_eq!(g.steered(), Steered::Kernel);
    }
}
