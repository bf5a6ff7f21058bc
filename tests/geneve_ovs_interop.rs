//! Interoperability with Open vSwitch 3.1's own Geneve (userspace
//! tunnelling, `datapath_type=netdev`): vswitchd on host0 takes the place
//! of "OVS A" of `shared/anchors/setup-geneve.sh`, a real OVS is host1.
//! VM-to-VM ping and TCP cross, and a Geneve option travels both ways: OVS
//! sets `tun_metadata0` through its TLV map and our flows only deliver
//! frames that arrive with it decoded, and the other way round.
//!
//! Skipped with a message when not root or Open vSwitch is not installed
//! (failing instead under `VSWITCH_REQUIRE_NETNS=1` / `VSWITCH_REQUIRE_OVS=1`).
//! OVS runs with private run/db/log directories inside host1's namespace,
//! so it cannot touch a system OVS or the anchors harness (`h_` names).

mod common;
mod geneve_support;

use common::{require_ovs, require_root, require_tools, Lab};
use geneve_support::{mark_and_accept, ovs_host, unasked_drops, vswitchd_host, Hosts, VM_IP};
use std::time::Duration;

#[test]
fn vswitchd_and_open_vswitch_talk_geneve_with_options() {
    let t = "vswitchd_and_open_vswitch_talk_geneve_with_options";
    if !require_root(t) || !require_ovs(t) || !require_tools(t, &["socat"]) {
        return;
    }
    let mut lab = Lab::new();
    let h = Hosts::new(&mut lab);
    h.underlay(&lab, 0, 1600);
    let (host1, vm0, vm1) = (&h.hosts[1], &h.vms[0], &h.vms[1]);

    // host1: Open vSwitch as in setup-geneve.sh (underlay bridge holding
    // the veth, its address on the bridge's internal port; overlay bridge
    // with the VM's tap and a geneve port).
    let (ovs, _) = ovs_host(&lab, host1, &h.ul[1], vm1, 1);
    ovs.run(&[
        "ovs-ofctl",
        "add-tlv-map",
        "br1",
        "{class=0xffff,type=0,len=4}->tun_metadata0",
    ]);
    ovs.run(&["ovs-ofctl", "del-flows", "br1"]);
    ovs.run(&[
        "ovs-ofctl",
        "add-flow",
        "br1",
        "priority=10,in_port=1,actions=set_field:0x1234->tun_metadata0,output:10",
    ]);
    ovs.run(&[
        "ovs-ofctl",
        "add-flow",
        "br1",
        "priority=10,in_port=10,tun_metadata0=0xabcd,actions=output:1",
    ]);

    // host0: vswitchd with the same TLV map; it only delivers frames that
    // carry OVS's option and marks its own with another value.
    // `gso=false`: Open vSwitch reads the veth underlay with a packet
    // socket, which would get a UDP GSO send uncut (no NIC cuts it on a
    // veth) and drop it as too big: TCP would crawl on retransmits.
    let (d, _tap0) = vswitchd_host(&lab, &h.hosts[0], vm0, 0, &["gso=false".to_string()]);
    mark_and_accept(&d, "0xabcd", "0x1234");

    let ok = lab.ping_until(vm0, VM_IP[1], Duration::from_secs(20));
    assert!(
        ok,
        "vm0 (vswitchd) reaches vm1 (Open vSwitch) over Geneve\nOVS flows:\n{}\nOVS dp flows:\n{}\nour drops: {:?}\nOVS log:\n{}",
        ovs.run(&["ovs-ofctl", "dump-flows", "br1"]),
        ovs.run(&["ovs-appctl", "dpctl/dump-flows"]),
        d.drops(),
        ovs.log()
    );
    // Until OVS has learned its tunnel (its first packets go up its bridge's
    // internal port, where no kernel socket listens on 6081), host1 may
    // answer with ICMP port unreachable: counted, tunnel_unreachable. From
    // here on nothing more may be dropped.
    let startup = unasked_drops(&d);
    eprintln!("drops while the tunnel came up: {startup:?}");
    assert!(lab.ping(vm1, VM_IP[0], 3), "and back");
    lab.tcp_transfer(vm0, vm1, VM_IP[1], 4 << 20);
    // OVS decapsulated our option into tun_metadata0 (its flow matched).
    let flows = ovs.run(&["ovs-ofctl", "dump-flows", "br1"]);
    let line = flows
        .lines()
        .find(|l| l.contains("tun_metadata0=0xabcd"))
        .unwrap_or_else(|| panic!("{flows}"));
    assert!(
        !line.contains("n_packets=0,"),
        "OVS matched our option: {line}"
    );
    let ours = d.ctl(&["dump-flows", "br0"]);
    let line = ours
        .lines()
        .find(|l| l.contains("tun_metadata0=0x1234"))
        .unwrap_or_else(|| panic!("{ours}"));
    assert!(
        !line.contains("n_packets=0,"),
        "we matched OVS's option: {line}"
    );
    assert_eq!(unasked_drops(&d), startup);
    eprintln!(
        "OVS datapath flows:\n{}",
        ovs.run(&["ovs-appctl", "dpctl/dump-flows"])
    );
}
