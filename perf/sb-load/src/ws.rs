//! The client side of RFC 6455, cut down to what a load generator needs.
//!
//! Pure: bytes in, frame heads or encoded bytes out; no socket, no clock.
//!
//! * Handshake (§4.1): one fixed `GET` request with a fixed key, and a check of
//!   the `101` answer and its `Sec-WebSocket-Accept`. The key need not be
//!   random for a load test: the server only hashes it.
//! * Server frames (§5.1) arrive unmasked; a masked one is an error ("A client
//!   MUST close a connection if it detects a masked frame").
//! * Client frames are always masked (§5.3), with a key the caller supplies.
//!
//! Fragmented messages are not reassembled: the servers under test send each
//! event as one frame, and the caller counts a non-final frame as unparsed.
//!
//! With `--compression` the request offers permessage-deflate (RFC 7692)
//! with `client_no_context_takeover`, and frames may carry RSV1 once the
//! answer accepted it ([`deflate_accepted`]); inflating is `inflate`'s.

/// `Sec-WebSocket-Key` sent with every handshake (the sample nonce of §1.3).
pub const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
/// The accept value a server must answer to [`KEY`] (§1.3).
pub const ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";
/// Largest HTTP response head accepted before giving up.
pub const MAX_HEAD: usize = 8 * 1024;

pub const OP_TEXT: u8 = 0x1;
pub const OP_CLOSE: u8 = 0x8;
pub const OP_PING: u8 = 0x9;
pub const OP_PONG: u8 = 0xA;

/// Why a handshake answer was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandshakeError {
    /// The status line was not `HTTP/1.1 101`.
    Status,
    /// `101` without our `Sec-WebSocket-Accept` value.
    MissingAccept,
    /// No end of head within [`MAX_HEAD`] bytes.
    HeadTooLong { max: usize },
}

/// Why a server frame was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameError {
    /// §5.1: the server masked a frame.
    Masked,
    /// §5.2: RSV bits set without a negotiated extension.
    Reserved,
    /// §5.5: a control frame over 125 bytes or fragmented.
    BadControl,
    /// Larger than the caller's buffer can ever hold.
    TooLarge { len: u64, max: usize },
}

/// A parsed frame header: the payload is `buf[header_len..header_len + payload_len]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHead {
    pub fin: bool,
    /// RSV1: a compressed message (only where [`parse_frame_with`] allowed it).
    pub rsv1: bool,
    pub opcode: u8,
    pub header_len: usize,
    pub payload_len: usize,
}

impl FrameHead {
    /// Header plus payload: how many bytes this frame occupies.
    pub fn frame_len(&self) -> usize {
        self.header_len + self.payload_len
    }
}

/// The permessage-deflate offer of `--compression`: no context kept by
/// either side, so one stateless inflater per worker reads every message.
pub const DEFLATE_OFFER: &str = "permessage-deflate; client_no_context_takeover";

/// Appends the upgrade request for `path` on `host` (`host:port`).
pub fn write_handshake_request(host: &str, path: &str, out: &mut Vec<u8>) {
    write_handshake_request_with(host, path, false, out)
}

/// [`write_handshake_request`], offering [`DEFLATE_OFFER`] when `deflate`.
pub fn write_handshake_request_with(host: &str, path: &str, deflate: bool, out: &mut Vec<u8>) {
    for part in [
        "GET ",
        path,
        " HTTP/1.1\r\nHost: ",
        host,
        "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: ",
        KEY,
        "\r\nSec-WebSocket-Version: 13\r\n",
    ] {
        out.extend_from_slice(part.as_bytes());
    }
    if deflate {
        out.extend_from_slice(b"Sec-WebSocket-Extensions: ");
        out.extend_from_slice(DEFLATE_OFFER.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

/// Whether the `101` head (as [`parse_handshake_response`] measured it)
/// accepted permessage-deflate. Case-insensitive on the header name; the
/// server answers with at most one extension.
pub fn deflate_accepted(head: &[u8]) -> bool {
    head.split(|&b| b == b'\n').any(|line| {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            return false;
        };
        line[..colon].eq_ignore_ascii_case(b"sec-websocket-extensions")
            && find(&line[colon + 1..], b"permessage-deflate").is_some()
    })
}

/// Checks the server's answer to the upgrade request.
///
/// Returns `Ok(None)` while the head is incomplete (nothing consumed), and
/// `Ok(Some(n))` with the head's length once it is a valid `101`; the bytes
/// after it are already WebSocket frames.
pub fn parse_handshake_response(buf: &[u8]) -> Result<Option<usize>, HandshakeError> {
    let Some(end) = find(buf, b"\r\n\r\n") else {
        if buf.len() > MAX_HEAD {
            return Err(HandshakeError::HeadTooLong { max: MAX_HEAD });
        }
        return Ok(None);
    };
    let head = &buf[..end];
    if !head.starts_with(b"HTTP/1.1 101") {
        return Err(HandshakeError::Status);
    }
    if find(head, ACCEPT.as_bytes()).is_none() {
        return Err(HandshakeError::MissingAccept);
    }
    Ok(Some(end + 4))
}

/// Parses one server frame header from the front of `buf`.
///
/// Returns `Ok(None)` until the whole frame (header and payload) is in `buf`,
/// so the caller can hand the payload on in one slice. `max_payload` bounds
/// what the caller is able to buffer.
pub fn parse_frame(buf: &[u8], max_payload: usize) -> Result<Option<FrameHead>, FrameError> {
    parse_frame_with(buf, max_payload, false)
}

/// [`parse_frame`], accepting RSV1 on data frames when permessage-deflate
/// was negotiated (`deflate`).
pub fn parse_frame_with(
    buf: &[u8],
    max_payload: usize,
    deflate: bool,
) -> Result<Option<FrameHead>, FrameError> {
    let [b0, b1, ..] = *buf else {
        return Ok(None);
    };
    if b1 & 0x80 != 0 {
        return Err(FrameError::Masked);
    }
    let rsv1 = b0 & 0x40 != 0;
    if b0 & 0x30 != 0 || (rsv1 && (!deflate || b0 & 0x08 != 0)) {
        return Err(FrameError::Reserved);
    }
    let fin = b0 & 0x80 != 0;
    let opcode = b0 & 0x0F;
    let (header_len, len) = match b1 & 0x7F {
        126 => match buf.get(2..4) {
            Some(b) => (4, u64::from(u16::from_be_bytes([b[0], b[1]]))),
            None => return Ok(None),
        },
        127 => match buf.get(2..10) {
            Some(b) => {
                let mut n = [0u8; 8];
                n.copy_from_slice(b);
                (10, u64::from_be_bytes(n))
            }
            None => return Ok(None),
        },
        n => (2, u64::from(n)),
    };
    if opcode & 0x8 != 0 && (len > 125 || !fin) {
        return Err(FrameError::BadControl);
    }
    let payload_len = match usize::try_from(len) {
        Ok(n) if n <= max_payload => n,
        _ => {
            return Err(FrameError::TooLarge {
                len,
                max: max_payload,
            })
        }
    };
    if buf.len() < header_len + payload_len {
        return Ok(None);
    }
    Ok(Some(FrameHead {
        fin,
        rsv1,
        opcode,
        header_len,
        payload_len,
    }))
}

/// Appends one final client frame of `opcode` carrying `payload`, masked with
/// `mask` (§5.3).
pub fn write_client_frame(opcode: u8, payload: &[u8], mask: [u8; 4], out: &mut Vec<u8>) {
    out.push(0x80 | opcode);
    let len = payload.len();
    if len < 126 {
        out.push(0x80 | len as u8);
    } else if let Ok(len16) = u16::try_from(len) {
        out.push(0x80 | 126);
        out.extend_from_slice(&len16.to_be_bytes());
    } else {
        out.push(0x80 | 127);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
    out.extend_from_slice(&mask);
    out.extend(
        payload
            .iter()
            .zip(mask.iter().cycle())
            .map(|(byte, key)| byte ^ key),
    );
}

/// First position of `needle` in `hay`.
pub fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() {
        return Some(0);
    }
    hay.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Decodes a masked client frame the way a server would (test oracle).
    fn unmask(frame: &[u8]) -> (u8, Vec<u8>) {
        let (len, at) = match frame[1] & 0x7F {
            126 => (u16::from_be_bytes([frame[2], frame[3]]) as usize, 4),
            127 => {
                let mut n = [0u8; 8];
                n.copy_from_slice(&frame[2..10]);
                (u64::from_be_bytes(n) as usize, 10)
            }
            n => (n as usize, 2),
        };
        assert_eq!(frame[1] & 0x80, 0x80, "client frames must be masked");
        let mask = &frame[at..at + 4];
        let body = frame[at + 4..at + 4 + len]
            .iter()
            .enumerate()
            .map(|(i, b)| b ^ mask[i % 4])
            .collect();
        assert_eq!(frame.len(), at + 4 + len);
        (frame[0], body)
    }

    #[test]
    fn accept_matches_the_rfc_sample() {
        let mut req = Vec::new();
        write_handshake_request("127.0.0.1:9", "/ws", &mut req);
        let req = String::from_utf8(req).unwrap();
        assert!(req.starts_with("GET /ws HTTP/1.1\r\nHost: 127.0.0.1:9\r\n"));
        assert!(req.contains(KEY));
        assert!(req.ends_with("\r\n\r\n"));
    }

    #[test]
    fn handshake_response_partial_ok_and_refused() {
        let ok = format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nSec-WebSocket-Accept: {ACCEPT}\r\n\r\n"
        );
        let mut ok = ok.into_bytes();
        ok.extend_from_slice(&[0x81, 0x02, b'h', b'i']);
        let ok = &ok[..];
        let head = ok.len() - 4;
        for cut in 0..head {
            assert_eq!(parse_handshake_response(&ok[..cut]), Ok(None), "cut {cut}");
        }
        assert_eq!(parse_handshake_response(ok), Ok(Some(head)));
        assert_eq!(
            parse_handshake_response(b"HTTP/1.1 404 Not Found\r\n\r\n"),
            Err(HandshakeError::Status)
        );
        assert_eq!(
            parse_handshake_response(b"HTTP/1.1 101 OK\r\nSec-WebSocket-Accept: x\r\n\r\n"),
            Err(HandshakeError::MissingAccept)
        );
        let long = vec![b'a'; MAX_HEAD + 1];
        assert!(matches!(
            parse_handshake_response(&long),
            Err(HandshakeError::HeadTooLong { .. })
        ));
    }

    #[test]
    fn server_frames_of_every_length_form() {
        for len in [0usize, 1, 125, 126, 127, 65535, 65536, 70000] {
            let mut f = vec![0x81];
            if len < 126 {
                f.push(len as u8);
            } else if len <= 0xFFFF {
                f.push(126);
                f.extend_from_slice(&(len as u16).to_be_bytes());
            } else {
                f.push(127);
                f.extend_from_slice(&(len as u64).to_be_bytes());
            }
            let header_len = f.len();
            f.extend(std::iter::repeat_n(b'x', len));
            for cut in 0..f.len() {
                assert_eq!(
                    parse_frame(&f[..cut], 1 << 20),
                    Ok(None),
                    "len {len} cut {cut}"
                );
            }
            let head = parse_frame(&f, 1 << 20).unwrap().unwrap();
            assert_eq!(
                head,
                FrameHead {
                    fin: true,
                    rsv1: false,
                    opcode: OP_TEXT,
                    header_len,
                    payload_len: len
                }
            );
            assert_eq!(head.frame_len(), f.len());
        }
    }

    #[test]
    fn server_frame_errors() {
        assert_eq!(parse_frame(&[0x81, 0x80], 100), Err(FrameError::Masked));
        assert_eq!(parse_frame(&[0xC1, 0x00], 100), Err(FrameError::Reserved));
        assert_eq!(
            parse_frame(&[0x89, 126, 0, 200], 1000),
            Err(FrameError::BadControl)
        );
        assert_eq!(parse_frame(&[0x09, 0], 1000), Err(FrameError::BadControl));
        assert_eq!(
            parse_frame(&[0x81, 126, 1, 0], 100),
            Err(FrameError::TooLarge { len: 256, max: 100 })
        );
        let mut huge = vec![0x81, 127];
        huge.extend_from_slice(&u64::MAX.to_be_bytes());
        assert!(matches!(
            parse_frame(&huge, 100),
            Err(FrameError::TooLarge { .. })
        ));
    }

    #[test]
    fn deflate_offer_and_rsv1() {
        let mut req = Vec::new();
        write_handshake_request_with("h:1", "/ws", true, &mut req);
        let req = String::from_utf8(req).unwrap();
        assert!(req.contains(
            "\r\nSec-WebSocket-Extensions: permessage-deflate; client_no_context_takeover\r\n"
        ));
        assert!(req.ends_with("\r\n\r\n"));
        assert!(deflate_accepted(
            b"HTTP/1.1 101 x\r\nsec-websocket-extensions: permessage-deflate; server_no_context_takeover"
        ));
        assert!(!deflate_accepted(
            b"HTTP/1.1 101 x\r\nX-Note: permessage-deflate"
        ));
        let head = parse_frame_with(&[0xC1, 0x01, 0x00], 10, true)
            .unwrap()
            .unwrap();
        assert!(head.rsv1 && head.fin);
        assert_eq!(
            parse_frame_with(&[0xC1, 0x01, 0x00], 10, false),
            Err(FrameError::Reserved)
        );
        assert_eq!(
            parse_frame_with(&[0xC9, 0x00], 10, true),
            Err(FrameError::Reserved)
        );
        assert_eq!(
            parse_frame_with(&[0xA1, 0x00], 10, true),
            Err(FrameError::Reserved)
        );
    }

    #[test]
    fn client_frames_round_trip_through_a_server_decoder() {
        for len in [0usize, 1, 5, 125, 126, 1000, 65535, 65536] {
            let payload: Vec<u8> = (0..len).map(|i| (i * 7) as u8).collect();
            let mut out = Vec::new();
            write_client_frame(OP_TEXT, &payload, [1, 2, 3, 0xFF], &mut out);
            let (b0, body) = unmask(&out);
            assert_eq!(b0, 0x81);
            assert_eq!(body, payload, "len {len}");
        }
        let mut out = Vec::new();
        write_client_frame(OP_PONG, b"abc", [9, 9, 9, 9], &mut out);
        assert_eq!(unmask(&out), (0x8A, b"abc".to_vec()));
    }

    #[test]
    fn find_locates_needles() {
        assert_eq!(find(b"abcabc", b"ca"), Some(2));
        assert_eq!(find(b"abc", b"abcd"), None);
        assert_eq!(find(b"abc", b""), Some(0));
    }
}
