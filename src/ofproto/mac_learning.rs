//! The MAC learning table behind the `normal` action.
//!
//! Keyed by (VLAN, MAC), as Open vSwitch's `lib/mac-learning.c`: the same
//! MAC may live on different ports in different VLANs. Entries age out
//! (default 300 s, OVS's `mac-aging-time`). A per-port limit on learned
//! addresses (default 1024) keeps one VM that floods random source MACs from
//! filling the table and evicting everyone else's entries; learning beyond
//! it is refused and counted.
//!
//! Learning happens during translation (an upcall or a revalidation), never
//! per packet; the table is guarded by a mutex owned by `Ofproto`.

use hashbrown::HashMap;
use std::time::{Duration, Instant};

/// Default entry lifetime without traffic.
pub const DEFAULT_AGING: Duration = Duration::from_secs(300);
/// Default table size (all ports).
pub const DEFAULT_MAX_ENTRIES: usize = 8192;
/// Default limit of addresses learned on one port.
pub const DEFAULT_PORT_LIMIT: u32 = 1024;

#[derive(Debug, Clone, Copy)]
struct Entry {
    port: u32,
    last_seen: Instant,
}

/// What [`MacTable::learn`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Learned {
    /// Already known on this port: refreshed.
    Refreshed,
    /// New entry.
    New,
    /// The MAC moved from another port.
    Moved,
    /// Not learned: the port reached its limit.
    PortLimit,
    /// Not learned: multicast/broadcast source.
    Ignored,
}

/// A learned entry, for `fdb/show`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FdbEntry {
    /// OpenFlow port.
    pub port: u32,
    /// VLAN.
    pub vlan: u16,
    /// The address, `aa:bb:cc:dd:ee:ff`.
    pub mac: String,
    /// Seconds since last seen.
    pub age: u64,
}

/// The table.
#[derive(Debug)]
pub struct MacTable {
    entries: HashMap<(u16, u64), Entry, foldhash::fast::FixedState>,
    per_port: HashMap<u32, u32, foldhash::fast::FixedState>,
    /// Entry lifetime.
    pub aging: Duration,
    /// Global size limit.
    pub max_entries: usize,
    /// Learning refused because a port reached its limit.
    pub port_limit_hits: u64,
}

impl Default for MacTable {
    fn default() -> Self {
        MacTable {
            entries: HashMap::default(),
            per_port: HashMap::default(),
            aging: DEFAULT_AGING,
            max_entries: DEFAULT_MAX_ENTRIES,
            port_limit_hits: 0,
        }
    }
}

fn is_multicast(mac: u64) -> bool {
    mac & (1 << 40) != 0
}

impl MacTable {
    /// Learns that `mac` in `vlan` lives on `port` (at most `port_limit`
    /// addresses per port).
    pub fn learn(
        &mut self,
        vlan: u16,
        mac: u64,
        port: u32,
        port_limit: u32,
        now: Instant,
    ) -> Learned {
        if is_multicast(mac) {
            return Learned::Ignored;
        }
        if let Some(e) = self.entries.get_mut(&(vlan, mac)) {
            if e.port == port {
                e.last_seen = now;
                return Learned::Refreshed;
            }
            let old = e.port;
            if self.per_port.get(&port).copied().unwrap_or(0) >= port_limit {
                self.port_limit_hits += 1;
                return Learned::PortLimit;
            }
            e.port = port;
            e.last_seen = now;
            self.dec_port(old);
            *self.per_port.entry(port).or_insert(0) += 1;
            return Learned::Moved;
        }
        if self.per_port.get(&port).copied().unwrap_or(0) >= port_limit {
            self.port_limit_hits += 1;
            return Learned::PortLimit;
        }
        if self.entries.len() >= self.max_entries {
            self.evict_oldest();
        }
        self.entries.insert(
            (vlan, mac),
            Entry {
                port,
                last_seen: now,
            },
        );
        *self.per_port.entry(port).or_insert(0) += 1;
        Learned::New
    }

    fn dec_port(&mut self, port: u32) {
        if let Some(n) = self.per_port.get_mut(&port) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.per_port.remove(&port);
            }
        }
    }

    /// Changes the table's size (`other_config:mac-table-size`); a table
    /// over it loses its oldest entries now.
    pub fn set_max_entries(&mut self, n: usize) {
        self.max_entries = n.max(1);
        while self.entries.len() > self.max_entries {
            self.evict_oldest();
        }
    }

    fn evict_oldest(&mut self) {
        let oldest = self
            .entries
            .iter()
            .min_by_key(|(_, e)| e.last_seen)
            .map(|(k, e)| (*k, e.port));
        if let Some((k, port)) = oldest {
            self.entries.remove(&k);
            self.dec_port(port);
        }
    }

    /// The port `mac` was learned on in `vlan`, if not aged out.
    pub fn lookup(&self, vlan: u16, mac: u64, now: Instant) -> Option<u32> {
        self.entries
            .get(&(vlan, mac))
            .filter(|e| now.saturating_duration_since(e.last_seen) < self.aging)
            .map(|e| e.port)
    }

    /// Removes aged-out entries; returns how many.
    pub fn expire(&mut self, now: Instant) -> usize {
        let aging = self.aging;
        let dead: Vec<((u16, u64), u32)> = self
            .entries
            .iter()
            .filter(|(_, e)| now.saturating_duration_since(e.last_seen) >= aging)
            .map(|(k, e)| (*k, e.port))
            .collect();
        for (k, port) in &dead {
            self.entries.remove(k);
            self.dec_port(*port);
        }
        dead.len()
    }

    /// Forgets everything learned on `port` (port deleted or disabled).
    pub fn flush_port(&mut self, port: u32) -> usize {
        let before = self.entries.len();
        self.entries.retain(|_, e| e.port != port);
        self.per_port.remove(&port);
        before - self.entries.len()
    }

    /// Forgets everything.
    pub fn flush(&mut self) {
        self.entries.clear();
        self.per_port.clear();
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when nothing is learned.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Addresses learned on `port`.
    pub fn port_count(&self, port: u32) -> u32 {
        self.per_port.get(&port).copied().unwrap_or(0)
    }

    /// Every entry (for `fdb/show`), sorted by port, VLAN, MAC.
    pub fn dump(&self, now: Instant) -> Vec<FdbEntry> {
        let mut v: Vec<FdbEntry> = self
            .entries
            .iter()
            .map(|((vlan, mac), e)| FdbEntry {
                port: e.port,
                vlan: *vlan,
                mac: crate::flow::key::fmt_mac(*mac),
                age: now.saturating_duration_since(e.last_seen).as_secs(),
            })
            .collect();
        v.sort_by(|a, b| (a.port, a.vlan, &a.mac).cmp(&(b.port, b.vlan, &b.mac)));
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn learn_move_age() {
        let mut t = MacTable::default();
        let t0 = Instant::now();
        assert_eq!(t.learn(0, 0x0200_0000_0001, 1, 10, t0), Learned::New);
        assert_eq!(t.learn(0, 0x0200_0000_0001, 1, 10, t0), Learned::Refreshed);
        assert_eq!(t.lookup(0, 0x0200_0000_0001, t0), Some(1));
        assert_eq!(t.lookup(5, 0x0200_0000_0001, t0), None, "per VLAN");
        assert_eq!(t.learn(0, 0x0200_0000_0001, 2, 10, t0), Learned::Moved);
        assert_eq!(t.lookup(0, 0x0200_0000_0001, t0), Some(2));
        assert_eq!((t.port_count(1), t.port_count(2)), (0, 1));
        let later = t0 + DEFAULT_AGING;
        assert_eq!(t.lookup(0, 0x0200_0000_0001, later), None);
        assert_eq!(t.expire(later), 1);
        assert!(t.is_empty());
    }

    #[test]
    fn table_size_keeps_the_newest() {
        let mut t = MacTable::default();
        let t0 = Instant::now();
        for i in 0..20u64 {
            let at = t0 + Duration::from_millis(i);
            assert_eq!(t.learn(0, 0x0200_0000_0000 + i, 1, 100, at), Learned::New);
        }
        t.set_max_entries(10);
        assert_eq!(t.len(), 10);
        let now = t0 + Duration::from_millis(30);
        assert_eq!(t.lookup(0, 0x0200_0000_0000, now), None, "oldest gone");
        assert_eq!(t.lookup(0, 0x0200_0000_0013, now), Some(1), "newest kept");
        // Full: a new address evicts the oldest one left.
        assert_eq!(t.learn(0, 0x0200_0000_0100, 1, 100, now), Learned::New);
        assert_eq!(t.len(), 10);
        assert_eq!(t.lookup(0, 0x0200_0000_000a, now), None);
    }

    #[test]
    fn multicast_not_learned_and_port_limit() {
        let mut t = MacTable::default();
        let now = Instant::now();
        assert_eq!(t.learn(0, 0x0100_5e00_0001, 1, 10, now), Learned::Ignored);
        for i in 0..3 {
            assert_eq!(t.learn(0, 0x0200_0000_0100 + i, 7, 3, now), Learned::New);
        }
        assert_eq!(t.learn(0, 0x0200_0000_0200, 7, 3, now), Learned::PortLimit);
        assert_eq!(t.port_limit_hits, 1);
        assert_eq!(
            t.learn(0, 0x0200_0000_0300, 8, 3, now),
            Learned::New,
            "other ports unaffected"
        );
    }
}
