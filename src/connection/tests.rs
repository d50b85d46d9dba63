//! A connection driven with no socket: bytes in, owner messages and bytes
//! out, the time passed in.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde_json::{json, Value};

use super::{Connection, Cx};
use crate::broker::{Msg, Outbox, ToOwner};
use crate::config::Config;
use crate::id::ConnId;
use crate::metrics::WorkerMetrics;
use crate::node::Node;
use crate::ws::deflate::Codec;

const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

/// One worker's surroundings: the node, counters, the outbox, the clock.
struct Harness {
    node: Node,
    metrics: WorkerMetrics,
    out: Outbox,
    seq: u64,
    now: Instant,
    deflate: Codec,
}

impl Harness {
    fn new(config: Config) -> Self {
        let config = Config {
            threads: 1,
            node: "t".into(),
            ..config
        };
        Harness {
            node: Node::new(Arc::new(config), 1, false, None),
            metrics: WorkerMetrics::new(),
            out: Outbox::new(1),
            seq: 1,
            now: Instant::now(),
            deflate: Codec::default(),
        }
    }

    fn cx(&mut self) -> Cx<'_> {
        Cx {
            now: self.now,
            unix_secs: 0,
            node: &self.node,
            metrics: &self.metrics,
            out: &mut self.out,
            conn_seq: &mut self.seq,
            deflate: &mut self.deflate,
        }
    }

    fn conn(&mut self) -> Connection {
        Connection::new(ConnId::new(0, 7, 1), &self.cx())
    }

    fn input(&mut self, c: &mut Connection, bytes: &[u8]) {
        let mut data = bytes.to_vec();
        c.handle_input(&mut data, &mut self.cx());
    }

    /// What the connection asked of owners since the last call.
    fn take_asked(&mut self) -> Vec<ToOwner> {
        std::mem::take(self.out.queue_mut(0))
            .into_iter()
            .map(|m| match m {
                Msg::Owner(m) => m,
                Msg::Worker(m) => panic!("a connection sends only to owners: {m:?}"),
            })
            .collect()
    }

    /// An open WebSocket, its welcome read.
    fn ws(&mut self, query: &str) -> Connection {
        let mut c = self.conn();
        let head = format!(
            "GET /ws?{query} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        );
        self.input(&mut c, head.as_bytes());
        let out = written(&mut c);
        let text = String::from_utf8_lossy(&out);
        assert!(text.starts_with("HTTP/1.1 101"), "{text}");
        let body = &out[text.find("\r\n\r\n").expect("head end") + 4..];
        let welcome = frames(body);
        assert_eq!(welcome[0].1["type"], "welcome");
        c
    }
}

/// Everything queued for the peer, as written to a socket.
fn written(c: &mut Connection) -> Vec<u8> {
    let mut sink = Vec::new();
    c.transmit().write_to(&mut sink).expect("in-memory write");
    sink
}

/// A masked client text frame (RFC 6455 §5.3).
fn client_text(v: Value) -> Vec<u8> {
    let payload = v.to_string().into_bytes();
    assert!(payload.len() < 126);
    let mask = [1u8, 2, 3, 4];
    let mut f = vec![0x81, 0x80 | payload.len() as u8];
    f.extend_from_slice(&mask);
    f.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    f
}

/// Server frames as (opcode, JSON or close code as JSON).
fn frames(mut buf: &[u8]) -> Vec<(u8, Value)> {
    let mut out = Vec::new();
    while !buf.is_empty() {
        let op = buf[0] & 0x0f;
        let (len, head) = match buf[1] {
            126 => (usize::from(u16::from_be_bytes([buf[2], buf[3]])), 4),
            n => (usize::from(n), 2),
        };
        let payload = &buf[head..head + len];
        out.push(match op {
            0x8 => (op, json!(u16::from_be_bytes([payload[0], payload[1]]))),
            0x9 => (op, Value::Null),
            _ => (op, serde_json::from_slice(payload).expect("JSON")),
        });
        buf = &buf[head + len..];
    }
    out
}

fn ack(id: u64) -> Bytes {
    crate::ws::text_frame_with(|b| crate::proto::server::ack(b, Some(id), "c", None))
}

#[test]
fn upgrade_join_and_the_owners_answer() {
    let mut h = Harness::new(Config::default());
    let mut c = h.ws("user=alice");
    h.input(
        &mut c,
        &client_text(json!({"type": "join_channel", "channel": "c", "id": 1})),
    );
    let asked = h.take_asked();
    assert!(
        matches!(&asked[..], [ToOwner::Join { channel, id: Some(1), rejoin: false, .. }] if &**channel == "c"),
        "{asked:?}"
    );
    assert!(
        written(&mut c).is_empty(),
        "nothing before the owner answers"
    );
    assert!(c.takes_events() && c.event_queue().is_some());
    let joined = crate::ws::text_frame_with(|b| {
        crate::proto::server::joined(b, Some(1), "c", None, None, None, None)
    });
    c.handle_joined(vec![joined], &mut h.cx());
    assert_eq!(frames(&written(&mut c))[0].1["type"], "joined");
}

#[test]
fn a_close_decided_while_acks_are_owed_waits_for_them() {
    let mut h = Harness::new(Config {
        rate: 1,
        burst: 2,
        ..Config::default()
    });
    let mut c = h.ws("user=a");
    let mut burst = client_text(json!({"type": "join_channel", "channel": "c"}));
    for id in 1..=12 {
        burst.extend(client_text(
            json!({"type": "user_action", "channel": "c", "id": id, "action": 1}),
        ));
    }
    h.input(&mut c, &burst);
    // The join and one action were admitted; ten refusals decided a 4009,
    // which left the channel.
    let asked = h.take_asked();
    assert!(
        matches!(
            &asked[..],
            [
                ToOwner::Join { .. },
                ToOwner::Publish { id: Some(1), .. },
                ToOwner::Leave { reply: false, .. }
            ]
        ),
        "{asked:?}"
    );
    assert!(!c.takes_events(), "a decided close takes no more events");
    assert!(written(&mut c).is_empty(), "the errors wait behind the ack");
    c.handle_joined(vec![], &mut h.cx());
    assert!(written(&mut c).is_empty(), "the ack is still owed");
    c.handle_reply(ack(1), true, &mut h.cx());
    let got = frames(&written(&mut c));
    assert_eq!(got[0].1["type"], "ack");
    assert!(got[1..11].iter().all(|(_, v)| v["code"] == "rate_limited"));
    assert_eq!(got[11], (0x8, json!(4009)));
    assert_eq!(got.len(), 12);
    assert_eq!(h.metrics.closes_of(4009), 1, "counted once, when decided");
    assert!(
        c.poll_shutdown(h.now),
        "half-close once the close frame is out"
    );
}

#[test]
fn the_wait_for_owed_replies_ends_at_its_deadline() {
    let mut h = Harness::new(Config::default());
    let mut c = h.ws("user=a");
    h.input(
        &mut c,
        &client_text(json!({"type": "join_channel", "channel": "c", "id": 1})),
    );
    // The peer closes before the owner answered.
    h.input(&mut c, &[0x88, 0x82, 0, 0, 0, 0, 0x03, 0xe8]);
    assert!(written(&mut c).is_empty());
    let deadline = c.poll_timeout(&h.cx()).expect("a deadline");
    assert!(deadline > h.now);
    h.now = deadline;
    c.handle_timeout(&mut h.cx());
    assert_eq!(frames(&written(&mut c)), vec![(0x8, json!(1000))]);
}

#[test]
fn heartbeat_pings_then_a_silent_peer_is_closed_1001() {
    let mut h = Harness::new(Config {
        heartbeat: Duration::from_secs(1),
        ..Config::default()
    });
    let mut c = h.ws("user=a");
    h.now += Duration::from_secs(1);
    c.handle_timeout(&mut h.cx());
    assert_eq!(frames(&written(&mut c)), vec![(0x9, Value::Null)]);
    h.now += Duration::from_secs(2);
    c.handle_timeout(&mut h.cx());
    assert_eq!(frames(&written(&mut c)), vec![(0x8, json!(1001))]);
    assert_eq!(
        h.metrics.closes_of(1001),
        1,
        "switchboard_closes_total counts it"
    );
    assert!(c.poll_shutdown(h.now));
    h.now += super::CLOSE_GRACE;
    c.handle_timeout(&mut h.cx());
    assert!(c.is_done(), "the grace is over");
}

#[test]
fn a_close_frame_not_yet_written_waits_for_a_peer_that_does_not_read() {
    let mut h = Harness::new(Config {
        heartbeat: Duration::from_secs(1),
        ..Config::default()
    });
    let mut c = h.ws("user=a");
    let _ = written(&mut c);
    h.now += Duration::from_secs(3);
    c.handle_timeout(&mut h.cx());
    // The peer's kernel buffers are full: the close frame stays queued.
    assert!(
        !c.poll_shutdown(h.now),
        "the close frame is not written yet"
    );
    h.now += super::CLOSE_GRACE;
    c.handle_timeout(&mut h.cx());
    assert!(!c.is_done(), "a peer that reads within FLUSH_GRACE gets it");
    h.now += super::FLUSH_GRACE / 2;
    assert_eq!(frames(&written(&mut c)), vec![(0x8, json!(1001))]);
    assert_eq!(
        h.metrics.closes_of(1001),
        1,
        "switchboard_closes_total counts it"
    );
    assert!(c.poll_shutdown(h.now));
    h.now += super::CLOSE_GRACE;
    c.handle_timeout(&mut h.cx());
    assert!(c.is_done(), "CLOSE_GRACE after the half-close");

    let mut mute = h.ws("user=b");
    let _ = written(&mut mute);
    h.now += Duration::from_secs(3);
    mute.handle_timeout(&mut h.cx());
    h.now += super::FLUSH_GRACE;
    mute.handle_timeout(&mut h.cx());
    assert!(mute.is_done(), "a peer that never reads is dropped");
}

#[test]
fn an_http_exchange_answers_then_half_closes_and_a_slow_head_times_out() {
    let mut h = Harness::new(Config::default());
    let mut c = h.conn();
    h.input(
        &mut c,
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    let out = String::from_utf8(written(&mut c)).expect("text");
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    assert!(c.poll_shutdown(h.now));
    assert!(!c.poll_shutdown(h.now), "once");

    let mut slow = h.conn();
    h.input(&mut slow, b"GET /ws HTTP/1.1\r\n");
    h.now += h.node.config.handshake_timeout;
    slow.handle_timeout(&mut h.cx());
    assert!(slow.is_done());
}

#[test]
fn a_pipelined_request_waits_for_the_api_answer() {
    let mut h = Harness::new(Config::default());
    let mut c = h.conn();
    let publish = "POST /api/publish HTTP/1.1\r\nHost: x\r\nContent-Length: 29\r\n\r\n\
                   {\"channel\":\"c\",\"action\":1}   ";
    let health = "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n";
    h.input(&mut c, format!("{publish}{health}").as_bytes());
    assert!(
        matches!(&h.take_asked()[..], [ToOwner::Publish { .. }]),
        "the publish goes to the owner"
    );
    assert!(written(&mut c).is_empty(), "healthz waits behind it");
    c.handle_answer(crate::broker::Answer::Published(None), &mut h.cx());
    let out = String::from_utf8(written(&mut c)).expect("text");
    assert_eq!(out.matches("HTTP/1.1 200").count(), 2, "{out}");
    assert!(out.find("{}").expect("publish body") < out.find("ok").expect("health body"));
    assert!(c.take_read_again(), "the socket is read again");
}

#[path = "token_tests.rs"]
mod token;

/// What every open connection holds inline, whatever it does: the slab
/// entry (a `Connection` beside its socket) and the boxed WebSocket state.
/// Idle memory per connection (issue 10) is mostly these two and the
/// member's `Arc<MemberInfo>`; a field that makes them grow should be
/// boxed where only some connections need it.
#[test]
fn an_open_connection_stays_small() {
    let conn = std::mem::size_of::<Connection>();
    let ws = std::mem::size_of::<super::ws::Ws>();
    let session = std::mem::size_of::<crate::conn::Session>();
    eprintln!("Connection {conn} B, Ws {ws} B (Session {session} B)");
    assert!(conn <= 128, "Connection is {conn} bytes");
    assert!(ws <= 256, "Ws is {ws} bytes");
}

#[test]
fn an_idle_connection_gives_back_its_queue_at_the_heartbeat() {
    let mut h = Harness::new(Config {
        heartbeat: Duration::from_secs(1),
        ..Config::default()
    });
    let mut c = h.ws("user=a");
    for _ in 0..8 {
        c.transmit().push_unbounded(Bytes::from_static(b"x"));
    }
    let _ = written(&mut c);
    assert!(c.transmit().capacity() >= 8);
    h.now += Duration::from_secs(1);
    c.handle_timeout(&mut h.cx());
    assert_eq!(frames(&written(&mut c)), vec![(0x9, Value::Null)]);
    assert_eq!(c.transmit().capacity(), 1, "one slot, the ping's");
}
