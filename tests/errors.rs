//! PROTOCOL.md §7: every error row, the precedence between them, and the
//! namespace options `--no-presence` and `--no-client-publish` (§6, §10).
//! An error never closes the connection: every test ends with a ping.

mod common;

use std::thread;
use std::time::Duration;

use common::*;
use serde_json::json;

#[track_caller]
fn assert_still_open(c: &mut Client) {
    c.send_json(json!({"type": "ping", "id": 424242}));
    let v = c.recv_until(|v| v["type"] == "pong");
    assert_eq!(v["id"].as_u64(), Some(424242), "{v}");
}

#[test]
fn not_json_or_not_an_object_is_bad_request() {
    let s = Server::start(&[]);
    let mut a = s.connect("user=alice");
    for text in [
        "hello",
        "{",
        "",
        "[1,2]",
        "\"ping\"",
        "42",
        "null",
        r#"{"type":"ping"} x"#,
    ] {
        a.send_raw_text(text);
        assert_error(&a.recv_json(), "bad_request", None);
    }
    assert_still_open(&mut a);
}

#[test]
fn missing_or_non_string_type_is_bad_request() {
    let s = Server::start(&[]);
    let mut a = s.connect("user=alice");
    a.send_json(json!({"id": 1, "channel": "x"}));
    assert_error(&a.recv_json(), "bad_request", Some(1));
    for (id, ty) in [
        (2, json!(5)),
        (3, json!(null)),
        (4, json!(["ping"])),
        (5, json!({"t": 1})),
    ] {
        a.send_json(json!({"type": ty, "id": id}));
        assert_error(&a.recv_json(), "bad_request", Some(id));
    }
    assert_still_open(&mut a);
}

#[test]
fn missing_or_ill_typed_fields_are_bad_request() {
    let s = Server::start(&[]);
    let mut a = s.connect("user=alice");
    a.join("f:1");
    let cases = [
        json!({"type": "join_channel", "id": 1}),
        json!({"type": "join_channel", "channel": 5, "id": 2}),
        json!({"type": "leave_channel", "id": 3}),
        json!({"type": "leave_channel", "channel": ["f:1"], "id": 4}),
        json!({"type": "user_action", "channel": "f:1", "id": 5}),
        json!({"type": "user_action", "action": 1, "id": 6}),
        json!({"type": "user_action", "channel": null, "action": 1, "id": 7}),
        json!({"type": "presence", "id": 8}),
        json!({"type": "presence", "channel": {}, "id": 9}),
    ];
    for req in cases {
        let id = req["id"].as_u64();
        a.send_json(req.clone());
        let v = a.recv_json();
        assert_eq!(v["code"], "bad_request", "{req} -> {v}");
        assert_error(&v, "bad_request", id);
    }
    // Still a member of f:1: the ill-typed leaves did nothing.
    let v = a.request(json!({"type": "presence", "channel": "f:1"}));
    assert_eq!(v["type"], "presence_state", "{v}");
}

#[test]
fn unknown_type_is_unknown_type() {
    let s = Server::start(&[]);
    let mut a = s.connect("user=alice");
    for (id, ty) in [
        (1, "dance"),
        (2, "Ping"),
        (3, ""),
        (4, "welcome"),
        (5, "joined"),
    ] {
        a.send_json(json!({"type": ty, "id": id}));
        assert_error(&a.recv_json(), "unknown_type", Some(id));
    }
    a.send_json(json!({"type": "dance"}));
    assert_error(&a.recv_json(), "unknown_type", None);
    assert_still_open(&mut a);
}

#[test]
fn refresh_without_authentication_is_bad_request() {
    // §6 (1.1): with authentication off, `refresh` is a known type that
    // answers `bad_request`, not `unknown_type`.
    let s = Server::start(&[]);
    let mut a = s.connect("user=alice");
    a.send_json(json!({"type": "refresh", "id": 6, "token": "a.b.c"}));
    assert_error(&a.recv_json(), "bad_request", Some(6));
    a.send_json(json!({"type": "refresh", "id": 7}));
    assert_error(&a.recv_json(), "bad_request", Some(7));
    assert_still_open(&mut a);
}

#[test]
fn acting_in_a_channel_not_joined_is_not_joined() {
    let s = Server::start(&[]);
    let mut a = s.connect("user=alice");
    let mut b = s.connect("user=bob");
    b.join("nj:1"); // the channel exists, alice just is not in it
    a.send_json(json!({"type": "leave_channel", "channel": "nj:1", "id": 1}));
    assert_error(&a.recv_json(), "not_joined", Some(1));
    a.send_json(json!({"type": "user_action", "channel": "nj:1", "action": 1, "id": 2}));
    assert_error(&a.recv_json(), "not_joined", Some(2));
    a.send_json(json!({"type": "presence", "channel": "nj:1", "id": 3}));
    assert_error(&a.recv_json(), "not_joined", Some(3));
    a.send_json(json!({"type": "leave_channel", "channel": "never:seen"}));
    assert_error(&a.recv_json(), "not_joined", None);
    // bob got nothing from alice's attempts.
    b.send_json(json!({"type": "ping", "id": 77}));
    let seen = b.recv_all_until(|v| v["type"] == "pong");
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_still_open(&mut a);
}

#[test]
fn invalid_channel_names_are_invalid_channel() {
    let s = Server::start(&[]);
    let mut a = s.connect("user=alice");
    let long = "c".repeat(201);
    let names = [
        "",
        long.as_str(),
        "a b",
        "a#b",
        "é",
        "a\u{0}b",
        "a*",
        "a,b",
        "tab\t",
    ];
    for (i, name) in names.into_iter().enumerate() {
        let id = i as u64 + 1;
        a.send_json(json!({"type": "join_channel", "channel": name, "id": id}));
        assert_error(&a.recv_json(), "invalid_channel", Some(id));
    }
    assert_still_open(&mut a);
}

#[test]
fn too_many_channels_past_max_channels() {
    let s = Server::start(&["--max-channels", "3"]);
    let mut a = s.connect("user=alice");
    for ch in ["m:1", "m:2", "m:3"] {
        a.join(ch);
    }
    a.send_json(json!({"type": "join_channel", "channel": "m:4", "id": 9}));
    assert_error(&a.recv_json(), "too_many_channels", Some(9));
    // Not executed.
    a.send_json(json!({"type": "presence", "channel": "m:4", "id": 10}));
    assert_error(&a.recv_json(), "not_joined", Some(10));
    // Re-joining one already joined is not a new channel.
    a.join("m:1");
    // invalid_channel comes before too_many_channels.
    a.send_json(json!({"type": "join_channel", "channel": "bad name", "id": 11}));
    assert_error(&a.recv_json(), "invalid_channel", Some(11));
    // A leave frees a slot.
    a.leave("m:1");
    a.join("m:4");
}

#[test]
fn precedence_bad_request_beats_unknown_type_and_invalid_channel() {
    let s = Server::start(&[]);
    let mut a = s.connect("user=alice");
    // Bad id + unknown type: bad_request, without id.
    a.send_json(json!({"type": "dance", "id": -1}));
    assert_error(&a.recv_json(), "bad_request", None);
    a.send_json(json!({"type": "dance", "id": "7"}));
    assert_error(&a.recv_json(), "bad_request", None);
    // Missing field + invalid channel: bad_request.
    a.send_json(json!({"type": "user_action", "channel": "bad name", "id": 2}));
    assert_error(&a.recv_json(), "bad_request", Some(2));
    // Bad id + invalid channel: bad_request.
    a.send_json(json!({"type": "join_channel", "channel": "bad name", "id": 1.5}));
    assert_error(&a.recv_json(), "bad_request", None);
}

#[test]
fn precedence_unknown_type_beats_invalid_channel() {
    let s = Server::start(&[]);
    let mut a = s.connect("user=alice");
    a.send_json(json!({"type": "dance", "channel": "bad name", "id": 4}));
    assert_error(&a.recv_json(), "unknown_type", Some(4));
}

#[test]
fn precedence_invalid_channel_beats_not_joined() {
    let s = Server::start(&[]);
    let mut a = s.connect("user=alice");
    a.send_json(json!({"type": "user_action", "channel": "bad name", "action": 1, "id": 5}));
    assert_error(&a.recv_json(), "invalid_channel", Some(5));
    a.send_json(json!({"type": "leave_channel", "channel": "", "id": 6}));
    assert_error(&a.recv_json(), "invalid_channel", Some(6));
    a.send_json(json!({"type": "presence", "channel": "a#b", "id": 7}));
    assert_error(&a.recv_json(), "invalid_channel", Some(7));
}

#[test]
fn precedence_invalid_channel_then_forbidden_then_not_joined() {
    let s = Server::start(&["--no-client-publish", "ro", "--no-presence", "np"]);
    let mut a = s.connect("user=alice");
    // invalid_channel before forbidden.
    a.send_json(json!({"type": "user_action", "channel": "ro:bad name", "action": 1, "id": 1}));
    assert_error(&a.recv_json(), "invalid_channel", Some(1));
    // forbidden before not_joined.
    a.send_json(json!({"type": "user_action", "channel": "ro:1", "action": 1, "id": 2}));
    assert_error(&a.recv_json(), "forbidden", Some(2));
    a.send_json(json!({"type": "presence", "channel": "np:1", "id": 3}));
    assert_error(&a.recv_json(), "forbidden", Some(3));
}

#[test]
fn precedence_rate_limited_beats_everything() {
    let s = Server::start(&["--rate", "1", "--burst", "1"]);
    let mut a = s.connect("user=alice");
    a.send_json(json!({"type": "ping", "id": 1}));
    assert_eq!(
        a.recv_json(),
        json!({"type": "pong", "id": 1}),
        "the one token of the burst"
    );
    // The bucket is now empty (1 token/s, these go out within milliseconds).
    a.send_raw_text("not json");
    assert_error(&a.recv_json(), "rate_limited", None);
    a.send_json(json!({"type": "dance", "id": -1}));
    assert_error(&a.recv_json(), "rate_limited", None);
    a.send_json(json!({"type": "dance", "id": 3}));
    assert_error(&a.recv_json(), "rate_limited", Some(3));
    a.send_json(json!({"type": "join_channel", "channel": "bad name", "id": 4}));
    assert_error(&a.recv_json(), "rate_limited", Some(4));
    a.send_json(json!({"type": "join_channel", "channel": "rl:1", "id": 5}));
    assert_error(&a.recv_json(), "rate_limited", Some(5));
    a.send_binary(b"\x00\x01");
    assert_eq!(a.recv_json()["code"], "rate_limited");
    // A rate-limited request has no effect: after a refill (one token per
    // second; waiting is the only way to get one), rl:1 was never joined.
    thread::sleep(Duration::from_millis(1_100));
    a.send_json(json!({"type": "presence", "channel": "rl:1", "id": 6}));
    assert_error(&a.recv_json(), "not_joined", Some(6));
}

#[test]
fn binary_frame_is_bad_request_and_the_connection_stays_open() {
    let s = Server::start(&[]);
    let mut a = s.connect("user=alice");
    a.send_binary(br#"{"type":"ping","id":1}"#);
    let v = a.recv_json();
    assert_eq!(v["type"], "error", "{v}");
    assert_eq!(v["code"], "bad_request", "{v}");
    a.send_binary(&[0xff, 0x00, 0x80]);
    assert_eq!(a.recv_json()["code"], "bad_request");
    assert_still_open(&mut a);
}

#[test]
fn no_presence_namespace_has_no_members_events_or_presence() {
    let s = Server::start(&["--no-presence", "np"]);
    let mut a = s.connect("user=alice");
    let mut b = s.connect("user=bob");
    let v = a.join("np:1");
    assert!(v.get("members").is_none(), "joined without members: {v}");
    let v = b.join("np:1");
    assert!(v.get("members").is_none(), "{v}");
    a.send_json(json!({"type": "presence", "channel": "np:1", "id": 3}));
    assert_error(&a.recv_json(), "forbidden", Some(3));
    // Barrier: an action from bob; alice sees it with no presence event first.
    b.send_json(json!({"type": "user_action", "channel": "np:1", "action": 1}));
    let seen = a.recv_all_until(|v| v["type"] == "user_action");
    assert_eq!(seen.len(), 1, "no presence event for bob's join: {seen:?}");
    b.leave("np:1");
    a.expect_silence(SILENCE); // no presence event for bob's leave
                               // Other namespaces keep presence.
    let v = a.join("other:1");
    assert_eq!(members(&v), who(&[&a]), "{v}");
}

#[test]
fn no_presence_star_covers_every_namespace() {
    let s = Server::start(&["--no-presence", "*"]);
    let mut a = s.connect("user=alice");
    for ch in ["doc:1", "x:y", "plain"] {
        let v = a.join(ch);
        assert!(v.get("members").is_none(), "{v}");
        a.send_json(json!({"type": "presence", "channel": ch, "id": 2}));
        assert_error(&a.recv_json(), "forbidden", Some(2));
    }
}

#[test]
fn no_client_publish_namespace_forbids_user_action() {
    let s = Server::start(&["--no-client-publish", "ro"]);
    let mut a = s.connect("user=alice");
    let mut b = s.connect("user=bob");
    a.join("ro:1");
    b.join("ro:1");
    a.recv_until(|v| v["type"] == "presence");
    a.send_json(json!({"type": "user_action", "channel": "ro:1", "action": 1, "id": 2}));
    assert_error(&a.recv_json(), "forbidden", Some(2));
    a.send_json(json!({"type": "user_action", "channel": "ro:1", "action": 1}));
    assert_error(&a.recv_json(), "forbidden", None);
    // Nothing was published: bob's next message is the pong of his barrier.
    b.send_json(json!({"type": "ping", "id": 1}));
    assert_eq!(b.recv_json(), json!({"type": "pong", "id": 1}));
    b.expect_silence(SILENCE);
    // Other namespaces publish normally.
    a.join("rw:1");
    a.send_json(json!({"type": "user_action", "channel": "rw:1", "action": 1}));
    assert_eq!(a.recv_json()["type"], "user_action");
}
