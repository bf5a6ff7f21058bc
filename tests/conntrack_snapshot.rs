//! Handing a connection table to another tracker (the upgrade path):
//! established connections stay established, timeouts run on from what
//! they had left, limits still hold, and a damaged snapshot is an error.

mod conntrack_common;
use conntrack_common::*;

use vswitch::conntrack::{CtConfig, CtInvalidReason, SnapshotError, TcpState};

/// A tracker on the same simulated clock offsets, but its own epoch.
fn successor() -> H {
    H::new()
}

#[test]
fn established_tcp_stays_established_after_handover() {
    let old = H::new();
    handshake(&old, 3);
    // Some data each way, so the windows moved.
    let d = tcp4(
        CLIENT,
        SERVER,
        Seg {
            payload: &[7u8; 500],
            ..Seg::new(40000, 80, 1001, psh_ack(5001))
        },
    );
    assert_eq!(old.firewall(&d, 3, secs(1)), (true, TRK | EST));
    let snap = old.ct.export(old.at(2));

    let new = successor();
    let rep = new.ct.import(&snap, new.at(0)).expect("import");
    assert_eq!((rep.imported, rep.present, rep.refused), (1, 0, 0));
    // The next segments of both sides are +est, never +new or +inv.
    let a = tcp4(SERVER, CLIENT, Seg::new(80, 40000, 5001, ack(1501)));
    assert_eq!(new.firewall(&a, 3, secs(0)), (true, TRK | EST | RPL));
    let d2 = tcp4(
        CLIENT,
        SERVER,
        Seg {
            payload: &[8u8; 500],
            ..Seg::new(40000, 80, 1501, psh_ack(5001))
        },
    );
    assert_eq!(new.firewall(&d2, 3, secs(0)), (true, TRK | EST));
    // A segment far outside the window is still judged by the carried
    // window, not accepted as if the state were fresh.
    let far = tcp4(
        CLIENT,
        SERVER,
        Seg {
            payload: &[9u8; 100],
            ..Seg::new(40000, 80, 1501 + 0x4000_0000, psh_ack(5001))
        },
    );
    let v = new.ct(&far, 3, false, secs(0));
    assert_eq!(
        v.invalid.map(|d| d.reason),
        Some(CtInvalidReason::OutOfWindow)
    );
    let info = new.only(secs(0));
    assert_eq!(info.tcp.expect("tcp").state, TcpState::Established);
    assert_eq!(info.zone, 3);
    assert_eq!(new.total_invalid(), 1);
}

#[test]
fn timeouts_run_on_and_expired_entries_stay_behind() {
    let old = H::new();
    // A UDP flow seen once (udp_first, 60 s) at t=0.
    let u = udp4(CLIENT, SERVER, 5000, 53, b"q");
    assert_eq!(old.firewall(&u, 0, secs(0)), (true, TRK | NEW));
    // An echo request at t=0 (icmp_first, 60 s).
    let e = echo4(CLIENT, SERVER, 9, true);
    old.firewall(&e, 0, secs(0));
    // Handed over at t=50: 10 s left each.
    let snap = old.ct.export(old.at(50));
    let new = successor();
    assert_eq!(new.ct.import(&snap, new.at(0)).expect("import").imported, 2);
    assert_eq!(new.dump(secs(9)).len(), 2);
    assert_eq!(new.dump(secs(11)).len(), 0);
    // Exported after they expired: nothing to carry.
    let late = old.ct.export(old.at(61));
    let new2 = successor();
    assert_eq!(
        new2.ct.import(&late, new2.at(0)).expect("import").imported,
        0
    );
}

#[test]
fn import_keeps_present_entries_and_honours_limits() {
    let old = H::new();
    for port in 0..10u16 {
        let u = udp4(CLIENT, SERVER, 6000 + port, 53, b"q");
        old.firewall(&u, 4, secs(0));
    }
    let snap = old.ct.export(old.at(1));
    let new = H::with(CtConfig {
        max_conns: 6,
        ..CtConfig::default()
    });
    // One of them is already tracked by the new one.
    let u = udp4(CLIENT, SERVER, 6000, 53, b"q");
    new.firewall(&u, 4, secs(0));
    let rep = new.ct.import(&snap, new.at(0)).expect("import");
    assert_eq!(rep.present, 1);
    assert_eq!(rep.imported, 5);
    assert_eq!(rep.refused, 4);
    assert_eq!(new.ct.len(), 6);
}

#[test]
fn damaged_snapshots_are_errors() {
    let old = H::new();
    handshake(&old, 0);
    let snap = old.ct.export(old.at(1));
    let new = successor();
    assert!(matches!(
        new.ct.import(&snap[..snap.len() - 1], new.at(0)),
        Err(SnapshotError::Truncated { .. })
    ));
    assert_eq!(
        new.ct.import(b"garbage!garbage!", new.at(0)),
        Err(SnapshotError::BadMagic)
    );
    let mut b = snap.clone();
    b[12 + 40] = 17; // the TCP entry claims UDP
    assert!(matches!(
        new.ct.import(&b, new.at(0)),
        Err(SnapshotError::BadEntry { index: 0, .. })
    ));
    assert!(new.ct.is_empty());
    // Random bytes after a valid header never panic.
    let mut seed = 0x9e37_79b9_u32;
    for _ in 0..200 {
        let mut b = snap.clone();
        for byte in b.iter_mut().skip(12) {
            seed ^= seed << 13;
            seed ^= seed >> 17;
            seed ^= seed << 5;
            *byte = seed as u8;
        }
        let _ = new.ct.import(&b, new.at(0));
    }
}
