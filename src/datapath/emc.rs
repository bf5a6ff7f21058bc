//! The exact-match cache: full packet key -> megaflow, per worker.
//!
//! A fixed array indexed by the key hash, probed at two slots (the hash and
//! its neighbour), as Open vSwitch's EMC. An entry points at a megaflow slot
//! plus that slot's version, so removing a megaflow invalidates every EMC
//! entry pointing at it without touching the EMC.
//!
//! An entry also remembers where its packets went after a `ct` and a
//! recirculation (see [`Emc::next`]): the recirculated key is the entry's
//! key with the metadata that `ct` and `recirc` wrote, so for the same
//! metadata it is the same key, and its megaflow can be run without
//! hashing and looking the key up again.
//!
//! Owned by one worker thread: no locks.

use crate::flow::FlowKey;
use crate::packet::PacketMeta;

/// Number of entries (a power of two).
pub const EMC_ENTRIES: usize = 4096;
const MASK: usize = EMC_ENTRIES - 1;

#[derive(Clone, Copy)]
struct Entry {
    hash: u64,
    key: FlowKey,
    mf: u32,
    version: u32,
    live: bool,
    /// Which insert made this entry (see [`EmcRef`]).
    stamp: u32,
}

/// The megaflow the entry's key led to on its next pass, after `ct` and a
/// recirculation wrote `sig` into its metadata.
#[derive(Clone, Copy)]
struct Next {
    sig: RecircSig,
    mf: u32,
    version: u32,
}

/// The key fields a `ct` action and a recirculation write (what
/// `refresh_metadata` copies that they can change): with the same entry
/// key and the same of these, the recirculated key is the same.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct RecircSig {
    recirc_id: u32,
    ct_mark: u32,
    ct_zone: u16,
    ct_state: u8,
}

impl RecircSig {
    /// The signature of a packet about to run its next pass.
    #[inline]
    pub fn of(meta: &PacketMeta) -> RecircSig {
        RecircSig {
            recirc_id: meta.recirc_id,
            ct_mark: meta.ct_mark,
            ct_zone: meta.ct_zone,
            ct_state: meta.ct_state.0,
        }
    }
}

/// One entry as it was when a lookup found it: `stamp` tells whether the
/// entry still holds the same key later in the batch (every insert
/// stamps anew, so a replaced entry no longer matches).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct EmcRef {
    idx: u32,
    stamp: u32,
}

impl EmcRef {
    /// Refers to no entry (stamps start at 1).
    pub const NONE: EmcRef = EmcRef { idx: 0, stamp: 0 };
}

/// The cache.
pub struct Emc {
    entries: Box<[Entry]>,
    /// Beside each entry, where its key's packets went on their next
    /// pass. Apart, so that an entry stays four cache lines.
    next: Box<[Option<Next>]>,
    /// The last stamp handed out.
    stamp: u32,
}

impl Default for Emc {
    fn default() -> Self {
        Emc {
            entries: vec![
                Entry {
                    hash: 0,
                    key: FlowKey::default(),
                    mf: 0,
                    version: 0,
                    live: false,
                    stamp: 0,
                };
                EMC_ENTRIES
            ]
            .into_boxed_slice(),
            next: vec![None; EMC_ENTRIES].into_boxed_slice(),
            stamp: 0,
        }
    }
}

impl Emc {
    /// The (megaflow slot, version) cached for `key`.
    #[inline]
    pub fn lookup(&self, hash: u64, key: &FlowKey) -> Option<(u32, u32)> {
        let i = hash as usize & MASK;
        // At most one live entry of the pair has this hash (`insert`
        // reuses the slot that already has it), so the key is compared
        // once, against that entry. One compare site also keeps the
        // compiler from loading the whole key up front for two.
        let e = &self.entries[i];
        let e = if e.live && e.hash == hash {
            e
        } else {
            let e = &self.entries[i ^ 1];
            if !(e.live && e.hash == hash) {
                return None;
            }
            e
        };
        e.key.dp_eq(key).then_some((e.mf, e.version))
    }

    /// The entry that [`Emc::lookup`] just found for `hash`, to refer to
    /// later: the one live entry of the pair with that hash.
    #[inline]
    pub fn entry_ref(&self, hash: u64) -> EmcRef {
        let i = hash as usize & MASK;
        [i, i ^ 1]
            .into_iter()
            .find(|&j| self.entries[j].live && self.entries[j].hash == hash)
            .map_or(EmcRef::NONE, |j| EmcRef {
                idx: j as u32,
                stamp: self.entries[j].stamp,
            })
    }

    /// The next pass of entry `at`, if the entry still holds the key it
    /// held when found.
    #[inline]
    fn next_of(&mut self, at: EmcRef) -> Option<&mut Option<Next>> {
        let i = at.idx as usize;
        let e = self.entries.get(i)?;
        if !(e.live && e.stamp == at.stamp && at.stamp != 0) {
            return None;
        }
        self.next.get_mut(i)
    }

    /// The megaflow (slot, version) that the key of entry `at` led to on
    /// its next pass with metadata `sig`, as [`Emc::set_next`] recorded
    /// it. The caller checks that the megaflow is still there and
    /// current, as for a lookup.
    #[inline]
    pub fn next(&mut self, at: EmcRef, sig: &RecircSig) -> Option<(u32, u32)> {
        let n = (*self.next_of(at)?)?;
        (n.sig == *sig).then_some((n.mf, n.version))
    }

    /// Records that the key of entry `at`, recirculated with metadata
    /// `sig`, hit megaflow `mf` at `version`. Nothing when the entry has
    /// been replaced since.
    #[inline]
    pub fn set_next(&mut self, at: EmcRef, sig: RecircSig, mf: u32, version: u32) {
        if let Some(n) = self.next_of(at) {
            *n = Some(Next { sig, mf, version });
        }
    }

    /// Caches `key` -> megaflow slot `mf` at `version`, replacing a dead or
    /// the second candidate entry. The first candidate is reused when it is
    /// dead or has the same hash, and entries only die all at once
    /// ([`Emc::clear`]): so a hash never sits in both candidates, which
    /// `lookup` relies on.
    #[inline]
    pub fn insert(&mut self, hash: u64, key: &FlowKey, mf: u32, version: u32) {
        let i = hash as usize & MASK;
        let j = if !self.entries[i].live || self.entries[i].hash == hash {
            i
        } else {
            i ^ 1
        };
        // Never 0 (`EmcRef::NONE`). A stamp comes back after 2^32 - 1
        // inserts; a reference lives for one batch.
        self.stamp = self.stamp.checked_add(1).unwrap_or(1);
        self.entries[j] = Entry {
            hash,
            key: *key,
            mf,
            version,
            live: true,
            stamp: self.stamp,
        };
        self.next[j] = None;
    }

    /// Entries that know where their key went on its next pass.
    #[cfg(test)]
    pub fn learnt_next_passes(&self) -> usize {
        self.entries
            .iter()
            .zip(self.next.iter())
            .filter(|(e, n)| e.live && n.is_some())
            .count()
    }

    /// Forgets everything.
    pub fn clear(&mut self) {
        for e in self.entries.iter_mut() {
            e.live = false;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: u64) -> FlowKey {
        let mut k = FlowKey::default();
        k.set_nw_src(n as u32);
        k
    }

    #[test]
    fn one_entry_per_hash_in_a_pair() {
        let mut emc = Emc::default();
        // Slot 6's pair is {6, 7}. A hash for slot 7 takes slot 7, one for
        // slot 6 takes slot 6, a second hash for slot 6 the other one.
        emc.insert(7, &key(1), 1, 0);
        emc.insert(6, &key(2), 2, 0);
        assert_eq!(emc.lookup(7, &key(1)), Some((1, 0)));
        assert_eq!(emc.lookup(6, &key(2)), Some((2, 0)));
        emc.insert(0x1006, &key(3), 3, 0);
        assert_eq!(emc.lookup(0x1006, &key(3)), Some((3, 0)));
        assert_eq!(emc.lookup(6, &key(2)), Some((2, 0)));
        assert_eq!(emc.lookup(7, &key(1)), None, "replaced");
        // Same hash, other key: the entry is replaced in place, not
        // duplicated, and the old key misses.
        emc.insert(0x1006, &key(4), 4, 1);
        assert_eq!(emc.lookup(0x1006, &key(4)), Some((4, 1)));
        assert_eq!(emc.lookup(0x1006, &key(3)), None);
        assert_eq!(emc.lookup(6, &key(2)), Some((2, 0)));
        emc.clear();
        assert_eq!(emc.lookup(6, &key(2)), None);
    }

    fn sig(recirc_id: u32, ct_state: u8, ct_mark: u32) -> RecircSig {
        RecircSig::of(&PacketMeta {
            recirc_id,
            ct_state: crate::packet::CtState(ct_state),
            ct_mark,
            ..PacketMeta::default()
        })
    }

    /// An entry remembers one next pass per signature it last saw, only
    /// for as long as it holds the key it was found with.
    #[test]
    fn next_pass_is_remembered_while_the_entry_holds_its_key() {
        let mut emc = Emc::default();
        let est = sig(1, 0x22, 0);
        assert_eq!(emc.entry_ref(6), EmcRef::NONE, "nothing cached");
        emc.insert(6, &key(1), 1, 0);
        let at = emc.entry_ref(6);
        assert_ne!(at, EmcRef::NONE);
        assert_eq!(emc.next(at, &est), None, "nothing learnt yet");
        emc.set_next(at, est, 9, 3);
        assert_eq!(emc.next(at, &est), Some((9, 3)));
        // Any other metadata from the ct (state, mark, recirculation id)
        // is another key on the next pass: not this one's megaflow.
        for other in [sig(1, 0x30, 0), sig(1, 0x22, 5), sig(2, 0x22, 0)] {
            assert_eq!(emc.next(at, &other), None, "{other:?}");
        }
        // The other entry of the pair, inserted since: `at` still holds.
        emc.insert(0x1006, &key(2), 2, 0);
        assert_eq!(emc.next(at, &est), Some((9, 3)));
        // Re-inserted (a new megaflow for the same key): forgotten, and
        // the old reference no longer reaches the entry.
        emc.insert(6, &key(1), 4, 0);
        assert_eq!(emc.next(at, &est), None);
        emc.set_next(at, est, 9, 3);
        let now = emc.entry_ref(6);
        assert_ne!(now, at);
        assert_eq!(emc.next(now, &est), None, "a stale reference wrote nothing");
        emc.set_next(now, est, 8, 1);
        assert_eq!(emc.next(now, &est), Some((8, 1)));
        // The reference that refers to nothing reaches nothing.
        emc.set_next(EmcRef::NONE, est, 7, 7);
        assert_eq!(emc.next(EmcRef::NONE, &est), None);
        emc.clear();
        assert_eq!(emc.next(now, &est), None);
    }
}
