//! A two-port switch running `flows/stateful-firewall.flows`, for the
//! conntrack pipeline tests (`ct_pipeline.rs`, `ct_smoltcp.rs`), and the
//! edits those tests and `daemon_ct.rs` make to conntrack_common's frames
//! (server-side addresses, a corrupted TCP checksum).
//!
//! Everything is the production path: the flow file goes through the
//! ovs-ofctl parser and `Ofproto::flow_mods`, frames enter through
//! in-memory ports (`vm1` = OpenFlow port 1, `vm2` = port 2) and the
//! datapath polls them with a simulated clock (`base + t`), so conntrack
//! timeouts are exercised without sleeping.
#![allow(dead_code)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use vswitch::conntrack::{ConnInfo, ConnTracker, CtInvalidReason, TcpState};
use vswitch::datapath::{Datapath, DropCounters, DropReason};
use vswitch::flow::{format_flow, parse_flow_file, FlowCmd};
use vswitch::ofproto::{FlowDump, FlowMod, FlowModCmd, Ofproto, PortInfo};
use vswitch::port::mem::{MemHandle, MemPort};

/// The firewall under test, read from the repository so the tests follow
/// the file operators load.
pub fn firewall_flows() -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/flows/stateful-firewall.flows");
    std::fs::read_to_string(path).expect("flows/stateful-firewall.flows")
}

/// OpenFlow port numbers of the two VM ports.
pub const VM1: u32 = 1;
pub const VM2: u32 = 2;

/// A bridge with ports `vm1` and `vm2`, the stateful firewall loaded.
pub struct Switch {
    pub dp: Datapath,
    pub of: Arc<Ofproto>,
    pub ct: Arc<ConnTracker>,
    pub drops: Arc<DropCounters>,
    pub vm1: MemHandle,
    pub vm2: MemHandle,
    pub base: Instant,
}

impl Switch {
    pub fn new() -> Switch {
        Switch::with_tracker(ConnTracker::default())
    }

    pub fn with_tracker(ct: ConnTracker) -> Switch {
        let base = Instant::now();
        let of = Arc::new(Ofproto::new("br0", base));
        let ct = Arc::new(ct);
        let drops = Arc::new(DropCounters::default());
        let mut dp = Datapath::new(of.clone(), ct.clone(), drops.clone());
        let (p1, vm1) = MemPort::new("vm1");
        let (p2, vm2) = MemPort::new("vm2");
        of.add_port(PortInfo::new(VM1, "vm1", vswitch::ofproto::PortKind::Dummy));
        of.add_port(PortInfo::new(VM2, "vm2", vswitch::ofproto::PortKind::Dummy));
        dp.add_port(VM1, Box::new(p1));
        dp.add_port(VM2, Box::new(p2));
        let lines = of
            .with_ports(|p| parse_flow_file(&firewall_flows(), p))
            .expect("the firewall flow file parses");
        let mods: Vec<FlowMod> = lines
            .into_iter()
            .map(|(cmd, spec)| {
                assert_eq!(cmd, FlowCmd::Add, "the file only adds flows");
                FlowMod {
                    cmd: FlowModCmd::Add,
                    table: Some(spec.table),
                    spec,
                }
            })
            .collect();
        let n_lines = firewall_flows()
            .lines()
            .filter(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
            .count();
        assert_eq!(mods.len(), n_lines, "every flow of the file");
        of.flow_mods(&mods, base).expect("flows apply");
        Switch {
            dp,
            of,
            ct,
            drops,
            vm1,
            vm2,
            base,
        }
    }

    pub fn at(&self, t: Duration) -> Instant {
        self.base + t
    }

    pub fn handle(&self, port: u32) -> &MemHandle {
        match port {
            VM1 => &self.vm1,
            VM2 => &self.vm2,
            _ => panic!("no port {port}"),
        }
    }

    /// Injects `frame` on `port`, runs the datapath at `base + t` until the
    /// ports are drained, and returns what left through the other port.
    /// Nothing may come back out of the ingress port.
    pub fn send(&mut self, port: u32, frame: &[u8], t: Duration) -> Vec<Vec<u8>> {
        assert!(self.handle(port).inject(frame), "inject queue full");
        let now = self.at(t);
        for _ in 0..100 {
            if self.dp.poll_once(now) == 0 {
                break;
            }
        }
        let back = self.handle(port).take_sent();
        assert!(back.is_empty(), "reflected to the ingress port: {back:?}");
        let other = if port == VM1 { VM2 } else { VM1 };
        self.handle(other).take_sent()
    }

    /// `send` for a frame that must be forwarded unchanged.
    pub fn forwarded(&mut self, port: u32, frame: &[u8], t: Duration) {
        let out = self.send(port, frame, t);
        assert_eq!(out.len(), 1, "forwarded exactly once");
        assert_eq!(out[0], frame, "forwarded unchanged (padding included)");
    }

    /// `send` for a frame that must be dropped.
    pub fn dropped(&mut self, port: u32, frame: &[u8], t: Duration) {
        let out = self.send(port, frame, t);
        assert!(out.is_empty(), "must be dropped, was forwarded: {out:?}");
    }

    /// Connections alive at `base + t`.
    pub fn conns(&self, t: Duration) -> Vec<ConnInfo> {
        self.ct.dump(None, self.at(t))
    }

    /// The only connection alive at `base + t`.
    pub fn only(&self, t: Duration) -> ConnInfo {
        let d = self.conns(t);
        assert_eq!(d.len(), 1, "expected exactly one connection: {d:#?}");
        d.into_iter().next().expect("one")
    }

    /// TCP summary state of the only connection.
    pub fn tcp_state(&self, t: Duration) -> Option<TcpState> {
        self.only(t).tcp.map(|i| i.state)
    }

    /// All `+inv` verdicts conntrack gave, any reason.
    pub fn total_invalid(&self) -> u64 {
        self.ct.stats().invalid.values().sum()
    }

    /// The datapath's drop counter for conntrack reason `r`.
    pub fn ct_drops(&self, r: CtInvalidReason) -> u64 {
        self.drops.get(DropReason::CtInvalid(r))
    }

    /// Every non-zero drop counter, by `dump-drops` name: datapath drops
    /// and the ports' own.
    pub fn all_drops(&self) -> Vec<(String, u64)> {
        self.drops
            .nonzero()
            .into_iter()
            .chain(self.dp.port_drops().into_iter().filter(|(_, n)| *n > 0))
            .map(|(r, n)| (r.name(), n))
            .collect()
    }

    /// The firewall flow whose text (ovs-ofctl format) is `text`, with its
    /// counters.
    pub fn flow(&self, text: &str) -> FlowDump {
        let dumps = self.of.dump_flows(&Default::default(), self.base);
        let texts: Vec<String> = dumps.iter().map(|d| format_flow(&d.spec, None)).collect();
        dumps
            .into_iter()
            .zip(texts.iter())
            .find(|(_, t)| t.as_str() == text)
            .map(|(d, _)| d)
            .unwrap_or_else(|| panic!("no flow `{text}` in {texts:#?}"))
    }
}

/// Swaps the Ethernet addresses: the conntrack frame builders address every
/// frame from MAC_A to MAC_B; replies from the server come from MAC_B.
pub fn from_server(mut f: Vec<u8>) -> Vec<u8> {
    let (dst, src) = f.split_at_mut(6);
    dst.swap_with_slice(&mut src[..6]);
    f
}

/// Offset of the TCP checksum in an untagged IPv4 frame without IP options
/// (14 + 20 + 16).
pub const TCP_CSUM: usize = 50;

/// `frame` with its TCP checksum corrupted; returns the frame, the good
/// value and the value now in the frame.
pub fn corrupt_tcp_checksum(frame: &[u8]) -> (Vec<u8>, u16, u16) {
    let mut v = frame.to_vec();
    let good = u16::from_be_bytes([v[TCP_CSUM], v[TCP_CSUM + 1]]);
    let bad = good ^ 0x0101;
    v[TCP_CSUM..TCP_CSUM + 2].copy_from_slice(&bad.to_be_bytes());
    (v, good, bad)
}
