//! Measurements (run on demand, print, assert nothing about speed):
//!
//! ```text
//! cargo test --release --test port_bench -- --ignored --nocapture --test-threads 1
//! ```
//!
//! The forwarding loop is the test's [`common::Forwarder`] (epoll + batched
//! port I/O, one thread), standing in for the datapath. Traffic comes from
//! the namespaces' kernels: `trafgen` for 60-byte frames (64 on the wire
//! with the FCS), iperf3 for TCP. Timed sections hold `/tmp/bench.lock`
//! like the side-by-side harness, so they never overlap its runs.

mod common;

use common::forwarder::{afpacket_pair, tap_pair, Pair};
use common::raw::Raw;
use common::{require_root, require_tools, Forwarder, Lab};
use std::time::Duration;
use vswitch::port::Port;

const SECS: u32 = 5;

fn iperf(lab: &mut Lab, ns1: &str, ns2: &str, streams: u32) -> f64 {
    let srv = lab.spawn(ns2, SECS + 20, "exec iperf3 -s -1");
    std::thread::sleep(Duration::from_millis(500));
    let out = lab.sh_ok(
        ns1,
        SECS + 20,
        &format!("flock /tmp/bench.lock iperf3 -c 10.77.0.2 -t {SECS} -P {streams} -J"),
    );
    let _ = lab.wait(srv);
    let v: serde_json::Value = serde_json::from_str(&out).expect("iperf3 json");
    v["end"]["sum_received"]["bits_per_second"]
        .as_f64()
        .unwrap_or(0.0)
        / 1e9
}

fn measure_tcp(label: &str, va: bool, vb: bool) {
    let mut lab = Lab::new();
    let Pair { a, b, ns1, ns2 } = tap_pair(&mut lab, 77, va, vb);
    let fwd = Forwarder::start(a, b, Duration::from_secs(120));
    assert!(lab.ping_until(&ns1, "10.77.0.2", Duration::from_secs(5)));
    let g1 = iperf(&mut lab, &ns1, &ns2, 1);
    let g4 = iperf(&mut lab, &ns1, &ns2, 4);
    let (_a, _b, f) = fwd.stop();
    println!(
        "MEASURE {label} tcp1_gbps {g1:.2} tcp4_gbps {g4:.2} (gso super-packets forwarded: {})",
        f.gso
    );
}

#[test]
#[ignore = "measurement: run with --ignored --nocapture in release mode"]
fn measure_tap_tcp_throughput() {
    const T: &str = "measure_tap_tcp_throughput";
    if !require_root(T) || !require_tools(T, &["iperf3"]) {
        return;
    }
    measure_tcp("tap-vnet_hdr-tso", true, true);
    measure_tcp("tap-plain", false, false);
    measure_tcp("tap-tso-to-plain(sw-gso)", true, false);
}

#[test]
#[ignore = "measurement: run with --ignored --nocapture in release mode"]
fn measure_afpacket_tcp_throughput() {
    const T: &str = "measure_afpacket_tcp_throughput";
    if !require_root(T) || !require_tools(T, &["iperf3"]) {
        return;
    }
    let mut lab = Lab::new();
    let Pair { a, b, ns1, ns2 } = afpacket_pair(&mut lab, 77);
    let fwd = Forwarder::start(a, b, Duration::from_secs(120));
    assert!(lab.ping_until(&ns1, "10.77.0.2", Duration::from_secs(5)));
    let g1 = iperf(&mut lab, &ns1, &ns2, 1);
    let g4 = iperf(&mut lab, &ns1, &ns2, 4);
    let (_a, _b, f) = fwd.stop();
    println!(
        "MEASURE afpacket-veth tcp1_gbps {g1:.2} tcp4_gbps {g4:.2} (gso: {})",
        f.gso
    );
}

fn measure_pps(label: &str, vnet: bool) {
    let mut lab = Lab::new();
    let Pair { a, b, ns1, ns2 } = tap_pair(&mut lab, 77, vnet, vnet);
    let (na, nb) = (a.name().to_string(), b.name().to_string());
    // A bound socket that never reads: the frames are delivered, not
    // answered with ICMP port unreachable.
    let raw = Raw::new();
    let sink = raw.udp_sink(&mut lab, &ns2, "0.0.0.0", 9, SECS + 25);
    let mac2 = lab.sh_ok(&ns2, 5, &format!("cat /sys/class/net/{nb}/address"));
    let mac1 = lab.sh_ok(&ns1, 5, &format!("cat /sys/class/net/{na}/address"));
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("udp60.cfg");
    // 14 + 20 + 8 + 18 = 60 bytes.
    std::fs::write(
        &cfg,
        format!(
            "{{ eth(da={}, sa={}, type=0x0800), ipv4(saddr=10.77.0.1, daddr=10.77.0.2, ttl=64), \
             udp(sp=9, dp=9), fill(0x41, 18) }}\n",
            mac2.trim(),
            mac1.trim()
        ),
    )
    .unwrap();
    lab.sh_ok(&ns1, 5, "ip neigh flush all");
    let fwd = Forwarder::start(a, b, Duration::from_secs(120));
    assert!(lab.ping_until(&ns1, "10.77.0.2", Duration::from_secs(5)));
    let tx0 = lab.link_stat(&ns1, &na, "tx_packets") + lab.link_stat(&ns1, &na, "tx_dropped");
    let rx0 = lab.link_stat(&ns2, &nb, "rx_packets");
    let t0 = std::time::Instant::now();
    let _ = lab.sh(
        &ns1,
        SECS + 10,
        &format!(
            "flock /tmp/bench.lock timeout {SECS} trafgen --dev {na} --conf {} --cpus 1 >/dev/null 2>&1",
            cfg.display()
        ),
    );
    let dt = t0.elapsed().as_secs_f64();
    std::thread::sleep(Duration::from_millis(200));
    let tx1 = lab.link_stat(&ns1, &na, "tx_packets") + lab.link_stat(&ns1, &na, "tx_dropped");
    let rx1 = lab.link_stat(&ns2, &nb, "rx_packets");
    let (_a, _b, f) = fwd.stop();
    let _ = lab.wait(sink);
    println!(
        "MEASURE {label} trafgen60 offered_pps {:.0} delivered_pps {:.0} (forwarder total a->b {} in {:?})",
        (tx1 - tx0) as f64 / dt,
        (rx1 - rx0) as f64 / dt,
        f.a_to_b,
        f.elapsed
    );
}

#[test]
#[ignore = "measurement: run with --ignored --nocapture in release mode"]
fn measure_tap_to_tap_64b_pps() {
    const T: &str = "measure_tap_to_tap_64b_pps";
    if !require_root(T) || !require_tools(T, &["trafgen", "python3"]) {
        return;
    }
    measure_pps("tap-plain", false);
    measure_pps("tap-vnet_hdr", true);
}
