//! Token expiry and `refresh` (PROTOCOL.md §6, §8) on an open WebSocket:
//! thin glue between the session and `auth::session`, which decides.
//!
//! - At the deadline (`exp` + leeway, one of the connection's timeouts)
//!   the connection is closed with 4010 through `begin_close`, so the
//!   replies it is owed go out first.
//! - `refresh` verifies the new token exactly as the handshake does, then
//!   answers `refreshed` (moving the deadline and replacing `channels` and
//!   `info`), `unauthorized`, `forbidden` or `bad_request`.
//! - A joined channel the new `channels` no longer allows is left as if the
//!   client had sent `leave_channel` (the owner removes the member and tells
//!   the others, on every node); when the owner confirms, the client gets
//!   `{"type":"left","channel":..,"reason":"forbidden"}`. That notice counts
//!   as an owed reply, so a close decided meanwhile waits for it.

use std::sync::Arc;

use bytes::Bytes;

use super::Cx;
use crate::auth::session::{self, RefreshError};
use crate::broker::{MemberInfo, ToOwner};
use crate::conn::Session;
use crate::id::ConnId;
use crate::proto::{server, ErrorCode};
use crate::ws;

/// The reason of a 4010 close frame.
pub(super) const EXPIRED_REASON: &str = "token expired";

/// A refresh that passed: the `refreshed` frame, and the joined channels
/// the new token no longer allows.
pub(super) struct Refreshed {
    pub frame: Bytes,
    pub gone: Vec<Arc<str>>,
}

/// Starts the token life of a new WebSocket whose token has `exp` (0: no
/// token).
pub(super) fn start(session: &mut Session, exp: u64, cx: &Cx<'_>) {
    session.token = session::TokenLife::new(exp, cx.node.config.jwt_leeway_s, cx.unix_secs, cx.now);
}

/// Checks a `refresh` and, when it passes, applies it to the session:
/// returns the `refreshed` frame and the channels to leave (hand them to
/// [`leave_forbidden`] after sending the frame, so that `refreshed` comes
/// first).
pub(super) fn refresh(
    session: &mut Session,
    id: Option<u64>,
    token: &str,
    cx: &Cx<'_>,
) -> Result<Refreshed, (ErrorCode, &'static str)> {
    let verified = cx.node.auth.as_ref().map(|a| a.verify(token, cx.unix_secs));
    let new = session::refresh(&session.member.user, verified).map_err(|e| match e {
        RefreshError::AuthOff => (
            ErrorCode::BadRequest,
            "authentication is off: there is no token to refresh",
        ),
        RefreshError::Unauthorized(why) => {
            tracing::debug!(reason = %why, "refresh token refused");
            (
                ErrorCode::Unauthorized,
                "the token is not valid; the connection keeps its old one",
            )
        }
        RefreshError::OtherUser => (ErrorCode::Forbidden, "the token is for another user"),
    })?;
    session
        .token
        .renew(new.exp, cx.node.config.jwt_leeway_s, cx.unix_secs, cx.now);
    let info_changed = match (&session.member.info, &new.info) {
        (None, None) => false,
        (Some(a), Some(b)) => a.get() != b.get(),
        _ => true,
    };
    if info_changed {
        session.member = Arc::new(MemberInfo {
            user: session.member.user.clone(),
            conn: session.member.conn.clone(),
            info: new.info,
        });
    }
    session.allowed = new.channels;
    let gone = session::no_longer_allowed(session.channels.iter(), session.allowed.as_deref());
    for channel in &gone {
        session.channels.remove(channel);
    }
    let frame = ws::text_frame_with(|b| server::refreshed(b, id, new.exp));
    Ok(Refreshed { frame, gone })
}

/// Leaves `gone` for connection `who`: the owners are told, and each
/// `left` notice is owed until the owner confirms ([`confirmed`]).
pub(super) fn leave_forbidden(
    session: &mut Session,
    who: ConnId,
    gone: Vec<Arc<str>>,
    cx: &mut Cx<'_>,
) {
    for channel in gone {
        session.token.start_forbidden_leave(channel.clone());
        session.replies.ask();
        let owner = cx.out.owner_of(&channel);
        cx.out.to_owner(
            owner,
            ToOwner::Leave {
                channel,
                who,
                id: None,
                reply: false,
            },
        );
    }
}

/// An owner confirmed a leave that asked for no reply: for a refresh's
/// forbidden leave, the `left` notice to send (as an owed reply); for any
/// other (a closing connection's), nothing.
pub(super) fn confirmed(session: &mut Session, channel: &str) -> Option<Bytes> {
    session
        .token
        .finish_forbidden_leave(channel)
        .then(|| ws::text_frame_with(|b| server::left_with_reason(b, channel, "forbidden")))
}
