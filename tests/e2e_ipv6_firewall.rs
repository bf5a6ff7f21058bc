//! IPv6 VMs behind `flows/stateful-firewall.flows`, end to end: a vswitchd
//! in its own "host" namespace with two `type=tap` ports whose kernel sides
//! live in two VM namespaces with IPv6 on.
//!
//! The field failure: neighbour solicitations and advertisements are `+inv`
//! in conntrack (as in Open vSwitch), and a firewall that passes ARP around
//! conntrack but not ND works until the VMs' neighbour caches expire, then
//! the VMs lose each other. Here the caches are flushed before every ping
//! and transfer, so each one needs a fresh neighbour discovery through the
//! switch; the test checks that ND went around conntrack (its flows
//! counted), that the traffic itself was tracked (its connections are in
//! the conntrack table), and that no verdict was invalid and nothing was
//! dropped.
//!
//! Timings are printed for the report (`--nocapture`), never asserted.

mod common;

use common::daemon::new_drops;
use common::vms::{host, move_tap, vm_mac};
use common::{mib_per_s, require_root, require_tools, wait_until, Daemon, Lab, MIB10};
use std::time::Duration;

/// `add-port br0 PORT type=tap`, its TAP moved into a new VM namespace
/// with IPv6 on, `mac`, and `addr/64` (no duplicate address detection, so
/// the address is usable at once); returns the VM namespace once its
/// link-local address is usable too (from then on every MLD report it
/// sends has a link-local source, as the firewall's MLD flows expect).
fn plug_vm6(lab: &mut Lab, d: &Daemon, port: &str, mac: &str, addr: &str) -> String {
    let vm = lab.netns();
    d.ctl(&["add-port", "br0", port, "type=tap"]);
    move_tap(lab, d.ns(), port, &vm, mac, None);
    lab.sh_ok(
        &vm,
        5,
        &format!("ip -6 addr add {addr}/64 dev {port} nodad"),
    );
    assert!(
        wait_until(Duration::from_secs(10), || {
            let a = lab.sh_ok(&vm, 5, &format!("ip -6 addr show dev {port} scope link"));
            a.contains("fe80::") && !a.contains("tentative")
        }),
        "{port}: link-local address ready in {vm}"
    );
    vm
}

/// Both VMs forget every neighbour, so the next packet between them needs
/// neighbour discovery through the switch.
fn flush_neighbours(lab: &Lab, vms: &[&str]) {
    for vm in vms {
        lab.sh_ok(vm, 5, "ip -6 neigh flush all");
        let table = lab.sh_ok(vm, 5, "ip -6 neigh show");
        let usable = ["REACHABLE", "STALE", "DELAY", "PROBE", "PERMANENT"];
        assert!(
            !table
                .lines()
                .any(|l| l.contains("fd00:") && usable.iter().any(|s| l.contains(s))),
            "{vm}: neighbour cache flushed: {table}"
        );
    }
}

/// The packet counter of the one flow whose text contains `needle`.
fn flow_packets(d: &Daemon, needle: &str) -> u64 {
    let hits: Vec<(u64, String)> = d
        .flow_counters()
        .into_iter()
        .filter(|(_, f)| f.contains(needle))
        .collect();
    assert_eq!(
        hits.len(),
        1,
        "exactly one flow with {needle:?}: {hits:#?}\n{}",
        d.ctl(&["dump-flows", "br0"])
    );
    hits[0].0
}

#[test]
fn ipv6_vms_reach_each_other_through_the_firewall_after_neighbour_expiry() {
    let test = "ipv6_vms_reach_each_other_through_the_firewall_after_neighbour_expiry";
    if !require_root(test) || !require_tools(test, &["ping", "socat", "ss"]) {
        return;
    }
    let mut lab = Lab::new();
    let d = host(&mut lab);
    let ip1 = "fd00:66::1";
    let ip2 = "fd00:66::2";
    let vm1 = plug_vm6(&mut lab, &d, "vm1", &vm_mac(1), ip1);
    let vm2 = plug_vm6(&mut lab, &d, "vm2", &vm_mac(2), ip2);
    d.load_flows("flows/stateful-firewall.flows");
    let vms = [vm1.as_str(), vm2.as_str()];
    let before = d.drops();

    // vm1 -> vm2, with both caches empty: vm1 must solicit vm2 first.
    flush_neighbours(&lab, &vms);
    assert!(
        lab.ping_until(&vm1, ip2, Duration::from_secs(10)),
        "vm1 cannot reach vm2 after its neighbour cache was flushed\n{}\n{}",
        d.ctl(&["dump-flows", "br0"]),
        d.ctl(&["dump-drops", "br0"])
    );
    flush_neighbours(&lab, &vms);
    assert!(lab.ping(&vm1, ip2, 3), "ping vm1 -> vm2");
    // And the other way, again from empty caches.
    flush_neighbours(&lab, &vms);
    assert!(lab.ping(&vm2, ip1, 3), "ping vm2 -> vm1");

    // A TCP transfer each way, each starting from empty caches.
    flush_neighbours(&lab, &vms);
    let t12 = lab.tcp_transfer(&vm1, &vm2, ip2, MIB10);
    flush_neighbours(&lab, &vms);
    let t21 = lab.tcp_transfer(&vm2, &vm1, ip1, MIB10);
    println!(
        "e2e IPv6 stateful-firewall.flows: 10 MiB vm1->vm2 {:.1} ms ({:.0} MiB/s), vm2->vm1 {:.1} ms ({:.0} MiB/s)",
        t12.as_secs_f64() * 1e3,
        mib_per_s(MIB10, t12),
        t21.as_secs_f64() * 1e3,
        mib_per_s(MIB10, t21)
    );

    // Neighbour discovery crossed the switch around conntrack: at least one
    // solicitation and one advertisement per flush that was followed by
    // traffic (five). The flows were loaded fresh: their counters started
    // at zero.
    let ns = flow_packets(&d, "icmp_type=135");
    let na = flow_packets(&d, "icmp_type=136");
    println!("e2e IPv6: neighbour solicitations {ns}, advertisements {na} around conntrack");
    assert!(ns >= 5 && na >= 5, "ND flows counted: NS {ns}, NA {na}");

    // The traffic itself went through conntrack: new connections committed,
    // replies established.
    for needle in [
        "ct_state=-trk,ipv6 actions=ct(table=1)",
        "ct_state=+new+trk,ipv6 actions=ct(commit),NORMAL",
        "ct_state=+est+trk,ipv6 actions=NORMAL",
    ] {
        assert!(flow_packets(&d, needle) > 0, "{needle} counted packets");
    }
    let ct = d.ctl(&["dump-conntrack", "br0"]);
    println!("e2e IPv6: dump-conntrack:\n{ct}");
    let tcp: Vec<&str> = ct
        .lines()
        .filter(|l| l.contains("dport=5001") && l.contains("fd00:66::"))
        .collect();
    assert_eq!(tcp.len(), 2, "both transfers tracked:\n{ct}");
    for l in &tcp {
        assert!(
            l.contains("state=TIME_WAIT") || l.contains("state=CLOSED"),
            "connection closed cleanly: {l}"
        );
    }

    // No conntrack verdict was invalid (ND and MLD never reached it), and
    // nothing was dropped.
    let st = d.ctl_json(&["ct-stats", "br0"]);
    let inv = st["invalid"].as_object().expect("invalid counters");
    assert!(
        inv.values().all(|n| n.as_u64() == Some(0)),
        "invalid verdicts: {st}"
    );
    let fresh = new_drops(&before, &d.drops());
    assert!(
        fresh.is_empty(),
        "unexpected drops during the traffic: {fresh:?}\n{}",
        d.ctl(&["dump-drops", "br0"])
    );
}
