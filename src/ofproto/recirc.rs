//! Recirculation: the state a packet's translation is frozen in when it
//! goes through `ct(table=N)`, keyed by a `recirc_id` the datapath carries.
//!
//! Registers and metadata exist only during translation (the datapath never
//! sees them), so `ct(table=N)` freezes them here; when the packet comes
//! back with its `recirc_id`, translation thaws them and resumes at table N.
//! Identical frozen states share one id, as in Open vSwitch's
//! `ofproto/ofproto-dpif-rid.c`, so the number of ids is bounded by the
//! number of distinct (table, registers, metadata) combinations the flows
//! produce.

use hashbrown::HashMap;

/// Upper bound on live recirculation ids (protects memory against flows
/// that freeze a per-packet value into a register).
pub const MAX_RECIRC_IDS: usize = 1 << 16;

/// Translation state at a `ct(table=N)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct FrozenState {
    /// Table to resume in.
    pub table: u8,
    /// `reg0`..`reg7`.
    pub regs: [u32; 8],
    /// `metadata`.
    pub metadata: u64,
}

/// The id allocator.
#[derive(Debug, Default)]
pub struct RecircTable {
    by_state: HashMap<FrozenState, u32>,
    by_id: HashMap<u32, FrozenState>,
    next: u32,
}

impl RecircTable {
    /// The id of `state`, allocating one if new. `None` when the table is
    /// full.
    pub fn get_or_alloc(&mut self, state: FrozenState) -> Option<u32> {
        if let Some(id) = self.by_state.get(&state) {
            return Some(*id);
        }
        if self.by_id.len() >= MAX_RECIRC_IDS {
            return None;
        }
        self.next = self.next.wrapping_add(1).max(1);
        while self.by_id.contains_key(&self.next) {
            self.next = self.next.wrapping_add(1).max(1);
        }
        let id = self.next;
        self.by_state.insert(state, id);
        self.by_id.insert(id, state);
        Some(id)
    }

    /// The frozen state of `id`.
    pub fn get(&self, id: u32) -> Option<FrozenState> {
        self.by_id.get(&id).copied()
    }

    /// Number of live ids.
    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    /// True when no id is allocated.
    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identical_states_share_an_id() {
        let mut t = RecircTable::default();
        let a = FrozenState {
            table: 1,
            ..Default::default()
        };
        let mut b = a;
        b.regs[0] = 5;
        let ia = t.get_or_alloc(a).unwrap();
        let ib = t.get_or_alloc(b).unwrap();
        assert_ne!(ia, ib);
        assert_ne!(ia, 0, "0 means first pass");
        assert_eq!(t.get_or_alloc(a), Some(ia));
        assert_eq!(t.get(ib), Some(b));
    }
}
