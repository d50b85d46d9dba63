//! The shape of every server message (PROTOCOL.md §1 `welcome`, §3 replies,
//! §4 events, §5 `resync`, §6 `refreshed`, §7 `error`), as one table.
//!
//! The encoders in [`server`](super::server) write these messages;
//! [`check_server_message`] reads one back and says whether it has the
//! fields its `type` needs, each of the right JSON type, and no others. It is
//! the reader's side of the contract: the tests run every encoder's output
//! and every server example of `docs/protocol.md` through it, so the page,
//! the encoders and this table cannot drift apart. A client written in Rust
//! may use it too, to refuse what it does not understand.
//!
//! Strict on purpose: a field this table does not list is an error, because
//! a documented example with an invented field is exactly the drift the
//! check is there to catch. (A client should still ignore unknown fields:
//! later versions of the protocol may add some.)

use super::channel::valid_channel;
use super::error::ErrorCode;
use serde_json::{Map, Value};
use std::fmt;

/// What a field's value must be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Any string.
    Str,
    /// A valid channel name (§7's alphabet).
    Channel,
    /// An integer from 0 to 2^64-1.
    UInt,
    Bool,
    /// Any JSON value, `null` included (`action`, `info`).
    Json,
    /// A string or `null` (`user`/`conn` of a `user_action` published over
    /// HTTP, §9).
    StrOrNull,
    /// `[{"user":..,"conn":..[,"info":..]},...]`.
    Members,
    /// One of [`ErrorCode`]'s wire names.
    Code,
    /// `"join"` or `"leave"`.
    Event,
}

impl Kind {
    fn describe(self) -> &'static str {
        match self {
            Kind::Str => "a string",
            Kind::Channel => "a valid channel name",
            Kind::UInt => "an unsigned integer",
            Kind::Bool => "true or false",
            Kind::Json => "any JSON value",
            Kind::StrOrNull => "a string or null",
            Kind::Members => r#"a list of {"user":..,"conn":..[,"info":..]}"#,
            Kind::Code => "an error code of §7",
            Kind::Event => r#""join" or "leave""#,
        }
    }

    fn admits(self, v: &Value) -> bool {
        match self {
            Kind::Str => v.is_string(),
            Kind::Channel => v.as_str().is_some_and(valid_channel),
            Kind::UInt => v.is_u64(),
            Kind::Bool => v.is_boolean(),
            Kind::Json => true,
            Kind::StrOrNull => v.is_string() || v.is_null(),
            Kind::Members => v.as_array().is_some_and(|ms| ms.iter().all(is_member)),
            Kind::Code => v
                .as_str()
                .is_some_and(|s| ErrorCode::ALL.iter().any(|c| c.as_str() == s)),
            Kind::Event => matches!(v.as_str(), Some("join" | "leave")),
        }
    }
}

fn is_member(v: &Value) -> bool {
    let Some(m) = v.as_object() else {
        return false;
    };
    m.get("user").is_some_and(Value::is_string)
        && m.get("conn").is_some_and(Value::is_string)
        && m.keys()
            .all(|k| matches!(k.as_str(), "user" | "conn" | "info"))
}

/// One field of a message: its name, its kind, and whether it must be there.
type Field = (&'static str, Kind, bool);

const REQ: bool = true;
const OPT: bool = false;

/// Every server message `type` and its fields (`type` itself aside).
const SHAPES: &[(&str, &[Field])] = &[
    (
        "welcome",
        &[
            ("conn", Kind::Str, REQ),
            ("user", Kind::Str, REQ),
            ("node", Kind::Str, REQ),
            ("heartbeat_s", Kind::UInt, REQ),
            ("max_message_bytes", Kind::UInt, REQ),
        ],
    ),
    (
        "joined",
        &[
            ("id", Kind::UInt, OPT),
            ("channel", Kind::Channel, REQ),
            ("members", Kind::Members, OPT),
            ("offset", Kind::UInt, OPT),
            ("epoch", Kind::Str, OPT),
            ("recovered", Kind::Bool, OPT),
            ("replayed", Kind::UInt, OPT),
        ],
    ),
    (
        "left",
        &[
            ("id", Kind::UInt, OPT),
            ("channel", Kind::Channel, REQ),
            ("reason", Kind::Code, OPT),
        ],
    ),
    (
        "ack",
        &[
            // §3: an `ack` is sent only to a request with an `id`.
            ("id", Kind::UInt, REQ),
            ("channel", Kind::Channel, REQ),
            ("offset", Kind::UInt, OPT),
        ],
    ),
    (
        "presence_state",
        &[
            ("id", Kind::UInt, OPT),
            ("channel", Kind::Channel, REQ),
            ("members", Kind::Members, REQ),
        ],
    ),
    ("pong", &[("id", Kind::UInt, OPT)]),
    (
        "refreshed",
        &[("id", Kind::UInt, OPT), ("exp", Kind::UInt, REQ)],
    ),
    (
        "error",
        &[
            ("id", Kind::UInt, OPT),
            ("code", Kind::Code, REQ),
            ("message", Kind::Str, REQ),
        ],
    ),
    (
        "user_action",
        &[
            ("channel", Kind::Channel, REQ),
            ("user", Kind::StrOrNull, REQ),
            ("conn", Kind::StrOrNull, REQ),
            ("info", Kind::Json, OPT),
            ("action", Kind::Json, REQ),
            ("offset", Kind::UInt, OPT),
        ],
    ),
    (
        "presence",
        &[
            ("channel", Kind::Channel, REQ),
            ("event", Kind::Event, REQ),
            ("user", Kind::Str, REQ),
            ("conn", Kind::Str, REQ),
            ("info", Kind::Json, OPT),
        ],
    ),
    ("resync", &[("channel", Kind::Channel, REQ)]),
];

/// Every server message `type`, in the order of PROTOCOL.md.
pub fn server_types() -> impl Iterator<Item = &'static str> {
    SHAPES.iter().map(|(ty, _)| *ty)
}

/// Why a text is not a well-formed server message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ShapeError {
    /// Not one JSON object.
    NotAnObject(String),
    /// No string `type`.
    NoType,
    /// A `type` no server message has.
    UnknownType(String),
    /// A field the type requires is absent.
    Missing {
        ty: &'static str,
        field: &'static str,
    },
    /// A field of the wrong JSON type (or value).
    IllTyped {
        ty: &'static str,
        field: &'static str,
        expected: &'static str,
    },
    /// A field the type does not have.
    Unknown { ty: &'static str, field: String },
    /// `offset` without `epoch` in a `joined`, or the reverse (§5: both
    /// describe the history, which a channel keeps or does not).
    Unpaired { ty: &'static str },
}

impl fmt::Display for ShapeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ShapeError::NotAnObject(why) => write!(f, "not one JSON object: {why}"),
            ShapeError::NoType => f.write_str("no string `type`"),
            ShapeError::UnknownType(ty) => write!(f, "no server message has type `{ty}`"),
            ShapeError::Missing { ty, field } => write!(f, "`{ty}` lacks `{field}`"),
            ShapeError::IllTyped {
                ty,
                field,
                expected,
            } => write!(f, "`{field}` of `{ty}` must be {expected}"),
            ShapeError::Unknown { ty, field } => write!(f, "`{ty}` has no field `{field}`"),
            ShapeError::Unpaired { ty } => {
                write!(f, "`{ty}` must carry both `offset` and `epoch`, or neither")
            }
        }
    }
}

impl std::error::Error for ShapeError {}

/// Checks that `text` is one server message with the fields of its `type`
/// (see the module docs) and returns that type.
pub fn check_server_message(text: &[u8]) -> Result<&'static str, ShapeError> {
    let value: Value =
        serde_json::from_slice(text).map_err(|e| ShapeError::NotAnObject(e.to_string()))?;
    let Value::Object(obj) = value else {
        return Err(ShapeError::NotAnObject("another JSON value".to_owned()));
    };
    let ty = obj
        .get("type")
        .and_then(Value::as_str)
        .ok_or(ShapeError::NoType)?;
    let (ty, fields) = SHAPES
        .iter()
        .find(|(name, _)| *name == ty)
        .ok_or_else(|| ShapeError::UnknownType(ty.to_owned()))?;
    check_fields(ty, fields, &obj)?;
    if *ty == "joined" && obj.contains_key("offset") != obj.contains_key("epoch") {
        return Err(ShapeError::Unpaired { ty });
    }
    Ok(ty)
}

fn check_fields(
    ty: &'static str,
    fields: &[Field],
    obj: &Map<String, Value>,
) -> Result<(), ShapeError> {
    for &(field, kind, required) in fields {
        match obj.get(field) {
            None if required => return Err(ShapeError::Missing { ty, field }),
            None => {}
            Some(v) if kind.admits(v) => {}
            Some(_) => {
                return Err(ShapeError::IllTyped {
                    ty,
                    field,
                    expected: kind.describe(),
                })
            }
        }
    }
    match obj
        .keys()
        .find(|k| *k != "type" && !fields.iter().any(|(name, _, _)| name == k))
    {
        Some(k) => Err(ShapeError::Unknown {
            ty,
            field: k.clone(),
        }),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::super::server::{self, History, Member, PresenceEvent};
    use super::*;

    fn check(f: impl FnOnce(&mut Vec<u8>)) -> Result<&'static str, ShapeError> {
        let mut out = Vec::new();
        f(&mut out);
        check_server_message(&out)
    }

    const ALICE: Member<'static> = Member {
        user: "alice",
        conn: "n1-7f3a",
        info: None,
    };

    type Encode = Box<dyn FnOnce(&mut Vec<u8>)>;

    /// Every encoder's output, with and without its optional fields, is a
    /// well-formed message of the type it claims.
    #[test]
    fn every_encoder_writes_its_shape() {
        let info: &serde_json::value::RawValue =
            serde_json::from_str(r#"{"name":"Alice"}"#).expect("JSON");
        let with_info = Member {
            info: Some(info),
            ..ALICE
        };
        let h = Some(History {
            offset: 17,
            epoch: "a1b2",
        });
        let cases: Vec<(&str, Encode)> = vec![
            (
                "welcome",
                Box::new(|o| server::welcome(o, "c", "u", "n", 25, 65536)),
            ),
            (
                "joined",
                Box::new(move |o| {
                    server::joined(o, Some(1), "d:1", Some(&[ALICE]), h, Some(true), Some(2))
                }),
            ),
            (
                "joined",
                Box::new(|o| server::joined(o, None, "d:1", None, None, None, None)),
            ),
            ("left", Box::new(|o| server::left(o, Some(2), "d:1"))),
            (
                "left",
                Box::new(|o| server::left_with_reason(o, "d:1", "forbidden")),
            ),
            (
                "ack",
                Box::new(|o| server::ack(o, Some(3), "d:1", Some(18))),
            ),
            (
                "presence_state",
                Box::new(move |o| server::presence_state(o, None, "d:1", &[with_info])),
            ),
            ("pong", Box::new(|o| server::pong(o, None))),
            ("refreshed", Box::new(|o| server::refreshed(o, Some(6), 1))),
            ("resync", Box::new(|o| server::resync(o, "d:1"))),
            (
                "user_action",
                Box::new(move |o| {
                    server::user_action(o, "d:1", None, None, Some(info), b"null", Some(1))
                }),
            ),
            (
                "presence",
                Box::new(move |o| server::presence(o, "d:1", PresenceEvent::Leave, with_info)),
            ),
        ];
        let mut seen: Vec<&str> = Vec::new();
        for (want, encode) in cases {
            assert_eq!(check(encode), Ok(want));
            seen.push(want);
        }
        for code in ErrorCode::ALL {
            assert_eq!(check(|o| server::error(o, Some(1), code, "m")), Ok("error"));
        }
        seen.push("error");
        for ty in server_types() {
            assert!(seen.contains(&ty), "no encoder case for `{ty}`");
        }
    }

    #[test]
    fn refuses_what_the_protocol_does_not_send() {
        let bad: [(&str, ShapeError); 9] = [
            ("[1]", ShapeError::NotAnObject("another JSON value".into())),
            (r#"{"id":1}"#, ShapeError::NoType),
            (
                r#"{"type":"hello"}"#,
                ShapeError::UnknownType("hello".into()),
            ),
            (
                r#"{"type":"ack","channel":"d:1"}"#,
                ShapeError::Missing {
                    ty: "ack",
                    field: "id",
                },
            ),
            (
                r#"{"type":"pong","id":-1}"#,
                ShapeError::IllTyped {
                    ty: "pong",
                    field: "id",
                    expected: "an unsigned integer",
                },
            ),
            (
                r#"{"type":"pong","id":1,"extra":true}"#,
                ShapeError::Unknown {
                    ty: "pong",
                    field: "extra".into(),
                },
            ),
            (
                r#"{"type":"joined","channel":"d:1","offset":3}"#,
                ShapeError::Unpaired { ty: "joined" },
            ),
            (
                r#"{"type":"error","code":"oops","message":""}"#,
                ShapeError::IllTyped {
                    ty: "error",
                    field: "code",
                    expected: "an error code of §7",
                },
            ),
            (
                r#"{"type":"resync","channel":"doc 42"}"#,
                ShapeError::IllTyped {
                    ty: "resync",
                    field: "channel",
                    expected: "a valid channel name",
                },
            ),
        ];
        for (text, want) in bad {
            assert_eq!(check_server_message(text.as_bytes()), Err(want), "{text}");
        }
        // Members must be objects with string user and conn.
        let members = r#"{"type":"presence_state","channel":"d:1","members":[{"user":"a"}]}"#;
        assert!(matches!(
            check_server_message(members.as_bytes()),
            Err(ShapeError::IllTyped {
                field: "members",
                ..
            })
        ));
    }
}
