//! Key extraction cost per packet: `flow::extract::extract` against two
//! etherparse baselines measured in the same run, on 64-byte frames.
//!
//! * `etherparse_header_slices`: `Ethernet2HeaderSlice`, `Ipv4HeaderSlice`
//!   and `TcpHeaderSlice` / `UdpHeaderSlice`, the cheapest way etherparse
//!   offers to read these headers;
//! * `etherparse_sliced_packet`: `SlicedPacket::from_ethernet`, the generic
//!   slicer.
//!
//! Every variant writes the same fields into a `FlowKey`, so the work
//! compared is "frame to key". Run with
//! `cargo bench --bench extract -- --warm-up-time 1 --measurement-time 3`.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use etherparse::{
    Ethernet2HeaderSlice, Ipv4HeaderSlice, NetSlice, PacketBuilder, SlicedPacket, TcpHeaderSlice,
    TransportSlice, UdpHeaderSlice,
};
use vswitch::flow::extract::extract;
use vswitch::flow::FlowKey;
use vswitch::packet::PacketMeta;

fn tcp64() -> Vec<u8> {
    // 14 + 20 + 20 + 10 bytes of payload = 64.
    let b = PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
        .ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
        .tcp(40000, 80, 1, 65535)
        .ack(1)
        .psh();
    let mut v = Vec::new();
    b.write(&mut v, &[0x61; 10]).unwrap();
    assert_eq!(v.len(), 64);
    v
}

fn udp64() -> Vec<u8> {
    // 14 + 20 + 8 + 22 = 64.
    let b = PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
        .ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
        .udp(5353, 53);
    let mut v = Vec::new();
    b.write(&mut v, &[0x62; 22]).unwrap();
    assert_eq!(v.len(), 64);
    v
}

fn mac_u64(m: [u8; 6]) -> u64 {
    u64::from_be_bytes([0, 0, m[0], m[1], m[2], m[3], m[4], m[5]])
}

/// Per-header slices: what a hand-written etherparse fast path would do.
fn etherparse_header_slices(frame: &[u8], key: &mut FlowKey) -> bool {
    *key = FlowKey::default();
    let Ok(eth) = Ethernet2HeaderSlice::from_slice(frame) else {
        return false;
    };
    key.set_dl_src_u64(mac_u64(eth.source()));
    key.set_dl_dst_u64(mac_u64(eth.destination()));
    key.set_dl_type(eth.ether_type().0);
    let l3 = &frame[eth.slice().len()..];
    let Ok(ip) = Ipv4HeaderSlice::from_slice(l3) else {
        return false;
    };
    key.set_nw_src(u32::from_be_bytes(ip.source()));
    key.set_nw_dst(u32::from_be_bytes(ip.destination()));
    key.set_nw_ttl(ip.ttl());
    key.set_nw_tos((ip.dcp().value() << 2) | ip.ecn().value());
    key.set_nw_proto(ip.protocol().0);
    let end = usize::from(ip.total_len()).min(l3.len());
    let l4 = &l3[ip.slice().len()..end];
    match ip.protocol().0 {
        6 => {
            let Ok(t) = TcpHeaderSlice::from_slice(l4) else {
                return false;
            };
            key.set_tp_src(t.source_port());
            key.set_tp_dst(t.destination_port());
            key.set_tcp_flags(u16::from_be_bytes([t.slice()[12], t.slice()[13]]) & 0x0fff);
        }
        17 => {
            let Ok(u) = UdpHeaderSlice::from_slice(l4) else {
                return false;
            };
            key.set_tp_src(u.source_port());
            key.set_tp_dst(u.destination_port());
        }
        _ => {}
    }
    true
}

/// The generic slicer.
fn etherparse_sliced_packet(frame: &[u8], key: &mut FlowKey) -> bool {
    *key = FlowKey::default();
    let Ok(sp) = SlicedPacket::from_ethernet(frame) else {
        return false;
    };
    if let Some(etherparse::LinkSlice::Ethernet2(e)) = &sp.link {
        key.set_dl_src_u64(mac_u64(e.source()));
        key.set_dl_dst_u64(mac_u64(e.destination()));
        key.set_dl_type(e.ether_type().0);
    }
    if let Some(NetSlice::Ipv4(ip)) = &sp.net {
        let h = ip.header();
        key.set_nw_src(u32::from_be_bytes(h.source()));
        key.set_nw_dst(u32::from_be_bytes(h.destination()));
        key.set_nw_ttl(h.ttl());
        key.set_nw_tos((h.dcp().value() << 2) | h.ecn().value());
        key.set_nw_proto(h.protocol().0);
    }
    match &sp.transport {
        Some(TransportSlice::Tcp(t)) => {
            key.set_tp_src(t.source_port());
            key.set_tp_dst(t.destination_port());
            key.set_tcp_flags(u16::from_be_bytes([t.slice()[12], t.slice()[13]]) & 0x0fff);
        }
        Some(TransportSlice::Udp(u)) => {
            key.set_tp_src(u.source_port());
            key.set_tp_dst(u.destination_port());
        }
        _ => {}
    }
    true
}

fn bench(c: &mut Criterion) {
    for (name, frame) in [("tcp_ipv4_64B", tcp64()), ("udp_ipv4_64B", udp64())] {
        // The three must read the same key before we time them.
        let mut meta = PacketMeta::default();
        let mut k0 = FlowKey::default();
        extract(&frame, &mut meta, &mut k0).unwrap();
        let mut k1 = FlowKey::default();
        assert!(etherparse_header_slices(&frame, &mut k1));
        let mut k2 = FlowKey::default();
        assert!(etherparse_sliced_packet(&frame, &mut k2));
        assert_eq!(k0, k1);
        assert_eq!(k0, k2);

        let mut g = c.benchmark_group(format!("extract/{name}"));
        g.throughput(Throughput::Elements(1));
        g.bench_function("vswitch_extract", |b| {
            let mut meta = PacketMeta::default();
            let mut key = FlowKey::default();
            b.iter(|| {
                let r = extract(black_box(&frame), &mut meta, &mut key);
                black_box((&r, &key, meta.l4_ofs));
            })
        });
        g.bench_function("etherparse_header_slices", |b| {
            let mut key = FlowKey::default();
            b.iter(|| {
                let ok = etherparse_header_slices(black_box(&frame), &mut key);
                black_box((ok, &key));
            })
        });
        g.bench_function("etherparse_sliced_packet", |b| {
            let mut key = FlowKey::default();
            b.iter(|| {
                let ok = etherparse_sliced_packet(black_box(&frame), &mut key);
                black_box((ok, &key));
            })
        });
        g.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
