//! In-memory ports: Open vSwitch's `type=dummy`.
//!
//! A [`MemPort`] lives in the datapath thread; its [`MemHandle`] (cheap to
//! clone, usable from any thread) injects frames into the port's receive
//! side (`vswitchctl inject`, like `netdev-dummy/receive`) and collects what
//! the switch sent out of it. For benchmarks, [`MemPort::generator`] replays
//! a fixed set of frames forever and only counts what it sends.

use super::{Error, Port, PortStats};
use crate::packet::{Batch, PacketPool};
use crossbeam_channel::{Receiver, Sender, TrySendError};
use parking_lot::Mutex;
use std::collections::VecDeque;
use std::sync::Arc;

/// How many sent frames a handle keeps before dropping the oldest.
pub const TX_KEEP: usize = 4096;

#[derive(Debug, Default)]
struct Shared {
    sent: Mutex<VecDeque<Vec<u8>>>,
    stats: Mutex<PortStats>,
}

/// The thread-safe side of a [`MemPort`].
#[derive(Debug, Clone)]
pub struct MemHandle {
    inject: Sender<Vec<u8>>,
    shared: Arc<Shared>,
}

impl MemHandle {
    /// Queues a frame on the port's receive side. Returns false when the
    /// queue is full (the frame is not queued).
    pub fn inject(&self, frame: &[u8]) -> bool {
        match self.inject.try_send(frame.to_vec()) {
            Ok(()) => true,
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => false,
        }
    }

    /// Takes every frame the switch sent out of this port so far.
    pub fn take_sent(&self) -> Vec<Vec<u8>> {
        self.shared.sent.lock().drain(..).collect()
    }

    /// Counters.
    pub fn stats(&self) -> PortStats {
        self.shared.stats.lock().clone()
    }
}

enum Mode {
    /// Frames come from the handle; sent frames are kept for the handle.
    Queue(Receiver<Vec<u8>>),
    /// Frames come from a fixed list, forever; sent frames are only counted.
    Generator { frames: Vec<Vec<u8>>, next: usize },
}

/// A generator's frames per queue (see [`MemPort::generator_per_queue`]):
/// the next queue opened takes the next list.
#[derive(Debug)]
struct QueueLists {
    lists: Vec<Vec<Vec<u8>>>,
    opened: std::sync::atomic::AtomicUsize,
}

/// An in-memory port.
pub struct MemPort {
    name: String,
    mode: Mode,
    // For a generator made per queue: the lists its other queues take.
    per_queue: Option<Arc<QueueLists>>,
    shared: Arc<Shared>,
    // Local counters, published to `shared` once per batch so the hot path
    // takes no lock per packet.
    stats: PortStats,
    mtu: u32,
    keep_sent: bool,
}

impl MemPort {
    /// A queue-backed port and its handle.
    pub fn new(name: &str) -> (MemPort, MemHandle) {
        let (tx, rx) = crossbeam_channel::bounded(4096);
        let shared = Arc::new(Shared::default());
        (
            MemPort {
                name: name.to_string(),
                mode: Mode::Queue(rx),
                per_queue: None,
                shared: shared.clone(),
                stats: PortStats::default(),
                mtu: 1500,
                keep_sent: true,
            },
            MemHandle { inject: tx, shared },
        )
    }

    /// A port that receives `frames` round-robin forever and discards what
    /// it sends (counting it). For benchmarks.
    pub fn generator(name: &str, frames: Vec<Vec<u8>>) -> (MemPort, MemHandle) {
        let (mut p, h) = MemPort::new(name);
        p.mode = Mode::Generator { frames, next: 0 };
        p.keep_sent = false;
        (p, h)
    }

    /// A generator whose queues replay different frames: this port (the
    /// first queue) `lists[0]`, the next queue opened `lists[1]`, and so
    /// on (round-robin past the end). As a multi-queue device keeps each
    /// flow on one queue, a bench of several workers gives each its own
    /// flows this way.
    pub fn generator_per_queue(name: &str, lists: Vec<Vec<Vec<u8>>>) -> (MemPort, MemHandle) {
        let (mut p, h) = MemPort::generator(name, lists.first().cloned().unwrap_or_default());
        p.per_queue = Some(Arc::new(QueueLists {
            lists,
            opened: std::sync::atomic::AtomicUsize::new(0),
        }));
        (p, h)
    }

    /// A queue-backed port that counts but does not keep what it sends.
    pub fn sink(name: &str) -> (MemPort, MemHandle) {
        let (mut p, h) = MemPort::new(name);
        p.keep_sent = false;
        (p, h)
    }

    /// Sets the MTU the port reports.
    pub fn set_mtu(&mut self, mtu: u32) {
        self.mtu = mtu;
    }

    fn publish(&self) {
        *self.shared.stats.lock() = self.stats.clone();
    }
}

impl Port for MemPort {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> &'static str {
        "dummy"
    }

    fn recv_batch(&mut self, pool: &mut PacketPool, batch: &mut Batch) -> Result<usize, Error> {
        let mut n = 0;
        match &mut self.mode {
            Mode::Queue(rx) => {
                while !batch.is_full() {
                    let Ok(frame) = rx.try_recv() else { break };
                    self.stats.rx_packets += 1;
                    self.stats.rx_bytes += frame.len() as u64;
                    let _ = batch.push(pool.get_from(&frame));
                    n += 1;
                }
            }
            Mode::Generator { frames, next } => {
                if frames.is_empty() {
                    return Ok(0);
                }
                while !batch.is_full() {
                    let f = &frames[*next];
                    *next = (*next + 1) % frames.len();
                    self.stats.rx_packets += 1;
                    self.stats.rx_bytes += f.len() as u64;
                    let _ = batch.push(pool.get_from(f));
                    n += 1;
                }
                // Generators do not publish per batch: benches read the
                // handle only at the end.
                return Ok(n);
            }
        }
        if n > 0 {
            self.publish();
        }
        Ok(n)
    }

    fn send_batch(&mut self, batch: &mut Batch, pool: &mut PacketPool) -> Result<usize, Error> {
        let n = batch.len();
        if self.keep_sent {
            let mut sent = self.shared.sent.lock();
            for p in batch.iter() {
                if sent.len() >= TX_KEEP {
                    sent.pop_front();
                }
                sent.push_back(p.data().to_vec());
            }
        }
        for p in batch.iter() {
            self.stats.tx_packets += 1;
            self.stats.tx_bytes += p.len() as u64;
        }
        batch.recycle(pool);
        if !matches!(self.mode, Mode::Generator { .. }) {
            self.publish();
        }
        Ok(n)
    }

    fn stats(&self) -> PortStats {
        self.stats.clone()
    }

    fn mtu(&self) -> u32 {
        self.mtu
    }

    /// A generator splits: each worker replays the same frames from its
    /// own queue (a bench of several workers). A queue-backed port keeps
    /// one queue, so what is injected leaves in the order it went in.
    fn open_queue(&self) -> Result<Option<Box<dyn Port>>, Error> {
        match &self.mode {
            Mode::Generator { .. } if self.per_queue.is_some() => {
                let Some(pq) = &self.per_queue else {
                    return Ok(None);
                };
                let k = pq.opened.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
                let list = pq.lists.get(k % pq.lists.len().max(1)).cloned();
                let (mut q, _h) = MemPort::generator(&self.name, list.unwrap_or_default());
                q.mtu = self.mtu;
                Ok(Some(Box::new(q)))
            }
            Mode::Generator { frames, next } => {
                let (mut q, _h) = MemPort::generator(&self.name, frames.clone());
                // Another phase of the same list: workers do not replay in
                // lockstep.
                q.mode = Mode::Generator {
                    frames: frames.clone(),
                    next: (*next + frames.len() / 2) % frames.len().max(1),
                };
                q.mtu = self.mtu;
                Ok(Some(Box::new(q)))
            }
            Mode::Queue(_) => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inject_receive_send_collect() {
        let (mut p, h) = MemPort::new("p1");
        let mut pool = PacketPool::new(2048);
        let mut b = Batch::new();
        assert!(h.inject(&[1, 2, 3]));
        assert_eq!(p.recv_batch(&mut pool, &mut b).unwrap(), 1);
        assert_eq!(b.as_slice()[0].data(), &[1, 2, 3]);
        assert_eq!(p.send_batch(&mut b, &mut pool).unwrap(), 1);
        assert!(b.is_empty());
        assert_eq!(h.take_sent(), vec![vec![1, 2, 3]]);
        let s = h.stats();
        assert_eq!((s.rx_packets, s.tx_packets, s.tx_bytes), (1, 1, 3));
    }

    #[test]
    fn only_generators_split_into_queues() {
        let (p, _h) = MemPort::new("p1");
        assert!(p.open_queue().unwrap().is_none());
        let (g, _h) = MemPort::generator("g", vec![vec![7; 64]]);
        let mut q = g.open_queue().unwrap().expect("a generator splits");
        let mut pool = PacketPool::new(2048);
        let mut b = Batch::new();
        assert_eq!(
            q.recv_batch(&mut pool, &mut b).unwrap(),
            crate::packet::MAX_BURST
        );
        // The queue counts its own traffic, not the first queue's.
        assert_eq!(g.stats().rx_packets, 0);
        assert_eq!(q.stats().rx_packets, crate::packet::MAX_BURST as u64);
    }

    #[test]
    fn generator_fills_batches() {
        let (mut p, _h) = MemPort::generator("g", vec![vec![0; 64], vec![1; 64]]);
        let mut pool = PacketPool::new(2048);
        let mut b = Batch::new();
        assert_eq!(
            p.recv_batch(&mut pool, &mut b).unwrap(),
            crate::packet::MAX_BURST
        );
        assert_eq!(b.as_slice()[1].data()[0], 1);
    }

    #[test]
    fn a_generator_per_queue_gives_each_queue_its_own_frames() {
        let lists = vec![vec![vec![0; 64]], vec![vec![1; 64]], vec![vec![2; 64]]];
        let (mut p, _h) = MemPort::generator_per_queue("g", lists);
        let mut pool = PacketPool::new(2048);
        let mut first = |port: &mut dyn Port| {
            let mut b = Batch::new();
            port.recv_batch(&mut pool, &mut b).unwrap();
            let all: Vec<u8> = b.iter().map(|f| f.data()[0]).collect();
            b.recycle(&mut pool);
            all
        };
        assert!(first(&mut p).iter().all(|&v| v == 0));
        for want in [1u8, 2, 0] {
            let mut q = p.open_queue().unwrap().expect("a generator splits");
            assert!(first(q.as_mut()).iter().all(|&v| v == want), "{want}");
        }
    }
}
