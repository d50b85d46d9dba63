//! What an owner tells workers, built in one place for every broker: the
//! embedded [`Owner`](super::Owner), the Redis owner and the cluster owner
//! all fan an event out per worker, answer requests and refuse what they
//! cannot carry through these calls, so the three cannot drift apart.

use std::sync::Arc;

use bytes::Bytes;

use super::{Answer, ConnId, Origin, Outbox, ToOwner, ToWorker};
use crate::metrics::DeliveredType;
use crate::proto::{server, ErrorCode};
use crate::ws;
use crate::ws::deflate::Broadcast;

/// A request a broker cannot carry (its link is down, no master serves its
/// slot), reduced to what its refusal needs.
#[derive(Debug)]
pub enum Refused {
    /// `unavailable`, and the worker forgets the channel unless it was a
    /// re-join.
    Join {
        channel: Arc<str>,
        who: ConnId,
        id: Option<u64>,
        rejoin: bool,
    },
    /// Leaving needs nothing from a broker: it happens locally anyway, and
    /// the leaver gets its `left` (`frame`, when it asked for one).
    Leave {
        channel: Arc<str>,
        who: ConnId,
        frame: Option<Bytes>,
    },
    Publish {
        origin: Origin,
        id: Option<u64>,
    },
    Presence {
        who: ConnId,
        id: Option<u64>,
    },
    /// A question of the HTTP API of connection `to`.
    Query {
        to: ConnId,
    },
}

impl From<ToOwner> for Refused {
    fn from(msg: ToOwner) -> Refused {
        match msg {
            ToOwner::Join {
                channel,
                who,
                id,
                rejoin,
                ..
            } => Refused::Join {
                channel,
                who,
                id,
                rejoin,
            },
            ToOwner::Leave {
                channel,
                who,
                id,
                reply,
            } => Refused::Leave {
                frame: reply.then(|| left_frame(id, &channel)),
                channel,
                who,
            },
            ToOwner::Publish { origin, id, .. } => Refused::Publish { origin, id },
            ToOwner::Presence { who, id, .. } => Refused::Presence { who, id },
            ToOwner::Query { from, .. } => Refused::Query { to: from },
        }
    }
}

/// The `left` reply to a leave with `id`.
pub fn left_frame(id: Option<u64>, channel: &str) -> Bytes {
    ws::text_frame_with(|b| server::left(b, id, channel))
}

fn unavailable(id: Option<u64>) -> Bytes {
    ws::text_frame_with(|b| {
        server::error(b, id, ErrorCode::Unavailable, "the broker is unreachable")
    })
}

impl Outbox {
    /// One frame for every worker with members of `channel` (`per_worker`
    /// counts them), skipping a worker whose one member is `except`.
    pub fn fan_out(
        &mut self,
        channel: &Arc<str>,
        per_worker: &[u32],
        frame: Broadcast,
        except: Option<ConnId>,
        kind: DeliveredType,
    ) {
        for (worker, &n) in per_worker.iter().enumerate() {
            let only_except = except.is_some_and(|e| e.worker() == worker) && n == 1;
            if n > 0 && !only_except {
                self.to_worker(
                    worker,
                    ToWorker::Deliver {
                        channel: channel.clone(),
                        frame: frame.clone(),
                        except,
                        kind,
                    },
                );
            }
        }
    }

    /// One `resync` for `channel`, framed once, to every worker with local
    /// members (PROTOCOL.md §5).
    pub fn resync(&mut self, channel: &Arc<str>, per_worker: &[u32]) {
        // A few dozen bytes: never worth compressing.
        let frame = Broadcast::from(ws::text_frame_with(|b| server::resync(b, channel)));
        self.fan_out(channel, per_worker, frame, None, DeliveredType::Resync);
    }

    /// One frame for connection `who`; `owed`: see [`ToWorker::Reply`].
    pub fn reply(&mut self, who: ConnId, frame: Bytes, owed: bool) {
        self.to_worker(who.worker(), ToWorker::Reply { who, frame, owed });
    }

    /// An answer for HTTP connection `to`.
    pub fn answer(&mut self, to: ConnId, answer: Answer) {
        self.to_worker(to.worker(), ToWorker::Answer { to, answer });
    }

    /// The join applied: the `joined` reply and any replayed events.
    pub fn joined(&mut self, channel: Arc<str>, who: ConnId, frames: Vec<Bytes>) {
        self.to_worker(
            who.worker(),
            ToWorker::Joined {
                channel,
                who,
                frames,
            },
        );
    }

    /// The leave applied; `frame` is its `left`, when one was asked for.
    pub fn left(&mut self, channel: Arc<str>, who: ConnId, frame: Option<Bytes>) {
        self.to_worker(
            who.worker(),
            ToWorker::Left {
                channel,
                who,
                frame,
            },
        );
    }

    /// An action ordered at `offset` (when the channel keeps history): the
    /// client's `ack` when it asked with an `id`, the API's answer.
    pub fn published(
        &mut self,
        origin: &Origin,
        id: Option<u64>,
        channel: &str,
        offset: Option<u64>,
    ) {
        match *origin {
            Origin::Client(who, _) => {
                if let Some(id) = id {
                    let frame = ws::text_frame_with(|b| server::ack(b, Some(id), channel, offset));
                    self.reply(who, frame, true);
                }
            }
            Origin::Api(to) => self.answer(to, Answer::Published(offset)),
        }
    }

    /// Refuses a request with `unavailable` (a leave gets its `left`).
    pub fn refuse(&mut self, refused: Refused) {
        match refused {
            Refused::Join {
                channel,
                who,
                id,
                rejoin,
            } => self.to_worker(
                who.worker(),
                ToWorker::JoinFailed {
                    channel,
                    who,
                    id,
                    rejoin,
                },
            ),
            Refused::Leave {
                channel,
                who,
                frame,
            } => self.left(channel, who, frame),
            // An `unavailable` for a publish without an `id` is not owed.
            Refused::Publish {
                origin: Origin::Client(who, _),
                id,
            } => self.reply(who, unavailable(id), id.is_some()),
            Refused::Publish {
                origin: Origin::Api(to),
                ..
            }
            | Refused::Query { to } => self.answer(to, Answer::Unavailable),
            Refused::Presence { who, id } => self.reply(who, unavailable(id), true),
        }
    }
}
