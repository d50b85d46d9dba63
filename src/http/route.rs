//! Routing, body framing and connection reuse for the HTTP side (PROTOCOL.md §1, §9).
//!
//! Routing looks at the path and method only; headers are judged later by
//! whoever handles the route (the upgrade check for `/ws`, the API key for
//! `/api/*`), so that a wrong path is always 404 whatever else is wrong.

use super::assets::Asset;
use super::request::{Head, Method};
use super::response::Response;

/// Largest request body accepted (PROTOCOL.md §9: 413 `too_large` above).
pub const MAX_BODY: u64 = 1 << 20;

/// What a request is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// `/ws`, any method: [`check_upgrade`](super::check_upgrade) answers a
    /// non-GET with 400 or 426, which says more than a 405 would.
    WebSocket,
    /// `/echo`, only when the echo endpoint is enabled; same rules as `/ws`.
    Echo,
    /// `/`, `/console`, `/switchboard.js`: an embedded file.
    Static(Asset),
    Healthz,
    Metrics,
    ApiPublish,
    ApiPresence,
    ApiChannels,
    NotFound,
    MethodNotAllowed {
        allow: &'static str,
    },
}

const GET_HEAD: &str = "GET, HEAD";

/// Routes by exact path (not percent-decoded, no trailing-slash folding) and
/// method. GET routes also take HEAD, which RFC 9110 §9.1 asks of every
/// general-purpose server; the caller encodes HEAD answers with `head_only`.
pub fn route(head: &Head, echo: bool) -> Route {
    let (allow, found) = match head.path.as_str() {
        "/ws" => return Route::WebSocket,
        "/echo" if echo => return Route::Echo,
        "/healthz" => (GET_HEAD, Route::Healthz),
        "/metrics" => (GET_HEAD, Route::Metrics),
        "/api/publish" => ("POST", Route::ApiPublish),
        "/api/presence" => (GET_HEAD, Route::ApiPresence),
        "/api/channels" => (GET_HEAD, Route::ApiChannels),
        path => match Asset::at(path) {
            Some(asset) => (GET_HEAD, Route::Static(asset)),
            None => return Route::NotFound,
        },
    };
    let allowed = match allow {
        "POST" => head.method == Method::Post,
        _ => matches!(head.method, Method::Get | Method::Head),
    };
    if allowed {
        found
    } else {
        Route::MethodNotAllowed { allow }
    }
}

/// `/api` and everything under it, whose answers are all JSON (§9).
pub fn is_api_path(path: &str) -> bool {
    path == "/api" || path.starts_with("/api/")
}

impl Route {
    /// The answer for [`Route::NotFound`] and [`Route::MethodNotAllowed`]
    /// (`None` for the others): JSON `not_found` / `method_not_allowed`
    /// under `/api`, plain text elsewhere, with `Allow` on 405 (RFC 9110
    /// §15.5.6 requires it).
    pub fn error_response(&self, path: &str) -> Option<Response> {
        let api = is_api_path(path);
        let resp = match self {
            Route::NotFound if api => Response::api_error(404, "not_found", "no such endpoint"),
            Route::NotFound => Response::text(404, "not found\n"),
            Route::MethodNotAllowed { allow } => {
                let resp = if api {
                    let msg = format!("this endpoint takes {allow}");
                    Response::api_error(405, "method_not_allowed", &msg)
                } else {
                    Response::text(405, "method not allowed\n")
                };
                resp.with_header("Allow", *allow)
            }
            _ => return None,
        };
        Some(resp)
    }
}

/// How many body bytes follow the head, for any request (a GET may carry a
/// `Content-Length` body too, and the caller must skip it to find the next
/// pipelined request).
///
/// We refuse chunked request bodies with 411 Length Required: the only body
/// we use is `/api/publish`'s small JSON, every HTTP client library sends it
/// with a length, and not decoding chunks keeps one smuggling surface shut.
/// Over [`MAX_BODY`] is 413 `too_large`; no length is an empty body (RFC
/// 9112 §6.3 item 7). Both refusals are JSON, since bodies only matter under
/// `/api`, and the caller should close afterwards: the body's framing is
/// unknown (411) or not worth reading (413).
pub fn body_len(head: &Head) -> Result<usize, Response> {
    if head.chunked {
        return Err(Response::api_error(
            411,
            "bad_request",
            "chunked request bodies are not supported; send Content-Length",
        ));
    }
    let len = head.content_length.unwrap_or(0);
    match usize::try_from(len) {
        Ok(len) if len as u64 <= MAX_BODY => Ok(len),
        _ => Err(Response::api_error(
            413,
            "too_large",
            "request body over 1 MiB",
        )),
    }
}

/// Whether the connection stays open after this request (RFC 9112 §9.3):
/// HTTP/1.1 unless `Connection: close`; HTTP/1.0 only with
/// `Connection: keep-alive`.
pub fn keep_alive(head: &Head) -> bool {
    if head.connection_close {
        return false;
    }
    head.minor_version >= 1 || head.connection_keep_alive
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::request::parse_head;

    fn head(req: &str) -> Head {
        parse_head(req.as_bytes()).unwrap().unwrap().0
    }

    fn routed(method: &str, path: &str, echo: bool) -> Route {
        route(&head(&format!("{method} {path} HTTP/1.1\r\n\r\n")), echo)
    }

    #[test]
    fn routing_table() {
        use Route::*;
        let not_allowed = |allow| MethodNotAllowed { allow };
        for (method, path, echo, want) in [
            ("GET", "/ws", false, WebSocket),
            ("POST", "/ws", false, WebSocket),
            ("DELETE", "/ws?token=x", false, WebSocket),
            ("GET", "/echo", true, Echo),
            ("POST", "/echo", true, Echo),
            ("GET", "/echo", false, NotFound),
            ("GET", "/", false, Static(Asset::Board)),
            ("HEAD", "/", false, Static(Asset::Board)),
            ("POST", "/", false, not_allowed("GET, HEAD")),
            ("GET", "/console", false, Static(Asset::Console)),
            ("GET", "/switchboard.js", false, Static(Asset::ClientJs)),
            (
                "HEAD",
                "/switchboard.js?v=2",
                false,
                Static(Asset::ClientJs),
            ),
            ("PUT", "/switchboard.js", false, not_allowed("GET, HEAD")),
            ("GET", "/switchboard.d.ts", false, NotFound),
            ("GET", "/healthz", false, Healthz),
            ("HEAD", "/healthz", false, Healthz),
            ("PUT", "/healthz", false, not_allowed("GET, HEAD")),
            ("GET", "/metrics", false, Metrics),
            ("DELETE", "/metrics", false, not_allowed("GET, HEAD")),
            ("POST", "/api/publish", false, ApiPublish),
            ("GET", "/api/publish", false, not_allowed("POST")),
            ("PUT", "/api/publish", false, not_allowed("POST")),
            ("GET", "/api/presence?channel=a", false, ApiPresence),
            ("POST", "/api/presence", false, not_allowed("GET, HEAD")),
            ("GET", "/api/channels", false, ApiChannels),
            ("HEAD", "/api/channels", false, ApiChannels),
            ("OPTIONS", "/api/channels", false, not_allowed("GET, HEAD")),
            ("GET", "/api/other", false, NotFound),
            ("POST", "/api/other", false, NotFound),
            ("GET", "/api", false, NotFound),
            ("GET", "/ws/", false, NotFound),
            ("GET", "/WS", false, NotFound),
            ("GET", "/%77s", false, NotFound),
            ("GET", "/healthz/", false, NotFound),
            ("GET", "/nope", false, NotFound),
            ("OPTIONS", "*", false, NotFound),
        ] {
            assert_eq!(
                routed(method, path, echo),
                want,
                "{method} {path} echo={echo}"
            );
        }
    }

    #[test]
    fn error_responses() {
        let not_found = Route::NotFound.error_response("/api/x").unwrap();
        assert_eq!(
            (not_found.status, not_found.content_type),
            (404, "application/json")
        );
        let v: serde_json::Value = serde_json::from_slice(&not_found.body).unwrap();
        assert_eq!(v["error"]["code"], "not_found");

        let plain = Route::NotFound.error_response("/x").unwrap();
        assert_eq!(
            (plain.status, plain.content_type),
            (404, "text/plain; charset=utf-8")
        );

        let not_allowed = Route::MethodNotAllowed { allow: "POST" };
        let resp = not_allowed.error_response("/api/publish").unwrap();
        assert_eq!(resp.status, 405);
        assert_eq!(resp.headers, [("Allow", "POST".to_string())]);
        let v: serde_json::Value = serde_json::from_slice(&resp.body).unwrap();
        assert_eq!(v["error"]["code"], "method_not_allowed");

        let resp = Route::MethodNotAllowed { allow: GET_HEAD }
            .error_response("/")
            .unwrap();
        assert_eq!(
            (resp.status, resp.content_type),
            (405, "text/plain; charset=utf-8")
        );
        assert_eq!(resp.headers, [("Allow", "GET, HEAD".to_string())]);

        assert!(Route::Static(Asset::Board).error_response("/").is_none());
        assert!(is_api_path("/api") && is_api_path("/api/") && !is_api_path("/apix"));
    }

    #[test]
    fn body_lengths() {
        let post = |fields: &str| head(&format!("POST /api/publish HTTP/1.1\r\n{fields}\r\n"));
        assert_eq!(body_len(&post("")).unwrap(), 0);
        assert_eq!(body_len(&post("Content-Length: 0\r\n")).unwrap(), 0);
        assert_eq!(body_len(&post("Content-Length: 17\r\n")).unwrap(), 17);
        let max = format!("Content-Length: {MAX_BODY}\r\n");
        assert_eq!(body_len(&post(&max)).unwrap(), 1 << 20);

        for over in [MAX_BODY + 1, u64::MAX] {
            let err = body_len(&post(&format!("Content-Length: {over}\r\n"))).unwrap_err();
            assert_eq!(err.status, 413);
            let v: serde_json::Value = serde_json::from_slice(&err.body).unwrap();
            assert_eq!(v["error"]["code"], "too_large");
        }
        let err = body_len(&post("Transfer-Encoding: chunked\r\n")).unwrap_err();
        assert_eq!((err.status, err.content_type), (411, "application/json"));
        assert_eq!(
            body_len(&head("GET / HTTP/1.1\r\nContent-Length: 5\r\n\r\n")).unwrap(),
            5
        );
    }

    #[test]
    fn keep_alive_rules() {
        for (req, want) in [
            ("GET / HTTP/1.1\r\n\r\n", true),
            ("GET / HTTP/1.1\r\nConnection: keep-alive\r\n\r\n", true),
            ("GET / HTTP/1.1\r\nConnection: close\r\n\r\n", false),
            (
                "GET / HTTP/1.1\r\nConnection: Keep-Alive, CLOSE\r\n\r\n",
                false,
            ),
            ("GET / HTTP/1.0\r\n\r\n", false),
            ("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", true),
            (
                "GET / HTTP/1.0\r\nConnection: keep-alive, close\r\n\r\n",
                false,
            ),
        ] {
            assert_eq!(keep_alive(&head(req)), want, "{req}");
        }
    }
}
