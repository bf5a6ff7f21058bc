//! The connection tracker: `ct(...)` in the pipeline.
//!
//! Modelled on Open vSwitch's userspace conntrack (`lib/conntrack*.c`),
//! whose TCP window tracking comes from OpenBSD pf. A packet through
//! [`ConnTracker::process`] gets `+trk` plus `new` / `est` / `rel` / `rpl` /
//! `inv` exactly as OVS would set them, and every `+inv` carries a
//! [`CtInvalidReason`] (with the expected and received checksum values when
//! a checksum was the reason), counted per reason.
//!
//! Design notes:
//!
//! * **Sans-IO.** Every entry point takes `now`; nothing here makes a
//!   syscall, so tests drive timeouts with simulated time.
//! * **Padding never counts.** Lengths come from the IP header (IPv4 total
//!   length, IPv6 payload length); Ethernet padding after the datagram is
//!   never summed into a checksum nor counted as TCP payload. This is field
//!   story 1 of `DESIGN.md`: padded bare ACK/FINs judged invalid.
//! * **Sharding, and no shard lock for established connections.**
//!   Connections live in [`SHARDS`] shards, selected by a
//!   direction-independent hash of the 5-tuple and zone, so both
//!   directions of a connection land in one shard and one table entry
//!   serves both. A packet of an existing connection finds its entry
//!   without a lock and updates it under the entry's own lock (as Linux's
//!   nf_conntrack and Open vSwitch's userspace conntrack do); each shard's
//!   mutex serialises only structural changes: new and removed entries,
//!   expiry, SYNs and RSTs, flush and dumps. Two workers meet on a lock
//!   only when they carry the very same connection.
//! * **Expiry without scanning.** Each shard keeps a timer wheel of 1-second
//!   slots (as OVS keeps per-timeout-policy expiration lists). A packet only
//!   rewrites the connection's expiration time; the wheel re-files lazily
//!   when a slot comes due, and eagerly only when a timeout got shorter.
//!   Lookups treat an expired entry as absent, so semantics never depend on
//!   when [`ConnTracker::sweep`] last ran.
//! * **Fragments.** IPv4 and IPv6 fragments are reassembled ahead of the
//!   tracker (`ipf`, after Open vSwitch's userspace `ipf`): the datagram
//!   is judged whole and its fragments leave with that verdict, within a
//!   fragment budget and a per-datagram timeout
//!   ([`ConnTracker::process_fragment`]).
//! * **Memory.** One table slot (96 bytes with its lock, see
//!   `table::Slot`) per connection, in chunked slabs, plus 12 bytes of
//!   timer-wheel links and an 8-byte index word (the index kept at most
//!   three quarters full).
//!
//! Thread safety: [`ConnTracker`] is `Send + Sync`; configuration setters
//! are atomics (or an `ArcSwap` for per-zone timeouts) read lock-free by the
//! packet path.

mod info;
mod ipf;
mod parse;
mod snapshot;
mod table;
mod tcp;
mod tracker;

pub use info::{ConnInfo, CtStats, CtTuple, TcpInfo, TcpPeerInfo, ZoneStats};
pub use ipf::{
    Dropped, FragOutcome, FragVerdict, IpFamily, IpfCounters, IpfError, IpfSettings, IpfStatus,
    DEFAULT_MAX_FRAGS, DEFAULT_MIN_FRAG_SIZE_V4, DEFAULT_MIN_FRAG_SIZE_V6, FRAG_TIMEOUT_MS,
    MAX_FRAGS_CEILING, MIN_FRAG_SIZE_FLOOR,
};
pub use snapshot::SnapshotError;
pub use tcp::{TcpPeerState, TcpState};
pub use tracker::{ConnTracker, CtClock, CtPolicy, ImportReport, SHARDS};

use core::fmt;

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
    /// Not an IPv4 or IPv6 packet.
    NotIp,
    /// An IP fragment while reassembly is off for its family
    /// (`ipf-set enabled=false`).
    Fragment,
    /// A packet that cannot start a connection (TCP SYN+ACK, ICMP echo
    /// reply) and belongs to none (OVS `valid_new()` false).
    InvalidNew,
    /// An ICMP/ICMPv6 error whose embedded packet belongs to no tracked
    /// connection.
    RelatedNoConn,
    /// An ICMP/ICMPv6 type conntrack does not track (neither echo nor an
    /// error carrying a packet: e.g. neighbour discovery).
    UnsupportedIcmp,
    /// A TCP segment the connection's state does not allow (Linux
    /// conntrack's "invalid state": a SYN from the responder of an open
    /// connection, a SYN+ACK from the side that sent the SYN).
    TcpInvalidState,
    /// An IP fragment other than the last smaller than `min_frag_size`.
    FragTooSmall,
    /// An IP fragment whose data would end past 65,535 bytes of datagram.
    FragTooBig,
    /// An IP fragment overlapping (or duplicating) one already held: the
    /// datagram is discarded (RFC 5722).
    FragOverlap,
    /// An IP fragment arriving while the fragment budget (`max_frags`) is
    /// spent.
    FragNoRoom,
    /// An IP fragment dropped because its datagram did not arrive whole
    /// within the reassembly timeout.
    FragTimeout,
}

impl CtInvalidReason {
    /// Every reason, in declaration order (counters index by this).
    pub const ALL: [CtInvalidReason; 17] = [
        CtInvalidReason::BadIpChecksum,
        CtInvalidReason::BadL4Checksum,
        CtInvalidReason::BadTcpFlags,
        CtInvalidReason::OutOfWindow,
        CtInvalidReason::LimitReached,
        CtInvalidReason::Malformed,
        CtInvalidReason::NotIp,
        CtInvalidReason::Fragment,
        CtInvalidReason::InvalidNew,
        CtInvalidReason::RelatedNoConn,
        CtInvalidReason::UnsupportedIcmp,
        CtInvalidReason::TcpInvalidState,
        CtInvalidReason::FragTooSmall,
        CtInvalidReason::FragTooBig,
        CtInvalidReason::FragOverlap,
        CtInvalidReason::FragNoRoom,
        CtInvalidReason::FragTimeout,
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
            CtInvalidReason::NotIp => "not_ip",
            CtInvalidReason::Fragment => "fragment",
            CtInvalidReason::InvalidNew => "invalid_new",
            CtInvalidReason::RelatedNoConn => "related_no_conn",
            CtInvalidReason::UnsupportedIcmp => "unsupported_icmp",
            CtInvalidReason::TcpInvalidState => "tcp_invalid_state",
            CtInvalidReason::FragTooSmall => "frag_too_small",
            CtInvalidReason::FragTooBig => "frag_too_big",
            CtInvalidReason::FragOverlap => "frag_overlap",
            CtInvalidReason::FragNoRoom => "frag_no_room",
            CtInvalidReason::FragTimeout => "frag_timeout",
        }
    }

    /// The value stored in `PacketMeta::ct_invalid` (1 + index; 0 = none).
    pub fn meta_code(self) -> u8 {
        self as u8 + 1
    }

    /// Inverse of [`CtInvalidReason::meta_code`].
    pub fn from_meta_code(code: u8) -> Option<CtInvalidReason> {
        CtInvalidReason::ALL
            .get(usize::from(code).checked_sub(1)?)
            .copied()
    }
}

impl fmt::Display for CtInvalidReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Whether conntrack verifies checksums (`ct_checksum=validate|skip`).
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum ChecksumPolicy {
    /// Verify the IPv4 header checksum and the L4 checksum over the IP
    /// payload (as delimited by the IP header), unless the receiving port
    /// already verified it or left it to be computed (checksum offload).
    #[default]
    Validate,
    /// Trust every checksum (Linux `nf_conntrack_checksum=0`).
    Skip,
}

impl ChecksumPolicy {
    /// `validate` / `skip`.
    pub fn name(self) -> &'static str {
        match self {
            ChecksumPolicy::Validate => "validate",
            ChecksumPolicy::Skip => "skip",
        }
    }
}

impl core::str::FromStr for ChecksumPolicy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "validate" => Ok(ChecksumPolicy::Validate),
            "skip" => Ok(ChecksumPolicy::Skip),
            _ => Err(format!("`{s}`: expected `validate` or `skip`")),
        }
    }
}

/// Tracker configuration at creation; every field can be changed later
/// through the `set_*` methods of [`ConnTracker`].
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct CtConfig {
    /// Checksum validation policy.
    pub checksum: ChecksumPolicy,
    /// Accept out-of-window TCP segments except RSTs (Linux
    /// `nf_conntrack_tcp_be_liberal`).
    pub tcp_liberal: bool,
    /// TCP sequence checking (OVS `dpctl/ct-enable-tcp-seq-chk`); off
    /// accepts any sequence number, RSTs included.
    pub tcp_seq_check: bool,
    /// Global connection limit (OVS `ct-set-maxconns`).
    pub max_conns: u32,
}

impl Default for CtConfig {
    fn default() -> Self {
        CtConfig {
            checksum: ChecksumPolicy::Validate,
            tcp_liberal: false,
            tcp_seq_check: true,
            max_conns: 3_000_000,
        }
    }
}

/// The arguments of one `ct(...)` action.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CtParams {
    /// Conntrack zone (`zone=N` or from a register).
    pub zone: u16,
    /// `commit`: remember a new connection.
    pub commit: bool,
    /// `force`: a committed connection seen in the reply direction is
    /// deleted and the packet starts a new one (implies commit).
    pub force: bool,
    /// `exec(set_field:value/mask->ct_mark)`, applied on commit.
    pub set_mark: Option<(u32, u32)>,
}

/// Why a packet is `+inv`, with the values that made it so.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CtInvalidDetail {
    /// The counted reason.
    pub reason: CtInvalidReason,
    /// For checksum reasons: the checksum value that would verify.
    pub expected: Option<u16>,
    /// For checksum reasons: the checksum value in the packet.
    pub received: Option<u16>,
    /// A short human explanation (which header, which check).
    pub detail: &'static str,
}

impl CtInvalidDetail {
    /// A detail without checksum values.
    pub fn new(reason: CtInvalidReason, detail: &'static str) -> Self {
        CtInvalidDetail {
            reason,
            expected: None,
            received: None,
            detail,
        }
    }
}

impl fmt::Display for CtInvalidDetail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.reason.name(), self.detail)?;
        if let (Some(e), Some(r)) = (self.expected, self.received) {
            write!(f, " (expected {e:#06x}, received {r:#06x})")?;
        }
        Ok(())
    }
}

/// What [`ConnTracker::process`] concluded; also written into the packet's
/// metadata.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CtVerdict {
    /// `CtState` bits (`crate::packet::CtState::*`).
    pub state: u8,
    /// The connection's mark (0 when no connection).
    pub mark: u32,
    /// Set exactly when `state` has `INV`.
    pub invalid: Option<CtInvalidDetail>,
}

/// The timeouts of a timeout policy, by OVS attribute name
/// (`ct_dpif_tp_attr` for the userspace datapath).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TimeoutKind {
    /// TCP: first packet seen (SYN_SENT). Default 30 s.
    TcpSynSent,
    /// TCP: both sides seen, handshake not complete (SYN_RECV). 30 s.
    TcpSynRecv,
    /// TCP: ESTABLISHED. 24 h.
    TcpEstablished,
    /// TCP: one side closed (FIN_WAIT, CLOSE_WAIT). 15 min.
    TcpFinWait,
    /// TCP: both sides sent FIN (LAST_ACK, TIME_WAIT). 45 s.
    TcpTimeWait,
    /// TCP: reset (CLOSED). 30 s.
    TcpClose,
    /// UDP (and other IP protocols): first packet. 60 s.
    UdpFirst,
    /// UDP: more packets, one direction only. 60 s.
    UdpSingle,
    /// UDP: packets in both directions. 30 s.
    UdpMultiple,
    /// ICMP: first packet (echo request). 60 s.
    IcmpFirst,
    /// ICMP: reply seen. 30 s.
    IcmpReply,
}

impl TimeoutKind {
    /// Every kind, in declaration order.
    pub const ALL: [TimeoutKind; 11] = [
        TimeoutKind::TcpSynSent,
        TimeoutKind::TcpSynRecv,
        TimeoutKind::TcpEstablished,
        TimeoutKind::TcpFinWait,
        TimeoutKind::TcpTimeWait,
        TimeoutKind::TcpClose,
        TimeoutKind::UdpFirst,
        TimeoutKind::UdpSingle,
        TimeoutKind::UdpMultiple,
        TimeoutKind::IcmpFirst,
        TimeoutKind::IcmpReply,
    ];

    /// Open vSwitch's userspace defaults, in seconds.
    pub fn default_secs(self) -> u32 {
        match self {
            TimeoutKind::TcpSynSent | TimeoutKind::TcpSynRecv => 30,
            TimeoutKind::TcpEstablished => 24 * 60 * 60,
            TimeoutKind::TcpFinWait => 15 * 60,
            TimeoutKind::TcpTimeWait => 45,
            TimeoutKind::TcpClose => 30,
            TimeoutKind::UdpFirst | TimeoutKind::UdpSingle => 60,
            TimeoutKind::UdpMultiple => 30,
            TimeoutKind::IcmpFirst => 60,
            TimeoutKind::IcmpReply => 30,
        }
    }

    /// OVS attribute name (`tcp_syn_sent`, ..., `icmp_reply`).
    pub fn name(self) -> &'static str {
        match self {
            TimeoutKind::TcpSynSent => "tcp_syn_sent",
            TimeoutKind::TcpSynRecv => "tcp_syn_recv",
            TimeoutKind::TcpEstablished => "tcp_established",
            TimeoutKind::TcpFinWait => "tcp_fin_wait",
            TimeoutKind::TcpTimeWait => "tcp_time_wait",
            TimeoutKind::TcpClose => "tcp_close",
            TimeoutKind::UdpFirst => "udp_first",
            TimeoutKind::UdpSingle => "udp_single",
            TimeoutKind::UdpMultiple => "udp_multiple",
            TimeoutKind::IcmpFirst => "icmp_first",
            TimeoutKind::IcmpReply => "icmp_reply",
        }
    }
}

impl core::str::FromStr for TimeoutKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        TimeoutKind::ALL
            .iter()
            .find(|k| k.name() == s)
            .copied()
            .ok_or_else(|| format!("`{s}`: unknown conntrack timeout"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reason_names_and_codes_round_trip() {
        let mut names = std::collections::HashSet::new();
        for (i, r) in CtInvalidReason::ALL.iter().enumerate() {
            assert_eq!(*r as usize, i, "ALL must be in declaration order");
            assert!(names.insert(r.name()));
            assert_eq!(CtInvalidReason::from_meta_code(r.meta_code()), Some(*r));
        }
        assert_eq!(CtInvalidReason::from_meta_code(0), None);
        assert_eq!(CtInvalidReason::from_meta_code(200), None);
    }

    #[test]
    fn timeout_kinds_parse() {
        for (i, k) in TimeoutKind::ALL.iter().enumerate() {
            assert_eq!(*k as usize, i);
            assert_eq!(k.name().parse::<TimeoutKind>(), Ok(*k));
        }
        assert!("tcp_bogus".parse::<TimeoutKind>().is_err());
    }
}
