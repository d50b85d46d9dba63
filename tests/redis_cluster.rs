//! Redis mode, PROTOCOL.md §3–§4 across nodes: two switchboard processes on
//! one throwaway `redis-server` behave as one server. Broadcast reaches every
//! member on every node (the sender included), `members` and
//! `presence_state` merge both nodes, presence events cross nodes.

mod common;

use std::cell::RefCell;

use common::*;
use serde_json::{json, Value};

/// The next presence event of `c` is `event` for `actor`, fields exact.
#[track_caller]
fn expect_presence(c: &mut Client, ch: &str, event: &str, actor: (&str, &str)) {
    let v = c.recv_until(|v| v["type"] == "presence");
    let expected = json!({
        "type": "presence", "channel": ch, "event": event, "user": actor.0, "conn": actor.1
    });
    assert_eq!(v, expected, "presence seen by {}", c.conn());
}

/// No presence event in `seen` is about `conn`.
#[track_caller]
fn assert_none_about(seen: &[Value], conn: &str) {
    for v in seen {
        assert!(
            !(v["type"] == "presence" && v["conn"] == conn),
            "{conn} got a presence event about itself: {v}"
        );
    }
}

fn id(c: &Client) -> (String, String) {
    (c.user().to_owned(), c.conn().to_owned())
}

#[test]
fn broadcast_and_members_span_nodes_sender_included() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let a = redis_node("na", &redis, &[]);
    let b = redis_node("nb", &redis, &[]);
    let ch = "room:1";
    let mut clients = [
        a.connect("user=a1"),
        b.connect("user=b1"),
        a.connect("user=a2"),
        b.connect("user=b2"),
    ];
    // Each joiner's `members` lists everyone joined so far, on both nodes.
    for i in 0..clients.len() {
        let v = clients[i].join(ch);
        let expected = who(&clients[..=i].iter().collect::<Vec<_>>());
        assert_eq!(members(&v), expected, "members seen by joiner {i}: {v}");
        assert!(v.get("offset").is_none(), "no history, no offset: {v}");
    }
    // One sender per node; every member on both nodes gets each action.
    for sender in [0, 1] {
        let (user, conn) = id(&clients[sender]);
        let rid = clients[sender].fresh_id();
        clients[sender].send_raw_text(&format!(
            r#"{{"type":"user_action","id":{rid},"channel":"{ch}","action":{{"from":{sender},"n":[1,2.50]}}}}"#
        ));
        // The ack and the sender's own copy may come in either order.
        let ack = RefCell::new(None);
        for (i, c) in clients.iter_mut().enumerate() {
            let (got, raw) = c.recv_until_raw(|v| {
                if v["id"].as_u64() == Some(rid) {
                    *ack.borrow_mut() = Some(v.clone());
                }
                v["type"] == "user_action"
            });
            assert_eq!(
                got,
                json!({"type": "user_action", "channel": ch, "user": user, "conn": conn,
                       "action": {"from": sender, "n": [1, 2.50]}}),
                "delivery to {}",
                c.conn()
            );
            assert!(
                raw.contains("2.50"),
                "action passed through byte for byte: {raw}"
            );
            if i == sender && ack.borrow().is_none() {
                *ack.borrow_mut() = Some(c.recv_reply(rid));
            }
        }
        assert_eq!(
            ack.into_inner(),
            Some(json!({"type": "ack", "id": rid, "channel": ch}))
        );
    }
    // presence_state merges both nodes, asked on either.
    let all = who(&clients.iter().collect::<Vec<_>>());
    for i in [2, 3] {
        let v = clients[i].request(json!({"type": "presence", "channel": ch}));
        assert_eq!(v["type"], "presence_state", "{v}");
        assert_eq!(
            members(&v),
            all,
            "presence_state on node of {}",
            clients[i].conn()
        );
    }
    // A member of another channel on either node hears nothing of this one.
    let mut outsider = b.connect("user=out");
    outsider.join("room:2");
    clients[0].send_json(json!({"type": "user_action", "channel": ch, "action": 0}));
    for c in clients.iter_mut() {
        c.recv_until(|v| v["type"] == "user_action");
    }
    outsider.expect_silence(SILENCE);
}

#[test]
fn presence_events_cross_nodes() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let a = redis_node("na", &redis, &[]);
    let b = redis_node("nb", &redis, &[]);
    let ch = "room:p";
    let mut a1 = a.connect("user=a1");
    let mut b1 = b.connect("user=b1");
    let mut b2 = b.connect("user=b2");
    a1.join(ch);

    // A join on node B reaches the member on node A.
    let (v, before) = b1.request_noting(json!({"type": "join_channel", "channel": ch}));
    assert_eq!(v["type"], "joined", "{v}");
    assert_none_about(&before, b1.conn());
    assert_eq!(members(&v), who(&[&a1, &b1]), "{v}");
    expect_presence(&mut a1, ch, "join", (b1.user(), b1.conn()));

    let (v, before) = b2.request_noting(json!({"type": "join_channel", "channel": ch}));
    assert_eq!(v["type"], "joined", "{v}");
    assert_none_about(&before, b2.conn());
    expect_presence(&mut a1, ch, "join", (b2.user(), b2.conn()));
    expect_presence(&mut b1, ch, "join", (b2.user(), b2.conn()));

    // The joiners never hear their own join: barrier on an action of theirs.
    for c in [&mut b1, &mut b2] {
        c.send_json(json!({"type": "user_action", "channel": ch, "action": "barrier"}));
        let conn = c.conn().to_owned();
        let seen = c.recv_all_until(|v| v["type"] == "user_action" && v["conn"] == conn.as_str());
        assert_none_about(&seen, &conn);
    }

    // A join on node A reaches both members on node B.
    let mut a2 = a.connect("user=a2");
    let v = a2.join(ch);
    assert_eq!(members(&v), who(&[&a1, &b1, &b2, &a2]), "{v}");
    for c in [&mut b1, &mut b2, &mut a1] {
        expect_presence(c, ch, "join", (a2.user(), a2.conn()));
    }

    // Leave by request on node B.
    let (v, before) = b1.request_noting(json!({"type": "leave_channel", "channel": ch}));
    assert_eq!(v["type"], "left", "{v}");
    assert_none_about(&before, b1.conn());
    for c in [&mut a1, &mut a2, &mut b2] {
        expect_presence(c, ch, "leave", (b1.user(), b1.conn()));
    }

    // Leave by disconnect on node A.
    let gone = id(&a2);
    drop(a2);
    for c in [&mut a1, &mut b2] {
        expect_presence(c, ch, "leave", (&gone.0, &gone.1));
    }
    let v = b2.request(json!({"type": "presence", "channel": ch}));
    assert_eq!(members(&v), who(&[&a1, &b2]), "{v}");

    // The member that left hears nothing more of the channel.
    a1.send_json(json!({"type": "user_action", "channel": ch, "action": "after"}));
    for c in [&mut a1, &mut b2] {
        c.recv_until(|v| v["type"] == "user_action" && v["action"] == "after");
    }
    b1.expect_silence(SILENCE);
}

fn post(addr: std::net::SocketAddr, path: &str, body: &str) -> HttpResponse {
    http(
        addr,
        &format!(
            "POST {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        ),
    )
}

fn body_json(r: &HttpResponse) -> Value {
    serde_json::from_slice(&r.body)
        .unwrap_or_else(|e| panic!("{e}: {} {}", r.status, r.body_text()))
}

#[test]
fn http_api_sees_and_reaches_every_node() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let a = redis_node("na", &redis, &[]);
    let b = redis_node("nb", &redis, &[]);
    let ch = "room:api";
    let mut a1 = a.connect("user=a1");
    let mut b1 = b.connect("user=b1");
    let mut b2 = b.connect("user=b2");
    for c in [&mut a1, &mut b1, &mut b2] {
        c.join(ch);
    }
    // Published on node A, delivered on both.
    let r = post(
        a.addr,
        "/api/publish",
        r#"{"channel":"room:api","action":{"k":[1,2]}}"#,
    );
    assert_eq!(
        (r.status, body_json(&r)),
        (200, json!({})),
        "{}",
        r.body_text()
    );
    for c in [&mut a1, &mut b1, &mut b2] {
        let (v, raw) = c.recv_until_raw(|v| v["type"] == "user_action");
        assert_eq!(
            v,
            json!({"type": "user_action", "channel": ch, "user": null, "conn": null, "action": {"k": [1, 2]}})
        );
        assert!(raw.contains(r#""action":{"k":[1,2]}"#), "{raw}");
    }
    // Presence and channel counts span the nodes, asked on either.
    let r = b.http_get("/api/presence?channel=room:api");
    assert_eq!(r.status, 200, "{}", r.body_text());
    let v = body_json(&r);
    assert_eq!(v["channel"], ch, "{v}");
    assert_eq!(members(&v), who(&[&a1, &b1, &b2]), "{v}");
    let r = a.http_get("/api/channels");
    assert_eq!(r.status, 200, "{}", r.body_text());
    assert_eq!(
        body_json(&r),
        json!({"channels": [{"channel": ch, "members": 3}]})
    );
}

#[test]
fn a_largest_action_crosses_nodes_intact() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let a = redis_node("na", &redis, &[]);
    let b = redis_node("nb", &redis, &[]);
    let ch = "room:big";
    let mut a1 = a.connect("user=a1");
    let mut b1 = b.connect("user=b1");
    a1.join(ch);
    b1.join(ch);
    // The whole message at the default 64 KiB limit.
    let envelope = format!(r#"{{"type":"user_action","channel":"{ch}","action":""}}"#);
    let filler = "x".repeat(64 * 1024 - envelope.len());
    let text = format!(r#"{{"type":"user_action","channel":"{ch}","action":"{filler}"}}"#);
    assert_eq!(text.len(), 64 * 1024);
    a1.send_raw_text(&text);
    for c in [&mut a1, &mut b1] {
        let v = c.recv_until(|v| v["type"] == "user_action");
        assert_eq!(v["action"].as_str().map(str::len), Some(filler.len()));
    }
}
