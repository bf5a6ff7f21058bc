//! UDP (first / single / multiple), ICMP echo, and ICMP / ICMPv6 errors
//! related to tracked TCP and UDP connections.

mod conntrack_common;
use conntrack_common::*;

use etherparse::icmpv4::DestUnreachableHeader;
use etherparse::icmpv6::DestUnreachableCode;
use etherparse::{Icmpv4Type, Icmpv6Type};
use vswitch::conntrack::CtInvalidReason;

fn reason(v: vswitch::conntrack::CtVerdict) -> Option<CtInvalidReason> {
    v.invalid.map(|d| d.reason)
}

#[test]
fn udp_first_single_multiple() {
    let h = H::new();
    let q = udp4(CLIENT, SERVER, 5353, 53, b"query");
    let r = udp4(SERVER, CLIENT, 53, 5353, b"answer");
    // Unreplied: +new (as in OVS and Linux), timeout udp_first.
    assert_eq!(h.firewall(&q, 0, secs(0)), (true, TRK | NEW));
    let i = h.only(secs(0));
    assert_eq!(
        (i.state, i.timeout_kind, i.timeout),
        (Some("FIRST"), "udp_first", 60)
    );
    // More from the same side: still +new, udp_single.
    assert_eq!(h.firewall(&q, 0, secs(10)), (true, TRK | NEW));
    let i = h.only(secs(10));
    assert_eq!(
        (i.state, i.timeout_kind, i.timeout),
        (Some("MULTIPLE"), "udp_single", 60)
    );
    // A reply: +est+rpl, udp_multiple (30 s).
    assert_eq!(h.firewall(&r, 0, secs(20)), (true, TRK | EST | RPL));
    let i = h.only(secs(20));
    assert_eq!(
        (i.state, i.timeout_kind, i.timeout),
        (Some("BIDIR"), "udp_multiple", 30)
    );
    assert_eq!(h.firewall(&q, 0, secs(21)), (true, TRK | EST));
    assert_eq!(
        i.format_ovs(),
        "udp,orig=(src=10.0.0.1,dst=10.0.0.2,sport=5353,dport=53),\
         reply=(src=10.0.0.2,dst=10.0.0.1,sport=53,dport=5353),zone=0,mark=0"
    );
    // Expiry after 30 s idle, not before.
    assert_eq!(h.ct.sweep(h.at(50)), 0);
    assert_eq!(h.ct.sweep(h.at(51)), 1);
    assert!(h.ct.is_empty());
}

#[test]
fn udp_first_expires_after_60s() {
    let h = H::new();
    let q = udp4(CLIENT, SERVER, 5353, 53, b"query");
    h.firewall(&q, 0, secs(0));
    assert_eq!(h.ct.sweep(h.at(59)), 0);
    assert_eq!(h.dump(secs(59)).len(), 1);
    assert_eq!(h.dump(secs(60)).len(), 0, "expired entries are not shown");
    assert_eq!(h.ct.sweep(h.at(60)), 1);
}

#[test]
fn udp_without_commit_is_not_remembered() {
    let h = H::new();
    let q = udp4(CLIENT, SERVER, 5353, 53, b"query");
    assert_eq!(h.ct(&q, 0, false, secs(0)).state, TRK | NEW);
    assert!(h.ct.is_empty());
    let r = udp4(SERVER, CLIENT, 53, 5353, b"answer");
    assert_eq!(h.ct(&r, 0, false, secs(0)).state, TRK | NEW);
}

#[test]
fn icmp_echo_request_reply() {
    let h = H::new();
    let req = echo4(CLIENT, SERVER, 0x1234, true);
    let rep = echo4(SERVER, CLIENT, 0x1234, false);
    // A reply without a request cannot start anything.
    assert_eq!(
        reason(h.ct(&rep, 0, true, secs(0))),
        Some(CtInvalidReason::InvalidNew)
    );
    assert_eq!(h.firewall(&req, 0, secs(0)), (true, TRK | NEW));
    let i = h.only(secs(0));
    assert_eq!(
        i.format_ovs(),
        "icmp,orig=(src=10.0.0.1,dst=10.0.0.2,id=4660,type=8,code=0),\
         reply=(src=10.0.0.2,dst=10.0.0.1,id=4660,type=0,code=0),zone=0,mark=0"
    );
    assert_eq!((i.timeout_kind, i.timeout), ("icmp_first", 60));
    assert_eq!(h.firewall(&rep, 0, secs(1)), (true, TRK | EST | RPL));
    let i = h.only(secs(1));
    assert_eq!((i.timeout_kind, i.timeout), ("icmp_reply", 30));
    // Another id is another connection.
    let other = echo4(SERVER, CLIENT, 0x9999, false);
    assert_eq!(
        reason(h.ct(&other, 0, false, secs(1))),
        Some(CtInvalidReason::InvalidNew)
    );
    // An ICMP type conntrack does not track.
    let mut ts = echo4(CLIENT, SERVER, 1, true);
    ts[34] = 9; // router advertisement
    ts[36] = 0;
    ts[37] = 0;
    let c = vswitch::wire::checksum::checksum(&ts[34..]);
    ts[36..38].copy_from_slice(&c.to_be_bytes());
    assert_eq!(
        reason(h.ct(&ts, 0, true, secs(1))),
        Some(CtInvalidReason::UnsupportedIcmp)
    );
}

#[test]
fn icmpv6_echo() {
    let h = H::new();
    let req = echo6(CLIENT6, SERVER6, 7, true);
    let rep = echo6(SERVER6, CLIENT6, 7, false);
    assert_eq!(h.firewall(&req, 0, secs(0)), (true, TRK | NEW));
    assert_eq!(h.firewall(&rep, 0, secs(0)), (true, TRK | EST | RPL));
    assert!(h.only(secs(0)).format_ovs().starts_with(
        "icmpv6,orig=(src=fd00::1,dst=fd00::2,id=7,type=128,code=0),\
         reply=(src=fd00::2,dst=fd00::1,id=7,type=129,code=0)"
    ));
}

#[test]
fn icmp_frag_needed_for_tcp_is_related() {
    let h = H::new();
    handshake(&h, 0);
    // The server's 1400-byte segment does not fit a hop: the router tells
    // the server (the packet's sender), quoting it.
    let big = tcp4(
        SERVER,
        CLIENT,
        Seg {
            payload: &[0u8; 1400],
            ..Seg::new(80, 40000, 5001, psh_ack(1001))
        },
    );
    let err = icmp4_error(
        ROUTER,
        SERVER,
        Icmpv4Type::DestinationUnreachable(DestUnreachableHeader::FragmentationNeeded {
            next_hop_mtu: 1280,
        }),
        &quote(&big, 8, false),
    );
    // The error flows towards the responder: the originator's direction.
    assert_eq!(h.firewall(&err, 0, secs(1)), (true, TRK | REL));
    // Towards the client, about the client's packet: reply direction.
    let small = tcp4(CLIENT, SERVER, Seg::new(40000, 80, 1001, ack(5001)));
    let ttl = icmp4_error(
        ROUTER,
        CLIENT,
        Icmpv4Type::TimeExceeded(etherparse::icmpv4::TimeExceededCode::TtlExceededInTransit),
        &quote(&small, 20, false),
    );
    assert_eq!(h.firewall(&ttl, 0, secs(1)), (true, TRK | REL | RPL));
    // A related packet does not touch the connection's state.
    assert_eq!(h.only(secs(1)).tcp.map(|t| t.reply.seqlo), Some(5001));
    // About a connection we do not track: +inv.
    let stray = tcp4(CLIENT, SERVER, Seg::new(40001, 80, 1, ack(1)));
    let e = icmp4_error(
        ROUTER,
        CLIENT,
        Icmpv4Type::DestinationUnreachable(DestUnreachableHeader::Host),
        &quote(&stray, 8, false),
    );
    let v = h.ct(&e, 0, true, secs(1));
    assert_eq!(v.state, TRK | INV);
    assert_eq!(reason(v), Some(CtInvalidReason::RelatedNoConn));
    // Quoting a packet that the error's destination did not send.
    let e = icmp4_error(
        ROUTER,
        SERVER,
        Icmpv4Type::DestinationUnreachable(DestUnreachableHeader::Host),
        &quote(&small, 8, false),
    );
    assert_eq!(
        reason(h.ct(&e, 0, true, secs(1))),
        Some(CtInvalidReason::Malformed)
    );
    // Truncated quote (fewer than 8 L4 bytes).
    let e = icmp4_error(
        ROUTER,
        CLIENT,
        Icmpv4Type::DestinationUnreachable(DestUnreachableHeader::Host),
        &quote(&small, 4, false),
    );
    assert_eq!(
        reason(h.ct(&e, 0, true, secs(1))),
        Some(CtInvalidReason::Malformed)
    );
}

#[test]
fn icmp_port_unreachable_for_udp_is_related() {
    let h = H::new();
    let q = udp4(CLIENT, SERVER, 5353, 53, b"query");
    h.firewall(&q, 0, secs(0));
    let err = icmp4_error(
        SERVER,
        CLIENT,
        Icmpv4Type::DestinationUnreachable(DestUnreachableHeader::Port),
        &quote(&q, 8, false),
    );
    assert_eq!(h.firewall(&err, 0, secs(0)), (true, TRK | REL | RPL));
    // The error did not make the UDP flow bidirectional.
    assert_eq!(h.only(secs(0)).state, Some("FIRST"));
}

#[test]
fn icmpv6_packet_too_big_and_unreachable_are_related() {
    let h = H::new();
    let s = tcp6(CLIENT6, SERVER6, Seg::new(40000, 443, 1000, syn()));
    h.firewall(&s, 0, secs(0));
    let sa = tcp6(SERVER6, CLIENT6, Seg::new(443, 40000, 5000, syn_ack(1001)));
    h.firewall(&sa, 0, secs(0));
    let big = tcp6(
        CLIENT6,
        SERVER6,
        Seg {
            payload: &[0u8; 1400],
            ..Seg::new(40000, 443, 1001, psh_ack(5001))
        },
    );
    let ptb = icmp6_error(
        ROUTER6,
        CLIENT6,
        Icmpv6Type::PacketTooBig { mtu: 1280 },
        &quote(&big, 1232 - 40, true),
    );
    assert_eq!(h.firewall(&ptb, 0, secs(1)), (true, TRK | REL | RPL));

    let q = udp6(CLIENT6, SERVER6, 5000, 53, b"q");
    h.firewall(&q, 0, secs(1));
    let unreach = icmp6_error(
        SERVER6,
        CLIENT6,
        Icmpv6Type::DestinationUnreachable(DestUnreachableCode::Port),
        &quote(&q, 8, true),
    );
    assert_eq!(h.firewall(&unreach, 0, secs(1)), (true, TRK | REL | RPL));
    let stray = udp6(CLIENT6, SERVER6, 5001, 53, b"q");
    let e = icmp6_error(
        SERVER6,
        CLIENT6,
        Icmpv6Type::DestinationUnreachable(DestUnreachableCode::Port),
        &quote(&stray, 8, true),
    );
    assert_eq!(
        reason(h.ct(&e, 0, false, secs(1))),
        Some(CtInvalidReason::RelatedNoConn)
    );
    // Neighbour discovery is not tracked (as in OVS).
    let mut ns = echo6(CLIENT6, SERVER6, 1, true);
    ns[54] = 135;
    assert_eq!(
        reason(h.ct(&ns, 0, false, secs(1))),
        Some(CtInvalidReason::BadL4Checksum),
        "checksum is checked before the type"
    );
    h.ct.set_checksum_policy(vswitch::conntrack::ChecksumPolicy::Skip);
    assert_eq!(
        reason(h.ct(&ns, 0, false, secs(1))),
        Some(CtInvalidReason::UnsupportedIcmp)
    );
}

#[test]
fn fragments_and_non_ip_are_invalid_with_reasons() {
    let h = H::new();
    let mut f = udp4(CLIENT, SERVER, 5353, 53, b"query");
    f[20] = 0x20; // MF
    f[24] = 0;
    f[25] = 0;
    let c = vswitch::wire::checksum::checksum(&f[14..34]);
    f[24..26].copy_from_slice(&c.to_be_bytes());
    assert_eq!(
        reason(h.ct(&f, 0, true, secs(0))),
        Some(CtInvalidReason::Fragment)
    );
    let mut arp = vec![0u8; 60];
    arp[12] = 0x08;
    arp[13] = 0x06;
    let (mut key, mut meta) = (
        vswitch::flow::FlowKey::default(),
        vswitch::packet::PacketMeta::default(),
    );
    key.set_dl_type(0x0806);
    meta.l3_ofs = 14;
    let v =
        h.ct.process(&arp, &key, &mut meta, &Default::default(), h.at(0));
    assert_eq!(v.invalid.map(|d| d.reason), Some(CtInvalidReason::NotIp));
    assert_eq!(meta.ct_invalid, CtInvalidReason::NotIp.meta_code());
}
