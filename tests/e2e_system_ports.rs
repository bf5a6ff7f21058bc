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
mod e2e_support;

use common::{ip, require_root, Lab};
use e2e_support::{host_ns, mib_per_s, new_drops, no_ipv6, plug_vm, require_tool, NsDaemon};
use std::path::Path;
use std::time::Duration;

const MIB10: usize = 10 * 1024 * 1024;

/// Creates veth `port`<->`peer` with `port` in the daemon's namespace and
/// `peer` in a new VM namespace (configured with `cidr`), attaches `port`
/// as `type=system`; returns the VM namespace.
fn plug_system(lab: &mut Lab, d: &NsDaemon, port: &str, peer: &str, cidr: &str) -> String {
    let vm = lab.netns();
    no_ipv6(lab, &vm);
    ip(&[
        "-n", &d.ns, "link", "add", port, "type", "veth", "peer", "name", peer, "netns", &vm,
    ]);
    ip(&["-n", &d.ns, "link", "set", "dev", port, "up"]);
    lab.configure(&vm, peer, cidr);
    d.ctl(&["add-port", "br0", port, "type=system"]);
    vm
}

/// The lab: host with vswitchd; n1 on system port s1, n2 on system port
/// s2, n3 on tap port t3. Addresses 10.{net}.0.{1,2,3}.
struct Topo {
    n1: String,
    n2: String,
    n3: String,
    ip: [String; 3],
}

fn topo(lab: &mut Lab, net: u8) -> (Topo, NsDaemon) {
    let host = host_ns(lab);
    let d = NsDaemon::start(&host, None);
    let ip = [1, 2, 3].map(|i| format!("10.{net}.0.{i}"));
    let n1 = plug_system(lab, &d, "s1", "e1", &format!("{}/24", ip[0]));
    let n2 = plug_system(lab, &d, "s2", "e2", &format!("{}/24", ip[1]));
    let n3 = plug_vm(lab, &d, "t3", "02:00:00:00:03:03", &format!("{}/24", ip[2]));
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

/// RFC 1071 checksum of an IPv4 header.
fn ip_checksum(h: &[u8]) -> u16 {
    let mut s: u32 = h
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum();
    while s > 0xffff {
        s = (s & 0xffff) + (s >> 16);
    }
    !(s as u16)
}

/// A broadcast frame from `src` with `tags` (TPID, TCI) in front of an
/// IPv4/UDP datagram 10.0.0.1:7 -> 10.0.0.255:7 whose payload is `marker`.
fn tagged_frame(src: [u8; 6], tags: &[(u16, u16)], marker: &[u8]) -> Vec<u8> {
    let mut f = vec![0xff; 6];
    f.extend_from_slice(&src);
    for (tpid, tci) in tags {
        f.extend_from_slice(&tpid.to_be_bytes());
        f.extend_from_slice(&tci.to_be_bytes());
    }
    f.extend_from_slice(&[0x08, 0x00]);
    let udp_len = 8 + marker.len() as u16;
    let total = 20 + udp_len;
    let mut iph = vec![
        0x45, 0, 0, 0, 0, 1, 0, 0, 64, 17, 0, 0, 10, 0, 0, 1, 10, 0, 0, 255,
    ];
    iph[2..4].copy_from_slice(&total.to_be_bytes());
    let c = ip_checksum(&iph);
    iph[10..12].copy_from_slice(&c.to_be_bytes());
    f.extend_from_slice(&iph);
    f.extend_from_slice(&[0, 7, 0, 7]);
    f.extend_from_slice(&udp_len.to_be_bytes());
    f.extend_from_slice(&[0, 0]);
    f.extend_from_slice(marker);
    f
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn mac_text(m: [u8; 6]) -> String {
    m.iter()
        .map(|x| format!("{x:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// Frames in a pcap file.
fn read_pcap(path: &Path) -> Vec<Vec<u8>> {
    let f = std::fs::File::open(path).expect("open pcap");
    let mut r = pcap_file::pcap::PcapReader::new(f).expect("pcap header");
    let mut out = Vec::new();
    while let Some(p) = r.next_packet() {
        out.push(p.expect("pcap record").data.into_owned());
    }
    out
}

/// Starts tcpdump on `ifname` in `ns` for `count` frames from `src`;
/// returns (spawn index, pcap path) once it is capturing.
fn start_capture(
    lab: &mut Lab,
    ns: &str,
    ifname: &str,
    src: [u8; 6],
    count: usize,
    dir: &Path,
) -> (usize, std::path::PathBuf) {
    let path = dir.join(format!("{ns}-{ifname}.pcap"));
    let idx = lab.spawn(
        ns,
        20,
        &format!(
            "exec tcpdump -i {ifname} -nn -U -c {count} -w {} ether src {}",
            path.display(),
            mac_text(src)
        ),
    );
    // tcpdump opens the output file after its socket is bound and filtered.
    assert!(
        common::wait_until(Duration::from_secs(10), || path.exists()),
        "tcpdump started on {ifname} in {ns}"
    );
    std::thread::sleep(Duration::from_millis(100));
    (idx, path)
}

/// Sends `frame` `count` times from `ifname` in `ns` with a raw socket.
fn send_raw(lab: &Lab, ns: &str, ifname: &str, frame: &[u8], count: usize) {
    lab.sh_ok(
        ns,
        20,
        &format!(
            "python3 -c 'import socket,sys,time\n\
             s=socket.socket(socket.AF_PACKET,socket.SOCK_RAW)\n\
             s.bind((sys.argv[1],0))\n\
             f=bytes.fromhex(sys.argv[2])\n\
             for _ in range(int(sys.argv[3])):\n    s.send(f); time.sleep(0.05)' {ifname} {} {count}",
            hex(frame)
        ),
    );
}

/// Checks that every captured frame is `sent` byte for byte (tags
/// included); returns the tcpdump -e rendering of the first one.
fn check_capture(
    lab: &mut Lab,
    idx: usize,
    path: &Path,
    sent: &[u8],
    count: usize,
    what: &str,
) -> String {
    let out = lab.wait(idx);
    let frames = read_pcap(path);
    assert_eq!(
        frames.len(),
        count,
        "{what}: frames captured (tcpdump: {})",
        String::from_utf8_lossy(&out.stderr)
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
    if !require_root("vlan_tags_survive_the_switch")
        || !require_tool("vlan_tags_survive_the_switch", "python3")
        || !require_tool("vlan_tags_survive_the_switch", "tcpdump")
    {
        return;
    }
    let mut lab = Lab::new();
    let (t, d) = topo(&mut lab, 72);
    let dir = tempfile::tempdir().expect("tempdir");
    let before = d.drops();
    const N: usize = 5;

    // 802.1Q, PCP 5, VID 100, from n1 (system port s1): flooded by NORMAL
    // to s2 (system) and t3 (tap).
    let src1 = [0x02, 0, 0, 0, 0x01, 0x01];
    let dot1q = tagged_frame(src1, &[(0x8100, (5 << 13) | 100)], b"vswitch-e2e-dot1q");
    let (c2, p2) = start_capture(&mut lab, &t.n2, "e2", src1, N, dir.path());
    let (c3, p3) = start_capture(&mut lab, &t.n3, "t3", src1, N, dir.path());
    send_raw(&lab, &t.n1, "e1", &dot1q, N);
    let l2 = check_capture(&mut lab, c2, &p2, &dot1q, N, "802.1Q system->system");
    let l3 = check_capture(&mut lab, c3, &p3, &dot1q, N, "802.1Q system->tap");
    println!("e2e vlan: at n2 (system): {l2}\ne2e vlan: at n3 (tap): {l3}");
    assert!(l2.contains("vlan 100, p 5, ethertype IPv4"), "{l2}");

    // The other way: from the tap (t3) to a system port (s1).
    let src3 = [0x02, 0, 0, 0, 0x03, 0x31];
    let back = tagged_frame(src3, &[(0x8100, (3 << 13) | 42)], b"vswitch-e2e-back");
    let (c1, p1) = start_capture(&mut lab, &t.n1, "e1", src3, N, dir.path());
    send_raw(&lab, &t.n3, "t3", &back, N);
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
    send_raw(&lab, &t.n1, "e1", &qinq, N);
    let lq = check_capture(&mut lab, c2, &p2, &qinq, N, "802.1ad+802.1Q system->system");
    println!("e2e vlan: QinQ at n2: {lq}");

    let fresh = new_drops(&before, &d.drops());
    assert!(fresh.is_empty(), "unexpected drops: {fresh:?}");
    // The switch learned the senders on their VLAN.
    let fdb = d.ctl(&["fdb-show", "br0"]);
    println!("e2e vlan: fdb-show:\n{fdb}");
    assert!(fdb.contains("02:00:00:00:01:01"), "{fdb}");
}
