//! The WebSocket phase: frames in, requests to owners, replies out, and the
//! close that waits for the replies owed (PROTOCOL.md §8; `conn::Replies`).
//!
//! The decoder and the rest of the state are separate fields, so a message
//! borrowed from the decoder is handled by [`WsState`] while the decoder
//! stays where it is. A handler that must close the connection records it
//! ([`WsState::close`]) and the decode loop applies it once the message is
//! done.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::{Connection, Cx, Phase};
use crate::broker::{MemberInfo, Origin, ToOwner};
use crate::conn::{Admission, CloseNow, Outbound, Rate, Session};
use crate::id::ConnId;
use crate::metrics::MsgType;
use crate::proto::{self, server, ErrorCode, Request};
use crate::ws::deflate::WindowBits;
use crate::ws::{self, Decoder, Message, OpCode, Role};

/// The message limit of `/echo`: Autobahn's 9.* cases send up to 16 MiB.
pub(super) const ECHO_MAX_MESSAGE: usize = 16 << 20;

/// A server ping with no payload (RFC 6455 §5.5.2), shared by every
/// heartbeat.
static PING: [u8; 2] = [0x89, 0x00];

/// An open WebSocket.
#[derive(Debug)]
pub(super) struct Ws {
    decoder: Decoder,
    state: WsState,
}

/// A close a handler decided, applied once its message is handled.
#[derive(Debug, Clone, Copy)]
struct CloseRequest {
    code: u16,
    /// A slow consumer: unsent frames are dropped first.
    drop_queue: bool,
}

impl CloseRequest {
    /// The close frame's reason: said where it helps the client.
    fn reason(self) -> &'static str {
        match self.code {
            4008 => "slow consumer",
            4009 => "rate limit exceeded repeatedly",
            _ => "",
        }
    }
}

#[derive(Debug)]
struct WsState {
    session: Session,
    /// `/echo` (the conformance-suite endpoint) instead of the protocol.
    echo: bool,
    /// permessage-deflate was negotiated with this compressor window: the
    /// connection's only compression state.
    deflate: Option<WindowBits>,
    last_recv: Instant,
    next_ping: Instant,
    close: Option<CloseRequest>,
}

impl Ws {
    pub(super) fn new(
        member: Arc<MemberInfo>,
        allowed: Option<Vec<String>>,
        echo: bool,
        deflate: Option<WindowBits>,
        cx: &Cx<'_>,
    ) -> Self {
        let config = &cx.node.config;
        let rate = Rate {
            per_second: config.rate,
            burst: config.burst,
        };
        let max = if echo {
            ECHO_MAX_MESSAGE
        } else {
            config.max_message_bytes
        };
        let mut decoder = Decoder::new(Role::Server, max);
        decoder.set_deflate(deflate.is_some());
        Ws {
            decoder,
            state: WsState {
                session: Session::new(member, allowed, rate, cx.now),
                echo,
                deflate,
                last_recv: cx.now,
                next_ping: cx.now + config.heartbeat,
                close: None,
            },
        }
    }

    /// Sets the expiry deadline of the connection's token (PROTOCOL.md §6).
    pub(super) fn start_token_life(&mut self, exp: u64, cx: &Cx<'_>) {
        super::token::start(&mut self.state.session, exp, cx);
    }

    pub(super) fn deflate_window(&self) -> Option<WindowBits> {
        self.state.deflate
    }

    /// Whether a close is decided (then input is ignored).
    pub(super) fn closing(&self) -> bool {
        self.state.session.replies.closing()
    }

    /// The next heartbeat or deadline.
    pub(super) fn next_timeout(&self, heartbeat: Duration) -> Instant {
        let st = &self.state;
        match st.session.replies.close_deadline() {
            Some(t) => t,
            None => {
                let next = st.next_ping.min(st.last_recv + heartbeat * 3);
                st.session.token.deadline().map_or(next, |t| next.min(t))
            }
        }
    }

    /// The channels the connection asked to join (for `leave_all`).
    pub(super) fn take_channels(&mut self) -> Vec<Arc<str>> {
        self.state.session.channels.drain().collect()
    }
}

impl Connection {
    /// Decodes and handles every whole frame in `data`; returns the bytes
    /// used.
    pub(super) fn on_ws(&mut self, data: &mut [u8], cx: &mut Cx<'_>) -> usize {
        let mut pos = 0;
        loop {
            let Phase::Ws(ws) = &mut self.phase else {
                return data.len();
            };
            if ws.closing() {
                // The close is decided: nothing read after it is processed.
                return data.len();
            }
            let Ws { decoder, state } = &mut **ws;
            let max = decoder.max_message();
            match decoder.decode(&mut data[pos..]) {
                Ok((0, None)) => return pos,
                Ok((n, msg)) => {
                    pos += n;
                    match msg {
                        None => {}
                        Some(msg @ Message::Deflated { .. }) => {
                            // Lent out of the context so the handler may use
                            // the rest of it; the message borrows it.
                            let mut inflater = std::mem::take(&mut cx.deflate.inflater);
                            match inflater.message(msg, max) {
                                Ok(msg) => state.on_message(msg, self.id, &mut self.out, cx),
                                Err(e) => {
                                    tracing::debug!(conn = ?self.id, error = ?e, "compressed message refused");
                                    state.close_with(e.close_code(), false);
                                }
                            }
                            cx.deflate.inflater = inflater;
                        }
                        Some(msg) => state.on_message(msg, self.id, &mut self.out, cx),
                    }
                }
                Err(e) => {
                    tracing::debug!(conn = ?self.id, error = ?e, "websocket protocol error");
                    state.close_with(e.close_code(), false);
                }
            }
            self.apply_close_request(cx);
        }
    }

    /// Applies a close a handler decided.
    fn apply_close_request(&mut self, cx: &mut Cx<'_>) {
        let Phase::Ws(ws) = &mut self.phase else {
            return;
        };
        if let Some(c) = ws.state.close.take() {
            self.begin_close(c.code, c.reason(), c.drop_queue, cx);
        }
    }

    /// Decides the close of the connection: leave every channel, then
    /// queue the close frame (dropping unsent frames first when
    /// `drop_queue`, for a slow consumer) once every reply owed for earlier
    /// requests has gone out (PROTOCOL.md §8), and give the peer
    /// `CLOSE_GRACE` to hang up. Input is ignored from here on.
    ///
    /// Every close of a WebSocket comes here, so every close code keeps the
    /// rule. A queue that overflows while the close waits ends the wait:
    /// the outbound bound wins over the owed replies.
    pub(super) fn begin_close(
        &mut self,
        code: u16,
        reason: &str,
        drop_queue: bool,
        cx: &mut Cx<'_>,
    ) {
        self.leave_all(cx);
        let last = match &mut self.phase {
            Phase::Closing { .. } | Phase::Done => return,
            Phase::Http { .. } => Bytes::new(),
            Phase::Ws(ws) => {
                let replies = &mut ws.state.session.replies;
                if drop_queue {
                    self.out.truncate_unstarted();
                    replies.drop_parked();
                }
                let decided = replies.request_close(ws::close_frame(code, reason), cx.now);
                if matches!(decided, CloseNow::Yes(_) | CloseNow::Waits) {
                    // The first close decided for this WebSocket: by the
                    // server, or the client's echoed.
                    cx.metrics.close(code);
                }
                match decided {
                    CloseNow::Yes(frame) => frame,
                    CloseNow::Waits => return,
                    CloseNow::AlreadyClosing if drop_queue => match replies.abandon() {
                        Some(frame) => frame,
                        None => return,
                    },
                    CloseNow::AlreadyClosing => return,
                }
            }
        };
        self.close_with(last, cx);
    }

    /// A close waiting for owed replies goes out once they have, or once
    /// its wait is over (then with what is still parked, within the bound).
    fn close_if_settled(&mut self, cx: &mut Cx<'_>) {
        let limit = cx.node.config.outbound_limit;
        let Phase::Ws(ws) = &mut self.phase else {
            return;
        };
        let replies = &mut ws.state.session.replies;
        let Some(frame) = replies.poll_close(cx.now) else {
            return;
        };
        for parked in replies.take_parked() {
            if self.out.push(parked, limit).is_err() {
                break;
            }
        }
        self.close_with(frame, cx);
    }

    /// Tells the owners this WebSocket left every channel it is in.
    pub(super) fn leave_all(&mut self, cx: &mut Cx<'_>) {
        let Phase::Ws(ws) = &mut self.phase else {
            return;
        };
        for channel in ws.take_channels() {
            let owner = cx.out.owner_of(&channel);
            cx.out.to_owner(
                owner,
                ToOwner::Leave {
                    channel,
                    who: self.id,
                    id: None,
                    reply: false,
                },
            );
        }
    }

    /// Heartbeat, silence and the wait of a decided close.
    pub(super) fn ws_timeout(&mut self, cx: &mut Cx<'_>) {
        let hb = cx.node.config.heartbeat;
        let Phase::Ws(ws) = &mut self.phase else {
            return;
        };
        let st = &mut ws.state;
        if st.session.replies.closing() {
            return self.close_if_settled(cx);
        }
        if st.session.token.expired(cx.now) {
            tracing::debug!(conn = ?self.id, "token expired");
            let code = crate::auth::session::CLOSE_TOKEN_EXPIRED;
            return self.begin_close(code, super::token::EXPIRED_REASON, false, cx);
        }
        if cx.now.saturating_duration_since(st.last_recv) >= hb * 3 {
            return self.begin_close(1001, "heartbeat timeout", false, cx);
        }
        if cx.now >= st.next_ping {
            st.next_ping = cx.now + hb;
            // An idle connection keeps one slot, the ping's.
            self.out.trim();
            st.send(&mut self.out, Bytes::from_static(&PING), cx);
            self.apply_close_request(cx);
        }
    }

    /// Events and replies overflowed the queue: a slow consumer (4008).
    pub fn handle_slow(&mut self, cx: &mut Cx<'_>) {
        self.begin_close(4008, "slow consumer", true, cx);
    }

    /// The owner applied a join: `frames` are the `joined` reply and any
    /// replayed events.
    pub(super) fn handle_joined(&mut self, frames: Vec<Bytes>, cx: &mut Cx<'_>) {
        self.owed_reply(frames, cx);
    }

    /// The owner applied a leave of `channel`; `frame` is the `left` reply
    /// when the client asked. A leave a `refresh` caused gets its notice
    /// here.
    pub(super) fn handle_left(&mut self, channel: &str, frame: Option<Bytes>, cx: &mut Cx<'_>) {
        let frame = match (frame, &mut self.phase) {
            (Some(frame), _) => frame,
            (None, Phase::Ws(ws)) => {
                match super::token::confirmed(&mut ws.state.session, channel) {
                    Some(notice) => notice,
                    None => return,
                }
            }
            (None, _) => return,
        };
        self.owed_reply([frame], cx);
    }

    /// The join could not be applied: `unavailable`, and the channel is
    /// forgotten unless it was a re-join.
    pub(super) fn handle_join_failed(
        &mut self,
        channel: &str,
        id: Option<u64>,
        rejoin: bool,
        cx: &mut Cx<'_>,
    ) {
        if !rejoin {
            if let Phase::Ws(ws) = &mut self.phase {
                ws.state.session.channels.remove(channel);
            }
        }
        let code = ErrorCode::Unavailable;
        cx.metrics.error(code.as_str());
        let frame =
            ws::text_frame_with(|b| server::error(b, id, code, "the broker is unreachable"));
        self.owed_reply([frame], cx);
    }

    /// One frame from an owner; `owed` when it answers a request counted as
    /// owed.
    pub(super) fn handle_reply(&mut self, frame: Bytes, owed: bool, cx: &mut Cx<'_>) {
        if owed {
            return self.owed_reply([frame], cx);
        }
        if let Phase::Ws(ws) = &mut self.phase {
            ws.state.send(&mut self.out, frame, cx);
        }
        self.apply_close_request(cx);
    }

    /// Sends the frames of a reply an owner owed, then the local replies
    /// and the close that waited for it.
    fn owed_reply(&mut self, frames: impl IntoIterator<Item = Bytes>, cx: &mut Cx<'_>) {
        let Phase::Ws(ws) = &mut self.phase else {
            return;
        };
        let st = &mut ws.state;
        st.session.replies.arrived();
        for frame in frames {
            st.send(&mut self.out, frame, cx);
        }
        while let Some(frame) = st.session.replies.pop_ready() {
            st.send(&mut self.out, frame, cx);
        }
        self.apply_close_request(cx);
        self.close_if_settled(cx);
    }
}

impl WsState {
    /// Records a close for the decode loop to apply (the first one wins).
    fn close_with(&mut self, code: u16, drop_queue: bool) {
        self.close.get_or_insert(CloseRequest { code, drop_queue });
    }

    /// Queues `frame`; a full queue makes a slow consumer.
    fn send(&mut self, out: &mut Outbound, frame: Bytes, cx: &Cx<'_>) {
        self.send_within(out, frame, cx.node.config.outbound_limit);
    }

    fn send_within(&mut self, out: &mut Outbound, frame: Bytes, limit: usize) {
        if out.push(frame, limit).is_err() {
            self.close_with(4008, true);
        }
    }

    /// Sends a reply made here; while owners still owe earlier replies it
    /// waits behind them (see `conn::Replies`). What waits counts against
    /// the outbound limit like what is queued.
    fn local_reply(&mut self, out: &mut Outbound, frame: Bytes, cx: &Cx<'_>) {
        let limit = cx.node.config.outbound_limit;
        let replies = &mut self.session.replies;
        match replies.local(frame) {
            Some(frame) => self.send(out, frame, cx),
            None if out.queued_bytes() + replies.parked_bytes() > limit => {
                self.close_with(4008, true);
            }
            None => {}
        }
    }

    fn reply_error(
        &mut self,
        out: &mut Outbound,
        id: Option<u64>,
        code: ErrorCode,
        message: &str,
        cx: &Cx<'_>,
    ) {
        cx.metrics.error(code.as_str());
        let frame = ws::text_frame_with(|b| server::error(b, id, code, message));
        self.local_reply(out, frame, cx);
    }

    fn on_message(&mut self, msg: Message<'_>, id: ConnId, out: &mut Outbound, cx: &mut Cx<'_>) {
        self.last_recv = cx.now;
        match msg {
            Message::Text(t) if self.echo => self.echo(out, OpCode::Text, t, cx),
            Message::Binary(b) if self.echo => self.echo(out, OpCode::Binary, b, cx),
            Message::Text(t) => self.on_text(out, t, id, cx),
            Message::Binary(_) => {
                if self.admit(out, None, cx) {
                    self.reply_error(
                        out,
                        None,
                        ErrorCode::BadRequest,
                        "binary frames are not accepted: send JSON text",
                        cx,
                    );
                }
            }
            Message::Ping(p) => self.send(out, ws::server_frame(OpCode::Pong, p), cx),
            Message::Pong(_) => {}
            // `on_ws` inflates every compressed message before this.
            Message::Deflated { .. } => self.close_with(1002, false),
            Message::Close(frame) => {
                // RFC 6455 §5.5.1: answer with a close frame, echoing the code.
                self.close_with(frame.map_or(1000, |f| f.code), false);
            }
        }
    }

    /// Sends a message back on `/echo`. The queue must hold one echo of the
    /// largest message the endpoint accepts, whatever `--outbound-limit`
    /// says, or the conformance suite's 4-16 MiB cases would end in 4008.
    fn echo(&mut self, out: &mut Outbound, op: OpCode, payload: &[u8], cx: &mut Cx<'_>) {
        let limit = cx
            .node
            .config
            .outbound_limit
            // An unmasked header is at most 10 bytes.
            .max(ECHO_MAX_MESSAGE + 10);
        // Compressed back when the connection negotiated it, so the
        // conformance suite's 12.* and 13.* cases check our compressor too.
        let compressed = match (self.deflate, cx.node.config.compress_from()) {
            (Some(w), Some(min)) if payload.len() >= min => {
                cx.deflate.deflater.frame(op, payload, w)
            }
            _ => None,
        };
        let frame = compressed.unwrap_or_else(|| ws::server_frame(op, payload));
        self.send_within(out, frame, limit);
    }

    /// Charges one data message; answers `rate_limited` (and closes on the
    /// tenth in a row) when refused.
    fn admit(&mut self, out: &mut Outbound, id: Option<u64>, cx: &Cx<'_>) -> bool {
        let config = &cx.node.config;
        let rate = Rate {
            per_second: config.rate,
            burst: config.burst,
        };
        let admission = self.session.admit(rate, cx.now);
        if admission != Admission::Allowed {
            cx.metrics.rate_limited();
            self.reply_error(out, id, ErrorCode::RateLimited, "slow down", cx);
        }
        if admission == Admission::LimitedClose {
            self.close_with(4009, false);
        }
        admission == Admission::Allowed
    }

    fn on_text(&mut self, out: &mut Outbound, text: &[u8], who: ConnId, cx: &mut Cx<'_>) {
        let env = proto::parse(text);
        cx.metrics.received(match &env.request {
            Ok(Request::Join { .. }) => MsgType::Join,
            Ok(Request::Leave { .. }) => MsgType::Leave,
            Ok(Request::Action { .. }) => MsgType::Action,
            Ok(Request::Presence { .. }) => MsgType::Presence,
            Ok(Request::Ping) => MsgType::Ping,
            Ok(Request::Refresh { .. }) => MsgType::Refresh,
            Err(_) => MsgType::Invalid,
        });
        if !self.admit(out, env.id, cx) {
            return;
        }
        match env.request {
            Ok(req) => {
                if let Err((code, message)) = self.on_request(out, env.id, req, who, cx) {
                    self.reply_error(out, env.id, code, message, cx);
                }
            }
            Err(e) => self.reply_error(out, env.id, e.code, &e.message, cx),
        }
    }

    /// Checks a request against the session and the configuration (in
    /// PROTOCOL.md §7's order) and hands it to its channel's owner.
    fn on_request(
        &mut self,
        out: &mut Outbound,
        id: Option<u64>,
        req: Request<'_>,
        who: ConnId,
        cx: &mut Cx<'_>,
    ) -> Result<(), (ErrorCode, &'static str)> {
        let config = &cx.node.config;
        let session = &mut self.session;
        match req {
            Request::Ping => {
                let frame = ws::text_frame_with(|b| server::pong(b, id));
                self.local_reply(out, frame, cx);
                Ok(())
            }
            Request::Refresh { token } => {
                let done = super::token::refresh(session, id, &token, cx)?;
                self.local_reply(out, done.frame, cx);
                super::token::leave_forbidden(&mut self.session, who, done.gone, cx);
                Ok(())
            }
            Request::Join { channel, since } => {
                let existing = session.channels.get(&channel).cloned();
                if !session.may_join(&channel) {
                    return Err((
                        ErrorCode::Forbidden,
                        "the token does not allow this channel",
                    ));
                }
                if existing.is_none() && session.channels.len() >= config.max_channels {
                    return Err((
                        ErrorCode::TooManyChannels,
                        "too many channels on this connection",
                    ));
                }
                if !cx.node.broker_up() {
                    return Err((ErrorCode::Unavailable, "the broker is unreachable"));
                }
                let rejoin = existing.is_some();
                let channel: Arc<str> = existing.unwrap_or_else(|| Arc::from(&*channel));
                session.channels.insert(channel.clone());
                session.replies.ask();
                let owner = cx.out.owner_of(&channel);
                cx.out.to_owner(
                    owner,
                    ToOwner::Join {
                        channel,
                        who,
                        member: session.member.clone(),
                        id,
                        since,
                        rejoin,
                    },
                );
                Ok(())
            }
            Request::Leave { channel } => {
                let Some(channel) = session.channels.take(&channel) else {
                    return Err((ErrorCode::NotJoined, "not joined to this channel"));
                };
                session.replies.ask();
                let owner = cx.out.owner_of(&channel);
                cx.out.to_owner(
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
            Request::Action { channel, action } => {
                if !config.client_publish_allowed(&channel) {
                    return Err((
                        ErrorCode::Forbidden,
                        "clients may not publish in this namespace",
                    ));
                }
                let Some(channel) = session.channels.get(&channel).cloned() else {
                    return Err((ErrorCode::NotJoined, "join the channel before acting in it"));
                };
                if !cx.node.broker_up() {
                    return Err((ErrorCode::Unavailable, "the broker is unreachable"));
                }
                if id.is_some() {
                    session.replies.ask();
                }
                let owner = cx.out.owner_of(&channel);
                cx.out.to_owner(
                    owner,
                    ToOwner::Publish {
                        channel,
                        origin: Origin::Client(who, session.member.clone()),
                        id,
                        action: Bytes::copy_from_slice(action.get().as_bytes()),
                    },
                );
                Ok(())
            }
            Request::Presence { channel } => {
                if !config.presence_on(&channel) {
                    return Err((ErrorCode::Forbidden, "presence is off in this namespace"));
                }
                let Some(channel) = session.channels.get(&channel).cloned() else {
                    return Err((ErrorCode::NotJoined, "join the channel first"));
                };
                session.replies.ask();
                let owner = cx.out.owner_of(&channel);
                cx.out
                    .to_owner(owner, ToOwner::Presence { channel, who, id });
                Ok(())
            }
        }
    }
}
