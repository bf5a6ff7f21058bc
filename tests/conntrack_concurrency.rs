//! Several datapath workers drive different connections through one
//! tracker at once; a sweeper runs alongside. Checks correctness (every
//! verdict, final states, counts), not timing.

mod conntrack_common;
use conntrack_common::*;

use std::sync::Arc;
use vswitch::conntrack::{ConnTracker, CtConfig, CtParams, TcpState, TimeoutKind};

const THREADS: u16 = 4;
const CONNS: u16 = 200;

fn frame_set(t: u16, c: u16) -> [Vec<u8>; 4] {
    let sport = 10_000 + t * 1000 + c;
    let client = [10, 1, t as u8, 1];
    [
        tcp4(client, SERVER, Seg::new(sport, 80, 1000, syn())),
        tcp4(SERVER, client, Seg::new(80, sport, 5000, syn_ack(1001))),
        tcp4(client, SERVER, Seg::new(sport, 80, 1001, ack(5001))),
        pad60(
            tcp4(SERVER, client, Seg::new(80, sport, 5001, fin_ack(1001))),
            0xee,
        ),
    ]
}

#[test]
fn workers_on_different_connections() {
    let ct = Arc::new(ConnTracker::new(CtConfig::default()));
    let base = std::time::Instant::now();
    let workers: Vec<_> = (0..THREADS)
        .map(|t| {
            let ct = Arc::clone(&ct);
            std::thread::spawn(move || {
                let mut bad = Vec::new();
                for c in 0..CONNS {
                    let frames = frame_set(t, c);
                    let want = [TRK | NEW, TRK | EST | RPL, TRK | EST, TRK | EST | RPL];
                    for (f, w) in frames.iter().zip(want) {
                        let (key, mut meta) = key_meta(f);
                        let p = CtParams {
                            zone: t % 2,
                            commit: true,
                            ..CtParams::default()
                        };
                        let v = ct.process(f, &key, &mut meta, &p, base);
                        if v.state != w {
                            bad.push((c, v));
                        }
                    }
                }
                bad
            })
        })
        .collect();
    let sweeper = {
        let ct = Arc::clone(&ct);
        std::thread::spawn(move || (0..200).map(|_| ct.sweep(base)).sum::<usize>())
    };
    for w in workers {
        let bad = w.join().expect("worker");
        assert!(bad.is_empty(), "{bad:?}");
    }
    assert_eq!(
        sweeper.join().expect("sweeper"),
        0,
        "nothing expired at t=0"
    );
    assert_eq!(ct.len(), usize::from(THREADS * CONNS));
    let dump = ct.dump(None, base);
    assert_eq!(dump.len(), usize::from(THREADS * CONNS));
    assert!(dump
        .iter()
        .all(|c| c.tcp.map(|t| t.state) == Some(TcpState::FinWait)));
    let s = ct.stats();
    assert_eq!(s.invalid.values().sum::<u64>(), 0);
    assert_eq!(
        s.zones.iter().map(|z| z.tcp).sum::<u64>(),
        u64::from(THREADS * CONNS)
    );
    // All of them expire together (FIN_WAIT: 15 min).
    assert_eq!(ct.sweep(base + secs(15 * 60)), usize::from(THREADS * CONNS));
    assert!(ct.is_empty());
}

#[test]
fn workers_on_the_same_connection_keep_it_consistent() {
    // Four threads push in-window ACKs of one connection concurrently:
    // each update is atomic under the entry's own lock, so none is judged
    // invalid and the entry stays ESTABLISHED.
    let h = Arc::new(H::new());
    handshake(&h, 0);
    let ts: Vec<_> = (0..4)
        .map(|_| {
            let h = Arc::clone(&h);
            std::thread::spawn(move || {
                let a = tcp4(CLIENT, SERVER, Seg::new(40000, 80, 1001, ack(5001)));
                (0..500)
                    .filter(|_| h.ct(&a, 0, false, secs(1)).state != TRK | EST)
                    .count()
            })
        })
        .collect();
    for t in ts {
        assert_eq!(t.join().expect("thread"), 0);
    }
    assert_eq!(
        h.only(secs(1)).tcp.map(|t| t.state),
        Some(TcpState::Established)
    );
}

#[test]
fn tracker_is_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<ConnTracker>();
}

/// Workers race on the established path (lock-free lookup, the entry's
/// own lock) and on the path under the shard lock at once: four threads
/// push ACKs of the same 8 connections in both directions, and each
/// churns 16 more tuples all of them share (handshake, ACKs, RST, then a
/// SYN on the same tuple that reopens it) and UDP flows, while a flusher deletes
/// the churned zone and a sweeper, a minute ahead, expires the UDP
/// entries under the workers' feet. Afterwards: the shared connections
/// are intact and every verdict on them was established; no key is
/// tracked twice; the entry count, the dump and the per-zone counts
/// agree; and a zone limit still admits exactly what it should (the
/// per-zone counters neither leaked nor underflowed).
#[test]
fn established_path_races_inserts_removals_flushes_and_sweeps() {
    use std::collections::HashSet;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::mpsc;
    const SHARED: u16 = 8;
    const ROUNDS: u16 = 1000;
    let h = Arc::new(H::new());
    for c in 0..SHARED {
        let sport = 30_000 + c;
        let s = tcp4(CLIENT, SERVER, Seg::new(sport, 80, 1000, syn()));
        assert_eq!(h.firewall(&s, 0, secs(0)), (true, TRK | NEW));
        let sa = tcp4(SERVER, CLIENT, Seg::new(80, sport, 5000, syn_ack(1001)));
        assert_eq!(h.firewall(&sa, 0, secs(0)).1, TRK | EST | RPL);
        let a = tcp4(CLIENT, SERVER, Seg::new(sport, 80, 1001, ack(5001)));
        assert_eq!(h.firewall(&a, 0, secs(0)).1, TRK | EST);
    }
    // Zone 3's entries outlive every sweep below.
    for k in [
        TimeoutKind::UdpFirst,
        TimeoutKind::UdpSingle,
        TimeoutKind::UdpMultiple,
    ] {
        h.ct.set_timeout(Some(3), k, 3600);
    }
    let stop = Arc::new(AtomicBool::new(false));
    let start = Arc::new(std::sync::Barrier::new(4));
    let (done_tx, done_rx) = mpsc::channel::<()>();
    let workers: Vec<_> = (0..4u8)
        .map(|t| {
            let h = Arc::clone(&h);
            let done = done_tx.clone();
            let start = Arc::clone(&start);
            std::thread::spawn(move || {
                let mut bad = Vec::new();
                // Every worker churns the same tuples: commits of one
                // key race (after a flush, a sweep or a reopen removed
                // it), which must never track it twice.
                let client = [10, 2, 0, 1];
                for r in 0..ROUNDS {
                    // All four commit the same new flow at once: one
                    // entry, whoever wins.
                    start.wait();
                    let n = udp4(CLIENT, SERVER, 1000 + r, 53, b"n");
                    h.ct(&n, 3, true, secs(0));
                    // The shared connections, both directions.
                    for c in 0..SHARED {
                        let sport = 30_000 + c;
                        let a = tcp4(CLIENT, SERVER, Seg::new(sport, 80, 1001, ack(5001)));
                        let b = tcp4(SERVER, CLIENT, Seg::new(80, sport, 5001, ack(1001)));
                        let va = h.ct(&a, 0, true, secs(0)).state;
                        let vb = h.ct(&b, 0, false, secs(0)).state;
                        if va != TRK | EST || vb != TRK | EST | RPL {
                            bad.push((r, c, va, vb));
                        }
                    }
                    // Made, used, reset, reopened: the worker's place in
                    // the 16 tuples differs so the steps interleave.
                    let sport = 20_000 + (r + u16::from(t) * 4) % 16;
                    let syn_f = tcp4(client, SERVER, Seg::new(sport, 80, 1000, syn()));
                    let sa = tcp4(SERVER, client, Seg::new(80, sport, 5000, syn_ack(1001)));
                    let a = tcp4(client, SERVER, Seg::new(sport, 80, 1001, ack(5001)));
                    let rst_f = tcp4(SERVER, client, Seg::new(80, sport, 5001, rst()));
                    for f in [&syn_f, &sa, &a, &a, &rst_f] {
                        h.ct(f, 1, true, secs(0));
                    }
                    // UDP flows: extended here, expired by the sweeper.
                    let u = udp4(client, SERVER, 5000 + r % 32, 53, b"q");
                    let ur = udp4(SERVER, client, 53, 5000 + r % 32, b"a");
                    h.ct(&u, 2, true, secs(0));
                    h.ct(&ur, 2, false, secs(0));
                }
                let _ = done.send(());
                bad
            })
        })
        .collect();
    drop(done_tx);
    let flusher = {
        let h = Arc::clone(&h);
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || {
            let mut n = 0;
            for _ in 0..100_000 {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                n += h.ct.flush(Some(1));
                std::thread::yield_now();
            }
            n
        })
    };
    let sweeper = {
        let h = Arc::clone(&h);
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || {
            let mut n = 0;
            for i in 0..100_000u64 {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                // Ahead of the workers' clock: UDP entries are due.
                n += h.ct.sweep(h.base + secs(60 + i / 100));
                std::thread::yield_now();
            }
            n
        })
    };
    // A lock cycle would hang here: bounded, and said so.
    for _ in 0..4 {
        done_rx
            .recv_timeout(std::time::Duration::from_secs(600))
            .expect("a worker made no progress for 10 minutes: lock cycle");
    }
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        let bad = w.join().expect("worker");
        assert!(bad.is_empty(), "shared connections judged: {bad:?}");
    }
    flusher.join().expect("flusher");
    sweeper.join().expect("sweeper");

    // Nothing is expired at the workers' clock: every entry is dumped.
    let dump = h.ct.dump(None, h.base);
    let keys: HashSet<String> = dump
        .iter()
        .map(|c| format!("{} {} {:?}", c.zone, c.proto, c.orig))
        .collect();
    assert_eq!(keys.len(), dump.len(), "a key tracked twice: {dump:#?}");
    assert_eq!(h.ct.len(), dump.len());
    let s = h.ct.stats();
    assert_eq!(s.entries as usize, dump.len());
    for z in &s.zones {
        let n = dump.iter().filter(|c| c.zone == z.zone).count() as u64;
        assert_eq!(z.total, n, "zone {}", z.zone);
    }
    assert_eq!(
        dump.iter().filter(|c| c.zone == 3).count(),
        usize::from(ROUNDS),
        "each flow committed at once by four workers is tracked once"
    );
    let shared: Vec<_> = dump.iter().filter(|c| c.zone == 0).collect();
    assert_eq!(shared.len(), usize::from(SHARED));
    assert!(shared
        .iter()
        .all(|c| c.tcp.map(|t| t.state) == Some(TcpState::Established)));

    // The per-zone counters: after a flush, a limit of 2 in zone 1
    // admits two connections and refuses the third.
    h.ct.flush(None);
    assert!(h.ct.is_empty());
    h.ct.set_limit(Some(1), Some(2));
    let verdicts: Vec<u8> = (0..3u16)
        .map(|i| {
            let f = tcp4(CLIENT, SERVER, Seg::new(50_000 + i, 80, 1000, syn()));
            h.ct(&f, 1, true, secs(0)).state
        })
        .collect();
    assert_eq!(verdicts, [TRK | NEW, TRK | NEW, TRK | INV]);
    assert_eq!(h.ct.len(), 2);
}
