//! Drop reasons: every way a packet can die in the switch has a name and a
//! counter, shown by `vswitchctl dump-drops` and named by `trace`.

use super::packet_in::Refused;
use crate::conntrack::CtInvalidReason;
use crate::ofproto::{TraceDrop, XlateError};
use crate::port::PortDrop;
use crate::wire;
use std::sync::atomic::{AtomicU64, Ordering};

/// Why a packet was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DropReason {
    /// The frame does not parse (see the wire error).
    Malformed(wire::Error),
    /// The tables decided it: the translation's reason.
    Xlate(XlateError),
    /// Dropped by the pipeline after conntrack judged it invalid: the
    /// reason conntrack gave.
    CtInvalid(CtInvalidReason),
    /// The frame does not fit the egress port's MTU.
    MtuExceeded,
    /// A port dropped the packet itself.
    Port(PortDrop),
    /// A packet-in (a `controller` action) was not delivered.
    PacketIn(super::packet_in::Refused),
}

/// The reasons with no payload beyond a translation reason, in the order
/// `dump-drops` has always listed them (`mtu_exceeded` sits among the
/// translation's reasons).
const SIMPLE: [DropReason; 18] = [
    DropReason::Xlate(XlateError::NoMatch),
    DropReason::Xlate(XlateError::PipelineDrop),
    DropReason::Xlate(XlateError::ResubmitDepth),
    DropReason::Xlate(XlateError::RecircDepth),
    DropReason::Xlate(XlateError::TtlExceeded),
    DropReason::Xlate(XlateError::OutputToInPort),
    DropReason::Xlate(XlateError::NoSuchPort),
    DropReason::Xlate(XlateError::NormalLearnedOnInPort),
    DropReason::MtuExceeded,
    DropReason::Xlate(XlateError::VlanTaggedOnAccessPort),
    DropReason::Xlate(XlateError::DoubleVlanPush),
    DropReason::Xlate(XlateError::PopVlanUntagged),
    DropReason::Xlate(XlateError::TooManyVlans),
    DropReason::Xlate(XlateError::Bpdu),
    DropReason::Xlate(XlateError::PortDisabled),
    DropReason::PacketIn(Refused::RateLimited),
    DropReason::PacketIn(Refused::QueueFull),
    DropReason::PacketIn(Refused::NoController),
];

const N_WIRE: usize = wire::Error::ALL.len();
const N_SIMPLE: usize = SIMPLE.len();
const N_CT: usize = CtInvalidReason::ALL.len();
const N_PORT: usize = PortDrop::ALL.len();

// Every translation reason has a counter slot, and so do mtu_exceeded and
// the two packet-in refusals.
const _: () = assert!(N_SIMPLE == XlateError::ALL.len() + 4);

impl DropReason {
    /// Number of distinct reasons (size of a counter array).
    pub const COUNT: usize = N_WIRE + N_SIMPLE + N_CT + N_PORT;

    /// The drop reason for a frame that does not parse. A third VLAN tag is
    /// a policy limit rather than damage, so it has its own name.
    pub fn from_wire(e: wire::Error) -> DropReason {
        match e {
            wire::Error::TooManyVlans => DropReason::Xlate(XlateError::TooManyVlans),
            e => DropReason::Malformed(e),
        }
    }

    /// What the datapath counts for a packet whose actions sent it nowhere:
    /// the translation's reason, except that a pipeline drop of a packet
    /// conntrack judged invalid is counted under conntrack's reason (the
    /// usual `ct_state=+inv, actions=drop` flow). `trace` calls this too, so
    /// it names the counter the packet really lands in.
    pub fn after_pipeline(xlate: XlateError, ct_invalid: Option<CtInvalidReason>) -> DropReason {
        match (xlate, ct_invalid) {
            (XlateError::PipelineDrop, Some(r)) => DropReason::CtInvalid(r),
            (x, _) => DropReason::Xlate(x),
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
            DropReason::Xlate(x) => x.name().to_string(),
            DropReason::CtInvalid(r) => format!("ct_invalid_{}", r.name()),
            DropReason::MtuExceeded => "mtu_exceeded".to_string(),
            DropReason::Port(p) => p.name().to_string(),
            DropReason::PacketIn(Refused::RateLimited) => "controller_rate_limited".to_string(),
            DropReason::PacketIn(Refused::QueueFull) => "controller_queue_full".to_string(),
            DropReason::PacketIn(Refused::NoController) => "controller_not_connected".to_string(),
        }
    }

    /// One-line explanation for `dump-drops -v` and `trace`.
    pub fn describe(self) -> &'static str {
        match self {
            DropReason::Malformed(_) => "frame does not parse",
            DropReason::Xlate(x) => x.describe(),
            DropReason::CtInvalid(_) => "conntrack judged the packet invalid and a flow dropped it",
            DropReason::MtuExceeded => "frame larger than the egress MTU",
            DropReason::Port(_) => "dropped by the port",
            DropReason::PacketIn(Refused::RateLimited) => {
                "packet-in over the bridge's controller rate limit"
            }
            DropReason::PacketIn(Refused::QueueFull) => {
                "packet-in not taken: no controller path, or the control plane is behind"
            }
            DropReason::PacketIn(Refused::NoController) => {
                "packet-in with no controller connected to the bridge"
            }
        }
    }
}

impl From<XlateError> for DropReason {
    fn from(x: XlateError) -> Self {
        DropReason::Xlate(x)
    }
}

impl From<DropReason> for TraceDrop {
    fn from(r: DropReason) -> Self {
        TraceDrop {
            name: r.name(),
            describe: r.describe(),
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
    fn names_and_order_are_the_user_facing_ones() {
        // `dump-drops` lists these in this order under these names; scripts
        // and tests read them, so wrapping translation reasons must not
        // change them.
        let simple: Vec<String> = SIMPLE.iter().map(|r| r.name()).collect();
        assert_eq!(
            simple,
            [
                "no_match",
                "pipeline_drop",
                "resubmit_depth",
                "recirc_depth",
                "ttl_exceeded",
                "output_to_in_port",
                "no_such_port",
                "normal_learned_on_in_port",
                "mtu_exceeded",
                "vlan_tagged_on_access_port",
                "double_vlan_push",
                "pop_vlan_untagged",
                "too_many_vlans",
                "bpdu_dropped",
                "port_disabled",
                "controller_rate_limited",
                "controller_queue_full",
                "controller_not_connected",
            ]
        );
        for x in XlateError::ALL {
            assert_eq!(DropReason::from(x).name(), x.to_string());
            assert!(SIMPLE.contains(&DropReason::Xlate(x)));
        }
        assert_eq!(
            DropReason::from_wire(wire::Error::TooManyVlans).name(),
            "too_many_vlans"
        );
    }

    #[test]
    fn invalid_packets_dropped_by_the_pipeline_count_under_conntrack() {
        let r = CtInvalidReason::ALL[0];
        assert_eq!(
            DropReason::after_pipeline(XlateError::PipelineDrop, Some(r)),
            DropReason::CtInvalid(r)
        );
        assert_eq!(
            DropReason::after_pipeline(XlateError::PipelineDrop, None),
            DropReason::Xlate(XlateError::PipelineDrop)
        );
        assert_eq!(
            DropReason::after_pipeline(XlateError::NoMatch, Some(r)),
            DropReason::Xlate(XlateError::NoMatch)
        );
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
