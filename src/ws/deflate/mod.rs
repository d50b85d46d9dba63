//! permessage-deflate (RFC 7692) without per-connection compression state.
//! Pure: no IO, no clock.
//!
//! # Contract
//!
//! - [`negotiate`] reads the client's `Sec-WebSocket-Extensions` and picks
//!   the first permessage-deflate offer it can honour; the answer always
//!   carries `server_no_context_takeover` and `client_no_context_takeover`
//!   (PROTOCOL.md section 12). A header that breaks the grammar is
//!   [`Malformed`] (400); any other offer we cannot honour is declined.
//! - Because neither side keeps a window between messages, a message
//!   compresses to the same bytes for every recipient with the same window
//!   size: a [`Broadcast`] is compressed at most once per window size, by
//!   whichever recipient needs it first, and shared by reference count.
//! - A worker owns one [`Deflater`] (a compressor per window size in use)
//!   and one [`Inflater`], reused for every message of every connection. A
//!   connection holds only its negotiated [`WindowBits`]; an idle one holds
//!   no compression memory at all.
//! - Inflating checks the inflated size against the message limit while
//!   inflating (1009 before more than the limit is produced).
//!
//! # Layout
//!
//! | file | concern |
//! | --- | --- |
//! | `offer.rs` | header grammar, offers, acceptance, the answer (RFC 7692 5, 7) |
//! | `deflater.rs` | one message into one RSV1 frame (7.2.1) |
//! | `inflater.rs` | one message out, under the limit (7.2.2) |
//! | `shared.rs` | [`Broadcast`]: a plain frame and its lazily built twins |
//!
//! The codec's side (RSV1 rules, compressed messages handed over whole) is
//! in `codec.rs`. The backend is `flate2` over `zlib-rs`: it is the faster of
//! the two pure-Rust backends on our payloads and the only one of them that
//! can compress with a window smaller than 32 KiB (see docs/compression.md).

mod deflater;
mod inflater;
mod offer;
mod shared;

pub use deflater::{Deflater, TAIL};
pub use inflater::Inflater;
pub use offer::{accept, negotiate, parse, Agreed, Malformed, Offer};
pub use shared::Broadcast;

/// A worker's permessage-deflate machinery, lent to its connections for
/// each call: nothing in it belongs to a connection.
#[derive(Debug, Default)]
pub struct Codec {
    pub deflater: Deflater,
    pub inflater: Inflater,
}

/// Window sizes 9 to 15: one compressor and one twin per size.
pub const WINDOW_SIZES: usize = 7;

/// The LZ77 window of our compressor for one connection, 2^9 to 2^15 bytes
/// (RFC 7692 7.1.2.1; an offered 8 is compressed with 9, see
/// [`Agreed::window`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct WindowBits(u8);

impl WindowBits {
    /// `bits` clamped to 9..=15.
    pub fn new(bits: u8) -> Self {
        WindowBits(bits.clamp(9, 15))
    }

    pub fn get(self) -> u8 {
        self.0
    }

    /// 0 for 9 bits up to 6 for 15.
    fn index(self) -> usize {
        usize::from(self.0 - 9)
    }
}

#[cfg(test)]
mod tests;
