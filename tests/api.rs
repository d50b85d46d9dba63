//! PROTOCOL.md §9 against a running server: `POST /api/publish`,
//! `GET /api/presence`, `GET /api/channels`, the API key, every status code
//! and JSON error body, and HTTP/1.1 keep-alive and pipelining.

mod common;

use std::net::SocketAddr;

use common::*;
use serde_json::{json, Value};

const KEY: &str = "api-test-key-0123";

/// A request with `Host`, `Content-Length` whenever there is a body or the
/// method is POST, the extra fields, and `Connection: close` unless
/// `keep_alive`.
fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    fields: &[(&str, &str)],
    body: &str,
    keep_alive: bool,
) -> String {
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\n");
    for (k, v) in fields {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    if !body.is_empty() || method == "POST" {
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    if !keep_alive {
        head.push_str("Connection: close\r\n");
    }
    head.push_str("\r\n");
    head.push_str(body);
    head
}

/// One request on its own connection, with `Authorization: Bearer KEY` when
/// `key` is given.
fn call(addr: SocketAddr, method: &str, path: &str, key: Option<&str>, body: &str) -> HttpResponse {
    let auth = key.map(|k| format!("Bearer {k}"));
    let fields: Vec<(&str, &str)> = auth.iter().map(|a| ("Authorization", a.as_str())).collect();
    http(addr, &request(addr, method, path, &fields, body, false))
}

/// `GET PATH` on its own connection, without a key.
fn get(addr: SocketAddr, path: &str) -> HttpResponse {
    call(addr, "GET", path, None, "")
}

fn publish(addr: SocketAddr, key: Option<&str>, body: &str) -> HttpResponse {
    call(addr, "POST", "/api/publish", key, body)
}

/// The JSON body of an `/api` answer, asserting its content type.
#[track_caller]
fn json_of(r: &HttpResponse) -> Value {
    assert_eq!(
        r.header("content-type"),
        Some("application/json"),
        "every /api answer is JSON (§9): {} {:?} {}",
        r.status,
        r.headers,
        r.body_text()
    );
    serde_json::from_slice(&r.body)
        .unwrap_or_else(|e| panic!("body is not JSON ({e}): {}", r.body_text()))
}

/// A 200 answer's JSON body.
#[track_caller]
fn ok_json(r: &HttpResponse) -> Value {
    assert_eq!(r.status, 200, "{}", r.body_text());
    json_of(r)
}

/// `{"error":{"code":CODE,"message":"..."}}` with `status`, as JSON.
#[track_caller]
fn assert_api_error(r: &HttpResponse, status: u16, code: &str) {
    assert_eq!(
        r.status,
        status,
        "expected {status} {code}: {}",
        r.body_text()
    );
    let v = json_of(r);
    assert_eq!(v["error"]["code"], code, "{v}");
    assert!(
        v["error"]["message"].is_string(),
        "error without message: {v}"
    );
}

#[test]
fn publish_is_delivered_as_a_user_action_from_nobody() {
    let s = Server::start(&[]);
    let mut a = s.connect("user=alice");
    a.join("doc:42");
    // Key order, spacing, an escape and a number spelling the server must
    // keep: §4 passes the action through byte for byte, over HTTP too.
    let action = r#"{"z": 1, "a":[1.50, -0e0, "\u00e9"] , "n":null}"#;
    let r = publish(
        s.addr,
        None,
        &format!(r#"{{"channel":"doc:42","action":{action}}}"#),
    );
    assert_eq!(r.body_text(), "{}", "no history: the answer is {{}}");
    ok_json(&r);

    let (v, text) = a.recv_until_raw(|v| v["type"] == "user_action");
    assert_eq!(v["channel"], "doc:42", "{text}");
    assert!(
        v["user"].is_null() && v.get("user").is_some(),
        "user: null: {text}"
    );
    assert!(
        v["conn"].is_null() && v.get("conn").is_some(),
        "conn: null: {text}"
    );
    assert!(
        v.get("offset").is_none(),
        "no offset without history: {text}"
    );
    assert!(v.get("info").is_none(), "{text}");
    assert!(
        text.contains(&format!(r#""action":{action}"#)),
        "action not passed through byte for byte: {text}"
    );

    // Every JSON value is an action, `null` included.
    for raw in ["null", "0", "\"x\"", "[]", "true"] {
        let r = publish(
            s.addr,
            None,
            &format!(r#"{{"action":{raw},"channel":"doc:42"}}"#),
        );
        ok_json(&r);
        let (_, text) = a.recv_until_raw(|v| v["type"] == "user_action");
        assert!(text.contains(&format!(r#""action":{raw}"#)), "{text}");
    }
}

#[test]
fn publish_reaches_members_on_both_workers() {
    let s = Server::start(&[]);
    let [mut w0, mut w1] = connect_on_both_workers(&s, "m", 1);
    let (mut c0, mut c1) = (w0.remove(0), w1.remove(0));
    c0.join("fan:1");
    c1.join("fan:1");
    ok_json(&publish(s.addr, None, r#"{"channel":"fan:1","action":7}"#));
    for c in [&mut c0, &mut c1] {
        let v = c.recv_until(|v| v["type"] == "user_action");
        assert_eq!(v["action"], 7, "{v}");
    }
}

#[test]
fn api_publishes_where_clients_may_not() {
    // §6: `--no-client-publish NS` forbids clients, not the HTTP API.
    let s = Server::start(&["--no-client-publish", "news"]);
    let mut a = s.connect("user=alice");
    a.join("news:1");
    let v = a.request(json!({"type": "user_action", "channel": "news:1", "action": 1}));
    assert_error(&v, "forbidden", v["id"].as_u64());
    ok_json(&publish(s.addr, None, r#"{"channel":"news:1","action":2}"#));
    let v = a.recv_until(|v| v["type"] == "user_action");
    assert_eq!(v["action"], 2, "{v}");
}

#[test]
fn publish_with_history_answers_the_offset() {
    let s = Server::start(&["--history", "ns=10"]);
    let mut a = s.connect("user=alice");
    a.join("ns:1");
    for n in 1..=3u64 {
        let r = publish(s.addr, None, r#"{"channel":"ns:1","action":{"n":1}}"#);
        assert_eq!(ok_json(&r), json!({"offset": n}), "{}", r.body_text());
        let v = a.recv_until(|v| v["type"] == "user_action");
        assert_eq!(v["offset"].as_u64(), Some(n), "{v}");
    }
    // A namespace without history still answers {}.
    let r = publish(s.addr, None, r#"{"channel":"other:1","action":1}"#);
    assert_eq!(r.body_text(), "{}");
    // History counts HTTP and client actions alike.
    a.send_json(json!({"type": "user_action", "channel": "ns:1", "action": 0}));
    a.recv_until(|v| v["type"] == "user_action" && v["offset"] == 4);
    let r = publish(s.addr, None, r#"{"channel":"ns:1","action":1}"#);
    assert_eq!(ok_json(&r), json!({"offset": 5}));
}

#[test]
fn publish_bad_request_and_invalid_channel() {
    let s = Server::start(&[]);
    for body in [
        "",
        "nope",
        "[]",
        "{}",
        r#"{"channel":"a"}"#,
        r#"{"action":1}"#,
        r#"{"channel":7,"action":1}"#,
        r#"{"channel":"a","action":}"#,
        r#"{"channel":"a","action":1} trailing"#,
    ] {
        assert_api_error(&publish(s.addr, None, body), 400, "bad_request");
    }
    let long = "a".repeat(201);
    for channel in ["", "a b", "doc#1", long.as_str()] {
        let body = json!({"channel": channel, "action": 1}).to_string();
        assert_api_error(&publish(s.addr, None, &body), 400, "invalid_channel");
    }
}

#[test]
fn presence_lists_members_and_answers_empty_channels() {
    let s = Server::start(&[]);
    let r = get(s.addr, "/api/presence?channel=empty:1");
    assert_eq!(ok_json(&r), json!({"channel": "empty:1", "members": []}));

    let mut a = s.connect("user=alice");
    let mut b = s.connect("user=bob");
    a.join("room:1");
    b.join("room:1");
    let v = ok_json(&get(s.addr, "/api/presence?channel=room:1"));
    assert_eq!(v["channel"], "room:1");
    assert_eq!(members(&v), who(&[&a, &b]), "{v}");

    b.leave("room:1");
    let v = ok_json(&get(s.addr, "/api/presence?channel=room:1"));
    assert_eq!(members(&v), who(&[&a]), "{v}");

    // Percent-encoded query values are decoded.
    let v = ok_json(&get(s.addr, "/api/presence?channel=room%3A1"));
    assert_eq!(v["channel"], "room:1", "{v}");
    assert_eq!(members(&v), who(&[&a]), "{v}");

    let r = get(s.addr, "/api/presence");
    assert_api_error(&r, 400, "bad_request");
    let r = get(s.addr, "/api/presence?channel=a%20b");
    assert_api_error(&r, 400, "invalid_channel");
    let r = get(s.addr, "/api/presence?channel=");
    assert_api_error(&r, 400, "invalid_channel");
}

#[test]
fn presence_of_a_namespace_without_presence_is_403() {
    let s = Server::start(&["--no-presence", "big"]);
    let r = get(s.addr, "/api/presence?channel=big:1");
    assert_api_error(&r, 403, "forbidden");
    ok_json(&get(s.addr, "/api/presence?channel=small:1"));
}

#[test]
fn channels_lists_channels_with_members_counting_connections() {
    let s = Server::start(&[]);
    assert_eq!(
        ok_json(&get(s.addr, "/api/channels")),
        json!({"channels": []})
    );
    // Spread over both workers so that every owner's answer is summed; the
    // same user twice counts two connections.
    let [w0, w1] = connect_on_both_workers(&s, "u", 2);
    let mut all: Vec<Client> = w0.into_iter().chain(w1).collect();
    for c in all.iter_mut() {
        c.join("busy:1");
    }
    let mut again = s.connect("user=u0");
    again.join("busy:1");
    all[0].join("quiet:1");
    all[1].join("gone:1");
    all[1].leave("gone:1");

    let v = ok_json(&get(s.addr, "/api/channels"));
    let mut list: Vec<(String, u64)> = v["channels"]
        .as_array()
        .unwrap_or_else(|| panic!("no channels array: {v}"))
        .iter()
        .map(|e| {
            (
                e["channel"].as_str().expect("channel").to_owned(),
                e["members"].as_u64().expect("members"),
            )
        })
        .collect();
    list.sort();
    assert_eq!(
        list,
        [("busy:1".to_owned(), 5), ("quiet:1".to_owned(), 1)],
        "{v}"
    );

    // A disconnect takes its memberships with it.
    // Polled: the leave reaches each owner on its own time.
    drop(all.remove(0));
    let deadline = std::time::Instant::now() + TIMEOUT;
    loop {
        let v = ok_json(&get(s.addr, "/api/channels"));
        let quiet = v["channels"]
            .as_array()
            .expect("channels")
            .iter()
            .any(|e| e["channel"] == "quiet:1");
        if !quiet {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "quiet:1 still listed after its only member left: {v}"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

#[test]
fn api_key_off_lets_every_request_in() {
    let s = Server::start(&[]);
    ok_json(&get(s.addr, "/api/channels"));
    // A key sent to a server without one is not an error either.
    ok_json(&call(s.addr, "GET", "/api/channels", Some("whatever"), ""));
    ok_json(&publish(s.addr, None, r#"{"channel":"a","action":1}"#));
}

#[test]
fn api_key_on_guards_every_route() {
    let s = Server::start(&["--api-key", KEY]);
    let mut a = s.connect("user=alice");
    a.join("k:1");
    let routes = [
        (
            "POST",
            "/api/publish",
            r#"{"channel":"k:1","action":"nope"}"#,
        ),
        ("GET", "/api/presence?channel=k:1", ""),
        ("GET", "/api/channels", ""),
    ];
    for (method, path, body) in routes {
        for key in [
            None,
            Some("wrong"),
            Some(""),
            Some("api-test-key-012"),
            Some("api-test-key-01234"),
        ] {
            let r = call(s.addr, method, path, key, body);
            assert_api_error(&r, 401, "unauthorized");
            assert_eq!(
                r.header("www-authenticate"),
                Some("Bearer"),
                "{:?}",
                r.headers
            );
        }
        // Another scheme with the right key.
        let r = http(
            s.addr,
            &request(
                s.addr,
                method,
                path,
                &[("Authorization", &format!("Basic {KEY}"))],
                body,
                false,
            ),
        );
        assert_api_error(&r, 401, "unauthorized");
        ok_json(&call(s.addr, method, path, Some(KEY), body));
    }
    // None of the refused publishes reached the channel; the accepted one did.
    let v = a.recv_until(|v| v["type"] == "user_action");
    assert_eq!(v["action"], "nope", "{v}");
    a.request(json!({"type": "ping"}));
    a.expect_silence(SILENCE);
    // The key does not guard the rest of the server.
    assert_eq!(s.http_get("/healthz").status, 200);
    assert_eq!(s.http_get("/metrics").status, 200);
}

#[test]
fn unknown_api_routes_are_404_json() {
    let s = Server::start(&[]);
    for path in ["/api/nope", "/api/publish/", "/api/", "/api"] {
        assert_api_error(&get(s.addr, path), 404, "not_found");
    }
    assert_api_error(
        &call(s.addr, "POST", "/api/nope", None, "{}"),
        404,
        "not_found",
    );
}

#[test]
fn wrong_methods_are_405_with_allow() {
    let s = Server::start(&[]);
    for (method, path, allow) in [
        ("GET", "/api/publish", "POST"),
        ("PUT", "/api/publish", "POST"),
        ("DELETE", "/api/publish", "POST"),
        ("POST", "/api/presence?channel=a", "GET, HEAD"),
        ("POST", "/api/channels", "GET, HEAD"),
        ("DELETE", "/api/channels", "GET, HEAD"),
    ] {
        let r = call(s.addr, method, path, None, "");
        assert_api_error(&r, 405, "method_not_allowed");
        assert_eq!(
            r.header("allow"),
            Some(allow),
            "{method} {path}: {:?}",
            r.headers
        );
    }
}

#[test]
fn bodies_over_1_mib_are_413() {
    let s = Server::start(&[]);
    // The head alone decides: the server answers without waiting for the
    // body, then closes.
    let head = format!(
        "POST /api/publish HTTP/1.1\r\nHost: {}\r\nContent-Length: {}\r\n\r\n",
        s.addr,
        (1 << 20) + 1
    );
    let mut raw = Raw::connect(s.addr);
    raw.send(head.as_bytes());
    let r = raw.read_response();
    assert_api_error(&r, 413, "too_large");
    raw.expect_eof(TIMEOUT);

    // Exactly 1 MiB is accepted.
    let prefix = r#"{"channel":"big:1","action":""#;
    let suffix = r#""}"#;
    let pad = (1 << 20) - prefix.len() - suffix.len();
    let body = format!("{prefix}{}{suffix}", "x".repeat(pad));
    assert_eq!(body.len(), 1 << 20);
    let r = publish(s.addr, None, &body);
    assert_eq!(ok_json(&r), json!({}));

    // Over the limit with the body sent along: still 413.
    let body = format!("{prefix}{}{suffix}", "x".repeat(pad + 1));
    assert_api_error(&publish(s.addr, None, &body), 413, "too_large");
}

#[test]
fn chunked_bodies_are_refused_with_411() {
    let s = Server::start(&[]);
    let req = format!(
        "POST /api/publish HTTP/1.1\r\nHost: {}\r\nTransfer-Encoding: chunked\r\n\r\n\
         1a\r\n{{\"channel\":\"a\",\"action\":1}}\r\n0\r\n\r\n",
        s.addr
    );
    let mut raw = Raw::connect(s.addr);
    raw.send(req.as_bytes());
    let r = raw.read_response();
    // §9 has no code for it; `bad_request` is the nearest (docs/api.md).
    assert_api_error(&r, 411, "bad_request");
    // The body's framing is not understood, so the connection ends.
    raw.expect_eof(TIMEOUT);
}

#[test]
fn keep_alive_serves_two_requests_on_one_connection() {
    let s = Server::start(&[]);
    let mut a = s.connect("user=alice");
    a.join("ka:1");
    let mut raw = Raw::connect(s.addr);
    raw.send(
        request(
            s.addr,
            "POST",
            "/api/publish",
            &[],
            r#"{"channel":"ka:1","action":1}"#,
            true,
        )
        .as_bytes(),
    );
    let r = raw.read_response();
    assert_eq!(ok_json(&r), json!({}));
    assert_ne!(r.header("connection"), Some("close"), "{:?}", r.headers);
    a.recv_until(|v| v["type"] == "user_action" && v["action"] == 1);

    raw.send(request(s.addr, "GET", "/api/presence?channel=ka:1", &[], "", true).as_bytes());
    let v = ok_json(&raw.read_response());
    assert_eq!(members(&v), who(&[&a]), "{v}");

    // A third one asks for the close, and gets it.
    raw.send(request(s.addr, "GET", "/api/channels", &[], "", false).as_bytes());
    let r = raw.read_response();
    assert_eq!(ok_json(&r)["channels"][0]["channel"], "ka:1");
    assert_eq!(r.header("connection"), Some("close"));
    raw.expect_eof(TIMEOUT);
}

#[test]
fn pipelined_requests_are_answered_in_order() {
    let s = Server::start(&["--history", "p=10"]);
    let mut a = s.connect("user=alice");
    a.join("p:1");
    // Five requests in one write; each answer waits on an owner, and the
    // next request must wait for it.
    let mut batch = String::new();
    for n in 1..=3 {
        batch.push_str(&request(
            s.addr,
            "POST",
            "/api/publish",
            &[],
            &format!(r#"{{"channel":"p:1","action":{n}}}"#),
            true,
        ));
    }
    batch.push_str(&request(
        s.addr,
        "GET",
        "/api/presence?channel=p:1",
        &[],
        "",
        true,
    ));
    batch.push_str(&request(s.addr, "GET", "/api/channels", &[], "", false));
    let mut raw = Raw::connect(s.addr);
    raw.send(batch.as_bytes());
    for n in 1..=3u64 {
        assert_eq!(ok_json(&raw.read_response()), json!({"offset": n}));
    }
    let v = ok_json(&raw.read_response());
    assert_eq!(v["channel"], "p:1", "{v}");
    assert_eq!(members(&v), who(&[&a]));
    let v = ok_json(&raw.read_response());
    assert_eq!(v, json!({"channels": [{"channel": "p:1", "members": 1}]}));
    raw.expect_eof(TIMEOUT);
    for n in 1..=3 {
        let v = a.recv_until(|v| v["type"] == "user_action");
        assert_eq!(v["action"], n, "{v}");
    }
}

#[test]
fn pipelined_errors_keep_the_connection_when_the_framing_is_known() {
    let s = Server::start(&[]);
    // A 400 on a well-framed request does not end the connection: the next
    // pipelined request is still answered.
    let batch = [
        request(s.addr, "POST", "/api/publish", &[], "not json", true),
        request(s.addr, "GET", "/api/nope", &[], "", true),
        request(s.addr, "GET", "/api/channels", &[], "", false),
    ]
    .concat();
    let mut raw = Raw::connect(s.addr);
    raw.send(batch.as_bytes());
    assert_api_error(&raw.read_response(), 400, "bad_request");
    assert_api_error(&raw.read_response(), 404, "not_found");
    assert_eq!(ok_json(&raw.read_response()), json!({"channels": []}));
}

#[test]
fn head_requests_get_no_body() {
    let s = Server::start(&[]);
    let mut raw = Raw::connect(s.addr);
    raw.send(request(s.addr, "HEAD", "/api/channels", &[], "", true).as_bytes());
    // A HEAD answer announces a length but has no body; read the head only,
    // then prove the stream is in sync with a second request.
    raw.send(request(s.addr, "GET", "/api/channels", &[], "", false).as_bytes());
    let all = {
        let mut buf = Vec::new();
        use std::io::Read;
        raw.stream.set_read_timeout(Some(TIMEOUT)).expect("timeout");
        raw.stream.read_to_end(&mut buf).expect("read to EOF");
        String::from_utf8(buf).expect("utf-8")
    };
    assert_eq!(all.matches("HTTP/1.1 200").count(), 2, "{all}");
    assert_eq!(all.matches(r#"{"channels":[]}"#).count(), 1, "{all}");
}

#[test]
fn unavailable_broker_answers_503_json() {
    // A Redis URL nobody listens on: the broker is down from the start.
    let s = Server::start(&["--redis", "redis://127.0.0.1:1"]);
    let r = publish(s.addr, None, r#"{"channel":"a","action":1}"#);
    assert_api_error(&r, 503, "unavailable");
}

// A client that pipelines faster than it reads is held back, not
// buffered: tests/abuse.rs (`..._are_held`, `..._held_in_the_kernel`).

#[test]
fn redis_mode_answers_for_the_whole_cluster() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    // The Redis links come up after the ready line; redis_node waits for
    // /healthz to say they are.
    let n1 = redis_node("n1", &redis, &[]);
    let n2 = redis_node("n2", &redis, &[]);
    let mut a = n1.connect("user=alice");
    let mut b = n2.connect("user=bob");
    a.join("c:1");
    b.join("c:1");
    b.join("c:2");

    // Published on n2's API, delivered on n1.
    ok_json(&publish(
        n2.addr,
        None,
        r#"{"channel":"c:1","action":"hi"}"#,
    ));
    let v = a.recv_until(|v| v["type"] == "user_action");
    assert_eq!(
        (v["action"].as_str(), v["user"].is_null()),
        (Some("hi"), true),
        "{v}"
    );

    for node in [&n1, &n2] {
        let v = ok_json(&get(node.addr, "/api/presence?channel=c:1"));
        assert_eq!(members(&v), who(&[&a, &b]), "{v}");
        let v = ok_json(&get(node.addr, "/api/channels"));
        assert_eq!(
            v,
            json!({"channels": [{"channel": "c:1", "members": 2}, {"channel": "c:2", "members": 1}]}),
        );
    }
}
