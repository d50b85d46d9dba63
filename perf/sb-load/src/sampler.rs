//! The server's resident memory and open descriptors over time, sampled on
//! a thread of its own (`--churn`, `--stalled`), and what the series says:
//! baseline, peak, end, and the growth trend (a least-squares slope) that
//! tells a leak from an allocator that keeps what it once needed.

use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::procstat;

/// One sample of every `--server-pid`, summed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Sample {
    /// Seconds since the sampler started.
    pub t_s: f64,
    pub rss_kib: u64,
    pub fds: u64,
}

/// A running sampler; [`Sampler::finish`] stops it and returns the series.
pub struct Sampler {
    started: Instant,
    stop: Sender<()>,
    handle: JoinHandle<Vec<Sample>>,
}

impl Sampler {
    /// Samples `pids` now and then every `every` until finished.
    pub fn start(pids: &[u32], every: Duration) -> Sampler {
        let pids = pids.to_vec();
        let started = Instant::now();
        let (stop, stopped) = mpsc::channel::<()>();
        let handle = thread::spawn(move || {
            let mut series = Vec::new();
            loop {
                series.push(sample(&pids, started));
                match stopped.recv_timeout(every) {
                    Err(RecvTimeoutError::Timeout) => {}
                    _ => break,
                }
            }
            series.push(sample(&pids, started));
            series
        });
        Sampler {
            started,
            stop,
            handle,
        }
    }

    /// Seconds since the sampler started: marks phases in the series.
    pub fn now_s(&self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }

    pub fn finish(self) -> Vec<Sample> {
        let _ = self.stop.send(());
        self.handle.join().unwrap_or_default()
    }
}

fn sample(pids: &[u32], started: Instant) -> Sample {
    Sample {
        t_s: started.elapsed().as_secs_f64(),
        rss_kib: pids.iter().filter_map(|&p| procstat::rss_kib(p).ok()).sum(),
        fds: pids
            .iter()
            .filter_map(|&p| procstat::fd_count(p).ok())
            .sum(),
    }
}

/// What a series did around a disturbance from `from_s` to `to_s`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Soak {
    pub samples: usize,
    /// The last sample before `from_s`.
    pub rss_base_kib: u64,
    pub fds_base: u64,
    pub rss_peak_kib: u64,
    pub fds_peak: u64,
    /// The last sample of the series (after `to_s` and any settling).
    pub rss_end_kib: u64,
    pub fds_end: u64,
    /// (end − base) / base, percent.
    pub rss_end_pct: f64,
    pub fds_end_pct: f64,
    /// Least-squares slope over the disturbance, its first fifth left out
    /// (pools and buffers filling once), per minute.
    pub rss_slope_kib_per_min: f64,
    pub fds_slope_per_min: f64,
    /// Mean RSS over the first and the last minute of that same stretch.
    pub rss_early_kib: u64,
    pub rss_late_kib: u64,
}

impl Soak {
    pub fn of(series: &[Sample], from_s: f64, to_s: f64) -> Soak {
        let Some(last) = series.last() else {
            return Soak::default();
        };
        let base = series
            .iter()
            .rev()
            .find(|s| s.t_s < from_s)
            .unwrap_or(&series[0]);
        let settle_from = from_s + (to_s - from_s) / 5.0;
        let during: Vec<&Sample> = series
            .iter()
            .filter(|s| s.t_s >= settle_from && s.t_s <= to_s)
            .collect();
        let pct = |end: u64, base: u64| {
            if base == 0 {
                0.0
            } else {
                (end as f64 - base as f64) * 100.0 / base as f64
            }
        };
        let mean_rss = |lo: f64, hi: f64| {
            let v: Vec<u64> = during
                .iter()
                .filter(|s| s.t_s >= lo && s.t_s < hi)
                .map(|s| s.rss_kib)
                .collect();
            if v.is_empty() {
                0
            } else {
                v.iter().sum::<u64>() / v.len() as u64
            }
        };
        Soak {
            samples: series.len(),
            rss_base_kib: base.rss_kib,
            fds_base: base.fds,
            rss_peak_kib: series.iter().map(|s| s.rss_kib).max().unwrap_or(0),
            fds_peak: series.iter().map(|s| s.fds).max().unwrap_or(0),
            rss_end_kib: last.rss_kib,
            fds_end: last.fds,
            rss_end_pct: pct(last.rss_kib, base.rss_kib),
            fds_end_pct: pct(last.fds, base.fds),
            rss_slope_kib_per_min: 60.0 * slope(during.iter().map(|s| (s.t_s, s.rss_kib as f64))),
            fds_slope_per_min: 60.0 * slope(during.iter().map(|s| (s.t_s, s.fds as f64))),
            rss_early_kib: mean_rss(settle_from, settle_from + 60.0),
            rss_late_kib: mean_rss(to_s - 60.0, to_s + 1.0),
        }
    }
}

/// Least-squares slope of y over x (0 for fewer than two points).
pub fn slope(points: impl Iterator<Item = (f64, f64)>) -> f64 {
    let pts: Vec<(f64, f64)> = points.collect();
    let n = pts.len() as f64;
    if pts.len() < 2 {
        return 0.0;
    }
    let mx = pts.iter().map(|p| p.0).sum::<f64>() / n;
    let my = pts.iter().map(|p| p.1).sum::<f64>() / n;
    let sxy: f64 = pts.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    let sxx: f64 = pts.iter().map(|p| (p.0 - mx) * (p.0 - mx)).sum();
    if sxx == 0.0 {
        0.0
    } else {
        sxy / sxx
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(t_s: f64, rss_kib: u64, fds: u64) -> Sample {
        Sample { t_s, rss_kib, fds }
    }

    #[test]
    fn slope_of_a_line_and_of_noise() {
        let line = (0..10).map(|i| (f64::from(i), 3.0 * f64::from(i) + 1.0));
        assert!((slope(line) - 3.0).abs() < 1e-9);
        let flat = [(0.0, 5.0), (1.0, 7.0), (2.0, 5.0), (3.0, 7.0), (4.0, 6.0)];
        assert!(slope(flat.into_iter()).abs() < 0.5);
        assert_eq!(slope(std::iter::once((1.0, 1.0))), 0.0);
    }

    #[test]
    fn soak_reads_base_peak_end_and_trend() {
        // Base 1000 before t=10, a plateau at 1200 during 10..110, back to 1010.
        let mut series = vec![s(0.0, 990, 50), s(9.0, 1000, 50)];
        for t in 10..=110 {
            series.push(s(f64::from(t), 1200, 60));
        }
        series.push(s(115.0, 1010, 50));
        let k = Soak::of(&series, 10.0, 110.0);
        assert_eq!((k.rss_base_kib, k.fds_base), (1000, 50));
        assert_eq!((k.rss_peak_kib, k.fds_peak), (1200, 60));
        assert_eq!((k.rss_end_kib, k.fds_end), (1010, 50));
        assert!((k.rss_end_pct - 1.0).abs() < 1e-9);
        assert_eq!(k.rss_slope_kib_per_min, 0.0);
        assert_eq!((k.rss_early_kib, k.rss_late_kib), (1200, 1200));
    }

    #[test]
    fn a_leak_shows_as_a_slope() {
        let series: Vec<Sample> = (0..=100)
            .map(|t| s(f64::from(t), 1000 + 2 * t as u64, 50))
            .collect();
        let k = Soak::of(&series, 0.0, 100.0);
        assert!((k.rss_slope_kib_per_min - 120.0).abs() < 1e-6, "{k:?}");
    }

    #[test]
    fn the_sampler_samples_this_process() {
        // One sample at the start and one at the finish, at least.
        let sampler = Sampler::start(&[std::process::id()], Duration::from_millis(5));
        let series = sampler.finish();
        assert!(series.len() >= 2);
        assert!(series.iter().all(|x| x.rss_kib > 0 && x.fds > 0));
    }
}
