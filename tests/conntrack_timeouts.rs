//! Timeouts (simulated time), per-zone overrides, limits, marks, zones,
//! flush, stats, and the sweep's exactness.

mod conntrack_common;
use conntrack_common::*;

use std::time::Duration;
use vswitch::conntrack::{CtConfig, CtInvalidReason, CtParams, TimeoutKind};

fn udp_from(port: u16) -> Vec<u8> {
    udp4(CLIENT, SERVER, port, 53, b"q")
}

#[test]
fn idle_established_expires_exactly_at_its_timeout() {
    let h = H::new();
    handshake(&h, 0);
    let day = 24 * 3600;
    assert_eq!(h.only(secs(0)).timeout, day as u32);
    // Activity at t=100 re-arms the 24 h timer.
    let a = tcp4(CLIENT, SERVER, Seg::new(40000, 80, 1001, ack(5001)));
    assert_eq!(h.firewall(&a, 0, secs(100)), (true, TRK | EST));
    // One second before: still there, and still established for packets.
    let last = Duration::from_secs(100 + day);
    assert_eq!(h.ct.sweep(h.base + last - Duration::from_secs(1)), 0);
    assert_eq!(h.ct.len(), 1);
    let t = last - Duration::from_millis(1);
    let (key, mut meta) = key_meta(&a);
    let v =
        h.ct.process(&a, &key, &mut meta, &CtParams::default(), h.base + t);
    assert_eq!(v.state, TRK | EST);
    // That packet re-armed it again; idle from there, it goes exactly at
    // t + 24 h.
    assert_eq!(
        h.ct.sweep(h.base + t + Duration::from_secs(day) - Duration::from_millis(1)),
        0
    );
    assert_eq!(h.ct.sweep(h.base + t + Duration::from_secs(day)), 1);
    assert!(h.ct.is_empty());
    assert_eq!(h.ct.stats().expired, 1);
}

#[test]
fn lookup_treats_expired_as_gone_without_sweep() {
    let h = H::new();
    handshake(&h, 0);
    let a = tcp4(CLIENT, SERVER, Seg::new(40000, 80, 1001, ack(5001)));
    // After 24 h idle, the ACK is a new (mid-stream) connection.
    assert_eq!(h.ct(&a, 0, false, secs(24 * 3600)).state, TRK | NEW);
}

#[test]
fn time_wait_expires_after_45s() {
    let h = H::new();
    handshake(&h, 0);
    for (f, t) in [
        (
            tcp4(CLIENT, SERVER, Seg::new(40000, 80, 1001, fin_ack(5001))),
            10,
        ),
        (
            tcp4(SERVER, CLIENT, Seg::new(80, 40000, 5001, fin_ack(1002))),
            10,
        ),
        (
            tcp4(CLIENT, SERVER, Seg::new(40000, 80, 1002, ack(5002))),
            10,
        ),
    ] {
        assert!(h.firewall(&f, 0, secs(t)).0);
    }
    let i = h.only(secs(10));
    assert_eq!(i.tcp.map(|t| t.state.name()), Some("TIME_WAIT"));
    assert_eq!(h.ct.sweep(h.at(54)), 0);
    assert_eq!(h.ct.sweep(h.at(55)), 1);
}

#[test]
fn per_zone_timeout_override() {
    let h = H::new();
    h.ct.set_timeout(Some(5), TimeoutKind::UdpFirst, 5);
    h.ct.set_timeout(None, TimeoutKind::UdpFirst, 90);
    assert_eq!(h.ct.timeout(5, TimeoutKind::UdpFirst), secs(5));
    assert_eq!(h.ct.timeout(6, TimeoutKind::UdpFirst), secs(90));
    assert_eq!(
        h.ct.timeout(5, TimeoutKind::UdpMultiple),
        secs(30),
        "others inherit"
    );
    let q = udp_from(1000);
    h.firewall(&q, 5, secs(0));
    h.firewall(&q, 6, secs(0));
    h.firewall(&q, 0, secs(0));
    assert_eq!(h.ct.len(), 3, "same tuple, three zones, three entries");
    assert_eq!(h.ct.sweep(h.at(4)), 0);
    assert_eq!(h.ct.sweep(h.at(5)), 1);
    assert_eq!(h.ct.dump(Some(5), h.at(5)).len(), 0);
    assert_eq!(h.ct.sweep(h.at(89)), 0);
    assert_eq!(h.ct.sweep(h.at(90)), 2);
    // Dropping the zone's own value: back to the default.
    h.ct.set_timeout(Some(5), TimeoutKind::UdpFirst, 0);
    assert_eq!(h.ct.timeout(5, TimeoutKind::UdpFirst), secs(90));
}

#[test]
fn global_and_zone_limits() {
    let h = H::with(CtConfig {
        max_conns: 10,
        ..CtConfig::default()
    });
    h.ct.set_limit(Some(2), Some(3));
    for p in 0..3 {
        assert_eq!(
            h.firewall(&udp_from(1000 + p), 2, secs(0)),
            (true, TRK | NEW)
        );
    }
    let (fwd, st) = h.firewall(&udp_from(1003), 2, secs(0));
    assert!(!fwd);
    assert_eq!(st, TRK | INV);
    let v = h.ct(&udp_from(1003), 2, true, secs(0));
    let d = v.invalid.expect("limit");
    assert_eq!(d.reason, CtInvalidReason::LimitReached);
    assert!(d.detail.contains("zone"));
    // Without commit, nothing is admitted, so no limit applies.
    assert_eq!(h.ct(&udp_from(1003), 2, false, secs(0)).state, TRK | NEW);
    // Existing connections in the full zone still pass.
    assert!(h.firewall(&udp_from(1000), 2, secs(1)).0);
    // Default zone limit applies to zones without their own.
    h.ct.set_limit(None, Some(1));
    assert!(h.firewall(&udp_from(2000), 3, secs(0)).0);
    assert!(!h.firewall(&udp_from(2001), 3, secs(0)).0);
    assert_eq!(h.ct.zone_limit(2), Some(3));
    h.ct.set_limit(None, None);
    // Global limit: 10 in total.
    for p in 0..6 {
        assert!(h.firewall(&udp_from(3000 + p), 4, secs(0)).0, "{p}");
    }
    assert_eq!(h.ct.len(), 10);
    let v = h.ct(&udp_from(3006), 4, true, secs(0));
    assert_eq!(
        v.invalid.map(|d| d.detail),
        Some("global connection limit reached")
    );
    let s = h.ct.stats();
    assert_eq!(s.invalid["limit_reached"], 4);
    assert_eq!(s.limit_reached, 4);
    // Room again after expiry.
    assert_eq!(h.ct.sweep(h.at(61)), 10);
    assert!(h.firewall(&udp_from(3006), 4, secs(61)).0);
    // Removing the zone limit.
    h.ct.set_limit(Some(2), None);
    assert_eq!(h.ct.zone_limit(2), None);
}

#[test]
fn mark_zone_meta_and_commit_twice() {
    let h = H::new();
    let q = udp_from(1000);
    let (key, mut meta) = key_meta(&q);
    let p = CtParams {
        zone: 9,
        commit: true,
        force: false,
        set_mark: Some((0xab00, 0xff00)),
    };
    let v = h.ct.process(&q, &key, &mut meta, &p, h.at(0));
    assert_eq!((v.state, v.mark), (TRK | NEW, 0xab00));
    assert_eq!(
        (meta.ct_zone, meta.ct_mark, meta.ct_invalid),
        (9, 0xab00, 0)
    );
    // Same packet, same zone again (recirculated): no second state update.
    let p2 = CtParams {
        set_mark: Some((0x0012, 0x00ff)),
        ..p
    };
    let v = h.ct.process(&q, &key, &mut meta, &p2, h.at(0));
    assert_eq!((v.state, v.mark), (TRK | NEW, 0xab12));
    let i = h.only(secs(0));
    assert_eq!(
        i.state,
        Some("FIRST"),
        "not run through the state machine twice"
    );
    assert_eq!(i.mark, 0xab12);
    assert!(i.format_ovs().contains(",zone=9,mark=43794"));
    // A later packet sees the mark.
    let r = udp4(SERVER, CLIENT, 53, 1000, b"a");
    let v = h.ct(&r, 9, false, secs(1));
    assert_eq!((v.state, v.mark), (TRK | EST | RPL, 0xab12));
    // In another zone the connection does not exist.
    assert_eq!(h.ct(&r, 10, false, secs(1)).state, TRK | NEW);
}

#[test]
fn flush_and_stats() {
    let h = H::new();
    handshake(&h, 1);
    h.firewall(&udp_from(1), 1, secs(0));
    h.firewall(&udp_from(2), 2, secs(0));
    h.firewall(&echo4(CLIENT, SERVER, 1, true), 2, secs(0));
    let s = h.ct.stats();
    assert_eq!(s.entries, 4);
    assert_eq!(s.zones.len(), 2);
    assert_eq!((s.zones[0].zone, s.zones[0].tcp, s.zones[0].udp), (1, 1, 1));
    assert_eq!(
        (s.zones[1].zone, s.zones[1].udp, s.zones[1].icmp),
        (2, 1, 1)
    );
    assert_eq!(s.invalid.len(), CtInvalidReason::ALL.len());
    let json = serde_json::to_string(&s).expect("json");
    assert!(json.contains("\"bad_l4_checksum\":0"), "{json}");
    let dump = serde_json::to_string(&h.ct.dump(Some(1), h.at(0))).expect("json");
    assert!(dump.contains("\"state\":\"ESTABLISHED\""), "{dump}");
    assert_eq!(h.ct.flush(Some(2)), 2);
    assert_eq!(h.ct.len(), 2);
    assert_eq!(h.ct.flush(None), 2);
    assert!(h.ct.is_empty());
    assert!(h.ct.dump(None, h.at(0)).is_empty());
    // The flushed TCP connection's next ACK starts over (mid-stream).
    let a = tcp4(CLIENT, SERVER, Seg::new(40000, 80, 1001, ack(5001)));
    assert_eq!(h.ct(&a, 1, false, secs(1)).state, TRK | NEW);
}

#[test]
fn sweep_of_many_entries_over_time() {
    // 5000 UDP flows created one per 10 ms over 50 s; sweeping every
    // second removes each exactly when its 60 s are up.
    let h = H::new();
    for i in 0..5000u64 {
        let f = udp4(CLIENT, SERVER, 1000 + i as u16, 53, b"q");
        h.ct(&f, 0, true, Duration::from_millis(i * 10));
    }
    assert_eq!(h.ct.len(), 5000);
    let mut removed = 0;
    for s in 0..=120u64 {
        let n = h.ct.sweep(h.at(s));
        removed += n;
        // Flows created at or before (s - 60) s are gone; later ones stay.
        let expect_gone = if s < 60 {
            0
        } else {
            (((s - 60) * 100) + 1).min(5000) as usize
        };
        assert_eq!(removed, expect_gone, "t={s}");
    }
    assert!(h.ct.is_empty());
}
