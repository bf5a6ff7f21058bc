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
        for j in [i, i ^ 1] {
            let e = &self.entries[j];
            if e.live && e.hash == hash && e.key.dp_eq(key) {
                return Some((e.mf, e.version));
            }
        }
        None
    }

    /// Caches `key` -> megaflow slot `mf` at `version`, replacing a dead or
    /// the second candidate entry.
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
