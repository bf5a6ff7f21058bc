//! kill -9 of vswitchd, configured at run time with vswitchctl (no
//! configuration file names the ports or flows): after a restart the VMs'
//! TAPs are still in their namespaces with their addresses, the ofports
//! and the flows (the stateful firewall) are back from the state
//! directory, ping works, and nothing leaked (no twin TAP in the host
//! namespace, no stale socket refusing the start). The time from the
//! restart to the first answered ping is printed, not asserted.
//!
//! The same with the database as the source of ports is in
//! `tests/ovsdb_vsctl.rs` (`kill9_with_the_database`).

mod common;

use common::vms::{host, plug_tap, vm_mac};
use common::{link_exists_in, require_root, wait_until, Lab};
use std::time::{Duration, Instant};

fn addr_of(lab: &Lab, ns: &str, dev: &str) -> String {
    lab.sh_ok(ns, 5, &format!("ip -o -4 addr show dev {dev}"))
}

#[test]
fn kill9_keeps_vms_ports_and_flows() {
    let t = "kill9_keeps_vms_ports_and_flows";
    if !require_root(t) {
        return;
    }
    let mut lab = Lab::new();
    let mut d = host(&mut lab);
    let vm1 = plug_tap(
        &mut lab,
        &d,
        "vm1",
        &["ofport=7"],
        &vm_mac(1),
        Some("10.93.0.1/24"),
    );
    let vm2 = plug_tap(
        &mut lab,
        &d,
        "vm2",
        &["ofport=9"],
        &vm_mac(2),
        Some("10.93.0.2/24"),
    );
    d.ctl(&["del-flows", "br0"]);
    d.load_flows("flows/stateful-firewall.flows");
    assert!(
        lab.ping_until(&vm1, "10.93.0.2", Duration::from_secs(10)),
        "ping through the firewall before the crash\n{}",
        d.log()
    );
    let flows: Vec<String> = d.flow_counters().into_iter().map(|(_, f)| f).collect();
    let ports = d.ctl_json(&["show", "br0"])["bridges"][0]["ports"].clone();
    let addrs = (addr_of(&lab, &vm1, "vm1"), addr_of(&lab, &vm2, "vm2"));
    let ifindex =
        |ns: &str, dev: &str| lab.sh_ok(ns, 5, &format!("cat /sys/class/net/{dev}/ifindex"));
    let idx = (ifindex(&vm1, "vm1"), ifindex(&vm2, "vm2"));

    d.kill9();
    // The VMs keep their NICs while no switch runs.
    assert!(link_exists_in(&vm1, "vm1") && link_exists_in(&vm2, "vm2"));
    let t0 = Instant::now();
    d.restart();
    let up = t0.elapsed();
    assert!(
        lab.ping_until(&vm1, "10.93.0.2", Duration::from_secs(10)),
        "ping after the restart\n{}",
        d.log()
    );
    let pinged = t0.elapsed();
    println!(
        "kill -9 and restart: control socket after {:.0} ms, first ping answered after {:.0} ms",
        up.as_secs_f64() * 1e3,
        pinged.as_secs_f64() * 1e3
    );
    assert_eq!(
        (addr_of(&lab, &vm1, "vm1"), addr_of(&lab, &vm2, "vm2")),
        addrs,
        "the VMs keep their addresses"
    );
    assert_eq!(
        (ifindex(&vm1, "vm1"), ifindex(&vm2, "vm2")),
        idx,
        "the same devices"
    );
    assert!(
        !link_exists_in(d.ns(), "vm1") && !link_exists_in(d.ns(), "vm2"),
        "no twin TAP in the switch's namespace"
    );
    let now_flows: Vec<String> = d.flow_counters().into_iter().map(|(_, f)| f).collect();
    assert_eq!(now_flows, flows, "the flows are back");
    let now_ports = d.ctl_json(&["show", "br0"])["bridges"][0]["ports"].clone();
    let key = |v: &serde_json::Value| -> Vec<(String, u64)> {
        v.as_array()
            .into_iter()
            .flatten()
            .map(|p| {
                (
                    p["port"].as_str().unwrap_or("").to_string(),
                    p["ofport"].as_u64().unwrap_or(0),
                )
            })
            .collect()
    };
    assert_eq!(key(&now_ports), key(&ports), "the same ofports");
    // And the firewall still tracks: a new connection works.
    assert!(lab.ping(&vm2, "10.93.0.1", 2));
    assert!(d.stop(), "a clean stop after the recovery");
    assert!(
        wait_until(Duration::from_secs(5), || !link_exists_in(&vm1, "vm1")),
        "SIGTERM removes the TAPs it created"
    );
}
