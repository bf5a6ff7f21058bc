//! Memory per tracked connection with 1,000,000 connections: at most 256
//! bytes. Measured two ways: the tracker's own accounting of every
//! allocation it holds (slab capacity, hash index allocation, wheels,
//! fixed arrays), and the growth of the process RSS while inserting (this
//! test is alone in its binary, so nothing else allocates meanwhile).

use std::time::Instant;

use vswitch::conntrack::{ChecksumPolicy, ConnTracker, CtConfig, CtParams};
use vswitch::flow::FlowKey;
use vswitch::packet::PacketMeta;

fn rss_kib() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let l = s.lines().find(|l| l.starts_with("VmRSS:"))?;
    l.split_whitespace().nth(1)?.parse().ok()
}

/// A UDP frame 10.x.y.z:sport -> 10.0.0.2:53 (checksums not filled:
/// the tracker runs with ChecksumPolicy::Skip here).
fn frame(n: u32) -> [u8; 43] {
    let mut f = [0u8; 43];
    f[12] = 0x08;
    f[14] = 0x45;
    f[17] = 29; // IP total length
    f[22] = 64;
    f[23] = 17;
    f[26] = 10;
    f[27..30].copy_from_slice(&(n >> 8).to_be_bytes()[1..]);
    f[30..34].copy_from_slice(&[10, 0, 0, 2]);
    f[34..36].copy_from_slice(&(1024 + (n & 0xff) as u16).to_be_bytes());
    f[36..38].copy_from_slice(&53u16.to_be_bytes());
    f[38..40].copy_from_slice(&9u16.to_be_bytes());
    f
}

#[test]
fn one_million_connections_fit_in_256_bytes_each() {
    const N: u32 = 1_000_000;
    let ct = ConnTracker::new(CtConfig {
        checksum: ChecksumPolicy::Skip,
        ..CtConfig::default()
    });
    let mut key = FlowKey::default();
    key.set_dl_type(0x0800);
    let p = CtParams {
        commit: true,
        ..CtParams::default()
    };
    let now = Instant::now();
    let rss0 = rss_kib();
    for n in 0..N {
        let f = frame(n);
        let mut meta = PacketMeta {
            l3_ofs: 14,
            ..PacketMeta::default()
        };
        ct.process(&f, &key, &mut meta, &p, now);
    }
    let rss1 = rss_kib();
    assert_eq!(ct.len(), N as usize);
    let held = ct.memory_usage() as f64 / f64::from(N);
    let rss = rss0
        .zip(rss1)
        .map(|(a, b)| b.saturating_sub(a) as f64 * 1024.0 / f64::from(N));
    println!(
        "conntrack memory at {N} connections: tracker holds {held:.1} B/conn, \
         RSS grew {rss:.1?} B/conn"
    );
    assert!(held <= 256.0, "{held} bytes per connection");
    assert!(
        held > 64.0,
        "an entry cannot be that small: accounting is broken"
    );
    if let Some(r) = rss {
        assert!(r <= 256.0, "RSS grew {r} bytes per connection");
    }
    assert_eq!(ct.flush(None), N as usize);
}
