//! RFC 6455 frames: decode, reassemble, encode. Pure: no IO, no clock.
//!
//! The server side of switchboard reads client frames with a
//! [`Decoder`] in [`Role::Server`] and writes unmasked frames with
//! [`encode_frame`], [`server_frame`], [`text_frame_with`] and
//! [`close_frame`].
//!
//! # Contract
//!
//! - [`Decoder::decode`] takes the unread front of the caller's buffer and
//!   returns `Ok((0, None))` while a whole frame is not there yet,
//!   consuming and modifying nothing (the house rule for partial input).
//! - Every rule of RFC 6455 sections 5.1-5.7, 7.4 and 8.1 is checked and a
//!   violation is a [`ProtocolError`] that knows its close code (1002, 1007
//!   for bad UTF-8, 1009 for a message over the limit). RSV2-3 must be 0;
//!   RSV1 only starts a compressed message where permessage-deflate was
//!   negotiated ([`deflate`]).
//! - The size limit applies to the reassembled message and is checked on the
//!   header, before anything is allocated or awaited.
//! - Unfragmented messages are returned borrowing the input (zero copy);
//!   fragmented ones are reassembled inside the decoder.
//!
//! # Layout
//!
//! | file | concern |
//! | --- | --- |
//! | `frame.rs` | header parse and write, opcodes, role (5.2) |
//! | `mask.rs` | masking, fast and plain (5.3) |
//! | `utf8.rs` | UTF-8 validation across fragments (8.1) |
//! | `close.rs` | close payloads and codes (5.5.1, 7.4) |
//! | `codec.rs` | the [`Decoder`]: state, limits, reassembly (5.4) |
//! | `encode.rs` | whole frames and the encode-once `Bytes` builders |
//! | `error.rs` | [`ProtocolError`] |
//! | `deflate/` | permessage-deflate: offers, compress once, inflate (RFC 7692) |

mod close;
mod codec;
pub mod deflate;
mod encode;
mod error;
mod frame;
mod mask;
mod utf8;

#[cfg(test)]
mod proptests;

pub use close::{close_code, is_valid_close_code, CloseFrame, MAX_CLOSE_REASON};
pub use codec::{Decoder, Message};
pub use encode::{close_frame, encode_client_frame, encode_frame, server_frame, text_frame_with};
pub use error::ProtocolError;
pub use frame::{OpCode, Role, MAX_CONTROL_PAYLOAD};
pub use mask::{apply_mask, apply_mask_plain};
