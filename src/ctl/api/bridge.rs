//! Bridges: create, delete, configure, and `show`.

use super::conntrack::CtSettings;
use super::{names, Api, Bridge, Error};
use crate::ctl::openflow::{ControllerStatus, FailMode};
use crate::flow::parse::{parse_flow, FlowCmd};
use crate::flow::NoPortNames;
use crate::ofproto::{BridgeConfig, FlowMod, FlowModCmd, PortInfo, PortKind};
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt;
use std::time::Instant;

/// The flow a new bridge starts with: Open vSwitch's `add-br` makes an
/// ordinary MAC-learning switch, and operators expect the same.
pub const DEFAULT_FLOW: &str = "priority=0,actions=NORMAL";

/// `set-bridge` settings; `None` leaves a setting as it is.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BridgeSettings {
    /// Forward link-local control frames (BPDUs, LLDP) instead of dropping
    /// them.
    pub forward_bpdu: Option<bool>,
    /// MAC learning table entry lifetime, seconds.
    pub mac_aging_secs: Option<u64>,
    /// MAC learning table size (entries).
    pub mac_table_size: Option<usize>,
    /// The bridge's connection-tracker policy.
    pub ct: CtSettings,
}

/// `show`: every bridge (or one) with its ports in OpenFlow port order.
#[derive(Debug, Clone, Serialize)]
pub struct Show {
    /// The bridges.
    pub bridges: Vec<BridgeShow>,
}

/// One bridge in `show`.
#[derive(Debug, Clone, Serialize)]
pub struct BridgeShow {
    /// Name.
    pub bridge: String,
    /// Flows in its tables.
    pub flows: usize,
    /// Whether link-local control frames are forwarded.
    pub forward_bpdu: bool,
    /// Ports, by OpenFlow number.
    pub ports: Vec<PortShow>,
    /// Controllers it connects to.
    pub controllers: Vec<ControllerShow>,
    /// What it does without a controller.
    pub fail_mode: FailMode,
    /// True while it forwards as a learning switch because no controller
    /// is connected (standalone only).
    pub fail_open: bool,
    /// With controllers in standalone mode, the seconds without one after
    /// which it fails open (three times the largest inactivity probe, at
    /// least 1).
    pub fail_open_after_secs: Option<u64>,
    /// Its OpenFlow listeners: `unix:DIR/BR.mgmt`, and `ptcp:PORT:IP`
    /// when a passive controller target asked for one.
    pub listen: Vec<String>,
    /// Its datapath id, 16 hex digits (as `Bridge.datapath_id`).
    pub datapath_id: String,
    /// The OpenFlow versions its connections may negotiate (wire
    /// numbers, `0x01, 0x04`).
    pub protocols: String,
}

/// A controller in `show`: its target and its standing, the facts
/// Open vSwitch writes in the Controller row (`is_connected`, `role`,
/// `status`: `state`, `last_error`, `sec_since_connect`,
/// `sec_since_disconnect`).
#[derive(Debug, Clone, Serialize)]
pub struct ControllerShow {
    /// `tcp:IP:PORT` or `unix:PATH`.
    pub target: String,
    /// Its standing now.
    #[serde(flatten)]
    pub status: ControllerStatus,
}

/// One port in `show`.
#[derive(Debug, Clone, Serialize)]
pub struct PortShow {
    /// Name.
    pub port: String,
    /// OpenFlow number.
    pub ofport: u32,
    /// Type.
    #[serde(rename = "type")]
    pub kind: PortKind,
    /// Link state (`up`, `down`, `unknown`).
    pub link: String,
    /// MTU in force.
    pub mtu: u32,
    /// How its device spreads the frames it sends over the workers' queues
    /// (`by-cpu`, `by-hash`, `kernel`; absent for a port with one queue).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub steering: Option<String>,
    /// The options its type read (`remote_ip`, `key`, ...).
    pub options: BTreeMap<String, String>,
    /// Its policy (VLANs, flooding, BPDU guard...).
    pub policy: Option<PortInfo>,
}

impl fmt::Display for Show {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in &self.bridges {
            writeln!(
                f,
                "bridge {}: {} flows, forward_bpdu={}",
                b.bridge, b.flows, b.forward_bpdu
            )?;
            for c in &b.controllers {
                let s = &c.status;
                let conn = if s.is_connected {
                    "connected"
                } else {
                    "not connected"
                };
                // The keys `ovs-vsctl list controller` shows in `status`.
                write!(
                    f,
                    "    controller {} ({conn}) state={}",
                    c.target,
                    s.state.name()
                )?;
                if let Some(r) = s.role {
                    write!(f, " role={r}")?;
                }
                if let Some(n) = s.sec_since_connect {
                    write!(f, " sec_since_connect={n}")?;
                }
                if let Some(n) = s.sec_since_disconnect {
                    write!(f, " sec_since_disconnect={n}")?;
                }
                if let Some(e) = &s.last_error {
                    write!(f, " last_error=\"{e}\"")?;
                }
                writeln!(f)?;
            }
            for l in &b.listen {
                writeln!(f, "    listening on {l}")?;
            }
            if !b.controllers.is_empty() || b.fail_mode != FailMode::Standalone {
                let open = match (b.fail_open, b.fail_open_after_secs) {
                    (true, Some(n)) => format!(" (fail-open now: no controller for {n} s)"),
                    (true, None) => " (fail-open now)".to_string(),
                    (false, Some(n)) => format!(" (fails open after {n} s without a controller)"),
                    (false, None) => String::new(),
                };
                writeln!(f, "    fail_mode: {}{open}", b.fail_mode.name())?;
            }
            for p in &b.ports {
                write!(
                    f,
                    "    port {:>2}: {} (type={}) link={} mtu={}",
                    p.ofport, p.port, p.kind, p.link, p.mtu
                )?;
                if let Some(s) = &p.steering {
                    write!(f, " steering={s}")?;
                }
                if let Some(i) = &p.policy {
                    if !i.enabled {
                        f.write_str(" disabled")?;
                    }
                    if let Some(t) = i.tag {
                        write!(f, " tag={t}")?;
                    }
                    if !i.trunks.is_empty() {
                        let t: Vec<String> = i.trunks.iter().map(|t| t.to_string()).collect();
                        write!(f, " trunks={}", t.join(","))?;
                    }
                    if i.vlan_mode.is_some() {
                        write!(f, " vlan_mode={}", i.effective_vlan_mode().name())?;
                    }
                    if i.bpdu_guard {
                        f.write_str(" bpdu_guard=true")?;
                    }
                }
                if !p.options.is_empty() {
                    let o: Vec<String> =
                        p.options.iter().map(|(k, v)| format!("{k}={v}")).collect();
                    write!(f, " options: {{{}}}", o.join(", "))?;
                }
                writeln!(f)?;
            }
        }
        Ok(())
    }
}

impl Api {
    /// Creates a bridge that forwards as a MAC-learning switch
    /// (`priority=0,actions=NORMAL`) until flows say otherwise.
    pub fn add_br(&self, name: &str, now: Instant) -> Result<(), Error> {
        names::check("bridge", name)?;
        let mut map = self.bridges.lock();
        if map.contains_key(name) {
            return Err(Error::BridgeExists(name.to_string()));
        }
        if let Some(owner) = names::owner(&map, name) {
            return Err(Error::NameInUse {
                name: name.to_string(),
                owner,
            });
        }
        let mut b = Bridge::new(name, self.epoch, self.datapath_settings())?;
        b.backend.set_save_hook(self.save_hook.lock().clone());
        if self.start_paused.load(std::sync::atomic::Ordering::Relaxed) {
            b.workers.pause(true);
        }
        if let Some(site) = self.openflow.lock().clone() {
            b.listen(&site, None)?;
        }
        let spec = parse_flow(DEFAULT_FLOW, FlowCmd::Add, &NoPortNames)?;
        b.of.flow_mods(
            &[FlowMod {
                cmd: FlowModCmd::Add,
                spec,
                table: None,
            }],
            now,
        )
        .map_err(|err| Error::FlowMod {
            source_name: None,
            err,
        })?;
        map.insert(name.to_string(), b);
        drop(map);
        tracing::info!(bridge = %name, "bridge added");
        self.apply_pending_tables(name, now);
        Ok(())
    }

    /// Deletes a bridge and its ports.
    pub fn del_br(&self, name: &str) -> Result<(), Error> {
        let b = self
            .bridges
            .lock()
            .remove(name)
            .ok_or_else(|| Error::NoBridge(name.to_string()))?;
        // Deleted, not closed at exit: devices its ports created go too
        // (also under `--keep-taps`).
        for e in b.ports.values() {
            if let Some(mut p) = b.workers.del_port(e.no) {
                p.on_delete();
            }
        }
        // Dropping the bridge joins its datapath thread and closes its
        // ports: done outside the lock so other requests go on.
        drop(b);
        tracing::info!(bridge = %name, "bridge deleted");
        Ok(())
    }

    /// Changes bridge settings, all or nothing (they were validated when
    /// parsed).
    pub fn set_bridge(&self, name: &str, s: &BridgeSettings) -> Result<BridgeConfig, Error> {
        self.with_bridge(name, |b| {
            let mut c = b.of.config();
            if let Some(f) = s.forward_bpdu {
                c.forward_bpdu = f;
            }
            if let Some(a) = s.mac_aging_secs {
                c.mac_aging_secs = a;
            }
            if let Some(n) = s.mac_table_size {
                c.mac_table_size = n;
            }
            b.of.set_config(c.clone());
            s.ct.apply(&b.ct);
            Ok(c)
        })
    }

    /// Bridges and ports, all or only `only`.
    pub fn show(&self, only: Option<&str>) -> Result<Show, Error> {
        let map = self.bridges.lock();
        if let Some(b) = only {
            if !map.contains_key(b) {
                return Err(Error::NoBridge(b.to_string()));
            }
        }
        let mut bridges = Vec::new();
        for (name, b) in map.iter() {
            if only.is_some_and(|o| o != name) {
                continue;
            }
            // From the tables' view, which the datapath keeps in step: no
            // question to a worker, which under load answers only between
            // batches.
            let mut ports: Vec<PortShow> = b
                .ports
                .iter()
                .map(|(pname, e)| {
                    let policy = b.of.with_ports(|p| p.get(e.no).cloned());
                    let link = match policy.as_ref().and_then(|p| p.link_up) {
                        Some(true) => "up",
                        Some(false) => "down",
                        None => "unknown",
                    };
                    PortShow {
                        port: pname.clone(),
                        ofport: e.no,
                        kind: e.kind,
                        link: link.to_string(),
                        mtu: policy.as_ref().map_or(0, |p| p.mtu),
                        steering: policy.as_ref().and_then(|p| p.steering).map(str::to_string),
                        options: e.type_options.iter().cloned().collect(),
                        policy,
                    }
                })
                .collect();
            ports.sort_by_key(|p| p.ofport);
            let now = Instant::now();
            let controllers = b
                .controllers
                .iter()
                .flat_map(|c| c.states.iter())
                .map(|s| ControllerShow {
                    target: s.target.to_string(),
                    status: s.status(now),
                })
                .collect();
            bridges.push(BridgeShow {
                bridge: name.clone(),
                flows: b.of.n_flows(),
                forward_bpdu: b.of.config().forward_bpdu,
                ports,
                controllers,
                fail_mode: b.fail_mode,
                fail_open: b.of.fail_open(),
                fail_open_after_secs: b
                    .controllers
                    .as_ref()
                    .and_then(|c| c.fail_open_after)
                    .map(|d| d.as_secs()),
                listen: b.listeners(),
                datapath_id: format!("{:016x}", b.backend.datapath_id_in_force()),
                protocols: b.backend.versions_in_force().hex(),
            });
        }
        Ok(Show { bridges })
    }
}
