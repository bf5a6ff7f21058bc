//! Does the control plane stall forwarding at 1,000,000 tracked
//! connections? One thread plays the datapath: it validates bare ACKs of
//! established connections as fast as it can and records the longest gap
//! between two consecutive packets. Meanwhile the main thread runs, one
//! after the other, what an operator or the timer does at that size:
//! `dump-conntrack`, the expiry of 500,000 connections at once, and a
//! `flush-conntrack` of a zone holding 500,000. Each line prints the
//! longest single packet (one `process` call: where waiting for a shard
//! lock shows) and the longest gap between two packets while that
//! operation ran, beside both in a quiet period of the same length (the
//! machine's own noise: the scheduler, other load). Target: no operation
//! adds a stall over 1 ms.
//!
//! `cargo bench --bench conntrack_stalls` (release build; about a minute).
//! `STALL_CONNS=N` changes the table size.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use vswitch::conntrack::{ChecksumPolicy, ConnTracker, CtConfig, CtParams};

const SYN: u8 = 0x02;
const ACK: u8 = 0x10;
const SERVER: u32 = 0x0a00_0002;

#[path = "support/ct_frames.rs"]
mod ct_frames;
use ct_frames::{key, meta, tcp_frame};

/// Client `i`'s address and port (50,000 ports per address).
fn client(i: u32) -> (u32, u16) {
    (0x0a01_0000 + (i / 50_000) * 256, 1024 + (i % 50_000) as u16)
}

/// The longest gap the packet thread saw since the last reset, in µs.
struct Gaps {
    max_ns: AtomicU64,
    /// The longest single `process` call: a packet waiting for a shard
    /// lock shows here, while preemption of the thread between packets
    /// (the machine's other load) shows only in `max_ns`.
    max_call_ns: AtomicU64,
    packets: AtomicU64,
    stop: AtomicBool,
}

fn quiet(g: &Gaps, d: Duration) -> (u64, u64) {
    g.max_ns.store(0, Relaxed);
    g.max_call_ns.store(0, Relaxed);
    std::thread::sleep(d);
    (g.max_ns.swap(0, Relaxed), g.max_call_ns.swap(0, Relaxed))
}

fn during(g: &Gaps, f: impl FnOnce() -> usize) -> ((u64, u64), Duration, usize) {
    g.max_ns.store(0, Relaxed);
    g.max_call_ns.store(0, Relaxed);
    let t0 = Instant::now();
    let n = f();
    let took = t0.elapsed();
    (
        (g.max_ns.swap(0, Relaxed), g.max_call_ns.swap(0, Relaxed)),
        took,
        n,
    )
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` runs this as
    // a smoke test with a small table.
    let smoke = !std::env::args().any(|a| a == "--bench");
    let n: u32 = std::env::var("STALL_CONNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if smoke { 20_000 } else { 1_000_000 });
    let half = n / 2;
    let ct = Arc::new(ConnTracker::new(CtConfig {
        checksum: ChecksumPolicy::Skip,
        ..CtConfig::default()
    }));
    let t0 = Instant::now();
    let k = key();
    // The first half: established in zone 0, the packet thread's traffic.
    // The second half: opened (SYN only, 30 s to live) in zone 7.
    let est = CtParams {
        commit: true,
        ..CtParams::default()
    };
    let opening = CtParams {
        commit: true,
        zone: 7,
        ..CtParams::default()
    };
    let mut acks = Vec::with_capacity(half as usize);
    for i in 0..n {
        let (c, sp) = client(i);
        if i < half {
            for f in [
                tcp_frame(c, SERVER, sp, 80, 1000, 0, SYN),
                tcp_frame(SERVER, c, 80, sp, 5000, 1001, SYN | ACK),
                tcp_frame(c, SERVER, sp, 80, 1001, 5001, ACK),
            ] {
                ct.process(&f, &k, &mut meta(), &est, t0);
            }
            acks.push(tcp_frame(c, SERVER, sp, 80, 1001, 5001, ACK));
        } else {
            let f = tcp_frame(c, SERVER, sp, 80, 1000, 0, SYN);
            ct.process(&f, &k, &mut meta(), &opening, t0);
        }
    }
    println!(
        "{} connections tracked in {:.1} s, {:.0} MiB",
        ct.len(),
        t0.elapsed().as_secs_f64(),
        ct.memory_usage() as f64 / (1 << 20) as f64
    );

    // Every call from here on is 31 s later: the SYN-only half has expired
    // (SYN_SENT lasts 30 s) but is still in the table until swept.
    let later = t0 + Duration::from_secs(31);
    let gaps = Arc::new(Gaps {
        max_ns: AtomicU64::new(0),
        max_call_ns: AtomicU64::new(0),
        packets: AtomicU64::new(0),
        stop: AtomicBool::new(false),
    });
    let worker = {
        let (ct, gaps) = (ct.clone(), gaps.clone());
        std::thread::spawn(move || {
            let p = CtParams::default();
            let k = key();
            let mut last = Instant::now();
            let mut i = 0usize;
            while !gaps.stop.load(Relaxed) {
                let f = &acks[i % acks.len()];
                i = i.wrapping_add(7919);
                let t = Instant::now();
                ct.process(f, &k, &mut meta(), &p, later);
                let now = Instant::now();
                gaps.max_call_ns
                    .fetch_max(now.duration_since(t).as_nanos() as u64, Relaxed);
                let gap = now.duration_since(last).as_nanos() as u64;
                last = now;
                gaps.max_ns.fetch_max(gap, Relaxed);
                gaps.packets.fetch_add(1, Relaxed);
            }
        })
    };
    std::thread::sleep(Duration::from_millis(200));
    let us = |ns: u64| ns as f64 / 1e3;
    let report = |what: &str, ((gap, call), took, count): ((u64, u64), Duration, usize)| {
        let (qgap, qcall) = quiet(&gaps, took.max(Duration::from_millis(50)));
        println!(
            "{what:<36} {count:>7} entries in {:>6.1} ms: longest packet {:>7.1} µs, gap {:>7.1} µs (quiet period: {:>6.1} / {:>7.1} µs)",
            took.as_secs_f64() * 1e3,
            us(call),
            us(gap),
            us(qcall),
            us(qgap)
        );
    };
    report(
        "dump-conntrack (all)",
        during(&gaps, || ct.dump(None, later).len()),
    );
    report(
        "expiry (sweep) of the SYN-only half",
        during(&gaps, || ct.sweep(later)),
    );
    // Re-open the second half in zone 7, then flush that zone.
    for i in half..n {
        let (c, sp) = client(i);
        let f = tcp_frame(c, SERVER, sp, 80, 1000, 0, SYN);
        ct.process(&f, &k, &mut meta(), &opening, later);
    }
    report(
        "flush-conntrack zone=7",
        during(&gaps, || ct.flush(Some(7))),
    );
    gaps.stop.store(true, Relaxed);
    let _ = worker.join();
    let s = ct.stats();
    assert_eq!(
        s.invalid.values().sum::<u64>(),
        0,
        "the packet thread's ACKs all stayed valid"
    );
    println!(
        "packets validated meanwhile: {}",
        gaps.packets.load(Relaxed)
    );
}
