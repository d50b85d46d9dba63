//! The static files served over HTTP (PROTOCOL.md §9 `GET /`): the demo
//! board at `/`, the debugging console at `/console`, and the JavaScript
//! client at `/switchboard.js`, all embedded in the binary.
//!
//! The client file is the very one in `clients/js/`, so that a page served
//! by a server always gets the client of that server's version. Each asset
//! has a strong `ETag` (a hash of its bytes, computed once) and is sent with
//! `Cache-Control: no-cache`: browsers keep it but ask again each time, and
//! an `If-None-Match` that names the current tag gets an empty 304.

use std::sync::OnceLock;

use super::request::Head;
use super::response::Response;

/// One embedded file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Asset {
    /// `/`: the shared board, built on the client library.
    Board,
    /// `/console`: the protocol console (raw frames in and out).
    Console,
    /// `/switchboard.js`: the client library (`clients/js/switchboard.js`).
    ClientJs,
}

const BOARD: &str = include_str!("board.html");
const CONSOLE: &str = include_str!("console.html");
const CLIENT_JS: &str = include_str!("../../clients/js/switchboard.js");

const HTML: &str = "text/html; charset=utf-8";
const JAVASCRIPT: &str = "text/javascript; charset=utf-8";

impl Asset {
    /// The asset served at `path`, if any (exact match, like every route).
    pub fn at(path: &str) -> Option<Asset> {
        match path {
            "/" => Some(Asset::Board),
            "/console" => Some(Asset::Console),
            "/switchboard.js" => Some(Asset::ClientJs),
            _ => None,
        }
    }

    pub fn body(self) -> &'static str {
        match self {
            Asset::Board => BOARD,
            Asset::Console => CONSOLE,
            Asset::ClientJs => CLIENT_JS,
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Asset::Board | Asset::Console => HTML,
            Asset::ClientJs => JAVASCRIPT,
        }
    }

    /// The quoted strong entity tag of the asset's bytes.
    pub fn etag(self) -> &'static str {
        static TAGS: OnceLock<[String; 3]> = OnceLock::new();
        let tags = TAGS.get_or_init(|| {
            [Asset::Board, Asset::Console, Asset::ClientJs]
                .map(|a| format!("\"{:016x}\"", fnv1a(a.body().as_bytes())))
        });
        &tags[self as usize]
    }

    /// The answer to a GET or HEAD of this asset: 200 with the body, or 304
    /// when the request's `If-None-Match` already names the current tag.
    pub fn response(self, head: &Head) -> Response {
        let etag = self.etag();
        let mut resp = if head
            .if_none_match
            .as_deref()
            .is_some_and(|inm| none_match_hits(inm, etag))
        {
            Response::text(304, Vec::new())
        } else {
            Response::text(200, self.body())
        };
        resp.content_type = self.content_type();
        resp.with_header("ETag", etag)
            .with_header("Cache-Control", "no-cache")
    }
}

/// Whether an `If-None-Match` value matches `etag` (RFC 9110 §13.1.2): `*`,
/// or a list holding the tag; the comparison is the weak one, so `W/"x"`
/// matches `"x"`.
fn none_match_hits(value: &str, etag: &str) -> bool {
    value.trim() == "*"
        || value
            .split(',')
            .map(|t| t.trim())
            .map(|t| t.strip_prefix("W/").unwrap_or(t))
            .any(|t| t == etag)
}

/// 64-bit FNV-1a: enough to tell versions of three files apart, and a few
/// lines where a cryptographic hash crate would be a dependency for nothing.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::request::parse_head;

    fn get(path: &str, extra: &str) -> Response {
        let req = format!("GET {path} HTTP/1.1\r\nHost: x\r\n{extra}\r\n");
        let head = parse_head(req.as_bytes()).unwrap().unwrap().0;
        Asset::at(&head.path).unwrap().response(&head)
    }

    fn header<'a>(resp: &'a Response, name: &str) -> Option<&'a str> {
        resp.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    #[test]
    fn pages_are_self_contained() {
        for asset in [Asset::Board, Asset::Console] {
            let page = asset.body();
            assert!(page.starts_with("<!doctype html>"), "{asset:?}");
            for external in ["src=\"http", "href=\"http", "<link ", "src=\"//", "@import"] {
                assert!(!page.contains(external), "{asset:?}: {external}");
            }
        }
        assert!(CONSOLE.contains("/ws?user="));
        assert!(
            BOARD.contains("/switchboard.js"),
            "the board uses the client library"
        );
    }

    #[test]
    fn serves_the_client_with_etag_and_revalidation() {
        let resp = get("/switchboard.js", "");
        assert_eq!(resp.status, 200);
        assert_eq!(resp.content_type, "text/javascript; charset=utf-8");
        assert!(std::str::from_utf8(&resp.body)
            .unwrap()
            .contains("export class Switchboard"));
        let etag = header(&resp, "ETag").unwrap().to_owned();
        assert!(etag.starts_with('"') && etag.ends_with('"') && etag.len() == 18);
        assert_eq!(header(&resp, "Cache-Control"), Some("no-cache"));

        for inm in [
            etag.clone(),
            format!("W/{etag}"),
            format!("\"other\", {etag}"),
            "*".into(),
        ] {
            let resp = get("/switchboard.js", &format!("If-None-Match: {inm}\r\n"));
            assert_eq!(resp.status, 304, "{inm}");
            assert!(resp.body.is_empty());
            assert_eq!(header(&resp, "ETag"), Some(etag.as_str()));
            let wire = String::from_utf8(resp.encode(true, false)).unwrap();
            assert!(wire.starts_with("HTTP/1.1 304 Not Modified\r\n"));
            assert!(!wire.contains("Content-Length"));
        }
        let stale = get("/switchboard.js", "If-None-Match: \"0000000000000000\"\r\n");
        assert_eq!(stale.status, 200);
    }

    #[test]
    fn each_asset_has_its_own_tag_and_type() {
        let tags: Vec<_> = [Asset::Board, Asset::Console, Asset::ClientJs]
            .map(Asset::etag)
            .into();
        assert!(tags[0] != tags[1] && tags[1] != tags[2] && tags[0] != tags[2]);
        assert_eq!(get("/", "").content_type, "text/html; charset=utf-8");
        assert_eq!(get("/console", "").status, 200);
        assert_eq!(Asset::at("/console/"), None);
        assert_eq!(
            Asset::at("/switchboard.js?v=1"),
            None,
            "paths come without query"
        );
    }
}
