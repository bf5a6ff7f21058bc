//! TCP window tracking, in the manner of Open vSwitch `lib/conntrack-tcp.c`
//! (itself OpenBSD pf's `pf_test_state_tcp`, from Guido van Rooij's "Real
//! Stateful TCP Packet Filtering in IP Filter").
//!
//! Each direction ("peer") keeps pf's state: the highest sequence number it
//! sent (`seqlo`), the highest the other side may accept from it
//! (`seqhi` = what the other side acked plus its window), its largest
//! window and its window scale. A segment is in window when its last octet
//! is below `seqhi`, it is at most one window behind `seqlo`, and what it
//! acknowledges is within a window of what the other side sent.
//!
//! The segment length is the payload as delimited by the IP header
//! ([`TcpSeg::payload_len`]): a padded bare ACK carries
//! nothing, so it never moves `seqlo`.
//!
//! The per-direction states use OVS's `ct_dpif_tcp_state` numbering (pf
//! only ever sets CLOSED, SYN_SENT, ESTABLISHED, CLOSING, FIN_WAIT_2 and
//! TIME_WAIT). The connection's summary state ([`TcpState`], what
//! `dump-conntrack` prints) is derived from both, with Linux's names.

use super::{CtInvalidDetail, CtInvalidReason, TimeoutKind};
use crate::wire::tcp::{ACK, FIN, PSH, RST, SYN, URG};

/// pf's window-scale encoding: the option was present.
pub(crate) const WSCALE_FLAG: u8 = 0x80;
/// pf's window-scale encoding: connection picked up mid-stream, scale
/// unknown.
pub(crate) const WSCALE_UNKNOWN: u8 = 0x40;
/// pf's window-scale encoding: the shift itself.
pub(crate) const WSCALE_MASK: u8 = 0x0f;
/// RFC 7323 section 2.3: shifts above 14 are treated as 14.
pub(crate) const TCP_MAX_WSCALE: u8 = 14;

/// What the TCP state machine needs from a segment (filled in by
/// `parse`, which depends on this module, never the other way round).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TcpSeg {
    pub seq: u32,
    pub ack: u32,
    pub win: u16,
    /// The 12 flag bits.
    pub flags: u16,
    /// Bytes of payload: IP-delimited segment length minus the TCP header.
    pub payload_len: u32,
    /// Window scale option in pf encoding (`WSCALE_FLAG | shift`, or 0).
    pub wscale: u8,
}

/// One direction's TCP state, OVS `ct_dpif_tcp_state` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, serde::Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
#[repr(u8)]
pub enum TcpPeerState {
    /// Nothing sent yet (or the connection was closed for reuse).
    #[default]
    Closed = 0,
    /// Unused by pf; kept for OVS numbering.
    Listen = 1,
    /// Sent its first segment (a SYN, or whatever we picked up).
    SynSent = 2,
    /// Unused by pf; kept for OVS numbering.
    SynRecv = 3,
    /// Its first segment was acknowledged.
    Established = 4,
    /// Unused by pf; kept for OVS numbering.
    CloseWait = 5,
    /// Unused by pf; kept for OVS numbering.
    FinWait1 = 6,
    /// Sent a FIN.
    Closing = 7,
    /// Unused by pf; kept for OVS numbering.
    LastAck = 8,
    /// Its FIN was acknowledged.
    FinWait2 = 9,
    /// The connection was reset.
    TimeWait = 10,
}

impl TcpPeerState {
    /// OVS spelling (`SYN_SENT`, `FIN_WAIT_2`, ...).
    pub fn name(self) -> &'static str {
        match self {
            TcpPeerState::Closed => "CLOSED",
            TcpPeerState::Listen => "LISTEN",
            TcpPeerState::SynSent => "SYN_SENT",
            TcpPeerState::SynRecv => "SYN_RECV",
            TcpPeerState::Established => "ESTABLISHED",
            TcpPeerState::CloseWait => "CLOSE_WAIT",
            TcpPeerState::FinWait1 => "FIN_WAIT_1",
            TcpPeerState::Closing => "CLOSING",
            TcpPeerState::LastAck => "LAST_ACK",
            TcpPeerState::FinWait2 => "FIN_WAIT_2",
            TcpPeerState::TimeWait => "TIME_WAIT",
        }
    }
}

/// The connection's summary state, as `dump-conntrack` prints it
/// (`protoinfo=(state=...)`), with Linux conntrack's names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TcpState {
    /// Only the originator has spoken.
    SynSent,
    /// Both sides have spoken, the handshake is not complete.
    SynRecv,
    /// Both sides' first segments acknowledged.
    Established,
    /// One side sent a FIN not yet acknowledged.
    FinWait,
    /// One side's FIN was acknowledged; the other has not sent its own.
    CloseWait,
    /// Both sides sent FIN, not both acknowledged.
    LastAck,
    /// Both FINs acknowledged.
    TimeWait,
    /// Reset.
    Closed,
}

impl TcpState {
    /// `ESTABLISHED`, `TIME_WAIT`, ...
    pub fn name(self) -> &'static str {
        match self {
            TcpState::SynSent => "SYN_SENT",
            TcpState::SynRecv => "SYN_RECV",
            TcpState::Established => "ESTABLISHED",
            TcpState::FinWait => "FIN_WAIT",
            TcpState::CloseWait => "CLOSE_WAIT",
            TcpState::LastAck => "LAST_ACK",
            TcpState::TimeWait => "TIME_WAIT",
            TcpState::Closed => "CLOSED",
        }
    }

    /// The timeout that applies in this state. OVS picks its timeout from
    /// the same peer-state tests; we differ in one place: OVS applies
    /// `tcp_close` once both FINs are acknowledged (and prints that as
    /// TIME_WAIT), we apply `tcp_time_wait` there so a connection shown in
    /// TIME_WAIT lasts `tcp_time_wait`, and keep `tcp_close` for resets.
    pub fn timeout(self) -> TimeoutKind {
        match self {
            TcpState::SynSent => TimeoutKind::TcpSynSent,
            TcpState::SynRecv => TimeoutKind::TcpSynRecv,
            TcpState::Established => TimeoutKind::TcpEstablished,
            TcpState::FinWait | TcpState::CloseWait => TimeoutKind::TcpFinWait,
            TcpState::LastAck | TcpState::TimeWait => TimeoutKind::TcpTimeWait,
            TcpState::Closed => TimeoutKind::TcpClose,
        }
    }
}

/// pf's per-direction window state, plus the highest acknowledgement the
/// side sent (16 bytes).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct TcpPeer {
    /// Highest sequence number sent (+ SYN/FIN).
    pub seqlo: u32,
    /// Highest sequence number the other side will accept (its ack +
    /// window); 1 means "not known yet".
    pub seqhi: u32,
    /// Highest acknowledgement number this side sent (Linux `td_maxack`),
    /// read through [`TcpConn::maxack`]: a reset from
    /// the other side at exactly this number is what a host that lost its
    /// connection sends in answer to this side's segments.
    pub maxack: u32,
    /// Largest window advertised, unscaled.
    pub max_win: u16,
    /// Window scale in pf encoding.
    pub wscale: u8,
    pub state: TcpPeerState,
}

/// Both directions: `[originator, responder]` (32 bytes).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct TcpConn {
    /// `[originator, responder]`.
    pub peers: [TcpPeer; 2],
}

impl TcpConn {
    /// Both sides' first segments acknowledged: from here on each side's
    /// `maxack` is its highest acknowledgement (before, the latest).
    fn handshake_done(&self) -> bool {
        self.peers
            .iter()
            .all(|p| p.state >= TcpPeerState::Established)
    }

    /// The highest acknowledgement side `side` (0 = originator) sent, once
    /// the handshake is done.
    pub fn maxack(&self, side: usize) -> Option<u32> {
        let p = self.peers.get(side)?;
        self.handshake_done().then_some(p.maxack)
    }

    /// Records `ack`, sent by `side`. `keep_max` is whether the handshake
    /// was done *before* this segment: the segment that completes it (the
    /// originator's third ACK, or the second SYN+ACK of a simultaneous
    /// open) may be that side's first acknowledgement, so it is taken as
    /// is; comparing it with the unset value would keep 0 whenever the
    /// acknowledgement lies in the upper half of the sequence space.
    fn note_ack(&mut self, side: usize, ack: u32, keep_max: bool) {
        if let Some(p) = self.peers.get_mut(side) {
            if !keep_max || seq_gt(ack, p.maxack) {
                p.maxack = ack;
            }
        }
    }
}

/// What Linux keeps in `last_end` / `last_win` / `last_wscale` about an
/// originator SYN it let through without tracking it (see
/// [`Update::Ignored`]): enough to start the connection afresh when the
/// other side's answer shows that SYN opened a new one. Rare, so the
/// tracker keeps it beside the table rather than in every entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct IgnoredSyn {
    /// The SYN's end (sequence number + payload + 1): what an answer to it
    /// acknowledges.
    end: u32,
    win: u16,
    /// Window scale (pf encoding).
    wscale: u8,
    /// The connection when the SYN was let through: an answer counts only
    /// if nothing was tracked since (Linux: `last_index` still the SYN).
    at: TcpConn,
}

impl IgnoredSyn {
    fn answered_by(&self, c: &TcpConn, ack: u32) -> bool {
        self.at == *c && ack == self.end
    }
}

/// What a segment did to a connection (OVS `ct_update_res`, plus Linux's
/// "ignored").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Update {
    /// Part of the connection: `+est`. `refresh` says whether the timeout
    /// is re-armed (pf does not re-arm on the loose path).
    Valid {
        refresh: bool,
    },
    /// Still opening (retransmitted SYN): `+new`, timeout re-armed.
    ValidNew,
    /// Let through without being tracked (Linux `TCP_CONNTRACK_IGNORE`):
    /// a SYN on an open connection, or a SYN+ACK that answers no SYN we
    /// know of. Either our entry is stale or the packet is; the endpoint's
    /// answer (a SYN+ACK, a challenge ACK, a reset) tells which, so the
    /// packet must reach it. `+est`, state and timeout unchanged.
    Ignored,
    /// A SYN reopening a closed connection: delete it, start a new one.
    Reopen,
    Invalid(CtInvalidDetail),
}

/// Knobs read per packet.
#[derive(Debug, Clone, Copy)]
pub(crate) struct TcpPolicy {
    pub liberal: bool,
    pub seq_check: bool,
}

#[inline]
fn seq_gt(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) > 0
}
#[inline]
fn seq_geq(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) >= 0
}

/// pf normalisation's flag sanity check, as OVS `tcp_invalid_flags`.
fn invalid_flags(flags: u16) -> Option<&'static str> {
    if flags & SYN != 0 {
        if flags & (RST | FIN) != 0 {
            return Some("SYN with RST or FIN");
        }
    } else if flags & (ACK | RST) == 0 {
        return Some("neither SYN, ACK nor RST");
    }
    if flags & ACK == 0 && flags & (FIN | PSH | URG) != 0 {
        return Some("FIN, PSH or URG without ACK");
    }
    None
}

/// May this segment create a connection? As Linux `tcp_new` (the `sNO`
/// column of its state table, `nf_conntrack_tcp_loose=1`): a SYN, or a
/// plain ACK (a connection picked up mid-stream). A reset or a FIN never
/// does: an entry created by a stray RST or FIN+ACK from inside would let
/// the outside peer's segments in as replies.
pub(crate) fn valid_new(flags: u16) -> Result<(), CtInvalidDetail> {
    if let Some(d) = invalid_flags(flags) {
        return Err(CtInvalidDetail::new(CtInvalidReason::BadTcpFlags, d));
    }
    let why = if flags & RST != 0 {
        "RST without a connection"
    } else if flags & SYN != 0 && flags & ACK != 0 {
        // Half of someone else's handshake.
        "SYN+ACK without a connection"
    } else if flags & FIN != 0 {
        "FIN without a connection"
    } else {
        return Ok(());
    };
    Err(CtInvalidDetail::new(CtInvalidReason::InvalidNew, why))
}

/// OVS `tcp_new_conn`: the state after the first segment.
pub(crate) fn new_conn(seg: &TcpSeg) -> TcpConn {
    let mut src = TcpPeer {
        // The end of the data it carried (a SYN may carry some: TCP Fast
        // Open), so what the other side may acknowledge is known.
        seqlo: seg.seq.wrapping_add(seg.payload_len),
        seqhi: seg.seq.wrapping_add(seg.payload_len).wrapping_add(1),
        max_win: seg.win.max(1),
        state: TcpPeerState::SynSent,
        ..TcpPeer::default()
    };
    let mut dst = TcpPeer {
        seqhi: 1,
        max_win: 1,
        ..TcpPeer::default()
    };
    if seg.flags & SYN != 0 {
        src.seqhi = src.seqhi.wrapping_add(1);
        src.wscale = seg.wscale;
    } else {
        // Picked up mid-stream: the scale was negotiated out of sight.
        src.wscale = WSCALE_UNKNOWN;
        dst.wscale = WSCALE_UNKNOWN;
    }
    if src.wscale & WSCALE_MASK != 0 {
        let sws = src.wscale & WSCALE_MASK;
        src.max_win = div_round_up(u32::from(src.max_win), sws) as u16;
    }
    if seg.flags & FIN != 0 {
        src.seqhi = src.seqhi.wrapping_add(1);
    }
    let mut c = TcpConn { peers: [src, dst] };
    if seg.flags & ACK != 0 {
        c.note_ack(0, seg.ack, false);
    }
    c
}

#[inline]
fn div_round_up(v: u32, shift: u8) -> u32 {
    let d = 1u32 << shift;
    v.div_ceil(d)
}

/// The summary state of a connection.
pub(crate) fn summary(c: &TcpConn) -> TcpState {
    use TcpPeerState as P;
    let (o, r) = (c.peers[0].state, c.peers[1].state);
    if o >= P::FinWait2 && r >= P::FinWait2 {
        if o == P::TimeWait && r == P::TimeWait {
            TcpState::Closed
        } else {
            TcpState::TimeWait
        }
    } else if o >= P::Closing && r >= P::Closing {
        TcpState::LastAck
    } else if o < P::Established || r < P::Established {
        if r < P::SynSent {
            TcpState::SynSent
        } else {
            TcpState::SynRecv
        }
    } else if o >= P::Closing || r >= P::Closing {
        if o.max(r) >= P::FinWait2 {
            TcpState::CloseWait
        } else {
            TcpState::FinWait
        }
    } else {
        TcpState::Established
    }
}

/// Largest acknowledgement skew pf tolerates (one 64 KiB window plus a
/// fudge for a reassembled fragment).
const MAX_ACK_WINDOW: i64 = 0xffff + 1500;

fn invalid_state(detail: &'static str) -> Update {
    Update::Invalid(CtInvalidDetail::new(
        CtInvalidReason::TcpInvalidState,
        detail,
    ))
}

/// Runs `seg`, sent by the originator (`reply` = false) or the responder,
/// through the connection: OVS `tcp_conn_update` (pf's window tracking)
/// behind the SYN, SYN+ACK and RST rules of Linux's state table
/// (`tcp_conntracks` and `nf_conntrack_tcp_packet`, with
/// `nf_conntrack_tcp_loose=1`).
///
/// `ign` is the SYN last let through untracked on this connection, if
/// any: read for SYN+ACK and RST+ACK segments, written for SYNs.
pub(crate) fn update(
    c: &mut TcpConn,
    ign: &mut Option<IgnoredSyn>,
    seg: &TcpSeg,
    reply: bool,
    pol: TcpPolicy,
) -> Update {
    use TcpPeerState as P;
    let flags = seg.flags;
    if let Some(d) = invalid_flags(flags) {
        return Update::Invalid(CtInvalidDetail::new(CtInvalidReason::BadTcpFlags, d));
    }
    let (si, di) = if reply { (1, 0) } else { (0, 1) };
    if flags & SYN != 0 {
        if let Some(u) = syn_step(c, ign, seg, reply) {
            return u;
        }
    } else if flags & (RST | ACK) == (RST | ACK)
        && reply
        && ign.is_some_and(|g| g.answered_by(c, seg.ack))
    {
        // The responder reset the SYN we let through: it has no such
        // connection, so neither do we (Linux: "RST sent to invalid SYN
        // we had let through"). Closed without a window check, since it
        // acknowledges a segment the windows never saw; the next SYN
        // reopens the 4-tuple.
        *ign = None;
        for p in &mut c.peers {
            p.state = P::TimeWait;
        }
        return Update::Valid { refresh: true };
    }
    window(c, seg, si, di, pol)
}

/// The SYN and SYN+ACK rows of Linux's state table on pf's per-direction
/// states; `None` means "on to the window check".
fn syn_step(
    c: &mut TcpConn,
    ign: &mut Option<IgnoredSyn>,
    seg: &TcpSeg,
    reply: bool,
) -> Option<Update> {
    use TcpPeerState as P;
    let (si, di) = if reply { (1, 0) } else { (0, 1) };
    let src = c.peers[si].state;
    let dst = c.peers[di].state;
    if seg.flags & ACK == 0 {
        if src >= P::FinWait2 && dst >= P::FinWait2 {
            // TIME_WAIT or reset: a SYN reopens the 4-tuple (RFC 1122
            // 4.2.2.13).
            for p in &mut c.peers {
                p.state = P::Closed;
            }
            return Some(Update::Reopen);
        }
        if !reply && dst < P::SynSent {
            // SYN_SENT: a retransmission. A later initial sequence number
            // (the client restarted) re-initialises the originator, as
            // Linux does (RFC 793: "it must only be sure to use sequence
            // numbers larger than those recently used").
            if seq_gt(seg.seq, c.peers[0].seqlo) {
                *c = new_conn(seg);
            }
            return Some(Update::ValidNew);
        }
        if src <= P::SynSent && dst == P::SynSent {
            // Simultaneous open (Linux SYN_SENT2): this SYN crosses the
            // other side's unacknowledged one, and is tracked like the
            // usual SYN+ACK would be. From the responder it is a reply.
            return None;
        }
        if reply {
            return Some(invalid_state(
                "SYN from the responder of an open connection",
            ));
        }
        // A SYN on an open connection (Linux IGNORE): either the client
        // lost its connection and starts a new one with the same ports,
        // or the SYN is stale. The server's answer decides: a challenge
        // ACK (RFC 5961) is tracked as part of the old connection, and the
        // client's reset to it closes that; a SYN+ACK for this SYN starts
        // the connection afresh (below); a reset to it closes the entry
        // (in `update`). So the SYN must get through, and be remembered.
        *ign = Some(IgnoredSyn {
            end: seg.seq.wrapping_add(seg.payload_len).wrapping_add(1),
            win: seg.win,
            wscale: seg.wscale,
            at: *c,
        });
        return Some(Update::Ignored);
    }
    // SYN+ACK.
    if dst == P::SynSent {
        // Answers the other side's unacknowledged SYN: the usual open, or
        // either half of a simultaneous one.
        return None;
    }
    if dst < P::SynSent {
        return Some(invalid_state("SYN+ACK from the side that sent the SYN"));
    }
    if let Some(g) = ign.filter(|g| reply && g.answered_by(c, seg.ack)) {
        // The server accepted the SYN we let through: the old connection
        // is gone at both ends. Start over from that SYN, then track this
        // SYN+ACK as its answer.
        let syn = TcpSeg {
            seq: g.end.wrapping_sub(1),
            ack: 0,
            win: g.win,
            flags: SYN,
            payload_len: 0,
            wscale: g.wscale,
        };
        *c = new_conn(&syn);
        *ign = None;
        return None;
    }
    // A late retransmission, or an answer to a SYN we never saw.
    *ign = None;
    Some(Update::Ignored)
}

/// pf's window check (OVS `tcp_conn_update`), with Linux's reset rules.
fn window(c: &mut TcpConn, seg: &TcpSeg, si: usize, di: usize, pol: TcpPolicy) -> Update {
    use TcpPeerState as P;
    let flags = seg.flags;
    let dst_maxack_set = c.maxack(di).is_some();
    let handshake_was_done = c.handshake_done();
    let [orig, resp] = &mut c.peers;
    let (src, dst) = if si == 1 { (resp, orig) } else { (orig, resp) };

    let (mut sws, mut dws) = (0u8, 0u8);
    if flags & SYN == 0 {
        if src.wscale & WSCALE_FLAG != 0 && dst.wscale & WSCALE_FLAG != 0 {
            sws = src.wscale & WSCALE_MASK;
            dws = dst.wscale & WSCALE_MASK;
        } else if src.wscale & WSCALE_UNKNOWN != 0 && dst.wscale & WSCALE_UNKNOWN != 0 {
            sws = TCP_MAX_WSCALE;
            dws = TCP_MAX_WSCALE;
        }
    }

    let mut win = u32::from(seg.win);
    let orig_seq = seg.seq;
    let mut seq = seg.seq;
    let mut ack = seg.ack;
    let mut end = seq.wrapping_add(seg.payload_len);
    if flags & SYN != 0 {
        end = end.wrapping_add(1);
    }
    if flags & FIN != 0 {
        end = end.wrapping_add(1);
    }
    let mut check_ackskew = true;

    // The first answer to a SYN we saw must acknowledge that SYN (and at
    // most the data it carried): RFC 9293 3.10.7.3, and Linux checks the
    // ack against what the other side sent. A SYN+ACK or RST+ACK with any
    // other ack is not this connection's: otherwise a blind reset with a
    // guessed ack would cross the firewall and close it. (`seqlo` is the
    // SYN's sequence number, `seqhi` one past its end.)
    if src.state < P::SynSent
        && dst.state == P::SynSent
        && flags & ACK != 0
        && dst.wscale & WSCALE_UNKNOWN == 0
        && !(seq_gt(seg.ack, dst.seqlo) && seq_geq(dst.seqhi, seg.ack))
    {
        return Update::Invalid(CtInvalidDetail::new(
            CtInvalidReason::OutOfWindow,
            "the answer to a SYN acknowledges something other than the SYN",
        ));
    }

    if src.state < P::SynSent {
        // First segment from this side (the SYN+ACK, usually).
        if flags & SYN != 0 && dst.wscale & WSCALE_FLAG != 0 {
            src.wscale = seg.wscale;
            if src.wscale & WSCALE_FLAG != 0 {
                sws = src.wscale & WSCALE_MASK;
                win = div_round_up(win, sws);
                dws = dst.wscale & WSCALE_MASK;
            } else {
                // The other side offered scaling, this one declined: the
                // other side's window was never scaled.
                let shift = dst.wscale & WSCALE_MASK;
                dst.max_win = (u32::from(dst.max_win) << shift).min(0xffff) as u16;
                dst.wscale = 0;
            }
        }
        src.seqlo = seq;
        src.state = P::SynSent;
        // Slide the window: seqhi was a guess (the "crappy stack check")
        // or we picked the connection up after its start.
        let reach = end.wrapping_add((u32::from(dst.max_win) << dws).max(1));
        if src.seqhi == 1 || seq_geq(reach, src.seqhi) {
            src.seqhi = reach;
            check_ackskew = false;
        }
        if win > u32::from(src.max_win) {
            src.max_win = win.min(0xffff) as u16;
        }
    }

    let has_ack = flags & ACK != 0;
    if !has_ack {
        // Nothing acknowledged: let it through the skew check.
        ack = dst.seqlo;
    } else if ack == 0 && flags & RST != 0 {
        // Broken stacks send RST+ACK with ack 0.
        ack = dst.seqlo;
    }
    let acked = (has_ack && ack == seg.ack).then_some(ack);

    let is_rst = flags & RST != 0;
    if seq == end && !is_rst {
        // No data: ease the sequence checks. Never for a reset, which is
        // judged by its sequence number alone (Linux `tcp_in_window`).
        seq = src.seqlo;
        end = seq;
    }

    let ackskew: i64 = if check_ackskew {
        i64::from(dst.seqlo.wrapping_sub(ack) as i32)
    } else {
        0
    };
    let dst_win = u32::from(dst.max_win) << dws;
    // The FIN occupies a sequence number but no buffer space: a final
    // segment that fills the receiver's window exactly and carries FIN is
    // acceptable (RFC 9293 checks the first octet; Linux conntrack the
    // start). pf and Open vSwitch count the FIN here and drop such a
    // segment, stalling the sender until it retransmits.
    let data_end = end.wrapping_sub(u32::from(flags & FIN != 0));
    // Linux also refuses an acknowledgement of data the other side never
    // sent (pf and Open vSwitch tolerate up to 66,535 bytes of that skew).
    // `seqlo` is one short for a SYN seen only when the connection was
    // created, hence the `+ 1`. A connection picked up mid-stream does
    // not know what the other side sent before, so it is not checked.
    let acks_sent_data = !has_ack
        || dst.state < P::SynSent
        || dst.wscale & WSCALE_UNKNOWN != 0
        || seq_geq(dst.seqlo.wrapping_add(1), ack);
    let in_window = seq_geq(src.seqhi, data_end)
        && seq_geq(seq, src.seqlo.wrapping_sub(dst_win))
        && ackskew >= -MAX_ACK_WINDOW
        && ackskew <= (MAX_ACK_WINDOW << sws)
        && acks_sent_data;
    let accept = in_window
        || !pol.seq_check
        // Linux be_liberal: only out-of-window RSTs are invalid.
        || (pol.liberal && !is_rst);

    // Which resets close the connection (Linux `nf_conntrack_tcp_packet`,
    // new state CLOSE). A reset below the highest acknowledgement the
    // other side sent is stale: invalid. One at exactly that number is
    // what a host that lost the connection sends (RFC 9293 3.10.7.1: the
    // reset takes the incoming segment's ACK as its sequence number): it
    // closes. So does one right after this side's last segment (an abort
    // that follows its data). Any other reset inside the window of an
    // established connection passes but closes nothing: the endpoint
    // answers it with a challenge ACK (RFC 5961 section 3) and a genuine
    // peer then resets at the exact number.
    //
    // Once either side has sent a FIN the check is skipped, as Linux skips
    // it for a connection it could already drop early (`FIN_WAIT` to
    // `CLOSE`): a host that closed its socket answers each segment still
    // in flight with a reset at that segment's (older) acknowledgement,
    // so resets below `maxack` are the normal end of such a connection,
    // not an attack on it.
    let closing = src.state >= P::Closing || dst.state >= P::Closing;
    let mut rst_closes = true;
    if is_rst && in_window && pol.seq_check && dst_maxack_set && !closing {
        let maxack = dst.maxack;
        // `summary() == Established`, from the two states at hand.
        let open = |s: P| (P::Established..P::Closing).contains(&s);
        let established = open(src.state) && open(dst.state);
        if seq_gt(maxack, orig_seq) {
            return Update::Invalid(CtInvalidDetail::new(
                CtInvalidReason::OutOfWindow,
                "RST below the highest acknowledgement the other side sent",
            ));
        }
        if established && orig_seq != maxack && orig_seq != src.seqlo {
            rst_closes = false;
        }
    }

    let slide = |src: &mut TcpPeer, dst: &mut TcpPeer| {
        if u32::from(src.max_win) < win {
            src.max_win = win.min(0xffff) as u16;
        }
        if seq_gt(end, src.seqlo) {
            src.seqlo = end;
        }
        let scaled = win << sws;
        if seq_geq(ack.wrapping_add(scaled), dst.seqhi) {
            dst.seqhi = ack.wrapping_add(scaled.max(1));
        }
    };

    let result = if accept {
        slide(src, dst);
        if flags & SYN != 0 && src.state < P::SynSent {
            src.state = P::SynSent;
        }
        if flags & FIN != 0 && src.state < P::Closing {
            src.state = P::Closing;
        }
        if has_ack {
            if dst.state == P::SynSent {
                dst.state = P::Established;
            } else if dst.state == P::Closing {
                dst.state = P::FinWait2;
            }
        }
        if is_rst && rst_closes {
            src.state = P::TimeWait;
            dst.state = P::TimeWait;
        }
        Update::Valid { refresh: true }
    } else if (dst.state < P::SynSent || dst.state >= P::FinWait2 || src.state >= P::FinWait2)
        && seq_geq(src.seqhi.wrapping_add(MAX_ACK_WINDOW as u32), end)
        && seq_geq(seq, src.seqlo.wrapping_sub(MAX_ACK_WINDOW as u32))
    {
        // pf's loose path: shotgunned SYNs, a connection picked up after a
        // flush, stray FINs after close. Accepted without re-arming the
        // timeout, so a flood cannot keep an entry alive.
        slide(src, dst);
        if flags & FIN != 0 && src.state < P::Closing {
            src.state = P::Closing;
        }
        if is_rst {
            src.state = P::TimeWait;
            dst.state = P::TimeWait;
        }
        Update::Valid { refresh: false }
    } else {
        return Update::Invalid(CtInvalidDetail::new(
            CtInvalidReason::OutOfWindow,
            if !seq_geq(src.seqhi, data_end) {
                "segment ends beyond the receiver's window"
            } else if !seq_geq(seq, src.seqlo.wrapping_sub(dst_win)) {
                "segment starts more than a window behind"
            } else {
                "acknowledges data outside the window"
            },
        ));
    };
    // From here on the segment is part of the connection (Linux sets
    // `last_index` and `td_maxack` for in-window segments only).
    if let Some(a) = acked {
        c.note_ack(si, a, handshake_was_done);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seg(seq: u32, ack: u32, flags: u16, len: u32) -> TcpSeg {
        TcpSeg {
            seq,
            ack,
            win: 65535,
            flags,
            payload_len: len,
            wscale: 0,
        }
    }

    const STRICT: TcpPolicy = TcpPolicy {
        liberal: false,
        seq_check: true,
    };

    #[test]
    fn flags() {
        assert!(invalid_flags(SYN | RST).is_some());
        assert!(invalid_flags(SYN | FIN).is_some());
        assert!(invalid_flags(0).is_some());
        assert!(invalid_flags(FIN).is_some());
        assert!(invalid_flags(PSH | RST).is_some());
        assert!(invalid_flags(SYN).is_none());
        assert!(invalid_flags(RST).is_none());
        assert!(invalid_flags(ACK | FIN).is_none());
    }

    #[test]
    fn handshake_and_close_summaries() {
        let mut c = new_conn(&seg(100, 0, SYN, 0));
        assert_eq!(summary(&c), TcpState::SynSent);
        let r = update(
            &mut c,
            &mut None,
            &seg(500, 101, SYN | ACK, 0),
            true,
            STRICT,
        );
        assert_eq!(r, Update::Valid { refresh: true });
        assert_eq!(summary(&c), TcpState::SynRecv);
        update(&mut c, &mut None, &seg(101, 501, ACK, 0), false, STRICT);
        assert_eq!(summary(&c), TcpState::Established);
        update(
            &mut c,
            &mut None,
            &seg(101, 501, ACK | FIN, 0),
            false,
            STRICT,
        );
        assert_eq!(summary(&c), TcpState::FinWait);
        update(&mut c, &mut None, &seg(501, 102, ACK, 0), true, STRICT);
        assert_eq!(summary(&c), TcpState::CloseWait);
        update(
            &mut c,
            &mut None,
            &seg(501, 102, ACK | FIN, 0),
            true,
            STRICT,
        );
        assert_eq!(summary(&c), TcpState::LastAck);
        update(&mut c, &mut None, &seg(102, 502, ACK, 0), false, STRICT);
        assert_eq!(summary(&c), TcpState::TimeWait);
        assert_eq!(
            update(&mut c, &mut None, &seg(9000, 0, SYN, 0), false, STRICT),
            Update::Reopen
        );
    }

    /// The answer to a SYN must acknowledge the SYN: a SYN+ACK or RST+ACK
    /// with another ack is invalid (a blind reset must not close the
    /// connection), and the right one then completes the handshake.
    #[test]
    fn the_answer_to_a_syn_must_acknowledge_it() {
        for bad in [
            seg(500, 7777, SYN | ACK, 0),
            seg(0, 7777, RST | ACK, 0),
            seg(0, 0, RST | ACK, 0),
        ] {
            let mut c = new_conn(&seg(1000, 0, SYN, 0));
            assert!(
                matches!(
                    update(&mut c, &mut None, &bad, true, STRICT),
                    Update::Invalid(_)
                ),
                "{bad:?}"
            );
            assert_eq!(summary(&c), TcpState::SynSent, "nothing changed");
            let good = seg(500, 1001, SYN | ACK, 0);
            assert_eq!(
                update(&mut c, &mut None, &good, true, STRICT),
                Update::Valid { refresh: true }
            );
            assert_eq!(summary(&c), TcpState::SynRecv);
        }
        // A reset acknowledging the SYN closes it; so does a SYN+ACK that
        // also acknowledges data sent with the SYN (TCP Fast Open).
        let mut c = new_conn(&seg(1000, 0, SYN, 0));
        assert_eq!(
            update(&mut c, &mut None, &seg(0, 1001, RST | ACK, 0), true, STRICT),
            Update::Valid { refresh: true }
        );
        assert_eq!(summary(&c), TcpState::Closed);
        let mut c = new_conn(&seg(1000, 0, SYN, 100));
        assert_eq!(
            update(
                &mut c,
                &mut None,
                &seg(500, 1101, SYN | ACK, 0),
                true,
                STRICT
            ),
            Update::Valid { refresh: true }
        );
        update(&mut c, &mut None, &seg(1101, 501, ACK, 0), false, STRICT);
        let data = seg(501, 1101, ACK, 10);
        assert_eq!(
            update(&mut c, &mut None, &data, true, STRICT),
            Update::Valid { refresh: true }
        );
        // Acknowledging data the other side never sent: invalid, as Linux.
        let beyond = seg(511, 2101, ACK, 0);
        assert!(matches!(
            update(&mut c, &mut None, &beyond, true, STRICT),
            Update::Invalid(_)
        ));
    }

    /// After both FINs, the host that closed answers segments still in
    /// flight with resets at their acknowledgement, below the highest one
    /// the other side sent (its FIN's end): the end of the connection, not
    /// an invalid segment (Linux skips the check once a FIN was seen). On
    /// an open connection the same reset stays invalid.
    #[test]
    fn resets_behind_the_acknowledgement_after_the_fins_pass() {
        let open = || {
            let mut c = new_conn(&seg(100, 0, SYN, 0));
            update(
                &mut c,
                &mut None,
                &seg(500, 101, SYN | ACK, 0),
                true,
                STRICT,
            );
            update(&mut c, &mut None, &seg(101, 501, ACK, 0), false, STRICT);
            update(&mut c, &mut None, &seg(101, 501, ACK, 1000), false, STRICT);
            update(&mut c, &mut None, &seg(501, 1101, ACK, 0), true, STRICT);
            c
        };
        // On an open connection, a server reset below the client's
        // highest acknowledgement (501) is stale: invalid.
        let mut c = open();
        let stale = seg(500, 0, RST, 0);
        assert!(matches!(
            update(&mut c, &mut None, &stale, true, STRICT),
            Update::Invalid(_)
        ));
        // The server closes (FIN at 501), the client acknowledges it (502)
        // and closes too; then a reset at 501, answering a client segment
        // sent before the FIN arrived, passes and the entry is closed.
        let mut c = open();
        update(
            &mut c,
            &mut None,
            &seg(501, 1101, ACK | FIN, 0),
            true,
            STRICT,
        );
        update(
            &mut c,
            &mut None,
            &seg(1101, 502, ACK | FIN, 0),
            false,
            STRICT,
        );
        assert_eq!(c.maxack(0), Some(502));
        let r = update(&mut c, &mut None, &seg(501, 0, RST, 0), true, STRICT);
        assert_eq!(r, Update::Valid { refresh: true });
        assert_eq!(summary(&c), TcpState::Closed);
    }

    /// A host that lost the connection resets at the acknowledgement the
    /// other side sent, whatever half of the sequence space it lies in
    /// (the server's ISN here puts it in the upper half).
    #[test]
    fn reset_at_an_acknowledgement_in_the_upper_half_closes() {
        for isn in [0x0000_1000u32, 0x8000_1000, 0xea94_5000] {
            let mut c = new_conn(&seg(100, 0, SYN, 0));
            let syn_ack = seg(isn, 101, SYN | ACK, 0);
            update(&mut c, &mut None, &syn_ack, true, STRICT);
            let srv = isn.wrapping_add(1);
            update(&mut c, &mut None, &seg(101, srv, ACK, 0), false, STRICT);
            update(
                &mut c,
                &mut None,
                &seg(101, srv, ACK | PSH, 4),
                false,
                STRICT,
            );
            let pong = seg(srv, 105, ACK | PSH, 9);
            update(&mut c, &mut None, &pong, true, STRICT);
            let srv = srv.wrapping_add(9);
            update(
                &mut c,
                &mut None,
                &seg(105, srv, ACK | PSH, 4),
                false,
                STRICT,
            );
            assert_eq!(c.maxack(0), Some(srv), "isn {isn:#x}");
            // The rebooted server answers with RST, sequence = that ACK.
            let r = update(&mut c, &mut None, &seg(srv, 0, RST, 0), true, STRICT);
            assert_eq!(r, Update::Valid { refresh: true }, "isn {isn:#x}");
            assert_eq!(summary(&c), TcpState::Closed, "isn {isn:#x}");
        }
    }
}
