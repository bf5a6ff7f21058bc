//! TAP ports moving their frames in io_uring batches (`tap_io=uring`, the
//! default) against the real kernel: the TAP's kernel side lives in a
//! namespace of the test's own, frames are sent and captured there with
//! raw sockets, and the port is driven directly (receive, send, poll) as a
//! datapath worker drives it. Also the one-syscall-per-frame path
//! (`tap_io=readwrite`), which the batches replaced as the default.

mod common;

use common::frames::raw_frame;
use common::raw::{frames_from, Frame, Raw};
use common::{require_root, unique_ifname, wait_until, Forwarder, Lab};
use etherparse::PacketBuilder;
use std::time::{Duration, Instant};
use vswitch::packet::{Batch, CsumStatus, Gso, PacketBuf, PacketPool, MAX_BURST};
use vswitch::port::poll::Poller;
use vswitch::port::tap::TapIo;
use vswitch::port::{LinkState, Port, PortDrop, TapConfig, TapPort};

const SRC: [u8; 6] = [0x02, 0xaa, 0, 0, 0, 1];
const DST: [u8; 6] = [0x02, 0xbb, 0, 0, 0, 2];

/// Opens TAP `name` with the I/O path and vnet_hdr setting asked for.
fn tap(name: &str, io: TapIo, vnet_hdr: bool) -> TapPort {
    let mut c = TapConfig::new(name);
    c.vnet_hdr = vnet_hdr;
    c.io = io;
    let p = TapPort::open(c).expect("open tap");
    // Where io_uring is unavailable the port falls back to read/write;
    // these tests are about the batches.
    assert_eq!(p.io(), io, "io_uring is available here");
    p
}

/// A batched TAP (`vnet_hdr` as given) whose kernel side is plugged into
/// a new quiet namespace at 10.79.0.1/24: the lab, a raw-socket helper,
/// the TAP's name, the port and the namespace.
fn plugged_tap(vnet_hdr: bool) -> (Lab, Raw, String, TapPort, String) {
    let mut lab = Lab::new();
    let raw = Raw::new();
    let name = unique_ifname("tu");
    let p = tap(&name, TapIo::Uring, vnet_hdr);
    let ns = lab.quiet_netns();
    lab.plug(&name, &ns, "10.79.0.1/24");
    (lab, raw, name, p, ns)
}

/// A frame carrying sequence number `seq`, from `src`.
fn numbered(src: [u8; 6], dst: [u8; 6], seq: u16) -> Vec<u8> {
    let mut payload = b"uring-seq".to_vec();
    payload.extend_from_slice(&seq.to_be_bytes());
    payload.resize(46, 0);
    raw_frame(dst, src, &[], &payload)
}

/// The sequence number [`numbered`] put in `f`, when it is one of those.
fn seq_of(f: &[u8]) -> Option<u16> {
    let p = f.get(14..)?;
    if !p.starts_with(b"uring-seq") {
        return None;
    }
    Some(u16::from_be_bytes([*p.get(9)?, *p.get(10)?]))
}

/// A TCP/IPv4 super-packet of `payload` bytes, to be cut at `mss`, with
/// its checksum left partial as a vnet_hdr TAP hands one over.
fn super_packet(payload: usize, mss: u16) -> PacketBuf {
    let data: Vec<u8> = (0..payload as u32).map(|i| (i * 7 % 251) as u8).collect();
    let mut v = Vec::new();
    PacketBuilder::ethernet2(SRC, DST)
        .ipv4([10, 79, 0, 9], [10, 79, 0, 1], 64)
        .tcp(40000, 5001, 1_000_000, 65535)
        .ack(7)
        .write(&mut v, &data)
        .expect("build the super-packet");
    let mut sp = PacketBuf::from_slice(&v);
    sp.meta.gso = Gso::TcpV4 { size: mss };
    sp.meta.csum = CsumStatus::Partial {
        csum_start: 34,
        csum_offset: 16,
    };
    sp.meta.l3_ofs = 14;
    sp.meta.l4_ofs = 34;
    sp
}

/// Receives from `p` until `want` numbered frames came, or 10 s pass;
/// returns their sequence numbers in arrival order and the size of the
/// first non-empty batch.
fn receive_numbered(p: &mut TapPort, want: usize) -> (Vec<u16>, usize) {
    let mut pool = PacketPool::new(2048);
    let mut batch = Batch::new();
    let mut seqs = Vec::new();
    let mut first = 0;
    wait_until(Duration::from_secs(10), || {
        let n = p.recv_batch(&mut pool, &mut batch).expect("recv");
        if first == 0 {
            first = n;
        }
        seqs.extend(batch.iter().filter_map(|f| seq_of(f.data())));
        batch.recycle(&mut pool);
        seqs.len() >= want
    });
    (seqs, first)
}

/// The numbered frames of a capture, from [`SRC`], by sequence number.
fn captured_seqs(frames: &[Frame]) -> Vec<u16> {
    frames_from(frames, SRC)
        .iter()
        .filter_map(|f| seq_of(&f.bytes))
        .collect()
}

#[test]
fn uring_tap_moves_frames_both_ways_with_vnet_hdr() {
    if !require_root("uring_tap_moves_frames_both_ways_with_vnet_hdr") {
        return;
    }
    let (mut lab, raw, name, mut p, ns) = plugged_tap(true);

    // 100 frames queued at the port before it reads: it takes them in
    // full batches, in order, with the vnet header parsed.
    let frames: Vec<Vec<u8>> = (0..100).map(|i| numbered(DST, SRC, i)).collect();
    let refs: Vec<&[u8]> = frames.iter().map(|f| &f[..]).collect();
    raw.send(&lab, &ns, &name, &refs, 1, 0.0);
    let (seqs, first) = receive_numbered(&mut p, 100);
    assert_eq!(seqs, (0..100).collect::<Vec<u16>>(), "all, in order");
    assert_eq!(first, MAX_BURST, "a full batch while frames wait");
    assert!(p.stats().rx_packets >= 100);

    // 96 frames out in three batches, then a TSO super-packet between two
    // frames: the kernel side gets every frame in order, and the
    // super-packet whole, with its segment size (the vnet header went with
    // it).
    let cap = raw.capture(&mut lab, &ns, &name);
    let mut pool = PacketPool::new(2048);
    let mut batch = Batch::new();
    for b in 0..3u16 {
        for i in 0..32u16 {
            let _ = batch.push(pool.get_from(&numbered(SRC, DST, b * 32 + i)));
        }
        assert_eq!(p.send_batch(&mut batch, &mut pool).unwrap(), 32);
        assert!(batch.is_empty());
    }
    // A batch of more than two frames goes through the ring.
    let _ = batch.push(pool.get_from(&numbered(SRC, DST, 96)));
    let _ = batch.push(super_packet(3000, 1000));
    let _ = batch.push(pool.get_from(&numbered(SRC, DST, 97)));
    assert_eq!(p.send_batch(&mut batch, &mut pool).unwrap(), 3);
    let seen = cap.finish(&mut lab);
    assert_eq!(captured_seqs(&seen), (0..98).collect::<Vec<u16>>());
    let supers: Vec<&Frame> = frames_from(&seen, SRC)
        .into_iter()
        .filter(|f| f.gso > 0)
        .collect();
    assert_eq!(supers.len(), 1, "the super-packet, once");
    assert_eq!(supers[0].gso, 1000);
    assert_eq!(supers[0].len, 3000 + 14 + 20 + 20);
    assert_eq!(p.stats().tx_packets, 99);
    assert!(p.drops().is_empty(), "{:?}", p.drops());
}

#[test]
fn uring_tap_without_vnet_hdr_segments_a_super_packet_in_order() {
    if !require_root("uring_tap_without_vnet_hdr_segments_a_super_packet_in_order") {
        return;
    }
    let (mut lab, raw, name, mut p, ns) = plugged_tap(false);
    let cap = raw.capture(&mut lab, &ns, &name);
    // One batch: a frame, a super-packet cut in software into three
    // segments between the batched writes, another frame.
    let mut pool = PacketPool::new(2048);
    let mut batch = Batch::new();
    let _ = batch.push(pool.get_from(&numbered(SRC, DST, 1)));
    let _ = batch.push(super_packet(3000, 1000));
    let _ = batch.push(pool.get_from(&numbered(SRC, DST, 2)));
    assert_eq!(p.send_batch(&mut batch, &mut pool).unwrap(), 3);
    let seen = cap.finish(&mut lab);
    let ours = frames_from(&seen, SRC);
    let kinds: Vec<String> = ours
        .iter()
        .map(|f| match seq_of(&f.bytes) {
            Some(s) => format!("frame {s}"),
            None => format!("segment of {}", f.len),
        })
        .collect();
    assert_eq!(
        kinds,
        [
            "frame 1",
            "segment of 1054",
            "segment of 1054",
            "segment of 1054",
            "frame 2"
        ],
    );
    assert!(ours.iter().all(|f| f.gso == 0), "no super-packet left");
    assert_eq!(p.stats().tx_packets, 5);
    assert!(p.drops().is_empty(), "{:?}", p.drops());
}

#[test]
fn uring_tap_frame_arriving_while_the_worker_sleeps_wakes_it() {
    if !require_root("uring_tap_frame_arriving_while_the_worker_sleeps_wakes_it") {
        return;
    }
    let (lab, raw, name, mut p, ns) = plugged_tap(true);
    let mut pool = PacketPool::new(2048);
    let mut batch = Batch::new();
    // Nothing queued: whatever the link's coming up sent is read first.
    while p.recv_batch(&mut pool, &mut batch).unwrap() > 0 {
        batch.recycle(&mut pool);
    }
    let mut poller = Poller::new().unwrap();
    poller.set(0, p.poll_fd()).unwrap();
    let mut ready = Vec::new();
    poller.wait(Some(Duration::ZERO), &mut ready).unwrap();
    assert!(ready.is_empty(), "nothing to read before the frame is sent");

    // The frame is sent half a second into a sleep of up to a minute: the
    // sleep must end with the port readable, and the frame be there.
    let long = Duration::from_secs(60);
    let frame = numbered(DST, SRC, 7);
    let (woke, got) = std::thread::scope(|s| {
        s.spawn(|| {
            std::thread::sleep(Duration::from_millis(500));
            raw.send(&lab, &ns, &name, &[&frame[..]], 1, 0.0);
        });
        let t0 = Instant::now();
        let mut woke = Vec::new();
        let mut got = Vec::new();
        while got.is_empty() && t0.elapsed() < long {
            poller.wait(Some(long), &mut ready).unwrap();
            woke.push(ready.clone());
            if ready.contains(&0) {
                p.recv_batch(&mut pool, &mut batch).unwrap();
                got.extend(batch.iter().filter_map(|f| seq_of(f.data())));
                batch.recycle(&mut pool);
            }
        }
        (woke, got)
    });
    assert_eq!(got, vec![7], "the frame was read after the wakeup");
    assert_eq!(
        woke.last(),
        Some(&vec![0]),
        "the sleep ended because the port became readable: {woke:?}"
    );
}

#[test]
fn uring_tap_deleted_under_the_port_goes_down_and_comes_back() {
    if !require_root("uring_tap_deleted_under_the_port_goes_down_and_comes_back") {
        return;
    }
    let (lab, raw, name, mut p, ns) = plugged_tap(true);
    let mut pool = PacketPool::new(2048);
    let mut batch = Batch::new();

    // Deleted where it lives while a batch is on its way out: the batched
    // write finds it gone, the whole batch is counted as dropped on a
    // down port, and the port goes down once.
    lab.sh_ok(&ns, 5, &format!("ip link del {name}"));
    for i in 0..32u16 {
        let _ = batch.push(pool.get_from(&numbered(SRC, DST, i)));
    }
    assert_eq!(p.send_batch(&mut batch, &mut pool).unwrap(), 32);
    assert!(batch.is_empty());
    assert_eq!(p.drop_count(PortDrop::PortDown), 32);
    assert_eq!(p.link_state(), LinkState::Down);
    assert_eq!(p.link_downs(), 1);
    assert_eq!(p.poll_fd(), None);
    assert_eq!(p.recv_batch(&mut pool, &mut batch).unwrap(), 0);

    // Recreated by upkeep, and batched I/O works on the new device.
    assert!(
        wait_until(Duration::from_secs(10), || {
            p.housekeeping();
            p.link_state() == LinkState::Up
        }),
        "port comes back up"
    );
    assert_eq!(p.link_downs(), 1);
    lab.plug(&name, &ns, "10.79.0.1/24");
    let frames: Vec<Vec<u8>> = (0..40).map(|i| numbered(DST, SRC, i)).collect();
    let refs: Vec<&[u8]> = frames.iter().map(|f| &f[..]).collect();
    raw.send(&lab, &ns, &name, &refs, 1, 0.0);
    let (seqs, _) = receive_numbered(&mut p, 40);
    assert_eq!(seqs, (0..40).collect::<Vec<u16>>());
}

#[test]
fn readwrite_tap_io_still_forwards() {
    if !require_root("readwrite_tap_io_still_forwards") {
        return;
    }
    // The path the batches replaced (and the fallback where io_uring is
    // unavailable): a ping and a TCP transfer with TSO through two TAPs.
    let mut lab = Lab::new();
    let (na, nb) = (unique_ifname("ta"), unique_ifname("tb"));
    let a = tap(&na, TapIo::Readwrite, true);
    let b = tap(&nb, TapIo::Readwrite, false);
    let (ns1, ns2) = (lab.netns(), lab.netns());
    lab.plug(&na, &ns1, "10.80.0.1/24");
    lab.plug(&nb, &ns2, "10.80.0.2/24");
    let fwd = Forwarder::start(a, b, Duration::from_secs(120));
    assert!(lab.ping_until(&ns1, "10.80.0.2", Duration::from_secs(5)));
    lab.tcp_transfer(&ns1, &ns2, "10.80.0.2", 1 << 20);
    let (a, b, f) = fwd.stop();
    assert!(f.gso > 0, "super-packets came through: {f:?}");
    assert!(b.stats().tx_packets > f.a_to_b, "and were segmented");
    assert_eq!(lab.tcp_in_csum_errors(&ns2), 0);
    assert!(a.drops().is_empty() && b.drops().is_empty());
}
