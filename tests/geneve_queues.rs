//! A Geneve port's queues for other datapath workers, over real kernel UDP
//! sockets on loopback (no namespace, no root needed): the queue's receive
//! socket shares the port's address (SO_REUSEPORT), the kernel spreads
//! datagrams from many outer source ports over both sockets, every one is
//! received exactly once and counted by the socket that got it; a second
//! port on the same address is still refused, and freed when the first
//! goes.
//!
//! Every receive loop is bounded.

use std::net::{Ipv4Addr, UdpSocket};
use std::time::Duration;
use vswitch::packet::{Batch, PacketPool};
use vswitch::port::geneve::{new_tlv_map, GeneveConfig, GenevePort, Key, Remote};
use vswitch::port::Port;

/// Outer source ports the datagrams come from: enough that the kernel's
/// hash puts some on each of two sockets (all on one: 2^-63).
const SOURCES: u16 = 64;

fn cfg(name: &str, port: u16) -> GeneveConfig {
    let mut c = GeneveConfig::new(name, Remote::Ip(Ipv4Addr::new(127, 0, 0, 1)));
    c.local = Some(Ipv4Addr::new(127, 0, 0, 1));
    c.in_key = Key::Vni(77);
    c.out_key = Key::Vni(77);
    c.dst_port = port;
    c
}

/// A port on a free loopback UDP port.
fn open(name: &str) -> (GenevePort, u16) {
    let base = 30000 + (std::process::id() % 500) as u16 * 20;
    for p in base..base + 2000 {
        if UdpSocket::bind(("127.0.0.1", p)).is_err() {
            continue;
        }
        if let Ok(g) = GenevePort::open(cfg(name, p), new_tlv_map()) {
            return (g, p);
        }
    }
    panic!("no free UDP port");
}

/// A Geneve datagram (VNI 77, no options) around a 60-byte Ethernet frame.
fn datagram(i: u16) -> Vec<u8> {
    let mut d = vec![0x00, 0x00, 0x65, 0x58, 0x00, 0x00, 77, 0x00];
    let mut inner = vec![0x02, 0, 0, 0, 0, 2, 0x02, 0, 0, 0, 0, 1, 0x88, 0xb5];
    inner.extend_from_slice(&i.to_be_bytes());
    inner.resize(60, 0);
    d.extend_from_slice(&inner);
    d
}

#[test]
fn a_queue_shares_the_port_address_and_each_datagram_arrives_once() {
    let (mut a, port) = open("g0");
    let mut q = a.open_queue().unwrap().expect("a geneve port splits");
    assert!(q.handover_fds().is_empty(), "only the primary hands over");
    let senders: Vec<UdpSocket> = (0..SOURCES)
        .map(|_| UdpSocket::bind(("127.0.0.1", 0)).unwrap())
        .collect();
    for (i, s) in senders.iter().enumerate() {
        s.send_to(&datagram(i as u16), ("127.0.0.1", port)).unwrap();
    }
    let mut pool = PacketPool::new(2048);
    let mut b = Batch::new();
    let (mut on_a, mut on_q) = (0, 0);
    let mut seen = Vec::new();
    for _ in 0..400 {
        for (p, n) in [
            (&mut a as &mut dyn Port, &mut on_a),
            (q.as_mut(), &mut on_q),
        ] {
            *n += p.recv_batch(&mut pool, &mut b).unwrap();
            for pkt in b.iter() {
                seen.push(u16::from_be_bytes([pkt.data()[14], pkt.data()[15]]));
            }
            b.recycle(&mut pool);
        }
        if on_a + on_q >= usize::from(SOURCES) {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    seen.sort_unstable();
    assert_eq!(seen, (0..SOURCES).collect::<Vec<_>>(), "each once");
    assert!(
        on_a > 0 && on_q > 0,
        "both sockets received: {on_a} + {on_q}"
    );
    assert_eq!(a.stats().rx_packets, on_a as u64);
    assert_eq!(q.stats().rx_packets, on_q as u64);
}

#[test]
fn the_address_stays_refused_to_a_second_port_until_the_first_goes() {
    let (a, port) = open("g1");
    let e = GenevePort::open(cfg("g2", port), new_tlv_map())
        .unwrap_err()
        .to_string();
    assert!(e.contains("already in use"), "{e}");
    // Its queue does not free the address when it goes.
    drop(a.open_queue().unwrap());
    assert!(GenevePort::open(cfg("g2", port), new_tlv_map()).is_err());
    drop(a);
    GenevePort::open(cfg("g2", port), new_tlv_map()).expect("free again");
}
