//! Fast-path tests through in-memory ports.

use super::*;
use crate::flow::{ofp_port, Action, Field, FlowSpec, Match};
use crate::ofproto::{FlowMod, FlowModCmd, PortInfo};
use crate::port::mem::{MemHandle, MemPort};

fn udp_frame(src_mac: u8, dst_mac: u8, sport: u16) -> Vec<u8> {
    let mut f = vec![
        0x02, 0, 0, 0, 0, dst_mac, 0x02, 0, 0, 0, 0, src_mac, 0x08, 0x00, // eth
        0x45, 0, 0, 28, 0, 0, 0x40, 0, 64, 17, 0, 0, 10, 0, 0, src_mac, 10, 0, 0,
        dst_mac, // ip
        0, 0, 0, 53, 0, 8, 0, 0, // udp (checksum 0 = none)
    ];
    f[34..36].copy_from_slice(&sport.to_be_bytes());
    let c = crate::wire::checksum::checksum(&f[14..34]);
    f[24..26].copy_from_slice(&c.to_be_bytes());
    f.resize(60, 0);
    f
}

struct Rig {
    dp: Datapath,
    h: Vec<MemHandle>,
    now: Instant,
}

fn rig(n: u32, flows: Vec<(u8, u16, Match, Vec<Action>)>) -> Rig {
    let now = Instant::now();
    let of = Arc::new(Ofproto::new("br0", now));
    let mut dp = Datapath::new(
        of.clone(),
        Arc::new(ConnTracker::default()),
        Arc::new(DropCounters::default()),
    );
    let mut h = Vec::new();
    for i in 1..=n {
        let (p, handle) = MemPort::new(&format!("p{i}"));
        of.add_port(PortInfo::new(i, &format!("p{i}"), "dummy"));
        dp.add_port(i, Box::new(p));
        h.push(handle);
    }
    let mods: Vec<FlowMod> = flows
        .into_iter()
        .map(|(table, priority, matches, actions)| FlowMod {
            cmd: FlowModCmd::Add,
            spec: FlowSpec {
                table,
                priority,
                matches,
                actions,
                ..FlowSpec::default()
            },
            table: Some(table),
        })
        .collect();
    of.flow_mods(&mods, now).unwrap();
    Rig { dp, h, now }
}

#[test]
fn normal_switching_end_to_end_with_caches() {
    let mut r = rig(
        3,
        vec![(
            0,
            0,
            Match::default(),
            vec![Action::Output(ofp_port::NORMAL)],
        )],
    );
    // 1 -> 2 (unknown: flood to 2 and 3).
    r.h[0].inject(&udp_frame(1, 2, 1000));
    r.dp.poll_once(r.now);
    assert_eq!(r.h[1].take_sent().len(), 1);
    assert_eq!(r.h[2].take_sent().len(), 1);
    // 2 -> 1 (learned: unicast).
    r.h[1].inject(&udp_frame(2, 1, 1000));
    r.dp.poll_once(r.now);
    assert_eq!(r.h[0].take_sent().len(), 1);
    assert!(r.h[2].take_sent().is_empty());
    // 1 -> 2 again, 40 times: learning made the flood flow stale; after
    // revalidation it is unicast, and the caches take the rest.
    for i in 0..40 {
        r.h[0].inject(&udp_frame(1, 2, 2000 + i));
    }
    r.dp.poll_once(r.now);
    r.dp.poll_once(r.now);
    assert_eq!(r.h[1].take_sent().len(), 40);
    assert!(r.h[2].take_sent().is_empty(), "no more flooding");
    let s = r.dp.stats();
    assert!(s.emc_hits + s.megaflow_hits >= 38, "{s:?}");
    // The rule's counters moved.
    let dump = r.dp.ofproto().dump_flows(&Default::default(), r.now);
    assert_eq!(dump[0].n_packets, 42);
    assert_eq!(dump[0].n_bytes, 42 * 60);
}

#[test]
fn megaflow_covers_packets_differing_in_unread_fields() {
    let mut m = Match::default();
    m.set_exact(Field::InPort, 1);
    let mut r = rig(2, vec![(0, 1, m, vec![Action::Output(2)])]);
    for i in 0..10 {
        r.h[0].inject(&udp_frame(1, 2, 3000 + i));
    }
    r.dp.poll_once(r.now);
    assert_eq!(r.h[1].take_sent().len(), 10);
    let s = r.dp.stats();
    assert_eq!(s.upcalls, 1, "one upcall for the whole megaflow");
    assert_eq!(s.megaflows, 1);
    assert_eq!(s.megaflow_hits, 9);
}

#[test]
fn flow_mod_revalidates_cached_entries() {
    let mut m = Match::default();
    m.set_exact(Field::InPort, 1);
    let mut r = rig(3, vec![(0, 1, m, vec![Action::Output(2)])]);
    r.h[0].inject(&udp_frame(1, 2, 1));
    r.dp.poll_once(r.now);
    assert_eq!(r.h[1].take_sent().len(), 1);
    // Same match, new actions: the cached entry must not be trusted.
    let of = r.dp.ofproto().clone();
    of.flow_mods(
        &[FlowMod {
            cmd: FlowModCmd::Modify { strict: false },
            spec: FlowSpec {
                matches: m,
                actions: vec![Action::Output(3)],
                ..FlowSpec::default()
            },
            table: None,
        }],
        r.now,
    )
    .unwrap();
    r.h[0].inject(&udp_frame(1, 2, 1));
    r.dp.poll_once(r.now);
    assert!(r.h[1].take_sent().is_empty());
    assert_eq!(r.h[2].take_sent().len(), 1);
    assert!(r.dp.stats().revalidations >= 1);
    // Deleting every flow: a miss, counted as no_match.
    of.flow_mods(
        &[FlowMod {
            cmd: FlowModCmd::Delete { strict: false },
            spec: FlowSpec::default(),
            table: None,
        }],
        r.now,
    )
    .unwrap();
    r.h[0].inject(&udp_frame(1, 2, 1));
    r.dp.poll_once(r.now);
    assert!(r.h[2].take_sent().is_empty());
    assert_eq!(r.dp.drops().get(DropReason::NoMatch), 1);
}

#[test]
fn malformed_frames_are_counted_drops() {
    let mut r = rig(
        2,
        vec![(
            0,
            0,
            Match::default(),
            vec![Action::Output(ofp_port::NORMAL)],
        )],
    );
    r.h[0].inject(&[0u8; 10]);
    let mut bad = udp_frame(1, 2, 1);
    bad[16..18].copy_from_slice(&200u16.to_be_bytes()); // IP total length > frame
    r.h[0].inject(&bad);
    r.dp.poll_once(r.now);
    assert!(r.h[1].take_sent().is_empty());
    assert_eq!(
        r.dp.drops()
            .get(DropReason::Malformed(crate::wire::Error::Truncated)),
        1
    );
    assert_eq!(
        r.dp.drops().get(DropReason::Malformed(
            crate::wire::Error::LengthExceedsFrame
        )),
        1
    );
}

#[test]
fn rewrites_and_multiple_outputs() {
    let mut m = Match::default();
    m.set_exact(Field::InPort, 1);
    let mut r = rig(
        3,
        vec![(
            0,
            1,
            m,
            vec![
                Action::Output(2),
                Action::ModTpDst(99),
                Action::PushVlan(0x8100),
                Action::ModVlanVid(7),
                Action::Output(3),
            ],
        )],
    );
    let f = udp_frame(1, 2, 1);
    r.h[0].inject(&f);
    r.dp.poll_once(r.now);
    assert_eq!(
        r.h[1].take_sent(),
        vec![f.clone()],
        "first output unmodified"
    );
    let out = r.h[2].take_sent();
    assert_eq!(out.len(), 1);
    let o = &out[0];
    assert_eq!(&o[12..16], &[0x81, 0x00, 0x00, 0x07]);
    assert_eq!(&o[40..42], &99u16.to_be_bytes());
}

#[test]
fn steady_state_does_not_allocate_buffers() {
    let mut m = Match::default();
    m.set_exact(Field::InPort, 1);
    let mut r = rig(2, vec![(0, 1, m, vec![Action::Output(2)])]);
    for round in 0..20 {
        for i in 0..32 {
            r.h[0].inject(&udp_frame(1, 2, i));
        }
        r.dp.poll_once(r.now);
        r.h[1].take_sent();
        if round == 2 {
            r.dp.pool().allocated();
        }
    }
    let a = r.dp.pool().allocated();
    for _ in 0..20 {
        for i in 0..32 {
            r.h[0].inject(&udp_frame(1, 2, i));
        }
        r.dp.poll_once(r.now);
        r.h[1].take_sent();
    }
    assert_eq!(r.dp.pool().allocated(), a);
}
