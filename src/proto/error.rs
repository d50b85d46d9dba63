//! The error codes of PROTOCOL.md §7 and the error a request can carry.
//!
//! The codes are declared in the order of §7's precedence rule ("when several
//! apply, the first in this order wins"), and `Ord` follows declaration order,
//! so the worker resolves several applicable errors with `min()`.
//!
//! `unauthorized` (1.1, a `refresh` token that fails a check) is not in §7's
//! order. It is placed after `forbidden`: the two never apply together (a
//! `refresh` is `forbidden` only when its token passed every check), and the
//! codes that come before both (`rate_limited`, `bad_request`) must win.

use std::fmt;

/// One `code` of an `error` reply (PROTOCOL.md §7).
///
/// The ordering is §7's precedence: `a < b` means `a` wins over `b`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ErrorCode {
    /// Over the per-connection message rate; the request had no effect.
    RateLimited,
    /// Not JSON, not an object, a missing or ill-typed field, a binary frame.
    BadRequest,
    /// A string `type` that §3 does not list.
    UnknownType,
    /// A channel name outside 1-200 bytes of the channel alphabet.
    InvalidChannel,
    /// The token does not allow the channel, or the namespace forbids it.
    Forbidden,
    /// A `refresh` token that fails a check of §6 (1.1).
    Unauthorized,
    /// Acting in, leaving or asking presence of a channel not joined.
    NotJoined,
    /// Over the per-connection channel limit.
    TooManyChannels,
    /// The broker is unreachable; the request had no effect.
    Unavailable,
}

impl ErrorCode {
    /// Every code, in precedence order.
    pub const ALL: [ErrorCode; 9] = [
        ErrorCode::RateLimited,
        ErrorCode::BadRequest,
        ErrorCode::UnknownType,
        ErrorCode::InvalidChannel,
        ErrorCode::Forbidden,
        ErrorCode::Unauthorized,
        ErrorCode::NotJoined,
        ErrorCode::TooManyChannels,
        ErrorCode::Unavailable,
    ];

    /// The wire name, as it appears in the `code` field.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::BadRequest => "bad_request",
            ErrorCode::UnknownType => "unknown_type",
            ErrorCode::InvalidChannel => "invalid_channel",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::NotJoined => "not_joined",
            ErrorCode::TooManyChannels => "too_many_channels",
            ErrorCode::Unavailable => "unavailable",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a request is refused: the `code` and human-readable `message` of the
/// `error` reply. The reply's `id` travels beside it (see
/// [`Envelope`](super::Envelope)), because it is known even when the rest of
/// the request is not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestError {
    pub code: ErrorCode,
    pub message: String,
}

impl RequestError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        RequestError {
            code,
            message: message.into(),
        }
    }

    pub(crate) fn bad_request(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::BadRequest, message)
    }
}

impl fmt::Display for RequestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl std::error::Error for RequestError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn precedence_is_section_7_order() {
        // §7: rate_limited, bad_request, unknown_type, invalid_channel,
        // forbidden, not_joined, too_many_channels, unavailable; 1.1's
        // unauthorized after forbidden (see the module docs).
        let names: Vec<&str> = ErrorCode::ALL.iter().map(|c| c.as_str()).collect();
        assert_eq!(
            names,
            [
                "rate_limited",
                "bad_request",
                "unknown_type",
                "invalid_channel",
                "forbidden",
                "unauthorized",
                "not_joined",
                "too_many_channels",
                "unavailable"
            ]
        );
        for pair in ErrorCode::ALL.windows(2) {
            assert!(
                pair[0] < pair[1],
                "{:?} must win over {:?}",
                pair[0],
                pair[1]
            );
        }
        let applicable = [
            ErrorCode::NotJoined,
            ErrorCode::Forbidden,
            ErrorCode::Unavailable,
        ];
        assert_eq!(applicable.iter().min(), Some(&ErrorCode::Forbidden));
    }

    #[test]
    fn display_names_the_code() {
        let e = RequestError::new(ErrorCode::NotJoined, "join doc:42 first");
        assert_eq!(e.to_string(), "not_joined: join doc:42 first");
    }
}
