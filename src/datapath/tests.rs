//! Fast-path tests through in-memory ports.

// This whole file is test code (declared `#[cfg(test)] mod tests;`).
#[cfg(test)]
use super::*;
use crate::flow::{ofp_port, Action, Field, FlowSpec, Match};
use crate::ofproto::{FlowMod, FlowModCmd, PortInfo};
use crate::packet::{Batch, PacketPool};
use crate::port::mem::{MemHandle, MemPort};
use crate::port::{Port, PortStats};

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

/// A datapath on bridge `of` with its own conntrack and drop counters.
fn datapath_on(of: &Arc<Ofproto>) -> Datapath {
    Datapath::new(
        of.clone(),
        Arc::new(ConnTracker::default()),
        Arc::new(DropCounters::default()),
    )
}

struct Rig {
    dp: Datapath,
    h: Vec<MemHandle>,
    now: Instant,
}

fn rig(n: u32, flows: Vec<(u8, u16, Match, Vec<Action>)>) -> Rig {
    let now = Instant::now();
    let of = Arc::new(Ofproto::new("br0", now));
    let mut dp = datapath_on(&of);
    let mut h = Vec::new();
    for i in 1..=n {
        let (p, handle) = MemPort::new(&format!("p{i}"));
        of.add_port(PortInfo::new(
            i,
            &format!("p{i}"),
            crate::ofproto::PortKind::Dummy,
        ));
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
    assert_eq!(
        r.dp.drops()
            .get(DropReason::Xlate(crate::ofproto::XlateError::NoMatch)),
        1
    );
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

/// A mem port that says it is another kind of port: a `system` port (a
/// wire, for the padding rule), a tunnel whose encapsulation adds some
/// bytes (a Geneve port with its TLV options), or one whose link state
/// the test sets.
struct Shaped {
    inner: MemPort,
    kind: &'static str,
    pads: bool,
    overhead: Option<u32>,
    up: Option<Arc<std::sync::atomic::AtomicBool>>,
    /// The fd a poller would watch (any number: nothing is read from it).
    fd: Option<std::os::fd::RawFd>,
    /// What `rx_pending` says.
    pending: Option<Arc<std::sync::atomic::AtomicBool>>,
}

impl Shaped {
    fn of(inner: MemPort, kind: &'static str) -> Shaped {
        Shaped {
            inner,
            kind,
            pads: false,
            overhead: None,
            up: None,
            fd: None,
            pending: None,
        }
    }
    fn wire(inner: MemPort) -> Shaped {
        Shaped {
            pads: true,
            ..Shaped::of(inner, "system")
        }
    }
    fn tunnel(inner: MemPort, overhead: u32) -> Shaped {
        Shaped {
            overhead: Some(overhead),
            ..Shaped::of(inner, "geneve")
        }
    }
    fn cable(inner: MemPort, up: Arc<std::sync::atomic::AtomicBool>) -> Shaped {
        Shaped {
            up: Some(up),
            ..Shaped::of(inner, "dummy")
        }
    }
}

impl Port for Shaped {
    fn name(&self) -> &str {
        self.inner.name()
    }
    fn kind(&self) -> &'static str {
        self.kind
    }
    fn pads_short_frames(&self) -> bool {
        self.pads
    }
    fn tunnel_overhead(&self) -> Option<u32> {
        self.overhead
    }
    fn poll_fd(&self) -> Option<std::os::fd::RawFd> {
        self.fd
    }
    fn rx_pending(&self) -> bool {
        self.pending
            .as_ref()
            .is_some_and(|p| p.load(std::sync::atomic::Ordering::Relaxed))
    }
    fn link_state(&self) -> crate::port::LinkState {
        match &self.up {
            Some(up) if !up.load(std::sync::atomic::Ordering::Relaxed) => {
                crate::port::LinkState::Down
            }
            _ => crate::port::LinkState::Up,
        }
    }
    fn recv_batch(
        &mut self,
        pool: &mut PacketPool,
        batch: &mut Batch,
    ) -> Result<usize, crate::port::Error> {
        self.inner.recv_batch(pool, batch)
    }
    fn send_batch(
        &mut self,
        batch: &mut Batch,
        pool: &mut PacketPool,
    ) -> Result<usize, crate::port::Error> {
        self.inner.send_batch(batch, pool)
    }
    fn stats(&self) -> PortStats {
        self.inner.stats()
    }
}

fn tcp_df_frame(payload: usize) -> Vec<u8> {
    let mut v = Vec::new();
    etherparse::PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
        .ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
        .tcp(40000, 22, 1, 64240)
        .write(&mut v, &vec![0x61; payload])
        .unwrap();
    v
}

#[test]
fn double_tag_over_mtu_is_dropped_and_the_sender_told() {
    let mut m = Match::default();
    m.set_exact(Field::InPort, 1);
    let mut r = rig(
        2,
        vec![(
            0,
            1,
            m,
            vec![
                Action::PushVlan(0x8100),
                Action::ModVlanVid(10),
                Action::PushVlan(0x88a8),
                Action::ModVlanVid(20),
                Action::Output(2),
            ],
        )],
    );
    // A full-size 1500-byte IP datagram: with an 802.1ad + 802.1Q pair it
    // counts 1508 (an 802.1ad outer tag is not free).
    r.h[0].inject(&tcp_df_frame(1460));
    // A small one passes.
    r.h[0].inject(&tcp_df_frame(100));
    r.dp.poll_once(r.now);
    let out = r.h[1].take_sent();
    assert_eq!(out.len(), 1, "only the small frame leaves");
    assert!(out[0].len() <= 1514 + 8);
    assert_eq!(r.dp.drops().get(DropReason::MtuExceeded), 1);
    assert_eq!(r.dp.port_mtu_drops(2), 1);
    // The sender got ICMP fragmentation-needed with MTU 1492.
    let back = r.h[0].take_sent();
    assert_eq!(back.len(), 1);
    let s = etherparse::SlicedPacket::from_ethernet(&back[0]).unwrap();
    match s.transport {
        Some(etherparse::TransportSlice::Icmpv4(i)) => assert_eq!(
            i.icmp_type(),
            etherparse::Icmpv4Type::DestinationUnreachable(
                etherparse::icmpv4::DestUnreachableHeader::FragmentationNeeded {
                    next_hop_mtu: 1492
                }
            )
        ),
        other => panic!("{other:?}"),
    }
}

#[test]
fn short_frames_to_a_wire_are_padded_with_zeroes() {
    let now = Instant::now();
    let of = Arc::new(Ofproto::new("br0", now));
    let mut dp = datapath_on(&of);
    let (p1, h1) = MemPort::new("p1");
    let (p2, h2) = MemPort::new("p2");
    of.add_port(PortInfo::new(1, "p1", crate::ofproto::PortKind::Dummy));
    of.add_port(PortInfo::new(2, "p2", crate::ofproto::PortKind::System));
    dp.add_port(1, Box::new(p1));
    dp.add_port(2, Box::new(Shaped::wire(p2)));
    let mut m = Match::default();
    m.set_exact(Field::InPort, 1);
    of.flow_mods(
        &[FlowMod {
            cmd: FlowModCmd::Add,
            spec: FlowSpec {
                priority: 1,
                matches: m,
                actions: vec![Action::PopVlan, Action::Output(2)],
                ..FlowSpec::default()
            },
            table: Some(0),
        }],
        now,
    )
    .unwrap();
    // Dirty the pool's buffers with 0xee so leftover bytes would show.
    for _ in 0..64 {
        h1.inject(&[0xee; 1500]);
    }
    while dp.poll_once(now) > 0 {}
    // A 64-byte tagged frame: 18-byte header, a 28-byte IP/UDP datagram,
    // 18 bytes of non-zero sender padding.
    let mut f = vec![
        2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0x81, 0x00, 0x00, 0x0a, 0x08, 0x00,
    ];
    let udp = udp_frame(1, 2, 7);
    f.extend_from_slice(&udp[14..42]);
    f.resize(64, 0xa5);
    h1.inject(&f);
    dp.poll_once(now);
    let out = h2.take_sent();
    assert_eq!(out.len(), 1);
    let o = &out[0];
    assert_eq!(o.len(), 60);
    assert_eq!(&o[12..14], &[0x08, 0x00], "tag popped");
    assert_eq!(&o[14..42], &udp[14..42], "datagram intact");
    assert!(
        o[42..].iter().all(|b| *b == 0),
        "padding is zeroes: {:x?}",
        &o[42..]
    );
    // The IP checksum still verifies over the IP header only.
    assert_eq!(crate::wire::checksum::checksum(&o[14..34]), 0);
}

mod random_tables;

mod never_vanishes {
    //! Bad input never crashes and never vanishes: every frame that enters
    //! either leaves or is a counted drop, whatever its bytes.
    use super::*;
    use proptest::prelude::*;

    fn firewall_rig() -> Rig {
        let flows = "table=0,priority=100,ip,ct_state=-trk,actions=ct(table=1)\n\
                     table=0,priority=100,ipv6,ct_state=-trk,actions=ct(table=1)\n\
                     table=0,priority=10,actions=output:2\n\
                     table=1,priority=200,ct_state=+trk+inv,actions=drop\n\
                     table=1,priority=100,ip,ct_state=+trk+new,actions=ct(commit),output:2\n\
                     table=1,priority=100,ct_state=+trk+est,actions=output:2\n\
                     table=1,priority=0,actions=drop\n";
        let r = rig(2, vec![]);
        add_flows(&r, flows);
        r
    }

    fn total_drops(dp: &Datapath) -> u64 {
        dp.drops().snapshot().iter().map(|(_, n)| n).sum()
    }

    fn frames() -> impl Strategy<Value = Vec<Vec<u8>>> {
        // Random bytes, and real frames with random bytes overwritten: both
        // reach deep into the parsers.
        let base = udp_frame(1, 2, 9);
        let mutated = (
            proptest::collection::vec((0usize..60, any::<u8>()), 0..8),
            0usize..70,
        )
            .prop_map(move |(edits, cut)| {
                let mut f = base.clone();
                let n = f.len();
                for (i, b) in edits {
                    f[i % n] = b;
                }
                f.truncate(cut.max(1));
                f
            });
        let random = proptest::collection::vec(any::<u8>(), 0..200);
        proptest::collection::vec(prop_oneof![random, mutated], 1..40)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]
        #[test]
        fn every_frame_leaves_or_is_a_counted_drop(fs in frames()) {
            let mut r = firewall_rig();
            for f in &fs {
                r.h[0].inject(f);
            }
            while r.dp.poll_once(r.now) > 0 {}
            // A fragment waits in reassembly for the rest of its datagram;
            // once that times out, it is a counted drop too.
            r.dp.housekeeping(r.now + std::time::Duration::from_secs(16));
            let out = r.h[1].take_sent().len() as u64;
            prop_assert_eq!(out + total_drops(&r.dp), fs.len() as u64);
        }
    }
}

#[test]
fn the_tables_see_the_egress_the_datapath_enforces() {
    let now = Instant::now();
    let of = Arc::new(Ofproto::new("br0", now));
    let mut dp = datapath_on(&of);
    let (p1, h1) = MemPort::new("p1");
    let (p2, h2) = MemPort::new("t0");
    let (p3, _h3) = MemPort::new("w0");
    of.add_port(PortInfo::new(1, "p1", crate::ofproto::PortKind::Dummy));
    of.add_port(PortInfo::new(2, "t0", crate::ofproto::PortKind::Geneve));
    of.add_port(PortInfo::new(3, "w0", crate::ofproto::PortKind::System));
    dp.add_port(1, Box::new(p1));
    // 36 bytes of Geneve over IPv4 plus one 8-byte option (4 + 8).
    dp.add_port(2, Box::new(Shaped::tunnel(p2, 48)));
    dp.add_port(3, Box::new(Shaped::wire(p3)));
    let info = |no| of.with_ports(|p| p.get(no).cloned()).unwrap();
    assert_eq!(
        (info(2).tunnel_overhead, info(2).pads_short_frames),
        (Some(48), false)
    );
    assert_eq!(
        (info(3).tunnel_overhead, info(3).pads_short_frames),
        (None, true)
    );
    assert_eq!(Egress::of_info(&info(2)), dp.port_egress(2).unwrap());
    let gen = of.generation();
    assert!(dp.set_mtu(2, Some(1400)));
    assert_eq!(info(2).mtu, 1400);
    assert_eq!(of.generation(), gen, "egress facts do not invalidate flows");

    // A frame the tables' view says is too big is the one the datapath
    // drops: 1400 - 48 leaves 1352 bytes for the inner frame.
    let mut m = Match::default();
    m.set_exact(Field::InPort, 1);
    of.flow_mods(
        &[FlowMod {
            cmd: FlowModCmd::Add,
            spec: FlowSpec {
                priority: 1,
                matches: m,
                actions: vec![Action::Output(2)],
                ..FlowSpec::default()
            },
            table: Some(0),
        }],
        now,
    )
    .unwrap();
    for payload in [1352 - 54, 1352 - 53] {
        let f = tcp_df_frame(payload);
        let mut pkt = PacketBuf::from_slice(&f);
        let mut k = FlowKey::default();
        extract(&f, &mut pkt.meta, &mut k).unwrap();
        let fits = matches!(
            egress::prepare(&mut pkt, &Egress::of_info(&info(2))),
            egress::Fit::Fits { .. }
        );
        h1.inject(&f);
        dp.poll_once(now);
        assert_eq!(h2.take_sent().len(), usize::from(fits), "payload {payload}");
        assert_eq!(fits, payload == 1352 - 54);
    }
}

#[test]
fn controller_action_hands_packet_ins_over_rate_limited_and_counted() {
    let mut m = Match::default();
    m.set_exact(Field::InPort, 1);
    // Load a register first: PACKET_IN's metadata comes from translation.
    let ctl = crate::flow::ControllerAction {
        max_len: 32,
        userdata: vec![0xab],
        ..Default::default()
    };
    let mut r = rig(
        2,
        vec![(
            0,
            1,
            m,
            vec![
                Action::SetField {
                    field: Field::Reg(3),
                    value: 0x77,
                    mask: 0xffff_ffff,
                },
                Action::Controller(Box::new(ctl)),
                Action::Output(2),
            ],
        )],
    );
    let (sink, rx) = packet_in::Sink::with_limits(1, 3);
    r.dp.set_packet_in(sink);
    for i in 0..5 {
        r.h[0].inject(&udp_frame(1, 2, 4000 + i));
    }
    r.dp.poll_once(r.now);
    // Forwarding is untouched; three packet-ins fit the burst.
    assert_eq!(r.h[1].take_sent().len(), 5);
    let got: Vec<packet_in::PacketIn> = rx.try_iter().collect();
    assert_eq!(got.len(), 3);
    let pi = &got[0];
    assert_eq!((pi.data.len(), pi.total_len), (32, 60));
    assert_eq!(pi.key.in_port(), 1);
    assert_eq!(Field::Reg(3).get(&pi.key), 0x77);
    assert_eq!(pi.userdata, vec![0xab]);
    let limited = DropReason::PacketIn(packet_in::Refused::RateLimited);
    assert_eq!(r.dp.drops().get(limited), 2);
    assert_eq!(limited.name(), "controller_rate_limited");
}

#[test]
fn controller_only_flow_without_a_controller_path_is_a_counted_drop() {
    let r0 = rig(
        1,
        vec![(
            0,
            0,
            Match::default(),
            vec![Action::Controller(Box::default())],
        )],
    );
    let mut r = r0;
    r.h[0].inject(&udp_frame(1, 2, 1));
    r.dp.poll_once(r.now);
    let full = DropReason::PacketIn(packet_in::Refused::QueueFull);
    assert_eq!(r.dp.drops().get(full), 1, "{:?}", r.dp.drops());
    assert_eq!(
        r.dp.drops()
            .get(DropReason::Xlate(XlateError::PipelineDrop)),
        0
    );
}

#[test]
fn packet_out_runs_its_actions_or_the_tables() {
    let mut m = Match::default();
    m.set_exact(Field::InPort, ofp_port::CONTROLLER.into());
    // The tables send packets "from the controller" to port 3.
    let mut r = rig(3, vec![(0, 1, m, vec![Action::Output(3)])]);
    let f = udp_frame(1, 2, 7);
    r.dp.packet_out(ofp_port::CONTROLLER, &[Action::Output(2)], &f, r.now)
        .unwrap();
    assert_eq!(r.h[1].take_sent(), vec![f.clone()]);
    r.dp.packet_out(
        ofp_port::CONTROLLER,
        &[Action::Output(ofp_port::TABLE)],
        &f,
        r.now,
    )
    .unwrap();
    assert_eq!(r.h[2].take_sent().len(), 1);
    assert!(r.h[1].take_sent().is_empty());
    // A frame that does not parse is a counted drop, not a panic.
    assert!(r
        .dp
        .packet_out(
            ofp_port::CONTROLLER,
            &[Action::Output(2)],
            &[1, 2, 3],
            r.now
        )
        .is_err());
    assert_eq!(r.dp.drops().nonzero().len(), 1);
}

/// A rig on three ports with `flows` (ovs-ofctl lines).
fn rig_flows(flows: &str) -> Rig {
    let r = rig(3, vec![]);
    add_flows(&r, flows);
    r
}

/// Adds `flows` (ovs-ofctl lines) to `r`'s bridge.
fn add_flows(r: &Rig, flows: &str) {
    let ports = r.dp.ofproto().ports();
    let mods: Vec<FlowMod> = crate::flow::parse_flow_file(flows, &ports)
        .unwrap()
        .into_iter()
        .map(|(_, spec)| FlowMod {
            cmd: FlowModCmd::Add,
            table: Some(spec.table),
            spec,
        })
        .collect();
    r.dp.ofproto().flow_mods(&mods, r.now).unwrap();
}

/// A recirculated packet keeps its key only while its frame is the one the
/// key was extracted from: a rewrite ahead of `ct(table=N)` is seen by the
/// next pass (here, a stale key would send the packet to port 3), every
/// pass sees the `ct_state` and `ct_zone` of the `ct` before it, and the
/// packets of a second batch (through the caches) go the same way.
#[test]
fn recirculated_packets_are_matched_on_the_frame_as_rewritten() {
    let flows = "table=0,priority=100,ip,ct_state=-trk,actions=mod_dl_dst:02:00:00:00:00:09,ct(table=1)\n\
                 table=1,priority=100,ip,dl_dst=02:00:00:00:00:09,ct_state=+trk+new,ct_zone=0,actions=mod_nw_dst:10.0.0.9,ct(zone=7,table=2)\n\
                 table=1,priority=10,actions=output:3\n\
                 table=2,priority=100,ip,nw_dst=10.0.0.9,dl_dst=02:00:00:00:00:09,ct_state=+trk+new,ct_zone=7,actions=output:2\n\
                 table=2,priority=10,actions=output:3\n";
    let mut r = rig_flows(flows);
    for round in 0..2u16 {
        for i in 0..4u16 {
            r.h[0].inject(&udp_frame(1, 2, 1000 + i));
        }
        r.dp.poll_once(r.now);
        let out = r.h[1].take_sent();
        assert_eq!(out.len(), 4, "round {round}: every packet reached port 2");
        for o in &out {
            assert_eq!(&o[..6], &[2, 0, 0, 0, 0, 9], "dl_dst rewritten");
            assert_eq!(&o[30..34], &[10, 0, 0, 9], "nw_dst rewritten");
        }
        assert!(
            r.h[2].take_sent().is_empty(),
            "round {round}: none on port 3"
        );
    }
    assert!(r.dp.stats().recirculations >= 16);
}

/// Without rewrites the next pass refreshes the carried key: a packet
/// whose connection is committed on the first batch is `+est` on the way
/// back, as a fresh extraction would say.
#[test]
fn recirculated_keys_follow_the_connection_state() {
    let flows = "table=0,priority=100,ip,ct_state=-trk,actions=ct(table=1)\n\
                 table=1,priority=100,ip,ct_state=+trk+new,in_port=1,actions=ct(commit),output:2\n\
                 table=1,priority=100,ip,ct_state=+trk+est,in_port=2,actions=output:1\n\
                 table=1,priority=100,ip,ct_state=+trk+est,in_port=1,actions=output:2\n\
                 table=1,priority=0,actions=output:3\n";
    let mut r = rig_flows(flows);
    r.h[0].inject(&udp_frame(1, 2, 1000));
    r.dp.poll_once(r.now);
    assert_eq!(r.h[1].take_sent().len(), 1, "new: committed and forwarded");
    // The reply: from 10.0.0.2:53 to 10.0.0.1:1000.
    let mut reply = udp_frame(2, 1, 53);
    reply[36..38].copy_from_slice(&1000u16.to_be_bytes());
    r.h[1].inject(&reply);
    r.dp.poll_once(r.now);
    assert_eq!(
        r.h[0].take_sent().len(),
        1,
        "reply: established, back to port 1"
    );
    r.h[0].inject(&udp_frame(1, 2, 1000));
    r.dp.poll_once(r.now);
    assert_eq!(r.h[1].take_sent().len(), 1, "established both ways");
    assert!(
        r.h[2].take_sent().is_empty(),
        "nothing fell through to port 3"
    );
}

#[test]
fn the_tables_hear_a_ports_link_state_from_the_reporting_datapath_only() {
    use std::sync::atomic::{AtomicBool, Ordering};
    let now = Instant::now();
    let of = Arc::new(Ofproto::new("br0", now));
    let mk = || {
        Datapath::new(
            of.clone(),
            Arc::new(ConnTracker::default()),
            Arc::new(DropCounters::default()),
        )
    };
    let link = |no| of.with_ports(|p| p.get(no).and_then(|p| p.link_up));
    let up = Arc::new(AtomicBool::new(false));
    of.add_port(PortInfo::new(1, "c1", crate::ofproto::PortKind::Dummy));
    assert_eq!(link(1), None, "unknown before a datapath has the port");

    // Another worker's queue of the port says nothing, whatever it sees.
    let mut other = mk();
    other.set_reports_links(false);
    let (q, _h) = MemPort::new("c1");
    other.add_port(
        1,
        Box::new(Shaped::cable(q, Arc::new(AtomicBool::new(true)))),
    );
    other.housekeeping(now);
    assert_eq!(link(1), None);

    // The reporting one: at attach, then at each upkeep.
    let mut dp = mk();
    let (p, _h) = MemPort::new("c1");
    dp.add_port(1, Box::new(Shaped::cable(p, up.clone())));
    assert_eq!(link(1), Some(false), "published when attached");
    up.store(true, Ordering::Relaxed);
    dp.housekeeping(now);
    assert_eq!(link(1), Some(true));
    up.store(false, Ordering::Relaxed);
    dp.housekeeping(now + SWEEP_INTERVAL);
    assert_eq!(link(1), Some(false));
}

/// A sleeping worker's pass (`poll_ready`) reads the ports its poller
/// reported readable, every port it cannot watch (no fd) and a port that
/// holds frames of an earlier read; a watched port with nothing announced
/// keeps its frames (and costs no read) until it is reported.
#[test]
fn a_sleeping_worker_reads_only_ports_with_something_to_read() {
    use std::sync::atomic::{AtomicBool, Ordering};
    let now = Instant::now();
    let of = Arc::new(Ofproto::new("br0", now));
    let mut dp = datapath_on(&of);
    let pending = Arc::new(AtomicBool::new(false));
    let mut h = Vec::new();
    for i in 1..=4u32 {
        let (p, handle) = MemPort::new(&format!("p{i}"));
        of.add_port(PortInfo::new(
            i,
            &format!("p{i}"),
            crate::ofproto::PortKind::Dummy,
        ));
        let mut s = Shaped::of(p, "tap");
        match i {
            // Watched, and holding frames its fd no longer announces.
            1 => {
                s.fd = Some(101);
                s.pending = Some(pending.clone());
            }
            2 | 3 => s.fd = Some(100 + i as i32),
            // Port 4: nothing to watch, read on every pass.
            _ => {}
        }
        dp.add_port(i, Box::new(s));
        h.push(handle);
    }
    let out = Match::default();
    of.flow_mods(
        &[FlowMod {
            cmd: FlowModCmd::Add,
            spec: FlowSpec {
                table: 0,
                priority: 0,
                matches: out,
                actions: vec![Action::Output(9)],
                ..FlowSpec::default()
            },
            table: None,
        }],
        now,
    )
    .unwrap();
    for (i, p) in h.iter().enumerate() {
        assert!(p.inject(&udp_frame(i as u8 + 1, 9, 1000)));
    }
    let rx = |h: &[MemHandle]| -> Vec<u64> { h.iter().map(|p| p.stats().rx_packets).collect() };
    // Port 2 reported readable: 2 and 4 (no fd) are read; 1 and 3 wait.
    assert_eq!(dp.poll_ready(now, &[2]), 2);
    assert_eq!(rx(&h), vec![0, 1, 0, 1]);
    // Nothing reported: only what cannot be watched is read.
    assert_eq!(dp.poll_ready(now, &[]), 0);
    assert_eq!(rx(&h), vec![0, 1, 0, 1]);
    // Port 1 holds frames of an earlier read: read without a report.
    pending.store(true, Ordering::Relaxed);
    assert_eq!(dp.poll_ready(now, &[]), 1);
    assert_eq!(rx(&h), vec![1, 1, 0, 1]);
    // A sweep reads everything left.
    assert_eq!(dp.poll_once(now), 1);
    assert_eq!(rx(&h), vec![1, 1, 1, 1]);
}

/// The ports a pass received from or sent to are where a sleeping worker
/// looks next (`active_ports`); a pass that moved nothing leaves none.
#[test]
fn a_pass_reports_the_ports_it_moved_packets_on() {
    let mut m = Match::default();
    m.set_exact(Field::InPort, 1);
    let mut r = rig(3, vec![(0, 1, m, vec![Action::Output(3)])]);
    assert!(r.h[0].inject(&udp_frame(1, 3, 1000)));
    assert_eq!(r.dp.poll_once(r.now), 1);
    assert_eq!(r.h[2].take_sent().len(), 1);
    assert_eq!(r.dp.active_ports(), &[1, 3]);
    assert_eq!(r.dp.poll_ready(r.now, &[2]), 0);
    assert_eq!(r.dp.active_ports(), &[] as &[usize]);
}

/// A segment between 10.0.0.1:`sport` (port 1) and 10.0.0.2:80 (port 2).
fn tcp_segment(
    from_client: bool,
    sport: u16,
    seq: u32,
    ack: u32,
    flags: u8,
    payload: usize,
) -> Vec<u8> {
    use etherparse::PacketBuilder;
    let (sm, dm, si, di, sp, dp) = if from_client {
        (
            [2, 0, 0, 0, 0, 1],
            [2, 0, 0, 0, 0, 2],
            [10, 0, 0, 1],
            [10, 0, 0, 2],
            sport,
            80,
        )
    } else {
        (
            [2, 0, 0, 0, 0, 2],
            [2, 0, 0, 0, 0, 1],
            [10, 0, 0, 2],
            [10, 0, 0, 1],
            80,
            sport,
        )
    };
    let mut b = PacketBuilder::ethernet2(sm, dm)
        .ipv4(si, di, 64)
        .tcp(sp, dp, seq, 64240);
    if flags & 0x02 != 0 {
        b = b.syn();
    }
    if flags & 0x01 != 0 {
        b = b.fin();
    }
    if flags & 0x04 != 0 {
        b = b.rst();
    }
    if flags & 0x10 != 0 {
        b = b.ack(ack);
    }
    let mut v = Vec::new();
    b.write(&mut v, &vec![0x5a; payload]).expect("frame");
    v.resize(v.len().max(60), 0);
    v
}

/// Random TCP conversations (handshakes, data both ways, segments out of
/// window, FIN and RST) and UDP both ways, as (in_port, frame) in batches.
fn conversations(seed: u64, steps: usize) -> Vec<Vec<(u32, Vec<u8>)>> {
    let mut x = seed | 1;
    let mut rnd = move |n: u64| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x % n
    };
    // Per connection: phase (0 closed .. 3 established), client and
    // server sequence numbers.
    let mut conns = [(0u8, 1000u32, 5000u32); 6];
    let mut pkts = Vec::new();
    for _ in 0..steps {
        let c = rnd(conns.len() as u64) as usize;
        let sport = 40000 + c as u16;
        let (phase, cs, ss) = &mut conns[c];
        let (ack, syn, fin, rst) = (0x10, 0x02, 0x01, 0x04);
        let p = match (*phase, rnd(9)) {
            (_, 0) => {
                // UDP, either way, on a few flows.
                let mut f = udp_frame(1, 2, 2000 + rnd(3) as u16);
                let from_client = rnd(2) == 0;
                if !from_client {
                    f = udp_frame(2, 1, 53);
                    f[36..38].copy_from_slice(&(2000 + rnd(3) as u16).to_be_bytes());
                }
                (if from_client { 1 } else { 2 }, f)
            }
            (0, _) => {
                *phase = 1;
                (1, tcp_segment(true, sport, *cs, 0, syn, 0))
            }
            (1, _) => {
                *phase = 2;
                (2, tcp_segment(false, sport, *ss, *cs + 1, syn | ack, 0))
            }
            (2, _) => {
                *phase = 3;
                *cs += 1;
                *ss += 1;
                (1, tcp_segment(true, sport, *cs, *ss, ack, 0))
            }
            (_, 1 | 2) => {
                let f = tcp_segment(true, sport, *cs, *ss, ack, 20);
                *cs += 20;
                (1, f)
            }
            (_, 3) => {
                let f = tcp_segment(false, sport, *ss, *cs, ack, 20);
                *ss += 20;
                (2, f)
            }
            // The steady state's bare ACK, with the same flow key as the
            // ones before it, but far out of the window: invalid.
            (_, 4) => (
                1,
                tcp_segment(true, sport, cs.wrapping_add(0x4000_0000), *ss, ack, 0),
            ),
            (_, 5) => {
                *phase = 0;
                *cs += 100_000;
                *ss += 100_000;
                (
                    1,
                    tcp_segment(true, sport, *cs - 100_000, *ss - 100_000, rst | ack, 0),
                )
            }
            (_, 6) => (1, tcp_segment(true, sport, *cs, *ss, ack | fin, 0)),
            _ => (1, tcp_segment(true, sport, *cs, *ss, ack, 0)),
        };
        pkts.push(p);
    }
    let mut batches = Vec::new();
    while !pkts.is_empty() {
        let n = (1 + rnd(MAX_BURST as u64) as usize).min(pkts.len());
        batches.push(pkts.drain(..n).collect());
    }
    batches
}

/// A first pass of `ct(table=N)` whose EMC entry knows where its key
/// went with the state the `ct` just gave runs that next pass right away
/// instead of through the recirculation queue. It must give what the
/// queue gives: the same frames out of each port in the same order, the
/// same drops, connections and rule counters. The same flow key meets
/// different states (an established ACK, then one out of the window: a
/// next pass to another megaflow), marks are set on commit, and a flow
/// change midway moves the established traffic to another port.
#[test]
fn a_next_pass_run_right_away_matches_the_queue() {
    let flows = "table=0,priority=100,ip,ct_state=-trk,actions=ct(table=1)\n\
                 table=0,priority=10,actions=drop\n\
                 table=1,priority=200,ct_state=+trk+inv,actions=drop\n\
                 table=1,priority=100,tcp,ct_state=+trk+new,in_port=1,actions=ct(commit,exec(set_field:5->ct_mark)),output:2\n\
                 table=1,priority=100,udp,ct_state=+trk+new,in_port=1,actions=ct(commit),output:2\n\
                 table=1,priority=100,ct_state=+trk+est,ct_mark=5,in_port=2,actions=output:1\n\
                 table=1,priority=90,ct_state=+trk+est,in_port=2,actions=output:3\n\
                 table=1,priority=100,ct_state=+trk+est,in_port=1,actions=output:2\n\
                 table=1,priority=0,actions=drop\n";
    let moved = "table=1,priority=100,ct_state=+trk+est,in_port=1,actions=output:3\n";
    for seed in [1u64, 7, 42, 1234, 99_991] {
        let mut fast = rig_flows(flows);
        let mut queued = rig_flows(flows);
        queued.dp.queue_next_passes = true;
        let batches = conversations(seed, 3000);
        let half = batches.len() / 2;
        for (b, batch) in batches.iter().enumerate() {
            if b == half {
                add_flows(&fast, moved);
                add_flows(&queued, moved);
            }
            for r in [&mut fast, &mut queued] {
                let mut pkts = Batch::new();
                for (port, f) in batch {
                    let mut p = r.dp.pool().get_from(f);
                    p.meta.in_port = *port;
                    assert!(pkts.push(p).is_ok());
                }
                r.dp.process_batch(&mut pkts, r.now);
                r.dp.flush_tx();
            }
            for port in 0..3 {
                assert_eq!(
                    fast.h[port].take_sent(),
                    queued.h[port].take_sent(),
                    "seed {seed}, batch {b}, port {}",
                    port + 1
                );
            }
        }
        assert_eq!(
            fast.dp.drops().snapshot(),
            queued.dp.drops().snapshot(),
            "seed {seed}"
        );
        assert_eq!(
            format!("{:?}", fast.dp.ct.dump(None, fast.now)),
            format!("{:?}", queued.dp.ct.dump(None, queued.now)),
            "seed {seed}"
        );
        let counts = |r: &Rig| -> Vec<(String, u64, u64)> {
            r.dp.ofproto()
                .dump_flows(&Default::default(), r.now)
                .into_iter()
                .map(|f| (format!("{:?}", f.spec), f.n_packets, f.n_bytes))
                .collect()
        };
        assert_eq!(counts(&fast), counts(&queued), "seed {seed}");
        let (fs, qs) = (fast.dp.stats(), queued.dp.stats());
        assert_eq!(fs.packets, qs.packets);
        assert_eq!(fs.recirculations, qs.recirculations, "seed {seed}");
        // The fast rig did run next passes right away; the other, never.
        let learnt = |r: &Rig| r.dp.emc.learnt_next_passes();
        assert!(learnt(&fast) > 0, "seed {seed}");
        assert_eq!(learnt(&queued), 0, "seed {seed}");
    }
}
