//! Tests of `parse` and `parse_publish`: one per rule of PROTOCOL.md §3, §5,
//! §7 and per precedence case, then properties.

use super::*;
use proptest::prelude::*;

fn parse_str(text: &str) -> Envelope<'_> {
    parse(text.as_bytes())
}

/// The error code and the echoed id.
fn rejected(text: &str) -> (ErrorCode, Option<u64>) {
    let env = parse_str(text);
    match env.request {
        Err(err) => (err.code, env.id),
        Ok(req) => panic!("{text} parsed as {req:?}"),
    }
}

fn accepted(text: &str) -> (Request<'_>, Option<u64>) {
    let env = parse_str(text);
    match env.request {
        Ok(req) => (req, env.id),
        Err(err) => panic!("{text} refused: {err}"),
    }
}

const BAD: ErrorCode = ErrorCode::BadRequest;

// --- each request of §3 ---

#[test]
fn join_without_since() {
    let (req, id) = accepted(r#"{"type":"join_channel","id":1,"channel":"doc:42"}"#);
    assert_eq!(id, Some(1));
    let Request::Join { channel, since } = req else {
        panic!("{req:?}")
    };
    assert_eq!(channel, "doc:42");
    assert!(matches!(channel, Cow::Borrowed(_)));
    assert_eq!(since, None);
}

#[test]
fn join_with_since() {
    let (req, _) = accepted(
        r#"{"type":"join_channel","channel":"doc:42","since":{"offset":17,"epoch":"a1b2"}}"#,
    );
    let Request::Join { since, .. } = req else {
        panic!("{req:?}")
    };
    assert_eq!(
        since,
        Some(Since {
            offset: 17,
            epoch: "a1b2".into()
        })
    );
}

#[test]
fn since_ignores_unknown_fields_and_decodes_escapes() {
    let (req, _) = accepted(
        r#"{"type":"join_channel","channel":"c","since":{"epoch":"a\u0031","x":[1],"offset":0}}"#,
    );
    let Request::Join { since, .. } = req else {
        panic!("{req:?}")
    };
    assert_eq!(
        since,
        Some(Since {
            offset: 0,
            epoch: "a1".into()
        })
    );
}

#[test]
fn leave_presence_and_ping() {
    let (req, id) = accepted(r#"{"type":"leave_channel","id":2,"channel":"doc:42"}"#);
    assert!(matches!(req, Request::Leave { ref channel } if channel == "doc:42"));
    assert_eq!(id, Some(2));
    let (req, _) = accepted(r#"{"type":"presence","id":5,"channel":"doc:42"}"#);
    assert!(matches!(req, Request::Presence { ref channel } if channel == "doc:42"));
    let (req, id) = accepted(r#"{"type":"ping","id":4}"#);
    assert!(matches!(req, Request::Ping));
    assert_eq!(id, Some(4));
}

#[test]
fn user_action_keeps_action_bytes() {
    let text = r#"{"type":"user_action","id":3,"channel":"doc:42","action": {"y":9 ,"x":3.10e0, "s":"\u00e9"} }"#;
    let (req, id) = accepted(text);
    assert_eq!(id, Some(3));
    let Request::Action { channel, action } = req else {
        panic!("{req:?}")
    };
    assert_eq!(channel, "doc:42");
    assert_eq!(action.get(), r#"{"y":9 ,"x":3.10e0, "s":"\u00e9"}"#);
    // A slice of the input, not a copy.
    let range = text.as_bytes().as_ptr_range();
    assert!(range.contains(&action.get().as_ptr()));
}

#[test]
fn action_null_is_a_value() {
    let (req, _) = accepted(r#"{"type":"user_action","channel":"c","action":null}"#);
    assert!(matches!(req, Request::Action { action, .. } if action.get() == "null"));
}

#[test]
fn action_of_every_json_type() {
    for action in [
        "0",
        "-1.5e300",
        "1e400",
        "123456789012345678901234567890",
        "true",
        "\"s\"",
        "[]",
        "{}",
        r#""\ud800""#,
    ] {
        let text = format!(r#"{{"type":"user_action","channel":"c","action":{action}}}"#);
        let (req, _) = accepted(&text);
        assert!(
            matches!(req, Request::Action { action: a, .. } if a.get() == action),
            "{action}"
        );
    }
}

#[test]
fn without_id_the_request_is_still_parsed() {
    let (req, id) = accepted(r#"{"type":"ping"}"#);
    assert!(matches!(req, Request::Ping));
    assert_eq!(id, None);
}

#[test]
fn unknown_extra_fields_are_ignored() {
    let (req, _) = accepted(
        r#"{"x":{"deep":[1,2,{"a":null}]},"type":"leave_channel","channel":"c","action":5,"since":"junk","y":"z"}"#,
    );
    assert!(matches!(req, Request::Leave { .. }));
    // `channel` means nothing to a ping, even an ill-typed one.
    let (req, _) = accepted(r#"{"type":"ping","channel":17}"#);
    assert!(matches!(req, Request::Ping));
}

#[test]
fn since_is_only_read_by_join() {
    let (req, _) = accepted(r#"{"type":"user_action","channel":"c","action":1,"since":[]}"#);
    assert!(matches!(req, Request::Action { .. }));
}

#[test]
fn channel_with_json_escapes() {
    let (req, _) = accepted(r#"{"type":"join_channel","channel":"doc\u003a42\/a"}"#);
    let Request::Join { channel, .. } = req else {
        panic!("{req:?}")
    };
    assert_eq!(channel, "doc:42/a");
}

#[test]
fn keys_with_json_escapes_are_matched_decoded() {
    let (req, id) = accepted(r#"{"t\u0079pe":"ping","\u0069d":9}"#);
    assert!(matches!(req, Request::Ping));
    assert_eq!(id, Some(9));
}

#[test]
fn whitespace_around_the_message_is_fine() {
    let (req, _) = accepted(" \n\t{ \"type\" : \"ping\" }\r\n ");
    assert!(matches!(req, Request::Ping));
}

// --- id (§3) ---

#[test]
fn id_bounds() {
    assert_eq!(accepted(r#"{"type":"ping","id":0}"#).1, Some(0));
    assert_eq!(
        accepted(r#"{"type":"ping","id":9007199254740991}"#).1,
        Some(MAX_ID)
    );
    assert_eq!(
        rejected(r#"{"type":"ping","id":9007199254740992}"#),
        (BAD, None)
    );
    assert_eq!(
        rejected(r#"{"type":"ping","id":18446744073709551616}"#),
        (BAD, None)
    );
}

#[test]
fn invalid_ids_are_bad_request_without_id() {
    for id in [
        "-1", "1.0", "1e2", "-0", "\"1\"", "null", "true", "[1]", "{}", "0.5",
    ] {
        let text = format!(r#"{{"type":"ping","id":{id}}}"#);
        assert_eq!(rejected(&text), (BAD, None), "{id}");
    }
}

#[test]
fn bad_id_wins_over_unknown_type() {
    assert_eq!(rejected(r#"{"type":"nope","id":-1}"#), (BAD, None));
}

#[test]
fn bad_id_wins_over_invalid_channel() {
    assert_eq!(
        rejected(r#"{"type":"leave_channel","id":"7","channel":"a b"}"#),
        (BAD, None)
    );
}

#[test]
fn errors_echo_a_valid_id() {
    assert_eq!(rejected(r#"{"id":3}"#), (BAD, Some(3)));
    assert_eq!(
        rejected(r#"{"type":"nope","id":3}"#),
        (ErrorCode::UnknownType, Some(3))
    );
    assert_eq!(
        rejected(r#"{"type":"presence","id":3,"channel":""}"#),
        (ErrorCode::InvalidChannel, Some(3))
    );
}

// --- not JSON, not an object (§7) ---

#[test]
fn not_json_is_bad_request() {
    for text in [
        "",
        " ",
        "{",
        "ping",
        "{\"type\":\"ping\"",
        "{'type':'ping'}",
        "{\"type\":\"ping\",}",
    ] {
        assert_eq!(rejected(text), (BAD, None), "{text:?}");
    }
}

#[test]
fn trailing_data_is_bad_request() {
    assert_eq!(rejected(r#"{"type":"ping","id":1} {}"#), (BAD, None));
    assert_eq!(rejected(r#"{"type":"ping","id":1}x"#), (BAD, None));
}

#[test]
fn not_an_object_is_bad_request() {
    for text in ["[]", r#"["type","ping"]"#, "null", "1", "\"ping\"", "true"] {
        assert_eq!(rejected(text), (BAD, None), "{text}");
    }
}

#[test]
fn invalid_utf8_is_bad_request() {
    let env = parse(b"{\"type\":\"ping\",\"x\":\"\xff\"}");
    assert_eq!(env.request.map_err(|e| e.code).err(), Some(BAD));
}

// --- type (§3) ---

#[test]
fn missing_type_is_bad_request() {
    assert_eq!(rejected(r#"{"channel":"doc:42"}"#), (BAD, None));
    assert_eq!(rejected("{}"), (BAD, None));
}

#[test]
fn non_string_type_is_bad_request() {
    for ty in ["null", "1", "true", "[\"ping\"]", "{\"ping\":1}"] {
        let text = format!(r#"{{"type":{ty},"id":1}}"#);
        assert_eq!(rejected(&text), (BAD, Some(1)), "{ty}");
    }
}

#[test]
fn unknown_string_type_is_unknown_type() {
    for ty in ["", "Ping", "ping ", "join", "publish", "welcome"] {
        let text = format!(r#"{{"type":"{ty}","id":1}}"#);
        assert_eq!(rejected(&text), (ErrorCode::UnknownType, Some(1)), "{ty}");
    }
}

#[test]
fn unknown_type_ignores_the_other_fields() {
    // We cannot tell what an unknown type's fields should be.
    assert_eq!(
        rejected(r#"{"type":"nope","channel":5,"since":1}"#).0,
        ErrorCode::UnknownType
    );
}

// --- required fields (§3) ---

#[test]
fn missing_channel_is_bad_request() {
    for ty in ["join_channel", "leave_channel", "presence"] {
        assert_eq!(
            rejected(&format!(r#"{{"type":"{ty}","id":1}}"#)),
            (BAD, Some(1)),
            "{ty}"
        );
    }
    assert_eq!(rejected(r#"{"type":"user_action","action":1}"#).0, BAD);
}

#[test]
fn non_string_channel_is_bad_request() {
    for channel in ["null", "42", "[\"doc:42\"]", "{}", "false"] {
        let text = format!(r#"{{"type":"join_channel","channel":{channel}}}"#);
        assert_eq!(rejected(&text).0, BAD, "{channel}");
    }
}

#[test]
fn missing_action_is_bad_request() {
    assert_eq!(
        rejected(r#"{"type":"user_action","id":3,"channel":"doc:42"}"#),
        (BAD, Some(3))
    );
}

#[test]
fn ill_typed_since_is_bad_request() {
    for since in [
        "null",
        "5",
        "\"17\"",
        "[17,\"a1b2\"]",
        "{}",
        r#"{"offset":17}"#,
        r#"{"epoch":"a1b2"}"#,
        r#"{"offset":"17","epoch":"a1b2"}"#,
        r#"{"offset":-1,"epoch":"a1b2"}"#,
        r#"{"offset":1.5,"epoch":"a1b2"}"#,
        r#"{"offset":null,"epoch":"a1b2"}"#,
        r#"{"offset":17,"epoch":12}"#,
        r#"{"offset":17,"epoch":null}"#,
        r#"{"offset":17,"offset":18,"epoch":"a1b2"}"#,
    ] {
        let text =
            format!(r#"{{"type":"join_channel","id":1,"channel":"doc:42","since":{since}}}"#);
        assert_eq!(rejected(&text), (BAD, Some(1)), "{since}");
    }
}

// --- channel names (§7) ---

#[test]
fn lone_surrogates_are_strings_of_no_meaning() {
    // RFC 8259 allows "\ud800"; no Rust str holds it. It is still a string,
    // so it is unknown_type / invalid_channel, not bad_request.
    assert_eq!(rejected(r#"{"type":"p\ud800"}"#).0, ErrorCode::UnknownType);
    assert_eq!(
        rejected(r#"{"type":"presence","channel":"a\udc00"}"#).0,
        ErrorCode::InvalidChannel
    );
    let (req, _) =
        accepted(r#"{"type":"join_channel","channel":"c","since":{"offset":1,"epoch":"\ud800"}}"#);
    assert!(
        matches!(req, Request::Join { since: Some(Since { ref epoch, .. }), .. } if epoch == r#""\ud800""#)
    );
}

#[test]
fn invalid_channel_name() {
    let long = "a".repeat(201);
    for channel in [
        "",
        "doc 42",
        "caf\u{e9}",
        "doc*",
        "doc\\u0000",
        long.as_str(),
    ] {
        for ty in ["join_channel", "leave_channel", "presence"] {
            let text = format!(r#"{{"type":"{ty}","channel":"{channel}"}}"#);
            assert_eq!(
                rejected(&text).0,
                ErrorCode::InvalidChannel,
                "{ty} {channel}"
            );
        }
        let text = format!(r#"{{"type":"user_action","channel":"{channel}","action":1}}"#);
        assert_eq!(rejected(&text).0, ErrorCode::InvalidChannel, "{channel}");
    }
}

#[test]
fn invalid_channel_message_is_bounded() {
    let channel = "\u{e9}".repeat(10_000);
    let text = format!(r#"{{"type":"presence","channel":"{channel}"}}"#);
    let env = parse_str(&text);
    let err = env.request.expect_err("invalid channel");
    assert_eq!(err.code, ErrorCode::InvalidChannel);
    assert!(err.message.len() < 200, "{}", err.message.len());
}

#[test]
fn ill_typed_since_wins_over_invalid_channel() {
    assert_eq!(
        rejected(r#"{"type":"join_channel","channel":"a b","since":"x"}"#).0,
        BAD
    );
}

#[test]
fn missing_action_wins_over_invalid_channel() {
    assert_eq!(rejected(r#"{"type":"user_action","channel":"a b"}"#).0, BAD);
}

// --- duplicate keys (module docs) ---

#[test]
fn duplicate_used_field_is_bad_request() {
    assert_eq!(
        rejected(r#"{"type":"ping","type":"ping","id":1}"#),
        (BAD, Some(1))
    );
    assert_eq!(
        rejected(r#"{"type":"leave_channel","channel":"a","channel":"b","id":1}"#),
        (BAD, Some(1))
    );
    assert_eq!(
        rejected(r#"{"type":"user_action","channel":"a","action":1,"action":2}"#).0,
        BAD
    );
}

#[test]
fn duplicate_id_is_bad_request_without_id() {
    assert_eq!(rejected(r#"{"type":"ping","id":1,"id":1}"#), (BAD, None));
}

#[test]
fn duplicate_unused_field_is_ignored() {
    let (req, _) = accepted(r#"{"type":"ping","channel":"a","channel":"b","x":1,"x":2}"#);
    assert!(matches!(req, Request::Ping));
}

// --- nesting ---

fn nested(depth: usize) -> String {
    format!("{}{}", "[".repeat(depth), "]".repeat(depth))
}

#[test]
fn deeply_nested_action_is_bad_request_without_overflow() {
    let text = format!(
        r#"{{"type":"user_action","id":1,"channel":"c","action":{}}}"#,
        nested(100_000)
    );
    assert_eq!(rejected(&text), (BAD, Some(1)));
}

#[test]
fn deeply_nested_unknown_field_is_bad_request() {
    let text = format!(r#"{{"type":"ping","x":{}}}"#, nested(100_000));
    assert_eq!(rejected(&text).0, BAD);
}

#[test]
fn deeply_nested_message_is_bad_request_without_overflow() {
    assert_eq!(rejected(&nested(100_000)), (BAD, None));
    let objects = format!("{}{}", "{\"a\":".repeat(100_000), "}".repeat(100_000));
    assert_eq!(rejected(&objects), (BAD, None));
}

#[test]
fn nesting_limit_is_exact() {
    // The request object is level 1, so the action may nest 126 more.
    let text = |depth| {
        format!(
            r#"{{"type":"user_action","channel":"c","action":{}}}"#,
            nested(depth)
        )
    };
    let ok = text(MAX_NESTING - 1);
    let (req, _) = accepted(&ok);
    let Request::Action { action, .. } = req else {
        panic!("{req:?}")
    };
    // Whatever we accept, serde_json (and so every Rust receiver) decodes.
    assert!(serde_json::from_str::<serde_json::Value>(action.get()).is_ok());
    assert!(serde_json::from_str::<serde_json::Value>(&ok).is_ok());
    assert_eq!(rejected(&text(MAX_NESTING)).0, BAD);
}

// --- publish body (§9) ---

#[test]
fn publish_body() {
    let body = br#"{"channel":"doc:42","action":{"x": 1},"type":7,"id":-1}"#;
    let publish = parse_publish(body).expect("valid body");
    assert_eq!(publish.channel, "doc:42");
    assert_eq!(publish.action.get(), r#"{"x": 1}"#);
}

#[test]
fn publish_body_errors() {
    let code = |body: &str| {
        parse_publish(body.as_bytes())
            .map(|_| ())
            .map_err(|e| e.code)
    };
    assert_eq!(code("nope"), Err(BAD));
    assert_eq!(code(r#"{"action":1}"#), Err(BAD));
    assert_eq!(code(r#"{"channel":"c"}"#), Err(BAD));
    assert_eq!(code(r#"{"channel":1,"action":1}"#), Err(BAD));
    assert_eq!(code(r#"{"channel":"a b"}"#), Err(BAD));
    assert_eq!(
        code(r#"{"channel":"a b","action":1}"#),
        Err(ErrorCode::InvalidChannel)
    );
    assert_eq!(code(r#"{"channel":"c","action":null}"#), Ok(()));
}

// --- helpers ---

#[test]
fn request_accessors() {
    let (req, _) = accepted(r#"{"type":"presence","channel":"doc:1"}"#);
    assert_eq!(req.type_name(), "presence");
    assert_eq!(req.channel(), Some("doc:1"));
    assert_eq!(Request::Ping.channel(), None);
    assert_eq!(Request::Ping.type_name(), "ping");
}

#[test]
fn excerpt_cuts_at_char_boundary() {
    assert_eq!(excerpt("short"), "short");
    let s = format!("{}\u{e9}", "a".repeat(63));
    assert_eq!(excerpt(&s), "a".repeat(63));
}

// --- properties ---

/// JSON values written with varied formatting: spaces, exponents, escapes.
fn json_value() -> impl Strategy<Value = String> {
    let leaf = prop_oneof![
        Just("null".to_string()),
        Just("true".to_string()),
        Just("false".to_string()),
        any::<i64>().prop_map(|n| n.to_string()),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(|f| format!("{f:e}")),
        "-?(0|[1-9][0-9]{0,30})(\\.[0-9]{1,20})?([eE][+-]?[0-9]{1,4})?",
        "\\PC{0,12}".prop_map(|s| serde_json::to_string(&s).unwrap_or_default()),
        Just(r#""\u00e9\n\"\\\/\ud83d\ude00""#.to_string()),
    ];
    leaf.prop_recursive(6, 48, 6, |inner| {
        let ws = "[ \t\r\n]{0,2}";
        prop_oneof![
            prop::collection::vec((ws, inner.clone(), ws), 0..6).prop_map(|items| {
                let items: Vec<String> = items.into_iter().map(|(a, v, b)| a + &v + &b).collect();
                format!("[{}]", items.join(","))
            }),
            prop::collection::vec(("[a-z\"é]{0,4}", ws, inner), 0..6).prop_map(|items| {
                let items: Vec<String> = items
                    .into_iter()
                    .map(|(k, sp, v)| {
                        format!(
                            "{}{sp}:{sp}{v}",
                            serde_json::to_string(&k).unwrap_or_default()
                        )
                    })
                    .collect();
                format!("{{{}}}", items.join(","))
            }),
        ]
    })
}

proptest! {
    #[test]
    fn action_bytes_come_out_as_they_went_in(
        action in json_value(),
        before in "[ \n]{0,2}",
        after in "[ \n]{0,2}",
        id in proptest::option::of(0..=MAX_ID),
    ) {
        let id_field = id.map(|id| format!(r#""id":{id},"#)).unwrap_or_default();
        let text = format!(
            r#"{{{id_field}"type":"user_action","channel":"doc:42","action":{before}{action}{after}}}"#
        );
        let env = parse_str(&text);
        prop_assert_eq!(env.id, id);
        match env.request {
            Ok(Request::Action { action: got, .. }) => prop_assert_eq!(got.get(), action.as_str()),
            other => prop_assert!(false, "{:?}", other),
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        let env = parse(&bytes);
        if let Ok(Request::Action { action, .. }) = env.request {
            prop_assert!(serde_json::from_str::<&RawValue>(action.get()).is_ok());
        }
    }

    #[test]
    fn json_ish_text_never_panics(text in r#"[{}\[\]",:a-z0-9 \\.-]{0,64}"#) {
        let env = parse_str(&text);
        if env.request.is_ok() {
            prop_assert!(serde_json::from_str::<serde_json::Value>(&text).is_ok());
        }
    }

    #[test]
    fn valid_channels_parse_and_invalid_ones_are_refused(channel in "\\PC{0,210}") {
        let text = format!(
            r#"{{"type":"join_channel","channel":{}}}"#,
            serde_json::to_string(&channel).unwrap_or_default()
        );
        let env = parse_str(&text);
        if valid_channel(&channel) {
            let parsed = matches!(env.request, Ok(Request::Join { channel: ref c, .. }) if *c == channel);
            prop_assert!(parsed, "{:?}", env.request);
        } else {
            prop_assert_eq!(env.request.map(|_| ()).map_err(|e| e.code), Err(ErrorCode::InvalidChannel));
        }
    }
}

// --- refresh (§6, 1.1) ---

#[test]
fn refresh_carries_its_token() {
    let (req, id) = accepted(r#"{"type":"refresh","id":6,"token":"a.b.c"}"#);
    assert_eq!(id, Some(6));
    assert_eq!(req.type_name(), "refresh");
    assert_eq!(req.channel(), None);
    let Request::Refresh { token } = req else {
        panic!("{req:?}")
    };
    assert_eq!(token, "a.b.c");
}

#[test]
fn refresh_without_a_string_token_is_bad_request() {
    for text in [
        r#"{"type":"refresh","id":6}"#,
        r#"{"type":"refresh","id":6,"token":null}"#,
        r#"{"type":"refresh","id":6,"token":7}"#,
        r#"{"type":"refresh","id":6,"token":"a","token":"b"}"#,
    ] {
        assert_eq!(rejected(text), (BAD, Some(6)), "{text}");
    }
}
