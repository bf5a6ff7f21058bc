//! The OpenFlow-style switch: tables of rules, ports and their policy, MAC
//! learning, and translation of a packet key into datapath actions.
//!
//! This is the policy half of the switch (Open vSwitch's `ofproto`); the
//! datapath only caches and executes what [`Ofproto::translate`] decides.
//!
//! Thread-safety: an [`Ofproto`] is shared (`Arc`) between the control
//! thread, which modifies tables and ports, and the datapath workers, which
//! translate on cache misses. Tables and ports sit behind reader-writer
//! locks taken once per translation or flow-mod, never per packet; the MAC
//! table and the recirculation ids have their own mutexes. Every change that
//! can alter a translation bumps [`Ofproto::generation`], and the datapath
//! revalidates cache entries made under an older generation.

pub mod classifier;
pub mod dpaction;
pub mod mac_learning;
pub mod port_info;
pub mod port_numbers;
pub mod recirc;
pub mod rule;
pub mod trace;
pub mod xlate;
pub mod xlate_error;

pub use classifier::Classifier;
pub use dpaction::{format_dp_actions, DpAction, ToController};
pub use mac_learning::{FdbEntry, MacTable};
pub use port_info::{PortInfo, PortKind, VlanMode};
pub use rule::{Rule, RuleStats};
pub use trace::{Trace, TraceDrop};
pub use xlate::Translation;
pub use xlate_error::XlateError;

use crate::flow::{ofp_port, Action, CtZone, Field, FlowKey, FlowSpec, Match, PortNames};
use hashbrown::HashMap;
use parking_lot::{Mutex, RwLock};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Number of tables (0..=254; 255 means "all" in requests).
pub const N_TABLES: usize = 255;

/// Bridge-wide settings.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct BridgeConfig {
    /// Forward link-local control frames (BPDUs...) from edge ports instead
    /// of dropping them (Open vSwitch's `other_config:forward-bpdu`).
    pub forward_bpdu: bool,
    /// MAC learning entry lifetime in seconds.
    pub mac_aging_secs: u64,
    /// MAC learning table size (Open vSwitch's
    /// `other_config:mac-table-size`): the oldest entry goes when full.
    #[serde(default = "default_mac_table_size")]
    pub mac_table_size: usize,
}

fn default_mac_table_size() -> usize {
    mac_learning::DEFAULT_MAX_ENTRIES
}

impl Default for BridgeConfig {
    fn default() -> Self {
        BridgeConfig {
            forward_bpdu: false,
            mac_aging_secs: mac_learning::DEFAULT_AGING.as_secs(),
            mac_table_size: mac_learning::DEFAULT_MAX_ENTRIES,
        }
    }
}

/// The rules of every table.
#[derive(Debug)]
pub struct Tables {
    tables: Vec<Classifier>,
    next_id: u64,
}

impl Default for Tables {
    fn default() -> Self {
        Tables {
            tables: (0..N_TABLES).map(|_| Classifier::default()).collect(),
            next_id: 1,
        }
    }
}

impl Tables {
    /// Table `id`, if it exists.
    pub fn table(&self, id: u8) -> Option<&Classifier> {
        self.tables.get(usize::from(id))
    }

    /// Total number of rules.
    pub fn n_rules(&self) -> usize {
        self.tables.iter().map(|t| t.len()).sum()
    }

    /// Every rule of every table, table by table, highest priority first.
    pub fn rules(&self) -> Vec<Arc<Rule>> {
        let mut v: Vec<Arc<Rule>> = Vec::new();
        for t in &self.tables {
            let mut r: Vec<Arc<Rule>> = t.iter().cloned().collect();
            r.sort_by(|a, b| b.priority().cmp(&a.priority()).then(a.id.cmp(&b.id)));
            v.extend(r);
        }
        v
    }
}

/// The ports the tables know.
#[derive(Debug, Default, Clone)]
pub struct Ports {
    by_no: HashMap<u32, PortInfo>,
    by_name: HashMap<String, u32>,
}

impl Ports {
    /// Port `no`.
    pub fn get(&self, no: u32) -> Option<&PortInfo> {
        self.by_no.get(&no)
    }

    /// Port called `name`.
    pub fn by_name(&self, name: &str) -> Option<&PortInfo> {
        self.by_name.get(name).and_then(|n| self.by_no.get(n))
    }

    /// Ports in OpenFlow number order.
    pub fn sorted(&self) -> impl Iterator<Item = &PortInfo> {
        let mut v: Vec<&PortInfo> = self.by_no.values().collect();
        v.sort_by_key(|p| p.no);
        v.into_iter()
    }

    /// Number of ports.
    pub fn len(&self) -> usize {
        self.by_no.len()
    }

    /// True when there is no port.
    pub fn is_empty(&self) -> bool {
        self.by_no.is_empty()
    }
}

impl PortNames for Ports {
    fn port_no(&self, name: &str) -> Option<u32> {
        self.by_name.get(name).copied()
    }

    fn port_name(&self, no: u32) -> Option<String> {
        self.by_no.get(&no).map(|p| p.name.clone())
    }
}

/// A flow-mod command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlowModCmd {
    /// Add (replacing a flow with the same match and priority).
    Add,
    /// Change the actions of matching flows.
    Modify {
        /// Match and priority must be identical.
        strict: bool,
    },
    /// Remove matching flows.
    Delete {
        /// Match and priority must be identical.
        strict: bool,
    },
}

/// One flow-mod: a command, the flow, and for modify/delete whether a table
/// was named (otherwise every table is concerned).
#[derive(Debug, Clone)]
pub struct FlowMod {
    /// What to do.
    pub cmd: FlowModCmd,
    /// The flow (match, priority, actions...).
    pub spec: FlowSpec,
    /// `None` = every table (modify/delete/dump without `table=`).
    pub table: Option<u8>,
}

/// A flow-mod that cannot apply; nothing was changed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{error}")]
pub struct FlowModError {
    /// Index of the offending flow-mod in the request.
    pub index: usize,
    /// Why.
    pub error: InvalidFlow,
}

/// A flow that breaks Open vSwitch's rules for actions (`ofpacts_check`)
/// or ours.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum InvalidFlow {
    /// The flow's table does not exist.
    #[error("table {0} does not exist (0..254)")]
    NoSuchTable(u8),
    /// `goto_table` is an instruction: nothing may follow it.
    #[error("goto_table must be the last action")]
    GotoNotLast,
    /// `goto_table` only moves forward.
    #[error("goto_table:{to} from table {from}: goto_table may only move to a later table (use resubmit to go back)")]
    GotoBackwards {
        /// The target.
        to: u8,
        /// The flow's table.
        from: u8,
    },
    /// An action names a table that does not exist.
    #[error("{action} to table {table}: table does not exist")]
    ActionTable {
        /// `goto_table`, `resubmit` or `ct`.
        action: &'static str,
        /// The table.
        table: u8,
    },
    /// `push_vlan` of something other than 802.1Q or 802.1ad.
    #[error("push_vlan:{0:#x}: only 0x8100 (802.1Q) and 0x88a8 (802.1ad) can be pushed")]
    BadVlanTpid(u16),
    /// Two 802.1Q pushes in one action list (the double-VLAN incident).
    #[error("the actions push two 802.1Q (0x8100) tags: a double tag overflows a 1500-byte MTU; push an 802.1ad outer tag explicitly (push_vlan:0x88a8) if QinQ is meant")]
    DoubleDot1q,
    /// `ct_mark` is set only inside `ct(exec(...))`.
    #[error("set_field to ct_mark is only allowed inside ct(exec(...))")]
    CtMarkOutsideCt,
    /// `ct(exec(...))` sets only `ct_mark`.
    #[error("ct(exec(...)) can only set ct_mark, not {}", .0.name())]
    CtExecField(Field),
    /// The field cannot be written.
    #[error("{} is read-only", .0.name())]
    ReadOnly(Field),
    /// The match does not guarantee the field exists in the packet.
    #[error("set_field to {}: the match does not guarantee its prerequisites (add e.g. ip or tcp to the match)", .0.name())]
    Prerequisites(Field),
    /// `ct` needs an IP match.
    #[error("ct requires the match to select IPv4 or IPv6 (add ip or ipv6)")]
    CtNeedsIp,
    /// A `ct` zone taken from a field must be 16 bits wide.
    #[error("ct(zone=FIELD[a..b]) needs a 16-bit slice")]
    CtZoneWidth,
    /// `move` between slices of different widths.
    #[error("move: source has {src} bits but destination has {dst}")]
    MoveWidth {
        /// Source bits.
        src: u32,
        /// Destination bits.
        dst: u32,
    },
}

/// What a batch of flow-mods changed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FlowModSummary {
    /// Flows added.
    pub added: usize,
    /// Flows modified.
    pub modified: usize,
    /// Flows deleted.
    pub deleted: usize,
}

/// One flow with its counters, as `dump-flows` shows it.
#[derive(Debug, Clone)]
pub struct FlowDump {
    /// The flow.
    pub spec: FlowSpec,
    /// Time since it was added.
    pub duration: Duration,
    /// Packets.
    pub n_packets: u64,
    /// Bytes.
    pub n_bytes: u64,
    /// Time since last used (or since added when never used).
    pub idle_age: Duration,
    /// Time since last modified.
    pub hard_age: Duration,
}

/// A filter for dump/delete: the match, and optional cookie and out_port.
#[derive(Debug, Clone, Default)]
pub struct FlowFilter {
    /// `None` = every table.
    pub table: Option<u8>,
    /// Flows whose match is within this one (non-strict).
    pub matches: Match,
    /// `cookie=V/M` (mask 0 = any cookie).
    pub cookie: u64,
    /// Cookie mask.
    pub cookie_mask: u64,
    /// Only flows that output to this port.
    pub out_port: Option<u32>,
    /// Strict: same match and this priority.
    pub strict_priority: Option<u16>,
}

impl FlowFilter {
    fn accepts(&self, r: &Rule) -> bool {
        if let Some(t) = self.table {
            if r.spec.table != t {
                return false;
            }
        }
        if (r.spec.cookie ^ self.cookie) & self.cookie_mask != 0 {
            return false;
        }
        match self.strict_priority {
            Some(p) => {
                if r.spec.priority != p || r.spec.matches != self.matches {
                    return false;
                }
            }
            None => {
                if !r.spec.matches.is_subset_of(&self.matches) {
                    return false;
                }
            }
        }
        if let Some(p) = self.out_port {
            if !outputs_to(&r.spec.actions, p) {
                return false;
            }
        }
        true
    }

    /// The filter a modify/delete/dump flow-mod describes.
    pub fn from_mod(spec: &FlowSpec, table: Option<u8>, strict: bool) -> Self {
        FlowFilter {
            table,
            matches: spec.matches,
            cookie: spec.cookie,
            cookie_mask: spec.cookie_mask,
            out_port: spec.out_port,
            strict_priority: strict.then_some(spec.priority),
        }
    }
}

fn outputs_to(actions: &[Action], port: u32) -> bool {
    actions.iter().any(|a| match a {
        Action::Output(p) => *p == port,
        Action::Ct(ct) => outputs_to(&ct.exec, port),
        _ => false,
    })
}

/// One counter for every bridge's [`Ofproto::flows_version`], so a version
/// never repeats, even across a bridge deleted and created again.
static FLOWS_VERSION: AtomicU64 = AtomicU64::new(1);

fn next_flows_version() -> u64 {
    FLOWS_VERSION.fetch_add(1, Ordering::AcqRel)
}

/// The switch's policy half.
pub struct Ofproto {
    name: String,
    epoch: Instant,
    tables: RwLock<Tables>,
    ports: RwLock<Ports>,
    pub(crate) mac: Mutex<MacTable>,
    pub(crate) recirc: Mutex<recirc::RecircTable>,
    pub(crate) config: RwLock<BridgeConfig>,
    generation: AtomicU64,
    // Set from [`FLOWS_VERSION`] by every change of the tables (flow-mods,
    // expiry), whoever made it: the state saver watches it to save what
    // OpenFlow changed, and reuses a bridge's saved flows while it stays.
    flows_version: AtomicU64,
    // Ports disabled by BPDU guard since the last `take_disabled_events`.
    bpdu_disabled: Mutex<Vec<u32>>,
    /// Automatic port numbers given and freed.
    numbers: Mutex<port_numbers::PortNumbers>,
    // Fail-open: no controller for too long in standalone mode, so the
    // bridge forwards as a learning switch whatever the tables say.
    fail_open: std::sync::atomic::AtomicBool,
}

impl core::fmt::Debug for Ofproto {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Ofproto")
            .field("name", &self.name)
            .field("rules", &self.tables.read().n_rules())
            .field("ports", &self.ports.read().len())
            .finish()
    }
}

impl Ofproto {
    /// An empty bridge called `name`. `epoch` is the time base for counters.
    pub fn new(name: &str, epoch: Instant) -> Self {
        Ofproto {
            name: name.to_string(),
            epoch,
            tables: RwLock::new(Tables::default()),
            ports: RwLock::new(Ports::default()),
            mac: Mutex::new(MacTable::default()),
            recirc: Mutex::new(recirc::RecircTable::default()),
            config: RwLock::new(BridgeConfig::default()),
            generation: AtomicU64::new(1),
            flows_version: AtomicU64::new(next_flows_version()),
            bpdu_disabled: Mutex::new(Vec::new()),
            numbers: Mutex::new(port_numbers::PortNumbers::default()),
            fail_open: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// Whether the bridge is in fail-open: it lost its controllers in
    /// `fail_mode=standalone` and forwards as a MAC-learning switch
    /// (Open vSwitch's fail-open, its hidden `NORMAL` flow) until one
    /// connects again.
    pub fn fail_open(&self) -> bool {
        self.fail_open.load(Ordering::Relaxed)
    }

    /// Enters or leaves fail-open; cached translations are revalidated.
    pub fn set_fail_open(&self, on: bool) {
        if self.fail_open.swap(on, Ordering::Relaxed) != on {
            self.bump_generation();
        }
    }

    /// Bridge name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Changes whenever the flow tables change (not on MAC learning); no
    /// two bridges ever have the same value.
    pub fn flows_version(&self) -> u64 {
        self.flows_version.load(Ordering::Acquire)
    }

    /// The current generation: changes whenever a translation may change.
    #[inline]
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Marks every cached translation stale.
    pub fn bump_generation(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
    }

    /// Bridge settings.
    pub fn config(&self) -> BridgeConfig {
        self.config.read().clone()
    }

    /// Replaces the bridge settings.
    pub fn set_config(&self, c: BridgeConfig) {
        {
            let mut m = self.mac.lock();
            m.aging = Duration::from_secs(c.mac_aging_secs);
            m.set_max_entries(c.mac_table_size);
        }
        *self.config.write() = c;
        self.bump_generation();
    }

    // ---- ports ----

    /// A snapshot of the ports.
    pub fn ports(&self) -> Ports {
        self.ports.read().clone()
    }

    /// Runs `f` with the ports (no copy).
    pub fn with_ports<R>(&self, f: impl FnOnce(&Ports) -> R) -> R {
        f(&self.ports.read())
    }

    /// A free OpenFlow port number for a port that asks for none, given as
    /// Open vSwitch gives it (see [`port_numbers`]); `ofp_port::MAX` when
    /// none is free.
    pub fn free_port_no(&self) -> u32 {
        let ports = self.ports.read();
        self.numbers
            .lock()
            .next(|n| ports.by_no.contains_key(&n), Instant::now())
            .unwrap_or(ofp_port::MAX)
    }

    /// Adds (or replaces) a port.
    pub fn add_port(&self, info: PortInfo) {
        let mut ports = self.ports.write();
        if let Some(old) = ports.by_no.insert(info.no, info.clone()) {
            ports.by_name.remove(&old.name);
        }
        ports.by_name.insert(info.name.clone(), info.no);
        drop(ports);
        self.bump_generation();
    }

    /// Changes a port's policy with `f`.
    pub fn update_port(&self, no: u32, f: impl FnOnce(&mut PortInfo)) -> bool {
        let mut ports = self.ports.write();
        let Some(p) = ports.by_no.get_mut(&no) else {
            return false;
        };
        f(p);
        drop(ports);
        self.bump_generation();
        true
    }

    /// Records whether port `no`'s link is up (the datapath, on change
    /// only: an unchanged state costs a read lock). False when there is no
    /// such port.
    pub fn set_port_link(&self, no: u32, up: bool) -> bool {
        match self.ports.read().by_no.get(&no) {
            None => return false,
            Some(p) if p.link_up == Some(up) => return true,
            Some(_) => {}
        }
        match self.ports.write().by_no.get_mut(&no) {
            Some(p) => {
                p.link_up = Some(up);
                true
            }
            None => false,
        }
    }

    /// Records how port `no`'s device spreads its frames over its queues
    /// (the datapath, as `set_port_link`: a write only on change).
    pub fn set_port_steering(&self, no: u32, steering: Option<&'static str>) {
        match self.ports.read().by_no.get(&no) {
            Some(p) if p.steering != steering => {}
            _ => return,
        }
        if let Some(p) = self.ports.write().by_no.get_mut(&no) {
            p.steering = steering;
        }
    }

    /// Records how port `no`'s egress sizes frames, as the datapath found
    /// it on the port: the MTU it enforces, the tunnel overhead (configured
    /// options included) and whether short frames are padded. Translation
    /// never reads these, so the generation stays and cached flows remain
    /// valid; `trace` reads them to report what the datapath enforces.
    /// False when there is no such port.
    pub fn set_port_egress(
        &self,
        no: u32,
        mtu: u32,
        tunnel_overhead: Option<u32>,
        pads_short_frames: bool,
    ) -> bool {
        let same = |p: &PortInfo| {
            (p.mtu, p.tunnel_overhead, p.pads_short_frames)
                == (mtu, tunnel_overhead, pads_short_frames)
        };
        match self.ports.read().by_no.get(&no) {
            None => return false,
            Some(p) if same(p) => return true,
            Some(_) => {}
        }
        let mut ports = self.ports.write();
        let Some(p) = ports.by_no.get_mut(&no) else {
            return false;
        };
        p.mtu = mtu;
        p.tunnel_overhead = tunnel_overhead;
        p.pads_short_frames = pads_short_frames;
        true
    }

    /// Removes a port and what was learned on it.
    pub fn del_port(&self, no: u32) -> Option<PortInfo> {
        let mut ports = self.ports.write();
        let p = ports.by_no.remove(&no)?;
        ports.by_name.remove(&p.name);
        drop(ports);
        self.numbers.lock().freed(no, Instant::now());
        self.mac.lock().flush_port(no);
        self.bump_generation();
        Some(p)
    }

    pub(crate) fn disable_port_for_bpdu(&self, no: u32) {
        // Translation holds the ports read lock, so it cannot disable the
        // port itself: it records the event and the control thread applies
        // it (`apply_bpdu_guard`).
        self.bpdu_disabled.lock().push(no);
    }

    /// Applies pending BPDU-guard events (disables the ports); returns the
    /// names of the ports disabled. Called by the control thread.
    pub fn apply_bpdu_guard(&self) -> Vec<String> {
        let pending: Vec<u32> = core::mem::take(&mut *self.bpdu_disabled.lock());
        let mut names = Vec::new();
        for no in pending {
            let mut ports = self.ports.write();
            if let Some(p) = ports.by_no.get_mut(&no) {
                if p.enabled {
                    p.enabled = false;
                    names.push(p.name.clone());
                }
            }
        }
        if !names.is_empty() {
            self.bump_generation();
        }
        names
    }

    // ---- flows ----

    /// Checks a flow against Open vSwitch's rules for actions (prerequisites
    /// and consistency), before anything is changed.
    pub fn validate(spec: &FlowSpec) -> Result<(), InvalidFlow> {
        if usize::from(spec.table) >= N_TABLES {
            return Err(InvalidFlow::NoSuchTable(spec.table));
        }
        validate_actions(&spec.actions, &spec.matches, spec.table, false)
    }

    /// Applies flow-mods atomically: all of them or, on the first error,
    /// none.
    pub fn flow_mods(
        &self,
        mods: &[FlowMod],
        now: Instant,
    ) -> Result<FlowModSummary, FlowModError> {
        for (i, m) in mods.iter().enumerate() {
            if matches!(m.cmd, FlowModCmd::Add | FlowModCmd::Modify { .. }) {
                Self::validate(&m.spec).map_err(|error| FlowModError { index: i, error })?;
            }
        }
        let mut tables = self.tables.write();
        // Apply to a copy-on-write view: classifier operations cannot fail
        // once validated, so applying in order is atomic under the lock.
        let mut sum = FlowModSummary::default();
        for m in mods {
            match m.cmd {
                FlowModCmd::Add => {
                    let id = tables.next_id;
                    tables.next_id += 1;
                    let spec = m.spec.clone();
                    let t = usize::from(spec.table);
                    let rule = Arc::new(Rule {
                        id,
                        spec,
                        created: now,
                        modified: now,
                        stats: Arc::new(RuleStats::new(self.epoch)),
                    });
                    if let Some(cls) = tables.tables.get_mut(t) {
                        cls.insert(rule);
                    }
                    sum.added += 1;
                }
                FlowModCmd::Modify { strict } => {
                    let f = FlowFilter::from_mod(&m.spec, m.table, strict);
                    let targets = Self::select(&tables, &f);
                    for old in targets {
                        let mut spec = old.spec.clone();
                        spec.actions = m.spec.actions.clone();
                        let stats = Arc::new(RuleStats::new(self.epoch));
                        if !m.spec.flags.reset_counts {
                            stats.copy_from(&old.stats);
                        }
                        let t = usize::from(spec.table);
                        let rule = Arc::new(Rule {
                            id: old.id,
                            spec,
                            created: old.created,
                            modified: now,
                            stats,
                        });
                        if let Some(cls) = tables.tables.get_mut(t) {
                            cls.insert(rule);
                        }
                        sum.modified += 1;
                    }
                }
                FlowModCmd::Delete { strict } => {
                    let f = FlowFilter::from_mod(&m.spec, m.table, strict);
                    let targets = Self::select(&tables, &f);
                    for old in targets {
                        let t = usize::from(old.spec.table);
                        if let Some(cls) = tables.tables.get_mut(t) {
                            cls.remove(&old.spec.matches, old.spec.priority);
                        }
                        sum.deleted += 1;
                    }
                }
            }
        }
        drop(tables);
        if sum != FlowModSummary::default() {
            self.flows_version
                .store(next_flows_version(), Ordering::Release);
            self.bump_generation();
        }
        Ok(sum)
    }

    fn select(tables: &Tables, f: &FlowFilter) -> Vec<Arc<Rule>> {
        let range: Vec<usize> = match f.table {
            Some(t) => vec![usize::from(t)],
            None => (0..N_TABLES).collect(),
        };
        let mut out = Vec::new();
        for t in range {
            if let Some(cls) = tables.tables.get(t) {
                if let Some(p) = f.strict_priority {
                    if let Some(r) = cls.find_exact(&f.matches, p) {
                        if f.accepts(r) {
                            out.push(r.clone());
                        }
                    }
                } else {
                    out.extend(cls.iter().filter(|r| f.accepts(r)).cloned());
                }
            }
        }
        out
    }

    /// Flows selected by `filter`, with counters, in table then priority
    /// order.
    pub fn dump_flows(&self, filter: &FlowFilter, now: Instant) -> Vec<FlowDump> {
        let tables = self.tables.read();
        let mut rules = Self::select(&tables, filter);
        rules.sort_by(|a, b| {
            a.spec
                .table
                .cmp(&b.spec.table)
                .then(b.spec.priority.cmp(&a.spec.priority))
                .then(a.id.cmp(&b.id))
        });
        rules
            .into_iter()
            .map(|r| {
                let used = r.stats.used().unwrap_or(r.created).max(r.created);
                FlowDump {
                    duration: now.saturating_duration_since(r.created),
                    n_packets: r.stats.packets(),
                    n_bytes: r.stats.bytes(),
                    idle_age: now.saturating_duration_since(used),
                    hard_age: now.saturating_duration_since(r.modified),
                    spec: r.spec.clone(),
                }
            })
            .collect()
    }

    /// Flows in each table (index: table id), for OpenFlow's table stats.
    pub fn table_counts(&self) -> Vec<u32> {
        let tables = self.tables.read();
        (0..N_TABLES)
            .map(|t| tables.table(t as u8).map_or(0, |c| c.len() as u32))
            .collect()
    }

    /// Total number of flows.
    pub fn n_flows(&self) -> usize {
        self.tables.read().n_rules()
    }

    /// Removes flows whose idle or hard timeout passed; returns how many.
    pub fn expire(&self, now: Instant) -> usize {
        let expired: Vec<Arc<Rule>> = {
            let tables = self.tables.read();
            tables
                .tables
                .iter()
                .filter(|t| t.has_timeouts())
                .flat_map(|t| t.iter())
                .filter(|r| r.expires_at().is_some_and(|e| e <= now))
                .cloned()
                .collect()
        };
        if expired.is_empty() {
            return 0;
        }
        let mut tables = self.tables.write();
        for r in &expired {
            if let Some(cls) = tables.tables.get_mut(usize::from(r.spec.table)) {
                // Only remove the very rule that expired (a replacement with
                // the same match may have been added meanwhile).
                if cls
                    .find_exact(&r.spec.matches, r.spec.priority)
                    .is_some_and(|x| x.id == r.id)
                {
                    cls.remove(&r.spec.matches, r.spec.priority);
                }
            }
        }
        drop(tables);
        self.flows_version
            .store(next_flows_version(), Ordering::Release);
        self.bump_generation();
        expired.len()
    }

    /// Ages the MAC table; returns how many entries went.
    pub fn expire_macs(&self, now: Instant) -> usize {
        let n = self.mac.lock().expire(now);
        if n > 0 {
            self.bump_generation();
        }
        n
    }

    /// The learned MAC table.
    pub fn fdb(&self, now: Instant) -> Vec<FdbEntry> {
        self.mac.lock().dump(now)
    }

    /// Forgets learned MACs.
    pub fn flush_fdb(&self) {
        self.mac.lock().flush();
        self.bump_generation();
    }

    /// Translates `key` (see [`xlate`]).
    pub fn translate(&self, key: &FlowKey, now: Instant) -> Translation {
        let tables = self.tables.read();
        let ports = self.ports.read();
        xlate::Xlate::new(self, &tables, &ports, key, now, None).run()
    }

    /// Translates `key` again for the datapath's periodic refresh of a
    /// cached megaflow (`key` is a packet seen earlier): MAC learning is
    /// refreshed as by [`Ofproto::translate`], but what only an arriving
    /// packet may trigger does not happen (BPDU guard: the remembered BPDU
    /// may predate the guard).
    pub fn translate_refresh(&self, key: &FlowKey, now: Instant) -> Translation {
        let tables = self.tables.read();
        let ports = self.ports.read();
        let mut x = xlate::Xlate::new(self, &tables, &ports, key, now, None);
        x.may_disable = false;
        x.run()
    }

    /// Translates a packet-out: `actions` run on the packet `key`
    /// describes (its `in_port` may be CONTROLLER or NONE); `output:TABLE`
    /// sends it through the tables. Nothing is learned from it.
    pub fn translate_packet_out(
        &self,
        key: &FlowKey,
        actions: &[Action],
        now: Instant,
    ) -> Translation {
        let tables = self.tables.read();
        let ports = self.ports.read();
        let mut x = xlate::Xlate::new(self, &tables, &ports, key, now, None);
        x.may_disable = false;
        x.run_packet_out(actions)
    }

    /// Translates `key`, recording every step in `trace`.
    pub fn translate_traced(&self, key: &FlowKey, now: Instant, trace: &mut Trace) -> Translation {
        let tables = self.tables.read();
        let ports = self.ports.read();
        xlate::Xlate::new(self, &tables, &ports, key, now, Some(trace)).run()
    }
}

fn match_has_ip(m: &Match) -> bool {
    let (t, mask) = m.get(Field::DlType);
    mask == 0xffff && (t == 0x0800 || t == 0x86dd)
}

/// Action consistency rules (Open vSwitch's `ofpacts_check` for what we
/// support, plus ours: no two 802.1Q pushes in one list).
fn validate_actions(
    actions: &[Action],
    m: &Match,
    table: u8,
    in_ct_exec: bool,
) -> Result<(), InvalidFlow> {
    let mut dot1q_pushes = 0;
    let mut goto_seen = false;
    for a in actions {
        if goto_seen && !matches!(a, Action::GotoTable(_)) {
            return Err(InvalidFlow::GotoNotLast);
        }
        match a {
            Action::GotoTable(t) => {
                if *t <= table {
                    return Err(InvalidFlow::GotoBackwards {
                        to: *t,
                        from: table,
                    });
                }
                if usize::from(*t) >= N_TABLES {
                    return Err(InvalidFlow::ActionTable {
                        action: "goto_table",
                        table: *t,
                    });
                }
                goto_seen = true;
            }
            Action::Resubmit { table: Some(t), .. } if usize::from(*t) >= N_TABLES => {
                return Err(InvalidFlow::ActionTable {
                    action: "resubmit",
                    table: *t,
                });
            }
            Action::PushVlan(tpid) => {
                if *tpid != 0x8100 && *tpid != 0x88a8 {
                    return Err(InvalidFlow::BadVlanTpid(*tpid));
                }
                if *tpid == 0x8100 {
                    dot1q_pushes += 1;
                    if dot1q_pushes > 1 {
                        return Err(InvalidFlow::DoubleDot1q);
                    }
                }
            }
            Action::SetField { field, .. } => {
                if *field == Field::CtMark && !in_ct_exec {
                    return Err(InvalidFlow::CtMarkOutsideCt);
                }
                if in_ct_exec && *field != Field::CtMark {
                    return Err(InvalidFlow::CtExecField(*field));
                }
                if matches!(
                    field,
                    Field::CtState | Field::CtZone | Field::NwFrag | Field::TcpFlags
                ) {
                    return Err(InvalidFlow::ReadOnly(*field));
                }
                if *field != Field::CtMark && !prereq_match_ok(*field, m) {
                    return Err(InvalidFlow::Prerequisites(*field));
                }
            }
            Action::Ct(ct) => {
                if !match_has_ip(m) {
                    return Err(InvalidFlow::CtNeedsIp);
                }
                if let Some(t) = ct.table {
                    if usize::from(t) >= N_TABLES {
                        return Err(InvalidFlow::ActionTable {
                            action: "ct",
                            table: t,
                        });
                    }
                }
                if let CtZone::Field(s) = ct.zone {
                    if s.n_bits != 16 {
                        return Err(InvalidFlow::CtZoneWidth);
                    }
                }
                validate_actions(&ct.exec, m, table, true)?;
            }
            Action::Move { src, dst } => {
                if src.n_bits != dst.n_bits {
                    return Err(InvalidFlow::MoveWidth {
                        src: src.n_bits,
                        dst: dst.n_bits,
                    });
                }
                if matches!(
                    dst.field,
                    Field::CtState
                        | Field::CtZone
                        | Field::CtMark
                        | Field::NwFrag
                        | Field::TcpFlags
                ) {
                    return Err(InvalidFlow::ReadOnly(dst.field));
                }
            }
            _ => {}
        }
    }
    Ok(())
}

fn prereq_match_ok(field: Field, m: &Match) -> bool {
    let mut wc = crate::flow::FlowMask::default();
    xlate::prereqs_ok(field, &m.key, &mut wc) && {
        // Every bit the check read must be pinned by the match.
        (0..crate::flow::key::WORDS).all(|i| wc.w[i] & !m.mask.w[i] == 0)
    }
}

#[cfg(test)]
mod tests;
