//! The receiving thread.
//!
//! It enters the receiving namespace, opens a promiscuous AF_PACKET socket
//! on the interface, and reads batches of up to 32 frames per recvmmsg,
//! sleeping in epoll when there is nothing to read (a busy receiver would
//! take the CPU the switch under test needs). A frame's latency ends at
//! the kernel's receive stamp of it (SO_TIMESTAMPNS), so the time this
//! thread takes to wake up is not counted. Only the first bytes of a
//! frame are copied (the headers and the stamp); the kernel still reports
//! each frame's full length. Once the sender is done the receiver keeps
//! reading until every sent frame arrived, or nothing arrived for the
//! drain time, or a hard bound passed: the run always ends.

use crate::cpu::ThreadCpu;
use crate::{Error, Shared};
use std::io::{self, IoSliceMut};
use std::os::fd::{AsFd, AsRawFd};
use std::sync::atomic::Ordering;
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use vswitch::pktgen::account::Account;
use vswitch::pktgen::BATCH;
use vswitch::port::sys::epoll::{self, Epoll, Event};
use vswitch::port::sys::packet::{PacketOptions, PacketRecv, PacketSocket, PACKET_OUTGOING};
use vswitch::port::sys::tun::VNET_HDR_LEN;
use vswitch::port::sys::{netdev, netns};

/// Bytes of each frame copied: room for two VLAN tags, IPv6, TCP with
/// options and the stamp.
const SNAP: usize = 192;

/// What the thread is told.
#[derive(Debug, Clone)]
pub struct Config {
    /// Interface to receive on.
    pub ifname: String,
    /// Namespace to enter first.
    pub netns: Option<String>,
    /// Flows of the run (a stamp with a higher flow id is foreign).
    pub flows: u32,
    /// How long to wait for stragglers once the sender is done.
    pub drain: Duration,
    /// Stop at this time since the epoch, whatever happens.
    pub hard_stop: Duration,
}

/// What the thread counted.
#[derive(Debug)]
pub struct Outcome {
    /// The counters.
    pub account: Account,
    /// Share of a core used.
    pub cpu: f64,
}

fn open(cfg: &Config) -> Result<(PacketSocket, Epoll), Error> {
    if let Some(ns) = &cfg.netns {
        netns::enter(ns).map_err(|e| Error::io(format!("enter netns {ns} (rx)"), e))?;
    }
    let idx = netdev::ifindex(&cfg.ifname)
        .map_err(|e| Error::io(format!("interface {} (rx)", cfg.ifname), e))?;
    let sock = PacketSocket::open(
        idx,
        PacketOptions {
            promisc: true,
            rcvbuf: 16 << 20,
            sndbuf: 0,
            fanout: None,
            timestamps: true,
        },
    )
    .map_err(|e| Error::io(format!("AF_PACKET socket on {}", cfg.ifname), e))?;
    let ep = Epoll::new().map_err(|e| Error::io("epoll", e))?;
    ep.add(sock.as_fd().as_raw_fd(), 0, epoll::IN)
        .map_err(|e| Error::io("epoll add", e))?;
    Ok((sock, ep))
}

/// Starts the receiving thread once its socket is open (so no frame sent
/// afterwards is missed); an error opening it is returned here.
pub fn start(
    cfg: Config,
    epoch: Instant,
    shared: Arc<Shared>,
) -> Result<JoinHandle<Result<Outcome, Error>>, Error> {
    let (ready_tx, ready_rx) = mpsc::channel::<Result<(), Error>>();
    let h = std::thread::Builder::new()
        .name("pktgen-rx".into())
        .spawn(move || {
            let (sock, ep) = match open(&cfg) {
                Ok(s) => {
                    let _ = ready_tx.send(Ok(()));
                    s
                }
                Err(e) => {
                    let _ = ready_tx.send(Err(e));
                    return Err(Error::Usage("receiver did not start".into()));
                }
            };
            recv_loop(&cfg, &sock, &ep, epoch, &shared)
        })
        .map_err(|e| Error::io("spawn the receiving thread", e))?;
    match ready_rx.recv() {
        Ok(Ok(())) => Ok(h),
        Ok(Err(e)) => {
            let _ = h.join();
            Err(e)
        }
        Err(_) => Err(Error::Thread("receiving")),
    }
}

/// The kernel's receive stamps (`CLOCK_REALTIME`) on the run's own clock
/// (nanoseconds since `epoch`, monotonic), by the offset between the two
/// read once at the start. A frame's latency then ends when the kernel
/// took the frame in (inside the switch's write of it, for a TAP), not
/// when this thread got round to reading it: the receiving thread's own
/// wakeups are not the switch's latency.
struct KernelClock {
    /// `CLOCK_REALTIME` at `epoch`, in nanoseconds.
    real_at_epoch: Option<u128>,
}

impl KernelClock {
    fn new(epoch: Instant) -> KernelClock {
        // The monotonic reading halfway between two around the realtime one.
        let a = epoch.elapsed();
        let real = SystemTime::now().duration_since(UNIX_EPOCH).ok();
        let b = epoch.elapsed();
        let mono = (a + b) / 2;
        KernelClock {
            real_at_epoch: real.and_then(|r| r.checked_sub(mono)).map(|d| d.as_nanos()),
        }
    }

    /// A kernel stamp as nanoseconds since the epoch; `None` without a
    /// stamp, or one from before the epoch (a clock stepped back).
    fn since_epoch(&self, stamp: Option<Duration>) -> Option<u64> {
        let ns = stamp?.as_nanos().checked_sub(self.real_at_epoch?)?;
        u64::try_from(ns).ok()
    }
}

fn recv_loop(
    cfg: &Config,
    sock: &PacketSocket,
    ep: &Epoll,
    epoch: Instant,
    shared: &Shared,
) -> Result<Outcome, Error> {
    let cpu = ThreadCpu::start();
    let mut acc = Account::new(cfg.flows);
    let mut vnet = [[0u8; VNET_HDR_LEN]; BATCH];
    let mut bufs = [[0u8; SNAP]; BATCH];
    let mut out = [PacketRecv::default(); BATCH];
    let mut events = [Event::default(); 4];
    // When the sender finished, and when our last frame arrived after that.
    let mut done_at: Option<Duration> = None;
    let mut last_rx = Duration::ZERO;
    let clock = KernelClock::new(epoch);
    loop {
        let got = {
            let mut empty: [[u8; 0]; BATCH] = [[]; BATCH];
            // Exactly BATCH of each, so the iterator never runs dry.
            let mut parts = vnet.iter_mut().zip(bufs.iter_mut()).zip(empty.iter_mut());
            let mut iovs: [[IoSliceMut<'_>; 3]; BATCH] = std::array::from_fn(|_| {
                let ((v, b), e) = parts.next().expect("BATCH buffers of each kind");
                [IoSliceMut::new(v), IoSliceMut::new(b), IoSliceMut::new(e)]
            });
            match sock.recv_batch(&mut iovs, &mut out) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => 0,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => 0,
                Err(e) => {
                    shared.abort.store(true, Ordering::Relaxed);
                    return Err(Error::io(format!("receive on {}", cfg.ifname), e));
                }
            }
        };
        let now = epoch.elapsed();
        if got > 0 {
            let now_ns = now.as_nanos() as u64;
            for i in 0..got {
                let r = &out[i];
                if r.pkttype == PACKET_OUTGOING {
                    continue;
                }
                let snap = &bufs[i][..r.len.min(SNAP)];
                acc.frame(snap, r.len, clock.since_epoch(r.stamp).unwrap_or(now_ns));
            }
            shared.received.store(acc.packets, Ordering::Relaxed);
            last_rx = now;
        }
        if done_at.is_none() && shared.tx_done.load(Ordering::Acquire) {
            done_at = Some(now);
        }
        if let Some(d) = done_at {
            let sent = shared.sent.load(Ordering::Relaxed);
            let quiet_since = d.max(last_rx);
            if acc.packets >= sent || now.saturating_sub(quiet_since) >= cfg.drain {
                break;
            }
        }
        if now >= cfg.hard_stop || shared.abort.load(Ordering::Relaxed) {
            break;
        }
        if got == 0 {
            // Nothing queued: sleep until a frame arrives (or 20 ms, to
            // notice the end of the run).
            match ep.wait(&mut events, 20) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(Error::io("epoll wait", e)),
            }
        }
    }
    Ok(Outcome {
        account: acc,
        cpu: cpu.share(),
    })
}
