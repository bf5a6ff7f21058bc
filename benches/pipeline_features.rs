//! The pipeline's heavier paths per packet, in-memory ports, batches of 32
//! 64-byte frames (inner frames for Geneve), one datapath thread:
//!
//! * `firewall_established`: `flows/stateful-firewall.flows` as shipped:
//!   two table passes with `ct(table=1)` between them, on 16 established
//!   TCP connections (the handshakes ran first), each packet a bare ACK
//!   of one of them: what a busy VM's steady state costs.
//!   `VSWITCH_BENCH_CONNS=N` (1 to 20,000) runs it on N connections
//!   instead, for what the connection table's cache misses cost.
//! * `firewall_new_connections`: the same flows, each packet the SYN of a
//!   new connection (committed to conntrack): the setup rate.
//! * `geneve_decap_forward`: Geneve datagrams (as the UDP socket hands
//!   them over, with one mapped TLV option) decapsulated into tunnel
//!   metadata, matched on `tun_id` and the option, forwarded to a port.
//! * `vlan_push` / `vlan_pop`: an access port's tag pushed on the way to
//!   a trunk, and popped on the way back.
//! * `baseline_copy`: the port's own hand-over of a batch, the floor the
//!   others compare with in the same run.
//!
//! Figures go in README's "Measuring", as ratios to `baseline_copy`.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use etherparse::PacketBuilder;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;
use vswitch::conntrack::ConnTracker;
use vswitch::ctl::flowtext;
use vswitch::datapath::{Datapath, DropCounters};
use vswitch::ofproto::{Ofproto, PortInfo, PortKind};
use vswitch::packet::{Batch, PacketPool, MAX_BURST};
use vswitch::port::geneve::{decap, DecapPolicy, TlvMap, TlvMapping};
use vswitch::port::mem::MemPort;
use vswitch::port::udp::RecvInfo;

const A: [u8; 6] = [0x52, 0x54, 0, 0, 0, 1];
const B: [u8; 6] = [0x52, 0x54, 0, 0, 0, 2];

/// A datapath on dummy ports 1 and 2 with `flows` (ovs-ofctl lines).
fn datapath(flows: &str) -> (Datapath, Arc<ConnTracker>) {
    let now = Instant::now();
    let of = Arc::new(Ofproto::new("br0", now));
    let ct = Arc::new(ConnTracker::default());
    let mut dp = Datapath::new(of.clone(), ct.clone(), Arc::new(DropCounters::default()));
    for i in 1..=2u32 {
        let (p, _h) = MemPort::sink(&format!("p{i}"));
        of.add_port(PortInfo::new(i, &format!("p{i}"), PortKind::Dummy));
        dp.add_port(i, Box::new(p));
    }
    let mods = of
        .with_ports(|ports| flowtext::file(flows, "bench flows", ports))
        .expect("bench flows parse");
    of.flow_mods(&mods, now).expect("bench flows apply");
    (dp, ct)
}

#[path = "support/tcp_frames.rs"]
mod tcp_frames;

fn tcp(from_a: bool, sport: u16, seq: u32, ack: u32, syn: bool) -> Vec<u8> {
    tcp_frames::tcp((A, B), from_a, sport, seq, ack, syn, 60)
}

/// Runs `frames` (all from port `in_port`) through `dp` in one batch.
fn once(dp: &mut Datapath, frames: &[Vec<u8>], in_port: u32, now: Instant) {
    let mut batch = Batch::new();
    for f in frames {
        let mut p = dp.pool().get_from(f);
        p.meta.in_port = in_port;
        let _ = batch.push(p);
    }
    dp.process_batch(&mut batch, now);
    dp.flush_tx();
}

fn run(
    dp: &mut Datapath,
    frames: &[Vec<u8>],
    next: &mut usize,
    batch: &mut Batch,
    in_port: u32,
    now: Instant,
) {
    for _ in 0..MAX_BURST {
        let f = &frames[*next];
        *next = (*next + 1) % frames.len();
        let mut p = dp.pool().get_from(f);
        p.meta.in_port = in_port;
        let _ = batch.push(p);
    }
    dp.process_batch(batch, now);
    dp.flush_tx();
}

fn firewall(g: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>, now: Instant) {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/flows/stateful-firewall.flows"
    ))
    .expect("flows/stateful-firewall.flows");
    let (mut dp, ct) = datapath(&text);
    // 16 handshakes (or VSWITCH_BENCH_CONNS): client a (port 1) to
    // server b (port 2).
    let conns: u16 = std::env::var("VSWITCH_BENCH_CONNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|n| (1..=20_000).contains(n))
        .unwrap_or(16);
    for i in 0..conns {
        let sport = 40000 + i;
        once(&mut dp, &[tcp(true, sport, 1000, 0, true)], 1, now);
        once(&mut dp, &[tcp(false, sport, 5000, 1001, true)], 2, now);
        once(&mut dp, &[tcp(true, sport, 1001, 5001, false)], 1, now);
    }
    assert_eq!(ct.len(), usize::from(conns), "every connection established");
    let acks: Vec<Vec<u8>> = (0..conns)
        .map(|i| tcp(true, 40000 + i, 1001, 5001, false))
        .collect();
    let mut batch = Batch::new();
    let mut next = 0;
    g.bench_function("firewall_established", |b| {
        b.iter(|| run(&mut dp, &acks, &mut next, &mut batch, 1, now))
    });
    let s = dp.stats();
    eprintln!("firewall_established: {s:?}");
    firewall_new(g, &text, now);
}

/// Every packet the SYN of a connection never seen before, through the
/// same firewall: the setup rate (the 1,000 new connections per
/// millisecond). 64,000 source ports; the tracker is flushed, untimed,
/// each time they are used up, so every timed SYN makes a new connection.
fn firewall_new(
    g: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    text: &str,
    now: Instant,
) {
    let (mut dp, ct) = datapath(text);
    let syns: Vec<Vec<u8>> = (0..64_000u32)
        .map(|i| tcp(true, 1024 + i as u16, 1000, 0, true))
        .collect();
    let mut batch = Batch::new();
    let mut next = 0;
    // One untimed pass: every SYN is committed (nothing dropped).
    for _ in 0..syns.len() / MAX_BURST {
        run(&mut dp, &syns, &mut next, &mut batch, 1, now);
    }
    assert_eq!(ct.len(), syns.len(), "every SYN made a connection");
    ct.flush(None);
    g.bench_function("firewall_new_connections", |b| {
        b.iter_custom(|iters| {
            let mut spent = std::time::Duration::ZERO;
            let mut left = iters as usize;
            while left > 0 {
                let room = (syns.len() - next) / MAX_BURST;
                if room == 0 {
                    ct.flush(None);
                    next = 0;
                    continue;
                }
                let n = room.min(left);
                let t = Instant::now();
                for _ in 0..n {
                    run(&mut dp, &syns, &mut next, &mut batch, 1, now);
                }
                spent += t.elapsed();
                left -= n;
            }
            spent
        })
    });
    eprintln!("firewall_new_connections: {:?}", dp.stats());
}

/// A Geneve datagram (UDP payload) carrying a 64-byte inner frame, VNI
/// `vni`, and one option class 0x0102 type 0x80 with 4 bytes of data.
fn geneve(vni: u32, sport: u16) -> Vec<u8> {
    let mut inner = Vec::new();
    PacketBuilder::ethernet2(A, B)
        .ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
        .udp(sport, 53)
        .write(&mut inner, &[0u8; 18])
        .expect("inner");
    // Version 0, options length 2 words (one 8-byte option).
    let mut g = vec![
        0x02,
        0x00,
        0x65,
        0x58, // Transparent Ethernet Bridging
        (vni >> 16) as u8,
        (vni >> 8) as u8,
        vni as u8,
        0,
    ];
    // Option: class, type, length 1 word (4 bytes of data).
    g.extend_from_slice(&[0x01, 0x02, 0x80, 0x01, 0xde, 0xad, 0xbe, 0xef]);
    g.extend_from_slice(&inner);
    g
}

fn geneve_decap(
    g: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    now: Instant,
) {
    let (mut dp, _) = datapath(
        "priority=10,in_port=1,tun_id=5,tun_metadata0=0xdeadbeef,actions=output:2\n\
         priority=0,actions=drop\n",
    );
    let map = TlvMap::default()
        .with_added(&[
            TlvMapping::parse("{class=0x0102,type=0x80,len=4}->tun_metadata0").expect("mapping"),
        ])
        .expect("tlv map");
    let policy = DecapPolicy {
        port: 6081,
        ..DecapPolicy::default()
    };
    let from = RecvInfo {
        src: Some(SocketAddr::new(
            IpAddr::V4(Ipv4Addr::new(192, 0, 2, 2)),
            50000,
        )),
        dst: Some(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1))),
        tos: 0,
        ttl: 64,
        ..RecvInfo::default()
    };
    let dgrams: Vec<Vec<u8>> = (0..16u16).map(|i| geneve(5, 1000 + i)).collect();
    let mut batch = Batch::new();
    let mut next = 0;
    g.bench_function("geneve_decap_forward", |b| {
        b.iter(|| {
            for _ in 0..MAX_BURST {
                let d = &dgrams[next];
                next = (next + 1) % dgrams.len();
                let mut p = dp.pool().get_from(d);
                if decap(&mut p, &from, &policy, &map).is_ok() {
                    p.meta.in_port = 1;
                    let _ = batch.push(p);
                } else {
                    dp.pool().put(p);
                }
            }
            dp.process_batch(&mut batch, now);
            dp.flush_tx();
        })
    });
    let s = dp.stats();
    eprintln!("geneve_decap_forward: {s:?}");
}

fn vlan(g: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>, now: Instant) {
    let udp = |tag: Option<u16>, sport: u16| {
        let mut v = Vec::new();
        let b = PacketBuilder::ethernet2(A, B);
        match tag {
            Some(t) => b
                .single_vlan(t.try_into().expect("vid"))
                .ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
                .udp(sport, 53)
                .write(&mut v, &[0u8; 14]),
            None => b
                .ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
                .udp(sport, 53)
                .write(&mut v, &[0u8; 18]),
        }
        .expect("frame");
        v
    };
    let (mut dp, _) = datapath(
        "priority=10,in_port=1,actions=mod_vlan_vid:100,output:2\n\
         priority=10,in_port=2,dl_vlan=100,actions=strip_vlan,output:1\n",
    );
    let untagged: Vec<Vec<u8>> = (0..16u16).map(|i| udp(None, 1000 + i)).collect();
    let tagged: Vec<Vec<u8>> = (0..16u16).map(|i| udp(Some(100), 1000 + i)).collect();
    let mut batch = Batch::new();
    let mut next = 0;
    g.bench_function("vlan_push", |b| {
        b.iter(|| run(&mut dp, &untagged, &mut next, &mut batch, 1, now))
    });
    eprintln!("vlan_push: {:?}", dp.stats());
    g.bench_function("vlan_pop", |b| {
        b.iter(|| run(&mut dp, &tagged, &mut next, &mut batch, 2, now))
    });
    eprintln!("vlan_pop: {:?}", dp.stats());
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("pipeline_features");
    g.throughput(Throughput::Elements(MAX_BURST as u64));
    let now = Instant::now();
    let mut pool = PacketPool::new(2048);
    let frames: Vec<Vec<u8>> = (0..16u16)
        .map(|i| tcp(true, 40000 + i, 1001, 5001, false))
        .collect();
    g.bench_function("baseline_copy", |b| {
        let mut batch = Batch::new();
        let mut next = 0;
        b.iter(|| {
            for _ in 0..MAX_BURST {
                let f = &frames[next];
                next = (next + 1) % frames.len();
                let _ = batch.push(pool.get_from(f));
            }
            batch.recycle(&mut pool);
        })
    });
    firewall(&mut g, now);
    geneve_decap(&mut g, now);
    vlan(&mut g, now);
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
