//! The per-core event loop: a `mio::Poll` around a [`Driver`].
//!
//! Each worker owns a `mio::Poll`, its own `SO_REUSEPORT` listener, and a
//! [`Driver`]: a slab of connections, its fan-out registry and its share of
//! channel owners. This file is the IO edge: poll, accept, turn readiness
//! into driver calls, and the queue from other workers.
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
//! On a TLS listener each accepted socket gets its TLS session in front of
//! it ([`stream::Stream`]); nothing past the driver's [`Socket`] knows.

mod driver;
mod stream;

use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Waker};

use crate::broker::redis::cluster::ClusterOwner;
use crate::broker::redis::{ClusterSeeds, RedisOwner};
use crate::broker::{Msg, Owner, OwnerLimits};
use crate::id::{key_of, shard_of, token_of, LISTENER, REDIS, WAKER};
use crate::node::Node;
use crate::tls::{ServerTls, TlsSession};
use stream::Stream;

pub use driver::{Broker, Driver, Socket};

/// Messages queued for one worker (sent by others, not yet handled) at
/// which the others stop reading their clients; see [`Shared::congested`].
pub const QUEUE_BOUND: usize = 4096;

/// State every worker reads: the node's, and the queues between workers.
#[derive(Debug)]
pub struct Shared {
    pub node: Node,
    senders: Vec<Sender<Vec<Msg>>>,
    wakers: Vec<Arc<Waker>>,
    /// Messages sent to each worker and not yet handled by it.
    queued: Vec<AtomicUsize>,
}

impl Shared {
    pub fn new(node: Node, senders: Vec<Sender<Vec<Msg>>>, wakers: Vec<Arc<Waker>>) -> Self {
        let queued = senders.iter().map(|_| AtomicUsize::new(0)).collect();
        Shared {
            node,
            senders,
            wakers,
            queued,
        }
    }

    /// Sends `batch` to worker `to`, counts it in that worker's queue, and
    /// wakes it.
    pub fn send(&self, to: usize, batch: Vec<Msg>) {
        self.queued[to].fetch_add(batch.len(), Ordering::Relaxed);
        if self.senders[to].send(batch).is_ok() {
            let _ = self.wakers[to].wake();
        }
    }

    /// Worker `at` handled `n` messages of its queue.
    pub fn handled(&self, at: usize, n: usize) {
        self.queued[at].fetch_sub(n, Ordering::Relaxed);
    }

    /// Whether some other worker's queue holds [`QUEUE_BOUND`] messages or
    /// more.
    ///
    /// # At the bound
    ///
    /// A congested worker's peers stop reading their clients (so TCP pushes
    /// back on them) until its queue drains below the bound. Nothing ever
    /// waits to send: replies and deliveries still go out, and every worker
    /// keeps draining its own queue, so no cycle of waits can form. A queue
    /// passes the bound by at most what one read of each peer produces.
    pub fn congested(&self, me: usize) -> bool {
        self.queued
            .iter()
            .enumerate()
            .any(|(w, q)| w != me && q.load(Ordering::Relaxed) >= QUEUE_BOUND)
    }
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
    /// `--redis-cluster`: the seeds; `None` otherwise.
    pub cluster: Option<ClusterSeeds>,
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
        let node = &shared.node;
        let config = node.config.clone();
        let metrics = node.metrics[parts.index].clone();
        let broker = match (parts.redis, config.redis_url(), parts.cluster) {
            (_, _, Some(seeds)) => Broker::Cluster {
                owner: Box::new(ClusterOwner::new(
                    config.clone(),
                    seeds,
                    parts.seed,
                    node.links_down.clone(),
                    metrics.clone(),
                )),
                registry: parts.poll.registry().try_clone()?,
            },
            (Some(endpoint), Some(url), None) => Broker::Redis {
                owner: Box::new(RedisOwner::new(
                    config.clone(),
                    url,
                    endpoint,
                    REDIS,
                    parts.seed,
                    node.links_down.clone(),
                    metrics.clone(),
                )),
                registry: parts.poll.registry().try_clone()?,
            },
            _ => Broker::Embedded(Owner::new(
                OwnerLimits {
                    config: config.clone(),
                    metrics,
                },
                parts.seed,
            )),
        };
        Ok(Worker {
            index: parts.index,
            driver: Driver::new(parts.index, shared, broker),
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
        loop {
            let mut timeout = self.next_tick.saturating_duration_since(turn_end);
            if self.driver.has_deferred() {
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
                    REDIS => self.driver.redis_ready(),
                    token if shard_of(token).is_some() => self.driver.cluster_ready(token),
                    token => {
                        let Some(key) = key_of(token) else { continue };
                        let closed = event.is_read_closed() || event.is_error();
                        if event.is_readable() || closed {
                            self.driver.read(key, closed);
                        }
                        if event.is_writable() {
                            self.driver.mark_dirty(key);
                        }
                    }
                }
            }
            self.driver.resume_deferred();
            self.driver.pump();
            if now >= self.next_tick {
                self.next_tick = self.driver.tick();
                self.driver.pump();
            }
            self.driver.store_owned_channels();
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
        let _ = stream.set_nodelay(true);
        if let Err(e) = self.poll.registry().register(
            &mut stream,
            token_of(self.driver.vacant_key()),
            Interest::READABLE | Interest::WRITABLE,
        ) {
            tracing::warn!(error = %e, "register failed");
            return;
        }
        // The certificate of the moment (SIGHUP may replace it): one atomic
        // load per connection, none per message. The connection's handshake
        // timeout, running from now, covers the TLS handshake.
        let tls = self
            .tls
            .as_ref()
            .map(|t| Box::new(TlsSession::server(t.config())));
        self.driver.insert(Stream::new(stream, tls));
    }
}
