//! What Redis mode leaves in Redis, looked at with a raw RESP client:
//! `--redis-prefix` on every key and pub/sub channel, one subscription per
//! node however many workers have members, one Redis delivery per node per
//! published message, unsubscription when the last local member leaves, and
//! history offsets shared by every node.

mod common;

use std::time::Duration;

use common::*;
use serde_json::json;

#[test]
fn prefix_names_every_key_and_channel() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let extra = ["--redis-prefix", "t7:", "--history", "room=10"];
    let a = redis_node("na", &redis, &extra);
    let b = redis_node("nb", &redis, &extra);
    // A node with the default prefix is another cluster on the same Redis.
    let other = redis_node("no", &redis, &["--history", "room=10"]);
    let ch = "room:9";
    let mut a1 = a.connect("user=a1");
    let mut b1 = b.connect("user=b1");
    let mut o1 = other.connect("user=o1");
    a1.join(ch);
    b1.join(ch);
    let v = o1.join(ch);
    assert_eq!(
        members(&v),
        who(&[&o1]),
        "the prefixes keep clusters apart: {v}"
    );

    a1.send_json(json!({"type": "user_action", "channel": ch, "action": 1}));
    for c in [&mut a1, &mut b1] {
        let v = c.recv_until(|v| v["type"] == "user_action");
        assert_eq!(v["offset"], 1, "{v}");
    }
    o1.expect_silence(SILENCE);

    assert_eq!(
        redis.cmd(&["PUBSUB", "CHANNELS", "*"]).strings(),
        ["sb:{room:9}:ch", "t7:{room:9}:ch"]
    );
    assert_eq!(
        redis.cmd(&["KEYS", "*"]).strings(),
        [
            "sb:{room:9}:hm",
            "sb:{room:9}:pr",
            "t7:{room:9}:hm",
            "t7:{room:9}:hs",
            "t7:{room:9}:pr",
        ]
    );
    assert_eq!(redis.cmd(&["ZCARD", "t7:{room:9}:pr"]).int(), 2);
    assert_eq!(redis.cmd(&["XLEN", "t7:{room:9}:hs"]).int(), 1);
    // Idle keys do not stay forever.
    for key in ["t7:{room:9}:pr", "t7:{room:9}:hm", "t7:{room:9}:hs"] {
        let ttl = redis.cmd(&["TTL", key]).int();
        assert!(ttl > 0, "{key} has TTL {ttl}");
    }
}

#[test]
fn one_subscription_and_one_delivery_per_node() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let nodes = [redis_node("na", &redis, &[]), redis_node("nb", &redis, &[])];
    let ch = "fan:1";
    let pubsub = "sb:{fan:1}:ch";
    let mut clients = Vec::new();
    for node in &nodes {
        let [w0, w1] = connect_on_both_workers(node, "m", 2);
        clients.extend(w0.into_iter().chain(w1));
    }
    assert_eq!(redis.numsub(pubsub), 0);
    for c in clients.iter_mut() {
        c.join(ch);
    }
    // 8 members on 4 workers of 2 nodes: one subscriber per node.
    assert_eq!(redis.numsub(pubsub), 2);

    // A message published straight into Redis reaches 2 subscribers, and
    // through them each member exactly once.
    for n in 0..2 {
        let event = format!(
            r#"{{"type":"user_action","channel":"fan:1","user":null,"conn":null,"action":{n}}}"#
        );
        assert_eq!(redis.cmd(&["PUBLISH", pubsub, &event]).int(), 2);
    }
    for c in clients.iter_mut() {
        for n in 0..2 {
            let v = c.recv_until(|v| v["type"] == "user_action");
            assert_eq!(
                v["action"],
                n,
                "{} got a copy twice or out of order: {v}",
                c.conn()
            );
        }
    }
    // A client's action costs one PUBLISH, which Redis hands to 2 nodes.
    let before = redis.cmd(&["INFO", "stats"]).text();
    clients[0].send_json(json!({"type": "user_action", "channel": ch, "action": "x"}));
    for c in clients.iter_mut() {
        let v = c.recv_until(|v| v["type"] == "user_action");
        assert_eq!(v["action"], "x", "{v}");
    }
    for c in clients.iter_mut() {
        c.expect_silence(Duration::from_millis(50));
    }
    let after = redis.cmd(&["INFO", "stats"]).text();
    let stat = |info: &str, name: &str| -> i64 {
        info.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(':')?.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {name} in INFO stats"))
    };
    assert_eq!(
        stat(&after, "total_commands_processed") - stat(&before, "total_commands_processed"),
        // The action's PUBLISH and our own INFO.
        2,
        "commands Redis ran for one action"
    );

    // The last local member leaving unsubscribes that node, not before.
    let (on_a, on_b) = clients.split_at_mut(4);
    for c in on_a.iter_mut().take(3) {
        c.leave(ch);
    }
    assert_eq!(redis.numsub(pubsub), 2);
    on_a[3].leave(ch);
    redis.wait_numsub(pubsub, 1);
    for c in on_b.iter_mut() {
        drop(std::mem::replace(c, nodes[1].connect("user=later")));
    }
    redis.wait_numsub(pubsub, 0);
    assert_eq!(redis.cmd(&["ZCARD", "sb:{fan:1}:pr"]).int(), 0);
}

#[test]
fn history_offsets_are_shared_by_every_node() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let extra = ["--history", "doc=3"];
    let a = redis_node("na", &redis, &extra);
    let b = redis_node("nb", &redis, &extra);
    let ch = "doc:1";
    let mut a1 = a.connect("user=a1");
    let mut b1 = b.connect("user=b1");
    let ja = a1.join(ch);
    let jb = b1.join(ch);
    assert_eq!(
        (ja["offset"].as_u64(), jb["offset"].as_u64()),
        (Some(0), Some(0))
    );
    let epoch = ja["epoch"].as_str().expect("epoch").to_owned();
    assert_eq!(
        jb["epoch"],
        epoch.as_str(),
        "one epoch per channel: {ja} {jb}"
    );

    // Actions from both nodes take consecutive offsets; acks carry them.
    let mut seen = [Vec::new(), Vec::new()];
    for n in 0..4u64 {
        let c = if n % 2 == 0 { &mut a1 } else { &mut b1 };
        let rid = c.fresh_id();
        c.send_json(json!({"type": "user_action", "id": rid, "channel": ch, "action": n}));
        let mut got = c.recv_all_until(|v| v["id"].as_u64() == Some(rid));
        let ack = got.pop().expect("the ack is last");
        assert_eq!(ack["offset"], n + 1, "{ack}");
        seen[(n % 2) as usize].extend(got.into_iter().filter(|v| v["type"] == "user_action"));
    }
    for (c, seen) in [&mut a1, &mut b1].into_iter().zip(&mut seen) {
        while seen.len() < 4 {
            seen.push(c.recv_until(|v| v["type"] == "user_action"));
        }
        for (n, v) in seen.iter().enumerate() {
            let n = n as u64;
            assert_eq!(
                (v["action"].as_u64(), v["offset"].as_u64()),
                (Some(n), Some(n + 1)),
                "{v}"
            );
        }
    }
    // A client reconnecting to the other node recovers from shared history.
    let mut again = b.connect("user=a1");
    let v = again.request(json!({
        "type": "join_channel", "channel": ch, "since": {"offset": 2, "epoch": epoch}
    }));
    assert_eq!(v["recovered"], true, "{v}");
    assert_eq!(v["replayed"], 2, "{v}");
    for off in [3, 4] {
        let e = again.recv_until(|v| v["type"] == "user_action");
        assert_eq!(e["offset"], off, "{e}");
    }
    // Too old for a history of 3: not recovered, nothing replayed.
    let mut late = a.connect("user=late");
    let v = late.request(json!({
        "type": "join_channel", "channel": ch, "since": {"offset": 0, "epoch": epoch}
    }));
    assert_eq!(
        (v["recovered"].as_bool(), v["replayed"].as_u64()),
        (Some(false), Some(0)),
        "{v}"
    );
    assert_eq!(v["offset"], 4, "{v}");
}

/// `/api/channels` lists its own prefix's channels only, even when the
/// prefix holds glob characters that would match another one's keys.
#[test]
fn channel_list_stays_within_a_glob_like_prefix() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let star = redis_node("ns", &redis, &["--redis-prefix", "a*"]);
    let plain = redis_node("np", &redis, &["--redis-prefix", "ab"]);
    let mut s1 = star.connect("user=s1");
    let mut p1 = plain.connect("user=p1");
    s1.join("room:star");
    p1.join("room:plain");
    for (node, ch) in [(&star, "room:star"), (&plain, "room:plain")] {
        let r = node.http_get("/api/channels");
        assert_eq!(r.status, 200, "{}", r.body_text());
        let v: serde_json::Value = serde_json::from_slice(&r.body).expect("JSON");
        assert_eq!(v, json!({"channels": [{"channel": ch, "members": 1}]}));
    }
}
