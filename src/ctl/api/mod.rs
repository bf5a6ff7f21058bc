//! The typed switch API: every operation on bridges, ports, flows,
//! conntrack and the caches, with typed arguments, typed replies and typed
//! errors.
//!
//! Every front end is a thin translator onto this API: the vswitchctl
//! protocol ([`super::handler`]), the configuration file
//! ([`super::config`]) and the OpenFlow endpoint. The same operation
//! therefore behaves the same whoever asks, and a refused request changes
//! nothing: each operation validates everything before its first change.
//!
//! Replies are plain structs that serialize (the `--json` schema) and
//! print (`Display`, what `vswitchctl` shows).
//!
//! Thread-safety: [`Api`] is shared by the control threads; one mutex
//! guards the set of bridges and each bridge's port list. Operations that
//! wait (a capture) let go of it first.

mod bridge;
mod capture;
mod conntrack;
mod error;
mod facts;
mod fdb;
mod flows;
mod handover;
mod names;
mod persist;
mod port;
mod trace;

pub use super::hex::{hex_decode, hex_encode, HexError};
pub use bridge::{BridgeSettings, BridgeShow, ControllerShow, PortShow, Show};
pub use capture::{Cancel, CaptureReply, CaptureSpec};
pub use conntrack::{
    ConnsReply, CtLimit, CtSettings, CtTimeouts, FlushReply, PolicyReply, StatsReply,
};
pub use error::{Error, OptionError};
pub use facts::PortFacts;
pub use fdb::{FdbReply, TlvReply};
pub use flows::{DpFlowsReply, DropsReply, FlowEntry, FlowsReply, ModReply};
pub use persist::{FlowsCache, PortFailure, RestoreError};
pub use port::{PortAdded, PortCounters, PortSettings, PortSpec, PortsReply, SentReply};
pub use trace::{TraceReply, TraceRequest};

use super::openflow::{
    spawn_packet_in_pump, BridgeBackend, ControllerConfig, Controllers, FailMode, Target,
};
use crate::conntrack::ConnTracker;
use crate::datapath::packet_in;
use crate::datapath::worker::PortStatus;
use crate::datapath::workers::{RunMode, Workers};
use crate::datapath::{Datapath, DropCounters};
use crate::ofproto::{Ofproto, PortKind};
use crate::openflow::backend::SaveHook;
use crate::openflow::wire::hello::Versions;
use crate::openflow::wire::port::PortReason;
use crate::port::geneve::TlvMapHandle;
use crate::port::mem::MemHandle;
use parking_lot::Mutex;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

/// A port as the control plane remembers it.
#[derive(Debug)]
struct PortEntry {
    no: u32,
    kind: PortKind,
    /// The options the port type read (`remote_ip=...`), for `show`.
    type_options: Vec<(String, String)>,
    mem: Option<MemHandle>,
    /// The MTU the operator set (`mtu=`), saved with the port; `None`
    /// follows the device.
    mtu_request: Option<u32>,
}

/// One bridge.
struct Bridge {
    of: Arc<Ofproto>,
    ct: Arc<ConnTracker>,
    drops: Arc<DropCounters>,
    workers: Workers,
    ports: BTreeMap<String, PortEntry>,
    /// Geneve TLV map, shared with the bridge's geneve ports.
    tlv: TlvMapHandle,
    /// Ports with a capture running: one capture a port at a time.
    captures: Arc<Mutex<std::collections::BTreeSet<u32>>>,
    /// The bridge as OpenFlow sessions see it.
    backend: Arc<BridgeBackend>,
    /// Its OpenFlow listener (`DIR/BR.mgmt`), when the daemon serves
    /// OpenFlow.
    endpoint: Option<Endpoint>,
    /// The controllers it connects to.
    controllers: Option<Controllers>,
    /// What it does without a controller.
    fail_mode: FailMode,
    /// Each port's OpenFlow config and state bits when last announced.
    port_states: Mutex<BTreeMap<u32, (u32, u32)>>,
}

/// A bridge's OpenFlow listener; dropping it stops listening and removes
/// the socket file.
struct Endpoint {
    server: crate::openflow::server::Server,
}

impl Drop for Endpoint {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.server.unix_path);
    }
}

/// Where and on what runtime the bridges' OpenFlow listeners run.
#[derive(Clone)]
struct OpenFlowSite {
    dir: std::path::PathBuf,
    rt: tokio::runtime::Handle,
}

impl Bridge {
    fn new(name: &str, epoch: Instant, dp: DatapathSettings) -> Result<Bridge, Error> {
        let of = Arc::new(Ofproto::new(name, epoch));
        let ct = Arc::new(ConnTracker::default());
        let drops = Arc::new(DropCounters::default());
        let (sink, packet_ins) = packet_in::Sink::new();
        // Each worker its own datapath; they share the tables, the
        // connection tracker, the drop counters and the packet-in queue.
        let dps = (0..dp.workers.max(1))
            .map(|_| {
                let mut d = Datapath::new(of.clone(), ct.clone(), drops.clone());
                d.set_packet_in(sink.another());
                d
            })
            .collect();
        drop(sink);
        let workers = Workers::spawn(
            dps,
            RunMode {
                busy_poll: dp.busy_poll,
                nice: dp.nice,
            },
        )
        .map_err(Error::Datapath)?;
        let tlv = crate::port::geneve::new_tlv_map();
        let backend = Arc::new(BridgeBackend::new(
            of.clone(),
            workers.sender(),
            ct.clone(),
            tlv.clone(),
        ));
        // The pump ends by itself when the datapath (the sender) goes.
        spawn_packet_in_pump(name, packet_ins, backend.clone(), drops.clone())
            .map_err(Error::Datapath)?;
        Ok(Bridge {
            of,
            ct,
            drops,
            workers,
            ports: BTreeMap::new(),
            tlv,
            captures: Arc::default(),
            backend,
            endpoint: None,
            controllers: None,
            fail_mode: FailMode::default(),
            port_states: Mutex::default(),
        })
    }

    /// Starts the bridge's OpenFlow listener at `site.dir/NAME.mgmt`, and
    /// on `tcp` when given (a `ptcp:` controller target).
    fn listen(
        &mut self,
        site: &OpenFlowSite,
        tcp: Option<std::net::SocketAddr>,
    ) -> Result<(), Error> {
        let path = site.dir.join(format!("{}.mgmt", self.of.name()));
        // The old listener (and its socket file) goes first.
        self.endpoint = None;
        let _rt = site.rt.enter();
        let mut cfg = crate::openflow::server::Config::new(path);
        cfg.tcp = tcp;
        let server = crate::openflow::server::start(cfg, self.backend.clone())?;
        tracing::info!(bridge = %self.of.name(), socket = %server.unix_path.display(), "OpenFlow listener");
        self.endpoint = Some(Endpoint { server });
        Ok(())
    }

    /// The OpenFlow listeners, as `show` names them.
    fn listeners(&self) -> Vec<String> {
        let Some(e) = &self.endpoint else {
            return Vec::new();
        };
        let mut v = vec![format!("unix:{}", e.server.unix_path.display())];
        if let Some(a) = e.server.tcp_addr {
            v.push(format!("ptcp:{}:{}", a.port(), a.ip()));
        }
        v
    }

    /// Tells OpenFlow sessions about ports whose link or enabled state
    /// changed since the last look (PORT_STATUS MODIFY).
    fn announce_changes(&self) {
        let mut seen = self.port_states.lock();
        for s in self.port_status() {
            let d = self.backend.describe(&s);
            let now = (d.config, d.state);
            match seen.insert(s.no, now) {
                Some(before) if before != now => {
                    self.backend.port_status(PortReason::Modify, d);
                }
                _ => {}
            }
        }
        let live: std::collections::BTreeSet<u32> = self.ports.values().map(|e| e.no).collect();
        seen.retain(|no, _| live.contains(no));
    }

    fn port_status(&self) -> Vec<PortStatus> {
        self.workers.ports()
    }

    fn port(&self, bridge: &str, port: &str) -> Result<&PortEntry, Error> {
        self.ports.get(port).ok_or_else(|| Error::NoPort {
            bridge: bridge.to_string(),
            port: port.to_string(),
        })
    }
}

/// The switch: its bridges and everything done to them.
pub struct Api {
    started: Instant,
    epoch: Instant,
    bridges: Mutex<BTreeMap<String, Bridge>>,
    openflow: Mutex<Option<OpenFlowSite>>,
    /// Upgrade in progress: the previous process's fds, by port name, for
    /// the ports about to be added (see [`Api::adopt_fds`]).
    adopted: Mutex<std::collections::HashMap<String, Vec<std::os::fd::OwnedFd>>>,
    /// Under `--ovsdb`: saved tables waiting for their bridge.
    pending_tables: Mutex<std::collections::HashMap<String, crate::ctl::state::BridgeState>>,
    /// New bridges' datapaths start paused (an upgrade resumes them once
    /// the connection tables are in).
    start_paused: std::sync::atomic::AtomicBool,
    /// What OpenFlow barriers wait for (the state directory's save), given
    /// to every bridge, present and future.
    save_hook: Mutex<Option<SaveHook>>,
    /// How new bridges run their datapaths.
    datapath: Mutex<DatapathSettings>,
}

/// How a bridge runs its datapath (`vswitchd --workers N --busy-poll`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DatapathSettings {
    /// Worker threads per bridge, each with its own caches and its own
    /// queue of every port that can be split (at least 1).
    pub workers: usize,
    /// Workers never sleep waiting for packets.
    pub busy_poll: bool,
    /// The nice value every worker sets on itself (`None`: inherited).
    pub nice: Option<i32>,
}

impl Default for DatapathSettings {
    fn default() -> Self {
        DatapathSettings {
            workers: 1,
            busy_poll: false,
            nice: None,
        }
    }
}

impl Default for Api {
    fn default() -> Self {
        Self::new()
    }
}

/// `vswitchctl version`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Version {
    /// The daemon's version.
    pub version: &'static str,
    /// Seconds since it started.
    pub uptime_secs: u64,
}

impl core::fmt::Display for Version {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "vswitchd {} (up {}s)", self.version, self.uptime_secs)
    }
}

impl Api {
    /// A switch with no bridges.
    pub fn new() -> Self {
        let now = Instant::now();
        Api {
            started: now,
            epoch: now,
            bridges: Mutex::new(BTreeMap::new()),
            openflow: Mutex::new(None),
            adopted: Mutex::new(std::collections::HashMap::new()),
            pending_tables: Mutex::new(std::collections::HashMap::new()),
            start_paused: std::sync::atomic::AtomicBool::new(false),
            save_hook: Mutex::new(None),
            datapath: Mutex::new(DatapathSettings::default()),
        }
    }

    /// Makes every bridge's OpenFlow barriers wait for `hook` (the state
    /// directory's save) before they are answered.
    pub fn set_save_hook(&self, hook: Option<SaveHook>) {
        let map = self.bridges.lock();
        *self.save_hook.lock() = hook.clone();
        for b in map.values() {
            b.backend.set_save_hook(hook.clone());
        }
    }

    /// Limits the OpenFlow versions bridge `name`'s connections may
    /// negotiate (Open vSwitch's `Bridge.protocols`): new sessions on its
    /// listeners, and its controllers, connected again when the set
    /// changes.
    pub fn set_protocols(&self, name: &str, versions: Versions) -> Result<(), Error> {
        let site = self.openflow.lock().clone();
        self.with_bridge_mut(name, |b| {
            if b.backend.versions_in_force() == versions {
                return Ok(());
            }
            b.backend.set_versions(versions);
            tracing::info!(bridge = %name, versions = %versions.hex(), "OpenFlow versions set");
            if let (Some(c), Some(site)) = (b.controllers.take(), site) {
                let configs = c.configs();
                drop(c);
                b.controllers = Some(Controllers::start(
                    &site.rt,
                    &configs,
                    b.fail_mode,
                    b.backend.clone(),
                ));
            }
            Ok(())
        })
    }

    /// Sets bridge `name`'s datapath id (`None`: the one derived from its
    /// name); returns the id in force.
    pub fn set_datapath_id(&self, name: &str, dpid: Option<u64>) -> Result<u64, Error> {
        self.with_bridge(name, |b| {
            let id = dpid.unwrap_or_else(|| super::openflow::datapath_id(name));
            b.backend.set_datapath_id(id);
            Ok(id)
        })
    }

    /// How bridges added from now on run their datapath.
    pub fn set_datapath(&self, s: DatapathSettings) {
        *self.datapath.lock() = DatapathSettings {
            workers: s.workers.max(1),
            ..s
        };
    }

    /// How new bridges run their datapath.
    pub fn datapath_settings(&self) -> DatapathSettings {
        *self.datapath.lock()
    }

    /// Serves OpenFlow for every bridge, present and future, on a unix
    /// socket `dir/BRIDGE.mgmt` (mode 0600), as Open vSwitch does in its
    /// run directory, on runtime `rt`.
    pub fn serve_openflow(
        &self,
        dir: &std::path::Path,
        rt: tokio::runtime::Handle,
    ) -> Result<(), Error> {
        let site = OpenFlowSite {
            dir: dir.to_path_buf(),
            rt,
        };
        let mut map = self.bridges.lock();
        for b in map.values_mut().filter(|b| b.endpoint.is_none()) {
            b.listen(&site, None)?;
        }
        *self.openflow.lock() = Some(site);
        Ok(())
    }

    /// Version and uptime.
    pub fn version(&self, now: Instant) -> Version {
        Version {
            version: env!("CARGO_PKG_VERSION"),
            uptime_secs: now.saturating_duration_since(self.started).as_secs(),
        }
    }

    /// Runs `f` on bridge `name`.
    fn with_bridge<R>(
        &self,
        name: &str,
        f: impl FnOnce(&Bridge) -> Result<R, Error>,
    ) -> Result<R, Error> {
        let map = self.bridges.lock();
        let b = map
            .get(name)
            .ok_or_else(|| Error::NoBridge(name.to_string()))?;
        f(b)
    }

    /// Runs `f` on bridge `name`, mutably.
    fn with_bridge_mut<R>(
        &self,
        name: &str,
        f: impl FnOnce(&mut Bridge) -> Result<R, Error>,
    ) -> Result<R, Error> {
        let mut map = self.bridges.lock();
        let b = map
            .get_mut(name)
            .ok_or_else(|| Error::NoBridge(name.to_string()))?;
        f(b)
    }

    /// The tables of bridge `name`, for front ends that drive them directly
    /// (the OpenFlow endpoint speaks flow-mods and dumps to them).
    pub fn ofproto(&self, name: &str) -> Result<Arc<Ofproto>, Error> {
        self.with_bridge(name, |b| Ok(b.of.clone()))
    }

    /// Connects bridge `name` to `targets` (replacing its controllers;
    /// none disconnects), as `ovs-vsctl set-controller`.
    pub fn set_controller(&self, name: &str, targets: &[Target]) -> Result<(), Error> {
        let configs: Vec<ControllerConfig> =
            targets.iter().cloned().map(ControllerConfig::new).collect();
        self.set_controllers(name, &configs)
    }

    /// [`Api::set_controller`] with each controller's connection settings
    /// (inactivity probe, backoff: an OVSDB Controller row).
    pub fn set_controllers(
        &self,
        name: &str,
        controllers: &[ControllerConfig],
    ) -> Result<(), Error> {
        let targets: Vec<Target> = controllers.iter().map(|c| c.target.clone()).collect();
        let targets = &targets[..];
        let site = self.openflow.lock().clone();
        self.with_bridge_mut(name, |b| {
            let rt = site
                .as_ref()
                .map(|s| s.rt.clone())
                .ok_or(Error::NoOpenFlow)?;
            // The old connections go first (and fail-open with them).
            b.controllers = None;
            let passive = targets.iter().find_map(|t| match t {
                Target::Passive(a) => Some(*a),
                _ => None,
            });
            let listening = b
                .endpoint
                .as_ref()
                .and_then(|e| e.server.tcp_addr)
                .map(|a| (a.ip(), a.port()));
            if passive.map(|a| (a.ip(), a.port())) != listening {
                if let Some(site) = site.as_ref() {
                    b.listen(site, passive)?;
                }
            }
            if !targets.is_empty() {
                b.controllers = Some(Controllers::start(
                    &rt,
                    controllers,
                    b.fail_mode,
                    b.backend.clone(),
                ));
            }
            tracing::info!(bridge = %name, controllers = ?targets, "controllers set");
            Ok(())
        })
    }

    /// Sets what bridge `name` does without a controller.
    pub fn set_fail_mode(&self, name: &str, mode: FailMode) -> Result<(), Error> {
        let site = self.openflow.lock().clone();
        self.with_bridge_mut(name, |b| {
            b.fail_mode = mode;
            // Restart the connections under the new mode.
            if let (Some(c), Some(site)) = (b.controllers.take(), site) {
                let configs = c.configs();
                drop(c);
                b.controllers = Some(Controllers::start(
                    &site.rt,
                    &configs,
                    mode,
                    b.backend.clone(),
                ));
            }
            Ok(())
        })
    }

    /// The bridges' names.
    pub fn bridge_names(&self) -> Vec<String> {
        self.bridges.lock().keys().cloned().collect()
    }

    /// Periodic control-plane upkeep: flow timeouts, MAC aging, conntrack
    /// expiry, BPDU-guard events.
    pub fn tick(&self, now: Instant) {
        let bridges = self.bridges.lock();
        for (name, b) in bridges.iter() {
            let n = b.of.expire(now);
            if n > 0 {
                tracing::debug!(bridge = %name, expired = n, "flows expired");
            }
            b.of.expire_macs(now);
            b.ct.sweep(now);
            for port in b.of.apply_bpdu_guard() {
                tracing::warn!(bridge = %name, port = %port, "BPDU received on a port with bpdu_guard=true: port disabled (vswitchctl set-port {name} {port} enable)");
            }
            b.announce_changes();
        }
    }

    /// Stops every datapath thread (ports are dropped with them, which
    /// removes the TAPs vswitchd created).
    pub fn shutdown(&self) {
        let mut bridges = self.bridges.lock();
        bridges.clear();
    }
}
