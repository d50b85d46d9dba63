//! The HTTP side of switchboard (PROTOCOL.md §1, §9): request heads, the
//! WebSocket opening handshake, routing, responses and the demo page.
//!
//! Everything here is pure: bytes in, values and bytes out. The worker reads
//! into a buffer and calls [`parse_head`] until it returns a head, then:
//!
//! 1. [`route()`] the head; `NotFound`/`MethodNotAllowed` answer with
//!    [`Route::error_response`].
//! 2. For `/ws`: [`check_upgrade`] (426/400 via [`UpgradeError::response`]),
//!    then authentication (401) and [`origin_allowed`] (403), then write
//!    [`switching_protocols`] and hand the socket to the WebSocket core.
//! 3. Otherwise: [`body_len`] says how many body bytes to wait for; `/api/*`
//!    runs [`check_api_key`] and, for publish, [`parse_publish`]; the answer
//!    is [`Response::encode`]d with [`keep_alive`] and `head_only` for HEAD.
//!    The next pipelined request starts after the head and body.
//!
//! Every parse error and every 4xx before the body is read ends the
//! connection (`keep_alive = false`), since what follows cannot be framed.

pub mod api;
pub mod request;
pub mod response;
pub mod route;
pub mod upgrade;

pub use api::{check_api_key, parse_publish};
pub use request::{param, parse_head, query_param, Head, HttpError, Method, Param, MAX_HEAD};
pub use response::{reason, Response};
pub use route::{body_len, is_api_path, keep_alive, route, Route, MAX_BODY};
pub use upgrade::{
    check_upgrade, origin_allowed, switching_protocols, Upgrade, UpgradeError, SUBPROTOCOL,
};

/// The demo page served at `/`: one self-contained HTML file (no external
/// assets) that talks the §1-§4 protocol to `/ws` on the same host.
pub const DEMO_PAGE: &str = include_str!("demo.html");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn demo_page_is_self_contained() {
        assert!(DEMO_PAGE.starts_with("<!doctype html>"));
        assert!(DEMO_PAGE.contains("/ws?user="));
        for external in ["src=\"http", "href=\"http", "<link ", "src=\"//", "@import"] {
            assert!(!DEMO_PAGE.contains(external), "{external}");
        }
        assert!(DEMO_PAGE.lines().count() <= 260);
        let resp = Response::html(DEMO_PAGE);
        assert_eq!(
            (resp.status, resp.content_type),
            (200, "text/html; charset=utf-8")
        );
    }
}
