//! VLAN rules, MTU enforcement, short-frame padding and BPDU safety, end to
//! end: a real vswitchd in a "host" network namespace, VMs in their own
//! namespaces on `type=tap` ports, provider links made of veth pairs whose
//! ends are `type=system` (AF_PACKET) ports, real kernel stacks on both
//! sides.
//!
//! Field stories 2 (double VLAN froze SSH sessions) and 3 (one VM's BPDUs
//! took a compute node's uplink down), DESIGN.md.
//!
//! This kernel has no 8021q module, so no VLAN devices: tags are pushed and
//! popped by the switch itself, tagged frames are written by a raw
//! AF_PACKET socket (python3) and every observation is made with a raw
//! capture socket (python3, `common::raw::Raw`) that asks the kernel for
//! PACKET_AUXDATA (the tag the kernel strips on receive is put back, as
//! libpcap does) and PACKET_VNET_HDR (a TSO super-packet crossing a veth is
//! not on any wire: what would be is its segments, headers + gso_size; a
//! plain `tcpdump -w` would show the super-packet as one huge frame). Both
//! come from `common::raw`.
//!
//! Every test skips with a message when not root, unless
//! `VSWITCH_REQUIRE_NETNS=1`; loops are bounded; the namespaces, the daemon
//! and every process started are removed by Drop guards, even on failure.

mod common;

use common::daemon::new_drops;
use common::frames::{contains, eth_tagged, hex, mac, raw_frame, stp_bpdu, udp_frame};
use common::raw::{frames_from, Frame, Raw};
use common::vms::{host, plug_tap, plug_veth, provider_link};
use common::{mib_per_s, require_root, require_tools, wait_until, Daemon, Lab, MIB10};
use serde_json::Value;
use std::collections::BTreeMap;
use std::time::Duration;

/// The path MTU over a link of MTU 1500 carrying an 802.1ad S-tag over an
/// 802.1Q C-tag: 1500 - 8 (an 802.1ad outer tag gets no allowance, see
/// src/datapath/pmtu.rs).
const PATH_MTU: usize = 1492;

// ---------------------------------------------------------------------------
// What every test here starts from

/// Skips (with a message) unless root and `tools` are there; otherwise a
/// lab, the raw-frame scripts and a host namespace running vswitchd (br0,
/// NORMAL).
fn vlan_lab(test: &str, tools: &[&str]) -> Option<(Lab, Raw, Daemon)> {
    if !require_root(test) || !require_tools(test, tools) {
        return None;
    }
    let mut lab = Lab::new();
    let raw = Raw::new();
    let d = host(&mut lab);
    Some((lab, raw, d))
}

/// Customers A and B of a provider bridge: system ports `pa` and `pb`,
/// veths to `ea` (MAC 02:00:00:00:NET:0a, no address) and `eb` (MAC
/// 02:00:00:00:NET:0b, `b_cidr`) in namespaces of their own.
struct Customers {
    a: String,
    b: String,
    sa: [u8; 6],
    sb: [u8; 6],
}

fn customers(lab: &mut Lab, d: &Daemon, net: u8, b_cidr: Option<&str>) -> Customers {
    let (ma, mb) = (
        format!("02:00:00:00:{net}:0a"),
        format!("02:00:00:00:{net}:0b"),
    );
    let a = plug_veth(lab, d, "pa", &[], "ea", Some(&ma), None);
    let b = plug_veth(lab, d, "pb", &[], "eb", Some(&mb), b_cidr);
    Customers {
        a,
        b,
        sa: mac(&ma),
        sb: mac(&mb),
    }
}

/// The upstream switch: system port `uplink0`, whose far end `uplink1`
/// (MAC 02:00:00:00:NET:fe, 10.NET.0.254/24) is in a namespace of its own;
/// returns that namespace.
fn uplink(lab: &mut Lab, d: &Daemon, net: u8) -> String {
    plug_veth(
        lab,
        d,
        "uplink0",
        &[],
        "uplink1",
        Some(&format!("02:00:00:00:{net}:fe")),
        Some(&format!("10.{net}.0.254/24")),
    )
}

/// The frames a capture saw arrive from `src` (not those the interface
/// sent).
fn received_from(frames: &[Frame], src: [u8; 6]) -> Vec<&Frame> {
    frames_from(frames, src)
        .into_iter()
        .filter(|f| !f.out)
        .collect()
}

/// `dump-drops br0`, printed under `label`.
fn dump_drops(d: &Daemon, label: &str) -> String {
    let dd = d.ctl(&["dump-drops", "br0"]);
    println!("e2e {label}: dump-drops:\n{dd}");
    dd
}

/// True when `dump-drops` text `dd` has the line `REASON N`.
fn shows_drops(dd: &str, reason: &str, n: u64) -> bool {
    dd.lines()
        .any(|l| l.split_whitespace().take(2).eq([reason, &n.to_string()]))
}

/// The drop reason of the first pass of a `trace --json`.
fn drop_reason(tj: &Value) -> &Value {
    &tj["passes"][0]["drop_reason"]
}

// ---------------------------------------------------------------------------
// 1. The double-VLAN freeze, healed

/// Field story 2 on purpose: two VMs talk over a provider link that carries
/// every frame with an 802.1ad S-tag over an 802.1Q C-tag
/// (flows/double-vlan.flows): 4 bytes more than a 1500-byte link takes.
/// Small packets work; a full-size DF ping is answered by the switch with
/// ICMP "fragmentation needed, mtu = 1492"; 10 MiB of TCP completes each
/// way because the VMs' kernels learn the path MTU from those errors; no
/// frame that arrives over the link is larger than the link's MTU allows;
/// dump-drops and dump-ports count mtu_exceeded.
#[test]
fn double_vlan_freeze_healed() {
    let Some((mut lab, raw, d)) =
        vlan_lab("double_vlan_freeze_healed", &["python3", "socat", "ping"])
    else {
        return;
    };
    let (ip1, ip2) = ("10.81.0.1", "10.81.0.2");
    let vm1 = plug_tap(
        &mut lab,
        &d,
        "vm1",
        &[],
        "52:54:00:00:81:01",
        Some("10.81.0.1/24"),
    );
    let vm2 = plug_tap(
        &mut lab,
        &d,
        "vm2",
        &[],
        "52:54:00:00:81:02",
        Some("10.81.0.2/24"),
    );
    provider_link(&d, "wire0", "wire1");
    d.load_flows("flows/double-vlan.flows");
    for p in ["vm1", "vm2", "wire0", "wire1"] {
        assert_eq!(d.show_port(p)["mtu"], 1500, "{p}: MTU 1500");
    }
    for (ns, l) in [(&vm1, "vm1"), (&vm2, "vm2")] {
        let m = lab.sh_ok(ns, 5, &format!("cat /sys/class/net/{l}/mtu"));
        assert_eq!(m.trim(), "1500", "{l} in its VM: MTU 1500");
    }
    // What arrives at each end of the link (the other end's transmissions).
    let cap0 = raw.capture(&mut lab, d.ns(), "wire0");
    let cap1 = raw.capture(&mut lab, d.ns(), "wire1");
    let before = d.drops();

    // Small packets work, as in the field.
    assert!(
        lab.ping_until(&vm1, ip2, Duration::from_secs(10)),
        "small ping vm1 -> vm2 over the double-tagged link\n{}\n{}",
        d.ctl(&["dump-flows", "br0"]),
        d.ctl(&["dump-drops", "br0"])
    );
    assert!(lab.ping(&vm2, ip1, 3), "small ping vm2 -> vm1");
    assert_eq!(d.drop_count("mtu_exceeded"), 0, "small frames fit");

    // 10 MiB from vm1 while neither VM knows anything about the path (a
    // VM that had learned it would advertise a smaller MSS and hide the
    // problem): full-size segments, 1500 bytes of IP + 8 bytes of tags,
    // are dropped and answered; vm1's kernel learns; TCP completes.
    let el1 = lab.tcp_transfer(&vm1, &vm2, ip2, MIB10);
    let m1 = d.drop_count("mtu_exceeded");
    let route1 = lab.sh_ok(&vm1, 5, &format!("ip route get {ip2}"));
    println!(
        "e2e double vlan: 10 MiB vm1 -> vm2 over two tags, path MTU unknown at start: {:.1} ms ({:.1} MiB/s), mtu_exceeded during it: {m1}; vm1: {}",
        el1.as_secs_f64() * 1e3,
        mib_per_s(MIB10, el1),
        route1.split_whitespace().collect::<Vec<_>>().join(" ")
    );
    assert!(
        m1 > 0,
        "vm1's full-size segments were dropped as mtu_exceeded"
    );
    assert!(
        route1.contains(&format!("mtu {PATH_MTU}")),
        "vm1 learned the path MTU {PATH_MTU}: {route1}"
    );
    let w0 = d.port("wire0");
    assert!(
        w0["drops"]["mtu_exceeded"].as_u64().unwrap_or(0) >= 1,
        "wire0 (vm1's egress onto the link) counts mtu_exceeded: {w0}"
    );

    // A full-size DF ping from vm2, which has not learned anything: 1472 +
    // 8 + 20 = 1500 bytes of IP, + 8 bytes of tags. The switch answers
    // with fragmentation-needed and the MTU that fits.
    let out = lab.sh(
        &vm2,
        20,
        &format!("ping -M do -s 1472 -c 3 -i 0.3 -W 2 {ip1}"),
    );
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    println!("e2e double vlan: ping -M do -s 1472 from vm2:\n{text}");
    assert!(
        !out.status.success(),
        "a 1508-byte frame must not get through: {text}"
    );
    assert!(
        text.contains("Frag needed") && text.contains(&format!("mtu = {PATH_MTU}")),
        "ICMP fragmentation-needed with mtu {PATH_MTU} from the switch: {text}"
    );
    let route2 = lab.sh_ok(&vm2, 5, &format!("ip route get {ip1}"));
    assert!(
        route2.contains(&format!("mtu {PATH_MTU}")),
        "vm2 learned the path MTU: {route2}"
    );
    let w1 = d.port("wire1");
    assert!(
        w1["drops"]["mtu_exceeded"].as_u64().unwrap_or(0) >= 1,
        "wire1 (vm2's egress onto the link) counts mtu_exceeded: {w1}"
    );
    // The largest ping that fits does get through, both ways: what the
    // switch says fits, the kernel sends (no tx_errors, checked below).
    let fit = PATH_MTU - 28;
    for (ns, dst) in [(&vm2, ip1), (&vm1, ip2)] {
        assert!(
            lab.sh(
                ns,
                20,
                &format!("ping -M do -s {fit} -c 2 -i 0.3 -W 2 {dst}")
            )
            .status
            .success(),
            "the largest frame that fits (IP {PATH_MTU} + two tags) gets through to {dst}\n{}\n{}",
            d.ctl(&["dump-drops", "br0"]),
            d.ctl(&["dump-ports", "br0"])
        );
    }

    let el2 = lab.tcp_transfer(&vm2, &vm1, ip1, MIB10);
    println!(
        "e2e double vlan: 10 MiB vm2 -> vm1 (path MTU already known) in {:.1} ms ({:.1} MiB/s)",
        el2.as_secs_f64() * 1e3,
        mib_per_s(MIB10, el2)
    );

    // What crossed the link.
    let at0 = cap0.finish(&mut lab);
    let at1 = cap1.finish(&mut lab);
    let mut arrived = 0usize;
    let mut gso = 0usize;
    let mut largest = 0usize;
    for (end, frames) in [("wire0", &at0), ("wire1", &at1)] {
        for f in frames.iter().filter(|f| !f.out) {
            arrived += 1;
            if f.gso > 0 {
                gso += 1;
            }
            largest = largest.max(f.counted());
            assert!(
                f.counted() <= 1500,
                "a frame larger than the link MTU arrived at {end}: {} bytes on the wire, {} counted (tags {:x?}, gso {})",
                f.wire,
                f.counted(),
                f.tags,
                f.gso
            );
            assert_eq!(
                f.tags,
                vec![(0x88a8, 20), (0x8100, 10)],
                "every frame on the link carries S-tag 20 over C-tag 10 ({end})"
            );
        }
    }
    println!(
        "e2e double vlan: {arrived} frames crossed the link ({gso} TSO super-packets), largest counted {largest} bytes (<= 1500)"
    );
    assert!(
        arrived > 2 * MIB10 / 65536,
        "the captures saw the transfers ({arrived} frames)"
    );
    assert_eq!(
        largest, 1500,
        "full-size frames (IP {PATH_MTU} + 2 tags) crossed"
    );

    // trace --packet of a full-size datagram from vm1 says the same.
    let full = udp_frame(
        mac("52:54:00:00:81:02"),
        mac("52:54:00:00:81:01"),
        &[],
        [10, 81, 0, 1],
        [10, 81, 0, 2],
        9,
        &[0x5a; 1472],
        &[],
    );
    let (tt, _) = d.trace("in_port=vm1", Some(&full));
    println!(
        "e2e double vlan: trace --packet (1500-byte datagram from vm1), last lines:\n{}",
        tt.lines()
            .rev()
            .take(3)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(
        tt.contains("mtu_exceeded") && tt.contains(&format!("path MTU is {PATH_MTU}")),
        "{tt}"
    );

    let total = d.drop_count("mtu_exceeded");
    let dd = dump_drops(&d, "double vlan");
    assert!(
        shows_drops(&dd, "mtu_exceeded", total),
        "dump-drops shows mtu_exceeded with its count {total}: {dd}"
    );
    let fresh = new_drops(&before, &d.drops());
    assert!(
        fresh.keys().all(|k| k == "mtu_exceeded"),
        "only mtu_exceeded drops: {fresh:?}"
    );
    for p in ["wire0", "wire1", "vm1", "vm2"] {
        let j = d.port(p);
        assert_eq!(
            j["tx_errors"], 0,
            "{p}: the kernel refused nothing we sent: {j}"
        );
    }
    assert!(
        d.log().contains("mtu_exceeded"),
        "the MTU drop is logged:\n{}",
        d.log()
    );
}

// ---------------------------------------------------------------------------
// 2. Access ports

/// Three VMs on access ports (`tag=100`, `tag=100`, `tag=200`) and a trunk
/// (`trunks=100,200`, a system port whose far end only captures), all on
/// NORMAL. The two VLAN-100 VMs talk; VLAN 100 and 200 do not; a frame
/// that arrives tagged on an access port is dropped and counted
/// (`vlan_tagged_on_access_port`), whether its tag names another VLAN (the
/// VLAN-hopping attempt) or its own; frames leave the trunk tagged with
/// their VLAN, exactly once.
#[test]
fn access_ports_keep_vlans_apart() {
    let Some((mut lab, raw, d)) = vlan_lab("access_ports_keep_vlans_apart", &["python3", "ping"])
    else {
        return;
    };
    let (m1, m2, m3) = (
        "52:54:00:00:82:01",
        "52:54:00:00:82:02",
        "52:54:00:00:82:03",
    );
    let vm1 = plug_tap(&mut lab, &d, "vm1", &["tag=100"], m1, Some("10.82.0.1/24"));
    let vm2 = plug_tap(&mut lab, &d, "vm2", &["tag=100"], m2, Some("10.82.0.2/24"));
    let vm3 = plug_tap(&mut lab, &d, "vm3", &["tag=200"], m3, Some("10.82.0.3/24"));
    let tr = plug_veth(
        &mut lab,
        &d,
        "trunk0",
        &["trunks=100,200"],
        "trunk1",
        Some("02:00:00:00:82:99"),
        None,
    );
    let show = d.ctl(&["show", "br0"]);
    println!("e2e access: show:\n{show}");
    for (p, t) in [("vm1", "100"), ("vm2", "100"), ("vm3", "200")] {
        assert!(
            show.lines()
                .any(|l| l.contains(&format!(" {p} ")) && l.contains(&format!("tag={t}"))),
            "show lists {p} with tag={t}: {show}"
        );
        let pol = &d.show_port(p)["policy"];
        assert_eq!(pol["tag"], t.parse::<u64>().unwrap(), "{p}: {pol}");
    }
    assert!(show.contains("trunks=100,200"), "{show}");

    let at_trunk = raw.capture(&mut lab, &tr, "trunk1");
    let at_vm2 = raw.capture(&mut lab, &vm2, "vm2");
    let at_vm3 = raw.capture(&mut lab, &vm3, "vm3");
    let before = d.drops();

    // Same VLAN: traffic flows.
    assert!(
        lab.ping_until(&vm1, "10.82.0.2", Duration::from_secs(10)),
        "vm1 -> vm2 in VLAN 100\n{}",
        d.ctl(&["dump-drops", "br0"])
    );
    assert!(lab.ping(&vm2, "10.82.0.1", 3), "vm2 -> vm1 in VLAN 100");
    // Different VLANs: nothing, not even ARP.
    assert!(
        !lab.ping(&vm1, "10.82.0.3", 2),
        "VLAN 100 must not reach VLAN 200"
    );
    assert!(
        !lab.ping(&vm3, "10.82.0.2", 2),
        "VLAN 200 must not reach VLAN 100"
    );
    let neigh = lab.sh_ok(&vm1, 5, "ip neigh show 10.82.0.3");
    assert!(
        !neigh.contains(m3),
        "vm1 never resolved vm3 across VLANs: {neigh}"
    );

    // Tagged frames written straight into vm1's access port: one claiming
    // VLAN 200 (hopping), one claiming its own VLAN 100.
    const N: usize = 5;
    let tagged = |tci: u16, payload: &[u8]| {
        let (src, dst) = ([10, 82, 0, 1], [10, 82, 0, 255]);
        udp_frame(
            [0xff; 6],
            mac(m1),
            &[(0x8100, tci)],
            src,
            dst,
            7,
            payload,
            &[],
        )
    };
    let hop = tagged(200, b"vlan-hop-attempt");
    let own = tagged((3 << 13) | 100, b"tagged-own-vlan");
    raw.send(&lab, &vm1, "vm1", &[&hop, &own], N, 0.02);
    let n = d.settle_drops("vlan_tagged_on_access_port", (2 * N) as u64);
    assert_eq!(
        n,
        (2 * N) as u64,
        "every tagged frame on the access port counted once"
    );
    let dd = dump_drops(&d, "access");
    assert!(
        shows_drops(&dd, "vlan_tagged_on_access_port", (2 * N) as u64),
        "{dd}"
    );

    // trace: by flow and with the real frame.
    let (tt, tj) = d.trace("in_port=vm1,dl_vlan=200", None);
    println!("e2e access: trace in_port=vm1,dl_vlan=200:\n{tt}");
    assert!(
        tt.contains("Drop reason: vlan_tagged_on_access_port"),
        "{tt}"
    );
    assert_eq!(drop_reason(&tj), "vlan_tagged_on_access_port");
    let (tt, tj) = d.trace("in_port=vm1", Some(&own));
    assert!(tt.contains("tagged frame on access port vm1"), "{tt}");
    assert_eq!(drop_reason(&tj), "vlan_tagged_on_access_port");
    // An untagged frame from the same port goes on (trace learns nothing).
    let (tt, tj) = d.trace("in_port=vm1,dl_dst=ff:ff:ff:ff:ff:ff", None);
    assert!(drop_reason(&tj).is_null(), "{tt}");

    let trunk = at_trunk.finish(&mut lab);
    let f2 = at_vm2.finish(&mut lab);
    let f3 = at_vm3.finish(&mut lab);
    for (what, frames) in [("vm2", &f2), ("vm3", &f3), ("trunk", &trunk)] {
        assert!(
            !frames
                .iter()
                .any(|f| contains(&f.bytes, b"vlan-hop-attempt")
                    || contains(&f.bytes, b"tagged-own-vlan")),
            "a tagged frame from an access port leaked to {what}"
        );
    }
    assert!(
        frames_from(&f3, mac(m1)).is_empty() && frames_from(&f3, mac(m2)).is_empty(),
        "nothing from VLAN 100 reached vm3 (VLAN 200)"
    );
    assert!(
        frames_from(&f2, mac(m3)).is_empty(),
        "nothing from VLAN 200 reached vm2"
    );
    for f in f2.iter().chain(f3.iter()) {
        assert!(
            f.tags.is_empty(),
            "access ports deliver untagged frames: {:x?}",
            f.tags
        );
    }
    // On the trunk, each VM's frames carry its VLAN, exactly one tag.
    let mut seen = BTreeMap::new();
    for f in trunk.iter().filter(|f| !f.out) {
        let want = if f.src() == mac(m3) { 200 } else { 100 };
        assert_eq!(
            f.tags
                .iter()
                .map(|t| (t.0, t.1 & 0x0fff))
                .collect::<Vec<_>>(),
            vec![(0x8100, want)],
            "frame from {:02x?} on the trunk",
            f.src()
        );
        *seen.entry(want).or_insert(0) += 1;
    }
    println!("e2e access: frames on the trunk by VLAN: {seen:?}");
    assert!(
        seen.contains_key(&100) && seen.contains_key(&200),
        "{seen:?}"
    );
    let fresh = new_drops(&before, &d.drops());
    assert!(
        fresh.keys().all(|k| k == "vlan_tagged_on_access_port"),
        "{fresh:?}"
    );
}

// ---------------------------------------------------------------------------
// 3. QinQ on purpose

/// A provider bridge (flows/qinq.flows): customer A (system port pa) to
/// customer B (pb) over a provider link tr0 -> tr1. An untagged frame goes
/// out with an 802.1ad S-tag over an 802.1Q C-tag and comes back intact
/// after both are popped; a customer-tagged frame gets only the S-tag and
/// keeps its own. The misconfigurations are counted drops, in dump-drops
/// and in trace: push_vlan:0x8100 onto a tagged frame (double_vlan_push),
/// pop_vlan of an untagged frame (pop_vlan_untagged), a third tag
/// (too_many_vlans); two 802.1Q pushes in one flow are refused at
/// add-flow.
#[test]
fn qinq_push_pop_round_trip_is_byte_exact() {
    let Some((mut lab, raw, d)) = vlan_lab("qinq_push_pop_round_trip_is_byte_exact", &["python3"])
    else {
        return;
    };
    let Customers { a, b, sa, sb } = customers(&mut lab, &d, 83, None);
    provider_link(&d, "tr0", "tr1");
    d.load_flows("flows/qinq.flows");
    // The misconfigurations, on purpose.
    for f in [
        // A customer tag VID 77 gets a second 802.1Q tag: refused per packet.
        "priority=110,in_port=pa,dl_vlan=77,actions=push_vlan:0x8100,mod_vlan_vid:10,output:tr0",
        // An untagged frame crosses the provider link untagged...
        "priority=110,in_port=pa,dl_type=0x88b6,actions=output:tr0",
        // ...and meets a pop on the other side.
        "priority=50,in_port=tr1,actions=pop_vlan,pop_vlan,output:pb",
    ] {
        d.ctl(&["add-flow", "br0", f]);
    }
    let n_flows = d.flows().len();
    let err = d.ctl_err(&[
        "add-flow",
        "br0",
        "in_port=pa,actions=push_vlan:0x8100,push_vlan:0x8100,output:tr0",
    ]);
    println!("e2e qinq: two 802.1Q pushes refused: {}", err.trim());
    assert!(
        err.contains("two 802.1Q") && err.contains("0x88a8"),
        "{err}"
    );
    assert_eq!(d.flows().len(), n_flows, "a refused flow changes nothing");

    let on_link = raw.capture(&mut lab, d.ns(), "tr1");
    let at_b = raw.capture(&mut lab, &b, "eb");
    let before = d.drops();
    const N: usize = 4;
    let body: Vec<u8> = (0..=255u8).cycle().skip(7).take(120).collect();
    // 1. Untagged customer frame: C-tag 10 + S-tag 20 on the link.
    let datagram = |tags: &[(u16, u16)]| {
        udp_frame(sb, sa, tags, [10, 83, 0, 1], [10, 83, 0, 2], 9, &body, &[])
    };
    let plain = datagram(&[]);
    // 2. Customer-tagged (PCP 5, VID 10): S-tag 30 only, C-tag kept.
    let ctagged = datagram(&[(0x8100, (5 << 13) | 10)]);
    // 3. Customer VID 77: the misconfigured 802.1Q push.
    let dbl = raw_frame(
        sb,
        sa,
        &[(0x8100, 77)],
        b"double-push.....................................",
    );
    // 4. Untagged onto the link, popped on the way off.
    let untag = eth_tagged(
        sb,
        sa,
        &[],
        0x88b6,
        b"pop-untagged....................................",
    );
    // 5. Already QinQ from the customer: a third tag would be pushed.
    let third = raw_frame(
        sb,
        sa,
        &[(0x88a8, 300), (0x8100, 100)],
        b"third-tag.......................................",
    );
    raw.send(
        &lab,
        &a,
        "ea",
        &[&plain, &ctagged, &dbl, &untag, &third],
        N,
        0.02,
    );
    for (r, what) in [
        ("double_vlan_push", "push_vlan:0x8100 onto a tagged frame"),
        ("pop_vlan_untagged", "pop_vlan of an untagged frame"),
        ("too_many_vlans", "a third tag"),
    ] {
        let n = d.settle_drops(r, N as u64);
        assert_eq!(
            n,
            N as u64,
            "{what}: counted as {r}\n{}",
            d.ctl(&["dump-drops", "br0"])
        );
    }
    let link = on_link.finish(&mut lab);
    let got = at_b.finish(&mut lab);

    // On the provider link: exactly the tags the flows pushed.
    let link_in = received_from(&link, sa);
    let with_tags = |tags: Vec<(u16, u16)>| link_in.iter().filter(|f| f.tags == tags).count();
    assert_eq!(
        with_tags(vec![(0x88a8, 20), (0x8100, 10)]),
        N,
        "S-tag 20 over C-tag 10"
    );
    // push_vlan copies the outer tag's TCI (OpenFlow), so the S-tag keeps
    // the customer's PCP 5.
    assert_eq!(
        with_tags(vec![(0x88a8, (5 << 13) | 30), (0x8100, (5 << 13) | 10)]),
        N,
        "S-tag 30 over the customer's own tag: {link_in:?}"
    );
    assert_eq!(with_tags(vec![]), N, "the untagged 0x88b6 frames");
    assert_eq!(link_in.len(), 3 * N, "nothing else crossed: {link_in:?}");
    let first = link_in
        .iter()
        .find(|f| f.tags.len() == 2 && f.tags[0].1 == 20)
        .expect("a QinQ frame");
    println!("e2e qinq: on the link: {}", hex(&first.bytes[..26]));

    // At B: the frames exactly as A sent them, nothing else.
    let at_b: Vec<&Frame> = frames_from(&got, sa);
    let count = |f: &[u8]| at_b.iter().filter(|g| g.bytes == f).count();
    assert_eq!(
        count(&plain),
        N,
        "untagged frame intact after push/push/pop/pop"
    );
    assert_eq!(
        count(&ctagged),
        N,
        "customer-tagged frame intact, C-tag kept"
    );
    assert_eq!(at_b.len(), 2 * N, "only those two kinds arrived: {at_b:?}");

    let dd = dump_drops(&d, "qinq");
    for r in ["double_vlan_push", "pop_vlan_untagged", "too_many_vlans"] {
        assert!(
            shows_drops(&dd, r, N as u64),
            "dump-drops shows {r} {N}: {dd}"
        );
    }
    let fresh = new_drops(&before, &d.drops());
    assert_eq!(
        fresh,
        BTreeMap::from([
            ("double_vlan_push".to_string(), N as u64),
            ("pop_vlan_untagged".to_string(), N as u64),
            ("too_many_vlans".to_string(), N as u64),
        ]),
        "exactly the misconfigured frames were dropped"
    );

    // trace says the same, by flow and with the real frames.
    for (flow, pkt, reason, note) in [
        (
            "in_port=pa,dl_vlan=77",
            None,
            "double_vlan_push",
            "push_vlan:0x8100 onto a tagged frame",
        ),
        (
            "in_port=pa",
            Some(&dbl),
            "double_vlan_push",
            "use push_vlan:0x88a8",
        ),
        (
            "in_port=tr1,dl_type=0x88b6",
            None,
            "pop_vlan_untagged",
            "pop_vlan on an untagged frame",
        ),
        (
            "in_port=pa",
            Some(&third),
            "too_many_vlans",
            "a third VLAN tag",
        ),
    ] {
        let (tt, tj) = d.trace(flow, pkt.map(|p| p.as_slice()));
        assert!(
            tt.contains(note) && tt.contains(&format!("drop({reason})")),
            "trace {flow}: {tt}"
        );
        assert_eq!(drop_reason(&tj), reason, "trace --json {flow}: {tj}");
    }
    let (tt, tj) = d.trace("in_port=pa", Some(&plain));
    println!("e2e qinq: trace of the untagged frame:\n{tt}");
    assert!(drop_reason(&tj).is_null(), "{tt}");
    assert!(
        tt.contains("push_vlan(vid=10") || tt.contains("push_vlan"),
        "{tt}"
    );
}

// ---------------------------------------------------------------------------
// 4. BPDUs from a VM

/// Field story 3: a VM emits spanning-tree BPDUs. Two VMs on TAP ports and
/// an uplink (a system port whose far end, in its own namespace, stands
/// for the upstream switch and captures), NORMAL. The BPDUs never reach
/// the uplink and are counted (`bpdu_dropped`, in dump-drops and trace);
/// the capture would have seen them (`forward_bpdu=true` lets them through,
/// the control). With `bpdu_guard=true` the VM's port goes down (show,
/// logged once), the other VM keeps working, and `set-port ... enable`
/// brings it back.
#[test]
fn bpdus_from_a_vm_never_reach_the_uplink() {
    let Some((mut lab, raw, d)) = vlan_lab(
        "bpdus_from_a_vm_never_reach_the_uplink",
        &["python3", "ping"],
    ) else {
        return;
    };
    let (m1, m2) = ("52:54:00:00:84:01", "52:54:00:00:84:02");
    let vm1 = plug_tap(&mut lab, &d, "vm1", &[], m1, Some("10.84.0.1/24"));
    let vm2 = plug_tap(&mut lab, &d, "vm2", &[], m2, Some("10.84.0.2/24"));
    let up = uplink(&mut lab, &d, 84);
    assert!(
        lab.ping_until(&vm1, "10.84.0.254", Duration::from_secs(10)),
        "vm1 reaches the upstream side"
    );
    assert!(
        lab.ping(&vm2, "10.84.0.254", 2),
        "vm2 reaches the upstream side"
    );
    let bpdu = stp_bpdu(mac(m1));
    let is_bpdu = |f: &Frame| f.dst() == [0x01, 0x80, 0xc2, 0, 0, 0];
    const N: usize = 5;

    // Default: dropped at the VM port, counted, never upstream.
    let cap = raw.capture(&mut lab, &up, "uplink1");
    let before = d.drops();
    raw.send(&lab, &vm1, "vm1", &[&bpdu], N, 0.05);
    let n = d.settle_drops("bpdu_dropped", N as u64);
    assert_eq!(n, N as u64, "every BPDU counted once");
    assert!(lab.ping(&vm1, "10.84.0.254", 2), "vm1 itself is unaffected");
    let seen = cap.finish(&mut lab);
    assert_eq!(
        seen.iter().filter(|f| is_bpdu(f)).count(),
        0,
        "a BPDU reached the uplink"
    );
    assert!(
        !frames_from(&seen, mac(m1)).is_empty(),
        "the uplink capture saw vm1's other traffic"
    );
    let fresh = new_drops(&before, &d.drops());
    assert_eq!(
        fresh,
        BTreeMap::from([("bpdu_dropped".to_string(), N as u64)]),
        "only the BPDUs were dropped"
    );
    let dd = dump_drops(&d, "bpdu");
    assert!(shows_drops(&dd, "bpdu_dropped", N as u64), "{dd}");
    let (tt, tj) = d.trace("in_port=vm1", Some(&bpdu));
    println!("e2e bpdu: trace --packet BPDU:\n{tt}");
    assert!(tt.contains("Drop reason: bpdu_dropped"), "{tt}");
    assert_eq!(drop_reason(&tj), "bpdu_dropped");
    let (_, tj) = d.trace("in_port=vm2,dl_dst=01:80:c2:00:00:0e", None);
    assert_eq!(drop_reason(&tj), "bpdu_dropped", "LLDP too");

    // Control: forward_bpdu=true lets them through, so the capture above
    // would have seen a leak.
    d.ctl(&["set-bridge", "br0", "forward_bpdu=true"]);
    let cap = raw.capture(&mut lab, &up, "uplink1");
    raw.send(&lab, &vm1, "vm1", &[&bpdu], N, 0.05);
    wait_until(Duration::from_secs(5), || {
        d.port_counter("uplink0", "tx_packets") > 0
    });
    let seen = cap.finish(&mut lab);
    let leaked: Vec<&Frame> = seen.iter().filter(|f| is_bpdu(f) && !f.out).collect();
    assert_eq!(leaked.len(), N, "forward_bpdu=true forwards them");
    assert_eq!(leaked[0].bytes, bpdu, "intact");
    d.ctl(&["set-bridge", "br0", "forward_bpdu=false"]);

    // BPDU guard: vm1's port goes down on the first BPDU.
    d.ctl(&["set-port", "br0", "vm1", "bpdu_guard=true"]);
    assert!(d.ctl(&["show", "br0"]).contains("bpdu_guard=true"));
    let (tt, _) = d.trace("in_port=vm1", Some(&bpdu));
    assert!(
        tt.contains("BPDU guard: port vm1 is disabled by this frame"),
        "{tt}"
    );
    assert_eq!(
        d.show_port("vm1")["policy"]["enabled"],
        true,
        "a trace disables nothing"
    );
    let cap = raw.capture(&mut lab, &up, "uplink1");
    let guard0 = d.drop_count("bpdu_dropped");
    raw.send(&lab, &vm1, "vm1", &[&bpdu], 3, 0.3);
    assert!(
        wait_until(Duration::from_secs(5), || d.show_port("vm1")["policy"]
            ["enabled"]
            == false),
        "bpdu_guard disabled vm1: {}",
        d.show_port("vm1")
    );
    let show = d.ctl(&["show", "br0"]);
    println!("e2e bpdu: show after the guard:\n{show}");
    assert!(
        show.lines()
            .any(|l| l.contains(" vm1 ") && l.contains("disabled")),
        "{show}"
    );
    assert!(
        show.lines()
            .any(|l| l.contains(" vm2 ") && !l.contains("disabled")),
        "{show}"
    );
    assert!(
        d.drop_count("bpdu_dropped") > guard0,
        "the guarding BPDU counted"
    );
    // The other VM is unaffected; the guarded one is cut off.
    assert!(
        lab.ping(&vm2, "10.84.0.254", 3),
        "vm2 still reaches upstream"
    );
    let pd0 = d.drop_count("port_disabled");
    assert!(!lab.ping(&vm1, "10.84.0.254", 2), "vm1 is cut off");
    assert!(
        d.drop_count("port_disabled") > pd0,
        "its frames count as port_disabled"
    );
    let (tt, tj) = d.trace("in_port=vm1", None);
    assert_eq!(drop_reason(&tj), "port_disabled", "{tt}");
    let seen = cap.finish(&mut lab);
    assert_eq!(
        seen.iter().filter(|f| is_bpdu(f)).count(),
        0,
        "no BPDU upstream"
    );
    assert!(
        !frames_from(&seen, mac(m2)).is_empty(),
        "vm2's traffic reached the uplink"
    );
    let log = d.log();
    let lines: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("bpdu_guard=true: port disabled"))
        .collect();
    println!("e2e bpdu: log: {lines:?}");
    assert_eq!(lines.len(), 1, "logged once for three BPDUs:\n{log}");
    assert!(lines[0].contains("vm1"), "{lines:?}");

    // The operator brings it back.
    d.ctl(&["set-port", "br0", "vm1", "enable"]);
    assert_eq!(d.show_port("vm1")["policy"]["enabled"], true);
    assert!(
        lab.ping_until(&vm1, "10.84.0.254", Duration::from_secs(10)),
        "vm1 works again after set-port enable"
    );
}

// ---------------------------------------------------------------------------
// 5. Short frames leave a system port zero-padded

/// A tagged frame from A (system port pa) has its tag popped and leaves
/// through system port pb to B. Large tagged frames go first, so the
/// switch's buffers hold non-zero bytes. Then:
///
/// * a 64-byte tagged frame whose datagram is 38 bytes and whose Ethernet
///   padding (8 bytes of 0xee) is not zero: it leaves as 60 bytes, the
///   datagram intact, the padding zero;
/// * a 46-byte tagged frame (under the minimum, no padding at all): it
///   leaves as 60 bytes, the 18 added bytes zero, not the old buffer's;
/// * a 64-byte tagged frame that is all datagram: it leaves as exactly its
///   60 bytes (nothing of the datagram is "padding").
///
/// B's kernel accepts the datagrams (their UDP checksums still verify:
/// padding is outside every checksum).
#[test]
fn popped_short_frames_leave_zero_padded() {
    let Some((mut lab, raw, d)) = vlan_lab("popped_short_frames_leave_zero_padded", &["python3"])
    else {
        return;
    };
    let Customers { a, b, sa, sb } = customers(&mut lab, &d, 85, Some("10.85.0.2/24"));
    d.ctl(&["del-flows", "br0"]);
    d.ctl(&[
        "add-flow",
        "br0",
        "in_port=pa,dl_vlan=55,actions=pop_vlan,output:pb",
    ]);
    d.ctl(&["add-flow", "br0", "priority=0,actions=drop"]);
    let tag = [(0x8100u16, 55u16)];
    let udp = |payload: &[u8], pad: &[u8]| {
        udp_frame(
            sb,
            sa,
            &tag,
            [10, 85, 0, 1],
            [10, 85, 0, 2],
            9999,
            payload,
            pad,
        )
    };
    // 1400-byte tagged frames full of 0xa5, more than a batch (32).
    let big = udp(&[0xa5; 1400], &[]);
    // 14 + 4 + 20 + 8 + 10 = 56, + 8 bytes of non-zero padding = 64.
    let padded = udp(b"pad-test-1", &[0xee; 8]);
    assert_eq!(padded.len(), 64);
    // 14 + 4 + 20 + 8 + 0 = 46: shorter than the minimum, no padding.
    let short = udp(b"", &[]);
    assert_eq!(short.len(), 46);
    // 14 + 4 + 20 + 8 + 18 = 64, all datagram.
    let full = udp(b"pad-test-3-18bytes", &[]);
    assert_eq!(full.len(), 64);

    let cap = raw.capture(&mut lab, &b, "eb");
    let rx = raw.udp_recv(&mut lab, &b, 9999, 64 + 3, 20);
    raw.send(&lab, &a, "ea", &[&big], 64, 0.0);
    assert!(
        wait_until(Duration::from_secs(10), || d
            .port_counter("pb", "tx_packets")
            >= 64),
        "the large frames went through: {}",
        d.port("pb")
    );
    raw.send(&lab, &a, "ea", &[&padded, &short, &full], 1, 0.0);
    let out = lab.wait(rx);
    let seen = cap.finish(&mut lab);
    let frames = received_from(&seen, sa);
    assert_eq!(frames.len(), 64 + 3, "every frame arrived at B");
    let untag = |f: &[u8]| {
        let mut v = f[..12].to_vec();
        v.extend_from_slice(&f[16..]);
        v
    };
    for f in &frames[..64] {
        assert_eq!(f.len, 1414 + 28, "large frames: tag popped");
    }
    let small = &frames[64..];
    for f in small {
        println!("e2e padding: at B ({} bytes): {}", f.len, hex(&f.bytes));
        assert_eq!(f.len, 60, "a short frame leaves a system port as 60 bytes");
        assert!(f.tags.is_empty(), "tag popped");
    }
    // 1: the datagram intact, the old 0xee padding zeroed.
    let p = untag(&padded);
    assert_eq!(
        small[0].bytes[..52],
        p[..52],
        "datagram of the padded frame"
    );
    assert_eq!(small[0].bytes[52..], [0u8; 8], "old padding zeroed");
    // 2: the datagram, then 18 zero bytes (not the 0xa5 of older frames).
    let s = untag(&short);
    assert_eq!(small[1].bytes[..42], s[..], "datagram of the short frame");
    assert_eq!(small[1].bytes[42..], [0u8; 18], "padding is zeros");
    // 3: all 60 bytes are the datagram.
    assert_eq!(
        small[2].bytes,
        untag(&full),
        "nothing of a full frame zeroed"
    );

    // B's stack took all three datagrams: the checksums still verify.
    let lines: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect();
    assert_eq!(lines.len(), 64 + 3, "B received every datagram: {lines:?}");
    assert_eq!(lines[64], hex(b"pad-test-1"));
    assert_eq!(lines[65], "");
    assert_eq!(lines[66], hex(b"pad-test-3-18bytes"));
    let snmp = lab.sh_ok(&b, 5, "cat /proc/net/snmp");
    let udp_line: Vec<&str> = snmp.lines().filter(|l| l.starts_with("Udp:")).collect();
    println!("e2e padding: B {udp_line:?}");
    assert!(d.drops().is_empty(), "no drops: {:?}", d.drops());
}

/// BPDU guard acts on a BPDU that arrives, never on a remembered one. A VM
/// sent a BPDU while `forward_bpdu=true` (the datapath caches a NORMAL
/// megaflow for it); the operator then turns forwarding off and the guard
/// on. No BPDU arrives after that: the port must stay up, however the
/// datapath refreshes its caches meanwhile.
#[test]
fn bpdu_guard_fires_only_on_a_real_bpdu() {
    let Some((mut lab, raw, d)) =
        vlan_lab("bpdu_guard_fires_only_on_a_real_bpdu", &["python3", "ping"])
    else {
        return;
    };
    let m1 = "52:54:00:00:86:01";
    let vm1 = plug_tap(&mut lab, &d, "vm1", &[], m1, Some("10.86.0.1/24"));
    let up = uplink(&mut lab, &d, 86);
    assert!(lab.ping_until(&vm1, "10.86.0.254", Duration::from_secs(10)));
    let bpdu = stp_bpdu(mac(m1));
    for round in 0..3 {
        d.ctl(&["set-bridge", "br0", "forward_bpdu=true"]);
        let tx0 = d.port_counter("uplink0", "tx_packets");
        raw.send(&lab, &vm1, "vm1", &[&bpdu], 1, 0.0);
        assert!(
            wait_until(Duration::from_secs(5), || d
                .port_counter("uplink0", "tx_packets")
                > tx0),
            "the BPDU was forwarded"
        );
        d.ctl(&["set-bridge", "br0", "forward_bpdu=false"]);
        d.ctl(&["set-port", "br0", "vm1", "bpdu_guard=true"]);
        let rx0 = d.port_counter("vm1", "rx_packets");
        // Several datapath sweeps (every 500 ms), no BPDU.
        std::thread::sleep(Duration::from_millis(1600));
        let rx1 = d.port_counter("vm1", "rx_packets");
        let p = d.show_port("vm1");
        assert_eq!(
            p["policy"]["enabled"], true,
            "round {round}: vm1 disabled by BPDU guard although no BPDU arrived after the guard was set (vm1 received {} frames meanwhile)\n{}",
            rx1 - rx0,
            d.log()
        );
        d.ctl(&["set-port", "br0", "vm1", "bpdu_guard=false"]);
    }
    let _ = up;
}
