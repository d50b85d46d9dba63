//! Client requests (PROTOCOL.md §3, §5, §7) and the body of `POST
//! /api/publish` (§9).
//!
//! [`parse`] reads one text message into an [`Envelope`]: the request's `id`
//! (when valid) and either a [`Request`] or the [`RequestError`] to answer.
//! It never fails as a whole and never panics, so the worker always has
//! something to reply with.
//!
//! # How a message is read
//!
//! The message is deserialized into one borrowed [`RawValue`] per field we
//! know (`type`, `id`, `channel`, `action`, `since`, `token`); each is then typed by
//! hand. No `serde_json::Value` is built, and the `action` stays a slice of
//! the input, passed on byte for byte (§4).
//!
//! # Which error wins
//!
//! §7: `bad_request` beats `unknown_type`, which beats `invalid_channel`. So
//! every check that yields `bad_request` runs first, whatever field it is on:
//!
//! 1. not UTF-8, not JSON, not an object → `bad_request`, no `id`;
//! 2. an `id` that is not an unsigned integer up to 2^53-1 (`null` included:
//!    §3 allows no other `id`), or two `id`s → `bad_request`, no `id`,
//!    whatever the type;
//! 3. nesting deeper than [`MAX_NESTING`], `type` missing, repeated or not a
//!    string → `bad_request`;
//! 4. a string `type` not in §3 → `unknown_type` (its other fields are not
//!    looked at: we cannot know what they should be);
//! 5. a field the type needs missing, repeated or ill-typed (`channel` not a
//!    string, no `action`, a `since` that is not
//!    `{"offset":N,"epoch":"..."}`, a `refresh` without a string `token`)
//!    → `bad_request`;
//! 6. a `channel` string that is not a valid name → `invalid_channel`.
//!
//! From step 3 on, the error carries the `id` (§3: "an error reply echoes the
//! request's `id` whenever that `id` was valid").
//!
//! # Choices where the page is silent
//!
//! - **`null`** is a value of the wrong type for `id`, `type`, `channel` and
//!   `since`, not the same as leaving the field out. Only `action` takes it
//!   (§4: "`null` is a value like any other").
//! - **Duplicate keys**: a field the request uses (`type` and `id` always,
//!   then those of its type) that appears twice is `bad_request`. Guessing
//!   which copy the client meant would hide a client bug; fields the request
//!   does not use are ignored like any unknown field.
//! - **Nesting**: arrays and objects may nest [`MAX_NESTING`] levels, the
//!   request object included (the depth serde_json's own recursion limit
//!   accepts, so every receiver using serde_json defaults can decode the
//!   `user_action` it is sent). Deeper is `bad_request`.
//! - The `action` is checked against RFC 8259's grammar only: numbers of any
//!   size and `\uXXXX` escapes of lone surrogates pass through untouched.
//! - `since.offset` is any `u64`; `since.epoch` any string. Unknown fields
//!   inside `since` are ignored too.

use super::channel::valid_channel;
use super::error::{ErrorCode, RequestError};
use super::json::{as_str, as_uint, nesting_exceeds};
use serde::de::{self, Deserializer as _, MapAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;
use std::borrow::Cow;
use std::fmt;

/// The largest valid `id`: 2^53-1, the largest integer a JavaScript client
/// holds exactly (§3).
pub const MAX_ID: u64 = (1 << 53) - 1;

/// How deep arrays and objects may nest in a message, the request object
/// itself being level 1.
pub const MAX_NESTING: usize = 127;

/// The `since` of a `join_channel` (§5): the last offset and epoch the client
/// saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Since {
    pub offset: u64,
    pub epoch: String,
}

/// A well-formed client request of §3. Channel names are valid
/// ([`valid_channel`]); they borrow from the message unless they were written
/// with JSON escapes.
#[derive(Debug)]
pub enum Request<'a> {
    Join {
        channel: Cow<'a, str>,
        since: Option<Since>,
    },
    Leave {
        channel: Cow<'a, str>,
    },
    /// `action` is the exact bytes the client sent for the value (any JSON
    /// value, `null` included), a slice of the message.
    Action {
        channel: Cow<'a, str>,
        action: &'a RawValue,
    },
    Presence {
        channel: Cow<'a, str>,
    },
    Ping,
    /// `refresh` (§6, 1.1): a new JWT for the connection. Only its type is
    /// checked here (a string); verifying it is the authenticator's job.
    Refresh {
        token: Cow<'a, str>,
    },
}

impl Request<'_> {
    /// The request's `type` on the wire.
    pub fn type_name(&self) -> &'static str {
        match self {
            Request::Join { .. } => "join_channel",
            Request::Leave { .. } => "leave_channel",
            Request::Action { .. } => "user_action",
            Request::Presence { .. } => "presence",
            Request::Ping => "ping",
            Request::Refresh { .. } => "refresh",
        }
    }

    /// The channel the request is about, if any.
    pub fn channel(&self) -> Option<&str> {
        match self {
            Request::Join { channel, .. }
            | Request::Leave { channel }
            | Request::Action { channel, .. }
            | Request::Presence { channel } => Some(channel),
            Request::Ping | Request::Refresh { .. } => None,
        }
    }
}

/// One parsed message: its `id` and what it asks for.
#[derive(Debug)]
pub struct Envelope<'a> {
    /// The request's `id`, `Some` only when it was present and valid; every
    /// reply (errors included) echoes it.
    pub id: Option<u64>,
    pub request: Result<Request<'a>, RequestError>,
}

/// Parses one text message (§3). Never panics, never fails as a whole: the
/// error to answer is in [`Envelope::request`]. See the module docs for the
/// order of the checks.
pub fn parse(text: &[u8]) -> Envelope<'_> {
    let fields = match Fields::read(text) {
        Ok(fields) => fields,
        Err(err) => {
            return Envelope {
                id: None,
                request: Err(err),
            }
        }
    };
    match fields.id() {
        Ok(id) => Envelope {
            id,
            request: fields.request(),
        },
        Err(err) => Envelope {
            id: None,
            request: Err(err),
        },
    }
}

/// The body of `POST /api/publish` (§9): `{"channel":"doc:42","action":...}`.
#[derive(Debug)]
pub struct Publish<'a> {
    pub channel: Cow<'a, str>,
    pub action: &'a RawValue,
}

/// Parses a publish body with the same rules as a `user_action` request
/// (`type` and `id` are unknown fields here and ignored): `bad_request` for a
/// malformed body or a missing or ill-typed field, then `invalid_channel`.
pub fn parse_publish(body: &[u8]) -> Result<Publish<'_>, RequestError> {
    let fields = Fields::read(body)?;
    fields.check_nesting()?;
    let channel = fields.channel()?;
    let action = fields.action()?;
    Ok(Publish {
        channel: checked_channel(channel)?,
        action,
    })
}

/// The fields of a request object we know, each as the raw text the client
/// sent; the index is `Key as usize`.
struct Fields<'a> {
    values: [Option<&'a RawValue>; 6],
    repeated: [bool; 6],
    too_deep: bool,
}

#[derive(Clone, Copy)]
enum Key {
    Type,
    Id,
    Channel,
    Action,
    Since,
    Token,
}

const KEY_NAMES: [&str; 6] = ["type", "id", "channel", "action", "since", "token"];

impl<'a> Fields<'a> {
    /// Reads the message as one JSON object. Every error is `bad_request`.
    fn read(text: &'a [u8]) -> Result<Self, RequestError> {
        let text = std::str::from_utf8(text)
            .map_err(|_| RequestError::bad_request("message is not UTF-8"))?;
        let mut de = serde_json::Deserializer::from_str(text);
        let fields = de
            .deserialize_map(FieldsVisitor)
            .and_then(|fields| de.end().map(|()| fields))
            .map_err(|err| match err.classify() {
                serde_json::error::Category::Data => {
                    RequestError::bad_request("message is not a JSON object")
                }
                _ => RequestError::bad_request(format!("message is not JSON: {err}")),
            })?;
        Ok(fields)
    }

    /// `bad_request` when a value nests deeper than [`MAX_NESTING`].
    fn check_nesting(&self) -> Result<(), RequestError> {
        if self.too_deep {
            return Err(RequestError::bad_request(format!(
                "message nests arrays and objects deeper than {MAX_NESTING} levels"
            )));
        }
        Ok(())
    }

    /// The raw value of `key`, `None` when absent. A repeated key is
    /// `bad_request` (see "Duplicate keys" in the module docs).
    fn get(&self, key: Key) -> Result<Option<&'a RawValue>, RequestError> {
        let i = key as usize;
        if self.repeated[i] {
            return Err(RequestError::bad_request(format!(
                "field `{}` appears more than once",
                KEY_NAMES[i]
            )));
        }
        Ok(self.values[i])
    }

    fn id(&self) -> Result<Option<u64>, RequestError> {
        let Some(raw) = self.get(Key::Id)? else {
            return Ok(None);
        };
        match as_uint(raw) {
            Some(id) if id <= MAX_ID => Ok(Some(id)),
            _ => Err(RequestError::bad_request(
                "`id` must be an unsigned integer up to 2^53-1",
            )),
        }
    }

    fn request(&self) -> Result<Request<'a>, RequestError> {
        self.check_nesting()?;
        let ty = self
            .get(Key::Type)?
            .ok_or_else(|| RequestError::bad_request("missing field `type`"))?;
        let ty = as_str(ty).ok_or_else(|| RequestError::bad_request("`type` must be a string"))?;
        match &*ty {
            "join_channel" => {
                let channel = self.channel()?;
                let since = self.since()?;
                Ok(Request::Join {
                    channel: checked_channel(channel)?,
                    since,
                })
            }
            "leave_channel" => Ok(Request::Leave {
                channel: checked_channel(self.channel()?)?,
            }),
            "user_action" => {
                let channel = self.channel()?;
                let action = self.action()?;
                Ok(Request::Action {
                    channel: checked_channel(channel)?,
                    action,
                })
            }
            "presence" => Ok(Request::Presence {
                channel: checked_channel(self.channel()?)?,
            }),
            "ping" => Ok(Request::Ping),
            "refresh" => {
                let raw = self
                    .get(Key::Token)?
                    .ok_or_else(|| RequestError::bad_request("missing field `token`"))?;
                let token = as_str(raw)
                    .ok_or_else(|| RequestError::bad_request("`token` must be a string"))?;
                Ok(Request::Refresh { token })
            }
            other => Err(RequestError::new(
                ErrorCode::UnknownType,
                format!("unknown type `{}`", excerpt(other)),
            )),
        }
    }

    /// The `channel` string, not yet checked against the alphabet.
    fn channel(&self) -> Result<Cow<'a, str>, RequestError> {
        let raw = self
            .get(Key::Channel)?
            .ok_or_else(|| RequestError::bad_request("missing field `channel`"))?;
        as_str(raw).ok_or_else(|| RequestError::bad_request("`channel` must be a string"))
    }

    fn action(&self) -> Result<&'a RawValue, RequestError> {
        self.get(Key::Action)?
            .ok_or_else(|| RequestError::bad_request("missing field `action`"))
    }

    fn since(&self) -> Result<Option<Since>, RequestError> {
        let Some(raw) = self.get(Key::Since)? else {
            return Ok(None);
        };
        let ill_typed =
            || RequestError::bad_request(r#"`since` must be {"offset":N,"epoch":"..."}"#);
        // A derived struct also accepts `[N,"..."]`; only an object is asked for.
        if !raw.get().starts_with('{') {
            return Err(ill_typed());
        }
        let since: RawSince<'_> = serde_json::from_str(raw.get()).map_err(|_| ill_typed())?;
        let offset = since.offset.and_then(as_uint).ok_or_else(ill_typed)?;
        let epoch = since.epoch.and_then(as_str).ok_or_else(ill_typed)?;
        Ok(Some(Since {
            offset,
            epoch: epoch.into_owned(),
        }))
    }
}

/// `since` as sent. serde's derive refuses duplicate fields and ignores
/// unknown ones, as the request object does; `null` reads as absent, which
/// is refused all the same.
#[derive(Deserialize)]
struct RawSince<'a> {
    #[serde(borrow)]
    offset: Option<&'a RawValue>,
    #[serde(borrow)]
    epoch: Option<&'a RawValue>,
}

fn checked_channel(channel: Cow<'_, str>) -> Result<Cow<'_, str>, RequestError> {
    if valid_channel(&channel) {
        Ok(channel)
    } else {
        Err(RequestError::new(
            ErrorCode::InvalidChannel,
            format!(
                "invalid channel name `{}`: 1-200 bytes of A-Z a-z 0-9 _ - : . @ = /",
                excerpt(&channel)
            ),
        ))
    }
}

/// At most the first 64 bytes of `s`, cut at a character boundary, so that a
/// client cannot make an error reply as large as its request.
fn excerpt(s: &str) -> &str {
    let mut end = s.len().min(64);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s.get(..end).unwrap_or_default()
}

/// Collects the known fields of the request object.
struct FieldsVisitor;

impl<'de> Visitor<'de> for FieldsVisitor {
    type Value = Fields<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut fields = Fields {
            values: [None; 6],
            repeated: [false; 6],
            too_deep: false,
        };
        while let Some(key) = map.next_key::<KeyName>()? {
            // Unknown fields are read as raw values too (a borrowed slice,
            // no allocation) so that their nesting is bounded like the rest.
            let value: &'de RawValue = map.next_value()?;
            fields.too_deep |= nesting_exceeds(value.get(), MAX_NESTING - 1);
            if let KeyName(Some(key)) = key {
                let i = key as usize;
                if fields.values[i].replace(value).is_some() {
                    fields.repeated[i] = true;
                }
            }
        }
        Ok(fields)
    }
}

/// An object key: one of ours, or `None` for any other.
struct KeyName(Option<Key>);

impl<'de> Deserialize<'de> for KeyName {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_identifier(KeyNameVisitor)
    }
}

struct KeyNameVisitor;

impl Visitor<'_> for KeyNameVisitor {
    type Value = KeyName;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a field name")
    }

    fn visit_str<E: de::Error>(self, name: &str) -> Result<KeyName, E> {
        Ok(KeyName(match name {
            "type" => Some(Key::Type),
            "id" => Some(Key::Id),
            "channel" => Some(Key::Channel),
            "action" => Some(Key::Action),
            "since" => Some(Key::Since),
            "token" => Some(Key::Token),
            _ => None,
        }))
    }
}

#[cfg(test)]
#[path = "client_tests.rs"]
mod tests;
