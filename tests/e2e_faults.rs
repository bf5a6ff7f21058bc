//! Faults end to end, with real devices and real traffic.
//!
//! * A VM's TAP is deleted while a flood ping (and the switch's forwarding)
//!   is aimed at it: vswitchd survives, the port shows down in `show` and
//!   `dump-ports --json`, the loss is counted (`port_down`) and logged
//!   once; the TAP comes back (recreated by the operator with
//!   `ip tuntap add`, or by vswitchd itself, which owns it) and traffic
//!   resumes: ping and 10 MiB of TCP.
//! * SIGTERM removes the TAPs vswitchd created (tap and internal ports,
//!   wherever their kernel side was moved) and nothing else: not a
//!   persistent TAP someone else made, not the veth a system port used.
//!
//! To hold the port down long enough to look at it, the test first puts
//! another device (a veth) under the TAP's name in the daemon's namespace:
//! vswitchd's attempts to recreate its TAP then fail (and back off) until
//! the test removes it.

mod common;

use common::vms::{host, move_tap, plug_tap, two_vms, veth_in, vm_mac};
use common::{ip, links_in, mib_per_s, require_root, wait_until, Daemon, Lab, MIB10};
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

/// Lines of the daemon log saying `port` went down.
fn downs_logged(d: &Daemon, port: &str) -> usize {
    d.log()
        .lines()
        .filter(|l| l.contains("link down") && l.contains(&format!("port={port}")))
        .count()
}

fn port_down_drops(d: &Daemon, port: &str) -> u64 {
    d.port(port)["drops"]["port_down"].as_u64().unwrap_or(0)
}

/// A flood ping from vm2 at vm1 for at most `secs`; returns its index.
fn flood(lab: &mut Lab, from: &str, to: &str, secs: u32) -> usize {
    lab.spawn(from, secs + 5, &format!("exec ping -f -q -w {secs} {to}"))
}

#[test]
fn tap_deleted_under_load_goes_down_and_recovers_when_recreated() {
    if !require_root("tap_deleted_under_load_goes_down_and_recovers_when_recreated") {
        return;
    }
    let mut lab = Lab::new();
    let (v, mut d) = two_vms(&mut lab, 81);
    assert!(lab.ping_until(&v.vm2, &v.ip1, Duration::from_secs(10)));
    let load = flood(&mut lab, &v.vm2, &v.ip1, 8);
    std::thread::sleep(Duration::from_millis(500));

    // The VM is destroyed; a foreign device now holds the name in the
    // daemon's namespace, so vswitchd cannot recreate its TAP yet.
    ip(&[
        "-n", &v.host, "link", "add", "vm1", "type", "veth", "peer", "name", "vm1blk",
    ]);
    let t_del = Instant::now();
    ip(&["-n", &v.vm1, "link", "del", "vm1"]);

    assert!(
        wait_until(Duration::from_secs(5), || d.show_link("vm1") == "down"),
        "vm1 shows down in `show`:\n{}\nlog:\n{}",
        d.ctl(&["show"]),
        d.log()
    );
    println!(
        "e2e faults: vm1 seen down {:.0} ms after its TAP was deleted",
        t_del.elapsed().as_secs_f64() * 1e3
    );
    // Down for a while, under load, retrying with backoff.
    let cpu0 = d.cpu_ticks();
    std::thread::sleep(Duration::from_secs(2));
    let cpu = d.cpu_ticks() - cpu0;
    println!("e2e faults: daemon CPU while the port was down under flood: {cpu} ticks in 2 s");
    assert!(d.alive(), "vswitchd survives:\n{}", d.log());
    d.ctl(&["version"]);
    let p = d.port("vm1");
    assert_eq!(p["link"], "down", "dump-ports --json: {p}");
    assert_eq!(d.show_link("vm1"), "down");
    assert!(
        d.ctl(&["show", "br0"]).contains("vm1 (type=tap) link=down"),
        "{}",
        d.ctl(&["show", "br0"])
    );
    assert_eq!(d.show_link("vm2"), "up", "the other port is not affected");
    let lost = port_down_drops(&d, "vm1");
    println!("e2e faults: frames for vm1 dropped as port_down while it was gone: {lost}");
    assert!(
        d.drops().get("port_down").copied().unwrap_or(0) >= lost,
        "dump-drops counts them"
    );
    assert_eq!(downs_logged(&d, "vm1"), 1, "logged once:\n{}", d.log());

    // The operator recreates the TAP. vswitchd may win the race and
    // create it itself; either way the port comes back up.
    let r = lab.sh(&v.host, 10, "ip link del vm1 && ip tuntap add vm1 mode tap");
    let who = if r.status.success() {
        "ip tuntap add"
    } else {
        "vswitchd"
    };
    assert!(
        wait_until(Duration::from_secs(15), || d.show_link("vm1") == "up"),
        "vm1 comes back up (TAP recreated by {who}):\n{}\nlog:\n{}",
        d.ctl(&["show"]),
        d.log()
    );
    let t_up = t_del.elapsed();
    move_tap(
        &lab,
        d.ns(),
        "vm1",
        &v.vm1,
        &vm_mac(1),
        Some(&format!("{}/24", v.ip1)),
    );
    assert!(
        lab.ping_until(&v.vm2, &v.ip1, Duration::from_secs(15)),
        "traffic resumes\n{}",
        d.ctl(&["dump-ports", "br0"])
    );
    println!(
        "e2e faults: TAP recreated by {who}; port up {:.1} s after deletion, ping through {:.1} s after",
        t_up.as_secs_f64(),
        t_del.elapsed().as_secs_f64()
    );
    let rx0 = d.port_counter("vm1", "rx_bytes");
    let t = lab.tcp_transfer(&v.vm1, &v.vm2, &v.ip2, MIB10);
    assert!(d.port_counter("vm1", "rx_bytes") - rx0 >= MIB10 as u64);
    let t2 = lab.tcp_transfer(&v.vm2, &v.vm1, &v.ip1, MIB10);
    println!(
        "e2e faults: after recovery 10 MiB vm1->vm2 {:.0} MiB/s, vm2->vm1 {:.0} MiB/s",
        mib_per_s(MIB10, t),
        mib_per_s(MIB10, t2)
    );
    let out = lab.wait(load);
    println!(
        "e2e faults: flood ping: {}",
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .find(|l| l.contains("transmitted"))
            .unwrap_or("?")
    );
    assert!(d.alive());
    assert_eq!(downs_logged(&d, "vm1"), 1, "one down, logged once");
    assert!(d.stop(), "clean exit on SIGTERM:\n{}", d.log());
}

#[test]
fn tap_deleted_is_recreated_by_vswitchd_and_traffic_resumes() {
    if !require_root("tap_deleted_is_recreated_by_vswitchd_and_traffic_resumes") {
        return;
    }
    let mut lab = Lab::new();
    let (v, mut d) = two_vms(&mut lab, 82);
    assert!(lab.ping_until(&v.vm1, &v.ip2, Duration::from_secs(10)));
    let load = flood(&mut lab, &v.vm1, &v.ip2, 6);
    std::thread::sleep(Duration::from_millis(300));

    // The VM and its namespace go away while it is sending.
    lab.del_netns(&v.vm2);
    // vswitchd owns the TAP: it creates it again in its own namespace.
    assert!(
        wait_until(Duration::from_secs(10), || d
            .log()
            .contains("link up: tap recreated")
            && common::link_exists_in(&v.host, "vm2")),
        "vswitchd recreates vm2:\n{}",
        d.log()
    );
    assert!(d.alive());
    // `show` reads the link state the datapath publishes with its upkeep
    // (every half second), not the port itself.
    assert!(
        wait_until(Duration::from_secs(2), || d.show_link("vm2") == "up"),
        "show: {}",
        d.ctl(&["show", "br0"])
    );
    // A new VM (namespace) takes the TAP over.
    let vm2 = lab.quiet_netns();
    move_tap(
        &lab,
        d.ns(),
        "vm2",
        &vm2,
        &vm_mac(2),
        Some(&format!("{}/24", v.ip2)),
    );
    assert!(
        lab.ping_until(&v.vm1, &v.ip2, Duration::from_secs(15)),
        "traffic resumes"
    );
    let t = lab.tcp_transfer(&v.vm1, &vm2, &v.ip2, MIB10);
    println!(
        "e2e faults: after vswitchd recreated the TAP: 10 MiB in {:.1} ms ({:.0} MiB/s)",
        t.as_secs_f64() * 1e3,
        mib_per_s(MIB10, t)
    );
    let _ = lab.wait(load);
    assert_eq!(downs_logged(&d, "vm2"), 1);
    println!(
        "e2e faults: port_down drops counted on vm2: {}",
        port_down_drops(&d, "vm2")
    );
    assert!(d.stop(), "clean exit:\n{}", d.log());
}

#[test]
fn sigterm_removes_the_taps_vswitchd_created_and_nothing_else() {
    if !require_root("sigterm_removes_the_taps_vswitchd_created_and_nothing_else") {
        return;
    }
    let mut lab = Lab::new();
    let mut d = host(&mut lab);
    let host = d.ns().to_string();
    let vm = lab.netns();
    // Not ours: a persistent TAP (as libvirt makes them) and a veth.
    ip(&["-n", &host, "tuntap", "add", "theirs", "mode", "tap"]);
    veth_in(&host, "sys0", "sys0p", &host);
    d.ctl(&["add-port", "br0", "theirs", "type=tap"]);
    d.ctl(&["add-port", "br0", "sys0", "type=system"]);
    // Ours: two TAPs (one moved into a VM namespace) and an internal port.
    d.ctl(&["add-port", "br0", "own1", "type=tap"]);
    d.ctl(&["add-port", "br0", "own2", "type=tap"]);
    d.ctl(&["add-port", "br0", "int0", "type=internal"]);
    d.ctl(&["add-port", "br0", "dum0", "type=dummy"]);
    ip(&["-n", &host, "link", "set", "dev", "own2", "netns", &vm]);
    let host_before = links_in(&host);
    let vm_before = links_in(&vm);
    for l in ["theirs", "sys0", "sys0p", "own1", "int0", "lo"] {
        assert!(host_before.contains(l), "{l} in {host_before:?}");
    }
    assert!(vm_before.contains("own2"), "{vm_before:?}");

    assert!(d.stop(), "clean exit on SIGTERM:\n{}", d.log());
    assert!(!d.sock.exists(), "control socket removed");

    let host_after = links_in(&host);
    let vm_after = links_in(&vm);
    let gone: BTreeSet<_> = host_before.difference(&host_after).cloned().collect();
    let added: BTreeSet<_> = host_after.difference(&host_before).cloned().collect();
    assert_eq!(
        gone,
        BTreeSet::from(["own1".to_string(), "int0".to_string()]),
        "removed in the host namespace"
    );
    assert!(added.is_empty(), "nothing appeared: {added:?}");
    let vm_gone: BTreeSet<_> = vm_before.difference(&vm_after).cloned().collect();
    assert_eq!(
        vm_gone,
        BTreeSet::from(["own2".to_string()]),
        "the moved TAP too"
    );
    // Still there, and still a TAP: the persistent one is not ours.
    let t = std::process::Command::new("ip")
        .args(["-n", &host, "-d", "link", "show", "theirs"])
        .output()
        .expect("ip link show");
    assert!(
        String::from_utf8_lossy(&t.stdout).contains("tun type tap"),
        "{}",
        String::from_utf8_lossy(&t.stdout)
    );
    println!("e2e faults: SIGTERM removed {gone:?} and {vm_gone:?}; kept {host_after:?}");
}

/// A VM's tap made by someone else (here a veth, as qemu's tap would be)
/// attached with `type=system`: destroyed, the port goes down; recreated
/// under the same name (a restarted VM), the port attaches again by itself.
#[test]
fn system_port_interface_deleted_and_recreated_reattaches() {
    if !require_root("system_port_interface_deleted_and_recreated_reattaches") {
        return;
    }
    let mut lab = Lab::new();
    let mut d = host(&mut lab);
    let host = d.ns().to_string();
    let vm1 = lab.quiet_netns();
    let plug = |lab: &Lab| {
        veth_in(&host, "vm1", "eth0", &vm1);
        lab.configure(&vm1, "eth0", "10.83.0.1/24");
    };
    plug(&lab);
    d.ctl(&["add-port", "br0", "vm1", "type=system"]);
    let vm2 = plug_tap(&mut lab, &d, "vm2", &[], &vm_mac(2), Some("10.83.0.2/24"));
    assert!(lab.ping_until(&vm1, "10.83.0.2", Duration::from_secs(10)));
    let load = flood(&mut lab, &vm2, "10.83.0.1", 6);
    std::thread::sleep(Duration::from_millis(300));

    let t0 = Instant::now();
    ip(&["-n", &vm1, "link", "del", "eth0"]); // takes its peer vm1 along
    assert!(
        wait_until(Duration::from_secs(5), || d.show_link("vm1") == "down"),
        "vm1 down:\n{}\n{}",
        d.ctl(&["show"]),
        d.log()
    );
    println!(
        "e2e faults: system port seen down {:.0} ms after its interface was deleted",
        t0.elapsed().as_secs_f64() * 1e3
    );
    assert!(d.alive());
    assert_eq!(d.port("vm1")["link"], "down");
    std::thread::sleep(Duration::from_millis(500));

    plug(&lab);
    assert!(
        wait_until(Duration::from_secs(15), || d.show_link("vm1") == "up"),
        "vm1 re-attached:\n{}",
        d.log()
    );
    assert!(
        lab.ping_until(&vm2, "10.83.0.1", Duration::from_secs(15)),
        "traffic resumes"
    );
    println!(
        "e2e faults: system port back and ping through {:.1} s after deletion",
        t0.elapsed().as_secs_f64()
    );
    let t = lab.tcp_transfer(&vm1, &vm2, "10.83.0.2", MIB10);
    println!(
        "e2e faults: after re-attach 10 MiB system->tap {:.0} MiB/s",
        mib_per_s(MIB10, t)
    );
    let _ = lab.wait(load);
    assert_eq!(downs_logged(&d, "vm1"), 1, "{}", d.log());
    assert!(d.stop());
}
