//! The figures of one run: a human summary and one JSON line for scripts.
//!
//! Per-delivery costs divide by deliveries received inside the measured
//! window, the same window the CPU times are sampled over.

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::sampler::Soak;
use crate::stalled::StalledFigures;

/// Latency percentiles in microseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Latency {
    pub p50_us: f64,
    pub p90_us: f64,
    pub p99_us: f64,
    pub p999_us: f64,
    pub max_us: f64,
    pub samples: u64,
}

impl Latency {
    /// Percentiles of a histogram of nanoseconds.
    pub fn from_ns(h: &Histogram<u64>) -> Latency {
        let us = |ns: u64| ns as f64 / 1000.0;
        Latency {
            p50_us: us(h.value_at_quantile(0.50)),
            p90_us: us(h.value_at_quantile(0.90)),
            p99_us: us(h.value_at_quantile(0.99)),
            p999_us: us(h.value_at_quantile(0.999)),
            max_us: us(h.max()),
            samples: h.len(),
        }
    }
}

/// Memory and CPU of the server process(es), when `--server-pid` was given.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct ServerStats {
    pub rss_before_kib: u64,
    pub rss_joined_kib: u64,
    pub rss_end_kib: u64,
    /// (RSS once every connection joined − RSS before connecting) / connections.
    pub rss_per_conn_bytes: f64,
    /// (RSS at the end of the window − RSS before connecting) / connections.
    pub rss_per_conn_loaded_bytes: f64,
    pub cpu_window_us: u64,
    /// Server CPU time over the window / deliveries received in the window.
    pub cpu_us_per_delivery: Option<f64>,
    /// Average cores the server used over the window.
    pub cpu_cores: f64,
}

/// Every figure of one run.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Summary {
    pub scenario: String,
    pub urls: Vec<String>,
    pub threads: usize,
    pub conns_planned: u64,
    pub conns_made: u64,
    pub conns_failed: u64,
    pub fail_connect: u64,
    pub fail_handshake: u64,
    pub fail_join: u64,
    pub fail_timeout: u64,
    pub connect_s: f64,
    pub connects_per_s: f64,
    pub conns_dropped: u64,
    /// Code of the last close frame a server sent, if any (0: none given).
    pub last_close_code: Option<u16>,
    pub channels: u64,
    pub publishers: u64,
    pub rate_per_publisher: f64,
    pub warmup_s: f64,
    pub duration_s: f64,
    pub messages_sent: u64,
    pub messages_sent_in_window: u64,
    /// Longest a publication waited past its scheduled time: when this is
    /// large, the load generator (or the machine) could not keep up.
    pub max_send_lag_ms: f64,
    pub deliveries_expected: u64,
    pub deliveries_received: u64,
    pub lost: u64,
    pub duplicated: u64,
    pub reordered: u64,
    pub unparsed: u64,
    /// Text frames after joining without a stamp (replies, presence events,
    /// or actions a server re-formatted, against PROTOCOL.md §4).
    pub unstamped: u64,
    pub offered_deliveries_per_s: f64,
    pub deliveries_per_s: f64,
    pub latency: Latency,
    pub server: Option<ServerStats>,
    /// This load generator's own CPU per delivery over the window.
    pub client_cpu_us_per_delivery: Option<f64>,
    pub drain_complete: bool,
    /// The URLs were `wss://`.
    pub tls: bool,
    /// permessage-deflate was offered (`--compression`).
    pub compression: bool,
    /// `--action-bytes`: the size published actions were padded to (0: not).
    pub action_bytes: u64,
    /// Messages that arrived compressed (RSV1).
    pub compressed_messages: u64,
    /// Bytes read from the sockets inside the window (TLS records, or
    /// frames as sent, compressed or not), over deliveries in the window.
    pub wire_bytes_per_delivery: Option<f64>,
    /// `--stalled`: how the receivers that stopped reading were closed.
    pub stalled: Option<StalledFigures>,
    /// The server's RSS and open fds sampled over the run (its peak).
    pub soak: Option<Soak>,
}

impl Summary {
    /// Whether anything went missing or wrong (what `--assert-no-loss` checks).
    pub fn problems(&self) -> Vec<String> {
        let mut p = Vec::new();
        let mut check = |n: u64, what: &str| {
            if n > 0 {
                p.push(format!("{n} {what}"));
            }
        };
        check(self.conns_failed, "connections failed");
        check(self.conns_dropped, "connections dropped during the run");
        check(self.lost, "deliveries lost");
        check(self.duplicated, "deliveries duplicated");
        check(self.reordered, "deliveries reordered");
        if self.publishers > 0 && self.deliveries_received == 0 {
            p.push("nothing was delivered".to_owned());
        }
        p
    }

    /// The multi-line human summary.
    pub fn human(&self) -> String {
        let mut s = String::new();
        let mut line = |text: String| {
            s.push_str(&text);
            s.push('\n');
        };
        line(format!(
            "scenario {} against {} ({} thread(s))",
            self.scenario,
            self.urls.join(", "),
            self.threads
        ));
        line(format!(
            "connections  {} made, {} failed (connect {}, handshake {}, join {}, timeout {}) in {:.2} s = {:.0}/s; {} dropped later",
            self.conns_made,
            self.conns_failed,
            self.fail_connect,
            self.fail_handshake,
            self.fail_join,
            self.fail_timeout,
            self.connect_s,
            self.connects_per_s,
            self.conns_dropped
        ));
        line(format!(
            "load         {} channels, {} publishers at {} msg/s, warmup {} s, window {} s",
            self.channels, self.publishers, self.rate_per_publisher, self.warmup_s, self.duration_s
        ));
        line(format!(
            "messages     {} sent ({} in window); longest send lag {:.1} ms",
            self.messages_sent, self.messages_sent_in_window, self.max_send_lag_ms
        ));
        line(format!(
            "deliveries   {} expected, {} received; lost {}, duplicated {}, reordered {}, unparsed {}, unstamped {}{}",
            self.deliveries_expected,
            self.deliveries_received,
            self.lost,
            self.duplicated,
            self.reordered,
            self.unparsed,
            self.unstamped,
            if self.drain_complete { "" } else { " (drain timed out)" }
        ));
        line(format!(
            "rate         {:.0} deliveries/s received of {:.0}/s offered",
            self.deliveries_per_s, self.offered_deliveries_per_s
        ));
        line(format!(
            "wire         {} per delivery received{}{}",
            match self.wire_bytes_per_delivery {
                Some(b) => format!("{b:.1} B"),
                None => "n/a".to_owned(),
            },
            if self.tls { ", TLS" } else { "" },
            if self.compression {
                format!(", {} messages arrived compressed", self.compressed_messages)
            } else {
                String::new()
            }
        ));
        let l = &self.latency;
        line(format!(
            "latency µs   p50 {:.0}  p90 {:.0}  p99 {:.0}  p99.9 {:.0}  max {:.0}  ({} samples)",
            l.p50_us, l.p90_us, l.p99_us, l.p999_us, l.max_us, l.samples
        ));
        if let Some(sv) = &self.server {
            line(format!(
                "server RSS   {} KiB before, {} KiB joined, {} KiB at end: {:.0} B/conn joined, {:.0} B/conn loaded",
                sv.rss_before_kib,
                sv.rss_joined_kib,
                sv.rss_end_kib,
                sv.rss_per_conn_bytes,
                sv.rss_per_conn_loaded_bytes
            ));
            line(format!(
                "server CPU   {:.3} s in window ({:.2} cores){}",
                sv.cpu_window_us as f64 / 1e6,
                sv.cpu_cores,
                fmt_per(sv.cpu_us_per_delivery)
            ));
        }
        line(format!(
            "client CPU  {}",
            fmt_per(self.client_cpu_us_per_delivery)
        ));
        if let Some(k) = &self.soak {
            line(format!(
                "server peak  {} KiB RSS, {} fds ({} samples)",
                k.rss_peak_kib, k.fds_peak, k.samples
            ));
        }
        if let Some(st) = &self.stalled {
            line(format!(
                "stalled      {} (+{} failed to join): {} closed 4008, {} closed otherwise, {} ended without a close frame, {} still open",
                st.stalled, st.failed_to_join, st.closed_4008, st.closed_other, st.closed_eof, st.still_open
            ));
        }
        s
    }
}

fn fmt_per(us: Option<f64>) -> String {
    match us {
        Some(v) => format!(" {v:.3} µs/delivery"),
        None => " n/a (no deliveries)".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_percentiles_in_microseconds() {
        let mut h = Histogram::<u64>::new_with_bounds(1, 100_000_000_000, 3).unwrap();
        for i in 1..=1000u64 {
            h.record(i * 1000).unwrap();
        }
        let l = Latency::from_ns(&h);
        assert!((l.p50_us - 500.0).abs() < 1.0, "{l:?}");
        assert!((l.p99_us - 990.0).abs() < 1.0, "{l:?}");
        assert!((l.max_us - 1000.0).abs() < 1.0, "{l:?}");
        assert_eq!(l.samples, 1000);
    }

    #[test]
    fn problems_name_every_failure() {
        let mut s = Summary {
            publishers: 1,
            deliveries_received: 5,
            ..Summary::default()
        };
        assert!(s.problems().is_empty());
        s.lost = 2;
        s.reordered = 1;
        assert_eq!(
            s.problems(),
            vec!["2 deliveries lost", "1 deliveries reordered"]
        );
        let silent = Summary {
            publishers: 1,
            ..Summary::default()
        };
        assert_eq!(silent.problems(), vec!["nothing was delivered"]);
    }

    #[test]
    fn json_line_is_one_line_with_the_figures() {
        let s = Summary {
            scenario: "fanout".into(),
            deliveries_per_s: 12.5,
            server: Some(ServerStats {
                cpu_us_per_delivery: Some(4.0),
                ..ServerStats::default()
            }),
            ..Summary::default()
        };
        let j = serde_json::to_string(&s).unwrap();
        assert!(!j.contains('\n'));
        let v: serde_json::Value = serde_json::from_str(&j).unwrap();
        assert_eq!(v["deliveries_per_s"], 12.5);
        assert_eq!(v["server"]["cpu_us_per_delivery"], 4.0);
        assert!(s.human().contains("4.000 µs/delivery"));
    }
}
