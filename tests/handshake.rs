//! PROTOCOL.md §1 (connecting, `welcome`), §9 `GET /` and `/healthz`, and
//! the HTTP-level limits of §10: `--allowed-origin`, `--max-connections`,
//! the 8 KiB request-head cap and the handshake timeout.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::*;
use serde_json::json;

#[test]
fn welcome_carries_conn_user_node_and_limits() {
    let s = Server::start(&[]);
    let a = s.connect("user=alice");
    let w = &a.welcome;
    assert_eq!(w["type"], "welcome", "{w}");
    assert_eq!(w["user"], "alice", "{w}");
    assert_eq!(w["node"], "t1", "{w}");
    assert_eq!(
        w["heartbeat_s"].as_u64(),
        Some(25),
        "default heartbeat: {w}"
    );
    assert_eq!(
        w["max_message_bytes"].as_u64(),
        Some(65536),
        "default limit: {w}"
    );
    let conn = a.conn();
    assert!(
        conn.starts_with("t1-"),
        "conn {conn} starts with the node id"
    );
    assert!(
        worker_of(conn) < 2,
        "worker index of {conn} with --threads 2"
    );

    let b = s.connect("user=alice");
    assert_ne!(a.conn(), b.conn(), "conn ids are unique");
    assert_eq!(b.user(), "alice", "two connections may share a user");
}

#[test]
fn welcome_reports_configured_heartbeat_and_message_limit() {
    let s = Server::start(&["--heartbeat", "7", "--max-message-bytes", "1024"]);
    let c = s.connect("user=bob");
    assert_eq!(c.welcome["heartbeat_s"].as_u64(), Some(7), "{}", c.welcome);
    assert_eq!(
        c.welcome["max_message_bytes"].as_u64(),
        Some(1024),
        "{}",
        c.welcome
    );
}

#[test]
fn node_id_with_dashes_prefixes_conn() {
    let s = Server::start_node("eu-west-1", &[]);
    let c = s.connect("user=a");
    assert_eq!(c.welcome["node"], "eu-west-1", "{}", c.welcome);
    assert!(c.conn().starts_with("eu-west-1-"), "{}", c.welcome);
    assert!(c.worker() < 2, "{}", c.welcome);
}

#[test]
fn default_user_is_anon_conn() {
    let s = Server::start(&[]);
    let c = s.connect("");
    assert_eq!(
        c.user(),
        format!("anon-{}", c.conn()),
        "default user is anon-<conn>: {}",
        c.welcome
    );
}

#[test]
fn default_user_is_anon_conn_also_with_other_params() {
    let s = Server::start(&[]);
    let c = s.connect("foo=bar");
    assert_eq!(c.user(), format!("anon-{}", c.conn()), "{}", c.welcome);
}

#[test]
fn user_alphabet_and_64_bytes_are_accepted() {
    let s = Server::start(&[]);
    let name = "Ab9_-:.@=/";
    let c = s.connect(&format!("user={name}"));
    assert_eq!(c.user(), name, "{}", c.welcome);
    let long = "u".repeat(64);
    let c = s.connect(&format!("user={long}"));
    assert_eq!(c.user(), long);
}

#[test]
fn invalid_user_answers_400_before_the_upgrade() {
    let s = Server::start(&[]);
    let long = format!("user={}", "u".repeat(65));
    for query in [
        "user=",
        long.as_str(),
        "user=bad~name",
        "user=bad!name",
        "user=sp%20ace",
        "user=%C3%A9",
    ] {
        let resp = http(
            s.addr,
            &upgrade_request(s.addr, &format!("/ws?{query}"), &[]),
        );
        assert_eq!(resp.status, 400, "?{query}: {resp:?}");
    }
}

/// Caught: the check for an absent `user` read raw names while the lookup
/// decoded them, so `/ws?us%65r=%FF` got an `anon-` user instead of 400.
#[test]
fn a_user_under_an_escaped_name_is_the_user() {
    let s = Server::start(&[]);
    for query in ["us%65r=%FF", "us%65r=bad~name", "%75ser="] {
        let resp = http(
            s.addr,
            &upgrade_request(s.addr, &format!("/ws?{query}"), &[]),
        );
        assert_eq!(resp.status, 400, "?{query}: {resp:?}");
    }
    assert_eq!(s.connect("us%65r=bob").user(), "bob");
}

#[test]
fn subprotocol_switchboard_v1_is_echoed_when_offered() {
    let s = Server::start(&[]);
    for offer in ["switchboard.v1", "chat, switchboard.v1"] {
        let c = Client::connect_with(s.addr, "user=a", &[("Sec-WebSocket-Protocol", offer)])
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            c.subprotocol.as_deref(),
            Some("switchboard.v1"),
            "offered {offer:?}"
        );
    }

    let c = s.connect("user=a");
    assert_eq!(c.subprotocol, None, "no subprotocol when none is offered");

    // None is required: offering only an unknown one still upgrades, and the
    // server selects nothing (RFC 6455 §4.2.2: it must not pick one not offered).
    let resp = http(
        s.addr,
        &upgrade_request(s.addr, "/ws?user=a", &[("Sec-WebSocket-Protocol", "chat")]),
    );
    assert_eq!(resp.status, 101, "{resp:?}");
    assert_eq!(resp.header("sec-websocket-protocol"), None, "{resp:?}");
}

#[test]
fn other_paths_answer_404() {
    let s = Server::start(&[]);
    assert_eq!(s.http_get("/nope").status, 404);
    assert_eq!(s.http_get("/ws/extra").status, 404);
    let resp = http(s.addr, &upgrade_request(s.addr, "/socket?user=a", &[]));
    assert_eq!(resp.status, 404, "an upgrade to another path: {resp:?}");
}

#[test]
fn plain_get_of_ws_answers_426() {
    let s = Server::start(&[]);
    assert_eq!(s.http_get("/ws").status, 426);
    assert_eq!(s.http_get("/ws?user=alice").status, 426);
}

#[test]
fn upgrade_without_key_answers_400() {
    let s = Server::start(&[]);
    let req = format!(
        "GET /ws HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Version: 13\r\n\r\n",
        s.addr
    );
    let resp = http(s.addr, &req);
    assert_eq!(resp.status, 400, "{resp:?}");
}

#[test]
fn healthz_answers_200_ok() {
    let s = Server::start(&[]);
    let resp = s.http_get("/healthz");
    assert_eq!(resp.status, 200, "{resp:?}");
    assert_eq!(resp.body_text().trim(), "ok", "{resp:?}");
}

#[test]
fn root_serves_the_demo_page() {
    let s = Server::start(&[]);
    let resp = s.http_get("/");
    assert_eq!(resp.status, 200, "{resp:?}");
    let ct = resp
        .header("content-type")
        .unwrap_or_default()
        .to_ascii_lowercase();
    assert!(ct.starts_with("text/html"), "content-type {ct:?}");
    let body = resp.body_text().to_ascii_lowercase();
    assert!(
        body.contains("<html") || body.contains("<!doctype html"),
        "body: {body:.200}"
    );
}

#[test]
fn the_client_library_and_console_are_served_with_etags() {
    let s = Server::start(&[]);
    let js = s.http_get("/switchboard.js");
    assert_eq!(js.status, 200, "{js:?}");
    assert_eq!(
        js.header("content-type"),
        Some("text/javascript; charset=utf-8")
    );
    let on_disk = include_str!("../clients/js/switchboard.js");
    assert_eq!(js.body_text(), on_disk, "the same file as clients/js");
    let etag = js.header("etag").expect("ETag").to_owned();

    let revalidate = format!(
        "GET /switchboard.js HTTP/1.1\r\nHost: {}\r\nIf-None-Match: {etag}\r\nConnection: close\r\n\r\n",
        s.addr
    );
    let cached = http(s.addr, &revalidate);
    assert_eq!(cached.status, 304, "{cached:?}");
    assert!(cached.body_text().is_empty());
    assert_eq!(cached.header("etag"), Some(etag.as_str()));

    let console = s.http_get("/console");
    assert_eq!(console.status, 200);
    assert!(console.body_text().contains("/ws?user="));
    assert!(s.http_get("/").body_text().contains("/switchboard.js"));
}

#[test]
fn http_keep_alive_serves_two_requests_on_one_connection() {
    let s = Server::start(&[]);
    let mut raw = Raw::connect(s.addr);
    let req = format!("GET /healthz HTTP/1.1\r\nHost: {}\r\n\r\n", s.addr);
    raw.send(req.as_bytes());
    let first = raw.read_response();
    assert_eq!(first.status, 200, "{first:?}");
    raw.send(req.as_bytes());
    let second = raw.read_response();
    assert_eq!(second.status, 200, "{second:?}");
}

#[test]
fn bad_origin_answers_403_and_allowed_origin_upgrades() {
    let s = Server::start(&["--allowed-origin", "http://good.example"]);
    let resp = http(
        s.addr,
        &upgrade_request(s.addr, "/ws?user=a", &[("Origin", "http://evil.example")]),
    );
    assert_eq!(resp.status, 403, "{resp:?}");
    let c = Client::connect_with(s.addr, "user=a", &[("Origin", "http://good.example")])
        .unwrap_or_else(|e| panic!("allowed origin refused: {e}"));
    assert_eq!(c.user(), "a");
}

#[test]
fn upgrades_past_max_connections_answer_503() {
    let s = Server::start(&["--max-connections", "2"]);
    let mut a = s.connect("user=a");
    let mut b = s.connect("user=b");
    let resp = http(s.addr, &upgrade_request(s.addr, "/ws?user=c", &[]));
    assert_eq!(resp.status, 503, "{resp:?}");
    // Plain HTTP is not an upgrade and is still served.
    assert_eq!(s.http_get("/healthz").status, 200);
    for c in [&mut a, &mut b] {
        c.send_json(json!({"type": "ping", "id": 1}));
        let v = c.recv_json();
        assert_eq!(v, json!({"type": "pong", "id": 1}));
    }
}

#[test]
fn request_head_over_8_kib_answers_431() {
    let s = Server::start(&[]);
    // Well under the cap: served.
    let mut small = format!(
        "GET /healthz HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n",
        s.addr
    );
    while small.len() < 7000 {
        small.push_str(&format!("X-Pad-{}: {}\r\n", small.len(), "p".repeat(90)));
    }
    small.push_str("\r\n");
    assert_eq!(
        http(s.addr, &small).status,
        200,
        "a 7 000-byte head is within the cap"
    );

    // Over the cap: refused with 431.
    for path in ["/healthz", "/ws?user=a"] {
        let mut big = upgrade_request(s.addr, path, &[]);
        big.truncate(big.len() - 2);
        while big.len() < 10 * 1024 {
            big.push_str(&format!("X-Pad-{}: {}\r\n", big.len(), "p".repeat(90)));
        }
        big.push_str("\r\n");
        let resp = http(s.addr, &big);
        assert_eq!(resp.status, 431, "{path}: {resp:?}");
    }
}

#[test]
fn request_head_flood_without_end_answers_431() {
    // A head that never ends must be cut at the cap, not buffered forever.
    let s = Server::start(&[]);
    let mut stream = TcpStream::connect(s.addr).expect("connect");
    stream.set_read_timeout(Some(TIMEOUT)).expect("timeout");
    let mut head = format!("GET /healthz HTTP/1.1\r\nHost: {}\r\n", s.addr);
    while head.len() < 12 * 1024 {
        head.push_str(&format!("X-Flood-{}: {}\r\n", head.len(), "f".repeat(90)));
    }
    stream.write_all(head.as_bytes()).expect("write");
    let mut got = Vec::new();
    let _ = stream.read_to_end(&mut got);
    let text = String::from_utf8_lossy(&got);
    assert!(
        text.starts_with("HTTP/1.1 431"),
        "expected 431, got {text:.200}"
    );
}

#[test]
fn slowloris_is_closed_by_the_handshake_timeout() {
    let s = Server::start(&["--handshake-timeout-s", "1"]);

    // A head that stops half-way.
    let start = Instant::now();
    let mut raw = Raw::connect(s.addr);
    raw.send(format!("GET /ws?user=a HTTP/1.1\r\nHost: {}\r\n", s.addr).as_bytes());
    raw.expect_eof(Duration::from_secs(4));
    let took = start.elapsed();
    assert!(
        took >= Duration::from_millis(500),
        "closed after {took:?}: too early for a 1 s timeout"
    );

    // A head dripped one byte every 200 ms: the timeout is for the whole
    // head, so the drip does not keep the connection alive.
    let start = Instant::now();
    let mut stream = TcpStream::connect(s.addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_millis(200)))
        .expect("timeout");
    let drip = format!(
        "GET /ws?user=a HTTP/1.1\r\nHost: {}\r\nX-Slow: {}",
        s.addr,
        "s".repeat(100)
    );
    let mut closed = false;
    for byte in drip.as_bytes() {
        if start.elapsed() > Duration::from_secs(4) {
            break;
        }
        if stream.write_all(&[*byte]).is_err() {
            closed = true;
            break;
        }
        // Doubles as the drip interval: a read that waits up to 200 ms.
        let mut buf = [0u8; 512];
        match stream.read(&mut buf) {
            Ok(0) => {
                closed = true;
                break;
            }
            Ok(_) => {} // e.g. a 408 before the close
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => {
                closed = true;
                break;
            }
        }
    }
    assert!(
        closed,
        "a dripped head was still open after {:?}",
        start.elapsed()
    );
    assert!(
        start.elapsed() < Duration::from_secs(4),
        "closed only after {:?}",
        start.elapsed()
    );
}
