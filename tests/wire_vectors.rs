//! Wire formats against real bytes: the vectors in tests/data/*.hex (real
//! Linux traffic captured between two network namespaces, plus scapy-built
//! VLAN, Geneve and malformed variants; see tests/data/gen_vectors.py and
//! each file's `#` header), checked through our views and Reprs, through
//! `flow::extract`, and against two independent parsers: etherparse and
//! smoltcp.

mod wire_common;

use std::net::{Ipv4Addr, Ipv6Addr};

use smoltcp::wire as sm;
use vswitch::wire::{
    self, arp, ethernet, geneve, icmpv4, icmpv6, ip, ipv4, ipv6, tcp, udp, vlan, AddrPair,
    EtherType, IpProtocol, L4Checksum,
};
use wire_common::{all_vectors, assert_agrees_with_etherparse, load, run_extract};

fn result_name(r: Result<(), wire::Error>) -> String {
    match r {
        Ok(()) => "ok".into(),
        Err(e) => e.name().into(),
    }
}

#[test]
fn every_hex_vector_meets_its_expectation() {
    let vs = all_vectors();
    let required = [
        "bad_truncated_ethernet",
        "bad_truncated_ipv4",
        "bad_ipv4_total_length",
        "bad_ipv4_ihl",
        "bad_vlan_nothing_behind",
        "bad_third_vlan",
        "bad_truncated_tcp",
        "bad_geneve_version",
    ];
    for r in required {
        assert!(vs.iter().any(|v| v.name == r), "missing vector {r}");
    }
    let mut checked = 0;
    for v in &vs {
        let got = match v.target.as_str() {
            "extract" => result_name(run_extract(&v.bytes).0),
            "geneve" => result_name(
                geneve::Packet::new_checked(&v.bytes[..])
                    .and_then(|p| geneve::Repr::parse(&p).map(|_| ())),
            ),
            t => panic!("{}: unknown target {t}", v.name),
        };
        assert_eq!(got, v.expect, "{}: {}", v.name, v.comment);
        checked += 1;
    }
    assert!(checked >= 30, "only {checked} vectors");
}

#[test]
fn error_names_cover_too_many_vlans() {
    assert!(wire::Error::ALL.contains(&wire::Error::TooManyVlans));
    let names: Vec<_> = wire::Error::ALL.iter().map(|e| e.name()).collect();
    assert!(names.contains(&"too_many_vlans"));
    let mut dedup = names.clone();
    dedup.sort();
    dedup.dedup();
    assert_eq!(dedup.len(), names.len());
}

#[test]
fn captured_frames_agree_with_etherparse() {
    let mut n = 0;
    for v in all_vectors() {
        if v.target == "extract" && v.expect == "ok" {
            let what = assert_agrees_with_etherparse(&v.bytes);
            assert!(what.starts_with("eth"), "{}", v.name);
            n += 1;
        }
    }
    assert!(n >= 15);
}

/// smoltcp's verdict on the L4 checksum of the IPv4/IPv6 datagram at `l3`.
fn smoltcp_l4_ok(l3: &[u8]) -> Option<bool> {
    match l3[0] >> 4 {
        4 => {
            let ip = sm::Ipv4Packet::new_checked(l3).ok()?;
            if ip.more_frags() || ip.frag_offset() != 0 {
                return None;
            }
            let (s, d) = (
                sm::IpAddress::Ipv4(ip.src_addr()),
                sm::IpAddress::Ipv4(ip.dst_addr()),
            );
            Some(match ip.next_header() {
                sm::IpProtocol::Tcp => sm::TcpPacket::new_checked(ip.payload())
                    .ok()?
                    .verify_checksum(&s, &d),
                sm::IpProtocol::Udp => sm::UdpPacket::new_checked(ip.payload())
                    .ok()?
                    .verify_checksum(&s, &d),
                sm::IpProtocol::Icmp => sm::Icmpv4Packet::new_checked(ip.payload())
                    .ok()?
                    .verify_checksum(),
                _ => return None,
            })
        }
        6 => {
            let ip = sm::Ipv6Packet::new_checked(l3).ok()?;
            let (s, d) = (ip.src_addr(), ip.dst_addr());
            let (si, di) = (sm::IpAddress::Ipv6(s), sm::IpAddress::Ipv6(d));
            Some(match ip.next_header() {
                sm::IpProtocol::Tcp => sm::TcpPacket::new_checked(ip.payload())
                    .ok()?
                    .verify_checksum(&si, &di),
                sm::IpProtocol::Udp => sm::UdpPacket::new_checked(ip.payload())
                    .ok()?
                    .verify_checksum(&si, &di),
                sm::IpProtocol::Icmpv6 => sm::Icmpv6Packet::new_checked(ip.payload())
                    .ok()?
                    .verify_checksum(&s, &d),
                _ => return None,
            })
        }
        _ => None,
    }
}

#[test]
fn captured_l4_checksums_verify_ours_and_smoltcp() {
    let mut n = 0;
    for v in all_vectors() {
        if v.target != "extract" || v.expect != "ok" {
            continue;
        }
        let (r, m, k) = run_extract(&v.bytes);
        r.unwrap();
        if !k.is_ip() {
            continue;
        }
        let l3 = &v.bytes[usize::from(m.l3_ofs)..];
        let ours = ip::verify_l4_checksum(l3).unwrap();
        if k.nw_frag() != 0 {
            assert_eq!(ours, L4Checksum::NotApplicable, "{}", v.name);
            continue;
        }
        assert_eq!(ours, L4Checksum::Good, "{}", v.name);
        assert_eq!(smoltcp_l4_ok(l3), Some(true), "smoltcp on {}", v.name);
        n += 1;
    }
    assert!(n >= 10, "{n}");
}

/// The field incident: a bare 54-byte ACK padded to 60 bytes with non-zero
/// bytes must verify (over the IP datagram only) and carry no payload.
#[test]
fn padded_tcp_ack_checksum_and_lengths() {
    let v = load("tcp_ack_padded");
    assert_eq!(v.bytes.len(), 60);
    assert!(
        v.bytes[54..].iter().all(|b| *b != 0),
        "padding must be non-zero"
    );
    let (r, m, k) = run_extract(&v.bytes);
    r.unwrap();
    assert_eq!((m.l3_ofs, m.l4_ofs, m.l2_pad_len), (14, 34, 6));
    assert_eq!(k.tcp_flags(), tcp::ACK);

    // Ours.
    let ip4 = ipv4::Packet::new_checked(&v.bytes[14..]).unwrap();
    assert_eq!(ip4.padding_len(), 6);
    let seg = tcp::Packet::new_checked(ip4.payload()).unwrap();
    assert_eq!(seg.payload().len(), 0);
    assert_eq!(seg.segment_len(), 20);
    let addrs = AddrPair::V4 {
        src: ip4.src_addr(),
        dst: ip4.dst_addr(),
    };
    assert!(seg.verify_checksum(&addrs));
    assert_eq!(
        ip::verify_l4_checksum(&v.bytes[14..]).unwrap(),
        L4Checksum::Good
    );
    // Summing to the end of the frame (the bug) would reject it.
    let wrong = tcp::Packet::new_checked(&v.bytes[34..]).unwrap();
    assert_eq!(wrong.payload().len(), 6);
    assert!(!wrong.verify_checksum(&addrs));

    // smoltcp agrees on all three counts.
    let sip = sm::Ipv4Packet::new_checked(&v.bytes[14..]).unwrap();
    let stcp = sm::TcpPacket::new_checked(sip.payload()).unwrap();
    let (s, d) = (
        sm::IpAddress::Ipv4(sip.src_addr()),
        sm::IpAddress::Ipv4(sip.dst_addr()),
    );
    assert!(stcp.verify_checksum(&s, &d));
    assert_eq!(stcp.payload().len(), 0);
    let stcp_wrong = sm::TcpPacket::new_checked(&v.bytes[34..]).unwrap();
    assert!(!stcp_wrong.verify_checksum(&s, &d));

    // And etherparse sees the same offsets.
    assert_eq!(assert_agrees_with_etherparse(&v.bytes), "eth/ipv4/tcp");
}

// ---- per-header bytes -> Repr -> bytes, on the captured vectors ----

#[test]
fn ethernet_round_trip_all_frames() {
    for v in all_vectors() {
        if v.target != "extract" || v.bytes.len() < 14 {
            continue;
        }
        let p = ethernet::Packet::new_checked(&v.bytes[..]).unwrap();
        let r = ethernet::Repr::parse(&p).unwrap();
        let mut out = [0u8; 14];
        r.emit(&mut ethernet::Packet::new_unchecked(&mut out[..]));
        assert_eq!(out[..], v.bytes[..14], "{}", v.name);
        let sp = sm::EthernetFrame::new_checked(&v.bytes[..]).unwrap();
        assert_eq!(sp.src_addr().0, r.src_addr);
        assert_eq!(sp.dst_addr().0, r.dst_addr);
    }
}

#[test]
fn vlan_round_trip() {
    // vlan_8021q_icmp: scapy Dot1Q(prio=5, vlan=100) over a captured echo.
    let v = load("vlan_8021q_icmp");
    let e = ethernet::Packet::new_checked(&v.bytes[..]).unwrap();
    assert_eq!(e.ethertype(), EtherType::Vlan);
    let t = vlan::Packet::new_checked(e.payload()).unwrap();
    let r = vlan::Repr::parse(&t).unwrap();
    assert_eq!(
        (r.pcp, r.dei, r.vid, r.ethertype),
        (5, false, 100, EtherType::Ipv4)
    );
    let mut out = [0u8; 4];
    r.emit(&mut vlan::Packet::new_unchecked(&mut out[..]));
    assert_eq!(out[..], v.bytes[14..18]);

    // qinq_tcp_syn: scapy Dot1AD(vlan=10)/Dot1Q(prio=3, vlan=20).
    let v = load("qinq_tcp_syn");
    let e = ethernet::Packet::new_checked(&v.bytes[..]).unwrap();
    assert_eq!(e.ethertype(), EtherType::QinQ);
    let outer = vlan::Repr::parse(&vlan::Packet::new_checked(e.payload()).unwrap()).unwrap();
    assert_eq!((outer.vid, outer.ethertype), (10, EtherType::Vlan));
    let inner = vlan::Repr::parse(&vlan::Packet::new_checked(&v.bytes[18..]).unwrap()).unwrap();
    assert_eq!(
        (inner.pcp, inner.vid, inner.ethertype),
        (3, 20, EtherType::Ipv4)
    );
    let mut out = [0u8; 8];
    outer.emit(&mut vlan::Packet::new_unchecked(&mut out[..4]));
    inner.emit(&mut vlan::Packet::new_unchecked(&mut out[4..]));
    assert_eq!(out[..], v.bytes[14..22]);
    let (_, m, k) = run_extract(&v.bytes);
    assert_eq!((k.vlan_tci(), k.vlan_tci1()), (0x100a, 0x7014));
    assert_eq!(m.l3_ofs, 22);
}

#[test]
fn arp_round_trip() {
    // arp_request: captured "who-has 10.0.0.2 tell 10.0.0.1".
    let v = load("arp_request");
    let p = arp::Packet::new_checked(&v.bytes[14..]).unwrap();
    let r = arp::Repr::parse(&p).unwrap();
    assert_eq!(r.operation, arp::Operation::Request);
    assert_eq!(r.target_protocol_addr, Ipv4Addr::new(10, 0, 0, 2));
    let mut out = [0u8; 28];
    r.emit(&mut arp::Packet::new_unchecked(&mut out[..]));
    assert_eq!(out[..], v.bytes[14..42]);
    let s = sm::ArpPacket::new_checked(&v.bytes[14..]).unwrap();
    assert_eq!(s.target_protocol_addr(), &[10, 0, 0, 2]);
    let (_, _, k) = run_extract(&v.bytes);
    assert_eq!(
        (k.nw_proto(), k.nw_src(), k.nw_dst()),
        (1, 0x0a00_0001, 0x0a00_0002)
    );
    assert_eq!(
        vswitch::flow::key::mac_from_u64(k.arp_sha_u64()),
        r.source_hardware_addr
    );
}

#[test]
fn ipv4_round_trip_against_smoltcp() {
    for name in [
        "icmp_echo",
        "tcp_syn_options",
        "udp_ipv4",
        "ipv4_frag_first",
        "ipv4_frag_later",
    ] {
        let v = load(name);
        let p = ipv4::Packet::new_checked(&v.bytes[14..]).unwrap();
        assert!(p.verify_checksum(), "{name}");
        let r = ipv4::Repr::parse(&p).unwrap();
        let mut out = vec![0u8; 20 + r.payload_len];
        r.emit_with_payload(&mut out, p.payload());
        assert_eq!(out[..], *p.datagram(), "{name}");
        let s = sm::Ipv4Packet::new_checked(&v.bytes[14..]).unwrap();
        assert_eq!(s.src_addr(), r.src_addr);
        assert_eq!(s.dst_addr(), r.dst_addr);
        assert_eq!(s.hop_limit(), r.ttl);
        assert_eq!(s.ident(), r.ident);
        assert_eq!(s.more_frags(), r.more_frags);
        assert_eq!(s.frag_offset(), r.frag_offset);
        assert_eq!(s.payload().len(), r.payload_len);
    }
}

#[test]
fn ipv6_round_trip_and_ext_walk() {
    for name in [
        "udp_ipv6",
        "tcp_ipv6_syn",
        "icmpv6_echo",
        "icmpv6_ns",
        "ipv6_frag_first",
    ] {
        let v = load(name);
        let p = ipv6::Packet::new_checked(&v.bytes[14..]).unwrap();
        let r = ipv6::Repr::parse(&p).unwrap();
        let mut out = vec![0u8; 40 + r.payload_len];
        r.emit_with_payload(&mut out, p.payload());
        assert_eq!(out[..], *p.datagram(), "{name}");
        let s = sm::Ipv6Packet::new_checked(&v.bytes[14..]).unwrap();
        assert_eq!(s.src_addr(), r.src_addr);
        assert_eq!(s.flow_label(), r.flow_label);
        assert_eq!(usize::from(s.payload_len()), r.payload_len);
    }
    // The captured fragments (built by the Linux stack for a 3000-byte
    // ping -6) walk to ICMPv6 for the first and stop at the later one.
    let f = load("ipv6_frag_first");
    let u = ipv6::Packet::new_checked(&f.bytes[14..])
        .unwrap()
        .upper_layer()
        .unwrap();
    assert_eq!(
        (u.protocol, u.offset, u.fragment),
        (IpProtocol::Icmpv6, 8, true)
    );
    let l = load("ipv6_frag_later");
    let p = ipv6::Packet::new_checked(&l.bytes[14..]).unwrap();
    let u = p.upper_layer().unwrap();
    assert!(u.later_fragment);
    let fr = ipv6::FragRepr::parse(&ipv6::FragHeader::new_checked(p.payload()).unwrap()).unwrap();
    assert!(fr.frag_offset > 0);
    assert_eq!(fr.next_header, IpProtocol::Icmpv6);
    let mut out = [0u8; 8];
    fr.emit(&mut out);
    assert_eq!(out[..], p.payload()[..8]);
    let (_, m, k) = run_extract(&l.bytes);
    assert_eq!((k.nw_proto(), k.nw_frag(), m.l4_ofs), (44, 3, 0));
}

/// The L4 bytes of a captured frame as the IP length delimits them.
fn l4_of(frame: &[u8]) -> (AddrPair, &[u8]) {
    let loc = ip::locate_l4(&frame[14..]).unwrap();
    (
        loc.addrs,
        &frame[14 + loc.offset..14 + loc.offset + loc.len],
    )
}

#[test]
fn tcp_round_trip_linux_segments_against_smoltcp() {
    for name in [
        "tcp_syn_options",
        "tcp_synack_options",
        "tcp_ack_54",
        "tcp_fin_54",
        "tcp_ipv6_syn",
    ] {
        let v = load(name);
        let (addrs, seg) = l4_of(&v.bytes);
        let p = tcp::Packet::new_checked(seg).unwrap();
        let r = tcp::Repr::parse(&p).unwrap();
        assert_eq!(r.buffer_len(), seg.len(), "{name}");
        let mut out = vec![0u8; r.buffer_len()];
        r.emit(&mut tcp::Packet::new_unchecked(&mut out[..]), Some(&addrs));
        // Byte for byte, checksum included: Linux's option layout.
        assert_eq!(out[..], *seg, "{name}");

        let s = sm::TcpPacket::new_checked(seg).unwrap();
        let sr = sm::TcpRepr::parse(
            &s,
            &addr_sm(&addrs, true),
            &addr_sm(&addrs, false),
            &smoltcp::phy::ChecksumCapabilities::default(),
        )
        .unwrap();
        assert_eq!(sr.src_port, r.src_port);
        assert_eq!(sr.seq_number.0 as u32, r.seq_number);
        assert_eq!(sr.max_seg_size, r.max_seg_size, "{name}");
        assert_eq!(sr.window_scale, r.window_scale, "{name}");
        assert_eq!(sr.sack_permitted, r.sack_permitted, "{name}");
        assert_eq!(
            sr.timestamp.map(|t| (t.tsval, t.tsecr)),
            r.timestamp,
            "{name}"
        );
    }
    let syn = load("tcp_syn_options");
    let (_, seg) = l4_of(&syn.bytes);
    let r = tcp::Repr::parse(&tcp::Packet::new_checked(seg).unwrap()).unwrap();
    assert_eq!(r.flags, tcp::SYN);
    assert_eq!(r.max_seg_size, Some(1460));
    assert!(r.sack_permitted && r.timestamp.is_some() && r.window_scale.is_some());
}

fn addr_sm(a: &AddrPair, src: bool) -> sm::IpAddress {
    match (*a, src) {
        (AddrPair::V4 { src, .. }, true) => sm::IpAddress::Ipv4(src),
        (AddrPair::V4 { dst, .. }, false) => sm::IpAddress::Ipv4(dst),
        (AddrPair::V6 { src, .. }, true) => sm::IpAddress::Ipv6(src),
        (AddrPair::V6 { dst, .. }, false) => sm::IpAddress::Ipv6(dst),
    }
}

#[test]
fn udp_round_trip() {
    for (name, payload) in [("udp_ipv4", &b"hello udp"[..]), ("udp_ipv6", b"hello udp6")] {
        let v = load(name);
        let (addrs, d) = l4_of(&v.bytes);
        let p = udp::Packet::new_checked(d).unwrap();
        assert!(p.verify_checksum(&addrs));
        let r = udp::Repr::parse(&p).unwrap();
        assert_eq!(r.payload, payload);
        let mut out = vec![0u8; r.buffer_len()];
        r.emit(&mut udp::Packet::new_unchecked(&mut out[..]), Some(&addrs));
        assert_eq!(out[..], *d, "{name}");
        let s = sm::UdpPacket::new_checked(d).unwrap();
        assert_eq!((s.src_port(), s.dst_port()), (r.src_port, r.dst_port));
    }
}

#[test]
fn icmp_round_trips() {
    let v = load("icmp_echo");
    let (_, m) = l4_of(&v.bytes);
    let p = icmpv4::Packet::new_checked(m).unwrap();
    let r = icmpv4::Repr::parse(&p).unwrap();
    assert!(matches!(r, icmpv4::Repr::EchoRequest { .. }));
    let mut out = vec![0u8; r.buffer_len()];
    r.emit(&mut icmpv4::Packet::new_unchecked(&mut out[..]));
    assert_eq!(out[..], *m);
    let s = sm::Icmpv4Packet::new_checked(m).unwrap();
    assert_eq!(s.echo_ident(), p.echo_ident());

    for name in ["icmpv6_echo", "icmpv6_ns"] {
        let v = load(name);
        let (addrs, m) = l4_of(&v.bytes);
        let p = icmpv6::Packet::new_checked(m).unwrap();
        assert!(p.verify_checksum(&addrs));
        let r = icmpv6::Repr::parse(&p).unwrap();
        let mut out = vec![0u8; r.buffer_len()];
        r.emit(&mut icmpv6::Packet::new_unchecked(&mut out[..]), &addrs);
        assert_eq!(out[..], *m, "{name}");
    }
    // The captured NS (from 02:00:00:00:00:01) carries a source
    // link-layer option: extract puts it in arp_sha (OVS nd_sll).
    let v = load("icmpv6_ns");
    let (_, _, k) = run_extract(&v.bytes);
    assert_eq!((k.tp_src(), k.tp_dst()), (135, 0));
    assert_eq!(
        vswitch::flow::key::mac_from_u64(k.arp_sha_u64()),
        [2, 0, 0, 0, 0, 1]
    );
}

#[test]
fn packet_too_big_checksum_matches_smoltcp() {
    let src: Ipv6Addr = "fd00::1".parse().unwrap();
    let dst: Ipv6Addr = "fd00::2".parse().unwrap();
    let quoted = load("tcp_ipv6_syn").bytes[14..].to_vec();
    let r = icmpv6::Repr::PacketTooBig {
        mtu: 1400,
        data: &quoted,
    };
    let mut out = vec![0u8; r.buffer_len()];
    r.emit(
        &mut icmpv6::Packet::new_unchecked(&mut out[..]),
        &AddrPair::V6 { src, dst },
    );
    let s = sm::Icmpv6Packet::new_checked(&out[..]).unwrap();
    assert!(s.verify_checksum(&src, &dst));
    let sr = sm::Icmpv6Repr::parse(
        &src,
        &dst,
        &s,
        &smoltcp::phy::ChecksumCapabilities::default(),
    )
    .unwrap();
    assert!(matches!(sr, sm::Icmpv6Repr::PktTooBig { mtu: 1400, .. }));
}

#[test]
fn incremental_rewrites_verify_with_smoltcp() {
    let v = load("tcp_syn_options");
    let mut f = v.bytes.clone();
    let new_src = Ipv4Addr::new(192, 0, 2, 99);
    {
        let mut ip4 = ipv4::Packet::new_checked(&mut f[14..]).unwrap();
        let old = ip4.src_addr();
        ip4.rewrite_src_addr(new_src);
        ip4.rewrite_ttl(17);
        ip4.rewrite_tos(0x2e << 2);
        let mut t = tcp::Packet::new_checked(ip4.payload_mut()).unwrap();
        t.update_checksum_for_addr_v4(old, new_src);
        t.rewrite_dst_port(8443);
    }
    let s = sm::Ipv4Packet::new_checked(&f[14..]).unwrap();
    assert!(s.verify_checksum());
    assert_eq!(s.hop_limit(), 17);
    let st = sm::TcpPacket::new_checked(s.payload()).unwrap();
    assert!(st.verify_checksum(
        &sm::IpAddress::Ipv4(new_src),
        &sm::IpAddress::Ipv4(s.dst_addr())
    ));
    assert_eq!(st.dst_port(), 8443);

    // UDP over IPv4 with checksum 0 stays 0 through the same rewrite, and
    // the helper calls it absent rather than bad.
    let v = load("udp_ipv4");
    let mut f = v.bytes.clone();
    f[14 + 20 + 6] = 0;
    f[14 + 20 + 7] = 0;
    {
        let mut ip4 = ipv4::Packet::new_checked(&mut f[14..]).unwrap();
        let old = ip4.src_addr();
        ip4.rewrite_src_addr(new_src);
        let mut u = udp::Packet::new_checked(ip4.payload_mut()).unwrap();
        u.update_checksum_for_addr_v4(old, new_src);
        assert_eq!(u.checksum(), 0);
    }
    assert_eq!(
        ip::verify_l4_checksum(&f[14..]).unwrap(),
        L4Checksum::Absent
    );
    assert!(!ip::fill_l4_checksum(&mut f[14..]).unwrap());

    // A corrupted checksum is Bad, and fill_l4_checksum repairs it.
    let v = load("tcp_ack_padded");
    let mut f = v.bytes.clone();
    f[14 + 20 + 16] ^= 0x55;
    assert_eq!(ip::verify_l4_checksum(&f[14..]).unwrap(), L4Checksum::Bad);
    assert!(ip::fill_l4_checksum(&mut f[14..]).unwrap());
    assert_eq!(f, v.bytes);
}

// ---- Geneve ----

#[test]
fn geneve_vector_matches_scapy_encoding() {
    // geneve_options.hex was built by scapy's GENEVE/GeneveOptions layer;
    // our List-based emit must produce the same header bytes.
    let v = load("geneve_options");
    let p = geneve::Packet::new_checked(&v.bytes[..]).unwrap();
    assert_eq!(p.vni(), 0x123456);
    let opts: Vec<_> = p.option_iter().collect::<Result<_, _>>().unwrap();
    assert_eq!(opts.len(), 2);
    assert_eq!((opts[0].class, opts[0].opt_type), (0x0102, 0x80));
    assert!(opts[0].is_critical() && !opts[1].is_critical());
    let list = [
        geneve::GeneveOption {
            class: 0x0102,
            opt_type: 0x80,
            data: &[0xde, 0xad, 0xbe, 0xef],
        },
        geneve::GeneveOption {
            class: 0xffff,
            opt_type: 0x01,
            data: &[1, 2, 3, 4, 5, 6, 7, 8],
        },
    ];
    let r = geneve::Repr {
        oam: false,
        critical: true,
        protocol: EtherType::TransEtherBridging,
        vni: 0x123456,
        options: geneve::Options::List(&list),
    };
    let mut out = vec![0u8; r.buffer_len()];
    r.emit(&mut geneve::Packet::new_unchecked(&mut out[..]));
    assert_eq!(out[..], v.bytes[..r.buffer_len()]);
    // The inner frame is the captured ICMP echo.
    assert_eq!(p.payload(), &load("icmp_echo").bytes[..]);
}

struct TempDir(std::path::PathBuf);
impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn geneve_full_frame_etherparse_ours_and_tshark() {
    let inner = load("icmp_echo").bytes;
    let list = [
        geneve::GeneveOption {
            class: 0x0102,
            opt_type: 0x80,
            data: &[0xde, 0xad, 0xbe, 0xef],
        },
        geneve::GeneveOption {
            class: 0x0105,
            opt_type: 0x07,
            data: &[0, 0, 0, 0x2a, 0, 0, 0, 0x2b],
        },
    ];
    let g = geneve::Repr {
        oam: false,
        critical: false,
        protocol: EtherType::TransEtherBridging,
        vni: 5001,
        options: geneve::Options::List(&list),
    };
    g.check().unwrap();
    let mut gbuf = vec![0u8; g.buffer_len() + inner.len()];
    g.emit(&mut geneve::Packet::new_unchecked(&mut gbuf[..]));
    gbuf[g.buffer_len()..].copy_from_slice(&inner);

    let (src, dst) = (Ipv4Addr::new(192, 0, 2, 1), Ipv4Addr::new(192, 0, 2, 2));
    let addrs = AddrPair::V4 { src, dst };
    let u = udp::Repr {
        src_port: 49152,
        dst_port: geneve::UDP_PORT,
        payload: &gbuf,
    };
    let ip4 = ipv4::Repr {
        src_addr: src,
        dst_addr: dst,
        next_header: IpProtocol::Udp,
        payload_len: u.buffer_len(),
        ttl: 64,
        tos: 0,
        ident: 7,
        dont_frag: true,
        more_frags: false,
        frag_offset: 0,
    };
    let eth = ethernet::Repr {
        src_addr: [0x02, 0, 0, 0, 0, 0x0a],
        dst_addr: [0x02, 0, 0, 0, 0, 0x0b],
        ethertype: EtherType::Ipv4,
    };
    let mut frame = vec![0u8; 14 + 20 + u.buffer_len()];
    eth.emit(&mut ethernet::Packet::new_unchecked(&mut frame[..]));
    let mut udp_bytes = vec![0u8; u.buffer_len()];
    u.emit(
        &mut udp::Packet::new_unchecked(&mut udp_bytes[..]),
        Some(&addrs),
    );
    ip4.emit_with_payload(&mut frame[14..], &udp_bytes);

    // etherparse parses the outer headers and agrees on the UDP checksum.
    let sp = etherparse::SlicedPacket::from_ethernet(&frame).unwrap();
    let Some(etherparse::NetSlice::Ipv4(ipv4s)) = &sp.net else {
        panic!("no IPv4")
    };
    assert_eq!(ipv4s.header().source(), src.octets());
    assert_eq!(ipv4s.header().destination(), dst.octets());
    let Some(etherparse::TransportSlice::Udp(us)) = &sp.transport else {
        panic!("no UDP")
    };
    assert_eq!(us.destination_port(), 6081);
    assert_eq!(us.payload(), &gbuf[..]);
    let calc = us
        .to_header()
        .calc_checksum_ipv4_raw(src.octets(), dst.octets(), us.payload())
        .unwrap();
    assert_eq!(calc, us.checksum());
    assert_eq!(
        ip::verify_l4_checksum(&frame[14..]).unwrap(),
        L4Checksum::Good
    );

    // Our parser reads the rest: Geneve, then the inner frame.
    let gp = geneve::Packet::new_checked(us.payload()).unwrap();
    assert_eq!(gp.vni(), 5001);
    assert!(gp.critical(), "C bit set because an option is critical");
    let opts: Vec<_> = gp.option_iter().collect::<Result<_, _>>().unwrap();
    assert_eq!(opts, list);
    let (r, _, k) = run_extract(gp.payload());
    r.unwrap();
    assert_eq!((k.nw_proto(), k.tp_src()), (1, 8));

    // Wireshark's dissector must agree on VNI and options.
    if std::process::Command::new("tshark")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("SKIP tshark cross-check: tshark not installed");
        return;
    }
    let dir = TempDir(std::env::temp_dir().join(format!("vswitch-geneve-{}", std::process::id())));
    std::fs::create_dir_all(&dir.0).unwrap();
    let path = dir.0.join("geneve.pcap");
    {
        let f = std::fs::File::create(&path).unwrap();
        let mut w = pcap_file::pcap::PcapWriter::new(f).unwrap();
        w.write_packet(&pcap_file::pcap::PcapPacket::new(
            std::time::Duration::from_secs(1),
            frame.len() as u32,
            &frame,
        ))
        .unwrap();
    }
    let out = std::process::Command::new("tshark")
        .args(["-r"])
        .arg(&path)
        .args([
            "-T",
            "fields",
            "-E",
            "separator=|",
            "-e",
            "geneve.version",
            "-e",
            "geneve.vni",
            "-e",
            "geneve.flags.critical",
            "-e",
            "geneve.proto_type",
            "-e",
            "geneve.option.class",
            "-e",
            "geneve.option.type",
            "-e",
            "geneve.option.type.critical",
            "-e",
            "geneve.option.length",
            "-e",
            "icmp.type",
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
    eprintln!("tshark: {text}");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let f: Vec<&str> = text.split('|').collect();
    assert_eq!(f.len(), 9, "{text}");
    assert_eq!(f[0], "0");
    assert_eq!(parse_num(f[1]), 5001);
    assert!(f[2] == "1" || f[2] == "True", "critical flag {}", f[2]);
    assert_eq!(parse_num(f[3]), 0x6558);
    let classes: Vec<u64> = f[4].split(',').map(parse_num).collect();
    assert_eq!(classes, vec![0x0102, 0x0105]);
    let types: Vec<u64> = f[5].split(',').map(parse_num).collect();
    assert_eq!(types, vec![0x80, 0x07]);
    let crit: Vec<&str> = f[6].split(',').collect();
    assert!(crit[0] == "1" || crit[0] == "True", "{f:?}");
    assert!(crit[1] == "0" || crit[1] == "False", "{f:?}");
    let lens: Vec<u64> = f[7].split(',').map(parse_num).collect();
    // Wireshark reports the options block length (20 bytes) and then each
    // option's length in bytes, header included.
    assert_eq!(lens, vec![20, 8, 12]);
    assert_eq!(f[8], "8", "inner ICMP echo request");
}

fn parse_num(s: &str) -> u64 {
    let s = s.trim();
    match s.strip_prefix("0x") {
        Some(h) => u64::from_str_radix(h, 16).unwrap(),
        None => s.parse().unwrap(),
    }
}
