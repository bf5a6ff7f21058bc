//! Fan-out, summing and hand-off of the multi-worker datapath.

use super::*;
use crate::conntrack::ConnTracker;
use crate::datapath::DropCounters;
use crate::flow::{Action, Field, FlowSpec, Match};
use crate::ofproto::{FlowMod, FlowModCmd, Ofproto, PortInfo, PortKind};
use crate::port::mem::MemPort;
use crate::port::poll::Poller;
use std::time::Instant;

fn status(no: u32, name: &str, rx: u64, tx: u64, drops: Vec<(&str, u64)>) -> PortStatus {
    PortStatus {
        no,
        name: name.to_string(),
        kind: "dummy".to_string(),
        stats: PortStats {
            rx_packets: rx,
            rx_bytes: rx * 60,
            tx_packets: tx,
            tx_bytes: tx * 60,
            ..PortStats::default()
        },
        drops: drops.into_iter().map(|(r, n)| (r.to_string(), n)).collect(),
        link: LinkState::Up,
        mtu: 1500,
    }
}

#[test]
fn port_counters_sum_over_workers_and_keep_worker_0s_facts() {
    let mut w0 = status(1, "p1", 10, 3, vec![("tx_error", 1)]);
    w0.mtu = 9000;
    let mut w1 = status(
        1,
        "p1",
        5,
        4,
        vec![("tx_error", 2), ("handoff_queue_full", 7)],
    );
    w1.link = LinkState::Down;
    w1.mtu = 1500;
    let only0 = status(2, "p2", 1, 1, vec![]);
    let m = merge_ports(vec![vec![only0, w0], vec![w1]]);
    assert_eq!(m.len(), 2);
    assert_eq!(m[0].no, 1);
    assert_eq!(m[0].stats.rx_packets, 15);
    assert_eq!(m[0].stats.rx_bytes, 15 * 60);
    assert_eq!(m[0].stats.tx_packets, 7);
    assert_eq!(m[0].mtu, 9000);
    assert_eq!(m[0].link, LinkState::Up);
    assert_eq!(
        m[0].drops,
        vec![
            ("tx_error".to_string(), 3),
            ("handoff_queue_full".to_string(), 7)
        ]
    );
    assert_eq!(m[1].stats.rx_packets, 1);
}

#[test]
fn fast_path_counters_and_drops_sum() {
    let a = DpStats {
        packets: 10,
        emc_hits: 8,
        upcalls: 2,
        megaflows: 1,
        ..DpStats::default()
    };
    let b = DpStats {
        packets: 5,
        megaflow_hits: 5,
        megaflows: 1,
        ..DpStats::default()
    };
    let t = sum_stats(&[a, b]);
    assert_eq!(
        (
            t.packets,
            t.emc_hits,
            t.megaflow_hits,
            t.upcalls,
            t.megaflows
        ),
        (15, 8, 5, 2, 2)
    );
    let d = sum_drops(vec![
        vec![(PortDrop::TxError, 1)],
        vec![(PortDrop::HandoffQueueFull, 2), (PortDrop::TxError, 3)],
    ]);
    assert_eq!(
        d,
        vec![(PortDrop::TxError, 4), (PortDrop::HandoffQueueFull, 2)]
    );
}

/// A remote worker's output to a port it has no queue of reaches the port
/// through worker 0; a full hand-off queue drops under its own reason.
#[test]
fn handoff_reaches_the_home_port_and_a_full_queue_is_counted() {
    let (mem, h) = MemPort::new("p1");
    let facts = Arc::new(Facts::of(&mem));
    let (tx, rx) = crossbeam_channel::bounded(2);
    let poller = Poller::new().unwrap();
    let mut remote = RemotePort {
        queue: None,
        handoff: tx,
        home: poller.waker(),
        facts: facts.clone(),
        full: 0,
        gone: 0,
    };
    let mut home = HomePort {
        inner: Box::new(mem),
        inbound: vec![rx],
        tx: Batch::new(),
        facts,
    };
    let mut pool = PacketPool::new(2048);
    let mut b = Batch::new();
    for i in 0..3u8 {
        b.push(pool.get_from(&[i; 60])).unwrap();
    }
    assert_eq!(remote.send_batch(&mut b, &mut pool).unwrap(), 2);
    assert!(b.is_empty());
    assert_eq!(remote.drops(), vec![(PortDrop::HandoffQueueFull, 1)]);
    assert_eq!(remote.stats().tx_dropped, 1);
    assert_eq!(remote.name(), "p1");
    assert_eq!(remote.mtu(), 1500);
    // Worker 0 sends them on its next receive pass, in order.
    let mut rxb = Batch::new();
    assert_eq!(home.recv_batch(&mut pool, &mut rxb).unwrap(), 0);
    assert_eq!(h.take_sent(), vec![vec![0u8; 60], vec![1u8; 60]]);
    assert_eq!(home.stats().tx_packets, 2);
    // Worker 0 let go of the port: frames for it are counted as such.
    drop(home);
    b.push(pool.get_from(&[9; 60])).unwrap();
    remote.send_batch(&mut b, &mut pool).unwrap();
    assert!(remote.drops().contains(&(PortDrop::PortDown, 1)));
}

fn bridge(n: usize) -> (Arc<Ofproto>, Vec<Datapath>) {
    let of = Arc::new(Ofproto::new("br0", Instant::now()));
    let ct = Arc::new(ConnTracker::default());
    let drops = Arc::new(DropCounters::default());
    let dps = (0..n)
        .map(|_| Datapath::new(of.clone(), ct.clone(), drops.clone()))
        .collect();
    (of, dps)
}

fn forward(of: &Ofproto, from: u32, to: u32) {
    let mut m = Match::default();
    m.set_exact(Field::InPort, u128::from(from));
    of.flow_mods(
        &[FlowMod {
            cmd: FlowModCmd::Add,
            spec: FlowSpec {
                priority: 10,
                matches: m,
                actions: vec![Action::Output(to)],
                ..FlowSpec::default()
            },
            table: Some(0),
        }],
        Instant::now(),
    )
    .unwrap();
}

/// Waits (bounded) until `f` holds.
fn eventually(mut f: impl FnMut() -> bool) -> bool {
    for _ in 0..500 {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    false
}

/// Two workers, in-memory ports: injected frames are forwarded by worker
/// 0 in order, and the commands fan out and sum.
#[test]
fn two_workers_forward_in_memory_ports_in_order() {
    let (of, dps) = bridge(2);
    let w = Workers::spawn(dps, RunMode::default()).unwrap();
    assert_eq!(w.count(), 2);
    let mut handles = Vec::new();
    for i in 1..=2u32 {
        let (p, h) = MemPort::new(&format!("p{i}"));
        of.add_port(PortInfo::new(i, &format!("p{i}"), PortKind::Dummy));
        w.add_port(i, Box::new(p));
        handles.push(h);
    }
    forward(&of, 1, 2);
    let frames: Vec<Vec<u8>> = (0..20u8)
        .map(|i| {
            let mut f = vec![0x02, 0, 0, 0, 0, 2, 0x02, 0, 0, 0, 0, 1, 0x88, 0xb5];
            f.resize(60, i);
            f
        })
        .collect();
    for f in &frames {
        assert!(handles[0].inject(f));
    }
    w.kick();
    let mut got = Vec::new();
    assert!(eventually(|| {
        got.extend(handles[1].take_sent());
        got.len() >= frames.len()
    }));
    assert_eq!(got, frames);
    let ports = w.ports();
    assert_eq!(ports.len(), 2);
    assert_eq!(ports[0].stats.rx_packets, 20);
    assert_eq!(ports[1].stats.tx_packets, 20);
    let per = w.worker_stats();
    assert_eq!(per.len(), 2);
    assert_eq!(per[0].0.packets, 20);
    assert_eq!(per[1].0.packets, 0);
    assert_eq!(w.stats().0.packets, 20);
    assert!(!w.dp_flows().is_empty());
    assert!(w.pause(true));
    assert!(w.pause(false));
    assert!(w.del_port(2).is_some());
    assert_eq!(w.ports().len(), 1);
    assert!(w.del_port(2).is_none());
}

/// Generator ports split: each worker receives from its own queue, and
/// the summed counters add up (every frame received is forwarded once).
#[test]
fn split_ports_are_served_by_every_worker_and_counters_add_up() {
    let (of, dps) = bridge(2);
    let w = Workers::spawn(dps, RunMode::default()).unwrap();
    let mut f = vec![0x02, 0, 0, 0, 0, 2, 0x02, 0, 0, 0, 0, 1, 0x88, 0xb5];
    f.resize(60, 0);
    // The flow first: every frame generated is then forwarded.
    for i in 1..=2u32 {
        of.add_port(PortInfo::new(i, &format!("p{i}"), PortKind::Dummy));
    }
    forward(&of, 1, 2);
    // The sink first: every worker can output to it before the generator
    // starts.
    for i in [2u32, 1] {
        let frames = if i == 1 { vec![f.clone()] } else { Vec::new() };
        let (p, _h) = MemPort::generator(&format!("p{i}"), frames);
        w.add_port(i, Box::new(p));
    }
    assert!(eventually(|| w
        .worker_stats()
        .iter()
        .all(|(s, _)| s.packets > 0)));
    assert!(w.pause(true));
    let per: u64 = w.worker_stats().iter().map(|(s, _)| s.packets).sum();
    let ports = w.ports();
    assert_eq!(ports[0].stats.rx_packets, per);
    assert_eq!(ports[1].stats.tx_packets, per);
    assert_eq!(w.stats().0.packets, per);
}
