//! HTTP/1.1 request heads (RFC 9112 §2-§3, RFC 9110 §7.6.1), parsed with httparse.
//!
//! [`parse_head`] takes the bytes read so far and returns `Ok(None)` until a
//! whole head (request line, header fields, empty line) is there; it keeps no
//! state, so the caller simply calls it again after the next read. On success
//! it also returns the head's length, so pipelined requests are parsed by
//! slicing past the head (and its body) and calling it again.
//!
//! Only the header fields switchboard acts on are kept, already interpreted:
//! the comma-separated lists (`Connection`, `Upgrade`,
//! `Sec-WebSocket-Protocol`) are split and matched case-insensitively, and
//! the body framing fields are checked for request smuggling shapes before
//! anything else sees them (RFC 9112 §6.1, §6.3).

use std::str;

/// Longest request head we accept, request line and fields included.
///
/// A head still incomplete at this size answers 431 (RFC 6585 §5); browsers
/// send well under 2 KiB, so this only bounds what a hostile client can make
/// the worker buffer per connection.
pub const MAX_HEAD: usize = 8192;

/// Most header fields in one head. More is answered like an oversized head
/// (431), which is what the status means.
const MAX_HEADERS: usize = 128;

/// Request method (RFC 9110 §9). Only the ones routing tells apart are named.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Head,
    Post,
    Put,
    Delete,
    Patch,
    Options,
    Other,
}

impl Method {
    fn from_token(token: &str) -> Method {
        // Methods are case-sensitive (RFC 9110 §9.1): "get" is not GET.
        match token {
            "GET" => Method::Get,
            "HEAD" => Method::Head,
            "POST" => Method::Post,
            "PUT" => Method::Put,
            "DELETE" => Method::Delete,
            "PATCH" => Method::Patch,
            "OPTIONS" => Method::Options,
            _ => Method::Other,
        }
    }
}

/// The parts of a request head switchboard uses.
///
/// A field sent several times is combined as RFC 9110 §5.3 says (values
/// joined with `", "`), so a duplicated `Sec-WebSocket-Key`, `Origin` or
/// `Authorization` no longer looks valid and is refused where it is checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    pub method: Method,
    /// The request target's path, without the query; absolute-form targets
    /// (`http://host/ws`) are reduced to their path. Not percent-decoded.
    pub path: String,
    /// The raw query, after the first `?` (empty when there is none).
    pub query: String,
    /// `0` for HTTP/1.0, `1` for HTTP/1.1.
    pub minor_version: u8,
    pub host: Option<String>,
    /// `Upgrade` lists the token `websocket` (case-insensitive).
    pub upgrade_websocket: bool,
    /// `Connection` lists `upgrade`.
    pub connection_upgrade: bool,
    /// `Connection` lists `close`.
    pub connection_close: bool,
    /// `Connection` lists `keep-alive`.
    pub connection_keep_alive: bool,
    pub ws_key: Option<String>,
    pub ws_version: Option<String>,
    /// `Sec-WebSocket-Protocol`, comma-split and trimmed, empty items dropped.
    pub ws_protocols: Vec<String>,
    /// `Sec-WebSocket-Extensions`, several fields joined with `, ` (RFC 9110
    /// 5.3); bytes that are not UTF-8 become U+FFFD, which no extension
    /// grammar accepts, so only a server that reads offers refuses them.
    pub ws_extensions: Option<String>,
    pub origin: Option<String>,
    pub authorization: Option<String>,
    /// `If-None-Match`, raw (the static assets compare it with their tag).
    pub if_none_match: Option<String>,
    pub content_length: Option<u64>,
    /// `Transfer-Encoding` ends with `chunked`.
    pub chunked: bool,
}

/// Why a head was refused. Each maps to one status, sent before closing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpError {
    /// No complete head within [`MAX_HEAD`] bytes, or too many fields: 431.
    HeadTooLarge,
    /// Not HTTP/1.x syntax, a field we use that is not UTF-8, two `Host`
    /// fields, or a `Transfer-Encoding` not ending in `chunked`: 400.
    Malformed,
    /// `Content-Length` duplicated, unparsable, or sent with
    /// `Transfer-Encoding`: 400. Kept apart because these are the request
    /// smuggling shapes (RFC 9112 §6.3, items 3 and 5).
    BadContentLength,
}

impl HttpError {
    /// The status to answer with (the connection is closed afterwards: the
    /// framing of whatever follows is unknown).
    pub fn status(self) -> u16 {
        match self {
            HttpError::HeadTooLarge => 431,
            HttpError::Malformed | HttpError::BadContentLength => 400,
        }
    }
}

/// Parses the request head at the start of `buf`.
///
/// Returns `Ok(None)` when the head is not complete yet (nothing is consumed;
/// call again with more bytes), and `Ok(Some((head, head_len)))` when it is,
/// where `buf[head_len..]` is the body or the next pipelined request. A head
/// of exactly [`MAX_HEAD`] bytes is accepted; once `buf` holds `MAX_HEAD`
/// bytes without a complete head the answer is [`HttpError::HeadTooLarge`].
pub fn parse_head(buf: &[u8]) -> Result<Option<(Head, usize)>, HttpError> {
    // Never look past the cap: a head that ends beyond it is too large even
    // if its end is already in the buffer.
    let window = buf.get(..MAX_HEAD).unwrap_or(buf);
    let mut fields = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut fields);
    let head_len = match req.parse(window) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if window.len() >= MAX_HEAD => {
            return Err(HttpError::HeadTooLarge)
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(HttpError::HeadTooLarge),
        Err(_) => return Err(HttpError::Malformed),
    };
    // httparse fills all three on Complete; a None here would be its bug,
    // answered as a bad request rather than a panic.
    let (Some(method), Some(target), Some(minor_version)) = (req.method, req.path, req.version)
    else {
        return Err(HttpError::Malformed);
    };
    let (path, query) = split_target(target);
    let mut head = Head {
        method: Method::from_token(method),
        path: path.to_owned(),
        query: query.to_owned(),
        minor_version,
        host: None,
        upgrade_websocket: false,
        connection_upgrade: false,
        connection_close: false,
        connection_keep_alive: false,
        ws_key: None,
        ws_version: None,
        ws_protocols: Vec::new(),
        ws_extensions: None,
        origin: None,
        authorization: None,
        if_none_match: None,
        content_length: None,
        chunked: false,
    };
    let mut transfer_encoding = false;
    for field in req.headers.iter() {
        apply_field(&mut head, &mut transfer_encoding, field.name, field.value)?;
    }
    if transfer_encoding && head.content_length.is_some() {
        // RFC 9112 §6.1: a sender MUST NOT send both; a proxy in front of us
        // may have framed the body by the other one, so refuse outright.
        return Err(HttpError::BadContentLength);
    }
    Ok(Some((head, head_len)))
}

/// Splits a request target into path and raw query. Absolute-form targets
/// (RFC 9112 §3.2.2, which servers MUST accept) keep only their path.
fn split_target(target: &str) -> (&str, &str) {
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    for scheme in ["http://", "https://"] {
        let is_absolute = path
            .get(..scheme.len())
            .is_some_and(|s| s.eq_ignore_ascii_case(scheme));
        if is_absolute {
            let rest = &path[scheme.len()..];
            return (rest.find('/').map_or("/", |i| &rest[i..]), query);
        }
    }
    (path, query)
}

/// Folds one header field into `head`. Names are case-insensitive (RFC 9110 §5.1).
fn apply_field(
    head: &mut Head,
    transfer_encoding: &mut bool,
    name: &str,
    value: &[u8],
) -> Result<(), HttpError> {
    let is = |n: &str| name.eq_ignore_ascii_case(n);
    if is("host") {
        // RFC 9112 §3.2: more than one Host MUST be answered 400.
        if head.host.is_some() {
            return Err(HttpError::Malformed);
        }
        head.host = Some(text(value)?.to_owned());
    } else if is("connection") {
        for token in list(text(value)?) {
            head.connection_upgrade |= token.eq_ignore_ascii_case("upgrade");
            head.connection_close |= token.eq_ignore_ascii_case("close");
            head.connection_keep_alive |= token.eq_ignore_ascii_case("keep-alive");
        }
    } else if is("upgrade") {
        head.upgrade_websocket |= list(text(value)?).any(|t| t.eq_ignore_ascii_case("websocket"));
    } else if is("sec-websocket-key") {
        combine(&mut head.ws_key, text(value)?);
    } else if is("sec-websocket-version") {
        combine(&mut head.ws_version, text(value)?);
    } else if is("sec-websocket-protocol") {
        let offered = list(text(value)?).map(str::to_owned);
        head.ws_protocols.extend(offered);
    } else if is("sec-websocket-extensions") {
        combine(&mut head.ws_extensions, &String::from_utf8_lossy(value));
    } else if is("origin") {
        combine(&mut head.origin, text(value)?);
    } else if is("authorization") {
        combine(&mut head.authorization, text(value)?);
    } else if is("if-none-match") {
        combine(&mut head.if_none_match, text(value)?);
    } else if is("content-length") {
        // RFC 9112 §6.3 item 5 lets a server accept identical duplicates;
        // refusing every duplicate is simpler and closes the same hole.
        if head.content_length.is_some() {
            return Err(HttpError::BadContentLength);
        }
        head.content_length = Some(content_length(value)?);
    } else if is("transfer-encoding") {
        *transfer_encoding = true;
        // Only the last coding frames the body (RFC 9112 §6.3 item 4); a
        // later field may append a coding after an earlier `chunked`.
        let codings = text(value)?;
        head.chunked = list(codings)
            .last()
            .is_some_and(|c| c.eq_ignore_ascii_case("chunked"));
        if !head.chunked {
            // "If the final coding is not chunked ... respond with 400".
            return Err(HttpError::Malformed);
        }
    }
    Ok(())
}

/// A field value we keep must be UTF-8; httparse already rejected controls.
fn text(value: &[u8]) -> Result<&str, HttpError> {
    str::from_utf8(value)
        .map(str::trim)
        .map_err(|_| HttpError::Malformed)
}

/// The non-empty, trimmed items of a comma-separated list (RFC 9110 §5.6.1).
fn list(value: &str) -> impl Iterator<Item = &str> {
    value.split(',').map(str::trim).filter(|t| !t.is_empty())
}

fn combine(slot: &mut Option<String>, value: &str) {
    match slot {
        Some(existing) => {
            existing.push_str(", ");
            existing.push_str(value);
        }
        None => *slot = Some(value.to_owned()),
    }
}

/// `Content-Length = 1*DIGIT` (RFC 9110 §8.6): no sign, no spaces inside,
/// no list, and it must fit in a u64.
fn content_length(value: &[u8]) -> Result<u64, HttpError> {
    let digits = text(value).map_err(|_| HttpError::BadContentLength)?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(HttpError::BadContentLength);
    }
    digits.parse().map_err(|_| HttpError::BadContentLength)
}

/// The percent-decoded value of the first `name` parameter in `query`.
///
/// Follows the `application/x-www-form-urlencoded` rules browsers use
/// (WHATWG URL §5.1): pairs split on `&`, a pair without `=` has an empty
/// value, `+` is a space, and a `%` not followed by two hex digits stays as
/// it is. Names are decoded before comparing. `None` when absent or when the
/// decoded value is not UTF-8 (the `user` and `token` parameters are text);
/// the decoding itself is `form_urlencoded`'s.
pub fn query_param(query: &str, name: &str) -> Option<String> {
    match param(query, name) {
        Param::Text(v) => Some(v),
        Param::Absent | Param::NotText => None,
    }
}

/// What a query says about one parameter; see [`query_param`] for how it
/// is read. The one parser of queries: a parameter present under an
/// escaped name (`us%65r`) is present, whatever its value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Param {
    Absent,
    Text(String),
    /// Present, but its decoded value is not UTF-8.
    NotText,
}

/// Reads parameter `name` of `query` (the first one, when repeated).
pub fn param(query: &str, name: &str) -> Param {
    match form_urlencoded::parse(query.as_bytes()).find(|(n, _)| n == name) {
        None => Param::Absent,
        Some((_, v)) if v.contains(char::REPLACEMENT_CHARACTER) => Param::NotText,
        Some((_, v)) => Param::Text(v.into_owned()),
    }
}

#[cfg(test)]
#[path = "request_tests.rs"]
mod tests;
