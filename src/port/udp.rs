//! The batched UDP socket a tunnel port (Geneve) sits on.
//!
//! One unconnected, non-blocking socket bound to the tunnel's local address
//! serves every remote endpoint:
//!
//! * [`Socket::recv_batch`] receives datagrams straight into pool buffers
//!   (payload at the buffer's headroom mark, so decap is a `pull_front`),
//!   with the sender's address and the local address each was sent to
//!   (`tun_src` / `tun_dst`);
//! * [`Socket::send_batch`] sends each packet of a batch to its own
//!   destination with one sendmmsg per 32 packets; the kernel picks the
//!   route and resolves the next hop's MAC (no neighbour table of ours);
//! * [`Socket::send_gso`] sends one buffer of equal-sized datagrams to one
//!   destination with a single sendmsg carrying a `UDP_SEGMENT` control
//!   message (UDP GSO): the kernel routes once and cuts the buffer into
//!   datagrams as late as it can (on the wire, or at the receiving socket
//!   when the underlay is virtual), which is how a tunnel carries a TSO
//!   super-frame's segments without paying the UDP stack once per segment.
//!   The kernel requires the UDP checksum for it (a socket with
//!   SO_NO_CHECK refuses), computed by the device when it offloads;
//! * ICMP errors about what we sent (peer host down, port unreachable,
//!   fragmentation needed) are read from the socket's error queue and
//!   counted in [`IcmpCounters`]; they are never fatal. The queue is drained
//!   whenever a receive or send reports the pending error, so a
//!   level-triggered poll never spins on EPOLLERR.
//!
//! Owned by one datapath thread.

use super::sys::udp::{IcmpError, UdpOptions, UdpRecv, UdpSock};
use super::sys::MAX_MSGS;
use super::PortDrop;
use crate::packet::{Batch, PacketBuf, PacketPool};
use std::io::{self, IoSlice, IoSliceMut};
use std::net::{IpAddr, SocketAddr};
use std::os::fd::{AsFd, AsRawFd, RawFd};

pub use super::sys::udp::UdpOptions as Options;

/// Largest UDP payload.
pub const MAX_DATAGRAM: usize = 65535;

/// Most datagrams one [`Socket::send_gso`] may carry (the kernel's
/// `UDP_MAX_SEGMENTS`).
pub const GSO_MAX_SEGMENTS: usize = 64;

/// Most bytes of UDP payload one [`Socket::send_gso`] may carry over IPv4:
/// the whole buffer travels as one IP datagram until it is cut (65535 less
/// the IPv4 and UDP headers).
pub const GSO_MAX_BYTES: usize = 65535 - 20 - 8;

/// `SOL_UDP` option / control message type `UDP_SEGMENT` (linux/udp.h;
/// not exported by libc for every Linux target).
const UDP_SEGMENT: libc::c_int = 103;

/// One `UDP_SEGMENT` control message (`struct cmsghdr` and a u16), laid
/// out in safe code: length, level, type, then the segment size, padded to
/// `CMSG_SPACE(2)`.
#[repr(C, align(8))]
struct GsoCmsg([u8; 24]);

impl GsoCmsg {
    fn new(seg: u16) -> GsoCmsg {
        let mut b = [0u8; 24];
        // cmsg_len = CMSG_LEN(2): the 16-byte header on 64-bit Linux plus
        // the value (32-bit targets have a 12-byte header; not supported).
        b[0..8].copy_from_slice(&(16usize + 2).to_ne_bytes());
        b[8..12].copy_from_slice(&libc::SOL_UDP.to_ne_bytes());
        b[12..16].copy_from_slice(&UDP_SEGMENT.to_ne_bytes());
        b[16..18].copy_from_slice(&seg.to_ne_bytes());
        GsoCmsg(b)
    }
}

/// Where a received datagram came from and went to.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RecvInfo {
    /// Sender (outer source address and UDP port).
    pub src: Option<SocketAddr>,
    /// Local address it was sent to (outer destination).
    pub dst: Option<IpAddr>,
    /// Outer TOS (`tun_tos`).
    pub tos: u8,
    /// Outer TTL (`tun_ttl`).
    pub ttl: u8,
    /// With UDP GRO: the datagram is several Geneve datagrams of this size
    /// back to back (the last may be shorter); 0 for one.
    pub gso_size: u16,
}

/// ICMP errors received about datagrams we sent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IcmpCounters {
    /// Port unreachable (nobody listens on the peer's tunnel port).
    pub port_unreachable: u64,
    /// Host unreachable (or host down / no neighbour).
    pub host_unreachable: u64,
    /// Network unreachable.
    pub net_unreachable: u64,
    /// Fragmentation needed / packet too big.
    pub frag_needed: u64,
    /// Anything else.
    pub other: u64,
    /// The most recent error.
    pub last: Option<IcmpError>,
}

impl IcmpCounters {
    /// Sum of all counters.
    pub fn total(&self) -> u64 {
        self.port_unreachable
            + self.host_unreachable
            + self.net_unreachable
            + self.frag_needed
            + self.other
    }

    /// The errors as port drop reasons: what was sent did not arrive.
    pub fn drops(&self) -> [(PortDrop, u64); 3] {
        [
            (
                PortDrop::TunnelUnreachable,
                self.port_unreachable + self.host_unreachable,
            ),
            (PortDrop::TunnelNoRoute, self.net_unreachable),
            (PortDrop::TxError, self.frag_needed + self.other),
        ]
    }

    fn count(&mut self, e: IcmpError) {
        match e.errno {
            libc::ECONNREFUSED => self.port_unreachable += 1,
            libc::EHOSTUNREACH | libc::EHOSTDOWN => self.host_unreachable += 1,
            libc::ENETUNREACH => self.net_unreachable += 1,
            libc::EMSGSIZE => self.frag_needed += 1,
            _ => self.other += 1,
        }
        self.last = Some(e);
    }
}

/// Sums the counters of several sockets (a tunnel port's); `last` is the
/// right-hand side's when it has one.
impl core::ops::AddAssign for IcmpCounters {
    fn add_assign(&mut self, o: IcmpCounters) {
        self.port_unreachable += o.port_unreachable;
        self.host_unreachable += o.host_unreachable;
        self.net_unreachable += o.net_unreachable;
        self.frag_needed += o.frag_needed;
        self.other += o.other;
        self.last = o.last.or(self.last);
    }
}

/// What one [`Socket::send_batch`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SendReport {
    /// Datagrams the kernel took.
    pub sent: u64,
    /// Bytes in those datagrams.
    pub bytes: u64,
    /// Dropped: the device queue was full (ENOBUFS).
    pub queue_full: u64,
    /// Dropped: no route to the destination.
    pub no_route: u64,
    /// Dropped: the destination is known unreachable (a pending ICMP error).
    pub unreachable: u64,
    /// Dropped: larger than the path MTU allows.
    pub too_big: u64,
    /// Dropped: any other error.
    pub other: u64,
    /// Left in the batch because the socket buffer was full.
    pub left: u64,
}

impl SendReport {
    /// The drops, as port drop reasons (non-zero only).
    pub fn drops(&self) -> impl Iterator<Item = (PortDrop, u64)> {
        [
            (PortDrop::TxQueueFull, self.queue_full),
            (PortDrop::TunnelNoRoute, self.no_route),
            (PortDrop::TunnelUnreachable, self.unreachable),
            (PortDrop::TxError, self.too_big + self.other),
        ]
        .into_iter()
        .filter(|&(_, n)| n > 0)
    }
}

/// A tunnel's UDP socket.
#[derive(Debug)]
pub struct Socket {
    sock: UdpSock,
    local: SocketAddr,
    icmp: IcmpCounters,
    truncated: u64,
    overflow: Vec<Box<[u8]>>,
    rx_bufs: Vec<PacketBuf>,
}

impl Socket {
    /// Binds `local` with default options (pktinfo, IP_RECVERR, 4 MiB
    /// buffers).
    pub fn bind(local: SocketAddr) -> io::Result<Socket> {
        Socket::bind_with(local, UdpOptions::default())
    }

    /// Binds `local` with `opts`.
    pub fn bind_with(local: SocketAddr, opts: UdpOptions) -> io::Result<Socket> {
        let sock = UdpSock::bind(local, opts)?;
        let local = sock.local_addr()?;
        Ok(Socket {
            sock,
            local,
            icmp: IcmpCounters::default(),
            truncated: 0,
            overflow: Vec::new(),
            rx_bufs: Vec::with_capacity(MAX_MSGS),
        })
    }

    /// Takes over a bound socket handed over by the previous vswitchd.
    pub fn adopt(fd: std::os::fd::OwnedFd) -> io::Result<Socket> {
        let sock = UdpSock::from_owned(fd)?;
        let local = sock.local_addr()?;
        Ok(Socket {
            sock,
            local,
            icmp: IcmpCounters::default(),
            truncated: 0,
            overflow: Vec::new(),
            rx_bufs: Vec::with_capacity(MAX_MSGS),
        })
    }

    /// The fd, for handing it over.
    pub fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.sock.as_fd()
    }

    /// The bound address (with the real port when bound to port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// The fd to poll.
    pub fn poll_fd(&self) -> RawFd {
        self.sock.as_fd().as_raw_fd()
    }

    /// ICMP errors seen so far.
    pub fn icmp(&self) -> &IcmpCounters {
        &self.icmp
    }

    /// Datagrams dropped on receive because they were larger than
    /// [`MAX_DATAGRAM`] (never, in practice).
    pub fn truncated(&self) -> u64 {
        self.truncated
    }

    /// Reads every queued ICMP error into the counters; returns how many.
    pub fn drain_errors(&mut self) -> usize {
        let mut n = 0;
        // Bounded: the queue is bounded by the socket buffer anyway.
        for _ in 0..1024 {
            match self.sock.recv_error() {
                Ok(Some(e)) => {
                    self.icmp.count(e);
                    n += 1;
                }
                Ok(None) | Err(_) => break,
            }
        }
        n
    }

    /// Receives up to `batch.free()` datagrams into buffers from `pool`,
    /// appended to `batch`; `info[j]` describes the j-th appended one
    /// (`info` needs `batch.free()` entries; fewer limits the receive).
    /// Never fails: nothing waiting is 0, and the error a receive can
    /// report (a pending ICMP error) is read into [`Socket::icmp`].
    pub fn recv_batch(
        &mut self,
        pool: &mut PacketPool,
        batch: &mut Batch,
        info: &mut [RecvInfo],
    ) -> usize {
        let k = batch.free().min(info.len()).min(MAX_MSGS);
        if k == 0 {
            return 0;
        }
        if self.overflow.is_empty() {
            self.overflow = (0..MAX_MSGS)
                .map(|_| vec![0u8; MAX_DATAGRAM].into_boxed_slice())
                .collect();
        }
        for _ in 0..k {
            self.rx_bufs.push(pool.get());
        }
        let mut out = [UdpRecv::default(); MAX_MSGS];
        let res = {
            let mut it = self.rx_bufs.iter_mut().zip(self.overflow.iter_mut());
            let mut iovs: [[IoSliceMut<'_>; 2]; MAX_MSGS] =
                std::array::from_fn(|_| match it.next() {
                    Some((p, o)) => [IoSliceMut::new(p.rx_area()), IoSliceMut::new(&mut o[..])],
                    None => [IoSliceMut::new(&mut []), IoSliceMut::new(&mut [])],
                });
            self.sock.recv_batch(&mut iovs[..k], &mut out[..k])
        };
        let got = match res {
            Ok(g) => g,
            Err(e) => {
                for p in self.rx_bufs.drain(..) {
                    pool.put(p);
                }
                if e.kind() != io::ErrorKind::WouldBlock && e.kind() != io::ErrorKind::Interrupted {
                    // A pending ICMP error surfaces here once: read the queue.
                    self.drain_errors();
                }
                return 0;
            }
        };
        let mut n = 0;
        for (i, mut p) in self.rx_bufs.drain(..).enumerate() {
            let r = out[i];
            if i >= got || r.truncated {
                if i < got {
                    self.truncated += 1;
                }
                pool.put(p);
                continue;
            }
            super::finish_rx(&mut p, r.len, &self.overflow[i]);
            match batch.push(p) {
                Ok(()) => {
                    info[n] = RecvInfo {
                        src: r.src,
                        dst: r.dst,
                        tos: r.tos.unwrap_or(0),
                        ttl: r.ttl.unwrap_or(0),
                        gso_size: r.gso_size.unwrap_or(0),
                    };
                    n += 1;
                }
                Err(p) => pool.put(p),
            }
        }
        n
    }

    /// Sends `batch[i]` to `dsts[i]`. Sent and dropped packets leave the
    /// batch (buffers back to `pool`); packets the socket buffer could not
    /// take stay in front (`left`), as do packets without a destination
    /// entry.
    pub fn send_batch(
        &mut self,
        batch: &mut Batch,
        dsts: &[SocketAddr],
        pool: &mut PacketPool,
    ) -> SendReport {
        let mut rep = SendReport::default();
        let total = batch.len().min(dsts.len());
        let mut done = 0;
        while done < total {
            let m = (total - done).min(MAX_MSGS);
            let pkts = &batch.as_slice()[done..done + m];
            let res = {
                let mut it = pkts.iter();
                let iovs: [[IoSlice<'_>; 1]; MAX_MSGS] = std::array::from_fn(|_| match it.next() {
                    Some(p) => [IoSlice::new(p.data())],
                    None => [IoSlice::new(&[])],
                });
                self.sock.send_batch(&iovs[..m], &dsts[done..done + m])
            };
            match res {
                Ok(k) => {
                    rep.sent += k as u64;
                    rep.bytes += pkts[..k.min(m)].iter().map(|p| p.len() as u64).sum::<u64>();
                    done += k;
                    if k == 0 {
                        break;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    match e.raw_os_error() {
                        Some(libc::ENOBUFS) => rep.queue_full += 1,
                        Some(libc::ENETUNREACH) | Some(libc::EHOSTUNREACH) => rep.no_route += 1,
                        Some(libc::ECONNREFUSED) | Some(libc::EHOSTDOWN) => {
                            rep.unreachable += 1;
                            self.drain_errors();
                        }
                        Some(libc::EMSGSIZE) => rep.too_big += 1,
                        _ => rep.other += 1,
                    }
                    done += 1;
                }
            }
        }
        rep.left = (total - done) as u64;
        batch.consume_front(done, pool);
        rep
    }
}

/// What one [`Socket::send_gso`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GsoSend {
    /// The kernel took the buffer: this many datagrams and bytes.
    Sent {
        /// Datagrams the buffer stands for.
        datagrams: u64,
        /// Bytes of UDP payload.
        bytes: u64,
    },
    /// The socket buffer is full now: nothing was sent.
    WouldBlock,
    /// This socket or kernel cannot send UDP GSO (the checksum is off, or
    /// the kernel predates UDP_SEGMENT): nothing was sent; send the
    /// datagrams one by one instead.
    Unsupported,
    /// The kernel refused the datagrams (counted as the drop reason).
    Dropped(PortDrop),
}

impl Socket {
    /// Sends `buf` to `dst` as datagrams of `seg` bytes each (the last may
    /// be shorter) with one sendmsg and a `UDP_SEGMENT` control message.
    /// `buf` holds at most [`GSO_MAX_SEGMENTS`] datagrams and
    /// [`GSO_MAX_BYTES`] bytes; the caller lays them out back to back.
    pub fn send_gso(&mut self, buf: &[u8], seg: u16, dst: SocketAddr) -> GsoSend {
        let datagrams = buf.len().div_ceil(usize::from(seg).max(1)) as u64;
        let cmsg = GsoCmsg::new(seg);
        let addr = socket2::SockAddr::from(dst);
        let iov = [IoSlice::new(buf)];
        let msg = socket2::MsgHdr::new()
            .with_addr(&addr)
            .with_buffers(&iov)
            .with_control(&cmsg.0);
        let sock = socket2::SockRef::from(&self.sock);
        loop {
            return match sock.sendmsg(&msg, libc::MSG_DONTWAIT) {
                Ok(n) => GsoSend::Sent {
                    datagrams,
                    bytes: n as u64,
                },
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => GsoSend::WouldBlock,
                Err(e) => match e.raw_os_error() {
                    // EINVAL: SO_NO_CHECK, or a size the kernel will not cut
                    // (the caller's layout keeps within its limits); EIO:
                    // a path GSO cannot take (xfrm). ENOPROTOOPT: no UDP GSO.
                    Some(libc::EINVAL) | Some(libc::EIO) | Some(libc::ENOPROTOOPT) => {
                        GsoSend::Unsupported
                    }
                    Some(libc::ENOBUFS) => GsoSend::Dropped(PortDrop::TxQueueFull),
                    Some(libc::ENETUNREACH) | Some(libc::EHOSTUNREACH) => {
                        GsoSend::Dropped(PortDrop::TunnelNoRoute)
                    }
                    Some(libc::ECONNREFUSED) | Some(libc::EHOSTDOWN) => {
                        self.drain_errors();
                        GsoSend::Dropped(PortDrop::TunnelUnreachable)
                    }
                    _ => GsoSend::Dropped(PortDrop::TxError),
                },
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn recv_some(
        s: &mut Socket,
        pool: &mut PacketPool,
        b: &mut Batch,
        info: &mut [RecvInfo],
    ) -> usize {
        for _ in 0..200 {
            let n = s.recv_batch(pool, b, info);
            if n > 0 {
                return n;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        0
    }

    #[test]
    fn batch_roundtrip_with_addresses_and_big_datagram() {
        let mut a = Socket::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let mut b = Socket::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let mut pool = PacketPool::new(2048);
        let mut out = Batch::new();
        let big: Vec<u8> = (0..9000u32).map(|i| (i % 253) as u8).collect();
        for d in [&b"geneve-1"[..], &b"geneve-2"[..], &big[..]] {
            let _ = out.push(pool.get_from(d));
        }
        let dsts = [b.local_addr(); 3];
        let rep = a.send_batch(&mut out, &dsts, &mut pool);
        assert_eq!((rep.sent, rep.left), (3, 0));
        assert!(out.is_empty());

        let mut inb = Batch::new();
        let mut info = [RecvInfo::default(); 32];
        let mut got = 0;
        while got < 3 {
            let n = recv_some(&mut b, &mut pool, &mut inb, &mut info[got..]);
            assert!(n > 0, "datagrams arrive");
            got += n;
        }
        assert_eq!(inb.as_slice()[1].data(), b"geneve-2");
        assert_eq!(
            inb.as_slice()[2].data(),
            &big[..],
            "9000-byte datagram spills into the overflow area"
        );
        assert_eq!(info[0].src, Some(a.local_addr()));
        assert_eq!(info[0].dst, Some("127.0.0.1".parse().unwrap()));
        assert_eq!((info[0].tos, info[0].ttl), (0, 64));
    }

    #[test]
    fn gso_send_arrives_as_equal_datagrams_and_needs_the_checksum() {
        let mut a = Socket::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let sink = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        sink.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let to = sink.local_addr().unwrap();
        let buf: Vec<u8> = (0..2500u32).map(|i| (i % 251) as u8).collect();
        assert_eq!(
            a.send_gso(&buf, 1000, to),
            GsoSend::Sent {
                datagrams: 3,
                bytes: 2500
            }
        );
        let mut got = Vec::new();
        let mut b = [0u8; 4096];
        for _ in 0..3 {
            let n = sink.recv(&mut b).expect("a datagram per segment");
            got.extend_from_slice(&b[..n]);
            assert!(n == 1000 || (n == 500 && got.len() == 2500), "{n}");
        }
        assert_eq!(got, buf, "cut in order, nothing lost");
        // A socket sending without the UDP checksum cannot send UDP GSO:
        // the caller falls back to one datagram per segment.
        let mut nocheck = Socket::bind_with(
            "127.0.0.1:0".parse().unwrap(),
            Options {
                no_check: true,
                ..Options::default()
            },
        )
        .unwrap();
        assert_eq!(nocheck.send_gso(&buf, 1000, to), GsoSend::Unsupported);
    }

    #[test]
    fn unreachable_peer_is_counted_not_fatal() {
        let mut a = Socket::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let closed = Socket::bind("127.0.0.1:0".parse().unwrap())
            .unwrap()
            .local_addr();
        let mut pool = PacketPool::new(2048);
        let mut b = Batch::new();
        let mut info = [RecvInfo::default(); 32];
        for round in 0..3 {
            let mut out = Batch::new();
            let _ = out.push(pool.get_from(b"to nowhere"));
            let rep = a.send_batch(&mut out, &[closed], &mut pool);
            assert_eq!(rep.sent + rep.unreachable, 1, "round {round}: {rep:?}");
            // Receiving surfaces the ICMP error and drains the queue.
            for _ in 0..100 {
                a.recv_batch(&mut pool, &mut b, &mut info);
                if a.icmp().total() > round {
                    break;
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        assert!(a.icmp().port_unreachable >= 2, "{:?}", a.icmp());
        assert_eq!(a.icmp().last.map(|e| e.dst), Some(Some(closed)));
        assert!(b.is_empty());
    }
}
