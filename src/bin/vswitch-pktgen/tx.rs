//! The sending thread.
//!
//! It enters the sending namespace, opens its socket there (AF_PACKET
//! bound to the interface, or a UDP socket for Geneve), and sends batches
//! of up to 32 stamped frames per sendmmsg call, as many as the token
//! bucket allows. All frames of a batch carry the batch's send time: they
//! leave in one call. When the kernel takes only part of a batch (the
//! socket buffer is full) the rest is stamped again with the next batch
//! under the same sequence numbers, so the receiver sees no gap that was
//! not a loss; such calls are counted (`tx_full`) and the thread backs off
//! briefly.

use crate::cpu::ThreadCpu;
use crate::{Error, Shared};
use std::io::{self, IoSlice};
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use vswitch::pktgen::frame::{geneve_header, Ring, Stamp};
use vswitch::pktgen::rate::TokenBucket;
use vswitch::pktgen::BATCH;
use vswitch::port::sys::packet::{PacketOptions, PacketSocket};
use vswitch::port::sys::tun::VNET_HDR_LEN;
use vswitch::port::sys::udp::{UdpOptions, UdpSock};
use vswitch::port::sys::{netdev, netns};

/// Where frames go.
#[derive(Debug, Clone)]
pub enum Target {
    /// AF_PACKET into this interface.
    Interface(String),
    /// Geneve over UDP.
    Geneve {
        /// The tunnel endpoint.
        remote: SocketAddr,
        /// Our end (None: any address, ephemeral port).
        local: Option<SocketAddr>,
        /// The VNI.
        vni: u32,
    },
}

/// What the thread is told.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where to send.
    pub target: Target,
    /// Namespace to enter first.
    pub netns: Option<String>,
    /// Packets per second (None: as fast as possible).
    pub rate: Option<u64>,
    /// Most packets.
    pub count: Option<u64>,
    /// Longest sending period.
    pub duration: Duration,
}

/// What the thread did.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// Frames the kernel took.
    pub packets: u64,
    /// Their bytes, with FCS.
    pub bytes: u64,
    /// The sending period (until the count was reached or time ran out).
    pub elapsed: Duration,
    /// Calls that found the socket full.
    pub full: u64,
    /// Share of a core used.
    pub cpu: f64,
}

enum Sock {
    Packet(PacketSocket),
    Udp(UdpSock, SocketAddr, [u8; 8]),
}

fn open(cfg: &Config) -> Result<Sock, Error> {
    if let Some(ns) = &cfg.netns {
        netns::enter(ns).map_err(|e| Error::io(format!("enter netns {ns} (tx)"), e))?;
    }
    match &cfg.target {
        Target::Interface(ifname) => {
            let idx = netdev::ifindex(ifname)
                .map_err(|e| Error::io(format!("interface {ifname} (tx)"), e))?;
            let opts = PacketOptions {
                // The receiver is elsewhere; we only send here.
                promisc: false,
                ..PacketOptions::default()
            };
            let s = PacketSocket::open(idx, opts)
                .map_err(|e| Error::io(format!("AF_PACKET socket on {ifname}"), e))?;
            Ok(Sock::Packet(s))
        }
        Target::Geneve { remote, local, vni } => {
            let local = local.unwrap_or_else(|| {
                if remote.is_ipv4() {
                    SocketAddr::from(([0, 0, 0, 0], 0))
                } else {
                    SocketAddr::from(([0u16; 8], 0))
                }
            });
            let s = UdpSock::bind(local, UdpOptions::default())
                .map_err(|e| Error::io(format!("UDP socket on {local}"), e))?;
            Ok(Sock::Udp(s, *remote, geneve_header(*vni)))
        }
    }
}

/// Starts the sending thread once its socket is open; an error opening it
/// is returned here.
pub fn start(
    cfg: Config,
    ring: Ring,
    epoch: Instant,
    shared: Arc<Shared>,
) -> Result<JoinHandle<Result<Outcome, Error>>, Error> {
    let (ready_tx, ready_rx) = mpsc::channel::<Result<(), Error>>();
    let h = std::thread::Builder::new()
        .name("pktgen-tx".into())
        .spawn(move || {
            let sock = match open(&cfg) {
                Ok(s) => {
                    let _ = ready_tx.send(Ok(()));
                    s
                }
                Err(e) => {
                    let _ = ready_tx.send(Err(e));
                    shared.tx_done.store(true, Ordering::Release);
                    return Err(Error::Usage("sender did not start".into()));
                }
            };
            let r = send_loop(&cfg, &sock, ring, epoch, &shared);
            shared.tx_done.store(true, Ordering::Release);
            r
        })
        .map_err(|e| Error::io("spawn the sending thread", e))?;
    match ready_rx.recv() {
        Ok(Ok(())) => Ok(h),
        Ok(Err(e)) => {
            let _ = h.join();
            Err(e)
        }
        Err(_) => Err(Error::Thread("sending")),
    }
}

fn is_full(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::WouldBlock || e.raw_os_error() == Some(libc::ENOBUFS)
}

fn send_loop(
    cfg: &Config,
    sock: &Sock,
    mut ring: Ring,
    epoch: Instant,
    shared: &Shared,
) -> Result<Outcome, Error> {
    let cpu = ThreadCpu::start();
    let flows = u64::from(ring.spec().flows);
    let limit = cfg.count.unwrap_or(u64::MAX);
    // The deadline is relative to when sending starts, not to the epoch:
    // the receiver's setup must not eat into the run.
    let t0 = epoch.elapsed();
    let end = t0 + cfg.duration;
    // Slack of four batches or 10 ms of packets, whichever is more: a
    // scheduler hiccup on a busy machine is made up for instead of
    // lowering the offered rate.
    let burst = (4 * BATCH as u64).max(cfg.rate.unwrap_or(0) / 100);
    let mut bucket = TokenBucket::new(cfg.rate, burst);
    // At high rates, wait for several packets' worth (about 100 us) and
    // send them in one call rather than one packet per syscall.
    let min_batch = (cfg.rate.unwrap_or(0) / 10_000).clamp(1, BATCH as u64);
    let vnet = [0u8; VNET_HDR_LEN];
    let mut seq = 0u64;
    let mut bytes = 0u64;
    let mut full = 0u64;
    while seq < limit && !shared.abort.load(Ordering::Relaxed) {
        let now = epoch.elapsed();
        if now >= end {
            break;
        }
        let now_ns = (now - t0).as_nanos() as u64;
        let want = (limit - seq).min(BATCH as u64);
        let n = bucket.take_at_least(now_ns, min_batch, want) as usize;
        if n == 0 {
            let w = Duration::from_nanos(bucket.wait_ns_for(min_batch.min(want))).min(end - now);
            // Sleeping costs ~60 us of timer slack; spin below that.
            if w >= Duration::from_micros(100) {
                std::thread::sleep(w - Duration::from_micros(50));
            } else {
                std::thread::yield_now();
            }
            continue;
        }
        let stamp_ns = now.as_nanos() as u32;
        for i in 0..n as u64 {
            let s = seq + i;
            ring.stamp(
                s,
                Stamp {
                    seq: s as u32,
                    time_ns: stamp_ns,
                    flow: (s % flows) as u32,
                },
            );
        }
        let r = match sock {
            Sock::Packet(p) => {
                let iovs: [[IoSlice<'_>; 2]; BATCH] = std::array::from_fn(|i| {
                    [
                        IoSlice::new(&vnet),
                        IoSlice::new(ring.frame(seq + (i.min(n - 1)) as u64)),
                    ]
                });
                p.send_batch(&iovs[..n])
            }
            Sock::Udp(u, remote, gh) => {
                let iovs: [[IoSlice<'_>; 2]; BATCH] = std::array::from_fn(|i| {
                    [
                        IoSlice::new(gh),
                        IoSlice::new(ring.frame(seq + (i.min(n - 1)) as u64)),
                    ]
                });
                let dsts = [*remote; BATCH];
                u.send_batch(&iovs[..n], &dsts[..n])
            }
        };
        let took = match r {
            Ok(m) => m.min(n),
            Err(e) if is_full(&e) => 0,
            Err(e) => {
                shared.abort.store(true, Ordering::Relaxed);
                return Err(Error::io("send", e));
            }
        };
        for i in 0..took as u64 {
            bytes += ring.size_of(seq + i) as u64;
        }
        seq += took as u64;
        shared.sent.store(seq, Ordering::Relaxed);
        if took < n {
            bucket.give_back((n - took) as u64);
            full += 1;
            // The socket buffer drains as the kernel delivers; a short
            // pause instead of a spin that would steal the CPU it needs.
            std::thread::sleep(Duration::from_micros(20));
        }
    }
    Ok(Outcome {
        packets: seq,
        bytes,
        elapsed: epoch.elapsed().min(end).saturating_sub(t0),
        full,
        cpu: cpu.share(),
    })
}
