//! End to end through the stateful firewall: two smoltcp TCP/IP stacks,
//! each attached to the switch through an in-memory port, exchange 1 MiB
//! and close from both sides.
//!
//! This is field story 1 of DESIGN.md as a user sees it: a connection whose
//! bare ACKs and FINs conntrack wrongly judges invalid stalls until a
//! retransmission timeout, or never closes. Here the whole exchange must
//! finish in a few simulated seconds with every frame forwarded, conntrack
//! must end in TIME_WAIT (or CLOSED) with zero invalid verdicts, and no
//! byte of payload may have been sent twice (smoltcp's minimum RTO is 1 s,
//! so a retransmission would mean the switch lost a segment).
//!
//! Time is simulated: each loop iteration advances smoltcp's clock and the
//! datapath's `now` by the same fixed step; the loop is bounded by an
//! iteration count, not by wall time.
//!
//! smoltcp emits minimum-size frames unpadded (54-byte bare ACK/FIN, 42-byte
//! ARP). A NIC pads them to 60 bytes; the `padded` variant does so with
//! non-zero bytes before they enter the switch, the frames of the incident.

mod conntrack_common;
mod ct_pipeline_support;
use ct_pipeline_support::*;

use std::collections::VecDeque;

use etherparse::{NetSlice, SlicedPacket, TransportSlice};
use smoltcp::iface::{Config, Interface, SocketHandle, SocketSet};
use smoltcp::phy::{self, Device, DeviceCapabilities, Medium};
use smoltcp::socket::tcp;
use smoltcp::time::{Duration as SDuration, Instant as SInstant};
use smoltcp::wire::{EthernetAddress, HardwareAddress, IpAddress, IpCidr};
use vswitch::conntrack::TcpState;
use vswitch::port::mem::MemHandle;

/// Bytes the client sends.
const TOTAL: usize = 1 << 20;
/// Simulated time per loop iteration.
const STEP_MS: u64 = 1;
/// Upper bound on iterations (20 simulated seconds).
const MAX_ITERS: u64 = 20_000;
/// Simulated time the whole exchange must fit in.
const DEADLINE_MS: u64 = 5_000;

const CLIENT_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
const SERVER_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];
const CLIENT_IP: [u8; 4] = [10, 0, 0, 1];
const SERVER_IP: [u8; 4] = [10, 0, 0, 2];
const SERVER_PORT: u16 = 8080;
const CLIENT_PORT: u16 = 49152;

/// The client's payload: position-dependent bytes (a byte lost, duplicated
/// or reordered shows up in the comparison).
fn payload_byte(i: usize) -> u8 {
    (i as u32).wrapping_mul(2_654_435_761).rotate_right(13) as u8
}

/// What one stack put on the wire.
#[derive(Debug, Default)]
struct TxCounters {
    frames: u64,
    /// Frames shorter than the 60-byte Ethernet minimum as the stack
    /// built them.
    short: u64,
    /// Short frames that were padded before injection.
    padded: u64,
    /// Short TCP frames with FIN (a bare FIN+ACK is 54 bytes).
    short_fins: u64,
    /// Bare TCP segments (no payload, ACK/FIN/SYN only).
    bare_tcp: u64,
    /// Segments with the FIN flag.
    fins: u64,
    /// TCP payload bytes, retransmissions included.
    payload_bytes: u64,
}

/// A smoltcp device backed by one mem port handle: what the stack transmits
/// is injected into the switch, what the switch sent out of the port is
/// what the stack receives.
struct MemDevice {
    port: MemHandle,
    rx: VecDeque<Vec<u8>>,
    /// Pad frames shorter than 60 bytes with this (non-zero) byte.
    pad: Option<u8>,
    tx: TxCounters,
}

impl MemDevice {
    fn new(port: MemHandle, pad: Option<u8>) -> Self {
        MemDevice {
            port,
            rx: VecDeque::new(),
            pad,
            tx: TxCounters::default(),
        }
    }
}

struct RxToken(Vec<u8>);

impl phy::RxToken for RxToken {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        f(&self.0)
    }
}

struct TxToken<'a> {
    port: &'a MemHandle,
    pad: Option<u8>,
    tx: &'a mut TxCounters,
}

impl phy::TxToken for TxToken<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let mut frame = vec![0u8; len];
        let r = f(&mut frame);
        self.tx.frames += 1;
        if let Ok(p) = SlicedPacket::from_ethernet(&frame) {
            if let (Some(NetSlice::Ipv4(_)), Some(TransportSlice::Tcp(t))) = (&p.net, &p.transport)
            {
                let n = t.payload().len() as u64;
                self.tx.payload_bytes += n;
                if n == 0 {
                    self.tx.bare_tcp += 1;
                }
                if t.fin() {
                    self.tx.fins += 1;
                    if frame.len() < 60 {
                        self.tx.short_fins += 1;
                    }
                }
            }
        }
        if frame.len() < 60 {
            self.tx.short += 1;
        }
        if let Some(b) = self.pad {
            if frame.len() < 60 {
                frame.resize(60, b);
                self.tx.padded += 1;
            }
        }
        assert!(self.port.inject(&frame), "switch receive queue full");
        r
    }
}

impl Device for MemDevice {
    type RxToken<'a> = RxToken;
    type TxToken<'a> = TxToken<'a>;

    fn receive(&mut self, _: SInstant) -> Option<(RxToken, TxToken<'_>)> {
        if self.rx.is_empty() {
            self.rx.extend(self.port.take_sent());
        }
        let frame = self.rx.pop_front()?;
        Some((
            RxToken(frame),
            TxToken {
                port: &self.port,
                pad: self.pad,
                tx: &mut self.tx,
            },
        ))
    }

    fn transmit(&mut self, _: SInstant) -> Option<TxToken<'_>> {
        Some(TxToken {
            port: &self.port,
            pad: self.pad,
            tx: &mut self.tx,
        })
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ethernet;
        // Ethernet header + the ports' 1500-byte MTU.
        caps.max_transmission_unit = 1514;
        caps
    }
}

/// One TCP/IP stack: interface, device, one socket.
struct Stack {
    iface: Interface,
    dev: MemDevice,
    sockets: SocketSet<'static>,
    tcp: SocketHandle,
}

impl Stack {
    fn new(port: MemHandle, pad: Option<u8>, mac: [u8; 6], ip: [u8; 4], seed: u64) -> Stack {
        let mut dev = MemDevice::new(port, pad);
        let mut cfg = Config::new(HardwareAddress::Ethernet(EthernetAddress(mac)));
        cfg.random_seed = seed;
        let mut iface = Interface::new(cfg, &mut dev, SInstant::from_millis(0));
        iface.update_ip_addrs(|a| {
            a.push(IpCidr::new(IpAddress::v4(ip[0], ip[1], ip[2], ip[3]), 24))
                .expect("one address");
        });
        // 256 KiB buffers: larger than 64 KiB, so window scaling is
        // negotiated and conntrack tracks scaled windows.
        let sock = tcp::Socket::new(
            tcp::SocketBuffer::new(vec![0; 256 * 1024]),
            tcp::SocketBuffer::new(vec![0; 256 * 1024]),
        );
        let mut sockets = SocketSet::new(Vec::new());
        let tcp = sockets.add(sock);
        Stack {
            iface,
            dev,
            sockets,
            tcp,
        }
    }

    fn poll(&mut self, now: SInstant) {
        self.iface.poll(now, &mut self.dev, &mut self.sockets);
    }

    fn sock(&mut self) -> &mut tcp::Socket<'static> {
        self.sockets.get_mut::<tcp::Socket>(self.tcp)
    }
}

/// What a run observed.
#[derive(Debug)]
struct Run {
    elapsed_ms: u64,
    client: TxCounters,
    server: TxCounters,
}

/// Connect, send [`TOTAL`] bytes client -> server, close from both sides.
fn transfer(sw: &mut Switch, pad: Option<(u8, u8)>) -> Run {
    let mut client = Stack::new(
        sw.vm1.clone(),
        pad.map(|p| p.0),
        CLIENT_MAC,
        CLIENT_IP,
        0x5eed_0001,
    );
    let mut server = Stack::new(
        sw.vm2.clone(),
        pad.map(|p| p.1),
        SERVER_MAC,
        SERVER_IP,
        0x5eed_0002,
    );
    server.sock().listen(SERVER_PORT).expect("listen");
    let remote = (
        IpAddress::v4(SERVER_IP[0], SERVER_IP[1], SERVER_IP[2], SERVER_IP[3]),
        SERVER_PORT,
    );
    let cx = client.iface.context();
    client
        .sockets
        .get_mut::<tcp::Socket>(client.tcp)
        .connect(cx, remote, CLIENT_PORT)
        .expect("connect");

    let mut sent = 0usize;
    let mut received = 0usize;
    let mut client_closed = false;
    let mut server_closed = false;
    let mut buf = vec![0u8; 64 * 1024];
    let mut chunk = vec![0u8; 64 * 1024];
    for iter in 0..MAX_ITERS {
        let t_ms = iter * STEP_MS;
        let now = SInstant::from_millis(t_ms as i64);

        // The client writes what fits, then closes its side.
        if sent < TOTAL && client.sock().can_send() {
            let n = chunk.len().min(TOTAL - sent);
            for (i, b) in chunk[..n].iter_mut().enumerate() {
                *b = payload_byte(sent + i);
            }
            sent += client.sock().send_slice(&chunk[..n]).expect("send");
        }
        if sent == TOTAL && !client_closed {
            client.sock().close();
            client_closed = true;
        }
        client.poll(now);
        server.poll(now);

        // The switch forwards everything queued so far.
        let dp_now = sw.at(std::time::Duration::from_millis(t_ms));
        for _ in 0..1000 {
            if sw.dp.poll_once(dp_now) == 0 {
                break;
            }
        }

        // The server reads and checks, and closes once the client has.
        while server.sock().can_recv() {
            let n = server.sock().recv_slice(&mut buf).expect("recv");
            for (i, b) in buf[..n].iter().enumerate() {
                assert_eq!(*b, payload_byte(received + i), "byte {}", received + i);
            }
            received += n;
        }
        if received == TOTAL && !server.sock().may_recv() && !server_closed {
            server.sock().close();
            server_closed = true;
        }

        let done = server_closed
            && server.sock().state() == tcp::State::Closed
            && matches!(
                client.sock().state(),
                tcp::State::TimeWait | tcp::State::Closed
            );
        if done {
            // Let the last frames cross, then stop.
            server.poll(now + SDuration::from_millis(STEP_MS));
            client.poll(now + SDuration::from_millis(STEP_MS));
            sw.dp.poll_once(dp_now);
            return Run {
                elapsed_ms: t_ms,
                client: client.dev.tx,
                server: server.dev.tx,
            };
        }
    }
    panic!(
        "not done after {MAX_ITERS} iterations: sent {sent}, received {received}, \
         client {}, server {}, conntrack {:#?}, drops {:?}",
        client.sock().state(),
        server.sock().state(),
        sw.conns(std::time::Duration::from_millis(MAX_ITERS * STEP_MS)),
        sw.all_drops()
    );
}

/// The checks both variants share.
fn check(sw: &Switch, run: &Run) {
    println!("{run:#?}");
    assert!(
        run.elapsed_ms < DEADLINE_MS,
        "took {} simulated ms: something waited for a timeout",
        run.elapsed_ms
    );
    // Every payload byte crossed once: no segment was lost and resent.
    assert_eq!(run.client.payload_bytes, TOTAL as u64, "retransmissions");
    assert_eq!(run.server.payload_bytes, 0);
    // Both sides sent a FIN, once each; everything the server sent is a
    // bare segment (SYN-ACK, ACKs, FIN+ACK) or its ARP reply, and its
    // FIN+ACK is one of the incident's 54-byte frames.
    assert_eq!((run.client.fins, run.server.fins), (1, 1));
    assert_eq!(run.server.bare_tcp + 1, run.server.frames, "{run:?}");
    assert_eq!(run.server.short_fins, 1, "{run:?}");
    // The server's ACKs are short, and so is the ARP of each side.
    assert!(run.server.short >= 3, "{run:?}");
    assert!(run.client.short >= 2, "{run:?}");

    // The switch dropped nothing and forwarded every frame.
    assert_eq!(sw.all_drops(), vec![], "drops");
    let stats = sw.dp.port_stats();
    let port = |no: u32| {
        stats
            .iter()
            .find(|(n, _)| *n == no)
            .expect("port")
            .1
            .clone()
    };
    let (p1, p2) = (port(VM1), port(VM2));
    assert_eq!(p1.rx_packets, run.client.frames);
    assert_eq!(p2.rx_packets, run.server.frames);
    assert_eq!(p1.rx_packets, p2.tx_packets, "vm1 -> vm2: all forwarded");
    assert_eq!(p2.rx_packets, p1.tx_packets, "vm2 -> vm1: all forwarded");

    // ARP (request and reply) went through `normal`, untracked; nothing
    // fell to a drop flow.
    assert_eq!(sw.flow("priority=10,arp actions=NORMAL").n_packets, 2);
    assert_eq!(sw.flow("priority=0 actions=drop").n_packets, 0);
    assert_eq!(sw.flow("table=1, priority=0 actions=drop").n_packets, 0);

    // Conntrack: one connection, closed, never an invalid verdict.
    let t = std::time::Duration::from_millis(run.elapsed_ms);
    let c = sw.only(t);
    assert_eq!(
        c.format_ovs()
            .split(",protoinfo")
            .next()
            .expect("tuple part"),
        "tcp,orig=(src=10.0.0.1,dst=10.0.0.2,sport=49152,dport=8080),\
         reply=(src=10.0.0.2,dst=10.0.0.1,sport=8080,dport=49152),zone=0,mark=0"
    );
    let state = c.tcp.map(|i| i.state);
    assert!(
        matches!(state, Some(TcpState::TimeWait | TcpState::Closed)),
        "{c:#?}"
    );
    let st = sw.ct.stats();
    assert_eq!(st.invalid.values().sum::<u64>(), 0, "{:?}", st.invalid);
    assert_eq!(st.committed, 1);
    assert_eq!(st.expired, 0);
    // The scaled windows were tracked (smoltcp offers a scale for 256 KiB).
    let tcp = c.tcp.expect("tcp");
    assert!(tcp.orig.window_scale && tcp.reply.window_scale, "{tcp:?}");
}

#[test]
fn one_mebibyte_through_the_firewall() {
    let mut sw = Switch::new();
    let run = transfer(&mut sw, None);
    check(&sw, &run);
    assert_eq!(run.client.padded + run.server.padded, 0);
}

#[test]
fn one_mebibyte_through_the_firewall_with_nonzero_padding() {
    let mut sw = Switch::new();
    let run = transfer(&mut sw, Some((0xa5, 0x5a)));
    check(&sw, &run);
    // Every short frame entered the switch padded: the ARPs, the bare
    // ACKs and the server's FIN+ACK.
    assert_eq!(run.client.padded, run.client.short);
    assert_eq!(run.server.padded, run.server.short);
}
