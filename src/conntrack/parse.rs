//! The few header fields conntrack needs, read through the `wire` views.
//!
//! The one rule: the IP datagram ends where its header says (IPv4 total
//! length, IPv6 40 + payload length), never at the end of the frame. The
//! bytes after it are Ethernet padding: they are in no checksum and are no
//! TCP payload. The views' `payload()` is that datagram's payload, and every
//! slice below is cut from it.
//!
//! What stays here rather than in `wire`: the conntrack verdicts. Every
//! failed check becomes a [`CtInvalidDetail`] naming the header and the
//! check (never a panic); a bad checksum carries the value that would
//! verify; a datagram quoted in an ICMP error is held only to a whole
//! header (the quote stops 8 bytes into its payload); and the window scale
//! is read with pf's lenient option walk, which keeps going past option
//! lengths the strict [`crate::wire::tcp::OptionIter`] refuses.

use super::table::ConnKey;
use super::tcp::{TcpSeg, TCP_MAX_WSCALE, WSCALE_FLAG};
use super::{ChecksumPolicy, CtInvalidDetail, CtInvalidReason as R};
use crate::packet::CsumStatus;
use crate::wire::{self, checksum, icmpv4, icmpv6, ipv4, ipv6, sub, tail, tcp, udp};
use crate::wire::{AddrPair, EtherType, IpProtocol};

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

// What each `wire` length check means for the header at hand.

fn ipv4_err(e: wire::Error) -> CtInvalidDetail {
    malformed(match e {
        wire::Error::BadVersion => "IPv4 version is not 4",
        wire::Error::LengthTooShort => "IPv4 IHL below 5 or total length shorter than its header",
        wire::Error::LengthExceedsFrame => "IPv4 total length exceeds the frame",
        _ => "IPv4 header truncated",
    })
}

fn ipv6_err(e: wire::Error) -> CtInvalidDetail {
    malformed(match e {
        wire::Error::BadVersion => "IPv6 version is not 6",
        wire::Error::LengthExceedsFrame => "IPv6 payload length exceeds the frame",
        _ => "IPv6 header truncated",
    })
}

fn tcp_err(e: wire::Error) -> CtInvalidDetail {
    malformed(match e {
        wire::Error::LengthTooShort => "TCP data offset below 5",
        wire::Error::LengthExceedsFrame => "TCP data offset past the segment",
        _ => "TCP header truncated",
    })
}

fn udp_err(e: wire::Error) -> CtInvalidDetail {
    malformed(match e {
        wire::Error::LengthTooShort => "UDP length below 8",
        wire::Error::LengthExceedsFrame => "UDP length exceeds the IP payload",
        _ => "UDP header truncated",
    })
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
    addrs: AddrPair,
    proto: IpProtocol,
    /// From the L4 header to the end of the IP datagram (padding excluded).
    l4: &'a [u8],
}

impl L3<'_> {
    fn is_v6(&self) -> bool {
        !self.addrs.is_v4()
    }

    /// The key of this datagram in its own direction, ports still zero.
    fn key(&self, zone: u16) -> ConnKey {
        let (mut src, mut dst) = ([0u8; 16], [0u8; 16]);
        match self.addrs {
            AddrPair::V4 { src: s, dst: d } => {
                src[..4].copy_from_slice(&s.octets());
                dst[..4].copy_from_slice(&d.octets());
            }
            AddrPair::V6 { src: s, dst: d } => {
                src = s.octets();
                dst = d.octets();
            }
        }
        ConnKey {
            src,
            dst,
            zone,
            proto: self.proto.into(),
            v6: self.is_v6(),
            ..ConnKey::default()
        }
    }
}

/// Parses an IPv4 header at the start of `l3`. `outer` means this is the
/// received datagram (length and checksum enforced) rather than the packet
/// embedded in an ICMP error (which is usually truncated).
///
/// Inlined: returned through memory, the address enum and slice were
/// reloaded with wider loads than they were stored with, a store-forwarding
/// stall on every tracked packet.
#[inline(always)]
fn ipv4(l3: &[u8], outer: bool, check_ip: bool) -> PResult<L3<'_>> {
    let p = ipv4::Packet::new_unchecked(l3);
    if outer {
        p.check_len()
    } else {
        p.check_header_len()
    }
    .map_err(ipv4_err)?;
    if p.is_later_fragment() || (outer && p.more_frags()) {
        return Err(CtInvalidDetail::new(
            R::Fragment,
            "IPv4 fragment: judged after reassembly, which is off (or this is a trace of one fragment)",
        ));
    }
    if check_ip {
        let folded = checksum::fold(checksum::sum(p.header()));
        if folded != 0xffff {
            let received = p.checksum();
            return Err(CtInvalidDetail {
                reason: R::BadIpChecksum,
                expected: Some(expected_from(folded, received)),
                received: Some(received),
                detail: "IPv4 header checksum",
            });
        }
    }
    Ok(L3 {
        addrs: AddrPair::V4 {
            src: p.src_addr(),
            dst: p.dst_addr(),
        },
        proto: p.next_header(),
        // The view's `payload()` borrows the view; cut the same range
        // from `l3` to keep its lifetime.
        l4: if outer {
            sub(l3, p.header_len(), usize::from(p.total_len()))
        } else {
            tail(l3, p.header_len())
        },
    })
}

/// Parses an IPv6 header and its extension headers.
fn ipv6(l3: &[u8], outer: bool) -> PResult<L3<'_>> {
    let p = ipv6::Packet::new_unchecked(l3);
    let payload = if outer {
        p.check_len().map_err(ipv6_err)?;
        if p.payload_len() == 0 && p.next_header() == IpProtocol::HopByHop {
            return Err(malformed("IPv6 jumbogram"));
        }
        sub(
            l3,
            ipv6::HEADER_LEN,
            ipv6::HEADER_LEN + usize::from(p.payload_len()),
        )
    } else {
        p.check_header_len().map_err(ipv6_err)?;
        tail(l3, ipv6::HEADER_LEN)
    };
    let up = ipv6::walk_ext_headers(p.next_header(), payload)
        .map_err(|_| malformed("IPv6 extension headers exceed the datagram"))?;
    // An atomic fragment (offset 0, no M flag) is a whole packet; anything
    // else would need reassembly.
    if up.fragment {
        return Err(CtInvalidDetail::new(
            R::Fragment,
            "IPv6 fragment: judged after reassembly, which is off (or this is a trace of one fragment)",
        ));
    }
    Ok(L3 {
        addrs: AddrPair::V6 {
            src: p.src_addr(),
            dst: p.dst_addr(),
        },
        proto: up.protocol,
        l4: tail(payload, up.offset),
    })
}

/// Verifies an L4 checksum (`pseudo` = 0 for ICMPv4); `received` is the
/// checksum field of `seg`.
fn verify_l4(pseudo: u32, seg: &[u8], received: u16, what: &'static str) -> PResult<()> {
    let folded = checksum::fold(checksum::combine(&[pseudo, checksum::sum(seg)]));
    if folded == 0xffff {
        return Ok(());
    }
    Err(CtInvalidDetail {
        reason: R::BadL4Checksum,
        expected: Some(expected_from(folded, received)),
        received: Some(received),
        detail: what,
    })
}

/// Reads pf's window-scale option from a SYN's options (`opts` = the bytes
/// between the fixed header and the data offset).
fn tcp_wscale(opts: &[u8]) -> u8 {
    let mut i = 0usize;
    let mut wscale = 0u8;
    while let Some(&kind) = opts.get(i) {
        match kind {
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
#[inline(always)]
fn tcp_segment(seg: &[u8]) -> PResult<TcpSeg> {
    let p = tcp::Packet::new_checked(seg).map_err(tcp_err)?;
    let flags = p.flags();
    Ok(TcpSeg {
        seq: p.seq_number(),
        ack: p.ack_number(),
        win: p.window_len(),
        flags,
        payload_len: p.payload().len() as u32,
        wscale: if flags & tcp::SYN != 0 {
            tcp_wscale(p.options())
        } else {
            0
        },
    })
}

fn ports(src: u16, dst: u16) -> PResult<(u16, u16)> {
    if src == 0 || dst == 0 {
        return Err(malformed("L4 port 0"));
    }
    Ok((src, dst))
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
    let mut key = l3.key(zone);
    let l4 = l3.l4;
    // RFC 792/4443 guarantee the first 8 bytes of the embedded L4 header:
    // enough for the ports, or the ICMP type and echo id.
    let keyed_by_l4 = matches!(
        l3.proto,
        IpProtocol::Tcp | IpProtocol::Udp | IpProtocol::Icmp | IpProtocol::Icmpv6
    );
    if keyed_by_l4 && l4.len() < 8 {
        return Err(malformed("ICMP error: embedded L4 header truncated"));
    }
    match (l3.proto, l3.is_v6()) {
        (IpProtocol::Tcp | IpProtocol::Udp, _) => {
            let u = udp::Packet::new_unchecked(l4);
            (key.sport, key.dport) = ports(u.src_port(), u.dst_port())?;
        }
        (IpProtocol::Icmp, false) => {
            let i = icmpv4::Packet::new_unchecked(l4);
            let ty = u8::from(i.msg_type());
            let rev = icmp4_query_reverse(ty).ok_or(CtInvalidDetail::new(
                R::UnsupportedIcmp,
                "ICMP error about an ICMP packet that is not a query",
            ))?;
            (key.sport, key.dport, key.id) = (u16::from(ty), u16::from(rev), i.echo_ident());
        }
        (IpProtocol::Icmpv6, true) => {
            let i = icmpv6::Packet::new_unchecked(l4);
            let ty = u8::from(i.msg_type());
            let rev = icmp6_echo_reverse(ty).ok_or(CtInvalidDetail::new(
                R::UnsupportedIcmp,
                "ICMPv6 error about an ICMPv6 packet that is not an echo",
            ))?;
            (key.sport, key.dport, key.id) = (u16::from(ty), u16::from(rev), i.echo_ident());
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
    let ip = match EtherType::from(dl_type) {
        EtherType::Ipv4 => ipv4(l3, true, validate)?,
        EtherType::Ipv6 => ipv6(l3, true)?,
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
    let mut key = ip.key(zone);
    let l4 = ip.l4;
    let parsed = |key, l4| Parsed {
        key,
        related: false,
        l4,
    };
    match (ip.proto, ip.is_v6()) {
        (IpProtocol::Tcp, _) => {
            let seg = tcp_segment(l4)?;
            let t = tcp::Packet::new_unchecked(l4);
            (key.sport, key.dport) = ports(t.src_port(), t.dst_port())?;
            if check_l4 {
                let ph = ip.addrs.pseudo_sum(IpProtocol::Tcp, l4.len());
                verify_l4(ph, l4, t.checksum(), "TCP checksum")?;
            }
            Ok(parsed(key, L4::Tcp(seg)))
        }
        (IpProtocol::Udp, v6) => {
            let u = udp::Packet::new_checked(l4).map_err(udp_err)?;
            let seg = u.datagram();
            (key.sport, key.dport) = ports(u.src_port(), u.dst_port())?;
            if check_l4 {
                let ph = ip.addrs.pseudo_sum(IpProtocol::Udp, seg.len());
                if u.checksum() != 0 {
                    verify_l4(ph, seg, u.checksum(), "UDP checksum")?;
                } else if v6 {
                    // RFC 8200 section 8.1: mandatory over IPv6.
                    return Err(CtInvalidDetail {
                        reason: R::BadL4Checksum,
                        expected: Some(checksum::l4_checksum(ph, seg)),
                        received: Some(0),
                        detail: "UDP checksum zero over IPv6",
                    });
                }
            }
            Ok(parsed(key, L4::Udp))
        }
        (IpProtocol::Icmp, false) => {
            let i =
                icmpv4::Packet::new_checked(l4).map_err(|_| malformed("ICMP header truncated"))?;
            if check_l4 {
                verify_l4(0, l4, i.checksum(), "ICMP checksum")?;
            }
            let ty = u8::from(i.msg_type());
            if let Some(rev) = icmp4_query_reverse(ty) {
                if i.msg_code() != 0 {
                    return Err(CtInvalidDetail::new(
                        R::UnsupportedIcmp,
                        "ICMP query with a nonzero code",
                    ));
                }
                (key.sport, key.dport, key.id) = (u16::from(ty), u16::from(rev), i.echo_ident());
                let valid_new = matches!(ty, 8 | 13 | 15);
                return Ok(parsed(key, L4::Icmp { valid_new }));
            }
            // Destination unreachable (frag needed included), source
            // quench, redirect, time exceeded, parameter problem.
            if !matches!(ty, 3 | 4 | 5 | 11 | 12) {
                return Err(CtInvalidDetail::new(
                    R::UnsupportedIcmp,
                    "ICMP type conntrack does not track",
                ));
            }
            let inner = ipv4(i.data(), false, false)?;
            related(&ip.addrs, inner, zone)
        }
        (IpProtocol::Icmpv6, true) => {
            let i = icmpv6::Packet::new_checked(l4)
                .map_err(|_| malformed("ICMPv6 header truncated"))?;
            if check_l4 {
                let ph = ip.addrs.pseudo_sum(IpProtocol::Icmpv6, l4.len());
                verify_l4(ph, l4, i.checksum(), "ICMPv6 checksum")?;
            }
            let ty = u8::from(i.msg_type());
            if let Some(rev) = icmp6_echo_reverse(ty) {
                if i.msg_code() != 0 {
                    return Err(CtInvalidDetail::new(
                        R::UnsupportedIcmp,
                        "ICMPv6 echo with a nonzero code",
                    ));
                }
                (key.sport, key.dport, key.id) = (u16::from(ty), u16::from(rev), i.echo_ident());
                return Ok(parsed(
                    key,
                    L4::Icmp {
                        valid_new: ty == 128,
                    },
                ));
            }
            // Destination unreachable, packet too big, time exceeded,
            // parameter problem.
            if !matches!(ty, 1..=4) {
                return Err(CtInvalidDetail::new(
                    R::UnsupportedIcmp,
                    "ICMPv6 type conntrack does not track",
                ));
            }
            let inner = ipv6(i.data(), false)?;
            related(&ip.addrs, inner, zone)
        }
        _ => Ok(parsed(key, L4::Other)),
    }
}

/// An ICMP error: the key to look up is the embedded packet's, reversed
/// (the error travels back towards the embedded packet's sender).
fn related(outer: &AddrPair, inner: L3<'_>, zone: u16) -> PResult<Parsed> {
    // OVS (and pf for v4) insists the error goes back to the sender of the
    // packet it quotes.
    let back_to_sender = match (outer, &inner.addrs) {
        (AddrPair::V4 { dst, .. }, AddrPair::V4 { src, .. }) => src == dst,
        (AddrPair::V6 { dst, .. }, AddrPair::V6 { src, .. }) => src == dst,
        _ => false,
    };
    if !back_to_sender {
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
    use core::net::Ipv4Addr;

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
        assert_eq!(seg.flags, tcp::ACK);
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
