//! The `/metrics` exposition read back by an independent parser of the
//! Prometheus text format (the `prometheus-parse` crate), so the output is
//! checked against someone else's reading of format 0.0.4, not ours.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use prometheus_parse::{Scrape, Value};
use switchboard::metrics::{
    render, DeliveredType, Gauges, HttpRoute, MsgType, WorkerMetrics, BUCKETS,
};

const FAMILIES: [&str; 21] = [
    "switchboard_workers",
    "switchboard_connections",
    "switchboard_channels",
    "switchboard_draining",
    "switchboard_broker_up",
    "switchboard_messages_received_total",
    "switchboard_messages_delivered_total",
    "switchboard_bytes_received_total",
    "switchboard_bytes_sent_total",
    "switchboard_errors_total",
    "switchboard_closes_total",
    "switchboard_rate_limited_total",
    "switchboard_redis_reconnects_total",
    "switchboard_tls_handshake_failures_total",
    "switchboard_http_requests_total",
    "switchboard_recoveries_total",
    "switchboard_replayed_events_total",
    "switchboard_broker_round_trip_seconds",
    "switchboard_loop_iteration_seconds",
    "switchboard_fanout_seconds",
    "switchboard_write_delay_seconds",
];

fn parse(text: &str) -> Scrape {
    match Scrape::parse(text.lines().map(|l| Ok(l.to_string()))) {
        Ok(s) => s,
        Err(e) => panic!("unparsable exposition: {e}\n{text}"),
    }
}

/// Every scalar sample as `name{label="value"}` → value.
fn scalars(s: &Scrape) -> HashMap<String, f64> {
    let mut out = HashMap::new();
    for sample in &s.samples {
        let v = match sample.value {
            Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => v,
            Value::Histogram(_) | Value::Summary(_) => continue,
        };
        let labels = sample.labels.to_string();
        let key = if labels.is_empty() {
            sample.metric.clone()
        } else {
            format!("{}{{{labels}}}", sample.metric)
        };
        assert!(
            out.insert(key.clone(), v).is_none(),
            "duplicate sample {key}"
        );
    }
    out
}

fn get(m: &HashMap<String, f64>, key: &str) -> f64 {
    match m.get(key) {
        Some(v) => *v,
        None => panic!("no sample {key}; have {:?}", m.keys().collect::<Vec<_>>()),
    }
}

fn workers(n: usize) -> Vec<Arc<WorkerMetrics>> {
    (0..n).map(|_| Arc::new(WorkerMetrics::new())).collect()
}

#[test]
fn every_family_has_exactly_one_help_and_one_type() {
    let text = render(&workers(2), &Gauges::default());
    let scrape = parse(&text);
    for f in FAMILIES {
        let help = text
            .lines()
            .filter(|l| l.starts_with(&format!("# HELP {f} ")))
            .count();
        let ty = text
            .lines()
            .filter(|l| l.starts_with(&format!("# TYPE {f} ")))
            .count();
        assert_eq!((help, ty), (1, 1), "{f}");
        assert!(scrape.docs.contains_key(f), "parser saw no HELP for {f}");
    }
    let all_help = text.lines().filter(|l| l.starts_with("# HELP ")).count();
    assert_eq!(all_help, FAMILIES.len(), "a family not in the list");
}

#[test]
fn values_move_as_traffic_flows_and_sum_across_workers() {
    let w = workers(3);
    let g = Gauges {
        connections: 5,
        channels: 2,
        draining: false,
        broker_up: true,
    };
    let before = scalars(&parse(&render(&w, &g)));
    assert_eq!(
        get(
            &before,
            r#"switchboard_messages_received_total{type="user_action"}"#
        ),
        0.0
    );

    for (i, m) in w.iter().enumerate() {
        m.received(MsgType::Action);
        m.received(MsgType::Invalid);
        m.delivered(DeliveredType::UserAction, 1_000);
        m.bytes_in(10);
        m.bytes_out(1 << 20);
        m.error("rate_limited");
        m.error("too_large");
        m.rate_limited();
        m.close(if i == 0 { 4008 } else { 1011 });
        m.http(HttpRoute::Metrics);
        m.redis_reconnect();
        m.recovery(i != 1);
        m.replayed(4);
    }
    let g = Gauges {
        connections: 9,
        channels: 0,
        draining: true,
        broker_up: false,
    };
    let after = scalars(&parse(&render(&w, &g)));
    for (key, want) in [
        ("switchboard_workers", 3.0),
        ("switchboard_connections", 9.0),
        ("switchboard_channels", 0.0),
        ("switchboard_draining", 1.0),
        ("switchboard_broker_up", 0.0),
        (
            r#"switchboard_messages_received_total{type="user_action"}"#,
            3.0,
        ),
        (
            r#"switchboard_messages_received_total{type="invalid"}"#,
            3.0,
        ),
        (r#"switchboard_messages_received_total{type="ping"}"#, 0.0),
        (
            r#"switchboard_messages_delivered_total{type="user_action"}"#,
            3000.0,
        ),
        (r#"switchboard_messages_delivered_total{type="reply"}"#, 0.0),
        ("switchboard_bytes_received_total", 30.0),
        ("switchboard_bytes_sent_total", 3.0 * f64::from(1u32 << 20)),
        (r#"switchboard_errors_total{code="rate_limited"}"#, 3.0),
        (r#"switchboard_errors_total{code="other"}"#, 3.0),
        (r#"switchboard_errors_total{code="bad_request"}"#, 0.0),
        ("switchboard_rate_limited_total", 3.0),
        (r#"switchboard_closes_total{code="4008"}"#, 1.0),
        (r#"switchboard_closes_total{code="other"}"#, 2.0),
        (r#"switchboard_http_requests_total{route="metrics"}"#, 3.0),
        ("switchboard_redis_reconnects_total", 3.0),
        (r#"switchboard_recoveries_total{result="recovered"}"#, 2.0),
        (
            r#"switchboard_recoveries_total{result="not_recovered"}"#,
            1.0,
        ),
        ("switchboard_replayed_events_total", 12.0),
    ] {
        assert_eq!(get(&after, key), want, "{key}");
    }
}

#[test]
fn histograms_are_cumulative_and_inf_equals_count() {
    let w = workers(2);
    for (i, nanos) in [30_000u64, 60_000, 60_000, 3_000_000, 2_000_000_000]
        .iter()
        .enumerate()
    {
        w[i % 2].broker_rtt.observe(*nanos);
    }
    let scrape = parse(&render(&w, &Gauges::default()));
    let s = scalars(&scrape);
    let hist = scrape
        .samples
        .iter()
        .find(|x| x.metric == "switchboard_broker_round_trip_seconds")
        .map(|x| x.value.clone());
    let Some(Value::Histogram(buckets)) = hist else {
        panic!("parser found no histogram: {hist:?}");
    };
    assert_eq!(buckets.len(), BUCKETS + 1);
    assert!(buckets.windows(2).all(|b| b[0].less_than < b[1].less_than));
    assert!(
        buckets.windows(2).all(|b| b[0].count <= b[1].count),
        "{buckets:?}"
    );
    let inf = buckets.last().map(|b| (b.less_than, b.count));
    assert_eq!(inf, Some((f64::INFINITY, 5.0)));
    assert_eq!(get(&s, "switchboard_broker_round_trip_seconds_count"), 5.0);
    let sum = get(&s, "switchboard_broker_round_trip_seconds_sum");
    assert!((sum - 2.00315).abs() < 1e-9, "{sum}");
    let at = |le: f64| buckets.iter().find(|b| b.less_than == le).map(|b| b.count);
    assert_eq!(at(0.00005), Some(1.0));
    assert_eq!(at(0.0001), Some(3.0));
    assert_eq!(at(0.005), Some(4.0));
    assert_eq!(at(1.0), Some(4.0));
}

/// Workers write while another thread scrapes: no scrape sees a counter go
/// down, every scrape has `+Inf == _count`, and the last one sees every add.
#[test]
fn concurrent_scrapes_see_monotonic_counters_and_consistent_histograms() {
    const ADDS: u64 = 20_000;
    let w = workers(2);
    let done = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = w
        .iter()
        .map(|m| {
            let m = Arc::clone(m);
            std::thread::spawn(move || {
                for i in 0..ADDS {
                    m.received(MsgType::Ping);
                    m.loop_time.observe(i * 100);
                }
            })
        })
        .collect();
    let key = r#"switchboard_messages_received_total{type="ping"}"#;
    let handle = {
        let (w, done) = (w.clone(), Arc::clone(&done));
        std::thread::spawn(move || {
            let (mut last, mut scrapes) = (0.0, 0u32);
            loop {
                let finished = done.load(Ordering::Relaxed);
                let scrape = parse(&render(&w, &Gauges::default()));
                let s = scalars(&scrape);
                let v = get(&s, key);
                assert!(v >= last, "went down: {last} -> {v}");
                last = v;
                let count = get(&s, "switchboard_loop_iteration_seconds_count");
                let inf = scrape.samples.iter().find_map(|x| match &x.value {
                    Value::Histogram(b) if x.metric == "switchboard_loop_iteration_seconds" => {
                        b.last().map(|b| b.count)
                    }
                    _ => None,
                });
                assert_eq!(inf, Some(count));
                scrapes += 1;
                // At least one scrape after the writers are done, and two in
                // all even when the writers finish before the first.
                if finished && scrapes >= 2 {
                    return scrapes;
                }
            }
        })
    };
    for t in writers {
        assert!(t.join().is_ok());
    }
    done.store(true, Ordering::Relaxed);
    let scrapes = handle.join();
    assert!(
        matches!(scrapes, Ok(n) if n >= 2),
        "scraper failed: {scrapes:?}"
    );
    let s = scalars(&parse(&render(&w, &Gauges::default())));
    assert_eq!(get(&s, key), 2.0 * ADDS as f64);
    assert_eq!(
        get(&s, "switchboard_loop_iteration_seconds_count"),
        2.0 * ADDS as f64
    );
}
