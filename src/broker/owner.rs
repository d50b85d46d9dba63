//! The owner side of the embedded broker: one worker's share of channels.
//!
//! Pure: it takes messages and the time, and produces messages for workers.
//! It keeps, for each channel it owns, the members on every worker (for
//! presence), how many members each worker has (to know where to deliver),
//! and, where the namespace keeps history, the offset, the epoch and a ring
//! of the last N encoded events (PROTOCOL.md §5).

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::{Answer, ConnRef, MemberInfo, Msg, Origin, Outbox, Query};
use crate::config::Config;
use crate::proto::{self, server, ErrorCode, Since};
use crate::ws;

/// How long a channel with history and no members keeps it, so that clients
/// who all dropped at once can still recover (docs/protocol-notes.md).
pub const IDLE_HISTORY_TTL: Duration = Duration::from_secs(300);

/// The parts of the configuration the owner needs.
#[derive(Debug, Clone)]
pub struct OwnerLimits {
    pub config: Arc<Config>,
}

#[derive(Debug)]
struct Channel {
    /// Members with their identity; empty for channels without presence,
    /// which only count.
    members: HashMap<ConnRef, Arc<MemberInfo>>,
    /// Members per worker, to deliver only where someone listens.
    per_worker: Vec<u32>,
    total: usize,
    presence: bool,
    history: Option<History>,
    idle_since: Option<Instant>,
}

#[derive(Debug)]
struct History {
    capacity: usize,
    offset: u64,
    epoch: Box<str>,
    /// The last `capacity` events, oldest first, with their offsets.
    ring: VecDeque<(u64, Bytes)>,
}

/// The channels one worker owns.
#[derive(Debug)]
pub struct Owner {
    limits: OwnerLimits,
    channels: HashMap<Arc<str>, Channel>,
    epoch_seed: u64,
}

impl Owner {
    pub fn new(limits: OwnerLimits, seed: u64) -> Self {
        Owner {
            limits,
            channels: HashMap::new(),
            epoch_seed: seed | 1,
        }
    }

    /// Applies one owner-bound message.
    pub fn handle(&mut self, msg: Msg, now: Instant, out: &mut Outbox) {
        match msg {
            Msg::Join {
                channel,
                who,
                member,
                id,
                since,
                rejoin,
            } => self.join(channel, who, member, id, since, rejoin, out),
            Msg::Leave {
                channel,
                who,
                id,
                reply,
            } => self.leave(channel, who, id, reply, now, out),
            Msg::Publish {
                channel,
                origin,
                id,
                action,
            } => self.publish(&channel, origin, id, &action, now, out),
            Msg::Presence { channel, who, id } => self.presence(&channel, who, id, out),
            Msg::Query { query, from } => {
                let answer = self.query(query);
                out.send(usize::from(from.worker), Msg::Answer { to: from, answer });
            }
            other => debug_assert!(false, "not an owner message: {other:?}"),
        }
    }

    fn channel_entry(&mut self, channel: &Arc<str>) -> &mut Channel {
        let workers = self.limits_workers();
        let config = &self.limits.config;
        let seed = &mut self.epoch_seed;
        self.channels
            .entry(channel.clone())
            .or_insert_with(|| Channel {
                members: HashMap::new(),
                per_worker: vec![0; workers],
                total: 0,
                presence: config.presence_on(channel),
                history: config.history_for(channel).map(|capacity| History {
                    capacity,
                    offset: 0,
                    epoch: new_epoch(seed),
                    ring: VecDeque::new(),
                }),
                idle_since: None,
            })
    }

    fn limits_workers(&self) -> usize {
        self.limits.config.threads
    }

    #[allow(clippy::too_many_arguments)]
    fn join(
        &mut self,
        channel: Arc<str>,
        who: ConnRef,
        member: Arc<MemberInfo>,
        id: Option<u64>,
        since: Option<Since>,
        rejoin: bool,
        out: &mut Outbox,
    ) {
        let ch = self.channel_entry(&channel);
        ch.idle_since = None;
        let newly = !rejoin;
        if newly {
            ch.per_worker[usize::from(who.worker)] += 1;
            ch.total += 1;
            if ch.presence {
                ch.members.insert(who, member.clone());
            }
        }
        let mut frames = Vec::with_capacity(1);
        // Replay decision first: `joined` carries how many events follow.
        let (recovered, replay): (Option<bool>, Vec<Bytes>) = match (&since, &ch.history) {
            (None, _) => (None, Vec::new()),
            (Some(s), Some(h)) => match h.replay_after(s) {
                Some(events) => (Some(true), events),
                None => (Some(false), Vec::new()),
            },
            (Some(_), None) => (Some(false), Vec::new()),
        };
        let members: Option<Vec<proto::Member<'_>>> = ch
            .presence
            .then(|| ch.members.values().map(|m| m.as_member()).collect());
        let history = ch.history.as_ref().map(|h| server::History {
            offset: h.offset,
            epoch: &h.epoch,
        });
        let replayed = ch.history.as_ref().map(|_| replay.len() as u64);
        frames.push(ws::text_frame_with(|buf| {
            server::joined(
                buf,
                id,
                &channel,
                members.as_deref(),
                history,
                recovered,
                replayed,
            )
        }));
        frames.extend(replay);
        drop(members);
        out.send(
            usize::from(who.worker),
            Msg::Joined {
                channel: channel.clone(),
                who,
                frames,
            },
        );
        if newly && ch.presence {
            let frame = ws::text_frame_with(|buf| {
                server::presence(
                    buf,
                    &channel,
                    server::PresenceEvent::Join,
                    member.as_member(),
                )
            });
            deliver(ch, &channel, frame, Some(who), out);
        }
    }

    fn leave(
        &mut self,
        channel: Arc<str>,
        who: ConnRef,
        id: Option<u64>,
        reply: bool,
        now: Instant,
        out: &mut Outbox,
    ) {
        let frame = reply.then(|| ws::text_frame_with(|buf| server::left(buf, id, &channel)));
        let Some(ch) = self.channels.get_mut(&channel) else {
            out.send(
                usize::from(who.worker),
                Msg::Left {
                    channel,
                    who,
                    frame,
                },
            );
            return;
        };
        // The leaver's worker must drop it from local fan-out before any
        // later event is delivered: `Left` goes first.
        out.send(
            usize::from(who.worker),
            Msg::Left {
                channel: channel.clone(),
                who,
                frame,
            },
        );
        let was_member = if ch.presence {
            ch.members.remove(&who)
        } else {
            None
        };
        // Without presence the owner only counts; the worker only sends a
        // leave for a connection it had asked to join.
        let counted = !ch.presence || was_member.is_some();
        if counted {
            let w = &mut ch.per_worker[usize::from(who.worker)];
            *w = w.saturating_sub(1);
            ch.total = ch.total.saturating_sub(1);
        }
        if let Some(m) = was_member {
            let frame = ws::text_frame_with(|buf| {
                server::presence(buf, &channel, server::PresenceEvent::Leave, m.as_member())
            });
            // `Left` already took the leaver out of its worker's fan-out.
            deliver(ch, &channel, frame, None, out);
        }
        if ch.total == 0 {
            // Kept even before its first event: forgetting it would change
            // its epoch, and a member who saw offset 0 would be told to
            // reload for nothing (PROTOCOL.md §5).
            if ch.history.is_some() {
                ch.idle_since = Some(now);
            } else {
                self.channels.remove(&channel);
            }
        }
    }

    fn publish(
        &mut self,
        channel: &Arc<str>,
        origin: Origin,
        id: Option<u64>,
        action: &[u8],
        now: Instant,
        out: &mut Outbox,
    ) {
        let ch = self.channel_entry(channel);
        // An API publish to a channel nobody is in: its history must still
        // be swept once idle.
        if ch.total == 0 && ch.idle_since.is_none() {
            ch.idle_since = Some(now);
        }
        let offset = ch.history.as_mut().map(|h| {
            h.offset += 1;
            h.offset
        });
        let member = match &origin {
            Origin::Client(_, m) => Some(m),
            Origin::Api(_) => None,
        };
        let frame = ws::text_frame_with(|buf| {
            server::user_action(
                buf,
                channel,
                member.map(|m| &*m.user),
                member.map(|m| &*m.conn),
                member.and_then(|m| m.info.as_deref()),
                action,
                offset,
            )
        });
        if let (Some(h), Some(off)) = (ch.history.as_mut(), offset) {
            if h.ring.len() == h.capacity {
                h.ring.pop_front();
            }
            h.ring.push_back((off, frame.clone()));
        }
        deliver(ch, channel, frame, None, out);
        if ch.total == 0 && ch.history.is_none() {
            self.channels.remove(channel);
        }
        match origin {
            Origin::Client(who, _) => {
                if let Some(id) = id {
                    let frame =
                        ws::text_frame_with(|buf| server::ack(buf, Some(id), channel, offset));
                    out.send(usize::from(who.worker), Msg::Reply { who, frame });
                }
            }
            Origin::Api(to) => out.send(
                usize::from(to.worker),
                Msg::Answer {
                    to,
                    answer: Answer::Published(offset),
                },
            ),
        }
    }

    fn presence(&mut self, channel: &Arc<str>, who: ConnRef, id: Option<u64>, out: &mut Outbox) {
        let frame = match self.channels.get(channel) {
            Some(ch) if !ch.presence => ws::text_frame_with(|buf| {
                server::error(
                    buf,
                    id,
                    ErrorCode::Forbidden,
                    "presence is off in this namespace",
                )
            }),
            Some(ch) => {
                let members: Vec<_> = ch.members.values().map(|m| m.as_member()).collect();
                ws::text_frame_with(|buf| server::presence_state(buf, id, channel, &members))
            }
            None => ws::text_frame_with(|buf| server::presence_state(buf, id, channel, &[])),
        };
        out.send(usize::from(who.worker), Msg::Reply { who, frame });
    }

    fn query(&self, q: Query) -> Answer {
        match q {
            Query::Presence(channel) => Answer::Presence(match self.channels.get(&channel) {
                Some(ch) if !ch.presence => None,
                Some(ch) => Some(members_json(ch.members.values())),
                None if !self.limits.config.presence_on(&channel) => None,
                None => Some(b"[]".to_vec()),
            }),
            Query::Channels => Answer::Channels(
                self.channels
                    .iter()
                    .filter(|(_, ch)| ch.total > 0)
                    .map(|(name, ch)| (name.clone(), ch.total))
                    .collect(),
            ),
        }
    }

    /// Forgets history of channels that have been empty for longer than
    /// [`IDLE_HISTORY_TTL`], so memory stays bounded by live channels.
    pub fn sweep(&mut self, now: Instant) {
        self.channels.retain(|_, ch| {
            ch.idle_since
                .is_none_or(|t| now.saturating_duration_since(t) < IDLE_HISTORY_TTL)
        });
    }

    /// Number of channels this owner holds (for metrics).
    pub fn channel_count(&self) -> usize {
        self.channels.len()
    }
}

impl History {
    /// The events after `since`, or `None` when they are not all here
    /// (PROTOCOL.md §5: other epoch, offset ahead, or events gone).
    fn replay_after(&self, since: &Since) -> Option<Vec<Bytes>> {
        if since.epoch != *self.epoch || since.offset > self.offset {
            return None;
        }
        let first_needed = since.offset + 1;
        if first_needed <= self.offset {
            let oldest = self.ring.front().map_or(u64::MAX, |(o, _)| *o);
            if oldest > first_needed {
                return None;
            }
        }
        Some(
            self.ring
                .iter()
                .filter(|(o, _)| *o > since.offset)
                .map(|(_, f)| f.clone())
                .collect(),
        )
    }
}

fn deliver(
    ch: &Channel,
    channel: &Arc<str>,
    frame: Bytes,
    except: Option<ConnRef>,
    out: &mut Outbox,
) {
    for (worker, &n) in ch.per_worker.iter().enumerate() {
        let only_except = except.is_some_and(|e| usize::from(e.worker) == worker) && n == 1;
        if n > 0 && !only_except {
            out.send(
                worker,
                Msg::Deliver {
                    channel: channel.clone(),
                    frame: frame.clone(),
                    except,
                },
            );
        }
    }
}

/// A fresh epoch: 8 hex digits from a per-owner xorshift sequence seeded
/// with the time and the process id, so a restarted node never reuses one.
fn new_epoch(seed: &mut u64) -> Box<str> {
    let mut x = *seed;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    *seed = x;
    format!("{:08x}", x as u32).into_boxed_str()
}

/// The members as the JSON array `[{"user":…,"conn":…},…]`.
fn members_json<'a>(members: impl Iterator<Item = &'a Arc<MemberInfo>>) -> Vec<u8> {
    let list: Vec<proto::Member<'_>> = members.map(|m| m.as_member()).collect();
    let mut out = Vec::new();
    server::write_members(&mut out, &list);
    out
}
