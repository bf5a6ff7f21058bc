//! The connection tracker (filled in by the conntrack work).
//!
//! Sans-IO: every entry point takes `now`; nothing here makes a syscall.

/// Why conntrack judged a packet invalid (`ct_state=+inv`). Each variant has
/// a counter and is shown by `ct-stats`, `dump-drops` and `trace`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CtInvalidReason {
    /// The IPv4 header checksum does not verify.
    BadIpChecksum,
    /// The TCP/UDP/ICMP checksum over the IP payload does not verify.
    BadL4Checksum,
    /// A TCP flag combination no stack sends (SYN+RST, SYN+FIN, no ACK and
    /// no RST, FIN/PSH/URG without ACK).
    BadTcpFlags,
    /// A TCP segment outside the tracked window.
    OutOfWindow,
    /// A new connection over the global or zone limit.
    LimitReached,
    /// The L3/L4 headers could not be parsed for tracking.
    Malformed,
}

impl CtInvalidReason {
    /// Every reason, in declaration order (counters index by this).
    pub const ALL: [CtInvalidReason; 6] = [
        CtInvalidReason::BadIpChecksum,
        CtInvalidReason::BadL4Checksum,
        CtInvalidReason::BadTcpFlags,
        CtInvalidReason::OutOfWindow,
        CtInvalidReason::LimitReached,
        CtInvalidReason::Malformed,
    ];

    /// Stable snake_case name.
    pub fn name(self) -> &'static str {
        match self {
            CtInvalidReason::BadIpChecksum => "bad_ip_checksum",
            CtInvalidReason::BadL4Checksum => "bad_l4_checksum",
            CtInvalidReason::BadTcpFlags => "bad_tcp_flags",
            CtInvalidReason::OutOfWindow => "out_of_window",
            CtInvalidReason::LimitReached => "limit_reached",
            CtInvalidReason::Malformed => "malformed",
        }
    }
}

// ---- Placeholder API until the conntrack work lands. ----

use crate::flow::FlowKey;
use crate::packet::PacketMeta;
use std::time::Instant;

/// Parameters of one `ct` action.
#[derive(Debug, Clone, Copy, Default)]
pub struct CtParams {
    /// Zone.
    pub zone: u16,
    /// Commit.
    pub commit: bool,
    /// Force.
    pub force: bool,
    /// Mark value and mask to set on commit.
    pub set_mark: Option<(u32, u32)>,
}

/// Verdict.
#[derive(Debug, Clone, Copy, Default)]
pub struct CtVerdict {
    /// State bits.
    pub state: u8,
}

/// Placeholder tracker.
#[derive(Debug, Default)]
pub struct ConnTracker;

impl ConnTracker {
    /// Tracks one packet.
    pub fn process(
        &self,
        _frame: &[u8],
        _key: &FlowKey,
        meta: &mut PacketMeta,
        params: &CtParams,
        _now: Instant,
    ) -> CtVerdict {
        meta.ct_state = crate::packet::CtState(0x21);
        meta.ct_zone = params.zone;
        CtVerdict { state: 0x21 }
    }
}
