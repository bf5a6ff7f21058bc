//! Path MTU: what happens to a frame too big for its egress port.
//!
//! The double-VLAN field story: a second tag made 1504-byte frames on a
//! 1500-byte link; small packets worked, an interactive session froze. A
//! frame that does not fit is never sent. It is dropped under
//! `mtu_exceeded`, and when the sender can learn from it, the sender is
//! told, so path MTU discovery turns the misconfiguration into a smaller
//! path MTU instead of a frozen session:
//!
//! * IPv4 with DF: ICMP "fragmentation needed" (type 3 code 4, RFC 1191)
//!   carrying the largest IP datagram that fits after the tags/tunnel
//!   overhead the egress adds.
//! * IPv6: ICMPv6 "packet too big" (RFC 8201), same MTU arithmetic.
//! * IPv4 without DF: dropped, counted, no ICMP. We are a switch, not a
//!   router: fragmenting would hide the problem (and break conntrack and
//!   segmentation offload on the way); the sender's stack retransmits, and
//!   the drop counter names the cause.
//!
//! The error goes back out of the port the packet came in on, addressed as
//! if from the packet's destination (IP and MAC): the sender's stack
//! matches an ICMP error by the quoted header, not by who sent it, and the
//! destination is the one address the sender surely accepts.
//!
//! The fit rule is the Linux one: what follows the Ethernet header, not
//! counting one 802.1Q tag, must not exceed the MTU. Only an outer 0x8100
//! tag is free: Linux refuses to send (AF_PACKET, EMSGSIZE) a frame whose
//! extra 4 bytes are an 802.1ad (0x88a8) outer tag, so counting that tag
//! free would let through exactly the frames the kernel then drops
//! silently (the field story again, one layer down). For a tunnel port the
//! whole inner frame plus the outer headers must fit the underlay MTU.

use crate::flow::FlowKey;
use crate::packet::{Gso, PacketBuf, PacketPool};
use crate::wire::{icmpv4, icmpv6, ipv4, ipv6, AddrPair, IpProtocol};
use core::net::{Ipv4Addr, Ipv6Addr};

/// Bytes of the offending datagram quoted in an ICMPv4 error (the whole
/// error stays within the 576 bytes every IPv4 host accepts).
pub const ICMP4_QUOTE: usize = 576 - 20 - 8;
/// Bytes quoted in an ICMPv6 error (the error fits the IPv6 minimum MTU).
pub const ICMP6_QUOTE: usize = 1280 - 40 - 8;

/// True when the frame's outer tag is 802.1Q (0x8100): the one tag whose 4
/// bytes Linux does not count against the MTU.
fn is_tagged(frame: &[u8]) -> bool {
    matches!(frame.get(12..14), Some([0x81, 0x00]))
}

// An outer 802.1Q tag's 4 bytes are free (Linux sends `mtu + VLAN_HLEN`
// after the Ethernet header only when the outer TPID is 0x8100, see
// af_packet's packet_extra_vlan_len_allowed); an 802.1ad outer tag and a
// second tag are not.
//
// Monotone: never more for a shorter frame or with `tagged` set, which
// `egress::prepare`'s quick check relies on.
#[inline]
pub(super) fn counted(len: usize, tagged: bool, overhead: Option<u32>) -> usize {
    let l2 = len.saturating_sub(14);
    match overhead {
        Some(o) => l2 + 14 + o as usize,
        None => l2 - if tagged { 4.min(l2) } else { 0 },
    }
}

/// The size a frame counts for against an MTU (`overhead` is `Some` for a
/// tunnel port: outer headers added to the whole inner frame).
#[inline]
pub fn counted_len(frame: &[u8], overhead: Option<u32>) -> usize {
    counted(frame.len(), is_tagged(frame), overhead)
}

/// Length of the largest frame `pkt` will leave as: itself, or for a GSO
/// super-packet its largest segment (headers plus one MSS).
fn wire_len(pkt: &PacketBuf) -> usize {
    match pkt.meta.gso {
        Gso::None => pkt.len(),
        Gso::TcpV4 { size } | Gso::TcpV6 { size } => {
            let l4 = usize::from(pkt.meta.l4_ofs);
            let thl = pkt
                .data()
                .get(l4 + 12)
                .map_or(20, |b| usize::from(b >> 4) * 4);
            (l4 + thl + usize::from(size)).min(pkt.len())
        }
    }
}

/// What `pkt` counts for against the egress MTU (its largest segment for a
/// GSO super-packet).
#[inline]
pub fn counted_len_pkt(pkt: &PacketBuf, overhead: Option<u32>) -> usize {
    counted(wire_len(pkt), is_tagged(pkt.data()), overhead)
}

/// The MTU to report to the sender: the largest IP datagram that would
/// have fit, given what the egress adds around it.
pub fn reported_mtu(pkt: &PacketBuf, mtu: u32, overhead: Option<u32>) -> u32 {
    let ip = wire_len(pkt).saturating_sub(usize::from(pkt.meta.l3_ofs));
    let extra = counted_len_pkt(pkt, overhead).saturating_sub(ip) as u32;
    mtu.saturating_sub(extra)
}

/// The IP datagram length of `pkt` (0 when not IP).
fn ip_len(pkt: &PacketBuf, key: &FlowKey) -> usize {
    let d = pkt.data();
    let l3 = usize::from(pkt.meta.l3_ofs);
    if key.is_ipv4() {
        d.get(l3 + 2..l3 + 4)
            .map_or(0, |b| usize::from(u16::from_be_bytes([b[0], b[1]])))
    } else if key.is_ipv6() {
        d.get(l3 + 4..l3 + 6)
            .map_or(0, |b| usize::from(u16::from_be_bytes([b[0], b[1]])) + 40)
    } else {
        0
    }
}

/// Builds the ICMP error telling the sender of `pkt` (as it arrived: the
/// original VLAN tag, if any, comes from `key`) that the path MTU is
/// `mtu`. `None` when no error must be sent (not IP, IPv4 without DF, an
/// ICMP error itself, or a fragment other than the first).
pub fn too_big_error(
    pkt: &PacketBuf,
    key: &FlowKey,
    mtu: u32,
    pool: &mut PacketPool,
) -> Option<PacketBuf> {
    let d = pkt.data();
    let l3 = usize::from(pkt.meta.l3_ofs);
    let ip = d.get(l3..)?;
    if key.nw_frag() & FlowKey::FRAG_LATER != 0 {
        return None;
    }
    // Never answer an ICMP error with an ICMP error (RFC 1122 3.2.2).
    let is_error = |proto: u8, ty: u16| match proto {
        1 => !matches!(ty, 0 | 8),
        58 => ty < 128,
        _ => false,
    };
    if key.is_ip() && is_error(key.nw_proto(), key.tp_src()) {
        return None;
    }
    let mut out = pool.get();
    // Ethernet back to the sender, with the tag it used.
    let mut eth = [0u8; 18];
    eth[0..6].copy_from_slice(&key.dl_src());
    eth[6..12].copy_from_slice(&key.dl_dst());
    let tci = key.vlan_tci();
    let eth_len = if tci & FlowKey::VLAN_CFI != 0 {
        eth[12..14].copy_from_slice(&0x8100u16.to_be_bytes());
        eth[14..16].copy_from_slice(&(tci & !FlowKey::VLAN_CFI).to_be_bytes());
        16
    } else {
        12
    };
    if key.is_ipv4() {
        let frag = u16::from_be_bytes([*ip.get(6)?, *ip.get(7)?]);
        if frag & 0x4000 == 0 {
            return None; // no DF: dropped without ICMP, see module docs
        }
        let quote = &ip[..ip_len(pkt, key).min(ip.len()).min(ICMP4_QUOTE)];
        let icmp = icmpv4::Repr::DstUnreachable {
            code: 4,
            next_hop_mtu: mtu.min(u32::from(u16::MAX)) as u16,
            data: quote,
        };
        let ipr = ipv4::Repr {
            src_addr: Ipv4Addr::from(key.nw_dst()),
            dst_addr: Ipv4Addr::from(key.nw_src()),
            next_header: IpProtocol::Icmp,
            payload_len: icmp.buffer_len(),
            ttl: 64,
            tos: 0xc0,
            ident: 0,
            dont_frag: false,
            more_frags: false,
            frag_offset: 0,
        };
        let total = eth_len + 2 + ipv4::HEADER_LEN + icmp.buffer_len();
        let buf = out.rx_area();
        let frame = buf.get_mut(..total)?;
        frame[..eth_len].copy_from_slice(&eth[..eth_len]);
        frame[eth_len..eth_len + 2].copy_from_slice(&0x0800u16.to_be_bytes());
        let ip_out = &mut frame[eth_len + 2..];
        ipr.emit(&mut ipv4::Packet::new_unchecked(&mut *ip_out));
        icmp.emit(&mut icmpv4::Packet::new_unchecked(
            &mut ip_out[ipv4::HEADER_LEN..],
        ));
        out.set_len(total);
        return Some(out);
    }
    if key.is_ipv6() {
        let quote = &ip[..ip_len(pkt, key).min(ip.len()).min(ICMP6_QUOTE)];
        let src = Ipv6Addr::from(key.ipv6_dst());
        let dst = Ipv6Addr::from(key.ipv6_src());
        let icmp = icmpv6::Repr::PacketTooBig {
            mtu: mtu.max(1280),
            data: quote,
        };
        let ipr = ipv6::Repr {
            src_addr: src,
            dst_addr: dst,
            next_header: IpProtocol::Icmpv6,
            payload_len: icmp.buffer_len(),
            hop_limit: 64,
            traffic_class: 0,
            flow_label: 0,
        };
        let total = eth_len + 2 + ipv6::HEADER_LEN + icmp.buffer_len();
        let buf = out.rx_area();
        let frame = buf.get_mut(..total)?;
        frame[..eth_len].copy_from_slice(&eth[..eth_len]);
        frame[eth_len..eth_len + 2].copy_from_slice(&0x86ddu16.to_be_bytes());
        let ip_out = &mut frame[eth_len + 2..];
        ipr.emit(&mut ipv6::Packet::new_unchecked(&mut *ip_out));
        icmp.emit(
            &mut icmpv6::Packet::new_unchecked(&mut ip_out[ipv6::HEADER_LEN..]),
            &AddrPair::V6 { src, dst },
        );
        out.set_len(total);
        return Some(out);
    }
    pool.put(out);
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::extract::extract;

    fn ipv4_df_frame(payload: usize) -> Vec<u8> {
        let mut v = Vec::new();
        etherparse::PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
            .ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
            .tcp(40000, 22, 1, 64240)
            .write(&mut v, &vec![0x61; payload])
            .unwrap();
        // etherparse sets DF.
        v
    }

    #[test]
    fn fit_rule_counts_one_8021q_tag_free() {
        let f = vec![0u8; 1514];
        assert_eq!(counted_len(&f, None), 1500);
        let mut t = vec![0u8; 1518];
        t[12] = 0x81;
        assert_eq!(counted_len(&t, None), 1500, "one 802.1Q tag is free");
        let mut qq = vec![0u8; 1522];
        qq[12] = 0x88;
        qq[13] = 0xa8;
        assert_eq!(
            counted_len(&qq, None),
            1508,
            "an 802.1ad outer tag is not free (Linux refuses to send it)"
        );
        let mut ad = vec![0u8; 1518];
        ad[12] = 0x88;
        ad[13] = 0xa8;
        assert_eq!(counted_len(&ad, None), 1504, "a lone S-tag is not free");
        let mut qq1 = vec![0u8; 1522];
        qq1[12] = 0x81;
        qq1[16] = 0x81;
        assert_eq!(
            counted_len(&qq1, None),
            1504,
            "only the outer of two 802.1Q tags is free"
        );
        assert_eq!(counted_len(&f, Some(36)), 1550, "Geneve: inner frame + 50");
    }

    #[test]
    fn frag_needed_quotes_the_packet_and_carries_the_mtu() {
        let f = ipv4_df_frame(1460);
        let mut p = PacketBuf::from_slice(&f);
        let mut k = FlowKey::default();
        let (d, m) = p.split();
        extract(d, m, &mut k).unwrap();
        // Egress pushed an 802.1ad + 802.1Q pair: 8 bytes, all of them
        // count (the outer tag is not 802.1Q).
        assert!(crate::datapath::execute::push_vlan(&mut p, 0x8100, 10));
        assert!(crate::datapath::execute::push_vlan(&mut p, 0x88a8, 20));
        assert_eq!(counted_len(p.data(), None), 1508);
        let mtu = reported_mtu(&p, 1500, None);
        assert_eq!(mtu, 1492);
        let mut pool = PacketPool::new(2048);
        let e = too_big_error(&p, &k, mtu, &mut pool).expect("an ICMP error");
        let s = etherparse::SlicedPacket::from_ethernet(e.data()).unwrap();
        match s.net {
            Some(etherparse::NetSlice::Ipv4(ip)) => {
                assert_eq!(ip.header().source(), [10, 0, 0, 2]);
                assert_eq!(ip.header().destination(), [10, 0, 0, 1]);
            }
            other => panic!("{other:?}"),
        }
        match s.transport {
            Some(etherparse::TransportSlice::Icmpv4(i)) => {
                assert_eq!(
                    i.icmp_type(),
                    etherparse::Icmpv4Type::DestinationUnreachable(
                        etherparse::icmpv4::DestUnreachableHeader::FragmentationNeeded {
                            next_hop_mtu: 1492
                        }
                    )
                );
                // The quote starts with the original IP header.
                assert_eq!(&i.payload()[..20], &f[14..34]);
            }
            other => panic!("{other:?}"),
        }
        // Checksums verify (smoltcp as an independent oracle).
        let ipb = &e.data()[14..];
        let ipp = smoltcp::wire::Ipv4Packet::new_checked(ipb).unwrap();
        assert!(ipp.verify_checksum());
        let icmp = smoltcp::wire::Icmpv4Packet::new_checked(ipp.payload()).unwrap();
        assert!(icmp.verify_checksum());
    }

    #[test]
    fn no_df_no_icmp() {
        let mut f = ipv4_df_frame(100);
        f[20] &= !0x40; // clear DF
        let mut p = PacketBuf::from_slice(&f);
        let mut k = FlowKey::default();
        let (d, m) = p.split();
        extract(d, m, &mut k).unwrap();
        let mut pool = PacketPool::new(2048);
        assert!(too_big_error(&p, &k, 1400, &mut pool).is_none());
    }

    #[test]
    fn ipv6_packet_too_big() {
        let mut f = Vec::new();
        etherparse::PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
            .ipv6([0xfd; 16], [0xfe; 16], 64)
            .udp(1, 2)
            .write(&mut f, &[0u8; 1452])
            .unwrap();
        let mut p = PacketBuf::from_slice(&f);
        let mut k = FlowKey::default();
        let (d, m) = p.split();
        extract(d, m, &mut k).unwrap();
        let mut pool = PacketPool::new(2048);
        let e = too_big_error(&p, &k, 1450, &mut pool).unwrap();
        assert!(e.len() <= 14 + 1280);
        let s = etherparse::SlicedPacket::from_ethernet(e.data()).unwrap();
        match s.transport {
            Some(etherparse::TransportSlice::Icmpv6(i)) => {
                assert_eq!(
                    i.icmp_type(),
                    etherparse::Icmpv6Type::PacketTooBig { mtu: 1450 }
                );
            }
            other => panic!("{other:?}"),
        }
        let ipp = smoltcp::wire::Ipv6Packet::new_checked(&e.data()[14..]).unwrap();
        let icmp = smoltcp::wire::Icmpv6Packet::new_checked(ipp.payload()).unwrap();
        assert!(icmp.verify_checksum(&ipp.src_addr(), &ipp.dst_addr()));
    }
}
