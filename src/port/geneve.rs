//! `type=geneve`: the Geneve tunnel vport (RFC 8926), in the manner of
//! Open vSwitch's userspace tunnelling, over kernel UDP sockets.
//!
//! **Why kernel UDP sockets.** The kernel routes the outer packet, resolves
//! the next hop's MAC (ARP/ND), builds the outer Ethernet and IP headers and
//! honours path MTU discovery; we have no route or neighbour table of our
//! own to go stale (the failure Open vSwitch's `tnl/neigh` cache has when a
//! peer's MAC changes). The price is that the UDP header is the kernel's:
//! the UDP payload is what we build and what we receive.
//!
//! **Encap** ([`GenevePort::send_batch`]): each packet gets a Geneve header
//! (VNI from `key=` or, with `key=flow`, from `tun_id`; options from the
//! present `tun_metadataN` fields through the bridge's [`TlvMap`]) pushed
//! into its headroom, no payload copy, and is sent with sendmmsg to
//! `remote_ip:dst_port` (or `tun_dst` with `remote_ip=flow`; a packet
//! without one is dropped as `tunnel_no_destination`). TSO super-packets and
//! partial checksums from vnet_hdr TAPs are segmented / completed first
//! ([`crate::packet::gso`]): the inner frame leaves through a path without
//! offloads. The outer UDP source port carries entropy (RFC 8926 §3.3): a
//! hash of the inner flow picks one of [`TX_SOCKETS`] send sockets, each
//! bound to its own port in 49152..=65535, so one inner flow always uses one
//! source port and different flows spread over ECMP paths. The outer UDP
//! checksum is off unless `csum=true` (as Open vSwitch): SO_NO_CHECK.
//! `df_default=true` (the default) sets DF and lets the kernel refuse what
//! exceeds the path MTU (counted as `tx_error`, and the ICMP "fragmentation
//! needed" it learns from is counted too).
//!
//! **Decap** ([`GenevePort::recv_batch`], [`decap`]): recvmmsg into pool
//! buffers (the UDP payload lands at the headroom mark, so decap is a
//! `pull_front`), then validation; every bad datagram is a counted drop with
//! its [`PortDrop`] reason: shorter than the fixed header or options past
//! the datagram (`geneve_truncated`), version not 0 (`geneve_bad_version`),
//! an option running past the options block or a mapped option with
//! another length than its TLV mapping (`geneve_bad_option_length`, as Open
//! vSwitch), an unknown option with the critical bit (`geneve_critical_option`,
//! RFC 8926 MUST), an inner protocol other than Transparent Ethernet
//! Bridging (`geneve_bad_protocol`), a source other than a fixed
//! `remote_ip` or a VNI other than a fixed key (`tunnel_no_match`: Open
//! vSwitch finds no tunnel port for it). Unknown non-critical options are
//! ignored. The packet's `tunnel` metadata gets `tun_id`, outer addresses,
//! UDP ports, TOS/TTL, `F_KEY` (and `F_OAM` when the O bit is set) and the
//! mapped options. OAM frames are passed on with `F_OAM` set, as Open
//! vSwitch does (`tun_flags=+oam`): the tables decide. `F_CSUM` is never
//! set on decap: the kernel checks and strips the outer UDP header, and
//! does not say whether the checksum field was zero.
//!
//! **Errors from the underlay.** ICMP errors about what we sent (peer
//! daemon gone: port unreachable; peer host gone: host unreachable) are read
//! from the sockets' error queues and counted (`tunnel_unreachable`,
//! `tunnel_no_route`); they are never fatal and the sockets stay: when the
//! peer comes back, traffic simply flows again.
//!
//! **TLV map.** One [`TlvMap`] per bridge, shared by its Geneve ports
//! through an [`ArcSwap`]: the control thread swaps in a new map, the
//! datapath thread loads it once per batch without a lock.
//!
//! **MTU.** [`Port::mtu`] is the underlay device's MTU (the route to
//! `remote_ip`, or to `local_ip` with `remote_ip=flow`, read once at
//! creation; 1500 when unknown); [`GenevePort::overhead`] is what the outer
//! headers add on the wire (Ethernet included), and
//! [`Port::tunnel_overhead`] the part that counts against the underlay's
//! IP MTU (without the outer Ethernet header), for the datapath's egress
//! check. Both assume every mapped option is present (the largest header
//! this port can build), so a frame that passes the check always fits.
//!
//! IPv4 underlay only (`tun_src` / `tun_dst` are IPv4 in the flow key).
//! Not thread-safe by itself: a port lives in one datapath thread.

use super::link::Counters;
use super::sys::netdev;
use super::udp::{IcmpCounters, Options as UdpOptions, RecvInfo, Socket};
use super::{parse_bool, Error, LinkState, Port, PortDrop, PortStats};
use crate::packet::gso::{self, Segmenter};
use crate::packet::{
    Batch, Gso, PacketBuf, PacketData, PacketPool, TunnelMeta, MAX_BURST, TUN_METADATA_FIELDS,
};
use crate::wire::geneve::{self as wg, GeneveOption, Options, Repr};
use crate::wire::EtherType;
use arc_swap::ArcSwap;
use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4};
use std::os::fd::RawFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Outer headers without options: Ethernet 14 + IPv4 20 + UDP 8 + Geneve 8.
pub const BASE_OVERHEAD: u32 = 14 + 20 + 8 + wg::HEADER_LEN as u32;
/// Lowest outer UDP source port (RFC 6335 dynamic range).
pub const SRC_PORT_MIN: u16 = 49152;
/// Highest outer UDP source port.
pub const SRC_PORT_MAX: u16 = 65535;
/// Send sockets, one source port each: the entropy of the outer header.
pub const TX_SOCKETS: usize = 8;
/// Largest option a `tun_metadataN` field holds in our flow key.
pub const MAX_TLV_LEN: u8 = 8;
/// Largest option length Geneve allows (5-bit length in 4-byte words).
pub const MAX_OPTION_LEN: u8 = 124;

/// How often ICMP errors are logged at most.
const ICMP_LOG_INTERVAL: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------------------
// TLV map
// ---------------------------------------------------------------------------

/// One mapping of the TLV map: Geneve option (class, type, length) <->
/// `tun_metadataN`, as `ovs-ofctl add-tlv-map` writes it:
/// `{class=0xffff,type=0,len=4}->tun_metadata0`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct TlvMapping {
    /// Option class.
    pub class: u16,
    /// Option type (bit 0x80 is the critical bit).
    #[serde(rename = "type")]
    pub opt_type: u8,
    /// Option data length in bytes (0, 4 or 8 here).
    pub len: u8,
    /// N of `tun_metadataN`.
    pub index: u8,
}

fn parse_int(what: &str, v: &str, max: u64) -> Result<u64, String> {
    let v = v.trim();
    let n = match v.strip_prefix("0x").or_else(|| v.strip_prefix("0X")) {
        Some(h) => u64::from_str_radix(h, 16),
        None => v.parse(),
    }
    .map_err(|_| format!("{what}={v}: expected a number"))?;
    if n > max {
        return Err(format!("{what}={v}: at most {max:#x}"));
    }
    Ok(n)
}

impl TlvMapping {
    /// Parses one mapping, `{class=C,type=T,len=L}->tun_metadataN`.
    pub fn parse(s: &str) -> Result<TlvMapping, String> {
        let s = s.trim();
        let (opt, field) = s
            .split_once("->")
            .ok_or_else(|| format!("'{s}': expected {{class=C,type=T,len=L}}->tun_metadataN"))?;
        let body = opt
            .trim()
            .strip_prefix('{')
            .and_then(|b| b.strip_suffix('}'))
            .ok_or_else(|| format!("'{opt}': expected {{class=C,type=T,len=L}}"))?;
        let (mut class, mut ty, mut len) = (None, None, None);
        for kv in body.split(',') {
            let (k, v) = kv
                .split_once('=')
                .ok_or_else(|| format!("'{kv}' in '{opt}': expected key=value"))?;
            match k.trim() {
                "class" => class = Some(parse_int("class", v, 0xffff)? as u16),
                "type" => ty = Some(parse_int("type", v, 0xff)? as u8),
                "len" => len = Some(parse_int("len", v, 0xff)? as u8),
                other => {
                    return Err(format!(
                        "'{other}' in '{opt}': expected class, type and len"
                    ))
                }
            }
        }
        let (Some(class), Some(opt_type), Some(len)) = (class, ty, len) else {
            return Err(format!("'{opt}': class, type and len are all required"));
        };
        if len % 4 != 0 || len > MAX_OPTION_LEN {
            return Err(format!(
                "len={len}: not a valid option size (a multiple of 4, at most {MAX_OPTION_LEN})"
            ));
        }
        if len > MAX_TLV_LEN {
            return Err(format!(
                "len={len}: tun_metadataN holds at most {MAX_TLV_LEN} bytes in this switch"
            ));
        }
        let field = field.trim();
        let index = field
            .strip_prefix("tun_metadata")
            .and_then(|n| n.parse::<u8>().ok())
            .ok_or_else(|| format!("'{field}': expected tun_metadataN"))?;
        if usize::from(index) >= TUN_METADATA_FIELDS {
            return Err(format!(
                "{field}: only tun_metadata0..{} exist in this switch",
                TUN_METADATA_FIELDS - 1
            ));
        }
        Ok(TlvMapping {
            class,
            opt_type,
            len,
            index,
        })
    }

    /// Parses a comma-separated list of mappings (commas inside braces
    /// belong to a mapping).
    pub fn parse_list(s: &str) -> Result<Vec<TlvMapping>, String> {
        let mut out = Vec::new();
        let mut depth = 0i32;
        let mut start = 0;
        for (i, c) in s.char_indices() {
            match c {
                '{' => depth += 1,
                '}' => depth -= 1,
                ',' if depth == 0 => {
                    out.push(TlvMapping::parse(&s[start..i])?);
                    start = i + 1;
                }
                _ => {}
            }
        }
        if !s[start..].trim().is_empty() || out.is_empty() {
            out.push(TlvMapping::parse(&s[start..])?);
        }
        Ok(out)
    }
}

impl core::fmt::Display for TlvMapping {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            f,
            "{{class={:#x},type={:#x},len={}}}->tun_metadata{}",
            self.class, self.opt_type, self.len, self.index
        )
    }
}

/// A bridge's TLV map: which Geneve options become which `tun_metadataN`.
/// At most one mapping per field and per (class, type).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlvMap {
    by_index: [Option<TlvMapping>; TUN_METADATA_FIELDS],
}

/// The shared, swappable TLV map of a bridge.
pub type TlvMapHandle = Arc<ArcSwap<TlvMap>>;

/// An empty TLV map handle.
pub fn new_tlv_map() -> TlvMapHandle {
    Arc::new(ArcSwap::from_pointee(TlvMap::default()))
}

/// C's `%#x`: `0` for zero, `0x..` otherwise (ovs-ofctl's spelling).
fn c_hex(v: u32) -> String {
    if v == 0 {
        "0".to_string()
    } else {
        format!("{v:#x}")
    }
}

impl TlvMap {
    /// The mappings, by field index.
    pub fn mappings(&self) -> impl Iterator<Item = &TlvMapping> {
        self.by_index.iter().flatten()
    }

    /// True when nothing is mapped.
    pub fn is_empty(&self) -> bool {
        self.mappings().next().is_none()
    }

    /// The mapping of option (class, type).
    #[inline]
    pub fn lookup(&self, class: u16, opt_type: u8) -> Option<TlvMapping> {
        self.mappings()
            .find(|m| m.class == class && m.opt_type == opt_type)
            .copied()
    }

    /// The mapping of `tun_metadata{index}`.
    #[inline]
    pub fn get(&self, index: usize) -> Option<TlvMapping> {
        self.by_index.get(index).copied().flatten()
    }

    /// A copy with `add` mapped too. Refuses (changing nothing) a field
    /// already mapped and an option mapped twice, as Open vSwitch
    /// (NXTTMFC_ALREADY_MAPPED, NXTTMFC_DUP_ENTRY).
    pub fn with_added(&self, add: &[TlvMapping]) -> Result<TlvMap, String> {
        let mut m = self.clone();
        for a in add {
            let slot = m
                .by_index
                .get_mut(usize::from(a.index))
                .ok_or_else(|| format!("tun_metadata{}: no such field", a.index))?;
            if let Some(old) = slot {
                return Err(format!(
                    "tun_metadata{} is already mapped ({old}); del-tlv-map it first",
                    a.index
                ));
            }
            if let Some(old) = self
                .mappings()
                .chain(add.iter().take_while(|x| !core::ptr::eq(*x, a)))
                .find(|x| x.class == a.class && x.opt_type == a.opt_type)
            {
                return Err(format!(
                    "option class={:#x},type={:#x} is mapped twice ({old} and {a})",
                    a.class, a.opt_type
                ));
            }
            *slot = Some(*a);
        }
        Ok(m)
    }

    /// A copy without `del`. A field that maps nothing is fine (as Open
    /// vSwitch); a field that maps another option is refused.
    pub fn with_deleted(&self, del: &[TlvMapping]) -> Result<TlvMap, String> {
        let mut m = self.clone();
        for d in del {
            let slot = m
                .by_index
                .get_mut(usize::from(d.index))
                .ok_or_else(|| format!("tun_metadata{}: no such field", d.index))?;
            match slot {
                Some(old) if (old.class, old.opt_type, old.len) != (d.class, d.opt_type, d.len) => {
                    return Err(format!(
                        "tun_metadata{} maps {old}, not {d}; nothing deleted",
                        d.index
                    ))
                }
                _ => *slot = None,
            }
        }
        Ok(m)
    }

    /// Option bytes the mappings take (ovs-ofctl's "allocated option space").
    pub fn allocated_space(&self) -> u32 {
        self.mappings().map(|m| u32::from(m.len)).sum()
    }

    /// Longest options block an encap can produce with this map.
    pub fn max_options_len(&self) -> u32 {
        self.mappings()
            .map(|m| wg::OPTION_HEADER_LEN as u32 + u32::from(m.len))
            .sum()
    }

    /// The `ovs-ofctl dump-tlv-map` text.
    pub fn format_ovs(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            " max option space={} max fields={}",
            TUN_METADATA_FIELDS * usize::from(MAX_TLV_LEN),
            TUN_METADATA_FIELDS
        );
        let _ = writeln!(out, " allocated option space={}", self.allocated_space());
        out.push('\n');
        out.push_str(" mapping table:\n");
        out.push_str("  class  type  length  match field\n");
        out.push_str(" ------  ----  ------  --------------\n");
        for m in self.mappings() {
            let _ = writeln!(
                out,
                " {:>6}  {:>4}  {:>6}  tun_metadata{}",
                c_hex(u32::from(m.class)),
                c_hex(u32::from(m.opt_type)),
                m.len,
                m.index
            );
        }
        out
    }
}

// ---------------------------------------------------------------------------
// Configuration
// ---------------------------------------------------------------------------

/// Where encapsulated packets go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Remote {
    /// Always this host (and only datagrams from it are accepted).
    Ip(Ipv4Addr),
    /// The packet's `tun_dst` (datagrams from anyone are accepted).
    Flow,
}

/// The VNI.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Key {
    /// This VNI (on receive: only this VNI is accepted).
    Vni(u32),
    /// From / into the packet's `tun_id`.
    Flow,
}

/// How to open a Geneve port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GeneveConfig {
    /// Port name (not a device).
    pub name: String,
    /// `remote_ip=`.
    pub remote: Remote,
    /// `local_ip=`: the address to bind (and the outer source); `None`
    /// binds every address and lets the kernel pick the source.
    pub local: Option<Ipv4Addr>,
    /// Accepted VNI (`in_key=`, or `key=`).
    pub in_key: Key,
    /// Sent VNI (`out_key=`, or `key=`).
    pub out_key: Key,
    /// `dst_port=` (6081).
    pub dst_port: u16,
    /// `csum=true`: compute the outer UDP checksum (off by default).
    pub csum: bool,
    /// `ttl=` of the outer header (64).
    pub ttl: u8,
    /// `tos=` of the outer header (0).
    pub tos: u8,
    /// `df_default=` (true): set DF on the outer header.
    pub df: bool,
}

impl GeneveConfig {
    /// Defaults for a port to `remote`.
    pub fn new(name: &str, remote: Remote) -> GeneveConfig {
        GeneveConfig {
            name: name.to_string(),
            remote,
            local: None,
            in_key: Key::Vni(0),
            out_key: Key::Vni(0),
            dst_port: wg::UDP_PORT,
            csum: false,
            ttl: 64,
            tos: 0,
            df: true,
        }
    }

    /// From `add-port ... type=geneve` options: `remote_ip=IP|flow`
    /// (required), `local_ip=IP`, `key=VNI|flow` (default 0), `in_key=`,
    /// `out_key=`, `dst_port=N`, `csum=BOOL`, `ttl=N`, `tos=N`,
    /// `df_default=BOOL`.
    pub fn from_options(name: &str, opts: &[(&str, &str)]) -> Result<GeneveConfig, Error> {
        let mut c = GeneveConfig::new(name, Remote::Flow);
        let mut remote = None;
        let ip = |k: &str, v: &str| -> Result<Ipv4Addr, Error> {
            v.parse::<Ipv4Addr>().map_err(|_| {
                if v.parse::<std::net::Ipv6Addr>().is_ok() {
                    Error::config(
                        name,
                        format!("{k}={v}: IPv6 underlays are not supported (IPv4 only)"),
                    )
                } else {
                    Error::config(name, format!("{k}={v}: expected an IPv4 address"))
                }
            })
        };
        let key = |k: &str, v: &str| -> Result<Key, Error> {
            if v == "flow" {
                return Ok(Key::Flow);
            }
            parse_int(k, v, 0xff_ffff)
                .map(|n| Key::Vni(n as u32))
                .map_err(|e| {
                    Error::config(name, format!("{e} (a Geneve VNI is 24 bits), or 'flow'"))
                })
        };
        for &(k, v) in opts {
            match k {
                "remote_ip" if v == "flow" => remote = Some(Remote::Flow),
                "remote_ip" => remote = Some(Remote::Ip(ip(k, v)?)),
                "local_ip" => c.local = Some(ip(k, v)?),
                "key" => {
                    c.in_key = key(k, v)?;
                    c.out_key = c.in_key;
                }
                "in_key" => c.in_key = key(k, v)?,
                "out_key" => c.out_key = key(k, v)?,
                "dst_port" => {
                    c.dst_port = v.parse().ok().filter(|&p| p != 0).ok_or_else(|| {
                        Error::config(name, format!("{k}={v}: expected a UDP port"))
                    })?
                }
                "csum" => c.csum = parse_bool(name, k, v)?,
                "df_default" => c.df = parse_bool(name, k, v)?,
                "ttl" => {
                    c.ttl = v.parse().ok().filter(|&t| t != 0).ok_or_else(|| {
                        Error::config(name, format!("{k}={v}: expected a TTL (1..255)"))
                    })?
                }
                "tos" => {
                    c.tos = parse_int(k, v, 0xff).map_err(|e| {
                        Error::config(name, format!("{e} (tos=inherit is not supported)"))
                    })? as u8
                }
                _ => {
                    return Err(Error::config(
                        name,
                        format!(
                            "unknown option '{k}' for a geneve port (remote_ip, local_ip, key, \
                             in_key, out_key, dst_port, csum, ttl, tos, df_default)"
                        ),
                    ))
                }
            }
        }
        c.remote = remote.ok_or_else(|| {
            Error::config(
                name,
                "remote_ip is required (an IPv4 address, or 'flow' to take tun_dst)",
            )
        })?;
        Ok(c)
    }

    fn policy(&self, bound: SocketAddr) -> DecapPolicy {
        DecapPolicy {
            remote: match self.remote {
                Remote::Ip(a) => Some(a),
                Remote::Flow => None,
            },
            in_key: match self.in_key {
                Key::Vni(v) => Some(v),
                Key::Flow => None,
            },
            local: self.local,
            port: bound.port(),
        }
    }
}

// ---------------------------------------------------------------------------
// Decap and encap, as functions of the bytes
// ---------------------------------------------------------------------------

/// What a Geneve port accepts on receive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DecapPolicy {
    /// Only datagrams from this address (`remote_ip=IP`).
    pub remote: Option<Ipv4Addr>,
    /// Only this VNI (`key=VNI`).
    pub in_key: Option<u32>,
    /// The bound local address (`tun_dst` when IP_PKTINFO says nothing).
    pub local: Option<Ipv4Addr>,
    /// The bound UDP port (`tp_dst`).
    pub port: u16,
}

fn v4(a: Option<IpAddr>) -> Option<Ipv4Addr> {
    match a {
        Some(IpAddr::V4(a)) => Some(a),
        Some(IpAddr::V6(a)) => a.to_ipv4_mapped(),
        None => None,
    }
}

/// Validates the Geneve datagram in `pkt` (the UDP payload), strips the
/// Geneve header and fills `pkt.meta.tunnel`. On error the packet is left
/// as it was and the error is the drop reason. Never panics, whatever the
/// bytes.
pub fn decap(
    pkt: &mut PacketData,
    from: &RecvInfo,
    policy: &DecapPolicy,
    map: &TlvMap,
) -> Result<(), PortDrop> {
    let d = pkt.data();
    if d.len() < wg::HEADER_LEN {
        return Err(PortDrop::GeneveTruncated);
    }
    let g = wg::Packet::new_unchecked(d);
    // A later version may lay the rest out differently: judge nothing else.
    if g.version() != 0 {
        return Err(PortDrop::GeneveBadVersion);
    }
    let hl = g.header_len();
    if hl > d.len() {
        return Err(PortDrop::GeneveTruncated);
    }
    if g.protocol() != EtherType::TransEtherBridging {
        return Err(PortDrop::GeneveBadProtocol);
    }
    let src = from.src.and_then(|s| v4(Some(s.ip())));
    if let Some(r) = policy.remote {
        if src != Some(r) {
            return Err(PortDrop::TunnelNoMatch);
        }
    }
    let vni = g.vni();
    if policy.in_key.is_some_and(|k| k != vni) {
        return Err(PortDrop::TunnelNoMatch);
    }
    let mut present = 0u8;
    let mut values = [0u64; TUN_METADATA_FIELDS];
    for opt in g.option_iter() {
        let Ok(opt) = opt else {
            return Err(PortDrop::GeneveBadOptionLength);
        };
        match map.lookup(opt.class, opt.opt_type) {
            Some(m) if usize::from(m.len) == opt.data.len() => {
                let i = usize::from(m.index);
                if let Some(v) = values.get_mut(i) {
                    let mut b = [0u8; 8];
                    let n = opt.data.len().min(8);
                    if let (Some(dst), Some(s)) = (b.get_mut(8 - n..), opt.data.get(..n)) {
                        dst.copy_from_slice(s);
                    }
                    *v = u64::from_be_bytes(b);
                    present |= 1 << i;
                }
            }
            Some(_) => return Err(PortDrop::GeneveBadOptionLength),
            None if opt.is_critical() => return Err(PortDrop::GeneveCriticalOption),
            None => {}
        }
    }
    let mut flags = TunnelMeta::F_KEY;
    if g.oam() {
        flags |= TunnelMeta::F_OAM;
    }
    let dst = v4(from.dst).or(policy.local).map_or(0, u32::from);
    pkt.meta.tunnel = TunnelMeta {
        tun_id: u64::from(vni),
        ip_src: src.map_or(0, u32::from),
        ip_dst: dst,
        ip_tos: from.tos,
        ip_ttl: from.ttl,
        tp_src: from.src.map_or(0, |s| s.port()),
        tp_dst: policy.port,
        flags,
        metadata_present: present,
        metadata: values,
    };
    pkt.pull_front(hl);
    Ok(())
}

/// Pushes a Geneve header for `vni` in front of the frame, with one option
/// per `tun_metadataN` that is present in the packet's tunnel metadata and
/// mapped by `map` (fields without a mapping are not sent). Returns the
/// header length.
pub fn push_header(pkt: &mut PacketData, vni: u32, map: &TlvMap) -> usize {
    let t = pkt.meta.tunnel;
    let mut data = [[0u8; 8]; TUN_METADATA_FIELDS];
    let mut picked = [(0u16, 0u8, 0usize, 0usize); TUN_METADATA_FIELDS];
    let mut n = 0;
    if t.metadata_present != 0 {
        for (i, d) in data.iter_mut().enumerate() {
            if t.metadata_present & (1 << i) == 0 {
                continue;
            }
            let (Some(m), Some(v)) = (map.get(i), t.metadata.get(i)) else {
                continue;
            };
            *d = v.to_be_bytes();
            if let Some(p) = picked.get_mut(n) {
                *p = (m.class, m.opt_type, i, usize::from(m.len.min(MAX_TLV_LEN)));
                n += 1;
            }
        }
    }
    let empty = GeneveOption {
        class: 0,
        opt_type: 0,
        data: &[],
    };
    let mut list = [empty; TUN_METADATA_FIELDS];
    for (slot, &(class, opt_type, i, len)) in list.iter_mut().zip(picked.iter().take(n)) {
        *slot = GeneveOption {
            class,
            opt_type,
            data: data.get(i).and_then(|d| d.get(8 - len..)).unwrap_or(&[]),
        };
    }
    let repr = Repr {
        oam: t.flags & TunnelMeta::F_OAM != 0,
        critical: false,
        protocol: EtherType::TransEtherBridging,
        vni: vni & 0x00ff_ffff,
        options: Options::List(list.get(..n).unwrap_or(&[])),
    };
    let hl = repr.buffer_len();
    let hdr = pkt.push_front(hl);
    repr.emit(&mut wg::Packet::new_unchecked(hdr));
    hl
}

#[inline(always)]
fn mix(h: u64, w: u64) -> u64 {
    let x = (h ^ w).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    x ^ (x >> 29)
}

#[inline(always)]
fn word(d: &[u8], at: usize, n: usize) -> u64 {
    let mut b = [0u8; 8];
    if let (Some(s), Some(dst)) = (d.get(at..at + n), b.get_mut(..n)) {
        dst.copy_from_slice(s);
    }
    u64::from_le_bytes(b)
}

/// A hash of the inner flow (MACs, IP addresses and protocol, L4 ports),
/// from the header offsets key extraction left in the metadata. Equal for
/// every packet of one flow, so a flow keeps one outer source port.
pub fn flow_hash(pkt: &PacketData) -> u64 {
    let d = pkt.data();
    let mut h = mix(word(d, 0, 6), word(d, 6, 6));
    let l3 = usize::from(pkt.meta.l3_ofs);
    let l4 = usize::from(pkt.meta.l4_ofs);
    if l3 >= 14 {
        let ethertype = word(d, l3 - 2, 2);
        // (0x0800 and 0x86dd read little-endian)
        let proto = match ethertype {
            0x0008 => {
                h = mix(h, word(d, l3 + 12, 8));
                d.get(l3 + 9).copied()
            }
            0xdd86 => {
                h = mix(h, word(d, l3 + 8, 8));
                h = mix(h, word(d, l3 + 16, 8));
                h = mix(h, word(d, l3 + 24, 8));
                h = mix(h, word(d, l3 + 32, 8));
                d.get(l3 + 6).copied()
            }
            _ => None,
        };
        if let Some(p) = proto {
            h = mix(h, u64::from(p));
            if l4 > l3 && matches!(p, 6 | 17 | 132) {
                h = mix(h, word(d, l4, 4));
            }
        }
    }
    h
}

/// The device the main routing table uses for `dst`, from the text of
/// `/proc/net/route` (longest prefix, then lowest metric).
pub fn route_device(table: &str, dst: Ipv4Addr) -> Option<String> {
    let d = u32::from(dst);
    let mut best: Option<(u32, u32, &str)> = None;
    for line in table.lines().skip(1) {
        let f: Vec<&str> = line.split_whitespace().collect();
        let (Some(dev), Some(net), Some(metric), Some(mask)) =
            (f.first(), f.get(1), f.get(6), f.get(7))
        else {
            continue;
        };
        // The kernel prints each __be32 as the hex of its in-memory value.
        let hex = |s: &str| {
            u32::from_str_radix(s, 16)
                .ok()
                .map(|v| u32::from(Ipv4Addr::from(v.to_ne_bytes())))
        };
        let (Some(net), Some(mask), Ok(metric)) = (hex(net), hex(mask), metric.parse::<u32>())
        else {
            continue;
        };
        if d & mask != net & mask {
            continue;
        }
        let better = match best {
            None => true,
            Some((m, met, _)) => mask.count_ones() > m || (mask.count_ones() == m && metric < met),
        };
        if better {
            best = Some((mask.count_ones(), metric, dev));
        }
    }
    best.map(|(_, _, dev)| dev.to_string())
}

fn underlay_mtu(target: Option<Ipv4Addr>) -> u32 {
    let dev = target.and_then(|a| {
        let table = std::fs::read_to_string("/proc/net/route").ok()?;
        route_device(&table, a)
    });
    match dev {
        Some(d) if d != "lo" => netdev::mtu(&d).unwrap_or(1500),
        _ => 1500,
    }
}

// ---------------------------------------------------------------------------
// The port
// ---------------------------------------------------------------------------

/// One send socket (one outer source port) and what waits for it.
#[derive(Debug)]
struct TxLane {
    sock: Socket,
    batch: Batch,
    dsts: Vec<SocketAddr>,
}

impl TxLane {
    fn new(sock: Socket) -> TxLane {
        TxLane {
            sock,
            batch: Batch::new(),
            // Flushed when `batch` is full: never grows past this.
            dsts: Vec::with_capacity(MAX_BURST),
        }
    }
}

/// A Geneve tunnel port.
#[derive(Debug)]
pub struct GenevePort {
    cfg: GeneveConfig,
    rx: Socket,
    lanes: Vec<TxLane>,
    tlv: TlvMapHandle,
    policy: DecapPolicy,
    c: Counters,
    mtu: u32,
    rx_tmp: Batch,
    rx_info: [RecvInfo; MAX_BURST],
    icmp_logged: (u64, Option<Instant>),
}

impl GenevePort {
    /// Binds the receive socket on `local_ip:dst_port` and the send sockets
    /// on source ports in 49152..=65535; reads the underlay MTU.
    pub fn open(cfg: GeneveConfig, tlv: TlvMapHandle) -> Result<GenevePort, Error> {
        let name = &cfg.name;
        let local_ip = cfg.local.unwrap_or(Ipv4Addr::UNSPECIFIED);
        let rx_local = SocketAddr::V4(SocketAddrV4::new(local_ip, cfg.dst_port));
        // The receive socket never sends: the defaults (pktinfo for
        // tun_dst, TOS/TTL, error queue, big buffer) are what it needs.
        let rx = Socket::bind(rx_local).map_err(|e| {
            if e.kind() == std::io::ErrorKind::AddrInUse {
                Error::config(
                    name,
                    format!(
                        "{rx_local} is already in use (another geneve port with the same \
                         local_ip and dst_port, or another program)"
                    ),
                )
            } else {
                Error::io("bind geneve socket", name, e)
            }
        })?;
        let tx_opts = UdpOptions {
            pktinfo: false,
            tos_ttl: false,
            rcvbuf: 256 << 10,
            pmtudisc: Some(if cfg.df {
                libc::IP_PMTUDISC_DO
            } else {
                libc::IP_PMTUDISC_DONT
            }),
            ttl: Some(cfg.ttl),
            tos: Some(cfg.tos),
            no_check: !cfg.csum,
            ..UdpOptions::default()
        };
        let lanes = bind_lanes(name, local_ip, tx_opts)?;
        let mtu = underlay_mtu(match cfg.remote {
            Remote::Ip(a) => Some(a),
            Remote::Flow => cfg.local,
        });
        let port = GenevePort {
            policy: cfg.policy(rx.local_addr()),
            cfg,
            rx,
            lanes,
            tlv,
            c: Counters::default(),
            mtu,
            rx_tmp: Batch::new(),
            rx_info: [RecvInfo::default(); MAX_BURST],
            icmp_logged: (0, None),
        };
        tracing::info!(
            port = %port.cfg.name, local = %port.local_addr(), remote = ?port.cfg.remote,
            key = ?port.cfg.out_key, src_ports = ?port.src_ports(), mtu, "geneve port open"
        );
        Ok(port)
    }

    /// The bound receive address (the real port when `dst_port` was 0 in a
    /// test).
    pub fn local_addr(&self) -> SocketAddr {
        self.rx.local_addr()
    }

    /// The outer UDP source ports this port sends from.
    pub fn src_ports(&self) -> Vec<u16> {
        self.lanes
            .iter()
            .map(|l| l.sock.local_addr().port())
            .collect()
    }

    /// Bytes the outer headers add to an inner frame: Ethernet 14 + IPv4
    /// 20 + UDP 8 + Geneve 8 + the options the current TLV map can produce.
    pub fn overhead(&self) -> u32 {
        BASE_OVERHEAD + self.tlv.load().max_options_len()
    }

    /// ICMP errors received about what this port sent, all sockets summed.
    pub fn icmp(&self) -> IcmpCounters {
        let mut t = *self.rx.icmp();
        for l in &self.lanes {
            t += *l.sock.icmp();
        }
        t
    }

    fn drop_tx(&mut self, why: PortDrop, pkt: PacketBuf, pool: &mut PacketPool) {
        self.c.tx_drop(why, 1);
        pool.put(pkt);
    }

    /// Encapsulates one packet and queues it on its lane.
    fn queue(&mut self, mut pkt: PacketBuf, pool: &mut PacketPool, map: &TlvMap) {
        if pkt.meta.gso != Gso::None {
            self.queue_segments(pkt, pool, map);
            return;
        }
        if gso::complete_checksum(&mut pkt).is_err() {
            self.drop_tx(PortDrop::TxError, pkt, pool);
            return;
        }
        let dst = match self.cfg.remote {
            Remote::Ip(a) => a,
            Remote::Flow if pkt.meta.tunnel.ip_dst != 0 => Ipv4Addr::from(pkt.meta.tunnel.ip_dst),
            Remote::Flow => {
                self.drop_tx(PortDrop::TunnelNoDestination, pkt, pool);
                return;
            }
        };
        let vni = match self.cfg.out_key {
            Key::Vni(v) => v,
            Key::Flow => (pkt.meta.tunnel.tun_id & 0x00ff_ffff) as u32,
        };
        let n = self.lanes.len().max(1);
        let lane = (flow_hash(&pkt) % n as u64) as usize;
        push_header(&mut pkt, vni, map);
        let full = match self.lanes.get_mut(lane) {
            Some(l) => {
                l.dsts
                    .push(SocketAddr::V4(SocketAddrV4::new(dst, self.cfg.dst_port)));
                if let Err(p) = l.batch.push(pkt) {
                    // Cannot happen (flushed when full); never lose a buffer.
                    l.dsts.pop();
                    pool.put(p);
                }
                l.batch.is_full()
            }
            None => {
                self.drop_tx(PortDrop::TxError, pkt, pool);
                false
            }
        };
        if full {
            self.flush_lane(lane, pool);
        }
    }

    /// Cuts a TSO super-packet into segments and queues each.
    fn queue_segments(&mut self, pkt: PacketBuf, pool: &mut PacketPool, map: &TlvMap) {
        let seg = match Segmenter::new(pkt.data(), pkt.meta.gso) {
            Ok(s) => s,
            Err(_) => {
                self.drop_tx(PortDrop::TxError, pkt, pool);
                return;
            }
        };
        for i in 0..seg.count() {
            match seg.segment_packet(&pkt, i, pool) {
                Ok(p) => self.queue(p, pool, map),
                Err(_) => self.c.tx_drop(PortDrop::TxError, 1),
            }
        }
        pool.put(pkt);
    }

    fn flush_lane(&mut self, i: usize, pool: &mut PacketPool) {
        let Some(l) = self.lanes.get_mut(i) else {
            return;
        };
        if l.batch.is_empty() {
            return;
        }
        let rep = l.sock.send_batch(&mut l.batch, &l.dsts, pool);
        // What the socket buffer could not take now is dropped: the
        // datapath has no queue behind a port either.
        l.batch.recycle(pool);
        l.dsts.clear();
        self.c.stats.tx_packets += rep.sent;
        self.c.stats.tx_bytes += rep.bytes;
        for (why, n) in rep.drops() {
            self.c.tx_drop(why, n);
        }
        if rep.left > 0 {
            self.c.tx_drop(PortDrop::TxQueueFull, rep.left);
        }
    }

    fn log_icmp(&mut self) {
        let icmp = self.icmp();
        let total = icmp.total();
        let now = Instant::now();
        let due = self
            .icmp_logged
            .1
            .is_none_or(|t| now.saturating_duration_since(t) >= ICMP_LOG_INTERVAL);
        if total > self.icmp_logged.0 && due {
            tracing::warn!(
                port = %self.cfg.name,
                errors = total,
                last = ?icmp.last,
                "ICMP errors from the underlay (peer unreachable?); counted in dump-drops"
            );
            self.icmp_logged = (total, Some(now));
        }
    }
}

/// Binds [`TX_SOCKETS`] send sockets on distinct source ports in
/// 49152..=65535, starting at a pid-dependent place so that two daemons
/// on one host rarely probe the same ports; ports in use are skipped. With
/// none free in a bounded number of tries, the kernel picks (port 0).
fn bind_lanes(name: &str, local: Ipv4Addr, opts: UdpOptions) -> Result<Vec<TxLane>, Error> {
    let span = u32::from(SRC_PORT_MAX - SRC_PORT_MIN) + 1;
    let mut cursor = (std::process::id().wrapping_mul(2_654_435_761) >> 7) % span;
    let mut lanes = Vec::with_capacity(TX_SOCKETS);
    let mut tries = 0;
    while lanes.len() < TX_SOCKETS && tries < 64 * TX_SOCKETS {
        tries += 1;
        let port = SRC_PORT_MIN + (cursor % span) as u16;
        cursor = cursor.wrapping_add(1);
        match Socket::bind_with(SocketAddr::V4(SocketAddrV4::new(local, port)), opts) {
            Ok(sock) => lanes.push(TxLane::new(sock)),
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => continue,
            Err(e) => return Err(Error::io("bind geneve send socket", name, e)),
        }
    }
    if lanes.is_empty() {
        let sock = Socket::bind_with(SocketAddr::V4(SocketAddrV4::new(local, 0)), opts)
            .map_err(|e| Error::io("bind geneve send socket", name, e))?;
        lanes.push(TxLane::new(sock));
    }
    Ok(lanes)
}

impl Port for GenevePort {
    fn name(&self) -> &str {
        &self.cfg.name
    }

    fn kind(&self) -> &'static str {
        "geneve"
    }

    fn recv_batch(&mut self, pool: &mut PacketPool, batch: &mut Batch) -> Result<usize, Error> {
        let free = batch.free().min(MAX_BURST);
        if free == 0 {
            return Ok(0);
        }
        let map = self.tlv.load_full();
        let info = self.rx_info.get_mut(..free).unwrap_or(&mut []);
        self.rx.recv_batch(pool, &mut self.rx_tmp, info);
        let mut n = 0;
        for (i, mut p) in self.rx_tmp.drain().enumerate() {
            let from = self.rx_info.get(i).copied().unwrap_or_default();
            let len = p.len();
            match decap(&mut p, &from, &self.policy, &map) {
                Ok(()) => {
                    self.c.rx(len);
                    match batch.push(p) {
                        Ok(()) => n += 1,
                        Err(p) => pool.put(p),
                    }
                }
                Err(why) => {
                    self.c.rx_drop(why, 1);
                    pool.put(p);
                }
            }
        }
        Ok(n)
    }

    fn send_batch(&mut self, batch: &mut Batch, pool: &mut PacketPool) -> Result<usize, Error> {
        let total = batch.len();
        if total == 0 {
            return Ok(0);
        }
        let map = self.tlv.load_full();
        // Packets move (8 bytes each) from the caller's batch to the lanes.
        for p in batch.drain() {
            self.queue(p, pool, &map);
        }
        for i in 0..self.lanes.len() {
            self.flush_lane(i, pool);
        }
        Ok(total)
    }

    fn stats(&self) -> PortStats {
        let mut s = self.c.stats.clone();
        s.tx_errors += self.icmp().total();
        s.rx_dropped += self.rx.truncated();
        s
    }

    fn drops(&self) -> Vec<(PortDrop, u64)> {
        let truncated = (PortDrop::RxTooLong, self.rx.truncated());
        self.c
            .drops_with(self.icmp().drops().into_iter().chain([truncated]))
    }

    fn mtu(&self) -> u32 {
        self.mtu
    }

    fn tunnel_overhead(&self) -> Option<u32> {
        // Against the underlay's IP MTU: the outer IP datagram is the inner
        // frame plus this; the outer Ethernet header is not part of it.
        Some(self.overhead() - 14)
    }

    fn link_state(&self) -> LinkState {
        // The sockets stay whatever happens to the peers.
        LinkState::Up
    }

    fn poll_fd(&self) -> Option<RawFd> {
        Some(self.rx.poll_fd())
    }

    fn housekeeping(&mut self) {
        // The send sockets are not polled: read their ICMP errors here.
        self.rx.drain_errors();
        for l in &mut self.lanes {
            l.sock.drain_errors();
        }
        self.log_icmp();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mapping_syntax_and_limits() {
        let m = TlvMapping::parse("{class=0xffff,type=0,len=4}->tun_metadata0").unwrap();
        assert_eq!(
            m,
            TlvMapping {
                class: 0xffff,
                opt_type: 0,
                len: 4,
                index: 0
            }
        );
        assert_eq!(
            m.to_string(),
            "{class=0xffff,type=0x0,len=4}->tun_metadata0"
        );
        let l = TlvMapping::parse_list(
            " {class=0x102,type=0x80,len=8}->tun_metadata3 , {class=1,type=2,len=0}->tun_metadata7",
        )
        .unwrap();
        assert_eq!(l.len(), 2);
        assert_eq!((l[0].class, l[0].opt_type, l[0].index), (0x102, 0x80, 3));
        for (bad, why) in [
            ("{class=1,type=0,len=6}->tun_metadata0", "valid option size"),
            ("{class=1,type=0,len=12}->tun_metadata0", "at most 8 bytes"),
            ("{class=1,type=0,len=4}->tun_metadata8", "tun_metadata0..7"),
            ("{class=0x10000,type=0,len=4}->tun_metadata0", "class"),
            ("{class=1,len=4}->tun_metadata0", "required"),
            ("{class=1,type=0,len=4}", "expected"),
            ("{class=1,type=0,len=4}->reg0", "tun_metadataN"),
        ] {
            let e = TlvMapping::parse_list(bad).unwrap_err();
            assert!(e.contains(why), "{bad}: {e}");
        }
    }

    #[test]
    fn map_add_del_and_dump_text() {
        let m = TlvMap::default()
            .with_added(&TlvMapping::parse_list(
                "{class=0xffff,type=0,len=4}->tun_metadata0,{class=0x0102,type=0x80,len=8}->tun_metadata3",
            )
            .unwrap())
            .unwrap();
        // The layout ovs-ofctl 3.1 prints for the same two mappings (its
        // header line excluded), checked against a running OVS.
        assert_eq!(
            m.format_ovs(),
            " max option space=64 max fields=8\n allocated option space=12\n\n mapping table:\n  class  type  length  match field\n ------  ----  ------  --------------\n 0xffff     0       4  tun_metadata0\n  0x102  0x80       8  tun_metadata3\n"
        );
        let e = m
            .with_added(&TlvMapping::parse_list("{class=1,type=1,len=4}->tun_metadata0").unwrap())
            .unwrap_err();
        assert!(e.contains("already mapped"), "{e}");
        let e = m
            .with_added(
                &TlvMapping::parse_list("{class=0xffff,type=0,len=4}->tun_metadata1").unwrap(),
            )
            .unwrap_err();
        assert!(e.contains("mapped twice"), "{e}");
        let e = TlvMap::default()
            .with_added(
                &TlvMapping::parse_list(
                    "{class=5,type=5,len=4}->tun_metadata1,{class=5,type=5,len=4}->tun_metadata2",
                )
                .unwrap(),
            )
            .unwrap_err();
        assert!(e.contains("mapped twice"), "{e}");
        assert_eq!(m.lookup(0x102, 0x80).map(|x| x.index), Some(3));
        assert_eq!(m.max_options_len(), 8 + 12);
        let d = m
            .with_deleted(
                &TlvMapping::parse_list("{class=0xffff,type=0,len=4}->tun_metadata0").unwrap(),
            )
            .unwrap();
        assert_eq!(d.mappings().count(), 1);
        assert!(m
            .with_deleted(&TlvMapping::parse_list("{class=1,type=0,len=4}->tun_metadata3").unwrap())
            .is_err());
        assert_eq!(
            m.with_deleted(
                &TlvMapping::parse_list("{class=1,type=0,len=4}->tun_metadata5").unwrap()
            ),
            Ok(m.clone()),
            "deleting an unmapped field is a no-op, as Open vSwitch"
        );
    }

    #[test]
    fn route_lookup_longest_prefix() {
        // /proc/net/route as Linux prints it on a little-endian machine:
        // default via 10.0.0.1 dev eth0, 10.0.0.0/8 dev eth0,
        // 10.251.0.0/24 dev ul0 (metric 0), 10.251.0.0/24 dev ul1 (metric 5).
        let t =
            "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n\
                 eth0\t00000000\t0100000A\t0003\t0\t0\t0\t00000000\t0\t0\t0\n\
                 eth0\t0000000A\t00000000\t0001\t0\t0\t0\t000000FF\t0\t0\t0\n\
                 ul1\t0000FB0A\t00000000\t0001\t0\t0\t5\t00FFFFFF\t0\t0\t0\n\
                 ul0\t0000FB0A\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n";
        if cfg!(target_endian = "little") {
            assert_eq!(
                route_device(t, "10.251.0.2".parse().unwrap()).as_deref(),
                Some("ul0")
            );
            assert_eq!(
                route_device(t, "10.9.9.9".parse().unwrap()).as_deref(),
                Some("eth0")
            );
            assert_eq!(
                route_device(t, "192.0.2.1".parse().unwrap()).as_deref(),
                Some("eth0")
            );
        }
        assert_eq!(route_device("Iface\n", "10.0.0.1".parse().unwrap()), None);
    }

    #[test]
    fn options_parse() {
        let o = |v: &[(&str, &str)]| GeneveConfig::from_options("t", v);
        let c = o(&[("remote_ip", "10.0.0.2"), ("key", "5000"), ("csum", "true")]).unwrap();
        assert_eq!(c.remote, Remote::Ip("10.0.0.2".parse().unwrap()));
        assert_eq!(
            (c.in_key, c.out_key, c.csum, c.dst_port),
            (Key::Vni(5000), Key::Vni(5000), true, 6081)
        );
        let c = o(&[("remote_ip", "flow"), ("key", "flow"), ("out_key", "0x10")]).unwrap();
        assert_eq!(
            (c.remote, c.in_key, c.out_key),
            (Remote::Flow, Key::Flow, Key::Vni(16))
        );
        for (bad, why) in [
            (vec![("key", "1")], "remote_ip is required"),
            (vec![("remote_ip", "fe80::1")], "IPv6"),
            (
                vec![("remote_ip", "10.0.0.1"), ("key", "0x1000000")],
                "24 bits",
            ),
            (
                vec![("remote_ip", "10.0.0.1"), ("tos", "inherit")],
                "inherit",
            ),
            (
                vec![("remote_ip", "10.0.0.1"), ("color", "blue")],
                "unknown option 'color'",
            ),
            (vec![("remote_ip", "10.0.0.1"), ("ttl", "0")], "TTL"),
        ] {
            let e = o(&bad).unwrap_err().to_string();
            assert!(e.contains(why), "{bad:?}: {e}");
        }
    }
}
