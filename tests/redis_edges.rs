//! Redis mode at the edges: requests pipelined faster than Redis answers,
//! a join caught in flight by a Redis crash, Redis losing its scripts or
//! its data while it stays up.

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::json;

/// A join and a leave sent back to back: `joined` comes before `left`, as
/// on one node, and the connection is not left behind as a member.
#[test]
fn join_then_leave_pipelined_keeps_order_and_leaves_nothing_behind() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let a = redis_node("na", &redis, &[]);
    let ch = "room:jl";
    // Keeps the node subscribed, so a stale member would get events.
    let mut stay = a.connect("user=stay");
    stay.join(ch);
    // Both requests in one write, so the node reads them in one turn,
    // before Redis can answer the join.
    let mut c = Raw::ws(a.addr, "user=c");
    let mut both = text_frame(&format!(
        r#"{{"type":"join_channel","id":1,"channel":"{ch}"}}"#
    ));
    both.extend(text_frame(&format!(
        r#"{{"type":"leave_channel","id":2,"channel":"{ch}"}}"#
    )));
    c.send(&both);
    let first = c.read_frame(TIMEOUT).expect("a reply").json();
    let second = c.read_frame(TIMEOUT).expect("a reply").json();
    assert_eq!(
        (first["type"].as_str(), second["type"].as_str()),
        (Some("joined"), Some("left")),
        "{first} {second}"
    );
    stay.send_json(json!({"type": "user_action", "channel": ch, "action": "after"}));
    stay.recv_until(|v| v["type"] == "user_action");
    // Not a member any more: nothing of the channel reaches it.
    match c.try_read_frame(SILENCE) {
        Err(RawEnd::Timeout) => {}
        other => panic!("the client that left still got {other:?}"),
    }
    let v = stay.request(json!({"type": "presence", "channel": ch}));
    assert_eq!(members(&v), who(&[&stay]), "{v}");
}

/// A join whose script Redis never answers (Redis killed while paused)
/// fails with `unavailable` and leaves no subscription behind: after the
/// restart the node subscribes only channels that have members.
#[test]
fn join_lost_in_a_crash_leaves_no_subscription() {
    let Some(mut redis) = RedisServer::start() else {
        return;
    };
    let a = redis_node("na", &redis, &[]);
    let mut keep = a.connect("user=keep");
    keep.join("room:keep");
    let mut c = a.connect("user=c");
    // Writes (the join script) wait; the subscription itself goes through.
    assert_eq!(
        redis.cmd(&["CLIENT", "PAUSE", "10000", "WRITE"]).text(),
        "OK"
    );
    c.send_json(json!({"type": "join_channel", "id": 7, "channel": "room:lost"}));
    redis.wait_numsub("sb:{room:lost}:ch", 1);
    redis.kill();
    let v = c.recv_reply(7);
    assert_error(&v, "unavailable", Some(7));
    redis.restart();
    wait_health(&a, 200, Duration::from_secs(5));
    // The node is back in the channel that has a member, and only there.
    redis.wait_numsub("sb:{room:keep}:ch", 1);
    assert_eq!(
        redis.cmd(&["PUBSUB", "CHANNELS", "*"]).strings(),
        ["sb:{room:keep}:ch"]
    );
    // The failed join changed nothing for the client either.
    let v = c.request(json!({"type": "user_action", "channel": "room:lost", "action": 1}));
    assert_error(&v, "not_joined", v["id"].as_u64());
    c.join("room:lost");
}

/// `SCRIPT FLUSH` while the link stays up: the node loads its scripts again
/// instead of failing every join from then on.
#[test]
fn flushed_scripts_are_loaded_again() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let a = redis_node("na", &redis, &[]);
    let mut c = a.connect("user=c");
    // Channels on both workers, so both links have loaded the scripts.
    for n in 0..8 {
        c.join(&format!("room:pre{n}"));
    }
    assert_eq!(redis.cmd(&["SCRIPT", "FLUSH"]).text(), "OK");
    let deadline = Instant::now() + TIMEOUT;
    for n in 0.. {
        let v = c.request(json!({"type": "join_channel", "channel": format!("room:s{n}")}));
        if v["type"] == "joined" {
            break;
        }
        assert_error(&v, "unavailable", v["id"].as_u64());
        assert!(
            Instant::now() < deadline,
            "joins kept failing after SCRIPT FLUSH"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `FLUSHALL` while the link stays up: live members are registered again
/// within TTL/3.
#[test]
fn flushed_presence_is_registered_again_within_a_third_of_the_ttl() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let ttl = ["--presence-ttl", "3"];
    let a = redis_node("na", &redis, &ttl);
    let b = redis_node("nb", &redis, &ttl);
    let ch = "room:f";
    let mut a1 = a.connect("user=a1");
    let mut b1 = b.connect("user=b1");
    a1.join(ch);
    b1.join(ch);
    assert_eq!(redis.cmd(&["FLUSHALL"]).text(), "OK");
    let flushed = Instant::now();
    let all = who(&[&a1, &b1]);
    loop {
        let v = a1.request(json!({"type": "presence", "channel": ch}));
        if members(&v) == all {
            break;
        }
        assert!(
            flushed.elapsed() < Duration::from_millis(1500),
            "members not back 1.5 s after FLUSHALL: {v}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    eprintln!("presence back {:?} after FLUSHALL", flushed.elapsed());
    // Nobody was announced as leaving meanwhile.
    a1.send_json(json!({"type": "user_action", "channel": ch, "action": "x"}));
    for c in [&mut a1, &mut b1] {
        let seen = c.recv_all_until(|v| v["type"] == "user_action");
        assert_eq!(seen.len(), 1, "{seen:?}");
    }
}
