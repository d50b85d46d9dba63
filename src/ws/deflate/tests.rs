use bytes::Bytes;
use flate2::{Decompress, FlushDecompress};
use proptest::prelude::*;

use super::*;
use crate::ws::frame::{parse_header, OpCode, Role};
use crate::ws::{server_frame, ProtocolError};

/// A JSON event like the ones channels carry, about 1 KiB.
fn json_event() -> Vec<u8> {
    let mut s = String::from(
        r#"{"type":"user_action","channel":"doc:42","offset":1234,"action":{"cursors":["#,
    );
    for i in 0..20 {
        s.push_str(&format!(
            r#"{{"user":"user-{i}","x":{},"y":{},"sel":[{},{}]}},"#,
            i * 37 % 1000,
            i * 91 % 800,
            i * 3,
            i * 5
        ));
    }
    s.pop();
    s.push_str("]}}");
    s.into_bytes()
}

/// Inflates with a second inflater limited to `bits`, as a client that
/// asked for that window would.
fn inflate_with_window(body: &[u8], bits: u8) -> Vec<u8> {
    let mut d = Decompress::new_with_window_bits(false, bits);
    let mut input = body.to_vec();
    input.extend_from_slice(&TAIL);
    let mut out = Vec::with_capacity(1 << 20);
    d.decompress_vec(&input, &mut out, FlushDecompress::Sync)
        .expect("valid deflate within the window");
    out
}

#[test]
fn rfc_7692_examples_inflate() {
    let mut inf = Inflater::default();
    // 7.2.3.1: "Hello" compressed.
    let hello = [0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00];
    assert_eq!(inf.inflate(&hello, 100).unwrap(), b"Hello");
    // 7.2.3.3: a stored block.
    let stored = [
        0x00, 0x05, 0x00, 0xfa, 0xff, 0x48, 0x65, 0x6c, 0x6c, 0x6f, 0x00,
    ];
    assert_eq!(inf.inflate(&stored, 100).unwrap(), b"Hello");
    // 7.2.3.4: BFINAL set; the appended tail is then ignored.
    let last = [0xf3, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00, 0x00];
    assert_eq!(inf.inflate(&last, 100).unwrap(), b"Hello");
    // 7.2.3.6: an empty message.
    assert_eq!(inf.inflate(&[0x00], 100).unwrap(), b"");
    // The same inflater again, with nothing left from before.
    assert_eq!(inf.inflate(&hello, 5).unwrap(), b"Hello");
}

#[test]
fn compressed_frames_inflate_within_their_window() {
    let payload = json_event();
    let mut def = Deflater::default();
    for bits in 9..=15u8 {
        let frame = def
            .frame(OpCode::Text, &payload, WindowBits::new(bits))
            .expect("JSON compresses");
        let h = parse_header(&frame, Role::Client).unwrap().unwrap();
        assert!(h.rsv1 && h.fin && h.opcode == OpCode::Text);
        assert_eq!(
            frame.len(),
            h.header_len + h.payload_len as usize,
            "exact frame"
        );
        let body = &frame[h.header_len..];
        assert!(!body.ends_with(&TAIL), "tail removed");
        assert_eq!(inflate_with_window(body, bits), payload, "window {bits}");
        assert!(
            body.len() * 2 < payload.len(),
            "{} of {}",
            body.len(),
            payload.len()
        );
    }
    assert_eq!(def.compressions(), 7);
}

#[test]
fn incompressible_messages_are_not_compressed() {
    let mut def = Deflater::default();
    assert!(def
        .frame(OpCode::Binary, b"ab", WindowBits::new(15))
        .is_none());
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let noise: Vec<u8> = (0..4096)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    assert!(def
        .frame(OpCode::Binary, &noise, WindowBits::new(15))
        .is_none());
}

#[test]
fn a_bomb_stops_at_the_limit() {
    let mut def = Deflater::default();
    let zeros = vec![0u8; 1 << 20];
    let body = def.compress(&zeros, WindowBits::new(15)).unwrap().to_vec();
    assert!(
        body.len() < 16 * 1024,
        "1 MiB of zeros is {} bytes",
        body.len()
    );
    let mut inf = Inflater::default();
    assert_eq!(
        inf.inflate(&body, 64 * 1024),
        Err(ProtocolError::MessageTooBig {
            size: 64 * 1024 + 1,
            max: 64 * 1024
        })
    );
    assert!(inf.out_capacity() <= 64 * 1024, "never more than the limit");
    assert_eq!(inf.inflate(&body, 1 << 20).unwrap().len(), 1 << 20);
    assert!(inf.inflate(&body, (1 << 20) - 1).is_err());
    assert_eq!(
        ProtocolError::MessageTooBig { size: 1, max: 0 }.close_code(),
        1009
    );
}

#[test]
fn garbage_is_bad_deflate() {
    let mut inf = Inflater::default();
    assert_eq!(
        inf.inflate(&[0xff, 0xff, 0xff], 100),
        Err(ProtocolError::BadDeflate)
    );
    assert_eq!(
        inf.inflate(&[0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00], 100)
            .unwrap(),
        b"Hello"
    );
}

#[test]
fn broadcast_compresses_once_per_window_and_shares_the_frame() {
    let payload = json_event();
    let plain = server_frame(OpCode::Text, &payload);
    let b = Broadcast::new(plain.clone(), Some(128));
    let mut def = Deflater::default();
    let w15 = Some(WindowBits::new(15));
    let w10 = Some(WindowBits::new(10));
    let first = b.frame_for(w15, &mut def).clone();
    for _ in 0..100 {
        let other = b.clone();
        assert_eq!(other.frame_for(w15, &mut def).as_ptr(), first.as_ptr());
        assert_eq!(other.frame_for(None, &mut def).as_ptr(), plain.as_ptr());
        other.frame_for(w10, &mut def);
    }
    assert_eq!(def.compressions(), 2, "one per window size in use");
    assert_ne!(b.frame_for(w10, &mut def).as_ptr(), first.as_ptr());
    let h = parse_header(&first, Role::Client).unwrap().unwrap();
    assert_eq!(inflate_with_window(&first[h.header_len..], 15), payload);
}

#[test]
fn short_or_uncompressed_broadcasts_stay_plain() {
    let mut def = Deflater::default();
    let w = Some(WindowBits::new(15));
    let short = server_frame(OpCode::Text, &[b'a'; 127]);
    assert_eq!(
        Broadcast::new(short.clone(), Some(128)).frame_for(w, &mut def),
        &short
    );
    let long = server_frame(OpCode::Text, &[b'a'; 128]);
    assert!(Broadcast::new(long.clone(), Some(128)).frame_for(w, &mut def)[0] & 0x40 != 0);
    assert_eq!(
        Broadcast::new(long.clone(), None).frame_for(w, &mut def),
        &long
    );
    assert_eq!(Broadcast::from(long.clone()).frame_for(w, &mut def), &long);
    assert_eq!(def.compressions(), 1);
    let _: Bytes = long;
}

proptest! {
    /// Whatever the payload and window: our frame inflates back, with our
    /// inflater and with one limited to the window.
    #[test]
    fn compress_then_inflate_round_trips(
        payload in proptest::collection::vec(prop_oneof![Just(b'a'), Just(b'{'), any::<u8>()], 0..3000),
        bits in 9u8..=15,
    ) {
        let mut def = Deflater::default();
        let mut inf = Inflater::default();
        if let Some(body) = def.compress(&payload, WindowBits::new(bits)) {
            let body = body.to_vec();
            prop_assert_eq!(inf.inflate(&body, payload.len()).unwrap(), &payload[..]);
            prop_assert_eq!(inflate_with_window(&body, bits), payload.clone());
            if !payload.is_empty() {
                prop_assert!(inf.inflate(&body, payload.len() - 1).is_err());
            }
        }
    }

    /// Any bytes: inflating never panics and never returns more than the
    /// limit.
    #[test]
    fn arbitrary_input_inflates_within_the_limit(
        body in proptest::collection::vec(any::<u8>(), 0..200),
        max in 0usize..300,
    ) {
        let mut inf = Inflater::default();
        if let Ok(out) = inf.inflate(&body, max) {
            prop_assert!(out.len() <= max);
        }
    }
}
