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
//! ([`super::parse::TcpSeg::payload_len`]): a padded bare ACK carries
//! nothing, so it never moves `seqlo`.
//!
//! The per-direction states use OVS's `ct_dpif_tcp_state` numbering (pf
//! only ever sets CLOSED, SYN_SENT, ESTABLISHED, CLOSING, FIN_WAIT_2 and
//! TIME_WAIT). The connection's summary state ([`TcpState`], what
//! `dump-conntrack` prints) is derived from both, with Linux's names.

use super::parse::{TcpSeg, TCP_MAX_WSCALE, WSCALE_FLAG, WSCALE_MASK, WSCALE_UNKNOWN};
use super::{CtInvalidDetail, CtInvalidReason, TimeoutKind};
use crate::wire::tcp::{ACK, FIN, PSH, RST, SYN, URG};

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

/// pf's per-direction window state (12 bytes).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct TcpPeer {
    /// Highest sequence number sent (+ SYN/FIN).
    pub seqlo: u32,
    /// Highest sequence number the other side will accept (its ack +
    /// window); 1 means "not known yet".
    pub seqhi: u32,
    /// Largest window advertised, unscaled.
    pub max_win: u16,
    /// Window scale in pf encoding.
    pub wscale: u8,
    pub state: TcpPeerState,
}

/// Both directions: `[originator, responder]`.
pub(crate) type TcpConn = [TcpPeer; 2];

/// What a segment did to a connection (OVS `ct_update_res`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Update {
    /// Part of the connection: `+est`. `refresh` says whether the timeout
    /// is re-armed (pf does not re-arm on the loose path).
    Valid {
        refresh: bool,
    },
    /// Still opening (retransmitted SYN): `+new`, timeout re-armed.
    ValidNew,
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

/// OVS `tcp_valid_new`: may this segment create a connection?
pub(crate) fn valid_new(flags: u16) -> Result<(), CtInvalidDetail> {
    if let Some(d) = invalid_flags(flags) {
        return Err(CtInvalidDetail::new(CtInvalidReason::BadTcpFlags, d));
    }
    // A SYN+ACK with no connection is half of someone else's handshake.
    if flags & SYN != 0 && flags & ACK != 0 {
        return Err(CtInvalidDetail::new(
            CtInvalidReason::InvalidNew,
            "SYN+ACK without a connection",
        ));
    }
    Ok(())
}

/// OVS `tcp_new_conn`: the state after the first segment.
pub(crate) fn new_conn(seg: &TcpSeg) -> TcpConn {
    let mut src = TcpPeer {
        seqlo: seg.seq,
        seqhi: seg.seq.wrapping_add(seg.payload_len).wrapping_add(1),
        max_win: seg.win.max(1),
        wscale: 0,
        state: TcpPeerState::SynSent,
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
    [src, dst]
}

#[inline]
fn div_round_up(v: u32, shift: u8) -> u32 {
    let d = 1u32 << shift;
    v.div_ceil(d)
}

/// The summary state of a connection.
pub(crate) fn summary(c: &TcpConn) -> TcpState {
    use TcpPeerState as P;
    let (o, r) = (c[0].state, c[1].state);
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

/// OVS `tcp_conn_update`: runs `seg`, sent by the originator (`reply` =
/// false) or the responder, through the connection.
pub(crate) fn update(c: &mut TcpConn, seg: &TcpSeg, reply: bool, pol: TcpPolicy) -> Update {
    use TcpPeerState as P;
    let flags = seg.flags;
    if let Some(d) = invalid_flags(flags) {
        return Update::Invalid(CtInvalidDetail::new(CtInvalidReason::BadTcpFlags, d));
    }
    let [orig, resp] = c;
    let (src, dst) = if reply { (resp, orig) } else { (orig, resp) };

    if flags & (SYN | ACK) == SYN {
        if dst.state >= P::FinWait2 && src.state >= P::FinWait2 {
            src.state = P::Closed;
            dst.state = P::Closed;
            return Update::Reopen;
        } else if src.state <= P::SynSent {
            src.state = P::SynSent;
            return Update::ValidNew;
        }
    }

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

    if flags & ACK == 0 {
        // Nothing acknowledged: let it through the skew check.
        ack = dst.seqlo;
    } else if ack == 0 && flags & (ACK | RST) == (ACK | RST) {
        // Broken stacks send RST+ACK with ack 0.
        ack = dst.seqlo;
    }

    if seq == end {
        // No data: ease the sequence checks.
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
    let in_window = seq_geq(src.seqhi, data_end)
        && seq_geq(seq, src.seqlo.wrapping_sub(dst_win))
        && ackskew >= -MAX_ACK_WINDOW
        && ackskew <= (MAX_ACK_WINDOW << sws);
    // Resets must hit the expected sequence number (or one off).
    let rst_ok = flags & RST == 0
        || orig_seq == src.seqlo
        || orig_seq == src.seqlo.wrapping_add(1)
        || orig_seq.wrapping_add(1) == src.seqlo;
    let is_rst = flags & RST != 0;
    let accept = (in_window && rst_ok)
        || !pol.seq_check
        // Linux be_liberal: only out-of-window RSTs are invalid.
        || (pol.liberal && !is_rst);

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

    if accept {
        slide(src, dst);
        if flags & SYN != 0 && src.state < P::SynSent {
            src.state = P::SynSent;
        }
        if flags & FIN != 0 && src.state < P::Closing {
            src.state = P::Closing;
        }
        if flags & ACK != 0 {
            if dst.state == P::SynSent {
                dst.state = P::Established;
            } else if dst.state == P::Closing {
                dst.state = P::FinWait2;
            }
        }
        if is_rst {
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
        Update::Invalid(CtInvalidDetail::new(
            CtInvalidReason::OutOfWindow,
            if is_rst && in_window {
                "RST sequence number is not the expected one"
            } else if !seq_geq(src.seqhi, data_end) {
                "segment ends beyond the receiver's window"
            } else if !seq_geq(seq, src.seqlo.wrapping_sub(dst_win)) {
                "segment starts more than a window behind"
            } else {
                "acknowledges data outside the window"
            },
        ))
    }
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
        let r = update(&mut c, &seg(500, 101, SYN | ACK, 0), true, STRICT);
        assert_eq!(r, Update::Valid { refresh: true });
        assert_eq!(summary(&c), TcpState::SynRecv);
        update(&mut c, &seg(101, 501, ACK, 0), false, STRICT);
        assert_eq!(summary(&c), TcpState::Established);
        update(&mut c, &seg(101, 501, ACK | FIN, 0), false, STRICT);
        assert_eq!(summary(&c), TcpState::FinWait);
        update(&mut c, &seg(501, 102, ACK, 0), true, STRICT);
        assert_eq!(summary(&c), TcpState::CloseWait);
        update(&mut c, &seg(501, 102, ACK | FIN, 0), true, STRICT);
        assert_eq!(summary(&c), TcpState::LastAck);
        update(&mut c, &seg(102, 502, ACK, 0), false, STRICT);
        assert_eq!(summary(&c), TcpState::TimeWait);
        assert_eq!(
            update(&mut c, &seg(9000, 0, SYN, 0), false, STRICT),
            Update::Reopen
        );
    }
}
