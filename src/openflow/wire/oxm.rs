//! OXM and NXM match fields: the type-length-value encoding of a match
//! that OpenFlow 1.2+ (OXM, class 0x8000) and the Nicira extensions (NXM,
//! classes 0x0000 and 0x0001) share, translated to and from `flow::Match`.
//!
//! A TLV header is 32 bits: class (16), field (7), has-mask (1), length (8).
//! With has-mask the value is followed by a mask of the same size.
//!
//! Several wire fields map onto one stored field: `tp_src` is `tcp_src`,
//! `udp_src`, `sctp_src` or `icmp_type` depending on `nw_proto`;
//! `nw_src` is the ARP sender address when `dl_type` is ARP. The encoder
//! picks the wire field from the match's `dl_type` / `nw_proto`, and puts
//! prerequisites first, as Open vSwitch checks them field by field. It
//! prefers OXM fields when `oxm` is set (OpenFlow 1.3+) and NXM fields
//! otherwise; Open vSwitch accepts NXM fields inside OXM matches too, which
//! is how fields without an OXM form (registers, conntrack, tunnel
//! addresses) travel in 1.3+.

use super::{port_from_of11, port_to_of11, round8, Error, Rd, Result, Wr};
use crate::flow::{Field, Match};

/// NXM class 0 (`NXM_OF_*`).
pub const NXM0: u16 = 0x0000;
/// NXM class 1 (`NXM_NX_*`).
pub const NXM1: u16 = 0x0001;
/// OXM basic class (`OXM_OF_*`).
pub const OXM: u16 = 0x8000;
/// OXM packet register class (`OXM_OF_PKT_REGn`, OpenFlow 1.5).
pub const OXM_PKT_REG: u16 = 0x8001;

/// A wire field (one TLV kind).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Wf {
    InPort16,
    InPort32,
    EthDst,
    EthSrc,
    EthType,
    VlanTci,
    VlanVid,
    VlanPcp,
    IpTos,
    IpDscp,
    IpEcn,
    IpProto,
    IpTtl,
    IpFrag,
    Ipv4Src,
    Ipv4Dst,
    Ipv6Src,
    Ipv6Dst,
    Ipv6Label,
    TpSrc(u8),
    TpDst(u8),
    IcmpType(u8),
    IcmpCode(u8),
    ArpOp,
    ArpSpa,
    ArpTpa,
    ArpSha,
    ArpTha,
    TcpFlags,
    TunId,
    TunSrc,
    TunDst,
    TunMetadata(u8),
    Metadata,
    Reg(u8),
    /// `OXM_OF_PKT_REGn` (1.5): registers 2n (high half) and 2n+1.
    Xreg(u8),
    CtState,
    CtZone,
    CtMark,
    Cookie,
}

/// (class, field, value length, maskable) of a wire field.
fn def(w: Wf) -> (u16, u8, usize, bool) {
    match w {
        Wf::InPort16 => (NXM0, 0, 2, false),
        Wf::InPort32 => (OXM, 0, 4, false),
        Wf::EthDst => (OXM, 3, 6, true),
        Wf::EthSrc => (OXM, 4, 6, true),
        Wf::EthType => (OXM, 5, 2, false),
        Wf::VlanTci => (NXM0, 4, 2, true),
        Wf::VlanVid => (OXM, 6, 2, true),
        Wf::VlanPcp => (OXM, 7, 1, false),
        Wf::IpTos => (NXM0, 5, 1, false),
        Wf::IpDscp => (OXM, 8, 1, false),
        Wf::IpEcn => (OXM, 9, 1, false),
        Wf::IpProto => (OXM, 10, 1, false),
        Wf::IpTtl => (NXM1, 29, 1, false),
        Wf::IpFrag => (NXM1, 26, 1, true),
        Wf::Ipv4Src => (OXM, 11, 4, true),
        Wf::Ipv4Dst => (OXM, 12, 4, true),
        Wf::Ipv6Src => (OXM, 26, 16, true),
        Wf::Ipv6Dst => (OXM, 27, 16, true),
        Wf::Ipv6Label => (OXM, 28, 4, true),
        // TpSrc(p)/TpDst(p): p is the IP protocol (6, 17, 132).
        Wf::TpSrc(17) => (OXM, 15, 2, true),
        Wf::TpDst(17) => (OXM, 16, 2, true),
        Wf::TpSrc(132) => (OXM, 17, 2, true),
        Wf::TpDst(132) => (OXM, 18, 2, true),
        Wf::TpSrc(_) => (OXM, 13, 2, true),
        Wf::TpDst(_) => (OXM, 14, 2, true),
        Wf::IcmpType(58) => (OXM, 29, 1, false),
        Wf::IcmpCode(58) => (OXM, 30, 1, false),
        Wf::IcmpType(_) => (OXM, 19, 1, false),
        Wf::IcmpCode(_) => (OXM, 20, 1, false),
        Wf::ArpOp => (OXM, 21, 2, false),
        Wf::ArpSpa => (OXM, 22, 4, true),
        Wf::ArpTpa => (OXM, 23, 4, true),
        Wf::ArpSha => (OXM, 24, 6, true),
        Wf::ArpTha => (OXM, 25, 6, true),
        Wf::TcpFlags => (NXM1, 34, 2, true),
        Wf::TunId => (OXM, 38, 8, true),
        Wf::TunSrc => (NXM1, 31, 4, true),
        Wf::TunDst => (NXM1, 32, 4, true),
        Wf::TunMetadata(n) => (NXM1, 40 + n, 8, true),
        Wf::Metadata => (OXM, 2, 8, true),
        Wf::Reg(n) => (NXM1, n, 4, true),
        Wf::Xreg(n) => (OXM_PKT_REG, n, 8, true),
        Wf::CtState => (NXM1, 105, 4, true),
        Wf::CtZone => (NXM1, 106, 2, false),
        Wf::CtMark => (NXM1, 107, 4, true),
        Wf::Cookie => (NXM1, 30, 8, true),
    }
}

/// The NXM twin of an OXM field, used when `oxm` is off.
fn nxm_twin(w: Wf) -> (u16, u8) {
    match w {
        Wf::EthDst => (NXM0, 1),
        Wf::EthSrc => (NXM0, 2),
        Wf::EthType => (NXM0, 3),
        Wf::IpProto => (NXM0, 6),
        Wf::IpEcn => (NXM1, 28),
        Wf::Ipv4Src => (NXM0, 7),
        Wf::Ipv4Dst => (NXM0, 8),
        Wf::Ipv6Src => (NXM1, 19),
        Wf::Ipv6Dst => (NXM1, 20),
        Wf::Ipv6Label => (NXM1, 27),
        Wf::TpSrc(17) => (NXM0, 11),
        Wf::TpDst(17) => (NXM0, 12),
        Wf::TpSrc(p) if p != 132 => (NXM0, 9),
        Wf::TpDst(p) if p != 132 => (NXM0, 10),
        Wf::IcmpType(58) => (NXM1, 21),
        Wf::IcmpCode(58) => (NXM1, 22),
        Wf::IcmpType(_) => (NXM0, 13),
        Wf::IcmpCode(_) => (NXM0, 14),
        Wf::ArpOp => (NXM0, 15),
        Wf::ArpSpa => (NXM0, 16),
        Wf::ArpTpa => (NXM0, 17),
        Wf::ArpSha => (NXM1, 17),
        Wf::ArpTha => (NXM1, 18),
        Wf::TunId => (NXM1, 16),
        _ => {
            let (c, f, _, _) = def(w);
            (c, f)
        }
    }
}

/// The wire field for a TLV (class, field), with its value length when the
/// length is variable (`tun_metadataN`).
fn lookup(class: u16, field: u8) -> Option<Wf> {
    Some(match (class, field) {
        (NXM0, 0) => Wf::InPort16,
        (NXM0, 1) | (OXM, 3) => Wf::EthDst,
        (NXM0, 2) | (OXM, 4) => Wf::EthSrc,
        (NXM0, 3) | (OXM, 5) => Wf::EthType,
        (NXM0, 4) => Wf::VlanTci,
        (NXM0, 5) => Wf::IpTos,
        (NXM0, 6) | (OXM, 10) => Wf::IpProto,
        (NXM0, 7) | (OXM, 11) => Wf::Ipv4Src,
        (NXM0, 8) | (OXM, 12) => Wf::Ipv4Dst,
        (NXM0, 9) | (OXM, 13) => Wf::TpSrc(6),
        (NXM0, 10) | (OXM, 14) => Wf::TpDst(6),
        (NXM0, 11) | (OXM, 15) => Wf::TpSrc(17),
        (NXM0, 12) | (OXM, 16) => Wf::TpDst(17),
        (OXM, 17) => Wf::TpSrc(132),
        (OXM, 18) => Wf::TpDst(132),
        (NXM0, 13) | (OXM, 19) => Wf::IcmpType(1),
        (NXM0, 14) | (OXM, 20) => Wf::IcmpCode(1),
        (NXM0, 15) | (OXM, 21) => Wf::ArpOp,
        (NXM0, 16) | (OXM, 22) => Wf::ArpSpa,
        (NXM0, 17) | (OXM, 23) => Wf::ArpTpa,
        (NXM1, 17) | (OXM, 24) => Wf::ArpSha,
        (NXM1, 18) | (OXM, 25) => Wf::ArpTha,
        (NXM1, 19) | (OXM, 26) => Wf::Ipv6Src,
        (NXM1, 20) | (OXM, 27) => Wf::Ipv6Dst,
        (NXM1, 27) | (OXM, 28) => Wf::Ipv6Label,
        (NXM1, 21) | (OXM, 29) => Wf::IcmpType(58),
        (NXM1, 22) | (OXM, 30) => Wf::IcmpCode(58),
        (NXM1, 16) | (OXM, 38) => Wf::TunId,
        (NXM1, 28) | (OXM, 9) => Wf::IpEcn,
        (OXM, 0) => Wf::InPort32,
        (OXM, 2) => Wf::Metadata,
        (OXM, 6) => Wf::VlanVid,
        (OXM, 7) => Wf::VlanPcp,
        (OXM, 8) => Wf::IpDscp,
        (NXM1, 26) => Wf::IpFrag,
        (NXM1, 29) => Wf::IpTtl,
        (NXM1, 30) => Wf::Cookie,
        (NXM1, 31) => Wf::TunSrc,
        (NXM1, 32) => Wf::TunDst,
        (NXM1, 34) => Wf::TcpFlags,
        (NXM1, 105) => Wf::CtState,
        (NXM1, 106) => Wf::CtZone,
        (NXM1, 107) => Wf::CtMark,
        (NXM1, n) if n < 8 => Wf::Reg(n),
        (OXM_PKT_REG, n) if n < 4 => Wf::Xreg(n),
        (NXM1, n) if (40..48).contains(&n) => Wf::TunMetadata(n - 40),
        _ => return None,
    })
}

/// A match decoded from TLVs, with the cookie filter NXM requests carry.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Decoded {
    /// The match.
    pub matches: Match,
    /// `NXM_NX_COOKIE` value (requests only).
    pub cookie: u64,
    /// `NXM_NX_COOKIE` mask (0 = any cookie).
    pub cookie_mask: u64,
}

fn be(b: &[u8]) -> u128 {
    b.iter().fold(0u128, |a, &x| (a << 8) | u128::from(x))
}

/// Decodes a sequence of TLVs (the whole of `b`).
pub fn decode(b: &[u8]) -> Result<Decoded> {
    let mut r = Rd::new(b);
    let mut d = Decoded::default();
    let mut seen: Vec<(u16, u8)> = Vec::new();
    let mut wfs: Vec<Wf> = Vec::new();
    while !r.is_empty() {
        let h = r.u32()?;
        let class = (h >> 16) as u16;
        let field = ((h >> 9) & 0x7f) as u8;
        let has_mask = h & 0x100 != 0;
        let len = (h & 0xff) as usize;
        let body = r.bytes(len)?;
        let wf = lookup(class, field).ok_or(Error::BadField { class, field })?;
        let (_, _, vlen, maskable) = def(wf);
        let vlen_got = if has_mask { len / 2 } else { len };
        if has_mask && (!len.is_multiple_of(2) || !maskable) {
            return Err(if maskable {
                Error::BadLen
            } else {
                Error::BadMask
            });
        }
        let (value, mask) = if let Wf::TunMetadata(_) = wf {
            // Variable length (1..=124 bytes); only the low 64 bits are
            // stored, so wider values must have zero high bytes.
            if vlen_got == 0 || vlen_got > 124 {
                return Err(Error::BadLen);
            }
            let (v, m) = body.split_at(vlen_got);
            let hi = vlen_got.saturating_sub(8);
            if v[..hi].iter().any(|&x| x != 0) || (has_mask && m[..hi].iter().any(|&x| x != 0)) {
                return Err(Error::BadValue);
            }
            let mask = if has_mask {
                be(&m[hi..])
            } else {
                (1u128 << (8 * (vlen_got - hi))) - 1
            };
            (be(&v[hi..]), mask)
        } else {
            if vlen_got != vlen {
                return Err(Error::BadLen);
            }
            let (v, m) = body.split_at(vlen);
            let full = if vlen >= 16 {
                u128::MAX
            } else {
                (1u128 << (8 * vlen)) - 1
            };
            (be(v), if has_mask { be(m) } else { full })
        };
        let key = (class, field);
        // A field and its twin in another class are the same field.
        let twin = nxm_twin(wf);
        if seen.contains(&key) || seen.contains(&twin) {
            return Err(Error::DupField);
        }
        seen.push(key);
        seen.push(twin);
        wfs.push(wf);
        // Value bits outside the mask are cleared, as Open vSwitch does.
        let value = value & mask;
        apply(&mut d, wf, value, mask)?;
    }
    check_prereqs(&d.matches, &wfs)?;
    Ok(d)
}

fn apply(d: &mut Decoded, wf: Wf, v: u128, m: u128) -> Result<()> {
    let mt = &mut d.matches;
    match wf {
        // in_port is exact-only; the 16-bit NXM form is the same field.
        Wf::InPort16 => mt.set(Field::InPort, v, u128::from(u32::MAX)),
        Wf::InPort32 => mt.set(
            Field::InPort,
            u128::from(port_from_of11(v as u32)),
            u128::from(u32::MAX),
        ),
        Wf::EthDst => mt.set(Field::DlDst, v, m),
        Wf::EthSrc => mt.set(Field::DlSrc, v, m),
        Wf::EthType => mt.set(Field::DlType, v, m),
        Wf::VlanTci => mt.set(Field::VlanTci, v, m),
        Wf::VlanVid => {
            if v > 0x1fff {
                return Err(Error::BadValue);
            }
            mt.set(Field::VlanTci, v & 0x1fff, m & 0x1fff)
        }
        Wf::VlanPcp => {
            if v > 7 {
                return Err(Error::BadValue);
            }
            mt.set(Field::VlanTci, 0x1000 | (v << 13), 0xf000)
        }
        Wf::IpTos => {
            if v & 3 != 0 {
                return Err(Error::BadValue);
            }
            mt.set(Field::NwTos, v, 0xfc)
        }
        Wf::IpDscp => {
            if v > 63 {
                return Err(Error::BadValue);
            }
            mt.set(Field::IpDscp, v, 0x3f)
        }
        Wf::IpEcn => {
            if v > 3 {
                return Err(Error::BadValue);
            }
            mt.set(Field::NwEcn, v, 3)
        }
        Wf::IpProto => mt.set(Field::NwProto, v, m),
        Wf::IpTtl => mt.set(Field::NwTtl, v, m),
        Wf::IpFrag => {
            if v > 3 || m & !3 != 0 {
                return Err(Error::BadValue);
            }
            mt.set(Field::NwFrag, v, m)
        }
        Wf::Ipv4Src => mt.set(Field::NwSrc, v, m),
        Wf::Ipv4Dst => mt.set(Field::NwDst, v, m),
        Wf::Ipv6Src => mt.set(Field::Ipv6Src, v, m),
        Wf::Ipv6Dst => mt.set(Field::Ipv6Dst, v, m),
        Wf::Ipv6Label => {
            if v > 0xf_ffff {
                return Err(Error::BadValue);
            }
            mt.set(Field::Ipv6Label, v, m)
        }
        Wf::TpSrc(_) => mt.set(Field::TpSrc, v, m),
        Wf::TpDst(_) => mt.set(Field::TpDst, v, m),
        Wf::IcmpType(_) => mt.set(Field::IcmpType, v, m),
        Wf::IcmpCode(_) => mt.set(Field::IcmpCode, v, m),
        Wf::ArpOp => {
            if v > 0xff {
                return Err(Error::BadValue);
            }
            mt.set(Field::ArpOp, v, 0xff)
        }
        Wf::ArpSpa => mt.set(Field::ArpSpa, v, m),
        Wf::ArpTpa => mt.set(Field::ArpTpa, v, m),
        Wf::ArpSha => mt.set(Field::ArpSha, v, m),
        Wf::ArpTha => mt.set(Field::ArpTha, v, m),
        Wf::TcpFlags => {
            if v > 0xfff {
                return Err(Error::BadValue);
            }
            mt.set(Field::TcpFlags, v, m & 0xfff)
        }
        Wf::TunId => mt.set(Field::TunId, v, m),
        Wf::TunSrc => mt.set(Field::TunSrc, v, m),
        Wf::TunDst => mt.set(Field::TunDst, v, m),
        Wf::TunMetadata(n) => mt.set(Field::TunMetadata(n), v, m),
        Wf::Metadata => mt.set(Field::Metadata, v, m),
        Wf::Reg(n) => mt.set(Field::Reg(n), v, m),
        Wf::Xreg(n) => {
            // Open vSwitch sends register matches this way in 1.5, pairing
            // registers; a half with a zero mask is not matched.
            let (hi, lo) = (2 * n, 2 * n + 1);
            if (m >> 32) & 0xffff_ffff != 0 {
                mt.set(
                    Field::Reg(hi),
                    (v >> 32) & 0xffff_ffff,
                    (m >> 32) & 0xffff_ffff,
                );
            }
            if m & 0xffff_ffff != 0 {
                mt.set(Field::Reg(lo), v & 0xffff_ffff, m & 0xffff_ffff);
            }
        }
        Wf::CtState => {
            if v > 0xff {
                return Err(Error::BadValue);
            }
            mt.set(Field::CtState, v, m & 0xff)
        }
        Wf::CtZone => mt.set(Field::CtZone, v, m),
        Wf::CtMark => mt.set(Field::CtMark, v, m),
        Wf::Cookie => {
            d.cookie = v as u64;
            d.cookie_mask = m as u64;
        }
    }
    Ok(())
}

fn exact(m: &Match, f: Field) -> Option<u128> {
    let (v, mask) = m.get(f);
    (mask == f.full_mask()).then_some(v)
}

/// Open vSwitch's prerequisites: an L3 field needs its `dl_type`, an L4
/// field its `nw_proto` (OFPBMC_BAD_PREREQ otherwise).
fn check_prereqs(m: &Match, wfs: &[Wf]) -> Result<()> {
    let dl = exact(m, Field::DlType);
    let ip4 = dl == Some(0x0800);
    let ip6 = dl == Some(0x86dd);
    let arp = matches!(dl, Some(0x0806) | Some(0x8035));
    let proto = exact(m, Field::NwProto);
    for wf in wfs {
        let ok = match wf {
            Wf::IpTos | Wf::IpDscp | Wf::IpEcn | Wf::IpProto | Wf::IpTtl | Wf::IpFrag => ip4 || ip6,
            Wf::Ipv4Src | Wf::Ipv4Dst => ip4,
            Wf::Ipv6Src | Wf::Ipv6Dst | Wf::Ipv6Label => ip6,
            Wf::ArpOp | Wf::ArpSpa | Wf::ArpTpa | Wf::ArpSha | Wf::ArpTha => arp,
            Wf::TpSrc(p) | Wf::TpDst(p) => (ip4 || ip6) && proto == Some(u128::from(*p)),
            Wf::TcpFlags => (ip4 || ip6) && proto == Some(6),
            Wf::IcmpType(1) | Wf::IcmpCode(1) => ip4 && proto == Some(1),
            Wf::IcmpType(_) | Wf::IcmpCode(_) => ip6 && proto == Some(58),
            _ => true,
        };
        if !ok {
            return Err(Error::BadPrereq);
        }
    }
    Ok(())
}

fn put(out: &mut Vec<u8>, class: u16, field: u8, len: usize, v: u128, m: Option<u128>) {
    let has_mask = m.is_some();
    let tl = if has_mask { 2 * len } else { len };
    out.u32(
        (u32::from(class) << 16) | (u32::from(field) << 9) | (u32::from(has_mask) << 8) | tl as u32,
    );
    out.extend_from_slice(&v.to_be_bytes()[16 - len..]);
    if let Some(m) = m {
        out.extend_from_slice(&m.to_be_bytes()[16 - len..]);
    }
}

/// Writes one field from a stored (value, mask), as OXM or NXM.
fn put_wf(out: &mut Vec<u8>, oxm: bool, wf: Wf, v: u128, m: u128) {
    let (c, f, len, maskable) = def(wf);
    let (c, f) = if oxm && c == OXM {
        (c, f)
    } else {
        nxm_twin(wf)
    };
    let full = if len >= 16 {
        u128::MAX
    } else {
        (1u128 << (8 * len)) - 1
    };
    let mask = (maskable && m != full).then_some(m);
    put(out, c, f, len, v & m, mask);
}

/// Appends the TLVs of `m` (and of a cookie filter when `cookie_mask` is
/// not 0), OXM-first when `oxm` is set.
pub fn encode(out: &mut Vec<u8>, m: &Match, oxm: bool, cookie: u64, cookie_mask: u64) {
    let get = |f: Field| m.get(f);
    let (v, mk) = get(Field::InPort);
    if mk != 0 {
        if oxm {
            put(out, OXM, 0, 4, u128::from(port_to_of11(v as u32)), None);
        } else {
            put(out, NXM0, 0, 2, v & 0xffff, None);
        }
    }
    for (f, wf) in [(Field::DlDst, Wf::EthDst), (Field::DlSrc, Wf::EthSrc)] {
        let (v, mk) = get(f);
        if mk != 0 {
            put_wf(out, oxm, wf, v, mk);
        }
    }
    let (dl, dlm) = get(Field::DlType);
    if dlm != 0 {
        put_wf(out, oxm, Wf::EthType, dl, 0xffff);
    }
    let (tci, tcim) = get(Field::VlanTci);
    if tcim != 0 {
        if oxm && tcim & 0xe000 == 0 {
            put_wf(out, oxm, Wf::VlanVid, tci & 0x1fff, tcim & 0x1fff);
        } else if oxm && tcim == 0xffff && tci & 0x1000 != 0 {
            put_wf(out, oxm, Wf::VlanVid, tci & 0x1fff, 0x1fff);
            put(out, OXM, 7, 1, tci >> 13, None);
        } else {
            put(
                out,
                NXM0,
                4,
                2,
                tci & tcim,
                (tcim != 0xffff).then_some(tcim),
            );
        }
    }
    let arp = dlm != 0 && (dl == 0x0806 || dl == 0x8035);
    let (proto, protom) = get(Field::NwProto);
    if protom != 0 {
        put_wf(
            out,
            oxm,
            if arp { Wf::ArpOp } else { Wf::IpProto },
            proto,
            0xff,
        );
    }
    let (tos, tosm) = get(Field::NwTos);
    if tosm & 0xfc != 0 {
        if oxm {
            put(out, OXM, 8, 1, (tos & 0xfc) >> 2, None);
        } else {
            put(out, NXM0, 5, 1, tos & 0xfc, None);
        }
    }
    if tosm & 3 != 0 {
        put_wf(out, oxm, Wf::IpEcn, tos & 3, 3);
    }
    let pairs: [(Field, Wf, Wf); 2] = [
        (Field::NwSrc, Wf::Ipv4Src, Wf::ArpSpa),
        (Field::NwDst, Wf::Ipv4Dst, Wf::ArpTpa),
    ];
    for (f, ipf, arpf) in pairs {
        let (v, mk) = get(f);
        if mk != 0 {
            put_wf(out, oxm, if arp { arpf } else { ipf }, v, mk);
        }
    }
    for (f, wf) in [
        (Field::Ipv6Src, Wf::Ipv6Src),
        (Field::Ipv6Dst, Wf::Ipv6Dst),
        (Field::Ipv6Label, Wf::Ipv6Label),
    ] {
        let (v, mk) = get(f);
        if mk != 0 {
            put_wf(out, oxm, wf, v, mk);
        }
    }
    let (ttl, ttlm) = get(Field::NwTtl);
    if ttlm != 0 {
        put_wf(out, oxm, Wf::IpTtl, ttl, 0xff);
    }
    let (frag, fragm) = get(Field::NwFrag);
    if fragm != 0 {
        put(out, NXM1, 26, 1, frag, (fragm != 0xff).then_some(fragm));
    }
    let p = if protom == 0xff { proto as u8 } else { 6 };
    for (f, is_src) in [(Field::TpSrc, true), (Field::TpDst, false)] {
        let (v, mk) = get(f);
        if mk == 0 {
            continue;
        }
        let wf = match (p, is_src) {
            (1 | 58, true) => Wf::IcmpType(p),
            (1 | 58, false) => Wf::IcmpCode(p),
            (_, true) => Wf::TpSrc(p),
            (_, false) => Wf::TpDst(p),
        };
        if matches!(wf, Wf::IcmpType(_) | Wf::IcmpCode(_)) {
            put_wf(out, oxm, wf, v & 0xff, 0xff);
        } else {
            put_wf(out, oxm, wf, v, mk);
        }
    }
    for (f, wf) in [(Field::ArpSha, Wf::ArpSha), (Field::ArpTha, Wf::ArpTha)] {
        let (v, mk) = get(f);
        if mk != 0 {
            put_wf(out, oxm, wf, v, mk);
        }
    }
    let mut rest: Vec<(Field, Wf)> = vec![
        (Field::TcpFlags, Wf::TcpFlags),
        (Field::TunId, Wf::TunId),
        (Field::TunSrc, Wf::TunSrc),
        (Field::TunDst, Wf::TunDst),
    ];
    rest.extend((0..8).map(|n| (Field::TunMetadata(n), Wf::TunMetadata(n))));
    rest.push((Field::Metadata, Wf::Metadata));
    rest.extend((0..8).map(|n| (Field::Reg(n), Wf::Reg(n))));
    rest.extend([
        (Field::CtState, Wf::CtState),
        (Field::CtZone, Wf::CtZone),
        (Field::CtMark, Wf::CtMark),
    ]);
    for (f, wf) in rest {
        let (v, mk) = get(f);
        if mk == 0 {
            continue;
        }
        let (c, fl, len, maskable) = def(wf);
        // These have one wire form whatever the version, except tun_id.
        let (c, fl) = if wf == Wf::TunId && !oxm {
            (NXM1, 16)
        } else {
            (c, fl)
        };
        let full = f.full_mask();
        let mask = (maskable && mk != full).then_some(mk);
        put(out, c, fl, len, v, mask);
    }
    if cookie_mask != 0 {
        put(
            out,
            NXM1,
            30,
            8,
            u128::from(cookie & cookie_mask),
            (cookie_mask != u64::MAX).then_some(u128::from(cookie_mask)),
        );
    }
}

/// OXM match type in an `ofp_match` (OpenFlow 1.2+).
const OFPMT_OXM: u16 = 1;

/// Decodes an OpenFlow 1.1+ `ofp_match` (type, length, OXM TLVs, padding
/// to 8 bytes) from `r`.
pub fn decode_ofp_match(r: &mut Rd) -> Result<Decoded> {
    let typ = r.u16()?;
    let len = usize::from(r.u16()?);
    if typ != OFPMT_OXM {
        return Err(Error::BadMatchType(typ));
    }
    if len < 4 {
        return Err(Error::BadLen);
    }
    let body = r.bytes(len - 4)?;
    r.skip(round8(len) - len)?;
    decode(body)
}

/// Appends an OpenFlow 1.1+ `ofp_match` holding `m` as OXM.
pub fn encode_ofp_match(out: &mut Vec<u8>, m: &Match, cookie: u64, cookie_mask: u64) {
    let start = out.len();
    out.u16(OFPMT_OXM);
    out.u16(0);
    encode(out, m, true, cookie, cookie_mask);
    let len = out.len() - start;
    out.set_u16(start + 2, len as u16);
    out.pad8(start);
}

/// Decodes an NXM match of `len` bytes followed by padding to 8 bytes.
pub fn decode_nxm_padded(r: &mut Rd, len: usize) -> Result<Decoded> {
    let body = r.bytes(len)?;
    r.skip(round8(len) - len)?;
    decode(body)
}

/// Appends an NXM match padded to 8 bytes; returns the unpadded length.
pub fn encode_nxm_padded(out: &mut Vec<u8>, m: &Match, cookie: u64, cookie_mask: u64) -> u16 {
    let start = out.len();
    encode(out, m, false, cookie, cookie_mask);
    let len = out.len() - start;
    out.pad8(start);
    len as u16
}

/// The header naming `f` in an action whose slice reaches bit `end - 1`:
/// `field_header(f, oxm)`, unless that is narrower than the slice:
/// `in_port`'s NXM header is 16 bits wide and its OXM one 32, so a slice
/// past bit 15 takes the OXM one and decodes again.
pub fn slice_header(f: Field, end: u32, oxm: bool) -> u32 {
    let nxm = field_header(f, oxm);
    if (nxm & 0xff) * 8 >= end {
        return nxm;
    }
    match f {
        Field::InPort => {
            let (c, fl, len, _) = def(Wf::InPort32);
            (u32::from(c) << 16) | (u32::from(fl) << 9) | len as u32
        }
        _ => nxm,
    }
}

/// A field slice's NXM/OXM header (32 bits, no mask), as `reg_move`,
/// `reg_load` and `ct(zone=...)` name their fields.
pub fn field_header(f: Field, oxm: bool) -> u32 {
    let wf = field_wf(f);
    let (c, fl, len, _) = def(wf);
    let (c, fl) = if oxm && c == OXM {
        (c, fl)
    } else {
        nxm_twin(wf)
    };
    let len = match f {
        Field::InPort if c == NXM0 => 2,
        Field::InPort => 4,
        _ => len,
    };
    (u32::from(c) << 16) | (u32::from(fl) << 9) | len as u32
}

fn field_wf(f: Field) -> Wf {
    match f {
        Field::InPort => Wf::InPort16,
        Field::DlSrc => Wf::EthSrc,
        Field::DlDst => Wf::EthDst,
        Field::DlType => Wf::EthType,
        Field::VlanTci | Field::DlVlan | Field::DlVlanPcp => Wf::VlanTci,
        Field::NwSrc => Wf::Ipv4Src,
        Field::NwDst => Wf::Ipv4Dst,
        Field::NwProto => Wf::IpProto,
        Field::NwTos | Field::IpDscp => Wf::IpTos,
        Field::NwEcn => Wf::IpEcn,
        Field::NwTtl => Wf::IpTtl,
        Field::NwFrag => Wf::IpFrag,
        Field::TpSrc => Wf::TpSrc(6),
        Field::TpDst => Wf::TpDst(6),
        Field::TcpFlags => Wf::TcpFlags,
        Field::IcmpType => Wf::IcmpType(1),
        Field::IcmpCode => Wf::IcmpCode(1),
        Field::ArpOp => Wf::ArpOp,
        Field::ArpSpa => Wf::ArpSpa,
        Field::ArpTpa => Wf::ArpTpa,
        Field::ArpSha => Wf::ArpSha,
        Field::ArpTha => Wf::ArpTha,
        Field::Ipv6Src => Wf::Ipv6Src,
        Field::Ipv6Dst => Wf::Ipv6Dst,
        Field::Ipv6Label => Wf::Ipv6Label,
        Field::TunId => Wf::TunId,
        Field::TunSrc => Wf::TunSrc,
        Field::TunDst => Wf::TunDst,
        Field::TunMetadata(n) => Wf::TunMetadata(n & 7),
        Field::Metadata => Wf::Metadata,
        Field::Reg(n) => Wf::Reg(n & 7),
        Field::CtState => Wf::CtState,
        Field::CtZone => Wf::CtZone,
        Field::CtMark => Wf::CtMark,
    }
}

/// The field a 32-bit NXM/OXM header names (for `reg_move`, `reg_load`,
/// `set_field`, `ct(zone=...)`), and its width in bits on the wire.
pub fn field_from_header(h: u32) -> Result<(Field, u32)> {
    let class = (h >> 16) as u16;
    let fl = ((h >> 9) & 0x7f) as u8;
    let wf = lookup(class, fl).ok_or(Error::BadField { class, field: fl })?;
    let f = match wf {
        Wf::InPort16 | Wf::InPort32 => Field::InPort,
        Wf::EthDst => Field::DlDst,
        Wf::EthSrc => Field::DlSrc,
        Wf::EthType => Field::DlType,
        Wf::VlanTci => Field::VlanTci,
        Wf::VlanVid => Field::DlVlan,
        Wf::VlanPcp => Field::DlVlanPcp,
        Wf::IpTos => Field::NwTos,
        Wf::IpDscp => Field::IpDscp,
        Wf::IpEcn => Field::NwEcn,
        Wf::IpProto => Field::NwProto,
        Wf::IpTtl => Field::NwTtl,
        Wf::IpFrag => Field::NwFrag,
        Wf::Ipv4Src => Field::NwSrc,
        Wf::Ipv4Dst => Field::NwDst,
        Wf::Ipv6Src => Field::Ipv6Src,
        Wf::Ipv6Dst => Field::Ipv6Dst,
        Wf::Ipv6Label => Field::Ipv6Label,
        Wf::TpSrc(_) => Field::TpSrc,
        Wf::TpDst(_) => Field::TpDst,
        Wf::IcmpType(_) => Field::IcmpType,
        Wf::IcmpCode(_) => Field::IcmpCode,
        Wf::ArpOp => Field::ArpOp,
        Wf::ArpSpa => Field::ArpSpa,
        Wf::ArpTpa => Field::ArpTpa,
        Wf::ArpSha => Field::ArpSha,
        Wf::ArpTha => Field::ArpTha,
        Wf::TcpFlags => Field::TcpFlags,
        Wf::TunId => Field::TunId,
        Wf::TunSrc => Field::TunSrc,
        Wf::TunDst => Field::TunDst,
        Wf::TunMetadata(n) => Field::TunMetadata(n),
        Wf::Metadata => Field::Metadata,
        Wf::Reg(n) => Field::Reg(n),
        Wf::Xreg(_) => return Err(Error::BadField { class, field: fl }),
        Wf::CtState => Field::CtState,
        Wf::CtZone => Field::CtZone,
        Wf::CtMark => Field::CtMark,
        Wf::Cookie => return Err(Error::BadField { class, field: fl }),
    };
    // The header's length must be the field's (twice it with the mask
    // bit): a slice is checked against this width, so a header claiming
    // another would let through a slice the field cannot hold.
    let len = h & 0xff;
    let bits = match wf {
        Wf::TunMetadata(_) => len * 8,
        _ => {
            let vlen = def(wf).2 as u32;
            let want = if h & 0x100 != 0 { 2 * vlen } else { vlen };
            if len != want {
                return Err(Error::BadLen);
            }
            vlen * 8
        }
    };
    Ok((f, bits))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rt(m: &Match, oxm: bool) {
        let mut b = Vec::new();
        encode(&mut b, m, oxm, 0, 0);
        assert_eq!(decode(&b).unwrap().matches, *m, "oxm={oxm} {b:02x?}");
    }

    #[test]
    fn typical_matches_round_trip() {
        let mut m = Match::default();
        m.set_exact(Field::InPort, 3);
        m.set_exact(Field::DlType, 0x0800);
        m.set_exact(Field::NwProto, 6);
        m.set(Field::NwSrc, 0x0a00_0000, 0xff00_0000);
        m.set_exact(Field::TpDst, 80);
        m.set(Field::CtState, 0x20, 0x21);
        m.set_exact(Field::Reg(3), 7);
        m.set_exact(Field::Metadata, 100);
        m.set(Field::VlanTci, 0x1014, 0x1fff);
        rt(&m, false);
        rt(&m, true);
        let mut a = Match::default();
        a.set_exact(Field::DlType, 0x0806);
        a.set_exact(Field::ArpOp, 1);
        a.set_exact(Field::ArpTpa, 0x0a00_0001);
        rt(&a, false);
        rt(&a, true);
    }

    #[test]
    fn prerequisites_and_duplicates_are_checked() {
        // tcp_dst without nw_proto.
        let mut b = Vec::new();
        put(&mut b, OXM, 14, 2, 80, None);
        assert_eq!(decode(&b), Err(Error::BadPrereq));
        let mut b = Vec::new();
        put(&mut b, OXM, 5, 2, 0x800, None);
        put(&mut b, NXM0, 3, 2, 0x800, None);
        assert_eq!(decode(&b), Err(Error::DupField));
        let mut b = Vec::new();
        put(&mut b, 0x8000, 120, 2, 0, None);
        assert!(matches!(decode(&b), Err(Error::BadField { .. })));
    }
}
