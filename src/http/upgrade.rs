//! The server side of the WebSocket opening handshake (RFC 6455 §4.2.1, §4.2.2).
//!
//! [`check_upgrade`] reads an already parsed [`Head`] for `/ws` and decides
//! between the 101 answer and a refusal; [`switching_protocols`] writes the
//! 101. Authentication (401) and the origin check (403) are separate steps
//! the caller runs in between, so this module knows nothing of tokens.

use super::request::{Head, Method};
use super::response::Response;
use crate::ws::deflate::{self, Agreed};

/// The only subprotocol switchboard speaks (PROTOCOL.md §1). It is echoed
/// when offered and never required.
pub const SUBPROTOCOL: &str = "switchboard.v1";

/// An accepted handshake: what the 101 response needs.
#[derive(Debug)]
pub struct Upgrade {
    /// `Sec-WebSocket-Accept`, already derived from the client's key.
    pub accept: String,
    /// The client offered [`SUBPROTOCOL`], so the 101 names it.
    pub subprotocol: bool,
    /// permessage-deflate, when the server compresses and the client offered
    /// it acceptably (see [`Upgrade::negotiate_deflate`]).
    pub deflate: Option<Agreed>,
}

impl Upgrade {
    /// Reads the client's extension offers (PROTOCOL.md section 12; only
    /// with `--compression`). A header that breaks RFC 6455 9.1's grammar is
    /// a handshake that does not match 4.2.1: 400. Offers we cannot honour
    /// are declined and the connection goes on uncompressed.
    pub fn negotiate_deflate(&mut self, head: &Head) -> Result<(), UpgradeError> {
        if let Some(offers) = head.ws_extensions.as_deref() {
            self.deflate = deflate::negotiate(offers)
                .map_err(|_| UpgradeError::BadRequest("malformed Sec-WebSocket-Extensions"))?;
        }
        Ok(())
    }
}

/// Why a request to the WebSocket path is not upgraded.
#[derive(Debug, PartialEq, Eq)]
pub enum UpgradeError {
    /// No `Upgrade: websocket` or no `Connection: upgrade`: a plain HTTP
    /// request to `/ws`, answered 426 (PROTOCOL.md §1).
    NotUpgrade,
    /// An upgrade attempt that breaks §4.2.1; the reason goes in the body.
    BadRequest(&'static str),
    /// `Sec-WebSocket-Version` is not 13: 426 listing the version we speak
    /// (§4.2.2 item 4).
    UnsupportedVersion,
}

impl UpgradeError {
    pub fn status(&self) -> u16 {
        match self {
            UpgradeError::NotUpgrade | UpgradeError::UnsupportedVersion => 426,
            UpgradeError::BadRequest(_) => 400,
        }
    }

    /// The refusal to send (the connection is then closed). A 426 MUST carry
    /// `Upgrade` (RFC 9110 §15.5.22), and names version 13 so a client with
    /// another version knows what to retry with.
    pub fn response(&self) -> Response {
        match self {
            UpgradeError::NotUpgrade => {
                Response::text(426, "this endpoint only speaks WebSocket\n")
                    .with_header("Upgrade", "websocket")
                    .with_header("Sec-WebSocket-Version", "13")
            }
            UpgradeError::UnsupportedVersion => {
                Response::text(426, "unsupported WebSocket version; use 13\n")
                    .with_header("Upgrade", "websocket")
                    .with_header("Sec-WebSocket-Version", "13")
            }
            UpgradeError::BadRequest(why) => Response::text(400, format!("{why}\n")),
        }
    }
}

/// Checks a request to the WebSocket path against RFC 6455 §4.2.1.
///
/// In order: no upgrade headers → [`UpgradeError::NotUpgrade`]; a method
/// other than GET, HTTP/1.0, no `Host`, no `Sec-WebSocket-Version` →
/// `BadRequest`; a version other than 13 → [`UpgradeError::UnsupportedVersion`]
/// (before the key, whose format belongs to the version); a missing key or one
/// that is not the base64 of exactly 16 bytes → `BadRequest`.
pub fn check_upgrade(head: &Head) -> Result<Upgrade, UpgradeError> {
    if !head.upgrade_websocket || !head.connection_upgrade {
        return Err(UpgradeError::NotUpgrade);
    }
    if head.method != Method::Get {
        return Err(UpgradeError::BadRequest(
            "the WebSocket handshake must be a GET",
        ));
    }
    if head.minor_version < 1 {
        return Err(UpgradeError::BadRequest(
            "the WebSocket handshake needs HTTP/1.1",
        ));
    }
    if head.host.is_none() {
        return Err(UpgradeError::BadRequest("missing Host"));
    }
    match head.ws_version.as_deref() {
        None => return Err(UpgradeError::BadRequest("missing Sec-WebSocket-Version")),
        Some("13") => {}
        Some(_) => return Err(UpgradeError::UnsupportedVersion),
    }
    let key = match head.ws_key.as_deref() {
        Some(key) if is_nonce(key) => key,
        Some(_) => return Err(UpgradeError::BadRequest("invalid Sec-WebSocket-Key")),
        None => return Err(UpgradeError::BadRequest("missing Sec-WebSocket-Key")),
    };
    Ok(Upgrade {
        // §4.2.2 item 5.4: the key as sent (not decoded), with the GUID.
        accept: tungstenite::handshake::derive_accept_key(key.as_bytes()),
        subprotocol: head.ws_protocols.iter().any(|p| p == SUBPROTOCOL),
        deflate: None,
    })
}

/// §4.1: "a randomly selected 16-byte value that has been base64-encoded",
/// i.e. 22 base64 digits and `==`. Lenient about the 4 unused bits of the
/// last digit, as most servers are: they change nothing in the accept key.
fn is_nonce(key: &str) -> bool {
    let b = key.as_bytes();
    b.len() == 24
        && b.ends_with(b"==")
        && b.iter()
            .take(22)
            .all(|&c| c.is_ascii_alphanumeric() || c == b'+' || c == b'/')
}

/// The `101 Switching Protocols` response for an accepted handshake.
pub fn switching_protocols(up: &Upgrade) -> Vec<u8> {
    let mut out = Vec::with_capacity(160);
    out.extend_from_slice(
        b"HTTP/1.1 101 Switching Protocols\r\n\
          Upgrade: websocket\r\n\
          Connection: Upgrade\r\n\
          Sec-WebSocket-Accept: ",
    );
    out.extend_from_slice(up.accept.as_bytes());
    out.extend_from_slice(b"\r\n");
    if up.subprotocol {
        out.extend_from_slice(b"Sec-WebSocket-Protocol: ");
        out.extend_from_slice(SUBPROTOCOL.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    if let Some(agreed) = &up.deflate {
        out.extend_from_slice(b"Sec-WebSocket-Extensions: ");
        out.extend_from_slice(agreed.response().as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out
}

/// Whether a browser page from `origin` may open a WebSocket (§4.2.2 item 4's
/// "origin considerations"; `--allowed-origin`, whose refusal is 403).
///
/// An empty list allows any origin, and so does an entry `*`. A request
/// without `Origin` comes from a non-browser client, which could send any
/// value anyway, and is allowed. Comparison ignores ASCII case (scheme and
/// host are case-insensitive) and a trailing `/` on the configured entry.
pub fn origin_allowed(origin: Option<&str>, allowed: &[String]) -> bool {
    let Some(origin) = origin else {
        return true;
    };
    allowed.is_empty()
        || allowed.iter().any(|a| {
            let a = a.strip_suffix('/').unwrap_or(a);
            a == "*" || a.eq_ignore_ascii_case(origin)
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::request::parse_head;

    const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

    fn head(extra: &str) -> Head {
        head_with("GET", "1.1", extra)
    }

    fn head_with(method: &str, version: &str, extra: &str) -> Head {
        let req = format!(
            "{method} /ws HTTP/{version}\r\nHost: h\r\nUpgrade: websocket\r\n\
             Connection: Upgrade\r\n{extra}\r\n"
        );
        parse_head(req.as_bytes()).unwrap().unwrap().0
    }

    fn valid() -> String {
        format!("Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {KEY}\r\n")
    }

    #[test]
    fn rfc_6455_example_key() {
        let up = check_upgrade(&head(&valid())).unwrap();
        assert_eq!(up.accept, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
        assert!(!up.subprotocol);
    }

    #[test]
    fn switching_protocols_bytes() {
        let up = check_upgrade(&head(&valid())).unwrap();
        assert_eq!(
            switching_protocols(&up),
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\
              Connection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n"
        );
    }

    #[test]
    fn subprotocol_is_echoed_only_when_offered() {
        let offered = head(&format!(
            "{}Sec-WebSocket-Protocol: chat, switchboard.v1\r\n",
            valid()
        ));
        let up = check_upgrade(&offered).unwrap();
        assert!(up.subprotocol);
        let bytes = switching_protocols(&up);
        let text = String::from_utf8(bytes).unwrap();
        assert!(text.contains("\r\nSec-WebSocket-Protocol: switchboard.v1\r\n"));
        assert!(text.ends_with("\r\n\r\n"));
        let other = head(&format!(
            "{}Sec-WebSocket-Protocol: Switchboard.v1, v2\r\n",
            valid()
        ));
        assert!(!check_upgrade(&other).unwrap().subprotocol);
    }

    #[test]
    fn second_known_accept_vector() {
        // The example handshake on Wikipedia's WebSocket page, independent of RFC 6455's.
        let h =
            head("Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: x3JJHMbDL1EzLkh9GBhXDw==\r\n");
        assert_eq!(
            check_upgrade(&h).unwrap().accept,
            "HSmrc0sMlYUkAGmm5OPpG2HaGWk="
        );
    }

    #[test]
    fn deflate_offers_across_fields_are_answered_or_refused() {
        let h = head(&format!(
            "{}Sec-WebSocket-Extensions: x-foo\r\n\
             Sec-WebSocket-Extensions: permessage-deflate; server_max_window_bits=10\r\n",
            valid()
        ));
        let mut up = check_upgrade(&h).unwrap();
        assert_eq!(up.deflate, None, "only when asked to negotiate");
        up.negotiate_deflate(&h).unwrap();
        assert_eq!(up.deflate.unwrap().server_max_window_bits, Some(10));
        let text = String::from_utf8(switching_protocols(&up)).unwrap();
        assert!(text.ends_with(
            "Sec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover; \
             client_no_context_takeover; server_max_window_bits=10\r\n\r\n"
        ));
        let bad = head(&format!(
            "{}Sec-WebSocket-Extensions: permessage-deflate;;\r\n",
            valid()
        ));
        let mut up = check_upgrade(&bad).unwrap();
        assert_eq!(up.negotiate_deflate(&bad).unwrap_err().status(), 400);
        let declined = head(&format!(
            "{}Sec-WebSocket-Extensions: permessage-deflate; x=1\r\n",
            valid()
        ));
        let mut up = check_upgrade(&declined).unwrap();
        up.negotiate_deflate(&declined).unwrap();
        assert!(up.deflate.is_none());
        assert!(!String::from_utf8(switching_protocols(&up))
            .unwrap()
            .contains("Extensions"));
    }

    #[test]
    fn plain_requests_are_426() {
        for req in [
            "GET /ws HTTP/1.1\r\nHost: h\r\n\r\n",
            "GET /ws HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\n\r\n",
            "GET /ws HTTP/1.1\r\nHost: h\r\nConnection: upgrade\r\n\r\n",
            "GET /ws HTTP/1.1\r\nUpgrade: h2c\r\nConnection: upgrade\r\n\r\n",
            "POST /ws HTTP/1.1\r\nContent-Length: 0\r\n\r\n",
            "GET /ws HTTP/1.0\r\n\r\n",
        ] {
            let head = parse_head(req.as_bytes()).unwrap().unwrap().0;
            let err = check_upgrade(&head).unwrap_err();
            assert_eq!(err, UpgradeError::NotUpgrade, "{req}");
            assert_eq!(err.status(), 426);
        }
    }

    #[test]
    fn broken_upgrades_are_400() {
        let cases = [
            (head_with("POST", "1.1", &valid()), "GET"),
            (head_with("HEAD", "1.1", &valid()), "GET"),
            (head_with("GET", "1.0", &valid()), "HTTP/1.1"),
            (
                head(&format!("Sec-WebSocket-Key: {KEY}\r\n")),
                "missing Sec-WebSocket-Version",
            ),
            (
                head("Sec-WebSocket-Version: 13\r\n"),
                "missing Sec-WebSocket-Key",
            ),
        ];
        for (head, why) in cases {
            match check_upgrade(&head) {
                Err(err @ UpgradeError::BadRequest(msg)) => {
                    assert!(msg.contains(why), "{msg} / {why}");
                    assert_eq!(err.status(), 400);
                }
                other => panic!("{why}: {other:?}"),
            }
        }
        let no_host = parse_head(
            format!(
                "GET /ws HTTP/1.1\r\nUpgrade: websocket\r\nConnection: upgrade\r\n{}\r\n",
                valid()
            )
            .as_bytes(),
        )
        .unwrap()
        .unwrap()
        .0;
        assert_eq!(
            check_upgrade(&no_host).unwrap_err(),
            UpgradeError::BadRequest("missing Host")
        );
    }

    #[test]
    fn keys_must_be_base64_of_16_bytes() {
        for good in ["AAAAAAAAAAAAAAAAAAAAAA==", "+/+/+/+/+/+/+/+/+/+/zz==", KEY] {
            let h = head(&format!(
                "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {good}\r\n"
            ));
            assert!(check_upgrade(&h).is_ok(), "{good}");
        }
        for bad in [
            "",
            "dGhlIHNhbXBsZSBub25jZQ",
            "dGhlIHNhbXBsZSBub25jZQ=",
            "dGhlIHNhbXBsZSBub25jZQ===",
            "dGhlIHNhbXBsZSBub25jZQ=A",
            "dGhlIHNhbXBsZSBub25j-Q==",
            "dGhlIHNhbXBsZSBub25jZQ==dGhlIHNhbXBsZSBub25jZQ==",
            "AAAAAAAAAAAAAAAAAAAAAAA=",
            "AAAAAAAAAAAAAAAAAAAAAAAA",
        ] {
            let h = head(&format!(
                "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {bad}\r\n"
            ));
            let err = check_upgrade(&h).unwrap_err();
            assert!(matches!(err, UpgradeError::BadRequest(_)), "{bad}: {err:?}");
        }
        // Two keys are combined by the parser and so are refused.
        let two = head(&format!("{}Sec-WebSocket-Key: {KEY}\r\n", valid()));
        assert!(matches!(
            check_upgrade(&two),
            Err(UpgradeError::BadRequest(_))
        ));
    }

    #[test]
    fn other_versions_are_426_with_the_version_header() {
        for v in ["8", "12", "14", "13, 8", "abc"] {
            let h = head(&format!(
                "Sec-WebSocket-Version: {v}\r\nSec-WebSocket-Key: {KEY}\r\n"
            ));
            let err = check_upgrade(&h).unwrap_err();
            assert_eq!(err, UpgradeError::UnsupportedVersion, "{v}");
            let bytes = err.response().encode(false, false);
            let text = String::from_utf8(bytes).unwrap();
            assert!(
                text.starts_with("HTTP/1.1 426 Upgrade Required\r\n"),
                "{text}"
            );
            assert!(text.contains("\r\nSec-WebSocket-Version: 13\r\n"), "{text}");
            assert!(text.contains("\r\nUpgrade: websocket\r\n"), "{text}");
        }
        // The version is judged before the key.
        let h = head("Sec-WebSocket-Version: 8\r\nSec-WebSocket-Key: short\r\n");
        assert_eq!(
            check_upgrade(&h).unwrap_err(),
            UpgradeError::UnsupportedVersion
        );
    }

    #[test]
    fn refusal_responses_carry_their_status() {
        assert_eq!(UpgradeError::NotUpgrade.response().status, 426);
        assert!(UpgradeError::NotUpgrade
            .response()
            .headers
            .iter()
            .any(|(n, v)| *n == "Upgrade" && v == "websocket"));
        let bad = UpgradeError::BadRequest("missing Host").response();
        assert_eq!(bad.status, 400);
        assert_eq!(bad.body, b"missing Host\n");
    }

    #[test]
    fn origins() {
        let list = |xs: &[&str]| xs.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(origin_allowed(None, &[]));
        assert!(origin_allowed(Some("https://evil.example"), &[]));
        let allowed = list(&["https://app.example.com", "http://localhost:8080/"]);
        assert!(origin_allowed(None, &allowed));
        assert!(origin_allowed(Some("https://app.example.com"), &allowed));
        assert!(origin_allowed(Some("HTTPS://App.Example.com"), &allowed));
        assert!(origin_allowed(Some("http://localhost:8080"), &allowed));
        assert!(!origin_allowed(Some("https://evil.example"), &allowed));
        assert!(!origin_allowed(Some("http://app.example.com"), &allowed));
        assert!(!origin_allowed(
            Some("https://app.example.com.evil"),
            &allowed
        ));
        assert!(!origin_allowed(Some("null"), &allowed));
        assert!(!origin_allowed(
            Some("https://app.example.com, https://evil"),
            &allowed
        ));
        assert!(origin_allowed(Some("anything"), &list(&["*"])));
    }
}
