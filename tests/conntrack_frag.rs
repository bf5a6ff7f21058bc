//! IP fragment reassembly ahead of the tracker (`conntrack::ipf`): the
//! reassembled datagram is judged, the original fragments leave with its
//! verdict; the budget, the timeout and every refusal (too small, too big,
//! overlap, duplicate, no room) with its counter; `ipf-set` / `ipf-status`.

mod conntrack_common;
use conntrack_common::*;

use std::time::Duration;

use vswitch::conntrack::{
    CtInvalidReason, CtParams, FragOutcome, FragVerdict, IpFamily, IpfError, IpfSettings,
    DEFAULT_MAX_FRAGS,
};
use vswitch::packet::PacketBuf;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// One `ct(zone=0[,commit])` on fragment `frame` at `base + t`.
fn frag(h: &H, frame: &[u8], commit: bool, t: Duration) -> FragOutcome {
    let (key, meta) = key_meta(frame);
    let mut p = PacketBuf::from_slice(frame);
    p.meta = meta;
    let params = CtParams {
        commit,
        ..CtParams::default()
    };
    h.ct.process_fragment(p, &key, &params, h.base + t)
}

/// [`frag`] for a frame too short for [`key_meta`].
fn frag_raw(h: &H, frame: &[u8], dl_type: u16) -> FragOutcome {
    let mut key = vswitch::flow::FlowKey::default();
    key.set_dl_type(dl_type);
    let mut p = PacketBuf::from_slice(frame);
    p.meta.l3_ofs = 14;
    h.ct.process_fragment(p, &key, &CtParams::default(), h.base)
}

fn held(o: FragOutcome) {
    assert!(o.dropped.is_empty(), "dropped {:?}", o.dropped.len());
    assert!(matches!(o.verdict, FragVerdict::Held), "{:?}", o.verdict);
}

fn complete(o: FragOutcome) -> Vec<PacketBuf> {
    match o.verdict {
        FragVerdict::Complete(v) => v,
        v => panic!("not complete: {v:?}"),
    }
}

fn refused(o: FragOutcome) -> (CtInvalidReason, u8) {
    match o.verdict {
        FragVerdict::Refused(p) => (
            CtInvalidReason::from_meta_code(p.meta.ct_invalid).expect("a reason"),
            p.meta.ct_state.0,
        ),
        v => panic!("not refused: {v:?}"),
    }
}

/// A 4000-byte UDP datagram from the client (4028 bytes of IP).
fn big_udp4() -> Vec<u8> {
    udp4(CLIENT, SERVER, 5353, 53, &[0x5a; 4000])
}

#[test]
fn fragmented_udp_is_judged_whole_both_directions() {
    let h = H::new();
    let frags = fragment4(&big_udp4(), 1480);
    assert_eq!(frags.len(), 3);
    held(frag(&h, &frags[0], true, ms(0)));
    held(frag(&h, &frags[1], true, ms(1)));
    let out = complete(frag(&h, &frags[2], true, ms(2)));
    assert_eq!(out.len(), 3);
    for (p, f) in out.iter().zip(&frags) {
        assert_eq!(p.data(), &f[..], "fragments leave unchanged, in order");
        assert_eq!(p.meta.ct_state.0, TRK | NEW);
    }
    assert_eq!(h.ct.len(), 1, "the reassembled datagram was committed");
    let c = h.only(ms(2));
    assert_eq!((c.orig.sport, c.orig.dport), (Some(5353), Some(53)));
    // The reply, fragmented and out of order.
    let reply = udp4(SERVER, CLIENT, 53, 5353, &[0xa5; 4000]);
    let rf = fragment4(&reply, 1480);
    held(frag(&h, &rf[2], false, ms(3)));
    held(frag(&h, &rf[0], false, ms(3)));
    let out = complete(frag(&h, &rf[1], false, ms(3)));
    assert_eq!(out.len(), 3);
    assert_eq!(out[0].data(), &rf[0][..], "released in datagram order");
    assert!(out.iter().all(|p| p.meta.ct_state.0 == TRK | EST | RPL));
    let s = h.ct.ipf_status();
    assert_eq!((s.v4.accepted, s.v4.reassembled, s.v4.released), (6, 2, 6));
    assert_eq!(s.frags_held, 0);
    assert_eq!(h.total_invalid(), 0);
}

#[test]
fn fragmented_icmpv6_echo_is_judged_whole() {
    let h = H::new();
    let mut v = Vec::new();
    etherparse::PacketBuilder::ethernet2(MAC_A, MAC_B)
        .ipv6(CLIENT6, SERVER6, 64)
        .icmpv6_echo_request(7, 1)
        .write(&mut v, &[0x33; 4000])
        .expect("write");
    let frags = fragment6(&v, 1448, 0xdead_beef);
    assert_eq!(frags.len(), 3);
    held(frag(&h, &frags[1], true, ms(0)));
    held(frag(&h, &frags[0], true, ms(0)));
    let out = complete(frag(&h, &frags[2], true, ms(0)));
    assert!(out.iter().all(|p| p.meta.ct_state.0 == TRK | NEW));
    assert_eq!(h.only(ms(0)).proto_name, "icmpv6");
    assert_eq!(h.ct.ipf_status().v6.reassembled, 1);
    assert_eq!(h.total_invalid(), 0);
}

#[test]
fn overlap_discards_the_datagram_rfc5722() {
    let h = H::new();
    let mut v = Vec::new();
    etherparse::PacketBuilder::ethernet2(MAC_A, MAC_B)
        .ipv6(CLIENT6, SERVER6, 64)
        .udp(5000, 53)
        .write(&mut v, &[1; 3000])
        .expect("write");
    let id = 42;
    held(frag(&h, &fragment6_at(&v, 0, 1448, true, id), true, ms(0)));
    // Overlaps the first fragment's tail.
    let o = frag(&h, &fragment6_at(&v, 1440, 1448, true, id), true, ms(0));
    assert_eq!(o.dropped.len(), 1, "the held fragment is discarded too");
    assert_eq!(o.dropped[0].1, CtInvalidReason::FragOverlap);
    assert_eq!(refused(o), (CtInvalidReason::FragOverlap, TRK | INV));
    // Later fragments of that datagram are refused as well.
    let last = frag(&h, &fragment6_at(&v, 2896, 112, false, id), true, ms(0));
    assert_eq!(refused(last).0, CtInvalidReason::FragOverlap);
    let s = h.ct.ipf_status();
    assert_eq!((s.v6.overlap, s.frags_held), (3, 0));
    assert_eq!(h.ct.invalid_count(CtInvalidReason::FragOverlap), 3);
    assert!(h.ct.is_empty());
}

#[test]
fn duplicate_is_refused_alone() {
    let h = H::new();
    let frags = fragment4(&big_udp4(), 1480);
    held(frag(&h, &frags[0], true, ms(0)));
    assert_eq!(
        refused(frag(&h, &frags[0], true, ms(0))).0,
        CtInvalidReason::FragOverlap
    );
    held(frag(&h, &frags[1], true, ms(0)));
    assert_eq!(complete(frag(&h, &frags[2], true, ms(0))).len(), 3);
}

#[test]
fn tiny_and_oversized_fragments_are_refused() {
    let h = H::new();
    let d = big_udp4();
    // 600 bytes of IP, more to come: below the default 1200.
    let tiny = fragment4_at(&d, 0, 576, true);
    assert_eq!(
        refused(frag(&h, &tiny, true, ms(0))),
        (CtInvalidReason::FragTooSmall, TRK | INV)
    );
    // The last fragment may be small.
    held(frag(&h, &fragment4_at(&d, 3000, 1008, false), true, ms(0)));
    // Data ending past 65,535 bytes of datagram ("ping of death").
    let huge = fragment4_at(&d, 65_528, 100, false);
    assert_eq!(
        refused(frag(&h, &huge, true, ms(0))).0,
        CtInvalidReason::FragTooBig
    );
    // A smaller minimum admits the tiny one.
    h.ct.ipf_set(&IpfSettings {
        min_frag_size: Some(400),
        ..IpfSettings::default()
    })
    .expect("400 is allowed");
    held(frag(&h, &tiny, true, ms(0)));
    let s = h.ct.ipf_status();
    assert_eq!((s.v4.too_small, s.v4.too_big), (1, 1));
    assert_eq!((s.min_frag_size_v4, s.min_frag_size_v6), (400, 400));
    assert_eq!(h.ct.invalid_count(CtInvalidReason::FragTooSmall), 1);
    assert_eq!(h.ct.invalid_count(CtInvalidReason::FragTooBig), 1);
}

#[test]
fn incomplete_datagram_expires_after_15s() {
    let h = H::new();
    let frags = fragment4(&big_udp4(), 1480);
    held(frag(&h, &frags[0], true, ms(1000)));
    held(frag(&h, &frags[1], true, ms(1000)));
    assert!(h.ct.ipf_expire(h.base + ms(15_999)).is_empty());
    assert_eq!(h.ct.ipf_status().frags_held, 2);
    let gone = h.ct.ipf_expire(h.base + ms(16_000));
    assert_eq!(gone.len(), 2);
    assert!(gone.iter().all(|(_, r)| *r == CtInvalidReason::FragTimeout));
    let s = h.ct.ipf_status();
    assert_eq!((s.frags_held, s.datagrams_pending, s.v4.expired), (0, 0, 2));
    assert_eq!(h.ct.invalid_count(CtInvalidReason::FragTimeout), 2);
    // The late last fragment starts a datagram of its own.
    held(frag(&h, &frags[2], true, ms(16_001)));
}

#[test]
fn flood_of_incomplete_datagrams_stays_within_the_budget() {
    let h = H::new();
    let d = big_udp4();
    for id in 0..10_000u16 {
        let mut f = fragment4_at(&d, 0, 1480, true);
        f[18..20].copy_from_slice(&id.to_be_bytes());
        f[24] = 0;
        f[25] = 0;
        let c = vswitch::wire::checksum::checksum(&f[14..34]);
        f[24..26].copy_from_slice(&c.to_be_bytes());
        let o = frag(&h, &f, true, ms(0));
        if u32::from(id) < DEFAULT_MAX_FRAGS {
            held(o);
        } else {
            assert_eq!(refused(o).0, CtInvalidReason::FragNoRoom);
        }
    }
    let s = h.ct.ipf_status();
    assert_eq!(s.frags_held, DEFAULT_MAX_FRAGS);
    assert_eq!(s.datagrams_pending, DEFAULT_MAX_FRAGS);
    assert_eq!(s.v4.no_room, 9_000);
    assert_eq!(h.ct.stats().ipf, s, "ct-stats carries the same counters");
    // Unfragmented traffic is untouched.
    let syn = tcp4(CLIENT, SERVER, Seg::new(40000, 80, 1000, syn()));
    assert_eq!(h.firewall(&syn, 0, ms(1)), (true, TRK | NEW));
    // Once the flood expires, fragments are reassembled again.
    let frags = fragment4(&big_udp4(), 1480);
    let o = frag(&h, &frags[0], true, ms(15_000));
    assert_eq!(o.dropped.len(), 1000);
    held(FragOutcome {
        dropped: Vec::new(),
        ..o
    });
    held(frag(&h, &frags[1], true, ms(15_000)));
    assert_eq!(complete(frag(&h, &frags[2], true, ms(15_000))).len(), 3);
}

#[test]
fn settings_disable_and_bounds() {
    let h = H::new();
    let s = h.ct.ipf_status();
    assert!(s.enabled_v4 && s.enabled_v6);
    assert_eq!(
        (s.max_frags, s.min_frag_size_v4, s.min_frag_size_v6),
        (1000, 1200, 1280)
    );
    assert_eq!(
        h.ct.ipf_set(&IpfSettings {
            min_frag_size: Some(399),
            enabled: Some(false),
            ..IpfSettings::default()
        }),
        Err(IpfError::MinFragSizeTooSmall {
            got: 399,
            floor: 400
        })
    );
    assert!(
        h.ct.ipf_status().enabled_v4,
        "a refused set changes nothing"
    );
    assert_eq!(
        h.ct.ipf_set(&IpfSettings {
            max_frags: Some(5001),
            ..IpfSettings::default()
        }),
        Err(IpfError::MaxFragsTooLarge {
            got: 5001,
            ceiling: 5000
        })
    );
    h.ct.ipf_set(&IpfSettings {
        family: Some(IpFamily::V4),
        enabled: Some(false),
        max_frags: Some(10),
        ..IpfSettings::default()
    })
    .expect("valid");
    let s = h.ct.ipf_status();
    assert!(!s.enabled_v4 && s.enabled_v6);
    assert_eq!(s.max_frags, 10);
    // Off: the fragment is not held, and conntrack alone calls it invalid.
    let frags = fragment4(&big_udp4(), 1480);
    let o = frag(&h, &frags[0], true, ms(0));
    let FragVerdict::NotFragment(p) = o.verdict else {
        panic!("reassembly is off")
    };
    assert_eq!(p.data(), &frags[0][..]);
    let v = h.ct(&frags[0], 0, true, ms(0));
    assert_eq!(v.invalid.map(|d| d.reason), Some(CtInvalidReason::Fragment));
}

#[test]
fn malformed_fragments_are_refused_not_panics() {
    let h = H::new();
    let d = big_udp4();
    // Not the last, and not a multiple of 8 bytes.
    let odd = fragment4_at(&d, 0, 1475, true);
    assert_eq!(
        refused(frag(&h, &odd, true, ms(0))).0,
        CtInvalidReason::Malformed
    );
    // Truncated headers at every length.
    let f = fragment4_at(&d, 0, 1480, true);
    for n in 14..40 {
        let o = frag_raw(&h, &f[..n], 0x0800);
        assert!(!matches!(o.verdict, FragVerdict::Complete(_)));
    }
    let mut v = Vec::new();
    etherparse::PacketBuilder::ethernet2(MAC_A, MAC_B)
        .ipv6(CLIENT6, SERVER6, 64)
        .udp(5000, 53)
        .write(&mut v, &[1; 3000])
        .expect("write");
    let f6 = fragment6_at(&v, 0, 1448, true, 9);
    for n in 14..70 {
        let o = frag_raw(&h, &f6[..n], 0x86dd);
        assert!(!matches!(o.verdict, FragVerdict::Complete(_)));
    }
}
