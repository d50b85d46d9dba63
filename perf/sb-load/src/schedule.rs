//! When each publisher sends: one tick every `1 / (rate × publishers)`
//! seconds, each for the next publisher in turn, so every publisher sends
//! evenly at `rate` and the aggregate is spread over time instead of arriving
//! in bursts. Pure: the caller passes `now`.
//!
//! The schedule is open-loop: when the loop wakes late, every tick already
//! due is still owed (the worker sends at most one round per loop turn), and
//! the lateness is kept as `max_lag_ns` so a run can say when the generator
//! itself could not keep up.

use std::time::Duration;

/// Round-robin publication times: one tick every `1 / (rate × publishers)`
/// seconds, each for the next publisher, so each publishes at `rate`.
pub struct Schedule {
    pub publishers: Vec<usize>,
    period_ns: f64,
    next_tick_ns: f64,
    next: usize,
    /// Longest a publication waited past its tick: the generator's own lag.
    pub max_lag_ns: u64,
}

impl Schedule {
    /// Ticks for `publishers` (slot indices), each at `rate` per second,
    /// from `start_ns`.
    pub fn new(publishers: Vec<usize>, rate: f64, start_ns: u64) -> Schedule {
        let per_second = rate * publishers.len() as f64;
        let period_ns = if per_second > 0.0 {
            1e9 / per_second
        } else {
            f64::INFINITY
        };
        Schedule {
            publishers,
            period_ns,
            next_tick_ns: start_ns as f64,
            next: 0,
            max_lag_ns: 0,
        }
    }

    /// The slot to publish on now, if a tick is due before `end_ns`.
    pub fn due(&mut self, now: u64, end_ns: u64) -> Option<usize> {
        let tick = self.next_tick_ns;
        if self.publishers.is_empty() || tick > now as f64 || tick >= end_ns as f64 || now >= end_ns
        {
            return None;
        }
        self.max_lag_ns = self.max_lag_ns.max(now.saturating_sub(tick as u64));
        let slot = self.publishers[self.next];
        self.next = (self.next + 1) % self.publishers.len();
        self.next_tick_ns += self.period_ns;
        Some(slot)
    }

    /// How long to poll: until the next tick, or a while when nothing is due.
    pub fn timeout(&self, now: u64, end_ns: u64) -> Duration {
        let idle = Duration::from_millis(100);
        if self.publishers.is_empty() || self.next_tick_ns >= end_ns as f64 {
            return idle;
        }
        let wait = (self.next_tick_ns - now as f64).max(0.0);
        Duration::from_nanos(wait as u64).min(idle)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn schedule_spreads_each_publisher_evenly_at_its_rate() {
        // 4 publishers at 10/s: one tick every 25 ms, each publisher every 100 ms.
        let mut s = Schedule::new(vec![7, 8, 9, 10], 10.0, 1_000);
        let end = 1_000 + 1_000_000_000;
        let mut sent: HashMap<usize, Vec<u64>> = HashMap::new();
        let mut now = 1_000;
        while now < end + 100_000_000 {
            while let Some(slot) = s.due(now, end) {
                sent.entry(slot).or_default().push(now);
            }
            now += 1_000_000; // a 1 ms loop turn
        }
        assert_eq!(sent.len(), 4);
        for times in sent.values() {
            assert_eq!(times.len(), 10, "{times:?}");
            for pair in times.windows(2) {
                assert!(
                    (pair[1] - pair[0]).abs_diff(100_000_000) <= 1_000_000,
                    "{times:?}"
                );
            }
        }
        assert!(s.max_lag_ns < 1_000_000);
        assert!(
            s.timeout(end, end) == Duration::from_millis(100),
            "idle after the end"
        );
    }

    #[test]
    fn schedule_reports_lag_and_stops_at_the_end() {
        let mut s = Schedule::new(vec![1], 1000.0, 0);
        // The loop wakes 50 ms late: 50 ticks are due at once.
        let mut burst = 0;
        while s.due(50_000_000, 1_000_000_000).is_some() {
            burst += 1;
        }
        assert_eq!(burst, 51);
        assert_eq!(s.max_lag_ns, 50_000_000);
        assert_eq!(
            s.due(2_000_000_000, 1_000_000_000),
            None,
            "nothing after the end"
        );
        assert_eq!(Schedule::new(vec![], 10.0, 0).due(5, 10), None);
    }
}
