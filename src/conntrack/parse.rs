//! The few header fields conntrack needs, read straight from the frame.
//!
//! Kept private to conntrack so the tracker does not depend on the `wire`
//! views. Every read is bounds-checked (`get`), so a malformed packet is an
//! [`CtInvalidDetail`], never a panic.
//!
//! The one rule: the IP datagram ends where its header says (IPv4 total
//! length, IPv6 40 + payload length), never at the end of the frame. The
//! bytes after it are Ethernet padding: they are in no checksum and are no
//! TCP payload. Every slice below is cut from that datagram.

use core::net::{Ipv4Addr, Ipv6Addr};

use super::table::ConnKey;
use super::{ChecksumPolicy, CtInvalidDetail, CtInvalidReason as R};
use crate::packet::CsumStatus;
use crate::wire::checksum;

/// IP protocol numbers conntrack knows.
pub(crate) const IPPROTO_ICMP: u8 = 1;
pub(crate) const IPPROTO_TCP: u8 = 6;
pub(crate) const IPPROTO_UDP: u8 = 17;
pub(crate) const IPPROTO_ICMPV6: u8 = 58;

/// TCP flag bits (low 12 bits of the 13th/14th header bytes).
pub(crate) const TCP_FIN: u16 = 0x001;
pub(crate) const TCP_SYN: u16 = 0x002;
pub(crate) const TCP_RST: u16 = 0x004;
pub(crate) const TCP_PSH: u16 = 0x008;
pub(crate) const TCP_ACK: u16 = 0x010;
pub(crate) const TCP_URG: u16 = 0x020;

/// pf's window-scale encoding: the option was present.
pub(crate) const WSCALE_FLAG: u8 = 0x80;
/// pf's window-scale encoding: connection picked up mid-stream, scale
/// unknown.
pub(crate) const WSCALE_UNKNOWN: u8 = 0x40;
/// pf's window-scale encoding: the shift itself.
pub(crate) const WSCALE_MASK: u8 = 0x0f;
/// RFC 7323 section 2.3: shifts above 14 are treated as 14.
pub(crate) const TCP_MAX_WSCALE: u8 = 14;

/// What the TCP state machine needs from a segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TcpSeg {
    pub seq: u32,
    pub ack: u32,
    pub win: u16,
    /// The 12 flag bits.
    pub flags: u16,
    /// Bytes of payload: IP-delimited segment length minus the TCP header.
    pub payload_len: u32,
    /// Window scale option in pf encoding (`WSCALE_FLAG | shift`, or 0).
    pub wscale: u8,
}

/// Per-protocol part of a parsed packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum L4 {
    Tcp(TcpSeg),
    Udp,
    /// ICMP/ICMPv6 echo (or timestamp/info): `valid_new` says whether this
    /// type may start a connection.
    Icmp {
        valid_new: bool,
    },
    /// Another IP protocol, tracked by addresses only.
    Other,
}

/// A packet ready for lookup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Parsed {
    /// The connection key in the packet's direction (for an ICMP error: the
    /// key of the embedded packet, reversed).
    pub key: ConnKey,
    /// An ICMP error about the connection `key` names.
    pub related: bool,
    pub l4: L4,
}

type PResult<T> = Result<T, CtInvalidDetail>;

fn malformed(detail: &'static str) -> CtInvalidDetail {
    CtInvalidDetail::new(R::Malformed, detail)
}

#[inline]
fn byte(b: &[u8], off: usize) -> PResult<u8> {
    b.get(off).copied().ok_or(malformed("header truncated"))
}

#[inline]
fn be16(b: &[u8], off: usize) -> PResult<u16> {
    match b.get(off..off + 2) {
        Some(&[x, y]) => Ok(u16::from_be_bytes([x, y])),
        _ => Err(malformed("header truncated")),
    }
}

#[inline]
fn be32(b: &[u8], off: usize) -> PResult<u32> {
    match b.get(off..off + 4) {
        Some(&[a, c, d, e]) => Ok(u32::from_be_bytes([a, c, d, e])),
        _ => Err(malformed("header truncated")),
    }
}

#[inline]
fn addr16(b: &[u8], off: usize) -> PResult<[u8; 16]> {
    let s = b
        .get(off..off + 16)
        .ok_or(malformed("IPv6 header truncated"))?;
    let mut a = [0u8; 16];
    a.copy_from_slice(s);
    Ok(a)
}

#[inline]
fn addr4(b: &[u8], off: usize) -> PResult<[u8; 16]> {
    let s = b
        .get(off..off + 4)
        .ok_or(malformed("IPv4 header truncated"))?;
    let mut a = [0u8; 16];
    a[..4].copy_from_slice(s);
    Ok(a)
}

/// The checksum value that would verify, given the folded (uncomplemented)
/// sum of the covered data *including* the received field.
#[inline]
fn expected_from(folded_with_field: u16, received: u16) -> u16 {
    // Remove the received field in one's complement (add its complement),
    // then complement: what a sender should have stored.
    !checksum::fold(u32::from(folded_with_field) + u32::from(!received))
}

/// The L3 facts of a datagram.
struct L3<'a> {
    v6: bool,
    src: [u8; 16],
    dst: [u8; 16],
    proto: u8,
    /// From the L4 header to the end of the IP datagram (padding excluded).
    l4: &'a [u8],
}

impl L3<'_> {
    fn pseudo(&self, proto: u8, len: usize) -> u32 {
        if self.v6 {
            checksum::pseudo_header_v6(
                Ipv6Addr::from(self.src),
                Ipv6Addr::from(self.dst),
                proto,
                len as u32,
            )
        } else {
            let s = Ipv4Addr::new(self.src[0], self.src[1], self.src[2], self.src[3]);
            let d = Ipv4Addr::new(self.dst[0], self.dst[1], self.dst[2], self.dst[3]);
            checksum::pseudo_header_v4(s, d, proto, len as u32)
        }
    }
}

/// Parses an IPv4 header at the start of `l3`. `outer` means this is the
/// received datagram (length and checksum enforced) rather than the packet
/// embedded in an ICMP error (which is usually truncated).
fn ipv4(l3: &[u8], outer: bool, check_ip: bool) -> PResult<L3<'_>> {
    let vihl = byte(l3, 0)?;
    if vihl >> 4 != 4 {
        return Err(malformed("IPv4 version is not 4"));
    }
    let ihl = usize::from(vihl & 0x0f) * 4;
    if ihl < 20 {
        return Err(malformed("IPv4 IHL below 5"));
    }
    let hdr = l3.get(..ihl).ok_or(malformed("IPv4 header truncated"))?;
    let frag = be16(hdr, 6)?;
    if frag & 0x1fff != 0 || (outer && frag & 0x2000 != 0) {
        return Err(CtInvalidDetail::new(
            R::Fragment,
            "IPv4 fragment (conntrack does no reassembly)",
        ));
    }
    let dgram = if outer {
        let total = usize::from(be16(hdr, 2)?);
        if total < ihl {
            return Err(malformed("IPv4 total length shorter than its header"));
        }
        l3.get(..total)
            .ok_or(malformed("IPv4 total length exceeds the frame"))?
    } else {
        l3
    };
    if check_ip {
        let folded = checksum::fold(checksum::sum(hdr));
        if folded != 0xffff {
            let received = be16(hdr, 10)?;
            return Err(CtInvalidDetail {
                reason: R::BadIpChecksum,
                expected: Some(expected_from(folded, received)),
                received: Some(received),
                detail: "IPv4 header checksum",
            });
        }
    }
    Ok(L3 {
        v6: false,
        src: addr4(hdr, 12)?,
        dst: addr4(hdr, 16)?,
        proto: byte(hdr, 9)?,
        l4: dgram.get(ihl..).unwrap_or(&[]),
    })
}

/// Parses an IPv6 header and its extension headers.
fn ipv6(l3: &[u8], outer: bool) -> PResult<L3<'_>> {
    if byte(l3, 0)? >> 4 != 6 {
        return Err(malformed("IPv6 version is not 6"));
    }
    let payload = usize::from(be16(l3, 4)?);
    let mut nh = byte(l3, 6)?;
    let src = addr16(l3, 8)?;
    let dst = addr16(l3, 24)?;
    let dgram = if outer {
        if payload == 0 && nh == 0 {
            return Err(malformed("IPv6 jumbogram"));
        }
        l3.get(..40 + payload)
            .ok_or(malformed("IPv6 payload length exceeds the frame"))?
    } else {
        l3
    };
    let mut ofs = 40usize;
    // Bounded: a chain of extension headers longer than this is not real
    // traffic.
    for _ in 0..8 {
        match nh {
            // Hop-by-hop, routing, destination options.
            0 | 43 | 60 => {
                let len = (usize::from(byte(dgram, ofs + 1)?) + 1) * 8;
                nh = byte(dgram, ofs)?;
                ofs += len;
            }
            // Fragment: an atomic fragment (offset 0, no M flag) is a whole
            // packet; anything else would need reassembly.
            44 => {
                let fo = be16(dgram, ofs + 2)?;
                if fo & 0xfff9 != 0 {
                    return Err(CtInvalidDetail::new(
                        R::Fragment,
                        "IPv6 fragment (conntrack does no reassembly)",
                    ));
                }
                nh = byte(dgram, ofs)?;
                ofs += 8;
            }
            // Authentication header: length in 4-byte units, minus 2.
            51 => {
                let len = (usize::from(byte(dgram, ofs + 1)?) + 2) * 4;
                nh = byte(dgram, ofs)?;
                ofs += len;
            }
            _ => break,
        }
    }
    let l4 = dgram
        .get(ofs..)
        .ok_or(malformed("IPv6 extension headers exceed the datagram"))?;
    Ok(L3 {
        v6: true,
        src,
        dst,
        proto: nh,
        l4,
    })
}

/// Verifies an L4 checksum (`pseudo` = 0 for ICMPv4).
fn verify_l4(pseudo: u32, seg: &[u8], field_ofs: usize, what: &'static str) -> PResult<()> {
    let folded = checksum::fold(checksum::combine(&[pseudo, checksum::sum(seg)]));
    if folded == 0xffff {
        return Ok(());
    }
    let received = be16(seg, field_ofs)?;
    Err(CtInvalidDetail {
        reason: R::BadL4Checksum,
        expected: Some(expected_from(folded, received)),
        received: Some(received),
        detail: what,
    })
}

/// Reads pf's window-scale option from a SYN's options (`opts` = the bytes
/// between the fixed header and the data offset).
pub(crate) fn tcp_wscale(opts: &[u8]) -> u8 {
    let mut i = 0usize;
    let mut wscale = 0u8;
    while i < opts.len() {
        match opts[i] {
            0 => break,
            1 => i += 1,
            kind => {
                let Some(&len) = opts.get(i + 1) else { break };
                if kind == 3 && len == 3 {
                    if let Some(&shift) = opts.get(i + 2) {
                        wscale = shift.min(TCP_MAX_WSCALE) | WSCALE_FLAG;
                    }
                }
                // A length below 2 would loop forever; pf treats it as 2.
                i += usize::from(len.max(2));
            }
        }
    }
    wscale
}

/// The TCP segment `seg` (header + payload, cut at the IP datagram's end).
pub(crate) fn tcp_segment(seg: &[u8]) -> PResult<TcpSeg> {
    if seg.len() < 20 {
        return Err(malformed("TCP header truncated"));
    }
    let doff = usize::from(byte(seg, 12)? >> 4) * 4;
    if doff < 20 {
        return Err(malformed("TCP data offset below 5"));
    }
    if doff > seg.len() {
        return Err(malformed("TCP data offset past the segment"));
    }
    let flags = be16(seg, 12)? & 0x0fff;
    let wscale = if flags & TCP_SYN != 0 {
        tcp_wscale(seg.get(20..doff).unwrap_or(&[]))
    } else {
        0
    };
    Ok(TcpSeg {
        seq: be32(seg, 4)?,
        ack: be32(seg, 8)?,
        win: be16(seg, 14)?,
        flags,
        payload_len: (seg.len() - doff) as u32,
        wscale,
    })
}

fn ports(l4: &[u8]) -> PResult<(u16, u16)> {
    let (s, d) = (be16(l4, 0)?, be16(l4, 2)?);
    if s == 0 || d == 0 {
        return Err(malformed("L4 port 0"));
    }
    Ok((s, d))
}

/// ICMPv4 query types with their reverse, as OVS `reverse_icmp_type`.
fn icmp4_query_reverse(ty: u8) -> Option<u8> {
    match ty {
        8 => Some(0),
        0 => Some(8),
        13 => Some(14),
        14 => Some(13),
        15 => Some(16),
        16 => Some(15),
        _ => None,
    }
}

fn icmp6_echo_reverse(ty: u8) -> Option<u8> {
    match ty {
        128 => Some(129),
        129 => Some(128),
        _ => None,
    }
}

/// Key of the packet embedded in an ICMP error, in its own direction.
fn inner_key(l3: &L3<'_>, zone: u16) -> PResult<ConnKey> {
    let mut key = ConnKey {
        src: l3.src,
        dst: l3.dst,
        zone,
        proto: l3.proto,
        v6: l3.v6,
        ..ConnKey::default()
    };
    // RFC 792/4443 guarantee the first 8 bytes of the embedded L4 header.
    if l3.l4.len() < 8 && matches!(l3.proto, IPPROTO_TCP | IPPROTO_UDP) {
        return Err(malformed("ICMP error: embedded L4 header truncated"));
    }
    match (l3.proto, l3.v6) {
        (IPPROTO_TCP | IPPROTO_UDP, _) => {
            (key.sport, key.dport) = ports(l3.l4)?;
        }
        (IPPROTO_ICMP, false) => {
            let ty = byte(l3.l4, 0)?;
            let rev = icmp4_query_reverse(ty).ok_or(CtInvalidDetail::new(
                R::UnsupportedIcmp,
                "ICMP error about an ICMP packet that is not a query",
            ))?;
            (key.sport, key.dport, key.id) = (u16::from(ty), u16::from(rev), be16(l3.l4, 4)?);
        }
        (IPPROTO_ICMPV6, true) => {
            let ty = byte(l3.l4, 0)?;
            let rev = icmp6_echo_reverse(ty).ok_or(CtInvalidDetail::new(
                R::UnsupportedIcmp,
                "ICMPv6 error about an ICMPv6 packet that is not an echo",
            ))?;
            (key.sport, key.dport, key.id) = (u16::from(ty), u16::from(rev), be16(l3.l4, 4)?);
        }
        _ => {}
    }
    Ok(key)
}

/// Parses `l3` (from the L3 header to the end of the frame) into a lookup
/// key. `dl_type` is the Ethertype after VLAN tags.
pub(crate) fn parse(
    l3: &[u8],
    dl_type: u16,
    zone: u16,
    csum: CsumStatus,
    policy: ChecksumPolicy,
) -> PResult<Parsed> {
    let validate = policy == ChecksumPolicy::Validate;
    let ip = match dl_type {
        0x0800 => ipv4(l3, true, validate)?,
        0x86dd => ipv6(l3, true)?,
        _ => {
            return Err(CtInvalidDetail::new(
                R::NotIp,
                "conntrack tracks IPv4 and IPv6 only",
            ))
        }
    };
    // A port that verified the L4 checksum (or will compute it on
    // transmit) is trusted: re-validating a partial checksum would fail.
    let check_l4 = validate && csum == CsumStatus::Unknown;
    let mut key = ConnKey {
        src: ip.src,
        dst: ip.dst,
        zone,
        proto: ip.proto,
        v6: ip.v6,
        ..ConnKey::default()
    };
    let l4 = ip.l4;
    match (ip.proto, ip.v6) {
        (IPPROTO_TCP, _) => {
            let seg = tcp_segment(l4)?;
            (key.sport, key.dport) = ports(l4)?;
            if check_l4 {
                verify_l4(ip.pseudo(IPPROTO_TCP, l4.len()), l4, 16, "TCP checksum")?;
            }
            Ok(Parsed {
                key,
                related: false,
                l4: L4::Tcp(seg),
            })
        }
        (IPPROTO_UDP, v6) => {
            if l4.len() < 8 {
                return Err(malformed("UDP header truncated"));
            }
            let ulen = usize::from(be16(l4, 4)?);
            if ulen < 8 {
                return Err(malformed("UDP length below 8"));
            }
            let seg = l4
                .get(..ulen)
                .ok_or(malformed("UDP length exceeds the IP payload"))?;
            (key.sport, key.dport) = ports(seg)?;
            let field = be16(seg, 6)?;
            if check_l4 {
                if field == 0 {
                    if v6 {
                        // RFC 8200 section 8.1: mandatory over IPv6.
                        return Err(CtInvalidDetail {
                            reason: R::BadL4Checksum,
                            expected: Some(checksum::l4_checksum(
                                ip.pseudo(IPPROTO_UDP, ulen),
                                seg,
                            )),
                            received: Some(0),
                            detail: "UDP checksum zero over IPv6",
                        });
                    }
                } else {
                    verify_l4(ip.pseudo(IPPROTO_UDP, ulen), seg, 6, "UDP checksum")?;
                }
            }
            Ok(Parsed {
                key,
                related: false,
                l4: L4::Udp,
            })
        }
        (IPPROTO_ICMP, false) => {
            if l4.len() < 8 {
                return Err(malformed("ICMP header truncated"));
            }
            if check_l4 {
                verify_l4(0, l4, 2, "ICMP checksum")?;
            }
            let (ty, code) = (byte(l4, 0)?, byte(l4, 1)?);
            if let Some(rev) = icmp4_query_reverse(ty) {
                if code != 0 {
                    return Err(CtInvalidDetail::new(
                        R::UnsupportedIcmp,
                        "ICMP query with a nonzero code",
                    ));
                }
                (key.sport, key.dport, key.id) = (u16::from(ty), u16::from(rev), be16(l4, 4)?);
                return Ok(Parsed {
                    key,
                    related: false,
                    l4: L4::Icmp {
                        valid_new: matches!(ty, 8 | 13 | 15),
                    },
                });
            }
            // Destination unreachable (frag needed included), source
            // quench, redirect, time exceeded, parameter problem.
            if !matches!(ty, 3 | 4 | 5 | 11 | 12) {
                return Err(CtInvalidDetail::new(
                    R::UnsupportedIcmp,
                    "ICMP type conntrack does not track",
                ));
            }
            let inner = ipv4(l4.get(8..).unwrap_or(&[]), false, false)?;
            related(ip.dst, inner, zone)
        }
        (IPPROTO_ICMPV6, true) => {
            if l4.len() < 8 {
                return Err(malformed("ICMPv6 header truncated"));
            }
            if check_l4 {
                verify_l4(
                    ip.pseudo(IPPROTO_ICMPV6, l4.len()),
                    l4,
                    2,
                    "ICMPv6 checksum",
                )?;
            }
            let (ty, code) = (byte(l4, 0)?, byte(l4, 1)?);
            if let Some(rev) = icmp6_echo_reverse(ty) {
                if code != 0 {
                    return Err(CtInvalidDetail::new(
                        R::UnsupportedIcmp,
                        "ICMPv6 echo with a nonzero code",
                    ));
                }
                (key.sport, key.dport, key.id) = (u16::from(ty), u16::from(rev), be16(l4, 4)?);
                return Ok(Parsed {
                    key,
                    related: false,
                    l4: L4::Icmp {
                        valid_new: ty == 128,
                    },
                });
            }
            // Destination unreachable, packet too big, time exceeded,
            // parameter problem.
            if !matches!(ty, 1..=4) {
                return Err(CtInvalidDetail::new(
                    R::UnsupportedIcmp,
                    "ICMPv6 type conntrack does not track",
                ));
            }
            let inner = ipv6(l4.get(8..).unwrap_or(&[]), false)?;
            related(ip.dst, inner, zone)
        }
        _ => Ok(Parsed {
            key,
            related: false,
            l4: L4::Other,
        }),
    }
}

/// An ICMP error: the key to look up is the embedded packet's, reversed
/// (the error travels back towards the embedded packet's sender).
fn related(outer_dst: [u8; 16], inner: L3<'_>, zone: u16) -> PResult<Parsed> {
    // OVS (and pf for v4) insists the error goes back to the sender of the
    // packet it quotes.
    if inner.src != outer_dst {
        return Err(malformed(
            "ICMP error: embedded source is not the error's destination",
        ));
    }
    let key = inner_key(&inner, zone)?.reverse();
    Ok(Parsed {
        key,
        related: true,
        l4: L4::Other,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 54-byte bare TCP ACK from 10.0.0.2:80 to 10.0.0.1:40000 padded to
    /// 60 bytes with six non-zero bytes (`de ad be ef ca fe`). Built by
    /// hand; checksums computed with `wire::checksum` and cross-checked in
    /// `tests/conntrack_padding.rs` with etherparse.
    fn padded_ack() -> Vec<u8> {
        let mut f = vec![
            // Ethernet: dst, src, IPv4
            0x02, 0, 0, 0, 0, 0x01, 0x02, 0, 0, 0, 0, 0x02, 0x08, 0x00,
            // IPv4: 20 bytes, total length 40, TTL 64, TCP
            0x45, 0x00, 0x00, 0x28, 0x00, 0x01, 0x40, 0x00, 0x40, 0x06, 0x00, 0x00, 10, 0, 0, 2, 10,
            0, 0, 1, // TCP: 80 -> 40000, seq 0x1000, ack 0x2000, ACK, window 512
            0x00, 0x50, 0x9c, 0x40, 0x00, 0x00, 0x10, 0x00, 0x00, 0x00, 0x20, 0x00, 0x50, 0x10,
            0x02, 0x00, 0x00, 0x00, 0x00, 0x00,
        ];
        let ipc = checksum::checksum(&f[14..34]);
        f[24..26].copy_from_slice(&ipc.to_be_bytes());
        let ps = checksum::pseudo_header_v4(
            Ipv4Addr::new(10, 0, 0, 2),
            Ipv4Addr::new(10, 0, 0, 1),
            6,
            20,
        );
        let c = checksum::l4_checksum(ps, &f[34..54]);
        f[50..52].copy_from_slice(&c.to_be_bytes());
        assert_eq!(f.len(), 54);
        f.extend_from_slice(&[0xde, 0xad, 0xbe, 0xef, 0xca, 0xfe]);
        f
    }

    #[test]
    fn padded_ack_has_zero_payload_and_valid_checksum() {
        let f = padded_ack();
        let p = parse(
            &f[14..],
            0x0800,
            0,
            CsumStatus::Unknown,
            ChecksumPolicy::Validate,
        )
        .expect("a padded bare ACK is valid");
        let L4::Tcp(seg) = p.l4 else {
            panic!("not TCP")
        };
        assert_eq!(seg.payload_len, 0, "padding is not payload");
        assert_eq!(seg.flags, TCP_ACK);
        // The trap this module avoids: the frame-derived lengths are wrong.
        let frame_l4 = &f[34..];
        assert_eq!(frame_l4.len() - 20, 6, "frame-based length counts padding");
        let ps = checksum::pseudo_header_v4(
            Ipv4Addr::new(10, 0, 0, 2),
            Ipv4Addr::new(10, 0, 0, 1),
            6,
            frame_l4.len() as u32,
        );
        assert_ne!(
            checksum::l4_checksum(ps, frame_l4),
            0,
            "a checksum over the padding must fail, else this test proves nothing"
        );
        assert_eq!(tcp_segment(frame_l4).map(|s| s.payload_len), Ok(6));
    }

    #[test]
    fn corrupted_tcp_checksum_reports_values() {
        let mut f = padded_ack();
        let good = u16::from_be_bytes([f[50], f[51]]);
        f[51] ^= 0x01;
        let bad = u16::from_be_bytes([f[50], f[51]]);
        let e = parse(
            &f[14..],
            0x0800,
            0,
            CsumStatus::Unknown,
            ChecksumPolicy::Validate,
        )
        .expect_err("bad checksum");
        assert_eq!(e.reason, R::BadL4Checksum);
        assert_eq!(e.expected, Some(good));
        assert_eq!(e.received, Some(bad));
        // Offload said verified, or policy skip: accepted.
        assert!(parse(
            &f[14..],
            0x0800,
            0,
            CsumStatus::Verified,
            ChecksumPolicy::Validate
        )
        .is_ok());
        assert!(parse(
            &f[14..],
            0x0800,
            0,
            CsumStatus::Unknown,
            ChecksumPolicy::Skip
        )
        .is_ok());
    }

    #[test]
    fn bad_ip_checksum_reports_values() {
        let mut f = padded_ack();
        let good = u16::from_be_bytes([f[24], f[25]]);
        f[25] = f[25].wrapping_add(3);
        let e = parse(
            &f[14..],
            0x0800,
            0,
            CsumStatus::Verified,
            ChecksumPolicy::Validate,
        )
        .expect_err("bad IP checksum");
        assert_eq!(e.reason, R::BadIpChecksum);
        assert_eq!(e.expected, Some(good));
        assert_eq!(e.received, Some(good.wrapping_add(3)));
    }

    #[test]
    fn truncations_are_errors_not_panics() {
        let f = padded_ack();
        // The IP datagram is 40 bytes: every shorter prefix is truncated.
        for n in 0..40 {
            let r = parse(
                &f[14..14 + n],
                0x0800,
                0,
                CsumStatus::Unknown,
                ChecksumPolicy::Validate,
            );
            assert!(r.is_err(), "prefix of {n} bytes parsed");
        }
        // IP total length larger than the frame.
        let mut g = f.clone();
        g[17] = 200;
        assert_eq!(
            parse(
                &g[14..],
                0x0800,
                0,
                CsumStatus::Unknown,
                ChecksumPolicy::Skip
            )
            .map_err(|e| e.reason),
            Err(R::Malformed)
        );
    }

    #[test]
    fn wscale_option() {
        // MSS, NOP, WS=7, SACK-permitted, EOL
        let opts = [2, 4, 0x05, 0xb4, 1, 3, 3, 7, 4, 2, 0, 0];
        assert_eq!(tcp_wscale(&opts), WSCALE_FLAG | 7);
        assert_eq!(tcp_wscale(&[3, 3, 20]), WSCALE_FLAG | 14);
        assert_eq!(tcp_wscale(&[2, 4, 1, 1]), 0);
        // A zero length must not loop forever.
        assert_eq!(tcp_wscale(&[9, 0, 9, 0]), 0);
    }
}
