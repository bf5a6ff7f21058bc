//! A full connection table says so: with `max_conns` reached, a new
//! connection's first packet goes on uncommitted (as in Open vSwitch, the
//! flows decide), and the answer that then finds no connection is dropped
//! under `ct_invalid_limit_reached`, not as a stray `invalid_new`; the
//! side-effect-free verdict `trace` prints says the table is full.

mod conntrack_common;
mod ct_pipeline_support;
use conntrack_common::*;
use ct_pipeline_support::*;

use std::time::Duration;

use vswitch::conntrack::{ConnTracker, CtConfig, CtInvalidReason, CtParams};

fn s(n: u64) -> Duration {
    Duration::from_secs(n)
}

#[test]
fn full_table_drops_are_counted_under_the_limit() {
    let mut sw = Switch::with_tracker(ConnTracker::new(CtConfig {
        max_conns: 1,
        ..CtConfig::default()
    }));
    // The one connection the table holds.
    let syn1 = tcp4(CLIENT, SERVER, Seg::new(40000, 80, 1000, syn()));
    sw.forwarded(VM1, &syn1, s(0));
    let sa = from_server(tcp4(
        SERVER,
        CLIENT,
        Seg::new(80, 40000, 5000, syn_ack(1001)),
    ));
    sw.forwarded(VM2, &sa, s(0));
    assert_eq!(sw.ct.len(), 1);

    // A second one: its SYN goes on uncommitted...
    let syn2 = tcp4(CLIENT, SERVER, Seg::new(40001, 80, 7000, syn()));
    sw.forwarded(VM1, &syn2, s(1));
    assert_eq!(sw.ct.len(), 1, "not committed: the table is full");
    // ...and the server's answer finds no connection: the limit's drop.
    let sa2 = from_server(tcp4(
        SERVER,
        CLIENT,
        Seg::new(80, 40001, 9000, syn_ack(7001)),
    ));
    // What `trace` shows, before the packet goes through.
    let (key, meta) = key_meta(&sa2);
    let v = sw
        .ct
        .peek(&sa2, &key, &meta, &CtParams::default(), sw.at(s(1)));
    let d = v.invalid.expect("invalid");
    assert_eq!(d.reason, CtInvalidReason::LimitReached);
    assert!(d.detail.contains("table is full"), "{}", d.detail);
    sw.dropped(VM2, &sa2, s(1));
    assert_eq!(sw.ct_drops(CtInvalidReason::LimitReached), 1);
    assert_eq!(sw.ct_drops(CtInvalidReason::InvalidNew), 0);
    let st = sw.ct.stats();
    // The refused commit and the refused answer.
    assert_eq!(st.limit_reached, 2);
    assert_eq!(st.invalid["invalid_new"], 0);

    // With room again, a stray answer is what it is.
    sw.ct.set_max_conns(100);
    let stray = from_server(tcp4(SERVER, CLIENT, Seg::new(80, 40002, 1, syn_ack(2))));
    sw.dropped(VM2, &stray, s(2));
    assert_eq!(sw.ct_drops(CtInvalidReason::InvalidNew), 1);
    assert_eq!(sw.ct_drops(CtInvalidReason::LimitReached), 1);
}
