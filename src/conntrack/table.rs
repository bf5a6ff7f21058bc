//! One shard of the connection table: a slab of entries, a hash index and
//! a timer wheel.
//!
//! * The slab holds entries in fixed chunks of [`CHUNK`] so growth never
//!   copies (or doubles) the whole table; freed slots are chained through
//!   their wheel link and reused first.
//! * The index is a `hashbrown::HashTable<u32>` of slab positions, keyed by
//!   the *canonical* key (the two endpoints in a fixed order), so one entry
//!   answers both directions of a connection.
//! * The wheel has [`WHEEL_SLOTS`] one-second slots, each a doubly linked
//!   list threaded through the entries. An entry is filed under the tick
//!   of its expiration; a packet that extends the expiration leaves it where
//!   it is (the sweep re-files it when the slot comes due), a packet that
//!   shortens it moves it. A sweep therefore visits the slots that came due
//!   and the entries in them, never the whole table.
//!
//! Not thread-safe by itself: the tracker wraps each shard in a mutex.

use hashbrown::HashTable;

use std::collections::HashMap;

use super::tcp::{IgnoredSyn, TcpConn};
use super::TimeoutKind;
use crate::wire::IpProtocol;

/// Entries per slab chunk.
pub(crate) const CHUNK: usize = 1024;
/// Timer wheel slots (one second each): about 17 minutes per turn.
pub(crate) const WHEEL_SLOTS: usize = 1024;
/// Milliseconds per wheel tick.
pub(crate) const TICK_MS: u64 = 1000;
/// Longest timeout an entry can carry (just under 2^31 ms, 24.8 days):
/// see `Conn::exp`.
pub(crate) const MAX_TIMEOUT_MS: u64 = (1 << 31) - TICK_MS;
const NIL: u32 = u32::MAX;

/// A connection key: zone, protocol and the two endpoints. IPv4 addresses
/// use the first 4 bytes. For ICMP the "ports" are the ICMP type of each
/// direction (request, reply) and `id` the echo identifier, so reversing a
/// key is swapping its ends in every protocol.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct ConnKey {
    pub src: [u8; 16],
    pub dst: [u8; 16],
    pub sport: u16,
    pub dport: u16,
    pub id: u16,
    pub zone: u16,
    pub proto: u8,
    pub v6: bool,
}

impl core::hash::Hash for ConnKey {
    /// Six words instead of a field-by-field byte stream: this runs per
    /// packet.
    #[inline]
    fn hash<H: core::hash::Hasher>(&self, h: &mut H) {
        let w = |a: &[u8; 16], i: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&a[i..i + 8]);
            u64::from_ne_bytes(b)
        };
        h.write_u64(w(&self.src, 0));
        h.write_u64(w(&self.src, 8));
        h.write_u64(w(&self.dst, 0));
        h.write_u64(w(&self.dst, 8));
        h.write_u64(
            u64::from(self.sport)
                | u64::from(self.dport) << 16
                | u64::from(self.id) << 32
                | u64::from(self.zone) << 48,
        );
        h.write_u64(u64::from(self.proto) | u64::from(self.v6) << 8);
    }
}

impl ConnKey {
    /// ICMP over IPv4 or ICMPv6 over IPv6: the "ports" are ICMP types.
    pub fn is_icmp(&self) -> bool {
        matches!(
            (IpProtocol::from(self.proto), self.v6),
            (IpProtocol::Icmp, false) | (IpProtocol::Icmpv6, true)
        )
    }

    /// The key of the other direction.
    pub fn reverse(&self) -> ConnKey {
        ConnKey {
            src: self.dst,
            dst: self.src,
            sport: self.dport,
            dport: self.sport,
            ..*self
        }
    }

    /// The direction-independent form, and whether `self` is reversed in
    /// it.
    #[inline]
    pub fn canonical(&self) -> (ConnKey, bool) {
        if (self.src, self.sport) <= (self.dst, self.dport) {
            (*self, false)
        } else {
            (self.reverse(), true)
        }
    }
}

/// Per-protocol state of an entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum L4State {
    /// A free slab slot.
    Free,
    Tcp(TcpConn),
    /// UDP and other IP protocols (OVS `conn_other`).
    Other(OtherState),
    Icmp(IcmpState),
}

/// OVS `other_state`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OtherState {
    First,
    Multiple,
    Bidir,
}

/// OVS `icmp_state`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum IcmpState {
    First,
    Reply,
}

/// One tracked connection (96 bytes: every entry spans exactly two cache
/// lines of the slab).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Conn {
    /// Canonical key.
    pub key: ConnKey,
    /// The originator is the canonical key's `dst` end.
    pub orig_swapped: bool,
    /// Which timeout armed `expires`.
    pub tmo: TimeoutKind,
    pub mark: u32,
    /// Expiry, in milliseconds since the tracker's epoch, modulo 2^32:
    /// read relative to the present ([`Conn::expires_at`]), which is exact
    /// while it lies within 24.8 days of it. Timeouts are capped below
    /// that ([`MAX_TIMEOUT_MS`]) and the wheel sweeps an expired entry
    /// within one turn, so it always does. Four bytes instead of eight keep
    /// the entry at 96 bytes.
    exp: u32,
    /// Wheel tick this entry is filed under.
    sched: u32,
    prev: u32,
    next: u32,
    pub l4: L4State,
}

impl Conn {
    /// An entry with the given state, not yet filed.
    pub fn new(key: ConnKey, orig_swapped: bool, l4: L4State) -> Conn {
        Conn {
            key,
            orig_swapped,
            tmo: TimeoutKind::UdpFirst,
            mark: 0,
            exp: 0,
            sched: 0,
            prev: NIL,
            next: NIL,
            l4,
        }
    }

    /// The expiry as a full time on the tracker's clock, `now_ms` being
    /// the present.
    #[inline]
    pub fn expires_at(&self, now_ms: u64) -> u64 {
        let d = self.exp.wrapping_sub(now_ms as u32) as i32;
        now_ms.wrapping_add_signed(i64::from(d))
    }

    /// Expired at `now_ms`.
    #[inline]
    pub fn expired(&self, now_ms: u64) -> bool {
        self.exp.wrapping_sub(now_ms as u32) as i32 <= 0
    }

    /// Sets the expiry (a full time; kept modulo 2^32).
    #[inline]
    pub fn set_expires(&mut self, expires: u64) {
        self.exp = expires as u32;
    }

    /// The key in the originator's direction.
    pub fn orig_key(&self) -> ConnKey {
        if self.orig_swapped {
            self.key.reverse()
        } else {
            self.key
        }
    }
}

/// A shard (see the module docs).
pub(crate) struct Shard {
    /// SYNs let through untracked, by slab position (see
    /// `tcp::IgnoredSyn`): rare, so kept out of the entries.
    pub ign: HashMap<u32, IgnoredSyn>,
    chunks: Vec<Vec<Conn>>,
    free: u32,
    index: HashTable<u32>,
    heads: Box<[u32]>,
    /// The next tick to sweep (processed up to and including it, again, on
    /// the next call).
    cursor: u32,
    len: usize,
}

#[inline]
fn tick_of(ms: u64) -> u32 {
    (ms / TICK_MS).min(u64::from(u32::MAX)) as u32
}

impl Shard {
    pub fn new() -> Shard {
        Shard {
            ign: HashMap::new(),
            chunks: Vec::new(),
            free: NIL,
            index: HashTable::new(),
            heads: vec![NIL; WHEEL_SLOTS].into_boxed_slice(),
            cursor: 0,
            len: 0,
        }
    }

    /// Live entries (expired-but-unswept ones included).
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.len
    }

    /// Bytes allocated by this shard.
    pub fn heap_bytes(&self) -> usize {
        self.chunks.capacity() * core::mem::size_of::<Vec<Conn>>()
            + self
                .chunks
                .iter()
                .map(|c| c.capacity() * core::mem::size_of::<Conn>())
                .sum::<usize>()
            + self.index.allocation_size()
            + self.heads.len() * 4
    }

    #[inline]
    pub fn get(&self, i: u32) -> Option<&Conn> {
        let i = i as usize;
        self.chunks.get(i / CHUNK)?.get(i % CHUNK)
    }

    #[inline]
    pub fn get_mut(&mut self, i: u32) -> Option<&mut Conn> {
        let i = i as usize;
        self.chunks.get_mut(i / CHUNK)?.get_mut(i % CHUNK)
    }

    /// Finds the entry for canonical key `key`.
    #[inline]
    pub fn find(&self, hash: u64, key: &ConnKey) -> Option<u32> {
        let chunks = &self.chunks;
        self.index
            .find(hash, |&i| {
                let i = i as usize;
                chunks
                    .get(i / CHUNK)
                    .and_then(|c| c.get(i % CHUNK))
                    .is_some_and(|c| c.key == *key)
            })
            .copied()
    }

    /// Inserts a new entry (its key must not be present) and files it
    /// under its expiration.
    /// `expires`: the entry's expiry as a full time.
    pub fn insert(
        &mut self,
        hash: u64,
        conn: Conn,
        expires: u64,
        hasher: &impl Fn(&ConnKey) -> u64,
    ) -> u32 {
        let idx = if self.free != NIL {
            let i = self.free;
            let next = self.get(i).map_or(NIL, |c| c.next);
            self.free = next;
            if let Some(slot) = self.get_mut(i) {
                *slot = conn;
            }
            i
        } else {
            if self.chunks.last().is_none_or(|c| c.len() == CHUNK) {
                self.chunks.push(Vec::with_capacity(CHUNK));
            }
            let n = self.chunks.len() - 1;
            let i = (n * CHUNK + self.chunks[n].len()) as u32;
            self.chunks[n].push(conn);
            i
        };
        let chunks = &self.chunks;
        self.index.insert_unique(hash, idx, |&i| {
            let i = i as usize;
            chunks
                .get(i / CHUNK)
                .and_then(|c| c.get(i % CHUNK))
                .map_or(0, |c| hasher(&c.key))
        });
        self.len += 1;
        self.file(idx, expires);
        idx
    }

    /// Removes entry `idx` (found under `hash`).
    pub fn remove(&mut self, hash: u64, idx: u32) {
        self.unlink(idx);
        self.release(hash, idx);
    }

    /// Drops `idx` from the index and frees its slot; the caller has
    /// already taken it off the wheel.
    fn release(&mut self, hash: u64, idx: u32) {
        if let Ok(e) = self.index.find_entry(hash, |&i| i == idx) {
            e.remove();
        }
        if let Some(c) = self.get_mut(idx) {
            c.l4 = L4State::Free;
        }
        if !self.ign.is_empty() {
            self.ign.remove(&idx);
        }
        let free = self.free;
        if let Some(c) = self.get_mut(idx) {
            c.next = free;
        }
        self.free = idx;
        self.len = self.len.saturating_sub(1);
    }

    /// Sets the expiration of `idx`, re-filing it only when it moved
    /// earlier than the slot it sits in.
    #[inline]
    pub fn set_expiry(&mut self, idx: u32, expires: u64, tmo: TimeoutKind) {
        let Some(c) = self.get_mut(idx) else { return };
        c.set_expires(expires);
        c.tmo = tmo;
        let sched = c.sched;
        if tick_of(expires).max(self.cursor) < sched {
            self.unlink(idx);
            self.file(idx, expires);
        }
    }

    fn file(&mut self, idx: u32, expires: u64) {
        let tick = tick_of(expires).max(self.cursor);
        let slot = tick as usize % WHEEL_SLOTS;
        let head = self.heads.get(slot).copied().unwrap_or(NIL);
        if let Some(c) = self.get_mut(idx) {
            c.sched = tick;
            c.prev = NIL;
            c.next = head;
        }
        if let Some(h) = self.get_mut(head) {
            h.prev = idx;
        }
        if let Some(h) = self.heads.get_mut(slot) {
            *h = idx;
        }
    }

    fn unlink(&mut self, idx: u32) {
        let Some(c) = self.get(idx) else { return };
        let (prev, next, slot) = (c.prev, c.next, c.sched as usize % WHEEL_SLOTS);
        if prev == NIL {
            if let Some(h) = self.heads.get_mut(slot) {
                if *h == idx {
                    *h = next;
                }
            }
        } else if let Some(p) = self.get_mut(prev) {
            p.next = next;
        }
        if let Some(n) = self.get_mut(next) {
            n.prev = prev;
        }
        if let Some(c) = self.get_mut(idx) {
            c.prev = NIL;
            c.next = NIL;
        }
    }

    /// Removes every entry expired at `now_ms`, visiting only the wheel
    /// slots that came due since the last sweep. `on_remove` sees each
    /// removed entry (for per-zone counters). Returns how many went.
    pub fn sweep(
        &mut self,
        now_ms: u64,
        hasher: &impl Fn(&ConnKey) -> u64,
        on_remove: &mut impl FnMut(&Conn),
    ) -> usize {
        let now_tick = tick_of(now_ms);
        if now_tick < self.cursor {
            return 0;
        }
        let span = (now_tick - self.cursor) as usize;
        let first = if span >= WHEEL_SLOTS {
            now_tick - (WHEEL_SLOTS as u32 - 1)
        } else {
            self.cursor
        };
        // From here on, new filings never go below now_tick.
        self.cursor = now_tick;
        let mut removed = 0;
        for tick in first..=now_tick {
            let slot = tick as usize % WHEEL_SLOTS;
            let mut cur = match self.heads.get_mut(slot) {
                Some(h) => core::mem::replace(h, NIL),
                None => NIL,
            };
            while let Some(c) = self.get(cur) {
                let next = c.next;
                let (expires, key) = (c.expires_at(now_ms), c.key);
                if expires <= now_ms {
                    if let Some(c) = self.get(cur) {
                        on_remove(c);
                    }
                    // The slot's list is detached: nothing to unlink.
                    self.release(hasher(&key), cur);
                    removed += 1;
                } else {
                    self.file(cur, expires);
                }
                cur = next;
            }
        }
        removed
    }

    /// Every live entry's slab position.
    pub fn live(&self) -> impl Iterator<Item = (u32, &Conn)> + '_ {
        self.chunks
            .iter()
            .enumerate()
            .flat_map(|(ci, ch)| {
                ch.iter()
                    .enumerate()
                    .map(move |(i, c)| ((ci * CHUNK + i) as u32, c))
            })
            .filter(|(_, c)| c.l4 != L4State::Free)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: u16) -> ConnKey {
        ConnKey {
            sport: n,
            dport: 80,
            proto: 17,
            ..ConnKey::default()
        }
    }

    fn h(k: &ConnKey) -> u64 {
        u64::from(k.sport).wrapping_mul(0x9e37_79b9_7f4a_7c15)
    }

    #[test]
    fn entry_stays_small() {
        // 1M entries must fit in 256 MB with the index and slack
        // (`tests/conntrack_memory.rs` measures it), and the established
        // path reads two cache lines per entry only at a 96-byte (or
        // 128-byte) stride: at 104 or 112 some entries span three
        // (measured: +10% per packet with 100,000 connections).
        assert!(
            core::mem::size_of::<Conn>() <= 96,
            "{}",
            core::mem::size_of::<Conn>()
        );
    }

    #[test]
    fn expiry_reads_right_across_the_32_bit_wrap() {
        let mut c = Conn::new(key(1), false, L4State::Other(OtherState::First));
        for now in [0u64, (1 << 32) - 500, 7 << 32, (9 << 32) + 12] {
            c.set_expires(now + MAX_TIMEOUT_MS);
            assert_eq!(c.expires_at(now), now + MAX_TIMEOUT_MS);
            assert!(!c.expired(now + MAX_TIMEOUT_MS - 1));
            assert!(c.expired(now + MAX_TIMEOUT_MS));
            // Expired a while ago (not yet swept) still reads as expired.
            assert!(c.expired(now + MAX_TIMEOUT_MS + 3_600_000));
            assert_eq!(c.expires_at(now + 2 * MAX_TIMEOUT_MS), now + MAX_TIMEOUT_MS);
        }
    }

    #[test]
    fn canonical_is_direction_free() {
        let mut k = key(5);
        k.src[0] = 10;
        k.dst[0] = 9;
        let (c1, s1) = k.canonical();
        let (c2, s2) = k.reverse().canonical();
        assert_eq!(c1, c2);
        assert_ne!(s1, s2);
    }

    #[test]
    fn wheel_expires_exactly_and_reuses_slots() {
        let mut s = Shard::new();
        for n in 1..=3000u16 {
            let mut c = Conn::new(key(n), false, L4State::Other(OtherState::First));
            c.set_expires(u64::from(n) * 10);
            s.insert(h(&key(n)), c, u64::from(n) * 10, &h);
        }
        assert_eq!(s.len(), 3000);
        let mut seen = 0;
        assert_eq!(s.sweep(9_999, &h, &mut |_| seen += 1), 999);
        assert_eq!(seen, 999);
        assert!(s.find(h(&key(999)), &key(999)).is_none());
        assert!(s.find(h(&key(1000)), &key(1000)).is_some());
        // Shorten one: it must go at its new time.
        let i = s.find(h(&key(2500)), &key(2500)).unwrap_or(NIL);
        s.set_expiry(i, 12_000, TimeoutKind::UdpFirst);
        assert_eq!(s.sweep(12_000, &h, &mut |_| {}), 202);
        assert!(s.find(h(&key(2500)), &key(2500)).is_none());
        // Extend one far: lazily re-filed, not removed early.
        let i = s.find(h(&key(1300)), &key(1300)).unwrap_or(NIL);
        s.set_expiry(i, 5_000_000, TimeoutKind::UdpFirst);
        assert_eq!(s.sweep(40_000, &h, &mut |_| {}), 1798);
        assert_eq!(s.len(), 1);
        assert_eq!(s.sweep(4_999_999, &h, &mut |_| {}), 0);
        assert_eq!(s.sweep(5_000_000, &h, &mut |_| {}), 1);
        assert_eq!(s.len(), 0);
        // Freed slots are reused.
        let chunks = s.chunks.len();
        for n in 1..=3000u16 {
            let mut c = Conn::new(key(n), false, L4State::Other(OtherState::First));
            c.set_expires(6_000_000);
            s.insert(h(&key(n)), c, 6_000_000, &h);
        }
        assert_eq!(s.chunks.len(), chunks);
        assert_eq!(s.live().count(), 3000);
    }
}
