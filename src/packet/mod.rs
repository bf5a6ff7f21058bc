//! Packets as the datapath handles them.
//!
//! * [`PacketBuf`]: owned bytes with headroom in front, so pushing a VLAN tag
//!   or a whole tunnel header moves a pointer instead of the payload.
//! * [`PacketMeta`]: what travels with a packet but is not in its bytes:
//!   input port, tunnel metadata, conntrack state, recirculation id, and the
//!   header offsets found by key extraction.
//! * [`Batch`]: up to [`MAX_BURST`] packets, the unit every stage works on.
//! * [`PacketPool`]: per-worker free list, so the steady state allocates
//!   nothing per packet.
//!
//! Nothing here is shared between threads: a worker owns its batches and its
//! pool.

mod buf;
pub mod gso;
mod meta;

pub use buf::{PacketBuf, PacketData, DEFAULT_CAPACITY, HEADROOM};
pub use meta::{CsumStatus, CtState, Gso, PacketMeta, TunnelMeta, TUN_METADATA_FIELDS};

/// Batch size, as Open vSwitch's `NETDEV_MAX_BURST`.
pub const MAX_BURST: usize = 32;

/// Up to [`MAX_BURST`] packets. Backed by a `Vec` whose capacity is reserved
/// once; pushing within the limit never allocates.
#[derive(Debug)]
pub struct Batch {
    pkts: Vec<PacketBuf>,
}

impl Default for Batch {
    fn default() -> Self {
        Self::new()
    }
}

impl Batch {
    /// An empty batch with room for [`MAX_BURST`] packets.
    pub fn new() -> Self {
        Batch {
            pkts: Vec::with_capacity(MAX_BURST),
        }
    }

    /// Number of packets held.
    pub fn len(&self) -> usize {
        self.pkts.len()
    }

    /// True when the batch holds no packet.
    pub fn is_empty(&self) -> bool {
        self.pkts.is_empty()
    }

    /// True when no more packets fit.
    pub fn is_full(&self) -> bool {
        self.pkts.len() >= MAX_BURST
    }

    /// Free slots left.
    pub fn free(&self) -> usize {
        MAX_BURST.saturating_sub(self.pkts.len())
    }

    /// Appends a packet; gives it back when the batch is full (so the
    /// caller can recycle it instead of losing the buffer).
    pub fn push(&mut self, pkt: PacketBuf) -> Result<(), PacketBuf> {
        if self.is_full() {
            return Err(pkt);
        }
        self.pkts.push(pkt);
        Ok(())
    }

    /// Removes and returns the last packet.
    pub fn pop(&mut self) -> Option<PacketBuf> {
        self.pkts.pop()
    }

    /// The packets, in order.
    pub fn iter(&self) -> core::slice::Iter<'_, PacketBuf> {
        self.pkts.iter()
    }

    /// The packets, mutably.
    pub fn iter_mut(&mut self) -> core::slice::IterMut<'_, PacketBuf> {
        self.pkts.iter_mut()
    }

    /// The packets as a slice.
    pub fn as_slice(&self) -> &[PacketBuf] {
        &self.pkts
    }

    /// The packets as a mutable slice.
    pub fn as_mut_slice(&mut self) -> &mut [PacketBuf] {
        &mut self.pkts
    }

    /// Removes all packets, in order, keeping the capacity.
    pub fn drain(&mut self) -> std::vec::Drain<'_, PacketBuf> {
        self.pkts.drain(..)
    }

    /// Removes the first `n` packets (those a port managed to send) and
    /// gives their buffers back to `pool`.
    pub fn consume_front(&mut self, n: usize, pool: &mut PacketPool) {
        let n = n.min(self.pkts.len());
        for p in self.pkts.drain(..n) {
            pool.put(p);
        }
    }

    /// Returns every packet's buffer to `pool`.
    pub fn recycle(&mut self, pool: &mut PacketPool) {
        for p in self.pkts.drain(..) {
            pool.put(p);
        }
    }
}

/// A per-worker free list of packet buffers.
///
/// Buffers leave the pool on receive and come back after transmit or drop;
/// the pool only allocates while it warms up (or when a burst outgrows it).
#[derive(Debug, Default)]
pub struct PacketPool {
    free: Vec<PacketBuf>,
    capacity: usize,
    allocated: u64,
    /// Buffers a super-packet grew, handed out first: a TAP's next
    /// super-packet then lands in one without growing another.
    grown: Vec<PacketBuf>,
}

/// Most buffers grown by a super-packet (64 KiB each) a pool keeps as
/// they are: enough for the super-packets of a few TSO streams in flight
/// at once. One more is shrunk back to the pool's size when it comes
/// back. Keeping every one let a long TCP stream grow the buffers deep in
/// the free list one by one, up to all 512 of them (32 MiB).
pub const MAX_GROWN: usize = 2 * MAX_BURST;

impl PacketPool {
    /// A pool whose buffers hold `capacity` bytes after the headroom.
    pub fn new(capacity: usize) -> Self {
        PacketPool {
            free: Vec::with_capacity(4 * MAX_BURST),
            capacity,
            allocated: 0,
            grown: Vec::with_capacity(MAX_GROWN),
        }
    }

    /// Bytes a buffer of this pool holds in all when not grown.
    fn base_size(&self) -> usize {
        buf::HEADROOM + self.capacity.max(DEFAULT_CAPACITY)
    }

    /// A reset buffer, from the free list when possible.
    pub fn get(&mut self) -> PacketBuf {
        match self.grown.pop().or_else(|| self.free.pop()) {
            Some(mut p) => {
                p.reset();
                p
            }
            None => {
                self.allocated += 1;
                PacketBuf::with_capacity(self.capacity.max(DEFAULT_CAPACITY))
            }
        }
    }

    /// A buffer holding a copy of `data`.
    pub fn get_from(&mut self, data: &[u8]) -> PacketBuf {
        let mut p = self.get();
        p.set_data(data);
        p
    }

    /// A copy of `src` (bytes and metadata), used by flood and multi-output.
    pub fn clone_packet(&mut self, src: &PacketBuf) -> PacketBuf {
        let mut p = self.get();
        p.set_data(src.data());
        p.meta = src.meta.clone();
        p
    }

    /// Gives a buffer back.
    pub fn put(&mut self, mut p: PacketBuf) {
        // Bounded, so a burst that outgrew the pool once (many packets in
        // flight during a flood) does not pin that memory forever. Buffers
        // grown by a GSO super-packet are kept, up to MAX_GROWN: TSO
        // traffic reuses them.
        let base = self.base_size();
        if p.size() > base {
            if self.grown.len() < MAX_GROWN {
                self.grown.push(p);
                return;
            }
            p.shrink_to(base);
        }
        if self.free.len() < 16 * MAX_BURST {
            self.free.push(p);
        }
    }

    /// How many buffers this pool ever allocated (a benchmark checks that it
    /// stops growing in the steady state).
    pub fn allocated(&self) -> u64 {
        self.allocated
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_never_exceeds_burst() {
        let mut pool = PacketPool::new(2048);
        let mut b = Batch::new();
        for _ in 0..MAX_BURST {
            assert!(b.push(pool.get()).is_ok());
        }
        assert!(b.is_full());
        assert!(b.push(pool.get()).is_err());
        b.consume_front(10, &mut pool);
        assert_eq!(b.len(), MAX_BURST - 10);
        b.recycle(&mut pool);
        assert!(b.is_empty());
        let before = pool.allocated();
        for _ in 0..MAX_BURST {
            let _ = b.push(pool.get());
        }
        assert_eq!(pool.allocated(), before, "steady state reuses buffers");
    }

    /// A pool keeps at most MAX_GROWN buffers a super-packet grew; the
    /// others come back to their ordinary size.
    #[test]
    fn grown_buffers_kept_are_bounded() {
        let mut pool = PacketPool::new(2048);
        let base = buf::HEADROOM + 2048;
        let mut held: Vec<PacketBuf> = (0..MAX_GROWN + 10)
            .map(|_| {
                let mut p = pool.get();
                p.extend_zeroed(65_000);
                p
            })
            .collect();
        for p in held.drain(..) {
            pool.put(p);
        }
        // The grown ones come out first.
        let sizes: Vec<usize> = (0..MAX_GROWN + 10).map(|_| pool.get().size()).collect();
        assert!(sizes[..MAX_GROWN].iter().all(|&s| s > base), "{sizes:?}");
        assert!(sizes[MAX_GROWN..].iter().all(|&s| s == base), "{sizes:?}");
        let p = pool.get();
        assert_eq!(p.size(), base);
        assert!(p.is_empty());
    }
}
