//! HTTP/1.1 responses (RFC 9112 §4, §6), built as values and encoded to bytes.
//!
//! Every response carries a `Content-Length`: switchboard's bodies are small
//! and built in memory, so chunked output would add nothing, and a known
//! length keeps keep-alive framing trivial for clients.

use std::fmt::Write as _;

/// A response ready to encode.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    /// Empty means no `Content-Type` field.
    pub content_type: &'static str,
    /// Extra fields, in order (`Allow`, `WWW-Authenticate`, ...).
    pub headers: Vec<(&'static str, String)>,
    pub body: Vec<u8>,
}

const TEXT: &str = "text/plain; charset=utf-8";
const JSON: &str = "application/json";

impl Response {
    pub fn text(status: u16, body: impl Into<Vec<u8>>) -> Self {
        Self::with_type(status, TEXT, body.into())
    }

    pub fn json(status: u16, body: Vec<u8>) -> Self {
        Self::with_type(status, JSON, body)
    }

    /// `{"error":{"code":..,"message":..}}` as `application/json`, the shape
    /// every `/api/*` error has (PROTOCOL.md §9).
    pub fn api_error(status: u16, code: &str, message: &str) -> Self {
        let body = serde_json::json!({ "error": { "code": code, "message": message } });
        Self::json(status, body.to_string().into_bytes())
    }

    /// Adds a field. CR and LF in `value` become spaces: a value is often
    /// built from request data, and a raw line break would let it write
    /// fields (or a whole response) of its own.
    pub fn with_header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        let mut value = value.into();
        if value.contains(['\r', '\n']) {
            value = value.replace(['\r', '\n'], " ");
        }
        self.headers.push((name, value));
        self
    }

    fn with_type(status: u16, content_type: &'static str, body: Vec<u8>) -> Self {
        Response {
            status,
            content_type,
            headers: Vec::new(),
            body,
        }
    }

    /// The full response: status line, fields, empty line, body.
    ///
    /// `Content-Length` is always the body's length, also with `head_only`
    /// (the answer to HEAD, which omits the body but describes it, RFC 9110
    /// §9.3.2). 1xx, 204 and 304 never carry a length or a body. The
    /// `Connection` field says what the caller decided: `close` (the caller
    /// then closes after writing), or `keep-alive`, which HTTP/1.1 clients
    /// assume anyway and HTTP/1.0 clients need to hear.
    pub fn encode(&self, keep_alive: bool, head_only: bool) -> Vec<u8> {
        let mut head = String::with_capacity(128);
        // Writing to a String cannot fail.
        let _ = write!(head, "HTTP/1.1 {} {}\r\n", self.status, reason(self.status));
        if !self.content_type.is_empty() {
            let _ = write!(head, "Content-Type: {}\r\n", self.content_type);
        }
        let bodiless = matches!(self.status, 100..=199 | 204 | 304);
        if !bodiless {
            let _ = write!(head, "Content-Length: {}\r\n", self.body.len());
        }
        for (name, value) in &self.headers {
            let _ = write!(head, "{name}: {value}\r\n");
        }
        head.push_str(if keep_alive {
            "Connection: keep-alive\r\n\r\n"
        } else {
            "Connection: close\r\n\r\n"
        });
        let mut out = head.into_bytes();
        if !head_only && !bodiless {
            out.extend_from_slice(&self.body);
        }
        out
    }
}

/// The reason phrase for `status` (RFC 9110 §15). Clients ignore it; it is
/// there for people reading traces. Unknown codes get an empty phrase, which
/// the grammar allows.
pub fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        101 => "Switching Protocols",
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        301 => "Moved Permanently",
        302 => "Found",
        304 => "Not Modified",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        411 => "Length Required",
        413 => "Content Too Large",
        414 => "URI Too Long",
        415 => "Unsupported Media Type",
        426 => "Upgrade Required",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        505 => "HTTP Version Not Supported",
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encoded(resp: &Response, keep_alive: bool, head_only: bool) -> String {
        String::from_utf8(resp.encode(keep_alive, head_only)).unwrap()
    }

    #[test]
    fn text_response_bytes() {
        assert_eq!(
            encoded(&Response::text(200, "ok\n"), true, false),
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\n\
             Content-Length: 3\r\nConnection: keep-alive\r\n\r\nok\n"
        );
    }

    #[test]
    fn close_and_extra_headers() {
        let resp = Response::json(405, b"{}".to_vec()).with_header("Allow", "POST");
        assert_eq!(
            encoded(&resp, false, false),
            "HTTP/1.1 405 Method Not Allowed\r\nContent-Type: application/json\r\n\
             Content-Length: 2\r\nAllow: POST\r\nConnection: close\r\n\r\n{}"
        );
    }

    #[test]
    fn head_keeps_the_length_but_not_the_body() {
        let text = encoded(&Response::text(200, "<p>hi</p>"), true, true);
        assert!(text.starts_with("HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\n"));
        assert!(text.contains("\r\nContent-Length: 9\r\n"));
        assert!(text.ends_with("\r\n\r\n"), "{text}");
    }

    #[test]
    fn bodiless_statuses_have_no_length() {
        let mut resp = Response::text(204, "ignored");
        resp.content_type = "";
        assert_eq!(
            encoded(&resp, true, false),
            "HTTP/1.1 204 No Content\r\nConnection: keep-alive\r\n\r\n"
        );
    }

    #[test]
    fn api_error_shape() {
        let resp = Response::api_error(400, "invalid_channel", "bad \"name\"\n");
        assert_eq!(resp.status, 400);
        assert_eq!(resp.content_type, "application/json");
        let v: serde_json::Value = serde_json::from_slice(&resp.body).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"error": {"code": "invalid_channel", "message": "bad \"name\"\n"}})
        );
        assert_eq!(v.as_object().unwrap().len(), 1);
    }

    #[test]
    fn header_values_cannot_inject_lines() {
        let resp = Response::text(200, "").with_header("X-Echo", "a\r\nSet-Cookie: x=1");
        let text = encoded(&resp, true, false);
        assert!(
            text.contains("\r\nX-Echo: a  Set-Cookie: x=1\r\n"),
            "{text}"
        );
        assert_eq!(text.matches("\r\n").count(), 6);
    }

    #[test]
    fn reasons() {
        for (status, phrase) in [
            (101, "Switching Protocols"),
            (200, "OK"),
            (400, "Bad Request"),
            (401, "Unauthorized"),
            (403, "Forbidden"),
            (404, "Not Found"),
            (405, "Method Not Allowed"),
            (411, "Length Required"),
            (413, "Content Too Large"),
            (426, "Upgrade Required"),
            (431, "Request Header Fields Too Large"),
            (503, "Service Unavailable"),
            (299, ""),
        ] {
            assert_eq!(reason(status), phrase);
        }
        assert!(encoded(&Response::text(299, ""), false, false).starts_with("HTTP/1.1 299 \r\n"));
    }
}
