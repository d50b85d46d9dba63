//! Hostile clients (issue 4): every abuse ends in the defined error or
//! close, the server's memory stays bounded (resident set read from
//! `/proc/PID/status`), and other clients keep being served.
//!
//! Covered elsewhere, not repeated here:
//!
//! | abuse | test |
//! | --- | --- |
//! | slowloris (handshake timeout) | `handshake.rs` `slowloris_is_closed_by_the_handshake_timeout` |
//! | header flood (431) | `handshake.rs` `request_head_over_8_kib_answers_431`, `request_head_flood_without_end_answers_431` |
//! | `Origin` outside `--allowed-origin` (403) | `handshake.rs` `bad_origin_answers_403_and_allowed_origin_upgrades` |
//! | a client that never reads (4008, bounded RSS) | `limits.rs` `slow_consumer_is_closed_4008_while_others_keep_receiving` |
//! | repeated rate limiting (4009) | `limits.rs` `tenth_rate_limited_in_a_row_closes_4009` |
//! | frame-level violations (1002, 1007, 1009) | `frames.rs` |
//!
//! Here: 2^63-byte frames, connection floods, deeply nested JSON, a join
//! storm, and the regressions found while writing these (pipelined HTTP
//! whose responses are not read, input behind a pending API call, the
//! `/echo` endpoint past the outbound limit).

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::thread;
use std::time::{Duration, Instant};

use common::*;
use serde_json::json;
use socket2::{Domain, Protocol, Socket, Type};

/// Allowed growth of the server's resident memory during an abuse: a few
/// read buffers, queues at their limits and allocator slack. Each test that
/// uses it would grow the server by 64 MiB or more without its limit.
const RSS_GROWTH_BOUND_KIB: u64 = 16 * 1024;

#[track_caller]
fn assert_rss_bounded(s: &Server, before_kib: u64, what: &str) {
    let after = s.vm_rss_kib();
    assert!(
        after <= before_kib + RSS_GROWTH_BOUND_KIB,
        "{what}: server RSS grew from {before_kib} KiB to {after} KiB"
    );
}

#[track_caller]
fn assert_pong(c: &mut Client) {
    let id = c.fresh_id();
    c.send_json(json!({"type": "ping", "id": id}));
    assert_eq!(c.recv_json(), json!({"type": "pong", "id": id}));
}

// --- frames announcing huge payloads ---

#[test]
fn frames_announcing_2_pow_63_bytes_are_refused_before_allocating() {
    let s = Server::start(&[]);
    let mut bystander = s.connect("user=bystander");
    let before = s.vm_rss_kib();
    let started = Instant::now();

    // 2^63: the most significant bit of a 64-bit length MUST be 0 (RFC 6455
    // §5.2), a protocol violation.
    let mut raw = Raw::ws(s.addr, "user=a");
    raw.send(&encode_header(true, 0, OP_BINARY, Some(MASK), 1 << 63));
    raw.send_lossy(&[0u8; 4096]);
    raw.expect_close(1002);

    // 2^63 - 1, as a whole message and as the next fragment of one: a legal
    // length over the limit, refused on the header.
    let mut raw = Raw::ws(s.addr, "user=b");
    raw.send(&encode_header(true, 0, OP_TEXT, Some(MASK), u64::MAX >> 1));
    raw.send_lossy(&[b'x'; 4096]);
    raw.expect_close(1009);
    let mut raw = Raw::ws(s.addr, "user=c");
    raw.send(&frame(false, OP_TEXT, b"{\"type\":"));
    raw.send(&encode_header(true, 0, OP_CONT, Some(MASK), u64::MAX >> 1));
    raw.expect_close(1009);

    assert!(
        started.elapsed() < Duration::from_secs(4),
        "refusals took {:?}: the server waited for the payload",
        started.elapsed()
    );
    assert_rss_bounded(&s, before, "2^63-byte frames");
    assert_pong(&mut bystander);
}

#[test]
fn echo_endpoint_refuses_a_2_pow_63_frame_but_echoes_past_the_outbound_limit() {
    // Regression (Autobahn 9.1.4-9.4.9): `/echo` accepts 16 MiB messages,
    // but its echoes went through the 4 MiB outbound limit and ended in 4008.
    let s = Server::start(&["--autobahn-echo", "--outbound-limit", "65536"]);
    let mut raw = Raw::connect(s.addr);
    raw.send(upgrade_request(s.addr, "/echo", &[]).as_bytes());
    assert_eq!(raw.read_response().status, 101);
    let payload: Vec<u8> = (0..1 << 20).map(|i| (i % 251) as u8).collect();
    raw.send(&frame(true, OP_BINARY, &payload));
    let echo = raw
        .read_frame(Duration::from_secs(10))
        .expect("the echo, not the end of the connection");
    assert_eq!(
        (echo.opcode, echo.payload.len()),
        (OP_BINARY, payload.len()),
        "echo frame"
    );
    assert!(echo.payload == payload, "the echo differs from the message");

    raw.send(&encode_header(
        true,
        0,
        OP_BINARY,
        Some(MASK),
        u64::MAX >> 1,
    ));
    raw.expect_close(1009);
}

// --- connection floods ---

/// Sends an upgrade for `/ws?user=NAME` on a fresh connection; returns the
/// status and the connection (open, for a 101).
fn try_upgrade(s: &Server, name: &str) -> (u16, Raw) {
    let (raw, resp) = Raw::upgrade(s.addr, &format!("user={name}"));
    (resp.status, raw)
}

#[test]
fn connection_flood_past_max_connections_answers_503_and_slots_come_back() {
    const CAP: usize = 20;
    let s = Server::start(&["--max-connections", &CAP.to_string()]);
    let mut open = Vec::new();
    let mut refused = 0;
    for n in 0..3 * CAP {
        match try_upgrade(&s, &format!("f{n}")) {
            (101, raw) => open.push(raw),
            (503, _) => refused += 1,
            (other, _) => panic!("upgrade {n} answered {other}"),
        }
    }
    assert_eq!(
        (open.len(), refused),
        (CAP, 2 * CAP),
        "accepted and refused upgrades"
    );

    // Half hang up abruptly: their slots must be freed, and only theirs.
    open.truncate(CAP / 2);
    let deadline = Instant::now() + TIMEOUT;
    let mut n = 0;
    while open.len() < CAP {
        assert!(
            Instant::now() < deadline,
            "only {} of {CAP} slots usable after {} hung up",
            open.len(),
            CAP / 2
        );
        n += 1;
        match try_upgrade(&s, &format!("g{n}")) {
            (101, raw) => open.push(raw),
            // The server has not seen every hang-up yet.
            (503, _) => thread::sleep(Duration::from_millis(20)),
            (other, _) => panic!("upgrade answered {other}"),
        }
    }
    assert_eq!(try_upgrade(&s, "over").0, 503, "past the cap again");
    // Plain HTTP is not counted.
    assert_eq!(s.http_get("/healthz").status, 200);
}

#[test]
fn idle_connection_flood_is_closed_by_the_handshake_timeout() {
    let s = Server::start(&["--handshake-timeout-s", "1"]);
    let before = s.vm_rss_kib();
    let idle: Vec<TcpStream> = (0..200)
        .map(|_| TcpStream::connect(s.addr).expect("connect"))
        .collect();
    // Served meanwhile.
    let mut c = s.connect("user=real");
    assert_pong(&mut c);

    let deadline = Instant::now() + Duration::from_secs(5);
    for mut stream in idle {
        let left = left(deadline).unwrap_or(Duration::from_millis(1));
        stream.set_read_timeout(Some(left)).expect("timeout");
        let mut buf = [0u8; 64];
        match stream.read(&mut buf) {
            Ok(0) => {}
            Err(e) if !would_block(&e) => {} // reset: closed too
            other => panic!("an idle connection was not closed: {other:?}"),
        }
    }
    assert_rss_bounded(&s, before, "200 idle connections");
    // The WebSocket is not subject to the handshake timeout.
    assert_pong(&mut c);
}

// --- deeply nested JSON ---

fn nested(depth: usize) -> String {
    format!("{}{}", "[".repeat(depth), "]".repeat(depth))
}

#[test]
fn deeply_nested_json_is_bad_request_and_relays_nothing() {
    let s = Server::start(&[]);
    let mut a = s.connect("user=a");
    let mut watcher = s.connect("user=w");
    a.join("n:1");
    watcher.join("n:1");
    let _ = a.recv_until(|v| v["type"] == "presence" && v["user"] == "w");

    // 30 000 levels: under the 64 KiB message limit, far past any parser's
    // recursion limit.
    let deep = nested(30_000);
    let requests = [
        format!(r#"{{"type":"user_action","id":1,"channel":"n:1","action":{deep}}}"#),
        format!(r#"{{"type":"ping","id":2,"x":{deep}}}"#),
        format!(r#"{{"type":"join_channel","id":3,"channel":"n:2","since":{deep}}}"#),
    ];
    for (i, text) in requests.iter().enumerate() {
        a.send_raw_text(text);
        assert_error(&a.recv_json(), "bad_request", Some(i as u64 + 1));
    }
    a.send_raw_text(&deep);
    assert_error(&a.recv_json(), "bad_request", None);
    assert_pong(&mut a);

    // Over the API too (400 bad_request), with the same depth limit.
    let body = format!(r#"{{"channel":"n:1","action":{}}}"#, nested(1_000));
    let resp = http(
        s.addr,
        &format!(
            "POST /api/publish HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            s.addr,
            body.len()
        ),
    );
    assert_eq!(resp.status, 400, "{}", resp.body_text());
    let v: serde_json::Value = serde_json::from_slice(&resp.body).expect("JSON error body");
    assert_eq!(v["error"]["code"], "bad_request", "{v}");

    // Nothing was relayed: the next thing the watcher sees is this action.
    a.send_json(json!({"type": "user_action", "channel": "n:1", "action": "after"}));
    let v = watcher.recv_until(|v| v["type"] == "user_action");
    assert_eq!(v["action"], "after", "a nested action was relayed: {v}");
}

// --- join storm ---

#[test]
fn join_storm_past_max_channels_answers_too_many_channels() {
    const MAX: u64 = 16;
    const STORM: u64 = 2_000;
    let s = Server::start(&[
        "--max-channels",
        &MAX.to_string(),
        "--rate",
        "100000",
        "--burst",
        "100000",
    ]);
    let mut a = s.connect("user=storm");
    // All at once, without waiting for a reply.
    for id in 1..=STORM {
        a.send_json(json!({"type": "join_channel", "id": id, "channel": format!("storm:{id}")}));
    }
    let mut joined = Vec::new();
    let mut refused = 0;
    while joined.len() as u64 + refused < STORM {
        let v = a.recv_json();
        if v["type"] == "presence" {
            continue;
        }
        let id = v["id"]
            .as_u64()
            .unwrap_or_else(|| panic!("reply without id: {v}"));
        match v["type"].as_str() {
            Some("joined") => joined.push(id),
            Some("error") => {
                assert_error(&v, "too_many_channels", Some(id));
                refused += 1;
            }
            _ => panic!("unexpected reply {v}"),
        }
    }
    joined.sort_unstable();
    assert_eq!(
        joined,
        (1..=MAX).collect::<Vec<_>>(),
        "the first {MAX} joins win"
    );
    assert_pong(&mut a);

    let count = |s: &Server| {
        let resp = s.http_get("/api/channels");
        assert_eq!(resp.status, 200);
        let v: serde_json::Value = serde_json::from_slice(&resp.body).expect("JSON");
        v["channels"].as_array().map_or(0, Vec::len)
    };
    assert_eq!(count(&s), MAX as usize, "channels with members");
    // No channel outlives the connection.
    drop(a);
    let deadline = Instant::now() + TIMEOUT;
    while count(&s) != 0 {
        assert!(Instant::now() < deadline, "channels left after the close");
        thread::sleep(Duration::from_millis(20));
    }
}

// --- HTTP: input the server must not buffer without bound ---

/// A connection whose receive window is small, so responses it does not
/// read pile up in the server rather than in the kernel.
fn small_window_stream(s: &Server) -> TcpStream {
    let sock = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP)).expect("socket");
    sock.set_recv_buffer_size(4096).expect("SO_RCVBUF");
    sock.connect(&s.addr.into()).expect("connect");
    let stream = TcpStream::from(sock);
    stream.set_read_timeout(Some(TIMEOUT)).expect("timeout");
    stream.set_write_timeout(Some(TIMEOUT)).expect("timeout");
    stream
}

/// Reads exactly `n` bytes (the deadline is per read).
fn read_exact_bytes(stream: &mut TcpStream, n: usize) -> Vec<u8> {
    let mut out = vec![0u8; n];
    stream
        .read_exact(&mut out)
        .unwrap_or_else(|e| panic!("reading {n} bytes: {e}"));
    out
}

/// Reads one whole response with a `Content-Length` body.
fn read_one_response(stream: &mut TcpStream) -> Vec<u8> {
    let mut got = Vec::new();
    let mut byte = [0u8; 1];
    while !got.ends_with(b"\r\n\r\n") {
        stream.read_exact(&mut byte).expect("response head");
        got.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&got).to_ascii_lowercase();
    let len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no Content-Length in {head}"));
    got.extend(read_exact_bytes(stream, len));
    got
}

#[test]
fn pipelined_requests_whose_responses_are_not_read_are_held() {
    // Regression: each 27-byte `GET /` queued an 8 KiB response without
    // limit, so a client that pipelines and never reads grew the server by
    // 300 bytes per byte sent. Now requests wait once --outbound-limit bytes
    // of responses are unread, and TCP pushes back on the client.
    const N: usize = 10_000;
    let s = Server::start(&["--outbound-limit", "65536"]);
    let mut stream = small_window_stream(&s);
    let request = format!("GET / HTTP/1.1\r\nHost: {}\r\n\r\n", s.addr);
    stream.write_all(request.as_bytes()).expect("write");
    let one = read_one_response(&mut stream);
    assert!(
        one.starts_with(b"HTTP/1.1 200 "),
        "{:?}",
        String::from_utf8_lossy(&one)
    );

    let before = s.vm_rss_kib();
    let writer = {
        let mut stream = stream.try_clone().expect("clone");
        let all = request.repeat(N);
        thread::spawn(move || stream.write_all(all.as_bytes()))
    };
    // The absence of growth is the thing under test: give the server time
    // to read everything it is willing to.
    thread::sleep(Duration::from_millis(1500));
    assert_rss_bounded(&s, before, "10 000 pipelined requests, responses unread");

    // Every response comes, whole and in order, once the client reads.
    let rest = read_exact_bytes(&mut stream, N * one.len());
    for (i, resp) in rest.chunks(one.len()).enumerate() {
        assert!(
            resp == one.as_slice(),
            "response {i} differs from the first"
        );
    }
    writer
        .join()
        .expect("writer")
        .expect("the requests were all sent");
}

#[test]
fn input_behind_a_pending_api_call_is_held_in_the_kernel() {
    // Regression: while an API call waited for its answer, everything the
    // client sent behind it was read into the connection's buffer, without
    // limit. A paused Redis keeps `/api/channels` waiting for seconds.
    let Some(redis) = RedisServer::start() else {
        return;
    };
    // Waits for /healthz 200: the Redis link is up.
    let s = redis_node("t1", &redis, &[]);
    let before = s.vm_rss_kib();
    assert_eq!(redis.cmd(&["CLIENT", "PAUSE", "4000", "ALL"]).text(), "OK");
    let paused = Instant::now();

    let mut stream = TcpStream::connect(s.addr).expect("connect");
    stream.set_read_timeout(Some(TIMEOUT)).expect("timeout");
    stream
        .write_all(format!("GET /api/channels HTTP/1.1\r\nHost: {}\r\n\r\n", s.addr).as_bytes())
        .expect("write");
    let writer = {
        let mut stream = stream.try_clone().expect("clone");
        thread::spawn(move || {
            // 64 MiB behind it; the server stops reading, so this blocks
            // and its write fails once the connection is closed.
            let junk = vec![b'x'; 1 << 20];
            stream
                .set_write_timeout(Some(Duration::from_secs(8)))
                .expect("timeout");
            for _ in 0..64 {
                if stream.write_all(&junk).is_err() {
                    break;
                }
            }
        })
    };
    thread::sleep(Duration::from_millis(1500));
    assert!(
        paused.elapsed() < Duration::from_millis(3800),
        "measured too late: Redis may have resumed"
    );
    assert_rss_bounded(&s, before, "64 MiB behind a pending API call");

    // The answer comes once Redis resumes; the junk, a head without an
    // end, then gets a 431.
    let mut got = Vec::new();
    let _ = stream.read_to_end(&mut got);
    let text = String::from_utf8_lossy(&got);
    // 200 once Redis resumes, or 503 if the link's keepalive gave the
    // paused Redis up first (a link silent for 3 s is taken for dead):
    // either way the held input was never read into memory.
    assert!(
        text.starts_with("HTTP/1.1 200 ") || text.starts_with("HTTP/1.1 503 "),
        "{text:.300}"
    );
    assert!(text.contains("HTTP/1.1 431 "), "{text:.600}");
    let _ = writer.join();
}
