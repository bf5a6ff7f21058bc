//! Scaling of the in-memory pipeline over datapath workers: the same
//! bridge run by 1 worker and by 2 workers, 64-byte frames, in one run.
//!
//! Each worker thread is the daemon's own loop ([`Workers`]) over in-memory
//! generator ports: port 1 replays 16 flows forever on each worker's own
//! queue of it, different flows on each (as a multi-queue TAP keeps a
//! flow on one queue: two workers never share a connection's entry), the
//! pipeline forwards to port 2, which counts and discards. The figure is
//! the packets the workers processed per second of wall time, read from
//! their own counters, so the generator's cost is inside it (as a TAP's
//! read would be).
//!
//! * `normal`: `actions=NORMAL` (MAC learning, flood to the other port).
//! * `firewall`: flows/stateful-firewall.flows, 16 established TCP
//!   connections per worker (two table passes and conntrack per packet).
//! * `firewall_shared`: the same, both workers replaying the same 16
//!   connections (as the two directions of one connection do when each
//!   VM's queue is chosen on its own): two workers update the same
//!   conntrack entries.
//!
//! Rounds alternate 1 and 2 workers so a change in the machine's load hits
//! both; the ratio is of the medians. `cargo bench --bench multicore`;
//! `MC_SECS` (default 2) sets a round's length, `MC_ROUNDS` (default 3)
//! the rounds per configuration, `MC_ONLY` (a comma-separated list of
//! the names above) the scenarios run. The load average is printed before
//! and after: on a shared machine, read the ratio with it.

use etherparse::PacketBuilder;
use std::sync::Arc;
use std::time::{Duration, Instant};
use vswitch::conntrack::ConnTracker;
use vswitch::ctl::flowtext;
use vswitch::datapath::workers::{RunMode, Workers};
use vswitch::datapath::{Datapath, DropCounters};
use vswitch::ofproto::{Ofproto, PortInfo, PortKind};
use vswitch::packet::Batch;
use vswitch::port::mem::MemPort;

const A: [u8; 6] = [0x02, 0, 0, 0, 0, 1];
const B: [u8; 6] = [0x02, 0, 0, 0, 0, 2];

fn udp(sport: u16) -> Vec<u8> {
    let mut v = Vec::new();
    PacketBuilder::ethernet2(A, B)
        .ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
        .udp(sport, 53)
        .write(&mut v, &[0; 18])
        .expect("frame");
    v.resize(64, 0);
    v
}

#[path = "support/tcp_frames.rs"]
mod tcp_frames;

fn tcp(from_a: bool, sport: u16, seq: u32, ack: u32, syn: bool) -> Vec<u8> {
    tcp_frames::tcp((A, B), from_a, sport, seq, ack, syn, 64)
}

/// A bridge's shared parts with `flows` installed.
fn bridge(flows: &str) -> (Arc<Ofproto>, Arc<ConnTracker>, Arc<DropCounters>) {
    let now = Instant::now();
    let of = Arc::new(Ofproto::new("br0", now));
    for i in 1..=2u32 {
        of.add_port(PortInfo::new(i, &format!("p{i}"), PortKind::Dummy));
    }
    let mods = of
        .with_ports(|ports| flowtext::file(flows, "bench flows", ports))
        .expect("bench flows parse");
    of.flow_mods(&mods, now).expect("bench flows apply");
    (
        of,
        Arc::new(ConnTracker::default()),
        Arc::new(DropCounters::default()),
    )
}

/// CPU seconds the worker threads (`dp-br0*`) used so far, from
/// /proc/self/task (clock ticks of 10 ms: coarse, fine over seconds).
fn worker_cpu() -> f64 {
    let mut ticks = 0u64;
    let Ok(dir) = std::fs::read_dir("/proc/self/task") else {
        return 0.0;
    };
    for t in dir.flatten() {
        let comm = std::fs::read_to_string(t.path().join("comm")).unwrap_or_default();
        if !comm.starts_with("dp-br0") {
            continue;
        }
        let stat = std::fs::read_to_string(t.path().join("stat")).unwrap_or_default();
        // After the parenthesised name: state is field 3, utime 14, stime 15.
        let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
        let f: Vec<&str> = rest.split_whitespace().collect();
        for i in [11, 12] {
            ticks += f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        }
    }
    ticks as f64 / 100.0
}

/// One round's figures.
struct Round {
    /// Packets per second of wall time.
    pps: f64,
    /// Packets per CPU second the workers got.
    per_cpu: f64,
    /// CPUs the workers got on average.
    cpus: f64,
}

/// Runs `frames` into port 1 of a bridge with `flows`, on `workers`
/// workers, for `secs`; returns packets per second. `setup` runs first on
/// a datapath of the same bridge (connections to establish).
fn round(
    flows: &str,
    frames: &[Vec<Vec<u8>>],
    workers: usize,
    secs: f64,
    setup: &dyn Fn(&mut Datapath),
) -> Round {
    let (of, ct, drops) = bridge(flows);
    let mut first = Datapath::new(of.clone(), ct.clone(), drops.clone());
    for i in 1..=2u32 {
        let (p, _h) = MemPort::sink(&format!("p{i}"));
        first.add_port(i, Box::new(p));
    }
    setup(&mut first);
    drop(first);
    let dps = (0..workers)
        .map(|_| Datapath::new(of.clone(), ct.clone(), drops.clone()))
        .collect();
    let w = Workers::spawn(
        dps,
        RunMode {
            busy_poll: true,
            nice: None,
        },
    )
    .expect("workers");
    let (gen, _h) = MemPort::generator_per_queue("p1", frames.to_vec());
    let (sink, _h) = MemPort::generator("p2", Vec::new());
    w.add_port(2, Box::new(sink));
    w.add_port(1, Box::new(gen));
    let count = |w: &Workers| -> u64 { w.worker_stats().iter().map(|(s, _)| s.packets).sum() };
    // Warm up: caches filled, threads on their cores.
    std::thread::sleep(Duration::from_millis(300));
    let (n0, t0, c0) = (count(&w), Instant::now(), worker_cpu());
    std::thread::sleep(Duration::from_secs_f64(secs));
    let (n1, t1, c1) = (count(&w), Instant::now(), worker_cpu());
    let per: Vec<u64> = w.worker_stats().iter().map(|(s, _)| s.packets).collect();
    let d: Vec<_> = drops
        .snapshot()
        .into_iter()
        .filter(|(_, n)| *n > 0)
        .collect();
    if !d.is_empty() {
        eprintln!("  drops: {d:?}");
    }
    eprintln!("  {workers} worker(s), packets per worker: {per:?}");
    let wall = (t1 - t0).as_secs_f64();
    let cpu = (c1 - c0).max(0.01);
    Round {
        pps: (n1 - n0) as f64 / wall,
        per_cpu: (n1 - n0) as f64 / cpu,
        cpus: cpu / wall,
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg").unwrap_or_default()
}

fn scenario(name: &str, flows: &str, frames: &[Vec<Vec<u8>>], setup: &dyn Fn(&mut Datapath)) {
    if std::env::var("MC_ONLY").is_ok_and(|only| !only.split(',').any(|n| n == name)) {
        return;
    }
    let secs: f64 = std::env::var("MC_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2.0);
    let rounds: usize = std::env::var("MC_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3);
    let (mut one, mut two) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        one.push(round(flows, frames, 1, secs, setup));
        two.push(round(flows, frames, 2, secs, setup));
    }
    let pps = |v: &[Round]| median(v.iter().map(|r| r.pps).collect());
    let per_cpu = |v: &[Round]| median(v.iter().map(|r| r.per_cpu).collect());
    let cpus = |v: &[Round]| median(v.iter().map(|r| r.cpus).collect());
    let mpps = |v: &[Round]| {
        v.iter()
            .map(|r| (r.pps / 1e4).round() / 100.0)
            .collect::<Vec<_>>()
    };
    println!(
        "multicore/{name}: 1 worker {:.2} Mpps, 2 workers {:.2} Mpps: ratio {:.2}x (rounds in Mpps: 1w {:?}, 2w {:?})",
        pps(&one) / 1e6,
        pps(&two) / 1e6,
        pps(&two) / pps(&one),
        mpps(&one),
        mpps(&two),
    );
    // What the machine gave: on a loaded machine the workers get less
    // than a CPU each, and the wall-clock ratio says more about the load
    // than about the datapath.
    println!(
        "multicore/{name}: CPUs the workers got: 1w {:.2}, 2w {:.2}; per CPU second: 1w {:.2} Mpps, 2w {:.2} Mpps (per-worker cost ratio {:.2})",
        cpus(&one),
        cpus(&two),
        per_cpu(&one) / 1e6,
        per_cpu(&two) / 1e6,
        per_cpu(&two) / per_cpu(&one),
    );
}

fn main() {
    // `cargo test --benches` runs this too: be quick then.
    if std::env::args().any(|a| a == "--test") {
        std::env::set_var("MC_SECS", "0.1");
        std::env::set_var("MC_ROUNDS", "1");
    }
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!("cpus: {cpus}; load average before: {}", loadavg().trim());
    // 32 flows, 16 per queue: each worker its own (one worker plays the
    // first 16).
    let halves = |f: &dyn Fn(u16) -> Vec<u8>| -> Vec<Vec<Vec<u8>>> {
        vec![(0..16).map(f).collect(), (16..32).map(f).collect()]
    };
    let frames = halves(&|i| udp(1000 + i));
    scenario("normal", "priority=0,actions=NORMAL\n", &frames, &|_| {});

    let fw = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/flows/stateful-firewall.flows"
    ))
    .expect("flows/stateful-firewall.flows");
    let acks = halves(&|i| tcp(true, 40000 + i, 1001, 5001, false));
    let handshakes = |dp: &mut Datapath| {
        let now = Instant::now();
        let mut once = |f: Vec<u8>, in_port: u32| {
            let mut b = Batch::new();
            let mut p = dp.pool().get_from(&f);
            p.meta.in_port = in_port;
            let _ = b.push(p);
            dp.process_batch(&mut b, now);
            dp.flush_tx();
        };
        for i in 0..32u16 {
            let sport = 40000 + i;
            once(tcp(true, sport, 1000, 0, true), 1);
            once(tcp(false, sport, 5000, 1001, true), 2);
            once(tcp(true, sport, 1001, 5001, false), 1);
        }
    };
    scenario("firewall", &fw, &acks, &handshakes);
    let first = acks.first().cloned().unwrap_or_default();
    scenario("firewall_shared", &fw, &[first.clone(), first], &handshakes);
    println!("load average after: {}", loadavg().trim());
}
