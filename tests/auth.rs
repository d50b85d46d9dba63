//! PROTOCOL.md §6 against a running server: the `token` query parameter
//! (HS256 JWT) checked before the upgrade, the `info` claim on presence and
//! actions, the `channels` claim on joins, and the secret taken from
//! `SWITCHBOARD_HMAC_SECRET`.
//!
//! Tokens are minted here with `hmac` + `sha2` (the server's own crates, but
//! none of its code), so a bug in the server's verifier cannot hide behind
//! the same bug in the tests' signer.

mod common;

use std::time::{SystemTime, UNIX_EPOCH};

use common::*;
use hmac::{Hmac, KeyInit, Mac};
use serde_json::{json, Value};
use sha2::{Sha256, Sha384};

const SECRET: &str = "auth-test-secret";

fn b64(bytes: &[u8]) -> String {
    data_encoding::BASE64URL_NOPAD.encode(bytes)
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs()
}

/// `header.payload` of a JWS compact serialization (RFC 7515 §7.1).
fn signing_input(header: &str, claims: &str) -> String {
    format!("{}.{}", b64(header.as_bytes()), b64(claims.as_bytes()))
}

/// A token with the header and claims exactly as given, signed HS256.
fn sign_raw(header: &str, claims: &str, secret: &str) -> String {
    let input = signing_input(header, claims);
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(input.as_bytes());
    format!("{input}.{}", b64(&mac.finalize().into_bytes()))
}

/// A well-formed HS256 token over `claims` (a JSON object as text, so that
/// `info` can carry spacing the server must keep).
fn token_raw(claims: &str) -> String {
    sign_raw(r#"{"alg":"HS256","typ":"JWT"}"#, claims, SECRET)
}

fn token(claims: Value) -> String {
    token_raw(&claims.to_string())
}

/// A valid token for `sub`, expiring in an hour.
fn token_for(sub: &str) -> String {
    token(json!({"sub": sub, "exp": now() + 3600}))
}

fn auth_server() -> Server {
    Server::start(&["--hmac-secret", SECRET])
}

/// The upgrade to `/ws?QUERY` is refused with 401 and no WebSocket opens:
/// the answer is a plain HTTP response, and the server then ends the
/// connection.
#[track_caller]
fn assert_401(addr: std::net::SocketAddr, query: &str) -> String {
    let (mut raw, resp) = Raw::upgrade(addr, query);
    assert_eq!(resp.status, 401, "{query:.120}: {resp:?}");
    assert!(
        resp.header("sec-websocket-accept").is_none(),
        "a refused upgrade carries no accept key: {resp:?}"
    );
    raw.expect_eof(TIMEOUT);
    resp.body_text()
}

#[test]
fn valid_token_sets_the_user_from_sub() {
    let s = auth_server();
    let c = s.connect(&format!("token={}", token_for("alice")));
    assert_eq!(c.user(), "alice", "{}", c.welcome);

    // `sub` is not held to the `user` alphabet: tokens come from a trusted
    // backend and may name users by e-mail address or display name.
    let sub = "Zoë <zoe@example.com>";
    let c = s.connect(&format!("token={}", token_for(sub)));
    assert_eq!(c.user(), sub, "{}", c.welcome);
}

#[test]
fn missing_or_empty_token_is_401() {
    let s = auth_server();
    assert_401(s.addr, "");
    assert_401(s.addr, "token=");
    assert_401(s.addr, "user=alice");
    assert_401(s.addr, "token=not.a.jwt");
}

#[test]
fn expiry_honours_a_leeway_of_at_most_60_s() {
    let s = auth_server();
    let t = now();
    // Expired well beyond the 60 s leeway.
    assert_401(
        s.addr,
        &format!("token={}", token(json!({"sub": "a", "exp": t - 120}))),
    );
    assert_401(
        s.addr,
        &format!("token={}", token(json!({"sub": "a", "exp": 0}))),
    );
    // Expired, but within the leeway (20 s of margin on either side for a
    // slow test machine).
    let c = s.connect(&format!(
        "token={}",
        token(json!({"sub": "b", "exp": t - 20}))
    ));
    assert_eq!(c.user(), "b");
    // A fractional NumericDate (RFC 7519 §2) is a number too.
    let c = s.connect(&format!(
        "token={}",
        token_raw(&format!(r#"{{"sub":"c","exp":{}.5}}"#, t + 600))
    ));
    assert_eq!(c.user(), "c");
}

#[test]
fn badly_signed_tokens_are_401() {
    let s = auth_server();
    let claims = json!({"sub": "alice", "exp": now() + 3600}).to_string();
    let header = r#"{"alg":"HS256","typ":"JWT"}"#;

    let other_key = sign_raw(header, &claims, "another-secret");
    assert_401(s.addr, &format!("token={other_key}"));

    // A payload swapped under a genuine signature.
    let genuine = token_for("alice");
    let sig = genuine.rsplit('.').next().expect("three segments");
    let forged_claims = json!({"sub": "mallory", "exp": now() + 3600}).to_string();
    let forged = format!("{}.{sig}", signing_input(header, &forged_claims));
    assert_401(s.addr, &format!("token={forged}"));

    // One signature bit flipped.
    let mut bytes = data_encoding::BASE64URL_NOPAD
        .decode(sig.as_bytes())
        .expect("base64url");
    bytes[0] ^= 1;
    let flipped = format!("{}.{}", signing_input(header, &claims), b64(&bytes));
    assert_401(s.addr, &format!("token={flipped}"));

    // No signature at all.
    let unsigned = format!("{}.", signing_input(header, &claims));
    assert_401(s.addr, &format!("token={unsigned}"));

    // The genuine token still works, so the refusals above were about the
    // signature.
    assert_eq!(s.connect(&format!("token={genuine}")).user(), "alice");
}

#[test]
fn algorithms_other_than_hs256_are_401() {
    let s = auth_server();
    let claims = json!({"sub": "alice", "exp": now() + 3600}).to_string();

    // alg none: the classic bypass, with an empty and with a real signature.
    let none = signing_input(r#"{"alg":"none","typ":"JWT"}"#, &claims);
    assert_401(s.addr, &format!("token={none}."));
    assert_401(
        s.addr,
        &format!(
            "token={}",
            sign_raw(r#"{"alg":"none","typ":"JWT"}"#, &claims, SECRET)
        ),
    );

    // HS384, correctly signed with the right secret.
    let input = signing_input(r#"{"alg":"HS384","typ":"JWT"}"#, &claims);
    let mut mac = Hmac::<Sha384>::new_from_slice(SECRET.as_bytes()).expect("any key length");
    mac.update(input.as_bytes());
    let hs384 = format!("{input}.{}", b64(&mac.finalize().into_bytes()));
    assert_401(s.addr, &format!("token={hs384}"));

    // An HS256 signature under a header that lies about the algorithm.
    for header in [
        r#"{"alg":"HS384"}"#,
        r#"{"alg":"RS256"}"#,
        r#"{"alg":"hs256"}"#,
        r#"{"typ":"JWT"}"#,
    ] {
        assert_401(
            s.addr,
            &format!("token={}", sign_raw(header, &claims, SECRET)),
        );
    }
}

#[test]
fn ill_typed_claims_are_401() {
    let s = auth_server();
    let exp = now() + 3600;
    for claims in [
        json!({"sub": 7, "exp": exp}),
        json!({"sub": null, "exp": exp}),
        json!({"sub": ["alice"], "exp": exp}),
        json!({"exp": exp}),
        json!({"sub": "alice", "exp": exp.to_string()}),
        json!({"sub": "alice", "exp": null}),
        json!({"sub": "alice", "exp": true}),
        json!({"sub": "alice"}),
        json!({"sub": "alice", "exp": exp, "channels": "doc:*"}),
        json!({"sub": "alice", "exp": exp, "channels": ["doc:1", 2]}),
    ] {
        assert_401(s.addr, &format!("token={}", token(claims)));
    }
    // The payload is not a JSON object.
    assert_401(s.addr, &format!("token={}", token_raw("[1,2]")));
}

#[test]
fn refusals_do_not_say_which_check_failed() {
    let s = auth_server();
    let t = now();
    let bodies = [
        assert_401(s.addr, ""),
        assert_401(
            s.addr,
            &format!("token={}", token(json!({"sub": "a", "exp": t - 600}))),
        ),
        assert_401(
            s.addr,
            &format!(
                "token={}",
                sign_raw(r#"{"alg":"HS256"}"#, r#"{"sub":"a","exp":1}"#, "x")
            ),
        ),
        assert_401(
            s.addr,
            &format!("token={}", token(json!({"sub": 1, "exp": t + 600}))),
        ),
    ];
    assert!(
        bodies.iter().all(|b| b == &bodies[0]),
        "401 bodies differ by cause: {bodies:?}"
    );
}

#[test]
fn user_parameter_is_ignored_with_auth_on() {
    let s = auth_server();
    let t = token_for("alice");
    let c = s.connect(&format!("user=mallory&token={t}"));
    assert_eq!(c.user(), "alice", "{}", c.welcome);
    // Even an invalid `user`, which answers 400 with auth off, is ignored.
    let c = s.connect(&format!("token={t}&user=not%20valid"));
    assert_eq!(c.user(), "alice", "{}", c.welcome);

    // Control: the same invalid `user` is refused with auth off.
    let off = Server::start(&[]);
    let err = Client::connect_with(off.addr, "user=not%20valid", &[])
        .err()
        .expect("refused");
    assert!(err.contains("400"), "{err}");
}

/// `"info":<raw>` as it appears in the server's JSON text.
fn info_field(raw: &str) -> String {
    format!(r#""info":{raw}"#)
}

#[test]
fn info_rides_on_presence_and_actions() {
    let s = auth_server();
    // Odd spacing and a trailing zero: the server must copy `info` as the
    // token carried it, not re-serialize it.
    let info = r#"{"name": "Alice",  "score":1.50}"#;
    let claims = format!(r#"{{"sub":"alice","exp":{},"info":{info}}}"#, now() + 3600);
    let mut watcher = s.connect(&format!("token={}", token_for("bob")));
    watcher.join("doc:1");

    let mut alice = s.connect(&format!("token={}", token_raw(&claims)));
    alice.join("doc:1");
    let (join, text) = watcher.recv_until_raw(|v| v["type"] == "presence");
    assert_eq!(join["event"], "join", "{text}");
    assert_eq!(join["user"], "alice", "{text}");
    assert_eq!(join["conn"], alice.conn(), "{text}");
    assert!(
        text.contains(&info_field(info)),
        "presence join lacks info: {text}"
    );

    alice.send_json(json!({"type": "user_action", "channel": "doc:1", "action": {"x": 1}}));
    let (act, text) = watcher.recv_until_raw(|v| v["type"] == "user_action");
    assert_eq!(act["user"], "alice", "{text}");
    assert!(
        text.contains(&info_field(info)),
        "user_action lacks info: {text}"
    );
    // The sender's own copy carries it too.
    let (_, own) = alice.recv_until_raw(|v| v["type"] == "user_action");
    assert!(
        own.contains(&info_field(info)),
        "own copy lacks info: {own}"
    );

    // Member lists carry it as well: presence_state here, /api/presence
    // (docs/api.md) from the same owner answer.
    watcher.send_json(json!({"type": "presence", "id": 5, "channel": "doc:1"}));
    let (_, text) = watcher.recv_until_raw(|v| v["id"] == 5);
    assert!(
        text.contains(&info_field(info)),
        "presence_state lacks info: {text}"
    );
    let r = http_get(s.addr, "/api/presence?channel=doc:1");
    assert!(
        r.body_text().contains(&info_field(info)),
        "/api/presence lacks info: {}",
        r.body_text()
    );

    // A user without `info` gets no `info` field (absent, not null).
    watcher.send_json(json!({"type": "user_action", "channel": "doc:1", "action": 2}));
    let plain = alice.recv_until(|v| v["type"] == "user_action");
    assert_eq!(plain["user"], "bob");
    assert!(plain.get("info").is_none(), "{plain}");

    // Leaving (here: disconnecting) carries `info` too.
    drop(alice);
    let (leave, text) = watcher.recv_until_raw(|v| v["type"] == "presence");
    assert_eq!(leave["event"], "leave", "{text}");
    assert_eq!(leave["user"], "alice", "{text}");
    assert!(
        text.contains(&info_field(info)),
        "presence leave lacks info: {text}"
    );
}

#[test]
fn info_on_an_explicit_leave_and_any_json_value() {
    let s = auth_server();
    let mut watcher = s.connect(&format!("token={}", token_for("bob")));
    watcher.join("room:1");
    let claims = format!(
        r#"{{"sub":"carol","exp":{},"info":"plain string"}}"#,
        now() + 3600
    );
    let mut carol = s.connect(&format!("token={}", token_raw(&claims)));
    carol.join("room:1");
    let join = watcher.recv_until(|v| v["type"] == "presence");
    assert_eq!(join["info"], "plain string", "{join}");
    carol.leave("room:1");
    let leave = watcher.recv_until(|v| v["type"] == "presence");
    assert_eq!(
        (leave["event"].as_str(), leave["info"].as_str()),
        (Some("leave"), Some("plain string")),
        "{leave}"
    );
}

/// Joins `channel` and returns the reply (`joined` or `error`).
fn try_join(c: &mut Client, channel: &str) -> Value {
    c.request(json!({"type": "join_channel", "channel": channel}))
}

#[track_caller]
fn assert_forbidden(c: &mut Client, channel: &str) {
    let id = c.fresh_id();
    c.send_json(json!({"type": "join_channel", "id": id, "channel": channel}));
    let v = c.recv_reply(id);
    assert_error(&v, "forbidden", Some(id));
}

fn with_channels(sub: &str, channels: Value) -> String {
    token(json!({"sub": sub, "exp": now() + 3600, "channels": channels}))
}

#[test]
fn channels_claim_exact_names_and_prefixes() {
    let s = auth_server();
    let t = with_channels("alice", json!(["lobby", "doc:*", "team:a*"]));
    let mut c = s.connect(&format!("token={t}"));
    for ok in ["lobby", "doc:42", "doc:", "team:alpha", "team:a"] {
        assert_eq!(try_join(&mut c, ok)["type"], "joined", "{ok}");
    }
    for no in ["lobby2", "lobb", "doc", "docs:1", "team:beta", "other"] {
        assert_forbidden(&mut c, no);
    }
    // A refused join has no effect: acting there is `not_joined`.
    let v = c.request(json!({"type": "user_action", "channel": "other", "action": 1}));
    assert_error(&v, "not_joined", v["id"].as_u64());
    // §7 order: an invalid name is `invalid_channel` before `forbidden`.
    let v = try_join(&mut c, "not valid");
    assert_error(&v, "invalid_channel", v["id"].as_u64());
}

#[test]
fn channels_claim_empty_allows_nothing_absent_allows_all() {
    let s = auth_server();
    let mut none = s.connect(&format!("token={}", with_channels("n", json!([]))));
    for ch in ["lobby", "doc:1", "a"] {
        assert_forbidden(&mut none, ch);
    }
    let mut all = s.connect(&format!("token={}", token_for("a")));
    for ch in ["lobby", "doc:1", "a"] {
        assert_eq!(try_join(&mut all, ch)["type"], "joined", "{ch}");
    }
    let mut star = s.connect(&format!("token={}", with_channels("s", json!(["*"]))));
    assert_eq!(try_join(&mut star, "anything:1")["type"], "joined");
}

#[test]
fn secret_from_the_environment() {
    let secret = "env-only-s3cret-7f1c";
    // Debug logs on, so that a secret printed anywhere would show.
    let s = Server::start_with_env(
        &[("SWITCHBOARD_HMAC_SECRET", secret), ("RUST_LOG", "debug")],
        &[],
    );
    // Authentication is on: no token, or a token under another key, is 401.
    assert_401(s.addr, "user=alice");
    assert_401(s.addr, &format!("token={}", token_for("alice")));
    // A token under the environment's secret is accepted.
    let good = sign_raw(
        r#"{"alg":"HS256"}"#,
        &json!({"sub": "alice", "exp": now() + 3600}).to_string(),
        secret,
    );
    let c = Client::connect(s.addr, &format!("token={good}"));
    assert_eq!(c.user(), "alice");
    drop(c);
    let log = s.log_text();
    assert!(
        !log.contains(secret),
        "the secret appears in the log:\n{log}"
    );
}

#[test]
fn flag_beats_the_environment() {
    let s = Server::start_with_env(
        &[("SWITCHBOARD_HMAC_SECRET", "from-env")],
        &["--hmac-secret", SECRET],
    );
    let c = Client::connect(s.addr, &format!("token={}", token_for("alice")));
    assert_eq!(c.user(), "alice");
    let env_signed = sign_raw(
        r#"{"alg":"HS256"}"#,
        &json!({"sub": "alice", "exp": now() + 3600}).to_string(),
        "from-env",
    );
    assert_401(s.addr, &format!("token={env_signed}"));
}
