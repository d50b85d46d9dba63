//! PROTOCOL.md §3: every request and its reply, with and without `id`, the
//! `id` rules, extra fields, re-joins, and §4's byte-for-byte `action`.

mod common;

use common::*;
use serde_json::{json, Value};

/// No history is configured in these tests, so replies carry neither
/// `offset` nor `epoch` (absent, not null: §3).
#[track_caller]
fn assert_no_history_fields(v: &Value) {
    for key in ["offset", "epoch", "recovered", "replayed"] {
        assert!(
            v.get(key).is_none(),
            "{key} must be absent without history: {v}"
        );
    }
}

#[test]
fn join_channel_with_and_without_id() {
    let s = Server::start(&[]);
    let mut a = s.connect("user=alice");
    a.send_json(json!({"type": "join_channel", "channel": "doc:42", "id": 1}));
    let v = a.recv_json();
    assert_eq!(v["type"], "joined", "{v}");
    assert_eq!(v["id"].as_u64(), Some(1), "{v}");
    assert_eq!(v["channel"], "doc:42", "{v}");
    assert_eq!(members(&v), who(&[&a]), "the joiner is in members: {v}");
    assert_no_history_fields(&v);

    let mut b = s.connect("user=bob");
    b.send_json(json!({"type": "join_channel", "channel": "doc:42"}));
    let v = b.recv_json();
    assert_eq!(v["type"], "joined", "{v}");
    assert!(
        v.get("id").is_none(),
        "no id in the reply to a request without one: {v}"
    );
    assert_eq!(v["channel"], "doc:42");
    assert_eq!(members(&v), who(&[&a, &b]), "{v}");
    assert_no_history_fields(&v);
}

#[test]
fn leave_channel_with_and_without_id() {
    let s = Server::start(&[]);
    let mut a = s.connect("user=alice");
    a.join("doc:1");
    a.join("doc:2");
    a.send_json(json!({"type": "leave_channel", "channel": "doc:1", "id": 2}));
    assert_eq!(
        a.recv_json(),
        json!({"type": "left", "id": 2, "channel": "doc:1"})
    );
    a.send_json(json!({"type": "leave_channel", "channel": "doc:2"}));
    assert_eq!(a.recv_json(), json!({"type": "left", "channel": "doc:2"}));
    // Really left: presence there is now not_joined.
    a.send_json(json!({"type": "presence", "channel": "doc:1", "id": 3}));
    assert_error(&a.recv_json(), "not_joined", Some(3));
}

#[test]
fn user_action_acks_only_with_id() {
    let s = Server::start(&[]);
    let mut a = s.connect("user=alice");
    a.join("doc:7");

    a.send_json(json!({"type": "user_action", "channel": "doc:7", "action": {"n": 1}, "id": 3}));
    // The ack and the echo of the event may come in either order.
    let mut got = [a.recv_json(), a.recv_json()];
    got.sort_by_key(|v| v["type"].as_str().unwrap_or_default().to_owned());
    assert_eq!(
        got[0],
        json!({"type": "ack", "id": 3, "channel": "doc:7"}),
        "ack without offset"
    );
    assert_eq!(got[1]["type"], "user_action", "{}", got[1]);
    assert_eq!(got[1]["action"], json!({"n": 1}));

    // Without id: the event is delivered, no ack. The barrier is a later
    // action with id 5: its ack must be the only ack seen.
    a.send_json(json!({"type": "user_action", "channel": "doc:7", "action": {"n": 2}}));
    a.send_json(json!({"type": "user_action", "channel": "doc:7", "action": {"n": 3}, "id": 5}));
    let mut seen = Vec::new();
    while !(seen.iter().any(|v: &Value| v["type"] == "ack")
        && seen.iter().filter(|v| v["type"] == "user_action").count() == 2)
    {
        seen.push(a.recv_json());
    }
    let acks: Vec<&Value> = seen.iter().filter(|v| v["type"] == "ack").collect();
    assert_eq!(
        acks,
        vec![&json!({"type": "ack", "id": 5, "channel": "doc:7"})],
        "{seen:?}"
    );
    let actions: Vec<&Value> = seen
        .iter()
        .filter(|v| v["type"] == "user_action")
        .map(|v| &v["action"])
        .collect();
    assert_eq!(
        actions,
        vec![&json!({"n": 2}), &json!({"n": 3})],
        "in send order"
    );
    a.expect_silence(SILENCE); // no late ack for the id-less action
    for v in &seen {
        if v["type"] == "user_action" {
            assert!(v.get("id").is_none(), "events carry no request id: {v}");
            assert_no_history_fields(v);
        }
    }
}

#[test]
fn presence_with_and_without_id() {
    let s = Server::start(&[]);
    let mut a = s.connect("user=alice");
    let mut b = s.connect("user=bob");
    a.join("room:p");
    b.join("room:p");
    a.recv_until(|v| v["type"] == "presence"); // bob's join

    a.send_json(json!({"type": "presence", "channel": "room:p", "id": 5}));
    let v = a.recv_json();
    assert_eq!(v["type"], "presence_state", "{v}");
    assert_eq!(v["id"].as_u64(), Some(5));
    assert_eq!(v["channel"], "room:p");
    assert_eq!(members(&v), who(&[&a, &b]), "{v}");

    b.send_json(json!({"type": "presence", "channel": "room:p"}));
    let v = b.recv_json();
    assert_eq!(v["type"], "presence_state", "{v}");
    assert!(v.get("id").is_none(), "{v}");
    assert_eq!(members(&v), who(&[&a, &b]), "{v}");
}

#[test]
fn ping_answers_pong_with_and_without_id() {
    let s = Server::start(&[]);
    let mut a = s.connect("user=alice");
    a.send_json(json!({"type": "ping", "id": 4}));
    assert_eq!(a.recv_json(), json!({"type": "pong", "id": 4}));
    a.send_json(json!({"type": "ping"}));
    assert_eq!(a.recv_json(), json!({"type": "pong"}));
}

#[test]
fn ids_0_and_2_pow_53_minus_1_are_echoed_exactly() {
    let s = Server::start(&[]);
    let mut a = s.connect("user=alice");
    let max = (1u64 << 53) - 1;
    for id in [0, 1, max] {
        a.send_json(json!({"type": "ping", "id": id}));
        let v = a.recv_json();
        assert_eq!(v["type"], "pong", "{v}");
        assert_eq!(
            v["id"].as_u64(),
            Some(id),
            "id echoed as the same unsigned integer: {v}"
        );
    }
    a.send_raw_text(&format!(
        r#"{{"type":"join_channel","channel":"x","id":{max}}}"#
    ));
    let v = a.recv_json();
    assert_eq!(v["type"], "joined");
    assert_eq!(v["id"].as_u64(), Some(max));
}

#[test]
fn invalid_ids_are_bad_request_without_id_and_not_executed() {
    let s = Server::start(&[]);
    let mut a = s.connect("user=alice");
    let mut b = s.connect("user=bob");
    b.join("idr:1");
    let bad_ids = [
        "-1",
        "1.5",
        "\"1\"",
        "9007199254740992",
        "18446744073709551616",
        "true",
        "[1]",
        "{}",
    ];
    for bad in bad_ids {
        a.send_raw_text(&format!(
            r#"{{"type":"join_channel","channel":"idr:1","id":{bad}}}"#
        ));
        assert_error(&a.recv_json(), "bad_request", None);
        a.send_raw_text(&format!(r#"{{"type":"ping","id":{bad}}}"#));
        assert_error(&a.recv_json(), "bad_request", None);
    }
    // None of the joins happened: alice is not a member, bob saw no presence
    // event and is alone in the channel.
    a.send_json(json!({"type": "presence", "channel": "idr:1", "id": 9}));
    assert_error(&a.recv_json(), "not_joined", Some(9));
    let v = b.request(json!({"type": "presence", "channel": "idr:1"}));
    assert_eq!(v["type"], "presence_state", "{v}");
    assert_eq!(members(&v), who(&[&b]), "{v}");
}

#[test]
fn unknown_extra_fields_are_ignored() {
    let s = Server::start(&[]);
    let mut a = s.connect("user=alice");
    a.send_json(json!({"type": "join_channel", "channel": "x:1", "id": 1, "extra": {"deep": [1, 2]}, "zzz": null}));
    let v = a.recv_json();
    assert_eq!(v["type"], "joined", "{v}");
    assert_eq!(v["id"].as_u64(), Some(1));
    a.send_json(json!({"type": "ping", "id": 2, "payload": "ignored"}));
    assert_eq!(a.recv_json(), json!({"type": "pong", "id": 2}));
    a.send_json(
        json!({"type": "user_action", "channel": "x:1", "action": 1, "id": 3, "more": true}),
    );
    let got = [a.recv_json(), a.recv_json()];
    assert!(
        got.iter().any(|v| v["type"] == "ack" && v["id"] == 3),
        "{got:?}"
    );
}

#[test]
fn rejoin_answers_joined_again_with_one_membership_and_no_presence_event() {
    let s = Server::start(&[]);
    let mut a = s.connect("user=alice");
    let mut b = s.connect("user=bob");
    a.join("rj:1");
    b.join("rj:1");
    let ev = a.recv_until(|v| v["type"] == "presence");
    assert_eq!(ev["event"], "join", "{ev}");

    b.send_json(json!({"type": "join_channel", "channel": "rj:1", "id": 2}));
    let v = b.recv_json();
    assert_eq!(v["type"], "joined", "re-join answers joined: {v}");
    assert_eq!(v["id"].as_u64(), Some(2));
    assert_eq!(members(&v), who(&[&a, &b]), "one membership for bob: {v}");

    // Barrier: an action from bob after the re-join; alice must see it with
    // no presence event before it.
    b.send_json(json!({"type": "user_action", "channel": "rj:1", "action": "after-rejoin"}));
    let seen = a.recv_all_until(|v| v["type"] == "user_action");
    assert_eq!(
        seen.len(),
        1,
        "nothing but the action reaches alice: {seen:?}"
    );

    // One leave ends the single membership.
    b.leave("rj:1");
    let ev = a.recv_json();
    assert_eq!(ev["type"], "presence", "{ev}");
    assert_eq!(ev["event"], "leave", "{ev}");
    b.send_json(json!({"type": "leave_channel", "channel": "rj:1", "id": 3}));
    assert_error(&b.recv_json(), "not_joined", Some(3));
    let v = a.request(json!({"type": "presence", "channel": "rj:1"}));
    assert_eq!(members(&v), who(&[&a]), "{v}");
}

#[test]
fn action_is_passed_through_byte_for_byte() {
    let s = Server::start(&[]);
    let mut a = s.connect("user=alice");
    let mut b = s.connect("user=bob");
    a.join("bytes:1");
    b.join("bytes:1");
    a.recv_until(|v| v["type"] == "presence");

    let action =
        r#"{"b":1, "a":1.50e3,"c":[true ,null,-0,12345678901234567890],"s":"\u00e9\n","e":{}}"#;
    a.send_raw_text(&format!(
        r#"{{"channel":"bytes:1",  "action": {action} ,"type":"user_action"}}"#
    ));
    for c in [&mut a, &mut b] {
        let (v, raw) = c.recv_until_raw(|v| v["type"] == "user_action");
        assert!(
            raw.contains(action),
            "action not passed through byte for byte:\n sent {action}\n got  {raw}"
        );
        assert_eq!(v["channel"], "bytes:1");
        assert_eq!(v["user"], "alice");
    }

    // Any JSON value, null included, and number formats kept.
    for action in ["null", "0.10", "\"text\"", "[ ]", "-1E-2", "true"] {
        a.send_raw_text(&format!(
            r#"{{"type":"user_action","channel":"bytes:1","action":{action},"id":7}}"#
        ));
        for c in [&mut a, &mut b] {
            let (v, raw) = c.recv_until_raw(|v| v["type"] == "user_action");
            assert!(
                v.as_object().is_some_and(|o| o.contains_key("action")),
                "action key present: {raw}"
            );
            assert!(
                raw.contains(action),
                "action {action} not kept verbatim: {raw}"
            );
        }
    }
}

#[test]
fn user_action_event_fields() {
    let s = Server::start(&[]);
    let mut a = s.connect("user=alice");
    a.join("doc:9");
    a.send_json(json!({"type": "user_action", "channel": "doc:9", "action": {"x": 3, "y": 9}}));
    let v = a.recv_json();
    let expected = json!({
        "type": "user_action", "channel": "doc:9", "user": "alice", "conn": a.conn(),
        "action": {"x": 3, "y": 9}
    });
    assert_eq!(v, expected);
}

#[test]
fn channel_names_of_the_full_alphabet_and_200_bytes_are_valid() {
    let s = Server::start(&[]);
    let mut a = s.connect("user=alice");
    let alphabet = "AZaz09_-:.@=/";
    a.join(alphabet);
    let long: String = "c".repeat(200);
    a.join(&long);
    a.send_json(json!({"type": "user_action", "channel": long, "action": 1, "id": 8}));
    let got = [a.recv_json(), a.recv_json()];
    assert!(
        got.iter()
            .any(|v| v["type"] == "ack" && v["channel"] == long.as_str()),
        "{got:?}"
    );
}
