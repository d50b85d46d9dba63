//! `redis://` and `rediss://` URLs, as taken by `--redis` (PROTOCOL.md §10,
//! §11).
//!
//! The accepted form is the one of the IANA provisional `redis` scheme
//! (<https://www.iana.org/assignments/uri-schemes/prov/redis>), restricted to
//! what switchboard can use:
//!
//! ```text
//! redis[s]://[[user]:password@]host[:port][/db]
//! ```
//!
//! `rediss://` is the same over TLS (the scheme Redis clients share); the
//! server's certificate is always verified against `host`.
//!
//! The `url` crate parses the text (the WHATWG URL standard); this module
//! checks and decodes the parts. User and password are percent-decoded
//! (RFC 3986 section 2.1), so a password holding `@`, `:` or `/` must be
//! written `%40`, `%3A`, `%2F`. An IPv6 host is written in brackets
//! (`redis://[::1]:6380`). Query strings and fragments are refused rather
//! than silently ignored: a setting the operator wrote and that would not be
//! applied is worse than an error.

use std::fmt;

/// The port Redis listens on when the URL names none.
pub const DEFAULT_PORT: u16 = 6379;

/// Where and how to reach Redis. Its `Debug` never prints the password, so it
/// can be logged.
#[derive(Clone, PartialEq, Eq)]
pub struct RedisUrl {
    /// Host name or IP address, without IPv6 brackets.
    pub host: String,
    /// TCP port, [`DEFAULT_PORT`] when the URL names none.
    pub port: u16,
    /// ACL user; `None` means the `default` user.
    pub username: Option<String>,
    /// Password for `HELLO 3 AUTH`; `None` means no authentication.
    pub password: Option<String>,
    /// Logical database selected after the handshake (`SELECT`), 0 by default.
    pub db: u32,
    /// `rediss://`: the link speaks TLS.
    pub tls: bool,
}

impl fmt::Debug for RedisUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisUrl")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("db", &self.db)
            .field("tls", &self.tls)
            .finish()
    }
}

/// Why a URL was refused. No variant carries the password or the raw URL, so
/// the error can be printed as is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UrlError {
    /// The URL does not start with `redis://` or `rediss://`.
    Scheme,
    /// Nothing between `//` (or `@`) and the port.
    MissingHost,
    /// A host the URL standard refuses: a bad `[IPv6]` address, or a
    /// character a host cannot hold.
    InvalidHost,
    /// The port is not a number in 1..=65535.
    InvalidPort,
    /// The path is not `/` followed by a database number.
    InvalidDb,
    /// A `%` not followed by two hex digits, or user/password not UTF-8.
    InvalidPercentEncoding,
    /// A user name with no password: `HELLO AUTH` needs both.
    UsernameWithoutPassword,
    /// A query string or fragment, which switchboard would not apply.
    Unsupported {
        /// The part that was refused: `"query"` or `"fragment"`.
        part: &'static str,
    },
}

impl fmt::Display for UrlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Scheme => f.write_str("the URL must start with redis:// or rediss://"),
            Self::MissingHost => f.write_str("the URL names no host"),
            Self::InvalidHost => f.write_str("the host is not a valid name or [IPv6] address"),
            Self::InvalidPort => f.write_str("the port is not a number in 1..=65535"),
            Self::InvalidDb => f.write_str("the path must be /<database number>"),
            Self::InvalidPercentEncoding => {
                f.write_str("user or password has a bad %-escape or is not UTF-8")
            }
            Self::UsernameWithoutPassword => f.write_str("a user name needs a password"),
            Self::Unsupported { part } => write!(f, "a {part} is not supported in a Redis URL"),
        }
    }
}

impl std::error::Error for UrlError {}

/// Parses `redis[s]://[[user]:password@]host[:port][/db]`.
///
/// The URL grammar is the `url` crate's (the WHATWG URL standard, which
/// treats `redis` as a non-special scheme: an opaque host, no IDNA); this
/// function only checks the parts switchboard uses and decodes them.
pub fn parse_url(text: &str) -> Result<RedisUrl, UrlError> {
    let url = url::Url::parse(text).map_err(|e| match e {
        url::ParseError::EmptyHost => UrlError::MissingHost,
        url::ParseError::InvalidPort => UrlError::InvalidPort,
        url::ParseError::InvalidIpv6Address | url::ParseError::InvalidDomainCharacter => {
            UrlError::InvalidHost
        }
        _ => UrlError::Scheme,
    })?;
    let tls = match url.scheme() {
        "redis" => false,
        "rediss" => true,
        _ => return Err(UrlError::Scheme),
    };
    // `redis:/h` parses, as a path with no authority.
    if !url.has_authority() {
        return Err(UrlError::Scheme);
    }
    if url.fragment().is_some() {
        return Err(UrlError::Unsupported { part: "fragment" });
    }
    if url.query().is_some() {
        return Err(UrlError::Unsupported { part: "query" });
    }
    let host = match url.host() {
        Some(url::Host::Domain("")) | None => return Err(UrlError::MissingHost),
        Some(url::Host::Domain(d)) => d.to_owned(),
        Some(url::Host::Ipv4(a)) => a.to_string(),
        Some(url::Host::Ipv6(a)) => a.to_string(),
    };
    let port = match url.port() {
        None => DEFAULT_PORT,
        Some(0) => return Err(UrlError::InvalidPort),
        Some(p) => p,
    };
    let (username, password) = credentials(&url, text)?;
    Ok(RedisUrl {
        host,
        port,
        username,
        password,
        db: parse_db(url.path())?,
        tls,
    })
}

type Credentials = (Option<String>, Option<String>);

/// User and password, percent-decoded. The URL standard drops an empty
/// password with its `:` (`redis://al:@h` reads as `redis://al@h`), and
/// only the text tells them apart: `:@` can only end a user-info, since the
/// host cannot hold an `@` and the path is digits.
fn credentials(url: &url::Url, text: &str) -> Result<Credentials, UrlError> {
    let user = match url.username() {
        "" => None,
        u => Some(percent_decode(u)?),
    };
    let password = match url.password() {
        Some(p) => Some(percent_decode(p)?),
        None if text.contains(":@") => Some(String::new()),
        None if user.is_some() => return Err(UrlError::UsernameWithoutPassword),
        None => None,
    };
    Ok((user, password))
}

fn parse_db(path: &str) -> Result<u32, UrlError> {
    match path {
        "" | "/" => Ok(0),
        _ => path
            .strip_prefix('/')
            .filter(|d| d.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|d| d.parse().ok())
            .ok_or(UrlError::InvalidDb),
    }
}

/// Strict percent-decoding of the user-info: a `%` must start an escape
/// (the URL parser keeps a stray `%` as it is).
fn percent_decode(s: &str) -> Result<String, UrlError> {
    let well_formed = s.split('%').skip(1).all(|rest| {
        rest.as_bytes()
            .get(..2)
            .is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit))
    });
    if !well_formed {
        return Err(UrlError::InvalidPercentEncoding);
    }
    percent_encoding::percent_decode_str(s)
        .decode_utf8()
        .map(|c| c.into_owned())
        .map_err(|_| UrlError::InvalidPercentEncoding)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(host: &str, port: u16, user: Option<&str>, pass: Option<&str>, db: u32) -> RedisUrl {
        RedisUrl {
            host: host.into(),
            port,
            username: user.map(Into::into),
            password: pass.map(Into::into),
            db,
            tls: false,
        }
    }

    #[test]
    fn accepts_the_documented_forms() {
        let cases = [
            ("redis://localhost", url("localhost", 6379, None, None, 0)),
            ("redis://localhost/", url("localhost", 6379, None, None, 0)),
            (
                "redis://10.0.0.5:6380",
                url("10.0.0.5", 6380, None, None, 0),
            ),
            ("redis://h:1/15", url("h", 1, None, None, 15)),
            ("redis://:secret@h", url("h", 6379, None, Some("secret"), 0)),
            (
                "redis://al:pw@h:7000/2",
                url("h", 7000, Some("al"), Some("pw"), 2),
            ),
            ("redis://al:@h", url("h", 6379, Some("al"), Some(""), 0)),
            ("redis://@h", url("h", 6379, None, None, 0)),
            ("REDIS://h", url("h", 6379, None, None, 0)),
            ("redis://[::1]:6380/1", url("::1", 6380, None, None, 1)),
            ("redis://[::1]", url("::1", 6379, None, None, 0)),
            // The URL standard reads an empty port as the default one.
            ("redis://h:", url("h", 6379, None, None, 0)),
            (
                "rediss://:pw@h:6380/1",
                RedisUrl {
                    tls: true,
                    ..url("h", 6380, None, Some("pw"), 1)
                },
            ),
            (
                "REDISS://h",
                RedisUrl {
                    tls: true,
                    ..url("h", 6379, None, None, 0)
                },
            ),
        ];
        for (text, want) in cases {
            assert_eq!(parse_url(text), Ok(want), "{text}");
        }
    }

    #[test]
    fn percent_decodes_user_and_password() {
        let u = parse_url("redis://us%65r:p%40ss%3Aw%2Fd%25@h").unwrap();
        assert_eq!(u.username.as_deref(), Some("user"));
        assert_eq!(u.password.as_deref(), Some("p@ss:w/d%"));
        // The last '@' separates the credentials from the host.
        let u = parse_url("redis://:a@b@h").unwrap();
        assert_eq!((u.password.as_deref(), u.host.as_str()), (Some("a@b"), "h"));
    }

    #[test]
    fn refuses_with_a_reason() {
        let cases = [
            ("http://h", UrlError::Scheme),
            ("redisss://h", UrlError::Scheme),
            ("rediss:/h", UrlError::Scheme),
            ("redis:/h", UrlError::Scheme),
            ("", UrlError::Scheme),
            ("redis://", UrlError::MissingHost),
            ("redis://:6379", UrlError::MissingHost),
            ("redis://:pw@/3", UrlError::MissingHost),
            ("redis://[::1", UrlError::InvalidHost),
            ("redis://[::1]x", UrlError::InvalidHost),
            ("redis://h h", UrlError::InvalidHost),
            ("redis://h:0", UrlError::InvalidPort),
            ("redis://h:65536", UrlError::InvalidPort),
            ("redis://h:+1", UrlError::InvalidPort),
            ("redis://h:1:2", UrlError::InvalidPort),
            ("redis://h/x", UrlError::InvalidDb),
            ("redis://h/1/", UrlError::InvalidDb),
            ("redis://h/-1", UrlError::InvalidDb),
            ("redis://h/4294967296", UrlError::InvalidDb),
            ("redis://:%4@h", UrlError::InvalidPercentEncoding),
            ("redis://:%zz@h", UrlError::InvalidPercentEncoding),
            ("redis://:%ff@h", UrlError::InvalidPercentEncoding),
            ("redis://user@h", UrlError::UsernameWithoutPassword),
            ("redis://h?db=1", UrlError::Unsupported { part: "query" }),
            ("redis://h#x", UrlError::Unsupported { part: "fragment" }),
        ];
        let wrong: Vec<_> = cases
            .iter()
            .filter(|(text, want)| parse_url(text) != Err(want.clone()))
            .map(|(text, want)| format!("{text}: {:?} instead of {want:?}", parse_url(text)))
            .collect();
        assert!(wrong.is_empty(), "{wrong:#?}");
    }

    #[test]
    fn debug_and_errors_hide_the_password() {
        let u = parse_url("redis://al:hunter2@h").unwrap();
        let shown = format!("{u:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("<redacted>"), "{shown}");
        let err = parse_url("redis://al:hunter2@h:x").unwrap_err();
        assert!(!format!("{err} {err:?}").contains("hunter2"));
    }
}
