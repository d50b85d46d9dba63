//! PROTOCOL.md §6 (1.1) "Expiry and refresh", the `refresh` request of §3
//! and close 4010 of §8, against a running server: a connection lives as
//! long as its token plus the leeway (a short `--jwt-leeway-s` here, so no
//! test sleeps a minute); `refresh` moves the deadline, answers
//! `unauthorized`, `forbidden` or `bad_request` as the page says, and a
//! narrower `channels` leaves channels with `reason:"forbidden"` while the
//! other members (on every node) see the presence `leave`.

mod common;
mod keys;

use std::time::{Duration, Instant};

use common::*;
use keys::*;
use serde_json::{json, Value};

const SECRET: &str = "expiry-test-secret";

fn hs256(claims: &Value) -> String {
    use hmac::{Hmac, KeyInit, Mac};
    let input = format!(
        "{}.{}",
        b64(br#"{"alg":"HS256","typ":"JWT"}"#),
        b64(claims.to_string().as_bytes())
    );
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(SECRET.as_bytes()).expect("key");
    mac.update(input.as_bytes());
    format!("{input}.{}", b64(&mac.finalize().into_bytes()))
}

fn token(sub: &str, ttl_s: i64) -> String {
    hs256(&json!({"sub": sub, "exp": now() as i64 + ttl_s}))
}

/// A server whose tokens live exactly `exp` + 1 s.
fn server(extra: &[&str]) -> Server {
    let mut args = vec!["--hmac-secret", SECRET, "--jwt-leeway-s", "1"];
    args.extend_from_slice(extra);
    Server::start(&args)
}

fn refresh(c: &mut Client, token: &str) -> Value {
    c.request(json!({"type": "refresh", "token": token}))
}

/// Waits (up to `within`) for the close 4010; returns how long it took.
#[track_caller]
fn expect_close_4010(c: &mut Client, within: Duration) -> Duration {
    let start = Instant::now();
    c.timeout = within;
    c.expect_close(4010);
    start.elapsed()
}

#[test]
fn a_three_second_token_is_closed_with_4010_after_exp_plus_leeway() {
    let s = server(&[]);
    let t0 = now();
    let mut c = s.connect(&format!("token={}", token("alice", 3)));
    let opened = Instant::now();
    c.join("doc:1");
    // Still open after 2 s (exp + leeway is 4 s away, give or take the
    // second the token's exp was rounded to).
    std::thread::sleep(Duration::from_millis(1_500));
    assert_eq!(c.request(json!({"type": "ping"}))["type"], "pong");
    expect_close_4010(&mut c, Duration::from_secs(6));
    let lived = opened.elapsed();
    // exp = t0 + 3, deadline exp + 1: at least 3 s after a connect made
    // within t0's second, at most 4 s + the timer scan (1 s) + slack.
    assert!(
        lived >= Duration::from_secs(3),
        "closed after {lived:?}, before exp + leeway (t0 {t0})"
    );
    assert!(lived <= Duration::from_secs(7), "closed after {lived:?}");
}

#[test]
fn refresh_moves_the_deadline() {
    let s = server(&[]);
    let mut c = s.connect(&format!("token={}", token("alice", 2)));
    let new_exp = now() + 600;
    let fresh = hs256(&json!({"sub": "alice", "exp": new_exp}));
    let v = refresh(&mut c, &fresh);
    assert_eq!(v["type"], "refreshed", "{v}");
    assert_eq!(v["exp"], new_exp, "{v}");
    assert!(v["id"].is_u64(), "{v}");
    // Past the old deadline (exp + 1 s = 3 s): still open.
    std::thread::sleep(Duration::from_millis(4_000));
    assert_eq!(c.request(json!({"type": "ping"}))["type"], "pong");
    // Without an id the reply still comes (it is the only answer).
    c.send_json(json!({"type": "refresh", "token": fresh}));
    let v = c.recv_until(|v| v["type"] == "refreshed");
    assert!(v.get("id").is_none(), "{v}");
}

#[test]
fn a_failed_refresh_changes_nothing() {
    let key = TestKey::generate(Kind::Ed25519);
    let s = server(&["--jwt-public-key", key.public_pem.to_str().expect("utf-8")]);
    let mut c = s.connect(&format!("token={}", token("alice", 3)));
    let later = now() + 600;
    // Every check of §6 failing: unauthorized.
    let bad = [
        String::new(),
        "not.a.jwt".to_owned(),
        hs256(&json!({"sub": "alice", "exp": now() - 60})),
        hs256(&json!({"sub": "alice", "exp": later, "nbf": later})),
        hs256(&json!({"sub": 7, "exp": later})),
        TestKey::generate(Kind::Ed25519).sign(
            "EdDSA",
            None,
            &json!({"sub": "alice", "exp": later}),
        ),
        format!(
            "{}.{}.",
            b64(br#"{"alg":"none"}"#),
            b64(json!({"sub": "alice", "exp": later}).to_string().as_bytes())
        ),
    ];
    for t in &bad {
        let v = refresh(&mut c, t);
        assert_error(&v, "unauthorized", v["id"].as_u64());
    }
    // A valid token of another user: forbidden (HS256 and EdDSA alike).
    let v = refresh(&mut c, &hs256(&json!({"sub": "mallory", "exp": later})));
    assert_error(&v, "forbidden", v["id"].as_u64());
    let v = refresh(
        &mut c,
        &key.sign("EdDSA", None, &json!({"sub": "bob", "exp": later})),
    );
    assert_error(&v, "forbidden", v["id"].as_u64());
    // The old deadline holds.
    expect_close_4010(&mut c, Duration::from_secs(7));

    // A public-key token refreshes an HS256 connection of the same user.
    let mut c = s.connect(&format!("token={}", token("alice", 2)));
    let v = refresh(
        &mut c,
        &key.sign("EdDSA", None, &json!({"sub": "alice", "exp": later})),
    );
    assert_eq!(v["type"], "refreshed", "{v}");
    assert_eq!(v["exp"], later, "{v}");
}

#[test]
fn refresh_without_authentication_is_bad_request() {
    let s = Server::start(&[]);
    let mut c = s.connect("user=alice");
    let v = refresh(&mut c, "a.b.c");
    assert_error(&v, "bad_request", v["id"].as_u64());
    // An ill-typed token is bad_request with authentication on too.
    let s = server(&[]);
    let mut c = s.connect(&format!("token={}", token("alice", 600)));
    for req in [
        json!({"type": "refresh"}),
        json!({"type": "refresh", "token": 7}),
    ] {
        let v = c.request(req);
        assert_error(&v, "bad_request", v["id"].as_u64());
    }
}

/// The leave a narrower `channels` causes, seen by the refresher and by a
/// member of the channel on `watcher`'s node.
fn narrowing(alice: &mut Client, watcher: &mut Client) {
    watcher.join("doc:1");
    alice.join("doc:1");
    alice.join("lobby");
    let join = watcher.recv_until(|v| v["type"] == "presence");
    assert_eq!(join["event"], "join");
    let narrower = hs256(&json!({
        "sub": "alice", "exp": now() + 600,
        "channels": ["lobby"], "info": {"v": 2}
    }));
    let id = alice.fresh_id();
    alice.send_json(json!({"type": "refresh", "id": id, "token": narrower}));
    let refreshed = alice.recv_reply(id);
    assert_eq!(refreshed["type"], "refreshed", "{refreshed}");
    let left = alice.recv_until(|v| v["type"] == "left");
    assert_eq!(
        left,
        json!({"type": "left", "channel": "doc:1", "reason": "forbidden"}),
        "no id, a reason"
    );
    let leave = watcher.recv_until(|v| v["type"] == "presence");
    assert_eq!(
        (
            leave["event"].as_str(),
            leave["user"].as_str(),
            leave["channel"].as_str()
        ),
        (Some("leave"), Some("alice"), Some("doc:1")),
        "{leave}"
    );
    // Gone for good: no events, acting there is not_joined, joining again
    // is forbidden; the channel still allowed is kept.
    watcher.send_json(json!({"type": "user_action", "channel": "doc:1", "action": 1}));
    watcher.recv_until(|v| v["type"] == "user_action");
    let v = alice.request(json!({"type": "user_action", "channel": "doc:1", "action": 1}));
    assert_error(&v, "not_joined", v["id"].as_u64());
    let v = alice.request(json!({"type": "join_channel", "channel": "doc:1"}));
    assert_error(&v, "forbidden", v["id"].as_u64());
    // The new info rides on the user's actions.
    let (act, text) = {
        alice.send_json(json!({"type": "user_action", "channel": "lobby", "action": 1}));
        alice.recv_until_raw(|v| v["type"] == "user_action")
    };
    assert_eq!(act["channel"], "lobby");
    assert!(text.contains(r#""info":{"v":2}"#), "{text}");
}

#[test]
fn refresh_narrowing_channels_leaves_them() {
    let s = server(&[]);
    let mut watcher = s.connect(&format!("token={}", token("bob", 600)));
    let mut alice = s.connect(&format!("token={}", token("alice", 600)));
    narrowing(&mut alice, &mut watcher);
}

#[test]
fn refresh_narrowing_channels_leaves_them_on_every_node() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let args = ["--hmac-secret", SECRET, "--jwt-leeway-s", "1"];
    let n1 = redis_node("n1", &redis, &args);
    let n2 = redis_node("n2", &redis, &args);
    let mut watcher = n2.connect(&format!("token={}", token("bob", 600)));
    let mut alice = n1.connect(&format!("token={}", token("alice", 600)));
    narrowing(&mut alice, &mut watcher);
}

/// §8: the 4010 close waits for the replies owed. Redis is stopped
/// (SIGSTOP) with requests in it, the token expires meanwhile, and every
/// request is still answered (`unavailable`, once the link is declared
/// dead) before the close frame.
#[test]
fn the_4010_close_comes_after_the_replies_owed() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let s = redis_node(
        "expiry",
        &redis,
        &["--hmac-secret", SECRET, "--jwt-leeway-s", "0"],
    );
    let mut c = s.connect(&format!("token={}", token("alice", 2)));
    c.join("doc:1");
    let pid = redis.pid().expect("redis pid") as libc::pid_t;
    // SAFETY: signalling a child process we started; no memory involved.
    unsafe { libc::kill(pid, libc::SIGSTOP) };
    for id in 1..=5u64 {
        c.send_json(json!({"type": "user_action", "channel": "doc:1", "id": id, "action": id}));
    }
    c.timeout = Duration::from_secs(12);
    let texts = c.expect_close(4010);
    // SAFETY: as above.
    unsafe { libc::kill(pid, libc::SIGCONT) };
    let replies: Vec<Value> = texts
        .iter()
        .map(|t| serde_json::from_str::<Value>(t).expect("json"))
        .filter(|v| v.get("id").is_some())
        .collect();
    let ids: Vec<u64> = replies.iter().filter_map(|v| v["id"].as_u64()).collect();
    assert_eq!(ids, [1, 2, 3, 4, 5], "{replies:?}");
}
