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
    /// A sweep in progress (see [`Shard::sweep_some`]): the ticks still to
    /// visit, first and last...
    todo: Option<(u32, u32)>,
    /// ...and the list detached from the slot being visited (the entries
    /// not looked at yet), or `NIL`.
    sweeping: u32,
    len: usize,
}

/// What [`Shard::sweep_some`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct SweepStep {
    /// Entries removed.
    pub removed: usize,
    /// The budget ran out before the sweep did: call again.
    pub more: bool,
}

/// Slab positions a control-plane walk ([`Shard::scan`]) visits per lock
/// hold, and entries a sweep step visits: a few hundred microseconds at
/// most, so a dump, flush or expiry of a million entries never holds a
/// packet up for long (it takes the lock once per step).
pub(crate) const STEP: usize = 1024;

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
            todo: None,
            sweeping: NIL,
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
            // Or the head of the list a paused sweep detached.
            if self.sweeping == idx {
                self.sweeping = next;
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
    #[cfg(test)]
    pub fn sweep(
        &mut self,
        now_ms: u64,
        hasher: &impl Fn(&ConnKey) -> u64,
        on_remove: &mut impl FnMut(&Conn),
    ) -> usize {
        let mut removed = 0;
        loop {
            let step = self.sweep_some(now_ms, usize::MAX, hasher, on_remove);
            removed += step.removed;
            if !step.more {
                return removed;
            }
        }
    }

    /// One step of a sweep: visits at most `budget` entries of the slots
    /// that came due by `now_ms`, removing the expired ones and re-filing
    /// the others, and says whether there is more. The caller may release
    /// the lock between steps: a paused sweep keeps its place (the ticks
    /// left and the rest of the slot's list, which [`Shard::unlink`]
    /// knows), and the next step goes on from there, judging expiry at the
    /// time it is given, before a new sweep starts.
    pub fn sweep_some(
        &mut self,
        now_ms: u64,
        budget: usize,
        hasher: &impl Fn(&ConnKey) -> u64,
        on_remove: &mut impl FnMut(&Conn),
    ) -> SweepStep {
        let mut step = SweepStep::default();
        if self.todo.is_none() && self.sweeping == NIL {
            let now_tick = tick_of(now_ms);
            if now_tick < self.cursor {
                return step;
            }
            let span = (now_tick - self.cursor) as usize;
            let first = if span >= WHEEL_SLOTS {
                now_tick - (WHEEL_SLOTS as u32 - 1)
            } else {
                self.cursor
            };
            // From here on, new filings never go below now_tick.
            self.cursor = now_tick;
            self.todo = Some((first, now_tick));
        }
        let mut visited = 0usize;
        loop {
            while let Some(c) = self.get(self.sweeping) {
                if visited >= budget {
                    step.more = true;
                    return step;
                }
                visited += 1;
                let cur = self.sweeping;
                let next = c.next;
                let (expires, key) = (c.expires_at(now_ms), c.key);
                if let Some(n) = self.get_mut(next) {
                    n.prev = NIL;
                }
                self.sweeping = next;
                if expires <= now_ms {
                    if let Some(c) = self.get(cur) {
                        on_remove(c);
                    }
                    // Off the detached list already: nothing to unlink.
                    self.release(hasher(&key), cur);
                    step.removed += 1;
                } else {
                    self.file(cur, expires);
                }
            }
            let Some((tick, last)) = self.todo else {
                return step;
            };
            self.todo = (tick < last).then(|| (tick + 1, last));
            let slot = tick as usize % WHEEL_SLOTS;
            self.sweeping = match self.heads.get_mut(slot) {
                Some(h) => core::mem::replace(h, NIL),
                None => NIL,
            };
        }
    }

    /// Visits the live entries at slab positions `from..from + STEP`;
    /// returns where the next step starts (`None`: the end). Positions are
    /// stable (freed slots are reused, never moved), so a walk in steps
    /// with the lock released between them sees every entry that lived
    /// throughout, once.
    pub fn scan(&self, from: u32, mut f: impl FnMut(u32, &Conn)) -> Option<u32> {
        let end = self
            .chunks
            .len()
            .saturating_mul(CHUNK)
            .min(u32::MAX as usize) as u32;
        let stop = from.saturating_add(STEP as u32).min(end);
        for i in from..stop {
            if let Some(c) = self.get(i).filter(|c| c.l4 != L4State::Free) {
                f(i, c);
            }
        }
        (stop < end).then_some(stop)
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

    /// A sweep in small steps, with the table changing between them as
    /// packets change it while the lock is released (the head of the
    /// detached list removed, an entry on it shortened, another extended,
    /// new entries filed), removes exactly the expired entries and leaves
    /// the wheel whole.
    #[test]
    fn a_sweep_in_steps_survives_changes_between_them() {
        let mut s = Shard::new();
        // 500 entries due at 1 s (one slot), 500 far in the future.
        for n in 1..=1000u16 {
            let exp = if n <= 500 { 1_000 } else { 900_000 };
            let mut c = Conn::new(key(n), false, L4State::Other(OtherState::First));
            c.set_expires(exp);
            s.insert(h(&key(n)), c, exp, &h);
        }
        let mut removed = 0;
        let mut seen = 0;
        let mut steps = 0;
        loop {
            let st = s.sweep_some(2_000, 7, &h, &mut |_| seen += 1);
            removed += st.removed;
            steps += 1;
            if !st.more {
                break;
            }
            // Between steps: remove whatever heads the detached list...
            if s.sweeping != NIL {
                let k = s.get(s.sweeping).map(|c| c.key).unwrap_or_default();
                s.remove(h(&k), s.sweeping);
                removed += 1;
            }
            // ...extend one of the due entries if still there...
            if let Some(i) = s.find(h(&key(250)), &key(250)) {
                s.set_expiry(i, 800_000, TimeoutKind::UdpFirst);
            }
            // ...and file a new entry due now.
            let n = 2000 + steps as u16;
            let mut c = Conn::new(key(n), false, L4State::Other(OtherState::First));
            c.set_expires(1_500);
            s.insert(h(&key(n)), c, 1_500, &h);
        }
        assert!(steps > 10, "the budget made it step: {steps}");
        assert!(seen <= removed);
        assert!(s.find(h(&key(250)), &key(250)).is_some());
        assert!((1..=500u16)
            .filter(|&n| n != 250)
            .all(|n| s.find(h(&key(n)), &key(n)).is_none()));
        // The entries filed meanwhile were due: this sweep took those
        // filed in a slot it had still to visit, the next takes the rest.
        // Every due entry but the extended one went; the far ones stay.
        let filed = steps - 1;
        removed += s.sweep(2_000, &h, &mut |_| {});
        assert_eq!(removed, 499 + filed);
        assert_eq!(s.len(), 501);
        assert_eq!(s.sweep(800_000, &h, &mut |_| {}), 1);
        assert_eq!(s.sweep(900_000, &h, &mut |_| {}), 500);
        assert_eq!(s.len(), 0);
    }

    /// A walk in steps sees each entry that lived throughout once, even
    /// when entries are removed and slots reused between the steps.
    #[test]
    fn a_scan_in_steps_sees_every_long_lived_entry_once() {
        let mut s = Shard::new();
        let n = (STEP * 3 + 17) as u16;
        for i in 1..=n {
            let mut c = Conn::new(key(i), false, L4State::Other(OtherState::First));
            c.set_expires(900_000);
            s.insert(h(&key(i)), c, 900_000, &h);
        }
        let mut seen = std::collections::HashMap::new();
        let mut pos = Some(0);
        let mut churn = 0u16;
        while let Some(p) = pos {
            pos = s.scan(p, |_, c| *seen.entry(c.key.sport).or_insert(0) += 1);
            // Between steps: the lowest even entries go, new ones come.
            churn += 2;
            if let Some(i) = s.find(h(&key(churn)), &key(churn)) {
                s.remove(h(&key(churn)), i);
            }
            let k = key(60_000 - churn);
            let mut c = Conn::new(k, false, L4State::Other(OtherState::First));
            c.set_expires(900_000);
            s.insert(h(&k), c, 900_000, &h);
        }
        assert!(seen.values().all(|&v| v == 1));
        assert!((churn + 1..=n).all(|i| seen.contains_key(&i)));
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
