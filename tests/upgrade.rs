//! Upgrade without a dropped connection (`vswitchd --takeover`): a TCP
//! stream between two VM namespaces, through `flows/stateful-firewall.flows`,
//! keeps running while a new vswitchd takes the running one's place.
//!
//! The new process receives the TAP fds (the VMs' NICs never lose their
//! reader, so no device is recreated and no VM sees NO-CARRIER) and the
//! connection table (the stream's segments stay `+est`, never `+inv`).
//! Checked: the stream finishes without a reset and every byte arrives;
//! the old daemon exits cleanly; the TAPs in the VMs are the same devices
//! (same ifindex); the new daemon tracks the connection as ESTABLISHED and
//! dropped nothing as invalid; new connections work afterwards. The
//! longest gap in the stream (iperf3's 100 ms intervals) is printed for the
//! report, never asserted.

mod common;

use common::vms::{firewall_two_taps_config, move_tap, vm_mac};
use common::{require_root, require_tools, wait_until, Daemon, Lab};
use serde_json::Value;
use std::time::Duration;

fn ifindex(lab: &Lab, ns: &str, dev: &str) -> String {
    lab.sh_ok(ns, 5, &format!("cat /sys/class/net/{dev}/ifindex"))
        .trim()
        .to_string()
}

/// The longest run of (nearly) empty 100 ms intervals in iperf3's JSON,
/// in milliseconds, and the retransmits.
fn stalls(report: &Value) -> (u64, u64) {
    let mut longest = 0u64;
    let mut run = 0u64;
    for i in report["intervals"].as_array().into_iter().flatten() {
        let s = &i["sum"];
        let ms = (s["seconds"].as_f64().unwrap_or(0.0) * 1000.0) as u64;
        if s["bytes"].as_u64().unwrap_or(0) < 1500 {
            run += ms;
            longest = longest.max(run);
        } else {
            run = 0;
        }
    }
    let retr = report["end"]["sum_sent"]["retransmits"]
        .as_u64()
        .unwrap_or(0);
    (longest, retr)
}

#[test]
fn tcp_stream_survives_takeover() {
    let t = "tcp_stream_survives_takeover";
    if !require_root(t) || !require_tools(t, &["iperf3", "ping"]) {
        return;
    }
    let mut lab = Lab::new();
    let host = lab.quiet_netns();
    let mut d = Daemon::start_in(&host, Some(&firewall_two_taps_config()));
    let vm1 = lab.quiet_netns();
    let vm2 = lab.quiet_netns();
    move_tap(&lab, &host, "vm1", &vm1, &vm_mac(1), Some("10.91.0.1/24"));
    move_tap(&lab, &host, "vm2", &vm2, &vm_mac(2), Some("10.91.0.2/24"));
    assert!(
        lab.ping_until(&vm1, "10.91.0.2", Duration::from_secs(10)),
        "vm1 reaches vm2 through the firewall; log:\n{}",
        d.log()
    );
    let idx = (ifindex(&lab, &vm1, "vm1"), ifindex(&lab, &vm2, "vm2"));
    let ofports = d.ctl_json(&["show", "--json"]);

    // A 6 s stream, the upgrade in its middle.
    let srv = lab.spawn(&vm2, 30, "exec iperf3 -s -1 -B 10.91.0.2");
    assert!(wait_until(Duration::from_secs(10), || {
        lab.sh(&vm2, 5, "ss -ltn | grep -q ':5201'")
            .status
            .success()
    }));
    let cli = lab.spawn(
        &vm1,
        40,
        "exec iperf3 -c 10.91.0.2 -t 6 -i 0.1 -J --connect-timeout 3000",
    );
    std::thread::sleep(Duration::from_secs(2));
    let old_pid = d.pid();
    let status = d.takeover();
    assert!(
        status.is_some_and(|s| s.success()),
        "the old vswitchd exits cleanly after the handover: {status:?}; log:\n{}",
        d.log()
    );
    assert_ne!(d.pid(), old_pid);
    let out = lab.wait(cli);
    let _ = lab.wait(srv);
    let text = String::from_utf8_lossy(&out.stdout);
    let report: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
    assert!(
        out.status.success() && report["error"].is_null(),
        "the stream ran to its end without a reset: {}\n{}\nlog:\n{}",
        String::from_utf8_lossy(&out.stderr),
        text,
        d.log()
    );
    let sent = report["end"]["sum_sent"]["bytes"].as_u64().unwrap_or(0);
    let got = report["end"]["sum_received"]["bytes"].as_u64().unwrap_or(0);
    // iperf3 counts what the server read by the end of the test time,
    // so the last bytes in flight are not in `got`.
    assert!(
        sent > 0 && got > sent / 2,
        "the stream moved data: {got} of {sent}"
    );
    let (gap_ms, retransmits) = stalls(&report);
    println!(
        "upgrade under a TCP stream: {:.1} Gbit/s, longest gap {gap_ms} ms (100 ms resolution), {retransmits} retransmits",
        report["end"]["sum_received"]["bits_per_second"]
            .as_f64()
            .unwrap_or(0.0)
            / 1e9
    );
    let log = d.log();
    for l in log
        .lines()
        .filter(|l| l.contains("took over: forwarding") || l.contains("handed over to the new"))
    {
        println!("{l}");
    }

    // Same devices, same ports, the connection carried over.
    assert_eq!(
        (ifindex(&lab, &vm1, "vm1"), ifindex(&lab, &vm2, "vm2")),
        idx,
        "the VMs' TAPs are the devices they had"
    );
    assert!(
        !lab.sh(&host, 5, "ip link show vm1").status.success(),
        "no twin TAP appeared in the host namespace"
    );
    let now = d.ctl_json(&["show", "--json"]);
    assert_eq!(now["bridges"][0]["ports"], ofports["bridges"][0]["ports"]);
    let inv: u64 = d
        .drops()
        .iter()
        .filter(|(k, _)| k.starts_with("ct_invalid"))
        .map(|(_, v)| v)
        .sum();
    // Established connections stay established: not one segment of the
    // stream (nor of its end) judged invalid by the new daemon.
    assert_eq!(inv, 0, "segments judged invalid: {:?}", d.drops());
    let ct = d.ctl(&["dump-conntrack", "br0"]);
    assert!(
        ct.contains("dport=5201"),
        "the stream's connection is tracked by the new daemon:\n{ct}"
    );
    // And new connections work.
    assert!(lab.ping(&vm1, "10.91.0.2", 3), "ping after the upgrade");
    assert!(d.stop(), "the new daemon stops cleanly");
}

#[test]
fn failed_takeover_leaves_the_running_daemon_forwarding() {
    let t = "failed_takeover_leaves_the_running_daemon_forwarding";
    if !require_root(t) || !require_tools(t, &["ping"]) {
        return;
    }
    let mut lab = Lab::new();
    let host = lab.quiet_netns();
    let mut d = Daemon::start_in(&host, Some(&firewall_two_taps_config()));
    let vm1 = lab.quiet_netns();
    let vm2 = lab.quiet_netns();
    move_tap(&lab, &host, "vm1", &vm1, &vm_mac(1), Some("10.92.0.1/24"));
    move_tap(&lab, &host, "vm2", &vm2, &vm_mac(2), Some("10.92.0.2/24"));
    assert!(lab.ping_until(&vm1, "10.92.0.2", Duration::from_secs(10)));
    // The new process cannot read the saved state: it must give up after
    // it got the fds and before the old one pauses, and the old one goes
    // on as before.
    let state = d.state_dir().join("state.json");
    let good = std::fs::read(&state).expect("saved state");
    std::fs::write(&state, b"{ not json").expect("corrupt the state");
    let st = d.failed_takeover();
    assert!(
        st.is_some_and(|s| !s.success()),
        "the new vswitchd exits with an error: {st:?}; log:\n{}",
        d.log()
    );
    assert!(d.alive(), "the running vswitchd stays; log:\n{}", d.log());
    assert!(lab.ping(&vm1, "10.92.0.2", 3), "it still forwards");
    assert!(
        d.log().contains("state.json"),
        "the new one said why; log:\n{}",
        d.log()
    );
    // Its OpenFlow listener is back, and a second (good) takeover works.
    assert!(wait_until(Duration::from_secs(5), || d
        .dir
        .path()
        .join("br0.mgmt")
        .exists()));
    std::fs::write(&state, good).expect("restore the state");
    assert!(
        d.takeover().is_some_and(|s| s.success()),
        "log:\n{}",
        d.log()
    );
    assert!(
        lab.ping(&vm1, "10.92.0.2", 3),
        "forwarding after the upgrade"
    );
    assert!(d.stop());
}
