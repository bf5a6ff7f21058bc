//! One shard of the connection table: a slab of entries, a hash index and
//! a timer wheel, split so that a packet of an existing connection takes
//! no shard-wide lock.
//!
//! * **What a packet reads without the shard lock: the [`View`].** The
//!   slab is a directory of fixed chunks of [`CHUNK`] slots, each set once
//!   and never moved or freed while the shard lives (growth adds a chunk,
//!   never copies), each slot a `parking_lot` mutex around its [`Conn`].
//!   The index is an open-addressing table of atomic words (32 bits of the
//!   hash and the slab position), probed linearly, keyed by the
//!   *canonical* key (the two endpoints in a fixed order), so one entry
//!   answers both directions of a connection. A packet probes the index
//!   with plain acquire loads, locks the one slot a matching word points
//!   at and checks the slot's key and liveness under that lock
//!   ([`View::find`]). No guard or reference count is taken: nothing a
//!   reader can reach is ever freed. What a reader sees may be stale (an
//!   index word of a removed entry, a slot freed or reused since, a word
//!   moved by a removal while it probed, the previous index generation):
//!   the check under the slot's lock turns each into a miss, and every
//!   miss is looked up again under the shard lock before anything is
//!   inserted.
//! * **What only the shard lock's holder changes: the [`Shard`].** Insert
//!   and removal (index words written with release stores; a removal
//!   shifts the words behind it back, so no tombstones pile up), the
//!   index's growth (into the next of a fixed list of generations, each
//!   twice the last, when three quarters full; the old ones stay
//!   allocated for readers still in them: at most as much again as the
//!   current one), the free list, and the timer wheel: [`WHEEL_SLOTS`]
//!   one-second slots, each a doubly linked list threaded through
//!   per-position links the shard keeps beside the slab (not in the
//!   slots, so the wheel is changed without locking neighbours). An entry
//!   is filed under the tick of its expiration; a packet that extends the
//!   expiration leaves it where it is (the sweep re-files it when the slot
//!   comes due), a packet that shortens it moves it (under the shard
//!   lock). A sweep therefore visits the slots that came due and the
//!   entries in them, never the whole table.
//!
//! Locks are taken in one order: the shard's, then one slot's. A packet
//! of an established connection holds only its slot's lock (contended
//! only when two workers carry the very same connection), and whatever
//! holds a slot's lock never takes the shard's. Nothing holds two slots'
//! locks at once.

use parking_lot::{Mutex, MutexGuard};

use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use super::tcp::{IgnoredSyn, TcpConn};
use super::TimeoutKind;
use crate::wire::IpProtocol;

/// Entries per slab chunk.
pub(crate) const CHUNK: usize = 256;
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

/// One tracked connection, the contents of a slab slot (see [`Slot`]).
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
    /// the slot at 96 bytes.
    exp: u32,
    /// `Free`: the slot holds no connection (removed, or never used).
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

    /// The slot holds a connection.
    #[inline]
    pub fn live(&self) -> bool {
        !matches!(self.l4, L4State::Free)
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

/// A slab slot: a connection behind its own lock. Aligned to 32 bytes so
/// that at 96 bytes each slot spans exactly two cache lines of its chunk
/// (at 88 or 104, some would span three: measured +10% per packet with
/// 100,000 connections when the entry was 104 bytes).
#[repr(align(32))]
pub(crate) struct Slot(Mutex<Conn>);

impl Slot {
    fn free() -> Slot {
        Slot(Mutex::new(Conn::new(
            ConnKey::default(),
            false,
            L4State::Free,
        )))
    }

    /// Locks the slot (see the module docs for the order of locks).
    #[inline]
    pub fn lock(&self) -> MutexGuard<'_, Conn> {
        self.0.lock()
    }
}

/// An empty index word (a live word always has a position part of at
/// least 1).
const EMPTY: u64 = 0;
/// Chunks per block of the chunk directory, and blocks in it: at most
/// `BLOCKS * BLOCK * CHUNK` (2^24) positions per shard. Chunks are
/// small (24 KiB) and blocks made when needed because a chunk's slots are
/// written when it is made: an idle tracker holds little.
const BLOCK: usize = 256;
const BLOCKS: usize = 256;
const MAX_POS: usize = BLOCKS * BLOCK * CHUNK;
/// Index generations: the first holds [`MIN_INDEX`] words, each next one
/// twice the previous; 24 hold [`MAX_POS`] entries at three quarters
/// full with room to spare, so growth never runs out of them.
const GENS: usize = 24;
const MIN_INDEX: usize = 64;

/// An index word: the hash's low 32 bits above the slab position plus one.
#[inline]
fn word(hash: u64, pos: u32) -> u64 {
    (hash & 0xffff_ffff) << 32 | (u64::from(pos) + 1)
}

/// Writes word `w` into the first empty word of its run (the index has
/// room: it is kept at most three quarters full).
fn put(index: &[AtomicU64], w: u64) {
    let Some(mask) = index.len().checked_sub(1) else {
        return;
    };
    let mut b = (w >> 32) as usize & mask;
    for _ in 0..index.len() {
        if let Some(c) = index.get(b) {
            if c.load(Ordering::Relaxed) == EMPTY {
                c.store(w, Ordering::Release);
                return;
            }
        }
        b = (b + 1) & mask;
    }
}

/// [`CHUNK`] slots.
type Chunk = Box<[Slot]>;
/// [`BLOCK`] chunks, each made when first needed.
type Block = Box<[OnceLock<Chunk>]>;

/// The part of a shard a packet reads without the shard lock (see the
/// module docs). Nothing in it is ever freed or moved while the shard
/// lives, so a reader needs no guard: slab chunks are set once in a
/// two-level directory, and the index's generations once each (a bigger
/// one made current when the last fills; readers still on the old one
/// find it valid, only stale). The shard lock's holder is its only
/// writer.
pub(crate) struct View {
    dir: Box<[OnceLock<Block>]>,
    gens: [OnceLock<Box<[AtomicU64]>>; GENS],
    /// The generation in use.
    cur: AtomicUsize,
}

impl View {
    fn new() -> View {
        View {
            dir: (0..BLOCKS).map(|_| OnceLock::new()).collect(),
            gens: core::array::from_fn(|_| OnceLock::new()),
            cur: AtomicUsize::new(0),
        }
    }

    /// The slot at slab position `i` (`None`: no chunk there yet).
    #[inline]
    pub fn slot(&self, i: u32) -> Option<&Slot> {
        let i = i as usize;
        let chunk = i / CHUNK;
        self.dir
            .get(chunk / BLOCK)?
            .get()?
            .get(chunk % BLOCK)?
            .get()?
            .get(i % CHUNK)
    }

    /// The index in use (empty before the first insert).
    #[inline]
    fn index(&self) -> &[AtomicU64] {
        self.gens
            .get(self.cur.load(Ordering::Acquire))
            .and_then(|g| g.get())
            .map_or(&[], |b| &b[..])
    }

    /// Finds the live entry of canonical key `key` and returns it locked,
    /// with its position. Lock-free up to the slot: index words are read
    /// with acquire loads, and a word whose hash bits match is confirmed
    /// by the slot's key and liveness under the slot's lock (a word can
    /// be stale, or moved by a removal while it is read). Without the
    /// shard lock a miss may be stale; under it the answer is exact.
    #[inline]
    pub fn find(&self, hash: u64, key: &ConnKey) -> Option<(u32, MutexGuard<'_, Conn>)> {
        let index = self.index();
        let mask = index.len().checked_sub(1)?;
        let tag = hash & 0xffff_ffff;
        let mut b = hash as usize & mask;
        for _ in 0..index.len() {
            let w = index.get(b)?.load(Ordering::Acquire);
            if w == EMPTY {
                return None;
            }
            if w >> 32 == tag {
                let pos = (w as u32).wrapping_sub(1);
                if let Some(slot) = self.slot(pos) {
                    let c = slot.lock();
                    if c.live() && c.key == *key {
                        return Some((pos, c));
                    }
                }
            }
            b = (b + 1) & mask;
        }
        None
    }

    /// Bytes allocated: chunks, directory blocks, index generations.
    fn heap_bytes(&self) -> usize {
        let blocks = self.dir.iter().filter_map(|b| b.get());
        let chunk_bytes: usize = blocks
            .map(|b| {
                b.len() * core::mem::size_of::<OnceLock<Chunk>>()
                    + b.iter().filter(|c| c.get().is_some()).count()
                        * CHUNK
                        * core::mem::size_of::<Slot>()
            })
            .sum();
        let index_bytes: usize = self
            .gens
            .iter()
            .filter_map(|g| g.get())
            .map(|g| g.len() * core::mem::size_of::<AtomicU64>())
            .sum();
        self.dir.len() * core::mem::size_of::<OnceLock<Block>>() + chunk_bytes + index_bytes
    }
}

/// Wheel links of one slab position (free slots chain through `next`).
#[derive(Debug, Clone, Copy)]
struct Link {
    /// Wheel tick this entry is filed under.
    sched: u32,
    prev: u32,
    next: u32,
}

const UNLINKED: Link = Link {
    sched: 0,
    prev: NIL,
    next: NIL,
};

/// A shard's structural state, behind the shard lock (see the module
/// docs), and the [`View`] it writes for lock-free readers.
pub(crate) struct Shard {
    /// SYNs let through untracked, by slab position (see
    /// `tcp::IgnoredSyn`): rare, so kept out of the entries.
    pub ign: HashMap<u32, IgnoredSyn>,
    view: Arc<View>,
    /// Per slab position handed out.
    links: Vec<Link>,
    free: u32,
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
/// most, so a dump, flush or expiry of a million entries never holds up
/// a packet that needs the shard lock for long (it takes the lock once
/// per step; an established connection's packet does not need it).
pub(crate) const STEP: usize = 1024;

#[inline]
fn tick_of(ms: u64) -> u32 {
    (ms / TICK_MS).min(u64::from(u32::MAX)) as u32
}

impl Shard {
    pub fn new() -> Shard {
        Shard {
            ign: HashMap::new(),
            view: Arc::new(View::new()),
            links: Vec::new(),
            free: NIL,
            heads: vec![NIL; WHEEL_SLOTS].into_boxed_slice(),
            cursor: 0,
            todo: None,
            sweeping: NIL,
            len: 0,
        }
    }

    /// What lock-free readers search (the tracker keeps a handle beside
    /// the lock).
    #[inline]
    pub fn view(&self) -> &Arc<View> {
        &self.view
    }

    /// Live entries (expired-but-unswept ones included).
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.len
    }

    /// Bytes allocated by this shard.
    pub fn heap_bytes(&self) -> usize {
        self.view.heap_bytes()
            + self.links.capacity() * core::mem::size_of::<Link>()
            + self.heads.len() * 4
    }

    /// Finds the entry for canonical key `key` (exact: the caller holds
    /// the shard lock).
    #[inline]
    pub fn find(&self, hash: u64, key: &ConnKey) -> Option<u32> {
        self.view.find(hash, key).map(|(i, _)| i)
    }

    /// A slab position for a new entry: a freed one, else the next one
    /// (adding a chunk when the last is full). `None`: the directory is
    /// full.
    fn alloc(&mut self) -> Option<u32> {
        if self.free != NIL {
            let i = self.free;
            self.free = self.links.get(i as usize).map_or(NIL, |l| l.next);
            return Some(i);
        }
        let i = self.links.len();
        if i >= MAX_POS {
            return None;
        }
        let chunk = i / CHUNK;
        let block = self
            .view
            .dir
            .get(chunk / BLOCK)?
            .get_or_init(|| (0..BLOCK).map(|_| OnceLock::new()).collect());
        block
            .get(chunk % BLOCK)?
            .get_or_init(|| (0..CHUNK).map(|_| Slot::free()).collect());
        self.links.push(UNLINKED);
        u32::try_from(i).ok()
    }

    /// Writes the index word of `pos` (its key absent), moving to the
    /// next generation first when entries would fill three quarters of
    /// the index.
    fn index_insert(&mut self, hash: u64, pos: u32) {
        if (self.len + 1) * 4 > self.view.index().len() * 3 {
            self.grow();
        }
        put(self.view.index(), word(hash, pos));
    }

    /// Copies the live words into the next generation and makes it
    /// current. The old one stays allocated: readers may still be in it.
    fn grow(&mut self) {
        let view = &self.view;
        let cur = view.cur.load(Ordering::Relaxed);
        let old = view.index();
        let (next, cap) = if old.is_empty() {
            (cur, MIN_INDEX)
        } else {
            (cur + 1, old.len() * 2)
        };
        let Some(slot) = view.gens.get(next) else {
            return;
        };
        let fresh = slot.get_or_init(|| (0..cap).map(|_| AtomicU64::new(EMPTY)).collect());
        if next != cur {
            for w in old.iter().map(|w| w.load(Ordering::Relaxed)) {
                if w != EMPTY {
                    put(fresh, w);
                }
            }
        }
        view.cur.store(next, Ordering::Release);
    }

    /// Drops the index word of `pos` by backward-shift deletion (the words
    /// after it in its run move up), so the index holds no tombstones and
    /// never needs rebuilding in place. A reader racing with the shift may
    /// miss a word that moves: a miss sends it to the locked path, which
    /// looks again.
    fn index_remove(&mut self, hash: u64, pos: u32) {
        let index = self.view.index();
        let Some(mask) = index.len().checked_sub(1) else {
            return;
        };
        let want = word(hash, pos);
        let mut b = hash as usize & mask;
        let mut found = None;
        for _ in 0..index.len() {
            let w = index.get(b).map_or(EMPTY, |c| c.load(Ordering::Relaxed));
            if w == EMPTY {
                break;
            }
            if w == want {
                found = Some(b);
                break;
            }
            b = (b + 1) & mask;
        }
        let Some(mut hole) = found else { return };
        let mut j = (hole + 1) & mask;
        for _ in 0..index.len() {
            let w = index.get(j).map_or(EMPTY, |c| c.load(Ordering::Relaxed));
            if w == EMPTY {
                break;
            }
            let home = (w >> 32) as usize & mask;
            // `w` may fill the hole if its home is not between the hole
            // (exclusive) and `j` (inclusive), cyclically.
            if (j.wrapping_sub(home) & mask) >= (j.wrapping_sub(hole) & mask) {
                if let Some(c) = index.get(hole) {
                    c.store(w, Ordering::Release);
                }
                hole = j;
            }
            j = (j + 1) & mask;
        }
        if let Some(c) = index.get(hole) {
            c.store(EMPTY, Ordering::Release);
        }
    }

    /// Inserts a new entry (its key must not be present: the caller looked
    /// under the shard lock) and files it under its expiration. `expires`:
    /// the entry's expiry as a full time. `None`: the shard is out of
    /// positions (2^24).
    pub fn insert(&mut self, hash: u64, conn: Conn, expires: u64) -> Option<u32> {
        let idx = self.alloc()?;
        if let Some(s) = self.view.slot(idx) {
            *s.lock() = conn;
        }
        self.index_insert(hash, idx);
        self.len += 1;
        self.file(idx, expires);
        Some(idx)
    }

    /// Removes entry `idx` (found under `hash`; `c` is its slot, locked).
    pub fn remove(&mut self, hash: u64, idx: u32, c: &mut Conn) {
        self.unlink(idx);
        self.release(hash, idx, c);
    }

    /// Drops `idx` from the index, frees its slot (a reader that still
    /// holds the position finds it dead under its lock) and chains it on
    /// the free list; the caller has already taken it off the wheel.
    fn release(&mut self, hash: u64, idx: u32, c: &mut Conn) {
        self.index_remove(hash, idx);
        c.l4 = L4State::Free;
        if !self.ign.is_empty() {
            self.ign.remove(&idx);
        }
        let free = self.free;
        if let Some(l) = self.links.get_mut(idx as usize) {
            l.next = free;
        }
        self.free = idx;
        self.len = self.len.saturating_sub(1);
    }

    /// Sets the expiration of `idx` (`c`, its slot, locked), re-filing it
    /// only when it moved earlier than the slot it sits in.
    #[inline]
    pub fn set_expiry(&mut self, idx: u32, c: &mut Conn, expires: u64, tmo: TimeoutKind) {
        c.set_expires(expires);
        c.tmo = tmo;
        let Some(sched) = self.links.get(idx as usize).map(|l| l.sched) else {
            return;
        };
        if tick_of(expires).max(self.cursor) < sched {
            self.unlink(idx);
            self.file(idx, expires);
        }
    }

    fn file(&mut self, idx: u32, expires: u64) {
        let tick = tick_of(expires).max(self.cursor);
        let slot = tick as usize % WHEEL_SLOTS;
        let head = self.heads.get(slot).copied().unwrap_or(NIL);
        if let Some(l) = self.links.get_mut(idx as usize) {
            *l = Link {
                sched: tick,
                prev: NIL,
                next: head,
            };
        }
        if let Some(h) = self.links.get_mut(head as usize) {
            h.prev = idx;
        }
        if let Some(h) = self.heads.get_mut(slot) {
            *h = idx;
        }
    }

    fn unlink(&mut self, idx: u32) {
        let Some(&l) = self.links.get(idx as usize) else {
            return;
        };
        let (prev, next, slot) = (l.prev, l.next, l.sched as usize % WHEEL_SLOTS);
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
        } else if let Some(p) = self.links.get_mut(prev as usize) {
            p.next = next;
        }
        if let Some(n) = self.links.get_mut(next as usize) {
            n.prev = prev;
        }
        if let Some(l) = self.links.get_mut(idx as usize) {
            l.prev = NIL;
            l.next = NIL;
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
    /// time it is given, before a new sweep starts. Each entry is judged
    /// under its slot's lock, so a packet extending it at the same time
    /// either comes first (and the entry is re-filed) or finds it gone.
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
        let view = Arc::clone(&self.view);
        loop {
            while let Some(&l) = self.links.get(self.sweeping as usize) {
                if visited >= budget {
                    step.more = true;
                    return step;
                }
                visited += 1;
                let cur = self.sweeping;
                if let Some(n) = self.links.get_mut(l.next as usize) {
                    n.prev = NIL;
                }
                self.sweeping = l.next;
                let Some(slot) = view.slot(cur) else { continue };
                let mut c = slot.lock();
                let expires = c.expires_at(now_ms);
                if expires <= now_ms {
                    on_remove(&c);
                    // Off the detached list already: nothing to unlink.
                    let hash = hasher(&c.key);
                    self.release(hash, cur, &mut c);
                    step.removed += 1;
                } else {
                    drop(c);
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

    /// Visits the live entries at slab positions `from..from + STEP`,
    /// each under its slot's lock; returns where the next step starts
    /// (`None`: the end). Positions are stable (freed slots are reused,
    /// never moved), so a walk in steps with the lock released between
    /// them sees every entry that lived throughout, once.
    pub fn scan(&self, from: u32, mut f: impl FnMut(u32, &Conn)) -> Option<u32> {
        let end = self.links.len().min(u32::MAX as usize) as u32;
        let stop = from.saturating_add(STEP as u32).min(end);
        for i in from..stop {
            if let Some(s) = self.view.slot(i) {
                let c = s.lock();
                if c.live() {
                    f(i, &c);
                }
            }
        }
        (stop < end).then_some(stop)
    }

    /// Calls `f` on every live entry, under its slot's lock.
    pub fn for_each_live(&self, mut f: impl FnMut(u32, &Conn)) {
        let mut pos = Some(0);
        while let Some(p) = pos {
            pos = self.scan(p, |i, c| f(i, c));
        }
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

    /// A shard.
    struct T {
        s: Shard,
    }

    impl T {
        fn new() -> T {
            T { s: Shard::new() }
        }

        fn insert(&mut self, n: u16, exp: u64) {
            let mut c = Conn::new(key(n), false, L4State::Other(OtherState::First));
            c.set_expires(exp);
            assert!(self.s.insert(h(&key(n)), c, exp).is_some());
        }

        fn find(&self, n: u16) -> Option<u32> {
            self.s.find(h(&key(n)), &key(n))
        }

        fn remove(&mut self, i: u32) {
            let v = Arc::clone(self.s.view());
            if let Some(slot) = v.slot(i) {
                let mut c = slot.lock();
                let hash = h(&c.key);
                self.s.remove(hash, i, &mut c);
            }
        }

        fn set_expiry(&mut self, i: u32, exp: u64) {
            let v = Arc::clone(self.s.view());
            if let Some(slot) = v.slot(i) {
                self.s
                    .set_expiry(i, &mut slot.lock(), exp, TimeoutKind::UdpFirst);
            }
        }
    }

    #[test]
    fn entry_stays_small() {
        // 1M entries must fit in 256 MB with the index, the wheel links
        // and slack (`tests/conntrack_memory.rs` measures it), and the
        // established path reads two cache lines per entry only at a
        // 96-byte (or 128-byte) stride: at 104 or 112 some entries span
        // three (measured: +10% per packet with 100,000 connections). The
        // slot's lock took a byte the wheel links (moved out) gave back.
        assert!(
            core::mem::size_of::<Slot>() <= 96,
            "{}",
            core::mem::size_of::<Slot>()
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
        let mut t = T::new();
        // 500 entries due at 1 s (one slot), 500 far in the future.
        for n in 1..=1000u16 {
            t.insert(n, if n <= 500 { 1_000 } else { 900_000 });
        }
        let mut removed = 0;
        let mut seen = 0;
        let mut steps = 0;
        loop {
            let st = t.s.sweep_some(2_000, 7, &h, &mut |_| seen += 1);
            removed += st.removed;
            steps += 1;
            if !st.more {
                break;
            }
            // Between steps: remove whatever heads the detached list...
            if t.s.sweeping != NIL {
                t.remove(t.s.sweeping);
                removed += 1;
            }
            // ...extend one of the due entries if still there...
            if let Some(i) = t.find(250) {
                t.set_expiry(i, 800_000);
            }
            // ...and file a new entry due now.
            t.insert(2000 + steps as u16, 1_500);
        }
        assert!(steps > 10, "the budget made it step: {steps}");
        assert!(seen <= removed);
        assert!(t.find(250).is_some());
        assert!((1..=500u16)
            .filter(|&n| n != 250)
            .all(|n| t.find(n).is_none()));
        // The entries filed meanwhile were due: this sweep took those
        // filed in a slot it had still to visit, the next takes the rest.
        // Every due entry but the extended one went; the far ones stay.
        let filed = steps - 1;
        removed += t.s.sweep(2_000, &h, &mut |_| {});
        assert_eq!(removed, 499 + filed);
        assert_eq!(t.s.len(), 501);
        assert_eq!(t.s.sweep(800_000, &h, &mut |_| {}), 1);
        assert_eq!(t.s.sweep(900_000, &h, &mut |_| {}), 500);
        assert_eq!(t.s.len(), 0);
    }

    /// A walk in steps sees each entry that lived throughout once, even
    /// when entries are removed and slots reused between the steps.
    #[test]
    fn a_scan_in_steps_sees_every_long_lived_entry_once() {
        let mut t = T::new();
        let n = (STEP * 3 + 17) as u16;
        for i in 1..=n {
            t.insert(i, 900_000);
        }
        let mut seen = std::collections::HashMap::new();
        let mut pos = Some(0);
        let mut churn = 0u16;
        while let Some(p) = pos {
            pos =
                t.s.scan(p, |_, c| *seen.entry(c.key.sport).or_insert(0) += 1);
            // Between steps: the lowest even entries go, new ones come.
            churn += 2;
            if let Some(i) = t.find(churn) {
                t.remove(i);
            }
            t.insert(60_000 - churn, 900_000);
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
        let mut t = T::new();
        for n in 1..=3000u16 {
            t.insert(n, u64::from(n) * 10);
        }
        assert_eq!(t.s.len(), 3000);
        let mut seen = 0;
        assert_eq!(t.s.sweep(9_999, &h, &mut |_| seen += 1), 999);
        assert_eq!(seen, 999);
        assert!(t.find(999).is_none());
        assert!(t.find(1000).is_some());
        // Shorten one: it must go at its new time.
        let i = t.find(2500).unwrap_or(NIL);
        t.set_expiry(i, 12_000);
        assert_eq!(t.s.sweep(12_000, &h, &mut |_| {}), 202);
        assert!(t.find(2500).is_none());
        // Extend one far: lazily re-filed, not removed early.
        let i = t.find(1300).unwrap_or(NIL);
        t.set_expiry(i, 5_000_000);
        assert_eq!(t.s.sweep(40_000, &h, &mut |_| {}), 1798);
        assert_eq!(t.s.len(), 1);
        assert_eq!(t.s.sweep(4_999_999, &h, &mut |_| {}), 0);
        assert_eq!(t.s.sweep(5_000_000, &h, &mut |_| {}), 1);
        assert_eq!(t.s.len(), 0);
        // Freed slots are reused.
        let positions = t.s.links.len();
        for n in 1..=3000u16 {
            t.insert(n, 6_000_000);
        }
        assert_eq!(t.s.links.len(), positions);
        let mut live = 0;
        t.s.for_each_live(|_, _| live += 1);
        assert_eq!(live, 3000);
        // Every one is found through the view readers search.
        let v = t.s.view();
        assert!((1..=3000u16).all(|n| v.find(h(&key(n)), &key(n)).is_some()));
    }

    /// Heavy churn at a constant size keeps the index at its size
    /// (removals shift words back, leaving no tombstones), and a position
    /// read before its entry went finds the slot dead or holding another
    /// connection, never the old one.
    #[test]
    fn churn_keeps_the_index_small_and_old_positions_safe() {
        let mut t = T::new();
        for n in 1..=100u16 {
            t.insert(n, 900_000);
        }
        let old: Vec<u32> = (1..=100u16).map(|n| t.find(n).unwrap_or(NIL)).collect();
        for round in 0..50u16 {
            for n in 1..=100u16 {
                let i = t.find(n + round * 100).unwrap_or(NIL);
                t.remove(i);
                t.insert(n + (round + 1) * 100, 900_000);
            }
        }
        assert_eq!(t.s.len(), 100);
        let v = Arc::clone(t.s.view());
        assert!(v.index().len() <= 512, "{}", v.index().len());
        for (n, &i) in (1..=100u16).zip(&old) {
            let c = v.slot(i).map(|s| *s.lock());
            assert!(c.is_some_and(|c| !c.live() || c.key != key(n)));
            assert!(v.find(h(&key(n)), &key(n)).is_none());
        }
        assert!((5001..=5100u16).all(|n| v.find(h(&key(n)), &key(n)).is_some()));
    }

    /// Removals from long runs of colliding words (a hash with 7 values)
    /// shift the run back without losing or resurrecting an entry, across
    /// the index's growth.
    #[test]
    fn removals_from_colliding_runs_lose_nothing() {
        let bad = |k: &ConnKey| u64::from(k.sport % 7) * 0x1_0000_0001;
        let mut s = Shard::new();
        for n in 1..=3000u16 {
            let mut c = Conn::new(key(n), false, L4State::Other(OtherState::First));
            c.set_expires(900_000);
            assert!(s.insert(bad(&key(n)), c, 900_000).is_some());
        }
        let v = Arc::clone(s.view());
        for n in (1..=3000u16).filter(|n| n % 3 != 0) {
            let (i, mut c) = v.find(bad(&key(n)), &key(n)).expect("present");
            s.remove(bad(&key(n)), i, &mut c);
        }
        assert_eq!(s.len(), 1000);
        assert!((1..=3000u16).all(|n| s.find(bad(&key(n)), &key(n)).is_some() == (n % 3 == 0)));
    }
}
