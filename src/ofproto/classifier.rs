//! The classifier: one OpenFlow table, looked up by tuple space search.
//!
//! Rules are grouped into subtables by mask; a lookup masks the key once per
//! subtable and does one hash probe. Subtables are kept sorted by the
//! highest priority they hold, so a lookup stops as soon as no remaining
//! subtable can beat the best match found (Open vSwitch `lib/classifier.c`
//! does the same, plus staged lookup and prefix tries we do not need yet).
//!
//! Every subtable probed contributes to the caller's wildcard mask: the
//! megaflow installed for the packet must pin every bit that could have
//! changed the outcome. Subtables skipped by the priority cut-off cannot
//! change it, so their bits stay wildcarded.
//!
//! *Staged lookup* (as Open vSwitch's classifier): a subtable's mask is cut
//! into stages (metadata, then L2, L3, L4), and for each stage but the last
//! the subtable keeps the set of its rules' keys cut to that stage. A
//! packet that matches no rule's stage-k prefix cannot match the subtable,
//! and only that prefix's bits go into the wildcard mask. Without it, an
//! ICMPv6 neighbour-discovery rule (matching `icmp_type`, so `tp_src`)
//! made every IPv4 TCP packet's megaflow pin its ports: one upcall per
//! connection, which a burst of new connections turns into a queue
//! overflow at the VM's TAP.
//!
//! Cost: O(number of distinct masks), independent of the number of rules,
//! which is what keeps a 100,000-rule table close to a 1-rule one.
//!
//! Not thread-safe by itself: the owner (`ofproto::Ofproto`) guards it.

use super::rule::Rule;
use crate::flow::{FlowKey, FlowMask, Match};
use hashbrown::HashMap;
use std::sync::Arc;

type FastMap<K, V> = HashMap<K, V, foldhash::fast::FixedState>;

/// One stage of a subtable: its mask cut to the fields of the stages so
/// far, and how many of the subtable's rule keys have each prefix.
struct Stage {
    mask: FlowMask,
    prefixes: FastMap<FlowKey, u32>,
}

/// The fields of each stage but the last (which is the rest: L4), as
/// Open vSwitch stages them: metadata (port, recirculation, conntrack,
/// tunnel, registers), then Ethernet and VLAN, then the network layer.
fn stage_fields() -> [FlowMask; 3] {
    let mut meta = FlowMask::default();
    meta.set_in_port(u32::MAX);
    meta.set_recirc_id(u32::MAX);
    meta.set_ct_zone(u16::MAX);
    meta.set_ct_state(u8::MAX);
    meta.set_ct_mark(u32::MAX);
    meta.set_tun_id(u64::MAX);
    meta.set_tun_src(u32::MAX);
    meta.set_tun_dst(u32::MAX);
    meta.set_tun_flags(u16::MAX);
    meta.set_tun_tos(u8::MAX);
    meta.set_tun_ttl(u8::MAX);
    meta.set_tun_metadata_present(u8::MAX);
    meta.set_metadata(u64::MAX);
    for n in 0..8 {
        meta.set_reg(n, u32::MAX);
        meta.set_tun_metadata(n, u64::MAX);
    }
    let mut l2 = FlowMask::default();
    l2.set_dl_dst_u64(u64::MAX);
    l2.set_dl_src_u64(u64::MAX);
    l2.set_dl_type(u16::MAX);
    l2.set_vlan_tci(u16::MAX);
    l2.set_vlan_tci1(u16::MAX);
    l2.set_vlan_tpid(u8::MAX);
    let mut l3 = FlowMask::default();
    l3.set_nw_proto(u8::MAX);
    l3.set_nw_tos(u8::MAX);
    l3.set_nw_ttl(u8::MAX);
    l3.set_nw_frag(u8::MAX);
    l3.set_nw_src(u32::MAX);
    l3.set_nw_dst(u32::MAX);
    l3.set_ipv6_src(u128::MAX);
    l3.set_ipv6_dst(u128::MAX);
    l3.set_ipv6_label(u32::MAX);
    l3.set_arp_sha_u64(u64::MAX);
    l3.set_arp_tha_u64(u64::MAX);
    let mut upto_l2 = meta;
    upto_l2.union_with(&l2);
    let mut upto_l3 = upto_l2;
    upto_l3.union_with(&l3);
    [meta, upto_l2, upto_l3]
}

fn and(a: &FlowMask, b: &FlowMask) -> FlowMask {
    let mut out = *a;
    for (o, b) in out.w.iter_mut().zip(b.w.iter()) {
        *o &= b;
    }
    out
}

struct Subtable {
    mask: FlowMask,
    /// The stages before the whole mask: each adds bits to the one before
    /// (a stage that would add none is left out).
    stages: Vec<Stage>,
    max_priority: u16,
    // Masked key -> rules with that exact match, highest priority first.
    rules: FastMap<FlowKey, Vec<Arc<Rule>>>,
    // How many rules hold each priority: the maximum is the last key, kept
    // exact in O(log n) per insert/remove.
    priorities: std::collections::BTreeMap<u16, usize>,
    n_rules: usize,
}

impl Subtable {
    fn new(mask: FlowMask) -> Self {
        let mut stages: Vec<Stage> = Vec::new();
        for fields in stage_fields() {
            let m = and(&mask, &fields);
            let prev = stages.last().map_or(FlowMask::default(), |s| s.mask);
            if m != prev && m != mask {
                stages.push(Stage {
                    mask: m,
                    prefixes: FastMap::default(),
                });
            }
        }
        Subtable {
            mask,
            stages,
            max_priority: 0,
            rules: FastMap::default(),
            priorities: std::collections::BTreeMap::new(),
            n_rules: 0,
        }
    }

    fn add_priority(&mut self, p: u16) {
        *self.priorities.entry(p).or_insert(0) += 1;
        self.max_priority = self.priorities.keys().next_back().copied().unwrap_or(0);
    }

    /// Counts (or, `add` false, uncounts) a rule key's stage prefixes.
    fn count_prefixes(&mut self, key: &FlowKey, add: bool) {
        for st in &mut self.stages {
            let p = key.masked(&st.mask);
            if add {
                *st.prefixes.entry(p).or_insert(0) += 1;
            } else if let Some(n) = st.prefixes.get_mut(&p) {
                *n -= 1;
                if *n == 0 {
                    st.prefixes.remove(&p);
                }
            }
        }
    }

    /// Probes for `key`: the highest-priority rule of the subtable that
    /// matches it, adding to `wc` the bits the answer depends on (only a
    /// stage's when the packet fails at that stage).
    #[inline]
    fn probe(&self, key: &FlowKey, wc: &mut FlowMask) -> Option<&Arc<Rule>> {
        for st in &self.stages {
            if !st.prefixes.contains_key(&key.masked(&st.mask)) {
                wc.union_with(&st.mask);
                return None;
            }
        }
        wc.union_with(&self.mask);
        self.rules.get(&key.masked(&self.mask))?.first()
    }

    fn remove_priority(&mut self, p: u16) {
        if let Some(n) = self.priorities.get_mut(&p) {
            *n -= 1;
            if *n == 0 {
                self.priorities.remove(&p);
            }
        }
        self.max_priority = self.priorities.keys().next_back().copied().unwrap_or(0);
    }
}

/// One table's rules.
#[derive(Default)]
pub struct Classifier {
    subtables: Vec<Subtable>,
    n_rules: usize,
    // Rules with an idle or hard timeout: flow expiry walks only the
    // tables that hold some, since walking 100,000 rules that can never
    // expire costs milliseconds every tick.
    n_timed: usize,
}

fn timed(r: &Rule) -> bool {
    r.spec.idle_timeout > 0 || r.spec.hard_timeout > 0
}

impl core::fmt::Debug for Classifier {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Classifier")
            .field("rules", &self.n_rules)
            .field("subtables", &self.subtables.len())
            .finish()
    }
}

impl Classifier {
    /// Number of rules.
    pub fn len(&self) -> usize {
        self.n_rules
    }

    /// True when the table is empty.
    pub fn is_empty(&self) -> bool {
        self.n_rules == 0
    }

    /// True when some rule has an idle or hard timeout.
    pub fn has_timeouts(&self) -> bool {
        self.n_timed > 0
    }

    /// Number of distinct masks.
    pub fn n_subtables(&self) -> usize {
        self.subtables.len()
    }

    fn sort(&mut self) {
        self.subtables
            .sort_by_key(|s| core::cmp::Reverse(s.max_priority));
    }

    /// Inserts `rule`. A rule with the same match and priority is replaced
    /// and returned.
    pub fn insert(&mut self, rule: Arc<Rule>) -> Option<Arc<Rule>> {
        let m = rule.spec.matches;
        let idx = match self.subtables.iter().position(|s| s.mask == m.mask) {
            Some(i) => i,
            None => {
                self.subtables.push(Subtable::new(m.mask));
                self.subtables.len() - 1
            }
        };
        let st = &mut self.subtables[idx];
        let prio = rule.priority();
        if !st.rules.contains_key(&m.key) {
            st.count_prefixes(&m.key, true);
        }
        let list = st.rules.entry(m.key).or_default();
        let new_timed = usize::from(timed(&rule));
        if let Some(pos) = list.iter().position(|r| r.priority() == prio) {
            let old = core::mem::replace(&mut list[pos], rule);
            self.n_timed = self.n_timed + new_timed - usize::from(timed(&old));
            return Some(old);
        }
        self.n_timed += new_timed;
        let pos = list
            .iter()
            .position(|r| r.priority() < prio)
            .unwrap_or(list.len());
        list.insert(pos, rule);
        st.n_rules += 1;
        self.n_rules += 1;
        let before = st.max_priority;
        st.add_priority(prio);
        if st.max_priority != before || st.n_rules == 1 {
            self.sort();
        }
        None
    }

    /// Removes the rule with exactly this match and priority.
    pub fn remove(&mut self, m: &Match, priority: u16) -> Option<Arc<Rule>> {
        let idx = self.subtables.iter().position(|s| s.mask == m.mask)?;
        let st = &mut self.subtables[idx];
        let list = st.rules.get_mut(&m.key)?;
        let pos = list.iter().position(|r| r.priority() == priority)?;
        let r = list.remove(pos);
        self.n_timed -= usize::from(timed(&r));
        if list.is_empty() {
            st.rules.remove(&m.key);
            st.count_prefixes(&m.key, false);
        }
        st.n_rules -= 1;
        self.n_rules -= 1;
        st.remove_priority(priority);
        if st.n_rules == 0 {
            self.subtables.remove(idx);
        } else {
            self.sort();
        }
        Some(r)
    }

    /// The rule with exactly this match and priority.
    pub fn find_exact(&self, m: &Match, priority: u16) -> Option<&Arc<Rule>> {
        let st = self.subtables.iter().find(|s| s.mask == m.mask)?;
        st.rules
            .get(&m.key)?
            .iter()
            .find(|r| r.priority() == priority)
    }

    /// The highest-priority rule matching `key`; the masks of the
    /// subtables probed are added to `wc`.
    #[inline]
    pub fn lookup(&self, key: &FlowKey, wc: &mut FlowMask) -> Option<&Arc<Rule>> {
        let mut best: Option<&Arc<Rule>> = None;
        for st in &self.subtables {
            if let Some(b) = best {
                if st.max_priority <= b.priority() {
                    break;
                }
            }
            if let Some(r) = st.probe(key, wc) {
                if best.is_none_or(|b| r.priority() > b.priority()) {
                    best = Some(r);
                }
            }
        }
        best
    }

    /// Every rule, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<Rule>> {
        self.subtables
            .iter()
            .flat_map(|s| s.rules.values().flat_map(|l| l.iter()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::{Field, FlowSpec};
    use crate::ofproto::rule::RuleStats;
    use std::time::Instant;

    fn rule(id: u64, prio: u16, m: Match) -> Arc<Rule> {
        let now = Instant::now();
        Arc::new(Rule {
            id,
            spec: FlowSpec {
                priority: prio,
                matches: m,
                ..FlowSpec::default()
            },
            created: now,
            modified: now,
            stats: Arc::new(RuleStats::new(now)),
        })
    }

    #[test]
    fn highest_priority_wins_and_mask_is_reported() {
        let mut c = Classifier::default();
        let mut m1 = Match::default();
        m1.set_exact(Field::NwProto, 6);
        m1.set_exact(Field::DlType, 0x0800);
        let mut m2 = Match::default();
        m2.set(Field::NwDst, 0x0a00_0000, 0xff00_0000);
        m2.set_exact(Field::DlType, 0x0800);
        c.insert(rule(1, 10, m1));
        c.insert(rule(2, 20, m2));
        c.insert(rule(3, 0, Match::default()));

        let mut k = FlowKey::default();
        k.set_dl_type(0x0800);
        k.set_nw_proto(6);
        k.set_nw_dst(0x0a01_0101);
        let mut wc = FlowMask::default();
        assert_eq!(c.lookup(&k, &mut wc).map(|r| r.id), Some(2));
        // Only the first subtable was needed: its match has the top priority.
        assert_eq!(wc.nw_dst(), 0xff00_0000);
        assert_eq!(wc.nw_proto(), 0);

        k.set_nw_dst(0x0b00_0001);
        let mut wc = FlowMask::default();
        assert_eq!(c.lookup(&k, &mut wc).map(|r| r.id), Some(1));
        assert_eq!(wc.nw_proto(), 0xff);
        assert_eq!(
            wc.nw_dst(),
            0xff00_0000,
            "the failed probe still pins nw_dst"
        );

        k.set_nw_proto(17);
        let mut wc = FlowMask::default();
        assert_eq!(c.lookup(&k, &mut wc).map(|r| r.id), Some(3));
    }

    /// A subtable whose rules all fail on an earlier stage pins only that
    /// stage: the ICMPv6 neighbour-discovery rules of the stateful firewall
    /// must not make an IPv4 TCP packet's megaflow match its ports.
    #[test]
    fn a_stage_that_fails_pins_only_its_fields() {
        let mut c = Classifier::default();
        let mut nd = Match::default();
        nd.set_exact(Field::DlType, 0x86dd);
        nd.set_exact(Field::NwProto, 58);
        nd.set_exact(Field::NwTtl, 255);
        nd.set_exact(Field::TpSrc, 135);
        nd.set_exact(Field::TpDst, 0);
        c.insert(rule(1, 110, nd));
        let mut ip = Match::default();
        ip.set_exact(Field::DlType, 0x0800);
        c.insert(rule(2, 100, ip));

        let mut k = FlowKey::default();
        k.set_dl_type(0x0800);
        k.set_nw_proto(6);
        k.set_nw_ttl(64);
        k.set_tp_src(45780);
        k.set_tp_dst(7000);
        let mut wc = FlowMask::default();
        assert_eq!(c.lookup(&k, &mut wc).map(|r| r.id), Some(2));
        assert_eq!(wc.dl_type(), 0xffff);
        assert_eq!((wc.nw_proto(), wc.nw_ttl()), (0, 0), "L3 left wild");
        assert_eq!((wc.tp_src(), wc.tp_dst()), (0, 0), "ports left wild");

        // An IPv6 packet passes the L2 stage: the L3 one decides (TCP is
        // not ICMPv6), the ports still stay wild.
        k.set_dl_type(0x86dd);
        let mut wc = FlowMask::default();
        assert!(c.lookup(&k, &mut wc).is_none());
        assert_eq!((wc.nw_proto(), wc.nw_ttl()), (0xff, 0xff));
        assert_eq!(wc.tp_src(), 0);
        // A neighbour solicitation goes through every stage and matches.
        k.set_nw_proto(58);
        k.set_nw_ttl(255);
        k.set_tp_src(135);
        k.set_tp_dst(0);
        let mut wc = FlowMask::default();
        assert_eq!(c.lookup(&k, &mut wc).map(|r| r.id), Some(1));
        assert_eq!(wc.tp_src(), 0xffff);
        // Removing the rule removes its prefixes: nothing matches there.
        assert!(c.remove(&nd, 110).is_some());
        assert!(c.lookup(&k, &mut FlowMask::default()).is_none());
    }

    #[test]
    fn replace_and_remove() {
        let mut c = Classifier::default();
        let mut m = Match::default();
        m.set_exact(Field::InPort, 1);
        assert!(c.insert(rule(1, 5, m)).is_none());
        assert_eq!(c.insert(rule(2, 5, m)).map(|r| r.id), Some(1));
        assert_eq!(c.len(), 1);
        c.insert(rule(3, 6, m));
        assert_eq!(c.len(), 2);
        assert_eq!(c.remove(&m, 6).map(|r| r.id), Some(3));
        assert_eq!(c.remove(&m, 5).map(|r| r.id), Some(2));
        assert!(c.is_empty());
        assert_eq!(c.n_subtables(), 0);
    }

    #[test]
    fn rules_with_timeouts_are_counted_through_replace_and_remove() {
        let timed = |id, idle, hard| {
            let mut r = rule(id, 5, Match::default());
            let spec = &mut Arc::get_mut(&mut r).unwrap().spec;
            spec.idle_timeout = idle;
            spec.hard_timeout = hard;
            r
        };
        let mut m = Match::default();
        m.set_exact(Field::DlType, 0x0800);
        let mut c = Classifier::default();
        c.insert(rule(1, 1, m));
        assert!(!c.has_timeouts());
        c.insert(timed(2, 10, 0));
        assert!(c.has_timeouts());
        // Replaced by the same match without a timeout, then with one.
        c.insert(timed(3, 0, 0));
        assert!(!c.has_timeouts());
        c.insert(timed(4, 0, 30));
        assert!(c.has_timeouts());
        assert!(c.remove(&Match::default(), 5).is_some());
        assert!(!c.has_timeouts());
        assert!(c.remove(&m, 1).is_some());
        assert!(c.is_empty());
    }
}
