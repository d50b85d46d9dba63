//! The one error type of the codec. It is `Copy` so the hot path pays
//! nothing for it, and it knows the close code the connection must be failed
//! with (RFC 6455 7.1.7, 7.4.1).

use std::fmt;

use super::close::close_code;

/// A rule of RFC 6455 the peer broke. Every error is final: the caller
/// fails the connection with [`ProtocolError::close_code`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProtocolError {
    /// RSV1-3 set without a negotiated extension (5.2).
    ReservedBits,
    /// A reserved opcode: 3-7 or 0xB-0xF (5.2).
    UnknownOpcode(u8),
    /// A server received an unmasked frame (5.1).
    UnmaskedClientFrame,
    /// A client received a masked frame (5.1).
    MaskedServerFrame,
    /// A control frame without FIN (5.5).
    FragmentedControl,
    /// A control frame payload over 125 bytes (5.5).
    ControlTooLong { len: u64 },
    /// The 64-bit payload length has its most significant bit set (5.2).
    InvalidLength,
    /// The payload length is not in its shortest encoding (5.2).
    NonMinimalLength,
    /// A continuation frame with no fragmented message in progress (5.4).
    UnexpectedContinuation,
    /// A new Text or Binary frame while a fragmented message is in progress
    /// (5.4).
    ExpectedContinuation,
    /// A close code a peer may not send (7.4).
    InvalidCloseCode(u16),
    /// A close payload of exactly one byte (5.5.1).
    CloseTooShort,
    /// The reassembled message would exceed the configured limit. `size` is
    /// what the message would reach with the frame whose header announced it.
    MessageTooBig { size: u64, max: usize },
    /// A text message or close reason that is not UTF-8 (8.1).
    InvalidUtf8,
    /// A compressed message that is not a raw deflate stream (RFC 7692
    /// 7.2.2). Closed with 1007, like any payload inconsistent with its
    /// message.
    BadDeflate,
}

impl ProtocolError {
    /// The status code to close the connection with.
    pub fn close_code(&self) -> u16 {
        match self {
            ProtocolError::InvalidUtf8 | ProtocolError::BadDeflate => close_code::INVALID_PAYLOAD,
            ProtocolError::MessageTooBig { .. } => close_code::MESSAGE_TOO_BIG,
            _ => close_code::PROTOCOL_ERROR,
        }
    }
}

impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProtocolError::ReservedBits => f.write_str("reserved bits set"),
            ProtocolError::UnknownOpcode(op) => write!(f, "unknown opcode {op:#x}"),
            ProtocolError::UnmaskedClientFrame => f.write_str("unmasked client frame"),
            ProtocolError::MaskedServerFrame => f.write_str("masked server frame"),
            ProtocolError::FragmentedControl => f.write_str("fragmented control frame"),
            ProtocolError::ControlTooLong { len } => {
                write!(f, "control frame payload of {len} bytes (max 125)")
            }
            ProtocolError::InvalidLength => f.write_str("payload length with the high bit set"),
            ProtocolError::NonMinimalLength => f.write_str("payload length not minimally encoded"),
            ProtocolError::UnexpectedContinuation => {
                f.write_str("continuation frame without a message in progress")
            }
            ProtocolError::ExpectedContinuation => {
                f.write_str("new data frame while a fragmented message is in progress")
            }
            ProtocolError::InvalidCloseCode(code) => write!(f, "invalid close code {code}"),
            ProtocolError::CloseTooShort => f.write_str("close payload of one byte"),
            ProtocolError::MessageTooBig { size, max } => {
                write!(f, "message of {size} bytes exceeds the limit of {max}")
            }
            ProtocolError::InvalidUtf8 => f.write_str("invalid UTF-8"),
            ProtocolError::BadDeflate => f.write_str("invalid compressed data"),
        }
    }
}

impl std::error::Error for ProtocolError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn close_codes_per_error_kind() {
        assert_eq!(ProtocolError::InvalidUtf8.close_code(), 1007);
        assert_eq!(ProtocolError::BadDeflate.close_code(), 1007);
        assert_eq!(
            ProtocolError::MessageTooBig { size: 2, max: 1 }.close_code(),
            1009
        );
        for e in [
            ProtocolError::ReservedBits,
            ProtocolError::UnknownOpcode(3),
            ProtocolError::UnmaskedClientFrame,
            ProtocolError::MaskedServerFrame,
            ProtocolError::FragmentedControl,
            ProtocolError::ControlTooLong { len: 126 },
            ProtocolError::InvalidLength,
            ProtocolError::NonMinimalLength,
            ProtocolError::UnexpectedContinuation,
            ProtocolError::ExpectedContinuation,
            ProtocolError::InvalidCloseCode(1005),
            ProtocolError::CloseTooShort,
        ] {
            assert_eq!(e.close_code(), 1002, "{e}");
        }
    }
}
