//! [`Match`]: a flow key plus the mask saying which of its bits matter, and
//! [`FlowSpec`]: a whole flow as `add-flow` takes it.

use super::action::Action;
use super::field::Field;
use super::key::{FlowKey, FlowMask};

/// Fields to match and how (a key and a mask). The key is kept masked, so
/// two equal matches compare equal.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Match {
    /// Values, with the bits outside `mask` cleared.
    pub key: FlowKey,
    /// Bits that matter.
    pub mask: FlowMask,
}

impl Match {
    /// Matches every packet.
    pub fn catchall() -> Self {
        Match::default()
    }

    /// Adds `field == value` under `mask` (combined with what is there).
    pub fn set(&mut self, field: Field, value: u128, mask: u128) {
        let m = mask & field.full_mask();
        let old_m = field.get_mask(&self.mask);
        field.set_mask(&mut self.mask, old_m | m);
        let old_v = field.get(&self.key);
        field.set(&mut self.key, (old_v & !m) | (value & m));
    }

    /// Adds an exact match on `field`.
    pub fn set_exact(&mut self, field: Field, value: u128) {
        self.set(field, value, field.full_mask());
    }

    /// The value and mask of `field`.
    pub fn get(&self, field: Field) -> (u128, u128) {
        (field.get(&self.key), field.get_mask(&self.mask))
    }

    /// True when the packet key matches.
    #[inline]
    pub fn matches(&self, k: &FlowKey) -> bool {
        k.matches(&self.mask, &self.key)
    }

    /// True when every packet this match accepts is also accepted by
    /// `other` (used by non-strict `del-flows` / `mod-flows`).
    pub fn is_subset_of(&self, other: &Match) -> bool {
        for i in 0..super::key::WORDS {
            // other's mask must be contained in ours, and our values must
            // agree with other's on other's bits.
            if other.mask.w[i] & !self.mask.w[i] != 0 {
                return false;
            }
            if self.key.w[i] & other.mask.w[i] != other.key.w[i] {
                return false;
            }
        }
        true
    }
}

/// `add-flow` flags that Open vSwitch prints in `dump-flows`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct FlowFlags {
    /// `send_flow_rem`.
    pub send_flow_rem: bool,
    /// `check_overlap`.
    pub check_overlap: bool,
    /// `reset_counts`.
    pub reset_counts: bool,
    /// `no_packet_counts`.
    pub no_packet_counts: bool,
    /// `no_byte_counts`.
    pub no_byte_counts: bool,
}

/// A flow as written on an `add-flow` line.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FlowSpec {
    /// `table=N` (0..=254).
    pub table: u8,
    /// `priority=N` (default 32768).
    pub priority: u16,
    /// `cookie=N`.
    pub cookie: u64,
    /// `cookie=N/MASK` (only meaningful for mod/del; 0 = ignore cookies).
    pub cookie_mask: u64,
    /// `idle_timeout=S` (0 = none).
    pub idle_timeout: u16,
    /// `hard_timeout=S` (0 = none).
    pub hard_timeout: u16,
    /// `importance=N`.
    pub importance: u16,
    /// Flags.
    pub flags: FlowFlags,
    /// What to match.
    pub matches: Match,
    /// What to do; empty means drop.
    pub actions: Vec<Action>,
    /// For del-flows / dump-flows filters: `out_port=N` (None = any).
    pub out_port: Option<u32>,
}

/// Default OpenFlow priority.
pub const DEFAULT_PRIORITY: u16 = 32768;

impl Default for FlowSpec {
    fn default() -> Self {
        FlowSpec {
            table: 0,
            priority: DEFAULT_PRIORITY,
            cookie: 0,
            cookie_mask: 0,
            idle_timeout: 0,
            hard_timeout: 0,
            importance: 0,
            flags: FlowFlags::default(),
            matches: Match::default(),
            actions: Vec::new(),
            out_port: None,
        }
    }
}
