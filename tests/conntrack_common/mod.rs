//! Frame builders and a small harness shared by the conntrack tests.
//!
//! Frames are built with etherparse (which computes every checksum), so
//! the tracker is checked against an independent implementation; padding
//! is appended by hand, after the IP datagram, as an Ethernet NIC would.
#![allow(dead_code)]

use std::time::{Duration, Instant};

use etherparse::{Icmpv4Type, Icmpv6Type, PacketBuilder, TcpOptionElement};
use vswitch::conntrack::{ConnInfo, ConnTracker, CtConfig, CtParams, CtVerdict};
use vswitch::flow::FlowKey;
use vswitch::packet::{CtState, PacketMeta};

pub const MAC_A: [u8; 6] = [0x02, 0, 0, 0, 0, 0x0a];
pub const MAC_B: [u8; 6] = [0x02, 0, 0, 0, 0, 0x0b];
pub const CLIENT: [u8; 4] = [10, 0, 0, 1];
pub const SERVER: [u8; 4] = [10, 0, 0, 2];
pub const ROUTER: [u8; 4] = [10, 0, 0, 254];
pub const CLIENT6: [u8; 16] = [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
pub const SERVER6: [u8; 16] = [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];
pub const ROUTER6: [u8; 16] = [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xfe];

/// TCP flags for [`tcp4`] / [`tcp6`].
#[derive(Debug, Clone, Copy, Default)]
pub struct Flags {
    pub syn: bool,
    pub ack: Option<u32>,
    pub fin: bool,
    pub rst: bool,
    pub psh: bool,
}

pub fn syn() -> Flags {
    Flags {
        syn: true,
        ..Flags::default()
    }
}
pub fn syn_ack(ack: u32) -> Flags {
    Flags {
        syn: true,
        ack: Some(ack),
        ..Flags::default()
    }
}
pub fn ack(ack: u32) -> Flags {
    Flags {
        ack: Some(ack),
        ..Flags::default()
    }
}
pub fn fin_ack(ack: u32) -> Flags {
    Flags {
        fin: true,
        ack: Some(ack),
        ..Flags::default()
    }
}
pub fn psh_ack(ack: u32) -> Flags {
    Flags {
        psh: true,
        ack: Some(ack),
        ..Flags::default()
    }
}
pub fn rst() -> Flags {
    Flags {
        rst: true,
        ..Flags::default()
    }
}

/// A TCP segment description.
#[derive(Debug, Clone, Copy)]
pub struct Seg<'a> {
    pub sport: u16,
    pub dport: u16,
    pub seq: u32,
    pub win: u16,
    pub flags: Flags,
    pub wscale: Option<u8>,
    pub payload: &'a [u8],
}

impl<'a> Seg<'a> {
    pub fn new(sport: u16, dport: u16, seq: u32, flags: Flags) -> Self {
        Seg {
            sport,
            dport,
            seq,
            win: 64240,
            flags,
            wscale: None,
            payload: &[],
        }
    }
}

macro_rules! tcp_step {
    ($b:expr, $s:expr) => {{
        let mut b = $b.tcp($s.sport, $s.dport, $s.seq, $s.win);
        if $s.flags.syn {
            b = b.syn();
        }
        if let Some(a) = $s.flags.ack {
            b = b.ack(a);
        }
        if $s.flags.fin {
            b = b.fin();
        }
        if $s.flags.rst {
            b = b.rst();
        }
        if $s.flags.psh {
            b = b.psh();
        }
        if let Some(w) = $s.wscale {
            b = b
                .options(&[
                    TcpOptionElement::MaximumSegmentSize(1460),
                    TcpOptionElement::Noop,
                    TcpOptionElement::WindowScale(w),
                ])
                .expect("options fit");
        }
        let mut v = Vec::new();
        b.write(&mut v, $s.payload).expect("write");
        v
    }};
}

/// An Ethernet + IPv4 + TCP frame from `src` to `dst` (no padding).
pub fn tcp4(src: [u8; 4], dst: [u8; 4], s: Seg<'_>) -> Vec<u8> {
    tcp_step!(PacketBuilder::ethernet2(MAC_A, MAC_B).ipv4(src, dst, 64), s)
}

/// An Ethernet + IPv6 + TCP frame.
pub fn tcp6(src: [u8; 16], dst: [u8; 16], s: Seg<'_>) -> Vec<u8> {
    tcp_step!(PacketBuilder::ethernet2(MAC_A, MAC_B).ipv6(src, dst, 64), s)
}

pub fn udp4(src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    PacketBuilder::ethernet2(MAC_A, MAC_B)
        .ipv4(src, dst, 64)
        .udp(sport, dport)
        .write(&mut v, payload)
        .expect("write");
    v
}

pub fn udp6(src: [u8; 16], dst: [u8; 16], sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    PacketBuilder::ethernet2(MAC_A, MAC_B)
        .ipv6(src, dst, 64)
        .udp(sport, dport)
        .write(&mut v, payload)
        .expect("write");
    v
}

pub fn echo4(src: [u8; 4], dst: [u8; 4], id: u16, request: bool) -> Vec<u8> {
    let mut v = Vec::new();
    let b = PacketBuilder::ethernet2(MAC_A, MAC_B).ipv4(src, dst, 64);
    let b = if request {
        b.icmpv4_echo_request(id, 1)
    } else {
        b.icmpv4_echo_reply(id, 1)
    };
    b.write(&mut v, b"ping").expect("write");
    v
}

pub fn echo6(src: [u8; 16], dst: [u8; 16], id: u16, request: bool) -> Vec<u8> {
    let mut v = Vec::new();
    let b = PacketBuilder::ethernet2(MAC_A, MAC_B).ipv6(src, dst, 64);
    let b = if request {
        b.icmpv6_echo_request(id, 1)
    } else {
        b.icmpv6_echo_reply(id, 1)
    };
    b.write(&mut v, b"ping").expect("write");
    v
}

/// The IP datagram of `frame`, cut to its header plus 8 bytes of L4 (the
/// RFC 792 minimum an ICMP error quotes) or more.
pub fn quote(frame: &[u8], l4_bytes: usize, v6: bool) -> Vec<u8> {
    let ihl = if v6 {
        40
    } else {
        usize::from(frame[14] & 0x0f) * 4
    };
    frame[14..(14 + ihl + l4_bytes).min(frame.len())].to_vec()
}

/// ICMPv4 error from `src` to `dst` carrying `inner`.
pub fn icmp4_error(src: [u8; 4], dst: [u8; 4], ty: Icmpv4Type, inner: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    PacketBuilder::ethernet2(MAC_A, MAC_B)
        .ipv4(src, dst, 64)
        .icmpv4(ty)
        .write(&mut v, inner)
        .expect("write");
    v
}

/// ICMPv6 error from `src` to `dst` carrying `inner`.
pub fn icmp6_error(src: [u8; 16], dst: [u8; 16], ty: Icmpv6Type, inner: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    PacketBuilder::ethernet2(MAC_A, MAC_B)
        .ipv6(src, dst, 64)
        .icmpv6(ty)
        .write(&mut v, inner)
        .expect("write");
    v
}

/// Appends Ethernet padding up to 60 bytes with the given non-zero filler.
pub fn pad60(mut f: Vec<u8>, filler: u8) -> Vec<u8> {
    while f.len() < 60 {
        f.push(filler);
    }
    f
}

/// The flow key and metadata key extraction would produce (only the parts
/// conntrack reads: dl_type, offsets, padding length).
pub fn key_meta(frame: &[u8]) -> (FlowKey, PacketMeta) {
    let dl_type = u16::from_be_bytes([frame[12], frame[13]]);
    let mut key = FlowKey::default();
    key.set_dl_type(dl_type);
    let ip_len = if dl_type == 0x0800 {
        usize::from(u16::from_be_bytes([frame[16], frame[17]]))
    } else {
        40 + usize::from(u16::from_be_bytes([frame[18], frame[19]]))
    };
    let meta = PacketMeta {
        l3_ofs: 14,
        l4_ofs: 0,
        l2_pad_len: (frame.len() - 14 - ip_len) as u16,
        ..PacketMeta::default()
    };
    (key, meta)
}

/// A tracker and a simulated clock.
pub struct H {
    pub ct: ConnTracker,
    pub base: Instant,
}

impl H {
    pub fn new() -> H {
        H::with(CtConfig::default())
    }

    pub fn with(cfg: CtConfig) -> H {
        H {
            base: Instant::now(),
            ct: ConnTracker::new(cfg),
        }
    }

    pub fn at(&self, secs: u64) -> Instant {
        self.base + Duration::from_secs(secs)
    }

    /// One `ct(zone=zone[,commit])` on a fresh packet at `base + t`.
    pub fn ct(&self, frame: &[u8], zone: u16, commit: bool, t: Duration) -> CtVerdict {
        let (key, mut meta) = key_meta(frame);
        self.ct.process(
            frame,
            &key,
            &mut meta,
            &CtParams {
                zone,
                commit,
                ..CtParams::default()
            },
            self.base + t,
        )
    }

    /// The stateful firewall of `flows/`: `ct_state=-trk → ct(table=1)`,
    /// then `+trk+new → ct(commit)`, `+trk+est → forward`, `+trk+rel →
    /// forward`, `+trk+inv → drop`. Returns whether it was forwarded and
    /// the final ct_state. Runs both ct actions on the same metadata, as the
    /// datapath does after recirculation.
    pub fn firewall(&self, frame: &[u8], zone: u16, t: Duration) -> (bool, u8) {
        let (key, mut meta) = key_meta(frame);
        let now = self.base + t;
        let p = CtParams {
            zone,
            ..CtParams::default()
        };
        let v = self.ct.process(frame, &key, &mut meta, &p, now);
        assert_eq!(v.state & CtState::TRK, CtState::TRK);
        assert_eq!(meta.ct_state.0, v.state);
        if v.state & CtState::INV != 0 {
            return (false, v.state);
        }
        if v.state & CtState::NEW != 0 {
            let c = CtParams {
                zone,
                commit: true,
                ..CtParams::default()
            };
            let v2 = self.ct.process(frame, &key, &mut meta, &c, now);
            return (v2.state & CtState::INV == 0, v2.state);
        }
        (true, v.state)
    }

    pub fn dump(&self, t: Duration) -> Vec<ConnInfo> {
        self.ct.dump(None, self.base + t)
    }

    pub fn only(&self, t: Duration) -> ConnInfo {
        let d = self.dump(t);
        assert_eq!(d.len(), 1, "expected exactly one connection: {d:#?}");
        d.into_iter().next().expect("one")
    }

    pub fn total_invalid(&self) -> u64 {
        self.ct.stats().invalid.values().sum()
    }
}

pub const TRK: u8 = CtState::TRK;
pub const NEW: u8 = CtState::NEW;
pub const EST: u8 = CtState::EST;
pub const REL: u8 = CtState::REL;
pub const RPL: u8 = CtState::RPL;
pub const INV: u8 = CtState::INV;

pub fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

/// Handshake client 10.0.0.1:40000 -> server 10.0.0.2:80 through the
/// firewall at t=0: ISNs 1000 (client) and 5000 (server).
pub fn handshake(h: &H, zone: u16) {
    let s = tcp4(CLIENT, SERVER, Seg::new(40000, 80, 1000, syn()));
    assert_eq!(h.firewall(&s, zone, secs(0)), (true, TRK | NEW));
    let sa = tcp4(SERVER, CLIENT, Seg::new(80, 40000, 5000, syn_ack(1001)));
    assert_eq!(h.firewall(&sa, zone, secs(0)), (true, TRK | EST | RPL));
    let a = tcp4(CLIENT, SERVER, Seg::new(40000, 80, 1001, ack(5001)));
    assert_eq!(h.firewall(&a, zone, secs(0)), (true, TRK | EST));
}

/// Splits the untagged IPv4 frame `frame` (no IP options) into fragments
/// of at most `chunk` data bytes (a multiple of 8), as a router would:
/// same identification, MF on all but the last, the header checksum
/// recomputed.
pub fn fragment4(frame: &[u8], chunk: usize) -> Vec<Vec<u8>> {
    assert_eq!(chunk % 8, 0);
    let ip_len = usize::from(u16::from_be_bytes([frame[16], frame[17]]));
    let data = &frame[34..14 + ip_len];
    let mut out = Vec::new();
    let mut off = 0;
    while off < data.len() {
        let end = (off + chunk).min(data.len());
        let mut f = frame[..34].to_vec();
        f.extend_from_slice(&data[off..end]);
        let tot = (20 + end - off) as u16;
        f[16..18].copy_from_slice(&tot.to_be_bytes());
        let mf = if end < data.len() { 0x2000 } else { 0 };
        let word = mf | (off / 8) as u16;
        f[20..22].copy_from_slice(&word.to_be_bytes());
        f[24] = 0;
        f[25] = 0;
        let c = vswitch::wire::checksum::checksum(&f[14..34]);
        f[24..26].copy_from_slice(&c.to_be_bytes());
        out.push(f);
        off = end;
    }
    out
}

/// A raw IPv4 fragment of `frame`'s datagram: data bytes `[off, off +
/// len)` with MF as given (for overlaps and other malformations).
pub fn fragment4_at(frame: &[u8], off: usize, len: usize, more: bool) -> Vec<u8> {
    let ip_len = usize::from(u16::from_be_bytes([frame[16], frame[17]]));
    let data = &frame[34..14 + ip_len];
    let mut f = frame[..34].to_vec();
    let end = (off + len).min(data.len());
    f.extend_from_slice(data.get(off..end).unwrap_or(&[]));
    f.resize(34 + len, 0x77);
    let tot = (20 + len) as u16;
    f[16..18].copy_from_slice(&tot.to_be_bytes());
    let word = if more { 0x2000 } else { 0 } | (off / 8) as u16;
    f[20..22].copy_from_slice(&word.to_be_bytes());
    f[24] = 0;
    f[25] = 0;
    let c = vswitch::wire::checksum::checksum(&f[14..34]);
    f[24..26].copy_from_slice(&c.to_be_bytes());
    f
}

/// Splits the untagged IPv6 frame `frame` (no extension headers) into
/// fragments of at most `chunk` data bytes (a multiple of 8), each with a
/// fragment header (identification `ident`).
pub fn fragment6(frame: &[u8], chunk: usize, ident: u32) -> Vec<Vec<u8>> {
    let plen = usize::from(u16::from_be_bytes([frame[18], frame[19]]));
    let data = &frame[54..54 + plen];
    let mut out = Vec::new();
    let mut off = 0;
    while off < data.len() {
        let end = (off + chunk).min(data.len());
        out.push(fragment6_at(frame, off, end - off, end < data.len(), ident));
        off = end;
    }
    out
}

/// A raw IPv6 fragment of `frame`'s datagram: data `[off, off + len)`.
pub fn fragment6_at(frame: &[u8], off: usize, len: usize, more: bool, ident: u32) -> Vec<u8> {
    let plen = usize::from(u16::from_be_bytes([frame[18], frame[19]]));
    let data = &frame[54..54 + plen];
    let next = frame[20];
    let mut f = frame[..54].to_vec();
    f[20] = 44;
    f.push(next);
    f.push(0);
    let word = (off as u16 & 0xfff8) | u16::from(more);
    f.extend_from_slice(&word.to_be_bytes());
    f.extend_from_slice(&ident.to_be_bytes());
    let end = (off + len).min(data.len());
    f.extend_from_slice(data.get(off..end).unwrap_or(&[]));
    f.resize(62 + len, 0x77);
    let p = (8 + len) as u16;
    f[18..20].copy_from_slice(&p.to_be_bytes());
    f
}
