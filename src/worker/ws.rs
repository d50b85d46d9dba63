//! WebSocket traffic of one worker: frames in, requests to owners, replies.

use std::sync::Arc;

use bytes::Bytes;

use super::conn::Phase;
use super::Worker;
use crate::broker::{Origin, ToOwner};
use crate::conn::{Admission, Rate};
use crate::metrics::MsgType;
use crate::proto::{self, server, ErrorCode, Request};
use crate::ws::{self, Message, OpCode, Role};

/// The message limit of `/echo`: Autobahn's 9.* cases send up to 16 MiB.
pub(super) const ECHO_MAX_MESSAGE: usize = 16 << 20;

impl Worker {
    /// Decodes and handles every whole frame in `data`; returns the bytes
    /// used. The decoder is lent out of the connection for the duration so
    /// handlers may borrow the worker freely.
    pub(super) fn on_ws(&mut self, key: usize, data: &mut [u8]) -> usize {
        let Some(wsc) = self.conns.get_mut(key).and_then(|c| c.ws_mut()) else {
            return data.len();
        };
        if wsc.session.replies.closing() {
            // The close is decided: nothing read after it is processed.
            return data.len();
        }
        let mut decoder = std::mem::replace(&mut wsc.decoder, ws::Decoder::new(Role::Server, 0));
        let max = decoder.max_message();
        // Lent out like the decoder; it holds no connection's state.
        let mut inflater = std::mem::take(&mut self.inflater);
        let mut pos = 0;
        loop {
            match decoder.decode(&mut data[pos..]) {
                Ok((0, None)) => break,
                Ok((n, msg)) => {
                    pos += n;
                    match msg.map(|m| inflater.message(m, max)) {
                        None => {}
                        Some(Ok(msg)) => self.on_message(key, msg),
                        Some(Err(e)) => {
                            tracing::debug!(conn = key, error = ?e, "compressed message refused");
                            self.begin_close(key, e.close_code(), "", false);
                            pos = data.len();
                            break;
                        }
                    }
                    if !self.is_open_ws(key) {
                        pos = data.len();
                        break;
                    }
                }
                Err(e) => {
                    tracing::debug!(conn = key, error = ?e, "websocket protocol error");
                    self.begin_close(key, e.close_code(), "", false);
                    pos = data.len();
                    break;
                }
            }
        }
        self.inflater = inflater;
        if let Some(wsc) = self.conns.get_mut(key).and_then(|c| c.ws_mut()) {
            wsc.decoder = decoder;
        }
        pos
    }

    /// A WebSocket whose close is not decided yet.
    fn is_open_ws(&self, key: usize) -> bool {
        self.conns.get(key).is_some_and(|c| match &c.phase {
            Phase::Ws(ws) => !ws.session.replies.closing(),
            _ => false,
        })
    }

    fn on_message(&mut self, key: usize, msg: Message<'_>) {
        let now = self.now;
        let Some(wsc) = self.conns.get_mut(key).and_then(|c| c.ws_mut()) else {
            return;
        };
        wsc.last_recv = now;
        let echo = wsc.echo;
        match msg {
            Message::Text(t) if echo => self.echo(key, OpCode::Text, t),
            Message::Binary(b) if echo => self.echo(key, OpCode::Binary, b),
            Message::Text(t) => self.on_text(key, t),
            Message::Binary(_) => {
                if self.admit(key, None) {
                    self.reply_error(
                        key,
                        None,
                        ErrorCode::BadRequest,
                        "binary frames are not accepted: send JSON text",
                    );
                }
            }
            Message::Ping(p) => self.send_frame(key, ws::server_frame(OpCode::Pong, p)),
            Message::Pong(_) => {}
            // `on_ws` inflates every compressed message before this.
            Message::Deflated { .. } => self.begin_close(key, 1002, "", false),
            Message::Close(frame) => {
                // RFC 6455 §5.5.1: answer with a close frame, echoing the code.
                let code = frame.map_or(1000, |f| f.code);
                self.begin_close(key, code, "", false);
            }
        }
    }

    /// Sends a message back on `/echo`. The queue must hold one echo of the
    /// largest message the endpoint accepts, whatever `--outbound-limit`
    /// says, or the conformance suite's 4-16 MiB cases would end in 4008.
    fn echo(&mut self, key: usize, op: OpCode, payload: &[u8]) {
        let limit = self
            .config
            .outbound_limit
            // An unmasked header is at most 10 bytes.
            .max(ECHO_MAX_MESSAGE + 10);
        // Compressed back when the connection negotiated it, so the
        // conformance suite's 12.* and 13.* cases check our compressor too.
        let window = self.conns.get(key).and_then(|c| c.deflate);
        let compressed = match (window, self.config.compress_from()) {
            (Some(w), Some(min)) if payload.len() >= min => self.deflater.frame(op, payload, w),
            _ => None,
        };
        let frame = compressed.unwrap_or_else(|| ws::server_frame(op, payload));
        self.queue_frame(key, frame, limit);
    }

    /// Charges one data message; answers `rate_limited` (and closes on the
    /// tenth in a row) when refused.
    fn admit(&mut self, key: usize, id: Option<u64>) -> bool {
        let rate = Rate {
            per_second: self.config.rate,
            burst: self.config.burst,
        };
        let now = self.now;
        let Some(wsc) = self.conns.get_mut(key).and_then(|c| c.ws_mut()) else {
            return false;
        };
        match wsc.session.admit(rate, now) {
            Admission::Allowed => true,
            Admission::Limited => {
                self.metrics.rate_limited();
                self.reply_error(key, id, ErrorCode::RateLimited, "slow down");
                false
            }
            Admission::LimitedClose => {
                self.metrics.rate_limited();
                self.reply_error(key, id, ErrorCode::RateLimited, "slow down");
                self.begin_close(key, 4009, "rate limit exceeded repeatedly", false);
                false
            }
        }
    }

    fn on_text(&mut self, key: usize, text: &[u8]) {
        let env = proto::parse(text);
        self.metrics.received(match &env.request {
            Ok(Request::Join { .. }) => MsgType::Join,
            Ok(Request::Leave { .. }) => MsgType::Leave,
            Ok(Request::Action { .. }) => MsgType::Action,
            Ok(Request::Presence { .. }) => MsgType::Presence,
            Ok(Request::Ping) => MsgType::Ping,
            Err(_) => MsgType::Invalid,
        });
        if !self.admit(key, env.id) {
            return;
        }
        match env.request {
            Ok(req) => self.on_request(key, env.id, req),
            Err(e) => self.reply_error(key, env.id, e.code, &e.message),
        }
    }

    fn on_request(&mut self, key: usize, id: Option<u64>, req: Request<'_>) {
        let Some(who) = self.conn_id(key) else {
            return;
        };
        let max_channels = self.config.max_channels;
        let broker_up = self.broker_up();
        let config = self.config.clone();
        let Some(wsc) = self.conns.get_mut(key).and_then(|c| c.ws_mut()) else {
            return;
        };
        let session = &mut wsc.session;
        let result: Result<(), (ErrorCode, &str)> = match req {
            Request::Ping => {
                let frame = ws::text_frame_with(|b| server::pong(b, id));
                self.send_local_reply(key, frame);
                return;
            }
            Request::Join { channel, since } => {
                let existing = session.channels.get(&*channel).cloned();
                if !session.may_join(&channel) {
                    Err((
                        ErrorCode::Forbidden,
                        "the token does not allow this channel",
                    ))
                } else if existing.is_none() && session.channels.len() >= max_channels {
                    Err((
                        ErrorCode::TooManyChannels,
                        "too many channels on this connection",
                    ))
                } else if !broker_up {
                    Err((ErrorCode::Unavailable, "the broker is unreachable"))
                } else {
                    let rejoin = existing.is_some();
                    let channel: Arc<str> = existing.unwrap_or_else(|| Arc::from(&*channel));
                    session.channels.insert(channel.clone());
                    session.replies.ask();
                    let member = session.member.clone();
                    let owner = self.outbox.owner_of(&channel);
                    self.outbox.to_owner(
                        owner,
                        ToOwner::Join {
                            channel,
                            who,
                            member,
                            id,
                            since,
                            rejoin,
                        },
                    );
                    Ok(())
                }
            }
            Request::Leave { channel } => match session.channels.take(&*channel) {
                None => Err((ErrorCode::NotJoined, "not joined to this channel")),
                Some(channel) => {
                    session.replies.ask();
                    let owner = self.outbox.owner_of(&channel);
                    self.outbox.to_owner(
                        owner,
                        ToOwner::Leave {
                            channel,
                            who,
                            id,
                            reply: true,
                        },
                    );
                    Ok(())
                }
            },
            Request::Action { channel, action } => {
                if !config.client_publish_allowed(&channel) {
                    Err((
                        ErrorCode::Forbidden,
                        "clients may not publish in this namespace",
                    ))
                } else {
                    match session.channels.get(&*channel).cloned() {
                        None => Err((ErrorCode::NotJoined, "join the channel before acting in it")),
                        Some(_) if !broker_up => {
                            Err((ErrorCode::Unavailable, "the broker is unreachable"))
                        }
                        Some(channel) => {
                            if id.is_some() {
                                session.replies.ask();
                            }
                            let origin = Origin::Client(who, session.member.clone());
                            let owner = self.outbox.owner_of(&channel);
                            self.outbox.to_owner(
                                owner,
                                ToOwner::Publish {
                                    channel,
                                    origin,
                                    id,
                                    action: Bytes::copy_from_slice(action.get().as_bytes()),
                                },
                            );
                            Ok(())
                        }
                    }
                }
            }
            Request::Presence { channel } => {
                if !config.presence_on(&channel) {
                    Err((ErrorCode::Forbidden, "presence is off in this namespace"))
                } else {
                    match session.channels.get(&*channel).cloned() {
                        None => Err((ErrorCode::NotJoined, "join the channel first")),
                        Some(channel) => {
                            session.replies.ask();
                            let owner = self.outbox.owner_of(&channel);
                            self.outbox
                                .to_owner(owner, ToOwner::Presence { channel, who, id });
                            Ok(())
                        }
                    }
                }
            }
        };
        if let Err((code, message)) = result {
            self.reply_error(key, id, code, message);
        }
    }

    pub(super) fn reply_error(
        &mut self,
        key: usize,
        id: Option<u64>,
        code: ErrorCode,
        message: &str,
    ) {
        self.metrics.error(code.as_str());
        let frame = ws::text_frame_with(|b| server::error(b, id, code, message));
        self.send_local_reply(key, frame);
    }

    /// Sends a reply made on this worker; while owners still owe earlier
    /// replies it waits behind them (see `conn::Replies`). What waits counts
    /// against the outbound limit like what is queued.
    fn send_local_reply(&mut self, key: usize, frame: Bytes) {
        let limit = self.config.outbound_limit;
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        let queued = conn.out.queued_bytes();
        let Phase::Ws(wsc) = &mut conn.phase else {
            return self.send_frame(key, frame);
        };
        let replies = &mut wsc.session.replies;
        match replies.local(frame) {
            Some(frame) => self.send_frame(key, frame),
            None if queued + replies.parked_bytes() > limit => {
                self.begin_close(key, 4008, "slow consumer", true);
            }
            None => {}
        }
    }

    /// Sends the frames of a reply an owner owed, then the local replies
    /// and the close that waited for it.
    pub(super) fn send_owed(&mut self, key: usize, frames: impl IntoIterator<Item = Bytes>) {
        if let Some(wsc) = self.conns.get_mut(key).and_then(|c| c.ws_mut()) {
            wsc.session.replies.arrived();
        }
        for frame in frames {
            self.send_frame(key, frame);
        }
        while let Some(frame) = self
            .conns
            .get_mut(key)
            .and_then(|c| c.ws_mut())
            .and_then(|wsc| wsc.session.replies.pop_ready())
        {
            self.send_frame(key, frame);
        }
        self.close_if_settled(key);
    }

    pub(super) fn broker_up(&self) -> bool {
        self.shared
            .links_down
            .load(std::sync::atomic::Ordering::Relaxed)
            == 0
    }
}
