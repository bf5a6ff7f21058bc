//! Automatic OpenFlow port numbers, given as ovs-vswitchd gives them: the
//! next number after the last one given, in the lower half of the range
//! (the upper half is left to controllers and `ofport_request`), skipping
//! the numbers in use and those freed in the last hour, so that flows a
//! controller wrote for a deleted port do not apply at once to a new port
//! that would get its number. When every free number was freed within the
//! hour, the one freed longest ago is given.

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// How long a freed number is not given again (Open vSwitch's hour).
pub const REUSE_AFTER: Duration = Duration::from_secs(3600);

/// The highest number plus one that is given automatically.
pub const AUTOMATIC_END: u32 = 32768;

/// Where the next automatic number is looked for, and when numbers were
/// freed.
#[derive(Debug, Default)]
pub struct PortNumbers {
    /// The last number given.
    last: u32,
    /// Numbers freed, and when.
    freed: HashMap<u32, Instant>,
}

impl PortNumbers {
    /// A free number at `now`, given `in_use`; `None` when every number
    /// below [`AUTOMATIC_END`] is in use.
    pub fn next(&mut self, in_use: impl Fn(u32) -> bool, now: Instant) -> Option<u32> {
        let mut oldest: Option<(Instant, u32)> = None;
        for _ in 1..AUTOMATIC_END {
            self.last = if self.last + 1 >= AUTOMATIC_END {
                1
            } else {
                self.last + 1
            };
            let n = self.last;
            if in_use(n) {
                continue;
            }
            match self.freed.get(&n) {
                Some(&at) if now.saturating_duration_since(at) < REUSE_AFTER => {
                    if oldest.is_none_or(|(o, _)| at < o) {
                        oldest = Some((at, n));
                    }
                }
                _ => {
                    self.freed.remove(&n);
                    return Some(n);
                }
            }
        }
        let (_, n) = oldest?;
        self.last = n;
        self.freed.remove(&n);
        Some(n)
    }

    /// Number `n` was freed at `now`.
    pub fn freed(&mut self, n: u32, now: Instant) {
        if n < AUTOMATIC_END {
            self.freed.insert(n, now);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_go_on_from_the_last_and_skip_what_is_in_use() {
        let now = Instant::now();
        let mut p = PortNumbers::default();
        let used = [1, 2, 4];
        assert_eq!(p.next(|n| used.contains(&n), now), Some(3));
        assert_eq!(p.next(|n| used.contains(&n), now), Some(5));
        // 3 is free again but behind the last number given.
        assert_eq!(p.next(|n| [1, 2, 4, 5].contains(&n), now), Some(6));
    }

    #[test]
    fn a_freed_number_waits_an_hour_unless_nothing_else_is_free() {
        let now = Instant::now();
        let mut p = PortNumbers::default();
        assert_eq!(p.next(|_| false, now), Some(1));
        p.freed(1, now);
        // Wrapped around: 1 is skipped for 2.
        p.last = AUTOMATIC_END - 1;
        assert_eq!(p.next(|_| false, now), Some(2));
        p.last = AUTOMATIC_END - 1;
        assert_eq!(
            p.next(|_| false, now + REUSE_AFTER),
            Some(1),
            "an hour later it is given again"
        );
        // Only freed numbers left: the one freed longest ago.
        p.freed(5, now);
        p.freed(7, now + Duration::from_secs(1));
        let busy = |n: u32| n != 5 && n != 7;
        assert_eq!(p.next(busy, now + Duration::from_secs(2)), Some(5));
        assert_eq!(p.next(|n| n != 7, now + Duration::from_secs(2)), Some(7));
        assert_eq!(p.next(|_| true, now), None);
    }
}
