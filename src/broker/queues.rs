//! The bounded queues between workers: one `crossbeam-channel` queue per
//! worker plus its `mio::Waker`, and a count of the messages each holds.
//!
//! A worker's [`Outbox`](super::Outbox) collects what one turn produces
//! for each worker; the driver sends each non-empty batch as one queue
//! message with one wake-up.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use crossbeam_channel::Sender;
use mio::Waker;

use super::Msg;

/// Messages queued for one worker (sent by others, not yet handled) at
/// which the others stop reading their clients; see [`Queues::congested`].
pub const QUEUE_BOUND: usize = 4096;

/// The sending ends of every worker's queue.
#[derive(Debug)]
pub struct Queues {
    senders: Vec<Sender<Vec<Msg>>>,
    wakers: Vec<Arc<Waker>>,
    /// Messages sent to each worker and not yet handled by it.
    queued: Vec<AtomicUsize>,
}

impl Queues {
    pub fn new(senders: Vec<Sender<Vec<Msg>>>, wakers: Vec<Arc<Waker>>) -> Self {
        let queued = senders.iter().map(|_| AtomicUsize::new(0)).collect();
        Queues {
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
