//! The Redis side of Redis mode, sans-IO: RESP3 commands out, replies and
//! pub/sub push frames in, one [`Session`] per Redis connection.
//!
//! Nothing here touches a socket or a clock. The IO driver (in `broker`) owns
//! a non-blocking TCP stream per Redis link and, in its poll loop:
//!
//! 1. writes [`Session::poll_transmit`] until it returns `None`;
//! 2. reads until `WouldBlock`, giving each chunk to [`Session::handle_input`];
//! 3. drains [`Session::poll_event`] until `None`;
//! 4. on [`Event::Failed`], EOF or an IO error, calls [`Session::close`] to get
//!    back the tags that will never be answered, drops the session and
//!    reconnects with a new one (resubscribing is the driver's business).
//!
//! Switchboard speaks RESP3 (`HELLO 3`, RESP3 spec "Client handshake",
//! <https://github.com/redis/redis-specifications/blob/master/protocol/RESP3.md>),
//! so pub/sub messages and subscription confirmations arrive as push frames
//! on the same connection as ordinary replies, and the connection stays usable
//! for commands while subscribed.
//!
//! | file | what |
//! | --- | --- |
//! | `url.rs` | `redis://[user:pass@]host:port[/db]` |
//! | `scan.rs` | where a frame ends: limits and depth, before any parsing |
//! | `codec.rs` | commands out; [`Value`], [`Push`], [`Frame`] in, over `redis-protocol` |
//! | `session.rs` | handshake, reply matching, pub/sub bookkeeping, bounds |
//!
//! # Limits
//!
//! Every limit is checked before the bytes it guards are buffered:
//!
//! - [`MAX_FRAME`]: one frame from Redis, 16 MiB plus 64 KiB of framing. The
//!   largest reply switchboard asks for is a page of history: 16 MiB is far
//!   above any configured page of messages of at most `--max-message-bytes`,
//!   and a frame past it is a broken or hostile peer. The input buffer of a
//!   session never holds more than one incomplete frame, so this bounds it.
//! - [`MAX_DEPTH`]: nesting of aggregates; the replies switchboard reads
//!   (`XREAD`, `XRANGE`, `HGETALL`) nest a few levels at most.
//! - [`MAX_OUTPUT`] and [`MAX_PENDING`]: bytes queued for Redis and commands
//!   waiting for replies; past them a command is refused with [`SendError`]
//!   so the caller can answer its client `unavailable`.

mod codec;
mod scan;
mod session;
mod url;

pub use codec::{
    command_len, decode, encode_command, encode_frame, encode_value, Decoder, Frame, Push,
    RespError, Subscription, Value,
};
pub use session::{Event, HandshakeStep, SendError, Session, SessionConfig, SessionError};
pub use url::{parse_url, RedisUrl, UrlError, DEFAULT_PORT};

/// Largest frame accepted from Redis, in bytes on the wire.
pub const MAX_FRAME: usize = 16 * 1024 * 1024 + 64 * 1024;

/// Deepest nesting of aggregates accepted from Redis.
pub const MAX_DEPTH: usize = 32;

/// Most bytes a session queues for Redis before refusing commands.
pub const MAX_OUTPUT: usize = 32 * 1024 * 1024;

/// Most commands a session keeps waiting for a reply before refusing more.
pub const MAX_PENDING: usize = 65_536;
