//! `--churn RATE`: connections that come and go beside the measured load
//! (issue 16's churn scenario). Each cycle connects, upgrades, joins a
//! channel of its own pool (`churn:K`, K < 1000, so channels are made and
//! dropped again all the time), and leaves: every other cycle with a close
//! handshake, the rest by a reset (SO_LINGER 0), the way a phone that lost
//! its network leaves.
//!
//! Cycles are scheduled evenly at RATE per second over `threads` blocking
//! threads (cycle k on thread k mod threads, at start + k / RATE); a thread
//! that falls behind runs its cycles back to back, and the achieved rate is
//! reported. Source addresses rotate over 127.0.0.2..=127.0.0.17 so the
//! ephemeral ports of one address are never the limit.

use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use serde::Serialize;
use socket2::SockRef;

use crate::blocking::{self, Ending, Step};
use crate::scenario::Target;

/// Channels the churning connections spread over.
const POOL: u64 = 1000;
/// Source addresses rotated over: 127.0.0.2 onwards.
const SOURCES: u64 = 16;
/// Deadline of one cycle's steps.
const STEP_TIMEOUT: Duration = Duration::from_secs(5);

/// What the churn did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct ChurnFigures {
    /// Cycles that joined and then left.
    pub cycles: u64,
    pub failed_connect: u64,
    pub failed_handshake: u64,
    pub failed_join: u64,
    /// Clean leaves whose close handshake did not finish in time.
    pub close_timeouts: u64,
    /// Cycles per second achieved over the churn's own run time.
    pub rate: f64,
    /// Mean time of a cycle's open (connect, upgrade, join until `joined`)
    /// and of its clean close (close frame until the server's), ms: with
    /// `threads`, they say what rate the threads can reach at all
    /// (threads / cycle time), so whether the server or the generator is
    /// the limit.
    pub open_ms_mean: f64,
    pub close_ms_mean: f64,
    /// How far behind its schedule the furthest thread was when the churn
    /// stopped, seconds (0: on time).
    pub behind_s: f64,
    /// Sums behind the means.
    #[serde(skip)]
    open_us: u64,
    #[serde(skip)]
    closes: u64,
    #[serde(skip)]
    close_us: u64,
}

/// Running churn threads.
pub struct Churn {
    stop: Arc<AtomicBool>,
    started: Instant,
    threads: Vec<JoinHandle<ChurnFigures>>,
}

impl Churn {
    /// Starts `rate` cycles per second against `targets` (round robin).
    pub fn start(targets: &[Target], rate: f64, threads: usize) -> Churn {
        let stop = Arc::new(AtomicBool::new(false));
        let started = Instant::now();
        let threads = threads.max(1);
        let handles = (0..threads)
            .map(|t| {
                let stop = Arc::clone(&stop);
                let targets = targets.to_vec();
                thread::spawn(move || {
                    cycle_loop(t as u64, threads as u64, rate, &targets, &stop, started)
                })
            })
            .collect();
        Churn {
            stop,
            started,
            threads: handles,
        }
    }

    /// Stops scheduling cycles, waits for those under way, and adds up.
    pub fn finish(self) -> ChurnFigures {
        self.stop.store(true, Ordering::Relaxed);
        let elapsed = self.started.elapsed().as_secs_f64();
        let mut sum = ChurnFigures::default();
        for h in self.threads {
            if let Ok(f) = h.join() {
                sum.cycles += f.cycles;
                sum.failed_connect += f.failed_connect;
                sum.failed_handshake += f.failed_handshake;
                sum.failed_join += f.failed_join;
                sum.close_timeouts += f.close_timeouts;
                sum.open_us += f.open_us;
                sum.closes += f.closes;
                sum.close_us += f.close_us;
                sum.behind_s = sum.behind_s.max(f.behind_s);
            }
        }
        sum.rate = sum.cycles as f64 / elapsed.max(1e-9);
        sum.open_ms_mean = sum.open_us as f64 / 1000.0 / sum.cycles.max(1) as f64;
        sum.close_ms_mean = sum.close_us as f64 / 1000.0 / sum.closes.max(1) as f64;
        sum
    }
}

fn cycle_loop(
    first: u64,
    step: u64,
    rate: f64,
    targets: &[Target],
    stop: &AtomicBool,
    started: Instant,
) -> ChurnFigures {
    let mut f = ChurnFigures::default();
    let mut k = first;
    while !stop.load(Ordering::Relaxed) {
        let due = started + Duration::from_secs_f64(k as f64 / rate.max(1e-9));
        let now = Instant::now();
        if due > now {
            // The schedule, not a synchronisation: nothing to wait for.
            thread::sleep((due - now).min(Duration::from_millis(100)));
            continue;
        }
        let Some(target) = targets.get((k % targets.len().max(1) as u64) as usize) else {
            break;
        };
        let source = Ipv4Addr::new(127, 0, 0, 2 + (k % SOURCES) as u8);
        f.behind_s = now.saturating_duration_since(due).as_secs_f64();
        let channel = format!("churn:{}", k % POOL);
        match blocking::open_joined(source, target, &channel, None, STEP_TIMEOUT) {
            Ok(mut j) => {
                f.cycles += 1;
                let opened = Instant::now();
                f.open_us += opened.saturating_duration_since(now).as_micros() as u64;
                if k.is_multiple_of(2) {
                    let deadline = opened + STEP_TIMEOUT;
                    if blocking::close_cleanly(&mut j, deadline) == Ending::Timeout {
                        f.close_timeouts += 1;
                    }
                    f.closes += 1;
                    f.close_us += opened.elapsed().as_micros() as u64;
                } else {
                    let _ = SockRef::from(&j.stream).set_linger(Some(Duration::ZERO));
                }
            }
            Err(Step::Connect) => f.failed_connect += 1,
            Err(Step::Handshake) => f.failed_handshake += 1,
            Err(Step::Join) => f.failed_join += 1,
        }
        k += step;
    }
    f
}
