//! Interoperability with Open vSwitch 3.1's own Geneve (userspace
//! tunnelling, `datapath_type=netdev`): vswitchd on host0 takes the place
//! of "OVS A" of `shared/anchors/setup-geneve.sh`, a real OVS is host1.
//! VM-to-VM ping and TCP cross, and a Geneve option travels both ways: OVS
//! sets `tun_metadata0` through its TLV map and our flows only deliver
//! frames that arrive with it decoded, and the other way round.
//!
//! Skipped with a message when not root or Open vSwitch is not installed.
//! OVS runs with private run/db/log directories inside host1's namespace,
//! so it cannot touch a system OVS or the anchors harness (`h_` names).

mod common;
mod geneve_support;

use common::{have_tool, require_root, unique_ifname, wait_until, Lab};
use geneve_support::{ovs_host, HostDaemon, UL_IP, VM_IP, VM_MAC, VNI};
use std::time::Duration;

#[test]
fn vswitchd_and_open_vswitch_talk_geneve_with_options() {
    let t = "vswitchd_and_open_vswitch_talk_geneve_with_options";
    if !require_root(t) {
        return;
    }
    for tool in ["ovs-vswitchd", "ovsdb-server", "socat"] {
        if !have_tool(tool) {
            eprintln!("skipping {t}: needs {tool} (apt-get install openvswitch-switch socat)");
            return;
        }
    }
    let mut lab = Lab::new();
    let (host0, host1, vm0, vm1) = (lab.netns(), lab.netns(), lab.netns(), lab.netns());
    for ns in [&vm0, &vm1] {
        lab.sh_ok(
            ns,
            10,
            "sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1",
        );
    }
    let (ul0, ul1) = lab.veth();
    lab.move_link(&ul0, &host0);
    lab.move_link(&ul1, &host1);
    lab.sh_ok(
        &host0,
        10,
        &format!(
            "ip link set dev {ul0} mtu 1600 && ip addr add {}/24 dev {ul0} && ip link set dev {ul0} up",
            UL_IP[0]
        ),
    );

    // host1: Open vSwitch as in setup-geneve.sh (underlay bridge holding
    // the veth, its address on the bridge's internal port; overlay bridge
    // with the VM's tap and a geneve port).
    let (ovs, _) = ovs_host(
        &lab, &host1, &ul1, UL_IP[1], UL_IP[0], &vm1, VM_IP[1], VM_MAC[1],
    );
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
    let d = HostDaemon::start(&host0);
    d.ctl(&["del-flows", "br0"]);
    let tap0 = unique_ifname("gt");
    d.ctl(&["add-port", "br0", &tap0, "type=tap", "ofport=1"]);
    assert!(wait_until(Duration::from_secs(10), || lab
        .sh(&host0, 5, &format!("ip link show dev {tap0}"))
        .status
        .success()));
    lab.sh_ok(&host0, 10, &format!("ip link set dev {tap0} netns {vm0}"));
    lab.sh_ok(
        &vm0,
        10,
        &format!(
            "ip link set dev {tap0} address {} && ip addr add {}/24 dev {tap0} && ip link set dev {tap0} up",
            VM_MAC[0], VM_IP[0]
        ),
    );
    d.ctl(&[
        "add-port",
        "br0",
        "tun0",
        "type=geneve",
        "ofport=2",
        &format!("remote_ip={}", UL_IP[1]),
        &format!("local_ip={}", UL_IP[0]),
        &format!("key={VNI}"),
    ]);
    d.ctl(&[
        "add-tlv-map",
        "br0",
        "{class=0xffff,type=0,len=4}->tun_metadata0",
    ]);
    d.ctl(&[
        "add-flow",
        "br0",
        "priority=10,in_port=1,actions=set_field:0xabcd->tun_metadata0,output:2",
    ]);
    d.ctl(&[
        "add-flow",
        "br0",
        "priority=10,in_port=2,tun_metadata0=0x1234,actions=output:1",
    ]);

    let ok = lab.ping_until(&vm0, VM_IP[1], Duration::from_secs(20));
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
    let startup = geneve_support::unasked_drops(&d);
    eprintln!("drops while the tunnel came up: {startup:?}");
    assert!(lab.ping(&vm1, VM_IP[0], 3), "and back");
    lab.tcp_transfer(&vm0, &vm1, VM_IP[1], 4 << 20);
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
    assert_eq!(geneve_support::unasked_drops(&d), startup);
    eprintln!(
        "OVS datapath flows:\n{}",
        ovs.run(&["ovs-appctl", "dpctl/dump-flows"])
    );
}
