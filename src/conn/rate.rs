//! Token-bucket rate limit on client data messages (PROTOCOL.md §7).
//!
//! Every client data message takes one token; tokens return at `rate` per
//! second up to `burst`. Control frames do not count. The clock is passed in,
//! so the limiter is pure and its tests need no sleeping.

use std::time::Instant;

/// One connection's bucket. Tokens are kept in millitokens so that refill
/// needs no floating point and no rounding drift.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    millitokens: u64,
    last: Instant,
}

/// The limits every bucket of a server shares.
#[derive(Debug, Clone, Copy)]
pub struct Rate {
    pub per_second: u32,
    pub burst: u32,
}

impl TokenBucket {
    /// A full bucket.
    pub fn new(rate: Rate, now: Instant) -> Self {
        TokenBucket {
            millitokens: u64::from(rate.burst) * 1000,
            last: now,
        }
    }

    /// Takes one token if there is one.
    pub fn try_take(&mut self, rate: Rate, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.last);
        // rate tokens per second = rate millitokens per millisecond.
        let refill = (elapsed.as_micros() as u64).saturating_mul(u64::from(rate.per_second)) / 1000;
        if refill > 0 {
            let cap = u64::from(rate.burst) * 1000;
            self.millitokens = (self.millitokens + refill).min(cap);
            self.last = now;
        }
        if self.millitokens >= 1000 {
            self.millitokens -= 1000;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    const RATE: Rate = Rate {
        per_second: 100,
        burst: 200,
    };

    #[test]
    fn burst_then_refusal() {
        let t = Instant::now();
        let mut b = TokenBucket::new(RATE, t);
        for _ in 0..200 {
            assert!(b.try_take(RATE, t));
        }
        assert!(!b.try_take(RATE, t));
    }

    #[test]
    fn refills_at_the_rate() {
        let t = Instant::now();
        let mut b = TokenBucket::new(RATE, t);
        while b.try_take(RATE, t) {}
        // 100/s: one token per 10 ms.
        assert!(!b.try_take(RATE, t + Duration::from_millis(9)));
        assert!(b.try_take(RATE, t + Duration::from_millis(10)));
        let later = t + Duration::from_secs(1);
        let mut n = 0;
        while b.try_take(RATE, later) {
            n += 1;
        }
        assert_eq!(n, 99);
    }

    #[test]
    fn never_above_burst() {
        let t = Instant::now();
        let mut b = TokenBucket::new(RATE, t);
        let later = t + Duration::from_secs(3600);
        let mut n = 0;
        while b.try_take(RATE, later) {
            n += 1;
        }
        assert_eq!(n, 200);
    }
}
