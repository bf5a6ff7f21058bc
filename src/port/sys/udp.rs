//! UDP sockets for tunnel ports: batched I/O with per-message addresses and
//! ICMP errors read from the socket's error queue.
//!
//! * Receive: recvmmsg; for each datagram the sender's address (`msg_name`)
//!   and, with IP_PKTINFO / IPV6_RECVPKTINFO, the local address it was sent
//!   to (the tunnel's `tun_dst` on decap).
//! * Send: sendmmsg with a destination per message, so one unconnected
//!   socket serves every remote endpoint; the kernel routes and resolves
//!   the next hop's MAC for us.
//! * Errors: with IP_RECVERR an ICMP error about a datagram we sent is
//!   queued on the socket (readable with MSG_ERRQUEUE: who was unreachable
//!   and why) and also reported once as a pending socket error, which the
//!   next recv/send returns. [`UdpSock::recv_error`] drains the queue so a
//!   level-triggered poll does not spin on EPOLLERR.

use super::mmsg::{self, CmsgBuf, MsgName, RecvOut, MAX_MSGS};
use super::{set_buf, setsockopt};
use std::io::{self, IoSlice, IoSliceMut};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::{AsFd, BorrowedFd};

const IPV6_RECVERR: libc::c_int = 25;
const IPV6_RECVPKTINFO: libc::c_int = 49;
const IPV6_PKTINFO: libc::c_int = 50;
const IPV6_RECVHOPLIMIT: libc::c_int = 51;
const IPV6_HOPLIMIT: libc::c_int = 52;
const IPV6_RECVTCLASS: libc::c_int = 66;
const IPV6_TCLASS: libc::c_int = 67;
// linux/udp.h; not exported by libc for every Linux target.
const UDP_GRO: libc::c_int = 104;
// asm-generic/socket.h; not exported by libc for every Linux target.
const SO_NO_CHECK: libc::c_int = 11;

/// Options of [`UdpSock::bind`].
#[derive(Debug, Clone, Copy)]
pub struct UdpOptions {
    /// Report the local destination address of each datagram.
    pub pktinfo: bool,
    /// Queue ICMP errors on the socket (IP_RECVERR).
    pub recverr: bool,
    /// Report each datagram's TOS and TTL (IP_RECVTOS / IP_RECVTTL, or the
    /// IPv6 traffic class and hop limit).
    pub tos_ttl: bool,
    /// SO_RCVBUF(FORCE) in bytes; 0 leaves the default.
    pub rcvbuf: usize,
    /// SO_SNDBUF(FORCE) in bytes; 0 leaves the default.
    pub sndbuf: usize,
    /// IP_MTU_DISCOVER value (`libc::IP_PMTUDISC_*`); `None` leaves the
    /// kernel default.
    pub pmtudisc: Option<i32>,
    /// TTL / hop limit of what we send; `None` leaves the kernel default.
    pub ttl: Option<u8>,
    /// TOS / traffic class of what we send; `None` leaves 0.
    pub tos: Option<u8>,
    /// Send with a zero UDP checksum (SO_NO_CHECK, UDP_NO_CHECK6_TX): what
    /// tunnels do by default, as the inner frame carries its own sums.
    pub no_check: bool,
    /// SO_REUSEPORT before binding: several sockets of ours share the
    /// address, the kernel spreading datagrams over them by their
    /// addresses and ports (a flow to one socket).
    pub reuseport: bool,
    /// UDP_GRO: the kernel may hand over several equal datagrams of one
    /// flow as one (a sender's UDP GSO send arrives whole); each
    /// [`UdpRecv::gso_size`] says where to cut.
    pub gro: bool,
}

impl Default for UdpOptions {
    fn default() -> Self {
        UdpOptions {
            pktinfo: true,
            recverr: true,
            tos_ttl: true,
            rcvbuf: 4 << 20,
            sndbuf: 4 << 20,
            pmtudisc: None,
            ttl: None,
            tos: None,
            no_check: false,
            reuseport: false,
            gro: false,
        }
    }
}

/// What one received datagram looked like.
#[derive(Debug, Clone, Copy, Default)]
pub struct UdpRecv {
    /// Datagram length (may exceed the buffers when `truncated`).
    pub len: usize,
    /// The datagram did not fit the buffers.
    pub truncated: bool,
    /// Sender's address and port.
    pub src: Option<SocketAddr>,
    /// Local address the datagram was sent to (needs `pktinfo`).
    pub dst: Option<IpAddr>,
    /// Outer TOS / traffic class (needs `tos_ttl`).
    pub tos: Option<u8>,
    /// Outer TTL / hop limit (needs `tos_ttl`).
    pub ttl: Option<u8>,
    /// With `gro`: the datagram stands for several of this size (the last
    /// may be shorter), back to back.
    pub gso_size: Option<u16>,
}

/// An ICMP (or local) error about a datagram we sent, from the error queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IcmpError {
    /// errno equivalent (ECONNREFUSED for port unreachable, EHOSTUNREACH,
    /// ENETUNREACH, EMSGSIZE for "fragmentation needed", ...).
    pub errno: i32,
    /// SO_EE_ORIGIN_* (ICMP, ICMP6, LOCAL).
    pub origin: u8,
    /// ICMP type.
    pub icmp_type: u8,
    /// ICMP code.
    pub icmp_code: u8,
    /// Extra info: the next-hop MTU for "fragmentation needed".
    pub info: u32,
    /// Where the failed datagram was going.
    pub dst: Option<SocketAddr>,
    /// Who reported the error (the router or host that sent the ICMP).
    pub offender: Option<IpAddr>,
}

/// A non-blocking UDP socket.
#[derive(Debug)]
pub struct UdpSock {
    sock: socket2::Socket,
}

/// Encodes `addr` as a `sockaddr_in` / `sockaddr_in6`.
pub fn encode_addr(addr: &SocketAddr) -> MsgName {
    let mut n = MsgName::default();
    match addr {
        SocketAddr::V4(a) => {
            n.bytes[0..2].copy_from_slice(&(libc::AF_INET as u16).to_ne_bytes());
            n.bytes[2..4].copy_from_slice(&a.port().to_be_bytes());
            n.bytes[4..8].copy_from_slice(&a.ip().octets());
            n.len = 16;
        }
        SocketAddr::V6(a) => {
            n.bytes[0..2].copy_from_slice(&(libc::AF_INET6 as u16).to_ne_bytes());
            n.bytes[2..4].copy_from_slice(&a.port().to_be_bytes());
            n.bytes[4..8].copy_from_slice(&a.flowinfo().to_be_bytes());
            n.bytes[8..24].copy_from_slice(&a.ip().octets());
            n.bytes[24..28].copy_from_slice(&a.scope_id().to_ne_bytes());
            n.len = 28;
        }
    }
    n
}

/// Decodes a `sockaddr_in` / `sockaddr_in6`; `None` for anything else.
pub fn decode_addr(b: &[u8]) -> Option<SocketAddr> {
    let family = i32::from(u16::from_ne_bytes([*b.first()?, *b.get(1)?]));
    let port = u16::from_be_bytes([*b.get(2)?, *b.get(3)?]);
    if family == libc::AF_INET {
        let ip: [u8; 4] = b.get(4..8)?.try_into().ok()?;
        Some(SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::from(ip), port)))
    } else if family == libc::AF_INET6 {
        let flow = u32::from_be_bytes(b.get(4..8)?.try_into().ok()?);
        let ip: [u8; 16] = b.get(8..24)?.try_into().ok()?;
        let scope = u32::from_ne_bytes(b.get(24..28)?.try_into().ok()?);
        Some(SocketAddr::V6(SocketAddrV6::new(
            Ipv6Addr::from(ip),
            port,
            flow,
            scope,
        )))
    } else {
        None
    }
}

impl UdpSock {
    /// A non-blocking UDP socket bound to `local` with `opts`.
    pub fn bind(local: SocketAddr, opts: UdpOptions) -> io::Result<UdpSock> {
        let sock = socket2::Socket::new(
            socket2::Domain::for_address(local),
            socket2::Type::DGRAM.nonblocking(),
            Some(socket2::Protocol::UDP),
        )?;
        let fd = sock.as_fd();
        let one: libc::c_int = 1;
        let v6 = local.is_ipv6();
        if opts.reuseport {
            setsockopt(fd, libc::SOL_SOCKET, libc::SO_REUSEPORT, &one)?;
        }
        if opts.gro {
            setsockopt(fd, libc::SOL_UDP, UDP_GRO, &one)?;
        }
        if opts.recverr {
            if v6 {
                setsockopt(fd, libc::IPPROTO_IPV6, IPV6_RECVERR, &one)?;
            } else {
                setsockopt(fd, libc::IPPROTO_IP, libc::IP_RECVERR, &one)?;
            }
        }
        if opts.pktinfo {
            if v6 {
                setsockopt(fd, libc::IPPROTO_IPV6, IPV6_RECVPKTINFO, &one)?;
            } else {
                setsockopt(fd, libc::IPPROTO_IP, libc::IP_PKTINFO, &one)?;
            }
        }
        if opts.tos_ttl {
            if v6 {
                setsockopt(fd, libc::IPPROTO_IPV6, IPV6_RECVTCLASS, &one)?;
                setsockopt(fd, libc::IPPROTO_IPV6, IPV6_RECVHOPLIMIT, &one)?;
            } else {
                setsockopt(fd, libc::IPPROTO_IP, libc::IP_RECVTOS, &one)?;
                setsockopt(fd, libc::IPPROTO_IP, libc::IP_RECVTTL, &one)?;
            }
        }
        if let Some(p) = opts.pmtudisc {
            if v6 {
                setsockopt(fd, libc::IPPROTO_IPV6, libc::IPV6_MTU_DISCOVER, &p)?;
            } else {
                setsockopt(fd, libc::IPPROTO_IP, libc::IP_MTU_DISCOVER, &p)?;
            }
        }
        if let Some(t) = opts.ttl {
            let t = libc::c_int::from(t);
            if v6 {
                setsockopt(fd, libc::IPPROTO_IPV6, libc::IPV6_UNICAST_HOPS, &t)?;
            } else {
                setsockopt(fd, libc::IPPROTO_IP, libc::IP_TTL, &t)?;
            }
        }
        if let Some(t) = opts.tos {
            let t = libc::c_int::from(t);
            if v6 {
                setsockopt(fd, libc::IPPROTO_IPV6, IPV6_TCLASS, &t)?;
            } else {
                setsockopt(fd, libc::IPPROTO_IP, libc::IP_TOS, &t)?;
            }
        }
        if opts.no_check {
            if v6 {
                setsockopt(fd, libc::IPPROTO_UDP, libc::UDP_NO_CHECK6_TX, &one)?;
            } else {
                setsockopt(fd, libc::SOL_SOCKET, SO_NO_CHECK, &one)?;
            }
        }
        set_buf(fd, libc::SO_RCVBUFFORCE, libc::SO_RCVBUF, opts.rcvbuf)?;
        set_buf(fd, libc::SO_SNDBUFFORCE, libc::SO_SNDBUF, opts.sndbuf)?;
        sock.bind(&local.into())?;
        Ok(UdpSock { sock })
    }

    /// Takes over a bound UDP socket handed over by another process (an
    /// upgrade), with the options it was set up with; made non-blocking.
    pub fn from_owned(fd: std::os::fd::OwnedFd) -> io::Result<UdpSock> {
        let sock = socket2::Socket::from(fd);
        if sock.r#type()? != socket2::Type::DGRAM {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "handed-over fd is not a datagram socket",
            ));
        }
        sock.set_nonblocking(true)?;
        let s = UdpSock { sock };
        s.local_addr()?;
        Ok(s)
    }

    /// The bound address (with the port the kernel chose for port 0).
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.sock
            .local_addr()?
            .as_socket()
            .ok_or_else(|| io::Error::from(io::ErrorKind::InvalidData))
    }

    /// Receives up to `iovs.len()` datagrams (at most [`MAX_MSGS`]), each
    /// scattered over its N buffers.
    pub fn recv_batch<const N: usize>(
        &self,
        iovs: &mut [[IoSliceMut<'_>; N]],
        out: &mut [UdpRecv],
    ) -> io::Result<usize> {
        let mut names = [MsgName::default(); MAX_MSGS];
        let mut ctrls = [CmsgBuf::default(); MAX_MSGS];
        let mut raw = [RecvOut::default(); MAX_MSGS];
        let n = iovs.len().min(out.len()).min(MAX_MSGS);
        let got = mmsg::recvmmsg(
            self.sock.as_fd(),
            &mut iovs[..n],
            Some(&mut names[..n]),
            Some(&mut ctrls[..n]),
            &mut raw[..n],
            libc::MSG_TRUNC,
        )?;
        for i in 0..got {
            let nl = (names[i].len as usize).min(names[i].bytes.len());
            let mut dst = None;
            let (mut tos, mut ttl) = (None, None);
            let mut gso_size = None;
            // IP_TOS arrives as one byte, IP_TTL and the IPv6 ones as ints.
            let first = |d: &[u8]| d.first().copied();
            let int = |d: &[u8]| {
                d.get(..4)
                    .map(|b| i32::from_ne_bytes([b[0], b[1], b[2], b[3]]) as u8)
            };
            for c in ctrls[i].iter() {
                match (c.level, c.ty) {
                    (libc::IPPROTO_IP, libc::IP_TOS) => tos = first(c.data),
                    (libc::IPPROTO_IP, libc::IP_TTL) => ttl = int(c.data),
                    (libc::IPPROTO_IPV6, IPV6_TCLASS) => tos = int(c.data),
                    (libc::IPPROTO_IPV6, IPV6_HOPLIMIT) => ttl = int(c.data),
                    (libc::SOL_UDP, UDP_GRO) => {
                        gso_size = c
                            .data
                            .get(..4)
                            .map(|b| i32::from_ne_bytes([b[0], b[1], b[2], b[3]]) as u16)
                    }
                    // struct in_pktinfo: ifindex, spec_dst, then ipi_addr.
                    (libc::IPPROTO_IP, libc::IP_PKTINFO) => {
                        if let Some(a) = c.data.get(8..12).and_then(|a| <[u8; 4]>::try_from(a).ok())
                        {
                            dst = Some(IpAddr::V4(Ipv4Addr::from(a)));
                        }
                    }
                    // struct in6_pktinfo: the address first.
                    (libc::IPPROTO_IPV6, IPV6_PKTINFO) => {
                        if let Some(a) = c.data.get(..16).and_then(|a| <[u8; 16]>::try_from(a).ok())
                        {
                            dst = Some(IpAddr::V6(Ipv6Addr::from(a)));
                        }
                    }
                    _ => {}
                }
            }
            out[i] = UdpRecv {
                len: raw[i].len,
                truncated: raw[i].flags & libc::MSG_TRUNC != 0,
                src: decode_addr(&names[i].bytes[..nl]),
                dst,
                tos,
                ttl,
                gso_size,
            };
        }
        Ok(got)
    }

    /// Sends datagram `iovs[i]` (gathered over its N buffers) to `dsts[i]`.
    /// Returns how many the kernel took; an error only when the first one
    /// failed.
    pub fn send_batch<const N: usize>(
        &self,
        iovs: &[[IoSlice<'_>; N]],
        dsts: &[SocketAddr],
    ) -> io::Result<usize> {
        let mut names = [MsgName::default(); MAX_MSGS];
        let n = iovs.len().min(dsts.len()).min(MAX_MSGS);
        for i in 0..n {
            names[i] = encode_addr(&dsts[i]);
        }
        mmsg::sendmmsg(self.sock.as_fd(), &iovs[..n], Some(&names[..n]), 0)
    }

    /// Reads one entry of the error queue; `Ok(None)` when it is empty.
    pub fn recv_error(&self) -> io::Result<Option<IcmpError>> {
        let mut buf = [0u8; 64];
        let mut name = MsgName::default();
        let mut ctrl = CmsgBuf::default();
        // The payload (the head of the failed datagram) is not needed:
        // the error and its destination come in the name and control data.
        match mmsg::recvmsg_one(
            self.sock.as_fd(),
            &mut buf,
            &mut name,
            &mut ctrl,
            libc::MSG_ERRQUEUE,
        ) {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(None),
            Err(e) => return Err(e),
        }
        let nl = (name.len as usize).min(name.bytes.len());
        let mut err = IcmpError {
            errno: 0,
            origin: 0,
            icmp_type: 0,
            icmp_code: 0,
            info: 0,
            dst: decode_addr(&name.bytes[..nl]),
            offender: None,
        };
        for c in ctrl.iter() {
            let is_err = (c.level == libc::IPPROTO_IP && c.ty == libc::IP_RECVERR)
                || (c.level == libc::IPPROTO_IPV6 && c.ty == IPV6_RECVERR);
            if !is_err || c.data.len() < 16 {
                continue;
            }
            let d = c.data;
            // struct sock_extended_err, then the offender's sockaddr.
            err.errno = u32::from_ne_bytes([d[0], d[1], d[2], d[3]]) as i32;
            err.origin = d[4];
            err.icmp_type = d[5];
            err.icmp_code = d[6];
            err.info = u32::from_ne_bytes([d[8], d[9], d[10], d[11]]);
            err.offender = decode_addr(&d[16..]).map(|a| a.ip());
        }
        Ok(Some(err))
    }
}

impl AsFd for UdpSock {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.sock.as_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addr_roundtrip() {
        for a in ["10.1.2.3:6081", "[fe80::1%3]:6081", "[2001:db8::5]:1"] {
            let a: SocketAddr = a.parse().unwrap();
            let n = encode_addr(&a);
            assert_eq!(decode_addr(&n.bytes[..n.len as usize]), Some(a));
        }
        assert_eq!(decode_addr(&[0, 0]), None);
        assert_eq!(decode_addr(&[]), None);
    }

    #[test]
    fn loopback_batch_with_pktinfo_and_icmp_error() {
        let a = UdpSock::bind("127.0.0.1:0".parse().unwrap(), UdpOptions::default()).unwrap();
        let b = UdpSock::bind("127.0.0.1:0".parse().unwrap(), UdpOptions::default()).unwrap();
        let b_addr = b.local_addr().unwrap();
        let msgs: [&[u8]; 3] = [b"one", b"two!", b"three"];
        let iovs: Vec<[IoSlice<'_>; 1]> = msgs.iter().map(|m| [IoSlice::new(m)]).collect();
        let dsts = vec![b_addr; 3];
        assert_eq!(a.send_batch(&iovs, &dsts).unwrap(), 3);

        let mut bufs = [[0u8; 16]; 4];
        let mut out = [UdpRecv::default(); 4];
        let mut got = 0;
        for _ in 0..100 {
            let mut iovs: Vec<[IoSliceMut<'_>; 1]> =
                bufs.iter_mut().map(|b| [IoSliceMut::new(b)]).collect();
            match b.recv_batch(&mut iovs, &mut out) {
                Ok(n) => {
                    got = n;
                    break;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    std::thread::sleep(std::time::Duration::from_millis(5))
                }
                Err(e) => panic!("{e}"),
            }
        }
        assert_eq!(got, 3);
        assert_eq!(&bufs[1][..out[1].len], b"two!");
        assert_eq!(out[2].src, Some(a.local_addr().unwrap()));
        assert_eq!(out[0].dst, Some(IpAddr::V4(Ipv4Addr::LOCALHOST)));
        assert_eq!(out[0].ttl, Some(64), "loopback default TTL");
        assert_eq!(out[0].tos, Some(0));

        // A datagram to a closed port comes back as ICMP port unreachable on
        // the error queue, with the destination it was going to.
        let closed = {
            let c = UdpSock::bind("127.0.0.1:0".parse().unwrap(), UdpOptions::default()).unwrap();
            c.local_addr().unwrap()
        };
        assert_eq!(a.send_batch(&[[IoSlice::new(b"x")]], &[closed]).unwrap(), 1);
        let mut e = None;
        for _ in 0..100 {
            if let Some(x) = a.recv_error().unwrap() {
                e = Some(x);
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        let e = e.expect("ICMP error queued");
        assert_eq!(e.errno, libc::ECONNREFUSED);
        assert_eq!(e.origin, libc::SO_EE_ORIGIN_ICMP);
        assert_eq!((e.icmp_type, e.icmp_code), (3, 3));
        assert_eq!(e.dst, Some(closed));
        assert_eq!(a.recv_error().unwrap(), None);
    }
}
