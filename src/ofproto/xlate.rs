//! Translation: a packet key through the OpenFlow tables into datapath
//! actions, plus the mask of every key bit the outcome depended on.
//!
//! This follows Open vSwitch's `ofproto/ofproto-dpif-xlate.c` in spirit:
//!
//! * Two views of the packet: `key` is what OpenFlow sees (set actions
//!   change it immediately, so a later `resubmit` matches the new values),
//!   and the datapath packet, which only changes when a set is *committed*
//!   right before an output, a `ct` or a recirculation. Commits emit one
//!   `DpAction::SetField` per field written since the previous commit.
//! * Every decision reads the key through the wildcard mask `wc`: the
//!   classifier adds the masks it probed, and actions that look at a field
//!   (`normal` reads MACs and VLANs, `dec_ttl` reads the TTL, `move` its
//!   source) add those bits. The datapath caches the result for every packet
//!   that agrees on those bits (the megaflow).
//! * Registers and metadata never reach the datapath; `ct(table=N)` freezes
//!   them into a recirculation id (see `recirc`).

use super::dpaction::DpAction;
use super::mac_learning::{self, Learned};
use super::port_info::PortInfo;
use super::recirc::FrozenState;
use super::rule::{Rule, RuleStats};
use super::trace::Trace;
use super::xlate_error::XlateError;
use super::{Ofproto, Ports, Tables};
use crate::flow::{ofp_port, Action, CtZone, Field, FieldSlice, FlowKey, FlowMask};
use std::sync::Arc;
use std::time::Instant;

/// Maximum nesting of `resubmit` / `goto_table` (Open vSwitch uses 64).
pub const MAX_DEPTH: u32 = 64;
/// Maximum resubmits per translation (guards against exponential fan-out).
pub const MAX_RESUBMITS: u32 = 4096;

/// The result of translating one key.
#[derive(Debug, Clone)]
pub struct Translation {
    /// Datapath actions, in order.
    pub actions: Vec<DpAction>,
    /// Key bits the result depends on.
    pub mask: FlowMask,
    /// Counters of every rule the translation went through.
    pub rules: Vec<Arc<RuleStats>>,
    /// Why the packet dies, when the actions send it nowhere.
    pub drop: Option<XlateError>,
    /// The translation used `normal`: the datapath re-translates such flows
    /// periodically so MAC learning entries stay fresh.
    pub uses_normal: bool,
}

/// VLAN tags of a packet, outermost first: (tpid, tci without CFI).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct VlanStack {
    tags: [(u16, u16); 2],
    n: usize,
}

impl VlanStack {
    pub(crate) fn from_key(k: &FlowKey) -> Self {
        let mut s = VlanStack::default();
        if k.vlan_tci() & FlowKey::VLAN_CFI != 0 {
            let tpid = if k.vlan_tpid() & FlowKey::TPID_OUTER_AD != 0 {
                0x88a8
            } else {
                0x8100
            };
            s.tags[0] = (tpid, k.vlan_tci() & !FlowKey::VLAN_CFI);
            s.n = 1;
            if k.vlan_tci1() & FlowKey::VLAN_CFI != 0 {
                let tpid = if k.vlan_tpid() & FlowKey::TPID_INNER_AD != 0 {
                    0x88a8
                } else {
                    0x8100
                };
                s.tags[1] = (tpid, k.vlan_tci1() & !FlowKey::VLAN_CFI);
                s.n = 2;
            }
        }
        s
    }

    fn to_key(self, k: &mut FlowKey) {
        let mut tpid = 0;
        k.set_vlan_tci(0);
        k.set_vlan_tci1(0);
        if self.n >= 1 {
            k.set_vlan_tci(self.tags[0].1 | FlowKey::VLAN_CFI);
            if self.tags[0].0 == 0x88a8 {
                tpid |= FlowKey::TPID_OUTER_AD;
            }
        }
        if self.n >= 2 {
            k.set_vlan_tci1(self.tags[1].1 | FlowKey::VLAN_CFI);
            if self.tags[1].0 == 0x88a8 {
                tpid |= FlowKey::TPID_INNER_AD;
            }
        }
        k.set_vlan_tpid(tpid);
    }

    fn outer(&self) -> Option<(u16, u16)> {
        (self.n > 0).then_some(self.tags[0])
    }

    fn push(&mut self, tpid: u16, tci: u16) -> bool {
        if self.n >= 2 {
            return false;
        }
        self.tags[1] = self.tags[0];
        self.tags[0] = (tpid, tci);
        self.n += 1;
        true
    }

    fn pop(&mut self) -> bool {
        if self.n == 0 {
            return false;
        }
        self.tags[0] = self.tags[1];
        self.tags[1] = (0, 0);
        self.n -= 1;
        true
    }

    fn inner_slice(&self) -> &[(u16, u16)] {
        &self.tags[..self.n]
    }
}

/// Fields whose writes reach the datapath (everything else a `set_field`
/// can write lives only in translation).
fn is_packet_field(f: Field) -> bool {
    !matches!(
        f,
        Field::InPort
            | Field::Metadata
            | Field::Reg(_)
            | Field::CtState
            | Field::CtZone
            | Field::CtMark
            | Field::NwFrag
            | Field::TcpFlags
            | Field::DlType
            | Field::NwProto
            | Field::VlanTci
            | Field::DlVlan
            | Field::DlVlanPcp
    )
}

/// The field a write really lands in (`ip_dscp` and `nw_ecn` are views of
/// the TOS byte, `icmp_type` of `tp_src`, ...), with the view's bits placed
/// in the storage field.
fn storage_of(f: Field, value: u128, mask: u128) -> (Field, u128, u128) {
    match f {
        Field::IpDscp => (Field::NwTos, (value & 0x3f) << 2, (mask & 0x3f) << 2),
        Field::NwEcn => (Field::NwTos, value & 3, mask & 3),
        Field::IcmpType => (Field::TpSrc, value & 0xff, mask & 0xff),
        Field::IcmpCode => (Field::TpDst, value & 0xff, mask & 0xff),
        Field::ArpOp => (Field::ArpOp, value, mask),
        _ => (f, value, mask),
    }
}

/// True when `key` satisfies the prerequisites for writing `f` (an IPv4
/// address needs an IPv4 packet, a port needs TCP/UDP/SCTP, ...). Adds the
/// bits it looked at to `wc`.
pub(crate) fn prereqs_ok(f: Field, key: &FlowKey, wc: &mut FlowMask) -> bool {
    let need_type = |t: &[u16], wc: &mut FlowMask| {
        wc.set_dl_type(0xffff);
        t.contains(&key.dl_type())
    };
    match f {
        Field::NwSrc | Field::NwDst => need_type(&[0x0800], wc),
        Field::NwTos | Field::IpDscp | Field::NwEcn | Field::NwTtl => {
            need_type(&[0x0800, 0x86dd], wc)
        }
        Field::Ipv6Src | Field::Ipv6Dst | Field::Ipv6Label => need_type(&[0x86dd], wc),
        Field::ArpOp | Field::ArpSpa | Field::ArpTpa | Field::ArpSha | Field::ArpTha => {
            need_type(&[0x0806, 0x8035], wc)
        }
        Field::TpSrc | Field::TpDst => {
            if !need_type(&[0x0800, 0x86dd], wc) {
                return false;
            }
            wc.set_nw_proto(0xff);
            // Later fragments carry no L4 header; the datapath skips port
            // rewrites on them (it knows from the header offsets).
            matches!(key.nw_proto(), 6 | 17 | 132)
        }
        Field::IcmpType | Field::IcmpCode => {
            if !need_type(&[0x0800, 0x86dd], wc) {
                return false;
            }
            wc.set_nw_proto(0xff);
            (key.is_ipv4() && key.nw_proto() == 1) || (key.is_ipv6() && key.nw_proto() == 58)
        }
        _ => true,
    }
}

pub(crate) struct Xlate<'a> {
    of: &'a Ofproto,
    tables: &'a Tables,
    ports: &'a Ports,
    now: Instant,
    pub(crate) key: FlowKey,
    // The packet's key as it entered (megaflows are keyed by it).
    initial_key: FlowKey,
    // False for `trace`: a trace must not learn MACs or disable ports.
    may_learn: bool,
    // False for `trace` and for the datapath's periodic refresh of a cached
    // megaflow: BPDU guard acts on a BPDU that arrives, never on one the
    // cache remembers (it may predate the guard).
    pub(crate) may_disable: bool,
    pub(crate) wc: FlowMask,
    // VLAN tags of the datapath packet (changes only on commit).
    base_vlan: VlanStack,
    // Packet fields written since the last commit, with the bits written.
    dirty: Vec<(Field, u128)>,
    vlan_dirty: bool,
    pub(crate) actions: Vec<DpAction>,
    rules: Vec<Arc<RuleStats>>,
    depth: u32,
    resubmits: u32,
    pub(crate) trace: Option<&'a mut Trace>,
    top_level_miss: bool,
    drop: Option<XlateError>,
    stopped: bool,
    uses_normal: bool,
    table_id: u8,
    // The cookie of the flow whose actions run (PACKET_IN carries it).
    cookie: u64,
    // Translating a packet-out's actions: output:TABLE means the tables.
    packet_out: bool,
}

impl<'a> Xlate<'a> {
    pub(crate) fn new(
        of: &'a Ofproto,
        tables: &'a Tables,
        ports: &'a Ports,
        key: &FlowKey,
        now: Instant,
        trace: Option<&'a mut Trace>,
    ) -> Self {
        let mut wc = FlowMask::default();
        // Always exact, as in Open vSwitch: cheap and it keeps megaflows of
        // different ports and passes apart.
        wc.set_recirc_id(u32::MAX);
        wc.set_in_port(u32::MAX);
        Xlate {
            of,
            tables,
            ports,
            now,
            key: *key,
            initial_key: *key,
            may_learn: trace.is_none(),
            may_disable: trace.is_none(),
            wc,
            base_vlan: VlanStack::from_key(key),
            dirty: Vec::new(),
            vlan_dirty: false,
            actions: Vec::new(),
            rules: Vec::new(),
            depth: 0,
            resubmits: 0,
            trace,
            top_level_miss: false,
            drop: None,
            stopped: false,
            uses_normal: false,
            table_id: 0,
            cookie: 0,
            packet_out: false,
        }
    }

    fn note(&mut self, text: impl FnOnce() -> String) {
        let depth = self.depth;
        if let Some(t) = self.trace.as_deref_mut() {
            t.note(depth, text());
        }
    }

    /// Runs the whole translation.
    pub(crate) fn run(mut self) -> Translation {
        let mut start_table = 0u8;
        if self.key.recirc_id() != 0 {
            match self.of.recirc.lock().get(self.key.recirc_id()) {
                Some(fs) => {
                    for (i, r) in fs.regs.iter().enumerate() {
                        self.key.set_reg(i, *r);
                    }
                    self.key.set_metadata(fs.metadata);
                    start_table = fs.table;
                    self.note(|| format!("thaw: resuming from table {}", fs.table));
                }
                None => {
                    self.note(|| "unknown recirculation id: dropping".to_string());
                    return self.finish_with(XlateError::NoMatch);
                }
            }
        } else if let Some(reason) = self.ingress_checks() {
            return self.finish_with(reason);
        } else if self.of.fail_open() {
            self.note(|| "fail-open (no controller, fail_mode=standalone): NORMAL".to_string());
            self.normal();
            return self.finish();
        }
        self.table_id = start_table;
        self.lookup_and_execute(start_table, true);
        self.finish()
    }

    /// Runs a packet-out's `actions` instead of a table lookup; their
    /// `output:TABLE` sends the packet through the tables from table 0.
    pub(crate) fn run_packet_out(mut self, actions: &[Action]) -> Translation {
        self.packet_out = true;
        self.execute_actions(actions);
        self.finish()
    }

    /// Port policy applied before the tables on a packet's first pass.
    fn ingress_checks(&mut self) -> Option<XlateError> {
        let in_port = self.key.in_port();
        let Some(p) = self.ports.get(in_port) else {
            // Packets injected for a port the tables do not know (trace of a
            // made-up port) still go through the tables.
            return None;
        };
        if !p.enabled {
            self.note(|| format!("input port {} is disabled", p.name));
            return Some(XlateError::PortDisabled);
        }
        // 01:80:c2:00:00:00/ff:ff:ff:ff:ff:f0: STP, LLDP, pause, 802.1X...
        // Only edge ports filter them, so only their megaflows depend on
        // the destination's top bits.
        let filter = p.is_edge() && !self.of.config.read().forward_bpdu;
        if filter {
            self.wc
                .set_dl_dst_u64(self.wc.dl_dst_u64() | 0xffff_ffff_fff0);
        }
        let reserved = self.key.dl_dst_u64() & !0xf == 0x0180_c200_0000;
        if reserved && filter {
            if p.bpdu_guard {
                let name = p.name.clone();
                if self.may_disable {
                    self.of.disable_port_for_bpdu(in_port);
                }
                self.note(|| format!("BPDU guard: port {name} is disabled by this frame"));
            }
            self.note(|| {
                "link-local control frame from an edge port: dropping (forward_bpdu=false)"
                    .to_string()
            });
            return Some(XlateError::Bpdu);
        }
        if p.effective_vlan_mode() == super::port_info::VlanMode::Access {
            self.wc.set_vlan_tci(0xffff);
            let tci = self.key.vlan_tci();
            if tci & FlowKey::VLAN_CFI != 0 && tci & 0x0fff != 0 {
                let name = p.name.clone();
                self.note(|| format!("tagged frame on access port {name}: dropping"));
                return Some(XlateError::VlanTaggedOnAccessPort);
            }
        }
        None
    }

    fn finish_with(mut self, reason: XlateError) -> Translation {
        self.actions.clear();
        self.drop = Some(reason);
        self.stopped = true;
        self.finish()
    }

    fn finish(mut self) -> Translation {
        let sends = self.actions.iter().any(|a| {
            matches!(
                a,
                DpAction::Output(_) | DpAction::Recirc(_) | DpAction::Controller(_)
            )
        });
        let stopped_by_drop = matches!(self.actions.last(), Some(DpAction::Drop(_)));
        let drop = if sends || stopped_by_drop {
            None
        } else if let Some(d) = self.drop {
            Some(d)
        } else if self.top_level_miss {
            Some(XlateError::NoMatch)
        } else {
            Some(XlateError::PipelineDrop)
        };
        if drop.is_some() {
            // Nothing leaves: set actions are pointless.
            self.actions
                .retain(|a| matches!(a, DpAction::Ct { .. } | DpAction::Drop(_)));
        }
        if let Some(t) = self.trace.as_deref_mut() {
            t.finish(&self.initial_key, &self.key, &self.wc, &self.actions, drop);
        }
        Translation {
            actions: self.actions,
            mask: self.wc,
            rules: self.rules,
            drop,
            uses_normal: self.uses_normal,
        }
    }

    fn lookup_and_execute(&mut self, table: u8, top: bool) {
        if self.stopped {
            return;
        }
        let Some(cls) = self.tables.table(table) else {
            return;
        };
        let rule: Option<&Arc<Rule>> = cls.lookup(&self.key, &mut self.wc);
        let depth = self.depth;
        match rule {
            None => {
                if let Some(t) = self.trace.as_deref_mut() {
                    t.table_miss(depth, table);
                }
                if top {
                    self.top_level_miss = true;
                }
            }
            Some(rule) => {
                if let Some(t) = self.trace.as_deref_mut() {
                    t.rule(depth, table, rule);
                }
                self.rules.push(rule.stats.clone());
                let rule = rule.clone();
                let prev = (self.table_id, self.cookie);
                self.table_id = table;
                self.cookie = rule.spec.cookie;
                self.execute_actions(&rule.spec.actions);
                (self.table_id, self.cookie) = prev;
            }
        }
    }

    fn execute_actions(&mut self, actions: &[Action]) {
        // goto_table is an instruction: it runs after the action list, as
        // Open vSwitch orders instructions.
        let mut goto = None;
        for a in actions {
            if self.stopped {
                return;
            }
            if let Action::GotoTable(t) = a {
                goto = Some(*t);
                continue;
            }
            self.execute_action(a);
        }
        if let Some(t) = goto {
            self.resubmit(None, Some(t));
        }
    }

    fn resubmit(&mut self, in_port: Option<u32>, table: Option<u8>) {
        self.resubmits += 1;
        if self.depth >= MAX_DEPTH || self.resubmits > MAX_RESUBMITS {
            self.note(|| "resubmit depth exceeded: dropping".to_string());
            self.fail(XlateError::ResubmitDepth);
            return;
        }
        let table = table.unwrap_or(self.table_id);
        let saved = self.key.in_port();
        if let Some(p) = in_port {
            self.key
                .set_in_port(if p == ofp_port::IN_PORT { saved } else { p });
        }
        self.depth += 1;
        self.lookup_and_execute(table, false);
        self.depth -= 1;
        self.key.set_in_port(saved);
    }

    fn stop(&mut self, reason: XlateError) {
        self.actions.push(DpAction::Drop(reason));
        self.drop = Some(reason);
        self.stopped = true;
    }

    /// A translation that hit a limit (too deep, too many resubmits, no
    /// recirculation id) is a loop or a runaway in the tables: the packet
    /// goes nowhere, not to the ports the actions before the limit named,
    /// and no connection is committed. Open vSwitch makes the same a drop
    /// flow. Otherwise a table that loops back to itself after an output
    /// would send every packet out once per level, up to the limit.
    fn fail(&mut self, reason: XlateError) {
        self.actions.clear();
        self.stop(reason);
    }

    fn set_field(&mut self, field: Field, value: u128, mask: u128) {
        match field {
            Field::VlanTci | Field::DlVlan | Field::DlVlanPcp => {
                self.set_vlan_field(field, value, mask);
                return;
            }
            Field::InPort => {
                self.key.set_in_port(value as u32);
                return;
            }
            _ => {}
        }
        if !prereqs_ok(field, &self.key, &mut self.wc) {
            self.note(|| format!("{}: prerequisites not met, skipped", field.name()));
            return;
        }
        let (sf, v, m) = storage_of(field, value, mask);
        let old = sf.get(&self.key);
        sf.set(&mut self.key, (old & !m) | (v & m));
        if let Field::TunMetadata(n) = sf {
            let p = self.key.tun_metadata_present() | (1 << (n & 7));
            self.key.set_tun_metadata_present(p);
        }
        if is_packet_field(sf) {
            match self.dirty.iter_mut().find(|(f, _)| *f == sf) {
                Some((_, dm)) => *dm |= m,
                None => self.dirty.push((sf, m)),
            }
        }
    }

    fn set_vlan_field(&mut self, field: Field, value: u128, mask: u128) {
        let mut s = VlanStack::from_key(&self.key);
        self.wc.set_vlan_tci(0xffff);
        match field {
            Field::VlanTci => {
                // Writing the presence bit off removes the tag, on adds one.
                let (v, m) = (value as u16, mask as u16);
                let cur = self.key.vlan_tci();
                let new = (cur & !m) | (v & m);
                if new & FlowKey::VLAN_CFI == 0 {
                    s.pop();
                } else if s.n == 0 {
                    s.push(0x8100, new & !FlowKey::VLAN_CFI);
                } else {
                    s.tags[0].1 = new & !FlowKey::VLAN_CFI;
                }
            }
            Field::DlVlan | Field::DlVlanPcp => {
                let (shift, bits) = if field == Field::DlVlan {
                    (0, 0x0fff)
                } else {
                    (13, 0xe000)
                };
                let v = ((value as u16) << shift) & bits & ((mask as u16) << shift);
                let m = ((mask as u16) << shift) & bits;
                if s.n == 0 {
                    // Open vSwitch (OpenFlow 1.0 semantics): modifying the
                    // VID or PCP of an untagged frame adds an 802.1Q tag.
                    s.push(0x8100, v);
                } else {
                    s.tags[0].1 = (s.tags[0].1 & !m) | v;
                }
            }
            _ => {}
        }
        s.to_key(&mut self.key);
        self.vlan_dirty = true;
    }

    /// Emits the datapath actions that make the packet look like `key`.
    fn commit(&mut self) {
        if self.vlan_dirty {
            self.commit_vlan();
            self.vlan_dirty = false;
        }
        for (f, m) in core::mem::take(&mut self.dirty) {
            self.actions.push(DpAction::SetField {
                field: f,
                value: f.get(&self.key) & m,
                mask: m,
            });
        }
    }

    fn commit_vlan(&mut self) {
        let want = VlanStack::from_key(&self.key);
        if want == self.base_vlan {
            return;
        }
        self.wc.set_vlan_tci(0xffff);
        self.wc.set_vlan_tci1(0xffff);
        self.wc.set_vlan_tpid(0xff);
        let base = self.base_vlan;
        // Same depth and same TPIDs: rewrite the outer TCI in place.
        if base.n == want.n
            && base.n > 0
            && base.tags[1..base.n] == want.tags[1..want.n]
            && base.tags[0].0 == want.tags[0].0
        {
            self.actions.push(DpAction::SetVlanTci {
                tci: want.tags[0].1,
                mask: !FlowKey::VLAN_CFI,
            });
            self.base_vlan = want;
            return;
        }
        // Pop until what is left is the inner part of what we want, then
        // push the rest, innermost first.
        let mut cur = base;
        loop {
            let w = want.inner_slice();
            let c = cur.inner_slice();
            if c.len() <= w.len() && w[w.len() - c.len()..] == *c {
                break;
            }
            cur.pop();
            self.actions.push(DpAction::PopVlan);
        }
        let w = want.inner_slice();
        for i in (0..w.len() - cur.n).rev() {
            let (tpid, tci) = w[i];
            self.actions.push(DpAction::PushVlan { tpid, tci });
            cur.push(tpid, tci);
        }
        self.base_vlan = want;
    }

    /// `output:port`; `to_in_port` is true for the `in_port` action (and
    /// `output:IN_PORT`), the only way OpenFlow lets a packet go back out of
    /// the port it came from.
    fn output(&mut self, port: u32, to_in_port: bool) {
        let in_port = self.key.in_port();
        let port = if to_in_port { in_port } else { port };
        match port {
            ofp_port::TABLE if self.packet_out => {
                return self.lookup_and_execute(0, true);
            }
            ofp_port::NORMAL => return self.normal(),
            ofp_port::FLOOD | ofp_port::ALL => return self.flood(port == ofp_port::ALL),
            ofp_port::CONTROLLER | ofp_port::TABLE | ofp_port::NONE => {
                self.note(|| "output to a port we do not support: skipped".to_string());
                return;
            }
            _ => {}
        }
        if port == in_port && !to_in_port {
            self.note(|| "skipping output to input port".to_string());
            self.drop.get_or_insert(XlateError::OutputToInPort);
            return;
        }
        let Some(p) = self.ports.get(port) else {
            self.note(|| format!("output to nonexistent port {port}: skipped"));
            self.drop.get_or_insert(XlateError::NoSuchPort);
            return;
        };
        if !p.enabled {
            let name = p.name.clone();
            self.note(|| format!("output port {name} is disabled: skipped"));
            return;
        }
        self.commit();
        self.actions.push(DpAction::Output(port));
    }

    /// `controller`: the packet as modified so far goes to the controllers
    /// with the metadata translation holds now.
    fn controller(&mut self, c: &crate::flow::ControllerAction) {
        self.commit();
        self.note(|| "sent to the controllers (packet-in)".to_string());
        self.actions
            .push(DpAction::Controller(Box::new(super::ToController {
                action: c.clone(),
                table_id: self.table_id,
                cookie: self.cookie,
                key: self.key,
            })));
    }

    fn flood(&mut self, all: bool) {
        let in_port = self.key.in_port();
        let targets: Vec<u32> = self
            .ports
            .sorted()
            .filter(|p| p.no != in_port && p.enabled && (all || p.flood))
            .map(|p| p.no)
            .collect();
        for no in targets {
            self.commit();
            self.actions.push(DpAction::Output(no));
        }
    }

    fn normal(&mut self) {
        self.uses_normal = true;
        let in_port = self.key.in_port();
        self.wc.set_dl_src_u64(0xffff_ffff_ffff);
        self.wc.set_dl_dst_u64(0xffff_ffff_ffff);
        self.wc.set_vlan_tci(0xffff);
        let Some(inp) = self.ports.get(in_port) else {
            self.note(|| "normal: unknown input port, dropping".to_string());
            return;
        };
        let tci = self.key.vlan_tci();
        let vid = (tci & FlowKey::VLAN_CFI != 0).then_some(tci & 0x0fff);
        let Some(vlan) = inp.input_vlan(vid) else {
            let name = inp.name.clone();
            self.note(|| {
                format!(
                    "normal: port {name} does not carry VLAN {}, dropping",
                    vid.unwrap_or(0)
                )
            });
            if inp.effective_vlan_mode() == super::port_info::VlanMode::Access {
                self.stop(XlateError::VlanTaggedOnAccessPort);
            }
            return;
        };
        let src = self.key.dl_src_u64();
        let dst = self.key.dl_dst_u64();
        let limit = inp.mac_limit;
        let learned = if self.may_learn {
            self.of
                .mac
                .lock()
                .learn(vlan, src, in_port, limit, self.now)
        } else {
            mac_learning::Learned::Refreshed
        };
        match learned {
            Learned::New | Learned::Moved => {
                // Flows that flooded (or went to the old port) are stale now.
                self.of.bump_generation();
                self.note(|| {
                    format!(
                        "normal: learned {} on port {in_port} in VLAN {vlan}",
                        crate::flow::key::fmt_mac(src)
                    )
                });
            }
            Learned::PortLimit => {
                self.note(|| format!("normal: port {in_port} reached its MAC limit, not learning"));
            }
            _ => {}
        }
        let multicast = dst & (1 << 40) != 0;
        let out = if multicast {
            None
        } else {
            self.of.mac.lock().lookup(vlan, dst, self.now)
        };
        match out {
            Some(p) if p == in_port => {
                self.note(|| "normal: destination learned on the input port, dropping".to_string());
                self.drop.get_or_insert(XlateError::NormalLearnedOnInPort);
            }
            Some(p) => {
                self.note(|| format!("normal: forwarding to learned port {p}"));
                if let Some(pi) = self.ports.get(p) {
                    let pi = pi.clone();
                    self.normal_output(&pi, vlan);
                }
            }
            None => {
                self.note(|| format!("normal: flooding in VLAN {vlan}"));
                let targets: Vec<PortInfo> = self
                    .ports
                    .sorted()
                    .filter(|p| p.no != in_port && p.enabled && p.flood && p.carries_vlan(vlan))
                    .cloned()
                    .collect();
                for p in targets {
                    self.normal_output(&p, vlan);
                }
            }
        }
    }

    /// Outputs to `p` with the VLAN tagging its mode asks for, leaving the
    /// OpenFlow view of the packet as it was.
    fn normal_output(&mut self, p: &PortInfo, vlan: u16) {
        if !p.enabled || !p.carries_vlan(vlan) {
            return;
        }
        let saved = self.key;
        let mut s = VlanStack::from_key(&self.key);
        let tagged_now = s.outer().is_some();
        let pcp = s.outer().map_or(0, |(_, tci)| tci & 0xe000);
        if p.output_tagged(vlan) {
            if tagged_now {
                s.tags[0].1 = pcp | vlan;
            } else {
                s.push(0x8100, vlan);
            }
        } else if tagged_now {
            s.pop();
        }
        s.to_key(&mut self.key);
        if VlanStack::from_key(&saved) != s {
            self.vlan_dirty = true;
        }
        self.commit();
        self.actions.push(DpAction::Output(p.no));
        // Later actions see the original tags; the next commit restores them
        // in the datapath packet if needed.
        self.key = saved;
        self.vlan_dirty = VlanStack::from_key(&self.key) != self.base_vlan;
    }

    fn push_vlan(&mut self, tpid: u16) {
        self.wc.set_vlan_tci(0xffff);
        self.wc.set_vlan_tci1(0xffff);
        self.wc.set_vlan_tpid(0xff);
        let mut s = VlanStack::from_key(&self.key);
        if tpid == 0x8100 && s.n > 0 {
            self.note(|| {
                "push_vlan:0x8100 onto a tagged frame: dropping (use push_vlan:0x88a8 for QinQ)"
                    .to_string()
            });
            self.stop(XlateError::DoubleVlanPush);
            return;
        }
        if s.n >= 2 {
            self.note(|| "a third VLAN tag: dropping".to_string());
            self.stop(XlateError::TooManyVlans);
            return;
        }
        // OpenFlow: the new tag copies the VID/PCP of the current outer tag.
        let tci = s.outer().map_or(0, |(_, t)| t);
        s.push(tpid, tci);
        s.to_key(&mut self.key);
        self.vlan_dirty = true;
    }

    fn pop_vlan(&mut self) {
        self.wc.set_vlan_tci(0xffff);
        self.wc.set_vlan_tci1(0xffff);
        self.wc.set_vlan_tpid(0xff);
        let mut s = VlanStack::from_key(&self.key);
        if !s.pop() {
            self.note(|| "pop_vlan on an untagged frame: dropping".to_string());
            self.stop(XlateError::PopVlanUntagged);
            return;
        }
        s.to_key(&mut self.key);
        self.vlan_dirty = true;
    }

    fn dec_ttl(&mut self) {
        self.wc.set_dl_type(0xffff);
        if !self.key.is_ip() {
            self.note(|| "dec_ttl on a non-IP packet: skipped".to_string());
            return;
        }
        self.wc.set_nw_ttl(0xff);
        let ttl = self.key.nw_ttl();
        if ttl <= 1 {
            self.note(|| format!("dec_ttl: TTL {ttl} expires, dropping"));
            self.stop(XlateError::TtlExceeded);
            return;
        }
        self.set_field(Field::NwTtl, u128::from(ttl - 1), 0xff);
    }

    fn ct(&mut self, ct: &crate::flow::CtAction) {
        self.wc.set_dl_type(0xffff);
        if !self.key.is_ip() {
            self.note(|| "ct on a non-IP packet: skipped".to_string());
            return;
        }
        let zone = match ct.zone {
            CtZone::Imm(z) => z,
            CtZone::Field(s) => {
                self.read_slice(&s);
                s.get(&self.key) as u16
            }
        };
        let mut mark = None;
        for a in &ct.exec {
            if let Action::SetField {
                field: Field::CtMark,
                value,
                mask,
            } = a
            {
                let (v0, m0) = mark.unwrap_or((0u32, 0u32));
                let m = *mask as u32;
                mark = Some(((v0 & !m) | (*value as u32 & m), m0 | m));
            }
        }
        self.commit();
        self.actions.push(DpAction::Ct {
            zone,
            commit: ct.commit,
            force: ct.force,
            mark,
        });
        if let Some(table) = ct.table {
            let mut regs = [0u32; 8];
            for (i, r) in regs.iter_mut().enumerate() {
                *r = self.key.reg(i);
            }
            let fs = FrozenState {
                table,
                regs,
                metadata: self.key.metadata(),
            };
            match self.of.recirc.lock().get_or_alloc(fs) {
                Some(id) => {
                    self.actions.push(DpAction::Recirc(id));
                    self.note(|| format!("a clone of the packet recirculates (recirc_id={id:#x}) and resumes at table {table}"));
                }
                None => {
                    self.note(|| "recirculation ids exhausted: dropping".to_string());
                    self.fail(XlateError::RecircDepth);
                    return;
                }
            }
        }
        // The rest of this pass sees an untracked packet, as in Open vSwitch.
        self.key.set_ct_state(0);
        self.key.set_ct_zone(0);
        self.key.set_ct_mark(0);
    }

    fn read_slice(&mut self, s: &FieldSlice) {
        let bits = s.mask();
        let old = s.field.get_mask(&self.wc);
        s.field.set_mask(&mut self.wc, old | bits);
    }

    fn execute_action(&mut self, a: &Action) {
        match a {
            Action::Output(p) => self.output(*p, *p == ofp_port::IN_PORT),
            Action::Resubmit { in_port, table } => self.resubmit(*in_port, *table),
            Action::GotoTable(t) => self.resubmit(None, Some(*t)),
            Action::ModDlSrc(m) => self.set_field(
                Field::DlSrc,
                u128::from(crate::flow::key::mac_to_u64(*m)),
                Field::DlSrc.full_mask(),
            ),
            Action::ModDlDst(m) => self.set_field(
                Field::DlDst,
                u128::from(crate::flow::key::mac_to_u64(*m)),
                Field::DlDst.full_mask(),
            ),
            Action::ModNwSrc(v) => self.set_field(Field::NwSrc, u128::from(*v), 0xffff_ffff),
            Action::ModNwDst(v) => self.set_field(Field::NwDst, u128::from(*v), 0xffff_ffff),
            Action::ModNwTos(v) => self.set_field(Field::NwTos, u128::from(*v & 0xfc), 0xfc),
            Action::ModNwTtl(v) => self.set_field(Field::NwTtl, u128::from(*v), 0xff),
            Action::ModTpSrc(v) => self.set_field(Field::TpSrc, u128::from(*v), 0xffff),
            Action::ModTpDst(v) => self.set_field(Field::TpDst, u128::from(*v), 0xffff),
            Action::PushVlan(tpid) => self.push_vlan(*tpid),
            Action::PopVlan => self.pop_vlan(),
            Action::ModVlanVid(v) => self.set_vlan_field(Field::DlVlan, u128::from(*v), 0xfff),
            Action::ModVlanPcp(v) => self.set_vlan_field(Field::DlVlanPcp, u128::from(*v), 0x7),
            Action::SetField { field, value, mask } => self.set_field(*field, *value, *mask),
            Action::Move { src, dst } => {
                self.read_slice(src);
                let v = src.get(&self.key);
                let shifted = (v & (dst.mask() >> dst.ofs)) << dst.ofs;
                self.set_field(dst.field, shifted, dst.mask());
            }
            Action::DecTtl => self.dec_ttl(),
            Action::SetTunnel(id) => {
                self.set_field(Field::TunId, u128::from(*id), u128::from(u64::MAX))
            }
            Action::Ct(ct) => self.ct(ct),
            Action::CtClear => {
                self.key.set_ct_state(0);
                self.key.set_ct_zone(0);
                self.key.set_ct_mark(0);
                self.actions.push(DpAction::CtClear);
            }
            Action::Controller(c) => self.controller(c),
            Action::Note(_) => {}
        }
    }
}
