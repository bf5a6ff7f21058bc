//! Random flow tables against real and damaged frames, through the whole
//! fast path (extraction, the tables, the caches, conntrack, the egress
//! rules of tunnels and wires):
//!
//! - whatever the tables and the bytes, nothing panics and every frame
//!   leaves, is a counted drop, or (a fragment) waits for its datagram;
//! - with tables that keep no state (no `ct`, no `normal`, no
//!   `controller`), a frame handled through the caches another frame
//!   filled leaves exactly as it does from a datapath that never saw that
//!   other frame: a cache entry (exact-match or megaflow) must never cover
//!   a packet whose fields the tables would read differently.

use super::*;
use proptest::prelude::*;

/// The captured and crafted frames of `tests/data` (hex, `#` comments).
fn vectors() -> Vec<Vec<u8>> {
    const FILES: [&str; 14] = [
        include_str!("../../../tests/data/arp_request.hex"),
        include_str!("../../../tests/data/icmp_echo.hex"),
        include_str!("../../../tests/data/icmpv6_echo.hex"),
        include_str!("../../../tests/data/icmpv6_ns.hex"),
        include_str!("../../../tests/data/ipv4_frag_first.hex"),
        include_str!("../../../tests/data/ipv4_frag_later.hex"),
        include_str!("../../../tests/data/ipv6_frag_first.hex"),
        include_str!("../../../tests/data/qinq_tcp_syn.hex"),
        include_str!("../../../tests/data/tcp_ack_padded.hex"),
        include_str!("../../../tests/data/tcp_syn_options.hex"),
        include_str!("../../../tests/data/tcp_ipv6_syn.hex"),
        include_str!("../../../tests/data/udp_ipv4.hex"),
        include_str!("../../../tests/data/udp_ipv6.hex"),
        include_str!("../../../tests/data/vlan_8021q_icmp.hex"),
    ];
    FILES
        .iter()
        .map(|text| {
            let hex: String = text
                .lines()
                .filter(|l| !l.starts_with('#'))
                .flat_map(|l| l.split_whitespace())
                .collect();
            crate::ctl::hex::hex_decode(&hex).expect("test vector is hex")
        })
        .collect()
}

/// A frame of `tests/data`, with up to `edits` bytes overwritten and cut
/// to a length, often enough to reach deep into every parser.
fn frame(edits: usize) -> impl Strategy<Value = Vec<u8>> {
    let v = vectors();
    let n = v.len();
    (
        0..n,
        proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..=edits),
        prop::option::weighted(0.2, any::<prop::sample::Index>()),
    )
        .prop_map(move |(which, edits, cut)| {
            let mut f = v[which].clone();
            for (i, b) in edits {
                let i = i.index(f.len());
                f[i] = b;
            }
            if let Some(c) = cut {
                f.truncate(c.index(f.len() + 1));
            }
            f
        })
}

const MATCHES: &[&str] = &[
    "ip",
    "ip",
    "ip",
    "tcp",
    "udp",
    "icmp",
    "arp",
    "ipv6",
    "tcp6",
    "in_port=1",
    "in_port=3",
    "dl_vlan=10",
    "vlan_tci=0x1000/0x1000",
    "vlan_tci=0",
    "dl_dst=02:00:00:00:00:02",
    "dl_src=02:00:00:00:00:01/ff:ff:ff:00:00:00",
    "ip,nw_dst=10.0.0.0/8",
    "ip,nw_src=10.0.0.1",
    "udp,tp_dst=5353",
    "tcp6,tp_dst=80",
    "tcp,tp_src=0x8000/0x8000",
    "ip,nw_ttl=64",
    "ip,nw_frag=yes",
    "ipv6,nw_frag=later",
    "reg0=1",
    "reg1=0x10/0xf0",
    "metadata=7",
    "tun_id=5",
    "ct_state=-trk",
    "ct_state=+trk+new",
    "ct_state=+trk+est",
    "ct_mark=1",
    "ipv6,ipv6_dst=fd00::2",
    "icmp6,icmp_type=135",
    "arp,arp_op=1",
    "dl_type=0x88cc",
    "dl_dst=01:80:c2:00:00:00",
    "vlan_tci=0x1000/0x1fff",
];

const ACTIONS: &[&str] = &[
    "output:1",
    "output:2",
    "output:3",
    "output:4",
    "in_port",
    "normal",
    "flood",
    "all",
    "drop",
    "controller",
    "controller(reason=no_match,userdata=01.02)",
    "ct(table=1)",
    "ct(commit)",
    "ct(commit,zone=5,exec(set_field:1->ct_mark))",
    "ct(zone=NXM_NX_REG0[0..15],table=2)",
    "ct_clear",
    "push_vlan:0x8100",
    "push_vlan:0x88a8",
    "mod_vlan_vid:20",
    "mod_vlan_pcp:3",
    "strip_vlan",
    "mod_dl_dst:02:00:00:00:00:09",
    "mod_nw_dst:10.0.0.9",
    "mod_nw_src:192.168.0.1",
    "mod_tp_dst:80",
    "mod_nw_tos:16",
    "mod_nw_ecn:1",
    "set_nw_ttl:1",
    "dec_ttl",
    "set_field:10.1.1.1->ip_dst",
    "set_field:5->tun_id",
    "set_field:0x1234->tp_src",
    "load:1->NXM_NX_REG0[]",
    "load:0x10->NXM_NX_REG1[]",
    "load:7->OXM_OF_METADATA[]",
    "move:NXM_OF_IN_PORT[]->NXM_NX_REG0[0..15]",
    "move:NXM_OF_ETH_SRC[]->NXM_OF_ETH_DST[]",
    "move:NXM_NX_REG0[0..7]->NXM_NX_IP_TTL[]",
    "resubmit(,1)",
    "resubmit(,2)",
    "resubmit(3,0)",
    "goto_table:3",
    "note:01.02.03",
    "set_field:fd00::9->ipv6_dst",
    "mod_dl_src:01:80:c2:00:00:00",
    "set_tunnel:7",
    "move:NXM_NX_REG0[]->NXM_NX_TUN_ID[0..31]",
    "load:0xffff->NXM_OF_VLAN_TCI[]",
    "load:0->NXM_OF_VLAN_TCI[]",
    "output:LOCAL",
];

/// The actions that keep no state: the tables give the same answer for
/// the same packet whatever came before it.
fn stateless(action: &str) -> bool {
    !(action.starts_with("ct") || action == "normal" || action.starts_with("controller"))
}

fn stateless_match(m: &str) -> bool {
    !m.starts_with("ct_")
}

/// Flow lines `table=T,priority=P,MATCHES,actions=ACTIONS` over the token
/// lists above (lines the parser refuses are left out).
fn table(stateful: bool) -> impl Strategy<Value = String> {
    let matches: Vec<&str> = MATCHES
        .iter()
        .copied()
        .filter(|m| stateful || stateless_match(m))
        .collect();
    let actions: Vec<&str> = ACTIONS
        .iter()
        .copied()
        .filter(|a| stateful || stateless(a))
        .collect();
    let line = (
        0u8..4,
        0u16..4,
        proptest::collection::vec(proptest::sample::select(matches), 0..3),
        proptest::collection::vec(proptest::sample::select(actions), 0..4),
    )
        .prop_map(|(table, prio, m, a)| {
            let mut s = format!("table={table},priority={prio}");
            for m in m {
                s.push(',');
                s.push_str(m);
            }
            s.push_str(",actions=");
            s.push_str(&if a.is_empty() {
                "drop".to_string()
            } else {
                a.join(",")
            });
            s
        });
    proptest::collection::vec(line, 1..12).prop_map(|l| l.join("\n"))
}

/// A bridge with four ports: 1 (a trunk of VLANs 10 and 20) and 4 (an
/// access port of VLAN 10) plain, 2 a Geneve tunnel (48 bytes
/// of encapsulation) when `tunnel`, 3 a wire (short frames padded), and
/// `flows` (lines the parser or the tables refuse are skipped, as a
/// controller's would be refused one by one).
fn bridge(flows: &str, tunnel: bool, now: Instant) -> (Datapath, Vec<MemHandle>) {
    let of = Arc::new(Ofproto::new("br0", now));
    let mut dp = datapath_on(&of);
    let mut h = Vec::new();
    for no in 1..=4u32 {
        let name = format!("p{no}");
        let (p, handle) = MemPort::new(&name);
        let (kind, port): (_, Box<dyn Port>) = match no {
            2 if tunnel => (
                crate::ofproto::PortKind::Geneve,
                Box::new(Shaped::tunnel(p, 48)),
            ),
            3 => (crate::ofproto::PortKind::System, Box::new(Shaped::wire(p))),
            _ => (crate::ofproto::PortKind::Dummy, Box::new(p)),
        };
        let mut info = PortInfo::new(no, &name, kind);
        // VLANs: port 1 a trunk of 10 and 20, port 4 an access port of 10.
        match no {
            1 => info.trunks = vec![10, 20],
            4 => info.tag = Some(10),
            _ => {}
        }
        of.add_port(info);
        dp.add_port(no, port);
        h.push(handle);
    }
    let ports = of.ports();
    for line in flows.lines() {
        let Ok(specs) = crate::flow::parse_flow_file(line, &ports) else {
            continue;
        };
        for (_, spec) in specs {
            let m = FlowMod {
                cmd: FlowModCmd::Add,
                table: Some(spec.table),
                spec,
            };
            let _ = of.flow_mods(&[m], now);
        }
    }
    (dp, h)
}

fn total_drops(dp: &Datapath) -> u64 {
    dp.drops().snapshot().iter().map(|(_, n)| n).sum()
}

/// Whether the fast path would hold `f` in reassembly: an IP fragment.
fn is_fragment(f: &[u8]) -> bool {
    let mut key = crate::flow::FlowKey::default();
    let mut meta = crate::packet::PacketMeta::default();
    crate::flow::extract::extract(f, &mut meta, &mut key).is_ok() && Field::NwFrag.get(&key) != 0
}

fn hex(f: &[u8]) -> String {
    crate::ctl::hex::hex_encode(f)
}

/// What each port sent, one frame a line.
fn describe(sent: &[Vec<Vec<u8>>]) -> String {
    let mut s = String::new();
    for (i, frames) in sent.iter().enumerate() {
        for f in frames {
            s.push_str(&format!("  port {}: {}\n", i + 1, hex(f)));
        }
    }
    s
}

/// How many frames the ports sent since the last call, and how many drops
/// were counted beyond `drops_before`.
fn fate(dp: &Datapath, h: &[MemHandle], drops_before: u64) -> (usize, u64) {
    let out = sent(h).iter().map(Vec::len).sum();
    (out, total_drops(dp) - drops_before)
}

/// Everything the ports sent since the last call, by port.
fn sent(h: &[MemHandle]) -> Vec<Vec<Vec<u8>>> {
    h.iter().map(|h| h.take_sent()).collect()
}

proptest! {
    #[test]
    fn any_table_any_frame_leaves_or_is_a_counted_drop(
        flows in table(true),
        frames in proptest::collection::vec((0usize..4, frame(6)), 1..24),
    ) {
        let now = Instant::now();
        let (mut dp, h) = bridge(&flows, true, now);
        for (port, f) in &frames {
            let drops = total_drops(&dp);
            h[*port].inject(f);
            while dp.poll_once(now) > 0 {}
            let (out, dropped) = fate(&dp, &h, drops);
            prop_assert!(
                out > 0 || dropped > 0 || is_fragment(f),
                "frame {} on port {} vanished\nflows:\n{}",
                hex(f), port + 1, flows
            );
        }
        // Expiring what waits in reassembly must not panic either.
        dp.housekeeping(now + std::time::Duration::from_secs(60));
    }

    #[test]
    fn any_packet_out_leaves_or_is_a_counted_drop(
        flows in table(true),
        actions in proptest::collection::vec(proptest::sample::select(ACTIONS), 0..5),
        in_port in prop_oneof![Just(ofp_port::CONTROLLER), Just(ofp_port::NONE), 1u32..6],
        f in frame(6),
    ) {
        let now = Instant::now();
        let (mut dp, h) = bridge(&flows, true, now);
        let text = actions.join(",");
        let names = dp.ofproto().ports();
        // What the parser refuses a controller could still send over the
        // wire (the decoder does not check prerequisites against a frame
        // it has not seen): run it as the tables' own actions then.
        let acts = crate::flow::parse_actions(&text, &names)
            .unwrap_or_else(|_| vec![Action::Output(ofp_port::TABLE)]);
        let drops = total_drops(&dp);
        let r = dp.packet_out(in_port, &acts, &f, now);
        let (out, dropped) = fate(&dp, &h, drops);
        prop_assert!(
            out > 0 || dropped > 0 || (r.is_ok() && is_fragment(&f)),
            "packet-out of {} from {:#x} with {:?} vanished\nflows:\n{}",
            hex(&f), in_port, acts, flows
        );
    }

    /// With any tables, state included (conntrack, MAC learning, packet-ins),
    /// a sequence of frames leaves the same way through the caches as
    /// through the tables alone (the caches emptied before each frame).
    #[test]
    fn the_caches_never_change_a_packets_fate(
        flows in table(true),
        frames in proptest::collection::vec((0usize..4, frame(2)), 1..16),
    ) {
        let now = Instant::now();
        let (mut dp, h) = bridge(&flows, true, now);
        let (mut slow, sh) = bridge(&flows, true, now);
        for (i, (port, f)) in frames.iter().enumerate() {
            h[*port].inject(f);
            while dp.poll_once(now) > 0 {}
            slow.flush_caches();
            sh[*port].inject(f);
            while slow.poll_once(now) > 0 {}
            let (cached, uncached) = (sent(&h), sent(&sh));
            prop_assert!(
                cached == uncached,
                "frame {} ({}) on port {}\nflows:\n{}\nthrough the caches:\n{}\nthrough the tables:\n{}",
                i, hex(f), port + 1, flows, describe(&cached), describe(&uncached)
            );
        }
        prop_assert_eq!(dp.drops().snapshot(), slow.drops().snapshot());
    }

    /// (Port 2 is a plain port here: a tunnel answers a frame too big for
    /// it with an ICMP error, and those answers are rate-limited, which is
    /// state.)
    #[test]
    fn a_cached_answer_is_the_tables_answer(
        flows in table(false),
        first in (0usize..4, frame(3)),
        second in (0usize..4, frame(3)),
    ) {
        let now = Instant::now();
        // Through the caches the first frame filled, then through the
        // entries the second filled itself.
        let (mut dp, h) = bridge(&flows, false, now);
        h[first.0].inject(&first.1);
        while dp.poll_once(now) > 0 {}
        let _ = sent(&h);
        let mut cached = Vec::new();
        for _ in 0..2 {
            h[second.0].inject(&second.1);
            while dp.poll_once(now) > 0 {}
            cached.push(sent(&h));
        }
        // From a datapath that only ever saw the second frame.
        let (mut fresh, fh) = bridge(&flows, false, now);
        fh[second.0].inject(&second.1);
        while fresh.poll_once(now) > 0 {}
        let direct = sent(&fh);
        let want = vec![direct.clone(), direct];
        prop_assert!(
            cached == want,
            "{} on port {} after {} on port {}\nflows:\n{}\nthrough the caches:\n{}\nfrom the tables:\n{}",
            hex(&second.1), second.0 + 1, hex(&first.1), first.0 + 1, flows,
            cached.iter().map(|s| describe(s)).collect::<Vec<_>>().join("then\n"),
            describe(&want[0])
        );
    }
}
