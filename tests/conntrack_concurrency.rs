//! Several datapath workers drive different connections through one
//! tracker at once; a sweeper runs alongside. Checks correctness (every
//! verdict, final states, counts), not timing.

mod conntrack_common;
use conntrack_common::*;

use std::sync::Arc;
use vswitch::conntrack::{ConnTracker, CtConfig, CtParams, TcpState};

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
    // each update is atomic under its shard lock, so none is judged
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
