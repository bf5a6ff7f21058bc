//! Port life and counters shared by the kernel-device ports (TAP, AF_PACKET).
//!
//! [`LinkLife`] is the down/up state machine: a device that disappears makes
//! the port down, counted and logged once; recovery attempts run from
//! `housekeeping()` with exponential backoff (never from the packet path,
//! never in a busy loop); success logs once more. [`Counters`] are the
//! port's own counters: we never read the kernel's by name, because the
//! device may live in another network namespace. [`Device`] holds the
//! port's fd across down and up.

use super::{LinkState, PortDrop, PortStats};
use std::fmt::Display;
use std::time::{Duration, Instant};

/// First retry delay after a device disappears.
pub const BACKOFF_MIN: Duration = Duration::from_millis(100);
/// Longest retry delay.
pub const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// How often an up port checks that its device still exists when no
/// traffic told it otherwise.
pub const PROBE_INTERVAL: Duration = Duration::from_secs(1);

/// Down/up state with logging and retry backoff.
#[derive(Debug)]
pub struct LinkLife {
    port: String,
    state: LinkState,
    downs: u64,
    backoff: Duration,
    next_try: Instant,
    next_probe: Instant,
    /// Transitions are logged at debug level only (another queue of a
    /// device whose primary queue logs the device's news).
    quiet: bool,
}

impl LinkLife {
    /// An up link for port `port`.
    pub fn new(port: &str) -> LinkLife {
        let now = Instant::now();
        LinkLife {
            port: port.to_string(),
            state: LinkState::Up,
            downs: 0,
            backoff: BACKOFF_MIN,
            next_try: now,
            next_probe: now + PROBE_INTERVAL,
            quiet: false,
        }
    }

    /// As [`LinkLife::new`], for an extra queue of a device: its
    /// transitions are logged at debug level, so the operator reads of the
    /// device going down once, from its primary queue.
    pub fn quiet(port: &str) -> LinkLife {
        LinkLife {
            quiet: true,
            ..LinkLife::new(port)
        }
    }

    /// Current state.
    pub fn state(&self) -> LinkState {
        self.state
    }

    /// True when up.
    pub fn is_up(&self) -> bool {
        self.state == LinkState::Up
    }

    /// How many times the link went down.
    pub fn downs(&self) -> u64 {
        self.downs
    }

    /// Marks the link down (logged and counted on the transition only).
    pub fn down(&mut self, why: impl Display) {
        if self.state == LinkState::Down {
            return;
        }
        self.state = LinkState::Down;
        self.downs += 1;
        self.backoff = BACKOFF_MIN;
        self.next_try = Instant::now() + BACKOFF_MIN;
        if self.quiet {
            tracing::debug!(port = %self.port, "queue down: {why}");
        } else {
            tracing::warn!(port = %self.port, "link down: {why}");
        }
    }

    /// Marks the link up (logged on the transition only).
    pub fn up(&mut self, how: impl Display) {
        if self.state == LinkState::Up {
            return;
        }
        self.state = LinkState::Up;
        self.backoff = BACKOFF_MIN;
        self.next_probe = Instant::now() + PROBE_INTERVAL;
        if self.quiet {
            tracing::debug!(port = %self.port, "queue up: {how}");
        } else {
            tracing::info!(port = %self.port, "link up: {how}");
        }
    }

    /// True when a down link should try to recover now.
    pub fn retry_due(&self, now: Instant) -> bool {
        self.state == LinkState::Down && now >= self.next_try
    }

    /// Records a failed recovery attempt: the next one waits twice as long.
    pub fn retry_failed(&mut self, now: Instant, why: impl Display) {
        tracing::debug!(port = %self.port, "recovery failed: {why}");
        self.backoff = (self.backoff * 2).min(BACKOFF_MAX);
        self.next_try = now + self.backoff;
    }

    /// True when an up link should check its device now (and schedules the
    /// next check).
    pub fn probe_due(&mut self, now: Instant) -> bool {
        if self.state == LinkState::Up && now >= self.next_probe {
            self.next_probe = now + PROBE_INTERVAL;
            true
        } else {
            false
        }
    }
}

/// A kernel-device port's handle (a TAP fd, a packet socket) across down
/// and up. A lost handle stays open, unused, until its replacement is
/// open, so the replacement never gets the old fd number: the datapath's
/// poller skips a (token, fd) pair it already has, and would never
/// register a new file behind a reused number.
#[derive(Debug)]
pub struct Device<T> {
    live: Option<T>,
    dead: Option<T>,
}

impl<T> Device<T> {
    /// A slot holding `live` (or nothing: a port that starts down).
    pub fn new(live: Option<T>) -> Device<T> {
        Device { live, dead: None }
    }

    /// The working handle, if any.
    pub fn get(&self) -> Option<&T> {
        self.live.as_ref()
    }

    /// The working handle, mutably.
    pub fn get_mut(&mut self) -> Option<&mut T> {
        self.live.as_mut()
    }

    /// The device is gone: keep its handle closed to use, open to the
    /// kernel, until [`Device::replace`].
    pub fn lose(&mut self) {
        if let Some(h) = self.live.take() {
            self.dead = Some(h);
        }
    }

    /// A new handle (already open, so its fd number is new) replaces the
    /// lost one, which is closed now.
    pub fn replace(&mut self, h: T) {
        self.live = Some(h);
        self.dead = None;
    }
}

/// A port's own counters.
#[derive(Debug, Default, Clone)]
pub struct Counters {
    /// Totals shown by `dump-ports`.
    pub stats: PortStats,
    drops: [u64; PortDrop::ALL.len()],
}

impl Counters {
    /// Counts one received frame of `bytes` bytes.
    #[inline]
    pub fn rx(&mut self, bytes: usize) {
        self.stats.rx_packets += 1;
        self.stats.rx_bytes += bytes as u64;
    }

    /// Counts one sent frame of `bytes` bytes.
    #[inline]
    pub fn tx(&mut self, bytes: usize) {
        self.stats.tx_packets += 1;
        self.stats.tx_bytes += bytes as u64;
    }

    /// Counts a received frame whose offload header we cannot honour: an
    /// error (the peer broke the contract) and a drop.
    pub fn rx_invalid(&mut self) {
        self.stats.rx_errors += 1;
        self.stats.rx_dropped += 1;
    }

    /// Counts `n` frames the OS refused (or whose offload metadata makes
    /// no sense): errors, and drops under `tx_error`.
    pub fn tx_error(&mut self, n: u64) {
        self.stats.tx_errors += n;
        self.tx_drop(PortDrop::TxError, n);
    }

    /// Counts `n` received frames dropped for `why`.
    pub fn rx_drop(&mut self, why: PortDrop, n: u64) {
        self.stats.rx_dropped += n;
        self.drops[why as usize] += n;
    }

    /// Counts `n` frames to send dropped for `why`.
    pub fn tx_drop(&mut self, why: PortDrop, n: u64) {
        self.stats.tx_dropped += n;
        self.drops[why as usize] += n;
    }

    /// Non-zero drop counters, by reason.
    pub fn drops(&self) -> Vec<(PortDrop, u64)> {
        self.drops_with([])
    }

    /// As [`Counters::drops`], with `extra` counted in: drops the port
    /// learns of elsewhere (its sockets' own counters).
    pub fn drops_with(
        &self,
        extra: impl IntoIterator<Item = (PortDrop, u64)>,
    ) -> Vec<(PortDrop, u64)> {
        let mut d = self.drops;
        for (why, n) in extra {
            d[why as usize] += n;
        }
        PortDrop::ALL
            .iter()
            .map(|&w| (w, d[w as usize]))
            .filter(|&(_, n)| n > 0)
            .collect()
    }

    /// One drop counter.
    pub fn drop_count(&self, why: PortDrop) -> u64 {
        self.drops[why as usize]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn down_is_counted_once_and_backs_off() {
        let mut l = LinkLife::new("p");
        l.down("gone");
        l.down("still gone");
        assert_eq!(l.downs(), 1);
        let t0 = Instant::now();
        assert!(!l.retry_due(t0));
        assert!(l.retry_due(t0 + BACKOFF_MIN));
        let mut waits = Vec::new();
        let mut now = t0;
        for _ in 0..8 {
            l.retry_failed(now, "nope");
            waits.push(l.next_try - now);
            now = l.next_try;
        }
        assert_eq!(waits[0], BACKOFF_MIN * 2);
        assert_eq!(*waits.last().unwrap(), BACKOFF_MAX);
        l.up("back");
        assert!(l.is_up());
        assert!(!l.retry_due(now + BACKOFF_MAX));
    }

    #[test]
    fn lost_device_keeps_its_fd_number_until_replaced() {
        use std::os::fd::AsRawFd;
        use std::os::unix::net::UnixDatagram;
        let (a, _peer) = UnixDatagram::pair().unwrap();
        let old = a.as_raw_fd();
        let mut d = Device::new(Some(a));
        d.lose();
        assert!(d.get().is_none());
        // The kernel hands out the lowest free number: had the lost fd
        // been closed, the next open could get it back.
        let (b, _peer2) = UnixDatagram::pair().unwrap();
        assert_ne!(b.as_raw_fd(), old);
        let new = b.as_raw_fd();
        d.replace(b);
        assert_eq!(d.get().map(|s| s.as_raw_fd()), Some(new));
    }

    #[test]
    fn counters_by_reason() {
        let mut c = Counters::default();
        c.tx_drop(PortDrop::PortDown, 3);
        c.rx_drop(PortDrop::RxTooLong, 1);
        assert_eq!(c.stats.tx_dropped, 3);
        assert_eq!(c.stats.rx_dropped, 1);
        assert_eq!(
            c.drops(),
            vec![(PortDrop::PortDown, 3), (PortDrop::RxTooLong, 1)]
        );
    }
}
