//! `vswitch-pktgen bare-forward`: the TAP path's own limit, as a yardstick
//! for the switch.
//!
//! Creates two TAPs in the calling namespace and copies every frame read
//! from one to the other, both ways, on one thread, and nothing else: no
//! parsing, no lookup, no counters per frame beyond two sums. Whatever
//! vswitchd reaches TAP to TAP is bounded by what this reaches with the
//! same generator on the same machine; `scripts/compare.sh` runs both in
//! one round and prints the ratio.
//!
//! Two ways to move the bytes, because the question is which one the
//! kernel's TAP path rewards:
//!
//! * `readwrite`: non-blocking fds, level-triggered epoll; on a wakeup,
//!   read up to `--batch` frames from a ready TAP (one `read(2)` each, a
//!   TAP has no multi-frame read) and `write(2)` each to the other TAP.
//!   Two syscalls per frame plus one `epoll_wait` per batch.
//! * `uring`: one io_uring with `--batch` reads kept in flight per TAP;
//!   a completed read becomes a write of the same buffer to the other TAP,
//!   a completed write re-arms the read. Every loop submits all new
//!   requests and reaps all completions with a single `io_uring_enter`, so
//!   syscalls per frame fall as the load rises.
//!
//! The TAPs are not persistent (they vanish with the process) and carry
//! no virtio-net header: 64-byte frames need no offloads. The run ends at
//! `--duration` (at most an hour) or on SIGTERM/SIGINT (a thread of its
//! own waits for them, so the forwarding loop needs no signal handler and
//! the report is still printed); the report (frames each way, the CPU time
//! spent and frames per CPU-second, syscalls, io_uring's async workers)
//! goes to stdout at the end, one line of text or `--json`, and a snapshot
//! of the same counters on each SIGUSR1, so a caller can difference two
//! snapshots around one measurement. Frames per CPU-second
//! is the figure that survives a loaded machine: the rate says how much
//! CPU the forwarder was given, that says what it did with it.

use crate::cpu::ThreadCpu;
use crate::Error;
use clap::{Parser, ValueEnum};
use io_uring::{opcode, types, IoUring};
use serde::Serialize;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use vswitch::port::sys::epoll::{self, Epoll, Event};
use vswitch::port::sys::tun;

/// Longest run, seconds.
const MAX_DURATION_S: f64 = 3600.0;
/// Largest frame a TAP without offloads hands us (MTU 1500 + header, with
/// room for a tag or two).
const BUF_LEN: usize = 2048;
/// Most reads kept in flight (or read per wakeup) per TAP.
const MAX_BATCH: usize = 256;

/// How frames are moved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Io {
    /// read(2)/write(2) per frame, epoll between batches.
    Readwrite,
    /// io_uring: batched reads and writes, one syscall per loop.
    Uring,
}

/// Command line of `bare-forward`.
#[derive(Parser, Debug)]
#[command(
    name = "vswitch-pktgen bare-forward",
    about = "Forward frames between two TAPs it creates, with nothing in between: the TAP path's limit",
    after_help = "SIGTERM or SIGINT ends the run with its report; SIGUSR1 prints a snapshot of the counters and goes on.\nExample (compare.sh does this inside the host namespace, then moves the TAPs' kernel sides into two VM namespaces):\n  vswitch-pktgen bare-forward --a tap1 --b tap2 --io uring --duration 30 --json"
)]
pub struct Args {
    /// First TAP (created in the current namespace).
    #[arg(long)]
    a: String,
    /// Second TAP.
    #[arg(long)]
    b: String,
    /// How to move frames.
    #[arg(long, value_enum, default_value_t = Io::Readwrite)]
    io: Io,
    /// Frames read per wakeup (readwrite) or reads in flight per TAP (uring), 1..256.
    #[arg(long, default_value_t = 32)]
    batch: usize,
    /// Stop after this many seconds (at most 3600).
    #[arg(long, default_value_t = 60.0)]
    duration: f64,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

/// What a run did (so far, in a snapshot).
#[derive(Debug, Serialize)]
pub struct Report {
    /// How frames were moved.
    pub io: Io,
    /// True for a snapshot asked for with SIGUSR1 (the run goes on), false
    /// for the report at the end.
    pub snapshot: bool,
    /// Wall time of the forwarding loop so far, seconds.
    pub seconds: f64,
    /// Frames read from A and written to B.
    pub a_to_b: u64,
    /// Frames read from B and written to A.
    pub b_to_a: u64,
    /// Frames read whose write failed (the other TAP's queue refused them).
    pub write_errors: u64,
    /// Share of one core the forwarding thread used.
    pub cpu: f64,
    /// CPU seconds the forwarding thread used.
    pub cpu_seconds: f64,
    /// Frames forwarded (both ways) per CPU-second of the forwarding thread.
    pub frames_per_cpu_second: f64,
    /// Syscalls (epoll_wait, read, write, io_uring_enter) made.
    pub syscalls: u64,
    /// io_uring's async worker threads alive (`iou-wrk-*`): requests the
    /// kernel could not complete inline or by polling.
    pub io_workers: usize,
}

impl Report {
    /// Prints the report: one line of JSON, or one line of text.
    fn print(&self, json: bool) -> Result<(), Error> {
        let mut out = io::stdout().lock();
        let r = if json {
            let s = serde_json::to_string(self)
                .map_err(|e| Error::io("report", io::Error::other(e)))?;
            writeln!(out, "{s}")
        } else {
            let total = (self.a_to_b + self.b_to_a) as f64;
            writeln!(
                out,
                "bare-forward ({:?}{}): {} frames A->B, {} B->A in {:.2} s: {:.1} kpps, {} write errors, {:.0}% of a core ({:.0} frames per CPU-second), {:.2} syscalls/frame, {} io_uring workers",
                self.io,
                if self.snapshot { ", snapshot" } else { "" },
                self.a_to_b,
                self.b_to_a,
                self.seconds,
                total / self.seconds.max(1e-9) / 1e3,
                self.write_errors,
                100.0 * self.cpu,
                self.frames_per_cpu_second,
                self.syscalls as f64 / total.max(1.0),
                self.io_workers
            )
        };
        r.and_then(|()| out.flush())
            .map_err(|e| Error::io("write the report", e))
    }
}

/// Flags the signal thread sets: `stop` on SIGTERM or SIGINT, `snapshot`
/// on SIGUSR1 (the loop prints a report and clears it).
struct Signals {
    stop: Arc<AtomicBool>,
    snapshot: Arc<AtomicBool>,
}

/// Takes SIGTERM, SIGINT and SIGUSR1 from this point on and starts a
/// thread that does nothing but turn them into [`Signals`] flags, so the
/// forwarding loop needs no signal handler of its own.
fn watch_signals() -> Result<Signals, Error> {
    use tokio::signal::unix::{signal, SignalKind};
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .map_err(|e| Error::io("signal runtime", e))?;
    let (mut term, mut int, mut usr1) = rt
        .block_on(async {
            Ok::<_, io::Error>((
                signal(SignalKind::terminate())?,
                signal(SignalKind::interrupt())?,
                signal(SignalKind::user_defined1())?,
            ))
        })
        .map_err(|e| Error::io("signal handlers", e))?;
    let sig = Signals {
        stop: Arc::new(AtomicBool::new(false)),
        snapshot: Arc::new(AtomicBool::new(false)),
    };
    let (stop, snapshot) = (sig.stop.clone(), sig.snapshot.clone());
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            rt.block_on(async {
                loop {
                    tokio::select! {
                        _ = term.recv() => break,
                        _ = int.recv() => break,
                        _ = usr1.recv() => snapshot.store(true, Ordering::Relaxed),
                    }
                }
            });
            stop.store(true, Ordering::Relaxed);
        })
        .map_err(|e| Error::io("spawn the signal thread", e))?;
    Ok(sig)
}

/// Threads of this process named like io_uring's async workers.
fn io_workers() -> usize {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return 0;
    };
    tasks
        .filter_map(|t| t.ok())
        .filter(|t| {
            std::fs::read_to_string(t.path().join("comm")).is_ok_and(|c| c.starts_with("iou-wrk"))
        })
        .count()
}

/// Opens a blocking `/dev/net/tun` fd (io_uring wants to do the waiting
/// itself) or a non-blocking one (epoll), attached to a new TAP `name`.
fn open(name: &str, nonblocking: bool) -> Result<File, Error> {
    let flags = libc::O_CLOEXEC | if nonblocking { libc::O_NONBLOCK } else { 0 };
    let dev = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(flags)
        .open("/dev/net/tun")
        .map_err(|e| Error::io("open /dev/net/tun", e))?;
    let tap = tun::set_iff(dev, name, false, 0).map_err(|e| Error::io(format!("TAP {name}"), e))?;
    tap.file()
        .try_clone()
        .map_err(|e| Error::io(format!("TAP {name}: dup"), e))
}

/// Runs the forwarder; prints a snapshot on each SIGUSR1 and the report
/// at the end.
pub fn run(a: &Args) -> Result<(), Error> {
    if !(a.duration > 0.0 && a.duration <= MAX_DURATION_S) {
        return Err(Error::Usage(format!(
            "--duration must be in (0, {MAX_DURATION_S}] seconds"
        )));
    }
    if !(1..=MAX_BATCH).contains(&a.batch) {
        return Err(Error::Usage(format!("--batch must be in 1..={MAX_BATCH}")));
    }
    if a.a == a.b {
        return Err(Error::Usage("--a and --b must name two TAPs".into()));
    }
    // Before the TAPs exist: whoever waits for them may signal us at once.
    let signals = watch_signals()?;
    let nonblocking = a.io == Io::Readwrite;
    let taps = [open(&a.a, nonblocking)?, open(&a.b, nonblocking)?];
    let mut run = Run {
        io: a.io,
        json: a.json,
        start: Instant::now(),
        deadline: Duration::from_secs_f64(a.duration),
        signals,
        cpu: ThreadCpu::start(),
        c: Counts::default(),
    };
    match a.io {
        Io::Readwrite => readwrite(&taps, a.batch, &mut run)?,
        Io::Uring => uring(&taps, a.batch, &mut run)?,
    }
    run.report(false).print(a.json)
}

/// The forwarding loop's state: when it stops, what it counted.
struct Run {
    io: Io,
    json: bool,
    start: Instant,
    deadline: Duration,
    signals: Signals,
    cpu: ThreadCpu,
    c: Counts,
}

impl Run {
    /// False once the duration is over or a stop signal came; prints a
    /// snapshot when one was asked for.
    fn going(&mut self) -> Result<bool, Error> {
        if self.signals.snapshot.swap(false, Ordering::Relaxed) {
            self.report(true).print(self.json)?;
        }
        Ok(self.start.elapsed() < self.deadline && !self.signals.stop.load(Ordering::Relaxed))
    }

    /// The counters so far (call on the forwarding thread: the CPU time
    /// is that thread's).
    fn report(&self, snapshot: bool) -> Report {
        let seconds = self.start.elapsed().as_secs_f64();
        let share = self.cpu.share();
        let cpu_seconds = share * seconds;
        let frames = (self.c.fwd[0] + self.c.fwd[1]) as f64;
        Report {
            io: self.io,
            snapshot,
            seconds,
            a_to_b: self.c.fwd[0],
            b_to_a: self.c.fwd[1],
            write_errors: self.c.write_errors,
            cpu: share,
            cpu_seconds,
            frames_per_cpu_second: if cpu_seconds > 0.0 {
                frames / cpu_seconds
            } else {
                0.0
            },
            syscalls: self.c.syscalls,
            io_workers: io_workers(),
        }
    }
}

#[derive(Default)]
struct Counts {
    /// Frames forwarded, indexed by the TAP they were read from.
    fwd: [u64; 2],
    write_errors: u64,
    syscalls: u64,
}

fn readwrite(taps: &[File; 2], batch: usize, run: &mut Run) -> Result<(), Error> {
    let ep = Epoll::new().map_err(|e| Error::io("epoll_create", e))?;
    for (i, t) in taps.iter().enumerate() {
        ep.add(t.as_raw_fd(), i as u64, epoll::IN)
            .map_err(|e| Error::io("epoll_ctl", e))?;
    }
    let mut evs = [Event::default(); 2];
    let mut buf = vec![0u8; BUF_LEN];
    while run.going()? {
        let c = &mut run.c;
        c.syscalls += 1;
        let n = ep
            .wait(&mut evs, 100)
            .map_err(|e| Error::io("epoll_wait", e))?;
        for ev in &evs[..n] {
            let from = (ev.token as usize).min(1);
            let (mut src, mut dst) = (&taps[from], &taps[1 - from]);
            for _ in 0..batch {
                c.syscalls += 1;
                let len = match src.read(&mut buf) {
                    Ok(0) => break,
                    Ok(len) => len,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(Error::io("read TAP", e)),
                };
                c.syscalls += 1;
                // A TAP takes a frame whole or refuses it: a short count
                // would be a truncated frame, an error.
                match dst.write(&buf[..len]) {
                    Ok(n) if n == len => c.fwd[from] += 1,
                    Ok(_) | Err(_) => c.write_errors += 1,
                }
            }
        }
    }
    Ok(())
}

/// user_data layout: bit 0 the TAP a buffer belongs to (it is read from
/// there and written to the other), bit 1 set for a write, the rest the
/// buffer's slot.
fn tag(side: usize, write: bool, slot: usize) -> u64 {
    (slot as u64) << 2 | (write as u64) << 1 | side as u64
}

fn uring(taps: &[File; 2], batch: usize, run: &mut Run) -> Result<(), Error> {
    // Room for every buffer's request at once (each has exactly one in
    // flight: its read, or its write), so a push never finds the queue full
    // after the completions that freed it were reaped.
    let entries = (2 * batch).next_power_of_two() as u32;
    let mut ring: IoUring = IoUring::builder()
        .setup_cqsize(2 * entries)
        .build(entries)
        .map_err(|e| Error::io("io_uring_setup", e))?;
    // Leaked on purpose: the kernel may still own a buffer (a read in
    // flight) when this function returns, and only the process's exit
    // ends that ownership.
    let bufs: &'static mut [[u8; BUF_LEN]] =
        Box::leak(vec![[0u8; BUF_LEN]; 2 * batch].into_boxed_slice());
    let ptrs: Vec<*mut u8> = bufs.iter_mut().map(|b| b.as_mut_ptr()).collect();
    let fds = [
        types::Fd(taps[0].as_raw_fd()),
        types::Fd(taps[1].as_raw_fd()),
    ];
    let read = |side: usize, slot: usize| {
        opcode::Read::new(fds[side], ptrs[side * batch + slot], BUF_LEN as u32)
            .build()
            .user_data(tag(side, false, slot))
    };
    for side in 0..2 {
        for slot in 0..batch {
            let e = read(side, slot);
            // SAFETY: the buffer is leaked ('static) and this slot has no
            // other request in flight; the fd outlives the ring (`taps` is
            // borrowed for the whole function and the ring is dropped, and
            // its requests cancelled, before it returns).
            unsafe { ring.submission().push(&e) }
                .map_err(|_| Error::Usage("io_uring submission queue full".into()))?;
        }
    }
    let ts = types::Timespec::new().nsec(100_000_000);
    let args = types::SubmitArgs::new().timespec(&ts);
    let mut done: Vec<(u64, i32)> = Vec::with_capacity(2 * entries as usize);
    while run.going()? {
        let c = &mut run.c;
        c.syscalls += 1;
        match ring.submitter().submit_with_args(1, &args) {
            Ok(_) => {}
            Err(e) if e.raw_os_error() == Some(libc::ETIME) => {}
            Err(e) if e.raw_os_error() == Some(libc::EINTR) => {}
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {}
            Err(e) => return Err(Error::io("io_uring_enter", e)),
        }
        done.clear();
        done.extend(ring.completion().map(|q| (q.user_data(), q.result())));
        for &(ud, res) in &done {
            let side = (ud & 1) as usize;
            let write = ud & 2 != 0;
            let slot = ((ud >> 2) as usize).min(batch - 1);
            let next = if write {
                if res < 0 {
                    c.write_errors += 1;
                } else {
                    c.fwd[side] += 1;
                }
                read(side, slot)
            } else if res > 0 {
                opcode::Write::new(fds[1 - side], ptrs[side * batch + slot], res as u32)
                    .build()
                    .user_data(tag(side, true, slot))
            } else if res == -libc::EAGAIN || res == -libc::EINTR || res == 0 {
                read(side, slot)
            } else {
                return Err(Error::io(
                    "io_uring read TAP",
                    io::Error::from_raw_os_error(-res),
                ));
            };
            // SAFETY: as above; the completion just reaped ended the slot's
            // previous request, so this is again its only one.
            unsafe { ring.submission().push(&next) }
                .map_err(|_| Error::Usage("io_uring submission queue full".into()))?;
        }
    }
    Ok(())
}

/// `bare-forward` entry point: parses `args` (without the program name's
/// first word) and runs.
pub fn main(args: impl Iterator<Item = std::ffi::OsString>) -> Result<(), Error> {
    run(&Args::parse_from(args))
}
