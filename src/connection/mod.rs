//! One client connection as a pure state machine, in the manner of
//! quinn-proto: no socket, no clock, no queue of its own to another thread.
//!
//! # Life
//!
//! ```text
//!   Http ──upgrade──▶ Ws ──close decided──▶ (waits for owed replies) ──▶ Closing ──▶ done
//!     │                                                                  ▲
//!     └──────────── a response that ends the exchange ───────────────────┘
//! ```
//!
//! `Http` reads request heads (the upgrade, or API calls over keep-alive);
//! `Ws` is an open WebSocket; `Closing` has queued its last bytes and, once
//! they are written, half-closes and waits for the peer's EOF so that unread
//! input cannot turn the close into a reset that loses them.
//!
//! # Driving it
//!
//! - [`Connection::handle_input`] takes bytes read from the peer;
//! - [`Connection::handle_timeout`] runs deadlines and heartbeats once
//!   [`Connection::poll_timeout`] has passed;
//! - the owners' answers come in through [`Connection::handle_owner`];
//! - what the peer must receive waits in [`Connection::transmit`], which the
//!   driver writes and then reports with [`Connection::handle_written`];
//! - [`Connection::poll_shutdown`] says when to half-close, and
//!   [`Connection::is_done`] when to forget the connection (after
//!   [`Connection::handle_gone`]).
//!
//! Requests for channel owners go into the caller's [`Outbox`] (through
//! [`Cx`]); they are the connection's events, and the driver moves them to
//! the owners' queues.
//!
//! # Seams
//!
//! TLS sits between the socket and this type: the driver decrypts before
//! `handle_input` and encrypts what `transmit` lends. permessage-deflate
//! sits inside the WebSocket path (`ws.rs`): inflate between the decoder and
//! the message handler, deflate where text frames are built.

mod http;
mod token;
mod ws;

#[cfg(test)]
mod tests;

use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::broker::{Answer, Outbox, ToWorker};
use crate::conn::Outbound;
use crate::id::ConnId;
use crate::metrics::DeliveredType;
use crate::metrics::WorkerMetrics;
use crate::node::Node;
use crate::ws::deflate::{Codec, WindowBits};

use http::PendingApi;
use ws::Ws;

/// How long a closing connection whose last bytes are written may take to
/// hang up (its EOF after our half-close).
pub const CLOSE_GRACE: Duration = Duration::from_secs(2);
/// How long a closing connection may take to read the last bytes (the rest
/// of a started frame and the close frame) before they are abandoned. Longer
/// than [`CLOSE_GRACE`]: a slow consumer's kernel buffers are full when its
/// 4008 is decided, so the close frame reaches it only once it reads again,
/// and it should see the close code rather than a bare EOF (PROTOCOL.md §8).
/// It holds at most one started frame and the close frame meanwhile.
pub const FLUSH_GRACE: Duration = Duration::from_secs(10);
/// HTTP input held (an API answer is pending, or responses fill the queue)
/// past this many bytes is left in the kernel, so TCP pushes back.
pub const MAX_HELD_INPUT: usize = 64 * 1024 + 64;

/// The close code reported for a WebSocket that ended without a close
/// handshake (RFC 6455 §7.1.5); it is never sent.
const ABNORMAL_CLOSE: u16 = 1006;

/// What one call into a connection may use besides the connection: the
/// time, the node's shared state, the worker's counters, and where requests
/// for owners go.
#[derive(Debug)]
pub struct Cx<'a> {
    pub now: Instant,
    /// Seconds since the Unix epoch (token expiry), read by the driver.
    pub unix_secs: u64,
    pub node: &'a Node,
    pub metrics: &'a WorkerMetrics,
    pub out: &'a mut Outbox,
    /// The worker's count of WebSockets opened, for `conn` ids.
    pub conn_seq: &'a mut u64,
    /// The worker's compressor and inflater (permessage-deflate).
    pub deflate: &'a mut Codec,
}

/// Where a connection is in its life.
#[derive(Debug)]
enum Phase {
    /// Reading HTTP request heads. `deadline` bounds a slow or idle client.
    Http {
        deadline: Instant,
    },
    Ws(Box<Ws>),
    /// The last bytes are queued; `shut`: the write side is half-closed.
    /// `deadline` is [`FLUSH_GRACE`] after the close, then at most
    /// [`CLOSE_GRACE`] after the half-close.
    Closing {
        deadline: Instant,
        shut: bool,
    },
    /// Nothing more to do: the driver forgets it.
    Done,
}

#[derive(Debug)]
pub struct Connection {
    id: ConnId,
    phase: Phase,
    /// Bytes of an incomplete frame or request; empty for an idle connection.
    inbuf: Vec<u8>,
    out: Outbound,
    /// Counted in the node's WebSocket total (for --max-connections).
    counted: bool,
    /// An API request waiting for owners to answer; input waits behind it.
    /// Boxed: an open WebSocket never has one.
    api: Option<Box<PendingApi>>,
    /// HTTP input waits (an API answer is pending, or responses fill the
    /// queue): requests stay unparsed and, past [`MAX_HELD_INPUT`], unread.
    held: bool,
    /// Held input was released while bytes may wait in the kernel: the
    /// driver reads the socket again.
    read_again: bool,
}

impl Connection {
    /// A new connection (an HTTP exchange until it upgrades).
    pub fn new(id: ConnId, cx: &Cx<'_>) -> Self {
        Connection {
            id,
            phase: Phase::Http {
                deadline: cx.now + cx.node.config.handshake_timeout,
            },
            inbuf: Vec::new(),
            out: Outbound::default(),
            counted: false,
            api: None,
            held: false,
            read_again: false,
        }
    }

    pub fn id(&self) -> ConnId {
        self.id
    }

    /// Takes bytes read from the peer. Bytes of an incomplete frame or
    /// request are kept; whatever a closing peer still sends is dropped.
    pub fn handle_input(&mut self, data: &mut [u8], cx: &mut Cx<'_>) {
        if self.inbuf.is_empty() {
            let used = self.on_data(data, cx);
            if used < data.len() && self.keeps_input() {
                self.inbuf.extend_from_slice(&data[used..]);
            }
        } else {
            self.inbuf.extend_from_slice(data);
            self.run_inbuf(cx);
        }
    }

    /// Serves what waits in the input buffer.
    fn run_inbuf(&mut self, cx: &mut Cx<'_>) {
        let mut buf = std::mem::take(&mut self.inbuf);
        let used = self.on_data(&mut buf, cx);
        if !self.keeps_input() {
            return;
        }
        buf.drain(..used.min(buf.len()));
        if buf.capacity() > 2 * MAX_HELD_INPUT && buf.len() < MAX_HELD_INPUT {
            buf.shrink_to_fit();
        }
        self.inbuf = buf;
    }

    /// Whether unread input still matters.
    fn keeps_input(&self) -> bool {
        matches!(self.phase, Phase::Http { .. } | Phase::Ws(_))
    }

    /// Runs input through the phase; returns the bytes used.
    fn on_data(&mut self, data: &mut [u8], cx: &mut Cx<'_>) -> usize {
        let limit = cx.node.config.outbound_limit;
        let mut pos = 0;
        loop {
            match self.phase {
                // Pipelined requests wait while an API answer is pending or
                // the client leaves `--outbound-limit` bytes of responses
                // unread: a few bytes of request must not queue kilobytes of
                // response without bound.
                Phase::Http { .. } if self.api.is_some() || self.out.queued_bytes() >= limit => {
                    self.held = true;
                    return pos;
                }
                Phase::Http { .. } => match self.on_http(&data[pos..], cx) {
                    0 => return pos,
                    used => pos += used,
                },
                Phase::Ws(_) => return pos + self.on_ws(&mut data[pos..], cx),
                Phase::Closing { .. } | Phase::Done => return data.len(),
            }
        }
    }

    /// Whether the driver should read the socket: not while held input
    /// already fills [`MAX_HELD_INPUT`].
    pub fn wants_input(&self) -> bool {
        !(self.held && self.inbuf.len() >= MAX_HELD_INPUT)
    }

    /// Whether held input was released and the socket should be read again
    /// (once: the flag is cleared).
    pub fn take_read_again(&mut self) -> bool {
        std::mem::take(&mut self.read_again)
    }

    /// Serves input held while a response was pending or the response
    /// queue was full.
    fn resume_input(&mut self, cx: &mut Cx<'_>) {
        let limit = cx.node.config.outbound_limit;
        if !self.held || self.api.is_some() || self.out.queued_bytes() >= limit {
            return;
        }
        self.held = false;
        self.read_again = true;
        if !self.inbuf.is_empty() {
            self.run_inbuf(cx);
        }
    }

    /// The frames and responses waiting to be written.
    pub fn transmit(&mut self) -> &mut Outbound {
        &mut self.out
    }

    /// The queue to deliver an event to, or `None` when the connection no
    /// longer takes events (its close is decided).
    /// The window of permessage-deflate when the WebSocket negotiated it:
    /// broadcasts then go out as their compressed twin for that window.
    pub fn deflate_window(&self) -> Option<WindowBits> {
        match &self.phase {
            Phase::Ws(ws) => ws.deflate_window(),
            _ => None,
        }
    }

    pub fn event_queue(&mut self) -> Option<&mut Outbound> {
        match &self.phase {
            Phase::Ws(ws) if !ws.closing() => Some(&mut self.out),
            _ => None,
        }
    }

    /// Whether a `Joined` should put the connection in the channel's fan-out
    /// list.
    pub fn takes_events(&self) -> bool {
        matches!(&self.phase, Phase::Ws(ws) if !ws.closing())
    }

    /// Whether the driver has anything to write or a half-close to make.
    pub fn wants_flush(&self) -> bool {
        !self.out.is_empty() || matches!(self.phase, Phase::Closing { shut: false, .. })
    }

    /// The driver wrote what it could: release held input, and say whether
    /// to half-close now (the last bytes of a closing connection are out).
    pub fn handle_written(&mut self, cx: &mut Cx<'_>) {
        self.resume_input(cx);
    }

    /// Whether the driver should half-close the socket now (once); from
    /// `now`, the peer has [`CLOSE_GRACE`] to hang up.
    pub fn poll_shutdown(&mut self, now: Instant) -> bool {
        match &mut self.phase {
            Phase::Closing { shut, deadline } if !*shut && self.out.is_empty() => {
                *shut = true;
                *deadline = (*deadline).min(now + CLOSE_GRACE);
                true
            }
            _ => false,
        }
    }

    /// Whether the driver should forget the connection.
    pub fn is_done(&self) -> bool {
        matches!(self.phase, Phase::Done)
    }

    /// How often a driver should run due timers: a few times per
    /// heartbeat, so a deadline is met within a quarter of one.
    pub fn timer_interval(config: &crate::config::Config) -> Duration {
        (config.heartbeat / 4).clamp(Duration::from_millis(50), Duration::from_secs(1))
    }

    /// When [`Connection::handle_timeout`] has something to do.
    pub fn poll_timeout(&self, cx: &Cx<'_>) -> Option<Instant> {
        match &self.phase {
            Phase::Http { deadline } | Phase::Closing { deadline, .. } => Some(*deadline),
            Phase::Ws(ws) => Some(ws.next_timeout(cx.node.config.heartbeat)),
            Phase::Done => None,
        }
    }

    /// Deadlines and heartbeats due at `cx.now`.
    pub fn handle_timeout(&mut self, cx: &mut Cx<'_>) {
        let now = cx.now;
        match &mut self.phase {
            Phase::Http { deadline } | Phase::Closing { deadline, .. } => {
                if now >= *deadline {
                    self.phase = Phase::Done;
                }
            }
            Phase::Ws(_) => self.ws_timeout(cx),
            Phase::Done => {}
        }
    }

    /// Starts the drain of the node: a WebSocket closes with 1001, an HTTP
    /// exchange ends at once.
    pub fn handle_drain(&mut self, cx: &mut Cx<'_>) {
        match self.phase {
            Phase::Ws(_) => self.begin_close(1001, "server shutting down", false, cx),
            Phase::Http { .. } => self.phase = Phase::Done,
            Phase::Closing { .. } | Phase::Done => {}
        }
    }

    /// The peer is gone (EOF, a socket error) or the connection is done:
    /// leave every channel and stop counting it. The driver then forgets it.
    pub fn handle_gone(&mut self, cx: &mut Cx<'_>) {
        if matches!(&self.phase, Phase::Ws(ws) if !ws.closing()) {
            // No close was decided: the peer hung up or the socket failed.
            cx.metrics.close(ABNORMAL_CLOSE);
        }
        self.leave_all(cx);
        if std::mem::take(&mut self.counted) {
            cx.node
                .ws_connections
                .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
        }
        self.phase = Phase::Done;
    }

    /// An owner's message for this connection (the driver has already
    /// applied `Joined` and `Left` to its fan-out registry).
    pub fn handle_owner(&mut self, msg: ToWorker, cx: &mut Cx<'_>) {
        match msg {
            ToWorker::Joined { frames, .. } => {
                cx.metrics
                    .delivered(DeliveredType::Reply, frames.len() as u64);
                self.handle_joined(frames, cx);
            }
            ToWorker::Left { channel, frame, .. } => self.handle_left(&channel, frame, cx),
            ToWorker::JoinFailed {
                channel,
                id,
                rejoin,
                ..
            } => self.handle_join_failed(&channel, id, rejoin, cx),
            ToWorker::Reply { frame, owed, .. } => {
                cx.metrics.delivered(DeliveredType::Reply, 1);
                self.handle_reply(frame, owed, cx);
            }
            ToWorker::Answer { answer, .. } => self.handle_answer(answer, cx),
            // For the worker, not for one connection.
            ToWorker::Deliver { .. } | ToWorker::Shutdown => {}
        }
    }

    /// An owner's API answer for this (HTTP) connection.
    pub(super) fn handle_answer(&mut self, answer: Answer, cx: &mut Cx<'_>) {
        self.on_answer(answer, cx);
        // Pipelined requests waited behind this one.
        self.resume_input(cx);
    }

    /// Queues a frame the server itself must send whatever the limit says
    /// (a close frame, an HTTP response): small and at most one per event.
    fn push_unbounded(&mut self, frame: Bytes) {
        self.out.push_unbounded(frame);
    }

    /// Queues the last bytes and moves to [`Phase::Closing`].
    fn close_with(&mut self, last: Bytes, cx: &Cx<'_>) {
        self.push_unbounded(last);
        self.phase = Phase::Closing {
            deadline: cx.now + FLUSH_GRACE,
            shut: false,
        };
    }
}
