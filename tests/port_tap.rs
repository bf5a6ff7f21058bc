//! TAP and internal ports against the real kernel: the kernel sides of two
//! TAPs are moved into two namespaces (as the side-by-side harness does) and
//! a forwarding loop joins them.

mod common;

use common::forwarder::{tap, tap_pair, Pair};
use common::{require_root, unique_ifname, wait_until, Forwarder, Lab};
use std::time::Duration;
use vswitch::packet::{Batch, PacketPool};
use vswitch::port::poll::Poller;
use vswitch::port::{LinkState, Port, PortDrop};

#[test]
fn tap_ping_between_namespaces() {
    if !require_root("tap_ping_between_namespaces") {
        return;
    }
    let mut lab = Lab::new();
    let Pair { a, b, ns1, ns2 } = tap_pair(&mut lab, 77, true, true);
    assert!(a.created() && b.created());
    assert_eq!(a.kind(), "tap");
    assert_eq!(a.mtu(), 1500);
    let fwd = Forwarder::start(a, b, Duration::from_secs(60));
    assert!(lab.ping(&ns1, "10.77.0.2", 3), "ping ns1 -> ns2");
    assert!(lab.ping(&ns2, "10.77.0.1", 3), "ping ns2 -> ns1");
    let (a, b, f) = fwd.stop();
    // ARP + 3 echo requests each way at least.
    assert!(f.a_to_b >= 4 && f.b_to_a >= 4, "{f:?}");
    let (sa, sb) = (a.stats(), b.stats());
    assert_eq!(sa.rx_packets, f.a_to_b);
    assert_eq!(sb.tx_packets, f.a_to_b);
    assert_eq!(sb.rx_packets, f.b_to_a);
    assert!(a.drops().is_empty(), "{:?}", a.drops());
}

#[test]
fn tap_tcp_transfer_vnet_tso() {
    if !require_root("tap_tcp_transfer_vnet_tso") {
        return;
    }
    let mut lab = Lab::new();
    let Pair { a, b, ns1, ns2 } = tap_pair(&mut lab, 77, true, true);
    let fwd = Forwarder::start(a, b, Duration::from_secs(120));
    assert!(lab.ping_until(&ns1, "10.77.0.2", Duration::from_secs(5)));
    let t = lab.tcp_transfer(&ns1, &ns2, "10.77.0.2", 10 << 20);
    let (_a, _b, f) = fwd.stop();
    eprintln!("10 MiB over vnet_hdr TAPs in {t:?}; {f:?}");
    assert!(
        f.gso > 0,
        "the sender's TSO super-packets came through the vnet_hdr path: {f:?}"
    );
    assert_eq!(lab.tcp_in_csum_errors(&ns2), 0);
    assert_eq!(lab.tcp_in_csum_errors(&ns1), 0);
}

#[test]
fn tap_tcp_transfer_software_segmentation() {
    if !require_root("tap_tcp_transfer_software_segmentation") {
        return;
    }
    // The sender's TAP has TSO, the receiver's has no vnet_hdr at all: every
    // super-packet is cut by packet::gso and every checksum completed by us,
    // and the receiving kernel checks them all.
    let mut lab = Lab::new();
    let Pair { a, b, ns1, ns2 } = tap_pair(&mut lab, 77, true, false);
    let fwd = Forwarder::start(a, b, Duration::from_secs(120));
    assert!(lab.ping_until(&ns1, "10.77.0.2", Duration::from_secs(5)));
    let t = lab.tcp_transfer(&ns1, &ns2, "10.77.0.2", 10 << 20);
    let (a, b, f) = fwd.stop();
    eprintln!("10 MiB vnet_hdr TAP -> plain TAP in {t:?}; {f:?}");
    assert!(
        f.gso > 0,
        "super-packets were received and segmented: {f:?}"
    );
    assert!(
        b.stats().tx_packets > f.a_to_b,
        "segmentation made more frames than it got"
    );
    assert_eq!(
        lab.tcp_in_csum_errors(&ns2),
        0,
        "receiver saw no bad checksum"
    );
    assert_eq!(lab.tcp_in_csum_errors(&ns1), 0);
    assert!(
        a.drops().is_empty() && b.drops().is_empty(),
        "{:?} {:?}",
        a.drops(),
        b.drops()
    );
}

#[test]
fn tap_deleted_goes_down_and_recovers() {
    if !require_root("tap_deleted_goes_down_and_recovers") {
        return;
    }
    let mut lab = Lab::new();
    let name = unique_ifname("td");
    let mut p = tap(&name, true);
    let ns = lab.netns();
    lab.plug(&name, &ns, "10.78.0.1/24");
    let mut pool = PacketPool::new(2048);
    let mut batch = Batch::new();
    let mut poller = Poller::new().unwrap();
    let mut ready = Vec::new();
    poller.set(0, p.poll_fd()).unwrap();

    // Delete the device where it lives now (the namespace), as a VM
    // teardown would.
    lab.sh_ok(&ns, 5, &format!("ip link del {name}"));
    // The fd reports an error; the receive that follows marks the port down.
    poller
        .wait(Some(Duration::from_secs(5)), &mut ready)
        .unwrap();
    assert_eq!(ready, vec![0], "EPOLLERR wakes the poller");
    assert_eq!(p.recv_batch(&mut pool, &mut batch).unwrap(), 0);
    assert_eq!(p.link_state(), LinkState::Down);
    assert_eq!(p.link_downs(), 1);
    assert_eq!(p.poll_fd(), None);
    // Unregistered from the poll set: no busy wakeups while down.
    poller.set(0, p.poll_fd()).unwrap();
    poller
        .wait(Some(Duration::from_millis(100)), &mut ready)
        .unwrap();
    assert!(ready.is_empty(), "no wakeup while down");
    // Sending while down drops, counted.
    let _ = batch.push(pool.get_from(&[0xff; 60]));
    assert_eq!(p.send_batch(&mut batch, &mut pool).unwrap(), 1);
    assert_eq!(p.drop_count(PortDrop::PortDown), 1);

    // Housekeeping recreates the TAP we created (with backoff, bounded).
    assert!(
        wait_until(Duration::from_secs(10), || {
            p.housekeeping();
            p.link_state() == LinkState::Up
        }),
        "port comes back up"
    );
    assert_eq!(p.link_downs(), 1, "one down transition counted");
    assert!(p.created());
    assert!(common::link_exists(&name), "TAP recreated in our netns");

    // And it works again once the namespace gets it back.
    lab.plug(&name, &ns, "10.78.0.1/24");
    lab.sh(
        &ns,
        5,
        "ping -c 1 -W 1 -b 10.78.0.255 >/dev/null 2>&1; true",
    );
    lab.sh(
        &ns,
        5,
        "ping -c 2 -i 0.2 -W 1 10.78.0.9 >/dev/null 2>&1; true",
    );
    let mut got = 0;
    wait_until(Duration::from_secs(5), || {
        got += p.recv_batch(&mut pool, &mut batch).unwrap();
        batch.recycle(&mut pool);
        got > 0
    });
    assert!(
        got > 0,
        "frames from the namespace reach the recreated port"
    );
}

#[test]
fn tap_drop_removes_only_what_we_created() {
    if !require_root("tap_drop_removes_only_what_we_created") {
        return;
    }
    let mut lab = Lab::new();
    let ours = unique_ifname("to");
    let p = tap(&ours, false);
    assert!(p.created());
    assert!(common::link_exists(&ours));
    drop(p);
    assert!(!common::link_exists(&ours), "our TAP removed on drop");

    let theirs = unique_ifname("tp");
    common::ip(&["tuntap", "add", "mode", "tap", "name", &theirs]);
    lab.track_link(&theirs);
    let p = tap(&theirs, true);
    assert!(!p.created(), "attached to a persistent TAP");
    drop(p);
    assert!(
        common::link_exists(&theirs),
        "someone else's TAP survives us"
    );
}

#[test]
fn tap_moved_before_setup_still_works() {
    if !require_root("tap_moved_before_setup_still_works") {
        return;
    }
    // The harness may move the kernel side right after TUNSETIFF; here it is
    // moved, then the port is used only through its fd.
    let mut lab = Lab::new();
    let Pair {
        a,
        b,
        ns1,
        ns2: _ns2,
    } = tap_pair(&mut lab, 77, false, false);
    assert!(
        !common::link_exists(a.name()),
        "kernel side lives in the namespace"
    );
    let fwd = Forwarder::start(a, b, Duration::from_secs(30));
    assert!(lab.ping(&ns1, "10.77.0.2", 2));
    let (a, _b, _f) = fwd.stop();
    assert_eq!(a.link_state(), LinkState::Up);
    let mut a = a;
    a.housekeeping();
    assert_eq!(
        a.link_state(),
        LinkState::Up,
        "fd-only probe does not mistake a moved TAP for a gone one"
    );
}

/// A persistent TAP re-opened (as after a crash) gets exactly the flags
/// asked for, whatever the previous fd had: the virtio-net header on or
/// off, never a mix; and clearing IFF_PERSIST makes the close remove it.
#[test]
fn persistent_tap_reopened_with_the_flags_asked() {
    if !require_root("persistent_tap_reopened_with_the_flags_asked") {
        return;
    }
    use vswitch::port::sys::tun;
    let mut lab = Lab::new();
    let name = unique_ifname("tf");
    lab.track_link(&name);
    let offloads = tun::TUN_F_CSUM | tun::TUN_F_TSO4 | tun::TUN_F_TSO6;
    let mut fd = tun::open_tap(&name, true, offloads).expect("create");
    assert!(!fd.persistent());
    tun::set_persist(&mut fd, true).expect("persist");
    assert!(fd.persistent());
    drop(fd);
    assert!(
        common::link_exists(&name),
        "a persistent TAP outlives its fd"
    );
    // Other tests of this binary spawn processes meanwhile: a child holds a
    // copy of our just-closed fd until its exec closes it, and while any
    // other queue is attached the kernel keeps the device's flags (a
    // multi-queue TAP changes them only for its first queue), which
    // `open_tap` refuses. Such a copy lasts microseconds: try again.
    let attach = |vnet: bool| {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
        loop {
            match tun::open_tap(&name, vnet, offloads) {
                Err(e) if std::time::Instant::now() < deadline => {
                    eprintln!("re-attach vnet_hdr={vnet}: {e}; again");
                    std::thread::sleep(std::time::Duration::from_millis(10));
                }
                r => return r.expect("re-attach"),
            }
        }
    };
    for vnet in [false, true, true, false] {
        let fd = attach(vnet);
        let (_, flags) = tun::get_iff(std::os::fd::AsFd::as_fd(&fd)).expect("flags");
        assert_eq!(
            flags & tun::IFF_VNET_HDR != 0,
            vnet,
            "vnet_hdr={vnet}: {flags:#x}"
        );
        assert!(fd.persistent());
    }
    let mut fd = attach(true);
    tun::set_persist(&mut fd, false).expect("clear persist");
    drop(fd);
    assert!(!common::link_exists(&name), "removed with its last fd");
}

/// A device in another namespace is asked from ours, by the id that
/// namespace has here (assigned on first use), without entering it: the
/// question a TAP port asks every second about its moved kernel side.
#[test]
fn a_device_in_another_namespace_answers_by_namespace_id() {
    use vswitch::port::sys::netns::NetNs;
    use vswitch::port::sys::rtnl::Rtnl;
    if !require_root("a_device_in_another_namespace_answers_by_namespace_id") {
        return;
    }
    let mut lab = Lab::new();
    let ns = lab.netns();
    lab.sh_ok(&ns, 5, "ip link set lo mtu 9000");
    let there = NetNs::open(&std::path::Path::new("/run/netns").join(&ns)).expect("open netns");
    let mut r = Rtnl::new().expect("rtnetlink socket");
    let id = r
        .nsid(std::os::fd::AsFd::as_fd(&there))
        .expect("namespace id");
    assert!(id >= 0);
    assert_eq!(
        r.nsid(std::os::fd::AsFd::as_fd(&there))
            .expect("namespace id again"),
        id,
        "the id is kept, not assigned again"
    );
    let lo = r.link_named(Some(id), "lo").expect("lo over there");
    assert_eq!(lo.index, 1);
    assert_eq!(lo.mtu, Some(9000), "the other namespace's lo, not ours");
    assert!(lo.flags & libc::IFF_LOOPBACK as u32 != 0);
    let ours = r.link_named(None, "lo").expect("our lo");
    assert_ne!(ours.mtu, Some(9000));
    let e = r.link_named(Some(id), "no-such-dev").unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::ENODEV));
    assert!(
        r.link_named(Some(id), "").is_err(),
        "an empty name is refused"
    );
}
