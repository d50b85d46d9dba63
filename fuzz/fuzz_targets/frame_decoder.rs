//! Fuzzes the WebSocket frame decoder.
//!
//! Input layout: byte 0 picks how many chunk sizes follow (0-7), then those
//! sizes, then the stream itself.
//! 1. The stream is fed to a server decoder in those chunks, the way a
//!    connection does (unconsumed bytes stay, the next chunk is appended):
//!    it must never panic, never hold more than the limit, and never hint a
//!    frame longer than the limit allows.
//! 2. The stream is then used as a payload, sent as a fragmented binary and
//!    text message cut at the same sizes, and must come back unchanged.
#![no_main]

use libfuzzer_sys::fuzz_target;
use switchboard::ws::{encode_client_frame, Decoder, Message, OpCode, Role};

const MAX: usize = 1024;

fuzz_target!(|data: &[u8]| {
    let Some((&n, rest)) = data.split_first() else {
        return;
    };
    let n = usize::from(n & 7).min(rest.len());
    let (sizes, stream) = rest.split_at(n);
    let sizes: Vec<usize> = sizes.iter().map(|&s| usize::from(s) + 1).collect();

    feed_arbitrary(stream, &sizes);
    round_trip(OpCode::Binary, stream, &sizes);
    round_trip(
        OpCode::Text,
        String::from_utf8_lossy(stream).as_bytes(),
        &sizes,
    );
});

fn feed_arbitrary(stream: &[u8], sizes: &[usize]) {
    let mut d = Decoder::new(Role::Server, MAX);
    let mut pending = Vec::new();
    let mut rest = stream;
    let mut sizes = sizes.iter().cycle();
    while !rest.is_empty() {
        let take = sizes.next().copied().unwrap_or(rest.len()).min(rest.len());
        pending.extend_from_slice(&rest[..take]);
        rest = &rest[take..];
        loop {
            if let Some(hint) = d.frame_len_hint(&pending) {
                assert!(hint <= 14 + MAX, "hint {hint}");
            }
            let Ok((used, _)) = d.decode(&mut pending) else {
                return;
            };
            assert!(d.buffered() <= MAX);
            if used == 0 {
                break;
            }
            pending.drain(..used);
        }
    }
}

fn round_trip(op: OpCode, payload: &[u8], sizes: &[usize]) {
    let mask = [0x12, 0x34, payload.len() as u8, 0x78];
    let mut wire = Vec::new();
    let mut start = 0;
    let mut sizes = sizes.iter().cycle();
    let mut first = true;
    loop {
        let size = sizes.next().copied().unwrap_or(payload.len());
        let end = (start + size).min(payload.len());
        let fin = end == payload.len();
        let frame_op = if first { op } else { OpCode::Continuation };
        encode_client_frame(frame_op, fin, &payload[start..end], mask, &mut wire);
        if !fin {
            // A ping between fragments must come out on its own.
            encode_client_frame(OpCode::Ping, true, b"p", mask, &mut wire);
        }
        first = false;
        start = end;
        if fin {
            break;
        }
    }

    let mut d = Decoder::new(Role::Server, payload.len());
    let mut at = 0;
    loop {
        let (used, message) = d.decode(&mut wire[at..]).expect("own frames decode");
        assert_ne!(used, 0, "stalled on complete input");
        at += used;
        match message {
            None | Some(Message::Ping(b"p")) => {}
            Some(Message::Binary(b)) if op == OpCode::Binary => {
                assert_eq!(b, payload);
                break;
            }
            Some(Message::Text(t)) if op == OpCode::Text => {
                assert_eq!(t, payload);
                break;
            }
            Some(other) => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(at, wire.len());
}
