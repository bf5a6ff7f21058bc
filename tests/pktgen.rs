//! The traffic generator end to end: the real `vswitch-pktgen` binary
//! sending into one interface and counting on another.
//!
//! * Through a veth pair in a namespace the test creates (no switch): at a
//!   low rate every frame arrives, in order, counted once, for IPv4/UDP
//!   64-byte frames and for IPv6/TCP IMIX over many flows.
//! * Through a real vswitchd with two TAP ports whose kernel sides live in
//!   two VM namespaces: frames sent into one VM's TAP come out of the
//!   other's, the generator counts them by their stamps, and the switch's
//!   port counters saw at least as many.
//! * Into vswitchd's Geneve port from a "remote host" namespace over a veth
//!   underlay (`--geneve`): decapsulated frames come out of a VM's TAP and
//!   are counted.
//! * Through `vswitch-pktgen bare-forward` (the bench helper `compare.sh`
//!   measures vswitchd against), with read/write and with io_uring: every
//!   frame sent into one TAP comes out of the other, and the forwarder's
//!   own report counts at least as many.
//!
//! Needs root (skips with a message unless VSWITCH_REQUIRE_NETNS=1). Every
//! run is bounded by `--count` and `--duration`; rates are printed, never
//! asserted.

mod common;

use common::vms::{host, move_tap, plug_tap, veth_in, vm_mac};
use common::{ip, require_root, Lab};
use serde_json::Value;
use std::process::Command;

const PKTGEN: &str = env!("CARGO_BIN_EXE_vswitch-pktgen");

/// Runs the generator with `args` (plus `--json --quiet`); returns its
/// report.
fn pktgen(args: &[&str]) -> Value {
    let out = Command::new("timeout")
        .arg("60")
        .arg(PKTGEN)
        .args(args)
        .args(["--json", "--quiet"])
        .output()
        .expect("run vswitch-pktgen");
    assert!(
        out.status.success(),
        "vswitch-pktgen {}: {}\n{}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "report is JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    });
    println!("pktgen {}: {v}", args.join(" "));
    v
}

/// A namespace holding a veth pair `a` <-> `b`, both up.
fn veth_ns(lab: &mut Lab) -> (String, &'static str, &'static str) {
    let ns = lab.quiet_netns();
    ip(&[
        "-n", &ns, "link", "add", "pga", "type", "veth", "peer", "name", "pgb",
    ]);
    ip(&["-n", &ns, "link", "set", "dev", "pga", "up"]);
    ip(&["-n", &ns, "link", "set", "dev", "pgb", "up"]);
    assert!(
        common::wait_until(std::time::Duration::from_secs(5), || {
            let out = Command::new("ip")
                .args(["-n", &ns, "-o", "link", "show", "dev", "pgb"])
                .output()
                .expect("ip link show");
            String::from_utf8_lossy(&out.stdout).contains("state UP")
        }),
        "veth pair comes up in {ns}"
    );
    (ns, "pga", "pgb")
}

fn u(v: &Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("not a count: {v}"))
}

#[test]
fn veth_loopback_counts_every_frame() {
    if !require_root("veth_loopback_counts_every_frame") {
        return;
    }
    let mut lab = Lab::new();
    let (ns, a, b) = veth_ns(&mut lab);
    for (extra, count) in [
        (&["--size", "64"][..], 2000u64),
        (
            &["--ipv6", "--tcp", "--imix", "--flows", "1000"][..],
            1200u64,
        ),
    ] {
        let c = count.to_string();
        let mut args = vec![
            "--tx",
            a,
            "--tx-netns",
            &ns,
            "--rx",
            b,
            "--rx-netns",
            &ns,
            "--count",
            &c,
            "--rate",
            "5000",
            "--duration",
            "30",
        ];
        args.extend_from_slice(extra);
        let r = pktgen(&args);
        assert_eq!(u(&r["sent"]["packets"]), count, "{r}");
        let rx = &r["received"];
        assert_eq!(u(&rx["packets"]), count, "every frame arrives: {r}");
        assert_eq!(u(&rx["lost"]), 0, "{r}");
        assert_eq!(u(&rx["reordered"]), 0, "a veth keeps order: {r}");
        assert_eq!(rx["bytes"], r["sent"]["bytes"], "{r}");
        let lat = &rx["latency_ns"];
        assert!(u(&lat["p50"]) <= u(&lat["p99"]) && u(&lat["p99"]) <= u(&lat["max"]));
    }
    // The generator rejects what it cannot build, and says why.
    let out = Command::new(PKTGEN)
        .args(["--tx", a, "--tx-netns", &ns, "--size", "1519"])
        .output()
        .expect("run vswitch-pktgen");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("1518"));
}

#[test]
fn through_vswitchd_tap_to_tap() {
    if !require_root("through_vswitchd_tap_to_tap") {
        return;
    }
    let mut lab = Lab::new();
    let d = host(&mut lab);
    let vm1 = plug_tap(&mut lab, &d, "vm1", &[], &vm_mac(1), None);
    let vm2 = plug_tap(&mut lab, &d, "vm2", &[], &vm_mac(2), None);
    let before = d.port_counter("vm1", "rx_packets");
    let r = pktgen(&[
        "--tx",
        "vm1",
        "--tx-netns",
        &vm1,
        "--rx",
        "vm2",
        "--rx-netns",
        &vm2,
        "--src-mac",
        &vm_mac(1),
        "--dst-mac",
        &vm_mac(2),
        "--flows",
        "100",
        "--count",
        "2000",
        "--rate",
        "2000",
        "--duration",
        "30",
    ]);
    let sent = u(&r["sent"]["packets"]);
    let got = u(&r["received"]["packets"]);
    assert_eq!(sent, 2000, "{r}");
    assert!(got > 0, "frames crossed the switch: {r}");
    assert!(got <= sent, "{r}");
    assert_eq!(u(&r["received"]["lost"]), sent - got, "{r}");
    // What the generator counted on vm2 went through the switch: it
    // received at least that many on vm1 and sent them out of vm2.
    assert!(
        d.port_counter("vm1", "rx_packets") - before >= got,
        "{}",
        d.ctl(&["dump-ports", "br0"])
    );
    assert!(d.port_counter("vm2", "tx_packets") >= got);
    println!(
        "through vswitchd: {got}/{sent} frames, latency p50 {} ns",
        r["received"]["latency_ns"]["p50"]
    );
}

#[test]
fn geneve_into_vswitchd() {
    if !require_root("geneve_into_vswitchd") {
        return;
    }
    let mut lab = Lab::new();
    let d = host(&mut lab);
    let remote = lab.quiet_netns();
    veth_in(d.ns(), "ul0", "ul1", &remote);
    ip(&["-n", d.ns(), "addr", "add", "10.251.0.1/24", "dev", "ul0"]);
    lab.configure(&remote, "ul1", "10.251.0.2/24");
    d.ctl(&[
        "add-port",
        "br0",
        "tun0",
        "type=geneve",
        "remote_ip=10.251.0.2",
        "local_ip=10.251.0.1",
        "key=5000",
    ]);
    let vm2 = plug_tap(&mut lab, &d, "vm2", &[], &vm_mac(2), None);
    let r = pktgen(&[
        "--geneve",
        "10.251.0.1:6081",
        "--vni",
        "5000",
        "--tx-netns",
        &remote,
        "--rx",
        "vm2",
        "--rx-netns",
        &vm2,
        "--dst-mac",
        &vm_mac(2),
        "--flows",
        "10",
        "--count",
        "1000",
        "--rate",
        "2000",
        "--duration",
        "30",
    ]);
    assert_eq!(r["mode"], "geneve", "{r}");
    assert_eq!(u(&r["sent"]["packets"]), 1000, "{r}");
    let got = u(&r["received"]["packets"]);
    assert!(got > 0, "decapsulated frames reached vm2: {r}");
    assert!(
        d.port_counter("tun0", "rx_packets") >= got,
        "{}",
        d.ctl(&["dump-ports", "br0"])
    );
}

#[test]
fn through_the_bare_forwarder() {
    if !require_root("through_the_bare_forwarder") {
        return;
    }
    for io in ["readwrite", "uring"] {
        let mut lab = Lab::new();
        let h = lab.quiet_netns();
        let fwd = lab.spawn(
            &h,
            40,
            &format!("{PKTGEN} bare-forward --a bfa --b bfb --io {io} --duration 10 --json"),
        );
        let vm1 = lab.quiet_netns();
        let vm2 = lab.quiet_netns();
        move_tap(&lab, &h, "bfa", &vm1, &vm_mac(1), None);
        move_tap(&lab, &h, "bfb", &vm2, &vm_mac(2), None);
        let r = pktgen(&[
            "--tx",
            "bfa",
            "--tx-netns",
            &vm1,
            "--rx",
            "bfb",
            "--rx-netns",
            &vm2,
            "--src-mac",
            &vm_mac(1),
            "--dst-mac",
            &vm_mac(2),
            "--count",
            "1000",
            "--rate",
            "2000",
            "--duration",
            "5",
        ]);
        assert_eq!(u(&r["sent"]["packets"]), 1000, "{io}: {r}");
        assert_eq!(
            u(&r["received"]["packets"]),
            1000,
            "{io}: every frame crosses the bare forwarder: {r}"
        );
        let out = lab.wait(fwd);
        assert!(
            out.status.success(),
            "{io}: bare-forward: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let rep: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "{io}: forwarder report is JSON ({e}): {}",
                String::from_utf8_lossy(&out.stdout)
            )
        });
        println!("bare-forward {io}: {rep}");
        assert_eq!(rep["io"], io, "{rep}");
        assert!(u(&rep["a_to_b"]) >= 1000, "{io}: {rep}");
        assert_eq!(u(&rep["write_errors"]), 0, "{io}: {rep}");
    }
}
