//! The per-core event loop.
//!
//! Each worker owns a `mio::Poll`, its own `SO_REUSEPORT` listener, a slab of
//! connections, its fan-out [`Registry`] and its share of channel owners. It
//! only moves bytes: reads go through one per-worker scratch buffer into the
//! pure cores (`http`, `ws`, `proto`), and what they produce is queued per
//! connection and written with vectored writes at the end of the loop turn.
//!
//! Workers talk through one `crossbeam-channel` queue each plus a
//! `mio::Waker`; a turn batches everything bound for one worker into one
//! queue message and one wake-up.
//!
//! # Loop turn
//!
//! 1. poll;
//! 2. accept, read and dispatch;
//! 3. drain the outbox: messages to this worker are handled at once, others
//!    are sent;
//! 4. flush every connection that got frames;
//! 5. timers (heartbeat, deadlines).

mod conn;
mod http;
mod ws;

use std::io;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use crossbeam_channel::{Receiver, Sender};
use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Waker};
use slab::Slab;

use crate::broker::redis::RedisOwner;
use crate::broker::{ConnId, Msg, Outbox, Owner, OwnerLimits, ToOwner, ToWorker};
use crate::config::Config;
use crate::conn::CloseNow;
use crate::id::{key_of, token_of, LISTENER, REDIS, WAKER};
use crate::metrics::{DeliveredType, WorkerMetrics};
use crate::registry::{Fanout, Registry};
use conn::{Conn, Phase};

/// How long a closing connection may take to read our close and hang up.
const CLOSE_GRACE: Duration = Duration::from_secs(2);
/// The per-worker read buffer: a full default-sized message and its header
/// fit in one read.
const SCRATCH: usize = 64 * 1024 + 64;

/// Emptied batches (this worker's own, and those other workers sent) kept
/// to carry the next ones: traffic between workers flows both ways, so in a
/// steady state no turn allocates a batch.
const SPARE_BATCHES: usize = 8;
/// A batch grown past this (a burst) is freed rather than kept.
const SPARE_BATCH_CAPACITY: usize = 4096;

/// State every worker reads; nothing here is touched per message.
#[derive(Debug)]
pub struct Shared {
    pub config: Arc<Config>,
    pub senders: Vec<Sender<Vec<Msg>>>,
    pub wakers: Vec<Arc<Waker>>,
    pub draining: AtomicBool,
    /// Workers whose Redis link is down; the broker is up when it is 0.
    pub links_down: Arc<AtomicUsize>,
    /// Open WebSockets on this node, for --max-connections.
    pub ws_connections: AtomicUsize,
    /// Each worker's counters, summed at scrape.
    pub metrics: Vec<Arc<WorkerMetrics>>,
    /// Channels with members that each worker owns, refreshed every tick.
    pub owned_channels: Vec<AtomicUsize>,
    /// `--tls-cert`/`--tls-key`: every accepted connection is TLS.
    pub tls: Option<Arc<crate::tls::ServerTls>>,
}

/// What a worker is built from, before its thread starts.
#[derive(Debug)]
pub struct Parts {
    pub index: usize,
    pub poll: Poll,
    pub listener: TcpListener,
    pub receiver: Receiver<Vec<Msg>>,
    pub seed: u64,
    /// Redis's address (and TLS settings), resolved once at start; `None`:
    /// embedded broker.
    pub redis: Option<crate::broker::redis::Endpoint>,
}

/// Where a worker's channels are ordered.
#[derive(Debug)]
enum Broker {
    /// In this process.
    Embedded(Owner),
    /// Through Redis, shared with other nodes.
    Redis(Box<RedisOwner>),
}

#[derive(Debug)]
pub struct Worker {
    index: usize,
    poll: Poll,
    listener: TcpListener,
    receiver: Receiver<Vec<Msg>>,
    shared: Arc<Shared>,
    config: Arc<Config>,
    metrics: Arc<WorkerMetrics>,
    conns: Slab<Conn>,
    registry: Registry,
    broker: Broker,
    outbox: Outbox,
    dirty: Vec<usize>,
    /// Slow consumers found by a delivery, kept for its capacity.
    slow: Vec<usize>,
    /// See [`SPARE_BATCHES`].
    spare: Vec<Vec<Msg>>,
    scratch: Vec<u8>,
    next_serial: u32,
    next_conn_seq: u64,
    ping_frame: Bytes,
    draining: bool,
    now: Instant,
    next_tick: Instant,
}

impl Worker {
    pub fn new(parts: Parts, shared: Arc<Shared>) -> io::Result<Self> {
        let mut listener = parts.listener;
        parts
            .poll
            .registry()
            .register(&mut listener, LISTENER, Interest::READABLE)?;
        let config = shared.config.clone();
        let workers = config.threads;
        let now = Instant::now();
        let broker = match (parts.redis, config.redis_url()) {
            (Some(endpoint), Some(url)) => Broker::Redis(Box::new(RedisOwner::new(
                config.clone(),
                url,
                endpoint,
                REDIS,
                parts.seed,
                shared.links_down.clone(),
                shared.metrics[parts.index].clone(),
            ))),
            _ => Broker::Embedded(Owner::new(
                OwnerLimits {
                    config: config.clone(),
                    metrics: shared.metrics[parts.index].clone(),
                },
                parts.seed,
            )),
        };
        Ok(Worker {
            index: parts.index,
            poll: parts.poll,
            listener,
            receiver: parts.receiver,
            broker,
            metrics: shared.metrics[parts.index].clone(),
            shared,
            config,
            conns: Slab::new(),
            registry: Registry::default(),
            outbox: Outbox::new(workers),
            dirty: Vec::new(),
            slow: Vec::new(),
            spare: Vec::new(),
            scratch: vec![0; SCRATCH],
            next_serial: 1,
            next_conn_seq: 1,
            ping_frame: crate::ws::server_frame(crate::ws::OpCode::Ping, b""),
            draining: false,
            now,
            next_tick: now,
        })
    }

    /// Runs until drained.
    pub fn run(mut self) -> io::Result<()> {
        let mut events = Events::with_capacity(1024);
        // The end of the last turn: one clock read serves both its loop-time
        // metric and the next poll's timeout.
        let mut turn_end = Instant::now();
        loop {
            let timeout = self.next_tick.saturating_duration_since(turn_end);
            match self.poll.poll(&mut events, Some(timeout)) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
            self.now = Instant::now();
            for event in events.iter() {
                match event.token() {
                    WAKER => self.drain_queue(),
                    LISTENER => self.accept(),
                    REDIS => {
                        if let Broker::Redis(r) = &mut self.broker {
                            r.on_ready(self.now, self.poll.registry(), &mut self.outbox);
                        }
                    }
                    token => {
                        let Some(key) = key_of(token) else { continue };
                        let closed = event.is_read_closed() || event.is_error();
                        if event.is_readable() || closed {
                            self.on_readable(key, closed);
                        }
                        if event.is_writable() {
                            self.mark_dirty(key);
                        }
                    }
                }
            }
            self.pump();
            if self.now >= self.next_tick {
                self.tick();
                self.pump();
            }
            let owned = match &self.broker {
                Broker::Embedded(owner) => owner.channel_count(),
                Broker::Redis(r) => r.channel_count(),
            };
            self.shared.owned_channels[self.index].store(owned, Ordering::Relaxed);
            turn_end = Instant::now();
            let spent = turn_end.saturating_duration_since(self.now).as_nanos() as u64;
            self.metrics.loop_time.observe(spent);
            if self.draining && self.conns.is_empty() {
                return Ok(());
            }
        }
    }

    /// Drains the outbox and flushes dirty connections until nothing is left.
    fn pump(&mut self) {
        loop {
            for w in 0..self.outbox.workers() {
                if w == self.index || self.outbox.queue_mut(w).is_empty() {
                    continue;
                }
                let fresh = self.spare.pop().unwrap_or_default();
                let batch = std::mem::replace(self.outbox.queue_mut(w), fresh);
                if self.shared.senders[w].send(batch).is_ok() {
                    let _ = self.shared.wakers[w].wake();
                }
            }
            if self.outbox.queue_mut(self.index).is_empty() {
                // Flushing can release held HTTP input, whose requests may
                // queue more messages.
                if self.flush_dirty() {
                    continue;
                }
                break;
            }
            // Owners handling these queue more for this worker: they go to
            // a fresh batch, handled in the next round.
            let fresh = self.spare.pop().unwrap_or_default();
            let mut local = std::mem::replace(self.outbox.queue_mut(self.index), fresh);
            for msg in local.drain(..) {
                self.dispatch(msg);
            }
            if let Broker::Redis(r) = &mut self.broker {
                r.flush(self.now, self.poll.registry(), &mut self.outbox);
            }
            self.keep_spare(local);
        }
    }

    /// Keeps an emptied batch for reuse (see [`SPARE_BATCHES`]).
    fn keep_spare(&mut self, batch: Vec<Msg>) {
        debug_assert!(batch.is_empty());
        let cap = batch.capacity();
        if cap > 0 && cap <= SPARE_BATCH_CAPACITY && self.spare.len() < SPARE_BATCHES {
            self.spare.push(batch);
        }
    }

    fn drain_queue(&mut self) {
        while let Ok(mut batch) = self.receiver.try_recv() {
            for msg in batch.drain(..) {
                self.dispatch(msg);
            }
            self.keep_spare(batch);
        }
        if let Broker::Redis(r) = &mut self.broker {
            r.flush(self.now, self.poll.registry(), &mut self.outbox);
        }
    }

    fn accept(&mut self) {
        loop {
            match self.listener.accept() {
                Ok((stream, _)) => self.add_conn(stream),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    // EMFILE and friends: the connection waits in the
                    // backlog; the next readiness event retries.
                    tracing::warn!(worker = self.index, error = %e, "accept failed");
                    return;
                }
            }
        }
    }

    fn add_conn(&mut self, mut stream: TcpStream) {
        let _ = stream.set_nodelay(true);
        let entry = self.conns.vacant_entry();
        let key = entry.key();
        if let Err(e) = self.poll.registry().register(
            &mut stream,
            token_of(key),
            Interest::READABLE | Interest::WRITABLE,
        ) {
            tracing::warn!(error = %e, "register failed");
            return;
        }
        let serial = self.next_serial;
        self.next_serial = self.next_serial.wrapping_add(1).max(1);
        // The certificate of the moment (SIGHUP may replace it): one
        // atomic load per connection, none per message.
        let tls = self
            .shared
            .tls
            .as_ref()
            .map(|t| Box::new(crate::tls::TlsSession::server(t.config())));
        // The handshake timeout covers the TLS handshake too.
        entry.insert(Conn::new(
            stream,
            serial,
            self.now + self.config.handshake_timeout,
            tls,
        ));
    }

    /// Reads until the socket is drained. `closed`: the event said the peer
    /// hung up or the socket failed, so reading goes on to the 0 or the
    /// error that makes the connection go away.
    ///
    /// # Draining readiness
    ///
    /// A read that fills less than the buffer drained a stream socket, and
    /// data arriving later raises a new edge (epoll(7), "edge-triggered"), so
    /// the loop stops there instead of paying one more `recv` for its
    /// `EAGAIN`: in chatty traffic that is one system call per client
    /// message. A hang-up arriving after the event was reported raises its
    /// own edge too.
    fn on_readable(&mut self, key: usize, closed: bool) {
        if self.scratch.is_empty() {
            // Already reading (a nested call): an empty buffer would read as EOF.
            return;
        }
        let mut scratch = std::mem::take(&mut self.scratch);
        while let Some(conn) = self.conns.get_mut(key) {
            if conn.held && conn.inbuf.len() >= SCRATCH {
                // Held HTTP input: leave the rest in the kernel, so TCP
                // pushes back, until `resume_input` reads again.
                break;
            }
            let drains = conn.short_read_drains();
            match conn.read(&mut scratch) {
                Ok(0) => {
                    self.drop_conn(key);
                    break;
                }
                Ok(n) => {
                    self.metrics.bytes_in(n as u64);
                    self.on_bytes(key, &mut scratch, n);
                    if n < scratch.len() && !closed && drains {
                        break;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => {
                    self.drop_conn(key);
                    break;
                }
            }
        }
        self.scratch = scratch;
    }

    /// Feeds `n` freshly read bytes (in `scratch`) to the connection's core.
    /// Bytes of an incomplete frame or request are kept in the connection.
    fn on_bytes(&mut self, key: usize, scratch: &mut [u8], n: usize) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        if conn.inbuf.is_empty() {
            let data = &mut scratch[..n];
            let used = self.on_data(key, data);
            if let Some(conn) = self.conns.get_mut(key) {
                if used < n {
                    conn.inbuf.extend_from_slice(&scratch[used..n]);
                }
            }
        } else {
            let mut buf = std::mem::take(&mut conn.inbuf);
            buf.extend_from_slice(&scratch[..n]);
            let used = self.on_data(key, &mut buf);
            if let Some(conn) = self.conns.get_mut(key) {
                buf.drain(..used.min(buf.len()));
                if buf.capacity() > 2 * SCRATCH && buf.len() < SCRATCH {
                    buf.shrink_to_fit();
                }
                conn.inbuf = buf;
            }
        }
    }

    /// Runs input through the connection's phase; returns the bytes used.
    fn on_data(&mut self, key: usize, data: &mut [u8]) -> usize {
        let limit = self.config.outbound_limit;
        let mut pos = 0;
        loop {
            let Some(conn) = self.conns.get_mut(key) else {
                return data.len();
            };
            match conn.phase {
                // Pipelined requests wait while an API answer is pending or
                // the client leaves `--outbound-limit` bytes of responses
                // unread: a few bytes of request must not queue kilobytes of
                // response without bound.
                Phase::Http { .. }
                    if conn.api_pending.is_some() || conn.out.queued_bytes() >= limit =>
                {
                    conn.held = true;
                    return pos;
                }
                Phase::Http { .. } => match self.on_http(key, &data[pos..]) {
                    0 => return pos,
                    used => pos += used,
                },
                Phase::Ws(_) => return pos + self.on_ws(key, &mut data[pos..]),
                // Whatever a closing peer still sends is read and dropped.
                Phase::Closing { .. } => return data.len(),
            }
        }
    }

    fn conn_id(&self, key: usize) -> Option<ConnId> {
        self.conns
            .get(key)
            .map(|c| ConnId::new(self.index, key, c.serial))
    }

    /// The live connection a message is addressed to, if it still exists.
    fn conn_for(&mut self, who: ConnId) -> Option<&mut Conn> {
        self.conns
            .get_mut(who.key())
            .filter(|c| c.serial == who.serial())
    }

    fn mark_dirty(&mut self, key: usize) {
        if let Some(conn) = self.conns.get_mut(key) {
            if !conn.dirty {
                conn.dirty = true;
                self.dirty.push(key);
            }
        }
    }

    /// Queues `frame` for `key`; a full queue makes it a slow consumer.
    fn send_frame(&mut self, key: usize, frame: Bytes) {
        let limit = self.config.outbound_limit;
        self.queue_frame(key, frame, limit);
    }

    /// [`Worker::send_frame`] with an explicit outbound limit.
    fn queue_frame(&mut self, key: usize, frame: Bytes, limit: usize) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        if conn.is_closing() {
            return;
        }
        if conn.queue(frame, limit).is_err() {
            self.begin_close(key, 4008, "slow consumer", true);
            return;
        }
        self.mark_dirty(key);
    }

    /// Writes every connection that got frames; returns whether held HTTP
    /// input was released (and may have queued more).
    fn flush_dirty(&mut self) -> bool {
        let limit = self.config.outbound_limit;
        let mut release = Vec::new();
        let mut dirty = std::mem::take(&mut self.dirty);
        for key in dirty.drain(..) {
            let Some(conn) = self.conns.get_mut(key) else {
                continue;
            };
            conn.dirty = false;
            match conn.flush() {
                Ok(written) => self.metrics.bytes_out(written as u64),
                Err(_) => {
                    self.drop_conn(key);
                    continue;
                }
            }
            if conn.held && conn.api_pending.is_none() && conn.out.queued_bytes() < limit {
                release.push(key);
            }
            if let Phase::Closing { shut: false, .. } = conn.phase {
                if conn.shutdown_when_sent() {
                    if let Phase::Closing { shut, .. } = &mut conn.phase {
                        *shut = true;
                    }
                }
            }
        }
        self.dirty = dirty;
        for &key in &release {
            self.resume_input(key);
        }
        !release.is_empty()
    }

    /// Decides the close of a connection: leave every channel, then queue
    /// the close frame (dropping unsent frames first when `drop_queue`, for
    /// a slow consumer) once every reply owed for earlier requests has gone
    /// out (PROTOCOL.md §8; see `conn::Replies`), and give the peer
    /// [`CLOSE_GRACE`] to hang up. Input is ignored from here on.
    ///
    /// Every close of a WebSocket comes here, so every close code keeps
    /// the rule. A queue that overflows while the close waits ends the
    /// wait: the outbound bound wins over the owed replies.
    fn begin_close(&mut self, key: usize, code: u16, reason: &str, drop_queue: bool) {
        self.leave_all(key);
        let now = self.now;
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        let frame = match &mut conn.phase {
            Phase::Closing { .. } => return,
            Phase::Http { .. } => Bytes::new(),
            Phase::Ws(ws) => {
                let replies = &mut ws.session.replies;
                if drop_queue {
                    conn.out.truncate_unstarted();
                    replies.drop_parked();
                }
                match replies.request_close(crate::ws::close_frame(code, reason), now) {
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
        self.close_with(key, frame);
    }

    /// Queues the last frame (a close frame, or nothing) and moves to
    /// [`Phase::Closing`].
    fn close_with(&mut self, key: usize, frame: Bytes) {
        let deadline = self.now + CLOSE_GRACE;
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        conn.out.push_unbounded(frame);
        conn.phase = Phase::Closing {
            deadline,
            shut: false,
        };
        self.mark_dirty(key);
    }

    /// A close waiting for owed replies goes out once they have, or once
    /// its wait is over (then with what is still parked, within the bound).
    fn close_if_settled(&mut self, key: usize) {
        let now = self.now;
        let limit = self.config.outbound_limit;
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        let Phase::Ws(ws) = &mut conn.phase else {
            return;
        };
        let Some(frame) = ws.session.replies.poll_close(now) else {
            return;
        };
        for parked in ws.session.replies.take_parked() {
            if conn.out.push(parked, limit).is_err() {
                break;
            }
        }
        self.close_with(key, frame);
    }

    /// Ends an HTTP exchange after its response: half-close once written.
    fn close_after_response(&mut self, key: usize) {
        let deadline = self.now + CLOSE_GRACE;
        if let Some(conn) = self.conns.get_mut(key) {
            conn.phase = Phase::Closing {
                deadline,
                shut: false,
            };
        }
        self.mark_dirty(key);
    }

    /// Removes a WebSocket from every channel it is in, telling the owners.
    fn leave_all(&mut self, key: usize) {
        let Some(me) = self.conn_id(key) else { return };
        let Some(ws) = self.conns.get_mut(key).and_then(Conn::ws_mut) else {
            return;
        };
        for channel in ws.session.channels.drain() {
            self.registry.remove(&channel, me.handle());
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

    /// Forgets a connection at once (the peer is gone or the grace is over).
    fn drop_conn(&mut self, key: usize) {
        self.leave_all(key);
        if let Some(conn) = self.conns.try_remove(key) {
            if conn.tls_handshake_failed() {
                self.metrics.tls_handshake_failed();
            }
            if conn.counted {
                self.shared.ws_connections.fetch_sub(1, Ordering::Relaxed);
            }
            // Dropping the stream closes the socket, which also removes it
            // from epoll.
        }
    }

    /// Handles a message from a worker (this one included).
    fn dispatch(&mut self, msg: Msg) {
        match msg {
            Msg::Owner(msg) => match &mut self.broker {
                Broker::Embedded(owner) => owner.handle(msg, self.now, &mut self.outbox),
                Broker::Redis(r) => r.handle(msg, &mut self.outbox),
            },
            Msg::Worker(msg) => self.on_worker_msg(msg),
        }
    }

    /// Handles an owner's message for this worker's connections.
    fn on_worker_msg(&mut self, msg: ToWorker) {
        match msg {
            ToWorker::JoinFailed {
                channel,
                who,
                id,
                rejoin,
            } => {
                let Some(conn) = self.conn_for(who) else {
                    return;
                };
                if !rejoin {
                    if let Some(ws) = conn.ws_mut() {
                        ws.session.channels.remove(&channel);
                    }
                }
                let code = crate::proto::ErrorCode::Unavailable;
                self.metrics.error(code.as_str());
                let frame = crate::ws::text_frame_with(|b| {
                    crate::proto::server::error(b, id, code, "the broker is unreachable")
                });
                self.send_owed(who.key(), [frame]);
            }
            ToWorker::Joined {
                channel,
                who,
                frames,
            } => {
                let Some(conn) = self.conn_for(who) else {
                    return;
                };
                // A connection whose close is decided has left every
                // channel: it gets its `joined`, but no more events.
                if conn
                    .ws_mut()
                    .is_some_and(|ws| !ws.session.replies.closing())
                {
                    self.registry.add(&channel, who.handle());
                }
                self.metrics
                    .delivered(DeliveredType::Reply, frames.len() as u64);
                self.send_owed(who.key(), frames);
            }
            ToWorker::Left {
                channel,
                who,
                frame,
            } => {
                self.registry.remove(&channel, who.handle());
                if let Some(f) = frame {
                    if self.conn_for(who).is_some() {
                        self.send_owed(who.key(), [f]);
                    }
                }
            }
            ToWorker::Reply { who, frame, owed } => {
                if self.conn_for(who).is_some() {
                    self.metrics.delivered(DeliveredType::Reply, 1);
                    if owed {
                        self.send_owed(who.key(), [frame]);
                    } else {
                        self.send_frame(who.key(), frame);
                    }
                }
            }
            ToWorker::Deliver {
                channel,
                frame,
                except,
                presence,
            } => {
                let n = self.deliver(&channel, &frame, except);
                let kind = if presence {
                    DeliveredType::Presence
                } else {
                    DeliveredType::UserAction
                };
                self.metrics.delivered(kind, n);
            }
            ToWorker::Answer { to, answer } => self.on_answer(to, answer),
            ToWorker::Shutdown => self.start_drain(),
        }
    }

    /// Queues one shared frame for every local member of `channel`.
    fn deliver(&mut self, channel: &str, frame: &Bytes, except: Option<ConnId>) -> u64 {
        let except = except
            .filter(|e| e.worker() == self.index)
            .map(ConnId::handle);
        let mut fanout = Fanout {
            dirty: std::mem::take(&mut self.dirty),
            slow: std::mem::take(&mut self.slow),
        };
        let queued = self.registry.deliver(
            channel,
            frame,
            except,
            self.config.outbound_limit,
            &mut self.conns,
            &mut fanout,
        );
        self.dirty = fanout.dirty;
        for key in fanout.slow.drain(..) {
            self.begin_close(key, 4008, "slow consumer", true);
        }
        self.slow = fanout.slow;
        queued
    }

    fn start_drain(&mut self) {
        if self.draining {
            return;
        }
        self.draining = true;
        let keys: Vec<usize> = self.conns.iter().map(|(k, _)| k).collect();
        for key in keys {
            let Some(conn) = self.conns.get(key) else {
                continue;
            };
            match conn.phase {
                Phase::Ws(_) => self.begin_close(key, 1001, "server shutting down", false),
                Phase::Http { .. } => self.drop_conn(key),
                Phase::Closing { .. } => {}
            }
        }
    }

    /// Heartbeats and deadlines; runs a few times per heartbeat interval.
    fn tick(&mut self) {
        let hb = self.config.heartbeat;
        let interval = (hb / 4).clamp(Duration::from_millis(50), Duration::from_secs(1));
        self.next_tick = self.now + interval;
        match &mut self.broker {
            Broker::Embedded(owner) => owner.sweep(self.now),
            Broker::Redis(r) => {
                r.tick(self.now, self.poll.registry(), &mut self.outbox);
                if let Some(t) = r.next_deadline() {
                    self.next_tick = self
                        .next_tick
                        .min(t.max(self.now + Duration::from_millis(10)));
                }
            }
        }
        let now = self.now;
        let silent_after = hb * 3;
        let mut expired = Vec::new();
        let mut silent = Vec::new();
        let mut ping = Vec::new();
        let mut waited = Vec::new();
        for (key, conn) in self.conns.iter_mut() {
            match &mut conn.phase {
                Phase::Http { deadline } | Phase::Closing { deadline, .. } => {
                    if now >= *deadline {
                        expired.push(key);
                    }
                }
                Phase::Ws(ws) if ws.session.replies.closing() => {
                    if ws
                        .session
                        .replies
                        .close_deadline()
                        .is_some_and(|t| now >= t)
                    {
                        waited.push(key);
                    }
                }
                Phase::Ws(ws) => {
                    if now.saturating_duration_since(ws.last_recv) >= silent_after {
                        silent.push(key);
                    } else if now >= ws.next_ping {
                        ws.next_ping = now + hb;
                        ping.push(key);
                    }
                }
            }
        }
        for key in expired {
            self.drop_conn(key);
        }
        for key in waited {
            self.close_if_settled(key);
        }
        for key in silent {
            self.begin_close(key, 1001, "heartbeat timeout", false);
        }
        for key in ping {
            let frame = self.ping_frame.clone();
            self.send_frame(key, frame);
        }
    }
}
