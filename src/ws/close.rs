//! Close frames: the payload layout of RFC 6455 5.5.1 and the status codes
//! of section 7.4.
//!
//! A close payload is either empty or a 2-byte big-endian code followed by a
//! UTF-8 reason. Only codes a peer may put on the wire are accepted: 1004,
//! 1005, 1006 and 1015 are reserved for local use ("MUST NOT be set as a
//! status code in a Close control frame by an endpoint"), and 1016-2999 are
//! held for future revisions of the protocol.

use super::ProtocolError;

/// The status codes of RFC 6455 7.4.1 the codec's errors close with; the
/// connection names its own (1001, 4008, 4009: PROTOCOL.md section 8)
/// where it closes.
pub mod close_code {
    /// Any RFC 6455 rule broken.
    pub const PROTOCOL_ERROR: u16 = 1002;
    /// Invalid UTF-8 in a text message or a close reason.
    pub const INVALID_PAYLOAD: u16 = 1007;
    /// A reassembled message over the configured limit.
    pub const MESSAGE_TOO_BIG: u16 = 1009;
}

/// The payload of a close frame that had one.
#[derive(Debug, PartialEq, Eq, Clone, Copy)]
pub struct CloseFrame<'a> {
    pub code: u16,
    pub reason: &'a str,
}

/// Whether a peer may send `code` in a close frame (RFC 6455 7.4).
pub fn is_valid_close_code(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1011 | 3000..=4999)
}

/// Reads an unmasked close payload (RFC 6455 5.5.1).
pub fn parse_close_payload(payload: &[u8]) -> Result<Option<CloseFrame<'_>>, ProtocolError> {
    let (code, reason) = match payload {
        [] => return Ok(None),
        [_] => return Err(ProtocolError::CloseTooShort),
        [hi, lo, reason @ ..] => (u16::from_be_bytes([*hi, *lo]), reason),
    };
    if !is_valid_close_code(code) {
        return Err(ProtocolError::InvalidCloseCode(code));
    }
    let reason = std::str::from_utf8(reason).map_err(|_| ProtocolError::InvalidUtf8)?;
    Ok(Some(CloseFrame { code, reason }))
}

/// The longest reason that fits a control frame beside the 2-byte code.
pub const MAX_CLOSE_REASON: usize = super::frame::MAX_CONTROL_PAYLOAD - 2;

/// Cuts `reason` to at most [`MAX_CLOSE_REASON`] bytes on a char boundary.
pub fn truncate_reason(reason: &str) -> &str {
    if reason.len() <= MAX_CLOSE_REASON {
        return reason;
    }
    let mut end = MAX_CLOSE_REASON;
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    reason.get(..end).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn close_code_ranges_follow_rfc_7_4() {
        let valid = |c| is_valid_close_code(c);
        for c in [
            1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 3000, 4008, 4999,
        ] {
            assert!(valid(c), "{c}");
        }
        for c in [
            0, 999, 1004, 1005, 1006, 1012, 1015, 1016, 2000, 2999, 5000, 65535,
        ] {
            assert!(!valid(c), "{c}");
        }
    }

    #[test]
    fn close_payloads() {
        assert_eq!(parse_close_payload(b""), Ok(None));
        assert_eq!(
            parse_close_payload(b"\x03"),
            Err(ProtocolError::CloseTooShort)
        );
        assert_eq!(
            parse_close_payload(b"\x03\xe8"),
            Ok(Some(CloseFrame {
                code: 1000,
                reason: ""
            }))
        );
        assert_eq!(
            parse_close_payload(b"\x0f\xa0bye \xc3\xa9"),
            Ok(Some(CloseFrame {
                code: 4000,
                reason: "bye é"
            }))
        );
        assert_eq!(
            parse_close_payload(b"\x03\xed"),
            Err(ProtocolError::InvalidCloseCode(1005))
        );
        assert_eq!(
            parse_close_payload(b"\x03\xe8\xff"),
            Err(ProtocolError::InvalidUtf8)
        );
    }

    #[test]
    fn reasons_are_cut_on_char_boundaries() {
        assert_eq!(truncate_reason("short"), "short");
        let long = "é".repeat(100); // 200 bytes
        let cut = truncate_reason(&long);
        assert!(cut.len() <= MAX_CLOSE_REASON && cut.len() >= MAX_CLOSE_REASON - 1);
        assert!(long.starts_with(cut));
    }
}
