//! `type=tap`: a TAP device whose fd we hold, as qemu or vhost would.
//!
//! The kernel side of the TAP is what a VM (or, in tests, a network
//! namespace) sees. That side may be moved into another netns right after it
//! appears, so everything per-device happens at creation, on the fd:
//! IFF_TAP|IFF_NO_PI, optionally IFF_VNET_HDR with TUNSETVNETHDRSZ and
//! TUNSETOFFLOAD (checksum, TSO4, TSO6); the name-based calls (link up, MTU)
//! run once right after and tolerate "no such device" (already moved).
//! Afterwards only the fd is used, and the counters are our own.
//!
//! Receive reads frames until the batch is full or the fd runs dry (one
//! `read` per frame, the TAP interface has no batch read). With vnet_hdr a
//! frame may be a 64 KiB TSO super-packet: the read scatters over the pool
//! buffer and a per-port overflow area, and only super-packets pay a copy.
//! The virtio-net header becomes `meta.csum` / `meta.gso`.
//!
//! Transmit to a vnet_hdr TAP writes the header from the metadata, so
//! super-packets and partial checksums pass straight through. Without
//! vnet_hdr, super-packets are segmented and partial checksums completed in
//! software first ([`crate::packet::gso`]).
//!
//! Life: a deleted TAP (`ip link del`, VM destroyed, its netns removed)
//! shows as EBADFD on the fd (and EPOLLERR); the port goes down, counted and
//! logged once. `housekeeping()` retries with backoff: a TAP we created is
//! created again; a persistent TAP someone else made is re-attached when it
//! reappears in our netns. Dropping the port closes the fd, which removes a
//! TAP we created (we never set IFF_PERSIST) and leaves anyone else's.
//!
//! Not thread-safe by itself: a port lives in one datapath thread.

use super::link::{Counters, Device, LinkLife};
use super::sys::{self, netdev, tun};
use super::vnet::{self, VnetHdr};
use super::{parse_bool, Error, LinkState, Port, PortDrop, PortStats};
use crate::packet::gso::{self, Segmenter};
use crate::packet::{Batch, Gso, PacketBuf, PacketPool};
use std::io::{self, IoSlice, IoSliceMut, Read, Write};
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::time::Instant;

/// Largest frame a TAP can hand us: a 64 KiB GSO super-packet, or a frame
/// at the largest MTU, plus Ethernet and VLAN headers.
pub const MAX_FRAME: usize = 65536 + 14 + 8;

/// Offloads announced on a vnet_hdr TAP.
const OFFLOADS: u32 = tun::TUN_F_CSUM | tun::TUN_F_TSO4 | tun::TUN_F_TSO6;

/// How to open a TAP port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TapConfig {
    /// Device name (at most 15 bytes).
    pub name: String,
    /// Exchange a virtio-net header with each frame, with checksum and TSO
    /// offloads (default on: that is what makes TCP fast).
    pub vnet_hdr: bool,
    /// MTU to set at creation (`mtu_request`); `None` keeps the device's.
    pub mtu_request: Option<u32>,
}

impl TapConfig {
    /// Defaults for device `name`.
    pub fn new(name: &str) -> TapConfig {
        TapConfig {
            name: name.to_string(),
            vnet_hdr: true,
            mtu_request: None,
        }
    }

    /// From `add-port ... key=value` options: `vnet_hdr=true|false`,
    /// `mtu_request=N`.
    pub fn from_options(name: &str, opts: &[(&str, &str)]) -> Result<TapConfig, Error> {
        sys::check_ifname(name).map_err(|e| Error::config(name, e.to_string()))?;
        let mut c = TapConfig::new(name);
        for &(k, v) in opts {
            match k {
                "vnet_hdr" => c.vnet_hdr = parse_bool(name, k, v)?,
                "mtu_request" => {
                    let m: u32 = v
                        .parse()
                        .ok()
                        .filter(|m| (68..=65535).contains(m))
                        .ok_or_else(|| {
                            Error::config(name, format!("mtu_request={v}: expected 68..65535"))
                        })?;
                    c.mtu_request = Some(m);
                }
                _ => {
                    return Err(Error::config(
                        name,
                        format!("unknown option {k:?} for a tap port"),
                    ))
                }
            }
        }
        Ok(c)
    }
}

/// What happened to one packet on transmit.
enum TxFlow {
    /// Sent or dropped (counted): go on with the next packet.
    Next,
    /// The fd would block: leave this packet and the rest in the batch.
    Stop,
    /// The device is gone: the port goes down.
    Gone(io::Error),
}

/// A TAP port.
#[derive(Debug)]
pub struct TapPort {
    cfg: TapConfig,
    dev: Device<tun::TapFd>,
    /// We created the device the port was first opened with: recreate it.
    owner: bool,
    mtu: u32,
    life: LinkLife,
    c: Counters,
    overflow: Vec<u8>,
    scratch: Vec<u8>,
}

/// Opens (or creates) the device and does the name-based setup.
fn attach(cfg: &TapConfig) -> io::Result<(tun::TapFd, u32)> {
    let fd = tun::open_tap(&cfg.name, cfg.vnet_hdr, OFFLOADS)?;
    let name = fd.name().to_string();
    // The kernel side may already be in another netns: ENODEV here is
    // not an error, the fd works regardless.
    let moved = |r: io::Result<()>| match r {
        Err(e) if netdev::is_no_device(&e) => Ok(()),
        r => r,
    };
    if let Some(m) = cfg.mtu_request {
        moved(netdev::set_mtu(&name, m))?;
    }
    moved(netdev::set_up(&name, true))?;
    let mtu = match netdev::mtu(&name) {
        Ok(m) => m,
        Err(e) if netdev::is_no_device(&e) => cfg.mtu_request.unwrap_or(1500),
        Err(e) => return Err(e),
    };
    Ok((fd, mtu))
}

impl TapPort {
    /// Creates TAP `cfg.name` (or attaches to an existing persistent one),
    /// non-blocking, brought up.
    pub fn open(cfg: TapConfig) -> Result<TapPort, Error> {
        let (fd, mtu) = attach(&cfg).map_err(|e| Error::io("open tap", &cfg.name, e))?;
        let owner = !fd.persistent();
        tracing::info!(
            port = %cfg.name,
            vnet_hdr = cfg.vnet_hdr,
            mtu,
            "{} tap {}",
            if owner { "created" } else { "attached to" },
            fd.name()
        );
        Ok(TapPort {
            life: LinkLife::new(&cfg.name),
            cfg,
            dev: Device::new(Some(fd)),
            owner,
            mtu,
            c: Counters::default(),
            overflow: vec![0; MAX_FRAME],
            scratch: Vec::new(),
        })
    }

    /// Takes over the TAP queue `fd` that the previous vswitchd handed over
    /// (see [`Port::handover_fds`]): nothing is created or reconfigured,
    /// the device keeps its reader throughout. The fd must be the TAP
    /// `cfg.name` with the same vnet_hdr setting.
    pub fn adopt(cfg: TapConfig, fd: std::os::fd::OwnedFd) -> Result<TapPort, Error> {
        let fd = tun::adopt(fd).map_err(|e| Error::io("adopt tap", &cfg.name, e))?;
        if fd.name() != cfg.name || fd.vnet_hdr() != cfg.vnet_hdr {
            return Err(Error::config(
                &cfg.name,
                format!(
                    "handed-over fd is TAP {} (vnet_hdr {}), not {} (vnet_hdr {})",
                    fd.name(),
                    fd.vnet_hdr(),
                    cfg.name,
                    cfg.vnet_hdr
                ),
            ));
        }
        // The kernel side may live in another netns: keep the MTU we were
        // asked for, else Ethernet's.
        let mtu = match netdev::mtu(&cfg.name) {
            Ok(m) => m,
            Err(_) => cfg.mtu_request.unwrap_or(1500),
        };
        let owner = !fd.persistent();
        tracing::info!(port = %cfg.name, mtu, "took over tap {}", fd.name());
        Ok(TapPort {
            life: LinkLife::new(&cfg.name),
            cfg,
            dev: Device::new(Some(fd)),
            owner,
            mtu,
            c: Counters::default(),
            overflow: vec![0; MAX_FRAME],
            scratch: Vec::new(),
        })
    }

    /// True when we created the device (and will remove it when dropped).
    pub fn created(&self) -> bool {
        self.dev.get().is_some_and(|d| !d.persistent())
    }

    /// One drop counter.
    pub fn drop_count(&self, why: PortDrop) -> u64 {
        self.c.drop_count(why)
    }

    fn lose(&mut self, e: &io::Error) {
        self.dev.lose();
        self.life.down(format_args!("tap device gone ({e})"));
    }

    fn reopen(&mut self) -> io::Result<()> {
        if !self.owner {
            // Someone else's persistent TAP: only attach when it exists
            // again, never create it in its place.
            netdev::ifindex(&self.cfg.name)?;
        }
        let (fd, mtu) = attach(&self.cfg)?;
        self.dev.replace(fd);
        self.mtu = mtu;
        Ok(())
    }

    /// Reads one frame into `p`; returns the frame length.
    fn read_frame(&mut self, p: &mut PacketBuf) -> io::Result<usize> {
        let Some(dev) = self.dev.get() else {
            return Err(io::ErrorKind::NotConnected.into());
        };
        let mut f = dev.file();
        let mut hdr = [0u8; vnet::LEN];
        let area = p.rx_area();
        let n = if self.cfg.vnet_hdr {
            let mut iov = [
                IoSliceMut::new(&mut hdr),
                IoSliceMut::new(area),
                IoSliceMut::new(&mut self.overflow),
            ];
            f.read_vectored(&mut iov)?
                .checked_sub(vnet::LEN)
                .ok_or(io::ErrorKind::InvalidData)?
        } else {
            let mut iov = [IoSliceMut::new(area), IoSliceMut::new(&mut self.overflow)];
            f.read_vectored(&mut iov)?
        };
        super::finish_rx(p, n, &self.overflow);
        if self.cfg.vnet_hdr && VnetHdr::parse(&hdr).apply_to(&mut p.meta).is_err() {
            return Err(io::ErrorKind::InvalidData.into());
        }
        Ok(n)
    }

    fn write_one(&mut self, iov: &[IoSlice<'_>]) -> io::Result<usize> {
        match self.dev.get() {
            Some(d) => d.file().write_vectored(iov),
            None => Err(io::ErrorKind::NotConnected.into()),
        }
    }

    /// Maps a write error to the flow and counts it.
    fn write_failed(&mut self, e: io::Error, frames: u64) -> TxFlow {
        if e.kind() == io::ErrorKind::WouldBlock {
            return TxFlow::Stop;
        }
        if tun::is_gone(&e) {
            return TxFlow::Gone(e);
        }
        if e.raw_os_error() == Some(libc::EIO) {
            // The kernel side is administratively down (the VM or the
            // namespace has not brought its interface up).
            self.c.tx_drop(PortDrop::PortDown, frames);
        } else {
            self.c.tx_error(frames);
        }
        TxFlow::Next
    }

    fn send_one(&mut self, pkt: &mut PacketBuf) -> TxFlow {
        let r = if self.cfg.vnet_hdr {
            let Ok(h) = vnet::header_for(pkt) else {
                self.c.tx_error(1);
                return TxFlow::Next;
            };
            self.write_one(&[IoSlice::new(&h.emit()), IoSlice::new(pkt.data())])
        } else if pkt.meta.gso != Gso::None {
            return self.send_segments(pkt);
        } else if gso::complete_checksum(pkt).is_err() {
            self.c.tx_error(1);
            return TxFlow::Next;
        } else {
            self.write_one(&[IoSlice::new(pkt.data())])
        };
        match r {
            Ok(_) => {
                self.c.tx(pkt.len());
                TxFlow::Next
            }
            Err(e) => self.write_failed(e, 1),
        }
    }

    /// Software segmentation for a TAP without vnet_hdr: each segment is
    /// built in a scratch buffer and written; a packet is never left half
    /// sent in the batch (what did not go is counted as dropped).
    fn send_segments(&mut self, pkt: &PacketBuf) -> TxFlow {
        let s = match Segmenter::new(pkt.data(), pkt.meta.gso) {
            Ok(s) => s,
            Err(_) => {
                self.c.tx_error(1);
                return TxFlow::Next;
            }
        };
        let mut scratch = std::mem::take(&mut self.scratch);
        let mut flow = TxFlow::Next;
        for i in 0..s.count() {
            let len = s.segment_len(i);
            if scratch.len() < len {
                scratch.resize(len, 0);
            }
            let r = s
                .write(pkt.data(), i, &mut scratch)
                .map_err(|_| io::Error::from(io::ErrorKind::InvalidData))
                .and_then(|n| self.write_one(&[IoSlice::new(&scratch[..n])]).map(|_| n));
            match r {
                Ok(n) => self.c.tx(n),
                Err(e) => {
                    let left = (s.count() - i) as u64;
                    flow = match self.write_failed(e, left) {
                        TxFlow::Stop => {
                            self.c.tx_drop(PortDrop::TxQueueFull, left);
                            TxFlow::Next
                        }
                        f => f,
                    };
                    break;
                }
            }
        }
        self.scratch = scratch;
        flow
    }
}

impl Port for TapPort {
    fn name(&self) -> &str {
        &self.cfg.name
    }

    fn kind(&self) -> &'static str {
        "tap"
    }

    fn recv_batch(&mut self, pool: &mut PacketPool, batch: &mut Batch) -> Result<usize, Error> {
        let mut n = 0;
        while !batch.is_full() && self.dev.get().is_some() {
            let mut p = pool.get();
            match self.read_frame(&mut p) {
                Ok(len) => {
                    self.c.rx(len);
                    match batch.push(p) {
                        Ok(()) => n += 1,
                        Err(p) => pool.put(p),
                    }
                }
                Err(e) => {
                    pool.put(p);
                    match e.kind() {
                        io::ErrorKind::WouldBlock => break,
                        io::ErrorKind::Interrupted => continue,
                        io::ErrorKind::InvalidData => {
                            // A header we did not negotiate: drop the frame.
                            self.c.rx_invalid();
                            continue;
                        }
                        _ if tun::is_gone(&e) => {
                            self.lose(&e);
                            break;
                        }
                        _ => {
                            self.c.stats.rx_errors += 1;
                            break;
                        }
                    }
                }
            }
        }
        Ok(n)
    }

    fn send_batch(&mut self, batch: &mut Batch, pool: &mut PacketPool) -> Result<usize, Error> {
        let total = batch.len();
        if self.dev.get().is_none() {
            self.c.tx_drop(PortDrop::PortDown, total as u64);
            batch.recycle(pool);
            return Ok(total);
        }
        let mut done = 0;
        while done < total {
            let flow = match batch.as_mut_slice().get_mut(done) {
                Some(p) => self.send_one(p),
                None => break,
            };
            match flow {
                TxFlow::Next => done += 1,
                TxFlow::Stop => break,
                TxFlow::Gone(e) => {
                    self.lose(&e);
                    self.c.tx_drop(PortDrop::PortDown, (total - done) as u64);
                    done = total;
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
        self.dev.get().map(|d| d.as_fd().as_raw_fd())
    }

    fn link_downs(&self) -> u64 {
        self.life.downs()
    }

    fn handover_fds(&self) -> Vec<std::os::fd::BorrowedFd<'_>> {
        self.dev.get().map(|d| d.as_fd()).into_iter().collect()
    }

    fn housekeeping(&mut self) {
        let now = Instant::now();
        if self.life.probe_due(now) {
            // No traffic may have told us: ask the fd (never the name).
            if let Some(Err(e)) = self.dev.get().map(|d| tun::get_iff(d.as_fd())) {
                if tun::is_gone(&e) {
                    self.lose(&e);
                }
            }
            return;
        }
        if !self.life.retry_due(now) {
            return;
        }
        match self.reopen() {
            Ok(()) => {
                let how = if self.created() {
                    "tap recreated"
                } else {
                    "tap re-attached"
                };
                self.life.up(how);
            }
            Err(e) => self.life.retry_failed(now, e),
        }
    }
}

impl Drop for TapPort {
    fn drop(&mut self) {
        if self.created() {
            tracing::info!(port = %self.cfg.name, "removing tap we created");
        }
        // Closing the fd removes a non-persistent TAP (ours) and leaves a
        // persistent one (someone else's).
    }
}
