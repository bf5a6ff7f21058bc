//! Fragments through the whole pipeline: `flows/stateful-firewall.flows`
//! on a two-port in-memory switch. A 4 KB UDP datagram and its reply, and
//! a 4000-byte ICMPv6 echo, cross in fragments: the datapath holds each
//! fragment at `ct(...)` until its datagram is complete, the tracker
//! judges the reassembled datagram, and the original fragments leave
//! unchanged with that verdict. An overlapping fragment is dropped under
//! its own reason.

mod conntrack_common;
mod ct_pipeline_support;
use conntrack_common::*;
use ct_pipeline_support::*;

use std::time::Duration;

use vswitch::conntrack::CtInvalidReason;

fn s(n: u64) -> Duration {
    Duration::from_secs(n)
}

#[test]
fn fragmented_udp_request_and_reply_cross_the_firewall() {
    let mut sw = Switch::new();
    let req = udp4(CLIENT, SERVER, 5353, 53, &[0x5a; 4000]);
    let frags = fragment4(&req, 1480);
    assert_eq!(frags.len(), 3);
    assert!(sw.send(VM1, &frags[0], s(0)).is_empty(), "held");
    assert!(sw.send(VM1, &frags[1], s(0)).is_empty(), "held");
    let out = sw.send(VM1, &frags[2], s(0));
    assert_eq!(out, frags, "all fragments leave, unchanged, in order");
    let c = sw.only(s(0));
    assert_eq!((c.proto_name.as_str(), c.orig.dport), ("udp", Some(53)));

    let reply = from_server(udp4(SERVER, CLIENT, 53, 5353, &[0xa5; 4000]));
    let rf = fragment4(&reply, 1480);
    assert!(sw.send(VM2, &rf[1], s(1)).is_empty());
    assert!(sw.send(VM2, &rf[2], s(1)).is_empty());
    let out = sw.send(VM2, &rf[0], s(1));
    assert_eq!(out, rf);
    assert_eq!(sw.only(s(1)).state, Some("BIDIR"));
    assert_eq!(sw.total_invalid(), 0);
    assert_eq!(sw.all_drops(), Vec::<(String, u64)>::new());
    let st = sw.ct.ipf_status();
    assert_eq!(st.frags_held, 0);
    // The request went through ct twice (ct(table=1), then ct(commit)),
    // the reply once (+est goes straight to normal).
    assert_eq!(st.v4.reassembled, 3);
}

#[test]
fn fragmented_ping6_crosses_the_firewall() {
    let mut sw = Switch::new();
    let mut v = Vec::new();
    etherparse::PacketBuilder::ethernet2(MAC_A, MAC_B)
        .ipv6(CLIENT6, SERVER6, 64)
        .icmpv6_echo_request(9, 1)
        .write(&mut v, &[0x33; 4000])
        .expect("write");
    let frags = fragment6(&v, 1448, 77);
    for f in &frags[..frags.len() - 1] {
        assert!(sw.send(VM1, f, s(0)).is_empty());
    }
    let out = sw.send(VM1, &frags[frags.len() - 1], s(0));
    assert_eq!(out, frags);
    let mut r = Vec::new();
    etherparse::PacketBuilder::ethernet2(MAC_A, MAC_B)
        .ipv6(SERVER6, CLIENT6, 64)
        .icmpv6_echo_reply(9, 1)
        .write(&mut r, &[0x33; 4000])
        .expect("write");
    let rf = fragment6(&from_server(r), 1448, 78);
    for f in &rf[..rf.len() - 1] {
        assert!(sw.send(VM2, f, s(0)).is_empty());
    }
    assert_eq!(sw.send(VM2, &rf[rf.len() - 1], s(0)), rf);
    assert_eq!(sw.total_invalid(), 0);
}

#[test]
fn overlapping_fragment_is_dropped_with_its_reason() {
    let mut sw = Switch::new();
    let req = udp4(CLIENT, SERVER, 5353, 53, &[0x5a; 4000]);
    assert!(sw
        .send(VM1, &fragment4_at(&req, 0, 1480, true), s(0))
        .is_empty());
    assert!(sw
        .send(VM1, &fragment4_at(&req, 1472, 1480, true), s(0))
        .is_empty());
    // The overlap discarded the held fragment, and was dropped by the
    // firewall's `+inv` rule.
    assert_eq!(sw.ct_drops(CtInvalidReason::FragOverlap), 2);
    assert_eq!(sw.ct.ipf_status().frags_held, 0);
    assert!(sw.conns(s(0)).is_empty());
}

#[test]
fn stale_fragments_expire_in_housekeeping() {
    let mut sw = Switch::new();
    let req = udp4(CLIENT, SERVER, 5353, 53, &[0x5a; 4000]);
    let frags = fragment4(&req, 1480);
    assert!(sw.send(VM1, &frags[0], s(0)).is_empty());
    assert_eq!(sw.ct.ipf_status().frags_held, 1);
    sw.dp.housekeeping(sw.at(s(16)));
    assert_eq!(sw.ct.ipf_status().frags_held, 0);
    assert_eq!(sw.ct_drops(CtInvalidReason::FragTimeout), 1);
}
