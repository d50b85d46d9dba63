//! Writing whole frames.
//!
//! The server sends every message as one unfragmented, unmasked frame
//! (RFC 6455 5.1: "A server MUST NOT mask any frames"). The `Bytes`
//! builders exist for the broadcast path: a message published to a channel
//! is framed once and the same `Bytes` is queued, by reference count, on
//! every subscriber.

use bytes::{Buf, Bytes};

use super::close::truncate_reason;
use super::frame::{header_len_for, write_header, OpCode, MAX_HEADER_LEN, MAX_SERVER_HEADER_LEN};
use super::mask::apply_mask;

/// What [`text_frame_with`] reserves up front, header included. Most
/// channel events are small JSON objects; bigger ones grow the `Vec`.
const TEXT_FRAME_INITIAL_CAPACITY: usize = 256;

/// Appends a whole unmasked (server) frame with FIN set to `dst`.
pub fn encode_frame(op: OpCode, payload: &[u8], dst: &mut Vec<u8>) {
    let mut header = [0; MAX_HEADER_LEN];
    let n = write_header(&mut header, true, op, None, payload.len());
    dst.reserve(n + payload.len());
    dst.extend_from_slice(header.get(..n).unwrap_or_default());
    dst.extend_from_slice(payload);
}

/// Builds one unmasked FIN text frame whose payload `fill` appends.
///
/// The payload length is unknown until `fill` returns, so the largest
/// server header (10 bytes) is reserved in front and the real header is
/// written right-aligned against the payload afterwards; the returned
/// `Bytes` starts at the header. That is one buffer allocation (plus any
/// growth `fill` causes past 256 bytes, and the small shared-count box every
/// `Bytes` made from a `Vec` carries), with no copy of the payload.
///
/// `fill` must append valid UTF-8: nothing checks it here.
pub fn text_frame_with(fill: impl FnOnce(&mut Vec<u8>)) -> Bytes {
    let mut buf = Vec::with_capacity(TEXT_FRAME_INITIAL_CAPACITY);
    buf.resize(MAX_SERVER_HEADER_LEN, 0);
    fill(&mut buf);
    let payload_len = buf.len().saturating_sub(MAX_SERVER_HEADER_LEN);
    let mut header = [0; MAX_HEADER_LEN];
    let n = write_header(&mut header, true, OpCode::Text, None, payload_len);
    let start = MAX_SERVER_HEADER_LEN - n;
    if let (Some(dst), Some(src)) = (buf.get_mut(start..MAX_SERVER_HEADER_LEN), header.get(..n)) {
        dst.copy_from_slice(src);
    }
    let mut frame = Bytes::from(buf);
    // `advance` moves the start without touching the reference count, which
    // `slice` would do (and for a promotable `Bytes`, allocate for).
    frame.advance(start);
    frame
}

/// Builds one unmasked FIN frame holding a copy of `payload`, in a buffer of
/// exactly the frame's size.
pub fn server_frame(op: OpCode, payload: &[u8]) -> Bytes {
    let mut buf = Vec::with_capacity(header_len_for(payload.len()) + payload.len());
    encode_frame(op, payload, &mut buf);
    Bytes::from(buf)
}

/// Builds a server close frame. A `reason` longer than the 123 bytes a
/// control frame leaves for it is cut at a char boundary.
pub fn close_frame(code: u16, reason: &str) -> Bytes {
    let reason = truncate_reason(reason);
    let mut payload = [0u8; 125];
    let len = 2 + reason.len();
    if let Some(dst) = payload.get_mut(..len) {
        dst[..2].copy_from_slice(&code.to_be_bytes());
        dst[2..].copy_from_slice(reason.as_bytes());
    }
    server_frame(OpCode::Close, payload.get(..len).unwrap_or_default())
}

/// Appends one masked (client) frame to `dst`. Control frames must be
/// passed `fin = true` and at most 125 bytes to be valid; this writes what
/// it is given so tests can build invalid frames too.
pub fn encode_client_frame(
    op: OpCode,
    fin: bool,
    payload: &[u8],
    mask: [u8; 4],
    dst: &mut Vec<u8>,
) {
    let mut header = [0; MAX_HEADER_LEN];
    let n = write_header(&mut header, fin, op, Some(mask), payload.len());
    dst.reserve(n + payload.len());
    dst.extend_from_slice(header.get(..n).unwrap_or_default());
    let start = dst.len();
    dst.extend_from_slice(payload);
    if let Some(body) = dst.get_mut(start..) {
        apply_mask(body, mask);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc_5_7_examples() {
        let mut out = Vec::new();
        encode_frame(OpCode::Text, b"Hello", &mut out);
        assert_eq!(out, [0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f]);

        out.clear();
        encode_client_frame(
            OpCode::Text,
            true,
            b"Hello",
            [0x37, 0xfa, 0x21, 0x3d],
            &mut out,
        );
        assert_eq!(
            out,
            [0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58]
        );

        out.clear();
        encode_client_frame(OpCode::Text, false, b"Hel", [0; 4], &mut out);
        assert_eq!(out[0], 0x01, "first fragment: FIN clear, opcode text");

        // 256 bytes binary message in a single unmasked frame.
        out.clear();
        encode_frame(OpCode::Binary, &[0; 256], &mut out);
        assert_eq!(out[..4], [0x82, 0x7E, 0x01, 0x00]);
        // 64KiB binary message in a single unmasked frame.
        out.clear();
        encode_frame(OpCode::Binary, &[0; 65536], &mut out);
        assert_eq!(out[..10], [0x82, 0x7F, 0, 0, 0, 0, 0, 0x01, 0x00, 0x00]);
    }

    #[test]
    fn text_frame_with_matches_encode_frame_at_every_header_size() {
        for len in [0usize, 1, 125, 126, 300, 0xFFFF, 0x1_0000] {
            let payload = "x".repeat(len);
            let frame = text_frame_with(|v| v.extend_from_slice(payload.as_bytes()));
            let mut expected = Vec::new();
            encode_frame(OpCode::Text, payload.as_bytes(), &mut expected);
            assert_eq!(&frame[..], &expected[..], "len {len}");
        }
    }

    #[test]
    fn server_frame_is_exactly_sized() {
        let frame = server_frame(OpCode::Binary, &[7; 200]);
        assert_eq!(frame.len(), 4 + 200);
        assert_eq!(frame[..4], [0x82, 126, 0, 200]);
    }

    #[test]
    fn close_frame_layout_and_truncation() {
        assert_eq!(&close_frame(1000, "")[..], &[0x88, 2, 0x03, 0xe8]);
        assert_eq!(&close_frame(4008, "slow")[..], b"\x88\x06\x0f\xa8slow");
        let long = close_frame(1001, &"é".repeat(100));
        assert_eq!(long[0], 0x88);
        assert!(usize::from(long[1]) <= 125);
        assert_eq!(long.len(), 2 + usize::from(long[1]));
    }

    #[test]
    fn tungstenite_reads_our_server_frames() {
        use std::io::Cursor;
        use tungstenite::protocol::frame::{coding, FrameHeader};
        for len in [0usize, 125, 126, 70_000] {
            let frame = server_frame(OpCode::Binary, &vec![1; len]);
            let (h, l) = FrameHeader::parse(&mut Cursor::new(&frame[..]))
                .unwrap()
                .unwrap();
            assert!(h.is_final && h.mask.is_none());
            assert_eq!(h.opcode, coding::OpCode::Data(coding::Data::Binary));
            assert_eq!(l, len as u64);
        }
    }
}
