//! The exact-match cache: full packet key -> megaflow, per worker.
//!
//! A fixed array indexed by the key hash, probed at two slots (the hash and
//! its neighbour), as Open vSwitch's EMC. An entry points at a megaflow slot
//! plus that slot's version, so removing a megaflow invalidates every EMC
//! entry pointing at it without touching the EMC.
//!
//! Owned by one worker thread: no locks.

use crate::flow::FlowKey;

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
}

/// The cache.
pub struct Emc {
    entries: Box<[Entry]>,
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
                };
                EMC_ENTRIES
            ]
            .into_boxed_slice(),
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
        self.entries[j] = Entry {
            hash,
            key: *key,
            mf,
            version,
            live: true,
        };
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
}
