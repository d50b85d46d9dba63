//! RESP3 on the wire: commands out, replies and push frames in.
//!
//! Commands are RESP arrays of blob strings, the only form a client sends
//! (RESP3 spec, "Client handshake" and "Sending commands to a Redis server").
//! Decoding finds the frame boundary with [`Scanner`](super::scan) and then
//! hands exactly that frame to `redis-protocol`'s
//! `resp3::decode::complete::decode_bytes`, so every blob in a decoded
//! [`Value`] or [`Push`] is a zero-copy slice of the bytes read from the socket.
//!
//! A push frame (`>`) is out-of-band data: it never answers a command
//! (RESP3 spec, "Push type"). [`Frame`] keeps the two apart so the session can
//! match replies to commands in order while pub/sub messages interleave.

use std::fmt;

use bytes::{Bytes, BytesMut};
use redis_protocol::resp3::{decode::complete::decode_bytes, types::BytesFrame};

use super::scan::Scanner;
use super::{MAX_DEPTH, MAX_FRAME};

/// A reply value. RESP3 types that switchboard never asks for are folded:
/// a set arrives as an [`Array`](Value::Array), a verbatim string as a
/// [`Bulk`](Value::Bulk) without its `txt:` prefix, a big number as
/// [`Other`](Value::Other); attributes are dropped (the spec lets a client
/// ignore them).
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// `_`: a missing key or field.
    Nil,
    /// `+OK`, the most common simple string, spelled out so callers need not
    /// compare bytes.
    Ok,
    /// Any other simple string (`+PONG`, `+QUEUED`).
    Simple(Bytes),
    /// A simple (`-`) or blob (`!`) error, starting with its code (`ERR`,
    /// `WRONGPASS`, `NOPERM`...).
    Error(Bytes),
    /// `:`, a signed 64-bit number.
    Int(i64),
    /// `$` blob string, or `=` verbatim string without its format prefix.
    Bulk(Bytes),
    /// `*` array or `~` set.
    Array(Vec<Value>),
    /// `%` map, pairs in wire order.
    Map(Vec<(Value, Value)>),
    /// `,` double, including `inf`, `-inf` and `nan`.
    Double(f64),
    /// `#t` or `#f`.
    Bool(bool),
    /// A big number, or a push frame nested inside a reply.
    Other,
}

/// Which pub/sub family a push belongs to: `SUBSCRIBE` channels, `PSUBSCRIBE`
/// patterns, or `SSUBSCRIBE` shard channels (Redis 7).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Subscription {
    /// `SUBSCRIBE` / `UNSUBSCRIBE`, pushes `subscribe`, `unsubscribe`, `message`.
    Channel,
    /// `PSUBSCRIBE` / `PUNSUBSCRIBE`, pushes `psubscribe`, `punsubscribe`, `pmessage`.
    Pattern,
    /// `SSUBSCRIBE` / `SUNSUBSCRIBE`, pushes `ssubscribe`, `sunsubscribe`, `smessage`.
    Shard,
}

impl Subscription {
    /// The command that subscribes (`true`) or unsubscribes (`false`).
    pub fn command(self, subscribe: bool) -> &'static [u8] {
        match (self, subscribe) {
            (Self::Channel, true) => b"SUBSCRIBE",
            (Self::Channel, false) => b"UNSUBSCRIBE",
            (Self::Pattern, true) => b"PSUBSCRIBE",
            (Self::Pattern, false) => b"PUNSUBSCRIBE",
            (Self::Shard, true) => b"SSUBSCRIBE",
            (Self::Shard, false) => b"SUNSUBSCRIBE",
        }
    }

    /// The push kind that confirms [`command`](Self::command).
    pub fn confirmation(self, subscribe: bool) -> &'static [u8] {
        match (self, subscribe) {
            (Self::Channel, true) => b"subscribe",
            (Self::Channel, false) => b"unsubscribe",
            (Self::Pattern, true) => b"psubscribe",
            (Self::Pattern, false) => b"punsubscribe",
            (Self::Shard, true) => b"ssubscribe",
            (Self::Shard, false) => b"sunsubscribe",
        }
    }

    fn from_confirmation(kind: &[u8]) -> Option<(Self, bool)> {
        [Self::Channel, Self::Pattern, Self::Shard]
            .into_iter()
            .flat_map(|s| [(s, true), (s, false)])
            .find(|&(s, sub)| s.confirmation(sub) == kind)
    }
}

/// An out-of-band push frame, as Redis 7 sends them to a RESP3 client.
#[derive(Debug, Clone, PartialEq)]
pub enum Push {
    /// `>3 message <channel> <payload>`.
    Message { channel: Bytes, payload: Bytes },
    /// `>4 pmessage <pattern> <channel> <payload>`.
    PMessage {
        pattern: Bytes,
        channel: Bytes,
        payload: Bytes,
    },
    /// `>3 smessage <channel> <payload>`.
    SMessage { channel: Bytes, payload: Bytes },
    /// `>3 subscribe|psubscribe|ssubscribe <channel or pattern> <count>`:
    /// `count` is how many subscriptions of that family the connection now has.
    Subscribed {
        kind: Subscription,
        channel: Bytes,
        count: i64,
    },
    /// `>3 unsubscribe|punsubscribe|sunsubscribe <channel or pattern> <count>`.
    Unsubscribed {
        kind: Subscription,
        channel: Bytes,
        count: i64,
    },
    /// Any other push (client-side caching `invalidate`, an unsubscribe-all
    /// with no channel...), as the array of its elements.
    Other(Value),
}

/// One decoded frame.
#[derive(Debug, Clone, PartialEq)]
pub enum Frame {
    /// The answer to the oldest command still waiting for one.
    Reply(Value),
    /// Out-of-band data, answering no command.
    Push(Push),
}

/// Why bytes from Redis could not be decoded. After any of these the
/// connection's byte stream has no known frame boundary left: close it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RespError {
    /// A frame starts with a byte that is no RESP3 type (or is a streamed
    /// type, or `H`, the inline `HELLO` only a client sends).
    InvalidType { byte: u8 },
    /// A length or count that is not plain decimal digits (`$-1`, `*?`...).
    InvalidLength,
    /// A blob string not followed by `\r\n`.
    MissingCrlf,
    /// Aggregates nested deeper than `max`.
    TooDeep { max: usize },
    /// A frame that is, or declares to be, `size` bytes, over `max`.
    FrameTooLarge { size: u64, max: usize },
    /// A frame with a valid shape that `redis-protocol` refused (a number that
    /// does not parse, an aggregate as a map key...), with its reason.
    Protocol(String),
}

impl fmt::Display for RespError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::InvalidType { byte } => write!(f, "invalid RESP3 type byte 0x{byte:02x}"),
            Self::InvalidLength => f.write_str("invalid RESP3 length"),
            Self::MissingCrlf => f.write_str("blob string not terminated by CRLF"),
            Self::TooDeep { max } => write!(f, "RESP3 frame nested deeper than {max}"),
            Self::FrameTooLarge { size, max } => {
                write!(f, "RESP3 frame of {size} bytes is over the limit of {max}")
            }
            Self::Protocol(reason) => write!(f, "invalid RESP3 frame: {reason}"),
        }
    }
}

impl std::error::Error for RespError {}

/// Decodes frames from one growing buffer, remembering how far into an
/// incomplete frame it got so a large reply arriving in many reads is walked
/// once, not once per read. Use one `Decoder` per buffer; after an error,
/// drop both.
#[derive(Debug, Clone)]
pub struct Decoder {
    scanner: Scanner,
}

impl Default for Decoder {
    fn default() -> Self {
        Self::new(MAX_FRAME)
    }
}

impl Decoder {
    /// A decoder refusing frames over `max_frame` bytes, checked as soon as a
    /// length is declared and before the bytes are buffered.
    pub fn new(max_frame: usize) -> Self {
        Self {
            scanner: Scanner::new(max_frame, MAX_DEPTH),
        }
    }

    /// Decodes one frame from the front of `buf`, advancing it.
    ///
    /// Returns `Ok(None)` if `buf` does not yet hold a whole frame, and then
    /// consumes nothing. On error the buffer's contents are unspecified.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Frame>, RespError> {
        let len = match self.scanner.scan(buf) {
            Ok(Some(len)) => len,
            Ok(None) => return Ok(None),
            Err(e) => {
                self.scanner.reset();
                return Err(e);
            }
        };
        self.scanner.reset();
        let bytes = buf.split_to(len).freeze();
        match decode_bytes(&bytes) {
            Ok(Some((frame, used))) if used == len => Ok(Some(to_frame(frame))),
            Ok(_) => Err(RespError::Protocol(format!(
                "frame boundary is not at {len}"
            ))),
            Err(e) => Err(RespError::Protocol(e.details().to_owned())),
        }
    }
}

/// Decodes one frame from the front of `buf`, advancing it; frames over
/// [`MAX_FRAME`] are refused. `Ok(None)` = incomplete, nothing consumed.
///
/// Stateless: a caller feeding one buffer read after read should keep a
/// [`Decoder`], which does not walk the same bytes again.
pub fn decode(buf: &mut BytesMut) -> Result<Option<Frame>, RespError> {
    Decoder::default().decode(buf)
}

fn to_frame(frame: BytesFrame) -> Frame {
    match frame {
        BytesFrame::Push { data, .. } => {
            Frame::Push(classify(data.into_iter().map(to_value).collect()))
        }
        other => Frame::Reply(to_value(other)),
    }
}

/// Recursion is bounded by the scanner's depth limit.
fn to_value(frame: BytesFrame) -> Value {
    match frame {
        BytesFrame::BlobString { data, .. } | BytesFrame::VerbatimString { data, .. } => {
            Value::Bulk(data)
        }
        BytesFrame::SimpleString { data, .. } if data == "OK" => Value::Ok,
        BytesFrame::SimpleString { data, .. } => Value::Simple(data),
        BytesFrame::BlobError { data, .. } => Value::Error(data),
        BytesFrame::SimpleError { data, .. } => Value::Error(data.into()),
        BytesFrame::Number { data, .. } => Value::Int(data),
        BytesFrame::Double { data, .. } => Value::Double(data),
        BytesFrame::Boolean { data, .. } => Value::Bool(data),
        BytesFrame::Null => Value::Nil,
        BytesFrame::Array { data, .. } => Value::Array(data.into_iter().map(to_value).collect()),
        BytesFrame::Set { data, .. } => Value::Array(data.into_iter().map(to_value).collect()),
        // redis-protocol 6 fills its (index-)map popping pairs off the end of
        // the frame, so it holds them in reverse wire order; a test pins this.
        BytesFrame::Map { data, .. } => Value::Map(
            data.into_iter()
                .rev()
                .map(|(k, v)| (to_value(k), to_value(v)))
                .collect(),
        ),
        BytesFrame::BigNumber { .. }
        | BytesFrame::Push { .. }
        | BytesFrame::Hello { .. }
        | BytesFrame::ChunkedString(_) => Value::Other,
    }
}

fn classify(items: Vec<Value>) -> Push {
    use Value::{Bulk, Int, Simple};
    let kind = match items.first() {
        Some(Bulk(kind) | Simple(kind)) => kind.clone(),
        _ => return Push::Other(Value::Array(items)),
    };
    match (&kind[..], &items[1..]) {
        (b"message", [Bulk(channel), Bulk(payload)]) => Push::Message {
            channel: channel.clone(),
            payload: payload.clone(),
        },
        (b"smessage", [Bulk(channel), Bulk(payload)]) => Push::SMessage {
            channel: channel.clone(),
            payload: payload.clone(),
        },
        (b"pmessage", [Bulk(pattern), Bulk(channel), Bulk(payload)]) => Push::PMessage {
            pattern: pattern.clone(),
            channel: channel.clone(),
            payload: payload.clone(),
        },
        (name, [Bulk(channel), Int(count)]) => match Subscription::from_confirmation(name) {
            Some((kind, true)) => Push::Subscribed {
                kind,
                channel: channel.clone(),
                count: *count,
            },
            Some((kind, false)) => Push::Unsubscribed {
                kind,
                channel: channel.clone(),
                count: *count,
            },
            None => Push::Other(Value::Array(items)),
        },
        _ => Push::Other(Value::Array(items)),
    }
}

/// Bytes [`encode_command`] appends for `args`.
pub fn command_len(args: &[&[u8]]) -> usize {
    let blobs: usize = args.iter().map(|a| header_len(a.len()) + a.len() + 2).sum();
    header_len(args.len()) + blobs
}

/// Appends `*N\r\n$len\r\narg\r\n...` to `dst`, reserving once.
pub fn encode_command(args: &[&[u8]], dst: &mut BytesMut) {
    dst.reserve(command_len(args));
    put_header(dst, b'*', args.len() as u64);
    for arg in args {
        put_blob(dst, b'$', arg);
    }
}

/// Appends `value` in RESP3, for tests and stand-in servers. `Other` has no
/// wire form of its own and is written as null; a simple string holding
/// `\r\n` is written as a blob string; an error that is not one UTF-8 line
/// as a blob error.
pub fn encode_value(value: &Value, dst: &mut BytesMut) {
    match value {
        Value::Nil | Value::Other => dst.extend_from_slice(b"_\r\n"),
        Value::Ok => dst.extend_from_slice(b"+OK\r\n"),
        Value::Simple(s) if !contains_crlf(s) => put_line(dst, b'+', s),
        Value::Simple(s) | Value::Bulk(s) => put_blob(dst, b'$', s),
        Value::Error(e) if !contains_crlf(e) && std::str::from_utf8(e).is_ok() => {
            put_line(dst, b'-', e)
        }
        Value::Error(e) => put_blob(dst, b'!', e),
        Value::Int(n) => put_line(dst, b':', n.to_string().as_bytes()),
        Value::Double(d) if d.is_nan() => dst.extend_from_slice(b",nan\r\n"),
        Value::Double(d) => put_line(dst, b',', d.to_string().as_bytes()),
        Value::Bool(b) => dst.extend_from_slice(if *b { b"#t\r\n" } else { b"#f\r\n" }),
        Value::Array(items) => {
            put_header(dst, b'*', items.len() as u64);
            items.iter().for_each(|v| encode_value(v, dst));
        }
        Value::Map(pairs) => {
            put_header(dst, b'%', pairs.len() as u64);
            for (k, v) in pairs {
                encode_value(k, dst);
                encode_value(v, dst);
            }
        }
    }
}

/// Appends `frame` in RESP3, for tests and stand-in servers. A
/// [`Push::Other`] holding an array is written as a push of its elements.
pub fn encode_frame(frame: &Frame, dst: &mut BytesMut) {
    let push = match frame {
        Frame::Reply(value) => return encode_value(value, dst),
        Frame::Push(push) => push,
    };
    let blobs = |dst: &mut BytesMut, kind: &[u8], blobs: &[&Bytes]| {
        put_header(dst, b'>', 1 + blobs.len() as u64);
        put_blob(dst, b'$', kind);
        blobs.iter().for_each(|b| put_blob(dst, b'$', b));
    };
    let confirm = |dst: &mut BytesMut, kind: &[u8], channel: &Bytes, count: i64| {
        put_header(dst, b'>', 3);
        put_blob(dst, b'$', kind);
        put_blob(dst, b'$', channel);
        put_line(dst, b':', count.to_string().as_bytes());
    };
    match push {
        Push::Message { channel, payload } => blobs(dst, b"message", &[channel, payload]),
        Push::SMessage { channel, payload } => blobs(dst, b"smessage", &[channel, payload]),
        Push::PMessage {
            pattern,
            channel,
            payload,
        } => {
            blobs(dst, b"pmessage", &[pattern, channel, payload]);
        }
        Push::Subscribed {
            kind,
            channel,
            count,
        } => confirm(dst, kind.confirmation(true), channel, *count),
        Push::Unsubscribed {
            kind,
            channel,
            count,
        } => confirm(dst, kind.confirmation(false), channel, *count),
        Push::Other(Value::Array(items)) => {
            put_header(dst, b'>', items.len() as u64);
            items.iter().for_each(|v| encode_value(v, dst));
        }
        Push::Other(value) => {
            put_header(dst, b'>', 1);
            encode_value(value, dst);
        }
    }
}

fn contains_crlf(s: &[u8]) -> bool {
    s.windows(2).any(|w| w == b"\r\n")
}

fn header_len(n: usize) -> usize {
    1 + decimal_len(n as u64) + 2
}

fn decimal_len(mut n: u64) -> usize {
    let mut len = 1;
    while n >= 10 {
        n /= 10;
        len += 1;
    }
    len
}

fn put_header(dst: &mut BytesMut, kind: u8, n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    let mut n = n;
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    put_line(dst, kind, &digits[i..]);
}

fn put_line(dst: &mut BytesMut, kind: u8, line: &[u8]) {
    dst.extend_from_slice(&[kind]);
    dst.extend_from_slice(line);
    dst.extend_from_slice(b"\r\n");
}

fn put_blob(dst: &mut BytesMut, kind: u8, blob: &[u8]) {
    put_header(dst, kind, blob.len() as u64);
    dst.extend_from_slice(blob);
    dst.extend_from_slice(b"\r\n");
}

#[cfg(test)]
#[path = "codec_tests.rs"]
mod tests;
