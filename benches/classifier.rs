//! Classifier lookup cost against the number of rules.
//!
//! Rules are spread over five masks, as a real pipeline's are (exact
//! destination address, /24 prefixes, exact TCP port, input port, and a
//! catch-all); the 1-rule case is the baseline measured in the same run.
//! Tuple space search costs one hash probe per distinct mask, so the
//! 100,000-rule lookup should stay within a small factor of the 1-rule one.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use std::hint::black_box;
use std::sync::Arc;
use std::time::Instant;
use vswitch::flow::{Field, FlowKey, FlowMask, FlowSpec, Match};
use vswitch::ofproto::{Classifier, Rule, RuleStats};

fn rule(id: u64, priority: u16, m: Match) -> Arc<Rule> {
    let now = Instant::now();
    Arc::new(Rule {
        id,
        spec: FlowSpec {
            priority,
            matches: m,
            ..FlowSpec::default()
        },
        created: now,
        modified: now,
        stats: Arc::new(RuleStats::new(now)),
    })
}

fn build(n: usize) -> Classifier {
    let mut c = Classifier::default();
    let mut id = 0;
    let mut add = |c: &mut Classifier, prio: u16, m: Match| {
        id += 1;
        c.insert(rule(id, prio, m));
    };
    if n == 1 {
        let mut m = Match::default();
        m.set_exact(Field::DlType, 0x0800);
        m.set_exact(Field::NwDst, 0x0a00_0001);
        add(&mut c, 100, m);
        return c;
    }
    for i in 0..n {
        let mut m = Match::default();
        m.set_exact(Field::DlType, 0x0800);
        match i % 5 {
            0 => m.set_exact(Field::NwDst, 0x0a00_0000 + i as u128),
            1 => m.set(Field::NwDst, 0x0b00_0000 + ((i as u128) << 8), 0xffff_ff00),
            2 => {
                m.set_exact(Field::NwProto, 6);
                m.set_exact(Field::TpDst, (i % 65536) as u128);
                m.set_exact(Field::InPort, (i / 65536) as u128 + 1);
            }
            3 => m.set_exact(Field::InPort, 1000 + i as u128),
            _ => {
                m.set_exact(Field::NwSrc, 0x0c00_0000 + i as u128);
            }
        }
        add(&mut c, (i % 5) as u16 * 10 + 10, m);
    }
    add(&mut c, 0, Match::default());
    c
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("classifier_lookup");
    g.throughput(Throughput::Elements(1));
    for n in [1usize, 1_000, 100_000] {
        let cls = build(n);
        let mut k = FlowKey::default();
        k.set_dl_type(0x0800);
        k.set_in_port(1);
        k.set_nw_proto(6);
        k.set_nw_dst(0x0a00_0001);
        k.set_tp_dst(80);
        g.bench_with_input(BenchmarkId::from_parameter(n), &cls, |b, cls| {
            b.iter(|| {
                let mut wc = FlowMask::default();
                black_box(cls.lookup(black_box(&k), &mut wc).map(|r| r.id))
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
