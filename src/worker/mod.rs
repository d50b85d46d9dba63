//! The per-core event loop: a thin driver around [`Connection`]s and the
//! channel owners.
//!
//! Each worker owns a `mio::Poll`, its own `SO_REUSEPORT` listener, a slab of
//! connections, its fan-out [`Registry`] and its share of channel owners. It
//! decides nothing about the protocol: it reads sockets into connections,
//! moves what they ask of owners to the owners' queues, hands the owners'
//! answers back to connections (and to the registry, for deliveries), writes
//! what connections queued, and runs their timers.
//!
//! Workers talk through one `crossbeam-channel` queue each plus a
//! `mio::Waker`; a turn batches everything bound for one worker into one
//! queue message and one wake-up.
//!
//! # Loop turn
//!
//! 1. poll;
//! 2. accept, read into connections;
//! 3. drain the outbox: messages to this worker are handled at once, others
//!    are sent;
//! 4. flush every connection that has bytes to write (a flush can release
//!    held HTTP input, which is then read);
//! 5. timers (heartbeats, deadlines, the Redis link's upkeep).
//!
//! On a TLS listener each socket has its TLS session in front of it
//! ([`stream::Stream`]); nothing else here knows.

mod stream;

use std::io;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use crossbeam_channel::{Receiver, Sender};
use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Waker};
use slab::Slab;

use crate::auth::unix_now;
use crate::broker::redis::RedisOwner;
use crate::broker::{ConnId, Msg, Outbox, Owner, OwnerLimits, ToWorker};
use crate::conn::Outbound;
use crate::connection::{Connection, Cx, MAX_HELD_INPUT};
use crate::id::{key_of, token_of, LISTENER, REDIS, WAKER};
use crate::metrics::{DeliveredType, WorkerMetrics};
use crate::node::Node;
use crate::registry::{Fanout, Recipient, Registry};
use crate::tls::{ServerTls, TlsSession};
use stream::Stream;

/// The per-worker read buffer: a full default-sized message and its header
/// fit in one read, and so does the input a held connection may keep.
const SCRATCH: usize = MAX_HELD_INPUT;

/// Emptied batches (this worker's own, and those other workers sent) kept
/// to carry the next ones: traffic between workers flows both ways, so in a
/// steady state no turn allocates a batch.
const SPARE_BATCHES: usize = 8;
/// A batch grown past this (a burst) is freed rather than kept.
const SPARE_BATCH_CAPACITY: usize = 4096;

/// State every worker reads: the node's, and the queues between workers.
#[derive(Debug)]
pub struct Shared {
    pub node: Node,
    pub senders: Vec<Sender<Vec<Msg>>>,
    pub wakers: Vec<Arc<Waker>>,
    /// `--tls-cert`/`--tls-key`: every accepted connection is TLS.
    pub tls: Option<Arc<ServerTls>>,
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

/// A socket and its connection.
#[derive(Debug)]
struct Entry {
    stream: Stream,
    conn: Connection,
    /// Already on the worker's list of connections to flush.
    dirty: bool,
}

impl Recipient for Entry {
    fn serial(&self) -> u32 {
        self.conn.id().serial()
    }

    fn outbound(&mut self) -> Option<&mut Outbound> {
        self.conn.event_queue()
    }

    fn mark_dirty(&mut self) -> bool {
        !std::mem::replace(&mut self.dirty, true)
    }
}

#[derive(Debug)]
pub struct Worker {
    index: usize,
    poll: Poll,
    listener: TcpListener,
    receiver: Receiver<Vec<Msg>>,
    shared: Arc<Shared>,
    metrics: Arc<WorkerMetrics>,
    conns: Slab<Entry>,
    registry: Registry,
    broker: Broker,
    outbox: Outbox,
    dirty: Vec<usize>,
    /// Slow consumers found by a delivery, kept for its capacity.
    slow: Vec<usize>,
    /// Connections whose held input was released: read them again.
    to_read: Vec<usize>,
    /// Connections with a timer due, kept for its capacity.
    due: Vec<usize>,
    /// See [`SPARE_BATCHES`].
    spare: Vec<Vec<Msg>>,
    scratch: Vec<u8>,
    next_serial: u32,
    conn_seq: u64,
    draining: bool,
    now: Instant,
    unix_secs: u64,
    next_tick: Instant,
}

/// The context of a call into a connection, borrowed field by field so the
/// slab stays free to lend the connection itself.
macro_rules! cx {
    ($w:ident) => {
        Cx {
            now: $w.now,
            unix_secs: $w.unix_secs,
            node: &$w.shared.node,
            metrics: &$w.metrics,
            out: &mut $w.outbox,
            conn_seq: &mut $w.conn_seq,
        }
    };
}

impl Worker {
    pub fn new(parts: Parts, shared: Arc<Shared>) -> io::Result<Self> {
        let mut listener = parts.listener;
        parts
            .poll
            .registry()
            .register(&mut listener, LISTENER, Interest::READABLE)?;
        let node = &shared.node;
        let config = node.config.clone();
        let metrics = node.metrics[parts.index].clone();
        let now = Instant::now();
        let broker = match (parts.redis, config.redis_url()) {
            (Some(endpoint), Some(url)) => Broker::Redis(Box::new(RedisOwner::new(
                config.clone(),
                url,
                endpoint,
                REDIS,
                parts.seed,
                node.links_down.clone(),
                metrics.clone(),
            ))),
            _ => Broker::Embedded(Owner::new(
                OwnerLimits {
                    config: config.clone(),
                    metrics: metrics.clone(),
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
            metrics,
            conns: Slab::new(),
            registry: Registry::default(),
            outbox: Outbox::new(config.threads),
            shared,
            dirty: Vec::new(),
            slow: Vec::new(),
            to_read: Vec::new(),
            due: Vec::new(),
            spare: Vec::new(),
            scratch: vec![0; SCRATCH],
            next_serial: 1,
            conn_seq: 1,
            draining: false,
            now,
            unix_secs: unix_now(),
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
            // Token times (PROTOCOL.md §6) are wall-clock seconds.
            self.unix_secs = unix_now();
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
                            self.read(key, closed);
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
            self.shared.node.owned_channels[self.index].store(owned, Ordering::Relaxed);
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
            for key in std::mem::take(&mut self.to_read) {
                self.read(key, false);
            }
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
                self.flush_dirty();
                // Flushing can release held HTTP input, to be read.
                if self.to_read.is_empty() {
                    break;
                }
                continue;
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
        let key = self.conns.vacant_key();
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
        let id = ConnId::new(self.index, key, serial);
        let conn = Connection::new(id, &cx!(self));
        // The certificate of the moment (SIGHUP may replace it): one atomic
        // load per connection, none per message. The connection's
        // handshake timeout, running from now, covers the TLS handshake.
        let tls = self
            .shared
            .tls
            .as_ref()
            .map(|t| Box::new(TlsSession::server(t.config())));
        self.conns.insert(Entry {
            stream: Stream::new(stream, tls),
            conn,
            dirty: false,
        });
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
    /// own edge too. Held HTTP input leaves the rest in the kernel, so TCP
    /// pushes back, until the connection releases it.
    fn read(&mut self, key: usize, closed: bool) {
        loop {
            let Some(entry) = self.conns.get_mut(key) else {
                return;
            };
            if !entry.conn.wants_input() {
                break;
            }
            let drains = entry.stream.short_read_drains();
            match entry.stream.read(&mut self.scratch) {
                Ok(0) => return self.drop_conn(key),
                Ok(n) => {
                    self.metrics.bytes_in(n as u64);
                    entry
                        .conn
                        .handle_input(&mut self.scratch[..n], &mut cx!(self));
                    if entry.conn.is_done() || (n < self.scratch.len() && !closed && drains) {
                        break;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => return self.drop_conn(key),
            }
        }
        self.after_call(key);
    }

    /// After a call into a connection: forget it when done, read it again
    /// when its held input was released, flush it when it queued bytes.
    fn after_call(&mut self, key: usize) {
        let Some(entry) = self.conns.get_mut(key) else {
            return;
        };
        if entry.conn.is_done() {
            return self.drop_conn(key);
        }
        if entry.conn.take_read_again() {
            self.to_read.push(key);
        }
        if entry.conn.wants_flush() {
            self.mark_dirty(key);
        }
    }

    /// The live connection a message is addressed to, if it still exists.
    fn conn_for(&mut self, who: ConnId) -> Option<&mut Connection> {
        self.conns
            .get_mut(who.key())
            .map(|e| &mut e.conn)
            .filter(|c| c.id() == who)
    }

    fn mark_dirty(&mut self, key: usize) {
        if let Some(entry) = self.conns.get_mut(key) {
            if !entry.dirty {
                entry.dirty = true;
                self.dirty.push(key);
            }
        }
    }

    /// Writes every connection that has bytes queued, half-closes those
    /// whose last bytes are out, and lets each release held input.
    fn flush_dirty(&mut self) {
        let mut dirty = std::mem::take(&mut self.dirty);
        for key in dirty.drain(..) {
            let Some(entry) = self.conns.get_mut(key) else {
                continue;
            };
            entry.dirty = false;
            match entry.stream.write_from(entry.conn.transmit()) {
                Ok(written) => self.metrics.bytes_out(written as u64),
                Err(_) => {
                    self.drop_conn(key);
                    continue;
                }
            }
            if entry.conn.poll_shutdown() {
                entry.stream.shutdown_write(entry.conn.transmit());
            }
            entry.conn.handle_written(&mut cx!(self));
            if entry.conn.take_read_again() {
                self.to_read.push(key);
            }
        }
        self.dirty = dirty;
    }

    /// Forgets a connection at once (the peer is gone, the socket failed,
    /// or the connection is done).
    fn drop_conn(&mut self, key: usize) {
        if let Some(mut entry) = self.conns.try_remove(key) {
            if entry.stream.tls_handshake_failed() {
                self.metrics.tls_handshake_failed();
            }
            entry.conn.handle_gone(&mut cx!(self));
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

    /// Hands an owner's message to the connection it is for (and keeps the
    /// fan-out registry in step with the owner's membership).
    fn on_worker_msg(&mut self, msg: ToWorker) {
        let who = match msg {
            ToWorker::Deliver {
                channel,
                frame,
                except,
                presence,
            } => return self.deliver(&channel, &frame, except, presence),
            ToWorker::Shutdown => return self.start_drain(),
            ToWorker::Joined {
                ref channel, who, ..
            } => {
                if self.conn_for(who).is_some_and(|c| c.takes_events()) {
                    self.registry.add(channel, who.handle());
                }
                who
            }
            ToWorker::Left {
                ref channel, who, ..
            } => {
                self.registry.remove(channel, who.handle());
                who
            }
            ToWorker::JoinFailed { who, .. } | ToWorker::Reply { who, .. } => who,
            ToWorker::Answer { to, .. } => to,
        };
        let (now, unix_secs) = (self.now, self.unix_secs);
        let Some(entry) = self.conns.get_mut(who.key()).filter(|e| e.conn.id() == who) else {
            return;
        };
        let cx = &mut Cx {
            now,
            unix_secs,
            node: &self.shared.node,
            metrics: &self.metrics,
            out: &mut self.outbox,
            conn_seq: &mut self.conn_seq,
        };
        let conn = &mut entry.conn;
        match msg {
            ToWorker::Joined { frames, .. } => {
                cx.metrics
                    .delivered(DeliveredType::Reply, frames.len() as u64);
                conn.handle_joined(frames, cx);
            }
            ToWorker::Left { frame, .. } => conn.handle_left(frame, cx),
            ToWorker::JoinFailed {
                channel,
                id,
                rejoin,
                ..
            } => conn.handle_join_failed(&channel, id, rejoin, cx),
            ToWorker::Reply { frame, owed, .. } => {
                cx.metrics.delivered(DeliveredType::Reply, 1);
                conn.handle_reply(frame, owed, cx);
            }
            ToWorker::Answer { answer, .. } => conn.handle_answer(answer, cx),
            ToWorker::Deliver { .. } | ToWorker::Shutdown => {}
        }
        self.after_call(who.key());
    }

    /// Queues one shared frame for every local member of `channel`.
    fn deliver(&mut self, channel: &str, frame: &Bytes, except: Option<ConnId>, presence: bool) {
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
            self.shared.node.config.outbound_limit,
            &mut self.conns,
            &mut fanout,
        );
        self.dirty = fanout.dirty;
        for key in fanout.slow.drain(..) {
            if let Some(entry) = self.conns.get_mut(key) {
                entry.conn.handle_slow(&mut cx!(self));
                self.after_call(key);
            }
        }
        self.slow = fanout.slow;
        let kind = if presence {
            DeliveredType::Presence
        } else {
            DeliveredType::UserAction
        };
        self.metrics.delivered(kind, queued);
    }

    fn start_drain(&mut self) {
        if self.draining {
            return;
        }
        self.draining = true;
        let keys: Vec<usize> = self.conns.iter().map(|(k, _)| k).collect();
        for key in keys {
            if let Some(entry) = self.conns.get_mut(key) {
                entry.conn.handle_drain(&mut cx!(self));
                self.after_call(key);
            }
        }
    }

    /// The Redis link's upkeep, then every connection's due timers; runs a
    /// few times per heartbeat interval.
    fn tick(&mut self) {
        let hb = self.shared.node.config.heartbeat;
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
        let mut due = std::mem::take(&mut self.due);
        {
            let cx = cx!(self);
            due.extend(
                self.conns
                    .iter()
                    .filter(|(_, e)| e.conn.poll_timeout(&cx).is_some_and(|t| t <= cx.now))
                    .map(|(k, _)| k),
            );
        }
        for &key in &due {
            if let Some(entry) = self.conns.get_mut(key) {
                entry.conn.handle_timeout(&mut cx!(self));
                self.after_call(key);
            }
        }
        due.clear();
        self.due = due;
    }
}
