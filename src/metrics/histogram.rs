//! A fixed-bucket histogram of durations, written by one thread without
//! locks or `lock`-prefixed instructions, read by the scrape.
//!
//! Prometheus histograms are cumulative (`le` = "less than or equal"); this
//! type stores each bucket's own count and lets the renderer accumulate, so
//! `observe` touches exactly one bucket. There is no separate count field:
//! `_count` is rendered as the sum of the buckets, which makes
//! `_bucket{le="+Inf"} == _count` hold in every scrape even while a worker is
//! in the middle of an `observe`.

use super::Counter;

/// Number of finite bucket bounds in every histogram of this module.
pub const BUCKETS: usize = 12;

/// Upper bounds, in nanoseconds, of `switchboard_broker_round_trip_seconds`:
/// 50 µs (a local owner on another core) to 1 s (Redis in trouble).
pub const BROKER_RTT_BOUNDS: [u64; BUCKETS] = [
    50_000,
    100_000,
    250_000,
    500_000,
    1_000_000,
    2_500_000,
    5_000_000,
    10_000_000,
    25_000_000,
    100_000_000,
    250_000_000,
    1_000_000_000,
];

/// Upper bounds, in nanoseconds, of `switchboard_loop_iteration_seconds`:
/// 5 µs (one readiness event) to 100 ms (a stalled core).
pub const LOOP_TIME_BOUNDS: [u64; BUCKETS] = [
    5_000,
    10_000,
    25_000,
    50_000,
    100_000,
    250_000,
    500_000,
    1_000_000,
    2_500_000,
    10_000_000,
    25_000_000,
    100_000_000,
];

/// Upper bounds, in nanoseconds, of `switchboard_fanout_seconds`: 1 µs (a
/// few local recipients) to 100 ms (a room of thousands on a loaded core).
pub const FANOUT_BOUNDS: [u64; BUCKETS] = [
    1_000,
    5_000,
    10_000,
    25_000,
    50_000,
    100_000,
    250_000,
    1_000_000,
    2_500_000,
    10_000_000,
    25_000_000,
    100_000_000,
];

/// Upper bounds, in nanoseconds, of `switchboard_write_delay_seconds`: 10 µs
/// (written in the turn that queued it) to 1 s (a slow reader's backlog).
pub const WRITE_DELAY_BOUNDS: [u64; BUCKETS] = [
    10_000,
    25_000,
    50_000,
    100_000,
    250_000,
    500_000,
    1_000_000,
    2_500_000,
    10_000_000,
    50_000_000,
    250_000_000,
    1_000_000_000,
];

/// Durations sorted into [`BUCKETS`] fixed buckets plus an overflow bucket.
///
/// # Single writer
///
/// Like [`Counter`], each histogram has one writing thread (its worker);
/// any number of threads may read it.
#[derive(Debug)]
pub struct Histogram {
    bounds: &'static [u64; BUCKETS],
    /// `counts[i]` holds observations in `(bounds[i-1], bounds[i]]`;
    /// `counts[BUCKETS]` those above the last bound.
    counts: [Counter; BUCKETS + 1],
    sum_nanos: Counter,
}

impl Histogram {
    /// An empty histogram over `bounds` (nanoseconds, strictly increasing).
    pub fn new(bounds: &'static [u64; BUCKETS]) -> Self {
        Histogram {
            bounds,
            counts: Default::default(),
            sum_nanos: Counter::default(),
        }
    }

    /// Records one duration: a scan of twelve constants and two relaxed
    /// load/store pairs. No allocation, no lock, no clock.
    #[inline]
    pub fn observe(&self, nanos: u64) {
        let i = bucket_index(self.bounds, nanos);
        if let Some(c) = self.counts.get(i) {
            c.add(1);
        }
        self.sum_nanos.add(nanos);
    }

    /// The upper bounds in nanoseconds.
    pub fn bounds(&self) -> &'static [u64; BUCKETS] {
        self.bounds
    }

    /// The current per-bucket counts and sum.
    pub fn snapshot(&self) -> HistogramSnapshot {
        let mut counts = [0u64; BUCKETS + 1];
        for (dst, src) in counts.iter_mut().zip(&self.counts) {
            *dst = src.get();
        }
        HistogramSnapshot {
            counts,
            sum_nanos: self.sum_nanos.get(),
        }
    }
}

/// The index of the first bucket whose bound is `>= nanos`, or [`BUCKETS`]
/// for the overflow bucket. Linear on purpose: most observations land in
/// the first few buckets, and twelve compares beat a branchy binary search.
#[inline]
fn bucket_index(bounds: &[u64; BUCKETS], nanos: u64) -> usize {
    bounds.iter().position(|&b| nanos <= b).unwrap_or(BUCKETS)
}

/// Per-bucket (not cumulative) counts and the sum, read from one or more
/// histograms with the same bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct HistogramSnapshot {
    /// Observations per bucket; the last entry is the overflow bucket.
    pub counts: [u64; BUCKETS + 1],
    /// Sum of all observations, in nanoseconds.
    pub sum_nanos: u64,
}

impl HistogramSnapshot {
    /// Adds another snapshot of a histogram with the same bounds.
    pub fn merge(&mut self, other: &HistogramSnapshot) {
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a = a.wrapping_add(*b);
        }
        self.sum_nanos = self.sum_nanos.wrapping_add(other.sum_nanos);
    }

    /// Total number of observations (the `+Inf` bucket and `_count`).
    pub fn count(&self) -> u64 {
        self.counts.iter().fold(0u64, |a, b| a.wrapping_add(*b))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The plain twin of `bucket_index`: the definition of `le`.
    fn bucket_index_plain(bounds: &[u64; BUCKETS], nanos: u64) -> usize {
        let mut i = 0;
        while i < BUCKETS && nanos > bounds[i] {
            i += 1;
        }
        i
    }

    #[test]
    fn bounds_strictly_increase() {
        for bounds in [&BROKER_RTT_BOUNDS, &LOOP_TIME_BOUNDS] {
            assert!(bounds.windows(2).all(|w| w[0] < w[1]), "{bounds:?}");
        }
    }

    #[test]
    fn bucket_index_matches_plain_twin_at_every_edge() {
        for bounds in [&BROKER_RTT_BOUNDS, &LOOP_TIME_BOUNDS] {
            let mut probes = vec![0, 1, u64::MAX];
            for &b in bounds.iter() {
                probes.extend([b - 1, b, b + 1]);
            }
            for n in probes {
                assert_eq!(
                    bucket_index(bounds, n),
                    bucket_index_plain(bounds, n),
                    "{n}"
                );
            }
        }
    }

    #[test]
    fn a_value_equal_to_a_bound_lands_in_that_bucket() {
        // `le` is inclusive: 50 µs belongs to le="0.00005", not the next one.
        assert_eq!(bucket_index(&BROKER_RTT_BOUNDS, 50_000), 0);
        assert_eq!(bucket_index(&BROKER_RTT_BOUNDS, 50_001), 1);
        assert_eq!(bucket_index(&BROKER_RTT_BOUNDS, 1_000_000_001), BUCKETS);
    }

    #[test]
    fn observe_counts_and_sums() {
        let h = Histogram::new(&LOOP_TIME_BOUNDS);
        h.observe(1);
        h.observe(7_000);
        h.observe(u64::MAX / 2);
        let s = h.snapshot();
        assert_eq!(s.counts[0], 1);
        assert_eq!(s.counts[1], 1);
        assert_eq!(s.counts[BUCKETS], 1);
        assert_eq!(s.count(), 3);
        assert_eq!(s.sum_nanos, 1 + 7_000 + u64::MAX / 2);
    }

    #[test]
    fn merge_adds_bucket_by_bucket() {
        let (a, b) = (
            Histogram::new(&LOOP_TIME_BOUNDS),
            Histogram::new(&LOOP_TIME_BOUNDS),
        );
        a.observe(10);
        b.observe(10);
        b.observe(200_000_000);
        let mut s = a.snapshot();
        s.merge(&b.snapshot());
        assert_eq!(s.counts[0], 2);
        assert_eq!(s.counts[BUCKETS], 1);
        assert_eq!(s.sum_nanos, 200_000_020);
    }
}
