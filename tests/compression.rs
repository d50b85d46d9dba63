//! permessage-deflate (PROTOCOL.md section 12, RFC 7692) against the real
//! binary: negotiation in the upgrade, compressed broadcasts beside plain
//! ones, compressed client messages, the inflate limit, RSV1 rules.
//!
//! The compressing client is the raw one with `flate2` doing the deflate
//! work; tests/interop/ runs a client of another implementation.

mod common;

use common::*;
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress};

const EXPECTED: &str = "permessage-deflate; server_no_context_takeover; client_no_context_takeover";

/// A raw client that offered `offer` (none when empty), with its answer.
fn offer(server: &Server, query: &str, offer: &str) -> (Raw, HttpResponse) {
    let mut raw = Raw::connect(server.addr);
    let path = format!("/ws?{query}");
    let extra: Vec<(&str, &str)> = if offer.is_empty() {
        vec![]
    } else {
        vec![("Sec-WebSocket-Extensions", offer)]
    };
    raw.send(upgrade_request(server.addr, &path, &extra).as_bytes());
    let resp = raw.read_response();
    (raw, resp)
}

/// An upgraded raw client that negotiated `offer`, welcome read.
fn deflate_client(server: &Server, user: &str, offer_text: &str) -> Raw {
    let (mut raw, resp) = offer(server, &format!("user={user}"), offer_text);
    assert_eq!(resp.status, 101, "{resp:?}");
    assert!(
        resp.header("sec-websocket-extensions")
            .is_some_and(|v| v.starts_with(EXPECTED)),
        "{resp:?}"
    );
    let welcome = raw.read_frame(TIMEOUT).expect("welcome");
    raw.welcome = welcome.json();
    raw
}

/// Raw deflate with a sync flush, the tail removed (RFC 7692 7.2.1).
fn deflate(data: &[u8]) -> Vec<u8> {
    let mut c = Compress::new(Compression::default(), false);
    let mut out = Vec::with_capacity(data.len() + 64);
    c.compress_vec(data, &mut out, FlushCompress::Sync).unwrap();
    assert!(out.ends_with(&[0, 0, 0xff, 0xff]));
    out.truncate(out.len() - 4);
    out
}

/// Inflates one message as a client limited to `bits` would.
fn inflate(body: &[u8], bits: u8) -> Vec<u8> {
    let mut d = Decompress::new_with_window_bits(false, bits);
    let mut input = body.to_vec();
    input.extend_from_slice(&[0, 0, 0xff, 0xff]);
    let mut out = Vec::with_capacity(1 << 20);
    d.decompress_vec(&input, &mut out, FlushDecompress::Sync)
        .expect("valid deflate");
    out
}

/// A compressed (RSV1) masked text frame.
fn compressed_text(text: &str) -> Vec<u8> {
    encode_frame(true, 4, OP_TEXT, Some(MASK), &deflate(text.as_bytes()))
}

/// The next data frame's JSON, inflated when RSV1 says so; also whether it
/// was compressed.
fn next_json(raw: &mut Raw, bits: u8) -> (serde_json::Value, bool) {
    loop {
        let f = raw.read_frame(TIMEOUT).expect("a frame");
        if f.opcode == OP_PING {
            continue;
        }
        assert_eq!(f.opcode, OP_TEXT, "{f:?}");
        let compressed = f.rsv == 4;
        let text = if compressed {
            inflate(&f.payload, bits)
        } else {
            f.payload
        };
        return (serde_json::from_slice(&text).expect("JSON"), compressed);
    }
}

fn join(raw: &mut Raw, channel: &str, compressed: bool) {
    let req = format!(r#"{{"type":"join_channel","channel":"{channel}","id":1}}"#);
    if compressed {
        raw.send(&compressed_text(&req));
    } else {
        raw.send(&text_frame(&req));
    }
}

/// A realistic 1 KiB action: a batch of cursor positions.
fn cursor_batch(seq: u32) -> String {
    let cursors: Vec<String> = (0..16)
        .map(|i| {
            format!(
                r#"{{"user":"user-{i}","x":{},"y":{},"sel":[{},{}]}}"#,
                (seq + i) * 37 % 1000,
                i * 91 % 800,
                i * 3,
                i * 5
            )
        })
        .collect();
    format!(r#"{{"seq":{seq},"cursors":[{}]}}"#, cursors.join(","))
}

#[test]
fn offers_are_answered_only_with_compression() {
    let plain = Server::start(&[]);
    let (_raw, resp) = offer(
        &plain,
        "user=a",
        "permessage-deflate; client_max_window_bits",
    );
    assert_eq!(resp.status, 101);
    assert_eq!(resp.header("sec-websocket-extensions"), None);

    let server = Server::start(&["--compression"]);
    let (_raw, resp) = offer(
        &server,
        "user=a",
        "permessage-deflate; client_max_window_bits",
    );
    assert_eq!(resp.status, 101);
    assert_eq!(resp.header("sec-websocket-extensions"), Some(EXPECTED));
    let (_raw, resp) = offer(
        &server,
        "user=a",
        "x-webkit-deflate-frame, permessage-deflate; server_max_window_bits=16, \
         permessage-deflate; server_max_window_bits=\"10\"",
    );
    assert_eq!(
        resp.header("sec-websocket-extensions"),
        Some(&*format!("{EXPECTED}; server_max_window_bits=10"))
    );
    // Declined: the connection goes on uncompressed.
    let (_raw, resp) = offer(&server, "user=a", "permessage-deflate; unknown_param");
    assert_eq!(resp.status, 101);
    assert_eq!(resp.header("sec-websocket-extensions"), None);
    // Malformed header syntax (RFC 6455 9.1): 400.
    let (_raw, resp) = offer(&server, "user=a", "permessage-deflate;; x");
    assert_eq!(resp.status, 400);
}

#[test]
fn compressing_and_plain_members_receive_identical_json() {
    let server = Server::start(&["--compression"]);
    let mut w15 = deflate_client(&server, "a", "permessage-deflate");
    let mut w9 = deflate_client(&server, "b", "permessage-deflate; server_max_window_bits=9");
    let mut plain = Raw::ws(server.addr, "user=c");
    let mut publisher = deflate_client(&server, "d", "permessage-deflate");
    for (raw, compressed) in [
        (&mut w15, true),
        (&mut w9, false),
        (&mut plain, false),
        (&mut publisher, true),
    ] {
        join(raw, "doc:mix", compressed);
        let (joined, _) = next_json(raw, 15);
        assert_eq!(joined["type"], "joined", "{joined}");
    }
    // Presence events for the later joiners: drain them per member.
    let drain = |raw: &mut Raw, n: usize| {
        for _ in 0..n {
            let (e, _) = next_json(raw, 15);
            assert_eq!(e["type"], "presence", "{e}");
        }
    };
    drain(&mut w15, 3);
    drain(&mut w9, 2);
    drain(&mut plain, 1);

    for seq in 0..5 {
        let action = cursor_batch(seq);
        let req = format!(r#"{{"type":"user_action","channel":"doc:mix","action":{action}}}"#);
        // Sent compressed: the server inflates it.
        publisher.send(&compressed_text(&req));
        let (a, a_c) = next_json(&mut w15, 15);
        let (b, b_c) = next_json(&mut w9, 9);
        let (c, c_c) = next_json(&mut plain, 15);
        let (d, d_c) = next_json(&mut publisher, 15);
        assert_eq!(a["type"], "user_action");
        assert_eq!(
            a["action"],
            serde_json::from_str::<serde_json::Value>(&action).unwrap()
        );
        assert!(
            a == b && b == c && c == d,
            "identical JSON for every member"
        );
        assert!(
            a_c && b_c && d_c,
            "compressing members get compressed frames"
        );
        assert!(!c_c, "the plain member gets a plain frame");
    }
    // Under --compression-min-bytes (128): plain, even for compressing members.
    let req = r#"{"type":"user_action","channel":"doc:mix","action":1}"#;
    publisher.send(&text_frame(req));
    let (a, a_c) = next_json(&mut w15, 15);
    assert_eq!(a["action"], 1);
    assert!(!a_c, "short messages go out plain");
}

#[test]
fn compressed_fragmented_messages_and_echo() {
    let server = Server::start(&["--compression", "--autobahn-echo"]);
    let (mut raw, resp) = {
        let mut raw = Raw::connect(server.addr);
        raw.send(
            upgrade_request(
                server.addr,
                "/echo",
                &[(
                    "Sec-WebSocket-Extensions",
                    "permessage-deflate; server_max_window_bits=12",
                )],
            )
            .as_bytes(),
        );
        let resp = raw.read_response();
        (raw, resp)
    };
    assert_eq!(resp.status, 101, "{resp:?}");
    let text = cursor_batch(3).repeat(8);
    let body = deflate(text.as_bytes());
    let (a, rest) = body.split_at(body.len() / 3);
    let (b, c) = rest.split_at(rest.len() / 2);
    raw.send(&encode_frame(false, 4, OP_TEXT, Some(MASK), a));
    raw.send(&frame(true, OP_PING, b"p"));
    raw.send(&frame(false, OP_CONT, b));
    raw.send(&frame(true, OP_CONT, c));
    let pong = raw.read_frame(TIMEOUT).expect("pong");
    assert_eq!(pong.opcode, OP_PONG);
    let echo = raw.read_frame(TIMEOUT).expect("echo");
    assert_eq!(echo.rsv, 4, "echoed compressed");
    assert_eq!(inflate(&echo.payload, 12), text.as_bytes());
}

#[test]
fn a_bomb_is_closed_with_1009_and_memory_stays_bounded() {
    let server = Server::start(&["--compression"]);
    let rss_before = server.vm_rss_kib();
    // 1 MiB of JSON-ish whitespace inflating from about a kilobyte, against
    // the default 64 KiB limit, then a 48 MiB one.
    for size in [1usize << 20, 48 << 20] {
        let mut raw = deflate_client(&server, "bomb", "permessage-deflate");
        let bomb = deflate(&vec![b' '; size]);
        assert!(bomb.len() < 64 * 1024, "{} compressed bytes", bomb.len());
        raw.send(&encode_frame(true, 4, OP_TEXT, Some(MASK), &bomb));
        raw.expect_close(1009);
    }
    let grown = server.vm_rss_kib().saturating_sub(rss_before);
    assert!(grown < 8 * 1024, "RSS grew by {grown} KiB");
    // The server is fine after it.
    let mut ok = deflate_client(&server, "after", "permessage-deflate");
    ok.send(&compressed_text(r#"{"type":"ping","id":9}"#));
    let (pong, _) = next_json(&mut ok, 15);
    assert_eq!(pong["type"], "pong");
}

#[test]
fn rsv1_where_it_is_not_allowed_is_1002_and_bad_data_1007() {
    let server = Server::start(&["--compression"]);
    // Not negotiated.
    let mut raw = Raw::ws(server.addr, "user=a");
    raw.send(&compressed_text(r#"{"type":"ping"}"#));
    raw.expect_close(1002);
    // On a control frame.
    let mut raw = deflate_client(&server, "b", "permessage-deflate");
    raw.send(&encode_frame(true, 4, OP_PING, Some(MASK), b""));
    raw.expect_close(1002);
    // On a continuation frame.
    let mut raw = deflate_client(&server, "c", "permessage-deflate");
    let body = deflate(br#"{"type":"ping"}"#);
    raw.send(&encode_frame(false, 4, OP_TEXT, Some(MASK), &body[..2]));
    raw.send(&encode_frame(true, 4, OP_CONT, Some(MASK), &body[2..]));
    raw.expect_close(1002);
    // Not deflate at all.
    let mut raw = deflate_client(&server, "d", "permessage-deflate");
    raw.send(&encode_frame(
        true,
        4,
        OP_TEXT,
        Some(MASK),
        &[0xff, 0xff, 0xff],
    ));
    raw.expect_close(1007);
    // Inflates to invalid UTF-8 in a text message.
    let mut raw = deflate_client(&server, "e", "permessage-deflate");
    raw.send(&encode_frame(
        true,
        4,
        OP_TEXT,
        Some(MASK),
        &deflate(&[0xc3, 0x28]),
    ));
    raw.expect_close(1007);
}
