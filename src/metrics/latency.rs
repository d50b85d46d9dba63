//! The clock reads behind the server's own latency histograms
//! (`switchboard_fanout_seconds`, `switchboard_write_delay_seconds`).
//!
//! They are compiled in by the default cargo feature `latency-histograms`;
//! without it [`observe_since`] reads no clock and records nothing, so a
//! build with `--no-default-features` is the baseline that measures what the
//! two histograms cost (docs/reliability.md, "What the histograms cost").
//! The start instants are the turn's clock, read anyway for timers.

use std::time::Instant;

use super::Histogram;

/// Records the time from `start` to now in `h`: one clock read and one
/// bucket scan. A no-op when the feature is off.
#[inline]
pub fn observe_since(h: &Histogram, start: Instant) {
    if cfg!(feature = "latency-histograms") {
        let spent = Instant::now().saturating_duration_since(start);
        h.observe(spent.as_nanos() as u64);
    } else {
        let _ = (h, start);
    }
}

/// Whether the two latency histograms are compiled in.
pub const ENABLED: bool = cfg!(feature = "latency-histograms");

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::FANOUT_BOUNDS;

    #[test]
    fn records_one_observation_when_compiled_in() {
        let h = Histogram::new(&FANOUT_BOUNDS);
        observe_since(&h, Instant::now());
        assert_eq!(h.snapshot().count(), u64::from(ENABLED));
    }
}
