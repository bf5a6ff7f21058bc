//! Why a translation sends a packet nowhere: the drop reasons that the
//! tables decide, kept here so that `ofproto` stands on its own (Open
//! vSwitch keeps `enum xlate_error` next to its translator in the same way).
//!
//! The datapath wraps these in its own `DropReason` (with the reasons only
//! it can see: malformed frames, conntrack verdicts, MTU, port drops) and
//! counts them there; the names below are the user-facing names printed by
//! `dump-drops` and `trace`, so they never change.

/// A translation's drop reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
pub enum XlateError {
    /// No flow matched (table miss).
    #[error("no_match")]
    NoMatch,
    /// The matching flows' actions output the packet nowhere (`drop`, or an
    /// empty action list).
    #[error("pipeline_drop")]
    PipelineDrop,
    /// Too many `resubmit`/`goto_table` levels (a loop in the tables): the
    /// packet is sent nowhere, whatever the actions before the limit said.
    #[error("resubmit_depth")]
    ResubmitDepth,
    /// Too many recirculations (a `ct(table=...)` loop).
    #[error("recirc_depth")]
    RecircDepth,
    /// `dec_ttl` on a TTL of 0 or 1.
    #[error("ttl_exceeded")]
    TtlExceeded,
    /// `output` to the input port without `in_port` (OpenFlow ignores it).
    #[error("output_to_in_port")]
    OutputToInPort,
    /// `output` to a port that does not exist.
    #[error("no_such_port")]
    NoSuchPort,
    /// `normal`: the destination was learned on the input port.
    #[error("normal_learned_on_in_port")]
    NormalLearnedOnInPort,
    /// A tagged frame arrived on an access port.
    #[error("vlan_tagged_on_access_port")]
    VlanTaggedOnAccessPort,
    /// `push_vlan:0x8100` onto a frame that already has an 802.1Q tag.
    #[error("double_vlan_push")]
    DoubleVlanPush,
    /// `pop_vlan` on an untagged frame.
    #[error("pop_vlan_untagged")]
    PopVlanUntagged,
    /// A third VLAN tag.
    #[error("too_many_vlans")]
    TooManyVlans,
    /// A link-local control frame (BPDU, LLDP, pause) from a VM port.
    #[error("bpdu_dropped")]
    Bpdu,
    /// The input port is disabled (BPDU guard).
    #[error("port_disabled")]
    PortDisabled,
}

impl XlateError {
    /// Every reason, in the order `dump-drops` lists them.
    pub const ALL: [XlateError; 14] = [
        XlateError::NoMatch,
        XlateError::PipelineDrop,
        XlateError::ResubmitDepth,
        XlateError::RecircDepth,
        XlateError::TtlExceeded,
        XlateError::OutputToInPort,
        XlateError::NoSuchPort,
        XlateError::NormalLearnedOnInPort,
        XlateError::VlanTaggedOnAccessPort,
        XlateError::DoubleVlanPush,
        XlateError::PopVlanUntagged,
        XlateError::TooManyVlans,
        XlateError::Bpdu,
        XlateError::PortDisabled,
    ];

    /// Stable snake_case name (`no_match`, `bpdu_dropped`).
    pub fn name(self) -> &'static str {
        match self {
            XlateError::NoMatch => "no_match",
            XlateError::PipelineDrop => "pipeline_drop",
            XlateError::ResubmitDepth => "resubmit_depth",
            XlateError::RecircDepth => "recirc_depth",
            XlateError::TtlExceeded => "ttl_exceeded",
            XlateError::OutputToInPort => "output_to_in_port",
            XlateError::NoSuchPort => "no_such_port",
            XlateError::NormalLearnedOnInPort => "normal_learned_on_in_port",
            XlateError::VlanTaggedOnAccessPort => "vlan_tagged_on_access_port",
            XlateError::DoubleVlanPush => "double_vlan_push",
            XlateError::PopVlanUntagged => "pop_vlan_untagged",
            XlateError::TooManyVlans => "too_many_vlans",
            XlateError::Bpdu => "bpdu_dropped",
            XlateError::PortDisabled => "port_disabled",
        }
    }

    /// One-line explanation for `dump-drops -v` and `trace`.
    pub fn describe(self) -> &'static str {
        match self {
            XlateError::NoMatch => "no flow matched (table miss)",
            XlateError::PipelineDrop => "flow actions output the packet nowhere",
            XlateError::ResubmitDepth => {
                "a loop in the tables: too many resubmit/goto_table levels; nothing sent"
            }
            XlateError::RecircDepth => "too many recirculations",
            XlateError::TtlExceeded => "dec_ttl on TTL <= 1",
            XlateError::OutputToInPort => "output to the input port (use in_port)",
            XlateError::NoSuchPort => "output to a port that does not exist",
            XlateError::NormalLearnedOnInPort => "normal: destination learned on the input port",
            XlateError::VlanTaggedOnAccessPort => "tagged frame on an access port",
            XlateError::DoubleVlanPush => "push_vlan:0x8100 onto an 802.1Q-tagged frame",
            XlateError::PopVlanUntagged => "pop_vlan on an untagged frame",
            XlateError::TooManyVlans => "more than two VLAN tags",
            XlateError::Bpdu => "link-local control frame (BPDU/LLDP/pause) from a VM port",
            XlateError::PortDisabled => "input port disabled (BPDU guard)",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_is_the_stable_name() {
        let mut seen = std::collections::HashSet::new();
        for e in XlateError::ALL {
            assert_eq!(e.to_string(), e.name());
            assert!(seen.insert(e.name()), "duplicate name {e}");
            assert!(!e.describe().is_empty());
        }
    }
}
