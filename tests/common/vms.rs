//! What the end-to-end tests plug into a vswitchd running in a host
//! namespace ([`Daemon::start_in`]): "VMs" (namespaces whose kernel stack
//! plays the guest) on `type=tap` ports, namespaces on the far end of veths
//! attached as `type=system` ports, and provider links (both ends of a veth
//! on the same switch). Every namespace belongs to the test's [`Lab`];
//! every veth is created inside a lab namespace, so it dies with it.

use super::{ip, link_exists_in, wait_until, Daemon, Lab};
use std::time::Duration;

/// A host namespace (IPv6 off) running vswitchd with the embedded default
/// config: bridge br0, `priority=0,actions=NORMAL`.
pub fn host(lab: &mut Lab) -> Daemon {
    let h = lab.quiet_netns();
    Daemon::start_in(&h, None)
}

/// A configuration file: bridge br0 with `flows/stateful-firewall.flows`
/// and two `type=tap` ports, vm1 and vm2.
pub fn firewall_two_taps_config() -> String {
    format!(
        r#"
[[bridge]]
name = "br0"
flow_files = ["{}/flows/stateful-firewall.flows"]

[[bridge.port]]
name = "vm1"
type = "tap"

[[bridge.port]]
name = "vm2"
type = "tap"
"#,
        env!("CARGO_MANIFEST_DIR")
    )
}

/// `link` in `ns` up, with address `cidr` when given.
fn link_up(lab: &Lab, ns: &str, link: &str, cidr: Option<&str>) {
    match cidr {
        Some(c) => lab.configure(ns, link, c),
        None => ip(&["-n", ns, "link", "set", "dev", link, "up"]),
    }
}

/// Moves TAP `port` (once it exists) from namespace `from` into `vm`,
/// gives it `mac` and brings it up with `cidr` (None: no address).
pub fn move_tap(lab: &Lab, from: &str, port: &str, vm: &str, mac: &str, cidr: Option<&str>) {
    assert!(
        wait_until(Duration::from_secs(10), || link_exists_in(from, port)),
        "tap {port} appears in {from}"
    );
    ip(&["-n", from, "link", "set", "dev", port, "netns", vm]);
    ip(&["-n", vm, "link", "set", "dev", port, "address", mac]);
    link_up(lab, vm, port, cidr);
}

/// `add-port br0 PORT type=tap OPTS`, then moves the TAP into a new VM
/// namespace (IPv6 off) with `mac` and `cidr`; returns the VM namespace.
pub fn plug_tap(
    lab: &mut Lab,
    d: &Daemon,
    port: &str,
    opts: &[&str],
    mac: &str,
    cidr: Option<&str>,
) -> String {
    let vm = lab.quiet_netns();
    let mut args = vec!["add-port", "br0", port, "type=tap"];
    args.extend_from_slice(opts);
    d.ctl(&args);
    move_tap(lab, d.ns(), port, &vm, mac, cidr);
    vm
}

/// A veth `port` (in `host`, up) <-> `peer` (in `peer_ns`, left down).
pub fn veth_in(host: &str, port: &str, peer: &str, peer_ns: &str) {
    ip(&[
        "-n", host, "link", "add", port, "type", "veth", "peer", "name", peer, "netns", peer_ns,
    ]);
    ip(&["-n", host, "link", "set", "dev", port, "up"]);
}

/// A veth `port` (in the daemon's namespace, attached as `type=system`
/// with `opts`) <-> `peer` in a new namespace (IPv6 off; `mac` and `cidr`
/// when given, up); returns the new namespace.
pub fn plug_veth(
    lab: &mut Lab,
    d: &Daemon,
    port: &str,
    opts: &[&str],
    peer: &str,
    mac: Option<&str>,
    cidr: Option<&str>,
) -> String {
    let ns = lab.quiet_netns();
    veth_in(d.ns(), port, peer, &ns);
    if let Some(m) = mac {
        ip(&["-n", &ns, "link", "set", "dev", peer, "address", m]);
    }
    link_up(lab, &ns, peer, cidr);
    let mut args = vec!["add-port", "br0", port, "type=system"];
    args.extend_from_slice(opts);
    d.ctl(&args);
    ns
}

/// A veth pair `a` <-> `b`, both ends in the daemon's namespace and both
/// attached as `type=system`: a provider link the switch talks to itself
/// over (tags pushed on `a`'s way out come back in on `b`).
pub fn provider_link(d: &Daemon, a: &str, b: &str) {
    veth_in(d.ns(), a, b, d.ns());
    ip(&["-n", d.ns(), "link", "set", "dev", b, "up"]);
    d.ctl(&["add-port", "br0", a, "type=system"]);
    d.ctl(&["add-port", "br0", b, "type=system"]);
}

/// The MAC of `vmN` in [`TwoVms`] (as flows/compute-host.flows expects).
pub fn vm_mac(n: u8) -> String {
    format!("52:54:00:00:00:{n:02x}")
}

/// A host namespace running vswitchd and two VM namespaces on its TAP
/// ports `vm1` and `vm2` (addresses `10.N.0.1/24` and `10.N.0.2/24`, MACs
/// [`vm_mac`] 1 and 2).
pub struct TwoVms {
    /// The daemon's namespace.
    pub host: String,
    /// VM namespaces.
    pub vm1: String,
    pub vm2: String,
    /// VM addresses.
    pub ip1: String,
    pub ip2: String,
}

/// Host + daemon + two VMs on subnet `10.{subnet}.0.0/24`.
pub fn two_vms(lab: &mut Lab, subnet: u8) -> (TwoVms, Daemon) {
    let d = host(lab);
    let ip1 = format!("10.{subnet}.0.1");
    let ip2 = format!("10.{subnet}.0.2");
    let vm1 = plug_tap(lab, &d, "vm1", &[], &vm_mac(1), Some(&format!("{ip1}/24")));
    let vm2 = plug_tap(lab, &d, "vm2", &[], &vm_mac(2), Some(&format!("{ip2}/24")));
    (
        TwoVms {
            host: d.ns().to_string(),
            vm1,
            vm2,
            ip1,
            ip2,
        },
        d,
    )
}
