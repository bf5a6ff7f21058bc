//! The datapath thread: the loop that drives one [`Datapath`].
//!
//! It owns the datapath (caches, pool, ports) exclusively, so the fast path
//! takes no lock. The control thread talks to it with [`DpCommand`]s over a
//! channel; replies come back on per-request channels. Between commands the
//! loop polls every port for a batch, executes, flushes the transmit
//! batches, and does periodic upkeep. When a whole round brings nothing it
//! sleeps until a port's file descriptor is readable, a command arrives, or
//! a short timeout passes (ports without a file descriptor, like the
//! in-memory ones, are polled at that period).
//!
//! With busy polling (`vswitchd --busy-poll`) the loop never sleeps: it
//! goes round the ports again at once, as Open vSwitch's PMD threads do, so
//! a packet waits for no wakeup (at the price of a core kept busy).
//!
//! A bridge runs several of these threads (see [`super::workers`]), each
//! with its own datapath.
//!
//! This is the one place in `datapath` that causes I/O, and only through
//! the `Port` trait objects and the wakeup primitives of `port::sys`.

use super::{Datapath, DpFlowInfo, DpStats};
use crate::port::poll::{Poller, Waker};
use crate::port::{LinkState, Port, PortDrop, PortStats};
use crossbeam_channel::{Receiver, Sender};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How the worker threads run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RunMode {
    /// Never sleep in the poller: spin over the ports (Open vSwitch's PMD
    /// threads), trading a busy core for wakeup latency.
    pub busy_poll: bool,
    /// The nice value each worker sets on itself (`None`: the one it was
    /// spawned with). See `port::sys::sched`.
    pub nice: Option<i32>,
}

/// Longest sleep when idle: housekeeping (megaflow revalidation, port
/// recovery) runs at least this often.
pub const IDLE_WAIT: Duration = Duration::from_millis(50);

/// Rounds a sleeping worker reads only the ports the round before moved
/// packets on, before it asks its poller again (see `run`).
const ACTIVE_ROUNDS: u32 = 8;

/// A port's state as the worker sees it.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct PortStatus {
    /// OpenFlow number.
    pub no: u32,
    /// Name.
    pub name: String,
    /// Type.
    pub kind: String,
    /// Counters.
    pub stats: PortStats,
    /// Drops the port counted itself.
    pub drops: Vec<(String, u64)>,
    /// Link state.
    pub link: LinkState,
    /// MTU.
    pub mtu: u32,
}

/// Work to run on a port inside the datapath thread.
pub type PortFn = Box<dyn FnOnce(&mut dyn Port) + Send>;

/// A request to the datapath thread.
pub enum DpCommand {
    /// Attach a port.
    AddPort {
        /// OpenFlow number.
        no: u32,
        /// The port.
        port: Box<dyn Port>,
    },
    /// Detach a port; the port object is handed back (dropping it may
    /// remove a TAP device, which the caller decides).
    DelPort {
        /// OpenFlow number.
        no: u32,
        /// Reply.
        reply: Sender<Option<Box<dyn Port>>>,
    },
    /// Port counters and states.
    Ports {
        /// Reply.
        reply: Sender<Vec<PortStatus>>,
    },
    /// Fast-path counters and port-level drops.
    Stats {
        /// Reply.
        reply: Sender<(DpStats, Vec<(PortDrop, u64)>)>,
    },
    /// The cached megaflows.
    DpFlows {
        /// Reply.
        reply: Sender<Vec<DpFlowInfo>>,
    },
    /// Empty the caches.
    FlushCaches,
    /// Run a closure on a port (capture taps, option changes).
    WithPort {
        /// OpenFlow number.
        no: u32,
        /// What to do.
        f: PortFn,
    },
    /// Copy a port's traffic to a capture (`None` stops it).
    SetCapture {
        /// OpenFlow number.
        no: u32,
        /// The capture's recording side.
        capture: Option<crate::port::capture::CaptureHandle>,
    },
    /// Enforce this MTU on a port's egress (`None`: the device's).
    SetMtu {
        /// OpenFlow number.
        no: u32,
        /// MTU.
        mtu: Option<u32>,
    },
    /// Run a packet-out (OpenFlow PACKET_OUT) and say whether the frame
    /// parsed.
    PacketOut {
        /// The port it is as if it arrived on (CONTROLLER, NONE or a port).
        in_port: u32,
        /// The actions to run.
        actions: Vec<crate::flow::Action>,
        /// The frame.
        frame: Vec<u8>,
        /// Reply.
        reply: Sender<Result<(), crate::wire::Error>>,
    },
    /// Process pending packets now (tests: after an injection).
    Kick,
    /// Stop (true) or resume (false) moving packets; commands are still
    /// served. An upgrade pauses the old process's datapath just before
    /// it exports the connection tables, and the new one's until it has
    /// imported them, so no packet is judged against a partial table.
    Pause {
        /// Paused or not.
        on: bool,
        /// Answered once the thread is in the new state.
        reply: Sender<()>,
    },
    /// Close the device queues this worker's ports hold of their own (see
    /// [`crate::port::Port::release_queue`]).
    ReleaseQueues {
        /// Answered once they are closed.
        reply: Sender<()>,
    },
    /// Copies of every port's handover descriptors (see
    /// [`crate::port::Port::handover_fds`]), by port number and name.
    HandoverFds {
        /// Reply.
        reply: Sender<Vec<HandoverPort>>,
    },
    /// Stop the thread.
    Shutdown,
}

/// One port's descriptors, duplicated for another process.
#[derive(Debug)]
pub struct HandoverPort {
    /// OpenFlow number.
    pub no: u32,
    /// Port name.
    pub name: String,
    /// The fds, in the order the port type's `adopt` takes them.
    pub fds: Vec<std::os::fd::OwnedFd>,
}

/// A detached command sender (see [`WorkerHandle::sender`]).
#[derive(Clone)]
pub struct WorkerSender {
    tx: Sender<DpCommand>,
    waker: Waker,
}

impl WorkerSender {
    /// What rings the thread awake.
    pub fn waker(&self) -> &Waker {
        &self.waker
    }

    /// Sends a command and wakes the thread (false when it is gone).
    pub fn send(&self, cmd: DpCommand) -> bool {
        let ok = self.tx.send(cmd).is_ok();
        let _ = self.waker.wake();
        ok
    }

    /// Sends a command built around a reply channel and waits for the
    /// answer (`None` when the thread is gone).
    pub fn ask<R>(&self, make: impl FnOnce(Sender<R>) -> DpCommand) -> Option<R> {
        let (tx, rx) = crossbeam_channel::bounded(1);
        if !self.send(make(tx)) {
            return None;
        }
        rx.recv_timeout(Duration::from_secs(10)).ok()
    }
}

/// The control side of a worker.
pub struct WorkerHandle {
    tx: Sender<DpCommand>,
    waker: Waker,
    join: Option<JoinHandle<()>>,
}

impl core::fmt::Debug for WorkerHandle {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("WorkerHandle")
    }
}

impl WorkerHandle {
    /// A sender for commands that can be used without holding whatever
    /// owns this handle (a long capture must not block other requests).
    pub fn sender(&self) -> WorkerSender {
        WorkerSender {
            tx: self.tx.clone(),
            waker: self.waker.clone(),
        }
    }

    /// Sends a command and wakes the thread (false when it is gone).
    pub fn send(&self, cmd: DpCommand) -> bool {
        let ok = self.tx.send(cmd).is_ok();
        let _ = self.waker.wake();
        ok
    }

    /// Sends a command built around a reply channel and waits for the
    /// answer (`None` when the thread is gone).
    pub fn ask<R>(&self, make: impl FnOnce(Sender<R>) -> DpCommand) -> Option<R> {
        let (tx, rx) = crossbeam_channel::bounded(1);
        if !self.send(make(tx)) {
            return None;
        }
        rx.recv_timeout(Duration::from_secs(10)).ok()
    }

    /// Stops the thread and waits for it.
    pub fn shutdown(&mut self) {
        let _ = self.send(DpCommand::Shutdown);
        if let Some(j) = self.join.take() {
            let _ = j.join();
        }
    }
}

impl Drop for WorkerHandle {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Starts a datapath thread named after the bridge.
pub fn spawn(dp: Datapath) -> std::io::Result<WorkerHandle> {
    spawn_worker(dp, 0, RunMode::default())
}

/// Starts the bridge's datapath thread number `index` (named `dp-BRIDGE`
/// for the first, `dp-BRIDGE-N` for the others, as `top -H` shows them).
pub fn spawn_worker(
    mut dp: Datapath,
    index: usize,
    mode: RunMode,
) -> std::io::Result<WorkerHandle> {
    let (tx, rx) = crossbeam_channel::unbounded();
    let mut poller = Poller::new()?;
    let waker = poller.waker();
    let name = match index {
        0 => format!("dp-{}", dp.ofproto().name()),
        n => format!("dp-{}-{n}", dp.ofproto().name()),
    };
    let join = std::thread::Builder::new().name(name).spawn(move || {
        // A worker moves packets with the kernel's default slice: the
        // short one the daemon's control threads ask for (and that a
        // thread spawned by them inherits) is for threads that mostly
        // wait (see `port::sys::sched`).
        if let Err(e) = crate::port::sys::sched::set_slice(None) {
            tracing::debug!(error = %e, "worker: default time slice not restored");
        }
        // One worker per CPU when the process steers quiet TAPs by CPU
        // (see `port::steering`): worker `index` reads queue `index` of
        // every TAP, which the steering program picks for frames sent on
        // this CPU.
        if let Some(cpu) = crate::port::steering::installed().and_then(|s| s.cpu_of_worker(index)) {
            if let Err(e) = crate::port::sys::sched::pin_to_cpu(cpu) {
                tracing::warn!(error = %e, cpu, "worker: not pinned; a quiet VM's frames may wake it on another CPU");
            }
        }
        if let Some(n) = mode.nice {
            // Without the privilege the worker runs on at the priority it
            // had: slower to get a CPU on a busy host, never wrong.
            if let Err(e) = crate::port::sys::sched::set_nice(n) {
                tracing::warn!(error = %e, nice = n, "worker: priority not set; forwarding at the inherited one");
            }
        }
        run(&mut dp, &mut poller, rx, mode)
    })?;
    Ok(WorkerHandle {
        tx,
        waker,
        join: Some(join),
    })
}

fn port_status(dp: &mut Datapath) -> Vec<PortStatus> {
    let mut out = Vec::new();
    for no in dp.port_numbers() {
        let mtu_drops = dp.port_mtu_drops(no);
        if let Some(mut s) = dp.with_port(no, |p| PortStatus {
            no,
            name: p.name().to_string(),
            kind: p.kind().to_string(),
            stats: p.stats(),
            drops: p
                .drops()
                .into_iter()
                .map(|(r, n)| (r.name().to_string(), n))
                .collect(),
            link: p.link_state(),
            mtu: p.mtu(),
        }) {
            s.mtu = dp.port_mtu(no).unwrap_or(s.mtu);
            if mtu_drops > 0 {
                s.drops.push(("mtu_exceeded".to_string(), mtu_drops));
                s.stats.tx_dropped += mtu_drops;
            }
            out.push(s);
        }
    }
    out.sort_by_key(|s| s.no);
    out
}

/// Duplicates every port's handover fds. A port whose fds cannot be
/// duplicated (out of descriptors) is left out, and logged: the new
/// process then opens it afresh.
fn handover_fds(dp: &mut Datapath) -> Vec<HandoverPort> {
    let mut out = Vec::new();
    for no in dp.port_numbers() {
        let got = dp.with_port(no, |p| {
            let fds: Result<Vec<_>, _> = p
                .handover_fds()
                .into_iter()
                .map(|fd| fd.try_clone_to_owned())
                .collect();
            (p.name().to_string(), fds)
        });
        match got {
            Some((name, Ok(fds))) if !fds.is_empty() => out.push(HandoverPort { no, name, fds }),
            Some((name, Err(e))) => {
                tracing::warn!(port = %name, "cannot hand over its fds: {e}")
            }
            _ => {}
        }
    }
    out
}

/// Handles one command; false means stop.
fn handle(dp: &mut Datapath, cmd: DpCommand, paused: &mut bool) -> bool {
    match cmd {
        DpCommand::AddPort { no, port } => {
            dp.add_port(no, port);
        }
        DpCommand::DelPort { no, reply } => {
            let _ = reply.send(dp.del_port(no));
        }
        DpCommand::Ports { reply } => {
            let _ = reply.send(port_status(dp));
        }
        DpCommand::Stats { reply } => {
            let drops = dp
                .port_drops()
                .into_iter()
                .filter_map(|(r, n)| match r {
                    super::DropReason::Port(p) => Some((p, n)),
                    _ => None,
                })
                .collect();
            let _ = reply.send((dp.stats(), drops));
        }
        DpCommand::DpFlows { reply } => {
            let _ = reply.send(dp.dump_megaflows(Instant::now()));
        }
        DpCommand::FlushCaches => dp.flush_caches(),
        DpCommand::WithPort { no, f } => {
            dp.with_port(no, f);
        }
        DpCommand::SetCapture { no, capture } => {
            dp.set_capture(no, capture);
        }
        DpCommand::SetMtu { no, mtu } => {
            dp.set_mtu(no, mtu);
        }
        DpCommand::PacketOut {
            in_port,
            actions,
            frame,
            reply,
        } => {
            let r = dp.packet_out(in_port, &actions, &frame, std::time::Instant::now());
            let _ = reply.send(r);
        }
        DpCommand::Kick => {}
        DpCommand::Pause { on, reply } => {
            *paused = on;
            let _ = reply.send(());
        }
        DpCommand::HandoverFds { reply } => {
            let _ = reply.send(handover_fds(dp));
        }
        DpCommand::ReleaseQueues { reply } => {
            for no in dp.port_numbers() {
                dp.with_port(no, |p| p.release_queue());
            }
            let _ = reply.send(());
        }
        DpCommand::Shutdown => return false,
    }
    true
}

/// Adds port numbers `more` to `ready`, which `Datapath::poll_ready`
/// wants sorted and without repeats.
fn add_ports(ready: &mut Vec<usize>, more: &[usize]) {
    ready.extend_from_slice(more);
    ready.sort_unstable();
    ready.dedup();
}

fn run(dp: &mut Datapath, poller: &mut Poller, rx: Receiver<DpCommand>, mode: RunMode) {
    let mut ready = Vec::new();
    let mut unwatched = Vec::new();
    let mut paused = false;
    // A sleeping worker reads only what its poller reports (see
    // `Datapath::poll_ready`), and every port at least this often, in
    // case a port's fd changed under it without its link going down.
    let mut swept = Instant::now();
    let mut sweep = true;
    let mut active_rounds = 0;
    loop {
        loop {
            match rx.try_recv() {
                Ok(cmd) => {
                    if !handle(dp, cmd, &mut paused) {
                        return;
                    }
                }
                Err(crossbeam_channel::TryRecvError::Empty) => break,
                Err(crossbeam_channel::TryRecvError::Disconnected) => return,
            }
        }
        if paused {
            // Only commands move a paused datapath (one resumes it).
            match rx.recv_timeout(IDLE_WAIT) {
                Ok(cmd) => {
                    if !handle(dp, cmd, &mut paused) {
                        return;
                    }
                }
                Err(crossbeam_channel::RecvTimeoutError::Timeout) => {}
                Err(crossbeam_channel::RecvTimeoutError::Disconnected) => return,
            }
            sweep = true;
            continue;
        }
        let now = Instant::now();
        let mut got = 0;
        if mode.busy_poll || sweep || now.saturating_duration_since(swept) >= IDLE_WAIT {
            swept = now;
            // A few rounds per command check keep batches flowing under
            // load.
            for _ in 0..8 {
                let n = dp.poll_once(now);
                got += n;
                if n == 0 {
                    break;
                }
            }
        } else {
            got = dp.poll_ready(now, &ready);
        }
        dp.housekeeping(now);
        if mode.busy_poll {
            if got == 0 {
                // Idle round: stay runnable, but let whatever else wants
                // this core run first (on a shared core the VM's own
                // stack, which must run for a reply to come at all).
                std::thread::yield_now();
            }
            continue;
        }
        // After a round that moved packets, the next reads the ports it
        // moved them on without asking the poller: what we sent may
        // already have been answered (a VM's stack replies inside the
        // write that delivered to it), and a port that gave frames may
        // have more. Asking costs a syscall a round, which a single TCP
        // stream between two VMs felt (6-8% of its Gbit/s on this
        // machine). The poller is asked every ACTIVE_ROUNDS such rounds,
        // so a port that just got frames waits that many rounds at most.
        if got > 0 && active_rounds < ACTIVE_ROUNDS {
            active_rounds += 1;
            sweep = false;
            ready.clear();
            ready.extend_from_slice(dp.active_ports());
            add_ports(&mut ready, &unwatched);
            continue;
        }
        active_rounds = 0;
        // Ask the poller which ports to read next: without blocking after
        // a round that moved packets, otherwise sleeping until a port's fd
        // is readable, a command arrives (the handle rings the waker), or
        // upkeep is due. A port that went down has no fd; one that came
        // back gets its new fd watched.
        unwatched.clear();
        for (no, fd) in dp.port_fds() {
            if poller.set(no as usize, fd).is_err() {
                // An fd that cannot be watched is read every round
                // instead, at the idle period when nothing else moves.
                let _ = poller.set(no as usize, None);
                unwatched.push(no as usize);
            }
        }
        let wait = if got > 0 { Duration::ZERO } else { IDLE_WAIT };
        match poller.wait(Some(wait), &mut ready) {
            Ok(woken) => {
                // The waker rang (a command, or another worker handed
                // frames to one of our ports), or a sleep ended with
                // nothing readable (upkeep is due): read every port.
                sweep = woken || (got == 0 && ready.is_empty());
                add_ports(&mut ready, &unwatched);
            }
            Err(_) => {
                std::thread::sleep(Duration::from_millis(1));
                sweep = true;
            }
        }
    }
}
