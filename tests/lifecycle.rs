//! PROTOCOL.md §2 heartbeat and §8/§9 shutdown: server pings, the
//! three-interval silence close (1001), and the drain on SIGTERM.

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::json;

#[test]
fn silent_client_is_pinged_then_closed_1001() {
    let s = Server::start(&["--heartbeat", "1"]);
    let started = Instant::now();
    // A raw client completes the handshake and then never sends a byte (it
    // does not even answer pings).
    let mut raw = Raw::ws(s.addr, "user=silent");
    assert_eq!(raw.welcome["heartbeat_s"].as_u64(), Some(1));
    let (code, before) = raw.read_until_close(Duration::from_secs(6));
    let took = started.elapsed();
    assert_eq!(code, Some(1001), "heartbeat timeout close code");
    let pings = before.iter().filter(|f| f.opcode == OP_PING).count();
    assert!(pings >= 1, "the server pinged before giving up: {before:?}");
    assert!(
        took >= Duration::from_secs(2),
        "closed after {took:?}: sooner than three 1 s heartbeats allow"
    );
    assert!(
        took <= Duration::from_millis(5_500),
        "closed after {took:?}"
    );
}

#[test]
fn client_answering_pings_stays_open() {
    let s = Server::start(&["--heartbeat", "1"]);
    let mut c = s.connect("user=alive");
    // Reading is what answers pings (tungstenite queues the pong, the client
    // flushes it), and the client sends nothing else: only pongs keep it
    // alive. Watch for 4.5 s, past three intervals.
    c.expect_silence(Duration::from_millis(4_500));
    assert!(c.pings >= 3, "expected a ping per second, saw {}", c.pings);
    c.send_json(json!({"type": "ping", "id": 1}));
    assert_eq!(c.recv_json(), json!({"type": "pong", "id": 1}));
}

#[test]
fn sigterm_closes_every_websocket_1001_and_exits_zero() {
    let mut s = Server::start(&["--drain-s", "2"]);
    let [mut w0, mut w1] = connect_on_both_workers(&s, "d", 1);
    let mut clients: Vec<Client> = w0.drain(..).chain(w1.drain(..)).collect();
    for c in clients.iter_mut() {
        c.join("drain:1");
    }
    // One raw client that will not answer the close: the drain must not wait
    // for it longer than --drain-s.
    let mut stubborn = Raw::ws(s.addr, "user=stubborn");

    s.signal(libc::SIGTERM);
    let signalled = Instant::now();
    for c in clients.iter_mut() {
        c.expect_close(1001);
    }
    let (code, _) = stubborn.read_until_close(TIMEOUT);
    assert_eq!(code, Some(1001));

    // While draining, /healthz answers 503 if it answers at all (the node may
    // already have stopped accepting, which is just as good for a balancer).
    if let Ok(resp) = try_http(s.addr, &get_request(s.addr, "/healthz")) {
        assert_eq!(resp.status, 503, "healthz while draining: {resp:?}");
    }

    let budget = Duration::from_secs(3); // --drain-s 2, plus 1 s
    let status = s
        .wait_exit(budget.saturating_sub(signalled.elapsed()))
        .unwrap_or_else(|| panic!("still running {budget:?} after SIGTERM with --drain-s 2"));
    assert!(status.success(), "exit status after a drain: {status}");
}

#[test]
fn sigint_drains_like_sigterm() {
    let mut s = Server::start(&["--drain-s", "1"]);
    let mut c = s.connect("user=a");
    s.signal(libc::SIGINT);
    let signalled = Instant::now();
    c.expect_close(1001);
    let status = s
        .wait_exit(Duration::from_secs(2).saturating_sub(signalled.elapsed()))
        .unwrap_or_else(|| panic!("still running 2 s after SIGINT with --drain-s 1"));
    assert!(status.success(), "{status}");
}
