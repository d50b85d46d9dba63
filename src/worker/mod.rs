//! The per-core event loop: a `mio::Poll` around a [`Driver`].
//!
//! Each worker owns a `mio::Poll`, its own `SO_REUSEPORT` listener, and a
//! [`Driver`]: a slab of connections, its fan-out registry and its share of
//! channel owners. This file is the IO edge: poll, accept, turn readiness
//! into driver calls, and the queue from other workers.
//!
//! Workers talk through bounded queues ([`Queues`](crate::broker::Queues)); a turn batches
//! everything bound for one worker into one queue message and one wake-up.
//!
//! # Loop turn
//!
//! 1. poll (without waiting while connections wait to be written);
//! 2. accept, read into connections;
//! 3. drain the outbox: messages to this worker are handled at once, others
//!    are sent;
//! 4. write one round of connections that have bytes queued (a write can
//!    release held HTTP input, which is then read);
//! 5. timers (heartbeats, deadlines, the Redis link's upkeep).
//!
//! On a TLS listener each accepted socket gets its TLS session in front of
//! it ([`Stream`]); nothing past the driver's [`Socket`](crate::socket::Socket)
//! knows.

mod driver;

use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;
use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll};

use crate::broker::{Broker, Msg};
use crate::id::{key_of, shard_of, token_of, LISTENER, REDIS, WAKER};

use crate::socket::Stream;
use crate::tls::ServerTls;

pub use crate::node::Shared;
pub use driver::{Driver, FLUSH_ROUND};

/// What a worker is built from, before its thread starts.
#[derive(Debug)]
pub struct Parts {
    pub index: usize,
    pub poll: Poll,
    pub listener: TcpListener,
    pub receiver: Receiver<Vec<Msg>>,
    /// Its share of channel owners, its links registered with `poll`.
    pub broker: Broker,
    /// `--tls-cert`/`--tls-key`: every accepted connection is TLS.
    pub tls: Option<Arc<ServerTls>>,
}

#[derive(Debug)]
pub struct Worker {
    index: usize,
    poll: Poll,
    listener: TcpListener,
    receiver: Receiver<Vec<Msg>>,
    driver: Driver<Stream>,
    tls: Option<Arc<ServerTls>>,
    next_tick: Instant,
}

impl Worker {
    pub fn new(parts: Parts, shared: Arc<Shared>) -> io::Result<Self> {
        let mut listener = parts.listener;
        parts
            .poll
            .registry()
            .register(&mut listener, LISTENER, Interest::READABLE)?;
        Ok(Worker {
            index: parts.index,
            driver: Driver::new(parts.index, shared, parts.broker),
            poll: parts.poll,
            listener,
            receiver: parts.receiver,
            tls: parts.tls,
            next_tick: Instant::now(),
        })
    }

    /// Runs until drained.
    pub fn run(mut self) -> io::Result<()> {
        let mut events = Events::with_capacity(1024);
        let metrics = self.driver.metrics();
        // The end of the last turn: one clock read serves both its loop-time
        // metric and the next poll's timeout.
        let mut turn_end = Instant::now();
        let mut unflushed = false;
        loop {
            let mut timeout = self.next_tick.saturating_duration_since(turn_end);
            if unflushed {
                // Connections wait for their round of writes: only look.
                timeout = Duration::ZERO;
            } else if self.driver.has_deferred() {
                // Reads wait for another worker's queue to drain; nothing
                // wakes this one when it has.
                timeout = timeout.min(Duration::from_millis(1));
            }
            match self.poll.poll(&mut events, Some(timeout)) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
            let now = Instant::now();
            self.driver.set_now(now);
            for event in events.iter() {
                match event.token() {
                    WAKER => self.drain_queue(),
                    LISTENER => self.accept(),
                    t if t == REDIS || shard_of(t).is_some() => self.driver.redis_ready(t),
                    token => {
                        let Some(key) = key_of(token) else { continue };
                        let closed = event.is_read_closed() || event.is_error();
                        if event.is_readable() || closed {
                            self.driver.read(key, closed);
                        }
                        if event.is_writable() {
                            self.driver.writable(key);
                        }
                    }
                }
            }
            self.driver.resume_deferred();
            unflushed = self.driver.pump();
            if now >= self.next_tick {
                self.next_tick = self.driver.tick();
                unflushed = self.driver.pump();
            }
            if let Some(t) = self.driver.end_turn() {
                self.next_tick = self.next_tick.min(t);
            }
            turn_end = Instant::now();
            let spent = turn_end.saturating_duration_since(now).as_nanos() as u64;
            metrics.loop_time.observe(spent);
            if self.driver.drained() {
                return Ok(());
            }
        }
    }

    fn drain_queue(&mut self) {
        while let Ok(batch) = self.receiver.try_recv() {
            self.driver.receive(batch);
        }
        self.driver.flush_broker();
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
        let send_buffer = self.driver.config().send_buffer;
        if let Err(e) = crate::socket::configure_accepted(&stream, send_buffer) {
            tracing::debug!(error = %e, "socket options");
        }
        if let Err(e) = self.poll.registry().register(
            &mut stream,
            token_of(self.driver.vacant_key()),
            Interest::READABLE | Interest::WRITABLE,
        ) {
            tracing::warn!(error = %e, "register failed");
            return;
        }
        self.driver
            .insert(Stream::accepted(stream, self.tls.as_deref()));
    }
}
