//! AF_PACKET sockets for `type=system` ports.
//!
//! One raw socket bound to one interface by ifindex, receiving every
//! protocol (ETH_P_ALL). Three socket options make it a switch port rather
//! than a sniffer:
//!
//! * PACKET_AUXDATA: the kernel strips the outer VLAN tag of received frames
//!   into the skb (hardware or veth VLAN acceleration) and reports it only in
//!   auxiliary data (`TP_STATUS_VLAN_VALID`, `tp_vlan_tci`, `tp_vlan_tpid`);
//!   the port puts it back so a tagged frame stays tagged.
//! * PACKET_IGNORE_OUTGOING: frames we (or the local stack) send out of the
//!   interface are not delivered back to us. `sll_pkttype ==
//!   PACKET_OUTGOING` is reported too, for kernels older than 4.20.
//! * PACKET_VNET_HDR: each frame carries a virtio_net_hdr, so partial
//!   checksums and GSO super-packets coming from a local stack (a veth
//!   peer) are described instead of arriving truncated or with a
//!   checksum that is only a pseudo-header sum; on transmit we may hand
//!   the kernel super-packets and partial checksums.
//!
//! Promiscuous mode is a socket membership (PACKET_MR_PROMISC), released by
//! the kernel when the socket closes: we never leave an interface flag
//! behind.

use super::mmsg::{self, CmsgBuf, MsgName, RecvOut, MAX_MSGS};
use super::{cvt, set_buf, setsockopt, tun::VNET_HDR_LEN};
use std::io::{self, IoSlice, IoSliceMut};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::time::Duration;

/// `sll_pkttype` of a frame the host itself sent.
pub const PACKET_OUTGOING: u8 = 4;

/// Options of [`PacketSocket::open`].
#[derive(Debug, Clone, Copy)]
pub struct PacketOptions {
    /// Receive frames for any destination MAC.
    pub promisc: bool,
    /// SO_RCVBUF(FORCE) in bytes; 0 leaves the default.
    pub rcvbuf: usize,
    /// SO_SNDBUF(FORCE) in bytes; 0 leaves the default.
    pub sndbuf: usize,
    /// Join this PACKET_FANOUT group (hash mode) right after binding: the
    /// sockets of a group share the interface's frames, a flow to one
    /// socket.
    pub fanout: Option<u16>,
    /// Ask for the time the kernel received each frame (SO_TIMESTAMPNS):
    /// [`PacketRecv::stamp`]. It makes the kernel stamp every frame it
    /// receives, on every interface, while the socket lives.
    pub timestamps: bool,
}

impl Default for PacketOptions {
    fn default() -> Self {
        PacketOptions {
            promisc: true,
            rcvbuf: 4 << 20,
            sndbuf: 4 << 20,
            fanout: None,
            timestamps: false,
        }
    }
}

/// A VLAN tag the kernel took out of a received frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StrippedVlan {
    /// TPID (0x8100, or 0x88a8 for 802.1ad).
    pub tpid: u16,
    /// TCI (PCP, DEI, VID).
    pub tci: u16,
}

/// What one received frame looked like.
#[derive(Debug, Clone, Copy, Default)]
pub struct PacketRecv {
    /// Frame length as the kernel had it (without the vnet header, without
    /// the stripped VLAN tag); may exceed the buffers when `truncated`.
    pub len: usize,
    /// The frame did not fit the buffers.
    pub truncated: bool,
    /// `sll_pkttype` (PACKET_HOST, PACKET_OUTGOING, ...).
    pub pkttype: u8,
    /// The VLAN tag to reinsert, if the kernel stripped one.
    pub vlan: Option<StrippedVlan>,
    /// When the kernel received the frame (`CLOCK_REALTIME`, since the
    /// Unix epoch), with [`PacketOptions::timestamps`].
    pub stamp: Option<Duration>,
}

/// Counters the kernel keeps for this socket (PACKET_STATISTICS); reading
/// them resets them.
#[derive(Debug, Clone, Copy, Default)]
pub struct PacketSocketStats {
    /// Frames that reached the socket.
    pub packets: u32,
    /// Frames dropped because the receive buffer was full.
    pub drops: u32,
}

/// PACKET_FANOUT, hash mode: `fd` (bound) joins group `group` of its
/// namespace, created by the first socket to join it. A group of another
/// mode, or bound to another interface, refuses (EINVAL).
pub fn join_fanout(fd: BorrowedFd<'_>, group: u16) -> io::Result<()> {
    let arg: libc::c_int =
        libc::c_int::from(group) | (libc::PACKET_FANOUT_HASH as libc::c_int) << 16;
    setsockopt(fd, libc::SOL_PACKET, libc::PACKET_FANOUT, &arg)
}

/// A `struct timespec` (two native `long`s) as a duration; `None` when
/// short or negative.
fn timespec(d: &[u8]) -> Option<Duration> {
    const W: usize = std::mem::size_of::<libc::c_long>();
    let sec = libc::c_long::from_ne_bytes(d.get(..W)?.try_into().ok()?);
    let nsec = libc::c_long::from_ne_bytes(d.get(W..2 * W)?.try_into().ok()?);
    let sec = u64::try_from(sec).ok()?;
    let nsec = u32::try_from(nsec).ok().filter(|n| *n < 1_000_000_000)?;
    Some(Duration::new(sec, nsec))
}

/// An AF_PACKET socket bound to one interface.
#[derive(Debug)]
pub struct PacketSocket {
    sock: socket2::Socket,
}

impl PacketSocket {
    /// Opens a socket bound to interface `ifindex`, with PACKET_AUXDATA,
    /// PACKET_VNET_HDR and PACKET_IGNORE_OUTGOING, and the given options.
    pub fn open(ifindex: u32, opts: PacketOptions) -> io::Result<PacketSocket> {
        // Protocol 0 until bind: a socket created with ETH_P_ALL would see
        // every interface's traffic in the meantime.
        let sock = socket2::Socket::new(
            socket2::Domain::PACKET,
            socket2::Type::RAW.nonblocking(),
            Some(socket2::Protocol::from(0)),
        )?;
        let fd = sock.as_fd();
        let one: libc::c_int = 1;
        setsockopt(fd, libc::SOL_PACKET, libc::PACKET_AUXDATA, &one)?;
        setsockopt(fd, libc::SOL_PACKET, libc::PACKET_VNET_HDR, &one)?;
        match setsockopt(fd, libc::SOL_PACKET, libc::PACKET_IGNORE_OUTGOING, &one) {
            // Before 4.20: rely on the sll_pkttype check instead.
            Err(e) if e.raw_os_error() == Some(libc::ENOPROTOOPT) => {}
            r => r?,
        }
        if opts.timestamps {
            setsockopt(fd, libc::SOL_SOCKET, libc::SO_TIMESTAMPNS, &one)?;
        }
        set_buf(fd, libc::SO_RCVBUFFORCE, libc::SO_RCVBUF, opts.rcvbuf)?;
        set_buf(fd, libc::SO_SNDBUFFORCE, libc::SO_SNDBUF, opts.sndbuf)?;
        let idx = libc::c_int::try_from(ifindex)
            .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        // SAFETY: sockaddr_ll is plain old data; all-zero is valid.
        let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_protocol = (libc::ETH_P_ALL as u16).to_be();
        sll.sll_ifindex = idx;
        // SAFETY: `sll` is a valid sockaddr_ll and we pass its exact size.
        cvt(unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&sll as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        })?;
        if let Some(group) = opts.fanout {
            // Joined before promiscuous mode: until then the socket sees
            // only what the interface itself receives.
            join_fanout(fd, group)?;
        }
        if opts.promisc {
            // SAFETY: packet_mreq is plain old data; all-zero is valid.
            let mut mr: libc::packet_mreq = unsafe { std::mem::zeroed() };
            mr.mr_ifindex = idx;
            mr.mr_type = libc::PACKET_MR_PROMISC as u16;
            setsockopt(fd, libc::SOL_PACKET, libc::PACKET_ADD_MEMBERSHIP, &mr)?;
        }
        Ok(PacketSocket { sock })
    }

    /// Receives up to `iovs.len()` frames (at most [`MAX_MSGS`]). Each
    /// message scatters over its three buffers: the vnet header (exactly
    /// [`VNET_HDR_LEN`] bytes), the packet buffer,
    /// and an overflow area for GSO super-packets larger than the packet
    /// buffer.
    pub fn recv_batch(
        &self,
        iovs: &mut [[IoSliceMut<'_>; 3]],
        out: &mut [PacketRecv],
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
            let mut r = PacketRecv {
                len: raw[i].len.saturating_sub(VNET_HDR_LEN),
                truncated: raw[i].flags & libc::MSG_TRUNC != 0,
                pkttype: names[i].bytes[10],
                vlan: None,
                stamp: None,
            };
            for c in ctrls[i].iter() {
                if c.level == libc::SOL_SOCKET && c.ty == libc::SCM_TIMESTAMPNS {
                    r.stamp = timespec(c.data);
                    continue;
                }
                if c.level == libc::SOL_PACKET && c.ty == libc::PACKET_AUXDATA && c.data.len() >= 20
                {
                    let d = c.data;
                    let status = u32::from_ne_bytes([d[0], d[1], d[2], d[3]]);
                    let tci = u16::from_ne_bytes([d[16], d[17]]);
                    let tpid = u16::from_ne_bytes([d[18], d[19]]);
                    if status & libc::TP_STATUS_VLAN_VALID != 0 {
                        let tpid = if status & libc::TP_STATUS_VLAN_TPID_VALID != 0 && tpid != 0 {
                            tpid
                        } else {
                            0x8100
                        };
                        r.vlan = Some(StrippedVlan { tpid, tci });
                    }
                }
            }
            out[i] = r;
        }
        Ok(got)
    }

    /// Sends frames out of the bound interface: `iovs[i]` is the vnet
    /// header and the frame. Returns how
    /// many the kernel took; an error only when the first one failed.
    pub fn send_batch(&self, iovs: &[[IoSlice<'_>; 2]]) -> io::Result<usize> {
        mmsg::sendmmsg(self.sock.as_fd(), iovs, None, 0)
    }

    /// Reads (and resets) the socket's packet/drop counters.
    pub fn take_stats(&self) -> io::Result<PacketSocketStats> {
        let mut st = [0u32; 2];
        let mut len = std::mem::size_of_val(&st) as libc::socklen_t;
        // SAFETY: PACKET_STATISTICS writes a `struct tpacket_stats` (two
        // u32) into `st`, bounded by `len`, which is its exact size.
        cvt(unsafe {
            libc::getsockopt(
                self.sock.as_raw_fd(),
                libc::SOL_PACKET,
                libc::PACKET_STATISTICS,
                st.as_mut_ptr().cast(),
                &mut len,
            )
        })?;
        Ok(PacketSocketStats {
            packets: st[0],
            drops: st[1],
        })
    }

    /// Takes the pending socket error (SO_ERROR), e.g. ENETDOWN after the
    /// interface went down.
    pub fn take_error(&self) -> io::Result<Option<io::Error>> {
        self.sock.take_error()
    }
}

impl AsFd for PacketSocket {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.sock.as_fd()
    }
}

/// True when `e` means the bound interface is down or gone.
pub fn is_link_error(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::ENETDOWN) | Some(libc::ENXIO) | Some(libc::ENODEV)
    )
}
