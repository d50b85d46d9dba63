//! One Redis connection's protocol state: handshake, commands matched to
//! replies, pub/sub confirmations, bounds. Sans-IO; see the module docs of
//! [`resp`](super) for the driver loop.
//!
//! # Matching replies
//!
//! Redis answers the commands of one connection in the order they were sent
//! (<https://redis.io/docs/latest/develop/use/pipelining/>), so each command
//! that expects a reply takes a slot in a FIFO and the next non-push frame
//! answers the oldest slot. Push frames never take a slot.
//!
//! In RESP3 a successful `SUBSCRIBE a b` gets no reply at all, only one
//! `subscribe` push per argument, in argument order, duplicates included
//! (checked against Redis 7.0: `SUBSCRIBE a a b` gives `subscribe a 1`,
//! `subscribe a 1`, `subscribe b 2`; `UNSUBSCRIBE x` for a channel never
//! subscribed still confirms `unsubscribe x <n>`). A refused one (an ACL
//! `NOPERM`) gets a single error reply instead. So a pub/sub command takes a
//! slot that is released by its confirmations, or answered by that error;
//! either way it never consumes the reply of the command after it. Pub/sub
//! commands with no channels are not sent: their confirmations cannot be
//! counted beforehand (`UNSUBSCRIBE` alone confirms every subscription).
//!
//! # Handshake
//!
//! [`Session::new`] queues `HELLO 3 [AUTH user pass] [SETNAME name]` and, for
//! a database other than 0, `SELECT db`. Commands issued before the handshake
//! completes are held back and sent after it: were `HELLO` refused, they would
//! run on an unauthenticated RESP2 connection.

use std::collections::VecDeque;
use std::fmt;

use bytes::{Bytes, BytesMut};

use super::codec::{
    command_len, encode_command, Decoder, Frame, Push, RespError, Subscription, Value,
};
use super::url::RedisUrl;
use super::{MAX_FRAME, MAX_OUTPUT, MAX_PENDING};

/// Settings of a [`Session`]; the defaults are the crate-wide limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionConfig {
    /// Sent as `HELLO ... SETNAME`, shown by `CLIENT LIST`. No spaces.
    pub client_name: Option<String>,
    /// Largest frame accepted from Redis.
    pub max_frame: usize,
    /// Most bytes queued for Redis and not yet taken by `poll_transmit`.
    pub max_output: usize,
    /// Most commands waiting for a reply (or pub/sub confirmations).
    pub max_pending: usize,
}

impl Default for SessionConfig {
    fn default() -> Self {
        Self {
            client_name: None,
            max_frame: MAX_FRAME,
            max_output: MAX_OUTPUT,
            max_pending: MAX_PENDING,
        }
    }
}

/// The handshake command that Redis refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandshakeStep {
    /// `HELLO 3 [AUTH ...]`: `WRONGPASS`, `NOAUTH` (a password is needed),
    /// `NOPROTO` or `ERR unknown command` (Redis older than 6).
    Hello,
    /// `SELECT db`: the database number is out of range.
    Select,
}

/// Why a session failed. The connection is unusable afterwards: close it and
/// reconnect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionError {
    /// Redis sent bytes that are not RESP3, or a frame over the limits.
    Resp(RespError),
    /// Redis refused a handshake command; `error` is its error line.
    Handshake { step: HandshakeStep, error: Bytes },
    /// A reply that fits no command: none was waiting, or it has the wrong
    /// shape for the one that was.
    UnexpectedReply { reason: &'static str },
}

impl fmt::Display for SessionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Resp(e) => e.fmt(f),
            Self::Handshake { step, error } => {
                write!(
                    f,
                    "Redis refused {step:?}: {}",
                    String::from_utf8_lossy(error)
                )
            }
            Self::UnexpectedReply { reason } => write!(f, "unexpected reply from Redis: {reason}"),
        }
    }
}

impl std::error::Error for SessionError {}

/// Why a command was not queued. The session is unchanged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendError {
    /// The session failed or was closed.
    Closed,
    /// Queuing would put more than `max` bytes in the output queue.
    OutputFull { queued: usize, max: usize },
    /// `max` commands are already waiting for replies.
    TooManyPending { max: usize },
}

impl fmt::Display for SendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Closed => f.write_str("the Redis session is closed"),
            Self::OutputFull { queued, max } => {
                write!(f, "{queued} bytes queued for Redis, the limit is {max}")
            }
            Self::TooManyPending { max } => {
                write!(f, "{max} Redis commands already wait for replies")
            }
        }
    }
}

impl std::error::Error for SendError {}

/// What the session has to tell its driver.
#[derive(Debug, Clone, PartialEq)]
pub enum Event<T> {
    /// The handshake completed; held commands are now in `poll_transmit`.
    Ready,
    /// The reply to the command queued with `tag`, error replies included.
    Reply { tag: T, value: Value },
    /// A push frame: a pub/sub message or confirmation, or anything else.
    Push(Push),
    /// A pub/sub command was refused as a whole (an ACL `NOPERM`); none of
    /// `channels` changed state.
    PubSubRefused {
        kind: Subscription,
        subscribe: bool,
        channels: Vec<Bytes>,
        error: Bytes,
    },
    /// The session is dead; no event follows. Call [`Session::close`].
    Failed(SessionError),
}

/// A command in flight, in wire order.
enum Slot<T> {
    Hello,
    Select,
    Reply(T),
    PubSub {
        kind: Subscription,
        subscribe: bool,
        channels: Vec<Bytes>,
        confirmed: usize,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Handshake,
    Ready,
    Closed,
}

/// One Redis connection's protocol state, sans-IO. `T` is the caller's tag
/// matching a reply to its command.
pub struct Session<T> {
    state: State,
    config: SessionConfig,
    decoder: Decoder,
    /// Bytes read and not yet decoded: at most one incomplete frame between
    /// calls, so at most `max_frame` plus one read.
    input: BytesMut,
    /// Bytes to write now.
    out: BytesMut,
    /// Commands issued during the handshake, moved to `out` once it is done.
    held: BytesMut,
    pending: VecDeque<Slot<T>>,
    events: VecDeque<Event<T>>,
}

// By hand: `out` holds `HELLO ... AUTH user password` until it is taken.
impl<T> fmt::Debug for Session<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session")
            .field("state", &self.state)
            .field("pending", &self.pending.len())
            .field("input_bytes", &self.input.len())
            .field("output_bytes", &(self.out.len() + self.held.len()))
            .field("events", &self.events.len())
            .finish_non_exhaustive()
    }
}

impl<T> Session<T> {
    /// A session for `url` with default settings; the handshake is queued.
    pub fn new(url: &RedisUrl) -> Self {
        Self::with_config(url, SessionConfig::default())
    }

    /// A session for `url`; the handshake is queued.
    pub fn with_config(url: &RedisUrl, config: SessionConfig) -> Self {
        let mut session = Self {
            state: State::Handshake,
            decoder: Decoder::new(config.max_frame),
            config,
            input: BytesMut::new(),
            out: BytesMut::new(),
            held: BytesMut::new(),
            pending: VecDeque::new(),
            events: VecDeque::new(),
        };
        let mut hello: Vec<&[u8]> = vec![b"HELLO", b"3"];
        if let Some(password) = &url.password {
            let user = url.username.as_deref().unwrap_or("default");
            hello.extend([&b"AUTH"[..], user.as_bytes(), password.as_bytes()]);
        }
        if let Some(name) = &session.config.client_name {
            hello.extend([&b"SETNAME"[..], name.as_bytes()]);
        }
        encode_command(&hello, &mut session.out);
        session.pending.push_back(Slot::Hello);
        if url.db != 0 {
            encode_command(
                &[b"SELECT", url.db.to_string().as_bytes()],
                &mut session.out,
            );
            session.pending.push_back(Slot::Select);
        }
        session
    }

    /// True once every handshake reply came back successful.
    pub fn is_ready(&self) -> bool {
        self.state == State::Ready
    }

    /// True after [`Event::Failed`] or [`close`](Self::close).
    pub fn is_closed(&self) -> bool {
        self.state == State::Closed
    }

    /// Queues a command expecting one reply, which comes back as
    /// [`Event::Reply`] with `tag`. Pipelined: no need to wait for replies.
    /// Never use it for pub/sub commands, whose confirmations are pushes.
    /// On refusal the tag comes back with the reason, so the caller can
    /// still answer whoever waits for it.
    pub fn command(&mut self, args: &[&[u8]], tag: T) -> Result<(), (SendError, T)> {
        if let Err(e) = self.admit(command_len(args)) {
            return Err((e, tag));
        }
        encode_command(args, self.queue());
        self.pending.push_back(Slot::Reply(tag));
        Ok(())
    }

    /// `SUBSCRIBE channels...`; takes no reply slot. No-op when empty.
    pub fn subscribe(&mut self, channels: &[&[u8]]) -> Result<(), SendError> {
        self.pubsub(Subscription::Channel, true, channels)
    }

    /// `UNSUBSCRIBE channels...`; takes no reply slot. No-op when empty:
    /// name the channels, unsubscribing from all is not supported.
    pub fn unsubscribe(&mut self, channels: &[&[u8]]) -> Result<(), SendError> {
        self.pubsub(Subscription::Channel, false, channels)
    }

    /// Any of the six pub/sub commands, `kind.command(subscribe)`; no-op when
    /// `channels` is empty. Confirmations arrive as [`Event::Push`]; a refusal
    /// as [`Event::PubSubRefused`].
    pub fn pubsub(
        &mut self,
        kind: Subscription,
        subscribe: bool,
        channels: &[&[u8]],
    ) -> Result<(), SendError> {
        if channels.is_empty() {
            return Ok(());
        }
        let mut args = Vec::with_capacity(channels.len() + 1);
        args.push(kind.command(subscribe));
        args.extend_from_slice(channels);
        self.admit(command_len(&args))?;
        encode_command(&args, self.queue());
        let channels = channels.iter().map(|c| Bytes::copy_from_slice(c)).collect();
        self.pending.push_back(Slot::PubSub {
            kind,
            subscribe,
            channels,
            confirmed: 0,
        });
        Ok(())
    }

    /// Bytes to write now, every queued command coalesced, or `None`.
    ///
    /// The driver owns what it could not write yet; it should finish writing
    /// that before asking for more, which keeps the output bound meaningful.
    pub fn poll_transmit(&mut self) -> Option<Bytes> {
        (!self.out.is_empty()).then(|| self.out.split().freeze())
    }

    /// Feeds bytes read from the socket; decoded events wait in
    /// [`poll_event`](Self::poll_event). Ignored once closed.
    pub fn handle_input(&mut self, data: &[u8]) {
        if self.state == State::Closed {
            return;
        }
        self.input.extend_from_slice(data);
        while self.state != State::Closed {
            match self.decoder.decode(&mut self.input) {
                Ok(Some(Frame::Push(push))) => {
                    self.confirm(&push);
                    self.events.push_back(Event::Push(push));
                }
                Ok(Some(Frame::Reply(value))) => self.on_reply(value),
                Ok(None) => break,
                Err(e) => self.fail(SessionError::Resp(e)),
            }
        }
    }

    /// The next event, in the order Redis sent what caused it.
    pub fn poll_event(&mut self) -> Option<Event<T>> {
        self.events.pop_front()
    }

    /// Closes the session (after [`Event::Failed`], EOF or an IO error) and
    /// returns the tags of the commands that will never get a reply, oldest
    /// first. Undelivered events stay readable.
    pub fn close(&mut self) -> Vec<T> {
        self.state = State::Closed;
        self.input = BytesMut::new();
        self.out = BytesMut::new();
        self.held = BytesMut::new();
        self.pending
            .drain(..)
            .filter_map(|slot| match slot {
                Slot::Reply(tag) => Some(tag),
                _ => None,
            })
            .collect()
    }

    fn admit(&self, len: usize) -> Result<(), SendError> {
        if self.state == State::Closed {
            return Err(SendError::Closed);
        }
        if self.pending.len() >= self.config.max_pending {
            return Err(SendError::TooManyPending {
                max: self.config.max_pending,
            });
        }
        let queued = self.out.len() + self.held.len() + len;
        if queued > self.config.max_output {
            return Err(SendError::OutputFull {
                queued,
                max: self.config.max_output,
            });
        }
        Ok(())
    }

    fn queue(&mut self) -> &mut BytesMut {
        match self.state {
            State::Ready => &mut self.out,
            _ => &mut self.held,
        }
    }

    /// Counts a confirmation against the oldest pub/sub command if it is the
    /// one it confirms. Anything else (say, the `sunsubscribe` Redis sends
    /// unasked when a shard slot moves) passes through untouched.
    fn confirm(&mut self, push: &Push) {
        let (kind, subscribe, channel) = match push {
            Push::Subscribed { kind, channel, .. } => (*kind, true, channel),
            Push::Unsubscribed { kind, channel, .. } => (*kind, false, channel),
            _ => return,
        };
        let Some(Slot::PubSub {
            kind: k,
            subscribe: s,
            channels,
            confirmed,
        }) = self.pending.front_mut()
        else {
            return;
        };
        if *k != kind || *s != subscribe || channels.get(*confirmed) != Some(channel) {
            return;
        }
        *confirmed += 1;
        if *confirmed == channels.len() {
            self.pending.pop_front();
        }
    }

    fn on_reply(&mut self, value: Value) {
        let Some(slot) = self.pending.pop_front() else {
            return self.fail(SessionError::UnexpectedReply {
                reason: "no command waits for a reply",
            });
        };
        match (slot, value) {
            (Slot::Reply(tag), value) => self.events.push_back(Event::Reply { tag, value }),
            (Slot::Hello, Value::Map(_)) | (Slot::Select, Value::Ok) => self.handshake_step_done(),
            (Slot::Hello, Value::Error(error)) => {
                self.fail(SessionError::Handshake {
                    step: HandshakeStep::Hello,
                    error,
                });
            }
            (Slot::Select, Value::Error(error)) => {
                self.fail(SessionError::Handshake {
                    step: HandshakeStep::Select,
                    error,
                });
            }
            (Slot::Hello | Slot::Select, _) => {
                self.fail(SessionError::UnexpectedReply {
                    reason: "a handshake reply of the wrong type",
                });
            }
            (
                Slot::PubSub {
                    kind,
                    subscribe,
                    channels,
                    confirmed: 0,
                },
                Value::Error(error),
            ) => {
                self.events.push_back(Event::PubSubRefused {
                    kind,
                    subscribe,
                    channels,
                    error,
                });
            }
            (Slot::PubSub { .. }, _) => {
                self.fail(SessionError::UnexpectedReply {
                    reason: "a reply where pub/sub confirmations were due",
                });
            }
        }
    }

    fn handshake_step_done(&mut self) {
        if matches!(self.pending.front(), Some(Slot::Hello | Slot::Select)) {
            return;
        }
        self.state = State::Ready;
        self.events.push_back(Event::Ready);
        let held = std::mem::take(&mut self.held);
        self.out.unsplit(held);
    }

    fn fail(&mut self, error: SessionError) {
        self.state = State::Closed;
        self.events.push_back(Event::Failed(error));
        self.input = BytesMut::new();
        self.out = BytesMut::new();
        self.held = BytesMut::new();
    }
}

#[cfg(test)]
#[path = "session_tests.rs"]
mod tests;
