//! Rate control: a token bucket that hands out batches.
//!
//! Tokens accrue at the target rate from the start of the run; the bucket
//! holds at most `burst` packets (the sender uses a few batches), so a
//! sender that fell behind (a preemption, a full socket) catches up by at
//! most that much instead of bursting the whole backlog. The sender asks how many packets it may send now
//! ([`TokenBucket::take`]) and, when none, how long to wait
//! ([`TokenBucket::wait_ns`]). Time is a parameter (nanoseconds since the
//! run's epoch), so the arithmetic is tested without clocks.

/// A token bucket over a packet rate.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    /// Packets per second; `None`: unlimited.
    rate: Option<u64>,
    burst: u64,
    /// Tokens, in packets × 10^9 (so one nanosecond at the rate adds
    /// `rate` units and nothing is lost to rounding).
    units: u128,
    last_ns: u64,
}

const NS: u128 = 1_000_000_000;

impl TokenBucket {
    /// A bucket for `rate` packets per second (`None` or 0: unlimited)
    /// that holds at most `burst` packets. It starts with one packet, so
    /// the first send happens at once.
    pub fn new(rate: Option<u64>, burst: u64) -> TokenBucket {
        TokenBucket {
            rate: rate.filter(|&r| r > 0),
            burst: burst.max(1),
            units: NS,
            last_ns: 0,
        }
    }

    fn refill(&mut self, now_ns: u64) {
        let Some(rate) = self.rate else { return };
        if now_ns > self.last_ns {
            let add = u128::from(now_ns - self.last_ns) * u128::from(rate);
            self.units = (self.units + add).min(u128::from(self.burst) * NS);
            self.last_ns = now_ns;
        }
    }

    /// Up to `want` packets that may go now; they are taken from the bucket.
    pub fn take(&mut self, now_ns: u64, want: u64) -> u64 {
        self.take_at_least(now_ns, 1, want)
    }

    /// As [`TokenBucket::take`], but nothing unless at least `min` packets
    /// may go: a sender at a high rate waits for a batch worth a syscall
    /// instead of sending one packet per call.
    pub fn take_at_least(&mut self, now_ns: u64, min: u64, want: u64) -> u64 {
        if self.rate.is_none() {
            return want;
        }
        self.refill(now_ns);
        let avail = (self.units / NS) as u64;
        if avail < min.min(want).min(self.burst) {
            return 0;
        }
        let n = avail.min(want);
        self.units -= u128::from(n) * NS;
        n
    }

    /// Gives back packets taken but not sent (the socket was full).
    pub fn give_back(&mut self, n: u64) {
        if self.rate.is_some() {
            self.units = (self.units + u128::from(n) * NS).min(u128::from(self.burst) * NS);
        }
    }

    /// Nanoseconds until at least one packet may go (0: now).
    pub fn wait_ns(&self) -> u64 {
        self.wait_ns_for(1)
    }

    /// Nanoseconds until at least `n` packets may go (0: now).
    pub fn wait_ns_for(&self, n: u64) -> u64 {
        let Some(rate) = self.rate else { return 0 };
        let need = u128::from(n.clamp(1, self.burst)) * NS;
        if self.units >= need {
            return 0;
        }
        ((need - self.units).div_ceil(u128::from(rate))) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unlimited_gives_what_is_asked() {
        let mut b = TokenBucket::new(None, 32);
        assert_eq!(b.take(0, 32), 32);
        assert_eq!(b.take(0, 32), 32);
        assert_eq!(b.wait_ns(), 0);
        let mut z = TokenBucket::new(Some(0), 32);
        assert_eq!(z.take(0, 7), 7);
    }

    #[test]
    fn paces_to_the_rate_in_simulated_time() {
        // 1000 pps: one packet per millisecond.
        let mut b = TokenBucket::new(Some(1000), 32);
        assert_eq!(b.take(0, 32), 1);
        assert_eq!(b.take(0, 32), 0);
        assert_eq!(b.wait_ns(), 1_000_000);
        assert_eq!(b.take(999_999, 32), 0);
        assert_eq!(b.take(1_000_000, 32), 1);
        // Ten seconds of sending in 1 ms steps hands out 10,000 packets.
        let mut sent = 0;
        let mut t = 1_000_000;
        while t <= 10_001_000_000u64 {
            sent += b.take(t, 32);
            t += 1_000_000;
        }
        assert_eq!(sent, 10_000);
    }

    #[test]
    fn a_stall_is_made_up_by_one_batch_only() {
        let mut b = TokenBucket::new(Some(1_000_000), 32);
        assert_eq!(b.take(0, 32), 1);
        // A 10 ms stall: 10,000 tokens accrued, but the bucket holds 32.
        assert_eq!(b.take(10_000_000, 1000), 32);
        assert_eq!(b.take(10_000_000, 1000), 0);
        b.give_back(5);
        assert_eq!(b.take(10_000_000, 1000), 5);
        assert_eq!(b.wait_ns(), 1000);
    }

    #[test]
    fn waits_for_a_batch_when_asked() {
        let mut b = TokenBucket::new(Some(1_000_000), 64);
        assert_eq!(b.take(0, 1), 1);
        // 5 us in: five packets may go, but not the eight asked for.
        assert_eq!(b.take_at_least(5_000, 8, 32), 0);
        assert_eq!(b.wait_ns_for(8), 3_000);
        assert_eq!(b.take_at_least(8_000, 8, 32), 8);
        // A minimum above the bucket's size is capped by it.
        assert_eq!(b.take_at_least(1_000_000, 1000, 1000), 64);
        assert_eq!(b.wait_ns_for(1000), 64_000);
    }
}
