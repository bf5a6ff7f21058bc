//! The Geneve port itself: the receive socket, the send sockets (one
//! outer source port each) and the [`Port`] implementation that decaps
//! received batches and encaps, hashes to a lane and sends with sendmmsg.
//! Not thread-safe by itself: a port lives in one datapath thread.
//!
//! Queues: the receive socket is bound with SO_REUSEPORT, so another
//! datapath worker can bind its own receive socket on the same address
//! ([`Port::open_queue`]); the kernel spreads datagrams over them by outer
//! addresses and ports, and a sender keeps one outer source port per inner
//! flow, so a flow stays on one socket. The queue sends on copies of the
//! same send sockets (the same outer source ports). Because the kernel no
//! longer refuses a second bind of our own, the ports this process has
//! bound are remembered here, and a second port on the same address is
//! refused as before.

use super::codec::{decap, push_header, DecapPolicy};
use super::config::{GeneveConfig, Key, Remote};
use super::hash::flow_hash;
use super::route::underlay_mtu;
use super::tlv::{TlvMap, TlvMapHandle};
use super::BASE_OVERHEAD;
use crate::packet::gso::{self, Segmenter};
use crate::packet::{Batch, Gso, PacketBuf, PacketPool, MAX_BURST};
use crate::port::link::Counters;
use crate::port::udp::{IcmpCounters, Options as UdpOptions, RecvInfo, Socket};
use crate::port::{Error, LinkState, Port, PortDrop, PortStats};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::os::fd::RawFd;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Receive addresses of this process's Geneve ports (see the module docs).
static BOUND: Mutex<Vec<SocketAddr>> = Mutex::new(Vec::new());

/// Two receive addresses that the kernel would not let two unshared
/// sockets bind: the same port on the same or a wildcard address.
fn clash(a: &SocketAddr, b: &SocketAddr) -> bool {
    a.port() == b.port() && (a.ip() == b.ip() || a.ip().is_unspecified() || b.ip().is_unspecified())
}

/// Options of a receive socket: the defaults (pktinfo for tun_dst,
/// TOS/TTL, error queue, big buffer), shared with other queues.
fn rx_options() -> UdpOptions {
    UdpOptions {
        reuseport: true,
        ..UdpOptions::default()
    }
}

/// Lowest outer UDP source port (RFC 6335 dynamic range).
pub const SRC_PORT_MIN: u16 = 49152;
/// Highest outer UDP source port.
pub const SRC_PORT_MAX: u16 = 65535;
/// Send sockets, one source port each: the entropy of the outer header.
pub const TX_SOCKETS: usize = 8;

/// How often ICMP errors are logged at most.
const ICMP_LOG_INTERVAL: Duration = Duration::from_secs(10);

/// One send socket (one outer source port) and what waits for it.
#[derive(Debug)]
struct TxLane {
    sock: Socket,
    batch: Batch,
    dsts: Vec<SocketAddr>,
}

impl TxLane {
    fn new(sock: Socket) -> TxLane {
        TxLane {
            sock,
            batch: Batch::new(),
            // Flushed when `batch` is full: never grows past this.
            dsts: Vec::with_capacity(MAX_BURST),
        }
    }
}

/// A Geneve tunnel port.
#[derive(Debug)]
pub struct GenevePort {
    cfg: GeneveConfig,
    rx: Socket,
    lanes: Vec<TxLane>,
    tlv: TlvMapHandle,
    policy: DecapPolicy,
    c: Counters,
    mtu: u32,
    rx_tmp: Batch,
    rx_info: [RecvInfo; MAX_BURST],
    icmp_logged: (u64, Option<Instant>),
    /// The receive address this port holds in [`BOUND`] (the primary
    /// queue).
    registered: Option<SocketAddr>,
    /// Another worker's queue of a port.
    extra: bool,
}

impl Drop for GenevePort {
    fn drop(&mut self) {
        if let Some(a) = self.registered {
            let mut b = BOUND.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(i) = b.iter().position(|x| *x == a) {
                b.swap_remove(i);
            }
        }
    }
}

impl GenevePort {
    /// Binds the receive socket on `local_ip:dst_port` and the send sockets
    /// on source ports in 49152..=65535; reads the underlay MTU.
    pub fn open(cfg: GeneveConfig, tlv: TlvMapHandle) -> Result<GenevePort, Error> {
        let name = &cfg.name;
        let local_ip = cfg.local.unwrap_or(Ipv4Addr::UNSPECIFIED);
        let rx_local = SocketAddr::V4(SocketAddrV4::new(local_ip, cfg.dst_port));
        // Checked and recorded under the lock: two ports opening at once
        // cannot both pass.
        let mut bound = BOUND.lock().unwrap_or_else(|e| e.into_inner());
        let taken = cfg.dst_port != 0 && bound.iter().any(|b| clash(b, &rx_local));
        // The receive socket never sends.
        let rx = if taken {
            Err(std::io::Error::from(std::io::ErrorKind::AddrInUse))
        } else {
            Socket::bind_with(rx_local, rx_options())
        }
        .map_err(|e| {
            if e.kind() == std::io::ErrorKind::AddrInUse {
                Error::config(
                    name,
                    format!(
                        "{rx_local} is already in use (another geneve port with the same \
                         local_ip and dst_port, or another program)"
                    ),
                )
            } else {
                Error::io("bind geneve socket", name, e)
            }
        })?;
        let tx_opts = UdpOptions {
            pktinfo: false,
            tos_ttl: false,
            rcvbuf: 256 << 10,
            pmtudisc: Some(if cfg.df {
                libc::IP_PMTUDISC_DO
            } else {
                libc::IP_PMTUDISC_DONT
            }),
            ttl: Some(cfg.ttl),
            tos: Some(cfg.tos),
            no_check: !cfg.csum,
            ..UdpOptions::default()
        };
        let lanes = bind_lanes(name, local_ip, tx_opts)?;
        let mut port = GenevePort::assemble(cfg, tlv, rx, lanes);
        bound.push(port.local_addr());
        port.registered = Some(port.local_addr());
        Ok(port)
    }

    /// Takes over the sockets the previous vswitchd handed over (see
    /// [`Port::handover_fds`]: the receive socket, then the send sockets),
    /// so no datagram waits on a socket nobody reads. The receive socket
    /// must be bound where `cfg` says.
    pub fn adopt(
        cfg: GeneveConfig,
        tlv: TlvMapHandle,
        fds: Vec<std::os::fd::OwnedFd>,
    ) -> Result<GenevePort, Error> {
        let name = cfg.name.clone();
        let mut socks = fds
            .into_iter()
            .map(|fd| Socket::adopt(fd).map_err(|e| Error::io("adopt geneve socket", &name, e)));
        let rx = socks
            .next()
            .ok_or_else(|| Error::config(&name, "no sockets handed over"))??;
        let want = cfg.local.unwrap_or(Ipv4Addr::UNSPECIFIED);
        let got = rx.local_addr();
        if got.ip() != std::net::IpAddr::V4(want)
            || (cfg.dst_port != 0 && got.port() != cfg.dst_port)
        {
            return Err(Error::config(
                &name,
                format!(
                    "handed-over socket is bound to {got}, not {want}:{}",
                    cfg.dst_port
                ),
            ));
        }
        let lanes = socks
            .map(|s| s.map(TxLane::new))
            .collect::<Result<Vec<_>, _>>()?;
        if lanes.is_empty() {
            return Err(Error::config(&name, "no send sockets handed over"));
        }
        let mut port = GenevePort::assemble(cfg, tlv, rx, lanes);
        BOUND
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(port.local_addr());
        port.registered = Some(port.local_addr());
        Ok(port)
    }

    fn assemble(
        cfg: GeneveConfig,
        tlv: TlvMapHandle,
        rx: Socket,
        lanes: Vec<TxLane>,
    ) -> GenevePort {
        let mtu = underlay_mtu(match cfg.remote {
            Remote::Ip(a) => Some(a),
            Remote::Flow => cfg.local,
        });
        let port = GenevePort {
            policy: cfg.policy(rx.local_addr()),
            cfg,
            rx,
            lanes,
            tlv,
            c: Counters::default(),
            mtu,
            rx_tmp: Batch::new(),
            rx_info: [RecvInfo::default(); MAX_BURST],
            icmp_logged: (0, None),
            registered: None,
            extra: false,
        };
        tracing::info!(
            port = %port.cfg.name, local = %port.local_addr(), remote = ?port.cfg.remote,
            key = ?port.cfg.out_key, src_ports = ?port.src_ports(), mtu, "geneve port open"
        );
        port
    }

    /// The bound receive address (the real port when `dst_port` was 0 in a
    /// test).
    pub fn local_addr(&self) -> SocketAddr {
        self.rx.local_addr()
    }

    /// The outer UDP source ports this port sends from.
    pub fn src_ports(&self) -> Vec<u16> {
        self.lanes
            .iter()
            .map(|l| l.sock.local_addr().port())
            .collect()
    }

    /// Bytes the outer headers add to an inner frame: Ethernet 14 + IPv4
    /// 20 + UDP 8 + Geneve 8 + the options the current TLV map can produce.
    pub fn overhead(&self) -> u32 {
        BASE_OVERHEAD + self.tlv.load().max_options_len()
    }

    /// ICMP errors received about what this port sent, all sockets summed.
    pub fn icmp(&self) -> IcmpCounters {
        let mut t = *self.rx.icmp();
        for l in &self.lanes {
            t += *l.sock.icmp();
        }
        t
    }

    fn drop_tx(&mut self, why: PortDrop, pkt: PacketBuf, pool: &mut PacketPool) {
        self.c.tx_drop(why, 1);
        pool.put(pkt);
    }

    /// Encapsulates one packet and queues it on its lane.
    fn queue(&mut self, mut pkt: PacketBuf, pool: &mut PacketPool, map: &TlvMap) {
        if pkt.meta.gso != Gso::None {
            self.queue_segments(pkt, pool, map);
            return;
        }
        if gso::complete_checksum(&mut pkt).is_err() {
            self.drop_tx(PortDrop::TxError, pkt, pool);
            return;
        }
        let dst = match self.cfg.remote {
            Remote::Ip(a) => a,
            Remote::Flow if pkt.meta.tunnel.ip_dst != 0 => Ipv4Addr::from(pkt.meta.tunnel.ip_dst),
            Remote::Flow => {
                self.drop_tx(PortDrop::TunnelNoDestination, pkt, pool);
                return;
            }
        };
        let vni = match self.cfg.out_key {
            Key::Vni(v) => v,
            Key::Flow => (pkt.meta.tunnel.tun_id & 0x00ff_ffff) as u32,
        };
        let n = self.lanes.len().max(1);
        let lane = (flow_hash(&pkt) % n as u64) as usize;
        push_header(&mut pkt, vni, map);
        let full = match self.lanes.get_mut(lane) {
            Some(l) => {
                l.dsts
                    .push(SocketAddr::V4(SocketAddrV4::new(dst, self.cfg.dst_port)));
                if let Err(p) = l.batch.push(pkt) {
                    // Cannot happen (flushed when full); never lose a buffer.
                    l.dsts.pop();
                    pool.put(p);
                }
                l.batch.is_full()
            }
            None => {
                self.drop_tx(PortDrop::TxError, pkt, pool);
                false
            }
        };
        if full {
            self.flush_lane(lane, pool);
        }
    }

    /// Cuts a TSO super-packet into segments and queues each.
    fn queue_segments(&mut self, pkt: PacketBuf, pool: &mut PacketPool, map: &TlvMap) {
        let seg = match Segmenter::new(pkt.data(), pkt.meta.gso) {
            Ok(s) => s,
            Err(_) => {
                self.drop_tx(PortDrop::TxError, pkt, pool);
                return;
            }
        };
        for i in 0..seg.count() {
            match seg.segment_packet(&pkt, i, pool) {
                Ok(p) => self.queue(p, pool, map),
                Err(_) => self.c.tx_drop(PortDrop::TxError, 1),
            }
        }
        pool.put(pkt);
    }

    fn flush_lane(&mut self, i: usize, pool: &mut PacketPool) {
        let Some(l) = self.lanes.get_mut(i) else {
            return;
        };
        if l.batch.is_empty() {
            return;
        }
        let rep = l.sock.send_batch(&mut l.batch, &l.dsts, pool);
        // What the socket buffer could not take now is dropped: the
        // datapath has no queue behind a port either.
        l.batch.recycle(pool);
        l.dsts.clear();
        self.c.stats.tx_packets += rep.sent;
        self.c.stats.tx_bytes += rep.bytes;
        for (why, n) in rep.drops() {
            self.c.tx_drop(why, n);
        }
        if rep.left > 0 {
            self.c.tx_drop(PortDrop::TxQueueFull, rep.left);
        }
    }

    fn log_icmp(&mut self) {
        let icmp = self.icmp();
        let total = icmp.total();
        let now = Instant::now();
        let due = self
            .icmp_logged
            .1
            .is_none_or(|t| now.saturating_duration_since(t) >= ICMP_LOG_INTERVAL);
        if total > self.icmp_logged.0 && due {
            tracing::warn!(
                port = %self.cfg.name,
                errors = total,
                last = ?icmp.last,
                "ICMP errors from the underlay (peer unreachable?); counted in dump-drops"
            );
            self.icmp_logged = (total, Some(now));
        }
    }
}

/// Binds [`TX_SOCKETS`] send sockets on distinct source ports in
/// 49152..=65535, starting at a pid-dependent place so that two daemons
/// on one host rarely probe the same ports; ports in use are skipped. With
/// none free in a bounded number of tries, the kernel picks (port 0).
fn bind_lanes(name: &str, local: Ipv4Addr, opts: UdpOptions) -> Result<Vec<TxLane>, Error> {
    let span = u32::from(SRC_PORT_MAX - SRC_PORT_MIN) + 1;
    let mut cursor = (std::process::id().wrapping_mul(2_654_435_761) >> 7) % span;
    let mut lanes = Vec::with_capacity(TX_SOCKETS);
    let mut tries = 0;
    while lanes.len() < TX_SOCKETS && tries < 64 * TX_SOCKETS {
        tries += 1;
        let port = SRC_PORT_MIN + (cursor % span) as u16;
        cursor = cursor.wrapping_add(1);
        match Socket::bind_with(SocketAddr::V4(SocketAddrV4::new(local, port)), opts) {
            Ok(sock) => lanes.push(TxLane::new(sock)),
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => continue,
            Err(e) => return Err(Error::io("bind geneve send socket", name, e)),
        }
    }
    if lanes.is_empty() {
        let sock = Socket::bind_with(SocketAddr::V4(SocketAddrV4::new(local, 0)), opts)
            .map_err(|e| Error::io("bind geneve send socket", name, e))?;
        lanes.push(TxLane::new(sock));
    }
    Ok(lanes)
}

impl Port for GenevePort {
    fn name(&self) -> &str {
        &self.cfg.name
    }

    fn kind(&self) -> &'static str {
        "geneve"
    }

    fn recv_batch(&mut self, pool: &mut PacketPool, batch: &mut Batch) -> Result<usize, Error> {
        let free = batch.free().min(MAX_BURST);
        if free == 0 {
            return Ok(0);
        }
        let map = self.tlv.load_full();
        let info = self.rx_info.get_mut(..free).unwrap_or(&mut []);
        self.rx.recv_batch(pool, &mut self.rx_tmp, info);
        let mut n = 0;
        for (i, mut p) in self.rx_tmp.drain().enumerate() {
            let from = self.rx_info.get(i).copied().unwrap_or_default();
            let len = p.len();
            match decap(&mut p, &from, &self.policy, &map) {
                Ok(()) => {
                    self.c.rx(len);
                    match batch.push(p) {
                        Ok(()) => n += 1,
                        Err(p) => pool.put(p),
                    }
                }
                Err(why) => {
                    self.c.rx_drop(why, 1);
                    pool.put(p);
                }
            }
        }
        Ok(n)
    }

    fn send_batch(&mut self, batch: &mut Batch, pool: &mut PacketPool) -> Result<usize, Error> {
        let total = batch.len();
        if total == 0 {
            return Ok(0);
        }
        let map = self.tlv.load_full();
        // Packets move (8 bytes each) from the caller's batch to the lanes.
        for p in batch.drain() {
            self.queue(p, pool, &map);
        }
        for i in 0..self.lanes.len() {
            self.flush_lane(i, pool);
        }
        Ok(total)
    }

    fn stats(&self) -> PortStats {
        let mut s = self.c.stats.clone();
        s.tx_errors += self.icmp().total();
        s.rx_dropped += self.rx.truncated();
        s
    }

    fn drops(&self) -> Vec<(PortDrop, u64)> {
        let truncated = (PortDrop::RxTooLong, self.rx.truncated());
        self.c
            .drops_with(self.icmp().drops().into_iter().chain([truncated]))
    }

    fn mtu(&self) -> u32 {
        self.mtu
    }

    fn tunnel_overhead(&self) -> Option<u32> {
        // Against the underlay's IP MTU: the outer IP datagram is the inner
        // frame plus this; the outer Ethernet header is not part of it.
        Some(self.overhead() - 14)
    }

    fn link_state(&self) -> LinkState {
        // The sockets stay whatever happens to the peers.
        LinkState::Up
    }

    fn open_queue(&self) -> Result<Option<Box<dyn Port>>, Error> {
        if self.extra {
            return Ok(None);
        }
        let name = &self.cfg.name;
        let rx = match Socket::bind_with(self.rx.local_addr(), rx_options()) {
            Ok(s) => s,
            // A receive socket bound without SO_REUSEPORT (handed over by
            // an older vswitchd): the port stays on one worker.
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => return Ok(None),
            Err(e) => return Err(Error::io("bind another geneve socket", name, e)),
        };
        let lanes = self
            .lanes
            .iter()
            .map(|l| {
                l.sock
                    .as_fd()
                    .try_clone_to_owned()
                    .and_then(Socket::adopt)
                    .map(TxLane::new)
                    .map_err(|e| Error::io("share geneve send socket", name, e))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Some(Box::new(GenevePort {
            policy: self.cfg.policy(rx.local_addr()),
            cfg: self.cfg.clone(),
            rx,
            lanes,
            tlv: self.tlv.clone(),
            c: Counters::default(),
            mtu: self.mtu,
            rx_tmp: Batch::new(),
            rx_info: [RecvInfo::default(); MAX_BURST],
            icmp_logged: (0, None),
            registered: None,
            extra: true,
        })))
    }

    fn handover_fds(&self) -> Vec<std::os::fd::BorrowedFd<'_>> {
        if self.extra {
            // The new process opens its own extra queues.
            return Vec::new();
        }
        std::iter::once(self.rx.as_fd())
            .chain(self.lanes.iter().map(|l| l.sock.as_fd()))
            .collect()
    }

    fn poll_fd(&self) -> Option<RawFd> {
        Some(self.rx.poll_fd())
    }

    fn housekeeping(&mut self) {
        // The send sockets are not polled: read their ICMP errors here.
        self.rx.drain_errors();
        for l in &mut self.lanes {
            l.sock.drain_errors();
        }
        self.log_icmp();
    }
}
