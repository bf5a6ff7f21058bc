//! Drop reasons: every way a packet can die in the switch has a name and a
//! counter, shown by `vswitchctl dump-drops` and named by `trace`.

use crate::conntrack::CtInvalidReason;
use crate::port::PortDrop;
use crate::wire;
use std::sync::atomic::{AtomicU64, Ordering};

/// Why a packet was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DropReason {
    /// The frame does not parse (see the wire error).
    Malformed(wire::Error),
    /// No flow matched (table miss).
    NoMatch,
    /// The matching flows' actions output the packet nowhere (`drop`, or an
    /// empty action list).
    PipelineDrop,
    /// Dropped by the pipeline after conntrack judged it invalid: the
    /// reason conntrack gave.
    CtInvalid(CtInvalidReason),
    /// Too many `resubmit`/`goto_table` levels (a loop in the tables).
    ResubmitDepth,
    /// Too many recirculations (a `ct(table=...)` loop).
    RecircDepth,
    /// `dec_ttl` on a TTL of 0 or 1.
    TtlExceeded,
    /// `output` to the input port without `in_port` (OpenFlow ignores it).
    OutputToInPort,
    /// `output` to a port that does not exist.
    NoSuchPort,
    /// `normal`: the destination was learned on the input port.
    NormalLearnedOnInPort,
    /// The frame does not fit the egress port's MTU.
    MtuExceeded,
    /// A tagged frame arrived on an access port.
    VlanTaggedOnAccessPort,
    /// `push_vlan:0x8100` onto a frame that already has an 802.1Q tag.
    DoubleVlanPush,
    /// `pop_vlan` on an untagged frame.
    PopVlanUntagged,
    /// A third VLAN tag.
    TooManyVlans,
    /// A link-local control frame (BPDU, LLDP, pause) from a VM port.
    Bpdu,
    /// The input port is disabled (BPDU guard).
    PortDisabled,
    /// A port dropped the packet itself.
    Port(PortDrop),
}

const SIMPLE: [DropReason; 15] = [
    DropReason::NoMatch,
    DropReason::PipelineDrop,
    DropReason::ResubmitDepth,
    DropReason::RecircDepth,
    DropReason::TtlExceeded,
    DropReason::OutputToInPort,
    DropReason::NoSuchPort,
    DropReason::NormalLearnedOnInPort,
    DropReason::MtuExceeded,
    DropReason::VlanTaggedOnAccessPort,
    DropReason::DoubleVlanPush,
    DropReason::PopVlanUntagged,
    DropReason::TooManyVlans,
    DropReason::Bpdu,
    DropReason::PortDisabled,
];

const N_WIRE: usize = wire::Error::ALL.len();
const N_SIMPLE: usize = SIMPLE.len();
const N_CT: usize = CtInvalidReason::ALL.len();
const N_PORT: usize = PortDrop::ALL.len();

impl DropReason {
    /// Number of distinct reasons (size of a counter array).
    pub const COUNT: usize = N_WIRE + N_SIMPLE + N_CT + N_PORT;

    /// The drop reason for a frame that does not parse. A third VLAN tag is
    /// a policy limit rather than damage, so it has its own name.
    pub fn from_wire(e: wire::Error) -> DropReason {
        match e {
            wire::Error::TooManyVlans => DropReason::TooManyVlans,
            e => DropReason::Malformed(e),
        }
    }

    /// Dense index for counter arrays.
    pub fn index(self) -> usize {
        match self {
            DropReason::Malformed(e) => e as usize,
            DropReason::CtInvalid(r) => N_WIRE + N_SIMPLE + r as usize,
            DropReason::Port(p) => N_WIRE + N_SIMPLE + N_CT + p as usize,
            s => N_WIRE + SIMPLE.iter().position(|x| *x == s).unwrap_or(0),
        }
    }

    /// The reason at a dense index (`None` for unused slots).
    pub fn from_index(i: usize) -> Option<DropReason> {
        if i < N_WIRE {
            return Some(DropReason::Malformed(wire::Error::ALL[i]));
        }
        let i = i - N_WIRE;
        if i < N_SIMPLE {
            return Some(SIMPLE[i]);
        }
        let i = i - N_SIMPLE;
        if i < N_CT {
            return Some(DropReason::CtInvalid(CtInvalidReason::ALL[i]));
        }
        let i = i - N_CT;
        PortDrop::ALL.get(i).map(|p| DropReason::Port(*p))
    }

    /// Every reason.
    /// Every reason that can be counted. A third VLAN tag is reported as
    /// `too_many_vlans` whether the frame arrived with it or an action
    /// would push it (see [`DropReason::from_wire`]), so the malformed
    /// spelling of it never appears.
    pub fn all() -> impl Iterator<Item = DropReason> {
        (0..Self::COUNT)
            .filter_map(Self::from_index)
            .filter(|r| *r != DropReason::Malformed(wire::Error::TooManyVlans))
    }

    /// Stable snake_case name (`malformed_truncated`, `ct_invalid_bad_l4_checksum`).
    pub fn name(self) -> String {
        match self {
            DropReason::Malformed(e) => format!("malformed_{}", e.name()),
            DropReason::CtInvalid(r) => format!("ct_invalid_{}", r.name()),
            DropReason::Port(p) => p.name().to_string(),
            s => s.simple_name().to_string(),
        }
    }

    fn simple_name(self) -> &'static str {
        match self {
            DropReason::NoMatch => "no_match",
            DropReason::PipelineDrop => "pipeline_drop",
            DropReason::ResubmitDepth => "resubmit_depth",
            DropReason::RecircDepth => "recirc_depth",
            DropReason::TtlExceeded => "ttl_exceeded",
            DropReason::OutputToInPort => "output_to_in_port",
            DropReason::NoSuchPort => "no_such_port",
            DropReason::NormalLearnedOnInPort => "normal_learned_on_in_port",
            DropReason::MtuExceeded => "mtu_exceeded",
            DropReason::VlanTaggedOnAccessPort => "vlan_tagged_on_access_port",
            DropReason::DoubleVlanPush => "double_vlan_push",
            DropReason::PopVlanUntagged => "pop_vlan_untagged",
            DropReason::TooManyVlans => "too_many_vlans",
            DropReason::Bpdu => "bpdu_dropped",
            DropReason::PortDisabled => "port_disabled",
            _ => "unknown",
        }
    }

    /// One-line explanation for `dump-drops -v` and `trace`.
    pub fn describe(self) -> &'static str {
        match self {
            DropReason::Malformed(_) => "frame does not parse",
            DropReason::NoMatch => "no flow matched (table miss)",
            DropReason::PipelineDrop => "flow actions output the packet nowhere",
            DropReason::CtInvalid(_) => "conntrack judged the packet invalid and a flow dropped it",
            DropReason::ResubmitDepth => "too many resubmit/goto_table levels",
            DropReason::RecircDepth => "too many recirculations",
            DropReason::TtlExceeded => "dec_ttl on TTL <= 1",
            DropReason::OutputToInPort => "output to the input port (use in_port)",
            DropReason::NoSuchPort => "output to a port that does not exist",
            DropReason::NormalLearnedOnInPort => "normal: destination learned on the input port",
            DropReason::MtuExceeded => "frame larger than the egress MTU",
            DropReason::VlanTaggedOnAccessPort => "tagged frame on an access port",
            DropReason::DoubleVlanPush => "push_vlan:0x8100 onto an 802.1Q-tagged frame",
            DropReason::PopVlanUntagged => "pop_vlan on an untagged frame",
            DropReason::TooManyVlans => "more than two VLAN tags",
            DropReason::Bpdu => "link-local control frame (BPDU/LLDP/pause) from a VM port",
            DropReason::PortDisabled => "input port disabled (BPDU guard)",
            DropReason::Port(_) => "dropped by the port",
        }
    }
}

impl core::fmt::Display for DropReason {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(&self.name())
    }
}

/// Drop counters, one per reason. Shared between the datapath threads that
/// write them (relaxed atomic adds, only on the drop path) and the control
/// thread that reads them.
pub struct DropCounters {
    counts: [AtomicU64; DropReason::COUNT],
}

impl Default for DropCounters {
    fn default() -> Self {
        DropCounters {
            counts: core::array::from_fn(|_| AtomicU64::new(0)),
        }
    }
}

impl core::fmt::Debug for DropCounters {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_map()
            .entries(self.nonzero().into_iter().map(|(r, n)| (r.name(), n)))
            .finish()
    }
}

impl DropCounters {
    /// Counts `n` drops for `reason`.
    #[inline]
    pub fn add(&self, reason: DropReason, n: u64) {
        self.counts[reason.index()].fetch_add(n, Ordering::Relaxed);
    }

    /// The count for `reason`.
    pub fn get(&self, reason: DropReason) -> u64 {
        self.counts[reason.index()].load(Ordering::Relaxed)
    }

    /// Every reason with its count (zeros included).
    pub fn snapshot(&self) -> Vec<(DropReason, u64)> {
        DropReason::all().map(|r| (r, self.get(r))).collect()
    }

    /// Reasons with a non-zero count.
    pub fn nonzero(&self) -> Vec<(DropReason, u64)> {
        self.snapshot()
            .into_iter()
            .filter(|(_, n)| *n > 0)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indices_are_dense_and_unique() {
        let all: Vec<_> = DropReason::all().collect();
        let mut seen = std::collections::HashSet::new();
        for r in &all {
            assert!(r.index() < DropReason::COUNT);
            assert!(seen.insert(r.index()), "duplicate index for {r}");
            assert_eq!(DropReason::from_index(r.index()), Some(*r));
            assert!(!r.name().is_empty());
        }
        let names: std::collections::HashSet<_> = all.iter().map(|r| r.name()).collect();
        assert_eq!(names.len(), all.len(), "names are unique");
        assert!(names.contains("mtu_exceeded"));
        assert!(names.contains("ct_invalid_bad_l4_checksum"));
        assert!(names.contains("geneve_bad_version"));
    }

    #[test]
    fn counters_count() {
        let c = DropCounters::default();
        c.add(DropReason::MtuExceeded, 2);
        c.add(DropReason::Malformed(wire::Error::Truncated), 1);
        assert_eq!(c.get(DropReason::MtuExceeded), 2);
        assert_eq!(c.nonzero().len(), 2);
    }
}
