//! FLOW_REMOVED: a flow with `send_flow_rem` left the table (timeout or
//! delete), in the OpenFlow 1.0, Nicira (`NXT_FLOW_REMOVED`, for 1.0
//! sessions in NXM format), 1.2-1.4 and 1.5 (OXS statistics) layouts.

use super::flow_mod::MatchFormat;
use super::{match10, oxm, Version, Wr, NX_VENDOR};
use crate::flow::Match;

/// Why a flow was removed (OFPRR_*).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RemovedReason {
    /// OFPRR_IDLE_TIMEOUT.
    IdleTimeout,
    /// OFPRR_HARD_TIMEOUT.
    HardTimeout,
    /// OFPRR_DELETE.
    Delete,
}

impl RemovedReason {
    fn wire(self) -> u8 {
        match self {
            RemovedReason::IdleTimeout => 0,
            RemovedReason::HardTimeout => 1,
            RemovedReason::Delete => 2,
        }
    }
}

/// A removed flow, as controllers learn of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlowRemoved {
    /// Table it was in.
    pub table_id: u8,
    /// Why.
    pub reason: RemovedReason,
    /// Priority.
    pub priority: u16,
    /// Cookie.
    pub cookie: u64,
    /// Match.
    pub matches: Match,
    /// Seconds it lived.
    pub duration_sec: u32,
    /// Nanoseconds beyond `duration_sec`.
    pub duration_nsec: u32,
    /// Its idle timeout.
    pub idle_timeout: u16,
    /// Its hard timeout.
    pub hard_timeout: u16,
    /// Packets it counted.
    pub packet_count: u64,
    /// Bytes it counted.
    pub byte_count: u64,
}

/// NXT_FLOW_REMOVED subtype.
const NXT_FLOW_REMOVED: u32 = 14;

impl FlowRemoved {
    /// Appends the body for `v`; `format` is the session's 1.0 flow format
    /// (NXM sessions get `NXT_FLOW_REMOVED`). Returns the message type
    /// (FLOW_REMOVED, or EXPERIMENTER for the Nicira form).
    pub fn emit(&self, out: &mut Vec<u8>, v: Version, format: MatchFormat) -> u8 {
        match (v, format) {
            (Version::V10, MatchFormat::Nxm) => {
                out.u32(NX_VENDOR);
                out.u32(NXT_FLOW_REMOVED);
                out.u64(self.cookie);
                out.u16(self.priority);
                out.u8(self.reason.wire());
                out.u8(self.table_id.wrapping_add(1));
                out.u32(self.duration_sec);
                out.u32(self.duration_nsec);
                out.u16(self.idle_timeout);
                let at = out.len();
                out.u16(0);
                out.u64(self.packet_count);
                out.u64(self.byte_count);
                let ml = oxm::encode_nxm_padded(out, &self.matches, 0, 0);
                out.set_u16(at, ml);
                super::message::EXPERIMENTER
            }
            (Version::V10, _) => {
                match10::encode(out, &self.matches);
                out.u64(self.cookie);
                out.u16(self.priority);
                out.u8(self.reason.wire());
                out.u8(0);
                out.u32(self.duration_sec);
                out.u32(self.duration_nsec);
                out.u16(self.idle_timeout);
                out.zeros(2);
                out.u64(self.packet_count);
                out.u64(self.byte_count);
                super::message::FLOW_REMOVED
            }
            (Version::V15, _) => {
                out.u8(self.table_id);
                out.u8(self.reason.wire());
                out.u16(self.priority);
                out.u16(self.idle_timeout);
                out.u16(self.hard_timeout);
                out.u64(self.cookie);
                oxm::encode_ofp_match(out, &self.matches, 0, 0);
                let start = out.len();
                out.u16(0);
                out.u16(0);
                for (field, value) in [
                    (
                        0u32,
                        (u64::from(self.duration_sec) << 32) | u64::from(self.duration_nsec),
                    ),
                    (4, self.packet_count),
                    (5, self.byte_count),
                ] {
                    out.u32((0x8002u32 << 16) | (field << 9) | 8);
                    out.u64(value);
                }
                let len = out.len() - start;
                out.set_u16(start + 2, len as u16);
                out.pad8(start);
                super::message::FLOW_REMOVED
            }
            _ => {
                out.u64(self.cookie);
                out.u16(self.priority);
                out.u8(self.reason.wire());
                out.u8(self.table_id);
                out.u32(self.duration_sec);
                out.u32(self.duration_nsec);
                out.u16(self.idle_timeout);
                out.u16(self.hard_timeout);
                out.u64(self.packet_count);
                out.u64(self.byte_count);
                oxm::encode_ofp_match(out, &self.matches, 0, 0);
                super::message::FLOW_REMOVED
            }
        }
    }
}
