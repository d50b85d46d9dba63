//! `--redis URL`: `redis://[user:pass@]host[:port][/db]` (PROTOCOL.md §10),
//! the form Redis clients share (IANA `redis` URI scheme). Checked when the
//! configuration is read, so a typo stops the start instead of showing up as
//! an endless reconnect loop.

use std::fmt;

/// Port used when the URL names none.
pub const DEFAULT_REDIS_PORT: u16 = 6379;

/// A parsed `--redis` URL. `Debug` hides the password.
#[derive(Clone, PartialEq, Eq)]
pub struct RedisUrl {
    /// Host name or IP address; IPv6 without its brackets, ready for
    /// `(host, port)` socket addressing.
    pub host: String,
    pub port: u16,
    /// For `AUTH username password` (Redis 6 ACLs); percent-decoded.
    pub username: Option<String>,
    /// For `AUTH`; percent-decoded.
    pub password: Option<String>,
    /// For `SELECT`; 0 when absent.
    pub db: u32,
}

impl fmt::Debug for RedisUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisUrl")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .field("db", &self.db)
            .finish()
    }
}

impl RedisUrl {
    /// Parses `redis://[user:pass@]host[:port][/db]`. `rediss://` (TLS) is
    /// refused: switchboard has no TLS client.
    pub fn parse(url: &str) -> Result<RedisUrl, String> {
        let rest = match url.split_once("://") {
            Some(("redis", rest)) => rest,
            Some(("rediss", _)) => return Err("TLS (rediss://) is not supported".to_owned()),
            _ => return Err("expected redis://[user:pass@]host[:port][/db]".to_owned()),
        };
        let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
        let (userinfo, hostport) = match authority.rsplit_once('@') {
            Some((u, h)) => (Some(u), h),
            None => (None, authority),
        };

        let (username, password) = match userinfo {
            None => (None, None),
            Some(info) => {
                let (user, pass) = match info.split_once(':') {
                    Some((user, pass)) => (user, Some(pass)),
                    None => (info, None),
                };
                let user = Some(percent_decode(user)?).filter(|u| !u.is_empty());
                let pass = pass.map(percent_decode).transpose()?;
                (user, pass)
            }
        };

        let (host, port) = split_host_port(hostport)?;
        let db = if path.is_empty() {
            0
        } else {
            path.parse()
                .map_err(|_| format!("database '{path}' is not a number"))?
        };
        Ok(RedisUrl {
            host,
            port,
            username,
            password,
            db,
        })
    }
}

fn split_host_port(hostport: &str) -> Result<(String, u16), String> {
    let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
        let (host, after) = v6
            .split_once(']')
            .ok_or_else(|| "unclosed '[' in host".to_owned())?;
        match after {
            "" => (host, None),
            _ => match after.strip_prefix(':') {
                Some(port) => (host, Some(port)),
                None => return Err("expected ':' after ']'".to_owned()),
            },
        }
    } else {
        match hostport.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (hostport, None),
        }
    };
    if host.is_empty() || !host.bytes().all(|b| b.is_ascii_graphic() && b != b'@') {
        return Err("expected a host".to_owned());
    }
    let port = match port {
        None => DEFAULT_REDIS_PORT,
        Some(p) => p
            .parse::<u16>()
            .ok()
            .filter(|&p| p != 0)
            .ok_or_else(|| format!("port '{p}' is not 1-65535"))?,
    };
    Ok((host.to_owned(), port))
}

/// RFC 3986 §2.1 decoding, as passwords with `@`, `:` or `/` must be encoded.
fn percent_decode(s: &str) -> Result<String, String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| "bad %-escape in user or password".to_owned())?;
            out.push(hex);
            i += 3;
        } else {
            out.push(b);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| "user or password is not UTF-8 once decoded".to_owned())
}

/// The URL with its password replaced by `***`, for errors and `Debug`.
/// It must also hide passwords in URLs that failed to parse (an unencoded
/// `/` or `@` in the password), so it masks up to the last `@`.
pub(crate) fn redact(url: &str) -> String {
    let (scheme, rest) = match url.split_once("://") {
        Some((scheme, rest)) => (format!("{scheme}://"), rest),
        None => (String::new(), url),
    };
    match rest.rsplit_once('@') {
        Some((info, tail)) => match info.split_once(':') {
            Some((user, _)) if !user.contains('/') => format!("{scheme}{user}:***@{tail}"),
            Some(_) => format!("{scheme}***@{tail}"),
            None => url.to_owned(),
        },
        None => url.to_owned(),
    }
}
