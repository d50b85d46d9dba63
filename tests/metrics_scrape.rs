//! `GET /metrics` on a running server: Prometheus text that a standard
//! parser reads, whose values move as traffic flows (issue 5).

mod common;

use std::time::{Duration, Instant};

use common::*;
use prometheus_parse::{Scrape, Value};
use serde_json::json;

fn scrape(s: &Server) -> Scrape {
    let r = s.http_get("/metrics");
    assert_eq!(r.status, 200);
    assert!(
        r.header("content-type")
            .is_some_and(|t| t.starts_with("text/plain; version=0.0.4")),
        "{:?}",
        r.headers
    );
    let text = String::from_utf8(r.body).expect("utf-8");
    Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).expect("parses")
}

/// The value of `name` whose labels include every pair of `labels`.
fn value(s: &Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    s.samples
        .iter()
        .filter(|x| x.metric == name)
        .filter(|x| labels.iter().all(|(k, v)| x.labels.get(k) == Some(*v)))
        .map(|x| match x.value {
            Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => v,
            _ => 0.0,
        })
        .sum()
}

#[test]
fn metrics_move_with_traffic() {
    let s = Server::start(&[]);
    let before = scrape(&s);
    assert_eq!(value(&before, "switchboard_connections", &[]), 0.0);
    assert_eq!(value(&before, "switchboard_broker_up", &[]), 1.0);

    let mut a = s.connect("user=alice");
    let mut b = s.connect("user=bob");
    a.join("m:1");
    b.join("m:1");
    a.send_json(json!({"type": "user_action", "id": 7, "channel": "m:1", "action": 1}));
    b.recv_until(|v| v["type"] == "user_action");
    a.recv_until(|v| v["type"] == "ack");
    a.send_json(json!({"type": "leave_channel", "id": 8, "channel": "nope"}));
    a.recv_until(|v| v["type"] == "error");

    let after = scrape(&s);
    assert_eq!(value(&after, "switchboard_connections", &[]), 2.0);
    assert_eq!(value(&after, "switchboard_channels", &[]), 1.0);
    assert_eq!(
        value(
            &after,
            "switchboard_messages_received_total",
            &[("type", "user_action")]
        ),
        1.0
    );
    assert_eq!(
        value(
            &after,
            "switchboard_messages_received_total",
            &[("type", "join_channel")]
        ),
        2.0
    );
    assert_eq!(
        value(
            &after,
            "switchboard_messages_delivered_total",
            &[("type", "user_action")]
        ),
        2.0,
        "one action, two members"
    );
    assert_eq!(
        value(
            &after,
            "switchboard_errors_total",
            &[("code", "not_joined")]
        ),
        1.0
    );
    assert!(value(&after, "switchboard_bytes_received_total", &[]) > 0.0);
    assert!(
        value(&after, "switchboard_bytes_sent_total", &[])
            > value(&before, "switchboard_bytes_sent_total", &[])
    );
    assert!(
        value(
            &after,
            "switchboard_http_requests_total",
            &[("route", "metrics")]
        ) >= 1.0
    );

    // The server's own latency: one fan-out observed (two recipients, one
    // observation), and written backlogs.
    let count = |s: &Scrape, name: &str| -> f64 {
        s.samples
            .iter()
            .filter(|x| x.metric == name)
            .filter_map(|x| match &x.value {
                Value::Histogram(b) => b.last().map(|b| b.count),
                _ => None,
            })
            .sum()
    };
    assert!(count(&after, "switchboard_fanout_seconds") >= 1.0);
    assert!(
        count(&after, "switchboard_write_delay_seconds")
            > count(&before, "switchboard_write_delay_seconds")
    );

    drop(a);
    drop(b);
}

/// `switchboard_closes_total{code}` counts each WebSocket once, by the code
/// that closed it: one the client sent (echoed), one the server decided,
/// and 1006 for a peer that hung up without a close handshake.
#[test]
fn closes_are_counted_by_code() {
    let s = Server::start(&[]);
    let closes = |sc: &Scrape, code: &str| value(sc, "switchboard_closes_total", &[("code", code)]);
    let before = scrape(&s);
    for code in ["1000", "1002", "1006", "4008", "other"] {
        assert_eq!(closes(&before, code), 0.0, "{code}");
    }

    // The client closes: the server echoes its code.
    let mut a = Raw::ws(s.addr, "user=a");
    a.send(&close_frame(1000));
    a.expect_close(1000);
    // The server closes: a protocol violation.
    let mut b = Raw::ws(s.addr, "user=b");
    b.send_lossy(&encode_frame(true, 0, OP_TEXT, None, b"{}"));
    b.expect_close(1002);
    // The client hangs up without a close frame.
    drop(Raw::ws(s.addr, "user=c"));

    // The hang-up is seen whenever the worker reads the EOF: scrape until
    // it is counted, within the test's timeout.
    let deadline = Instant::now() + TIMEOUT;
    let after = loop {
        let sc = scrape(&s);
        if closes(&sc, "1006") >= 1.0 || Instant::now() >= deadline {
            break sc;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(closes(&after, "1000"), 1.0);
    assert_eq!(closes(&after, "1002"), 1.0);
    assert_eq!(closes(&after, "1006"), 1.0);
    let total: f64 = [
        "1000", "1001", "1002", "1006", "1007", "1009", "4008", "4009", "4010", "other",
    ]
    .iter()
    .map(|c| closes(&after, c))
    .sum();
    assert_eq!(total, 3.0, "each WebSocket is counted once");
}
