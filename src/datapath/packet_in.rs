//! Packets for the controller: what a `controller` action hands the control
//! plane (a PACKET_IN to be), rate limited and queued without blocking.
//!
//! A VM that floods the controller path must not starve forwarding or the
//! control plane: the datapath spends at most a token-bucket's worth of
//! copies a second on packet-ins (Open vSwitch's `controller_rate_limit`
//! and `controller_burst_limit`), hands them over through a bounded queue,
//! and counts every packet-in it does not deliver under its own drop reason
//! (`controller_rate_limited`, `controller_queue_full`). Sans-IO: `now` is
//! a parameter.

use crate::flow::{FlowKey, PacketInReason};
use crate::ofproto::ToController;
use crossbeam_channel::{Receiver, Sender, TrySendError};
use std::time::Instant;

/// Packet-ins a second, per bridge, by default.
pub const DEFAULT_RATE: u32 = 1000;
/// Packet-ins in a burst above the rate, by default.
pub const DEFAULT_BURST: u32 = 250;
/// Packet-ins waiting for the control plane, at most.
pub const QUEUE: usize = 1024;

/// A packet for the controllers, with what the tables knew of it.
#[derive(Debug, Clone)]
pub struct PacketIn {
    /// The packet (at most the action's `max_len` bytes of it), as modified
    /// by the actions before the `controller` action.
    pub data: Vec<u8>,
    /// Its whole length.
    pub total_len: usize,
    /// Why it was sent.
    pub reason: PacketInReason,
    /// The table of the flow that sent it.
    pub table_id: u8,
    /// That flow's cookie.
    pub cookie: u64,
    /// Controller connection id it is for (0: the default).
    pub controller_id: u16,
    /// The action's userdata.
    pub userdata: Vec<u8>,
    /// The packet's metadata at the action: in_port, registers, tunnel,
    /// conntrack fields (PACKET_IN's match).
    pub key: FlowKey,
}

/// Why a packet-in was not delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Refused {
    /// Over the rate limit.
    RateLimited,
    /// The control plane is behind: the queue is full.
    QueueFull,
    /// No controller connection was there to take it.
    NoController,
}

/// A token bucket with a full bucket to start with.
#[derive(Debug, Clone)]
struct Bucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Option<Instant>,
}

impl Bucket {
    fn new(rate: u32, burst: u32) -> Bucket {
        Bucket {
            rate: f64::from(rate),
            burst: f64::from(burst.max(1)),
            tokens: f64::from(burst.max(1)),
            last: None,
        }
    }

    fn take(&mut self, now: Instant) -> bool {
        if let Some(l) = self.last {
            let dt = now.saturating_duration_since(l).as_secs_f64();
            self.tokens = (self.tokens + dt * self.rate).min(self.burst);
        }
        self.last = Some(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// The datapath's end of the packet-in path.
#[derive(Debug)]
pub struct Sink {
    tx: Sender<PacketIn>,
    bucket: Bucket,
}

impl Sink {
    /// A sink with the default limits and the control plane's end.
    pub fn new() -> (Sink, Receiver<PacketIn>) {
        Self::with_limits(DEFAULT_RATE, DEFAULT_BURST)
    }

    /// A sink allowing `rate` packet-ins a second with bursts of `burst`.
    pub fn with_limits(rate: u32, burst: u32) -> (Sink, Receiver<PacketIn>) {
        let (tx, rx) = crossbeam_channel::bounded(QUEUE);
        (
            Sink {
                tx,
                bucket: Bucket::new(rate, burst),
            },
            rx,
        )
    }

    /// Another sink onto the same queue, for another datapath worker. Its
    /// rate limit is its own: each worker may send the configured rate.
    pub fn another(&self) -> Sink {
        Sink {
            tx: self.tx.clone(),
            bucket: self.bucket.clone(),
        }
    }

    /// Offers `frame` to the controllers as `c` says. The copy is made only
    /// when the rate allows it.
    pub fn offer(&mut self, frame: &[u8], c: &ToController, now: Instant) -> Result<(), Refused> {
        if !self.bucket.take(now) {
            return Err(Refused::RateLimited);
        }
        let n = frame.len().min(usize::from(c.action.max_len));
        let pi = PacketIn {
            data: frame[..n].to_vec(),
            total_len: frame.len(),
            reason: c.action.reason,
            table_id: c.table_id,
            cookie: c.cookie,
            controller_id: c.action.controller_id,
            userdata: c.action.userdata.clone(),
            key: c.key,
        };
        match self.tx.try_send(pi) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                Err(Refused::QueueFull)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::ControllerAction;
    use std::time::Duration;

    fn to_ctl(max_len: u16) -> ToController {
        ToController {
            action: ControllerAction {
                max_len,
                userdata: vec![1, 2],
                ..Default::default()
            },
            table_id: 3,
            cookie: 0x2a,
            key: FlowKey::default(),
        }
    }

    #[test]
    fn rate_limited_then_refilled_and_truncated_to_max_len() {
        let (mut s, rx) = Sink::with_limits(10, 2);
        let t = Instant::now();
        let c = to_ctl(4);
        assert_eq!(s.offer(&[9; 10], &c, t), Ok(()));
        assert_eq!(s.offer(&[9; 10], &c, t), Ok(()));
        assert_eq!(s.offer(&[9; 10], &c, t), Err(Refused::RateLimited));
        // 100 ms at 10/s buys one more.
        assert_eq!(
            s.offer(&[9; 10], &c, t + Duration::from_millis(100)),
            Ok(())
        );
        let pi = rx.try_recv().unwrap();
        assert_eq!((pi.data.len(), pi.total_len), (4, 10));
        assert_eq!((pi.table_id, pi.cookie, pi.userdata), (3, 0x2a, vec![1, 2]));
    }

    #[test]
    fn a_full_queue_refuses_without_blocking() {
        let (mut s, _rx) = Sink::with_limits(u32::MAX, u32::MAX);
        let t = Instant::now();
        let c = to_ctl(u16::MAX);
        for _ in 0..QUEUE {
            assert_eq!(s.offer(&[0; 60], &c, t), Ok(()));
        }
        assert_eq!(s.offer(&[0; 60], &c, t), Err(Refused::QueueFull));
    }
}
