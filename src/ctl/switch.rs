//! The daemon's state and the handling of control requests.
//!
//! A [`Switch`] holds the bridges; each [`Bridge`] owns its ofproto (tables,
//! port policy), its connection tracker, its drop counters and the handle of
//! its datapath thread. Requests are handled synchronously (the server runs
//! them on a blocking thread), and a request that is refused changes
//! nothing: everything is parsed and validated before the first change.

use super::config::{BridgeConfig, Config};
use super::proto::{Request, Response};
use crate::conntrack::{ChecksumPolicy, ConnTracker, TimeoutKind};
use crate::datapath::worker::{self, DpCommand, PortStatus, WorkerHandle};
use crate::datapath::{Datapath, DropCounters, DropReason};
use crate::flow::format::{format_flow_stats, FlowStats};
use crate::flow::parse::{parse_flow, parse_flow_file, parse_trace_flow, FlowCmd};
use crate::flow::{FlowKey, FlowSpec, PortNames};
use crate::ofproto::{
    trace::format_key, BridgeConfig as OfBridgeConfig, DpAction, FlowFilter, FlowMod, FlowModCmd,
    Ofproto, PortInfo, Trace, VlanMode,
};
use crate::port::afpacket::{AfPacketConfig, AfPacketPort};
use crate::port::geneve::{GeneveConfig, GenevePort, TlvMapHandle, TlvMapping};
use crate::port::internal::InternalPort;
use crate::port::mem::{MemHandle, MemPort};
use crate::port::tap::{TapConfig, TapPort};
use crate::port::Port;
use parking_lot::Mutex;
use serde_json::json;
use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Arc;
use std::time::Instant;

/// A port as the control plane remembers it.
#[derive(Debug)]
struct PortEntry {
    no: u32,
    kind: String,
    options: Vec<String>,
    mem: Option<MemHandle>,
}

/// One bridge.
pub struct Bridge {
    /// Tables and port policy.
    pub of: Arc<Ofproto>,
    /// Connection tracker.
    pub ct: Arc<ConnTracker>,
    /// Drop counters.
    pub drops: Arc<DropCounters>,
    worker: WorkerHandle,
    ports: BTreeMap<String, PortEntry>,
    /// Geneve TLV map, shared with the bridge's geneve ports.
    tlv: TlvMapHandle,
}

impl Bridge {
    fn new(name: &str, epoch: Instant) -> Result<Bridge, String> {
        let of = Arc::new(Ofproto::new(name, epoch));
        let ct = Arc::new(ConnTracker::default());
        let drops = Arc::new(DropCounters::default());
        let dp = Datapath::new(of.clone(), ct.clone(), drops.clone());
        let worker =
            worker::spawn(dp).map_err(|e| format!("cannot start the datapath thread: {e}"))?;
        Ok(Bridge {
            of,
            ct,
            drops,
            worker,
            ports: BTreeMap::new(),
            tlv: crate::port::geneve::new_tlv_map(),
        })
    }

    fn port_status(&self) -> Vec<PortStatus> {
        self.worker
            .ask(|reply| DpCommand::Ports { reply })
            .unwrap_or_default()
    }
}

/// Parsed `add-port` / `set-port` options.
#[derive(Debug, Default, Clone)]
struct PortOpts {
    kind: Option<String>,
    ofport: Option<u32>,
    tag: Option<Option<u16>>,
    trunks: Option<Vec<u16>>,
    vlan_mode: Option<Option<VlanMode>>,
    bpdu_guard: Option<bool>,
    mac_limit: Option<u32>,
    flood: Option<bool>,
    enable: Option<bool>,
    mtu: Option<u32>,
    // Options a port type interprets itself (remote_ip=, key=, ...).
    extra: Vec<(String, String)>,
}

fn parse_bool(k: &str, v: &str) -> Result<bool, String> {
    match v {
        "true" | "yes" | "on" | "1" => Ok(true),
        "false" | "no" | "off" | "0" => Ok(false),
        _ => Err(format!("{k}={v}: expected true or false")),
    }
}

fn parse_num<T: core::str::FromStr>(k: &str, v: &str, what: &str) -> Result<T, String> {
    v.parse().map_err(|_| format!("{k}={v}: expected {what}"))
}

fn parse_vid(k: &str, v: &str) -> Result<u16, String> {
    let n: u16 = parse_num(k, v, "a VLAN id (0..4095)")?;
    if n > 4095 {
        return Err(format!("{k}={v}: a VLAN id is 0..4095"));
    }
    Ok(n)
}

fn parse_port_opts(opts: &[String], for_add: bool) -> Result<PortOpts, String> {
    let mut o = PortOpts::default();
    for tok in opts {
        let (k, v) = match tok.split_once('=') {
            Some((k, v)) => (k.trim(), v.trim()),
            None => (tok.trim(), ""),
        };
        match (k, v) {
            ("type", v) if for_add => o.kind = Some(v.to_string()),
            ("ofport" | "ofport_request", v) if for_add => {
                let n: u32 = parse_num(k, v, "a port number (1..65279)")?;
                if n == 0 || n >= crate::flow::ofp_port::MAX {
                    return Err(format!("{k}={v}: port numbers are 1..65279"));
                }
                o.ofport = Some(n);
            }
            ("tag", "" | "none") => o.tag = Some(None),
            ("tag", v) => o.tag = Some(Some(parse_vid(k, v)?)),
            ("trunks", v) => {
                let mut t = Vec::new();
                for x in v.split(',').filter(|x| !x.is_empty()) {
                    t.push(parse_vid(k, x)?);
                }
                o.trunks = Some(t);
            }
            ("vlan_mode", "" | "none") => o.vlan_mode = Some(None),
            ("vlan_mode", v) => {
                o.vlan_mode = Some(Some(VlanMode::parse(v).ok_or_else(|| {
                    format!(
                        "vlan_mode={v}: expected access, trunk, native-tagged or native-untagged"
                    )
                })?))
            }
            ("bpdu_guard", v) => o.bpdu_guard = Some(parse_bool(k, v)?),
            ("mac_limit", v) => o.mac_limit = Some(parse_num(k, v, "a number of addresses")?),
            ("flood", v) => o.flood = Some(parse_bool(k, v)?),
            ("no-flood" | "no_flood", "") => o.flood = Some(false),
            ("enable", "") => o.enable = Some(true),
            ("disable", "") => o.enable = Some(false),
            ("mtu", v) => o.mtu = Some(parse_num(k, v, "an MTU in bytes")?),
            (k, v) if for_add && !v.is_empty() => o.extra.push((k.to_string(), v.to_string())),
            _ => return Err(format!("unknown port option '{tok}'")),
        }
    }
    Ok(o)
}

fn apply_policy(p: &mut PortInfo, o: &PortOpts) {
    if let Some(t) = o.tag {
        p.tag = t;
    }
    if let Some(t) = &o.trunks {
        p.trunks = t.clone();
    }
    if let Some(m) = o.vlan_mode {
        p.vlan_mode = m;
    }
    if let Some(b) = o.bpdu_guard {
        p.bpdu_guard = b;
    }
    if let Some(n) = o.mac_limit {
        p.mac_limit = n;
    }
    if let Some(f) = o.flood {
        p.flood = f;
    }
    if let Some(e) = o.enable {
        p.enabled = e;
    }
    if let Some(m) = o.mtu {
        p.mtu = m;
    }
}

/// A port that opened (or the reason it did not), in `open_port`'s shape.
fn opened<P: Port + 'static>(
    r: Result<P, crate::port::Error>,
) -> Result<(Box<dyn Port>, Option<MemHandle>), String> {
    r.map(|p| (Box::new(p) as Box<dyn Port>, None))
        .map_err(|e| e.to_string())
}

/// Opens the port object of a given type.
fn open_port(
    name: &str,
    kind: &str,
    o: &PortOpts,
    tlv: &TlvMapHandle,
) -> Result<(Box<dyn Port>, Option<MemHandle>), String> {
    let extra: Vec<(&str, &str)> = o
        .extra
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    match kind {
        "dummy" => {
            if let Some((k, _)) = o.extra.first() {
                return Err(format!("unknown option '{k}' for a dummy port"));
            }
            let (mut p, h) = MemPort::new(name);
            if let Some(m) = o.mtu {
                p.set_mtu(m);
            }
            Ok((Box::new(p), Some(h)))
        }
        "tap" => opened(TapConfig::from_options(name, &extra).and_then(TapPort::open)),
        "internal" => opened(TapConfig::from_options(name, &extra).and_then(InternalPort::open)),
        "system" => opened(AfPacketConfig::from_options(name, &extra).and_then(AfPacketPort::open)),
        "geneve" => opened(
            GeneveConfig::from_options(name, &extra).and_then(|c| GenevePort::open(c, tlv.clone())),
        ),
        other => Err(format!(
            "unknown port type '{other}' (supported: dummy, tap, internal, system, geneve)"
        )),
    }
}

fn hex_decode(s: &str) -> Result<Vec<u8>, String> {
    let clean: String = s
        .chars()
        .filter(|c| !c.is_whitespace() && *c != ':')
        .collect();
    let clean = clean.strip_prefix("0x").unwrap_or(&clean);
    if !clean.len().is_multiple_of(2) {
        return Err("hex frame has an odd number of digits".to_string());
    }
    (0..clean.len())
        .step_by(2)
        .map(|i| {
            u8::from_str_radix(&clean[i..i + 2], 16)
                .map_err(|_| format!("bad hex digits '{}' at offset {i}", &clean[i..i + 2]))
        })
        .collect()
}

/// A validated conntrack setting, applied once every setting parsed.
type CtOp = Box<dyn Fn(&ConnTracker)>;

/// A conntrack policy setting, validated before anything changes.
fn ct_setting(k: &str, v: &str) -> Result<CtOp, String> {
    Ok(match k {
        "checksum" | "ct_checksum" => {
            let p: ChecksumPolicy = v.parse().map_err(|e| format!("{k}={v}: {e}"))?;
            Box::new(move |ct: &ConnTracker| ct.set_checksum_policy(p))
        }
        "tcp_liberal" | "ct_tcp_liberal" => {
            let on = parse_bool(k, v)?;
            Box::new(move |ct: &ConnTracker| ct.set_tcp_liberal(on))
        }
        "tcp_seq_check" | "ct_tcp_seq_check" => {
            let on = parse_bool(k, v)?;
            Box::new(move |ct: &ConnTracker| ct.set_tcp_seq_check(on))
        }
        "max_conns" | "ct_max_conns" => {
            let n: u32 = parse_num(k, v, "a number of connections")?;
            Box::new(move |ct: &ConnTracker| ct.set_max_conns(n))
        }
        _ => {
            return Err(format!(
                "unknown conntrack setting '{k}' (checksum, tcp_liberal, tcp_seq_check, max_conns)"
            ))
        }
    })
}

/// `default=N` or `zone=Z,limit=N` (N = 0 means unlimited, as Open
/// vSwitch; `limit=none` removes a zone's own limit).
fn parse_limit(tok: &str) -> Result<(Option<u16>, Option<u32>), String> {
    let mut zone = None;
    let mut limit = None;
    let mut is_default = false;
    for part in tok.split(',') {
        let (k, v) = part
            .split_once('=')
            .ok_or_else(|| format!("'{tok}': expected default=N or zone=Z,limit=N"))?;
        match k {
            "default" => {
                is_default = true;
                let n: u32 = parse_num(k, v, "a connection count")?;
                limit = Some((n != 0).then_some(n));
            }
            "zone" => zone = Some(parse_num::<u16>(k, v, "a zone (0..65535)")?),
            "limit" if v == "none" => limit = Some(None),
            "limit" => {
                let n: u32 = parse_num(k, v, "a connection count")?;
                limit = Some(Some(if n == 0 { u32::MAX } else { n }));
            }
            _ => return Err(format!("'{tok}': unknown key '{k}'")),
        }
    }
    match (is_default, zone, limit) {
        (true, None, Some(l)) => Ok((None, l)),
        (false, Some(z), Some(l)) => Ok((Some(z), l)),
        _ => Err(format!("'{tok}': expected default=N or zone=Z,limit=N")),
    }
}

fn format_ct_stats(st: &crate::conntrack::CtStats) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "Connections: {} (max {})", st.entries, st.max_conns);
    let _ = writeln!(
        out,
        "Policy: checksum={} tcp_liberal={} tcp_seq_check={}",
        st.checksum, st.tcp_liberal, st.tcp_seq_check
    );
    for z in &st.zones {
        let lim = z.limit.map_or("none".to_string(), |l| l.to_string());
        let _ = writeln!(
            out,
            "  zone {}: total={} tcp={} udp={} icmp={} other={} limit={lim}",
            z.zone, z.total, z.tcp, z.udp, z.icmp, z.other
        );
    }
    let _ = writeln!(out, "Committed: {}  Expired: {}", st.committed, st.expired);
    let _ = writeln!(out, "Invalid verdicts:");
    let mut any = false;
    for (r, n) in &st.invalid {
        if *n > 0 {
            any = true;
            let _ = writeln!(out, "  {r:<24} {n:>10}");
        }
    }
    if !any {
        out.push_str("  (none)\n");
    }
    out
}

fn hex_encode(b: &[u8]) -> String {
    let mut s = String::with_capacity(b.len() * 2);
    for x in b {
        let _ = write!(s, "{x:02x}");
    }
    s
}

/// The daemon state.
pub struct Switch {
    started: Instant,
    epoch: Instant,
    bridges: Mutex<BTreeMap<String, Bridge>>,
}

impl Default for Switch {
    fn default() -> Self {
        Self::new()
    }
}

fn bridge_of<'a>(map: &'a BTreeMap<String, Bridge>, name: &str) -> Result<&'a Bridge, String> {
    map.get(name)
        .ok_or_else(|| format!("no bridge named {name}"))
}

impl Switch {
    /// An empty switch.
    pub fn new() -> Self {
        let now = Instant::now();
        Switch {
            started: now,
            epoch: now,
            bridges: Mutex::new(BTreeMap::new()),
        }
    }

    /// Builds the bridges, ports and flows of `cfg`. Stops at the first
    /// error (the daemon refuses to start on a bad configuration).
    pub fn apply_config(&self, cfg: &Config, base_dir: &std::path::Path) -> Result<(), String> {
        for b in &cfg.bridges {
            self.apply_bridge_config(b, base_dir)
                .map_err(|e| format!("bridge {}: {e}", b.name))?;
        }
        Ok(())
    }

    fn apply_bridge_config(
        &self,
        b: &BridgeConfig,
        base_dir: &std::path::Path,
    ) -> Result<(), String> {
        self.request_ok(Request::AddBr {
            bridge: b.name.clone(),
        })?;
        let mut settings: Vec<String> = b
            .settings
            .iter()
            .map(|(k, v)| match v {
                toml::Value::String(s) => format!("{k}={s}"),
                other => format!("{k}={other}"),
            })
            .collect();
        if let Some(f) = b.forward_bpdu {
            settings.push(format!("forward_bpdu={f}"));
        }
        if let Some(c) = &b.ct_checksum {
            settings.push(format!("ct_checksum={c}"));
        }
        if !settings.is_empty() {
            self.request_ok(Request::SetBridge {
                bridge: b.name.clone(),
                options: settings,
            })?;
        }
        if !b.ct_timeouts.is_empty() {
            let options = b
                .ct_timeouts
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            self.request_ok(Request::CtSetTimeout {
                bridge: b.name.clone(),
                zone: None,
                options,
            })?;
        }
        if !b.ct_limits.is_empty() {
            self.request_ok(Request::CtSetLimits {
                bridge: b.name.clone(),
                options: b.ct_limits.clone(),
            })?;
        }
        for p in &b.ports {
            self.request_ok(Request::AddPort {
                bridge: b.name.clone(),
                port: p.name.clone(),
                options: p.option_strings(),
            })
            .map_err(|e| format!("port {}: {e}", p.name))?;
        }
        for f in &b.flows {
            self.request_ok(Request::AddFlow {
                bridge: b.name.clone(),
                flow: f.clone(),
            })
            .map_err(|e| format!("flow '{f}': {e}"))?;
        }
        for file in &b.flow_files {
            let path = if file.is_absolute() {
                file.clone()
            } else {
                base_dir.join(file)
            };
            let text =
                std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
            self.request_ok(Request::AddFlows {
                bridge: b.name.clone(),
                text,
                source: path.display().to_string(),
            })?;
        }
        Ok(())
    }

    fn request_ok(&self, req: Request) -> Result<(), String> {
        let r = self.handle(req);
        if r.ok {
            Ok(())
        } else {
            Err(r.error.unwrap_or_default())
        }
    }

    /// Periodic control-plane upkeep: flow timeouts, MAC aging, BPDU-guard
    /// events.
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
        }
    }

    /// Stops every datapath thread (ports are dropped with them).
    pub fn shutdown(&self) {
        let mut bridges = self.bridges.lock();
        bridges.clear();
    }

    /// Handles one request.
    pub fn handle(&self, req: Request) -> Response {
        match self.handle_inner(req) {
            Ok(r) => r,
            Err(e) => Response::err(e),
        }
    }

    fn handle_inner(&self, req: Request) -> Result<Response, String> {
        let now = Instant::now();
        match req {
            Request::Version => {
                let up = now.saturating_duration_since(self.started).as_secs();
                Ok(Response::ok(
                    format!("vswitchd {} (up {up}s)", env!("CARGO_PKG_VERSION")),
                    json!({"version": env!("CARGO_PKG_VERSION"), "uptime_secs": up}),
                ))
            }
            Request::AddBr { bridge } => {
                let mut map = self.bridges.lock();
                if map.contains_key(&bridge) {
                    return Err(format!("bridge {bridge} already exists"));
                }
                if bridge.is_empty() || bridge.len() > 15 || bridge.contains(char::is_whitespace) {
                    return Err(format!(
                        "'{bridge}' is not a valid bridge name (1..15 characters, no spaces)"
                    ));
                }
                map.insert(bridge.clone(), Bridge::new(&bridge, self.epoch)?);
                Ok(Response::ok("", json!({"bridge": bridge})))
            }
            Request::DelBr { bridge } => {
                let mut map = self.bridges.lock();
                map.remove(&bridge)
                    .ok_or_else(|| format!("no bridge named {bridge}"))?;
                Ok(Response::ok("", json!({"bridge": bridge})))
            }
            Request::SetBridge { bridge, options } => {
                let map = self.bridges.lock();
                let b = bridge_of(&map, &bridge)?;
                let mut c: OfBridgeConfig = b.of.config();
                let mut ct_ops: Vec<CtOp> = Vec::new();
                for tok in &options {
                    let (k, v) = tok
                        .split_once('=')
                        .ok_or_else(|| format!("'{tok}': expected key=value"))?;
                    match k {
                        "forward_bpdu" | "forward-bpdu" => c.forward_bpdu = parse_bool(k, v)?,
                        "mac_aging" | "mac-aging-time" => {
                            c.mac_aging_secs = parse_num(k, v, "seconds")?
                        }
                        k if k.starts_with("ct_") => ct_ops.push(ct_setting(k, v)?),
                        _ => return Err(format!("unknown bridge setting '{tok}'")),
                    }
                }
                b.of.set_config(c.clone());
                for op in ct_ops {
                    op(&b.ct);
                }
                Ok(Response::ok("", json!(c)))
            }
            Request::Show { bridge } => self.show(bridge.as_deref()),
            Request::AddPort {
                bridge,
                port,
                options,
            } => {
                let mut map = self.bridges.lock();
                let b = map
                    .get_mut(&bridge)
                    .ok_or_else(|| format!("no bridge named {bridge}"))?;
                if b.ports.contains_key(&port) {
                    return Err(format!("port {port} already exists on {bridge}"));
                }
                if port.is_empty()
                    || port.len() > 15
                    || port.contains(char::is_whitespace)
                    || port.contains(',')
                {
                    return Err(format!(
                        "'{port}' is not a valid port name (1..15 characters, no spaces or commas)"
                    ));
                }
                let o = parse_port_opts(&options, true)?;
                let kind = o.kind.clone().unwrap_or_else(|| "system".to_string());
                let no = match o.ofport {
                    Some(n) => {
                        if b.of.with_ports(|p| p.get(n).is_some()) {
                            return Err(format!("ofport {n} is already used on {bridge}"));
                        }
                        n
                    }
                    None => b.of.free_port_no(),
                };
                let (p, mem) = open_port(&port, &kind, &o, &b.tlv)?;
                let mut info = PortInfo::new(no, &port, &kind);
                info.mtu = p.mtu();
                apply_policy(&mut info, &o);
                b.worker.send(DpCommand::AddPort { no, port: p });
                if o.mtu.is_some() {
                    b.worker.send(DpCommand::SetMtu { no, mtu: o.mtu });
                }
                b.of.add_port(info);
                b.ports.insert(
                    port.clone(),
                    PortEntry {
                        no,
                        kind: kind.clone(),
                        options,
                        mem,
                    },
                );
                tracing::info!(bridge = %bridge, port = %port, ofport = no, kind = %kind, "port added");
                Ok(Response::ok(
                    "",
                    json!({"port": port, "ofport": no, "type": kind}),
                ))
            }
            Request::DelPort { bridge, port } => {
                let mut map = self.bridges.lock();
                let b = map
                    .get_mut(&bridge)
                    .ok_or_else(|| format!("no bridge named {bridge}"))?;
                let e = b
                    .ports
                    .remove(&port)
                    .ok_or_else(|| format!("no port named {port} on {bridge}"))?;
                b.of.del_port(e.no);
                let old = b.worker.ask(|reply| DpCommand::DelPort { no: e.no, reply });
                drop(old);
                tracing::info!(bridge = %bridge, port = %port, "port deleted");
                Ok(Response::ok("", json!({"port": port})))
            }
            Request::SetPort {
                bridge,
                port,
                options,
            } => {
                let map = self.bridges.lock();
                let b = bridge_of(&map, &bridge)?;
                let e = b
                    .ports
                    .get(&port)
                    .ok_or_else(|| format!("no port named {port} on {bridge}"))?;
                let o = parse_port_opts(&options, false)?;
                b.of.update_port(e.no, |p| apply_policy(p, &o));
                if o.mtu.is_some() {
                    b.worker.send(DpCommand::SetMtu {
                        no: e.no,
                        mtu: o.mtu,
                    });
                }
                let info = b.of.with_ports(|p| p.get(e.no).cloned());
                Ok(Response::ok("", json!(info)))
            }
            Request::AddFlow { bridge, flow } => {
                let map = self.bridges.lock();
                one_flow_mod(bridge_of(&map, &bridge)?, &flow, FlowCmd::Add, now)
            }
            Request::AddFlows {
                bridge,
                text,
                source,
            } => {
                let map = self.bridges.lock();
                let b = bridge_of(&map, &bridge)?;
                let lines =
                    b.of.with_ports(|p| parse_flow_file(&text, p))
                        .map_err(|e| e.with_path(source.as_str()).to_string())?;
                let mods: Vec<FlowMod> =
                    lines.into_iter().map(|(c, s)| to_flow_mod(c, s)).collect();
                let s =
                    b.of.flow_mods(&mods, now)
                        .map_err(|e| format!("{source}: flow {}: {}", e.index + 1, e.message))?;
                Ok(Response::ok("", json!(s)))
            }
            Request::ModFlows {
                bridge,
                flow,
                strict,
            } => {
                let map = self.bridges.lock();
                let cmd = if strict {
                    FlowCmd::ModifyStrict
                } else {
                    FlowCmd::Modify
                };
                one_flow_mod(bridge_of(&map, &bridge)?, &flow, cmd, now)
            }
            Request::DelFlows {
                bridge,
                matches,
                strict,
            } => {
                let map = self.bridges.lock();
                let cmd = if strict {
                    FlowCmd::DeleteStrict
                } else {
                    FlowCmd::Delete
                };
                one_flow_mod(
                    bridge_of(&map, &bridge)?,
                    &matches.unwrap_or_default(),
                    cmd,
                    now,
                )
            }
            Request::DumpFlows {
                bridge,
                matches,
                names,
            } => {
                let map = self.bridges.lock();
                let b = bridge_of(&map, &bridge)?;
                let text = matches.unwrap_or_default();
                let ports = b.of.ports();
                let spec = parse_flow(&text, FlowCmd::Dump, &ports).map_err(|e| format!("{e}"))?;
                let m = to_flow_mod(FlowCmd::Dump, spec);
                let filter = FlowFilter::from_mod(&m.spec, m.table, false);
                let flows = b.of.dump_flows(&filter, now);
                let nm: Option<&dyn PortNames> = if names { Some(&ports) } else { None };
                let mut out = String::new();
                let mut arr = Vec::new();
                for f in &flows {
                    // ovs-ofctl prints milliseconds.
                    let ms = |d: std::time::Duration| {
                        std::time::Duration::from_millis(d.as_millis() as u64)
                    };
                    let st = FlowStats {
                        duration: ms(f.duration),
                        n_packets: f.n_packets,
                        n_bytes: f.n_bytes,
                        idle_age: ms(f.idle_age),
                        hard_age: Some(ms(f.hard_age)),
                    };
                    out.push_str(&format_flow_stats(&f.spec, &st, nm));
                    out.push('\n');
                    arr.push(json!({
                        "cookie": format!("{:#x}", f.spec.cookie),
                        "duration": f.duration.as_secs_f64(),
                        "table": f.spec.table,
                        "n_packets": f.n_packets,
                        "n_bytes": f.n_bytes,
                        "idle_timeout": f.spec.idle_timeout,
                        "hard_timeout": f.spec.hard_timeout,
                        "idle_age": f.idle_age.as_secs(),
                        "hard_age": f.hard_age.as_secs(),
                        "priority": f.spec.priority,
                        "match": crate::flow::format::format_match(&f.spec.matches, crate::flow::DEFAULT_PRIORITY, nm),
                        "actions": crate::flow::format::format_actions(&f.spec.actions, nm),
                    }));
                }
                Ok(Response::ok(out, json!({"flows": arr})))
            }
            Request::DumpPorts { bridge, port } => {
                let map = self.bridges.lock();
                let b = bridge_of(&map, &bridge)?;
                let mut st = b.port_status();
                if let Some(p) = &port {
                    st.retain(|s| &s.name == p);
                    if st.is_empty() {
                        return Err(format!("no port named {p} on {bridge}"));
                    }
                }
                let mut out = format!("{bridge}: {} ports\n", st.len());
                for s in &st {
                    let t = &s.stats;
                    let _ = writeln!(
                        out,
                        "  port {:>2}: rx pkts={}, bytes={}, drop={}, errs={}\n           tx pkts={}, bytes={}, drop={}, errs={}",
                        s.no, t.rx_packets, t.rx_bytes, t.rx_dropped, t.rx_errors, t.tx_packets, t.tx_bytes, t.tx_dropped, t.tx_errors
                    );
                }
                let arr: Vec<_> = st
                    .iter()
                    .map(|s| {
                        json!({
                            "port": s.name, "ofport": s.no, "type": s.kind,
                            "link": s.link, "mtu": s.mtu,
                            "rx_packets": s.stats.rx_packets, "rx_bytes": s.stats.rx_bytes,
                            "rx_dropped": s.stats.rx_dropped, "rx_errors": s.stats.rx_errors,
                            "tx_packets": s.stats.tx_packets, "tx_bytes": s.stats.tx_bytes,
                            "tx_dropped": s.stats.tx_dropped, "tx_errors": s.stats.tx_errors,
                            "drops": s.drops.iter().map(|(k, v)| (k.clone(), *v)).collect::<BTreeMap<_, _>>(),
                        })
                    })
                    .collect();
                Ok(Response::ok(out, json!({"ports": arr})))
            }
            Request::DumpDrops { bridge } => {
                let map = self.bridges.lock();
                let b = bridge_of(&map, &bridge)?;
                let (_, port_drops) = b
                    .worker
                    .ask(|reply| DpCommand::Stats { reply })
                    .unwrap_or_default();
                let mut all: BTreeMap<String, (u64, &'static str)> = BTreeMap::new();
                for (r, n) in b.drops.snapshot() {
                    all.insert(r.name(), (n, r.describe()));
                }
                for (p, n) in port_drops {
                    let r = DropReason::Port(p);
                    all.entry(r.name()).or_insert((0, r.describe())).0 += n;
                }
                let mut out = format!("drops on {bridge}:\n");
                let mut any = false;
                for (name, (n, why)) in &all {
                    if *n > 0 {
                        any = true;
                        let _ = writeln!(out, "  {name:<34} {n:>10}  {why}");
                    }
                }
                if !any {
                    out.push_str("  (none)\n");
                }
                let total: u64 = all.values().map(|(n, _)| n).sum();
                let j: BTreeMap<String, u64> = all.into_iter().map(|(k, (n, _))| (k, n)).collect();
                Ok(Response::ok(
                    out,
                    json!({"bridge": bridge, "total": total, "drops": j}),
                ))
            }
            Request::DumpDpFlows { bridge } => {
                let map = self.bridges.lock();
                let b = bridge_of(&map, &bridge)?;
                let flows = b
                    .worker
                    .ask(|reply| DpCommand::DpFlows { reply })
                    .unwrap_or_default();
                let (stats, _) = b
                    .worker
                    .ask(|reply| DpCommand::Stats { reply })
                    .unwrap_or_default();
                let mut out = format!(
                    "{bridge}: packets:{} emc_hits:{} megaflow_hits:{} upcalls:{} revalidations:{} recirculations:{} megaflows:{}\n",
                    stats.packets, stats.emc_hits, stats.megaflow_hits, stats.upcalls, stats.revalidations, stats.recirculations, stats.megaflows
                );
                for f in &flows {
                    let used = f
                        .used_secs
                        .map_or("never".to_string(), |s| format!("{s:.3}s"));
                    let _ = writeln!(
                        out,
                        "{}, packets:{}, bytes:{}, used:{used}, actions:{}",
                        f.matches, f.packets, f.bytes, f.actions
                    );
                }
                Ok(Response::ok(out, json!({"stats": stats, "flows": flows})))
            }
            Request::Trace {
                bridge,
                flow,
                packet,
                ct_next,
            } => {
                let map = self.bridges.lock();
                let b = bridge_of(&map, &bridge)?;
                self.trace(
                    b,
                    &bridge,
                    &flow,
                    packet.as_deref(),
                    ct_next.as_deref(),
                    now,
                )
            }
            Request::Inject { bridge, port, hex } => {
                let map = self.bridges.lock();
                let b = bridge_of(&map, &bridge)?;
                let e = b
                    .ports
                    .get(&port)
                    .ok_or_else(|| format!("no port named {port} on {bridge}"))?;
                let frame = hex_decode(&hex)?;
                let h = e.mem.as_ref().ok_or_else(|| {
                    format!("inject needs a dummy port; {port} is type={}", e.kind)
                })?;
                if !h.inject(&frame) {
                    return Err(format!("receive queue of {port} is full"));
                }
                b.worker.send(DpCommand::Kick);
                Ok(Response::ok(
                    "",
                    json!({"port": port, "bytes": frame.len()}),
                ))
            }
            Request::DummySent { bridge, port } => {
                let map = self.bridges.lock();
                let b = bridge_of(&map, &bridge)?;
                let e = b
                    .ports
                    .get(&port)
                    .ok_or_else(|| format!("no port named {port} on {bridge}"))?;
                let h = e.mem.as_ref().ok_or_else(|| {
                    format!("dummy-sent needs a dummy port; {port} is type={}", e.kind)
                })?;
                let frames: Vec<String> = h.take_sent().iter().map(|f| hex_encode(f)).collect();
                let mut out = String::new();
                for f in &frames {
                    out.push_str(f);
                    out.push('\n');
                }
                Ok(Response::ok(out, json!({"port": port, "frames": frames})))
            }
            Request::Capture {
                bridge,
                port,
                count,
                seconds,
                file,
            } => {
                let secs = match (count, seconds) {
                    (_, Some(s)) if s == 0 || s > 3600 => {
                        return Err(format!("--seconds {s}: a capture lasts 1..3600 seconds"))
                    }
                    (None, None) => Some(10),
                    (_, s) => s,
                };
                let path = std::path::PathBuf::from(&file);
                if !path.is_absolute() {
                    return Err(format!("{file}: the capture file must be an absolute path"));
                }
                // Find the port, then let go of the bridges: a capture runs
                // for seconds and must not block other requests.
                let (no, tx) = {
                    let map = self.bridges.lock();
                    let b = bridge_of(&map, &bridge)?;
                    let e = b
                        .ports
                        .get(&port)
                        .ok_or_else(|| format!("no port named {port} on {bridge}"))?;
                    (e.no, b.worker.sender())
                };
                let limits = crate::port::capture::CaptureLimits {
                    count,
                    duration: secs.map(std::time::Duration::from_secs),
                };
                let (cap, handle) = crate::port::capture::Capture::start(&path, limits)
                    .map_err(|e| format!("{file}: {e}"))?;
                tx.send(DpCommand::SetCapture {
                    no,
                    capture: Some(handle),
                });
                let sum = cap.wait().map_err(|e| format!("{file}: {e}"));
                tx.send(DpCommand::SetCapture { no, capture: None });
                let sum = sum?;
                Ok(Response::ok(
                    format!(
                        "{}: {} frames written, {} dropped (writer too slow)\n",
                        sum.path.display(),
                        sum.written,
                        sum.dropped
                    ),
                    json!({"file": sum.path, "written": sum.written, "dropped": sum.dropped}),
                ))
            }
            Request::DumpConntrack { bridge, zone } => {
                let map = self.bridges.lock();
                let b = bridge_of(&map, &bridge)?;
                let conns = b.ct.dump(zone, now);
                let mut out = String::new();
                for c in &conns {
                    out.push_str(&c.format_ovs());
                    out.push('\n');
                }
                Ok(Response::ok(out, json!({"connections": conns})))
            }
            Request::FlushConntrack { bridge, zone } => {
                let map = self.bridges.lock();
                let b = bridge_of(&map, &bridge)?;
                let n = b.ct.flush(zone);
                Ok(Response::ok(
                    format!("{n} connections flushed\n"),
                    json!({"flushed": n}),
                ))
            }
            Request::CtStats { bridge } => {
                let map = self.bridges.lock();
                let b = bridge_of(&map, &bridge)?;
                let st = b.ct.stats();
                Ok(Response::ok(format_ct_stats(&st), json!(st)))
            }
            Request::SetCt { bridge, options } => {
                let map = self.bridges.lock();
                let b = bridge_of(&map, &bridge)?;
                let mut ops: Vec<CtOp> = Vec::new();
                for tok in &options {
                    let (k, v) = tok
                        .split_once('=')
                        .ok_or_else(|| format!("'{tok}': expected key=value"))?;
                    ops.push(ct_setting(k, v)?);
                }
                for op in ops {
                    op(&b.ct);
                }
                let st = b.ct.stats();
                Ok(Response::ok(
                    format!(
                        "checksum={} tcp_liberal={} tcp_seq_check={} max_conns={}\n",
                        st.checksum, st.tcp_liberal, st.tcp_seq_check, st.max_conns
                    ),
                    json!({"checksum": st.checksum, "tcp_liberal": st.tcp_liberal, "tcp_seq_check": st.tcp_seq_check, "max_conns": st.max_conns}),
                ))
            }
            Request::CtSetLimits { bridge, options } => {
                let map = self.bridges.lock();
                let b = bridge_of(&map, &bridge)?;
                let mut sets: Vec<(Option<u16>, Option<u32>)> = Vec::new();
                for tok in &options {
                    sets.push(parse_limit(tok)?);
                }
                for (z, l) in sets {
                    b.ct.set_limit(z, l);
                }
                Ok(Response::ok("", json!({})))
            }
            Request::CtSetTimeout {
                bridge,
                zone,
                options,
            } => {
                let map = self.bridges.lock();
                let b = bridge_of(&map, &bridge)?;
                let mut sets = Vec::new();
                for tok in &options {
                    let (k, v) = tok
                        .split_once('=')
                        .ok_or_else(|| format!("'{tok}': expected NAME=SECONDS"))?;
                    let kind = k
                        .parse::<TimeoutKind>()
                        .map_err(|e| format!("'{tok}': {e}"))?;
                    let secs: u32 = parse_num(k, v, "seconds")?;
                    if secs == 0 {
                        return Err(format!("'{tok}': a timeout must be at least 1 second"));
                    }
                    sets.push((kind, secs));
                }
                for (kind, secs) in sets {
                    b.ct.set_timeout(zone, kind, secs);
                }
                Ok(Response::ok("", json!({})))
            }
            Request::FdbShow { bridge } => {
                let map = self.bridges.lock();
                let b = bridge_of(&map, &bridge)?;
                let fdb = b.of.fdb(now);
                let mut out = " port  VLAN  MAC                Age\n".to_string();
                for e in &fdb {
                    let _ = writeln!(out, "{:>5}  {:>4}  {}  {:>3}", e.port, e.vlan, e.mac, e.age);
                }
                Ok(Response::ok(out, json!({"fdb": fdb})))
            }
            Request::FdbFlush { bridge } => {
                let map = self.bridges.lock();
                let b = bridge_of(&map, &bridge)?;
                b.of.flush_fdb();
                Ok(Response::ok("table successfully flushed\n", json!({})))
            }
            Request::AddTlvMap { bridge, mappings } => {
                let map = self.bridges.lock();
                let b = bridge_of(&map, &bridge)?;
                let add = TlvMapping::parse_list(&mappings)?;
                let new = b.tlv.load().with_added(&add)?;
                b.tlv.store(Arc::new(new));
                Ok(Response::ok("", json!({"bridge": bridge, "added": add})))
            }
            Request::DelTlvMap { bridge, mappings } => {
                let map = self.bridges.lock();
                let b = bridge_of(&map, &bridge)?;
                let new = match &mappings {
                    Some(m) => b.tlv.load().with_deleted(&TlvMapping::parse_list(m)?)?,
                    None => Default::default(),
                };
                b.tlv.store(Arc::new(new));
                Ok(Response::ok("", json!({"bridge": bridge})))
            }
            Request::DumpTlvMap { bridge } => {
                let map = self.bridges.lock();
                let b = bridge_of(&map, &bridge)?;
                let t = b.tlv.load();
                let all: Vec<TlvMapping> = t.mappings().copied().collect();
                Ok(Response::ok(
                    format!("NXT_TLV_TABLE_REPLY:\n{}", t.format_ovs()),
                    json!({
                        "bridge": bridge,
                        "max_option_space": crate::packet::TUN_METADATA_FIELDS * usize::from(crate::port::geneve::MAX_TLV_LEN),
                        "max_fields": crate::packet::TUN_METADATA_FIELDS,
                        "allocated_option_space": t.allocated_space(),
                        "mappings": all,
                    }),
                ))
            }
        }
    }

    fn show(&self, only: Option<&str>) -> Result<Response, String> {
        let map = self.bridges.lock();
        if let Some(b) = only {
            bridge_of(&map, b)?;
        }
        let mut out = String::new();
        let mut arr = Vec::new();
        for (name, b) in map.iter() {
            if only.is_some_and(|o| o != name) {
                continue;
            }
            let status = b.port_status();
            let cfg = b.of.config();
            let _ = writeln!(
                out,
                "bridge {name}: {} flows, forward_bpdu={}",
                b.of.n_flows(),
                cfg.forward_bpdu
            );
            let mut ports = Vec::new();
            for (pname, e) in &b.ports {
                let info = b.of.with_ports(|p| p.get(e.no).cloned());
                let st = status.iter().find(|s| s.no == e.no);
                let link = st.map_or("unknown".to_string(), |s| {
                    format!("{:?}", s.link).to_lowercase()
                });
                let mtu = st.map_or(0, |s| s.mtu);
                let mut extra = String::new();
                if let Some(i) = &info {
                    if !i.enabled {
                        extra.push_str(" disabled");
                    }
                    if let Some(t) = i.tag {
                        let _ = write!(extra, " tag={t}");
                    }
                    if !i.trunks.is_empty() {
                        let t: Vec<String> = i.trunks.iter().map(|t| t.to_string()).collect();
                        let _ = write!(extra, " trunks={}", t.join(","));
                    }
                    if i.vlan_mode.is_some() {
                        let _ = write!(extra, " vlan_mode={}", i.effective_vlan_mode().name());
                    }
                    if i.bpdu_guard {
                        extra.push_str(" bpdu_guard=true");
                    }
                }
                let _ = writeln!(
                    out,
                    "    port {:>2}: {pname} (type={}) link={link} mtu={mtu}{extra}",
                    e.no, e.kind
                );
                ports.push(json!({
                    "port": pname, "ofport": e.no, "type": e.kind, "link": link, "mtu": mtu,
                    "options": e.options, "policy": info,
                }));
            }
            arr.push(json!({"bridge": name, "flows": b.of.n_flows(), "forward_bpdu": cfg.forward_bpdu, "ports": ports}));
        }
        Ok(Response::ok(out, json!({"bridges": arr})))
    }

    fn trace(
        &self,
        b: &Bridge,
        bridge: &str,
        flow: &str,
        packet: Option<&str>,
        ct_next: Option<&str>,
        now: Instant,
    ) -> Result<Response, String> {
        let ports = b.of.ports();
        // With a real packet, conntrack is consulted (without changing its
        // state) at each ct, so the trace shows the verdict the packet
        // would really get, with the reason and checksum values when it is
        // invalid. Without one, --ct-next says what to assume.
        let mut pkt: Option<(Vec<u8>, crate::packet::PacketMeta)> = None;
        let mut key = if let Some(hex) = packet {
            let frame = hex_decode(hex)?;
            let base = parse_trace_flow(flow, &ports).map_err(|e| format!("{e}"))?;
            let mut meta = crate::packet::PacketMeta {
                in_port: base.in_port(),
                ..Default::default()
            };
            let mut k = FlowKey::default();
            crate::flow::extract::extract(&frame, &mut meta, &mut k).map_err(|e| {
                format!(
                    "the packet does not parse: {e} (the datapath drops it as {})",
                    DropReason::from_wire(e)
                )
            })?;
            pkt = Some((frame, meta));
            k
        } else {
            parse_trace_flow(flow, &ports).map_err(|e| format!("{e}"))?
        };
        let ct_bits = parse_ct_next(ct_next)?;
        let mut out = String::new();
        let mut passes = Vec::new();
        let mut ct_invalid: Option<crate::conntrack::CtInvalidReason> = None;
        for pass in 0..crate::datapath::MAX_PASSES {
            let mut tr = Trace::default();
            let t = b.of.translate_traced(&key, now, &mut tr);
            if pass > 0 {
                let _ = writeln!(out, "\n===============================================================================");
                let _ = writeln!(
                    out,
                    "recirc({:#x}) - resume conntrack with ct_state={}",
                    key.recirc_id(),
                    ct_state_names(key.ct_state())
                );
                let _ = writeln!(out, "===============================================================================\n");
            }
            let _ = writeln!(out, "Flow: {}\n", format_key(&key, Some(&ports)));
            let title = format!("bridge(\"{bridge}\")");
            let _ = writeln!(out, "{title}\n{}", "-".repeat(title.len()));
            out.push_str(&tr.render_body(Some(&ports)));
            out.push('\n');
            // A pipeline drop of a packet conntrack judged invalid is
            // counted under conntrack's reason, as the datapath does.
            // An action that stops the translation (double_vlan_push,
            // pop_vlan_untagged, too_many_vlans, ttl_exceeded...) leaves its
            // reason in the final Drop action rather than in `t.drop` (the
            // datapath counts it when it executes that action): the trace
            // names it all the same.
            let stopped = match t.actions.last() {
                Some(DpAction::Drop(r)) => Some(*r),
                _ => None,
            };
            let drop = t
                .drop
                .or(stopped)
                .map(|x| DropReason::after_pipeline(x, ct_invalid));
            tr.drop = drop.map(Into::into);
            out.push_str(&tr.render_result(Some(&ports)));
            if let Some((frame, meta)) = &pkt {
                out.push_str(&egress_report(frame, meta, &key, &t.actions, &ports));
            }
            let mut pass_json = json!({
                "flow": format_key(&key, Some(&ports)),
                "datapath_actions": crate::ofproto::format_dp_actions(&t.actions),
                "drop_reason": drop.map(|d| d.name()),
            });
            // Follow a recirculation like ofproto/trace does.
            let mut next = None;
            let mut ct_state = ct_bits;
            let mut ct_zone = 0;
            let mut ct_mark = 0;
            for a in &t.actions {
                match a {
                    DpAction::Ct {
                        zone,
                        commit,
                        force,
                        mark,
                    } => {
                        ct_zone = *zone;
                        if let Some((frame, meta)) = &pkt {
                            let mut m = meta.clone();
                            m.ct_state = crate::packet::CtState(key.ct_state());
                            m.ct_zone = key.ct_zone();
                            let params = crate::conntrack::CtParams {
                                zone: *zone,
                                commit: *commit,
                                force: *force,
                                set_mark: *mark,
                            };
                            let v = b.ct.peek(frame, &key, &m, &params, now);
                            ct_state = v.state;
                            ct_mark = v.mark;
                            ct_invalid = v.invalid.map(|d| d.reason);
                            let _ = write!(
                                out,
                                "Conntrack (zone {zone}): ct_state={}",
                                ct_state_names(v.state)
                            );
                            if let Some(d) = &v.invalid {
                                let _ = write!(out, ", invalid: {d}");
                                pass_json["ct_invalid"] = json!({
                                    "reason": d.reason.name(),
                                    "detail": d.detail,
                                    "expected": d.expected,
                                    "received": d.received,
                                });
                            }
                            out.push('\n');
                            pass_json["ct_state"] = json!(ct_state_names(v.state));
                        }
                    }
                    DpAction::Recirc(id) => next = Some(*id),
                    _ => {}
                }
            }
            passes.push(pass_json);
            match next {
                Some(id) => {
                    key.set_recirc_id(id);
                    key.set_ct_state(ct_state);
                    key.set_ct_zone(ct_zone);
                    key.set_ct_mark(ct_mark);
                }
                None => break,
            }
        }
        Ok(Response::ok(out, json!({"passes": passes})))
    }
}

/// With a real packet, what the datapath would do at each egress: the
/// actions are applied to a copy, and each output is checked against the
/// port's MTU (the `mtu_exceeded` rule), so `trace --packet` shows the
/// drops that happen after the tables too.
fn egress_report(
    frame: &[u8],
    meta: &crate::packet::PacketMeta,
    key: &FlowKey,
    actions: &[DpAction],
    ports: &crate::ofproto::Ports,
) -> String {
    use crate::datapath::{execute, pmtu};
    let mut p = crate::packet::PacketBuf::from_slice(frame);
    p.meta = meta.clone();
    let mut out = String::new();
    for a in actions {
        match a {
            DpAction::SetField { field, value, mask } => {
                execute::set_field(&mut p, key, *field, *value, *mask);
            }
            DpAction::PushVlan { tpid, tci } => {
                execute::push_vlan(&mut p, *tpid, *tci);
            }
            DpAction::PopVlan if !execute::pop_vlan(&mut p) => {
                let _ = writeln!(
                    out,
                    "Egress: pop_vlan on an untagged frame: dropped (pop_vlan_untagged)"
                );
                return out;
            }
            DpAction::SetVlanTci { tci, mask } => {
                execute::set_vlan_tci(&mut p, *tci, *mask);
            }
            DpAction::Output(no) => {
                let Some(info) = ports.get(*no) else { continue };
                // Geneve over IPv4 without options: 50 bytes around the
                // inner IP packet (the datapath uses the port's own figure).
                let overhead = info.is_tunnel().then_some(36);
                let size = pmtu::counted_len_pkt(&p, overhead);
                if size > info.mtu as usize {
                    let report = pmtu::reported_mtu(&p, info.mtu, overhead);
                    let _ = writeln!(
                        out,
                        "Egress port {} ({}): {} bytes count against MTU {}: dropped (mtu_exceeded); the sender is told the path MTU is {report}",
                        no, info.name, size, info.mtu
                    );
                } else {
                    let _ = writeln!(
                        out,
                        "Egress port {} ({}): {} bytes on the wire, fits MTU {}",
                        no,
                        info.name,
                        p.len().max(if info.kind == "system" { 60 } else { 0 }),
                        info.mtu
                    );
                }
            }
            _ => {}
        }
    }
    out
}

fn ct_state_names(bits: u8) -> String {
    let v: Vec<&str> = crate::packet::CtState::NAMES
        .iter()
        .filter(|(b, _)| bits & b != 0)
        .map(|(_, n)| *n)
        .collect();
    v.join("|")
}

fn parse_ct_next(s: Option<&str>) -> Result<u8, String> {
    let Some(s) = s else {
        return Ok(crate::packet::CtState::TRK | crate::packet::CtState::NEW);
    };
    let mut bits = 0;
    for w in s.split([',', '|', '+']).filter(|w| !w.is_empty()) {
        let b = crate::packet::CtState::NAMES
            .iter()
            .find(|(_, n)| *n == w)
            .map(|(b, _)| *b)
            .ok_or_else(|| format!("--ct-next: unknown ct_state flag '{w}'"))?;
        bits |= b;
    }
    Ok(bits | crate::packet::CtState::TRK)
}

/// `add-flow`, `mod-flows`, `del-flows`: one line, parsed with the
/// bridge's port names, applied (or refused with nothing changed).
fn one_flow_mod(b: &Bridge, text: &str, cmd: FlowCmd, now: Instant) -> Result<Response, String> {
    let spec =
        b.of.with_ports(|p| parse_flow(text, cmd, p))
            .map_err(|e| e.to_string())?;
    let s =
        b.of.flow_mods(&[to_flow_mod(cmd, spec)], now)
            .map_err(|e| e.message)?;
    Ok(Response::ok("", json!(s)))
}

/// Maps a parsed line to a flow-mod. Modify/delete/dump without an explicit
/// `table=` concern every table, as ovs-ofctl.
fn to_flow_mod(cmd: FlowCmd, spec: FlowSpec) -> FlowMod {
    let (c, all_tables) = match cmd {
        FlowCmd::Add => (FlowModCmd::Add, false),
        FlowCmd::Modify => (FlowModCmd::Modify { strict: false }, true),
        FlowCmd::ModifyStrict => (FlowModCmd::Modify { strict: true }, true),
        FlowCmd::Delete | FlowCmd::Dump => (FlowModCmd::Delete { strict: false }, true),
        FlowCmd::DeleteStrict => (FlowModCmd::Delete { strict: true }, true),
    };
    let table = if all_tables && spec.table == crate::flow::parse::ALL_TABLES {
        None
    } else {
        Some(spec.table)
    };
    FlowMod {
        cmd: c,
        spec,
        table,
    }
}
