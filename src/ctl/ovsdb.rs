//! The OVSDB front end: vswitchd as the switch behind a real
//! `ovsdb-server`, the way `ovs-vswitchd` is, so `ovs-vsctl`, os-vif,
//! libvirt and `ovn-controller` configure it unchanged.
//!
//! It owns one thread that keeps a session with the server (through
//! [`crate::ovsdb`]), a replica of the monitored tables, and what it has
//! applied. After every change of the replica it *reconciles*: it reads
//! the wanted bridges and ports out of the rows ([`plan`]), compares them
//! with what it applied before, and calls the switch API only for the
//! difference ([`Reconciler`]): an unchanged row causes no call. Then it
//! writes back what the switch did ([`Writer`]): `Interface.ofport`,
//! `error`, `link_state`..., `Open_vSwitch.cur_cfg = next_cfg` (that is what
//! `ovs-vsctl` without `--no-wait` waits for), each Controller's
//! `is_connected`, `role` and `status` (`state`, `last_error`,
//! `sec_since_connect`, `sec_since_disconnect`, as Open vSwitch writes
//! them), and every 5 s the statistics. A column is written only when its
//! value differs from the database's, so the switch never causes a storm
//! of transactions; the Controller seconds, which change every second, are
//! refreshed only with the statistics (as Open vSwitch refreshes them),
//! while any other change of a controller's status is written at once.
//!
//! Like ovs-vswitchd it takes the database's `ovs_vswitchd` lock and
//! configures nothing while another switch holds it (an ovs-vswitchd left
//! running would otherwise fight it over every port).
//!
//! A bad row never stops the rest: an interface of an unknown type or with
//! a bad option gets `error` and `ofport = -1`, as Open vSwitch does, and
//! every other port is configured. OpenFlow numbers are given as
//! ovs-vswitchd gives them: the interfaces asking for one (`ofport_request`)
//! first; one that an automatically numbered port holds is taken from it;
//! one that another port asking for it holds leaves the asking port on a
//! free number until it is free. Losing the
//! session keeps the switch forwarding with the last configuration; the
//! thread reconnects with a backoff of 1 s doubling to 8 s, and the first
//! replica after a reconnect is reconciled like any other (rows unchanged
//! meanwhile cause no call).
//!
//! Honoured columns: `Open_vSwitch.bridges`, `next_cfg`,
//! `other_config:stats-update-interval`; `Bridge.name`,
//! `ports`, `fail_mode`, `controller`, `protocols` (the OpenFlow versions
//! of its controllers and of its `BR.mgmt` listener),
//! `other_config:forward-bpdu`, `mac-aging-time`, `mac-table-size` and
//! `datapath-id` (a bad one is ignored with a warning; the id in force is
//! written to `Bridge.datapath_id`); `Port.name`, `interfaces`, `tag`,
//! `trunks`, `vlan_mode`; `Interface.name`, `type`, `options`,
//! `mtu_request`, `ofport_request`; `Controller.target`,
//! `inactivity_probe`, `max_backoff` (read in whole seconds with Open
//! vSwitch's floors, see [`ControllerConfig::from_columns`]) and
//! `connection_mode` (accepted; connections are always out of band, see
//! [`ConnectionMode`]). Read and ignored: `Bridge.datapath_type` (every
//! bridge is the one userspace datapath).
//! A bridge's own internal interface (named as the bridge) is reported as
//! Open vSwitch's LOCAL port (`ofport` 65534), but vswitch creates no
//! device for it.

use super::api::{Api, BridgeSettings, PortFacts, PortSpec};
use super::openflow::{ConnectionMode, ControllerConfig, ControllerStatus, FailMode, Target};
use crate::flow::PortNames;
use crate::ofproto::{BridgeConfig, PortKind, VlanMode};
use crate::openflow::wire::hello::Versions;
use crate::openflow::wire::Version as OfVersion;
use crate::ovsdb::{
    self, Atom, Client, Datum, Format, MonitorMethod, Remote, Replica, Row, Schema,
};
use crate::port::LinkState;
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The database vswitchd serves.
pub const DB: &str = "Open_vSwitch";
/// The `ofport` Open vSwitch gives a bridge's own (LOCAL) interface.
pub const LOCAL_OFPORT: i64 = 65534;
/// How long a request may wait for its reply.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// How often state columns (`link_state`, `admin_state`...) are compared.
const STATE_TICK: Duration = Duration::from_secs(1);
/// How often `Interface.statistics` is written (as Open vSwitch's default
/// `other_config:stats-update-interval`).
const STATS_INTERVAL: Duration = Duration::from_secs(5);
/// Reconnection backoff: first and longest wait.
const BACKOFF_MIN: Duration = Duration::from_secs(1);
const BACKOFF_MAX: Duration = Duration::from_secs(8);
const MONITOR_ID: &str = "vswitchd";
/// The lock ovs-vswitchd holds while it configures from the database.
const LOCK: &str = "ovs_vswitchd";

/// The interface types vswitchd writes to `Open_vSwitch.iface_types`.
pub const IFACE_TYPES: [&str; 5] = ["dummy", "geneve", "internal", "system", "tap"];

/// Why the front end cannot go on with a session.
#[derive(Debug, thiserror::Error)]
pub enum OvsdbError {
    /// The session with the server failed.
    #[error(transparent)]
    Session(#[from] ovsdb::Error),
    /// The database lacks a table vswitchd needs.
    #[error("database {DB} has no {0} table: not an Open vSwitch configuration database")]
    Schema(&'static str),
    /// The front end's thread could not start.
    #[error("starting the OVSDB thread: {0}")]
    Thread(#[source] std::io::Error),
}

/// A Controller row as the database has it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControllerRow {
    /// `target`.
    pub target: String,
    /// `inactivity_probe` (milliseconds), when set.
    pub inactivity_probe: Option<i64>,
    /// `max_backoff` (milliseconds), when set.
    pub max_backoff: Option<i64>,
    /// `connection_mode` (empty when unset).
    pub connection_mode: String,
}

impl ControllerRow {
    /// The connection it asks for; None (and logged by the caller) for a
    /// target that does not parse.
    pub fn config(&self) -> Result<ControllerConfig, super::openflow::TargetError> {
        let target: Target = self.target.parse()?;
        let mode = ConnectionMode::parse(&self.connection_mode).unwrap_or_else(|| {
            tracing::warn!(controller = %self.target, "connection_mode={}: unknown; connecting out of band", self.connection_mode);
            ConnectionMode::OutOfBand
        });
        if self.inactivity_probe.is_some_and(|ms| ms != 0 && ms < 1000) {
            tracing::warn!(controller = %self.target, "inactivity_probe={} ms is under a second: probed every 5 s (the floor), counted as 1 s in the fail-open delay (as Open vSwitch 3.1 reads it; only 0 turns probing off)", self.inactivity_probe.unwrap_or(0));
        }
        Ok(ControllerConfig::from_columns(
            target,
            self.inactivity_probe,
            self.max_backoff,
            mode,
        ))
    }
}

/// The OpenFlow versions a `Bridge.protocols` set names (`OpenFlow10`,
/// `OpenFlow13`...), as the versions this switch speaks; empty: all of
/// them. The second value lists the names it does not speak (1.1, 1.2,
/// or unknown), for the log.
pub fn protocols(names: &[String]) -> (Versions, Vec<String>) {
    if names.is_empty() {
        return (Versions::default(), Vec::new());
    }
    let mut v = Vec::new();
    let mut unspoken = Vec::new();
    for n in names {
        match n.as_str() {
            "OpenFlow10" => v.push(OfVersion::V10),
            "OpenFlow13" => v.push(OfVersion::V13),
            "OpenFlow14" => v.push(OfVersion::V14),
            "OpenFlow15" => v.push(OfVersion::V15),
            other => unspoken.push(other.to_string()),
        }
    }
    (Versions::of(&v), unspoken)
}

/// A bridge as the database wants it.
#[derive(Debug, Clone, PartialEq)]
pub struct WantBridge {
    /// `fail_mode` (empty: standalone).
    pub fail_mode: FailMode,
    /// `other_config:forward-bpdu`.
    pub forward_bpdu: bool,
    /// `other_config:mac-aging-time`.
    pub mac_aging_secs: u64,
    /// `other_config:mac-table-size`.
    pub mac_table_size: usize,
    /// Controller rows, in the order of their UUIDs.
    pub controllers: Vec<ControllerRow>,
    /// `protocols`, as written.
    pub protocols: Vec<String>,
    /// `other_config:datapath-id`, as written.
    pub datapath_id: Option<String>,
    /// Ports by (interface) name.
    pub ports: BTreeMap<String, PortSpec>,
}

impl WantBridge {
    fn new() -> WantBridge {
        WantBridge {
            fail_mode: FailMode::Standalone,
            forward_bpdu: false,
            mac_aging_secs: BridgeConfig::default().mac_aging_secs,
            mac_table_size: BridgeConfig::default().mac_table_size,
            controllers: Vec::new(),
            protocols: Vec::new(),
            datapath_id: None,
            ports: BTreeMap::new(),
        }
    }
}

/// Parses `other_config:datapath-id` as ovs-vswitchd does: exactly 16 hex
/// digits, or `0x` and up to 16; never all zeros.
pub fn parse_datapath_id(s: &str) -> Option<u64> {
    let hex = |h: &str| !h.is_empty() && h.bytes().all(|b| b.is_ascii_hexdigit());
    let digits = match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(h) if h.len() <= 16 && hex(h) => h,
        Some(_) => return None,
        None if s.len() == 16 && hex(s) => s,
        None => return None,
    };
    u64::from_str_radix(digits, 16).ok().filter(|d| *d != 0)
}

/// What became of one Interface row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IfaceState {
    /// A port of the switch.
    Port {
        /// Its bridge.
        bridge: String,
        /// Its name.
        port: String,
    },
    /// The bridge's own interface (Open vSwitch's LOCAL port).
    Local,
    /// Refused, with the reason written to `Interface.error`.
    Error(String),
}

/// What the rows ask for.
#[derive(Debug, Clone, Default)]
pub struct Plan {
    /// Bridges by name.
    pub bridges: BTreeMap<String, WantBridge>,
    /// Every Interface row reached from a bridge, by UUID.
    pub ifaces: BTreeMap<String, IfaceState>,
    /// Each bridge's Controller rows, in the order of `controllers`.
    pub controller_rows: BTreeMap<String, Vec<String>>,
    /// Each bridge's row UUID.
    pub bridge_rows: BTreeMap<String, String>,
    /// `Open_vSwitch.next_cfg`, and the row's UUID.
    pub next_cfg: Option<(String, i64)>,
}

/// Why a row cannot become a port; its text is what `Interface.error`
/// says.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RowError {
    /// `type` names an interface type vswitch does not have.
    #[error("unsupported interface type '{0}' (vswitch supports: \"\", dummy, geneve, internal, system, tap)")]
    UnsupportedType(String),
    /// `mtu_request` out of range.
    #[error("mtu_request={0}: expected 68..65535")]
    MtuRequest(i64),
    /// `ofport_request` out of range.
    #[error("ofport_request={0}: port numbers are 1..65279")]
    OfportRequest(i64),
    /// `tag` or `trunks` holds something that is not a VLAN id.
    #[error("port {column}={value}: a VLAN id is 0..4095")]
    Vlan {
        /// `tag` or `trunks`.
        column: &'static str,
        /// The value.
        value: i64,
    },
    /// `vlan_mode` names a mode vswitch does not have (`dot1q-tunnel`).
    #[error("unsupported vlan_mode '{0}' (access, trunk, native-tagged, native-untagged)")]
    VlanMode(String),
    /// A port with several interfaces.
    #[error("port {0}: bonds (several interfaces in one port) are not supported")]
    Bond(String),
    /// Two interfaces of one bridge with one name.
    #[error("another interface named {name} is on bridge {bridge}")]
    Duplicate {
        /// The name.
        name: String,
        /// The bridge.
        bridge: String,
    },
}

/// Reads one Port row with its single Interface into a [`PortSpec`].
fn read_port(port: &Row, iface: &Row) -> Result<PortSpec, RowError> {
    let name = iface.str("name");
    let ty = iface.str("type");
    let kind = PortKind::parse(ty).ok_or_else(|| RowError::UnsupportedType(ty.to_string()))?;
    let mut spec = PortSpec::new(name, kind);
    spec.type_options = iface.str_map("options").into_iter().collect();
    if let Some(m) = iface.int("mtu_request") {
        let mtu = u32::try_from(m)
            .ok()
            .filter(|m| (68..=65535).contains(m))
            .ok_or(RowError::MtuRequest(m))?;
        match kind {
            // The TAP sets its device's MTU itself.
            PortKind::Tap | PortKind::Internal => spec
                .type_options
                .push(("mtu_request".to_string(), mtu.to_string())),
            _ => spec.settings.mtu = Some(mtu),
        }
    }
    if let Some(n) = iface.int("ofport_request") {
        let no = u32::try_from(n)
            .ok()
            .filter(|n| (1..crate::flow::ofp_port::MAX).contains(n))
            .ok_or(RowError::OfportRequest(n))?;
        spec.ofport = Some(no);
    }
    let vid = |column: &'static str, value: i64| {
        u16::try_from(value)
            .ok()
            .filter(|v| *v <= 4095)
            .ok_or(RowError::Vlan { column, value })
    };
    spec.settings.tag = Some(port.int("tag").map(|t| vid("tag", t)).transpose()?);
    let mut trunks = Vec::new();
    for a in port.get("trunks").atoms() {
        trunks.push(vid("trunks", a.as_int().unwrap_or(-1))?);
    }
    spec.settings.trunks = Some(trunks);
    spec.settings.vlan_mode = Some(match port.str("vlan_mode") {
        "" => None,
        m => Some(VlanMode::parse(m).ok_or_else(|| RowError::VlanMode(m.to_string()))?),
    });
    Ok(spec)
}

/// Reads what the replica asks for.
pub fn plan(r: &Replica) -> Plan {
    let mut p = Plan::default();
    let Some((ovs_uuid, ovs)) = r.table("Open_vSwitch").next() else {
        return p;
    };
    p.next_cfg = Some((ovs_uuid.clone(), ovs.int("next_cfg").unwrap_or(0)));
    for bu in ovs.uuids("bridges") {
        let Some(b) = r.row("Bridge", &bu) else {
            continue;
        };
        let bname = b.str("name").to_string();
        let mut want = WantBridge::new();
        want.fail_mode = FailMode::parse(b.str("fail_mode")).unwrap_or(FailMode::Standalone);
        let oc = b.str_map("other_config");
        want.datapath_id = oc.get("datapath-id").cloned();
        want.protocols = b
            .get("protocols")
            .atoms()
            .iter()
            .filter_map(|a| a.as_str().map(str::to_string))
            .collect();
        if let Some(v) = oc.get("forward-bpdu") {
            want.forward_bpdu = v == "true";
        }
        if let Some(n) = oc.get("mac-aging-time").and_then(|v| v.parse().ok()) {
            want.mac_aging_secs = n;
        }
        // As ovs-vswitchd: at least 10 entries, at most a million.
        if let Some(n) = oc
            .get("mac-table-size")
            .and_then(|v| v.parse::<usize>().ok())
        {
            want.mac_table_size = n.clamp(10, 1_000_000);
        }
        let mut ctl_rows = Vec::new();
        for cu in b.uuids("controller") {
            if let Some(c) = r.row("Controller", &cu) {
                want.controllers.push(ControllerRow {
                    target: c.str("target").to_string(),
                    inactivity_probe: c.int("inactivity_probe"),
                    max_backoff: c.int("max_backoff"),
                    connection_mode: c.str("connection_mode").to_string(),
                });
                ctl_rows.push(cu);
            }
        }
        for pu in b.uuids("ports") {
            let Some(port) = r.row("Port", &pu) else {
                continue;
            };
            let ifaces = port.uuids("interfaces");
            if ifaces.len() > 1 {
                for iu in ifaces {
                    p.ifaces.insert(
                        iu,
                        IfaceState::Error(RowError::Bond(port.str("name").to_string()).to_string()),
                    );
                }
                continue;
            }
            let Some(iu) = ifaces.into_iter().next() else {
                continue;
            };
            let Some(iface) = r.row("Interface", &iu) else {
                continue;
            };
            if iface.str("name") == bname {
                p.ifaces.insert(iu, IfaceState::Local);
                continue;
            }
            let state = match read_port(port, iface) {
                Ok(spec) => {
                    let st = IfaceState::Port {
                        bridge: bname.clone(),
                        port: spec.name.clone(),
                    };
                    if want.ports.contains_key(&spec.name) {
                        IfaceState::Error(
                            RowError::Duplicate {
                                name: spec.name.clone(),
                                bridge: bname.clone(),
                            }
                            .to_string(),
                        )
                    } else {
                        want.ports.insert(spec.name.clone(), spec);
                        st
                    }
                }
                Err(e) => IfaceState::Error(e.to_string()),
            };
            p.ifaces.insert(iu, state);
        }
        if p.bridges.contains_key(&bname) {
            tracing::warn!(bridge = %bname, "two Bridge rows with one name: the second is ignored");
            continue;
        }
        p.controller_rows.insert(bname.clone(), ctl_rows);
        p.bridge_rows.insert(bname.clone(), bu.clone());
        p.bridges.insert(bname, want);
    }
    p
}

/// Two specs open the same device the same way (otherwise the port is
/// detached and attached again).
fn same_device(a: &PortSpec, b: &PortSpec) -> bool {
    a.kind == b.kind
        && a.ofport == b.ofport
        && a.type_options == b.type_options
        && a.settings.mtu == b.settings.mtu
}

/// What the switch was told so far, and the difference to a new plan.
#[derive(Debug, Default)]
pub struct Reconciler {
    applied: BTreeMap<String, WantBridge>,
    /// Ports refused by the switch, with the reason (logged once).
    refused: BTreeMap<(String, String), String>,
    /// Bridges refused by the switch, with the reason.
    bridge_errors: BTreeMap<String, String>,
    /// Ports that ask for an OpenFlow number another port asking for it
    /// holds: they hold a free one meanwhile.
    unmet: BTreeSet<(String, String)>,
    /// Calls made into the switch API, for tests and the log.
    pub calls: u64,
}

impl Reconciler {
    /// A reconciler that has applied nothing.
    pub fn new() -> Reconciler {
        Reconciler::default()
    }

    /// Applies the difference between `plan` and what was applied, and
    /// records in `plan.ifaces` the ports the switch refused.
    pub fn reconcile(&mut self, api: &Api, plan: &mut Plan) {
        // Deletions first, everywhere: a port moving between bridges, or a
        // bridge re-created, frees its name before it is used again.
        let gone: Vec<String> = self
            .applied
            .keys()
            .filter(|b| !plan.bridges.contains_key(*b))
            .cloned()
            .collect();
        for b in gone {
            self.calls += 1;
            if let Err(e) = api.del_br(&b) {
                tracing::warn!(bridge = %b, "deleting bridge: {e}");
            }
            self.applied.remove(&b);
        }
        for (bname, want) in &plan.bridges {
            // Worked on out of `applied`, beside `self`'s other records.
            let Some(mut have) = self.applied.remove(bname) else {
                continue;
            };
            // Ports gone from the rows, or whose device changed: detached
            // (those still wanted come back in `bridge`).
            let device_changed = |w: &PortSpec, spec: &PortSpec| {
                let mut asked = spec.clone();
                asked.ofport = w.ofport;
                !same_device(w, &asked)
            };
            let stale: Vec<String> = have
                .ports
                .iter()
                .filter(|(n, spec)| want.ports.get(*n).is_none_or(|w| device_changed(w, spec)))
                .map(|(n, _)| n.clone())
                .collect();
            self.detach(api, bname, &mut have, stale);
            // Then the numbers, as ovs-vswitchd renumbers: a port that no
            // longer asks for one keeps the one it has; a port asking for a
            // number goes to it when it is free or held by a port numbered
            // automatically (which then moves), and keeps the one it has
            // while another port asking for the same number holds it (a
            // conflict in the rows that no renumbering resolves).
            let mut moving = Vec::new();
            for (n, spec) in have.ports.iter_mut() {
                let Some(w) = want.ports.get(n) else { continue };
                let key = (bname.clone(), n.clone());
                let Some(o) = w.ofport else {
                    spec.ofport = None;
                    self.unmet.remove(&key);
                    continue;
                };
                if spec.ofport == Some(o) && !self.unmet.contains(&key) {
                    continue;
                }
                spec.ofport = Some(o);
                match holder(api, bname, o) {
                    Some(h) if h == *n => {
                        self.unmet.remove(&key);
                    }
                    Some(h)
                        if !self.unmet.contains(&(bname.clone(), h.clone()))
                            && want.ports.get(&h).is_some_and(|hw| hw.ofport == Some(o)) =>
                    {
                        if self.unmet.insert(key) {
                            tracing::warn!(bridge = %bname, port = %n, "ofport_request={o}: {h}, asking for it too, holds it; {n} keeps its number");
                        }
                    }
                    _ => moving.push(n.clone()),
                }
            }
            self.detach(api, bname, &mut have, moving);
            self.applied.insert(bname.clone(), have);
        }
        self.unmet
            .retain(|(b, p)| plan.bridges.get(b).is_some_and(|w| w.ports.contains_key(p)));
        self.refused
            .retain(|(b, p), _| plan.bridges.get(b).is_some_and(|w| w.ports.contains_key(p)));
        for (bname, want) in &plan.bridges {
            self.bridge(api, bname, want, &mut plan.ifaces);
        }
    }

    /// Detaches ports `names` of bridge `bname`.
    fn detach(&mut self, api: &Api, bname: &str, have: &mut WantBridge, names: Vec<String>) {
        for n in names {
            self.calls += 1;
            if let Err(e) = api.del_port(bname, &n) {
                tracing::warn!(bridge = %bname, port = %n, "deleting port: {e}");
            }
            have.ports.remove(&n);
            self.unmet.remove(&(bname.to_string(), n));
        }
    }

    fn bridge(
        &mut self,
        api: &Api,
        bname: &str,
        want: &WantBridge,
        ifaces: &mut BTreeMap<String, IfaceState>,
    ) {
        if !self.applied.contains_key(bname) {
            self.calls += 1;
            match api.add_br(bname, Instant::now()) {
                Ok(()) => {
                    self.bridge_errors.remove(bname);
                    self.applied.insert(bname.to_string(), WantBridge::new());
                }
                Err(e) => {
                    let e = format!("bridge {bname} could not be created: {e}");
                    if self.bridge_errors.get(bname) != Some(&e) {
                        tracing::warn!("{e}");
                    }
                    for st in ifaces.values_mut() {
                        if matches!(st, IfaceState::Port { bridge, .. } if bridge == bname) {
                            *st = IfaceState::Error(e.clone());
                        }
                    }
                    self.bridge_errors.insert(bname.to_string(), e);
                    return;
                }
            }
        }
        let Some(have) = self.applied.get_mut(bname) else {
            return;
        };
        if (have.forward_bpdu, have.mac_aging_secs, have.mac_table_size)
            != (want.forward_bpdu, want.mac_aging_secs, want.mac_table_size)
        {
            self.calls += 1;
            let s = BridgeSettings {
                forward_bpdu: Some(want.forward_bpdu),
                mac_aging_secs: Some(want.mac_aging_secs),
                mac_table_size: Some(want.mac_table_size),
                ..BridgeSettings::default()
            };
            match api.set_bridge(bname, &s) {
                Ok(_) => {
                    have.forward_bpdu = want.forward_bpdu;
                    have.mac_aging_secs = want.mac_aging_secs;
                    have.mac_table_size = want.mac_table_size;
                }
                Err(e) => tracing::warn!(bridge = %bname, "bridge settings: {e}"),
            }
        }
        if have.fail_mode != want.fail_mode {
            self.calls += 1;
            match api.set_fail_mode(bname, want.fail_mode) {
                Ok(()) => have.fail_mode = want.fail_mode,
                Err(e) => tracing::warn!(bridge = %bname, "fail_mode: {e}"),
            }
        }
        if have.datapath_id != want.datapath_id {
            // A bad value is ignored, as ovs-vswitchd ignores it (it says
            // nothing; we say why): the id derived from the name stays.
            let id = want.datapath_id.as_deref().and_then(|s| {
                let id = parse_datapath_id(s);
                if id.is_none() {
                    tracing::warn!(bridge = %bname, "other_config:datapath-id={s}: not 16 hex digits (or 0x and up to 16), or all zeros; ignored");
                }
                id
            });
            self.calls += 1;
            match api.set_datapath_id(bname, id) {
                Ok(id) => {
                    tracing::info!(bridge = %bname, "datapath id {id:016x}");
                    have.datapath_id = want.datapath_id.clone();
                }
                Err(e) => tracing::warn!(bridge = %bname, "datapath-id: {e}"),
            }
        }
        if have.protocols != want.protocols {
            let (versions, unspoken) = protocols(&want.protocols);
            if !unspoken.is_empty() {
                tracing::warn!(bridge = %bname, "protocols: {} not spoken by vswitch (it speaks OpenFlow10, 13, 14, 15)", unspoken.join(", "));
            }
            if versions.is_empty() {
                tracing::warn!(bridge = %bname, "protocols: no version vswitch speaks; every OpenFlow connection to this bridge will fail its HELLO");
            }
            self.calls += 1;
            match api.set_protocols(bname, versions) {
                Ok(()) => have.protocols = want.protocols.clone(),
                Err(e) => tracing::warn!(bridge = %bname, "protocols: {e}"),
            }
        }
        if have.controllers != want.controllers {
            // A target that does not parse is left out (and logged); the
            // others connect.
            let configs: Vec<ControllerConfig> = want
                .controllers
                .iter()
                .filter_map(|c| {
                    c.config()
                        .inspect_err(|e| tracing::warn!(bridge = %bname, "controller: {e}"))
                        .ok()
                })
                .collect();
            self.calls += 1;
            match api.set_controllers(bname, &configs) {
                Ok(()) => have.controllers = want.controllers.clone(),
                Err(e) => tracing::warn!(bridge = %bname, "controllers: {e}"),
            }
        }
        // As ovs-vswitchd: the ports that ask for a number first, then the
        // ones numbered automatically, so that an automatic number never
        // takes one that a port of the same transaction asks for. A port
        // asking for a number that an automatically numbered one holds
        // takes it, and the other comes back on a free number. A port
        // asking for a number that another port asking for it holds gets a
        // free number instead (no error, as ovs-vswitchd), and moves to
        // its own once that is free. (The bridge's record is worked on out
        // of `applied`, beside `self`'s other records, and put back.)
        let Some(mut have) = self.applied.remove(bname) else {
            return;
        };
        let mut refused_now = Vec::new();
        for (pname, spec) in want.ports.iter().filter(|(_, s)| s.ofport.is_some()) {
            if let (Some(n), None) = (spec.ofport, have.ports.get(pname)) {
                match holder(api, bname, n) {
                    Some(h)
                        if h != *pname
                            && numbered_automatically(&have, &self.unmet, bname, &h, n) =>
                    {
                        self.calls += 1;
                        match api.del_port(bname, &h) {
                            Ok(()) => {
                                tracing::info!(bridge = %bname, port = %h, "gives up ofport {n}, which {pname} asks for");
                                have.ports.remove(&h);
                                self.unmet.remove(&(bname.to_string(), h));
                            }
                            Err(e) => {
                                tracing::warn!(bridge = %bname, port = %h, "deleting port: {e}")
                            }
                        }
                    }
                    // Both ask for it: this one is numbered below.
                    Some(h) if h != *pname => continue,
                    _ => {}
                }
            }
            if !self.port(api, bname, &mut have, pname, spec, spec.ofport, ifaces) {
                refused_now.push(pname);
            }
        }
        let rest: Vec<_> = want
            .ports
            .iter()
            .filter(|(n, s)| {
                s.ofport.is_some() && !have.ports.contains_key(*n) && !refused_now.contains(n)
            })
            .collect();
        for (pname, spec) in want
            .ports
            .iter()
            .filter(|(_, s)| s.ofport.is_none())
            .chain(rest)
        {
            self.port(api, bname, &mut have, pname, spec, None, ifaces);
        }
        self.applied.insert(bname.to_string(), have);
    }

    /// Adds port `pname` of bridge `bname` as `spec` with OpenFlow number
    /// `ofport` (a free one if `None`), or changes its settings; a refusal
    /// is written to its interface's state. Returns whether it is there.
    #[allow(clippy::too_many_arguments)]
    fn port(
        &mut self,
        api: &Api,
        bname: &str,
        have: &mut WantBridge,
        pname: &str,
        spec: &PortSpec,
        ofport: Option<u32>,
        ifaces: &mut BTreeMap<String, IfaceState>,
    ) -> bool {
        let key = (bname.to_string(), pname.to_string());
        let result = match have.ports.get(pname) {
            Some(old) if old.settings == spec.settings => return true,
            Some(_) => {
                self.calls += 1;
                api.set_port(bname, pname, &spec.settings).map(|_| ())
            }
            None => {
                self.calls += 1;
                let mut s = spec.clone();
                s.ofport = ofport;
                api.add_port(bname, &s).map(|_| ())
            }
        };
        match result {
            Ok(()) => {
                if have.ports.insert(pname.to_string(), spec.clone()).is_none() {
                    match spec.ofport {
                        Some(n) if ofport.is_none() => {
                            tracing::warn!(bridge = %bname, port = %pname, "ofport_request={n}: another port asking for it holds it; numbered automatically");
                            self.unmet.insert(key.clone());
                        }
                        _ => {
                            self.unmet.remove(&key);
                        }
                    }
                }
                self.refused.remove(&key);
                true
            }
            Err(e) => {
                let e = e.to_string();
                if self.refused.get(&key) != Some(&e) {
                    tracing::warn!(bridge = %bname, port = %pname, "interface refused: {e}");
                }
                for st in ifaces.values_mut() {
                    if matches!(st, IfaceState::Port { bridge, port } if bridge == bname && port == pname)
                    {
                        *st = IfaceState::Error(e.clone());
                    }
                }
                self.refused.insert(key, e);
                false
            }
        }
    }
}

/// The port of `bridge` holding OpenFlow number `n`.
fn holder(api: &Api, bridge: &str, n: u32) -> Option<String> {
    api.ports(bridge).ok()?.port_name(n)
}

/// Whether port `port` of `bridge` holds `n` without asking for it: it
/// asks for no number, or for another that it did not get.
fn numbered_automatically(
    have: &WantBridge,
    unmet: &BTreeSet<(String, String)>,
    bridge: &str,
    port: &str,
    n: u32,
) -> bool {
    have.ports.get(port).is_some_and(|spec| {
        spec.ofport != Some(n) || unmet.contains(&(bridge.to_string(), port.to_string()))
    })
}

/// Builds the write-back transaction, column by column, writing only what
/// differs from the database.
#[derive(Debug, Default)]
pub struct Writer {
    /// Values written whose echo has not come back yet: not written again
    /// meanwhile.
    pending: BTreeMap<(String, String, String), Datum>,
    /// The statistics last written per Interface row (the column is not
    /// monitored: its updates would come back every 5 s for nothing).
    stats: BTreeMap<String, Datum>,
}

/// Bridge → port → facts.
pub type Facts = BTreeMap<String, BTreeMap<String, PortFacts>>;

/// What the switch says about a bridge besides its ports.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BridgeFacts {
    /// The datapath id in force, 16 hex digits (`Bridge.datapath_id`).
    pub datapath_id: String,
    /// Each controller's standing, by target as the switch writes it
    /// (`tcp:IP:PORT`).
    pub controllers: BTreeMap<String, ControllerStatus>,
}

/// One row's columns to update.
type RowWrites = BTreeMap<String, Value>;

impl Writer {
    /// A writer with nothing pending.
    pub fn new() -> Writer {
        Writer::default()
    }

    /// Forgets what is in flight (a transaction failed, or the session
    /// was lost): everything is compared again.
    pub fn reset(&mut self) {
        self.pending.clear();
        self.stats.clear();
    }

    /// Wants `table[uuid].col = value`: added to `row` when the database
    /// holds something else and no identical write is in flight.
    fn want(
        &mut self,
        ctx: (&Replica, &Schema),
        at: (&str, &str),
        col: &str,
        value: Datum,
        row: &mut RowWrites,
    ) {
        let (r, schema) = ctx;
        let (table, uuid) = at;
        let Some(kind) = schema.kind(table, col) else {
            return;
        };
        let key = (table.to_string(), uuid.to_string(), col.to_string());
        let mut current = r.row(table, uuid).map(|x| x.get(col)).unwrap_or_default();
        if kind == ovsdb::ColumnKind::Scalar && current.is_empty() {
            // update2 leaves a scalar holding its default out of the row.
            current = match value.first() {
                Some(Atom::Integer(_)) => Datum::one(0),
                Some(Atom::Boolean(_)) => Datum::one(false),
                Some(Atom::String(_)) => Datum::one(""),
                _ => current,
            };
        }
        if current == value {
            self.pending.remove(&key);
            return;
        }
        if self.pending.get(&key) == Some(&value) {
            return;
        }
        row.insert(
            col.to_string(),
            value.to_json(kind == ovsdb::ColumnKind::Map),
        );
        self.pending.insert(key, value);
    }

    /// The operations that bring the database in line with the switch:
    /// `Open_vSwitch` facts and `cur_cfg`, each Interface's state (and its
    /// statistics when `with_stats`), each Controller's connection.
    pub fn ops(
        &mut self,
        r: &Replica,
        schema: &Schema,
        plan: &Plan,
        facts: &Facts,
        bridges: &BTreeMap<String, BridgeFacts>,
        with_stats: bool,
    ) -> Vec<Value> {
        let mut out: Vec<(&'static str, String, RowWrites)> = Vec::new();
        // Rows deleted meanwhile take their bookkeeping with them.
        self.pending.retain(|(t, u, _), _| r.row(t, u).is_some());
        self.stats
            .retain(|u, _| matches!(plan.ifaces.get(u), Some(IfaceState::Port { .. })));
        let ctx = (r, schema);
        if let Some((uuid, next_cfg)) = &plan.next_cfg {
            let mut w = RowWrites::new();
            let at = ("Open_vSwitch", uuid.as_str());
            self.want(
                ctx,
                at,
                "ovs_version",
                Datum::one(env!("CARGO_PKG_VERSION")),
                &mut w,
            );
            self.want(
                ctx,
                at,
                "db_version",
                Datum::one(schema.version.as_str()),
                &mut w,
            );
            self.want(ctx, at, "datapath_types", Datum::one("netdev"), &mut w);
            let types = IFACE_TYPES.iter().map(|t| Atom::from(*t)).collect();
            self.want(ctx, at, "iface_types", Datum::set(types), &mut w);
            self.want(ctx, at, "cur_cfg", Datum::one(*next_cfg), &mut w);
            out.push(("Open_vSwitch", uuid.clone(), w));
        }
        for (iu, st) in &plan.ifaces {
            let mut w = RowWrites::new();
            let at = ("Interface", iu.as_str());
            let none = Datum::default;
            match st {
                IfaceState::Error(e) => {
                    self.want(ctx, at, "ofport", Datum::one(-1), &mut w);
                    self.want(ctx, at, "error", Datum::one(e.as_str()), &mut w);
                    for col in ["link_state", "admin_state", "mtu", "mac_in_use", "ifindex"] {
                        self.want(ctx, at, col, none(), &mut w);
                    }
                }
                IfaceState::Local => {
                    self.want(ctx, at, "ofport", Datum::one(LOCAL_OFPORT), &mut w);
                    self.want(ctx, at, "error", none(), &mut w);
                    self.want(ctx, at, "admin_state", Datum::one("down"), &mut w);
                    self.want(ctx, at, "link_state", Datum::one("down"), &mut w);
                }
                IfaceState::Port { bridge, port } => {
                    let Some(f) = facts.get(bridge).and_then(|m| m.get(port)) else {
                        continue;
                    };
                    let up = |b: bool| Datum::one(if b { "up" } else { "down" });
                    let opt = |v: Option<Atom>| v.map(|a| Datum::Set(vec![a])).unwrap_or_default();
                    self.want(ctx, at, "ofport", Datum::one(i64::from(f.ofport)), &mut w);
                    self.want(ctx, at, "error", none(), &mut w);
                    self.want(ctx, at, "link_state", up(f.link == LinkState::Up), &mut w);
                    self.want(ctx, at, "admin_state", up(f.enabled), &mut w);
                    let mtu = (f.mtu > 0).then(|| Atom::Integer(i64::from(f.mtu)));
                    self.want(ctx, at, "mtu", opt(mtu), &mut w);
                    let mac = f.mac.clone().map(Atom::String);
                    self.want(ctx, at, "mac_in_use", opt(mac), &mut w);
                    let ifindex = f.ifindex.map(|i| Atom::Integer(i64::from(i)));
                    self.want(ctx, at, "ifindex", opt(ifindex), &mut w);
                    let driver = format!("vswitch-{}", f.kind.name());
                    self.want(
                        ctx,
                        at,
                        "status",
                        Datum::str_map([("driver_name", driver)]),
                        &mut w,
                    );
                    if with_stats && schema.kind("Interface", "statistics").is_some() {
                        let s = &f.stats;
                        let stats = Datum::map(
                            [
                                ("rx_packets", s.rx_packets),
                                ("rx_bytes", s.rx_bytes),
                                ("rx_dropped", s.rx_dropped),
                                ("rx_errors", s.rx_errors),
                                ("tx_packets", s.tx_packets),
                                ("tx_bytes", s.tx_bytes),
                                ("tx_dropped", s.tx_dropped),
                                ("tx_errors", s.tx_errors),
                            ]
                            .into_iter()
                            .map(|(k, v)| {
                                (
                                    Atom::from(k),
                                    Atom::Integer(i64::try_from(v).unwrap_or(i64::MAX)),
                                )
                            })
                            .collect(),
                        );
                        if self.stats.get(iu) != Some(&stats) {
                            w.insert("statistics".to_string(), stats.to_json(true));
                            self.stats.insert(iu.clone(), stats);
                        }
                    }
                }
            }
            out.push(("Interface", iu.clone(), w));
        }
        for (bridge, bu) in &plan.bridge_rows {
            let Some(f) = bridges.get(bridge) else {
                continue;
            };
            let mut w = RowWrites::new();
            let at = ("Bridge", bu.as_str());
            self.want(
                ctx,
                at,
                "datapath_id",
                Datum::one(f.datapath_id.as_str()),
                &mut w,
            );
            out.push(("Bridge", bu.clone(), w));
        }
        for (bridge, rows) in &plan.controller_rows {
            let states = bridges
                .get(bridge)
                .map(|f| f.controllers.clone())
                .unwrap_or_default();
            for cu in rows {
                let mut w = RowWrites::new();
                let at = ("Controller", cu.as_str());
                // Matched by target as the switch writes it ("tcp:1.2.3.4"
                // is "tcp:1.2.3.4:6653"). A target with no connection (a
                // passive `ptcp:` one, one that does not parse) is written
                // as Open vSwitch writes it: not connected, no role, no
                // status.
                let st = r
                    .row("Controller", cu)
                    .and_then(|c| c.str("target").parse::<Target>().ok())
                    .and_then(|t| states.get(&t.to_string()).cloned());
                let up = st.as_ref().is_some_and(|s| s.is_connected);
                self.want(ctx, at, "is_connected", Datum::one(up), &mut w);
                let role = st.as_ref().and_then(|s| s.role);
                let role = role.map(Datum::one).unwrap_or_default();
                self.want(ctx, at, "role", role, &mut w);
                let status = st.as_ref().map(status_pairs).unwrap_or_default();
                // The seconds change every second: like Open vSwitch,
                // refresh them only with the statistics (every 5 s); any
                // other change (state, error, a key appearing) is written
                // at once.
                let have = r
                    .row("Controller", cu)
                    .map(|c| c.str_map("status"))
                    .unwrap_or_default();
                if with_stats || !same_but_seconds(&have, &status) {
                    let pairs = status.iter().map(|(k, v)| (k.as_str(), v.clone()));
                    self.want(ctx, at, "status", Datum::str_map(pairs), &mut w);
                }
                out.push(("Controller", cu.clone(), w));
            }
        }
        out.into_iter()
            .filter(|(_, _, w)| !w.is_empty())
            .map(|(table, uuid, w)| {
                json!({"op": "update", "table": table, "where": [["_uuid", "==", ["uuid", uuid]]], "row": w})
            })
            .collect()
    }
}

/// The keys Open vSwitch writes in `Controller.status`: `state`, and
/// `last_error`, `sec_since_connect`, `sec_since_disconnect` once they
/// apply.
fn status_pairs(s: &ControllerStatus) -> BTreeMap<String, String> {
    let mut m = BTreeMap::new();
    m.insert("state".to_string(), s.state.name().to_string());
    if let Some(e) = &s.last_error {
        m.insert("last_error".to_string(), e.clone());
    }
    if let Some(n) = s.sec_since_connect {
        m.insert("sec_since_connect".to_string(), n.to_string());
    }
    if let Some(n) = s.sec_since_disconnect {
        m.insert("sec_since_disconnect".to_string(), n.to_string());
    }
    m
}

/// Whether two `status` maps differ at most in their seconds' values.
fn same_but_seconds(a: &BTreeMap<String, String>, b: &BTreeMap<String, String>) -> bool {
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .all(|((ka, va), (kb, vb))| ka == kb && (va == vb || ka.starts_with("sec_since_")))
}

/// The facts the writer needs from the switch: each bridge's ports, its
/// datapath id and its controllers' standing.
fn gather(api: &Api, plan: &Plan) -> (Facts, BTreeMap<String, BridgeFacts>) {
    let mut facts = BTreeMap::new();
    let mut bridges = BTreeMap::new();
    for b in plan.bridges.keys() {
        if let Ok(v) = api.port_facts(b) {
            facts.insert(
                b.clone(),
                v.into_iter().map(|f| (f.port.clone(), f)).collect(),
            );
        }
        if let Ok(show) = api.show(Some(b)) {
            for s in show.bridges {
                bridges.insert(
                    b.clone(),
                    BridgeFacts {
                        datapath_id: s.datapath_id,
                        controllers: s
                            .controllers
                            .into_iter()
                            .map(|c| (c.target, c.status))
                            .collect(),
                    },
                );
            }
        }
    }
    (facts, bridges)
}

/// The columns vswitchd monitors, per table: what it honours and what it
/// writes (to compare before writing). `statistics` is left out on
/// purpose.
const MONITORED: [(&str, &[&str]); 5] = [
    (
        "Open_vSwitch",
        &[
            "bridges",
            "next_cfg",
            "cur_cfg",
            "ovs_version",
            "db_version",
            "datapath_types",
            "iface_types",
            "external_ids",
            "other_config",
        ],
    ),
    (
        "Bridge",
        &[
            "name",
            "ports",
            "datapath_type",
            "fail_mode",
            "controller",
            "protocols",
            "other_config",
            "datapath_id",
        ],
    ),
    (
        "Port",
        &["name", "interfaces", "tag", "trunks", "vlan_mode"],
    ),
    (
        "Interface",
        &[
            "name",
            "type",
            "options",
            "mtu_request",
            "ofport_request",
            "external_ids",
            "ofport",
            "error",
            "link_state",
            "admin_state",
            "mtu",
            "mac_in_use",
            "ifindex",
            "status",
        ],
    ),
    (
        "Controller",
        &[
            "target",
            "connection_mode",
            "inactivity_probe",
            "max_backoff",
            "is_connected",
            "role",
            "status",
        ],
    ),
];

/// The monitor requests, limited to what `schema` has (an older database
/// lacks some columns).
fn monitor_requests(schema: &Schema) -> Result<Value, OvsdbError> {
    let mut req = serde_json::Map::new();
    for (table, cols) in MONITORED {
        let Some(have) = schema.tables.get(table) else {
            if table == "Controller" {
                continue;
            }
            return Err(OvsdbError::Schema(table));
        };
        let cols: Vec<&str> = cols
            .iter()
            .copied()
            .filter(|c| have.contains_key(*c))
            .collect();
        req.insert(table.to_string(), json!({ "columns": cols }));
    }
    Ok(Value::Object(req))
}

/// The front end's state that outlives a session.
struct State {
    api: Arc<Api>,
    remote: Remote,
    stop: Arc<AtomicBool>,
    rec: Reconciler,
    writer: Writer,
    /// Interface errors already logged, by row (each is logged once).
    logged: BTreeMap<String, String>,
    /// The last session failure, logged once until a session succeeds.
    last_error: String,
    /// The current session got as far as its monitor.
    connected: bool,
    /// The database's contents were applied at least once.
    configured: Arc<AtomicBool>,
    /// Steal the lock on the next session (`--takeover`).
    steal: bool,
}

/// `Open_vSwitch.other_config:stats-update-interval` (milliseconds, at
/// least 5000, as Open vSwitch reads it), else 5 s.
fn stats_interval(r: &Replica) -> Duration {
    r.table("Open_vSwitch")
        .next()
        .and_then(|(_, row)| {
            row.str_map("other_config")
                .get("stats-update-interval")
                .cloned()
        })
        .and_then(|v| v.parse::<u64>().ok())
        .map(|ms| Duration::from_millis(ms.max(5000)))
        .unwrap_or(STATS_INTERVAL)
}

impl State {
    /// Reconciles (when `changed`) and writes back.
    fn sync(
        &mut self,
        c: &mut Client,
        r: &Replica,
        schema: &Schema,
        changed: bool,
        with_stats: bool,
    ) -> Result<(), OvsdbError> {
        let mut p = plan(r);
        if changed {
            self.rec.reconcile(&self.api, &mut p);
            self.configured.store(true, Ordering::Release);
        } else {
            // The refusals of the last reconcile still stand.
            for st in p.ifaces.values_mut() {
                if let IfaceState::Port { bridge, port } = st {
                    if let Some(e) = self.rec.refused.get(&(bridge.clone(), port.clone())) {
                        *st = IfaceState::Error(e.clone());
                    } else if let Some(e) = self.rec.bridge_errors.get(bridge) {
                        *st = IfaceState::Error(e.clone());
                    }
                }
            }
        }
        for (iu, st) in &p.ifaces {
            if let IfaceState::Error(e) = st {
                if self.logged.get(iu) != Some(e) {
                    tracing::warn!(interface = %r.row("Interface", iu).map_or("", |x| x.str("name")), "{e}");
                    self.logged.insert(iu.clone(), e.clone());
                }
            }
        }
        self.logged
            .retain(|iu, _| matches!(p.ifaces.get(iu), Some(IfaceState::Error(_))));
        let (facts, ctls) = gather(&self.api, &p);
        let ops = self.writer.ops(r, schema, &p, &facts, &ctls, with_stats);
        if ops.is_empty() {
            return Ok(());
        }
        tracing::debug!(ops = %serde_json::Value::Array(ops.clone()), "OVSDB write-back");
        match c.transact(DB, ops, CALL_TIMEOUT) {
            Ok(_) => Ok(()),
            Err(ovsdb::Error::Transaction(e)) => {
                // Refused by the database (a row deleted meanwhile, a
                // constraint): compared again next time.
                tracing::warn!("OVSDB write-back refused: {e}");
                self.writer.reset();
                Ok(())
            }
            Err(e) => Err(e.into()),
        }
    }

    /// One session: connect, monitor, then apply updates until it fails
    /// or the daemon stops.
    fn session(&mut self) -> Result<(), OvsdbError> {
        let mut c = Client::connect(&self.remote, CALL_TIMEOUT)?;
        let schema = c.get_schema(DB, CALL_TIMEOUT)?;
        let req = monitor_requests(&schema)?;
        let (method, initial) = c.monitor(DB, &json!(MONITOR_ID), &req, CALL_TIMEOUT)?;
        let format = match method {
            MonitorMethod::MonitorCond => Format::Update2,
            MonitorMethod::Monitor => Format::Update,
        };
        let update_method = match format {
            Format::Update2 => "update2",
            Format::Update => "update",
        };
        let mut r = Replica::new();
        r.apply(format, &initial, &schema)?;
        tracing::info!(remote = %self.remote, ?method, "OVSDB connected");
        self.last_error.clear();
        self.connected = true;
        self.writer.reset();
        // The lock ovs-vswitchd takes: two switches configuring from one
        // database (vswitchd and an ovs-vswitchd left running) would fight
        // over every port. Without it, wait for the server's "locked".
        // An upgrade's new process takes the lock from the old one (RFC
        // 7047 "steal"), which stops configuring and exits shortly.
        let how = if std::mem::take(&mut self.steal) {
            "steal"
        } else {
            "lock"
        };
        let mut locked = c
            .call(how, json!([LOCK]), CALL_TIMEOUT)?
            .get("locked")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        if !locked {
            tracing::warn!("another switch (ovs-vswitchd?) holds the database's {LOCK} lock: waiting for it to let go before configuring anything");
        }
        let mut changed = true;
        let mut next_state = Instant::now();
        let mut next_stats = Instant::now();
        while !self.stop.load(Ordering::Relaxed) {
            let now = Instant::now();
            let tick = now >= next_state;
            if tick {
                next_state = now + STATE_TICK;
            }
            let stats = now >= next_stats;
            if stats {
                next_stats = now + stats_interval(&r);
            }
            if locked && (changed || tick) {
                self.sync(&mut c, &r, &schema, changed, stats)?;
                changed = false;
            }
            let wait = next_state.saturating_duration_since(Instant::now());
            let mut next = c.next_notification(wait)?;
            while let Some(n) = next.take() {
                match n.method.as_str() {
                    m if m == update_method && n.params.get(0) == Some(&json!(MONITOR_ID)) => {
                        let updates = n.params.get(1).ok_or(ovsdb::Error::Malformed {
                            what: "update",
                            expected: "[monitor-id, table-updates]",
                        })?;
                        r.apply(format, updates, &schema)?;
                        changed = true;
                    }
                    "locked" => {
                        tracing::info!("got the database's {LOCK} lock: configuring");
                        locked = true;
                        changed = true;
                    }
                    "stolen" => {
                        tracing::warn!("another switch took the database's {LOCK} lock: not configuring until it lets go");
                        locked = false;
                        // Ask again: the server grants it when the thief
                        // goes. (A server that still counts us as waiting
                        // refuses the duplicate: we wait all the same.)
                        match c.call("lock", json!([LOCK]), CALL_TIMEOUT) {
                            Ok(v) => {
                                locked = v.get("locked").and_then(Value::as_bool) == Some(true);
                                changed = locked;
                            }
                            Err(ovsdb::Error::Rpc { .. }) => {}
                            Err(e) => return Err(e.into()),
                        }
                    }
                    _ => {}
                }
                // Take whatever else already arrived, then reconcile once.
                next = c.next_notification(Duration::ZERO)?;
            }
        }
        Ok(())
    }

    fn run(mut self) {
        let mut backoff = BACKOFF_MIN;
        while !self.stop.load(Ordering::Relaxed) {
            self.connected = false;
            match self.session() {
                Ok(()) => return,
                // The same failure again (the server still down) is not
                // news.
                Err(e) if e.to_string() == self.last_error => {
                    tracing::debug!(remote = %self.remote, "OVSDB: {e}; reconnecting in {}s", backoff.as_secs());
                }
                Err(e) => {
                    self.last_error = e.to_string();
                    tracing::warn!(remote = %self.remote, "OVSDB: {e}; forwarding goes on with the last configuration, reconnecting");
                }
            }
            // After a session that worked, the first retry is quick.
            if self.connected {
                backoff = BACKOFF_MIN;
            }
            let until = Instant::now() + backoff;
            while Instant::now() < until && !self.stop.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(100));
            }
            backoff = (backoff * 2).min(BACKOFF_MAX);
        }
    }
}

/// The running front end; dropping it asks its thread to stop (it does
/// within about a second, or when a pending request times out).
pub struct Handle {
    stop: Arc<AtomicBool>,
    configured: Arc<AtomicBool>,
}

impl Handle {
    /// Waits (at most `limit`) until the database's contents were applied
    /// once; false on timeout. An upgrade waits for it before the old
    /// process pauses, so the new one forwards with every port.
    pub fn wait_configured(&self, limit: Duration) -> bool {
        let t0 = std::time::Instant::now();
        while !self.configured.load(Ordering::Acquire) {
            if t0.elapsed() >= limit {
                return false;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        true
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Starts the front end: bridges and ports of `api` follow the database
/// at `remote` from now on. With `steal_lock` (an upgrade) the first
/// session takes the `ovs_vswitchd` lock from the process holding it
/// instead of waiting for it.
pub fn start(api: Arc<Api>, remote: Remote, steal_lock: bool) -> Result<Handle, OvsdbError> {
    let stop = Arc::new(AtomicBool::new(false));
    let configured = Arc::new(AtomicBool::new(false));
    let state = State {
        configured: configured.clone(),
        steal: steal_lock,
        api,
        remote,
        stop: stop.clone(),
        rec: Reconciler::new(),
        writer: Writer::new(),
        logged: BTreeMap::new(),
        last_error: String::new(),
        connected: false,
    };
    std::thread::Builder::new()
        .name("ovsdb".into())
        .spawn(move || state.run())
        .map_err(OvsdbError::Thread)?;
    Ok(Handle { stop, configured })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// [`schema`] with the tables' columns of `more` (a schema's JSON
    /// whose `tables` hold only the columns to add).
    fn schema_with(more: Value) -> Schema {
        let mut s = schema();
        let extra = Schema::from_json(&more).unwrap();
        for (t, cols) in extra.tables {
            s.tables.get_mut(&t).unwrap().extend(cols);
        }
        s
    }

    fn schema() -> Schema {
        let col = |t: Value| json!({ "type": t });
        let opt_int = json!({"key": "integer", "min": 0, "max": 1});
        let opt_str = json!({"key": "string", "min": 0, "max": 1});
        let smap = json!({"key": "string", "value": "string", "min": 0, "max": "unlimited"});
        let refs =
            |t: &str| json!({"key": {"type": "uuid", "refTable": t}, "min": 0, "max": "unlimited"});
        Schema::from_json(&json!({
            "name": "Open_vSwitch", "version": "8.3.1",
            "tables": {
                "Open_vSwitch": {"columns": {
                    "bridges": col(refs("Bridge")), "next_cfg": col(json!("integer")),
                    "cur_cfg": col(json!("integer")), "ovs_version": col(opt_str.clone()),
                    "db_version": col(opt_str.clone()),
                    "datapath_types": col(json!({"key": "string", "min": 0, "max": "unlimited"})),
                    "iface_types": col(json!({"key": "string", "min": 0, "max": "unlimited"}))
                }},
                "Bridge": {"columns": {
                    "name": col(json!("string")), "ports": col(refs("Port")),
                    "fail_mode": col(opt_str.clone()), "other_config": col(smap.clone()),
                    "controller": col(refs("Controller"))
                }},
                "Port": {"columns": {
                    "name": col(json!("string")), "interfaces": col(refs("Interface")),
                    "tag": col(opt_int.clone()),
                    "trunks": col(json!({"key": "integer", "min": 0, "max": 4096})),
                    "vlan_mode": col(opt_str.clone())
                }},
                "Interface": {"columns": {
                    "name": col(json!("string")), "type": col(json!("string")),
                    "options": col(smap.clone()), "ofport": col(opt_int.clone()),
                    "ofport_request": col(opt_int.clone()), "mtu_request": col(opt_int.clone()),
                    "error": col(opt_str.clone()), "link_state": col(opt_str.clone()),
                    "admin_state": col(opt_str.clone()), "mtu": col(opt_int.clone()),
                    "mac_in_use": col(opt_str.clone()), "ifindex": col(opt_int.clone()),
                    "status": col(smap.clone()), "statistics": col(json!({"key": "string", "value": "integer", "min": 0, "max": "unlimited"}))
                }},
                "Controller": {"columns": {"target": col(json!("string"))}}
            }
        }))
        .unwrap()
    }

    /// The rows `ovs-vsctl add-br br0 -- add-port br0 p1 -- set Interface
    /// p1 type=dummy ofport_request=7 -- set Port p1 tag=10` leaves, plus
    /// a bad interface and a bond, in update2 form.
    fn rows() -> Value {
        json!({
            "Open_vSwitch": {"o": {"initial": {"bridges": ["uuid", "b"], "next_cfg": 3}}},
            "Bridge": {"b": {"initial": {"name": "br0", "ports": ["set", [["uuid", "p0"], ["uuid", "p1"], ["uuid", "p2"], ["uuid", "p3"]]]}}},
            "Port": {
                "p0": {"initial": {"name": "br0", "interfaces": ["uuid", "i0"]}},
                "p1": {"initial": {"name": "p1", "interfaces": ["uuid", "i1"], "tag": 10}},
                "p2": {"initial": {"name": "bad", "interfaces": ["uuid", "i2"]}},
                "p3": {"initial": {"name": "bond", "interfaces": ["set", [["uuid", "i3"], ["uuid", "i4"]]]}}
            },
            "Interface": {
                "i0": {"initial": {"name": "br0", "type": "internal"}},
                "i1": {"initial": {"name": "p1", "type": "dummy", "ofport_request": 7}},
                "i2": {"initial": {"name": "bad", "type": "vxlan"}},
                "i3": {"initial": {"name": "b1", "type": "dummy"}},
                "i4": {"initial": {"name": "b2", "type": "dummy"}}
            }
        })
    }

    /// What the server would do with our write-back: apply it to the
    /// replica (as the update it echoes).
    fn echo(r: &mut Replica, s: &Schema, ops: &[Value]) {
        let mut upd = serde_json::Map::new();
        for op in ops {
            let table = op["table"].as_str().unwrap();
            let uuid = op["where"][0][2][1].as_str().unwrap();
            let mut row = r.row(table, uuid).cloned().unwrap_or_default();
            for (k, v) in op["row"].as_object().unwrap() {
                row.columns.insert(k.clone(), Datum::from_json(v).unwrap());
            }
            let cols: serde_json::Map<String, Value> = row
                .columns
                .iter()
                .map(|(k, d)| {
                    (
                        k.clone(),
                        d.to_json(s.kind(table, k) == Some(ovsdb::ColumnKind::Map)),
                    )
                })
                .collect();
            upd.entry(table.to_string())
                .or_insert_with(|| json!({}))
                .as_object_mut()
                .unwrap()
                .insert(uuid.to_string(), json!({"insert": cols}));
        }
        r.apply(Format::Update2, &Value::Object(upd), s).unwrap();
    }

    fn write(api: &Api, w: &mut Writer, r: &Replica, s: &Schema, p: &Plan) -> Vec<Value> {
        let (facts, ctls) = gather(api, p);
        w.ops(r, s, p, &facts, &ctls, true)
    }

    #[test]
    fn rows_become_ports_and_only_changes_cause_calls() {
        let s = schema();
        let mut r = Replica::new();
        r.apply(Format::Update2, &rows(), &s).unwrap();
        let api = Api::new();
        let mut rec = Reconciler::new();
        let mut p = plan(&r);
        rec.reconcile(&api, &mut p);
        let show = api.show(Some("br0")).unwrap();
        let ports = &show.bridges[0].ports;
        assert_eq!(ports.len(), 1, "{ports:?}");
        assert_eq!((ports[0].port.as_str(), ports[0].ofport), ("p1", 7));
        assert_eq!(ports[0].policy.as_ref().unwrap().tag, Some(10));
        assert_eq!(p.ifaces["i0"], IfaceState::Local);
        assert!(matches!(&p.ifaces["i2"], IfaceState::Error(e) if e.contains("'vxlan'")));
        assert!(matches!(&p.ifaces["i3"], IfaceState::Error(e) if e.contains("bonds")));

        // Write-back: ofport, error, cur_cfg...
        let mut w = Writer::new();
        let ops = write(&api, &mut w, &r, &s, &p);
        let find = |ops: &[Value], t: &str, u: &str| {
            ops.iter()
                .find(|o| o["table"] == t && o["where"][0][2][1] == u)
                .map(|o| o["row"].clone())
        };
        let i1 = find(&ops, "Interface", "i1").unwrap();
        assert_eq!(
            (i1["ofport"].clone(), i1["admin_state"].clone()),
            (json!(7), json!("up"))
        );
        assert_eq!(i1["statistics"][0], "map");
        let i2 = find(&ops, "Interface", "i2").unwrap();
        assert_eq!(i2["ofport"], json!(-1));
        assert!(i2["error"]
            .as_str()
            .unwrap()
            .contains("unsupported interface type"));
        assert_eq!(
            find(&ops, "Interface", "i0").unwrap()["ofport"],
            json!(LOCAL_OFPORT)
        );
        assert_eq!(
            find(&ops, "Open_vSwitch", "o").unwrap()["cur_cfg"],
            json!(3)
        );
        // In flight: not written twice.
        assert!(find(&write(&api, &mut w, &r, &s, &p), "Interface", "i1").is_none());
        // Once the database has them, nothing more is written.
        echo(&mut r, &s, &ops);
        let again = w.ops(&r, &s, &p, &gather(&api, &p).0, &BTreeMap::new(), false);
        assert!(again.is_empty(), "{again:?}");

        // The same rows again: no call at all.
        let calls = rec.calls;
        let mut p = plan(&r);
        rec.reconcile(&api, &mut p);
        assert_eq!(rec.calls, calls);

        // A new tag: one set_port; a fixed type: one add_port.
        r.apply(
            Format::Update2,
            &json!({"Port": {"p1": {"modify": {"tag": 20}}},
                    "Interface": {"i2": {"modify": {"type": "dummy"}}}}),
            &s,
        )
        .unwrap();
        let mut p = plan(&r);
        rec.reconcile(&api, &mut p);
        assert_eq!(rec.calls, calls + 2);
        let show = api.show(Some("br0")).unwrap();
        let names: Vec<_> = show.bridges[0]
            .ports
            .iter()
            .map(|p| (p.port.clone(), p.policy.as_ref().unwrap().tag))
            .collect();
        assert_eq!(
            names,
            vec![("bad".to_string(), None), ("p1".to_string(), Some(20))]
        );
        let ops = write(&api, &mut w, &r, &s, &p);
        let i2 = find(&ops, "Interface", "i2").unwrap();
        assert_eq!(i2["error"], json!(["set", []]), "the error is cleared");

        // An ofport_request that another port asking for it holds leaves
        // the interface on the number it has, with no error, as with
        // ovs-vswitchd.
        let numbers = |api: &Api| -> Vec<(String, u32)> {
            api.show(Some("br0")).unwrap().bridges[0]
                .ports
                .iter()
                .map(|p| (p.port.clone(), p.ofport))
                .collect()
        };
        let before = numbers(&api);
        r.apply(
            Format::Update2,
            &json!({"Interface": {"i2": {"modify": {"ofport_request": 7}}}}),
            &s,
        )
        .unwrap();
        let mut p = plan(&r);
        let calls = rec.calls;
        rec.reconcile(&api, &mut p);
        assert_eq!(rec.calls, calls, "nothing re-attached");
        assert!(matches!(&p.ifaces["i2"], IfaceState::Port { .. }));
        assert_eq!(numbers(&api), before);

        // del-port, then del-br.
        r.apply(
            Format::Update2,
            &json!({"Bridge": {"b": {"modify": {"ports": ["set", [["uuid", "p1"], ["uuid", "p2"]]]}}}}),
            &s,
        )
        .unwrap();
        let mut p = plan(&r);
        rec.reconcile(&api, &mut p);
        assert!(api.show(Some("br0")).unwrap().bridges[0].ports.is_empty());
        r.apply(
            Format::Update2,
            &json!({"Open_vSwitch": {"o": {"modify": {"bridges": ["uuid", "b"]}}}}),
            &s,
        )
        .unwrap();
        let mut p = plan(&r);
        rec.reconcile(&api, &mut p);
        assert!(api.bridge_names().is_empty());
        api.shutdown();
    }

    #[test]
    fn bad_port_rows_read_as_errors() {
        let row = |v: Value| Row {
            columns: v
                .as_object()
                .unwrap()
                .iter()
                .map(|(k, v)| (k.clone(), Datum::from_json(v).unwrap()))
                .collect(),
        };
        let port = row(json!({"name": "p"}));
        for (iface, port, want) in [
            (
                json!({"name": "p", "type": "patch"}),
                port.clone(),
                "unsupported interface type",
            ),
            (
                json!({"name": "p", "ofport_request": 70000}),
                port.clone(),
                "1..65279",
            ),
            (
                json!({"name": "p", "mtu_request": 20}),
                port.clone(),
                "68..65535",
            ),
            (json!({"name": "p"}), row(json!({"tag": 5000})), "0..4095"),
            (
                json!({"name": "p"}),
                row(json!({"vlan_mode": "dot1q-tunnel"})),
                "vlan_mode",
            ),
        ] {
            let e = read_port(&port, &row(iface.clone()))
                .unwrap_err()
                .to_string();
            assert!(e.contains(want), "{iface}: {e}");
        }
        let spec = read_port(
            &row(json!({"trunks": ["set", [10, 20]], "vlan_mode": "trunk"})),
            &row(json!({"name": "t", "type": "geneve", "options": ["map", [["remote_ip", "10.0.0.2"], ["key", "5"]]], "mtu_request": 1400})),
        )
        .unwrap();
        assert_eq!(spec.kind, PortKind::Geneve);
        assert_eq!(spec.settings.mtu, Some(1400));
        assert_eq!(spec.settings.trunks, Some(vec![10, 20]));
        assert_eq!(
            spec.type_options,
            vec![
                ("key".to_string(), "5".to_string()),
                ("remote_ip".to_string(), "10.0.0.2".to_string())
            ]
        );
    }

    #[test]
    fn defaults_left_out_by_update2_are_not_rewritten() {
        let s = schema();
        let mut r = Replica::new();
        // cur_cfg and next_cfg are 0: ovsdb-server leaves them out.
        r.apply(
            Format::Update2,
            &json!({"Open_vSwitch": {"o": {"initial": {
                "ovs_version": env!("CARGO_PKG_VERSION"), "db_version": "8.3.1",
                "datapath_types": "netdev",
                "iface_types": ["set", ["dummy", "geneve", "internal", "system", "tap"]]
            }}}}),
            &s,
        )
        .unwrap();
        let p = plan(&r);
        assert_eq!(p.next_cfg, Some(("o".to_string(), 0)));
        let mut w = Writer::new();
        let ops = w.ops(&r, &s, &p, &Facts::new(), &BTreeMap::new(), true);
        assert!(ops.is_empty(), "{ops:?}");
        // A next_cfg that moved is answered.
        r.apply(
            Format::Update2,
            &json!({"Open_vSwitch": {"o": {"modify": {"next_cfg": 1}}}}),
            &s,
        )
        .unwrap();
        let ops = w.ops(&r, &s, &plan(&r), &Facts::new(), &BTreeMap::new(), true);
        assert_eq!(ops.len(), 1);
        assert_eq!(ops[0]["row"], json!({"cur_cfg": 1}));
    }

    #[test]
    fn monitor_requests_follow_the_schema() {
        let req = monitor_requests(&schema()).unwrap();
        let cols = req["Interface"]["columns"].as_array().unwrap();
        assert!(cols.contains(&json!("ofport")));
        assert!(!cols.contains(&json!("statistics")));
        let mut s = schema();
        s.tables.remove("Port");
        assert!(matches!(
            monitor_requests(&s),
            Err(OvsdbError::Schema("Port"))
        ));
    }

    #[test]
    fn datapath_ids_parse_as_open_vswitch_parses_them() {
        assert_eq!(parse_datapath_id("0000000000000001"), Some(1));
        assert_eq!(parse_datapath_id("00000000DeadBeef"), Some(0xdead_beef));
        assert_eq!(parse_datapath_id("0x1"), Some(1));
        assert_eq!(parse_datapath_id("0X00000000000000ff"), Some(0xff));
        for bad in [
            "",
            "1",
            "000000000000001",
            "00000000000000001",
            "000000000000000g",
            "0000000000000000",
            "0x",
            "0x00000000000000001",
            "+000000000000001",
        ] {
            assert_eq!(parse_datapath_id(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn protocol_sets_keep_the_versions_spoken() {
        let names = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(protocols(&[]), (Versions::default(), vec![]));
        let (v, bad) = protocols(&names(&["OpenFlow10", "OpenFlow13", "OpenFlow15"]));
        assert_eq!(
            v,
            Versions::of(&[OfVersion::V10, OfVersion::V13, OfVersion::V15])
        );
        assert!(bad.is_empty());
        let (v, bad) = protocols(&names(&["OpenFlow11", "OpenFlow12"]));
        assert!(v.is_empty());
        assert_eq!(bad, names(&["OpenFlow11", "OpenFlow12"]));
    }

    /// `protocols`, `other_config:datapath-id` and the Controller columns
    /// reach the switch, changes only cause calls, and `datapath_id` is
    /// written back.
    #[test]
    fn bridge_and_controller_columns_reach_the_switch() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let s = schema_with(json!({
            "name": "Open_vSwitch", "version": "8.3.1",
            "tables": {
                "Bridge": {"columns": {
                    "protocols": {"type": {"key": "string", "min": 0, "max": "unlimited"}},
                    "datapath_id": {"type": {"key": "string", "min": 0, "max": 1}}
                }},
                "Controller": {"columns": {
                    "inactivity_probe": {"type": {"key": "integer", "min": 0, "max": 1}},
                    "max_backoff": {"type": {"key": "integer", "min": 0, "max": 1}},
                    "connection_mode": {"type": {"key": "string", "min": 0, "max": 1}},
                    "is_connected": {"type": "boolean"},
                    "role": {"type": {"key": "string", "min": 0, "max": 1}},
                    "status": {"type": {"key": "string", "value": "string", "min": 0, "max": "unlimited"}}
                }}
            }
        }));
        let mut r = Replica::new();
        r.apply(
            Format::Update2,
            &json!({
                "Open_vSwitch": {"o": {"initial": {"bridges": ["uuid", "b"], "next_cfg": 1}}},
                "Bridge": {"b": {"initial": {
                    "name": "br0",
                    "protocols": ["set", ["OpenFlow10", "OpenFlow13"]],
                    "other_config": ["map", [["datapath-id", "00000000000000aa"]]],
                    "controller": ["uuid", "c"]
                }}},
                "Controller": {"c": {"initial": {
                    "target": "tcp:127.0.0.1:1", "inactivity_probe": 30000,
                    "max_backoff": 2000, "connection_mode": "in-band"
                }}}
            }),
            &s,
        )
        .unwrap();
        let api = Api::new();
        api.serve_openflow(dir.path(), rt.handle().clone()).unwrap();
        let mut rec = Reconciler::new();
        let mut p = plan(&r);
        rec.reconcile(&api, &mut p);
        let show = api.show(Some("br0")).unwrap().bridges.remove(0);
        assert_eq!(show.datapath_id, "00000000000000aa");
        assert_eq!(show.protocols, "0x01, 0x04");
        assert_eq!(show.controllers[0].target, "tcp:127.0.0.1:1");
        let mut w = Writer::new();
        let ops = write(&api, &mut w, &r, &s, &p);
        let b = ops
            .iter()
            .find(|o| o["table"] == "Bridge")
            .expect("datapath_id written");
        assert_eq!(b["row"]["datapath_id"], "00000000000000aa");
        let c = ops.iter().find(|o| o["table"] == "Controller").unwrap();
        // The runtime is not driven: the first attempt has not run yet.
        assert_eq!(
            c["row"]["status"],
            json!(["map", [["state", "CONNECTING"]]])
        );
        assert_eq!(c["row"].get("role"), None, "no role while not connected");
        echo(&mut r, &s, &ops);
        assert!(
            write(&api, &mut w, &r, &s, &p)
                .iter()
                .all(|o| o["table"] != "Bridge"),
            "written once"
        );
        // Unchanged rows: no call.
        let calls = rec.calls;
        let mut p = plan(&r);
        rec.reconcile(&api, &mut p);
        assert_eq!(rec.calls, calls);

        // A bad datapath-id is ignored: the derived id comes back.
        r.apply(
            Format::Update2,
            &json!({"Bridge": {"b": {"modify": {
                "other_config": ["map", [["datapath-id", "xyz"]]],
                "protocols": ["set", ["OpenFlow10", "OpenFlow13"]]
            }}}}),
            &s,
        )
        .unwrap();
        let mut p = plan(&r);
        rec.reconcile(&api, &mut p);
        let show = api.show(Some("br0")).unwrap().bridges.remove(0);
        assert_eq!(
            show.datapath_id,
            format!("{:016x}", super::super::openflow::datapath_id("br0"))
        );
        drop(api);
    }

    /// A controller's status is written as Open vSwitch writes it; a
    /// change of state or error is written at once, the seconds alone only
    /// with the statistics; a passive target gets no status.
    #[test]
    fn controller_status_is_written_on_change_and_its_seconds_with_the_statistics() {
        use super::super::openflow::ConnState;
        let s = schema_with(json!({
            "name": "Open_vSwitch", "version": "8.3.1",
            "tables": {"Controller": {"columns": {
                "is_connected": {"type": "boolean"},
                "role": {"type": {"key": "string", "min": 0, "max": 1}},
                "status": {"type": {"key": "string", "value": "string", "min": 0, "max": "unlimited"}}
            }}}
        }));
        let mut r = Replica::new();
        r.apply(
            Format::Update2,
            &json!({
                "Open_vSwitch": {"o": {"initial": {"bridges": ["uuid", "b"], "next_cfg": 1}}},
                "Bridge": {"b": {"initial": {
                    "name": "br0", "controller": ["set", [["uuid", "c"], ["uuid", "p"]]]
                }}},
                "Controller": {
                    "c": {"initial": {"target": "tcp:127.0.0.1"}},
                    "p": {"initial": {"target": "ptcp:6653", "is_connected": true,
                          "status": ["map", [["state", "ACTIVE"]]]}}
                }
            }),
            &s,
        )
        .unwrap();
        let p = plan(&r);
        let facts = Facts::new();
        let at = |st: ControllerStatus| {
            let mut b = BridgeFacts::default();
            b.controllers.insert("tcp:127.0.0.1:6653".to_string(), st);
            BTreeMap::from([("br0".to_string(), b)])
        };
        let active = |secs: u64| ControllerStatus {
            state: ConnState::Active,
            is_connected: true,
            role: Some("other"),
            last_error: Some("Connection refused".to_string()),
            sec_since_connect: Some(secs),
            sec_since_disconnect: None,
        };
        let row = |ops: &[Value], uuid: &str| {
            ops.iter()
                .find(|o| o["where"][0][2][1] == uuid)
                .map(|o| o["row"].clone())
        };
        let mut w = Writer::new();
        let ops = w.ops(&r, &s, &p, &facts, &at(active(0)), false);
        let c = row(&ops, "c").expect("written at once");
        assert_eq!(c["is_connected"], true);
        assert_eq!(c["role"], "other");
        assert_eq!(
            c["status"],
            json!([
                "map",
                [
                    ["last_error", "Connection refused"],
                    ["sec_since_connect", "0"],
                    ["state", "ACTIVE"]
                ]
            ])
        );
        // The passive target: not connected, no role, no status.
        let pr = row(&ops, "p").expect("passive row written");
        assert_eq!(pr["is_connected"], false);
        assert_eq!(pr["status"], json!(["map", []]));
        echo(&mut r, &s, &ops);
        // Seconds later, between statistics: nothing.
        let ops = w.ops(&r, &s, &p, &facts, &at(active(3)), false);
        assert_eq!(row(&ops, "c"), None, "{ops:?}");
        // With the statistics: the seconds are refreshed.
        let ops = w.ops(&r, &s, &p, &facts, &at(active(5)), true);
        let c = row(&ops, "c").expect("seconds refreshed");
        assert_eq!(c["status"][1][1], json!(["sec_since_connect", "5"]));
        assert_eq!(c.get("is_connected"), None, "unchanged");
        echo(&mut r, &s, &ops);
        // The session ends: written at once, with a key that was not there.
        let ended = ControllerStatus {
            state: ConnState::Backoff,
            is_connected: false,
            role: None,
            last_error: Some("End of file".to_string()),
            sec_since_connect: Some(6),
            sec_since_disconnect: Some(0),
        };
        let ops = w.ops(&r, &s, &p, &facts, &at(ended), false);
        let c = row(&ops, "c").expect("written at once");
        assert_eq!(c["is_connected"], false);
        assert_eq!(c["role"], json!(["set", []]));
        assert_eq!(
            c["status"],
            json!([
                "map",
                [
                    ["last_error", "End of file"],
                    ["sec_since_connect", "6"],
                    ["sec_since_disconnect", "0"],
                    ["state", "BACKOFF"]
                ]
            ])
        );
    }

    /// Whatever sequence of databases the switch is shown, it ends up as
    /// the last one asks: its bridges, each port on the bridge its row
    /// names, with the tag its row asks for and the number, unless another
    /// port asking for that number holds it. No port holds a number that
    /// another row asks for and it does not (ovs-vswitchd's numbering).
    /// The same rows twice make no call.
    mod converges {
        use super::*;
        use proptest::prelude::*;

        /// One port row: its bridge (0, 1, or none), `ofport_request`, `tag`.
        type PortRow = (Option<usize>, Option<u32>, Option<u16>);
        /// Which of br0 and br1 exist, and the rows of p1..p4.
        type Db = ([bool; 2], [PortRow; 4]);

        const BRIDGES: [&str; 2] = ["br0", "br1"];

        fn db() -> impl Strategy<Value = Db> {
            let port = (
                prop::option::of(0usize..2),
                prop::option::of(1u32..4),
                prop::option::of(prop::sample::select(vec![10u16, 20])),
            );
            (
                any::<[bool; 2]>(),
                [port.clone(), port.clone(), port.clone(), port],
            )
        }

        /// The update2 a fresh replica gets for `db` (a port whose bridge
        /// is missing is in no bridge).
        fn rows(db: &Db) -> Value {
            let (bridges, ports) = db;
            let mut bridge_rows = serde_json::Map::new();
            let mut port_rows = serde_json::Map::new();
            let mut iface_rows = serde_json::Map::new();
            let mut present = Vec::new();
            for (b, name) in BRIDGES.iter().enumerate() {
                if !bridges[b] {
                    continue;
                }
                present.push(json!(["uuid", format!("b{b}")]));
                let mine: Vec<Value> = ports
                    .iter()
                    .enumerate()
                    .filter(|(_, (br, _, _))| *br == Some(b))
                    .map(|(i, _)| json!(["uuid", format!("p{i}")]))
                    .collect();
                bridge_rows.insert(
                    format!("b{b}"),
                    json!({"initial": {"name": name, "ports": ["set", mine]}}),
                );
            }
            for (i, (_, ofport, tag)) in ports.iter().enumerate() {
                let mut port =
                    json!({"name": format!("p{i}"), "interfaces": ["uuid", format!("i{i}")]});
                if let Some(t) = tag {
                    port["tag"] = json!(t);
                }
                port_rows.insert(format!("p{i}"), json!({ "initial": port }));
                let mut iface = json!({"name": format!("p{i}"), "type": "dummy"});
                if let Some(o) = ofport {
                    iface["ofport_request"] = json!(o);
                }
                iface_rows.insert(format!("i{i}"), json!({ "initial": iface }));
            }
            json!({
                "Open_vSwitch": {"o": {"initial": {"bridges": ["set", present]}}},
                "Bridge": bridge_rows,
                "Port": port_rows,
                "Interface": iface_rows,
            })
        }

        proptest! {
            #[test]
            fn the_switch_ends_as_the_last_database_asks(dbs in prop::collection::vec(db(), 1..6)) {
                let s = schema();
                let api = Api::new();
                let mut rec = Reconciler::new();
                let mut result = Ok(());
                for db in &dbs {
                    let mut r = Replica::new();
                    r.apply(Format::Update2, &rows(db), &s).unwrap();
                    let mut p = plan(&r);
                    rec.reconcile(&api, &mut p);
                    result = check(&api, db, &p);
                    if result.is_err() {
                        break;
                    }
                    let calls = rec.calls;
                    let mut again = plan(&r);
                    rec.reconcile(&api, &mut again);
                    if rec.calls != calls {
                        result = Err(TestCaseError::fail(format!("the same rows again made {} calls", rec.calls - calls)));
                        break;
                    }
                }
                api.shutdown();
                result.map_err(|e| TestCaseError::fail(format!("{e}\nafter {dbs:?}")))?;
            }
        }

        /// Whether the switch is as `db` asks (a failed case says how it
        /// is not); `p` says what was refused.
        fn check(api: &Api, db: &Db, p: &Plan) -> Result<(), TestCaseError> {
            let (bridges, ports) = db;
            let want: Vec<String> = BRIDGES
                .iter()
                .zip(bridges)
                .filter(|(_, on)| **on)
                .map(|(n, _)| n.to_string())
                .collect();
            let mut have = api.bridge_names();
            have.sort();
            if have != want {
                return Err(TestCaseError::fail(format!(
                    "bridges {have:?}, want {want:?}"
                )));
            }
            for (b, name) in BRIDGES.iter().enumerate() {
                if !bridges[b] {
                    continue;
                }
                let show = api
                    .show(Some(name))
                    .map_err(|e| TestCaseError::fail(e.to_string()))?;
                let shown = &show.bridges[0].ports;
                // The number a port row of this bridge asks for.
                let asks = |port: &str| {
                    ports
                        .iter()
                        .enumerate()
                        .find(|(i, (br, _, _))| *br == Some(b) && port == format!("p{i}"))
                        .and_then(|(_, (_, o, _))| *o)
                };
                for (i, (br, ofport, tag)) in ports.iter().enumerate() {
                    let pname = format!("p{i}");
                    let found = shown.iter().find(|s| s.port == pname);
                    if *br != Some(b) {
                        if found.is_some() {
                            return Err(TestCaseError::fail(format!(
                                "{pname} is on {name}, its row says {br:?}"
                            )));
                        }
                        continue;
                    }
                    let Some(s) = found else {
                        return Err(TestCaseError::fail(format!(
                            "{pname} missing on {name} ({:?}): {shown:?}",
                            p.ifaces[&format!("i{i}")]
                        )));
                    };
                    // Its own number, unless a port asking for it too
                    // holds it.
                    let held = |o: u32| {
                        shown
                            .iter()
                            .any(|t| t.ofport == o && t.port != pname && asks(&t.port) == Some(o))
                    };
                    if ofport.is_some_and(|o| o != s.ofport && !held(o)) {
                        return Err(TestCaseError::fail(format!(
                            "{pname} has ofport {}, asks {ofport:?}: {shown:?}",
                            s.ofport
                        )));
                    }
                    let t = s.policy.as_ref().and_then(|p| p.tag);
                    if t != *tag {
                        return Err(TestCaseError::fail(format!(
                            "{pname} has tag {t:?}, asks {tag:?}"
                        )));
                    }
                }
                // A number another row asks for is held only by a port
                // asking for it too.
                for s in shown {
                    let others = ports.iter().enumerate().any(|(i, (br, o, _))| {
                        *br == Some(b) && *o == Some(s.ofport) && s.port != format!("p{i}")
                    });
                    if others && asks(&s.port) != Some(s.ofport) {
                        return Err(TestCaseError::fail(format!(
                            "{} holds ofport {}, which another row asks for: {shown:?}",
                            s.port, s.ofport
                        )));
                    }
                }
            }
            Ok(())
        }
    }
}
