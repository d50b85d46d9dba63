//! The HTTP side of switchboard (PROTOCOL.md §1, §9): request heads, the
//! WebSocket opening handshake, routing, responses and the embedded pages and client (`assets`).
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
pub mod assets;
pub mod request;
pub mod response;
pub mod route;
pub mod upgrade;

pub use api::{check_api_key, parse_publish};
pub use assets::Asset;
pub use request::{param, parse_head, query_param, Head, HttpError, Method, Param, MAX_HEAD};
pub use response::{reason, Response};
pub use route::{body_len, is_api_path, keep_alive, route, Route, MAX_BODY};
pub use upgrade::{
    check_upgrade, origin_allowed, switching_protocols, Upgrade, UpgradeError, SUBPROTOCOL,
};
