//! [`PacketBuf`]: owned packet bytes with headroom.

use super::PacketMeta;

/// Bytes reserved in front of received data: enough for an outer
/// Ethernet + IPv6 + UDP + Geneve header (70 bytes) with 128 bytes of
/// options, or several VLAN tags, without moving the payload.
pub const HEADROOM: usize = 256;

/// Default room after the headroom: a 1500-byte MTU frame with two VLAN
/// tags, rounded up.
pub const DEFAULT_CAPACITY: usize = 2048;

/// An owned packet. A single pointer: batches, pools and transmit queues
/// move packets around many times per packet, and moving 8 bytes instead
/// of the ~200 bytes of bytes-plus-metadata is what keeps that free. The
/// box is allocated once, when the pool grows, and then recycled.
#[derive(Clone)]
pub struct PacketBuf {
    inner: Box<PacketData>,
}

/// The packet itself: `buf[start..end]` is the frame, `buf[..start]` is
/// free headroom. Reached through [`PacketBuf`]'s `Deref`.
#[derive(Clone)]
pub struct PacketData {
    buf: Vec<u8>,
    start: usize,
    end: usize,
    /// Metadata travelling with the packet.
    pub meta: PacketMeta,
}

impl core::ops::Deref for PacketBuf {
    type Target = PacketData;
    #[inline]
    fn deref(&self) -> &PacketData {
        &self.inner
    }
}

impl core::ops::DerefMut for PacketBuf {
    #[inline]
    fn deref_mut(&mut self) -> &mut PacketData {
        &mut self.inner
    }
}

impl core::fmt::Debug for PacketBuf {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("PacketBuf")
            .field("len", &self.len())
            .field("headroom", &self.start)
            .field("meta", &self.meta)
            .finish()
    }
}

impl PacketBuf {
    /// An empty buffer with [`HEADROOM`] in front and `capacity` after it.
    pub fn with_capacity(capacity: usize) -> Self {
        PacketBuf {
            inner: Box::new(PacketData {
                buf: vec![0; HEADROOM + capacity],
                start: HEADROOM,
                end: HEADROOM,
                meta: PacketMeta::default(),
            }),
        }
    }

    /// A buffer holding a copy of `data` (tests and slow paths).
    pub fn from_slice(data: &[u8]) -> Self {
        let mut p = PacketBuf::with_capacity(data.len().max(DEFAULT_CAPACITY));
        p.set_data(data);
        p
    }
}

impl PacketData {
    /// Empties the buffer and clears its metadata, restoring full headroom.
    pub fn reset(&mut self) {
        self.start = HEADROOM.min(self.buf.len());
        self.end = self.start;
        self.meta = PacketMeta::default();
    }

    /// The frame.
    #[inline]
    pub fn data(&self) -> &[u8] {
        &self.buf[self.start..self.end]
    }

    /// The frame, mutably.
    #[inline]
    pub fn data_mut(&mut self) -> &mut [u8] {
        &mut self.buf[self.start..self.end]
    }

    /// The frame and the metadata at once (conntrack reads the bytes while
    /// it writes the metadata).
    #[inline]
    pub fn split(&mut self) -> (&[u8], &mut PacketMeta) {
        (&self.buf[self.start..self.end], &mut self.meta)
    }

    /// Frame length in bytes.
    #[inline]
    pub fn len(&self) -> usize {
        self.end - self.start
    }

    /// True for an empty frame.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.end == self.start
    }

    /// Free bytes in front of the frame.
    #[inline]
    pub fn headroom(&self) -> usize {
        self.start
    }

    /// Bytes the buffer holds in all: headroom, frame and tailroom.
    pub fn size(&self) -> usize {
        self.buf.len()
    }

    /// Empties the buffer and gives back what it grew by beyond `size`
    /// bytes in all (a super-packet's room), keeping [`HEADROOM`].
    pub fn shrink_to(&mut self, size: usize) {
        if self.buf.len() > size {
            self.buf.truncate(size);
            self.buf.shrink_to_fit();
        }
        self.reset();
    }

    /// Free bytes after the frame.
    #[inline]
    pub fn tailroom(&self) -> usize {
        self.buf.len() - self.end
    }

    /// Replaces the frame with a copy of `data`, keeping the metadata.
    pub fn set_data(&mut self, data: &[u8]) {
        let start = HEADROOM.min(self.buf.len());
        if self.buf.len() < start + data.len() {
            self.buf.resize(start + data.len(), 0);
        }
        self.start = start;
        self.end = start + data.len();
        self.buf[self.start..self.end].copy_from_slice(data);
    }

    /// The whole writable area after the headroom, for a port to receive
    /// into; call [`PacketData::set_len`] with the received length after.
    pub fn rx_area(&mut self) -> &mut [u8] {
        self.start = HEADROOM.min(self.buf.len());
        self.end = self.start;
        &mut self.buf[self.start..]
    }

    /// Sets the frame length after receiving into [`PacketData::rx_area`].
    /// Lengths past the buffer are clamped.
    pub fn set_len(&mut self, len: usize) {
        self.end = (self.start + len).min(self.buf.len());
    }

    /// Grows the frame by `n` bytes at the front and returns them. Moves the
    /// frame (slow path) only when the headroom is too small.
    pub fn push_front(&mut self, n: usize) -> &mut [u8] {
        if n > self.start {
            let grow = n - self.start + HEADROOM;
            let mut nb = vec![0; self.buf.len() + grow];
            nb[self.start + grow..self.end + grow].copy_from_slice(&self.buf[self.start..self.end]);
            self.buf = nb;
            self.start += grow;
            self.end += grow;
        }
        self.start -= n;
        &mut self.buf[self.start..self.start + n]
    }

    /// Removes `n` bytes from the front (clamped to the frame length).
    pub fn pull_front(&mut self, n: usize) {
        self.start += n.min(self.len());
    }

    /// Shortens the frame to `len` bytes (no-op when already shorter).
    pub fn truncate(&mut self, len: usize) {
        if len < self.len() {
            self.end = self.start + len;
        }
    }

    /// Appends `n` zero bytes at the end (used to pad short frames: the
    /// bytes are always zeroed, never left over from an earlier packet).
    pub fn extend_zeroed(&mut self, n: usize) {
        if self.tailroom() < n {
            self.buf.resize(self.end + n, 0);
        }
        self.buf[self.end..self.end + n].fill(0);
        self.end += n;
    }

    /// Appends a copy of `data` at the end: one pass over the bytes, where
    /// [`PacketData::extend_zeroed`] and a copy would write a grown
    /// buffer's new bytes three times (a 64 KiB super-packet received past
    /// a pool buffer's area is appended so).
    pub fn extend_from_slice(&mut self, data: &[u8]) {
        if self.tailroom() < data.len() {
            // What lies past the frame is free area: drop it, then the
            // vector grows by exactly the copy.
            self.buf.truncate(self.end);
            self.buf.extend_from_slice(data);
        } else {
            self.buf[self.end..self.end + data.len()].copy_from_slice(data);
        }
        self.end += data.len();
    }

    /// Inserts `n` bytes at `offset` inside the frame by moving the bytes in
    /// front of it into the headroom (a VLAN tag after the MAC addresses
    /// moves 12 bytes, not the payload). Returns the inserted bytes.
    pub fn insert_at(&mut self, offset: usize, n: usize) -> &mut [u8] {
        let offset = offset.min(self.len());
        self.push_front(n);
        let s = self.start;
        self.buf.copy_within(s + n..s + n + offset, s);
        &mut self.buf[s + offset..s + offset + n]
    }

    /// Removes `n` bytes at `offset` by moving the bytes in front of it
    /// forward (a VLAN pop moves 12 bytes).
    pub fn remove_at(&mut self, offset: usize, n: usize) {
        let offset = offset.min(self.len());
        let n = n.min(self.len() - offset);
        let s = self.start;
        self.buf.copy_within(s..s + offset, s + n);
        self.start += n;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn push_and_pull_use_headroom() {
        let mut p = PacketBuf::from_slice(&[1, 2, 3, 4]);
        let h = p.headroom();
        p.push_front(2).copy_from_slice(&[9, 9]);
        assert_eq!(p.data(), &[9, 9, 1, 2, 3, 4]);
        assert_eq!(p.headroom(), h - 2);
        p.pull_front(2);
        assert_eq!(p.data(), &[1, 2, 3, 4]);
    }

    #[test]
    fn push_beyond_headroom_moves_once() {
        let mut p = PacketBuf::from_slice(&[7; 10]);
        p.push_front(HEADROOM + 20).fill(1);
        assert_eq!(p.len(), HEADROOM + 30);
        assert_eq!(&p.data()[HEADROOM + 20..], &[7; 10]);
    }

    #[test]
    fn insert_and_remove_middle() {
        let mut p = PacketBuf::from_slice(&[0, 1, 2, 3, 4, 5]);
        p.insert_at(2, 2).copy_from_slice(&[0xa, 0xb]);
        assert_eq!(p.data(), &[0, 1, 0xa, 0xb, 2, 3, 4, 5]);
        p.remove_at(2, 2);
        assert_eq!(p.data(), &[0, 1, 2, 3, 4, 5]);
    }

    #[test]
    fn extend_from_slice_within_and_past_the_area() {
        let mut p = PacketBuf::with_capacity(64);
        p.set_data(&[1, 2, 3]);
        p.extend_from_slice(&[4, 5]);
        assert_eq!(p.data(), &[1, 2, 3, 4, 5]);
        let size = p.size();
        // Past the area: the buffer grows by what is appended.
        let big: Vec<u8> = (0..size as u32).map(|i| i as u8).collect();
        p.extend_from_slice(&big);
        assert_eq!(p.len(), 5 + big.len());
        assert_eq!(&p.data()[..5], &[1, 2, 3, 4, 5]);
        assert_eq!(&p.data()[5..], &big[..]);
        assert_eq!(p.tailroom(), 0);
    }

    #[test]
    fn padding_is_zero_even_over_old_bytes() {
        let mut p = PacketBuf::from_slice(&[0xff; 64]);
        p.truncate(40);
        p.extend_zeroed(20);
        assert_eq!(&p.data()[40..], &[0; 20]);
    }
}
