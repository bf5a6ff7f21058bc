//! A bridge's datapath workers: N threads, each running its own
//! [`Datapath`] (own caches, packet pool, counters), so the fast path takes
//! no lock per packet; they share only the bridge's tables, connection
//! tracker and drop counters, as a single worker always did.
//!
//! [`Workers`] is the control plane's handle on all of them and fans its
//! requests out: a port is added to, removed from, re-sized on and
//! captured on every worker; caches are flushed and the datapath paused on
//! every worker; port and fast-path counters are summed, megaflows listed
//! from every worker; a packet-out runs on worker 0; an upgrade hands over
//! worker 0's descriptors (each port's primary queue: the new process opens
//! the other queues afresh).
//!
//! Ports. Worker 0 holds each port's primary queue; every other worker gets
//! a queue of its own when the device can be split ([`Port::open_queue`]:
//! multi-queue TAPs, AF_PACKET fanout, `SO_REUSEPORT` sockets), so any
//! worker receives and transmits on it without a lock. Where there is no
//! such queue (an in-memory port, a device that refused another queue, a
//! queue whose device went away), another worker's output to the port is
//! handed to worker 0 through a bounded queue per (worker, port) and sent
//! by worker 0; when that queue is full the frame is dropped and counted as
//! `handoff_queue_full`. In-memory ports are received by worker 0 only, so
//! what is injected into them is processed, and leaves, in today's order.
//!
//! Thread-safety: [`WorkersSender`] is `Clone + Send + Sync` (it only holds
//! channel senders); the port wrappers each live in one worker.

pub use super::worker::RunMode;
use super::worker::{self, DpCommand, HandoverPort, PortStatus, WorkerHandle, WorkerSender};
use super::{Datapath, DpFlowInfo, DpStats};
use crate::packet::{Batch, PacketBuf, PacketPool};
use crate::port::capture::CaptureHandle;
use crate::port::poll::Waker;
use crate::port::{Error as PortError, LinkState, Port, PortDrop, PortStats};
use crossbeam_channel::{Receiver, Sender, TrySendError};
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Frames one worker may have waiting for worker 0 on one port.
pub const HANDOFF_QUEUE: usize = 1024;

/// How long the control plane waits for a worker's answer.
const ASK_TIMEOUT: Duration = Duration::from_secs(10);

/// A detachable handle on every worker of a bridge (see [`Workers`]).
#[derive(Clone)]
pub struct WorkersSender {
    workers: Arc<[WorkerSender]>,
}

impl core::fmt::Debug for WorkersSender {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "WorkersSender({})", self.workers.len())
    }
}

/// Everything the port wrappers know of a port that lives on worker 0,
/// refreshed by it: other workers size frames by the same numbers.
#[derive(Debug)]
struct Facts {
    name: String,
    kind: &'static str,
    mtu: AtomicU32,
    /// `u32::MAX`: not a tunnel.
    overhead: AtomicU32,
    pads: AtomicBool,
    up: AtomicBool,
}

impl Facts {
    fn of(p: &dyn Port) -> Facts {
        let f = Facts {
            name: p.name().to_string(),
            kind: p.kind(),
            mtu: AtomicU32::new(0),
            overhead: AtomicU32::new(u32::MAX),
            pads: AtomicBool::new(false),
            up: AtomicBool::new(true),
        };
        f.refresh(p);
        f
    }

    fn refresh(&self, p: &dyn Port) {
        self.mtu.store(p.mtu(), Ordering::Relaxed);
        self.overhead
            .store(p.tunnel_overhead().unwrap_or(u32::MAX), Ordering::Relaxed);
        self.pads.store(p.pads_short_frames(), Ordering::Relaxed);
        self.up
            .store(p.link_state() == LinkState::Up, Ordering::Relaxed);
    }
}

/// A port on worker 0: the port itself, plus the frames other workers
/// handed over for it, sent before each receive.
struct HomePort {
    inner: Box<dyn Port>,
    inbound: Vec<Receiver<PacketBuf>>,
    tx: Batch,
    facts: Arc<Facts>,
}

impl HomePort {
    /// Sends what other workers handed over, a few batches at most per
    /// call so the worker's own traffic keeps its share.
    fn drain(&mut self, pool: &mut PacketPool) {
        for _ in 0..4 {
            for rx in &self.inbound {
                while !self.tx.is_full() {
                    match rx.try_recv() {
                        Ok(p) => {
                            if let Err(p) = self.tx.push(p) {
                                pool.put(p);
                            }
                        }
                        Err(_) => break,
                    }
                }
            }
            if self.tx.is_empty() {
                return;
            }
            // As a worker's own flush: what the port could not take now is
            // not kept (the port counts what it refused).
            let _ = self.inner.send_batch(&mut self.tx, pool);
            self.tx.recycle(pool);
        }
    }
}

impl Port for HomePort {
    fn name(&self) -> &str {
        self.inner.name()
    }
    fn kind(&self) -> &'static str {
        self.inner.kind()
    }
    fn recv_batch(&mut self, pool: &mut PacketPool, batch: &mut Batch) -> Result<usize, PortError> {
        self.drain(pool);
        self.inner.recv_batch(pool, batch)
    }
    fn send_batch(&mut self, batch: &mut Batch, pool: &mut PacketPool) -> Result<usize, PortError> {
        self.inner.send_batch(batch, pool)
    }
    fn stats(&self) -> PortStats {
        self.inner.stats()
    }
    fn drops(&self) -> Vec<(PortDrop, u64)> {
        self.inner.drops()
    }
    fn mtu(&self) -> u32 {
        self.inner.mtu()
    }
    fn tunnel_overhead(&self) -> Option<u32> {
        self.inner.tunnel_overhead()
    }
    fn pads_short_frames(&self) -> bool {
        self.inner.pads_short_frames()
    }
    fn link_state(&self) -> LinkState {
        self.inner.link_state()
    }
    fn steering(&self) -> Option<crate::port::steering::Steered> {
        self.inner.steering()
    }
    fn poll_fd(&self) -> Option<RawFd> {
        self.inner.poll_fd()
    }
    fn rx_pending(&self) -> bool {
        // Hand-overs left after a drain's share are sent by the next
        // receive.
        self.inner.rx_pending() || self.inbound.iter().any(|rx| !rx.is_empty())
    }
    fn housekeeping(&mut self) {
        self.inner.housekeeping();
        self.facts.refresh(self.inner.as_ref());
    }
    fn link_downs(&self) -> u64 {
        self.inner.link_downs()
    }
    fn handover_fds(&self) -> Vec<std::os::fd::BorrowedFd<'_>> {
        self.inner.handover_fds()
    }
    fn on_delete(&mut self) {
        self.inner.on_delete()
    }
}

/// A port on a worker other than 0: its own queue of the device when there
/// is one, and the hand-off to worker 0 for frames it cannot send itself.
struct RemotePort {
    queue: Option<Box<dyn Port>>,
    handoff: Sender<PacketBuf>,
    home: Waker,
    facts: Arc<Facts>,
    /// Frames refused because the hand-off queue was full.
    full: u64,
    /// Frames refused because worker 0 no longer has the port.
    gone: u64,
}

impl RemotePort {
    fn hand_off(&mut self, batch: &mut Batch, pool: &mut PacketPool) -> usize {
        let mut sent = 0;
        for p in batch.drain() {
            match self.handoff.try_send(p) {
                Ok(()) => sent += 1,
                Err(TrySendError::Full(p)) => {
                    self.full += 1;
                    pool.put(p);
                }
                Err(TrySendError::Disconnected(p)) => {
                    self.gone += 1;
                    pool.put(p);
                }
            }
        }
        if sent > 0 {
            // Worker 0 may be asleep in its poller.
            let _ = self.home.wake();
        }
        sent
    }
}

impl Port for RemotePort {
    fn name(&self) -> &str {
        &self.facts.name
    }
    fn kind(&self) -> &'static str {
        self.facts.kind
    }
    fn recv_batch(&mut self, pool: &mut PacketPool, batch: &mut Batch) -> Result<usize, PortError> {
        match &mut self.queue {
            Some(q) => q.recv_batch(pool, batch),
            None => Ok(0),
        }
    }
    fn send_batch(&mut self, batch: &mut Batch, pool: &mut PacketPool) -> Result<usize, PortError> {
        match &mut self.queue {
            Some(q) if q.link_state() == LinkState::Up => q.send_batch(batch, pool),
            _ => Ok(self.hand_off(batch, pool)),
        }
    }
    fn stats(&self) -> PortStats {
        let mut s = self.queue.as_ref().map(|q| q.stats()).unwrap_or_default();
        s.tx_dropped += self.full + self.gone;
        s
    }
    fn drops(&self) -> Vec<(PortDrop, u64)> {
        let mut v = self.queue.as_ref().map(|q| q.drops()).unwrap_or_default();
        for (r, n) in [
            (PortDrop::HandoffQueueFull, self.full),
            (PortDrop::PortDown, self.gone),
        ] {
            if n == 0 {
                continue;
            }
            match v.iter_mut().find(|(x, _)| *x == r) {
                Some(e) => e.1 += n,
                None => v.push((r, n)),
            }
        }
        v
    }
    fn mtu(&self) -> u32 {
        self.facts.mtu.load(Ordering::Relaxed)
    }
    fn tunnel_overhead(&self) -> Option<u32> {
        match self.facts.overhead.load(Ordering::Relaxed) {
            u32::MAX => None,
            n => Some(n),
        }
    }
    fn pads_short_frames(&self) -> bool {
        self.facts.pads.load(Ordering::Relaxed)
    }
    fn link_state(&self) -> LinkState {
        if self.facts.up.load(Ordering::Relaxed) {
            LinkState::Up
        } else {
            LinkState::Down
        }
    }
    fn poll_fd(&self) -> Option<RawFd> {
        self.queue.as_ref().and_then(|q| q.poll_fd())
    }
    fn rx_pending(&self) -> bool {
        self.queue.as_ref().is_some_and(|q| q.rx_pending())
    }
    fn housekeeping(&mut self) {
        if let Some(q) = &mut self.queue {
            q.housekeeping();
        }
    }
    fn release_queue(&mut self) {
        self.queue = None;
    }
}

/// Sums `b` into `a`.
fn add_port_stats(a: &mut PortStats, b: &PortStats) {
    a.rx_packets += b.rx_packets;
    a.rx_bytes += b.rx_bytes;
    a.rx_dropped += b.rx_dropped;
    a.rx_errors += b.rx_errors;
    a.tx_packets += b.tx_packets;
    a.tx_bytes += b.tx_bytes;
    a.tx_dropped += b.tx_dropped;
    a.tx_errors += b.tx_errors;
}

/// Adds `(key, n)` into `v`, keeping first-seen order.
fn add_named<K: PartialEq>(v: &mut Vec<(K, u64)>, key: K, n: u64) {
    match v.iter_mut().find(|(k, _)| *k == key) {
        Some(e) => e.1 += n,
        None => v.push((key, n)),
    }
}

/// One view of the ports from every worker's: worker 0's name, type, link
/// and MTU (it holds every port's primary queue), counters and drops
/// summed over the workers' queues.
pub fn merge_ports(per_worker: Vec<Vec<PortStatus>>) -> Vec<PortStatus> {
    let mut out: Vec<PortStatus> = Vec::new();
    for list in per_worker {
        for s in list {
            match out.iter_mut().find(|o| o.no == s.no) {
                Some(o) => {
                    add_port_stats(&mut o.stats, &s.stats);
                    for (r, n) in s.drops {
                        add_named(&mut o.drops, r, n);
                    }
                }
                None => out.push(s),
            }
        }
    }
    out.sort_by_key(|s| s.no);
    out
}

/// The fast-path counters of every worker, summed.
pub fn sum_stats(per_worker: &[DpStats]) -> DpStats {
    let mut t = DpStats::default();
    for s in per_worker {
        t.packets += s.packets;
        t.emc_hits += s.emc_hits;
        t.megaflow_hits += s.megaflow_hits;
        t.upcalls += s.upcalls;
        t.upcalls_uncached += s.upcalls_uncached;
        t.revalidations += s.revalidations;
        t.recirculations += s.recirculations;
        t.megaflows += s.megaflows;
    }
    t
}

/// Port-level drops of every worker, summed by reason.
pub fn sum_drops(per_worker: Vec<Vec<(PortDrop, u64)>>) -> Vec<(PortDrop, u64)> {
    let mut v = Vec::new();
    for list in per_worker {
        for (r, n) in list {
            add_named(&mut v, r, n);
        }
    }
    v
}

impl WorkersSender {
    /// How many workers the bridge runs.
    pub fn count(&self) -> usize {
        self.workers.len()
    }

    /// Sends `make`'s command to every worker, then waits for each answer
    /// (`None` for a worker that is gone): the workers work in parallel.
    fn ask_all<R>(&self, make: impl Fn(Sender<R>) -> DpCommand) -> Vec<Option<R>> {
        let waiting: Vec<Option<Receiver<R>>> = self
            .workers
            .iter()
            .map(|w| {
                let (tx, rx) = crossbeam_channel::bounded(1);
                w.send(make(tx)).then_some(rx)
            })
            .collect();
        waiting
            .into_iter()
            .map(|rx| rx.and_then(|rx| rx.recv_timeout(ASK_TIMEOUT).ok()))
            .collect()
    }

    fn send_all(&self, make: impl Fn() -> DpCommand) {
        for w in self.workers.iter() {
            w.send(make());
        }
    }

    fn first(&self) -> Option<&WorkerSender> {
        self.workers.first()
    }

    /// Attaches `port` under number `no` on every worker: its primary
    /// queue on worker 0, another queue of it (or the hand-off to worker
    /// 0) on each other worker.
    pub fn add_port(&self, no: u32, port: Box<dyn Port>) {
        let (Some(w0), n) = (self.first(), self.workers.len()) else {
            return;
        };
        if n == 1 {
            w0.send(DpCommand::AddPort { no, port });
            return;
        }
        let facts = Arc::new(Facts::of(port.as_ref()));
        let mut inbound = Vec::with_capacity(n - 1);
        let mut remotes = Vec::with_capacity(n - 1);
        for k in 1..n {
            let queue = match port.open_queue() {
                Ok(q) => q,
                Err(e) => {
                    tracing::warn!(port = %facts.name, worker = k, "no queue of its own on this worker, its output goes through worker 0: {e}");
                    None
                }
            };
            let (tx, rx) = crossbeam_channel::bounded(HANDOFF_QUEUE);
            inbound.push(rx);
            remotes.push(RemotePort {
                queue,
                handoff: tx,
                home: w0.waker().clone(),
                facts: facts.clone(),
                full: 0,
                gone: 0,
            });
        }
        let split = remotes.iter().filter(|r| r.queue.is_some()).count();
        tracing::debug!(port = %facts.name, workers = n, queues = split + 1, "port spread over the workers");
        let home = HomePort {
            inner: port,
            inbound,
            tx: Batch::new(),
            facts,
        };
        w0.send(DpCommand::AddPort {
            no,
            port: Box::new(home),
        });
        for (w, r) in self.workers.iter().skip(1).zip(remotes) {
            w.send(DpCommand::AddPort {
                no,
                port: Box::new(r),
            });
        }
    }

    /// Detaches port `no` from every worker; the primary queue's port is
    /// handed back (the other queues are closed here).
    pub fn del_port(&self, no: u32) -> Option<Box<dyn Port>> {
        let mut got = self.ask_all(|reply| DpCommand::DelPort { no, reply });
        let primary = if got.is_empty() { None } else { got.remove(0) };
        // The other queues close before the primary can remove the device.
        drop(got);
        primary.flatten()
    }

    /// Every port's status, counters summed over the workers.
    pub fn ports(&self) -> Vec<PortStatus> {
        merge_ports(
            self.ask_all(|reply| DpCommand::Ports { reply })
                .into_iter()
                .flatten()
                .collect(),
        )
    }

    /// Each worker's fast-path counters and port-level drops, by worker
    /// index (a worker that did not answer counts zero).
    pub fn worker_stats(&self) -> Vec<(DpStats, Vec<(PortDrop, u64)>)> {
        self.ask_all(|reply| DpCommand::Stats { reply })
            .into_iter()
            .map(Option::unwrap_or_default)
            .collect()
    }

    /// Fast-path counters and port-level drops, summed over the workers.
    pub fn stats(&self) -> (DpStats, Vec<(PortDrop, u64)>) {
        let per = self.worker_stats();
        let dp: Vec<DpStats> = per.iter().map(|(s, _)| *s).collect();
        (
            sum_stats(&dp),
            sum_drops(per.into_iter().map(|(_, d)| d).collect()),
        )
    }

    /// Every worker's megaflows.
    pub fn dp_flows(&self) -> Vec<DpFlowInfo> {
        self.ask_all(|reply| DpCommand::DpFlows { reply })
            .into_iter()
            .flatten()
            .flatten()
            .collect()
    }

    /// Empties every worker's caches.
    pub fn flush_caches(&self) {
        self.send_all(|| DpCommand::FlushCaches);
    }

    /// Copies port `no`'s traffic, on every worker, to `capture`.
    pub fn set_capture(&self, no: u32, capture: Option<CaptureHandle>) {
        self.send_all(|| DpCommand::SetCapture {
            no,
            capture: capture.clone(),
        });
    }

    /// Enforces `mtu` on port `no`'s egress on every worker.
    pub fn set_mtu(&self, no: u32, mtu: Option<u32>) {
        self.send_all(|| DpCommand::SetMtu { no, mtu });
    }

    /// Runs a packet-out on worker 0 (`None`: it is gone).
    pub fn packet_out(
        &self,
        in_port: u32,
        actions: Vec<crate::flow::Action>,
        frame: Vec<u8>,
    ) -> Option<Result<(), crate::wire::Error>> {
        self.first()?.ask(|reply| DpCommand::PacketOut {
            in_port,
            actions,
            frame,
            reply,
        })
    }

    /// Has every worker process what its ports hold now.
    pub fn kick(&self) {
        self.send_all(|| DpCommand::Kick);
    }

    /// Pauses (or resumes) every worker; true once all of them are in the
    /// new state.
    pub fn pause(&self, on: bool) -> bool {
        self.ask_all(|reply| DpCommand::Pause { on, reply })
            .iter()
            .all(Option::is_some)
    }

    /// Closes every port's queues on the workers but the first (see
    /// [`Port::release_queue`]); returns once they are closed.
    pub fn release_extra_queues(&self) {
        for w in self.workers.iter().skip(1) {
            w.ask(|reply| DpCommand::ReleaseQueues { reply });
        }
    }

    /// Copies of the primary queues' handover descriptors (`None`: worker
    /// 0 is gone).
    pub fn handover_fds(&self) -> Option<Vec<HandoverPort>> {
        self.first()?.ask(|reply| DpCommand::HandoverFds { reply })
    }
}

/// A bridge's worker threads; dropping it stops them.
pub struct Workers {
    sender: WorkersSender,
    handles: Vec<WorkerHandle>,
}

impl core::fmt::Debug for Workers {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "Workers({})", self.handles.len())
    }
}

impl Workers {
    /// Starts one thread per datapath in `dps` (at least one is needed).
    pub fn spawn(dps: Vec<Datapath>, mode: RunMode) -> std::io::Result<Workers> {
        if dps.is_empty() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "a bridge needs at least one datapath worker",
            ));
        }
        let mut handles = Vec::with_capacity(dps.len());
        for (i, mut dp) in dps.into_iter().enumerate() {
            dp.set_reports_links(i == 0);
            handles.push(worker::spawn_worker(dp, i, mode)?);
        }
        let workers: Arc<[WorkerSender]> = handles.iter().map(|h| h.sender()).collect();
        Ok(Workers {
            sender: WorkersSender { workers },
            handles,
        })
    }

    /// A handle usable without holding whatever owns this one.
    pub fn sender(&self) -> WorkersSender {
        self.sender.clone()
    }
}

impl core::ops::Deref for Workers {
    type Target = WorkersSender;
    fn deref(&self) -> &WorkersSender {
        &self.sender
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        // Every worker stops first, then they are joined: the ports'
        // other queues close while the primaries are still open.
        for h in &self.handles {
            h.send(DpCommand::Shutdown);
        }
        for mut h in self.handles.drain(..).rev() {
            h.shutdown();
        }
    }
}

#[cfg(test)]
mod tests;
