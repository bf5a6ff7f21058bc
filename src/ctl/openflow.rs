//! The OpenFlow front end: each bridge served to OpenFlow peers
//! (`ovs-ofctl`, controllers) through the [`Backend`] the session speaks
//! to, over the same tables, ports and datapath `vswitchctl` drives.
//!
//! * [`BridgeBackend`]: a bridge as OpenFlow sees it. Flow-mods and dumps
//!   go to the bridge's tables (so `vswitchctl dump-flows` and `ovs-ofctl
//!   dump-flows` agree, counters and durations included); port
//!   descriptions and counters come from the datapath; packet-outs run in
//!   the datapath thread; conntrack zone flushes and the Geneve TLV map
//!   go to the bridge's tracker and map (the ones `vswitchctl` uses).
//! * Events: PORT_STATUS when a port is added, deleted or changes link;
//!   PACKET_IN from the datapath's packet-in queue, drained by a small
//!   thread per bridge ([`spawn_packet_in_pump`]), with the action's
//!   userdata and the pipeline's metadata.
//! * Controller connections reconnect with backoff and are probed for
//!   inactivity ([`PROBE_INTERVAL`]).

use crate::conntrack::ConnTracker;
use crate::datapath::packet_in::{PacketIn as DpPacketIn, Refused};
use crate::datapath::worker::PortStatus;
use crate::datapath::workers::WorkersSender;
use crate::datapath::{DropCounters, DropReason};
use crate::flow::{ofp_port, Action};
use crate::ofproto::{FlowDump, FlowFilter, FlowMod, FlowModError, FlowModSummary, Ofproto};
use crate::openflow::backend::{
    mac_of, tlv_table_mod_handle, Backend, BackendError, Event, NotDurable, SaveHook, TlvModError,
    Unsaved, EVENT_QUEUE,
};
use crate::openflow::wire::features::Desc;
use crate::openflow::wire::hello::Versions;
use crate::openflow::wire::packet::PacketIn;
use crate::openflow::wire::port::{PortDesc, PortReason, PortStats};
use crate::openflow::wire::tlv::TlvCommand;
use crate::port::geneve::{TlvMapHandle, TlvMapping};
use crate::port::LinkState;
use crossbeam_channel::Receiver;
use parking_lot::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::broadcast;

/// OFPPC_PORT_DOWN.
const PORT_DOWN: u32 = 1;
/// OFPPS_LINK_DOWN.
const LINK_DOWN: u32 = 1;
/// OFPPS_LIVE (1.3+; Open vSwitch sets it on every working port).
const LIVE: u32 = 4;

/// The datapath id of a bridge: a locally administered MAC made from its
/// name, stable across restarts (Open vSwitch derives it from the bridge's
/// MAC the same way).
pub fn datapath_id(bridge: &str) -> u64 {
    // FNV-1a: stable across builds and platforms, unlike std's hasher.
    let h = bridge.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    });
    (h & 0x0000_feff_ffff_ffff) | 0x0000_0200_0000_0000
}

/// A bridge as its OpenFlow sessions see it.
pub struct BridgeBackend {
    of: Arc<Ofproto>,
    worker: WorkersSender,
    ct: Arc<ConnTracker>,
    tlv: TlvMapHandle,
    /// The datapath id: derived from the name, or Open vSwitch's
    /// `other_config:datapath-id`.
    dpid: AtomicU64,
    /// The versions its sessions may negotiate (`Bridge.protocols`).
    versions: Mutex<Versions>,
    /// What a barrier waits for (the state directory's save), when the
    /// daemon saves.
    save_hook: Mutex<Option<SaveHook>>,
    events: broadcast::Sender<Event>,
}

impl std::fmt::Debug for BridgeBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BridgeBackend")
            .field("bridge", &self.of.name())
            .field("dpid", &self.datapath_id())
            .finish()
    }
}

impl BridgeBackend {
    /// The backend of the bridge whose tables are `of`, whose datapath
    /// thread `worker` reaches, whose connections `ct` tracks and whose
    /// Geneve ports read the TLV map `tlv`.
    pub fn new(
        of: Arc<Ofproto>,
        worker: WorkersSender,
        ct: Arc<ConnTracker>,
        tlv: TlvMapHandle,
    ) -> BridgeBackend {
        let (events, _) = broadcast::channel(EVENT_QUEUE);
        BridgeBackend {
            dpid: AtomicU64::new(datapath_id(of.name())),
            versions: Mutex::new(Versions::default()),
            save_hook: Mutex::new(None),
            of,
            worker,
            ct,
            tlv,
            events,
        }
    }

    /// Sets the datapath id FEATURES_REPLY reports (sessions already up
    /// see it in their next FEATURES_REPLY).
    pub fn set_datapath_id(&self, dpid: u64) {
        self.dpid.store(dpid, Ordering::Relaxed);
    }

    /// The datapath id FEATURES_REPLY reports.
    pub fn datapath_id_in_force(&self) -> u64 {
        self.dpid.load(Ordering::Relaxed)
    }

    /// The versions new sessions may negotiate.
    pub fn versions_in_force(&self) -> Versions {
        *self.versions.lock()
    }

    /// Limits the versions new sessions may negotiate.
    pub fn set_versions(&self, v: Versions) {
        *self.versions.lock() = v;
    }

    /// Makes barriers wait for `hook` (None: answered at once).
    pub fn set_save_hook(&self, hook: Option<SaveHook>) {
        *self.save_hook.lock() = hook;
    }

    /// Tells every session about a port change.
    pub fn port_status(&self, reason: PortReason, desc: PortDesc) {
        // No subscriber is not an error.
        let _ = self.events.send(Event::PortStatus(reason, desc));
    }

    /// The description of port `s`, as PORT_DESC and PORT_STATUS give it.
    pub fn describe(&self, s: &PortStatus) -> PortDesc {
        let enabled = self
            .of
            .with_ports(|p| p.get(s.no).is_none_or(|i| i.enabled));
        PortDesc {
            port_no: s.no,
            hw_addr: port_mac(self.datapath_id(), s.no),
            name: s.name.clone(),
            config: if enabled { 0 } else { PORT_DOWN },
            state: match s.link {
                LinkState::Up => LIVE,
                LinkState::Down => LINK_DOWN,
            },
            curr_speed: 0,
        }
    }

    fn statuses(&self) -> Vec<PortStatus> {
        let mut v = self.worker.ports();
        v.sort_by_key(|s| s.no);
        v
    }

    fn local(&self) -> PortDesc {
        PortDesc {
            port_no: ofp_port::LOCAL,
            hw_addr: mac_of(self.datapath_id()),
            name: self.of.name().to_string(),
            config: 0,
            state: LIVE,
            curr_speed: 0,
        }
    }
}

/// A port's MAC as OpenFlow reports it: the bridge's, with the port number
/// in the low bytes (the datapath keeps no MAC for in-memory ports).
fn port_mac(dpid: u64, no: u32) -> [u8; 6] {
    let mut m = mac_of(dpid);
    m[4] ^= (no >> 8) as u8;
    m[5] ^= no as u8;
    m
}

impl Backend for BridgeBackend {
    fn datapath_id(&self) -> u64 {
        self.dpid.load(Ordering::Relaxed)
    }

    fn desc(&self) -> Desc {
        Desc {
            mfr: "vswitch".to_string(),
            hw: "vswitch userspace datapath".to_string(),
            sw: env!("CARGO_PKG_VERSION").to_string(),
            serial: "None".to_string(),
            dp: self.of.name().to_string(),
        }
    }

    fn flow_mods(&self, mods: &[FlowMod]) -> Result<FlowModSummary, FlowModError> {
        self.of.flow_mods(mods, Instant::now())
    }

    fn dump_flows(&self, filter: &FlowFilter) -> Vec<FlowDump> {
        self.of.dump_flows(filter, Instant::now())
    }

    fn table_counts(&self) -> Vec<u32> {
        self.of.table_counts()
    }

    fn ports(&self) -> Vec<PortDesc> {
        let mut v: Vec<PortDesc> = self.statuses().iter().map(|s| self.describe(s)).collect();
        v.push(self.local());
        v
    }

    fn port_stats(&self, port: Option<u32>) -> Result<Vec<PortStats>, BackendError> {
        let v: Vec<PortStats> = self
            .statuses()
            .into_iter()
            .filter(|s| port.is_none_or(|n| n == s.no || n == ofp_port::NONE))
            .map(|s| PortStats {
                port_no: s.no,
                rx_packets: s.stats.rx_packets,
                tx_packets: s.stats.tx_packets,
                rx_bytes: s.stats.rx_bytes,
                tx_bytes: s.stats.tx_bytes,
                rx_dropped: s.stats.rx_dropped,
                tx_dropped: s.stats.tx_dropped,
                rx_errors: s.stats.rx_errors,
                tx_errors: s.stats.tx_errors,
                ..PortStats::default()
            })
            .collect();
        match port {
            Some(n) if v.is_empty() && n != ofp_port::NONE => Err(BackendError::NoSuchPort(n)),
            _ => Ok(v),
        }
    }

    fn packet_out(
        &self,
        in_port: u32,
        actions: &[Action],
        data: &[u8],
    ) -> Result<(), BackendError> {
        let r = self
            .worker
            .packet_out(in_port, actions.to_vec(), data.to_vec());
        match r {
            Some(Ok(())) => Ok(()),
            Some(Err(_)) => Err(BackendError::Unsupported("a frame that does not parse")),
            None => Err(BackendError::Unsupported(
                "packet-out while the bridge stops",
            )),
        }
    }

    fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.events.subscribe()
    }

    fn ct_flush_zone(&self, zone: u16) -> usize {
        self.ct.flush(Some(zone))
    }

    fn tlv_table_mod(&self, cmd: TlvCommand, maps: &[TlvMapping]) -> Result<(), TlvModError> {
        tlv_table_mod_handle(&self.tlv, cmd, maps)
    }

    fn tlv_table(&self) -> Vec<TlvMapping> {
        self.tlv.load().mappings().copied().collect()
    }

    fn versions(&self) -> Versions {
        *self.versions.lock()
    }

    fn saves(&self) -> bool {
        self.save_hook.lock().is_some()
    }

    fn save(&self, changes: &Unsaved) -> Result<(), NotDurable> {
        let hook = self.save_hook.lock().clone();
        hook.map_or(Ok(()), |h| (h.save)(self.of.name(), changes))
    }

    fn flow_mods_stamped(&self, mods: &[FlowMod]) -> (Result<FlowModSummary, FlowModError>, u64) {
        let hook = self.save_hook.lock().clone();
        match hook {
            Some(h) => h.stamped(|| self.flow_mods(mods)),
            None => (self.flow_mods(mods), 0),
        }
    }
}

/// Drains the datapath's packet-ins into PACKET_IN events for `backend`'s
/// sessions, until the datapath goes away (its sender is dropped).
/// A packet-in no session was there to take is counted in `drops`.
pub fn spawn_packet_in_pump(
    bridge: &str,
    rx: Receiver<DpPacketIn>,
    backend: Arc<BridgeBackend>,
    drops: Arc<DropCounters>,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name(format!("pktin-{bridge}"))
        .spawn(move || {
            for pi in rx.iter() {
                let ev = PacketIn {
                    total_len: pi.total_len.min(usize::from(u16::MAX)) as u16,
                    in_port: pi.key.in_port(),
                    reason: pi.reason.wire(),
                    table_id: pi.table_id,
                    cookie: pi.cookie,
                    metadata: crate::openflow::wire::packet::metadata_of(&pi.key),
                    userdata: pi.userdata,
                    data: pi.data,
                };
                if backend.events.send(Event::PacketIn(Box::new(ev))).is_err() {
                    drops.add(DropReason::PacketIn(Refused::NoController), 1);
                }
            }
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn datapath_ids_are_stable_local_macs() {
        let a = datapath_id("br0");
        assert_eq!(a, datapath_id("br0"));
        assert_ne!(a, datapath_id("br1"));
        assert_eq!(a >> 48, 0);
        assert_eq!((a >> 40) & 0x03, 0x02, "locally administered, unicast");
    }

    #[test]
    fn backoff_doubles_to_its_cap_and_restarts_after_a_lasting_session() {
        let s = std::time::Duration::from_secs;
        let mut b = Backoff::new(MAX_BACKOFF);
        let waits: Vec<u64> = (0..6).map(|_| b.next(None).as_secs()).collect();
        assert_eq!(waits, [1, 2, 4, 8, 8, 8]);
        // Up for less than the current wait (accepted, then hung up at
        // once): no reset, still capped.
        assert_eq!(b.next(Some(s(2))), s(8));
        // Up long enough: from 1 s again.
        assert_eq!(b.next(Some(s(60))), s(1));
        assert_eq!(b.next(None), s(2));
        // A 2 s cap (max_backoff=2000).
        let mut b = Backoff::new(s(2));
        let waits: Vec<u64> = (0..4).map(|_| b.next(None).as_secs()).collect();
        assert_eq!(waits, [1, 2, 2, 2]);
        // A cap of 1 s.
        let mut b = Backoff::new(s(1));
        assert_eq!((b.next(None), b.next(None)), (s(1), s(1)));
    }

    #[test]
    fn controller_columns_read_as_open_vswitch_reads_them() {
        let s = std::time::Duration::from_secs;
        let tcp: Target = "tcp:127.0.0.1:6653".parse().unwrap();
        let unix: Target = "unix:/run/c.sock".parse().unwrap();
        let c = |t: &Target, p, b| {
            ControllerConfig::from_columns(t.clone(), p, b, ConnectionMode::OutOfBand)
        };
        let d = ControllerConfig::new(tcp.clone());
        assert_eq!((d.inactivity_probe, d.max_backoff), (Some(s(5)), s(8)));
        assert_eq!(c(&tcp, Some(0), None).inactivity_probe, None, "0 disables");
        assert_eq!(
            c(&tcp, Some(999), None).inactivity_probe,
            None,
            "whole seconds"
        );
        assert_eq!(
            c(&tcp, Some(1000), None).inactivity_probe,
            Some(s(5)),
            "floor 5 s"
        );
        assert_eq!(c(&tcp, Some(30_500), None).inactivity_probe, Some(s(30)));
        assert_eq!(c(&tcp, Some(-5), None).inactivity_probe, None);
        assert_eq!(c(&tcp, None, Some(2000)).max_backoff, s(2));
        assert_eq!(c(&tcp, None, Some(500)).max_backoff, s(1), "floor 1 s");
        assert_eq!(c(&tcp, None, Some(-1)).max_backoff, s(1));
        assert_eq!(ControllerConfig::new(unix.clone()).inactivity_probe, None);
        assert_eq!(c(&unix, Some(30_000), None).inactivity_probe, None);
        assert_eq!(ConnectionMode::parse(""), Some(ConnectionMode::OutOfBand));
        assert_eq!(
            ConnectionMode::parse("in-band"),
            Some(ConnectionMode::InBand)
        );
        assert_eq!(ConnectionMode::parse("sideways"), None);
    }
}

/// What a bridge does while no controller is connected (Open vSwitch's
/// `fail_mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FailMode {
    /// After [`FAIL_OPEN_AFTER`] without a controller, forward as a
    /// MAC-learning switch (fail-open) until one connects again.
    #[default]
    Standalone,
    /// Keep forwarding with the flows there are; never take over.
    Secure,
}

impl FailMode {
    /// Parses `standalone` or `secure`.
    pub fn parse(s: &str) -> Option<FailMode> {
        match s {
            "standalone" => Some(FailMode::Standalone),
            "secure" => Some(FailMode::Secure),
            _ => None,
        }
    }

    /// The name.
    pub fn name(self) -> &'static str {
        match self {
            FailMode::Standalone => "standalone",
            FailMode::Secure => "secure",
        }
    }
}

/// How long a `standalone` bridge waits without any controller before it
/// fails open.
pub const FAIL_OPEN_AFTER: std::time::Duration = std::time::Duration::from_secs(5);
/// The longest wait between two connection attempts.
pub const MAX_BACKOFF: std::time::Duration = std::time::Duration::from_secs(8);
/// Silence from a controller after which it is probed with an echo
/// request; as long again without a reply and the connection is made
/// again (Open vSwitch's default `inactivity_probe`).
pub const PROBE_INTERVAL: std::time::Duration = std::time::Duration::from_secs(5);
/// Bytes of events queued for a controller before they are dropped.
const MAX_OUTPUT: usize = 16 << 20;
/// A controller that does not read for this long is disconnected.
const WRITE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

/// A controller to connect to (`tcp:IP:PORT`, `unix:PATH`), or a passive
/// listener controllers connect to (`ptcp:PORT[:IP]`, loopback unless an
/// address is given).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// TCP.
    Tcp(std::net::SocketAddr),
    /// A unix socket.
    Unix(std::path::PathBuf),
    /// Listen on TCP.
    Passive(std::net::SocketAddr),
}

/// A controller target that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bad controller target '{0}': expected tcp:IP[:PORT], unix:PATH or ptcp:PORT[:IP]")]
pub struct TargetError(pub String);

impl std::str::FromStr for Target {
    type Err = TargetError;

    fn from_str(s: &str) -> Result<Target, TargetError> {
        let bad = || TargetError(s.to_string());
        if s.starts_with("ptcp:") {
            return crate::openflow::server::parse_ptcp(s)
                .map(Target::Passive)
                .map_err(|_| bad());
        }
        if let Some(p) = s.strip_prefix("unix:") {
            if p.is_empty() {
                return Err(bad());
            }
            return Ok(Target::Unix(p.into()));
        }
        let rest = s.strip_prefix("tcp:").ok_or_else(bad)?;
        // tcp:IP:PORT, with [v6]:PORT allowed; Open vSwitch's default port
        // is 6653.
        let (ip, port) = match rest.rsplit_once(':') {
            Some((ip, port)) if !ip.is_empty() && !ip.ends_with(':') => {
                (ip, port.parse::<u16>().map_err(|_| bad())?)
            }
            _ => (rest, 6653),
        };
        let ip: std::net::IpAddr = ip
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse()
            .map_err(|_| bad())?;
        Ok(Target::Tcp(std::net::SocketAddr::new(ip, port)))
    }
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::Tcp(a) => write!(f, "tcp:{a}"),
            Target::Unix(p) => write!(f, "unix:{}", p.display()),
            Target::Passive(a) => write!(f, "ptcp:{}:{}", a.port(), a.ip()),
        }
    }
}

/// How the switch reaches a controller (Open vSwitch's
/// `Controller.connection_mode`).
///
/// Only out-of-band is implemented: the connection goes through the host's
/// own network stack, never through the bridge. In-band control would need
/// Open vSwitch's hidden flows (ARP and the controller's TCP/6653 allowed
/// through the bridge's LOCAL port before any OpenFlow flow) and a LOCAL
/// port that is a real host interface; vswitch's LOCAL port has no device.
/// An `in-band` row is accepted and connects out of band, with a warning.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ConnectionMode {
    /// Through the host's network stack.
    #[default]
    OutOfBand,
    /// Asked for in-band; connected out of band all the same.
    InBand,
}

impl ConnectionMode {
    /// `in-band` or `out-of-band`; empty (Open vSwitch's in-band default)
    /// reads as out-of-band, the only mode there is, without a warning.
    pub fn parse(s: &str) -> Option<ConnectionMode> {
        match s {
            "" | "out-of-band" => Some(ConnectionMode::OutOfBand),
            "in-band" => Some(ConnectionMode::InBand),
            _ => None,
        }
    }
}

/// The shortest inactivity probe interval: Open vSwitch raises a shorter
/// (non-zero) `inactivity_probe` to it.
pub const MIN_PROBE_INTERVAL: std::time::Duration = std::time::Duration::from_secs(5);

/// One controller and how its connection is kept (Open vSwitch's
/// Controller row).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControllerConfig {
    /// Where to connect.
    pub target: Target,
    /// Silence after which the controller is probed with an echo request,
    /// and after which, once more, it is hung up on and connected again;
    /// `None` never probes.
    pub inactivity_probe: Option<std::time::Duration>,
    /// The longest wait between two connection attempts.
    pub max_backoff: std::time::Duration,
    /// What was asked for (connections are out of band either way).
    pub connection_mode: ConnectionMode,
}

impl ControllerConfig {
    /// `target` with Open vSwitch's defaults: probed after 5 s of silence
    /// (a `unix:` controller is local and never probed, as Open vSwitch
    /// does), reconnecting with a backoff of up to 8 s.
    pub fn new(target: Target) -> ControllerConfig {
        ControllerConfig::from_columns(target, None, None, ConnectionMode::OutOfBand)
    }

    /// From a Controller row's `inactivity_probe` and `max_backoff`
    /// (milliseconds), read as ovs-vswitchd reads them: in whole seconds
    /// (so a probe under 1000 ms is 0, which disables probing), a probe of
    /// at least [`MIN_PROBE_INTERVAL`], a backoff of at least 1 s; unset,
    /// 5 s and 8 s. A `unix:` target is never probed.
    pub fn from_columns(
        target: Target,
        inactivity_probe_ms: Option<i64>,
        max_backoff_ms: Option<i64>,
        connection_mode: ConnectionMode,
    ) -> ControllerConfig {
        let secs = |ms: i64| std::time::Duration::from_secs(u64::try_from(ms / 1000).unwrap_or(0));
        let probe = match inactivity_probe_ms.map(secs) {
            None => Some(PROBE_INTERVAL),
            Some(d) if d.is_zero() => None,
            Some(d) => Some(d.max(MIN_PROBE_INTERVAL)),
        };
        let probe = probe.filter(|_| !matches!(target, Target::Unix(_)));
        let max_backoff = max_backoff_ms
            .map(secs)
            .map_or(MAX_BACKOFF, |d| d.max(std::time::Duration::from_secs(1)));
        ControllerConfig {
            target,
            inactivity_probe: probe,
            max_backoff,
            connection_mode,
        }
    }
}

/// The wait between connection attempts, kept as Open vSwitch's `rconn`
/// keeps it: 1 s after the first failure, doubling while under half the
/// maximum, then the maximum; a session that stayed up at least as long as
/// the current wait starts again from 1 s, so a controller that accepts
/// and at once hangs up is not hammered every second.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    wait: std::time::Duration,
    max: std::time::Duration,
}

impl Backoff {
    /// No wait yet, at most `max`.
    pub fn new(max: std::time::Duration) -> Backoff {
        Backoff {
            wait: std::time::Duration::ZERO,
            max,
        }
    }

    /// The wait before the next attempt, after an attempt that failed
    /// (`session` None) or a session that was up for `session`.
    pub fn next(&mut self, session: Option<std::time::Duration>) -> std::time::Duration {
        let sec = std::time::Duration::from_secs(1);
        self.wait = if session.is_some_and(|up| up >= self.wait) {
            sec
        } else if self.wait < self.max / 2 {
            (self.wait * 2).max(sec)
        } else {
            self.max
        };
        self.wait
    }
}

/// One controller connection's state, as `show` reports it.
#[derive(Debug)]
pub struct ControllerState {
    /// The target.
    pub target: Target,
    /// How the connection is kept.
    pub config: ControllerConfig,
    connected: Arc<std::sync::atomic::AtomicBool>,
}

impl ControllerState {
    /// Whether a session with it is up (its HELLO exchange done).
    pub fn is_connected(&self) -> bool {
        self.connected.load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// A bridge's controllers: a reconnecting connection per target and, in
/// standalone mode, the fail-open watchdog. Dropping it disconnects.
#[derive(Debug)]
pub struct Controllers {
    tasks: Vec<tokio::task::JoinHandle<()>>,
    /// Each target's state.
    pub states: Vec<Arc<ControllerState>>,
    /// The fail mode in force.
    pub fail_mode: FailMode,
    of: Arc<Ofproto>,
}

impl Drop for Controllers {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
        self.of.set_fail_open(false);
    }
}

impl Controllers {
    /// Connects to `controllers` on runtime `rt` and keeps reconnecting
    /// (each with its own backoff and inactivity probe) for as long as it
    /// lives.
    pub fn start(
        rt: &tokio::runtime::Handle,
        controllers: &[ControllerConfig],
        fail_mode: FailMode,
        backend: Arc<BridgeBackend>,
    ) -> Controllers {
        let of = backend.of.clone();
        let mut tasks = Vec::new();
        let mut states = Vec::new();
        for c in controllers
            .iter()
            .filter(|c| !matches!(c.target, Target::Passive(_)))
        {
            if c.connection_mode == ConnectionMode::InBand {
                tracing::warn!(controller = %c.target, "connection_mode=in-band: in-band control is not implemented (no hidden in-band flows); connecting out of band");
            }
            let st = Arc::new(ControllerState {
                target: c.target.clone(),
                config: c.clone(),
                connected: Default::default(),
            });
            states.push(st.clone());
            tasks.push(rt.spawn(connect_loop(st, backend.clone())));
        }
        if fail_mode == FailMode::Standalone && !states.is_empty() {
            tasks.push(rt.spawn(watchdog(states.clone(), of.clone())));
        }
        Controllers {
            tasks,
            states,
            fail_mode,
            of,
        }
    }

    /// The configurations it was started with.
    pub fn configs(&self) -> Vec<ControllerConfig> {
        self.states.iter().map(|s| s.config.clone()).collect()
    }
}

async fn connect_loop(st: Arc<ControllerState>, backend: Arc<BridgeBackend>) {
    let mut backoff = Backoff::new(st.config.max_backoff);
    let mut warned = false;
    loop {
        let b: Arc<dyn Backend> = backend.clone();
        let lasted = match &st.target {
            Target::Tcp(a) => match tokio::net::TcpStream::connect(a).await {
                Ok(s) => {
                    let _ = s.set_nodelay(true);
                    Some(serve(&st, s, b).await)
                }
                Err(e) => warn_once(&st.target, &e, &mut warned),
            },
            Target::Unix(p) => match tokio::net::UnixStream::connect(p).await {
                Ok(s) => Some(serve(&st, s, b).await),
                Err(e) => warn_once(&st.target, &e, &mut warned),
            },
            // Passive targets are listeners, not connections.
            Target::Passive(_) => return,
        };
        let wait = backoff.next(lasted);
        if lasted.is_some() {
            tracing::warn!(controller = %st.target, "disconnected; reconnecting in {wait:?}");
            warned = false;
        }
        tokio::time::sleep(wait).await;
    }
}

/// Runs a session with a connected controller; how long it was up.
async fn serve<S>(st: &ControllerState, stream: S, backend: Arc<dyn Backend>) -> std::time::Duration
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let since = std::time::Instant::now();
    tracing::info!(controller = %st.target, probe = ?st.config.inactivity_probe, "connected");
    crate::openflow::server::run_controller(
        stream,
        backend,
        MAX_OUTPUT,
        WRITE_TIMEOUT,
        st.config.inactivity_probe,
        st.connected.clone(),
    )
    .await;
    since.elapsed()
}

/// Logs the first failure of a run of failed connects; None (no session).
fn warn_once(t: &Target, e: &std::io::Error, warned: &mut bool) -> Option<std::time::Duration> {
    if !*warned {
        tracing::warn!(controller = %t, "cannot connect: {e}; retrying with backoff");
        *warned = true;
    }
    None
}

/// Standalone mode: fail open after [`FAIL_OPEN_AFTER`] with no controller
/// connected, and close again as soon as one is.
async fn watchdog(states: Vec<Arc<ControllerState>>, of: Arc<Ofproto>) {
    let mut since = tokio::time::Instant::now();
    let mut tick = tokio::time::interval(std::time::Duration::from_millis(250));
    loop {
        tick.tick().await;
        let now = tokio::time::Instant::now();
        if states.iter().any(|s| s.is_connected()) {
            since = now;
            if of.fail_open() {
                tracing::info!(bridge = %of.name(), "controller back: leaving fail-open");
            }
            of.set_fail_open(false);
        } else if now.duration_since(since) >= FAIL_OPEN_AFTER && !of.fail_open() {
            tracing::warn!(bridge = %of.name(), "no controller for {FAIL_OPEN_AFTER:?}: fail-open (NORMAL forwarding)");
            of.set_fail_open(true);
        }
    }
}
