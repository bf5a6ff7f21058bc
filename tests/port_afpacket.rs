//! `type=system` (AF_PACKET) ports on veth pairs whose far ends live in
//! namespaces the tests create.

mod common;

use common::forwarder::{afpacket, afpacket_pair, Pair};
use common::frames::{contains, eth, raw_frame, unhex};
use common::raw::Raw;
use common::{ip, require_root, require_tools, wait_until, Forwarder, Lab};
use std::time::Duration;
use vswitch::packet::{Batch, PacketPool};
use vswitch::port::{AfPacketConfig, AfPacketPort, LinkState, Port};

/// Receives for up to `timeout`, returning every frame seen.
fn collect(
    p: &mut AfPacketPort,
    timeout: Duration,
    mut stop: impl FnMut(&[u8]) -> bool,
) -> Vec<Vec<u8>> {
    let mut pool = PacketPool::new(2048);
    let mut b = Batch::new();
    let mut seen = Vec::new();
    wait_until(timeout, || {
        p.recv_batch(&mut pool, &mut b).unwrap();
        let mut hit = false;
        for f in b.iter() {
            hit |= stop(f.data());
            seen.push(f.data().to_vec());
        }
        b.recycle(&mut pool);
        hit
    });
    seen
}

/// A veth pair whose far end (up, no address) is in a new namespace:
/// (near end, far end, namespace).
fn veth_into_netns(lab: &mut Lab) -> (String, String, String) {
    let (va, vb) = lab.veth();
    let ns = lab.netns();
    lab.move_link(&vb, &ns);
    lab.sh_ok(&ns, 5, &format!("ip link set {vb} up"));
    (va, vb, ns)
}

/// A VLAN 100 ARP request (who-has 10.79.100.2 tell 10.79.100.1) from
/// 02:00:00:00:00:11, tag in the frame, padded to 64 bytes.
const TAGGED_ARP: &str = "ffffffffffff 020000000011 8100 0064 0806 \
    0001 0800 06 04 0001 020000000011 0a4f6401 000000000000 0a4f6402";

#[test]
fn afpacket_vlan_tag_kept_and_no_loopback() {
    const T: &str = "afpacket_vlan_tag_kept_and_no_loopback";
    if !require_root(T) || !require_tools(T, &["python3", "tcpdump"]) {
        return;
    }
    let mut lab = Lab::new();
    let (va, vb, ns) = veth_into_netns(&mut lab);
    let mut p = afpacket(&va);
    assert_eq!(p.kind(), "system");

    // The namespace sends a VLAN 100 frame with the tag in the frame. The
    // receiving kernel always untags on input (skb_vlan_untag) before
    // packet sockets see it and reports the tag in PACKET_AUXDATA; the port
    // must put it back: 81 00 | 00 64 | 08 06.
    let raw = Raw::new();
    let mut arp = unhex(TAGGED_ARP);
    arp.resize(64, 0);
    let sender = raw.spawn_send(&mut lab, &ns, &vb, &[&arp], 5, 0.2);
    let want = [0x81, 0x00, 0x00, 0x64, 0x08, 0x06];
    let frames = collect(&mut p, Duration::from_secs(5), |f| {
        f.len() >= 18 && f[12..18] == want
    });
    let out = lab.wait(sender);
    assert!(
        out.status.success(),
        "raw sender: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let tagged = frames.iter().find(|f| f.len() >= 18 && f[12..18] == want);
    let tagged = tagged.unwrap_or_else(|| {
        let heads: Vec<_> = frames
            .iter()
            .map(|f| f[..f.len().min(18)].to_vec())
            .collect();
        panic!("no VLAN 100 frame; frame heads: {heads:02x?}")
    });
    assert_eq!(tagged.len(), 64, "tag reinserted, nothing lost");
    assert_eq!(&tagged[18 + 14..18 + 18], &[10, 79, 100, 1]);
    assert_eq!(&tagged[18 + 24..18 + 28], &[10, 79, 100, 2]);

    // Our own transmissions reach the far end, tagged ones with their tag
    // (tcpdump in the namespace is the judge), and are not looped back.
    let dump = lab.spawn(
        &ns,
        10,
        &format!("tcpdump -i {vb} -c 1 -nn -e 'vlan 100 and ether proto 0x88b5' 2>/dev/null"),
    );
    let mut frame = raw_frame(
        [0xff; 6],
        [0x02, 0, 0, 0, 0, 0x99],
        &[(0x8100, 100)],
        b"vswitch-no-loopback",
    );
    frame.resize(64, 0);
    let rx_before = lab.link_stat(&ns, &vb, "rx_packets");
    let mut pool = PacketPool::new(2048);
    let mut b = Batch::new();
    let mut sent = 0;
    // tcpdump needs a moment to start listening: send until it saw one.
    wait_until(Duration::from_secs(8), || {
        let _ = b.push(pool.get_from(&frame));
        sent += p.send_batch(&mut b, &mut pool).unwrap();
        std::thread::sleep(Duration::from_millis(100));
        !lab.running(dump)
    });
    let out = lab.wait(dump);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("vlan 100"), "tcpdump saw: {text:?}");
    assert_eq!(p.stats().tx_packets, sent as u64);
    assert!(lab.link_stat(&ns, &vb, "rx_packets") >= rx_before + sent as u64);
    // Frames someone else sends out of the interface (the host stack,
    // another socket) are outgoing, not received: PACKET_IGNORE_OUTGOING.
    // (The kernel never loops a socket's own frames back to it anyway.)
    let rx_before = lab.link_stat(&ns, &vb, "rx_packets");
    let outgoing = eth(
        [0xff; 6],
        [0x02, 0, 0, 0, 0, 0x98],
        0x88b5,
        b"host-outgoing",
    );
    raw.send_here(&va, &[&outgoing], 3, 0.0);
    assert!(wait_until(Duration::from_secs(3), || lab.link_stat(
        &ns,
        &vb,
        "rx_packets"
    ) >= rx_before + 3));
    let back = collect(&mut p, Duration::from_millis(500), |_| false);
    for marker in [&b"vswitch-no-loopback"[..], &b"host-outgoing"[..]] {
        assert!(
            !back.iter().any(|f| contains(f, marker)),
            "{} came back",
            String::from_utf8_lossy(marker)
        );
    }
}

#[test]
fn afpacket_down_and_recover() {
    if !require_root("afpacket_down_and_recover") {
        return;
    }
    let mut lab = Lab::new();
    let (va, vb) = lab.veth();
    let ns = lab.netns();
    lab.plug(&vb, &ns, "10.79.1.1/24");
    let mut p = afpacket(&va);
    let idx0 = p.ifindex();
    let arp_seen = |p: &mut AfPacketPort, lab: &mut Lab| {
        let pinger = lab.spawn(&ns, 10, "ping -c 3 -i 0.3 -W 1 10.79.1.2");
        let got = collect(p, Duration::from_secs(5), |f| {
            f.len() >= 14 && f[12..14] == [0x08, 0x06]
        });
        let _ = lab.wait(pinger);
        got.iter()
            .any(|f| f.len() >= 14 && f[12..14] == [0x08, 0x06])
    };
    assert!(arp_seen(&mut p, &mut lab));

    ip(&["link", "set", "dev", &va, "down"]);
    assert!(
        wait_until(Duration::from_secs(5), || {
            p.housekeeping();
            p.link_state() == LinkState::Down
        }),
        "admin down noticed"
    );
    assert_eq!(p.link_downs(), 1);
    assert_eq!(p.poll_fd(), None);
    ip(&["link", "set", "dev", &va, "up"]);
    assert!(
        wait_until(Duration::from_secs(10), || {
            p.housekeeping();
            p.link_state() == LinkState::Up
        }),
        "back up"
    );
    assert_eq!(p.ifindex(), idx0, "same device, same socket");
    assert!(arp_seen(&mut p, &mut lab));

    // Delete the pair, then make it again with the same names.
    ip(&["link", "del", "dev", &va]);
    assert!(wait_until(Duration::from_secs(5), || {
        p.housekeeping();
        p.link_state() == LinkState::Down
    }));
    assert_eq!(p.link_downs(), 2);
    // Down ports drop what they are asked to send, counted.
    let mut pool = PacketPool::new(2048);
    let mut b = Batch::new();
    let _ = b.push(pool.get_from(&[0xff; 60]));
    assert_eq!(p.send_batch(&mut b, &mut pool).unwrap(), 1);
    assert_eq!(p.stats().tx_dropped, 1);
    ip(&["link", "add", &va, "type", "veth", "peer", "name", &vb]);
    lab.plug(&vb, &ns, "10.79.1.1/24");
    ip(&["link", "set", "dev", &va, "up"]);
    assert!(
        wait_until(Duration::from_secs(10), || {
            p.housekeeping();
            p.link_state() == LinkState::Up
        }),
        "re-attached to the new interface"
    );
    assert_ne!(p.ifindex(), idx0);
    assert!(
        arp_seen(&mut p, &mut lab),
        "traffic flows on the new interface"
    );
}

#[test]
fn afpacket_missing_interface() {
    if !require_root("afpacket_missing_interface") {
        return;
    }
    let name = common::unique_ifname("vm");
    assert!(AfPacketPort::open(AfPacketConfig::new(&name)).is_err());
    let mut c = AfPacketConfig::new(&name);
    c.allow_missing = true;
    let p = AfPacketPort::open(c).expect("allowed to start down");
    assert_eq!(p.link_state(), LinkState::Down);
    assert!(AfPacketConfig::from_options(&name, &[("promisc", "maybe")]).is_err());
    assert!(AfPacketConfig::from_options(&name, &[("bogus", "1")]).is_err());
}

#[test]
fn afpacket_tcp_through_veth_with_gso() {
    if !require_root("afpacket_tcp_through_veth_with_gso") {
        return;
    }
    let mut lab = Lab::new();
    let Pair { a, b, ns1, ns2 } = afpacket_pair(&mut lab, 80);
    let fwd = Forwarder::start(a, b, Duration::from_secs(120));
    assert!(lab.ping_until(&ns1, "10.80.0.2", Duration::from_secs(5)));
    let t = lab.tcp_transfer(&ns1, &ns2, "10.80.0.2", 10 << 20);
    let (a, b, f) = fwd.stop();
    eprintln!("10 MiB veth -> AF_PACKET -> AF_PACKET -> veth in {t:?}; {f:?}");
    assert!(
        f.gso > 0,
        "super-packets from the veth came with their vnet header: {f:?}"
    );
    assert_eq!(lab.tcp_in_csum_errors(&ns2), 0);
    assert_eq!(lab.tcp_in_csum_errors(&ns1), 0);
    assert!(
        a.drops().is_empty() && b.drops().is_empty(),
        "{:?} {:?}",
        a.drops(),
        b.drops()
    );
}

/// With `timestamps`, each received frame carries the time the kernel took
/// it in, on the realtime clock: after the sender was started, before we
/// read it. (The pktgen receiver ends a frame's latency there.)
#[test]
fn afpacket_socket_reports_the_kernels_receive_time() {
    const T: &str = "afpacket_socket_reports_the_kernels_receive_time";
    if !require_root(T) || !require_tools(T, &["python3"]) {
        return;
    }
    use std::io::IoSliceMut;
    use std::time::{SystemTime, UNIX_EPOCH};
    use vswitch::port::sys::packet::{PacketOptions, PacketRecv, PacketSocket};
    use vswitch::port::sys::tun::VNET_HDR_LEN;
    let mut lab = Lab::new();
    let (va, vb, ns) = veth_into_netns(&mut lab);
    ip(&["link", "set", &va, "up"]);
    let idx = vswitch::port::sys::netdev::ifindex(&va).unwrap();
    let open = |timestamps| {
        PacketSocket::open(
            idx,
            PacketOptions {
                timestamps,
                ..PacketOptions::default()
            },
        )
        .unwrap()
    };
    let (stamped, plain) = (open(true), open(false));
    let marker = b"vswitch-rx-stamp";
    let frame = eth([0xff; 6], [0x02, 0, 0, 0, 0, 0x97], 0x88b5, marker);
    let before = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    Raw::new().send(&lab, &ns, &vb, &[&frame], 1, 0.0);
    let read = |s: &PacketSocket| -> Option<PacketRecv> {
        let mut found = None;
        wait_until(Duration::from_secs(3), || {
            let (mut v, mut b, mut o) = ([0u8; VNET_HDR_LEN], [0u8; 256], [0u8; 0]);
            let mut iovs = [[
                IoSliceMut::new(&mut v),
                IoSliceMut::new(&mut b),
                IoSliceMut::new(&mut o),
            ]];
            let mut out = [PacketRecv::default()];
            if s.recv_batch(&mut iovs, &mut out).unwrap_or(0) == 1 && contains(&b, marker) {
                found = Some(out[0]);
            }
            found.is_some()
        });
        found
    };
    let got = read(&stamped).expect("the frame, on the stamping socket");
    let after = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    let stamp = got.stamp.expect("a receive time");
    assert!(
        before <= stamp && stamp <= after,
        "{stamp:?} not between {before:?} and {after:?}"
    );
    let got = read(&plain).expect("the frame, on the other socket");
    assert_eq!(got.stamp, None, "only asked for where wanted");
}
