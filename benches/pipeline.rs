//! The whole pipeline per packet through in-memory ports, batches of 32
//! 64-byte frames: extraction, caches, action execution, transmit.
//!
//! * `emc_hit`: 16 flows repeating: every packet hits the exact-match cache.
//! * `megaflow_hit`: every packet has a different UDP source port, which the
//!   flow table never looks at: each packet misses the exact-match cache
//!   and hits the one megaflow.
//! * `baseline_copy`: only what a port does to hand over a batch (copy the
//!   frames into pooled buffers and give them back) — the floor the
//!   pipeline's figures are compared with in the same run.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use std::sync::Arc;
use std::time::Instant;
use vswitch::conntrack::ConnTracker;
use vswitch::datapath::{Datapath, DropCounters};
use vswitch::flow::{Action, Field, FlowSpec, Match};
use vswitch::ofproto::{FlowMod, FlowModCmd, Ofproto, PortInfo};
use vswitch::packet::{Batch, PacketPool, MAX_BURST};
use vswitch::port::mem::MemPort;

fn frame(sport: u16) -> Vec<u8> {
    let mut f = vec![
        0x02, 0, 0, 0, 0, 2, 0x02, 0, 0, 0, 0, 1, 0x08, 0x00, 0x45, 0, 0, 46, 0, 0, 0x40, 0, 64,
        17, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2, 0, 0, 0, 53, 0, 26, 0, 0,
    ];
    f[34..36].copy_from_slice(&sport.to_be_bytes());
    let c = vswitch::wire::checksum::checksum(&f[14..34]);
    f[24..26].copy_from_slice(&c.to_be_bytes());
    f.resize(64, 0);
    f
}

fn datapath() -> Datapath {
    let now = Instant::now();
    let of = Arc::new(Ofproto::new("br0", now));
    let mut dp = Datapath::new(
        of.clone(),
        Arc::new(ConnTracker::default()),
        Arc::new(DropCounters::default()),
    );
    for i in 1..=2u32 {
        let (p, _h) = MemPort::sink(&format!("p{i}"));
        of.add_port(PortInfo::new(
            i,
            &format!("p{i}"),
            vswitch::ofproto::PortKind::Dummy,
        ));
        dp.add_port(i, Box::new(p));
    }
    let mut m = Match::default();
    m.set_exact(Field::InPort, 1);
    m.set_exact(Field::DlType, 0x0800);
    m.set(Field::NwDst, 0x0a00_0000, 0xff00_0000);
    of.flow_mods(
        &[FlowMod {
            cmd: FlowModCmd::Add,
            spec: FlowSpec {
                priority: 10,
                matches: m,
                actions: vec![Action::ModDlDst([2, 0, 0, 0, 0, 9]), Action::Output(2)],
                ..FlowSpec::default()
            },
            table: Some(0),
        }],
        now,
    )
    .ok();
    dp
}

fn run(dp: &mut Datapath, frames: &[Vec<u8>], next: &mut usize, batch: &mut Batch, now: Instant) {
    for _ in 0..MAX_BURST {
        let f = &frames[*next];
        *next = (*next + 1) % frames.len();
        let mut p = dp.pool().get_from(f);
        p.meta.in_port = 1;
        let _ = batch.push(p);
    }
    dp.process_batch(batch, now);
    dp.flush_tx();
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("pipeline");
    g.throughput(Throughput::Elements(MAX_BURST as u64));
    let now = Instant::now();

    let mut pool = PacketPool::new(2048);
    let frames16: Vec<Vec<u8>> = (0..16).map(|i| frame(1000 + i)).collect();
    g.bench_function("baseline_copy", |b| {
        let mut batch = Batch::new();
        let mut next = 0;
        b.iter(|| {
            for _ in 0..MAX_BURST {
                let f = &frames16[next];
                next = (next + 1) % frames16.len();
                let _ = batch.push(pool.get_from(f));
            }
            batch.recycle(&mut pool);
        })
    });

    let mut dp = datapath();
    let mut batch = Batch::new();
    let mut next = 0;
    g.bench_function("emc_hit", |b| {
        b.iter(|| run(&mut dp, &frames16, &mut next, &mut batch, now))
    });
    let s = dp.stats();
    eprintln!("emc_hit: {s:?}");

    let frames_many: Vec<Vec<u8>> = (0..65535u16).map(frame).collect();
    let mut dp = datapath();
    let mut next = 0;
    g.bench_function("megaflow_hit", |b| {
        b.iter(|| run(&mut dp, &frames_many, &mut next, &mut batch, now))
    });
    let s = dp.stats();
    eprintln!("megaflow_hit: {s:?}");
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
