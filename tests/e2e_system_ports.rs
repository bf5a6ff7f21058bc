//! `type=system` ports end to end: veth pairs whose one end is attached to
//! vswitchd (in its host namespace) with an AF_PACKET socket and whose
//! other end is in a VM namespace, next to a `type=tap` port.
//!
//! * Plain IP: ping and 10 MiB TCP system<->system and system<->tap.
//! * VLAN tags survive the switch. This kernel has no 8021q module (no VLAN
//!   devices), so tagged frames are written with a raw AF_PACKET socket
//!   (python3) inside the sending namespace and captured with tcpdump in
//!   the receiving ones. Either way the kernel strips the tag into packet
//!   metadata on receive (veth and tap alike): vswitchd must put it back
//!   from PACKET_AUXDATA, and libpcap puts it back in the capture the same
//!   way, so the pcap shows exactly the tags that were on the wire. The
//!   check reads the bytes: TPID, PCP, VID, the inner EtherType (exactly
//!   one 802.1Q tag, or the two of an 802.1ad+802.1Q frame, never one
//!   more or one less) and the payload.

mod common;

use common::daemon::new_drops;
use common::frames::{hex, mac_text, udp_frame};
use common::raw::{read_pcap, Raw, Tcpdump};
use common::vms::{host, plug_tap, plug_veth};
use common::{mib_per_s, require_root, require_tools, Daemon, Lab, MIB10};
use std::path::Path;
use std::time::Duration;

/// The lab: host with vswitchd; n1 on system port s1, n2 on system port
/// s2, n3 on tap port t3. Addresses 10.{net}.0.{1,2,3}.
struct Topo {
    n1: String,
    n2: String,
    n3: String,
    ip: [String; 3],
}

fn topo(lab: &mut Lab, net: u8) -> (Topo, Daemon) {
    let d = host(lab);
    let ip = [1, 2, 3].map(|i| format!("10.{net}.0.{i}"));
    let cidr = |i: usize| Some(format!("{}/24", ip[i]));
    let n1 = plug_veth(lab, &d, "s1", &[], "e1", None, cidr(0).as_deref());
    let n2 = plug_veth(lab, &d, "s2", &[], "e2", None, cidr(1).as_deref());
    let n3 = plug_tap(lab, &d, "t3", &[], "02:00:00:00:03:03", cidr(2).as_deref());
    (Topo { n1, n2, n3, ip }, d)
}

#[test]
fn system_ports_carry_ip_and_tcp() {
    if !require_root("system_ports_carry_ip_and_tcp") {
        return;
    }
    let mut lab = Lab::new();
    let (t, d) = topo(&mut lab, 71);
    let before = d.drops();
    assert!(
        lab.ping_until(&t.n1, &t.ip[1], Duration::from_secs(10)),
        "n1 -> n2 over two system ports\n{}",
        d.ctl(&["dump-ports", "br0"])
    );
    assert!(lab.ping(&t.n2, &t.ip[0], 3), "n2 -> n1");
    assert!(lab.ping(&t.n1, &t.ip[2], 3), "n1 (system) -> n3 (tap)");
    assert!(lab.ping(&t.n3, &t.ip[0], 3), "n3 (tap) -> n1 (system)");

    for (from, to, dst, what) in [
        (&t.n1, &t.n2, &t.ip[1], "system->system"),
        (&t.n1, &t.n3, &t.ip[2], "system->tap"),
        (&t.n3, &t.n1, &t.ip[0], "tap->system"),
    ] {
        let el = lab.tcp_transfer(from, to, dst, MIB10);
        println!(
            "e2e system ports: 10 MiB {what} {:.1} ms ({:.0} MiB/s)",
            el.as_secs_f64() * 1e3,
            mib_per_s(MIB10, el)
        );
    }
    for p in ["s1", "s2", "t3"] {
        let j = d.port(p);
        assert!(j["rx_bytes"].as_u64().unwrap_or(0) > 0, "{p}: {j}");
        assert!(j["tx_bytes"].as_u64().unwrap_or(0) > 0, "{p}: {j}");
        assert_eq!(j["link"], "up", "{p}");
    }
    // s1 sent 20 MiB into the switch and received the ACKs of both; the
    // tap->system transfer came out of s1.
    assert!(d.port_counter("s1", "rx_bytes") >= 2 * MIB10 as u64);
    assert!(d.port_counter("s1", "tx_bytes") >= MIB10 as u64);
    let fresh = new_drops(&before, &d.drops());
    assert!(fresh.is_empty(), "unexpected drops: {fresh:?}");
}

/// A broadcast frame from `src` with `tags` (TPID, TCI) in front of an
/// IPv4/UDP datagram 10.0.0.1 -> 10.0.0.255:7 whose payload is `marker`.
fn tagged_frame(src: [u8; 6], tags: &[(u16, u16)], marker: &[u8]) -> Vec<u8> {
    udp_frame(
        [0xff; 6],
        src,
        tags,
        [10, 0, 0, 1],
        [10, 0, 0, 255],
        7,
        marker,
        &[],
    )
}

/// Starts tcpdump on `ifname` in `ns` for `count` frames from `src`;
/// returns the capture and its pcap file once it is capturing.
fn start_capture(
    lab: &mut Lab,
    ns: &str,
    ifname: &str,
    src: [u8; 6],
    count: usize,
    dir: &Path,
) -> (Tcpdump, std::path::PathBuf) {
    let path = dir.join(format!("{ns}-{ifname}.pcap"));
    let filter = format!("ether src {}", mac_text(src));
    let cap = Tcpdump::start(lab, ns, ifname, &path, &filter, Some(count));
    (cap, path)
}

/// Checks that every captured frame is `sent` byte for byte (tags
/// included); returns the tcpdump -e rendering of the first one.
fn check_capture(
    lab: &mut Lab,
    cap: Tcpdump,
    path: &Path,
    sent: &[u8],
    count: usize,
    what: &str,
) -> String {
    let stats = cap.finish(lab);
    let frames = read_pcap(path);
    assert_eq!(
        frames.len(),
        count,
        "{what}: frames captured (tcpdump: {stats})"
    );
    for f in &frames {
        assert_eq!(
            hex(f),
            hex(sent),
            "{what}: the frame arrived changed (tags lost, added or altered?)"
        );
    }
    let r = std::process::Command::new("tcpdump")
        .args(["-r"])
        .arg(path)
        .args(["-e", "-nn", "-c", "1"])
        .output()
        .expect("tcpdump -r");
    String::from_utf8_lossy(&r.stdout).trim().to_string()
}

#[test]
fn vlan_tags_survive_the_switch() {
    const T: &str = "vlan_tags_survive_the_switch";
    if !require_root(T) || !require_tools(T, &["python3", "tcpdump"]) {
        return;
    }
    let mut lab = Lab::new();
    let (t, d) = topo(&mut lab, 72);
    let raw = Raw::new();
    let dir = &raw.dir;
    let before = d.drops();
    const N: usize = 5;

    // 802.1Q, PCP 5, VID 100, from n1 (system port s1): flooded by NORMAL
    // to s2 (system) and t3 (tap).
    let src1 = [0x02, 0, 0, 0, 0x01, 0x01];
    let dot1q = tagged_frame(src1, &[(0x8100, (5 << 13) | 100)], b"vswitch-e2e-dot1q");
    let (c2, p2) = start_capture(&mut lab, &t.n2, "e2", src1, N, dir.path());
    let (c3, p3) = start_capture(&mut lab, &t.n3, "t3", src1, N, dir.path());
    raw.send(&lab, &t.n1, "e1", &[&dot1q], N, 0.05);
    let l2 = check_capture(&mut lab, c2, &p2, &dot1q, N, "802.1Q system->system");
    let l3 = check_capture(&mut lab, c3, &p3, &dot1q, N, "802.1Q system->tap");
    println!("e2e vlan: at n2 (system): {l2}\ne2e vlan: at n3 (tap): {l3}");
    assert!(l2.contains("vlan 100, p 5, ethertype IPv4"), "{l2}");

    // The other way: from the tap (t3) to a system port (s1).
    let src3 = [0x02, 0, 0, 0, 0x03, 0x31];
    let back = tagged_frame(src3, &[(0x8100, (3 << 13) | 42)], b"vswitch-e2e-back");
    let (c1, p1) = start_capture(&mut lab, &t.n1, "e1", src3, N, dir.path());
    raw.send(&lab, &t.n3, "t3", &[&back], N, 0.05);
    let l1 = check_capture(&mut lab, c1, &p1, &back, N, "802.1Q tap->system");
    println!("e2e vlan: at n1 (system, from tap): {l1}");

    // 802.1ad outer (VID 200) + 802.1Q inner (VID 100): both tags arrive,
    // in order, the outer one with its own TPID.
    let src1b = [0x02, 0, 0, 0, 0x01, 0x02];
    let qinq = tagged_frame(
        src1b,
        &[(0x88a8, 200), (0x8100, (1 << 13) | 100)],
        b"vswitch-e2e-qinq",
    );
    let (c2, p2) = start_capture(&mut lab, &t.n2, "e2", src1b, N, dir.path());
    raw.send(&lab, &t.n1, "e1", &[&qinq], N, 0.05);
    let lq = check_capture(&mut lab, c2, &p2, &qinq, N, "802.1ad+802.1Q system->system");
    println!("e2e vlan: QinQ at n2: {lq}");

    let fresh = new_drops(&before, &d.drops());
    assert!(fresh.is_empty(), "unexpected drops: {fresh:?}");
    // The switch learned the senders on their VLAN.
    let fdb = d.ctl(&["fdb-show", "br0"]);
    println!("e2e vlan: fdb-show:\n{fdb}");
    assert!(fdb.contains("02:00:00:00:01:01"), "{fdb}");
}
