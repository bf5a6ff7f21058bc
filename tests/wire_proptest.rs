//! Property tests for the wire layer and key extraction:
//!
//! * arbitrary bytes never panic `flow::extract`, any view's `new_checked`
//!   / getters / `Repr::parse`, or the L4 checksum helpers;
//! * random well-formed frames built by etherparse's `PacketBuilder`
//!   (Ethernet, 0-2 VLAN tags, IPv4 with random DSCP/ECN/fragment bits or
//!   IPv6 with an optional hop-by-hop header, TCP/UDP/ICMP/ICMPv6, random
//!   payload, random non-zero Ethernet padding) give the same fields through
//!   our `extract` as through etherparse's `SlicedPacket`, padding is
//!   reported exactly, and the L4 checksum etherparse wrote verifies.

#[path = "common/proptest_file.rs"]
mod proptest_file;

mod wire_common;

use etherparse::{
    DoubleVlanHeader, EtherType as EpEtherType, IpDscp, IpEcn, IpFragOffset, IpHeaders, IpNumber,
    Ipv4Extensions, Ipv4Header, Ipv6Extensions, Ipv6FlowLabel, Ipv6Header, Ipv6RawExtHeader,
    PacketBuilder, SingleVlanHeader, VlanHeader, VlanId, VlanPcp,
};
use proptest::prelude::*;
use vswitch::wire::{
    arp, ethernet, geneve, icmpv4, icmpv6, ip, ipv4, ipv6, tcp, udp, vlan, L4Checksum,
};
use wire_common::{assert_agrees_with_etherparse, run_extract};

/// Exercises every getter of every view over `b` (and parses), so a panic
/// anywhere in the read paths shows up.
fn poke_all_views(b: &[u8]) {
    let _ = run_extract(b);
    let e = ethernet::Packet::new_unchecked(b);
    let _ = (e.dst_addr(), e.src_addr(), e.ethertype(), e.payload().len());
    if let Ok(p) = ethernet::Packet::new_checked(b) {
        let _ = ethernet::Repr::parse(&p);
    }
    let v = vlan::Packet::new_unchecked(b);
    let _ = (
        v.tci(),
        v.pcp(),
        v.dei(),
        v.vid(),
        v.ethertype(),
        v.payload(),
    );
    if let Ok(p) = vlan::Packet::new_checked(b) {
        let _ = vlan::Repr::parse(&p);
    }
    let a = arp::Packet::new_unchecked(b);
    let _ = (
        a.operation(),
        a.source_hardware_addr(),
        a.source_protocol_addr(),
        a.target_hardware_addr(),
        a.target_protocol_addr(),
        a.is_eth_ipv4(),
    );
    if let Ok(p) = arp::Packet::new_checked(b) {
        let _ = arp::Repr::parse(&p);
    }
    let p4 = ipv4::Packet::new_unchecked(b);
    let _ = (
        p4.version(),
        p4.header_len(),
        p4.total_len(),
        p4.frag_offset(),
        p4.src_addr(),
        p4.dst_addr(),
        p4.options(),
        p4.payload(),
        p4.datagram(),
        p4.padding_len(),
        p4.verify_checksum(),
    );
    if let Ok(p) = ipv4::Packet::new_checked(b) {
        let r = ipv4::Repr::parse(&p).unwrap();
        assert_eq!(r.payload_len, p.payload().len());
    }
    let p6 = ipv6::Packet::new_unchecked(b);
    let _ = (
        p6.traffic_class(),
        p6.flow_label(),
        p6.payload(),
        p6.datagram(),
        p6.padding_len(),
        p6.upper_layer(),
    );
    if let Ok(p) = ipv6::Packet::new_checked(b) {
        let _ = ipv6::Repr::parse(&p);
        if let Ok(u) = p.upper_layer() {
            assert!(u.offset <= p.payload().len());
        }
    }
    for first in [0u8, 43, 44, 51, 60, 6] {
        let _ = ipv6::walk_ext_headers(first.into(), b);
    }
    let eh = ipv6::ExtHeader::new_unchecked(b);
    let _ = (eh.next_header(), eh.header_len(), eh.data());
    if let Ok(h) = ipv6::ExtHeader::new_checked(b) {
        let _ = ipv6::ExtHeaderRepr::parse(&h);
    }
    if let Ok(h) = ipv6::FragHeader::new_checked(b) {
        let _ = ipv6::FragRepr::parse(&h);
    }
    let t = tcp::Packet::new_unchecked(b);
    let _ = (
        t.header_len(),
        t.flags(),
        t.options(),
        t.payload(),
        t.seq_len(),
        t.option_iter().count(),
    );
    if let Ok(p) = tcp::Packet::new_checked(b) {
        if let Ok(r) = tcp::Repr::parse(&p) {
            assert!(r.options_len() % 4 == 0);
        }
    }
    let u = udp::Packet::new_unchecked(b);
    let _ = (u.len(), u.payload(), u.datagram());
    if let Ok(p) = udp::Packet::new_checked(b) {
        let _ = udp::Repr::parse(&p);
    }
    let i4 = icmpv4::Packet::new_unchecked(b);
    let _ = (
        i4.msg_type(),
        i4.next_hop_mtu(),
        i4.data(),
        i4.verify_checksum(),
    );
    if let Ok(p) = icmpv4::Packet::new_checked(b) {
        let _ = icmpv4::Repr::parse(&p);
    }
    let i6 = icmpv6::Packet::new_unchecked(b);
    let _ = (i6.msg_type(), i6.mtu(), i6.data(), i6.nd());
    if let Ok(p) = icmpv6::Packet::new_checked(b) {
        let _ = icmpv6::Repr::parse(&p);
    }
    let g = geneve::Packet::new_unchecked(b);
    let _ = (
        g.version(),
        g.vni(),
        g.options(),
        g.payload(),
        g.option_iter().count(),
    );
    if let Ok(p) = geneve::Packet::new_checked(b) {
        let _ = geneve::Repr::parse(&p);
    }
    let _ = ip::locate_l4(b);
    let _ = ip::verify_l4_checksum(b);
    let mut c = b.to_vec();
    let _ = ip::fill_l4_checksum(&mut c);
}

proptest! {
    #![proptest_config(proptest_file::config(2000, "tests/wire_proptest.proptest-regressions"))]

    #[test]
    fn random_bytes_never_panic(b in proptest::collection::vec(any::<u8>(), 0..200)) {
        poke_all_views(&b);
        for ofs in [12usize, 14, 18, 22] {
            if let Some(t) = b.get(ofs..) {
                poke_all_views(t);
            }
        }
    }

    /// Random bytes behind plausible headers reach the deep parsers.
    #[test]
    fn mutated_frames_never_panic(
        prefix in prop_oneof![
            Just(vec![0x08u8, 0x00, 0x45]),
            Just(vec![0x86, 0xdd, 0x60]),
            Just(vec![0x81, 0x00, 0x00, 0x01, 0x08, 0x00, 0x46]),
            Just(vec![0x88, 0xa8, 0x00, 0x01, 0x81, 0x00, 0x00, 0x02, 0x86, 0xdd, 0x60]),
            Just(vec![0x08, 0x06, 0x00, 0x01, 0x08, 0x00, 0x06, 0x04]),
        ],
        rest in proptest::collection::vec(any::<u8>(), 0..120),
    ) {
        let mut f = vec![2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2];
        f.extend_from_slice(&prefix);
        f.extend_from_slice(&rest);
        poke_all_views(&f);
    }
}

#[derive(Debug, Clone)]
enum Vlans {
    None,
    One(u8, bool, u16),
    Two(u16, u16),
}

#[derive(Debug, Clone)]
enum L3 {
    V4 {
        src: [u8; 4],
        dst: [u8; 4],
        ttl: u8,
        dscp: u8,
        ecn: u8,
        ident: u16,
        df: bool,
        mf: bool,
        frag: u16,
    },
    V6 {
        src: [u8; 16],
        dst: [u8; 16],
        hop: u8,
        tc: u8,
        label: u32,
        hbh: bool,
    },
}

#[derive(Debug, Clone)]
enum L4 {
    Tcp {
        sp: u16,
        dp: u16,
        seq: u32,
        win: u16,
        flags: u16,
        ack: u32,
    },
    Udp {
        sp: u16,
        dp: u16,
    },
    Echo {
        id: u16,
        seq: u16,
    },
}

fn vlans() -> impl Strategy<Value = Vlans> {
    prop_oneof![
        Just(Vlans::None),
        (0u8..8, any::<bool>(), 0u16..4096).prop_map(|(p, d, v)| Vlans::One(p, d, v)),
        (0u16..4096, 0u16..4096).prop_map(|(a, b)| Vlans::Two(a, b)),
    ]
}

fn l3() -> impl Strategy<Value = L3> {
    prop_oneof![
        (
            any::<[u8; 4]>(),
            any::<[u8; 4]>(),
            any::<u8>(),
            0u8..64,
            0u8..4,
            any::<u16>(),
            any::<bool>(),
            any::<bool>(),
            prop_oneof![Just(0u16), 1u16..0x1fff],
        )
            .prop_map(|(src, dst, ttl, dscp, ecn, ident, df, mf, frag)| L3::V4 {
                src,
                dst,
                ttl,
                dscp,
                ecn,
                ident,
                df,
                mf,
                frag
            }),
        (
            any::<[u8; 16]>(),
            any::<[u8; 16]>(),
            any::<u8>(),
            any::<u8>(),
            0u32..0x10_0000,
            any::<bool>(),
        )
            .prop_map(|(src, dst, hop, tc, label, hbh)| L3::V6 {
                src,
                dst,
                hop,
                tc,
                label,
                hbh
            }),
    ]
}

fn l4() -> impl Strategy<Value = L4> {
    prop_oneof![
        (
            any::<u16>(),
            any::<u16>(),
            any::<u32>(),
            any::<u16>(),
            0u16..0x200,
            any::<u32>()
        )
            .prop_map(|(sp, dp, seq, win, flags, ack)| L4::Tcp {
                sp,
                dp,
                seq,
                win,
                flags,
                ack
            }),
        (any::<u16>(), any::<u16>()).prop_map(|(sp, dp)| L4::Udp { sp, dp }),
        (any::<u16>(), any::<u16>()).prop_map(|(id, seq)| L4::Echo { id, seq }),
    ]
}

fn ip_headers(l3: &L3) -> IpHeaders {
    match l3 {
        L3::V4 {
            src,
            dst,
            ttl,
            dscp,
            ecn,
            ident,
            df,
            mf,
            frag,
        } => {
            let mut h = Ipv4Header::new(0, *ttl, IpNumber::UDP, *src, *dst).unwrap();
            h.dscp = IpDscp::try_new(*dscp).unwrap();
            h.ecn = IpEcn::try_new(*ecn).unwrap();
            h.identification = *ident;
            h.dont_fragment = *df;
            h.more_fragments = *mf;
            h.fragment_offset = IpFragOffset::try_new(*frag).unwrap();
            IpHeaders::Ipv4(h, Ipv4Extensions::default())
        }
        L3::V6 {
            src,
            dst,
            hop,
            tc,
            label,
            hbh,
        } => {
            let h = Ipv6Header {
                traffic_class: *tc,
                flow_label: Ipv6FlowLabel::try_new(*label).unwrap(),
                payload_length: 0,
                next_header: IpNumber::UDP,
                hop_limit: *hop,
                source: *src,
                destination: *dst,
            };
            let mut ext = Ipv6Extensions::default();
            if *hbh {
                // PadN option filling the 6 bytes after next-header/length.
                ext.hop_by_hop_options =
                    Some(Ipv6RawExtHeader::new_raw(IpNumber::UDP, &[1, 4, 0, 0, 0, 0]).unwrap());
            }
            IpHeaders::Ipv6(h, ext)
        }
    }
}

macro_rules! build_l4 {
    ($b:expr, $l4:expr, $is_v4:expr, $payload:expr) => {{
        let mut out = Vec::new();
        match $l4 {
            L4::Tcp {
                sp,
                dp,
                seq,
                win,
                flags,
                ack,
            } => {
                let mut t = $b.tcp(*sp, *dp, *seq, *win);
                if flags & 0x001 != 0 {
                    t = t.fin();
                }
                if flags & 0x002 != 0 {
                    t = t.syn();
                }
                if flags & 0x004 != 0 {
                    t = t.rst();
                }
                if flags & 0x008 != 0 {
                    t = t.psh();
                }
                if flags & 0x010 != 0 {
                    t = t.ack(*ack);
                }
                if flags & 0x020 != 0 {
                    t = t.urg(7);
                }
                if flags & 0x040 != 0 {
                    t = t.ece();
                }
                if flags & 0x080 != 0 {
                    t = t.cwr();
                }
                if flags & 0x100 != 0 {
                    t = t.ns();
                }
                t.write(&mut out, $payload).unwrap();
            }
            L4::Udp { sp, dp } => $b.udp(*sp, *dp).write(&mut out, $payload).unwrap(),
            L4::Echo { id, seq } => {
                if $is_v4 {
                    $b.icmpv4_echo_request(*id, *seq)
                        .write(&mut out, $payload)
                        .unwrap()
                } else {
                    $b.icmpv6_echo_request(*id, *seq)
                        .write(&mut out, $payload)
                        .unwrap()
                }
            }
        }
        out
    }};
}

fn build(src: [u8; 6], dst: [u8; 6], v: &Vlans, l3: &L3, l4: &L4, payload: &[u8]) -> Vec<u8> {
    let is_v4 = matches!(l3, L3::V4 { .. });
    let iph = ip_headers(l3);
    let b = PacketBuilder::ethernet2(src, dst);
    let single = |pcp: u8, dei: bool, vid: u16| SingleVlanHeader {
        pcp: VlanPcp::try_new(pcp).unwrap(),
        drop_eligible_indicator: dei,
        vlan_id: VlanId::try_new(vid).unwrap(),
        ether_type: EpEtherType(0),
    };
    match v {
        Vlans::None => build_l4!(b.ip(iph), l4, is_v4, payload),
        Vlans::One(p, d, id) => {
            build_l4!(
                b.vlan(VlanHeader::Single(single(*p, *d, *id))).ip(iph),
                l4,
                is_v4,
                payload
            )
        }
        Vlans::Two(o, i) => build_l4!(
            b.vlan(VlanHeader::Double(DoubleVlanHeader {
                outer: single(0, false, *o),
                inner: single(5, false, *i),
            }))
            .ip(iph),
            l4,
            is_v4,
            payload
        ),
    }
}

proptest! {
    #![proptest_config(proptest_file::config(1500, "tests/wire_proptest.proptest-regressions"))]

    #[test]
    fn extract_agrees_with_etherparse(
        src in any::<[u8; 6]>(),
        dst in any::<[u8; 6]>(),
        v in vlans(),
        l3 in l3(),
        l4 in l4(),
        payload in proptest::collection::vec(any::<u8>(), 0..64),
        pad in proptest::collection::vec(1u8..=255, 0..24),
    ) {
        let mut frame = build(src, dst, &v, &l3, &l4, &payload);
        let datagram_end = frame.len();
        frame.extend_from_slice(&pad);

        let what = assert_agrees_with_etherparse(&frame);
        prop_assert!(what.starts_with("eth"));

        let (r, m, k) = run_extract(&frame);
        prop_assert!(r.is_ok());
        prop_assert_eq!(usize::from(m.l2_pad_len), pad.len());
        prop_assert_eq!(usize::from(m.l3_ofs) + (datagram_end - usize::from(m.l3_ofs)), datagram_end);
        // The L4 checksum etherparse wrote verifies over the IP datagram
        // alone, whatever the (non-zero) padding after it.
        let l3b = &frame[usize::from(m.l3_ofs)..];
        let c = ip::verify_l4_checksum(l3b).unwrap();
        if k.nw_frag() != 0 {
            prop_assert_eq!(c, L4Checksum::NotApplicable);
            prop_assert_eq!(m.l4_ofs == 0, k.nw_frag() & 2 != 0);
        } else {
            prop_assert_eq!(c, L4Checksum::Good);
            prop_assert!(m.l4_ofs > m.l3_ofs);
        }
    }
}
