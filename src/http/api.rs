//! The pure parts of the HTTP API (PROTOCOL.md §9): the publish body and the
//! bearer key. Answers that need the broker (presence, channels, the publish
//! itself) are built by the worker.

use super::request::Head;
use super::response::Response;
use crate::auth::constant_time_eq;
use crate::proto::{self, Publish};

/// Parses a `/api/publish` body `{"channel": "...", "action": <any JSON>}`
/// with the rules of a client's `user_action` ([`proto::parse_publish`]),
/// as a 400 answer on failure.
///
/// Unknown fields are ignored, as in client requests (§3). Errors, first
/// match wins as in §7: not JSON, not an object, a missing, duplicated or
/// ill-typed field → 400 `bad_request`; a channel outside the alphabet →
/// 400 `invalid_channel`. `"action": null` is a value like any other, and the
/// action is borrowed as the exact bytes sent (§4: byte for byte).
pub fn parse_publish(body: &[u8]) -> Result<Publish<'_>, Response> {
    proto::parse_publish(body).map_err(|e| Response::api_error(400, e.code.as_str(), &e.message))
}

/// Checks `Authorization: Bearer <key>` when an API key is configured.
///
/// The scheme is matched case-insensitively (RFC 9110 §11.1) and the key by
/// `constant_time_eq`, so response timing does not reveal how many leading
/// bytes of a guess were right. An empty presented key never matches. The
/// 401 carries `WWW-Authenticate: Bearer`, which RFC 9110 §11.6.1 requires.
pub fn check_api_key(head: &Head, expected: Option<&str>) -> Result<(), Response> {
    let Some(expected) = expected else {
        return Ok(());
    };
    let presented = head.authorization.as_deref().and_then(bearer_token);
    match presented {
        Some(key) if !key.is_empty() && constant_time_eq(key.as_bytes(), expected.as_bytes()) => {
            Ok(())
        }
        _ => Err(
            Response::api_error(401, "unauthorized", "missing or wrong API key")
                .with_header("WWW-Authenticate", "Bearer"),
        ),
    }
}

/// The credentials after `Bearer` and at least one space (RFC 6750 §2.1).
fn bearer_token(value: &str) -> Option<&str> {
    let scheme = value.get(..6)?;
    let rest = value.get(6..)?;
    if !scheme.eq_ignore_ascii_case("bearer") || !rest.starts_with(' ') {
        return None;
    }
    Some(rest.trim_matches(' '))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::request::parse_head;

    fn error_code(resp: &Response) -> String {
        let v: serde_json::Value = serde_json::from_slice(&resp.body).unwrap();
        v["error"]["code"].as_str().unwrap().to_owned()
    }

    #[test]
    fn publish_keeps_the_action_bytes() {
        let body =
            br#"{"action": {"y": 9, "x": 3.10, "s": "\u00e9"}, "channel":"doc:42", "extra": [1]}"#;
        let p = parse_publish(body).unwrap();
        assert_eq!(p.channel, "doc:42");
        assert_eq!(p.action.get(), r#"{"y": 9, "x": 3.10, "s": "\u00e9"}"#);

        for raw in ["null", "0", "-1.5e3", "\"text\"", "[ ]", "true"] {
            let body = format!(r#"{{"channel":"a","action": {raw} }}"#);
            assert_eq!(parse_publish(body.as_bytes()).unwrap().action.get(), raw);
        }
        let p = parse_publish(br#"{"channel":"doc:\u0034\u0032","action":1}"#).unwrap();
        assert_eq!(p.channel, "doc:42");
    }

    #[test]
    fn publish_bad_request() {
        for body in [
            &b""[..],
            b"nope",
            b"[]",
            b"\"channel\"",
            b"{}",
            br#"{"channel":"a"}"#,
            br#"{"action":1}"#,
            br#"{"channel":7,"action":1}"#,
            br#"{"channel":null,"action":1}"#,
            br#"{"channel":"a","action":1,"channel":"b"}"#,
            br#"{"channel":"a","action":}"#,
            br#"{"channel":"a","action":1} trailing"#,
            b"{\"channel\":\"a\",\"action\":\"\xff\"}",
        ] {
            let err = parse_publish(body).unwrap_err();
            assert_eq!((err.status, err.content_type), (400, "application/json"));
            assert_eq!(
                error_code(&err),
                "bad_request",
                "{}",
                String::from_utf8_lossy(body)
            );
        }
    }

    #[test]
    fn publish_of_a_deeply_nested_action_is_bad_request() {
        // Regression: the API accepted any depth (serde_json skips a
        // RawValue without a depth limit), relaying actions that a client's
        // JSON parser with the usual 128-level limit cannot read.
        let depth = proto::MAX_NESTING;
        let body = format!(
            r#"{{"channel":"a","action":{}{}}}"#,
            "[".repeat(depth),
            "]".repeat(depth)
        );
        let err = parse_publish(body.as_bytes()).unwrap_err();
        assert_eq!(
            (err.status, error_code(&err).as_str()),
            (400, "bad_request")
        );
        let ok = format!(
            r#"{{"channel":"a","action":{}{}}}"#,
            "[".repeat(depth - 1),
            "]".repeat(depth - 1)
        );
        assert!(parse_publish(ok.as_bytes()).is_ok());
    }

    #[test]
    fn publish_invalid_channel() {
        let long = "a".repeat(201);
        for channel in ["", "a b", "doc#1", "é", "a\\u0000", long.as_str()] {
            let body = format!(r#"{{"channel":"{channel}","action":1}}"#);
            let err = parse_publish(body.as_bytes()).unwrap_err();
            assert_eq!(err.status, 400);
            assert_eq!(error_code(&err), "invalid_channel", "{channel:?}");
        }
        let ok = "a".repeat(200);
        for channel in ["a", "A-z_0:9.x@y=z/w", ok.as_str()] {
            let body = format!(r#"{{"channel":"{channel}","action":1}}"#);
            assert_eq!(parse_publish(body.as_bytes()).unwrap().channel, channel);
        }
    }

    fn with_auth(value: Option<&str>) -> Head {
        let field = value.map_or(String::new(), |v| format!("Authorization: {v}\r\n"));
        let req = format!("GET /api/channels HTTP/1.1\r\n{field}\r\n");
        parse_head(req.as_bytes()).unwrap().unwrap().0
    }

    #[test]
    fn api_key() {
        assert!(check_api_key(&with_auth(None), None).is_ok());
        assert!(check_api_key(&with_auth(Some("junk")), None).is_ok());
        let key = Some("s3cret");
        for good in ["Bearer s3cret", "bearer s3cret", "BEARER   s3cret  "] {
            assert!(check_api_key(&with_auth(Some(good)), key).is_ok(), "{good}");
        }
        for bad in [
            None,
            Some("Bearer"),
            Some("Bearer "),
            Some("Bearers3cret"),
            Some("Basic s3cret"),
            Some("Bearer s3cre"),
            Some("Bearer s3cret2"),
            Some("Bearer S3CRET"),
            Some("s3cret"),
        ] {
            let err = check_api_key(&with_auth(bad), key).unwrap_err();
            assert_eq!(
                (err.status, err.content_type),
                (401, "application/json"),
                "{bad:?}"
            );
            assert_eq!(error_code(&err), "unauthorized");
            assert!(err
                .headers
                .contains(&("WWW-Authenticate", "Bearer".to_string())));
        }
        // Two Authorization fields are combined by the parser and so refused.
        let req =
            "GET / HTTP/1.1\r\nAuthorization: Bearer s3cret\r\nAuthorization: Bearer x\r\n\r\n";
        let head = parse_head(req.as_bytes()).unwrap().unwrap().0;
        assert!(check_api_key(&head, key).is_err());
        // An empty configured key lets nobody in rather than everybody.
        assert!(check_api_key(&with_auth(Some("Bearer ")), Some("")).is_err());
    }
}
