//! A bounded forwarding loop between two ports ([`Forwarder`]): the port
//! tests' stand-in for the datapath, so a port is checked against real
//! kernel traffic without the rest of the switch. Also the pairs of ports
//! it joins: two TAPs whose kernel sides are in two namespaces
//! ([`tap_pair`]), two AF_PACKET ports on veths whose far ends are
//! ([`afpacket_pair`]).

use super::{ip, unique_ifname, Lab};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use vswitch::packet::{Batch, Gso, PacketPool};
use vswitch::port::poll::Poller;
use vswitch::port::{AfPacketConfig, AfPacketPort, Port, TapConfig, TapPort};

/// Opens TAP `name` (created when missing), with or without vnet_hdr.
pub fn tap(name: &str, vnet_hdr: bool) -> TapPort {
    let mut c = TapConfig::new(name);
    c.vnet_hdr = vnet_hdr;
    TapPort::open(c).expect("open tap")
}

/// Sets `name` (in our namespace) up and attaches a system port to it.
pub fn afpacket(name: &str) -> AfPacketPort {
    ip(&["link", "set", "dev", name, "up"]);
    AfPacketPort::open(AfPacketConfig::new(name)).expect("attach system port")
}

/// Two ports and the namespaces on their far sides, at `10.NET.0.1/24`
/// (behind `a`) and `10.NET.0.2/24` (behind `b`).
pub struct Pair<P> {
    pub a: P,
    pub b: P,
    pub ns1: String,
    pub ns2: String,
}

/// Two TAPs (vnet_hdr as given) whose kernel sides are moved into two new
/// namespaces, as the side-by-side harness does with VMs.
pub fn tap_pair(lab: &mut Lab, net: u8, vnet_a: bool, vnet_b: bool) -> Pair<TapPort> {
    let (na, nb) = (unique_ifname("ta"), unique_ifname("tb"));
    let (a, b) = (tap(&na, vnet_a), tap(&nb, vnet_b));
    let (ns1, ns2) = (lab.netns(), lab.netns());
    lab.plug(&na, &ns1, &format!("10.{net}.0.1/24"));
    lab.plug(&nb, &ns2, &format!("10.{net}.0.2/24"));
    Pair { a, b, ns1, ns2 }
}

/// Two system ports on veths whose far ends are in two new namespaces.
pub fn afpacket_pair(lab: &mut Lab, net: u8) -> Pair<AfPacketPort> {
    let (va1, vb1) = lab.veth();
    let (va2, vb2) = lab.veth();
    let (ns1, ns2) = (lab.netns(), lab.netns());
    lab.plug(&vb1, &ns1, &format!("10.{net}.0.1/24"));
    lab.plug(&vb2, &ns2, &format!("10.{net}.0.2/24"));
    let (a, b) = (afpacket(&va1), afpacket(&va2));
    Pair { a, b, ns1, ns2 }
}

/// What a [`Forwarder`] moved.
#[derive(Debug, Default, Clone, Copy)]
pub struct Forwarded {
    /// Frames moved a -> b.
    pub a_to_b: u64,
    /// Frames moved b -> a.
    pub b_to_a: u64,
    /// Of those, GSO super-packets.
    pub gso: u64,
    /// Wall time the loop ran.
    pub elapsed: Duration,
}

/// A hook called on each frame the forwarder moves: (from port 0/1, frame).
pub type Tap = Box<dyn FnMut(usize, &[u8]) + Send>;

/// The test's stand-in for the datapath: a thread forwarding everything
/// between two ports, sleeping on a [`Poller`], calling housekeeping, bounded
/// in time; [`Forwarder::stop`] gives the ports back.
pub struct Forwarder<A: Port + 'static, B: Port + 'static> {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<(A, B, Forwarded)>>,
}

impl<A: Port + 'static, B: Port + 'static> Forwarder<A, B> {
    /// Starts forwarding between `a` and `b` for at most `limit`.
    pub fn start(a: A, b: B, limit: Duration) -> Self {
        Self::start_with(a, b, limit, None)
    }

    /// As [`Forwarder::start`], calling `tap` on every forwarded frame.
    pub fn start_with(mut a: A, mut b: B, limit: Duration, mut tap: Option<Tap>) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let st = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut poller = Poller::new().expect("poller");
            let mut pool = PacketPool::new(2048);
            let mut batch = Batch::new();
            let mut ready = Vec::new();
            let mut f = Forwarded::default();
            let t0 = Instant::now();
            let mut last_hk = t0;
            while !st.load(Ordering::Relaxed) && t0.elapsed() < limit {
                poller.set(0, a.poll_fd()).expect("poll a");
                poller.set(1, b.poll_fd()).expect("poll b");
                let _ = poller.wait(Some(Duration::from_millis(20)), &mut ready);
                for dir in 0..2 {
                    for _ in 0..8 {
                        let n = if dir == 0 {
                            a.recv_batch(&mut pool, &mut batch).expect("recv")
                        } else {
                            b.recv_batch(&mut pool, &mut batch).expect("recv")
                        };
                        if n == 0 {
                            break;
                        }
                        for p in batch.iter() {
                            if p.meta.gso != Gso::None {
                                f.gso += 1;
                            }
                            if let Some(t) = tap.as_mut() {
                                t(dir, p.data());
                            }
                        }
                        if dir == 0 {
                            f.a_to_b += n as u64;
                            b.send_batch(&mut batch, &mut pool).expect("send");
                        } else {
                            f.b_to_a += n as u64;
                            a.send_batch(&mut batch, &mut pool).expect("send");
                        }
                        // Whatever the port could not take now is dropped:
                        // this loop has no queues.
                        batch.recycle(&mut pool);
                    }
                }
                if last_hk.elapsed() > Duration::from_millis(50) {
                    a.housekeeping();
                    b.housekeeping();
                    last_hk = Instant::now();
                }
            }
            f.elapsed = t0.elapsed();
            (a, b, f)
        });
        Forwarder {
            stop,
            thread: Some(thread),
        }
    }

    /// Stops the loop and returns the ports and what moved.
    pub fn stop(mut self) -> (A, B, Forwarded) {
        self.stop.store(true, Ordering::Relaxed);
        self.thread
            .take()
            .expect("forwarder running")
            .join()
            .expect("forwarder thread panicked")
    }
}

impl<A: Port + 'static, B: Port + 'static> Drop for Forwarder<A, B> {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
