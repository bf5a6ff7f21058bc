//! A latency histogram with logarithmic buckets (the HDR histogram idea).
//!
//! Values below 2^[`SUB_BITS`] have a bucket each; above, every power of
//! two is split into 2^`SUB_BITS` equal buckets, so a bucket is at most
//! 1/32 (about 3%) of its values wide, from nanoseconds to the full u64
//! range, in a fixed array of under 2,000 counters. Recording is an index
//! computation and an increment: no allocation per packet. A percentile is
//! reported as the highest value of the bucket it falls in, so it never
//! understates a latency.

/// Bits of sub-bucket resolution per power of two.
pub const SUB_BITS: u32 = 5;
const SUB: usize = 1 << SUB_BITS;
/// Number of buckets: enough for every u64.
const BUCKETS: usize = (65 - SUB_BITS as usize) * SUB;

/// Counts of values (nanoseconds) in log buckets.
#[derive(Clone)]
pub struct Histogram {
    counts: Box<[u64; BUCKETS]>,
    total: u64,
    min: u64,
    max: u64,
    sum: u128,
}

impl std::fmt::Debug for Histogram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Histogram")
            .field("total", &self.total)
            .field("min", &self.min)
            .field("max", &self.max)
            .finish()
    }
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            counts: Box::new([0; BUCKETS]),
            total: 0,
            min: u64::MAX,
            max: 0,
            sum: 0,
        }
    }
}

fn index(v: u64) -> usize {
    if v < SUB as u64 {
        return v as usize;
    }
    let msb = 63 - v.leading_zeros();
    let e = msb - SUB_BITS;
    (e as usize) * SUB + (v >> e) as usize
}

/// The highest value that falls into bucket `i`.
fn highest(i: usize) -> u64 {
    if i < 2 * SUB {
        return i as u64;
    }
    let e = (i / SUB - 1) as u32;
    let m = (i - e as usize * SUB) as u64;
    // The top bucket's end is u64::MAX; saturate instead of overflowing.
    ((m + 1) << e).wrapping_sub(1).max(m << e)
}

impl Histogram {
    /// An empty histogram.
    pub fn new() -> Histogram {
        Histogram::default()
    }

    /// Records one value.
    pub fn record(&mut self, v: u64) {
        self.counts[index(v)] += 1;
        self.total += 1;
        self.min = self.min.min(v);
        self.max = self.max.max(v);
        self.sum += u128::from(v);
    }

    /// Adds another histogram's counts.
    pub fn merge(&mut self, other: &Histogram) {
        for (a, b) in self.counts.iter_mut().zip(other.counts.iter()) {
            *a += b;
        }
        self.total += other.total;
        self.min = self.min.min(other.min);
        self.max = self.max.max(other.max);
        self.sum += other.sum;
    }

    /// Number of values recorded.
    pub fn count(&self) -> u64 {
        self.total
    }

    /// Smallest value recorded (None when empty).
    pub fn min(&self) -> Option<u64> {
        (self.total > 0).then_some(self.min)
    }

    /// Largest value recorded (None when empty).
    pub fn max(&self) -> Option<u64> {
        (self.total > 0).then_some(self.max)
    }

    /// Mean of the values (None when empty).
    pub fn mean(&self) -> Option<f64> {
        (self.total > 0).then(|| self.sum as f64 / self.total as f64)
    }

    /// The value at quantile `q` (0.0..=1.0): the smallest bucket whose
    /// cumulative count reaches `ceil(q * count)`, reported as that
    /// bucket's highest value, capped by the largest value recorded.
    pub fn quantile(&self, q: f64) -> Option<u64> {
        if self.total == 0 {
            return None;
        }
        let q = if q.is_nan() { 1.0 } else { q.clamp(0.0, 1.0) };
        let rank = ((q * self.total as f64).ceil() as u64).clamp(1, self.total);
        let mut cum = 0u64;
        for (i, &c) in self.counts.iter().enumerate() {
            cum += c;
            if cum >= rank {
                return Some(highest(i).min(self.max));
            }
        }
        Some(self.max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_cover_every_value_in_order() {
        let mut last = 0usize;
        for v in (0..10_000u64).chain([u64::MAX / 3, u64::MAX - 1, u64::MAX]) {
            let i = index(v);
            assert!(i < BUCKETS, "{v}");
            assert!(i >= last || v > 10_000, "{v}");
            last = i;
            assert!(highest(i) >= v, "{v}: bucket {i} ends at {}", highest(i));
            // The bucket is narrow: its end is within 1/32 of the value.
            assert!(highest(i) - v <= v / SUB as u64, "{v}");
        }
        assert_eq!(index(u64::MAX), BUCKETS - 1);
        assert_eq!(highest(BUCKETS - 1), u64::MAX);
    }

    #[test]
    fn small_values_are_exact() {
        let mut h = Histogram::new();
        for v in 1..=10 {
            h.record(v);
        }
        assert_eq!(h.quantile(0.5), Some(5));
        assert_eq!(h.quantile(0.99), Some(10));
        assert_eq!(h.quantile(0.0), Some(1));
        assert_eq!(h.min(), Some(1));
        assert_eq!(h.max(), Some(10));
        assert_eq!(h.mean(), Some(5.5));
    }

    #[test]
    fn percentiles_of_a_uniform_distribution() {
        let mut h = Histogram::new();
        for v in 1..=1_000_000u64 {
            h.record(v);
        }
        for (q, want) in [(0.5, 500_000u64), (0.99, 990_000), (0.999, 999_000)] {
            let got = h.quantile(q).unwrap();
            assert!(
                got >= want && got - want <= want / 32,
                "q{q}: {got} vs {want}"
            );
        }
        assert_eq!(h.quantile(1.0), Some(1_000_000));
    }

    #[test]
    fn a_tail_shows_in_p99_not_p50() {
        let mut h = Histogram::new();
        for _ in 0..985 {
            h.record(20_000);
        }
        for _ in 0..15 {
            h.record(5_000_000);
        }
        let p50 = h.quantile(0.5).unwrap();
        let p99 = h.quantile(0.99).unwrap();
        assert!((20_000..=20_000 + 20_000 / 32).contains(&p50), "{p50}");
        assert!(
            (5_000_000..=5_000_000 + 5_000_000 / 32).contains(&p99),
            "{p99}"
        );
        let mut other = Histogram::new();
        other.record(1);
        h.merge(&other);
        assert_eq!(h.count(), 1001);
        assert_eq!(h.min(), Some(1));
    }

    #[test]
    fn empty_histogram_has_no_percentiles() {
        let h = Histogram::new();
        assert_eq!(h.quantile(0.5), None);
        assert_eq!(h.min(), None);
        assert_eq!(h.mean(), None);
    }
}
