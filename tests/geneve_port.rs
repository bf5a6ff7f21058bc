//! The Geneve port over real kernel UDP sockets on loopback (127.0.0.1 and
//! 127.0.0.2; no namespace, no root needed): frames cross with their VNI,
//! options and outer addresses; bad datagrams are counted drops by reason;
//! flow-based remote and key; an unreachable peer is counted, not fatal;
//! TSO super-packets and partial checksums are finished before encap, and
//! IPv4 and IPv6 super-packets arrive as one super-frame each; the outer
//! source port follows the inner flow.
//!
//! Every receive loop is bounded (a few hundred polls of 5 ms).

use etherparse::{PacketBuilder, SlicedPacket, TransportSlice};
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::Arc;
use std::time::Duration;
use vswitch::packet::{Batch, CsumStatus, Gso, PacketBuf, PacketPool, TunnelMeta};
use vswitch::port::geneve::{
    new_tlv_map, GeneveConfig, GenevePort, Key, Remote, TlvMap, TlvMapHandle, TlvMapping,
    SRC_PORT_MAX, SRC_PORT_MIN,
};
use vswitch::port::{Port, PortDrop};

static NEXT: AtomicU16 = AtomicU16::new(0);

/// A UDP port free on both 127.0.0.1 and 127.0.0.2, below the range the
/// send sockets use.
fn free_port() -> u16 {
    let base = 20000 + (std::process::id() % 400) as u16 * 25;
    for _ in 0..2000 {
        let p = base + NEXT.fetch_add(1, Ordering::Relaxed) % 10000;
        let a = UdpSocket::bind(("127.0.0.1", p));
        let b = UdpSocket::bind(("127.0.0.2", p));
        if a.is_ok() && b.is_ok() {
            return p;
        }
    }
    panic!("no free UDP port");
}

fn cfg(name: &str, local: &str, remote: Remote, key: Key, port: u16) -> GeneveConfig {
    let mut c = GeneveConfig::new(name, remote);
    c.local = Some(local.parse().unwrap());
    c.in_key = key;
    c.out_key = key;
    c.dst_port = port;
    c
}

fn tlv(spec: &str) -> TlvMapHandle {
    let h = new_tlv_map();
    let m = TlvMap::default()
        .with_added(&TlvMapping::parse_list(spec).unwrap())
        .unwrap();
    h.store(Arc::new(m));
    h
}

fn lo(n: u8) -> Ipv4Addr {
    Ipv4Addr::new(127, 0, 0, n)
}

/// A pair of ports: a (127.0.0.1) <-> b (127.0.0.2), key 5000, one TLV map.
fn pair() -> (GenevePort, GenevePort, u16) {
    let port = free_port();
    let map = tlv("{class=0xffff,type=0,len=4}->tun_metadata0");
    let a = GenevePort::open(
        cfg("a", "127.0.0.1", Remote::Ip(lo(2)), Key::Vni(5000), port),
        map.clone(),
    )
    .unwrap();
    let b = GenevePort::open(
        cfg("b", "127.0.0.2", Remote::Ip(lo(1)), Key::Vni(5000), port),
        map,
    )
    .unwrap();
    (a, b, port)
}

/// An Ethernet/IPv4/UDP frame with header offsets set, as key extraction
/// leaves them.
fn udp_frame(pool: &mut PacketPool, sport: u16, payload: &[u8]) -> PacketBuf {
    let b = PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
        .ipv4([10, 250, 0, 1], [10, 250, 0, 2], 64)
        .udp(sport, 7);
    let mut v = Vec::new();
    b.write(&mut v, payload).unwrap();
    let mut p = pool.get_from(&v);
    p.meta.l3_ofs = 14;
    p.meta.l4_ofs = 34;
    p
}

fn recv_n(port: &mut GenevePort, pool: &mut PacketPool, n: usize) -> Vec<PacketBuf> {
    let mut out = Vec::new();
    let mut b = Batch::new();
    for _ in 0..400 {
        port.recv_batch(pool, &mut b).unwrap();
        out.extend(b.drain());
        if out.len() >= n {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    out
}

fn drop_count(p: &GenevePort, why: PortDrop) -> u64 {
    p.drops()
        .into_iter()
        .find(|(w, _)| *w == why)
        .map_or(0, |(_, n)| n)
}

#[test]
fn frames_cross_with_vni_options_and_outer_addresses() {
    let (mut a, mut b, port) = pair();
    let mut pool = PacketPool::new(2048);
    let mut out = Batch::new();
    let mut sent = Vec::new();
    for i in 0..3u8 {
        let mut p = udp_frame(&mut pool, 1000 + u16::from(i), &[i; 20]);
        p.meta.tunnel.metadata_present = 1;
        p.meta.tunnel.metadata[0] = 0xabcd + u64::from(i);
        sent.push(p.data().to_vec());
        out.push(p).unwrap();
    }
    assert_eq!(a.send_batch(&mut out, &mut pool).unwrap(), 3);
    assert!(out.is_empty(), "the batch is drained");
    let got = recv_n(&mut b, &mut pool, 3);
    assert_eq!(got.len(), 3, "drops: {:?}", b.drops());
    let mut got: Vec<_> = got.iter().collect();
    got.sort_by_key(|p| p.data().to_vec());
    for (i, p) in got.iter().enumerate() {
        assert_eq!(p.data(), &sent[i][..], "inner frame unchanged");
        let t = p.meta.tunnel;
        assert_eq!(t.tun_id, 5000);
        assert_eq!(
            (Ipv4Addr::from(t.ip_src), Ipv4Addr::from(t.ip_dst)),
            (lo(1), lo(2))
        );
        assert_eq!(t.tp_dst, port);
        assert!(
            (SRC_PORT_MIN..=SRC_PORT_MAX).contains(&t.tp_src),
            "{}",
            t.tp_src
        );
        assert_eq!(t.ip_ttl, 64);
        assert_eq!(t.flags, TunnelMeta::F_KEY);
        assert_eq!((t.metadata_present, t.metadata[0]), (1, 0xabcd + i as u64));
    }
    assert_eq!(a.stats().tx_packets, 3);
    assert_eq!(b.stats().rx_packets, 3);
    assert!(a.drops().is_empty() && b.drops().is_empty());
    assert_eq!(
        a.overhead(),
        50 + 8,
        "base 50 + one 4-byte option with its header"
    );
    assert_eq!(a.kind(), "geneve");
}

#[test]
fn bad_datagrams_are_counted_by_reason() {
    let (_a, mut b, port) = pair();
    let mut pool = PacketPool::new(2048);
    let peer = UdpSocket::bind("127.0.0.1:0").unwrap();
    let to: SocketAddr = (lo(2), port).into();
    let inner = [2u8, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0x08, 0x00, 0x45, 0];
    let with = |hdr: &[u8]| [hdr, &inner[..]].concat();
    let cases: Vec<(Vec<u8>, PortDrop)> = vec![
        (vec![0, 0, 0x65], PortDrop::GeneveTruncated),
        (
            with(&[0x40, 0, 0x65, 0x58, 0, 0x13, 0x88, 0]),
            PortDrop::GeneveBadVersion,
        ),
        (
            with(&[0x3f, 0, 0x65, 0x58, 0, 0x13, 0x88, 0]),
            PortDrop::GeneveTruncated,
        ),
        (
            with(&[1, 0, 0x65, 0x58, 0, 0x13, 0x88, 0, 0xff, 0xff, 0, 2]),
            PortDrop::GeneveBadOptionLength,
        ),
        (
            with(&[1, 0x40, 0x65, 0x58, 0, 0x13, 0x88, 0, 1, 2, 0x80, 0]),
            PortDrop::GeneveCriticalOption,
        ),
        (
            with(&[0, 0, 0x08, 0x00, 0, 0x13, 0x88, 0]),
            PortDrop::GeneveBadProtocol,
        ),
        (
            with(&[0, 0, 0x65, 0x58, 0, 0x13, 0x89, 0]),
            PortDrop::TunnelNoMatch,
        ),
    ];
    for (d, _) in &cases {
        peer.send_to(d, to).unwrap();
    }
    // From a host that is not remote_ip.
    let stranger = UdpSocket::bind("127.0.0.3:0").unwrap();
    stranger
        .send_to(&with(&[0, 0, 0x65, 0x58, 0, 0x13, 0x88, 0]), to)
        .unwrap();
    // And one good datagram last: when it is through, all were read.
    peer.send_to(&with(&[0, 0, 0x65, 0x58, 0, 0x13, 0x88, 0]), to)
        .unwrap();
    let good = recv_n(&mut b, &mut pool, 1);
    assert_eq!(good.len(), 1);
    let mut want = std::collections::BTreeMap::new();
    for (_, r) in &cases {
        *want.entry(*r).or_insert(0u64) += 1;
    }
    *want.entry(PortDrop::TunnelNoMatch).or_insert(0) += 1;
    let got: std::collections::BTreeMap<_, _> = b.drops().into_iter().collect();
    assert_eq!(got, want);
    assert_eq!(b.stats().rx_dropped, cases.len() as u64 + 1);
    assert_eq!(b.stats().rx_packets, 1);
}

#[test]
fn flow_based_remote_and_key() {
    let port = free_port();
    let map = new_tlv_map();
    let mut a = GenevePort::open(
        cfg("a", "127.0.0.1", Remote::Flow, Key::Flow, port),
        map.clone(),
    )
    .unwrap();
    let mut b =
        GenevePort::open(cfg("b", "127.0.0.2", Remote::Flow, Key::Flow, port), map).unwrap();
    let mut pool = PacketPool::new(2048);
    let mut out = Batch::new();
    // No tun_dst: nowhere to send.
    out.push(udp_frame(&mut pool, 1, b"lost")).unwrap();
    let mut p = udp_frame(&mut pool, 2, b"found");
    p.meta.tunnel.ip_dst = u32::from(lo(2));
    p.meta.tunnel.tun_id = 0x0100_0077; // only the low 24 bits are a VNI
    out.push(p).unwrap();
    a.send_batch(&mut out, &mut pool).unwrap();
    assert_eq!(drop_count(&a, PortDrop::TunnelNoDestination), 1);
    let got = recv_n(&mut b, &mut pool, 1);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].meta.tunnel.tun_id, 0x77);
    assert_eq!(Ipv4Addr::from(got[0].meta.tunnel.ip_src), lo(1));
    assert_eq!(a.stats().tx_dropped, 1);
}

#[test]
fn unreachable_peer_is_counted_and_not_fatal() {
    let port = free_port();
    // Nobody listens on 127.0.0.3:port: the kernel answers with ICMP port
    // unreachable, as a host whose vswitchd died does.
    let mut a = GenevePort::open(
        cfg("a", "127.0.0.1", Remote::Ip(lo(3)), Key::Vni(1), port),
        new_tlv_map(),
    )
    .unwrap();
    let mut pool = PacketPool::new(2048);
    let mut seen = 0;
    for round in 0..50 {
        let mut out = Batch::new();
        out.push(udp_frame(&mut pool, round, b"x")).unwrap();
        assert!(a.send_batch(&mut out, &mut pool).is_ok());
        a.housekeeping();
        seen = drop_count(&a, PortDrop::TunnelUnreachable);
        if seen >= 2 {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(seen >= 2, "ICMP port unreachable counted: {:?}", a.drops());
    assert!(a.icmp().port_unreachable >= 1);
    assert_eq!(a.link_state(), vswitch::port::LinkState::Up);
    assert!(a.stats().tx_errors >= 1);
}

/// A 3000-byte TCP super-packet over IPv4 or IPv6 (MSS 1000, checksum
/// partial, as a vnet_hdr TAP hands it over), with header offsets set.
fn tcp_super_packet(v6: bool) -> PacketBuf {
    let payload: Vec<u8> = (0..3000u32).map(|i| (i * 7 % 251) as u8).collect();
    let eth = PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2]);
    let ip = if v6 {
        let a = |n: u8| [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, n];
        eth.ipv6(a(1), a(2), 64)
    } else {
        eth.ipv4([10, 250, 0, 1], [10, 250, 0, 2], 64)
    };
    let mut v = Vec::new();
    ip.tcp(40000, 5001, 1_000_000, 65535)
        .ack(7)
        .write(&mut v, &payload)
        .unwrap();
    let l4 = if v6 { 54 } else { 34 };
    let mut sp = PacketBuf::from_slice(&v);
    sp.meta.gso = if v6 {
        Gso::TcpV6 { size: 1000 }
    } else {
        Gso::TcpV4 { size: 1000 }
    };
    sp.meta.csum = CsumStatus::Partial {
        csum_start: l4,
        csum_offset: 16,
    };
    sp.meta.l3_ofs = 14;
    sp.meta.l4_ofs = l4;
    sp
}

/// The TCP segments in `frames` (super-frames cut by the software
/// segmenter): sequence numbers and payload bytes, every TCP checksum
/// checked by etherparse.
fn tcp_segments(frames: &[PacketBuf], pool: &mut PacketPool) -> (Vec<u32>, usize) {
    let mut seqs = Vec::new();
    let mut bytes = 0;
    for f in frames {
        let mut segs = Batch::new();
        if f.meta.gso == Gso::None {
            segs.push(f.clone()).unwrap();
        } else {
            vswitch::packet::gso::segment(f, pool, &mut segs).unwrap();
        }
        for p in segs.iter() {
            let s = SlicedPacket::from_ethernet(p.data()).unwrap();
            let Some(TransportSlice::Tcp(t)) = &s.transport else {
                continue;
            };
            let th = t.to_header();
            let want = match &s.net {
                Some(etherparse::NetSlice::Ipv4(ip)) => {
                    th.calc_checksum_ipv4(&ip.header().to_header(), t.payload())
                }
                Some(etherparse::NetSlice::Ipv6(ip)) => {
                    th.calc_checksum_ipv6(&ip.header().to_header(), t.payload())
                }
                _ => panic!("not IP"),
            }
            .unwrap();
            assert_eq!(t.checksum(), want, "TCP checksum of a segment (etherparse)");
            assert!(t.payload().len() <= 1000);
            seqs.push(t.sequence_number());
            bytes += t.payload().len();
        }
    }
    seqs.sort();
    (seqs, bytes)
}

#[test]
fn tso_super_packet_crosses_as_segments_and_arrives_as_one() {
    let (mut a, mut b, port) = pair();
    assert_eq!(
        a.gso_lanes(),
        a.src_ports().len(),
        "every lane sends UDP GSO"
    );
    let mut pool = PacketPool::new(2048);
    // On the wire (a plain socket in b's place): one Geneve datagram per
    // segment, each a whole frame with a valid TCP checksum, although the
    // port sent them with one UDP GSO sendmsg.
    let sink = UdpSocket::bind((lo(3), port)).unwrap();
    sink.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    // (bound on 127.0.0.4: a holds 127.0.0.1 and this port's number)
    let mut to_sink = GenevePort::open(
        cfg("s", "127.0.0.4", Remote::Ip(lo(3)), Key::Vni(5000), port),
        new_tlv_map(),
    )
    .unwrap();
    let mut out = Batch::new();
    out.push(tcp_super_packet(false)).unwrap();
    to_sink.send_batch(&mut out, &mut pool).unwrap();
    let mut wire = Vec::new();
    let mut buf = [0u8; 4096];
    for _ in 0..3 {
        let (n, _) = sink.recv_from(&mut buf).expect("a datagram per segment");
        assert_eq!(
            &buf[..8],
            &[0, 0, 0x65, 0x58, 0, 0x13, 0x88, 0],
            "Geneve, VNI 5000"
        );
        wire.push(PacketBuf::from_slice(&buf[8..n]));
    }
    assert_eq!(
        tcp_segments(&wire, &mut pool),
        (vec![1_000_000, 1_001_000, 1_002_000], 3000)
    );
    assert_eq!(to_sink.stats().tx_packets, 3, "datagrams counted");

    // Port to port: the segments become one super-frame again at the
    // receiving port, and a partial UDP checksum is completed on the way.
    let mut u = udp_frame(&mut pool, 9, b"partial checksum!");
    let want_udp = u.data()[40..42].to_vec();
    let pseudo = vswitch::wire::checksum::pseudo_header_v4(
        Ipv4Addr::new(10, 250, 0, 1),
        Ipv4Addr::new(10, 250, 0, 2),
        17,
        8 + 17,
    );
    let folded = vswitch::wire::checksum::fold(pseudo);
    u.data_mut()[40..42].copy_from_slice(&folded.to_be_bytes());
    u.meta.csum = CsumStatus::Partial {
        csum_start: 34,
        csum_offset: 6,
    };
    let mut out = Batch::new();
    out.push(tcp_super_packet(false)).unwrap();
    out.push(u).unwrap();
    a.send_batch(&mut out, &mut pool).unwrap();
    let got = recv_n(&mut b, &mut pool, 2);
    assert_eq!(
        got.len(),
        2,
        "one super-frame + 1 datagram; drops {:?} / {:?}",
        a.drops(),
        b.drops()
    );
    assert_eq!(b.stats().rx_packets, 4, "every datagram counted");
    let tcp = &got[0];
    assert_eq!(tcp.meta.gso, Gso::TcpV4 { size: 1000 });
    assert_eq!(
        tcp.meta.csum,
        CsumStatus::Partial {
            csum_start: 34,
            csum_offset: 16
        },
        "the receiving TAP gets NEEDS_CSUM: its kernel trusts the sum"
    );
    assert_eq!(tcp.len(), 14 + 20 + 20 + 3000);
    assert_eq!(
        tcp_segments(&got, &mut pool),
        (vec![1_000_000, 1_001_000, 1_002_000], 3000)
    );
    assert_eq!(
        &got[1].data()[40..42],
        &want_udp[..],
        "UDP checksum completed"
    );
}

#[test]
fn ipv6_and_ipv4_super_packets_cross_and_arrive_as_one_each() {
    let (mut a, mut b, _) = pair();
    let mut pool = PacketPool::new(2048);
    let mut out = Batch::new();
    out.push(tcp_super_packet(true)).unwrap();
    out.push(tcp_super_packet(false)).unwrap();
    a.send_batch(&mut out, &mut pool).unwrap();
    let got = recv_n(&mut b, &mut pool, 2);
    assert_eq!(
        got.len(),
        2,
        "one super-frame per family; drops {:?} / {:?}",
        a.drops(),
        b.drops()
    );
    assert_eq!(b.stats().rx_packets, 6, "every datagram counted");
    // Two inner flows may leave by two outer source ports: either order.
    let v6 = got
        .iter()
        .find(|p| p.data()[12..14] == [0x86, 0xdd])
        .expect("the IPv6 super-frame");
    assert_eq!(v6.meta.gso, Gso::TcpV6 { size: 1000 });
    assert_eq!(
        v6.meta.csum,
        CsumStatus::Partial {
            csum_start: 54,
            csum_offset: 16
        },
        "the receiving TAP gets NEEDS_CSUM"
    );
    assert_eq!(v6.len(), 14 + 40 + 20 + 3000);
    assert_eq!(
        u16::from_be_bytes([v6.data()[18], v6.data()[19]]),
        20 + 3000,
        "IPv6 payload length"
    );
    let v4 = got
        .iter()
        .find(|p| p.data()[12..14] == [0x08, 0x00])
        .expect("the IPv4 super-frame");
    assert_eq!(v4.meta.gso, Gso::TcpV4 { size: 1000 });
    assert_eq!(v4.len(), 14 + 20 + 20 + 3000);
    for p in [v6, v4] {
        assert_eq!(
            tcp_segments(std::slice::from_ref(p), &mut pool),
            (vec![1_000_000, 1_001_000, 1_002_000], 3000)
        );
    }
}

#[test]
fn outer_source_port_follows_the_inner_flow() {
    let port = free_port();
    let sink = UdpSocket::bind((lo(2), port)).unwrap();
    sink.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let mut a = GenevePort::open(
        cfg("a", "127.0.0.1", Remote::Ip(lo(2)), Key::Vni(5000), port),
        new_tlv_map(),
    )
    .unwrap();
    let mut pool = PacketPool::new(2048);
    // 32 flows (inner UDP source ports), each sent twice.
    for _ in 0..2 {
        let mut out = Batch::new();
        for f in 0..32u16 {
            out.push(udp_frame(&mut pool, 3000 + f, &f.to_be_bytes()))
                .unwrap();
        }
        a.send_batch(&mut out, &mut pool).unwrap();
    }
    let mut by_flow: std::collections::BTreeMap<u16, Vec<u16>> = Default::default();
    let mut buf = [0u8; 2048];
    for _ in 0..64 {
        let (n, from) = sink.recv_from(&mut buf).expect("datagram");
        // The bare Geneve header, VNI 5000, then the inner frame.
        assert_eq!(&buf[..8], &[0, 0, 0x65, 0x58, 0, 0x13, 0x88, 0]);
        let inner_sport = u16::from_be_bytes([buf[8 + 34], buf[8 + 35]]);
        assert!(n > 8 + 42);
        by_flow.entry(inner_sport).or_default().push(from.port());
    }
    assert_eq!(by_flow.len(), 32);
    let mut distinct = std::collections::BTreeSet::new();
    for (f, ports) in &by_flow {
        assert_eq!(ports.len(), 2);
        assert_eq!(ports[0], ports[1], "flow {f} keeps its source port");
        assert!((SRC_PORT_MIN..=SRC_PORT_MAX).contains(&ports[0]));
        distinct.insert(ports[0]);
    }
    assert!(
        distinct.len() >= 4,
        "32 flows spread over the source ports: {distinct:?} (ports {:?})",
        a.src_ports()
    );
}

#[test]
fn second_port_on_the_same_address_is_a_clear_error() {
    let port = free_port();
    let _a = GenevePort::open(
        cfg("a", "127.0.0.1", Remote::Ip(lo(2)), Key::Vni(1), port),
        new_tlv_map(),
    )
    .unwrap();
    let e = GenevePort::open(
        cfg("b", "127.0.0.1", Remote::Ip(lo(3)), Key::Vni(2), port),
        new_tlv_map(),
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("already in use"), "{e}");
}

#[test]
fn a_port_taken_over_from_handed_over_sockets_still_carries_super_frames() {
    let (a, mut b, port) = pair();
    let fds: Vec<std::os::fd::OwnedFd> = a
        .handover_fds()
        .into_iter()
        .map(|fd| fd.try_clone_to_owned().unwrap())
        .collect();
    assert_eq!(
        fds.len(),
        1 + a.src_ports().len(),
        "the receive socket, then the lanes"
    );
    let map = tlv("{class=0xffff,type=0,len=4}->tun_metadata0");
    let mut a2 = GenevePort::adopt(
        cfg("a", "127.0.0.1", Remote::Ip(lo(2)), Key::Vni(5000), port),
        map,
        fds,
    )
    .unwrap();
    assert_eq!(a2.src_ports(), a.src_ports(), "the same outer source ports");
    assert_eq!(
        a2.gso_lanes(),
        a2.src_ports().len(),
        "every lane sends UDP GSO (companions bound next to the handed-over lanes)"
    );
    // The old process goes away; the new one sends.
    drop(a);
    let mut pool = PacketPool::new(2048);
    let mut out = Batch::new();
    out.push(tcp_super_packet(false)).unwrap();
    a2.send_batch(&mut out, &mut pool).unwrap();
    let got = recv_n(&mut b, &mut pool, 1);
    assert_eq!(got.len(), 1, "drops {:?} / {:?}", a2.drops(), b.drops());
    assert_eq!(got[0].meta.gso, Gso::TcpV4 { size: 1000 });
    assert_eq!(
        tcp_segments(&got, &mut pool),
        (vec![1_000_000, 1_001_000, 1_002_000], 3000)
    );
}

#[test]
fn a_gro_datagram_larger_than_a_batch_is_handed_on_whole_across_receives() {
    // 40 equal Geneve datagrams in one UDP GSO send: b's socket (UDP_GRO)
    // may take them as one datagram of 40 segments, more than a batch of
    // 32 holds; every one arrives, in order, none dropped.
    let (_a, mut b, port) = pair();
    let mut tx = vswitch::port::udp::Socket::bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let mut pool = PacketPool::new(2048);
    let mut buf = Vec::new();
    let mut seg = 0;
    for i in 0..40u16 {
        let f = udp_frame(&mut pool, 1000 + i, b"same size");
        buf.extend_from_slice(&[0, 0, 0x65, 0x58, 0, 0x13, 0x88, 0]);
        buf.extend_from_slice(f.data());
        seg = 8 + f.len();
    }
    let to = SocketAddr::from((lo(2), port));
    assert!(matches!(
        tx.send_gso(&buf, seg as u16, to),
        vswitch::port::udp::GsoSend::Sent { datagrams: 40, .. }
    ));
    let got = recv_n(&mut b, &mut pool, 40);
    let sports: Vec<u16> = got
        .iter()
        .map(|p| u16::from_be_bytes([p.data()[34], p.data()[35]]))
        .collect();
    assert_eq!(
        sports,
        (1000..1040).collect::<Vec<u16>>(),
        "drops {:?}",
        b.drops()
    );
    assert_eq!(b.stats().rx_packets, 40);
}
