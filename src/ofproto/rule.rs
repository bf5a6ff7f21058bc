//! [`Rule`]: a flow installed in a table, with its counters.
//!
//! Counters are atomics shared with the datapath's megaflows (each megaflow
//! holds an `Arc<RuleStats>` of every rule its translation went through and
//! credits them once per batch), so `dump-flows` reads them without asking
//! the datapath threads.

use crate::flow::FlowSpec;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Packet and byte counters of one rule, and when it was last used.
#[derive(Debug)]
pub struct RuleStats {
    packets: AtomicU64,
    bytes: AtomicU64,
    // Nanoseconds since `epoch` of the last packet (0 = never).
    used_ns: AtomicU64,
    epoch: Instant,
}

impl RuleStats {
    /// Fresh counters; `epoch` is the time base for `used`.
    pub fn new(epoch: Instant) -> Self {
        RuleStats {
            packets: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            used_ns: AtomicU64::new(0),
            epoch,
        }
    }

    /// Credits `packets` / `bytes` seen at `now`.
    #[inline]
    pub fn credit(&self, packets: u64, bytes: u64, now: Instant) {
        self.packets.fetch_add(packets, Ordering::Relaxed);
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
        let ns = now.saturating_duration_since(self.epoch).as_nanos() as u64;
        self.used_ns.fetch_max(ns.max(1), Ordering::Relaxed);
    }

    /// Packets counted.
    pub fn packets(&self) -> u64 {
        self.packets.load(Ordering::Relaxed)
    }

    /// Bytes counted.
    pub fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }

    /// When the rule last saw a packet (`None` = never).
    pub fn used(&self) -> Option<Instant> {
        match self.used_ns.load(Ordering::Relaxed) {
            0 => None,
            ns => Some(self.epoch + Duration::from_nanos(ns)),
        }
    }

    /// Copies counters from another rule (modify keeps counters).
    pub fn copy_from(&self, other: &RuleStats) {
        self.packets.store(other.packets(), Ordering::Relaxed);
        self.bytes.store(other.bytes(), Ordering::Relaxed);
        let ns = other.used().map_or(0, |u| {
            u.saturating_duration_since(self.epoch).as_nanos() as u64
        });
        self.used_ns.store(ns, Ordering::Relaxed);
    }
}

/// A flow in a table.
#[derive(Debug)]
pub struct Rule {
    /// Unique id (never reused while the daemon runs).
    pub id: u64,
    /// The flow as added (its `actions` may be replaced by `mod-flows`,
    /// which installs a new `Rule` with the same id and counters).
    pub spec: FlowSpec,
    /// When the flow was added.
    pub created: Instant,
    /// When its actions were last modified (for `hard_age`).
    pub modified: Instant,
    /// Counters, shared with megaflows.
    pub stats: Arc<RuleStats>,
}

impl Rule {
    /// Priority (shortcut).
    #[inline]
    pub fn priority(&self) -> u16 {
        self.spec.priority
    }

    /// When the rule expires by `idle_timeout` / `hard_timeout`, if ever.
    pub fn expires_at(&self) -> Option<Instant> {
        let hard = (self.spec.hard_timeout > 0)
            .then(|| self.modified + Duration::from_secs(u64::from(self.spec.hard_timeout)));
        let idle = (self.spec.idle_timeout > 0).then(|| {
            self.stats
                .used()
                .unwrap_or(self.modified)
                .max(self.modified)
                + Duration::from_secs(u64::from(self.spec.idle_timeout))
        });
        match (hard, idle) {
            (Some(h), Some(i)) => Some(h.min(i)),
            (h, i) => h.or(i),
        }
    }
}
