//! The Geneve port itself: the receive socket, the send sockets (one
//! outer source port each) and the [`Port`] implementation that decaps
//! received batches and encaps, hashes to a lane and sends with sendmmsg.
//! Not thread-safe by itself: a port lives in one datapath thread.
//!
//! Super-frames: a TSO super-frame's segments are encapsulated back to
//! back into one buffer and sent with one sendmsg as UDP GSO (see
//! [`Socket::send_gso`]): equal-sized Geneve datagrams, cut by the kernel
//! after routing once. The kernel sends UDP GSO only with the outer UDP
//! checksum, so a lane of a `csum=false` port has a companion socket bound
//! to the same source port (SO_REUSEPORT) with the checksum on, used only
//! for super-frames: single datagrams keep the zero checksum, and an inner
//! flow keeps its outer source port. Where the companion cannot be bound
//! (lanes handed over by an older vswitchd, bound without SO_REUSEPORT) or
//! the kernel refuses UDP GSO, segments go one datagram each, as before.
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

use super::coalesce::Open;
use super::codec::{decap, push_header, DecapPolicy};
use super::config::{GeneveConfig, Key, Remote};
use super::hash::flow_hash;
use super::route::underlay_mtu;
use super::tlv::{TlvMap, TlvMapHandle};
use super::BASE_OVERHEAD;
use crate::packet::gso::{self, Segmenter};
use crate::packet::{Batch, Gso, PacketBuf, PacketPool, MAX_BURST};
use crate::port::link::Counters;
use crate::port::udp::{
    GsoSend, IcmpCounters, Options as UdpOptions, RecvInfo, Socket, GSO_MAX_BYTES, GSO_MAX_SEGMENTS,
};
use crate::port::{Error, LinkState, Port, PortDrop, PortStats};
use crate::wire::geneve as wg;
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
        gro: true,
        ..UdpOptions::default()
    }
}

/// Lowest outer UDP source port (RFC 6335 dynamic range).
pub const SRC_PORT_MIN: u16 = 49152;
/// Highest outer UDP source port.
pub const SRC_PORT_MAX: u16 = 65535;
/// Send sockets, one source port each: the entropy of the outer header.
pub const TX_SOCKETS: usize = 8;

/// Most socket reads one receive makes while they come back full and the
/// batch has room: enough for a 64 KiB super-frame's segments (45 at a
/// 1448-byte MSS) to be coalesced in one go, bounded so that a busy tunnel
/// does not starve the other ports.
const RX_READS: usize = 4;

/// How often ICMP errors are logged at most.
const ICMP_LOG_INTERVAL: Duration = Duration::from_secs(10);

/// Which socket of a lane sends super-frames as UDP GSO.
#[derive(Debug)]
enum GsoVia {
    /// The lane's own socket (it sends with the UDP checksum).
    Lane,
    /// A companion on the same source port, with the checksum on.
    Companion(Socket),
    /// Neither: segments go one datagram each.
    Off,
}

/// One send socket (one outer source port) and what waits for it.
#[derive(Debug)]
struct TxLane {
    sock: Socket,
    gso: GsoVia,
    batch: Batch,
    dsts: Vec<SocketAddr>,
}

impl TxLane {
    fn new(sock: Socket, gso: GsoVia) -> TxLane {
        TxLane {
            sock,
            gso,
            batch: Batch::new(),
            // Flushed when `batch` is full: never grows past this.
            dsts: Vec::with_capacity(MAX_BURST),
        }
    }

    /// The socket to send UDP GSO with, if any.
    fn gso_sock(&mut self) -> Option<&mut Socket> {
        match &mut self.gso {
            GsoVia::Lane => Some(&mut self.sock),
            GsoVia::Companion(s) => Some(s),
            GsoVia::Off => None,
        }
    }
}

/// Send-socket options of a port: the lanes', and (for `csum=false`) the
/// companions' that send super-frames with the checksum.
fn tx_options(cfg: &GeneveConfig) -> (UdpOptions, Option<UdpOptions>) {
    let lane = UdpOptions {
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
        // Lets the companion share the source port.
        reuseport: cfg.gso && !cfg.csum,
        ..UdpOptions::default()
    };
    let companion = (cfg.gso && !cfg.csum).then_some(UdpOptions {
        no_check: false,
        // Sends only: the ICMP errors about what it sent are read from its
        // error queue like the lane's.
        rcvbuf: 64 << 10,
        ..lane
    });
    (lane, companion)
}

/// The UDP GSO path of a lane bound to `addr`: its own socket, or a
/// companion bound next to it, or none when that bind fails.
fn gso_via(name: &str, addr: SocketAddr, gso: bool, companion: Option<UdpOptions>) -> GsoVia {
    if !gso {
        return GsoVia::Off;
    }
    let Some(opts) = companion else {
        return GsoVia::Lane;
    };
    match Socket::bind_with(addr, opts) {
        Ok(s) => GsoVia::Companion(s),
        Err(e) => {
            tracing::debug!(port = %name, %addr, error = %e,
                "no UDP GSO companion socket: super-frames go one datagram per segment");
            GsoVia::Off
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
    /// Datagrams read but not yet handed on (a UDP GRO datagram stands for
    /// up to 64 segments, more than a batch holds), with where the front
    /// one's next segment starts. The socket is read only when it is
    /// empty, so it never holds more than [`MAX_BURST`].
    rx_queue: std::collections::VecDeque<(PacketBuf, RecvInfo)>,
    rx_split_at: usize,
    /// Where a super-frame's encapsulated segments are laid out for one
    /// UDP GSO send: [`GSO_MAX_BYTES`] reserved once, never grown.
    gso_buf: Vec<u8>,
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
        let lanes = bind_lanes(name, local_ip, cfg.gso, tx_options(&cfg))?;
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
        let companion = tx_options(&cfg).1;
        let lanes = socks
            .map(|s| {
                s.map(|sock| {
                    let gso = gso_via(&name, sock.local_addr(), cfg.gso, companion);
                    TxLane::new(sock, gso)
                })
            })
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

    /// A port of these parts with empty counters and scratch space: the
    /// first queue (`extra` false) or another worker's.
    fn with_parts(
        cfg: GeneveConfig,
        tlv: TlvMapHandle,
        rx: Socket,
        lanes: Vec<TxLane>,
        mtu: u32,
        extra: bool,
    ) -> GenevePort {
        GenevePort {
            policy: cfg.policy(rx.local_addr()),
            cfg,
            rx,
            lanes,
            tlv,
            c: Counters::default(),
            mtu,
            rx_tmp: Batch::new(),
            rx_info: [RecvInfo::default(); MAX_BURST],
            rx_queue: std::collections::VecDeque::with_capacity(MAX_BURST),
            rx_split_at: 0,
            gso_buf: Vec::new(),
            icmp_logged: (0, None),
            registered: None,
            extra,
        }
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
        let port = GenevePort::with_parts(cfg, tlv, rx, lanes, mtu, false);
        tracing::info!(
            port = %port.cfg.name, local = %port.local_addr(), remote = ?port.cfg.remote,
            key = ?port.cfg.out_key, src_ports = ?port.src_ports(), gso_lanes = port.gso_lanes(),
            mtu, "geneve port open"
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

    /// How many lanes send super-frames as UDP GSO (the others send one
    /// datagram per segment: see the module docs).
    pub fn gso_lanes(&self) -> usize {
        self.lanes
            .iter()
            .filter(|l| !matches!(l.gso, GsoVia::Off))
            .count()
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
            if let GsoVia::Companion(c) = &l.gso {
                t += *c.icmp();
            }
        }
        t
    }

    fn drop_tx(&mut self, why: PortDrop, pkt: PacketBuf, pool: &mut PacketPool) {
        self.c.tx_drop(why, 1);
        pool.put(pkt);
    }

    /// Where `pkt` goes: the outer destination, the VNI and the lane (by
    /// the inner flow's hash); `None` when it has no destination.
    fn route(&self, pkt: &PacketBuf) -> Option<(Ipv4Addr, u32, usize)> {
        let dst = match self.cfg.remote {
            Remote::Ip(a) => a,
            Remote::Flow if pkt.meta.tunnel.ip_dst != 0 => Ipv4Addr::from(pkt.meta.tunnel.ip_dst),
            Remote::Flow => return None,
        };
        let vni = match self.cfg.out_key {
            Key::Vni(v) => v,
            Key::Flow => (pkt.meta.tunnel.tun_id & 0x00ff_ffff) as u32,
        };
        let n = self.lanes.len().max(1);
        let lane = (flow_hash(pkt) % n as u64) as usize;
        Some((dst, vni, lane))
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
        let Some((dst, vni, lane)) = self.route(&pkt) else {
            self.drop_tx(PortDrop::TunnelNoDestination, pkt, pool);
            return;
        };
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

    /// Cuts a TSO super-packet into segments: sent as UDP GSO when its lane
    /// can, else queued one by one.
    fn queue_segments(&mut self, mut pkt: PacketBuf, pool: &mut PacketPool, map: &TlvMap) {
        let seg = match Segmenter::new(pkt.data(), pkt.meta.gso) {
            Ok(s) => s,
            Err(_) => {
                self.drop_tx(PortDrop::TxError, pkt, pool);
                return;
            }
        };
        let mut from = 0;
        if seg.count() > 1 {
            match self.route(&pkt) {
                Some((dst, vni, lane)) => {
                    from = self.send_segments_gso(&mut pkt, &seg, (dst, vni, lane), pool, map);
                }
                None => {
                    self.c
                        .tx_drop(PortDrop::TunnelNoDestination, seg.count() as u64);
                    pool.put(pkt);
                    return;
                }
            }
        }
        for i in from..seg.count() {
            match seg.segment_packet(&pkt, i, pool) {
                Ok(p) => self.queue(p, pool, map),
                Err(_) => self.c.tx_drop(PortDrop::TxError, 1),
            }
        }
        pool.put(pkt);
    }

    /// Sends the segments of `pkt` as UDP GSO on its lane, each
    /// encapsulated, back to back, at most [`GSO_MAX_SEGMENTS`] and
    /// [`GSO_MAX_BYTES`] per sendmsg. Returns the index of the first segment
    /// it did not handle (sent or counted as a drop): `seg.count()` when
    /// all were, less when the lane has no UDP GSO or the kernel refused it
    /// (the caller queues the rest one by one).
    fn send_segments_gso(
        &mut self,
        pkt: &mut PacketBuf,
        seg: &Segmenter,
        (dst, vni, lane): (Ipv4Addr, u32, usize),
        pool: &mut PacketPool,
        map: &TlvMap,
    ) -> usize {
        if !self
            .lanes
            .get(lane)
            .is_some_and(|l| !matches!(l.gso, GsoVia::Off))
        {
            return 0;
        }
        // The Geneve header, built once in the super-frame's headroom and
        // copied in front of every segment.
        let hl = push_header(pkt, vni, map);
        let mut hdr = [0u8; wg::HEADER_LEN + wg::MAX_OPTIONS_LEN];
        let Some(h) = hdr.get_mut(..hl) else {
            pkt.pull_front(hl);
            return 0;
        };
        h.copy_from_slice(pkt.data().get(..hl).unwrap_or_default());
        pkt.pull_front(hl);
        let stride = hl + seg.segment_len(0);
        let per_send = (GSO_MAX_BYTES / stride).min(GSO_MAX_SEGMENTS);
        let Ok(seg_size) = u16::try_from(stride) else {
            return 0;
        };
        if per_send < 2 {
            return 0;
        }
        if self.gso_buf.len() < GSO_MAX_BYTES {
            self.gso_buf.resize(GSO_MAX_BYTES, 0);
        }
        // What the lane already holds leaves first: a flow's order is kept.
        self.flush_lane(lane, pool);
        let to = SocketAddr::V4(SocketAddrV4::new(dst, self.cfg.dst_port));
        let frame = pkt.data();
        let mut i = 0;
        while i < seg.count() {
            let end = (i + per_send).min(seg.count());
            let mut len = 0;
            for j in i..end {
                let Some(out) = self.gso_buf.get_mut(len..) else {
                    return i;
                };
                let Some(oh) = out.get_mut(..hl) else {
                    return i;
                };
                oh.copy_from_slice(&hdr[..hl]);
                match out.get_mut(hl..).map(|o| seg.write(frame, j, o)) {
                    Some(Ok(n)) => len += hl + n,
                    _ => return i,
                }
            }
            let Some(l) = self.lanes.get_mut(lane) else {
                return i;
            };
            let Some(sock) = l.gso_sock() else {
                return i;
            };
            let buf = self.gso_buf.get(..len).unwrap_or_default();
            match sock.send_gso(buf, seg_size, to) {
                GsoSend::Sent { datagrams, bytes } => {
                    self.c.stats.tx_packets += datagrams;
                    self.c.stats.tx_bytes += bytes;
                }
                // No queue behind a port: what the socket buffer cannot
                // take now is dropped, as `flush_lane` does.
                GsoSend::WouldBlock => self.c.tx_drop(PortDrop::TxQueueFull, (end - i) as u64),
                GsoSend::Dropped(why) => self.c.tx_drop(why, (end - i) as u64),
                GsoSend::Unsupported => return i,
            }
            i = end;
        }
        seg.count()
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

    /// Hands on queued datagrams, a UDP GRO datagram cut into its segments
    /// (each a Geneve datagram of its own), while `batch` has room. Returns
    /// false when it filled up with datagrams still queued.
    fn rx_drain_queue(
        &mut self,
        pool: &mut PacketPool,
        batch: &mut Batch,
        map: &TlvMap,
        open: &mut Option<(usize, Open)>,
        n: &mut usize,
    ) -> bool {
        loop {
            if self.rx_queue.is_empty() {
                return true;
            }
            if batch.is_full() {
                return false;
            }
            let Some((p, from)) = self.rx_queue.front() else {
                return true;
            };
            let (from, g) = (*from, usize::from(from.gso_size));
            if g > 0 && p.len() > g {
                let at = self.rx_split_at;
                let end = (at + g).min(p.len());
                let q = pool.get_from(p.data().get(at..end).unwrap_or_default());
                if end < p.len() {
                    self.rx_split_at = end;
                } else {
                    self.rx_split_at = 0;
                    if let Some((p, _)) = self.rx_queue.pop_front() {
                        pool.put(p);
                    }
                }
                self.rx_one(q, &from, map, pool, batch, open, n);
            } else if let Some((p, _)) = self.rx_queue.pop_front() {
                self.rx_split_at = 0;
                self.rx_one(p, &from, map, pool, batch, open, n);
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn rx_one(
        &mut self,
        mut p: PacketBuf,
        from: &RecvInfo,
        map: &TlvMap,
        pool: &mut PacketPool,
        batch: &mut Batch,
        open: &mut Option<(usize, Open)>,
        n: &mut usize,
    ) {
        let len = p.len();
        if let Err(why) = decap(&mut p, from, &self.policy, map) {
            self.c.rx_drop(why, 1);
            pool.put(p);
            return;
        }
        self.c.rx(len);
        if let Some((at, o)) = open.as_mut() {
            if let Some(head) = batch.as_mut_slice().get_mut(*at) {
                if o.append(head, &p) {
                    pool.put(p);
                    if !o.is_open(head) {
                        o.finish(head);
                        *open = None;
                    }
                    return;
                }
                o.finish(head);
            }
            *open = None;
        }
        let at = batch.len();
        let o = Open::start(&p);
        match batch.push(p) {
            Ok(()) => {
                *n += 1;
                *open = o.map(|o| (at, o));
            }
            Err(p) => pool.put(p),
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
fn bind_lanes(
    name: &str,
    local: Ipv4Addr,
    gso: bool,
    (opts, companion): (UdpOptions, Option<UdpOptions>),
) -> Result<Vec<TxLane>, Error> {
    let span = u32::from(SRC_PORT_MAX - SRC_PORT_MIN) + 1;
    let mut cursor = (std::process::id().wrapping_mul(2_654_435_761) >> 7) % span;
    let mut lanes = Vec::with_capacity(TX_SOCKETS);
    let mut tries = 0;
    while lanes.len() < TX_SOCKETS && tries < 64 * TX_SOCKETS {
        tries += 1;
        let port = SRC_PORT_MIN + (cursor % span) as u16;
        cursor = cursor.wrapping_add(1);
        match Socket::bind_with(SocketAddr::V4(SocketAddrV4::new(local, port)), opts) {
            Ok(sock) => {
                let gso = gso_via(name, sock.local_addr(), gso, companion);
                lanes.push(TxLane::new(sock, gso));
            }
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => continue,
            Err(e) => return Err(Error::io("bind geneve send socket", name, e)),
        }
    }
    if lanes.is_empty() {
        let sock = Socket::bind_with(SocketAddr::V4(SocketAddrV4::new(local, 0)), opts)
            .map_err(|e| Error::io("bind geneve send socket", name, e))?;
        let gso = gso_via(name, sock.local_addr(), gso, companion);
        lanes.push(TxLane::new(sock, gso));
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
        let map = self.tlv.load_full();
        let mut n = 0;
        // The super-frame being rebuilt at the tail of `batch` (its index):
        // it stays open across reads, so one sender's 45-segment
        // super-frame can become one frame again.
        let mut open: Option<(usize, Open)> = None;
        for _ in 0..RX_READS {
            // What an earlier read left first, in order.
            if !self.rx_drain_queue(pool, batch, &map, &mut open, &mut n) {
                break;
            }
            let free = batch.free().min(MAX_BURST);
            if free == 0 {
                break;
            }
            let info = self.rx_info.get_mut(..free).unwrap_or(&mut []);
            let got = self.rx.recv_batch(pool, &mut self.rx_tmp, info);
            for (i, p) in self.rx_tmp.drain().enumerate() {
                let from = self.rx_info.get(i).copied().unwrap_or_default();
                self.rx_queue.push_back((p, from));
            }
            if !self.rx_drain_queue(pool, batch, &map, &mut open, &mut n) {
                break;
            }
            // A short read: nothing more is waiting.
            if got < free {
                break;
            }
        }
        if let Some((at, o)) = open {
            if let Some(head) = batch.as_mut_slice().get_mut(at) {
                o.finish(head);
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
                let dup = |s: &Socket| s.as_fd().try_clone_to_owned().and_then(Socket::adopt);
                let gso = match &l.gso {
                    GsoVia::Lane => GsoVia::Lane,
                    GsoVia::Companion(c) => dup(c).map_or(GsoVia::Off, GsoVia::Companion),
                    GsoVia::Off => GsoVia::Off,
                };
                dup(&l.sock)
                    .map(|sock| TxLane::new(sock, gso))
                    .map_err(|e| Error::io("share geneve send socket", name, e))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Some(Box::new(GenevePort::with_parts(
            self.cfg.clone(),
            self.tlv.clone(),
            rx,
            lanes,
            self.mtu,
            true,
        ))))
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

    fn rx_pending(&self) -> bool {
        // Segments of a GRO datagram left when the batch filled.
        !self.rx_queue.is_empty()
    }

    fn housekeeping(&mut self) {
        // The send sockets are not polled: read their ICMP errors here.
        self.rx.drain_errors();
        for l in &mut self.lanes {
            l.sock.drain_errors();
            if let GsoVia::Companion(c) = &mut l.gso {
                c.drain_errors();
            }
        }
        self.log_icmp();
    }
}
