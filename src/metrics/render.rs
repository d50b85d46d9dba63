//! The scrape: sum every worker's counters and write the Prometheus text
//! exposition format 0.0.4 (`# HELP`, `# TYPE`, then samples, one family
//! at a time; histograms as cumulative `_bucket{le=...}`, `_sum`, `_count`).
//!
//! Runs on the thread serving `GET /metrics`, so it may allocate; it only
//! reads the workers' atomics and never writes them.

use std::fmt::{Display, Write as _};
use std::sync::Arc;

use super::{
    CloseKind, Counter, DeliveredType, HistogramSnapshot, HttpRoute, MsgType, WorkerMetrics,
    BROKER_RTT_BOUNDS, BUCKETS, ERROR_CODES, FANOUT_BOUNDS, LOOP_TIME_BOUNDS, WRITE_DELAY_BOUNDS,
};

/// Values the caller computes at scrape time rather than counting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Gauges {
    /// Open WebSocket connections, all workers.
    pub connections: u64,
    /// Channels with at least one local member.
    pub channels: u64,
    /// The node is draining (SIGTERM/SIGINT received).
    pub draining: bool,
    /// The broker (Redis, or the embedded one) is reachable.
    pub broker_up: bool,
}

/// Sums `workers` and renders every `switchboard_*` family.
pub fn render(workers: &[Arc<WorkerMetrics>], gauges: &Gauges) -> String {
    let mut out = Exposition(String::with_capacity(8 * 1024));
    let sum = |pick: &dyn Fn(&WorkerMetrics) -> &Counter| -> u64 {
        workers
            .iter()
            .fold(0u64, |acc, w| acc.wrapping_add(pick(w).get()))
    };

    out.family(
        "switchboard_workers",
        "gauge",
        "Worker threads, one event loop each.",
    );
    out.sample("switchboard_workers", None, workers.len());
    out.family(
        "switchboard_connections",
        "gauge",
        "Open WebSocket connections.",
    );
    out.sample("switchboard_connections", None, gauges.connections);
    out.family(
        "switchboard_channels",
        "gauge",
        "Channels with at least one local member.",
    );
    out.sample("switchboard_channels", None, gauges.channels);
    out.family(
        "switchboard_draining",
        "gauge",
        "1 while the node drains before exiting.",
    );
    out.sample("switchboard_draining", None, u8::from(gauges.draining));
    out.family(
        "switchboard_broker_up",
        "gauge",
        "1 while the broker is reachable.",
    );
    out.sample("switchboard_broker_up", None, u8::from(gauges.broker_up));

    let name = "switchboard_messages_received_total";
    out.family(
        name,
        "counter",
        "Client requests by type; invalid = failed to parse.",
    );
    for t in MsgType::ALL {
        let v = sum(&|w| &w.received[*t as usize]);
        out.sample(name, Some(("type", t.label())), v);
    }

    let name = "switchboard_messages_delivered_total";
    out.family(name, "counter", "Frames queued to clients, by type.");
    for t in DeliveredType::ALL {
        let v = sum(&|w| &w.delivered[*t as usize]);
        out.sample(name, Some(("type", t.label())), v);
    }

    let name = "switchboard_bytes_received_total";
    out.family(name, "counter", "Bytes read from client sockets.");
    out.sample(name, None, sum(&|w| &w.bytes_in));
    let name = "switchboard_bytes_sent_total";
    out.family(name, "counter", "Bytes written to client sockets.");
    out.sample(name, None, sum(&|w| &w.bytes_out));

    let name = "switchboard_errors_total";
    out.family(name, "counter", "Error frames sent to clients, by code.");
    for (i, code) in ERROR_CODES.iter().enumerate() {
        let v = workers
            .iter()
            .filter_map(|w| w.errors.get(i))
            .fold(0u64, |acc, c| acc.wrapping_add(c.get()));
        out.sample(name, Some(("code", code)), v);
    }

    let name = "switchboard_closes_total";
    out.family(name, "counter", "WebSocket closes, by close code.");
    for k in CloseKind::ALL {
        let v = sum(&|w| &w.closes[*k as usize]);
        out.sample(name, Some(("code", k.label())), v);
    }

    let name = "switchboard_rate_limited_total";
    out.family(
        name,
        "counter",
        "Client requests refused by the rate limiter.",
    );
    out.sample(name, None, sum(&|w| &w.rate_limited));
    let name = "switchboard_redis_reconnects_total";
    out.family(name, "counter", "Reconnections to Redis.");
    out.sample(name, None, sum(&|w| &w.redis_reconnects));
    let name = "switchboard_tls_handshake_failures_total";
    out.family(
        name,
        "counter",
        "Clients dropped in a failed TLS handshake (TLS listener only).",
    );
    out.sample(name, None, sum(&|w| &w.tls_handshake_failures));

    let name = "switchboard_http_requests_total";
    out.family(name, "counter", "HTTP requests, by route.");
    for r in HttpRoute::ALL {
        let v = sum(&|w| &w.http[*r as usize]);
        out.sample(name, Some(("route", r.label())), v);
    }

    let name = "switchboard_recoveries_total";
    out.family(name, "counter", "History recoveries on join, by result.");
    for (i, result) in ["recovered", "not_recovered"].iter().enumerate() {
        let v = workers
            .iter()
            .filter_map(|w| w.recoveries.get(i))
            .fold(0u64, |acc, c| acc.wrapping_add(c.get()));
        out.sample(name, Some(("result", result)), v);
    }
    let name = "switchboard_replayed_events_total";
    out.family(name, "counter", "History events replayed to clients.");
    out.sample(name, None, sum(&|w| &w.replayed));

    let merged = |pick: &dyn Fn(&WorkerMetrics) -> HistogramSnapshot| {
        workers
            .iter()
            .fold(HistogramSnapshot::default(), |mut acc, w| {
                acc.merge(&pick(w));
                acc
            })
    };
    out.histogram(
        "switchboard_broker_round_trip_seconds",
        "Publish to the answer of the channel's owner or Redis.",
        &BROKER_RTT_BOUNDS,
        &merged(&|w| w.broker_rtt.snapshot()),
    );
    out.histogram(
        "switchboard_loop_iteration_seconds",
        "One turn of a worker's event loop.",
        &LOOP_TIME_BOUNDS,
        &merged(&|w| w.loop_time.snapshot()),
    );
    out.histogram(
        "switchboard_fanout_seconds",
        "A message's arrival at a worker to its frame queued on every local recipient.",
        &FANOUT_BOUNDS,
        &merged(&|w| w.fanout.snapshot()),
    );
    out.histogram(
        "switchboard_write_delay_seconds",
        "A connection's first queued frame to the last byte of its backlog written.",
        &WRITE_DELAY_BOUNDS,
        &merged(&|w| w.write_delay.snapshot()),
    );
    out.0
}

/// The JWKS fetch counters of a node with `--jwks` (PROTOCOL.md §6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct JwksGauges {
    pub fetches_ok: u64,
    pub fetches_failed: u64,
    /// Keys in the set in use.
    pub keys: u64,
}

/// The `switchboard_jwks_*` families, appended to [`render`]'s text by a
/// node that has a JWKS.
pub fn render_jwks(g: &JwksGauges) -> String {
    let mut out = Exposition(String::with_capacity(512));
    let name = "switchboard_jwks_fetches_total";
    out.family(
        name,
        "counter",
        "JWKS loads and refreshes, by result; a failed one keeps the last good set.",
    );
    out.sample(name, Some(("result", "ok")), g.fetches_ok);
    out.sample(name, Some(("result", "error")), g.fetches_failed);
    out.family("switchboard_jwks_keys", "gauge", "Keys in the JWKS in use.");
    out.sample("switchboard_jwks_keys", None, g.keys);
    out.0
}

/// The output being built. Writing to a `String` cannot fail, so the
/// `fmt::Result`s are dropped.
struct Exposition(String);

impl Exposition {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = write!(self.0, "# HELP {name} {help}\n# TYPE {name} {kind}\n");
    }

    fn sample(&mut self, name: &str, label: Option<(&str, &str)>, value: impl Display) {
        // Label values here are all compile-time constants without `"`,
        // `\` or newlines, so no escaping is needed.
        let _ = match label {
            Some((k, v)) => writeln!(self.0, "{name}{{{k}=\"{v}\"}} {value}"),
            None => writeln!(self.0, "{name} {value}"),
        };
    }

    fn histogram(
        &mut self,
        name: &str,
        help: &str,
        bounds: &[u64; BUCKETS],
        snap: &HistogramSnapshot,
    ) {
        self.family(name, "histogram", help);
        let mut cumulative = 0u64;
        for (bound, count) in bounds.iter().zip(&snap.counts) {
            cumulative = cumulative.wrapping_add(*count);
            let _ = writeln!(
                self.0,
                "{name}_bucket{{le=\"{}\"}} {cumulative}",
                Seconds(*bound)
            );
        }
        let _ = write!(
            self.0,
            "{name}_bucket{{le=\"+Inf\"}} {}\n{name}_sum {}\n{name}_count {}\n",
            snap.count(),
            Seconds(snap.sum_nanos),
            snap.count(),
        );
    }
}

/// Nanoseconds shown as exact decimal seconds (`50000` → `0.00005`,
/// `1000000000` → `1`), with no float rounding on the way.
struct Seconds(u64);

impl Display for Seconds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (secs, mut frac) = (self.0 / 1_000_000_000, self.0 % 1_000_000_000);
        if frac == 0 {
            return write!(f, "{secs}");
        }
        let mut digits = 9;
        while frac % 10 == 0 {
            frac /= 10;
            digits -= 1;
        }
        write!(f, "{secs}.{frac:0digits$}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_are_exact_decimals() {
        assert_eq!(Seconds(0).to_string(), "0");
        assert_eq!(Seconds(50_000).to_string(), "0.00005");
        assert_eq!(Seconds(2_500_000).to_string(), "0.0025");
        assert_eq!(Seconds(1_000_000_000).to_string(), "1");
        assert_eq!(Seconds(1_000_000_001).to_string(), "1.000000001");
        assert_eq!(Seconds(u64::MAX).to_string(), "18446744073.709551615");
    }

    #[test]
    fn every_family_has_help_and_type_once_before_its_samples() {
        let w = vec![Arc::new(WorkerMetrics::new())];
        let text = render(&w, &Gauges::default());
        let mut seen = std::collections::HashSet::new();
        let mut current = String::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# HELP ") {
                let name = rest.split(' ').next().unwrap_or_default().to_string();
                assert!(seen.insert(name.clone()), "HELP twice for {name}");
                current = name;
            } else if let Some(rest) = line.strip_prefix("# TYPE ") {
                assert_eq!(rest.split(' ').next(), Some(current.as_str()));
            } else {
                assert!(line.starts_with(&current), "{line} outside {current}");
            }
        }
        assert_eq!(seen.len(), 21);
    }

    #[test]
    fn sums_workers_and_renders_gauges() {
        let w: Vec<_> = (0..3).map(|_| Arc::new(WorkerMetrics::new())).collect();
        for (i, m) in w.iter().enumerate() {
            m.received(MsgType::Action);
            m.bytes_out(100 * (i as u64 + 1));
            m.error("not_joined");
        }
        let g = Gauges {
            connections: 7,
            channels: 2,
            draining: true,
            broker_up: false,
        };
        let text = render(&w, &g);
        for want in [
            "switchboard_workers 3\n",
            "switchboard_connections 7\n",
            "switchboard_channels 2\n",
            "switchboard_draining 1\n",
            "switchboard_broker_up 0\n",
            "switchboard_messages_received_total{type=\"user_action\"} 3\n",
            "switchboard_messages_received_total{type=\"join_channel\"} 0\n",
            "switchboard_bytes_sent_total 600\n",
            "switchboard_errors_total{code=\"not_joined\"} 3\n",
        ] {
            assert!(text.contains(want), "missing {want:?} in\n{text}");
        }
    }

    #[test]
    fn histogram_lines_are_cumulative_and_end_with_inf_sum_count() {
        let w = vec![
            Arc::new(WorkerMetrics::new()),
            Arc::new(WorkerMetrics::new()),
        ];
        w[0].loop_time.observe(4_000);
        w[1].loop_time.observe(4_000);
        w[1].loop_time.observe(20_000);
        w[1].loop_time.observe(1_000_000_000);
        let text = render(&w, &Gauges::default());
        let n = "switchboard_loop_iteration_seconds";
        for want in [
            format!("{n}_bucket{{le=\"0.000005\"}} 2\n"),
            format!("{n}_bucket{{le=\"0.00001\"}} 2\n"),
            format!("{n}_bucket{{le=\"0.000025\"}} 3\n"),
            format!("{n}_bucket{{le=\"0.1\"}} 3\n"),
            format!("{n}_bucket{{le=\"+Inf\"}} 4\n"),
            format!("{n}_sum 1.000028\n"),
            format!("{n}_count 4\n"),
        ] {
            assert!(text.contains(&want), "missing {want:?} in\n{text}");
        }
    }
}
