//! What the tracker shows operators: connection dumps in Open vSwitch's
//! `dpctl/dump-conntrack` layout (and as JSON), and counters.

use core::fmt::Write;
use core::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::collections::BTreeMap;

use super::table::{Conn, ConnKey, IcmpState, L4State, OtherState};
use super::tcp::{self, TcpPeer, TcpPeerState, TcpState, WSCALE_FLAG, WSCALE_MASK, WSCALE_UNKNOWN};
use crate::wire::IpProtocol;

/// One direction's tuple, as `dump-conntrack` prints it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
pub struct CtTuple {
    /// Source address.
    pub src: IpAddr,
    /// Destination address.
    pub dst: IpAddr,
    /// TCP/UDP source port.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sport: Option<u16>,
    /// TCP/UDP destination port.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dport: Option<u16>,
    /// ICMP echo identifier.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub icmp_id: Option<u16>,
    /// ICMP type sent in this direction.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub icmp_type: Option<u8>,
    /// ICMP code (always 0 for the queries conntrack tracks).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub icmp_code: Option<u8>,
}

impl CtTuple {
    fn from_key(k: &ConnKey) -> CtTuple {
        let addr = |a: &[u8; 16]| -> IpAddr {
            if k.v6 {
                IpAddr::V6(Ipv6Addr::from(*a))
            } else {
                IpAddr::V4(Ipv4Addr::new(a[0], a[1], a[2], a[3]))
            }
        };
        let icmp = k.is_icmp();
        let ports = !icmp && (k.sport != 0 || k.dport != 0);
        CtTuple {
            src: addr(&k.src),
            dst: addr(&k.dst),
            sport: ports.then_some(k.sport),
            dport: ports.then_some(k.dport),
            icmp_id: icmp.then_some(k.id),
            icmp_type: icmp.then_some(k.sport as u8),
            icmp_code: icmp.then_some(0),
        }
    }

    fn format(&self, out: &mut String) {
        let _ = write!(out, "src={},dst={}", self.src, self.dst);
        if let (Some(id), Some(t), Some(c)) = (self.icmp_id, self.icmp_type, self.icmp_code) {
            let _ = write!(out, ",id={id},type={t},code={c}");
        } else {
            let _ = write!(
                out,
                ",sport={},dport={}",
                self.sport.unwrap_or(0),
                self.dport.unwrap_or(0)
            );
        }
    }
}

/// One direction's pf window state (for `--json` dumps and tests).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct TcpPeerInfo {
    /// pf state of this direction.
    pub state: TcpPeerState,
    /// Highest sequence number sent (+1 per SYN/FIN): the end of what this
    /// side sent.
    pub seqlo: u32,
    /// Highest sequence number the other side will accept from this side.
    pub seqhi: u32,
    /// Largest window advertised (unscaled).
    pub max_win: u16,
    /// Window scale shift.
    pub wscale: u8,
    /// The window-scale option was seen (`WINDOW_SCALE` flag).
    pub window_scale: bool,
    /// Picked up mid-stream, scale unknown (`BE_LIBERAL` flag).
    pub be_liberal: bool,
}

impl TcpPeerInfo {
    fn from_peer(p: &TcpPeer) -> Self {
        TcpPeerInfo {
            state: p.state,
            seqlo: p.seqlo,
            seqhi: p.seqhi,
            max_win: p.max_win,
            wscale: p.wscale & WSCALE_MASK,
            window_scale: p.wscale & WSCALE_FLAG != 0,
            be_liberal: p.wscale & WSCALE_UNKNOWN != 0,
        }
    }
}

/// TCP protocol information of a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct TcpInfo {
    /// The summary state `dump-conntrack` prints.
    pub state: TcpState,
    /// The originator's direction.
    pub orig: TcpPeerInfo,
    /// The responder's direction.
    pub reply: TcpPeerInfo,
}

/// One connection, as `dump-conntrack` shows it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ConnInfo {
    /// IP protocol number.
    pub proto: u8,
    /// OVS protocol name (`tcp`, `udp`, `icmp`, `icmpv6`, ... or the number).
    pub proto_name: String,
    /// Originator's direction.
    pub orig: CtTuple,
    /// Responder's direction.
    pub reply: CtTuple,
    /// Conntrack zone.
    pub zone: u16,
    /// `ct_mark`.
    pub mark: u32,
    /// Seconds until expiry (rounded up).
    pub timeout: u32,
    /// The timeout policy attribute in force (`tcp_established`, ...).
    pub timeout_kind: &'static str,
    /// Protocol state for UDP/ICMP/other (`FIRST`, `MULTIPLE`, `BIDIR`,
    /// `REPLY`); the TCP state is in `tcp`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state: Option<&'static str>,
    /// TCP window tracking state.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tcp: Option<TcpInfo>,
}

/// OVS `ct_dpif_format_ipproto`.
fn proto_name(p: u8) -> String {
    match p {
        1 => "icmp".into(),
        58 => "icmpv6".into(),
        6 => "tcp".into(),
        17 => "udp".into(),
        132 => "sctp".into(),
        136 => "udplite".into(),
        33 => "dccp".into(),
        2 => "igmp".into(),
        n => n.to_string(),
    }
}

impl ConnInfo {
    pub(crate) fn from_conn(c: &Conn, now_ms: u64) -> ConnInfo {
        let ok = c.orig_key();
        let remaining = c.expires_at(now_ms).saturating_sub(now_ms);
        let (state, tcp) = match &c.l4 {
            L4State::Tcp(t) => (
                None,
                Some(TcpInfo {
                    state: tcp::summary(t),
                    orig: TcpPeerInfo::from_peer(&t.peers[0]),
                    reply: TcpPeerInfo::from_peer(&t.peers[1]),
                }),
            ),
            L4State::Other(OtherState::First) => (Some("FIRST"), None),
            L4State::Other(OtherState::Multiple) => (Some("MULTIPLE"), None),
            L4State::Other(OtherState::Bidir) => (Some("BIDIR"), None),
            L4State::Icmp(IcmpState::First) => (Some("FIRST"), None),
            L4State::Icmp(IcmpState::Reply) => (Some("REPLY"), None),
            L4State::Free => (None, None),
        };
        ConnInfo {
            proto: ok.proto,
            proto_name: proto_name(ok.proto),
            orig: CtTuple::from_key(&ok),
            reply: CtTuple::from_key(&ok.reverse()),
            zone: ok.zone,
            mark: c.mark,
            timeout: remaining.div_ceil(1000).min(u64::from(u32::MAX)) as u32,
            timeout_kind: c.tmo.name(),
            state,
            tcp,
        }
    }

    /// The line `ovs-appctl dpctl/dump-conntrack` prints, e.g.
    /// `tcp,orig=(src=10.0.0.1,dst=10.0.0.2,sport=40000,dport=80),reply=(src=10.0.0.2,dst=10.0.0.1,sport=80,dport=40000),zone=1,protoinfo=(state=ESTABLISHED)`.
    /// Unlike OVS, `zone=` and `mark=` are always printed (an operator
    /// comparing zones should not have to know that a missing `zone=` means
    /// 0); only TCP has `protoinfo`.
    pub fn format_ovs(&self) -> String {
        let mut s = String::with_capacity(160);
        s.push_str(&self.proto_name);
        s.push_str(",orig=(");
        self.orig.format(&mut s);
        s.push_str("),reply=(");
        self.reply.format(&mut s);
        s.push(')');
        let _ = write!(s, ",zone={},mark={}", self.zone, self.mark);
        if let Some(t) = &self.tcp {
            let _ = write!(s, ",protoinfo=(state={})", t.state.name());
        }
        s
    }
}

/// Connection counts of one zone.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct ZoneStats {
    /// The zone.
    pub zone: u16,
    /// All entries.
    pub total: u64,
    /// TCP entries.
    pub tcp: u64,
    /// UDP entries.
    pub udp: u64,
    /// ICMP and ICMPv6 entries.
    pub icmp: u64,
    /// Other IP protocols.
    pub other: u64,
    /// The zone's connection limit, if any (own or default).
    pub limit: Option<u32>,
}

/// `ct-stats`: entries per zone and protocol, invalid verdicts by reason.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct CtStats {
    /// Live (unexpired) entries.
    pub entries: u64,
    /// Global limit.
    pub max_conns: u32,
    /// Zones with at least one entry, by zone number.
    pub zones: Vec<ZoneStats>,
    /// `+inv` verdicts by reason name (every reason listed).
    pub invalid: BTreeMap<String, u64>,
    /// New connections refused because a limit was reached (also counted
    /// under `invalid.limit_reached`).
    pub limit_reached: u64,
    /// Connections committed since start.
    pub committed: u64,
    /// Connections removed by expiry since start.
    pub expired: u64,
    /// Checksum policy in force.
    pub checksum: &'static str,
    /// `tcp_liberal` in force.
    pub tcp_liberal: bool,
    /// `tcp_seq_check` in force.
    pub tcp_seq_check: bool,
    /// Fragment reassembly: settings, occupancy, counters.
    pub ipf: super::IpfStatus,
}

impl ZoneStats {
    pub(crate) fn add(&mut self, c: &Conn) {
        self.total += 1;
        match IpProtocol::from(c.key.proto) {
            IpProtocol::Tcp => self.tcp += 1,
            IpProtocol::Udp => self.udp += 1,
            _ if c.key.is_icmp() => self.icmp += 1,
            _ => self.other += 1,
        }
    }
}
