//! The worker's side of token expiry and `refresh` (PROTOCOL.md §6, §8):
//! thin glue between the connection and `auth::session`, which decides.
//!
//! - At the deadline (`exp` + leeway, checked by the timer scan of
//!   `Worker::tick`) the connection is closed with 4010 through
//!   `begin_close`, so the replies it is owed go out first.
//! - `refresh` verifies the new token exactly as the handshake does, then
//!   answers `refreshed` (moving the deadline and replacing `channels` and
//!   `info`), `unauthorized`, `forbidden` or `bad_request`.
//! - A joined channel the new `channels` no longer allows is left as if the
//!   client had sent `leave_channel` (the owner removes the member and tells
//!   the others, on every node); when the owner confirms, the client gets
//!   `{"type":"left","channel":..,"reason":"forbidden"}`. That notice counts
//!   as an owed reply, so a close decided meanwhile waits for it.

use std::sync::Arc;

use super::Worker;
use crate::auth::session::{self, RefreshError, CLOSE_TOKEN_EXPIRED};
use crate::auth::{self, Identity};
use crate::broker::{MemberInfo, ToOwner};
use crate::id::ConnId;
use crate::proto::{server, ErrorCode};
use crate::ws;

impl Worker {
    /// The token of `key` expired without a successful refresh.
    pub(super) fn expire_token(&mut self, key: usize) {
        tracing::debug!(conn = key, "token expired");
        self.begin_close(key, CLOSE_TOKEN_EXPIRED, "token expired", false);
    }

    /// `{"type":"refresh","token":..}` of connection `key`.
    pub(super) fn on_refresh(&mut self, key: usize, id: Option<u64>, token: &str) {
        let now_unix = auth::unix_now();
        let verified = self.shared.auth.as_ref().map(|a| a.verify(token, now_unix));
        let Some(user) = self
            .conns
            .get_mut(key)
            .and_then(|c| c.ws_mut())
            .map(|wsc| wsc.session.member.user.clone())
        else {
            return;
        };
        match session::refresh(&user, verified) {
            Ok(identity) => self.apply_refresh(key, id, identity, now_unix),
            Err(RefreshError::AuthOff) => self.reply_error(
                key,
                id,
                ErrorCode::BadRequest,
                "authentication is off: there is no token to refresh",
            ),
            Err(RefreshError::Unauthorized(why)) => {
                tracing::debug!(conn = key, reason = %why, "refresh token refused");
                self.reply_error(
                    key,
                    id,
                    ErrorCode::Unauthorized,
                    "the token is not valid; the connection keeps its old one",
                );
            }
            Err(RefreshError::OtherUser) => self.reply_error(
                key,
                id,
                ErrorCode::Forbidden,
                "the token is for another user",
            ),
        }
    }

    /// A valid token for the same user: new deadline, `channels` and
    /// `info`; leaves what is no longer allowed; answers `refreshed`.
    fn apply_refresh(&mut self, key: usize, id: Option<u64>, new: Identity, now_unix: u64) {
        let Some(me) = self.conn_id(key) else { return };
        let now = self.now;
        let leeway = self.config.jwt_leeway_s;
        let Some(wsc) = self.conns.get_mut(key).and_then(|c| c.ws_mut()) else {
            return;
        };
        let s = &mut wsc.session;
        s.token.renew(new.exp, leeway, now_unix, now);
        let info_changed = match (&s.member.info, &new.info) {
            (None, None) => false,
            (Some(a), Some(b)) => a.get() != b.get(),
            _ => true,
        };
        if info_changed {
            s.member = Arc::new(MemberInfo {
                user: s.member.user.clone(),
                conn: s.member.conn.clone(),
                info: new.info,
            });
        }
        s.allowed = new.channels;
        let gone = session::no_longer_allowed(&s.channels, s.allowed.as_deref());
        for channel in &gone {
            s.channels.remove(channel);
        }
        // `refreshed` first, then the `left` notices as owners confirm.
        let frame = ws::text_frame_with(|b| server::refreshed(b, id, new.exp));
        self.send_local_reply(key, frame);
        for channel in gone {
            let Some(wsc) = self.conns.get_mut(key).and_then(|c| c.ws_mut()) else {
                return;
            };
            wsc.session.token.start_forbidden_leave(channel.clone());
            // The notice is owed: it comes when the owner confirms.
            wsc.session.replies.ask();
            let owner = self.outbox.owner_of(&channel);
            self.outbox.to_owner(
                owner,
                ToOwner::Leave {
                    channel,
                    who: me,
                    id: None,
                    reply: false,
                },
            );
        }
    }

    /// An owner confirmed a leave that asked for no reply: a refresh's
    /// forbidden leave gets its `left` notice here; any other (a closing
    /// connection's) needs nothing.
    pub(super) fn on_unreplied_left(&mut self, channel: &str, who: ConnId) {
        let Some(wsc) = self.conn_for(who).and_then(|c| c.ws_mut()) else {
            return;
        };
        if !wsc.session.token.finish_forbidden_leave(channel) {
            return;
        }
        let frame = ws::text_frame_with(|b| server::left_with_reason(b, channel, "forbidden"));
        self.send_owed(who.key(), [frame]);
    }
}
