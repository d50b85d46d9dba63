//! PROTOCOL.md §8, last paragraph: every reply the server owes for requests
//! it received before a close is sent before the close frame, and nothing
//! follows the close frame.
//!
//! The replies under test come back from the channel's owner, chosen on the
//! other worker than the sender's (and through Redis in Redis mode), while
//! the close is decided where the sender lives: the case where the close
//! used to overtake them (about 174 of 200 acks arrived before the 4009).

mod common;

use std::time::Duration;

use common::*;
use serde_json::{json, Value};

/// Requests sent in one burst; the default limit (100/s, burst 200) accepts
/// about half of them before the tenth refusal in a row closes.
const BURST: u64 = 400;
const RATE_LIMIT_STREAK_CLOSE: usize = 10;

/// A raw WebSocket on `server` and a channel whose owner is the other
/// worker than the connection's, joined.
fn sender_and_remote_channel(server: &Server, user: &str) -> (Raw, String) {
    let mut raw = Raw::ws(server.addr, &format!("user={user}"));
    let conn = raw.welcome["conn"]
        .as_str()
        .expect("welcome.conn")
        .to_owned();
    let mine = worker_of(&conn);
    let channel = (0..)
        .map(|i| format!("close-order:{i}"))
        .find(|c| switchboard::broker::owner_of(c, 2) != mine)
        .expect("some channel is owned by the other worker");
    raw.send(&text_frame(
        &json!({"type": "join_channel", "channel": channel, "id": 0}).to_string(),
    ));
    let joined = raw.read_frame(TIMEOUT).expect("joined").json();
    assert_eq!(joined["type"], "joined", "{joined}");
    (raw, channel)
}

/// `n` id'd `user_action`s (ids 1..=n) as one write.
fn actions(channel: &str, n: u64) -> Vec<u8> {
    (1..=n)
        .flat_map(|id| {
            text_frame(
                &json!({"type": "user_action", "channel": channel, "id": id, "action": {"n": id}})
                    .to_string(),
            )
        })
        .collect()
}

/// Reads up to the close frame; returns its code and the replies (events,
/// such as the sender's own `user_action`s, left out) in arrival order.
fn replies_until_close(raw: &mut Raw) -> (Option<u16>, Vec<Value>) {
    let (code, frames) = raw.read_until_close(Duration::from_secs(15));
    let replies = frames
        .iter()
        .map(|f| f.json())
        .filter(|v| v["type"] != "user_action")
        .collect();
    (code, replies)
}

/// Answers the close and asserts that not one frame follows it.
#[track_caller]
fn assert_nothing_after_close(raw: &mut Raw, code: u16) {
    raw.send_lossy(&close_frame(code));
    assert_eof_next(raw);
}

/// The connection ends with no frame before its end.
#[track_caller]
fn assert_eof_next(raw: &mut Raw) {
    match raw.try_read_frame(TIMEOUT) {
        Ok(f) => panic!("a frame after the close frame: {f:?}"),
        Err(RawEnd::Eof | RawEnd::Error(_)) => {}
        Err(RawEnd::Timeout) => panic!("the server kept the connection open after the close"),
    }
}

fn id_of(v: &Value) -> u64 {
    v["id"]
        .as_u64()
        .unwrap_or_else(|| panic!("a reply without id: {v}"))
}

/// The burst: acks for every accepted request and `rate_limited` for the
/// refused ones, all in request order, the last ten refused in a row, then
/// the 4009 and nothing after it.
fn burst_is_answered_before_4009(server: &Server) {
    let (mut raw, channel) = sender_and_remote_channel(server, "burst");
    raw.send_lossy(&actions(&channel, BURST));
    let (code, replies) = replies_until_close(&mut raw);
    let kinds: Vec<(u64, &str)> = replies
        .iter()
        .map(|v| match (v["type"].as_str(), v["code"].as_str()) {
            (Some("ack"), _) => (id_of(v), "ack"),
            (Some("error"), Some("rate_limited")) => (id_of(v), "rate_limited"),
            _ => panic!("an unexpected reply: {v}"),
        })
        .collect();
    let acks = kinds.iter().filter(|(_, k)| *k == "ack").count();
    let summary = format!("{acks} acks in {} replies, close {code:?}", kinds.len());
    assert_eq!(code, Some(4009), "{summary}");
    // One reply per request up to the one that closed, in request order:
    // no ack lost, none overtaken by an error.
    let ids: Vec<u64> = kinds.iter().map(|(id, _)| *id).collect();
    let expected: Vec<u64> = (1..=ids.len() as u64).collect();
    assert_eq!(ids, expected, "{summary}");
    assert!(
        kinds.len() >= RATE_LIMIT_STREAK_CLOSE
            && kinds[kinds.len() - RATE_LIMIT_STREAK_CLOSE..]
                .iter()
                .all(|(_, k)| *k == "rate_limited"),
        "the last ten replies are the rate_limited run: {summary}"
    );
    // Burst 200, less the join's token, plus what refilled meanwhile.
    assert!((199..=300).contains(&acks), "{summary}");
    eprintln!("{summary}");
    assert_nothing_after_close(&mut raw, 4009);
}

#[test]
fn every_accepted_request_is_acked_before_4009_across_workers() {
    let server = Server::start(&[]);
    burst_is_answered_before_4009(&server);
}

#[test]
fn every_accepted_request_is_acked_before_4009_over_redis() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let server = redis_node("close-order", &redis, &[]);
    burst_is_answered_before_4009(&server);
}

/// Another close path: a message over the limit (1009) right behind
/// requests whose replies are still with the owner.
#[test]
fn replies_owed_before_a_1009_go_out_before_it() {
    let server = Server::start(&["--max-message-bytes", "1024"]);
    let (mut raw, channel) = sender_and_remote_channel(&server, "big");
    let mut burst = actions(&channel, 50);
    burst.extend(text_frame(&"x".repeat(2048)));
    raw.send_lossy(&burst);
    let (code, replies) = replies_until_close(&mut raw);
    assert_eq!(code, Some(1009));
    let ids: Vec<u64> = replies.iter().map(id_of).collect();
    assert_eq!(ids, (1..=50).collect::<Vec<_>>(), "{replies:?}");
    assert!(replies.iter().all(|v| v["type"] == "ack"), "{replies:?}");
    assert_nothing_after_close(&mut raw, 1009);
}

/// The client's own close: the server's answering close frame waits for
/// the replies too, and a `ping` made locally keeps its place behind them.
#[test]
fn replies_owed_before_the_clients_close_go_out_before_the_answer() {
    let server = Server::start(&[]);
    let (mut raw, channel) = sender_and_remote_channel(&server, "closer");
    let mut burst = actions(&channel, 50);
    burst.extend(text_frame(&json!({"type": "ping", "id": 51}).to_string()));
    burst.extend(close_frame(1000));
    raw.send_lossy(&burst);
    let (code, replies) = replies_until_close(&mut raw);
    assert_eq!(code, Some(1000));
    let ids: Vec<u64> = replies.iter().map(id_of).collect();
    assert_eq!(ids, (1..=51).collect::<Vec<_>>(), "{replies:?}");
    assert_eq!(replies[50]["type"], "pong");
    assert_eof_next(&mut raw);
}
