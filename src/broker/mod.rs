//! How workers talk to each other about channels.
//!
//! Every channel has one *owner* worker, chosen by hashing its name. The
//! owner is the single place where the channel's order is decided: joins,
//! leaves and actions of every worker reach it through one FIFO queue per
//! worker, it applies them one at a time, encodes each event once, and sends
//! the shared frame to every worker that has members. Because each queue is
//! FIFO, a worker sees the owner's order, and a connection's own requests keep
//! the order it sent them in (PROTOCOL.md §4, "Order").
//!
//! Membership takes effect where the owner applies it: a worker adds a
//! connection to its local fan-out list when the owner's `Joined` reply comes
//! back, and removes it when `Left` comes back, so a connection receives
//! exactly the events the owner ordered after its join and before its leave.

mod backend;
mod gap;
mod owner;
mod queues;
pub mod redis;
mod reply;

pub use backend::Broker;
pub use gap::GapWatch;
pub use owner::{Owner, OwnerLimits};
pub use queues::{Queues, QUEUE_BOUND};
pub use reply::{left_frame, Refused};

use std::hash::{Hash, Hasher};
use std::sync::Arc;

use bytes::Bytes;
use serde_json::value::RawValue;

pub use crate::id::ConnId;
use crate::metrics::DeliveredType;
use crate::proto::Since;
use crate::ws::deflate::Broadcast;

/// Who a connection is, as presence and events show it. Built once per
/// connection and shared by reference with every owner it joins through.
#[derive(Debug)]
pub struct MemberInfo {
    pub user: Box<str>,
    pub conn: Box<str>,
    pub info: Option<Box<RawValue>>,
}

impl MemberInfo {
    pub fn as_member(&self) -> crate::proto::Member<'_> {
        crate::proto::Member {
            user: &self.user,
            conn: &self.conn,
            info: self.info.as_deref(),
        }
    }
}

/// What travels on the queue between two workers (or from a worker to
/// itself): a request for the channel's owner, or an owner's answer for the
/// worker of the connection it concerns.
#[derive(Debug)]
pub enum Msg {
    Owner(ToOwner),
    Worker(ToWorker),
}

/// Requests for the owner of a channel (or, for a [`Query`], of a share of
/// channels).
#[derive(Debug)]
pub enum ToOwner {
    /// `who` joins `channel`. `rejoin` is true when the connection is
    /// already a member (the owner answers `joined` again and changes
    /// nothing else).
    Join {
        channel: Arc<str>,
        who: ConnId,
        member: Arc<MemberInfo>,
        id: Option<u64>,
        since: Option<Since>,
        rejoin: bool,
    },
    /// `who` leaves; `reply` is false when it disconnected.
    Leave {
        channel: Arc<str>,
        who: ConnId,
        id: Option<u64>,
        reply: bool,
    },
    /// An action to order, encode and deliver.
    Publish {
        channel: Arc<str>,
        origin: Origin,
        id: Option<u64>,
        action: Bytes,
    },
    /// A `presence` request.
    Presence {
        channel: Arc<str>,
        who: ConnId,
        id: Option<u64>,
    },
    /// A question from the HTTP API of connection `from`.
    Query { query: Query, from: ConnId },
}

/// Messages for the worker where a connection lives.
#[derive(Debug)]
pub enum ToWorker {
    /// The owner applied the join; `frames` are the `joined` reply and any
    /// replayed events, to be queued together.
    Joined {
        channel: Arc<str>,
        who: ConnId,
        frames: Vec<Bytes>,
    },
    /// The join could not be applied (the broker is unreachable); answer
    /// `unavailable` and forget the channel unless it was a re-join.
    JoinFailed {
        channel: Arc<str>,
        who: ConnId,
        id: Option<u64>,
        rejoin: bool,
    },
    /// The owner applied the leave.
    Left {
        channel: Arc<str>,
        who: ConnId,
        frame: Option<Bytes>,
    },
    /// One frame for one connection. `owed`: the reply to a request the
    /// worker counted as owed (see `conn::Replies`): every `Presence`, and
    /// every client `Publish` with an `id`. An `unavailable` for a `Publish`
    /// without one is not owed.
    Reply {
        who: ConnId,
        frame: Bytes,
        owed: bool,
    },
    /// One frame for each local member of `channel`, except `except`.
    Deliver {
        channel: Arc<str>,
        /// Framed once; with compression on, also compressed at most once
        /// per window size, by the first recipient that needs it.
        frame: Broadcast,
        except: Option<ConnId>,
        /// What the frame is (`user_action`, presence event, `resync`),
        /// for metrics.
        kind: DeliveredType,
    },
    /// An owner's answer for HTTP connection `to`.
    Answer { to: ConnId, answer: Answer },
    /// Drain: close every WebSocket with 1001 and stop.
    Shutdown,
}

/// Who published an action.
#[derive(Debug)]
pub enum Origin {
    /// A WebSocket client; it is acknowledged when the request had an `id`.
    Client(ConnId, Arc<MemberInfo>),
    /// `POST /api/publish` on the given HTTP connection, which waits for the
    /// offset (PROTOCOL.md §9).
    Api(ConnId),
}

/// A question the HTTP API asks owners (PROTOCOL.md §9).
#[derive(Debug)]
pub enum Query {
    /// Members of one channel, asked of its owner.
    Presence(Arc<str>),
    /// Channels with members and their counts, asked of every owner.
    Channels,
}

/// An owner's answer to a [`Query`] or an API publish.
#[derive(Debug)]
pub enum Answer {
    /// The members as a JSON array; `None`: the channel's namespace keeps
    /// no presence.
    Presence(Option<Vec<u8>>),
    Channels(Vec<(Arc<str>, usize)>),
    /// The offset of a published action, when the channel keeps history.
    Published(Option<u64>),
    /// The broker could not answer.
    Unavailable,
}

/// The worker that owns `channel`.
pub fn owner_of(channel: &str, workers: usize) -> usize {
    // FNV-1a: stable across runs and threads, cheap for short names.
    let mut h = Fnv(0xcbf2_9ce4_8422_2325);
    channel.hash(&mut h);
    (h.0 % workers as u64) as usize
}

struct Fnv(u64);

impl Hasher for Fnv {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 ^= u64::from(*b);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }
}

/// Emptied batches kept to carry the next ones: traffic between workers
/// flows both ways, so in a steady state no turn allocates a batch.
const SPARE_BATCHES: usize = 8;
/// A batch grown past this (a burst) is freed rather than kept.
const SPARE_BATCH_CAPACITY: usize = 4096;

/// Messages produced while handling one event, by destination worker.
#[derive(Debug)]
pub struct Outbox {
    queues: Vec<Vec<Msg>>,
    /// See [`SPARE_BATCHES`].
    spare: Vec<Vec<Msg>>,
}

impl Outbox {
    pub fn new(workers: usize) -> Self {
        Outbox {
            queues: (0..workers).map(|_| Vec::new()).collect(),
            spare: Vec::new(),
        }
    }

    /// The worker that owns `channel`.
    pub fn owner_of(&self, channel: &str) -> usize {
        owner_of(channel, self.queues.len())
    }

    /// A request for owner `worker` (see [`Outbox::owner_of`]).
    pub fn to_owner(&mut self, worker: usize, msg: ToOwner) {
        self.queues[worker].push(Msg::Owner(msg));
    }

    /// A message for `worker`: a delivery to its members, or a reply for
    /// one of its connections (`who.worker()`).
    pub fn to_worker(&mut self, worker: usize, msg: ToWorker) {
        self.queues[worker].push(Msg::Worker(msg));
    }

    pub fn queue_mut(&mut self, worker: usize) -> &mut Vec<Msg> {
        &mut self.queues[worker]
    }

    /// Takes what is queued for `worker` as one batch, leaving a kept
    /// spare in its place; `None` when nothing is.
    pub fn take(&mut self, worker: usize) -> Option<Vec<Msg>> {
        if self.queues[worker].is_empty() {
            return None;
        }
        let fresh = self.spare.pop().unwrap_or_default();
        Some(std::mem::replace(&mut self.queues[worker], fresh))
    }

    /// Keeps an emptied batch (this worker's own, or one another worker
    /// sent) for reuse.
    pub fn recycle(&mut self, batch: Vec<Msg>) {
        debug_assert!(batch.is_empty());
        let cap = batch.capacity();
        if cap > 0 && cap <= SPARE_BATCH_CAPACITY && self.spare.len() < SPARE_BATCHES {
            self.spare.push(batch);
        }
    }

    pub fn workers(&self) -> usize {
        self.queues.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owner_is_stable_and_in_range() {
        for w in 1..8 {
            for name in ["a", "doc:42", "room/7", ""] {
                let o = owner_of(name, w);
                assert!(o < w);
                assert_eq!(o, owner_of(name, w));
            }
        }
    }

    #[test]
    fn owners_spread() {
        let hits = (0..1000)
            .map(|i| owner_of(&format!("c{i}"), 4))
            .fold([0; 4], |mut acc, o| {
                acc[o] += 1;
                acc
            });
        assert!(hits.iter().all(|&n| n > 150), "{hits:?}");
    }
}
