//! Ports: attach, detach, policy, counters, and the in-memory ports'
//! inject / collect.

use super::error::Error;
use super::{names, Api, PortEntry};
use crate::ctl::hex::hex_encode;
use crate::datapath::egress::Egress;
use crate::ofproto::{PortInfo, PortKind, VlanMode};
use crate::openflow::wire::port::PortReason;
use crate::port::afpacket::{AfPacketConfig, AfPacketPort};
use crate::port::geneve::{GeneveConfig, GenevePort, TlvMapHandle};
use crate::port::internal::InternalPort;
use crate::port::mem::{MemHandle, MemPort};
use crate::port::tap::{TapConfig, TapPort};
use crate::port::Port;
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt;

/// A port's policy; `None` leaves a setting as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PortSettings {
    /// Access / native VLAN (`Some(None)` removes it).
    pub tag: Option<Option<u16>>,
    /// Trunked VLANs (empty: all).
    pub trunks: Option<Vec<u16>>,
    /// VLAN mode (`Some(None)`: derived from tag and trunks).
    pub vlan_mode: Option<Option<VlanMode>>,
    /// Disable the port when a BPDU arrives.
    pub bpdu_guard: Option<bool>,
    /// Addresses `normal` may learn on the port.
    pub mac_limit: Option<u32>,
    /// Whether flooding includes the port.
    pub flood: Option<bool>,
    /// Enabled (forwarding) or disabled.
    pub enable: Option<bool>,
    /// MTU enforced on egress.
    pub mtu: Option<u32>,
}

impl PortSettings {
    fn apply(&self, p: &mut PortInfo) {
        if let Some(t) = self.tag {
            p.tag = t;
        }
        if let Some(t) = &self.trunks {
            p.trunks = t.clone();
        }
        if let Some(m) = self.vlan_mode {
            p.vlan_mode = m;
        }
        if let Some(b) = self.bpdu_guard {
            p.bpdu_guard = b;
        }
        if let Some(n) = self.mac_limit {
            p.mac_limit = n;
        }
        if let Some(f) = self.flood {
            p.flood = f;
        }
        if let Some(e) = self.enable {
            p.enabled = e;
        }
        if let Some(m) = self.mtu {
            p.mtu = m;
        }
    }
}

/// A port to attach.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortSpec {
    /// Name (the interface's, for tap, internal and system ports).
    pub name: String,
    /// Type.
    pub kind: PortKind,
    /// OpenFlow number wanted (`ofport_request`); `None` picks the lowest
    /// free one.
    pub ofport: Option<u32>,
    /// Policy.
    pub settings: PortSettings,
    /// Options the port type reads itself (`remote_ip`, `key`,
    /// `vnet_hdr`, ...), checked by that type's configuration.
    pub type_options: Vec<(String, String)>,
}

impl PortSpec {
    /// A port of `kind` with default policy and options.
    pub fn new(name: &str, kind: PortKind) -> PortSpec {
        PortSpec {
            name: name.to_string(),
            kind,
            ofport: None,
            settings: PortSettings::default(),
            type_options: Vec::new(),
        }
    }
}

/// `add-port`'s reply.
#[derive(Debug, Clone, Serialize)]
pub struct PortAdded {
    /// Name.
    pub port: String,
    /// The OpenFlow number it got.
    pub ofport: u32,
    /// Type.
    #[serde(rename = "type")]
    pub kind: PortKind,
}

impl fmt::Display for PortAdded {
    fn fmt(&self, _: &mut fmt::Formatter<'_>) -> fmt::Result {
        Ok(())
    }
}

/// One port's counters (`dump-ports`).
#[derive(Debug, Clone, Serialize)]
pub struct PortCounters {
    /// Name.
    pub port: String,
    /// OpenFlow number.
    pub ofport: u32,
    /// Type.
    #[serde(rename = "type")]
    pub kind: String,
    /// Link state.
    pub link: crate::port::LinkState,
    /// MTU.
    pub mtu: u32,
    /// Frames received.
    pub rx_packets: u64,
    /// Bytes received.
    pub rx_bytes: u64,
    /// Frames dropped on receive.
    pub rx_dropped: u64,
    /// Receive errors.
    pub rx_errors: u64,
    /// Frames sent.
    pub tx_packets: u64,
    /// Bytes sent.
    pub tx_bytes: u64,
    /// Frames dropped on send.
    pub tx_dropped: u64,
    /// Send errors.
    pub tx_errors: u64,
    /// The port's own drops, by reason.
    pub drops: BTreeMap<String, u64>,
}

/// `dump-ports`.
#[derive(Debug, Clone, Serialize)]
pub struct PortsReply {
    /// Bridge.
    #[serde(skip)]
    pub bridge: String,
    /// Ports by OpenFlow number.
    pub ports: Vec<PortCounters>,
}

impl fmt::Display for PortsReply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{}: {} ports", self.bridge, self.ports.len())?;
        for s in &self.ports {
            writeln!(
                f,
                "  port {:>2}: rx pkts={}, bytes={}, drop={}, errs={}\n           tx pkts={}, bytes={}, drop={}, errs={}",
                s.ofport, s.rx_packets, s.rx_bytes, s.rx_dropped, s.rx_errors,
                s.tx_packets, s.tx_bytes, s.tx_dropped, s.tx_errors
            )?;
        }
        Ok(())
    }
}

/// Frames an in-memory port sent (`dummy-sent`).
#[derive(Debug, Clone, Serialize)]
pub struct SentReply {
    /// Port.
    pub port: String,
    /// The frames, hex.
    pub frames: Vec<String>,
}

impl fmt::Display for SentReply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for fr in &self.frames {
            writeln!(f, "{fr}")?;
        }
        Ok(())
    }
}

/// Refuses interfaces that must never be a switch port: loopback (frames
/// sent there come straight back in as received) and devices vswitchd owns
/// (another port's TAP would make a loop through the host). Our own are
/// refused by name uniqueness already; loopback is found by its flags.
fn check_system_device(name: &str) -> Result<(), Error> {
    const IFF_LOOPBACK: u32 = 0x8;
    let flags = std::fs::read_to_string(format!("/sys/class/net/{name}/flags"))
        .ok()
        .and_then(|s| u32::from_str_radix(s.trim().trim_start_matches("0x"), 16).ok());
    if name == "lo" || flags.is_some_and(|f| f & IFF_LOOPBACK != 0) {
        return Err(Error::RefusedDevice {
            device: name.to_string(),
            why: "it is a loopback interface (frames sent there come back as received)".to_string(),
        });
    }
    Ok(())
}

/// Opens the port object of `spec`'s type.
/// `allow_missing`: a system port whose interface does not exist yet starts
/// down and attaches when it appears (configured and restored ports).
/// `adopted` (an upgrade's handed-over fds): takes the device over instead
/// of opening it.
fn open_port(
    spec: &PortSpec,
    tlv: &TlvMapHandle,
    allow_missing: bool,
    adopted: Option<Vec<std::os::fd::OwnedFd>>,
) -> Result<(Box<dyn Port>, Option<MemHandle>), Error> {
    fn boxed<P: Port + 'static>(
        r: Result<P, crate::port::Error>,
    ) -> Result<(Box<dyn Port>, Option<MemHandle>), Error> {
        Ok((Box::new(r?), None))
    }
    let name = spec.name.as_str();
    let opts: Vec<(&str, &str)> = spec
        .type_options
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    if let Some(fds) = adopted {
        let tap = |fds: Vec<std::os::fd::OwnedFd>| {
            let fd = fds
                .into_iter()
                .next()
                .ok_or_else(|| crate::port::Error::config(name, "no fd handed over"))?;
            TapConfig::from_options(name, &opts).map(|c| (c, fd))
        };
        return match spec.kind {
            PortKind::Tap => boxed(tap(fds).and_then(|(c, fd)| TapPort::adopt(c, fd))),
            PortKind::Internal => boxed(tap(fds).and_then(|(c, fd)| InternalPort::adopt(c, fd))),
            PortKind::Geneve => boxed(
                GeneveConfig::from_options(name, &opts)
                    .and_then(|c| GenevePort::adopt(c, tlv.clone(), fds)),
            ),
            // Nothing of theirs to take over: open afresh.
            PortKind::Dummy | PortKind::System => open_port(spec, tlv, allow_missing, None),
        };
    }
    match spec.kind {
        PortKind::Dummy => {
            if let Some((k, v)) = spec.type_options.first() {
                return Err(crate::port::Error::Config {
                    port: name.to_string(),
                    msg: format!("unknown option {k}={v} for a dummy port"),
                }
                .into());
            }
            let (mut p, h) = MemPort::new(name);
            if let Some(m) = spec.settings.mtu {
                p.set_mtu(m);
            }
            Ok((Box::new(p), Some(h)))
        }
        PortKind::Tap => boxed(TapConfig::from_options(name, &opts).and_then(TapPort::open)),
        PortKind::Internal => {
            boxed(TapConfig::from_options(name, &opts).and_then(InternalPort::open))
        }
        PortKind::System => {
            check_system_device(name)?;
            boxed(AfPacketConfig::from_options(name, &opts).and_then(|mut c| {
                c.allow_missing = allow_missing;
                AfPacketPort::open(c)
            }))
        }
        PortKind::Geneve => boxed(
            GeneveConfig::from_options(name, &opts).and_then(|c| GenevePort::open(c, tlv.clone())),
        ),
    }
}

impl Api {
    /// Attaches a port.
    pub fn add_port(&self, bridge: &str, spec: &PortSpec) -> Result<PortAdded, Error> {
        self.attach_port(bridge, spec, false)
    }

    /// Attaches a port the configuration or the saved state names: a
    /// system port whose interface does not exist yet is added with its
    /// link down and attaches when the interface appears (a VM not started
    /// yet must not keep the switch from starting).
    pub fn add_configured_port(&self, bridge: &str, spec: &PortSpec) -> Result<PortAdded, Error> {
        self.attach_port(bridge, spec, true)
    }

    fn attach_port(
        &self,
        bridge: &str,
        spec: &PortSpec,
        allow_missing: bool,
    ) -> Result<PortAdded, Error> {
        names::check("port", &spec.name)?;
        let mut map = self.bridges.lock();
        if !map.contains_key(bridge) {
            return Err(Error::NoBridge(bridge.to_string()));
        }
        if let Some(owner) = names::owner(&map, &spec.name) {
            if map[bridge].ports.contains_key(&spec.name) {
                return Err(Error::PortExists {
                    bridge: bridge.to_string(),
                    port: spec.name.clone(),
                });
            }
            return Err(Error::NameInUse {
                name: spec.name.clone(),
                owner,
            });
        }
        let Some(b) = map.get_mut(bridge) else {
            return Err(Error::NoBridge(bridge.to_string()));
        };
        let no = match spec.ofport {
            Some(n) if b.of.with_ports(|p| p.get(n).is_some()) => {
                return Err(Error::OfportInUse {
                    bridge: bridge.to_string(),
                    ofport: n,
                })
            }
            Some(n) => n,
            None => b.of.free_port_no(),
        };
        let (p, mem) = open_port(spec, &b.tlv, allow_missing, self.take_adopted(&spec.name))?;
        // The tables learn the port (with its egress facts) before the
        // datapath does, so the datapath's own updates of them land on it.
        let mut info = PortInfo::new(no, &spec.name, spec.kind);
        Egress::of_port(p.as_ref(), spec.settings.mtu).fill(&mut info);
        spec.settings.apply(&mut info);
        b.of.add_port(info);
        b.workers.add_port(no, p);
        if spec.settings.mtu.is_some() {
            b.workers.set_mtu(no, spec.settings.mtu);
        }
        b.ports.insert(
            spec.name.clone(),
            PortEntry {
                no,
                kind: spec.kind,
                type_options: spec.type_options.clone(),
                mem,
                mtu_request: spec.settings.mtu,
            },
        );
        // OpenFlow sessions hear of it (PORT_STATUS ADD).
        let st = b.port_status();
        if let Some(s) = st.iter().find(|s| s.no == no) {
            let d = b.backend.describe(s);
            b.port_states.lock().insert(no, (d.config, d.state));
            b.backend.port_status(PortReason::Add, d);
        }
        tracing::info!(bridge = %bridge, port = %spec.name, ofport = no, kind = %spec.kind, "port added");
        Ok(PortAdded {
            port: spec.name.clone(),
            ofport: no,
            kind: spec.kind,
        })
    }

    /// Detaches a port (a TAP vswitchd created goes with it).
    pub fn del_port(&self, bridge: &str, port: &str) -> Result<(), Error> {
        let old = self.with_bridge_mut(bridge, |b| {
            let e = b.ports.remove(port).ok_or_else(|| Error::NoPort {
                bridge: bridge.to_string(),
                port: port.to_string(),
            })?;
            let st = b.port_status();
            let desc = st
                .iter()
                .find(|s| s.no == e.no)
                .map(|s| b.backend.describe(s));
            b.of.del_port(e.no);
            let old = b.workers.del_port(e.no);
            if let Some(d) = desc {
                b.backend.port_status(PortReason::Delete, d);
            }
            Ok(old)
        })?;
        // Deleted, not closed at exit: a device the port created goes too.
        if let Some(mut p) = old {
            p.on_delete();
        }
        tracing::info!(bridge = %bridge, port = %port, "port deleted");
        Ok(())
    }

    /// Changes a port's policy.
    pub fn set_port(&self, bridge: &str, port: &str, s: &PortSettings) -> Result<PortInfo, Error> {
        self.with_bridge_mut(bridge, |b| {
            let no = b.port(bridge, port)?.no;
            if let (Some(m), Some(e)) = (s.mtu, b.ports.get_mut(port)) {
                e.mtu_request = Some(m);
            }
            b.of.update_port(no, |p| s.apply(p));
            if s.mtu.is_some() {
                b.workers.set_mtu(no, s.mtu);
            }
            // Enabling or disabling is news to OpenFlow sessions now.
            b.announce_changes();
            b.of.with_ports(|p| p.get(no).cloned())
                .ok_or_else(|| Error::NoPort {
                    bridge: bridge.to_string(),
                    port: port.to_string(),
                })
        })
    }

    /// Port counters, all ports or one, by OpenFlow number.
    pub fn dump_ports(&self, bridge: &str, only: Option<&str>) -> Result<PortsReply, Error> {
        self.with_bridge(bridge, |b| {
            let mut st = b.port_status();
            if let Some(p) = only {
                st.retain(|s| s.name == p);
                if st.is_empty() {
                    return Err(Error::NoPort {
                        bridge: bridge.to_string(),
                        port: p.to_string(),
                    });
                }
            }
            st.sort_by_key(|s| s.no);
            let ports = st
                .into_iter()
                .map(|s| PortCounters {
                    port: s.name,
                    ofport: s.no,
                    kind: s.kind,
                    link: s.link,
                    mtu: s.mtu,
                    rx_packets: s.stats.rx_packets,
                    rx_bytes: s.stats.rx_bytes,
                    rx_dropped: s.stats.rx_dropped,
                    rx_errors: s.stats.rx_errors,
                    tx_packets: s.stats.tx_packets,
                    tx_bytes: s.stats.tx_bytes,
                    tx_dropped: s.stats.tx_dropped,
                    tx_errors: s.stats.tx_errors,
                    drops: s.drops.into_iter().collect(),
                })
                .collect();
            Ok(PortsReply {
                bridge: bridge.to_string(),
                ports,
            })
        })
    }

    /// Puts a frame into an in-memory port's receive side.
    pub fn inject(&self, bridge: &str, port: &str, frame: &[u8]) -> Result<(), Error> {
        self.with_bridge(bridge, |b| {
            let e = b.port(bridge, port)?;
            let h = e.mem.as_ref().ok_or_else(|| Error::NotDummy {
                op: "inject",
                port: port.to_string(),
                kind: e.kind,
            })?;
            if !h.inject(frame) {
                return Err(Error::QueueFull(port.to_string()));
            }
            b.workers.kick();
            Ok(())
        })
    }

    /// Takes the frames an in-memory port sent so far.
    pub fn dummy_sent(&self, bridge: &str, port: &str) -> Result<SentReply, Error> {
        self.with_bridge(bridge, |b| {
            let e = b.port(bridge, port)?;
            let h = e.mem.as_ref().ok_or_else(|| Error::NotDummy {
                op: "dummy-sent",
                port: port.to_string(),
                kind: e.kind,
            })?;
            Ok(SentReply {
                port: port.to_string(),
                frames: h.take_sent().iter().map(|f| hex_encode(f)).collect(),
            })
        })
    }
}
