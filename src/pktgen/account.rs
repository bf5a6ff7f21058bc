//! What the receiver counts.
//!
//! Every received frame goes through [`Account::frame`]: without a stamp
//! (or with a flow id the run does not have) it is foreign and only
//! counted as such; otherwise its 32-bit sequence number is widened to 64
//! bits against the highest seen so far (valid while reordering spans less
//! than 2^31 packets), compared with its flow's highest (lower: reordered),
//! and its latency goes into the histogram. Loss is what was sent minus
//! what arrived, known only at the end ([`Account::lost`]).
//!
//! Per-flow state is one u64 per flow, allocated once at the start (8 MB
//! for a million flows): nothing is allocated per packet.

use super::frame::{parse_stamp, Stamp};
use super::hist::Histogram;

const NONE: u64 = u64::MAX;

/// The receiver's counters for one run.
#[derive(Debug, Clone)]
pub struct Account {
    flow_max: Vec<u64>,
    max_seq: Option<u64>,
    /// Frames of ours received.
    pub packets: u64,
    /// Their bytes, with FCS (the frame sizes the sender counted).
    pub bytes: u64,
    /// Frames whose sequence number was lower than their flow's highest.
    pub reordered: u64,
    /// Frames that were not ours (no stamp, or an unknown flow).
    pub foreign: u64,
    /// One-way latency of our frames, nanoseconds.
    pub latency: Histogram,
}

impl Account {
    /// Counters for a run of `flows` flows.
    pub fn new(flows: u32) -> Account {
        Account {
            flow_max: vec![NONE; flows as usize],
            max_seq: None,
            packets: 0,
            bytes: 0,
            reordered: 0,
            foreign: 0,
            latency: Histogram::new(),
        }
    }

    /// Widens a 32-bit sequence number to the 64-bit one nearest to the
    /// highest seen.
    fn widen(&self, seq: u32) -> u64 {
        match self.max_seq {
            None => u64::from(seq),
            Some(m) => {
                let delta = seq.wrapping_sub(m as u32) as i32;
                m.checked_add_signed(i64::from(delta))
                    .unwrap_or(u64::from(seq))
            }
        }
    }

    /// Counts one received frame (bytes as received, without FCS) that
    /// arrived at `now_ns` (low 32 bits of the run's clock are compared
    /// with the stamp's).
    pub fn frame(&mut self, frame: &[u8], wire_len: usize, now_ns: u64) {
        match parse_stamp(frame) {
            Some(s) => self.stamped(s, wire_len, now_ns),
            None => self.foreign += 1,
        }
    }

    /// Counts a frame whose stamp was already parsed.
    pub fn stamped(&mut self, s: Stamp, wire_len: usize, now_ns: u64) {
        let Some(slot) = self.flow_max.get(s.flow as usize).copied() else {
            self.foreign += 1;
            return;
        };
        let seq = self.widen(s.seq);
        if self.max_seq.is_none_or(|m| seq > m) {
            self.max_seq = Some(seq);
        }
        if slot != NONE && seq < slot {
            self.reordered += 1;
        } else {
            self.flow_max[s.flow as usize] = seq;
        }
        self.packets += 1;
        self.bytes += (wire_len + super::frame::FCS_LEN) as u64;
        self.latency
            .record(u64::from((now_ns as u32).wrapping_sub(s.time_ns)));
    }

    /// Frames sent but not received (0 when more arrived than were sent,
    /// e.g. duplicates).
    pub fn lost(&self, sent: u64) -> u64 {
        sent.saturating_sub(self.packets)
    }
}

#[cfg(test)]
mod tests {
    use super::super::frame::{FrameSpec, Ring};
    use super::*;

    fn st(seq: u32, flow: u32, t: u32) -> Stamp {
        Stamp {
            seq,
            time_ns: t,
            flow,
        }
    }

    #[test]
    fn counts_latency_loss_and_reordering() {
        let mut a = Account::new(2);
        a.stamped(st(0, 0, 100), 60, 1_100);
        a.stamped(st(2, 0, 200), 60, 1_200);
        a.stamped(st(1, 0, 150), 60, 1_300); // late within flow 0
        a.stamped(st(3, 1, 300), 60, 1_300);
        a.stamped(st(5, 1, 300), 60, 1_300);
        a.stamped(st(4, 0, 300), 60, 1_300); // in order for flow 0
        assert_eq!(a.packets, 6);
        assert_eq!(a.bytes, 6 * 64);
        assert_eq!(a.reordered, 1);
        assert_eq!(a.lost(10), 4);
        assert_eq!(a.lost(3), 0);
        assert_eq!(a.latency.min(), Some(1_000));
        assert_eq!(a.latency.max(), Some(1_150));
    }

    #[test]
    fn sequence_numbers_wrap() {
        let mut a = Account::new(1);
        a.stamped(st(u32::MAX - 1, 0, 0), 60, 0);
        a.stamped(st(u32::MAX, 0, 0), 60, 0);
        a.stamped(st(0, 0, 0), 60, 0); // 2^32: later, not reordered
        a.stamped(st(1, 0, 0), 60, 0);
        assert_eq!(a.reordered, 0);
        a.stamped(st(u32::MAX, 0, 0), 60, 0); // really late
        assert_eq!(a.reordered, 1);
    }

    #[test]
    fn time_wraps() {
        let mut a = Account::new(1);
        a.stamped(st(0, 0, u32::MAX - 9), 60, 1u64 << 32 | 20);
        assert_eq!(a.latency.max(), Some(30));
    }

    #[test]
    fn foreign_frames_are_counted_apart() {
        let mut a = Account::new(4);
        a.frame(&[0u8; 60], 60, 0);
        let spec = FrameSpec {
            flows: 10,
            ..FrameSpec::default()
        };
        let mut r = Ring::new(&spec).unwrap();
        let f = r.stamp(0, st(0, 9, 0)).to_vec(); // flow 9 of a 10-flow run
        a.frame(&f, f.len(), 0);
        let f = r.stamp(1, st(1, 3, 0)).to_vec();
        a.frame(&f, f.len(), 10);
        assert_eq!(a.foreign, 2);
        assert_eq!(a.packets, 1);
        assert_eq!(a.latency.max(), Some(10));
    }
}
