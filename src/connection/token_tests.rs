//! Token expiry and `refresh` on a connection driven with a test clock:
//! the Unix time is 0 for the whole test (tokens carry small `exp`s) and
//! the worker clock is moved by hand, so the 4010 deadline is checked to
//! the millisecond without sleeping.

use std::time::Duration;

use hmac::{Hmac, KeyInit, Mac};
use serde_json::{json, Value};
use sha2::Sha256;

use super::*;
use crate::auth::{Authenticator, HmacKey, Rules};

const SECRET: &[u8] = b"token-tests";

fn hs256(claims: Value) -> String {
    let b64 = |b: &[u8]| data_encoding::BASE64URL_NOPAD.encode(b);
    let input = format!(
        "{}.{}",
        b64(br#"{"alg":"HS256"}"#),
        b64(claims.to_string().as_bytes())
    );
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET).unwrap();
    mac.update(input.as_bytes());
    format!("{input}.{}", b64(&mac.finalize().into_bytes()))
}

/// A harness whose node verifies HS256 tokens with a 1 s leeway.
fn harness() -> Harness {
    let mut h = Harness::new(Config::default());
    let config = Arc::new(Config {
        threads: 1,
        node: "t".into(),
        hmac_secret: Some("x".into()),
        jwt_leeway_s: 1,
        ..Config::default()
    });
    let auth = Authenticator::with_keys(
        Some(HmacKey::new(SECRET)),
        Vec::new(),
        Rules {
            leeway_s: 1,
            ..Rules::default()
        },
    );
    h.node = Node::new(config, 1, false, Some(auth));
    h
}

/// A masked client text frame of any length up to 64 KiB (RFC 6455 §5.2).
fn text(v: Value) -> Vec<u8> {
    let payload = v.to_string().into_bytes();
    let mask = [1u8, 2, 3, 4];
    let mut f = vec![0x81];
    if payload.len() < 126 {
        f.push(0x80 | payload.len() as u8);
    } else {
        f.push(0x80 | 126);
        f.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    }
    f.extend_from_slice(&mask);
    f.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    f
}

fn close_code(c: &mut Connection) -> Option<Value> {
    frames(&written(c))
        .into_iter()
        .find(|(op, _)| *op == 0x8)
        .map(|(_, code)| code)
}

#[test]
fn the_deadline_is_exp_plus_leeway_to_the_millisecond() {
    let mut h = harness();
    let start = h.now;
    let mut c = h.ws(&format!("token={}", hs256(json!({"sub": "a", "exp": 3}))));
    // exp 3 + leeway 1, at Unix time 0: four seconds.
    let due = start + Duration::from_secs(4);
    assert!(c.poll_timeout(&h.cx()).is_some_and(|t| t <= due));
    h.now = due - Duration::from_millis(1);
    c.handle_timeout(&mut h.cx());
    assert_eq!(close_code(&mut c), None, "closed before the deadline");
    h.now = due;
    c.handle_timeout(&mut h.cx());
    assert_eq!(close_code(&mut c), Some(json!(4010)));
}

#[test]
fn refresh_moves_the_deadline_and_a_failed_one_does_not() {
    let mut h = harness();
    let start = h.now;
    let mut c = h.ws(&format!("token={}", hs256(json!({"sub": "a", "exp": 3}))));
    for (token, code) in [
        (hs256(json!({"sub": "b", "exp": 100})), "forbidden"),
        (
            hs256(json!({"sub": "a", "exp": 100, "nbf": 50})),
            "unauthorized",
        ),
        ("x.y.z".to_owned(), "unauthorized"),
    ] {
        h.input(
            &mut c,
            &text(json!({"type": "refresh", "id": 1, "token": token})),
        );
        let got = frames(&written(&mut c));
        assert_eq!(got[0].1["code"], code, "{got:?}");
    }
    h.input(
        &mut c,
        &text(json!({"type": "refresh", "id": 2, "token": hs256(json!({"sub": "a", "exp": 9}))})),
    );
    let got = frames(&written(&mut c));
    assert_eq!(got[0].1, json!({"type": "refreshed", "id": 2, "exp": 9}));
    h.now = start + Duration::from_secs(4);
    c.handle_timeout(&mut h.cx());
    assert_eq!(close_code(&mut c), None, "the old deadline was moved");
    h.now = start + Duration::from_secs(10);
    c.handle_timeout(&mut h.cx());
    assert_eq!(close_code(&mut c), Some(json!(4010)));
}

#[test]
fn a_narrowed_channel_is_left_and_its_notice_waits_for_the_owner() {
    let mut h = harness();
    let mut c = h.ws(&format!("token={}", hs256(json!({"sub": "a", "exp": 600}))));
    h.input(
        &mut c,
        &client_text(json!({"type": "join_channel", "channel": "doc:1", "id": 1})),
    );
    let _ = h.take_asked();
    let joined = crate::ws::text_frame_with(|b| {
        crate::proto::server::joined(b, Some(1), "doc:1", None, None, None, None)
    });
    c.handle_joined(vec![joined], &mut h.cx());
    let _ = written(&mut c);
    let narrower = hs256(json!({"sub": "a", "exp": 600, "channels": ["lobby"]}));
    h.input(
        &mut c,
        &text(json!({"type": "refresh", "id": 2, "token": narrower})),
    );
    let asked = h.take_asked();
    assert!(
        matches!(&asked[..], [ToOwner::Leave { channel, id: None, reply: false, .. }] if &**channel == "doc:1"),
        "{asked:?}"
    );
    let got = frames(&written(&mut c));
    assert_eq!(
        got.len(),
        1,
        "only refreshed until the owner confirms: {got:?}"
    );
    assert_eq!(got[0].1["type"], "refreshed");
    c.handle_owner(
        crate::broker::ToWorker::Left {
            channel: "doc:1".into(),
            who: c.id(),
            frame: None,
        },
        &mut h.cx(),
    );
    let got = frames(&written(&mut c));
    assert_eq!(
        got,
        [(
            0x1,
            json!({"type": "left", "channel": "doc:1", "reason": "forbidden"})
        )]
    );
}
