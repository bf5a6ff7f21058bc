//! The fast path: batches in, caches, upcalls, action execution, batches
//! out.
//!
//! Per packet: extract the key, probe the exact-match cache (EMC), then the
//! megaflow cache; on a miss, *upcall*: ask [`Ofproto::translate`] for the
//! datapath actions and the mask they depend on, and install a megaflow.
//! Then execute the actions: plain forwarding (whole-MAC rewrites, one
//! output) as the megaflow's precomputed [`megaflow::Plan`], anything else
//! through the general action loop. Packets leave in per-port transmit
//! batches.
//!
//! The datapath has no policy: it caches and executes what translation
//! decided. Any change in the tables, ports or MAC learning bumps the
//! ofproto generation; a cache entry made under an older generation is
//! *revalidated* (re-translated; kept only when the new result is valid for
//! every packet the entry covers) before it is used again, never trusted.
//!
//! A [`Datapath`] is owned by one worker thread (a bridge runs several, see
//! [`workers`]): its caches, buffer pool and ports need no locks. It shares with the control thread only the
//! [`Ofproto`] (locked per translation, not per packet), the connection
//! tracker (sharded) and the drop counters (relaxed atomics on the drop
//! path). Every entry point takes `now`; the only I/O is through the
//! [`Port`] trait objects it owns.

pub mod drop;
pub mod egress;
pub mod emc;
pub mod execute;
pub mod megaflow;
pub mod packet_in;
pub mod pmtu;
pub mod worker;
pub mod workers;

pub use drop::{DropCounters, DropReason};

use crate::conntrack::{ConnTracker, CtClock, CtParams, FragVerdict};
use crate::flow::extract::{extract, extract_hashed, refresh_metadata};
use crate::flow::{Field, FlowKey};
use crate::ofproto::{format_dp_actions, DpAction, Ofproto, XlateError};
use crate::packet::{Batch, PacketBuf, PacketPool, DEFAULT_CAPACITY, MAX_BURST};
use crate::port::capture::CaptureHandle;
use crate::port::{LinkState, Port, PortStats};
pub use egress::Egress;
use emc::{Emc, EmcRef, RecircSig};
use megaflow::{Megaflow, MegaflowCache, Plan};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Maximum passes through the tables for one packet (the first plus
/// recirculations), as Open vSwitch's `MAX_RECIRC_DEPTH` keeps loops finite.
pub const MAX_PASSES: usize = 6;
/// How often used `normal` megaflows are re-translated to refresh MAC
/// learning, and idle ones evicted.
pub const SWEEP_INTERVAL: Duration = Duration::from_millis(500);
/// Megaflows unused for this long are evicted (Open vSwitch's `max-idle`).
pub const MEGAFLOW_MAX_IDLE: Duration = Duration::from_secs(10);

/// Fast-path counters (`dpif/show`, `dpif-netdev/pmd-stats-show`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DpStats {
    /// Packets received from ports (first passes).
    pub packets: u64,
    /// Exact-match cache hits. A recirculated pass run straight from its
    /// first pass's entry (see `Emc::next`) counts as one.
    pub emc_hits: u64,
    /// Megaflow cache hits.
    pub megaflow_hits: u64,
    /// Cache misses that went to translation.
    pub upcalls: u64,
    /// Upcalls whose result could not be cached (cache full).
    pub upcalls_uncached: u64,
    /// Stale entries re-translated.
    pub revalidations: u64,
    /// Recirculated passes.
    pub recirculations: u64,
    /// Megaflows currently cached.
    pub megaflows: u64,
}

/// A cached megaflow, as `dump-dp-flows` prints it.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct DpFlowInfo {
    /// The masked match, in ovs-ofctl syntax.
    pub matches: String,
    /// Datapath actions.
    pub actions: String,
    /// Packets.
    pub packets: u64,
    /// Bytes.
    pub bytes: u64,
    /// Seconds since last hit (`None` = never).
    pub used_secs: Option<f64>,
}

/// A port owned by the datapath, with its pending transmit batch.
struct DpPort {
    no: u32,
    port: Box<dyn Port>,
    tx: Batch,
    // `vswitchctl capture`: frames received and sent are copied here.
    capture: Option<CaptureHandle>,
    // Egress MTU, the outer headers a tunnel port adds and padding
    // (refreshed by housekeeping: a device's MTU and a TLV map can change).
    egress: Egress,
    // `set-port ... mtu=N`: the operator's MTU wins over the device's.
    mtu_override: Option<u32>,
    mtu_drops: u64,
    mtu_log: Option<Instant>,
    // Sent to since the last poll pass began (see `Datapath::active_ports`).
    sent: bool,
}

/// How often a port may log its MTU drops.
const MTU_LOG_INTERVAL: Duration = Duration::from_secs(10);

/// A token bucket for generated ICMP errors (Linux rate-limits them too):
/// a flood of oversized frames must not become a flood of errors.
#[derive(Debug)]
struct TokenBucket {
    tokens: f64,
    last: Option<Instant>,
}

impl TokenBucket {
    const RATE: f64 = 1000.0;
    const BURST: f64 = 100.0;

    fn take(&mut self, now: Instant) -> bool {
        let dt = self
            .last
            .map_or(0.0, |l| now.saturating_duration_since(l).as_secs_f64());
        self.last = Some(now);
        self.tokens = (self.tokens + dt * Self::RATE).min(Self::BURST);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

impl DpPort {
    /// Sends the transmit batch (recording it first when captured). What the
    /// port could not take is dropped (counted by the port), so a stuck port
    /// cannot hold buffers forever.
    fn flush(&mut self, pool: &mut PacketPool) {
        if self.tx.is_empty() {
            return;
        }
        if let Some(c) = &self.capture {
            let mut live = true;
            for p in self.tx.iter() {
                live &= c.record(p.data());
            }
            if !live {
                self.capture = None;
            }
        }
        let _ = self.port.send_batch(&mut self.tx, pool);
        self.tx.recycle(pool);
        self.sent = true;
    }
}

/// The keys recirculated packets carry to their next pass, one per packet
/// of the queue beside it. A key marked valid was extracted from the frame
/// as it still is (no action rewrote it since), so the next pass refreshes
/// only its metadata fields (`recirc_id`, `ct_*`: what `ct` and `recirc`
/// change) instead of parsing the headers again; the others are extracted
/// anew, in place. The next pass stages its keys right here, so a key is
/// copied once (into this queue), not again out of it.
///
/// `from` is the EMC entry the packet's first pass hit, when that pass
/// was a `ct` and recirculation and the key is valid: the next pass
/// records there which megaflow it led to ([`Emc::set_next`]), so later
/// packets of the same key skip this queue.
#[derive(Default)]
struct Carried {
    keys: Vec<FlowKey>,
    valid: Vec<bool>,
    from: Vec<EmcRef>,
}

impl Carried {
    #[inline]
    fn push(&mut self, key: &FlowKey, valid: bool, from: EmcRef) {
        self.keys.extend_from_slice(core::slice::from_ref(key));
        self.valid.push(valid);
        self.from.push(from);
    }

    fn clear(&mut self) {
        self.keys.clear();
        self.valid.clear();
        self.from.clear();
    }

    /// One key, one validity and one entry per packet of `n`.
    fn fits(&self, n: usize) -> bool {
        self.keys.len() == n && self.valid.len() == n && self.from.len() == n
    }
}

/// Per-worker fast path.
pub struct Datapath {
    of: Arc<Ofproto>,
    ct: Arc<ConnTracker>,
    /// `ct`'s clock for the batch being processed.
    ct_clock: CtClock,
    drops: Arc<DropCounters>,
    emc: Emc,
    mf: MegaflowCache,
    ports: Vec<DpPort>,
    pool: PacketPool,
    stats: DpStats,
    recirc: Vec<PacketBuf>,
    // Beside each packet of `recirc`, the key it recirculated with (see
    // `Carried`).
    recirc_keys: Carried,
    // Staged batch processing scratch (see `run_stages`): allocated once.
    stage_pkts: Vec<PacketBuf>,
    stage_carried: Carried,
    stage_keys: Option<Box<[FlowKey; MAX_BURST]>>,
    touched: Vec<(u32, u32)>,
    icmp_budget: TokenBucket,
    last_sweep: Option<Instant>,
    // OpenFlow port number -> index in `ports` (output is per packet).
    port_index: PortIndex,
    // The receive batch, reused by every `poll_once`.
    rx: Option<Batch>,
    // Port numbers the last poll pass received from or sent to, sorted.
    active: Vec<usize>,
    // Where `controller` actions send packets (none: counted as dropped).
    packet_in: Option<packet_in::Sink>,
    // See `set_reports_links`.
    reports_links: bool,
    // Every next pass through the recirculation queue, none right away
    // (see `ct_then_next_pass`): set only by tests, to hold the one to
    // the other.
    queue_next_passes: bool,
}

/// OpenFlow port number -> index in the datapath's port vector, as a
/// table indexed by the number: output looks a port up for every packet,
/// and two loads beat hashing (measured: a foldhash map cost the EMC-hit
/// path about 4 ns a packet). Port numbers are below
/// [`crate::flow::ofp_port::MAX`] and handed out from the lowest free one,
/// so the table stays as long as the highest number in use.
#[derive(Default)]
struct PortIndex(Vec<u32>);

impl PortIndex {
    const NONE: u32 = u32::MAX;

    #[inline]
    fn get(&self, no: u32) -> Option<usize> {
        match self.0.get(no as usize) {
            Some(&i) if i != Self::NONE => Some(i as usize),
            _ => None,
        }
    }

    fn set(&mut self, no: u32, i: usize) {
        let n = no as usize;
        if self.0.len() <= n {
            self.0.resize(n + 1, Self::NONE);
        }
        self.0[n] = i as u32;
    }

    fn remove(&mut self, no: u32) -> Option<usize> {
        let i = self.get(no)?;
        self.0[no as usize] = Self::NONE;
        while self.0.last() == Some(&Self::NONE) {
            self.0.pop();
        }
        Some(i)
    }
}

impl core::fmt::Debug for Datapath {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Datapath")
            .field("ports", &self.ports.len())
            .field("megaflows", &self.mf.len())
            .field("stats", &self.stats)
            .finish()
    }
}

/// What happened to one packet (for tests and benches).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fate {
    Sent,
    Dropped,
}

impl Datapath {
    /// A datapath for the bridge `of`.
    pub fn new(of: Arc<Ofproto>, ct: Arc<ConnTracker>, drops: Arc<DropCounters>) -> Self {
        Datapath {
            of,
            ct,
            ct_clock: CtClock::default(),
            drops,
            emc: Emc::default(),
            mf: MegaflowCache::default(),
            ports: Vec::new(),
            pool: PacketPool::new(DEFAULT_CAPACITY),
            stats: DpStats::default(),
            recirc: Vec::with_capacity(MAX_BURST),
            recirc_keys: Carried::default(),
            stage_pkts: Vec::with_capacity(MAX_BURST),
            stage_carried: Carried::default(),
            stage_keys: Some(Box::new([FlowKey::default(); MAX_BURST])),
            touched: Vec::with_capacity(MAX_BURST),
            icmp_budget: TokenBucket {
                tokens: TokenBucket::BURST,
                last: None,
            },
            last_sweep: None,
            port_index: PortIndex::default(),
            rx: Some(Batch::new()),
            active: Vec::new(),
            packet_in: None,
            reports_links: true,
            queue_next_passes: false,
        }
    }

    /// Whether this datapath tells the tables its ports' link states (on
    /// by default). Of a bridge's workers only the first does: it holds
    /// each port's primary queue, the one that asks the device, while
    /// another worker's queue of the same TAP cannot tell.
    pub fn set_reports_links(&mut self, on: bool) {
        self.reports_links = on;
    }

    /// Sends the packets of `controller` actions to `sink` (the control
    /// plane holds the other end).
    pub fn set_packet_in(&mut self, sink: packet_in::Sink) {
        self.packet_in = Some(sink);
    }

    /// The bridge.
    pub fn ofproto(&self) -> &Arc<Ofproto> {
        &self.of
    }

    /// Drop counters.
    pub fn drops(&self) -> &Arc<DropCounters> {
        &self.drops
    }

    /// Fast-path counters.
    pub fn stats(&self) -> DpStats {
        DpStats {
            megaflows: self.mf.len() as u64,
            ..self.stats
        }
    }

    /// The packet buffer pool (ports receive into it).
    pub fn pool(&mut self) -> &mut PacketPool {
        &mut self.pool
    }

    // ---- ports ----

    /// Attaches a port under OpenFlow number `no` (replacing one there).
    pub fn add_port(&mut self, no: u32, port: Box<dyn Port>) -> Option<Box<dyn Port>> {
        let old = self.del_port(no);
        let egress = Egress::of_port(port.as_ref(), None);
        self.ports.push(DpPort {
            no,
            egress,
            mtu_override: None,
            port,
            tx: Batch::new(),
            capture: None,
            mtu_drops: 0,
            mtu_log: None,
            sent: false,
        });
        self.port_index.set(no, self.ports.len() - 1);
        self.publish_egress(no, &egress);
        self.publish_link(no);
        old
    }

    fn port(&self, no: u32) -> Option<&DpPort> {
        self.ports.get(self.port_index.get(no)?)
    }

    fn port_mut(&mut self, no: u32) -> Option<&mut DpPort> {
        self.ports.get_mut(self.port_index.get(no)?)
    }

    /// Detaches port `no`, flushing what it still had to send.
    pub fn del_port(&mut self, no: u32) -> Option<Box<dyn Port>> {
        let i = self.port_index.remove(no)?;
        let mut p = self.ports.swap_remove(i);
        if let Some(moved) = self.ports.get(i) {
            self.port_index.set(moved.no, i);
        }
        p.tx.recycle(&mut self.pool);
        Some(p.port)
    }

    /// Each port's number and the fd to watch for it (`None`: none, or
    /// the port is down).
    pub fn port_fds(&self) -> impl Iterator<Item = (u32, Option<std::os::fd::RawFd>)> + '_ {
        self.ports.iter().map(|p| (p.no, p.port.poll_fd()))
    }

    /// Sets (or, with `None`, clears) the MTU enforced on port `no`'s
    /// egress instead of the device's.
    pub fn set_mtu(&mut self, no: u32, mtu: Option<u32>) -> bool {
        match self.port_mut(no) {
            Some(p) => {
                p.mtu_override = mtu;
                p.egress = Egress::of_port(p.port.as_ref(), mtu);
                let e = p.egress;
                self.publish_egress(no, &e);
                true
            }
            None => false,
        }
    }

    /// The MTU enforced on port `no`.
    pub fn port_mtu(&self, no: u32) -> Option<u32> {
        self.port(no).map(|p| p.egress.mtu)
    }

    /// How port `no`'s egress sizes frames (what [`egress::prepare`] is
    /// given for it).
    pub fn port_egress(&self, no: u32) -> Option<Egress> {
        self.port(no).map(|p| p.egress)
    }

    // The tables' view of the port follows the port, so `trace` sizes
    // frames with the numbers enforced here.
    fn publish_egress(&self, no: u32, e: &Egress) {
        self.of
            .set_port_egress(no, e.mtu, e.tunnel_overhead, e.pads_short_frames);
    }

    // ... and `show` reads the link state there instead of asking this
    // thread, which under load answers only between batches.
    fn publish_link(&self, no: u32) {
        if let (true, Some(p)) = (self.reports_links, self.port(no)) {
            self.of
                .set_port_link(no, p.port.link_state() == LinkState::Up);
            self.of
                .set_port_steering(no, p.port.steering().map(|s| s.name()));
        }
    }

    /// Frames dropped at port `no`'s egress because they exceeded its MTU.
    pub fn port_mtu_drops(&self, no: u32) -> u64 {
        self.port(no).map_or(0, |p| p.mtu_drops)
    }

    /// OpenFlow numbers of the attached ports.
    pub fn port_numbers(&self) -> Vec<u32> {
        self.ports.iter().map(|p| p.no).collect()
    }

    /// Counters of every port, with port-level drops by reason.
    pub fn port_stats(&self) -> Vec<(u32, PortStats)> {
        self.ports.iter().map(|p| (p.no, p.port.stats())).collect()
    }

    /// Runs `f` on port `no`.
    pub fn with_port<R>(&mut self, no: u32, f: impl FnOnce(&mut dyn Port) -> R) -> Option<R> {
        let p = self.port_mut(no)?;
        Some(f(p.port.as_mut()))
    }

    /// Drops the ports counted themselves, folded into `DropReason::Port`.
    pub fn port_drops(&self) -> Vec<(DropReason, u64)> {
        let mut v: Vec<(DropReason, u64)> = Vec::new();
        for p in &self.ports {
            for (r, n) in p.port.drops() {
                match v.iter_mut().find(|(x, _)| *x == DropReason::Port(r)) {
                    Some(e) => e.1 += n,
                    None => v.push((DropReason::Port(r), n)),
                }
            }
        }
        v
    }

    // ---- the fast path ----

    /// Receives one batch from every port and processes it. Returns the
    /// number of packets received.
    pub fn poll_once(&mut self, now: Instant) -> usize {
        self.poll_where(now, |_| true)
    }

    /// As [`Datapath::poll_once`], for the ports a sleeping worker has
    /// reason to read: those its poller reported readable (`ready`: port
    /// numbers, sorted), those it cannot watch (no fd: an in-memory port,
    /// a device that is down) and those holding frames of an earlier read
    /// ([`Port::rx_pending`]). An idle port then costs no syscall, where a
    /// sweep costs one read per port (a host's tens of VM ports, most of
    /// them quiet at any moment).
    pub fn poll_ready(&mut self, now: Instant, ready: &[usize]) -> usize {
        self.poll_where(now, |p| {
            p.port.poll_fd().is_none()
                || p.port.rx_pending()
                || ready.binary_search(&(p.no as usize)).is_ok()
        })
    }

    /// The ports the last [`Datapath::poll_once`] or
    /// [`Datapath::poll_ready`] pass received frames from or sent frames to
    /// (port numbers, sorted): where a sleeping worker looks first next,
    /// since what it sent may already have been answered (a VM's stack
    /// replies inside the write that delivered to it) and a port that gave
    /// frames may have more.
    pub fn active_ports(&self) -> &[usize] {
        &self.active
    }

    /// One receive-and-process pass over the ports `want` picks.
    fn poll_where(&mut self, now: Instant, want: impl Fn(&DpPort) -> bool) -> usize {
        let mut total = 0;
        self.active.clear();
        for p in &mut self.ports {
            p.sent = false;
        }
        let Some(mut batch) = self.rx.take() else {
            return 0;
        };
        for i in 0..self.ports.len() {
            if !want(&self.ports[i]) {
                continue;
            }
            let no = self.ports[i].no;
            // A port error (device gone) is the port's to count and
            // recover from; the other ports keep going.
            let n = self.ports[i]
                .port
                .recv_batch(&mut self.pool, &mut batch)
                .unwrap_or_default();
            if n == 0 {
                continue;
            }
            total += n;
            self.active.push(no as usize);
            if let Some(c) = &self.ports[i].capture {
                let mut live = true;
                for p in batch.iter() {
                    live &= c.record(p.data());
                }
                if !live {
                    self.ports[i].capture = None;
                }
            }
            for p in batch.iter_mut() {
                p.meta.in_port = no;
            }
            self.process_batch(&mut batch, now);
        }
        self.rx = Some(batch);
        self.flush_tx();
        self.active
            .extend(self.ports.iter().filter(|p| p.sent).map(|p| p.no as usize));
        self.active.sort_unstable();
        self.active.dedup();
        total
    }

    /// Runs a packet-out (OpenFlow PACKET_OUT): `frame` as if it arrived on
    /// `in_port` (CONTROLLER or NONE when it came from nowhere), through
    /// `actions`, then sends what they output. Nothing is cached. A frame
    /// that does not parse is a counted drop and the error.
    pub fn packet_out(
        &mut self,
        in_port: u32,
        actions: &[crate::flow::Action],
        frame: &[u8],
        now: Instant,
    ) -> Result<(), crate::wire::Error> {
        let mut pkt = self.pool.get_from(frame);
        pkt.meta.in_port = in_port;
        let mut key = FlowKey::default();
        let (d, m) = pkt.split();
        if let Err(e) = extract(d, m, &mut key) {
            self.drops.add(DropReason::from_wire(e), 1);
            self.pool.put(pkt);
            return Err(e);
        }
        let t = self.of.translate_packet_out(&key, actions, now);
        let (_, _, _, cx) = self.exec_parts();
        execute_actions(cx, pkt, &key, &t.actions, t.drop, now);
        // Recirculations (ct(table=N)) continue through the fast path.
        let gen = self.of.generation();
        let mut pass = 1;
        while !self.recirc.is_empty() {
            pass += 1;
            let mut pkts = core::mem::take(&mut self.recirc);
            let mut carried = core::mem::take(&mut self.recirc_keys);
            if pass > MAX_PASSES {
                let n = pkts.len() as u64;
                self.drops
                    .add(DropReason::Xlate(XlateError::RecircDepth), n);
                for p in pkts.drain(..) {
                    self.pool.put(p);
                }
                break;
            }
            self.run_stages(&mut pkts, &mut carried, false, gen, now);
        }
        self.flush_tx();
        Ok(())
    }

    /// Processes a batch whose packets have `meta.in_port` set. Outputs are
    /// queued on the ports' transmit batches (call [`Datapath::flush_tx`]).
    pub fn process_batch(&mut self, batch: &mut Batch, now: Instant) {
        let gen = self.of.generation();
        self.stats.packets += batch.len() as u64;
        // Both vectors keep their capacity from batch to batch: moving
        // packets between them never allocates.
        let mut pkts = core::mem::take(&mut self.stage_pkts);
        let mut carried = core::mem::take(&mut self.stage_carried);
        // First pass: every key is extracted.
        carried.clear();
        pkts.extend(batch.drain());
        self.run_stages(&mut pkts, &mut carried, true, gen, now);
        let mut pass = 1;
        while !self.recirc.is_empty() {
            pass += 1;
            core::mem::swap(&mut pkts, &mut self.recirc);
            core::mem::swap(&mut carried, &mut self.recirc_keys);
            if pass > MAX_PASSES {
                self.drops.add(
                    DropReason::Xlate(XlateError::RecircDepth),
                    pkts.len() as u64,
                );
                for p in pkts.drain(..) {
                    self.pool.put(p);
                }
                carried.clear();
                continue;
            }
            self.stats.recirculations += pkts.len() as u64;
            self.run_stages(&mut pkts, &mut carried, false, gen, now);
        }
        self.stage_pkts = pkts;
        self.stage_carried = carried;
        for (slot, ver) in self.touched.drain(..) {
            if let Some(m) = self.mf.get_mut(slot, ver) {
                m.flush_stats(now);
            }
        }
    }

    /// Processes `pkts` in stages, up to a burst at a time: extract every
    /// key, then hash every key, then look up and execute each packet.
    /// Staging is not cosmetic: hashing a key right after extraction wrote
    /// it stalls on store forwarding; a burst later the stores are long
    /// retired. Extraction's common case hashes the key itself, from the
    /// words it has in registers, which stalls on nothing.
    ///
    /// `carried` is empty, or holds the key each packet recirculated with
    /// (see [`Carried`]); it is left empty. `first`: the packets are on
    /// their first pass (only those may run their next pass right away,
    /// so that no packet makes more passes than [`MAX_PASSES`] counts).
    fn run_stages(
        &mut self,
        pkts: &mut Vec<PacketBuf>,
        carried: &mut Carried,
        first: bool,
        gen: u64,
        now: Instant,
    ) {
        let Some(mut keys) = self.stage_keys.take() else {
            return;
        };
        if !carried.fits(pkts.len()) {
            // Not one key per packet: trust none of them.
            carried.clear();
        }
        let mut hashes = [0u64; MAX_BURST];
        // Packets already staged from `carried`.
        let mut done = 0;
        while !pkts.is_empty() {
            let n = pkts.len().min(MAX_BURST);
            let mut ok = [false; MAX_BURST];
            // A recirculated burst's keys are staged where they were
            // carried: no copy (a key is too large to be copied inline).
            let (ks, valid, from): (&mut [FlowKey], &[bool], &[EmcRef]) = match (
                carried.keys.get_mut(done..done + n),
                carried.valid.get(done..done + n),
                carried.from.get(done..done + n),
            ) {
                (Some(k), Some(v), Some(f)) => (k, v, f),
                _ => (&mut keys[..n], &[], &[]),
            };
            done += n;
            // Hashed during extraction (from registers: no stall).
            let mut hashed = [false; MAX_BURST];
            for (i, pkt) in pkts[..n].iter_mut().enumerate() {
                if valid.get(i).copied().unwrap_or(false) {
                    refresh_metadata(&pkt.meta, &mut ks[i]);
                    ok[i] = true;
                    continue;
                }
                let (d, m) = pkt.split();
                match extract_hashed(d, m, &mut ks[i]) {
                    Ok(h) => {
                        ok[i] = true;
                        if let Some(h) = h {
                            hashes[i] = h;
                            hashed[i] = true;
                        }
                    }
                    Err(e) => self.drops.add(DropReason::from_wire(e), 1),
                }
            }
            for i in 0..n {
                if ok[i] && !hashed[i] {
                    hashes[i] = ks[i].hash64();
                }
            }
            for (i, pkt) in pkts.drain(..n).enumerate() {
                if !ok[i] {
                    self.pool.put(pkt);
                    continue;
                }
                let (h, key) = (hashes[i], &mut ks[i]);
                let hit = self.emc.lookup(h, key);
                // A next pass that its first pass's EMC entry is to learn
                // (see `ct_then_next_pass`), and what it learns by.
                let learn = match from.get(i) {
                    Some(&from) if from != EmcRef::NONE => Some((from, RecircSig::of(&pkt.meta))),
                    _ => None,
                };
                // One call site for each: a second one took `process_miss`
                // out of line, which cost an EMC miss about 100
                // instructions.
                let used = match self.run_emc_hit(pkt, key, hit, h, first, gen, now) {
                    None if learn.is_none() => continue,
                    None => hit,
                    Some(pkt) => self.process_miss(pkt, key, h, hit, gen, now),
                };
                if let (Some((from, sig)), Some((slot, ver))) = (learn, used) {
                    self.emc.set_next(from, sig, slot, ver);
                }
            }
        }
        carried.clear();
        self.stage_keys = Some(keys);
    }

    /// The fast path: executes `pkt` on the megaflow its EMC entry `hit`
    /// points at, if that megaflow is still there and current. Otherwise
    /// gives the packet back for [`Datapath::process_miss`]. `key` is the
    /// packet's staged key: a `ct` and recirculation run on a first pass
    /// may refresh its metadata for the next pass (see
    /// [`Datapath::ct_then_next_pass`]).
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    fn run_emc_hit(
        &mut self,
        pkt: PacketBuf,
        key: &mut FlowKey,
        hit: Option<(u32, u32)>,
        hash: u64,
        first: bool,
        gen: u64,
        now: Instant,
    ) -> Option<PacketBuf> {
        let Some((slot, ver)) = hit else {
            return Some(pkt);
        };
        // Checked before the execution context is built: built up front,
        // it was written out to the stack for every packet.
        let ct_recirc = match self.mf.get_mut(slot, ver) {
            Some(m) if m.generation == gen => match m.plan {
                // Only while no packet of this pass waits in the
                // recirculation queue: the next passes then run in the
                // order of the first ones, as they do through the queue.
                Plan::CtRecirc { ct, id }
                    if first
                        && self.recirc.is_empty()
                        && !self.queue_next_passes
                        && key.nw_frag() & FlowKey::FRAG_ANY == 0 =>
                {
                    credit(&mut self.touched, m, (slot, ver), &pkt);
                    Some((ct, id))
                }
                _ => None,
            },
            _ => return Some(pkt),
        };
        if let Some((ct, id)) = ct_recirc {
            self.stats.emc_hits += 1;
            let at = self.emc.entry_ref(hash);
            self.ct_then_next_pass(pkt, key, (ct, id), at, gen, now);
            return None;
        }
        let (mf, touched, stats, cx) = self.exec_parts();
        let Some(m) = mf.get_mut(slot, ver) else {
            return Some(pkt);
        };
        stats.emc_hits += 1;
        run_megaflow(cx, touched, m, (slot, ver), pkt, key, now);
        None
    }

    /// A first pass of [`Plan::CtRecirc`] (`ct` arguments and
    /// recirculation id), on the megaflow of EMC entry `at`, already
    /// credited: runs the `ct`, then the next pass. When the entry knows
    /// where its key went with the metadata the `ct` just wrote
    /// ([`Emc::next`]), and that megaflow is current and neither runs `ct`
    /// nor recirculates (`Megaflow::stateful`), the next pass runs right
    /// here on `key` with its metadata refreshed: no queue, no hash, no
    /// lookup. Otherwise the packet is queued as the general loop queues
    /// it, with the entry, for its next pass to record where it went.
    fn ct_then_next_pass(
        &mut self,
        mut pkt: PacketBuf,
        key: &mut FlowKey,
        (ct, id): (CtParams, u32),
        at: EmcRef,
        gen: u64,
        now: Instant,
    ) {
        let ms = self.ct_clock.ms(&self.ct, now);
        let (data, meta) = pkt.split();
        self.ct.process_at(data, key, meta, &ct, ms);
        pkt.meta.recirc_id = id;
        let next = self.emc.next(at, &RecircSig::of(&pkt.meta));
        let (mf, touched, stats, cx) = self.exec_parts();
        if let Some((s, v)) = next {
            if let Some(n) = mf
                .get_mut(s, v)
                .filter(|n| n.generation == gen && !n.stateful)
            {
                refresh_metadata(&pkt.meta, key);
                stats.recirculations += 1;
                stats.emc_hits += 1;
                run_megaflow(cx, touched, n, (s, v), pkt, key, now);
                return;
            }
        }
        cx.recirc.push(pkt);
        cx.recirc_keys.push(key, true, at);
    }

    /// Everything but a current EMC hit: a stale EMC hit (revalidated), a
    /// megaflow hit, or an upcall that translates and installs a megaflow.
    /// Returns the megaflow the packet ran on (none: it ran uncached).
    fn process_miss(
        &mut self,
        pkt: PacketBuf,
        key: &FlowKey,
        hash: u64,
        emc_hit: Option<(u32, u32)>,
        gen: u64,
        now: Instant,
    ) -> Option<(u32, u32)> {
        let mut found = None;
        if let Some((slot, ver)) = emc_hit {
            if self.mf.get_mut(slot, ver).is_some() {
                self.stats.emc_hits += 1;
                found = Some((slot, ver));
            }
        }
        if found.is_none() {
            if let Some((slot, ver)) = self.mf.lookup(key) {
                self.stats.megaflow_hits += 1;
                self.emc.insert(hash, key, slot, ver);
                found = Some((slot, ver));
            }
        }
        // Stale entries are re-translated before use.
        if let Some((slot, ver)) = found {
            let stale = self
                .mf
                .get_mut(slot, ver)
                .is_some_and(|m| m.generation != gen);
            if stale && !self.revalidate(slot, ver, key, gen, now) {
                found = None;
            }
        }
        let (slot, ver) = match found {
            Some(f) => f,
            None => {
                self.stats.upcalls += 1;
                let t = self.of.translate(key, now);
                match self.mf.insert(key, t, gen, now) {
                    Ok((slot, ver)) => {
                        self.emc.insert(hash, key, slot, ver);
                        (slot, ver)
                    }
                    Err(t) => {
                        // Cache full: execute without caching (slow path),
                        // still counted and credited.
                        self.stats.upcalls_uncached += 1;
                        for r in &t.rules {
                            r.credit(1, pkt.len() as u64, now);
                        }
                        let (.., cx) = self.exec_parts();
                        execute_actions(cx, pkt, key, &t.actions, t.drop, now);
                        return None;
                    }
                }
            }
        };
        let (mf, touched, _, cx) = self.exec_parts();
        match mf.get_mut(slot, ver) {
            Some(m) => {
                run_megaflow(cx, touched, m, (slot, ver), pkt, key, now);
                Some((slot, ver))
            }
            None => {
                cx.pool.put(pkt);
                None
            }
        }
    }

    /// The megaflow cache, its pending-credit list and the statistics,
    /// beside an execution context borrowing the other fields.
    #[inline(always)]
    fn exec_parts(
        &mut self,
    ) -> (
        &mut MegaflowCache,
        &mut Vec<(u32, u32)>,
        &mut DpStats,
        ExecCtx<'_>,
    ) {
        let Datapath {
            mf,
            touched,
            stats,
            ports,
            pool,
            drops,
            ct,
            ct_clock,
            recirc,
            recirc_keys,
            icmp_budget,
            port_index,
            packet_in,
            ..
        } = self;
        let cx = ExecCtx {
            ports,
            port_index,
            icmp_budget,
            pool,
            drops,
            ct,
            ct_clock,
            recirc,
            recirc_keys,
            packet_in,
        };
        (mf, touched, stats, cx)
    }

    /// Re-translates a stale megaflow. Keeps it (with the new result) when
    /// the new translation depends on no bit the megaflow does not pin;
    /// otherwise removes it. Returns whether it was kept.
    fn revalidate(&mut self, slot: u32, ver: u32, key: &FlowKey, gen: u64, now: Instant) -> bool {
        self.stats.revalidations += 1;
        let t = self.of.translate(key, now);
        let Some(m) = self.mf.get_mut(slot, ver) else {
            return false;
        };
        let fits = (0..crate::flow::key::WORDS).all(|i| t.mask.w[i] & !m.mask.w[i] == 0);
        if fits {
            m.flush_stats(now);
            m.update(t, gen);
            true
        } else {
            if let Some(mut m) = self.mf.remove(slot) {
                m.flush_stats(now);
            }
            false
        }
    }

    /// Sends what the transmit batches hold.
    pub fn flush_tx(&mut self) {
        for p in &mut self.ports {
            p.flush(&mut self.pool);
        }
    }

    /// Starts (or, with `None`, stops) copying port `no`'s traffic to a
    /// capture. False when there is no such port.
    pub fn set_capture(&mut self, no: u32, c: Option<CaptureHandle>) -> bool {
        match self.port_mut(no) {
            Some(p) => {
                p.capture = c;
                true
            }
            None => false,
        }
    }

    /// Periodic upkeep: re-translate used `normal` megaflows (refreshes MAC
    /// learning), evict idle ones, let ports recover. Cheap when called
    /// often: it acts at most every [`SWEEP_INTERVAL`].
    pub fn housekeeping(&mut self, now: Instant) {
        if self
            .last_sweep
            .is_some_and(|t| now.saturating_duration_since(t) < SWEEP_INTERVAL)
        {
            return;
        }
        self.last_sweep = Some(now);
        // Fragments whose datagram never completed (counted, recycled).
        for (p, r) in self.ct.ipf_expire(now) {
            self.drops.add(DropReason::CtInvalid(r), 1);
            self.pool.put(p);
        }
        for p in &mut self.ports {
            p.port.housekeeping();
            p.egress = Egress::of_port(p.port.as_ref(), p.mtu_override);
            // Also repairs a port whose info reached the tables after it
            // was attached here.
            self.of.set_port_egress(
                p.no,
                p.egress.mtu,
                p.egress.tunnel_overhead,
                p.egress.pads_short_frames,
            );
        }
        for i in 0..self.ports.len() {
            let no = self.ports[i].no;
            self.publish_link(no);
        }
        let gen = self.of.generation();
        for slot in self.mf.slots() {
            let Some(m) = self.mf.slot(slot) else {
                continue;
            };
            let idle = now.saturating_duration_since(m.used.unwrap_or(m.created));
            if idle >= MEGAFLOW_MAX_IDLE {
                if let Some(mut m) = self.mf.remove(slot) {
                    m.flush_stats(now);
                }
                continue;
            }
            if m.uses_normal && m.used_since_sweep {
                let example = m.example;
                let t = self.of.translate_refresh(&example, now);
                let ver = self.mf.version(slot);
                if let Some(m) = self.mf.get_mut(slot, ver) {
                    m.used_since_sweep = false;
                    let fits =
                        (0..crate::flow::key::WORDS).all(|i| t.mask.w[i] & !m.mask.w[i] == 0);
                    if fits && m.generation == gen {
                        m.update(t, gen);
                    }
                }
            }
        }
    }

    /// Empties both caches (every packet upcalls again).
    pub fn flush_caches(&mut self) {
        self.emc.clear();
        self.mf.clear();
    }

    /// The cached megaflows, formatted.
    pub fn dump_megaflows(&self, now: Instant) -> Vec<DpFlowInfo> {
        let names = self.of.ports();
        self.mf
            .slots()
            .into_iter()
            .filter_map(|s| self.mf.slot(s))
            .map(|m| {
                let mut txt = format!("recirc_id={:#x},", m.key.recirc_id());
                txt.push_str(&crate::flow::format::format_match(
                    &crate::flow::Match {
                        key: m.key,
                        mask: m.mask,
                    },
                    crate::flow::DEFAULT_PRIORITY,
                    Some(&names),
                ));
                DpFlowInfo {
                    matches: txt.trim_end_matches(',').to_string(),
                    actions: format_dp_actions(&m.actions),
                    packets: m.packets,
                    bytes: m.bytes,
                    used_secs: m
                        .used
                        .map(|u| now.saturating_duration_since(u).as_secs_f64()),
                }
            })
            .collect()
    }
}

struct ExecCtx<'a> {
    ports: &'a mut Vec<DpPort>,
    port_index: &'a PortIndex,
    icmp_budget: &'a mut TokenBucket,
    pool: &'a mut PacketPool,
    drops: &'a DropCounters,
    ct: &'a ConnTracker,
    ct_clock: &'a mut CtClock,
    recirc: &'a mut Vec<PacketBuf>,
    recirc_keys: &'a mut Carried,
    packet_in: &'a mut Option<packet_in::Sink>,
}

impl ExecCtx<'_> {
    /// A shorter-lived context over the same parts, to run actions on
    /// several packets (the fragments a reassembly released).
    fn reborrow(&mut self) -> ExecCtx<'_> {
        ExecCtx {
            ports: self.ports,
            port_index: self.port_index,
            icmp_budget: self.icmp_budget,
            pool: self.pool,
            drops: self.drops,
            ct: self.ct,
            ct_clock: self.ct_clock,
            recirc: self.recirc,
            recirc_keys: self.recirc_keys,
            packet_in: self.packet_in,
        }
    }

    /// Queues `pkt` on port `no`: short frames padded for wire ports, the
    /// MTU enforced (see [`pmtu`]). `key` is the packet as it arrived (an
    /// ICMP error goes back to its sender).
    ///
    /// The rare outcomes (no such port, too big) are out of line.
    fn output(&mut self, no: u32, pkt: PacketBuf, key: &FlowKey, now: Instant) -> Fate {
        self.output_inline(no, pkt, key, now)
    }

    /// [`ExecCtx::output`] inline, for the fast path's one output per
    /// packet (a call there costs more than the common case's work).
    #[inline(always)]
    fn output_inline(&mut self, no: u32, mut pkt: PacketBuf, key: &FlowKey, now: Instant) -> Fate {
        let Some(i) = self.port_index.get(no).filter(|i| *i < self.ports.len()) else {
            return self.no_such_port(pkt);
        };
        let p = &mut self.ports[i];
        if let egress::Fit::TooBig {
            counted: size,
            report_mtu: report,
        } = egress::prepare(&mut pkt, &p.egress)
        {
            return self.too_big(i, pkt, key, now, size, report);
        }
        if let Err(pkt) = p.tx.push(pkt) {
            // Full: send what is queued, then queue this one.
            p.flush(self.pool);
            let _ = p.tx.push(pkt);
        }
        Fate::Sent
    }

    #[cold]
    #[inline(never)]
    fn no_such_port(&mut self, pkt: PacketBuf) -> Fate {
        self.drops.add(DropReason::Xlate(XlateError::NoSuchPort), 1);
        self.pool.put(pkt);
        Fate::Dropped
    }

    /// `pkt` does not fit port `self.ports[i]`: dropped, logged (rate
    /// limited), and the sender told the path MTU `report`.
    #[cold]
    #[inline(never)]
    fn too_big(
        &mut self,
        i: usize,
        pkt: PacketBuf,
        key: &FlowKey,
        now: Instant,
        size: usize,
        report: u32,
    ) -> Fate {
        let Some(p) = self.ports.get_mut(i) else {
            return self.no_such_port(pkt);
        };
        p.mtu_drops += 1;
        self.drops.add(DropReason::MtuExceeded, 1);
        if p.mtu_log
            .is_none_or(|t| now.saturating_duration_since(t) >= MTU_LOG_INTERVAL)
        {
            p.mtu_log = Some(now);
            tracing::warn!(
                port = %p.port.name(),
                size,
                mtu = p.egress.mtu,
                dropped = p.mtu_drops,
                "frame larger than the port MTU dropped (mtu_exceeded); telling the sender the path MTU is {report}"
            );
        }
        let in_port = pkt.meta.in_port;
        let err = self
            .icmp_budget
            .take(now)
            .then(|| pmtu::too_big_error(&pkt, key, report, self.pool))
            .flatten();
        self.pool.put(pkt);
        if let Some(e) = err {
            // The error is small; it cannot loop back here.
            self.output(in_port, e, key, now);
        }
        Fate::Dropped
    }
}

/// The most common rewrite, inline: six bytes, no checksum.
#[inline(always)]
fn set_mac(pkt: &mut PacketBuf, field: Field, mac: [u8; 6]) {
    let at = if field == Field::DlDst { 0 } else { 6 };
    if let Some(b) = pkt.data_mut().get_mut(at..at + 6) {
        b.copy_from_slice(&mac);
    }
}

/// Credits megaflow `m` (in `slot` at version `ver`) with `pkt` and runs
/// its actions. The counters are pending ones, flushed to the megaflow
/// and its rules once per batch (`touched` lists whose).
#[inline(always)]
fn run_megaflow(
    mut cx: ExecCtx<'_>,
    touched: &mut Vec<(u32, u32)>,
    m: &mut Megaflow,
    (slot, ver): (u32, u32),
    pkt: PacketBuf,
    key: &FlowKey,
    now: Instant,
) {
    credit(touched, m, (slot, ver), &pkt);
    match m.plan {
        Plan::Forward {
            dl_dst,
            dl_src,
            port,
        } => {
            let mut pkt = pkt;
            if let Some(mac) = dl_dst {
                set_mac(&mut pkt, Field::DlDst, mac);
            }
            if let Some(mac) = dl_src {
                set_mac(&mut pkt, Field::DlSrc, mac);
            }
            cx.output_inline(port, pkt, key, now);
        }
        // Queued for its next pass by the general loop (only an EMC hit
        // on a first pass runs it right away).
        Plan::CtRecirc { .. } | Plan::General => {
            execute_actions(cx, pkt, key, &m.actions, m.drop, now)
        }
    }
}

/// Counts `pkt` on megaflow `m` (in `slot` at version `ver`): pending
/// counts, flushed once per batch for the megaflows `touched` lists.
#[inline(always)]
fn credit(
    touched: &mut Vec<(u32, u32)>,
    m: &mut Megaflow,
    (slot, ver): (u32, u32),
    pkt: &PacketBuf,
) {
    if m.pending_packets == 0 {
        touched.push((slot, ver));
    }
    m.pending_packets += 1;
    m.pending_bytes += pkt.len() as u64;
}

/// Executes `actions` on `pkt`. The packet's buffer ends in a transmit
/// batch, the recirculation queue, or back in the pool.
fn execute_actions(
    mut cx: ExecCtx<'_>,
    mut pkt: PacketBuf,
    key: &FlowKey,
    actions: &[DpAction],
    drop: Option<XlateError>,
    now: Instant,
) {
    let mut sent = false;
    // The key stays valid for conntrack until a rewrite changes the packet;
    // then (rarely) the packet is re-extracted into `fresh`.
    let mut fresh: Option<FlowKey> = None;
    let mut key_stale = false;
    // A re-extraction failed: `key` no longer describes the frame and no
    // key may be carried over a recirculation.
    let mut key_lost = false;
    let n = actions.len();
    for (i, a) in actions.iter().enumerate() {
        let last = i + 1 == n;
        match a {
            DpAction::Output(no) => {
                if last {
                    cx.output(*no, pkt, key, now);
                    return;
                }
                let copy = cx.pool.clone_packet(&pkt);
                if cx.output(*no, copy, key, now) == Fate::Sent {
                    sent = true;
                }
            }
            DpAction::SetField { .. } if a.whole_mac_rewrite().is_some() => {
                if let Some((field, mac)) = a.whole_mac_rewrite() {
                    set_mac(&mut pkt, field, mac);
                }
                key_stale = true;
            }
            DpAction::SetField { field, value, mask } => {
                // Rewrites never change dl_type / nw_proto / fragment bits,
                // which is all set_field reads from the key.
                execute::set_field(&mut pkt, key, *field, *value, *mask);
                key_stale = true;
            }
            DpAction::PushVlan { tpid, tci } => {
                execute::push_vlan(&mut pkt, *tpid, *tci);
                key_stale = true;
            }
            DpAction::PopVlan => {
                if !execute::pop_vlan(&mut pkt) {
                    cx.drops
                        .add(DropReason::Xlate(XlateError::PopVlanUntagged), 1);
                    cx.pool.put(pkt);
                    return;
                }
                key_stale = true;
            }
            DpAction::SetVlanTci { tci, mask } => {
                execute::set_vlan_tci(&mut pkt, *tci, *mask);
                key_stale = true;
            }
            DpAction::Ct { .. } => {
                if key_stale {
                    let mut k = FlowKey::default();
                    let (d, m) = pkt.split();
                    if extract(d, m, &mut k).is_ok() {
                        fresh = Some(k);
                    } else {
                        key_lost = true;
                    }
                    key_stale = false;
                }
                let params = execute::ct_params(a).unwrap_or_default();
                let k = fresh.as_ref().unwrap_or(key);
                if k.nw_frag() & FlowKey::FRAG_ANY != 0 && cx.ct.ipf_enabled_for(k.dl_type()) {
                    // Reassembly: the datagram is judged whole, its
                    // fragments travel on. As in Open vSwitch, the
                    // fragments held for it continue with the actions of
                    // the one that completed it.
                    let out = cx.ct.process_fragment(pkt, k, &params, now);
                    for (p, r) in out.dropped {
                        cx.drops.add(DropReason::CtInvalid(r), 1);
                        cx.pool.put(p);
                    }
                    match out.verdict {
                        FragVerdict::NotFragment(p) => {
                            pkt = p;
                            let (data, meta) = pkt.split();
                            let ms = cx.ct_clock.ms(cx.ct, now);
                            cx.ct.process_at(data, k, meta, &params, ms);
                        }
                        FragVerdict::Refused(p) => pkt = p,
                        FragVerdict::Held => return,
                        FragVerdict::Complete(frags) => {
                            let rest = actions.get(i + 1..).unwrap_or(&[]);
                            for mut f in frags {
                                let mut fk = FlowKey::default();
                                let (d, m) = f.split();
                                if extract(d, m, &mut fk).is_err() {
                                    fk = *k;
                                }
                                execute_actions(cx.reborrow(), f, &fk, rest, drop, now);
                            }
                            return;
                        }
                    }
                } else {
                    let (data, meta) = pkt.split();
                    let ms = cx.ct_clock.ms(cx.ct, now);
                    cx.ct.process_at(data, k, meta, &params, ms);
                }
            }
            DpAction::CtClear => {
                pkt.meta.ct_state = Default::default();
                pkt.meta.ct_zone = 0;
                pkt.meta.ct_mark = 0;
                pkt.meta.ct_invalid = 0;
            }
            DpAction::Recirc(id) => {
                let valid = !key_stale && !key_lost;
                let k = fresh.as_ref().unwrap_or(key);
                if last {
                    pkt.meta.recirc_id = *id;
                    cx.recirc.push(pkt);
                    cx.recirc_keys.push(k, valid, EmcRef::NONE);
                    return;
                }
                let mut copy = cx.pool.clone_packet(&pkt);
                copy.meta.recirc_id = *id;
                cx.recirc.push(copy);
                cx.recirc_keys.push(k, valid, EmcRef::NONE);
                sent = true;
            }
            DpAction::Controller(c) => {
                // A packet-in is the packet's fate like an output: one that
                // is not delivered is a counted drop.
                let refused = match cx.packet_in.as_mut() {
                    Some(s) => s.offer(pkt.data(), c, now).err(),
                    None => Some(packet_in::Refused::QueueFull),
                };
                if let Some(r) = refused {
                    cx.drops.add(DropReason::PacketIn(r), 1);
                }
                // Delivered or counted under its own reason: never also a
                // pipeline drop.
                sent = true;
            }
            DpAction::Drop(r) => {
                cx.drops.add(DropReason::Xlate(*r), 1);
                cx.pool.put(pkt);
                return;
            }
        }
    }
    if !sent {
        let reason = DropReason::after_pipeline(
            drop.unwrap_or(XlateError::PipelineDrop),
            crate::conntrack::CtInvalidReason::from_meta_code(pkt.meta.ct_invalid),
        );
        cx.drops.add(reason, 1);
    }
    cx.pool.put(pkt);
}

#[cfg(test)]
mod tests;
