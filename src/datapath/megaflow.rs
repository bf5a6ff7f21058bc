//! The megaflow cache: tuple-space search over the masks translations
//! produced, per worker (Open vSwitch's `dpcls`).
//!
//! Each distinct mask is a subtable mapping the masked key to a slot of a
//! slab. Subtables are re-ordered by hit count so the busy ones are probed
//! first. Slots carry a version, bumped when the slot is freed, so stale
//! exact-match cache entries can never reach a recycled slot. Each
//! megaflow carries a [`Plan`] for its actions, decided once at install.
//!
//! Owned by one worker thread: no locks. Rule counters are shared atomics
//! credited once per batch per megaflow.

use super::execute::ct_params;
use crate::conntrack::CtParams;
use crate::flow::{Field, FlowKey, FlowMask};
use crate::ofproto::{DpAction, RuleStats, Translation, XlateError};
use hashbrown::HashMap;
use std::sync::Arc;
use std::time::Instant;

type FastMap<K, V> = HashMap<K, V, foldhash::fast::FixedState>;

/// A cached translation.
#[derive(Debug)]
// Field order matters: everything a cache hit touches (generation,
// counters, actions) is declared first and `repr(C)` keeps it together in
// the first cache lines; the keys, read only on insert and revalidation,
// come last.
#[repr(C)]
pub struct Megaflow {
    /// Ofproto generation it was translated under.
    pub generation: u64,
    /// Packets that hit it.
    pub packets: u64,
    /// Bytes that hit it.
    pub bytes: u64,
    // Counts not yet credited to the rules.
    pub(crate) pending_packets: u64,
    pub(crate) pending_bytes: u64,
    /// Last hit.
    pub used: Option<Instant>,
    /// How the actions run (decided from them at install).
    pub plan: Plan,
    /// The actions run `ct` or recirculate. As a next pass, such a
    /// megaflow runs from the recirculation queue, never right away (see
    /// `Datapath::ct_then_next_pass`): so connections change, and passes
    /// are counted, in the same order either way.
    pub stateful: bool,
    /// Datapath actions.
    pub actions: Vec<DpAction>,
    /// Why matching packets die, when they go nowhere.
    pub drop: Option<XlateError>,
    /// Needs periodic re-translation (MAC learning refresh).
    pub uses_normal: bool,
    // Used since the last revalidation sweep.
    pub(crate) used_since_sweep: bool,
    /// Rules to credit.
    pub rules: Vec<Arc<RuleStats>>,
    /// Created.
    pub created: Instant,
    /// Masked key.
    pub key: FlowKey,
    /// Mask.
    pub mask: FlowMask,
    /// Full key of the packet that created it (re-translated on
    /// revalidation).
    pub example: FlowKey,
}

impl Megaflow {
    /// Replaces the cached result after a revalidation whose mask fits
    /// within this megaflow's.
    pub fn update(&mut self, t: Translation, generation: u64) {
        self.plan = Plan::of(&t.actions);
        self.stateful = stateful(&t.actions);
        self.actions = t.actions;
        self.rules = t.rules;
        self.drop = t.drop;
        self.uses_normal = t.uses_normal;
        self.generation = generation;
    }

    /// Credits pending counts to the rules.
    /// Folds the batch's pending counts into the megaflow's own counters
    /// and credits them to the rules. Per packet only the two pending
    /// counters are written: everything else is touched once per batch.
    pub fn flush_stats(&mut self, now: Instant) {
        if self.pending_packets == 0 {
            return;
        }
        for r in &self.rules {
            r.credit(self.pending_packets, self.pending_bytes, now);
        }
        self.packets += self.pending_packets;
        self.bytes += self.pending_bytes;
        self.used = Some(now);
        self.used_since_sweep = true;
        self.pending_packets = 0;
        self.pending_bytes = 0;
    }
}

/// How a megaflow's actions run, decided once when they are installed.
/// Plain forwarding (rewrite the MACs, send out of one port) is most of
/// the traffic a host switch sees; it runs without the general action
/// loop, whose dispatch, checks and stack frame were about 90 of the 820
/// instructions an EMC hit ran per packet (counted with callgrind).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plan {
    /// Set `dl_dst` and/or `dl_src`, then output to `port`.
    Forward {
        /// New destination MAC.
        dl_dst: Option<[u8; 6]>,
        /// New source MAC.
        dl_src: Option<[u8; 6]>,
        /// OpenFlow port.
        port: u32,
    },
    /// `ct(...)` then recirculate with `id`, and nothing else: what
    /// `ct(table=N)` translates to, a stateful pipeline's first pass. The
    /// datapath may run the next pass right away (see `Emc::next`).
    CtRecirc {
        /// The `ct` action's arguments.
        ct: CtParams,
        /// The recirculation id.
        id: u32,
    },
    /// Anything else: the general action loop.
    General,
}

fn stateful(actions: &[DpAction]) -> bool {
    actions
        .iter()
        .any(|a| matches!(a, DpAction::Recirc(_) | DpAction::Ct { .. }))
}

impl Plan {
    /// The plan for `actions`.
    pub fn of(actions: &[DpAction]) -> Plan {
        if let [a, DpAction::Recirc(id)] = actions {
            if let Some(ct) = ct_params(a) {
                return Plan::CtRecirc { ct, id: *id };
            }
        }
        let Some((DpAction::Output(port), rewrites)) = actions.split_last() else {
            return Plan::General;
        };
        let (mut dl_dst, mut dl_src) = (None, None);
        for a in rewrites {
            match a.whole_mac_rewrite() {
                Some((Field::DlDst, mac)) => dl_dst = Some(mac),
                Some((Field::DlSrc, mac)) => dl_src = Some(mac),
                _ => return Plan::General,
            }
        }
        Plan::Forward {
            dl_dst,
            dl_src,
            port: *port,
        }
    }
}

struct Subtable {
    mask: FlowMask,
    map: FastMap<FlowKey, u32>,
    hits: u64,
}

/// The cache.
#[derive(Default)]
pub struct MegaflowCache {
    slots: Vec<Option<Megaflow>>,
    versions: Vec<u32>,
    free: Vec<u32>,
    subtables: Vec<Subtable>,
    len: usize,
    lookups: u64,
}

/// Upper bound on cached megaflows per worker (Open vSwitch's default
/// flow limit is 200,000 for the whole datapath).
pub const MAX_MEGAFLOWS: usize = 65536;

impl MegaflowCache {
    /// Number of cached megaflows.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Number of distinct masks.
    pub fn n_subtables(&self) -> usize {
        self.subtables.len()
    }

    /// The slot and version of the megaflow matching `key`.
    #[inline]
    pub fn lookup(&mut self, key: &FlowKey) -> Option<(u32, u32)> {
        self.lookups += 1;
        for st in self.subtables.iter_mut() {
            let masked = key.masked(&st.mask);
            if let Some(&slot) = st.map.get(&masked) {
                st.hits += 1;
                return Some((slot, self.versions[slot as usize]));
            }
        }
        if self.lookups.is_multiple_of(4096) {
            // Busy subtables first (Open vSwitch sorts dpcls subtables by
            // hits the same way).
            self.subtables.sort_by_key(|s| core::cmp::Reverse(s.hits));
            for s in &mut self.subtables {
                s.hits /= 2;
            }
        }
        None
    }

    /// The megaflow in `slot` if its version is still `version`.
    #[inline]
    pub fn get_mut(&mut self, slot: u32, version: u32) -> Option<&mut Megaflow> {
        if self.versions.get(slot as usize) != Some(&version) {
            return None;
        }
        self.slots.get_mut(slot as usize)?.as_mut()
    }

    /// The current version of `slot`.
    pub fn version(&self, slot: u32) -> u32 {
        self.versions.get(slot as usize).copied().unwrap_or(0)
    }

    /// The megaflow in `slot`.
    pub fn slot(&self, slot: u32) -> Option<&Megaflow> {
        self.slots.get(slot as usize)?.as_ref()
    }

    /// Installs a translation for `key`; returns (slot, version), or the
    /// translation back when the cache is full (the caller executes it
    /// uncached).
    pub fn insert(
        &mut self,
        key: &FlowKey,
        t: Translation,
        generation: u64,
        now: Instant,
    ) -> Result<(u32, u32), Box<Translation>> {
        if self.len >= MAX_MEGAFLOWS {
            return Err(Box::new(t));
        }
        let masked = key.masked(&t.mask);
        let st = match self.subtables.iter().position(|s| s.mask == t.mask) {
            Some(i) => i,
            None => {
                self.subtables.push(Subtable {
                    mask: t.mask,
                    map: FastMap::default(),
                    hits: 0,
                });
                self.subtables.len() - 1
            }
        };
        // Another packet of the same megaflow may have raced us in this
        // batch: replace.
        if let Some(&old) = self.subtables[st].map.get(&masked) {
            self.remove(old);
            return self.insert(key, t, generation, now);
        }
        let slot = match self.free.pop() {
            Some(s) => s,
            None => {
                self.slots.push(None);
                self.versions.push(0);
                (self.slots.len() - 1) as u32
            }
        };
        self.slots[slot as usize] = Some(Megaflow {
            key: masked,
            mask: t.mask,
            example: *key,
            plan: Plan::of(&t.actions),
            stateful: stateful(&t.actions),
            actions: t.actions,
            rules: t.rules,
            drop: t.drop,
            uses_normal: t.uses_normal,
            generation,
            packets: 0,
            bytes: 0,
            used: None,
            created: now,
            pending_packets: 0,
            pending_bytes: 0,
            used_since_sweep: true,
        });
        self.subtables[st].map.insert(masked, slot);
        self.len += 1;
        Ok((slot, self.versions[slot as usize]))
    }

    /// Removes the megaflow in `slot`.
    pub fn remove(&mut self, slot: u32) -> Option<Megaflow> {
        let mf = self.slots.get_mut(slot as usize)?.take()?;
        // Subtables are few and get re-ordered by hits: find by mask.
        if let Some(i) = self.subtables.iter().position(|s| s.mask == mf.mask) {
            self.subtables[i].map.remove(&mf.key);
            if self.subtables[i].map.is_empty() {
                self.subtables.remove(i);
            }
        }
        self.versions[slot as usize] = self.versions[slot as usize].wrapping_add(1);
        self.free.push(slot);
        self.len -= 1;
        Some(mf)
    }

    /// Slots in use.
    pub fn slots(&self) -> Vec<u32> {
        (0..self.slots.len() as u32)
            .filter(|s| self.slots[*s as usize].is_some())
            .collect()
    }

    /// Removes every megaflow.
    pub fn clear(&mut self) {
        for s in self.slots() {
            self.remove(s);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set_mac(field: Field, mac: u64, mask: u128) -> DpAction {
        DpAction::SetField {
            field,
            value: u128::from(mac),
            mask,
        }
    }

    #[test]
    fn plan_forward_only_for_whole_mac_rewrites_then_one_output() {
        let full = 0xffff_ffff_ffff;
        assert_eq!(
            Plan::of(&[DpAction::Output(3)]),
            Plan::Forward {
                dl_dst: None,
                dl_src: None,
                port: 3
            }
        );
        assert_eq!(
            Plan::of(&[
                set_mac(Field::DlSrc, 0x0200_0000_0001, full),
                set_mac(Field::DlDst, 0x0200_0000_0009, full),
                DpAction::Output(2),
            ]),
            Plan::Forward {
                dl_dst: Some([2, 0, 0, 0, 0, 9]),
                dl_src: Some([2, 0, 0, 0, 0, 1]),
                port: 2
            }
        );
        // Everything else takes the general loop: no actions (a drop),
        // two outputs, a partial MAC mask, another field, output not last.
        for actions in [
            vec![],
            vec![DpAction::Output(1), DpAction::Output(2)],
            vec![set_mac(Field::DlDst, 1, 0xff), DpAction::Output(2)],
            vec![
                DpAction::SetField {
                    field: Field::NwTtl,
                    value: 1,
                    mask: 0xff,
                },
                DpAction::Output(2),
            ],
            vec![DpAction::Output(2), set_mac(Field::DlDst, 1, full)],
            vec![DpAction::PopVlan, DpAction::Output(2)],
        ] {
            assert_eq!(Plan::of(&actions), Plan::General, "{actions:?}");
        }
    }

    #[test]
    fn plan_ct_recirc_only_for_one_ct_then_its_recirculation() {
        let ct = DpAction::Ct {
            zone: 7,
            commit: true,
            force: false,
            mark: Some((5, 0xff)),
        };
        let params = CtParams {
            zone: 7,
            commit: true,
            force: false,
            set_mark: Some((5, 0xff)),
        };
        assert_eq!(
            Plan::of(&[ct.clone(), DpAction::Recirc(3)]),
            Plan::CtRecirc { ct: params, id: 3 }
        );
        for actions in [
            vec![DpAction::Recirc(3), ct.clone()],
            vec![ct.clone()],
            vec![ct.clone(), DpAction::Recirc(3), DpAction::Output(1)],
            vec![DpAction::Output(1), ct.clone(), DpAction::Recirc(3)],
            vec![DpAction::CtClear, DpAction::Recirc(3)],
        ] {
            assert_eq!(Plan::of(&actions), Plan::General, "{actions:?}");
        }
        assert!(stateful(&[ct]));
        assert!(stateful(&[DpAction::Output(1), DpAction::Recirc(3)]));
        assert!(!stateful(&[DpAction::CtClear, DpAction::Output(1)]));
    }
}
