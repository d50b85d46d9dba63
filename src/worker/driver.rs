//! The part of a worker that needs no `mio::Poll`: its connections over
//! any [`Socket`], the fan-out registry, the owners, and the queues to other
//! workers. [`super::Worker`] runs it over TCP; the fan-out bench and the
//! allocation test run it over in-memory sockets, so they measure the code
//! the server runs.
//!
//! It decides nothing about the protocol: it reads sockets into
//! [`Connection`]s, moves what they ask of owners to the owners' queues,
//! hands the owners' answers back to connections (and to the registry, for
//! deliveries), writes what connections queued, and runs their timers.
//!
//! # Flushing in rounds
//!
//! One [`Driver::pump`] writes at most [`FLUSH_ROUND`] connections; the
//! rest wait, in the order they were queued to, for the next call, which
//! the loop makes after a poll that does not wait. A fan-out to thousands
//! of local members thus never holds the loop for all their writes: reads
//! and other workers' messages are served between rounds, and a frame
//! queued meanwhile for a member still waiting joins its pending write.
//!
//! # Waiting for the writable edge
//!
//! A write that leaves bytes queued found the socket full, and the kernel
//! armed its next writable edge. Until that edge comes the connection is
//! *blocked*: frames queued for it are counted against its limit but do
//! not list it for a flush, so a stalled reader costs a fan-out one queue
//! push, not one `writev` of its whole backlog per turn that the kernel
//! refuses with `EAGAIN` (measured: 19 486 of 41 908 `writev` in 6 s with
//! 28 stalled readers; none since). The worker's writable event unblocks
//! it ([`Driver::writable`]).

use std::io;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use super::Shared;
use crate::auth::unix_now;
use crate::broker::{Broker, ConnId, Msg, Outbox, ToWorker};
use crate::conn::Outbound;
use crate::connection::{Connection, Cx, MAX_HELD_INPUT};
use crate::metrics::{latency, DeliveredType, WorkerMetrics};
use crate::registry::{Fanout, Recipient, Registry};
use crate::socket::Socket;
use crate::ws::deflate::{Broadcast, Codec, WindowBits};

/// Connections written per [`Driver::pump`] (see "Flushing in rounds"):
/// about a millisecond of `write(2)`s of small frames.
pub const FLUSH_ROUND: usize = 256;

/// A socket and its connection.
#[derive(Debug)]
struct Entry<S> {
    stream: S,
    conn: Connection,
    /// Already on the list of connections to flush.
    dirty: bool,
    /// Already on the list of connections whose reads wait.
    deferred: bool,
    /// The last write left bytes queued: the socket is full, and only its
    /// writable edge lists it again (see "Waiting for the writable edge").
    blocked: bool,
    /// The turn that queued the oldest unwritten byte: the start of the
    /// write delay observed once the backlog is written.
    queued_since: Option<Instant>,
}

impl<S> Recipient for Entry<S> {
    fn serial(&self) -> u32 {
        self.conn.id().serial()
    }

    fn outbound(&mut self) -> Option<&mut Outbound> {
        self.conn.event_queue()
    }

    fn mark_dirty(&mut self) -> bool {
        !self.blocked && !std::mem::replace(&mut self.dirty, true)
    }

    fn deflate(&self) -> Option<WindowBits> {
        self.conn.deflate_window()
    }
}

#[derive(Debug)]
pub struct Driver<S> {
    index: usize,
    shared: Arc<Shared>,
    metrics: Arc<WorkerMetrics>,
    conns: slab::Slab<Entry<S>>,
    registry: Registry,
    broker: Broker,
    outbox: Outbox,
    /// Connections to write, in rounds (see "Flushing in rounds"), and
    /// the slow consumers a delivery found (kept for its capacity).
    fanout: Fanout,
    /// Connections whose held input was released: read them again.
    to_read: Vec<usize>,
    /// Connections whose reads wait for another worker's queue to drain.
    deferred: Vec<usize>,
    /// Connections with a timer due, kept for its capacity.
    due: Vec<usize>,
    /// The read buffer: a full default-sized message and its header fit in
    /// one read, and so does the input a held connection may keep.
    scratch: Vec<u8>,
    next_serial: u32,
    conn_seq: u64,
    /// permessage-deflate for every connection here: compressors made on
    /// first use, reset per message (no connection owns one).
    deflate: Codec,
    draining: bool,
    now: Instant,
    unix_secs: u64,
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
            deflate: &mut $w.deflate,
        }
    };
}

impl<S: Socket> Driver<S> {
    /// Worker `index`'s driver, ordering its channels through `broker`.
    pub fn new(index: usize, shared: Arc<Shared>, broker: Broker) -> Self {
        let metrics = shared.node.metrics[index].clone();
        let workers = shared.node.config.threads;
        Driver {
            index,
            metrics,
            conns: slab::Slab::new(),
            registry: Registry::default(),
            broker,
            outbox: Outbox::new(workers),
            shared,
            fanout: Fanout::default(),
            to_read: Vec::new(),
            deferred: Vec::new(),
            due: Vec::new(),
            scratch: vec![0; MAX_HELD_INPUT],
            next_serial: 1,
            conn_seq: 1,
            deflate: Codec::default(),
            draining: false,
            now: Instant::now(),
            unix_secs: unix_now(),
        }
    }

    /// The time of this loop turn.
    pub fn set_now(&mut self, now: Instant) {
        self.now = now;
        // Token times (PROTOCOL.md §6) are wall-clock seconds.
        self.unix_secs = unix_now();
    }

    /// The slab key the next connection gets (its poll token is derived
    /// from it).
    pub fn vacant_key(&self) -> usize {
        self.conns.vacant_key()
    }

    /// Adds a connection over `stream`; returns its slab key.
    pub fn insert(&mut self, stream: S) -> usize {
        let key = self.conns.vacant_key();
        let serial = self.next_serial;
        self.next_serial = self.next_serial.wrapping_add(1).max(1);
        let conn = Connection::new(ConnId::new(self.index, key, serial), &cx!(self));
        self.conns.insert(Entry {
            stream,
            conn,
            dirty: false,
            deferred: false,
            blocked: false,
            queued_since: None,
        })
    }

    /// The node's settings.
    pub fn config(&self) -> &crate::config::Config {
        &self.shared.node.config
    }

    /// This worker's counters.
    pub fn metrics(&self) -> Arc<WorkerMetrics> {
        self.metrics.clone()
    }

    /// Whether the node is draining and every connection is gone.
    pub fn drained(&self) -> bool {
        self.draining && self.conns.is_empty()
    }

    /// Ends a loop turn: publishes how many channels this worker owns (for
    /// `/metrics`); returns a broker deadline that came up since the tick.
    pub fn end_turn(&mut self) -> Option<Instant> {
        let owned = self.broker.channel_count();
        self.shared.node.owned_channels[self.index].store(owned, Ordering::Relaxed);
        self.broker.take_wake()
    }

    /// A Redis link's socket (the link's, or a cluster node's) is ready.
    pub fn redis_ready(&mut self, token: mio::Token) {
        self.broker.ready(token, self.now, &mut self.outbox);
    }

    /// Handles a batch another worker sent.
    pub fn receive(&mut self, mut batch: Vec<Msg>) {
        let n = batch.len();
        for msg in batch.drain(..) {
            self.dispatch(msg);
        }
        self.shared.queues.handled(self.index, n);
        self.outbox.recycle(batch);
    }

    /// Whether reads wait for another worker's queue to drain.
    pub fn has_deferred(&self) -> bool {
        !self.deferred.is_empty()
    }

    /// Reads the connections whose reads waited, once no queue is over
    /// its bound.
    pub fn resume_deferred(&mut self) {
        if self.deferred.is_empty() || self.shared.queues.congested(self.index) {
            return;
        }
        for key in std::mem::take(&mut self.deferred) {
            if let Some(entry) = self.conns.get_mut(key) {
                entry.deferred = false;
                // The readiness edge was spent: read to `WouldBlock` (or
                // to the EOF of a peer that hung up meanwhile).
                self.read(key, true);
            }
        }
    }

    /// After messages were handled outside [`Driver::pump`]: lets the Redis
    /// link send what they queued.
    pub fn flush_broker(&mut self) {
        self.broker.flush(self.now, &mut self.outbox);
    }

    /// Drains the outbox and writes one round of dirty connections; returns
    /// whether connections still wait to be written (call again after a
    /// poll that does not wait).
    pub fn pump(&mut self) -> bool {
        loop {
            for key in std::mem::take(&mut self.to_read) {
                self.read(key, false);
            }
            for w in (0..self.outbox.workers()).filter(|&w| w != self.index) {
                if let Some(batch) = self.outbox.take(w) {
                    self.shared.queues.send(w, batch);
                }
            }
            // Owners handling these queue more for this worker: they go to
            // a fresh batch, handled in the next round.
            let Some(mut local) = self.outbox.take(self.index) else {
                self.flush_round();
                // Flushing can release held HTTP input, to be read.
                if self.to_read.is_empty() {
                    return self.fanout.waiting();
                }
                continue;
            };
            for msg in local.drain(..) {
                self.dispatch(msg);
            }
            self.flush_broker();
            self.outbox.recycle(local);
        }
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
    pub fn read(&mut self, key: usize, closed: bool) {
        loop {
            let Some(entry) = self.conns.get_mut(key) else {
                return;
            };
            if !entry.conn.wants_input() {
                break;
            }
            if self.shared.queues.congested(self.index) {
                // Another worker's queue is at its bound: leave the input
                // in the kernel (TCP pushes back) and read it later.
                if !std::mem::replace(&mut entry.deferred, true) {
                    self.deferred.push(key);
                }
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

    /// The socket can take bytes again: its writable edge.
    pub fn writable(&mut self, key: usize) {
        if let Some(entry) = self.conns.get_mut(key) {
            entry.blocked = false;
            self.mark_dirty(key);
        }
    }

    /// Bytes were queued: list the connection for a flush, unless its
    /// socket is full (its writable edge will).
    fn mark_dirty(&mut self, key: usize) {
        if let Some(entry) = self.conns.get_mut(key) {
            if !entry.dirty && !entry.blocked {
                entry.dirty = true;
                self.fanout.dirty.push(key);
            }
            if entry.queued_since.is_none() && !entry.conn.transmit().is_empty() {
                entry.queued_since = Some(self.now);
            }
        }
    }

    /// Writes the next [`FLUSH_ROUND`] dirty connections, half-closes those
    /// whose last bytes are out, and lets each release held input.
    fn flush_round(&mut self) {
        let round = self.fanout.next_round(FLUSH_ROUND);
        let end = round.end;
        for i in round {
            let key = self.fanout.dirty[i];
            let Some(entry) = self.conns.get_mut(key) else {
                continue;
            };
            entry.dirty = false;
            let written = entry
                .conn
                .transmit()
                .write_to(&mut entry.stream)
                .and_then(|n| entry.stream.flush().map(|()| n));
            match written {
                Ok(written) => self.metrics.bytes_out(written as u64),
                Err(_) => {
                    self.drop_conn(key);
                    continue;
                }
            }
            entry.blocked = !entry.conn.transmit().is_empty();
            // One clock read per drained backlog, next to a write(2).
            if let Some(t) = entry
                .queued_since
                .filter(|_| entry.conn.transmit().is_empty())
            {
                entry.queued_since = None;
                latency::observe_since(&self.metrics.write_delay, t);
            }
            if entry.conn.poll_shutdown(self.now) {
                let _ = entry.stream.shutdown_write();
            }
            entry.conn.handle_written(&mut cx!(self));
            if entry.conn.take_read_again() {
                self.to_read.push(key);
            }
        }
        self.fanout.round_written(end);
    }

    /// Forgets a connection at once (the peer is gone, the socket failed,
    /// or the connection is done).
    fn drop_conn(&mut self, key: usize) {
        if let Some(mut entry) = self.conns.try_remove(key) {
            if entry.stream.handshake_failed() {
                self.metrics.tls_handshake_failed();
            }
            entry.conn.handle_gone(&mut cx!(self));
            // Dropping the stream closes the socket, which also removes it
            // from epoll.
        }
    }

    /// Handles a message from a worker (this one included).
    pub fn dispatch(&mut self, msg: Msg) {
        match msg {
            Msg::Owner(msg) => self.broker.handle(msg, self.now, &mut self.outbox),
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
                kind,
            } => return self.deliver(&channel, &frame, except, kind),
            ToWorker::Shutdown => return self.start_drain(),
            ToWorker::Joined {
                ref channel, who, ..
            } => {
                let live = self.conns.get(who.key()).map(|e| &e.conn);
                if live.is_some_and(|c| c.id() == who && c.takes_events()) {
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
        let Some(entry) = self.conns.get_mut(who.key()).filter(|e| e.conn.id() == who) else {
            return;
        };
        entry.conn.handle_owner(msg, &mut cx!(self));
        self.after_call(who.key());
    }

    /// Messages compressed by this worker so far (the fan-out tests count
    /// them: one per broadcast and window size, none per recipient).
    pub fn compressions(&self) -> u64 {
        self.deflate.deflater.compressions()
    }

    /// Queues one shared frame for every local member of `channel`.
    fn deliver(
        &mut self,
        channel: &str,
        frame: &Broadcast,
        except: Option<ConnId>,
        kind: DeliveredType,
    ) {
        let except = except
            .filter(|e| e.worker() == self.index)
            .map(ConnId::handle);
        let listed = self.fanout.dirty.len();
        let queued = self.registry.deliver(
            channel,
            frame,
            except,
            self.shared.node.config.outbound_limit,
            &mut self.conns,
            &mut self.fanout,
            &mut self.deflate.deflater,
        );
        // Their write delay starts now, though a later round writes them.
        for &key in &self.fanout.dirty[listed..] {
            if let Some(e) = self.conns.get_mut(key) {
                e.queued_since.get_or_insert(self.now);
            }
        }
        let mut slow = std::mem::take(&mut self.fanout.slow);
        self.call_each(&slow, Connection::handle_slow);
        slow.clear();
        self.fanout.slow = slow;
        self.metrics.delivered(kind, queued);
        // One clock read per fan-out, not per recipient.
        latency::observe_since(&self.metrics.fanout, self.now);
    }

    fn start_drain(&mut self) {
        if self.draining {
            return;
        }
        self.draining = true;
        let keys: Vec<usize> = self.conns.iter().map(|(k, _)| k).collect();
        self.call_each(&keys, Connection::handle_drain);
    }

    /// Calls `f` on each live connection of `keys`, then settles it.
    fn call_each(&mut self, keys: &[usize], f: impl Fn(&mut Connection, &mut Cx<'_>)) {
        for &key in keys {
            if let Some(entry) = self.conns.get_mut(key) {
                f(&mut entry.conn, &mut cx!(self));
                self.after_call(key);
            }
        }
    }

    /// The broker's upkeep, then every connection's due timers; runs a
    /// few times per heartbeat interval. Returns when to tick next.
    pub fn tick(&mut self) -> Instant {
        let config = &self.shared.node.config;
        let mut next = self.now + Connection::timer_interval(config);
        if let Some(t) = self.broker.tick(self.now, &mut self.outbox) {
            next = next.min(t);
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
        self.call_each(&due, Connection::handle_timeout);
        due.clear();
        self.due = due;
        next
    }
}
