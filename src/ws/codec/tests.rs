use super::*;
use crate::ws::{close_frame, encode_client_frame, server_frame, text_frame_with};

const KEY: [u8; 4] = [0xa1, 0x02, 0xf3, 0x44];

fn frame(op: OpCode, fin: bool, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    encode_client_frame(op, fin, payload, KEY, &mut out);
    out
}

fn server() -> Decoder {
    Decoder::new(Role::Server, 1024)
}

/// Decodes one frame that must be whole, returning the error if any.
fn decode_err(d: &mut Decoder, mut bytes: Vec<u8>) -> ProtocolError {
    d.decode(&mut bytes).unwrap_err()
}

/// Decodes every frame of `bytes`, collecting owned copies of the messages.
fn decode_all(d: &mut Decoder, mut bytes: Vec<u8>) -> Result<Vec<(u8, Vec<u8>)>, ProtocolError> {
    let mut out = Vec::new();
    let mut at = 0;
    loop {
        let (n, m) = d.decode(&mut bytes[at..])?;
        if let Some(m) = m {
            out.push(match m {
                Message::Text(t) => (1, t.to_vec()),
                Message::Binary(b) => (2, b.to_vec()),
                Message::Close(None) => (8, Vec::new()),
                Message::Close(Some(c)) => (8, c.reason.as_bytes().to_vec()),
                Message::Ping(p) => (9, p.to_vec()),
                Message::Pong(p) => (10, p.to_vec()),
                // Compressed messages as 0x40 | opcode, still compressed.
                Message::Deflated { text, payload } => {
                    (0x40 | if text { 1 } else { 2 }, payload.to_vec())
                }
            });
        }
        if n == 0 {
            return Ok(out);
        }
        at += n;
    }
}

#[test]
fn unfragmented_text_borrows_the_input() {
    let mut d = server();
    let mut bytes = frame(OpCode::Text, true, b"hello");
    let range = bytes.as_ptr_range();
    let (n, m) = d.decode(&mut bytes).unwrap();
    assert_eq!(n, 11);
    let Some(Message::Text(t)) = m else {
        panic!("{m:?}")
    };
    assert_eq!(t, b"hello");
    assert!(range.contains(&t.as_ptr()), "not zero copy");
    assert_eq!(d.buffered(), 0);
}

#[test]
fn incomplete_frames_consume_and_modify_nothing() {
    let whole = frame(OpCode::Binary, true, &[9; 300]);
    for cut in 0..whole.len() {
        let mut d = server();
        let mut part = whole[..cut].to_vec();
        assert_eq!(d.decode(&mut part), Ok((0, None)), "cut {cut}");
        assert_eq!(part, whole[..cut], "cut {cut} modified the input");
    }
}

#[test]
fn several_frames_in_one_buffer_decode_in_order() {
    let mut bytes = frame(OpCode::Text, true, b"a");
    bytes.extend(frame(OpCode::Ping, true, b"p"));
    bytes.extend(frame(OpCode::Binary, true, b"b"));
    let got = decode_all(&mut server(), bytes).unwrap();
    assert_eq!(
        got,
        [(1, b"a".to_vec()), (9, b"p".to_vec()), (2, b"b".to_vec())]
    );
}

#[test]
fn server_rejects_unmasked_and_client_rejects_masked() {
    let mut unmasked = Vec::new();
    crate::ws::encode_frame(OpCode::Text, b"x", &mut unmasked);
    assert_eq!(
        decode_err(&mut server(), unmasked.clone()),
        ProtocolError::UnmaskedClientFrame
    );
    let mut client = Decoder::new(Role::Client, 1024);
    assert_eq!(
        decode_err(&mut client, frame(OpCode::Text, true, b"x")),
        ProtocolError::MaskedServerFrame
    );
    let got = decode_all(&mut client, unmasked).unwrap();
    assert_eq!(got, [(1, b"x".to_vec())]);
}

#[test]
fn client_role_reads_every_server_encoder() {
    let mut bytes = server_frame(OpCode::Binary, &[1, 2, 3]).to_vec();
    bytes.extend_from_slice(&text_frame_with(|v| v.extend_from_slice(b"{\"a\":1}")));
    bytes.extend_from_slice(&close_frame(1000, "bye"));
    let got = decode_all(&mut Decoder::new(Role::Client, 1024), bytes).unwrap();
    assert_eq!(
        got,
        [
            (2, vec![1, 2, 3]),
            (1, b"{\"a\":1}".to_vec()),
            (8, b"bye".to_vec())
        ]
    );
}

#[test]
fn reserved_bits_and_unknown_opcodes_fail() {
    let mut bytes = frame(OpCode::Text, true, b"x");
    bytes[0] |= 0x40;
    assert_eq!(
        decode_err(&mut server(), bytes),
        ProtocolError::ReservedBits
    );
    let mut bytes = frame(OpCode::Text, true, b"x");
    bytes[0] = 0x80 | 0xB;
    assert_eq!(
        decode_err(&mut server(), bytes),
        ProtocolError::UnknownOpcode(0xB)
    );
}

#[test]
fn control_frames_must_be_short_and_final() {
    assert_eq!(
        decode_err(&mut server(), frame(OpCode::Ping, true, &[0; 126])),
        ProtocolError::ControlTooLong { len: 126 }
    );
    assert_eq!(
        decode_err(&mut server(), frame(OpCode::Pong, false, b"")),
        ProtocolError::FragmentedControl
    );
    let got = decode_all(&mut server(), frame(OpCode::Ping, true, &[7; 125])).unwrap();
    assert_eq!(got, [(9, vec![7; 125])]);
}

#[test]
fn continuation_needs_a_message_in_progress() {
    assert_eq!(
        decode_err(&mut server(), frame(OpCode::Continuation, true, b"x")),
        ProtocolError::UnexpectedContinuation
    );
    for op in [OpCode::Text, OpCode::Binary] {
        let mut bytes = frame(OpCode::Binary, false, b"a");
        bytes.extend(frame(op, true, b"b"));
        assert_eq!(
            decode_all(&mut server(), bytes),
            Err(ProtocolError::ExpectedContinuation)
        );
    }
}

#[test]
fn control_frames_interleave_with_fragments() {
    let mut bytes = frame(OpCode::Text, false, b"Hel");
    bytes.extend(frame(OpCode::Ping, true, b"p1"));
    bytes.extend(frame(OpCode::Continuation, false, b"lo, "));
    bytes.extend(frame(OpCode::Pong, true, b""));
    bytes.extend(frame(OpCode::Continuation, true, b"world"));
    let got = decode_all(&mut server(), bytes).unwrap();
    assert_eq!(
        got,
        [
            (9, b"p1".to_vec()),
            (10, Vec::new()),
            (1, b"Hello, world".to_vec())
        ]
    );
}

#[test]
fn non_final_fragment_is_kept_inside() {
    let mut d = server();
    let mut bytes = frame(OpCode::Binary, false, b"abc");
    let len = bytes.len();
    assert_eq!(d.decode(&mut bytes), Ok((len, None)));
    assert_eq!(d.buffered(), 3);
}

#[test]
fn length_msb_must_be_zero() {
    let mut bytes = vec![0x82, 0x80 | 127];
    bytes.extend_from_slice(&(u64::MAX).to_be_bytes());
    bytes.extend_from_slice(&KEY);
    assert_eq!(
        decode_err(&mut server(), bytes),
        ProtocolError::InvalidLength
    );
}

#[test]
fn message_of_exactly_max_is_accepted_one_more_is_too_big() {
    let max = 300;
    let got = decode_all(
        &mut Decoder::new(Role::Server, max),
        frame(OpCode::Binary, true, &[1; 300]),
    );
    assert_eq!(got.unwrap(), [(2, vec![1; 300])]);
    assert_eq!(
        decode_err(
            &mut Decoder::new(Role::Server, max),
            frame(OpCode::Binary, true, &[1; 301])
        ),
        ProtocolError::MessageTooBig { size: 301, max }
    );

    // The same limit applies to the reassembled message.
    let mut bytes = frame(OpCode::Text, false, &[b'a'; 100]);
    bytes.extend(frame(OpCode::Continuation, false, &[b'b'; 100]));
    bytes.extend(frame(OpCode::Continuation, true, &[b'c'; 100]));
    let got = decode_all(&mut Decoder::new(Role::Server, max), bytes.clone()).unwrap();
    assert_eq!(got[0].1.len(), 300);
    bytes.extend(frame(OpCode::Binary, false, &[0; 150]));
    bytes.extend(frame(OpCode::Continuation, true, &[0; 151]));
    assert_eq!(
        decode_all(&mut Decoder::new(Role::Server, max), bytes),
        Err(ProtocolError::MessageTooBig { size: 301, max })
    );
}

#[test]
fn huge_length_fails_on_the_header_alone() {
    let mut header = vec![0x82, 0x80 | 127];
    header.extend_from_slice(&(i64::MAX as u64).to_be_bytes());
    header.extend_from_slice(&KEY);
    let mut d = server();
    assert_eq!(d.frame_len_hint(&header), None);
    assert_eq!(
        decode_err(&mut d, header),
        ProtocolError::MessageTooBig {
            size: i64::MAX as u64,
            max: 1024
        }
    );
}

#[test]
fn continuation_past_the_limit_fails_at_its_header() {
    let mut d = Decoder::new(Role::Server, 100);
    let mut first = frame(OpCode::Binary, false, &[0; 60]);
    let len = first.len();
    assert_eq!(d.decode(&mut first), Ok((len, None)));
    // Only the header of the next fragment: 41 bytes announced, none sent.
    let next = frame(OpCode::Continuation, true, &[0; 41])[..6].to_vec();
    assert_eq!(
        decode_err(&mut d, next),
        ProtocolError::MessageTooBig {
            size: 101,
            max: 100
        }
    );
    assert!(d.buf.capacity() <= 100);
}

#[test]
fn reassembly_never_reserves_past_the_limit() {
    let max = 1000;
    let mut d = Decoder::new(Role::Server, max);
    let mut bytes = Vec::new();
    for _ in 0..99 {
        bytes.extend(frame(
            if bytes.is_empty() {
                OpCode::Binary
            } else {
                OpCode::Continuation
            },
            false,
            &[3; 10],
        ));
    }
    bytes.extend(frame(OpCode::Continuation, true, &[3; 10]));
    let mut at = 0;
    loop {
        let (n, m) = d.decode(&mut bytes[at..]).unwrap();
        let done = m
            .map(|m| assert_eq!(m, Message::Binary(&[3; 1000])))
            .is_some();
        assert!(d.buf.capacity() <= max, "capacity {}", d.buf.capacity());
        if done {
            break;
        }
        at += n;
    }
}

#[test]
fn reassembled_buffer_is_released_by_the_next_call() {
    let mut d = Decoder::new(Role::Server, 1 << 20);
    let mut bytes = frame(OpCode::Binary, false, &[1; 5000]);
    bytes.extend(frame(OpCode::Continuation, true, &[2; 5000]));
    let got = decode_all(&mut d, bytes).unwrap();
    assert_eq!(got[0].1.len(), 10_000);
    // decode_all ended with a call on empty input, which released it.
    assert_eq!(d.buffered(), 0);
    assert_eq!(d.buf.capacity(), 0, "large buffer kept");

    let mut small = frame(OpCode::Binary, false, &[1; 10]);
    small.extend(frame(OpCode::Continuation, true, &[2; 10]));
    decode_all(&mut d, small).unwrap();
    assert_eq!(d.buffered(), 0);
    assert!(d.buf.capacity() <= KEEP_CAPACITY);
}

#[test]
fn invalid_utf8_fails_on_the_first_fragment() {
    // Autobahn 6.4.1-like: the bad code point is in the first fragment and
    // the rest of the message never arrives.
    let mut d = server();
    let mut bytes = frame(
        OpCode::Text,
        false,
        b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xf4\x90\x80\x80",
    );
    assert_eq!(d.decode(&mut bytes), Err(ProtocolError::InvalidUtf8));
    assert_eq!(ProtocolError::InvalidUtf8.close_code(), 1007);
}

#[test]
fn invalid_utf8_in_single_frame_and_continuation_fails() {
    assert_eq!(
        decode_err(&mut server(), frame(OpCode::Text, true, b"a\xff")),
        ProtocolError::InvalidUtf8
    );
    let mut bytes = frame(OpCode::Text, false, b"ok");
    bytes.extend(frame(OpCode::Continuation, false, b"\xc0\xaf"));
    assert_eq!(
        decode_all(&mut server(), bytes),
        Err(ProtocolError::InvalidUtf8)
    );
}

#[test]
fn text_ending_mid_sequence_fails_at_fin() {
    let mut d = server();
    let mut first = frame(OpCode::Text, false, b"euro \xe2\x82");
    let len = first.len();
    assert_eq!(d.decode(&mut first), Ok((len, None)));
    let mut last = frame(OpCode::Continuation, true, b"");
    assert_eq!(d.decode(&mut last), Err(ProtocolError::InvalidUtf8));
}

#[test]
fn code_point_split_across_fragments_is_valid() {
    let mut bytes = frame(OpCode::Text, false, b"euro \xe2");
    bytes.extend(frame(OpCode::Continuation, false, b"\x82"));
    bytes.extend(frame(OpCode::Continuation, true, b"\xac!"));
    let got = decode_all(&mut server(), bytes).unwrap();
    assert_eq!(got, [(1, "euro €!".as_bytes().to_vec())]);
}

#[test]
fn binary_is_not_utf8_checked() {
    let got = decode_all(&mut server(), frame(OpCode::Binary, true, b"\xff\xfe")).unwrap();
    assert_eq!(got, [(2, vec![0xff, 0xfe])]);
}

#[test]
fn close_payload_rules() {
    let mut d = server();
    let mut bytes = frame(OpCode::Close, true, b"");
    assert_eq!(d.decode(&mut bytes), Ok((6, Some(Message::Close(None)))));
    let mut bytes = frame(OpCode::Close, true, b"\x03\xe8bye");
    assert_eq!(
        d.decode(&mut bytes),
        Ok((
            11,
            Some(Message::Close(Some(CloseFrame {
                code: 1000,
                reason: "bye"
            })))
        ))
    );
    assert_eq!(
        decode_err(&mut server(), frame(OpCode::Close, true, b"\x03")),
        ProtocolError::CloseTooShort
    );
    for code in [999u16, 1004, 1005, 1006, 1015, 1016, 2999, 5000] {
        assert_eq!(
            decode_err(
                &mut server(),
                frame(OpCode::Close, true, &code.to_be_bytes())
            ),
            ProtocolError::InvalidCloseCode(code)
        );
    }
    let err = decode_err(&mut server(), frame(OpCode::Close, true, b"\x03\xe8\xff"));
    assert_eq!((err, err.close_code()), (ProtocolError::InvalidUtf8, 1007));
}

#[test]
fn frame_len_hint_tracks_the_header() {
    let d = server();
    let whole = frame(OpCode::Binary, true, &[0; 500]);
    for cut in 0..8 {
        assert_eq!(d.frame_len_hint(&whole[..cut]), None, "cut {cut}");
    }
    for cut in [8, 9, 100, whole.len()] {
        assert_eq!(
            d.frame_len_hint(&whole[..cut]),
            Some(whole.len()),
            "cut {cut}"
        );
    }
    assert_eq!(
        d.frame_len_hint(&frame(OpCode::Binary, true, &[0; 1025])),
        None
    );
}

#[test]
fn tungstenite_client_frames_decode() {
    use tungstenite::protocol::frame::{coding, Frame};
    let mut bytes = Vec::new();
    let parts: [(&[u8], coding::OpCode, bool); 3] = [
        (b"frag", coding::OpCode::Data(coding::Data::Text), false),
        (b"ment", coding::OpCode::Data(coding::Data::Continue), true),
        (
            &[1u8; 200],
            coding::OpCode::Data(coding::Data::Binary),
            true,
        ),
    ];
    for (payload, op, fin) in parts {
        let mut f = Frame::message(payload.to_vec(), op, fin);
        f.header_mut().mask = Some([9, 8, 7, 6]);
        f.format(&mut bytes).unwrap();
    }
    let got = decode_all(&mut server(), bytes).unwrap();
    assert_eq!(got, [(1, b"fragment".to_vec()), (2, vec![1; 200])]);
}

#[test]
fn zero_limit_accepts_only_empty_messages() {
    let mut d = Decoder::new(Role::Server, 0);
    let mut bytes = frame(OpCode::Text, true, b"");
    assert_eq!(d.decode(&mut bytes), Ok((6, Some(Message::Text(b"")))));
    assert_eq!(
        decode_err(&mut d, frame(OpCode::Text, true, b"x")),
        ProtocolError::MessageTooBig { size: 1, max: 0 }
    );
    // Control frames are not data and are not counted.
    let mut ping = frame(OpCode::Ping, true, b"still fine");
    assert!(d.decode(&mut ping).is_ok());
}

/// A frame with RSV1 set.
fn rsv1(op: OpCode, fin: bool, payload: &[u8]) -> Vec<u8> {
    let mut f = frame(op, fin, payload);
    f[0] |= 0x40;
    f
}

fn deflating() -> Decoder {
    let mut d = server();
    d.set_deflate(true);
    d
}

#[test]
fn rsv1_starts_a_compressed_message_only_where_negotiated() {
    let hello = [0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00];
    assert_eq!(
        decode_err(&mut server(), rsv1(OpCode::Text, true, &hello)),
        ProtocolError::ReservedBits,
        "RSV1 without the extension"
    );
    let got = decode_all(&mut deflating(), rsv1(OpCode::Text, true, &hello)).unwrap();
    assert_eq!(got, [(0x41, hello.to_vec())]);
    // Not validated as UTF-8 before inflating.
    let got = decode_all(&mut deflating(), rsv1(OpCode::Binary, true, &[0xff])).unwrap();
    assert_eq!(got, [(0x42, vec![0xff])]);
    // Plain messages still pass on a deflate connection.
    let got = decode_all(&mut deflating(), frame(OpCode::Text, true, b"hi")).unwrap();
    assert_eq!(got, [(1, b"hi".to_vec())]);
}

#[test]
fn rsv1_on_control_or_continuation_frames_is_a_protocol_error() {
    for op in [OpCode::Ping, OpCode::Pong, OpCode::Close] {
        let e = decode_err(&mut deflating(), rsv1(op, true, b""));
        assert_eq!(e, ProtocolError::ReservedBits, "{op:?}");
        assert_eq!(e.close_code(), 1002);
    }
    let mut d = deflating();
    let mut bytes = rsv1(OpCode::Text, false, &[0xf2, 0x48]);
    bytes.extend(rsv1(OpCode::Continuation, true, &[0xcd]));
    assert_eq!(decode_all(&mut d, bytes), Err(ProtocolError::ReservedBits));
}

#[test]
fn fragmented_compressed_messages_are_joined_still_compressed() {
    let hello = [0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00];
    let mut bytes = rsv1(OpCode::Text, false, &hello[..3]);
    bytes.extend(frame(OpCode::Ping, true, b"p"));
    bytes.extend(frame(OpCode::Continuation, false, &hello[3..5]));
    bytes.extend(frame(OpCode::Continuation, true, &hello[5..]));
    bytes.extend(frame(OpCode::Text, true, b"plain"));
    let got = decode_all(&mut deflating(), bytes).unwrap();
    assert_eq!(
        got,
        [
            (9, b"p".to_vec()),
            (0x41, hello.to_vec()),
            (1, b"plain".to_vec())
        ]
    );
}

#[test]
fn compressed_bytes_are_bounded_by_the_limit_plus_deflate_overhead() {
    let mut d = Decoder::new(Role::Server, 1024);
    d.set_deflate(true);
    let ok = vec![0u8; 1024 + 1 + 64];
    assert!(decode_all(&mut d, rsv1(OpCode::Binary, true, &ok)).is_ok());
    let too_many = vec![0u8; 1024 + 1 + 64 + 1];
    assert!(matches!(
        decode_err(&mut d, rsv1(OpCode::Binary, true, &too_many)),
        ProtocolError::MessageTooBig { .. }
    ));
}
