//! `type=system`: an existing interface (a veth, a qemu/libvirt tap, a NIC)
//! attached through an AF_PACKET socket.
//!
//! The interface lives in our netns and belongs to someone else: we never
//! create, configure or remove it. We bind a raw socket to it by ifindex and
//! move frames in batches (recvmmsg / sendmmsg). What makes it a switch port
//! (see [`crate::port::sys::packet`]):
//!
//! * VLAN tags the kernel stripped on receive come back from PACKET_AUXDATA
//!   and are put back in the frame, so a tagged frame stays tagged;
//! * our own transmissions are not looped back (PACKET_IGNORE_OUTGOING, and
//!   `PACKET_OUTGOING` frames are discarded for older kernels);
//! * PACKET_VNET_HDR describes partial checksums and GSO super-packets sent
//!   by a local stack (the far end of a veth), exactly like a vnet_hdr TAP,
//!   and lets us hand super-packets back to the kernel, which segments them
//!   if the device cannot.
//!
//! Life: the socket reports ENETDOWN when the interface goes down or is
//! deleted; `housekeeping()` also checks the name's ifindex once a second.
//! Down is counted and logged once; recovery (the interface is up again, or
//! was recreated with a new ifindex: new socket) is retried with backoff.
//! Socket-level drops (receive buffer full, PACKET_STATISTICS) are added to
//! `rx_dropped`.
//!
//! Queues: another datapath worker gets a socket of its own on the same
//! interface ([`Port::open_queue`]); the port's sockets form a
//! PACKET_FANOUT group in hash mode, so the kernel hands each frame to one
//! of them, a flow always to the same one. Each socket lives and recovers
//! on its own, and rejoins the group when it is opened again (after
//! closing its dead socket first: a group holds only sockets of one
//! interface).

use super::link::{Counters, Device, LinkLife};
use super::sys::packet::{PacketOptions, PacketRecv, PacketSocket, PACKET_OUTGOING};
use super::sys::{self, netdev, MAX_MSGS};
use super::tap::MAX_FRAME;
use super::vnet::{self, VnetHdr};
use super::{parse_bool, Error, LinkState, Port, PortDrop, PortStats};
use crate::packet::{Batch, PacketBuf, PacketPool};
use std::io::{self, IoSlice, IoSliceMut};
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Instant;

/// No fanout group (a port with one socket).
const NO_GROUP: u32 = u32::MAX;

/// Fanout group ids are per namespace: each port picks its own, starting
/// from one derived from our pid so two daemons in one namespace rarely
/// try the same id (a clash is refused and the next id tried).
static NEXT_GROUP: AtomicU32 = AtomicU32::new(0);

fn next_group() -> u16 {
    let n = NEXT_GROUP.fetch_add(1, Ordering::Relaxed);
    (std::process::id().wrapping_mul(31).wrapping_add(n) & 0xffff) as u16
}

/// How to attach a system port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AfPacketConfig {
    /// Interface name.
    pub name: String,
    /// Receive frames for any MAC (default on: a switch port must).
    pub promisc: bool,
    /// Start down instead of failing when the interface does not exist yet
    /// (a restored configuration whose VM is not started).
    pub allow_missing: bool,
}

impl AfPacketConfig {
    /// Defaults for interface `name`.
    pub fn new(name: &str) -> AfPacketConfig {
        AfPacketConfig {
            name: name.to_string(),
            promisc: true,
            allow_missing: false,
        }
    }

    /// From `add-port ... key=value` options: `promisc=true|false`.
    pub fn from_options(name: &str, opts: &[(&str, &str)]) -> Result<AfPacketConfig, Error> {
        sys::check_ifname(name).map_err(|e| Error::config(name, e.to_string()))?;
        let mut c = AfPacketConfig::new(name);
        for &(k, v) in opts {
            match k {
                "promisc" => c.promisc = parse_bool(name, k, v)?,
                _ => {
                    return Err(Error::config(
                        name,
                        format!("unknown option {k:?} for a system port"),
                    ))
                }
            }
        }
        Ok(c)
    }
}

/// A system port.
#[derive(Debug)]
pub struct AfPacketPort {
    cfg: AfPacketConfig,
    sock: Device<PacketSocket>,
    ifindex: u32,
    mtu: u32,
    life: LinkLife,
    c: Counters,
    rx_bufs: Vec<PacketBuf>,
    rx_hdrs: [[u8; vnet::LEN]; MAX_MSGS],
    tx_hdrs: [[u8; vnet::LEN]; MAX_MSGS],
    overflow: Vec<Box<[u8]>>,
    /// The PACKET_FANOUT group of the port's sockets ([`NO_GROUP`]: none
    /// yet); set by the first [`Port::open_queue`].
    fanout: AtomicU32,
}

fn open_socket(cfg: &AfPacketConfig, fanout: Option<u16>) -> io::Result<(PacketSocket, u32, u32)> {
    let ifindex = netdev::ifindex(&cfg.name)?;
    let sock = PacketSocket::open(
        ifindex,
        PacketOptions {
            promisc: cfg.promisc,
            fanout,
            ..PacketOptions::default()
        },
    )?;
    let mtu = netdev::mtu(&cfg.name)?;
    Ok((sock, ifindex, mtu))
}

fn is_up(name: &str) -> io::Result<bool> {
    Ok(netdev::flags(name)? & libc::IFF_UP as u32 != 0)
}

impl AfPacketPort {
    /// Attaches to interface `cfg.name`. Fails when it does not exist,
    /// unless `allow_missing` (then the port starts down and attaches when
    /// the interface appears).
    pub fn open(cfg: AfPacketConfig) -> Result<AfPacketPort, Error> {
        let mut life = LinkLife::new(&cfg.name);
        let (sock, ifindex, mtu) = match open_socket(&cfg, None) {
            Ok((s, i, m)) => {
                tracing::info!(port = %cfg.name, ifindex = i, mtu = m, "attached to interface");
                (Some(s), i, m)
            }
            Err(e) if cfg.allow_missing && netdev::is_no_device(&e) => {
                life.down(format_args!("interface missing ({e})"));
                (None, 0, 1500)
            }
            Err(e) => return Err(Error::io("attach system port", &cfg.name, e)),
        };
        Ok(Self::with_socket(cfg, sock, ifindex, mtu, life))
    }

    fn with_socket(
        cfg: AfPacketConfig,
        sock: Option<PacketSocket>,
        ifindex: u32,
        mtu: u32,
        life: LinkLife,
    ) -> AfPacketPort {
        AfPacketPort {
            sock: Device::new(sock),
            ifindex,
            mtu,
            life,
            fanout: AtomicU32::new(NO_GROUP),
            c: Counters::default(),
            rx_bufs: Vec::with_capacity(MAX_MSGS),
            rx_hdrs: [[0; vnet::LEN]; MAX_MSGS],
            tx_hdrs: [[0; vnet::LEN]; MAX_MSGS],
            overflow: (0..MAX_MSGS)
                .map(|_| vec![0u8; MAX_FRAME].into_boxed_slice())
                .collect(),
            cfg,
        }
    }

    /// The port's fanout group, if it has one.
    fn group(&self) -> Option<u16> {
        match self.fanout.load(Ordering::Relaxed) {
            NO_GROUP => None,
            g => Some(g as u16),
        }
    }

    /// The port's fanout group, made (with this port's socket as its first
    /// member) when there is none yet.
    fn ensure_group(&self, s: &PacketSocket) -> io::Result<u16> {
        if let Some(g) = self.group() {
            return Ok(g);
        }
        let mut last = None;
        for _ in 0..16 {
            let g = next_group();
            match sys::packet::join_fanout(s.as_fd(), g) {
                Ok(()) => {
                    self.fanout.store(u32::from(g), Ordering::Relaxed);
                    return Ok(g);
                }
                // Another socket's group of that id: try the next id.
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| io::Error::other("no free fanout group")))
    }

    /// The interface index we are bound to (0 when never attached).
    pub fn ifindex(&self) -> u32 {
        self.ifindex
    }

    /// One drop counter.
    pub fn drop_count(&self, why: PortDrop) -> u64 {
        self.c.drop_count(why)
    }

    fn lose(&mut self, why: impl std::fmt::Display, keep_socket: bool) {
        if !keep_socket {
            self.sock.lose();
        }
        self.life.down(why);
    }

    /// The up-port check: the name still has our ifindex and is up.
    fn probe(&mut self) {
        if let Some(s) = self.sock.get() {
            if let Ok(st) = s.take_stats() {
                self.c.stats.rx_dropped += u64::from(st.drops);
            }
        }
        match netdev::ifindex(&self.cfg.name) {
            Ok(i) if i == self.ifindex => match is_up(&self.cfg.name) {
                Ok(true) => {
                    if let Ok(m) = netdev::mtu(&self.cfg.name) {
                        self.mtu = m;
                    }
                }
                Ok(false) => self.lose("interface administratively down", true),
                Err(e) => self.lose(format_args!("interface gone ({e})"), false),
            },
            Ok(_) => self.lose("interface replaced (new ifindex)", false),
            Err(e) => self.lose(format_args!("interface gone ({e})"), false),
        }
    }

    fn recover(&mut self) -> io::Result<&'static str> {
        let idx = netdev::ifindex(&self.cfg.name)?;
        if !is_up(&self.cfg.name)? {
            return Err(io::Error::new(
                io::ErrorKind::NotConnected,
                "interface is down",
            ));
        }
        if let Some(s) = self.sock.get().filter(|_| idx == self.ifindex) {
            // Same device back up: the kernel re-hooked our socket itself;
            // only the ENETDOWN it left pending is to be forgotten.
            let _ = s.take_error();
            self.mtu = netdev::mtu(&self.cfg.name)?;
            return Ok("interface up again");
        }
        let group = self.group();
        if group.is_some() {
            // The dead socket leaves the group now: a group holds sockets
            // of one interface, and the new one may be a new interface.
            self.sock = Device::new(None);
        }
        let (s, i, m) = open_socket(&self.cfg, group)?;
        self.sock.replace(s);
        self.ifindex = i;
        self.mtu = m;
        Ok("re-attached to interface")
    }

    fn recv_error(&mut self, e: io::Error) {
        if sys::packet::is_link_error(&e) {
            self.lose(format_args!("receive: {e}"), true);
        } else if e.kind() != io::ErrorKind::WouldBlock && e.kind() != io::ErrorKind::Interrupted {
            self.c.stats.rx_errors += 1;
        }
    }
}

impl Port for AfPacketPort {
    fn name(&self) -> &str {
        &self.cfg.name
    }

    fn kind(&self) -> &'static str {
        "system"
    }

    fn pads_short_frames(&self) -> bool {
        true
    }

    fn recv_batch(&mut self, pool: &mut PacketPool, batch: &mut Batch) -> Result<usize, Error> {
        let k = batch.free().min(MAX_MSGS);
        if k == 0 || !self.life.is_up() {
            return Ok(0);
        }
        let Some(sock) = self.sock.get() else {
            return Ok(0);
        };
        for _ in 0..k {
            self.rx_bufs.push(pool.get());
        }
        let mut infos = [PacketRecv::default(); MAX_MSGS];
        let res = {
            let mut it = self
                .rx_bufs
                .iter_mut()
                .zip(self.rx_hdrs.iter_mut())
                .zip(self.overflow.iter_mut());
            let mut iovs: [[IoSliceMut<'_>; 3]; MAX_MSGS] =
                std::array::from_fn(|_| match it.next() {
                    Some(((p, h), o)) => [
                        IoSliceMut::new(&mut h[..]),
                        IoSliceMut::new(p.rx_area()),
                        IoSliceMut::new(&mut o[..]),
                    ],
                    None => [
                        IoSliceMut::new(&mut []),
                        IoSliceMut::new(&mut []),
                        IoSliceMut::new(&mut []),
                    ],
                });
            sock.recv_batch(&mut iovs[..k], &mut infos[..k])
        };
        let got = match res {
            Ok(g) => g,
            Err(e) => {
                for p in self.rx_bufs.drain(..) {
                    pool.put(p);
                }
                self.recv_error(e);
                return Ok(0);
            }
        };
        let mut n = 0;
        for (i, mut p) in self.rx_bufs.drain(..).enumerate() {
            let info = infos[i];
            if i >= got || info.pkttype == PACKET_OUTGOING {
                pool.put(p);
                continue;
            }
            if info.truncated {
                self.c.rx_drop(PortDrop::RxTooLong, 1);
                pool.put(p);
                continue;
            }
            super::finish_rx(&mut p, info.len, &self.overflow[i]);
            let mut h = VnetHdr::parse(&self.rx_hdrs[i]);
            if let Some(v) = info.vlan {
                if p.len() < 12 {
                    self.c.rx_invalid();
                    pool.put(p);
                    continue;
                }
                let tag = p.insert_at(12, 4);
                tag[..2].copy_from_slice(&v.tpid.to_be_bytes());
                tag[2..].copy_from_slice(&v.tci.to_be_bytes());
                h.shift(4);
            }
            if h.apply_to(&mut p.meta).is_err() {
                self.c.rx_invalid();
                pool.put(p);
                continue;
            }
            self.c.rx(p.len());
            match batch.push(p) {
                Ok(()) => n += 1,
                Err(p) => pool.put(p),
            }
        }
        Ok(n)
    }

    fn send_batch(&mut self, batch: &mut Batch, pool: &mut PacketPool) -> Result<usize, Error> {
        let total = batch.len();
        if !self.life.is_up() || self.sock.get().is_none() {
            self.c.tx_drop(PortDrop::PortDown, total as u64);
            batch.recycle(pool);
            return Ok(total);
        }
        let mut done = 0;
        while done < total {
            let end = (done + MAX_MSGS).min(total);
            let mut m = done;
            {
                let pkts = batch.as_mut_slice();
                while m < end {
                    match vnet::header_for(&mut pkts[m]) {
                        Ok(h) => self.tx_hdrs[m - done] = h.emit(),
                        Err(_) => break,
                    }
                    m += 1;
                }
            }
            if m == done {
                // The first packet's offload metadata makes no sense.
                self.c.tx_error(1);
                done += 1;
                continue;
            }
            let Some(sock) = self.sock.get() else {
                break;
            };
            let pkts = &batch.as_slice()[done..m];
            let res = {
                let mut it = pkts.iter().zip(self.tx_hdrs.iter());
                let iovs: [[IoSlice<'_>; 2]; MAX_MSGS] = std::array::from_fn(|_| match it.next() {
                    Some((p, h)) => [IoSlice::new(h), IoSlice::new(p.data())],
                    None => [IoSlice::new(&[]), IoSlice::new(&[])],
                });
                sock.send_batch(&iovs[..m - done])
            };
            match res {
                Ok(k) => {
                    for p in &pkts[..k.min(pkts.len())] {
                        self.c.tx(p.len());
                    }
                    done += k;
                    if k == 0 {
                        break;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => {
                    self.c.tx_drop(PortDrop::TxQueueFull, 1);
                    done += 1;
                }
                Err(e) if sys::packet::is_link_error(&e) => {
                    let gone = netdev::ifindex(&self.cfg.name).ok() != Some(self.ifindex);
                    self.lose(format_args!("send: {e}"), !gone);
                    self.c.tx_drop(PortDrop::PortDown, (total - done) as u64);
                    done = total;
                }
                Err(_) => {
                    self.c.tx_error(1);
                    done += 1;
                }
            }
        }
        batch.consume_front(done, pool);
        Ok(done)
    }

    fn stats(&self) -> PortStats {
        self.c.stats.clone()
    }

    fn drops(&self) -> Vec<(PortDrop, u64)> {
        self.c.drops()
    }

    fn mtu(&self) -> u32 {
        self.mtu
    }

    fn link_state(&self) -> LinkState {
        self.life.state()
    }

    fn poll_fd(&self) -> Option<RawFd> {
        if self.life.is_up() {
            self.sock.get().map(|s| s.as_fd().as_raw_fd())
        } else {
            None
        }
    }

    fn link_downs(&self) -> u64 {
        self.life.downs()
    }

    fn open_queue(&self) -> Result<Option<Box<dyn Port>>, Error> {
        let Some(s) = self.sock.get() else {
            return Ok(None);
        };
        let err = |e| Error::io("open another socket", &self.cfg.name, e);
        let group = self.ensure_group(s).map_err(err)?;
        let (sock, ifindex, mtu) = open_socket(&self.cfg, Some(group)).map_err(err)?;
        let q = Self::with_socket(
            self.cfg.clone(),
            Some(sock),
            ifindex,
            mtu,
            LinkLife::quiet(&self.cfg.name),
        );
        q.fanout.store(u32::from(group), Ordering::Relaxed);
        Ok(Some(Box::new(q)))
    }

    fn housekeeping(&mut self) {
        let now = Instant::now();
        if self.life.probe_due(now) {
            self.probe();
            return;
        }
        if !self.life.retry_due(now) {
            return;
        }
        match self.recover() {
            Ok(how) => self.life.up(how),
            Err(e) => self.life.retry_failed(now, e),
        }
    }
}
