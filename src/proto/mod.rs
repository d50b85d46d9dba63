//! The JSON messages of PROTOCOL.md, channel names and error codes.
//!
//! Pure: bytes in, values out, and values in, bytes appended out. No IO, no
//! clock, no state between calls.
//!
//! | file | PROTOCOL.md | what |
//! | --- | --- | --- |
//! | [`client`] | §3, §5 `since`, §6 `refresh`, §9 publish body | [`parse`] a client message into an [`Envelope`] |
//! | [`server`] | §1 `welcome`, §3, §4, §5, §6, §7 | encoders that append one JSON object to a `Vec<u8>` |
//! | [`shape`] | the same | [`check_server_message`]: the fields each server message has |
//! | [`error`] | §7 | [`ErrorCode`] in precedence order, [`RequestError`] |
//! | [`channel`] | §1, §5, §7 | [`valid_channel`], [`valid_user`], [`namespace`] |
//!
//! The choices made where PROTOCOL.md is silent are written down in the docs
//! of [`client`] (null fields, duplicate keys, nesting), [`server`] (absent,
//! never null) and [`channel`] (a name without `:` is in namespace `""`).
//!
//! # Example
//!
//! ```
//! use switchboard::proto::{self, Request};
//!
//! let env = proto::parse(br#"{"type":"user_action","id":7,"channel":"doc:42","action":{"x":3, "y":9}}"#);
//! assert_eq!(env.id, Some(7));
//! let Ok(Request::Action { channel, action }) = env.request else { panic!() };
//! assert_eq!(action.get(), r#"{"x":3, "y":9}"#); // byte for byte
//!
//! let mut out = Vec::new();
//! proto::user_action(&mut out, &channel, Some("alice"), Some("n1-7f3a"), None, action.get().as_bytes(), Some(18));
//! assert_eq!(
//!     out,
//!     br#"{"type":"user_action","channel":"doc:42","user":"alice","conn":"n1-7f3a","action":{"x":3, "y":9},"offset":18}"#
//! );
//! ```
//!
//! Every JSON example of `docs/protocol.md` is parsed by [`parse`] or checked
//! by [`check_server_message`] in this module's tests (`doc_tests.rs`).

pub mod channel;
pub mod client;
pub mod error;
mod json;
pub mod server;
pub mod shape;

#[cfg(test)]
mod doc_tests;

pub use channel::{namespace, valid_channel, valid_user, MAX_CHANNEL_BYTES, MAX_USER_BYTES};
pub use client::{parse, parse_publish, Envelope, Publish, Request, Since, MAX_ID, MAX_NESTING};
pub use error::{ErrorCode, RequestError};
pub use json::{write_string, write_u64};
/// The borrowed raw JSON type of `action` and `info`, re-exported so that
/// callers (and the fuzz targets) name the same type without depending on
/// serde_json themselves.
pub use serde_json::value::RawValue;
pub use server::{
    ack, error, joined, left, left_with_reason, pong, presence, presence_state, refreshed, resync,
    user_action, welcome, write_members, History, Member, PresenceEvent,
};
pub use shape::{check_server_message, ShapeError};
