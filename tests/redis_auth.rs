//! Redis mode against a password-protected `redis-server`: the password in
//! the URL authenticates (`HELLO 3 AUTH`), a wrong or missing one keeps the
//! node unhealthy and answering `unavailable`, without crashing it.

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::json;

#[test]
fn password_in_the_url_authenticates() {
    let Some(redis) = RedisServer::start_with(&["--requirepass", "secret"]) else {
        return;
    };
    let a = redis_node_url("na", &redis.url_with(":secret@", 0), &[], true);
    // The same password as the `default` user, spelled out.
    let b = redis_node_url("nb", &redis.url_with("default:secret@", 0), &[], true);
    let ch = "room:auth";
    let mut a1 = a.connect("user=a1");
    let mut b1 = b.connect("user=b1");
    a1.join(ch);
    let v = b1.join(ch);
    assert_eq!(members(&v), who(&[&a1, &b1]), "{v}");
    a1.send_json(json!({"type": "user_action", "channel": ch, "action": "hi"}));
    for c in [&mut a1, &mut b1] {
        let v = c.recv_until(|v| v["type"] == "user_action");
        assert_eq!(v["action"], "hi", "{v}");
    }
}

#[test]
fn wrong_or_missing_password_keeps_the_node_unhealthy() {
    let Some(redis) = RedisServer::start_with(&["--requirepass", "secret"]) else {
        return;
    };
    let mut wrong = redis_node_url("nw", &redis.url_with(":wrong@", 0), &[], false);
    let mut none = redis_node_url("nn", &redis.url(), &[], false);
    // Through several reconnection attempts (backoff from 100 ms).
    let until = Instant::now() + Duration::from_millis(2500);
    while Instant::now() < until {
        for node in [&wrong, &none] {
            let r = node.http_get("/healthz");
            assert_eq!(r.status, 503, "{}: {}", node.addr, r.body_text());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    for node in [&wrong, &none] {
        let mut c = node.connect("user=x");
        let v = c.request(json!({"type": "join_channel", "channel": "room:auth"}));
        assert_error(&v, "unavailable", v["id"].as_u64());
    }
    for node in [&mut wrong, &mut none] {
        assert!(
            node.wait_exit(Duration::ZERO).is_none(),
            "the node exited:\n{}",
            node.log_text()
        );
    }
    assert!(
        wrong.log_text().contains("WRONGPASS"),
        "the refusal is logged:\n{}",
        wrong.log_text()
    );
    // Nothing from the refused nodes reached Redis.
    assert_eq!(redis.cmd(&["DBSIZE"]).int(), 0);
}
