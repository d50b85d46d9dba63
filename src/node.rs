//! What every worker of a node shares: the configuration, the drain flag,
//! the broker's health, the connection and channel totals, and each
//! worker's counters.
//!
//! Connections read it (`/healthz`, `/metrics`, `--max-connections`) and
//! workers update it, all with relaxed atomics: nothing here orders
//! anything, it only counts and flags. [`Shared`] adds the queues and
//! wake-ups between workers, which are the IO shell's.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;

use crossbeam_channel::Sender;
use mio::Waker;

use crate::auth::Authenticator;
use crate::broker::{Msg, Queues};
use crate::config::Config;
use crate::metrics::WorkerMetrics;

#[derive(Debug)]
pub struct Node {
    pub config: Arc<Config>,
    pub draining: AtomicBool,
    /// Workers whose Redis link is down; the broker is up when it is 0.
    pub links_down: Arc<AtomicUsize>,
    /// Open WebSockets on this node, for --max-connections.
    pub ws_connections: AtomicUsize,
    /// Each worker's counters, summed at scrape.
    pub metrics: Vec<Arc<WorkerMetrics>>,
    /// Channels with members that each worker owns, refreshed every tick.
    pub owned_channels: Vec<AtomicUsize>,
    /// Token verification (PROTOCOL.md §6); `None`: authentication off.
    pub auth: Option<Authenticator>,
}

impl Node {
    /// A node of `workers` workers; in Redis mode every link starts down
    /// until its handshake.
    pub fn new(
        config: Arc<Config>,
        workers: usize,
        redis: bool,
        auth: Option<Authenticator>,
    ) -> Self {
        Node {
            config,
            draining: AtomicBool::new(false),
            links_down: Arc::new(AtomicUsize::new(if redis { workers } else { 0 })),
            ws_connections: AtomicUsize::new(0),
            metrics: (0..workers)
                .map(|_| Arc::new(WorkerMetrics::new()))
                .collect(),
            owned_channels: (0..workers).map(|_| AtomicUsize::new(0)).collect(),
            auth,
        }
    }

    pub fn draining(&self) -> bool {
        self.draining.load(Relaxed)
    }

    /// Whether every worker's Redis link is up (always, embedded).
    pub fn broker_up(&self) -> bool {
        self.links_down.load(Relaxed) == 0
    }
}

/// State every worker reads: the node's, and the queues between workers.
#[derive(Debug)]
pub struct Shared {
    pub node: Node,
    pub queues: Queues,
}

impl Shared {
    pub fn new(node: Node, senders: Vec<Sender<Vec<Msg>>>, wakers: Vec<Arc<Waker>>) -> Self {
        Shared {
            node,
            queues: Queues::new(senders, wakers),
        }
    }
}
