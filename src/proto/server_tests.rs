//! Tests of the encoders: each output is parsed back with serde_json, and the
//! exact bytes are compared with PROTOCOL.md's examples where it has one.

use super::*;
use proptest::prelude::*;
use serde_json::{json, Value};

fn encode(f: impl FnOnce(&mut Vec<u8>)) -> (String, Value) {
    // Encoders append: whatever was in the buffer stays in front.
    let mut out = b"HDR".to_vec();
    f(&mut out);
    assert_eq!(out.get(..3), Some(&b"HDR"[..]));
    let text = String::from_utf8(out.split_off(3)).expect("encoders write UTF-8");
    let value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{text}: {e}"));
    (text, value)
}

fn raw(s: &str) -> &RawValue {
    serde_json::from_str(s).expect("test input is JSON")
}

fn alice() -> Member<'static> {
    Member {
        user: "alice",
        conn: "n1-7f3a",
        info: None,
    }
}

#[test]
fn welcome_matches_section_1() {
    let (text, _) = encode(|out| welcome(out, "n1-7f3a", "alice", "n1", 25, 65536));
    assert_eq!(
        text,
        r#"{"type":"welcome","conn":"n1-7f3a","user":"alice","node":"n1","heartbeat_s":25,"max_message_bytes":65536}"#
    );
}

#[test]
fn joined_matches_section_3() {
    let members = [alice()];
    let history = History {
        offset: 17,
        epoch: "a1b2",
    };
    let (text, _) = encode(|out| {
        joined(
            out,
            Some(1),
            "doc:42",
            Some(&members),
            Some(history),
            None,
            None,
        )
    });
    assert_eq!(
        text,
        r#"{"type":"joined","id":1,"channel":"doc:42","members":[{"user":"alice","conn":"n1-7f3a"}],"offset":17,"epoch":"a1b2"}"#
    );
}

#[test]
fn joined_without_history_or_presence_has_no_such_fields() {
    let (_, v) = encode(|out| joined(out, None, "c", None, None, None, None));
    assert_eq!(v, json!({"type":"joined","channel":"c"}));
    let (_, v) = encode(|out| joined(out, None, "c", Some(&[]), None, None, None));
    assert_eq!(v, json!({"type":"joined","channel":"c","members":[]}));
}

#[test]
fn joined_with_recovery_fields() {
    let history = History {
        offset: 20,
        epoch: "e",
    };
    let (text, v) = encode(|out| {
        joined(
            out,
            Some(9),
            "doc:1",
            Some(&[alice()]),
            Some(history),
            Some(true),
            Some(3),
        )
    });
    assert_eq!(
        v,
        json!({"type":"joined","id":9,"channel":"doc:1","members":[{"user":"alice","conn":"n1-7f3a"}],
               "offset":20,"epoch":"e","recovered":true,"replayed":3})
    );
    assert!(text.ends_with(r#","recovered":true,"replayed":3}"#));
    let (_, v) = encode(|out| joined(out, None, "doc:1", None, None, Some(false), Some(0)));
    assert_eq!(
        v,
        json!({"type":"joined","channel":"doc:1","recovered":false,"replayed":0})
    );
}

#[test]
fn left_ack_presence_state_pong_match_section_3() {
    let (text, _) = encode(|out| left(out, Some(2), "doc:42"));
    assert_eq!(text, r#"{"type":"left","id":2,"channel":"doc:42"}"#);
    let (text, _) = encode(|out| ack(out, Some(3), "doc:42", Some(18)));
    assert_eq!(
        text,
        r#"{"type":"ack","id":3,"channel":"doc:42","offset":18}"#
    );
    let (text, _) = encode(|out| presence_state(out, Some(5), "doc:42", &[alice()]));
    assert_eq!(
        text,
        r#"{"type":"presence_state","id":5,"channel":"doc:42","members":[{"user":"alice","conn":"n1-7f3a"}]}"#
    );
    let (text, _) = encode(|out| pong(out, Some(4)));
    assert_eq!(text, r#"{"type":"pong","id":4}"#);
}

#[test]
fn resync_matches_section_5() {
    let (text, _) = encode(|out| resync(out, "doc:42"));
    assert_eq!(text, r#"{"type":"resync","channel":"doc:42"}"#);
    assert_eq!(
        encode(|out| resync(out, "a\"b")).1,
        json!({"type":"resync","channel":"a\"b"})
    );
}

#[test]
fn replies_without_id_omit_it() {
    assert_eq!(
        encode(|out| left(out, None, "c")).1,
        json!({"type":"left","channel":"c"})
    );
    assert_eq!(
        encode(|out| ack(out, None, "c", None)).1,
        json!({"type":"ack","channel":"c"})
    );
    assert_eq!(encode(|out| pong(out, None)).1, json!({"type":"pong"}));
    assert_eq!(
        encode(|out| presence_state(out, None, "c", &[])).1,
        json!({"type":"presence_state","channel":"c","members":[]})
    );
    assert_eq!(
        encode(|out| error(out, None, ErrorCode::BadRequest, "m")).1,
        json!({"type":"error","code":"bad_request","message":"m"})
    );
}

#[test]
fn ids_up_to_2_pow_53_are_exact() {
    let (text, _) = encode(|out| pong(out, Some((1 << 53) - 1)));
    assert_eq!(text, r#"{"type":"pong","id":9007199254740991}"#);
}

#[test]
fn error_matches_section_7() {
    let (text, _) = encode(|out| {
        error(
            out,
            Some(3),
            ErrorCode::NotJoined,
            "join doc:42 before acting in it",
        )
    });
    assert_eq!(
        text,
        r#"{"type":"error","id":3,"code":"not_joined","message":"join doc:42 before acting in it"}"#
    );
    for code in ErrorCode::ALL {
        let (_, v) = encode(|out| error(out, None, code, "x"));
        assert_eq!(v["code"], code.as_str());
    }
}

#[test]
fn error_message_is_escaped() {
    let message = "unknown type `a\"b\\c\u{1}\n\u{e9}`";
    let (_, v) = encode(|out| error(out, Some(1), ErrorCode::UnknownType, message));
    assert_eq!(v["message"], message);
}

#[test]
fn user_action_matches_section_4() {
    let (text, _) = encode(|out| {
        user_action(
            out,
            "doc:42",
            Some("alice"),
            Some("n1-7f3a"),
            None,
            br#"{"x":3,"y":9}"#,
            Some(18),
        )
    });
    assert_eq!(
        text,
        r#"{"type":"user_action","channel":"doc:42","user":"alice","conn":"n1-7f3a","action":{"x":3,"y":9},"offset":18}"#
    );
}

#[test]
fn user_action_from_http_has_null_sender_and_no_offset() {
    let (text, v) = encode(|out| user_action(out, "c", None, None, None, b"null", None));
    assert_eq!(
        text,
        r#"{"type":"user_action","channel":"c","user":null,"conn":null,"action":null}"#
    );
    assert!(v["action"].is_null());
}

#[test]
fn user_action_keeps_action_bytes_and_carries_info() {
    let action = br#"{ "y" : 9, "x":1.50E+2, "n":123456789012345678901234567890 }"#;
    let info = raw(r#"{"name": "Alice"}"#);
    let (text, v) = encode(|out| {
        user_action(
            out,
            "doc:42",
            Some("alice"),
            Some("n1-7f3a"),
            Some(info),
            action,
            None,
        )
    });
    assert!(
        text.contains(&format!(
            ",\"action\":{}}}",
            String::from_utf8_lossy(action)
        )),
        "{text}"
    );
    assert!(
        text.contains(r#","info":{"name": "Alice"},"action":"#),
        "{text}"
    );
    assert_eq!(v["info"], json!({"name":"Alice"}));
    assert_eq!(v["user"], "alice");
}

#[test]
fn presence_matches_section_4() {
    let bob = Member {
        user: "bob",
        conn: "n2-0c11",
        info: None,
    };
    let (text, _) = encode(|out| presence(out, "doc:42", PresenceEvent::Join, bob));
    assert_eq!(
        text,
        r#"{"type":"presence","channel":"doc:42","event":"join","user":"bob","conn":"n2-0c11"}"#
    );
    let (text, _) = encode(|out| presence(out, "doc:42", PresenceEvent::Leave, bob));
    assert_eq!(
        text,
        r#"{"type":"presence","channel":"doc:42","event":"leave","user":"bob","conn":"n2-0c11"}"#
    );
}

#[test]
fn presence_leave_carries_info() {
    let bob = Member {
        user: "bob",
        conn: "n2-0c11",
        info: Some(raw(r#"[1, "x"]"#)),
    };
    let (text, v) = encode(|out| presence(out, "doc:42", PresenceEvent::Leave, bob));
    assert!(text.ends_with(r#","info":[1, "x"]}"#), "{text}");
    assert_eq!(v["event"], "leave");
}

#[test]
fn members_with_and_without_info() {
    let members = [
        alice(),
        Member {
            user: "bob",
            conn: "n2-0c11",
            info: Some(raw("null")),
        },
    ];
    let (_, v) = encode(|out| presence_state(out, Some(1), "c", &members));
    assert_eq!(
        v["members"],
        json!([{"user":"alice","conn":"n1-7f3a"},{"user":"bob","conn":"n2-0c11","info":null}])
    );
}

proptest! {
    #[test]
    fn strings_round_trip_through_every_encoder(
        s in "\\PC{0,20}|[\\x00-\\x7f]{0,20}",
        id in proptest::option::of(any::<u64>()),
        offset in proptest::option::of(any::<u64>()),
    ) {
        let member = Member { user: &s, conn: &s, info: None };
        let (_, v) = encode(|out| user_action(out, &s, Some(&s), Some(&s), None, b"[]", offset));
        prop_assert_eq!(&v["channel"], &json!(s));
        prop_assert_eq!(&v["user"], &json!(s));
        prop_assert_eq!(v.get("offset").and_then(Value::as_u64), offset);
        let (_, v) = encode(|out| presence(out, &s, PresenceEvent::Join, member));
        prop_assert_eq!(&v["conn"], &json!(s));
        let (_, v) = encode(|out| joined(out, id, &s, Some(&[member]), Some(History { offset: 1, epoch: &s }), None, None));
        prop_assert_eq!(&v["epoch"], &json!(s));
        prop_assert_eq!(&v["members"][0]["user"], &json!(s));
        prop_assert_eq!(v.get("id").and_then(Value::as_u64), id);
        let (_, v) = encode(|out| welcome(out, &s, &s, &s, 25, 1 << 16));
        prop_assert_eq!(&v["node"], &json!(s));
        let (_, v) = encode(|out| error(out, id, ErrorCode::Forbidden, &s));
        prop_assert_eq!(&v["message"], &json!(s));
    }
}

#[test]
fn api_answers_match_section_9() {
    assert_eq!(encode(|o| api_published(o, Some(18))).0, r#"{"offset":18}"#);
    assert_eq!(encode(|o| api_published(o, None)).0, "{}");
    let (text, v) = encode(|o| api_presence(o, "doc:\"42", br#"[{"user":"a","conn":"c"}]"#));
    assert_eq!(
        v,
        json!({"channel": "doc:\"42", "members": [{"user": "a", "conn": "c"}]})
    );
    assert!(text.starts_with(r#"{"channel":"doc:\"42""#));
    let (_, v) = encode(|o| api_channels(o, [("a:1", 1), ("b:1", 2)]));
    assert_eq!(
        v,
        json!({"channels": [{"channel": "a:1", "members": 1}, {"channel": "b:1", "members": 2}]})
    );
    assert_eq!(encode(|o| api_channels(o, [])).0, r#"{"channels":[]}"#);
}

/// The Redis broker's forms (an action completed by the publish script, a
/// presence event and a member list from stored member fields) are the
/// same bytes as the direct ones, and read back as what they are.
#[test]
fn redis_forms_write_the_same_bytes_and_read_back() {
    let info = raw(r#"{"n":"A \"b\""}"#);
    let m = Member {
        user: "u\u{1}é",
        conn: "c-1",
        info: Some(info),
    };
    let mut fields = Vec::new();
    member_fields(&mut fields, m);
    for event in [PresenceEvent::Join, PresenceEvent::Leave] {
        let (mut a, mut b) = (Vec::new(), Vec::new());
        presence(&mut a, "room:é", event, m);
        presence_raw(&mut b, "room:é", event, &fields);
        assert_eq!(a, b);
        assert_eq!(Written::of(&a), Written::Presence);
    }
    let (mut a, mut b) = (Vec::new(), Vec::new());
    write_members(&mut a, &[m, alice()]);
    let mut alice_fields = Vec::new();
    member_fields(&mut alice_fields, alice());
    write_members_raw(&mut b, [&fields[..], &alice_fields[..]]);
    assert_eq!(a, b);
    for offset in [None, Some(0), Some(17), Some(u64::MAX)] {
        let mut a = Vec::new();
        user_action(
            &mut a,
            "doc:1",
            Some("u"),
            Some("c"),
            Some(info),
            b"[1]",
            offset,
        );
        assert_eq!(Written::of(&a), Written::Action { offset });
        if let Some(n) = offset {
            // What the publish script appends.
            let mut b = Vec::new();
            user_action_until_offset(&mut b, "doc:1", Some("u"), Some("c"), Some(info), b"[1]");
            b.extend_from_slice(format!("{n}}}").as_bytes());
            assert_eq!(a, b);
        }
    }
}

#[test]
fn offset_is_read_from_the_end_of_a_history_event() {
    let cases: [(&[u8], Option<u64>); 7] = [
        (
            br#"{"type":"user_action","action":1,"offset":17}"#,
            Some(17),
        ),
        (br#"{"action":{"offset":3},"offset":0}"#, Some(0)),
        (br#"{"type":"user_action","action":{"offset":3}}"#, None),
        (br#"{"type":"user_action","action":12}"#, None),
        (br#"{"type":"presence","event":"join"}"#, None),
        (br#""offset":99999999999999999999999}"#, None),
        (b"", None),
    ];
    for (payload, want) in cases {
        let got = match Written::of(payload) {
            Written::Action { offset } => offset,
            Written::Presence => None,
        };
        assert_eq!(got, want, "{}", String::from_utf8_lossy(payload));
    }
}
