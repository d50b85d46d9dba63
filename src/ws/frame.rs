//! The frame header of RFC 6455 section 5.2: parsing with every frame-local
//! rule checked, and writing.
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-------+-+-------------+-------------------------------+
//! |F|R|R|R| opcode|M| Payload len |    Extended payload length    |
//! |I|S|S|S|  (4)  |A|     (7)     |             (16/64)           |
//! |N|V|V|V|       |S|             |   (if payload len==126/127)   |
//! | |1|2|3|       |K|             |                               |
//! +-+-+-+-+-------+-+-------------+ - - - - - - - - - - - - - - - +
//! |     Extended payload length continued, if payload len == 127  |
//! + - - - - - - - - - - - - - - - +-------------------------------+
//! |                               |Masking-key, if MASK set to 1  |
//! +-------------------------------+-------------------------------+
//! ```
//!
//! Parsing never consumes anything: it either returns a whole header, says
//! more bytes are needed (`Ok(None)`), or names the rule the bytes break. Rules
//! that need state (fragmentation, the message size limit) live in the codec.

use super::ProtocolError;

/// The largest header: 2 fixed bytes, an 8-byte length and a 4-byte mask.
pub const MAX_HEADER_LEN: usize = 14;

/// The largest header of an unmasked (server-to-client) frame.
pub const MAX_SERVER_HEADER_LEN: usize = 10;

/// RFC 6455 5.5: "All control frames MUST have a payload length of 125 bytes
/// or less".
pub const MAX_CONTROL_PAYLOAD: usize = 125;

/// Which end of the connection is decoding. It decides the masking rule of
/// RFC 6455 5.1: a client masks every frame it sends and a server masks none.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Decodes masked client frames.
    Server,
    /// Decodes unmasked server frames.
    Client,
}

/// The opcodes of RFC 6455 5.2 that have a meaning; the reserved ones
/// (3-7, 0xB-0xF) are rejected at parse time since no extension defines them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpCode {
    /// 0x0: a later fragment of a Text or Binary message.
    Continuation,
    /// 0x1
    Text,
    /// 0x2
    Binary,
    /// 0x8
    Close,
    /// 0x9
    Ping,
    /// 0xA
    Pong,
}

impl OpCode {
    /// The 4-bit wire value.
    pub fn bits(self) -> u8 {
        match self {
            OpCode::Continuation => 0x0,
            OpCode::Text => 0x1,
            OpCode::Binary => 0x2,
            OpCode::Close => 0x8,
            OpCode::Ping => 0x9,
            OpCode::Pong => 0xA,
        }
    }

    /// Reads a 4-bit wire value; `None` for the reserved ones.
    pub fn from_bits(bits: u8) -> Option<OpCode> {
        Some(match bits {
            0x0 => OpCode::Continuation,
            0x1 => OpCode::Text,
            0x2 => OpCode::Binary,
            0x8 => OpCode::Close,
            0x9 => OpCode::Ping,
            0xA => OpCode::Pong,
            _ => return None,
        })
    }

    /// RFC 6455 5.5: opcodes with the high bit set are control frames.
    pub fn is_control(self) -> bool {
        self.bits() & 0x8 != 0
    }
}

/// A parsed and frame-locally valid header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameHeader {
    pub fin: bool,
    /// RSV1: "Per-Message Compressed" under permessage-deflate (RFC 7692 6).
    pub rsv1: bool,
    pub opcode: OpCode,
    /// Present exactly when the role expects it (checked while parsing).
    pub mask: Option<[u8; 4]>,
    pub payload_len: u64,
    /// Bytes of header before the payload: 2 to 14.
    pub header_len: usize,
}

/// Parses the header at the front of `input` as seen by `role`.
///
/// Returns `Ok(None)` if `input` is too short to hold the whole header, and
/// consumes nothing either way. Rules are checked as soon as the bytes that
/// carry them have arrived, so a bad first byte fails without waiting for the
/// rest of the header.
pub fn parse_header(input: &[u8], role: Role) -> Result<Option<FrameHeader>, ProtocolError> {
    let Some(&b0) = input.first() else {
        return Ok(None);
    };
    // RFC 6455 5.2: "MUST be 0 unless an extension is negotiated". The only
    // extension we negotiate, permessage-deflate, uses RSV1 (RFC 7692 6);
    // whether it may be set here depends on the connection and the frame,
    // which the codec checks.
    if b0 & 0x30 != 0 {
        return Err(ProtocolError::ReservedBits);
    }
    let rsv1 = b0 & 0x40 != 0;
    let opcode = OpCode::from_bits(b0 & 0x0F).ok_or(ProtocolError::UnknownOpcode(b0 & 0x0F))?;
    let fin = b0 & 0x80 != 0;
    // RFC 6455 5.5: "Control frames themselves MUST NOT be fragmented."
    if opcode.is_control() && !fin {
        return Err(ProtocolError::FragmentedControl);
    }

    let Some(&b1) = input.get(1) else {
        return Ok(None);
    };
    let masked = b1 & 0x80 != 0;
    // RFC 6455 5.1: a server MUST close on an unmasked frame, a client on a
    // masked one.
    match (role, masked) {
        (Role::Server, false) => return Err(ProtocolError::UnmaskedClientFrame),
        (Role::Client, true) => return Err(ProtocolError::MaskedServerFrame),
        _ => {}
    }

    let (payload_len, len_bytes) = match b1 & 0x7F {
        126 => match input.get(2..4) {
            Some(&[a, b]) => (u64::from(u16::from_be_bytes([a, b])), 2),
            _ => return Ok(None),
        },
        127 => match input.get(2..10).and_then(|s| <[u8; 8]>::try_from(s).ok()) {
            Some(bytes) => (u64::from_be_bytes(bytes), 8),
            None => return Ok(None),
        },
        short => (u64::from(short), 0),
    };
    check_length(opcode, payload_len, len_bytes)?;

    let mut header_len = 2 + len_bytes;
    let mask = if masked {
        let key = input
            .get(header_len..header_len + 4)
            .and_then(|s| <[u8; 4]>::try_from(s).ok());
        let Some(key) = key else {
            return Ok(None);
        };
        header_len += 4;
        Some(key)
    } else {
        None
    };
    Ok(Some(FrameHeader {
        fin,
        rsv1,
        opcode,
        mask,
        payload_len,
        header_len,
    }))
}

/// The length rules of RFC 6455 5.2 and 5.5.
fn check_length(opcode: OpCode, len: u64, len_bytes: usize) -> Result<(), ProtocolError> {
    if opcode.is_control() && len > MAX_CONTROL_PAYLOAD as u64 {
        return Err(ProtocolError::ControlTooLong { len });
    }
    // "the most significant bit MUST be 0"
    if len_bytes == 8 && len >> 63 != 0 {
        return Err(ProtocolError::InvalidLength);
    }
    // "In all cases, the minimal number of bytes MUST be used to encode the
    // length". Browsers and the common libraries obey; accepting the padded
    // forms would only widen what a peer can make us parse.
    let minimal = match len_bytes {
        2 => len > 125,
        8 => len > u64::from(u16::MAX),
        _ => true,
    };
    if !minimal {
        return Err(ProtocolError::NonMinimalLength);
    }
    Ok(())
}

/// How many header bytes a payload of `len` bytes needs, without the mask.
pub fn header_len_for(len: usize) -> usize {
    match len {
        0..=125 => 2,
        126..=0xFFFF => 4,
        _ => 10,
    }
}

/// Writes a header with the minimal length encoding into `out` and returns
/// how many bytes it used (2 to 14).
pub fn write_header(
    out: &mut [u8; MAX_HEADER_LEN],
    fin: bool,
    opcode: OpCode,
    mask: Option<[u8; 4]>,
    len: usize,
) -> usize {
    out[0] = (u8::from(fin) << 7) | opcode.bits();
    let mask_bit = if mask.is_some() { 0x80 } else { 0 };
    let mut n = match len {
        0..=125 => {
            // In range by the match arm.
            out[1] = mask_bit | len as u8;
            2
        }
        126..=0xFFFF => {
            out[1] = mask_bit | 126;
            out[2..4].copy_from_slice(&(len as u16).to_be_bytes());
            4
        }
        _ => {
            out[1] = mask_bit | 127;
            out[2..10].copy_from_slice(&(len as u64).to_be_bytes());
            10
        }
    };
    if let Some(key) = mask {
        out[n..n + 4].copy_from_slice(&key);
        n += 4;
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(bytes: &[u8], role: Role) -> Result<Option<FrameHeader>, ProtocolError> {
        parse_header(bytes, role)
    }

    #[test]
    fn opcodes_round_trip_and_reserved_ones_are_unknown() {
        for bits in 0u8..16 {
            match OpCode::from_bits(bits) {
                Some(op) => assert_eq!(op.bits(), bits),
                None => assert!(matches!(bits, 3..=7 | 0xB..=0xF), "{bits}"),
            }
        }
        assert!(OpCode::Close.is_control() && OpCode::Ping.is_control());
        assert!(!OpCode::Text.is_control() && !OpCode::Continuation.is_control());
    }

    #[test]
    fn partial_headers_ask_for_more() {
        let mut out = [0; MAX_HEADER_LEN];
        for len in [0usize, 125, 126, 0xFFFF, 0x1_0000] {
            let n = write_header(&mut out, true, OpCode::Binary, Some([1, 2, 3, 4]), len);
            for cut in 0..n {
                assert_eq!(
                    parse(&out[..cut], Role::Server),
                    Ok(None),
                    "len {len} cut {cut}"
                );
            }
            let h = parse(&out[..n], Role::Server).unwrap().unwrap();
            assert_eq!(h.header_len, n);
            assert_eq!(h.payload_len, len as u64);
            assert_eq!(h.mask, Some([1, 2, 3, 4]));
        }
    }

    #[test]
    fn written_headers_use_the_minimal_length() {
        let mut out = [0; MAX_HEADER_LEN];
        assert_eq!(write_header(&mut out, true, OpCode::Text, None, 125), 2);
        assert_eq!(write_header(&mut out, true, OpCode::Text, None, 126), 4);
        assert_eq!(write_header(&mut out, true, OpCode::Text, None, 0xFFFF), 4);
        assert_eq!(
            write_header(&mut out, true, OpCode::Text, None, 0x1_0000),
            10
        );
        assert_eq!(header_len_for(125), 2);
        assert_eq!(header_len_for(126), 4);
        assert_eq!(header_len_for(0x1_0000), 10);
    }

    #[test]
    fn reserved_bits_fail_on_the_first_byte() {
        for rsv in [0x20, 0x10] {
            assert_eq!(
                parse(&[0x81 | rsv], Role::Server),
                Err(ProtocolError::ReservedBits)
            );
        }
    }

    #[test]
    fn rsv1_is_reported_for_the_codec_to_judge() {
        let h = parse(&[0xC1, 0x80, 0, 0, 0, 0], Role::Server)
            .unwrap()
            .unwrap();
        assert!(h.rsv1);
        let h = parse(&[0x81, 0x80, 0, 0, 0, 0], Role::Server)
            .unwrap()
            .unwrap();
        assert!(!h.rsv1);
    }

    #[test]
    fn unknown_opcodes_fail() {
        for bits in [3u8, 7, 0xB, 0xF] {
            assert_eq!(
                parse(&[0x80 | bits, 0x80], Role::Server),
                Err(ProtocolError::UnknownOpcode(bits))
            );
        }
    }

    #[test]
    fn masking_follows_the_role() {
        assert_eq!(
            parse(&[0x81, 0x00], Role::Server),
            Err(ProtocolError::UnmaskedClientFrame)
        );
        assert_eq!(
            parse(&[0x81, 0x80, 1, 2, 3, 4], Role::Client),
            Err(ProtocolError::MaskedServerFrame)
        );
        assert!(parse(&[0x81, 0x00], Role::Client).unwrap().is_some());
    }

    #[test]
    fn control_frames_must_be_final_and_short() {
        assert_eq!(
            parse(&[0x09], Role::Server),
            Err(ProtocolError::FragmentedControl)
        );
        assert_eq!(
            parse(&[0x89, 0x80 | 126, 0, 126], Role::Server),
            Err(ProtocolError::ControlTooLong { len: 126 })
        );
        assert!(parse(&[0x89, 0x80 | 125, 0, 0, 0, 0], Role::Server)
            .unwrap()
            .is_some());
    }

    #[test]
    fn length_msb_must_be_zero() {
        let mut b = vec![0x82, 0x80 | 127];
        b.extend_from_slice(&(1u64 << 63).to_be_bytes());
        b.extend_from_slice(&[0; 4]);
        assert_eq!(parse(&b, Role::Server), Err(ProtocolError::InvalidLength));
    }

    #[test]
    fn non_minimal_lengths_fail() {
        assert_eq!(
            parse(&[0x82, 0x80 | 126, 0, 125], Role::Server),
            Err(ProtocolError::NonMinimalLength)
        );
        let mut b = vec![0x82, 0x80 | 127];
        b.extend_from_slice(&0xFFFFu64.to_be_bytes());
        assert_eq!(
            parse(&b, Role::Server),
            Err(ProtocolError::NonMinimalLength)
        );
    }
}
