//! [`Backend`]: what an OpenFlow session needs from a bridge, and
//! [`OfprotoBackend`], an implementation over a plain [`Ofproto`] with an
//! in-memory port list (tests, and bridges without a datapath).
//!
//! The daemon implements [`Backend`] on its bridge so that OpenFlow and
//! `vswitchctl` change the same tables; sessions only ever call this trait.

use super::wire::features::Desc;
use super::wire::flow_removed::FlowRemoved;
use super::wire::hello::Versions;
use super::wire::packet::PacketIn;
use super::wire::port::{PortDesc, PortReason, PortStats};
use super::wire::tlv::TlvCommand;
use super::wire::Version;
use crate::flow::Action;
use crate::ofproto::{FlowDump, FlowFilter, FlowMod, FlowModError, FlowModSummary, Ofproto};
use crate::packet::TUN_METADATA_FIELDS;
use crate::port::geneve::{TlvError, TlvMap, TlvMapHandle, TlvMapping, MAX_TLV_LEN};
use parking_lot::Mutex;
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::broadcast;

/// Something a bridge tells its controllers without being asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A port was added, deleted or changed (PORT_STATUS).
    PortStatus(PortReason, PortDesc),
    /// A packet for the controller (PACKET_IN). Boxed: it carries a
    /// metadata match.
    PacketIn(Box<PacketIn>),
    /// A flow that asked for it (`send_flow_rem`) left the table
    /// (FLOW_REMOVED). Boxed: a match is large and events are queued.
    FlowRemoved(Box<FlowRemoved>),
}

/// Why a backend refused a request other than a flow-mod.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BackendError {
    /// The port does not exist.
    #[error("no such port {0}")]
    NoSuchPort(u32),
    /// The bridge cannot execute this (for example a packet-out on a
    /// bridge without a datapath).
    #[error("not supported by this bridge: {0}")]
    Unsupported(&'static str),
}

/// Why a TLV table mod was refused (each is one `NXTTMFC_*` code); the
/// map is unchanged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TlvModError {
    /// An option length that cannot be mapped (not a multiple of 4, or
    /// longer than a `tun_metadataN` field holds here).
    #[error("option length {0} cannot be mapped")]
    BadOptLen(u8),
    /// No `tun_metadataN` field with that index.
    #[error("no field tun_metadata{0}")]
    BadFieldIdx(u8),
    /// The field already maps an option.
    #[error("tun_metadata{0} is already mapped")]
    AlreadyMapped(u8),
    /// The option (class, type) would be mapped twice.
    #[error("option class={class:#x},type={opt_type:#x} is mapped twice")]
    DupEntry {
        /// Option class.
        class: u16,
        /// Option type.
        opt_type: u8,
    },
    /// A delete names a field that maps another option.
    #[error("tun_metadata{0} maps another option")]
    InvalidDel(u8),
    /// The map refused the change for another reason.
    #[error(transparent)]
    Refused(TlvError),
}

/// `map` changed by a TLV table mod, or why not (checked in the order
/// Open vSwitch checks: length, index, then conflicts).
pub fn tlv_table_mod(
    map: &TlvMap,
    cmd: TlvCommand,
    maps: &[TlvMapping],
) -> Result<TlvMap, TlvModError> {
    for m in maps {
        if usize::from(m.index) >= TUN_METADATA_FIELDS {
            return Err(TlvModError::BadFieldIdx(m.index));
        }
        if cmd == TlvCommand::Add && (!m.len.is_multiple_of(4) || m.len > MAX_TLV_LEN) {
            return Err(TlvModError::BadOptLen(m.len));
        }
    }
    match cmd {
        TlvCommand::Clear => Ok(TlvMap::default()),
        TlvCommand::Delete => map.with_deleted(maps).map_err(TlvModError::from),
        TlvCommand::Add => map.with_added(maps).map_err(TlvModError::from),
    }
}

impl From<TlvError> for TlvModError {
    /// The map's refusal as Open vSwitch's TLV table error.
    fn from(e: TlvError) -> Self {
        match e {
            TlvError::BadLen(len) => TlvModError::BadOptLen(len),
            TlvError::NoSuchField(i) => TlvModError::BadFieldIdx(i),
            TlvError::AlreadyMapped { index, .. } => TlvModError::AlreadyMapped(index),
            TlvError::MappedTwice { new, .. } => TlvModError::DupEntry {
                class: new.class,
                opt_type: new.opt_type,
            },
            TlvError::MapsOther { old, .. } => TlvModError::InvalidDel(old.index),
            // Text errors do not reach a table mod: its mappings are decoded.
            e @ (TlvError::Syntax { .. } | TlvError::Number(_)) => TlvModError::Refused(e),
        }
    }
}

/// A barrier found the changes before it applied but not saved: the save
/// failed, or the daemon is stopping.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("changes applied but not saved: {0}")]
pub struct NotDurable(pub String);

/// One atomic batch of flow-mods as it was applied (one FLOW_MOD, or a
/// committed bundle's messages), kept as the peer sent it so the state
/// directory can journal it and a restart replay it exactly.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppliedMods {
    /// Its stamp from the [`ApplyClock`]: the order it was applied in,
    /// across sessions and bridges.
    pub stamp: u64,
    /// `NXT_FLOW_MOD_TABLE_ID` was on (how 1.0 flow-mods decode).
    pub table_id_ext: bool,
    /// The FLOW_MOD messages, in order.
    pub msgs: Vec<Vec<u8>>,
}

/// What a barrier makes durable: the session's changes since its last
/// barrier.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unsaved {
    /// The session's version (how the messages decode).
    pub version: Version,
    /// Flow-mod batches, in the order they were applied.
    pub flow_mods: Vec<AppliedMods>,
    /// Something only a full save covers changed too (the TLV map, or a
    /// journal that grew too large or failed).
    pub other: bool,
}

/// Stamps OpenFlow flow-mod batches in the order they are applied, so a
/// snapshot of the tables can say which batches it holds: every batch
/// stamped up to [`ApplyClock::now`] was applied before it returned, and
/// none is half-applied meanwhile.
#[derive(Debug, Default)]
pub struct ApplyClock {
    gate: parking_lot::RwLock<()>,
    last: std::sync::atomic::AtomicU64,
}

impl ApplyClock {
    /// A clock whose next stamp is `last + 1`.
    pub fn starting_after(last: u64) -> ApplyClock {
        ApplyClock {
            gate: parking_lot::RwLock::new(()),
            last: std::sync::atomic::AtomicU64::new(last),
        }
    }

    /// Runs `apply` and stamps it, as one step with respect to
    /// [`ApplyClock::now`].
    pub fn apply<R>(&self, apply: impl FnOnce() -> R) -> (R, u64) {
        let _g = self.gate.read();
        let r = apply();
        let stamp = self.last.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
        (r, stamp)
    }

    /// The last stamp given, with no apply in flight: everything stamped
    /// up to it is in the tables.
    pub fn now(&self) -> u64 {
        let _g = self.gate.write();
        self.last.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// How a bridge's OpenFlow changes are made durable.
#[derive(Clone)]
pub struct SaveHook {
    /// Stamps each applied batch.
    pub clock: Arc<ApplyClock>,
    /// Makes `Unsaved` changes durable.
    pub save: SaveFn,
}

/// Makes `Unsaved` changes of bridge `&str` durable (a journal append, or
/// the state directory's group commit), blocking until they are, or says
/// why they are not.
pub type SaveFn = Arc<dyn Fn(&str, &Unsaved) -> Result<(), NotDurable> + Send + Sync>;

impl std::fmt::Debug for SaveHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SaveHook")
            .field("clock", &self.clock)
            .finish()
    }
}

impl SaveHook {
    /// Applies flow-mods through `apply`, stamped.
    pub fn stamped<R>(&self, apply: impl FnOnce() -> R) -> (R, u64) {
        self.clock.apply(apply)
    }
}

/// The bridge side of the OpenFlow endpoint. Calls come from session
/// tasks, concurrently: implementations synchronise internally.
pub trait Backend: Send + Sync {
    /// The datapath id (FEATURES_REPLY).
    fn datapath_id(&self) -> u64;
    /// The switch description (DESC).
    fn desc(&self) -> Desc;
    /// Applies flow-mods as one atomic batch (all or none); the error
    /// names the failing index.
    fn flow_mods(&self, mods: &[FlowMod]) -> Result<FlowModSummary, FlowModError>;
    /// Flows selected by `filter`, with counters.
    fn dump_flows(&self, filter: &FlowFilter) -> Vec<FlowDump>;
    /// Number of flows in each table (index = table id).
    fn table_counts(&self) -> Vec<u32>;
    /// Ports in OpenFlow number order (LOCAL included).
    fn ports(&self) -> Vec<PortDesc>;
    /// Counters of `port` (every port when `None`).
    fn port_stats(&self, port: Option<u32>) -> Result<Vec<PortStats>, BackendError>;
    /// Runs `actions` on `data` as if it came in on `in_port`.
    fn packet_out(&self, in_port: u32, actions: &[Action], data: &[u8])
        -> Result<(), BackendError>;
    /// A receiver of the bridge's events (bounded: a session that falls
    /// behind loses the oldest and is told how many).
    fn subscribe(&self) -> broadcast::Receiver<Event>;
    /// Forgets the tracked connections of conntrack zone `zone`; returns
    /// how many.
    fn ct_flush_zone(&self, zone: u16) -> usize;
    /// Changes the Geneve TLV map (the one `vswitchctl add-tlv-map`
    /// changes), all or nothing.
    fn tlv_table_mod(&self, cmd: TlvCommand, maps: &[TlvMapping]) -> Result<(), TlvModError>;
    /// The Geneve TLV map.
    fn tlv_table(&self) -> Vec<TlvMapping>;
    /// The OpenFlow versions its sessions may negotiate (Open vSwitch's
    /// `Bridge.protocols`), read when a session starts.
    fn versions(&self) -> Versions {
        Versions::default()
    }
    /// Whether changes are saved, so that a barrier must wait for
    /// [`Backend::save`] before it is answered.
    fn saves(&self) -> bool {
        false
    }
    /// [`Backend::flow_mods`], stamped with its place in the order of
    /// applied batches (0 when the backend does not save).
    fn flow_mods_stamped(&self, mods: &[FlowMod]) -> (Result<FlowModSummary, FlowModError>, u64) {
        (self.flow_mods(mods), 0)
    }
    /// Blocks until `changes` (everything a session applied before a
    /// barrier) are saved. Called off the session's task, once per
    /// barrier.
    fn save(&self, changes: &Unsaved) -> Result<(), NotDurable> {
        let _ = changes;
        Ok(())
    }
}

/// Applies a TLV table mod to the map behind `handle`.
pub fn tlv_table_mod_handle(
    handle: &TlvMapHandle,
    cmd: TlvCommand,
    maps: &[TlvMapping],
) -> Result<(), TlvModError> {
    crate::port::geneve::update_tlv_map(handle, |cur| tlv_table_mod(cur, cmd, maps))
}

/// A recorded packet-out: input port, actions, frame.
pub type PacketOutRecord = (u32, Vec<Action>, Vec<u8>);

/// Capacity of an event channel.
pub const EVENT_QUEUE: usize = 1024;

/// A [`Backend`] over an [`Ofproto`] and a port list kept here. Packet-outs
/// are recorded (there is no datapath to send them).
pub struct OfprotoBackend {
    ofproto: Arc<Ofproto>,
    datapath_id: u64,
    ports: Mutex<Vec<PortDesc>>,
    packet_outs: Mutex<Vec<PacketOutRecord>>,
    events: broadcast::Sender<Event>,
    tlv: TlvMapHandle,
    ct_flushes: Mutex<Vec<u16>>,
    versions: Mutex<Versions>,
    save_hook: Mutex<Option<SaveHook>>,
}

impl std::fmt::Debug for OfprotoBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OfprotoBackend")
            .field("ofproto", &self.ofproto)
            .field("datapath_id", &self.datapath_id)
            .finish()
    }
}

impl OfprotoBackend {
    /// A backend over `ofproto` with no ports but LOCAL.
    pub fn new(ofproto: Arc<Ofproto>, datapath_id: u64) -> Self {
        let (events, _) = broadcast::channel(EVENT_QUEUE);
        let local = PortDesc {
            port_no: crate::flow::ofp_port::LOCAL,
            hw_addr: mac_of(datapath_id),
            name: ofproto.name().to_string(),
            config: 0,
            state: 4,
            curr_speed: 0,
        };
        OfprotoBackend {
            ofproto,
            datapath_id,
            ports: Mutex::new(vec![local]),
            packet_outs: Mutex::new(Vec::new()),
            events,
            tlv: crate::port::geneve::new_tlv_map(),
            ct_flushes: Mutex::new(Vec::new()),
            versions: Mutex::new(Versions::default()),
            save_hook: Mutex::new(None),
        }
    }

    /// Limits the versions new sessions may negotiate.
    pub fn set_versions(&self, v: Versions) {
        *self.versions.lock() = v;
    }

    /// Makes barriers wait for `hook` (None: barriers are answered at
    /// once).
    pub fn set_save_hook(&self, hook: Option<SaveHook>) {
        *self.save_hook.lock() = hook;
    }

    /// The tables.
    pub fn ofproto(&self) -> &Arc<Ofproto> {
        &self.ofproto
    }

    /// The TLV map (this backend's own).
    pub fn tlv(&self) -> &TlvMapHandle {
        &self.tlv
    }

    /// The conntrack zones flushed so far (there is no tracker here).
    pub fn ct_flushes(&self) -> Vec<u16> {
        self.ct_flushes.lock().clone()
    }

    /// Adds a port (announced to every session as PORT_STATUS ADD).
    pub fn add_port(&self, desc: PortDesc) {
        let mut ports = self.ports.lock();
        ports.retain(|p| p.port_no != desc.port_no);
        ports.push(desc.clone());
        ports.sort_by_key(|p| p.port_no);
        drop(ports);
        // No subscriber is not an error.
        let _ = self.events.send(Event::PortStatus(PortReason::Add, desc));
    }

    /// Removes a port (PORT_STATUS DELETE).
    pub fn del_port(&self, port_no: u32) -> Option<PortDesc> {
        let mut ports = self.ports.lock();
        let i = ports.iter().position(|p| p.port_no == port_no)?;
        let d = ports.remove(i);
        drop(ports);
        let _ = self
            .events
            .send(Event::PortStatus(PortReason::Delete, d.clone()));
        Some(d)
    }

    /// Sends an event to every session (what a datapath would do for a
    /// packet-in).
    pub fn publish(&self, ev: Event) {
        let _ = self.events.send(ev);
    }

    /// The packet-outs received so far.
    pub fn packet_outs(&self) -> Vec<PacketOutRecord> {
        self.packet_outs.lock().clone()
    }
}

/// A locally administered MAC derived from the datapath id.
pub fn mac_of(dpid: u64) -> [u8; 6] {
    let b = dpid.to_be_bytes();
    [b[2] | 0x02, b[3], b[4], b[5], b[6], b[7]]
}

impl Backend for OfprotoBackend {
    fn datapath_id(&self) -> u64 {
        self.datapath_id
    }

    fn desc(&self) -> Desc {
        Desc {
            mfr: "vswitch".to_string(),
            hw: "userspace".to_string(),
            sw: env!("CARGO_PKG_VERSION").to_string(),
            serial: "None".to_string(),
            dp: self.ofproto.name().to_string(),
        }
    }

    fn flow_mods(&self, mods: &[FlowMod]) -> Result<FlowModSummary, FlowModError> {
        self.ofproto.flow_mods(mods, Instant::now())
    }

    fn dump_flows(&self, filter: &FlowFilter) -> Vec<FlowDump> {
        self.ofproto.dump_flows(filter, Instant::now())
    }

    fn table_counts(&self) -> Vec<u32> {
        self.ofproto.table_counts()
    }

    fn ports(&self) -> Vec<PortDesc> {
        self.ports.lock().clone()
    }

    fn port_stats(&self, port: Option<u32>) -> Result<Vec<PortStats>, BackendError> {
        let ports = self.ports.lock();
        let v: Vec<PortStats> = ports
            .iter()
            .filter(|p| port.is_none_or(|n| n == p.port_no))
            .map(|p| PortStats {
                port_no: p.port_no,
                ..PortStats::default()
            })
            .collect();
        match port {
            Some(n) if v.is_empty() => Err(BackendError::NoSuchPort(n)),
            _ => Ok(v),
        }
    }

    fn packet_out(
        &self,
        in_port: u32,
        actions: &[Action],
        data: &[u8],
    ) -> Result<(), BackendError> {
        self.packet_outs
            .lock()
            .push((in_port, actions.to_vec(), data.to_vec()));
        Ok(())
    }

    fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.events.subscribe()
    }

    fn ct_flush_zone(&self, zone: u16) -> usize {
        self.ct_flushes.lock().push(zone);
        0
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
        hook.map_or(Ok(()), |h| (h.save)(self.ofproto.name(), changes))
    }

    fn flow_mods_stamped(&self, mods: &[FlowMod]) -> (Result<FlowModSummary, FlowModError>, u64) {
        let hook = self.save_hook.lock().clone();
        match hook {
            Some(h) => h.stamped(|| self.flow_mods(mods)),
            None => (self.flow_mods(mods), 0),
        }
    }
}
