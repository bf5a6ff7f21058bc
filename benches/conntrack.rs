//! Conntrack benches (criterion): a packet of an established connection
//! (lookup + TCP state update, checksum validated), a new connection
//! commit, expiry of many entries (per entry), and a 4 KB UDP datagram in
//! three IPv4 fragments through reassembly and tracking (per datagram).
//!
//! Targets on one core: >= 5 Mpps established, >= 1 M new connections/s.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use vswitch::conntrack::{ChecksumPolicy, ConnTracker, CtConfig, CtParams, FragVerdict};
use vswitch::packet::{PacketBuf, PacketMeta};
use vswitch::wire::checksum;

const FIN: u8 = 0x01;
const SYN: u8 = 0x02;
const ACK: u8 = 0x10;

#[path = "support/ct_frames.rs"]
mod ct_frames;
use ct_frames::{key, meta, tcp_frame};

const CLIENT: u32 = 0x0a00_0001;
const SERVER: u32 = 0x0a00_0002;

/// Opens `n` connections (client ports 1024.., several client addresses)
/// and returns one bare ACK per connection.
fn established(ct: &ConnTracker, n: u32, now: Instant) -> Vec<[u8; 60]> {
    let commit = CtParams {
        commit: true,
        ..CtParams::default()
    };
    let k = key();
    (0..n)
        .map(|i| {
            let c = CLIENT + (i / 50_000) * 256;
            let sp = 1024 + (i % 50_000) as u16;
            for f in [
                tcp_frame(c, SERVER, sp, 80, 1000, 0, SYN),
                tcp_frame(SERVER, c, 80, sp, 5000, 1001, SYN | ACK),
                tcp_frame(c, SERVER, sp, 80, 1001, 5001, ACK),
            ] {
                ct.process(&f, &k, &mut meta(), &commit, now);
            }
            tcp_frame(c, SERVER, sp, 80, 1001, 5001, ACK)
        })
        .collect()
}

fn bench_established(c: &mut Criterion) {
    let mut g = c.benchmark_group("conntrack_established");
    g.throughput(Throughput::Elements(1));
    for n in [1u32, 100_000] {
        let ct = ConnTracker::new(CtConfig::default());
        let now = Instant::now();
        let frames = established(&ct, n, now);
        let k = key();
        let p = CtParams::default();
        let mut i = 0usize;
        g.bench_function(format!("ack_validate_{n}_conns"), |b| {
            b.iter(|| {
                let f = &frames[i % frames.len()];
                i = i.wrapping_add(1);
                let mut m = meta();
                black_box(ct.process(black_box(f), &k, &mut m, &p, now))
            })
        });
        // A FIN+ACK would change state; keep measuring the common case but
        // make sure the tracker agrees those ACKs were fine.
        let s = ct.stats();
        assert_eq!(s.invalid.values().sum::<u64>(), 0);
        let _ = FIN;
    }
    g.finish();
}

fn bench_commit(c: &mut Criterion) {
    let mut g = c.benchmark_group("conntrack_new");
    g.throughput(Throughput::Elements(1));
    const CHUNK: u64 = 200_000;
    // Frames prepared outside the timed region, a fresh tracker per chunk
    // so the table never grows past CHUNK entries.
    let frames: Vec<[u8; 60]> = (0..CHUNK as u32)
        .map(|i| {
            let c = CLIENT + (i / 50_000) * 256;
            tcp_frame(c, SERVER, 1024 + (i % 50_000) as u16, 80, 1000, 0, SYN)
        })
        .collect();
    let k = key();
    let commit = CtParams {
        commit: true,
        ..CtParams::default()
    };
    g.bench_function("syn_commit_validate", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            let mut left = iters;
            while left > 0 {
                let n = left.min(CHUNK);
                let ct = ConnTracker::new(CtConfig::default());
                let now = Instant::now();
                let t0 = Instant::now();
                for f in &frames[..n as usize] {
                    black_box(ct.process(f, &k, &mut meta(), &commit, now));
                }
                total += t0.elapsed();
                assert_eq!(ct.len(), n as usize);
                left -= n;
            }
            total
        })
    });
    g.finish();
}

fn bench_expiry(c: &mut Criterion) {
    let mut g = c.benchmark_group("conntrack_expiry");
    const N: u32 = 100_000;
    g.throughput(Throughput::Elements(u64::from(N)));
    g.sample_size(10);
    let k = key();
    let commit = CtParams {
        commit: true,
        ..CtParams::default()
    };
    g.bench_function("sweep_100k_expired", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let ct = ConnTracker::new(CtConfig {
                    checksum: ChecksumPolicy::Skip,
                    ..CtConfig::default()
                });
                let now = Instant::now();
                for i in 0..N {
                    let f = tcp_frame(
                        CLIENT + (i / 50_000) * 256,
                        SERVER,
                        1024 + (i % 50_000) as u16,
                        80,
                        1,
                        0,
                        SYN,
                    );
                    ct.process(&f, &k, &mut meta(), &commit, now);
                }
                // SYN_SENT times out after 30 s.
                let later = now + Duration::from_secs(31);
                let t0 = Instant::now();
                let n = ct.sweep(later);
                total += t0.elapsed();
                assert_eq!(n, N as usize);
            }
            total
        })
    });
    g.finish();
}

/// A 4000-byte UDP datagram 10.0.0.1:5353 -> 10.0.0.2:53 (checksums
/// valid) cut into IPv4 fragments of 1480 data bytes, as a 1500-byte MTU
/// router would.
fn udp_fragments() -> Vec<Vec<u8>> {
    let mut whole = Vec::new();
    etherparse::PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
        .ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
        .udp(5353, 53)
        .write(&mut whole, &[0x5a; 4000])
        .expect("write");
    let ip_len = usize::from(u16::from_be_bytes([whole[16], whole[17]]));
    let data = &whole[34..14 + ip_len];
    data.chunks(1480)
        .enumerate()
        .map(|(i, chunk)| {
            let mut f = whole[..34].to_vec();
            f.extend_from_slice(chunk);
            let tot = (20 + chunk.len()) as u16;
            f[16..18].copy_from_slice(&tot.to_be_bytes());
            let off = (i * 1480 / 8) as u16;
            let mf = if (i + 1) * 1480 < data.len() {
                0x2000
            } else {
                0
            };
            f[20..22].copy_from_slice(&(mf | off).to_be_bytes());
            f[24..26].copy_from_slice(&[0, 0]);
            let c = checksum::checksum(&f[14..34]);
            f[24..26].copy_from_slice(&c.to_be_bytes());
            f
        })
        .collect()
}

fn bench_fragments(c: &mut Criterion) {
    let mut g = c.benchmark_group("conntrack_fragments");
    g.throughput(Throughput::Elements(1));
    let frames = udp_fragments();
    assert_eq!(frames.len(), 3);
    let ct = ConnTracker::new(CtConfig::default());
    let now = Instant::now();
    let k = key();
    let commit = CtParams {
        commit: true,
        ..CtParams::default()
    };
    // Buffers recycled as a datapath's pool would: the cost measured is
    // copying each fragment in, holding, reassembling and tracking.
    let mut bufs: Vec<PacketBuf> = frames.iter().map(|f| PacketBuf::from_slice(f)).collect();
    g.bench_function("udp_4k_in_3_fragments", |b| {
        b.iter(|| {
            let mut done = None;
            for f in &frames {
                let mut p = bufs.pop().unwrap_or_else(|| PacketBuf::from_slice(f));
                p.set_data(f);
                p.meta = PacketMeta {
                    l3_ofs: 14,
                    ..PacketMeta::default()
                };
                match ct.process_fragment(p, &k, &commit, now).verdict {
                    FragVerdict::Held => {}
                    FragVerdict::Complete(v) => done = Some(v),
                    v => panic!("unexpected {v:?}"),
                }
            }
            let v = done.expect("the third fragment completes the datagram");
            black_box(v[0].meta.ct_state);
            bufs.extend(v);
        })
    });
    let s = ct.stats();
    assert_eq!(s.invalid.values().sum::<u64>(), 0);
    assert_eq!(s.entries, 1);
    g.finish();
}

criterion_group!(
    benches,
    bench_established,
    bench_commit,
    bench_expiry,
    bench_fragments
);
criterion_main!(benches);
