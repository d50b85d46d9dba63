//! Redis mode under faults (PROTOCOL.md §4 presence, §7 `unavailable`, §9
//! `/healthz`): a node killed with SIGKILL, and Redis itself killed and
//! restarted on the same port.

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};

/// The `(user, conn)` a presence `leave` is about.
fn leave_of(v: &Value) -> (String, String) {
    assert_eq!(v["event"], "leave", "{v}");
    (
        v["user"].as_str().unwrap_or_default().to_owned(),
        v["conn"].as_str().unwrap_or_default().to_owned(),
    )
}

#[test]
fn killed_node_members_leave_within_the_ttl_once() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let ttl = ["--presence-ttl", "3"];
    let a = redis_node("na", &redis, &ttl);
    let b = redis_node("nb", &redis, &ttl);
    let c = redis_node("nc", &redis, &ttl);
    let ch = "room:k";
    let mut a1 = a.connect("user=a1");
    let mut b1 = b.connect("user=b1");
    let mut c1 = c.connect("user=c1");
    let mut c2 = c.connect("user=c2");
    a1.join(ch);
    b1.join(ch);
    c1.join(ch);
    c2.join(ch);
    let doomed = who(&[&c1, &c2]);
    for m in [&mut a1, &mut b1] {
        m.recv_until(|v| v["type"] == "presence" && v["conn"] == c2.conn());
    }

    // Live nodes refresh their members: nobody leaves past a whole TTL.
    a1.expect_silence(Duration::from_millis(3500));
    let v = b1.request(json!({"type": "presence", "channel": ch}));
    assert_eq!(members(&v), who(&[&a1, &b1, &c1, &c2]), "{v}");

    c.signal(libc::SIGKILL);
    let killed = Instant::now();
    // Each survivor hears each dead member leave once, within the TTL (3 s)
    // plus scheduling slack.
    for m in [&mut a1, &mut b1] {
        m.timeout = Duration::from_secs(4).saturating_sub(killed.elapsed());
        let mut left = BTreeSet::new();
        while left.len() < 2 {
            let v = m.recv_until(|v| v["type"] == "presence");
            assert!(left.insert(leave_of(&v)), "a leave came twice: {v}");
        }
        assert_eq!(left, doomed, "who left, seen by {}", m.conn());
        eprintln!(
            "{} saw both leaves {:?} after the kill",
            m.conn(),
            killed.elapsed()
        );
    }
    // No second reaper publishes them again (reaping is one Redis step).
    a1.timeout = TIMEOUT;
    b1.timeout = TIMEOUT;
    a1.expect_silence(Duration::from_millis(1200));
    let survivors = who(&[&a1, &b1]);
    for m in [&mut a1, &mut b1] {
        let v = m.request(json!({"type": "presence", "channel": ch}));
        assert_eq!(members(&v), survivors, "{v}");
    }
}

/// Sends actions from `from` until `to` receives one of them, within
/// `deadline`; returns when it did. Publications made before `to`'s node is
/// subscribed again are lost by Redis pub/sub itself, hence the retries.
#[track_caller]
fn until_delivered(from: &mut Client, to: &mut Client, ch: &str, deadline: Instant) -> Instant {
    let sender = from.conn().to_owned();
    for n in 0u64.. {
        assert!(
            Instant::now() < deadline,
            "{} never received an action of {sender} ({n} sent)",
            to.conn()
        );
        let rid = from.fresh_id();
        from.send_json(
            json!({"type": "user_action", "id": rid, "channel": ch, "action": {"probe": n}}),
        );
        let reply = from.recv_reply(rid);
        if reply["type"] == "error" {
            assert_error(&reply, "unavailable", Some(rid));
            std::thread::sleep(Duration::from_millis(50));
            continue;
        }
        assert_eq!(reply["type"], "ack", "{reply}");
        let wait = Instant::now() + Duration::from_millis(200);
        loop {
            match to.next(wait) {
                Next::Text(t) => {
                    let v: Value = serde_json::from_str(&t).unwrap_or_else(|e| panic!("{e}: {t}"));
                    if v["type"] == "user_action" && v["conn"] == sender.as_str() {
                        return Instant::now();
                    }
                }
                Next::Timeout => break,
                other => panic!(
                    "{}: {}",
                    to.conn(),
                    match other {
                        Next::Close(f) => format!("closed {f:?}"),
                        Next::Failed(e) => format!("failed {e}"),
                        _ => "binary".into(),
                    }
                ),
            }
        }
    }
    unreachable!("the loop returns or panics")
}

#[test]
fn redis_restart_503_unavailable_then_resumes_without_rejoin() {
    let Some(mut redis) = RedisServer::start() else {
        return;
    };
    let a = redis_node("na", &redis, &[]);
    let b = redis_node("nb", &redis, &[]);
    let ch = "room:r";
    let mut a1 = a.connect("user=a1");
    let mut b1 = b.connect("user=b1");
    let mut a2 = a.connect("user=a2");
    a1.join(ch);
    b1.join(ch);
    a1.recv_until(|v| v["type"] == "presence" && v["event"] == "join");
    // One Redis connection per worker: 2 nodes × 2 workers, plus ours.
    assert_eq!(redis.client_list().len(), 5, "{:#?}", redis.client_list());

    redis.kill();
    let killed = Instant::now();
    for node in [&a, &b] {
        wait_health(
            node,
            503,
            Duration::from_secs(5).saturating_sub(killed.elapsed()),
        );
    }
    eprintln!("both nodes 503 after {:?}", killed.elapsed());
    // While down: no join, no action, no effect.
    for c in [&mut a1, &mut b1] {
        let rid = c.fresh_id();
        c.send_json(json!({"type": "user_action", "id": rid, "channel": ch, "action": "lost"}));
        let v = c.recv_reply(rid);
        assert_error(&v, "unavailable", Some(rid));
    }
    let v = a2.request(json!({"type": "join_channel", "channel": ch}));
    assert_error(&v, "unavailable", v["id"].as_u64());
    let v = a2.request(json!({"type": "user_action", "channel": ch, "action": 1}));
    assert_error(&v, "not_joined", v["id"].as_u64());
    let api = http(
        a.addr,
        &format!(
            "POST /api/publish HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{}",
            r#"{"channel":"room:r","action":1}"#.len(),
            r#"{"channel":"room:r","action":1}"#
        ),
    );
    assert_eq!(api.status, 503, "{}", api.body_text());

    redis.restart();
    let restarted = Instant::now();
    let within = restarted + Duration::from_secs(5);
    for node in [&a, &b] {
        wait_health(node, 200, within.saturating_duration_since(Instant::now()));
    }
    let healthy = Instant::now();
    // Delivery resumes both ways, nobody having joined again.
    let t1 = until_delivered(&mut a1, &mut b1, ch, within);
    let t2 = until_delivered(&mut b1, &mut a1, ch, within);
    eprintln!(
        "healthy {:?} and delivering both ways {:?} after the restart",
        healthy - restarted,
        t1.max(t2) - restarted
    );
    // Healthy means subscribed again: the subscriptions went out with the
    // handshake, not at some later timer.
    assert!(
        t1.max(t2) - healthy < Duration::from_millis(750),
        "delivery resumed {:?} after /healthz said 200",
        t1.max(t2) - healthy
    );
    // Both nodes deliver in full again, and nothing refused while Redis
    // was down shows up now.
    for c in [&mut a1, &mut b1] {
        c.send_json(json!({"type": "user_action", "channel": ch, "action": "fence"}));
    }
    for c in [&mut a1, &mut b1] {
        let mut fences = 0;
        while fences < 2 {
            let v = c.recv_until(|v| v["type"] == "user_action");
            assert_ne!(v["action"], "lost", "a refused action was delivered: {v}");
            fences += usize::from(v["action"] == "fence");
        }
    }
    // Presence was registered again on the empty Redis.
    let v = a1.request(json!({"type": "presence", "channel": ch}));
    assert_eq!(members(&v), who(&[&a1, &b1]), "{v}");
    assert_eq!(redis.cmd(&["ZCARD", "sb:{room:r}:pr"]).int(), 2);
    // Joins work again (the scripts were loaded again), events cross nodes.
    let v = a2.join(ch);
    assert_eq!(members(&v), who(&[&a1, &b1, &a2]), "{v}");
    for c in [&mut a1, &mut b1] {
        let v = c.recv_until(|v| v["type"] == "presence");
        assert_eq!(
            (v["event"].as_str(), v["conn"].as_str()),
            (Some("join"), Some(a2.conn()))
        );
    }
    assert_eq!(redis.client_list().len(), 5, "{:#?}", redis.client_list());
}

/// A member that disconnects while Redis is down (and comes back empty)
/// still leaves for the other nodes once Redis is back.
#[test]
fn leave_during_a_redis_outage_is_published_when_redis_is_back() {
    let Some(mut redis) = RedisServer::start() else {
        return;
    };
    let a = redis_node("na", &redis, &[]);
    let b = redis_node("nb", &redis, &[]);
    let ch = "room:o";
    let mut a1 = a.connect("user=a1");
    let mut gone = a.connect("user=gone");
    let mut b1 = b.connect("user=b1");
    a1.join(ch);
    gone.join(ch);
    b1.join(ch);
    redis.kill();
    wait_health(&a, 503, TIMEOUT);
    let (user, conn) = (gone.user().to_owned(), gone.conn().to_owned());
    drop(gone);
    redis.restart();
    // Both nodes hear it, once, when both are back (within the longest
    // reconnection backoff, 2 s, and half a second).
    a1.timeout = Duration::from_secs(8);
    b1.timeout = Duration::from_secs(8);
    let leave =
        json!({"type": "presence", "channel": ch, "event": "leave", "user": user, "conn": conn});
    for c in [&mut a1, &mut b1] {
        let v = c.recv_until(|v| v["type"] == "presence" && v["event"] == "leave");
        assert_eq!(v, leave, "seen by {}", c.conn());
    }
    for c in [&mut a1, &mut b1] {
        c.send_json(json!({"type": "user_action", "channel": ch, "action": "fence"}));
    }
    for c in [&mut a1, &mut b1] {
        let mut fences = 0;
        while fences < 2 {
            let v = c.recv_until(|v| v["type"] != "presence" || v["event"] == "leave");
            assert_ne!(v, leave, "{} heard the leave twice", c.conn());
            fences += usize::from(v["action"] == "fence");
        }
    }
    let v = b1.request(json!({"type": "presence", "channel": ch}));
    assert_eq!(members(&v), who(&[&a1, &b1]), "{v}");
}

/// A node drained with SIGTERM tells the others its members left at once,
/// not a TTL later.
#[test]
fn drained_node_members_leave_at_once() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let mut a = redis_node("na", &redis, &[]);
    let b = redis_node("nb", &redis, &[]);
    let ch = "room:d";
    let mut b1 = b.connect("user=b1");
    b1.join(ch);
    // Members on both workers of node A, in several channels, so that
    // leaves cross from one worker to the other's owner while draining.
    let [w0, w1] = connect_on_both_workers(&a, "a", 2);
    let mut on_a: Vec<Client> = w0.into_iter().chain(w1).collect();
    for c in on_a.iter_mut() {
        for n in 0..4 {
            c.join(&format!("room:x{n}"));
        }
        c.join(ch);
    }
    let expected = who(&on_a.iter().collect::<Vec<_>>());
    a.signal(libc::SIGTERM);
    let signalled = Instant::now();
    b1.timeout = Duration::from_secs(2);
    let mut left = BTreeSet::new();
    while left.len() < expected.len() {
        let v = b1.recv_until(|v| v["type"] == "presence" && v["event"] == "leave");
        left.insert(leave_of(&v));
    }
    assert_eq!(left, expected);
    eprintln!("all leaves {:?} after SIGTERM", signalled.elapsed());
    assert!(
        a.wait_exit(Duration::from_secs(6)).is_some(),
        "node A did not exit"
    );
    let v = b1.request(json!({"type": "presence", "channel": ch}));
    assert_eq!(members(&v), who(&[&b1]), "{v}");
    for n in 0..4 {
        assert_eq!(
            redis.cmd(&["ZCARD", &format!("sb:{{room:x{n}}}:pr")]).int(),
            0
        );
    }
}

/// Actions in flight when Redis dies are each answered, `ack` or
/// `unavailable`: none waits forever.
#[test]
fn every_action_in_flight_at_a_redis_crash_is_answered() {
    let Some(mut redis) = RedisServer::start() else {
        return;
    };
    let a = redis_node("na", &redis, &["--rate", "100000", "--burst", "100000"]);
    let ch = "room:c";
    let mut a1 = a.connect("user=a1");
    a1.join(ch);
    const N: u64 = 2000;
    let send = |c: &mut Client, id: u64| {
        c.send_raw_text(&format!(
            r#"{{"type":"user_action","id":{id},"channel":"{ch}","action":{id}}}"#
        ));
    };
    for id in 1..=N / 2 {
        send(&mut a1, id);
    }
    let mut answers = std::collections::BTreeMap::new();
    let first = a1.recv_until(|v| v["id"].is_u64());
    assert_eq!(first["type"], "ack", "{first}");
    answers.insert(first["id"].as_u64().unwrap_or_default(), "ack");
    // Redis holds what comes next (PUBLISH waits out a write pause), so it
    // is in flight when Redis dies.
    assert_eq!(
        redis.cmd(&["CLIENT", "PAUSE", "10000", "WRITE"]).text(),
        "OK"
    );
    for id in N / 2 + 1..=N {
        send(&mut a1, id);
    }
    std::thread::sleep(Duration::from_millis(300));
    redis.kill();
    let deadline = Instant::now() + Duration::from_secs(10);
    while answers.len() < N as usize {
        match a1.next(deadline) {
            Next::Text(t) => {
                let v: Value = serde_json::from_str(&t).unwrap_or_else(|e| panic!("{e}: {t}"));
                if let Some(id) = v["id"].as_u64() {
                    let kind = match (v["type"].as_str(), v["code"].as_str()) {
                        (Some("ack"), _) => "ack",
                        (Some("error"), Some("unavailable")) => "unavailable",
                        _ => panic!("unexpected answer {v}"),
                    };
                    assert!(answers.insert(id, kind).is_none(), "two answers for {id}");
                }
            }
            Next::Timeout => panic!(
                "{} of {N} answered; first unanswered: {:?}",
                answers.len(),
                (1..=N).find(|id| !answers.contains_key(id))
            ),
            _ => panic!("the connection ended"),
        }
    }
    let acked = answers.values().filter(|k| **k == "ack").count();
    eprintln!("{acked} acked, {} unavailable", N as usize - acked);
    assert!(acked > 0, "{answers:?}");
    assert!(
        answers.range(N / 2 + 1..).all(|(_, k)| *k == "unavailable"),
        "held by Redis when it died, yet acked: {answers:?}"
    );
}

/// A Redis that hangs without closing its connections (SIGSTOP: no FIN, no
/// RST, like a host that vanished) is noticed by the keepalive: `/healthz`
/// 503 within 5 s, and back to 200 once Redis answers again.
#[test]
fn a_hung_redis_is_noticed_without_a_closed_socket() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let a = redis_node("na", &redis, &[]);
    wait_health(&a, 200, Duration::from_secs(5));
    let pid = redis.pid().expect("redis pid") as libc::pid_t;
    // SAFETY: signalling a child process we started; no memory involved.
    unsafe { libc::kill(pid, libc::SIGSTOP) };
    let stopped = Instant::now();
    let took = wait_health(&a, 503, Duration::from_secs(5));
    // SAFETY: as above.
    unsafe { libc::kill(pid, libc::SIGCONT) };
    assert!(took <= Duration::from_secs(5), "503 after {took:?}");
    wait_health(&a, 200, Duration::from_secs(8));
    eprintln!(
        "hung Redis noticed after {took:?} (stopped {:?} ago)",
        stopped.elapsed()
    );
}
