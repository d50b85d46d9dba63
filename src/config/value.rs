//! Parsers for single setting values. Each takes the text a flag, an
//! environment variable or a file key gave and returns the value or a reason
//! that completes "invalid --setting 'value': ...".

use std::fmt::Display;
use std::net::SocketAddr;
use std::str::FromStr;
use std::time::Duration;

/// Longest duration setting, in seconds. Deadlines are `Instant + Duration`,
/// which panics on overflow; a day is far past any sensible value and far
/// from that overflow.
pub(crate) const MAX_SECONDS: u64 = 86_400;

/// `A-Z a-z 0-9 _ - : . @ = /`, the channel alphabet of PROTOCOL.md §7.
pub(crate) fn is_channel_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b':' | b'.' | b'@' | b'=' | b'/')
}

/// An `IP:PORT` (`[v6]:PORT` for IPv6). Host names are refused: resolving
/// them is IO, and which of several addresses to bind would be a guess.
pub(crate) fn socket_addr(s: &str) -> Result<SocketAddr, String> {
    s.parse()
        .map_err(|_| "expected IP:PORT, e.g. 127.0.0.1:8080 or [::]:8080".to_owned())
}

/// An unsigned integer in `min..=max`.
pub(crate) fn int_in<T>(s: &str, min: T, max: T) -> Result<T, String>
where
    T: FromStr + PartialOrd + Display + Copy,
{
    let n: T = s
        .parse()
        .map_err(|_| "expected a non-negative whole number".to_owned())?;
    if n < min || n > max {
        return Err(format!("must be between {min} and {max}"));
    }
    Ok(n)
}

/// Whole seconds in `min..=MAX_SECONDS`.
pub(crate) fn seconds(s: &str, min: u64) -> Result<Duration, String> {
    int_in(s, min, MAX_SECONDS).map(Duration::from_secs)
}

/// `true`/`false`, also `1`/`0`, `yes`/`no`, `on`/`off`, any case.
pub(crate) fn switch(s: &str) -> Result<bool, String> {
    match s.to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Ok(true),
        "false" | "0" | "no" | "off" => Ok(false),
        _ => Err("expected true or false".to_owned()),
    }
}

/// A node id: 1-32 bytes of the channel alphabet, since it is spliced into
/// `conn` ids and Redis keys.
pub(crate) fn node_id(s: &str) -> Result<String, String> {
    if s.is_empty() || s.len() > 32 || !s.bytes().all(is_channel_byte) {
        return Err("expected 1-32 characters of A-Z a-z 0-9 _ - : . @ = /".to_owned());
    }
    Ok(s.to_owned())
}

/// A Redis key prefix: up to 64 bytes with no whitespace or control
/// characters (they would only ever be a quoting mistake). May be empty.
/// A `--redis-cluster` seed: a `--redis` URL on database 0, the only one a
/// cluster has.
pub(crate) fn cluster_seed(s: &str) -> Result<String, String> {
    let url = crate::resp::parse_url(s).map_err(|e| e.to_string())?;
    if url.db != 0 {
        return Err("a cluster has only database 0".to_owned());
    }
    Ok(s.to_owned())
}

pub(crate) fn redis_prefix(s: &str) -> Result<String, String> {
    if s.len() > 64 || !s.bytes().all(|b| b.is_ascii_graphic()) {
        return Err("expected at most 64 visible ASCII characters".to_owned());
    }
    Ok(s.to_owned())
}

/// A non-empty secret. An empty one would turn authentication on with a key
/// anyone can sign with.
pub(crate) fn secret(s: &str) -> Result<String, String> {
    if s.is_empty() {
        return Err("must not be empty".to_owned());
    }
    Ok(s.to_owned())
}

/// An API key: visible ASCII, as it must travel in `Authorization: Bearer`.
pub(crate) fn api_key(s: &str) -> Result<String, String> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_graphic()) {
        return Err("expected visible ASCII characters (no spaces)".to_owned());
    }
    Ok(s.to_owned())
}

/// A namespace: `*` (every namespace), or up to 199 bytes of the channel
/// alphabet without `:` (a channel has at most 200 bytes and the namespace
/// ends before its first `:`). The empty namespace holds the channels
/// without `:`.
pub(crate) fn namespace(s: &str) -> Result<String, String> {
    if s == "*" {
        return Ok(s.to_owned());
    }
    if s.len() > 199 || !s.bytes().all(|b| b != b':' && is_channel_byte(b)) {
        return Err(
            "expected '*' or a namespace: characters of A-Z a-z 0-9 _ - . @ = / (no ':')"
                .to_owned(),
        );
    }
    Ok(s.to_owned())
}

/// Most events kept per channel by `--history`.
pub(crate) const MAX_HISTORY: usize = 1_000_000;

/// `NS=N`. Split at the last `=`, since `=` may occur in a namespace and not
/// in a count.
pub(crate) fn history_entry(s: &str) -> Result<(String, usize), String> {
    let (ns, n) = s
        .rsplit_once('=')
        .ok_or_else(|| "expected NS=N, e.g. doc=100".to_owned())?;
    let ns = namespace(ns)?;
    let n = int_in(n, 1, MAX_HISTORY).map_err(|reason| format!("count {reason}"))?;
    Ok((ns, n))
}

/// An `Origin` value as browsers send it (RFC 6454 §6.2): `scheme://host`
/// with an optional port and no path, or `null`; `*` allows any origin.
/// A trailing `/` is refused because no browser sends one, so the entry
/// could never match.
pub(crate) fn origin(s: &str) -> Result<String, String> {
    if s == "*" || s == "null" {
        return Ok(s.to_owned());
    }
    let well_formed = s.bytes().all(|b| b.is_ascii_graphic())
        && s.split_once("://").is_some_and(|(scheme, host)| {
            !scheme.is_empty() && !host.is_empty() && !host.contains('/')
        });
    if !well_formed {
        return Err(
            "expected scheme://host[:port] with no path, e.g. https://example.com".to_owned(),
        );
    }
    Ok(s.to_owned())
}

/// A file path: not empty. Whether it can be read is for the reader to say
/// at start, with the file's name.
pub(crate) fn path(s: &str) -> Result<std::path::PathBuf, String> {
    if s.is_empty() {
        return Err("must not be empty".to_owned());
    }
    Ok(s.into())
}

/// A JWKS source: an `http://` or `https://` URL with a host, or a path.
pub(crate) fn jwks_source(s: &str) -> Result<String, String> {
    if s.is_empty() {
        return Err("must not be empty".to_owned());
    }
    let lower = s.to_ascii_lowercase();
    if let Some(rest) = lower
        .strip_prefix("https://")
        .or_else(|| lower.strip_prefix("http://"))
    {
        if rest.is_empty() || rest.starts_with('/') || !s.bytes().all(|b| b.is_ascii_graphic()) {
            return Err("expected http(s)://host[:port]/path".to_owned());
        }
    } else if lower.contains("://") {
        return Err("expected a file path or an http:// or https:// URL".to_owned());
    }
    Ok(s.to_owned())
}

/// An expected `aud` or `iss`: any non-empty text, compared exactly.
pub(crate) fn claim_text(s: &str) -> Result<String, String> {
    if s.is_empty() {
        return Err("must not be empty".to_owned());
    }
    Ok(s.to_owned())
}
