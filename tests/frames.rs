//! PROTOCOL.md §2 and §8 at the frame level, with hand-built frames: the
//! close codes 1002 (RFC 6455 protocol violations), 1007 (invalid UTF-8) and
//! 1009 (too big), each with the close frame actually received; the close
//! handshake; WebSocket ping/pong; fragmented messages.

mod common;

use std::time::{Duration, Instant};

use common::*;

/// Sends `frames` on a fresh raw WebSocket and expects a close with `code`,
/// then the end of the TCP connection once the close is answered.
#[track_caller]
fn expect_close_after(server: &Server, frames: &[Vec<u8>], code: u16) {
    let mut raw = Raw::ws(server.addr, "user=raw");
    for f in frames {
        raw.send_lossy(f);
    }
    raw.expect_close(code);
}

#[test]
fn unmasked_client_frame_closes_1002() {
    let s = Server::start(&[]);
    let f = encode_frame(true, 0, OP_TEXT, None, br#"{"type":"ping","id":1}"#);
    expect_close_after(&s, &[f], 1002);
}

#[test]
fn reserved_bits_close_1002() {
    let s = Server::start(&[]);
    for rsv in [4, 2, 1] {
        let f = encode_frame(true, rsv, OP_TEXT, Some(MASK), br#"{"type":"ping","id":1}"#);
        expect_close_after(&s, &[f], 1002);
    }
}

#[test]
fn fragmented_control_frame_closes_1002() {
    let s = Server::start(&[]);
    expect_close_after(&s, &[frame(false, OP_PING, b"hb")], 1002);
}

#[test]
fn control_frame_over_125_bytes_closes_1002() {
    let s = Server::start(&[]);
    expect_close_after(&s, &[frame(true, OP_PING, &[b'p'; 126])], 1002);
}

#[test]
fn reserved_opcodes_close_1002() {
    let s = Server::start(&[]);
    for op in [0x3, 0x7, 0xB, 0xF] {
        expect_close_after(&s, &[frame(true, op, b"x")], 1002);
    }
}

#[test]
fn continuation_without_a_start_closes_1002() {
    let s = Server::start(&[]);
    expect_close_after(&s, &[frame(true, OP_CONT, b"{}")], 1002);
}

#[test]
fn new_data_frame_inside_a_fragmented_message_closes_1002() {
    let s = Server::start(&[]);
    let frames = [
        frame(false, OP_TEXT, b"{\"type\":"),
        frame(true, OP_TEXT, b"\"ping\"}"),
    ];
    expect_close_after(&s, &frames, 1002);
}

#[test]
fn invalid_close_codes_close_1002() {
    let s = Server::start(&[]);
    // 1005/1006 must never be sent (RFC 6455 §7.4.1); 999 and 1016 are not
    // assigned; a one-byte close payload cannot hold a code.
    for payload in [
        &1005u16.to_be_bytes()[..],
        &1006u16.to_be_bytes(),
        &999u16.to_be_bytes(),
        &1016u16.to_be_bytes(),
        &[3],
    ] {
        expect_close_after(&s, &[frame(true, OP_CLOSE, payload)], 1002);
    }
}

#[test]
fn invalid_utf8_closes_1007() {
    let s = Server::start(&[]);
    expect_close_after(&s, &[frame(true, OP_TEXT, b"{\"type\":\"p\xffng\"}")], 1007);
    // An overlong encoding and a lone surrogate are invalid UTF-8 too.
    expect_close_after(&s, &[frame(true, OP_TEXT, b"{\"a\":\"\xc0\xaf\"}")], 1007);
    expect_close_after(
        &s,
        &[frame(true, OP_TEXT, b"{\"a\":\"\xed\xa0\x80\"}")],
        1007,
    );
}

#[test]
fn invalid_utf8_across_fragments_closes_1007() {
    let s = Server::start(&[]);
    // The first fragment ends in the lead byte of "é"; the second does not
    // continue it.
    let frames = [
        frame(false, OP_TEXT, b"{\"type\":\"ping\",\"x\":\"\xc3"),
        frame(true, OP_CONT, b"(\"}"),
    ];
    expect_close_after(&s, &frames, 1007);
}

#[test]
fn utf8_split_across_fragments_is_valid() {
    let s = Server::start(&[]);
    let mut raw = Raw::ws(s.addr, "user=raw");
    raw.send(&frame(false, OP_TEXT, b"{\"type\":\"ping\",\"x\":\"\xc3"));
    raw.send(&frame(true, OP_CONT, b"\xa9\",\"id\":3}"));
    let f = raw.read_frame(TIMEOUT).expect("reply");
    assert_eq!(f.json(), serde_json::json!({"type": "pong", "id": 3}));
}

#[test]
fn fragmented_text_with_a_ping_in_between_is_reassembled() {
    let s = Server::start(&[]);
    let mut raw = Raw::ws(s.addr, "user=raw");
    raw.send(&frame(false, OP_TEXT, br#"{"type":"pi"#));
    raw.send(&frame(true, OP_PING, b"hb"));
    raw.send(&frame(false, OP_CONT, br#"ng","id""#));
    raw.send(&frame(true, OP_CONT, b":7}"));
    let (mut pong, mut reply) = (None, None);
    while pong.is_none() || reply.is_none() {
        let f = raw.read_frame(TIMEOUT).expect("frames before EOF");
        assert!(!f.masked && f.fin && f.rsv == 0, "{f:?}");
        match f.opcode {
            OP_PONG => pong = Some(f.payload),
            OP_TEXT => reply = Some(f.json()),
            other => panic!("unexpected opcode {other}: {f:?}"),
        }
    }
    assert_eq!(
        pong.as_deref(),
        Some(&b"hb"[..]),
        "the ping's payload is echoed in the pong"
    );
    assert_eq!(reply, Some(serde_json::json!({"type": "pong", "id": 7})));
}

#[test]
fn websocket_ping_is_answered_with_pong() {
    let s = Server::start(&[]);
    let mut raw = Raw::ws(s.addr, "user=raw");
    raw.send(&frame(true, OP_PING, b"are you there"));
    let f = raw.read_frame(TIMEOUT).expect("pong");
    assert_eq!(f.opcode, OP_PONG, "{f:?}");
    assert_eq!(f.payload, b"are you there");
    // An unsolicited pong is fine and answered by nothing.
    raw.send(&frame(true, OP_PONG, b"x"));
    raw.send(&text_frame(r#"{"type":"ping","id":1}"#));
    let f = raw.read_frame(TIMEOUT).expect("reply");
    assert_eq!(f.json(), serde_json::json!({"type": "pong", "id": 1}));
}

#[test]
fn client_close_is_answered_and_the_connection_ends() {
    let s = Server::start(&[]);
    let mut raw = Raw::ws(s.addr, "user=raw");
    raw.send(&close_frame(1000));
    let (code, _) = raw.read_until_close(TIMEOUT);
    assert_eq!(
        code,
        Some(1000),
        "the server echoes the close code (RFC 6455 §5.5.1)"
    );
    raw.expect_eof(TIMEOUT);

    // A close without a code is valid too; the answer then carries none or 1000.
    let mut raw = Raw::ws(s.addr, "user=raw");
    raw.send(&frame(true, OP_CLOSE, b""));
    let (code, _) = raw.read_until_close(TIMEOUT);
    assert!(matches!(code, None | Some(1000)), "{code:?}");
    raw.expect_eof(TIMEOUT);
}

/// A JSON ping of exactly `len` bytes.
fn ping_of_len(id: u64, len: usize) -> String {
    let head = format!(r#"{{"type":"ping","id":{id},"pad":""#);
    let tail = r#""}"#;
    let pad = len - head.len() - tail.len();
    let msg = format!("{head}{}{tail}", "x".repeat(pad));
    assert_eq!(msg.len(), len);
    msg
}

#[test]
fn message_of_exactly_max_message_bytes_is_accepted() {
    let s = Server::start(&["--max-message-bytes", "1024"]);
    let mut c = s.connect("user=a");
    assert_eq!(c.welcome["max_message_bytes"].as_u64(), Some(1024));
    c.send_raw_text(&ping_of_len(1, 1024));
    assert_eq!(c.recv_json(), serde_json::json!({"type": "pong", "id": 1}));

    // Fragmented: the limit is on the reassembled message.
    let msg = ping_of_len(2, 1024);
    let mut raw = Raw::ws(s.addr, "user=raw");
    raw.send(&frame(false, OP_TEXT, &msg.as_bytes()[..600]));
    raw.send(&frame(true, OP_CONT, &msg.as_bytes()[600..]));
    let f = raw.read_frame(TIMEOUT).expect("reply");
    assert_eq!(f.json(), serde_json::json!({"type": "pong", "id": 2}));
}

#[test]
fn message_over_max_message_bytes_closes_1009() {
    let s = Server::start(&["--max-message-bytes", "1024"]);
    let mut c = s.connect("user=a");
    c.send_raw_text(&ping_of_len(1, 1025));
    c.expect_close(1009);

    // Two fragments that are each small but 1025 bytes together.
    let msg = ping_of_len(2, 1025);
    let frames = [
        frame(false, OP_TEXT, &msg.as_bytes()[..600]),
        frame(true, OP_CONT, &msg.as_bytes()[600..]),
    ];
    expect_close_after(&s, &frames, 1009);

    // A binary message over the limit is too big as well (not bad_request).
    expect_close_after(&s, &[frame(true, OP_BINARY, &[0u8; 1025])], 1009);
}

#[test]
fn huge_declared_length_closes_1009_before_the_payload() {
    // The limit is checked on the header: the server must not wait for (or
    // allocate) 1 TiB.
    let s = Server::start(&[]);
    let started = Instant::now();
    let header = encode_header(true, 0, OP_TEXT, Some(MASK), 1 << 40);
    expect_close_after(&s, &[header], 1009);
    assert!(started.elapsed() < Duration::from_secs(4));
    // The server is fine afterwards.
    assert_eq!(s.http_get("/healthz").status, 200);
}
